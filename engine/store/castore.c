/*
 * SQLite implementation of castore.h: the certificates table read and written by idempotency key.
 * Statements are static strings prepared once through cf__store_stmt(); the DER is bound without
 * a copy and unbound before the function returns, because the statement stays cached.
 */
#include "store/castore.h"

#include <stdlib.h>
#include <string.h>

#include "store/internal.h"

static const char SQL_CERT_BY_KEY[] =
    "SELECT c.id, c.tenant_id, c.template_id, t.name, c.serial, c.issuer, c.subject, "
    "c.not_before, c.not_after, c.sha256, c.status, c.source, c.instance_id, c.created_at, c.der "
    "FROM certificate c JOIN certificate_template t ON t.id = c.template_id "
    "WHERE c.idempotency_key = ?1";

static const char SQL_CERT_INSERT_KEY[] =
    "INSERT INTO certificate(tenant_id, template_id, serial, issuer, subject, not_before, "
    "not_after, sha256, der, status, source, instance_id, created_at, idempotency_key) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)";

int cf_castore_cert_by_key(struct cf_store *s, const char *key, struct cf_cert_row *out)
{
    memset(out, 0, sizeof *out);
    if (!key)
        return CF_EINVAL;
    sqlite3_stmt *p = cf__store_stmt(s, SQL_CERT_BY_KEY);
    cf__store_bind_text(p, 1, key);
    int rc = cf__store_one_row(s, p);
    if (!rc) {
        out->id = sqlite3_column_int64(p, 0);
        out->tenant_id = cf__store_col_text(p, 1);
        out->template_id = sqlite3_column_int64(p, 2);
        out->template_name = cf__store_col_text(p, 3);
        out->serial = cf__store_col_text(p, 4);
        out->issuer = cf__store_col_text(p, 5);
        out->subject = cf__store_col_text(p, 6);
        out->not_before = (uint64_t)sqlite3_column_int64(p, 7);
        out->not_after = (uint64_t)sqlite3_column_int64(p, 8);
        const char *sha = cf__store_col_ctext(p, 9);
        cf_strlcpy(out->sha256, sha ? sha : "", sizeof out->sha256);
        out->status = cf__store_col_text(p, 10);
        out->source = cf__store_col_text(p, 11);
        out->instance_id = sqlite3_column_int64(p, 12);
        out->created_at = (uint64_t)sqlite3_column_int64(p, 13);
        int n = sqlite3_column_bytes(p, 14);
        const void *b = sqlite3_column_blob(p, 14);
        out->der = cf_xmemdup(b ? b : "", (size_t)n);
        out->der_len = (size_t)n;
    }
    sqlite3_reset(p);
    return rc;
}

int cf_castore_cert_insert(struct cf_store *s, struct cf_cert_row *r, const char *key, uint64_t now)
{
    sqlite3_stmt *p = cf__store_stmt(s, SQL_CERT_INSERT_KEY);
    cf__store_bind_text(p, 1, r->tenant_id);
    sqlite3_bind_int64(p, 2, r->template_id);
    cf__store_bind_text(p, 3, r->serial);
    cf__store_bind_text(p, 4, r->issuer);
    cf__store_bind_text(p, 5, r->subject);
    sqlite3_bind_int64(p, 6, (sqlite3_int64)r->not_before);
    sqlite3_bind_int64(p, 7, (sqlite3_int64)r->not_after);
    cf__store_bind_text(p, 8, r->sha256);
    sqlite3_bind_blob(p, 9, r->der ? (const void *)r->der : "", (int)r->der_len, SQLITE_STATIC);
    cf__store_bind_text(p, 10, r->status ? r->status : "active");
    cf__store_bind_text(p, 11, r->source ? r->source : "push");
    cf__store_bind_id(p, 12, r->instance_id);
    sqlite3_bind_int64(p, 13, (sqlite3_int64)now);
    cf__store_bind_text(p, 14, key);
    int rc = cf__store_run(s, p);
    sqlite3_clear_bindings(p);
    if (!rc) {
        r->id = sqlite3_last_insert_rowid(cf__store_db(s));
        r->created_at = now;
    }
    return rc;
}
