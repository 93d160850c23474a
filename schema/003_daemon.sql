-- What certflowd adds: tenants, users (HTTP Basic with argon2id hashes, or a client certificate
-- mapped by issuer and subject DN), which processes a user may start, certificate templates, and
-- the certificate core objects pushed by a CA or issued through certflow.

CREATE TABLE tenant (
    id         TEXT PRIMARY KEY,
    name       TEXT,
    created_at INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE app_user (
    id            INTEGER PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    password_hash TEXT,      -- argon2id PHC string (libsodium); NULL: no Basic login
    cert_issuer   TEXT,      -- client certificate mapping, RFC 2253 DNs, after chain validation
    cert_subject  TEXT,
    is_admin      INTEGER NOT NULL DEFAULT 0 CHECK (is_admin = 0 OR is_admin = 1),
    created_at    INTEGER NOT NULL,
    UNIQUE (cert_issuer, cert_subject)
);

CREATE TABLE user_tenant (
    user_id   INTEGER NOT NULL REFERENCES app_user(id) ON DELETE CASCADE,
    tenant_id TEXT NOT NULL REFERENCES tenant(id) ON DELETE CASCADE,
    PRIMARY KEY (user_id, tenant_id)
) WITHOUT ROWID;

-- Processes a user may start, per tenant; process_key '*' means any.
CREATE TABLE user_process (
    user_id     INTEGER NOT NULL REFERENCES app_user(id) ON DELETE CASCADE,
    tenant_id   TEXT NOT NULL REFERENCES tenant(id) ON DELETE CASCADE,
    process_key TEXT NOT NULL,
    PRIMARY KEY (user_id, tenant_id, process_key)
) WITHOUT ROWID;

CREATE TABLE certificate_template (
    id         INTEGER PRIMARY KEY,
    tenant_id  TEXT NOT NULL REFERENCES tenant(id),
    name       TEXT NOT NULL,
    connector  TEXT NOT NULL DEFAULT 'embedded',
    settings   TEXT NOT NULL DEFAULT '{}', -- JSON: how to reach the CA
    procedure  TEXT NOT NULL DEFAULT '{}', -- JSON: validity, key policy, KU/EKU, subject/SAN policy
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    UNIQUE (tenant_id, name)
);

CREATE TABLE certificate (
    id          INTEGER PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenant(id),
    template_id INTEGER NOT NULL REFERENCES certificate_template(id),
    serial      TEXT NOT NULL,  -- upper-case hex, no separators
    issuer      TEXT NOT NULL,  -- RFC 2253
    subject     TEXT NOT NULL,  -- RFC 2253
    not_before  INTEGER NOT NULL,
    not_after   INTEGER NOT NULL,
    sha256      TEXT NOT NULL,  -- of the DER, lower-case hex
    der         BLOB NOT NULL,
    status      TEXT NOT NULL DEFAULT 'active' CHECK (status = 'active' OR status = 'revoked'),
    source      TEXT NOT NULL DEFAULT 'push',
    instance_id INTEGER REFERENCES process_instance(id),
    created_at  INTEGER NOT NULL,
    UNIQUE (tenant_id, sha256)
);
CREATE INDEX certificate_serial ON certificate(tenant_id, serial);
-- The incident hook finds the certificate whose push started an instance.
CREATE INDEX certificate_instance ON certificate(instance_id) WHERE instance_id IS NOT NULL;
