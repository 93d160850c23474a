/*
 * The one logger of certflow. Lines go to stderr (or a sink set by the host) as
 *   2026-11-23T16:13:00.123Z info  deployed process key=pkcs10-issue version=2
 * Callers put context as key=value pairs in the message. A healthy run logs nothing above INFO.
 * Secrets never reach a log: callers pass redacted values (see cf_param redaction in plugin/).
 */
#ifndef CERTFLOW_LOG_H
#define CERTFLOW_LOG_H

#include <stdarg.h>

enum cf_log_level { CF_LOG_DEBUG = 0, CF_LOG_INFO = 1, CF_LOG_WARN = 2, CF_LOG_ERROR = 3 };

#if defined(__GNUC__)
#define CF_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define CF_PRINTF(a, b)
#endif

void cf_log(enum cf_log_level level, const char *fmt, ...) CF_PRINTF(2, 3);
void cf_logv(enum cf_log_level level, const char *fmt, va_list ap);
/* Messages below `level` are dropped. Default CF_LOG_INFO. */
void cf_log_set_level(enum cf_log_level level);
enum cf_log_level cf_log_get_level(void);
/* Parses "debug", "info", "warn", "error"; returns 0 or CF_EINVAL. */
int cf_log_parse_level(const char *text, enum cf_log_level *out);
/* Replaces the output (default: stderr). `sink` receives one complete line without newline. */
typedef void (*cf_log_sink_fn)(enum cf_log_level level, const char *line, void *arg);
void cf_log_set_sink(cf_log_sink_fn sink, void *arg);

#endif
