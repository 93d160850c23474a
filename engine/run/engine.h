/*
 * The process engine as a library on a caller's libuv loop: deploy BPMN, start instances, run
 * service-task calls through plug-ins, and keep every step in the store. The loop thread owns the
 * engine; no function here may be called from another thread.
 *
 * How work flows (shared/DESIGN.md §3): token movement happens inside write transactions; every
 * wait the engine must resume is a job row written in the same transaction; plug-in calls run only
 * after that commit; their outcomes are applied in later transactions, and all outcomes that
 * arrive in the same loop turn commit together (group commit).
 *
 * Lifetime: cf_engine_open() starts uv handles on the loop; cf_engine_close() stops them, gives up
 * on calls still running, and frees the engine once its handles are closed, so the caller must
 * run the loop after closing (uv_run until it returns) before uv_loop_close().
 */
#ifndef CF_RUN_ENGINE_H
#define CF_RUN_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "base/value.h"
#include "bpmn/model.h"
#include "plugin/registry.h"
#include "store/store.h"

struct cf_engine;

struct cf_engine_options {
    const char *db_path;      /* required */
    const char *plugin_dir;   /* NULL: no plug-ins from disk */
    const char *node_id;      /* lock owner; NULL: "<hostname>:<pid>" */
    int max_concurrent_jobs;  /* 0: 32 */
    uint64_t lock_ms;         /* 0: 5 minutes */
    uint64_t call_timeout_ms; /* 0: 5 minutes; a plug-in call running longer fails (retryable) */
    bool uncaught_error_ends; /* Camunda 7's "end silently" for uncaught BPMN errors; default:
                                 an incident (Zeebe) */
    bool synchronous_normal;  /* benchmarks only */
    int max_cached_instances; /* 0: 10000; beyond, waiting instances are read back when needed */
};

struct cf_engine_observer {
    /* An instance ended: state is "COMPLETED" or "TERMINATED" or "CANCELED". */
    void (*instance_ended)(void *arg, int64_t instance_id, const char *state);
    /* An incident was created. */
    void (*incident)(void *arg, int64_t instance_id, const char *activity_id, const char *type,
                     const char *message);
    /* Nothing is runnable now: no outcome to apply, no job due, no call running. */
    void (*idle)(void *arg);
    void *arg;
};

int cf_engine_open(uv_loop_t *loop, const struct cf_engine_options *opt, struct cf_engine **out,
                   char *err, size_t errlen);
void cf_engine_close(struct cf_engine *e);
void cf_engine_set_observer(struct cf_engine *e, const struct cf_engine_observer *obs);
struct cf_store *cf_engine_store(struct cf_engine *e);
struct cf_registry *cf_engine_registry(struct cf_engine *e);
/* Registers a module linked into the program (tests, bench). */
int cf_engine_add_module(struct cf_engine *e, const struct cf_module *m, const char *origin,
                         char *err, size_t errlen);

/* Validation of a BPMN file against the loaded plug-ins (and, when `store` is given, the admin
 * configuration in it): delegate names, mandatory parameters, valid values, unknown fields.
 * Problems go to `diags` (with line and element id); warnings (deprecated aliases) to `warnings`
 * when not NULL. Returns 0 or CF_EPARSE/CF_EINVALID. */
int cf_engine_check_models(struct cf_registry *reg, struct cf_store *store, const char *tenant,
                           struct cf_model **models, size_t n, struct cf_diags *diags,
                           struct cf_diags *warnings);

struct cf_deployed {
    char *key;
    const char *resource; /* the resource it came from (the caller's string) */
    int64_t definition_id;
    int version;
    bool is_new; /* false when identical content was already deployed */
};
struct cf_deploy_result {
    int64_t deployment_id; /* 0 when nothing new was deployed */
    struct cf_deployed *defs;
    size_t n_defs;
    struct cf_diags diags;    /* problems, when the call fails */
    struct cf_diags warnings; /* e.g. deprecated task aliases */
};
void cf_deploy_result_free(struct cf_deploy_result *r);
/* Validates and deploys the processes of one BPMN resource. Identical content for a key gives no
 * new version. On error nothing is stored and `res->diags` says why. */
int cf_engine_deploy(struct cf_engine *e, const char *resource_name, const uint8_t *xml, size_t len,
                     const char *tenant_id, struct cf_deploy_result *res);

/* Several resources deployed as one deployment: all are parsed and checked first, and nothing is
 * stored unless all are valid. With duplicate_filtering, a process whose latest version has the
 * same content gets no new version (Camunda's enable-duplicate-filtering and
 * deploy-changed-only, per resource). Problems of several resources name their resource. */
struct cf_resource {
    const char *name;
    const uint8_t *bytes;
    size_t len;
};
struct cf_deploy_options {
    const char *name;      /* deployment name; NULL: the first resource's name */
    const char *source;    /* e.g. "Camunda Modeler"; NULL: "certflow" */
    const char *tenant_id; /* NULL: "" */
    bool duplicate_filtering;
};
int cf_engine_deploy_resources(struct cf_engine *e, const struct cf_deploy_options *opt,
                               const struct cf_resource *resources, size_t n_resources,
                               struct cf_deploy_result *res);
/* The admin configuration of a process's task parameters changed in the store: calls from now
 * on use the new values. */
void cf_engine_params_changed(struct cf_engine *e, const char *tenant_id, const char *process_key);
/* Sets a job's retries (and due time; 0 = now). Raising the retries of a job stopped by a
 * failedJob incident resolves the incident and runs the job at once. CF_EBUSY while it runs. */
int cf_engine_set_job_retries(struct cf_engine *e, int64_t job_id, int retries, uint64_t due_at,
                              char *err, size_t errlen);

/* A named variable for starting instances. */
struct cf_named_val {
    const char *name;
    struct cf_val val;
};
/* Starts an instance of definition `definition_id` in its own transaction; returns its id. */
int cf_engine_start(struct cf_engine *e, int64_t definition_id, const char *business_key,
                    const struct cf_named_val *vars, size_t n_vars, int64_t *instance_id, char *err,
                    size_t errlen);
/* A message for the instances (or message start events) waiting for it. */
struct cf_correlation {
    const char *message;
    const char *tenant_id;            /* NULL: "" */
    const char *business_key;         /* NULL: any */
    const struct cf_named_val *match; /* process variables that must have these values */
    size_t n_match;
    const struct cf_named_val *vars; /* variables set by the message */
    size_t n_vars;
    bool all; /* deliver to every match instead of exactly one */
};
/* Delivers a message in one transaction. A waiting instance is preferred; otherwise a message
 * start event starts a new instance. The ids of the instances reached go to `ids` (at most
 * `max`), their number to *n. CF_ENOENT when nothing waits for the message; CF_EEXIST when
 * several executions wait and `all` is not set (nothing is delivered then). */
int cf_engine_correlate(struct cf_engine *e, const struct cf_correlation *c, int64_t *ids,
                        size_t max, size_t *n, char *err, size_t errlen);
/* Work of the caller done inside the engine's next batch transaction, so that it commits
 * together with everything else of that loop turn (group commit). `fn` runs in its own savepoint:
 * returning an error undoes only its own writes. `done` runs after the commit with 0, or with the
 * error that kept the work from being committed (then nothing of it is stored). */
typedef int (*cf_tx_fn)(struct cf_engine *e, void *arg);
typedef void (*cf_tx_done_fn)(void *arg, int rc);
void cf_engine_submit(struct cf_engine *e, cf_tx_fn fn, cf_tx_done_fn done, void *arg);
/* Inside a cf_tx_fn: creates an instance of `definition_id` with its variables, and a job that
 * starts it once the transaction is committed. */
int cf_engine_tx_create_instance(struct cf_engine *e, int64_t definition_id,
                                 const char *business_key, const struct cf_named_val *vars,
                                 size_t n_vars, int64_t *instance_id, char *err, size_t errlen);
/* Cancels a running instance (and the instances its call activities started): its executions,
 * jobs and subscriptions go, open activity instances end as canceled, the instance ends
 * CANCELED. CF_ENOENT when it does not exist, CF_ESTATE when it already ended. */
int cf_engine_cancel_instance(struct cf_engine *e, int64_t instance_id, const char *reason,
                              char *err, size_t errlen);
/* Sets and deletes process variables of a running instance (its process scope) in one
 * transaction. */
int cf_engine_set_variables(struct cf_engine *e, int64_t instance_id,
                            const struct cf_named_val *set, size_t n_set,
                            const char *const *deletions, size_t n_del, char *err, size_t errlen);
/* Offers a service to plug-ins (host->service), e.g. the "ca" service of ca/service.c. `name`
 * and `impl` must outlive the engine. */
int cf_engine_set_service(struct cf_engine *e, const char *name, uint32_t version,
                          const void *impl);
/* For host services: the engine and instance behind a call of a plug-in. */
struct cf_engine *cf_call_engine(struct cf_call *call);
int64_t cf_call_instance_id(struct cf_call *call);
/* Which run of the step this call is: 1 the first; more after a failed attempt or a run cut short
 * by a crash or a stop, when a remote side may already have seen the step's request. */
int cf_call_attempt(struct cf_call *call);
/* For host services that answer a call later (ca/service.c): keeps the call's memory valid until
 * the matching cf_call_unhold(), even when the engine gives up on the call meanwhile (timeout,
 * close); the endings of a call given up are ignored, as plugin.h says. */
void cf_call_hold(struct cf_call *call);
void cf_call_unhold(struct cf_call *call);
/* The loop the engine runs on, for services that queue work or start I/O on it. */
uv_loop_t *cf_engine_loop(struct cf_engine *e);
/* Retries an incident: a failed job gets `retries` more attempts (at least 1); any other incident
 * re-executes the activity where it stopped. */
int cf_engine_retry_incident(struct cf_engine *e, int64_t incident_id, int retries, char *err,
                             size_t errlen);
/* Applies pending outcomes now (normally done once per loop turn). */
void cf_engine_flush(struct cf_engine *e);
bool cf_engine_is_idle(const struct cf_engine *e);

/* Counters for tests, the bench and metrics. */
struct cf_engine_stats {
    size_t items;      /* outcomes and jobs waiting for the next batch */
    size_t ready;      /* jobs committed and waiting for a free slot */
    int running;       /* jobs running (calls in plug-ins included) */
    uint64_t next_due; /* earliest known due time of a job waiting for the clock, 0 = none */
    uint64_t commits;  /* write transactions committed since open */
};
void cf_engine_stats(const struct cf_engine *e, struct cf_engine_stats *out);
/* Earliest due time of a job waiting for the clock, or 0 when none. */
uint64_t cf_engine_next_due(struct cf_engine *e);

#endif
