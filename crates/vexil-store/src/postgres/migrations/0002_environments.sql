-- Environments (SPEC 9). Every document belongs to one environment, or to the global
-- namespace '' (the environments themselves). What was stored before belongs to `production`,
-- which is created here, so an upgraded store serves exactly what it served before.
ALTER TABLE documents ADD COLUMN environment TEXT COLLATE "C" NOT NULL DEFAULT 'production';
ALTER TABLE documents ALTER COLUMN environment DROP DEFAULT;
ALTER TABLE documents DROP CONSTRAINT documents_pkey;
ALTER TABLE documents ADD PRIMARY KEY (environment, kind, key);

INSERT INTO documents (environment, kind, key, id, version, created_at, updated_at, body)
VALUES ('', 'environment', 'production', substr(md5(random()::text || clock_timestamp()::text), 1, 22), 1,
        date_trunc('second', now()), date_trunc('second', now()),
        '{"key":"production","name":"Production","description":"","protected":false,"tags":[]}');

-- NULL: a record of no environment (keys, environments). The records written before are of
-- `production`, except the keys'. The append-only trigger is lifted for this one statement.
ALTER TABLE audit ADD COLUMN environment TEXT;
ALTER TABLE audit DISABLE TRIGGER audit_no_update;
UPDATE audit SET environment = 'production' WHERE entity <> 'key';
ALTER TABLE audit ENABLE TRIGGER audit_no_update;
CREATE INDEX audit_by_environment ON audit (environment, id);

-- NULL: the default environment.
ALTER TABLE api_keys ADD COLUMN environment TEXT;
