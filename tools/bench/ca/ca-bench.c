/*
 * cf-ca-bench: certificates per second through executePKCS10RequestTask with the embedded CA, and
 * in the same run the same OpenSSL work done by a minimal C loop, for the same CSR and key type,
 * so that the difference is what certflow adds (issue 5, item 10).
 *
 * The engine run: a fresh database and CA, the pkcs10 plug-in from the plug-in folder, a template
 * with the default procedure, and N process instances of start -> executePKCS10RequestTask -> end,
 * at most C in flight, each started with the CSR in a Bytes variable. Each certificate is stored
 * as a certificate core object with its idempotency key before its instance moves on, and every
 * commit is durable (synchronous=FULL) unless --sync normal is asked for. A warm-up of W instances
 * (CA opened, template parsed, statements prepared) is not timed.
 *
 * The loops: the bare loop does what any CA must do per certificate with OpenSSL's public API —
 * d2i_X509_REQ, X509_REQ_verify, build a v3 certificate (random serial, names, validity, the
 * CSR's key, basic constraints, key usage, extended key usage, SKI, AKI, the CSR's SANs),
 * X509_sign, i2d_X509 — with the constant extensions encoded once, as a tuned loop would. A
 * second loop calls cf_ca_issue() (certflow's CSR decoder and CA, no engine, no store). Both run
 * on 1 thread and on T threads (default: the online CPUs), since the engine signs on libuv's
 * thread pool while its loop thread commits.
 *
 * Exit codes: 0 when every instance completed, 1 otherwise, 2 usage.
 */
#define _XOPEN_SOURCE 700 /* realpath(), mkdtemp() */

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "base/base.h"
#include "base/value.h"
#include "ca/embedded.h"
#include "ca/service.h"
#include "run/engine.h"
#include "store/admin.h"

static const char *usage_text =
    "usage: cf-ca-bench [-n N] [-c CONCURRENCY] [-w WARMUP] [-t THREADS] [--key p256|rsa2048]\n"
    "                   [--sync full|normal] [--plugins DIR] [--loops N] [--no-chain]\n"
    "\n"
    "  -n N             process instances to time (default 5000)\n"
    "  -c CONCURRENCY   instances in flight at most (default 256)\n"
    "  -w WARMUP        untimed instances first (default 200)\n"
    "  -t THREADS       threads of the multi-threaded loops (default: online CPUs)\n"
    "  --key            the CSR's key: p256 (default) or rsa2048; the CA is ECDSA P-256\n"
    "  --sync           SQLite synchronous mode (default full, the figure that counts)\n"
    "  --loops N        certificates per loop run (default: N)\n"
    "  --no-chain       leave P7ResponseField unset (no chain variable per instance)\n";

static void usage_error(const char *fmt, ...) CF_PRINTF(1, 2);

static void usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("cf-ca-bench: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\n", stderr);
    fputs(usage_text, stderr);
    exit(2);
}

static double now_s(void)
{
    return (double)uv_hrtime() / 1e9;
}

/* ---- the CSR ---- */

static uint8_t *make_csr(EVP_PKEY *key, size_t *len)
{
    X509_REQ *req = X509_REQ_new();
    X509_NAME *name = X509_REQ_get_subject_name(req);
    X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8, (const unsigned char *)"Example", -1, -1,
                               0);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                               (const unsigned char *)"device-001.example.test", -1, -1, 0);
    X509_REQ_set_pubkey(req, key);
    STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
    sk_X509_EXTENSION_push(
        exts, X509V3_EXT_conf_nid(NULL, NULL, NID_subject_alt_name, "DNS:device-001.example.test"));
    X509_REQ_add_extensions(req, exts);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    if (X509_REQ_sign(req, key, EVP_sha256()) <= 0) {
        X509_REQ_free(req);
        return NULL;
    }
    int n = i2d_X509_REQ(req, NULL);
    uint8_t *out = cf_xmalloc((size_t)n), *p = out;
    i2d_X509_REQ(req, &p);
    *len = (size_t)n;
    X509_REQ_free(req);
    return out;
}

/* ---- the bare OpenSSL loop ---- */

struct bare_ca {
    EVP_PKEY *key;
    X509 *cert;
    X509_EXTENSION *bc, *ku, *eku, *aki; /* constant per CA and template: encoded once */
};

static int bare_ca_load(const char *dir, struct bare_ca *b)
{
    memset(b, 0, sizeof(*b));
    char *pp = cf_xasprintf("%s/passphrase", dir), *kp = cf_xasprintf("%s/issuing.key", dir),
         *cp = cf_xasprintf("%s/issuing.pem", dir);
    uint8_t *pass = NULL;
    size_t pass_len = 0;
    char err[256];
    int rc = -1;
    if (cf_read_file(pp, 4096, &pass, &pass_len, err, sizeof(err)) == 0) {
        while (pass_len && (pass[pass_len - 1] == '\n' || pass[pass_len - 1] == '\r'))
            pass_len--;
        char *pw = cf_xstrndup((const char *)pass, pass_len);
        FILE *f = fopen(kp, "r");
        if (f) {
            b->key = PEM_read_PrivateKey(f, NULL, NULL, pw);
            fclose(f);
        }
        f = fopen(cp, "r");
        if (f) {
            b->cert = PEM_read_X509(f, NULL, NULL, NULL);
            fclose(f);
        }
        OPENSSL_cleanse(pw, strlen(pw));
        free(pw);
        OPENSSL_cleanse(pass, pass_len);
    }
    free(pass);
    free(pp);
    free(kp);
    free(cp);
    if (b->key && b->cert) {
        X509V3_CTX ctx;
        X509V3_set_ctx(&ctx, b->cert, NULL, NULL, NULL, 0);
        b->bc = X509V3_EXT_conf_nid(NULL, &ctx, NID_basic_constraints, "critical,CA:FALSE");
        b->ku = X509V3_EXT_conf_nid(NULL, &ctx, NID_key_usage, "critical,digitalSignature");
        b->eku = X509V3_EXT_conf_nid(NULL, &ctx, NID_ext_key_usage, "serverAuth,clientAuth");
        b->aki = X509V3_EXT_conf_nid(NULL, &ctx, NID_authority_key_identifier, "keyid:always");
        rc = b->bc && b->ku && b->eku && b->aki ? 0 : -1;
    }
    return rc;
}

static void bare_ca_free(struct bare_ca *b)
{
    EVP_PKEY_free(b->key);
    X509_free(b->cert);
    X509_EXTENSION_free(b->bc);
    X509_EXTENSION_free(b->ku);
    X509_EXTENSION_free(b->eku);
    X509_EXTENSION_free(b->aki);
}

/* One certificate the plain OpenSSL way; returns its DER length, 0 on failure. */
static size_t bare_issue(const struct bare_ca *ca, const uint8_t *csr, size_t csr_len)
{
    const unsigned char *p = csr;
    X509_REQ *req = d2i_X509_REQ(NULL, &p, (long)csr_len);
    EVP_PKEY *pub = req ? X509_REQ_get0_pubkey(req) : NULL;
    size_t out_len = 0;
    if (!pub || X509_REQ_verify(req, pub) != 1) {
        X509_REQ_free(req);
        return 0;
    }
    X509 *x = X509_new();
    unsigned char rnd[16];
    RAND_bytes(rnd, sizeof(rnd));
    rnd[0] &= 0x7f;
    BIGNUM *bn = BN_bin2bn(rnd, sizeof(rnd), NULL);
    ASN1_INTEGER *serial = BN_to_ASN1_INTEGER(bn, NULL);
    X509_set_version(x, X509_VERSION_3);
    X509_set_serialNumber(x, serial);
    X509_set_issuer_name(x, X509_get_subject_name(ca->cert));
    X509_gmtime_adj(X509_getm_notBefore(x), -300);
    X509_gmtime_adj(X509_getm_notAfter(x), 365L * 24 * 3600);
    X509_set_subject_name(x, X509_REQ_get_subject_name(req));
    X509_set_pubkey(x, pub);
    X509_add_ext(x, ca->bc, -1);
    X509_add_ext(x, ca->ku, -1);
    X509_add_ext(x, ca->eku, -1);
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, ca->cert, x, NULL, NULL, 0);
    X509_EXTENSION *ski = X509V3_EXT_conf_nid(NULL, &ctx, NID_subject_key_identifier, "hash");
    X509_add_ext(x, ski, -1);
    X509_add_ext(x, ca->aki, -1);
    STACK_OF(X509_EXTENSION) *req_exts = X509_REQ_get_extensions(req);
    for (int i = 0; i < sk_X509_EXTENSION_num(req_exts); i++) {
        X509_EXTENSION *e = sk_X509_EXTENSION_value(req_exts, i);
        if (OBJ_obj2nid(X509_EXTENSION_get_object(e)) == NID_subject_alt_name)
            X509_add_ext(x, e, -1);
    }
    if (X509_sign(x, ca->key, EVP_sha256()) > 0) {
        unsigned char *der = NULL;
        int n = i2d_X509(x, &der);
        out_len = n > 0 ? (size_t)n : 0;
        OPENSSL_free(der);
    }
    sk_X509_EXTENSION_pop_free(req_exts, X509_EXTENSION_free);
    X509_EXTENSION_free(ski);
    ASN1_INTEGER_free(serial);
    BN_free(bn);
    X509_free(x);
    X509_REQ_free(req);
    return out_len;
}

/* ---- loops on threads ---- */

struct loop_job {
    int kind; /* 0 bare, 1 cf_ca_issue */
    const struct bare_ca *bare;
    const struct cf_ca *ca;
    const struct cf_ca_policy *policy;
    const uint8_t *csr;
    size_t csr_len;
    uint64_t n;
    uint64_t failed;
};

static void loop_thread(void *arg)
{
    struct loop_job *j = arg;
    for (uint64_t i = 0; i < j->n; i++) {
        if (j->kind == 0) {
            if (!bare_issue(j->bare, j->csr, j->csr_len))
                j->failed++;
        } else {
            struct cf_ca_request r = {.csr = j->csr, .csr_len = j->csr_len, .policy = j->policy};
            struct cf_ca_issued out;
            if (cf_ca_issue(j->ca, &r, &out, NULL, 0) != CF_CA_OK)
                j->failed++;
            cf_ca_issued_clear(&out);
        }
    }
}

/* Certificates per second of `n` issues spread over `threads` threads. */
static double run_loop(struct loop_job proto, uint64_t n, int threads)
{
    struct loop_job *jobs = cf_xcalloc((size_t)threads, sizeof(*jobs));
    uv_thread_t *tids = cf_xcalloc((size_t)threads, sizeof(*tids));
    double t0 = now_s();
    for (int i = 0; i < threads; i++) {
        jobs[i] = proto;
        jobs[i].n = n / (uint64_t)threads + ((uint64_t)i < n % (uint64_t)threads ? 1 : 0);
        uv_thread_create(&tids[i], loop_thread, &jobs[i]);
    }
    uint64_t failed = 0;
    for (int i = 0; i < threads; i++) {
        uv_thread_join(&tids[i]);
        failed += jobs[i].failed;
    }
    double dt = now_s() - t0;
    free(jobs);
    free(tids);
    if (failed) {
        fprintf(stderr, "cf-ca-bench: %" PRIu64 " loop issues failed\n", failed);
        return 0;
    }
    return (double)n / dt;
}

/* ---- the engine run ---- */

/* The process; %s is the P7ResponseField input (or nothing). */
static const char process_fmt[] =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    "<bpmn:definitions xmlns:bpmn=\"http://www.omg.org/spec/BPMN/20100524/MODEL\" "
    "xmlns:camunda=\"http://camunda.org/schema/1.0/bpmn\" id=\"d\" "
    "targetNamespace=\"http://bpmn.io/schema/bpmn\">\n"
    "<bpmn:process id=\"ca-bench\" isExecutable=\"true\">\n"
    "<bpmn:startEvent id=\"S\"/><bpmn:sequenceFlow id=\"f1\" sourceRef=\"S\" targetRef=\"T\"/>\n"
    "<bpmn:serviceTask id=\"T\" camunda:delegateExpression=\"${executePKCS10RequestTask}\">"
    "<bpmn:extensionElements><camunda:inputOutput>"
    "<camunda:inputParameter name=\"P10RequestFormEntry\">csr</camunda:inputParameter>"
    "<camunda:inputParameter name=\"P10RequestFormResult\">certificate</camunda:inputParameter>"
    "%s"
    "<camunda:inputParameter name=\"certTemplate\">bench</camunda:inputParameter>"
    "</camunda:inputOutput></bpmn:extensionElements></bpmn:serviceTask>\n"
    "<bpmn:sequenceFlow id=\"f2\" sourceRef=\"T\" targetRef=\"E\"/><bpmn:endEvent id=\"E\"/>\n"
    "</bpmn:process></bpmn:definitions>\n";

struct run {
    uv_loop_t loop;
    struct cf_engine *e;
    int64_t def;
    const uint8_t *csr;
    size_t csr_len;
    uint64_t target; /* instances of this phase */
    uint64_t started, ended, completed, in_flight, concurrency;
    uint64_t *t_start; /* uv_hrtime() at the start of each instance of the phase, by id */
    int64_t first_id;
    uint64_t *lat_ns;
    uint64_t n_lat;
    bool stop;
    uv_idle_t starter;
};

static void starter_cb(uv_idle_t *h);

static void on_ended(void *arg, int64_t id, const char *state)
{
    struct run *r = arg;
    r->ended++;
    r->in_flight--;
    if (strcmp(state, "COMPLETED") == 0)
        r->completed++;
    if (id >= r->first_id && (uint64_t)(id - r->first_id) < r->target && r->t_start)
        r->lat_ns[r->n_lat++] = uv_hrtime() - r->t_start[id - r->first_id];
    if (r->ended >= r->target)
        uv_stop(&r->loop);
    else if (!uv_is_active((uv_handle_t *)&r->starter))
        uv_idle_start(&r->starter, starter_cb);
}

static void on_incident(void *arg, int64_t id, const char *activity, const char *type,
                        const char *message)
{
    struct run *r = arg;
    fprintf(stderr, "cf-ca-bench: incident in instance %" PRId64 " at %s (%s): %s\n", id, activity,
            type, message);
    r->stop = true;
    uv_stop(&r->loop);
}

struct start_arg {
    struct run *r;
    uint64_t seq;
};

static int create_in_tx(struct cf_engine *e, void *arg)
{
    struct start_arg *s = arg;
    struct run *r = s->r;
    struct cf_named_val var = {.name = "csr"};
    cf_val_set_bytes(&var.val, r->csr, r->csr_len);
    int64_t id;
    char err[512];
    int rc = cf_engine_tx_create_instance(e, r->def, NULL, &var, 1, &id, err, sizeof(err));
    cf_val_free(&var.val);
    if (rc)
        fprintf(stderr, "cf-ca-bench: cannot create an instance: %s\n", err);
    else if (r->t_start && id >= r->first_id && (uint64_t)(id - r->first_id) < r->target)
        r->t_start[id - r->first_id] = uv_hrtime();
    return rc;
}

static void created(void *arg, int rc)
{
    struct start_arg *s = arg;
    if (rc) {
        s->r->stop = true;
        uv_stop(&s->r->loop);
    }
    free(s);
}

static void starter_cb(uv_idle_t *h)
{
    struct run *r = cf_container_of(h, struct run, starter);
    while (!r->stop && r->in_flight < r->concurrency && r->started < r->target) {
        struct start_arg *s = cf_xcalloc(1, sizeof(*s));
        s->r = r;
        s->seq = r->started++;
        r->in_flight++;
        cf_engine_submit(r->e, create_in_tx, created, s);
    }
    if (r->stop || r->in_flight >= r->concurrency || r->started >= r->target)
        uv_idle_stop(h);
}

/* Runs `n` instances; returns the elapsed seconds, or a negative value on failure. */
static double run_phase(struct run *r, uint64_t n, int64_t first_id, bool timed)
{
    r->target = n;
    r->started = r->ended = r->completed = r->in_flight = 0;
    r->first_id = first_id;
    r->n_lat = 0;
    free(r->t_start);
    free(r->lat_ns);
    r->t_start = timed ? cf_xcalloc(n, sizeof(*r->t_start)) : NULL;
    r->lat_ns = timed ? cf_xcalloc(n, sizeof(*r->lat_ns)) : NULL;
    double t0 = now_s();
    uv_idle_start(&r->starter, starter_cb);
    uv_run(&r->loop, UV_RUN_DEFAULT);
    double dt = now_s() - t0;
    uv_idle_stop(&r->starter);
    if (r->stop || r->completed != n) {
        fprintf(stderr, "cf-ca-bench: %" PRIu64 " of %" PRIu64 " instances completed\n",
                r->completed, n);
        return -1;
    }
    return dt;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double pct_ms(const uint64_t *v, uint64_t n, double p)
{
    if (!n)
        return 0;
    uint64_t rank = (uint64_t)(p / 100.0 * (double)n + 0.999999);
    rank = rank < 1 ? 1 : rank > n ? n : rank;
    return (double)v[rank - 1] / 1e6;
}

static const char *default_plugin_dir(char *buf)
{
    const char *env = getenv("CERTFLOW_PLUGINS");
    if (env && *env)
        return env;
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n <= 0)
        return NULL;
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (!slash)
        return NULL;
    *slash = '\0';
    char joined[PATH_MAX + 16];
    snprintf(joined, sizeof(joined), "%s/../plugins", exe);
    return realpath(joined, buf) ? buf : NULL;
}

static uint64_t parse_count(const char *opt, const char *text, uint64_t min, uint64_t max)
{
    int64_t v;
    if (cf_parse_i64(text, &v) != 0 || v < (int64_t)min || (uint64_t)v > max)
        usage_error("%s needs a whole number from %" PRIu64 " to %" PRIu64, opt, min, max);
    return (uint64_t)v;
}

int main(int argc, char **argv)
{
    uint64_t n = 5000, concurrency = 256, warmup = 200, loops = 0;
    bool chain = true;
    int threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    bool rsa = false, sync_normal = false;
    const char *plugin_dir = NULL;
    char plugin_buf[PATH_MAX];
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        bool v = i + 1 < argc;
        if (strcmp(o, "-n") == 0 && v)
            n = parse_count("-n", argv[++i], 1, 10000000);
        else if (strcmp(o, "-c") == 0 && v)
            concurrency = parse_count("-c", argv[++i], 1, 100000);
        else if (strcmp(o, "-w") == 0 && v)
            warmup = parse_count("-w", argv[++i], 0, 1000000);
        else if (strcmp(o, "-t") == 0 && v)
            threads = (int)parse_count("-t", argv[++i], 1, 256);
        else if (strcmp(o, "--loops") == 0 && v)
            loops = parse_count("--loops", argv[++i], 1, 100000000);
        else if (strcmp(o, "--no-chain") == 0)
            chain = false;
        else if (strcmp(o, "--key") == 0 && v) {
            const char *k = argv[++i];
            if (strcmp(k, "rsa2048") == 0)
                rsa = true;
            else if (strcmp(k, "p256") != 0)
                usage_error("--key is p256 or rsa2048");
        } else if (strcmp(o, "--sync") == 0 && v) {
            const char *s = argv[++i];
            if (strcmp(s, "normal") == 0)
                sync_normal = true;
            else if (strcmp(s, "full") != 0)
                usage_error("--sync is full or normal");
        } else if (strcmp(o, "--plugins") == 0 && v) {
            plugin_dir = argv[++i];
        } else if (strcmp(o, "--help") == 0 || strcmp(o, "-h") == 0) {
            fputs(usage_text, stdout);
            return 0;
        } else {
            usage_error("unknown option %s", o);
        }
    }
    if (threads < 1)
        threads = 1;
    if (!loops)
        loops = n;
    if (!plugin_dir)
        plugin_dir = default_plugin_dir(plugin_buf);
    cf_log_set_level(CF_LOG_WARN);

    const char *tmp = getenv("TMPDIR");
    char *dir = cf_xasprintf("%s/cf-ca-bench-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir)) {
        fprintf(stderr, "cf-ca-bench: cannot create %s: %s\n", dir, strerror(errno));
        return 1;
    }
    char *db = cf_xasprintf("%s/bench.db", dir), *ca_dir = cf_xasprintf("%s/ca", dir);
    char err[1024];
    int result = 1;
    struct bare_ca bare = {0};
    struct cf_ca *ca = NULL;
    struct cf_ca_policy *policy = NULL;
    struct cf_ca_init_opts io = {.key_alg = CF_CA_KEY_EC_P256};
    EVP_PKEY *key = rsa ? EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048)
                        : EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    size_t csr_len = 0;
    uint8_t *csr = key ? make_csr(key, &csr_len) : NULL;
    if (!csr) {
        fprintf(stderr, "cf-ca-bench: cannot make the CSR\n");
        goto out;
    }
    if (cf_ca_init(ca_dir, &io, err, sizeof(err)) != 0 ||
        cf_ca_open(ca_dir, NULL, &ca, err, sizeof(err)) != 0 ||
        cf_ca_policy_parse("{}", &policy, err, sizeof(err)) != 0) {
        fprintf(stderr, "cf-ca-bench: %s\n", err);
        goto out;
    }
    if (bare_ca_load(ca_dir, &bare) != 0) {
        fprintf(stderr, "cf-ca-bench: cannot load the issuing key for the bare loop\n");
        goto out;
    }

    /* The engine run first, while the machine is as idle as it gets. */
    struct run r;
    memset(&r, 0, sizeof(r));
    r.csr = csr;
    r.csr_len = csr_len;
    r.concurrency = concurrency;
    uv_loop_init(&r.loop);
    struct cf_engine_options eo = {.db_path = db,
                                   .plugin_dir = plugin_dir,
                                   .max_concurrent_jobs =
                                       (int)(concurrency < 64 ? concurrency : 64),
                                   .synchronous_normal = sync_normal};
    struct cf_ca_svc *svc = NULL;
    double elapsed = -1;
    uint64_t commits = 0;
    if (cf_engine_open(&r.loop, &eo, &r.e, err, sizeof(err)) != 0) {
        fprintf(stderr, "cf-ca-bench: %s\n", err);
        uv_loop_close(&r.loop);
        goto out;
    }
    struct cf_engine_observer obs = {
        .instance_ended = on_ended, .incident = on_incident, .arg = &r};
    cf_engine_set_observer(r.e, &obs);
    uv_idle_init(&r.loop, &r.starter);
    struct cf_store *st = cf_engine_store(r.e);
    struct cf_deploy_result dep = {0};
    char *process_xml = cf_xasprintf(
        process_fmt,
        chain ? "<camunda:inputParameter name=\"P7ResponseField\">chain</camunda:inputParameter>"
              : "");
    if (cf_ca_service_attach(r.e, ca_dir, &svc, err, sizeof(err)) != 0 ||
        cf_admin_tenant_create(st, CF_CA_DEFAULT_TENANT, NULL, cf_now_ms()) != 0 ||
        cf_admin_template_create(st, CF_CA_DEFAULT_TENANT, "bench", "embedded", NULL, NULL,
                                 cf_now_ms(), NULL) != 0) {
        fprintf(stderr, "cf-ca-bench: cannot set up the CA service: %s\n", err);
    } else if (cf_engine_deploy(r.e, "ca-bench.bpmn", (const uint8_t *)process_xml,
                                strlen(process_xml), "", &dep) != 0 ||
               !dep.n_defs) {
        struct cf_buf b;
        cf_buf_init(&b);
        cf_diags_format(&dep.diags, "ca-bench.bpmn", &b);
        fprintf(stderr, "cf-ca-bench: cannot deploy (is pkcs10.so in %s?)\n%s",
                plugin_dir ? plugin_dir : "(no plug-in folder)", b.data ? b.data : "");
        cf_buf_free(&b);
    } else {
        r.def = dep.defs[0].definition_id;
        if (!warmup || run_phase(&r, warmup, 1, false) >= 0) {
            uint64_t c0 = cf_store_commits(st);
            elapsed = run_phase(&r, n, (int64_t)warmup + 1, true);
            commits = cf_store_commits(st) - c0;
        }
    }
    cf_deploy_result_free(&dep);
    free(process_xml);
    cf_engine_close(r.e);
    cf_ca_service_detach(svc);
    uv_close((uv_handle_t *)&r.starter, NULL);
    uv_run(&r.loop, UV_RUN_DEFAULT);
    uv_loop_close(&r.loop);
    free(r.t_start);
    if (elapsed < 0) {
        free(r.lat_ns);
        goto out;
    }
    qsort(r.lat_ns, r.n_lat, sizeof(*r.lat_ns), cmp_u64);

    /* The loops, on the same CSR and CA. */
    struct loop_job bj = {.kind = 0, .bare = &bare, .csr = csr, .csr_len = csr_len};
    struct loop_job cj = {.kind = 1, .ca = ca, .policy = policy, .csr = csr, .csr_len = csr_len};
    run_loop(bj, loops / 10 + 1, 1); /* warm-up */
    double bare1 = run_loop(bj, loops, 1);
    double bareT = threads > 1 ? run_loop(bj, loops, threads) : bare1;
    double ca1 = run_loop(cj, loops, 1);
    double caT = threads > 1 ? run_loop(cj, loops, threads) : ca1;

    double engine = (double)n / elapsed;
    printf("CA:                          embedded, ECDSA P-256 issuing key (SHA-256)\n");
    printf("CSR:                         %s, DER, subject O+CN, one DNS SAN\n",
           rsa ? "RSA-2048" : "ECDSA P-256");
    printf("CPUs online:                 %ld\n", sysconf(_SC_NPROCESSORS_ONLN));
    printf("engine: executePKCS10RequestTask, one process instance and one stored certificate "
           "each%s\n",
           chain ? ", chain variable set" : ", no chain variable");
    printf("  synchronous:               %s\n", sync_normal ? "NORMAL" : "FULL");
    printf("  instances:                 %" PRIu64 " (after %" PRIu64 " untimed), %" PRIu64
           " in flight at most\n",
           n, warmup, concurrency);
    printf("  elapsed:                   %.3f s\n", elapsed);
    printf("  throughput:                %.0f certificates/s\n", engine);
    printf("  latency p50 / p99:         %.2f / %.2f ms\n", pct_ms(r.lat_ns, r.n_lat, 50),
           pct_ms(r.lat_ns, r.n_lat, 99));
    printf("  commits per certificate:   %.3f\n", (double)commits / (double)n);
    printf("bare OpenSSL loop (d2i_X509_REQ, X509_REQ_verify, build, X509_sign, i2d_X509):\n");
    printf("  1 thread:                  %.0f certificates/s\n", bare1);
    printf("  %d threads:                 %.0f certificates/s\n", threads, bareT);
    printf("cf_ca_issue loop (certflow's CSR decoder and CA, no engine, no store):\n");
    printf("  1 thread:                  %.0f certificates/s\n", ca1);
    printf("  %d threads:                 %.0f certificates/s\n", threads, caT);
    printf("engine / bare loop:          %.0f%% of 1 thread, %.0f%% of %d threads\n",
           bare1 > 0 ? 100.0 * engine / bare1 : 0.0, bareT > 0 ? 100.0 * engine / bareT : 0.0,
           threads);
    printf("engine / cf_ca_issue loop:   %.0f%% of 1 thread, %.0f%% of %d threads\n",
           ca1 > 0 ? 100.0 * engine / ca1 : 0.0, caT > 0 ? 100.0 * engine / caT : 0.0, threads);
    free(r.lat_ns);
    result = bare1 > 0 && ca1 > 0 ? 0 : 1;
out:
    bare_ca_free(&bare);
    cf_ca_close(ca);
    cf_ca_policy_free(policy);
    EVP_PKEY_free(key);
    free(csr);
    char *cmd = cf_xasprintf("rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cf-ca-bench: could not remove %s\n", dir);
    free(cmd);
    free(db);
    free(ca_dir);
    free(dir);
    return result;
}
