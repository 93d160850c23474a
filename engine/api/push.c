/*
 * The certificate push endpoint of Smart ID Identity Manager, as Certificate Manager's
 * distribution rules call it:
 *
 *   POST /ws/certificate/register/<certificateCoreTemplate>[/<processDefinitionId>]?tenantId=<t>
 *   Content-Type: application/pkix-cert
 *   body: Base64 of the DER certificate
 *
 * What it accepts, and the choices made where the contract is silent:
 * - The Base64 may be wrapped at any width, with LF or CRLF, and padding may be left out.
 *   PEM armour ("-----BEGIN CERTIFICATE-----") is accepted too, since people testing with curl
 *   and files from openssl have it; one certificate per push, nothing after the END line.
 * - The DER must be exactly one certificate: bytes after it are refused (400), a PKCS#10
 *   request is refused with a message that says so (400).
 * - processDefinitionId may be a definition id as the engine REST API shows it (the numeric id),
 *   "key:version" or "key:version:id" as Camunda writes ids, or a process key, which means the
 *   latest version of that key. The definition must belong to the push's tenant, like every
 *   object certflow looks up (reliability.md §3.6); one of another tenant answers 404.
 * - The caller must be a member of tenantId (403), and to start the process needs a grant of its
 *   key or of "*" in that tenant (user_process), unless an admin, as for /engine-rest starts.
 * - The dates Certificate_NotBefore and Certificate_NotAfter are process variables of type
 *   Date, as in Identity Manager's datamap.
 *
 * Durability (reliability.md §1.4 R1-R3): the certificate row, and the instance with its start
 * job when a process is named, are written in one transaction through cf_engine_submit(); the
 * answer (201) is sent only from the commit callback, and a failed commit answers 503, never
 * 201. The same certificate again in the same tenant (UNIQUE(tenant_id, sha256)) answers 200
 * with the ids of the first push and starts nothing.
 *
 * When the process cannot be started although it exists (for example it only has a message
 * start event), the certificate stays stored, the answer is 201 without an instance, and a
 * CertificatePublicationException line is logged. Incidents of instances started by a push are
 * logged the same way through cf_api_push_incident(), which the daemon's engine observer calls.
 */
#include "api/api.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/x509.h>
#include <sodium.h>

#include "api/router_internal.h"
#include "ca/x509.h"
#include "store/admin.h"

#define PUSH_BODY_LIMIT (64 * 1024)
#define MAX_SUPER_DEPTH 32

struct incident_note {
    struct incident_note *next;
    int64_t instance_id;
    char *activity_id;
    char *type;
    char *message;
};

struct cf__push {
    struct cf_push_stats stats;
    size_t pending; /* pushes waiting for their commit */
    struct cf_api *api;
    uv_timer_t timer; /* logs incident notes after the transaction that raised them */
    bool timer_init;
    struct incident_note *notes, **notes_tail;
};

static struct cf__push *push_of(struct cf_api *api)
{
    struct cf__push **slot = cf__api_push_slot(api);
    if (!*slot) {
        struct cf__push *p = cf_xcalloc(1, sizeof *p);
        p->api = api;
        p->notes_tail = &p->notes;
        *slot = p;
    }
    return *slot;
}

static void notes_free(struct incident_note *n)
{
    while (n) {
        struct incident_note *next = n->next;
        free(n->activity_id);
        free(n->type);
        free(n->message);
        free(n);
        n = next;
    }
}

static void push_close_cb(uv_handle_t *h)
{
    struct cf__push *p = cf_container_of((uv_timer_t *)h, struct cf__push, timer);
    notes_free(p->notes);
    free(p);
}

void cf__push_free(struct cf__push *p)
{
    if (!p)
        return;
    if (p->timer_init) {
        /* Notes not logged yet would be logged by a timer that can no longer find the api. */
        uv_timer_stop(&p->timer);
        uv_close((uv_handle_t *)&p->timer, push_close_cb);
        return;
    }
    notes_free(p->notes);
    free(p);
}

bool cf__push_busy(const struct cf__push *p)
{
    return p && p->pending > 0;
}

void cf_api_push_stats(const struct cf_api *api, struct cf_push_stats *out)
{
    const struct cf__push *p = cf__api_push_cslot(api);
    if (p)
        *out = p->stats;
    else
        memset(out, 0, sizeof *out);
}

/* ---- CertificatePublicationException for incidents ------------------------------------------ */

static void log_notes(uv_timer_t *t)
{
    struct cf__push *p = cf_container_of(t, struct cf__push, timer);
    struct incident_note *n = p->notes;
    p->notes = NULL;
    p->notes_tail = &p->notes;
    struct cf_store *s = cf_api_store(p->api);
    for (struct incident_note *it = n; it; it = it->next) {
        /* An incident in a called process belongs to the push that started its root. */
        int64_t id = it->instance_id;
        struct cf_cert_row c;
        int rc = CF_ENOENT;
        for (int depth = 0; id && depth < MAX_SUPER_DEPTH; depth++) {
            rc = cf_admin_cert_find_instance(s, id, &c);
            if (rc != CF_ENOENT)
                break;
            struct cf_inst_row inst;
            if (cf_store_instance_get(s, id, &inst) != 0)
                break;
            id = inst.super_instance_id;
            cf_inst_row_free(&inst);
        }
        if (rc)
            continue;
        cf_log(CF_LOG_WARN,
               "CertificatePublicationException certificateId=%" PRId64 " tenant=%s "
               "serial=%s instance=%" PRId64 " activity=%s type=%s: %s",
               c.id, c.tenant_id, c.serial, it->instance_id, it->activity_id, it->type,
               it->message);
        cf_cert_row_free(&c);
    }
    notes_free(n);
}

void cf_api_push_incident(struct cf_api *api, int64_t instance_id, const char *activity_id,
                          const char *type, const char *message)
{
    struct cf__push *p = push_of(api);
    if (!p->timer_init) {
        uv_timer_init(cf__api_loop(api), &p->timer);
        p->timer_init = true;
    }
    struct incident_note *n = cf_xcalloc(1, sizeof *n);
    n->instance_id = instance_id;
    n->activity_id = cf_xstrdup(activity_id ? activity_id : "");
    n->type = cf_xstrdup(type ? type : "");
    n->message = cf_xstrdup(message ? message : "");
    *p->notes_tail = n;
    p->notes_tail = &n->next;
    /* The observer runs inside the engine's transaction; the certificate is looked up and the
     * line logged on the next loop iteration, after that transaction ended. */
    uv_timer_start(&p->timer, log_notes, 0, 0);
}

/* ---- decoding the body ---------------------------------------------------------------------- */

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static bool is_b64(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/' || c == '=';
}

static bool starts_with(const char *s, size_t n, const char *prefix)
{
    size_t k = strlen(prefix);
    return n >= k && memcmp(s, prefix, k) == 0;
}

static const char *find_mem(const char *s, size_t n, const char *needle)
{
    size_t k = strlen(needle);
    for (size_t i = 0; i + k <= n; i++)
        if (memcmp(s + i, needle, k) == 0)
            return s + i;
    return NULL;
}

/* Decodes the body into DER. On failure fills `msg` for a 400 and returns non-zero. */
static int decode_body(const uint8_t *body, size_t len, uint8_t **der, size_t *der_len, char *msg,
                       size_t msglen)
{
    const char *s = (const char *)body;
    size_t n = len;
    while (n && is_space(*s)) {
        s++;
        n--;
    }
    while (n && is_space(s[n - 1]))
        n--;
    if (!n) {
        cf_errf(msg, msglen, "the body is empty; expected the Base64 of a DER certificate");
        return -1;
    }
    if (starts_with(s, n, "-----BEGIN ")) {
        const char *label = s + 11;
        const char *dash = find_mem(label, n - 11, "-----");
        if (!dash) {
            cf_errf(msg, msglen, "the PEM armour is not closed");
            return -1;
        }
        size_t llen = (size_t)(dash - label);
        if (find_mem(label, llen, "CERTIFICATE REQUEST")) {
            cf_errf(msg, msglen,
                    "the body is a PKCS#10 certificate request (CSR), not a "
                    "certificate; push the issued certificate");
            return -1;
        }
        if (llen != 11 || memcmp(label, "CERTIFICATE", 11) != 0) {
            cf_errf(msg, msglen, "the PEM block is a '%.*s', not a CERTIFICATE",
                    (int)(llen > 40 ? 40 : llen), label);
            return -1;
        }
        const char *content = dash + 5;
        size_t rest = n - (size_t)(content - s);
        const char *end = find_mem(content, rest, "-----END CERTIFICATE-----");
        if (!end) {
            cf_errf(msg, msglen, "the PEM block has no -----END CERTIFICATE----- line");
            return -1;
        }
        const char *after = end + 25;
        if (after != s + n) {
            cf_errf(msg, msglen,
                    "data after the -----END CERTIFICATE----- line; push one certificate");
            return -1;
        }
        s = content;
        n = (size_t)(end - content);
    }
    for (size_t i = 0; i < n; i++) {
        if (!is_space(s[i]) && !is_b64(s[i])) {
            cf_errf(msg, msglen, "the body is not Base64: invalid character 0x%02x at offset %zu",
                    (unsigned)(unsigned char)s[i], (size_t)(s - (const char *)body) + i);
            return -1;
        }
    }
    size_t cap = n / 4 * 3 + 3;
    uint8_t *out = cf_xmalloc(cap ? cap : 1);
    size_t olen = 0;
    if (sodium_base642bin(out, cap, s, n, " \t\r\n", &olen, NULL, sodium_base64_VARIANT_ORIGINAL) !=
            0 &&
        sodium_base642bin(out, cap, s, n, " \t\r\n", &olen, NULL,
                          sodium_base64_VARIANT_ORIGINAL_NO_PADDING) != 0) {
        free(out);
        cf_errf(msg, msglen, "the body is not valid Base64 (wrong length or misplaced '=')");
        return -1;
    }
    if (!olen) {
        free(out);
        cf_errf(msg, msglen, "the body decodes to nothing");
        return -1;
    }
    *der = out;
    *der_len = olen;
    return 0;
}

/* Parses exactly one DER certificate. On failure fills `msg` for a 400. */
static X509 *parse_cert(const uint8_t *der, size_t len, char *msg, size_t msglen)
{
    if (len > (size_t)PUSH_BODY_LIMIT) {
        cf_errf(msg, msglen, "the certificate is too large");
        return NULL;
    }
    const unsigned char *p = der;
    X509 *x = d2i_X509(NULL, &p, (long)len);
    if (x) {
        size_t used = (size_t)(p - der);
        if (used != len) {
            X509_free(x);
            cf_errf(msg, msglen,
                    "%zu bytes follow the certificate (%zu bytes); push exactly one DER "
                    "certificate",
                    len - used, used);
            return NULL;
        }
        return x;
    }
    ERR_clear_error();
    p = der;
    X509_REQ *req = d2i_X509_REQ(NULL, &p, (long)len);
    if (req) {
        X509_REQ_free(req);
        cf_errf(msg, msglen,
                "the body is a PKCS#10 certificate request (CSR), not a certificate; "
                "push the issued certificate");
        return NULL;
    }
    ERR_clear_error();
    cf_errf(msg, msglen, "the body is Base64 but not of a DER X.509 certificate");
    return NULL;
}

/* Days since 1970-01-01 of a civil date (proleptic Gregorian), H. Hinnant's algorithm; timegm()
 * is not POSIX. */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int asn1_time_ms(const ASN1_TIME *t, uint64_t *out)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    if (!t || ASN1_TIME_to_tm(t, &tm) != 1)
        return -1;
    int64_t days = days_from_civil((int64_t)tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday);
    int64_t secs = days * 86400 + tm.tm_hour * 3600 + tm.tm_min * 60 + tm.tm_sec;
    *out = secs < 0 ? 0 : (uint64_t)secs * 1000u;
    return 0;
}

static char *serial_hex(X509 *x)
{
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    if (!bn)
        return NULL;
    char *h = BN_bn2hex(bn);
    BN_free(bn);
    if (!h)
        return NULL;
    char *out = cf_xstrdup(h);
    OPENSSL_free(h);
    return out;
}

/* ---- resolving the process ------------------------------------------------------------------ */

struct def_scan {
    const char *tenant;
    const char *key;
    int version;
    struct cf_def_row found;
};

static int scan_def(void *arg, const struct cf_def_row *r)
{
    struct def_scan *d = arg;
    if (strcmp(r->key, d->key) != 0 || r->version != d->version || !r->tenant_id ||
        strcmp(r->tenant_id, d->tenant) != 0 || d->found.id)
        return 0;
    d->found.id = r->id;
    d->found.key = cf_xstrdup(r->key);
    d->found.version = r->version;
    d->found.tenant_id = cf_xstrdup(r->tenant_id);
    return 0;
}

static bool visible_in(const struct cf_def_row *d, const char *tenant)
{
    return d->tenant_id && strcmp(d->tenant_id, tenant) == 0;
}

/* Finds the definition a push names; CF_ENOENT when there is none visible in `tenant`. */
static int resolve_definition(struct cf_store *s, const char *tenant, const char *name,
                              struct cf_def_row *out)
{
    memset(out, 0, sizeof *out);
    int64_t id;
    if (cf_parse_i64(name, &id) == 0) {
        int rc = id > 0 ? cf_store_def_get(s, id, false, out) : CF_ENOENT;
        if (!rc && !visible_in(out, tenant)) {
            cf_def_row_free(out);
            memset(out, 0, sizeof *out);
            rc = CF_ENOENT;
        }
        return rc;
    }
    const char *c1 = strchr(name, ':');
    if (c1) {
        char key[256], ver[32];
        if ((size_t)(c1 - name) >= sizeof key)
            return CF_ENOENT;
        memcpy(key, name, (size_t)(c1 - name));
        key[c1 - name] = '\0';
        const char *c2 = strchr(c1 + 1, ':');
        size_t vlen = c2 ? (size_t)(c2 - c1 - 1) : strlen(c1 + 1);
        if (vlen >= sizeof ver)
            return CF_ENOENT;
        memcpy(ver, c1 + 1, vlen);
        ver[vlen] = '\0';
        int64_t v;
        if (cf_parse_i64(ver, &v) != 0 || v < 1 || v > 1000000000)
            return CF_ENOENT;
        /* "key:version:id" with our numeric id: take it when it agrees with key and version. */
        if (c2 && cf_parse_i64(c2 + 1, &id) == 0 && id > 0) {
            int rc = cf_store_def_get(s, id, false, out);
            if (!rc && strcmp(out->key, key) == 0 && out->version == (int)v &&
                visible_in(out, tenant))
                return 0;
            cf_def_row_free(out);
            memset(out, 0, sizeof *out);
            if (rc && rc != CF_ENOENT)
                return rc;
            return CF_ENOENT;
        }
        struct def_scan d = {.tenant = tenant, .key = key, .version = (int)v};
        int rc = cf_store_def_list(s, scan_def, &d);
        if (rc) {
            cf_def_row_free(&d.found);
            return rc;
        }
        if (!d.found.id)
            return CF_ENOENT;
        *out = d.found;
        return 0;
    }
    return cf_store_def_latest(s, tenant, name, out);
}

/* ---- the transaction ------------------------------------------------------------------------ */

struct push_tx {
    struct cf_api_request *r;
    struct cf__push *push;
    struct cf_cert_row cert;
    char *template_name;
    int64_t def_id;
    char *def_key;
    char user[128];
    /* results */
    bool duplicate;
    int64_t cert_id;
    int64_t instance_id;
    char *publication_error;
};

static void push_tx_free(struct push_tx *t)
{
    cf_cert_row_free(&t->cert);
    free(t->template_name);
    free(t->def_key);
    free(t->publication_error);
    free(t);
}

static int push_tx_fn(struct cf_engine *e, void *arg)
{
    struct push_tx *t = arg;
    struct cf_store *s = cf_engine_store(e);
    struct cf_cert_row old;
    int rc = cf_admin_cert_find_sha256(s, t->cert.tenant_id, t->cert.sha256, &old);
    if (!rc) {
        t->duplicate = true;
        t->cert_id = old.id;
        t->instance_id = old.instance_id;
        cf_cert_row_free(&old);
        return 0;
    }
    if (rc != CF_ENOENT)
        return rc;
    rc = cf_admin_cert_insert(s, &t->cert, cf_now_ms());
    if (rc)
        return rc;
    t->cert_id = t->cert.id;
    if (!t->def_id)
        return 0;

    struct cf_named_val vars[9] = {0};
    size_t n = 0;
    vars[n].name = "Certificate_CertSerial";
    cf_val_set_string(&vars[n++].val, t->cert.serial);
    vars[n].name = "Certificate_SubjectDN";
    cf_val_set_string(&vars[n++].val, t->cert.subject);
    vars[n].name = "Certificate_IssuerDN";
    cf_val_set_string(&vars[n++].val, t->cert.issuer);
    vars[n].name = "Certificate_NotBefore";
    cf_val_set_date(&vars[n++].val, (int64_t)t->cert.not_before);
    vars[n].name = "Certificate_NotAfter";
    cf_val_set_date(&vars[n++].val, (int64_t)t->cert.not_after);
    vars[n].name = "Certificate_Fingerprint";
    cf_val_set_string(&vars[n++].val, t->cert.sha256);
    vars[n].name = "Certificate_Template";
    cf_val_set_string(&vars[n++].val, t->template_name);
    vars[n].name = "certificateId";
    cf_val_set_long(&vars[n++].val, t->cert_id);
    vars[n].name = "Certificate_Cert";
    cf_val_set_bytes(&vars[n++].val, t->cert.der, t->cert.der_len);

    char err[512] = "";
    int64_t iid = 0;
    rc = cf_engine_tx_create_instance(e, t->def_id, NULL, vars, n, &iid, err, sizeof err);
    for (size_t i = 0; i < n; i++)
        cf_val_free(&vars[i].val);
    if (rc == CF_EINVALID || rc == CF_ENOENT) {
        /* The process exists but cannot be started this way: the certificate stays, the CA gets
         * its OK, and the log says why (Identity Manager's contract). */
        t->publication_error = cf_xstrdup(err[0] ? err : cf_strerror(rc));
        return 0;
    }
    if (rc)
        return rc;
    t->instance_id = iid;
    return cf_admin_cert_set_instance(s, t->cert_id, iid);
}

static json_t *answer_body(const struct push_tx *t)
{
    json_t *o = json_object();
    json_object_set_new(o, "certificateId", json_integer(t->cert_id));
    if (t->instance_id) {
        char id[32];
        snprintf(id, sizeof id, "%" PRId64, t->instance_id);
        json_object_set_new(o, "processInstanceId", json_string(id));
    } else {
        json_object_set_new(o, "processInstanceId", json_null());
    }
    json_object_set_new(o, "tenantId", json_string(t->cert.tenant_id));
    return o;
}

static void push_tx_done(void *arg, int rc)
{
    struct push_tx *t = arg;
    struct cf__push *p = t->push;
    p->pending--;
    if (rc) {
        p->stats.failed++;
        cf_log(CF_LOG_ERROR, "push: certificate not stored tenant=%s template=%s serial=%s: %s",
               t->cert.tenant_id, t->template_name, t->cert.serial, cf_strerror(rc));
        cf_api_error(t->r, 503, NULL, "the certificate could not be stored (%s); push it again",
                     cf_strerror(rc));
        push_tx_free(t);
        return;
    }
    if (t->duplicate) {
        p->stats.duplicates++;
        cf_log(CF_LOG_INFO,
               "push: certificate already stored certificateId=%" PRId64 " tenant=%s serial=%s "
               "user=%s",
               t->cert_id, t->cert.tenant_id, t->cert.serial, t->user);
        cf_api_respond_json(t->r, 200, answer_body(t));
        push_tx_free(t);
        return;
    }
    p->stats.accepted++;
    cf_log(CF_LOG_INFO,
           "push: certificate stored certificateId=%" PRId64 " tenant=%s template=%s serial=%s "
           "instance=%" PRId64 " user=%s",
           t->cert_id, t->cert.tenant_id, t->template_name, t->cert.serial, t->instance_id,
           t->user);
    if (t->publication_error)
        cf_log(CF_LOG_WARN,
               "CertificatePublicationException certificateId=%" PRId64 " tenant=%s serial=%s "
               "process=%s: the process could not be started: %s",
               t->cert_id, t->cert.tenant_id, t->cert.serial, t->def_key ? t->def_key : "",
               t->publication_error);
    cf_api_respond_json(t->r, 201, answer_body(t));
    push_tx_free(t);
}

/* ---- the route ------------------------------------------------------------------------------ */

static void reject(struct cf__push *p, struct cf_api_request *r, int status, const char *msg)
{
    p->stats.rejected++;
    cf_log(CF_LOG_INFO, "push: rejected status=%d user=%s peer=%s: %s", status, r->who.name,
           r->http->peer_addr, msg);
    cf_api_error(r, status, NULL, "%s", msg);
}

/* True when the media type (before any ';' parameter) is application/pkix-cert. */
static bool is_pkix_cert(const char *ct)
{
    if (!ct)
        return false;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    size_t n = strcspn(ct, ";");
    while (n && (ct[n - 1] == ' ' || ct[n - 1] == '\t'))
        n--;
    static const char want[] = "application/pkix-cert";
    if (n != sizeof want - 1)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = ct[i];
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        if (c != want[i])
            return false;
    }
    return true;
}

static void push_route(struct cf_api_request *r)
{
    struct cf_api *api = r->api;
    struct cf__push *p = push_of(api);
    struct cf_store *s = cf_api_store(api);
    char msg[512];

    if (!is_pkix_cert(cf_http_header(r->http, "Content-Type"))) {
        p->stats.rejected++;
        cf_api_error(r, 415, NULL, "Content-Type must be application/pkix-cert");
        return;
    }
    char tenant[128];
    int rc = cf_http_query_param(r->http, "tenantId", tenant, sizeof tenant);
    if (rc == CF_ENOENT || (!rc && !tenant[0])) {
        reject(p, r, 400, "the query parameter tenantId is required");
        return;
    }
    bool ctrl = false;
    for (const char *c = tenant; !rc && *c; c++)
        ctrl = ctrl || (unsigned char)*c < 0x20 || *c == 0x7f;
    if (rc || ctrl) {
        reject(p, r, 400, "the query parameter tenantId is not valid");
        return;
    }
    if (!cf_principal_has_tenant(&r->who, tenant)) {
        snprintf(msg, sizeof msg, "user %s may not push to tenant %s", r->who.name, tenant);
        reject(p, r, 403, msg);
        return;
    }

    uint8_t *der = NULL;
    size_t der_len = 0;
    if (decode_body(r->http->body, r->http->body_len, &der, &der_len, msg, sizeof msg) != 0) {
        reject(p, r, 400, msg);
        return;
    }
    X509 *x = parse_cert(der, der_len, msg, sizeof msg);
    if (!x) {
        free(der);
        reject(p, r, 400, msg);
        return;
    }

    const char *template_name = r->captures[0];
    struct cf_template_row tpl;
    rc = cf_admin_template_get(s, tenant, template_name, &tpl);
    if (rc) {
        X509_free(x);
        free(der);
        if (rc == CF_ENOENT) {
            snprintf(msg, sizeof msg, "certificate template %s does not exist in tenant %s",
                     template_name, tenant);
            reject(p, r, 404, msg);
        } else {
            p->stats.failed++;
            cf_api_error(r, 503, NULL, "the store is not available: %s", cf_strerror(rc));
        }
        return;
    }

    struct cf_def_row def;
    memset(&def, 0, sizeof def);
    if (r->n_captures > 1) {
        const char *pd = r->captures[1];
        rc = resolve_definition(s, tenant, pd, &def);
        /* As for starts through /engine-rest: a grant of the process (or of every process) in
         * the tenant, unless the caller is an admin. */
        if (!rc && !r->who.admin)
            rc = cf_admin_user_may_start(s, r->who.user_id, tenant, def.key);
        if (rc) {
            X509_free(x);
            free(der);
            cf_template_row_free(&tpl);
            if (rc == CF_ENOENT) {
                snprintf(msg, sizeof msg, "process definition %s does not exist in tenant %s", pd,
                         tenant);
                reject(p, r, 404, msg);
            } else if (rc == CF_EPERM) {
                snprintf(msg, sizeof msg, "user %s may not start process %s in tenant %s",
                         r->who.name, def.key, tenant);
                reject(p, r, 403, msg);
            } else {
                p->stats.failed++;
                cf_api_error(r, 503, NULL, "the store is not available: %s", cf_strerror(rc));
            }
            cf_def_row_free(&def);
            return;
        }
    }

    struct push_tx *t = cf_xcalloc(1, sizeof *t);
    t->r = r;
    t->push = p;
    t->template_name = cf_xstrdup(tpl.name);
    t->def_id = def.id;
    t->def_key = def.key ? cf_xstrdup(def.key) : NULL;
    cf_strlcpy(t->user, r->who.name, sizeof t->user);
    t->cert.tenant_id = cf_xstrdup(tenant);
    t->cert.template_id = tpl.id;
    t->cert.serial = serial_hex(x);
    t->cert.issuer = cf_api_dn_text(X509_get_issuer_name(x));
    t->cert.subject = cf_api_dn_text(X509_get_subject_name(x));
    int tb = asn1_time_ms(X509_get0_notBefore(x), &t->cert.not_before);
    int ta = asn1_time_ms(X509_get0_notAfter(x), &t->cert.not_after);
    cf_sha256_hex(der, der_len, t->cert.sha256);
    t->cert.ski = cf_cert_key_id_hex(x, false);
    t->cert.der = der;
    t->cert.der_len = der_len;
    X509_free(x);
    cf_template_row_free(&tpl);
    cf_def_row_free(&def);
    if (!t->cert.serial || !t->cert.issuer || !t->cert.subject || tb || ta) {
        push_tx_free(t);
        reject(p, r, 400, "the certificate's serial, names or validity cannot be read");
        return;
    }
    p->pending++;
    cf_engine_submit(cf_api_engine(api), push_tx_fn, push_tx_done, t);
}

void cf_api_push_routes(struct cf_api *api)
{
    static const struct cf_route routes[] = {
        {"POST", "/ws/certificate/register/{template}", push_route, 0, PUSH_BODY_LIMIT},
        {"POST", "/ws/certificate/register/{template}/{processDefinitionId}", push_route, 0,
         PUSH_BODY_LIMIT},
    };
    push_of(api);
    cf_api_register(api, routes, CF_ARRAY_LEN(routes));
}
