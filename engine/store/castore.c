/*
 * SQLite implementation of castore.h: the certificates table read and written by idempotency key,
 * searched and revoked for the CM REST subset. Statements are static strings prepared once
 * through cf__store_stmt(); the DER is bound without a copy and unbound before the function
 * returns, because the statement stays cached.
 *
 * Searches pick one of three statements by their most selective filter, so that SQLite can use
 * the index that fits (tenant and serial, tenant and subject key identifier, or the tenant
 * alone): an optional filter written as (?n IS NULL OR column = ?n) is right for every binding
 * but never drives an index.
 */
#include "store/castore.h"

#include <stdlib.h>
#include <string.h>

#include "store/internal.h"

/* The columns read_row() reads, in its order; the DER follows them. */
#define COLS                                                                                       \
    "c.id, c.tenant_id, c.template_id, t.name, c.serial, c.issuer, c.subject, c.not_before, "      \
    "c.not_after, c.sha256, c.status, c.source, c.instance_id, c.created_at, c.ski, "              \
    "c.revocation_reason, c.revoked_at, c.der"
#define DER_COL 17
#define FROM " FROM certificate c JOIN certificate_template t ON t.id = c.template_id "

static const char SQL_CERT_BY_KEY[] = "SELECT " COLS FROM "WHERE c.idempotency_key = ?1";

static const char SQL_CERT_INSERT_KEY[] =
    "INSERT INTO certificate(tenant_id, template_id, serial, issuer, subject, not_before, "
    "not_after, sha256, der, status, source, instance_id, created_at, idempotency_key, ski) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)";

static const char SQL_CERT_GET[] = "SELECT " COLS FROM "WHERE c.id = ?2 AND c.tenant_id = ?1";

/* ?1 tenant, ?2 serial, ?3 ski, ?4 one RDN of the subject, ?5 status; ?6 offset, ?7 limit.
 * An RDN matches the whole subject, its start up to a comma, its end after a comma, or a part
 * between two commas. (An escaped "\," inside a value could fake a boundary; OpenSSL escapes
 * every comma of a value that way, so a value would have to hold "\,CN=..." itself.) */
#define SEARCH_FILTERS                                                                             \
    "AND (?2 IS NULL OR c.serial = ?2) AND (?3 IS NULL OR c.ski = ?3) "                            \
    "AND (?4 IS NULL OR c.subject = ?4 OR substr(c.subject, 1, length(?4) + 1) = ?4 || ',' "       \
    "OR substr(c.subject, -(length(?4) + 1)) = ',' || ?4 "                                         \
    "OR instr(c.subject, ',' || ?4 || ',') > 0) "                                                  \
    "AND (?5 IS NULL OR c.status = ?5) "
#define SEARCH_PAGE "ORDER BY c.id DESC LIMIT ?7 OFFSET ?6"

static const char SQL_SEARCH_SERIAL[] =
    "SELECT " COLS FROM "WHERE c.tenant_id = ?1 AND c.serial = ?2 " SEARCH_FILTERS SEARCH_PAGE;
static const char SQL_SEARCH_SKI[] =
    "SELECT " COLS FROM "WHERE c.tenant_id = ?1 AND c.ski = ?3 " SEARCH_FILTERS SEARCH_PAGE;
static const char SQL_SEARCH_ALL[] =
    "SELECT " COLS FROM "WHERE c.tenant_id = ?1 " SEARCH_FILTERS SEARCH_PAGE;
static const char SQL_COUNT_SERIAL[] = "SELECT count(*) FROM certificate c "
                                       "WHERE c.tenant_id = ?1 AND c.serial = ?2 " SEARCH_FILTERS;
static const char SQL_COUNT_SKI[] = "SELECT count(*) FROM certificate c "
                                    "WHERE c.tenant_id = ?1 AND c.ski = ?3 " SEARCH_FILTERS;
static const char SQL_COUNT_ALL[] =
    "SELECT count(*) FROM certificate c WHERE c.tenant_id = ?1 " SEARCH_FILTERS;

/* The status condition makes the update and the "still active?" check one atomic step. */
static const char SQL_REVOKE[] =
    "UPDATE certificate SET status = 'revoked', revocation_reason = ?3, revoked_at = ?4 "
    "WHERE id = ?2 AND tenant_id = ?1 AND status = 'active'";
static const char SQL_STATUS[] = "SELECT status FROM certificate WHERE id = ?2 AND tenant_id = ?1";

static void read_row(sqlite3_stmt *p, struct cf_cert_row *out)
{
    memset(out, 0, sizeof *out);
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
    out->ski = cf__store_col_text(p, 14);
    out->revocation_reason = sqlite3_column_int(p, 15);
    out->revoked_at = (uint64_t)sqlite3_column_int64(p, 16);
    int n = sqlite3_column_bytes(p, DER_COL);
    const void *b = sqlite3_column_blob(p, DER_COL);
    out->der = cf_xmemdup(b ? b : "", (size_t)n);
    out->der_len = (size_t)n;
}

int cf_castore_cert_by_key(struct cf_store *s, const char *key, struct cf_cert_row *out)
{
    memset(out, 0, sizeof *out);
    if (!key)
        return CF_EINVAL;
    sqlite3_stmt *p = cf__store_stmt(s, SQL_CERT_BY_KEY);
    cf__store_bind_text(p, 1, key);
    int rc = cf__store_one_row(s, p);
    if (!rc)
        read_row(p, out);
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
    cf__store_bind_text(p, 15, r->ski);
    int rc = cf__store_run(s, p);
    sqlite3_clear_bindings(p);
    if (!rc) {
        r->id = sqlite3_last_insert_rowid(cf__store_db(s));
        r->created_at = now;
    }
    return rc;
}

static void bind_search(sqlite3_stmt *p, const struct cf_castore_search *q)
{
    cf__store_bind_text(p, 1, q->tenant_id);
    cf__store_bind_text(p, 2, q->serial);
    cf__store_bind_text(p, 3, q->ski);
    cf__store_bind_text(p, 4, q->subject_rdn);
    cf__store_bind_text(p, 5, q->status);
}

int cf_castore_cert_search(struct cf_store *s, const struct cf_castore_search *q, cf_cert_row_fn fn,
                           void *arg, int64_t *total)
{
    if (!q || !q->tenant_id)
        return CF_EINVAL;
    const char *list = q->serial ? SQL_SEARCH_SERIAL : q->ski ? SQL_SEARCH_SKI : SQL_SEARCH_ALL;
    const char *count = q->serial ? SQL_COUNT_SERIAL : q->ski ? SQL_COUNT_SKI : SQL_COUNT_ALL;
    if (total) {
        sqlite3_stmt *p = cf__store_stmt(s, count);
        bind_search(p, q);
        int rc = cf__store_one_row(s, p);
        *total = rc ? 0 : sqlite3_column_int64(p, 0);
        sqlite3_reset(p);
        if (rc)
            return rc;
    }
    if (q->limit <= 0)
        return 0;
    sqlite3_stmt *p = cf__store_stmt(s, list);
    bind_search(p, q);
    sqlite3_bind_int64(p, 6, q->offset > 0 ? q->offset : 0);
    sqlite3_bind_int64(p, 7, q->limit);
    int rc;
    while ((rc = sqlite3_step(p)) == SQLITE_ROW) {
        struct cf_cert_row r;
        read_row(p, &r);
        int e = fn(arg, &r);
        cf_cert_row_free(&r);
        if (e) {
            sqlite3_reset(p);
            return e;
        }
    }
    int e = cf__store_map_rc(rc);
    sqlite3_reset(p);
    return e;
}

int cf_castore_cert_get(struct cf_store *s, const char *tenant_id, int64_t id,
                        struct cf_cert_row *out)
{
    memset(out, 0, sizeof *out);
    if (!tenant_id)
        return CF_EINVAL;
    sqlite3_stmt *p = cf__store_stmt(s, SQL_CERT_GET);
    cf__store_bind_text(p, 1, tenant_id);
    sqlite3_bind_int64(p, 2, id);
    int rc = cf__store_one_row(s, p);
    if (!rc)
        read_row(p, out);
    sqlite3_reset(p);
    return rc;
}

int cf_castore_cert_revoke(struct cf_store *s, const char *tenant_id, int64_t id, int reason,
                           uint64_t now)
{
    if (!tenant_id || reason < 0 || reason == 2 || reason == 7 || reason == 8 || reason > 9)
        return CF_EINVAL;
    sqlite3_stmt *p = cf__store_stmt(s, SQL_REVOKE);
    cf__store_bind_text(p, 1, tenant_id);
    sqlite3_bind_int64(p, 2, id);
    sqlite3_bind_int(p, 3, reason);
    sqlite3_bind_int64(p, 4, (sqlite3_int64)now);
    int rc = cf__store_run(s, p);
    if (rc)
        return rc == CF_EEXIST ? CF_EINVAL : rc;
    if (sqlite3_changes(cf__store_db(s)) > 0)
        return 0;
    /* Nothing changed: say why, for the caller's answer. */
    p = cf__store_stmt(s, SQL_STATUS);
    cf__store_bind_text(p, 1, tenant_id);
    sqlite3_bind_int64(p, 2, id);
    rc = cf__store_one_row(s, p);
    sqlite3_reset(p);
    return rc ? rc : CF_ESTATE;
}
