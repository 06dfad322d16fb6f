-- The revision that last wrote each document, and the documents deleted with the revision that
-- deleted them, so a reader holding an environment's configuration at one revision reads only
-- what changed after it (`changes_since`). Triggers keep both for every statement that writes
-- documents: the revision row is bumped once at the end of each change's transaction, after
-- its documents, so `value + 1` is the revision the change commits as. Documents written
-- before this migration carry 0, older than any revision a reader can have loaded since.
ALTER TABLE documents ADD COLUMN revision INTEGER NOT NULL DEFAULT 0;
CREATE INDEX documents_by_revision ON documents (environment, revision);

CREATE TABLE deleted_documents (
    environment TEXT    NOT NULL,
    kind        TEXT    NOT NULL,
    key         TEXT    NOT NULL,
    revision    INTEGER NOT NULL,
    PRIMARY KEY (environment, kind, key)
) WITHOUT ROWID;
CREATE INDEX deleted_documents_by_revision ON deleted_documents (environment, revision);

CREATE TRIGGER documents_revision_insert AFTER INSERT ON documents
BEGIN
    UPDATE documents SET revision = (SELECT value + 1 FROM revision WHERE id = 1)
        WHERE environment = NEW.environment AND kind = NEW.kind AND key = NEW.key;
    DELETE FROM deleted_documents
        WHERE environment = NEW.environment AND kind = NEW.kind AND key = NEW.key;
END;

CREATE TRIGGER documents_revision_update AFTER UPDATE OF version, body ON documents
BEGIN
    UPDATE documents SET revision = (SELECT value + 1 FROM revision WHERE id = 1)
        WHERE environment = NEW.environment AND kind = NEW.kind AND key = NEW.key;
END;

CREATE TRIGGER documents_revision_delete AFTER DELETE ON documents
BEGIN
    INSERT OR REPLACE INTO deleted_documents (environment, kind, key, revision)
        VALUES (OLD.environment, OLD.kind, OLD.key, (SELECT value + 1 FROM revision WHERE id = 1));
END;
