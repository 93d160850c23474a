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

int cf__expr_lookup(void *ctx, const char *name, const struct cf_val **out)
{
    const struct cf_val *v = cf__var_lookup(ctx, name);
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
    if ((rc = hist_end(e, x, hist_state)))
        return rc;
    if ((rc = cf_store_jobs_delete_execution(e->store, x->id)))
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

/* Routes a BPMN error thrown at execution x. *caught tells whether a handler took it; when none
 * does, the execution stops with an incident (or, in Camunda 7 mode, its path ends). */
static int throw_error(struct cf_engine *e, struct cf_exec *x, const char *code,
                       const char *message, int64_t job_id, bool *caught)
{
    const struct cf_model *model = x->inst->def->model;
    *caught = true;
    if (cf_elem_is_activity(x->elem)) {
        const struct cf_elem *b = match_boundary(x->elem, code);
        if (b)
            return catch_by_boundary(e, x, b, code, message);
    }
    for (struct cf_exec *s = x->parent; s; s = s->parent) {
        struct cf_elem *const *esps =
            s->elem ? s->elem->event_subprocesses : model->event_subprocesses;
        size_t n = s->elem ? s->elem->n_event_subprocesses : model->n_event_subprocesses;
        const struct cf_elem *esp = match_event_subprocess(esps, n, code, x);
        if (esp)
            return catch_by_event_subprocess(e, s, esp, code, message);
        if (s->elem && !s->elem->triggered_by_event) {
            const struct cf_elem *b = match_boundary(s->elem, code);
            if (b)
                return catch_by_boundary(e, s, b, code, message);
        }
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
    switch (el->type) {
    case CF_EL_START_EVENT:
    case CF_EL_TASK:
    case CF_EL_INTERMEDIATE_THROW:
    case CF_EL_BOUNDARY_EVENT:
        push(e, x, OP_LEAVE);
        return 0;
    case CF_EL_END_EVENT:
        if (el->event == CF_EV_ERROR) {
            bool caught;
            if ((rc = hist_end(e, x, "completed")))
                return rc;
            return throw_error(e, x, el->error_code, el->error_message, 0, &caught);
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
    if ((rc = hist_end(e, x, "completed")))
        return rc;
    if ((rc = drop_locals(e, x)))
        return rc;
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
                        const struct cf_named_val *vars, size_t n_vars, struct cf_instance **out)
{
    struct cf_instance *inst = cf_xcalloc(1, sizeof(*inst));
    inst->def = def;
    inst->tenant_id = cf_xstrdup(def->tenant_id);
    inst->business_key = business_key ? cf_xstrdup(business_key) : NULL;
    int rc = cf_store_instance_insert(e->store, def->id, def->tenant_id, business_key, cf_now_ms(),
                                      &inst->id);
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
    struct cf_exec *start;
    if (!rc)
        rc = exec_new(e, inst, inst->root, def->model->none_start, EX_READY, &start);
    if (!rc) {
        push(e, start, OP_ENTER);
        rc = drain(e, inst);
    }
    *out = inst;
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
    inst->ended = strcmp(row.state, "ACTIVE") != 0;
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
