/*
 * Tests of the BPMN loader and model (engine/bpmn/loader.c, model.c): files as Camunda Modeler
 * writes them, every element type, errorRef resolution, refusals by name, structural problems
 * reported all at once with their lines, and hostile input (DOCTYPE, entities, compression, size,
 * depth) refused quickly. Fixtures live in tests/unit/bpmn/fixtures/.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "bpmn/model.h"

#define FIXTURES CF_SOURCE_DIR "/tests/unit/bpmn/fixtures/"

#define DEFS_OPEN                                                                                  \
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"                                                 \
    "<bpmn:definitions xmlns:bpmn=\"" CF_NS_BPMN "\" xmlns:camunda=\"" CF_NS_CAMUNDA "\">\n"
#define DEFS_CLOSE "</bpmn:definitions>\n"

/* ---- helpers ---- */

struct loaded {
    int rc;
    struct cf_model **models;
    size_t n;
    struct cf_diags diags;
    char *text; /* the file's bytes as text, for line look-ups */
};

static void loaded_free(struct loaded *l)
{
    cf_models_free(l->models, l->n);
    cf_diags_free(&l->diags);
    free(l->text);
}

static void load_bytes(struct loaded *l, const void *bytes, size_t len)
{
    memset(l, 0, sizeof(*l));
    cf_diags_init(&l->diags);
    l->rc = cf_bpmn_load(bytes, len, &l->models, &l->n, &l->diags);
    l->text = cf_xstrndup(bytes, len);
}

static void load_str(struct loaded *l, const char *xml)
{
    load_bytes(l, xml, strlen(xml));
}

static void load_fixture(struct loaded *l, const char *name)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s%s", FIXTURES, name);
    memset(l, 0, sizeof(*l));
    cf_diags_init(&l->diags);
    l->rc = cf_bpmn_load_file(path, &l->models, &l->n, &l->diags);
    uint8_t *bytes = NULL;
    size_t len = 0;
    assert_int_equal(cf_read_file(path, CF_BPMN_MAX_BYTES, &bytes, &len, NULL, 0), 0);
    l->text = cf_xstrndup((const char *)bytes, len);
    free(bytes);
}

static void print_diags(const struct loaded *l)
{
    struct cf_buf b;
    cf_buf_init(&b);
    cf_diags_format(&l->diags, "test.bpmn", &b);
    fprintf(stderr, "%s", b.data ? b.data : "(no diagnostics)\n");
    cf_buf_free(&b);
}

static void expect_ok(const struct loaded *l)
{
    if (l->rc != 0)
        print_diags(l);
    assert_int_equal(l->rc, 0);
    assert_int_equal(l->diags.count, 0);
    assert_true(l->n > 0);
}

/* The diagnostic for `id` (NULL: any) whose message contains `needle`, or NULL. */
static const struct cf_diag *find_diag(const struct loaded *l, const char *id, const char *needle)
{
    for (size_t i = 0; i < l->diags.count; i++) {
        const struct cf_diag *d = &l->diags.items[i];
        if (id && (!d->element_id || strcmp(d->element_id, id) != 0))
            continue;
        if (strstr(d->message, needle))
            return d;
    }
    return NULL;
}

static const struct cf_diag *expect_diag(const struct loaded *l, const char *id, const char *needle)
{
    const struct cf_diag *d = find_diag(l, id, needle);
    if (!d) {
        fprintf(stderr, "expected a problem for %s containing \"%s\"; got:\n", id ? id : "(any)",
                needle);
        print_diags(l);
    }
    assert_non_null(d);
    return d;
}

/* 1-based line of the `nth` (1-based) occurrence of `needle` in the loaded text. */
static int line_of(const struct loaded *l, const char *needle, int nth)
{
    const char *p = l->text;
    for (int i = 0; i < nth; i++) {
        p = strstr(i ? p + 1 : p, needle);
        assert_non_null(p);
    }
    int line = 1;
    for (const char *q = l->text; q < p; q++)
        line += *q == '\n';
    return line;
}

/* Asserts a problem for `id` containing `needle`, reported on the line of `id="<id>"`. */
static void expect_diag_at(const struct loaded *l, const char *id, const char *needle, int nth)
{
    char attr[256];
    snprintf(attr, sizeof(attr), "id=\"%s\"", id);
    const struct cf_diag *d = expect_diag(l, id, needle);
    int want = line_of(l, attr, nth);
    if (d->line != want)
        fprintf(stderr, "%s: \"%s\" reported on line %d, expected %d\n", id, d->message, d->line,
                want);
    assert_int_equal(d->line, want);
}

static struct cf_elem *elem(const struct cf_model *m, const char *id)
{
    struct cf_elem *e = cf_model_find(m, id);
    if (!e)
        fprintf(stderr, "element %s not in the model\n", id);
    assert_non_null(e);
    return e;
}

static const struct cf_mapping *mapping(const struct cf_mapping *items, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(items[i].name, name) == 0)
            return &items[i];
    }
    fprintf(stderr, "no mapping named %s\n", name);
    fail();
    return NULL;
}

static double seconds_since(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

/* ---- files as the Modeler writes them ---- */

static void test_modeler_file(void **state)
{
    (void)state;
    struct loaded l;
    load_fixture(&l, "modeler_issue.bpmn");
    expect_ok(&l);
    assert_int_equal(l.n, 1);
    const struct cf_model *m = l.models[0];
    assert_string_equal(m->key, "pkcs10-issue");
    assert_string_equal(m->name, "Issue a TLS certificate");
    assert_true(m->executable);
    assert_int_equal(m->line, line_of(&l, "<bpmn:process ", 1));

    /* Lanes, the collaboration, text annotations and the diagram add no elements. */
    assert_int_equal(m->n_elements, 10);
    assert_int_equal(m->n_flows, 8);
    assert_null(cf_model_find(m, "Lane_0m1pt6r"));
    assert_null(cf_model_find(m, "TextAnnotation_0y5f1q2"));
    assert_null(cf_model_find(m, "Activity_Issue_di"));
    assert_null(cf_model_find(m, "Association_1b0lr2v"));

    struct cf_elem *start = elem(m, "StartEvent_1");
    assert_ptr_equal(m->none_start, start);
    assert_ptr_equal(m->elements[0], start);
    assert_int_equal(start->index, 0);
    assert_int_equal(start->line, line_of(&l, "id=\"StartEvent_1\"", 1));
    assert_string_equal(start->name, "Certificate pushed");
    assert_int_equal(m->n_start_events, 0);

    struct cf_elem *issue = elem(m, "Activity_Issue");
    assert_int_equal(issue->type, CF_EL_SERVICE_TASK);
    assert_string_equal(issue->tag, "serviceTask");
    assert_string_equal(issue->delegate, "executePKCS10RequestTask");
    assert_false(issue->delegate_is_expression);
    assert_true(issue->async_before);
    assert_false(issue->async_after);
    assert_true(issue->exclusive);
    assert_string_equal(issue->retry_cycle, "R5/PT1M");
    assert_int_equal(issue->n_inputs, 4);
    assert_string_equal(issue->inputs[0].name, "certTemplate");
    assert_string_equal(cf_expr_text(issue->inputs[0].value), "ServerTLS");
    assert_false(cf_expr_is_dynamic(issue->inputs[0].value));
    assert_string_equal(cf_expr_text(issue->inputs[1].value), "${commonName}");
    assert_true(cf_expr_is_dynamic(issue->inputs[1].value));
    assert_string_equal(issue->inputs[3].name, "validity");
    assert_null(issue->inputs[3].value);
    assert_int_equal(issue->inputs[0].line, line_of(&l, "name=\"certTemplate\"", 1));
    assert_int_equal(issue->n_outputs, 1);
    assert_string_equal(issue->outputs[0].name, "issuedSerial");
    assert_int_equal(issue->n_incoming, 1);
    assert_int_equal(issue->n_outgoing, 1);
    assert_string_equal(issue->incoming[0]->id, "Flow_0wlqv4k");
    assert_ptr_equal(issue->incoming[0]->source, start);

    /* The error boundary event, resolved through <error errorCode>. */
    assert_int_equal(issue->n_boundaries, 1);
    struct cf_elem *ca_down = issue->boundaries[0];
    assert_string_equal(ca_down->id, "Event_CaDown");
    assert_ptr_equal(ca_down->attached_to, issue);
    assert_int_equal(ca_down->event, CF_EV_ERROR);
    assert_string_equal(ca_down->error_code, "CaConnectionFailed");
    assert_string_equal(ca_down->error_ref, "Error_CaConnectionFailed");
    assert_string_equal(ca_down->error_code_variable, "errorCode");
    assert_string_equal(ca_down->error_message_variable, "errorMessage");
    assert_true(ca_down->cancel_activity);
    assert_string_equal(cf_elem_type_name(ca_down), "boundaryError");

    struct cf_elem *gw = elem(m, "Gateway_Issued");
    assert_int_equal(gw->type, CF_EL_EXCLUSIVE_GATEWAY);
    assert_int_equal(gw->n_outgoing, 2);
    assert_string_equal(gw->outgoing[0]->id, "Flow_NoApproval");
    assert_string_equal(gw->outgoing[1]->id, "Flow_Approval");
    assert_ptr_equal(gw->default_flow, gw->outgoing[0]);
    assert_true(gw->outgoing[0]->is_default);
    assert_null(gw->outgoing[0]->condition);
    assert_string_equal(gw->outgoing[0]->name, "no");
    assert_false(gw->outgoing[1]->is_default);
    assert_non_null(gw->outgoing[1]->condition);
    assert_string_equal(cf_expr_text(gw->outgoing[1]->condition), "${validityDays > 397}");

    struct cf_elem *wait = elem(m, "Event_WaitApproval");
    assert_int_equal(wait->type, CF_EL_INTERMEDIATE_CATCH);
    assert_int_equal(wait->event, CF_EV_MESSAGE);
    assert_string_equal(wait->message_name, "certificate-approved");

    struct cf_elem *publish = elem(m, "Activity_Publish");
    assert_true(publish->async_after);
    assert_false(publish->exclusive);
    assert_int_equal(publish->n_incoming, 2);
    assert_int_equal(publish->n_fields, 1);
    assert_string_equal(publish->fields[0].name, "procedure");
    assert_string_equal(cf_expr_text(publish->fields[0].value), "ldap-default");
    assert_int_equal(publish->n_boundaries, 1);
    struct cf_elem *reminder = publish->boundaries[0];
    assert_false(reminder->cancel_activity);
    assert_int_equal(reminder->timer, CF_TIMER_DURATION);
    assert_string_equal(cf_expr_text(reminder->timer_expr), "P3D");

    struct cf_elem *failed_end = elem(m, "Event_Failed");
    assert_int_equal(failed_end->event, CF_EV_TERMINATE);
    assert_string_equal(cf_elem_type_name(failed_end), "terminateEndEvent");
    assert_string_equal(cf_elem_type_name(elem(m, "Event_Published")), "noneEndEvent");
    loaded_free(&l);
}

static void test_all_elements(void **state)
{
    (void)state;
    struct loaded l;
    load_fixture(&l, "all_elements.bpmn");
    expect_ok(&l);
    assert_int_equal(l.n, 1);
    const struct cf_model *m = l.models[0];

    /* Document order, subprocess children included right after their subprocess. */
    assert_string_equal(m->elements[0]->id, "StartEvent_1");
    struct cf_elem *sub = elem(m, "Sub_1");
    assert_ptr_equal(m->elements[sub->index + 1], elem(m, "Sub_Start"));
    for (size_t i = 0; i < m->n_elements; i++)
        assert_int_equal(m->elements[i]->index, i);
    /* An element of a foreign namespace is not a BPMN serviceTask, whatever its local name. */
    assert_null(cf_model_find(m, "Foreign_1"));

    /* Start events: one none start, message and timer start events at process level. */
    assert_ptr_equal(m->none_start, elem(m, "StartEvent_1"));
    assert_int_equal(m->n_start_events, 2);
    assert_string_equal(m->start_events[0]->id, "Start_Msg");
    assert_int_equal(m->start_events[0]->event, CF_EV_MESSAGE);
    assert_string_equal(m->start_events[0]->message_name, "order-placed");
    assert_string_equal(cf_elem_type_name(m->start_events[0]), "messageStartEvent");
    assert_string_equal(m->start_events[1]->id, "Start_Timer");
    assert_int_equal(m->start_events[1]->timer, CF_TIMER_CYCLE);
    assert_string_equal(cf_expr_text(m->start_events[1]->timer_expr), "R/PT1H");
    assert_string_equal(cf_elem_type_name(m->start_events[1]), "startTimerEvent");

    struct cf_elem *plain = elem(m, "Task_Plain");
    assert_int_equal(plain->type, CF_EL_TASK);
    assert_true(plain->async_before); /* camunda:async, the old name */
    assert_int_equal(plain->n_incoming, 3);
    assert_string_equal(cf_elem_type_name(plain), "task");
    assert_true(cf_elem_is_activity(plain));
    struct cf_elem *manual = elem(m, "Task_Manual");
    assert_int_equal(manual->type, CF_EL_TASK);
    assert_string_equal(cf_elem_type_name(manual), "manualTask");

    /* The service task: prefix "c" is Camunda; prefix "camunda" is bound to another URI here,
     * so its delegateExpression is not Camunda's and is ignored. */
    struct cf_elem *svc = elem(m, "Service_1");
    assert_string_equal(svc->delegate, "estOrderRequestTask");
    assert_true(svc->async_before);
    assert_true(svc->async_after);
    assert_false(svc->exclusive);
    assert_string_equal(svc->retry_cycle, "R3/PT10M");
    assert_int_equal(svc->n_inputs, 3);
    assert_string_equal(cf_expr_text(mapping(svc->inputs, svc->n_inputs, "cn")->value),
                        "${subject.cn}");
    assert_null(mapping(svc->inputs, svc->n_inputs, "nothing")->value);
    assert_int_equal(svc->n_outputs, 1);
    assert_int_equal(svc->n_fields, 4);
    assert_string_equal(cf_expr_text(mapping(svc->fields, 4, "f_string")->value), "literal");
    assert_string_equal(cf_expr_text(mapping(svc->fields, 4, "f_expr")->value), "${amount}");
    assert_string_equal(cf_expr_text(mapping(svc->fields, 4, "f_child_string")->value),
                        "child literal");
    assert_string_equal(cf_expr_text(mapping(svc->fields, 4, "f_child_expr")->value),
                        "${amount + 1}");
    assert_int_equal(svc->n_boundaries, 1);
    assert_string_equal(svc->boundaries[0]->id, "Boundary_Timer");
    assert_string_equal(cf_elem_type_name(svc->boundaries[0]), "boundaryTimer");

    struct cf_elem *send = elem(m, "Send_1");
    assert_int_equal(send->type, CF_EL_SERVICE_TASK);
    assert_string_equal(send->tag, "sendTask");
    assert_string_equal(send->delegate, "notifyTask");
    assert_true(send->delegate_is_expression);
    assert_string_equal(cf_elem_type_name(send), "sendTask");
    struct cf_elem *rule = elem(m, "Rule_1");
    assert_string_equal(rule->delegate, "policyCheckTask");
    assert_string_equal(cf_elem_type_name(rule), "businessRuleTask");

    struct cf_elem *gw = elem(m, "Gw_X");
    assert_string_equal(gw->default_flow->id, "Flow_x_def");
    assert_string_equal(cf_expr_text(gw->outgoing[0]->condition), "${amount > 100}");
    assert_false(cf_elem_is_activity(gw));

    struct cf_elem *fork = elem(m, "Fork");
    assert_int_equal(fork->type, CF_EL_PARALLEL_GATEWAY);
    assert_int_equal(fork->n_outgoing, 3);
    assert_string_equal(fork->outgoing[0]->target->id, "Receive_1");
    assert_string_equal(fork->outgoing[1]->target->id, "Timer_Catch");
    assert_string_equal(fork->outgoing[2]->target->id, "Msg_Catch");
    assert_int_equal(elem(m, "Join")->n_incoming, 3);

    struct cf_elem *recv = elem(m, "Receive_1");
    assert_int_equal(recv->type, CF_EL_RECEIVE_TASK);
    assert_string_equal(recv->message_name, "ca-reply-${orderId}");
    assert_int_equal(recv->n_boundaries, 1);
    assert_int_equal(recv->boundaries[0]->event, CF_EV_MESSAGE);
    assert_string_equal(recv->boundaries[0]->message_name, "order-cancelled");

    struct cf_elem *timer = elem(m, "Timer_Catch");
    assert_int_equal(timer->event, CF_EV_TIMER);
    assert_int_equal(timer->timer, CF_TIMER_DURATION);
    assert_string_equal(cf_elem_type_name(timer), "intermediateTimer");
    assert_string_equal(cf_elem_type_name(elem(m, "Msg_Catch")), "intermediateMessageCatch");

    struct cf_elem *incl = elem(m, "Incl");
    assert_int_equal(incl->type, CF_EL_INCLUSIVE_GATEWAY);
    assert_string_equal(incl->default_flow->id, "Flow_i_def");
    struct cf_elem *thr = elem(m, "Throw_1");
    assert_int_equal(thr->type, CF_EL_INTERMEDIATE_THROW);
    assert_int_equal(thr->event, CF_EV_NONE);
    assert_string_equal(cf_elem_type_name(thr), "intermediateNoneThrowEvent");

    /* The embedded subprocess and its event subprocess. */
    assert_int_equal(sub->type, CF_EL_SUBPROCESS);
    assert_false(sub->triggered_by_event);
    assert_null(sub->parent);
    assert_int_equal(sub->n_children, 4);
    assert_ptr_equal(sub->none_start, elem(m, "Sub_Start"));
    assert_ptr_equal(elem(m, "Sub_Task")->parent, sub);
    assert_int_equal(sub->n_event_subprocesses, 1);
    struct cf_elem *sub_esp = sub->event_subprocesses[0];
    assert_string_equal(sub_esp->id, "Sub_Esp");
    assert_true(sub_esp->triggered_by_event);
    assert_null(sub_esp->none_start);
    assert_int_equal(sub_esp->n_children, 2);
    struct cf_elem *esp2_start = elem(m, "Esp2_Start");
    assert_ptr_equal(esp2_start->parent, sub_esp);
    assert_int_equal(esp2_start->timer, CF_TIMER_DATE);
    assert_false(esp2_start->cancel_activity);
    assert_int_equal(sub->n_boundaries, 1);
    struct cf_elem *sub_err = sub->boundaries[0];
    assert_int_equal(sub_err->event, CF_EV_ERROR);
    assert_null(sub_err->error_code);

    /* Process level: children and the process's event subprocess. */
    assert_int_equal(m->n_event_subprocesses, 1);
    struct cf_elem *esp = m->event_subprocesses[0];
    assert_string_equal(esp->id, "Esp_1");
    struct cf_elem *esp_start = elem(m, "Esp_Start");
    assert_int_equal(esp_start->event, CF_EV_MESSAGE);
    assert_false(esp_start->cancel_activity);
    for (size_t i = 0; i < m->n_children; i++)
        assert_null(m->children[i]->parent);
    size_t top = 0;
    for (size_t i = 0; i < m->n_elements; i++)
        top += m->elements[i]->parent == NULL;
    assert_int_equal(m->n_children, top);

    struct cf_elem *call = elem(m, "Call_1");
    assert_int_equal(call->type, CF_EL_CALL_ACTIVITY);
    assert_string_equal(call->called_element, "publish-certificate");
    assert_string_equal(call->called_binding, "version");
    assert_string_equal(call->called_version, "3");
    assert_int_equal(call->n_call_in, 3);
    assert_string_equal(call->call_in[0].source, "serial");
    assert_string_equal(call->call_in[0].target, "certSerial");
    assert_true(call->call_in[1].all);
    assert_true(call->call_in[2].business_key);
    assert_string_equal(cf_expr_text(call->call_in[2].source_expr),
                        "#{execution.processBusinessKey}");
    assert_int_equal(call->n_call_out, 2);
    assert_null(call->call_out[0].source);
    assert_string_equal(cf_expr_text(call->call_out[0].source_expr), "${published}");
    assert_string_equal(call->call_out[0].target, "wasPublished");
    assert_true(call->call_out[1].all);
    assert_true(call->call_out[1].local);

    /* Every flow is wired both ways. */
    for (size_t i = 0; i < m->n_flows; i++) {
        const struct cf_flow *f = m->flows[i];
        bool out = false, in = false;
        for (size_t j = 0; j < f->source->n_outgoing; j++)
            out = out || f->source->outgoing[j] == f;
        for (size_t j = 0; j < f->target->n_incoming; j++)
            in = in || f->target->incoming[j] == f;
        assert_true(out && in);
    }
    assert_string_equal(elem(m, "End_Terminate")->tag, "endEvent");
    loaded_free(&l);
}

static int no_variables(void *ctx, const char *name, const struct cf_val **out)
{
    (void)ctx;
    (void)name;
    (void)out;
    return CF_ENOENT;
}

static void test_field_string_is_fixed(void **state)
{
    (void)state;
    /* As in Camunda (FixedValue), ${...} inside a string value is text, not an expression. */
    struct loaded l;
    load_str(&l, DEFS_OPEN
             "  <bpmn:process id=\"p\" isExecutable=\"true\">\n"
             "    <bpmn:startEvent id=\"s\" />\n"
             "    <bpmn:serviceTask id=\"t\" camunda:delegateExpression=\"${task}\">\n"
             "      <bpmn:extensionElements>\n"
             "        <camunda:field name=\"a\" stringValue=\"it's ${x} \\ #{y}\" />\n"
             "        <camunda:field name=\"b\"><camunda:string>Dear ${customer}</camunda:string>"
             "</camunda:field>\n"
             "        <camunda:field name=\"c\" stringValue=\"plain\" />\n"
             "        <camunda:field name=\"d\" expression=\"${'x'}\" />\n"
             "      </bpmn:extensionElements>\n"
             "    </bpmn:serviceTask>\n"
             "  </bpmn:process>\n" DEFS_CLOSE);
    expect_ok(&l);
    const struct cf_elem *t = elem(l.models[0], "t");
    static const char *const want[] = {"it's ${x} \\ #{y}", "Dear ${customer}", "plain", "x"};
    assert_int_equal(t->n_fields, 4);
    for (size_t i = 0; i < 4; i++) {
        struct cf_val v = CF_VAL_NULL_INIT;
        char err[256];
        assert_int_equal(cf_expr_eval(t->fields[i].value, no_variables, NULL, &v, err, sizeof(err)),
                         0);
        assert_int_equal(v.type, CF_VALUE_STRING);
        assert_string_equal(v.u.s, want[i]);
        cf_val_free(&v);
    }
    /* Plain text stays plain, so deployment checks still see a fixed value. */
    assert_false(cf_expr_is_dynamic(t->fields[2].value));
    loaded_free(&l);
}

static void test_activiti_namespace(void **state)
{
    (void)state;
    struct loaded l;
    load_fixture(&l, "activiti.bpmn");
    expect_ok(&l);
    struct cf_elem *t = elem(l.models[0], "revoke");
    assert_string_equal(t->delegate, "revokeCertificateTask");
    assert_true(t->async_before);
    assert_false(t->exclusive);
    assert_int_equal(t->n_fields, 1);
    assert_string_equal(cf_expr_text(t->fields[0].value), "superseded");
    assert_string_equal(t->retry_cycle, "R2/PT30S");
    loaded_free(&l);
}

/* ---- errorRef resolution (bpmn-error-semantics.md §2, §5) ---- */

static void test_error_refs(void **state)
{
    (void)state;
    struct loaded l;
    load_fixture(&l, "errors.bpmn");
    expect_ok(&l);
    const struct cf_model *m = l.models[0];

    struct cf_elem *specific = elem(m, "B_Specific");
    assert_string_equal(specific->error_code, "CaConnectionFailed");
    assert_string_equal(specific->error_code_variable, "code");
    assert_string_equal(specific->error_message_variable, "msg");
    /* No errorRef: catch-all. */
    struct cf_elem *all = elem(m, "B_All");
    assert_null(all->error_code);
    assert_null(all->error_ref);
    /* An <error> without errorCode: also catch-all. */
    struct cf_elem *no_code = elem(m, "B_NoCode");
    assert_null(no_code->error_code);
    assert_string_equal(no_code->error_ref, "Err_NoCode");
    /* An errorRef naming no <error>: the reference itself is the code. */
    assert_string_equal(elem(m, "B_Raw")->error_code, "CommonError");
    assert_int_equal(elem(m, "Task_A")->n_boundaries, 4);

    struct cf_elem *thrown = elem(m, "End_Throw");
    assert_int_equal(thrown->event, CF_EV_ERROR);
    assert_string_equal(thrown->error_code, "CaConnectionFailed");
    assert_string_equal(thrown->error_message, "The CA is unreachable");
    assert_string_equal(cf_elem_type_name(thrown), "errorEndEvent");
    struct cf_elem *raw = elem(m, "End_Raw");
    assert_string_equal(raw->error_code, "CaRequestFailed");
    assert_null(raw->error_message);

    /* Error start events of event subprocesses resolve like boundary events. */
    assert_int_equal(m->n_event_subprocesses, 2);
    struct cf_elem *esp_conn = elem(m, "Esp_Conn_Start");
    assert_string_equal(esp_conn->error_code, "CaConnectionFailed");
    assert_true(esp_conn->cancel_activity);
    assert_string_equal(cf_elem_type_name(esp_conn), "errorStartEvent");
    assert_null(elem(m, "Esp_All_Start")->error_code);
    loaded_free(&l);
}

static void test_error_end_event_rules(void **state)
{
    (void)state;
    struct loaded l;
    load_str(&l, DEFS_OPEN
             "  <bpmn:error id=\"Err_NoCode\" name=\"x\" />\n"
             "  <bpmn:error id=\"Err_Empty\" errorCode=\"\" />\n"
             "  <bpmn:process id=\"p\" isExecutable=\"true\">\n"
             "    <bpmn:startEvent id=\"s\" />\n"
             "    <bpmn:endEvent id=\"NoRef\"><bpmn:errorEventDefinition /></bpmn:endEvent>\n"
             "    <bpmn:endEvent id=\"NoCode\">\n"
             "      <bpmn:errorEventDefinition errorRef=\"Err_NoCode\" />\n"
             "    </bpmn:endEvent>\n"
             "    <bpmn:endEvent id=\"EmptyCode\">\n"
             "      <bpmn:errorEventDefinition errorRef=\"Err_Empty\" />\n"
             "    </bpmn:endEvent>\n"
             "  </bpmn:process>\n" DEFS_CLOSE);
    assert_int_equal(l.rc, CF_EINVALID);
    assert_null(l.models);
    assert_int_equal(l.n, 0);
    assert_int_equal(expect_diag(&l, "NoRef", "needs an errorRef")->line, 7);
    assert_int_equal(expect_diag(&l, "NoCode", "'Err_NoCode' has no errorCode")->line, 9);
    assert_int_equal(expect_diag(&l, "EmptyCode", "'Err_Empty' has no errorCode")->line, 12);
    assert_int_equal(l.diags.count, 3);
    loaded_free(&l);
}

/* ---- refusals by name ---- */

static void test_refusals(void **state)
{
    (void)state;
    struct loaded l;
    load_fixture(&l, "refusals.bpmn");
    assert_int_equal(l.rc, CF_EINVALID);
    assert_null(l.models);
    static const struct {
        const char *id;
        const char *needle;
    } cases[] = {
        {"Script_1", "scriptTask is not supported: certflow runs no scripts"},
        {"User_1", "userTask is not supported"},
        {"Class_1", "camunda:class is not supported"},
        {"External_1", "camunda:type=\"external\" (external task) is not supported"},
        {"NoImpl_1", "serviceTask without camunda:delegateExpression is not supported"},
        {"Dmn_1", "camunda:decisionRef is not supported"},
        {"Connector_1", "camunda:connector is not supported"},
        {"Listener_1", "camunda:executionListener is not supported"},
        {"ScriptParam_1", "camunda:script in camunda:inputParameter 'cn' is not supported"},
        {"MI_1", "multiInstanceLoopCharacteristics (multi-instance) is not supported"},
        {"Loop_1", "standardLoopCharacteristics (loop) is not supported"},
        {"Signal_1", "signalEventDefinition is not supported"},
        {"Escalation_1", "escalationEventDefinition is not supported"},
        {"Compensate_1", "compensateEventDefinition is not supported"},
        {"Conditional_1", "conditionalEventDefinition is not supported"},
        {"Link_1", "linkEventDefinition is not supported"},
        {"Cancel_1", "cancelEventDefinition is not supported"},
        {"MsgEnd_1", "a message end event is not supported"},
        {"MsgThrow_1", "a message intermediate throw event is not supported"},
        {"EventGw_1", "eventBasedGateway is not supported"},
        {"Complex_1", "complexGateway is not supported"},
        {"Tx_1", "transaction is not supported"},
        {"AdHoc_1", "adHocSubProcess is not supported"},
        {"Unknown_1", "fancyTask is not a BPMN element certflow supports"},
        {"refusals", "camunda:executionListener is not supported"},
        {"Flow_Js", "a condition in language 'javascript' is a script"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct cf_diag *d = expect_diag(&l, cases[i].id, cases[i].needle);
        assert_true(d->line > 0);
    }
    /* Exact lines for a few, and nothing reported twice for one refusal: flows and boundary
     * events that refer to a refused element add no "names no flow node" noise. */
    expect_diag_at(&l, "Script_1", "scriptTask", 1);
    expect_diag_at(&l, "Unknown_1", "fancyTask", 1);
    assert_int_equal(expect_diag(&l, "MI_1", "multi")->line,
                     line_of(&l, "<bpmn:multiInstanceLoopCharacteristics", 1));
    assert_int_equal(l.diags.count, sizeof(cases) / sizeof(cases[0]));
    loaded_free(&l);
}

static void test_delegate_must_be_a_name(void **state)
{
    (void)state;
    struct loaded l;
    load_str(&l, DEFS_OPEN
             "  <bpmn:process id=\"p\" isExecutable=\"true\">\n"
             "    <bpmn:startEvent id=\"s\" />\n"
             "    <bpmn:serviceTask id=\"Method\" camunda:delegateExpression=\"${bean.run}\" />\n"
             "    <bpmn:serviceTask id=\"Literal\" camunda:expression=\"issue\" />\n"
             "    <bpmn:serviceTask id=\"Both\" camunda:expression=\"${a}\"\n"
             "                      camunda:delegateExpression=\"${a}\" />\n"
             "    <bpmn:serviceTask id=\"Broken\" camunda:delegateExpression=\"${a +}\" />\n"
             "  </bpmn:process>\n" DEFS_CLOSE);
    assert_int_equal(l.rc, CF_EINVALID);
    assert_int_equal(expect_diag(&l, "Method", "must name a task plug-in as ${name}")->line, 5);
    assert_non_null(strstr(find_diag(&l, "Method", "")->message, "${bean.run}"));
    expect_diag(&l, "Literal", "must name a task plug-in");
    expect_diag(&l, "Both", "has both camunda:delegateExpression and camunda:expression");
    assert_int_equal(expect_diag(&l, "Broken", "${a +}")->line, 9);
    loaded_free(&l);
}

/* ---- structural problems, all at once ---- */

static void test_problems_all_reported(void **state)
{
    (void)state;
    struct loaded l;
    load_fixture(&l, "problems.bpmn");
    assert_int_equal(l.rc, CF_EINVALID);
    assert_null(l.models);

    const struct cf_diag *dup = expect_diag(&l, "Task_1", "duplicate id 'Task_1'");
    assert_int_equal(dup->line, line_of(&l, "id=\"Task_1\"", 2));
    char first[64];
    snprintf(first, sizeof(first), "first used on line %d", line_of(&l, "id=\"Task_1\"", 1));
    assert_non_null(strstr(dup->message, first));

    expect_diag_at(&l, "Flow_BadSrc", "sourceRef 'Nope' names no flow node", 1);
    expect_diag_at(&l, "Flow_BadTgt", "targetRef 'Nowhere' names no flow node", 1);
    expect_diag_at(&l, "Flow_Cross", "crosses a subprocess boundary", 1);
    expect_diag_at(&l, "Gw_1", "default flow 'Flow_1' is not an outgoing flow", 1);
    expect_diag_at(&l, "Flow_Gw2_def", "must not have a condition", 1);
    expect_diag_at(&l, "Flow_Par_Cond", "parallel gateway 'Fork_1' is not allowed", 1);
    expect_diag_at(&l, "Start_2", "more than one none start event", 1);
    expect_diag_at(&l, "Start_1", "cannot have incoming", 1);
    expect_diag_at(&l, "End_1", "cannot have outgoing", 1);
    expect_diag_at(&l, "Boundary_Unknown", "attachedToRef 'Ghost' names no element", 1);
    expect_diag_at(&l, "Boundary_Gw", "is not an activity (it is <exclusiveGateway>)", 1);
    expect_diag_at(&l, "Boundary_NoOut", "needs an outgoing sequence flow", 1);
    /* Reported where the errorEventDefinition is, one line below the end event. */
    assert_int_equal(expect_diag(&l, "ErrEnd_1", "needs an errorRef")->line,
                     line_of(&l, "id=\"ErrEnd_1\"", 1) + 1);
    expect_diag_at(&l, "Esp_1", "exactly one start event, it has 2", 1);
    expect_diag_at(&l, "Esp_1", "cannot have incoming or outgoing", 1);
    expect_diag_at(&l, "Esp_2_Start", "needs an error, timer or message event definition", 1);
    expect_diag_at(&l, "Sub_2", "has no none start event", 1);
    expect_diag_at(&l, "Method_1", "must name a task plug-in", 1);
    expect_diag_at(&l, "Catch_None", "needs a timer or message", 1);
    expect_diag_at(&l, "Receive_Bad", "messageRef 'Msg_Missing' names no <message>", 1);
    /* An expression error names the element and shows the expression. */
    const struct cf_diag *expr = expect_diag(&l, "Flow_BadExpr", "condition");
    assert_non_null(strstr(expr->message, "${amount >}"));
    assert_int_equal(expr->line, line_of(&l, "${amount &gt;}", 1));

    /* Reported in file order. */
    for (size_t i = 1; i < l.diags.count; i++)
        assert_true(l.diags.items[i - 1].line <= l.diags.items[i].line);

    /* The formatted report: one line per problem, file:line: id: message. */
    struct cf_buf out;
    cf_buf_init(&out);
    cf_diags_format(&l.diags, "problems.bpmn", &out);
    char expect[256];
    snprintf(expect, sizeof(expect),
             "problems.bpmn:%d: Boundary_NoOut: ", line_of(&l, "id=\"Boundary_NoOut\"", 1));
    assert_non_null(strstr(out.data, expect));
    size_t lines = 0;
    for (size_t i = 0; i < out.len; i++)
        lines += out.data[i] == '\n';
    assert_int_equal(lines, l.diags.count);
    cf_buf_free(&out);
    loaded_free(&l);
}

static void test_start_event_rules(void **state)
{
    (void)state;
    struct loaded l;
    load_str(&l, DEFS_OPEN "  <bpmn:message id=\"M\" name=\"m\" />\n"
                           "  <bpmn:process id=\"p\" isExecutable=\"true\">\n"
                           "    <bpmn:task id=\"t\" />\n"
                           "    <bpmn:subProcess id=\"sub\">\n"
                           "      <bpmn:startEvent id=\"sub_msg\">\n"
                           "        <bpmn:messageEventDefinition messageRef=\"M\" />\n"
                           "      </bpmn:startEvent>\n"
                           "    </bpmn:subProcess>\n"
                           "    <bpmn:startEvent id=\"err_start\">\n"
                           "      <bpmn:errorEventDefinition />\n"
                           "    </bpmn:startEvent>\n"
                           "  </bpmn:process>\n" DEFS_CLOSE);
    assert_int_equal(l.rc, CF_EINVALID);
    assert_int_equal(expect_diag(&l, "p", "no none start event")->line, 4);
    assert_int_equal(expect_diag(&l, "sub_msg", "not allowed in an embedded subprocess")->line, 7);
    expect_diag(&l, "sub", "has no none start event");
    assert_int_equal(expect_diag(&l, "err_start", "only allowed in an event subprocess")->line, 11);
    loaded_free(&l);

    /* Message and timer start events alone are enough for a process. */
    load_str(&l, DEFS_OPEN "  <bpmn:message id=\"M\" name=\"m\" />\n"
                           "  <bpmn:process id=\"p\" isExecutable=\"true\">\n"
                           "    <bpmn:startEvent id=\"s\">\n"
                           "      <bpmn:messageEventDefinition messageRef=\"M\" />\n"
                           "    </bpmn:startEvent>\n"
                           "  </bpmn:process>\n" DEFS_CLOSE);
    expect_ok(&l);
    assert_null(l.models[0]->none_start);
    assert_int_equal(l.models[0]->n_start_events, 1);
    loaded_free(&l);
}

static void test_executable_processes(void **state)
{
    (void)state;
    struct loaded l;
    /* Several processes: non-executable ones are skipped (and not checked), the others are
     * returned in document order. */
    load_str(&l, DEFS_OPEN
             "  <bpmn:process id=\"first\" isExecutable=\"true\"><bpmn:startEvent id=\"s1\" />"
             "</bpmn:process>\n"
             "  <bpmn:process id=\"draft\" isExecutable=\"false\"><bpmn:scriptTask id=\"x\" />"
             "</bpmn:process>\n"
             "  <bpmn:process id=\"unmarked\"><bpmn:userTask id=\"y\" /></bpmn:process>\n"
             "  <bpmn:process id=\"second\" isExecutable=\"true\"><bpmn:startEvent id=\"s2\" />"
             "</bpmn:process>\n" DEFS_CLOSE);
    expect_ok(&l);
    assert_int_equal(l.n, 2);
    assert_string_equal(l.models[0]->key, "first");
    assert_string_equal(l.models[1]->key, "second");
    assert_null(cf_model_find(l.models[0], "s2"));
    assert_non_null(cf_model_find(l.models[1], "s2"));
    loaded_free(&l);

    load_str(&l, DEFS_OPEN "  <bpmn:process id=\"draft\" isExecutable=\"false\" />\n" DEFS_CLOSE);
    assert_int_equal(l.rc, CF_EINVALID);
    expect_diag(&l, NULL, "no process is executable");
    loaded_free(&l);

    load_str(&l, DEFS_OPEN DEFS_CLOSE);
    assert_int_equal(l.rc, CF_EINVALID);
    expect_diag(&l, NULL, "holds no <process>");
    loaded_free(&l);

    /* A well-formed XML file that is not BPMN. */
    load_str(&l, "<definitions xmlns=\"urn:something-else\"><process id=\"p\"/></definitions>");
    assert_int_equal(l.rc, CF_EINVALID);
    expect_diag(&l, NULL, "not <definitions> of the BPMN 2.0 namespace");
    loaded_free(&l);
}

static void test_bad_booleans_and_call_activity(void **state)
{
    (void)state;
    struct loaded l;
    load_str(&l, DEFS_OPEN
             "  <bpmn:process id=\"p\" isExecutable=\"true\">\n"
             "    <bpmn:startEvent id=\"s\" />\n"
             "    <bpmn:task id=\"t\" camunda:asyncBefore=\"yes please\" />\n"
             "    <bpmn:callActivity id=\"c1\" />\n"
             "    <bpmn:callActivity id=\"c2\" calledElement=\"x\" "
             "camunda:calledElementBinding=\"versionTag\" />\n"
             "    <bpmn:callActivity id=\"c4\" calledElement=\"x\" "
             "camunda:calledElementBinding=\"version\" camunda:calledElementVersion=\"${v}\" />\n"
             "    <bpmn:callActivity id=\"c3\" calledElement=\"x\">\n"
             "      <bpmn:extensionElements><camunda:in source=\"a\" /></bpmn:extensionElements>\n"
             "    </bpmn:callActivity>\n"
             "    <bpmn:serviceTask id=\"f\" camunda:delegateExpression=\"${t}\">\n"
             "      <bpmn:extensionElements>\n"
             "        <camunda:field name=\"fixed\" stringValue=\"it's ${x}\" />\n"
             "        <camunda:field name=\"twice\" stringValue=\"a\" expression=\"${b}\" />\n"
             "        <camunda:field name=\"none\" />\n"
             "        <camunda:inputParameter name=\"misplaced\">1</camunda:inputParameter>\n"
             "        <camunda:inputOutput><camunda:inputParameter>1</camunda:inputParameter>\n"
             "        </camunda:inputOutput>\n"
             "      </bpmn:extensionElements>\n"
             "    </bpmn:serviceTask>\n"
             "  </bpmn:process>\n" DEFS_CLOSE);
    assert_int_equal(l.rc, CF_EINVALID);
    assert_int_equal(
        expect_diag(&l, "t", "camunda:asyncBefore=\"yes please\" is not a boolean")->line, 5);
    expect_diag(&l, "c1", "needs a calledElement");
    expect_diag(&l, "c2", "calledElementBinding=\"versionTag\" is not supported");
    expect_diag(&l, "c4", "calledElementVersion=\"${v}\" is not a version number");
    assert_int_equal(expect_diag(&l, "c3", "camunda:in needs a target")->line, 10);
    expect_diag(&l, "f", "'twice' has more than one value");
    expect_diag(&l, "f", "'none' needs a stringValue or expression");
    assert_int_equal(expect_diag(&l, "f", "camunda:inputParameter has no name")->line, 18);
    /* A parameter outside camunda:inputOutput is not one; it is ignored, as Camunda does. */
    assert_null(find_diag(&l, "f", "misplaced"));
    assert_null(find_diag(&l, "f", "fixed"));
    assert_int_equal(l.diags.count, 8);
    loaded_free(&l);
}

/* ---- hostile and broken input ---- */

static void test_xxe_rejected(void **state)
{
    (void)state;
    struct loaded l;
    load_str(&l, "<?xml version=\"1.0\"?>\n"
                 "<!DOCTYPE definitions [\n"
                 "  <!ENTITY xxe SYSTEM \"file:///etc/passwd\">\n"
                 "]>\n"
                 "<definitions xmlns=\"" CF_NS_BPMN "\">\n"
                 "  <process id=\"p\" name=\"&xxe;\" isExecutable=\"true\">\n"
                 "    <startEvent id=\"s\" />\n"
                 "  </process>\n"
                 "</definitions>\n");
    assert_int_equal(l.rc, CF_EPARSE);
    assert_null(l.models);
    const struct cf_diag *d = expect_diag(&l, NULL, "DOCTYPE is not allowed");
    assert_int_equal(d->line, 2);
    /* Nothing of the entity's target may appear in any message. */
    for (size_t i = 0; i < l.diags.count; i++)
        assert_null(strstr(l.diags.items[i].message, "root:"));
    loaded_free(&l);

    /* An external DTD without an internal subset is refused too. */
    load_str(&l, "<?xml version=\"1.0\"?>\n"
                 "<!DOCTYPE definitions SYSTEM \"http://127.0.0.1:9/evil.dtd\">\n"
                 "<definitions xmlns=\"" CF_NS_BPMN "\"/>\n");
    assert_int_equal(l.rc, CF_EPARSE);
    assert_int_equal(expect_diag(&l, NULL, "DOCTYPE is not allowed")->line, 2);
    assert_int_equal(l.diags.count, 1);
    loaded_free(&l);
}

static void test_billion_laughs_fast(void **state)
{
    (void)state;
    struct cf_buf doc;
    cf_buf_init(&doc);
    cf_buf_puts(&doc, "<?xml version=\"1.0\"?>\n<!DOCTYPE lolz [\n <!ENTITY lol0 \"lol\">\n");
    /* Ten levels of ten references each: 10^10 copies of "lol" if anything expanded them. */
    for (int i = 1; i <= 10; i++) {
        cf_buf_printf(&doc, " <!ENTITY lol%d \"", i);
        for (int j = 0; j < 10; j++)
            cf_buf_printf(&doc, "&lol%d;", i - 1);
        cf_buf_puts(&doc, "\">\n");
    }
    cf_buf_puts(&doc, "]>\n<definitions xmlns=\"" CF_NS_BPMN "\">"
                      "<process id=\"p\" name=\"&lol10;\" isExecutable=\"true\"/></definitions>\n");

    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    struct loaded l;
    load_bytes(&l, doc.data, doc.len);
    double took = seconds_since(&t0);
    assert_int_equal(l.rc, CF_EPARSE);
    expect_diag(&l, NULL, "DOCTYPE is not allowed");
    /* A safety bound, not a performance target: expansion would take minutes and gigabytes. */
    assert_true(took < 1.0);
    loaded_free(&l);
    cf_buf_free(&doc);
}

static void test_malformed_xml_has_line(void **state)
{
    (void)state;
    struct loaded l;
    load_str(&l, DEFS_OPEN "  <bpmn:process id=\"p\" isExecutable=\"true\">\n"
                           "    <bpmn:startEvent id=\"s\">\n"
                           "  </bpmn:process>\n" DEFS_CLOSE);
    assert_int_equal(l.rc, CF_EPARSE);
    const struct cf_diag *d = expect_diag(&l, NULL, "malformed XML");
    assert_int_equal(d->line, 5);
    assert_non_null(strstr(d->message, "mismatch"));
    loaded_free(&l);

    /* A prefix without a namespace declaration is an error too, not a silently unknown element. */
    load_str(&l, "<bpmn:definitions xmlns:bpmn=\"" CF_NS_BPMN "\">\n"
                 "  <bpmn:process id=\"p\" isExecutable=\"true\">\n"
                 "    <bpmn:serviceTask id=\"t\" camunda:delegateExpression=\"${x}\" />\n"
                 "  </bpmn:process>\n" DEFS_CLOSE);
    assert_int_equal(l.rc, CF_EPARSE);
    assert_int_equal(expect_diag(&l, NULL, "camunda")->line, 3);
    loaded_free(&l);

    load_str(&l, "<definitions");
    assert_int_equal(l.rc, CF_EPARSE);
    expect_diag(&l, NULL, "malformed XML");
    loaded_free(&l);

    /* Bytes that do not convert from the declared encoding: libxml2 raises this without its
     * parser context, and it must still end up in the report (once), not on stderr. */
    load_str(&l, "<?xml version=\"1.0\" encoding=\"ISO-2022-JP\"?>\n"
                 "<definitions xmlns=\"" CF_NS_BPMN "\">\x1b$B\xff\xfe</definitions>");
    assert_int_equal(l.rc, CF_EPARSE);
    expect_diag(&l, NULL, "input conversion failed");
    for (size_t i = 1; i < l.diags.count; i++)
        assert_string_not_equal(l.diags.items[i - 1].message, l.diags.items[i].message);
    loaded_free(&l);
}

/* A valid one-process BPMN file, gzip-compressed. libxml2's own file reader would inflate it. */
static const uint8_t gzipped_bpmn[] = {
    0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x03, 0x4d, 0xce, 0x4d, 0x0a, 0xc2, 0x30,
    0x10, 0x05, 0xe0, 0x7d, 0x4f, 0x11, 0x72, 0x80, 0x4e, 0x5a, 0x74, 0x23, 0x49, 0x0a, 0x62, 0x77,
    0x56, 0xbd, 0x42, 0x6d, 0xc7, 0x1a, 0x68, 0x9b, 0x90, 0x99, 0xfe, 0x1c, 0xdf, 0x20, 0x2e, 0xdc,
    0x3d, 0x1e, 0xdf, 0x83, 0xa7, 0xab, 0x7d, 0x1a, 0xc5, 0x8a, 0x91, 0x9c, 0x9f, 0x8d, 0x2c, 0x72,
    0x25, 0x2b, 0x9b, 0xe9, 0x1e, 0x5f, 0x6e, 0x76, 0x9c, 0x3a, 0x12, 0x09, 0xcc, 0x64, 0xe4, 0x9b,
    0x39, 0x9c, 0x00, 0xb6, 0x6d, 0xcb, 0xfd, 0x34, 0xe4, 0x3e, 0x0e, 0x40, 0x01, 0x3b, 0x38, 0x3f,
    0x9a, 0x1b, 0x94, 0xaa, 0x50, 0xea, 0x58, 0x1e, 0xa0, 0xb9, 0x5f, 0xea, 0xab, 0xb4, 0x3a, 0x44,
    0xdf, 0x21, 0x91, 0x70, 0xbd, 0x91, 0x41, 0x0a, 0x47, 0xf5, 0x8e, 0xdd, 0xc2, 0xed, 0x73, 0x44,
    0x23, 0x39, 0x2e, 0x98, 0x0c, 0x71, 0x1b, 0xb9, 0x5e, 0x71, 0xe6, 0x2f, 0x23, 0x09, 0x56, 0xc3,
    0x6f, 0x98, 0xd2, 0xdf, 0x07, 0x9b, 0x7d, 0x00, 0x60, 0x07, 0xab, 0xe7, 0xa8, 0x00, 0x00, 0x00,
};

static char *temp_file(const void *bytes, size_t len, off_t size)
{
    char *path = cf_xstrdup("/tmp/cf_test_bpmn_XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    if (len)
        assert_int_equal(write(fd, bytes, len), (ssize_t)len);
    if (size)
        assert_int_equal(ftruncate(fd, size), 0);
    close(fd);
    return path;
}

static void test_compressed_rejected(void **state)
{
    (void)state;
    struct loaded l;
    load_bytes(&l, gzipped_bpmn, sizeof(gzipped_bpmn));
    assert_int_equal(l.rc, CF_EPARSE);
    expect_diag(&l, NULL, "gzip-compressed data, not XML");
    loaded_free(&l);

    /* Through the file path as well: the file is read as bytes, never inflated. */
    char *path = temp_file(gzipped_bpmn, sizeof(gzipped_bpmn), 0);
    struct cf_model **models = NULL;
    size_t n = 0;
    struct cf_diags d;
    cf_diags_init(&d);
    assert_int_equal(cf_bpmn_load_file(path, &models, &n, &d), CF_EPARSE);
    assert_null(models);
    assert_int_equal(d.count, 1);
    assert_non_null(strstr(d.items[0].message, "gzip"));
    cf_diags_free(&d);
    unlink(path);
    free(path);

    static const uint8_t xz[] = {0xfd, '7', 'z', 'X', 'Z', 0x00, 0x00, 0x04, 0xe6, 0xd6};
    load_bytes(&l, xz, sizeof(xz));
    assert_int_equal(l.rc, CF_EPARSE);
    expect_diag(&l, NULL, "xz-compressed data, not XML");
    loaded_free(&l);
}

static void test_size_limit(void **state)
{
    (void)state;
    size_t len = 10u * 1024u * 1024u;
    char *big = cf_xmalloc(len);
    memset(big, ' ', len);
    memcpy(big, "<definitions>", 13);
    struct loaded l;
    load_bytes(&l, big, len);
    assert_int_equal(l.rc, CF_EPARSE);
    expect_diag(&l, NULL, "more than the limit of 4194304 bytes");
    loaded_free(&l);
    free(big);

    /* A 10 MiB file is refused before it is read. */
    char *path = temp_file("<definitions>", 13, (off_t)len);
    struct cf_model **models = NULL;
    size_t n = 0;
    struct cf_diags d;
    cf_diags_init(&d);
    assert_int_equal(cf_bpmn_load_file(path, &models, &n, &d), CF_ELIMIT);
    assert_null(models);
    assert_int_equal(d.count, 1);
    assert_non_null(strstr(d.items[0].message, "limit"));
    cf_diags_free(&d);
    unlink(path);
    free(path);

    cf_diags_init(&d);
    assert_int_equal(cf_bpmn_load_file("/nonexistent/x.bpmn", &models, &n, &d), CF_ENOENT);
    assert_int_equal(d.count, 1);
    cf_diags_free(&d);

    load_bytes(&l, "", 0);
    assert_int_equal(l.rc, CF_EPARSE);
    expect_diag(&l, NULL, "empty");
    loaded_free(&l);
}

static void test_depth_limit(void **state)
{
    (void)state;
    struct cf_buf doc;
    cf_buf_init(&doc);
    cf_buf_puts(&doc, "<definitions xmlns=\"" CF_NS_BPMN "\">\n");
    for (int i = 0; i < 300; i++)
        cf_buf_puts(&doc, "<extensionElements>\n");
    for (int i = 0; i < 300; i++)
        cf_buf_puts(&doc, "</extensionElements>");
    cf_buf_puts(&doc, "</definitions>\n");
    struct loaded l;
    load_bytes(&l, doc.data, doc.len);
    assert_int_equal(l.rc, CF_EPARSE);
    const struct cf_diag *d = expect_diag(&l, NULL, "nested more than 64 levels deep");
    assert_int_equal(d->line, 65);
    assert_int_equal(l.diags.count, 1);
    loaded_free(&l);
    cf_buf_free(&doc);
}

static void test_element_and_attribute_limits(void **state)
{
    (void)state;
    struct cf_buf doc;
    cf_buf_init(&doc);
    cf_buf_puts(&doc, "<definitions xmlns=\"" CF_NS_BPMN "\">");
    for (int i = 0; i < CF_BPMN_MAX_ELEMENTS + 10; i++)
        cf_buf_puts(&doc, "<a/>");
    cf_buf_puts(&doc, "</definitions>");
    struct loaded l;
    load_bytes(&l, doc.data, doc.len);
    assert_int_equal(l.rc, CF_EPARSE);
    expect_diag(&l, NULL, "more than 50000 XML elements");
    loaded_free(&l);

    cf_buf_reset(&doc);
    cf_buf_puts(&doc, "<definitions xmlns=\"" CF_NS_BPMN "\">\n<process id=\"");
    for (int i = 0; i < CF_BPMN_MAX_ATTR_LEN + 1; i++)
        cf_buf_putc(&doc, 'x');
    cf_buf_puts(&doc, "\"/></definitions>");
    load_bytes(&l, doc.data, doc.len);
    assert_int_equal(l.rc, CF_EPARSE);
    assert_int_equal(expect_diag(&l, NULL, "attribute id of <process> is longer")->line, 2);
    loaded_free(&l);

    /* libxml2 2.9 is quadratic in the attributes of one element: a file that is nothing but
     * attributes must be refused before it is parsed. */
    cf_buf_reset(&doc);
    cf_buf_puts(&doc, "<!-- a=1 b=2 > --><definitions xmlns=\"" CF_NS_BPMN "\">\n<process");
    for (int i = 0; doc.len < CF_BPMN_MAX_BYTES - 64; i++)
        cf_buf_printf(&doc, " a%d=\"=\"", i);
    cf_buf_puts(&doc, "/></definitions>");
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    load_bytes(&l, doc.data, doc.len);
    assert_true(seconds_since(&t0) < 1.0);
    assert_int_equal(l.rc, CF_EPARSE);
    assert_int_equal(expect_diag(&l, NULL, "more than 256 attributes")->line, 2);
    loaded_free(&l);
    cf_buf_free(&doc);
}

static void test_many_problems_capped(void **state)
{
    (void)state;
    /* A hostile file with endless problems yields a bounded report. */
    struct cf_buf doc;
    cf_buf_init(&doc);
    cf_buf_puts(&doc, DEFS_OPEN "<bpmn:process id=\"p\" isExecutable=\"true\">\n"
                                "<bpmn:startEvent id=\"s\" />\n");
    for (int i = 0; i < 1000; i++)
        cf_buf_printf(&doc, "<bpmn:serviceTask id=\"t%d\" camunda:class=\"x.Y\" />\n", i);
    cf_buf_puts(&doc, "</bpmn:process>\n" DEFS_CLOSE);
    struct loaded l;
    load_bytes(&l, doc.data, doc.len);
    assert_int_equal(l.rc, CF_EINVALID);
    assert_int_equal(l.diags.count, 101);
    assert_string_equal(l.diags.items[0].element_id, "t0");
    assert_non_null(strstr(l.diags.items[100].message, "too many problems"));
    loaded_free(&l);
    cf_buf_free(&doc);
}

static void test_diags_format(void **state)
{
    (void)state;
    struct cf_diags d;
    cf_diags_init(&d);
    cf_diags_add(&d, 12, "Task_1", "bad %s", "thing");
    cf_diags_add(&d, 0, NULL, "file-level problem");
    cf_diags_add(&d, 3, NULL, "no element");
    struct cf_buf out;
    cf_buf_init(&out);
    cf_diags_format(&d, "x.bpmn", &out);
    assert_string_equal(out.data, "x.bpmn:12: Task_1: bad thing\n"
                                  "x.bpmn: file-level problem\n"
                                  "x.bpmn:3: no element\n");
    cf_buf_reset(&out);
    cf_diags_format(&d, NULL, &out);
    assert_string_equal(out.data, "12: Task_1: bad thing\n"
                                  "file-level problem\n"
                                  "3: no element\n");
    cf_buf_free(&out);
    cf_diags_free(&d);
    cf_diags_free(&d); /* freeing twice is harmless: the list is emptied */
    assert_int_equal(d.count, 0);

    /* Messages longer than any internal buffer arrive whole. */
    char long_text[700];
    memset(long_text, 'x', sizeof(long_text) - 1);
    long_text[sizeof(long_text) - 1] = '\0';
    cf_diags_add(&d, 1, "e", "<%s>", long_text);
    assert_int_equal(strlen(d.items[0].message), sizeof(long_text) + 1);
    cf_diags_free(&d);
    assert_int_equal(d.count, 0);
    cf_models_free(NULL, 0);
    cf_model_free(NULL);
}

int main(void)
{
    cf_bpmn_global_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_modeler_file),
        cmocka_unit_test(test_all_elements),
        cmocka_unit_test(test_field_string_is_fixed),
        cmocka_unit_test(test_activiti_namespace),
        cmocka_unit_test(test_error_refs),
        cmocka_unit_test(test_error_end_event_rules),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_delegate_must_be_a_name),
        cmocka_unit_test(test_problems_all_reported),
        cmocka_unit_test(test_start_event_rules),
        cmocka_unit_test(test_executable_processes),
        cmocka_unit_test(test_bad_booleans_and_call_activity),
        cmocka_unit_test(test_xxe_rejected),
        cmocka_unit_test(test_billion_laughs_fast),
        cmocka_unit_test(test_malformed_xml_has_line),
        cmocka_unit_test(test_compressed_rejected),
        cmocka_unit_test(test_size_limit),
        cmocka_unit_test(test_depth_limit),
        cmocka_unit_test(test_element_and_attribute_limits),
        cmocka_unit_test(test_many_problems_capped),
        cmocka_unit_test(test_diags_format),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
