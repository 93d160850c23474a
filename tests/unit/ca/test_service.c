/*
 * The "ca" service (ca/service.c) on a real engine and store, through a plug-in task linked into
 * the test that calls host->service("ca") the way executePKCS10RequestTask does and records what
 * comes back. What a user would notice if it broke:
 *   - a certificate is issued from the template of the call's tenant, stored with the step's
 *     idempotency key, and the same step asking again gets the same certificate (replayed);
 *   - each failure has its class: unknown template and bad CSR CommonError, a key the template
 *     refuses CaRequestFailed, a refused connection CaConnectionFailed;
 *   - an override's subject keeps the DN's meaning in both notations;
 *   - a changed template is used at once (the parse cache follows the row);
 *   - a certificate that cannot be stored is not handed out;
 *   - closing while the CA works ends the request once and leaves no handle or memory behind.
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

#include <cmocka.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sqlite3.h>

#include "base/base.h"
#include "ca/service.h"
#include "run/engine.h"
#include "store/admin.h"

int usleep(unsigned int usec);

/* ---- what the test task does, and what it saw ---- */

enum mode { M_ONCE, M_TWICE, M_OVERRIDE_QUERY };

static struct plan {
    enum mode mode;
    const char *tmpl;
    const uint8_t *csr;
    size_t csr_len;
    const struct cf_ca_override *override;
} g_plan;

struct seen {
    enum cf_ca_outcome outcome;
    char message[1024];
    uint8_t *der;
    size_t der_len;
    char pem_head[32];
    size_t p7_len;
    int64_t id;
    int replayed;
};

static struct seen g_seen[2];
static int g_n_seen;
static int g_executed;
static int g_override_rc;
static char g_override_why[512];

static void record(const struct cf_ca_result *res)
{
    assert_true(g_n_seen < 2);
    struct seen *s = &g_seen[g_n_seen++];
    memset(s, 0, sizeof(*s));
    s->outcome = res->outcome;
    snprintf(s->message, sizeof(s->message), "%s", res->message ? res->message : "");
    if (res->outcome == CF_CA_RESULT_OK) {
        s->der = cf_xmemdup(res->cert_der, res->cert_der_len);
        s->der_len = res->cert_der_len;
        snprintf(s->pem_head, sizeof(s->pem_head), "%.27s", res->cert_pem);
        s->p7_len = res->chain_p7_len;
        s->id = res->certificate_id;
        s->replayed = res->replayed;
    }
}

static void on_second(struct cf_call *call, const struct cf_ca_result *res, void *arg)
{
    (void)arg;
    record(res);
    call->host->complete(call);
}

static void on_first(struct cf_call *call, const struct cf_ca_result *res, void *arg)
{
    const struct cf_ca_service *ca = arg;
    record(res);
    if (g_plan.mode == M_TWICE) {
        /* The same step asking again: the ledger must answer with the same certificate. */
        assert_int_equal(ca->issue_pkcs10(call, g_plan.tmpl, g_plan.csr, g_plan.csr_len,
                                          g_plan.override, on_second, NULL),
                         0);
        return;
    }
    call->host->complete(call);
}

static void svc_execute(struct cf_call *call)
{
    g_executed++;
    const struct cf_ca_service *ca =
        call->host->service(call, CF_SERVICE_CA, CF_SERVICE_CA_VERSION);
    assert_non_null(ca);
    if (g_plan.mode == M_OVERRIDE_QUERY) {
        g_override_rc =
            ca->supports_override(call, g_plan.tmpl, g_override_why, sizeof(g_override_why));
        call->host->complete(call);
        return;
    }
    assert_int_equal(ca->issue_pkcs10(call, g_plan.tmpl, g_plan.csr, g_plan.csr_len,
                                      g_plan.override, on_first, (void *)ca),
                     0);
}

static const struct cf_param_def no_params[] = {{.size = sizeof(struct cf_param_def)}};
static const struct cf_task_def svc_task = {.size = sizeof(struct cf_task_def),
                                            .name = "caServiceTest",
                                            .summary = "Calls the ca service as planned.",
                                            .params = no_params,
                                            .execute = svc_execute};
static const struct cf_task_def *const test_tasks[] = {&svc_task, NULL};
static const struct cf_module test_module = {.size = sizeof(struct cf_module),
                                             .abi_major = CF_PLUGIN_ABI_MAJOR,
                                             .abi_minor = CF_PLUGIN_ABI_MINOR,
                                             .name = "ca-service-test",
                                             .version = "1",
                                             .tasks = test_tasks};

static const char process_xml[] =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    "<bpmn:definitions xmlns:bpmn=\"http://www.omg.org/spec/BPMN/20100524/MODEL\" "
    "xmlns:camunda=\"http://camunda.org/schema/1.0/bpmn\" id=\"d\" "
    "targetNamespace=\"http://bpmn.io/schema/bpmn\">\n"
    "<bpmn:process id=\"p\" isExecutable=\"true\">\n"
    "<bpmn:startEvent id=\"S\"/><bpmn:sequenceFlow id=\"f1\" sourceRef=\"S\" targetRef=\"T\"/>\n"
    "<bpmn:serviceTask id=\"T\" camunda:delegateExpression=\"${caServiceTest}\">"
    "<bpmn:extensionElements><camunda:failedJobRetryTimeCycle>R1/PT0S"
    "</camunda:failedJobRetryTimeCycle></bpmn:extensionElements></bpmn:serviceTask>\n"
    "<bpmn:sequenceFlow id=\"f2\" sourceRef=\"T\" targetRef=\"E\"/><bpmn:endEvent id=\"E\"/>\n"
    "</bpmn:process></bpmn:definitions>\n";

/* ---- engine, store and CA of one test ---- */

struct env {
    char dir[64];
    char db[128];
    char ca_dir[128];
    uv_loop_t loop;
    struct cf_engine *e;
    struct cf_ca_svc *svc;
    int64_t def;
    int ended;
};

static void on_ended(void *arg, int64_t id, const char *state)
{
    struct env *env = arg;
    (void)id;
    (void)state;
    env->ended++;
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
    if (cf_ca_service_attach(env->e, env->ca_dir, &env->svc, err, sizeof(err)) != 0)
        fail_msg("cf_ca_service_attach: %s", err);
}

static void env_close(struct env *env)
{
    cf_engine_close(env->e);
    cf_ca_service_detach(env->svc);
    uv_run(&env->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&env->loop), 0);
    env->e = NULL;
    env->svc = NULL;
}

static void add_template(struct env *env, const char *tenant, const char *name,
                         const char *connector, const char *settings, const char *procedure)
{
    struct cf_store *s = cf_engine_store(env->e);
    if (cf_admin_tenant_exists(s, tenant) == CF_ENOENT)
        assert_int_equal(cf_admin_tenant_create(s, tenant, NULL, cf_now_ms()), 0);
    assert_int_equal(cf_admin_template_create(s, tenant, name, connector, settings, procedure,
                                              cf_now_ms(), NULL),
                     0);
}

static void env_setup(struct env *env)
{
    memset(env, 0, sizeof(*env));
    snprintf(env->dir, sizeof(env->dir), "/tmp/cf-casvc-XXXXXX");
    assert_non_null(mkdtemp(env->dir));
    snprintf(env->db, sizeof(env->db), "%s/t.db", env->dir);
    snprintf(env->ca_dir, sizeof(env->ca_dir), "%s/ca", env->dir);
    env_open(env);
    add_template(env, CF_CA_DEFAULT_TENANT, "default", "embedded", NULL, NULL);
    struct cf_deploy_result res;
    int rc = cf_engine_deploy(env->e, "t.bpmn", (const uint8_t *)process_xml, strlen(process_xml),
                              "", &res);
    if (rc) {
        struct cf_buf b;
        cf_buf_init(&b);
        cf_diags_format(&res.diags, "t.bpmn", &b);
        fail_msg("deploy failed: %s", b.data);
    }
    env->def = res.defs[0].definition_id;
    cf_deploy_result_free(&res);
    for (int i = 0; i < 2; i++)
        free(g_seen[i].der);
    memset(g_seen, 0, sizeof(g_seen));
    memset(&g_plan, 0, sizeof(g_plan));
    g_n_seen = g_executed = 0;
}

static void env_teardown(struct env *env)
{
    if (env->e)
        env_close(env);
    char *cmd = cf_xasprintf("rm -rf '%s'", env->dir);
    assert_int_equal(system(cmd), 0);
    free(cmd);
    for (int i = 0; i < 2; i++) {
        free(g_seen[i].der);
        g_seen[i].der = NULL;
    }
}

/* Starts one instance and runs until it ended (or fails the test after 30 s). */
static void run_one(struct env *env)
{
    int64_t id;
    char err[512];
    int ended = env->ended;
    if (cf_engine_start(env->e, env->def, NULL, NULL, 0, &id, err, sizeof(err)) != 0)
        fail_msg("start: %s", err);
    for (int i = 0; i < 30000 && env->ended == ended; i++) {
        uv_run(&env->loop, UV_RUN_NOWAIT);
        if (env->ended == ended)
            usleep(1000);
    }
    if (env->ended == ended)
        fail_msg("the instance did not end");
}

static int64_t count_rows(struct env *env, const char *sql)
{
    sqlite3 *db;
    assert_int_equal(sqlite3_open_v2(env->db, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *p;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &p, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(p), SQLITE_ROW);
    int64_t n = sqlite3_column_int64(p, 0);
    sqlite3_finalize(p);
    sqlite3_close(db);
    return n;
}

/* ---- CSRs ---- */

static uint8_t *make_csr(EVP_PKEY *key, const char *cn, const char *san, size_t *len)
{
    X509_REQ *req = X509_REQ_new();
    assert_non_null(req);
    X509_NAME *name = X509_REQ_get_subject_name(req);
    assert_int_equal(
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1, 0),
        1);
    assert_int_equal(X509_REQ_set_pubkey(req, key), 1);
    if (san) {
        STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
        X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, NULL, NID_subject_alt_name, san);
        assert_non_null(ext);
        sk_X509_EXTENSION_push(exts, ext);
        assert_int_equal(X509_REQ_add_extensions(req, exts), 1);
        sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    }
    assert_true(X509_REQ_sign(req, key, EVP_sha256()) > 0);
    int n = i2d_X509_REQ(req, NULL);
    assert_true(n > 0);
    uint8_t *out = cf_xmalloc((size_t)n);
    unsigned char *p = out;
    i2d_X509_REQ(req, &p);
    *len = (size_t)n;
    X509_REQ_free(req);
    return out;
}

static EVP_PKEY *g_ec, *g_rsa1024;
static uint8_t *g_csr;
static size_t g_csr_len;

static int group_setup(void **state)
{
    (void)state;
    g_ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    g_rsa1024 = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
    if (!g_ec || !g_rsa1024)
        return -1;
    g_csr = make_csr(g_ec, "device.example.test", "DNS:device.example.test", &g_csr_len);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    EVP_PKEY_free(g_ec);
    EVP_PKEY_free(g_rsa1024);
    free(g_csr);
    return 0;
}

static X509 *parse(const uint8_t *der, size_t len)
{
    const unsigned char *p = der;
    X509 *x = d2i_X509(NULL, &p, (long)len);
    assert_non_null(x);
    return x;
}

static char *subject_of(X509 *x)
{
    BIO *b = BIO_new(BIO_s_mem());
    X509_NAME_print_ex(b, X509_get_subject_name(x), 0, XN_FLAG_RFC2253);
    char *data;
    long n = BIO_get_mem_data(b, &data);
    char *s = cf_xstrndup(data, (size_t)n);
    BIO_free(b);
    return s;
}

/* ---- tests ---- */

static void test_issue_store_and_replay(void **state)
{
    (void)state;
    struct env env;
    env_setup(&env);
    g_plan = (struct plan){.mode = M_TWICE, .tmpl = "default", .csr = g_csr, .csr_len = g_csr_len};
    run_one(&env);
    assert_int_equal(g_n_seen, 2);
    const struct seen *a = &g_seen[0], *b = &g_seen[1];
    assert_int_equal(a->outcome, CF_CA_RESULT_OK);
    assert_int_equal(a->replayed, 0);
    assert_true(a->id > 0);
    assert_string_equal(a->pem_head, "-----BEGIN CERTIFICATE-----");
    assert_true(a->p7_len > a->der_len);
    /* The embedded CA was made on first use. */
    char *root = cf_xasprintf("%s/root.pem", env.ca_dir);
    assert_int_equal(access(root, R_OK), 0);
    free(root);
    /* The same step again: the same certificate, from the store. */
    assert_int_equal(b->outcome, CF_CA_RESULT_OK);
    assert_int_equal(b->replayed, 1);
    assert_int_equal(b->id, a->id);
    assert_int_equal(b->der_len, a->der_len);
    assert_memory_equal(b->der, a->der, a->der_len);
    assert_int_equal(count_rows(&env, "SELECT count(*) FROM certificate"), 1);
    assert_int_equal(count_rows(&env, "SELECT count(*) FROM certificate WHERE tenant_id = "
                                      "'default' AND source = 'embedded' AND status = 'active' "
                                      "AND instance_id = 1 AND idempotency_key IS NOT NULL"),
                     1);
    env_teardown(&env);
}

static void expect_failure(struct env *env, enum cf_ca_outcome outcome, const char *needle)
{
    run_one(env);
    assert_int_equal(g_n_seen, 1);
    if (g_seen[0].outcome != outcome || !strstr(g_seen[0].message, needle))
        fail_msg("expected outcome %d with \"%s\", got %d: %s", outcome, needle, g_seen[0].outcome,
                 g_seen[0].message);
    g_n_seen = 0;
}

static void test_failure_classes(void **state)
{
    (void)state;
    struct env env;
    env_setup(&env);
    g_plan = (struct plan){.tmpl = "nosuch", .csr = g_csr, .csr_len = g_csr_len};
    expect_failure(&env, CF_CA_RESULT_COMMON_ERROR,
                   "certificate template 'nosuch' does not exist in tenant 'default'");

    static const uint8_t garbage[] = "not a certificate request";
    g_plan = (struct plan){.tmpl = "default", .csr = garbage, .csr_len = sizeof(garbage)};
    expect_failure(&env, CF_CA_RESULT_COMMON_ERROR, "PEM");
    g_plan.csr_len = 0;
    expect_failure(&env, CF_CA_RESULT_COMMON_ERROR, "no CSR");

    size_t n;
    uint8_t *weak = make_csr(g_rsa1024, "weak.example.test", NULL, &n);
    add_template(&env, CF_CA_DEFAULT_TENANT, "rsa2048", "embedded", NULL,
                 "{\"keyTypes\": {\"RSA\": 2048}}");
    g_plan = (struct plan){.tmpl = "rsa2048", .csr = weak, .csr_len = n};
    expect_failure(&env, CF_CA_RESULT_REQUEST_FAILED,
                   "certificate template 'rsa2048' refuses the request: RSA key of 1024 bits");
    free(weak);

    add_template(&env, CF_CA_DEFAULT_TENANT, "refused", "cmp",
                 "{\"server\": \"127.0.0.1:1\", \"path\": \"/pkix/\", \"reference\": \"r\", "
                 "\"secret\": \"s\"}",
                 NULL);
    g_plan = (struct plan){.tmpl = "refused", .csr = g_csr, .csr_len = g_csr_len};
    expect_failure(&env, CF_CA_RESULT_CONNECTION_FAILED,
                   "cannot connect to the CA at 127.0.0.1:1 (cmp connector of template "
                   "'refused'): connection refused");

    /* A template an admin broke is CommonError, naming the field. */
    add_template(&env, CF_CA_DEFAULT_TENANT, "broken", "embedded", NULL, "{\"validity\": \"1Y\"}");
    g_plan = (struct plan){.tmpl = "broken", .csr = g_csr, .csr_len = g_csr_len};
    expect_failure(&env, CF_CA_RESULT_COMMON_ERROR, "procedure.validity");

    assert_int_equal(count_rows(&env, "SELECT count(*) FROM certificate"), 0);
    env_teardown(&env);
}

static void test_supports_override(void **state)
{
    (void)state;
    struct env env;
    env_setup(&env);
    add_template(&env, CF_CA_DEFAULT_TENANT, "viacmp", "cmp",
                 "{\"server\": \"127.0.0.1:1\", \"reference\": \"r\", \"secret\": \"s\"}", NULL);
    g_plan = (struct plan){.mode = M_OVERRIDE_QUERY, .tmpl = "default"};
    run_one(&env);
    assert_int_equal(g_override_rc, 1);
    g_plan.tmpl = "viacmp";
    run_one(&env);
    assert_int_equal(g_override_rc, 0);
    assert_non_null(strstr(g_override_why, "p10cr"));
    g_plan.tmpl = "nosuch";
    run_one(&env);
    assert_true(g_override_rc < 0);
    assert_non_null(strstr(g_override_why, "does not exist in tenant 'default'"));
    env_teardown(&env);
}

static void test_override_subject_notations(void **state)
{
    (void)state;
    struct env env;
    env_setup(&env);
    static const char *const dns[] = {"a.example.test", NULL};
    static const char *const ips[] = {"192.0.2.1", NULL};
    const char *dns_forms[] = {"CN=a.example.test,O=Example\\, Inc.,C=SE",
                               "/C=SE/O=Example, Inc./CN=a.example.test"};
    for (int i = 0; i < 2; i++) {
        struct cf_ca_override ov = {
            .size = sizeof(ov), .subject_dn = dns_forms[i], .san_dns = dns, .san_ip = ips};
        g_plan =
            (struct plan){.tmpl = "default", .csr = g_csr, .csr_len = g_csr_len, .override = &ov};
        run_one(&env);
        assert_int_equal(g_n_seen, 1);
        if (g_seen[0].outcome != CF_CA_RESULT_OK)
            fail_msg("%s: %s", dns_forms[i], g_seen[0].message);
        X509 *x = parse(g_seen[0].der, g_seen[0].der_len);
        char *subject = subject_of(x);
        assert_string_equal(subject, "CN=a.example.test,O=Example\\, Inc.,C=SE");
        free(subject);
        GENERAL_NAMES *sans = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
        assert_non_null(sans);
        assert_int_equal(sk_GENERAL_NAME_num(sans), 2);
        GENERAL_NAMES_free(sans);
        X509_free(x);
        free(g_seen[0].der);
        g_seen[0].der = NULL;
        g_n_seen = 0;
    }
    struct cf_ca_override bad = {.size = sizeof(bad), .subject_dn = "CN=a+OU=b"};
    g_plan = (struct plan){.tmpl = "default", .csr = g_csr, .csr_len = g_csr_len, .override = &bad};
    expect_failure(&env, CF_CA_RESULT_COMMON_ERROR, "multi-valued RDNs");
    bad.subject_dn = "CN=a,XX=b";
    expect_failure(&env, CF_CA_RESULT_COMMON_ERROR, "attribute type 'XX'");
    env_teardown(&env);
}

static uint64_t validity_days(const struct seen *s)
{
    X509 *x = parse(s->der, s->der_len);
    int days = 0, secs = 0;
    assert_int_equal(ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(x), X509_get0_notAfter(x)),
                     1);
    X509_free(x);
    return (uint64_t)days + (secs > 0 ? 1 : 0);
}

static void test_template_changes_apply(void **state)
{
    (void)state;
    struct env env;
    env_setup(&env);
    add_template(&env, CF_CA_DEFAULT_TENANT, "short", "embedded", NULL, "{\"validity\": \"P1D\"}");
    g_plan = (struct plan){.tmpl = "short", .csr = g_csr, .csr_len = g_csr_len};
    run_one(&env);
    assert_int_equal(g_seen[0].outcome, CF_CA_RESULT_OK);
    assert_int_equal(validity_days(&g_seen[0]), 1);
    free(g_seen[0].der);
    g_seen[0].der = NULL;
    g_n_seen = 0;
    assert_int_equal(cf_admin_template_update(cf_engine_store(env.e), CF_CA_DEFAULT_TENANT, "short",
                                              NULL, NULL, "{\"validity\": \"P3D\"}", cf_now_ms()),
                     0);
    run_one(&env);
    assert_int_equal(g_seen[0].outcome, CF_CA_RESULT_OK);
    assert_int_equal(validity_days(&g_seen[0]), 3);
    env_teardown(&env);
}

static void test_not_handed_out_when_not_stored(void **state)
{
    (void)state;
    struct env env;
    env_setup(&env);
    /* Another connection makes every certificate insert fail, as a full disk would. */
    sqlite3 *db;
    assert_int_equal(sqlite3_open(env.db, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db,
                                  "CREATE TRIGGER no_certs BEFORE INSERT ON certificate BEGIN "
                                  "SELECT RAISE(ABORT, 'no room for certificates'); END;",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    g_plan = (struct plan){.tmpl = "default", .csr = g_csr, .csr_len = g_csr_len};
    expect_failure(&env, CF_CA_RESULT_CONNECTION_FAILED,
                   "the certificate was issued but could not be stored");
    assert_null(g_seen[0].der);
    assert_int_equal(count_rows(&env, "SELECT count(*) FROM certificate"), 0);
    env_teardown(&env);
}

static void test_close_while_the_ca_works(void **state)
{
    (void)state;
    struct env env;
    /* A chosen passphrase gets 600,000 PBKDF2 rounds, so making the CA on first use takes long
     * enough for the engine to close while the worker still runs. */
    setenv(CF_CA_PASSPHRASE_ENV, "a passphrase chosen by a person", 1);
    env_setup(&env);
    unsetenv(CF_CA_PASSPHRASE_ENV);
    g_plan = (struct plan){.tmpl = "default", .csr = g_csr, .csr_len = g_csr_len};
    int64_t id;
    char err[512];
    assert_int_equal(cf_engine_start(env.e, env.def, NULL, NULL, 0, &id, err, sizeof(err)), 0);
    for (int i = 0; i < 10000 && !g_executed; i++) {
        uv_run(&env.loop, UV_RUN_NOWAIT);
        if (!g_executed)
            usleep(1000);
    }
    assert_int_equal(g_executed, 1);
    assert_int_equal(g_n_seen, 0);
    cf_engine_close(env.e);
    cf_ca_service_detach(env.svc);
    /* The task got its ending at once, so it could release what it held. */
    assert_int_equal(g_n_seen, 1);
    assert_int_equal(g_seen[0].outcome, CF_CA_RESULT_CONNECTION_FAILED);
    assert_non_null(strstr(g_seen[0].message, "certflow stopped"));
    /* The worker comes back later; nothing may be delivered twice or leak. */
    uv_run(&env.loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&env.loop), 0);
    assert_int_equal(g_n_seen, 1);
    env.e = NULL;
    env.svc = NULL;
    assert_int_equal(count_rows(&env, "SELECT count(*) FROM certificate"), 0);
    env_teardown(&env);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_issue_store_and_replay),
        cmocka_unit_test(test_failure_classes),
        cmocka_unit_test(test_supports_override),
        cmocka_unit_test(test_override_subject_notations),
        cmocka_unit_test(test_template_changes_apply),
        cmocka_unit_test(test_not_handed_out_when_not_stored),
        cmocka_unit_test(test_close_while_the_ca_works),
    };
    cf_log_set_level(CF_LOG_WARN);
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
