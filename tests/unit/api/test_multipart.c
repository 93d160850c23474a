/*
 * Tests of engine/api/multipart.c, the multipart/form-data parser behind
 * /engine-rest/deployment/create: the exact request Camunda Modeler (Chromium's FormData) and
 * curl send, boundaries that appear inside data, truncated bodies, limits, and the header tricks
 * a strict parser must refuse. Bodies are written out byte for byte, so the tests do not depend
 * on the code they test to build them.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/multipart.h"
#include "certflow/error.h"

#define B "----WebKitFormBoundary7MA4YWxkTrZu0gW"

static int parse_text(const char *body, const char *boundary, const struct cf_multipart_limits *l,
                      struct cf_multipart *m, char *err, size_t errlen)
{
    return cf_multipart_parse((const uint8_t *)body, strlen(body), boundary, l, m, err, errlen);
}

static void assert_part(const struct cf_multipart_part *p, const char *name, const char *filename,
                        const char *ctype, const char *data)
{
    assert_non_null(p);
    assert_string_equal(p->name, name);
    if (filename)
        assert_string_equal(p->filename, filename);
    else
        assert_null(p->filename);
    if (ctype)
        assert_string_equal(p->content_type, ctype);
    else
        assert_null(p->content_type);
    assert_int_equal(p->len, strlen(data));
    assert_memory_equal(p->data, data, p->len);
}

/* What Camunda Modeler's deployDiagram() puts into the body, in its order. */
static const char modeler_body[] =
    "--" B "\r\n"
    "Content-Disposition: form-data; name=\"deployment-name\"\r\n"
    "\r\n"
    "diagram_1\r\n"
    "--" B "\r\n"
    "Content-Disposition: form-data; name=\"deployment-source\"\r\n"
    "\r\n"
    "Camunda Modeler\r\n"
    "--" B "\r\n"
    "Content-Disposition: form-data; name=\"enable-duplicate-filtering\"\r\n"
    "\r\n"
    "true\r\n"
    "--" B "\r\n"
    "Content-Disposition: form-data; name=\"tenant-id\"\r\n"
    "\r\n"
    "acme\r\n"
    "--" B "\r\n"
    "Content-Disposition: form-data; name=\"diagram_1.bpmn\"; filename=\"diagram_1.bpmn\"\r\n"
    "Content-Type: text/xml\r\n"
    "\r\n"
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<bpmn:definitions/>\n\r\n"
    "--" B "--\r\n";

static void modeler_request(void **state)
{
    (void)state;
    char boundary[CF_MULTIPART_MAX_BOUNDARY + 1];
    char err[256] = "";
    assert_int_equal(
        cf_multipart_boundary("multipart/form-data; boundary=" B, boundary, err, sizeof(err)), 0);
    assert_string_equal(boundary, B);
    struct cf_multipart m;
    assert_int_equal(parse_text(modeler_body, boundary, NULL, &m, err, sizeof(err)), 0);
    assert_int_equal(m.n_parts, 5);
    assert_part(&m.parts[0], "deployment-name", NULL, NULL, "diagram_1");
    assert_part(&m.parts[1], "deployment-source", NULL, NULL, "Camunda Modeler");
    assert_part(&m.parts[2], "enable-duplicate-filtering", NULL, NULL, "true");
    assert_part(&m.parts[3], "tenant-id", NULL, NULL, "acme");
    /* The file keeps its own trailing newline; only the CRLF before the delimiter goes. */
    assert_part(&m.parts[4], "diagram_1.bpmn", "diagram_1.bpmn", "text/xml",
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<bpmn:definitions/>\n");
    size_t count = 0;
    assert_ptr_equal(cf_multipart_find(&m, "tenant-id", &count), &m.parts[3]);
    assert_int_equal(count, 1);
    assert_null(cf_multipart_find(&m, "missing", &count));
    assert_int_equal(count, 0);
    cf_multipart_free(&m);
    assert_null(m.parts);
    cf_multipart_free(&m); /* twice, and on a zeroed struct: harmless */
}

/* curl -F writes a boundary of dashes and hex digits and sends octet-stream files. */
static void curl_request(void **state)
{
    (void)state;
    static const char body[] =
        "--------------------------d74496d66958873e\r\n"
        "Content-Disposition: form-data; name=\"deployment-name\"\r\n"
        "\r\n"
        "x\r\n"
        "--------------------------d74496d66958873e\r\n"
        "Content-Disposition: form-data; name=\"data\"; filename=\"a.bpmn\"\r\n"
        "Content-Type: application/octet-stream\r\n"
        "\r\n"
        "<x/>\r\n"
        "--------------------------d74496d66958873e--\r\n";
    char boundary[CF_MULTIPART_MAX_BOUNDARY + 1], err[256];
    assert_int_equal(cf_multipart_boundary(
                         "Multipart/Form-Data;boundary=------------------------d74496d66958873e",
                         boundary, err, sizeof(err)),
                     0);
    struct cf_multipart m;
    assert_int_equal(parse_text(body, boundary, NULL, &m, err, sizeof(err)), 0);
    assert_int_equal(m.n_parts, 2);
    assert_part(&m.parts[1], "data", "a.bpmn", "application/octet-stream", "<x/>");
    cf_multipart_free(&m);
}

static void boundary_header_forms(void **state)
{
    (void)state;
    char b[CF_MULTIPART_MAX_BOUNDARY + 1], err[256];
    assert_int_equal(cf_multipart_boundary("multipart/form-data; charset=utf-8; boundary=\"a b:c\"",
                                           b, err, sizeof(err)),
                     0);
    assert_string_equal(b, "a b:c");
    assert_int_equal(cf_multipart_boundary("application/json", b, err, sizeof(err)), CF_EINVAL);
    assert_non_null(strstr(err, "multipart/form-data"));
    assert_int_equal(cf_multipart_boundary(NULL, b, err, sizeof(err)), CF_EINVAL);
    assert_int_equal(cf_multipart_boundary("multipart/form-data", b, err, sizeof(err)), CF_EPARSE);
    assert_non_null(strstr(err, "no boundary"));
    assert_int_equal(cf_multipart_boundary("multipart/form-data; boundary=", b, err, sizeof(err)),
                     CF_EPARSE);
    /* 71 characters: one more than RFC 2046 allows. */
    char ct[200];
    snprintf(ct, sizeof(ct), "multipart/form-data; boundary=%071d", 7);
    assert_int_equal(cf_multipart_boundary(ct, b, err, sizeof(err)), CF_EPARSE);
    snprintf(ct, sizeof(ct), "multipart/form-data; boundary=%070d", 7);
    assert_int_equal(cf_multipart_boundary(ct, b, err, sizeof(err)), 0);
    assert_int_equal(strlen(b), 70);
    assert_int_equal(cf_multipart_boundary("multipart/form-data; boundary=\"ends in space \"", b,
                                           err, sizeof(err)),
                     CF_EPARSE);
    assert_int_equal(
        cf_multipart_boundary("multipart/form-data; boundary=a; boundary=b", b, err, sizeof(err)),
        CF_EPARSE);
    assert_int_equal(
        cf_multipart_boundary("multipart/form-data; boundary=\"unterminated", b, err, sizeof(err)),
        CF_EPARSE);
}

/* The boundary text may appear in data as long as it is not a delimiter (CRLF "--" boundary
 * followed by CRLF or "--"). */
static void boundary_inside_data(void **state)
{
    (void)state;
    static const char body[] = "--XYZ\r\n"
                               "Content-Disposition: form-data; name=\"f\"; filename=\"f.bpmn\"\r\n"
                               "\r\n"
                               "line --XYZ inside\r\n"
                               "--XY not quite\r\n"
                               "\r\n--XZ\r\n"
                               "--XYZ\r\n"
                               "Content-Disposition: form-data; name=\"g\"\r\n"
                               "\r\n"
                               "\r\n"
                               "--XYZ--";
    struct cf_multipart m;
    char err[256];
    assert_int_equal(parse_text(body, "XYZ", NULL, &m, err, sizeof(err)), 0);
    assert_int_equal(m.n_parts, 2);
    assert_part(&m.parts[0], "f", "f.bpmn", NULL,
                "line --XYZ inside\r\n--XY not quite\r\n\r\n--XZ");
    assert_part(&m.parts[1], "g", NULL, NULL, "");
    cf_multipart_free(&m);
}

/* A delimiter followed by anything but CRLF or "--" means the boundary occurs in the data,
 * which RFC 2046 forbids; guessing would let two parsers disagree. */
static void delimiter_followed_by_junk(void **state)
{
    (void)state;
    static const char body[] = "--XYZ\r\n"
                               "Content-Disposition: form-data; name=\"f\"\r\n"
                               "\r\n"
                               "a\r\n--XYZjunk\r\n"
                               "--XYZ--\r\n";
    struct cf_multipart m;
    char err[256];
    assert_int_equal(parse_text(body, "XYZ", NULL, &m, err, sizeof(err)), CF_EPARSE);
    assert_null(m.parts);
    assert_non_null(strstr(err, "boundary must be followed"));
}

static void missing_closing_boundary(void **state)
{
    (void)state;
    struct cf_multipart m;
    char err[256];
    /* Truncated inside the data of the last part. */
    static const char cut[] = "--XYZ\r\n"
                              "Content-Disposition: form-data; name=\"f\"; filename=\"a.bpmn\"\r\n"
                              "\r\n"
                              "<definitions/>";
    assert_int_equal(parse_text(cut, "XYZ", NULL, &m, err, sizeof(err)), CF_EPARSE);
    assert_non_null(strstr(err, "closing boundary is missing"));
    assert_non_null(strstr(err, "\"f\""));
    /* Ends on a delimiter that is not the close delimiter. */
    static const char open_end[] = "--XYZ\r\n"
                                   "Content-Disposition: form-data; name=\"f\"\r\n"
                                   "\r\n"
                                   "a\r\n"
                                   "--XYZ\r\n";
    assert_int_equal(parse_text(open_end, "XYZ", NULL, &m, err, sizeof(err)), CF_EPARSE);
    /* Ends inside headers. */
    static const char in_headers[] = "--XYZ\r\n"
                                     "Content-Disposition: form-data; name=\"f\"\r\n";
    assert_int_equal(parse_text(in_headers, "XYZ", NULL, &m, err, sizeof(err)), CF_EPARSE);
    assert_non_null(strstr(err, "ends inside the part headers"));
    /* No closing boundary at all, only the opening one. */
    assert_int_equal(parse_text("--XYZ", "XYZ", NULL, &m, err, sizeof(err)), CF_EPARSE);
    assert_int_equal(parse_text("", "XYZ", NULL, &m, err, sizeof(err)), CF_EPARSE);
    /* A body with no parts at all is well formed (the route then asks for a resource). */
    assert_int_equal(parse_text("--XYZ--\r\n", "XYZ", NULL, &m, err, sizeof(err)), 0);
    assert_int_equal(m.n_parts, 0);
    cf_multipart_free(&m);
}

static void preamble_and_epilogue(void **state)
{
    (void)state;
    struct cf_multipart m;
    char err[256];
    static const char preamble[] = "junk\r\n--XYZ\r\n"
                                   "Content-Disposition: form-data; name=\"f\"\r\n\r\na\r\n"
                                   "--XYZ--\r\n";
    assert_int_equal(parse_text(preamble, "XYZ", NULL, &m, err, sizeof(err)), CF_EPARSE);
    assert_non_null(strstr(err, "does not start with the multipart boundary"));
    static const char epilogue[] = "--XYZ\r\n"
                                   "Content-Disposition: form-data; name=\"f\"\r\n\r\na\r\n"
                                   "--XYZ--\r\nmore";
    assert_int_equal(parse_text(epilogue, "XYZ", NULL, &m, err, sizeof(err)), CF_EPARSE);
    assert_non_null(strstr(err, "after the closing boundary"));
    /* Transport padding after a delimiter is allowed by RFC 2046. */
    static const char padded[] = "--XYZ  \r\n"
                                 "Content-Disposition: form-data; name=\"f\"\r\n\r\na\r\n"
                                 "--XYZ--";
    assert_int_equal(parse_text(padded, "XYZ", NULL, &m, err, sizeof(err)), 0);
    assert_part(&m.parts[0], "f", NULL, NULL, "a");
    cf_multipart_free(&m);
}

static void oversized_part(void **state)
{
    (void)state;
    struct cf_multipart_limits lim = {.max_part_bytes = 10};
    struct cf_multipart m;
    char err[256];
    static const char ten[] = "--XYZ\r\n"
                              "Content-Disposition: form-data; name=\"f\"; filename=\"a.bpmn\"\r\n"
                              "\r\n"
                              "0123456789\r\n"
                              "--XYZ--\r\n";
    assert_int_equal(parse_text(ten, "XYZ", &lim, &m, err, sizeof(err)), 0);
    assert_int_equal(m.parts[0].len, 10);
    cf_multipart_free(&m);
    static const char eleven[] =
        "--XYZ\r\n"
        "Content-Disposition: form-data; name=\"f\"; filename=\"a.bpmn\"\r\n"
        "\r\n"
        "0123456789A\r\n"
        "--XYZ--\r\n";
    assert_int_equal(parse_text(eleven, "XYZ", &lim, &m, err, sizeof(err)), CF_ELIMIT);
    assert_non_null(strstr(err, "larger than 10 bytes"));
    assert_null(m.parts);
}

static void too_many_parts_and_headers(void **state)
{
    (void)state;
    struct cf_multipart m;
    char err[256];
    char body[4096];
    size_t off = 0;
    for (int i = 0; i < 4; i++)
        off += (size_t)snprintf(
            body + off, sizeof(body) - off,
            "--XYZ\r\nContent-Disposition: form-data; name=\"p%d\"\r\n\r\nv\r\n", i);
    snprintf(body + off, sizeof(body) - off, "--XYZ--\r\n");
    struct cf_multipart_limits lim = {.max_parts = 3};
    assert_int_equal(parse_text(body, "XYZ", &lim, &m, err, sizeof(err)), CF_ELIMIT);
    assert_non_null(strstr(err, "more than 3 parts"));
    lim.max_parts = 4;
    assert_int_equal(parse_text(body, "XYZ", &lim, &m, err, sizeof(err)), 0);
    assert_int_equal(m.n_parts, 4);
    cf_multipart_free(&m);

    /* Headers of one part beyond the header limit. */
    off = (size_t)snprintf(body, sizeof(body),
                           "--XYZ\r\nContent-Disposition: form-data; name=\"f\"\r\nX-Pad: ");
    memset(body + off, 'a', 200);
    off += 200;
    snprintf(body + off, sizeof(body) - off, "\r\n\r\nv\r\n--XYZ--\r\n");
    struct cf_multipart_limits hl = {.max_header_bytes = 128};
    assert_int_equal(parse_text(body, "XYZ", &hl, &m, err, sizeof(err)), CF_ELIMIT);
    assert_non_null(strstr(err, "headers are longer"));
    /* Seventeen small headers. */
    off = (size_t)snprintf(body, sizeof(body),
                           "--XYZ\r\nContent-Disposition: form-data; name=\"f\"\r\n");
    for (int i = 0; i < 16; i++)
        off += (size_t)snprintf(body + off, sizeof(body) - off, "X-H%d: 1\r\n", i);
    snprintf(body + off, sizeof(body) - off, "\r\nv\r\n--XYZ--\r\n");
    assert_int_equal(parse_text(body, "XYZ", NULL, &m, err, sizeof(err)), CF_ELIMIT);
    assert_non_null(strstr(err, "more than 16 headers"));
}

/* Line breaks smuggled into headers would let a part claim a second Content-Disposition or a
 * different name: every form must be refused, not repaired. */
static void header_injection(void **state)
{
    (void)state;
    struct cf_multipart m;
    char err[256];
    static const char *const bad[] = {
        /* bare LF ends a line early and starts a forged header */
        "--XYZ\r\nContent-Disposition: form-data; name=\"a\"\nContent-Type: text/xml\r\n\r\nv\r\n"
        "--XYZ--\r\n",
        /* bare CR */
        "--XYZ\r\nContent-Disposition: form-data; name=\"a\"\rX: y\r\n\r\nv\r\n--XYZ--\r\n",
        /* obsolete line folding */
        "--XYZ\r\nContent-Disposition: form-data;\r\n name=\"a\"\r\n\r\nv\r\n--XYZ--\r\n",
        /* NUL inside a header value */
        "--XYZ\r\nContent-Disposition: form-data; name=\"a\x01\"\r\n\r\nv\r\n--XYZ--\r\n",
        /* two dispositions: which name is the real one? */
        "--XYZ\r\nContent-Disposition: form-data; name=\"a\"\r\n"
        "Content-Disposition: form-data; name=\"b\"\r\n\r\nv\r\n--XYZ--\r\n",
        /* the name given twice in one disposition */
        "--XYZ\r\nContent-Disposition: form-data; name=\"a\"; name=\"b\"\r\n\r\nv\r\n--XYZ--\r\n",
        /* filename* (RFC 5987) would be a second, disagreeing file name */
        "--XYZ\r\nContent-Disposition: form-data; name=\"a\"; filename=\"x.bpmn\"; "
        "filename*=UTF-8''y.bpmn\r\n\r\nv\r\n--XYZ--\r\n",
        /* no disposition at all */
        "--XYZ\r\nContent-Type: text/xml\r\n\r\nv\r\n--XYZ--\r\n",
        /* a disposition that is not form-data */
        "--XYZ\r\nContent-Disposition: attachment; name=\"a\"\r\n\r\nv\r\n--XYZ--\r\n",
        /* an empty name */
        "--XYZ\r\nContent-Disposition: form-data; name=\"\"\r\n\r\nv\r\n--XYZ--\r\n",
        /* a header line without a colon */
        "--XYZ\r\nContent-Disposition: form-data; name=\"a\"\r\nbogus\r\n\r\nv\r\n--XYZ--\r\n",
        /* an encoding that would need decoding */
        "--XYZ\r\nContent-Disposition: form-data; name=\"a\"\r\n"
        "Content-Transfer-Encoding: base64\r\n\r\ndg==\r\n--XYZ--\r\n",
        /* unterminated quoted name */
        "--XYZ\r\nContent-Disposition: form-data; name=\"a\r\n\r\nv\r\n--XYZ--\r\n",
        /* the part header block ends with LF LF */
        "--XYZ\r\nContent-Disposition: form-data; name=\"a\"\n\nv\r\n--XYZ--\r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        int rc = parse_text(bad[i], "XYZ", NULL, &m, err, sizeof(err));
        if (rc != CF_EPARSE)
            fail_msg("case %zu was accepted (rc %d)", i, rc);
        assert_null(m.parts);
        assert_true(strlen(err) > 0);
    }
    /* A backslash is an ordinary character (browsers do not escape it). */
    static const char bs[] =
        "--XYZ\r\nContent-Disposition: form-data; name=\"f\"; filename=\"C:\\p\\a.bpmn\"\r\n"
        "Content-Transfer-Encoding: binary\r\n\r\nv\r\n--XYZ--\r\n";
    assert_int_equal(parse_text(bs, "XYZ", NULL, &m, err, sizeof(err)), 0);
    assert_string_equal(m.parts[0].filename, "C:\\p\\a.bpmn");
    cf_multipart_free(&m);
    /* Header names are case-insensitive; unknown headers are ignored. */
    static const char mixed[] = "--XYZ\r\ncontent-disposition: FORM-DATA; NAME=f\r\n"
                                "X-Other: 1\r\nCONTENT-TYPE:  text/xml  \r\n\r\nv\r\n--XYZ--";
    assert_int_equal(parse_text(mixed, "XYZ", NULL, &m, err, sizeof(err)), 0);
    assert_part(&m.parts[0], "f", NULL, "text/xml", "v");
    cf_multipart_free(&m);
}

/* Binary data, including NUL bytes and CRs, passes through unchanged. */
static void binary_data(void **state)
{
    (void)state;
    static const uint8_t body[] = "--XYZ\r\nContent-Disposition: form-data; name=\"b\"\r\n\r\n"
                                  "\x00\r\x01\r\r\n-\xff\r\n--XYZ--";
    struct cf_multipart m;
    char err[256];
    assert_int_equal(cf_multipart_parse(body, sizeof(body) - 1, "XYZ", NULL, &m, err, sizeof(err)),
                     0);
    assert_int_equal(m.parts[0].len, 8);
    assert_memory_equal(m.parts[0].data, "\x00\r\x01\r\r\n-\xff", 8);
    cf_multipart_free(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(modeler_request),
        cmocka_unit_test(curl_request),
        cmocka_unit_test(boundary_header_forms),
        cmocka_unit_test(boundary_inside_data),
        cmocka_unit_test(delimiter_followed_by_junk),
        cmocka_unit_test(missing_closing_boundary),
        cmocka_unit_test(preamble_and_epilogue),
        cmocka_unit_test(oversized_part),
        cmocka_unit_test(too_many_parts_and_headers),
        cmocka_unit_test(header_injection),
        cmocka_unit_test(binary_data),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
