-- Configuration documents. `kind, key` is the natural key; `id` is the stable opaque id.
-- Keys collate "C" so that `ORDER BY key` is bytewise, as on every backend, whatever the
-- database's default collation.
CREATE TABLE documents (
    kind       TEXT        NOT NULL,
    key        TEXT        COLLATE "C" NOT NULL,
    id         TEXT        NOT NULL UNIQUE,
    version    BIGINT      NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    body       JSONB       NOT NULL,
    PRIMARY KEY (kind, key)
);

-- The global revision of the documents, one row. Every change bumps it first thing in its
-- transaction, which also serialises document writers on this row lock.
CREATE TABLE revision (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    value BIGINT  NOT NULL
);
INSERT INTO revision (id, value) VALUES (1, 0);

CREATE TABLE audit (
    id     BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at     TIMESTAMPTZ NOT NULL,
    actor  TEXT  NOT NULL,
    action TEXT  NOT NULL,
    entity TEXT  NOT NULL,
    key    TEXT  COLLATE "C" NOT NULL,
    before JSONB,
    after  JSONB,
    reason TEXT
);
CREATE INDEX audit_by_entity ON audit (entity, id);
CREATE INDEX audit_by_entity_key ON audit (entity, key, id);

-- The log is append-only in the database itself, not just in the API.
CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only';
END;
$$;
CREATE TRIGGER audit_no_update BEFORE UPDATE OR DELETE ON audit
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit
    FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();

CREATE TABLE api_keys (
    id            TEXT        PRIMARY KEY,
    kind          TEXT        NOT NULL,
    name          TEXT        NOT NULL,
    secret_sha256 BYTEA       NOT NULL UNIQUE,
    created_at    TIMESTAMPTZ NOT NULL,
    revoked_at    TIMESTAMPTZ
);

-- The primary key is what makes insert-if-absent atomic across nodes.
CREATE TABLE assignments (
    experiment_id TEXT        NOT NULL,
    unit          TEXT        NOT NULL,
    variant       TEXT        NOT NULL,
    assignment_id TEXT        NOT NULL,
    assigned_at   TIMESTAMPTZ NOT NULL,
    expires_at    TIMESTAMPTZ,
    PRIMARY KEY (experiment_id, unit)
);
CREATE INDEX assignments_by_expiry ON assignments (expires_at) WHERE expires_at IS NOT NULL;
