/*
 * The part of Nexus Certificate Manager's REST API ("CM REST API", /pgwy/api) that issuing,
 * finding, downloading and revoking certificates need, served from certflow's embedded CA
 * (docs/cm-rest.md is the contract; this file implements exactly that):
 *
 *   POST /pgwy/api[/<tenant>]/certificates/pkcs10            issue from a PKCS#10 request (signed)
 *   GET  /pgwy/api[/<tenant>]/certificates                   search
 *   GET  /pgwy/api[/<tenant>]/certificates/{certid}/details  one certificate
 *   GET  /pgwy/api[/<tenant>]/certificates/{certid}/download the certificate, by Accept
 *   POST /pgwy/api[/<tenant>]/certificates/revoke            revoke (signed)
 *   GET  /pgwy/api[/<tenant>]/procedures                     the tenant's embedded-CA templates
 *
 * Every answer is Certificate Manager's envelope {"error": n, "msg": "..."}, errors included, so
 * these routes authenticate themselves instead of leaving it to the router (whose errors have
 * another shape): only a client certificate on the TLS_CLIENT listener, mapped to a user that is
 * an admin and a member of the tenant, is accepted ("the officer"); HTTP Basic is refused before
 * any password is looked at.
 *
 * Writes are signed by the officer with the dataToSign handshake (docs/cm-rest.md): the first
 * request gets -19 and a dataToSign text that binds the operation, its fields, the tenant, the
 * officer's certificate and a 5-minute window under an HMAC keyed with a random per-process key;
 * the second carries a CMS SignedData of that text. Nothing is kept between the two rounds: the
 * text is computed again and compared, so a signature is good for that one request, by that one
 * officer, for at most 10 minutes, and for nothing after a restart.
 *
 * What it leaves to others: issuing goes through ca/service.c's host path
 * (cf_ca_service_issue()), which resolves the template, issues off the loop and stores the
 * certificate before it is answered here; SQL is store/castore.c's; the chain of a stored
 * certificate is read by cf_ca_service_chain() on the thread pool.
 */
#include "api/api.h"

#include <ctype.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/cms.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/x509.h>
#include <sodium.h>

#include "api/multipart.h"
#include "api/router_internal.h"
#include "ca/service.h"
#include "ca/x509.h"
#include "store/admin.h"
#include "store/castore.h"

#define BODY_LIMIT (256u * 1024u)
#define WINDOW_S 300
#define DEFAULT_LIMIT 50
#define MAX_LIMIT 500
#define SOURCE "cm-rest"
#define MAX_FIELD 128 /* names, procedure names, numbers */

/* Certificate Manager's error codes (docs/cm-rest.md "Envelope"). */
enum {
    CM_OK = 0,
    CM_GENERAL = -1,
    CM_MISSING = -7,
    CM_ENCODING = -8,
    CM_BAD_VALUE = -14,
    CM_PRIVILEGE = -15,
    CM_BAD_SIGNATURE = -17,
    CM_SIGN = -19,
};

struct cf__cmrest {
    struct cf_api *api;
    struct cf_ca_svc *ca;
    uint8_t mac_key[crypto_auth_hmacsha256_KEYBYTES];
    size_t pending; /* issues and revocations waiting for their CA or commit, downloads on the
                       thread pool */
    size_t works;   /* of those, downloads on the thread pool */
    bool freeing;   /* cf__cmrest_free() was called while works were out */
};

static struct cf__cmrest *cm_of(struct cf_api *api)
{
    return *cf__api_cmrest_slot(api);
}

void cf__cmrest_free(struct cf__cmrest *c)
{
    if (!c)
        return;
    sodium_memzero(c->mac_key, sizeof c->mac_key);
    /* A download on the thread pool comes back to this state; the last one frees it. */
    if (c->works) {
        c->freeing = true;
        return;
    }
    free(c);
}

bool cf__cmrest_busy(const struct cf__cmrest *c)
{
    return c && c->pending > 0;
}

/* ---- answers -------------------------------------------------------------------------------- */

static int status_of(int code)
{
    switch (code) {
    case CM_OK:
    case CM_SIGN:
        return 200;
    case CM_MISSING:
    case CM_ENCODING:
    case CM_BAD_VALUE:
        return 400;
    case CM_PRIVILEGE:
    case CM_BAD_SIGNATURE:
        return 403;
    default:
        return 500;
    }
}

static void cm_send(struct cf_api_request *r, int status, json_t *body)
{
    cf_api_respond_json(r, status, body);
}

/* An error answer; `status` 0 takes the one that goes with the code. Refusals are logged at INFO
 * with the user and the reason, never with request bodies. */
static void cm_fail(struct cf_api_request *r, int status, int code, const char *fmt, ...)
    CF_PRINTF(4, 5);

static void cm_fail(struct cf_api_request *r, int status, int code, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (!status)
        status = status_of(code);
    cf_log(status >= 500 ? CF_LOG_WARN : CF_LOG_INFO,
           "cm-rest: refused %s %s status=%d error=%d user=%s peer=%s: %s", r->http->method,
           r->http->path, status, code, r->who.name[0] ? r->who.name : "-", r->http->peer_addr,
           msg);
    cm_send(r, status, json_pack("{s:i, s:s}", "error", code, "msg", msg));
}

static json_t *ok_body(void)
{
    return json_pack("{s:i, s:s}", "error", CM_OK, "msg", "OK");
}

/* ---- authentication and tenant ------------------------------------------------------------- */

/*
 * The common start of every route: the tenant (the {tenant} capture, present when the route has
 * more captures than `n_ids`, else "default") and the officer. Answers itself and returns NULL
 * when the request goes no further.
 */
static const char *cm_begin(struct cf_api_request *r, size_t n_ids)
{
    const char *tenant = r->n_captures > n_ids ? r->captures[0] : CF_CA_DEFAULT_TENANT;
    /* docs/cm-rest.md: a first segment of "certificates" or "procedures" means no handler, so
     * /pgwy/api/certificates/certificates is not tenant "certificates"'s search. */
    if (r->n_captures > n_ids &&
        (strcmp(tenant, "certificates") == 0 || strcmp(tenant, "procedures") == 0)) {
        cm_fail(r, 404, CM_BAD_VALUE, "no such resource");
        return NULL;
    }
    if (r->http->listener != CF_LISTEN_TLS_CLIENT) {
        cm_fail(r, 403, CM_PRIVILEGE,
                "only an officer's client certificate is accepted here; connect to the "
                "client-certificate port (HTTP Basic is not accepted)");
        return NULL;
    }
    char msg[256];
    int rc = cf__api_cert_user(r, msg, sizeof msg);
    if (rc) {
        cm_fail(r, rc == CF_EPERM ? 403 : 500, rc == CF_EPERM ? CM_PRIVILEGE : CM_GENERAL, "%s",
                msg);
        return NULL;
    }
    if (!r->who.admin) {
        cm_fail(r, 403, CM_PRIVILEGE, "user %s is not an admin, so not an officer", r->who.name);
        return NULL;
    }
    if (!cf_principal_has_tenant(&r->who, tenant)) {
        cm_fail(r, 403, CM_PRIVILEGE, "user %s is not a member of tenant '%.64s'", r->who.name,
                tenant);
        return NULL;
    }
    return tenant;
}

/* ---- small parsers -------------------------------------------------------------------------- */

static bool has_ctl(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return true;
    return false;
}

/* A whole decimal number from 0 to `max`, no sign. */
static int parse_num(const char *s, int64_t max, int64_t *out)
{
    int64_t v;
    if (!s || !*s || *s == '+' || *s == '-' || cf_parse_i64(s, &v) != 0 || v < 0 || v > max)
        return CF_EINVAL;
    *out = v;
    return 0;
}

/* Hex with any case and optional ':' separators to upper-case hex without them; leading zero
 * bytes dropped when `strip_zeros` (serials: BN_bn2hex writes none). CF_EINVAL when not hex. */
static int norm_hex(const char *in, bool strip_zeros, char *out, size_t outlen)
{
    size_t o = 0;
    for (const char *p = in; *p; p++) {
        if (*p == ':' || *p == ' ')
            continue;
        if (!isxdigit((unsigned char)*p))
            return CF_EINVAL;
        if (o + 2 >= outlen)
            return CF_EINVAL;
        out[o++] = (char)toupper((unsigned char)*p);
    }
    out[o] = '\0';
    if (!o)
        return CF_EINVAL;
    if (strip_zeros) {
        size_t z = 0;
        while (z + 1 < o && out[z] == '0')
            z++;
        memmove(out, out + z, o - z + 1);
        o -= z;
        if (o % 2) {
            memmove(out + 1, out, o + 1);
            out[0] = '0';
        }
    } else if (o % 2) {
        return CF_EINVAL;
    }
    return 0;
}

/* "CN=<value>" escaped exactly as the store's subjects are (OpenSSL's XN_FLAG_RFC2253). */
static char *cn_rdn(const char *value)
{
    X509_NAME *n = X509_NAME_new();
    char *out = NULL;
    ERR_set_mark();
    if (n && X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_UTF8, (const unsigned char *)value, -1,
                                        -1, 0) == 1)
        out = cf_api_dn_text(n);
    ERR_pop_to_mark();
    X509_NAME_free(n);
    return out;
}

/* Base64 as clients send it: wrapped in lines, with or without padding, '+' turned into ' ' by a
 * form encoding that was not applied, or in the URL-safe alphabet. NULL when it is not Base64. */
static uint8_t *b64_decode(const uint8_t *in, size_t len, size_t *outlen)
{
    while (len && isspace(*in)) {
        in++;
        len--;
    }
    while (len && isspace(in[len - 1]))
        len--;
    char *t = cf_xmalloc(len + 1);
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        char ch = (char)in[i];
        if (ch == '\r' || ch == '\n' || ch == '\t')
            continue;
        t[n++] = ch == ' ' || ch == '-' ? '+' : ch == '_' ? '/' : ch;
    }
    t[n] = '\0';
    size_t cap = n / 4 * 3 + 3;
    uint8_t *out = cf_xmalloc(cap);
    size_t olen = 0;
    int rc = sodium_base642bin(out, cap, t, n, NULL, &olen, NULL, sodium_base64_VARIANT_ORIGINAL);
    if (rc != 0)
        rc = sodium_base642bin(out, cap, t, n, NULL, &olen, NULL,
                               sodium_base64_VARIANT_ORIGINAL_NO_PADDING);
    free(t);
    if (rc != 0 || !olen) {
        free(out);
        return NULL;
    }
    *outlen = olen;
    return out;
}

static char *b64_encode(const uint8_t *p, size_t n)
{
    size_t cap = sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_ORIGINAL);
    char *out = cf_xmalloc(cap);
    sodium_bin2base64(out, cap, p, n, sodium_base64_VARIANT_ORIGINAL);
    return out;
}

/* ---- forms ---------------------------------------------------------------------------------- */

struct field {
    char *name;
    uint8_t *val; /* NUL-terminated copy, so that text fields can be used as strings */
    size_t len;
};

struct form {
    struct field *f;
    size_t n;
};

static void form_free(struct form *fm)
{
    for (size_t i = 0; i < fm->n; i++) {
        free(fm->f[i].name);
        if (fm->f[i].val)
            sodium_memzero(fm->f[i].val, fm->f[i].len);
        free(fm->f[i].val);
    }
    free(fm->f);
    memset(fm, 0, sizeof *fm);
}

static void form_add(struct form *fm, char *name, const uint8_t *val, size_t len)
{
    fm->f = cf_xrealloc(fm->f, (fm->n + 1) * sizeof *fm->f);
    uint8_t *v = cf_xmalloc(len + 1);
    memcpy(v, val, len);
    v[len] = '\0';
    fm->f[fm->n++] = (struct field){name, v, len};
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes one application/x-www-form-urlencoded component into a new buffer. */
static uint8_t *url_decode(const char *s, size_t n, size_t *outlen)
{
    uint8_t *out = cf_xmalloc(n + 1);
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int ch = (unsigned char)s[i];
        if (ch == '+') {
            ch = ' ';
        } else if (ch == '%' && i + 2 < n) {
            int a = hexval((unsigned char)s[i + 1]), b = hexval((unsigned char)s[i + 2]);
            if (a >= 0 && b >= 0) {
                ch = a * 16 + b;
                i += 2;
            }
        }
        out[o++] = (uint8_t)ch;
    }
    out[o] = '\0';
    *outlen = o;
    return out;
}

static void parse_urlencoded(const uint8_t *body, size_t len, struct form *fm)
{
    const char *p = (const char *)body, *end = p + len;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *stop = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(stop - p));
        if (stop > p) {
            size_t nlen, vlen;
            uint8_t *name = url_decode(p, (size_t)((eq ? eq : stop) - p), &nlen);
            uint8_t *val = eq ? url_decode(eq + 1, (size_t)(stop - eq - 1), &vlen) : NULL;
            if (!memchr(name, '\0', nlen))
                form_add(fm, (char *)name, val ? val : (const uint8_t *)"", val ? vlen : 0);
            else
                free(name);
            if (val)
                sodium_memzero(val, vlen);
            free(val);
        }
        p = stop + 1;
    }
}

static bool media_is(const char *ct, const char *type)
{
    if (!ct)
        return false;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    size_t n = strcspn(ct, ";");
    while (n && (ct[n - 1] == ' ' || ct[n - 1] == '\t'))
        n--;
    return n == strlen(type) && strncasecmp(ct, type, n) == 0;
}

/* Reads the request's form (multipart/form-data or application/x-www-form-urlencoded; an empty
 * body without a type is an empty form). Answers itself and returns -1 on error. */
static int read_form(struct cf_api_request *r, struct form *fm)
{
    memset(fm, 0, sizeof *fm);
    const char *ct = cf_http_header(r->http, "Content-Type");
    const uint8_t *body = r->http->body;
    size_t len = r->http->body_len;
    if (media_is(ct, "application/x-www-form-urlencoded") || (!ct && !len)) {
        parse_urlencoded(body, len, fm);
        return 0;
    }
    if (!media_is(ct, "multipart/form-data")) {
        cm_fail(r, 415, CM_ENCODING,
                "Content-Type must be multipart/form-data or application/x-www-form-urlencoded");
        return -1;
    }
    char boundary[CF_MULTIPART_MAX_BOUNDARY + 1], err[256];
    struct cf_multipart mp;
    if (cf_multipart_boundary(ct, boundary, err, sizeof err) != 0 ||
        cf_multipart_parse(body, len, boundary, NULL, &mp, err, sizeof err) != 0) {
        cm_fail(r, 400, CM_ENCODING, "the multipart body cannot be read: %s", err);
        return -1;
    }
    for (size_t i = 0; i < mp.n_parts; i++)
        form_add(fm, cf_xstrdup(mp.parts[i].name), mp.parts[i].data, mp.parts[i].len);
    cf_multipart_free(&mp);
    return 0;
}

/* The field `name`: NULL when absent; *count (may be NULL) gets how often it was given. */
static const struct field *form_get(const struct form *fm, const char *name, size_t *count)
{
    const struct field *first = NULL;
    size_t k = 0;
    for (size_t i = 0; i < fm->n; i++) {
        if (strcmp(fm->f[i].name, name) == 0) {
            if (!first)
                first = &fm->f[i];
            k++;
        }
    }
    if (count)
        *count = k;
    return first;
}

/* A text field that must be given once, hold no control characters or NUL, and fit MAX_FIELD.
 * Answers itself (-7 missing, -14 otherwise) and returns NULL on error. */
static const char *text_field(struct cf_api_request *r, const struct form *fm, const char *name)
{
    size_t count;
    const struct field *f = form_get(fm, name, &count);
    if (!f || !f->len) {
        cm_fail(r, 0, CM_MISSING, "the field %s is missing", name);
        return NULL;
    }
    if (count > 1) {
        cm_fail(r, 0, CM_BAD_VALUE, "the field %s is given %zu times; give it once", name, count);
        return NULL;
    }
    const char *v = (const char *)f->val;
    if (strlen(v) != f->len || f->len > MAX_FIELD || has_ctl(v)) {
        cm_fail(r, 0, CM_BAD_VALUE, "the field %s is not a valid value", name);
        return NULL;
    }
    return v;
}

/* ---- output formats ------------------------------------------------------------------------- */

enum fmt { FMT_P7, FMT_DER, FMT_PEM };

/* The format an Accept header asks for: the supported media range with the highest q (the first
 * of equals); PKCS#7 when none is named, and for any wildcard. */
static enum fmt accept_fmt(const char *accept)
{
    static const struct {
        const char *type;
        enum fmt f;
    } known[] = {
        {"application/pkcs7-mime", FMT_P7},
        {"application/x-pkcs7-mime", FMT_P7},
        {"application/pkix-cert", FMT_DER},
        {"application/pem-certificate-chain", FMT_PEM},
    };
    enum fmt best = FMT_P7;
    double best_q = -1;
    const char *p = accept ? accept : "";
    while (*p) {
        size_t item = strcspn(p, ",");
        size_t tlen = strcspn(p, ",;");
        const char *t = p;
        while (tlen && (*t == ' ' || *t == '\t')) {
            t++;
            tlen--;
        }
        while (tlen && (t[tlen - 1] == ' ' || t[tlen - 1] == '\t'))
            tlen--;
        double q = 1;
        const char *qp = p;
        while ((qp = strchr(qp, ';')) && qp < p + item) {
            qp++;
            while (*qp == ' ')
                qp++;
            if ((qp[0] == 'q' || qp[0] == 'Q') && qp[1] == '=')
                q = strtod(qp + 2, NULL);
        }
        for (size_t i = 0; i < CF_ARRAY_LEN(known); i++) {
            if (tlen == strlen(known[i].type) && strncasecmp(t, known[i].type, tlen) == 0 &&
                q > 0 && q > best_q) {
                best = known[i].f;
                best_q = q;
            }
        }
        p += item;
        if (*p == ',')
            p++;
    }
    return best;
}

/* Answers a certificate in the format of the request's Accept header, with its certId. */
static void send_cert(struct cf_api_request *r, int64_t cert_id, const uint8_t *der, size_t der_len,
                      const uint8_t *p7, size_t p7_len, const char *pem)
{
    char id[32];
    snprintf(id, sizeof id, "%" PRId64, cert_id);
    const char *const headers[] = {"certId", id, NULL};
    switch (accept_fmt(cf_http_header(r->http, "Accept"))) {
    case FMT_DER:
        cf__api_respond_headers(r, 200, "application/pkix-cert", headers, der, der_len);
        break;
    case FMT_PEM:
        cf__api_respond_headers(r, 200, "application/pem-certificate-chain", headers, pem,
                                strlen(pem));
        break;
    case FMT_P7:
        cf__api_respond_headers(r, 200, "application/pkcs7-mime", headers, p7, p7_len);
        break;
    }
}

/* ---- the certificate object ----------------------------------------------------------------- */

static const char *reason_text(int reason)
{
    switch (reason) {
    case 0:
        return "unspecified";
    case 1:
        return "key compromise";
    case 3:
        return "affiliation changed";
    case 4:
        return "superseded";
    case 5:
        return "cessation of operation";
    case 6:
        return "certificate hold";
    case 9:
        return "privilege withdrawn";
    default:
        return "unknown";
    }
}

static bool reason_ok(int64_t reason)
{
    return reason == 0 || reason == 1 || reason == 3 || reason == 4 || reason == 5 || reason == 6 ||
           reason == 9;
}

/* "2021-12-20T08:01:30Z", as Certificate Manager writes times. */
static json_t *iso_seconds(uint64_t ms)
{
    time_t t = (time_t)(ms / 1000u);
    struct tm tm;
    char b[32];
    if (!gmtime_r(&t, &tm) || strftime(b, sizeof b, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        return json_null();
    return json_string(b);
}

static json_t *cert_object(const struct cf_cert_row *c, uint64_t now)
{
    json_t *o = json_object();
    char id[32];
    snprintf(id, sizeof id, "%" PRId64, c->id);
    bool revoked = c->status && strcmp(c->status, "revoked") == 0;
    json_object_set_new(o, "certid", json_string(id));
    json_object_set_new(o, "status", json_string(revoked ? "revoked" : "active"));
    if (revoked) {
        json_object_set_new(o, "reason", json_string(reason_text(c->revocation_reason)));
        /* A row revoked by other means than this API may lack the time. */
        if (c->revoked_at)
            json_object_set_new(o, "revocationtime", iso_seconds(c->revoked_at));
    }
    json_object_set_new(o, "validfrom", json_integer((json_int_t)c->not_before));
    json_object_set_new(o, "validto", json_integer((json_int_t)c->not_after));
    json_object_set_new(o, "certificateserialnumber", json_string(c->serial ? c->serial : ""));
    json_object_set_new(o, "subject", json_string(c->subject ? c->subject : ""));
    json_object_set_new(o, "issuer", json_string(c->issuer ? c->issuer : ""));
    const unsigned char *p = c->der;
    ERR_set_mark();
    X509 *x =
        c->der && c->der_len <= (size_t)LONG_MAX ? d2i_X509(NULL, &p, (long)c->der_len) : NULL;
    json_object_set_new(o, "subjectType", json_string(x && X509_check_ca(x) ? "CA" : "EE"));
    if (c->ski)
        json_object_set_new(o, "subjectKeyIdentifier", json_string(c->ski));
    char *aki = x ? cf_cert_key_id_hex(x, true) : NULL;
    if (aki)
        json_object_set_new(o, "authorityKeyIdentifier", json_string(aki));
    free(aki);
    X509_free(x);
    ERR_pop_to_mark();
    const char *validity = now < c->not_before  ? "notYetValid"
                           : now > c->not_after ? "expired"
                                                : "valid";
    json_object_set_new(o, "validity", json_string(validity));
    return o;
}

/* ---- the dataToSign handshake ---------------------------------------------------------------- */

struct sign_op {
    const char *op; /* "pkcs10", "revoke" */
    char field1[MAX_FIELD + 32];
    char field2[MAX_FIELD + 32];
};

/* SHA-256 of the TLS client certificate's DER, lower-case hex; false when it cannot be encoded. */
static bool officer_hash(X509 *cert, char out[65])
{
    unsigned char *der = NULL;
    int n = cert ? i2d_X509(cert, &der) : -1;
    if (n <= 0)
        return false;
    cf_sha256_hex(der, (size_t)n, out);
    OPENSSL_free(der);
    return true;
}

/* The dataToSign text of docs/cm-rest.md for `window`. Every field is free of line breaks (names
 * with control characters are refused before), so the lines cannot be shifted into each other. */
static char *data_to_sign(const struct cf__cmrest *c, const struct sign_op *op, const char *tenant,
                          const char *officer, int64_t window)
{
    struct cf_buf b;
    cf_buf_init(&b);
    cf_buf_printf(&b,
                  "certflow-cm-rest-v1\nop=%s\ntenant=%s\nofficer=%s\nwindow=%" PRId64 "\n%s\n%s\n",
                  op->op, tenant, officer, window, op->field1, op->field2);
    uint8_t mac[crypto_auth_hmacsha256_BYTES];
    crypto_auth_hmacsha256(mac, (const unsigned char *)b.data, b.len, c->mac_key);
    char hex[2 * sizeof mac + 1];
    sodium_bin2hex(hex, sizeof hex, mac, sizeof mac);
    cf_buf_printf(&b, "mac=%s\n", hex);
    return cf_buf_steal(&b);
}

static int64_t window_now(void)
{
    return (int64_t)(cf_now_ms() / 1000u / WINDOW_S);
}

/* The -19 answer with this request's dataToSign. */
static void ask_signature(struct cf_api_request *r, const struct sign_op *op, const char *tenant,
                          const char *officer)
{
    char *text = data_to_sign(cm_of(r->api), op, tenant, officer, window_now());
    char *b64 = b64_encode((const uint8_t *)text, strlen(text));
    free(text);
    cm_send(r, 200,
            json_pack("{s:i, s:s, s:s}", "error", CM_SIGN, "msg", "Sign request and send again",
                      "dataToSign", b64));
    free(b64);
}

/* True when the one signer CMS_verify() found is `cert` (CMS_NOINTERN already ensures it; this
 * says so where the decision is made). */
static bool signer_is(CMS_ContentInfo *cms, X509 *cert)
{
    STACK_OF(X509) *signers = CMS_get0_signers(cms);
    bool same = sk_X509_num(signers) == 1 && X509_cmp(sk_X509_value(signers, 0), cert) == 0;
    sk_X509_free(signers);
    return same;
}

/*
 * Checks the officer's signature of a write: an attached CMS SignedData with one signer, whose
 * signature verifies with the TLS client certificate's key, over eContent equal to the dataToSign
 * of this request in the current or the previous window. 0, or -1 with the reason in `msg`.
 *
 * The signer's certificate is not validated again here (CMS_NO_SIGNER_CERT_VERIFY, no store):
 * the only certificate a signature may verify with is the one the TLS layer has just validated
 * against the listener's truststore (and CRL), for this very connection, and that was mapped to an
 * admin of the tenant. CMS_NOINTERN makes CMS_verify() look for the signer only among the
 * certificates given to it, which is that one alone, so a certificate carried inside the CMS,
 * whatever it chains to, can never be the signer. A second validation against the same store
 * would add nothing; validating against another store would make the officer depend on two
 * trust configurations.
 */
static int verify_signature(struct cf_api_request *r, const struct field *sig,
                            const struct sign_op *op, const char *tenant, const char *officer,
                            char *msg, size_t msglen)
{
    size_t der_len = sig->len;
    /* Base64 as documented; a multipart part may also carry the DER itself. */
    uint8_t *der = sig->val[0] == 0x30 ? cf_xmemdup(sig->val, sig->len)
                                       : b64_decode(sig->val, sig->len, &der_len);
    if (!der) {
        cf_errf(msg, msglen, "the signature is not Base64");
        return -1;
    }
    int result = -1;
    ERR_set_mark();
    const unsigned char *p = der;
    CMS_ContentInfo *cms =
        der_len <= (size_t)LONG_MAX ? d2i_CMS_ContentInfo(NULL, &p, (long)der_len) : NULL;
    STACK_OF(X509) *certs = sk_X509_new_null();
    BIO *out = BIO_new(BIO_s_mem());
    X509 *officer_cert = r->http->peer_cert;
    if (!cms || (size_t)(p - der) != der_len) {
        cf_errf(msg, msglen, "the signature is not a DER CMS structure");
    } else if (OBJ_obj2nid(CMS_get0_type(cms)) != NID_pkcs7_signed) {
        cf_errf(msg, msglen, "the signature is not a CMS SignedData");
    } else if (CMS_is_detached(cms)) {
        cf_errf(msg, msglen,
                "the signature is detached; sign with the content attached (openssl cms -sign "
                "-nodetach)");
    } else if (sk_CMS_SignerInfo_num(CMS_get0_SignerInfos(cms)) != 1) {
        cf_errf(msg, msglen, "the signature must have exactly one signer");
    } else if (!certs || !out || !officer_cert || !sk_X509_push(certs, officer_cert)) {
        cf_errf(msg, msglen, "the signature cannot be checked now");
    } else if (CMS_verify(cms, certs, NULL, NULL, out,
                          CMS_NO_SIGNER_CERT_VERIFY | CMS_NOINTERN | CMS_BINARY) != 1) {
        cf_errf(msg, msglen,
                "the signature does not verify with the key of the client certificate of this "
                "connection (signed by another certificate, or altered)");
    } else if (!signer_is(cms, officer_cert)) {
        cf_errf(msg, msglen, "the signer is not the client certificate of this connection");
    } else {
        char *data = NULL;
        long n = BIO_get_mem_data(out, &data);
        int64_t w = window_now();
        for (int64_t k = 0; k < 2 && result; k++) {
            char *want = data_to_sign(cm_of(r->api), op, tenant, officer, w - k);
            size_t wl = strlen(want);
            if (n >= 0 && (size_t)n == wl && data && CRYPTO_memcmp(data, want, wl) == 0)
                result = 0;
            sodium_memzero(want, wl);
            free(want);
        }
        if (result)
            cf_errf(msg, msglen,
                    "the signed data is not the dataToSign of this request (another request, "
                    "officer or tenant, or older than 10 minutes); send the request without a "
                    "signature for a new dataToSign");
    }
    BIO_free(out);
    sk_X509_free(certs); /* the officer's certificate is borrowed from the connection */
    CMS_ContentInfo_free(cms);
    ERR_pop_to_mark();
    free(der);
    return result;
}

/* Round 1 or 2 of a write: 1 when the signature is good and the write may go on; 0 when the
 * request was answered (with -19, or -17). */
static int signed_round(struct cf_api_request *r, const struct form *fm, const struct sign_op *op,
                        const char *tenant)
{
    char officer[65];
    if (!officer_hash(r->http->peer_cert, officer)) {
        cm_fail(r, 500, CM_GENERAL, "the client certificate cannot be encoded");
        return 0;
    }
    size_t count;
    const struct field *sig = form_get(fm, "signature", &count);
    if (!sig || !sig->len) {
        ask_signature(r, op, tenant, officer);
        return 0;
    }
    if (count > 1) {
        cm_fail(r, 0, CM_BAD_VALUE, "the field signature is given %zu times; give it once", count);
        return 0;
    }
    char msg[512];
    if (verify_signature(r, sig, op, tenant, officer, msg, sizeof msg) != 0) {
        cm_fail(r, 0, CM_BAD_SIGNATURE, "%s", msg);
        return 0;
    }
    return 1;
}

/* ---- POST /certificates/pkcs10 -------------------------------------------------------------- */

struct issue {
    struct cf_api_request *r;
    struct cf__cmrest *c;
    char user[128];
};

static void issue_done(void *arg, const struct cf_ca_issue_result *res)
{
    struct issue *is = arg;
    struct cf_api_request *r = is->r;
    is->c->pending--;
    if (res->status == CF_CA_OK) {
        cf_log(CF_LOG_INFO, "cm-rest: issued certid=%" PRId64 " user=%s peer=%s", res->cert_id,
               is->user, r->http->peer_addr);
        send_cert(r, res->cert_id, res->der, res->der_len, res->chain_p7, res->chain_p7_len,
                  res->pem_chain);
    } else if (res->status == CF_CA_REQUEST_FAILED) {
        cm_fail(r, 0, CM_BAD_VALUE, "%s", res->message ? res->message : "the CA said no");
    } else if (res->status == CF_CA_COMMON_ERROR) {
        cm_fail(r, 0, CM_ENCODING, "%s", res->message ? res->message : "the request is not valid");
    } else {
        cm_fail(r, 0, CM_GENERAL, "%s", res->message ? res->message : "the CA failed");
    }
    free(is);
}

/* The CSR of the pkcs10 field as DER: raw DER, PEM text, or Base64 of the DER. Answers itself
 * (-7, -8) and returns NULL on error. */
static uint8_t *csr_of(struct cf_api_request *r, const struct form *fm, size_t *len)
{
    size_t count;
    const struct field *f = form_get(fm, "pkcs10", &count);
    if (!f || !f->len) {
        cm_fail(r, 0, CM_MISSING, "the field pkcs10 is missing");
        return NULL;
    }
    if (count > 1) {
        cm_fail(r, 0, CM_BAD_VALUE, "the field pkcs10 is given %zu times; give one CSR", count);
        return NULL;
    }
    uint8_t *bytes;
    size_t n;
    bool pem = f->len > 10 && strstr((const char *)f->val, "-----BEGIN") != NULL;
    if (f->val[0] == 0x30 || pem) {
        bytes = cf_xmemdup(f->val, f->len);
        n = f->len;
    } else if (!(bytes = b64_decode(f->val, f->len, &n))) {
        cm_fail(r, 0, CM_ENCODING,
                "the field pkcs10 is neither Base64 of a DER CSR nor PEM text of one");
        return NULL;
    }
    char err[512];
    struct cf_csr *csr = NULL;
    int rc = cf_csr_decode(bytes, n, &csr, err, sizeof err);
    if (!rc && cf_csr_verify(csr, err, sizeof err) != 0)
        rc = CF_EAUTH;
    uint8_t *der = NULL;
    if (!rc) {
        const uint8_t *d = cf_csr_der(csr, len);
        der = cf_xmemdup(d, *len);
    }
    cf_csr_free(csr);
    free(bytes);
    if (rc) {
        cm_fail(r, 0, CM_ENCODING, "the field pkcs10 is not a valid PKCS#10 request: %s", err);
        return NULL;
    }
    return der;
}

static void h_pkcs10(struct cf_api_request *r)
{
    const char *tenant = cm_begin(r, 0);
    if (!tenant)
        return;
    struct cf__cmrest *c = cm_of(r->api);
    struct form fm;
    if (read_form(r, &fm) != 0)
        return;
    size_t der_len = 0;
    uint8_t *der = csr_of(r, &fm, &der_len);
    const char *procname = der ? text_field(r, &fm, "procname") : NULL;
    if (!procname)
        goto out;
    struct cf_template_row t;
    int rc = cf_admin_template_get(cf_api_store(r->api), tenant, procname, &t);
    if (rc == CF_ENOENT) {
        cm_fail(r, 0, CM_BAD_VALUE, "procedure '%s' does not exist in tenant '%s'", procname,
                tenant);
        goto out;
    }
    if (rc) {
        cm_fail(r, 500, CM_GENERAL, "the templates cannot be read: %s", cf_strerror(rc));
        goto out;
    }
    bool embedded = strcmp(t.connector, "embedded") == 0;
    char connector[32];
    cf_strlcpy(connector, t.connector, sizeof connector);
    cf_template_row_free(&t);
    if (!embedded) {
        cm_fail(r, 0, CM_BAD_VALUE,
                "procedure '%s' is a template of the %s connector; certflowd issues only "
                "through its embedded CA",
                procname, connector);
        goto out;
    }
    struct sign_op op = {.op = "pkcs10"};
    char sha[65];
    cf_sha256_hex(der, der_len, sha);
    snprintf(op.field1, sizeof op.field1, "procname=%s", procname);
    snprintf(op.field2, sizeof op.field2, "pkcs10=%s", sha);
    if (!signed_round(r, &fm, &op, tenant))
        goto out;
    if (!c->ca) {
        cm_fail(r, 500, CM_GENERAL, "this server has no CA service");
        goto out;
    }
    struct issue *is = cf_xcalloc(1, sizeof *is);
    is->r = r;
    is->c = c;
    cf_strlcpy(is->user, r->who.name, sizeof is->user);
    rc = cf_ca_service_issue(c->ca, tenant, procname, der, der_len, SOURCE, issue_done, is);
    if (rc) {
        free(is);
        cm_fail(r, 500, CM_GENERAL, "the CA cannot take the request now: %s", cf_strerror(rc));
        goto out;
    }
    c->pending++;
out:
    free(der);
    form_free(&fm);
}

/* ---- POST /certificates/revoke -------------------------------------------------------------- */

struct revoke {
    struct cf_api_request *r;
    struct cf__cmrest *c;
    char tenant[256];
    char user[128];
    int64_t id;
    int reason;
    int rc;
};

static int revoke_tx(struct cf_engine *e, void *arg)
{
    struct revoke *rv = arg;
    rv->rc =
        cf_castore_cert_revoke(cf_engine_store(e), rv->tenant, rv->id, rv->reason, cf_now_ms());
    /* A refusal is an answer, not a failed batch: the other work of the batch commits. */
    return rv->rc == CF_ENOENT || rv->rc == CF_ESTATE || rv->rc == CF_EINVAL ? 0 : rv->rc;
}

static void revoke_done(void *arg, int rc)
{
    struct revoke *rv = arg;
    struct cf_api_request *r = rv->r;
    rv->c->pending--;
    if (!rc)
        rc = rv->rc;
    if (!rc) {
        cf_log(CF_LOG_INFO, "cm-rest: revoked certid=%" PRId64 " tenant=%s reason=%d user=%s",
               rv->id, rv->tenant, rv->reason, rv->user);
        cm_send(r, 200, ok_body());
    } else if (rc == CF_ESTATE) {
        cm_fail(r, 0, CM_BAD_VALUE, "certificate %" PRId64 " is already revoked", rv->id);
    } else if (rc == CF_ENOENT) {
        cm_fail(r, 404, CM_BAD_VALUE, "no certificate with certid %" PRId64, rv->id);
    } else {
        cm_fail(r, 500, CM_GENERAL, "the revocation could not be stored: %s", cf_strerror(rc));
    }
    free(rv);
}

static void h_revoke(struct cf_api_request *r)
{
    const char *tenant = cm_begin(r, 0);
    if (!tenant)
        return;
    struct cf__cmrest *c = cm_of(r->api);
    struct form fm;
    if (read_form(r, &fm) != 0)
        return;
    const char *certid = text_field(r, &fm, "certid");
    if (!certid)
        goto out;
    int64_t id, reason = 0;
    size_t count;
    const struct field *rf = form_get(&fm, "reason", &count);
    if (rf && count > 1) {
        cm_fail(r, 0, CM_BAD_VALUE, "the field reason is given %zu times; give it once", count);
        goto out;
    }
    if (rf && (parse_num((const char *)rf->val, 10, &reason) != 0 || !reason_ok(reason))) {
        cm_fail(r, 0, CM_BAD_VALUE, "reason must be 0, 1, 3, 4, 5, 6 or 9 (RFC 5280 CRLReason)");
        goto out;
    }
    struct cf_cert_row cert;
    int rc = parse_num(certid, INT64_MAX, &id) == 0 && id > 0
                 ? cf_castore_cert_get(cf_api_store(r->api), tenant, id, &cert)
                 : CF_ENOENT;
    if (rc == CF_ENOENT) {
        cm_fail(r, 404, CM_BAD_VALUE, "no certificate with certid %s", certid);
        goto out;
    }
    if (rc) {
        cm_fail(r, 500, CM_GENERAL, "the certificates cannot be read: %s", cf_strerror(rc));
        goto out;
    }
    bool revoked = strcmp(cert.status, "revoked") == 0;
    cf_cert_row_free(&cert);
    if (revoked) {
        cm_fail(r, 0, CM_BAD_VALUE, "certificate %" PRId64 " is already revoked", id);
        goto out;
    }
    struct sign_op op = {.op = "revoke"};
    snprintf(op.field1, sizeof op.field1, "certid=%" PRId64, id);
    snprintf(op.field2, sizeof op.field2, "reason=%d", (int)reason);
    if (!signed_round(r, &fm, &op, tenant))
        goto out;
    struct revoke *rv = cf_xcalloc(1, sizeof *rv);
    rv->r = r;
    rv->c = c;
    cf_strlcpy(rv->tenant, tenant, sizeof rv->tenant);
    cf_strlcpy(rv->user, r->who.name, sizeof rv->user);
    rv->id = id;
    rv->reason = (int)reason;
    c->pending++;
    cf_engine_submit(cf_api_engine(r->api), revoke_tx, revoke_done, rv);
out:
    form_free(&fm);
}

/* ---- GET /certificates ---------------------------------------------------------------------- */

struct hits {
    json_t *a;
    uint64_t now;
};

static int add_hit(void *arg, const struct cf_cert_row *c)
{
    struct hits *h = arg;
    json_array_append_new(h->a, cert_object(c, h->now));
    return 0;
}

/* A query parameter into `buf`: 1 when given, 0 when not, -1 when answered (too long). */
static int query(struct cf_api_request *r, const char *name, char *buf, size_t len)
{
    int rc = cf_http_query_param(r->http, name, buf, len);
    if (rc == CF_ELIMIT) {
        cm_fail(r, 0, CM_BAD_VALUE, "the parameter %s is too long", name);
        return -1;
    }
    return rc == 0 ? 1 : 0;
}

static void h_search(struct cf_api_request *r)
{
    const char *tenant = cm_begin(r, 0);
    if (!tenant)
        return;
    char serial_in[256], serial[256], ski_in[256], ski[256], cn[1024], revoked[16], num[32];
    struct cf_castore_search q = {.tenant_id = tenant, .limit = DEFAULT_LIMIT};
    char *rdn = NULL;
    int g;
    if ((g = query(r, "certificateSerialNumber", serial_in, sizeof serial_in)) < 0)
        return;
    if (g && norm_hex(serial_in, true, serial, sizeof serial) != 0) {
        cm_fail(r, 0, CM_BAD_VALUE, "certificateSerialNumber must be hexadecimal");
        return;
    }
    q.serial = g ? serial : NULL;
    if ((g = query(r, "subjectKeyIdentifier", ski_in, sizeof ski_in)) < 0)
        return;
    if (g && norm_hex(ski_in, false, ski, sizeof ski) != 0) {
        cm_fail(r, 0, CM_BAD_VALUE, "subjectKeyIdentifier must be hexadecimal (whole bytes)");
        return;
    }
    q.ski = g ? ski : NULL;
    if ((g = query(r, "subjectCommonName", cn, sizeof cn)) < 0)
        return;
    if (g && !(rdn = cn_rdn(cn))) {
        cm_fail(r, 0, CM_BAD_VALUE, "subjectCommonName is not a valid common name");
        return;
    }
    q.subject_rdn = rdn;
    if ((g = query(r, "isNotRevoked", revoked, sizeof revoked)) < 0)
        goto out;
    if (g && strcmp(revoked, "true") != 0 && strcmp(revoked, "false") != 0) {
        cm_fail(r, 0, CM_BAD_VALUE, "isNotRevoked must be true or false");
        goto out;
    }
    if (g)
        q.status = strcmp(revoked, "true") == 0 ? "active" : "revoked";
    if ((g = query(r, "searchLimit", num, sizeof num)) < 0)
        goto out;
    if (g && parse_num(num, INT64_MAX, &q.limit) != 0) {
        cm_fail(r, 0, CM_BAD_VALUE, "searchLimit must be a number from 0 to %d", MAX_LIMIT);
        goto out;
    }
    if (q.limit > MAX_LIMIT)
        q.limit = MAX_LIMIT;
    if ((g = query(r, "searchOffset", num, sizeof num)) < 0)
        goto out;
    if (g && parse_num(num, INT64_MAX, &q.offset) != 0) {
        cm_fail(r, 0, CM_BAD_VALUE, "searchOffset must be a number >= 0");
        goto out;
    }
    struct hits h = {json_array(), cf_now_ms()};
    int64_t total = 0;
    int rc = cf_castore_cert_search(cf_api_store(r->api), &q, add_hit, &h, &total);
    if (rc) {
        json_decref(h.a);
        cm_fail(r, 500, CM_GENERAL, "the certificates cannot be searched: %s", cf_strerror(rc));
        goto out;
    }
    cm_send(r, 200,
            json_pack("{s:i, s:s, s:I, s:o}", "error", CM_OK, "msg", "OK", "searchHits",
                      (json_int_t)total, "certificates", h.a));
out:
    free(rdn);
}

/* ---- GET /certificates/{certid}/details and /download --------------------------------------- */

/* The certificate named by the route's last capture, with its DER. Answers itself (404 -14) and
 * returns -1 when the tenant has none. */
static int route_cert(struct cf_api_request *r, const char *tenant, struct cf_cert_row *out)
{
    const char *certid = r->captures[r->n_captures - 1];
    int64_t id;
    int rc = parse_num(certid, INT64_MAX, &id) == 0 && id > 0
                 ? cf_castore_cert_get(cf_api_store(r->api), tenant, id, out)
                 : CF_ENOENT;
    if (rc == CF_ENOENT) {
        cm_fail(r, 404, CM_BAD_VALUE, "no certificate with certid %.64s", certid);
        return -1;
    }
    if (rc) {
        cm_fail(r, 500, CM_GENERAL, "the certificates cannot be read: %s", cf_strerror(rc));
        return -1;
    }
    return 0;
}

static void h_details(struct cf_api_request *r)
{
    const char *tenant = cm_begin(r, 1);
    struct cf_cert_row c;
    if (!tenant || route_cert(r, tenant, &c) != 0)
        return;
    json_t *o = cert_object(&c, cf_now_ms());
    cf_cert_row_free(&c);
    cm_send(r, 200, json_pack("{s:i, s:s, s:o}", "error", CM_OK, "msg", "OK", "certificate", o));
}

struct download {
    uv_work_t work;
    struct cf_api_request *r;
    struct cf__cmrest *c;
    int64_t id;
    uint8_t *der;
    size_t der_len;
    char *ca_dir;
    uint8_t *p7;
    size_t p7_len;
    char *pem;
    int rc;
    char err[256];
};

static void download_work(uv_work_t *w)
{
    struct download *d = cf_container_of(w, struct download, work);
    d->rc = cf_ca_service_chain(d->ca_dir, d->der, d->der_len, &d->p7, &d->p7_len, &d->pem, d->err,
                                sizeof d->err);
}

static void download_after(uv_work_t *w, int status)
{
    struct download *d = cf_container_of(w, struct download, work);
    struct cf__cmrest *c = d->c;
    c->works--;
    c->pending--;
    if (c->freeing) {
        /* The api is gone, and with it the server that owns the HTTP request. */
        cf__api_request_drop(d->r);
        if (!c->works)
            free(c);
    } else if (status || d->rc) {
        cm_fail(d->r, 500, CM_GENERAL, "the certificate's chain cannot be made: %s",
                status ? "canceled" : d->err);
    } else {
        send_cert(d->r, d->id, d->der, d->der_len, d->p7, d->p7_len, d->pem);
    }
    free(d->der);
    free(d->ca_dir);
    free(d->p7);
    free(d->pem);
    free(d);
}

static void h_download(struct cf_api_request *r)
{
    const char *tenant = cm_begin(r, 1);
    struct cf_cert_row cert;
    if (!tenant || route_cert(r, tenant, &cert) != 0)
        return;
    struct cf__cmrest *c = cm_of(r->api);
    struct download *d = cf_xcalloc(1, sizeof *d);
    d->r = r;
    d->c = c;
    d->id = cert.id;
    d->der = cert.der;
    d->der_len = cert.der_len;
    cert.der = NULL;
    cf_cert_row_free(&cert);
    const char *dir = cf_ca_service_ca_dir(c->ca);
    d->ca_dir = dir ? cf_xstrdup(dir) : NULL;
    if (uv_queue_work(cf__api_loop(r->api), &d->work, download_work, download_after) != 0) {
        free(d->der);
        free(d->ca_dir);
        free(d);
        cm_fail(r, 500, CM_GENERAL, "the download cannot be prepared now");
        return;
    }
    c->works++;
    c->pending++;
}

/* ---- GET /procedures ------------------------------------------------------------------------ */

static int add_procedure(void *arg, const struct cf_template_row *t)
{
    if (strcmp(t->connector, "embedded") == 0)
        json_array_append_new(arg, json_pack("{s:s}", "name", t->name));
    return 0;
}

static void h_procedures(struct cf_api_request *r)
{
    const char *tenant = cm_begin(r, 0);
    if (!tenant)
        return;
    char media[64];
    int g = query(r, "mediaType", media, sizeof media);
    if (g < 0)
        return;
    json_t *a = json_array();
    /* Only PKCS#10 procedures exist here; other media types have none. */
    if (!g || strcasecmp(media, "pkcs10") == 0) {
        const char *const ids[] = {tenant};
        int rc = cf_admin_template_list(cf_api_store(r->api), ids, 1, add_procedure, a);
        if (rc) {
            json_decref(a);
            cm_fail(r, 500, CM_GENERAL, "the templates cannot be read: %s", cf_strerror(rc));
            return;
        }
    }
    cm_send(r, 200, json_pack("{s:i, s:s, s:o}", "error", CM_OK, "msg", "OK", "procedures", a));
}

/* ---- registration --------------------------------------------------------------------------- */

#define PG "/pgwy/api"

/* CF_ROUTE_PUBLIC: the router does not authenticate these; cm_begin() does, so that refusals
 * come in Certificate Manager's envelope. */
static const struct cf_route routes[] = {
    {"POST", PG "/certificates/pkcs10", h_pkcs10, CF_ROUTE_PUBLIC, BODY_LIMIT},
    {"POST", PG "/{tenant}/certificates/pkcs10", h_pkcs10, CF_ROUTE_PUBLIC, BODY_LIMIT},
    {"POST", PG "/certificates/revoke", h_revoke, CF_ROUTE_PUBLIC, BODY_LIMIT},
    {"POST", PG "/{tenant}/certificates/revoke", h_revoke, CF_ROUTE_PUBLIC, BODY_LIMIT},
    {"GET", PG "/certificates", h_search, CF_ROUTE_PUBLIC, 0},
    {"GET", PG "/{tenant}/certificates", h_search, CF_ROUTE_PUBLIC, 0},
    {"GET", PG "/certificates/{certid}/details", h_details, CF_ROUTE_PUBLIC, 0},
    {"GET", PG "/{tenant}/certificates/{certid}/details", h_details, CF_ROUTE_PUBLIC, 0},
    {"GET", PG "/certificates/{certid}/download", h_download, CF_ROUTE_PUBLIC, 0},
    {"GET", PG "/{tenant}/certificates/{certid}/download", h_download, CF_ROUTE_PUBLIC, 0},
    {"GET", PG "/procedures", h_procedures, CF_ROUTE_PUBLIC, 0},
    {"GET", PG "/{tenant}/procedures", h_procedures, CF_ROUTE_PUBLIC, 0},
};

void cf_api_cmrest_routes(struct cf_api *api, struct cf_ca_svc *ca)
{
    struct cf__cmrest **slot = cf__api_cmrest_slot(api);
    if (!*slot) {
        struct cf__cmrest *c = cf_xcalloc(1, sizeof *c);
        c->api = api;
        randombytes_buf(c->mac_key, sizeof c->mac_key);
        *slot = c;
    }
    (*slot)->ca = ca;
    cf_api_register(api, routes, CF_ARRAY_LEN(routes));
}
