-- A session is one login: the family of its rotating refresh tokens. Revoking the
-- session kills every refresh token in it and, through the `sid` claim, its access
-- tokens too.
CREATE TABLE sessions
(
    id          uuid PRIMARY KEY,
    user_id     uuid        NOT NULL REFERENCES users (id),
    tenant_id   uuid        NOT NULL REFERENCES tenants (id),
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz,
    -- why: logout, reuse (a used refresh token presented again), password change, admin
    revoked_why text
);
CREATE INDEX sessions_user_idx ON sessions (user_id) WHERE revoked_at IS NULL;

-- Refresh tokens are stored as SHA-256 of 256 random bits: unguessable, so a fast
-- hash is enough, and a stolen table yields nothing usable.
CREATE TABLE refresh_tokens
(
    id         uuid PRIMARY KEY,
    session_id uuid        NOT NULL REFERENCES sessions (id),
    token_hash bytea       NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    used_at    timestamptz
);
CREATE INDEX refresh_tokens_session_idx ON refresh_tokens (session_id);

-- API keys are `vlk_<prefix>_<secret>`: the prefix finds the row, the secret is
-- checked against its SHA-256.
CREATE TABLE api_keys
(
    id          uuid PRIMARY KEY,
    tenant_id   uuid        NOT NULL REFERENCES tenants (id),
    user_id     uuid        NOT NULL REFERENCES users (id),
    name        text        NOT NULL CHECK (length(btrim(name)) BETWEEN 1 AND 100),
    prefix      text        NOT NULL UNIQUE,
    secret_hash bytea       NOT NULL,
    scopes      text[]      NOT NULL,
    expires_at  timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at  timestamptz
);
CREATE INDEX api_keys_tenant_idx ON api_keys (tenant_id, created_at);
