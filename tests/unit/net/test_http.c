/*
 * Tests of the HTTP server (engine/net). Two levels:
 *
 * - The protocol core (http_conn.c) driven directly with bytes and a fake I/O layer: framing,
 *   smuggling refusals, limits, pipelining order, HEAD, keep-alive rules, timeouts as phases,
 *   answers to gone requests, query parameters. Deterministic and fast.
 * - The real server on 127.0.0.1 with its loop in a second thread, driven from the test thread
 *   by raw sockets, by `curl` and by `openssl s_client` as child processes, with a throwaway PKI
 *   made by the openssl command line in a temporary folder: plain and TLS requests, keep-alive,
 *   client certificates (missing, untrusted, revoked, wrong purpose, trusted), protocol versions
 *   and ciphers, limits with their statuses, timeouts, the connection cap, async answers and
 *   clients that leave before them, graceful stop, and reloading the TLS files (a CRL that
 *   revokes a client from then on, broken files that change nothing, open connections kept).
 *
 * Every client has a deadline (poll on raw sockets, --max-time for curl, `timeout` for
 * s_client), so a broken server fails a test instead of hanging it.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <math.h>

#include <jansson.h>
#include <openssl/x509.h>

#include "net/http.h"
#include "net/http_internal.h"

/* ---- small helpers ---- */

static const char *find(const char *hay, size_t n, const char *needle)
{
    size_t m = strlen(needle);
    for (size_t i = 0; m <= n && i <= n - m; i++) {
        if (memcmp(hay + i, needle, m) == 0)
            return hay + i;
    }
    return NULL;
}

static int count(const char *hay, size_t n, const char *needle)
{
    int k = 0;
    const char *p = hay;
    while ((p = find(p, n - (size_t)(p - hay), needle)) != NULL) {
        k++;
        p++;
    }
    return k;
}

static uint64_t mono_ms(void)
{
    return cf_mono_ms();
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* Log lines, collected from whichever thread logs. */
static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static struct cf_buf log_text;

static void log_sink(enum cf_log_level level, const char *line, void *arg)
{
    (void)level;
    (void)arg;
    pthread_mutex_lock(&log_mu);
    cf_buf_puts(&log_text, line);
    cf_buf_putc(&log_text, '\n');
    pthread_mutex_unlock(&log_mu);
}

static void capture_logs(enum cf_log_level level)
{
    pthread_mutex_lock(&log_mu);
    cf_buf_reset(&log_text);
    pthread_mutex_unlock(&log_mu);
    cf_log_set_level(level);
    cf_log_set_sink(log_sink, NULL);
}

static char *logs_taken(void)
{
    cf_log_set_sink(NULL, NULL);
    cf_log_set_level(CF_LOG_INFO);
    pthread_mutex_lock(&log_mu);
    char *s = cf_xstrdup(log_text.data ? log_text.data : "");
    cf_buf_free(&log_text);
    pthread_mutex_unlock(&log_mu);
    return s;
}

/* ====================================================================================== */
/* The protocol core with a fake I/O layer                                                 */
/* ====================================================================================== */

struct fake {
    struct cf__hconn c;
    struct cf__http_env env;
    struct cf_buf out;
    bool finished;
    uint64_t timer;
    bool hold;  /* the handler keeps requests instead of answering */
    bool twice; /* the handler answers twice */
    struct cf_http_request *held[8];
    int n_held;
    int dispatched;
    size_t backlog;
    struct cf__http_req *retired;
};

static struct fake *fake_of(struct cf__hconn *c)
{
    return cf_container_of(c, struct fake, c);
}

static void fake_send(struct cf__hconn *c, const void *p, size_t n)
{
    cf_buf_append(&fake_of(c)->out, p, n);
}

static void fake_finish(struct cf__hconn *c)
{
    struct fake *f = fake_of(c);
    assert_false(f->finished);
    f->finished = true;
}

static void fake_set_timer(struct cf__hconn *c, uint64_t ms)
{
    fake_of(c)->timer = ms;
}

static void fake_input_changed(struct cf__hconn *c)
{
    (void)c;
}

static size_t fake_backlog(struct cf__hconn *c)
{
    return fake_of(c)->backlog;
}

static const struct cf__hconn_io fake_io = {
    .send = fake_send,
    .finish = fake_finish,
    .set_timer = fake_set_timer,
    .input_changed = fake_input_changed,
    .backlog = fake_backlog,
};

static void fake_retire(struct cf__http_env *env, struct cf__http_req *r)
{
    struct fake *f = env->retire_arg;
    r->next = f->retired;
    f->retired = r;
}

static void fake_handler(void *arg, struct cf_http_request *req)
{
    struct fake *f = arg;
    f->dispatched++;
    if (f->hold) {
        assert_true(f->n_held < 8);
        f->held[f->n_held++] = req;
        return;
    }
    char body[256];
    int n = snprintf(body, sizeof(body), "%s %s body=%zu", req->method, req->path, req->body_len);
    static const char *const extra[] = {"X-Test", "yes", NULL};
    cf_http_respond(req, 200, "text/plain", extra, body, (size_t)n);
    if (f->twice)
        cf_http_respond(req, 500, "text/plain", NULL, "again", 5);
}

static size_t fake_body_limit(void *arg, const char *method, const char *path)
{
    (void)arg;
    (void)method;
    return strcmp(path, "/big") == 0 ? 1024 * 1024 : 0;
}

static void fake_init(struct fake *f, const struct cf_http_limits *lim)
{
    memset(f, 0, sizeof(*f));
    struct cf_http_limits zero = {0};
    cf__http_limits_fill(&f->env.limits, lim ? lim : &zero);
    f->env.handler = fake_handler;
    f->env.body_limit = fake_body_limit;
    f->env.arg = f;
    f->env.retire = fake_retire;
    f->env.retire_arg = f;
    cf_buf_init(&f->out);
    cf__hconn_init(&f->c, &fake_io, &f->env, CF_LISTEN_PLAIN, 0, "127.0.0.1:40000");
    cf__hconn_start(&f->c);
}

static void fake_feed(struct fake *f, const char *s)
{
    cf__hconn_feed(&f->c, (const uint8_t *)s, strlen(s));
}

static void fake_feed_bytewise(struct fake *f, const char *s)
{
    for (; *s; s++)
        cf__hconn_feed(&f->c, (const uint8_t *)s, 1);
}

static void fake_free(struct fake *f)
{
    cf__hconn_detach(&f->c);
    for (int i = 0; i < f->n_held; i++) {
        struct cf__http_req *r = (struct cf__http_req *)f->held[i];
        if (!r->responded)
            cf_http_respond(f->held[i], 200, NULL, NULL, NULL, 0);
    }
    while (f->retired) {
        struct cf__http_req *r = f->retired;
        f->retired = r->next;
        cf__http_req_free(r);
    }
    cf__http_env_release(&f->env);
    cf__hconn_free(&f->c);
    cf_buf_free(&f->out);
}

static const char *out_of(struct fake *f)
{
    return f->out.data ? f->out.data : "";
}

static void test_core_get_keepalive(void **state)
{
    (void)state;
    struct fake f;
    fake_init(&f, NULL);
    assert_int_equal(f.timer, 10000); /* the header timer runs from the start */
    fake_feed(&f, "GET /a%20b?x=1 HTTP/1.1\r\nHost: h\r\nAuthorization: Basic c2VjcmV0\r\n\r\n");
    const char *o = out_of(&f);
    assert_int_equal(f.dispatched, 1);
    assert_non_null(strstr(o, "HTTP/1.1 200 OK\r\n"));
    assert_non_null(strstr(o, "\r\nDate: "));
    assert_non_null(strstr(o, " GMT\r\n"));
    assert_non_null(strstr(o, "\r\nContent-Type: text/plain\r\n"));
    assert_non_null(strstr(o, "\r\nX-Test: yes\r\n"));
    assert_non_null(strstr(o, "\r\nContent-Length: 15\r\n"));
    assert_non_null(strstr(o, "\r\nConnection: keep-alive\r\n\r\nGET /a b body=0"));
    /* Request headers are never echoed. */
    assert_null(strstr(o, "c2VjcmV0"));
    assert_false(f.finished);
    assert_int_equal(f.timer, 60000); /* idle keep-alive wait */
    assert_int_equal(f.env.counters.requests, 1);
    assert_int_equal(f.env.counters.responses_by_class[2], 1);
    fake_free(&f);
}

static void test_core_pipelined_in_order(void **state)
{
    (void)state;
    struct fake f;
    fake_init(&f, NULL);
    f.hold = true;
    fake_feed(&f, "GET /first HTTP/1.1\r\nHost: h\r\n\r\n"
                  "POST /second HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc"
                  "GET /third HTTP/1.1\r\nHost: h\r\n\r\n");
    /* One at a time: the second is not even parsed before the first is answered. */
    assert_int_equal(f.dispatched, 1);
    assert_int_equal(f.out.len, 0);
    f.hold = false;
    cf_http_respond(f.held[0], 200, "text/plain", NULL, "one", 3);
    assert_int_equal(f.dispatched, 3);
    const char *o = out_of(&f);
    const char *a = strstr(o, "\r\n\r\none");
    const char *b = strstr(o, "POST /second body=3");
    const char *c = strstr(o, "GET /third body=0");
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(c);
    assert_true(a < b && b < c);
    assert_int_equal(count(o, f.out.len, "HTTP/1.1 200 OK"), 3);
    fake_free(&f);
}

static void test_core_bytewise_and_chunked(void **state)
{
    (void)state;
    struct fake f;
    fake_init(&f, NULL);
    fake_feed_bytewise(&f, "POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello"
                           "POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                           "3;ext=1\r\nabc\r\n4\r\ndefg\r\n0\r\nTrailer-X: 1\r\n\r\n");
    assert_int_equal(f.dispatched, 2);
    assert_non_null(strstr(out_of(&f), "POST /p body=5"));
    assert_non_null(strstr(out_of(&f), "POST /c body=7"));
    assert_false(f.finished);
    fake_free(&f);
}

struct refusal {
    const char *name;
    const char *input;
    int status;
    const char *text;
};

static char *repeat(const char *prefix, char ch, size_t n, const char *suffix)
{
    struct cf_buf b;
    cf_buf_init(&b);
    cf_buf_puts(&b, prefix);
    for (size_t i = 0; i < n; i++)
        cf_buf_putc(&b, ch);
    cf_buf_puts(&b, suffix);
    return cf_buf_steal(&b);
}

static char *many_headers(int n)
{
    struct cf_buf b;
    cf_buf_init(&b);
    cf_buf_puts(&b, "GET / HTTP/1.1\r\nHost: h\r\n");
    for (int i = 0; i < n; i++)
        cf_buf_printf(&b, "X-H%d: v\r\n", i);
    cf_buf_puts(&b, "\r\n");
    return cf_buf_steal(&b);
}

static void test_core_refusals(void **state)
{
    (void)state;
    char *big_header = repeat("GET / HTTP/1.1\r\nHost: h\r\nX-Big: ", 'a', 100 * 1024, "\r\n\r\n");
    char *long_url = repeat("GET /", 'u', 3000, " HTTP/1.1\r\nHost: h\r\n\r\n");
    char *headers65 = many_headers(64); /* plus Host: 65 */
    char *big_chunk = repeat("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                             "11800\r\n",
                             'x', 0x11800, "\r\n0\r\n\r\n");
    const struct refusal cases[] = {
        {"CL+TE",
         "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: "
         "chunked\r\n\r\n0\r\n\r\n",
         400, "Content-Length can't be present with Transfer-Encoding"},
        {"TE+CL",
         "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: "
         "5\r\n\r\n0\r\n\r\n",
         400, "Content-Length can't be present with Transfer-Encoding"},
        {"duplicate CL",
         "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: "
         "5\r\n\r\nhello",
         400, "Duplicate Content-Length"},
        {"invalid CL", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5x\r\n\r\nhello", 400,
         "Content-Length"},
        {"TE not chunked", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n", 400,
         "Transfer-Encoding"},
        {"bare LF", "GET / HTTP/1.1\nHost: h\n\n", 400, ""},
        {"garbage", "HELLO\r\n\r\n", 400, ""},
        {"space in header name", "GET / HTTP/1.1\r\nHost: h\r\nX Y: 1\r\n\r\n", 400, ""},
        {"100 KiB header", big_header, 431, "request header fields too large"},
        {"65 headers", headers65, 431, "too many request header fields"},
        {"long URL", long_url, 414, "request target too long"},
        {"CL over limit", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10000000\r\n\r\n", 413,
         "request body too large"},
        {"chunked over limit", big_chunk, 413, "request body too large"},
        {"no Host", "GET / HTTP/1.1\r\n\r\n", 400, "Host"},
        {"two Hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, "Host"},
        {"odd Expect", "POST / HTTP/1.1\r\nHost: h\r\nExpect: magic\r\nContent-Length: 1\r\n\r\n",
         417, "unsupported expectation"},
        {"bad escape", "GET /a%zz HTTP/1.1\r\nHost: h\r\n\r\n", 400, "percent-encoding"},
        {"encoded NUL", "GET /a%00b HTTP/1.1\r\nHost: h\r\n\r\n", 400, "percent-encoding"},
    };
    for (size_t i = 0; i < CF_ARRAY_LEN(cases); i++) {
        struct fake f;
        fake_init(&f, NULL);
        fake_feed(&f, cases[i].input);
        char want[32];
        snprintf(want, sizeof(want), "HTTP/1.1 %d ", cases[i].status);
        const char *o = out_of(&f);
        if (strncmp(o, want, strlen(want)) != 0 || !strstr(o, cases[i].text) ||
            !strstr(o, "Connection: close\r\n") || !f.finished || f.dispatched != 0)
            fail_msg("%s: got '%.200s' finished=%d dispatched=%d", cases[i].name, o, f.finished,
                     f.dispatched);
        /* Exactly one answer, and nothing after it: the rest of the input is never parsed. */
        if (count(o, f.out.len, "\r\nDate: ") != 1)
            fail_msg("%s: more than one answer: '%.300s'", cases[i].name, o);
        fake_free(&f);
    }
    free(big_header);
    free(long_url);
    free(headers65);
    free(big_chunk);
}

static void test_core_limits_at_the_edge(void **state)
{
    (void)state;
    /* 63 extra headers plus Host: 64, the limit itself, is fine. */
    char *h64 = many_headers(63);
    struct fake f;
    fake_init(&f, NULL);
    fake_feed(&f, h64);
    assert_int_equal(f.dispatched, 1);
    fake_free(&f);
    free(h64);

    /* A route may raise the body limit (fake_body_limit gives /big 1 MiB). */
    fake_init(&f, NULL);
    fake_feed(&f, "POST /big HTTP/1.1\r\nHost: h\r\nContent-Length: 100000\r\n\r\n");
    assert_int_equal(f.out.len, 0);
    char *body = repeat("", 'b', 100000, "");
    fake_feed(&f, body);
    assert_non_null(strstr(out_of(&f), "POST /big body=100000"));
    fake_free(&f);
    free(body);

    /* Lower limits from the configuration apply. */
    struct cf_http_limits lim = {.max_url_bytes = 10, .max_body_bytes = 4};
    fake_init(&f, &lim);
    fake_feed(&f, "POST /012345678 HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\nabcd");
    assert_int_equal(f.dispatched, 1);
    fake_feed(&f, "POST /0123456789 HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_non_null(strstr(out_of(&f), "HTTP/1.1 414 URI Too Long"));
    fake_free(&f);
    fake_init(&f, &lim);
    fake_feed(&f, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n");
    assert_non_null(strstr(out_of(&f), "HTTP/1.1 413 "));
    fake_free(&f);
}

static void test_core_expect_continue(void **state)
{
    (void)state;
    struct fake f;
    fake_init(&f, NULL);
    fake_feed(&f, "POST /u HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: "
                  "2000\r\n\r\n");
    assert_string_equal(out_of(&f), "HTTP/1.1 100 Continue\r\n\r\n");
    assert_int_equal(f.timer, 30000); /* body timer */
    char *body = repeat("", 'z', 2000, "");
    fake_feed(&f, body);
    free(body);
    assert_non_null(strstr(out_of(&f), "\r\n\r\nHTTP/1.1 200 OK\r\n"));
    assert_non_null(strstr(out_of(&f), "POST /u body=2000"));
    fake_free(&f);

    /* Too large: 413 at once, and no 100 Continue that would invite the body. */
    fake_init(&f, NULL);
    fake_feed(&f, "POST /u HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: "
                  "10000000\r\n\r\n");
    assert_null(strstr(out_of(&f), "100 Continue"));
    assert_non_null(strstr(out_of(&f), "HTTP/1.1 413 Content Too Large\r\n"));
    assert_true(f.finished);
    fake_free(&f);
}

static void test_core_head_and_close_rules(void **state)
{
    (void)state;
    struct fake f;
    fake_init(&f, NULL);
    fake_feed(&f, "HEAD /h HTTP/1.1\r\nHost: h\r\n\r\nGET /g HTTP/1.1\r\nHost: h\r\n\r\n");
    const char *o = out_of(&f);
    /* The HEAD answer announces the length of the body it leaves out. */
    assert_non_null(strstr(o, "Content-Length: 14\r\nConnection: keep-alive\r\n\r\nHTTP/1.1 200"));
    assert_non_null(strstr(o, "GET /g body=0"));
    assert_null(strstr(o, "HEAD /h body=0"));
    fake_free(&f);

    fake_init(&f, NULL);
    fake_feed(&f, "GET / HTTP/1.0\r\n\r\n");
    assert_non_null(strstr(out_of(&f), "Connection: close\r\n"));
    assert_true(f.finished);
    fake_free(&f);

    fake_init(&f, NULL);
    fake_feed(&f, "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_non_null(strstr(out_of(&f), "Connection: keep-alive\r\n"));
    assert_false(f.finished);
    fake_free(&f);

    fake_init(&f, NULL);
    fake_feed(&f, "GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
                  "GET /never HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_non_null(strstr(out_of(&f), "Connection: close\r\n"));
    assert_int_equal(f.dispatched, 1);
    assert_true(f.finished);
    fake_free(&f);
}

static void test_core_timeouts(void **state)
{
    (void)state;
    struct cf_http_limits lim = {
        .header_timeout_ms = 111, .body_timeout_ms = 222, .idle_timeout_ms = 333};
    struct fake f;

    /* Nothing received: closed without an answer. */
    fake_init(&f, &lim);
    assert_int_equal(f.timer, 111);
    cf__hconn_timeout(&f.c);
    assert_true(f.finished);
    assert_int_equal(f.out.len, 0);
    fake_free(&f);

    /* Headers trickling in one byte at a time do not restart the header timer. */
    fake_init(&f, &lim);
    f.timer = 0;
    fake_feed_bytewise(&f, "GET / HTTP/1.1\r\nHos");
    assert_int_equal(f.timer, 0);
    cf__hconn_timeout(&f.c);
    assert_non_null(strstr(out_of(&f), "HTTP/1.1 408 Request Timeout\r\n"));
    assert_non_null(strstr(out_of(&f), "request header timeout"));
    assert_true(f.finished);
    fake_free(&f);

    /* A body that stalls. */
    fake_init(&f, &lim);
    fake_feed(&f, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nab");
    assert_int_equal(f.timer, 222);
    cf__hconn_timeout(&f.c);
    assert_non_null(strstr(out_of(&f), "HTTP/1.1 408 "));
    assert_non_null(strstr(out_of(&f), "request body timeout"));
    fake_free(&f);

    /* Idle keep-alive: closed quietly. */
    fake_init(&f, &lim);
    fake_feed(&f, "GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_int_equal(f.timer, 333);
    size_t len = f.out.len;
    cf__hconn_timeout(&f.c);
    assert_true(f.finished);
    assert_int_equal(f.out.len, len);
    fake_free(&f);

    /* While the handler has the request no timer runs. */
    fake_init(&f, &lim);
    f.hold = true;
    fake_feed(&f, "GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_int_equal(f.timer, 0);
    fake_free(&f);
}

static void test_core_gone_and_twice(void **state)
{
    (void)state;
    struct fake f;
    fake_init(&f, NULL);
    f.hold = true;
    fake_feed(&f, "GET /slow HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_int_equal(f.n_held, 1);
    assert_false(f.held[0]->gone);
    cf__hconn_detach(&f.c); /* the peer left */
    assert_true(f.held[0]->gone);
    assert_ptr_equal(f.env.orphans, (struct cf__http_req *)f.held[0]);
    cf_http_respond(f.held[0], 200, "text/plain", NULL, "late", 4);
    assert_null(f.env.orphans);
    assert_int_equal(f.out.len, 0);
    assert_int_equal(f.env.counters.responses_by_class[2], 0);
    fake_free(&f);

    capture_logs(CF_LOG_INFO);
    fake_init(&f, NULL);
    f.twice = true;
    fake_feed(&f, "GET /x HTTP/1.1\r\nHost: h\r\n\r\nGET /y HTTP/1.1\r\nHost: h\r\n\r\n");
    fake_free(&f);
    char *logs = logs_taken();
    assert_int_equal(count(logs, strlen(logs), "second answer to one request ignored"), 2);
    free(logs);
    /* The second answers never reached the wire. */
    fake_init(&f, NULL);
    f.twice = true;
    capture_logs(CF_LOG_INFO);
    fake_feed(&f, "GET /x HTTP/1.1\r\nHost: h\r\n\r\n");
    free(logs_taken());
    assert_int_equal(count(out_of(&f), f.out.len, "HTTP/1.1 "), 1);
    assert_null(strstr(out_of(&f), "500"));
    fake_free(&f);
}

static void test_core_drain(void **state)
{
    (void)state;
    struct fake f;
    fake_init(&f, NULL);
    cf__hconn_drain(&f.c);
    assert_true(f.finished);
    fake_free(&f);

    fake_init(&f, NULL);
    f.hold = true;
    fake_feed(&f, "GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    cf__hconn_drain(&f.c);
    assert_false(f.finished);
    cf_http_respond(f.held[0], 204, NULL, NULL, NULL, 0);
    assert_non_null(strstr(out_of(&f), "HTTP/1.1 204 No Content\r\n"));
    assert_null(strstr(out_of(&f), "Content-Length"));
    assert_non_null(strstr(out_of(&f), "Connection: close\r\n"));
    assert_true(f.finished);
    fake_free(&f);
}

static void test_core_backlog_holds_pipeline(void **state)
{
    (void)state;
    struct fake f;
    fake_init(&f, NULL);
    f.backlog = 10 * 1024 * 1024; /* a peer that does not read */
    fake_feed(&f, "GET /1 HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_int_equal(f.dispatched, 1);
    f.backlog = 0;
    cf__hconn_resume(&f.c);
    assert_int_equal(f.dispatched, 2);
    fake_free(&f);
}

static void test_core_response_headers_checked(void **state)
{
    (void)state;
    struct fake f;
    fake_init(&f, NULL);
    f.hold = true;
    fake_feed(&f, "GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    static const char *const hdrs[] = {
        "Location", "/x\r\nSet-Cookie: evil=1", "Content-Length", "99", "X-Ok", "fine", NULL};
    capture_logs(CF_LOG_INFO);
    cf_http_respond(f.held[0], 302, NULL, hdrs, "", 0);
    free(logs_taken());
    const char *o = out_of(&f);
    assert_null(strstr(o, "evil"));
    assert_null(strstr(o, "99"));
    assert_non_null(strstr(o, "HTTP/1.1 302 Found\r\n"));
    assert_non_null(strstr(o, "X-Ok: fine\r\n"));
    assert_non_null(strstr(o, "Content-Length: 0\r\n"));
    fake_free(&f);

    fake_init(&f, NULL);
    f.hold = true;
    fake_feed(&f, "GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    json_t *j = json_pack("{s:s,s:i}", "id", "x", "n", 3);
    cf_http_respond_json(f.held[0], 201, j);
    assert_non_null(strstr(out_of(&f), "HTTP/1.1 201 Created\r\n"));
    assert_non_null(strstr(out_of(&f), "Content-Type: application/json\r\n"));
    assert_non_null(strstr(out_of(&f), "{\"id\":\"x\",\"n\":3}"));
    fake_free(&f);
}

static void test_core_query_and_headers(void **state)
{
    (void)state;
    struct fake f;
    fake_init(&f, NULL);
    f.hold = true;
    fake_feed(&f, "GET /p%20q/r?a=1&b=hello+world&c=%41%42&d&e=%00x&f=%zz&tenantId=t%2B1&a=2 "
                  "HTTP/1.1\r\nHost: example\r\nX-Empty:\r\nX-Pad:  v  \r\n\r\n");
    assert_int_equal(f.n_held, 1);
    struct cf_http_request *r = f.held[0];
    assert_string_equal(r->method, "GET");
    assert_string_equal(r->path, "/p q/r");
    assert_string_equal(r->query, "a=1&b=hello+world&c=%41%42&d&e=%00x&f=%zz&tenantId=t%2B1&a=2");
    assert_string_equal(r->peer_addr, "127.0.0.1:40000");
    assert_string_equal(cf_http_header(r, "host"), "example");
    assert_string_equal(cf_http_header(r, "X-EMPTY"), "");
    assert_string_equal(cf_http_header(r, "x-pad"), "v");
    assert_null(cf_http_header(r, "Cookie"));
    char v[16];
    assert_int_equal(cf_http_query_param(r, "a", v, sizeof(v)), 0);
    assert_string_equal(v, "1");
    assert_int_equal(cf_http_query_param(r, "b", v, sizeof(v)), 0);
    assert_string_equal(v, "hello world");
    assert_int_equal(cf_http_query_param(r, "c", v, sizeof(v)), 0);
    assert_string_equal(v, "AB");
    assert_int_equal(cf_http_query_param(r, "d", v, sizeof(v)), 0);
    assert_string_equal(v, "");
    /* An encoded NUL cannot cut a value short; a broken escape stays as sent. */
    assert_int_equal(cf_http_query_param(r, "e", v, sizeof(v)), 0);
    assert_string_equal(v, "%00x");
    assert_int_equal(cf_http_query_param(r, "f", v, sizeof(v)), 0);
    assert_string_equal(v, "%zz");
    assert_int_equal(cf_http_query_param(r, "tenantId", v, sizeof(v)), 0);
    assert_string_equal(v, "t+1");
    assert_int_equal(cf_http_query_param(r, "tenant", v, sizeof(v)), CF_ENOENT);
    assert_int_equal(cf_http_query_param(r, "A", v, sizeof(v)), CF_ENOENT);
    assert_int_equal(cf_http_query_param(r, "b", v, 5), CF_ELIMIT);
    assert_int_equal(cf_http_query_param(r, "a", v, 2), 0);
    assert_int_equal(cf_http_query_param(r, "a", v, 1), CF_ELIMIT);
    fake_free(&f);

    /* Absolute-form targets route by their path. */
    fake_init(&f, NULL);
    f.hold = true;
    fake_feed(&f, "GET http://example/x/y?z=1 HTTP/1.1\r\nHost: example\r\n\r\n");
    assert_string_equal(f.held[0]->path, "/x/y");
    assert_string_equal(f.held[0]->query, "z=1");
    fake_free(&f);
    fake_init(&f, NULL);
    f.hold = true;
    fake_feed(&f, "GET http://example?z=2 HTTP/1.1\r\nHost: example\r\n\r\n"
                  "OPTIONS * HTTP/1.1\r\nHost: example\r\n\r\n");
    assert_string_equal(f.held[0]->path, "/");
    assert_string_equal(f.held[0]->query, "z=2");
    f.hold = false;
    cf_http_respond(f.held[0], 200, NULL, NULL, NULL, 0);
    assert_non_null(strstr(out_of(&f), "OPTIONS * body=0"));
    fake_free(&f);
}

static void test_core_latency_histogram(void **state)
{
    (void)state;
    struct fake f;
    fake_init(&f, NULL);
    fake_feed(&f, "GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    f.hold = true;
    fake_feed(&f, "GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    struct timespec ts = {0, 30 * 1000 * 1000};
    nanosleep(&ts, NULL);
    cf_http_respond(f.held[0], 503, NULL, NULL, NULL, 0);
    const struct cf__http_counters *k = &f.env.counters;
    assert_int_equal(k->requests, 2);
    assert_int_equal(k->responses_by_class[2], 1);
    assert_int_equal(k->responses_by_class[5], 1);
    assert_int_equal(k->latency_buckets[0], 1); /* at once: under 1 ms */
    assert_int_equal(k->latency_buckets[5], 1); /* 30 ms: in (0.025, 0.05] */
    assert_true(k->latency_sum_s >= 0.03 && k->latency_sum_s < 1);
    assert_true(isinf(cf_http_latency_bounds[11]));
    fake_free(&f);
}

/* ====================================================================================== */
/* The real server                                                                          */
/* ====================================================================================== */

static char pki[256];

static const char pki_script[] =
    "set -e\n"
    "cd \"$1\"\n"
    "key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out \"$1\"; }\n"
    "ca() {\n"
    "  key $1.key\n"
    "  openssl req -x509 -new -key $1.key -out $1.pem -days 2 -subj \"$2\" \\\n"
    "    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign\n"
    "}\n"
    "leaf() {\n"
    "  key $1.key\n"
    "  openssl req -new -key $1.key -out $1.csr -subj \"$3\"\n"
    "  printf '%b' \"$4\" > $1.ext\n"
    "  openssl x509 -req -in $1.csr -CA $2.pem -CAkey $2.key -CAcreateserial -out $1.pem \\\n"
    "    -days 2 -extfile $1.ext\n"
    "}\n"
    "ca ca '/CN=certflow test CA'\n"
    "ca rogue '/CN=rogue CA'\n"
    "leaf server ca /CN=localhost "
    "'subjectAltName=IP:127.0.0.1,DNS:localhost\\nextendedKeyUsage=serverAuth\\n'\n"
    "leaf client ca /O=certflow/CN=test-client 'extendedKeyUsage=clientAuth\\n'\n"
    "leaf revoked ca /O=certflow/CN=revoked-client 'extendedKeyUsage=clientAuth\\n'\n"
    "leaf later ca /O=certflow/CN=later-client 'extendedKeyUsage=clientAuth\\n'\n"
    "leaf wrongeku ca /O=certflow/CN=server-only 'extendedKeyUsage=serverAuth\\n'\n"
    "leaf stranger rogue /O=certflow/CN=test-client 'extendedKeyUsage=clientAuth\\n'\n"
    "printf '[ca]\\ndefault_ca=t\\n[t]\\ndatabase=index.txt\\ncrlnumber=crlnumber\\n"
    "default_md=sha256\\ndefault_crl_days=2\\ncertificate=ca.pem\\nprivate_key=ca.key\\n' "
    "> ca.cnf\n"
    ": > index.txt\n"
    "echo 01 > crlnumber\n"
    "openssl ca -config ca.cnf -gencrl -out crl-none.pem\n"
    "openssl ca -config ca.cnf -revoke revoked.pem\n"
    "openssl ca -config ca.cnf -gencrl -out crl.pem\n"
    "openssl ca -config ca.cnf -revoke later.pem\n"
    "openssl ca -config ca.cnf -gencrl -out crl-later.pem\n";

static const char *P(const char *name)
{
    static char bufs[8][320];
    static int next;
    char *b = bufs[next++ % 8];
    snprintf(b, sizeof(bufs[0]), "%s/%s", pki, name);
    return b;
}

/* Runs argv with a deadline enforced by the caller's arguments; captures stdout and stderr. */
static int run(char *const argv[], struct cf_buf *out)
{
    int fds[2];
    if (pipe(fds) != 0)
        fail_msg("pipe: %s", strerror(errno));
    pid_t pid = fork();
    if (pid < 0)
        fail_msg("fork: %s", strerror(errno));
    if (pid == 0) {
        int null = open("/dev/null", O_RDONLY);
        dup2(null, 0);
        dup2(fds[1], 1);
        dup2(fds[1], 2);
        close(fds[0]);
        close(fds[1]);
        execvp(argv[0], argv);
        _exit(127);
    }
    close(fds[1]);
    char buf[4096];
    ssize_t n;
    while ((n = read(fds[0], buf, sizeof(buf))) > 0 || (n < 0 && errno == EINTR)) {
        if (n > 0 && out)
            cf_buf_append(out, buf, (size_t)n);
    }
    close(fds[0]);
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static int setup_pki(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    snprintf(pki, sizeof(pki), "/tmp/cf-http-pki-XXXXXX");
    if (!mkdtemp(pki))
        return -1;
    char *argv[] = {"sh", "-c", (char *)pki_script, "pki", pki, NULL};
    struct cf_buf out;
    cf_buf_init(&out);
    int rc = run(argv, &out);
    if (rc != 0)
        fprintf(stderr, "test PKI failed (%d): %s\n", rc, out.data ? out.data : "");
    cf_buf_free(&out);
    return rc == 0 ? 0 : -1;
}

static int teardown_pki(void **state)
{
    (void)state;
    char *argv[] = {"rm", "-rf", pki, NULL};
    run(argv, NULL);
    return 0;
}

/* The server's loop runs in its own thread; the test thread asks it to do things through an
 * async handle and waits until they are done. */
struct harness {
    uv_loop_t loop;
    uv_async_t async;
    struct cf_http_server *server;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    void (*call)(struct harness *);
    bool call_done;
    int ports[3];
    /* What the handler saw, under mu. */
    int requests;
    int slow_done;
    int slow_gone;
    char subject[256];
    char addrs[8][64];
    int n_addrs;
    struct cf_http_stats stats;
    int reload_rc;
    char reload_err[1024];
};

static struct harness H;

struct slow {
    uv_timer_t timer;
    struct cf_http_request *req;
    struct harness *h;
};

static void slow_closed(uv_handle_t *t)
{
    free(t->data);
}

static void slow_fire(uv_timer_t *t)
{
    struct slow *sl = t->data;
    struct harness *h = sl->h;
    bool gone = sl->req->gone;
    cf_http_respond(sl->req, 200, "text/plain", NULL, "slow\n", 5);
    pthread_mutex_lock(&h->mu);
    h->slow_done++;
    h->slow_gone += gone;
    pthread_mutex_unlock(&h->mu);
    uv_close((uv_handle_t *)t, slow_closed);
}

static void handler(void *arg, struct cf_http_request *req)
{
    struct harness *h = arg;
    pthread_mutex_lock(&h->mu);
    h->requests++;
    if (h->n_addrs < 8)
        cf_strlcpy(h->addrs[h->n_addrs++], req->peer_addr, sizeof(h->addrs[0]));
    pthread_mutex_unlock(&h->mu);
    if (strcmp(req->path, "/hello") == 0) {
        cf_http_respond(req, 200, "text/plain", NULL, "hello\n", 6);
    } else if (strcmp(req->path, "/echo") == 0) {
        const char *hdr[] = {"X-Method", req->method, NULL};
        cf_http_respond(req, 200, "application/octet-stream", hdr, req->body, req->body_len);
    } else if (strcmp(req->path, "/whoami") == 0) {
        char subject[256] = "none";
        if (req->peer_cert) {
            BIO *b = BIO_new(BIO_s_mem());
            X509_NAME_print_ex(b, X509_get_subject_name(req->peer_cert), 0, XN_FLAG_RFC2253);
            int n = BIO_read(b, subject, sizeof(subject) - 1);
            subject[n > 0 ? n : 0] = '\0';
            BIO_free(b);
        }
        char body[320];
        int n = snprintf(body, sizeof(body), "%s chain=%d", subject,
                         req->peer_chain ? sk_X509_num(req->peer_chain) : 0);
        pthread_mutex_lock(&h->mu);
        cf_strlcpy(h->subject, subject, sizeof(h->subject));
        pthread_mutex_unlock(&h->mu);
        cf_http_respond(req, 200, "text/plain", NULL, body, (size_t)n);
    } else if (strcmp(req->path, "/slow") == 0) {
        char ms[16] = "100";
        cf_http_query_param(req, "ms", ms, sizeof(ms));
        struct slow *sl = cf_xcalloc(1, sizeof(*sl));
        sl->req = req;
        sl->h = h;
        uv_timer_init(&h->loop, &sl->timer);
        sl->timer.data = sl;
        uv_timer_start(&sl->timer, slow_fire, (uint64_t)strtoull(ms, NULL, 10), 0);
    } else if (strcmp(req->path, "/twice") == 0) {
        cf_http_respond(req, 200, "text/plain", NULL, "once\n", 5);
        cf_http_respond(req, 500, "text/plain", NULL, "twice\n", 6);
    } else {
        cf_http_respond(req, 404, "text/plain", NULL, "not found\n", 10);
    }
}

static void async_cb(uv_async_t *a)
{
    struct harness *h = a->data;
    pthread_mutex_lock(&h->mu);
    void (*fn)(struct harness *) = h->call;
    pthread_mutex_unlock(&h->mu);
    if (fn)
        fn(h);
    pthread_mutex_lock(&h->mu);
    h->call = NULL;
    h->call_done = true;
    pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
}

static void on_loop(struct harness *h, void (*fn)(struct harness *))
{
    pthread_mutex_lock(&h->mu);
    h->call = fn;
    h->call_done = false;
    uv_async_send(&h->async);
    while (!h->call_done)
        pthread_cond_wait(&h->cv, &h->mu);
    pthread_mutex_unlock(&h->mu);
}

static void *loop_thread(void *arg)
{
    struct harness *h = arg;
    uv_run(&h->loop, UV_RUN_DEFAULT);
    return NULL;
}

static void do_stop(struct harness *h)
{
    cf_http_server_close(h->server);
    uv_close((uv_handle_t *)&h->async, NULL);
}

static void do_stop_accepting(struct harness *h)
{
    cf_http_server_stop_accepting(h->server);
}

static void do_stats(struct harness *h)
{
    cf_http_server_stats(h->server, &h->stats);
}

static struct cf_http_stats stats_now(struct harness *h)
{
    on_loop(h, do_stats);
    return h->stats;
}

static void do_reload(struct harness *h)
{
    h->reload_err[0] = '\0';
    h->reload_rc = cf_http_server_reload_tls(h->server, h->reload_err, sizeof(h->reload_err));
}

static int reload_now(struct harness *h)
{
    on_loop(h, do_reload);
    return h->reload_rc;
}

enum { ONLY_PLAIN, WITH_TLS };

/* Starts the server; the client-certificate listener uses `key_file` and `crl_file` (NULL: the
 * PKI's server.key and crl.pem). */
static void start_server_files(struct harness *h, int which, const struct cf_http_limits *lim,
                               const char *key_file, const char *crl_file)
{
    char key[320], crl[320];
    cf_strlcpy(key, key_file ? key_file : P("server.key"), sizeof(key));
    cf_strlcpy(crl, crl_file ? crl_file : P("crl.pem"), sizeof(crl));
    memset(h, 0, sizeof(*h));
    pthread_mutex_init(&h->mu, NULL);
    pthread_cond_init(&h->cv, NULL);
    assert_int_equal(uv_loop_init(&h->loop), 0);
    uv_async_init(&h->loop, &h->async, async_cb);
    h->async.data = h;
    struct cf_listener_config ls[3] = {
        {.kind = CF_LISTEN_PLAIN, .host = "127.0.0.1"},
        {.kind = CF_LISTEN_TLS,
         .host = "127.0.0.1",
         .cert_file = P("server.pem"),
         .key_file = P("server.key")},
        {.kind = CF_LISTEN_TLS_CLIENT,
         .host = "127.0.0.1",
         .cert_file = P("server.pem"),
         .key_file = key,
         .ca_file = P("ca.pem"),
         .crl_file = crl},
    };
    struct cf_http_server_config cfg = {
        .listeners = ls,
        .n_listeners = which == WITH_TLS ? 3 : 1,
        .handler = handler,
        .arg = h,
    };
    if (lim)
        cfg.limits = *lim;
    char err[512] = "";
    int rc = cf_http_server_start(&h->loop, &cfg, &h->server, err, sizeof(err));
    if (rc != 0)
        fail_msg("server start: %s (%s)", err, cf_err_name(rc));
    for (size_t i = 0; i < cfg.n_listeners; i++) {
        h->ports[i] = cf_http_listener_port(h->server, i);
        assert_true(h->ports[i] > 0);
    }
    assert_int_equal(pthread_create(&h->thread, NULL, loop_thread, h), 0);
}

static void start_server(struct harness *h, int which, const struct cf_http_limits *lim)
{
    start_server_files(h, which, lim, NULL, NULL);
}

static void stop_server(struct harness *h)
{
    on_loop(h, do_stop);
    pthread_join(h->thread, NULL);
    assert_int_equal(uv_loop_close(&h->loop), 0);
    pthread_cond_destroy(&h->cv);
    pthread_mutex_destroy(&h->mu);
}

static int handled(struct harness *h)
{
    pthread_mutex_lock(&h->mu);
    int n = h->requests;
    pthread_mutex_unlock(&h->mu);
    return n;
}

/* Waits until the handler has seen `n` requests in all; fails the test after 5 s. */
static void wait_handled(struct harness *h, int n)
{
    uint64_t deadline = mono_ms() + 5000;
    while (handled(h) < n) {
        if (mono_ms() > deadline)
            fail_msg("the handler saw %d requests, not %d, within 5 s", handled(h), n);
        sleep_ms(1);
    }
}

/* ---- raw sockets ---- */

static int tcp_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        close(fd);
        return -1;
    }
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

static bool send_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        c += w;
        n -= (size_t)w;
    }
    return true;
}

static bool send_str(int fd, const char *s)
{
    return send_all(fd, s, strlen(s));
}

/* Length of the complete response at the start of p, or 0 while it is incomplete. Interim
 * (1xx) responses count as complete responses of their own. */
static size_t response_len(const char *p, size_t n, bool head)
{
    const char *end = find(p, n, "\r\n\r\n");
    if (!end)
        return 0;
    size_t hl = (size_t)(end - p) + 4;
    size_t cl = 0;
    const char *c = find(p, hl, "Content-Length: ");
    if (c && !head)
        cl = strtoul(c + 16, NULL, 10);
    return n >= hl + cl ? hl + cl : 0;
}

/* Reads into `b` until `want` complete responses have arrived (want < 0: until EOF) or the
 * deadline passes. Returns whether the peer closed. */
static bool read_responses(int fd, struct cf_buf *b, int want, int timeout_ms, bool head)
{
    uint64_t deadline = mono_ms() + (uint64_t)timeout_ms;
    bool eof = false;
    for (;;) {
        if (want >= 0) {
            int got = 0;
            size_t off = 0, len;
            while (off < b->len && (len = response_len(b->data + off, b->len - off, head)) > 0) {
                off += len;
                got++;
            }
            if (got >= want)
                return eof;
        }
        uint64_t now = mono_ms();
        if (now >= deadline)
            return eof;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int r = poll(&pfd, 1, (int)(deadline - now));
        if (r <= 0)
            continue;
        char buf[65536];
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return true;
        cf_buf_append(b, buf, (size_t)n);
    }
}

/* Waits for the peer to close; true if it did before the deadline. */
static bool wait_eof(int fd, int timeout_ms, struct cf_buf *extra)
{
    struct cf_buf tmp;
    cf_buf_init(&tmp);
    bool eof = read_responses(fd, extra ? extra : &tmp, -1, timeout_ms, false);
    cf_buf_free(&tmp);
    return eof;
}

static const char *bdata(const struct cf_buf *b)
{
    return b->data ? b->data : "";
}

/* One raw exchange on a fresh connection: sends `req`, reads until EOF (or the deadline). */
static bool raw_exchange(int port, const char *req, struct cf_buf *out, int timeout_ms)
{
    int fd = tcp_connect(port);
    assert_true(fd >= 0);
    send_str(fd, req);
    bool eof = read_responses(fd, out, -1, timeout_ms, false);
    close(fd);
    return eof;
}

/* ---- curl and s_client ---- */

static int curl(struct cf_buf *out, ...)
{
    char *argv[48];
    int n = 0;
    argv[n++] = "curl";
    argv[n++] = "-sS";
    argv[n++] = "--max-time";
    argv[n++] = "10";
    va_list ap;
    va_start(ap, out);
    char *a;
    while ((a = va_arg(ap, char *)) != NULL && n < 46)
        argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;
    return run(argv, out);
}

static int s_client(struct cf_buf *out, int port, const char *a1, const char *a2, const char *a3,
                    const char *a4)
{
    char target[64];
    snprintf(target, sizeof(target), "127.0.0.1:%d", port);
    char *argv[24];
    int n = 0;
    argv[n++] = "timeout";
    argv[n++] = "10";
    argv[n++] = "openssl";
    argv[n++] = "s_client";
    argv[n++] = "-connect";
    argv[n++] = target;
    argv[n++] = "-CAfile";
    argv[n++] = (char *)P("ca.pem");
    argv[n++] = "-verify_return_error";
    const char *extra[] = {a1, a2, a3, a4};
    for (int i = 0; i < 4; i++) {
        if (extra[i])
            argv[n++] = (char *)extra[i];
    }
    argv[n] = NULL;
    return run(argv, out);
}

static char *url(int port, bool tls, const char *path)
{
    return cf_xasprintf("%s://127.0.0.1:%d%s", tls ? "https" : "http", port, path);
}

/* ---- tests on the real server ---- */

static void test_plain_get_post_keepalive(void **state)
{
    (void)state;
    start_server(&H, ONLY_PLAIN, NULL);
    struct cf_buf out;
    cf_buf_init(&out);
    char *u = url(H.ports[0], false, "/hello");
    assert_int_equal(curl(&out, "-i", u, NULL), 0);
    assert_non_null(strstr(bdata(&out), "HTTP/1.1 200 OK\r\n"));
    assert_non_null(strstr(bdata(&out), "\r\n\r\nhello\n"));
    free(u);

    /* A 3000-byte POST with Expect: 100-continue, as curl sends larger bodies. */
    char path[300];
    snprintf(path, sizeof(path), "%s", P("post.bin"));
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    for (int i = 0; i < 3000; i++)
        fputc('a' + i % 26, fp);
    fclose(fp);
    char at[320];
    snprintf(at, sizeof(at), "@%s", path);
    cf_buf_reset(&out);
    u = url(H.ports[0], false, "/echo");
    assert_int_equal(curl(&out, "-v", "-H", "Expect: 100-continue", "--data-binary", at, u, NULL),
                     0);
    assert_non_null(strstr(bdata(&out), "HTTP/1.1 100 Continue"));
    assert_non_null(strstr(bdata(&out), "X-Method: POST"));
    assert_non_null(strstr(bdata(&out), "abcdefghijklmnopqrstuvwxyzabc"));
    free(u);

    /* Two URLs on one command line share one connection. */
    int before = handled(&H);
    cf_buf_reset(&out);
    u = url(H.ports[0], false, "/hello");
    assert_int_equal(
        curl(&out, "-o", "/dev/null", "-o", "/dev/null", "-w", "%{num_connects};", u, u, NULL), 0);
    assert_string_equal(bdata(&out), "1;0;");
    assert_int_equal(handled(&H), before + 2);
    pthread_mutex_lock(&H.mu);
    assert_string_equal(H.addrs[H.n_addrs - 1], H.addrs[H.n_addrs - 2]);
    pthread_mutex_unlock(&H.mu);
    free(u);
    cf_buf_free(&out);

    struct cf_http_stats st = stats_now(&H);
    assert_int_equal(st.requests, 4);
    assert_int_equal(st.responses_by_class[2], 4);
    assert_int_equal(st.latency_bucket_counts[11], 4);
    stop_server(&H);
}

static void test_tls_get_post_keepalive(void **state)
{
    (void)state;
    start_server(&H, WITH_TLS, NULL);
    struct cf_buf out;
    cf_buf_init(&out);
    char *u = url(H.ports[1], true, "/hello");
    assert_int_equal(curl(&out, "--cacert", P("ca.pem"), "-o", "/dev/null", "-o", "/dev/null", "-w",
                          "%{http_code}:%{num_connects};", u, u, NULL),
                     0);
    assert_string_equal(bdata(&out), "200:1;200:0;");
    free(u);

    cf_buf_reset(&out);
    u = url(H.ports[1], true, "/echo");
    char *body = repeat("", 'q', 50000, "");
    assert_int_equal(curl(&out, "--cacert", P("ca.pem"), "--data-binary", body, u, NULL), 0);
    assert_int_equal(out.len, 50000);
    assert_memory_equal(out.data, body, 50000);
    free(body);
    free(u);

    /* The server certificate is for 127.0.0.1: curl verified it above. Without a client
     * certificate the plain TLS listener does not ask for one. */
    cf_buf_reset(&out);
    u = url(H.ports[1], true, "/whoami");
    assert_int_equal(curl(&out, "--cacert", P("ca.pem"), u, NULL), 0);
    assert_string_equal(bdata(&out), "none chain=0");
    free(u);
    cf_buf_free(&out);
    stop_server(&H);
}

static void test_tls_client_certificates(void **state)
{
    (void)state;
    capture_logs(CF_LOG_DEBUG);
    start_server(&H, WITH_TLS, NULL);
    struct cf_buf out;
    cf_buf_init(&out);
    char *u = url(H.ports[2], true, "/whoami");

    assert_int_equal(curl(&out, "--cacert", P("ca.pem"), "--cert", P("client.pem"), "--key",
                          P("client.key"), u, NULL),
                     0);
    assert_string_equal(bdata(&out), "CN=test-client,O=certflow chain=2");

    struct {
        const char *name, *cert, *key;
    } bad[] = {
        {"no certificate", NULL, NULL},
        {"untrusted CA", "stranger.pem", "stranger.key"},
        {"revoked", "revoked.pem", "revoked.key"},
        {"serverAuth only", "wrongeku.pem", "wrongeku.key"},
    };
    for (size_t i = 0; i < CF_ARRAY_LEN(bad); i++) {
        int before = handled(&H);
        uint64_t fails = stats_now(&H).tls_handshake_failures;
        cf_buf_reset(&out);
        int rc = bad[i].cert ? curl(&out, "--cacert", P("ca.pem"), "--cert", P(bad[i].cert),
                                    "--key", P(bad[i].key), u, NULL)
                             : curl(&out, "--cacert", P("ca.pem"), u, NULL);
        if (rc == 0)
            fail_msg("%s: curl succeeded: %s", bad[i].name, bdata(&out));
        assert_int_equal(handled(&H), before);
        assert_int_equal(stats_now(&H).tls_handshake_failures, fails + 1);
    }
    free(u);
    cf_buf_free(&out);
    stop_server(&H);
    char *logs = logs_taken();
    /* Failures are logged at debug with the peer and OpenSSL's reason. */
    assert_non_null(strstr(logs, "tls handshake failed peer=127.0.0.1:"));
    assert_non_null(strstr(logs, "certificate revoked"));
    assert_non_null(strstr(logs, "unable to get local issuer certificate"));
    assert_non_null(strstr(logs, "peer did not return a certificate"));
    assert_non_null(strstr(logs, "unsuitable certificate purpose"));
    free(logs);
}

static void test_tls_versions_and_ciphers(void **state)
{
    (void)state;
    start_server(&H, WITH_TLS, NULL);
    struct cf_buf out;
    cf_buf_init(&out);
    int port = H.ports[1];

    assert_int_equal(s_client(&out, port, "-tls1_3", NULL, NULL, NULL), 0);
    assert_non_null(strstr(bdata(&out), "New, TLSv1.3, Cipher is TLS_"));
    cf_buf_reset(&out);
    assert_int_equal(s_client(&out, port, "-tls1_2", NULL, NULL, NULL), 0);
    assert_non_null(strstr(bdata(&out), "New, TLSv1.2, Cipher is ECDHE-ECDSA-"));
    cf_buf_reset(&out);
    /* The client's order wins: CHACHA20 first in its list, CHACHA20 chosen. */
    assert_int_equal(s_client(&out, port, "-tls1_2", "-cipher",
                              "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES256-GCM-SHA384", NULL),
                     0);
    assert_non_null(strstr(bdata(&out), "Cipher is ECDHE-ECDSA-CHACHA20-POLY1305"));

    /* TLS 1.1: the client is told to allow it (SECLEVEL=0), so it is the server that says no. */
    uint64_t fails = stats_now(&H).tls_handshake_failures;
    cf_buf_reset(&out);
    assert_int_not_equal(s_client(&out, port, "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0", NULL), 0);
    if (!strstr(bdata(&out), "alert protocol version"))
        fail_msg("TLS 1.1 not refused by the server: %s", bdata(&out));
    assert_int_equal(stats_now(&H).tls_handshake_failures, fails + 1);

    /* A TLS 1.2 cipher outside the list (RSA key exchange, CBC, SHA-1). */
    cf_buf_reset(&out);
    assert_int_not_equal(s_client(&out, port, "-tls1_2", "-cipher", "AES128-SHA", NULL), 0);
    if (!strstr(bdata(&out), "handshake failure"))
        fail_msg("weak cipher not refused by the server: %s", bdata(&out));
    assert_int_equal(stats_now(&H).tls_handshake_failures, fails + 2);
    /* So is CBC with ECDHE. */
    cf_buf_reset(&out);
    assert_int_not_equal(
        s_client(&out, port, "-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA256", NULL), 0);
    assert_int_equal(stats_now(&H).tls_handshake_failures, fails + 3);

    /* Renegotiation is off: the connection does not renegotiate (and survives or closes). */
    cf_buf_free(&out);
    stop_server(&H);
}

static void test_smuggling_refused(void **state)
{
    (void)state;
    start_server(&H, ONLY_PLAIN, NULL);
    int port = H.ports[0];
    struct cf_buf out;
    cf_buf_init(&out);
    assert_true(raw_exchange(port,
                             "POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n"
                             "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /hello HTTP/1.1\r\n"
                             "Host: h\r\n\r\n",
                             &out, 5000));
    assert_true(strncmp(bdata(&out), "HTTP/1.1 400 Bad Request\r\n", 26) == 0);
    assert_non_null(strstr(bdata(&out), "Content-Length can't be present with Transfer-Encoding"));
    assert_non_null(strstr(bdata(&out), "Connection: close\r\n"));
    assert_int_equal(count(bdata(&out), out.len, "HTTP/1.1"), 1);

    cf_buf_reset(&out);
    assert_true(raw_exchange(port,
                             "POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n"
                             "Content-Length: 6\r\nX-Secret: hunter2\r\n\r\nhello!",
                             &out, 5000));
    assert_true(strncmp(bdata(&out), "HTTP/1.1 400 ", 13) == 0);
    assert_non_null(strstr(bdata(&out), "Duplicate Content-Length"));
    assert_null(strstr(bdata(&out), "hunter2"));
    assert_int_equal(handled(&H), 0);
    cf_buf_free(&out);
    stop_server(&H);
}

static void test_limits_on_the_wire(void **state)
{
    (void)state;
    start_server(&H, ONLY_PLAIN, NULL);
    int port = H.ports[0];
    struct cf_buf out;
    cf_buf_init(&out);

    /* 100 KiB of header: 431, and the answer survives the rest still arriving. */
    char *big = repeat("GET /hello HTTP/1.1\r\nHost: h\r\nX-Big: ", 'a', 100 * 1024, "\r\n\r\n");
    assert_true(raw_exchange(port, big, &out, 5000));
    free(big);
    assert_true(strncmp(bdata(&out), "HTTP/1.1 431 Request Header Fields Too Large\r\n", 46) == 0);

    cf_buf_reset(&out);
    char *many = many_headers(80);
    assert_true(raw_exchange(port, many, &out, 5000));
    free(many);
    assert_true(strncmp(bdata(&out), "HTTP/1.1 431 ", 13) == 0);
    assert_non_null(strstr(bdata(&out), "too many request header fields"));

    cf_buf_reset(&out);
    char *longurl = repeat("GET /", 'u', 4096, " HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_true(raw_exchange(port, longurl, &out, 5000));
    free(longurl);
    assert_true(strncmp(bdata(&out), "HTTP/1.1 414 URI Too Long\r\n", 27) == 0);

    /* 413 from the headers alone: the body is never sent, and no 100 Continue invites it. */
    cf_buf_reset(&out);
    int fd = tcp_connect(port);
    uint64_t t0 = mono_ms();
    send_str(fd, "POST /echo HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n"
                 "Content-Length: 104857600\r\n\r\n");
    assert_true(read_responses(fd, &out, -1, 5000, false));
    uint64_t took = mono_ms() - t0;
    close(fd);
    assert_true(strncmp(bdata(&out), "HTTP/1.1 413 Content Too Large\r\n", 32) == 0);
    assert_null(strstr(bdata(&out), "100 Continue"));
    assert_true(took < 1000);

    /* curl (7.88) asks Expect: 100-continue from 1 MiB on: it gets the 413 at once, well before
     * the 1 s after which it would send the body unasked. Below 1 MiB it sends the body right
     * away; the 413 still reaches it because the server lingers instead of resetting. */
    char *u = url(port, false, "/echo");
    const size_t sizes[] = {1100 * 1024, 200 * 1024};
    for (size_t i = 0; i < CF_ARRAY_LEN(sizes); i++) {
        char path[300];
        snprintf(path, sizeof(path), "%s", P("big.bin"));
        FILE *fp = fopen(path, "wb");
        assert_non_null(fp);
        for (size_t k = 0; k < sizes[i]; k++)
            fputc('b', fp);
        fclose(fp);
        char at[320];
        snprintf(at, sizeof(at), "@%s", path);
        cf_buf_reset(&out);
        t0 = mono_ms();
        assert_int_equal(curl(&out, "-v", "-o", "/dev/null", "-w", "status=%{http_code}",
                              "--data-binary", at, u, NULL),
                         0);
        took = mono_ms() - t0;
        assert_non_null(strstr(bdata(&out), "status=413"));
        if (i == 0) {
            assert_non_null(strstr(bdata(&out), "Expect: 100-continue"));
            assert_null(strstr(bdata(&out), "Done waiting for 100-continue"));
            assert_true(took < 900);
        }
    }
    free(u);

    /* A chunked body is refused as soon as it passes the limit. */
    cf_buf_reset(&out);
    fd = tcp_connect(port);
    send_str(fd, "POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n");
    char *chunk = repeat("8000\r\n", 'c', 0x8000, "\r\n");
    bool refused = false;
    for (int i = 0; i < 64 && !refused; i++) {
        send_str(fd, chunk);
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        refused = poll(&pfd, 1, 20) > 0;
    }
    free(chunk);
    read_responses(fd, &out, 1, 5000, false);
    close(fd);
    assert_true(strncmp(bdata(&out), "HTTP/1.1 413 ", 13) == 0);
    assert_int_equal(handled(&H), 0);
    cf_buf_free(&out);
    stop_server(&H);
}

static void test_slow_headers_get_408(void **state)
{
    (void)state;
    struct cf_http_limits lim = {.header_timeout_ms = 400};
    start_server(&H, ONLY_PLAIN, &lim);
    int fd = tcp_connect(H.ports[0]);
    const char *req =
        "GET /hello HTTP/1.1\r\nHost: h\r\nX-Slow: 0123456789012345678901234567890\r\n\r\n";
    struct cf_buf out;
    cf_buf_init(&out);
    uint64_t t0 = mono_ms();
    for (const char *p = req; *p; p++) {
        if (!send_all(fd, p, 1))
            break;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, 50) > 0)
            break;
    }
    bool eof = read_responses(fd, &out, -1, 3000, false);
    uint64_t took = mono_ms() - t0;
    close(fd);
    assert_true(eof);
    assert_true(strncmp(bdata(&out), "HTTP/1.1 408 Request Timeout\r\n", 30) == 0);
    assert_true(took >= 380 && took < 1500);
    assert_int_equal(handled(&H), 0);
    cf_buf_free(&out);

    /* A connection that sends nothing is closed without an answer. */
    fd = tcp_connect(H.ports[0]);
    cf_buf_init(&out);
    assert_true(wait_eof(fd, 3000, &out));
    assert_int_equal(out.len, 0);
    close(fd);
    stop_server(&H);
}

static void test_body_and_idle_timeouts(void **state)
{
    (void)state;
    struct cf_http_limits lim = {.body_timeout_ms = 300, .idle_timeout_ms = 300};
    start_server(&H, ONLY_PLAIN, &lim);
    struct cf_buf out;
    cf_buf_init(&out);
    int fd = tcp_connect(H.ports[0]);
    send_str(fd, "POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\nonly a bit");
    assert_true(read_responses(fd, &out, -1, 3000, false));
    close(fd);
    assert_true(strncmp(bdata(&out), "HTTP/1.1 408 ", 13) == 0);
    assert_non_null(strstr(bdata(&out), "request body timeout"));

    cf_buf_reset(&out);
    fd = tcp_connect(H.ports[0]);
    send_str(fd, "GET /hello HTTP/1.1\r\nHost: h\r\n\r\n");
    read_responses(fd, &out, 1, 3000, false);
    assert_non_null(strstr(bdata(&out), "HTTP/1.1 200 OK"));
    uint64_t t0 = mono_ms();
    cf_buf_reset(&out);
    assert_true(wait_eof(fd, 3000, &out));
    uint64_t took = mono_ms() - t0;
    assert_int_equal(out.len, 0);
    assert_true(took >= 250 && took < 1500);
    close(fd);
    cf_buf_free(&out);
    stop_server(&H);
}

static void test_pipelined_in_order_on_the_wire(void **state)
{
    (void)state;
    start_server(&H, ONLY_PLAIN, NULL);
    int fd = tcp_connect(H.ports[0]);
    /* The first answer comes late from a timer; the others are ready at once, yet wait. */
    send_str(fd, "GET /slow?ms=200 HTTP/1.1\r\nHost: h\r\n\r\n"
                 "HEAD /hello HTTP/1.1\r\nHost: h\r\n\r\n"
                 "POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nthird"
                 "GET /hello HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
    struct cf_buf out;
    cf_buf_init(&out);
    assert_true(read_responses(fd, &out, -1, 5000, false));
    close(fd);
    const char *o = bdata(&out);
    const char *a = strstr(o, "\r\n\r\nslow\n");
    const char *b = strstr(o, "Content-Length: 6\r\nConnection: keep-alive\r\n\r\nHTTP/1.1 200");
    const char *c = strstr(o, "\r\n\r\nthird");
    const char *d = strstr(o, "Connection: close\r\n\r\nhello\n");
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(c);
    assert_non_null(d);
    assert_true(a < b && b < c && c < d);
    assert_int_equal(count(o, out.len, "HTTP/1.1 200 OK"), 4);
    cf_buf_free(&out);
    stop_server(&H);
}

static void test_async_answer_and_gone_client(void **state)
{
    (void)state;
    start_server(&H, ONLY_PLAIN, NULL);
    struct cf_buf out;
    cf_buf_init(&out);
    char *u = url(H.ports[0], false, "/slow?ms=150");
    uint64_t t0 = mono_ms();
    assert_int_equal(curl(&out, u, NULL), 0);
    assert_true(mono_ms() - t0 >= 150);
    assert_string_equal(bdata(&out), "slow\n");
    free(u);

    /* The client leaves before the answer: the request is marked gone, the answer dropped. */
    int fd = tcp_connect(H.ports[0]);
    send_str(fd, "GET /slow?ms=300 HTTP/1.1\r\nHost: h\r\n\r\n");
    wait_handled(&H, 2);
    close(fd);
    uint64_t deadline = mono_ms() + 5000;
    for (;;) {
        pthread_mutex_lock(&H.mu);
        int done = H.slow_done;
        pthread_mutex_unlock(&H.mu);
        if (done == 2 || mono_ms() > deadline)
            break;
        sleep_ms(5);
    }
    pthread_mutex_lock(&H.mu);
    assert_int_equal(H.slow_done, 2);
    assert_int_equal(H.slow_gone, 1);
    pthread_mutex_unlock(&H.mu);
    struct cf_http_stats st = stats_now(&H);
    assert_int_equal(st.open_connections, 0);
    assert_int_equal(st.responses_by_class[2], 1);

    /* A handler that answers twice: one answer on the wire, the connection still usable. */
    cf_buf_reset(&out);
    capture_logs(CF_LOG_INFO);
    u = url(H.ports[0], false, "/twice");
    char *u2 = url(H.ports[0], false, "/hello");
    assert_int_equal(curl(&out, u, u2, NULL), 0);
    assert_string_equal(bdata(&out), "once\nhello\n");
    free(u);
    free(u2);
    char *logs = logs_taken();
    assert_non_null(strstr(logs, "second answer to one request ignored"));
    free(logs);

    /* The server closes while an answer is pending: the request is gone, nothing leaks. */
    fd = tcp_connect(H.ports[0]);
    send_str(fd, "GET /slow?ms=200 HTTP/1.1\r\nHost: h\r\n\r\n");
    wait_handled(&H, 5);
    stop_server(&H);
    close(fd);
    assert_int_equal(H.slow_gone, 2);
    cf_buf_free(&out);
}

static void test_connection_cap_and_stop(void **state)
{
    (void)state;
    struct cf_http_limits lim = {.max_connections = 2};
    start_server(&H, ONLY_PLAIN, &lim);
    int port = H.ports[0];
    int a = tcp_connect(port), b = tcp_connect(port);
    send_str(a, "GET /hello HTTP/1.1\r\nHost: h\r\n\r\n");
    send_str(b, "GET /hello HTTP/1.1\r\nHost: h\r\n\r\n");
    struct cf_buf out;
    cf_buf_init(&out);
    read_responses(a, &out, 1, 3000, false);
    read_responses(b, &out, 2, 3000, false);
    assert_int_equal(count(bdata(&out), out.len, "HTTP/1.1 200 OK"), 2);

    cf_buf_reset(&out);
    int c = tcp_connect(port);
    assert_true(read_responses(c, &out, -1, 3000, false));
    close(c);
    assert_true(strncmp(bdata(&out), "HTTP/1.1 503 Service Unavailable\r\n", 34) == 0);
    assert_non_null(strstr(bdata(&out), "Connection: close"));
    assert_int_equal(stats_now(&H).responses_by_class[5], 1);

    /* Once one leaves, a new connection is served again. */
    close(b);
    sleep_ms(100);
    cf_buf_reset(&out);
    c = tcp_connect(port);
    send_str(c, "GET /hello HTTP/1.1\r\nHost: h\r\n\r\n");
    read_responses(c, &out, 1, 3000, false);
    assert_true(strncmp(bdata(&out), "HTTP/1.1 200 OK\r\n", 17) == 0);

    /* Stop accepting: a new connect is refused; the pending request is answered with
     * Connection: close; the idle keep-alive connection is closed. */
    cf_buf_reset(&out);
    send_str(a, "GET /slow?ms=200 HTTP/1.1\r\nHost: h\r\n\r\n");
    wait_handled(&H, 4);
    on_loop(&H, do_stop_accepting);
    assert_int_equal(tcp_connect(port), -1);
    assert_true(read_responses(a, &out, -1, 3000, false));
    assert_non_null(strstr(bdata(&out), "Connection: close\r\n\r\nslow\n"));
    cf_buf_reset(&out);
    assert_true(wait_eof(c, 3000, &out));
    close(a);
    close(c);
    cf_buf_free(&out);
    stop_server(&H);
}

static void test_http10_head_and_close(void **state)
{
    (void)state;
    start_server(&H, ONLY_PLAIN, NULL);
    struct cf_buf out;
    cf_buf_init(&out);
    assert_true(raw_exchange(H.ports[0], "GET /hello HTTP/1.0\r\n\r\n", &out, 3000));
    assert_true(strncmp(bdata(&out), "HTTP/1.1 200 OK\r\n", 17) == 0);
    assert_non_null(strstr(bdata(&out), "Connection: close\r\n\r\nhello\n"));

    cf_buf_reset(&out);
    int fd = tcp_connect(H.ports[0]);
    send_str(fd, "HEAD /hello HTTP/1.1\r\nHost: h\r\n\r\n");
    read_responses(fd, &out, 1, 3000, true);
    assert_non_null(strstr(bdata(&out), "Content-Length: 6\r\n"));
    assert_true(bdata(&out)[out.len - 1] == '\n' && bdata(&out)[out.len - 3] == '\n');
    send_str(fd, "GET /nope HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
    cf_buf_reset(&out);
    assert_true(read_responses(fd, &out, -1, 3000, false));
    assert_true(strncmp(bdata(&out), "HTTP/1.1 404 Not Found\r\n", 24) == 0);
    close(fd);
    cf_buf_free(&out);
    stop_server(&H);
}

static void test_no_secrets_in_logs(void **state)
{
    (void)state;
    capture_logs(CF_LOG_DEBUG);
    start_server(&H, ONLY_PLAIN, NULL);
    struct cf_buf out;
    cf_buf_init(&out);
    raw_exchange(H.ports[0],
                 "POST /echo HTTP/1.1\r\nHost: h\r\nAuthorization: Basic c2VjcmV0\r\n"
                 "Content-Length: 11\r\n\r\ns3cr3t-body"
                 "POST /echo HTTP/1.1\r\nHost: h\r\nAuthorization: Basic c2VjcmV0\r\n"
                 "Content-Length: 4\r\nContent-Length: 4\r\n\r\ns3cr",
                 &out, 3000);
    assert_int_equal(count(bdata(&out), out.len, "HTTP/1.1 "), 2);
    stop_server(&H);
    cf_buf_free(&out);
    char *logs = logs_taken();
    assert_non_null(strstr(logs, "bad request peer=127.0.0.1:"));
    assert_null(strstr(logs, "c2VjcmV0"));
    assert_null(strstr(logs, "s3cr"));
    free(logs);
}

/* ---- reloading the TLS files ---- */

/* A TLS client made with OpenSSL in this process, so that a test can hold one connection open
 * while the server reloads. Reads time out after 5 s. */
struct tls_client {
    int fd;
    SSL_CTX *ctx;
    SSL *ssl;
};

/* `resume`: a session to offer (may be NULL). */
static bool tls_client_open(struct tls_client *t, int port, const char *cert, const char *key,
                            SSL_SESSION *resume)
{
    memset(t, 0, sizeof(*t));
    t->fd = tcp_connect(port);
    if (t->fd < 0)
        return false;
    struct timeval tv = {5, 0};
    setsockopt(t->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    t->ctx = SSL_CTX_new(TLS_client_method());
    assert_non_null(t->ctx);
    assert_int_equal(SSL_CTX_load_verify_file(t->ctx, P("ca.pem")), 1);
    SSL_CTX_set_verify(t->ctx, SSL_VERIFY_PEER, NULL);
    assert_int_equal(SSL_CTX_use_certificate_file(t->ctx, cert, SSL_FILETYPE_PEM), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey_file(t->ctx, key, SSL_FILETYPE_PEM), 1);
    t->ssl = SSL_new(t->ctx);
    assert_non_null(t->ssl);
    SSL_set_fd(t->ssl, t->fd);
    if (resume)
        assert_int_equal(SSL_set_session(t->ssl, resume), 1);
    return SSL_connect(t->ssl) == 1;
}

/* One GET on the held connection; the status of its answer (body into `out`), or 0. */
static int tls_client_get(struct tls_client *t, const char *path, struct cf_buf *out)
{
    char req[256];
    int n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", path);
    if (SSL_write(t->ssl, req, n) != n)
        return 0;
    struct cf_buf b;
    cf_buf_init(&b);
    size_t len = 0;
    while ((len = response_len(bdata(&b), b.len, false)) == 0) {
        char buf[4096];
        int r = SSL_read(t->ssl, buf, sizeof(buf));
        if (r <= 0)
            break;
        cf_buf_append(&b, buf, (size_t)r);
    }
    int status = 0;
    if (len > 0 && sscanf(bdata(&b), "HTTP/1.1 %d", &status) == 1 && out) {
        const char *body = find(b.data, len, "\r\n\r\n") + 4;
        cf_buf_reset(out);
        cf_buf_append(out, body, len - (size_t)(body - b.data));
        cf_buf_putc(out, '\0');
        out->len--;
    }
    cf_buf_free(&b);
    return status;
}

static void tls_client_close(struct tls_client *t)
{
    SSL_free(t->ssl);
    SSL_CTX_free(t->ctx);
    if (t->fd >= 0)
        close(t->fd);
}

static void copy_file(const char *from, const char *to)
{
    FILE *in = fopen(from, "rb");
    assert_non_null(in);
    /* Written beside and renamed, as an operator's tools replace such files. */
    char tmp[400];
    snprintf(tmp, sizeof(tmp), "%s.tmp", to);
    FILE *out = fopen(tmp, "wb");
    assert_non_null(out);
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
        assert_int_equal(fwrite(buf, 1, n, out), n);
    fclose(in);
    assert_int_equal(fclose(out), 0);
    assert_int_equal(rename(tmp, to), 0);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

/* curl to the client-certificate listener's /whoami as `who` (who.pem, who.key): curl's exit
 * code, the answer in `out`. */
static int whoami_as(struct cf_buf *out, const char *who)
{
    char cert[64], key[64];
    snprintf(cert, sizeof(cert), "%s.pem", who);
    snprintf(key, sizeof(key), "%s.key", who);
    char cert_path[320], key_path[320];
    cf_strlcpy(cert_path, P(cert), sizeof(cert_path));
    cf_strlcpy(key_path, P(key), sizeof(key_path));
    char *u = url(H.ports[2], true, "/whoami");
    cf_buf_reset(out);
    int rc = curl(out, "--cacert", P("ca.pem"), "--cert", cert_path, "--key", key_path, u, NULL);
    free(u);
    return rc;
}

/* A refused client: curl fails, the handler sees nothing and the handshake failure is counted. */
static void assert_refused(const char *who)
{
    struct cf_buf out;
    cf_buf_init(&out);
    int before = handled(&H);
    uint64_t fails = stats_now(&H).tls_handshake_failures;
    int rc = whoami_as(&out, who);
    if (rc == 0)
        fail_msg("%s was let in: %s", who, bdata(&out));
    assert_int_equal(handled(&H), before);
    assert_int_equal(stats_now(&H).tls_handshake_failures, fails + 1);
    cf_buf_free(&out);
}

static void assert_accepted(const char *who, const char *subject)
{
    struct cf_buf out;
    cf_buf_init(&out);
    int rc = whoami_as(&out, who);
    if (rc != 0)
        fail_msg("%s was refused (curl %d): %s", who, rc, bdata(&out));
    char want[128];
    snprintf(want, sizeof(want), "%s chain=2", subject);
    assert_string_equal(bdata(&out), want);
    cf_buf_free(&out);
}

static void test_tls_reload(void **state)
{
    (void)state;
    char crl[320], key[320];
    snprintf(crl, sizeof(crl), "%s/reload-crl.pem", pki);
    snprintf(key, sizeof(key), "%s/reload-server.key", pki);
    copy_file(P("crl-none.pem"), crl);
    copy_file(P("server.key"), key);
    start_server_files(&H, WITH_TLS, NULL, key, crl);
    struct cf_buf out;
    cf_buf_init(&out);

    /* Before: nothing is revoked; "later" connects, and keeps one connection open. */
    assert_accepted("later", "CN=later-client,O=certflow");
    struct tls_client held;
    assert_true(tls_client_open(&held, H.ports[2], P("later.pem"), P("later.key"), NULL));
    assert_int_equal(tls_client_get(&held, "/whoami", &out), 200);
    assert_string_equal(bdata(&out), "CN=later-client,O=certflow chain=2");
    /* Its session resumes as long as nothing was reloaded (so the check below could fail). */
    SSL_SESSION *sess = SSL_get1_session(held.ssl);
    assert_non_null(sess);
    struct tls_client again;
    assert_true(tls_client_open(&again, H.ports[2], P("later.pem"), P("later.key"), sess));
    assert_int_equal(tls_client_get(&again, "/whoami", &out), 200);
    assert_int_equal(SSL_session_reused(again.ssl), 1);
    tls_client_close(&again);

    /* A CRL that revokes "later" from now on: new connections of it are refused, others are
     * not, and the connection it opened before the reload goes on. */
    copy_file(P("crl-later.pem"), crl);
    if (reload_now(&H) != 0)
        fail_msg("reload: %s", H.reload_err);
    assert_refused("later");
    assert_accepted("client", "CN=test-client,O=certflow");
    assert_int_equal(tls_client_get(&held, "/whoami", &out), 200);
    assert_string_equal(bdata(&out), "CN=later-client,O=certflow chain=2");
    /* Nor can it come back by resuming the session it had before the reload. */
    int before = handled(&H);
    tls_client_open(&again, H.ports[2], P("later.pem"), P("later.key"), sess);
    assert_int_equal(tls_client_get(&again, "/whoami", &out), 0);
    assert_int_equal(SSL_session_reused(again.ssl), 0);
    assert_int_equal(handled(&H), before);
    tls_client_close(&again);
    SSL_SESSION_free(sess);

    /* A broken CRL file: the reload fails naming the file, and the previous CRL stays. */
    write_file(crl, "-----BEGIN X509 CRL-----\nbm90IGEgQ1JM\n-----END X509 CRL-----\n");
    assert_int_equal(reload_now(&H), CF_EINVAL);
    if (!strstr(H.reload_err, crl) || !strstr(H.reload_err, "CRL"))
        fail_msg("the message does not name the CRL file: %s", H.reload_err);
    assert_refused("later");
    assert_accepted("client", "CN=test-client,O=certflow");

    /* A key that does not match the certificate: nothing changes either, and the message names
     * the file without quoting it. The CRL file is good again, and still not taken. */
    copy_file(P("crl-none.pem"), crl);
    copy_file(P("client.key"), key);
    assert_int_equal(reload_now(&H), CF_EINVAL);
    if (!strstr(H.reload_err, key) || !strstr(H.reload_err, "private key"))
        fail_msg("the message does not name the key file: %s", H.reload_err);
    assert_null(strstr(H.reload_err, "PRIVATE KEY"));
    struct cf_buf keytext;
    cf_buf_init(&keytext);
    char *cat[] = {"sed", "-n", "2p", key, NULL};
    assert_int_equal(run(cat, &keytext), 0);
    assert_true(keytext.len > 20);
    keytext.data[20] = '\0';
    assert_null(strstr(H.reload_err, keytext.data));
    cf_buf_free(&keytext);
    assert_refused("later");
    assert_accepted("client", "CN=test-client,O=certflow");

    /* Good files again: the reload takes the CRL that revokes nothing, so "later" is back; the
     * connection held through all of it still answers. */
    copy_file(P("server.key"), key);
    if (reload_now(&H) != 0)
        fail_msg("reload: %s", H.reload_err);
    assert_accepted("later", "CN=later-client,O=certflow");
    assert_int_equal(tls_client_get(&held, "/whoami", &out), 200);
    tls_client_close(&held);
    cf_buf_free(&out);
    stop_server(&H);
}

static void test_start_refusals(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct cf_http_server *s = NULL;
    char err[512];
    const char *hosts[] = {"0.0.0.0", "::", "192.0.2.1"};
    for (size_t i = 0; i < CF_ARRAY_LEN(hosts); i++) {
        struct cf_listener_config l = {.kind = CF_LISTEN_PLAIN, .host = hosts[i]};
        struct cf_http_server_config cfg = {.listeners = &l, .n_listeners = 1, .handler = handler};
        err[0] = '\0';
        assert_int_equal(cf_http_server_start(&loop, &cfg, &s, err, sizeof(err)), CF_EINVAL);
        assert_null(s);
        assert_non_null(strstr(err, "listener 0: plain HTTP may listen only on a loopback"));
        assert_non_null(strstr(err, hosts[i]));
    }
    struct cf_listener_config bad[] = {
        {.kind = CF_LISTEN_PLAIN, .host = "localhost:80"},
        {.kind = CF_LISTEN_TLS,
         .host = "127.0.0.1",
         .cert_file = "/nonexistent.pem",
         .key_file = "/nonexistent.key"},
        {.kind = CF_LISTEN_TLS_CLIENT,
         .host = "127.0.0.1",
         .cert_file = P("server.pem"),
         .key_file = P("server.key")},
        {.kind = CF_LISTEN_TLS,
         .host = "127.0.0.1",
         .cert_file = P("server.pem"),
         .key_file = P("client.key")},
    };
    const char *want[] = {"is not an IP address", "/nonexistent.pem", "needs ca_file",
                          "client.key"};
    for (size_t i = 0; i < CF_ARRAY_LEN(bad); i++) {
        struct cf_http_server_config cfg = {
            .listeners = &bad[i], .n_listeners = 1, .handler = handler};
        err[0] = '\0';
        assert_int_equal(cf_http_server_start(&loop, &cfg, &s, err, sizeof(err)), CF_EINVAL);
        if (!strstr(err, want[i]))
            fail_msg("case %zu: '%s' lacks '%s'", i, err, want[i]);
    }
    /* A port in use fails after a socket was opened; the loop then closes it. */
    struct cf_listener_config l = {.kind = CF_LISTEN_PLAIN, .host = "127.0.0.1"};
    struct cf_http_server_config cfg = {.listeners = &l, .n_listeners = 1, .handler = handler};
    struct cf_http_server *first = NULL;
    assert_int_equal(cf_http_server_start(&loop, &cfg, &first, err, sizeof(err)), 0);
    l.port = cf_http_listener_port(first, 0);
    assert_int_equal(cf_http_server_start(&loop, &cfg, &s, err, sizeof(err)), CF_EIO);
    assert_non_null(strstr(err, "address already in use"));
    cf_http_server_close(first);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    const struct CMUnitTest core[] = {
        cmocka_unit_test(test_core_get_keepalive),
        cmocka_unit_test(test_core_pipelined_in_order),
        cmocka_unit_test(test_core_bytewise_and_chunked),
        cmocka_unit_test(test_core_refusals),
        cmocka_unit_test(test_core_limits_at_the_edge),
        cmocka_unit_test(test_core_expect_continue),
        cmocka_unit_test(test_core_head_and_close_rules),
        cmocka_unit_test(test_core_timeouts),
        cmocka_unit_test(test_core_gone_and_twice),
        cmocka_unit_test(test_core_drain),
        cmocka_unit_test(test_core_backlog_holds_pipeline),
        cmocka_unit_test(test_core_response_headers_checked),
        cmocka_unit_test(test_core_query_and_headers),
        cmocka_unit_test(test_core_latency_histogram),
    };
    const struct CMUnitTest server[] = {
        cmocka_unit_test(test_plain_get_post_keepalive),
        cmocka_unit_test(test_tls_get_post_keepalive),
        cmocka_unit_test(test_tls_client_certificates),
        cmocka_unit_test(test_tls_versions_and_ciphers),
        cmocka_unit_test(test_smuggling_refused),
        cmocka_unit_test(test_limits_on_the_wire),
        cmocka_unit_test(test_slow_headers_get_408),
        cmocka_unit_test(test_body_and_idle_timeouts),
        cmocka_unit_test(test_pipelined_in_order_on_the_wire),
        cmocka_unit_test(test_async_answer_and_gone_client),
        cmocka_unit_test(test_connection_cap_and_stop),
        cmocka_unit_test(test_http10_head_and_close),
        cmocka_unit_test(test_no_secrets_in_logs),
        cmocka_unit_test(test_tls_reload),
        cmocka_unit_test(test_start_refusals),
    };
    int failed = cmocka_run_group_tests_name("http core", core, NULL, NULL);
    failed += cmocka_run_group_tests_name("http server", server, setup_pki, teardown_pki);
    return failed;
}
