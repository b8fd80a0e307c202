-- Web console: server-side sessions and sign-ins in progress.
-- Only SHA-256 hashes of cookies are stored, so a copy of this table signs nobody in.
CREATE TABLE console_sessions (
    id_hash TEXT PRIMARY KEY,
    login TEXT NOT NULL,
    user_id TEXT NOT NULL,
    name TEXT NOT NULL,
    roles TEXT NOT NULL,
    auth_time_ms BIGINT NOT NULL,
    created_ms BIGINT NOT NULL,
    last_seen_ms BIGINT NOT NULL,
    csrf TEXT NOT NULL
);
CREATE INDEX console_sessions_last_seen ON console_sessions (last_seen_ms);

-- One row per authorization request sent to Okta, removed when its callback arrives: state is
-- the key, and the nonce and PKCE verifier never leave the server.
CREATE TABLE console_logins (
    state_hash TEXT PRIMARY KEY,
    nonce TEXT NOT NULL,
    pkce_verifier TEXT NOT NULL,
    return_to TEXT NOT NULL,
    max_age_s BIGINT,
    created_ms BIGINT NOT NULL
);
CREATE INDEX console_logins_created ON console_logins (created_ms);
