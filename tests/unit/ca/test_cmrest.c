/*
 * Tests of the cm-rest connector (ca/conn_cmrest.c).
 *
 * The settings and the failures before any I/O are checked directly. Everything on the wire is
 * checked against a FAKE Certificate Manager: certflow's own HTTP server (engine/net/http.h) on
 * 127.0.0.1, with a client-certificate TLS listener and a handler in this file that answers the
 * subset of docs/cm-rest.md the way a CM would, including answers that certflowd never gives
 * (a garbled body, HTTP 500 with HTML, a server that never answers, a certificate for another key).
 * A real CM cannot run here, and certflowd's own server is tested end to end by
 * tests/integration/cm-rest.sh; this fake is only what the connector talks to in these tests.
 * It checks what a real CM would check: the officer's signature over its dataToSign (CMS, attached,
 * signed by the TLS client certificate), the form fields, the Accept header and the search key.
 *
 * The throwaway PKI (test CA, server, officer with a plain and an encrypted key, device keys and
 * certificates) is made by the openssl command line in a temporary folder. The fake and the
 * connector share one libuv loop in the test thread; every wait has a deadline, and every test
 * ends with uv_loop_close() == 0.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/pkcs7.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "base/base.h"
#include "ca/connector.h"
#include "ca/x509.h"
#include "net/http.h"

#define OFFICER_PW "S3cret-pw-42"

/* ---- the throwaway PKI ---- */

static char pki[64];

static const char pki_script[] =
    "set -e\n"
    "cd \"$1\"\n"
    "exec 2>openssl.log\n"
    "key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out \"$1\"; }\n"
    "sign() {\n"
    "  printf '%b' \"$3\" > $1.ext\n"
    "  openssl x509 -req -in $2 -CA ca.pem -CAkey ca.key -set_serial 0x$(openssl rand -hex 8) \\\n"
    "    -days 2 -extfile $1.ext -out $1.pem\n"
    "  openssl x509 -in $1.pem -outform DER -out $1.der\n"
    "}\n"
    "key ca.key\n"
    "openssl req -x509 -new -key ca.key -out ca.pem -days 2 -subj '/CN=fake CM test CA' \\\n"
    "  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign\n"
    "openssl x509 -in ca.pem -outform DER -out ca.der\n"
    "key server.key\n"
    "openssl req -new -key server.key -subj /CN=localhost -out server.csr\n"
    "sign server server.csr 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n"
    "extendedKeyUsage=serverAuth\\n'\n"
    "key officer.key\n"
    "openssl req -new -key officer.key -subj '/O=certflow/CN=officer' -out officer.csr\n"
    "sign officer officer.csr 'extendedKeyUsage=clientAuth\\n'\n"
    "openssl pkey -in officer.key -aes256 -passout pass:" OFFICER_PW " -out officer-enc.key\n"
    "key stranger.key\n"
    "key dev.key\n"
    "openssl req -new -key dev.key -subj '/O=Example/CN=device.example.test' -out dev.csr\n"
    "sign dev dev.csr 'subjectKeyIdentifier=hash\\n'\n"
    "openssl req -new -key dev.key -subj '/CN=someone else' -out devsubj.csr\n"
    "sign devsubj devsubj.csr 'subjectKeyIdentifier=hash\\n'\n"
    "key other.key\n"
    "openssl req -new -key other.key -subj '/O=Example/CN=device.example.test' -out other.csr\n"
    "sign other other.csr 'subjectKeyIdentifier=hash\\n'\n";

static const char *P(const char *name)
{
    static char bufs[8][128];
    static int next;
    char *b = bufs[next++ % 8];
    snprintf(b, sizeof(bufs[0]), "%s/%s", pki, name);
    return b;
}

static uint8_t *slurp(const char *name, size_t *len)
{
    uint8_t *data = NULL;
    size_t n = 0;
    char err[256];
    if (cf_read_file(P(name), 1 << 20, &data, &n, err, sizeof(err)))
        fail_msg("%s", err);
    if (len)
        *len = n;
    return data;
}

static int setup_pki(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    snprintf(pki, sizeof(pki), "/tmp/cf-cmrest-XXXXXX");
    if (!mkdtemp(pki))
        return -1;
    /* The script goes through the environment, so that no quoting of it is needed. */
    setenv("CF_TEST_PKI_SCRIPT", pki_script, 1);
    char *cmd = cf_xasprintf("sh -c \"$CF_TEST_PKI_SCRIPT\" pki '%s'", pki);
    int rc = system(cmd);
    free(cmd);
    if (rc != 0) {
        char *log = cf_xasprintf("cat '%s/openssl.log' >&2", pki);
        if (system(log) != 0)
            fprintf(stderr, "no openssl log\n");
        free(log);
        fprintf(stderr, "test PKI failed (%d)\n", rc);
        return -1;
    }
    return 0;
}

static int teardown_pki(void **state)
{
    (void)state;
    char *cmd = cf_xasprintf("rm -rf '%s'", pki);
    int rc = system(cmd);
    free(cmd);
    return rc == 0 ? 0 : -1;
}

/* ---- log capture ---- */

static struct cf_buf logs;

static void log_sink(enum cf_log_level level, const char *line, void *arg)
{
    (void)arg;
    cf_buf_printf(&logs, "%d %s\n", (int)level, line);
}

/* ---- the fake CM ---- */

enum fake_mode {
    FAKE_SIGNED,    /* -19 first, then the certificate for a valid signature */
    FAKE_VRO,       /* the certificate at once, as DER (server-side signing) */
    FAKE_PEM,       /* the certificate at once, as PEM chain with the CA first */
    FAKE_ERROR,     /* a CM error code (error_code, error_status) */
    FAKE_GARBLED,   /* 200 text/plain that is neither JSON nor a certificate */
    FAKE_HTML_500,  /* 500 with an HTML page */
    FAKE_HANG,      /* never answers */
    FAKE_OTHER_KEY, /* a certificate for another key */
};

struct hit {
    const char *certid;
    const char *file; /* DER certificate */
    const char *status;
};

struct fake {
    enum fake_mode mode;
    int error_code;
    int error_status;
    const char *error_msg;
    /* Search answers: hits, or a failure. */
    struct hit hits[4];
    int n_hits;
    int search_status;   /* 0: answer the hits; else this status with error -1 */
    int download_status; /* 0: answer the certificate; else this status with error -1 */
    bool search_garbled;
    /* What the fake saw. */
    int requests;
    int pkcs10_posts;
    int signed_posts;
    int signatures_ok;
    int searches;
    int downloads;
    int revokes;
    bool ski_ok;
    bool fields_ok;
    bool accept_ok;
    char last_query[512];
    char revoked_certid[64];
    char revoked_reason[8];
    char download_accept[128];
    struct cf_http_request *held;
};

static uv_loop_t loop;
static struct cf_http_server *server;
static int port;
static struct fake F;
static struct cf_ca_connector *conn;

static const char DATA_TO_SIGN[] = "fake-cm v1\nop=%s\nnonce=4711\n";

static char *b64(const uint8_t *p, size_t n)
{
    char *out = cf_xmalloc(4 * ((n + 2) / 3) + 1);
    int len = EVP_EncodeBlock((unsigned char *)out, p, (int)n);
    out[len] = '\0';
    return out;
}

static uint8_t *unb64(const char *s, size_t *outlen)
{
    BIO *b = BIO_push(BIO_new(BIO_f_base64()), BIO_new_mem_buf(s, -1));
    BIO_set_flags(b, BIO_FLAGS_BASE64_NO_NL);
    uint8_t *out = cf_xmalloc(strlen(s) + 1);
    int n = BIO_read(b, out, (int)strlen(s));
    BIO_free_all(b);
    *outlen = n > 0 ? (size_t)n : 0;
    return out;
}

/* A form field, percent-decoded; NULL when absent. The caller frees. */
static char *form_field(const struct cf_http_request *req, const char *name)
{
    char *body = cf_xstrndup((const char *)req->body, req->body_len);
    char *out = NULL;
    size_t nl = strlen(name);
    for (char *p = body; p && *p;) {
        char *amp = strchr(p, '&');
        if (amp)
            *amp = '\0';
        if (strncmp(p, name, nl) == 0 && p[nl] == '=') {
            struct cf_buf v;
            cf_buf_init(&v);
            for (const char *q = p + nl + 1; *q; q++) {
                if (*q == '%' && q[1] && q[2]) {
                    char hex[3] = {q[1], q[2], 0};
                    cf_buf_putc(&v, (char)strtol(hex, NULL, 16));
                    q += 2;
                } else {
                    cf_buf_putc(&v, *q == '+' ? ' ' : *q);
                }
            }
            out = cf_buf_steal(&v);
            break;
        }
        p = amp ? amp + 1 : NULL;
    }
    free(body);
    return out;
}

static void respond_cm(struct cf_http_request *req, int status, int code, const char *msg)
{
    cf_http_respond_json(req, status, json_pack("{s:i, s:s}", "error", code, "msg", msg));
}

/* A certs-only PKCS#7 of a certificate file and the test CA. The caller frees. */
static uint8_t *p7_of(const char *file, size_t *len)
{
    size_t n1, n2;
    uint8_t *c1 = slurp(file, &n1), *c2 = slurp("ca.der", &n2);
    const uint8_t *ders[2] = {c1, c2};
    size_t lens[2] = {n1, n2};
    uint8_t *out = NULL;
    assert_int_equal(cf_pkcs7_certs_only(ders, lens, 2, &out, len, NULL, 0), 0);
    free(c1);
    free(c2);
    return out;
}

/* Whether `sig_b64` is an attached CMS SignedData of exactly `tbs`, signed by the TLS client. */
static bool signature_ok(const char *sig_b64, const char *tbs, X509 *peer)
{
    size_t n;
    uint8_t *der = unb64(sig_b64, &n);
    const unsigned char *p = der;
    CMS_ContentInfo *cms = d2i_CMS_ContentInfo(NULL, &p, (long)n);
    bool ok = false;
    if (cms) {
        X509_STORE *st = X509_STORE_new();
        BIO *out = BIO_new(BIO_s_mem());
        /* The officer certificate is a TLS client certificate, not an S/MIME one: the fake
         * checks the signature and that the signer is the TLS client, as a CM does. */
        if (CMS_verify(cms, NULL, st, NULL, out, CMS_BINARY | CMS_NO_SIGNER_CERT_VERIFY) == 1) {
            char *content = NULL;
            long len = BIO_get_mem_data(out, &content);
            STACK_OF(X509) *signers = CMS_get0_signers(cms);
            ok = len == (long)strlen(tbs) && memcmp(content, tbs, (size_t)len) == 0 && signers &&
                 sk_X509_num(signers) == 1 && peer &&
                 X509_cmp(sk_X509_value(signers, 0), peer) == 0;
            sk_X509_free(signers);
        }
        BIO_free(out);
        X509_STORE_free(st);
    }
    CMS_ContentInfo_free(cms);
    free(der);
    ERR_clear_error();
    return ok;
}

/* The -19 answer with this fake's dataToSign for `op`. */
static void ask_signature(struct cf_http_request *req, const char *op)
{
    char tbs[128];
    snprintf(tbs, sizeof(tbs), DATA_TO_SIGN, op);
    char *enc = b64((const uint8_t *)tbs, strlen(tbs));
    cf_http_respond_json(req, 200,
                         json_pack("{s:i, s:s, s:s}", "error", -19, "msg",
                                   "Sign request and send again", "dataToSign", enc));
    free(enc);
}

static bool check_signature(struct cf_http_request *req, const char *op, const char *sig)
{
    char tbs[128];
    snprintf(tbs, sizeof(tbs), DATA_TO_SIGN, op);
    return signature_ok(sig, tbs, req->peer_cert);
}

static void fake_issue(struct cf_http_request *req)
{
    F.pkcs10_posts++;
    const char *ct = cf_http_header(req, "Content-Type");
    const char *accept = cf_http_header(req, "Accept");
    F.accept_ok = accept && strcmp(accept, "application/pkcs7-mime") == 0;
    char *pkcs10 = form_field(req, "pkcs10");
    char *procname = form_field(req, "procname");
    char *sig = form_field(req, "signature");
    size_t csr_len = 0, got_len = 0;
    uint8_t *csr_pem = slurp("dev.csr", &csr_len);
    struct cf_csr *csr = NULL;
    assert_int_equal(cf_csr_decode(csr_pem, csr_len, &csr, NULL, 0), 0);
    const uint8_t *want = cf_csr_der(csr, &csr_len);
    uint8_t *got = pkcs10 ? unb64(pkcs10, &got_len) : NULL;
    F.fields_ok = ct && strcmp(ct, "application/x-www-form-urlencoded") == 0 && got &&
                  got_len == csr_len && memcmp(got, want, csr_len) == 0 && procname &&
                  strcmp(procname, "server-tls") == 0;
    free(got);
    cf_csr_free(csr);
    free(csr_pem);

    const char *hdr[] = {"certId", "4242", NULL};
    if (F.mode == FAKE_SIGNED && !sig) {
        ask_signature(req, "pkcs10");
    } else if (F.mode == FAKE_SIGNED) {
        F.signed_posts++;
        if (!check_signature(req, "pkcs10", sig)) {
            respond_cm(req, 403, -17, "Bad signature");
        } else {
            F.signatures_ok++;
            size_t n;
            uint8_t *p7 = p7_of("dev.der", &n);
            cf_http_respond(req, 200, "application/pkcs7-mime", hdr, p7, n);
            free(p7);
        }
    } else if (F.mode == FAKE_VRO) {
        size_t n;
        uint8_t *der = slurp("dev.der", &n);
        cf_http_respond(req, 200, "application/pkix-cert", hdr, der, n);
        free(der);
    } else if (F.mode == FAKE_PEM) {
        size_t n1, n2;
        uint8_t *ca = slurp("ca.pem", &n1), *dev = slurp("dev.pem", &n2);
        struct cf_buf b;
        cf_buf_init(&b);
        cf_buf_append(&b, ca, n1);
        cf_buf_append(&b, dev, n2);
        cf_http_respond(req, 200, "application/pem-certificate-chain", hdr, b.data, b.len);
        cf_buf_free(&b);
        free(ca);
        free(dev);
    } else if (F.mode == FAKE_ERROR) {
        if (F.error_code == -17 && !sig)
            ask_signature(req, "pkcs10");
        else
            respond_cm(req, F.error_status, F.error_code, F.error_msg);
    } else if (F.mode == FAKE_GARBLED) {
        cf_http_respond(req, 200, "text/plain", NULL, "certificate follows shortly\n", 28);
    } else if (F.mode == FAKE_HTML_500) {
        static const char page[] = "<html><body>Internal Server Error</body></html>";
        cf_http_respond(req, 500, "text/html", NULL, page, sizeof(page) - 1);
    } else if (F.mode == FAKE_HANG) {
        F.held = req;
    } else if (F.mode == FAKE_OTHER_KEY) {
        size_t n;
        uint8_t *p7 = p7_of("other.der", &n);
        cf_http_respond(req, 200, "application/pkcs7-mime", hdr, p7, n);
        free(p7);
    }
    free(pkcs10);
    free(procname);
    free(sig);
}

static void fake_search(struct cf_http_request *req)
{
    F.searches++;
    cf_strlcpy(F.last_query, req->query, sizeof(F.last_query));
    char ski[128] = "";
    if (cf_http_query_param(req, "subjectKeyIdentifier", ski, sizeof(ski)) == 0) {
        size_t n;
        uint8_t *der = slurp("dev.der", &n);
        const unsigned char *p = der;
        X509 *x = d2i_X509(NULL, &p, (long)n);
        const ASN1_OCTET_STRING *id = X509_get0_subject_key_id(x);
        char hex[64] = "";
        for (int i = 0; id && i < ASN1_STRING_length(id) && i < 31; i++)
            snprintf(hex + 2 * i, 3, "%02X", ASN1_STRING_get0_data(id)[i]);
        F.ski_ok = id && strcasecmp(hex, ski) == 0;
        X509_free(x);
        free(der);
    }
    if (F.search_garbled) {
        cf_http_respond(req, 200, "text/html", NULL, "<html>login</html>", 18);
        return;
    }
    if (F.search_status) {
        respond_cm(req, F.search_status, -1, "database unavailable");
        return;
    }
    json_t *list = json_array();
    for (int i = 0; i < F.n_hits; i++)
        json_array_append_new(list, json_pack("{s:s, s:s}", "certid", F.hits[i].certid, "status",
                                              F.hits[i].status ? F.hits[i].status : "active"));
    cf_http_respond_json(req, 200,
                         json_pack("{s:i, s:s, s:i, s:o}", "error", 0, "msg", "OK", "searchHits",
                                   F.n_hits, "certificates", list));
}

static void fake_download(struct cf_http_request *req, const char *certid)
{
    F.downloads++;
    const char *accept = cf_http_header(req, "Accept");
    cf_strlcpy(F.download_accept, accept ? accept : "", sizeof(F.download_accept));
    if (F.download_status) {
        respond_cm(req, F.download_status, -1, "temporarily unavailable");
        return;
    }
    for (int i = 0; i < F.n_hits; i++) {
        if (strcmp(F.hits[i].certid, certid) != 0)
            continue;
        size_t n;
        if (accept && strcmp(accept, "application/pkix-cert") == 0) {
            uint8_t *der = slurp(F.hits[i].file, &n);
            cf_http_respond(req, 200, "application/pkix-cert", NULL, der, n);
            free(der);
        } else {
            uint8_t *p7 = p7_of(F.hits[i].file, &n);
            cf_http_respond(req, 200, "application/pkcs7-mime", NULL, p7, n);
            free(p7);
        }
        return;
    }
    respond_cm(req, 404, -14, "No such certificate");
}

static void fake_revoke(struct cf_http_request *req)
{
    F.revokes++;
    char *certid = form_field(req, "certid");
    char *reason = form_field(req, "reason");
    char *sig = form_field(req, "signature");
    if (!sig) {
        ask_signature(req, "revoke");
    } else if (!check_signature(req, "revoke", sig)) {
        respond_cm(req, 403, -17, "Bad signature");
    } else {
        F.signatures_ok++;
        cf_strlcpy(F.revoked_certid, certid ? certid : "", sizeof(F.revoked_certid));
        cf_strlcpy(F.revoked_reason, reason ? reason : "", sizeof(F.revoked_reason));
        respond_cm(req, 200, 0, "OK");
    }
    free(certid);
    free(reason);
    free(sig);
}

static void fake_handler(void *arg, struct cf_http_request *req)
{
    (void)arg;
    F.requests++;
    const char *prefix = "/pgwy/api/fake-handler";
    size_t pl = strlen(prefix);
    if (strncmp(req->path, prefix, pl) != 0) {
        respond_cm(req, 404, -1, "no such handler");
        return;
    }
    const char *path = req->path + pl;
    if (strcmp(req->method, "POST") == 0 && strcmp(path, "/certificates/pkcs10") == 0) {
        fake_issue(req);
    } else if (strcmp(req->method, "GET") == 0 && strcmp(path, "/certificates") == 0) {
        fake_search(req);
    } else if (strcmp(req->method, "POST") == 0 && strcmp(path, "/certificates/revoke") == 0) {
        fake_revoke(req);
    } else if (strcmp(req->method, "GET") == 0 && strncmp(path, "/certificates/", 14) == 0 &&
               strlen(path) > 23 && strcmp(path + strlen(path) - 9, "/download") == 0) {
        char id[64];
        snprintf(id, sizeof(id), "%.*s", (int)(strlen(path) - 23), path + 14);
        fake_download(req, id);
    } else {
        respond_cm(req, 404, -1, "not found");
    }
}

/* ---- per-test setup ---- */

static int setup(void **state)
{
    (void)state;
    memset(&F, 0, sizeof(F));
    cf_buf_init(&logs);
    cf_log_set_sink(log_sink, NULL);
    cf_log_set_level(CF_LOG_DEBUG);
    assert_int_equal(uv_loop_init(&loop), 0);
    struct cf_listener_config ls[1] = {{
        .kind = CF_LISTEN_TLS_CLIENT,
        .host = "127.0.0.1",
        .cert_file = P("server.pem"),
        .key_file = P("server.key"),
        .ca_file = P("ca.pem"),
    }};
    struct cf_http_server_config cfg = {
        .listeners = ls, .n_listeners = 1, .handler = fake_handler, .arg = NULL};
    char err[512] = "";
    if (cf_http_server_start(&loop, &cfg, &server, err, sizeof(err)) != 0)
        fail_msg("fake CM: %s", err);
    port = cf_http_listener_port(server, 0);
    struct cf_ca_connector_env env = {.loop = &loop, .ca_dir = pki};
    const struct cf_ca_connector_kind *kind = cf_ca_connector_kind("cm-rest");
    assert_non_null(kind);
    assert_int_equal(kind->create(&env, &conn, err, sizeof(err)), 0);
    return 0;
}

static void drain(void)
{
    for (int i = 0; i < 100 && uv_run(&loop, UV_RUN_NOWAIT); i++) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
}

static int teardown(void **state)
{
    (void)state;
    if (F.held) {
        cf_http_respond(F.held, 503, "text/plain", NULL, "bye", 3);
        F.held = NULL;
    }
    conn->ops->shutdown(conn);
    cf_http_server_close(server);
    uv_run(&loop, UV_RUN_DEFAULT);
    conn->ops->free(conn);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    cf_log_set_sink(NULL, NULL);
    cf_log_set_level(CF_LOG_INFO);
    cf_buf_free(&logs);
    return 0;
}

/* ---- requests ---- */

struct outcome {
    bool got;
    int calls;
    enum cf_ca_status st;
    char msg[2048];
    uint8_t *der;
    size_t der_len;
    uint8_t *p7;
    size_t p7_len;
    char *pem;
    char serial[128];
    bool replayed;
};

static struct outcome R;

static void outcome_clear(void)
{
    free(R.der);
    free(R.p7);
    free(R.pem);
    memset(&R, 0, sizeof(R));
}

static void on_done(void *arg, const struct cf_ca_conn_result *res)
{
    (void)arg;
    R.calls++;
    R.got = true;
    R.st = res->status;
    cf_strlcpy(R.msg, res->message ? res->message : "", sizeof(R.msg));
    if (getenv("CF_TEST_VERBOSE"))
        fprintf(stderr, "  outcome %d: %s\n", (int)res->status, R.msg);
    if (!res->status) {
        R.der = cf_xmemdup(res->der, res->der_len);
        R.der_len = res->der_len;
        R.p7 = cf_xmemdup(res->chain_p7, res->chain_p7_len);
        R.p7_len = res->chain_p7_len;
        R.pem = cf_xstrdup(res->pem);
        cf_strlcpy(R.serial, res->info->serial, sizeof(R.serial));
        R.replayed = res->replayed;
    }
}

static void on_revoked(void *arg, enum cf_ca_status st, const char *message)
{
    (void)arg;
    R.calls++;
    R.got = true;
    R.st = st;
    cf_strlcpy(R.msg, message ? message : "", sizeof(R.msg));
}

static void watchdog(uv_timer_t *t)
{
    (void)t;
}

/* Runs the loop until the outcome arrived, at most `ms`. */
static void wait_outcome(uint64_t ms)
{
    uv_timer_t tick;
    uv_timer_init(&loop, &tick);
    uv_timer_start(&tick, watchdog, 20, 20);
    uint64_t t0 = cf_mono_ms();
    while (!R.got && cf_mono_ms() - t0 < ms)
        uv_run(&loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&tick, NULL);
    uv_run(&loop, UV_RUN_NOWAIT);
    if (!R.got)
        fail_msg("no outcome within %llu ms", (unsigned long long)ms);
    assert_int_equal(R.calls, 1);
}

static json_t *settings_for(int p, const char *key, const char *password)
{
    char *url = cf_xasprintf("https://127.0.0.1:%d/pgwy/api/fake-handler/", p);
    json_t *s =
        json_pack("{s:s, s:s, s:s, s:s, s:s, s:i}", "url", url, "procedure", "server-tls", "cert",
                  P("officer.pem"), "key", P(key), "trusted", P("ca.pem"), "timeoutMs", 10000);
    if (password)
        json_object_set_new(s, "keyPassword", json_string(password));
    free(url);
    return s;
}

struct reqdata {
    json_t *settings;
    uint8_t *csr;
    size_t csr_len;
    uint8_t *known;
    size_t known_len;
    struct cf_ca_conn_request req;
};

static void reqdata_init(struct reqdata *d, json_t *settings, const char *csr_file, int attempt)
{
    memset(d, 0, sizeof(*d));
    d->settings = settings;
    d->csr = slurp(csr_file, &d->csr_len);
    d->req = (struct cf_ca_conn_request){
        .tenant_id = "t1",
        .template_name = "cm",
        .settings = settings,
        .csr = d->csr,
        .csr_len = d->csr_len,
        .idempotency_key = "certflow-1-Task_issue-1",
        .attempt = attempt,
    };
}

static void reqdata_free(struct reqdata *d)
{
    json_decref(d->settings);
    free(d->csr);
    free(d->known);
}

/* Issues with the settings and CSR and waits for the outcome. */
static void issue_and_wait(struct reqdata *d, uint64_t ms)
{
    outcome_clear();
    assert_int_equal(conn->ops->issue(conn, &d->req, on_done, NULL), 0);
    assert_false(R.got); /* never from inside issue() */
    wait_outcome(ms);
}

static int count_certs(const uint8_t *p7der, size_t len)
{
    const unsigned char *p = p7der;
    PKCS7 *p7 = d2i_PKCS7(NULL, &p, (long)len);
    int n = p7 && PKCS7_type_is_signed(p7) && p7->d.sign->cert ? sk_X509_num(p7->d.sign->cert) : -1;
    PKCS7_free(p7);
    return n;
}

static bool p7_first_is(const uint8_t *p7der, size_t len, const char *file)
{
    const unsigned char *p = p7der;
    PKCS7 *p7 = d2i_PKCS7(NULL, &p, (long)len);
    size_t n;
    uint8_t *want = slurp(file, &n);
    bool same = false;
    if (p7 && PKCS7_type_is_signed(p7) && sk_X509_num(p7->d.sign->cert) > 0) {
        unsigned char *d = NULL;
        int dl = i2d_X509(sk_X509_value(p7->d.sign->cert, 0), &d);
        same = dl == (int)n && memcmp(d, want, n) == 0;
        OPENSSL_free(d);
    }
    free(want);
    PKCS7_free(p7);
    return same;
}

static bool der_is(const char *file)
{
    size_t n;
    uint8_t *want = slurp(file, &n);
    bool same = R.der && R.der_len == n && memcmp(R.der, want, n) == 0;
    free(want);
    return same;
}

static bool logs_have(const char *s)
{
    return logs.data && strstr(logs.data, s) != NULL;
}

/* Whether a line of this level has `s` in it. */
static bool logs_have_at(enum cf_log_level level, const char *s)
{
    char prefix[8];
    snprintf(prefix, sizeof(prefix), "%d ", (int)level);
    for (const char *line = logs.data; line && *line;) {
        const char *end = strchr(line, '\n');
        size_t n = end ? (size_t)(end - line) : strlen(line);
        char *l = cf_xstrndup(line, n);
        bool hit = strncmp(l, prefix, strlen(prefix)) == 0 && strstr(l, s);
        free(l);
        if (hit)
            return true;
        line = end ? end + 1 : NULL;
    }
    return false;
}

/* ====================================================================================== */

static void test_kind_and_settings(void **state)
{
    (void)state;
    const struct cf_ca_connector_kind *k = cf_ca_connector_kind("cm-rest");
    assert_non_null(k);
    assert_true(k->available);
    assert_string_equal(k->secret_fields[0], "keyPassword");
    assert_null(k->secret_fields[1]);
    char why[256];
    assert_int_equal(k->supports_override(NULL, why, sizeof(why)), 0);

    char err[512];
    json_t *s = settings_for(443, "officer.key", NULL);
    assert_int_equal(k->check_settings(s, err, sizeof(err)), 0);
    bool unavailable = true;
    assert_int_equal(cf_ca_template_check("cm-rest", s, NULL, &unavailable, err, sizeof(err)), 0);
    assert_false(unavailable);

    static const char *const required[] = {"url", "procedure", "cert", "key"};
    for (size_t i = 0; i < CF_ARRAY_LEN(required); i++) {
        json_t *c = json_deep_copy(s);
        json_object_del(c, required[i]);
        err[0] = '\0';
        assert_int_equal(k->check_settings(c, err, sizeof(err)), CF_EINVAL);
        char *want = cf_xasprintf("settings.%s: the cm-rest connector needs it", required[i]);
        assert_string_equal(err, want);
        free(want);
        json_decref(c);
    }
    json_t *c = json_deep_copy(s);
    json_object_set_new(c, "url", json_string("http://ca.example.test:8080/pgwy/api"));
    assert_int_equal(k->check_settings(c, err, sizeof(err)), CF_EINVAL);
    assert_non_null(strstr(err, "settings.url"));
    assert_non_null(strstr(err, "must be an https:// address"));
    json_object_set_new(c, "url", json_string("ca.example.test:8444/pgwy/api"));
    assert_int_equal(k->check_settings(c, err, sizeof(err)), 0); /* https by default */
    json_object_set_new(c, "timeoutMs", json_integer(0));
    assert_int_equal(k->check_settings(c, err, sizeof(err)), CF_EINVAL);
    assert_non_null(strstr(err, "settings.timeoutMs"));
    json_object_del(c, "timeoutMs");
    json_object_set_new(c, "secret", json_string("x"));
    assert_int_equal(k->check_settings(c, err, sizeof(err)), CF_EINVAL);
    assert_string_equal(err, "settings.secret: the cm-rest connector has no such setting");
    json_decref(c);
    json_decref(s);
}

static void test_csr_errors_before_io(void **state)
{
    (void)state;
    struct reqdata d;
    reqdata_init(&d, settings_for(port, "officer.key", NULL), "dev.csr", 1);
    static const uint8_t garbage[] = "this is not a CSR";
    d.req.csr = garbage;
    d.req.csr_len = sizeof(garbage) - 1;
    issue_and_wait(&d, 5000);
    assert_int_equal(R.st, CF_CA_COMMON_ERROR);
    assert_non_null(strstr(R.msg, "the CSR cannot be sent to the CA at 127.0.0.1"));

    /* A CSR whose signature does not verify: one bit of the signature flipped. */
    struct cf_csr *csr = NULL;
    assert_int_equal(cf_csr_decode(d.csr, d.csr_len, &csr, NULL, 0), 0);
    size_t n;
    const uint8_t *csr_der = cf_csr_der(csr, &n);
    uint8_t *der = cf_xmemdup(csr_der, n);
    der[n - 3] ^= 0x01;
    cf_csr_free(csr);
    d.req.csr = der;
    d.req.csr_len = n;
    issue_and_wait(&d, 5000);
    assert_int_equal(R.st, CF_CA_COMMON_ERROR);
    free(der);

    /* Settings that the kind refuses are CommonError too, before any I/O. */
    json_object_set_new(d.settings, "url", json_string("http://127.0.0.1:1/pgwy/api"));
    d.req.csr = d.csr;
    d.req.csr_len = d.csr_len;
    issue_and_wait(&d, 5000);
    assert_int_equal(R.st, CF_CA_COMMON_ERROR);
    assert_non_null(strstr(R.msg, "certificate template 'cm': settings.url"));

    assert_int_equal(F.requests, 0);
    outcome_clear();
    reqdata_free(&d);
}

static void test_known_der_replayed_without_io(void **state)
{
    (void)state;
    struct reqdata d;
    reqdata_init(&d, settings_for(port, "officer.key", NULL), "dev.csr", 3);
    d.known = slurp("dev.der", &d.known_len);
    d.req.known_der = d.known;
    d.req.known_der_len = d.known_len;
    issue_and_wait(&d, 5000);
    assert_int_equal(R.st, CF_CA_OK);
    assert_true(R.replayed);
    assert_true(der_is("dev.der"));
    assert_int_equal(count_certs(R.p7, R.p7_len), 1);
    assert_non_null(strstr(R.pem, "-----BEGIN CERTIFICATE-----"));

    /* A stored certificate of another key is not handed out. */
    free(d.known);
    d.known = slurp("other.der", &d.known_len);
    d.req.known_der = d.known;
    d.req.known_der_len = d.known_len;
    issue_and_wait(&d, 5000);
    assert_int_equal(R.st, CF_CA_COMMON_ERROR);
    assert_non_null(strstr(R.msg, "already used for a certificate of another public key"));

    assert_int_equal(F.requests, 0);
    outcome_clear();
    reqdata_free(&d);
}

static void test_connection_refused(void **state)
{
    (void)state;
    /* A port that was free a moment ago: bound, then closed. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    socklen_t sl = sizeof(sa);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
    int closed = ntohs(sa.sin_port);
    close(fd);
    struct reqdata d;
    reqdata_init(&d, settings_for(closed, "officer.key", NULL), "dev.csr", 1);
    issue_and_wait(&d, 10000);
    assert_int_equal(R.st, CF_CA_CONNECTION_FAILED);
    char *want = cf_xasprintf("127.0.0.1:%d", closed);
    assert_non_null(strstr(R.msg, want));
    assert_non_null(strstr(R.msg, "cm-rest connector of template 'cm'"));
    free(want);
    outcome_clear();
    reqdata_free(&d);
}

static void test_issue_with_officer_signature(void **state)
{
    (void)state;
    F.mode = FAKE_SIGNED;
    struct reqdata d;
    reqdata_init(&d, settings_for(port, "officer.key", NULL), "dev.csr", 1);
    issue_and_wait(&d, 10000);
    if (R.st)
        fail_msg("%s", R.msg);
    assert_false(R.replayed);
    assert_true(der_is("dev.der"));
    assert_int_equal(F.pkcs10_posts, 2);
    assert_int_equal(F.signed_posts, 1);
    assert_int_equal(F.signatures_ok, 1);
    assert_true(F.fields_ok);
    assert_true(F.accept_ok);
    assert_int_equal(F.searches, 0); /* a first attempt does not search */
    assert_int_equal(count_certs(R.p7, R.p7_len), 2);
    assert_true(p7_first_is(R.p7, R.p7_len, "dev.der"));
    assert_non_null(strstr(R.pem, "-----BEGIN CERTIFICATE-----"));
    assert_true(logs_have("certid=4242"));
    outcome_clear();
    reqdata_free(&d);
}

static void test_tolerant_reader(void **state)
{
    (void)state;
    struct reqdata d;
    reqdata_init(&d, settings_for(port, "officer.key", NULL), "dev.csr", 1);
    /* A bare DER certificate (server-side signing: no handshake): the chain is built. */
    F.mode = FAKE_VRO;
    issue_and_wait(&d, 10000);
    if (R.st)
        fail_msg("%s", R.msg);
    assert_true(der_is("dev.der"));
    assert_int_equal(count_certs(R.p7, R.p7_len), 1);
    assert_int_equal(F.pkcs10_posts, 1);
    /* PEM with the CA first: the certificate of the CSR's key is the one handed out, and it
     * comes first in the chain. */
    F.mode = FAKE_PEM;
    issue_and_wait(&d, 10000);
    if (R.st)
        fail_msg("%s", R.msg);
    assert_true(der_is("dev.der"));
    assert_int_equal(count_certs(R.p7, R.p7_len), 2);
    assert_true(p7_first_is(R.p7, R.p7_len, "dev.der"));
    outcome_clear();
    reqdata_free(&d);
}

static void test_encrypted_officer_key(void **state)
{
    (void)state;
    F.mode = FAKE_SIGNED;
    struct reqdata d;
    reqdata_init(&d, settings_for(port, "officer-enc.key", OFFICER_PW), "dev.csr", 1);
    issue_and_wait(&d, 10000);
    if (R.st)
        fail_msg("%s", R.msg);
    assert_int_equal(F.signatures_ok, 1);

    /* A wrong password: the request cannot be made, and the password is nowhere. */
    reqdata_free(&d);
    reqdata_init(&d, settings_for(port, "officer-enc.key", "Wrong-pw-for-test"), "dev.csr", 1);
    issue_and_wait(&d, 10000);
    assert_int_equal(R.st, CF_CA_CONNECTION_FAILED);
    assert_null(strstr(R.msg, "Wrong-pw-for-test"));
    assert_null(strstr(R.msg, OFFICER_PW));
    assert_false(logs_have("Wrong-pw-for-test"));
    assert_false(logs_have(OFFICER_PW));
    assert_int_equal(F.signatures_ok, 1);
    outcome_clear();
    reqdata_free(&d);
}

static void test_cm_error_classes(void **state)
{
    (void)state;
    static const struct {
        int code, status;
        const char *msg;
        enum cf_ca_status st;
    } cases[] = {
        {-7, 400, "Missing field procname", CF_CA_COMMON_ERROR},
        {-8, 400, "pkcs10 is not Base64", CF_CA_COMMON_ERROR},
        {-14, 400, "Unknown procedure server-tls", CF_CA_REQUEST_FAILED},
        {-15, 403, "Officer lacks the role", CF_CA_REQUEST_FAILED},
        {-17, 403, "Bad signature", CF_CA_REQUEST_FAILED},
        {-1, 400, "General error", CF_CA_REQUEST_FAILED},
        /* The CA cannot serve now: a retry may succeed. */
        {-1, 500, "General error", CF_CA_CONNECTION_FAILED},
        {-18, 502, "No connection to the CA", CF_CA_CONNECTION_FAILED},
        {-40, 429, "Too many requests", CF_CA_CONNECTION_FAILED},
    };
    F.mode = FAKE_ERROR;
    struct reqdata d;
    reqdata_init(&d, settings_for(port, "officer.key", NULL), "dev.csr", 1);
    for (size_t i = 0; i < CF_ARRAY_LEN(cases); i++) {
        F.error_code = cases[i].code;
        F.error_status = cases[i].status;
        F.error_msg = cases[i].msg;
        issue_and_wait(&d, 10000);
        assert_int_equal(R.st, cases[i].st);
        assert_non_null(strstr(R.msg, cases[i].msg));
        char *code = cf_xasprintf("CM error %d", cases[i].code);
        assert_non_null(strstr(R.msg, code));
        free(code);
    }
    outcome_clear();
    reqdata_free(&d);
}

static void test_garbled_answers(void **state)
{
    (void)state;
    struct reqdata d;
    reqdata_init(&d, settings_for(port, "officer.key", NULL), "dev.csr", 1);
    F.mode = FAKE_GARBLED;
    issue_and_wait(&d, 10000);
    assert_int_equal(R.st, CF_CA_CONNECTION_FAILED);
    assert_non_null(strstr(R.msg, "neither Certificate Manager's JSON nor a certificate"));
    assert_non_null(strstr(R.msg, "HTTP 200"));
    F.mode = FAKE_HTML_500;
    issue_and_wait(&d, 10000);
    assert_int_equal(R.st, CF_CA_CONNECTION_FAILED);
    assert_non_null(strstr(R.msg, "HTTP 500 (text/html"));
    outcome_clear();
    reqdata_free(&d);
}

static void test_hanging_server_times_out(void **state)
{
    (void)state;
    F.mode = FAKE_HANG;
    struct reqdata d;
    reqdata_init(&d, settings_for(port, "officer.key", NULL), "dev.csr", 1);
    json_object_set_new(d.settings, "timeoutMs", json_integer(400));
    uint64_t t0 = cf_mono_ms();
    issue_and_wait(&d, 10000);
    uint64_t took = cf_mono_ms() - t0;
    assert_int_equal(R.st, CF_CA_CONNECTION_FAILED);
    assert_non_null(F.held);
    assert_true(took >= 350 && took < 5000);
    /* The request was sent: a retry must search first. */
    assert_non_null(strstr(R.msg, "a retry first searches"));
    outcome_clear();
    reqdata_free(&d);
}

static void test_certificate_for_another_key(void **state)
{
    (void)state;
    F.mode = FAKE_OTHER_KEY;
    struct reqdata d;
    reqdata_init(&d, settings_for(port, "officer.key", NULL), "dev.csr", 1);
    issue_and_wait(&d, 10000);
    assert_int_equal(R.st, CF_CA_CONNECTION_FAILED);
    assert_non_null(strstr(R.msg, "does not certify the CSR's public key"));
    assert_non_null(strstr(R.msg, "4242"));
    assert_true(logs_have_at(CF_LOG_WARN, "none of them for the CSR's key"));
    outcome_clear();
    reqdata_free(&d);
}

static void test_retry_finds_the_issued_certificate(void **state)
{
    (void)state;
    F.mode = FAKE_SIGNED;
    /* Newest first: a revoked certificate of the key (which the search should not have let
     * through), one of the key for another subject, one of another key, then the one issued for
     * this request. */
    F.hits[0] = (struct hit){"12", "dev.der", "revoked"};
    F.hits[1] = (struct hit){"11", "devsubj.der", NULL};
    F.hits[2] = (struct hit){"10", "other.der", NULL};
    F.hits[3] = (struct hit){"9", "dev.der", NULL};
    F.n_hits = 4;
    struct reqdata d;
    reqdata_init(&d, settings_for(port, "officer.key", NULL), "dev.csr", 2);
    issue_and_wait(&d, 10000);
    if (R.st)
        fail_msg("%s", R.msg);
    assert_true(der_is("dev.der"));
    assert_int_equal(F.pkcs10_posts, 0); /* nothing sent again */
    assert_int_equal(F.searches, 1);
    assert_int_equal(F.downloads, 3);
    assert_true(F.ski_ok);
    assert_non_null(strstr(F.last_query, "isNotRevoked=true"));
    /* The certificate came with its chain. */
    assert_int_equal(count_certs(R.p7, R.p7_len), 2);
    assert_true(p7_first_is(R.p7, R.p7_len, "dev.der"));
    assert_true(logs_have("certid=9 "));
    outcome_clear();
    reqdata_free(&d);
}

static void test_retry_without_match_sends(void **state)
{
    (void)state;
    F.mode = FAKE_SIGNED;
    F.hits[0] = (struct hit){"11", "devsubj.der", NULL};
    F.n_hits = 1;
    struct reqdata d;
    reqdata_init(&d, settings_for(port, "officer.key", NULL), "dev.csr", 2);
    issue_and_wait(&d, 10000);
    if (R.st)
        fail_msg("%s", R.msg);
    assert_int_equal(F.searches, 1);
    assert_int_equal(F.downloads, 1);
    assert_int_equal(F.pkcs10_posts, 2);
    assert_int_equal(F.signatures_ok, 1);
    outcome_clear();
    reqdata_free(&d);
}

static void test_retry_never_resends_when_search_fails(void **state)
{
    (void)state;
    F.mode = FAKE_SIGNED;
    struct reqdata d;
    reqdata_init(&d, settings_for(port, "officer.key", NULL), "dev.csr", 2);
    F.search_status = 500;
    issue_and_wait(&d, 10000);
    assert_int_equal(R.st, CF_CA_CONNECTION_FAILED);
    assert_non_null(strstr(R.msg, "database unavailable"));
    assert_non_null(strstr(R.msg, "not sent again"));
    F.search_status = 0;
    F.search_garbled = true;
    issue_and_wait(&d, 10000);
    assert_int_equal(R.st, CF_CA_CONNECTION_FAILED);
    /* A hit that cannot be downloaded might be the one: no resend either. */
    F.search_garbled = false;
    F.hits[0] = (struct hit){"12", "dev.der", NULL};
    F.n_hits = 1;
    F.download_status = 503;
    issue_and_wait(&d, 10000);
    assert_int_equal(R.st, CF_CA_CONNECTION_FAILED);
    assert_int_equal(F.pkcs10_posts, 0);
    outcome_clear();
    reqdata_free(&d);
}

static void test_revoke(void **state)
{
    (void)state;
    F.hits[0] = (struct hit){"20", "other.der", NULL};
    F.hits[1] = (struct hit){"21", "dev.der", NULL};
    F.n_hits = 2;
    json_t *s = settings_for(port, "officer.key", NULL);
    size_t n;
    uint8_t *der = slurp("dev.der", &n);
    struct cf_ca_conn_revoke rv = {.tenant_id = "t1",
                                   .template_name = "cm",
                                   .settings = s,
                                   .der = der,
                                   .der_len = n,
                                   .reason = 4};
    outcome_clear();
    assert_non_null(conn->ops->revoke);
    assert_int_equal(conn->ops->revoke(conn, &rv, on_revoked, NULL), 0);
    wait_outcome(10000);
    if (R.st)
        fail_msg("%s", R.msg);
    assert_string_equal(F.revoked_certid, "21");
    assert_string_equal(F.revoked_reason, "4");
    assert_int_equal(F.signatures_ok, 1);
    assert_string_equal(F.download_accept, "application/pkix-cert");
    /* The search was by the certificate's serial. */
    char serial[64];
    struct cf_cert_info info;
    assert_int_equal(cf_cert_info_from_der(der, n, &info, NULL, 0), 0);
    snprintf(serial, sizeof(serial), "certificateSerialNumber=%s", info.serial);
    cf_cert_info_clear(&info);
    assert_non_null(strstr(F.last_query, serial));

    /* Already revoked at the CA (a retry whose answer was lost): done, nothing sent. */
    F.hits[1].status = "revoked";
    int revokes = F.revokes;
    outcome_clear();
    assert_int_equal(conn->ops->revoke(conn, &rv, on_revoked, NULL), 0);
    wait_outcome(10000);
    assert_int_equal(R.st, CF_CA_OK);
    assert_int_equal(F.revokes, revokes);

    /* Unknown to the CA. */
    F.n_hits = 1;
    outcome_clear();
    assert_int_equal(conn->ops->revoke(conn, &rv, on_revoked, NULL), 0);
    wait_outcome(10000);
    assert_int_equal(R.st, CF_CA_REQUEST_FAILED);
    assert_non_null(strstr(R.msg, "has no certificate with serial"));

    /* A reason CM does not take: CommonError, no I/O. */
    int before = F.requests;
    rv.reason = 2;
    outcome_clear();
    assert_int_equal(conn->ops->revoke(conn, &rv, on_revoked, NULL), 0);
    wait_outcome(10000);
    assert_int_equal(R.st, CF_CA_COMMON_ERROR);
    assert_int_equal(F.requests, before);
    outcome_clear();
    free(der);
    json_decref(s);
}

/* Fetches by serial and waits for the outcome. */
static void fetch_and_wait(const struct cf_ca_conn_fetch *f)
{
    outcome_clear();
    assert_int_equal(conn->ops->fetch(conn, f, on_done, NULL), 0);
    assert_false(R.got); /* never from inside fetch() */
    wait_outcome(10000);
}

static void test_fetch(void **state)
{
    (void)state;
    /* The fake lists every hit for any serial: the first is another certificate, which the
     * connector must pass over by its serial. A revoked certificate is fetched all the same. */
    F.hits[0] = (struct hit){"30", "other.der", NULL};
    F.hits[1] = (struct hit){"31", "dev.der", "revoked"};
    F.n_hits = 2;
    json_t *s = settings_for(port, "officer.key", NULL);
    size_t n;
    uint8_t *der = slurp("dev.der", &n);
    struct cf_cert_info info;
    assert_int_equal(cf_cert_info_from_der(der, n, &info, NULL, 0), 0);
    struct cf_ca_conn_fetch f = {
        .tenant_id = "t1", .template_name = "cm", .settings = s, .serial = info.serial};
    assert_non_null(conn->ops->fetch);
    fetch_and_wait(&f);
    if (R.st)
        fail_msg("%s", R.msg);
    assert_int_equal(R.der_len, n);
    assert_memory_equal(R.der, der, n);
    assert_string_equal(R.serial, info.serial);
    assert_false(R.replayed);
    assert_non_null(strstr(R.pem, "-----BEGIN CERTIFICATE-----"));
    assert_int_equal(count_certs(R.p7, R.p7_len), 2);
    assert_true(p7_first_is(R.p7, R.p7_len, "dev.der"));
    assert_string_equal(F.download_accept, "application/pkcs7-mime");
    assert_int_equal(F.downloads, 2);
    char q[96];
    snprintf(q, sizeof(q), "certificateSerialNumber=%s&", info.serial);
    assert_non_null(strstr(F.last_query, q));
    assert_int_equal(F.signatures_ok, 0); /* reading is not signed */

    /* Lower case with leading zeros is the same serial, searched for as upper-case hex. */
    char lower[160] = "000";
    for (size_t i = 0; info.serial[i]; i++)
        lower[3 + i] = (char)tolower((unsigned char)info.serial[i]);
    f.serial = lower;
    fetch_and_wait(&f);
    if (R.st)
        fail_msg("%s", R.msg);
    assert_string_equal(R.serial, info.serial);
    assert_non_null(strstr(F.last_query, q));
    f.serial = info.serial;

    /* Not at the CA: RequestFailed. */
    F.n_hits = 0;
    fetch_and_wait(&f);
    assert_int_equal(R.st, CF_CA_REQUEST_FAILED);
    assert_non_null(strstr(R.msg, "has no certificate with serial"));
    assert_non_null(strstr(R.msg, info.serial));

    /* Only certificates of another serial for the search: a garbled CA. */
    F.n_hits = 1;
    fetch_and_wait(&f);
    assert_int_equal(R.st, CF_CA_CONNECTION_FAILED);
    assert_non_null(strstr(R.msg, "other serials"));

    /* A search answered with HTML, a download that fails: ConnectionFailed. */
    F.hits[0] = (struct hit){"31", "dev.der", NULL};
    F.search_garbled = true;
    fetch_and_wait(&f);
    assert_int_equal(R.st, CF_CA_CONNECTION_FAILED);
    assert_non_null(strstr(R.msg, "answered a search with HTTP 200"));
    F.search_garbled = false;
    F.download_status = 503;
    fetch_and_wait(&f);
    assert_int_equal(R.st, CF_CA_CONNECTION_FAILED);
    assert_non_null(strstr(R.msg, "temporarily unavailable"));
    F.download_status = 0;

    /* Serial text that is not a serial: CommonError, no I/O. */
    int before = F.requests;
    const char *bad[] = {"", "12:34", "0x1F", "XYZ", "1F 2E", NULL};
    for (size_t i = 0; i < CF_ARRAY_LEN(bad); i++) {
        f.serial = bad[i];
        fetch_and_wait(&f);
        assert_int_equal(R.st, CF_CA_COMMON_ERROR);
        assert_non_null(strstr(R.msg, "is not hexadecimal"));
    }
    char toolong[200];
    memset(toolong, 'A', sizeof(toolong) - 1);
    toolong[sizeof(toolong) - 1] = '\0';
    f.serial = toolong;
    fetch_and_wait(&f);
    assert_int_equal(R.st, CF_CA_COMMON_ERROR);
    assert_int_equal(F.requests, before);
    outcome_clear();
    cf_cert_info_clear(&info);
    free(der);
    json_decref(s);
}

static void test_shutdown_ends_requests(void **state)
{
    (void)state;
    F.mode = FAKE_HANG;
    struct reqdata d;
    reqdata_init(&d, settings_for(port, "officer.key", NULL), "dev.csr", 1);
    outcome_clear();
    assert_int_equal(conn->ops->issue(conn, &d.req, on_done, NULL), 0);
    uint64_t t0 = cf_mono_ms();
    while (!F.held && cf_mono_ms() - t0 < 10000)
        uv_run(&loop, UV_RUN_NOWAIT);
    assert_non_null(F.held);
    assert_false(R.got);
    conn->ops->shutdown(conn);
    wait_outcome(5000);
    assert_int_equal(R.st, CF_CA_CONNECTION_FAILED);
    assert_non_null(strstr(R.msg, "certflow stopped"));
    /* A closed connector takes no new request. */
    outcome_clear();
    assert_int_equal(conn->ops->issue(conn, &d.req, on_done, NULL), CF_ESTATE);
    drain();
    assert_false(R.got);
    reqdata_free(&d);
}

/* ====================================================================================== */
/* The connector as a command, for tests/integration/cm-rest.sh                            */
/* ====================================================================================== */

/*
 * `test_cmrest --drive issue SETTINGS.json CSR ATTEMPT`, `--drive revoke SETTINGS.json DER
 * REASON` and `--drive fetch SETTINGS.json SERIAL` run one request of the real connector against
 * a real server (certflowd in the integration test), which no process can make yet: revocations
 * and fetches have no task, and a retried issue is otherwise only reached through a crash. Prints
 * `status=N` (and for an issue `serial=S replayed=B`, for a fetch `serial=S chain=N`) or the
 * message; exits 0 when the request succeeded.
 */
static int drive_fetch(json_t *settings, const char *serial)
{
    uv_loop_t l;
    uv_loop_init(&l);
    struct cf_ca_connector_env env = {.loop = &l, .ca_dir = "/nonexistent"};
    struct cf_ca_connector *c = NULL;
    char err[512] = "";
    if (cf_ca_connector_kind("cm-rest")->create(&env, &c, err, sizeof(err)) != 0) {
        fprintf(stderr, "--drive: %s\n", err);
        return 2;
    }
    memset(&R, 0, sizeof(R));
    struct cf_ca_conn_fetch req = {
        .tenant_id = "ra", .template_name = "driven", .settings = settings, .serial = serial};
    int rc = c->ops->fetch(c, &req, on_done, NULL);
    while (!rc && !R.got)
        uv_run(&l, UV_RUN_ONCE);
    if (rc)
        printf("not started: %s\n", cf_strerror(rc));
    else if (R.st)
        printf("status=%d %s\n", (int)R.st, R.msg);
    else
        printf("status=0 serial=%s chain=%d\n", R.serial, count_certs(R.p7, R.p7_len));
    int code = !rc && R.st == CF_CA_OK ? 0 : 1;
    outcome_clear();
    c->ops->shutdown(c);
    uv_run(&l, UV_RUN_DEFAULT);
    c->ops->free(c);
    uv_run(&l, UV_RUN_DEFAULT);
    return uv_loop_close(&l) == 0 ? code : 3;
}

static int drive(int argc, char **argv)
{
    bool is_fetch = argc == 3 && strcmp(argv[0], "fetch") == 0;
    if (!is_fetch &&
        (argc != 4 || (strcmp(argv[0], "issue") != 0 && strcmp(argv[0], "revoke") != 0))) {
        fprintf(stderr, "usage: --drive issue SETTINGS.json CSR ATTEMPT\n"
                        "       --drive revoke SETTINGS.json DER REASON\n"
                        "       --drive fetch SETTINGS.json SERIAL\n");
        return 2;
    }
    if (is_fetch) {
        json_error_t jerr;
        json_t *settings = json_load_file(argv[1], 0, &jerr);
        if (!settings) {
            fprintf(stderr, "--drive: %s\n", jerr.text);
            return 2;
        }
        int code = drive_fetch(settings, argv[2]);
        json_decref(settings);
        return code;
    }
    json_error_t jerr;
    json_t *settings = json_load_file(argv[1], 0, &jerr);
    uint8_t *data = NULL;
    size_t len = 0;
    char err[512] = "";
    if (!settings || cf_read_file(argv[2], 1 << 20, &data, &len, err, sizeof(err)) != 0) {
        fprintf(stderr, "--drive: %s\n", settings ? err : jerr.text);
        json_decref(settings);
        return 2;
    }
    long n = strtol(argv[3], NULL, 10);
    uv_loop_t l;
    uv_loop_init(&l);
    struct cf_ca_connector_env env = {.loop = &l, .ca_dir = "/nonexistent"};
    struct cf_ca_connector *c = NULL;
    if (cf_ca_connector_kind("cm-rest")->create(&env, &c, err, sizeof(err)) != 0) {
        fprintf(stderr, "--drive: %s\n", err);
        return 2;
    }
    memset(&R, 0, sizeof(R));
    int rc;
    if (strcmp(argv[0], "issue") == 0) {
        struct cf_ca_conn_request req = {
            .tenant_id = "ra",
            .template_name = "driven",
            .settings = settings,
            .csr = data,
            .csr_len = len,
            .idempotency_key = "driven-1",
            .attempt = (int)n,
        };
        rc = c->ops->issue(c, &req, on_done, NULL);
        while (!rc && !R.got)
            uv_run(&l, UV_RUN_ONCE);
    } else {
        struct cf_ca_conn_revoke req = {
            .tenant_id = "ra",
            .template_name = "driven",
            .settings = settings,
            .der = data,
            .der_len = len,
            .reason = (int)n,
        };
        rc = c->ops->revoke(c, &req, on_revoked, NULL);
        while (!rc && !R.got)
            uv_run(&l, UV_RUN_ONCE);
    }
    if (rc)
        printf("not started: %s\n", cf_strerror(rc));
    else if (R.st)
        printf("status=%d %s\n", (int)R.st, R.msg);
    else if (strcmp(argv[0], "issue") == 0)
        printf("status=0 serial=%s replayed=%s\n", R.serial, R.replayed ? "true" : "false");
    else
        printf("status=0\n");
    int code = !rc && R.st == CF_CA_OK ? 0 : 1;
    outcome_clear();
    c->ops->shutdown(c);
    uv_run(&l, UV_RUN_DEFAULT);
    c->ops->free(c);
    uv_run(&l, UV_RUN_DEFAULT);
    code = uv_loop_close(&l) == 0 ? code : 3;
    free(data);
    json_decref(settings);
    return code;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--drive") == 0)
        return drive(argc - 2, argv + 2);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kind_and_settings),
        cmocka_unit_test_setup_teardown(test_csr_errors_before_io, setup, teardown),
        cmocka_unit_test_setup_teardown(test_known_der_replayed_without_io, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connection_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_issue_with_officer_signature, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tolerant_reader, setup, teardown),
        cmocka_unit_test_setup_teardown(test_encrypted_officer_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cm_error_classes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_garbled_answers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hanging_server_times_out, setup, teardown),
        cmocka_unit_test_setup_teardown(test_certificate_for_another_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_finds_the_issued_certificate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_without_match_sends, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_never_resends_when_search_fails, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_revoke, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fetch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shutdown_ends_requests, setup, teardown),
    };
    return cmocka_run_group_tests_name("cm-rest connector", tests, setup_pki, teardown_pki);
}
