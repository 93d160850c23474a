/*
 * ISO-8601 as BPMN timers and Camunda retry settings use it: date-times (timeDate), durations
 * (timeDuration), repeating intervals (timeCycle) and camunda:failedJobRetryTimeCycle. The parser
 * is written by hand because no C library in Debian parses ISO-8601 durations and repeating
 * intervals, and strptime()/timegm() cannot validate dates strictly or ignore the process time
 * zone.
 *
 * Time is int64_t milliseconds since 1970-01-01T00:00:00Z, UTC, proleptic Gregorian calendar;
 * signed, unlike the uint64_t of cf_now_ms(), because a timeDate may lie before 1970. Every time
 * these functions accept or produce lies in 0000-01-01T00:00:00.000Z .. 9999-12-31T23:59:59.999Z
 * (CF_ISO_MIN_MS .. CF_ISO_MAX_MS); a result outside is CF_ELIMIT.
 * Cron expressions, which Camunda also accepts in timeCycle, are the caller's business.
 *
 * Ownership: nothing here allocates. Results go into caller-owned structs, which hold no pointers
 * and may be copied freely. Input strings are only read during the call.
 * Errors: 0 on success; CF_EPARSE for malformed or out-of-range text, CF_ELIMIT for results outside
 * the supported range or too many list entries, CF_ENOENT for a cycle that has ended, CF_EINVAL
 * for a NULL string or a hand-built struct that no parser would produce. A message
 * such as "invalid duration 'PT5X' at position 4: expected a designator H, M or S, found 'X'" goes
 * into `err` (NULL or zero length allowed); positions count characters of the input as given,
 * from 1. Leading and trailing white space is ignored, because BPMN text content carries
 * indentation.
 */
#ifndef CF_ISO8601_H
#define CF_ISO8601_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CF_ISO_MIN_MS (-62167219200000LL)
#define CF_ISO_MAX_MS 253402300799999LL

/*
 * Parses a date-time as Camunda accepts it in timeDate:
 *   2026-11-23                       midnight UTC
 *   2026-11-23T16:13                 seconds optional
 *   2026-11-23T16:13:00Z
 *   2026-11-23T16:13:00.5Z           1 to 9 fractional digits, truncated to milliseconds
 *   2026-11-23T16:13:00+02:00        also +0200, +02, -05:00; -00:00 is UTC
 *   2026-11-23T16:13:00              no zone: read as UTC, never as the host's local time, so that
 *                                    a timer means the same on every node (Camunda would use the
 *                                    JVM's default zone here)
 * Fields are range-checked: month 01-12, day within the month (leap years included), hour 00-23
 * (24:00 is refused), minute and second 00-59 (leap second 60 is refused), offset at most 18:00.
 * Basic format (20261123T161300Z), week and ordinal dates, ',' as decimal sign and a space instead
 * of 'T' are refused.
 */
int cf_iso_parse_datetime(const char *s, int64_t *ms_out, char *err, size_t errlen);

/*
 * A duration P[nY][nM][nW][nD][T[nH][nM][n[.fff]S]], components as written. Only the seconds may
 * carry a fraction, of at most 3 digits, and they are kept in milliseconds: PT1.5S has ms = 1500.
 * Years and months have no fixed length; cf_iso_duration_add() applies them on the calendar.
 */
struct cf_iso_duration {
    int64_t years;
    int64_t months;
    int64_t weeks;
    int64_t days;
    int64_t hours;
    int64_t minutes;
    int64_t ms;
};

/*
 * Parses a duration, strictly: upper-case designators in the order above, each at most once, at
 * least one component ("P" and "PT" are refused), no sign (negative durations are refused),
 * components up to INT64_MAX. PT0S is a valid, zero duration.
 */
int cf_iso_parse_duration(const char *s, struct cf_iso_duration *out, char *err, size_t errlen);

/* True when every component of `d` is zero, such as PT0S or P0D. */
bool cf_iso_duration_is_zero(const struct cf_iso_duration *d);

/*
 * *out_ms = from_ms + d, as java.time's plus(Period).plus(Duration) in UTC: years and months are
 * added on the calendar together and the day is clamped to the end of the target month
 * (2025-01-31 + P1M = 2025-02-28, 2024-02-29 + P1Y = 2025-02-28); then weeks and days as 24-hour
 * days, then hours, minutes and milliseconds. CF_ELIMIT when `from_ms` or the result leaves the
 * supported range, or a component is too large to add.
 */
int cf_iso_duration_add(const struct cf_iso_duration *d, int64_t from_ms, int64_t *out_ms,
                        char *err, size_t errlen);

/* A repeating interval from timeCycle. */
struct cf_iso_cycle {
    int64_t repetitions; /* how many times the timer fires in all; -1 for "R/" (unbounded) */
    bool has_start;
    int64_t start_ms; /* first firing, when has_start */
    struct cf_iso_duration period;
};

/*
 * Parses R<n>/<duration>, R/<duration> and R<n>/<start date-time>/<duration> (R/<start>/<duration>
 * too). R0, a zero period, R<n>/<duration>/<end> and <start>/<end> are refused with a message that
 * says so.
 */
int cf_iso_parse_cycle(const char *s, struct cf_iso_cycle *out, char *err, size_t errlen);

/*
 * The first firing of `c` strictly after `after_ms`, in *next_ms.
 *
 * With a start, firing k (k = 0, 1, ...) is start + k x period, each component multiplied by k
 * and added from the start, so that a cycle started on January 31 with P1M stays on month ends
 * instead of drifting to the 28th. Missed firings are skipped by arithmetic (division, or a
 * logarithmic search for periods with years or months), never by a loop over every period.
 * CF_ENOENT when all `repetitions` firings lie at or before `after_ms`.
 *
 * Without a start, the answer is after_ms + period; such a cycle cannot know how often it fired,
 * so the caller counts firings against `repetitions` (for instance on the timer job).
 *
 * Callers pass the time the timer actually fires (now), not the due time it missed. A timer that
 * was due while the engine was down therefore fires once when the engine comes back, and the next
 * firing is the first one after now, instead of one firing per missed period.
 */
int cf_iso_cycle_next(const struct cf_iso_cycle *c, int64_t after_ms, int64_t *next_ms, char *err,
                      size_t errlen);

/*
 * camunda:failedJobRetryTimeCycle: how often a failed job is run again, and how long to wait.
 * Two forms, as Camunda 7 (ParseUtil.parseRetryIntervals, DefaultJobRetryCmd):
 *
 *   R5/PT5M          retries = 5, delays = [PT5M]
 *   PT1M,PT5M,PT10M  retries = 4, delays = [PT1M, PT5M, PT10M]; split on ',', white space around
 *                    each entry ignored, at most CF_RETRY_MAX entries
 *   PT5M             a list of one: retries = 2, delays = [PT5M]
 *
 * `retries` is the value the job's retry counter starts at, and like Camunda's counter it counts
 * the first execution: each failure takes one off, and the failure that reaches 0 raises an
 * incident instead of a retry. So R5/PT5M runs a job at most 5 times (4 retries, 5 minutes
 * apart), and a list of n delays gets n + 1 so that each delay is used once (n retries). The
 * default, when an activity sets nothing, is CF_RETRY_DEFAULT: 3 runs, as Camunda's
 * JobEntity.DEFAULT_RETRIES.
 *
 * R/ (unbounded), R0, a start date-time and an R form inside a list are refused.
 */
#define CF_RETRY_MAX 100
#define CF_RETRY_DEFAULT "R3/PT5M"

struct cf_retry_cycle {
    int retries;
    size_t n_delays;
    struct cf_iso_duration delays[CF_RETRY_MAX];
};

int cf_retry_cycle_parse(const char *s, struct cf_retry_cycle *out, char *err, size_t errlen);

/*
 * When to run a job again after its `failures`-th failed run (1 after the first). The delay is
 * delays[failures - 1], the last one for any later failure, and the first one for failures <= 0.
 * The caller decides from the job's counter whether a retry is left at all, and may compute
 * failures = retries - counter; an operator who raises the counter then makes failures <= 0 and
 * the delays start again from the first, as in Camunda (DefaultJobRetryCmd). For PT1M,PT5M,PT10M
 * (retries = 4), failing at 10:00 each time:
 *
 *   run 1 fails, counter 3, failures 1: due 10:01 (PT1M)
 *   run 2 fails, counter 2, failures 2: due 10:05 (PT5M)
 *   run 3 fails, counter 1, failures 3: due 10:10 (PT10M)
 *   run 4 fails, counter 0: no retry; the caller raises an incident and does not ask
 *
 * *due_ms = now_ms + that delay, on the calendar as cf_iso_duration_add(). CF_EINVAL for a cycle
 * without delays, CF_ELIMIT when `now_ms` or the due time leaves the supported range.
 */
int cf_retry_cycle_due(const struct cf_retry_cycle *c, int failures, int64_t now_ms,
                       int64_t *due_ms, char *err, size_t errlen);

/*
 * The same as a number of milliseconds from `now_ms`, for callers that keep a delay rather than a
 * due time. It cannot fail: a due time beyond 9999-12-31 is cut to it, and a cycle without delays
 * or a `now_ms` outside the supported range gives 0.
 */
int64_t cf_retry_cycle_delay_ms(const struct cf_retry_cycle *c, int failures, int64_t now_ms);

#endif
