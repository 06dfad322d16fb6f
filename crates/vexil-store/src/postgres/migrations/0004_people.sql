-- People who sign in to the web console (SPEC 9) and their sessions. A password is stored as
-- its Argon2id PHC string, a session token as its SHA-256 only; environments as in api_keys
-- (a JSON array, NULL for every environment).
CREATE TABLE users (
    username      TEXT        COLLATE "C" PRIMARY KEY,
    password_hash TEXT        NOT NULL,
    role          TEXT        NOT NULL,
    environments  TEXT,
    disabled      BOOLEAN     NOT NULL DEFAULT false,
    created_at    TIMESTAMPTZ NOT NULL
);

CREATE TABLE sessions (
    token_sha256 BYTEA       PRIMARY KEY,
    username     TEXT        COLLATE "C" NOT NULL REFERENCES users (username),
    csrf_token   TEXT        NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    last_seen_at TIMESTAMPTZ NOT NULL,
    expires_at   TIMESTAMPTZ NOT NULL
);
CREATE INDEX sessions_by_user ON sessions (username);
CREATE INDEX sessions_by_expiry ON sessions (expires_at);
