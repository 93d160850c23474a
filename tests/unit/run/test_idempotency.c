/*
 * Idempotency keys (shared/DESIGN.md §3, shared/reference/reliability.md R5): every plug-in call
 * gets host->idempotency_key(), which must be the same for every retry of one logical step
 * (retryable failures, a retried incident, and the run after a crash or stop while the call was
 * running) and different for the next step, for each iteration of a loop through the same task,
 * for parallel branches and for other instances. A plug-in that talks to a CA relies on this to
 * reconcile instead of issuing a second certificate, so a wrong key is a duplicated certificate.
 *
 * The calls are served by a plug-in module linked into the test that records each key it is
 * given; what a call does (fail retryably, stay running, complete) is scripted per activity.
 * A crash is simulated by closing the engine while a call runs and opening it again on the same
 * database, which is what a restart after kill -9 does to the job: its lock is released and it
 * runs again.
 */
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int usleep(unsigned int usec);

#include <cmocka.h>

#include "run/engine.h"

/* --- a plug-in module that records keys --- */

#define MAX_CALLS 256

struct recorded {
    char key[160];
    char activity[32];
    int64_t instance;
    int64_t count; /* the loop counter the call saw, or -1 */
};
static struct recorded calls[MAX_CALLS];
static int n_calls;

/* Script per activity id: fail retryably this many more times, then complete; or hold (the
 * call stays running until the test ends it). The activity "Loop" is scripted per iteration
 * instead, by the loop counter the call sees. */
struct script {
    const char *activity;
    int fail_left;
    bool hold;
};
static struct script scripts[8];
static int n_scripts;
static struct script loop_plan[4];

#define MAX_HELD 8
static struct cf_call *held[MAX_HELD];
static int n_held;

static struct script *script_of(const char *activity)
{
    for (int i = 0; i < n_scripts; i++)
        if (strcmp(scripts[i].activity, activity) == 0)
            return &scripts[i];
    return NULL;
}

static void set_script(const char *activity, int fail_left, bool hold)
{
    struct script *s = script_of(activity);
    if (!s) {
        assert_true(n_scripts < (int)CF_ARRAY_LEN(scripts));
        s = &scripts[n_scripts++];
        s->activity = activity;
    }
    s->fail_left = fail_left;
    s->hold = hold;
}

/* Completes a call; the activity "Loop" counts its iterations in the variable `count`. */
static void complete_call(struct cf_call *call)
{
    if (strcmp(call->host->activity_id(call), "Loop") == 0) {
        struct cf_value v;
        int64_t count = 0;
        if (call->host->var_get(call, "count", &v) == 0 && v.type == CF_VALUE_LONG)
            count = v.l;
        struct cf_value next = {.type = CF_VALUE_LONG, .l = count + 1};
        assert_int_equal(call->host->var_set(call, "count", &next), 0);
    }
    call->host->complete(call);
}

/* Completes every held call (calls they lead to may be held again: run the engine after). */
static void release_held(void)
{
    while (n_held) {
        struct cf_call *c = held[--n_held];
        complete_call(c);
    }
}

static void record_execute(struct cf_call *call)
{
    const struct cf_host *h = call->host;
    assert_true(n_calls < MAX_CALLS);
    struct recorded *r = &calls[n_calls++];
    const char *key = h->idempotency_key(call);
    assert_non_null(key);
    assert_true(*key != '\0');
    assert_true(strlen(key) < sizeof(r->key));
    snprintf(r->key, sizeof(r->key), "%s", key);
    snprintf(r->activity, sizeof(r->activity), "%s", h->activity_id(call));
    assert_int_equal(cf_parse_i64(h->instance_id(call), &r->instance), 0);
    struct cf_value v;
    r->count = h->var_get(call, "count", &v) == 0 && v.type == CF_VALUE_LONG ? v.l : -1;

    struct script *s = script_of(r->activity);
    if (strcmp(r->activity, "Loop") == 0 && r->count >= 0 &&
        r->count < (int64_t)CF_ARRAY_LEN(loop_plan))
        s = &loop_plan[r->count];
    if (s && s->fail_left > 0) {
        s->fail_left--;
        (h->fail)(call, 1, "temporary trouble at the CA");
    } else if (s && s->hold) {
        assert_true(n_held < MAX_HELD);
        held[n_held++] = call;
    } else {
        complete_call(call);
    }
}

static void record_cancel(struct cf_call *call)
{
    for (int i = 0; i < n_held; i++)
        if (held[i] == call) {
            held[i] = held[--n_held];
            return;
        }
}

static const struct cf_param_def no_params[] = {{.size = sizeof(struct cf_param_def)}};
static const struct cf_task_def record_task = {.size = sizeof(struct cf_task_def),
                                               .name = "recordTask",
                                               .summary = "Records its idempotency key.",
                                               .params = no_params,
                                               .execute = record_execute,
                                               .cancel = record_cancel};
static const struct cf_task_def *const test_tasks[] = {&record_task, NULL};
static const struct cf_module test_module = {.size = sizeof(struct cf_module),
                                             .abi_major = CF_PLUGIN_ABI_MAJOR,
                                             .abi_minor = CF_PLUGIN_ABI_MINOR,
                                             .name = "idempotency-test",
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

static void env_open(struct env *env)
{
    char err[512];
    uv_loop_init(&env->loop);
    struct cf_engine_options opt = {.db_path = env->db, .node_id = "test"};
    if (cf_engine_open(&env->loop, &opt, &env->e, err, sizeof(err)) != 0)
        fail_msg("cf_engine_open: %s", err);
    assert_int_equal(cf_engine_add_module(env->e, &test_module, "test", err, sizeof(err)), 0);
    struct cf_engine_observer obs = {.instance_ended = on_ended, .arg = env};
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
    snprintf(env->dir, sizeof(env->dir), "/tmp/cf-idem-XXXXXX");
    assert_non_null(mkdtemp(env->dir));
    snprintf(env->db, sizeof(env->db), "%s/t.db", env->dir);
    n_calls = n_scripts = n_held = 0;
    memset(loop_plan, 0, sizeof(loop_plan));
    env_open(env);
}

static void env_teardown(struct env *env)
{
    if (env->e)
        env_close(env);
    const char *sfx[] = {"", "-wal", "-shm"};
    for (int i = 0; i < 3; i++) {
        char p[160];
        snprintf(p, sizeof(p), "%s%s", env->db, sfx[i]);
        unlink(p);
    }
    rmdir(env->dir);
}

/* Runs the loop until nothing is runnable; a held call counts as waiting. Retries due "now"
 * (PT0S) are runnable, so they run before this returns. */
static void run_until_idle(struct env *env)
{
    for (int i = 0; i < 5000; i++) {
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

static int64_t deploy(struct env *env, const char *xml)
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

/* The calls recorded for `activity` of `instance` (0: any), in order. */
static int calls_of(const char *activity, int64_t instance, const struct recorded **out, int max)
{
    int n = 0;
    for (int i = 0; i < n_calls; i++)
        if (strcmp(calls[i].activity, activity) == 0 &&
            (!instance || calls[i].instance == instance)) {
            assert_true(n < max);
            out[n++] = &calls[i];
        }
    return n;
}

/* All calls of `activity` in `instance` carry one key; returns it. */
static const char *one_key(const char *activity, int64_t instance, int expected_calls)
{
    const struct recorded *r[MAX_CALLS];
    int n = calls_of(activity, instance, r, MAX_CALLS);
    if (n != expected_calls)
        fail_msg("%s was called %d times in instance %" PRId64 ", expected %d", activity, n,
                 instance, expected_calls);
    for (int i = 1; i < n; i++)
        if (strcmp(r[i]->key, r[0]->key) != 0)
            fail_msg("call %d of %s has key '%s', call 1 had '%s': a retry of one step must "
                     "keep its key",
                     i + 1, activity, r[i]->key, r[0]->key);
    return r[0]->key;
}

#define XML_HEAD                                                                                   \
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"                                                 \
    "<bpmn:definitions xmlns:bpmn=\"http://www.omg.org/spec/BPMN/20100524/MODEL\" "                \
    "xmlns:camunda=\"http://camunda.org/schema/1.0/bpmn\" id=\"d\" "                               \
    "targetNamespace=\"http://bpmn.io/schema/bpmn\">\n"

/* A recordTask step with three attempts and no wait between them. */
#define RETRIES                                                                                    \
    "<bpmn:extensionElements><camunda:failedJobRetryTimeCycle>R3/PT0S"                             \
    "</camunda:failedJobRetryTimeCycle></bpmn:extensionElements>"

/* start → A → B (asyncBefore) → end */
static const char *process_two_steps =
    XML_HEAD "<bpmn:process id=\"two\" isExecutable=\"true\">\n"
             "<bpmn:startEvent id=\"s\"/>\n"
             "<bpmn:sequenceFlow id=\"f1\" sourceRef=\"s\" targetRef=\"A\"/>\n"
             "<bpmn:serviceTask id=\"A\" camunda:delegateExpression=\"${recordTask}\">" RETRIES
             "</bpmn:serviceTask>\n"
             "<bpmn:sequenceFlow id=\"f2\" sourceRef=\"A\" targetRef=\"B\"/>\n"
             "<bpmn:serviceTask id=\"B\" camunda:asyncBefore=\"true\" "
             "camunda:delegateExpression=\"${recordTask}\">" RETRIES "</bpmn:serviceTask>\n"
             "<bpmn:sequenceFlow id=\"f3\" sourceRef=\"B\" targetRef=\"e\"/>\n"
             "<bpmn:endEvent id=\"e\"/>\n"
             "</bpmn:process>\n"
             "</bpmn:definitions>\n";

/* Retryable failures run the step again with the same key; the next step gets another one. */
static void test_key_stable_across_retries(void **state)
{
    (void)state;
    struct env env;
    env_setup(&env);
    int64_t def = deploy(&env, process_two_steps);
    set_script("A", 2, false); /* two failures, then the third attempt completes */
    set_script("B", 1, false);
    int64_t id = start(&env, def);
    run_until_idle(&env);
    assert_int_equal(env.ended, 1);
    assert_string_equal(env.end_state, "COMPLETED");
    const char *a = one_key("A", id, 3);
    const char *b = one_key("B", id, 2);
    assert_string_not_equal(a, b);
    env_teardown(&env);
}

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

/* Retries run out, an incident is raised, an admin retries it: still the same step, same key. */
static void test_key_stable_across_incident_retry(void **state)
{
    (void)state;
    struct env env;
    env_setup(&env);
    int64_t def = deploy(&env, process_two_steps);
    set_script("A", 3, false); /* R3: all three attempts fail */
    int64_t id = start(&env, def);
    run_until_idle(&env);
    struct inc_find f = {0};
    cf_store_incident_list(cf_engine_store(env.e), 0, true, find_inc, &f);
    assert_int_equal(f.count, 1);
    assert_int_equal(env.ended, 0);
    char err[256];
    assert_int_equal(cf_engine_retry_incident(env.e, f.id, 1, err, sizeof(err)), 0);
    run_until_idle(&env);
    assert_int_equal(env.ended, 1);
    const char *a = one_key("A", id, 4);
    assert_string_not_equal(a, one_key("B", id, 1));
    env_teardown(&env);
}

/* start → H (asyncBefore) → parallel fork → (P1, P2) → join → end; H is held while the engine is
 * closed and reopened twice, as a restart after a crash would find it. */
static const char *process_held =
    XML_HEAD "<bpmn:process id=\"held\" isExecutable=\"true\">\n"
             "<bpmn:startEvent id=\"s\"/>\n"
             "<bpmn:sequenceFlow id=\"f1\" sourceRef=\"s\" targetRef=\"H\"/>\n"
             "<bpmn:serviceTask id=\"H\" camunda:asyncBefore=\"true\" "
             "camunda:delegateExpression=\"${recordTask}\">" RETRIES "</bpmn:serviceTask>\n"
             "<bpmn:sequenceFlow id=\"f2\" sourceRef=\"H\" targetRef=\"fork\"/>\n"
             "<bpmn:parallelGateway id=\"fork\"/>\n"
             "<bpmn:sequenceFlow id=\"f3\" sourceRef=\"fork\" targetRef=\"P1\"/>\n"
             "<bpmn:sequenceFlow id=\"f4\" sourceRef=\"fork\" targetRef=\"P2\"/>\n"
             "<bpmn:serviceTask id=\"P1\" camunda:delegateExpression=\"${recordTask}\">" RETRIES
             "</bpmn:serviceTask>\n"
             "<bpmn:serviceTask id=\"P2\" camunda:delegateExpression=\"${recordTask}\">" RETRIES
             "</bpmn:serviceTask>\n"
             "<bpmn:sequenceFlow id=\"f5\" sourceRef=\"P1\" targetRef=\"join\"/>\n"
             "<bpmn:sequenceFlow id=\"f6\" sourceRef=\"P2\" targetRef=\"join\"/>\n"
             "<bpmn:parallelGateway id=\"join\"/>\n"
             "<bpmn:sequenceFlow id=\"f7\" sourceRef=\"join\" targetRef=\"e\"/>\n"
             "<bpmn:endEvent id=\"e\"/>\n"
             "</bpmn:process>\n"
             "</bpmn:definitions>\n";

static void test_key_stable_across_crash_resume(void **state)
{
    (void)state;
    struct env env;
    env_setup(&env);
    int64_t def = deploy(&env, process_held);
    set_script("H", 0, true);
    int64_t first = start(&env, def);
    int64_t second = start(&env, def);
    run_until_idle(&env);
    assert_int_equal(n_held, 2);
    for (int restart = 0; restart < 2; restart++) {
        env_close(&env); /* the running calls are given up; their jobs stay locked */
        assert_int_equal(n_held, 0);
        env_open(&env); /* the locks are released and the jobs run again */
        run_until_idle(&env);
        assert_int_equal(n_held, 2);
    }
    set_script("H", 0, false);
    release_held();
    run_until_idle(&env);
    assert_int_equal(n_held, 0);
    assert_int_equal(env.ended, 2);
    /* Each H ran three times (before and after each restart), always with its step's key. */
    const char *h1 = one_key("H", first, 3);
    const char *h2 = one_key("H", second, 3);
    /* Other instances and other steps, parallel ones included, have keys of their own. */
    assert_string_not_equal(h1, h2);
    const char *p1 = one_key("P1", first, 1);
    const char *p2 = one_key("P2", first, 1);
    assert_string_not_equal(p1, p2);
    assert_string_not_equal(p1, h1);
    assert_string_not_equal(p2, h1);
    assert_string_not_equal(p1, one_key("P1", second, 1));
    env_teardown(&env);
}

/* start → Loop → (count < 3 ? back to Loop : end): three iterations of one task. Iteration 1
 * completes; iteration 2 fails once and is retried; iteration 3 is running when the engine
 * stops, and runs again after the restart. */
static const char *process_loop =
    XML_HEAD "<bpmn:process id=\"loop\" isExecutable=\"true\">\n"
             "<bpmn:startEvent id=\"s\"/>\n"
             "<bpmn:sequenceFlow id=\"f1\" sourceRef=\"s\" targetRef=\"merge\"/>\n"
             "<bpmn:exclusiveGateway id=\"merge\"/>\n"
             "<bpmn:sequenceFlow id=\"f2\" sourceRef=\"merge\" targetRef=\"Loop\"/>\n"
             "<bpmn:serviceTask id=\"Loop\" camunda:delegateExpression=\"${recordTask}\">" RETRIES
             "</bpmn:serviceTask>\n"
             "<bpmn:sequenceFlow id=\"f3\" sourceRef=\"Loop\" targetRef=\"check\"/>\n"
             "<bpmn:exclusiveGateway id=\"check\" default=\"done\"/>\n"
             "<bpmn:sequenceFlow id=\"again\" sourceRef=\"check\" targetRef=\"merge\">"
             "<bpmn:conditionExpression>${count &lt; 3}</bpmn:conditionExpression>"
             "</bpmn:sequenceFlow>\n"
             "<bpmn:sequenceFlow id=\"done\" sourceRef=\"check\" targetRef=\"e\"/>\n"
             "<bpmn:endEvent id=\"e\"/>\n"
             "</bpmn:process>\n"
             "</bpmn:definitions>\n";

static void test_key_differs_per_loop_iteration(void **state)
{
    (void)state;
    struct env env;
    env_setup(&env);
    int64_t def = deploy(&env, process_loop);
    loop_plan[1].fail_left = 1;
    loop_plan[2].hold = true;
    struct cf_named_val var = {.name = "count"};
    cf_val_set_long(&var.val, 0);
    int64_t id;
    char err[256];
    assert_int_equal(cf_engine_start(env.e, def, NULL, &var, 1, &id, err, sizeof(err)), 0);
    cf_val_free(&var.val);
    run_until_idle(&env);
    assert_int_equal(n_held, 1);
    env_close(&env);
    env_open(&env);
    run_until_idle(&env);
    assert_int_equal(n_held, 1);
    loop_plan[2].hold = false;
    release_held();
    run_until_idle(&env);
    assert_int_equal(env.ended, 1);
    assert_string_equal(env.end_state, "COMPLETED");

    /* Calls grouped by the iteration (the counter they saw): 1, 2 and 2 calls. */
    const struct recorded *r[MAX_CALLS];
    int n = calls_of("Loop", id, r, MAX_CALLS);
    assert_int_equal(n, 5);
    const char *key_of[3] = {NULL, NULL, NULL};
    int per_iteration[3] = {0, 0, 0};
    for (int i = 0; i < n; i++) {
        assert_in_range(r[i]->count, 0, 2);
        int it = (int)r[i]->count;
        if (key_of[it])
            assert_string_equal(r[i]->key, key_of[it]); /* retry or restart: same step */
        key_of[it] = r[i]->key;
        per_iteration[it]++;
    }
    assert_int_equal(per_iteration[0], 1);
    assert_int_equal(per_iteration[1], 2);
    assert_int_equal(per_iteration[2], 2);
    /* Each iteration is a step of its own. */
    assert_string_not_equal(key_of[0], key_of[1]);
    assert_string_not_equal(key_of[1], key_of[2]);
    assert_string_not_equal(key_of[0], key_of[2]);
    env_teardown(&env);
}

int main(void)
{
    cf_log_set_level(CF_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_stable_across_retries),
        cmocka_unit_test(test_key_stable_across_incident_retry),
        cmocka_unit_test(test_key_stable_across_crash_resume),
        cmocka_unit_test(test_key_differs_per_loop_iteration),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
