/*
 * SQLite implementation of the store (see store.h). Statements are prepared once, on first use,
 * and kept for the life of the connection: the engine runs the same few dozen statements
 * hundreds of thousands of times. Errors are mapped to CF_E* codes: SQLITE_FULL to CF_EFULL,
 * SQLITE_BUSY/LOCKED to CF_EBUSY, constraint violations to CF_EEXIST, the rest to CF_EDB.
 */
#include "store/store.h"

#include <stdlib.h>
#include <string.h>

#include <sodium.h>
#include <sqlite3.h>

#include "store/internal.h"
#include "store/migrations.h"
#include "store/seal.h"

enum stmt_id {
    ST_BEGIN,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_SAVEPOINT,
    ST_RELEASE,
    ST_ROLLBACK_TO,
    ST_DEPLOYMENT_INSERT,
    ST_DEF_LATEST,
    ST_DEF_INSERT,
    ST_DEF_GET,
    ST_DEF_GET_XML,
    ST_DEF_LIST,
    ST_INST_INSERT,
    ST_DEF_BY_VERSION,
    ST_DEF_IN_DEPLOYMENT,
    ST_INST_END,
    ST_INST_ACTIVATE,
    ST_INST_GET,
    ST_INST_LIST,
    ST_INST_LIST_STATE,
    ST_EXEC_INSERT,
    ST_EXEC_UPDATE,
    ST_EXEC_DELETE,
    ST_EXEC_DELETE_VARS,
    ST_EXEC_LOAD,
    ST_VAR_PUT,
    ST_VAR_DELETE,
    ST_VAR_LOAD,
    ST_JOB_INSERT,
    ST_JOB_DELETE,
    ST_JOB_GET,
    ST_JOB_FAIL,
    ST_JOB_SET_RETRIES,
    ST_JOB_LOCK,
    ST_JOB_RELEASE_ALL,
    ST_JOB_DUE,
    ST_JOB_NEXT_DUE,
    ST_JOB_OF_INSTANCE,
    ST_JOB_DELETE_EXEC,
    ST_INC_INSERT,
    ST_INC_RESOLVE,
    ST_INC_GET,
    ST_INC_LIST,
    ST_INC_RESOLVE_EXEC,
    ST_HIST_START,
    ST_HIST_END,
    ST_HIST_SET_EXEC,
    ST_HIST_LIST,
    ST_PARAM_SET,
    ST_PARAM_DELETE,
    ST_PARAM_LIST,
    ST_PARAM_LIST_ACT,
    ST_INST_CHILDREN,
    ST_JOB_DELETE_START_TIMERS,
    ST_SUB_INSERT,
    ST_SUB_DELETE,
    ST_SUB_DELETE_EXEC,
    ST_SUB_DELETE_START,
    ST_SUB_FIND,
    ST_SUB_FIND_BK,
    ST_SUB_OF_INSTANCE,
    ST__COUNT
};

#define DEF_COLS                                                                                   \
    "id, key, version, tenant_id, name, deployment_id, resource_name, sha256, deployed_at"
#define INST_COLS                                                                                  \
    "id, definition_id, tenant_id, business_key, state, started_at, ended_at, "                    \
    "super_execution_id, "                                                                         \
    "super_instance_id"
#define JOB_COLS                                                                                   \
    "id, type, instance_id, execution_id, activity_id, act_inst_id, due_at, retries, attempt, "    \
    "lock_owner, lock_expires_at, last_error, payload, created_at, definition_id, interrupted"
#define INC_COLS                                                                                   \
    "id, type, instance_id, execution_id, activity_id, job_id, message, created_at, resolved_at"

static const char *const stmt_sql[ST__COUNT] = {
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_SAVEPOINT] = "SAVEPOINT cf_item",
    [ST_RELEASE] = "RELEASE cf_item",
    [ST_ROLLBACK_TO] = "ROLLBACK TO cf_item",
    [ST_DEPLOYMENT_INSERT] =
        "INSERT INTO deployment(name, source, tenant_id, deployed_at) VALUES (?, ?, ?, ?)",
    [ST_DEF_LATEST] = "SELECT " DEF_COLS " FROM process_definition WHERE tenant_id = ? AND key = ? "
                      "ORDER BY version DESC LIMIT 1",
    [ST_DEF_INSERT] =
        "INSERT INTO process_definition(key, version, tenant_id, name, deployment_id, "
        "resource_name, xml, sha256, deployed_at) VALUES (?, (SELECT COALESCE(MAX(version), 0) + 1 "
        "FROM process_definition WHERE tenant_id = ?3 AND key = ?1), ?3, ?4, ?5, ?6, ?7, ?8, ?9) "
        "RETURNING id, version",
    [ST_DEF_GET] = "SELECT " DEF_COLS " FROM process_definition WHERE id = ?",
    [ST_DEF_GET_XML] = "SELECT " DEF_COLS ", xml FROM process_definition WHERE id = ?",
    [ST_DEF_LIST] = "SELECT " DEF_COLS " FROM process_definition ORDER BY tenant_id, key, version",
    [ST_INST_INSERT] =
        "INSERT INTO process_instance(definition_id, tenant_id, business_key, state, "
        "started_at, super_execution_id, super_instance_id) VALUES (?1, ?2, ?3, ?6, ?4, ?5, "
        "(SELECT instance_id FROM execution WHERE id = ?5))",
    [ST_DEF_BY_VERSION] = "SELECT " DEF_COLS " FROM process_definition WHERE tenant_id = ? AND "
                          "key = ? AND version = ?",
    [ST_DEF_IN_DEPLOYMENT] = "SELECT " DEF_COLS " FROM process_definition WHERE deployment_id = ? "
                             "AND key = ?",
    [ST_INST_END] = "UPDATE process_instance SET state = ?, ended_at = ? WHERE id = ?",
    [ST_INST_ACTIVATE] =
        "UPDATE process_instance SET state = 'ACTIVE', started_at = ? WHERE id = ? "
        "AND state = 'CREATED'",
    [ST_INST_GET] = "SELECT " INST_COLS " FROM process_instance WHERE id = ?",
    [ST_INST_LIST] = "SELECT " INST_COLS " FROM process_instance ORDER BY id",
    [ST_INST_LIST_STATE] = "SELECT " INST_COLS " FROM process_instance WHERE state = ? ORDER BY id",
    [ST_EXEC_INSERT] = "INSERT INTO execution(instance_id, parent_id, activity_id, state, "
                       "act_inst_id, seq) VALUES (?, ?, ?, ?, ?, ?)",
    [ST_EXEC_UPDATE] = "UPDATE execution SET activity_id = ?, state = ?, act_inst_id = ?, "
                       "resume = ? WHERE id = ?",
    [ST_EXEC_DELETE] = "DELETE FROM execution WHERE id = ?",
    [ST_EXEC_DELETE_VARS] = "DELETE FROM variable WHERE execution_id = ?",
    [ST_EXEC_LOAD] =
        "SELECT id, parent_id, activity_id, state, act_inst_id, seq, resume FROM execution "
        "WHERE instance_id = ? ORDER BY id",
    [ST_VAR_PUT] = "INSERT OR REPLACE INTO variable(execution_id, instance_id, name, type, value) "
                   "VALUES (?, ?, ?, ?, ?)",
    [ST_VAR_DELETE] = "DELETE FROM variable WHERE execution_id = ? AND name = ?",
    [ST_VAR_LOAD] = "SELECT execution_id, name, type, value FROM variable WHERE instance_id = ? "
                    "ORDER BY execution_id, name",
    [ST_JOB_INSERT] =
        "INSERT INTO job(type, instance_id, execution_id, activity_id, act_inst_id, "
        "due_at, retries, attempt, lock_owner, lock_expires_at, last_error, payload, "
        "created_at, definition_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    [ST_JOB_DELETE] = "DELETE FROM job WHERE id = ?",
    [ST_JOB_GET] = "SELECT " JOB_COLS " FROM job WHERE id = ?",
    [ST_JOB_FAIL] = "UPDATE job SET retries = ?, attempt = ?, due_at = ?, last_error = ?, "
                    "lock_owner = NULL, lock_expires_at = NULL WHERE id = ?",
    [ST_JOB_SET_RETRIES] = "UPDATE job SET retries = ?, due_at = ?, lock_owner = NULL, "
                           "lock_expires_at = NULL WHERE id = ?",
    [ST_JOB_LOCK] = "UPDATE job SET lock_owner = ?, lock_expires_at = ?, attempt = ? WHERE id = ?",
    [ST_JOB_RELEASE_ALL] = "UPDATE job SET lock_owner = NULL, lock_expires_at = NULL, "
                           "interrupted = interrupted + 1 WHERE lock_owner IS NOT NULL",
    [ST_JOB_DUE] = "SELECT " JOB_COLS " FROM job WHERE retries > 0 AND due_at <= ?1 AND "
                   "(lock_owner IS NULL OR lock_expires_at < ?1) ORDER BY due_at, id LIMIT ?2",
    [ST_JOB_NEXT_DUE] = "SELECT MIN(due_at) FROM job WHERE retries > 0 AND lock_owner IS NULL",
    [ST_JOB_OF_INSTANCE] = "SELECT " JOB_COLS " FROM job WHERE instance_id = ? ORDER BY id",
    [ST_JOB_DELETE_EXEC] = "DELETE FROM job WHERE execution_id = ?",
    [ST_INC_INSERT] = "INSERT INTO incident(type, instance_id, execution_id, activity_id, job_id, "
                      "message, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
    [ST_INC_RESOLVE] = "UPDATE incident SET resolved_at = ? WHERE id = ? AND resolved_at IS NULL",
    [ST_INC_GET] = "SELECT " INC_COLS " FROM incident WHERE id = ?",
    [ST_INC_LIST] = "SELECT " INC_COLS " FROM incident WHERE (?1 = 0 OR instance_id = ?1) AND "
                    "(?2 = 0 OR resolved_at IS NULL) ORDER BY id",
    [ST_INC_RESOLVE_EXEC] = "UPDATE incident SET resolved_at = ? WHERE execution_id = ? AND "
                            "resolved_at IS NULL",
    [ST_HIST_START] = "INSERT INTO history_activity(instance_id, execution_id, activity_id, "
                      "activity_type, activity_name, started_at) VALUES (?, ?, ?, ?, ?, ?)",
    [ST_HIST_END] = "UPDATE history_activity SET ended_at = ?, end_state = ? WHERE id = ?",
    [ST_HIST_SET_EXEC] = "UPDATE history_activity SET execution_id = ? WHERE id = ?",
    [ST_HIST_LIST] = "SELECT id, instance_id, execution_id, activity_id, activity_type, "
                     "activity_name, started_at, ended_at, end_state FROM history_activity "
                     "WHERE instance_id = ? ORDER BY id",
    [ST_PARAM_SET] = "INSERT OR REPLACE INTO task_param(tenant_id, process_key, activity_id, name, "
                     "value, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
    [ST_PARAM_DELETE] = "DELETE FROM task_param WHERE tenant_id = ? AND process_key = ? AND "
                        "activity_id = ? AND name = ?",
    [ST_PARAM_LIST] = "SELECT activity_id, name, value FROM task_param WHERE tenant_id = ? AND "
                      "process_key = ? ORDER BY activity_id, name",
    [ST_INST_CHILDREN] = "SELECT " INST_COLS " FROM process_instance WHERE super_execution_id = ? "
                         "AND state = 'ACTIVE' ORDER BY id",
    [ST_JOB_DELETE_START_TIMERS] =
        "DELETE FROM job WHERE definition_id IN (SELECT id FROM process_definition WHERE "
        "tenant_id = ? AND key = ?)",
    [ST_SUB_INSERT] = "INSERT INTO event_subscription(type, name, tenant_id, definition_id, "
                      "instance_id, execution_id, activity_id, act_inst_id, created_at) VALUES "
                      "('message', ?, ?, ?, ?, ?, ?, ?, ?)",
    [ST_SUB_DELETE] = "DELETE FROM event_subscription WHERE id = ?",
    [ST_SUB_DELETE_EXEC] = "DELETE FROM event_subscription WHERE execution_id = ?",
    [ST_SUB_DELETE_START] = "DELETE FROM event_subscription WHERE definition_id IN (SELECT id FROM "
                            "process_definition WHERE tenant_id = ? AND key = ?)",
    [ST_SUB_FIND] = "SELECT id, name, tenant_id, definition_id, instance_id, execution_id, "
                    "activity_id, act_inst_id FROM event_subscription WHERE tenant_id = ? AND "
                    "name = ? ORDER BY id",
    /* Instances by business key through its index, then the definitions' start events: an OR
     * of both in one WHERE would scan every subscription of the message. */
    [ST_SUB_FIND_BK] =
        "SELECT s.id, s.name, s.tenant_id, s.definition_id, s.instance_id, s.execution_id, "
        "s.activity_id, s.act_inst_id FROM process_instance p JOIN event_subscription s ON "
        "s.instance_id = p.id WHERE p.business_key = ?3 AND s.tenant_id = ?1 AND s.name = ?2 "
        "UNION ALL SELECT id, name, tenant_id, definition_id, instance_id, execution_id, "
        "activity_id, act_inst_id FROM event_subscription WHERE instance_id IS NULL AND "
        "tenant_id = ?1 AND name = ?2 ORDER BY 1",
    [ST_SUB_OF_INSTANCE] = "SELECT id, name, tenant_id, definition_id, instance_id, execution_id, "
                           "activity_id, act_inst_id FROM event_subscription WHERE "
                           "instance_id = ? ORDER BY id",
    [ST_PARAM_LIST_ACT] = "SELECT activity_id, name, value FROM task_param WHERE tenant_id = ? AND "
                          "process_key = ? AND activity_id = ? ORDER BY name",
};

struct cf_store {
    sqlite3 *db;
    sqlite3_stmt *stmts[ST__COUNT];
    struct cf_imap ext; /* statements of the other store files, by SQL address */
    bool in_tx;
    uint64_t commits;
    int schema_version;
    char *path;    /* the database file, for the secrets key next to it (seal.h) */
    bool have_key; /* `key` holds the secrets key */
    uint8_t key[CF_SEAL_KEY_BYTES];
};

static int map_rc(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_OK:
    case SQLITE_DONE:
    case SQLITE_ROW:
        return 0;
    case SQLITE_FULL:
        return CF_EFULL;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return CF_EBUSY;
    case SQLITE_CONSTRAINT:
        return CF_EEXIST;
    case SQLITE_NOMEM:
        return CF_ENOMEM;
    case SQLITE_IOERR:
        return CF_EIO;
    default:
        return CF_EDB;
    }
}

static sqlite3_stmt *st(struct cf_store *s, enum stmt_id id)
{
    sqlite3_stmt *p = s->stmts[id];
    if (p) {
        sqlite3_reset(p);
        sqlite3_clear_bindings(p);
        return p;
    }
    int rc = sqlite3_prepare_v3(s->db, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT, &p, NULL);
    if (rc != SQLITE_OK) {
        /* A statement of our own that does not compile is a bug, not bad input. */
        cf_log(CF_LOG_ERROR, "store: cannot prepare statement %d: %s", (int)id,
               sqlite3_errmsg(s->db));
        abort();
    }
    s->stmts[id] = p;
    return p;
}

/* Runs a statement that returns no rows to completion. */
static int run(struct cf_store *s, sqlite3_stmt *p)
{
    int rc;
    while ((rc = sqlite3_step(p)) == SQLITE_ROW) {
    }
    int err = map_rc(rc);
    sqlite3_reset(p);
    if (err)
        cf_log(CF_LOG_DEBUG, "store: %s", sqlite3_errmsg(s->db));
    return err;
}

static void bind_text(sqlite3_stmt *p, int i, const char *t)
{
    if (t)
        sqlite3_bind_text(p, i, t, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(p, i);
}

static void bind_id(sqlite3_stmt *p, int i, int64_t id)
{
    if (id)
        sqlite3_bind_int64(p, i, id);
    else
        sqlite3_bind_null(p, i);
}

sqlite3 *cf__store_db(struct cf_store *s)
{
    return s->db;
}

sqlite3_stmt *cf__store_stmt(struct cf_store *s, const char *static_sql)
{
    int64_t key = (int64_t)(intptr_t)static_sql;
    sqlite3_stmt *p = cf_imap_get(&s->ext, key);
    if (p) {
        sqlite3_reset(p);
        sqlite3_clear_bindings(p);
        return p;
    }
    if (sqlite3_prepare_v3(s->db, static_sql, -1, SQLITE_PREPARE_PERSISTENT, &p, NULL) !=
        SQLITE_OK) {
        cf_log(CF_LOG_ERROR, "store: cannot prepare statement: %s", sqlite3_errmsg(s->db));
        abort();
    }
    cf_imap_put(&s->ext, key, p);
    return p;
}

int cf__store_map_rc(int rc)
{
    return map_rc(rc);
}

int cf__store_run(struct cf_store *s, sqlite3_stmt *p)
{
    return run(s, p);
}

void cf__store_bind_text(sqlite3_stmt *p, int i, const char *t)
{
    bind_text(p, i, t);
}

void cf__store_bind_id(sqlite3_stmt *p, int i, int64_t id)
{
    bind_id(p, i, id);
}

static char *col_text(sqlite3_stmt *p, int i)
{
    const unsigned char *t = sqlite3_column_text(p, i);
    return t ? cf_xstrdup((const char *)t) : NULL;
}

static const char *col_ctext(sqlite3_stmt *p, int i)
{
    return (const char *)sqlite3_column_text(p, i);
}

const char *cf_store_errmsg(struct cf_store *s)
{
    return sqlite3_errmsg(s->db);
}

static int exec_sql(struct cf_store *s, const char *sql, char *err, size_t errlen)
{
    char *msg = NULL;
    int rc = sqlite3_exec(s->db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        cf_errf(err, errlen, "%s", msg ? msg : sqlite3_errstr(rc));
        sqlite3_free(msg);
        return map_rc(rc);
    }
    return 0;
}

static int migrate(struct cf_store *s, bool read_only, char *err, size_t errlen)
{
    sqlite3_stmt *p;
    if (sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &p, NULL) != SQLITE_OK) {
        cf_errf(err, errlen, "%s", sqlite3_errmsg(s->db));
        return CF_EDB;
    }
    int version = sqlite3_step(p) == SQLITE_ROW ? sqlite3_column_int(p, 0) : 0;
    sqlite3_finalize(p);
    int latest = 0;
    for (const struct cf__migration *m = cf__migrations; m->name; m++)
        latest = m->version;
    if (version > latest) {
        cf_errf(err, errlen,
                "database schema version %d is newer than this program's %d: upgrade certflow",
                version, latest);
        return CF_ESCHEMA;
    }
    if (version < latest && read_only) {
        cf_errf(err, errlen, "database schema version %d is older than %d and opened read-only",
                version, latest);
        return CF_ESCHEMA;
    }
    for (const struct cf__migration *m = cf__migrations; m->name; m++) {
        if (m->version <= version)
            continue;
        /* Each migration and its version bump commit together, so a crash never leaves a
         * half-applied schema. */
        char pragma[64];
        snprintf(pragma, sizeof(pragma), "PRAGMA user_version = %d", m->version);
        int rc = exec_sql(s, "BEGIN IMMEDIATE", err, errlen);
        if (!rc)
            rc = exec_sql(s, m->sql, err, errlen);
        if (!rc)
            rc = exec_sql(s, pragma, err, errlen);
        if (!rc)
            rc = exec_sql(s, "COMMIT", err, errlen);
        if (rc) {
            char detail[256];
            cf_strlcpy(detail, err ? err : "", sizeof(detail));
            exec_sql(s, "ROLLBACK", NULL, 0);
            cf_errf(err, errlen, "schema migration %s failed: %s", m->name, detail);
            return rc;
        }
        cf_log(CF_LOG_INFO, "store: applied schema migration %s", m->name);
        version = m->version;
    }
    s->schema_version = version;
    return 0;
}

int cf_store_open(const char *path, const struct cf_store_options *opt, struct cf_store **out,
                  char *err, size_t errlen)
{
    static const struct cf_store_options defaults;
    if (!opt)
        opt = &defaults;
    struct cf_store *s = cf_xcalloc(1, sizeof(*s));
    s->path = cf_xstrdup(path);
    int flags = opt->read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
    flags |= SQLITE_OPEN_NOMUTEX;
    int rc = sqlite3_open_v2(path, &s->db, flags, NULL);
    if (rc != SQLITE_OK) {
        cf_errf(err, errlen, "cannot open database %s: %s", path,
                s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
        cf_store_close(s);
        return map_rc(rc) ? map_rc(rc) : CF_EDB;
    }
    sqlite3_extended_result_codes(s->db, 1);
    sqlite3_busy_timeout(s->db, 5000);
    char sql[256];
    snprintf(sql, sizeof(sql),
             "PRAGMA foreign_keys = ON; PRAGMA synchronous = %s; PRAGMA wal_autocheckpoint = 1000;"
             " PRAGMA journal_size_limit = 67108864; PRAGMA temp_store = MEMORY;",
             opt->synchronous_normal ? "NORMAL" : "FULL");
    int e = 0;
    if (!opt->read_only)
        e = exec_sql(s, "PRAGMA journal_mode = WAL", err, errlen);
    if (!e)
        e = exec_sql(s, sql, err, errlen);
    if (!e)
        e = migrate(s, opt->read_only, err, errlen);
    if (e) {
        cf_store_close(s);
        return e;
    }
    *out = s;
    return 0;
}

void cf_store_close(struct cf_store *s)
{
    if (!s)
        return;
    for (int i = 0; i < ST__COUNT; i++)
        sqlite3_finalize(s->stmts[i]);
    for (size_t i = 0; i < s->ext.cap; i++)
        if (s->ext.slots[i].key)
            sqlite3_finalize(s->ext.slots[i].value);
    cf_imap_free(&s->ext);
    sqlite3_close(s->db);
    sodium_memzero(s->key, sizeof(s->key));
    free(s->path);
    free(s);
}

int cf_store_schema_version(struct cf_store *s)
{
    return s->schema_version;
}

int cf_store_begin(struct cf_store *s)
{
    int rc = run(s, st(s, ST_BEGIN));
    if (!rc)
        s->in_tx = true;
    return rc;
}

int cf_store_commit(struct cf_store *s)
{
    int rc = run(s, st(s, ST_COMMIT));
    if (!rc) {
        s->in_tx = false;
        s->commits++;
    }
    return rc;
}

int cf_store_rollback(struct cf_store *s)
{
    /* A failed COMMIT may already have rolled back; then ROLLBACK reports an error we ignore. */
    int rc = sqlite3_get_autocommit(s->db) ? 0 : run(s, st(s, ST_ROLLBACK));
    s->in_tx = false;
    return rc;
}

int cf_store_savepoint(struct cf_store *s)
{
    return run(s, st(s, ST_SAVEPOINT));
}

int cf_store_release(struct cf_store *s)
{
    return run(s, st(s, ST_RELEASE));
}

int cf_store_rollback_to(struct cf_store *s)
{
    int rc = run(s, st(s, ST_ROLLBACK_TO));
    if (!rc)
        rc = run(s, st(s, ST_RELEASE));
    return rc;
}

bool cf_store_in_tx(const struct cf_store *s)
{
    return s->in_tx;
}

uint64_t cf_store_commits(const struct cf_store *s)
{
    return s->commits;
}

int cf_store_integrity_check(struct cf_store *s, char *err, size_t errlen)
{
    sqlite3_stmt *p;
    if (sqlite3_prepare_v2(s->db, "PRAGMA integrity_check", -1, &p, NULL) != SQLITE_OK)
        return CF_EDB;
    int rc = CF_EDB;
    if (sqlite3_step(p) == SQLITE_ROW) {
        const char *r = col_ctext(p, 0);
        if (r && strcmp(r, "ok") == 0)
            rc = 0;
        else
            cf_errf(err, errlen, "integrity check: %s", r ? r : "?");
    }
    sqlite3_finalize(p);
    return rc;
}

/* --- definitions --- */

void cf_def_row_free(struct cf_def_row *r)
{
    free(r->key);
    free(r->tenant_id);
    free(r->name);
    free(r->resource_name);
    free(r->sha256);
    free(r->xml);
    memset(r, 0, sizeof(*r));
}

void cf__store_read_def(sqlite3_stmt *p, struct cf_def_row *r, bool with_xml)
{
    memset(r, 0, sizeof(*r));
    r->id = sqlite3_column_int64(p, 0);
    r->key = col_text(p, 1);
    r->version = sqlite3_column_int(p, 2);
    r->tenant_id = col_text(p, 3);
    r->name = col_text(p, 4);
    r->deployment_id = sqlite3_column_int64(p, 5);
    r->resource_name = col_text(p, 6);
    r->sha256 = col_text(p, 7);
    r->deployed_at = (uint64_t)sqlite3_column_int64(p, 8);
    if (with_xml) {
        const void *b = sqlite3_column_blob(p, 9);
        r->xml_len = (size_t)sqlite3_column_bytes(p, 9);
        r->xml = cf_xmalloc(r->xml_len + 1);
        if (r->xml_len)
            memcpy(r->xml, b, r->xml_len);
        r->xml[r->xml_len] = 0;
    }
}

int cf_store_deployment_insert(struct cf_store *s, const char *name, const char *source,
                               const char *tenant_id, int64_t *id)
{
    sqlite3_stmt *p = st(s, ST_DEPLOYMENT_INSERT);
    bind_text(p, 1, name);
    bind_text(p, 2, source);
    bind_text(p, 3, tenant_id ? tenant_id : "");
    sqlite3_bind_int64(p, 4, (sqlite3_int64)cf_now_ms());
    int rc = run(s, p);
    if (!rc)
        *id = sqlite3_last_insert_rowid(s->db);
    return rc;
}

static int one_row(struct cf_store *s, sqlite3_stmt *p);

int cf__store_one_row(struct cf_store *s, sqlite3_stmt *p)
{
    return one_row(s, p);
}

char *cf__store_col_text(sqlite3_stmt *p, int i)
{
    return col_text(p, i);
}

const char *cf__store_col_ctext(sqlite3_stmt *p, int i)
{
    return col_ctext(p, i);
}

static int one_row(struct cf_store *s, sqlite3_stmt *p)
{
    int rc = sqlite3_step(p);
    if (rc == SQLITE_ROW)
        return 0;
    int e = map_rc(rc);
    sqlite3_reset(p);
    (void)s;
    return e ? e : CF_ENOENT;
}

int cf_store_def_latest(struct cf_store *s, const char *tenant_id, const char *key,
                        struct cf_def_row *out)
{
    sqlite3_stmt *p = st(s, ST_DEF_LATEST);
    bind_text(p, 1, tenant_id ? tenant_id : "");
    bind_text(p, 2, key);
    int rc = one_row(s, p);
    if (!rc)
        cf__store_read_def(p, out, false);
    sqlite3_reset(p);
    return rc;
}

int cf_store_def_by_version(struct cf_store *s, const char *tenant_id, const char *key, int version,
                            struct cf_def_row *out)
{
    sqlite3_stmt *p = st(s, ST_DEF_BY_VERSION);
    bind_text(p, 1, tenant_id ? tenant_id : "");
    bind_text(p, 2, key);
    sqlite3_bind_int(p, 3, version);
    int rc = one_row(s, p);
    if (!rc)
        cf__store_read_def(p, out, false);
    sqlite3_reset(p);
    return rc;
}

int cf_store_def_in_deployment(struct cf_store *s, int64_t deployment_id, const char *key,
                               struct cf_def_row *out)
{
    sqlite3_stmt *p = st(s, ST_DEF_IN_DEPLOYMENT);
    sqlite3_bind_int64(p, 1, deployment_id);
    bind_text(p, 2, key);
    int rc = one_row(s, p);
    if (!rc)
        cf__store_read_def(p, out, false);
    sqlite3_reset(p);
    return rc;
}

int cf_store_def_insert(struct cf_store *s, struct cf_def_row *r)
{
    sqlite3_stmt *p = st(s, ST_DEF_INSERT);
    bind_text(p, 1, r->key);
    bind_text(p, 3, r->tenant_id ? r->tenant_id : "");
    bind_text(p, 4, r->name);
    sqlite3_bind_int64(p, 5, r->deployment_id);
    bind_text(p, 6, r->resource_name);
    sqlite3_bind_blob(p, 7, r->xml, (int)r->xml_len, SQLITE_TRANSIENT);
    bind_text(p, 8, r->sha256);
    sqlite3_bind_int64(p, 9, (sqlite3_int64)r->deployed_at);
    int rc = one_row(s, p);
    if (!rc) {
        r->id = sqlite3_column_int64(p, 0);
        r->version = sqlite3_column_int(p, 1);
        rc = run(s, p);
    }
    sqlite3_reset(p);
    return rc;
}

int cf_store_def_get(struct cf_store *s, int64_t id, bool with_xml, struct cf_def_row *out)
{
    sqlite3_stmt *p = st(s, with_xml ? ST_DEF_GET_XML : ST_DEF_GET);
    sqlite3_bind_int64(p, 1, id);
    int rc = one_row(s, p);
    if (!rc)
        cf__store_read_def(p, out, with_xml);
    sqlite3_reset(p);
    return rc;
}

int cf_store_def_list(struct cf_store *s, cf_def_row_fn fn, void *arg)
{
    sqlite3_stmt *p = st(s, ST_DEF_LIST);
    int rc;
    while ((rc = sqlite3_step(p)) == SQLITE_ROW) {
        struct cf_def_row r;
        cf__store_read_def(p, &r, false);
        int e = fn(arg, &r);
        cf_def_row_free(&r);
        if (e) {
            sqlite3_reset(p);
            return e;
        }
    }
    sqlite3_reset(p);
    return map_rc(rc);
}

/* --- instances --- */

void cf_inst_row_free(struct cf_inst_row *r)
{
    free(r->tenant_id);
    free(r->business_key);
    free(r->state);
    memset(r, 0, sizeof(*r));
}

void cf__store_read_inst(sqlite3_stmt *p, struct cf_inst_row *r)
{
    memset(r, 0, sizeof(*r));
    r->id = sqlite3_column_int64(p, 0);
    r->definition_id = sqlite3_column_int64(p, 1);
    r->tenant_id = col_text(p, 2);
    r->business_key = col_text(p, 3);
    r->state = col_text(p, 4);
    r->started_at = (uint64_t)sqlite3_column_int64(p, 5);
    r->ended_at = (uint64_t)sqlite3_column_int64(p, 6);
    r->super_execution_id = sqlite3_column_int64(p, 7);
    r->super_instance_id = sqlite3_column_int64(p, 8);
}

int cf_store_instance_insert(struct cf_store *s, int64_t definition_id, const char *tenant_id,
                             const char *business_key, int64_t super_execution_id, uint64_t now,
                             int64_t *id)
{
    sqlite3_stmt *p = st(s, ST_INST_INSERT);
    sqlite3_bind_int64(p, 1, definition_id);
    bind_text(p, 2, tenant_id ? tenant_id : "");
    bind_text(p, 3, business_key);
    sqlite3_bind_int64(p, 4, (sqlite3_int64)now);
    bind_id(p, 5, super_execution_id);
    bind_text(p, 6, now ? "ACTIVE" : "CREATED");
    int rc = run(s, p);
    if (!rc)
        *id = sqlite3_last_insert_rowid(s->db);
    return rc;
}

int cf_store_instance_end(struct cf_store *s, int64_t id, const char *state, uint64_t now)
{
    sqlite3_stmt *p = st(s, ST_INST_END);
    bind_text(p, 1, state);
    if (now)
        sqlite3_bind_int64(p, 2, (sqlite3_int64)now);
    sqlite3_bind_int64(p, 3, id);
    return run(s, p);
}

int cf_store_instance_activate(struct cf_store *s, int64_t id, uint64_t now)
{
    sqlite3_stmt *p = st(s, ST_INST_ACTIVATE);
    sqlite3_bind_int64(p, 1, (sqlite3_int64)now);
    sqlite3_bind_int64(p, 2, id);
    return run(s, p);
}

int cf_store_instance_get(struct cf_store *s, int64_t id, struct cf_inst_row *out)
{
    sqlite3_stmt *p = st(s, ST_INST_GET);
    sqlite3_bind_int64(p, 1, id);
    int rc = one_row(s, p);
    if (!rc)
        cf__store_read_inst(p, out);
    sqlite3_reset(p);
    return rc;
}

int cf_store_instance_list(struct cf_store *s, const char *state, cf_inst_row_fn fn, void *arg)
{
    sqlite3_stmt *p = st(s, state ? ST_INST_LIST_STATE : ST_INST_LIST);
    if (state)
        bind_text(p, 1, state);
    int rc;
    while ((rc = sqlite3_step(p)) == SQLITE_ROW) {
        struct cf_inst_row r;
        cf__store_read_inst(p, &r);
        int e = fn(arg, &r);
        cf_inst_row_free(&r);
        if (e) {
            sqlite3_reset(p);
            return e;
        }
    }
    sqlite3_reset(p);
    return map_rc(rc);
}

/* --- executions and variables --- */

int cf_store_exec_insert(struct cf_store *s, int64_t instance_id, int64_t parent_id,
                         const char *activity_id, const char *state, int64_t act_inst_id,
                         int64_t seq, int64_t *id)
{
    sqlite3_stmt *p = st(s, ST_EXEC_INSERT);
    sqlite3_bind_int64(p, 1, instance_id);
    bind_id(p, 2, parent_id);
    bind_text(p, 3, activity_id);
    bind_text(p, 4, state);
    bind_id(p, 5, act_inst_id);
    sqlite3_bind_int64(p, 6, seq);
    int rc = run(s, p);
    if (!rc)
        *id = sqlite3_last_insert_rowid(s->db);
    return rc;
}

int cf_store_exec_update(struct cf_store *s, int64_t id, const char *activity_id, const char *state,
                         int64_t act_inst_id, const char *resume)
{
    sqlite3_stmt *p = st(s, ST_EXEC_UPDATE);
    bind_text(p, 1, activity_id);
    bind_text(p, 2, state);
    bind_id(p, 3, act_inst_id);
    bind_text(p, 4, resume);
    sqlite3_bind_int64(p, 5, id);
    return run(s, p);
}

int cf_store_exec_delete(struct cf_store *s, int64_t id)
{
    sqlite3_stmt *p = st(s, ST_EXEC_DELETE_VARS);
    sqlite3_bind_int64(p, 1, id);
    int rc = run(s, p);
    if (rc)
        return rc;
    p = st(s, ST_EXEC_DELETE);
    sqlite3_bind_int64(p, 1, id);
    return run(s, p);
}

int cf_store_exec_load(struct cf_store *s, int64_t instance_id, cf_exec_row_fn fn, void *arg)
{
    sqlite3_stmt *p = st(s, ST_EXEC_LOAD);
    sqlite3_bind_int64(p, 1, instance_id);
    int rc;
    while ((rc = sqlite3_step(p)) == SQLITE_ROW) {
        struct cf_exec_row r = {
            .id = sqlite3_column_int64(p, 0),
            .parent_id = sqlite3_column_int64(p, 1),
            .activity_id = col_ctext(p, 2),
            .state = col_ctext(p, 3),
            .act_inst_id = sqlite3_column_int64(p, 4),
            .seq = sqlite3_column_int64(p, 5),
            .resume = col_ctext(p, 6),
        };
        int e = fn(arg, &r);
        if (e) {
            sqlite3_reset(p);
            return e;
        }
    }
    sqlite3_reset(p);
    return map_rc(rc);
}

int cf_store_var_put(struct cf_store *s, int64_t execution_id, int64_t instance_id,
                     const char *name, const struct cf_val *v)
{
    sqlite3_stmt *p = st(s, ST_VAR_PUT);
    sqlite3_bind_int64(p, 1, execution_id);
    sqlite3_bind_int64(p, 2, instance_id);
    bind_text(p, 3, name);
    sqlite3_bind_int(p, 4, (int)v->type);
    switch (v->type) {
    case CF_VALUE_NULL:
        sqlite3_bind_null(p, 5);
        break;
    case CF_VALUE_STRING:
        sqlite3_bind_text(p, 5, v->u.s, -1, SQLITE_TRANSIENT);
        break;
    case CF_VALUE_LONG:
    case CF_VALUE_DATE:
        sqlite3_bind_int64(p, 5, v->u.l);
        break;
    case CF_VALUE_DOUBLE:
        sqlite3_bind_double(p, 5, v->u.d);
        break;
    case CF_VALUE_BOOLEAN:
        sqlite3_bind_int(p, 5, v->u.b ? 1 : 0);
        break;
    case CF_VALUE_BYTES:
        sqlite3_bind_blob(p, 5, v->u.bytes.p, (int)v->u.bytes.len, SQLITE_TRANSIENT);
        break;
    case CF_VALUE_JSON: {
        char *txt = json_dumps(v->u.json, JSON_COMPACT | JSON_ENCODE_ANY);
        sqlite3_bind_text(p, 5, txt ? txt : "null", -1, SQLITE_TRANSIENT);
        free(txt);
        break;
    }
    }
    return run(s, p);
}

int cf_store_var_delete(struct cf_store *s, int64_t execution_id, const char *name)
{
    sqlite3_stmt *p = st(s, ST_VAR_DELETE);
    sqlite3_bind_int64(p, 1, execution_id);
    bind_text(p, 2, name);
    return run(s, p);
}

static void read_val(sqlite3_stmt *p, int typecol, int valcol, struct cf_val *v)
{
    enum cf_value_type t = (enum cf_value_type)sqlite3_column_int(p, typecol);
    switch (t) {
    case CF_VALUE_STRING: {
        const char *txt = col_ctext(p, valcol);
        cf_val_set_string(v, txt ? txt : "");
        break;
    }
    case CF_VALUE_LONG:
        cf_val_set_long(v, sqlite3_column_int64(p, valcol));
        break;
    case CF_VALUE_DATE:
        cf_val_set_date(v, sqlite3_column_int64(p, valcol));
        break;
    case CF_VALUE_DOUBLE:
        cf_val_set_double(v, sqlite3_column_double(p, valcol));
        break;
    case CF_VALUE_BOOLEAN:
        cf_val_set_bool(v, sqlite3_column_int(p, valcol) != 0);
        break;
    case CF_VALUE_BYTES: {
        const uint8_t *b = sqlite3_column_blob(p, valcol);
        size_t n = (size_t)sqlite3_column_bytes(p, valcol);
        cf_val_set_bytes(v, b ? b : (const uint8_t *)"", n);
        break;
    }
    case CF_VALUE_JSON: {
        const char *txt = col_ctext(p, valcol);
        json_t *j = txt ? json_loads(txt, JSON_DECODE_ANY, NULL) : NULL;
        if (j)
            cf_val_take_json(v, j);
        else
            cf_val_set_null(v);
        break;
    }
    default:
        cf_val_set_null(v);
        break;
    }
}

int cf_store_var_load(struct cf_store *s, int64_t instance_id, cf_var_row_fn fn, void *arg)
{
    sqlite3_stmt *p = st(s, ST_VAR_LOAD);
    sqlite3_bind_int64(p, 1, instance_id);
    int rc;
    while ((rc = sqlite3_step(p)) == SQLITE_ROW) {
        struct cf_val v = CF_VAL_NULL_INIT;
        read_val(p, 2, 3, &v);
        int e = fn(arg, sqlite3_column_int64(p, 0), col_ctext(p, 1), &v);
        cf_val_free(&v);
        if (e) {
            sqlite3_reset(p);
            return e;
        }
    }
    sqlite3_reset(p);
    return map_rc(rc);
}

/* --- jobs --- */

void cf_job_row_free(struct cf_job_row *r)
{
    free(r->activity_id);
    free(r->lock_owner);
    free(r->last_error);
    free(r->payload);
    memset(r, 0, sizeof(*r));
}

static void read_job(sqlite3_stmt *p, struct cf_job_row *r)
{
    memset(r, 0, sizeof(*r));
    r->id = sqlite3_column_int64(p, 0);
    const char *t = col_ctext(p, 1);
    cf_strlcpy(r->type, t ? t : "", sizeof(r->type));
    r->instance_id = sqlite3_column_int64(p, 2);
    r->execution_id = sqlite3_column_int64(p, 3);
    r->activity_id = col_text(p, 4);
    r->act_inst_id = sqlite3_column_int64(p, 5);
    r->due_at = (uint64_t)sqlite3_column_int64(p, 6);
    r->retries = sqlite3_column_int(p, 7);
    r->attempt = sqlite3_column_int(p, 8);
    r->lock_owner = col_text(p, 9);
    r->lock_expires_at = (uint64_t)sqlite3_column_int64(p, 10);
    r->last_error = col_text(p, 11);
    r->payload = col_text(p, 12);
    r->created_at = (uint64_t)sqlite3_column_int64(p, 13);
    r->definition_id = sqlite3_column_int64(p, 14);
    r->interrupted = sqlite3_column_int(p, 15);
}

int cf_store_job_insert(struct cf_store *s, struct cf_job_row *r)
{
    sqlite3_stmt *p = st(s, ST_JOB_INSERT);
    bind_text(p, 1, r->type);
    bind_id(p, 2, r->instance_id);
    bind_id(p, 3, r->execution_id);
    bind_text(p, 4, r->activity_id);
    bind_id(p, 5, r->act_inst_id);
    sqlite3_bind_int64(p, 6, (sqlite3_int64)r->due_at);
    sqlite3_bind_int(p, 7, r->retries);
    sqlite3_bind_int(p, 8, r->attempt);
    bind_text(p, 9, r->lock_owner);
    if (r->lock_owner)
        sqlite3_bind_int64(p, 10, (sqlite3_int64)r->lock_expires_at);
    bind_text(p, 11, r->last_error);
    bind_text(p, 12, r->payload);
    sqlite3_bind_int64(p, 13, (sqlite3_int64)r->created_at);
    bind_id(p, 14, r->definition_id);
    int rc = run(s, p);
    if (!rc)
        r->id = sqlite3_last_insert_rowid(s->db);
    return rc;
}

int cf_store_job_delete(struct cf_store *s, int64_t id)
{
    sqlite3_stmt *p = st(s, ST_JOB_DELETE);
    sqlite3_bind_int64(p, 1, id);
    return run(s, p);
}

int cf_store_job_get(struct cf_store *s, int64_t id, struct cf_job_row *out)
{
    sqlite3_stmt *p = st(s, ST_JOB_GET);
    sqlite3_bind_int64(p, 1, id);
    int rc = one_row(s, p);
    if (!rc)
        read_job(p, out);
    sqlite3_reset(p);
    return rc;
}

int cf_store_job_fail(struct cf_store *s, int64_t id, int retries, int attempt, uint64_t due_at,
                      const char *last_error)
{
    sqlite3_stmt *p = st(s, ST_JOB_FAIL);
    sqlite3_bind_int(p, 1, retries);
    sqlite3_bind_int(p, 2, attempt);
    sqlite3_bind_int64(p, 3, (sqlite3_int64)due_at);
    bind_text(p, 4, last_error);
    sqlite3_bind_int64(p, 5, id);
    return run(s, p);
}

int cf_store_job_set_retries(struct cf_store *s, int64_t id, int retries, uint64_t due_at)
{
    sqlite3_stmt *p = st(s, ST_JOB_SET_RETRIES);
    sqlite3_bind_int(p, 1, retries);
    sqlite3_bind_int64(p, 2, (sqlite3_int64)due_at);
    sqlite3_bind_int64(p, 3, id);
    return run(s, p);
}

int cf_store_job_lock(struct cf_store *s, int64_t id, const char *owner, uint64_t expires_at,
                      int attempt)
{
    sqlite3_stmt *p = st(s, ST_JOB_LOCK);
    bind_text(p, 1, owner);
    sqlite3_bind_int64(p, 2, (sqlite3_int64)expires_at);
    sqlite3_bind_int(p, 3, attempt);
    sqlite3_bind_int64(p, 4, id);
    return run(s, p);
}

int cf_store_jobs_release_all(struct cf_store *s, int *released)
{
    int rc = run(s, st(s, ST_JOB_RELEASE_ALL));
    if (!rc && released)
        *released = sqlite3_changes(s->db);
    return rc;
}

static int job_rows(struct cf_store *s, sqlite3_stmt *p, cf_job_row_fn fn, void *arg)
{
    int rc;
    (void)s;
    while ((rc = sqlite3_step(p)) == SQLITE_ROW) {
        struct cf_job_row r;
        read_job(p, &r);
        int e = fn(arg, &r);
        cf_job_row_free(&r);
        if (e) {
            sqlite3_reset(p);
            return e;
        }
    }
    sqlite3_reset(p);
    return map_rc(rc);
}

int cf_store_jobs_due(struct cf_store *s, uint64_t now, int limit, cf_job_row_fn fn, void *arg)
{
    sqlite3_stmt *p = st(s, ST_JOB_DUE);
    sqlite3_bind_int64(p, 1, (sqlite3_int64)now);
    sqlite3_bind_int(p, 2, limit);
    return job_rows(s, p, fn, arg);
}

int cf_store_jobs_next_due(struct cf_store *s, uint64_t *due)
{
    sqlite3_stmt *p = st(s, ST_JOB_NEXT_DUE);
    int rc = one_row(s, p);
    if (!rc) {
        if (sqlite3_column_type(p, 0) == SQLITE_NULL)
            rc = CF_ENOENT;
        else
            *due = (uint64_t)sqlite3_column_int64(p, 0);
    }
    sqlite3_reset(p);
    return rc;
}

int cf_store_jobs_of_instance(struct cf_store *s, int64_t instance_id, cf_job_row_fn fn, void *arg)
{
    sqlite3_stmt *p = st(s, ST_JOB_OF_INSTANCE);
    sqlite3_bind_int64(p, 1, instance_id);
    return job_rows(s, p, fn, arg);
}

int cf_store_jobs_delete_execution(struct cf_store *s, int64_t execution_id)
{
    sqlite3_stmt *p = st(s, ST_JOB_DELETE_EXEC);
    sqlite3_bind_int64(p, 1, execution_id);
    return run(s, p);
}

int cf_store_jobs_delete_start_timers(struct cf_store *s, const char *tenant_id, const char *key)
{
    sqlite3_stmt *p = st(s, ST_JOB_DELETE_START_TIMERS);
    bind_text(p, 1, tenant_id ? tenant_id : "");
    bind_text(p, 2, key);
    return run(s, p);
}

int cf_store_instance_children(struct cf_store *s, int64_t super_execution_id, cf_inst_row_fn fn,
                               void *arg)
{
    sqlite3_stmt *p = st(s, ST_INST_CHILDREN);
    sqlite3_bind_int64(p, 1, super_execution_id);
    int rc;
    while ((rc = sqlite3_step(p)) == SQLITE_ROW) {
        struct cf_inst_row r;
        cf__store_read_inst(p, &r);
        int e = fn(arg, &r);
        cf_inst_row_free(&r);
        if (e) {
            sqlite3_reset(p);
            return e;
        }
    }
    sqlite3_reset(p);
    return map_rc(rc);
}

/* --- message subscriptions --- */

int cf_store_sub_insert(struct cf_store *s, const struct cf_sub_row *r, int64_t *id)
{
    sqlite3_stmt *p = st(s, ST_SUB_INSERT);
    bind_text(p, 1, r->name);
    bind_text(p, 2, r->tenant_id ? r->tenant_id : "");
    bind_id(p, 3, r->definition_id);
    bind_id(p, 4, r->instance_id);
    bind_id(p, 5, r->execution_id);
    bind_text(p, 6, r->activity_id);
    bind_id(p, 7, r->act_inst_id);
    sqlite3_bind_int64(p, 8, (sqlite3_int64)cf_now_ms());
    int rc = run(s, p);
    if (!rc && id)
        *id = sqlite3_last_insert_rowid(s->db);
    return rc;
}

int cf_store_sub_delete(struct cf_store *s, int64_t id)
{
    sqlite3_stmt *p = st(s, ST_SUB_DELETE);
    sqlite3_bind_int64(p, 1, id);
    return run(s, p);
}

int cf_store_subs_delete_execution(struct cf_store *s, int64_t execution_id)
{
    sqlite3_stmt *p = st(s, ST_SUB_DELETE_EXEC);
    sqlite3_bind_int64(p, 1, execution_id);
    return run(s, p);
}

int cf_store_subs_delete_start(struct cf_store *s, const char *tenant_id, const char *key)
{
    sqlite3_stmt *p = st(s, ST_SUB_DELETE_START);
    bind_text(p, 1, tenant_id ? tenant_id : "");
    bind_text(p, 2, key);
    return run(s, p);
}

static int sub_rows(sqlite3_stmt *p, cf_sub_row_fn fn, void *arg)
{
    int rc;
    while ((rc = sqlite3_step(p)) == SQLITE_ROW) {
        struct cf_sub_row r = {
            .id = sqlite3_column_int64(p, 0),
            .name = col_ctext(p, 1),
            .tenant_id = col_ctext(p, 2),
            .definition_id = sqlite3_column_int64(p, 3),
            .instance_id = sqlite3_column_int64(p, 4),
            .execution_id = sqlite3_column_int64(p, 5),
            .activity_id = col_ctext(p, 6),
            .act_inst_id = sqlite3_column_int64(p, 7),
        };
        int e = fn(arg, &r);
        if (e) {
            sqlite3_reset(p);
            return e;
        }
    }
    sqlite3_reset(p);
    return map_rc(rc);
}

int cf_store_subs_find(struct cf_store *s, const char *tenant_id, const char *name,
                       const char *business_key, cf_sub_row_fn fn, void *arg)
{
    sqlite3_stmt *p = st(s, business_key ? ST_SUB_FIND_BK : ST_SUB_FIND);
    bind_text(p, 1, tenant_id ? tenant_id : "");
    bind_text(p, 2, name);
    if (business_key)
        bind_text(p, 3, business_key);
    return sub_rows(p, fn, arg);
}

int cf_store_subs_of_instance(struct cf_store *s, int64_t instance_id, cf_sub_row_fn fn, void *arg)
{
    sqlite3_stmt *p = st(s, ST_SUB_OF_INSTANCE);
    sqlite3_bind_int64(p, 1, instance_id);
    return sub_rows(p, fn, arg);
}

/* --- incidents --- */

void cf_incident_row_free(struct cf_incident_row *r)
{
    free(r->type);
    free(r->activity_id);
    free(r->message);
    memset(r, 0, sizeof(*r));
}

static void read_incident(sqlite3_stmt *p, struct cf_incident_row *r)
{
    r->id = sqlite3_column_int64(p, 0);
    r->type = col_text(p, 1);
    r->instance_id = sqlite3_column_int64(p, 2);
    r->execution_id = sqlite3_column_int64(p, 3);
    r->activity_id = col_text(p, 4);
    r->job_id = sqlite3_column_int64(p, 5);
    r->message = col_text(p, 6);
    r->created_at = (uint64_t)sqlite3_column_int64(p, 7);
    r->resolved_at = (uint64_t)sqlite3_column_int64(p, 8);
}

int cf_store_incident_insert(struct cf_store *s, const char *type, int64_t instance_id,
                             int64_t execution_id, const char *activity_id, int64_t job_id,
                             const char *message, uint64_t now, int64_t *id)
{
    sqlite3_stmt *p = st(s, ST_INC_INSERT);
    bind_text(p, 1, type);
    sqlite3_bind_int64(p, 2, instance_id);
    bind_id(p, 3, execution_id);
    bind_text(p, 4, activity_id);
    bind_id(p, 5, job_id);
    bind_text(p, 6, message);
    sqlite3_bind_int64(p, 7, (sqlite3_int64)now);
    int rc = run(s, p);
    if (!rc && id)
        *id = sqlite3_last_insert_rowid(s->db);
    return rc;
}

int cf_store_incident_resolve(struct cf_store *s, int64_t id, uint64_t now)
{
    sqlite3_stmt *p = st(s, ST_INC_RESOLVE);
    sqlite3_bind_int64(p, 1, (sqlite3_int64)now);
    sqlite3_bind_int64(p, 2, id);
    return run(s, p);
}

int cf_store_incident_get(struct cf_store *s, int64_t id, struct cf_incident_row *out)
{
    sqlite3_stmt *p = st(s, ST_INC_GET);
    sqlite3_bind_int64(p, 1, id);
    int rc = one_row(s, p);
    if (!rc)
        read_incident(p, out);
    sqlite3_reset(p);
    return rc;
}

int cf_store_incident_list(struct cf_store *s, int64_t instance_id, bool open_only,
                           cf_incident_row_fn fn, void *arg)
{
    sqlite3_stmt *p = st(s, ST_INC_LIST);
    sqlite3_bind_int64(p, 1, instance_id);
    sqlite3_bind_int(p, 2, open_only ? 1 : 0);
    int rc;
    while ((rc = sqlite3_step(p)) == SQLITE_ROW) {
        struct cf_incident_row r;
        read_incident(p, &r);
        int e = fn(arg, &r);
        cf_incident_row_free(&r);
        if (e) {
            sqlite3_reset(p);
            return e;
        }
    }
    sqlite3_reset(p);
    return map_rc(rc);
}

int cf_store_incidents_resolve_execution(struct cf_store *s, int64_t execution_id, uint64_t now)
{
    sqlite3_stmt *p = st(s, ST_INC_RESOLVE_EXEC);
    sqlite3_bind_int64(p, 1, (sqlite3_int64)now);
    sqlite3_bind_int64(p, 2, execution_id);
    return run(s, p);
}

/* --- history --- */

int cf_store_hist_start(struct cf_store *s, int64_t instance_id, int64_t execution_id,
                        const char *activity_id, const char *activity_type,
                        const char *activity_name, uint64_t now, int64_t *id)
{
    sqlite3_stmt *p = st(s, ST_HIST_START);
    sqlite3_bind_int64(p, 1, instance_id);
    bind_id(p, 2, execution_id);
    bind_text(p, 3, activity_id);
    bind_text(p, 4, activity_type);
    bind_text(p, 5, activity_name);
    sqlite3_bind_int64(p, 6, (sqlite3_int64)now);
    int rc = run(s, p);
    if (!rc)
        *id = sqlite3_last_insert_rowid(s->db);
    return rc;
}

int cf_store_hist_end(struct cf_store *s, int64_t id, uint64_t now, const char *end_state)
{
    sqlite3_stmt *p = st(s, ST_HIST_END);
    /* No end state reopens the activity instance (ended_at NULL). */
    if (end_state)
        sqlite3_bind_int64(p, 1, (sqlite3_int64)now);
    else
        sqlite3_bind_null(p, 1);
    bind_text(p, 2, end_state);
    sqlite3_bind_int64(p, 3, id);
    return run(s, p);
}

int cf_store_hist_set_execution(struct cf_store *s, int64_t id, int64_t execution_id)
{
    sqlite3_stmt *p = st(s, ST_HIST_SET_EXEC);
    sqlite3_bind_int64(p, 1, execution_id);
    sqlite3_bind_int64(p, 2, id);
    return run(s, p);
}

int cf_store_hist_list(struct cf_store *s, int64_t instance_id, cf_hist_row_fn fn, void *arg)
{
    sqlite3_stmt *p = st(s, ST_HIST_LIST);
    sqlite3_bind_int64(p, 1, instance_id);
    int rc;
    while ((rc = sqlite3_step(p)) == SQLITE_ROW) {
        struct cf_hist_row r = {
            .id = sqlite3_column_int64(p, 0),
            .instance_id = sqlite3_column_int64(p, 1),
            .execution_id = sqlite3_column_int64(p, 2),
            .activity_id = col_ctext(p, 3),
            .activity_type = col_ctext(p, 4),
            .activity_name = col_ctext(p, 5),
            .started_at = (uint64_t)sqlite3_column_int64(p, 6),
            .ended_at = (uint64_t)sqlite3_column_int64(p, 7),
            .end_state = col_ctext(p, 8),
        };
        int e = fn(arg, &r);
        if (e) {
            sqlite3_reset(p);
            return e;
        }
    }
    sqlite3_reset(p);
    return map_rc(rc);
}

/* --- task parameters --- */

/* The associated data that binds a sealed value to its row (seal.h): the parts with their NULs,
 * so that they cannot shift into each other. */
static size_t row_aad(const char *const *parts, size_t n_parts, uint8_t *buf, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < n_parts; i++) {
        const char *p = parts[i] ? parts[i] : "";
        size_t len = strlen(p) + 1;
        if (n + len > cap)
            return cap + 1;
        memcpy(buf + n, p, len);
        n += len;
    }
    return n;
}

static int store_key(struct cf_store *s, bool create)
{
    if (s->have_key)
        return 0;
    char err[512];
    int rc = cf_seal_key_load(s->path, create, s->key, err, sizeof(err));
    if (rc) {
        cf_log(CF_LOG_ERROR, "%s", err);
        return rc;
    }
    s->have_key = true;
    return 0;
}

int cf_store_seal_text(struct cf_store *s, const char *const *row, size_t n_row, const char *plain,
                       char **sealed)
{
    *sealed = NULL;
    uint8_t aad[4096];
    size_t aad_len = row_aad(row, n_row, aad, sizeof(aad));
    if (aad_len > sizeof(aad))
        return CF_ELIMIT;
    int rc = store_key(s, true);
    if (rc)
        return rc;
    *sealed = cf_seal(s->key, plain, aad, aad_len);
    return 0;
}

int cf_store_open_text(struct cf_store *s, const char *const *row, size_t n_row, const char *stored,
                       char **plain)
{
    *plain = NULL;
    if (!cf_seal_is_sealed(stored)) {
        *plain = cf_xstrdup(stored);
        return 0;
    }
    uint8_t aad[4096];
    size_t aad_len = row_aad(row, n_row, aad, sizeof(aad));
    if (aad_len > sizeof(aad))
        return CF_ELIMIT;
    int rc = store_key(s, false);
    if (rc)
        return rc;
    return cf_seal_open(s->key, stored, aad, aad_len, plain);
}

int cf_store_param_set(struct cf_store *s, const char *tenant_id, const char *process_key,
                       const char *activity_id, const char *name, const char *value, bool secret,
                       uint64_t now)
{
    char *sealed = NULL;
    if (secret) {
        const char *row[] = {"task_param", tenant_id, process_key, activity_id, name};
        int rc = cf_store_seal_text(s, row, CF_ARRAY_LEN(row), value, &sealed);
        if (rc)
            return rc;
    }
    sqlite3_stmt *p = st(s, ST_PARAM_SET);
    bind_text(p, 1, tenant_id ? tenant_id : "");
    bind_text(p, 2, process_key);
    bind_text(p, 3, activity_id);
    bind_text(p, 4, name);
    bind_text(p, 5, sealed ? sealed : value);
    sqlite3_bind_int64(p, 6, (sqlite3_int64)now);
    int rc = run(s, p);
    free(sealed);
    return rc;
}

int cf_store_param_reveal(struct cf_store *s, const char *tenant_id, const char *process_key,
                          const char *activity_id, const char *name, const char *stored,
                          char **plain)
{
    const char *row[] = {"task_param", tenant_id, process_key, activity_id, name};
    return cf_store_open_text(s, row, CF_ARRAY_LEN(row), stored, plain);
}

int cf_store_param_delete(struct cf_store *s, const char *tenant_id, const char *process_key,
                          const char *activity_id, const char *name)
{
    sqlite3_stmt *p = st(s, ST_PARAM_DELETE);
    bind_text(p, 1, tenant_id ? tenant_id : "");
    bind_text(p, 2, process_key);
    bind_text(p, 3, activity_id);
    bind_text(p, 4, name);
    int rc = run(s, p);
    if (!rc && sqlite3_changes(s->db) == 0)
        return CF_ENOENT;
    return rc;
}

int cf_store_param_list(struct cf_store *s, const char *tenant_id, const char *process_key,
                        const char *activity_id, cf_param_row_fn fn, void *arg)
{
    sqlite3_stmt *p = st(s, activity_id ? ST_PARAM_LIST_ACT : ST_PARAM_LIST);
    bind_text(p, 1, tenant_id ? tenant_id : "");
    bind_text(p, 2, process_key);
    if (activity_id)
        bind_text(p, 3, activity_id);
    int rc;
    while ((rc = sqlite3_step(p)) == SQLITE_ROW) {
        int e = fn(arg, col_ctext(p, 0), col_ctext(p, 1), col_ctext(p, 2));
        if (e) {
            sqlite3_reset(p);
            return e;
        }
    }
    sqlite3_reset(p);
    return map_rc(rc);
}
