/*
 * Token movement: how executions enter, execute and leave BPMN elements, fork and join, open and
 * close subprocess scopes, and how BPMN errors find their handler (Camunda 7 rules,
 * shared/reference/bpmn-error-semantics.md). Every function here runs inside the engine's open
 * write transaction and mirrors each change of the in-memory tree into the store at once, so the
 * tree and the database commit (or are dropped) together.
 *
 * Movement is driven by a FIFO agenda of (execution, operation) pairs rather than recursion, so
 * long chains of pass-through elements use no stack and the order of steps is deterministic:
 * the first outgoing flow of a fork moves first, in document order.
 *
 * Jobs, plug-in calls and batching are engine.c's business; this file only creates job rows.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "base/iso8601.h"
#include "run/internal.h"

enum op { OP_ENTER, OP_EXECUTE, OP_LEAVE, OP_TAKE };

/* A process that loops this many steps inside one transaction without reaching a wait state is
 * stopped with an incident instead of spinning the engine forever. */
#define MAX_STEPS_PER_ITEM 10000u

static const char *state_names[] = {"READY", "WAITING", "JOINING", "SCOPE", "INCIDENT"};
static const char *resume_names[] = {NULL, "execute", "leave", "take"};

static int cancel_children_of_call(struct cf_engine *e, struct cf_exec *x);
static int apply_var_mappings(struct cf_engine *e, struct cf_exec *from, struct cf_exec *to,
                              const struct cf_var_mapping *maps, size_t n, bool into_child,
                              char *err, size_t errlen);

/* --- instances and executions in memory --- */

static void exec_free(struct cf_exec *x)
{
    for (size_t i = 0; i < x->n_vars; i++) {
        free(x->vars[i].name);
        cf_val_free(&x->vars[i].val);
    }
    free(x->vars);
    free(x);
}

static void exec_free_tree(struct cf_exec *x)
{
    struct cf_exec *c = x->first_child;
    while (c) {
        struct cf_exec *n = c->next;
        exec_free_tree(c);
        c = n;
    }
    exec_free(x);
}

void cf__instance_free(struct cf_instance *inst)
{
    if (!inst)
        return;
    if (inst->root)
        exec_free_tree(inst->root);
    free(inst->tenant_id);
    free(inst->business_key);
    cf_val_free(&inst->execution_view);
    free(inst);
}

void cf__evict(struct cf_engine *e, int64_t instance_id)
{
    struct cf_instance *inst = cf_imap_del(&e->instances, instance_id);
    cf__instance_free(inst);
}

void cf__touch(struct cf_engine *e, struct cf_instance *inst)
{
    for (size_t i = 0; i < e->n_touched; i++)
        if (e->touched[i] == inst)
            return;
    if (e->n_touched == e->cap_touched) {
        e->cap_touched = e->cap_touched ? e->cap_touched * 2 : 16;
        e->touched = cf_xrealloc(e->touched, e->cap_touched * sizeof(*e->touched));
    }
    e->touched[e->n_touched++] = inst;
}

static void link_child(struct cf_exec *parent, struct cf_exec *x)
{
    x->parent = parent;
    x->prev = parent->last_child;
    x->next = NULL;
    if (parent->last_child)
        parent->last_child->next = x;
    else
        parent->first_child = x;
    parent->last_child = x;
}

static void unlink_child(struct cf_exec *x)
{
    struct cf_exec *p = x->parent;
    if (!p)
        return;
    if (x->prev)
        x->prev->next = x->next;
    else
        p->first_child = x->next;
    if (x->next)
        x->next->prev = x->prev;
    else
        p->last_child = x->prev;
    x->prev = x->next = NULL;
}

static struct cf_exec *find_in(struct cf_exec *x, int64_t id)
{
    if (x->id == id)
        return x;
    for (struct cf_exec *c = x->first_child; c; c = c->next) {
        struct cf_exec *f = find_in(c, id);
        if (f)
            return f;
    }
    return NULL;
}

struct cf_exec *cf__exec_find(struct cf_instance *inst, int64_t id)
{
    return inst->root ? find_in(inst->root, id) : NULL;
}

static int save_exec(struct cf_engine *e, struct cf_exec *x)
{
    return cf_store_exec_update(e->store, x->id, x->elem ? x->elem->id : NULL,
                                state_names[x->state], x->act_inst_id, resume_names[x->resume]);
}

static int exec_new(struct cf_engine *e, struct cf_instance *inst, struct cf_exec *parent,
                    const struct cf_elem *elem, enum cf_exec_state state, struct cf_exec **out)
{
    struct cf_exec *x = cf_xcalloc(1, sizeof(*x));
    x->inst = inst;
    x->elem = elem;
    x->state = state;
    x->seq = ++inst->next_seq;
    int rc = cf_store_exec_insert(e->store, inst->id, parent ? parent->id : 0,
                                  elem ? elem->id : NULL, state_names[state], 0, x->seq, &x->id);
    if (rc) {
        free(x);
        return rc;
    }
    if (parent)
        link_child(parent, x);
    *out = x;
    return 0;
}

/* --- variables --- */

static struct cf_var *var_local(const struct cf_exec *x, const char *name)
{
    for (size_t i = 0; i < x->n_vars; i++)
        if (strcmp(x->vars[i].name, name) == 0)
            return &x->vars[i];
    return NULL;
}

const struct cf_val *cf__var_lookup(const struct cf_exec *x, const char *name)
{
    for (; x; x = x->parent) {
        struct cf_var *v = var_local(x, name);
        if (v)
            return &v->val;
    }
    return NULL;
}

/* Camunda models read the execution in expressions, e.g. camunda:in
 * businessKey="#{execution.processBusinessKey}": a read-only view of it, unless a process variable
 * of that name hides it. */
static const struct cf_val *execution_view(const struct cf_exec *x)
{
    struct cf_instance *inst = x->inst;
    json_t *o = json_object();
    char id[32];
    json_object_set_new(o, "processBusinessKey",
                        inst->business_key ? json_string(inst->business_key) : json_null());
    snprintf(id, sizeof(id), "%" PRId64, inst->id);
    json_object_set_new(o, "processInstanceId", json_string(id));
    snprintf(id, sizeof(id), "%" PRId64, x->id);
    json_object_set_new(o, "id", json_string(id));
    json_object_set_new(o, "processDefinitionKey", json_string(inst->def->key));
    json_object_set_new(o, "currentActivityId", x->elem ? json_string(x->elem->id) : json_null());
    json_object_set_new(o, "tenantId", json_string(inst->tenant_id ? inst->tenant_id : ""));
    cf_val_take_json(&inst->execution_view, o);
    return &inst->execution_view;
}

int cf__expr_lookup(void *ctx, const char *name, const struct cf_val **out)
{
    const struct cf_val *v = cf__var_lookup(ctx, name);
    if (!v && strcmp(name, "execution") == 0)
        v = execution_view(ctx);
    if (!v)
        return CF_ENOENT;
    *out = v;
    return 0;
}

static int var_set_local(struct cf_engine *e, struct cf_exec *x, const char *name,
                         const struct cf_val *v)
{
    struct cf_var *slot = var_local(x, name);
    if (!slot) {
        if (x->n_vars == x->cap_vars) {
            x->cap_vars = x->cap_vars ? x->cap_vars * 2 : 4;
            x->vars = cf_xrealloc(x->vars, x->cap_vars * sizeof(*x->vars));
        }
        slot = &x->vars[x->n_vars++];
        slot->name = cf_xstrdup(name);
        slot->val.type = CF_VALUE_NULL;
    }
    cf_val_copy(&slot->val, v);
    return cf_store_var_put(e->store, x->id, x->inst->id, name, v);
}

/* Camunda's setVariable: the nearest scope that already has the variable, else the instance. */
int cf__var_set(struct cf_engine *e, struct cf_exec *x, const char *name, const struct cf_val *v)
{
    struct cf_exec *target = x;
    while (target->parent && !var_local(target, name))
        target = target->parent;
    return var_set_local(e, target, name, v);
}

/* Drops the variables an activity held locally (its input parameters) when the token leaves. */
static int drop_locals(struct cf_engine *e, struct cf_exec *x)
{
    for (size_t i = 0; i < x->n_vars; i++) {
        int rc = cf_store_var_delete(e->store, x->id, x->vars[i].name);
        if (rc)
            return rc;
        free(x->vars[i].name);
        cf_val_free(&x->vars[i].val);
    }
    x->n_vars = 0;
    return 0;
}

/* --- agenda --- */

static void push(struct cf_engine *e, struct cf_exec *x, enum op op)
{
    if (e->agenda_head + e->agenda_len == e->agenda_cap) {
        if (e->agenda_head > 0) {
            memmove(e->agenda, e->agenda + e->agenda_head, e->agenda_len * sizeof(*e->agenda));
            e->agenda_head = 0;
        }
        if (e->agenda_len == e->agenda_cap) {
            e->agenda_cap = e->agenda_cap ? e->agenda_cap * 2 : 64;
            e->agenda = cf_xrealloc(e->agenda, e->agenda_cap * sizeof(*e->agenda));
        }
    }
    e->agenda[e->agenda_head + e->agenda_len].x = x;
    e->agenda[e->agenda_head + e->agenda_len].op = (int)op;
    e->agenda_len++;
}

/* --- history, jobs, incidents --- */

static int hist_start(struct cf_engine *e, struct cf_exec *x)
{
    return cf_store_hist_start(e->store, x->inst->id, x->id, x->elem->id,
                               cf_elem_type_name(x->elem), x->elem->name, cf_now_ms(),
                               &x->act_inst_id);
}

static int hist_end(struct cf_engine *e, struct cf_exec *x, const char *state)
{
    if (!x->act_inst_id)
        return 0;
    int rc = cf_store_hist_end(e->store, x->act_inst_id, cf_now_ms(), state);
    x->act_inst_id = 0;
    return rc;
}

int cf__initial_retries(const struct cf_elem *elem)
{
    struct cf_retry_cycle rc;
    const char *text = elem && elem->retry_cycle ? elem->retry_cycle : CF_RETRY_DEFAULT;
    if (cf_retry_cycle_parse(text, &rc, NULL, 0) != 0 &&
        cf_retry_cycle_parse(CF_RETRY_DEFAULT, &rc, NULL, 0) != 0)
        return 3;
    return rc.retries > 0 ? rc.retries : 1;
}

int cf__retry_due(const struct cf_elem *elem, int retries_left, uint64_t *due)
{
    struct cf_retry_cycle rc;
    const char *text = elem && elem->retry_cycle ? elem->retry_cycle : CF_RETRY_DEFAULT;
    if (cf_retry_cycle_parse(text, &rc, NULL, 0) != 0 &&
        cf_retry_cycle_parse(CF_RETRY_DEFAULT, &rc, NULL, 0) != 0)
        return CF_EINVAL;
    int64_t when;
    int r =
        cf_retry_cycle_due(&rc, rc.retries - retries_left, (int64_t)cf_now_ms(), &when, NULL, 0);
    if (r)
        return r;
    *due = (uint64_t)when;
    return 0;
}

int cf__incident(struct cf_engine *e, struct cf_exec *x, const char *type, int64_t job_id,
                 const char *message)
{
    int64_t id;
    int rc =
        cf_store_incident_insert(e->store, type, x->inst->id, x->id, x->elem ? x->elem->id : "",
                                 job_id, message, cf_now_ms(), &id);
    if (rc)
        return rc;
    x->state = EX_INCIDENT;
    rc = save_exec(e, x);
    if (rc)
        return rc;
    cf_log(CF_LOG_WARN, "incident instance=%" PRId64 " activity=%s type=%s: %s", x->inst->id,
           x->elem ? x->elem->id : "", type, message);
    if (e->obs.incident)
        e->obs.incident(e->obs.arg, x->inst->id, x->elem ? x->elem->id : "", type, message);
    return 0;
}

/* An incident that stops the execution until retried; `resume` says which step to redo. */
static int stop(struct cf_engine *e, struct cf_exec *x, enum cf_resume resume, const char *type,
                const char *message)
{
    x->resume = resume;
    return cf__incident(e, x, type, 0, message);
}

/* --- removing executions --- */

static void bury(struct cf_engine *e, struct cf_exec *x)
{
    unlink_child(x);
    x->dead = true;
    x->dead_next = e->dead;
    e->dead = x;
}

void cf__reap_dead(struct cf_engine *e)
{
    while (e->dead) {
        struct cf_exec *x = e->dead;
        e->dead = x->dead_next;
        exec_free_tree(x);
    }
}

/* Cancels an execution and everything below it: open activity instances end as canceled, its jobs
 * and open incidents go away. */
static int cancel_tree(struct cf_engine *e, struct cf_exec *x, const char *hist_state)
{
    int rc;
    while (x->first_child) {
        struct cf_exec *c = x->first_child;
        if ((rc = cancel_tree(e, c, "canceled")))
            return rc;
    }
    if (x->elem && x->elem->type == CF_EL_CALL_ACTIVITY && (rc = cancel_children_of_call(e, x)))
        return rc;
    if ((rc = hist_end(e, x, hist_state)))
        return rc;
    if ((rc = cf_store_jobs_delete_execution(e->store, x->id)))
        return rc;
    if ((rc = cf_store_subs_delete_execution(e->store, x->id)))
        return rc;
    if ((rc = cf_store_incidents_resolve_execution(e->store, x->id, cf_now_ms())))
        return rc;
    if ((rc = cf_store_exec_delete(e->store, x->id)))
        return rc;
    bury(e, x);
    return 0;
}

static int scope_check(struct cf_engine *e, struct cf_exec *scope);

/* A token reached its end: remove it and see whether its scope is complete. */
static int end_token(struct cf_engine *e, struct cf_exec *x)
{
    struct cf_exec *scope = x->parent;
    int rc = cancel_tree(e, x, "completed");
    if (rc)
        return rc;
    return scope_check(e, scope);
}

static int return_to_caller(struct cf_engine *e, struct cf_instance *child);

static int complete_instance(struct cf_engine *e, struct cf_instance *inst, const char *state)
{
    struct cf_exec *root = inst->root;
    int rc;
    while (root->first_child)
        if ((rc = cancel_tree(e, root->first_child, "canceled")))
            return rc;
    root->state = EX_READY;
    if ((rc = save_exec(e, root)))
        return rc;
    if ((rc = cf_store_instance_end(e->store, inst->id, state, cf_now_ms())))
        return rc;
    inst->ended = true;
    cf__notify_ended(e, inst->id, state);
    if (inst->super_exec_id && strcmp(state, "CANCELED") != 0)
        return return_to_caller(e, inst);
    return 0;
}

static int scope_check(struct cf_engine *e, struct cf_exec *scope)
{
    if (!scope || scope->first_child)
        return 0;
    if (!scope->parent)
        return complete_instance(e, scope->inst, "COMPLETED");
    if (scope->elem && scope->elem->triggered_by_event) {
        /* An event subprocess has no outgoing flows: when it is done, so is its scope. */
        return end_token(e, scope);
    }
    scope->state = EX_READY;
    push(e, scope, OP_LEAVE);
    return 0;
}

/* --- BPMN errors --- */

static const struct cf_elem *match_boundary(const struct cf_elem *activity, const char *code)
{
    /* A boundary naming the code wins over a catch-all, whatever their order in the file. */
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < activity->n_boundaries; i++) {
            const struct cf_elem *b = activity->boundaries[i];
            if (b->event != CF_EV_ERROR)
                continue;
            if (pass == 0 && b->error_code && strcmp(b->error_code, code) == 0)
                return b;
            if (pass == 1 && !b->error_code)
                return b;
        }
    }
    return NULL;
}

static const struct cf_elem *error_start_of(const struct cf_elem *esp)
{
    for (size_t i = 0; i < esp->n_children; i++) {
        const struct cf_elem *c = esp->children[i];
        if (c->type == CF_EL_START_EVENT && c->event == CF_EV_ERROR)
            return c;
    }
    return NULL;
}

static bool is_ancestor_elem(const struct cf_exec *x, const struct cf_elem *elem)
{
    for (; x; x = x->parent)
        if (x->elem == elem)
            return true;
    return false;
}

static const struct cf_elem *match_event_subprocess(struct cf_elem *const *esps, size_t n,
                                                    const char *code, const struct cf_exec *from)
{
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < n; i++) {
            const struct cf_elem *start = error_start_of(esps[i]);
            /* A handler never catches what it throws itself. */
            if (!start || is_ancestor_elem(from, esps[i]))
                continue;
            if (pass == 0 && start->error_code && strcmp(start->error_code, code) == 0)
                return esps[i];
            if (pass == 1 && !start->error_code)
                return esps[i];
        }
    }
    return NULL;
}

static int set_error_vars(struct cf_engine *e, struct cf_exec *x, const struct cf_elem *handler,
                          const char *code, const char *message)
{
    struct cf_val v = CF_VAL_NULL_INIT;
    int rc = 0;
    if (handler->error_code_variable) {
        cf_val_set_string(&v, code);
        rc = cf__var_set(e, x, handler->error_code_variable, &v);
    }
    if (!rc && handler->error_message_variable) {
        if (message)
            cf_val_set_string(&v, message);
        else
            cf_val_set_null(&v);
        rc = cf__var_set(e, x, handler->error_message_variable, &v);
    }
    cf_val_free(&v);
    return rc;
}

static int catch_by_boundary(struct cf_engine *e, struct cf_exec *ax, const struct cf_elem *b,
                             const char *code, const char *message)
{
    struct cf_exec *scope = ax->parent;
    int rc = set_error_vars(e, scope, b, code, message);
    if (!rc)
        rc = cancel_tree(e, ax, "canceled");
    struct cf_exec *y;
    if (!rc)
        rc = exec_new(e, scope->inst, scope, b, EX_READY, &y);
    if (!rc)
        push(e, y, OP_ENTER);
    return rc;
}

static int catch_by_event_subprocess(struct cf_engine *e, struct cf_exec *scope,
                                     const struct cf_elem *esp, const char *code,
                                     const char *message)
{
    int rc = 0;
    while (scope->first_child && !rc)
        rc = cancel_tree(e, scope->first_child, "canceled");
    struct cf_exec *sx, *start;
    if (!rc)
        rc = exec_new(e, scope->inst, scope, esp, EX_SCOPE, &sx);
    if (!rc)
        rc = hist_start(e, sx);
    if (!rc)
        rc = save_exec(e, sx);
    if (!rc)
        rc = exec_new(e, scope->inst, sx, error_start_of(esp), EX_READY, &start);
    if (!rc)
        rc = set_error_vars(e, start, error_start_of(esp), code, message);
    if (!rc)
        push(e, start, OP_ENTER);
    return rc;
}

/* The call activity execution that called `inst`, loading the parent if needed. */
static struct cf_exec *caller_of(struct cf_engine *e, struct cf_instance *inst)
{
    if (!inst->super_exec_id)
        return NULL;
    char err[256];
    struct cf_instance *parent = cf__instance_get(e, inst->super_instance_id, err, sizeof(err));
    if (!parent) {
        cf_log(CF_LOG_ERROR, "instance=%" PRId64 ": caller lost: %s", inst->id, err);
        return NULL;
    }
    cf__touch(e, parent);
    struct cf_exec *px = cf__exec_find(parent, inst->super_exec_id);
    if (!px || px->dead || !px->elem || px->elem->type != CF_EL_CALL_ACTIVITY)
        return NULL;
    return px;
}

/* Routes a BPMN error thrown at execution x: innermost scope first (the activity's own boundary
 * events, then each enclosing scope: its error event subprocesses, then the boundary events of
 * the subprocess), and on through call activities into the calling instances. *caught tells
 * whether a handler took it; when none does, x stops with an incident (or, in Camunda 7 mode,
 * its path ends). */
static int throw_error(struct cf_engine *e, struct cf_exec *x, const char *code,
                       const char *message, int64_t job_id, bool *caught)
{
    *caught = true;
    struct cf_exec *act = cf_elem_is_activity(x->elem) ? x : NULL;
    struct cf_exec *from = x;
    struct cf_exec *scope = x->parent;
    for (;;) {
        if (act) {
            const struct cf_elem *b = match_boundary(act->elem, code);
            if (b)
                return catch_by_boundary(e, act, b, code, message);
        }
        const struct cf_model *model = from->inst->def->model;
        for (struct cf_exec *s = scope; s; s = s->parent) {
            struct cf_elem *const *esps =
                s->elem ? s->elem->event_subprocesses : model->event_subprocesses;
            size_t n = s->elem ? s->elem->n_event_subprocesses : model->n_event_subprocesses;
            const struct cf_elem *esp = match_event_subprocess(esps, n, code, from);
            if (esp)
                return catch_by_event_subprocess(e, s, esp, code, message);
            if (s->elem && !s->elem->triggered_by_event) {
                const struct cf_elem *b = match_boundary(s->elem, code);
                if (b)
                    return catch_by_boundary(e, s, b, code, message);
            }
        }
        /* Not caught in this instance: the call activity that started it throws it on, after its
         * camunda:out mappings, as Camunda 7's OutputVariablesPropagator does. */
        struct cf_exec *px = caller_of(e, from->inst);
        if (!px)
            break;
        char err[1024];
        int mrc = apply_var_mappings(e, from->inst->root, px, px->elem->call_out,
                                     px->elem->n_call_out, false, err, sizeof(err));
        if (mrc && mrc != CF_EEXPR)
            return mrc;
        if (mrc)
            cf_log(CF_LOG_WARN, "instance=%" PRId64 " activity=%s: out mapping skipped: %s",
                   px->inst->id, px->elem->id, err);
        act = px;
        from = px;
        scope = px->parent;
    }
    *caught = false;
    if (e->opt.uncaught_error_ends) {
        cf_log(CF_LOG_INFO,
               "instance=%" PRId64 " activity=%s: BPMN error '%s' not caught; execution ended "
               "(none end event semantics)",
               x->inst->id, x->elem->id, code);
        *caught = true;
        return end_token(e, x);
    }
    char *msg = cf_xasprintf("BPMN error '%s'%s%s%s thrown by %s is not caught by any error "
                             "boundary event or error event subprocess",
                             code, message ? " (" : "", message ? message : "", message ? ")" : "",
                             x->elem->id);
    x->resume = job_id ? RS_NONE : RS_EXECUTE;
    int rc = cf__incident(e, x, "unhandledBpmnError", job_id, msg);
    free(msg);
    return rc;
}

/* --- timers, messages and call activities --- */

int cf__timer_due(const struct cf_elem *el, struct cf_exec *x, int64_t *due, int64_t *repeats,
                  char *err, size_t errlen)
{
    struct cf_val v = CF_VAL_NULL_INIT;
    char detail[512];
    *repeats = 0;
    if (!el->timer_expr) {
        cf_errf(err, errlen, "timer of %s has no definition", el->id);
        return CF_EINVALID;
    }
    if (cf_expr_eval(el->timer_expr, cf__expr_lookup, x, &v, detail, sizeof(detail)) != 0) {
        cf_errf(err, errlen, "timer of %s: %s", el->id, detail);
        return CF_EEXPR;
    }
    struct cf_buf text;
    cf_buf_init(&text);
    cf_val_to_text(&v, &text);
    cf_val_free(&v);
    int64_t now = (int64_t)cf_now_ms();
    int rc = 0;
    switch (el->timer) {
    case CF_TIMER_DATE:
        rc = cf_iso_parse_datetime(text.data, due, detail, sizeof(detail));
        break;
    case CF_TIMER_DURATION: {
        struct cf_iso_duration d;
        rc = cf_iso_parse_duration(text.data, &d, detail, sizeof(detail));
        if (!rc)
            rc = cf_iso_duration_add(&d, now, due, detail, sizeof(detail));
        break;
    }
    case CF_TIMER_CYCLE: {
        struct cf_iso_cycle c;
        rc = cf_iso_parse_cycle(text.data, &c, detail, sizeof(detail));
        if (!rc)
            rc = cf_iso_cycle_next(&c, now, due, detail, sizeof(detail));
        /* Firings after this one; -1 is unbounded. */
        if (!rc)
            *repeats = c.repetitions < 0 ? -1 : c.repetitions - 1;
        break;
    }
    default:
        cf_errf(detail, sizeof(detail), "no timeDate, timeDuration or timeCycle");
        rc = CF_EINVALID;
    }
    if (rc)
        cf_errf(err, errlen, "timer of %s ('%s'): %s", el->id, text.data ? text.data : "", detail);
    cf_buf_free(&text);
    return rc ? CF_EEXPR : 0;
}

/* A timer job for `el` (catch, boundary or start event) on execution x (NULL for start). */
static int timer_job(struct cf_engine *e, struct cf_exec *x, const struct cf_elem *el,
                     int64_t definition_id, int64_t due, int64_t repeats)
{
    char payload[48];
    snprintf(payload, sizeof(payload), "repeats=%" PRId64, repeats);
    struct cf_job_row row = {
        .instance_id = x ? x->inst->id : 0,
        .execution_id = x ? x->id : 0,
        .activity_id = (char *)el->id,
        .act_inst_id = x ? x->act_inst_id : 0,
        .due_at = due > 0 ? (uint64_t)due : 0,
        .retries = cf__initial_retries(el),
        .payload = payload,
        .created_at = cf_now_ms(),
        .definition_id = definition_id,
    };
    cf_strlcpy(row.type, "timer", sizeof(row.type));
    int rc = cf_store_job_insert(e->store, &row);
    if (!rc && (!e->next_due || row.due_at < e->next_due))
        e->next_due = row.due_at;
    return rc;
}

static int subscribe(struct cf_engine *e, struct cf_exec *x, const struct cf_elem *el)
{
    struct cf_sub_row r = {
        .name = el->message_name,
        .tenant_id = x->inst->tenant_id,
        .instance_id = x->inst->id,
        .execution_id = x->id,
        .activity_id = el->id,
        .act_inst_id = x->act_inst_id,
    };
    return cf_store_sub_insert(e->store, &r, NULL);
}

/* Timer and message boundary events listen while their activity runs. */
static int arm_boundaries(struct cf_engine *e, struct cf_exec *x)
{
    for (size_t i = 0; i < x->elem->n_boundaries; i++) {
        const struct cf_elem *b = x->elem->boundaries[i];
        int rc = 0;
        if (b->event == CF_EV_TIMER) {
            int64_t due, repeats;
            char err[1024];
            rc = cf__timer_due(b, x, &due, &repeats, err, sizeof(err));
            if (rc == CF_EEXPR) {
                /* The activity must not start with a boundary it cannot arm. */
                rc = stop(e, x, RS_EXECUTE, "expression", err);
                return rc ? rc : CF_ECANCELED;
            }
            if (!rc)
                rc = timer_job(e, x, b, 0, due, repeats);
        } else if (b->event == CF_EV_MESSAGE) {
            rc = subscribe(e, x, b);
        }
        if (rc)
            return rc;
    }
    return 0;
}

/* Takes a boundary event of the activity of x: interrupting cancels the activity; a
 * non-interrupting one starts a parallel path and lets the activity go on. */
static int take_boundary(struct cf_engine *e, struct cf_exec *x, const struct cf_elem *b)
{
    struct cf_exec *scope = x->parent;
    struct cf_exec *y;
    int rc = 0;
    if (b->cancel_activity)
        rc = cancel_tree(e, x, "canceled");
    if (!rc)
        rc = exec_new(e, scope->inst, scope, b, EX_READY, &y);
    if (!rc)
        push(e, y, OP_ENTER);
    return rc;
}

struct child_list {
    int64_t ids[64];
    size_t n;
};

static int collect_child(void *arg, const struct cf_inst_row *r)
{
    struct child_list *l = arg;
    if (l->n < CF_ARRAY_LEN(l->ids))
        l->ids[l->n++] = r->id;
    return 0;
}

/* A call activity that is canceled takes the instances it called with it. */
static int cancel_children_of_call(struct cf_engine *e, struct cf_exec *x)
{
    struct child_list l = {.n = 0};
    int rc = cf_store_instance_children(e->store, x->id, collect_child, &l);
    for (size_t i = 0; i < l.n && !rc; i++) {
        char err[256];
        struct cf_instance *child = cf__instance_get(e, l.ids[i], err, sizeof(err));
        if (!child || child->ended)
            continue;
        cf__touch(e, child);
        while (child->root->first_child && !rc)
            rc = cancel_tree(e, child->root->first_child, "canceled");
        if (!rc)
            rc = cf_store_instance_end(e->store, child->id, "CANCELED", cf_now_ms());
        if (!rc) {
            child->ended = true;
            cf__notify_ended(e, child->id, "CANCELED");
        }
    }
    return rc;
}

static int apply_var_mappings(struct cf_engine *e, struct cf_exec *from, struct cf_exec *to,
                              const struct cf_var_mapping *maps, size_t n, bool into_child,
                              char *err, size_t errlen)
{
    for (size_t i = 0; i < n; i++) {
        const struct cf_var_mapping *m = &maps[i];
        int rc = 0;
        if (m->business_key)
            continue;
        if (m->all) {
            /* Every variable visible in `from`, outermost first so that inner ones win. */
            struct cf_exec *chain[64];
            size_t depth = 0;
            for (struct cf_exec *c = from; c && depth < CF_ARRAY_LEN(chain); c = c->parent)
                chain[depth++] = c;
            while (depth-- > 0 && !rc)
                for (size_t k = 0; k < chain[depth]->n_vars && !rc; k++)
                    rc = into_child ? var_set_local(e, to, chain[depth]->vars[k].name,
                                                    &chain[depth]->vars[k].val)
                                    : cf__var_set(e, to, chain[depth]->vars[k].name,
                                                  &chain[depth]->vars[k].val);
        } else if (m->target) {
            struct cf_val v = CF_VAL_NULL_INIT;
            if (m->source_expr) {
                char detail[512];
                if (cf_expr_eval(m->source_expr, cf__expr_lookup, from, &v, detail,
                                 sizeof(detail)) != 0) {
                    cf_errf(err, errlen, "mapping to '%s': %s", m->target, detail);
                    return CF_EEXPR;
                }
            } else if (m->source) {
                const struct cf_val *src = cf__var_lookup(from, m->source);
                if (src)
                    cf_val_copy(&v, src);
            }
            rc = into_child ? var_set_local(e, to, m->target, &v)
                            : cf__var_set(e, to, m->target, &v);
            cf_val_free(&v);
        }
        if (rc)
            return rc;
    }
    return 0;
}

/* A called instance completed: camunda:out mappings, then the call activity moves on. */
static int return_to_caller(struct cf_engine *e, struct cf_instance *child)
{
    struct cf_exec *px = caller_of(e, child);
    if (!px || px->state != EX_WAITING)
        return 0;
    char err[1024];
    int rc = apply_var_mappings(e, child->root, px, px->elem->call_out, px->elem->n_call_out, false,
                                err, sizeof(err));
    if (rc == CF_EEXPR)
        return stop(e, px, RS_LEAVE, "expression", err);
    if (rc)
        return rc;
    px->state = EX_READY;
    push(e, px, OP_LEAVE);
    return 0;
}

static int call_activity(struct cf_engine *e, struct cf_exec *x)
{
    const struct cf_elem *el = x->elem;
    char err[1024];
    struct cf_def_row row;
    int rc;
    const char *binding = el->called_binding ? el->called_binding : "latest";
    if (strcmp(binding, "deployment") == 0) {
        /* The version deployed together with the caller. */
        struct cf_def_row me;
        rc = cf_store_def_get(e->store, x->inst->def->id, false, &me);
        if (rc)
            return rc;
        rc = cf_store_def_in_deployment(e->store, me.deployment_id, el->called_element, &row);
        cf_def_row_free(&me);
    } else if (strcmp(binding, "version") == 0) {
        int64_t v = 0;
        if (cf_parse_i64(el->called_version ? el->called_version : "", &v) != 0 || v < 1 ||
            v > INT32_MAX)
            rc = CF_ENOENT;
        else
            rc = cf_store_def_by_version(e->store, x->inst->tenant_id, el->called_element, (int)v,
                                         &row);
    } else {
        rc = cf_store_def_latest(e->store, x->inst->tenant_id, el->called_element, &row);
    }
    if (rc == CF_ENOENT) {
        cf_errf(err, sizeof(err), "call activity %s: no deployed process '%s'%s%s%s", el->id,
                el->called_element, el->called_version ? " version " : "",
                el->called_version ? el->called_version : "",
                strcmp(binding, "deployment") == 0 ? " in the caller's deployment" : "");
        return stop(e, x, RS_EXECUTE, "expression", err);
    }
    if (rc)
        return rc;
    int64_t def_id = row.id;
    cf_def_row_free(&row);
    struct cf_definition *def = cf__definition_get(e, def_id, err, sizeof(err));
    if (!def)
        return stop(e, x, RS_EXECUTE, "expression", err);
    if (!def->model->none_start) {
        cf_errf(err, sizeof(err), "call activity %s: process '%s' has no none start event", el->id,
                def->key);
        return stop(e, x, RS_EXECUTE, "expression", err);
    }
    char *bkey = NULL;
    for (size_t i = 0; i < el->n_call_in; i++) {
        if (!el->call_in[i].business_key || !el->call_in[i].source_expr)
            continue;
        struct cf_val v = CF_VAL_NULL_INIT;
        char detail[512];
        if (cf_expr_eval(el->call_in[i].source_expr, cf__expr_lookup, x, &v, detail,
                         sizeof(detail)) != 0) {
            cf_errf(err, sizeof(err), "business key of %s: %s", el->id, detail);
            free(bkey);
            return stop(e, x, RS_EXECUTE, "expression", err);
        }
        struct cf_buf b;
        cf_buf_init(&b);
        cf_val_to_text(&v, &b);
        cf_val_free(&v);
        free(bkey);
        bkey = cf_buf_steal(&b);
    }
    x->state = EX_WAITING;
    if ((rc = save_exec(e, x))) {
        free(bkey);
        return rc;
    }
    struct cf_instance *child;
    rc = cf__instance_create(e, def, bkey, NULL, 0, NULL, x, &child);
    free(bkey);
    if (rc)
        return rc;
    rc = apply_var_mappings(e, x, child->root, el->call_in, el->n_call_in, true, err, sizeof(err));
    if (rc == CF_EEXPR)
        return stop(e, x, RS_EXECUTE, "expression", err);
    return rc;
}

/* --- element behaviour --- */

static int eval_mappings(struct cf_engine *e, struct cf_exec *ctx, struct cf_exec *target,
                         const struct cf_mapping *maps, size_t n, bool local, char *err,
                         size_t errlen)
{
    for (size_t i = 0; i < n; i++) {
        struct cf_val v = CF_VAL_NULL_INIT;
        if (maps[i].value) {
            char detail[512];
            int rc = cf_expr_eval(maps[i].value, cf__expr_lookup, ctx, &v, detail, sizeof(detail));
            if (rc) {
                cf_errf(err, errlen, "%s parameter '%s': %s", local ? "input" : "output",
                        maps[i].name, detail);
                return CF_EEXPR;
            }
        }
        int rc = local ? var_set_local(e, target, maps[i].name, &v)
                       : cf__var_set(e, target, maps[i].name, &v);
        cf_val_free(&v);
        if (rc)
            return rc;
    }
    return 0;
}

int cf__job_create(struct cf_engine *e, struct cf_exec *x, const char *type, uint64_t due_at,
                   int retries)
{
    uint64_t now = cf_now_ms();
    bool immediate = due_at <= now;
    struct cf_job_row row = {
        .instance_id = x->inst->id,
        .execution_id = x->id,
        .activity_id = (char *)x->elem->id,
        .act_inst_id = x->act_inst_id,
        .due_at = due_at,
        .retries = retries,
        .attempt = immediate ? 1 : 0,
        /* A job due now is locked by this engine in the same transaction, because it will run
         * right after the commit; that saves a second write to acquire it. */
        .lock_owner = immediate ? e->node_id : NULL,
        .lock_expires_at = immediate ? now + e->opt.lock_ms : 0,
        .created_at = now,
    };
    cf_strlcpy(row.type, type, sizeof(row.type));
    int rc = cf_store_job_insert(e->store, &row);
    if (rc)
        return rc;
    if (immediate) {
        struct cf_jobref *j = cf_xcalloc(1, sizeof(*j));
        j->id = row.id;
        cf_strlcpy(j->type, type, sizeof(j->type));
        j->instance_id = x->inst->id;
        j->execution_id = x->id;
        j->act_inst_id = x->act_inst_id;
        j->retries = retries;
        j->attempt = 1;
        j->next = e->new_jobs;
        e->new_jobs = j;
    } else if (!e->next_due || due_at < e->next_due) {
        e->next_due = due_at;
    }
    x->state = EX_WAITING;
    return save_exec(e, x);
}

static int op_enter(struct cf_engine *e, struct cf_exec *x)
{
    int rc = hist_start(e, x);
    if (rc)
        return rc;
    if (x->elem->async_before) {
        /* Commit here; the rest of the step runs as a job with its own retries. */
        return cf__job_create(e, x, "async-before", cf_now_ms(), cf__initial_retries(x->elem));
    }
    x->state = EX_READY;
    push(e, x, OP_EXECUTE);
    return save_exec(e, x);
}

/* Tokens of the same scope that can still reach `gw` (for inclusive joins). */
static bool can_reach(const struct cf_elem *from, const struct cf_elem *gw, size_t n_elems,
                      unsigned char *seen)
{
    const struct cf_elem *stack[256];
    size_t sp = 0;
    memset(seen, 0, n_elems);
    stack[sp++] = from;
    seen[from->index] = 1;
    while (sp) {
        const struct cf_elem *el = stack[--sp];
        for (size_t pass = 0; pass < 2; pass++) {
            /* Boundary events are ways out of an activity too. */
            size_t n = pass ? el->n_boundaries : el->n_outgoing;
            for (size_t i = 0; i < n; i++) {
                const struct cf_elem *t = pass ? el->boundaries[i] : el->outgoing[i]->target;
                if (t == gw)
                    return true;
                if (!seen[t->index]) {
                    seen[t->index] = 1;
                    if (sp == CF_ARRAY_LEN(stack))
                        return true; /* too wide to prove unreachable: keep waiting */
                    stack[sp++] = t;
                }
            }
        }
    }
    return false;
}

static bool inclusive_join_ready(struct cf_engine *e, struct cf_exec *x)
{
    const struct cf_model *m = x->inst->def->model;
    unsigned char *seen = cf_xmalloc(m->n_elements ? m->n_elements : 1);
    bool ready = true;
    for (struct cf_exec *s = x->parent->first_child; s && ready; s = s->next) {
        if (s == x || s->dead || (s->state == EX_JOINING && s->elem == x->elem))
            continue;
        if (s->elem && can_reach(s->elem, x->elem, m->n_elements, seen))
            ready = false;
    }
    free(seen);
    (void)e;
    return ready;
}

/* Merges the tokens waiting at a join into x; returns whether the join fires. */
static int join(struct cf_engine *e, struct cf_exec *x, bool *fire)
{
    size_t arrived = 1;
    for (struct cf_exec *s = x->parent->first_child; s; s = s->next)
        if (s != x && s->state == EX_JOINING && s->elem == x->elem)
            arrived++;
    if (x->elem->type == CF_EL_PARALLEL_GATEWAY)
        *fire = arrived >= x->elem->n_incoming;
    else
        *fire = inclusive_join_ready(e, x);
    if (!*fire) {
        x->state = EX_JOINING;
        return save_exec(e, x);
    }
    struct cf_exec *s = x->parent->first_child;
    while (s) {
        struct cf_exec *n = s->next;
        if (s != x && s->state == EX_JOINING && s->elem == x->elem) {
            int rc = cancel_tree(e, s, "completed");
            if (rc)
                return rc;
        }
        s = n;
    }
    return 0;
}

static int op_execute(struct cf_engine *e, struct cf_exec *x)
{
    const struct cf_elem *el = x->elem;
    char err[1024];
    int rc;
    if (el->n_inputs) {
        rc = eval_mappings(e, x, x, el->inputs, el->n_inputs, true, err, sizeof(err));
        if (rc == CF_EEXPR)
            return stop(e, x, RS_EXECUTE, "expression", err);
        if (rc)
            return rc;
    }
    if (el->n_boundaries) {
        rc = arm_boundaries(e, x);
        if (rc == CF_ECANCELED)
            return 0;
        if (rc)
            return rc;
    }
    switch (el->type) {
    case CF_EL_START_EVENT:
    case CF_EL_TASK:
    case CF_EL_INTERMEDIATE_THROW:
    case CF_EL_BOUNDARY_EVENT:
        push(e, x, OP_LEAVE);
        return 0;
    case CF_EL_INTERMEDIATE_CATCH:
        if (el->event == CF_EV_TIMER) {
            int64_t due, repeats;
            rc = cf__timer_due(el, x, &due, &repeats, err, sizeof(err));
            if (rc == CF_EEXPR)
                return stop(e, x, RS_EXECUTE, "expression", err);
            if (!rc)
                rc = timer_job(e, x, el, 0, due, 0);
        } else {
            rc = subscribe(e, x, el);
        }
        if (rc)
            return rc;
        x->state = EX_WAITING;
        return save_exec(e, x);
    case CF_EL_RECEIVE_TASK:
        if ((rc = subscribe(e, x, el)))
            return rc;
        x->state = EX_WAITING;
        return save_exec(e, x);
    case CF_EL_CALL_ACTIVITY:
        return call_activity(e, x);
    case CF_EL_END_EVENT:
        if (el->event == CF_EV_ERROR) {
            bool caught;
            int64_t open_act = x->act_inst_id;
            if ((rc = hist_end(e, x, "completed")))
                return rc;
            rc = throw_error(e, x, el->error_code, el->error_message, 0, &caught);
            if (!rc && !caught && !x->dead) {
                /* Stuck with an incident: the end event did not complete after all. */
                x->act_inst_id = open_act;
                rc = cf_store_hist_end(e->store, open_act, 0, NULL);
                if (!rc)
                    rc = save_exec(e, x);
            }
            return rc;
        }
        if (el->event == CF_EV_TERMINATE) {
            struct cf_exec *scope = x->parent;
            if ((rc = hist_end(e, x, "completed")))
                return rc;
            while (scope->first_child)
                if ((rc = cancel_tree(e, scope->first_child, "canceled")))
                    return rc;
            if (!scope->parent)
                return complete_instance(e, x->inst, "TERMINATED");
            return scope_check(e, scope);
        }
        if ((rc = hist_end(e, x, "completed")))
            return rc;
        return end_token(e, x);
    case CF_EL_SERVICE_TASK:
        return cf__job_create(e, x, "call", cf_now_ms(), cf__initial_retries(el));
    case CF_EL_PARALLEL_GATEWAY:
    case CF_EL_INCLUSIVE_GATEWAY:
        if (el->n_incoming > 1) {
            bool fire;
            if ((rc = join(e, x, &fire)))
                return rc;
            if (!fire)
                return 0;
        }
        push(e, x, OP_LEAVE);
        return 0;
    case CF_EL_EXCLUSIVE_GATEWAY:
        push(e, x, OP_LEAVE);
        return 0;
    case CF_EL_SUBPROCESS: {
        struct cf_exec *start;
        x->state = EX_SCOPE;
        if ((rc = save_exec(e, x)))
            return rc;
        if ((rc = exec_new(e, x->inst, x, el->none_start, EX_READY, &start)))
            return rc;
        push(e, start, OP_ENTER);
        return 0;
    }
    default:
        return stop(e, x, RS_EXECUTE, "expression",
                    "this element cannot be executed by this version of certflow");
    }
}

static int op_leave(struct cf_engine *e, struct cf_exec *x)
{
    const struct cf_elem *el = x->elem;
    int rc;
    if (el->n_outputs) {
        char err[1024];
        rc = eval_mappings(e, x, x->parent, el->outputs, el->n_outputs, false, err, sizeof(err));
        if (rc == CF_EEXPR)
            return stop(e, x, RS_LEAVE, "expression", err);
        if (rc)
            return rc;
    }
    /* The activity instance stays open until its outgoing flows are chosen (op_take), so that
     * an incident there leaves it active, as Camunda shows it. */
    if (el->async_after && (rc = hist_end(e, x, "completed")))
        return rc;
    if ((rc = drop_locals(e, x)))
        return rc;
    if (el->n_boundaries) {
        /* Boundary timers and message subscriptions listen only while the activity runs. */
        if ((rc = cf_store_jobs_delete_execution(e->store, x->id)) ||
            (rc = cf_store_subs_delete_execution(e->store, x->id)))
            return rc;
    }
    if (el->async_after)
        return cf__job_create(e, x, "async-after", cf_now_ms(), cf__initial_retries(el));
    push(e, x, OP_TAKE);
    return 0;
}

/* Evaluates a flow's condition; a flow without one counts as true. */
static int flow_true(struct cf_exec *x, const struct cf_flow *f, bool *out, char *err,
                     size_t errlen)
{
    if (!f->condition) {
        *out = true;
        return 0;
    }
    char detail[512];
    int rc = cf_expr_eval_bool(f->condition, cf__expr_lookup, x, out, detail, sizeof(detail));
    if (rc)
        cf_errf(err, errlen, "condition of sequence flow %s: %s", f->id, detail);
    return rc;
}

static int op_take(struct cf_engine *e, struct cf_exec *x)
{
    const struct cf_elem *el = x->elem;
    struct cf_flow *chosen[64];
    struct cf_flow **sel = chosen;
    size_t n = 0;
    char err[1024];
    int rc = 0;
    if (el->n_outgoing > CF_ARRAY_LEN(chosen))
        sel = cf_xmalloc(el->n_outgoing * sizeof(*sel));
    bool conditional = false;
    for (size_t i = 0; i < el->n_outgoing && !rc; i++) {
        struct cf_flow *f = el->outgoing[i];
        if (f->is_default)
            continue;
        if (el->type == CF_EL_PARALLEL_GATEWAY) {
            sel[n++] = f;
            continue;
        }
        bool ok;
        if (flow_true(x, f, &ok, err, sizeof(err))) {
            rc = CF_EEXPR;
            break;
        }
        if (f->condition)
            conditional = true;
        if (ok) {
            sel[n++] = f;
            if (el->type == CF_EL_EXCLUSIVE_GATEWAY)
                break;
        }
    }
    if (rc == CF_EEXPR) {
        rc = stop(e, x, RS_TAKE, "expression", err);
        goto out;
    }
    bool gateway = el->type == CF_EL_EXCLUSIVE_GATEWAY || el->type == CF_EL_INCLUSIVE_GATEWAY;
    if (el->default_flow && (gateway ? n == 0 : (conditional && n == 0)))
        sel[n++] = el->default_flow;
    if (n == 0 && gateway) {
        char *msg = cf_xasprintf("No outgoing sequence flow for the element with id '%s' could "
                                 "be selected for continuing the process",
                                 el->id);
        rc = stop(e, x, RS_TAKE, "noMatchingFlow", msg);
        free(msg);
        goto out;
    }
    if ((rc = hist_end(e, x, "completed")))
        goto out;
    if (n == 0) {
        rc = end_token(e, x);
        goto out;
    }
    /* The first flow keeps the execution and moves first; further flows fork new executions. */
    x->elem = sel[0]->target;
    x->resume = RS_NONE;
    push(e, x, OP_ENTER);
    for (size_t i = 1; i < n; i++) {
        struct cf_exec *y;
        if ((rc = exec_new(e, x->inst, x->parent, sel[i]->target, EX_READY, &y)))
            goto out;
        push(e, y, OP_ENTER);
    }
out:
    if (sel != chosen)
        free(sel);
    return rc;
}

/* An execution waiting at an inclusive join that no other token can reach any more. */
static struct cf_exec *ready_inclusive_join(struct cf_engine *e, struct cf_exec *scope)
{
    for (struct cf_exec *c = scope->first_child; c; c = c->next) {
        if (c->state == EX_JOINING && c->elem->type == CF_EL_INCLUSIVE_GATEWAY &&
            inclusive_join_ready(e, c))
            return c;
        if (c->first_child) {
            struct cf_exec *j = ready_inclusive_join(e, c);
            if (j)
                return j;
        }
    }
    return NULL;
}

static int drain(struct cf_engine *e, struct cf_instance *inst)
{
    int rc = 0;
    for (;;) {
        while (e->agenda_len && !rc) {
            struct cf_agenda_op op = e->agenda[e->agenda_head++];
            e->agenda_len--;
            if (op.x->dead)
                continue;
            if (++inst->steps > MAX_STEPS_PER_ITEM) {
                char *msg = cf_xasprintf("more than %u steps without reaching a wait state: the "
                                         "process loops",
                                         MAX_STEPS_PER_ITEM);
                enum cf_resume r = op.op == OP_LEAVE  ? RS_LEAVE
                                   : op.op == OP_TAKE ? RS_TAKE
                                                      : RS_EXECUTE;
                rc = stop(e, op.x, r, "runawayLoop", msg);
                free(msg);
                e->agenda_len = 0;
                break;
            }
            switch ((enum op)op.op) {
            case OP_ENTER:
                rc = op_enter(e, op.x);
                break;
            case OP_EXECUTE:
                rc = op_execute(e, op.x);
                break;
            case OP_LEAVE:
                rc = op_leave(e, op.x);
                break;
            case OP_TAKE:
                rc = op_take(e, op.x);
                break;
            }
        }
        if (rc || inst->ended)
            break;
        /* Tokens that ended or moved on may have released an inclusive join. */
        struct cf_exec *j = ready_inclusive_join(e, inst->root);
        if (!j)
            break;
        bool fire;
        rc = join(e, j, &fire);
        if (rc || !fire)
            break;
        push(e, j, OP_LEAVE);
    }
    e->agenda_head = 0;
    e->agenda_len = 0;
    return rc;
}

/* --- entry points used by engine.c --- */

int cf__instance_create(struct cf_engine *e, struct cf_definition *def, const char *business_key,
                        const struct cf_named_val *vars, size_t n_vars, const struct cf_elem *start,
                        struct cf_exec *caller, struct cf_instance **out)
{
    struct cf_instance *inst = cf_xcalloc(1, sizeof(*inst));
    inst->def = def;
    inst->tenant_id = cf_xstrdup(def->tenant_id);
    inst->business_key = business_key ? cf_xstrdup(business_key) : NULL;
    if (caller) {
        inst->super_instance_id = caller->inst->id;
        inst->super_exec_id = caller->id;
    }
    int rc = cf_store_instance_insert(e->store, def->id, def->tenant_id, business_key,
                                      caller ? caller->id : 0, cf_now_ms(), &inst->id);
    if (!rc)
        rc = exec_new(e, inst, NULL, NULL, EX_SCOPE, &inst->root);
    if (rc) {
        cf__instance_free(inst);
        return rc;
    }
    cf_imap_put(&e->instances, inst->id, inst);
    cf__touch(e, inst);
    for (size_t i = 0; i < n_vars && !rc; i++)
        rc = var_set_local(e, inst->root, vars[i].name, &vars[i].val);
    struct cf_exec *first;
    if (!rc)
        rc =
            exec_new(e, inst, inst->root, start ? start : def->model->none_start, EX_READY, &first);
    *out = inst;
    if (rc)
        return rc;
    push(e, first, OP_ENTER);
    /* A called instance moves inside its caller's step: the caller drains the agenda. */
    return caller ? 0 : drain(e, inst);
}

int cf__instance_prepare(struct cf_engine *e, struct cf_definition *def, const char *business_key,
                         const struct cf_named_val *vars, size_t n_vars, struct cf_instance **out)
{
    struct cf_instance *inst = cf_xcalloc(1, sizeof(*inst));
    inst->def = def;
    inst->tenant_id = cf_xstrdup(def->tenant_id);
    inst->business_key = business_key ? cf_xstrdup(business_key) : NULL;
    inst->created = true;
    int rc =
        cf_store_instance_insert(e->store, def->id, def->tenant_id, business_key, 0, 0, &inst->id);
    if (!rc)
        rc = exec_new(e, inst, NULL, NULL, EX_SCOPE, &inst->root);
    if (rc) {
        cf__instance_free(inst);
        return rc;
    }
    cf_imap_put(&e->instances, inst->id, inst);
    cf__touch(e, inst);
    for (size_t i = 0; i < n_vars && !rc; i++)
        rc = var_set_local(e, inst->root, vars[i].name, &vars[i].val);
    if (rc)
        return rc;
    /* The start is a job of the root execution, run once this transaction has committed. */
    uint64_t now = cf_now_ms();
    struct cf_job_row row = {
        .instance_id = inst->id,
        .execution_id = inst->root->id,
        .activity_id = (char *)def->model->none_start->id,
        .due_at = now,
        .retries = cf__initial_retries(NULL),
        .attempt = 1,
        .lock_owner = e->node_id,
        .lock_expires_at = now + e->opt.lock_ms,
        .created_at = now,
    };
    cf_strlcpy(row.type, "start", sizeof(row.type));
    if ((rc = cf_store_job_insert(e->store, &row)))
        return rc;
    struct cf_jobref *j = cf_xcalloc(1, sizeof(*j));
    j->id = row.id;
    cf_strlcpy(j->type, "start", sizeof(j->type));
    j->instance_id = inst->id;
    j->execution_id = inst->root->id;
    j->retries = row.retries;
    j->attempt = 1;
    j->next = e->new_jobs;
    e->new_jobs = j;
    *out = inst;
    return 0;
}

int cf__instance_begin(struct cf_engine *e, struct cf_instance *inst)
{
    struct cf_exec *first;
    int rc = cf_store_instance_activate(e->store, inst->id, cf_now_ms());
    if (!rc)
        rc = exec_new(e, inst, inst->root, inst->def->model->none_start, EX_READY, &first);
    if (rc)
        return rc;
    inst->created = false;
    inst->steps = 0;
    push(e, first, OP_ENTER);
    return drain(e, inst);
}

int cf__instance_cancel(struct cf_engine *e, struct cf_instance *inst)
{
    int rc = 0;
    cf__touch(e, inst);
    while (inst->root->first_child && !rc)
        rc = cancel_tree(e, inst->root->first_child, "canceled");
    if (!rc)
        rc = cf_store_jobs_delete_execution(e->store, inst->root->id);
    if (!rc)
        rc = cf_store_instance_end(e->store, inst->id, "CANCELED", cf_now_ms());
    if (!rc) {
        inst->ended = true;
        inst->created = false;
        cf__notify_ended(e, inst->id, "CANCELED");
    }
    return rc;
}

int cf__root_vars(struct cf_engine *e, struct cf_instance *inst, const struct cf_named_val *set,
                  size_t n_set, const char *const *deletions, size_t n_del)
{
    int rc = 0;
    cf__touch(e, inst);
    struct cf_exec *root = inst->root;
    for (size_t i = 0; i < n_del && !rc; i++) {
        for (size_t k = 0; k < root->n_vars; k++) {
            if (strcmp(root->vars[k].name, deletions[i]) != 0)
                continue;
            rc = cf_store_var_delete(e->store, root->id, deletions[i]);
            free(root->vars[k].name);
            cf_val_free(&root->vars[k].val);
            root->vars[k] = root->vars[--root->n_vars];
            break;
        }
    }
    for (size_t i = 0; i < n_set && !rc; i++)
        rc = var_set_local(e, root, set[i].name, &set[i].val);
    return rc;
}

int cf__run_job(struct cf_engine *e, struct cf_instance *inst, struct cf_exec *x,
                const struct cf_jobref *job)
{
    int rc = cf_store_job_delete(e->store, job->id);
    if (rc)
        return rc;
    inst->steps = 0;
    x->state = EX_READY;
    if (strcmp(job->type, "async-before") == 0)
        push(e, x, OP_EXECUTE);
    else
        push(e, x, OP_TAKE);
    return drain(e, inst);
}

int cf__apply_outcome(struct cf_engine *e, struct cf_instance *inst, struct cf_exec *x,
                      struct cf_item *it)
{
    int rc = 0;
    inst->steps = 0;
    const struct cf_jobref *job = it->job;
    switch (it->outcome) {
    case OUT_COMPLETE:
        if ((rc = cf_store_job_delete(e->store, job->id)))
            return rc;
        for (size_t i = 0; i < it->n_vars && !rc; i++)
            rc = cf__var_set(e, x, it->vars[i].name, &it->vars[i].val);
        if (rc)
            return rc;
        x->state = EX_READY;
        push(e, x, OP_LEAVE);
        break;
    case OUT_ERROR: {
        bool caught;
        rc = throw_error(e, x, it->code, it->message, job->id, &caught);
        if (!rc && caught)
            rc = cf_store_job_delete(e->store, job->id);
        else if (!rc) {
            char *msg = cf_xasprintf("BPMN error '%s' not caught", it->code);
            rc = cf_store_job_fail(e->store, job->id, 0, job->attempt, cf_now_ms(), msg);
            free(msg);
        }
        break;
    }
    case OUT_FAIL: {
        int retries = job->retries - 1;
        const char *msg = it->message ? it->message : "the plug-in failed";
        uint64_t due = 0;
        if (it->retryable && retries > 0 && cf__retry_due(x->elem, retries, &due) == 0) {
            rc = cf_store_job_fail(e->store, job->id, retries, job->attempt, due, msg);
            if (!e->next_due || due < e->next_due)
                e->next_due = due;
            cf_log(CF_LOG_INFO,
                   "job=%" PRId64 " instance=%" PRId64 " activity=%s failed (attempt %d), %d "
                   "retries left: %s",
                   job->id, inst->id, x->elem->id, job->attempt, retries, msg);
        } else {
            rc = cf_store_job_fail(e->store, job->id, 0, job->attempt, cf_now_ms(), msg);
            if (!rc) {
                char *full = it->retryable ? cf_xasprintf("%s (no retries left after %d attempts)",
                                                          msg, job->attempt)
                                           : cf_xstrdup(msg);
                x->resume = RS_NONE;
                rc = cf__incident(e, x, "failedJob", job->id, full);
                free(full);
            }
        }
        return rc;
    }
    }
    if (rc)
        return rc;
    return drain(e, inst);
}

int cf__retry_exec(struct cf_engine *e, struct cf_instance *inst, struct cf_exec *x)
{
    enum cf_resume r = x->resume;
    inst->steps = 0;
    x->state = EX_READY;
    x->resume = RS_NONE;
    int rc = save_exec(e, x);
    if (rc)
        return rc;
    push(e, x, r == RS_LEAVE ? OP_LEAVE : r == RS_TAKE ? OP_TAKE : OP_EXECUTE);
    return drain(e, inst);
}

static int64_t payload_repeats(const char *payload)
{
    int64_t r = 0;
    if (payload && strncmp(payload, "repeats=", 8) == 0)
        cf_parse_i64(payload + 8, &r);
    return r;
}

/* Schedules the next firing of a cycle timer that still has firings left, reusing its row. */
static int reschedule(struct cf_engine *e, const struct cf_job_row *job, const struct cf_elem *el,
                      struct cf_exec *x, bool *again)
{
    int64_t left = payload_repeats(job->payload);
    *again = false;
    if (el->timer != CF_TIMER_CYCLE || left == 0)
        return 0;
    int64_t due, unused;
    char err[512];
    if (cf__timer_due(el, x, &due, &unused, err, sizeof(err)) != 0) {
        cf_log(CF_LOG_WARN, "timer %s: no next firing: %s", el->id, err);
        return 0;
    }
    struct cf_job_row next = *job;
    char payload[48];
    snprintf(payload, sizeof(payload), "repeats=%" PRId64, left < 0 ? -1 : left - 1);
    next.payload = payload;
    next.due_at = (uint64_t)due;
    next.lock_owner = NULL;
    next.attempt = 0;
    next.retries = cf__initial_retries(el);
    next.created_at = cf_now_ms();
    int rc = cf_store_job_insert(e->store, &next);
    if (!rc && (!e->next_due || next.due_at < e->next_due))
        e->next_due = next.due_at;
    *again = true;
    return rc;
}

int cf__fire_timer(struct cf_engine *e, const struct cf_job_row *job)
{
    char err[512];
    int rc = cf_store_job_delete(e->store, job->id);
    if (rc)
        return rc;
    if (!job->instance_id) {
        /* A timer start event: a new instance of the definition it belongs to. */
        struct cf_definition *def = cf__definition_get(e, job->definition_id, err, sizeof(err));
        const struct cf_elem *el = def ? cf_model_find(def->model, job->activity_id) : NULL;
        if (!el) {
            cf_log(CF_LOG_ERROR, "timer start job=%" PRId64 ": %s", job->id,
                   def ? "start event not found" : err);
            return 0;
        }
        bool again;
        if ((rc = reschedule(e, job, el, NULL, &again)))
            return rc;
        struct cf_instance *inst;
        rc = cf__instance_create(e, def, NULL, NULL, 0, el, NULL, &inst);
        if (!rc)
            cf_log(CF_LOG_INFO, "timer %s started instance=%" PRId64 " of %s", el->id, inst->id,
                   def->key);
        return rc;
    }
    struct cf_instance *inst = cf__instance_get(e, job->instance_id, err, sizeof(err));
    if (!inst || inst->ended)
        return 0;
    struct cf_exec *x = cf__exec_find(inst, job->execution_id);
    const struct cf_elem *el = cf_model_find(inst->def->model, job->activity_id);
    if (!x || x->dead || !el || x->act_inst_id != job->act_inst_id)
        return 0;
    cf__touch(e, inst);
    inst->steps = 0;
    if (el->type == CF_EL_INTERMEDIATE_CATCH) {
        if (x->state != EX_WAITING || x->elem != el)
            return 0;
        x->state = EX_READY;
        push(e, x, OP_LEAVE);
    } else if (el->type == CF_EL_BOUNDARY_EVENT) {
        if (x->elem != el->attached_to)
            return 0;
        bool again = false;
        if (!el->cancel_activity && (rc = reschedule(e, job, el, x, &again)))
            return rc;
        if ((rc = take_boundary(e, x, el)))
            return rc;
    } else {
        return 0;
    }
    return drain(e, inst);
}

int cf__deliver_message(struct cf_engine *e, const struct cf_sub_row *sub, const char *business_key,
                        const struct cf_named_val *vars, size_t n_vars, int64_t *instance_id)
{
    char err[512];
    int rc;
    if (!sub->instance_id) {
        struct cf_definition *def = cf__definition_get(e, sub->definition_id, err, sizeof(err));
        const struct cf_elem *el = def ? cf_model_find(def->model, sub->activity_id) : NULL;
        if (!el) {
            cf_log(CF_LOG_ERROR, "message start subscription %" PRId64 ": %s", sub->id,
                   def ? "start event not found" : err);
            return CF_ENOENT;
        }
        struct cf_instance *inst;
        rc = cf__instance_create(e, def, business_key, vars, n_vars, el, NULL, &inst);
        if (!rc)
            *instance_id = inst->id;
        return rc;
    }
    struct cf_instance *inst = cf__instance_get(e, sub->instance_id, err, sizeof(err));
    if (!inst || inst->ended)
        return CF_ENOENT;
    struct cf_exec *x = cf__exec_find(inst, sub->execution_id);
    const struct cf_elem *el = cf_model_find(inst->def->model, sub->activity_id);
    if (!x || x->dead || !el || x->act_inst_id != sub->act_inst_id)
        return CF_ENOENT;
    cf__touch(e, inst);
    inst->steps = 0;
    *instance_id = inst->id;
    rc = 0;
    if (el->type == CF_EL_BOUNDARY_EVENT) {
        struct cf_exec *scope = x->parent;
        for (size_t i = 0; i < n_vars && !rc; i++)
            rc = cf__var_set(e, scope, vars[i].name, &vars[i].val);
        if (!rc && el->cancel_activity)
            rc = cf_store_sub_delete(e->store, sub->id);
        if (!rc)
            rc = take_boundary(e, x, el);
    } else {
        rc = cf_store_sub_delete(e->store, sub->id);
        for (size_t i = 0; i < n_vars && !rc; i++)
            rc = cf__var_set(e, x, vars[i].name, &vars[i].val);
        if (!rc) {
            x->state = EX_READY;
            push(e, x, OP_LEAVE);
        }
    }
    if (rc)
        return rc;
    return drain(e, inst);
}

int cf__schedule_start_events(struct cf_engine *e, struct cf_definition *def)
{
    int rc = cf_store_jobs_delete_start_timers(e->store, def->tenant_id, def->key);
    if (!rc)
        rc = cf_store_subs_delete_start(e->store, def->tenant_id, def->key);
    for (size_t i = 0; i < def->model->n_start_events && !rc; i++) {
        const struct cf_elem *el = def->model->start_events[i];
        if (el->event == CF_EV_TIMER) {
            int64_t due, repeats;
            char err[512];
            rc = cf__timer_due(el, NULL, &due, &repeats, err, sizeof(err));
            if (rc) {
                cf_log(CF_LOG_ERROR, "process %s: %s", def->key, err);
                return CF_EINVALID;
            }
            rc = timer_job(e, NULL, el, def->id, due, repeats);
        } else if (el->event == CF_EV_MESSAGE) {
            struct cf_sub_row r = {
                .name = el->message_name,
                .tenant_id = def->tenant_id,
                .definition_id = def->id,
                .activity_id = el->id,
            };
            rc = cf_store_sub_insert(e->store, &r, NULL);
        }
    }
    return rc;
}

/* --- loading from the store --- */

struct load_ctx {
    struct cf_instance *inst;
    struct cf_imap by_id;
    char *err;
    size_t errlen;
    int rc;
};

static int load_exec_row(void *arg, const struct cf_exec_row *r)
{
    struct load_ctx *lc = arg;
    struct cf_exec *x = cf_xcalloc(1, sizeof(*x));
    x->id = r->id;
    x->inst = lc->inst;
    x->act_inst_id = r->act_inst_id;
    x->seq = r->seq;
    if (x->seq > lc->inst->next_seq)
        lc->inst->next_seq = x->seq;
    for (unsigned i = 0; i < CF_ARRAY_LEN(state_names); i++)
        if (r->state && strcmp(r->state, state_names[i]) == 0)
            x->state = (enum cf_exec_state)i;
    for (unsigned i = 1; i < CF_ARRAY_LEN(resume_names); i++)
        if (r->resume && strcmp(r->resume, resume_names[i]) == 0)
            x->resume = (enum cf_resume)i;
    if (r->activity_id) {
        x->elem = cf_model_find(lc->inst->def->model, r->activity_id);
        if (!x->elem) {
            cf_errf(lc->err, lc->errlen, "execution %" PRId64 " is at unknown activity %s", r->id,
                    r->activity_id);
            free(x);
            return CF_EINVALID;
        }
    }
    if (!r->parent_id) {
        if (lc->inst->root) {
            free(x);
            return CF_EINVALID;
        }
        lc->inst->root = x;
    } else {
        struct cf_exec *p = cf_imap_get(&lc->by_id, r->parent_id);
        if (!p) {
            cf_errf(lc->err, lc->errlen, "execution %" PRId64 " has a missing parent", r->id);
            free(x);
            return CF_EINVALID;
        }
        link_child(p, x);
    }
    cf_imap_put(&lc->by_id, x->id, x);
    return 0;
}

static int load_var_row(void *arg, int64_t execution_id, const char *name, const struct cf_val *v)
{
    struct load_ctx *lc = arg;
    struct cf_exec *x = cf_imap_get(&lc->by_id, execution_id);
    if (!x)
        return 0;
    if (x->n_vars == x->cap_vars) {
        x->cap_vars = x->cap_vars ? x->cap_vars * 2 : 4;
        x->vars = cf_xrealloc(x->vars, x->cap_vars * sizeof(*x->vars));
    }
    x->vars[x->n_vars].name = cf_xstrdup(name);
    x->vars[x->n_vars].val.type = CF_VALUE_NULL;
    cf_val_copy(&x->vars[x->n_vars].val, v);
    x->n_vars++;
    return 0;
}

struct cf_instance *cf__instance_get(struct cf_engine *e, int64_t id, char *err, size_t errlen)
{
    struct cf_instance *inst = cf_imap_get(&e->instances, id);
    if (inst)
        return inst;
    struct cf_inst_row row;
    int rc = cf_store_instance_get(e->store, id, &row);
    if (rc) {
        cf_errf(err, errlen, "process instance %" PRId64 " %s", id,
                rc == CF_ENOENT ? "does not exist" : "cannot be read");
        return NULL;
    }
    struct cf_definition *def = cf__definition_get(e, row.definition_id, err, errlen);
    if (!def) {
        cf_inst_row_free(&row);
        return NULL;
    }
    inst = cf_xcalloc(1, sizeof(*inst));
    inst->id = id;
    inst->def = def;
    inst->tenant_id = row.tenant_id;
    inst->business_key = row.business_key;
    inst->created = strcmp(row.state, "CREATED") == 0;
    inst->ended = !inst->created && strcmp(row.state, "ACTIVE") != 0;
    inst->super_instance_id = row.super_instance_id;
    inst->super_exec_id = row.super_execution_id;
    free(row.state);
    struct load_ctx lc = {.inst = inst, .err = err, .errlen = errlen};
    cf_imap_init(&lc.by_id);
    rc = cf_store_exec_load(e->store, id, load_exec_row, &lc);
    if (!rc && !inst->root) {
        cf_errf(err, errlen, "process instance %" PRId64 " has no root execution", id);
        rc = CF_EINVALID;
    }
    if (!rc)
        rc = cf_store_var_load(e->store, id, load_var_row, &lc);
    if (rc && !inst->root) {
        /* Executions loaded before the failure are not reachable from a root: free them. */
        for (size_t i = 0; i < lc.by_id.cap; i++)
            if (lc.by_id.slots[i].key && !((struct cf_exec *)lc.by_id.slots[i].value)->parent)
                exec_free_tree(lc.by_id.slots[i].value);
    }
    cf_imap_free(&lc.by_id);
    if (rc) {
        if (inst->root) {
            exec_free_tree(inst->root);
            inst->root = NULL;
        }
        cf__instance_free(inst);
        return NULL;
    }
    cf_imap_put(&e->instances, id, inst);
    return inst;
}
