/*
 * libFuzzer target for the HTTP/1.1 request path (engine/net/http_conn.c): llhttp in strict
 * mode, the header, URL and body limits, chunked bodies, pipelining, Expect, keep-alive and the
 * answers, all through the connection core with a fake I/O layer and no sockets. Byte 0 picks
 * the start of a request put in front of the input (so that random inputs get past the request
 * line) and the chunk size the bytes arrive in; byte 1 picks how the handler answers: at once,
 * later (before the next chunk), twice (the second must be ignored) or as JSON. The rest is what
 * the peer sends. Every write must start an HTTP/1.1 status line, the core must finish at most
 * once, a handler's body never exceeds its limit, and no request reaches the handler while
 * another is unanswered. Limits are set low so that their paths
 * run. Every test run replays it with tools/fuzz/replay.c (tests/CMakeLists.txt); for a
 * libFuzzer run, from the repository root:
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_POSIX_C_SOURCE=200809L \
 *     -DLLHTTP_STRICT_MODE=1 -I engine/include -I engine -I /usr/share/include/llhttp \
 *     tools/fuzz/fuzz_http.c engine/net/http_conn.c engine/base/base.c engine/base/error.c \
 *     engine/base/log.c /usr/share/llhttp/api.c /usr/share/llhttp/http.c \
 *     /usr/share/llhttp/llhttp.c $(pkg-config --cflags --libs jansson libssl libcrypto) -lm \
 *     -o build/fuzz_http
 *   ./build/fuzz_http -max_len=16384
 */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "net/http_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { ANSWER_NOW, ANSWER_LATER, ANSWER_TWICE, ANSWER_JSON, N_MODES };

struct fz {
    struct cf__hconn c;
    struct cf__http_env env;
    int mode;
    bool finished;
    struct cf_http_request *held;
    struct cf__http_req *retired;
};

static struct fz *fz_of(struct cf__hconn *c)
{
    return cf_container_of(c, struct fz, c);
}

static void fz_send(struct cf__hconn *c, const void *p, size_t n)
{
    (void)c;
    /* Answers and 100 Continue alike begin with a status line, written whole. */
    if (n < 13 || memcmp(p, "HTTP/1.1 ", 9) != 0)
        abort();
}

static void fz_finish(struct cf__hconn *c)
{
    struct fz *f = fz_of(c);
    if (f->finished)
        abort();
    f->finished = true;
}

static void fz_set_timer(struct cf__hconn *c, uint64_t ms)
{
    (void)c;
    (void)ms;
}

static void fz_input_changed(struct cf__hconn *c)
{
    (void)c;
}

static const struct cf__hconn_io fz_io = {
    .send = fz_send,
    .finish = fz_finish,
    .set_timer = fz_set_timer,
    .input_changed = fz_input_changed,
};

/* Answered requests are kept until the input is done, so that a second answer is caught by the
 * core rather than landing on freed memory. */
static void fz_retire(struct cf__http_env *env, struct cf__http_req *r)
{
    struct fz *f = env->retire_arg;
    r->next = f->retired;
    f->retired = r;
}

static size_t fz_body_limit(void *arg, const char *method, const char *path)
{
    (void)arg;
    (void)method;
    return strcmp(path, "/big") == 0 ? 8192 : 0;
}

static void fz_handler(void *arg, struct cf_http_request *req)
{
    struct fz *f = arg;
    size_t limit = strcmp(req->path, "/big") == 0 ? 8192 : f->env.limits.max_body_bytes;
    if (!req->method || !req->target || !req->path || !req->query || req->body_len > limit)
        abort();
    size_t touched = strlen(req->method) + strlen(req->target) + strlen(req->path);
    for (size_t i = 0; i < req->n_headers; i++)
        touched += strlen(req->headers[i].name) + strlen(req->headers[i].value);
    for (size_t i = 0; i < req->body_len; i++)
        touched += req->body[i];
    char value[64];
    (void)cf_http_query_param(req, "a", value, sizeof(value));
    (void)cf_http_query_param(req, "tenantId", value, 4);
    const char *host = cf_http_header(req, "host");
    static const char *const extra[] = {"X-Fuzz", "1", NULL};
    switch (f->mode) {
    case ANSWER_LATER:
        /* A second request while one is unanswered would mean answers could be reordered. */
        if (f->held)
            abort();
        f->held = req;
        break;
    case ANSWER_TWICE:
        cf_http_respond(req, 204, NULL, NULL, NULL, 0);
        cf_http_respond(req, 500, NULL, NULL, NULL, 0);
        break;
    case ANSWER_JSON:
        cf_http_respond_json(
            req, 200, json_pack("{s:s,s:I}", "host", host ? host : "", "n", (json_int_t)touched));
        break;
    default:
        cf_http_respond(req, 200, "application/octet-stream", extra, req->body, req->body_len);
        break;
    }
}

static void drop_log(enum cf_log_level level, const char *line, void *arg)
{
    (void)level;
    (void)line;
    (void)arg;
}

static void answer_held(struct fz *f)
{
    struct cf_http_request *r = f->held;
    f->held = NULL;
    if (r)
        cf_http_respond(r, 202, "text/plain", NULL, "later", 5);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const prefixes[] = {
        "",
        "GET /a?a=1&tenantId=x%41+y HTTP/1.1\r\nHost: h\r\n",
        "POST /big HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
        "POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n",
        "GET / HTTP/1.1\r\nHost: h\r\n\r\nHEAD /",
        "PUT /p HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n",
        "GET / HTTP/1.0\r\n",
        "GET http://h/x?y HTTP/1.1\r\n",
    };
    cf_log_set_sink(drop_log, NULL);
    if (size < 2)
        return 0;
    const char *prefix = prefixes[data[0] % CF_ARRAY_LEN(prefixes)];
    size_t chunk = (size_t)(data[0] >> 3); /* 0: all at once */
    struct fz f;
    memset(&f, 0, sizeof(f));
    f.mode = data[1] % N_MODES;
    struct cf_http_limits lim = {
        .max_header_bytes = 1024, .max_headers = 12, .max_url_bytes = 128, .max_body_bytes = 512};
    cf__http_limits_fill(&f.env.limits, &lim);
    f.env.handler = fz_handler;
    f.env.body_limit = fz_body_limit;
    f.env.arg = &f;
    f.env.retire = fz_retire;
    f.env.retire_arg = &f;
    cf__hconn_init(&f.c, &fz_io, &f.env, CF_LISTEN_PLAIN, 0, "127.0.0.1:1");
    cf__hconn_start(&f.c);
    cf__hconn_feed(&f.c, (const uint8_t *)prefix, strlen(prefix));

    data += 2;
    size -= 2;
    while (size > 0 && !f.finished) {
        size_t n = chunk && chunk < size ? chunk : size;
        cf__hconn_feed(&f.c, data, n);
        data += n;
        size -= n;
        answer_held(&f);
    }
    /* The timer firing now, then the peer leaving, with perhaps an answer still pending. */
    cf__hconn_timeout(&f.c);
    cf__hconn_detach(&f.c);
    answer_held(&f);
    while (f.retired) {
        struct cf__http_req *r = f.retired;
        f.retired = r->next;
        cf__http_req_free(r);
    }
    if (f.env.orphans)
        abort();
    cf__hconn_free(&f.c);
    return 0;
}
