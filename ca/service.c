/*
 * The "ca" service of the plug-in ABI (see ca/service.h for what it does and promises). This file
 * turns a task's request into a connector request: it resolves the template, converts the
 * task's override into the embedded CA's form, consults the ledger of certificates by
 * idempotency key, and stores what a connector issued before the task sees it. It talks to the
 * CA only through ca/connector.h and to SQLite only through store/.
 *
 * A request (struct req) goes through three phases: LOOKUP (on the loop, inside issue_pkcs10),
 * CONNECTOR (the connector works; the task's call is held so that its memory outlives a timeout),
 * and SUBMITTED (the store insert waits for the engine's next batch; `done` runs after its commit).
 * Every request ends through SUBMITTED, failures found during LOOKUP included, so that the task's
 * callback never runs inside issue_pkcs10().
 *
 * Host callers (cf_ca_service_issue(), for certflowd's CM REST subset) take the same three phases
 * without a plug-in call: no idempotency key, so no ledger lookup and none recorded; only
 * templates of the embedded CA; and their own callback, which also gets the chain as PEM.
 */
#include "ca/service.h"

#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/pkcs7.h>

#include "base/base.h"
#include "ca/connector.h"
#include "store/admin.h"
#include "store/castore.h"

/* Parsed templates kept for reuse; a template's parse is dozens of microseconds, which matters at
 * thousands of certificates per second. */
#define TEMPLATE_CACHE_MAX 32

/* A template as the service uses it: the row's texts, for noticing changes, and what they parse
 * to. Shared by the requests that use it and by the cache; freed with its last reference. */
struct tpl {
    int refs;
    struct tpl *next; /* in the cache, most recently used first */
    int64_t id;
    char *tenant;
    char *name;
    char *connector;
    char *settings_text;
    char *procedure_text;
    json_t *settings;
    struct cf_ca_policy *policy;
    struct cf_ca_connector *conn; /* borrowed from the service */
};

enum phase { PH_LOOKUP, PH_CONNECTOR, PH_SUBMITTED };

struct req {
    struct req *prev, *next;
    struct cf_ca_svc *svc;
    struct cf_call *call;          /* held until the request is freed; NULL for a host caller */
    cf_ca_done_fn done;            /* a task's callback, or NULL for a host caller */
    cf_ca_issue_done_fn host_done; /* a host caller's callback (cf_ca_service_issue) */
    void *arg;
    char *source;       /* the certificate's source in the store; NULL: the connector's name */
    bool embedded_only; /* a host caller: only templates of the embedded CA */
    enum phase phase;
    bool orphaned; /* the service was detached while the connector worked; `done` already ran */
    char *tenant;
    char *template_name;
    char *key; /* NULL for a host caller: its certificates are stored without one */
    int64_t instance_id;
    int attempt; /* cf_call_attempt() */
    struct tpl *tpl;
    uint8_t *csr;
    size_t csr_len;
    /* The override in the embedded CA's form, with copies of every string. */
    bool has_override;
    struct cf_ca_overrides ov;
    struct cf_ca_rdn *rdns;
    size_t n_rdns;
    struct cf_ca_san *sans;
    size_t n_sans;
    struct cf_cert_row known; /* the certificate stored for the key, when known.der */
    struct cf_ca_conn_request creq;
    /* The outcome. */
    enum cf_ca_status st;
    char msg[1024];
    uint8_t *der;
    size_t der_len;
    struct cf_cert_info info;
    char *pem;
    char *pem_chain; /* for a host caller, made when delivering */
    uint8_t *p7;
    size_t p7_len;
    bool replayed;
    bool to_store;
    int64_t cert_id;
    bool key_taken; /* the insert found a certificate of another run of the step */
    char store_err[256];
};

struct cf_ca_svc {
    struct cf_ca_service impl; /* what host->service() returns; container_of gives the service */
    struct cf_engine *e;
    struct cf_store *store;
    char *ca_dir;
    int refs; /* one for the attachment, one per request under way */
    bool detached;
    struct cf_ca_connector *conns[8];
    size_t n_conns;
    struct tpl *tpls;
    size_t n_tpls;
    struct req *reqs;
};

static void fail_req(struct req *r, enum cf_ca_status st, const char *fmt, ...) CF_PRINTF(3, 4);

static void fail_req(struct req *r, enum cf_ca_status st, const char *fmt, ...)
{
    r->st = st;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->msg, sizeof(r->msg), fmt, ap);
    va_end(ap);
}

/* ---- small helpers ---- */

void cf_ca_fingerprint(const X509 *x, char out[CF_CA_FPR_LEN])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    out[0] = '\0';
    if (!x || X509_digest(x, EVP_sha256(), md, &n) != 1 || n * 3 > CF_CA_FPR_LEN)
        return;
    static const char hex[] = "0123456789ABCDEF";
    for (unsigned int i = 0; i < n; i++) {
        out[i * 3] = hex[md[i] >> 4];
        out[i * 3 + 1] = hex[md[i] & 15];
        out[i * 3 + 2] = i + 1 < n ? ':' : '\0';
    }
}

void cf_ca_service_secret(struct cf_ca_secret *out, char *buf, size_t buflen)
{
    memset(out, 0, sizeof(*out));
    const char *creds = getenv("CREDENTIALS_DIRECTORY");
    if (creds && *creds && buf && buflen) {
        int n = snprintf(buf, buflen, "%s/%s", creds, CF_CA_CREDENTIAL_NAME);
        if (n > 0 && (size_t)n < buflen && access(buf, R_OK) == 0) {
            out->file = buf;
            return;
        }
    }
    const char *env = getenv(CF_CA_PASSPHRASE_ENV);
    if (env && *env)
        out->env = CF_CA_PASSPHRASE_ENV;
}

static enum cf_ca_outcome outcome_of(enum cf_ca_status st)
{
    switch (st) {
    case CF_CA_OK:
        return CF_CA_RESULT_OK;
    case CF_CA_COMMON_ERROR:
        return CF_CA_RESULT_COMMON_ERROR;
    case CF_CA_REQUEST_FAILED:
        return CF_CA_RESULT_REQUEST_FAILED;
    case CF_CA_CONNECTION_FAILED:
        break;
    }
    return CF_CA_RESULT_CONNECTION_FAILED;
}

static struct cf_ca_svc *svc_of(struct cf_call *call)
{
    const void *impl = call->host->service(call, CF_SERVICE_CA, CF_SERVICE_CA_VERSION);
    return impl ? cf_container_of(impl, struct cf_ca_svc, impl) : NULL;
}

static const char *tenant_of(struct cf_call *call)
{
    const char *t = call->host->tenant_id(call);
    return t && *t ? t : CF_CA_DEFAULT_TENANT;
}

static struct cf_ca_connector *conn_of(struct cf_ca_svc *svc, const struct cf_ca_connector_kind *k)
{
    for (size_t i = 0; i < svc->n_conns; i++)
        if (svc->conns[i]->kind == k)
            return svc->conns[i];
    return NULL;
}

/* ---- templates ---- */

static void tpl_unref(struct tpl *t)
{
    if (!t || --t->refs > 0)
        return;
    free(t->tenant);
    free(t->name);
    free(t->connector);
    free(t->settings_text);
    free(t->procedure_text);
    json_decref(t->settings);
    cf_ca_policy_free(t->policy);
    free(t);
}

static bool tpl_matches(const struct tpl *t, const struct cf_template_row *row)
{
    return t->id == row->id && strcmp(t->connector, row->connector) == 0 &&
           strcmp(t->settings_text, row->settings) == 0 &&
           strcmp(t->procedure_text, row->procedure) == 0;
}

/* Parses a template row; a template that cannot be used is CF_CA_COMMON_ERROR: no valid request
 * can be made through it until an admin fixes it. */
static enum cf_ca_status tpl_build(struct cf_ca_svc *svc, const struct cf_template_row *row,
                                   struct tpl **out, char *msg, size_t msglen)
{
    const struct cf_ca_connector_kind *kind = cf_ca_connector_kind(row->connector);
    if (!kind) {
        snprintf(msg, msglen,
                 "certificate template '%s' of tenant '%s' names the connector '%s', which "
                 "certflow does not have (%s)",
                 row->name, row->tenant_id, row->connector, cf_ca_connector_names());
        return CF_CA_COMMON_ERROR;
    }
    char err[512];
    json_error_t je;
    json_t *settings = json_loads(row->settings, JSON_REJECT_DUPLICATES, &je);
    if (!settings) {
        snprintf(msg, msglen, "certificate template '%s': settings: not valid JSON: %s", row->name,
                 je.text);
        return CF_CA_COMMON_ERROR;
    }
    /* Sealed secrets are opened for the connector; the parsed settings stay in the template
     * cache while the template is in use (jansson does not wipe what it frees). */
    if (cf_ca_settings_open(svc->store, row->tenant_id, row->name, row->connector, settings, err,
                            sizeof(err)) != 0) {
        json_decref(settings);
        snprintf(msg, msglen, "certificate template '%s': %s", row->name, err);
        return CF_CA_CONNECTION_FAILED;
    }
    if (kind->check_settings(settings, err, sizeof(err)) != 0) {
        json_decref(settings);
        snprintf(msg, msglen, "certificate template '%s': %s", row->name, err);
        return CF_CA_COMMON_ERROR;
    }
    struct cf_ca_policy *pol = NULL;
    if (cf_ca_policy_parse(row->procedure, &pol, err, sizeof(err)) != 0) {
        json_decref(settings);
        snprintf(msg, msglen, "certificate template '%s': %s", row->name, err);
        return CF_CA_COMMON_ERROR;
    }
    struct tpl *t = cf_xcalloc(1, sizeof(*t));
    t->refs = 1;
    t->id = row->id;
    t->tenant = cf_xstrdup(row->tenant_id);
    t->name = cf_xstrdup(row->name);
    t->connector = cf_xstrdup(row->connector);
    t->settings_text = cf_xstrdup(row->settings);
    t->procedure_text = cf_xstrdup(row->procedure);
    t->settings = settings;
    t->policy = pol;
    t->conn = conn_of(svc, kind);
    *out = t;
    return CF_CA_OK;
}

/* The template `name` of `tenant`, with a reference for the caller. */
static enum cf_ca_status tpl_get(struct cf_ca_svc *svc, const char *tenant, const char *name,
                                 struct tpl **out, char *msg, size_t msglen)
{
    *out = NULL;
    struct cf_template_row row;
    int rc = cf_admin_template_get(svc->store, tenant, name, &row);
    if (rc == CF_ENOENT) {
        snprintf(msg, msglen, "certificate template '%s' does not exist in tenant '%s'", name,
                 tenant);
        return CF_CA_COMMON_ERROR;
    }
    if (rc) {
        snprintf(msg, msglen, "certificate template '%s' cannot be read from the store: %s (%s)",
                 name, cf_strerror(rc), cf_store_errmsg(svc->store));
        return CF_CA_CONNECTION_FAILED;
    }
    struct tpl **pp = &svc->tpls;
    for (; *pp; pp = &(*pp)->next)
        if (strcmp((*pp)->tenant, tenant) == 0 && strcmp((*pp)->name, name) == 0)
            break;
    struct tpl *t = *pp;
    if (t) {
        *pp = t->next;
        svc->n_tpls--;
        if (!tpl_matches(t, &row)) {
            tpl_unref(t);
            t = NULL;
        }
    }
    enum cf_ca_status st = CF_CA_OK;
    if (!t)
        st = tpl_build(svc, &row, &t, msg, msglen);
    cf_template_row_free(&row);
    if (st)
        return st;
    t->next = svc->tpls;
    svc->tpls = t;
    if (++svc->n_tpls > TEMPLATE_CACHE_MAX) {
        struct tpl **last = &svc->tpls;
        while ((*last)->next)
            last = &(*last)->next;
        tpl_unref(*last);
        *last = NULL;
        svc->n_tpls--;
    }
    t->refs++;
    *out = t;
    return CF_CA_OK;
}

/* ---- the override (executeModifiedPKCS10RequestTask) ---- */

/* The subject attribute names of ca/policy.h, for matching a DN's types without regard to case
 * (RFC 4514 §3). */
static const char *const attr_names[] = {
    "CN",           "C",
    "ST",           "L",
    "street",       "O",
    "OU",           "title",
    "GN",           "SN",
    "initials",     "pseudonym",
    "serialNumber", "emailAddress",
    "DC",           "UID",
    "postalCode",   "organizationIdentifier",
};

static const char *attr_canonical(const char *type)
{
    for (size_t i = 0; i < CF_ARRAY_LEN(attr_names); i++)
        if (strcasecmp(attr_names[i], type) == 0)
            return attr_names[i];
    return NULL;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static void add_rdn(struct req *r, const char *type, char *value)
{
    r->rdns = cf_xrealloc(r->rdns, (r->n_rdns + 1) * sizeof(*r->rdns));
    r->rdns[r->n_rdns].type = type;
    r->rdns[r->n_rdns].value = value;
    r->n_rdns++;
}

/*
 * Parses a subject DN into r->rdns, most general attribute first as the embedded CA wants them.
 * Two forms: RFC 4514 ("CN=a.example,O=Example,C=SE": most specific first, \-escapes with a
 * character or two hex digits, spaces around a value dropped) and OpenSSL's slash form
 * ("/C=SE/O=Example/CN=a.example": most general first, \ escapes the next character).
 * Multi-valued RDNs ('+') are refused. An empty text is an empty subject.
 */
static int parse_dn(struct req *r, const char *dn)
{
    bool slash = dn[0] == '/';
    const char *p = slash ? dn + 1 : dn;
    size_t first = r->n_rdns;
    struct cf_buf val;
    cf_buf_init(&val);
    int rc = 0;
    while (*p && !rc) {
        const char *eq = strchr(p, '=');
        if (!eq) {
            fail_req(r, CF_CA_COMMON_ERROR, "subject DN \"%s\": \"%s\" has no '='", dn, p);
            rc = -1;
            break;
        }
        char type[64];
        size_t tn = (size_t)(eq - p);
        while (tn && p[tn - 1] == ' ')
            tn--;
        while (tn && *p == ' ') {
            p++;
            tn--;
        }
        if (!tn || tn >= sizeof(type)) {
            fail_req(r, CF_CA_COMMON_ERROR, "subject DN \"%s\": an attribute has no type", dn);
            rc = -1;
            break;
        }
        memcpy(type, p, tn);
        type[tn] = '\0';
        const char *canon = attr_canonical(type);
        if (!canon) {
            fail_req(r, CF_CA_COMMON_ERROR,
                     "subject DN \"%s\": attribute type '%s' is not one certflow issues (CN, C, "
                     "ST, L, street, O, OU, title, GN, SN, initials, pseudonym, serialNumber, "
                     "emailAddress, DC, UID, postalCode, organizationIdentifier)",
                     dn, type);
            rc = -1;
            break;
        }
        p = eq + 1;
        if (!slash)
            while (*p == ' ')
                p++;
        if (!slash && *p == '#') {
            fail_req(r, CF_CA_COMMON_ERROR,
                     "subject DN \"%s\": hex-encoded values ('#') are not supported", dn);
            rc = -1;
            break;
        }
        cf_buf_reset(&val);
        size_t keep = 0; /* length up to the last escaped or non-space character */
        for (; *p; p++) {
            char c = *p;
            if (c == '\\') {
                int h1 = hexval(p[1]), h2 = h1 >= 0 ? hexval(p[2]) : -1;
                if (!slash && h1 >= 0 && h2 >= 0) {
                    cf_buf_putc(&val, (char)(h1 * 16 + h2));
                    p += 2;
                } else if (p[1]) {
                    cf_buf_putc(&val, p[1]);
                    p++;
                } else {
                    fail_req(r, CF_CA_COMMON_ERROR, "subject DN \"%s\" ends in a lone '\\'", dn);
                    rc = -1;
                    break;
                }
                keep = val.len;
                continue;
            }
            if (slash ? c == '/' : (c == ',' || c == ';'))
                break;
            if (!slash && c == '+') {
                fail_req(r, CF_CA_COMMON_ERROR,
                         "subject DN \"%s\": multi-valued RDNs ('+') are not supported", dn);
                rc = -1;
                break;
            }
            cf_buf_putc(&val, c);
            if (slash || c != ' ')
                keep = val.len;
        }
        if (rc)
            break;
        if (!keep) {
            fail_req(r, CF_CA_COMMON_ERROR, "subject DN \"%s\": attribute %s has no value", dn,
                     canon);
            rc = -1;
            break;
        }
        add_rdn(r, canon, cf_xstrndup(val.data, keep));
        if (*p)
            p++;
    }
    cf_buf_free(&val);
    if (rc)
        return rc;
    /* RFC 4514 writes the most specific attribute first; a certificate's name starts with the
     * most general one. */
    if (!slash)
        for (size_t i = first, j = r->n_rdns; i + 1 < j; i++, j--) {
            struct cf_ca_rdn tmp = r->rdns[i];
            r->rdns[i] = r->rdns[j - 1];
            r->rdns[j - 1] = tmp;
        }
    return 0;
}

static void add_sans(struct req *r, enum cf_ca_san_type type, const char *const *list)
{
    for (size_t i = 0; list && list[i]; i++) {
        r->sans = cf_xrealloc(r->sans, (r->n_sans + 1) * sizeof(*r->sans));
        r->sans[r->n_sans].type = type;
        r->sans[r->n_sans].value = cf_xstrdup(list[i]);
        r->n_sans++;
    }
}

/* The task's override in the embedded CA's form. Fields beyond the struct's `size` are not read,
 * so a plug-in built against an older plugin.h is understood. */
static int convert_override(struct req *r, const struct cf_ca_override *o)
{
    if (!o)
        return 0;
#define HAS(field) (o->size >= offsetof(struct cf_ca_override, field) + sizeof(o->field))
    const char *subject = HAS(subject_dn) ? o->subject_dn : NULL;
    const char *const *dns = HAS(san_dns) ? o->san_dns : NULL;
    const char *const *ip = HAS(san_ip) ? o->san_ip : NULL;
    const char *const *email = HAS(san_email) ? o->san_email : NULL;
    const char *const *uri = HAS(san_uri) ? o->san_uri : NULL;
#undef HAS
    if (subject) {
        r->ov.set_subject = true;
        if (parse_dn(r, subject) != 0)
            return -1;
    }
    if (dns || ip || email || uri) {
        r->ov.set_sans = true;
        add_sans(r, CF_CA_SAN_DNS, dns);
        add_sans(r, CF_CA_SAN_IP, ip);
        add_sans(r, CF_CA_SAN_EMAIL, email);
        add_sans(r, CF_CA_SAN_URI, uri);
    }
    r->has_override = r->ov.set_subject || r->ov.set_sans;
    r->ov.subject = r->rdns;
    r->ov.n_subject = r->n_rdns;
    r->ov.sans = r->sans;
    r->ov.n_sans = r->n_sans;
    return 0;
}

/* ---- requests ---- */

static void svc_unref(struct cf_ca_svc *svc)
{
    if (--svc->refs > 0)
        return;
    for (size_t i = 0; i < svc->n_conns; i++)
        svc->conns[i]->ops->free(svc->conns[i]);
    while (svc->tpls) {
        struct tpl *t = svc->tpls;
        svc->tpls = t->next;
        tpl_unref(t);
    }
    free(svc->ca_dir);
    free(svc);
}

static void req_free(struct req *r)
{
    struct cf_ca_svc *svc = r->svc;
    if (r->prev)
        r->prev->next = r->next;
    else
        svc->reqs = r->next;
    if (r->next)
        r->next->prev = r->prev;
    if (r->call)
        cf_call_unhold(r->call);
    tpl_unref(r->tpl);
    free(r->source);
    free(r->pem_chain);
    free(r->tenant);
    free(r->template_name);
    free(r->key);
    free(r->csr);
    for (size_t i = 0; i < r->n_rdns; i++)
        free((char *)r->rdns[i].value);
    free(r->rdns);
    for (size_t i = 0; i < r->n_sans; i++)
        free((char *)r->sans[i].value);
    free(r->sans);
    cf_cert_row_free(&r->known);
    free(r->der);
    cf_cert_info_clear(&r->info);
    free(r->pem);
    free(r->p7);
    free(r);
    svc_unref(svc);
}

static void clear_cert(struct req *r)
{
    free(r->der);
    r->der = NULL;
    r->der_len = 0;
    cf_cert_info_clear(&r->info);
    free(r->pem);
    r->pem = NULL;
    free(r->p7);
    r->p7 = NULL;
    r->p7_len = 0;
    r->replayed = false;
    r->to_store = false;
}

/* PEM text of every certificate of a DER PKCS#7 certs-only bundle, in its order; NULL when the
 * bundle cannot be read. */
static char *p7_pem(const uint8_t *p7, size_t len)
{
    const unsigned char *p = p7;
    ERR_set_mark();
    PKCS7 *pk = len <= (size_t)LONG_MAX ? d2i_PKCS7(NULL, &p, (long)len) : NULL;
    STACK_OF(X509) *certs = pk && PKCS7_type_is_signed(pk) ? pk->d.sign->cert : NULL;
    char *out = NULL;
    if (certs) {
        struct cf_buf b;
        cf_buf_init(&b);
        bool ok = true;
        for (int i = 0; ok && i < sk_X509_num(certs); i++) {
            unsigned char *der = NULL;
            int n = i2d_X509(sk_X509_value(certs, i), &der);
            char *pem = n > 0 ? cf_cert_pem(der, (size_t)n) : NULL;
            ok = pem != NULL;
            if (pem)
                cf_buf_puts(&b, pem);
            free(pem);
            OPENSSL_free(der);
        }
        if (ok && b.len)
            out = cf_buf_steal(&b);
        cf_buf_free(&b);
    }
    PKCS7_free(pk);
    ERR_pop_to_mark();
    return out;
}

static void deliver_host(struct req *r)
{
    struct cf_ca_issue_result res = {.status = r->st, .message = r->st ? r->msg : NULL};
    if (!r->st) {
        free(r->pem_chain);
        r->pem_chain = p7_pem(r->p7, r->p7_len);
        if (!r->pem_chain) {
            /* The certificate is stored; only its answer cannot be made. */
            res.status = CF_CA_CONNECTION_FAILED;
            res.message = "the chain of the issued certificate cannot be encoded as PEM";
        } else {
            res.cert_id = r->cert_id;
            res.der = r->der;
            res.der_len = r->der_len;
            res.chain_p7 = r->p7;
            res.chain_p7_len = r->p7_len;
            res.pem_chain = r->pem_chain;
        }
    }
    r->host_done(r->arg, &res);
}

static void deliver(struct req *r)
{
    if (r->host_done) {
        deliver_host(r);
        return;
    }
    struct cf_ca_result res = {
        .size = sizeof(res),
        .outcome = outcome_of(r->st),
        .message = r->st ? r->msg : NULL,
    };
    if (!r->st) {
        res.cert_der = r->der;
        res.cert_der_len = r->der_len;
        res.cert_pem = r->pem;
        res.chain_p7 = r->p7;
        res.chain_p7_len = r->p7_len;
        res.certificate_id = r->cert_id;
        res.replayed = r->replayed;
    }
    r->done(r->call, &res, r->arg);
}

static void log_outcome(const struct req *r)
{
    if (!r->st) {
        cf_log(CF_LOG_INFO,
               "ca: %s certificate id=%" PRId64 " serial=%s template=%s tenant=%s "
               "instance=%" PRId64 "%s%s subject=%s",
               r->replayed ? "returned the stored" : "issued", r->cert_id,
               r->info.serial ? r->info.serial : "", r->template_name, r->tenant, r->instance_id,
               r->source ? " source=" : "", r->source ? r->source : "",
               r->info.subject ? r->info.subject : "");
        return;
    }
    cf_log(r->st == CF_CA_CONNECTION_FAILED ? CF_LOG_WARN : CF_LOG_INFO,
           "ca: no certificate template=%s tenant=%s instance=%" PRId64 "%s%s: %s: %s",
           r->template_name, r->tenant, r->instance_id, r->source ? " source=" : "",
           r->source ? r->source : "", cf_ca_status_code(r->st), r->msg);
}

/* In the engine's batch transaction: records a new certificate with the step's key. */
static int tx_store(struct cf_engine *e, void *arg)
{
    (void)e;
    struct req *r = arg;
    if (r->st || !r->to_store)
        return 0;
    struct cf_cert_row row;
    memset(&row, 0, sizeof(row));
    row.tenant_id = r->tenant;
    row.template_id = r->tpl->id;
    row.serial = r->info.serial;
    row.issuer = r->info.issuer;
    row.subject = r->info.subject;
    row.not_before = r->info.not_before_ms;
    row.not_after = r->info.not_after_ms;
    cf_strlcpy(row.sha256, r->info.sha256, sizeof(row.sha256));
    row.der = r->der;
    row.der_len = r->der_len;
    row.ski = r->info.ski;
    row.status = "active";
    row.source = r->source ? r->source : (char *)r->tpl->conn->kind->name;
    row.instance_id = r->instance_id;
    int rc = cf_castore_cert_insert(r->svc->store, &row, r->key, cf_now_ms());
    if (!rc) {
        r->cert_id = row.id;
        return 0;
    }
    const char *why = cf_store_errmsg(r->svc->store);
    snprintf(r->store_err, sizeof(r->store_err), "%s", why && *why ? why : cf_strerror(rc));
    if (rc == CF_EEXIST && r->key) {
        /* A constraint failed: the step's key taken by another run, or something else. */
        struct cf_cert_row other;
        r->key_taken = cf_castore_cert_by_key(r->svc->store, r->key, &other) == 0;
        cf_cert_row_free(&other);
    }
    return rc;
}

/* After the batch committed (rc 0) or failed (then nothing of tx_store is stored). */
static void tx_done(void *arg, int rc)
{
    struct req *r = arg;
    if (rc && !r->st && r->to_store) {
        clear_cert(r);
        if (r->key_taken)
            fail_req(r, CF_CA_CONNECTION_FAILED,
                     "another run of this step recorded a certificate first (%s); the step is "
                     "retried and gets that one",
                     r->store_err[0] ? r->store_err : cf_strerror(rc));
        else
            fail_req(r, CF_CA_CONNECTION_FAILED,
                     "the certificate was issued but could not be stored (%s), so it was not "
                     "handed out%s",
                     r->store_err[0] ? r->store_err : cf_strerror(rc),
                     r->key ? "; the step is retried" : "");
    }
    log_outcome(r);
    deliver(r);
    req_free(r);
}

static void submit(struct req *r)
{
    r->phase = PH_SUBMITTED;
    cf_engine_submit(r->svc->e, tx_store, tx_done, r);
}

static void on_conn_done(void *arg, const struct cf_ca_conn_result *res)
{
    struct req *r = arg;
    if (r->orphaned) {
        req_free(r);
        return;
    }
    if (res->status == CF_CA_REQUEST_FAILED) {
        /* Which template refused matters to the designer: templates differ in policy. */
        fail_req(r, res->status, "certificate template '%s' refuses the request: %s",
                 r->template_name, res->message ? res->message : "no reason given");
    } else if (res->status) {
        fail_req(r, res->status, "%s", res->message ? res->message : "the CA gave no reason");
    } else if (!res->der || !res->info || !res->pem || !res->chain_p7) {
        fail_req(r, CF_CA_CONNECTION_FAILED, "the %s connector answered without a certificate",
                 r->tpl->conn->kind->name);
    } else {
        r->st = CF_CA_OK;
        r->der = cf_xmemdup(res->der, res->der_len);
        r->der_len = res->der_len;
        r->info.serial = cf_xstrdup(res->info->serial ? res->info->serial : "");
        r->info.issuer = cf_xstrdup(res->info->issuer ? res->info->issuer : "");
        r->info.subject = cf_xstrdup(res->info->subject ? res->info->subject : "");
        r->info.not_before_ms = res->info->not_before_ms;
        r->info.not_after_ms = res->info->not_after_ms;
        memcpy(r->info.sha256, res->info->sha256, sizeof(r->info.sha256));
        r->info.ski = res->info->ski ? cf_xstrdup(res->info->ski) : NULL;
        r->pem = cf_xstrdup(res->pem);
        r->p7 = cf_xmemdup(res->chain_p7, res->chain_p7_len);
        r->p7_len = res->chain_p7_len;
        r->replayed = res->replayed;
        if (r->replayed)
            r->cert_id = r->known.id;
        else
            r->to_store = true;
    }
    submit(r);
}

/* A new request of `svc`, linked into its list and holding a reference to it. */
static struct req *req_new(struct cf_ca_svc *svc, const char *tenant, const char *template_name)
{
    struct req *r = cf_xcalloc(1, sizeof(*r));
    r->svc = svc;
    svc->refs++;
    r->next = svc->reqs;
    if (svc->reqs)
        svc->reqs->prev = r;
    svc->reqs = r;
    r->phase = PH_LOOKUP;
    r->tenant = cf_xstrdup(tenant);
    r->template_name = cf_xstrdup(template_name);
    return r;
}

/* The LOOKUP phase and the hand-over to the connector; ends in PH_CONNECTOR, or in PH_SUBMITTED
 * with the failure that stopped it. */
static void req_start(struct req *r, const uint8_t *csr, size_t csr_len,
                      const struct cf_ca_override *override)
{
    struct cf_ca_svc *svc = r->svc;
    if (!csr_len) {
        fail_req(r, CF_CA_COMMON_ERROR, "no CSR: the request is empty");
    } else if (csr_len > CF_CSR_MAX_BYTES) {
        fail_req(r, CF_CA_COMMON_ERROR,
                 "the CSR has %zu bytes, more than the %d a PKCS#10 request may have here", csr_len,
                 CF_CSR_MAX_BYTES);
    } else if (convert_override(r, override) == 0) {
        r->csr = cf_xmemdup(csr, csr_len);
        r->csr_len = csr_len;
        r->st = tpl_get(svc, r->tenant, r->template_name, &r->tpl, r->msg, sizeof(r->msg));
    }
    if (!r->st && r->embedded_only && r->tpl->conn->kind != &cf__ca_kind_embedded)
        fail_req(r, CF_CA_COMMON_ERROR,
                 "certificate template '%s' of tenant '%s' uses the %s connector; only templates "
                 "of the embedded CA (connector \"embedded\") can issue here",
                 r->template_name, r->tenant, r->tpl->conn->kind->name);
    if (!r->st && r->has_override) {
        char why[512];
        if (r->tpl->conn->kind->supports_override(r->tpl->settings, why, sizeof(why)) != 1)
            fail_req(r, CF_CA_COMMON_ERROR, "certificate template '%s': %s", r->template_name, why);
    }
    if (!r->st && r->key) {
        int rc = cf_castore_cert_by_key(svc->store, r->key, &r->known);
        if (rc && rc != CF_ENOENT)
            fail_req(r, CF_CA_CONNECTION_FAILED, "the certificates store cannot be read: %s (%s)",
                     cf_strerror(rc), cf_store_errmsg(svc->store));
    }
    if (!r->st) {
        r->creq = (struct cf_ca_conn_request){
            .tenant_id = r->tenant,
            .template_name = r->template_name,
            .settings = r->tpl->settings,
            .policy = r->tpl->policy,
            .csr = r->csr,
            .csr_len = r->csr_len,
            .overrides = r->has_override ? &r->ov : NULL,
            /* A host caller has no key; the embedded connector, the only one it may use, then
             * finds nothing in its ledger and issues. */
            .idempotency_key = r->key ? r->key : "",
            .known_der = r->known.der,
            .known_der_len = r->known.der_len,
            .attempt = r->attempt,
        };
        r->phase = PH_CONNECTOR;
        struct cf_ca_connector *conn = r->tpl->conn;
        int rc = conn->ops->issue(conn, &r->creq, on_conn_done, r);
        if (rc) {
            r->phase = PH_LOOKUP;
            fail_req(r, CF_CA_CONNECTION_FAILED, "the %s connector cannot take the request: %s",
                     conn->kind->name, cf_strerror(rc));
        }
    }
    if (r->phase == PH_LOOKUP)
        submit(r);
}

static int svc_issue(struct cf_call *call, const char *template_name, const uint8_t *csr,
                     size_t csr_len, const struct cf_ca_override *override, cf_ca_done_fn done,
                     void *arg)
{
    if (!call || !template_name || !done || (!csr && csr_len))
        return CF_EINVAL;
    struct cf_ca_svc *svc = svc_of(call);
    if (!svc || svc->detached)
        return CF_ESTATE;
    const char *key = call->host->idempotency_key(call);
    if (!key || !*key)
        return CF_EINVAL;

    struct req *r = req_new(svc, tenant_of(call), template_name);
    r->call = call;
    cf_call_hold(call);
    r->done = done;
    r->arg = arg;
    r->key = cf_xstrdup(key);
    r->instance_id = cf_call_instance_id(call);
    r->attempt = cf_call_attempt(call);
    req_start(r, csr, csr_len, override);
    return 0;
}

int cf_ca_service_issue(struct cf_ca_svc *svc, const char *tenant, const char *template_name,
                        const uint8_t *csr, size_t len, const char *source,
                        cf_ca_issue_done_fn done, void *arg)
{
    if (!svc || !template_name || !done || (!csr && len))
        return CF_EINVAL;
    if (svc->detached)
        return CF_ESTATE;
    struct req *r = req_new(svc, tenant && *tenant ? tenant : CF_CA_DEFAULT_TENANT, template_name);
    r->host_done = done;
    r->arg = arg;
    r->source = source ? cf_xstrdup(source) : NULL;
    r->embedded_only = true;
    r->attempt = 1;
    req_start(r, csr, len, NULL);
    return 0;
}

const char *cf_ca_service_ca_dir(const struct cf_ca_svc *svc)
{
    return svc ? svc->ca_dir : NULL;
}

/* One certificate of the CA directory (a public file of embedded.h's layout); NULL when it is
 * not there or cannot be read. */
static X509 *ca_file_cert(const char *dir, const char *name)
{
    char path[PATH_MAX];
    int n = snprintf(path, sizeof(path), "%s/%s", dir, name);
    uint8_t *buf = NULL;
    size_t len = 0;
    if (n < 0 || (size_t)n >= sizeof(path) ||
        cf_read_file(path, 1024 * 1024, &buf, &len, NULL, 0) != 0)
        return NULL;
    BIO *b = BIO_new_mem_buf(buf, (int)len);
    X509 *x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    free(buf);
    return x;
}

/* True when `ca` issued `x`: names and key identifiers fit, and the signature verifies. */
static bool issued_by(X509 *ca, X509 *x)
{
    EVP_PKEY *k = ca ? X509_get0_pubkey(ca) : NULL;
    return k && X509_check_issued(ca, x) == X509_V_OK && X509_verify(x, k) == 1;
}

int cf_ca_service_chain(const char *ca_dir, const uint8_t *der, size_t len, uint8_t **p7,
                        size_t *p7_len, char **pem, char *err, size_t errlen)
{
    *p7 = NULL;
    *p7_len = 0;
    *pem = NULL;
    if (!der || !len || len > (size_t)LONG_MAX) {
        cf_errf(err, errlen, "no certificate");
        return CF_EINVAL;
    }
    ERR_set_mark();
    const unsigned char *p = der;
    X509 *leaf = d2i_X509(NULL, &p, (long)len);
    X509 *issuing = leaf && ca_dir ? ca_file_cert(ca_dir, "issuing.pem") : NULL;
    X509 *root = issuing ? ca_file_cert(ca_dir, "root.pem") : NULL;
    const uint8_t *ders[3] = {der};
    size_t lens[3] = {len};
    unsigned char *cas[2] = {NULL, NULL};
    size_t n = 1;
    if (issued_by(issuing, leaf)) {
        int k = i2d_X509(issuing, &cas[0]);
        if (k > 0) {
            ders[n] = cas[0];
            lens[n++] = (size_t)k;
            k = issued_by(root, issuing) ? i2d_X509(root, &cas[1]) : 0;
            if (k > 0) {
                ders[n] = cas[1];
                lens[n++] = (size_t)k;
            }
        }
    }
    int rc = 0;
    if (!leaf) {
        cf_errf(err, errlen, "the stored certificate is not a DER X.509 certificate");
        rc = CF_EPARSE;
    }
    if (!rc)
        rc = cf_pkcs7_certs_only(ders, lens, n, p7, p7_len, err, errlen);
    if (!rc) {
        struct cf_buf b;
        cf_buf_init(&b);
        for (size_t i = 0; i < n; i++) {
            char *one = cf_cert_pem(ders[i], lens[i]);
            cf_buf_puts(&b, one ? one : "");
            free(one);
        }
        *pem = cf_buf_steal(&b);
    }
    OPENSSL_free(cas[0]);
    OPENSSL_free(cas[1]);
    X509_free(root);
    X509_free(issuing);
    X509_free(leaf);
    ERR_pop_to_mark();
    return rc;
}

static int svc_supports_override(struct cf_call *call, const char *template_name, char *why,
                                 size_t whylen)
{
    char msg[1024];
    struct cf_ca_svc *svc = call && template_name ? svc_of(call) : NULL;
    if (!svc || svc->detached) {
        if (why && whylen)
            snprintf(why, whylen, "no CA service is available");
        return CF_ESTATE;
    }
    const char *tenant = tenant_of(call);
    struct tpl *t;
    if (tpl_get(svc, tenant, template_name, &t, msg, sizeof(msg)) != CF_CA_OK) {
        if (why && whylen)
            snprintf(why, whylen, "%s", msg);
        return CF_ENOENT;
    }
    char reason[512] = "";
    int rc = t->conn->kind->supports_override(t->settings, reason, sizeof(reason));
    if (rc != 1 && why && whylen)
        snprintf(why, whylen, "certificate template '%s': %s", template_name, reason);
    tpl_unref(t);
    return rc == 1 ? 1 : 0;
}

/* ---- attach and detach ---- */

int cf_ca_service_attach(struct cf_engine *e, const char *ca_dir, struct cf_ca_svc **out, char *err,
                         size_t errlen)
{
    *out = NULL;
    if (!e || !ca_dir || !*ca_dir) {
        cf_errf(err, errlen, "the CA service needs an engine and a CA directory");
        return CF_EINVAL;
    }
    struct cf_ca_svc *svc = cf_xcalloc(1, sizeof(*svc));
    svc->impl.size = sizeof(svc->impl);
    svc->impl.issue_pkcs10 = svc_issue;
    svc->impl.supports_override = svc_supports_override;
    svc->e = e;
    svc->store = cf_engine_store(e);
    svc->ca_dir = cf_xstrdup(ca_dir);
    svc->refs = 1;
    char secret_buf[4096];
    struct cf_ca_secret secret;
    cf_ca_service_secret(&secret, secret_buf, sizeof(secret_buf));
    struct cf_ca_connector_env env = {
        .loop = cf_engine_loop(e),
        .ca_dir = svc->ca_dir,
        .secret = &secret,
    };
    int rc = 0;
    const struct cf_ca_connector_kind *const *kinds = cf_ca_connector_kinds();
    for (size_t i = 0; kinds[i] && !rc; i++) {
        if (svc->n_conns == CF_ARRAY_LEN(svc->conns)) {
            cf_errf(err, errlen, "too many connector kinds");
            rc = CF_ELIMIT;
            break;
        }
        struct cf_ca_connector *c = NULL;
        rc = kinds[i]->create(&env, &c, err, errlen);
        if (!rc)
            svc->conns[svc->n_conns++] = c;
    }
    if (!rc) {
        rc = cf_engine_set_service(e, CF_SERVICE_CA, CF_SERVICE_CA_VERSION, &svc->impl);
        if (rc)
            cf_errf(err, errlen, "the engine cannot offer the CA service: %s", cf_strerror(rc));
    }
    if (rc) {
        svc_unref(svc);
        return rc;
    }
    *out = svc;
    return 0;
}

void cf_ca_service_detach(struct cf_ca_svc *svc)
{
    if (!svc || svc->detached)
        return;
    svc->detached = true;
    cf_engine_set_service(svc->e, CF_SERVICE_CA, CF_SERVICE_CA_VERSION, NULL);
    for (size_t i = 0; i < svc->n_conns; i++)
        svc->conns[i]->ops->shutdown(svc->conns[i]);
    struct req *r = svc->reqs;
    while (r) {
        struct req *next = r->next;
        if (!r->orphaned) {
            /* The engine has given up on the call (it was closed first); its task still gets its
             * ending, so that it can release what it holds, and the step runs again at the next
             * start, where the ledger finds any certificate that was stored. */
            clear_cert(r);
            fail_req(r, CF_CA_CONNECTION_FAILED,
                     "certflow stopped before the request to the CA was finished");
            deliver(r);
            if (r->phase == PH_CONNECTOR) {
                /* Freed when the connector calls back. */
                r->orphaned = true;
            } else {
                /* A closed engine drops the batch work still queued without calling back. */
                req_free(r);
            }
        }
        r = next;
    }
    svc_unref(svc);
}
