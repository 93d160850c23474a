/*
 * CA connectors: the one interface through which certflow asks a CA for a certificate
 * (DESIGN.md §7). A certificate template names a connector kind ("embedded", "cmp", "cm-rest")
 * and its settings; ca/service.c resolves the template, picks the connector of that kind and
 * hands it a request. Every connector classifies its failures the same way (ca/ca.h), so that a
 * process's boundary events mean the same whatever CA sits behind a template:
 *   CF_CA_CONNECTION_FAILED  cannot reach or talk to the CA (refused, TLS, timeout, garbled answer,
 *                            for the embedded CA an unreadable key); retried by the task
 *   CF_CA_REQUEST_FAILED     the CA answered no (key size, key usage, policy, duplicate)
 *   CF_CA_COMMON_ERROR       no valid request could be made (bad CSR, missing data)
 *
 * Kinds and connectors. A kind is static: its name, a check of a template's settings (for the
 * templates CLI and API, without any loop), whether it can carry a modified request, and how to
 * create a connector. A connector is one live instance on a loop, created by ca/service.c when it
 * is attached to an engine, and shared by every template of its kind.
 *
 * Requests are asynchronous on the loop: issue() returns 0 and later calls `done` exactly once on
 * the loop thread, or returns a negative CF_E* code and never calls it. Slow work (signing) goes
 * to the libuv thread pool; network I/O runs on the loop. Everything a request points to stays
 * valid until `done` has run; the result and its buffers are valid during `done` only.
 *
 * Idempotency (reliability.md R5, R6): the request carries the step's idempotency key and, when
 * the certificates store already holds a certificate for that key, its DER (known_der). A
 * connector given known_der returns that certificate (replayed), after checking that it certifies
 * the CSR's key, instead of asking the CA again; a connector that talks to a remote CA also uses
 * the key to reconcile a request whose answer was lost (CMP transactionID, cm-rest search).
 *
 * Shutdown: shutdown() stops what can be stopped (queued work, open connections); requests under
 * way still call `done`, with CF_CA_CONNECTION_FAILED when they were cut short. free() runs only
 * once no request is under way.
 */
#ifndef CF_CA_CONNECTOR_H
#define CF_CA_CONNECTOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <uv.h>

#include "ca/ca.h"
#include "ca/embedded.h"
#include "ca/policy.h"
#include "ca/x509.h"

struct cf_ca_connector;

/* What connectors are created with. */
struct cf_ca_connector_env {
    uv_loop_t *loop;
    const char *ca_dir;                /* the embedded CA's directory */
    const struct cf_ca_secret *secret; /* its passphrase source; NULL: the directory's own file */
};

struct cf_ca_conn_request {
    const char *tenant_id;     /* for messages and for connectors with per-tenant state */
    const char *template_name; /* for messages */
    const json_t *settings;    /* the template's settings, accepted by the kind's check */
    const struct cf_ca_policy *policy;
    const uint8_t *csr; /* PEM or DER, at most CF_CSR_MAX_BYTES */
    size_t csr_len;
    const struct cf_ca_overrides *overrides; /* NULL: subject and SANs from the CSR */
    const char *idempotency_key;             /* never NULL */
    const uint8_t *known_der;                /* the certificate stored for the key, or NULL */
    size_t known_der_len;
    /* 1: the step's first run. More: a retry, or a run after a crash or stop, so the CA may
     * already hold this request (cf_call_attempt()); a remote connector then reconciles before it
     * sends again (cm-rest: searches the CA for a certificate of the CSR's key). */
    int attempt;
};

struct cf_ca_conn_result {
    enum cf_ca_status status;
    const char *message; /* what went wrong, for people; NULL when OK */
    /* OK only: the certificate, its facts, its PEM text, and the chain as a DER PKCS#7 certs-only
     * bundle (certificate first, then the CAs up to the root). */
    const uint8_t *der;
    size_t der_len;
    const struct cf_cert_info *info;
    const char *pem;
    const uint8_t *chain_p7;
    size_t chain_p7_len;
    bool replayed; /* the certificate is known_der, not a new one */
};

typedef void (*cf_ca_conn_done_fn)(void *arg, const struct cf_ca_conn_result *res);

/* A revocation: the certificate (DER) and an RFC 5280 CRLReason code (0 unspecified,
 * 1 keyCompromise, 3 affiliationChanged, 4 superseded, 5 cessationOfOperation, 6 certificateHold,
 * 9 privilegeWithdrawn). Same lifetime rules as an issue request. */
struct cf_ca_conn_revoke {
    const char *tenant_id;
    const char *template_name;
    const json_t *settings;
    const uint8_t *der;
    size_t der_len;
    int reason;
};

/* The outcome of a revocation: status CF_CA_OK, or a failure class with its message. */
typedef void (*cf_ca_conn_revoked_fn)(void *arg, enum cf_ca_status status, const char *message);

/* A fetch: the certificate the CA issued with this serial number, as hex of the serial's bytes
 * (upper-case as struct cf_cert_info writes it; lower case and leading zeros are taken too). Same
 * lifetime rules as an issue request. */
struct cf_ca_conn_fetch {
    const char *tenant_id;
    const char *template_name;
    const json_t *settings;
    const char *serial;
};

struct cf_ca_connector_ops {
    int (*issue)(struct cf_ca_connector *c, const struct cf_ca_conn_request *req,
                 cf_ca_conn_done_fn done, void *arg);
    /* Asks the CA to revoke a certificate it issued. NULL: the kind cannot (the embedded CA's
     * revocations are rows of the certificates store, made by its caller). Same asynchronous
     * contract as issue(). */
    int (*revoke)(struct cf_ca_connector *c, const struct cf_ca_conn_revoke *req,
                  cf_ca_conn_revoked_fn done, void *arg);
    /* Gets a certificate the CA issued, by its serial number, with its chain: the result of an
     * issue (never `replayed`), revoked certificates included. Failures: the CA unreachable or
     * its answer garbled CF_CA_CONNECTION_FAILED, the CA has no certificate of that serial
     * CF_CA_REQUEST_FAILED, serial text that is not hex CF_CA_COMMON_ERROR (said through `done`,
     * without I/O). NULL: the kind cannot (cmp has no message for it; the embedded CA's
     * certificates are rows of the certificates store). Same asynchronous contract as issue(). */
    int (*fetch)(struct cf_ca_connector *c, const struct cf_ca_conn_fetch *req,
                 cf_ca_conn_done_fn done, void *arg);
    void (*shutdown)(struct cf_ca_connector *c);
    void (*free)(struct cf_ca_connector *c);
};

struct cf_ca_connector_kind {
    const char *name;
    /* Whether this build has the kind's protocol client. Templates of a kind that is not
     * available can be stored; their requests fail with CF_CA_CONNECTION_FAILED and say why. */
    bool available;
    /* The settings that hold secrets (shared secrets, key passwords), NULL-terminated: stored,
     * used, never shown (the API and the CLI print "***"). */
    const char *const *secret_fields;
    /* 0 when `settings` (a JSON object) suits the kind; CF_EINVAL with a message that names the
     * field ("settings.server: ...") otherwise. */
    int (*check_settings)(const json_t *settings, char *err, size_t errlen);
    /* 1 when the kind can carry a modified request (subject and SANs other than the CSR's),
     * 0 when not, with the reason in `why`. */
    int (*supports_override)(const json_t *settings, char *why, size_t whylen);
    int (*create)(const struct cf_ca_connector_env *env, struct cf_ca_connector **out, char *err,
                  size_t errlen);
};

struct cf_ca_connector {
    const struct cf_ca_connector_ops *ops;
    const struct cf_ca_connector_kind *kind;
};

/* The kind of that name, or NULL. */
const struct cf_ca_connector_kind *cf_ca_connector_kind(const char *name);
/* The kinds, NULL-terminated, in the order the manual lists them. */
const struct cf_ca_connector_kind *const *cf_ca_connector_kinds(void);
/* "embedded, cmp, cm-rest", for messages. */
const char *cf_ca_connector_names(void);

/*
 * Checks a certificate template before it is stored (the templates CLI and API): the connector
 * kind exists, its settings suit it, and the procedure parses (ca/policy.h). NULL settings or
 * procedure mean {}. 0, or CF_EINVAL with a message that names the field at fault
 * ("settings.server: ...", "procedure.keyTypes.RSA: ..."). *unavailable (may be NULL) is set
 * when this build has no client for the kind yet, so that the caller can say so.
 */
int cf_ca_template_check(const char *connector, const json_t *settings, const json_t *procedure,
                         bool *unavailable, char *err, size_t errlen);

/*
 * Secret settings at rest (store/seal.h): before a template is stored, its kind's secret_fields
 * are sealed, bound to (tenant, template name, field), so the database never holds them in clear;
 * the service opens them when it loads the template for its connector. A value that is already
 * sealed is kept as it is (a template read back and written again).
 *
 * cf_ca_settings_seal: `settings` is the JSON text to store (NULL: nothing to do, *out = NULL);
 * *out is the text to store instead (free()). cf_ca_settings_open: opens the sealed values of
 * `settings` in place. Both: 0, or a CF_E* code with a message naming the field (never a value).
 */
struct cf_store;
int cf_ca_settings_seal(struct cf_store *s, const char *tenant, const char *name,
                        const char *connector, const char *settings, char **out, char *err,
                        size_t errlen);
int cf_ca_settings_open(struct cf_store *s, const char *tenant, const char *name,
                        const char *connector, json_t *settings, char *err, size_t errlen);

/* The kinds, defined next to their connectors (ca/conn_embedded.c, ca/conn_remote.c). */
extern const struct cf_ca_connector_kind cf__ca_kind_embedded;
extern const struct cf_ca_connector_kind cf__ca_kind_cmp;
extern const struct cf_ca_connector_kind cf__ca_kind_cm_rest;

#endif
