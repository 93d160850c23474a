/*
 * A strict parser for multipart/form-data bodies (RFC 7578 over RFC 2046), as Camunda Modeler,
 * browsers and curl send them to /engine-rest/deployment/create. It is written by hand because
 * no library packaged in Debian parses multipart bodies in C (libmicrohttpd's post processor is
 * tied to its own server, and GMime is a mail library of 100k lines for a few hundred here).
 *
 * Strict means: the body begins with the first delimiter (no preamble), every line ends in CRLF,
 * the close delimiter is present and only white space follows it, header lines are not folded
 * and hold no control characters, every part has exactly one Content-Disposition of type
 * form-data with a name, and limits on part count, part size and header size are enforced. What
 * is refused gets a message that names the part and the reason.
 *
 * The caller checks the whole body size before parsing (the HTTP server's per-route limit).
 *
 * Ownership: part data points into the body given to cf_multipart_parse() (no copy), so the body
 * must outlive the result. Names, file names and content types are copies owned by the result;
 * cf_multipart_free() releases them (and accepts a zeroed struct).
 */
#ifndef CF_API_MULTIPART_H
#define CF_API_MULTIPART_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* RFC 2046 allows boundaries of 1 to 70 characters. */
#define CF_MULTIPART_MAX_BOUNDARY 70

struct cf_multipart_part {
    char *name;         /* the form field name */
    char *filename;     /* NULL for plain fields */
    char *content_type; /* NULL when the part has none (text/plain by RFC 7578) */
    const uint8_t *data;
    size_t len;
};

struct cf_multipart {
    struct cf_multipart_part *parts;
    size_t n_parts;
};

struct cf_multipart_limits {
    size_t max_parts;        /* 0: 64 */
    size_t max_part_bytes;   /* 0: 4 MiB */
    size_t max_header_bytes; /* headers of one part; 0: 4 KiB */
};

/* Extracts the boundary from a Content-Type header value ("multipart/form-data; boundary=x",
 * media type case-insensitive, boundary as token or quoted string). `out` must hold
 * CF_MULTIPART_MAX_BOUNDARY + 1 bytes. CF_EINVAL when the type is not multipart/form-data,
 * CF_EPARSE when the boundary is missing or malformed. */
int cf_multipart_boundary(const char *content_type, char *out, char *err, size_t errlen);

/* Parses `body` into parts. 0, or CF_EPARSE for a malformed body, CF_ELIMIT when a limit is
 * exceeded; `out` is empty on error. `limits` may be NULL for the defaults. */
int cf_multipart_parse(const uint8_t *body, size_t len, const char *boundary,
                       const struct cf_multipart_limits *limits, struct cf_multipart *out,
                       char *err, size_t errlen);

void cf_multipart_free(struct cf_multipart *m);

/* The first part named `name`, or NULL; `count` (may be NULL) gets how many parts have it. */
const struct cf_multipart_part *cf_multipart_find(const struct cf_multipart *m, const char *name,
                                                  size_t *count);

#endif
