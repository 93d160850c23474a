/*
 * Allocation, buffers, strings, time and hashing helpers (see base.h for the contracts).
 */
#include "base/base.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

static void oom(size_t n)
{
    cf_log(CF_LOG_ERROR, "out of memory allocating %zu bytes; exiting", n);
    abort();
}

void *cf_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        oom(n);
    return p;
}

void *cf_xcalloc(size_t count, size_t n)
{
    void *p = calloc(count ? count : 1, n ? n : 1);
    if (!p)
        oom(count * n);
    return p;
}

void *cf_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        oom(n);
    return q;
}

char *cf_xstrdup(const char *s)
{
    return cf_xmemdup(s, strlen(s) + 1);
}

char *cf_xstrndup(const char *s, size_t n)
{
    size_t len = strnlen(s, n);
    char *p = cf_xmalloc(len + 1);
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

void *cf_xmemdup(const void *p, size_t n)
{
    void *q = cf_xmalloc(n);
    if (n)
        memcpy(q, p, n);
    return q;
}

char *cf_xasprintf(const char *fmt, ...)
{
    struct cf_buf b;
    va_list ap;
    cf_buf_init(&b);
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    cf_buf_reserve(&b, (size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(b.data, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b.len = (size_t)n;
    return cf_buf_steal(&b);
}

void cf_buf_init(struct cf_buf *b)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void cf_buf_free(struct cf_buf *b)
{
    free(b->data);
    cf_buf_init(b);
}

void cf_buf_reset(struct cf_buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

void cf_buf_reserve(struct cf_buf *b, size_t extra)
{
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap *= 2;
    b->data = cf_xrealloc(b->data, cap);
    b->cap = cap;
}

void cf_buf_append(struct cf_buf *b, const void *p, size_t n)
{
    cf_buf_reserve(b, n);
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void cf_buf_puts(struct cf_buf *b, const char *s)
{
    cf_buf_append(b, s, strlen(s));
}

void cf_buf_putc(struct cf_buf *b, char c)
{
    cf_buf_append(b, &c, 1);
}

void cf_buf_printf(struct cf_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n <= 0)
        return;
    cf_buf_reserve(b, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

char *cf_buf_steal(struct cf_buf *b)
{
    char *p = b->data ? b->data : cf_xstrdup("");
    cf_buf_init(b);
    return p;
}

int cf_strlcpy(char *dst, const char *src, size_t dstlen)
{
    if (!dstlen)
        return CF_ELIMIT;
    size_t n = strlen(src);
    if (n >= dstlen) {
        memcpy(dst, src, dstlen - 1);
        dst[dstlen - 1] = '\0';
        return CF_ELIMIT;
    }
    memcpy(dst, src, n + 1);
    return 0;
}

void cf_errf(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

int cf_parse_i64(const char *s, int64_t *out)
{
    if (!s || !*s)
        return CF_EINVAL;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || end == s)
        return CF_EINVAL;
    *out = (int64_t)v;
    return 0;
}

int cf_parse_double(const char *s, double *out)
{
    if (!s || !*s)
        return CF_EINVAL;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || end == s || !isfinite(v))
        return CF_EINVAL;
    *out = v;
    return 0;
}

uint64_t cf_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t cf_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void cf_time_iso(uint64_t ms, char *out)
{
    time_t secs = (time_t)(ms / 1000u);
    struct tm tm;
    gmtime_r(&secs, &tm);
    snprintf(out, CF_TIME_ISO_LEN, "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (unsigned)(ms % 1000u));
}

void cf_sha256_hex(const void *p, size_t n, char out[65])
{
    unsigned char md[32];
    unsigned int mdlen = 0;
    static const char hex[] = "0123456789abcdef";
    EVP_Digest(p, n, md, &mdlen, EVP_sha256(), NULL);
    for (unsigned i = 0; i < 32; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[64] = '\0';
}

int cf_read_file(const char *path, size_t max, uint8_t **out, size_t *outlen, char *err,
                 size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        cf_errf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return errno == ENOENT ? CF_ENOENT : CF_EIO;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        cf_errf(err, errlen, "%s: not a regular file", path);
        close(fd);
        return CF_EINVAL;
    }
    if ((uint64_t)st.st_size > max) {
        cf_errf(err, errlen, "%s: file is %lld bytes, more than the limit of %zu", path,
                (long long)st.st_size, max);
        close(fd);
        return CF_ELIMIT;
    }
    struct cf_buf b;
    cf_buf_init(&b);
    cf_buf_reserve(&b, (size_t)st.st_size);
    for (;;) {
        cf_buf_reserve(&b, 4096);
        ssize_t n = read(fd, b.data + b.len, b.cap - b.len - 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            cf_errf(err, errlen, "%s: read failed: %s", path, strerror(errno));
            close(fd);
            cf_buf_free(&b);
            return CF_EIO;
        }
        if (n == 0)
            break;
        b.len += (size_t)n;
        if (b.len > max) {
            cf_errf(err, errlen, "%s: file grew beyond the limit of %zu bytes", path, max);
            close(fd);
            cf_buf_free(&b);
            return CF_ELIMIT;
        }
    }
    close(fd);
    b.data[b.len] = '\0';
    *outlen = b.len;
    *out = (uint8_t *)cf_buf_steal(&b);
    return 0;
}
