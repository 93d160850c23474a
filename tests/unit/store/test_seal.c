/*
 * Secrets at rest (store/seal.h): a sealed value opens only with its key and for its row, the
 * key file is made once with owner-only permissions and a systemd credential wins over it, and a
 * secret task parameter goes into the database sealed and comes out of cf_store_param_reveal()
 * as it was set — while a sealed value copied into another row, or read without its key, does
 * not open.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "store/seal.h"
#include "store/store.h"

static char dir[64], db[128], keyfile[160], creddir[160];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/cf-seal-XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    snprintf(db, sizeof(db), "%s/s.db", dir);
    snprintf(keyfile, sizeof(keyfile), "%s.key", db);
    snprintf(creddir, sizeof(creddir), "%s/cred", dir);
    unsetenv("CREDENTIALS_DIRECTORY");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    const char *sfx[] = {"", "-wal", "-shm", ".key"};
    for (int i = 0; i < 4; i++) {
        char p[200];
        snprintf(p, sizeof(p), "%s%s", db, sfx[i]);
        unlink(p);
    }
    char p[200];
    snprintf(p, sizeof(p), "%s/%s", creddir, CF_SEAL_CREDENTIAL_NAME);
    unlink(p);
    rmdir(creddir);
    rmdir(dir);
    unsetenv("CREDENTIALS_DIRECTORY");
    return 0;
}

static void test_seal_round_trip_and_refusals(void **state)
{
    (void)state;
    uint8_t key[CF_SEAL_KEY_BYTES], other[CF_SEAL_KEY_BYTES];
    char err[256];
    assert_int_equal(cf_seal_key_load(db, false, key, err, sizeof(err)), CF_ENOENT);
    assert_int_equal(cf_seal_key_load(db, true, key, err, sizeof(err)), 0);
    struct stat st;
    assert_int_equal(stat(keyfile, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(st.st_size, 65); /* 64 hex digits and a newline */
    /* Loading again gives the same key, not a new one. */
    assert_int_equal(cf_seal_key_load(db, true, other, err, sizeof(err)), 0);
    assert_memory_equal(key, other, sizeof(key));

    const uint8_t aad[] = "row-1", aad2[] = "row-2";
    char *sealed = cf_seal(key, "hunter2-secret", aad, sizeof(aad));
    assert_true(cf_seal_is_sealed(sealed));
    assert_null(strstr(sealed, "hunter2"));
    char *again = cf_seal(key, "hunter2-secret", aad, sizeof(aad));
    assert_string_not_equal(sealed, again); /* a fresh nonce each time */
    free(again);
    char *plain = NULL;
    assert_int_equal(cf_seal_open(key, sealed, aad, sizeof(aad), &plain), 0);
    assert_string_equal(plain, "hunter2-secret");
    cf_seal_free_plain(plain);
    /* Another row, another key, an altered value, clear text: none opens. */
    assert_int_equal(cf_seal_open(key, sealed, aad2, sizeof(aad2), &plain), CF_EINVAL);
    assert_null(plain);
    memset(other, 0x5a, sizeof(other));
    assert_int_equal(cf_seal_open(other, sealed, aad, sizeof(aad), &plain), CF_EINVAL);
    size_t n = strlen(sealed);
    sealed[n - 3] = sealed[n - 3] == 'A' ? 'B' : 'A';
    assert_int_equal(cf_seal_open(key, sealed, aad, sizeof(aad), &plain), CF_EINVAL);
    assert_int_equal(cf_seal_open(key, "hunter2", aad, sizeof(aad), &plain), CF_EINVAL);
    assert_int_equal(cf_seal_open(key, CF_SEAL_PREFIX "!!", aad, sizeof(aad), &plain), CF_EINVAL);
    free(sealed);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_credential_wins_and_bad_keys_are_named(void **state)
{
    (void)state;
    uint8_t key[CF_SEAL_KEY_BYTES];
    char err[256];
    assert_int_equal(mkdir(creddir, 0700), 0);
    char cred[200];
    snprintf(cred, sizeof(cred), "%s/%s", creddir, CF_SEAL_CREDENTIAL_NAME);
    write_file(cred, "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n");
    setenv("CREDENTIALS_DIRECTORY", creddir, 1);
    assert_int_equal(cf_seal_key_load(db, true, key, err, sizeof(err)), 0);
    assert_int_equal(key[0], 0x00);
    assert_int_equal(key[31], 0x1f);
    /* No key file was made beside the database: the credential is the key. */
    assert_int_not_equal(access(keyfile, F_OK), 0);

    write_file(cred, "not hex at all, but the secret 0123\n");
    assert_int_equal(cf_seal_key_load(db, true, key, err, sizeof(err)), CF_EINVAL);
    assert_non_null(strstr(err, cred));
    assert_non_null(strstr(err, "64 hexadecimal digits"));
    assert_null(strstr(err, "secret 0123")); /* never the content */
}

static int list_one(void *arg, const char *activity, const char *name, const char *value)
{
    (void)activity;
    (void)name;
    char **out = arg;
    free(*out);
    *out = strdup(value);
    return 0;
}

static void test_secret_parameter_is_sealed_in_the_database(void **state)
{
    (void)state;
    struct cf_store *s;
    char err[256];
    assert_int_equal(cf_store_open(db, NULL, &s, err, sizeof(err)), 0);
    assert_int_equal(
        cf_store_param_set(s, "t1", "order", "Issue", "password", "Pa55-w0rd-xyz", true, 1000), 0);
    assert_int_equal(cf_store_param_set(s, "t1", "order", "Issue", "mode", "fast", false, 1000), 0);
    char *stored = NULL;
    assert_int_equal(cf_store_param_list(s, "t1", "order", "Issue", list_one, &stored), 0);
    /* Rows come in name order: "mode", then "password". */
    assert_true(cf_seal_is_sealed(stored));
    char *plain = NULL;
    assert_int_equal(cf_store_param_reveal(s, "t1", "order", "Issue", "password", stored, &plain),
                     0);
    assert_string_equal(plain, "Pa55-w0rd-xyz");
    cf_seal_free_plain(plain);
    /* The same sealed text presented as another activity's parameter does not open. */
    assert_int_equal(cf_store_param_reveal(s, "t1", "order", "Other", "password", stored, &plain),
                     CF_EINVAL);
    assert_int_equal(cf_store_param_reveal(s, "t2", "order", "Issue", "password", stored, &plain),
                     CF_EINVAL);
    /* A clear value comes back as it is. */
    assert_int_equal(cf_store_param_reveal(s, "t1", "order", "Issue", "mode", "fast", &plain), 0);
    assert_string_equal(plain, "fast");
    cf_seal_free_plain(plain);
    cf_store_close(s);

    /* Without its key (a database copied alone), the value stays closed. */
    assert_int_equal(unlink(keyfile), 0);
    assert_int_equal(cf_store_open(db, NULL, &s, err, sizeof(err)), 0);
    assert_int_equal(cf_store_param_reveal(s, "t1", "order", "Issue", "password", stored, &plain),
                     CF_ENOENT);
    assert_null(plain);
    cf_store_close(s);
    free(stored);

    /* No byte of the database holds the clear text. */
    sqlite3 *h;
    assert_int_equal(sqlite3_open(db, &h), SQLITE_OK);
    sqlite3_stmt *q;
    assert_int_equal(sqlite3_prepare_v2(h,
                                        "SELECT count(*) FROM task_param WHERE value LIKE "
                                        "'%Pa55%'",
                                        -1, &q, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(q, 0), 0);
    sqlite3_finalize(q);
    sqlite3_close(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_seal_round_trip_and_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_credential_wins_and_bad_keys_are_named, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_secret_parameter_is_sealed_in_the_database, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
