-- The revision that last wrote each document, and the documents deleted with the revision that
-- deleted them, so a reader holding an environment's configuration at one revision reads only
-- what changed after it (`changes_since`).
--
-- A trigger stamps every row a statement writes or deletes with the value of the one-row
-- `revision` table as its own transaction sees it. Every writer of documents (of this release
-- and of every earlier one) bumps that row first in its transaction and holds its lock until it
-- commits, so the value is the revision the transaction commits as, and nodes still running the
-- previous release during a rolling upgrade stamp their writes correctly too.
ALTER TABLE documents ADD COLUMN revision BIGINT NOT NULL DEFAULT 0;
CREATE INDEX documents_by_revision ON documents (environment, revision);

CREATE TABLE deleted_documents (
    environment TEXT COLLATE "C" NOT NULL,
    kind        TEXT NOT NULL,
    key         TEXT COLLATE "C" NOT NULL,
    revision    BIGINT NOT NULL,
    PRIMARY KEY (environment, kind, key)
);
CREATE INDEX deleted_documents_by_revision ON deleted_documents (environment, revision);

-- The revision from which changes are recorded. Documents written before carry 0 and no
-- deletion before it is recorded, so a reader at an older revision cannot be told what changed
-- and reads everything.
ALTER TABLE revision ADD COLUMN recorded_since BIGINT NOT NULL DEFAULT 0;
UPDATE revision SET recorded_since = value WHERE id = 1;

CREATE FUNCTION vexil_stamp_document_revision() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        INSERT INTO deleted_documents (environment, kind, key, revision)
        VALUES (OLD.environment, OLD.kind, OLD.key, (SELECT value FROM revision WHERE id = 1))
        ON CONFLICT (environment, kind, key) DO UPDATE SET revision = EXCLUDED.revision;
        RETURN OLD;
    END IF;
    NEW.revision := (SELECT value FROM revision WHERE id = 1);
    IF TG_OP = 'INSERT' THEN
        DELETE FROM deleted_documents
            WHERE environment = NEW.environment AND kind = NEW.kind AND key = NEW.key;
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER documents_revision BEFORE INSERT OR UPDATE OR DELETE ON documents
    FOR EACH ROW EXECUTE FUNCTION vexil_stamp_document_revision();
