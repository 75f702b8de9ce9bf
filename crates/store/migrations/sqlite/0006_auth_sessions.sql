-- Tokens jitgate issues after a sign-in (a workload JWT traded, an OpenID Connect sign-in): only
-- the SHA-256 of each, whose it is, what it was issued on (`body`: the principal with its kind
-- and groups, the source, the claims), and when it ends. `ended_us`: signed out or revoked.
CREATE TABLE auth_sessions (
    id         TEXT PRIMARY KEY,
    digest     BLOB NOT NULL UNIQUE,
    principal  TEXT NOT NULL,
    body       TEXT NOT NULL,
    created_us INTEGER NOT NULL,
    expires_us INTEGER NOT NULL,
    ended_us   INTEGER
);
CREATE INDEX auth_sessions_by_principal ON auth_sessions (principal);
CREATE INDEX auth_sessions_by_expiry ON auth_sessions (expires_us);

-- The `jti` of every workload JWT traded, until that JWT expires: each is accepted once.
CREATE TABLE auth_jtis (
    provider   TEXT NOT NULL,
    jti        TEXT NOT NULL,
    expires_us INTEGER NOT NULL,
    PRIMARY KEY (provider, jti)
) WITHOUT ROWID;
