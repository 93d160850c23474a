/*
 * The store's admin tables (schema/003_daemon.sql): tenants, users and what they may do,
 * certificate templates, and the certificate core objects. Like store.h, every statement lives in
 * store/ (admin.c); callers see rows and callbacks only.
 *
 * Tenancy: functions that read objects a caller asked for by id take the caller's tenants
 * (`tenants`, `n_tenants`) and answer CF_ENOENT for an object of another tenant, exactly as for
 * one that does not exist, so that ids cannot be probed. Functions that take one `tenant_id`
 * expect the caller to have checked that tenant already.
 *
 * Passwords: only argon2id PHC strings (libsodium crypto_pwhash_str) are stored. Hashing and
 * verifying take tens of milliseconds and 64 MiB by design, so call cf_admin_password_hash() and
 * cf_admin_password_verify() off the loop thread (uv_queue_work); they touch no database and are
 * thread-safe. Everything else here runs on the thread that owns the store.
 *
 * Ownership: rows filled by these functions are owned by the caller and released with the
 * matching *_free function (which accepts a zeroed row); rows handed to callbacks are borrowed
 * for the duration of the call. Strings passed in are copied.
 */
#ifndef CF_STORE_ADMIN_H
#define CF_STORE_ADMIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

/* Size of an argon2id PHC string including its NUL (crypto_pwhash_STRBYTES). */
#define CF_PASSWORD_HASH_LEN 128

/* Hashes `password` with argon2id (libsodium's interactive limits). 0, or CF_ENOMEM when the
 * memory the hash needs cannot be had. Thread-safe; slow by design. */
int cf_admin_password_hash(const char *password, char out[CF_PASSWORD_HASH_LEN]);
/* 0 when `password` matches `hash`, CF_EAUTH otherwise (also for a malformed hash).
 * Thread-safe; slow by design. */
int cf_admin_password_verify(const char *hash, const char *password);

/* Tenants. */
struct cf_tenant_row {
    char *id;
    char *name;
    uint64_t created_at;
};
void cf_tenant_row_free(struct cf_tenant_row *r);
/* CF_EEXIST when the id is taken. `name` may be NULL. */
int cf_admin_tenant_create(struct cf_store *s, const char *id, const char *name, uint64_t now);
/* 0 when the tenant exists, CF_ENOENT otherwise. */
int cf_admin_tenant_exists(struct cf_store *s, const char *id);
typedef int (*cf_tenant_row_fn)(void *arg, const struct cf_tenant_row *r);
/* All tenants ordered by id; a callback's non-zero return stops the walk and is returned. */
int cf_admin_tenant_list(struct cf_store *s, cf_tenant_row_fn fn, void *arg);

/* Users. A user logs in with HTTP Basic when it has a password hash, and with a client
 * certificate when (cert_issuer, cert_subject) are set (RFC 2253 DNs, matched after chain
 * validation). */
struct cf_user_row {
    int64_t id;
    char *name;
    char *password_hash; /* NULL: no Basic login; never leave the store in an answer */
    char *cert_issuer;   /* NULL when no certificate is mapped */
    char *cert_subject;
    bool admin;
    uint64_t created_at;
};
void cf_user_row_free(struct cf_user_row *r);
/* `password_hash` from cf_admin_password_hash(), or NULL. CF_EEXIST when the name is taken. */
int cf_admin_user_create(struct cf_store *s, const char *name, const char *password_hash,
                         bool admin, uint64_t now, int64_t *id);
/* CF_ENOENT when the user does not exist. `password_hash` NULL removes Basic login. */
int cf_admin_user_set_password(struct cf_store *s, int64_t user_id, const char *password_hash);
/* Maps a client certificate to the user (NULL, NULL removes the mapping). CF_EEXIST when that
 * certificate is mapped to another user; CF_ENOENT when the user does not exist. */
int cf_admin_user_set_cert(struct cf_store *s, int64_t user_id, const char *issuer,
                           const char *subject);
int cf_admin_user_set_admin(struct cf_store *s, int64_t user_id, bool admin);
/* Deletes the user with its tenants and process permissions. CF_ENOENT when none. */
int cf_admin_user_delete(struct cf_store *s, int64_t user_id);
int cf_admin_user_get(struct cf_store *s, int64_t user_id, struct cf_user_row *out);
int cf_admin_user_find_name(struct cf_store *s, const char *name, struct cf_user_row *out);
int cf_admin_user_find_cert(struct cf_store *s, const char *issuer, const char *subject,
                            struct cf_user_row *out);
typedef int (*cf_user_row_fn)(void *arg, const struct cf_user_row *r);
/* All users ordered by name. */
int cf_admin_user_list(struct cf_store *s, cf_user_row_fn fn, void *arg);

/* The tenants of a user, as a new array of new strings (free each, then the array with
 * cf_admin_strings_free). An empty list is *out = NULL, *n = 0. */
int cf_admin_user_tenants(struct cf_store *s, int64_t user_id, char ***out, size_t *n);
void cf_admin_strings_free(char **v, size_t n);
/* Adding an existing membership is not an error. CF_ENOENT when the user or tenant is missing. */
int cf_admin_user_add_tenant(struct cf_store *s, int64_t user_id, const char *tenant_id);
int cf_admin_user_remove_tenant(struct cf_store *s, int64_t user_id, const char *tenant_id);

/* Process permissions: `process_key` "*" means every process of the tenant. Granting twice is
 * not an error. */
int cf_admin_user_allow_process(struct cf_store *s, int64_t user_id, const char *tenant_id,
                                const char *process_key);
int cf_admin_user_disallow_process(struct cf_store *s, int64_t user_id, const char *tenant_id,
                                   const char *process_key);
/* 0 when the user may start `process_key` in `tenant_id` (a grant of that key or of "*"),
 * CF_EPERM otherwise. */
int cf_admin_user_may_start(struct cf_store *s, int64_t user_id, const char *tenant_id,
                            const char *process_key);
typedef int (*cf_user_process_fn)(void *arg, const char *tenant_id, const char *process_key);
int cf_admin_user_processes(struct cf_store *s, int64_t user_id, cf_user_process_fn fn, void *arg);

/* Certificate templates (DESIGN.md §7): a named CA connection and procedure per tenant.
 * `settings` and `procedure` are JSON texts, stored as given (callers validate them). */
struct cf_template_row {
    int64_t id;
    char *tenant_id;
    char *name;
    char *connector; /* "embedded", "cmp", "cm-rest" */
    char *settings;
    char *procedure;
    uint64_t created_at;
    uint64_t updated_at;
};
void cf_template_row_free(struct cf_template_row *r);
/* NULL connector/settings/procedure take the defaults ("embedded", "{}", "{}"). CF_EEXIST when
 * the tenant has a template of that name; CF_ENOENT when the tenant does not exist. */
int cf_admin_template_create(struct cf_store *s, const char *tenant_id, const char *name,
                             const char *connector, const char *settings, const char *procedure,
                             uint64_t now, int64_t *id);
/* Replaces the fields that are not NULL. CF_ENOENT when there is no such template. */
int cf_admin_template_update(struct cf_store *s, const char *tenant_id, const char *name,
                             const char *connector, const char *settings, const char *procedure,
                             uint64_t now);
int cf_admin_template_get(struct cf_store *s, const char *tenant_id, const char *name,
                          struct cf_template_row *out);
typedef int (*cf_template_row_fn)(void *arg, const struct cf_template_row *r);
/* The templates of the given tenants, ordered by tenant and name. */
int cf_admin_template_list(struct cf_store *s, const char *const *tenants, size_t n_tenants,
                           cf_template_row_fn fn, void *arg);
/* CF_ENOENT when there is no such template; CF_ESTATE while certificates still refer to it. */
int cf_admin_template_delete(struct cf_store *s, const char *tenant_id, const char *name);

/* Certificate core objects. */
struct cf_cert_row {
    int64_t id;
    char *tenant_id;
    int64_t template_id;
    char *template_name; /* filled on reads; ignored by insert */
    char *serial;        /* upper-case hex, no separators */
    char *issuer;        /* RFC 2253 */
    char *subject;       /* RFC 2253 */
    uint64_t not_before; /* ms since the epoch */
    uint64_t not_after;
    char sha256[65]; /* of the DER, lower-case hex */
    uint8_t *der;    /* NULL when read without DER */
    size_t der_len;
    char *status;        /* "active", "revoked"; NULL on insert means "active" */
    char *source;        /* "push", ...; NULL on insert means "push" */
    int64_t instance_id; /* the process started for it, or 0 */
    uint64_t created_at;
    char *ski; /* the subjectKeyIdentifier as upper-case hex (ca/x509.h cf_cert_key_id_hex()),
                  or NULL when the certificate has none; every insert should give it */
    /* Filled on reads, ignored by insert (a new certificate is not revoked): */
    int revocation_reason; /* RFC 5280 CRLReason code when status is "revoked" */
    uint64_t revoked_at;   /* ms since the epoch when status is "revoked", else 0 */
};
void cf_cert_row_free(struct cf_cert_row *r);
/* Inserts r (id, template_name and created_at ignored); sets r->id. CF_EEXIST when the tenant
 * already holds a certificate with the same SHA-256. */
int cf_admin_cert_insert(struct cf_store *s, struct cf_cert_row *r, uint64_t now);
int cf_admin_cert_set_instance(struct cf_store *s, int64_t cert_id, int64_t instance_id);
/* CF_ENOENT also when the certificate belongs to none of `tenants`. */
int cf_admin_cert_set_status(struct cf_store *s, const char *const *tenants, size_t n_tenants,
                             int64_t cert_id, const char *status);
int cf_admin_cert_get(struct cf_store *s, const char *const *tenants, size_t n_tenants,
                      int64_t cert_id, bool with_der, struct cf_cert_row *out);
/* Within one tenant, by the SHA-256 of the DER (lower-case hex); DER not loaded. */
int cf_admin_cert_find_sha256(struct cf_store *s, const char *tenant_id, const char *sha256,
                              struct cf_cert_row *out);

/* The certificate whose push started `instance_id`; DER not loaded. CF_ENOENT when none. */
int cf_admin_cert_find_instance(struct cf_store *s, int64_t instance_id, struct cf_cert_row *out);

/* Filters of a certificate listing; NULL / 0 fields do not filter. */
struct cf_cert_filter {
    const char *tenant_id; /* one of the caller's tenants only */
    const char *template_name;
    const char *serial;       /* exact, upper-case hex */
    const char *subject_like; /* substring of the subject DN */
    const char *issuer;       /* exact */
    const char *sha256;
    const char *status;
    uint64_t expires_before; /* not_after < this */
    uint64_t expires_after;  /* not_after >= this */
    int64_t first_result;    /* paging: rows to skip */
    int64_t max_results;     /* 0: no limit */
};
typedef int (*cf_cert_row_fn)(void *arg, const struct cf_cert_row *r);
/* Certificates of the given tenants matching `f` (may be NULL), newest first, without DER. */
int cf_admin_cert_list(struct cf_store *s, const char *const *tenants, size_t n_tenants,
                       const struct cf_cert_filter *f, cf_cert_row_fn fn, void *arg);
/* Number of certificates `cf_admin_cert_list` would list without paging. */
int cf_admin_cert_count(struct cf_store *s, const char *const *tenants, size_t n_tenants,
                        const struct cf_cert_filter *f, int64_t *count);

#endif
