/*
 * The protocol core of one HTTP/1.1 connection, without sockets: plaintext bytes come in through
 * cf__hconn_feed(), llhttp (strict, never lenient) parses them, complete requests go to the
 * handler one at a time, and answers leave through io->send in request order. The limits of
 * http.h are enforced here while the bytes are parsed, so that an oversized header or body is
 * refused as soon as it crosses its limit and never buffered whole. Timeouts are phases: the core
 * tells the I/O layer which timer to arm when the phase changes, never per byte, so that a client
 * trickling one byte at a time still meets the header timeout.
 *
 * Pipelining: llhttp is paused when a request is complete; bytes after it stay in `in` until the
 * answer is queued, so answers can never overtake each other. Sockets, TLS, lingering close and
 * the server's bookkeeping are http.c's.
 */
#include "net/http_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <jansson.h>

/* Marks a live request, so that an answer to something else is caught in builds without ASan. */
#define REQ_MAGIC 0x68747071u
/* Unparsed input held back (pipelined requests) before the I/O layer stops reading. */
#define IN_CAP (64 * 1024)
/* Queued output above which no further pipelined request is parsed. */
#define OUT_CAP (1024 * 1024)

const double cf_http_latency_bounds[12] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                           0.1,   0.25,   0.5,   1,    2.5,   INFINITY};

void cf__http_limits_fill(struct cf_http_limits *out, const struct cf_http_limits *in)
{
    *out = *in;
    if (!out->max_header_bytes)
        out->max_header_bytes = 8192;
    if (!out->max_headers)
        out->max_headers = 64;
    if (!out->max_url_bytes)
        out->max_url_bytes = 2048;
    if (!out->max_body_bytes)
        out->max_body_bytes = 64 * 1024;
    if (!out->header_timeout_ms)
        out->header_timeout_ms = 10000;
    if (!out->body_timeout_ms)
        out->body_timeout_ms = 30000;
    if (!out->idle_timeout_ms)
        out->idle_timeout_ms = 60000;
    if (!out->handshake_timeout_ms)
        out->handshake_timeout_ms = 10000;
    if (out->max_connections <= 0)
        out->max_connections = 1024;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static struct cf__hconn *conn_of(llhttp_t *p)
{
    return cf_container_of(p, struct cf__hconn, parser);
}

/* ---- requests ---- */

void cf__http_req_free(struct cf__http_req *r)
{
    if (!r)
        return;
    cf_buf_free(&r->raw);
    cf_buf_free(&r->body);
    free(r->offs);
    free(r->headers);
    X509_free(r->pub.peer_cert);
    sk_X509_pop_free(r->pub.peer_chain, X509_free);
    r->magic = 0;
    free(r);
}

static void orphan_link(struct cf__http_env *env, struct cf__http_req *r)
{
    r->prev = NULL;
    r->next = env->orphans;
    if (env->orphans)
        env->orphans->prev = r;
    env->orphans = r;
}

static void orphan_unlink(struct cf__http_req *r)
{
    if (!r->env)
        return;
    if (r->prev)
        r->prev->next = r->next;
    else if (r->env->orphans == r)
        r->env->orphans = r->next;
    if (r->next)
        r->next->prev = r->prev;
    r->prev = r->next = NULL;
}

/* Hands an answered request to the server's retire list, or frees it. */
static void release(struct cf__http_req *r)
{
    if (r->env && r->env->retire)
        r->env->retire(r->env, r);
    else
        cf__http_req_free(r);
}

void cf__http_env_release(struct cf__http_env *env)
{
    for (struct cf__http_req *r = env->orphans; r; r = r->next)
        r->env = NULL;
    env->orphans = NULL;
}

/* Drops the connection's request: one the handler holds becomes gone, any other is freed. */
static void detach_req(struct cf__hconn *c)
{
    struct cf__http_req *r = c->req;
    c->req = NULL;
    c->ready = NULL;
    if (!r)
        return;
    if (r->dispatched && !r->responded) {
        r->pub.gone = true;
        r->conn = NULL;
        if (r->env)
            orphan_link(r->env, r);
    } else {
        cf__http_req_free(r);
    }
}

/* ---- phases and closing ---- */

static void set_phase(struct cf__hconn *c, enum cf__hconn_phase ph)
{
    if (c->phase == ph || c->phase == CF__PH_CLOSED)
        return;
    c->phase = ph;
    const struct cf_http_limits *l = &c->env->limits;
    uint64_t ms = 0;
    switch (ph) {
    case CF__PH_IDLE:
        ms = l->idle_timeout_ms;
        break;
    case CF__PH_HEADERS:
        ms = l->header_timeout_ms;
        break;
    case CF__PH_BODY:
        ms = l->body_timeout_ms;
        break;
    default:
        break;
    }
    c->io->set_timer(c, ms);
}

static void finish(struct cf__hconn *c)
{
    if (c->phase == CF__PH_CLOSED)
        return;
    detach_req(c);
    c->phase = CF__PH_CLOSED;
    c->io->finish(c);
}

void cf__hconn_detach(struct cf__hconn *c)
{
    detach_req(c);
    c->phase = CF__PH_CLOSED;
}

/* ---- responses ---- */

static const char *reason_phrase(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 303:
        return "See Other";
    case 304:
        return "Not Modified";
    case 307:
        return "Temporary Redirect";
    case 308:
        return "Permanent Redirect";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 406:
        return "Not Acceptable";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 410:
        return "Gone";
    case 411:
        return "Length Required";
    case 412:
        return "Precondition Failed";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 417:
        return "Expectation Failed";
    case 422:
        return "Unprocessable Content";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    default:
        break;
    }
    switch (status / 100) {
    case 2:
        return "Success";
    case 3:
        return "Redirection";
    case 4:
        return "Client Error";
    default:
        return "Server Error";
    }
}

/* IMF-fixdate (RFC 9110 section 5.6.7), with its own names so that no locale can change them. */
static void http_date(char *out, size_t outlen)
{
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    snprintf(out, outlen, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday % 7], tm.tm_mday,
             months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

static bool is_tchar(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

static bool valid_name(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++) {
        if (!is_tchar((unsigned char)*s))
            return false;
    }
    return true;
}

/* A header value must not carry CR or LF: they would let a value start a header of its own. */
static bool valid_value(const char *s)
{
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
            return false;
    }
    return true;
}

/* The server writes these itself; a handler's copy would contradict them. */
static bool reserved_name(const char *s)
{
    return strcasecmp(s, "Content-Length") == 0 || strcasecmp(s, "Transfer-Encoding") == 0 ||
           strcasecmp(s, "Connection") == 0 || strcasecmp(s, "Date") == 0;
}

static void write_response(struct cf__hconn *c, int status, const char *ctype,
                           const char *const *headers, const void *body, size_t len, bool head,
                           bool keep)
{
    struct cf_buf b;
    cf_buf_init(&b);
    char date[64];
    http_date(date, sizeof(date));
    cf_buf_printf(&b, "HTTP/1.1 %d %s\r\nDate: %s\r\n", status, reason_phrase(status), date);
    bool no_body = status == 204 || status == 304;
    if (ctype && !no_body) {
        if (valid_value(ctype))
            cf_buf_printf(&b, "Content-Type: %s\r\n", ctype);
        else
            cf_log(CF_LOG_ERROR, "http: Content-Type with control characters dropped status=%d",
                   status);
    }
    for (size_t i = 0; headers && headers[i]; i += 2) {
        const char *name = headers[i], *value = headers[i + 1];
        if (!value) {
            cf_log(CF_LOG_ERROR, "http: response header without a value dropped status=%d", status);
            break;
        }
        if (!valid_name(name) || !valid_value(value) || reserved_name(name)) {
            cf_log(CF_LOG_ERROR, "http: response header not allowed, dropped status=%d", status);
            continue;
        }
        cf_buf_printf(&b, "%s: %s\r\n", name, value);
    }
    if (!no_body)
        cf_buf_printf(&b, "Content-Length: %zu\r\n", len);
    cf_buf_printf(&b, "Connection: %s\r\n\r\n", keep ? "keep-alive" : "close");
    if (!head && !no_body && len)
        cf_buf_append(&b, body, len);
    c->io->send(c, b.data, b.len);
    cf_buf_free(&b);
    c->env->counters.responses_by_class[status / 100]++;
}

/* Refuses the request under way with `status` and a one-line text, then closes. */
static void reject(struct cf__hconn *c, int status, const char *text)
{
    if (c->phase == CF__PH_CLOSED)
        return;
    bool head = c->req && c->req->head && !c->in_headers;
    detach_req(c);
    char body[256];
    int n = snprintf(body, sizeof(body), "%s\n", text);
    size_t len = n < 0 ? 0 : (size_t)n >= sizeof(body) ? sizeof(body) - 1 : (size_t)n;
    write_response(c, status, "text/plain; charset=utf-8", NULL, body, len, head, false);
    finish(c);
}

void cf__hconn_reject(struct cf__hconn *c, int status, const char *text)
{
    reject(c, status, text);
}

/* A short, printable copy of the path for log lines about handler bugs. */
static void log_path(const struct cf__http_req *r, char *out, size_t outlen)
{
    const char *p = r->pub.path ? r->pub.path : "";
    size_t i = 0;
    for (; p[i] && i + 1 < outlen; i++)
        out[i] = (p[i] > 0x20 && p[i] < 0x7f) ? p[i] : '?';
    out[i] = '\0';
}

static void process(struct cf__hconn *c);

void cf_http_respond(struct cf_http_request *req, int status, const char *content_type,
                     const char *const *headers, const void *body, size_t body_len)
{
    struct cf__http_req *r = (struct cf__http_req *)req;
    if (!r || r->magic != REQ_MAGIC) {
        cf_log(CF_LOG_ERROR, "http: answer to something that is not a live request ignored");
        return;
    }
    char path[96];
    log_path(r, path, sizeof(path));
    if (r->responded) {
        cf_log(CF_LOG_ERROR,
               "http: second answer to one request ignored (a handler bug) method=%s path=%s "
               "status=%d",
               r->pub.method, path, status);
        return;
    }
    r->responded = true;
    if (status < 200 || status > 599) {
        cf_log(CF_LOG_ERROR, "http: invalid status %d answered as 500 method=%s path=%s", status,
               r->pub.method, path);
        status = 500;
    }
    struct cf__hconn *c = r->conn;
    if (!c) {
        cf_log(CF_LOG_DEBUG, "http: answer dropped, connection gone method=%s path=%s status=%d",
               r->pub.method, path, status);
        orphan_unlink(r);
        release(r);
        return;
    }
    struct cf__http_counters *k = &c->env->counters;
    double s = (double)(now_ns() - r->done_ns) / 1e9;
    size_t bucket = 0;
    while (bucket + 1 < CF_ARRAY_LEN(cf_http_latency_bounds) && s > cf_http_latency_bounds[bucket])
        bucket++;
    k->latency_buckets[bucket]++;
    k->latency_sum_s += s;

    bool keep = r->keep_alive && !c->draining;
    write_response(c, status, content_type, headers, body, body_len, r->head, keep);
    c->req = NULL;
    release(r);
    if (!keep) {
        finish(c);
        return;
    }
    set_phase(c, CF__PH_IDLE);
    process(c);
}

static int dump_cb(const char *buffer, size_t size, void *data)
{
    cf_buf_append(data, buffer, size);
    return 0;
}

void cf_http_respond_json(struct cf_http_request *req, int status, void *json)
{
    json_t *j = json;
    struct cf_buf b;
    cf_buf_init(&b);
    /* Dumped through a callback so that the text comes from our allocator, whatever allocator
     * jansson was given. */
    if (!j || json_dump_callback(j, dump_cb, &b, JSON_COMPACT | JSON_ENCODE_ANY) != 0) {
        cf_log(CF_LOG_ERROR, "http: JSON answer could not be encoded, answered 500");
        cf_buf_reset(&b);
        cf_buf_puts(&b, "{\"type\":\"InternalError\",\"message\":\"response encoding failed\"}");
        status = 500;
    }
    cf_http_respond(req, status, "application/json", NULL, b.data, b.len);
    cf_buf_free(&b);
    json_decref(j);
}

/* ---- parsing ---- */

/* Records why a callback refuses the request; the parse loop answers with it. */
static int refuse(struct cf__hconn *c, int status, const char *text)
{
    c->err_status = status;
    c->err_text = text;
    return HPE_USER;
}

static int on_message_begin(llhttp_t *p)
{
    struct cf__hconn *c = conn_of(p);
    struct cf__http_req *r = cf_xcalloc(1, sizeof(*r));
    r->magic = REQ_MAGIC;
    r->conn = c;
    r->env = c->env;
    c->req = r;
    c->header_bytes = 0;
    c->url_bytes = 0;
    c->ext_bytes = 0;
    c->in_headers = true;
    set_phase(c, CF__PH_HEADERS);
    return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t n)
{
    struct cf__hconn *c = conn_of(p);
    c->url_bytes += n;
    if (c->url_bytes > c->env->limits.max_url_bytes)
        return refuse(c, 414, "request target too long");
    cf_buf_append(&c->req->raw, at, n);
    return 0;
}

static int on_url_complete(llhttp_t *p)
{
    struct cf__hconn *c = conn_of(p);
    cf_buf_putc(&c->req->raw, '\0');
    c->req->target_off = 0;
    return 0;
}

/* Counts header (and trailer) bytes; each field also costs its ": " and CRLF. */
static bool header_budget(struct cf__hconn *c, size_t n)
{
    c->header_bytes += n;
    return c->header_bytes <= c->env->limits.max_header_bytes;
}

static int on_header_field(llhttp_t *p, const char *at, size_t n)
{
    struct cf__hconn *c = conn_of(p);
    if (!header_budget(c, n))
        return refuse(c, 431, "request header fields too large");
    if (c->in_headers)
        cf_buf_append(&c->req->raw, at, n);
    return 0;
}

static int on_header_field_complete(llhttp_t *p)
{
    struct cf__hconn *c = conn_of(p);
    if (!header_budget(c, 4))
        return refuse(c, 431, "request header fields too large");
    if (!c->in_headers)
        return 0;
    struct cf__http_req *r = c->req;
    if (r->n_offs / 2 >= c->env->limits.max_headers)
        return refuse(c, 431, "too many request header fields");
    if (r->n_offs + 2 > r->cap_offs) {
        r->cap_offs = r->cap_offs ? r->cap_offs * 2 : 32;
        r->offs = cf_xrealloc(r->offs, r->cap_offs * sizeof(*r->offs));
    }
    /* The name began right after the previous NUL: the target's or the last value's. */
    size_t start = r->n_offs ? r->offs[r->n_offs - 1] : r->target_off;
    start += strlen(r->raw.data + start) + 1;
    r->offs[r->n_offs++] = start;
    cf_buf_putc(&r->raw, '\0');
    r->offs[r->n_offs++] = r->raw.len;
    return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t n)
{
    struct cf__hconn *c = conn_of(p);
    if (!header_budget(c, n))
        return refuse(c, 431, "request header fields too large");
    if (c->in_headers)
        cf_buf_append(&c->req->raw, at, n);
    return 0;
}

static int on_header_value_complete(llhttp_t *p)
{
    struct cf__hconn *c = conn_of(p);
    if (!c->in_headers)
        return 0;
    struct cf__http_req *r = c->req;
    /* llhttp skips leading whitespace of a value; the trailing kind is ours to drop. */
    size_t start = r->offs[r->n_offs - 1];
    while (r->raw.len > start &&
           (r->raw.data[r->raw.len - 1] == ' ' || r->raw.data[r->raw.len - 1] == '\t'))
        r->raw.len--;
    cf_buf_putc(&r->raw, '\0');
    return 0;
}

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* Percent-decodes a path; a bad escape or an encoded NUL is refused rather than guessed at. */
static char *decode_path(const char *s, size_t n)
{
    char *out = cf_xmalloc(n + 1);
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '%') {
            out[o++] = s[i];
            continue;
        }
        if (i + 2 >= n) {
            free(out);
            return NULL;
        }
        int a = hexval(s[i + 1]), b = hexval(s[i + 2]);
        if (a < 0 || b < 0 || (a == 0 && b == 0)) {
            free(out);
            return NULL;
        }
        out[o++] = (char)(a * 16 + b);
        i += 2;
    }
    out[o] = '\0';
    return out;
}

/* Splits the target into the decoded path and the raw query, appended to raw. Forms: origin
 * ("/a?b"), absolute ("http://h/a?b"), asterisk ("*") and authority ("h:443", CONNECT). */
static int split_target(struct cf__http_req *r)
{
    const char *t = r->raw.data + r->target_off;
    size_t ps = 0, pe, qs = 0, qe = 0;
    const char *scheme_end = strstr(t, "://");
    if (t[0] != '/' && t[0] != '*' && scheme_end) {
        const char *authority = scheme_end + 3;
        ps = (size_t)(authority - t) + strcspn(authority, "/?#");
    }
    pe = ps + strcspn(t + ps, "?#");
    if (t[pe] == '?') {
        qs = pe + 1;
        qe = qs + strcspn(t + qs, "#");
    }
    char *path;
    if (ps == pe && scheme_end && t[0] != '/')
        path = cf_xstrdup("/");
    else
        path = decode_path(t + ps, pe - ps);
    if (!path)
        return -1;
    char *query = cf_xstrndup(t + qs, qe - qs);
    r->path_off = r->raw.len;
    cf_buf_puts(&r->raw, path);
    cf_buf_putc(&r->raw, '\0');
    r->query_off = r->raw.len;
    cf_buf_puts(&r->raw, query);
    cf_buf_putc(&r->raw, '\0');
    free(path);
    free(query);
    return 0;
}

static int on_headers_complete(llhttp_t *p)
{
    struct cf__hconn *c = conn_of(p);
    struct cf__http_req *r = c->req;
    c->in_headers = false;
    if (llhttp_get_http_major(p) != 1) {
        refuse(c, 505, "HTTP version not supported");
        return -1;
    }
    if (split_target(r) != 0) {
        refuse(c, 400, "invalid percent-encoding in the request target");
        return -1;
    }
    r->method_off = r->raw.len;
    cf_buf_puts(&r->raw, llhttp_method_name((llhttp_method_t)llhttp_get_method(p)));
    cf_buf_putc(&r->raw, '\0');

    /* Every string is in raw now, so its pointers stay put. */
    size_t nh = r->n_offs / 2;
    r->headers = cf_xcalloc(nh ? nh : 1, sizeof(*r->headers));
    for (size_t i = 0; i < nh; i++) {
        r->headers[i].name = r->raw.data + r->offs[2 * i];
        r->headers[i].value = r->raw.data + r->offs[2 * i + 1];
    }
    struct cf_http_request *q = &r->pub;
    q->headers = r->headers;
    q->n_headers = nh;
    q->method = r->raw.data + r->method_off;
    q->target = r->raw.data + r->target_off;
    q->path = r->raw.data + r->path_off;
    q->query = r->raw.data + r->query_off;
    q->body = (const uint8_t *)"";
    q->listener = c->kind;
    q->listener_index = c->listener_index;
    cf_strlcpy(q->peer_addr, c->peer_addr, sizeof(q->peer_addr));
    r->head = llhttp_get_method(p) == HTTP_HEAD;
    r->keep_alive = llhttp_should_keep_alive(p) && !llhttp_get_upgrade(p);

    /* RFC 9112 section 3.2: a server answers 400 to an HTTP/1.1 request without exactly one Host.
     */
    size_t hosts = 0;
    for (size_t i = 0; i < nh; i++)
        hosts += strcasecmp(r->headers[i].name, "Host") == 0;
    if (llhttp_get_http_minor(p) >= 1 && hosts != 1) {
        refuse(c, 400, "an HTTP/1.1 request needs exactly one Host header");
        return -1;
    }

    size_t limit = c->env->body_limit ? c->env->body_limit(c->env->arg, q->method, q->path) : 0;
    r->body_limit = limit ? limit : c->env->limits.max_body_bytes;
    bool chunked = p->flags & F_CHUNKED;
    bool has_length = p->flags & F_CONTENT_LENGTH;
    if (has_length && p->content_length > r->body_limit) {
        refuse(c, 413, "request body too large");
        return -1;
    }
    bool has_body = chunked || (has_length && p->content_length > 0);
    const char *expect = cf_http_header(q, "Expect");
    if (expect) {
        if (strcasecmp(expect, "100-continue") != 0) {
            refuse(c, 417, "unsupported expectation");
            return -1;
        }
        /* The client waits for this before it sends the body; the limit was checked above. */
        if (has_body && llhttp_get_http_minor(p) >= 1) {
            static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
            c->io->send(c, cont, sizeof(cont) - 1);
        }
    }
    if (has_length && p->content_length > 0)
        cf_buf_reserve(&r->body, (size_t)p->content_length);
    if (has_body)
        set_phase(c, CF__PH_BODY);
    return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t n)
{
    struct cf__hconn *c = conn_of(p);
    struct cf__http_req *r = c->req;
    /* Reached by chunked bodies only: a Content-Length over the limit was refused already. */
    if (n > r->body_limit - r->body.len)
        return refuse(c, 413, "request body too large");
    cf_buf_append(&r->body, at, n);
    return 0;
}

static int on_chunk_extension(llhttp_t *p, const char *at, size_t n)
{
    (void)at;
    struct cf__hconn *c = conn_of(p);
    c->ext_bytes += n;
    if (c->ext_bytes > c->env->limits.max_header_bytes)
        return refuse(c, 400, "chunk extensions too long");
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    struct cf__hconn *c = conn_of(p);
    struct cf__http_req *r = c->req;
    r->pub.body = r->body.data ? (const uint8_t *)r->body.data : (const uint8_t *)"";
    r->pub.body_len = r->body.len;
    r->pub.received_ms = cf_mono_ms();
    r->done_ns = now_ns();
    c->ready = r;
    set_phase(c, CF__PH_HANDLER);
    /* Nothing after this request is parsed until it is answered. */
    return HPE_PAUSED;
}

static const llhttp_settings_t settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_chunk_extension_name = on_chunk_extension,
    .on_chunk_extension_value = on_chunk_extension,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
    .on_url_complete = on_url_complete,
    .on_header_field_complete = on_header_field_complete,
    .on_header_value_complete = on_header_value_complete,
};

void cf__hconn_init(struct cf__hconn *c, const struct cf__hconn_io *io, struct cf__http_env *env,
                    enum cf_listener_kind kind, int listener_index, const char *peer_addr)
{
    memset(c, 0, sizeof(*c));
    /* Strict mode and no llhttp_set_lenient_*() anywhere: smuggling tricks are parse errors. */
    llhttp_init(&c->parser, HTTP_REQUEST, &settings);
    c->io = io;
    c->env = env;
    c->kind = kind;
    c->listener_index = listener_index;
    cf_strlcpy(c->peer_addr, peer_addr ? peer_addr : "", sizeof(c->peer_addr));
    cf_buf_init(&c->in);
    c->phase = CF__PH_NEW;
}

void cf__hconn_free(struct cf__hconn *c)
{
    cf_buf_free(&c->in);
    X509_free(c->peer_cert);
    sk_X509_pop_free(c->peer_chain, X509_free);
    c->peer_cert = NULL;
    c->peer_chain = NULL;
}

static void parse_failed(struct cf__hconn *c, llhttp_errno_t e)
{
    if (c->err_status) {
        cf_log(CF_LOG_DEBUG, "http: request refused peer=%s status=%d reason=%s", c->peer_addr,
               c->err_status, c->err_text);
        reject(c, c->err_status, c->err_text);
        return;
    }
    const char *why = llhttp_get_error_reason(&c->parser);
    if (!why || !*why)
        why = llhttp_errno_name(e);
    cf_log(CF_LOG_DEBUG, "http: bad request peer=%s error=%s reason=%s", c->peer_addr,
           llhttp_errno_name(e), why);
    reject(c, 400, why);
}

/* Runs llhttp over buffered input until it is used up, a request is complete, or an error. */
static void parse(struct cf__hconn *c)
{
    while ((c->phase == CF__PH_IDLE || c->phase == CF__PH_HEADERS || c->phase == CF__PH_BODY) &&
           c->in.len > c->in_off) {
        if (c->phase == CF__PH_IDLE && c->io->backlog && c->io->backlog(c) > OUT_CAP)
            break;
        const char *data = c->in.data + c->in_off;
        size_t len = c->in.len - c->in_off;
        llhttp_errno_t e = llhttp_execute(&c->parser, data, len);
        if (e == HPE_OK) {
            c->in_off += len;
        } else if (e == HPE_PAUSED) {
            c->in_off += (size_t)(llhttp_get_error_pos(&c->parser) - data);
            llhttp_resume(&c->parser);
        } else if (e == HPE_PAUSED_UPGRADE) {
            /* Only after a request that asked for an upgrade, which is answered and closed:
             * what follows is not HTTP. */
            c->in_off = c->in.len;
        } else {
            parse_failed(c, e);
            return;
        }
    }
    if (c->in_off == c->in.len) {
        c->in_off = 0;
        cf_buf_reset(&c->in);
    } else if (c->in_off > c->in.len / 2) {
        memmove(c->in.data, c->in.data + c->in_off, c->in.len - c->in_off);
        c->in.len -= c->in_off;
        c->in.data[c->in.len] = '\0';
        c->in_off = 0;
    }
}

static void dispatch(struct cf__hconn *c, struct cf__http_req *r)
{
    r->dispatched = true;
    if (c->peer_cert) {
        X509_up_ref(c->peer_cert);
        r->pub.peer_cert = c->peer_cert;
    }
    if (c->peer_chain)
        r->pub.peer_chain = X509_chain_up_ref(c->peer_chain);
    c->env->counters.requests++;
    c->env->handler(c->env->arg, &r->pub);
}

/* Parses and dispatches until the connection waits for something. A handler that answers at once
 * re-enters through cf_http_respond(); the `again` flag turns that into another turn of this loop
 * rather than recursion, so a burst of pipelined requests cannot grow the stack. */
static void process(struct cf__hconn *c)
{
    if (c->in_process) {
        c->again = true;
        return;
    }
    c->in_process = true;
    do {
        c->again = false;
        parse(c);
        if (c->ready && c->phase == CF__PH_HANDLER) {
            struct cf__http_req *r = c->ready;
            c->ready = NULL;
            dispatch(c, r);
        }
    } while (c->again && c->phase != CF__PH_CLOSED);
    c->in_process = false;
    if (c->phase != CF__PH_CLOSED)
        c->io->input_changed(c);
}

void cf__hconn_start(struct cf__hconn *c)
{
    if (c->phase != CF__PH_NEW)
        return;
    if (c->draining) {
        finish(c);
        return;
    }
    /* The header timer runs from here, so a connection that never sends a byte is dropped
     * after the header timeout, not the (longer) idle one. */
    set_phase(c, CF__PH_HEADERS);
    process(c);
}

void cf__hconn_feed(struct cf__hconn *c, const uint8_t *p, size_t n)
{
    if (c->phase == CF__PH_CLOSED || n == 0)
        return;
    cf_buf_append(&c->in, p, n);
    if (c->phase != CF__PH_NEW)
        process(c);
}

bool cf__hconn_wants_input(const struct cf__hconn *c)
{
    return c->phase != CF__PH_CLOSED && c->in.len - c->in_off < IN_CAP;
}

void cf__hconn_resume(struct cf__hconn *c)
{
    if (c->phase == CF__PH_IDLE && c->in.len > c->in_off)
        process(c);
}

void cf__hconn_timeout(struct cf__hconn *c)
{
    switch (c->phase) {
    case CF__PH_IDLE:
        finish(c);
        break;
    case CF__PH_HEADERS:
        /* A connection that sent nothing gets no answer, just the close. */
        if (c->req)
            reject(c, 408, "request header timeout");
        else
            finish(c);
        break;
    case CF__PH_BODY:
        reject(c, 408, "request body timeout");
        break;
    default:
        break;
    }
}

void cf__hconn_drain(struct cf__hconn *c)
{
    c->draining = true;
    if (c->phase == CF__PH_NEW || c->phase == CF__PH_IDLE ||
        (c->phase == CF__PH_HEADERS && !c->req))
        finish(c);
}

/* ---- lookups ---- */

const char *cf_http_header(const struct cf_http_request *req, const char *name)
{
    for (size_t i = 0; i < req->n_headers; i++) {
        if (strcasecmp(req->headers[i].name, name) == 0)
            return req->headers[i].value;
    }
    return NULL;
}

/* Decodes one form-urlencoded component; "%00" and broken escapes stay as they are, so that a
 * NUL can never cut a value short. Returns the decoded length, or (size_t)-1 if out overflows. */
static size_t form_decode(const char *s, size_t n, char *out, size_t outlen)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (ch == '+') {
            ch = ' ';
        } else if (ch == '%' && i + 2 < n) {
            int a = hexval(s[i + 1]), b = hexval(s[i + 2]);
            if (a >= 0 && b >= 0 && (a | b)) {
                ch = (char)(a * 16 + b);
                i += 2;
            }
        }
        if (out) {
            if (o + 1 >= outlen)
                return (size_t)-1;
            out[o] = ch;
        }
        o++;
    }
    if (out)
        out[o] = '\0';
    return o;
}

int cf_http_query_param(const struct cf_http_request *req, const char *name, char *out,
                        size_t outlen)
{
    const char *q = req->query ? req->query : "";
    size_t want = strlen(name);
    while (*q) {
        size_t plen = strcspn(q, "&");
        size_t nlen = strcspn(q, "=&");
        char key[256];
        size_t klen = form_decode(q, nlen, key, sizeof(key));
        if (klen == want && memcmp(key, name, want) == 0) {
            const char *v = q + nlen;
            size_t vlen = 0;
            if (nlen < plen) {
                v++;
                vlen = plen - nlen - 1;
            }
            if (!out || outlen == 0)
                return CF_ELIMIT;
            if (form_decode(v, vlen, out, outlen) == (size_t)-1) {
                out[0] = '\0';
                return CF_ELIMIT;
            }
            return 0;
        }
        q += plen;
        if (*q == '&')
            q++;
    }
    if (out && outlen)
        out[0] = '\0';
    return CF_ENOENT;
}
