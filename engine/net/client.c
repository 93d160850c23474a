/*
 * certflow's HTTP client (net/client.h): libcurl's multi interface driven by the libuv loop. curl
 * says which sockets to watch through its socket callback (one uv_poll_t per socket) and when to
 * call it back through its timer callback (one uv_timer_t); when either fires we hand the event
 * to curl_multi_socket_action() and collect finished transfers with curl_multi_info_read(). Each
 * request is one easy handle in the client's one multi handle, and an easy handle is removed and
 * cleaned up as soon as its transfer ends, so that the multi handle's connection cache keeps the
 * connection alive for the next request to the same host.
 *
 * Finished transfers are queued and handed to their `done` by dispatch(): right after curl's work
 * in a uv callback, or from a zero-delay timer (the kick) for what cf_httpc_send(),
 * cf_httpc_cancel() and cf_httpc_close() decide on their own, so that `done` never runs inside
 * them. Closing cancels every transfer, delivers the queue, cleans up the multi handle (which
 * closes cached connections) and then closes the uv handles; the client is freed in the last
 * close callback.
 *
 * This file leaves to its callers what a failure means (retrying, CaConnectionFailed: the
 * connectors in ca/) and logs nothing about requests: URLs may carry tokens and bodies secrets.
 */
#include "net/client.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <openssl/crypto.h>

#include "base/base.h"

/* CURLOPT_PREREQFUNCTION (7.80.0) is how `sent` is known; see on_prereq(). */
#if LIBCURL_VERSION_NUM < 0x075000
#error "certflow's HTTP client needs libcurl 7.80.0 or newer"
#endif

/* Response headers beyond these are a broken or hostile server, not a CA answering. */
#define MAX_HEADER_BYTES (64 * 1024)
#define MAX_HEADERS 256

enum xstate {
    X_ACTIVE,    /* its easy handle is in the multi handle */
    X_QUEUED,    /* finished, `done` not yet run */
    X_DELIVERING /* inside `done` */
};

/* One watched socket. Freed only in its poll handle's close callback. */
struct sock {
    uv_poll_t poll;
    struct cf_httpc *c;
    curl_socket_t fd;
    struct sock *prev, *next;
};

struct cf_httpc_xfer {
    struct cf_httpc *c;
    CURL *easy;
    struct curl_slist *req_headers;
    uint8_t *body; /* our copy of the request body, given to curl as POSTFIELDS */
    size_t body_len;
    char *key_password; /* a copy, only to keep it out of messages; cleansed when freed */
    char *hostport;     /* "host:port" of the URL for messages; NULL when the URL is bad */
    cf_httpc_done_fn done;
    void *arg;
    enum xstate state;
    struct cf_httpc_xfer *prev, *next; /* in c->active, or next in c->queue */
    size_t max_response;
    struct cf_buf rbody;
    struct cf_buf rhdrs; /* "name\0value\0" for each response header */
    size_t n_rhdrs;
    bool sent;
    bool too_large;
    bool hdrs_too_large;
    enum cf_httpc_fail fail;
    long status;
    char *error;
    uint64_t start_ns;
    uint64_t elapsed_ms;
    char errbuf[CURL_ERROR_SIZE];
};

struct cf_httpc {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer; /* curl's timeout */
    uv_timer_t kick;  /* runs dispatch() outside cf_httpc_send/cancel/close */
    struct sock *socks;
    struct cf_httpc_xfer *active;
    struct cf_httpc_xfer *qhead, *qtail;
    int handles; /* uv handles initialised and not yet closed */
    bool dispatching;
    bool closing;
    bool torn_down;
    void (*closed)(void *arg);
    void *closed_arg;
};

static uv_once_t global_once = UV_ONCE_INIT;
static CURLcode global_rc;

static void global_init(void)
{
    global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* ---- handles and their closing ---- */

static void handle_closed(struct cf_httpc *c)
{
    c->handles--;
    if (c->torn_down && c->handles == 0) {
        void (*closed)(void *) = c->closed;
        void *arg = c->closed_arg;
        free(c);
        if (closed)
            closed(arg);
    }
}

static void on_timer_closed(uv_handle_t *h)
{
    handle_closed(h->data);
}

static void on_sock_closed(uv_handle_t *h)
{
    struct sock *k = h->data;
    struct cf_httpc *c = k->c;
    free(k);
    handle_closed(c);
}

static void sock_close(struct cf_httpc *c, struct sock *k)
{
    uv_poll_stop(&k->poll);
    if (k->prev)
        k->prev->next = k->next;
    else
        c->socks = k->next;
    if (k->next)
        k->next->prev = k->prev;
    uv_close((uv_handle_t *)&k->poll, on_sock_closed);
}

/* ---- transfers ---- */

static void xfer_free(struct cf_httpc_xfer *x)
{
    if (x->easy)
        curl_easy_cleanup(x->easy);
    curl_slist_free_all(x->req_headers);
    if (x->body) {
        OPENSSL_cleanse(x->body, x->body_len);
        free(x->body);
    }
    if (x->key_password) {
        OPENSSL_cleanse(x->key_password, strlen(x->key_password));
        free(x->key_password);
    }
    free(x->hostport);
    free(x->error);
    cf_buf_free(&x->rbody);
    cf_buf_free(&x->rhdrs);
    free(x);
}

/* Sets the message for people: "host:port: cause", with the key password masked should any
 * library text ever echo it (none does today; this keeps the promise local to this file). */
static void set_error(struct cf_httpc_xfer *x, const char *fmt, ...) CF_PRINTF(2, 3);
static void set_error(struct cf_httpc_xfer *x, const char *fmt, ...)
{
    struct cf_buf cause;
    cf_buf_init(&cause);
    va_list ap;
    va_start(ap, fmt);
    char tmp[512];
    vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (x->hostport)
        cf_buf_printf(&cause, "%s: %s", x->hostport, tmp);
    else
        cf_buf_puts(&cause, tmp);

    const char *pw = x->key_password;
    struct cf_buf out;
    cf_buf_init(&out);
    const char *p = cause.data ? cause.data : "";
    const char *hit;
    while (pw && *pw && (hit = strstr(p, pw)) != NULL) {
        cf_buf_append(&out, p, (size_t)(hit - p));
        cf_buf_puts(&out, "***");
        p = hit + strlen(pw);
    }
    cf_buf_puts(&out, p);
    cf_buf_free(&cause);
    free(x->error);
    x->error = cf_buf_steal(&out);
}

static void unlink_active(struct cf_httpc_xfer *x)
{
    struct cf_httpc *c = x->c;
    if (x->prev)
        x->prev->next = x->next;
    else
        c->active = x->next;
    if (x->next)
        x->next->prev = x->prev;
    x->prev = x->next = NULL;
}

static void enqueue(struct cf_httpc_xfer *x)
{
    struct cf_httpc *c = x->c;
    x->state = X_QUEUED;
    x->next = NULL;
    if (c->qtail)
        c->qtail->next = x;
    else
        c->qhead = x;
    c->qtail = x;
}

/* Takes an active transfer out of curl: removing the easy handle from the multi handle returns
 * a finished connection to the cache (a transfer cut short closes its connection), and only
 * then is the easy handle cleaned up. */
static void detach(struct cf_httpc_xfer *x)
{
    curl_multi_remove_handle(x->c->multi, x->easy);
    curl_easy_cleanup(x->easy);
    x->easy = NULL;
    curl_slist_free_all(x->req_headers);
    x->req_headers = NULL;
    unlink_active(x);
}

static void set_canceled(struct cf_httpc_xfer *x)
{
    x->fail = CF_HTTPC_CANCELED;
    x->status = 0;
    set_error(x, "canceled");
}

static void on_kick(uv_timer_t *t);

static void kick(struct cf_httpc *c)
{
    if (!c->torn_down)
        uv_timer_start(&c->kick, on_kick, 0, 0);
}

/* curl's result as a failure class. Under this file's options curl follows no redirects and
 * uses no proxy, so UNSUPPORTED_PROTOCOL can only come from the server's answer (an HTTP
 * version it does not speak): the URL's scheme is checked before curl sees it. */
static enum cf_httpc_fail classify(const struct cf_httpc_xfer *x, CURLcode code)
{
    if (x->too_large)
        return CF_HTTPC_TOO_LARGE;
    if (x->hdrs_too_large)
        return CF_HTTPC_PROTOCOL;
    switch (code) {
    case CURLE_OK:
        return CF_HTTPC_OK;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        return CF_HTTPC_RESOLVE;
    case CURLE_COULDNT_CONNECT:
        return CF_HTTPC_CONNECT;
    case CURLE_OPERATION_TIMEDOUT:
        return CF_HTTPC_TIMEOUT;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_SHUTDOWN_FAILED:
    case CURLE_USE_SSL_FAILED:
        return CF_HTTPC_TLS;
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
        /* In TLS 1.3 the client finishes its handshake before the server has checked the
         * client's certificate, so a server that refuses it ("tlsv13 alert certificate
         * required", "... alert unknown ca") is heard only at the first read. An alert
         * before any response byte is the handshake's failure, not a broken connection. */
        if (x->easy && strstr(x->errbuf, " alert ")) {
            long header_bytes = 0;
            curl_easy_getinfo(x->easy, CURLINFO_HEADER_SIZE, &header_bytes);
            if (header_bytes == 0)
                return CF_HTTPC_TLS;
        }
        return CF_HTTPC_SEND_RECV;
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        return CF_HTTPC_SEND_RECV;
    case CURLE_FILESIZE_EXCEEDED:
        return CF_HTTPC_TOO_LARGE;
    case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_BAD_CONTENT_ENCODING:
    case CURLE_TOO_MANY_REDIRECTS:
    case CURLE_RANGE_ERROR:
    case CURLE_HTTP_RETURNED_ERROR:
    case CURLE_HTTP3:
        return CF_HTTPC_PROTOCOL;
    case CURLE_URL_MALFORMAT:
    case CURLE_FILE_COULDNT_READ_FILE:
    case CURLE_READ_ERROR:
    case CURLE_WRITE_ERROR:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_OUT_OF_MEMORY:
    case CURLE_BAD_FUNCTION_ARGUMENT:
    case CURLE_NOT_BUILT_IN:
    case CURLE_FAILED_INIT:
    case CURLE_UNKNOWN_OPTION:
    case CURLE_ABORTED_BY_CALLBACK:
        return CF_HTTPC_LOCAL;
    default:
        /* Whatever else breaks an exchange under way is the connection's failure. */
        return CF_HTTPC_SEND_RECV;
    }
}

/* A transfer curl has finished: its result is taken while the easy handle still exists. */
static void complete(struct cf_httpc_xfer *x, CURLcode code)
{
    x->elapsed_ms = (uv_hrtime() - x->start_ns) / 1000000u;
    x->fail = classify(x, code);
    if (x->fail == CF_HTTPC_OK) {
        long status = 0;
        curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
        x->status = status;
    } else if (x->fail == CF_HTTPC_TOO_LARGE) {
        set_error(x, "the response body exceeds the limit of %zu bytes", x->max_response);
    } else if (x->hdrs_too_large) {
        set_error(x, "the response headers exceed %d bytes or %d lines", MAX_HEADER_BYTES,
                  MAX_HEADERS);
    } else {
        size_t n = strlen(x->errbuf);
        while (n > 0 && (x->errbuf[n - 1] == '\n' || x->errbuf[n - 1] == '\r'))
            x->errbuf[--n] = '\0';
        const char *cause = n ? x->errbuf : curl_easy_strerror(code);
        /* curl 7.88's "Failed to connect ... : Couldn't connect to server" hides why; the
         * system's error says it ("connection refused"). */
        long oserr = 0;
        curl_easy_getinfo(x->easy, CURLINFO_OS_ERRNO, &oserr);
        if (oserr > 0 && oserr < INT_MAX)
            set_error(x, "%s (%s)", cause, uv_strerror(uv_translate_sys_error((int)oserr)));
        else
            set_error(x, "%s", cause);
    }
    detach(x);
    enqueue(x);
}

static void deliver(struct cf_httpc_xfer *x)
{
    struct cf_httpc_resp r = {
        .fail = x->fail,
        .sent = x->sent,
        .error = x->fail == CF_HTTPC_OK ? NULL : x->error,
        .elapsed_ms = x->elapsed_ms,
        .body = (const uint8_t *)"",
    };
    struct cf_httpc_header *hs = NULL;
    if (x->fail == CF_HTTPC_OK) {
        r.status = x->status;
        if (x->n_rhdrs) {
            hs = cf_xcalloc(x->n_rhdrs, sizeof(*hs));
            const char *p = x->rhdrs.data;
            for (size_t i = 0; i < x->n_rhdrs; i++) {
                hs[i].name = p;
                p += strlen(p) + 1;
                hs[i].value = p;
                p += strlen(p) + 1;
            }
            r.headers = hs;
            r.n_headers = x->n_rhdrs;
        }
        r.content_type = cf_httpc_resp_header(&r, "Content-Type");
        if (x->rbody.data) {
            r.body = (const uint8_t *)x->rbody.data;
            r.body_len = x->rbody.len;
        }
    }
    x->state = X_DELIVERING;
    x->done(x->arg, &r);
    free(hs);
}

static void teardown(struct cf_httpc *c)
{
    c->torn_down = true;
    /* Closes the cached connections; curl may still call the socket and timer callbacks, which
     * only touch handles that are still open here. */
    curl_multi_cleanup(c->multi);
    c->multi = NULL;
    while (c->socks)
        sock_close(c, c->socks);
    uv_close((uv_handle_t *)&c->timer, on_timer_closed);
    uv_close((uv_handle_t *)&c->kick, on_timer_closed);
}

/* Runs `done` for every queued transfer. `done` may send, cancel or close: cancel and close only
 * queue more, which this loop delivers too. The client is never freed in here, since that
 * happens in close callbacks only. */
static void dispatch(struct cf_httpc *c)
{
    if (c->dispatching || c->torn_down)
        return;
    c->dispatching = true;
    struct cf_httpc_xfer *x;
    while ((x = c->qhead) != NULL) {
        c->qhead = x->next;
        if (!c->qhead)
            c->qtail = NULL;
        x->next = NULL;
        deliver(x);
        xfer_free(x);
    }
    c->dispatching = false;
    if (c->closing)
        teardown(c);
}

static void on_kick(uv_timer_t *t)
{
    dispatch(t->data);
}

/* ---- curl's callbacks ---- */

static void drain(struct cf_httpc *c)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(c->multi, &left)) != NULL) {
        if (m->msg != CURLMSG_DONE)
            continue;
        CURL *e = m->easy_handle;
        CURLcode code = m->data.result;
        char *priv = NULL;
        curl_easy_getinfo(e, CURLINFO_PRIVATE, &priv);
        complete((struct cf_httpc_xfer *)(void *)priv, code);
    }
}

static void on_timer(uv_timer_t *t)
{
    struct cf_httpc *c = t->data;
    int running;
    curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    drain(c);
    dispatch(c);
}

static void on_poll(uv_poll_t *p, int status, int events)
{
    struct sock *k = p->data;
    struct cf_httpc *c = k->c;
    int flags = 0;
    if (status < 0)
        flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    int running;
    /* `k` may be closed in here (CURL_POLL_REMOVE); it is freed only in its close callback. */
    curl_multi_socket_action(c->multi, k->fd, flags, &running);
    drain(c);
    dispatch(c);
}

static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    struct cf_httpc *c = userp;
    /* Even a timeout of 0 goes through the loop: curl must not be re-entered from here. */
    if (timeout_ms < 0)
        uv_timer_stop(&c->timer);
    else
        uv_timer_start(&c->timer, on_timer, (uint64_t)timeout_ms, 0);
    return 0;
}

static int on_curl_socket(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    (void)easy;
    struct cf_httpc *c = userp;
    struct sock *k = socketp;
    if (what == CURL_POLL_REMOVE) {
        /* curl calls this before it closes the socket, so the poll handle is stopped while its
         * descriptor still exists and cannot be mistaken for a new socket with the same number. */
        if (k)
            sock_close(c, k);
        return 0;
    }
    if (!k) {
        k = cf_xcalloc(1, sizeof(*k));
        int rc = uv_poll_init_socket(c->loop, &k->poll, s);
        if (rc != 0) {
            /* The transfer times out instead of hanging: curl's timer still runs. */
            cf_log(CF_LOG_WARN, "httpc: cannot watch socket fd=%d reason=%s", (int)s,
                   uv_strerror(rc));
            free(k);
            return -1;
        }
        k->poll.data = k;
        k->c = c;
        k->fd = s;
        k->next = c->socks;
        if (c->socks)
            c->socks->prev = k;
        c->socks = k;
        c->handles++;
        curl_multi_assign(c->multi, s, k);
    }
    int events = 0;
    if (what & CURL_POLL_IN)
        events |= UV_READABLE;
    if (what & CURL_POLL_OUT)
        events |= UV_WRITABLE;
    int rc = events ? uv_poll_start(&k->poll, events, on_poll) : uv_poll_stop(&k->poll);
    if (rc != 0)
        cf_log(CF_LOG_WARN, "httpc: cannot watch socket fd=%d reason=%s", (int)s, uv_strerror(rc));
    return 0;
}

/* `sent`: curl calls this when the connection (with its TLS handshake) is ready and before the
 * first byte of the request is written; nothing of the request can reach the server before it.
 * Once it ran, the request may have been sent, in part or whole, even if writing then failed
 * (a TLS record or a partial write is invisible to byte counters such as CURLINFO_REQUEST_SIZE),
 * so `sent` errs on the safe side: false only when no request byte was ever written. When curl
 * retries a request on a fresh connection after a reused one died, this runs again; the flag
 * stays set. */
static int on_prereq(void *userp, char *primary_ip, char *local_ip, int primary_port,
                     int local_port)
{
    (void)primary_ip;
    (void)local_ip;
    (void)primary_port;
    (void)local_port;
    struct cf_httpc_xfer *x = userp;
    x->sent = true;
    return CURL_PREREQFUNC_OK;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *userp)
{
    struct cf_httpc_xfer *x = userp;
    size_t n = size * nmemb;
    if (n > x->max_response - x->rbody.len) {
        /* Any count other than n makes curl abort the transfer with CURLE_WRITE_ERROR. */
        x->too_large = true;
        return 0;
    }
    cf_buf_append(&x->rbody, data, n);
    return n;
}

static bool is_ows(char ch)
{
    return ch == ' ' || ch == '\t';
}

/* Collects the response's header lines. A status line starts a new response (after a 1xx), so
 * only the final response's headers are kept; trailers of a chunked body are added to them. */
static size_t on_header(char *data, size_t size, size_t nmemb, void *userp)
{
    struct cf_httpc_xfer *x = userp;
    size_t n = size * nmemb;
    size_t len = n;
    while (len > 0 && (data[len - 1] == '\n' || data[len - 1] == '\r'))
        len--;
    if (len >= 5 && memcmp(data, "HTTP/", 5) == 0) {
        cf_buf_reset(&x->rhdrs);
        x->n_rhdrs = 0;
        return n;
    }
    if (len == 0)
        return n;
    if (x->rhdrs.len + len + 2 > MAX_HEADER_BYTES || x->n_rhdrs >= MAX_HEADERS) {
        x->hdrs_too_large = true;
        return 0;
    }
    if (is_ows(data[0])) {
        /* An obsolete folded line continues the previous header's value. */
        if (x->n_rhdrs == 0)
            return n;
        size_t i = 0;
        while (i < len && is_ows(data[i]))
            i++;
        x->rhdrs.len--; /* the previous value's NUL */
        cf_buf_putc(&x->rhdrs, ' ');
        cf_buf_append(&x->rhdrs, data + i, len - i);
        cf_buf_putc(&x->rhdrs, '\0');
        return n;
    }
    const char *colon = memchr(data, ':', len);
    if (!colon)
        return n;
    size_t name_len = (size_t)(colon - data);
    while (name_len > 0 && is_ows(data[name_len - 1]))
        name_len--;
    const char *v = colon + 1;
    const char *end = data + len;
    while (v < end && is_ows(*v))
        v++;
    while (end > v && is_ows(end[-1]))
        end--;
    if (name_len == 0 || memchr(data, '\0', len))
        return n;
    cf_buf_append(&x->rhdrs, data, name_len);
    cf_buf_putc(&x->rhdrs, '\0');
    cf_buf_append(&x->rhdrs, v, (size_t)(end - v));
    cf_buf_putc(&x->rhdrs, '\0');
    x->n_rhdrs++;
    return n;
}

/* ---- the API ---- */

int cf_httpc_new(uv_loop_t *loop, struct cf_httpc **out, char *err, size_t errlen)
{
    if (!loop || !out) {
        cf_errf(err, errlen, "http client: a loop and an out pointer are required");
        return CF_EINVAL;
    }
    *out = NULL;
    uv_once(&global_once, global_init);
    if (global_rc != CURLE_OK) {
        cf_errf(err, errlen, "http client: libcurl failed to initialise: %s",
                curl_easy_strerror(global_rc));
        return CF_EIO;
    }
    const curl_version_info_data *vi = curl_version_info(CURLVERSION_NOW);
    if (vi->version_num < 0x075000 || !(vi->features & CURL_VERSION_SSL)) {
        cf_errf(err, errlen, "http client: libcurl %s is older than 7.80.0 or lacks TLS",
                vi->version);
        return CF_EIO;
    }
    CURLM *multi = curl_multi_init();
    if (!multi) {
        cf_errf(err, errlen, "http client: curl_multi_init failed");
        return CF_ENOMEM;
    }
    struct cf_httpc *c = cf_xcalloc(1, sizeof(*c));
    c->loop = loop;
    c->multi = multi;
    curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
    curl_multi_setopt(multi, CURLMOPT_SOCKETDATA, c);
    curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
    curl_multi_setopt(multi, CURLMOPT_TIMERDATA, c);
    uv_timer_init(loop, &c->timer);
    c->timer.data = c;
    uv_timer_init(loop, &c->kick);
    c->kick.data = c;
    c->handles = 2;
    *out = c;
    return 0;
}

static bool is_tchar(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           (ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

static bool header_ok(const struct cf_httpc_header *h)
{
    if (!h->name || !h->value || !h->name[0])
        return false;
    for (const char *p = h->name; *p; p++) {
        if (!is_tchar((unsigned char)*p))
            return false;
    }
    return strpbrk(h->value, "\r\n") == NULL;
}

static bool has_header(const struct cf_httpc_req *req, const char *name)
{
    for (size_t i = 0; i < req->n_headers; i++) {
        if (strcasecmp(req->headers[i].name, name) == 0)
            return true;
    }
    return false;
}

/* Fails the transfer before curl runs it: `done` gets it with `fail` and sent == false. */
static void fail_early(struct cf_httpc_xfer *x, enum cf_httpc_fail fail)
{
    x->fail = fail;
    x->elapsed_ms = (uv_hrtime() - x->start_ns) / 1000000u;
}

/* Checks the URL as curl will read it, and keeps its host and port for messages. Returns false
 * with the transfer failed as LOCAL. The URL itself is never quoted: it may carry credentials. */
static bool parse_url(struct cf_httpc_xfer *x, const char *url)
{
    CURLU *u = curl_url();
    if (!u) {
        fail_early(x, CF_HTTPC_LOCAL);
        set_error(x, "bad URL: out of memory");
        return false;
    }
    char *scheme = NULL, *host = NULL, *port = NULL;
    CURLUcode uc = curl_url_set(u, CURLUPART_URL, url, 0);
    if (uc == CURLUE_OK)
        uc = curl_url_get(u, CURLUPART_SCHEME, &scheme, 0);
    if (uc == CURLUE_OK)
        uc = curl_url_get(u, CURLUPART_HOST, &host, 0);
    if (uc == CURLUE_OK)
        uc = curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT);
    bool ok = false;
    if (uc != CURLUE_OK) {
        fail_early(x, CF_HTTPC_LOCAL);
        set_error(x, "bad URL: %s", curl_url_strerror(uc));
    } else {
        x->hostport = cf_xasprintf("%s:%s", host, port);
        if (strcasecmp(scheme, "http") != 0 && strcasecmp(scheme, "https") != 0) {
            fail_early(x, CF_HTTPC_LOCAL);
            set_error(x, "the URL's scheme %s is not http or https", scheme);
        } else {
            ok = true;
        }
    }
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_url_cleanup(u);
    return ok;
}

static long clamp_ms(uint64_t ms)
{
    return ms > (uint64_t)LONG_MAX ? LONG_MAX : (long)ms;
}

/* Configures the easy handle. Returns false with the transfer failed as LOCAL when curl refuses
 * an option (a libcurl built without something certflow needs). */
static bool configure(struct cf_httpc_xfer *x, const struct cf_httpc_req *req)
{
    CURL *e = x->easy;
    const struct cf_httpc_tls *tls = req->tls;
    CURLcode bad = CURLE_OK;
    const char *bad_opt = NULL;
#define SET(opt, val)                                                                              \
    do {                                                                                           \
        CURLcode rc_ = curl_easy_setopt(e, opt, val);                                              \
        if (rc_ != CURLE_OK && bad == CURLE_OK) {                                                  \
            bad = rc_;                                                                             \
            bad_opt = #opt;                                                                        \
        }                                                                                          \
    } while (0)

    SET(CURLOPT_PRIVATE, (void *)x);
    SET(CURLOPT_ERRORBUFFER, x->errbuf);
    SET(CURLOPT_URL, req->url);
    SET(CURLOPT_NOSIGNAL, 1L);
#if LIBCURL_VERSION_NUM >= 0x075500
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#else
    SET(CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
    SET(CURLOPT_REDIR_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    SET(CURLOPT_FOLLOWLOCATION, 0L);
    /* No proxy from the environment: what the request reaches is what the URL names. */
    SET(CURLOPT_PROXY, "");
    /* HTTP/1.1 like certflow's own server; one request per connection at a time keeps `sent`
     * and failures per transfer. */
    SET(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    SET(CURLOPT_TCP_KEEPALIVE, 1L);

    SET(CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
    SET(CURLOPT_SSL_VERIFYPEER, 1L);
    SET(CURLOPT_SSL_VERIFYHOST, 2L);
    if (tls && tls->ca_file) {
        /* Only ca_file is trusted: the compiled-in CA folder must not add the system's. */
        SET(CURLOPT_CAINFO, tls->ca_file);
        SET(CURLOPT_CAPATH, (char *)NULL);
    }
    if (tls && tls->cert_file) {
        SET(CURLOPT_SSLCERT, tls->cert_file);
        SET(CURLOPT_SSLCERTTYPE, "PEM");
    }
    if (tls && tls->key_file) {
        SET(CURLOPT_SSLKEY, tls->key_file);
        SET(CURLOPT_SSLKEYTYPE, "PEM");
    }
    /* Without a password, OpenSSL's default would ask for one on the terminal; an empty one
     * makes an encrypted key fail at once instead (CF_HTTPC_LOCAL). */
    if (tls && (tls->cert_file || tls->key_file))
        SET(CURLOPT_KEYPASSWD, tls->key_password ? tls->key_password : "");

    uint64_t timeout = req->timeout_ms ? req->timeout_ms : CF_HTTPC_DEFAULT_TIMEOUT_MS;
    uint64_t connect_timeout = req->connect_timeout_ms ? req->connect_timeout_ms : timeout;
    SET(CURLOPT_TIMEOUT_MS, clamp_ms(timeout));
    SET(CURLOPT_CONNECTTIMEOUT_MS, clamp_ms(connect_timeout));
    /* A Content-Length over the limit fails at once; the write callback catches the rest. */
    SET(CURLOPT_MAXFILESIZE_LARGE,
        (curl_off_t)(x->max_response > (size_t)INT64_MAX ? INT64_MAX : (int64_t)x->max_response));

    SET(CURLOPT_WRITEFUNCTION, on_body);
    SET(CURLOPT_WRITEDATA, (void *)x);
    SET(CURLOPT_HEADERFUNCTION, on_header);
    SET(CURLOPT_HEADERDATA, (void *)x);
    SET(CURLOPT_PREREQFUNCTION, on_prereq);
    SET(CURLOPT_PREREQDATA, (void *)x);

    bool with_body = strcmp(req->method, "GET") != 0 &&
                     (strcmp(req->method, "DELETE") != 0 || req->body_len > 0);
    if (with_body) {
        /* POSTFIELDS with a size sends exactly these bytes with a Content-Length, for any
         * method named by CUSTOMREQUEST. */
        SET(CURLOPT_POST, 1L);
        SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)x->body_len);
        SET(CURLOPT_POSTFIELDS, x->body ? (void *)x->body : (void *)"");
        if (strcmp(req->method, "POST") != 0)
            SET(CURLOPT_CUSTOMREQUEST, req->method);
    } else {
        SET(CURLOPT_HTTPGET, 1L);
        if (strcmp(req->method, "GET") != 0)
            SET(CURLOPT_CUSTOMREQUEST, req->method);
    }

    struct curl_slist *list = NULL;
    for (size_t i = 0; i < req->n_headers; i++) {
        const struct cf_httpc_header *h = &req->headers[i];
        /* "Name:" would tell curl to remove a header; "Name;" sends it with an empty value. */
        char *line =
            h->value[0] ? cf_xasprintf("%s: %s", h->name, h->value) : cf_xasprintf("%s;", h->name);
        struct curl_slist *next = curl_slist_append(list, line);
        free(line);
        if (!next) {
            bad = CURLE_OUT_OF_MEMORY;
            bad_opt = "CURLOPT_HTTPHEADER";
            break;
        }
        list = next;
    }
    /* curl would wait for a 100 Continue before large bodies and would label a body without a
     * type as a form; neither is what the caller asked for. */
    const char *suppress[2] = {NULL, NULL};
    size_t n_suppress = 0;
    if (!has_header(req, "Expect"))
        suppress[n_suppress++] = "Expect:";
    if (with_body && !has_header(req, "Content-Type"))
        suppress[n_suppress++] = "Content-Type:";
    for (size_t i = 0; i < n_suppress && bad == CURLE_OK; i++) {
        struct curl_slist *next = curl_slist_append(list, suppress[i]);
        if (!next) {
            bad = CURLE_OUT_OF_MEMORY;
            bad_opt = "CURLOPT_HTTPHEADER";
            break;
        }
        list = next;
    }
    x->req_headers = list;
    SET(CURLOPT_HTTPHEADER, list);
#undef SET

    if (bad != CURLE_OK) {
        fail_early(x, CF_HTTPC_LOCAL);
        set_error(x, "libcurl refused %s: %s", bad_opt, curl_easy_strerror(bad));
        return false;
    }
    return true;
}

int cf_httpc_send(struct cf_httpc *c, const struct cf_httpc_req *req, cf_httpc_done_fn done,
                  void *arg, struct cf_httpc_xfer **xfer)
{
    if (xfer)
        *xfer = NULL;
    if (!c || !req || !done || !req->method || !req->url)
        return CF_EINVAL;
    if (c->closing)
        return CF_ESTATE;
    static const char *const methods[] = {"GET", "POST", "PUT", "DELETE"};
    bool known = false;
    for (size_t i = 0; i < CF_ARRAY_LEN(methods); i++)
        known = known || strcmp(req->method, methods[i]) == 0;
    if (!known)
        return CF_EINVAL;
    if (req->n_headers > 0 && !req->headers)
        return CF_EINVAL;
    for (size_t i = 0; i < req->n_headers; i++) {
        if (!header_ok(&req->headers[i]))
            return CF_EINVAL;
    }
    if (req->body_len > 0 && !req->body)
        return CF_EINVAL;
    if (req->body_len > 0 && strcmp(req->method, "GET") == 0)
        return CF_EINVAL;

    struct cf_httpc_xfer *x = cf_xcalloc(1, sizeof(*x));
    x->c = c;
    x->done = done;
    x->arg = arg;
    x->start_ns = uv_hrtime();
    x->max_response = req->max_response ? req->max_response : CF_HTTPC_DEFAULT_MAX_RESPONSE;
    cf_buf_init(&x->rbody);
    cf_buf_init(&x->rhdrs);
    if (req->tls && req->tls->key_password)
        x->key_password = cf_xstrdup(req->tls->key_password);
    if (req->body_len > 0) {
        x->body = cf_xmemdup(req->body, req->body_len);
        x->body_len = req->body_len;
    }

    bool ok = parse_url(x, req->url);
    if (ok) {
        x->easy = curl_easy_init();
        if (!x->easy) {
            fail_early(x, CF_HTTPC_LOCAL);
            set_error(x, "curl_easy_init failed");
            ok = false;
        }
    }
    if (ok)
        ok = configure(x, req);
    if (ok) {
        CURLMcode mc = curl_multi_add_handle(c->multi, x->easy);
        if (mc != CURLM_OK) {
            fail_early(x, CF_HTTPC_LOCAL);
            set_error(x, "curl_multi_add_handle: %s", curl_multi_strerror(mc));
            ok = false;
        }
    }
    if (ok) {
        x->state = X_ACTIVE;
        x->next = c->active;
        if (c->active)
            c->active->prev = x;
        c->active = x;
    } else {
        enqueue(x);
        kick(c);
    }
    if (xfer)
        *xfer = x;
    return 0;
}

const char *cf_httpc_resp_header(const struct cf_httpc_resp *resp, const char *name)
{
    if (!resp || !name)
        return NULL;
    for (size_t i = 0; i < resp->n_headers; i++) {
        if (strcasecmp(resp->headers[i].name, name) == 0)
            return resp->headers[i].value;
    }
    return NULL;
}

void cf_httpc_cancel(struct cf_httpc_xfer *x)
{
    if (!x || x->state == X_DELIVERING)
        return;
    if (x->state == X_ACTIVE) {
        x->elapsed_ms = (uv_hrtime() - x->start_ns) / 1000000u;
        detach(x);
        enqueue(x);
    }
    /* A transfer that finished but whose `done` has not run yet is canceled as well: the caller
     * asked for CANCELED and gets it. */
    set_canceled(x);
    kick(x->c);
}

void cf_httpc_close(struct cf_httpc *c, void (*closed)(void *arg), void *arg)
{
    if (!c || c->closing)
        return;
    c->closing = true;
    c->closed = closed;
    c->closed_arg = arg;
    while (c->active)
        cf_httpc_cancel(c->active);
    for (struct cf_httpc_xfer *x = c->qhead; x; x = x->next)
        set_canceled(x);
    kick(c);
}
