/*
 * The engine object: definitions and deployment, the batch transaction that applies outcomes
 * (group commit), the job executor on the libuv loop, and the host side of the plug-in ABI.
 *
 * Batching. Plug-in outcomes and due jobs become items. Once per loop turn (a uv_idle handle that
 * runs only while items wait) all items are applied in one BEGIN IMMEDIATE ... COMMIT, each inside
 * its own savepoint so that one broken item cannot take the others down. Only after the commit are
 * new jobs handed to the executor and endings reported, so nothing runs or is announced before it
 * is durable. A batch whose commit fails is rolled back, the instances it touched are dropped
 * from memory (the store still has their last committed state) and its items are retried.
 *
 * Executor. Jobs run in the order they became due, at most max_concurrent_jobs at once, and never
 * two of the same instance at once (Camunda 7's exclusive jobs): a job whose instance is busy
 * waits in that instance's queue. Jobs due later are acquired from the store by a timer, which
 * also wakes at least every few seconds so that a wall-clock jump neither loses nor repeats them.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <errno.h>
#include <fcntl.h>

#include <openssl/crypto.h>

#include "run/internal.h"
#include "store/seal.h"

#define ACQUIRE_BATCH 256
/* How often a stop or crash of the engine may cut a job short (while it was locked: acquired or
 * running) before the job becomes an incident. A job that kills the engine every time must not
 * loop forever; the bound is generous because a lock taken just before a crash counts as well,
 * even when the plug-in had not started. */
#define MAX_INTERRUPTED_RUNS 50
#define MAX_TIMER_SLEEP_MS 5000u
#define CALL_CHECK_MS 1000u

struct busy {
    struct cf_jobref *head, *tail;
};

struct cf_call_ctx {
    struct cf_call pub;
    struct cf_engine *e;
    struct cf_jobref *job;
    const struct cf_elem *elem;
    char *idem_key;
    char *instance_text;
    char *tenant_id;
    struct param_value {
        const char *name;
        char *value;
    } * params;
    size_t n_params;
    struct cf_outvar *vars;
    size_t n_vars;
    char **scratch;
    size_t n_scratch;
    uint64_t deadline;
    bool ended;
    bool abandoned;
    int refs;
    struct cf_call_ctx *prev, *next;
};

static void dispatch(struct cf_engine *e);
static void schedule_due(struct cf_engine *e);
static void flush_idle_cb(uv_idle_t *h);
static void retry_timer_cb(uv_timer_t *t);
static void expire_calls(struct cf_engine *e);
static void maybe_free(struct cf_engine *e);

/* --- crash points --- */

void cf__crash_point(struct cf_engine *e, const char *name)
{
    if (!e->crash_point[0] || strcmp(e->crash_point, name) != 0)
        return;
    if (--e->crash_countdown > 0)
        return;
    /* Like a kill -9: no flush, no close, no atexit handlers. */
    static const char msg[] = "certflow: crash point reached\n";
    ssize_t w = write(STDERR_FILENO, msg, sizeof(msg) - 1);
    (void)w;
    _exit(137);
}

static void crash_setup(struct cf_engine *e)
{
    const char *spec = getenv("CERTFLOW_CRASH_AT");
    if (!spec || !*spec)
        return;
    const char *colon = strchr(spec, ':');
    size_t n = colon ? (size_t)(colon - spec) : strlen(spec);
    if (n >= sizeof(e->crash_point))
        return;
    memcpy(e->crash_point, spec, n);
    e->crash_point[n] = '\0';
    int64_t count = 1;
    if (colon && (cf_parse_i64(colon + 1, &count) != 0 || count < 1))
        count = 1;
    e->crash_countdown = (long)count;
    cf_log(CF_LOG_WARN, "crash testing: will exit at crash point %s (pass %ld)", e->crash_point,
           e->crash_countdown);
}

/* --- small helpers --- */

static void item_free(struct cf_item *it)
{
    free(it->code);
    free(it->message);
    for (size_t i = 0; i < it->n_vars; i++) {
        free(it->vars[i].name);
        cf_val_free(&it->vars[i].val);
    }
    free(it->vars);
    free(it);
}

static void enqueue_item(struct cf_engine *e, struct cf_item *it)
{
    it->next = NULL;
    if (e->items_tail)
        e->items_tail->next = it;
    else
        e->items_head = it;
    e->items_tail = it;
    e->n_items++;
    if (!e->closing && !uv_is_active((uv_handle_t *)&e->flush_idle))
        uv_idle_start(&e->flush_idle, flush_idle_cb);
}

static void ready_push(struct cf_engine *e, struct cf_jobref *j, bool front)
{
    if (front) {
        j->next = e->ready_head;
        e->ready_head = j;
        if (!e->ready_tail)
            e->ready_tail = j;
    } else {
        j->next = NULL;
        if (e->ready_tail)
            e->ready_tail->next = j;
        else
            e->ready_head = j;
        e->ready_tail = j;
    }
    e->n_ready++;
}

static struct cf_jobref *ready_pop(struct cf_engine *e)
{
    struct cf_jobref *j = e->ready_head;
    if (!j)
        return NULL;
    e->ready_head = j->next;
    if (!e->ready_head)
        e->ready_tail = NULL;
    j->next = NULL;
    e->n_ready--;
    return j;
}

/* The job is done with (applied, dropped or abandoned): let the next job of its instance run. */
static void job_finished(struct cf_engine *e, struct cf_jobref *j)
{
    struct busy *b = cf_imap_del(&e->busy, j->instance_id);
    if (b) {
        /* The instance is free again: its waiting jobs go back to the front of the ready queue,
         * in order; dispatch() runs the first and makes the others wait again. */
        struct cf_jobref *rev = NULL;
        while (b->head) {
            struct cf_jobref *n = b->head;
            b->head = n->next;
            n->next = rev;
            rev = n;
        }
        while (rev) {
            struct cf_jobref *n = rev;
            rev = n->next;
            ready_push(e, n, true);
        }
        free(b);
    }
    cf_imap_del(&e->known_jobs, j->id);
    e->running--;
    free(j);
}

void cf__notify_ended(struct cf_engine *e, int64_t instance_id, const char *state)
{
    if (e->n_ended == e->cap_ended) {
        e->cap_ended = e->cap_ended ? e->cap_ended * 2 : 8;
        e->ended = cf_xrealloc(e->ended, e->cap_ended * sizeof(*e->ended));
    }
    e->ended[e->n_ended].instance_id = instance_id;
    e->ended[e->n_ended].state = state;
    e->n_ended++;
}

/* --- definitions --- */

static void definition_free(struct cf_definition *d)
{
    if (!d)
        return;
    cf_models_free(d->models, d->n_models);
    for (size_t i = 0; i < d->n_params; i++) {
        free(d->params[i].activity_id);
        free(d->params[i].name);
        free(d->params[i].value);
    }
    free(d->params);
    free(d->key);
    free(d->tenant_id);
    free(d);
}

static int collect_param(void *arg, const char *activity_id, const char *name, const char *value)
{
    struct cf_definition *d = arg;
    d->params = cf_xrealloc(d->params, (d->n_params + 1) * sizeof(*d->params));
    d->params[d->n_params].activity_id = cf_xstrdup(activity_id);
    d->params[d->n_params].name = cf_xstrdup(name);
    d->params[d->n_params].value = cf_xstrdup(value);
    d->n_params++;
    return 0;
}

struct cf_definition *cf__definition_get(struct cf_engine *e, int64_t id, char *err, size_t errlen)
{
    struct cf_definition *d = cf_imap_get(&e->defs, id);
    if (d)
        return d;
    struct cf_def_row row;
    int rc = cf_store_def_get(e->store, id, true, &row);
    if (rc) {
        cf_errf(err, errlen, "process definition %" PRId64 " %s", id,
                rc == CF_ENOENT ? "does not exist" : "cannot be read");
        return NULL;
    }
    d = cf_xcalloc(1, sizeof(*d));
    d->id = id;
    d->key = row.key;
    d->version = row.version;
    d->tenant_id = row.tenant_id;
    row.key = row.tenant_id = NULL;
    struct cf_diags diags;
    cf_diags_init(&diags);
    rc = cf_bpmn_load(row.xml, row.xml_len, &d->models, &d->n_models, &diags);
    cf_def_row_free(&row);
    if (!rc) {
        for (size_t i = 0; i < d->n_models; i++)
            if (strcmp(d->models[i]->key, d->key) == 0)
                d->model = d->models[i];
        if (!d->model)
            rc = CF_EINVALID;
    }
    if (!rc)
        rc = cf_store_param_list(e->store, d->tenant_id, d->key, NULL, collect_param, d);
    if (rc) {
        struct cf_buf b;
        cf_buf_init(&b);
        cf_diags_format(&diags, NULL, &b);
        cf_errf(err, errlen, "process definition %" PRId64 " cannot be loaded: %s", id,
                b.len ? b.data : cf_strerror(rc));
        cf_buf_free(&b);
        cf_diags_free(&diags);
        definition_free(d);
        return NULL;
    }
    cf_diags_free(&diags);
    cf_imap_put(&e->defs, id, d);
    return d;
}

/* --- validation and deployment --- */

struct admin_params {
    struct cf_param_cfg *items;
    size_t n;
    struct cf_store *store;
    const char *tenant;
    const char *process_key;
};

/* Collects the admin configuration for checking a deployment, secrets opened (and wiped again by
 * admin_params_free()). A secret that does not open is checked as the text it is stored as; the
 * call that needs it fails and says why. */
static int collect_admin(void *arg, const char *activity_id, const char *name, const char *value)
{
    struct admin_params *a = arg;
    char *plain = NULL;
    if (cf_store_param_reveal(a->store, a->tenant, a->process_key, activity_id, name, value,
                              &plain) != 0)
        plain = cf_xstrdup(value);
    a->items = cf_xrealloc(a->items, (a->n + 1) * sizeof(*a->items));
    a->items[a->n].activity_id = cf_xstrdup(activity_id);
    a->items[a->n].name = cf_xstrdup(name);
    a->items[a->n].value = plain;
    a->n++;
    return 0;
}

static void admin_params_free(struct admin_params *a)
{
    for (size_t i = 0; i < a->n; i++) {
        free(a->items[i].activity_id);
        free(a->items[i].name);
        cf_seal_free_plain(a->items[i].value);
    }
    free(a->items);
}

static const char *admin_value(const struct admin_params *a, const char *activity_id,
                               const char *name)
{
    for (size_t i = 0; i < a->n; i++)
        if (strcmp(a->items[i].activity_id, activity_id) == 0 &&
            strcmp(a->items[i].name, name) == 0)
            return a->items[i].value;
    return NULL;
}

static const struct cf_mapping *find_mapping(const struct cf_mapping *m, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(m[i].name, name) == 0)
            return &m[i];
    return NULL;
}

/* Elements that the model describes but this runtime cannot execute. */
static const char *unsupported(const struct cf_elem *el)
{
    if (el->type == CF_EL_START_EVENT && el->parent && el->parent->triggered_by_event &&
        el->event != CF_EV_ERROR)
        return "event subprocesses started by timers or messages are not executable in this "
               "version of certflow; use a boundary event";
    return NULL;
}

/* Timers whose definition is fixed text are checked now; ${...} ones when they are armed. */
static void check_timer(const struct cf_elem *el, struct cf_diags *diags)
{
    if (el->event != CF_EV_TIMER || !el->timer_expr || cf_expr_is_dynamic(el->timer_expr))
        return;
    int64_t due, repeats;
    char err[512];
    if (cf__timer_due(el, NULL, &due, &repeats, err, sizeof(err)) != 0)
        cf_diags_add(diags, el->line, el->id, "%s", err);
}

static void check_service_task(struct cf_registry *reg, const struct admin_params *admin,
                               const struct cf_elem *el, struct cf_diags *diags,
                               struct cf_diags *warnings)
{
    bool is_alias = false;
    const struct cf_task_def *t = cf_registry_find(reg, el->delegate, &is_alias);
    if (!t) {
        cf_diags_add(diags, el->line, el->id,
                     "unknown delegate expression ${%s}: no plug-in task of that name is loaded "
                     "(see certflow tasks)",
                     el->delegate);
        return;
    }
    if (is_alias && warnings)
        cf_diags_add(warnings, el->line, el->id,
                     "${%s} is a deprecated name of task '%s'; use ${%s} instead", el->delegate,
                     t->name, t->name);
    size_t np = cf_task_param_count(t);
    for (size_t i = 0; i < np; i++) {
        const struct cf_param_def *p = cf_task_param_at(t, i);
        const char *av = admin_value(admin, el->id, p->name);
        const struct cf_mapping *in = find_mapping(el->inputs, el->n_inputs, p->name);
        const struct cf_mapping *fd = find_mapping(el->fields, el->n_fields, p->name);
        const struct cf_expr *bpmn = in ? in->value : fd ? fd->value : NULL;
        bool has = av || bpmn || p->default_value;
        if ((p->flags & CF_PARAM_MANDATORY) && !has) {
            cf_diags_add(diags, el->line, el->id,
                         "mandatory parameter '%s' of task '%s' has no value: set it with "
                         "camunda:inputParameter, camunda:field or certflow params set",
                         p->name, t->name);
            continue;
        }
        /* Values known now are checked now; ${...} values are checked at call time. */
        const char *fixed = NULL;
        if (av && !strstr(av, "${") && !strstr(av, "#{"))
            fixed = av;
        else if (!av && bpmn && !cf_expr_is_dynamic(bpmn))
            fixed = cf_expr_text(bpmn);
        if (fixed) {
            char msg[512];
            if (cf_param_check_value(p, fixed, msg, sizeof(msg)) != 0)
                cf_diags_add(diags, in ? in->line : fd ? fd->line : el->line, el->id, "%s", msg);
        }
    }
    if (!(t->flags & CF_TASK_EXTRA_PARAMS)) {
        for (size_t i = 0; i < el->n_fields; i++)
            if (!cf_task_param_find(t, el->fields[i].name))
                cf_diags_add(diags, el->fields[i].line, el->id,
                             "task '%s' has no parameter named '%s' (camunda:field)", t->name,
                             el->fields[i].name);
    }
    if (warnings) {
        for (size_t i = 0; i < el->n_boundaries; i++) {
            const struct cf_elem *b = el->boundaries[i];
            if (b->event == CF_EV_ERROR && b->error_code &&
                !cf_task_declares_error(t, b->error_code))
                cf_diags_add(warnings, b->line, b->id, "task '%s' never throws error code '%s'",
                             t->name, b->error_code);
        }
    }
}

int cf_engine_check_models(struct cf_registry *reg, struct cf_store *store, const char *tenant,
                           struct cf_model **models, size_t n, struct cf_diags *diags,
                           struct cf_diags *warnings)
{
    size_t before = diags->count;
    for (size_t m = 0; m < n; m++) {
        struct admin_params admin = {
            .store = store, .tenant = tenant ? tenant : "", .process_key = models[m]->key};
        if (store)
            cf_store_param_list(store, tenant ? tenant : "", models[m]->key, NULL, collect_admin,
                                &admin);
        if (!models[m]->none_start && !models[m]->n_start_events)
            cf_diags_add(diags, models[m]->line, models[m]->key,
                         "process has no start event that certflow can start it with");
        for (size_t i = 0; i < models[m]->n_elements; i++) {
            const struct cf_elem *el = models[m]->elements[i];
            const char *why = unsupported(el);
            if (why)
                cf_diags_add(diags, el->line, el->id, "%s", why);
            check_timer(el, diags);
            if (el->type == CF_EL_SERVICE_TASK)
                check_service_task(reg, &admin, el, diags, warnings);
        }
        admin_params_free(&admin);
    }
    return diags->count > before ? CF_EINVALID : 0;
}

void cf_deploy_result_free(struct cf_deploy_result *r)
{
    for (size_t i = 0; i < r->n_defs; i++)
        free(r->defs[i].key);
    free(r->defs);
    cf_diags_free(&r->diags);
    cf_diags_free(&r->warnings);
    memset(r, 0, sizeof(*r));
}

int cf_engine_deploy_resources(struct cf_engine *e, const struct cf_deploy_options *opt,
                               const struct cf_resource *resources, size_t n_resources,
                               struct cf_deploy_result *res)
{
    memset(res, 0, sizeof(*res));
    cf_diags_init(&res->diags);
    cf_diags_init(&res->warnings);
    const char *tenant_id = opt->tenant_id ? opt->tenant_id : "";
    /* Every resource is parsed and checked before anything is stored: a deployment is stored
     * whole or not at all. */
    struct cf_model ***models = cf_xcalloc(n_resources ? n_resources : 1, sizeof(*models));
    size_t *n_models = cf_xcalloc(n_resources ? n_resources : 1, sizeof(*n_models));
    size_t total = 0;
    int rc = 0;
    for (size_t r = 0; r < n_resources; r++) {
        struct cf_diags d, w;
        cf_diags_init(&d);
        cf_diags_init(&w);
        int lrc = cf_bpmn_load(resources[r].bytes, resources[r].len, &models[r], &n_models[r], &d);
        if (!lrc)
            lrc = cf_engine_check_models(e->registry, e->store, tenant_id, models[r], n_models[r],
                                         &d, &w);
        for (size_t i = 0; i < d.count; i++)
            cf_diags_add(&res->diags, d.items[i].line, d.items[i].element_id, "%s%s%s",
                         n_resources > 1 ? resources[r].name : "", n_resources > 1 ? ": " : "",
                         d.items[i].message);
        for (size_t i = 0; i < w.count; i++)
            cf_diags_add(&res->warnings, w.items[i].line, w.items[i].element_id, "%s%s%s",
                         n_resources > 1 ? resources[r].name : "", n_resources > 1 ? ": " : "",
                         w.items[i].message);
        cf_diags_free(&d);
        cf_diags_free(&w);
        if (lrc && !rc)
            rc = lrc;
        total += n_models[r];
    }
    if (rc)
        goto done;
    res->defs = cf_xcalloc(total ? total : 1, sizeof(*res->defs));
    if ((rc = cf_store_begin(e->store)))
        goto fail;
    for (size_t r = 0; r < n_resources && !rc; r++) {
        char sha[65];
        cf_sha256_hex(resources[r].bytes, resources[r].len, sha);
        for (size_t i = 0; i < n_models[r] && !rc; i++) {
            struct cf_model *m = models[r][i];
            struct cf_deployed *d = &res->defs[res->n_defs++];
            d->key = cf_xstrdup(m->key);
            d->resource = resources[r].name;
            struct cf_def_row latest;
            int lrc = cf_store_def_latest(e->store, tenant_id, m->key, &latest);
            if (lrc && lrc != CF_ENOENT) {
                rc = lrc;
                break;
            }
            bool same = !lrc && strcmp(latest.sha256, sha) == 0;
            if (!lrc) {
                d->definition_id = latest.id;
                d->version = latest.version;
                cf_def_row_free(&latest);
            }
            if (same && opt->duplicate_filtering)
                continue;
            if (!res->deployment_id &&
                (rc = cf_store_deployment_insert(
                     e->store, opt->name ? opt->name : resources[r].name,
                     opt->source ? opt->source : "certflow", tenant_id, &res->deployment_id)))
                break;
            struct cf_def_row row = {
                .key = (char *)m->key,
                .tenant_id = (char *)tenant_id,
                .name = (char *)m->name,
                .deployment_id = res->deployment_id,
                .resource_name = (char *)resources[r].name,
                .sha256 = sha,
                .deployed_at = cf_now_ms(),
                .xml = (uint8_t *)resources[r].bytes,
                .xml_len = resources[r].len,
            };
            if ((rc = cf_store_def_insert(e->store, &row)))
                break;
            d->definition_id = row.id;
            d->version = row.version;
            d->is_new = true;
            char derr[512];
            struct cf_definition *def = cf__definition_get(e, row.id, derr, sizeof(derr));
            if (!def) {
                cf_diags_add(&res->diags, 0, d->key, "%s", derr);
                rc = CF_EINVALID;
                break;
            }
            rc = cf__schedule_start_events(e, def);
        }
    }
    if (!rc)
        rc = cf_store_commit(e->store);
    if (rc) {
        cf_store_rollback(e->store);
        /* Definitions cached during the failed transaction do not exist. */
        for (size_t i = 0; i < res->n_defs; i++)
            if (res->defs[i].is_new)
                definition_free(cf_imap_del(&e->defs, res->defs[i].definition_id));
        goto fail;
    }
    schedule_due(e);
    for (size_t i = 0; i < res->n_defs; i++)
        if (res->defs[i].is_new)
            cf_log(CF_LOG_INFO,
                   "deployed process key=%s version=%d definition=%" PRId64 " resource=%s",
                   res->defs[i].key, res->defs[i].version, res->defs[i].definition_id,
                   res->defs[i].resource);
    goto done;
fail:
    if (rc != CF_EINVALID)
        cf_diags_add(&res->diags, 0, NULL, "deployment could not be stored: %s (%s)",
                     cf_strerror(rc), cf_store_errmsg(e->store));
done:
    for (size_t r = 0; r < n_resources; r++)
        cf_models_free(models[r], n_models[r]);
    free(models);
    free(n_models);
    return rc;
}

int cf_engine_deploy(struct cf_engine *e, const char *resource_name, const uint8_t *xml, size_t len,
                     const char *tenant_id, struct cf_deploy_result *res)
{
    struct cf_resource r = {.name = resource_name, .bytes = xml, .len = len};
    struct cf_deploy_options opt = {.name = resource_name,
                                    .source = "certflow",
                                    .tenant_id = tenant_id,
                                    .duplicate_filtering = true};
    return cf_engine_deploy_resources(e, &opt, &r, 1, res);
}

void cf_engine_params_changed(struct cf_engine *e, const char *tenant_id, const char *process_key)
{
    /* Cached definitions hold the admin configuration of their key: read it again. */
    for (size_t i = 0; i < e->defs.cap; i++) {
        struct cf_definition *d = e->defs.slots[i].value;
        if (!e->defs.slots[i].key || strcmp(d->key, process_key) != 0 ||
            strcmp(d->tenant_id, tenant_id ? tenant_id : "") != 0)
            continue;
        for (size_t k = 0; k < d->n_params; k++) {
            free(d->params[k].activity_id);
            free(d->params[k].name);
            OPENSSL_cleanse(d->params[k].value, strlen(d->params[k].value));
            free(d->params[k].value);
        }
        free(d->params);
        d->params = NULL;
        d->n_params = 0;
        cf_store_param_list(e->store, d->tenant_id, d->key, NULL, collect_param, d);
    }
}

struct job_incident {
    int64_t job_id;
    int64_t incident_id;
};

static int incident_for_job(void *arg, const struct cf_incident_row *r)
{
    struct job_incident *f = arg;
    if (r->job_id == f->job_id && !f->incident_id)
        f->incident_id = r->id;
    return 0;
}

/* --- transactions --- */

/* Drops everything the failed transaction did to memory. */
static void discard_tx(struct cf_engine *e)
{
    for (size_t i = 0; i < e->n_touched; i++)
        cf__evict(e, e->touched[i]->id);
    e->n_touched = 0;
    while (e->new_jobs) {
        struct cf_jobref *j = e->new_jobs;
        e->new_jobs = j->next;
        free(j);
    }
    e->n_ended = 0;
    cf__reap_dead(e);
    e->agenda_len = e->agenda_head = 0;
}

/* Hands what the committed transaction produced to the executor and the observer. */
static void after_commit(struct cf_engine *e)
{
    /* new_jobs is newest first; reverse it so jobs run in creation order. */
    struct cf_jobref *rev = NULL;
    while (e->new_jobs) {
        struct cf_jobref *j = e->new_jobs;
        e->new_jobs = j->next;
        j->next = rev;
        rev = j;
    }
    while (rev) {
        struct cf_jobref *j = rev;
        rev = j->next;
        cf_imap_put(&e->known_jobs, j->id, j);
        ready_push(e, j, false);
    }
    /* Ended instances leave memory at once; waiting ones too when the cache is full. An instance
     * with a job running stays, because the call reads its variables from memory. */
    bool full = e->instances.count > (size_t)e->opt.max_cached_instances;
    for (size_t i = 0; i < e->n_touched; i++) {
        struct cf_instance *inst = e->touched[i];
        if ((inst->ended || full) && !cf_imap_get(&e->busy, inst->id))
            cf__evict(e, inst->id);
    }
    e->n_touched = 0;
    size_t n_ended = e->n_ended;
    e->n_ended = 0;
    for (size_t i = 0; i < n_ended; i++) {
        cf_log(CF_LOG_DEBUG, "instance=%" PRId64 " ended state=%s", e->ended[i].instance_id,
               e->ended[i].state);
        if (e->obs.instance_ended)
            e->obs.instance_ended(e->obs.arg, e->ended[i].instance_id, e->ended[i].state);
    }
}

static void check_idle(struct cf_engine *e)
{
    if (cf_engine_is_idle(e) && e->obs.idle && !e->closing)
        e->obs.idle(e->obs.arg);
}

int cf_engine_start(struct cf_engine *e, int64_t definition_id, const char *business_key,
                    const struct cf_named_val *vars, size_t n_vars, int64_t *instance_id, char *err,
                    size_t errlen)
{
    struct cf_definition *def = cf__definition_get(e, definition_id, err, errlen);
    if (!def)
        return CF_ENOENT;
    if (!def->model->none_start) {
        cf_errf(err, errlen,
                "process %s has no none start event: it starts with its %s start event (%s)",
                def->key,
                def->model->n_start_events && def->model->start_events[0]->event == CF_EV_TIMER
                    ? "timer"
                    : "message",
                def->model->n_start_events && def->model->start_events[0]->event == CF_EV_TIMER
                    ? "certflow resume --wait fires it"
                    : "certflow correlate delivers it");
        return CF_EINVALID;
    }
    int rc = cf_store_begin(e->store);
    if (rc) {
        cf_errf(err, errlen, "cannot begin a transaction: %s", cf_store_errmsg(e->store));
        return rc;
    }
    struct cf_instance *inst = NULL;
    rc = cf__instance_create(e, def, business_key, vars, n_vars, NULL, NULL, &inst);
    cf__reap_dead(e);
    if (!rc)
        rc = cf_store_commit(e->store);
    if (rc) {
        cf_errf(err, errlen, "cannot start process %s: %s (%s)", def->key, cf_strerror(rc),
                cf_store_errmsg(e->store));
        cf_store_rollback(e->store);
        discard_tx(e);
        return rc;
    }
    *instance_id = inst->id;
    cf_log(CF_LOG_DEBUG, "started instance=%" PRId64 " key=%s", inst->id, def->key);
    after_commit(e);
    dispatch(e);
    schedule_due(e);
    check_idle(e);
    return 0;
}

static int apply_item(struct cf_engine *e, struct cf_item *it)
{
    char err[512];
    if (it->kind == ITEM_TX)
        return it->tx_fn(e, it->tx_arg);
    struct cf_jobref *j = it->job;
    if (strcmp(j->type, "start") == 0) {
        struct cf_instance *inst = cf__instance_get(e, j->instance_id, err, sizeof(err));
        if (!inst) {
            cf_log(CF_LOG_ERROR, "start job=%" PRId64 ": %s", j->id, err);
            return 0;
        }
        if (!inst->created)
            return cf_store_job_delete(e->store, j->id); /* already started */
        cf__touch(e, inst);
        int rc = cf_store_job_delete(e->store, j->id);
        return rc ? rc : cf__instance_begin(e, inst);
    }
    if (strcmp(j->type, "timer") == 0) {
        struct cf_job_row row;
        int rc = cf_store_job_get(e->store, j->id, &row);
        if (rc == CF_ENOENT)
            return 0; /* canceled with its activity meanwhile */
        if (rc)
            return rc;
        rc = cf__fire_timer(e, &row);
        cf_job_row_free(&row);
        return rc;
    }
    struct cf_instance *inst = cf__instance_get(e, j->instance_id, err, sizeof(err));
    if (!inst) {
        cf_log(CF_LOG_ERROR, "job=%" PRId64 ": %s", j->id, err);
        return 0;
    }
    struct cf_exec *x = cf__exec_find(inst, j->execution_id);
    if (!x || x->state != EX_WAITING || inst->ended || x->act_inst_id != j->act_inst_id) {
        /* The execution moved on (canceled by an error, the instance ended, a later step):
         * this job's moment has passed and there is nothing to do. */
        return 0;
    }
    cf__touch(e, inst);
    if (it->kind == ITEM_RUN_JOB)
        return cf__run_job(e, inst, x, j);
    return cf__apply_outcome(e, inst, x, it);
}

/* Undoes in memory what one failed item did since `mark_*`: its instances are reloaded from the
 * store when needed again, its new jobs and endings are forgotten. */
static void undo_item(struct cf_engine *e, size_t mark_touched, struct cf_jobref *mark_jobs,
                      size_t mark_ended, int64_t instance_id)
{
    while (e->n_touched > mark_touched)
        cf__evict(e, e->touched[--e->n_touched]->id);
    if (instance_id) {
        for (size_t i = 0; i < e->n_touched; i++)
            if (e->touched[i]->id == instance_id) {
                e->touched[i] = e->touched[--e->n_touched];
                break;
            }
        cf__evict(e, instance_id);
    }
    while (e->new_jobs != mark_jobs) {
        struct cf_jobref *j = e->new_jobs;
        e->new_jobs = j->next;
        free(j);
    }
    e->n_ended = mark_ended;
    e->agenda_len = e->agenda_head = 0;
}

void cf_engine_flush(struct cf_engine *e)
{
    if (e->in_flush || !e->items_head || e->flush_blocked)
        return;
    e->in_flush = true;
    struct cf_item *batch = e->items_head;
    e->items_head = e->items_tail = NULL;
    e->n_items = 0;
    int rc = cf_store_begin(e->store);
    for (struct cf_item *it = batch; it && !rc; it = it->next) {
        if ((rc = cf_store_savepoint(e->store)))
            break;
        size_t mark_touched = e->n_touched, mark_ended = e->n_ended;
        struct cf_jobref *mark_jobs = e->new_jobs;
        int irc = apply_item(e, it);
        cf__reap_dead(e);
        if (!irc) {
            rc = cf_store_release(e->store);
            continue;
        }
        int64_t instance_id = it->job ? it->job->instance_id : 0;
        if (it->kind == ITEM_TX)
            it->tx_rc = irc;
        else
            cf_log(CF_LOG_ERROR, "job=%" PRId64 " instance=%" PRId64 ": cannot apply: %s (%s)",
                   it->job->id, instance_id, cf_strerror(irc), cf_store_errmsg(e->store));
        rc = cf_store_rollback_to(e->store);
        undo_item(e, mark_touched, mark_jobs, mark_ended, instance_id);
        if (irc == CF_EFULL || irc == CF_EIO || irc == CF_EBUSY) {
            rc = irc;
            break;
        }
    }
    if (!rc) {
        cf__crash_point(e, "before-commit");
        rc = cf_store_commit(e->store);
    }
    if (!rc)
        cf__crash_point(e, "after-commit");
    if (rc) {
        cf_log(CF_LOG_ERROR, "batch not committed: %s (%s); outcomes are retried in 1 s",
               cf_strerror(rc), cf_store_errmsg(e->store));
        cf_store_rollback(e->store);
        discard_tx(e);
        /* Callers' work fails now (nothing of it is stored); outcomes go back to the front of the
         * queue, before anything that arrived meanwhile. */
        struct cf_item *keep = NULL, **tail = &keep;
        size_t n = 0;
        while (batch) {
            struct cf_item *it = batch;
            batch = it->next;
            if (it->kind == ITEM_TX) {
                it->tx_done(it->tx_arg, rc);
                item_free(it);
                continue;
            }
            it->next = NULL;
            *tail = it;
            tail = &it->next;
            n++;
        }
        if (keep) {
            *tail = e->items_head;
            if (!e->items_head)
                e->items_tail = cf_container_of(tail, struct cf_item, next);
            e->items_head = keep;
            e->n_items += n;
        }
        e->flush_blocked = true;
        uv_timer_start(&e->retry_timer, retry_timer_cb, 1000, 0);
        e->in_flush = false;
        return;
    }
    after_commit(e);
    while (batch) {
        struct cf_item *n = batch->next;
        if (batch->kind == ITEM_TX) {
            batch->tx_done(batch->tx_arg, batch->tx_rc);
        } else {
            job_finished(e, batch->job);
            batch->job = NULL;
        }
        item_free(batch);
        batch = n;
    }
    e->in_flush = false;
    dispatch(e);
    schedule_due(e);
    check_idle(e);
}

void cf_engine_submit(struct cf_engine *e, cf_tx_fn fn, cf_tx_done_fn done, void *arg)
{
    struct cf_item *it = cf_xcalloc(1, sizeof(*it));
    it->kind = ITEM_TX;
    it->tx_fn = fn;
    it->tx_done = done;
    it->tx_arg = arg;
    enqueue_item(e, it);
}

int cf_engine_tx_create_instance(struct cf_engine *e, int64_t definition_id,
                                 const char *business_key, const struct cf_named_val *vars,
                                 size_t n_vars, int64_t *instance_id, char *err, size_t errlen)
{
    struct cf_definition *def = cf__definition_get(e, definition_id, err, errlen);
    if (!def)
        return CF_ENOENT;
    if (!def->model->none_start) {
        cf_errf(err, errlen, "process %s has no none start event", def->key);
        return CF_EINVALID;
    }
    struct cf_instance *inst;
    int rc = cf__instance_prepare(e, def, business_key, vars, n_vars, &inst);
    if (!rc)
        *instance_id = inst->id;
    return rc;
}

/* --- plug-in calls --- */

static struct cf_call_ctx *ctx_of(struct cf_call *call)
{
    return cf_container_of(call, struct cf_call_ctx, pub);
}

static void call_release(struct cf_call_ctx *c)
{
    if (--c->refs > 0)
        return;
    for (size_t i = 0; i < c->n_params; i++) {
        if (c->params[i].value) {
            /* Parameter values may be secrets: wipe them before the memory is reused. */
            OPENSSL_cleanse(c->params[i].value, strlen(c->params[i].value));
        }
        free(c->params[i].value);
    }
    free(c->params);
    for (size_t i = 0; i < c->n_vars; i++) {
        free(c->vars[i].name);
        cf_val_free(&c->vars[i].val);
    }
    free(c->vars);
    for (size_t i = 0; i < c->n_scratch; i++)
        free(c->scratch[i]);
    free(c->scratch);
    free(c->idem_key);
    free(c->instance_text);
    free(c->tenant_id);
    free(c);
}

static void call_unlink(struct cf_call_ctx *c)
{
    struct cf_engine *e = c->e;
    if (c->prev)
        c->prev->next = c->next;
    else if (e->calls == c)
        e->calls = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
}

/* Ends a call: the outcome becomes an item for the next batch. */
static void call_end(struct cf_call_ctx *c, enum cf_outcome_kind kind, bool retryable,
                     const char *code, const char *message)
{
    struct cf_item *it = cf_xcalloc(1, sizeof(*it));
    it->kind = ITEM_OUTCOME;
    it->job = c->job;
    it->outcome = kind;
    it->retryable = retryable;
    it->code = code ? cf_xstrdup(code) : NULL;
    it->message = message ? cf_xstrdup(message) : NULL;
    if (kind == OUT_COMPLETE) {
        it->vars = c->vars;
        it->n_vars = c->n_vars;
        c->vars = NULL;
        c->n_vars = 0;
    }
    c->job = NULL;
    c->ended = true;
    call_unlink(c);
    enqueue_item(c->e, it);
    call_release(c);
}

static bool call_may_end(struct cf_call_ctx *c, const char *what)
{
    if (c->abandoned) {
        cf_log(CF_LOG_DEBUG, "plug-in task %s ended a call after it was given up (%s ignored)",
               c->pub.task->name, what);
        return false;
    }
    if (c->ended) {
        cf_log(CF_LOG_ERROR, "plug-in task %s ended a call twice (%s ignored): plug-in bug",
               c->pub.task->name, what);
        return false;
    }
    return true;
}

static void host_complete(struct cf_call *call)
{
    struct cf_call_ctx *c = ctx_of(call);
    if (call_may_end(c, "complete"))
        call_end(c, OUT_COMPLETE, false, NULL, NULL);
}

static void host_throw_error(struct cf_call *call, const char *code, const char *message)
{
    struct cf_call_ctx *c = ctx_of(call);
    if (!call_may_end(c, "throw_error"))
        return;
    if (!code || !*code) {
        /* Camunda requires a non-empty code; a plug-in that gives none failed technically. */
        call_end(c, OUT_FAIL, false, NULL, "plug-in threw a BPMN error without an error code");
        return;
    }
    call_end(c, OUT_ERROR, false, code, message);
}

static void host_fail(struct cf_call *call, int retryable, const char *message)
{
    struct cf_call_ctx *c = ctx_of(call);
    if (call_may_end(c, "fail"))
        call_end(c, OUT_FAIL, retryable != 0, NULL, message ? message : "plug-in failed");
}

static const char *host_param(struct cf_call *call, const char *name)
{
    struct cf_call_ctx *c = ctx_of(call);
    for (size_t i = 0; i < c->n_params; i++)
        if (strcmp(c->params[i].name, name) == 0)
            return c->params[i].value;
    return NULL;
}

static struct cf_exec *call_exec(struct cf_call_ctx *c)
{
    if (!c->job || c->ended || c->abandoned)
        return NULL;
    struct cf_instance *inst = cf_imap_get(&c->e->instances, c->job->instance_id);
    return inst ? cf__exec_find(inst, c->job->execution_id) : NULL;
}

static int host_var_get(struct cf_call *call, const char *name, struct cf_value *out)
{
    struct cf_call_ctx *c = ctx_of(call);
    if (!name || !out)
        return CF_EINVAL;
    /* A value this call already set is what the task sees. */
    const struct cf_val *v = NULL;
    for (size_t i = 0; i < c->n_vars; i++)
        if (strcmp(c->vars[i].name, name) == 0)
            v = &c->vars[i].val;
    if (!v) {
        struct cf_exec *x = call_exec(c);
        v = x ? cf__var_lookup(x, name) : NULL;
    }
    if (!v)
        return CF_ENOENT;
    char *scratch = NULL;
    cf_val_to_abi(v, out, &scratch);
    if (scratch) {
        c->scratch = cf_xrealloc(c->scratch, (c->n_scratch + 1) * sizeof(*c->scratch));
        c->scratch[c->n_scratch++] = scratch;
    }
    return 0;
}

static int host_var_set(struct cf_call *call, const char *name, const struct cf_value *value)
{
    struct cf_call_ctx *c = ctx_of(call);
    if (!name || !*name || !value || c->ended || c->abandoned)
        return CF_EINVAL;
    struct cf_val v = CF_VAL_NULL_INIT;
    char err[256];
    int rc = cf_val_from_abi(&v, value, err, sizeof(err));
    if (rc) {
        cf_log(CF_LOG_WARN, "plug-in task %s set variable %s to an invalid value: %s",
               c->pub.task->name, name, err);
        return rc;
    }
    for (size_t i = 0; i < c->n_vars; i++) {
        if (strcmp(c->vars[i].name, name) == 0) {
            cf_val_move(&c->vars[i].val, &v);
            return 0;
        }
    }
    c->vars = cf_xrealloc(c->vars, (c->n_vars + 1) * sizeof(*c->vars));
    c->vars[c->n_vars].name = cf_xstrdup(name);
    c->vars[c->n_vars].val.type = CF_VALUE_NULL;
    cf_val_move(&c->vars[c->n_vars].val, &v);
    c->n_vars++;
    return 0;
}

static const char *host_idempotency_key(struct cf_call *call)
{
    return ctx_of(call)->idem_key;
}

static const char *host_instance_id(struct cf_call *call)
{
    return ctx_of(call)->instance_text;
}

static const char *host_activity_id(struct cf_call *call)
{
    return ctx_of(call)->elem->id;
}

static const char *host_tenant_id(struct cf_call *call)
{
    return ctx_of(call)->tenant_id;
}

struct work_req {
    uv_work_t req;
    struct cf_call_ctx *c;
    cf_work_fn work;
    cf_after_work_fn after;
    void *arg;
};

static void work_cb(uv_work_t *req)
{
    struct work_req *w = cf_container_of(req, struct work_req, req);
    w->work(w->arg);
}

static void after_work_cb(uv_work_t *req, int status)
{
    struct work_req *w = cf_container_of(req, struct work_req, req);
    (void)status;
    struct cf_call_ctx *c = w->c;
    /* `after` runs even for a call given up meanwhile, so the plug-in can free `arg`; any ending
     * it makes then is ignored. */
    if (w->after)
        w->after(&c->pub, w->arg);
    struct cf_engine *e = c->e;
    call_release(c);
    free(w);
    e->pending_work--;
    maybe_free(e);
}

static int host_queue_work(struct cf_call *call, cf_work_fn work, cf_after_work_fn after, void *arg)
{
    struct cf_call_ctx *c = ctx_of(call);
    if (!work || c->ended || c->abandoned)
        return CF_EINVAL;
    struct work_req *w = cf_xcalloc(1, sizeof(*w));
    w->c = c;
    w->work = work;
    w->after = after;
    w->arg = arg;
    if (uv_queue_work(c->e->loop, &w->req, work_cb, after_work_cb) != 0) {
        free(w);
        return CF_EINVAL;
    }
    c->refs++;
    c->e->pending_work++;
    return 0;
}

static void host_log(struct cf_call *call, int level, const char *fmt, ...)
{
    struct cf_call_ctx *c = ctx_of(call);
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (level < CF_PLUGIN_LOG_DEBUG || level > CF_PLUGIN_LOG_ERROR)
        level = CF_PLUGIN_LOG_INFO;
    cf_log((enum cf_log_level)level, "task=%s instance=%s activity=%s: %s", c->pub.task->name,
           c->instance_text, c->elem->id, msg);
}

static const void *host_service(struct cf_call *call, const char *name, uint32_t version)
{
    struct cf_engine *e = ctx_of(call)->e;
    for (size_t i = 0; i < e->n_services; i++)
        if (strcmp(e->services[i].name, name) == 0 && e->services[i].version == version)
            return e->services[i].impl;
    return NULL;
}

static int host_attempts_left(struct cf_call *call)
{
    struct cf_call_ctx *c = ctx_of(call);
    return c->job ? c->job->retries : 0;
}

int cf_engine_set_service(struct cf_engine *e, const char *name, uint32_t version, const void *impl)
{
    for (size_t i = 0; i < e->n_services; i++)
        if (strcmp(e->services[i].name, name) == 0 && e->services[i].version == version) {
            e->services[i].impl = impl;
            return 0;
        }
    if (e->n_services == CF_ARRAY_LEN(e->services))
        return CF_ELIMIT;
    e->services[e->n_services].name = name;
    e->services[e->n_services].version = version;
    e->services[e->n_services].impl = impl;
    e->n_services++;
    return 0;
}

int64_t cf_call_instance_id(struct cf_call *call)
{
    struct cf_call_ctx *c = ctx_of(call);
    return c->job ? c->job->instance_id : 0;
}

int cf_call_attempt(struct cf_call *call)
{
    struct cf_call_ctx *c = ctx_of(call);
    return c->job && c->job->attempt > 0 ? c->job->attempt : 1;
}

struct cf_engine *cf_call_engine(struct cf_call *call)
{
    return ctx_of(call)->e;
}

void cf_call_hold(struct cf_call *call)
{
    ctx_of(call)->refs++;
}

void cf_call_unhold(struct cf_call *call)
{
    call_release(ctx_of(call));
}

uv_loop_t *cf_engine_loop(struct cf_engine *e)
{
    return e->loop;
}

/* Resolves the parameters of a call: admin configuration over camunda:inputParameter (already
 * evaluated into the activity's local variables) over camunda:field over the default; admin and
 * field values are templates evaluated now. */
static int resolve_params(struct cf_call_ctx *c, struct cf_exec *x, const struct cf_definition *def,
                          char *err, size_t errlen)
{
    const struct cf_task_def *t = c->pub.task;
    size_t np = cf_task_param_count(t);
    c->params = cf_xcalloc(np + def->n_params + x->elem->n_inputs + x->elem->n_fields + 1,
                           sizeof(*c->params));
    for (size_t i = 0; i < np; i++) {
        const struct cf_param_def *p = cf_task_param_at(t, i);
        struct cf_buf b;
        cf_buf_init(&b);
        const char *admin = NULL;
        for (size_t k = 0; k < def->n_params; k++)
            if (strcmp(def->params[k].activity_id, x->elem->id) == 0 &&
                strcmp(def->params[k].name, p->name) == 0)
                admin = def->params[k].value;
        const struct cf_mapping *fd = find_mapping(x->elem->fields, x->elem->n_fields, p->name);
        bool has = false;
        int rc = 0;
        if (admin || (!find_mapping(x->elem->inputs, x->elem->n_inputs, p->name) && fd)) {
            struct cf_expr *owned = NULL;
            const struct cf_expr *ex = NULL;
            char detail[512];
            if (admin) {
                /* A sealed secret is opened only here, into this call's memory, and wiped as
                 * soon as it is compiled (store/seal.h). */
                char *plain = NULL;
                rc = cf_store_param_reveal(c->e->store, def->tenant_id, def->key, x->elem->id,
                                           p->name, admin, &plain);
                if (rc) {
                    cf_errf(err, errlen,
                            "parameter '%s': its stored secret value cannot be opened (the "
                            "secrets key is missing or is not the one it was stored with); set "
                            "the parameter again",
                            p->name);
                    cf_buf_free(&b);
                    return CF_EINVAL;
                }
                rc = cf_expr_compile(plain, &owned, detail, sizeof(detail));
                cf_seal_free_plain(plain);
                ex = owned;
            } else {
                ex = fd->value;
            }
            if (!rc && ex) {
                struct cf_val v = CF_VAL_NULL_INIT;
                rc = cf_expr_eval(ex, cf__expr_lookup, x, &v, detail, sizeof(detail));
                if (!rc && v.type != CF_VALUE_NULL) {
                    cf_val_to_text(&v, &b);
                    has = true;
                }
                cf_val_free(&v);
            }
            cf_expr_free(owned);
            if (rc) {
                cf_errf(err, errlen, "parameter '%s': %s", p->name,
                        (p->flags & CF_PARAM_SECRET) ? "the secret value is not a valid expression"
                                                     : detail);
                cf_buf_free(&b);
                return CF_EEXPR;
            }
        } else if (find_mapping(x->elem->inputs, x->elem->n_inputs, p->name)) {
            const struct cf_var *lv = NULL;
            for (size_t k = 0; k < x->n_vars; k++)
                if (strcmp(x->vars[k].name, p->name) == 0)
                    lv = &x->vars[k];
            if (lv && lv->val.type != CF_VALUE_NULL) {
                cf_val_to_text(&lv->val, &b);
                has = true;
            }
        }
        if (!has && p->default_value) {
            cf_buf_puts(&b, p->default_value);
            has = true;
        }
        if (!has) {
            cf_buf_free(&b);
            if (p->flags & CF_PARAM_MANDATORY) {
                cf_errf(err, errlen, "mandatory parameter '%s' of task '%s' has no value", p->name,
                        t->name);
                return CF_EINVAL;
            }
            continue;
        }
        if ((rc = cf_param_check_value(p, b.data, err, errlen))) {
            OPENSSL_cleanse(b.data, b.len);
            cf_buf_free(&b);
            return rc;
        }
        c->params[c->n_params].name = p->name;
        c->params[c->n_params].value = cf_buf_steal(&b);
        c->n_params++;
    }
    if (t->flags & CF_TASK_EXTRA_PARAMS) {
        /* Dynamic attributes: every other admin value and input parameter of the activity. */
        for (size_t k = 0; k < def->n_params; k++) {
            if (strcmp(def->params[k].activity_id, x->elem->id) != 0 ||
                cf_task_param_find(t, def->params[k].name))
                continue;
            c->params[c->n_params].name = def->params[k].name;
            c->params[c->n_params].value = cf_xstrdup(def->params[k].value);
            c->n_params++;
        }
        for (size_t k = 0; k < x->n_vars; k++) {
            if (cf_task_param_find(t, x->vars[k].name) ||
                !find_mapping(x->elem->inputs, x->elem->n_inputs, x->vars[k].name))
                continue;
            struct cf_buf b;
            cf_buf_init(&b);
            cf_val_to_text(&x->vars[k].val, &b);
            c->params[c->n_params].name = x->vars[k].name;
            c->params[c->n_params].value = cf_buf_steal(&b);
            c->n_params++;
        }
    }
    return 0;
}

static void start_call(struct cf_engine *e, struct cf_jobref *j)
{
    char err[1024];
    struct cf_instance *inst = cf__instance_get(e, j->instance_id, err, sizeof(err));
    struct cf_exec *x = inst ? cf__exec_find(inst, j->execution_id) : NULL;
    if (!x || x->state != EX_WAITING || inst->ended || x->act_inst_id != j->act_inst_id) {
        if (!inst)
            cf_log(CF_LOG_ERROR, "job=%" PRId64 ": %s", j->id, err);
        job_finished(e, j);
        return;
    }
    const struct cf_task_def *t = cf_registry_find(e->registry, x->elem->delegate, NULL);
    struct cf_call_ctx *c = cf_xcalloc(1, sizeof(*c));
    c->pub.size = sizeof(c->pub);
    c->pub.host = &e->host;
    c->pub.task = t;
    c->e = e;
    c->job = j;
    c->elem = x->elem;
    c->refs = 1;
    c->idem_key = cf_xasprintf("certflow-%" PRId64 "-%" PRId64, j->instance_id, j->act_inst_id);
    c->instance_text = cf_xasprintf("%" PRId64, j->instance_id);
    c->tenant_id = cf_xstrdup(inst->tenant_id ? inst->tenant_id : "");
    c->deadline = cf_mono_ms() + e->opt.call_timeout_ms;
    c->next = e->calls;
    if (e->calls)
        e->calls->prev = c;
    e->calls = c;
    if (!t) {
        /* The plug-in was removed since deployment: an incident tells the admin. */
        cf_errf(err, sizeof(err), "no plug-in task named '%s' is loaded", x->elem->delegate);
        call_end(c, OUT_FAIL, false, NULL, err);
        return;
    }
    if (resolve_params(c, x, inst->def, err, sizeof(err)) != 0) {
        call_end(c, OUT_FAIL, false, NULL, err);
        return;
    }
    c->refs++;
    t->execute(&c->pub);
    if (!c->ended)
        cf__crash_point(e, "plugin-running");
    call_release(c);
}

static void dispatch(struct cf_engine *e)
{
    if (e->closing)
        return;
    while (e->running < e->opt.max_concurrent_jobs && e->ready_head) {
        struct cf_jobref *j = ready_pop(e);
        struct busy *b = j->instance_id ? cf_imap_get(&e->busy, j->instance_id) : NULL;
        if (b) {
            /* One token mover per instance: wait for the job that runs now. */
            j->next = NULL;
            if (b->tail)
                b->tail->next = j;
            else
                b->head = j;
            b->tail = j;
            continue;
        }
        if (j->instance_id)
            cf_imap_put(&e->busy, j->instance_id, cf_xcalloc(1, sizeof(struct busy)));
        e->running++;
        if (strcmp(j->type, "call") == 0) {
            start_call(e, j);
        } else {
            struct cf_item *it = cf_xcalloc(1, sizeof(*it));
            it->kind = ITEM_RUN_JOB;
            it->job = j;
            enqueue_item(e, it);
        }
    }
}

/* --- timers: due jobs, call deadlines, retry after a failed commit --- */

struct acquired {
    struct cf_engine *e;
    struct cf_jobref *list;
    struct cf_jobref **poison;
    size_t n_poison;
};

static int acquire_row(void *arg, const struct cf_job_row *r)
{
    struct acquired *a = arg;
    if (cf_imap_get(&a->e->known_jobs, r->id))
        return 0;
    if (r->interrupted >= MAX_INTERRUPTED_RUNS) {
        /* Runs that never ended (the process died while the job ran) count too: a job that kills
         * the engine each time must end as an incident, not loop forever (the Zeebe lesson). */
        a->poison = cf_xrealloc(a->poison, (a->n_poison + 1) * sizeof(*a->poison));
        struct cf_jobref *j = cf_xcalloc(1, sizeof(*j));
        j->id = r->id;
        cf_strlcpy(j->type, r->type, sizeof(j->type));
        j->instance_id = r->instance_id;
        j->execution_id = r->execution_id;
        j->act_inst_id = r->act_inst_id;
        j->retries = 1;
        j->attempt = r->interrupted;
        a->poison[a->n_poison++] = j;
        return 0;
    }
    struct cf_jobref *j = cf_xcalloc(1, sizeof(*j));
    j->id = r->id;
    cf_strlcpy(j->type, r->type, sizeof(j->type));
    j->instance_id = r->instance_id;
    j->execution_id = r->execution_id;
    j->act_inst_id = r->act_inst_id;
    j->retries = r->retries;
    j->attempt = r->attempt + 1;
    j->next = a->list;
    a->list = j;
    return 0;
}

/* Locks due jobs that nobody holds and hands them to the executor. */
static void acquire(struct cf_engine *e)
{
    if (e->closing || e->in_flush)
        return;
    uint64_t now = cf_now_ms();
    struct acquired a = {.e = e};
    int rc = cf_store_jobs_due(e->store, now, ACQUIRE_BATCH, acquire_row, &a);
    if (!rc && a.list) {
        rc = cf_store_begin(e->store);
        for (struct cf_jobref *j = a.list; j && !rc; j = j->next)
            rc = cf_store_job_lock(e->store, j->id, e->node_id, now + e->opt.lock_ms, j->attempt);
        if (!rc)
            rc = cf_store_commit(e->store);
        if (rc)
            cf_store_rollback(e->store);
        else
            cf__crash_point(e, "job-locked");
    }
    struct cf_jobref *rev = NULL;
    while (a.list) {
        struct cf_jobref *j = a.list;
        a.list = j->next;
        if (rc) {
            free(j);
            continue;
        }
        j->next = rev;
        rev = j;
    }
    while (rev) {
        struct cf_jobref *j = rev;
        rev = j->next;
        cf_imap_put(&e->known_jobs, j->id, j);
        ready_push(e, j, false);
    }
    for (size_t i = 0; i < a.n_poison; i++) {
        struct cf_jobref *j = a.poison[i];
        if (rc || cf_imap_get(&e->busy, j->instance_id)) {
            free(j);
            continue;
        }
        char *msg = cf_xasprintf("the job was cut short %d times: the engine stopped or crashed "
                                 "each time while it ran",
                                 j->attempt);
        cf_log(CF_LOG_ERROR, "job=%" PRId64 " instance=%" PRId64 ": %s", j->id, j->instance_id,
               msg);
        struct cf_item *it = cf_xcalloc(1, sizeof(*it));
        it->kind = ITEM_OUTCOME;
        it->job = j;
        it->outcome = OUT_FAIL;
        it->retryable = false;
        it->message = msg;
        cf_imap_put(&e->known_jobs, j->id, j);
        cf_imap_put(&e->busy, j->instance_id, cf_xcalloc(1, sizeof(struct busy)));
        e->running++;
        enqueue_item(e, it);
    }
    free(a.poison);
    if (rc)
        cf_log(CF_LOG_WARN, "cannot acquire due jobs: %s (%s)", cf_strerror(rc),
               cf_store_errmsg(e->store));
    uint64_t due = 0;
    e->next_due = cf_store_jobs_next_due(e->store, &due) == 0 ? due : 0;
    dispatch(e);
}

static void due_timer_cb(uv_timer_t *t)
{
    struct cf_engine *e = cf_container_of(t, struct cf_engine, due_timer);
    expire_calls(e);
    acquire(e);
    schedule_due(e);
    check_idle(e);
}

static void schedule_due(struct cf_engine *e)
{
    if (e->closing)
        return;
    bool calls = e->calls != NULL;
    if (!e->next_due && !calls) {
        uv_timer_stop(&e->due_timer);
        return;
    }
    uint64_t now = cf_now_ms();
    uint64_t wait = MAX_TIMER_SLEEP_MS;
    if (e->next_due)
        wait = e->next_due <= now ? 0 : e->next_due - now;
    if (wait > MAX_TIMER_SLEEP_MS)
        wait = MAX_TIMER_SLEEP_MS;
    if (calls && wait > CALL_CHECK_MS)
        wait = CALL_CHECK_MS;
    uv_timer_start(&e->due_timer, due_timer_cb, wait, 0);
    /* Waiting for the future alone must not keep alive a loop whose owner waits only for work
     * that is runnable now; a job due now, or a call running, is such work. */
    if (calls || (e->next_due && e->next_due <= now))
        uv_ref((uv_handle_t *)&e->due_timer);
    else
        uv_unref((uv_handle_t *)&e->due_timer);
}

static void expire_calls(struct cf_engine *e)
{
    uint64_t now = cf_mono_ms();
    struct cf_call_ctx *c = e->calls;
    while (c) {
        struct cf_call_ctx *n = c->next;
        if (!c->ended && now >= c->deadline) {
            char msg[256];
            snprintf(msg, sizeof(msg), "plug-in call timed out after %" PRIu64 " ms",
                     e->opt.call_timeout_ms);
            struct cf_jobref *j = c->job;
            c->refs++;
            if (c->pub.task && c->pub.task->cancel)
                c->pub.task->cancel(&c->pub);
            if (!c->ended) {
                call_end(c, OUT_FAIL, true, NULL, msg);
                c->abandoned = true;
            }
            cf_log(CF_LOG_WARN, "job=%" PRId64 " %s", j ? j->id : 0, msg);
            call_release(c);
        }
        c = n;
    }
}

static void flush_idle_cb(uv_idle_t *h)
{
    struct cf_engine *e = cf_container_of(h, struct cf_engine, flush_idle);
    expire_calls(e);
    cf_engine_flush(e);
    if (!e->items_head || e->flush_blocked)
        uv_idle_stop(&e->flush_idle);
}

static void retry_timer_cb(uv_timer_t *t)
{
    struct cf_engine *e = cf_container_of(t, struct cf_engine, retry_timer);
    e->flush_blocked = false;
    if (e->items_head && !e->closing)
        uv_idle_start(&e->flush_idle, flush_idle_cb);
}

/* --- open and close --- */

int cf_engine_add_module(struct cf_engine *e, const struct cf_module *m, const char *origin,
                         char *err, size_t errlen)
{
    return cf_registry_add_module(e->registry, m, origin, err, errlen);
}

/* One engine per database: two engines would each run (and apply) the same jobs, because a
 * single node releases every lock it finds at start. An fcntl lock on "<db>.lock" holds while
 * the engine lives and goes with the process, so a crash never leaves a stale lock behind. */
static int lock_database(struct cf_engine *e, const char *db_path, char *err, size_t errlen)
{
    char *path = cf_xasprintf("%s.lock", db_path);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        cf_errf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        free(path);
        return CF_EIO;
    }
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    if (fcntl(fd, F_SETLK, &fl) != 0) {
        struct flock who = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
        long pid = fcntl(fd, F_GETLK, &who) == 0 ? (long)who.l_pid : 0;
        cf_errf(err, errlen,
                "database %s is in use by another certflow process (pid %ld); stop it, or talk "
                "to it with --url",
                db_path, pid);
        close(fd);
        free(path);
        return CF_EBUSY;
    }
    free(path);
    e->lock_fd = fd;
    return 0;
}

static void engine_free(struct cf_engine *e)
{
    while (e->items_head) {
        struct cf_item *it = e->items_head;
        e->items_head = it->next;
        free(it->job);
        item_free(it);
    }
    while (e->ready_head)
        free(ready_pop(e));
    for (size_t i = 0; i < e->busy.cap; i++) {
        struct busy *b = e->busy.slots[i].value;
        if (!e->busy.slots[i].key)
            continue;
        while (b->head) {
            struct cf_jobref *j = b->head;
            b->head = j->next;
            free(j);
        }
        free(b);
    }
    for (size_t i = 0; i < e->instances.cap; i++)
        if (e->instances.slots[i].key)
            cf__instance_free(e->instances.slots[i].value);
    for (size_t i = 0; i < e->defs.cap; i++)
        if (e->defs.slots[i].key)
            definition_free(e->defs.slots[i].value);
    cf_imap_free(&e->instances);
    cf_imap_free(&e->defs);
    cf_imap_free(&e->busy);
    cf_imap_free(&e->known_jobs);
    free(e->touched);
    free(e->ended);
    free(e->agenda);
    cf_registry_free(e->registry);
    cf_store_close(e->store);
    if (e->lock_fd >= 0)
        close(e->lock_fd);
    free(e->node_id);
    free(e);
}

/* The engine goes when its handles are closed and no plug-in work is still on a worker thread:
 * that work's completion callback reaches the call, the host table and the plug-in's code. */
static void maybe_free(struct cf_engine *e)
{
    if (e->closing && e->open_handles == 0 && e->pending_work == 0)
        engine_free(e);
}

static void handle_closed(uv_handle_t *h)
{
    struct cf_engine *e = h->data;
    e->open_handles--;
    maybe_free(e);
}

int cf_engine_open(uv_loop_t *loop, const struct cf_engine_options *opt, struct cf_engine **out,
                   char *err, size_t errlen)
{
    cf_bpmn_global_init();
    struct cf_engine *e = cf_xcalloc(1, sizeof(*e));
    e->loop = loop;
    e->opt = *opt;
    if (e->opt.max_concurrent_jobs <= 0)
        e->opt.max_concurrent_jobs = 32;
    if (e->opt.max_cached_instances <= 0)
        e->opt.max_cached_instances = 10000;
    if (!e->opt.lock_ms)
        e->opt.lock_ms = 5 * 60 * 1000;
    if (!e->opt.call_timeout_ms)
        e->opt.call_timeout_ms = 5 * 60 * 1000;
    if (opt->node_id) {
        e->node_id = cf_xstrdup(opt->node_id);
    } else {
        char host[128] = "localhost";
        gethostname(host, sizeof(host) - 1);
        host[sizeof(host) - 1] = '\0';
        e->node_id = cf_xasprintf("%s:%ld", host, (long)getpid());
    }
    cf_imap_init(&e->defs);
    cf_imap_init(&e->instances);
    cf_imap_init(&e->busy);
    cf_imap_init(&e->known_jobs);
    crash_setup(e);
    e->host = (struct cf_host){
        .size = sizeof(struct cf_host),
        .abi_major = CF_PLUGIN_ABI_MAJOR,
        .abi_minor = CF_PLUGIN_ABI_MINOR,
        .param = host_param,
        .var_get = host_var_get,
        .var_set = host_var_set,
        .idempotency_key = host_idempotency_key,
        .instance_id = host_instance_id,
        .activity_id = host_activity_id,
        .tenant_id = host_tenant_id,
        .complete = host_complete,
        .throw_error = host_throw_error,
        .fail = host_fail,
        .queue_work = host_queue_work,
        .log = host_log,
        .service = host_service,
        .attempts_left = host_attempts_left,
    };
    e->lock_fd = -1;
    struct cf_store_options so = {.synchronous_normal = opt->synchronous_normal};
    int rc = lock_database(e, opt->db_path, err, errlen);
    if (!rc)
        rc = cf_store_open(opt->db_path, &so, &e->store, err, errlen);
    if (rc) {
        if (e->lock_fd >= 0)
            close(e->lock_fd);
        free(e->node_id);
        free(e);
        return rc;
    }
    e->registry = cf_registry_new(&e->host);
    if (opt->plugin_dir) {
        char perr[2048];
        perr[0] = '\0';
        if (cf_registry_load_dir(e->registry, opt->plugin_dir, perr, sizeof(perr)) != 0)
            cf_log(CF_LOG_WARN, "plug-ins: %s", perr);
    }
    /* A single node owns every lock it finds at start: they are left over from a previous run
     * that stopped (or crashed) while those jobs ran. Releasing counts the interrupted run. */
    int released = 0;
    rc = cf_store_begin(e->store);
    if (!rc)
        rc = cf_store_jobs_release_all(e->store, &released);
    if (!rc)
        rc = cf_store_commit(e->store);
    if (rc) {
        cf_errf(err, errlen, "cannot release job locks: %s", cf_store_errmsg(e->store));
        cf_store_rollback(e->store);
        cf_registry_free(e->registry);
        cf_store_close(e->store);
        close(e->lock_fd);
        free(e->node_id);
        free(e);
        return rc;
    }
    if (released)
        cf_log(CF_LOG_INFO, "released %d job locks left by a previous run; they will run again",
               released);
    uv_idle_init(loop, &e->flush_idle);
    uv_timer_init(loop, &e->due_timer);
    uv_timer_init(loop, &e->retry_timer);
    e->flush_idle.data = e->due_timer.data = e->retry_timer.data = e;
    e->open_handles = 3;
    uint64_t due = 0;
    if (cf_store_jobs_next_due(e->store, &due) == 0)
        e->next_due = due;
    schedule_due(e);
    *out = e;
    return 0;
}

void cf_engine_close(struct cf_engine *e)
{
    if (!e || e->closing)
        return;
    /* Outcomes already received are committed: plug-in work that finished is not thrown away. */
    cf_engine_flush(e);
    e->closing = true;
    while (e->calls) {
        struct cf_call_ctx *c = e->calls;
        call_unlink(c);
        c->refs++;
        if (c->pub.task && c->pub.task->cancel && !c->ended)
            c->pub.task->cancel(&c->pub);
        c->abandoned = true;
        if (c->job) {
            /* Its lock is released at the next start, which runs the job again. */
            free(c->job);
            c->job = NULL;
        }
        c->ended = true;
        call_release(c);
        call_release(c);
    }
    uv_close((uv_handle_t *)&e->flush_idle, handle_closed);
    uv_close((uv_handle_t *)&e->due_timer, handle_closed);
    uv_close((uv_handle_t *)&e->retry_timer, handle_closed);
}

void cf_engine_set_observer(struct cf_engine *e, const struct cf_engine_observer *obs)
{
    e->obs = *obs;
}

struct cf_store *cf_engine_store(struct cf_engine *e)
{
    return e->store;
}

struct cf_registry *cf_engine_registry(struct cf_engine *e)
{
    return e->registry;
}

bool cf_engine_is_idle(const struct cf_engine *e)
{
    return !e->items_head && !e->ready_head && e->running == 0 &&
           !(e->next_due && e->next_due <= cf_now_ms());
}

void cf_engine_stats(const struct cf_engine *e, struct cf_engine_stats *out)
{
    out->items = e->n_items;
    out->ready = e->n_ready;
    out->running = e->running;
    out->next_due = e->next_due;
    out->commits = cf_store_commits(e->store);
}

uint64_t cf_engine_next_due(struct cf_engine *e)
{
    return e->next_due;
}

struct sub_match {
    struct cf_engine *e;
    const struct cf_correlation *c;
    struct cf_sub_row *items; /* owned copies with borrowed strings duplicated */
    size_t n;
    bool start_only;
};

static int collect_sub(void *arg, const struct cf_sub_row *r)
{
    struct sub_match *m = arg;
    m->items = cf_xrealloc(m->items, (m->n + 1) * sizeof(*m->items));
    struct cf_sub_row *c = &m->items[m->n++];
    *c = *r;
    c->name = cf_xstrdup(r->name);
    c->tenant_id = cf_xstrdup(r->tenant_id ? r->tenant_id : "");
    c->activity_id = cf_xstrdup(r->activity_id);
    return 0;
}

static void sub_match_free(struct sub_match *m)
{
    for (size_t i = 0; i < m->n; i++) {
        free((char *)m->items[i].name);
        free((char *)m->items[i].tenant_id);
        free((char *)m->items[i].activity_id);
    }
    free(m->items);
}

/* Whether an instance's process variables have the values a correlation asks for. */
static bool vars_match(struct cf_engine *e, int64_t instance_id, const struct cf_correlation *c)
{
    if (!c->n_match)
        return true;
    char err[256];
    struct cf_instance *inst = cf__instance_get(e, instance_id, err, sizeof(err));
    if (!inst)
        return false;
    for (size_t i = 0; i < c->n_match; i++) {
        const struct cf_val *v = cf__var_lookup(inst->root, c->match[i].name);
        if (!v || !cf_val_equal(v, &c->match[i].val))
            return false;
    }
    return true;
}

int cf_engine_correlate(struct cf_engine *e, const struct cf_correlation *c, int64_t *ids,
                        size_t max, size_t *n, char *err, size_t errlen)
{
    *n = 0;
    if (!c->message || !*c->message) {
        cf_errf(err, errlen, "a message needs a name");
        return CF_EINVAL;
    }
    struct sub_match m = {.e = e, .c = c};
    int rc = cf_store_subs_find(e->store, c->tenant_id ? c->tenant_id : "", c->message,
                                c->business_key, collect_sub, &m);
    if (rc) {
        cf_errf(err, errlen, "cannot look up subscriptions: %s", cf_store_errmsg(e->store));
        sub_match_free(&m);
        return rc;
    }
    /* Keep waiting executions that match; a start event only if no execution waits. */
    size_t n_inst = 0, first_start = SIZE_MAX;
    for (size_t i = 0; i < m.n; i++) {
        if (!m.items[i].instance_id) {
            if (first_start == SIZE_MAX)
                first_start = i;
            m.items[i].id = -m.items[i].id; /* mark: not an instance match */
            continue;
        }
        if (vars_match(e, m.items[i].instance_id, c))
            n_inst++;
        else
            m.items[i].id = 0;
    }
    if (n_inst > 1 && !c->all) {
        cf_errf(err, errlen,
                "message '%s' matches %zu waiting executions; narrow it with a business key or "
                "correlation variables, or deliver it to all",
                c->message, n_inst);
        sub_match_free(&m);
        return CF_EEXIST;
    }
    size_t n_waiting = 0;
    for (size_t i = 0; i < m.n; i++)
        if (m.items[i].instance_id)
            n_waiting++;
    if (!n_inst && n_waiting) {
        cf_errf(err, errlen,
                "message '%s'%s%s matched nothing: %zu execution%s wait%s for it, but none has "
                "the correlation variables asked for",
                c->message, c->business_key ? " with business key " : "",
                c->business_key ? c->business_key : "", n_waiting, n_waiting == 1 ? "" : "s",
                n_waiting == 1 ? "s" : "");
        sub_match_free(&m);
        return CF_ENOENT;
    }
    if (!n_inst && (first_start == SIZE_MAX || c->n_match)) {
        cf_errf(err, errlen, "message '%s'%s%s matched nothing: no instance waits for it%s",
                c->message, c->business_key ? " with business key " : "",
                c->business_key ? c->business_key : "",
                first_start == SIZE_MAX ? " and no process starts with it"
                                        : ", and a message start event takes no correlation "
                                          "variables");
        sub_match_free(&m);
        return CF_ENOENT;
    }
    if ((rc = cf_store_begin(e->store))) {
        cf_errf(err, errlen, "cannot begin a transaction: %s", cf_store_errmsg(e->store));
        sub_match_free(&m);
        return rc;
    }
    for (size_t i = 0; i < m.n && !rc; i++) {
        bool take = n_inst ? m.items[i].id > 0 : i == first_start;
        if (!take)
            continue;
        struct cf_sub_row r = m.items[i];
        if (r.id < 0)
            r.id = -r.id;
        int64_t id = 0;
        rc = cf__deliver_message(e, &r, c->business_key, c->vars, c->n_vars, &id);
        cf__reap_dead(e);
        if (rc == CF_ENOENT)
            rc = 0; /* moved on meanwhile */
        else if (!rc && *n < max)
            ids[(*n)++] = id;
        else if (!rc)
            (*n)++;
        if (!n_inst)
            break;
    }
    sub_match_free(&m);
    if (!rc)
        rc = cf_store_commit(e->store);
    if (rc) {
        cf_errf(err, errlen, "message '%s' not delivered: %s (%s)", c->message, cf_strerror(rc),
                cf_store_errmsg(e->store));
        cf_store_rollback(e->store);
        discard_tx(e);
        *n = 0;
        return rc;
    }
    after_commit(e);
    dispatch(e);
    schedule_due(e);
    check_idle(e);
    return 0;
}

/* Runs `op` on one instance in its own transaction, outside any batch. */
static int instance_tx(struct cf_engine *e, int64_t instance_id, char *err, size_t errlen,
                       int (*op)(struct cf_engine *e, struct cf_instance *inst, void *arg),
                       void *arg)
{
    struct cf_instance *inst = cf__instance_get(e, instance_id, err, errlen);
    if (!inst)
        return CF_ENOENT;
    if (inst->ended) {
        cf_errf(err, errlen, "process instance %" PRId64 " has already ended", instance_id);
        return CF_ESTATE;
    }
    int rc = cf_store_begin(e->store);
    if (!rc)
        rc = op(e, inst, arg);
    cf__reap_dead(e);
    if (!rc)
        rc = cf_store_commit(e->store);
    if (rc) {
        cf_errf(err, errlen, "process instance %" PRId64 ": %s (%s)", instance_id, cf_strerror(rc),
                cf_store_errmsg(e->store));
        cf_store_rollback(e->store);
        discard_tx(e);
        return rc;
    }
    after_commit(e);
    dispatch(e);
    schedule_due(e);
    check_idle(e);
    return 0;
}

static int cancel_op(struct cf_engine *e, struct cf_instance *inst, void *arg)
{
    (void)arg;
    return cf__instance_cancel(e, inst);
}

int cf_engine_cancel_instance(struct cf_engine *e, int64_t instance_id, const char *reason,
                              char *err, size_t errlen)
{
    int rc = instance_tx(e, instance_id, err, errlen, cancel_op, NULL);
    if (!rc)
        cf_log(CF_LOG_INFO, "instance=%" PRId64 " canceled%s%s", instance_id, reason ? ": " : "",
               reason ? reason : "");
    return rc;
}

struct vars_arg {
    const struct cf_named_val *set;
    size_t n_set;
    const char *const *del;
    size_t n_del;
};

static int vars_op(struct cf_engine *e, struct cf_instance *inst, void *arg)
{
    struct vars_arg *a = arg;
    return cf__root_vars(e, inst, a->set, a->n_set, a->del, a->n_del);
}

int cf_engine_set_variables(struct cf_engine *e, int64_t instance_id,
                            const struct cf_named_val *set, size_t n_set,
                            const char *const *deletions, size_t n_del, char *err, size_t errlen)
{
    struct vars_arg a = {set, n_set, deletions, n_del};
    return instance_tx(e, instance_id, err, errlen, vars_op, &a);
}

int cf_engine_set_job_retries(struct cf_engine *e, int64_t job_id, int retries, uint64_t due_at,
                              char *err, size_t errlen)
{
    if (retries < 0) {
        cf_errf(err, errlen, "retries must not be negative");
        return CF_EINVAL;
    }
    if (cf_imap_get(&e->known_jobs, job_id)) {
        cf_errf(err, errlen, "job %" PRId64 " is running; try again when it has finished", job_id);
        return CF_EBUSY;
    }
    struct cf_job_row job;
    int rc = cf_store_job_get(e->store, job_id, &job);
    if (rc) {
        cf_errf(err, errlen, "job %" PRId64 " does not exist", job_id);
        return CF_ENOENT;
    }
    /* A job stopped by a failedJob incident is lifted through the incident, as in Camunda where
     * raising the retries resolves it; it then runs at once. */
    struct job_incident f = {.job_id = job_id};
    if (job.retries == 0 && job.instance_id)
        cf_store_incident_list(e->store, job.instance_id, true, incident_for_job, &f);
    cf_job_row_free(&job);
    if (f.incident_id && retries > 0)
        return cf_engine_retry_incident(e, f.incident_id, retries, err, errlen);
    uint64_t due = due_at ? due_at : cf_now_ms();
    if ((rc = cf_store_begin(e->store)))
        return rc;
    rc = cf_store_job_set_retries(e->store, job_id, retries, due);
    if (!rc)
        rc = cf_store_commit(e->store);
    if (rc) {
        cf_errf(err, errlen, "cannot update job %" PRId64 ": %s", job_id,
                cf_store_errmsg(e->store));
        cf_store_rollback(e->store);
        return rc;
    }
    if (retries > 0 && (!e->next_due || due < e->next_due))
        e->next_due = due;
    schedule_due(e);
    return 0;
}

int cf_engine_retry_incident(struct cf_engine *e, int64_t incident_id, int retries, char *err,
                             size_t errlen)
{
    struct cf_incident_row inc;
    int rc = cf_store_incident_get(e->store, incident_id, &inc);
    if (rc) {
        cf_errf(err, errlen, "incident %" PRId64 " does not exist", incident_id);
        return CF_ENOENT;
    }
    if (inc.resolved_at) {
        cf_errf(err, errlen, "incident %" PRId64 " is already resolved", incident_id);
        cf_incident_row_free(&inc);
        return CF_ESTATE;
    }
    struct cf_instance *inst = cf__instance_get(e, inc.instance_id, err, errlen);
    struct cf_exec *x = inst ? cf__exec_find(inst, inc.execution_id) : NULL;
    if (!x || x->state != EX_INCIDENT) {
        if (inst)
            cf_errf(err, errlen, "incident %" PRId64 " no longer matches its instance",
                    incident_id);
        cf_incident_row_free(&inc);
        return CF_ESTATE;
    }
    if (cf_imap_get(&e->busy, inst->id)) {
        cf_errf(err, errlen, "instance %" PRId64 " is running a job; retry in a moment", inst->id);
        cf_incident_row_free(&inc);
        return CF_EBUSY;
    }
    if (retries < 1)
        retries = 1;
    if ((rc = cf_store_begin(e->store))) {
        cf_incident_row_free(&inc);
        return rc;
    }
    cf__touch(e, inst);
    rc = cf_store_incident_resolve(e->store, incident_id, cf_now_ms());
    if (!rc && inc.job_id) {
        uint64_t now = cf_now_ms();
        rc = cf_store_job_set_retries(e->store, inc.job_id, retries, now);
        if (!rc)
            rc = cf_store_job_lock(e->store, inc.job_id, e->node_id, now + e->opt.lock_ms, 0);
        if (!rc) {
            x->state = EX_WAITING;
            rc =
                cf_store_exec_update(e->store, x->id, x->elem->id, "WAITING", x->act_inst_id, NULL);
        }
        if (!rc) {
            struct cf_job_row jr;
            rc = cf_store_job_get(e->store, inc.job_id, &jr);
            if (!rc) {
                struct cf_jobref *j = cf_xcalloc(1, sizeof(*j));
                j->id = jr.id;
                cf_strlcpy(j->type, jr.type, sizeof(j->type));
                j->instance_id = jr.instance_id;
                j->execution_id = jr.execution_id;
                j->act_inst_id = jr.act_inst_id;
                j->retries = retries;
                j->attempt = jr.attempt + 1;
                j->next = e->new_jobs;
                e->new_jobs = j;
                cf_job_row_free(&jr);
            }
        }
    } else if (!rc) {
        rc = cf__retry_exec(e, inst, x);
    }
    cf__reap_dead(e);
    if (!rc)
        rc = cf_store_commit(e->store);
    if (rc) {
        cf_errf(err, errlen, "cannot retry incident %" PRId64 ": %s (%s)", incident_id,
                cf_strerror(rc), cf_store_errmsg(e->store));
        cf_store_rollback(e->store);
        discard_tx(e);
        cf_incident_row_free(&inc);
        return rc;
    }
    cf_log(CF_LOG_INFO, "incident=%" PRId64 " instance=%" PRId64 " activity=%s retried",
           incident_id, inc.instance_id, inc.activity_id);
    cf_incident_row_free(&inc);
    after_commit(e);
    dispatch(e);
    schedule_due(e);
    check_idle(e);
    return 0;
}
