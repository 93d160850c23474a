/*
 * The "cmp" connector (ca/conn_cmp.c) against OpenSSL's own CMP mock server (`openssl cmp
 * -port`), started here as a child process on a free port, with a throwaway PKI made by the
 * openssl command line in a temporary directory (the CSR and the mock's -rsp_cert share a key, as
 * in shared/reference/pki-peers/cmp-mock-server.sh). The connector is driven directly on a uv
 * loop. What a user would notice if it broke:
 *   - PBM p10cr and ir, and signature-protected p10cr and rr, give the mock's certificate with a
 *     chain that holds the root the mock sent; polling ("waiting") ends with the certificate;
 *   - every failure has its class and says why: a wrong secret (protection), a rejection and an
 *     error message (with the failInfo and the CA's text), transactionIdInUse (R6), a refused
 *     connection, a wrong path (HTTP 404), a wrong Content-Type, a certificate for another key,
 *     a file that is missing, a bad CSR (before any I/O);
 *   - a known certificate is replayed without asking the CA;
 *   - every run of a step sends the same transactionID, seen on the wire through a recording
 *     proxy (certflow's HTTP server) between the connector and the mock;
 *   - shutdown during a poll wait ends the request at once.
 * The mock binds every interface, so the test re-executes itself in a private network namespace
 * (`unshare -n`, only lo) when it can, as the recipe does; otherwise it uses loopback as is.
 * Without the openssl command's cmp mock the test exits 77 (skipped).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/cmp.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/pkcs7.h>
#include <openssl/x509.h>

#include "base/base.h"
#include "ca/connector.h"
#include "ca/remote.h"
#include "net/client.h"
#include "net/http.h"

#define SECRET "s3cr3t-Pbm"

/* PKIBody choices (RFC 4210 §5.1.2); OpenSSL keeps its names for them internal. */
enum { BODY_IR = 0, BODY_P10CR = 4, BODY_CERTCONF = 24, BODY_POLLREQ = 25 };

static char g_dir[64];
static int g_port;        /* the mock's */
static int g_dead_port;   /* nothing listens there */
static pid_t g_mock = -1; /* the running mock, or -1 */
static uint8_t *g_csr;    /* PEM of new.csr */
static size_t g_csr_len;
static uint8_t *g_cert_der; /* new.crt, what the mock hands out */
static size_t g_cert_len;
static uint8_t *g_root_der;
static size_t g_root_len;

/* ---- files and processes ---- */

static char *P(const char *name)
{
    static char bufs[8][256];
    static int next;
    char *b = bufs[next++ % 8];
    snprintf(b, sizeof(bufs[0]), "%s/%s", g_dir, name);
    return b;
}

static uint8_t *read_all(const char *path, size_t *len)
{
    uint8_t *data = NULL;
    char err[256];
    if (cf_read_file(path, 1 << 20, &data, len, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    return data;
}

static uint8_t *pem_cert_der(const char *path, size_t *len)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    assert_non_null(x);
    unsigned char *der = NULL;
    int n = i2d_X509(x, &der);
    assert_true(n > 0);
    X509_free(x);
    uint8_t *out = cf_xmemdup(der, (size_t)n);
    OPENSSL_free(der);
    *len = (size_t)n;
    return out;
}

/* A TCP port nothing listens on now, free on every interface (the mock binds [::]). */
static int free_port(void)
{
    int s = socket(AF_INET6, SOCK_STREAM, 0);
    assert_true(s >= 0);
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_addr = in6addr_any};
    assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof(a)), 0);
    socklen_t al = sizeof(a);
    assert_int_equal(getsockname(s, (struct sockaddr *)&a, &al), 0);
    close(s);
    return ntohs(a.sin6_port);
}

static void mock_stop(void)
{
    if (g_mock > 0) {
        kill(g_mock, SIGTERM);
        waitpid(g_mock, NULL, 0);
    }
    g_mock = -1;
}

/* Starts `openssl cmp -port` with the fixed options and `extra` (NULL-terminated). */
static void mock_start(const char *first, ...)
{
    mock_stop();
    const char *argv[48];
    size_t n = 0;
    char port[16];
    snprintf(port, sizeof(port), "%d", g_port);
    const char *fixed[] = {"openssl", "cmp", "-port", port, "-rsp_cert", "new.crt", NULL};
    for (size_t i = 0; fixed[i]; i++)
        argv[n++] = fixed[i];
    va_list ap;
    va_start(ap, first);
    for (const char *a = first; a && n < CF_ARRAY_LEN(argv) - 1; a = va_arg(ap, const char *))
        argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;
    unlink(P("mock.log")); /* so that an ACCEPT line found below is this mock's */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (chdir(g_dir) != 0)
            _exit(127);
        int fd = open("mock.log", O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execvp("openssl", (char *const *)argv);
        _exit(127);
    }
    g_mock = pid;
    /* The mock says when it listens. (A probe connection would cost a second: the mock sleeps
     * that long after a connection that sent no request.) */
    for (int i = 0; i < 400; i++) {
        size_t len = 0;
        uint8_t *log = NULL;
        char err[128];
        bool up = cf_read_file(P("mock.log"), 1 << 20, &log, &len, err, sizeof(err)) == 0 &&
                  strstr((char *)log, "ACCEPT") != NULL;
        free(log);
        if (up)
            return;
        nanosleep(&(struct timespec){.tv_nsec = 10000000}, NULL);
    }
    fail_msg("the cmp mock did not start on port %d (see %s)", g_port, P("mock.log"));
}

/* ---- running the connector ---- */

struct outcome {
    bool called;
    enum cf_ca_status st;
    char msg[2048];
    uint8_t *der;
    size_t der_len;
    char *pem;
    char subject[256];
    uint8_t *p7;
    size_t p7_len;
    bool replayed;
    uint64_t at_ms;
};

static void outcome_clear(struct outcome *o)
{
    free(o->der);
    free(o->pem);
    free(o->p7);
    memset(o, 0, sizeof(*o));
}

static void on_done(void *arg, const struct cf_ca_conn_result *res)
{
    struct outcome *o = arg;
    assert_false(o->called);
    o->called = true;
    o->at_ms = cf_mono_ms();
    o->st = res->status;
    snprintf(o->msg, sizeof(o->msg), "%s", res->message ? res->message : "");
    if (res->status == CF_CA_OK) {
        assert_non_null(res->der);
        assert_non_null(res->info);
        assert_non_null(res->pem);
        assert_non_null(res->chain_p7);
        o->der = cf_xmemdup(res->der, res->der_len);
        o->der_len = res->der_len;
        o->pem = cf_xstrdup(res->pem);
        snprintf(o->subject, sizeof(o->subject), "%s", res->info->subject);
        o->p7 = cf_xmemdup(res->chain_p7, res->chain_p7_len);
        o->p7_len = res->chain_p7_len;
        o->replayed = res->replayed;
    }
}

static void on_revoked(void *arg, enum cf_ca_status st, const char *message)
{
    struct outcome *o = arg;
    assert_false(o->called);
    o->called = true;
    o->st = st;
    snprintf(o->msg, sizeof(o->msg), "%s", message ? message : "");
}

/* Settings from name/value pairs of strings, NULL-terminated. */
static json_t *settings(const char *name, ...)
{
    json_t *s = json_object();
    va_list ap;
    va_start(ap, name);
    for (const char *k = name; k; k = va_arg(ap, const char *))
        json_object_set_new(s, k, json_string(va_arg(ap, const char *)));
    va_end(ap);
    return s;
}

static char *server_of(int port)
{
    static char buf[4][64];
    static int next;
    char *b = buf[next++ % 4];
    snprintf(b, sizeof(buf[0]), "127.0.0.1:%d/pkix/", port);
    return b;
}

static json_t *pbm(int port)
{
    return settings("server", server_of(port), "reference", "order-1234", "secret", SECRET, NULL);
}

static json_t *signed_by_cli(int port)
{
    return settings("server", server_of(port), "cert", P("cli.crt"), "key", P("cli.key"), "trusted",
                    P("root.crt"), NULL);
}

struct harness {
    uv_loop_t loop;
    struct cf_ca_connector *c;
};

static void h_init(struct harness *h)
{
    assert_int_equal(uv_loop_init(&h->loop), 0);
    struct cf_ca_connector_env env = {.loop = &h->loop, .ca_dir = g_dir};
    char err[256];
    if (cf__ca_kind_cmp.create(&env, &h->c, err, sizeof(err)) != 0)
        fail_msg("create: %s", err);
}

static void h_run_until(struct harness *h, const bool *flag)
{
    while (!*flag)
        uv_run(&h->loop, UV_RUN_ONCE);
}

static void h_end(struct harness *h)
{
    h->c->ops->shutdown(h->c);
    h->c->ops->free(h->c);
    uv_run(&h->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&h->loop), 0);
}

static void h_issue(struct harness *h, struct cf_ca_conn_request *req, struct outcome *o)
{
    char err[512];
    if (cf__ca_kind_cmp.check_settings(req->settings, err, sizeof(err)) != 0)
        fail_msg("settings refused: %s", err);
    memset(o, 0, sizeof(*o));
    assert_int_equal(h->c->ops->issue(h->c, req, on_done, o), 0);
    h_run_until(h, &o->called);
}

static struct cf_ca_conn_request request(const json_t *s, const char *key)
{
    return (struct cf_ca_conn_request){
        .tenant_id = "default",
        .template_name = "t",
        .settings = s,
        .csr = g_csr,
        .csr_len = g_csr_len,
        .idempotency_key = key,
        .attempt = 1,
    };
}

/* One request on its own loop and connector; the settings are consumed. */
static void issue_once(json_t *s, const char *key, struct outcome *o)
{
    struct harness h;
    h_init(&h);
    struct cf_ca_conn_request req = request(s, key);
    h_issue(&h, &req, o);
    h_end(&h);
    json_decref(s);
}

static void expect_cert(const struct outcome *o)
{
    if (o->st != CF_CA_OK)
        fail_msg("expected a certificate, got class %d: %s", o->st, o->msg);
    assert_int_equal(o->der_len, g_cert_len);
    assert_memory_equal(o->der, g_cert_der, g_cert_len);
    assert_false(o->replayed);
    assert_string_equal(o->subject, "CN=device-001");
    assert_non_null(strstr(o->pem, "-----BEGIN CERTIFICATE-----"));
}

/* The chain bundle holds the certificate first, then the root when `with_root`. */
static void expect_chain(const struct outcome *o, bool with_root)
{
    const unsigned char *p = o->p7;
    PKCS7 *p7 = d2i_PKCS7(NULL, &p, (long)o->p7_len);
    assert_non_null(p7);
    assert_true(PKCS7_type_is_signed(p7));
    STACK_OF(X509) *certs = p7->d.sign->cert;
    assert_int_equal(sk_X509_num(certs), with_root ? 2 : 1);
    unsigned char *der = NULL;
    int n = i2d_X509(sk_X509_value(certs, 0), &der);
    assert_int_equal((size_t)n, g_cert_len);
    assert_memory_equal(der, g_cert_der, g_cert_len);
    OPENSSL_free(der);
    if (with_root) {
        der = NULL;
        n = i2d_X509(sk_X509_value(certs, 1), &der);
        assert_int_equal((size_t)n, g_root_len);
        assert_memory_equal(der, g_root_der, g_root_len);
        OPENSSL_free(der);
    }
    PKCS7_free(p7);
}

static void expect_failure(const struct outcome *o, enum cf_ca_status st, const char *text)
{
    if (o->st != st || !strstr(o->msg, text))
        fail_msg("expected class %d with \"%s\", got class %d: %s", st, text, o->st, o->msg);
    assert_null(strstr(o->msg, SECRET));
}

/* ---- the recording proxy: certflow's HTTP server in front of the mock ---- */

struct proxy {
    struct cf_http_server *srv;
    struct cf_httpc *cli;
    int port;
    const char *content_type; /* NULL: the mock's */
    int n;
    int bodytype[16];
    uint8_t tid[16][16];
    size_t tid_len[16];
    uint8_t *first; /* the DER of the first request */
    size_t first_len;
};

struct fwd {
    struct proxy *px;
    struct cf_http_request *req;
};

static void proxy_answer(void *arg, const struct cf_httpc_resp *resp)
{
    struct fwd *f = arg;
    if (resp->fail != CF_HTTPC_OK)
        cf_http_respond(f->req, 502, "text/plain", NULL, "no mock", 7);
    else
        cf_http_respond(f->req, (int)resp->status,
                        f->px->content_type ? f->px->content_type : resp->content_type, NULL,
                        resp->body, resp->body_len);
    free(f);
}

static void proxy_handler(void *arg, struct cf_http_request *req)
{
    struct proxy *px = arg;
    const unsigned char *p = req->body;
    OSSL_CMP_MSG *m = d2i_OSSL_CMP_MSG(NULL, &p, (long)req->body_len);
    if (m && px->n < 16) {
        px->bodytype[px->n] = OSSL_CMP_MSG_get_bodytype(m);
        const ASN1_OCTET_STRING *t = OSSL_CMP_HDR_get0_transactionID(OSSL_CMP_MSG_get0_header(m));
        px->tid_len[px->n] = t ? (size_t)ASN1_STRING_length(t) : 0;
        if (t && px->tid_len[px->n] <= 16)
            memcpy(px->tid[px->n], ASN1_STRING_get0_data(t), px->tid_len[px->n]);
        px->n++;
    }
    OSSL_CMP_MSG_free(m);
    if (!px->first) {
        px->first = cf_xmemdup(req->body, req->body_len);
        px->first_len = req->body_len;
    }
    struct fwd *f = cf_xcalloc(1, sizeof(*f));
    f->px = px;
    f->req = req;
    char url[64];
    snprintf(url, sizeof(url), "http://%s", server_of(g_port));
    struct cf_httpc_header h = {"Content-Type", "application/pkixcmp"};
    struct cf_httpc_req r = {.method = "POST",
                             .url = url,
                             .headers = &h,
                             .n_headers = 1,
                             .body = req->body,
                             .body_len = req->body_len};
    if (cf_httpc_send(px->cli, &r, proxy_answer, f, NULL) != 0) {
        cf_http_respond(req, 502, "text/plain", NULL, "no client", 9);
        free(f);
    }
}

static void proxy_start(struct proxy *px, uv_loop_t *loop)
{
    memset(px, 0, sizeof(*px));
    char err[256];
    struct cf_listener_config l = {.kind = CF_LISTEN_PLAIN, .host = "127.0.0.1"};
    struct cf_http_server_config cfg = {
        .listeners = &l, .n_listeners = 1, .handler = proxy_handler, .arg = px};
    if (cf_http_server_start(loop, &cfg, &px->srv, err, sizeof(err)) != 0)
        fail_msg("proxy: %s", err);
    px->port = cf_http_listener_port(px->srv, 0);
    if (cf_httpc_new(loop, &px->cli, err, sizeof(err)) != 0)
        fail_msg("proxy client: %s", err);
}

static void proxy_stop(struct proxy *px)
{
    cf_http_server_close(px->srv);
    cf_httpc_close(px->cli, NULL, NULL);
    free(px->first);
}

static bool contains(const uint8_t *p, size_t n, const void *what, size_t len)
{
    for (size_t i = 0; i + len <= n; i++)
        if (memcmp(p + i, what, len) == 0)
            return true;
    return false;
}

/* ---- tests ---- */

static void test_settings(void **state)
{
    (void)state;
    char err[512];
    const struct cf_ca_connector_kind *k = &cf__ca_kind_cmp;
    assert_true(k->available);
    assert_string_equal(k->secret_fields[0], "secret");
    assert_string_equal(k->secret_fields[1], "keyPassword");
    assert_null(k->secret_fields[2]);
    static const struct {
        const char *json;
        const char *message; /* NULL: accepted */
    } cases[] = {
        {"{\"server\": \"ca.example:8080/pkix/\", \"reference\": \"r\", \"secret\": \"s\"}", NULL},
        {"{\"server\": \"https://ca.example\", \"path\": \"/.well-known/cmp/p/x\", \"cert\": "
         "\"c.pem\", \"key\": \"k.pem\", \"keyPassword\": \"pw\", \"serverCert\": \"s.pem\", "
         "\"tlsTrusted\": \"t.pem\", \"recipient\": \"/CN=CMP CA/O=Example\", \"command\": "
         "\"ir\", \"implicitConfirm\": true, \"unprotectedErrors\": false, \"timeoutMs\": 5000, "
         "\"totalTimeoutMs\": 60000}",
         NULL},
        {"{\"server\": \"ca.example\"}", "settings.secret: the cmp connector must protect its "
                                         "requests"},
        {"{\"server\": \"ca.example\", \"secret\": \"s\"}", "settings.reference: a shared secret "
                                                            "needs the reference"},
        {"{\"server\": \"ca.example\", \"cert\": \"c.pem\", \"trusted\": \"t.pem\"}",
         "settings.key: settings.cert needs its private key"},
        {"{\"server\": \"ca.example\", \"cert\": \"c.pem\", \"key\": \"k.pem\"}",
         "settings.trusted: signature protection needs"},
        {"{\"server\": \"ca.example\", \"reference\": \"r\", \"secret\": \"s\", \"cert\": "
         "\"c.pem\", \"key\": \"k.pem\"}",
         "not both"},
        {"{\"server\": \"ca.example\", \"reference\": \"r\", \"secret\": \"s\", \"mac\": "
         "\"hmac-sha256\"}",
         "settings.mac: \"hmac-sha256\" is not one of hmac-sha1, hmacWithSHA224"},
        {"{\"server\": \"ca.example\", \"reference\": \"r\", \"secret\": \"s\", \"command\": "
         "\"cr\"}",
         "settings.command: \"cr\" is not one of p10cr, ir"},
        {"{\"server\": \"ca.example\", \"reference\": \"r\", \"secret\": \"s\", \"path\": "
         "\"pkix\"}",
         "settings.path: \"pkix\" must start with '/'"},
        {"{\"server\": \"ca.example\", \"reference\": \"r\", \"secret\": \"s\", \"recipient\": "
         "\"no equals sign\"}",
         "settings.recipient:"},
        {"{\"server\": \"ca.example\", \"reference\": \"r\", \"secret\": \"s\", \"tlsTrusted\": "
         "\"t.pem\"}",
         "settings.tlsTrusted: is only used with an https:// server"},
        {"{\"server\": \"ca.example\", \"reference\": \"r\", \"secret\": \"s\", \"timeoutMs\": 0}",
         "settings.timeoutMs: must be a whole number from 1 to 600000"},
        {"{\"server\": \"ftp://ca.example\", \"reference\": \"r\", \"secret\": \"s\"}",
         "settings.server:"},
    };
    for (size_t i = 0; i < CF_ARRAY_LEN(cases); i++) {
        json_t *s = json_loads(cases[i].json, 0, NULL);
        assert_non_null(s);
        err[0] = '\0';
        int rc = k->check_settings(s, err, sizeof(err));
        if (!cases[i].message && rc != 0)
            fail_msg("case %zu refused: %s", i, err);
        if (cases[i].message && (rc != CF_EINVAL || !strstr(err, cases[i].message)))
            fail_msg("case %zu: expected \"%s\", got %d \"%s\"", i, cases[i].message, rc, err);
        json_decref(s);
    }
    json_t *s = settings("server", "ca.example", NULL);
    assert_int_equal(k->supports_override(s, err, sizeof(err)), 0);
    /* The exact text tests/integration/pkcs10-issue.sh expects in the incident. */
    assert_string_equal(err, "the cmp connector sends the PKCS#10 request as it was signed "
                             "(p10cr), so the certificate's subject and SANs cannot differ from "
                             "the CSR's");
    json_decref(s);
}

static void test_pbm_p10cr(void **state)
{
    (void)state;
    mock_start("-srv_ref", "order-1234", "-srv_secret", "pass:" SECRET, "-rsp_extracerts",
               "root.crt", NULL);
    struct outcome o;
    issue_once(pbm(g_port), "instance-1/activity-1", &o);
    expect_cert(&o);
    expect_chain(&o, true);
    outcome_clear(&o);

    /* The same with HMAC-SHA1, OpenSSL's default, named by the setting. */
    json_t *s = pbm(g_port);
    json_object_set_new(s, "mac", json_string("hmac-sha1"));
    issue_once(s, "instance-1/activity-2", &o);
    expect_cert(&o);
    outcome_clear(&o);

    /* A wrong secret: the mock answers with an error protected by its own secret, which fails our
     * check. */
    s = settings("server", server_of(g_port), "reference", "order-1234", "secret", "WRONG-" SECRET,
                 NULL);
    issue_once(s, "instance-1/activity-3", &o);
    expect_failure(&o, CF_CA_CONNECTION_FAILED, "failed its protection check");
    assert_non_null(strstr(o.msg, "wrong pbm value"));
    assert_null(strstr(o.msg, "WRONG-"));
    outcome_clear(&o);
    mock_stop();
}

static void test_pbm_ir(void **state)
{
    (void)state;
    mock_start("-srv_ref", "order-1234", "-srv_secret", "pass:" SECRET, "-rsp_capubs", "root.crt",
               "-accept_raverified", NULL);
    json_t *s = pbm(g_port);
    json_object_set_new(s, "command", json_string("ir"));
    json_object_set_new(s, "implicitConfirm", json_true());
    struct outcome o;
    issue_once(s, "instance-2/activity-1", &o);
    expect_cert(&o);
    expect_chain(&o, true);
    outcome_clear(&o);

    /* executeModifiedPKCS10RequestTask: the ir carries the given subject and SANs (seen on the
     * wire; the mock hands out its fixed certificate whatever it is asked). */
    struct harness h;
    h_init(&h);
    struct proxy px;
    proxy_start(&px, &h.loop);
    s = pbm(px.port);
    json_object_set_new(s, "command", json_string("ir"));
    char why[256];
    assert_int_equal(cf__ca_kind_cmp.supports_override(s, why, sizeof(why)), 1);
    static const struct cf_ca_rdn rdns[] = {{"O", "Example Org"}, {"CN", "override.example.test"}};
    static const struct cf_ca_san sans[] = {{CF_CA_SAN_DNS, "a.example.test"},
                                            {CF_CA_SAN_IP, "192.0.2.7"}};
    struct cf_ca_overrides ov = {.set_subject = true,
                                 .subject = rdns,
                                 .n_subject = 2,
                                 .set_sans = true,
                                 .sans = sans,
                                 .n_sans = 2};
    struct cf_ca_conn_request req = request(s, "instance-2/activity-3");
    req.overrides = &ov;
    h_issue(&h, &req, &o);
    expect_cert(&o);
    outcome_clear(&o);
    assert_int_equal(px.bodytype[0], BODY_IR);
    assert_true(contains(px.first, px.first_len, "override.example.test", 21));
    assert_true(contains(px.first, px.first_len, "Example Org", 11));
    assert_true(contains(px.first, px.first_len, "a.example.test", 14));
    assert_true(contains(px.first, px.first_len, "\xc0\x00\x02\x07", 4));
    assert_false(contains(px.first, px.first_len, "device-001", 10));
    /* An SAN that cannot be encoded is CommonError, before anything is sent. */
    static const struct cf_ca_san bad_san[] = {{CF_CA_SAN_IP, "not-an-ip"}};
    ov.sans = bad_san;
    ov.n_sans = 1;
    int before = px.n;
    req = request(s, "instance-2/activity-4");
    req.overrides = &ov;
    h_issue(&h, &req, &o);
    expect_failure(&o, CF_CA_COMMON_ERROR, "SAN 1 given for the certificate cannot be encoded");
    assert_int_equal(px.n, before);
    outcome_clear(&o);
    proxy_stop(&px);
    h_end(&h);
    json_decref(s);

    /* Without -accept_raverified the mock refuses raVerified: the CA said no. */
    mock_start("-srv_ref", "order-1234", "-srv_secret", "pass:" SECRET, NULL);
    s = pbm(g_port);
    json_object_set_new(s, "command", json_string("ir"));
    issue_once(s, "instance-2/activity-2", &o);
    expect_failure(&o, CF_CA_REQUEST_FAILED, "badPOP");
    assert_non_null(strstr(o.msg, "\"popo raverified not accepted\""));
    outcome_clear(&o);
    mock_stop();
}

static void test_signature(void **state)
{
    (void)state;
    mock_start("-srv_cert", "srv.crt", "-srv_key", "srv.key", "-srv_trusted", "root.crt",
               "-rsp_extracerts", "root.crt", NULL);
    struct outcome o;
    issue_once(signed_by_cli(g_port), "instance-3/activity-1", &o);
    expect_cert(&o);
    expect_chain(&o, true);
    outcome_clear(&o);

    /* An encrypted key with its password, the CA's signer pinned instead of a trust anchor, and
     * the CA named as recipient. */
    json_t *s = settings("server", server_of(g_port), "cert", P("cli.crt"), "key", P("cli-enc.key"),
                         "keyPassword", "key-Passw0rd", "serverCert", P("srv.crt"), "recipient",
                         "CN=Mock CMP Server", NULL);
    issue_once(s, "instance-3/activity-2", &o);
    expect_cert(&o);
    outcome_clear(&o);

    /* A wrong password, and a file that is not there: the admin's to fix, so a retry may help. */
    s = settings("server", server_of(g_port), "cert", P("cli.crt"), "key", P("cli-enc.key"),
                 "keyPassword", "not-it", "serverCert", P("srv.crt"), NULL);
    issue_once(s, "instance-3/activity-3", &o);
    expect_failure(&o, CF_CA_CONNECTION_FAILED, "is not a PEM private key");
    assert_null(strstr(o.msg, "not-it"));
    outcome_clear(&o);
    s = settings("server", server_of(g_port), "cert", P("missing.crt"), "key", P("cli.key"),
                 "trusted", P("root.crt"), NULL);
    issue_once(s, "instance-3/activity-4", &o);
    expect_failure(&o, CF_CA_CONNECTION_FAILED, "cannot read settings.cert (");
    assert_non_null(strstr(o.msg, "No such file"));
    outcome_clear(&o);

    /* Revocation (rr) of the certificate the mock issued, and of another one. */
    struct harness h;
    h_init(&h);
    s = signed_by_cli(g_port);
    struct cf_ca_conn_revoke rr = {.tenant_id = "default",
                                   .template_name = "t",
                                   .settings = s,
                                   .der = g_cert_der,
                                   .der_len = g_cert_len,
                                   .reason = 1};
    memset(&o, 0, sizeof(o));
    assert_int_equal(h.c->ops->revoke(h.c, &rr, on_revoked, &o), 0);
    h_run_until(&h, &o.called);
    if (o.st != CF_CA_OK)
        fail_msg("revocation: %s", o.msg);
    rr.der = g_root_der;
    rr.der_len = g_root_len;
    memset(&o, 0, sizeof(o));
    assert_int_equal(h.c->ops->revoke(h.c, &rr, on_revoked, &o), 0);
    h_run_until(&h, &o.called);
    expect_failure(&o, CF_CA_REQUEST_FAILED, "the CA rejected the revocation");
    rr.reason = 7; /* not a CRLReason */
    assert_int_equal(h.c->ops->revoke(h.c, &rr, on_revoked, &o), CF_EINVAL);
    h_end(&h);
    json_decref(s);
    mock_stop();
}

static void test_polling(void **state)
{
    (void)state;
    mock_start("-srv_ref", "order-1234", "-srv_secret", "pass:" SECRET, "-poll_count", "2",
               "-check_after", "1", NULL);
    uint64_t t0 = cf_mono_ms();
    struct outcome o;
    issue_once(pbm(g_port), "instance-4/activity-1", &o);
    expect_cert(&o);
    expect_chain(&o, false);
    assert_true(cf_mono_ms() - t0 >= 1000); /* it waited checkAfter */
    outcome_clear(&o);

    /* A CA that asks to wait beyond settings.totalTimeoutMs. */
    mock_start("-srv_ref", "order-1234", "-srv_secret", "pass:" SECRET, "-poll_count", "3",
               "-check_after", "30", NULL);
    json_t *s = pbm(g_port);
    json_object_set_new(s, "totalTimeoutMs", json_integer(2000));
    t0 = cf_mono_ms();
    issue_once(s, "instance-4/activity-2", &o);
    expect_failure(&o, CF_CA_CONNECTION_FAILED,
                   "has not issued the certificate within settings.totalTimeoutMs (2000 ms)");
    assert_true(cf_mono_ms() - t0 < 2000);
    outcome_clear(&o);
    mock_stop();
}

static void test_ca_says_no(void **state)
{
    (void)state;
    struct outcome o;
    mock_start("-srv_ref", "order-1234", "-srv_secret", "pass:" SECRET, "-pkistatus", "2",
               "-failure", "2", "-statusstring", "order not found", NULL);
    issue_once(pbm(g_port), "instance-5/activity-1", &o);
    expect_failure(&o, CF_CA_REQUEST_FAILED,
                   "the CA rejected the request: badRequest: \"order not found\"");
    outcome_clear(&o);

    /* An error message (body "error") instead of a certificate response. */
    mock_start("-srv_ref", "order-1234", "-srv_secret", "pass:" SECRET, "-send_error", NULL);
    issue_once(pbm(g_port), "instance-5/activity-2", &o);
    expect_failure(&o, CF_CA_REQUEST_FAILED,
                   "the CA rejected the request: badRequest: \"error processing message\"");
    outcome_clear(&o);

    /* systemUnavail is the CA's trouble, not a verdict on the request. */
    mock_start("-srv_ref", "order-1234", "-srv_secret", "pass:" SECRET, "-pkistatus", "2",
               "-failure", "24", NULL);
    issue_once(pbm(g_port), "instance-5/activity-3", &o);
    expect_failure(&o, CF_CA_CONNECTION_FAILED, "is unavailable (it answered systemUnavail)");
    outcome_clear(&o);

    /* A rejection sent without protection: refused as such, unless settings.unprotectedErrors. */
    mock_start("-srv_ref", "order-1234", "-srv_secret", "pass:" SECRET, "-pkistatus", "2",
               "-failure", "23", "-statusstring", "not today", "-send_unprot_err", NULL);
    issue_once(pbm(g_port), "instance-5/activity-6", &o);
    expect_failure(&o, CF_CA_CONNECTION_FAILED, "failed its protection check");
    outcome_clear(&o);
    json_t *s = pbm(g_port);
    json_object_set_new(s, "unprotectedErrors", json_true());
    issue_once(s, "instance-5/activity-7", &o);
    expect_failure(&o, CF_CA_REQUEST_FAILED,
                   "the CA rejected the request: notAuthorized: \"not today\"");
    outcome_clear(&o);

    /* transactionIdInUse: an earlier attempt reached the CA; no second certificate (R6). */
    mock_start("-srv_ref", "order-1234", "-srv_secret", "pass:" SECRET, "-pkistatus", "2",
               "-failure", "21", NULL);
    issue_once(pbm(g_port), "instance-5/activity-4", &o);
    uint8_t md[32];
    unsigned int mdlen;
    const char *key = "instance-5/activity-4";
    EVP_Digest(key, strlen(key), md, &mdlen, EVP_sha256(), NULL);
    char tid[33];
    for (int i = 0; i < 16; i++)
        snprintf(tid + 2 * i, 3, "%02x", md[i]);
    char want[128];
    snprintf(want, sizeof(want), "already has this request (transaction id %s", tid);
    expect_failure(&o, CF_CA_CONNECTION_FAILED, want);
    assert_non_null(strstr(o.msg, "transactionIdInUse"));
    assert_non_null(strstr(o.msg, "Find the certificate at the CA by hand"));
    outcome_clear(&o);

    /* A certificate for another key than the CSR's is refused in the certConf. */
    mock_start("-srv_ref", "order-1234", "-srv_secret", "pass:" SECRET, "-rsp_cert", "srv.crt",
               NULL);
    issue_once(pbm(g_port), "instance-5/activity-5", &o);
    expect_failure(&o, CF_CA_CONNECTION_FAILED,
                   "returned a certificate that certflow refused in its certConf and does not "
                   "use: it does not certify the CSR's public key");
    outcome_clear(&o);
    mock_stop();
}

static void test_transport_failures(void **state)
{
    (void)state;
    struct outcome o;
    issue_once(pbm(g_dead_port), "instance-6/activity-1", &o);
    char want[256];
    snprintf(want, sizeof(want),
             "cannot connect to the CA at 127.0.0.1:%d (cmp connector of template 't'): "
             "connection refused",
             g_dead_port);
    expect_failure(&o, CF_CA_CONNECTION_FAILED, want);
    outcome_clear(&o);

    mock_start("-srv_ref", "order-1234", "-srv_secret", "pass:" SECRET, NULL);
    json_t *s = pbm(g_port);
    json_object_set_new(s, "path", json_string("/.well-known/cmp"));
    issue_once(s, "instance-6/activity-2", &o);
    expect_failure(&o, CF_CA_CONNECTION_FAILED, "answered HTTP 404 to POST http://127.0.0.1:");
    assert_non_null(strstr(o.msg, "/.well-known/cmp"));
    outcome_clear(&o);

    /* A proxy that says the answer is HTML. */
    struct harness h;
    h_init(&h);
    struct proxy px;
    proxy_start(&px, &h.loop);
    px.content_type = "text/html";
    s = pbm(px.port);
    struct cf_ca_conn_request req = request(s, "instance-6/activity-3");
    h_issue(&h, &req, &o);
    expect_failure(&o, CF_CA_CONNECTION_FAILED,
                   "answered with Content-Type \"text/html\" instead of application/pkixcmp");
    outcome_clear(&o);
    proxy_stop(&px);
    h_end(&h);
    json_decref(s);
    mock_stop();
}

static void test_no_contact(void **state)
{
    (void)state;
    /* No mock runs: had the connector tried, it would have failed to connect. */
    struct outcome o;
    size_t der_len;
    const uint8_t *der = NULL;
    struct cf_csr *csr = NULL;
    char err[256];
    assert_int_equal(cf_csr_decode(g_csr, g_csr_len, &csr, err, sizeof(err)), 0);
    der = cf_csr_der(csr, &der_len);
    uint8_t *bad = cf_xmemdup(der, der_len);
    bad[der_len - 3] ^= 0x55; /* in the signature */
    cf_csr_free(csr);

    struct harness h;
    h_init(&h);
    json_t *s = pbm(g_dead_port);
    struct cf_ca_conn_request req = request(s, "instance-7/activity-1");
    req.csr = bad;
    req.csr_len = der_len;
    h_issue(&h, &req, &o);
    expect_failure(&o, CF_CA_COMMON_ERROR, "signature");
    outcome_clear(&o);

    /* The certificate the store holds for the key: replayed. */
    req = request(s, "instance-7/activity-2");
    req.known_der = g_cert_der;
    req.known_der_len = g_cert_len;
    req.attempt = 2;
    h_issue(&h, &req, &o);
    assert_int_equal(o.st, CF_CA_OK);
    assert_true(o.replayed);
    assert_memory_equal(o.der, g_cert_der, g_cert_len);
    expect_chain(&o, false);
    outcome_clear(&o);

    /* A stored certificate of another key: the key was reused for another request. */
    req.known_der = g_root_der;
    req.known_der_len = g_root_len;
    h_issue(&h, &req, &o);
    expect_failure(&o, CF_CA_COMMON_ERROR, "was already used for a certificate of another");
    outcome_clear(&o);
    h_end(&h);
    json_decref(s);
    free(bad);
}

/* More requests at once than the connector has worker threads: every one ends, once. The
 * answers come from known certificates, since the 3.0 mock serves one connection at a time. */
static void test_many_at_once(void **state)
{
    (void)state;
    struct harness h;
    h_init(&h);
    json_t *s = pbm(g_dead_port);
    enum { N = 12 };
    struct cf_ca_conn_request reqs[N];
    struct outcome o[N];
    char keys[N][32];
    for (int i = 0; i < N; i++) {
        snprintf(keys[i], sizeof(keys[i]), "instance-10/activity-%d", i);
        reqs[i] = request(s, keys[i]);
        reqs[i].known_der = i % 3 ? g_cert_der : g_root_der;
        reqs[i].known_der_len = i % 3 ? g_cert_len : g_root_len;
        memset(&o[i], 0, sizeof(o[i]));
        assert_int_equal(h.c->ops->issue(h.c, &reqs[i], on_done, &o[i]), 0);
    }
    for (int i = 0; i < N; i++) {
        h_run_until(&h, &o[i].called);
        if (i % 3) {
            assert_int_equal(o[i].st, CF_CA_OK);
            assert_true(o[i].replayed);
        } else {
            expect_failure(&o[i], CF_CA_COMMON_ERROR, keys[i]);
        }
        outcome_clear(&o[i]);
    }
    h_end(&h);
    json_decref(s);
}

static void test_transaction_id(void **state)
{
    (void)state;
    mock_start("-srv_ref", "order-1234", "-srv_secret", "pass:" SECRET, NULL);
    struct harness h;
    h_init(&h);
    struct proxy px;
    proxy_start(&px, &h.loop);
    json_t *s = pbm(px.port);
    const char *keys[] = {"instance-8/activity-1", "instance-8/activity-1",
                          "instance-8/activity-2"};
    int first[3];
    for (int i = 0; i < 3; i++) {
        struct outcome o;
        first[i] = px.n;
        struct cf_ca_conn_request req = request(s, keys[i]);
        req.attempt = i + 1;
        h_issue(&h, &req, &o);
        expect_cert(&o);
        outcome_clear(&o);
    }
    assert_int_equal(px.n, 6); /* p10cr + certConf, three times */
    for (int i = 0; i < 3; i++) {
        int m = first[i];
        assert_int_equal(px.bodytype[m], BODY_P10CR);
        assert_int_equal(px.bodytype[m + 1], BODY_CERTCONF);
        assert_int_equal(px.tid_len[m], 16);
        assert_memory_equal(px.tid[m], px.tid[m + 1], 16);
        uint8_t md[32];
        unsigned int mdlen;
        EVP_Digest(keys[i], strlen(keys[i]), md, &mdlen, EVP_sha256(), NULL);
        assert_memory_equal(px.tid[m], md, 16);
    }
    assert_memory_equal(px.tid[first[0]], px.tid[first[1]], 16);
    assert_memory_not_equal(px.tid[first[0]], px.tid[first[2]], 16);
    proxy_stop(&px);
    h_end(&h);
    json_decref(s);
    mock_stop();
}

struct stopper {
    uv_timer_t t;
    struct cf_ca_connector *c;
    uint64_t at_ms;
};

static void stop_now(uv_timer_t *t)
{
    struct stopper *st = cf_container_of(t, struct stopper, t);
    st->at_ms = cf_mono_ms();
    st->c->ops->shutdown(st->c);
    uv_close((uv_handle_t *)t, NULL);
}

static void test_shutdown_while_polling(void **state)
{
    (void)state;
    mock_start("-srv_ref", "order-1234", "-srv_secret", "pass:" SECRET, "-poll_count", "5",
               "-check_after", "20", NULL);
    struct harness h;
    h_init(&h);
    struct proxy px;
    proxy_start(&px, &h.loop);
    json_t *s = pbm(px.port);
    struct cf_ca_conn_request req = request(s, "instance-9/activity-1");
    struct outcome o;
    memset(&o, 0, sizeof(o));
    assert_int_equal(h.c->ops->issue(h.c, &req, on_done, &o), 0);
    /* Wait until the mock said "waiting" and answered the first pollReq. */
    while (px.n < 2 && !o.called)
        uv_run(&h.loop, UV_RUN_ONCE);
    assert_false(o.called);
    struct stopper st = {.c = h.c};
    uv_timer_init(&h.loop, &st.t);
    uv_timer_start(&st.t, stop_now, 300, 0);
    h_run_until(&h, &o.called);
    expect_failure(&o, CF_CA_CONNECTION_FAILED, "certflow stopped before the CA answered");
    assert_true(o.at_ms - st.at_ms < 1000);
    assert_int_equal(px.bodytype[0], BODY_P10CR);
    assert_int_equal(px.bodytype[1], BODY_POLLREQ);
    /* After shutdown, nothing more is taken. */
    struct outcome o2;
    memset(&o2, 0, sizeof(o2));
    assert_int_equal(h.c->ops->issue(h.c, &req, on_done, &o2), CF_ESTATE);
    outcome_clear(&o);
    proxy_stop(&px);
    h_end(&h);
    json_decref(s);
    mock_stop();
}

/* ---- setup ---- */

static const char pki_script[] =
    "set -e\n"
    "ec() { openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout \"$1.key\" "
    "-out \"$1.csr\" -subj \"$2\" 2>/dev/null; }\n"
    "sign() { printf 'basicConstraints=CA:FALSE\\nkeyUsage=critical,digitalSignature,"
    "keyEncipherment\\n' >ext.cnf; openssl x509 -req -in \"$1.csr\" -CA root.crt -CAkey root.key "
    "-CAcreateserial -days 30 -out \"$1.crt\" -extfile ext.cnf 2>/dev/null; }\n"
    "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout root.key "
    "-out root.crt -days 30 -subj '/CN=Test Root CA' -addext basicConstraints=critical,CA:TRUE "
    "-addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null\n"
    "ec srv '/CN=Mock CMP Server'; sign srv\n"
    "ec cli '/CN=ra-client'; sign cli\n"
    "ec new '/CN=device-001'; sign new\n"
    "openssl pkey -in cli.key -aes256 -passout pass:key-Passw0rd -out cli-enc.key\n";

static int group_setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    snprintf(g_dir, sizeof(g_dir), "/tmp/cf-test-cmp.XXXXXX");
    if (!mkdtemp(g_dir))
        return -1;
    FILE *f = fopen(P("pki.sh"), "w");
    if (!f)
        return -1;
    fputs(pki_script, f);
    fclose(f);
    char *cmd = cf_xasprintf("cd '%s' && sh pki.sh", g_dir);
    int rc = system(cmd);
    free(cmd);
    if (rc != 0)
        return -1;
    g_csr = read_all(P("new.csr"), &g_csr_len);
    g_cert_der = pem_cert_der(P("new.crt"), &g_cert_len);
    g_root_der = pem_cert_der(P("root.crt"), &g_root_len);
    g_port = free_port();
    do
        g_dead_port = free_port();
    while (g_dead_port == g_port);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    mock_stop();
    if (getenv("KEEP")) {
        fprintf(stderr, "kept %s\n", g_dir);
    } else {
        char *cmd = cf_xasprintf("rm -rf '%s'", g_dir);
        if (system(cmd) != 0)
            fprintf(stderr, "cannot remove %s\n", g_dir);
        free(cmd);
    }
    free(g_csr);
    free(g_cert_der);
    free(g_root_der);
    return 0;
}

int main(int argc, char **argv)
{
    (void)argc;
    /* The mock binds every interface: run in a network namespace of our own when we may. */
    if (!getenv("CF_TEST_CMP_NETNS") && system("unshare -n true >/dev/null 2>&1") == 0) {
        setenv("CF_TEST_CMP_NETNS", "1", 1);
        char self[4096];
        ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
        if (n > 0) {
            self[n] = '\0';
            char *args[] = {"unshare", "-n", "sh", "-c", "ip link set lo up && exec \"$0\"",
                            self,      NULL};
            execvp("unshare", args);
        }
        fprintf(stderr, "cannot enter a network namespace; using loopback as it is\n");
    }
    (void)argv;
    if (system("openssl cmp -help 2>&1 | grep -q -- -accept_raverified") != 0) {
        fprintf(stderr, "SKIP: no `openssl cmp` mock server\n");
        return 77;
    }
    if (getenv("CF_TEST_DEBUG"))
        cf_log_set_level(CF_LOG_DEBUG);
    if (getenv("CF_TEST_FILTER"))
        cmocka_set_test_filter(getenv("CF_TEST_FILTER"));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_settings),
        cmocka_unit_test(test_no_contact),
        cmocka_unit_test(test_pbm_p10cr),
        cmocka_unit_test(test_pbm_ir),
        cmocka_unit_test(test_signature),
        cmocka_unit_test(test_polling),
        cmocka_unit_test(test_ca_says_no),
        cmocka_unit_test(test_transport_failures),
        cmocka_unit_test(test_many_at_once),
        cmocka_unit_test(test_transaction_id),
        cmocka_unit_test(test_shutdown_while_polling),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
