-- Environments (SPEC 9). Every document belongs to one environment, or to the global
-- namespace '' (the environments themselves). What was stored before belongs to `production`,
-- which is created here, so an upgraded store serves exactly what it served before.
CREATE TABLE documents_by_environment (
    environment TEXT    NOT NULL,
    kind        TEXT    NOT NULL,
    key         TEXT    NOT NULL,
    id          TEXT    NOT NULL UNIQUE,
    version     INTEGER NOT NULL,
    created_at  TEXT    NOT NULL,
    updated_at  TEXT    NOT NULL,
    body        TEXT    NOT NULL,
    PRIMARY KEY (environment, kind, key)
) WITHOUT ROWID;
INSERT INTO documents_by_environment (environment, kind, key, id, version, created_at, updated_at, body)
    SELECT 'production', kind, key, id, version, created_at, updated_at, body FROM documents;
DROP TABLE documents;
ALTER TABLE documents_by_environment RENAME TO documents;

INSERT INTO documents (environment, kind, key, id, version, created_at, updated_at, body)
VALUES ('', 'environment', 'production', lower(hex(randomblob(11))), 1,
        strftime('%Y-%m-%dT%H:%M:%S.000000000Z', 'now'), strftime('%Y-%m-%dT%H:%M:%S.000000000Z', 'now'),
        '{"key":"production","name":"Production","description":"","protected":false,"tags":[]}');

-- NULL: a record of no environment (keys, environments). The records written before are of
-- `production`, except the keys'. The append-only trigger is lifted for this one statement.
ALTER TABLE audit ADD COLUMN environment TEXT;
DROP TRIGGER audit_no_update;
UPDATE audit SET environment = 'production' WHERE entity <> 'key';
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE INDEX audit_by_environment ON audit (environment, id);

-- NULL: the default environment.
ALTER TABLE api_keys ADD COLUMN environment TEXT;
