-- The CA side (ca/service.c): a certificate issued through a process step records the step's
-- idempotency key (host->idempotency_key() of plugin.h), so that a retry of the step, or its run
-- after a crash, finds the certificate issued before instead of asking the CA for a second one
-- (reliability.md R5 and R6). The row is inserted, with its key, before the certificate is handed
-- to the process; the unique index makes "find, else insert" safe when two runs race.
-- Certificates that were pushed, imported or issued through the CM REST subset have no key.

ALTER TABLE certificate ADD COLUMN idempotency_key TEXT;
CREATE UNIQUE INDEX certificate_idempotency ON certificate(idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- Revocation as the CM REST subset (docs/cm-rest.md) records it: the RFC 5280 CRLReason code and
-- the time (milliseconds since the epoch), both set together with status 'revoked'. The CHECK is
-- an OR chain, not an IN list: SQLite 3.40 builds a temporary b-tree per row for IN lists.
ALTER TABLE certificate ADD COLUMN revocation_reason INTEGER
    CHECK (revocation_reason IS NULL OR revocation_reason = 0 OR revocation_reason = 1
           OR revocation_reason = 3 OR revocation_reason = 4 OR revocation_reason = 5
           OR revocation_reason = 6 OR revocation_reason = 9);
ALTER TABLE certificate ADD COLUMN revoked_at INTEGER;

-- The subjectKeyIdentifier extension's value as upper-case hex, NULL when the certificate has
-- none: how a CM client finds the certificate of a key (GET /certificates?subjectKeyIdentifier=)
-- without issuing twice.
ALTER TABLE certificate ADD COLUMN ski TEXT;
CREATE INDEX certificate_ski ON certificate(tenant_id, ski);
