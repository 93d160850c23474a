/*
 * libFuzzer target for engine/base/iso8601.c: feeds each input, as text, to the date-time,
 * duration, cycle and retry-cycle parsers, and drives whatever parses through the calendar
 * arithmetic at the edges of the supported range. Besides the sanitizers' findings it traps when
 * a result breaks a documented promise: a time outside 0000..9999, a next firing that is not
 * strictly later, a retry due before now. It is not built by CMake; build and run it with
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
 *       -D_POSIX_C_SOURCE=200809L -Iengine -Iengine/include tools/fuzz/fuzz_iso8601.c \
 *       engine/base/iso8601.c engine/base/base.c engine/base/log.c engine/base/error.c \
 *       -lcrypto -lm -o build/fuzz_iso8601
 *   mkdir -p build/fuzz_iso8601_corpus && ./build/fuzz_iso8601 -max_len=512
 * build/fuzz_iso8601_corpus
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/iso8601.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Times at which results are computed: both ends of the range, the epoch and an ordinary day. */
static const int64_t times[] = {CF_ISO_MIN_MS,     -1,           0,
                                1795450380000LL, /* 2026-11-23T16:13:00Z */
                                CF_ISO_MAX_MS - 1, CF_ISO_MAX_MS};

static void check(int ok)
{
    if (!ok)
        __builtin_trap();
}

static int in_range(int64_t ms)
{
    return ms >= CF_ISO_MIN_MS && ms <= CF_ISO_MAX_MS;
}

static void fuzz_datetime(const char *s, char *err, size_t errlen)
{
    int64_t ms;
    if (cf_iso_parse_datetime(s, &ms, err, errlen) == 0)
        check(in_range(ms));
}

static void fuzz_duration(const char *s, char *err, size_t errlen)
{
    struct cf_iso_duration d;
    if (cf_iso_parse_duration(s, &d, err, errlen) != 0)
        return;
    for (size_t i = 0; i < sizeof(times) / sizeof(times[0]); i++) {
        int64_t out;
        if (cf_iso_duration_add(&d, times[i], &out, err, errlen) == 0)
            check(in_range(out) &&
                  (out > times[i] || (out == times[i] && cf_iso_duration_is_zero(&d))));
    }
}

static void fuzz_cycle(const char *s, char *err, size_t errlen)
{
    struct cf_iso_cycle c;
    if (cf_iso_parse_cycle(s, &c, err, errlen) != 0)
        return;
    check(c.repetitions == -1 || c.repetitions >= 1);
    check(!cf_iso_duration_is_zero(&c.period));
    for (size_t i = 0; i < sizeof(times) / sizeof(times[0]); i++) {
        int64_t next, again;
        if (cf_iso_cycle_next(&c, times[i], &next, err, errlen) != 0)
            continue;
        check(in_range(next) && next > times[i]);
        if (c.has_start && times[i] < c.start_ms)
            check(next == c.start_ms);
        /* With a start, firings are fixed points in time: the one just before `next` leads to it.
         */
        if (c.has_start && cf_iso_cycle_next(&c, next - 1, &again, err, errlen) == 0)
            check(again == next);
    }
}

static void fuzz_retry(const char *s, char *err, size_t errlen)
{
    struct cf_retry_cycle r;
    if (cf_retry_cycle_parse(s, &r, err, errlen) != 0)
        return;
    check(r.retries >= 1 && r.n_delays >= 1 && r.n_delays <= CF_RETRY_MAX);
    static const int failures[] = {-1, 0, 1, 2, CF_RETRY_MAX + 1};
    for (size_t i = 0; i < sizeof(times) / sizeof(times[0]); i++) {
        for (size_t j = 0; j < sizeof(failures) / sizeof(failures[0]); j++) {
            int64_t due;
            if (cf_retry_cycle_due(&r, failures[j], times[i], &due, err, errlen) == 0)
                check(in_range(due) && due >= times[i]);
            int64_t delay = cf_retry_cycle_delay_ms(&r, failures[j], times[i]);
            check(delay >= 0 && delay <= CF_ISO_MAX_MS - times[i]);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (!s)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    /* A small buffer as well as a roomy one, so that truncated messages are exercised too. */
    char err[256] = "";
    char tiny[5] = "";
    fuzz_datetime(s, err, sizeof(err));
    fuzz_duration(s, err, sizeof(err));
    fuzz_cycle(s, tiny, sizeof(tiny));
    fuzz_retry(s, err, sizeof(err));
    check(strlen(err) < sizeof(err) && strlen(tiny) < sizeof(tiny));
    free(s);
    return 0;
}
