/*
 * multipart/form-data parsing (see multipart.h). The body is scanned once: the first delimiter
 * must open it, each part's headers are read line by line up to the empty line, and its data
 * runs to the next CRLF "--" boundary. Only the headers are copied; data stays in the body.
 *
 * Quoted strings in Content-Disposition take no backslash escapes. Browsers (the WHATWG form
 * encoding, which Camunda Modeler uses through Chromium) and curl since 7.81 percent-encode '"',
 * CR and LF in names instead and send '\' as it is, so reading "\" as an escape would corrupt
 * Windows-style file names while protecting nothing.
 */
#include "api/multipart.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"

#define DEFAULT_MAX_PARTS 64
#define DEFAULT_MAX_PART_BYTES (4u * 1024u * 1024u)
#define DEFAULT_MAX_HEADER_BYTES 4096
#define MAX_HEADERS_PER_PART 16

static int lower(int c)
{
    return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c;
}

static bool ieq(const char *a, size_t alen, const char *b)
{
    size_t blen = strlen(b);
    if (alen != blen)
        return false;
    for (size_t i = 0; i < alen; i++)
        if (lower((unsigned char)a[i]) != lower((unsigned char)b[i]))
            return false;
    return true;
}

/* RFC 9110 tchar: the characters of a token. */
static bool is_tchar(int c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return true;
    return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* RFC 2046 bchars, the characters a boundary may hold (space only inside). */
static bool is_bchar(int c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return true;
    return c && strchr("'()+_,-./:=? ", c) != NULL;
}

static bool is_ows(int c)
{
    return c == ' ' || c == '\t';
}

/* A parameter list cursor over "; name=value; name="value"" (after the first item). */
struct params {
    const char *p;
    const char *end;
};

/* Reads the next parameter. Returns 1 with name/value set, 0 at the end, or CF_EPARSE. The
 * value is a new string (quotes removed). */
static int next_param(struct params *ps, const char **name, size_t *name_len, char **value,
                      char *err, size_t errlen, const char *what)
{
    const char *p = ps->p, *end = ps->end;
    while (p < end && is_ows((unsigned char)*p))
        p++;
    if (p == end)
        return 0;
    if (*p != ';') {
        cf_errf(err, errlen, "%s: expected ';' before a parameter", what);
        return CF_EPARSE;
    }
    p++;
    while (p < end && is_ows((unsigned char)*p))
        p++;
    const char *n = p;
    while (p < end && is_tchar((unsigned char)*p))
        p++;
    if (p == n || p == end || *p != '=') {
        cf_errf(err, errlen, "%s: a parameter needs the form name=value", what);
        return CF_EPARSE;
    }
    *name = n;
    *name_len = (size_t)(p - n);
    p++;
    if (p < end && *p == '"') {
        const char *v = ++p;
        while (p < end && *p != '"')
            p++;
        if (p == end) {
            cf_errf(err, errlen, "%s: unterminated quoted string in parameter '%.*s'", what,
                    (int)*name_len, n);
            return CF_EPARSE;
        }
        *value = cf_xstrndup(v, (size_t)(p - v));
        p++;
    } else {
        const char *v = p;
        while (p < end && is_tchar((unsigned char)*p))
            p++;
        if (p == v) {
            cf_errf(err, errlen, "%s: parameter '%.*s' has no value", what, (int)*name_len, n);
            return CF_EPARSE;
        }
        *value = cf_xstrndup(v, (size_t)(p - v));
    }
    ps->p = p;
    return 1;
}

int cf_multipart_boundary(const char *content_type, char *out, char *err, size_t errlen)
{
    out[0] = '\0';
    if (!content_type) {
        cf_errf(err, errlen, "Content-Type is missing; expected multipart/form-data");
        return CF_EINVAL;
    }
    const char *end = content_type + strlen(content_type);
    const char *semi = strchr(content_type, ';');
    const char *type_end = semi ? semi : end;
    const char *t = content_type;
    while (t < type_end && is_ows((unsigned char)*t))
        t++;
    const char *te = type_end;
    while (te > t && is_ows((unsigned char)te[-1]))
        te--;
    if (!ieq(t, (size_t)(te - t), "multipart/form-data")) {
        cf_errf(err, errlen, "Content-Type must be multipart/form-data, not '%.*s'",
                (int)(te - t > 100 ? 100 : te - t), t);
        return CF_EINVAL;
    }
    struct params ps = {type_end, end};
    bool found = false;
    for (;;) {
        const char *name;
        size_t name_len;
        char *value = NULL;
        int rc = next_param(&ps, &name, &name_len, &value, err, errlen, "Content-Type");
        if (rc < 0)
            return rc;
        if (rc == 0)
            break;
        if (ieq(name, name_len, "boundary")) {
            size_t vlen = strlen(value);
            bool ok =
                !found && vlen >= 1 && vlen <= CF_MULTIPART_MAX_BOUNDARY && value[vlen - 1] != ' ';
            for (size_t i = 0; ok && i < vlen; i++)
                ok = is_bchar((unsigned char)value[i]);
            if (!ok) {
                cf_errf(err, errlen,
                        found ? "Content-Type has more than one boundary"
                              : "the multipart boundary must be 1 to 70 characters of letters, "
                                "digits and '()+_,-./:=? (not ending in a space)");
                free(value);
                return CF_EPARSE;
            }
            memcpy(out, value, vlen + 1);
            found = true;
        }
        free(value);
    }
    if (!found) {
        cf_errf(err, errlen, "Content-Type multipart/form-data has no boundary parameter");
        return CF_EPARSE;
    }
    return 0;
}

void cf_multipart_free(struct cf_multipart *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n_parts; i++) {
        free(m->parts[i].name);
        free(m->parts[i].filename);
        free(m->parts[i].content_type);
    }
    free(m->parts);
    m->parts = NULL;
    m->n_parts = 0;
}

const struct cf_multipart_part *cf_multipart_find(const struct cf_multipart *m, const char *name,
                                                  size_t *count)
{
    const struct cf_multipart_part *first = NULL;
    size_t n = 0;
    for (size_t i = 0; i < m->n_parts; i++) {
        if (strcmp(m->parts[i].name, name) == 0) {
            if (!first)
                first = &m->parts[i];
            n++;
        }
    }
    if (count)
        *count = n;
    return first;
}

/* Finds "\r\n--<boundary>" in [p, end). A boundary holds no CR, so a partial match can never
 * hide the start of a real one, and the scan stays linear. */
static const uint8_t *find_delimiter(const uint8_t *p, const uint8_t *end, const char *boundary,
                                     size_t blen)
{
    size_t need = 4 + blen;
    while ((size_t)(end - p) >= need) {
        const uint8_t *cr = memchr(p, '\r', (size_t)(end - p) - need + 1);
        if (!cr)
            return NULL;
        if (cr[1] == '\n' && cr[2] == '-' && cr[3] == '-' && memcmp(cr + 4, boundary, blen) == 0)
            return cr;
        p = cr + 1;
    }
    return NULL;
}

/* Describes part `index` for messages: its name when known. */
static void part_label(char *out, size_t outlen, size_t index, const char *name)
{
    if (name)
        snprintf(out, outlen, "part %zu (\"%.64s\")", index + 1, name);
    else
        snprintf(out, outlen, "part %zu", index + 1);
}

/* Parses Content-Disposition: form-data; name="..."; filename="...". */
static int parse_disposition(const char *v, size_t vlen, struct cf_multipart_part *part,
                             const char *label, char *err, size_t errlen)
{
    const char *end = v + vlen;
    const char *semi = memchr(v, ';', vlen);
    const char *te = semi ? semi : end;
    while (te > v && is_ows((unsigned char)te[-1]))
        te--;
    if (!ieq(v, (size_t)(te - v), "form-data")) {
        cf_errf(err, errlen, "%s: Content-Disposition must be form-data", label);
        return CF_EPARSE;
    }
    struct params ps = {semi ? semi : end, end};
    char what[128];
    snprintf(what, sizeof(what), "%s: Content-Disposition", label);
    for (;;) {
        const char *name;
        size_t name_len;
        char *value = NULL;
        int rc = next_param(&ps, &name, &name_len, &value, err, errlen, what);
        if (rc < 0)
            return rc;
        if (rc == 0)
            break;
        char **slot = NULL;
        if (ieq(name, name_len, "name"))
            slot = &part->name;
        else if (ieq(name, name_len, "filename"))
            slot = &part->filename;
        else if (ieq(name, name_len, "filename*")) {
            /* RFC 7578 §4.2: senders must not use it; honouring it would let two names
             * disagree about which resource this is. */
            cf_errf(err, errlen, "%s: filename* is not accepted (RFC 7578 §4.2)", what);
            free(value);
            return CF_EPARSE;
        }
        if (!slot) {
            free(value);
            continue;
        }
        if (*slot) {
            cf_errf(err, errlen, "%s: parameter '%.*s' is given twice", what, (int)name_len, name);
            free(value);
            return CF_EPARSE;
        }
        *slot = value;
    }
    if (!part->name || !part->name[0]) {
        cf_errf(err, errlen, "%s: Content-Disposition has no name", label);
        return CF_EPARSE;
    }
    return 0;
}

/* Reads the headers of one part from *pos up to and including the empty line. */
static int parse_part_headers(const uint8_t *body, size_t len, size_t *pos,
                              const struct cf_multipart_limits *lim, size_t index,
                              struct cf_multipart_part *part, char *err, size_t errlen)
{
    size_t start = *pos, p = *pos;
    size_t n_headers = 0;
    bool have_cd = false, have_ct = false, have_cte = false;
    char label[96];
    for (;;) {
        part_label(label, sizeof(label), index, part->name);
        /* Find the end of this line; a bare CR or LF is refused, since a header value that
         * smuggles a line break is how header injection hides a second header. */
        size_t q = p;
        while (q < len && body[q] != '\r' && body[q] != '\n') {
            if (q - start >= lim->max_header_bytes) {
                cf_errf(err, errlen, "%s: headers are longer than %zu bytes", label,
                        lim->max_header_bytes);
                return CF_ELIMIT;
            }
            q++;
        }
        if (q >= len || q + 1 >= len) {
            cf_errf(err, errlen, "%s: the body ends inside the part headers", label);
            return CF_EPARSE;
        }
        if (body[q] != '\r' || body[q + 1] != '\n') {
            cf_errf(err, errlen, "%s: header lines must end in CRLF (bare CR or LF found)", label);
            return CF_EPARSE;
        }
        if (q == p) {
            p = q + 2;
            break;
        }
        if (q + 2 - start > lim->max_header_bytes) {
            cf_errf(err, errlen, "%s: headers are longer than %zu bytes", label,
                    lim->max_header_bytes);
            return CF_ELIMIT;
        }
        if (++n_headers > MAX_HEADERS_PER_PART) {
            cf_errf(err, errlen, "%s: more than %d headers", label, MAX_HEADERS_PER_PART);
            return CF_ELIMIT;
        }
        const char *line = (const char *)body + p;
        size_t line_len = q - p;
        if (is_ows((unsigned char)line[0])) {
            cf_errf(err, errlen, "%s: folded header lines are not accepted", label);
            return CF_EPARSE;
        }
        size_t c = 0;
        while (c < line_len && is_tchar((unsigned char)line[c]))
            c++;
        if (c == 0 || c == line_len || line[c] != ':') {
            cf_errf(err, errlen, "%s: malformed header line (expected Name: value)", label);
            return CF_EPARSE;
        }
        for (size_t k = c + 1; k < line_len; k++) {
            unsigned char ch = (unsigned char)line[k];
            if ((ch < 0x20 && ch != '\t') || ch == 0x7f) {
                cf_errf(err, errlen, "%s: control character in header '%.*s'", label, (int)c, line);
                return CF_EPARSE;
            }
        }
        const char *v = line + c + 1, *ve = line + line_len;
        while (v < ve && is_ows((unsigned char)*v))
            v++;
        while (ve > v && is_ows((unsigned char)ve[-1]))
            ve--;
        if (ieq(line, c, "Content-Disposition")) {
            if (have_cd) {
                cf_errf(err, errlen, "%s: Content-Disposition is given twice", label);
                return CF_EPARSE;
            }
            have_cd = true;
            int rc = parse_disposition(v, (size_t)(ve - v), part, label, err, errlen);
            if (rc)
                return rc;
        } else if (ieq(line, c, "Content-Type")) {
            if (have_ct) {
                cf_errf(err, errlen, "%s: Content-Type is given twice", label);
                return CF_EPARSE;
            }
            have_ct = true;
            part->content_type = cf_xstrndup(v, (size_t)(ve - v));
        } else if (ieq(line, c, "Content-Transfer-Encoding")) {
            /* Deprecated by RFC 7578; identity encodings are harmless, anything else would
             * have to be decoded, and no form client sends it. */
            size_t vl = (size_t)(ve - v);
            if (have_cte || !(ieq(v, vl, "binary") || ieq(v, vl, "8bit") || ieq(v, vl, "7bit"))) {
                cf_errf(err, errlen, "%s: Content-Transfer-Encoding '%.*s' is not accepted", label,
                        (int)(vl > 32 ? 32 : vl), v);
                return CF_EPARSE;
            }
            have_cte = true;
        }
        p = q + 2;
    }
    if (!have_cd) {
        part_label(label, sizeof(label), index, NULL);
        cf_errf(err, errlen, "%s: Content-Disposition is missing", label);
        return CF_EPARSE;
    }
    *pos = p;
    return 0;
}

/* After a delimiter: "--" closes the body, otherwise optional padding and CRLF open a part.
 * Returns 1 for close, 0 for a part, or CF_EPARSE. */
static int after_delimiter(const uint8_t *body, size_t len, size_t *pos, char *err, size_t errlen)
{
    size_t p = *pos;
    if (p + 1 < len && body[p] == '-' && body[p + 1] == '-') {
        p += 2;
        /* Only line ends and white space may follow the close delimiter: anything else is a
         * sign that sender and receiver disagree about where the body ends. */
        for (; p < len; p++) {
            if (body[p] != '\r' && body[p] != '\n' && !is_ows(body[p])) {
                cf_errf(err, errlen, "data after the closing boundary");
                return CF_EPARSE;
            }
        }
        *pos = p;
        return 1;
    }
    while (p < len && is_ows(body[p]))
        p++;
    if (p + 1 >= len) {
        cf_errf(err, errlen, "the body ends after a boundary without the closing boundary");
        return CF_EPARSE;
    }
    if (body[p] != '\r' || body[p + 1] != '\n') {
        cf_errf(err, errlen, "a boundary must be followed by CRLF or '--'");
        return CF_EPARSE;
    }
    *pos = p + 2;
    return 0;
}

int cf_multipart_parse(const uint8_t *body, size_t len, const char *boundary,
                       const struct cf_multipart_limits *limits, struct cf_multipart *out,
                       char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    struct cf_multipart_limits lim = {0};
    if (limits)
        lim = *limits;
    if (!lim.max_parts)
        lim.max_parts = DEFAULT_MAX_PARTS;
    if (!lim.max_part_bytes)
        lim.max_part_bytes = DEFAULT_MAX_PART_BYTES;
    if (!lim.max_header_bytes)
        lim.max_header_bytes = DEFAULT_MAX_HEADER_BYTES;
    size_t blen = boundary ? strlen(boundary) : 0;
    if (blen == 0 || blen > CF_MULTIPART_MAX_BOUNDARY) {
        cf_errf(err, errlen, "invalid multipart boundary");
        return CF_EPARSE;
    }
    if (!body || len < blen + 2 || body[0] != '-' || body[1] != '-' ||
        memcmp(body + 2, boundary, blen) != 0) {
        cf_errf(err, errlen, "the body does not start with the multipart boundary");
        return CF_EPARSE;
    }
    size_t pos = blen + 2;
    int rc;
    for (;;) {
        rc = after_delimiter(body, len, &pos, err, errlen);
        if (rc < 0)
            goto fail;
        if (rc == 1)
            break;
        if (out->n_parts >= lim.max_parts) {
            cf_errf(err, errlen, "more than %zu parts", lim.max_parts);
            rc = CF_ELIMIT;
            goto fail;
        }
        out->parts = cf_xrealloc(out->parts, (out->n_parts + 1) * sizeof(*out->parts));
        struct cf_multipart_part *part = &out->parts[out->n_parts++];
        memset(part, 0, sizeof(*part));
        rc = parse_part_headers(body, len, &pos, &lim, out->n_parts - 1, part, err, errlen);
        if (rc)
            goto fail;
        const uint8_t *next = find_delimiter(body + pos, body + len, boundary, blen);
        char label[96];
        part_label(label, sizeof(label), out->n_parts - 1, part->name);
        if (!next) {
            cf_errf(err, errlen, "%s: the closing boundary is missing", label);
            rc = CF_EPARSE;
            goto fail;
        }
        size_t dlen = (size_t)(next - (body + pos));
        if (dlen > lim.max_part_bytes) {
            cf_errf(err, errlen, "%s is larger than %zu bytes", label, lim.max_part_bytes);
            rc = CF_ELIMIT;
            goto fail;
        }
        part->data = body + pos;
        part->len = dlen;
        pos = (size_t)(next - body) + 4 + blen;
    }
    return 0;
fail:
    cf_multipart_free(out);
    return rc;
}
