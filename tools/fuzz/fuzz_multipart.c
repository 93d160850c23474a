/*
 * libFuzzer target for the multipart/form-data parser behind /engine-rest/deployment/create
 * (engine/api/multipart.c). The input's first line is a Content-Type header value, from which the
 * boundary is taken; the rest is the body. When the first line holds no usable boundary, a fixed
 * one is used, so that the body parser is always reached. Every part must lie inside the body and
 * every name must be a non-empty string; the parser's limits are set low so that their paths run
 * too. Every test run replays it over tools/fuzz/corpus/multipart with tools/fuzz/replay.c (see
 * tests/CMakeLists.txt); for a libFuzzer run, from the repository root:
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_POSIX_C_SOURCE=200809L \
 *     -I engine/include -I engine tools/fuzz/fuzz_multipart.c engine/api/multipart.c \
 *     engine/base/base.c engine/base/error.c engine/base/log.c \
 *     $(pkg-config --cflags --libs jansson libcrypto) -o build/fuzz_multipart
 *   ./build/fuzz_multipart -max_len=8192
 *
 * A useful seed is the body of tests/unit/api/test_multipart.c's modeler_request, preceded by
 * "multipart/form-data; boundary=----WebKitFormBoundary7MA4YWxkTrZu0gW\n".
 */
#include <stdlib.h>
#include <string.h>

#include "api/multipart.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nl = memchr(data, '\n', size < 256 ? size : 256);
    char boundary[CF_MULTIPART_MAX_BOUNDARY + 1] = "XYZ";
    const uint8_t *body = data;
    size_t len = size;
    if (nl) {
        size_t hlen = (size_t)(nl - data);
        char *ct = malloc(hlen + 1);
        if (!ct)
            return 0;
        memcpy(ct, data, hlen);
        ct[hlen] = '\0';
        char err[256];
        if (cf_multipart_boundary(ct, boundary, err, sizeof(err)) != 0)
            memcpy(boundary, "XYZ", 4);
        free(ct);
        body = nl + 1;
        len = size - hlen - 1;
    }
    struct cf_multipart_limits lim = {
        .max_parts = 8, .max_part_bytes = 2048, .max_header_bytes = 512};
    struct cf_multipart m;
    char err[256];
    if (cf_multipart_parse(body, len, boundary, &lim, &m, err, sizeof(err)) == 0) {
        for (size_t i = 0; i < m.n_parts; i++) {
            const struct cf_multipart_part *p = &m.parts[i];
            if (!p->name || !p->name[0])
                abort();
            if (p->len > lim.max_part_bytes)
                abort();
            if (p->len && (p->data < body || p->data + p->len > body + len))
                abort();
            (void)cf_multipart_find(&m, p->name, NULL);
        }
        if (m.n_parts > lim.max_parts)
            abort();
    } else if (m.parts || m.n_parts) {
        abort(); /* a failed parse must leave nothing behind */
    }
    cf_multipart_free(&m);
    return 0;
}
