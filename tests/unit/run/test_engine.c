/*
 * Engine tests: deployment versioning, durable execution across restarts after every step,
 * per-instance exclusivity of jobs, retries and incidents, and that secret parameters never
 * reach the database, variables or incident messages. Calls are served by a plug-in module
 * linked into the test ("held" tasks complete only when the test says so), so every state in
 * between can be inspected.
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

int usleep(unsigned int usec);

#include <cmocka.h>
#include <sqlite3.h>

#include "run/engine.h"

/* --- a plug-in module inside the test --- */

#define MAX_HELD 64
static struct cf_call *held[MAX_HELD];
static int n_held;
static int max_concurrent_seen;
static int in_flight;
static char seen_secret[128];

static void held_execute(struct cf_call *call)
{
    held[n_held++] = call;
    in_flight++;
    if (in_flight > max_concurrent_seen)
        max_concurrent_seen = in_flight;
}

static void held_cancel(struct cf_call *call)
{
    for (int i = 0; i < n_held; i++) {
        if (held[i] == call) {
            held[i] = held[--n_held];
            in_flight--;
            return;
        }
    }
}

/* Completes the oldest held call, setting result=<activity id>. */
static void release_one(void)
{
    assert_true(n_held > 0);
    struct cf_call *call = held[0];
    memmove(held, held + 1, (size_t)(n_held - 1) * sizeof(*held));
    n_held--;
    in_flight--;
    const char *act = call->host->activity_id(call);
    struct cf_value v = {.type = CF_VALUE_STRING, .str = act, .len = strlen(act)};
    char name[64];
    snprintf(name, sizeof(name), "done_%s", act);
    call->host->var_set(call, name, &v);
    call->host->complete(call);
}

static void secret_execute(struct cf_call *call)
{
    const char *s = call->host->param(call, "password");
    snprintf(seen_secret, sizeof(seen_secret), "%s", s ? s : "");
    (call->host->fail)(call, 0, "the CA refused the request");
}

static int flaky_left;

static void flaky_execute(struct cf_call *call)
{
    if (flaky_left-- > 0)
        (call->host->fail)(call, 1, "temporary trouble");
    else
        call->host->complete(call);
}

static const struct cf_param_def secret_params[] = {
    {.size = sizeof(struct cf_param_def),
     .name = "password",
     .type = CF_PARAM_STRING,
     .flags = CF_PARAM_MANDATORY | CF_PARAM_SECRET,
     .description = "A secret."},
    {.size = sizeof(struct cf_param_def), .name = NULL},
};
static const struct cf_param_def no_params[] = {{.size = sizeof(struct cf_param_def)}};

static const struct cf_task_def held_task = {.size = sizeof(struct cf_task_def),
                                             .name = "heldTask",
                                             .summary = "Completes when the test says so.",
                                             .params = no_params,
                                             .execute = held_execute,
                                             .cancel = held_cancel};
static const struct cf_task_def secret_task = {.size = sizeof(struct cf_task_def),
                                               .name = "secretTask",
                                               .summary = "Reads a secret and fails.",
                                               .params = secret_params,
                                               .execute = secret_execute};
static const struct cf_task_def flaky_task = {.size = sizeof(struct cf_task_def),
                                              .name = "flakyTask",
                                              .summary = "Fails retryably, then completes.",
                                              .params = no_params,
                                              .execute = flaky_execute};
static const struct cf_task_def *const test_tasks[] = {&held_task, &secret_task, &flaky_task, NULL};
static const struct cf_module test_module = {.size = sizeof(struct cf_module),
                                             .abi_major = CF_PLUGIN_ABI_MAJOR,
                                             .abi_minor = CF_PLUGIN_ABI_MINOR,
                                             .name = "test",
                                             .version = "1",
                                             .tasks = test_tasks};

/* --- engine session --- */

struct env {
    char dir[64];
    char db[128];
    uv_loop_t loop;
    struct cf_engine *e;
    int ended;
    char end_state[16];
};

static void on_ended(void *arg, int64_t id, const char *state)
{
    struct env *env = arg;
    (void)id;
    env->ended++;
    snprintf(env->end_state, sizeof(env->end_state), "%s", state);
}

static void on_idle(void *arg)
{
    struct env *env = arg;
    uv_stop(&env->loop);
}

static void env_open(struct env *env)
{
    char err[512];
    uv_loop_init(&env->loop);
    struct cf_engine_options opt = {.db_path = env->db, .node_id = "test"};
    int rc = cf_engine_open(&env->loop, &opt, &env->e, err, sizeof(err));
    if (rc)
        fail_msg("cf_engine_open: %s", err);
    assert_int_equal(cf_engine_add_module(env->e, &test_module, "test", err, sizeof(err)), 0);
    struct cf_engine_observer obs = {.instance_ended = on_ended, .idle = on_idle, .arg = env};
    cf_engine_set_observer(env->e, &obs);
}

static void env_close(struct env *env)
{
    cf_engine_close(env->e);
    uv_run(&env->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&env->loop), 0);
    env->e = NULL;
}

static void env_setup(struct env *env)
{
    memset(env, 0, sizeof(*env));
    snprintf(env->dir, sizeof(env->dir), "/tmp/cf-test-XXXXXX");
    assert_non_null(mkdtemp(env->dir));
    snprintf(env->db, sizeof(env->db), "%s/t.db", env->dir);
    n_held = in_flight = max_concurrent_seen = 0;
    env_open(env);
}

static void env_teardown(struct env *env)
{
    if (env->e)
        env_close(env);
    const char *sfx[] = {"", "-wal", "-shm", ".key"};
    for (int i = 0; i < 4; i++) {
        char p[160];
        snprintf(p, sizeof(p), "%s%s", env->db, sfx[i]);
        unlink(p);
    }
    rmdir(env->dir);
}

/* Runs the loop until nothing is runnable; calls held by the test count as waiting. */
static void run_until_idle(struct env *env)
{
    for (int i = 0; i < 2000; i++) {
        uv_run(&env->loop, UV_RUN_NOWAIT);
        struct cf_engine_stats st;
        cf_engine_stats(env->e, &st);
        bool due_now = st.next_due && st.next_due <= cf_now_ms();
        if (!st.items && !st.ready && st.running == n_held && !due_now)
            return;
        usleep(1000);
    }
    fail_msg("the engine did not settle");
}

static int64_t deploy(struct env *env, const char *xml, bool *is_new)
{
    struct cf_deploy_result res;
    int rc = cf_engine_deploy(env->e, "t.bpmn", (const uint8_t *)xml, strlen(xml), "", &res);
    if (rc) {
        struct cf_buf b;
        cf_buf_init(&b);
        cf_diags_format(&res.diags, "t.bpmn", &b);
        fail_msg("deploy failed: %s", b.data);
    }
    int64_t id = res.defs[0].definition_id;
    if (is_new)
        *is_new = res.defs[0].is_new;
    cf_deploy_result_free(&res);
    return id;
}

static int64_t start(struct env *env, int64_t def)
{
    int64_t id;
    char err[512];
    if (cf_engine_start(env->e, def, NULL, NULL, 0, &id, err, sizeof(err)) != 0)
        fail_msg("start: %s", err);
    return id;
}

/* The durable state of every instance, as text, leaving out what legitimately changes across a
 * restart (lock owner and expiry, attempt counters, timestamps). */
static char *dump(const char *db)
{
    sqlite3 *h;
    assert_int_equal(sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    const char *queries[] = {
        "SELECT 'pi', id, definition_id, state FROM process_instance ORDER BY id",
        "SELECT 'ex', id, parent_id, activity_id, state, act_inst_id, resume FROM execution "
        "ORDER BY id",
        "SELECT 'var', execution_id, name, type, quote(value) FROM variable ORDER BY 2, 3",
        "SELECT 'job', id, type, execution_id, activity_id, act_inst_id, retries FROM job "
        "ORDER BY id",
        "SELECT 'inc', id, type, execution_id, activity_id, job_id, message, resolved_at IS NULL "
        "FROM incident ORDER BY id",
        "SELECT 'hist', id, activity_id, activity_type, end_state FROM history_activity "
        "ORDER BY id",
    };
    struct cf_buf out;
    cf_buf_init(&out);
    for (size_t q = 0; q < CF_ARRAY_LEN(queries); q++) {
        sqlite3_stmt *st;
        assert_int_equal(sqlite3_prepare_v2(h, queries[q], -1, &st, NULL), SQLITE_OK);
        while (sqlite3_step(st) == SQLITE_ROW) {
            for (int c = 0; c < sqlite3_column_count(st); c++) {
                const unsigned char *t = sqlite3_column_text(st, c);
                cf_buf_printf(&out, "%s%s", c ? "|" : "", t ? (const char *)t : "NULL");
            }
            cf_buf_putc(&out, '\n');
        }
        sqlite3_finalize(st);
    }
    sqlite3_close(h);
    return cf_buf_steal(&out);
}

#define XML_HEAD                                                                                   \
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"                                                 \
    "<bpmn:definitions xmlns:bpmn=\"http://www.omg.org/spec/BPMN/20100524/MODEL\" "                \
    "xmlns:camunda=\"http://camunda.org/schema/1.0/bpmn\" id=\"d\" "                               \
    "targetNamespace=\"http://bpmn.io/schema/bpmn\">\n"

/* start → fork → (A, subprocess{B → C}) → join → D (asyncBefore) → end */
static const char *process_steps =
    XML_HEAD "<bpmn:process id=\"steps\" isExecutable=\"true\">\n"
             "<bpmn:startEvent id=\"s\"/>\n"
             "<bpmn:sequenceFlow id=\"f1\" sourceRef=\"s\" targetRef=\"fork\"/>\n"
             "<bpmn:parallelGateway id=\"fork\"/>\n"
             "<bpmn:sequenceFlow id=\"f2\" sourceRef=\"fork\" targetRef=\"A\"/>\n"
             "<bpmn:sequenceFlow id=\"f3\" sourceRef=\"fork\" targetRef=\"sub\"/>\n"
             "<bpmn:serviceTask id=\"A\" camunda:delegateExpression=\"${heldTask}\"/>\n"
             "<bpmn:subProcess id=\"sub\">\n"
             "  <bpmn:startEvent id=\"ss\"/>\n"
             "  <bpmn:sequenceFlow id=\"g1\" sourceRef=\"ss\" targetRef=\"B\"/>\n"
             "  <bpmn:serviceTask id=\"B\" camunda:delegateExpression=\"${heldTask}\"/>\n"
             "  <bpmn:sequenceFlow id=\"g2\" sourceRef=\"B\" targetRef=\"C\"/>\n"
             "  <bpmn:serviceTask id=\"C\" camunda:delegateExpression=\"${heldTask}\"/>\n"
             "  <bpmn:sequenceFlow id=\"g3\" sourceRef=\"C\" targetRef=\"se\"/>\n"
             "  <bpmn:endEvent id=\"se\"/>\n"
             "</bpmn:subProcess>\n"
             "<bpmn:sequenceFlow id=\"f4\" sourceRef=\"A\" targetRef=\"join\"/>\n"
             "<bpmn:sequenceFlow id=\"f5\" sourceRef=\"sub\" targetRef=\"join\"/>\n"
             "<bpmn:parallelGateway id=\"join\"/>\n"
             "<bpmn:sequenceFlow id=\"f6\" sourceRef=\"join\" targetRef=\"D\"/>\n"
             "<bpmn:serviceTask id=\"D\" camunda:asyncBefore=\"true\" "
             "camunda:delegateExpression=\"${heldTask}\"/>\n"
             "<bpmn:sequenceFlow id=\"f7\" sourceRef=\"D\" targetRef=\"e\"/>\n"
             "<bpmn:endEvent id=\"e\"/>\n"
             "</bpmn:process>\n"
             "</bpmn:definitions>\n";

/* After every step, the engine is closed and reopened on the same file: what it finds must be
 * exactly what it left, and the instance must still reach its end. */
static void test_restart_after_every_step(void **state)
{
    (void)state;
    struct env env;
    env_setup(&env);
    int64_t def = deploy(&env, process_steps, NULL);
    start(&env, def);
    run_until_idle(&env);
    int steps = 0;
    while (env.ended == 0) {
        char *before = dump(env.db);
        env_close(&env);
        /* Calls that were running are given up by the close; the reopened engine runs them
         * again, which must not change the durable state. */
        n_held = in_flight = 0;
        env_open(&env);
        run_until_idle(&env);
        char *after = dump(env.db);
        assert_string_equal(before, after);
        free(before);
        free(after);
        if (env.ended)
            break;
        assert_true(n_held > 0);
        release_one();
        run_until_idle(&env);
        steps++;
        assert_true(steps < 20);
    }
    assert_string_equal(env.end_state, "COMPLETED");
    char *final = dump(env.db);
    /* Every service task ran to completion exactly once, in a legal order. */
    assert_non_null(strstr(final, "hist|"));
    assert_non_null(strstr(final, "|D|serviceTask|completed"));
    assert_non_null(strstr(final, "|C|serviceTask|completed"));
    assert_non_null(strstr(final, "|done_D|1|'D'"));
    assert_null(strstr(final, "job|"));
    assert_null(strstr(final, "|active"));
    free(final);
    env_teardown(&env);
}

/* Jobs of one instance never run at the same time, even when parallel branches make two due. */
static void test_one_job_per_instance(void **state)
{
    (void)state;
    struct env env;
    env_setup(&env);
    int64_t def = deploy(&env, process_steps, NULL);
    start(&env, def);
    start(&env, def);
    run_until_idle(&env);
    /* Two instances, each with two parallel branches ready: only one call per instance. */
    assert_int_equal(n_held, 2);
    while (n_held) {
        release_one();
        run_until_idle(&env);
        assert_true(n_held <= 2);
    }
    assert_int_equal(max_concurrent_seen, 2);
    assert_int_equal(env.ended, 2);
    env_teardown(&env);
}

static void test_versioning(void **state)
{
    (void)state;
    struct env env;
    env_setup(&env);
    bool is_new;
    int64_t v1 = deploy(&env, process_steps, &is_new);
    assert_true(is_new);
    int64_t again = deploy(&env, process_steps, &is_new);
    assert_false(is_new);
    assert_int_equal(v1, again);
    char *changed = cf_xasprintf("%s<!-- changed -->\n", process_steps);
    int64_t v2 = deploy(&env, changed, &is_new);
    free(changed);
    assert_true(is_new);
    assert_true(v2 != v1);
    struct cf_def_row row;
    assert_int_equal(cf_store_def_get(cf_engine_store(env.e), v2, false, &row), 0);
    assert_int_equal(row.version, 2);
    cf_def_row_free(&row);
    env_teardown(&env);
}

static const char *process_secret =
    XML_HEAD "<bpmn:process id=\"sec\" isExecutable=\"true\">\n"
             "<bpmn:startEvent id=\"s\"/>\n"
             "<bpmn:sequenceFlow id=\"f1\" sourceRef=\"s\" targetRef=\"T\"/>\n"
             "<bpmn:serviceTask id=\"T\" camunda:delegateExpression=\"${secretTask}\">\n"
             "<bpmn:extensionElements><camunda:inputOutput>"
             "<camunda:inputParameter name=\"password\">${pw}</camunda:inputParameter>"
             "</camunda:inputOutput></bpmn:extensionElements></bpmn:serviceTask>\n"
             "<bpmn:sequenceFlow id=\"f2\" sourceRef=\"T\" targetRef=\"e\"/>\n"
             "<bpmn:endEvent id=\"e\"/>\n"
             "</bpmn:process>\n"
             "</bpmn:definitions>\n";

static bool contains(const char *hay, size_t n, const char *needle)
{
    size_t k = strlen(needle);
    for (size_t i = 0; i + k <= n; i++)
        if (memcmp(hay + i, needle, k) == 0)
            return true;
    return false;
}

static void test_admin_secret_never_stored_in_clear_places(void **state)
{
    (void)state;
    struct env env;
    env_setup(&env);
    const char *secret = "S3cr3t-admin-value-91";
    /* The admin value wins over the BPMN input. */
    assert_int_equal(cf_store_param_set(cf_engine_store(env.e), "", "sec", "T", "password", secret,
                                        true, cf_now_ms()),
                     0);
    int64_t def = deploy(&env, process_secret, NULL);
    struct cf_named_val var = {.name = "pw"};
    cf_val_set_string(&var.val, "from-bpmn");
    int64_t id;
    char err[256];
    assert_int_equal(cf_engine_start(env.e, def, NULL, &var, 1, &id, err, sizeof(err)), 0);
    cf_val_free(&var.val);
    run_until_idle(&env);
    assert_string_equal(seen_secret, secret);
    char *d = dump(env.db);
    /* The call failed with an incident; neither the incident, variables, jobs nor history hold
     * the secret (only the admin configuration table does). */
    assert_non_null(strstr(d, "inc|"));
    assert_non_null(strstr(d, "the CA refused the request"));
    assert_null(strstr(d, secret));
    free(d);
    /* Nor does any byte of the database, its WAL or its configuration table: the admin value is
     * stored sealed (store/seal.h), under a key kept next to the database. */
    const char *suffixes[] = {"", "-wal"};
    for (size_t i = 0; i < CF_ARRAY_LEN(suffixes); i++) {
        char path[256];
        snprintf(path, sizeof(path), "%s%s", env.db, suffixes[i]);
        FILE *f = fopen(path, "rb");
        if (!f)
            continue;
        static char bytes[4 << 20];
        size_t n = fread(bytes, 1, sizeof(bytes), f);
        fclose(f);
        assert_false(contains(bytes, n, secret));
    }
    char keyfile[256];
    snprintf(keyfile, sizeof(keyfile), "%s.key", env.db);
    struct stat kst;
    assert_int_equal(stat(keyfile, &kst), 0);
    assert_int_equal(kst.st_mode & 0777, 0600);
    env_teardown(&env);
}

static const char *process_flaky =
    XML_HEAD "<bpmn:process id=\"flaky\" isExecutable=\"true\">\n"
             "<bpmn:startEvent id=\"s\"/>\n"
             "<bpmn:sequenceFlow id=\"f1\" sourceRef=\"s\" targetRef=\"T\"/>\n"
             "<bpmn:serviceTask id=\"T\" camunda:delegateExpression=\"${flakyTask}\">\n"
             "<bpmn:extensionElements><camunda:failedJobRetryTimeCycle>R3/PT0S"
             "</camunda:failedJobRetryTimeCycle></bpmn:extensionElements></bpmn:serviceTask>\n"
             "<bpmn:sequenceFlow id=\"f2\" sourceRef=\"T\" targetRef=\"e\"/>\n"
             "<bpmn:endEvent id=\"e\"/>\n"
             "</bpmn:process>\n"
             "</bpmn:definitions>\n";

struct inc_find {
    int64_t id;
    int count;
};

static int find_inc(void *arg, const struct cf_incident_row *r)
{
    struct inc_find *f = arg;
    f->id = r->id;
    f->count++;
    return 0;
}

/* A retryable failure is retried per the cycle; when attempts run out, an incident; retrying
 * the incident runs the same step again and the instance completes. */
static void test_retries_then_incident_then_retry(void **state)
{
    (void)state;
    struct env env;
    env_setup(&env);
    int64_t def = deploy(&env, process_flaky, NULL);
    flaky_left = 3; /* R3: three attempts, all fail */
    start(&env, def);
    for (int i = 0; i < 50 && env.ended == 0; i++) {
        run_until_idle(&env);
        struct inc_find f = {0};
        cf_store_incident_list(cf_engine_store(env.e), 0, true, find_inc, &f);
        if (f.count)
            break;
        /* Retries are due "now" (PT0S): the acquisition timer picks them up. */
        uv_run(&env.loop, UV_RUN_ONCE);
    }
    struct inc_find f = {0};
    cf_store_incident_list(cf_engine_store(env.e), 0, true, find_inc, &f);
    assert_int_equal(f.count, 1);
    assert_int_equal(flaky_left, 0);
    assert_int_equal(env.ended, 0);
    char err[256];
    flaky_left = 0;
    assert_int_equal(cf_engine_retry_incident(env.e, f.id, 1, err, sizeof(err)), 0);
    run_until_idle(&env);
    assert_int_equal(env.ended, 1);
    assert_string_equal(env.end_state, "COMPLETED");
    /* A resolved incident cannot be retried again. */
    assert_int_equal(cf_engine_retry_incident(env.e, f.id, 1, err, sizeof(err)), CF_ESTATE);
    env_teardown(&env);
}

static void test_deploy_refuses_unknown_task_and_missing_param(void **state)
{
    (void)state;
    struct env env;
    env_setup(&env);
    const char *xml =
        XML_HEAD "<bpmn:process id=\"bad\" isExecutable=\"true\">\n"
                 "<bpmn:startEvent id=\"s\"/>\n"
                 "<bpmn:sequenceFlow id=\"f1\" sourceRef=\"s\" targetRef=\"T1\"/>\n"
                 "<bpmn:serviceTask id=\"T1\" camunda:delegateExpression=\"${noSuchTask}\"/>\n"
                 "<bpmn:sequenceFlow id=\"f2\" sourceRef=\"T1\" targetRef=\"T2\"/>\n"
                 "<bpmn:serviceTask id=\"T2\" camunda:delegateExpression=\"${secretTask}\"/>\n"
                 "<bpmn:sequenceFlow id=\"f3\" sourceRef=\"T2\" targetRef=\"e\"/>\n"
                 "<bpmn:endEvent id=\"e\"/>\n"
                 "</bpmn:process>\n"
                 "</bpmn:definitions>\n";
    struct cf_deploy_result res;
    assert_int_equal(
        cf_engine_deploy(env.e, "bad.bpmn", (const uint8_t *)xml, strlen(xml), "", &res),
        CF_EINVALID);
    struct cf_buf b;
    cf_buf_init(&b);
    cf_diags_format(&res.diags, "bad.bpmn", &b);
    assert_non_null(strstr(b.data, "bad.bpmn:6: T1: unknown delegate expression ${noSuchTask}"));
    assert_non_null(strstr(b.data, "bad.bpmn:8: T2: mandatory parameter 'password'"));
    cf_buf_free(&b);
    cf_deploy_result_free(&res);
    /* Nothing was stored. */
    struct cf_def_row row;
    assert_int_equal(cf_store_def_latest(cf_engine_store(env.e), "", "bad", &row), CF_ENOENT);
    env_teardown(&env);
}

int main(void)
{
    cf_log_set_level(CF_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_restart_after_every_step),
        cmocka_unit_test(test_one_job_per_instance),
        cmocka_unit_test(test_versioning),
        cmocka_unit_test(test_admin_secret_never_stored_in_clear_places),
        cmocka_unit_test(test_retries_then_incident_then_retry),
        cmocka_unit_test(test_deploy_refuses_unknown_task_and_missing_param),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
