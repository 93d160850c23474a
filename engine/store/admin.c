/*
 * SQLite implementation of the admin tables (see admin.h): tenants, users, permissions, templates
 * and certificates. Statements are static strings prepared once through cf__store_stmt().
 *
 * Queries "within the caller's tenants" take the tenant list as one JSON array bound to a single
 * parameter and read it with json_each(), so that the SQL text stays static (and cached) whatever
 * the number of tenants; a PostgreSQL store would use json_array_elements_text() the same way.
 * Optional filters are written as (?n IS NULL OR column = ?n) for the same reason.
 */
#include "store/admin.h"

#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sodium.h>

#include "store/internal.h"

/* ---- passwords ------------------------------------------------------------------------------ */

int cf_admin_password_hash(const char *password, char out[CF_PASSWORD_HASH_LEN])
{
    if (sodium_init() < 0)
        return CF_ENOMEM;
    if (crypto_pwhash_str(out, password, strlen(password), crypto_pwhash_OPSLIMIT_INTERACTIVE,
                          crypto_pwhash_MEMLIMIT_INTERACTIVE) != 0)
        return CF_ENOMEM;
    return 0;
}

int cf_admin_password_verify(const char *hash, const char *password)
{
    if (sodium_init() < 0)
        return CF_EAUTH;
    /* crypto_pwhash_str_verify needs a NUL inside its fixed-size buffer; a longer string from a
     * damaged row is simply a mismatch. */
    if (!hash || strnlen(hash, CF_PASSWORD_HASH_LEN) >= CF_PASSWORD_HASH_LEN)
        return CF_EAUTH;
    char buf[CF_PASSWORD_HASH_LEN];
    memset(buf, 0, sizeof buf);
    memcpy(buf, hash, strlen(hash));
    return crypto_pwhash_str_verify(buf, password, strlen(password)) == 0 ? 0 : CF_EAUTH;
}

/* ---- helpers -------------------------------------------------------------------------------- */

/* The caller's tenants as a JSON array text for json_each(). */
static char *tenants_json(const char *const *tenants, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, json_string(tenants[i]));
    char *t = json_dumps(a, JSON_COMPACT);
    json_decref(a);
    return t ? t : cf_xstrdup("[]");
}

void cf_admin_strings_free(char **v, size_t n)
{
    if (!v)
        return;
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* ---- tenants -------------------------------------------------------------------------------- */

static const char SQL_TENANT_INSERT[] =
    "INSERT INTO tenant(id, name, created_at) VALUES (?1, ?2, ?3)";
static const char SQL_TENANT_EXISTS[] = "SELECT 1 FROM tenant WHERE id = ?1";
static const char SQL_TENANT_LIST[] = "SELECT id, name, created_at FROM tenant ORDER BY id";

void cf_tenant_row_free(struct cf_tenant_row *r)
{
    if (!r)
        return;
    free(r->id);
    free(r->name);
    memset(r, 0, sizeof *r);
}

int cf_admin_tenant_create(struct cf_store *s, const char *id, const char *name, uint64_t now)
{
    sqlite3_stmt *p = cf__store_stmt(s, SQL_TENANT_INSERT);
    cf__store_bind_text(p, 1, id);
    cf__store_bind_text(p, 2, name);
    sqlite3_bind_int64(p, 3, (sqlite3_int64)now);
    return cf__store_run(s, p);
}

int cf_admin_tenant_exists(struct cf_store *s, const char *id)
{
    sqlite3_stmt *p = cf__store_stmt(s, SQL_TENANT_EXISTS);
    cf__store_bind_text(p, 1, id);
    int rc = cf__store_one_row(s, p);
    sqlite3_reset(p);
    return rc;
}

int cf_admin_tenant_list(struct cf_store *s, cf_tenant_row_fn fn, void *arg)
{
    sqlite3_stmt *p = cf__store_stmt(s, SQL_TENANT_LIST);
    int rc;
    while ((rc = sqlite3_step(p)) == SQLITE_ROW) {
        struct cf_tenant_row r = {
            .id = (char *)cf__store_col_ctext(p, 0),
            .name = (char *)cf__store_col_ctext(p, 1),
            .created_at = (uint64_t)sqlite3_column_int64(p, 2),
        };
        int e = fn(arg, &r);
        if (e) {
            sqlite3_reset(p);
            return e;
        }
    }
    int e = cf__store_map_rc(rc);
    sqlite3_reset(p);
    return e;
}

/* ---- users ---------------------------------------------------------------------------------- */

#define USER_COLS "id, name, password_hash, cert_issuer, cert_subject, is_admin, created_at"

static const char SQL_USER_INSERT[] =
    "INSERT INTO app_user(name, password_hash, is_admin, created_at) VALUES (?1, ?2, ?3, ?4)";
static const char SQL_USER_SET_PASSWORD[] = "UPDATE app_user SET password_hash = ?2 WHERE id = ?1";
static const char SQL_USER_SET_CERT[] =
    "UPDATE app_user SET cert_issuer = ?2, cert_subject = ?3 WHERE id = ?1";
static const char SQL_USER_SET_ADMIN[] = "UPDATE app_user SET is_admin = ?2 WHERE id = ?1";
static const char SQL_USER_DELETE[] = "DELETE FROM app_user WHERE id = ?1";
static const char SQL_USER_GET[] = "SELECT " USER_COLS " FROM app_user WHERE id = ?1";
static const char SQL_USER_BY_NAME[] = "SELECT " USER_COLS " FROM app_user WHERE name = ?1";
static const char SQL_USER_BY_CERT[] =
    "SELECT " USER_COLS " FROM app_user WHERE cert_issuer = ?1 AND cert_subject = ?2";
static const char SQL_USER_LIST[] = "SELECT " USER_COLS " FROM app_user ORDER BY name";
static const char SQL_USER_TENANTS[] =
    "SELECT tenant_id FROM user_tenant WHERE user_id = ?1 ORDER BY tenant_id";
static const char SQL_USER_ADD_TENANT[] =
    "INSERT INTO user_tenant(user_id, tenant_id) VALUES (?1, ?2) ON CONFLICT DO NOTHING";
static const char SQL_USER_REMOVE_TENANT[] =
    "DELETE FROM user_tenant WHERE user_id = ?1 AND tenant_id = ?2";
static const char SQL_USER_ALLOW[] = "INSERT INTO user_process(user_id, tenant_id, process_key) "
                                     "VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING";
static const char SQL_USER_DISALLOW[] =
    "DELETE FROM user_process WHERE user_id = ?1 AND tenant_id = ?2 AND process_key = ?3";
static const char SQL_USER_MAY_START[] =
    "SELECT 1 FROM user_process WHERE user_id = ?1 AND tenant_id = ?2 "
    "AND (process_key = ?3 OR process_key = '*')";
static const char SQL_USER_PROCESSES[] = "SELECT tenant_id, process_key FROM user_process "
                                         "WHERE user_id = ?1 ORDER BY tenant_id, process_key";

void cf_user_row_free(struct cf_user_row *r)
{
    if (!r)
        return;
    free(r->name);
    if (r->password_hash) {
        /* A hash is not a password, but there is no reason to leave it lying in freed memory. */
        sodium_memzero(r->password_hash, strlen(r->password_hash));
        free(r->password_hash);
    }
    free(r->cert_issuer);
    free(r->cert_subject);
    memset(r, 0, sizeof *r);
}

static void read_user(sqlite3_stmt *p, struct cf_user_row *out)
{
    out->id = sqlite3_column_int64(p, 0);
    out->name = cf__store_col_text(p, 1);
    out->password_hash = cf__store_col_text(p, 2);
    out->cert_issuer = cf__store_col_text(p, 3);
    out->cert_subject = cf__store_col_text(p, 4);
    out->admin = sqlite3_column_int(p, 5) != 0;
    out->created_at = (uint64_t)sqlite3_column_int64(p, 6);
}

static int user_one(struct cf_store *s, sqlite3_stmt *p, struct cf_user_row *out)
{
    memset(out, 0, sizeof *out);
    int rc = cf__store_one_row(s, p);
    if (!rc)
        read_user(p, out);
    sqlite3_reset(p);
    return rc;
}

/* An UPDATE or DELETE of one row by id: CF_ENOENT when it touched nothing. */
static int run_changed(struct cf_store *s, sqlite3_stmt *p)
{
    int rc = cf__store_run(s, p);
    if (rc)
        return rc;
    return sqlite3_changes(cf__store_db(s)) > 0 ? 0 : CF_ENOENT;
}

int cf_admin_user_create(struct cf_store *s, const char *name, const char *password_hash,
                         bool admin, uint64_t now, int64_t *id)
{
    sqlite3_stmt *p = cf__store_stmt(s, SQL_USER_INSERT);
    cf__store_bind_text(p, 1, name);
    cf__store_bind_text(p, 2, password_hash);
    sqlite3_bind_int(p, 3, admin ? 1 : 0);
    sqlite3_bind_int64(p, 4, (sqlite3_int64)now);
    int rc = cf__store_run(s, p);
    if (!rc && id)
        *id = sqlite3_last_insert_rowid(cf__store_db(s));
    return rc;
}

int cf_admin_user_set_password(struct cf_store *s, int64_t user_id, const char *password_hash)
{
    sqlite3_stmt *p = cf__store_stmt(s, SQL_USER_SET_PASSWORD);
    sqlite3_bind_int64(p, 1, user_id);
    cf__store_bind_text(p, 2, password_hash);
    return run_changed(s, p);
}

int cf_admin_user_set_cert(struct cf_store *s, int64_t user_id, const char *issuer,
                           const char *subject)
{
    sqlite3_stmt *p = cf__store_stmt(s, SQL_USER_SET_CERT);
    sqlite3_bind_int64(p, 1, user_id);
    cf__store_bind_text(p, 2, issuer);
    cf__store_bind_text(p, 3, subject);
    return run_changed(s, p);
}

int cf_admin_user_set_admin(struct cf_store *s, int64_t user_id, bool admin)
{
    sqlite3_stmt *p = cf__store_stmt(s, SQL_USER_SET_ADMIN);
    sqlite3_bind_int64(p, 1, user_id);
    sqlite3_bind_int(p, 2, admin ? 1 : 0);
    return run_changed(s, p);
}

int cf_admin_user_delete(struct cf_store *s, int64_t user_id)
{
    sqlite3_stmt *p = cf__store_stmt(s, SQL_USER_DELETE);
    sqlite3_bind_int64(p, 1, user_id);
    return run_changed(s, p);
}

int cf_admin_user_get(struct cf_store *s, int64_t user_id, struct cf_user_row *out)
{
    sqlite3_stmt *p = cf__store_stmt(s, SQL_USER_GET);
    sqlite3_bind_int64(p, 1, user_id);
    return user_one(s, p, out);
}

int cf_admin_user_find_name(struct cf_store *s, const char *name, struct cf_user_row *out)
{
    sqlite3_stmt *p = cf__store_stmt(s, SQL_USER_BY_NAME);
    cf__store_bind_text(p, 1, name);
    return user_one(s, p, out);
}

int cf_admin_user_find_cert(struct cf_store *s, const char *issuer, const char *subject,
                            struct cf_user_row *out)
{
    sqlite3_stmt *p = cf__store_stmt(s, SQL_USER_BY_CERT);
    cf__store_bind_text(p, 1, issuer);
    cf__store_bind_text(p, 2, subject);
    return user_one(s, p, out);
}

int cf_admin_user_list(struct cf_store *s, cf_user_row_fn fn, void *arg)
{
    sqlite3_stmt *p = cf__store_stmt(s, SQL_USER_LIST);
    int rc;
    while ((rc = sqlite3_step(p)) == SQLITE_ROW) {
        struct cf_user_row r;
        read_user(p, &r);
        int e = fn(arg, &r);
        cf_user_row_free(&r);
        if (e) {
            sqlite3_reset(p);
            return e;
        }
    }
    int e = cf__store_map_rc(rc);
    sqlite3_reset(p);
    return e;
}

int cf_admin_user_tenants(struct cf_store *s, int64_t user_id, char ***out, size_t *n)
{
    *out = NULL;
    *n = 0;
    sqlite3_stmt *p = cf__store_stmt(s, SQL_USER_TENANTS);
    sqlite3_bind_int64(p, 1, user_id);
    char **v = NULL;
    size_t len = 0;
    int rc;
    while ((rc = sqlite3_step(p)) == SQLITE_ROW) {
        v = cf_xrealloc(v, (len + 1) * sizeof *v);
        v[len++] = cf__store_col_text(p, 0);
    }
    int e = cf__store_map_rc(rc);
    sqlite3_reset(p);
    if (e) {
        cf_admin_strings_free(v, len);
        return e;
    }
    *out = v;
    *n = len;
    return 0;
}

int cf_admin_user_add_tenant(struct cf_store *s, int64_t user_id, const char *tenant_id)
{
    sqlite3_stmt *p = cf__store_stmt(s, SQL_USER_ADD_TENANT);
    sqlite3_bind_int64(p, 1, user_id);
    cf__store_bind_text(p, 2, tenant_id);
    int rc = cf__store_run(s, p);
    /* With foreign keys on, a missing user or tenant is a constraint violation. */
    return rc == CF_EEXIST ? CF_ENOENT : rc;
}

int cf_admin_user_remove_tenant(struct cf_store *s, int64_t user_id, const char *tenant_id)
{
    sqlite3_stmt *p = cf__store_stmt(s, SQL_USER_REMOVE_TENANT);
    sqlite3_bind_int64(p, 1, user_id);
    cf__store_bind_text(p, 2, tenant_id);
    return run_changed(s, p);
}

int cf_admin_user_allow_process(struct cf_store *s, int64_t user_id, const char *tenant_id,
                                const char *process_key)
{
    sqlite3_stmt *p = cf__store_stmt(s, SQL_USER_ALLOW);
    sqlite3_bind_int64(p, 1, user_id);
    cf__store_bind_text(p, 2, tenant_id);
    cf__store_bind_text(p, 3, process_key);
    int rc = cf__store_run(s, p);
    return rc == CF_EEXIST ? CF_ENOENT : rc;
}

int cf_admin_user_disallow_process(struct cf_store *s, int64_t user_id, const char *tenant_id,
                                   const char *process_key)
{
    sqlite3_stmt *p = cf__store_stmt(s, SQL_USER_DISALLOW);
    sqlite3_bind_int64(p, 1, user_id);
    cf__store_bind_text(p, 2, tenant_id);
    cf__store_bind_text(p, 3, process_key);
    return run_changed(s, p);
}

int cf_admin_user_may_start(struct cf_store *s, int64_t user_id, const char *tenant_id,
                            const char *process_key)
{
    sqlite3_stmt *p = cf__store_stmt(s, SQL_USER_MAY_START);
    sqlite3_bind_int64(p, 1, user_id);
    cf__store_bind_text(p, 2, tenant_id);
    cf__store_bind_text(p, 3, process_key);
    int rc = cf__store_one_row(s, p);
    sqlite3_reset(p);
    return rc == CF_ENOENT ? CF_EPERM : rc;
}

int cf_admin_user_processes(struct cf_store *s, int64_t user_id, cf_user_process_fn fn, void *arg)
{
    sqlite3_stmt *p = cf__store_stmt(s, SQL_USER_PROCESSES);
    sqlite3_bind_int64(p, 1, user_id);
    int rc;
    while ((rc = sqlite3_step(p)) == SQLITE_ROW) {
        int e = fn(arg, cf__store_col_ctext(p, 0), cf__store_col_ctext(p, 1));
        if (e) {
            sqlite3_reset(p);
            return e;
        }
    }
    int e = cf__store_map_rc(rc);
    sqlite3_reset(p);
    return e;
}

/* ---- templates ------------------------------------------------------------------------------ */

#define TEMPLATE_COLS "id, tenant_id, name, connector, settings, procedure, created_at, updated_at"

static const char SQL_TEMPLATE_INSERT[] =
    "INSERT INTO certificate_template(tenant_id, name, connector, settings, procedure, "
    "created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)";
static const char SQL_TEMPLATE_UPDATE[] =
    "UPDATE certificate_template SET connector = coalesce(?3, connector), "
    "settings = coalesce(?4, settings), procedure = coalesce(?5, procedure), updated_at = ?6 "
    "WHERE tenant_id = ?1 AND name = ?2";
static const char SQL_TEMPLATE_GET[] =
    "SELECT " TEMPLATE_COLS " FROM certificate_template WHERE tenant_id = ?1 AND name = ?2";
static const char SQL_TEMPLATE_LIST[] =
    "SELECT " TEMPLATE_COLS " FROM certificate_template "
    "WHERE tenant_id IN (SELECT value FROM json_each(?1)) ORDER BY tenant_id, name";
static const char SQL_TEMPLATE_IN_USE[] =
    "SELECT 1 FROM certificate c JOIN certificate_template t ON t.id = c.template_id "
    "WHERE t.tenant_id = ?1 AND t.name = ?2 LIMIT 1";
static const char SQL_TEMPLATE_DELETE[] =
    "DELETE FROM certificate_template WHERE tenant_id = ?1 AND name = ?2";

void cf_template_row_free(struct cf_template_row *r)
{
    if (!r)
        return;
    free(r->tenant_id);
    free(r->name);
    free(r->connector);
    free(r->settings);
    free(r->procedure);
    memset(r, 0, sizeof *r);
}

static void read_template(sqlite3_stmt *p, struct cf_template_row *out)
{
    out->id = sqlite3_column_int64(p, 0);
    out->tenant_id = cf__store_col_text(p, 1);
    out->name = cf__store_col_text(p, 2);
    out->connector = cf__store_col_text(p, 3);
    out->settings = cf__store_col_text(p, 4);
    out->procedure = cf__store_col_text(p, 5);
    out->created_at = (uint64_t)sqlite3_column_int64(p, 6);
    out->updated_at = (uint64_t)sqlite3_column_int64(p, 7);
}

int cf_admin_template_create(struct cf_store *s, const char *tenant_id, const char *name,
                             const char *connector, const char *settings, const char *procedure,
                             uint64_t now, int64_t *id)
{
    /* The UNIQUE and the foreign key both surface as a constraint violation; tell them apart. */
    int rc = cf_admin_tenant_exists(s, tenant_id);
    if (rc)
        return rc;
    sqlite3_stmt *p = cf__store_stmt(s, SQL_TEMPLATE_INSERT);
    cf__store_bind_text(p, 1, tenant_id);
    cf__store_bind_text(p, 2, name);
    cf__store_bind_text(p, 3, connector ? connector : "embedded");
    cf__store_bind_text(p, 4, settings ? settings : "{}");
    cf__store_bind_text(p, 5, procedure ? procedure : "{}");
    sqlite3_bind_int64(p, 6, (sqlite3_int64)now);
    rc = cf__store_run(s, p);
    if (!rc && id)
        *id = sqlite3_last_insert_rowid(cf__store_db(s));
    return rc;
}

int cf_admin_template_update(struct cf_store *s, const char *tenant_id, const char *name,
                             const char *connector, const char *settings, const char *procedure,
                             uint64_t now)
{
    sqlite3_stmt *p = cf__store_stmt(s, SQL_TEMPLATE_UPDATE);
    cf__store_bind_text(p, 1, tenant_id);
    cf__store_bind_text(p, 2, name);
    cf__store_bind_text(p, 3, connector);
    cf__store_bind_text(p, 4, settings);
    cf__store_bind_text(p, 5, procedure);
    sqlite3_bind_int64(p, 6, (sqlite3_int64)now);
    return run_changed(s, p);
}

int cf_admin_template_get(struct cf_store *s, const char *tenant_id, const char *name,
                          struct cf_template_row *out)
{
    memset(out, 0, sizeof *out);
    sqlite3_stmt *p = cf__store_stmt(s, SQL_TEMPLATE_GET);
    cf__store_bind_text(p, 1, tenant_id);
    cf__store_bind_text(p, 2, name);
    int rc = cf__store_one_row(s, p);
    if (!rc)
        read_template(p, out);
    sqlite3_reset(p);
    return rc;
}

int cf_admin_template_list(struct cf_store *s, const char *const *tenants, size_t n_tenants,
                           cf_template_row_fn fn, void *arg)
{
    char *tj = tenants_json(tenants, n_tenants);
    sqlite3_stmt *p = cf__store_stmt(s, SQL_TEMPLATE_LIST);
    sqlite3_bind_text(p, 1, tj, -1, SQLITE_TRANSIENT);
    free(tj);
    int rc;
    while ((rc = sqlite3_step(p)) == SQLITE_ROW) {
        struct cf_template_row r;
        read_template(p, &r);
        int e = fn(arg, &r);
        cf_template_row_free(&r);
        if (e) {
            sqlite3_reset(p);
            return e;
        }
    }
    int e = cf__store_map_rc(rc);
    sqlite3_reset(p);
    return e;
}

int cf_admin_template_delete(struct cf_store *s, const char *tenant_id, const char *name)
{
    sqlite3_stmt *p = cf__store_stmt(s, SQL_TEMPLATE_IN_USE);
    cf__store_bind_text(p, 1, tenant_id);
    cf__store_bind_text(p, 2, name);
    int rc = cf__store_one_row(s, p);
    sqlite3_reset(p);
    if (rc == 0)
        return CF_ESTATE;
    if (rc != CF_ENOENT)
        return rc;
    p = cf__store_stmt(s, SQL_TEMPLATE_DELETE);
    cf__store_bind_text(p, 1, tenant_id);
    cf__store_bind_text(p, 2, name);
    return run_changed(s, p);
}

/* ---- certificates --------------------------------------------------------------------------- */

/* The columns read_cert() reads, in its order; the DER, when wanted, follows them (castore.c
 * keeps the same list for its queries). */
#define CERT_COLS                                                                                  \
    "c.id, c.tenant_id, c.template_id, t.name, c.serial, c.issuer, c.subject, c.not_before, "      \
    "c.not_after, c.sha256, c.status, c.source, c.instance_id, c.created_at, c.ski, "              \
    "c.revocation_reason, c.revoked_at"
#define CERT_DER_COL 17
#define CERT_FROM " FROM certificate c JOIN certificate_template t ON t.id = c.template_id "

/* The filter of cf_cert_filter, shared by list and count: ?1 is the tenant list, ?2..?9 the
 * optional filters. */
#define CERT_WHERE                                                                                 \
    "WHERE c.tenant_id IN (SELECT value FROM json_each(?1)) "                                      \
    "AND (?2 IS NULL OR c.tenant_id = ?2) AND (?3 IS NULL OR t.name = ?3) "                        \
    "AND (?4 IS NULL OR c.serial = ?4) AND (?5 IS NULL OR instr(c.subject, ?5) > 0) "              \
    "AND (?6 IS NULL OR c.issuer = ?6) AND (?7 IS NULL OR c.sha256 = ?7) "                         \
    "AND (?8 IS NULL OR c.status = ?8) AND (?9 IS NULL OR c.not_after < ?9) "                      \
    "AND (?10 IS NULL OR c.not_after >= ?10) "

static const char SQL_CERT_INSERT[] =
    "INSERT INTO certificate(tenant_id, template_id, serial, issuer, subject, not_before, "
    "not_after, sha256, der, status, source, instance_id, created_at, ski) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)";
static const char SQL_CERT_SET_INSTANCE[] = "UPDATE certificate SET instance_id = ?2 WHERE id = ?1";
static const char SQL_CERT_SET_STATUS[] = "UPDATE certificate SET status = ?3 WHERE id = ?2 "
                                          "AND tenant_id IN (SELECT value FROM json_each(?1))";
static const char SQL_CERT_GET[] =
    "SELECT " CERT_COLS ", c.der" CERT_FROM "WHERE c.id = ?2 AND c.tenant_id IN "
    "(SELECT value FROM json_each(?1))";
static const char SQL_CERT_BY_SHA[] =
    "SELECT " CERT_COLS CERT_FROM "WHERE c.tenant_id = ?1 AND c.sha256 = ?2";
static const char SQL_CERT_BY_INSTANCE[] = "SELECT " CERT_COLS CERT_FROM "WHERE c.instance_id = ?1";
static const char SQL_CERT_LIST[] =
    "SELECT " CERT_COLS CERT_FROM CERT_WHERE "ORDER BY c.id DESC LIMIT ?12 OFFSET ?11";
static const char SQL_CERT_COUNT[] = "SELECT count(*)" CERT_FROM CERT_WHERE;

void cf_cert_row_free(struct cf_cert_row *r)
{
    if (!r)
        return;
    free(r->ski);
    free(r->tenant_id);
    free(r->template_name);
    free(r->serial);
    free(r->issuer);
    free(r->subject);
    free(r->der);
    free(r->status);
    free(r->source);
    memset(r, 0, sizeof *r);
}

static void read_cert(sqlite3_stmt *p, struct cf_cert_row *out, bool with_der)
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
    if (with_der) {
        int n = sqlite3_column_bytes(p, CERT_DER_COL);
        const void *b = sqlite3_column_blob(p, CERT_DER_COL);
        out->der = cf_xmemdup(b ? b : "", (size_t)n);
        out->der_len = (size_t)n;
    }
}

int cf_admin_cert_insert(struct cf_store *s, struct cf_cert_row *r, uint64_t now)
{
    sqlite3_stmt *p = cf__store_stmt(s, SQL_CERT_INSERT);
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
    cf__store_bind_text(p, 14, r->ski);
    int rc = cf__store_run(s, p);
    /* SQLITE_STATIC: the blob must not stay bound to a cached statement past this call. */
    sqlite3_clear_bindings(p);
    if (!rc) {
        r->id = sqlite3_last_insert_rowid(cf__store_db(s));
        r->created_at = now;
    }
    return rc;
}

int cf_admin_cert_set_instance(struct cf_store *s, int64_t cert_id, int64_t instance_id)
{
    sqlite3_stmt *p = cf__store_stmt(s, SQL_CERT_SET_INSTANCE);
    sqlite3_bind_int64(p, 1, cert_id);
    cf__store_bind_id(p, 2, instance_id);
    return run_changed(s, p);
}

int cf_admin_cert_set_status(struct cf_store *s, const char *const *tenants, size_t n_tenants,
                             int64_t cert_id, const char *status)
{
    char *tj = tenants_json(tenants, n_tenants);
    sqlite3_stmt *p = cf__store_stmt(s, SQL_CERT_SET_STATUS);
    sqlite3_bind_text(p, 1, tj, -1, SQLITE_TRANSIENT);
    free(tj);
    sqlite3_bind_int64(p, 2, cert_id);
    cf__store_bind_text(p, 3, status);
    int rc = run_changed(s, p);
    /* A status outside the CHECK list is the caller's mistake, not a duplicate. */
    return rc == CF_EEXIST ? CF_EINVAL : rc;
}

int cf_admin_cert_get(struct cf_store *s, const char *const *tenants, size_t n_tenants,
                      int64_t cert_id, bool with_der, struct cf_cert_row *out)
{
    memset(out, 0, sizeof *out);
    char *tj = tenants_json(tenants, n_tenants);
    sqlite3_stmt *p = cf__store_stmt(s, SQL_CERT_GET);
    sqlite3_bind_text(p, 1, tj, -1, SQLITE_TRANSIENT);
    free(tj);
    sqlite3_bind_int64(p, 2, cert_id);
    int rc = cf__store_one_row(s, p);
    if (!rc)
        read_cert(p, out, with_der);
    sqlite3_reset(p);
    return rc;
}

int cf_admin_cert_find_sha256(struct cf_store *s, const char *tenant_id, const char *sha256,
                              struct cf_cert_row *out)
{
    memset(out, 0, sizeof *out);
    sqlite3_stmt *p = cf__store_stmt(s, SQL_CERT_BY_SHA);
    cf__store_bind_text(p, 1, tenant_id);
    cf__store_bind_text(p, 2, sha256);
    int rc = cf__store_one_row(s, p);
    if (!rc)
        read_cert(p, out, false);
    sqlite3_reset(p);
    return rc;
}

int cf_admin_cert_find_instance(struct cf_store *s, int64_t instance_id, struct cf_cert_row *out)
{
    memset(out, 0, sizeof *out);
    sqlite3_stmt *p = cf__store_stmt(s, SQL_CERT_BY_INSTANCE);
    sqlite3_bind_int64(p, 1, instance_id);
    int rc = cf__store_one_row(s, p);
    if (!rc)
        read_cert(p, out, false);
    sqlite3_reset(p);
    return rc;
}

static void bind_filter(sqlite3_stmt *p, const char *const *tenants, size_t n_tenants,
                        const struct cf_cert_filter *f)
{
    char *tj = tenants_json(tenants, n_tenants);
    sqlite3_bind_text(p, 1, tj, -1, SQLITE_TRANSIENT);
    free(tj);
    if (!f)
        return;
    cf__store_bind_text(p, 2, f->tenant_id);
    cf__store_bind_text(p, 3, f->template_name);
    cf__store_bind_text(p, 4, f->serial);
    cf__store_bind_text(p, 5, f->subject_like);
    cf__store_bind_text(p, 6, f->issuer);
    cf__store_bind_text(p, 7, f->sha256);
    cf__store_bind_text(p, 8, f->status);
    if (f->expires_before)
        sqlite3_bind_int64(p, 9, (sqlite3_int64)f->expires_before);
    if (f->expires_after)
        sqlite3_bind_int64(p, 10, (sqlite3_int64)f->expires_after);
}

int cf_admin_cert_list(struct cf_store *s, const char *const *tenants, size_t n_tenants,
                       const struct cf_cert_filter *f, cf_cert_row_fn fn, void *arg)
{
    sqlite3_stmt *p = cf__store_stmt(s, SQL_CERT_LIST);
    bind_filter(p, tenants, n_tenants, f);
    sqlite3_bind_int64(p, 11, f && f->first_result > 0 ? f->first_result : 0);
    sqlite3_bind_int64(p, 12, f && f->max_results > 0 ? f->max_results : -1);
    int rc;
    while ((rc = sqlite3_step(p)) == SQLITE_ROW) {
        struct cf_cert_row r;
        read_cert(p, &r, false);
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

int cf_admin_cert_count(struct cf_store *s, const char *const *tenants, size_t n_tenants,
                        const struct cf_cert_filter *f, int64_t *count)
{
    sqlite3_stmt *p = cf__store_stmt(s, SQL_CERT_COUNT);
    bind_filter(p, tenants, n_tenants, f);
    int rc = cf__store_one_row(s, p);
    *count = rc ? 0 : sqlite3_column_int64(p, 0);
    sqlite3_reset(p);
    return rc;
}
