/*
 * The certificates store as the CA side's ledger (schema/004_ca.sql): certificates issued through
 * a process step are found again by the step's idempotency key, so that a retried or resumed step
 * gets the certificate it was issued instead of a second one (ca/service.c); and the queries the
 * Certificate Manager REST subset (docs/cm-rest.md, engine/api/cmrest.c) needs: search within one
 * tenant by serial, subject key identifier, common name and status, one certificate by id within
 * a tenant, and revocation. Everything else about certificates and templates is admin.h's.
 *
 * Tenancy: every function that reads by id or searches takes the one tenant the caller has
 * already checked; a certificate of another tenant is CF_ENOENT, exactly like one that does not
 * exist.
 *
 * Ownership: rows are filled into the caller's struct cf_cert_row (admin.h) and released with
 * cf_cert_row_free(); rows handed to callbacks are borrowed for the duration of the call. Like the
 * rest of the store, these run on the thread that owns the store.
 */
#ifndef CF_STORE_CASTORE_H
#define CF_STORE_CASTORE_H

#include <stdint.h>

#include "store/admin.h"

/* The certificate recorded with idempotency key `key`, with its DER and template name.
 * CF_ENOENT when there is none; another CF_E* code when the store cannot be read. */
int cf_castore_cert_by_key(struct cf_store *s, const char *key, struct cf_cert_row *out);

/* Inserts `r` as cf_admin_cert_insert() does (id, template_name and created_at ignored; NULL
 * status and source mean "active" and "push"; r->ski stored as given), recording `key` (NULL:
 * none) with it; sets r->id. CF_EEXIST when a certificate with that key, or with the same SHA-256
 * in the tenant, exists. */
int cf_castore_cert_insert(struct cf_store *s, struct cf_cert_row *r, const char *key,
                           uint64_t now);

/* A search of one tenant's certificates; NULL fields do not filter. Texts are compared exactly,
 * so callers normalise first (serial and ski as upper-case hex without separators, as stored). */
struct cf_castore_search {
    const char *tenant_id; /* required */
    const char *serial;
    const char *ski;
    /* One attribute in RFC 2253 text, escaped as OpenSSL's XN_FLAG_RFC2253 writes it
     * ("CN=a.example"): matches a subject that has it as one of its comma-separated RDNs. */
    const char *subject_rdn;
    const char *status; /* "active" or "revoked" */
    int64_t offset;     /* rows to skip */
    int64_t limit;      /* at most this many rows; <= 0: none */
};

/* The certificates matching `q`, newest first, each with its DER and template name; *total (may
 * be NULL) gets the number of matches without offset and limit. A callback's non-zero return
 * stops the walk and is returned. */
int cf_castore_cert_search(struct cf_store *s, const struct cf_castore_search *q, cf_cert_row_fn fn,
                           void *arg, int64_t *total);

/* Certificate `id` of `tenant_id`, with its DER. CF_ENOENT when the tenant has none with that id.
 */
int cf_castore_cert_get(struct cf_store *s, const char *tenant_id, int64_t id,
                        struct cf_cert_row *out);

/* Revokes certificate `id` of `tenant_id`: status "revoked", the RFC 5280 CRLReason `reason`
 * (0, 1, 3, 4, 5, 6 or 9) and revoked_at = `now`, in one statement that changes an active
 * certificate only, so that two revocations cannot both succeed. CF_ENOENT when the tenant has no
 * such certificate, CF_ESTATE when it is already revoked, CF_EINVAL for another reason code. */
int cf_castore_cert_revoke(struct cf_store *s, const char *tenant_id, int64_t id, int reason,
                           uint64_t now);

#endif
