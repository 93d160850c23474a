/*
 * Small shared helpers for every engine folder: allocation, growable buffers, strings, time and
 * hashing. Everything above base/ may use this; base/ uses nothing of certflow but the public
 * error and log headers.
 *
 * Allocation: cf_xmalloc() and friends abort the process with a log line when memory runs out, as
 * Tor's tor_malloc() and redis' zmalloc() do. certflow keeps every promise in SQLite, so dying on
 * OOM loses nothing that was acknowledged, and it spares every caller an untestable error path.
 * Ownership: the caller owns what these functions return and frees it with free().
 */
#ifndef CF_BASE_H
#define CF_BASE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "certflow/error.h"
#include "certflow/log.h"

#define CF_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define cf_container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

void *cf_xmalloc(size_t n);
void *cf_xcalloc(size_t count, size_t n);
void *cf_xrealloc(void *p, size_t n);
char *cf_xstrdup(const char *s);
char *cf_xstrndup(const char *s, size_t n);
void *cf_xmemdup(const void *p, size_t n);
/* printf into a new string. */
char *cf_xasprintf(const char *fmt, ...) CF_PRINTF(1, 2);

/* Growable byte buffer; always NUL-terminated after data[len] so it can be used as text. */
struct cf_buf {
    char *data;
    size_t len;
    size_t cap;
};
void cf_buf_init(struct cf_buf *b);
void cf_buf_free(struct cf_buf *b);
void cf_buf_reset(struct cf_buf *b);
void cf_buf_reserve(struct cf_buf *b, size_t extra);
void cf_buf_append(struct cf_buf *b, const void *p, size_t n);
void cf_buf_puts(struct cf_buf *b, const char *s);
void cf_buf_putc(struct cf_buf *b, char c);
void cf_buf_printf(struct cf_buf *b, const char *fmt, ...) CF_PRINTF(2, 3);
/* Hands the data to the caller (never NULL) and leaves `b` empty. */
char *cf_buf_steal(struct cf_buf *b);

/* snprintf that reports truncation as CF_ELIMIT and never leaves `dst` unterminated. */
int cf_strlcpy(char *dst, const char *src, size_t dstlen);
/* Formats into an error buffer; a NULL or zero-length buffer is allowed and ignored. */
void cf_errf(char *err, size_t errlen, const char *fmt, ...) CF_PRINTF(3, 4);

/* Parses a whole decimal integer (optional sign); no trailing characters. */
int cf_parse_i64(const char *s, int64_t *out);
int cf_parse_double(const char *s, double *out);

/* Wall-clock UTC milliseconds since the epoch, and monotonic milliseconds. */
uint64_t cf_now_ms(void);
uint64_t cf_mono_ms(void);
/* "2026-11-23T16:13:00.123Z"; `out` must hold CF_TIME_ISO_LEN bytes. */
#define CF_TIME_ISO_LEN 64
void cf_time_iso(uint64_t ms, char *out);

/* Lower-case hex SHA-256 of `p`; `out` must hold 65 bytes. */
void cf_sha256_hex(const void *p, size_t n, char out[65]);

/* Reads a whole regular file of at most `max` bytes (CF_ELIMIT beyond). */
int cf_read_file(const char *path, size_t max, uint8_t **out, size_t *outlen, char *err,
                 size_t errlen);

#endif
