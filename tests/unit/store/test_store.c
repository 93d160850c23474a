/*
 * Store tests: the database is created with the schema and the durability settings certflow
 * promises (WAL, synchronous=FULL, foreign keys), reopening applies no migration twice, a
 * database from a newer certflow is refused, and rows survive a reopen exactly.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "store/store.h"

static char dir[64], db[128];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/cf-store-XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    snprintf(db, sizeof(db), "%s/s.db", dir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    const char *sfx[] = {"", "-wal", "-shm"};
    for (int i = 0; i < 3; i++) {
        char p[160];
        snprintf(p, sizeof(p), "%s%s", db, sfx[i]);
        unlink(p);
    }
    rmdir(dir);
    return 0;
}

static int64_t pragma_int(const char *name)
{
    sqlite3 *h;
    assert_int_equal(sqlite3_open(db, &h), SQLITE_OK);
    char sql[64];
    snprintf(sql, sizeof(sql), "PRAGMA %s", name);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(h, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(h);
    return v;
}

static void test_open_creates_schema_in_wal(void **state)
{
    (void)state;
    struct cf_store *s;
    char err[256];
    assert_int_equal(cf_store_open(db, NULL, &s, err, sizeof(err)), 0);
    assert_true(cf_store_schema_version(s) >= 1);
    assert_int_equal(cf_store_integrity_check(s, err, sizeof(err)), 0);
    cf_store_close(s);
    sqlite3 *h;
    assert_int_equal(sqlite3_open(db, &h), SQLITE_OK);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(h, "PRAGMA journal_mode", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "wal");
    sqlite3_finalize(st);
    sqlite3_close(h);
    /* Reopening applies nothing twice. */
    int64_t v = pragma_int("user_version");
    assert_int_equal(cf_store_open(db, NULL, &s, err, sizeof(err)), 0);
    assert_int_equal(cf_store_schema_version(s), v);
    cf_store_close(s);
}

static void test_newer_schema_refused(void **state)
{
    (void)state;
    struct cf_store *s;
    char err[256];
    assert_int_equal(cf_store_open(db, NULL, &s, err, sizeof(err)), 0);
    cf_store_close(s);
    sqlite3 *h;
    assert_int_equal(sqlite3_open(db, &h), SQLITE_OK);
    assert_int_equal(sqlite3_exec(h, "PRAGMA user_version = 9999", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(h);
    assert_int_equal(cf_store_open(db, NULL, &s, err, sizeof(err)), CF_ESCHEMA);
    assert_non_null(strstr(err, "9999"));
    assert_non_null(strstr(err, "upgrade certflow"));
}

static void test_rows_survive_reopen_and_rollback_discards(void **state)
{
    (void)state;
    struct cf_store *s;
    char err[256];
    assert_int_equal(cf_store_open(db, NULL, &s, err, sizeof(err)), 0);
    int64_t dep, inst, ex;
    assert_int_equal(cf_store_begin(s), 0);
    assert_int_equal(cf_store_deployment_insert(s, "a.bpmn", "test", "", &dep), 0);
    struct cf_def_row def = {.key = "k",
                             .tenant_id = "",
                             .deployment_id = dep,
                             .resource_name = "a.bpmn",
                             .sha256 = "00",
                             .xml = (uint8_t *)"<x/>",
                             .xml_len = 4,
                             .deployed_at = 1};
    assert_int_equal(cf_store_def_insert(s, &def), 0);
    assert_int_equal(def.version, 1);
    assert_int_equal(cf_store_def_insert(s, &def), 0);
    assert_int_equal(def.version, 2);
    assert_int_equal(cf_store_instance_insert(s, def.id, "", "bk", 0, 5, &inst), 0);
    assert_int_equal(cf_store_exec_insert(s, inst, 0, NULL, "SCOPE", 0, 1, &ex), 0);
    struct cf_val v = CF_VAL_NULL_INIT;
    cf_val_set_bytes(&v, (const uint8_t *)"\0\1\2", 3);
    assert_int_equal(cf_store_var_put(s, ex, inst, "b", &v), 0);
    cf_val_set_double(&v, 2.5);
    assert_int_equal(cf_store_var_put(s, ex, inst, "d", &v), 0);
    assert_int_equal(cf_store_commit(s), 0);
    /* A rolled-back transaction leaves no trace. */
    assert_int_equal(cf_store_begin(s), 0);
    cf_val_set_string(&v, "gone");
    assert_int_equal(cf_store_var_put(s, ex, inst, "s", &v), 0);
    assert_int_equal(cf_store_rollback(s), 0);
    cf_val_free(&v);
    cf_store_close(s);

    assert_int_equal(cf_store_open(db, NULL, &s, err, sizeof(err)), 0);
    struct cf_def_row latest;
    assert_int_equal(cf_store_def_latest(s, "", "k", &latest), 0);
    assert_int_equal(latest.version, 2);
    cf_def_row_free(&latest);
    struct cf_inst_row ir;
    assert_int_equal(cf_store_instance_get(s, inst, &ir), 0);
    assert_string_equal(ir.business_key, "bk");
    assert_string_equal(ir.state, "ACTIVE");
    cf_inst_row_free(&ir);
    cf_store_close(s);

    sqlite3 *h;
    assert_int_equal(sqlite3_open(db, &h), SQLITE_OK);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(h,
                                        "SELECT group_concat(name || ':' || type || ':' || "
                                        "quote(value), ',') FROM variable",
                                        -1, &st, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "b:5:X'000102',d:3:2.5");
    sqlite3_finalize(st);
    sqlite3_close(h);
}

static void test_constraints_hold(void **state)
{
    (void)state;
    struct cf_store *s;
    char err[256];
    assert_int_equal(cf_store_open(db, NULL, &s, err, sizeof(err)), 0);
    int64_t id;
    /* Foreign keys are on: an instance of a definition that does not exist is refused. */
    assert_int_equal(cf_store_begin(s), 0);
    assert_int_equal(cf_store_instance_insert(s, 424242, "", NULL, 0, 1, &id), CF_EEXIST);
    assert_int_equal(cf_store_rollback(s), 0);
    cf_store_close(s);
}

int main(void)
{
    cf_log_set_level(CF_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open_creates_schema_in_wal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_newer_schema_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rows_survive_reopen_and_rollback_discards, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_constraints_hold, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
