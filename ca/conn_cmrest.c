/*
 * The "cm-rest" connector: certificates from Nexus Certificate Manager's REST API, in the subset
 * that docs/cm-rest.md fixes (issue from PKCS#10, search, download, revoke), from a real CM or from
 * certflowd, which serves the same subset from its embedded CA. The connector authenticates with
 * an officer's certificate (TLS client authentication) and signs write requests with the
 * officer's key when the CA asks for it (the dataToSign handshake: an attached CMS SignedData of
 * the bytes the CA gave, sent again with the same request). Revoking and fetching a certificate
 * by serial number share one path: search by serial, download each hit, take the one that is
 * the certificate asked for.
 *
 * No double issuance (reliability.md R6): a request that may have reached the CA before (attempt
 * > 1) first searches the CA for a certificate of the CSR's key (by subject key identifier),
 * downloads each hit and takes the one whose key and subject are the CSR's; only when there is
 * none is the request sent. When the search cannot be made the request fails as
 * CaConnectionFailed rather than risk a second certificate. A certificate the CA returns is
 * handed out only when it certifies the CSR's key.
 *
 * Threads: HTTP runs on the loop through cf_httpc (engine/net/client.h), created on the first
 * request that needs the network and closed at shutdown. Reading the officer's files and signing
 * run on the libuv thread pool: they are file I/O and, for RSA officers, a private-key operation
 * of several milliseconds, which DESIGN.md §3 keeps off the loop whatever the key type. The
 * officer's certificate and decrypted key are cached with their files' identity and mtime, under
 * a mutex, so a changed file is read again.
 *
 * What it leaves to others: templates, the idempotency ledger and storing certificates are
 * ca/service.c's; the TLS client certificate itself is presented by cf_httpc from the same files.
 * Secrets: keyPassword is handed to cf_httpc and OpenSSL and never appears in a message or a log.
 */
#include "ca/remote.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/bio.h>
#include <openssl/cms.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/pkcs7.h>
#include <openssl/x509.h>

#include "base/base.h"
#include "net/client.h"

/* ---- the kind ---- */

static const struct cf__ca_field fields[] = {
    {"url", CF_CA_F_STRING, true, 0, 0, NULL},
    {"procedure", CF_CA_F_STRING, true, 0, 0, NULL},
    {"cert", CF_CA_F_FILE, true, 0, 0, NULL},
    {"key", CF_CA_F_FILE, true, 0, 0, NULL},
    {"keyPassword", CF_CA_F_STRING, false, 0, 0, NULL},
    {"trusted", CF_CA_F_FILE, false, 0, 0, NULL},
    {"timeoutMs", CF_CA_F_INT, false, 1, 600000, NULL},
    {NULL, CF_CA_F_STRING, false, 0, 0, NULL},
};

static const char *const secrets[] = {"keyPassword", NULL};

static int parse_url(const json_t *settings, struct cf__ca_endpoint *ep, char *err, size_t errlen)
{
    return cf__ca_parse_endpoint("url", cf__ca_setting_str(settings, "url", ""), true, true, ep,
                                 err, errlen);
}

static int check(const json_t *settings, char *err, size_t errlen)
{
    int rc = cf__ca_check_fields("cm-rest", settings, fields, err, errlen);
    if (rc)
        return rc;
    struct cf__ca_endpoint ep;
    return parse_url(settings, &ep, err, errlen);
}

static int no_override(const json_t *settings, char *why, size_t whylen)
{
    (void)settings;
    snprintf(why, whylen,
             "the cm-rest connector cannot carry a modified request (Certificate Manager's "
             "procedure decides the subject)");
    return 0;
}

static int create(const struct cf_ca_connector_env *env, struct cf_ca_connector **out, char *err,
                  size_t errlen);

const struct cf_ca_connector_kind cf__ca_kind_cm_rest = {
    .name = "cm-rest",
    .available = true,
    .secret_fields = secrets,
    .check_settings = check,
    .supports_override = no_override,
    .create = create,
};

/* ---- state ---- */

/* An officer's certificate (with any chain after it in the file) and decrypted key, as last read
 * from its files. */
struct officer {
    struct officer *next;
    char *cert_path;
    char *key_path;
    unsigned char pw_digest[32]; /* SHA-256 of the password, so that a cache hit needs it too */
    struct stat cert_st, key_st;
    X509 *cert;
    STACK_OF(X509) * extra;
    EVP_PKEY *key;
};

struct op;

struct conn {
    struct cf_ca_connector pub;
    uv_loop_t *loop;
    struct cf_httpc *http; /* NULL until the first request that needs it, and after shutdown */
    bool closing;
    struct op *ops;  /* under way, for shutdown() */
    uv_mutex_t lock; /* guards `officers`, which signing workers read */
    struct officer *officers;
};

enum phase {
    PH_START,   /* issue() returned; the first step runs from the loop */
    PH_SEARCH,  /* issue, attempt > 1: searching the CA for the CSR's key */
    PH_FETCH,   /* issue: downloading a search hit */
    PH_SUBMIT,  /* issue: POST /certificates/pkcs10 */
    PH_FIND,    /* revoke and fetch: searching the CA for the serial */
    PH_FETCH_R, /* revoke: downloading a search hit to compare it */
    PH_FETCH_S, /* fetch: downloading a search hit with its chain */
    PH_REVOKE,  /* revoke: POST /certificates/revoke */
    PH_SIGN,    /* a worker signs dataToSign */
};

/* One request (issue, revoke or fetch) from issue()/revoke()/fetch() to its `done`. */
struct op {
    struct conn *cn;
    struct op *prev, *next;
    enum phase phase;
    enum phase signing_for; /* PH_SUBMIT or PH_REVOKE */
    bool ready;             /* the outcome is decided; PH_START delivers it */
    bool signed_sent;       /* the request carrying `signature` went out */
    uv_timer_t start;       /* runs the first step; its close frees the op */

    const struct cf_ca_conn_request *req; /* issue */
    cf_ca_conn_done_fn done;
    const struct cf_ca_conn_revoke *rreq; /* revoke */
    cf_ca_conn_revoked_fn rdone;
    const struct cf_ca_conn_fetch *freq; /* fetch, which answers through `done` */
    void *arg;

    struct cf__ca_endpoint ep;
    char base[1400]; /* the url without a trailing '/' */
    char who[1800];  /* "the CA at host:port (cm-rest connector of template 'x')" */
    const char *procedure;
    uint64_t timeout_ms;
    /* Copies for the worker and for cf_httpc, valid for the op's life. */
    char *cert_path, *key_path, *password, *trusted;
    struct cf_httpc_tls tls;
    struct cf_csr *csr;
    char ski[41];     /* issue: hex SHA-1 of the CSR's subjectPublicKey */
    char serial[256]; /* revoke, fetch: the certificate's serial, as cf_cert_info writes it */

    /* The transfer under way. */
    char *url;
    struct cf_httpc_header hdrs[2];
    struct cf_httpc_xfer *xfer;

    /* Searching. */
    json_t *page; /* the last search answer */
    size_t hit;
    long offset;
    char certid[256];
    bool hit_revoked;
    int other_serial; /* fetch: hits downloaded whose certificate had another serial */

    /* Signing. */
    uv_work_t work;
    bool working;
    uint8_t *tbs;
    size_t tbs_len;
    char *sig_b64;
    int wrc;
    char werr[512];

    /* The outcome. */
    enum cf_ca_status st;
    char msg[2048];
    uint8_t *der;
    size_t der_len;
    struct cf_cert_info info;
    char *pem;
    uint8_t *p7;
    size_t p7_len;
    bool replayed;
};

/* ---- small helpers ---- */

/* Standard Base64 without line breaks; the caller frees. */
static char *b64_encode(const uint8_t *p, size_t n)
{
    char *out = cf_xmalloc(4 * ((n + 2) / 3) + 1);
    int len = EVP_EncodeBlock((unsigned char *)out, p, (int)n);
    out[len < 0 ? 0 : len] = '\0';
    return out;
}

/* Base64 with any white space in it (line breaks, as PEM bodies have); 0 or CF_EPARSE. */
static int b64_decode(const char *text, size_t n, uint8_t **out, size_t *outlen)
{
    char *clean = cf_xmalloc(n + 1);
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        char c = text[i];
        if (c == ' ' || c == '\t' || c == '\r' || c == '\n')
            continue;
        clean[m++] = c;
    }
    clean[m] = '\0';
    if (m == 0 || m % 4 != 0 || m > (size_t)1 << 30) {
        free(clean);
        return CF_EPARSE;
    }
    size_t pad = 0;
    while (pad < 2 && clean[m - 1 - pad] == '=')
        pad++;
    uint8_t *buf = cf_xmalloc(m / 4 * 3 + 1);
    int len = EVP_DecodeBlock(buf, (const unsigned char *)clean, (int)m);
    free(clean);
    if (len < 0 || (size_t)len < pad) {
        free(buf);
        return CF_EPARSE;
    }
    *out = buf;
    *outlen = (size_t)len - pad;
    return 0;
}

/* application/x-www-form-urlencoded and query strings: everything but RFC 3986's unreserved
 * characters percent-encoded. */
static void url_encode(struct cf_buf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '.' || c == '_' || c == '~') {
            cf_buf_putc(b, (char)c);
        } else {
            cf_buf_putc(b, '%');
            cf_buf_putc(b, hex[c >> 4]);
            cf_buf_putc(b, hex[c & 15]);
        }
    }
}

static const char *find_bytes(const uint8_t *hay, size_t n, const char *needle)
{
    size_t m = strlen(needle);
    for (size_t i = 0; m <= n && i <= n - m; i++)
        if (memcmp(hay + i, needle, m) == 0)
            return (const char *)hay + i;
    return NULL;
}

/* Text from a peer, for a message: at most `max` bytes, controls and non-ASCII as '?'. */
static void peer_text(char *out, size_t outlen, const char *s, size_t max)
{
    size_t n = 0;
    for (; s && *s && n < max && n + 1 < outlen; s++)
        out[n++] = ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f) ? '?' : *s;
    if (s && *s && n + 4 < outlen) {
        memcpy(out + n, "...", 3);
        n += 3;
    }
    out[n < outlen ? n : outlen - 1] = '\0';
}

/* The first line of OpenSSL's error queue, which is then cleared. */
static void ossl_reason(char *out, size_t outlen)
{
    unsigned long e = ERR_peek_last_error();
    if (e)
        ERR_error_string_n(e, out, outlen);
    else
        cf_strlcpy(out, "unknown reason", outlen);
    ERR_clear_error();
}

/* ---- certificates in an answer ---- */

/* The certificates of an answer, as DER, in the order received. */
struct certs {
    uint8_t **der;
    size_t *len;
    size_t n;
    bool p7; /* the answer was a DER certs-only PKCS#7, usable as the chain as it is */
};

static void certs_clear(struct certs *cs)
{
    for (size_t i = 0; i < cs->n; i++)
        free(cs->der[i]);
    free(cs->der);
    free(cs->len);
    memset(cs, 0, sizeof(*cs));
}

static void certs_add(struct certs *cs, X509 *x)
{
    unsigned char *d = NULL;
    int n = i2d_X509(x, &d);
    if (n <= 0)
        return;
    cs->der = cf_xrealloc(cs->der, (cs->n + 1) * sizeof(*cs->der));
    cs->len = cf_xrealloc(cs->len, (cs->n + 1) * sizeof(*cs->len));
    cs->der[cs->n] = cf_xmemdup(d, (size_t)n);
    cs->len[cs->n] = (size_t)n;
    cs->n++;
    OPENSSL_free(d);
}

static void certs_add_der(struct certs *cs, const uint8_t *p, size_t n)
{
    const unsigned char *q = p;
    X509 *x = d2i_X509(NULL, &q, (long)n);
    if (x && q == p + n)
        certs_add(cs, x);
    X509_free(x);
}

/* Adds the certificates of a DER PKCS#7 SignedData; returns whether it was a certs-only one (no
 * signers, no CRLs). */
static bool certs_add_p7(struct certs *cs, const uint8_t *p, size_t n)
{
    const unsigned char *q = p;
    PKCS7 *p7 = d2i_PKCS7(NULL, &q, (long)n);
    bool ok = p7 && q == p + n && PKCS7_type_is_signed(p7) && p7->d.sign;
    bool certs_only = ok && sk_PKCS7_SIGNER_INFO_num(p7->d.sign->signer_info) <= 0 &&
                      sk_X509_CRL_num(p7->d.sign->crl) <= 0;
    if (ok) {
        STACK_OF(X509) *sk = p7->d.sign->cert;
        for (int i = 0; sk && i < sk_X509_num(sk); i++)
            certs_add(cs, sk_X509_value(sk, i));
    }
    PKCS7_free(p7);
    return certs_only;
}

/*
 * A tolerant reader (docs/cm-rest.md): a DER PKCS#7 (the certificates of a SignedData), a DER
 * certificate, PEM text of CERTIFICATE and PKCS7 blocks, or Base64 of one of the DER forms.
 * 0, or CF_EPARSE when no certificate was found.
 */
static int certs_read(const uint8_t *p, size_t n, struct certs *cs, int depth)
{
    ERR_set_mark();
    if (n > 0 && p[0] == 0x30) {
        cs->p7 = certs_add_p7(cs, p, n) && cs->n > 0;
        if (!cs->n)
            certs_add_der(cs, p, n);
    } else if (n > 0 && n < INT32_MAX && find_bytes(p, n, "-----BEGIN ")) {
        BIO *b = BIO_new_mem_buf(p, (int)n);
        char *name = NULL, *hdr = NULL;
        unsigned char *data = NULL;
        long len = 0;
        while (b && PEM_read_bio(b, &name, &hdr, &data, &len)) {
            if (strcmp(name, PEM_STRING_X509) == 0 || strcmp(name, PEM_STRING_X509_OLD) == 0)
                certs_add_der(cs, data, (size_t)len);
            else if (strcmp(name, PEM_STRING_PKCS7) == 0 || strcmp(name, "CMS") == 0)
                certs_add_p7(cs, data, (size_t)len);
            OPENSSL_free(name);
            OPENSSL_free(hdr);
            OPENSSL_free(data);
        }
        BIO_free(b);
    } else if (n > 0 && depth == 0) {
        uint8_t *raw;
        size_t rawlen;
        if (b64_decode((const char *)p, n, &raw, &rawlen) == 0) {
            certs_read(raw, rawlen, cs, 1);
            free(raw);
        }
    }
    ERR_pop_to_mark();
    return cs->n ? 0 : CF_EPARSE;
}

/* Whether certificate `der` has the CSR's subject (as encoded names compare). */
static bool same_subject(const uint8_t *der, size_t len, const struct cf_csr *csr)
{
    const unsigned char *q = der;
    X509 *x = d2i_X509(NULL, &q, (long)len);
    bool same = x && X509_NAME_cmp(X509_get_subject_name(x), cf_csr_subject(csr)) == 0;
    X509_free(x);
    return same;
}

/* ---- the outcome ---- */

static void op_free(struct op *o)
{
    cf_csr_free(o->csr);
    free(o->cert_path);
    free(o->key_path);
    if (o->password) {
        OPENSSL_cleanse(o->password, strlen(o->password));
        free(o->password);
    }
    free(o->trusted);
    free(o->url);
    json_decref(o->page);
    free(o->tbs);
    free(o->sig_b64);
    free(o->der);
    cf_cert_info_clear(&o->info);
    free(o->pem);
    free(o->p7);
    free(o);
}

static void op_closed(uv_handle_t *h)
{
    op_free(h->data);
}

/* Delivers the outcome and frees the op. Nothing of the connector is touched after `done`, which
 * may free it. */
static void finish(struct op *o)
{
    struct conn *cn = o->cn;
    if (o->prev)
        o->prev->next = o->next;
    else
        cn->ops = o->next;
    if (o->next)
        o->next->prev = o->prev;
    if (o->rdone) {
        o->rdone(o->arg, o->st, o->st ? o->msg : NULL);
    } else {
        struct cf_ca_conn_result res = {.status = o->st, .message = o->st ? o->msg : NULL};
        if (!o->st) {
            res.der = o->der;
            res.der_len = o->der_len;
            res.info = &o->info;
            res.pem = o->pem;
            res.chain_p7 = o->p7;
            res.chain_p7_len = o->p7_len;
            res.replayed = o->replayed;
        }
        o->done(o->arg, &res);
    }
    uv_close((uv_handle_t *)&o->start, op_closed);
}

static void set_fail(struct op *o, enum cf_ca_status st, const char *fmt, ...) CF_PRINTF(3, 4);
static void set_fail(struct op *o, enum cf_ca_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(o->msg, sizeof(o->msg), fmt, ap);
    va_end(ap);
    o->st = st;
}

static void fail(struct op *o, enum cf_ca_status st, const char *fmt, ...) CF_PRINTF(3, 4);
static void fail(struct op *o, enum cf_ca_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(o->msg, sizeof(o->msg), fmt, ap);
    va_end(ap);
    o->st = st;
    finish(o);
}

/*
 * Fills the op's result from the certificates of an answer: `leaf` is the one that certifies the
 * CSR's key. The chain is the answer itself when it was a PKCS#7 starting with the leaf, else a
 * certs-only PKCS#7 of the leaf followed by the other certificates in the order received.
 */
static int set_result(struct op *o, const struct certs *cs, size_t leaf, const uint8_t *body,
                      size_t body_len, bool replayed, char *err, size_t errlen)
{
    o->der = cf_xmemdup(cs->der[leaf], cs->len[leaf]);
    o->der_len = cs->len[leaf];
    o->replayed = replayed;
    if (cf_cert_info_from_der(o->der, o->der_len, &o->info, err, errlen))
        return CF_EPARSE;
    o->pem = cf_cert_pem(o->der, o->der_len);
    if (cs->p7 && leaf == 0 && body) {
        o->p7 = cf_xmemdup(body, body_len);
        o->p7_len = body_len;
        return 0;
    }
    const uint8_t **ders = cf_xcalloc(cs->n, sizeof(*ders));
    size_t *lens = cf_xcalloc(cs->n, sizeof(*lens));
    size_t k = 0;
    ders[k] = cs->der[leaf];
    lens[k++] = cs->len[leaf];
    for (size_t i = 0; i < cs->n; i++)
        if (i != leaf) {
            ders[k] = cs->der[i];
            lens[k++] = cs->len[i];
        }
    int rc = cf_pkcs7_certs_only(ders, lens, k, &o->p7, &o->p7_len, err, errlen);
    free(ders);
    free(lens);
    return rc;
}

/* ---- talking to the CA ---- */

static void on_resp(void *arg, const struct cf_httpc_resp *resp);

/* Starts a request of the op; on failure, ends the op as CaConnectionFailed and returns nonzero. */
static int send_req(struct op *o, enum phase phase, const char *method, const char *accept,
                    const struct cf_buf *body)
{
    struct conn *cn = o->cn;
    if (cn->closing) {
        fail(o, CF_CA_CONNECTION_FAILED, "certflow stopped before the request to %s was sent",
             o->who);
        return -1;
    }
    char err[512] = "";
    if (!cn->http && cf_httpc_new(cn->loop, &cn->http, err, sizeof(err)) != 0) {
        cn->http = NULL;
        fail(o, CF_CA_CONNECTION_FAILED, "cannot talk to %s: no HTTP client: %s", o->who, err);
        return -1;
    }
    size_t n = 0;
    o->hdrs[n++] = (struct cf_httpc_header){"Accept", accept};
    if (body)
        o->hdrs[n++] =
            (struct cf_httpc_header){"Content-Type", "application/x-www-form-urlencoded"};
    struct cf_httpc_req r = {
        .method = method,
        .url = o->url,
        .headers = o->hdrs,
        .n_headers = n,
        .body = body ? (const uint8_t *)body->data : NULL,
        .body_len = body ? body->len : 0,
        .timeout_ms = o->timeout_ms,
        .tls = &o->tls,
    };
    o->phase = phase;
    int rc = cf_httpc_send(cn->http, &r, on_resp, o, &o->xfer);
    if (rc) {
        o->xfer = NULL;
        fail(o, CF_CA_CONNECTION_FAILED, "cannot send a request to %s: %s", o->who,
             cf_strerror(rc));
        return -1;
    }
    return 0;
}

static void set_url(struct op *o, const char *fmt, ...) CF_PRINTF(2, 3);
static void set_url(struct op *o, const char *fmt, ...)
{
    /* The variable parts are bounded: a certid of at most 255 characters (765 encoded), a serial,
     * a key identifier, an offset. */
    char rest[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rest, sizeof(rest), fmt, ap);
    va_end(ap);
    free(o->url);
    o->url = cf_xasprintf("%s%s", o->base, rest);
}

/* A reply in CM's envelope: a JSON object with an integer `error`, or NULL. */
static json_t *cm_json(const struct cf_httpc_resp *r, int *code, char *msg, size_t msglen)
{
    const uint8_t *p = r->body;
    size_t n = r->body_len;
    while (n && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')) {
        p++;
        n--;
    }
    if (!n || *p != '{')
        return NULL;
    json_t *j = json_loadb((const char *)p, n, 0, NULL);
    json_t *e = json_object_get(j, "error");
    if (!json_is_object(j) || !json_is_integer(e)) {
        json_decref(j);
        return NULL;
    }
    *code = (int)json_integer_value(e);
    const char *m = json_string_value(json_object_get(j, "msg"));
    peer_text(msg, msglen, m ? m : "no message", 400);
    return j;
}

/* How an answer that is neither CM's JSON nor what was expected is described. */
static void garbled(const struct cf_httpc_resp *r, char *out, size_t outlen)
{
    char ct[128], start[96];
    peer_text(ct, sizeof(ct), r->content_type ? r->content_type : "no content type", 100);
    peer_text(start, sizeof(start), (const char *)r->body, 60);
    snprintf(out, outlen, "HTTP %ld (%s, %zu bytes%s%s%s)", r->status, ct, r->body_len,
             r->body_len ? ": \"" : "", r->body_len ? start : "", r->body_len ? "\"" : "");
}

/* CM's error codes (docs/cm-rest.md): -7 missing field and -8 encoding error mean the request
 * was malformed; -12 not initialized, -18 connection error (Protocol Gateway cannot reach its
 * CA), -40 too many requests, and -1 general error under an HTTP 5xx status mean the CA cannot
 * serve now, which a retry may overcome; everything else is the CA saying no. */
static enum cf_ca_status cm_class(int code, long http_status)
{
    if (code == -7 || code == -8)
        return CF_CA_COMMON_ERROR;
    if (code == -12 || code == -18 || code == -40 || (code == -1 && http_status / 100 == 5))
        return CF_CA_CONNECTION_FAILED;
    return CF_CA_REQUEST_FAILED;
}

static void cm_refused(struct op *o, int code, long http_status, const char *msg)
{
    switch (cm_class(code, http_status)) {
    case CF_CA_COMMON_ERROR:
        fail(o, CF_CA_COMMON_ERROR, "%s says the request is malformed: %s (CM error %d)", o->who,
             msg, code);
        break;
    case CF_CA_CONNECTION_FAILED:
        fail(o, CF_CA_CONNECTION_FAILED, "%s cannot serve the request now: %s (CM error %d)",
             o->who, msg, code);
        break;
    default:
        fail(o, CF_CA_REQUEST_FAILED, "%s refused the request: %s (CM error %d)", o->who, msg,
             code);
        break;
    }
}

static void submit(struct op *o);
static void search(struct op *o);
static void next_hit(struct op *o);
static void find_serial(struct op *o);
static void revoke_certid(struct op *o);
static void start_signing(struct op *o, json_t *j);

static void start_cb(uv_timer_t *t)
{
    struct op *o = t->data;
    if (o->ready) {
        finish(o);
    } else if (o->cn->closing) {
        fail(o, CF_CA_CONNECTION_FAILED, "certflow stopped before the request to %s was sent",
             o->who);
    } else if (o->rreq || o->freq) {
        find_serial(o);
    } else if (o->req->attempt > 1) {
        cf_log(CF_LOG_INFO,
               "cm-rest: attempt %d of a request to %s: searching for a certificate of the CSR's "
               "key before sending it again template=%s tenant=%s ski=%s",
               o->req->attempt, o->who, o->req->template_name, o->req->tenant_id, o->ski);
        search(o);
    } else {
        submit(o);
    }
}

/* -- issuing -- */

static void submit(struct op *o)
{
    size_t der_len;
    const uint8_t *der = cf_csr_der(o->csr, &der_len);
    char *b64 = b64_encode(der, der_len);
    struct cf_buf body;
    cf_buf_init(&body);
    cf_buf_puts(&body, "pkcs10=");
    url_encode(&body, b64);
    cf_buf_puts(&body, "&procname=");
    url_encode(&body, o->procedure);
    if (o->sig_b64) {
        cf_buf_puts(&body, "&signature=");
        url_encode(&body, o->sig_b64);
        o->signed_sent = true;
    }
    free(b64);
    set_url(o, "/certificates/pkcs10");
    send_req(o, PH_SUBMIT, "POST", "application/pkcs7-mime", &body);
    cf_buf_free(&body);
}

static void search(struct op *o)
{
    set_url(o,
            "/certificates?subjectKeyIdentifier=%s&isNotRevoked=true&searchLimit=50"
            "&searchOffset=%ld",
            o->ski, o->offset);
    send_req(o, PH_SEARCH, "GET", "application/json", NULL);
}

/* The certid of a search hit (a string, or a number as some clients model it) into o->certid. */
static int hit_certid(struct op *o, const json_t *h)
{
    const json_t *id = json_object_get(h, "certid");
    if (json_is_string(id) && json_string_length(id) > 0 &&
        json_string_length(id) < sizeof(o->certid))
        cf_strlcpy(o->certid, json_string_value(id), sizeof(o->certid));
    else if (json_is_integer(id))
        snprintf(o->certid, sizeof(o->certid), "%" JSON_INTEGER_FORMAT, json_integer_value(id));
    else
        return CF_EPARSE;
    const char *status = json_string_value(json_object_get(h, "status"));
    o->hit_revoked = status && strcmp(status, "revoked") == 0;
    return 0;
}

static void download(struct op *o, enum phase phase, const char *accept)
{
    struct cf_buf id;
    cf_buf_init(&id);
    url_encode(&id, o->certid);
    set_url(o, "/certificates/%s/download", id.data ? id.data : "");
    cf_buf_free(&id);
    send_req(o, phase, "GET", accept, NULL);
}

/* The next hit of the search to look at, the next page, or (none matched) the request. */
static void next_hit(struct op *o)
{
    const json_t *list = json_object_get(o->page, "certificates");
    size_t n = json_array_size(list);
    bool revoking = o->rreq != NULL, fetching = o->freq != NULL;
    for (; o->hit < n; o->hit++) {
        if (hit_certid(o, json_array_get(list, o->hit)) != 0) {
            fail(o, CF_CA_CONNECTION_FAILED,
                 "%s answered a search with a certificate without a certid", o->who);
            return;
        }
        /* A revoked certificate is never handed out for an issue, whatever the CA's search let
         * through; a fetch asks for a certificate as it is, revoked or not. */
        if (!revoking && !fetching && o->hit_revoked)
            continue;
        /* Reconciling and fetching ask for a PKCS#7 rather than the bare certificate, so that a
         * match comes with its chain as a new certificate does; a revocation only compares the
         * certificate. */
        if (revoking)
            download(o, PH_FETCH_R, "application/pkix-cert");
        else
            download(o, fetching ? PH_FETCH_S : PH_FETCH, "application/pkcs7-mime");
        return;
    }
    const json_t *total = json_object_get(o->page, "searchHits");
    long hits = json_is_integer(total) ? (long)json_integer_value(total) : 0;
    if (n > 0 && o->offset + (long)n < hits) {
        o->offset += (long)n;
        if (revoking || fetching)
            find_serial(o);
        else
            search(o);
        return;
    }
    if (fetching && o->other_serial) {
        fail(o, CF_CA_CONNECTION_FAILED,
             "%s answered a search for serial %s with %d certificate(s) of other serials", o->who,
             o->serial, o->other_serial);
        return;
    }
    if (fetching) {
        fail(o, CF_CA_REQUEST_FAILED, "%s has no certificate with serial %s", o->who, o->serial);
        return;
    }
    if (revoking) {
        fail(o, CF_CA_REQUEST_FAILED, "%s has no certificate with serial %s to revoke", o->who,
             o->serial);
        return;
    }
    cf_log(CF_LOG_INFO,
           "cm-rest: %s holds no certificate of the CSR's key, so the request is sent "
           "template=%s tenant=%s ski=%s",
           o->who, o->req->template_name, o->req->tenant_id, o->ski);
    submit(o);
}

static void on_search(struct op *o, const struct cf_httpc_resp *r)
{
    int code = 0;
    char msg[512];
    json_t *j = cm_json(r, &code, msg, sizeof(msg));
    const json_t *list = json_object_get(j, "certificates");
    if (!j || code != 0 || !json_is_array(list)) {
        char what[600];
        if (!j || !code)
            garbled(r, what, sizeof(what));
        else
            snprintf(what, sizeof(what), "%s (CM error %d)", msg, code);
        json_decref(j);
        if ((o->rreq || o->freq) && j && code)
            cm_refused(o, code, r->status, msg);
        else if (o->rreq || o->freq)
            fail(o, CF_CA_CONNECTION_FAILED, "%s answered a search with %s", o->who, what);
        else
            fail(o, CF_CA_CONNECTION_FAILED,
                 "cannot search %s for the certificate an earlier attempt may have been issued: "
                 "%s; the request is not sent again until the search works, so that no second "
                 "certificate is issued",
                 o->who, what);
        return;
    }
    json_decref(o->page);
    o->page = j;
    o->hit = 0;
    next_hit(o);
}

static void on_fetch(struct op *o, const struct cf_httpc_resp *r)
{
    int code = 0;
    char msg[512], what[600];
    json_t *j = cm_json(r, &code, msg, sizeof(msg));
    struct certs cs = {0};
    if (j || r->status / 100 != 2 || certs_read(r->body, r->body_len, &cs, 0) != 0) {
        if (j)
            snprintf(what, sizeof(what), "%s (CM error %d)", msg, code);
        else
            garbled(r, what, sizeof(what));
        json_decref(j);
        certs_clear(&cs);
        fail(o, CF_CA_CONNECTION_FAILED,
             "cannot download certificate %s found at %s: %s; the request is not sent again "
             "until it can be compared, so that no second certificate is issued",
             o->certid, o->who, what);
        return;
    }
    for (size_t i = 0; i < cs.n; i++) {
        if (cf__ca_cert_matches_csr(cs.der[i], cs.len[i], o->csr) == 1 &&
            same_subject(cs.der[i], cs.len[i], o->csr)) {
            /* Not `replayed`, which means known_der: the service stores this certificate with the
             * step's key, as it would store a new one, so the step ends as if the lost answer
             * had arrived. */
            char err[256];
            if (set_result(o, &cs, i, r->body, r->body_len, false, err, sizeof(err)) != 0) {
                certs_clear(&cs);
                fail(o, CF_CA_CONNECTION_FAILED, "certificate %s found at %s is unusable: %s",
                     o->certid, o->who, err);
                return;
            }
            certs_clear(&cs);
            cf_log(CF_LOG_INFO,
                   "cm-rest: %s already issued this request's certificate (an earlier attempt's "
                   "answer was lost); taking it instead of asking again certid=%s serial=%s "
                   "template=%s tenant=%s",
                   o->who, o->certid, o->info.serial, o->req->template_name, o->req->tenant_id);
            finish(o);
            return;
        }
    }
    certs_clear(&cs);
    o->hit++;
    next_hit(o);
}

static void on_submit(struct op *o, const struct cf_httpc_resp *r)
{
    int code = 0;
    char msg[512], what[600];
    json_t *j = cm_json(r, &code, msg, sizeof(msg));
    if (j) {
        if (code == -19 && !o->signed_sent) {
            start_signing(o, j);
        } else if (code == 0) {
            garbled(r, what, sizeof(what));
            fail(o, CF_CA_CONNECTION_FAILED, "%s answered without a certificate: %s", o->who, what);
        } else {
            cm_refused(o, code, r->status, msg);
        }
        json_decref(j);
        return;
    }
    struct certs cs = {0};
    if (r->status / 100 != 2 || certs_read(r->body, r->body_len, &cs, 0) != 0) {
        certs_clear(&cs);
        garbled(r, what, sizeof(what));
        fail(o, CF_CA_CONNECTION_FAILED,
             "%s answered with neither Certificate Manager's JSON nor a certificate: %s", o->who,
             what);
        return;
    }
    char certid[128];
    peer_text(certid, sizeof(certid), cf_httpc_resp_header(r, "certId"), 100);
    size_t leaf = cs.n;
    for (size_t i = 0; i < cs.n && leaf == cs.n; i++)
        if (cf__ca_cert_matches_csr(cs.der[i], cs.len[i], o->csr) == 1)
            leaf = i;
    if (leaf == cs.n) {
        /* Not handed out: the process would get a certificate for a key it does not hold. The
         * class is CaConnectionFailed (a garbled answer), not CaRequestFailed: the CA did not
         * say no, and a retry searches for a certificate of the right key before asking again. */
        certs_clear(&cs);
        cf_log(CF_LOG_WARN,
               "cm-rest: %s answered with %zu certificate(s), none of them for the CSR's key; "
               "nothing is handed out certid=%s template=%s tenant=%s",
               o->who, cs.n, certid[0] ? certid : "-", o->req->template_name, o->req->tenant_id);
        fail(o, CF_CA_CONNECTION_FAILED,
             "%s answered with a certificate that does not certify the CSR's public key "
             "(certid %s); it is not handed out",
             o->who, certid[0] ? certid : "not given");
        return;
    }
    char err[256];
    if (set_result(o, &cs, leaf, r->body, r->body_len, false, err, sizeof(err)) != 0) {
        certs_clear(&cs);
        fail(o, CF_CA_CONNECTION_FAILED, "the certificate from %s is unusable: %s", o->who, err);
        return;
    }
    certs_clear(&cs);
    cf_log(CF_LOG_INFO, "cm-rest: issued by %s certid=%s serial=%s template=%s tenant=%s", o->who,
           certid[0] ? certid : "-", o->info.serial, o->req->template_name, o->req->tenant_id);
    finish(o);
}

/* -- revoking -- */

static void find_serial(struct op *o)
{
    set_url(o, "/certificates?certificateSerialNumber=%s&searchLimit=50&searchOffset=%ld",
            o->serial, o->offset);
    send_req(o, PH_FIND, "GET", "application/json", NULL);
}

static void on_fetch_revoke(struct op *o, const struct cf_httpc_resp *r)
{
    int code = 0;
    char msg[512], what[600];
    json_t *j = cm_json(r, &code, msg, sizeof(msg));
    struct certs cs = {0};
    if (j || r->status / 100 != 2 || certs_read(r->body, r->body_len, &cs, 0) != 0) {
        if (j)
            snprintf(what, sizeof(what), "%s (CM error %d)", msg, code);
        else
            garbled(r, what, sizeof(what));
        json_decref(j);
        certs_clear(&cs);
        fail(o, CF_CA_CONNECTION_FAILED, "cannot download certificate %s from %s: %s", o->certid,
             o->who, what);
        return;
    }
    bool same = false;
    for (size_t i = 0; i < cs.n && !same; i++)
        same = cs.len[i] == o->rreq->der_len && memcmp(cs.der[i], o->rreq->der, cs.len[i]) == 0;
    certs_clear(&cs);
    if (!same) {
        o->hit++;
        next_hit(o);
        return;
    }
    if (o->hit_revoked) {
        /* A retry of a revocation whose answer was lost finds it done. */
        cf_log(CF_LOG_INFO,
               "cm-rest: %s has certificate %s (serial %s) revoked already; nothing to do "
               "template=%s tenant=%s",
               o->who, o->certid, o->serial, o->rreq->template_name, o->rreq->tenant_id);
        finish(o);
        return;
    }
    revoke_certid(o);
}

static void revoke_certid(struct op *o)
{
    struct cf_buf body;
    cf_buf_init(&body);
    cf_buf_puts(&body, "certid=");
    url_encode(&body, o->certid);
    cf_buf_printf(&body, "&reason=%d", o->rreq->reason);
    if (o->sig_b64) {
        cf_buf_puts(&body, "&signature=");
        url_encode(&body, o->sig_b64);
        o->signed_sent = true;
    }
    set_url(o, "/certificates/revoke");
    send_req(o, PH_REVOKE, "POST", "application/json", &body);
    cf_buf_free(&body);
}

static void on_revoke(struct op *o, const struct cf_httpc_resp *r)
{
    int code = 0;
    char msg[512], what[600];
    json_t *j = cm_json(r, &code, msg, sizeof(msg));
    if (!j) {
        garbled(r, what, sizeof(what));
        fail(o, CF_CA_CONNECTION_FAILED, "%s answered a revocation with %s", o->who, what);
        return;
    }
    if (code == -19 && !o->signed_sent) {
        start_signing(o, j);
    } else if (code == 0) {
        cf_log(CF_LOG_INFO,
               "cm-rest: revoked by %s certid=%s serial=%s reason=%d template=%s "
               "tenant=%s",
               o->who, o->certid, o->serial, o->rreq->reason, o->rreq->template_name,
               o->rreq->tenant_id);
        finish(o);
    } else {
        cm_refused(o, code, r->status, msg);
    }
    json_decref(j);
}

/* -- fetching -- */

/* A downloaded search hit of a fetch: the result when one of its certificates has the serial
 * asked for (the CA lists the certificate first, its chain after it), else the next hit. */
static void on_fetch_serial(struct op *o, const struct cf_httpc_resp *r)
{
    int code = 0;
    char msg[512], what[600];
    json_t *j = cm_json(r, &code, msg, sizeof(msg));
    struct certs cs = {0};
    if (j || r->status / 100 != 2 || certs_read(r->body, r->body_len, &cs, 0) != 0) {
        if (j)
            snprintf(what, sizeof(what), "%s (CM error %d)", msg, code);
        else
            garbled(r, what, sizeof(what));
        json_decref(j);
        certs_clear(&cs);
        fail(o, CF_CA_CONNECTION_FAILED, "cannot download certificate %s from %s: %s", o->certid,
             o->who, what);
        return;
    }
    size_t leaf = cs.n;
    for (size_t i = 0; i < cs.n && leaf == cs.n; i++) {
        struct cf_cert_info info = {0};
        if (cf_cert_info_from_der(cs.der[i], cs.len[i], &info, NULL, 0) == 0 &&
            strcmp(info.serial, o->serial) == 0)
            leaf = i;
        cf_cert_info_clear(&info);
    }
    if (leaf == cs.n) {
        certs_clear(&cs);
        o->other_serial++;
        o->hit++;
        next_hit(o);
        return;
    }
    char err[256];
    if (set_result(o, &cs, leaf, r->body, r->body_len, false, err, sizeof(err)) != 0) {
        certs_clear(&cs);
        fail(o, CF_CA_CONNECTION_FAILED, "certificate %s from %s is unusable: %s", o->certid,
             o->who, err);
        return;
    }
    certs_clear(&cs);
    cf_log(CF_LOG_INFO, "cm-rest: fetched from %s certid=%s serial=%s template=%s tenant=%s",
           o->who, o->certid, o->serial, o->freq->template_name, o->freq->tenant_id);
    finish(o);
}

static void on_resp(void *arg, const struct cf_httpc_resp *r)
{
    struct op *o = arg;
    o->xfer = NULL;
    if (r->fail == CF_HTTPC_CANCELED) {
        fail(o, CF_CA_CONNECTION_FAILED, "certflow stopped before %s answered", o->who);
        return;
    }
    if (r->fail != CF_HTTPC_OK) {
        bool ambiguous = r->sent && (o->phase == PH_SUBMIT || o->phase == PH_REVOKE);
        const char *what = "cannot talk to";
        if (r->fail == CF_HTTPC_RESOLVE || r->fail == CF_HTTPC_CONNECT)
            what = "cannot connect to";
        else if (r->fail == CF_HTTPC_TLS)
            what = "no TLS connection with";
        else if (r->fail == CF_HTTPC_TIMEOUT)
            what = "no answer in time from";
        else if (r->fail == CF_HTTPC_LOCAL)
            what = "cannot make a request to";
        fail(o, CF_CA_CONNECTION_FAILED, "%s %s: %s%s", what, o->who,
             r->error ? r->error : "the transfer failed",
             ambiguous ? "; the request may have reached the CA, so a retry first searches for "
                         "its result"
                       : "");
        return;
    }
    switch (o->phase) {
    case PH_SEARCH:
    case PH_FIND:
        on_search(o, r);
        break;
    case PH_FETCH:
        on_fetch(o, r);
        break;
    case PH_FETCH_R:
        on_fetch_revoke(o, r);
        break;
    case PH_FETCH_S:
        on_fetch_serial(o, r);
        break;
    case PH_SUBMIT:
        on_submit(o, r);
        break;
    case PH_REVOKE:
        on_revoke(o, r);
        break;
    default:
        fail(o, CF_CA_CONNECTION_FAILED, "an answer from %s came at the wrong time", o->who);
        break;
    }
}

/* ---- the officer and the signature (worker thread) ---- */

static int pw_cb(char *buf, int size, int rwflag, void *u)
{
    (void)rwflag;
    const char *pw = u;
    size_t n = pw ? strlen(pw) : 0;
    if (!pw || n > (size_t)size)
        return -1; /* never a prompt on a terminal */
    memcpy(buf, pw, n);
    return (int)n;
}

static bool same_file(const struct stat *a, const struct stat *b)
{
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

static void officer_free(struct officer *of)
{
    if (!of)
        return;
    free(of->cert_path);
    free(of->key_path);
    X509_free(of->cert);
    sk_X509_pop_free(of->extra, X509_free);
    EVP_PKEY_free(of->key);
    free(of);
}

/* Reads the officer's certificate (and any chain after it) and key. */
static struct officer *officer_load(const struct op *o, const struct stat *cst,
                                    const struct stat *kst, char *err, size_t errlen)
{
    struct officer *of = cf_xcalloc(1, sizeof(*of));
    of->cert_st = *cst;
    of->key_st = *kst;
    BIO *b = BIO_new_file(o->cert_path, "r");
    of->cert = b ? PEM_read_bio_X509(b, NULL, pw_cb, NULL) : NULL;
    if (!of->cert) {
        char why[256];
        ossl_reason(why, sizeof(why));
        cf_errf(err, errlen, "settings.cert: %s is not a PEM certificate: %s", o->cert_path, why);
        BIO_free(b);
        officer_free(of);
        return NULL;
    }
    of->extra = sk_X509_new_null();
    X509 *x;
    while ((x = PEM_read_bio_X509(b, NULL, pw_cb, NULL)) != NULL)
        sk_X509_push(of->extra, x);
    ERR_clear_error();
    BIO_free(b);
    b = BIO_new_file(o->key_path, "r");
    of->key = b ? PEM_read_bio_PrivateKey(b, NULL, pw_cb, o->password) : NULL;
    BIO_free(b);
    if (!of->key) {
        ERR_clear_error();
        cf_errf(err, errlen,
                "settings.key: %s cannot be read: not a PEM private key, or an encrypted one "
                "and settings.keyPassword is %s",
                o->key_path, o->password ? "wrong" : "not set");
        officer_free(of);
        return NULL;
    }
    if (X509_check_private_key(of->cert, of->key) != 1) {
        ERR_clear_error();
        cf_errf(err, errlen, "settings.key: %s is not the key of the officer certificate %s",
                o->key_path, o->cert_path);
        officer_free(of);
        return NULL;
    }
    of->cert_path = cf_xstrdup(o->cert_path);
    of->key_path = cf_xstrdup(o->key_path);
    return of;
}

/* The officer of an op, from the cache when its files did not change; references for the
 * caller. */
static int officer_get(struct conn *cn, const struct op *o, X509 **cert, STACK_OF(X509) * *extra,
                       EVP_PKEY **key, char *err, size_t errlen)
{
    struct stat cst, kst;
    if (stat(o->cert_path, &cst) != 0) {
        cf_errf(err, errlen, "settings.cert: cannot read %s", o->cert_path);
        return CF_EIO;
    }
    if (stat(o->key_path, &kst) != 0) {
        cf_errf(err, errlen, "settings.key: cannot read %s", o->key_path);
        return CF_EIO;
    }
    unsigned char digest[32];
    const char *pw = o->password ? o->password : "";
    EVP_Digest(pw, strlen(pw), digest, NULL, EVP_sha256(), NULL);
    digest[0] ^= o->password ? 0 : 1; /* no password differs from an empty one */

    uv_mutex_lock(&cn->lock);
    struct officer **pp = &cn->officers;
    while (*pp && (strcmp((*pp)->cert_path, o->cert_path) != 0 ||
                   strcmp((*pp)->key_path, o->key_path) != 0 ||
                   CRYPTO_memcmp((*pp)->pw_digest, digest, sizeof(digest)) != 0))
        pp = &(*pp)->next;
    struct officer *of = *pp;
    if (of && (!same_file(&of->cert_st, &cst) || !same_file(&of->key_st, &kst))) {
        *pp = of->next;
        officer_free(of);
        of = NULL;
    }
    if (!of) {
        of = officer_load(o, &cst, &kst, err, errlen);
        if (!of) {
            uv_mutex_unlock(&cn->lock);
            return CF_EINVAL;
        }
        memcpy(of->pw_digest, digest, sizeof(digest));
        of->next = cn->officers;
        cn->officers = of;
    }
    X509_up_ref(of->cert);
    EVP_PKEY_up_ref(of->key);
    *cert = of->cert;
    *key = of->key;
    *extra = X509_chain_up_ref(of->extra);
    uv_mutex_unlock(&cn->lock);
    return 0;
}

static void sign_work(uv_work_t *w)
{
    struct op *o = cf_container_of(w, struct op, work);
    X509 *cert = NULL;
    STACK_OF(X509) *extra = NULL;
    EVP_PKEY *key = NULL;
    o->wrc = officer_get(o->cn, o, &cert, &extra, &key, o->werr, sizeof(o->werr));
    if (o->wrc)
        return;
    BIO *in = BIO_new_mem_buf(o->tbs, (int)o->tbs_len);
    /* Attached (no CMS_DETACHED), the signer's certificate included (no CMS_NOCERTS), the bytes
     * as they are (CMS_BINARY: no MIME canonicalisation of line ends). */
    CMS_ContentInfo *cms = in ? CMS_sign(cert, key, extra, in, CMS_BINARY) : NULL;
    unsigned char *der = NULL;
    int n = cms ? i2d_CMS_ContentInfo(cms, &der) : -1;
    if (n <= 0) {
        char why[256];
        ossl_reason(why, sizeof(why));
        cf_errf(o->werr, sizeof(o->werr), "cannot sign with the officer key %s: %s", o->key_path,
                why);
        o->wrc = CF_EINVAL;
    } else {
        o->sig_b64 = b64_encode(der, (size_t)n);
    }
    OPENSSL_free(der);
    CMS_ContentInfo_free(cms);
    BIO_free(in);
    X509_free(cert);
    sk_X509_pop_free(extra, X509_free);
    EVP_PKEY_free(key);
    ERR_clear_error();
}

static void sign_after(uv_work_t *w, int status)
{
    struct op *o = cf_container_of(w, struct op, work);
    o->working = false;
    if (status == UV_ECANCELED || o->cn->closing) {
        fail(o, CF_CA_CONNECTION_FAILED,
             "certflow stopped before the request to %s was signed and sent again", o->who);
        return;
    }
    if (o->wrc) {
        fail(o, CF_CA_CONNECTION_FAILED, "%s asked for the officer's signature: %s", o->who,
             o->werr);
        return;
    }
    if (o->signing_for == PH_SUBMIT)
        submit(o);
    else
        revoke_certid(o);
}

/* The CA asked for a signature (CM error -19): sign its dataToSign on the thread pool, then send
 * the same request again with it. */
static void start_signing(struct op *o, json_t *j)
{
    const char *dts = json_string_value(json_object_get(j, "dataToSign"));
    free(o->tbs);
    o->tbs = NULL;
    if (!dts || b64_decode(dts, strlen(dts), &o->tbs, &o->tbs_len) != 0 || o->tbs_len == 0 ||
        o->tbs_len > INT32_MAX) {
        fail(o, CF_CA_CONNECTION_FAILED,
             "%s asked for a signature without data to sign (no Base64 in dataToSign)", o->who);
        return;
    }
    o->signing_for = o->phase;
    o->phase = PH_SIGN;
    if (uv_queue_work(o->cn->loop, &o->work, sign_work, sign_after) != 0) {
        fail(o, CF_CA_CONNECTION_FAILED, "cannot queue the officer's signature for %s", o->who);
        return;
    }
    o->working = true;
}

/* ---- the connector ---- */

/* A new op with the template's settings; when they are wrong, it is `ready` with CommonError. */
static struct op *op_new(struct conn *cn, const json_t *settings, const char *template_name)
{
    struct op *o = cf_xcalloc(1, sizeof(*o));
    o->cn = cn;
    char err[1024] = "";
    if (check(settings, err, sizeof(err)) != 0 || parse_url(settings, &o->ep, err, sizeof(err))) {
        set_fail(o, CF_CA_COMMON_ERROR, "certificate template '%s': %s",
                 template_name ? template_name : "", err);
        o->ready = true;
    }
    cf_strlcpy(o->base, o->ep.url, sizeof(o->base));
    size_t n = strlen(o->base);
    while (n && o->base[n - 1] == '/')
        o->base[--n] = '\0';
    cf__ca_who(&o->ep, "cm-rest", template_name, o->who, sizeof(o->who));
    o->procedure = cf__ca_setting_str(settings, "procedure", "");
    o->timeout_ms = (uint64_t)cf__ca_setting_int(settings, "timeoutMs", 0);
    const char *s;
    o->cert_path = cf_xstrdup(cf__ca_setting_str(settings, "cert", ""));
    o->key_path = cf_xstrdup(cf__ca_setting_str(settings, "key", ""));
    if ((s = cf__ca_setting_str(settings, "keyPassword", NULL)) != NULL)
        o->password = cf_xstrdup(s);
    if ((s = cf__ca_setting_str(settings, "trusted", NULL)) != NULL)
        o->trusted = cf_xstrdup(s);
    o->tls = (struct cf_httpc_tls){
        .ca_file = o->trusted,
        .cert_file = o->cert_path,
        .key_file = o->key_path,
        .key_password = o->password,
    };
    return o;
}

/* Starts the op from the loop; 0, or a negative code (then the op is freed and `done` never
 * runs). */
static int op_start(struct op *o)
{
    struct conn *cn = o->cn;
    if (uv_timer_init(cn->loop, &o->start) != 0) {
        op_free(o);
        return CF_EINVAL;
    }
    o->start.data = o;
    uv_timer_start(&o->start, start_cb, 0, 0);
    o->next = cn->ops;
    if (cn->ops)
        cn->ops->prev = o;
    cn->ops = o;
    return 0;
}

/* The CSR's subject key identifier, RFC 5280 §4.2.1.2 method 1: SHA-1 of the subjectPublicKey
 * bits, in upper-case hex as CM's search takes it. */
static void csr_ski(const struct cf_csr *csr, char out[41])
{
    const X509_ALGOR *alg;
    const ASN1_BIT_STRING *bits;
    cf_csr_spki(csr, &alg, &bits);
    unsigned char md[20];
    unsigned int mdlen = 0;
    EVP_Digest(ASN1_STRING_get0_data(bits), (size_t)ASN1_STRING_length(bits), md, &mdlen,
               EVP_sha1(), NULL);
    static const char hex[] = "0123456789ABCDEF";
    for (unsigned int i = 0; i < 20; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[40] = '\0';
}

/* known_der: the certificate the store holds for the step, handed back without asking the CA.
 * Its chain is the certificate alone, since the store keeps no CA certificates. */
static void replay_known(struct op *o)
{
    const struct cf_ca_conn_request *r = o->req;
    int m = cf__ca_cert_matches_csr(r->known_der, r->known_der_len, o->csr);
    if (m != 1) {
        set_fail(o, m < 0 ? CF_CA_CONNECTION_FAILED : CF_CA_COMMON_ERROR,
                 m < 0 ? "the certificate stored for idempotency key \"%s\" is not a certificate"
                       : "idempotency key \"%s\" was already used for a certificate of another "
                         "public key; each request needs its own key",
                 r->idempotency_key);
        return;
    }
    struct certs cs = {0};
    certs_add_der(&cs, r->known_der, r->known_der_len);
    char err[256];
    if (!cs.n || set_result(o, &cs, 0, NULL, 0, true, err, sizeof(err)) != 0)
        set_fail(o, CF_CA_CONNECTION_FAILED,
                 "the certificate stored for idempotency key \"%s\" cannot be used",
                 r->idempotency_key);
    certs_clear(&cs);
}

static int issue(struct cf_ca_connector *c, const struct cf_ca_conn_request *req,
                 cf_ca_conn_done_fn done, void *arg)
{
    struct conn *cn = cf_container_of(c, struct conn, pub);
    if (!req || !done)
        return CF_EINVAL;
    if (cn->closing)
        return CF_ESTATE;
    struct op *o = op_new(cn, req->settings, req->template_name);
    o->req = req;
    o->done = done;
    o->arg = arg;
    char err[1024] = "";
    if (o->ready) {
        /* The settings are wrong: said as the op has it. */
    } else if (req->overrides) {
        char why[256];
        no_override(req->settings, why, sizeof(why));
        set_fail(o, CF_CA_COMMON_ERROR, "certificate template '%s': %s", req->template_name, why);
        o->ready = true;
    } else if (cf__ca_csr_check(req, &o->csr, err, sizeof(err)) != 0) {
        set_fail(o, CF_CA_COMMON_ERROR, "the CSR cannot be sent to %s: %s", o->who, err);
        o->ready = true;
    } else if (req->known_der) {
        replay_known(o);
        o->ready = true;
    } else {
        csr_ski(o->csr, o->ski);
    }
    return op_start(o);
}

static int revoke(struct cf_ca_connector *c, const struct cf_ca_conn_revoke *req,
                  cf_ca_conn_revoked_fn done, void *arg)
{
    struct conn *cn = cf_container_of(c, struct conn, pub);
    if (!req || !done)
        return CF_EINVAL;
    if (cn->closing)
        return CF_ESTATE;
    struct op *o = op_new(cn, req->settings, req->template_name);
    o->rreq = req;
    o->rdone = done;
    o->arg = arg;
    struct cf_cert_info info = {0};
    char err[512] = "";
    int r = req->reason;
    if (o->ready) {
        /* The settings are wrong. */
    } else if (!(r == 0 || r == 1 || (r >= 3 && r <= 6) || r == 9)) {
        set_fail(o, CF_CA_COMMON_ERROR,
                 "revocation reason %d is not one %s takes (0, 1, 3, 4, 5, 6 or 9)", r, o->who);
        o->ready = true;
    } else if (!req->der ||
               cf_cert_info_from_der(req->der, req->der_len, &info, err, sizeof(err)) != 0) {
        set_fail(o, CF_CA_COMMON_ERROR, "the certificate to revoke is not a DER certificate: %s",
                 err[0] ? err : "none given");
        o->ready = true;
    } else {
        cf_strlcpy(o->serial, info.serial, sizeof(o->serial));
    }
    cf_cert_info_clear(&info);
    return op_start(o);
}

/* A serial number as struct cf_cert_info writes it (BN_bn2hex: upper-case, whole bytes, no
 * leading zero bytes), from hex of any case with or without leading zeros; 0, or CF_EINVAL when
 * the text is empty, not hex, or longer than 64 bytes. */
static int norm_serial(const char *in, char *out, size_t outlen)
{
    size_t n = in ? strlen(in) : 0;
    if (n == 0 || n > 128 || outlen < 130)
        return CF_EINVAL;
    for (size_t i = 0; i < n; i++) {
        char c = in[i];
        if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'F') || (c >= 'a' && c <= 'f')))
            return CF_EINVAL;
    }
    while (n > 1 && *in == '0') {
        in++;
        n--;
    }
    size_t k = 0;
    if (n % 2)
        out[k++] = '0';
    for (size_t i = 0; i < n; i++)
        out[k++] = in[i] >= 'a' ? (char)(in[i] - 'a' + 'A') : in[i];
    out[k] = '\0';
    return 0;
}

static int fetch(struct cf_ca_connector *c, const struct cf_ca_conn_fetch *req,
                 cf_ca_conn_done_fn done, void *arg)
{
    struct conn *cn = cf_container_of(c, struct conn, pub);
    if (!req || !done)
        return CF_EINVAL;
    if (cn->closing)
        return CF_ESTATE;
    struct op *o = op_new(cn, req->settings, req->template_name);
    o->freq = req;
    o->done = done;
    o->arg = arg;
    if (o->ready) {
        /* The settings are wrong. */
    } else if (norm_serial(req->serial, o->serial, sizeof(o->serial)) != 0) {
        char shown[160];
        peer_text(shown, sizeof(shown), req->serial ? req->serial : "", 128);
        set_fail(o, CF_CA_COMMON_ERROR,
                 "cannot fetch a certificate from %s: serial number \"%s\" is not hexadecimal "
                 "digits of at most 64 bytes",
                 o->who, shown);
        o->ready = true;
    }
    return op_start(o);
}

static void shutdown_conn(struct cf_ca_connector *c)
{
    struct conn *cn = cf_container_of(c, struct conn, pub);
    if (cn->closing)
        return;
    cn->closing = true;
    /* Signatures not yet started are dropped (sign_after sees UV_ECANCELED); one that runs ends
     * normally and finds the connector closing. Transfers end with CF_HTTPC_CANCELED. */
    for (struct op *o = cn->ops; o; o = o->next)
        if (o->working)
            uv_cancel((uv_req_t *)&o->work);
    cf_httpc_close(cn->http, NULL, NULL);
    cn->http = NULL;
}

static void free_conn(struct cf_ca_connector *c)
{
    if (!c)
        return;
    struct conn *cn = cf_container_of(c, struct conn, pub);
    /* A connector freed without shutdown() still closes its client; the owner runs the loop. */
    cf_httpc_close(cn->http, NULL, NULL);
    while (cn->officers) {
        struct officer *of = cn->officers;
        cn->officers = of->next;
        officer_free(of);
    }
    uv_mutex_destroy(&cn->lock);
    free(cn);
}

static const struct cf_ca_connector_ops ops = {
    .issue = issue,
    .revoke = revoke,
    .fetch = fetch,
    .shutdown = shutdown_conn,
    .free = free_conn,
};

static int create(const struct cf_ca_connector_env *env, struct cf_ca_connector **out, char *err,
                  size_t errlen)
{
    if (!env || !env->loop) {
        cf_errf(err, errlen, "the cm-rest connector needs a loop");
        return CF_EINVAL;
    }
    struct conn *cn = cf_xcalloc(1, sizeof(*cn));
    if (uv_mutex_init(&cn->lock) != 0) {
        free(cn);
        cf_errf(err, errlen, "cannot create a mutex");
        return CF_ENOMEM;
    }
    cn->pub.ops = &ops;
    cn->pub.kind = &cf__ca_kind_cm_rest;
    cn->loop = env->loop;
    *out = &cn->pub;
    return 0;
}
