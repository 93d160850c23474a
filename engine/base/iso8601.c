/*
 * Hand-written ISO-8601 parsing and calendar arithmetic for BPMN timers and retry cycles (see
 * iso8601.h for the accepted forms). No C library in Debian parses ISO-8601 durations or repeating
 * intervals, and strptime()/timegm() neither validate strictly nor stay clear of the process time
 * zone, so dates are converted with the days-from-civil algorithm below and every number is read
 * digit by digit with overflow checks. Deciding when a timer is due, storing jobs and counting
 * firings is left to the job layer.
 */
#include "base/iso8601.h"

#include "base/base.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define MS_PER_SECOND 1000LL
#define MS_PER_MINUTE 60000LL
#define MS_PER_HOUR 3600000LL
#define MS_PER_DAY 86400000LL

/* Day number (days since 1970-01-01) of 9999-12-31. */
#define MAX_DAY 2932896LL
#define MAX_YEAR 9999

/* Passed as a position when a message has none, such as a range error on the whole value. */
#define NOPOS SIZE_MAX
/* Inputs are quoted in messages up to this many characters, so that a huge input cannot push the
 * explanation out of a small error buffer. */
#define QUOTE_MAX 48

struct scan {
    const char *s;    /* the whole input, quoted in messages */
    size_t pos;       /* next character to read */
    size_t end;       /* end of the part being read: the whole input, or one part of a cycle */
    const char *what; /* "date-time", "duration", "cycle" or "retry cycle" */
    char *err;
    size_t errlen;
    char found[24]; /* text of the last found() */
};

static const char *const month_names[] = {"January",   "February", "March",    "April",
                                          "May",       "June",     "July",     "August",
                                          "September", "October",  "November", "December"};

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static bool is_leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int days_in_month(int64_t y, int m)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && is_leap(y) ? 29 : days[m - 1];
}

/*
 * Days since 1970-01-01 of a proleptic Gregorian date. Years are counted from March, so that the
 * leap day is the last day of its year, and grouped in 400-year eras of 146097 days, which repeat
 * exactly; this needs no table, no loop and no time zone.
 */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;                                   /* 0 .. 399 */
    int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1; /* 0 .. 365 */
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;           /* 0 .. 146096 */
    return era * 146097 + doe - 719468;
}

/* The inverse of days_from_civil(). */
static void civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

/* Splits a time into its day number and the milliseconds into that day, rounding down. */
static void split_day(int64_t ms, int64_t *day, int64_t *ms_of_day)
{
    *day = ms / MS_PER_DAY;
    *ms_of_day = ms % MS_PER_DAY;
    if (*ms_of_day < 0) {
        *day -= 1;
        *ms_of_day += MS_PER_DAY;
    }
}

static bool in_range(int64_t ms)
{
    return ms >= CF_ISO_MIN_MS && ms <= CF_ISO_MAX_MS;
}

/* Formats a time for messages; times outside the supported range only occur as raw numbers. */
static void format_time(int64_t ms, char *out, size_t outlen)
{
    if (!in_range(ms)) {
        snprintf(out, outlen, "%lld ms", (long long)ms);
        return;
    }
    int64_t day, rem, y;
    int m, d;
    split_day(ms, &day, &rem);
    civil_from_days(day, &y, &m, &d);
    snprintf(out, outlen, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", (int)y, m, d,
             (int)(rem / MS_PER_HOUR), (int)(rem / MS_PER_MINUTE % 60),
             (int)(rem / MS_PER_SECOND % 60), (int)(rem % MS_PER_SECOND));
}

/* Formats a duration for messages, as it would be written. */
static void format_duration(const struct cf_iso_duration *d, char *out, size_t outlen)
{
    size_t n = 0;
    out[0] = '\0';
#define PUT(...)                                                                                   \
    do {                                                                                           \
        if (n < outlen) {                                                                          \
            int w = snprintf(out + n, outlen - n, __VA_ARGS__);                                    \
            n += w > 0 ? (size_t)w : 0;                                                            \
        }                                                                                          \
    } while (0)
    PUT("P");
    if (d->years)
        PUT("%lldY", (long long)d->years);
    if (d->months)
        PUT("%lldM", (long long)d->months);
    if (d->weeks)
        PUT("%lldW", (long long)d->weeks);
    if (d->days)
        PUT("%lldD", (long long)d->days);
    if (d->hours || d->minutes || d->ms || cf_iso_duration_is_zero(d))
        PUT("T");
    if (d->hours)
        PUT("%lldH", (long long)d->hours);
    if (d->minutes)
        PUT("%lldM", (long long)d->minutes);
    if (d->ms % MS_PER_SECOND)
        PUT("%lld.%03lldS", (long long)(d->ms / MS_PER_SECOND), (long long)(d->ms % MS_PER_SECOND));
    else if (d->ms || cf_iso_duration_is_zero(d))
        PUT("%lldS", (long long)(d->ms / MS_PER_SECOND));
#undef PUT
}

/* Copies the input for a message: at most QUOTE_MAX characters, control bytes shown as '?'. */
static void quote(const char *s, char *out)
{
    size_t n = 0;
    for (; s[n] && n < QUOTE_MAX; n++) {
        unsigned char c = (unsigned char)s[n];
        out[n] = c >= 0x20 && c < 0x7f ? (char)c : '?';
    }
    if (s[n])
        memcpy(out + n, "...", 4);
    else
        out[n] = '\0';
}

/*
 * Describes what stands at `pos` for a "found ..." message. Past the end of the part being read,
 * white space is skipped, so that an entry of a list that ends early reports the ',' after it and
 * a trimmed input reports its end rather than its trailing blanks.
 */
static const char *found(struct scan *sc, size_t pos)
{
    if (pos >= sc->end) {
        while (sc->s[pos] && is_space(sc->s[pos]))
            pos++;
    }
    unsigned char c = (unsigned char)sc->s[pos];
    if (!c)
        snprintf(sc->found, sizeof(sc->found), "end of input");
    else if (c >= 0x20 && c < 0x7f)
        snprintf(sc->found, sizeof(sc->found), "'%c'", c);
    else
        snprintf(sc->found, sizeof(sc->found), "byte 0x%02x", c);
    return sc->found;
}

static int fail(const struct scan *sc, size_t pos, int code, const char *fmt, ...) CF_PRINTF(4, 5);

static int fail(const struct scan *sc, size_t pos, int code, const char *fmt, ...)
{
    if (!sc->err || !sc->errlen)
        return code;
    char q[QUOTE_MAX + 4];
    char detail[256];
    va_list ap;
    quote(sc->s, q);
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    if (pos == NOPOS)
        cf_errf(sc->err, sc->errlen, "invalid %s '%s': %s", sc->what, q, detail);
    else
        cf_errf(sc->err, sc->errlen, "invalid %s '%s' at position %zu: %s", sc->what, q, pos + 1,
                detail);
    return code;
}

static void scan_init(struct scan *sc, const char *s, const char *what, char *err, size_t errlen)
{
    size_t b = 0;
    size_t e = strlen(s);
    while (b < e && is_space(s[b]))
        b++;
    while (e > b && is_space(s[e - 1]))
        e--;
    sc->s = s;
    sc->pos = b;
    sc->end = e;
    sc->what = what;
    sc->err = err;
    sc->errlen = errlen;
    sc->found[0] = '\0';
}

static bool at_end(const struct scan *sc)
{
    return sc->pos >= sc->end;
}

/* The next character, or '\0' at the end of the part being read. */
static char peek(const struct scan *sc)
{
    return sc->pos < sc->end ? sc->s[sc->pos] : '\0';
}

static int expect(struct scan *sc, char c, const char *where)
{
    if (peek(sc) == c) {
        sc->pos++;
        return 0;
    }
    return fail(sc, sc->pos, CF_EPARSE, "expected '%c' %s, found %s", c, where, found(sc, sc->pos));
}

/* Reads a run of digits as a non-negative integer; *ndigits is 0 when there is none. */
static int read_uint(struct scan *sc, int64_t *out, size_t *ndigits)
{
    size_t start = sc->pos;
    int64_t v = 0;
    while (sc->pos < sc->end && is_digit(sc->s[sc->pos])) {
        int digit = sc->s[sc->pos] - '0';
        if (v > (INT64_MAX - digit) / 10)
            return fail(sc, start, CF_EPARSE, "number too large (at most %lld)",
                        (long long)INT64_MAX);
        v = v * 10 + digit;
        sc->pos++;
    }
    *out = v;
    *ndigits = sc->pos - start;
    return 0;
}

/* Reads exactly `width` digits, as the fields of a date-time have. */
static int read_fixed(struct scan *sc, int width, const char *name, int *out)
{
    int v = 0;
    for (int i = 0; i < width; i++) {
        if (!is_digit(peek(sc)))
            return fail(sc, sc->pos, CF_EPARSE, "expected %s as %d digits, found %s", name, width,
                        found(sc, sc->pos));
        v = v * 10 + (sc->s[sc->pos++] - '0');
    }
    *out = v;
    return 0;
}

/* Reads a time zone designator (Z, +hh:mm, +hhmm, +hh) into minutes east of UTC. */
static int read_zone(struct scan *sc, int *offset_min)
{
    char c = peek(sc);
    *offset_min = 0;
    if (c == 'Z') {
        sc->pos++;
        return 0;
    }
    if (c != '+' && c != '-')
        return fail(sc, sc->pos, CF_EPARSE,
                    "expected 'Z', an offset such as +02:00, or the end, found %s",
                    found(sc, sc->pos));
    sc->pos++;
    size_t hpos = sc->pos;
    int oh, om = 0;
    int rc = read_fixed(sc, 2, "the offset hours", &oh);
    if (rc)
        return rc;
    if (peek(sc) == ':') {
        sc->pos++;
        rc = read_fixed(sc, 2, "the offset minutes", &om);
    } else if (is_digit(peek(sc))) {
        rc = read_fixed(sc, 2, "the offset minutes", &om);
    }
    if (rc)
        return rc;
    /* java.time's ZoneOffset, which Camunda uses, allows at most 18 hours either way. */
    if (om > 59)
        return fail(sc, hpos, CF_EPARSE, "offset minutes %02d are out of range 00-59", om);
    if (oh * 60 + om > 18 * 60)
        return fail(sc, hpos, CF_EPARSE, "offset %02d:%02d is beyond 18:00", oh, om);
    *offset_min = (c == '-' ? -1 : 1) * (oh * 60 + om);
    return 0;
}

/* Reads "." and 1 to `max` digits into milliseconds; digits beyond the third are dropped. */
static int read_fraction(struct scan *sc, int max, int *ms)
{
    sc->pos++; /* the '.' */
    int v = 0;
    int n = 0;
    while (is_digit(peek(sc))) {
        if (n == max)
            return fail(sc, sc->pos, CF_EPARSE, "at most %d fractional digits are allowed%s", max,
                        max == 3 ? " (milliseconds)" : "");
        if (n < 3)
            v = v * 10 + (sc->s[sc->pos] - '0');
        n++;
        sc->pos++;
    }
    if (n == 0)
        return fail(sc, sc->pos, CF_EPARSE, "expected 1 to %d digits after '.', found %s", max,
                    found(sc, sc->pos));
    for (; n < 3; n++)
        v *= 10;
    *ms = v;
    return 0;
}

static int scan_datetime(struct scan *sc, int64_t *ms_out)
{
    int y, mo, d, h = 0, mi = 0, se = 0, frac = 0, offset = 0;
    size_t p;
    int rc = read_fixed(sc, 4, "the year", &y);
    if (!rc)
        rc = expect(sc, '-', "after the year");
    if (rc)
        return rc;
    p = sc->pos;
    if ((rc = read_fixed(sc, 2, "the month", &mo)))
        return rc;
    if (mo < 1 || mo > 12)
        return fail(sc, p, CF_EPARSE, "month %02d is out of range 01-12", mo);
    if ((rc = expect(sc, '-', "after the month")))
        return rc;
    p = sc->pos;
    if ((rc = read_fixed(sc, 2, "the day", &d)))
        return rc;
    if (d < 1 || d > days_in_month(y, mo))
        return fail(sc, p, CF_EPARSE, "day %02d is out of range for %s %04d (01-%02d)", d,
                    month_names[mo - 1], y, days_in_month(y, mo));
    if (!at_end(sc)) {
        if ((rc = expect(sc, 'T', "between the date and the time")))
            return rc;
        p = sc->pos;
        if ((rc = read_fixed(sc, 2, "the hour", &h)))
            return rc;
        if (h > 23)
            return fail(sc, p, CF_EPARSE, "hour %02d is out of range 00-23", h);
        if ((rc = expect(sc, ':', "after the hour")))
            return rc;
        p = sc->pos;
        if ((rc = read_fixed(sc, 2, "the minute", &mi)))
            return rc;
        if (mi > 59)
            return fail(sc, p, CF_EPARSE, "minute %02d is out of range 00-59", mi);
        if (peek(sc) == ':') {
            sc->pos++;
            p = sc->pos;
            if ((rc = read_fixed(sc, 2, "the second", &se)))
                return rc;
            if (se > 59)
                return fail(sc, p, CF_EPARSE,
                            "second %02d is out of range 00-59 (leap seconds are not supported)",
                            se);
            if (peek(sc) == '.' && (rc = read_fraction(sc, 9, &frac)))
                return rc;
        }
        if (!at_end(sc) && (rc = read_zone(sc, &offset)))
            return rc;
        if (!at_end(sc))
            return fail(sc, sc->pos, CF_EPARSE, "expected the end after the time zone, found %s",
                        found(sc, sc->pos));
    }
    int64_t ms = days_from_civil(y, mo, d) * MS_PER_DAY + h * MS_PER_HOUR + mi * MS_PER_MINUTE +
                 se * MS_PER_SECOND + frac - offset * MS_PER_MINUTE;
    if (!in_range(ms))
        return fail(
            sc, NOPOS, CF_ELIMIT,
            "the time in UTC lies outside 0000-01-01T00:00:00Z .. 9999-12-31T23:59:59.999Z");
    *ms_out = ms;
    return 0;
}

int cf_iso_parse_datetime(const char *s, int64_t *ms_out, char *err, size_t errlen)
{
    if (!s) {
        cf_errf(err, errlen, "no date-time given");
        return CF_EINVAL;
    }
    struct scan sc;
    scan_init(&sc, s, "date-time", err, errlen);
    return scan_datetime(&sc, ms_out);
}

/* Reads the time part of a duration, after its 'T'. */
static int scan_duration_time(struct scan *sc, struct cf_iso_duration *out)
{
    static const char designators[] = "HMS";
    int next = 0; /* index in `designators` of the first one still allowed */
    bool any = false;
    while (!at_end(sc)) {
        size_t npos = sc->pos;
        int64_t v;
        size_t nd;
        int frac = -1;
        int rc = read_uint(sc, &v, &nd);
        if (rc)
            return rc;
        if (!nd)
            return fail(sc, sc->pos, CF_EPARSE, "expected a number%s, found %s",
                        any ? "" : " after 'T'", found(sc, sc->pos));
        if (peek(sc) == '.' && (rc = read_fraction(sc, 3, &frac)))
            return rc;
        char c = peek(sc);
        const char *hit = c ? strchr(designators, c) : NULL;
        if (!hit) {
            if (c && strchr("YWD", c))
                return fail(sc, sc->pos, CF_EPARSE,
                            "designator '%c' belongs to the date part, before 'T'", c);
            return fail(sc, sc->pos, CF_EPARSE, "expected a designator H, M or S, found %s",
                        found(sc, sc->pos));
        }
        int idx = (int)(hit - designators);
        if (frac >= 0 && c != 'S')
            return fail(sc, sc->pos, CF_EPARSE,
                        "a fraction is only allowed on seconds, as in PT0.5S, found '%c'", c);
        if (idx < next)
            return fail(sc, sc->pos, CF_EPARSE,
                        "designator '%c' is repeated or out of order; the order is H, M, S", c);
        if (c == 'H') {
            out->hours = v;
        } else if (c == 'M') {
            out->minutes = v;
        } else {
            int64_t f = frac > 0 ? frac : 0;
            if (v > (INT64_MAX - f) / MS_PER_SECOND)
                return fail(sc, npos, CF_EPARSE, "seconds %lld are too many to count in ms",
                            (long long)v);
            out->ms = v * MS_PER_SECOND + f;
        }
        next = idx + 1;
        any = true;
        sc->pos++;
    }
    if (!any)
        return fail(sc, sc->pos, CF_EPARSE, "expected a number after 'T', found %s",
                    found(sc, sc->pos));
    return 0;
}

static int scan_duration(struct scan *sc, struct cf_iso_duration *out)
{
    static const char designators[] = "YMWD";
    int64_t *fields[] = {&out->years, &out->months, &out->weeks, &out->days};
    memset(out, 0, sizeof(*out));
    if (peek(sc) == '-')
        return fail(sc, sc->pos, CF_EPARSE, "negative durations are not allowed");
    int rc = expect(sc, 'P', "to start a duration");
    if (rc)
        return rc;
    int next = 0;
    bool any = false;
    while (!at_end(sc) && peek(sc) != 'T') {
        int64_t v;
        size_t nd;
        if ((rc = read_uint(sc, &v, &nd)))
            return rc;
        if (!nd)
            return fail(sc, sc->pos, CF_EPARSE, "expected a number or 'T'%s, found %s",
                        any ? "" : " after 'P'", found(sc, sc->pos));
        char c = peek(sc);
        if (c == '.' || c == ',')
            return fail(sc, sc->pos, CF_EPARSE,
                        "a fraction is only allowed on seconds, as in PT0.5S");
        const char *hit = c ? strchr(designators, c) : NULL;
        if (!hit) {
            if (c == 'H' || c == 'S')
                return fail(sc, sc->pos, CF_EPARSE,
                            "designator '%c' belongs to the time part: write 'T' before it, as in "
                            "PT5%c",
                            c, c);
            return fail(sc, sc->pos, CF_EPARSE, "expected a designator Y, M, W or D, found %s",
                        found(sc, sc->pos));
        }
        int idx = (int)(hit - designators);
        if (idx < next)
            return fail(sc, sc->pos, CF_EPARSE,
                        "designator '%c' is repeated or out of order; the order is Y, M, W, D", c);
        *fields[idx] = v;
        next = idx + 1;
        any = true;
        sc->pos++;
    }
    if (!at_end(sc)) {
        sc->pos++; /* the 'T' */
        return scan_duration_time(sc, out);
    }
    if (!any)
        return fail(sc, sc->pos, CF_EPARSE,
                    "expected at least one component, as in P1D or PT5M, found %s",
                    found(sc, sc->pos));
    return 0;
}

int cf_iso_parse_duration(const char *s, struct cf_iso_duration *out, char *err, size_t errlen)
{
    if (!s) {
        cf_errf(err, errlen, "no duration given");
        return CF_EINVAL;
    }
    struct scan sc;
    scan_init(&sc, s, "duration", err, errlen);
    return scan_duration(&sc, out);
}

bool cf_iso_duration_is_zero(const struct cf_iso_duration *d)
{
    return !d->years && !d->months && !d->weeks && !d->days && !d->hours && !d->minutes && !d->ms;
}

static bool has_negative(const struct cf_iso_duration *d)
{
    return d->years < 0 || d->months < 0 || d->weeks < 0 || d->days < 0 || d->hours < 0 ||
           d->minutes < 0 || d->ms < 0;
}

static int too_far(const struct cf_iso_duration *d, int64_t from_ms, char *err, size_t errlen)
{
    char dt[160], ft[40];
    format_duration(d, dt, sizeof(dt));
    format_time(from_ms, ft, sizeof(ft));
    cf_errf(err, errlen, "%s + %s lies beyond 9999-12-31T23:59:59.999Z", ft, dt);
    return CF_ELIMIT;
}

/*
 * The checked additions below cannot overflow for values that pass the range checks between
 * them, but components come from user text and may be as large as INT64_MAX, so each step that
 * multiplies or adds one is checked with the compiler's overflow builtins.
 */
int cf_iso_duration_add(const struct cf_iso_duration *d, int64_t from_ms, int64_t *out_ms,
                        char *err, size_t errlen)
{
    if (!in_range(from_ms)) {
        char ft[40];
        format_time(from_ms, ft, sizeof(ft));
        cf_errf(err, errlen, "time %s lies outside 0000-01-01 .. 9999-12-31", ft);
        return CF_ELIMIT;
    }
    if (has_negative(d)) {
        cf_errf(err, errlen, "a duration with negative components cannot be added");
        return CF_EINVAL;
    }
    int64_t day, ms_of_day, y;
    int m, dd;
    split_day(from_ms, &day, &ms_of_day);
    if (d->years || d->months) {
        /* Years and months together as one count of months, as java.time's Period.addTo(). */
        int64_t months;
        if (__builtin_mul_overflow(d->years, 12, &months) ||
            __builtin_add_overflow(months, d->months, &months))
            return too_far(d, from_ms, err, errlen);
        civil_from_days(day, &y, &m, &dd);
        int64_t index = y * 12 + (m - 1);
        if (months > (int64_t)MAX_YEAR * 12 + 11 - index)
            return too_far(d, from_ms, err, errlen);
        index += months;
        y = index / 12;
        m = (int)(index % 12) + 1;
        if (dd > days_in_month(y, m))
            dd = days_in_month(y, m);
        day = days_from_civil(y, m, dd);
    }
    int64_t add_days, ms, part;
    if (__builtin_mul_overflow(d->weeks, 7, &add_days) ||
        __builtin_add_overflow(add_days, d->days, &add_days) || add_days > MAX_DAY - day)
        return too_far(d, from_ms, err, errlen);
    ms = (day + add_days) * MS_PER_DAY + ms_of_day;
    if (__builtin_mul_overflow(d->hours, MS_PER_HOUR, &part) ||
        __builtin_add_overflow(ms, part, &ms) ||
        __builtin_mul_overflow(d->minutes, MS_PER_MINUTE, &part) ||
        __builtin_add_overflow(ms, part, &ms) || __builtin_add_overflow(ms, d->ms, &ms) ||
        ms > CF_ISO_MAX_MS)
        return too_far(d, from_ms, err, errlen);
    *out_ms = ms;
    return 0;
}

/* Reads a cycle. Retry cycles allow a zero period (retry at once); timer cycles do not. */
static int scan_cycle(struct scan *sc, struct cf_iso_cycle *out, bool allow_zero)
{
    memset(out, 0, sizeof(*out));
    if (peek(sc) != 'R')
        return fail(sc, sc->pos, CF_EPARSE,
                    "expected 'R' to start a repeating interval, as in R3/PT10M, found %s",
                    found(sc, sc->pos));
    sc->pos++;
    size_t npos = sc->pos;
    int64_t n;
    size_t nd;
    int rc = read_uint(sc, &n, &nd);
    if (rc)
        return rc;
    if (nd && n == 0)
        return fail(sc, npos, CF_EPARSE, "the repetition count must be at least 1");
    out->repetitions = nd ? n : -1;
    if ((rc = expect(sc, '/', nd ? "after the repetition count" : "after 'R'")))
        return rc;

    size_t whole_end = sc->end;
    const char *slash = memchr(sc->s + sc->pos, '/', sc->end - sc->pos);
    if (slash) {
        size_t q = (size_t)(slash - sc->s);
        const char *extra = memchr(slash + 1, '/', sc->end - q - 1);
        if (extra)
            return fail(sc, (size_t)(extra - sc->s), CF_EPARSE,
                        "a cycle has at most the parts R<n>/<start>/<duration>");
        if (peek(sc) == 'P')
            return fail(sc, q, CF_EPARSE,
                        "the form R<n>/<duration>/<end> is not supported; write "
                        "R<n>/<start>/<duration>");
        sc->end = q;
        rc = scan_datetime(sc, &out->start_ms);
        sc->end = whole_end;
        if (rc)
            return rc;
        out->has_start = true;
        sc->pos = q + 1;
        if (peek(sc) != 'P')
            return fail(sc, sc->pos, CF_EPARSE,
                        "expected a duration after the start, found %s (start/end intervals are "
                        "not supported)",
                        found(sc, sc->pos));
    } else if (is_digit(peek(sc))) {
        return fail(sc, sc->pos, CF_EPARSE,
                    "a start date-time must be followed by '/' and a duration, as in "
                    "R3/2026-11-23T16:13:00Z/PT10M");
    }
    size_t ppos = sc->pos;
    if ((rc = scan_duration(sc, &out->period)))
        return rc;
    if (!allow_zero && cf_iso_duration_is_zero(&out->period))
        return fail(sc, ppos, CF_EPARSE, "the period of a cycle must be longer than zero");
    return 0;
}

int cf_iso_parse_cycle(const char *s, struct cf_iso_cycle *out, char *err, size_t errlen)
{
    if (!s) {
        cf_errf(err, errlen, "no cycle given");
        return CF_EINVAL;
    }
    struct scan sc;
    scan_init(&sc, s, "cycle", err, errlen);
    return scan_cycle(&sc, out, false);
}

/* Firing k of a cycle with a start: start + k x period. */
static int firing(const struct cf_iso_cycle *c, int64_t k, int64_t *ms, char *err, size_t errlen)
{
    const struct cf_iso_duration *p = &c->period;
    struct cf_iso_duration kp;
    if (__builtin_mul_overflow(p->years, k, &kp.years) ||
        __builtin_mul_overflow(p->months, k, &kp.months) ||
        __builtin_mul_overflow(p->weeks, k, &kp.weeks) ||
        __builtin_mul_overflow(p->days, k, &kp.days) ||
        __builtin_mul_overflow(p->hours, k, &kp.hours) ||
        __builtin_mul_overflow(p->minutes, k, &kp.minutes) ||
        __builtin_mul_overflow(p->ms, k, &kp.ms)) {
        char ft[40];
        format_time(c->start_ms, ft, sizeof(ft));
        cf_errf(err, errlen, "firing %lld of the cycle from %s lies beyond 9999-12-31",
                (long long)k, ft);
        return CF_ELIMIT;
    }
    return cf_iso_duration_add(&kp, c->start_ms, ms, err, errlen);
}

/* Whether firing k lies at or before `after_ms`; a firing beyond the supported range does not. */
static bool firing_le(const struct cf_iso_cycle *c, int64_t k, int64_t after_ms)
{
    int64_t ms;
    return firing(c, k, &ms, NULL, 0) == 0 && ms <= after_ms;
}

int cf_iso_cycle_next(const struct cf_iso_cycle *c, int64_t after_ms, int64_t *next_ms, char *err,
                      size_t errlen)
{
    if (cf_iso_duration_is_zero(&c->period) || has_negative(&c->period) || c->repetitions == 0 ||
        c->repetitions < -1 || (c->has_start && !in_range(c->start_ms))) {
        cf_errf(err, errlen, "not a valid cycle: zero or negative period, count or start");
        return CF_EINVAL;
    }
    if (!in_range(after_ms)) {
        char at[40];
        format_time(after_ms, at, sizeof(at));
        cf_errf(err, errlen, "time %s lies outside 0000-01-01 .. 9999-12-31", at);
        return CF_ELIMIT;
    }
    if (!c->has_start)
        return cf_iso_duration_add(&c->period, after_ms, next_ms, err, errlen);
    if (after_ms < c->start_ms) {
        *next_ms = c->start_ms;
        return 0;
    }

    /* The smallest k >= 1 whose firing lies after `after_ms`; firing 0 (the start) does not. */
    int64_t k;
    const struct cf_iso_duration *p = &c->period;
    if (!p->years && !p->months) {
        int64_t len, part;
        if (__builtin_mul_overflow(p->weeks, 7 * MS_PER_DAY, &len) ||
            __builtin_mul_overflow(p->days, MS_PER_DAY, &part) ||
            __builtin_add_overflow(len, part, &len) ||
            __builtin_mul_overflow(p->hours, MS_PER_HOUR, &part) ||
            __builtin_add_overflow(len, part, &len) ||
            __builtin_mul_overflow(p->minutes, MS_PER_MINUTE, &part) ||
            __builtin_add_overflow(len, part, &len) || __builtin_add_overflow(len, p->ms, &len))
            k = 1; /* one period already leaves the range; firing() below reports it */
        else
            k = (after_ms - c->start_ms) / len + 1;
    } else {
        /*
         * Months differ in length, so there is no exact division, but firings grow with k: double
         * k until a firing passes `after_ms`, then bisect. A period of at least one month leaves
         * year 9999 after at most 120000 firings, so this takes a few dozen evaluations.
         */
        int64_t lo = 0, hi = 1;
        while (firing_le(c, hi, after_ms)) {
            lo = hi;
            hi *= 2;
        }
        while (hi - lo > 1) {
            int64_t mid = lo + (hi - lo) / 2;
            if (firing_le(c, mid, after_ms))
                lo = mid;
            else
                hi = mid;
        }
        k = hi;
    }
    if (c->repetitions >= 0 && k >= c->repetitions) {
        char at[40];
        format_time(after_ms, at, sizeof(at));
        cf_errf(err, errlen, "the cycle has ended: all its %lld firings lie at or before %s",
                (long long)c->repetitions, at);
        return CF_ENOENT;
    }
    return firing(c, k, next_ms, err, errlen);
}

int cf_retry_cycle_parse(const char *s, struct cf_retry_cycle *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    if (!s) {
        cf_errf(err, errlen, "no retry cycle given");
        return CF_EINVAL;
    }
    struct scan sc;
    int rc;
    scan_init(&sc, s, "retry cycle", err, errlen);
    if (at_end(&sc))
        return fail(&sc, sc.pos, CF_EPARSE,
                    "expected R<n>/<duration> or a list of durations, found end of input");
    size_t whole_end = sc.end;
    bool is_list = memchr(s + sc.pos, ',', sc.end - sc.pos) != NULL;

    if (!is_list && peek(&sc) == 'R') {
        struct cf_iso_cycle c;
        size_t rpos = sc.pos;
        if ((rc = scan_cycle(&sc, &c, true)))
            return rc;
        if (c.repetitions < 0)
            return fail(&sc, rpos, CF_EPARSE,
                        "unbounded retries (R/) are not allowed; give a count, as in R5/PT5M");
        if (c.has_start)
            return fail(&sc, rpos + 1, CF_EPARSE,
                        "a retry cycle has no start date-time; write R<n>/<duration>");
        if (c.repetitions > INT_MAX)
            return fail(&sc, rpos + 1, CF_ELIMIT, "retry count %lld is too large (at most %d)",
                        (long long)c.repetitions, INT_MAX);
        out->retries = (int)c.repetitions;
        out->n_delays = 1;
        out->delays[0] = c.period;
        return 0;
    }

    /* A list, as Camunda splits it on ','; one plain duration is a list of one. */
    size_t b = sc.pos;
    for (;;) {
        const char *comma = memchr(s + b, ',', whole_end - b);
        size_t e = comma ? (size_t)(comma - s) : whole_end;
        size_t next = e + 1;
        while (b < e && is_space(s[b]))
            b++;
        while (e > b && is_space(s[e - 1]))
            e--;
        if (b == e)
            return fail(&sc, b, CF_EPARSE, "expected a duration in the list, found %s",
                        found(&sc, b));
        if (out->n_delays == CF_RETRY_MAX)
            return fail(&sc, b, CF_ELIMIT, "a list has at most %d delays", CF_RETRY_MAX);
        if (s[b] == 'R')
            return fail(&sc, b, CF_EPARSE,
                        "a repeating interval cannot be part of a list; write R<n>/<duration> "
                        "alone, or list plain durations");
        sc.pos = b;
        sc.end = e;
        if ((rc = scan_duration(&sc, &out->delays[out->n_delays])))
            return rc;
        out->n_delays++;
        if (!comma)
            break;
        b = next;
    }
    out->retries = (int)out->n_delays + 1;
    return 0;
}

int cf_retry_cycle_due(const struct cf_retry_cycle *c, int failures, int64_t now_ms,
                       int64_t *due_ms, char *err, size_t errlen)
{
    if (c->n_delays == 0 || c->n_delays > CF_RETRY_MAX) {
        cf_errf(err, errlen, "retry cycle has %zu delays (expected 1 to %d)", c->n_delays,
                CF_RETRY_MAX);
        return CF_EINVAL;
    }
    size_t idx = failures <= 1 ? 0 : (size_t)failures - 1;
    if (idx >= c->n_delays)
        idx = c->n_delays - 1;
    return cf_iso_duration_add(&c->delays[idx], now_ms, due_ms, err, errlen);
}

int64_t cf_retry_cycle_delay_ms(const struct cf_retry_cycle *c, int failures, int64_t now_ms)
{
    int64_t due;
    int rc = cf_retry_cycle_due(c, failures, now_ms, &due, NULL, 0);
    if (rc == CF_ELIMIT && in_range(now_ms))
        return CF_ISO_MAX_MS - now_ms;
    return rc ? 0 : due - now_ms;
}
