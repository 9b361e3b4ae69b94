CREATE TABLE tenants
(
    id         uuid PRIMARY KEY,
    slug       text        NOT NULL UNIQUE
        CHECK (slug ~ '^[a-z0-9][a-z0-9-]{0,61}[a-z0-9]$'),
    name       text        NOT NULL CHECK (length(btrim(name)) BETWEEN 1 AND 200),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE users
(
    id            uuid PRIMARY KEY,
    tenant_id     uuid        NOT NULL REFERENCES tenants (id),
    email         text        NOT NULL CHECK (email = lower(email) AND position('@' IN email) > 1),
    password_hash text        NOT NULL,
    role          text        NOT NULL CHECK (role IN ('admin', 'security_lead', 'analyst', 'viewer')),
    active        boolean     NOT NULL DEFAULT true,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- Login takes an email without a tenant, so an email names one user across tenants.
CREATE UNIQUE INDEX users_email_key ON users (email);
CREATE INDEX users_tenant_idx ON users (tenant_id);
