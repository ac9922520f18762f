-- Issue 15, accounts and roles: users with roles and a second factor, many named and scoped API keys per
-- tenant, invitations, password resets and an audit log of every change.

-- People who sign in to the dashboard. The email is stored lower-cased (unique per tenant); the password
-- only as an argon2id hash; the TOTP seed sealed with SECRETS_KEY (iot.sealed), never in clear.
CREATE TABLE users (
    id             bigserial PRIMARY KEY,
    tenant_id      bigint NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    email          text NOT NULL CHECK (length(email) BETWEEN 3 AND 254 AND email = lower(email)),
    password_hash  text NOT NULL,
    role           text NOT NULL CHECK (role IN ('owner', 'admin', 'member', 'viewer')),
    totp_sealed    text,
    totp_enabled   boolean NOT NULL DEFAULT false,
    created_at     timestamptz NOT NULL DEFAULT now(),
    last_signin_at timestamptz,
    session_epoch  integer NOT NULL DEFAULT 0,   -- bumped by a password change or reset: older sessions end
    UNIQUE (tenant_id, email),
    CHECK (NOT totp_enabled OR totp_sealed IS NOT NULL)
);

-- API keys, separate from users: only the sha256 of the key is kept (keys are 32 random bytes), with the
-- first characters shown so a tenant can tell its keys apart.
CREATE TABLE api_keys (
    id            bigserial PRIMARY KEY,
    tenant_id     bigint NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name          text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    key_hash      text NOT NULL UNIQUE,
    prefix        text NOT NULL,
    scopes        text[] NOT NULL CHECK (cardinality(scopes) >= 1 AND scopes <@ ARRAY['read', 'write', 'ingest']),
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_used_at  timestamptz,
    revoked_at    timestamptz
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id, id);

-- Every existing client keeps working: the tenant's key becomes its first API key, with every scope.
INSERT INTO api_keys (tenant_id, name, key_hash, prefix, scopes, created_at)
SELECT id, 'original key', api_key_hash, 'iotk_…', ARRAY['read', 'write', 'ingest'], created_at FROM tenants;

CREATE TABLE invitations (
    id           bigserial PRIMARY KEY,
    tenant_id    bigint NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    email        text NOT NULL CHECK (length(email) BETWEEN 3 AND 254 AND email = lower(email)),
    role         text NOT NULL CHECK (role IN ('admin', 'member', 'viewer')),
    token_hash   text NOT NULL UNIQUE,
    invited_by   bigint REFERENCES users(id) ON DELETE SET NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    accepted_at  timestamptz
);
CREATE INDEX invitations_tenant ON invitations (tenant_id, id);

CREATE TABLE password_resets (
    id          bigserial PRIMARY KEY,
    tenant_id   bigint NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    user_id     bigint NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    token_hash  text NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz
);

-- Who changed what, when, from where. The actor's email or key name is copied in, so the row still reads
-- right after the user or key is gone.
CREATE TABLE audit_log (
    id          bigserial PRIMARY KEY,
    tenant_id   bigint NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    actor_kind  text NOT NULL CHECK (actor_kind IN ('user', 'api_key')),
    actor_id    bigint,
    actor_name  text NOT NULL,
    action      text NOT NULL,
    target      text NOT NULL DEFAULT '',
    details     jsonb NOT NULL DEFAULT '{}'::jsonb,
    ip          text,
    at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_log_tenant ON audit_log (tenant_id, id DESC);
