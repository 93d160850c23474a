/*
 * libFuzzer target for the BPMN loader: arbitrary bytes go through cf_bpmn_load() (libxml2 with
 * our hardening, the model build and the whole-graph validation), then every model is walked and
 * the diagnostics are formatted, so that dangling pointers in the model or the report show up
 * under ASan. CMake does not build the libFuzzer binary; build it from the repository root with
 *
 *   clang -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
 *     -D_POSIX_C_SOURCE=200809L -Iengine -Iengine/include \
 *     $(pkg-config --cflags libxml-2.0 jansson) tools/fuzz/fuzz_bpmn.c \
 *     engine/bpmn/[a-z]*.c engine/expr/[a-z]*.c engine/base/[a-z]*.c \
 *     $(pkg-config --libs libxml-2.0 jansson libcrypto) -lm -o fuzz_bpmn
 *   ./fuzz_bpmn -max_total_time=60 -rss_limit_mb=2048 corpus/ tests/unit/bpmn/fixtures/
 *
 * Every test run also replays tools/fuzz/corpus/bpmn/ through tools/fuzz/replay.c, without
 * libFuzzer (tests/CMakeLists.txt).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bpmn/model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void walk(const struct cf_model *m)
{
    /* Touch everything a runtime would: every pointer must lead into the model. */
    for (size_t i = 0; i < m->n_elements; i++) {
        const struct cf_elem *e = m->elements[i];
        if (cf_model_find(m, e->id) == NULL || e->index != i)
            abort();
        (void)cf_elem_type_name(e);
        (void)cf_elem_is_activity(e);
        for (size_t j = 0; j < e->n_outgoing; j++) {
            if (e->outgoing[j]->source != e)
                abort();
        }
        for (size_t j = 0; j < e->n_incoming; j++) {
            if (e->incoming[j]->target != e)
                abort();
        }
        for (size_t j = 0; j < e->n_boundaries; j++) {
            if (e->boundaries[j]->attached_to != e)
                abort();
        }
        for (size_t j = 0; j < e->n_children; j++) {
            if (e->children[j]->parent != e)
                abort();
        }
        for (size_t j = 0; j < e->n_inputs; j++) {
            if (e->inputs[j].value)
                (void)cf_expr_text(e->inputs[j].value);
        }
        if (e->timer_expr)
            (void)cf_expr_text(e->timer_expr);
    }
    for (size_t i = 0; i < m->n_flows; i++) {
        if (m->flows[i]->condition)
            (void)cf_expr_text(m->flows[i]->condition);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cf_bpmn_global_init();
    struct cf_model **models = NULL;
    size_t n = 0;
    struct cf_diags diags;
    cf_diags_init(&diags);
    int rc = cf_bpmn_load(data, size, &models, &n, &diags);
    /* The contract: success returns models and no problems, failure the reverse. */
    if ((rc == 0) != (diags.count == 0) || (rc == 0) != (models != NULL))
        abort();
    for (size_t i = 0; i < n; i++)
        walk(models[i]);
    struct cf_buf out;
    cf_buf_init(&out);
    cf_diags_format(&diags, "fuzz.bpmn", &out);
    cf_buf_free(&out);
    cf_models_free(models, n);
    cf_diags_free(&diags);
    return 0;
}
