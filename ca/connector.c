/*
 * The table of CA connector kinds (ca/connector.h). The connectors themselves live in their own
 * files; this one only answers "which kinds are there, and what is this one called".
 */
#include "ca/connector.h"

#include <string.h>

#include "base/base.h"
#include "store/seal.h"
#include "store/store.h"

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

int cf_ca_settings_seal(struct cf_store *s, const char *tenant, const char *name,
                        const char *connector, const char *settings, char **out, char *err,
                        size_t errlen)
{
    *out = NULL;
    const struct cf_ca_connector_kind *kind = cf_ca_connector_kind(connector);
    if (!settings || !kind || !kind->secret_fields)
        return 0;
    json_t *o = json_loads(settings, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(o)) {
        json_decref(o);
        return 0; /* not ours to judge: the template check refuses it */
    }
    int rc = 0;
    bool changed = false;
    for (size_t i = 0; !rc && kind->secret_fields[i]; i++) {
        const char *field = kind->secret_fields[i];
        json_t *v = json_object_get(o, field);
        if (!json_is_string(v) || cf_seal_is_sealed(json_string_value(v)))
            continue;
        const char *row[] = {"certificate_template", tenant, name, field};
        char *sealed = NULL;
        rc = cf_store_seal_text(s, row, CF_ARRAY_LEN(row), json_string_value(v), &sealed);
        if (rc) {
            cf_errf(err, errlen, "settings.%s: cannot be sealed for storing: %s", field,
                    cf_strerror(rc));
            break;
        }
        json_object_set_new(o, field, json_string(sealed));
        free(sealed);
        changed = true;
    }
    if (!rc && changed)
        *out = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return rc;
}

int cf_ca_settings_open(struct cf_store *s, const char *tenant, const char *name,
                        const char *connector, json_t *settings, char *err, size_t errlen)
{
    const struct cf_ca_connector_kind *kind = cf_ca_connector_kind(connector);
    if (!kind || !kind->secret_fields || !json_is_object(settings))
        return 0;
    for (size_t i = 0; kind->secret_fields[i]; i++) {
        const char *field = kind->secret_fields[i];
        json_t *v = json_object_get(settings, field);
        if (!json_is_string(v) || !cf_seal_is_sealed(json_string_value(v)))
            continue;
        const char *row[] = {"certificate_template", tenant, name, field};
        char *plain = NULL;
        int rc = cf_store_open_text(s, row, CF_ARRAY_LEN(row), json_string_value(v), &plain);
        if (rc) {
            cf_errf(err, errlen,
                    "settings.%s: the stored secret cannot be opened (the secrets key is "
                    "missing or is not the one it was stored with); set it again",
                    field);
            return rc;
        }
        json_object_set_new(settings, field, json_string(plain));
        cf_seal_free_plain(plain);
    }
    return 0;
}
