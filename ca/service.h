/*
 * The host side of the plug-in ABI's "ca" service (certflow/plugin.h): what
 * executePKCS10RequestTask and its kin call to get a certificate through a certificate template.
 * Attached to an engine, it offers the service to every plug-in call of that engine and, for each
 * request:
 *   1. looks the template up by (tenant of the call, name) in the store, and parses its settings
 *      and procedure (cached until the template changes);
 *   2. looks for a certificate already issued with the call's idempotency key (castore.h), which
 *      the connector then returns instead of issuing again (a retried or resumed step);
 *   3. asks the template's connector (ca/connector.h: embedded, cmp, cm-rest) for the certificate;
 *   4. stores a new certificate as a certificate core object, with the key, through the engine's
 *      next batch transaction (cf_engine_submit), and only after that commit hands the result to
 *      the task: a certificate is never given to a process before it is stored.
 *
 * Tenants: a call of an instance without a tenant ("" — `certflow run`, or a deployment made
 * without one) uses the templates of CF_CA_DEFAULT_TENANT, and its certificates are stored there:
 * the tenant certflowd creates at its first start and `certflow templates` edits by default.
 *
 * The embedded CA lives in the `ca_dir` given at attach (certflowd: <data_dir>/ca; the CLI: a "ca"
 * folder next to its database file) and is created with defaults, with an INFO log line, the first
 * time a certificate is asked for there; `certflow ca init` creates it explicitly.
 *
 * Lifetime and threads: everything runs on the engine's loop thread. cf_ca_service_detach() must
 * be called right after cf_engine_close() and before the loop runs again: requests still waiting
 * for their CA then end (their task sees CaConnectionFailed; the engine has given up on the call
 * anyway and runs the step again at the next start), and the service frees itself once the work
 * it queued has come back.
 */
#ifndef CF_CA_SERVICE_H
#define CF_CA_SERVICE_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/x509.h>

#include "ca/embedded.h"
#include "run/engine.h"

#define CF_CA_DEFAULT_TENANT "default"

struct cf_ca_svc;

/* Offers the "ca" service on `e`, with the embedded CA in `ca_dir`. 0, or a CF_E* code with a
 * message in `err`. */
int cf_ca_service_attach(struct cf_engine *e, const char *ca_dir, struct cf_ca_svc **out, char *err,
                         size_t errlen);
/* See "Lifetime" above. NULL is a no-op. */
void cf_ca_service_detach(struct cf_ca_svc *svc);

/*
 * Issuing for a caller inside certflow that is not a plug-in (the CM REST subset of certflowd,
 * engine/api/cmrest.c). The same path as a task's request, without an idempotency key: the
 * template `template_name` of `tenant` (NULL or "": CF_CA_DEFAULT_TENANT) is resolved, and must
 * use the "embedded" connector (any other is refused with CF_CA_COMMON_ERROR and a message that
 * says so: relaying to another CA is not what this is for); the CSR (PEM or DER) is issued off the
 * loop; the certificate is stored through the engine's batch transaction with `source` (NULL: the
 * connector's name) and no idempotency key; and `done` runs after that commit.
 *
 * Returns 0 and later calls `done` exactly once on the loop thread, also for every failure found
 * on the way (its class and message in the result); or returns CF_EINVAL (bad arguments) or
 * CF_ESTATE (the service is detached) and never calls it. The result and its buffers are valid
 * during `done` only. A request under way when the service is detached ends with
 * CF_CA_CONNECTION_FAILED.
 */
struct cf_ca_issue_result {
    enum cf_ca_status status; /* CF_CA_OK, or the class of the failure (ca/ca.h) */
    const char *message;      /* for failures: what went wrong, for people; NULL when OK */
    int64_t cert_id;          /* the stored certificate core object */
    const uint8_t *der;       /* the certificate */
    size_t der_len;
    const uint8_t
        *chain_p7; /* DER PKCS#7 certs-only: the certificate, then its CAs up to the root */
    size_t chain_p7_len;
    const char *pem_chain; /* PEM: the certificate, then its CAs up to the root */
};
typedef void (*cf_ca_issue_done_fn)(void *arg, const struct cf_ca_issue_result *res);
int cf_ca_service_issue(struct cf_ca_svc *svc, const char *tenant, const char *template_name,
                        const uint8_t *csr, size_t len, const char *source,
                        cf_ca_issue_done_fn done, void *arg);

/*
 * The chain of a stored certificate as the embedded CA in `ca_dir` would hand it out: a DER
 * PKCS#7 certs-only bundle and PEM text, each with the certificate first, then the issuing CA and
 * the root when the embedded CA's issuing certificate (embedded.h's issuing.pem) is the one that
 * issued it, else the certificate alone (pushed certificates, or ones of a CA that was replaced).
 * Reads the CA's public certificate files, so it blocks: call it off the loop thread. 0, or a
 * CF_E* code with a message in `err`; the caller frees *p7 and *pem.
 */
int cf_ca_service_chain(const char *ca_dir, const uint8_t *der, size_t len, uint8_t **p7,
                        size_t *p7_len, char **pem, char *err, size_t errlen);
/* The embedded CA's directory given at attach. */
const char *cf_ca_service_ca_dir(const struct cf_ca_svc *svc);

/* The passphrase source of the embedded CA as certflow's programs use it: the systemd credential
 * CF_CA_CREDENTIAL_NAME when $CREDENTIALS_DIRECTORY holds it (its path goes into `buf`), else
 * $CF_CA_PASSPHRASE_ENV when that is set, else neither (the CA directory's own passphrase file). */
void cf_ca_service_secret(struct cf_ca_secret *out, char *buf, size_t buflen);

/* "AB:CD:...": the SHA-256 fingerprint of a certificate as `openssl x509 -fingerprint -sha256`
 * prints it; "" when it cannot be computed. */
#define CF_CA_FPR_LEN 96
void cf_ca_fingerprint(const X509 *x, char out[CF_CA_FPR_LEN]);

#endif
