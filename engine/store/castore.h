/*
 * The certificates store as the CA side's ledger (schema/004_ca.sql): certificates issued through
 * a process step are found again by the step's idempotency key, so that a retried or resumed step
 * gets the certificate it was issued instead of a second one (ca/service.c). Everything else about
 * certificates and templates is admin.h's; this file adds only the queries by key.
 *
 * Ownership: rows are filled into the caller's struct cf_cert_row (admin.h) and released with
 * cf_cert_row_free(). Like the rest of the store, these run on the thread that owns the store.
 */
#ifndef CF_STORE_CASTORE_H
#define CF_STORE_CASTORE_H

#include <stdint.h>

#include "store/admin.h"

/* The certificate recorded with idempotency key `key`, with its DER and template name.
 * CF_ENOENT when there is none; another CF_E* code when the store cannot be read. */
int cf_castore_cert_by_key(struct cf_store *s, const char *key, struct cf_cert_row *out);

/* Inserts `r` as cf_admin_cert_insert() does (id, template_name and created_at ignored; NULL
 * status and source mean "active" and "push"), recording `key` (NULL: none) with it; sets r->id.
 * CF_EEXIST when a certificate with that key, or with the same SHA-256 in the tenant, exists. */
int cf_castore_cert_insert(struct cf_store *s, struct cf_cert_row *r, const char *key,
                           uint64_t now);

#endif
