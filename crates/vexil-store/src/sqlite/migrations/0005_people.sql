-- People who sign in to the web console (SPEC 9) and their sessions. A password is stored as
-- its Argon2id PHC string, a session token as its SHA-256 only; environments as in api_keys
-- (a JSON array, NULL for every environment).
CREATE TABLE users (
    username      TEXT    PRIMARY KEY,
    password_hash TEXT    NOT NULL,
    role          TEXT    NOT NULL,
    environments  TEXT,
    disabled      INTEGER NOT NULL DEFAULT 0,
    created_at    TEXT    NOT NULL
);

CREATE TABLE sessions (
    token_sha256 BLOB PRIMARY KEY,
    username     TEXT NOT NULL REFERENCES users (username),
    csrf_token   TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    last_seen_at TEXT NOT NULL,
    expires_at   TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX sessions_by_user ON sessions (username);
CREATE INDEX sessions_by_expiry ON sessions (expires_at);
