/*
 * The read queries of the HTTP APIs (see query.h). Each statement is static SQL prepared once
 * through cf__store_stmt(); optional filters are written as "(?n IS NULL OR column = ?n)" so
 * that one statement serves every combination, and the caller's tenants travel as one JSON array
 * bound to ?1 and expanded with json_each(), which keeps the tenant condition inside every
 * statement without building SQL text at run time.
 */
#include "store/query.h"

#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sqlite3.h>

#include "store/internal.h"

#define DEF_COLS                                                                                   \
    "d.id, d.key, d.version, d.tenant_id, d.name, d.deployment_id, d.resource_name, d.sha256, "    \
    "d.deployed_at"
#define INST_COLS                                                                                  \
    "p.id, p.definition_id, p.tenant_id, p.business_key, p.state, p.started_at, p.ended_at, "      \
    "p.super_execution_id, p.super_instance_id"
#define JOB_COLS                                                                                   \
    "j.id, j.type, j.instance_id, j.execution_id, j.activity_id, j.act_inst_id, j.due_at, "        \
    "j.retries, j.attempt, j.lock_owner, j.lock_expires_at, j.last_error, j.payload, "             \
    "j.created_at, COALESCE(j.definition_id, p.definition_id)"
#define INC_COLS                                                                                   \
    "i.id, i.type, i.instance_id, i.execution_id, i.activity_id, i.job_id, i.message, "            \
    "i.created_at, i.resolved_at"
#define LATEST_VERSION                                                                             \
    "(SELECT MAX(x.version) FROM process_definition x WHERE x.tenant_id = d.tenant_id AND "        \
    "x.key = d.key)"

static const char q_deploy_list[] =
    "SELECT id, name, source, tenant_id, deployed_at FROM deployment "
    "WHERE tenant_id IN (SELECT value FROM json_each(?1)) AND (?2 IS NULL OR name = ?2) "
    "ORDER BY id DESC LIMIT ?3 OFFSET ?4";
static const char q_deploy_count[] =
    "SELECT COUNT(*) FROM deployment "
    "WHERE tenant_id IN (SELECT value FROM json_each(?1)) AND (?2 IS NULL OR name = ?2)";
static const char q_deploy_get[] =
    "SELECT id, name, source, tenant_id, deployed_at FROM deployment "
    "WHERE tenant_id IN (SELECT value FROM json_each(?1)) AND id = ?2";

#define DEF_WHERE                                                                                  \
    " FROM process_definition d "                                                                  \
    "WHERE d.tenant_id IN (SELECT value FROM json_each(?1)) "                                      \
    "AND (?2 IS NULL OR d.key = ?2) AND (?3 IS NULL OR d.tenant_id = ?3) "                         \
    "AND (?4 IS NULL OR d.name = ?4) AND (?5 IS NULL OR d.deployment_id = ?5) "                    \
    "AND (?6 IS NULL OR d.version = ?6) AND (?7 = 0 OR d.version = " LATEST_VERSION ")"
static const char q_def_list[] =
    "SELECT " DEF_COLS DEF_WHERE " ORDER BY d.key, d.tenant_id, d.version LIMIT ?8 OFFSET ?9";
static const char q_def_count[] = "SELECT COUNT(*)" DEF_WHERE;
static const char q_def_get[] = "SELECT " DEF_COLS " FROM process_definition d "
                                "WHERE d.tenant_id IN (SELECT value FROM json_each(?1)) "
                                "AND d.id = ?2";
static const char q_def_get_xml[] = "SELECT " DEF_COLS ", d.xml FROM process_definition d "
                                    "WHERE d.tenant_id IN (SELECT value FROM json_each(?1)) "
                                    "AND d.id = ?2";
static const char q_def_latest[] = "SELECT " DEF_COLS " FROM process_definition d "
                                   "WHERE d.tenant_id IN (SELECT value FROM json_each(?1)) "
                                   "AND d.key = ?2 AND (?3 IS NULL OR d.tenant_id = ?3) "
                                   "AND d.version = " LATEST_VERSION " "
                                   "ORDER BY d.tenant_id LIMIT 2";

#define INST_WHERE                                                                                 \
    " FROM process_instance p JOIN process_definition d ON d.id = p.definition_id "                \
    "WHERE p.tenant_id IN (SELECT value FROM json_each(?1)) "                                      \
    "AND (?2 IS NULL OR d.key = ?2) AND (?3 IS NULL OR p.definition_id = ?3) "                     \
    "AND (?4 IS NULL OR p.business_key = ?4) AND (?5 IS NULL OR p.tenant_id = ?5) "                \
    "AND (?6 IS NULL OR p.super_instance_id = ?6) "                                                \
    "AND (?7 = 0 OR p.state IN ('CREATED', 'ACTIVE')) "                                            \
    "AND (?8 = 0 OR p.state IN ('COMPLETED', 'TERMINATED', 'CANCELED')) "                          \
    "AND (?9 = 0 OR EXISTS (SELECT 1 FROM incident i "                                             \
    "WHERE i.instance_id = p.id AND i.resolved_at IS NULL))"
static const char q_inst_list[] =
    "SELECT " INST_COLS ", d.key" INST_WHERE " ORDER BY p.id LIMIT ?10 OFFSET ?11";
static const char q_inst_count[] = "SELECT COUNT(*)" INST_WHERE;
static const char q_inst_get[] = "SELECT " INST_COLS " FROM process_instance p "
                                 "WHERE p.tenant_id IN (SELECT value FROM json_each(?1)) "
                                 "AND p.id = ?2";

#define INC_WHERE                                                                                  \
    " FROM incident i JOIN process_instance p ON p.id = i.instance_id "                            \
    "WHERE p.tenant_id IN (SELECT value FROM json_each(?1)) "                                      \
    "AND (?2 IS NULL OR i.instance_id = ?2) AND (?3 IS NULL OR i.job_id = ?3) "                    \
    "AND (?4 IS NULL OR i.type = ?4) AND (?5 IS NULL OR i.activity_id = ?5) "                      \
    "AND (?6 = 0 OR i.resolved_at IS NULL) AND (?7 IS NULL OR i.id = ?7)"
static const char q_inc_list[] = "SELECT " INC_COLS ", p.tenant_id, p.definition_id" INC_WHERE
                                 " ORDER BY i.id LIMIT ?8 OFFSET ?9";
static const char q_inc_count[] = "SELECT COUNT(*)" INC_WHERE;

static const char q_job_get[] =
    "SELECT " JOB_COLS ", COALESCE(p.tenant_id, d.tenant_id) FROM job j "
    "LEFT JOIN process_instance p ON p.id = j.instance_id "
    "LEFT JOIN process_definition d ON d.id = j.definition_id "
    "WHERE j.id = ?2 AND COALESCE(p.tenant_id, d.tenant_id) IN (SELECT value FROM json_each(?1))";

#define HIST_SELECT                                                                                \
    "SELECT h.id, h.instance_id, h.execution_id, h.activity_id, h.activity_type, "                 \
    "h.activity_name, h.started_at, h.ended_at, h.end_state, p.tenant_id, p.definition_id, d.key " \
    "FROM history_activity h JOIN process_instance p ON p.id = h.instance_id "                     \
    "JOIN process_definition d ON d.id = p.definition_id "                                         \
    "WHERE p.tenant_id IN (SELECT value FROM json_each(?1)) "                                      \
    "AND (?2 IS NULL OR h.instance_id = ?2) AND (?3 IS NULL OR h.activity_id = ?3)"
static const char q_hist_asc[] = HIST_SELECT " ORDER BY h.started_at, h.id LIMIT ?4 OFFSET ?5";
static const char q_hist_desc[] =
    HIST_SELECT " ORDER BY h.started_at DESC, h.id DESC LIMIT ?4 OFFSET ?5";

/* Totals for /metrics and /health: no tenant condition, and nothing tenant-specific comes out. */
static const char q_inst_states[] = "SELECT state, COUNT(*) FROM process_instance GROUP BY state";
static const char q_inc_types[] =
    "SELECT type, COUNT(*) FROM incident WHERE resolved_at IS NULL GROUP BY type";
static const char q_job_counts[] = "SELECT COALESCE(SUM(retries > 0 AND due_at <= ?1 "
                                   "AND (lock_owner IS NULL OR lock_expires_at <= ?1)), 0), "
                                   "COALESCE(SUM(retries = 0), 0) FROM job";
static const char q_inst_max[] = "SELECT COALESCE(MAX(id), 0) FROM process_instance";
static const char q_def_totals[] = "SELECT COUNT(*), COALESCE(MAX(id), 0) FROM process_definition";
static const char q_latest_xml[] = "SELECT " DEF_COLS ", d.xml FROM process_definition d "
                                   "WHERE d.id > ?1 AND d.version = " LATEST_VERSION " "
                                   "ORDER BY d.id";

/* Binds the tenant list to ?1 as a JSON array of strings. */
static void bind_tenants(sqlite3_stmt *p, const struct cf_tenants *t)
{
    json_t *a = json_array();
    for (size_t i = 0; t && i < t->n; i++)
        json_array_append_new(a, json_string(t->ids[i]));
    char *text = json_dumps(a, JSON_COMPACT);
    json_decref(a);
    sqlite3_bind_text(p, 1, text ? text : "[]", -1, SQLITE_TRANSIENT);
    free(text);
}

static void bind_opt_text(sqlite3_stmt *p, int i, const char *s)
{
    if (s)
        sqlite3_bind_text(p, i, s, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(p, i);
}

static void bind_opt_id(sqlite3_stmt *p, int i, int64_t id)
{
    if (id)
        sqlite3_bind_int64(p, i, id);
    else
        sqlite3_bind_null(p, i);
}

static void bind_page(sqlite3_stmt *p, int i, int64_t first, int64_t max)
{
    sqlite3_bind_int64(p, i, max < 0 ? -1 : max);
    sqlite3_bind_int64(p, i + 1, first < 0 ? 0 : first);
}

static char *col_text(sqlite3_stmt *p, int i)
{
    return cf__store_col_text(p, i);
}

/* Steps through every row, handing each to `row`; stops on its non-zero return. */
static int walk(struct cf_store *s, sqlite3_stmt *p, int (*row)(sqlite3_stmt *p, void *ctx),
                void *ctx)
{
    int rc;
    while ((rc = sqlite3_step(p)) == SQLITE_ROW) {
        int r = row(p, ctx);
        if (r) {
            sqlite3_reset(p);
            return r;
        }
    }
    int mapped = rc == SQLITE_DONE ? 0 : cf__store_map_rc(rc);
    if (mapped)
        cf_log(CF_LOG_WARN, "store: query failed: %s", cf_store_errmsg(s));
    sqlite3_reset(p);
    return mapped;
}

static int one_count(struct cf_store *s, sqlite3_stmt *p, int64_t *count)
{
    int rc = cf__store_one_row(s, p);
    *count = rc ? 0 : sqlite3_column_int64(p, 0);
    sqlite3_reset(p);
    return rc == CF_ENOENT ? 0 : rc;
}

/* --- deployments --- */

void cf_deployment_row_free(struct cf_deployment_row *r)
{
    if (!r)
        return;
    free(r->name);
    free(r->source);
    free(r->tenant_id);
    memset(r, 0, sizeof(*r));
}

static void read_deployment(sqlite3_stmt *p, struct cf_deployment_row *r)
{
    r->id = sqlite3_column_int64(p, 0);
    r->name = col_text(p, 1);
    r->source = col_text(p, 2);
    r->tenant_id = col_text(p, 3);
    r->deployed_at = (uint64_t)sqlite3_column_int64(p, 4);
}

struct deploy_walk {
    cf_deployment_row_fn fn;
    void *arg;
};

static int deployment_row(sqlite3_stmt *p, void *ctx)
{
    struct deploy_walk *w = ctx;
    struct cf_deployment_row r = {0};
    read_deployment(p, &r);
    int rc = w->fn(w->arg, &r);
    cf_deployment_row_free(&r);
    return rc;
}

int cf_query_deployments(struct cf_store *s, const struct cf_tenants *t, const char *name,
                         int64_t first, int64_t max, cf_deployment_row_fn fn, void *arg)
{
    sqlite3_stmt *p = cf__store_stmt(s, q_deploy_list);
    bind_tenants(p, t);
    bind_opt_text(p, 2, name);
    bind_page(p, 3, first, max);
    struct deploy_walk w = {fn, arg};
    return walk(s, p, deployment_row, &w);
}

int cf_query_deployment_count(struct cf_store *s, const struct cf_tenants *t, const char *name,
                              int64_t *count)
{
    sqlite3_stmt *p = cf__store_stmt(s, q_deploy_count);
    bind_tenants(p, t);
    bind_opt_text(p, 2, name);
    return one_count(s, p, count);
}

int cf_query_deployment_get(struct cf_store *s, const struct cf_tenants *t, int64_t id,
                            struct cf_deployment_row *out)
{
    memset(out, 0, sizeof(*out));
    sqlite3_stmt *p = cf__store_stmt(s, q_deploy_get);
    bind_tenants(p, t);
    sqlite3_bind_int64(p, 2, id);
    int rc = cf__store_one_row(s, p);
    if (!rc)
        read_deployment(p, out);
    sqlite3_reset(p);
    return rc;
}

/* --- definitions --- */

static void bind_def_filter(sqlite3_stmt *p, const struct cf_tenants *t,
                            const struct cf_def_filter *f)
{
    static const struct cf_def_filter none = {.max = -1};
    if (!f)
        f = &none;
    bind_tenants(p, t);
    bind_opt_text(p, 2, f->key);
    bind_opt_text(p, 3, f->tenant_id);
    bind_opt_text(p, 4, f->name);
    bind_opt_id(p, 5, f->deployment_id);
    bind_opt_id(p, 6, f->version);
    sqlite3_bind_int(p, 7, f->latest_only);
}

struct def_walk {
    cf_def_row_fn fn;
    void *arg;
    bool with_xml;
};

static int def_row(sqlite3_stmt *p, void *ctx)
{
    struct def_walk *w = ctx;
    struct cf_def_row r;
    cf__store_read_def(p, &r, w->with_xml);
    int rc = w->fn(w->arg, &r);
    cf_def_row_free(&r);
    return rc;
}

int cf_query_defs(struct cf_store *s, const struct cf_tenants *t, const struct cf_def_filter *f,
                  cf_def_row_fn fn, void *arg)
{
    sqlite3_stmt *p = cf__store_stmt(s, q_def_list);
    bind_def_filter(p, t, f);
    bind_page(p, 8, f ? f->first : 0, f ? f->max : -1);
    struct def_walk w = {fn, arg, false};
    return walk(s, p, def_row, &w);
}

int cf_query_def_count(struct cf_store *s, const struct cf_tenants *t,
                       const struct cf_def_filter *f, int64_t *count)
{
    sqlite3_stmt *p = cf__store_stmt(s, q_def_count);
    bind_def_filter(p, t, f);
    return one_count(s, p, count);
}

int cf_query_def_get(struct cf_store *s, const struct cf_tenants *t, int64_t id, bool with_xml,
                     struct cf_def_row *out)
{
    memset(out, 0, sizeof(*out));
    sqlite3_stmt *p = cf__store_stmt(s, with_xml ? q_def_get_xml : q_def_get);
    bind_tenants(p, t);
    sqlite3_bind_int64(p, 2, id);
    int rc = cf__store_one_row(s, p);
    if (!rc)
        cf__store_read_def(p, out, with_xml);
    sqlite3_reset(p);
    return rc;
}

int cf_query_def_latest(struct cf_store *s, const struct cf_tenants *t, const char *key,
                        const char *tenant_id, struct cf_def_row *out)
{
    memset(out, 0, sizeof(*out));
    sqlite3_stmt *p = cf__store_stmt(s, q_def_latest);
    bind_tenants(p, t);
    bind_opt_text(p, 2, key);
    bind_opt_text(p, 3, tenant_id);
    int rc = cf__store_one_row(s, p);
    if (!rc) {
        cf__store_read_def(p, out, false);
        if (sqlite3_step(p) == SQLITE_ROW && !tenant_id) {
            cf_def_row_free(out);
            memset(out, 0, sizeof(*out));
            rc = CF_EEXIST;
        }
    }
    sqlite3_reset(p);
    return rc;
}

/* --- instances --- */

static void bind_inst_filter(sqlite3_stmt *p, const struct cf_tenants *t,
                             const struct cf_inst_filter *f)
{
    static const struct cf_inst_filter none = {.max = -1};
    if (!f)
        f = &none;
    bind_tenants(p, t);
    bind_opt_text(p, 2, f->definition_key);
    bind_opt_id(p, 3, f->definition_id);
    bind_opt_text(p, 4, f->business_key);
    bind_opt_text(p, 5, f->tenant_id);
    bind_opt_id(p, 6, f->super_instance_id);
    sqlite3_bind_int(p, 7, f->active_only);
    sqlite3_bind_int(p, 8, f->ended_only);
    sqlite3_bind_int(p, 9, f->with_incident);
}

struct inst_walk {
    cf_q_inst_fn fn;
    void *arg;
};

static int inst_row(sqlite3_stmt *p, void *ctx)
{
    struct inst_walk *w = ctx;
    struct cf_inst_row r;
    cf__store_read_inst(p, &r);
    int rc = w->fn(w->arg, &r, (const char *)sqlite3_column_text(p, 9));
    cf_inst_row_free(&r);
    return rc;
}

int cf_query_instances(struct cf_store *s, const struct cf_tenants *t,
                       const struct cf_inst_filter *f, cf_q_inst_fn fn, void *arg)
{
    sqlite3_stmt *p = cf__store_stmt(s, q_inst_list);
    bind_inst_filter(p, t, f);
    bind_page(p, 10, f ? f->first : 0, f ? f->max : -1);
    struct inst_walk w = {fn, arg};
    return walk(s, p, inst_row, &w);
}

int cf_query_instance_count(struct cf_store *s, const struct cf_tenants *t,
                            const struct cf_inst_filter *f, int64_t *count)
{
    sqlite3_stmt *p = cf__store_stmt(s, q_inst_count);
    bind_inst_filter(p, t, f);
    return one_count(s, p, count);
}

int cf_query_instance_get(struct cf_store *s, const struct cf_tenants *t, int64_t id,
                          struct cf_inst_row *out)
{
    memset(out, 0, sizeof(*out));
    sqlite3_stmt *p = cf__store_stmt(s, q_inst_get);
    bind_tenants(p, t);
    sqlite3_bind_int64(p, 2, id);
    int rc = cf__store_one_row(s, p);
    if (!rc)
        cf__store_read_inst(p, out);
    sqlite3_reset(p);
    return rc;
}

int cf_query_instance_max_id(struct cf_store *s, int64_t *max_id)
{
    return one_count(s, cf__store_stmt(s, q_inst_max), max_id);
}

/* --- incidents --- */

static void bind_inc_filter(sqlite3_stmt *p, const struct cf_tenants *t,
                            const struct cf_incident_filter *f)
{
    static const struct cf_incident_filter none = {.max = -1};
    if (!f)
        f = &none;
    bind_tenants(p, t);
    bind_opt_id(p, 2, f->instance_id);
    bind_opt_id(p, 3, f->job_id);
    bind_opt_text(p, 4, f->type);
    bind_opt_text(p, 5, f->activity_id);
    sqlite3_bind_int(p, 6, f->open_only);
    bind_opt_id(p, 7, f->incident_id);
}

struct inc_walk {
    cf_q_incident_fn fn;
    void *arg;
};

static int inc_row(sqlite3_stmt *p, void *ctx)
{
    struct inc_walk *w = ctx;
    struct cf_incident_row r = {0};
    r.id = sqlite3_column_int64(p, 0);
    r.type = col_text(p, 1);
    r.instance_id = sqlite3_column_int64(p, 2);
    r.execution_id = sqlite3_column_int64(p, 3);
    r.activity_id = col_text(p, 4);
    r.job_id = sqlite3_column_int64(p, 5);
    r.message = col_text(p, 6);
    r.created_at = (uint64_t)sqlite3_column_int64(p, 7);
    r.resolved_at = (uint64_t)sqlite3_column_int64(p, 8);
    int rc =
        w->fn(w->arg, &r, (const char *)sqlite3_column_text(p, 9), sqlite3_column_int64(p, 10));
    cf_incident_row_free(&r);
    return rc;
}

int cf_query_incidents(struct cf_store *s, const struct cf_tenants *t,
                       const struct cf_incident_filter *f, cf_q_incident_fn fn, void *arg)
{
    sqlite3_stmt *p = cf__store_stmt(s, q_inc_list);
    bind_inc_filter(p, t, f);
    bind_page(p, 8, f ? f->first : 0, f ? f->max : -1);
    struct inc_walk w = {fn, arg};
    return walk(s, p, inc_row, &w);
}

int cf_query_incident_count(struct cf_store *s, const struct cf_tenants *t,
                            const struct cf_incident_filter *f, int64_t *count)
{
    sqlite3_stmt *p = cf__store_stmt(s, q_inc_count);
    bind_inc_filter(p, t, f);
    return one_count(s, p, count);
}

/* --- jobs --- */

int cf_query_job_get(struct cf_store *s, const struct cf_tenants *t, int64_t id,
                     struct cf_job_row *out, char **tenant_id)
{
    memset(out, 0, sizeof(*out));
    if (tenant_id)
        *tenant_id = NULL;
    sqlite3_stmt *p = cf__store_stmt(s, q_job_get);
    bind_tenants(p, t);
    sqlite3_bind_int64(p, 2, id);
    int rc = cf__store_one_row(s, p);
    if (!rc) {
        out->id = sqlite3_column_int64(p, 0);
        const char *type = cf__store_col_ctext(p, 1);
        cf_strlcpy(out->type, type ? type : "", sizeof(out->type));
        out->instance_id = sqlite3_column_int64(p, 2);
        out->execution_id = sqlite3_column_int64(p, 3);
        out->activity_id = col_text(p, 4);
        out->act_inst_id = sqlite3_column_int64(p, 5);
        out->due_at = (uint64_t)sqlite3_column_int64(p, 6);
        out->retries = sqlite3_column_int(p, 7);
        out->attempt = sqlite3_column_int(p, 8);
        out->lock_owner = col_text(p, 9);
        out->lock_expires_at = (uint64_t)sqlite3_column_int64(p, 10);
        out->last_error = col_text(p, 11);
        out->payload = col_text(p, 12);
        out->created_at = (uint64_t)sqlite3_column_int64(p, 13);
        out->definition_id = sqlite3_column_int64(p, 14);
        if (tenant_id)
            *tenant_id = col_text(p, 15);
    }
    sqlite3_reset(p);
    return rc;
}

/* --- history --- */

struct hist_walk {
    cf_q_hist_fn fn;
    void *arg;
};

static int hist_row(sqlite3_stmt *p, void *ctx)
{
    struct hist_walk *w = ctx;
    struct cf_hist_row r = {
        .id = sqlite3_column_int64(p, 0),
        .instance_id = sqlite3_column_int64(p, 1),
        .execution_id = sqlite3_column_int64(p, 2),
        .activity_id = cf__store_col_ctext(p, 3),
        .activity_type = cf__store_col_ctext(p, 4),
        .activity_name = cf__store_col_ctext(p, 5),
        .started_at = (uint64_t)sqlite3_column_int64(p, 6),
        .ended_at = (uint64_t)sqlite3_column_int64(p, 7),
        .end_state = cf__store_col_ctext(p, 8),
    };
    return w->fn(w->arg, &r, cf__store_col_ctext(p, 9), sqlite3_column_int64(p, 10),
                 cf__store_col_ctext(p, 11));
}

int cf_query_history(struct cf_store *s, const struct cf_tenants *t, const struct cf_hist_filter *f,
                     cf_q_hist_fn fn, void *arg)
{
    static const struct cf_hist_filter none = {.max = -1};
    if (!f)
        f = &none;
    sqlite3_stmt *p = cf__store_stmt(s, f->desc ? q_hist_desc : q_hist_asc);
    bind_tenants(p, t);
    bind_opt_id(p, 2, f->instance_id);
    bind_opt_text(p, 3, f->activity_id);
    bind_page(p, 4, f->first, f->max);
    struct hist_walk w = {fn, arg};
    return walk(s, p, hist_row, &w);
}

/* --- totals --- */

struct count_walk {
    cf_q_count_fn fn;
    void *arg;
};

static int count_row(sqlite3_stmt *p, void *ctx)
{
    struct count_walk *w = ctx;
    const char *label = cf__store_col_ctext(p, 0);
    return w->fn(w->arg, label ? label : "", sqlite3_column_int64(p, 1));
}

int cf_query_instance_states(struct cf_store *s, cf_q_count_fn fn, void *arg)
{
    struct count_walk w = {fn, arg};
    return walk(s, cf__store_stmt(s, q_inst_states), count_row, &w);
}

int cf_query_open_incident_types(struct cf_store *s, cf_q_count_fn fn, void *arg)
{
    struct count_walk w = {fn, arg};
    return walk(s, cf__store_stmt(s, q_inc_types), count_row, &w);
}

int cf_query_job_counts(struct cf_store *s, uint64_t now, int64_t *due, int64_t *exhausted)
{
    sqlite3_stmt *p = cf__store_stmt(s, q_job_counts);
    sqlite3_bind_int64(p, 1, (sqlite3_int64)now);
    int rc = cf__store_one_row(s, p);
    *due = rc ? 0 : sqlite3_column_int64(p, 0);
    *exhausted = rc ? 0 : sqlite3_column_int64(p, 1);
    sqlite3_reset(p);
    return rc == CF_ENOENT ? 0 : rc;
}

int cf_query_def_totals(struct cf_store *s, int64_t *count, int64_t *max_id)
{
    sqlite3_stmt *p = cf__store_stmt(s, q_def_totals);
    int rc = cf__store_one_row(s, p);
    *count = rc ? 0 : sqlite3_column_int64(p, 0);
    *max_id = rc ? 0 : sqlite3_column_int64(p, 1);
    sqlite3_reset(p);
    return rc == CF_ENOENT ? 0 : rc;
}

int cf_query_latest_defs_xml(struct cf_store *s, int64_t above_id, cf_def_row_fn fn, void *arg)
{
    sqlite3_stmt *p = cf__store_stmt(s, q_latest_xml);
    sqlite3_bind_int64(p, 1, above_id);
    struct def_walk w = {fn, arg, true};
    return walk(s, p, def_row, &w);
}
