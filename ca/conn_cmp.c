/*
 * The "cmp" connector: certificates from a remote CA over CMP (RFC 4210 and its lightweight
 * profile RFC 9483), with OpenSSL's OSSL_CMP_* client for the protocol and certflow's HTTP client
 * (engine/net/client.h, libcurl on the loop) for the transport, so that a slow CA holds neither
 * the loop nor a libuv pool thread. A request is a p10cr (the CSR as it was signed) or an ir (the
 * CSR's subject, SANs and key, or a modified subject and SANs for
 * executeModifiedPKCS10RequestTask, in a CRMF request with proof of possession "raVerified":
 * certflow has checked the CSR's signature itself and vouches for it as an RA); a revocation is
 * an rr. Requests are protected with a shared secret (PBM) or signed.
 *
 * Settings (checked by check(); files are read when a request is made, so that a template can be
 * stored before its files are in place):
 *   server            "[http(s)://]host[:port][/path]" (http when no scheme is given, RFC 6712)
 *   path              the HTTP path, instead of the server's (default: the server's, else "/")
 *   command           "p10cr" (default) or "ir"
 *   reference, secret PBM: the senderKID and the shared secret itself (no "pass:" prefix)
 *   mac               PBM's MAC by OpenSSL long name, default hmacWithSHA256 (OpenSSL's own
 *                     default is hmac-sha1; RFC 9481 asks for SHA-2)
 *   cert, key         signature: our PEM certificate (then its chain) and key;
 *   keyPassword       the key's password when it is encrypted
 *   trusted           PEM trust anchors for the CA's signed answers, or instead
 *   serverCert        the CA's signing certificate, pinned
 *   tlsTrusted        PEM CA file for an https server (default: the system's store)
 *   recipient         the CA's DN, "/CN=..../O=..." or "CN=...,O=..." (default: NULL-DN)
 *   implicitConfirm   ask the CA to skip the certConf exchange (default false)
 *   unprotectedErrors accept unprotected error answers, as openssl's -unprotected_errors
 *   timeoutMs         per message (default 30000); totalTimeoutMs: the whole transaction with
 *                     its polls (default 300000)
 * One of secret (with reference) and cert with key must be given, and signature protection needs
 * trusted or serverCert.
 *
 * Threads. OpenSSL's CMP state machine is blocking: OSSL_CMP_try_certreq() and
 * OSSL_CMP_exec_RR_ses() call a transfer callback for every message and wait for its answer. So
 * they run on worker threads of this connector (at most WORKERS, started when first needed),
 * never on the loop. The transfer callback hands the DER request to the loop thread (a queue
 * under `lock` and a uv_async_t), the loop sends it with cf_httpc_send() and hands the answer
 * back (a condition variable). The workers are our own rather than libuv's pool because each
 * one waits on the network for up to settings.timeoutMs per message: parked on libuv's four
 * shared threads, a slow CA would stall file I/O and the embedded CA's signing. Polling for a
 * delayed certificate (PKIStatus "waiting") uses OSSL_CMP_try_certreq(), which returns between
 * polls; the wait of checkAfter seconds is a uv_timer on the loop, not a sleeping thread, so a
 * waiting request holds no thread and shutdown() ends it at once.
 *
 * Idempotency (reliability.md R5, R6). The transactionID is the first 16 bytes of SHA-256 over
 * the step's idempotency key, so every run of a step sends the same one. CMP has no way to fetch
 * the result of an earlier transaction: when the CA answers transactionIdInUse or
 * duplicateCertReq, the request fails with CaConnectionFailed saying so, so that the step ends as
 * an incident after its retries instead of asking for a second certificate. A request that comes
 * with known_der (the certificate the store holds for the key) is answered from it, after
 * checking that it certifies the CSR's key, without talking to the CA.
 *
 * Failure classes (ca/connector.h): no connection, TLS, timeouts, HTTP statuses other than 200,
 * a Content-Type other than application/pkixcmp, answers that do not decode or fail their
 * protection check, files named by the settings that cannot be read (the admin can fix them and
 * a retry may then succeed), and a CA that says it is unavailable (failInfo systemUnavail or
 * systemFailure) are CaConnectionFailed; a rejection or an error message from the CA is
 * CaRequestFailed, with its failInfo names and status text; a CSR that does not decode or verify
 * is CommonError, decided before any I/O. A certificate from the CA that does not certify the
 * CSR's key is refused in the certConf (failInfo incorrectData) and the request fails with
 * CaConnectionFailed: the CA gave a wrong answer, as with a garbled one, and the step should end
 * as an incident an admin looks at rather than as the designer's "the CA said no".
 *
 * What it leaves to others: the template lookup, the ledger and storing the certificate are
 * ca/service.c's; the CA's own policy decides key types and names (the template's procedure is
 * the embedded CA's). Secrets (settings.secret, settings.keyPassword) are used and never written
 * to a log line or a message.
 */
#include "ca/remote.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/cmp.h>
#include <openssl/crmf.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "base/base.h"
#include "net/client.h"

/* Worker threads at most; more requests than this wait for a free one (between messages). */
#define WORKERS 4
#define DEFAULT_TIMEOUT_MS 30000
#define DEFAULT_TOTAL_TIMEOUT_MS 300000
#define TID_LEN 16
#define MSG_LEN 2048

static const char *const stopped_msg = "certflow stopped before the CA answered";

/* ---- settings ---- */

static const char *const commands[] = {"p10cr", "ir", NULL};
static const char *const macs[] = {"hmac-sha1",      "hmacWithSHA224", "hmacWithSHA256",
                                   "hmacWithSHA384", "hmacWithSHA512", NULL};

static const struct cf__ca_field fields[] = {
    {"server", CF_CA_F_STRING, true, 0, 0, NULL},
    {"path", CF_CA_F_STRING, false, 0, 0, NULL},
    {"command", CF_CA_F_STRING, false, 0, 0, commands},
    {"reference", CF_CA_F_STRING, false, 0, 0, NULL},
    {"secret", CF_CA_F_STRING, false, 0, 0, NULL},
    {"mac", CF_CA_F_STRING, false, 0, 0, macs},
    {"cert", CF_CA_F_FILE, false, 0, 0, NULL},
    {"key", CF_CA_F_FILE, false, 0, 0, NULL},
    {"keyPassword", CF_CA_F_STRING, false, 0, 0, NULL},
    {"trusted", CF_CA_F_FILE, false, 0, 0, NULL},
    {"serverCert", CF_CA_F_FILE, false, 0, 0, NULL},
    {"tlsTrusted", CF_CA_F_FILE, false, 0, 0, NULL},
    {"recipient", CF_CA_F_STRING, false, 0, 0, NULL},
    {"implicitConfirm", CF_CA_F_BOOL, false, 0, 0, NULL},
    {"unprotectedErrors", CF_CA_F_BOOL, false, 0, 0, NULL},
    {"timeoutMs", CF_CA_F_INT, false, 1, 600000, NULL},
    {"totalTimeoutMs", CF_CA_F_INT, false, 1, 86400000, NULL},
    {NULL, CF_CA_F_STRING, false, 0, 0, NULL},
};

static const char *const secrets[] = {"secret", "keyPassword", NULL};

/*
 * Parses a distinguished name in OpenSSL's slash form ("/CN=CMP CA/O=Example", most general
 * first, as `openssl cmp -recipient` takes it) or in RFC 4514 form ("CN=CMP CA,O=Example", most
 * specific first). A backslash takes the next character literally. 0, or CF_EINVAL with the
 * reason.
 */
static int parse_dn(const char *text, X509_NAME **out, char *err, size_t errlen)
{
    bool slash = text[0] == '/';
    const char *p = slash ? text + 1 : text;
    X509_NAME *name = X509_NAME_new();
    struct cf_buf type, val;
    cf_buf_init(&type);
    cf_buf_init(&val);
    int rc = 0;
    while (*p && !rc) {
        cf_buf_reset(&type);
        cf_buf_reset(&val);
        while (*p == ' ' && !slash)
            p++;
        while (*p && *p != '=' && *p != (slash ? '/' : ','))
            cf_buf_putc(&type, *p++);
        while (type.len && type.data[type.len - 1] == ' ')
            type.data[--type.len] = '\0';
        if (*p != '=' || !type.len) {
            cf_errf(err, errlen, "\"%s\" is not a distinguished name (TYPE=value, ...)", text);
            rc = CF_EINVAL;
            break;
        }
        p++;
        while (*p && *p != (slash ? '/' : ',')) {
            if (*p == '\\' && p[1])
                p++;
            cf_buf_putc(&val, *p++);
        }
        if (*p)
            p++;
        /* RFC 4514 lists the most specific attribute first: each one goes before the last. */
        if (!X509_NAME_add_entry_by_txt(name, type.data, MBSTRING_UTF8,
                                        (const unsigned char *)val.data, (int)val.len,
                                        slash ? -1 : 0, 0)) {
            cf_errf(err, errlen, "\"%s\": '%s' is not an attribute type OpenSSL knows", text,
                    type.data);
            rc = CF_EINVAL;
        }
    }
    ERR_clear_error();
    cf_buf_free(&type);
    cf_buf_free(&val);
    if (rc) {
        X509_NAME_free(name);
        return rc;
    }
    *out = name;
    return 0;
}

static int check_path(const char *path, char *err, size_t errlen)
{
    if (path[0] != '/') {
        cf_errf(err, errlen, "settings.path: \"%s\" must start with '/'", path);
        return CF_EINVAL;
    }
    for (const char *q = path; *q; q++) {
        unsigned char ch = (unsigned char)*q;
        if (ch <= ' ' || ch >= 0x7f || ch == '?' || ch == '#') {
            cf_errf(err, errlen,
                    "settings.path: \"%s\" has a character that is not allowed there (spaces, "
                    "controls, '?', '#', non-ASCII)",
                    path);
            return CF_EINVAL;
        }
    }
    if (strlen(path) >= sizeof(((struct cf__ca_endpoint *)0)->path)) {
        cf_errf(err, errlen, "settings.path: longer than %zu bytes",
                sizeof(((struct cf__ca_endpoint *)0)->path) - 1);
        return CF_EINVAL;
    }
    return 0;
}

static bool has(const json_t *settings, const char *name)
{
    return json_object_get(settings, name) != NULL;
}

static int check(const json_t *settings, char *err, size_t errlen)
{
    int rc = cf__ca_check_fields("cmp", settings, fields, err, errlen);
    if (rc)
        return rc;
    struct cf__ca_endpoint ep;
    rc = cf__ca_parse_endpoint("server", cf__ca_setting_str(settings, "server", ""), false, false,
                               &ep, err, errlen);
    if (rc)
        return rc;
    const char *path = cf__ca_setting_str(settings, "path", NULL);
    if (path && (rc = check_path(path, err, errlen)) != 0)
        return rc;
    bool secret = has(settings, "secret"), cert = has(settings, "cert"), key = has(settings, "key");
    const char *why = NULL, *field = NULL;
    if (!secret && !cert && !key) {
        field = "secret";
        why = "the cmp connector must protect its requests: give settings.reference and "
              "settings.secret (a shared secret, PBM) or settings.cert and settings.key "
              "(signature)";
    } else if (secret && (cert || key)) {
        field = cert ? "cert" : "key";
        why = "give settings.secret (PBM) or settings.cert and settings.key (signature), not "
              "both";
    } else if (secret && !has(settings, "reference")) {
        field = "reference";
        why = "a shared secret needs the reference (senderKID) the CA knows it by";
    } else if (!secret && has(settings, "reference")) {
        field = "secret";
        why = "settings.reference is the name of a shared secret, which is missing";
    } else if (cert && !key) {
        field = "key";
        why = "settings.cert needs its private key";
    } else if (key && !cert) {
        field = "cert";
        why = "settings.key needs its certificate";
    } else if (has(settings, "keyPassword") && !key) {
        field = "keyPassword";
        why = "is only used with settings.key";
    } else if (has(settings, "mac") && !secret) {
        field = "mac";
        why = "is only used with a shared secret (settings.secret)";
    } else if (cert && !has(settings, "trusted") && !has(settings, "serverCert")) {
        field = "trusted";
        why = "signature protection needs settings.trusted (trust anchors) or "
              "settings.serverCert (the CA's signing certificate) to check the CA's signed "
              "answers";
    } else if (has(settings, "trusted") && has(settings, "serverCert")) {
        field = "serverCert";
        why = "give settings.trusted or settings.serverCert, not both";
    } else if (has(settings, "tlsTrusted") && !ep.tls) {
        field = "tlsTrusted";
        why = "is only used with an https:// server";
    }
    if (why) {
        cf_errf(err, errlen, "settings.%s: %s", field, why);
        return CF_EINVAL;
    }
    const char *recipient = cf__ca_setting_str(settings, "recipient", NULL);
    if (recipient) {
        X509_NAME *n = NULL;
        char why2[512];
        if (parse_dn(recipient, &n, why2, sizeof(why2)) != 0) {
            cf_errf(err, errlen, "settings.recipient: %s", why2);
            return CF_EINVAL;
        }
        X509_NAME_free(n);
    }
    return 0;
}

/* An ir carries a certificate template of certflow's making, so it can carry another subject and
 * other SANs than the CSR's (the CSR still proves possession of the key, checked here); a p10cr
 * is the CSR as it was signed. */
static int supports_override(const json_t *settings, char *why, size_t whylen)
{
    if (strcmp(cf__ca_setting_str(settings, "command", "p10cr"), "ir") == 0) {
        if (why && whylen)
            why[0] = '\0';
        return 1;
    }
    snprintf(why, whylen,
             "the cmp connector sends the PKCS#10 request as it was signed (p10cr), so the "
             "certificate's subject and SANs cannot differ from the CSR's");
    return 0;
}

/* ---- the connector's state ---- */

enum job_kind { JOB_ISSUE, JOB_REVOKE };

/* What a job asks of the loop thread when it is in the outbox. */
enum job_out { OUT_NONE, OUT_SEND, OUT_POLL, OUT_FINISH };

/* The settings of one request, copied on the loop thread so that workers never read JSON. */
struct opts {
    char url[1400];
    char who[1700];
    bool tls;
    int cmd; /* OSSL_CMP_P10CR or OSSL_CMP_IR */
    char *reference, *secret, *mac;
    char *cert, *key, *key_password, *trusted, *server_cert, *tls_trusted, *recipient;
    bool implicit_confirm, unprotected_errors;
    uint64_t timeout_ms, total_ms;
};

struct cmp;

struct job {
    struct cmp *cn;
    struct job *prev, *next; /* the connector's jobs under way; loop thread only */
    struct job *qnext;       /* in the worker queue or the outbox, under cn->lock */
    uv_timer_t timer;        /* poll waits; closed when the job ends, which frees it */
    enum job_kind kind;
    struct opts o;
    const struct cf_ca_conn_request *req; /* JOB_ISSUE */
    const struct cf_ca_conn_revoke *rreq; /* JOB_REVOKE */
    cf_ca_conn_done_fn done;
    cf_ca_conn_revoked_fn revoked;
    void *arg;
    uint8_t tid[TID_LEN];
    char tid_hex[2 * TID_LEN + 1];
    uint64_t deadline_ms; /* cf_mono_ms() */

    /* The worker's. */
    OSSL_CMP_CTX *ctx;
    struct cf_csr *csr;
    bool cert_refused; /* our certConf refused the certificate, for this reason: */
    char refused_why[256];

    /* Handed between the worker and the loop under cn->lock. */
    enum job_out out;
    int check_after_s;
    uint8_t *send_der; /* the request to send (OUT_SEND), freed by the loop */
    size_t send_len;
    uint64_t send_timeout_ms;
    bool answered; /* the loop has put the answer (or a failure) below */
    uint8_t *answer;
    size_t answer_len;
    bool xfer_failed;
    bool stopped;
    char xfer_msg[MSG_LEN];

    /* The loop's. */
    struct cf_httpc_xfer *xfer;
    bool waiting; /* the timer runs for a poll */

    /* The outcome, set by the worker (or the loop, when it ends a job that is not running). */
    enum cf_ca_status st;
    char msg[MSG_LEN];
    uint8_t *der;
    size_t der_len;
    struct cf_cert_info info;
    char *pem;
    uint8_t *p7;
    size_t p7_len;
    bool replayed;
};

struct cmp {
    struct cf_ca_connector pub;
    uv_loop_t *loop;

    /* Guards the worker queue, the outbox, the threads' counts, `stopping` and every job's
     * exchange fields. */
    uv_mutex_t lock;
    uv_cond_t work_cond;  /* a job was queued, or stopping */
    uv_cond_t reply_cond; /* an answer was handed to a worker */
    struct job *queue, *queue_tail;
    struct job *outbox;
    uv_thread_t threads[WORKERS];
    int n_threads, idle, n_queued;
    bool stopping;

    /* The loop's. */
    uv_async_t async;
    bool async_open, async_closing;
    struct cf_httpc *http;
    struct job *jobs;
    int n_jobs;
    int open;   /* handles and the HTTP client not yet closed */
    int in_cb;  /* inside on_async(), where `done` may free the connector */
    bool freed; /* free() was called; memory goes when `open` and `in_cb` are 0 */
};

/* ---- small helpers ---- */

static void copy_opt(char **dst, const json_t *settings, const char *name)
{
    const char *v = cf__ca_setting_str(settings, name, NULL);
    *dst = v ? cf_xstrdup(v) : NULL;
}

static void free_secret(char *s)
{
    if (s) {
        OPENSSL_cleanse(s, strlen(s));
        free(s);
    }
}

static void opts_clear(struct opts *o)
{
    free(o->reference);
    free_secret(o->secret);
    free(o->mac);
    free(o->cert);
    free(o->key);
    free_secret(o->key_password);
    free(o->trusted);
    free(o->server_cert);
    free(o->tls_trusted);
    free(o->recipient);
    memset(o, 0, sizeof(*o));
}

/* Fills `o` from settings that passed check(); CF_EINVAL with a message otherwise. */
static int opts_from(const json_t *settings, const char *template_name, struct opts *o, char *err,
                     size_t errlen)
{
    memset(o, 0, sizeof(*o));
    if (check(settings, err, errlen) != 0)
        return CF_EINVAL;
    struct cf__ca_endpoint ep;
    if (cf__ca_parse_endpoint("server", cf__ca_setting_str(settings, "server", ""), false, false,
                              &ep, err, errlen) != 0)
        return CF_EINVAL;
    const char *path = cf__ca_setting_str(settings, "path", NULL);
    size_t base = strlen(ep.url) - strlen(ep.path);
    snprintf(o->url, sizeof(o->url), "%.*s%s", (int)base, ep.url, path ? path : ep.path);
    cf__ca_who(&ep, "cmp", template_name, o->who, sizeof(o->who));
    o->tls = ep.tls;
    o->cmd = strcmp(cf__ca_setting_str(settings, "command", "p10cr"), "ir") == 0 ? OSSL_CMP_IR
                                                                                 : OSSL_CMP_P10CR;
    copy_opt(&o->reference, settings, "reference");
    copy_opt(&o->secret, settings, "secret");
    copy_opt(&o->mac, settings, "mac");
    copy_opt(&o->cert, settings, "cert");
    copy_opt(&o->key, settings, "key");
    copy_opt(&o->key_password, settings, "keyPassword");
    copy_opt(&o->trusted, settings, "trusted");
    copy_opt(&o->server_cert, settings, "serverCert");
    copy_opt(&o->tls_trusted, settings, "tlsTrusted");
    copy_opt(&o->recipient, settings, "recipient");
    o->implicit_confirm = cf__ca_setting_bool(settings, "implicitConfirm", false);
    o->unprotected_errors = cf__ca_setting_bool(settings, "unprotectedErrors", false);
    o->timeout_ms = (uint64_t)cf__ca_setting_int(settings, "timeoutMs", DEFAULT_TIMEOUT_MS);
    o->total_ms =
        (uint64_t)cf__ca_setting_int(settings, "totalTimeoutMs", DEFAULT_TOTAL_TIMEOUT_MS);
    return 0;
}

/* Text from a peer, for a message: printable ASCII kept, anything else '?'. */
static void put_clean(struct cf_buf *b, const char *s, size_t n)
{
    for (size_t i = 0; i < n && b->len < 600; i++) {
        unsigned char ch = (unsigned char)s[i];
        cf_buf_putc(b, ch >= ' ' && ch < 0x7f ? (char)ch : '?');
    }
}

static bool is_protection_error(unsigned long e)
{
    if (ERR_GET_LIB(e) != ERR_LIB_CMP)
        return false;
    switch (ERR_GET_REASON(e)) {
    case CMP_R_ERROR_VALIDATING_PROTECTION:
    case CMP_R_ERROR_VALIDATING_SIGNATURE:
    case CMP_R_WRONG_PBM_VALUE:
    case CMP_R_MISSING_PROTECTION:
    case CMP_R_NO_SUITABLE_SENDER_CERT:
    case CMP_R_SRVCERT_DOES_NOT_VALIDATE_MSG:
    case CMP_R_MISSING_TRUST_STORE:
    case CMP_R_MISSING_TRUST_ANCHOR:
        return true;
    default:
        return false;
    }
}

/* Empties this thread's OpenSSL error queue into `b` ("reason (detail); ..."); whether one of
 * the errors was about the protection of a message. */
static bool take_errors(struct cf_buf *b)
{
    bool protection = false;
    unsigned long e;
    const char *data, *file, *func;
    int line, flags;
    unsigned long last = 0;
    while ((e = ERR_get_error_all(&file, &line, &func, &data, &flags)) != 0) {
        protection |= is_protection_error(e);
        if (e == last)
            continue;
        last = e;
        const char *reason = ERR_reason_error_string(e);
        char num[32];
        if (!reason) {
            snprintf(num, sizeof(num), "error %lX", e);
            reason = num;
        }
        if (b->len)
            cf_buf_puts(b, "; ");
        put_clean(b, reason, strlen(reason));
        if ((flags & ERR_TXT_STRING) && data && *data) {
            cf_buf_puts(b, " (");
            put_clean(b, data, strlen(data));
            cf_buf_puts(b, ")");
        }
    }
    return protection;
}

static const char *const failinfo_names[] = {
    "badAlg",
    "badMessageCheck",
    "badRequest",
    "badTime",
    "badCertId",
    "badDataFormat",
    "wrongAuthority",
    "incorrectData",
    "missingTimeStamp",
    "badPOP",
    "certRevoked",
    "certConfirmed",
    "wrongIntegrity",
    "badRecipientNonce",
    "timeNotAvailable",
    "unacceptedPolicy",
    "unacceptedExtension",
    "addInfoNotAvailable",
    "badSenderNonce",
    "badCertTemplate",
    "signerNotTrusted",
    "transactionIdInUse",
    "unsupportedVersion",
    "notAuthorized",
    "systemUnavail",
    "systemFailure",
    "duplicateCertReq",
};

/* "badRequest: \"order not found\"" from the PKIStatusInfo the CA sent last. */
static void status_text(OSSL_CMP_CTX *ctx, struct cf_buf *b)
{
    int fi = OSSL_CMP_CTX_get_failInfoCode(ctx);
    bool any = false;
    for (int i = 0; fi > 0 && i <= OSSL_CMP_PKIFAILUREINFO_MAX; i++)
        if (fi & (1 << i)) {
            cf_buf_puts(b, any ? ", " : "");
            cf_buf_puts(b, failinfo_names[i]);
            any = true;
        }
    OSSL_CMP_PKIFREETEXT *ss = OSSL_CMP_CTX_get0_statusString(ctx);
    for (int i = 0; i < sk_ASN1_UTF8STRING_num(ss); i++) {
        const ASN1_UTF8STRING *s = sk_ASN1_UTF8STRING_value(ss, i);
        cf_buf_puts(b, i ? "; \"" : any ? ": \"" : "\"");
        put_clean(b, (const char *)ASN1_STRING_get0_data(s), (size_t)ASN1_STRING_length(s));
        cf_buf_putc(b, '"');
        any = true;
    }
    if (!any)
        cf_buf_puts(b, "no reason given");
}

static void hex(const uint8_t *p, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    out[2 * n] = '\0';
}

/* ---- the loop side: the outbox ---- */

/* Hands `j` to the loop thread for `what`. The async handle is woken under the lock, so that the
 * loop cannot end the job and close the handle between the push and the wake-up. */
static void post(struct job *j, enum job_out what)
{
    struct cmp *cn = j->cn;
    uv_mutex_lock(&cn->lock);
    j->out = what;
    j->qnext = cn->outbox;
    cn->outbox = j;
    uv_async_send(&cn->async);
    uv_mutex_unlock(&cn->lock);
}

/* ---- the worker side ---- */

static void fail(struct job *j, enum cf_ca_status st, const char *fmt, ...) CF_PRINTF(3, 4);

static void fail(struct job *j, enum cf_ca_status st, const char *fmt, ...)
{
    j->st = st;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(j->msg, sizeof(j->msg), fmt, ap);
    va_end(ap);
}

/* A transfer failure found on the worker. */
static void xfail(struct job *j, const char *fmt, ...) CF_PRINTF(2, 3);

static void xfail(struct job *j, const char *fmt, ...)
{
    j->xfer_failed = true;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(j->xfer_msg, sizeof(j->xfer_msg), fmt, ap);
    va_end(ap);
}

/* The transfer callback of OpenSSL's CMP client, on a worker: the loop sends, we wait. */
static OSSL_CMP_MSG *transfer(OSSL_CMP_CTX *ctx, const OSSL_CMP_MSG *req)
{
    struct job *j = OSSL_CMP_CTX_get_transfer_cb_arg(ctx);
    struct cmp *cn = j->cn;
    uint64_t now = cf_mono_ms();
    if (now >= j->deadline_ms) {
        xfail(j, "%s did not complete the transaction within settings.totalTimeoutMs (%llu ms)",
              j->o.who, (unsigned long long)j->o.total_ms);
        return NULL;
    }
    unsigned char *der = NULL;
    int len = i2d_OSSL_CMP_MSG(req, &der);
    if (len <= 0) {
        xfail(j, "the CMP request cannot be encoded");
        return NULL;
    }
    uint64_t left = j->deadline_ms - now;
    uv_mutex_lock(&cn->lock);
    if (cn->stopping) {
        uv_mutex_unlock(&cn->lock);
        OPENSSL_free(der);
        j->xfer_failed = j->stopped = true;
        return NULL;
    }
    j->send_der = cf_xmemdup(der, (size_t)len);
    j->send_len = (size_t)len;
    j->send_timeout_ms = j->o.timeout_ms < left ? j->o.timeout_ms : left;
    j->answered = false;
    j->out = OUT_SEND;
    j->qnext = cn->outbox;
    cn->outbox = j;
    uv_async_send(&cn->async);
    while (!j->answered)
        uv_cond_wait(&cn->reply_cond, &cn->lock);
    uint8_t *ans = j->answer;
    size_t ans_len = j->answer_len;
    j->answer = NULL;
    uv_mutex_unlock(&cn->lock);
    OPENSSL_free(der);
    if (!ans)
        return NULL;
    const unsigned char *p = ans;
    OSSL_CMP_MSG *rsp = d2i_OSSL_CMP_MSG(NULL, &p, (long)ans_len);
    if (!rsp || p != ans + ans_len) {
        OSSL_CMP_MSG_free(rsp);
        rsp = NULL;
        xfail(j, "%s answered with %zu bytes that are not a CMP message", j->o.who, ans_len);
    }
    free(ans);
    return rsp;
}

/* OpenSSL's CMP log lines, for debugging; they hold no secrets. */
static int log_cb(const char *func, const char *file, int line, OSSL_CMP_severity level,
                  const char *msg)
{
    (void)file;
    (void)line;
    (void)level;
    cf_log(CF_LOG_DEBUG, "cmp: openssl %s: %s", func ? func : "", msg);
    return 1;
}

/* The certConf check: a certificate that does not certify the CSR's key is refused, so that the
 * CA learns it and certflow never hands it out. OpenSSL makes the same check first for a key it
 * knows (it then comes with fail_info set); ours holds for every way of asking. */
static int cert_conf(OSSL_CMP_CTX *ctx, X509 *cert, int fail_info, const char **txt)
{
    struct job *j = OSSL_CMP_CTX_get_certConf_cb_arg(ctx);
    unsigned char *der = NULL;
    int len = i2d_X509(cert, &der);
    int m = len > 0 ? cf__ca_cert_matches_csr(der, (size_t)len, j->csr) : -1;
    OPENSSL_free(der);
    if (m != 1) {
        j->cert_refused = true;
        snprintf(j->refused_why, sizeof(j->refused_why),
                 "it does not certify the CSR's public key");
        if (!fail_info) {
            *txt = "the certificate does not certify the requested public key";
            fail_info = 1 << OSSL_CMP_PKIFAILUREINFO_incorrectData;
        }
    } else if (fail_info) {
        j->cert_refused = true;
        snprintf(j->refused_why, sizeof(j->refused_why), "%s",
                 *txt ? *txt : "OpenSSL found it wrong");
    }
    return fail_info;
}

static int password_cb(char *buf, int size, int rwflag, void *u)
{
    (void)rwflag;
    const char *pw = u;
    if (!pw)
        return -1; /* never prompt */
    size_t n = strlen(pw);
    if (n > (size_t)size)
        return -1;
    memcpy(buf, pw, n);
    return (int)n;
}

/* Opens settings.<field> for reading; NULL with the job failed (CaConnectionFailed: the admin
 * can put the file in place, and a retry then succeeds). */
static BIO *open_setting(struct job *j, const char *field, const char *path)
{
    FILE *f = fopen(path, "r");
    BIO *bio = f ? BIO_new_fp(f, BIO_CLOSE) : NULL;
    if (!bio) {
        int e = errno;
        char why[128] = "out of memory";
        if (!f && strerror_r(e, why, sizeof(why)) != 0)
            snprintf(why, sizeof(why), "error %d", e);
        if (f)
            fclose(f);
        fail(j, CF_CA_CONNECTION_FAILED, "cannot read settings.%s (%s): %s", field, path, why);
    }
    return bio;
}

/* Reads the PEM certificates of settings.<field>; the first one or more. */
static STACK_OF(X509) * read_certs(struct job *j, const char *field, const char *path)
{
    BIO *bio = open_setting(j, field, path);
    if (!bio)
        return NULL;
    STACK_OF(X509) *certs = sk_X509_new_null();
    X509 *x;
    while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL)
        sk_X509_push(certs, x);
    BIO_free(bio);
    ERR_clear_error();
    if (sk_X509_num(certs) == 0) {
        sk_X509_free(certs);
        fail(j, CF_CA_CONNECTION_FAILED, "settings.%s (%s) holds no PEM certificate", field, path);
        return NULL;
    }
    return certs;
}

/* Signature protection: our certificate (and its chain) and key. */
static int setup_signer(struct job *j)
{
    STACK_OF(X509) *certs = read_certs(j, "cert", j->o.cert);
    if (!certs)
        return -1;
    BIO *bio = open_setting(j, "key", j->o.key);
    if (!bio) {
        sk_X509_pop_free(certs, X509_free);
        return -1;
    }
    EVP_PKEY *pkey = PEM_read_bio_PrivateKey(bio, NULL, password_cb, j->o.key_password);
    BIO_free(bio);
    ERR_clear_error();
    int rc = -1;
    if (!pkey) {
        fail(j, CF_CA_CONNECTION_FAILED, "settings.key (%s) is not a PEM private key%s", j->o.key,
             j->o.key_password ? ", or settings.keyPassword is not its password"
                               : " (an encrypted one needs settings.keyPassword)");
    } else if (X509_check_private_key(sk_X509_value(certs, 0), pkey) != 1) {
        fail(j, CF_CA_CONNECTION_FAILED, "settings.key (%s) is not the key of settings.cert (%s)",
             j->o.key, j->o.cert);
    } else {
        X509 *own = sk_X509_shift(certs);
        /* The rest of the file is our chain, sent along in extraCerts. (OpenSSL 3.0 fails the
         * signature check of the answer with "passed a null parameter" when given an empty
         * list here.) */
        if (OSSL_CMP_CTX_set1_cert(j->ctx, own) && OSSL_CMP_CTX_set1_pkey(j->ctx, pkey) &&
            (sk_X509_num(certs) == 0 || OSSL_CMP_CTX_set1_untrusted(j->ctx, certs)))
            rc = 0;
        else
            fail(j, CF_CA_CONNECTION_FAILED, "the CMP context does not take settings.cert");
        X509_free(own);
    }
    ERR_clear_error();
    EVP_PKEY_free(pkey);
    sk_X509_pop_free(certs, X509_free);
    return rc;
}

/* Builds the CMP context from the settings; on failure the job's outcome says why. */
static int setup_ctx(struct job *j)
{
    struct opts *o = &j->o;
    OSSL_CMP_CTX *ctx = j->ctx = OSSL_CMP_CTX_new(NULL, NULL);
    if (!ctx) {
        fail(j, CF_CA_CONNECTION_FAILED, "out of memory for a CMP context");
        return -1;
    }
    OSSL_CMP_CTX_set_log_cb(ctx, log_cb);
    OSSL_CMP_CTX_set_log_verbosity(ctx, cf_log_get_level() <= CF_LOG_DEBUG ? OSSL_CMP_LOG_INFO
                                                                           : OSSL_CMP_LOG_ERR);
    OSSL_CMP_CTX_set_transfer_cb(ctx, transfer);
    OSSL_CMP_CTX_set_transfer_cb_arg(ctx, j);
    /* Our transfer callback keeps the time; OpenSSL's own limits would count blocked waits. */
    OSSL_CMP_CTX_set_option(ctx, OSSL_CMP_OPT_MSG_TIMEOUT, 0);
    OSSL_CMP_CTX_set_option(ctx, OSSL_CMP_OPT_TOTAL_TIMEOUT, 0);
    OSSL_CMP_CTX_set_option(ctx, OSSL_CMP_OPT_UNPROTECTED_ERRORS, o->unprotected_errors);
    OSSL_CMP_CTX_set_option(ctx, OSSL_CMP_OPT_IMPLICIT_CONFIRM, o->implicit_confirm);
    ASN1_OCTET_STRING *tid = ASN1_OCTET_STRING_new();
    if (!tid || !ASN1_OCTET_STRING_set(tid, j->tid, TID_LEN) ||
        !OSSL_CMP_CTX_set1_transactionID(ctx, tid)) {
        ASN1_OCTET_STRING_free(tid);
        fail(j, CF_CA_CONNECTION_FAILED, "out of memory for a CMP transaction id");
        return -1;
    }
    ASN1_OCTET_STRING_free(tid);
    if (o->secret) {
        int nid = OBJ_ln2nid(o->mac ? o->mac : "hmacWithSHA256");
        if (!OSSL_CMP_CTX_set1_referenceValue(ctx, (const unsigned char *)o->reference,
                                              (int)strlen(o->reference)) ||
            !OSSL_CMP_CTX_set1_secretValue(ctx, (const unsigned char *)o->secret,
                                           (int)strlen(o->secret)) ||
            nid == NID_undef || !OSSL_CMP_CTX_set_option(ctx, OSSL_CMP_OPT_MAC_ALGNID, nid)) {
            fail(j, CF_CA_CONNECTION_FAILED, "the CMP context does not take the shared secret");
            return -1;
        }
    } else if (setup_signer(j) != 0) {
        return -1;
    }
    if (o->trusted) {
        STACK_OF(X509) *certs = read_certs(j, "trusted", o->trusted);
        if (!certs)
            return -1;
        X509_STORE *st = X509_STORE_new();
        for (int i = 0; st && i < sk_X509_num(certs); i++)
            X509_STORE_add_cert(st, sk_X509_value(certs, i));
        sk_X509_pop_free(certs, X509_free);
        if (!st || !OSSL_CMP_CTX_set0_trustedStore(ctx, st)) {
            X509_STORE_free(st);
            fail(j, CF_CA_CONNECTION_FAILED, "the CMP context does not take settings.trusted");
            return -1;
        }
    }
    if (o->server_cert) {
        STACK_OF(X509) *certs = read_certs(j, "serverCert", o->server_cert);
        if (!certs)
            return -1;
        int ok = OSSL_CMP_CTX_set1_srvCert(ctx, sk_X509_value(certs, 0));
        sk_X509_pop_free(certs, X509_free);
        if (!ok) {
            fail(j, CF_CA_CONNECTION_FAILED, "the CMP context does not take settings.serverCert");
            return -1;
        }
    }
    if (o->recipient) {
        X509_NAME *n = NULL;
        char why[512];
        if (parse_dn(o->recipient, &n, why, sizeof(why)) != 0) {
            fail(j, CF_CA_COMMON_ERROR, "settings.recipient: %s", why);
            return -1;
        }
        int ok = OSSL_CMP_CTX_set1_recipient(ctx, n);
        X509_NAME_free(n);
        if (!ok) {
            fail(j, CF_CA_CONNECTION_FAILED, "the CMP context does not take settings.recipient");
            return -1;
        }
    }
    if (o->tls_trusted) {
        /* libcurl reads it; a missing file is said here in the words of the other settings. */
        BIO *bio = open_setting(j, "tlsTrusted", o->tls_trusted);
        if (!bio)
            return -1;
        BIO_free(bio);
    }
    ERR_clear_error();
    return 0;
}

/* The certificate with the CA certificates from the answer (caPubs, extraCerts) that chain it,
 * as a PKCS#7 certs-only bundle. */
static int chain_p7(struct job *j, X509 *cert)
{
    STACK_OF(X509) *pool = OSSL_CMP_CTX_get1_caPubs(j->ctx);
    STACK_OF(X509) *extra = OSSL_CMP_CTX_get1_extraCertsIn(j->ctx);
    if (!pool)
        pool = sk_X509_new_null();
    for (int i = 0; i < sk_X509_num(extra); i++) {
        X509 *x = sk_X509_value(extra, i);
        if (X509_up_ref(x) && !sk_X509_push(pool, x))
            X509_free(x);
    }
    sk_X509_pop_free(extra, X509_free);

    X509 *chain[10];
    size_t n = 0;
    chain[n++] = cert;
    while (n < CF_ARRAY_LEN(chain) && X509_check_issued(chain[n - 1], chain[n - 1]) != X509_V_OK) {
        X509 *next = NULL;
        for (int i = 0; i < sk_X509_num(pool) && !next; i++) {
            X509 *c = sk_X509_value(pool, i);
            bool used = false;
            for (size_t k = 0; k < n; k++)
                used |= X509_cmp(chain[k], c) == 0;
            EVP_PKEY *pk = X509_get0_pubkey(c);
            if (!used && X509_check_issued(c, chain[n - 1]) == X509_V_OK && pk &&
                X509_verify(chain[n - 1], pk) == 1)
                next = c;
        }
        if (!next)
            break;
        chain[n++] = next;
    }
    ERR_clear_error();
    uint8_t *ders[10];
    size_t lens[10];
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char *d = NULL;
        int len = i2d_X509(chain[i], &d);
        ders[i] = len > 0 ? d : NULL;
        lens[i] = len > 0 ? (size_t)len : 0;
        if (len <= 0)
            rc = -1;
    }
    char err[256] = "";
    if (!rc)
        rc = cf_pkcs7_certs_only((const uint8_t *const *)ders, lens, n, &j->p7, &j->p7_len, err,
                                 sizeof(err));
    for (size_t i = 0; i < n; i++)
        OPENSSL_free(ders[i]);
    sk_X509_pop_free(pool, X509_free);
    if (rc)
        fail(j, CF_CA_CONNECTION_FAILED, "the chain from %s cannot be bundled: %s", j->o.who,
             *err ? err : "a certificate does not encode");
    return rc;
}

/* The certificate `der` as the result: its facts, PEM and (when `cert`) its chain. */
static void take_cert(struct job *j, const uint8_t *der, size_t len, X509 *cert)
{
    char err[256];
    j->der = cf_xmemdup(der, len);
    j->der_len = len;
    if (cf_cert_info_from_der(j->der, j->der_len, &j->info, err, sizeof(err)) != 0) {
        fail(j, CF_CA_CONNECTION_FAILED, "the certificate from %s cannot be read: %s", j->o.who,
             err);
        return;
    }
    j->pem = cf_cert_pem(j->der, j->der_len);
    if (cert) {
        if (chain_p7(j, cert) != 0)
            return;
    } else {
        const uint8_t *one = j->der;
        if (cf_pkcs7_certs_only(&one, &j->der_len, 1, &j->p7, &j->p7_len, err, sizeof(err))) {
            fail(j, CF_CA_CONNECTION_FAILED, "the stored certificate cannot be bundled: %s", err);
            return;
        }
    }
    j->st = CF_CA_OK;
}

/* Why a CMP exchange failed, from what the transfer, certConf and OpenSSL recorded. */
static void classify(struct job *j, const char *what)
{
    struct cf_buf errs, st;
    cf_buf_init(&errs);
    cf_buf_init(&st);
    bool protection = take_errors(&errs);
    int status = OSSL_CMP_CTX_get_status(j->ctx);
    int fi = OSSL_CMP_CTX_get_failInfoCode(j->ctx);
    if (j->stopped) {
        fail(j, CF_CA_CONNECTION_FAILED, "%s", stopped_msg);
    } else if (j->xfer_failed) {
        fail(j, CF_CA_CONNECTION_FAILED, "%s", j->xfer_msg);
    } else if (j->cert_refused) {
        fail(j, CF_CA_CONNECTION_FAILED,
             "%s returned a certificate that certflow refused in its certConf and does not use: "
             "%s (transaction id %s)",
             j->o.who, j->refused_why, j->tid_hex);
    } else if (status == OSSL_CMP_PKISTATUS_rejection) {
        status_text(j->ctx, &st);
        if (fi > 0 && (fi & (OSSL_CMP_CTX_FAILINFO_transactionIdInUse |
                             OSSL_CMP_CTX_FAILINFO_duplicateCertReq))) {
            fail(j, CF_CA_CONNECTION_FAILED,
                 "%s already has this request (transaction id %s; it answered %s): an earlier "
                 "attempt of this step reached it, and CMP cannot fetch that attempt's result. "
                 "Find the certificate at the CA by hand instead of asking for a second one",
                 j->o.who, j->tid_hex, st.data);
            cf_log(CF_LOG_WARN, "cmp: %s answered %s for transaction id %s", j->o.who, st.data,
                   j->tid_hex);
        } else if (fi > 0 && (fi & (OSSL_CMP_CTX_FAILINFO_systemUnavail |
                                    OSSL_CMP_CTX_FAILINFO_systemFailure))) {
            fail(j, CF_CA_CONNECTION_FAILED,
                 "%s is unavailable (it answered %s); a later retry may succeed", j->o.who,
                 st.data);
        } else {
            fail(j, CF_CA_REQUEST_FAILED, "the CA rejected the %s: %s", what, st.data);
        }
    } else if (protection) {
        fail(j, CF_CA_CONNECTION_FAILED,
             "the answer of %s failed its protection check (%s): are settings.%s right?", j->o.who,
             errs.data,
             j->o.secret    ? "reference and secret"
             : j->o.trusted ? "trusted"
                            : "serverCert");
    } else {
        fail(j, CF_CA_CONNECTION_FAILED, "the CMP exchange with %s failed: %s", j->o.who,
             errs.len ? errs.data : "no reason given");
    }
    cf_buf_free(&errs);
    cf_buf_free(&st);
}

/* An ir with the override's subject and SANs (those it does not set come from the CSR) for the
 * CSR's public key. Only subject and SANs are carried: other extensions the CSR asks for are
 * the CA's to decide, as with the embedded CA. */
static int set_override(struct job *j)
{
    const struct cf_ca_overrides *ov = j->req->overrides;
    EVP_PKEY *pk = cf_csr_pubkey(j->csr);
    if (!pk) {
        char alg[80];
        fail(j, CF_CA_COMMON_ERROR,
             "the CSR's key algorithm %s is not one OpenSSL can put into an ir",
             cf_csr_key_algorithm(j->csr, alg, sizeof(alg)));
        return -1;
    }
    if (!EVP_PKEY_up_ref(pk) || !OSSL_CMP_CTX_set0_newPkey(j->ctx, 0, pk)) {
        fail(j, CF_CA_COMMON_ERROR, "the CSR's key cannot be put into an ir");
        return -1;
    }
    X509_NAME *subject = NULL;
    if (ov->set_subject) {
        subject = X509_NAME_new();
        for (size_t i = 0; subject && i < ov->n_subject; i++)
            if (!X509_NAME_add_entry_by_txt(subject, ov->subject[i].type, MBSTRING_UTF8,
                                            (const unsigned char *)ov->subject[i].value, -1, -1,
                                            0)) {
                ERR_clear_error();
                fail(j, CF_CA_COMMON_ERROR,
                     "the subject given for the certificate has an attribute OpenSSL cannot "
                     "encode: %s=%s",
                     ov->subject[i].type, ov->subject[i].value);
                X509_NAME_free(subject);
                return -1;
            }
    } else {
        subject = X509_NAME_dup(cf_csr_subject(j->csr));
    }
    int ok = subject && OSSL_CMP_CTX_set1_subjectName(j->ctx, subject);
    X509_NAME_free(subject);
    if (ok && ov->set_sans) {
        static const int gen[] = {[CF_CA_SAN_DNS] = GEN_DNS,
                                  [CF_CA_SAN_IP] = GEN_IPADD,
                                  [CF_CA_SAN_EMAIL] = GEN_EMAIL,
                                  [CF_CA_SAN_URI] = GEN_URI};
        for (size_t i = 0; ok && i < ov->n_sans; i++) {
            const struct cf_ca_san *san = &ov->sans[i];
            GENERAL_NAME *gn =
                (unsigned)san->type < CF_ARRAY_LEN(gen) && san->value
                    ? a2i_GENERAL_NAME(NULL, NULL, NULL, gen[san->type], san->value, 0)
                    : NULL;
            if (!gn) {
                ERR_clear_error();
                fail(j, CF_CA_COMMON_ERROR,
                     "SAN %zu given for the certificate cannot be encoded: %s", i + 1,
                     san->value ? san->value : "(none)");
                return -1;
            }
            ok = OSSL_CMP_CTX_push1_subjectAltName(j->ctx, gn);
            GENERAL_NAME_free(gn);
        }
    } else if (ok) {
        const GENERAL_NAMES *sans = cf_csr_sans(j->csr);
        for (int i = 0; ok && i < sk_GENERAL_NAME_num(sans); i++)
            ok = OSSL_CMP_CTX_push1_subjectAltName(j->ctx, sk_GENERAL_NAME_value(sans, i));
    }
    if (!ok) {
        ERR_clear_error();
        fail(j, CF_CA_COMMON_ERROR, "the subject or SANs cannot be put into an ir");
        return -1;
    }
    return 0;
}

/* The first step of an issue job: the CSR, replay, the context. 0 to go on to the CA. */
static int prepare_issue(struct job *j)
{
    const struct cf_ca_conn_request *r = j->req;
    char err[512];
    if (cf__ca_csr_check(r, &j->csr, err, sizeof(err)) != 0) {
        fail(j, CF_CA_COMMON_ERROR, "%s", err);
        return -1;
    }
    if (r->known_der) {
        int m = cf__ca_cert_matches_csr(r->known_der, r->known_der_len, j->csr);
        if (m < 0) {
            fail(j, CF_CA_CONNECTION_FAILED,
                 "the certificate stored for idempotency key \"%s\" cannot be read",
                 r->idempotency_key);
        } else if (m == 0) {
            fail(j, CF_CA_COMMON_ERROR,
                 "idempotency key \"%s\" was already used for a certificate of another public "
                 "key; each request needs its own key",
                 r->idempotency_key);
        } else {
            take_cert(j, r->known_der, r->known_der_len, NULL);
            j->replayed = j->st == CF_CA_OK;
        }
        return -1;
    }
    if (setup_ctx(j) != 0)
        return -1;
    int ok;
    if (r->overrides && j->o.cmd == OSSL_CMP_IR) {
        if (set_override(j) != 0)
            return -1;
        ok = 1;
    } else {
        size_t len;
        const uint8_t *der = cf_csr_der(j->csr, &len);
        const unsigned char *p = der;
        X509_REQ *x = d2i_X509_REQ(NULL, &p, (long)len);
        ok = x && OSSL_CMP_CTX_set1_p10CSR(j->ctx, x);
        X509_REQ_free(x);
    }
    ok = ok && OSSL_CMP_CTX_set_certConf_cb(j->ctx, cert_conf) &&
         OSSL_CMP_CTX_set_certConf_cb_arg(j->ctx, j) &&
         /* The SANs are the request's; OpenSSL would otherwise copy those of our signer. */
         OSSL_CMP_CTX_set_option(j->ctx, OSSL_CMP_OPT_SUBJECTALTNAME_NODEFAULT, 1);
    if (ok && j->o.cmd == OSSL_CMP_IR)
        ok = OSSL_CMP_CTX_set_option(j->ctx, OSSL_CMP_OPT_POPO_METHOD, OSSL_CRMF_POPO_RAVERIFIED);
    if (!ok) {
        ERR_clear_error();
        fail(j, CF_CA_COMMON_ERROR, "the CSR cannot be put into a CMP request");
        return -1;
    }
    cf_log(CF_LOG_DEBUG, "cmp: %s to %s transaction=%s attempt=%d",
           j->o.cmd == OSSL_CMP_IR ? "ir" : "p10cr", j->o.url, j->tid_hex, r->attempt);
    return 0;
}

static int prepare_revoke(struct job *j)
{
    const struct cf_ca_conn_revoke *r = j->rreq;
    const unsigned char *p = r->der;
    X509 *x = d2i_X509(NULL, &p, (long)r->der_len);
    if (!x || p != r->der + r->der_len) {
        X509_free(x);
        ERR_clear_error();
        fail(j, CF_CA_COMMON_ERROR, "the certificate to revoke is not one DER certificate");
        return -1;
    }
    int rc = setup_ctx(j);
    if (!rc && (!OSSL_CMP_CTX_set1_oldCert(j->ctx, x) ||
                !OSSL_CMP_CTX_set_option(j->ctx, OSSL_CMP_OPT_REVOCATION_REASON, r->reason))) {
        ERR_clear_error();
        fail(j, CF_CA_COMMON_ERROR, "the certificate or reason cannot be put into a CMP rr");
        rc = -1;
    }
    X509_free(x);
    if (!rc)
        cf_log(CF_LOG_DEBUG, "cmp: rr to %s reason=%d", j->o.url, r->reason);
    return rc;
}

/* One turn of a job on a worker: from its start, or from a poll, to its end or its next poll. */
static void step(struct job *j)
{
    ERR_clear_error();
    if (!j->ctx) {
        int rc = j->kind == JOB_ISSUE ? prepare_issue(j) : prepare_revoke(j);
        if (rc)
            goto finish;
    }
    if (j->kind == JOB_REVOKE) {
        if (OSSL_CMP_exec_RR_ses(j->ctx) == 1)
            j->st = CF_CA_OK;
        else
            classify(j, "revocation");
        goto finish;
    }
    int check_after = 0;
    int rc = OSSL_CMP_try_certreq(j->ctx, j->o.cmd, NULL, &check_after);
    if (rc == -1) {
        ERR_clear_error();
        uint64_t now = cf_mono_ms();
        if (check_after < 0)
            check_after = 0;
        if (now + (uint64_t)check_after * 1000 >= j->deadline_ms) {
            fail(j, CF_CA_CONNECTION_FAILED,
                 "%s has not issued the certificate within settings.totalTimeoutMs (%llu ms): it "
                 "asks to poll again in %d s (transaction id %s)",
                 j->o.who, (unsigned long long)j->o.total_ms, check_after, j->tid_hex);
            goto finish;
        }
        j->check_after_s = check_after;
        post(j, OUT_POLL);
        return;
    }
    if (rc == 1) {
        X509 *cert = OSSL_CMP_CTX_get0_newCert(j->ctx);
        unsigned char *der = NULL;
        int len = cert ? i2d_X509(cert, &der) : -1;
        if (len > 0)
            take_cert(j, der, (size_t)len, cert);
        else
            fail(j, CF_CA_CONNECTION_FAILED, "%s answered without a certificate", j->o.who);
        OPENSSL_free(der);
    } else {
        classify(j, "request");
    }
finish:
    OSSL_CMP_CTX_free(j->ctx);
    j->ctx = NULL;
    cf_csr_free(j->csr);
    j->csr = NULL;
    ERR_clear_error();
    post(j, OUT_FINISH);
}

static void worker_main(void *arg)
{
    struct cmp *cn = arg;
    uv_mutex_lock(&cn->lock);
    for (;;) {
        while (!cn->queue && !cn->stopping) {
            cn->idle++;
            uv_cond_wait(&cn->work_cond, &cn->lock);
            cn->idle--;
        }
        struct job *j = cn->queue;
        if (!j)
            break;
        cn->queue = j->qnext;
        if (!cn->queue)
            cn->queue_tail = NULL;
        cn->n_queued--;
        uv_mutex_unlock(&cn->lock);
        step(j);
        uv_mutex_lock(&cn->lock);
    }
    uv_mutex_unlock(&cn->lock);
}

/* ---- the loop side ---- */

static void maybe_release(struct cmp *cn);
static void maybe_close(struct cmp *cn);

/* Queues `j` for a worker, starting one when none is idle. 0, or -1 when no thread can run it. */
static int queue_job(struct job *j)
{
    struct cmp *cn = j->cn;
    int rc = 0;
    uv_mutex_lock(&cn->lock);
    /* Threads that are idle but not yet awake are already promised to queued jobs. */
    if (cn->idle <= cn->n_queued && cn->n_threads < WORKERS) {
        if (uv_thread_create(&cn->threads[cn->n_threads], worker_main, cn) == 0)
            cn->n_threads++;
        else if (cn->n_threads == 0)
            rc = -1;
    }
    if (!rc) {
        j->qnext = NULL;
        if (cn->queue_tail)
            cn->queue_tail->qnext = j;
        else
            cn->queue = j;
        cn->queue_tail = j;
        cn->n_queued++;
        uv_cond_signal(&cn->work_cond);
    }
    uv_mutex_unlock(&cn->lock);
    return rc;
}

static void job_closed(uv_handle_t *h)
{
    struct job *j = h->data;
    struct cmp *cn = j->cn;
    opts_clear(&j->o);
    free(j->der);
    cf_cert_info_clear(&j->info);
    free(j->pem);
    free(j->p7);
    free(j);
    cn->open--;
    maybe_release(cn);
}

/* Calls the job's callback and ends it. */
static void deliver(struct job *j)
{
    struct cmp *cn = j->cn;
    if (j->prev)
        j->prev->next = j->next;
    else
        cn->jobs = j->next;
    if (j->next)
        j->next->prev = j->prev;
    if (--cn->n_jobs == 0 && cn->async_open)
        uv_unref((uv_handle_t *)&cn->async);
    if (j->kind == JOB_ISSUE) {
        struct cf_ca_conn_result res = {.status = j->st, .message = j->st ? j->msg : NULL};
        if (!j->st) {
            res.der = j->der;
            res.der_len = j->der_len;
            res.info = &j->info;
            res.pem = j->pem;
            res.chain_p7 = j->p7;
            res.chain_p7_len = j->p7_len;
            res.replayed = j->replayed;
        }
        j->done(j->arg, &res);
    } else {
        j->revoked(j->arg, j->st, j->st ? j->msg : NULL);
    }
    uv_close((uv_handle_t *)&j->timer, job_closed);
}

/* Ends a job that no worker holds, because certflow stops. */
static void end_stopped(struct job *j)
{
    OSSL_CMP_CTX_free(j->ctx);
    j->ctx = NULL;
    cf_csr_free(j->csr);
    j->csr = NULL;
    j->st = CF_CA_CONNECTION_FAILED;
    snprintf(j->msg, sizeof(j->msg), "%s", stopped_msg);
    deliver(j);
}

/* Hands an answer (or a failure, `ans` NULL) to the worker waiting in transfer(). */
static void answer(struct job *j, uint8_t *ans, size_t len, bool stopped, const char *fmt, ...)
    CF_PRINTF(5, 6);

static void answer(struct job *j, uint8_t *ans, size_t len, bool stopped, const char *fmt, ...)
{
    struct cmp *cn = j->cn;
    uv_mutex_lock(&cn->lock);
    if (!ans) {
        j->xfer_failed = true;
        j->stopped = stopped;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(j->xfer_msg, sizeof(j->xfer_msg), fmt, ap);
        va_end(ap);
    }
    j->answer = ans;
    j->answer_len = len;
    j->answered = true;
    uv_cond_broadcast(&cn->reply_cond);
    uv_mutex_unlock(&cn->lock);
}

/* What a cf_httpc failure says, without the "host:port: " the client puts first (our messages
 * name the CA and its template instead). For a failed connection, the system's reason that the
 * client adds in parentheses ("connection refused") says all. */
static void cause_of(const char *error, bool connect, char *out, size_t outlen)
{
    const char *c = error && *error ? error : "no reason given";
    const char *sep = strstr(c, ": ");
    if (sep)
        c = sep + 2;
    size_t n = strlen(c);
    const char *open = n && c[n - 1] == ')' ? strrchr(c, '(') : NULL;
    if (connect && open)
        snprintf(out, outlen, "%.*s", (int)(c + n - 1 - open - 1), open + 1);
    else
        snprintf(out, outlen, "%s", c);
}

static void on_http(void *arg, const struct cf_httpc_resp *resp)
{
    struct job *j = arg;
    j->xfer = NULL;
    const char *who = j->o.who;
    const char *ct = resp->content_type;
    char cause[600];
    cause_of(resp->error, resp->fail == CF_HTTPC_CONNECT, cause, sizeof(cause));
    switch (resp->fail) {
    case CF_HTTPC_OK:
        break;
    case CF_HTTPC_CANCELED:
        answer(j, NULL, 0, true, "%s", stopped_msg);
        return;
    case CF_HTTPC_RESOLVE:
        answer(j, NULL, 0, false, "cannot resolve the name of %s: %s", who, cause);
        return;
    case CF_HTTPC_CONNECT:
        answer(j, NULL, 0, false, "cannot connect to %s: %s", who, cause);
        return;
    case CF_HTTPC_TLS:
        answer(j, NULL, 0, false, "TLS with %s failed: %s", who, cause);
        return;
    case CF_HTTPC_TIMEOUT:
        answer(j, NULL, 0, false, "%s did not answer within %llu ms%s", who,
               (unsigned long long)j->send_timeout_ms,
               resp->sent ? " (it may have received the request; a retry sends the same "
                            "transaction id)"
                          : "");
        return;
    case CF_HTTPC_LOCAL:
        answer(j, NULL, 0, false, "cannot send to %s: %s", who, cause);
        return;
    default:
        answer(j, NULL, 0, false, "the exchange with %s broke: %s", who, cause);
        return;
    }
    if (resp->status != 200) {
        answer(j, NULL, 0, false, "%s answered HTTP %ld to POST %s%s", who, resp->status, j->o.url,
               resp->status == 404 ? " (is settings.path right?)" : "");
        return;
    }
    size_t n = strlen("application/pkixcmp");
    if (!ct || strncasecmp(ct, "application/pkixcmp", n) != 0 ||
        (ct[n] && ct[n] != ';' && ct[n] != ' ')) {
        struct cf_buf b;
        cf_buf_init(&b);
        put_clean(&b, ct ? ct : "", ct ? strlen(ct) : 0);
        answer(j, NULL, 0, false,
               "%s answered with Content-Type \"%s\" instead of application/pkixcmp", who, b.data);
        cf_buf_free(&b);
        return;
    }
    if (!resp->body || !resp->body_len) {
        answer(j, NULL, 0, false, "%s answered with an empty body", who);
        return;
    }
    answer(j, cf_xmemdup(resp->body, resp->body_len), resp->body_len, false, "%s", "");
}

static void send_now(struct job *j)
{
    struct cmp *cn = j->cn;
    uint8_t *der = j->send_der;
    size_t len = j->send_len;
    j->send_der = NULL;
    if (cn->stopping) {
        free(der);
        answer(j, NULL, 0, true, "%s", stopped_msg);
        return;
    }
    if (!cn->http) {
        char err[256];
        if (cf_httpc_new(cn->loop, &cn->http, err, sizeof(err)) != 0) {
            free(der);
            answer(j, NULL, 0, false, "cannot send to %s: no HTTP client: %s", j->o.who, err);
            return;
        }
        cn->open++;
    }
    static const struct cf_httpc_header hdrs[] = {{"Content-Type", "application/pkixcmp"}};
    struct cf_httpc_tls tls = {.ca_file = j->o.tls_trusted};
    struct cf_httpc_req req = {
        .method = "POST",
        .url = j->o.url,
        .headers = hdrs,
        .n_headers = CF_ARRAY_LEN(hdrs),
        .body = der,
        .body_len = len,
        .timeout_ms = j->send_timeout_ms ? j->send_timeout_ms : 1,
        .tls = j->o.tls ? &tls : NULL,
    };
    int rc = cf_httpc_send(cn->http, &req, on_http, j, &j->xfer);
    free(der);
    if (rc)
        answer(j, NULL, 0, false, "cannot send to %s: %s", j->o.who, cf_strerror(rc));
}

static void on_poll_timer(uv_timer_t *t)
{
    struct job *j = t->data;
    j->waiting = false;
    if (queue_job(j) != 0)
        end_stopped(j);
}

static void on_async(uv_async_t *a)
{
    struct cmp *cn = a->data;
    uv_mutex_lock(&cn->lock);
    struct job *list = cn->outbox, *fifo = NULL;
    cn->outbox = NULL;
    /* The outbox is a stack; take it in the order it was filled. */
    while (list) {
        struct job *j = list;
        list = j->qnext;
        j->qnext = fifo;
        fifo = j;
    }
    uv_mutex_unlock(&cn->lock);
    cn->in_cb++;
    while (fifo) {
        struct job *j = fifo;
        fifo = j->qnext;
        j->qnext = NULL;
        enum job_out what = j->out;
        j->out = OUT_NONE;
        switch (what) {
        case OUT_SEND:
            send_now(j);
            break;
        case OUT_POLL:
            if (cn->stopping) {
                end_stopped(j);
            } else {
                uint64_t now = cf_mono_ms();
                uint64_t ms = (uint64_t)j->check_after_s * 1000;
                if (now + ms > j->deadline_ms)
                    ms = j->deadline_ms > now ? j->deadline_ms - now : 0;
                j->waiting = true;
                uv_timer_start(&j->timer, on_poll_timer, ms, 0);
            }
            break;
        case OUT_FINISH:
            deliver(j);
            break;
        case OUT_NONE:
            break;
        }
    }
    cn->in_cb--;
    maybe_close(cn);
    maybe_release(cn);
}

static void async_closed(uv_handle_t *h)
{
    struct cmp *cn = h->data;
    cn->async_open = false;
    cn->open--;
    maybe_release(cn);
}

static void http_closed(void *arg)
{
    struct cmp *cn = arg;
    cn->open--;
    maybe_release(cn);
}

/* Once certflow stops and no job is left, the async handle goes. */
static void maybe_close(struct cmp *cn)
{
    if (cn->stopping && cn->n_jobs == 0 && cn->async_open && !cn->async_closing) {
        cn->async_closing = true;
        uv_close((uv_handle_t *)&cn->async, async_closed);
    }
}

static void maybe_release(struct cmp *cn)
{
    if (!cn->freed || cn->open > 0 || cn->in_cb > 0)
        return;
    for (int i = 0; i < cn->n_threads; i++)
        uv_thread_join(&cn->threads[i]);
    uv_cond_destroy(&cn->work_cond);
    uv_cond_destroy(&cn->reply_cond);
    uv_mutex_destroy(&cn->lock);
    free(cn);
}

/* The async handle, made with the first request. */
static int start(struct cmp *cn)
{
    if (cn->async_open)
        return 0;
    if (cn->async_closing || cn->stopping)
        return CF_ESTATE;
    if (uv_async_init(cn->loop, &cn->async, on_async) != 0)
        return CF_ENOMEM;
    cn->async.data = cn;
    cn->async_open = true;
    cn->open++;
    uv_unref((uv_handle_t *)&cn->async);
    return 0;
}

static struct job *job_new(struct cmp *cn, const json_t *settings, const char *template_name,
                           const char *key, char *err, size_t errlen)
{
    struct job *j = cf_xcalloc(1, sizeof(*j));
    j->cn = cn;
    if (opts_from(settings, template_name, &j->o, err, errlen) != 0) {
        opts_clear(&j->o);
        free(j);
        return NULL;
    }
    if (key) {
        uint8_t md[32];
        unsigned int mdlen = 0;
        EVP_Digest(key, strlen(key), md, &mdlen, EVP_sha256(), NULL);
        memcpy(j->tid, md, TID_LEN);
    } else {
        RAND_bytes(j->tid, TID_LEN);
    }
    hex(j->tid, TID_LEN, j->tid_hex);
    j->deadline_ms = cf_mono_ms() + j->o.total_ms;
    return j;
}

/* Starts a job made by job_new(): 0, or a CF_E* code (the job is freed, nothing is called). */
static int job_start(struct cmp *cn, struct job *j)
{
    int rc = cn->stopping ? CF_ESTATE : start(cn);
    if (!rc && uv_timer_init(cn->loop, &j->timer) != 0)
        rc = CF_ENOMEM;
    if (rc) {
        opts_clear(&j->o);
        free(j);
        return rc;
    }
    cn->open++;
    j->timer.data = j;
    j->next = cn->jobs;
    if (cn->jobs)
        cn->jobs->prev = j;
    cn->jobs = j;
    if (cn->n_jobs++ == 0)
        uv_ref((uv_handle_t *)&cn->async);
    if (queue_job(j) != 0) {
        j->st = CF_CA_CONNECTION_FAILED;
        snprintf(j->msg, sizeof(j->msg), "the cmp connector cannot start a worker thread");
        post(j, OUT_FINISH);
    }
    return 0;
}

static int issue(struct cf_ca_connector *c, const struct cf_ca_conn_request *req,
                 cf_ca_conn_done_fn done, void *arg)
{
    struct cmp *cn = cf_container_of(c, struct cmp, pub);
    if (!req || !done || !req->idempotency_key)
        return CF_EINVAL;
    char err[512];
    struct job *j =
        job_new(cn, req->settings, req->template_name, req->idempotency_key, err, sizeof(err));
    if (!j)
        return cf__ca_fail_later(cn->loop, done, arg, CF_CA_COMMON_ERROR, err);
    j->kind = JOB_ISSUE;
    j->req = req;
    j->done = done;
    j->arg = arg;
    return job_start(cn, j);
}

struct revoke_fail {
    cf_ca_conn_revoked_fn done;
    void *arg;
};

static void revoke_failed(void *arg, const struct cf_ca_conn_result *res)
{
    struct revoke_fail *rf = arg;
    rf->done(rf->arg, res->status, res->message);
    free(rf);
}

static int revoke(struct cf_ca_connector *c, const struct cf_ca_conn_revoke *req,
                  cf_ca_conn_revoked_fn done, void *arg)
{
    struct cmp *cn = cf_container_of(c, struct cmp, pub);
    if (!req || !done || !req->der || !req->der_len || req->reason < 0 || req->reason > 10 ||
        req->reason == 7)
        return CF_EINVAL;
    char err[512];
    struct job *j = job_new(cn, req->settings, req->template_name, NULL, err, sizeof(err));
    if (!j) {
        struct revoke_fail *rf = cf_xcalloc(1, sizeof(*rf));
        rf->done = done;
        rf->arg = arg;
        int rc = cf__ca_fail_later(cn->loop, revoke_failed, rf, CF_CA_COMMON_ERROR, err);
        if (rc)
            free(rf);
        return rc;
    }
    j->kind = JOB_REVOKE;
    j->rreq = req;
    j->revoked = done;
    j->arg = arg;
    return job_start(cn, j);
}

static void shutdown_conn(struct cf_ca_connector *c)
{
    struct cmp *cn = cf_container_of(c, struct cmp, pub);
    if (cn->stopping)
        return;
    uv_mutex_lock(&cn->lock);
    cn->stopping = true;
    struct job *queued = cn->queue;
    cn->queue = cn->queue_tail = NULL;
    cn->n_queued = 0;
    uv_cond_broadcast(&cn->work_cond);
    uv_mutex_unlock(&cn->lock);
    /* Jobs that no worker holds end now (through the outbox, so that no callback runs inside
     * shutdown()); running ones see `stopping` at their next message, and the transfers under
     * way end with CF_HTTPC_CANCELED when the client closes. */
    while (queued) {
        struct job *j = queued;
        queued = j->qnext;
        j->st = CF_CA_CONNECTION_FAILED;
        snprintf(j->msg, sizeof(j->msg), "%s", stopped_msg);
        OSSL_CMP_CTX_free(j->ctx);
        j->ctx = NULL;
        cf_csr_free(j->csr);
        j->csr = NULL;
        post(j, OUT_FINISH);
    }
    for (struct job *j = cn->jobs; j; j = j->next)
        if (j->waiting) {
            uv_timer_stop(&j->timer);
            j->waiting = false;
            OSSL_CMP_CTX_free(j->ctx);
            j->ctx = NULL;
            cf_csr_free(j->csr);
            j->csr = NULL;
            j->st = CF_CA_CONNECTION_FAILED;
            snprintf(j->msg, sizeof(j->msg), "%s", stopped_msg);
            post(j, OUT_FINISH);
        }
    if (cn->http) {
        struct cf_httpc *h = cn->http;
        cn->http = NULL;
        cf_httpc_close(h, http_closed, cn);
    }
    maybe_close(cn);
}

static void free_conn(struct cf_ca_connector *c)
{
    if (!c)
        return;
    struct cmp *cn = cf_container_of(c, struct cmp, pub);
    shutdown_conn(c);
    cn->freed = true;
    maybe_release(cn);
}

static const struct cf_ca_connector_ops ops = {
    .issue = issue,
    .revoke = revoke,
    .shutdown = shutdown_conn,
    .free = free_conn,
};

static int create(const struct cf_ca_connector_env *env, struct cf_ca_connector **out, char *err,
                  size_t errlen);

const struct cf_ca_connector_kind cf__ca_kind_cmp = {
    .name = "cmp",
    .available = true,
    .secret_fields = secrets,
    .check_settings = check,
    .supports_override = supports_override,
    .create = create,
};

static int create(const struct cf_ca_connector_env *env, struct cf_ca_connector **out, char *err,
                  size_t errlen)
{
    if (!env || !env->loop) {
        cf_errf(err, errlen, "the cmp connector needs a loop");
        return CF_EINVAL;
    }
    struct cmp *cn = cf_xcalloc(1, sizeof(*cn));
    cn->pub.ops = &ops;
    cn->pub.kind = &cf__ca_kind_cmp;
    cn->loop = env->loop;
    if (uv_mutex_init(&cn->lock) != 0) {
        free(cn);
        cf_errf(err, errlen, "cannot create a mutex");
        return CF_ENOMEM;
    }
    if (uv_cond_init(&cn->work_cond) != 0) {
        uv_mutex_destroy(&cn->lock);
        free(cn);
        cf_errf(err, errlen, "cannot create a condition variable");
        return CF_ENOMEM;
    }
    if (uv_cond_init(&cn->reply_cond) != 0) {
        uv_cond_destroy(&cn->work_cond);
        uv_mutex_destroy(&cn->lock);
        free(cn);
        cf_errf(err, errlen, "cannot create a condition variable");
        return CF_ENOMEM;
    }
    *out = &cn->pub;
    return 0;
}
