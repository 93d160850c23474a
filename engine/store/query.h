/*
 * Read queries for the HTTP APIs (api/engine_rest.c, api/v1.c, api/health.c): filtered and paged
 * listings of deployments, definitions, instances, incidents, jobs and history, always within a
 * caller's tenants, plus the counts that /metrics and /health report. Writes stay with the engine
 * and store.c; nothing here changes a row.
 *
 * Tenancy: every function that returns objects takes the caller's tenants (`tenants`,
 * `n_tenants`) and matches only rows of those tenants in SQL, so an object of another tenant
 * answers CF_ENOENT exactly like one that does not exist. An empty tenant list matches nothing.
 * The metric counts are the exception: they are totals without tenant data.
 *
 * Paging: `first` rows are skipped, at most `max` are returned; max < 0 means no limit.
 *
 * Ownership: rows handed to callbacks are borrowed for the call; rows filled through `out` are
 * owned by the caller and released with the matching *_free function of store.h or below.
 * A callback's non-zero return stops the walk and is returned.
 */
#ifndef CF_STORE_QUERY_H
#define CF_STORE_QUERY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

struct cf_tenants {
    const char *const *ids;
    size_t n;
};

/* Deployments. */
struct cf_deployment_row {
    int64_t id;
    char *name;
    char *source;
    char *tenant_id;
    uint64_t deployed_at;
};
void cf_deployment_row_free(struct cf_deployment_row *r);
typedef int (*cf_deployment_row_fn)(void *arg, const struct cf_deployment_row *r);
/* Newest first. `name` NULL does not filter. */
int cf_query_deployments(struct cf_store *s, const struct cf_tenants *t, const char *name,
                         int64_t first, int64_t max, cf_deployment_row_fn fn, void *arg);
int cf_query_deployment_count(struct cf_store *s, const struct cf_tenants *t, const char *name,
                              int64_t *count);
int cf_query_deployment_get(struct cf_store *s, const struct cf_tenants *t, int64_t id,
                            struct cf_deployment_row *out);

/* Process definitions; NULL / 0 fields do not filter. */
struct cf_def_filter {
    const char *key;
    const char *tenant_id; /* one tenant among the caller's */
    const char *name;
    int64_t deployment_id;
    int version;      /* 0: any */
    bool latest_only; /* only the latest version of each key (per tenant) */
    int64_t first;
    int64_t max;
};
/* Ordered by key, tenant and version; XML not loaded. */
int cf_query_defs(struct cf_store *s, const struct cf_tenants *t, const struct cf_def_filter *f,
                  cf_def_row_fn fn, void *arg);
int cf_query_def_count(struct cf_store *s, const struct cf_tenants *t,
                       const struct cf_def_filter *f, int64_t *count);
int cf_query_def_get(struct cf_store *s, const struct cf_tenants *t, int64_t id, bool with_xml,
                     struct cf_def_row *out);
/* The latest version of `key` among the caller's tenants (or in `tenant_id` when not NULL).
 * CF_ENOENT when there is none; CF_EEXIST when several of the caller's tenants have one and no
 * tenant was named. */
int cf_query_def_latest(struct cf_store *s, const struct cf_tenants *t, const char *key,
                        const char *tenant_id, struct cf_def_row *out);

/* Process instances; NULL / 0 fields do not filter. */
struct cf_inst_filter {
    const char *definition_key;
    int64_t definition_id;
    const char *business_key;
    const char *tenant_id;
    int64_t super_instance_id;
    bool active_only;   /* CREATED or ACTIVE: Camunda's runtime view */
    bool ended_only;    /* COMPLETED, TERMINATED or CANCELED */
    bool with_incident; /* instances with an open incident */
    int64_t first;
    int64_t max;
};
typedef int (*cf_q_inst_fn)(void *arg, const struct cf_inst_row *r, const char *definition_key);
/* Ordered by id. */
int cf_query_instances(struct cf_store *s, const struct cf_tenants *t,
                       const struct cf_inst_filter *f, cf_q_inst_fn fn, void *arg);
int cf_query_instance_count(struct cf_store *s, const struct cf_tenants *t,
                            const struct cf_inst_filter *f, int64_t *count);
int cf_query_instance_get(struct cf_store *s, const struct cf_tenants *t, int64_t id,
                          struct cf_inst_row *out);

/* The highest instance id there is (0 when none), so that a caller can tell instances created
 * after a point in time by id. No tenant data comes out. */
int cf_query_instance_max_id(struct cf_store *s, int64_t *max_id);

/* Incidents, with the tenant and definition of their instance. */
struct cf_incident_filter {
    int64_t incident_id;
    int64_t instance_id;
    int64_t job_id;
    const char *type;
    const char *activity_id;
    bool open_only;
    int64_t first;
    int64_t max;
};
typedef int (*cf_q_incident_fn)(void *arg, const struct cf_incident_row *r, const char *tenant_id,
                                int64_t definition_id);
/* Ordered by id. */
int cf_query_incidents(struct cf_store *s, const struct cf_tenants *t,
                       const struct cf_incident_filter *f, cf_q_incident_fn fn, void *arg);
int cf_query_incident_count(struct cf_store *s, const struct cf_tenants *t,
                            const struct cf_incident_filter *f, int64_t *count);

/* A job, found through the tenant of its instance (or, for timer start jobs, of its
 * definition). */
int cf_query_job_get(struct cf_store *s, const struct cf_tenants *t, int64_t id,
                     struct cf_job_row *out, char **tenant_id);

/* Activity history of the caller's instances; instance_id 0 = all. Ordered by start time and id,
 * descending when `desc`. The row's strings are borrowed. */
struct cf_hist_filter {
    int64_t instance_id;
    const char *activity_id;
    bool desc;
    int64_t first;
    int64_t max;
};
typedef int (*cf_q_hist_fn)(void *arg, const struct cf_hist_row *r, const char *tenant_id,
                            int64_t definition_id, const char *definition_key);
int cf_query_history(struct cf_store *s, const struct cf_tenants *t, const struct cf_hist_filter *f,
                     cf_q_hist_fn fn, void *arg);

/* Totals for /metrics (no tenant data). */
typedef int (*cf_q_count_fn)(void *arg, const char *label, int64_t count);
/* Instances per state. */
int cf_query_instance_states(struct cf_store *s, cf_q_count_fn fn, void *arg);
/* Open incidents per type. */
int cf_query_open_incident_types(struct cf_store *s, cf_q_count_fn fn, void *arg);
/* Jobs with retries left that are due at `now` and not locked, and jobs without retries. */
int cf_query_job_counts(struct cf_store *s, uint64_t now, int64_t *due, int64_t *exhausted);

/* For /health/ready: the number of definitions and the highest definition id. */
int cf_query_def_totals(struct cf_store *s, int64_t *count, int64_t *max_id);
/* Latest version of every key (all tenants), with XML, for a loadability check. */
int cf_query_latest_defs_xml(struct cf_store *s, int64_t above_id, cf_def_row_fn fn, void *arg);

#endif
