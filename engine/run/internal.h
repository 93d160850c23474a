/*
 * Internals shared by the files of run/: the in-memory form of instances (a tree of executions
 * with variables), definitions, and the engine object. The store is the source of truth; the
 * in-memory tree is a write-through cache that is dropped (evicted) whenever a transaction that
 * touched it does not commit, and rebuilt from the store when needed again.
 */
#ifndef CF_RUN_INTERNAL_H
#define CF_RUN_INTERNAL_H

#include "base/imap.h"
#include "run/engine.h"

enum cf_exec_state { EX_READY, EX_WAITING, EX_JOINING, EX_SCOPE, EX_INCIDENT };
/* The step to redo when an incident on an execution is retried. */
enum cf_resume { RS_NONE, RS_EXECUTE, RS_LEAVE, RS_TAKE };

struct cf_var {
    char *name;
    struct cf_val val;
};

struct cf_instance;

struct cf_exec {
    int64_t id;
    struct cf_instance *inst;
    struct cf_exec *parent;
    struct cf_exec *first_child, *last_child, *prev, *next;
    const struct cf_elem *elem; /* the activity of a token, the subprocess of a scope; NULL root */
    enum cf_exec_state state;
    enum cf_resume resume;
    int64_t act_inst_id; /* history row of the current activity instance */
    int64_t seq;
    struct cf_var *vars;
    size_t n_vars, cap_vars;
    bool dead; /* removed from the tree; freed when the current item is done */
    struct cf_exec *dead_next;
};

struct cf_param_cfg {
    char *activity_id;
    char *name;
    char *value;
};

struct cf_definition {
    int64_t id;
    char *key;
    int version;
    char *tenant_id;
    struct cf_model **models; /* every process of the resource */
    size_t n_models;
    struct cf_model *model;      /* the one with this key */
    struct cf_param_cfg *params; /* admin configuration, loaded with the definition */
    size_t n_params;
};

struct cf_instance {
    int64_t id;
    struct cf_definition *def;
    char *tenant_id;
    char *business_key;
    struct cf_exec *root;
    int64_t super_instance_id; /* called by a call activity of this instance, or 0 */
    int64_t super_exec_id;
    bool created; /* CREATED: variables set, waiting for its start job */
    bool ended;
    int64_t next_seq;
    unsigned steps;               /* agenda steps in the current item, against runaway loops */
    struct cf_val execution_view; /* `execution` in expressions, rebuilt on each use */
};

/* A job known to this engine, in memory. */
struct cf_jobref {
    int64_t id;
    char type[16];
    int64_t instance_id;
    int64_t execution_id;
    int64_t act_inst_id;
    int retries;
    int attempt;
    struct cf_jobref *next;
};

enum cf_item_kind { ITEM_OUTCOME, ITEM_RUN_JOB, ITEM_TX };
enum cf_outcome_kind { OUT_COMPLETE, OUT_ERROR, OUT_FAIL };

struct cf_outvar {
    char *name;
    struct cf_val val;
};

/* Work to apply in the next batch transaction. */
struct cf_item {
    enum cf_item_kind kind;
    struct cf_jobref *job;
    enum cf_outcome_kind outcome;
    bool retryable;
    char *code;
    char *message;
    struct cf_outvar *vars;
    size_t n_vars;
    /* ITEM_TX */
    cf_tx_fn tx_fn;
    cf_tx_done_fn tx_done;
    void *tx_arg;
    int tx_rc;
    struct cf_item *next;
};

struct cf_engine {
    uv_loop_t *loop;
    struct cf_store *store;
    struct cf_registry *registry;
    struct cf_host host;
    struct cf_engine_options opt;
    char *node_id;
    struct cf_engine_observer obs;

    struct cf_imap defs;       /* definition id → struct cf_definition */
    struct cf_imap instances;  /* instance id → struct cf_instance (cache) */
    struct cf_imap busy;       /* instance id → struct cf_jobref list of deferred jobs (or tag) */
    struct cf_imap known_jobs; /* job id → struct cf_jobref in memory (ready, running, queued) */

    /* Items waiting for the next batch, and jobs committed and ready to run. */
    struct cf_item *items_head, *items_tail;
    size_t n_items;
    struct cf_jobref *ready_head, *ready_tail;
    size_t n_ready;
    int running;

    /* Created during the current transaction; handed to ready (or discarded) at its end. */
    struct cf_jobref *new_jobs;
    struct cf_instance **touched;
    size_t n_touched, cap_touched;
    struct cf_exec *dead;
    /* Notifications collected in the transaction, delivered after commit. */
    struct cf_ended {
        int64_t instance_id;
        const char *state;
    } * ended;
    size_t n_ended, cap_ended;

    uint64_t next_due; /* earliest known future due time, 0 = none */
    uv_idle_t flush_idle;
    uv_timer_t due_timer;
    uv_timer_t retry_timer;
    int open_handles;
    int pending_work; /* plug-in work queued on worker threads */
    int lock_fd;      /* one engine per database: an exclusive lock on <db>.lock */
    bool closing;
    bool flush_blocked; /* a batch failed to commit: wait for retry_timer */
    bool in_flush;
    /* Crash testing: CERTFLOW_CRASH_AT=<point>[:<n>] makes the process _exit(137) the n-th time
     * (default first) it passes the named point. */
    char crash_point[32];
    long crash_countdown;
    /* Token-movement agenda of the current item (FIFO). */
    struct cf_agenda_op {
        struct cf_exec *x;
        int op;
    } * agenda;
    size_t agenda_head, agenda_len, agenda_cap;
    struct cf_call_ctx *calls; /* running calls, for close */
    struct {
        const char *name;
        uint32_t version;
        const void *impl;
    } services[8];
    size_t n_services;
};

/* runtime.c: token movement inside a transaction. */
struct cf_instance *cf__instance_get(struct cf_engine *e, int64_t id, char *err, size_t errlen);
struct cf_exec *cf__exec_find(struct cf_instance *inst, int64_t id);
void cf__instance_free(struct cf_instance *inst);
void cf__evict(struct cf_engine *e, int64_t instance_id);
void cf__touch(struct cf_engine *e, struct cf_instance *inst);
/* Creates an instance and moves it until it waits. `start` is the start event to begin at (NULL:
 * the none start event); `caller` the call activity execution of a parent instance, or NULL. */
int cf__instance_create(struct cf_engine *e, struct cf_definition *def, const char *business_key,
                        const struct cf_named_val *vars, size_t n_vars, const struct cf_elem *start,
                        struct cf_exec *caller, struct cf_instance **out);
/* An instance in state CREATED with its variables and a start job (the push endpoint's start). */
int cf__instance_prepare(struct cf_engine *e, struct cf_definition *def, const char *business_key,
                         const struct cf_named_val *vars, size_t n_vars, struct cf_instance **out);
/* Runs the start job of a CREATED instance. */
int cf__instance_begin(struct cf_engine *e, struct cf_instance *inst);
/* Cancels an instance from outside (API): state CANCELED. */
int cf__instance_cancel(struct cf_engine *e, struct cf_instance *inst);
/* Variables of the process scope, from outside. */
int cf__root_vars(struct cf_engine *e, struct cf_instance *inst, const struct cf_named_val *set,
                  size_t n_set, const char *const *deletions, size_t n_del);
/* Fires the timer job `job` (catch event, boundary event or start event). */
int cf__fire_timer(struct cf_engine *e, const struct cf_job_row *job);
/* Delivers a message to the subscription `sub` (already known to match). */
int cf__deliver_message(struct cf_engine *e, const struct cf_sub_row *sub, const char *business_key,
                        const struct cf_named_val *vars, size_t n_vars, int64_t *instance_id);
/* Timer jobs and message subscriptions of the start events of a newly deployed definition. */
int cf__schedule_start_events(struct cf_engine *e, struct cf_definition *def);
/* Due time of a timer element: its expression evaluated in `x` (may be NULL), then parsed. */
int cf__timer_due(const struct cf_elem *el, struct cf_exec *x, int64_t *due, int64_t *repeats,
                  char *err, size_t errlen);
int cf__run_job(struct cf_engine *e, struct cf_instance *inst, struct cf_exec *x,
                const struct cf_jobref *job);
int cf__apply_outcome(struct cf_engine *e, struct cf_instance *inst, struct cf_exec *x,
                      struct cf_item *it);
int cf__retry_exec(struct cf_engine *e, struct cf_instance *inst, struct cf_exec *x);
void cf__reap_dead(struct cf_engine *e);
const struct cf_val *cf__var_lookup(const struct cf_exec *x, const char *name);
int cf__var_set(struct cf_engine *e, struct cf_exec *x, const char *name, const struct cf_val *v);
int cf__expr_lookup(void *ctx, const char *name, const struct cf_val **out);
struct cf_definition *cf__definition_get(struct cf_engine *e, int64_t id, char *err, size_t errlen);
/* A new job row, created inside the current transaction. */
int cf__job_create(struct cf_engine *e, struct cf_exec *x, const char *type, uint64_t due_at,
                   int retries);
/* The number of attempts given to a new job of `elem` (camunda:failedJobRetryTimeCycle or the
 * default). */
int cf__initial_retries(const struct cf_elem *elem);
/* When a job that failed may run again, given the retries left after this failure. */
int cf__retry_due(const struct cf_elem *elem, int retries_left, uint64_t *due);
int cf__incident(struct cf_engine *e, struct cf_exec *x, const char *type, int64_t job_id,
                 const char *message);

/* engine.c */
/* Crash points for the crash tests: "job-locked", "plugin-running", "before-commit",
 * "after-commit". */
void cf__crash_point(struct cf_engine *e, const char *name);
void cf__notify_ended(struct cf_engine *e, int64_t instance_id, const char *state);

#endif
