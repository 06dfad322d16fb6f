-- Configuration documents. `kind, key` is the natural key; `id` is the stable opaque id.
CREATE TABLE documents (
    kind       TEXT    NOT NULL,
    key        TEXT    NOT NULL,
    id         TEXT    NOT NULL UNIQUE,
    version    INTEGER NOT NULL,
    created_at TEXT    NOT NULL,
    updated_at TEXT    NOT NULL,
    body       TEXT    NOT NULL,
    PRIMARY KEY (kind, key)
) WITHOUT ROWID;

-- The global revision of the documents, one row. Every process bumps it in the transaction of
-- its change, so polling this row is how a process notices another's changes.
CREATE TABLE revision (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    value INTEGER NOT NULL
);
INSERT INTO revision (id, value) VALUES (1, 0);

-- AUTOINCREMENT so ids are never reused and always grow: they are the paging cursor.
CREATE TABLE audit (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    at     TEXT NOT NULL,
    actor  TEXT NOT NULL,
    action TEXT NOT NULL,
    entity TEXT NOT NULL,
    key    TEXT NOT NULL,
    before TEXT,
    after  TEXT,
    reason TEXT
);
CREATE INDEX audit_by_entity ON audit (entity, id);
CREATE INDEX audit_by_entity_key ON audit (entity, key, id);

-- The log is append-only in the database itself, not just in the API, so no code path and
-- no later migration can rewrite history by accident.
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;

CREATE TABLE api_keys (
    id            TEXT PRIMARY KEY,
    kind          TEXT NOT NULL,
    name          TEXT NOT NULL,
    secret_sha256 BLOB NOT NULL UNIQUE,
    created_at    TEXT NOT NULL,
    revoked_at    TEXT
);

-- The primary key is what makes insert-if-absent atomic.
CREATE TABLE assignments (
    experiment_id TEXT NOT NULL,
    unit          TEXT NOT NULL,
    variant       TEXT NOT NULL,
    assignment_id TEXT NOT NULL,
    assigned_at   TEXT NOT NULL,
    expires_at    TEXT,
    PRIMARY KEY (experiment_id, unit)
) WITHOUT ROWID;
CREATE INDEX assignments_by_expiry ON assignments (expires_at) WHERE expires_at IS NOT NULL;
