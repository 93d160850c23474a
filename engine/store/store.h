/*
 * The store: every SQL statement of certflow lives behind this interface, so that the rest of the
 * engine never talks to SQLite and a PostgreSQL store can replace it later.
 *
 * One writer connection, used only by the engine's loop thread. The database runs in WAL mode
 * with synchronous=FULL (nothing is acknowledged before its commit is durable), foreign keys on,
 * and every write transaction starts with BEGIN IMMEDIATE. Schema changes are the numbered
 * migrations of schema/, applied in order at open; a database newer than the program is refused.
 *
 * Ownership: rows returned by the store are owned by the caller and released with the matching
 * *_free function; strings passed in are copied by SQLite before the call returns.
 */
#ifndef CF_STORE_H
#define CF_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/base.h"
#include "base/value.h"

struct cf_store;

struct cf_store_options {
    bool read_only;
    bool synchronous_normal; /* benchmarks only: trades durability of the last commits for speed */
};

int cf_store_open(const char *path, const struct cf_store_options *opt, struct cf_store **out,
                  char *err, size_t errlen);
void cf_store_close(struct cf_store *s);
/* Schema version the database is at after open. */
int cf_store_schema_version(struct cf_store *s);
/* The last SQLite error text of this connection (never contains bound values). */
const char *cf_store_errmsg(struct cf_store *s);

/* Transactions. begin = BEGIN IMMEDIATE. Savepoints nest inside a transaction. */
int cf_store_begin(struct cf_store *s);
int cf_store_commit(struct cf_store *s);
int cf_store_rollback(struct cf_store *s);
int cf_store_savepoint(struct cf_store *s);
int cf_store_release(struct cf_store *s);
int cf_store_rollback_to(struct cf_store *s);
bool cf_store_in_tx(const struct cf_store *s);
/* Number of committed write transactions since open (for the benchmark). */
uint64_t cf_store_commits(const struct cf_store *s);
/* Integrity check; 0 when "ok". */
int cf_store_integrity_check(struct cf_store *s, char *err, size_t errlen);

/* Deployments and process definitions. */
struct cf_def_row {
    int64_t id;
    char *key;
    int version;
    char *tenant_id;
    char *name;
    int64_t deployment_id;
    char *resource_name;
    char *sha256;
    uint64_t deployed_at;
    uint8_t *xml; /* NULL when loaded without XML */
    size_t xml_len;
};
void cf_def_row_free(struct cf_def_row *r);
int cf_store_deployment_insert(struct cf_store *s, const char *name, const char *source,
                               const char *tenant_id, int64_t *id);
/* Latest version of `key` for `tenant_id`; CF_ENOENT when none. XML not loaded. */
int cf_store_def_latest(struct cf_store *s, const char *tenant_id, const char *key,
                        struct cf_def_row *out);
int cf_store_def_by_version(struct cf_store *s, const char *tenant_id, const char *key, int version,
                            struct cf_def_row *out);
int cf_store_def_in_deployment(struct cf_store *s, int64_t deployment_id, const char *key,
                               struct cf_def_row *out);
/* Inserts with version = latest + 1; fills r->id and r->version. */
int cf_store_def_insert(struct cf_store *s, struct cf_def_row *r);
int cf_store_def_get(struct cf_store *s, int64_t id, bool with_xml, struct cf_def_row *out);
typedef int (*cf_def_row_fn)(void *arg, const struct cf_def_row *r);
int cf_store_def_list(struct cf_store *s, cf_def_row_fn fn, void *arg);

/* Process instances. */
struct cf_inst_row {
    int64_t id;
    int64_t definition_id;
    char *tenant_id;
    char *business_key;
    char *state;
    uint64_t started_at;
    uint64_t ended_at;          /* 0 while running */
    int64_t super_execution_id; /* the call activity's execution in the parent, or 0 */
    int64_t super_instance_id;  /* the parent instance, or 0 */
};
void cf_inst_row_free(struct cf_inst_row *r);
typedef int (*cf_inst_row_fn)(void *arg, const struct cf_inst_row *r);
int cf_store_instance_insert(struct cf_store *s, int64_t definition_id, const char *tenant_id,
                             const char *business_key, int64_t super_execution_id, uint64_t now,
                             int64_t *id);
/* With now == 0 the instance is CREATED (its start is a job); activate marks it ACTIVE. */
int cf_store_instance_activate(struct cf_store *s, int64_t id, uint64_t now);
/* Active instances called by the call activity execution `super_execution_id`. */
int cf_store_instance_children(struct cf_store *s, int64_t super_execution_id, cf_inst_row_fn fn,
                               void *arg);
int cf_store_instance_end(struct cf_store *s, int64_t id, const char *state, uint64_t now);
int cf_store_instance_get(struct cf_store *s, int64_t id, struct cf_inst_row *out);
/* state may be NULL for all. */
int cf_store_instance_list(struct cf_store *s, const char *state, cf_inst_row_fn fn, void *arg);

/* Executions and variables. */
struct cf_exec_row {
    int64_t id;
    int64_t parent_id;       /* 0 for the root */
    const char *activity_id; /* may be NULL */
    const char *state;
    int64_t act_inst_id;
    int64_t seq;
    const char *resume; /* NULL, "execute", "leave" or "take" */
};
int cf_store_exec_insert(struct cf_store *s, int64_t instance_id, int64_t parent_id,
                         const char *activity_id, const char *state, int64_t act_inst_id,
                         int64_t seq, int64_t *id);
int cf_store_exec_update(struct cf_store *s, int64_t id, const char *activity_id, const char *state,
                         int64_t act_inst_id, const char *resume);
/* Deletes an execution and its variables. */
int cf_store_exec_delete(struct cf_store *s, int64_t id);
typedef int (*cf_exec_row_fn)(void *arg, const struct cf_exec_row *r);
/* Executions of an instance, parents before children (ordered by id). */
int cf_store_exec_load(struct cf_store *s, int64_t instance_id, cf_exec_row_fn fn, void *arg);

int cf_store_var_put(struct cf_store *s, int64_t execution_id, int64_t instance_id,
                     const char *name, const struct cf_val *v);
int cf_store_var_delete(struct cf_store *s, int64_t execution_id, const char *name);
typedef int (*cf_var_row_fn)(void *arg, int64_t execution_id, const char *name,
                             const struct cf_val *v);
int cf_store_var_load(struct cf_store *s, int64_t instance_id, cf_var_row_fn fn, void *arg);

/* Jobs. */
struct cf_job_row {
    int64_t id;
    char type[16]; /* "call", "async-before", "async-after", "timer", "start", "message" */
    int64_t instance_id;
    int64_t execution_id;
    char *activity_id;
    int64_t act_inst_id;
    uint64_t due_at;
    int retries;
    int attempt;
    char *lock_owner;
    uint64_t lock_expires_at;
    char *last_error;
    char *payload;
    uint64_t created_at;
    int64_t definition_id; /* timer start jobs: the definition they start */
    int interrupted;       /* runs cut short by a stop or crash of the engine */
};
void cf_job_row_free(struct cf_job_row *r);
/* Inserts r (id ignored, set on return). */
int cf_store_job_insert(struct cf_store *s, struct cf_job_row *r);
int cf_store_job_delete(struct cf_store *s, int64_t id);
int cf_store_job_get(struct cf_store *s, int64_t id, struct cf_job_row *out);
/* Records a failed attempt: new retries, due time and last error; clears the lock. */
int cf_store_job_fail(struct cf_store *s, int64_t id, int retries, int attempt, uint64_t due_at,
                      const char *last_error);
int cf_store_job_set_retries(struct cf_store *s, int64_t id, int retries, uint64_t due_at);
int cf_store_job_lock(struct cf_store *s, int64_t id, const char *owner, uint64_t expires_at,
                      int attempt);
/* Releases every lock (start-up of a single node) and counts the run it cut short in
 * `interrupted` (`attempt` counted it when it started). Returns the number released. */
int cf_store_jobs_release_all(struct cf_store *s, int *released);
typedef int (*cf_job_row_fn)(void *arg, const struct cf_job_row *r);
/* Due, unlocked (or lock expired), with retries left, oldest due first. */
int cf_store_jobs_due(struct cf_store *s, uint64_t now, int limit, cf_job_row_fn fn, void *arg);
/* Earliest due time of a job with retries left that nobody holds; CF_ENOENT when none. */
int cf_store_jobs_next_due(struct cf_store *s, uint64_t *due);
int cf_store_jobs_of_instance(struct cf_store *s, int64_t instance_id, cf_job_row_fn fn, void *arg);
int cf_store_jobs_delete_execution(struct cf_store *s, int64_t execution_id);
/* Deletes the timer start jobs of every version of `key` (a new version brings its own). */
int cf_store_jobs_delete_start_timers(struct cf_store *s, const char *tenant_id, const char *key);

/* Message subscriptions. */
struct cf_sub_row {
    int64_t id;
    const char *name;
    const char *tenant_id;
    int64_t definition_id; /* message start events */
    int64_t instance_id;
    int64_t execution_id;
    const char *activity_id;
    int64_t act_inst_id;
};
int cf_store_sub_insert(struct cf_store *s, const struct cf_sub_row *r, int64_t *id);
int cf_store_sub_delete(struct cf_store *s, int64_t id);
int cf_store_subs_delete_execution(struct cf_store *s, int64_t execution_id);
int cf_store_subs_delete_start(struct cf_store *s, const char *tenant_id, const char *key);
typedef int (*cf_sub_row_fn)(void *arg, const struct cf_sub_row *r);
/* Subscriptions to message `name`, oldest first; with a business key, instance subscriptions
 * only of instances with that key (start subscriptions are always listed). */
int cf_store_subs_find(struct cf_store *s, const char *tenant_id, const char *name,
                       const char *business_key, cf_sub_row_fn fn, void *arg);
int cf_store_subs_of_instance(struct cf_store *s, int64_t instance_id, cf_sub_row_fn fn, void *arg);

/* Incidents. */
struct cf_incident_row {
    int64_t id;
    char *type;
    int64_t instance_id;
    int64_t execution_id;
    char *activity_id;
    int64_t job_id;
    char *message;
    uint64_t created_at;
    uint64_t resolved_at;
};
void cf_incident_row_free(struct cf_incident_row *r);
int cf_store_incident_insert(struct cf_store *s, const char *type, int64_t instance_id,
                             int64_t execution_id, const char *activity_id, int64_t job_id,
                             const char *message, uint64_t now, int64_t *id);
int cf_store_incident_resolve(struct cf_store *s, int64_t id, uint64_t now);
int cf_store_incident_get(struct cf_store *s, int64_t id, struct cf_incident_row *out);
typedef int (*cf_incident_row_fn)(void *arg, const struct cf_incident_row *r);
/* instance_id 0 = all; open_only = unresolved only. */
int cf_store_incident_list(struct cf_store *s, int64_t instance_id, bool open_only,
                           cf_incident_row_fn fn, void *arg);
int cf_store_incidents_resolve_execution(struct cf_store *s, int64_t execution_id, uint64_t now);

/* History of activity instances. */
struct cf_hist_row {
    int64_t id;
    int64_t instance_id;
    int64_t execution_id;
    const char *activity_id;
    const char *activity_type;
    const char *activity_name;
    uint64_t started_at;
    uint64_t ended_at;
    const char *end_state; /* NULL while active */
};
int cf_store_hist_start(struct cf_store *s, int64_t instance_id, int64_t execution_id,
                        const char *activity_id, const char *activity_type,
                        const char *activity_name, uint64_t now, int64_t *id);
/* Ends an activity instance; end_state NULL reopens it. */
int cf_store_hist_end(struct cf_store *s, int64_t id, uint64_t now, const char *end_state);
int cf_store_hist_set_execution(struct cf_store *s, int64_t id, int64_t execution_id);
typedef int (*cf_hist_row_fn)(void *arg, const struct cf_hist_row *r);
int cf_store_hist_list(struct cf_store *s, int64_t instance_id, cf_hist_row_fn fn, void *arg);

/* Secrets at rest for any table (store/seal.h): seals `plain` bound to the row named by `row`
 * (n_row text parts, e.g. table, tenant, name, field), creating the secrets key when there is
 * none; and opens a stored value for that row (a copy when it is clear text). Free *sealed with
 * free() and *plain with cf_seal_free_plain(). Errors as cf_store_param_reveal(). */
int cf_store_seal_text(struct cf_store *s, const char *const *row, size_t n_row, const char *plain,
                       char **sealed);
int cf_store_open_text(struct cf_store *s, const char *const *row, size_t n_row, const char *stored,
                       char **plain);

/* Admin configuration of task parameters. A `secret` value (CF_PARAM_SECRET in the task's
 * schema) is stored sealed (store/seal.h); cf_store_param_list() hands values as stored, and
 * cf_store_param_reveal() opens one for the call that uses it. */
int cf_store_param_set(struct cf_store *s, const char *tenant_id, const char *process_key,
                       const char *activity_id, const char *name, const char *value, bool secret,
                       uint64_t now);
/* A parameter value as listed, opened: a copy of a clear value, or the sealed value opened for
 * its row. Free *plain with cf_seal_free_plain() (store/seal.h), which wipes it. CF_EINVAL when
 * the sealed value does not open (another key, another row, altered); CF_ENOENT when the
 * secrets key is missing; the reason is logged without the value. */
int cf_store_param_reveal(struct cf_store *s, const char *tenant_id, const char *process_key,
                          const char *activity_id, const char *name, const char *stored,
                          char **plain);
int cf_store_param_delete(struct cf_store *s, const char *tenant_id, const char *process_key,
                          const char *activity_id, const char *name);
typedef int (*cf_param_row_fn)(void *arg, const char *activity_id, const char *name,
                               const char *value);
/* activity_id NULL = every activity of the process. */
int cf_store_param_list(struct cf_store *s, const char *tenant_id, const char *process_key,
                        const char *activity_id, cf_param_row_fn fn, void *arg);

#endif
