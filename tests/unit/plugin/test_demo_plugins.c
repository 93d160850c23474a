/*
 * Tests of the demo and noop plug-ins (tasks/demo/demo.c, tasks/noop/noop.c) as the engine sees
 * them: loaded through the registry, called through a host table. The host here is a small fake
 * that records endings and variables; its queue_work runs on a real libuv loop and thread pool,
 * so the asynchronous completion of setVariablesTask is exercised the way the engine runs it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#include "plugin/registry.h"

enum ending { ENDING_NONE, ENDING_COMPLETE, ENDING_ERROR, ENDING_FAIL };

struct recorded_var {
    char *name;
    enum cf_value_type type;
    char *text; /* STRING and JSON */
    int64_t l;
    double d;
    int b;
};

struct fake_call {
    struct cf_call call;
    const char *const *params; /* name, value, name, value, ..., NULL */
    uv_loop_t *loop;
    struct recorded_var vars[16];
    size_t nvars;
    int endings;
    enum ending how;
    int retryable;
    char *code;
    char *message;
};

static struct fake_call *fake(struct cf_call *call)
{
    return cf_container_of(call, struct fake_call, call);
}

static const char *fake_param(struct cf_call *call, const char *name)
{
    for (const char *const *p = fake(call)->params; p && *p; p += 2) {
        if (strcmp(p[0], name) == 0)
            return p[1];
    }
    return NULL;
}

static int fake_var_set(struct cf_call *call, const char *name, const struct cf_value *v)
{
    struct fake_call *fc = fake(call);
    assert_true(fc->nvars < CF_ARRAY_LEN(fc->vars));
    struct recorded_var *rv = &fc->vars[fc->nvars++];
    rv->name = cf_xstrdup(name);
    rv->type = v->type;
    rv->text = v->type == CF_VALUE_STRING || v->type == CF_VALUE_JSON ? cf_xstrdup(v->str) : NULL;
    rv->l = v->l;
    rv->d = v->d;
    rv->b = v->b;
    return 0;
}

static void end(struct cf_call *call, enum ending how, const char *code, const char *message,
                int retryable)
{
    struct fake_call *fc = fake(call);
    fc->endings++;
    fc->how = how;
    fc->code = code ? cf_xstrdup(code) : NULL;
    fc->message = message ? cf_xstrdup(message) : NULL;
    fc->retryable = retryable;
}

static void fake_complete(struct cf_call *call)
{
    end(call, ENDING_COMPLETE, NULL, NULL, 0);
}

static void fake_throw_error(struct cf_call *call, const char *code, const char *message)
{
    end(call, ENDING_ERROR, code, message, 0);
}

static void fake_fail(struct cf_call *call, int retryable, const char *message)
{
    end(call, ENDING_FAIL, NULL, message, retryable);
}

struct work {
    uv_work_t req;
    struct cf_call *call;
    cf_work_fn work;
    cf_after_work_fn after;
    void *arg;
};

static void work_cb(uv_work_t *req)
{
    struct work *w = cf_container_of(req, struct work, req);
    w->work(w->arg);
}

static void after_work_cb(uv_work_t *req, int status)
{
    struct work *w = cf_container_of(req, struct work, req);
    assert_int_equal(status, 0);
    w->after(w->call, w->arg);
    free(w);
}

static int fake_queue_work(struct cf_call *call, cf_work_fn work, cf_after_work_fn after, void *arg)
{
    struct work *w = cf_xcalloc(1, sizeof(*w));
    *w = (struct work){.call = call, .work = work, .after = after, .arg = arg};
    int rc = uv_queue_work(fake(call)->loop, &w->req, work_cb, after_work_cb);
    if (rc)
        free(w);
    return rc;
}

static const char *fake_idempotency_key(struct cf_call *call)
{
    (void)call;
    return "certflow-7-42";
}

static const char *fake_instance_id(struct cf_call *call)
{
    (void)call;
    return "7";
}

static const char *fake_activity_id(struct cf_call *call)
{
    (void)call;
    return "Task_issue";
}

static const struct cf_host host = {
    .size = sizeof(struct cf_host),
    .abi_major = CF_PLUGIN_ABI_MAJOR,
    .abi_minor = CF_PLUGIN_ABI_MINOR,
    .param = fake_param,
    .var_set = fake_var_set,
    .idempotency_key = fake_idempotency_key,
    .instance_id = fake_instance_id,
    .activity_id = fake_activity_id,
    .complete = fake_complete,
    .throw_error = fake_throw_error,
    .fail = fake_fail,
    .queue_work = fake_queue_work,
};

struct fixture {
    struct cf_registry *r;
    uv_loop_t loop;
};

static int setup(void **state)
{
    struct fixture *fx = cf_xcalloc(1, sizeof(*fx));
    fx->r = cf_registry_new(&host);
    char err[1024];
    assert_int_equal(cf_registry_load_file(fx->r, CF_PLUGIN_DIR "/demo.so", err, sizeof(err)), 0);
    assert_int_equal(cf_registry_load_file(fx->r, CF_PLUGIN_DIR "/noop.so", err, sizeof(err)), 0);
    assert_int_equal(uv_loop_init(&fx->loop), 0);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *fx = *state;
    cf_registry_free(fx->r);
    assert_int_equal(uv_loop_close(&fx->loop), 0);
    free(fx);
    return 0;
}

/* Calls `task` with `params` and runs the loop until every queued work has come back. */
static void run(struct fixture *fx, const char *task, const char *const *params,
                struct fake_call *fc)
{
    const struct cf_task_def *t = cf_registry_find(fx->r, task, NULL);
    assert_non_null(t);
    memset(fc, 0, sizeof(*fc));
    fc->call = (struct cf_call){.size = sizeof(struct cf_call), .host = &host, .task = t};
    fc->params = params;
    fc->loop = &fx->loop;
    t->execute(&fc->call);
    assert_int_equal(uv_run(&fx->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(fc->endings, 1);
}

static void clear(struct fake_call *fc)
{
    for (size_t i = 0; i < fc->nvars; i++) {
        free(fc->vars[i].name);
        free(fc->vars[i].text);
    }
    free(fc->code);
    free(fc->message);
}

static void test_set_variables(void **state)
{
    struct fixture *fx = *state;
    struct fake_call fc;
    const char *params[] = {"variables",
                            "greeting=hello world\n"
                            "  count : Long = 42 \r\n"
                            "\n"
                            "ratio:Double=2.5\n"
                            "ok:Boolean=true\n"
                            "doc:Json={\"a\": [1, 2]}\n"
                            "gone:Null=\n"
                            "eq=a=b",
                            NULL};
    run(fx, "setVariablesTask", params, &fc);
    assert_int_equal(fc.how, ENDING_COMPLETE);
    assert_int_equal(fc.nvars, 7);
    assert_string_equal(fc.vars[0].name, "greeting");
    assert_int_equal(fc.vars[0].type, CF_VALUE_STRING);
    assert_string_equal(fc.vars[0].text, "hello world");
    assert_string_equal(fc.vars[1].name, "count");
    assert_int_equal(fc.vars[1].type, CF_VALUE_LONG);
    assert_int_equal(fc.vars[1].l, 42);
    assert_int_equal(fc.vars[2].type, CF_VALUE_DOUBLE);
    assert_true(fc.vars[2].d == 2.5);
    assert_int_equal(fc.vars[3].type, CF_VALUE_BOOLEAN);
    assert_int_equal(fc.vars[3].b, 1);
    assert_int_equal(fc.vars[4].type, CF_VALUE_JSON);
    assert_string_equal(fc.vars[4].text, "{\"a\": [1, 2]}");
    assert_int_equal(fc.vars[5].type, CF_VALUE_NULL);
    assert_string_equal(fc.vars[6].text, "a=b");
    clear(&fc);
}

static void test_set_variables_bad_lines(void **state)
{
    struct fixture *fx = *state;
    struct {
        const char *text;
        const char *want;
    } cases[] = {
        {"a=1\nnot a line\n",
         "line 2: expected name=value or name:type=value (line: 'not a line')"},
        {"x:Int=3", "line 1: the type must be one of String, Long, Double, Boolean, Json, Null"},
        {"1x=3", "line 1: the variable name must be"},
        {"n:Long=12x", "line 1: a Long value must be a decimal integer"},
        {"n:Long=99999999999999999999", "a Long value must be a decimal integer"},
        {"d:Double=nan", "a Double value must be a finite decimal number"},
        {"b:Boolean=yes", "a Boolean value must be true or false"},
        {"\n\nz:Null=x", "line 3: a Null variable takes no value"},
        {"j:Json=", "a Json value cannot be empty"},
    };
    for (size_t i = 0; i < CF_ARRAY_LEN(cases); i++) {
        const char *params[] = {"variables", cases[i].text, NULL};
        struct fake_call fc;
        run(fx, "setVariablesTask", params, &fc);
        assert_int_equal(fc.how, ENDING_FAIL);
        assert_int_equal(fc.retryable, 0);
        if (!strstr(fc.message, cases[i].want))
            fail_msg("for %s: got \"%s\", want \"%s\"", cases[i].text, fc.message, cases[i].want);
        clear(&fc);
    }

    const char *bad_delay[] = {"variables", "a=1", "delayMs", "-5", NULL};
    struct fake_call fc;
    run(fx, "setVariablesTask", bad_delay, &fc);
    assert_int_equal(fc.how, ENDING_FAIL);
    assert_non_null(strstr(fc.message, "delayMs"));
    clear(&fc);
}

static void test_set_variables_delayed(void **state)
{
    struct fixture *fx = *state;
    const struct cf_task_def *t = cf_registry_find(fx->r, "setVariablesTask", NULL);
    const char *params[] = {"variables", "late=yes", "delayMs", "60", NULL};
    struct fake_call fc;
    memset(&fc, 0, sizeof(fc));
    fc.call = (struct cf_call){.size = sizeof(struct cf_call), .host = &host, .task = t};
    fc.params = params;
    fc.loop = &fx->loop;

    uint64_t start = cf_mono_ms();
    t->execute(&fc.call);
    /* Nothing ends before the loop has run the work and its completion. */
    assert_int_equal(fc.endings, 0);
    assert_int_equal(uv_run(&fx->loop, UV_RUN_DEFAULT), 0);
    assert_true(cf_mono_ms() - start >= 60);
    assert_int_equal(fc.endings, 1);
    assert_int_equal(fc.how, ENDING_COMPLETE);
    assert_int_equal(fc.nvars, 1);
    assert_string_equal(fc.vars[0].text, "yes");
    clear(&fc);
}

/* keyLog: each call appends its idempotency key, instance and activity to the file, once per
 * call and before it ends (the crash tests count steps with it); a file it cannot write is a
 * failure that names the parameter, not a silent loss. */
static void test_set_variables_key_log(void **state)
{
    struct fixture *fx = *state;
    char dir[] = "/tmp/cf-keylog-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[64];
    snprintf(path, sizeof(path), "%s/keys.log", dir);
    const char *params[] = {"variables", "a=1", "keyLog", path, NULL};
    const char *delayed[] = {"variables", "b=2", "delayMs", "10", "keyLog", path, NULL};
    struct fake_call fc;
    run(fx, "setVariablesTask", params, &fc);
    assert_int_equal(fc.how, ENDING_COMPLETE);
    clear(&fc);
    run(fx, "setVariablesTask", delayed, &fc);
    assert_int_equal(fc.how, ENDING_COMPLETE);
    clear(&fc);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char text[256];
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    text[n] = '\0';
    fclose(f);
    assert_string_equal(text, "certflow-7-42 7 Task_issue\ncertflow-7-42 7 Task_issue\n");
    unlink(path);
    rmdir(dir);

    const char *unwritable[] = {"variables", "a=1", "keyLog", "/nonexistent-dir/keys.log", NULL};
    run(fx, "setVariablesTask", unwritable, &fc);
    assert_int_equal(fc.how, ENDING_FAIL);
    assert_false(fc.retryable);
    assert_non_null(strstr(fc.message, "keyLog"));
    assert_non_null(strstr(fc.message, "/nonexistent-dir/keys.log"));
    assert_int_equal(fc.nvars, 0);
    clear(&fc);
}

static void test_throw_error_modes(void **state)
{
    struct fixture *fx = *state;
    struct fake_call fc;
    const char *secret = "tok-Sup3rSecret";

    const char *error[] = {
        "mode",        "error", "errorCode", "CaRequestFailed", "errorMessage", "key too small",
        "secretToken", secret,  NULL};
    run(fx, "throwErrorTask", error, &fc);
    assert_int_equal(fc.how, ENDING_ERROR);
    assert_string_equal(fc.code, "CaRequestFailed");
    assert_string_equal(fc.message, "key too small");
    clear(&fc);

    /* Called by its deprecated alias, with the defaults. */
    const char *defaults[] = {"mode", "error", NULL};
    run(fx, "throwBpmnErrorTask", defaults, &fc);
    assert_int_equal(fc.how, ENDING_ERROR);
    assert_string_equal(fc.code, "DemoError");
    clear(&fc);

    const char *fail[] = {"mode", "fail", "errorMessage", "broken", "secretToken", secret, NULL};
    run(fx, "throwErrorTask", fail, &fc);
    assert_int_equal(fc.how, ENDING_FAIL);
    assert_int_equal(fc.retryable, 0);
    assert_string_equal(fc.message, "broken");
    clear(&fc);

    const char *retry[] = {"mode", "fail-retryable", "secretToken", secret, NULL};
    run(fx, "throwErrorTask", retry, &fc);
    assert_int_equal(fc.how, ENDING_FAIL);
    assert_int_equal(fc.retryable, 1);
    assert_null(strstr(fc.message, secret));
    clear(&fc);

    const char *complete[] = {"mode", "complete", "secretToken", secret, NULL};
    run(fx, "throwErrorTask", complete, &fc);
    assert_int_equal(fc.how, ENDING_COMPLETE);
    assert_int_equal(fc.nvars, 0);
    clear(&fc);

    /* A host that skipped validation still gets a clear failure, not a crash. */
    const char *bogus[] = {"mode", "explode", NULL};
    run(fx, "throwErrorTask", bogus, &fc);
    assert_int_equal(fc.how, ENDING_FAIL);
    assert_non_null(strstr(fc.message, "parameter 'mode' must be one of"));
    clear(&fc);
}

static void test_noop(void **state)
{
    struct fixture *fx = *state;
    struct fake_call fc;
    run(fx, "noopTask", NULL, &fc);
    assert_int_equal(fc.how, ENDING_COMPLETE);
    assert_int_equal(fc.nvars, 0);
    clear(&fc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_set_variables, setup, teardown),
        cmocka_unit_test_setup_teardown(test_set_variables_bad_lines, setup, teardown),
        cmocka_unit_test_setup_teardown(test_set_variables_delayed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_set_variables_key_log, setup, teardown),
        cmocka_unit_test_setup_teardown(test_throw_error_modes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_noop, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
