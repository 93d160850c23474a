-- The CA side (ca/service.c): a certificate issued through a process step records the step's
-- idempotency key (host->idempotency_key() of plugin.h), so that a retry of the step, or its run
-- after a crash, finds the certificate issued before instead of asking the CA for a second one
-- (reliability.md R5 and R6). The row is inserted, with its key, before the certificate is handed
-- to the process; the unique index makes "find, else insert" safe when two runs race.
-- Certificates that were pushed or imported have no key.

ALTER TABLE certificate ADD COLUMN idempotency_key TEXT;
CREATE UNIQUE INDEX certificate_idempotency ON certificate(idempotency_key)
    WHERE idempotency_key IS NOT NULL;
