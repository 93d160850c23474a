/*
 * The "cm-rest" connector kind: INTERIM — settings are checked, requests fail with
 * CaConnectionFailed until the protocol client lands (issue 5). Being replaced in this session.
 */
#include "ca/remote.h"

#include <stdio.h>
#include <stdlib.h>

#include "base/base.h"

static const struct cf__ca_field fields[] = {
    {"url", CF_CA_F_STRING, true, 0, 0, NULL},
    {"cert", CF_CA_F_FILE, false, 0, 0, NULL},
    {"key", CF_CA_F_FILE, false, 0, 0, NULL},
    {"keyPassword", CF_CA_F_STRING, false, 0, 0, NULL},
    {"trusted", CF_CA_F_FILE, false, 0, 0, NULL},
    {"timeoutMs", CF_CA_F_INT, false, 1, 600000, NULL},
    {NULL, CF_CA_F_STRING, false, 0, 0, NULL},
};

static const char *const secrets[] = {"keyPassword", NULL};

static int check(const json_t *settings, char *err, size_t errlen)
{
    int rc = cf__ca_check_fields("cm-rest", settings, fields, err, errlen);
    if (rc)
        return rc;
    struct cf__ca_endpoint ep;
    return cf__ca_parse_endpoint("url", cf__ca_setting_str(settings, "url", ""), false, false, &ep,
                                 err, errlen);
}

static int no_override(const json_t *settings, char *why, size_t whylen)
{
    (void)settings;
    snprintf(why, whylen, "the cm-rest connector cannot carry a modified request");
    return 0;
}

struct conn {
    struct cf_ca_connector pub;
    uv_loop_t *loop;
};

static int issue(struct cf_ca_connector *c, const struct cf_ca_conn_request *req,
                 cf_ca_conn_done_fn done, void *arg)
{
    struct conn *cn = cf_container_of(c, struct conn, pub);
    (void)req;
    return cf__ca_fail_later(cn->loop, done, arg, CF_CA_CONNECTION_FAILED,
                             "this build of certflow has no cm-rest client yet");
}

static void shutdown_conn(struct cf_ca_connector *c)
{
    (void)c;
}

static void free_conn(struct cf_ca_connector *c)
{
    if (c)
        free(cf_container_of(c, struct conn, pub));
}

static const struct cf_ca_connector_ops ops = {
    .issue = issue, .shutdown = shutdown_conn, .free = free_conn};

static int create(const struct cf_ca_connector_env *env, struct cf_ca_connector **out, char *err,
                  size_t errlen);

const struct cf_ca_connector_kind cf__ca_kind_cm_rest = {
    .name = "cm-rest",
    .available = false,
    .secret_fields = secrets,
    .check_settings = check,
    .supports_override = no_override,
    .create = create,
};

static int create(const struct cf_ca_connector_env *env, struct cf_ca_connector **out, char *err,
                  size_t errlen)
{
    if (!env || !env->loop) {
        cf_errf(err, errlen, "the cm-rest connector needs a loop");
        return CF_EINVAL;
    }
    struct conn *cn = cf_xcalloc(1, sizeof(*cn));
    cn->pub.ops = &ops;
    cn->pub.kind = &cf__ca_kind_cm_rest;
    cn->loop = env->loop;
    *out = &cn->pub;
    return 0;
}
