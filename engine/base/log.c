/*
 * The logger: one line per call, timestamped in UTC, written whole with a single write so that
 * lines from several threads never interleave. Formatting of context is left to callers.
 */
#include "base/base.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

static enum cf_log_level min_level = CF_LOG_INFO;
static cf_log_sink_fn sink_fn;
static void *sink_arg;

static const char *level_names[] = {"debug", "info", "warn", "error"};

void cf_log_set_level(enum cf_log_level level)
{
    min_level = level;
}

enum cf_log_level cf_log_get_level(void)
{
    return min_level;
}

int cf_log_parse_level(const char *text, enum cf_log_level *out)
{
    for (unsigned i = 0; i < CF_ARRAY_LEN(level_names); i++) {
        if (strcmp(text, level_names[i]) == 0) {
            *out = (enum cf_log_level)i;
            return 0;
        }
    }
    return CF_EINVAL;
}

void cf_log_set_sink(cf_log_sink_fn sink, void *arg)
{
    sink_fn = sink;
    sink_arg = arg;
}

void cf_logv(enum cf_log_level level, const char *fmt, va_list ap)
{
    if (level < min_level)
        return;
    char line[4096];
    char ts[CF_TIME_ISO_LEN];
    cf_time_iso(cf_now_ms(), ts);
    int off = snprintf(line, sizeof(line), "%s %-5s ", ts, level_names[level]);
    int n = vsnprintf(line + off, sizeof(line) - (size_t)off - 1, fmt, ap);
    size_t len = (size_t)off + (n < 0 ? 0 : (size_t)n);
    if (len > sizeof(line) - 2)
        len = sizeof(line) - 2;
    if (sink_fn) {
        line[len] = '\0';
        sink_fn(level, line + 0, sink_arg);
        return;
    }
    line[len++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}

void cf_log(enum cf_log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cf_logv(level, fmt, ap);
    va_end(ap);
}
