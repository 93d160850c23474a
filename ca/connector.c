/*
 * The table of CA connector kinds (ca/connector.h). The connectors themselves live in their own
 * files; this one only answers "which kinds are there, and what is this one called".
 */
#include "ca/connector.h"

#include <string.h>

#include "base/base.h"

static const struct cf_ca_connector_kind *const kinds[] = {
    &cf__ca_kind_embedded,
    &cf__ca_kind_cmp,
    &cf__ca_kind_cm_rest,
    NULL,
};

const struct cf_ca_connector_kind *cf_ca_connector_kind(const char *name)
{
    for (size_t i = 0; name && kinds[i]; i++)
        if (strcmp(kinds[i]->name, name) == 0)
            return kinds[i];
    return NULL;
}

const struct cf_ca_connector_kind *const *cf_ca_connector_kinds(void)
{
    return kinds;
}

const char *cf_ca_connector_names(void)
{
    return "embedded, cmp, cm-rest";
}

int cf_ca_template_check(const char *connector, const json_t *settings, const json_t *procedure,
                         bool *unavailable, char *err, size_t errlen)
{
    const struct cf_ca_connector_kind *kind = cf_ca_connector_kind(connector);
    if (!kind) {
        cf_errf(err, errlen, "connector: '%s' is not one certflow has (%s)",
                connector ? connector : "", cf_ca_connector_names());
        return CF_EINVAL;
    }
    json_t *empty = json_object();
    int rc = kind->check_settings(settings ? settings : empty, err, errlen);
    if (!rc) {
        struct cf_ca_policy *p = NULL;
        if (cf_ca_policy_from_json(procedure ? procedure : empty, &p, err, errlen) != 0)
            rc = CF_EINVAL;
        cf_ca_policy_free(p);
    }
    json_decref(empty);
    if (unavailable)
        *unavailable = !kind->available;
    return rc;
}
