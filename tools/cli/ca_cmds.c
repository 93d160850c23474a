/*
 * The CA side of the certflow CLI (see ca_cmds.h). `ca init` creates the embedded CA of a data
 * directory and prints its root's fingerprint, so that an operator can pin it; `ca show` prints
 * what is there. `templates ...` edits the certificate templates in a database file with the
 * store's own functions (store/admin.h), checking the connector's settings (ca/connector.h) and
 * the procedure (ca/policy.h) first, with messages that name the JSON field at fault; like
 * `certflow user`, it is safe next to a running certflowd, which reads a changed template at its
 * next use. Template settings may hold secrets (a CMP shared secret, a key password): `show`
 * prints them as "***".
 *
 * What it leaves to others: issuing is ca/service.c's, the engine session is certflow.c's.
 */
#include "ca_cmds.h"

#include <dirent.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/x509.h>

#include "base/base.h"
#include "ca/connector.h"
#include "ca/embedded.h"
#include "ca/policy.h"
#include "store/admin.h"
#include "store/store.h"

#define DEFAULT_DB "var/certflow.db"
#define DEFAULT_TEMPLATE "default"
/* Settings and procedures are small JSON objects; anything larger is a mistake. */
#define JSON_MAX_BYTES (256 * 1024)

static const char ca_usage[] =
    "usage:\n"
    "  certflow ca init [--dir DIR | --db PATH] [--rsa] [--force]\n"
    "      create the embedded CA (a root and an issuing CA, ECDSA P-256, or RSA-3072 with\n"
    "      --rsa; private keys encrypted at rest) and print the root's SHA-256 fingerprint;\n"
    "      --force replaces an existing CA, whose certificates then no longer chain\n"
    "  certflow ca show [--dir DIR | --db PATH]\n"
    "      the CA's names, fingerprints and chain files\n"
    "\n"
    "DIR defaults to the folder \"ca\" next to the database (PATH, default " DEFAULT_DB "),\n"
    "which is where `certflow run --db PATH` and certflowd (<data_dir>/ca) look for it; either\n"
    "creates it with defaults when it is missing. The key passphrase comes from the systemd\n"
    "credential " CF_CA_CREDENTIAL_NAME ", else $" CF_CA_PASSPHRASE_ENV ", else a generated\n"
    "one kept in DIR/passphrase (0600).\n";

static const char templates_usage[] =
    "usage:\n"
    "  certflow templates add NAME [--tenant T] [--connector embedded|cmp|cm-rest]\n"
    "                         [--settings JSON|@FILE] [--procedure JSON|@FILE] [--db PATH]\n"
    "  certflow templates update NAME [--tenant T] [--connector C] [--settings JSON|@FILE]\n"
    "                         [--procedure JSON|@FILE] [--db PATH]\n"
    "  certflow templates list [--tenant T] [--db PATH]\n"
    "  certflow templates show NAME [--tenant T] [--db PATH]\n"
    "  certflow templates remove NAME [--tenant T] [--db PATH]\n"
    "\n"
    "A template names a CA connection (connector and its settings) and a procedure (validity,\n"
    "key types, key usage, subject and SAN policy; see ca/policy.h). The tenant defaults to\n"
    "\"" CF_CA_DEFAULT_TENANT
    "\", which is also where process instances without a tenant (certflow\n"
    "run) find their templates; add creates the tenant when it is missing. Settings:\n"
    "  embedded  {} (its CA lives in the data directory)\n"
    "  cmp       {\"server\": \"host:port\", \"path\": \"/pkix/\", ...}\n"
    "  cm-rest   {\"url\": \"https://host:8444/pgwy/api\", ...}\n"
    "The database defaults to " DEFAULT_DB ".\n";

/* ---- the "ca" service of engine sessions ---- */

static char *ca_dir_of(const char *db_path, bool temp_db)
{
    if (temp_db)
        return cf_xasprintf("%s-ca", db_path);
    const char *slash = strrchr(db_path, '/');
    if (!slash)
        return cf_xstrdup("ca");
    if (slash == db_path)
        return cf_xstrdup("/ca");
    return cf_xasprintf("%.*s/ca", (int)(slash - db_path), db_path);
}

/* The tenant and template that certflowd's first start creates, so that a process run with
 * `certflow run` on a fresh database finds certTemplate "default". */
static int ensure_defaults(struct cf_store *s, char *err, size_t errlen)
{
    int rc = cf_admin_tenant_exists(s, CF_CA_DEFAULT_TENANT);
    if (rc != CF_ENOENT)
        return rc;
    uint64_t now = cf_now_ms();
    rc = cf_store_begin(s);
    if (!rc)
        rc = cf_admin_tenant_create(s, CF_CA_DEFAULT_TENANT, "Default tenant", now);
    if (!rc)
        rc = cf_admin_template_create(s, CF_CA_DEFAULT_TENANT, DEFAULT_TEMPLATE, "embedded", NULL,
                                      NULL, now, NULL);
    if (!rc)
        rc = cf_store_commit(s);
    if (rc) {
        cf_errf(err, errlen, "%s (%s)", cf_strerror(rc), cf_store_errmsg(s));
        if (cf_store_in_tx(s))
            cf_store_rollback(s);
    }
    return rc;
}

struct cf_ca_svc *cf_cli_ca_attach(struct cf_engine *e, const char *db_path, bool temp_db)
{
    char err[1024];
    if (ensure_defaults(cf_engine_store(e), err, sizeof(err)) != 0) {
        fprintf(stderr, "certflow: warning: cannot create the tenant and template \"%s\": %s\n",
                CF_CA_DEFAULT_TENANT, err);
        return NULL;
    }
    char *dir = ca_dir_of(db_path, temp_db);
    struct cf_ca_svc *svc = NULL;
    if (cf_ca_service_attach(e, dir, &svc, err, sizeof(err)) != 0) {
        fprintf(stderr, "certflow: warning: no CA service: %s\n", err);
        svc = NULL;
    }
    free(dir);
    return svc;
}

void cf_cli_ca_detach(struct cf_ca_svc *svc)
{
    cf_ca_service_detach(svc);
}

void cf_cli_ca_remove_temp(const char *db_path)
{
    char *dir = ca_dir_of(db_path, true);
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *de;
        while ((de = readdir(d)) != NULL) {
            if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                continue;
            char *p = cf_xasprintf("%s/%s", dir, de->d_name);
            unlink(p);
            free(p);
        }
        closedir(d);
        rmdir(dir);
    }
    free(dir);
}

/* ---- certflow ca ---- */

static int ca_fail(const char *fmt, ...) CF_PRINTF(1, 2);

static int ca_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("certflow ca: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 1;
}

static int ca_usage_error(const char *msg)
{
    if (msg)
        fprintf(stderr, "certflow ca: %s\n", msg);
    fputs(ca_usage, stderr);
    return 2;
}

static void print_name(const char *label, const X509_NAME *name)
{
    fputs(label, stdout);
    X509_NAME_print_ex_fp(stdout, name, 0, XN_FLAG_RFC2253);
    fputc('\n', stdout);
}

static void print_ca(const char *dir, const struct cf_ca *ca)
{
    char fpr[CF_CA_FPR_LEN];
    print_name("root:    ", X509_get_subject_name(cf_ca_root_cert(ca)));
    print_name("issuing: ", X509_get_subject_name(cf_ca_issuing_cert(ca)));
    cf_ca_fingerprint(cf_ca_root_cert(ca), fpr);
    printf("root SHA-256 fingerprint:    %s\n", fpr);
    cf_ca_fingerprint(cf_ca_issuing_cert(ca), fpr);
    printf("issuing SHA-256 fingerprint: %s\n", fpr);
    printf("chain: %s/issuing.pem %s/root.pem\n", dir, dir);
}

int cf_cli_ca(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)
        return ca_usage_error(argc < 2 ? "a verb is needed (init, show)" : NULL);
    const char *verb = argv[1], *dir_opt = NULL, *db = NULL;
    bool rsa = false, force = false;
    bool init = strcmp(verb, "init") == 0;
    if (!init && strcmp(verb, "show") != 0)
        return ca_usage_error("unknown verb (init, show)");
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc)
            dir_opt = argv[++i];
        else if (strcmp(argv[i], "--db") == 0 && i + 1 < argc)
            db = argv[++i];
        else if (init && strcmp(argv[i], "--rsa") == 0)
            rsa = true;
        else if (init && strcmp(argv[i], "--force") == 0)
            force = true;
        else
            return ca_usage_error("unknown option or missing value");
    }
    if (dir_opt && db)
        return ca_usage_error("--dir and --db are two ways to say the same; give one");
    char *dir = dir_opt ? cf_xstrdup(dir_opt) : ca_dir_of(db ? db : DEFAULT_DB, false);
    char secret_buf[4096], err[1024];
    struct cf_ca_secret secret;
    cf_ca_service_secret(&secret, secret_buf, sizeof(secret_buf));
    const struct cf_ca_secret *sp = secret.file || secret.env ? &secret : NULL;
    int result = 1;
    if (init) {
        struct cf_ca_init_opts opts = {
            .key_alg = rsa ? CF_CA_KEY_RSA_3072 : CF_CA_KEY_EC_P256,
            .force = force,
        };
        if (sp)
            opts.secret = secret;
        int rc = cf_ca_init(dir, &opts, err, sizeof(err));
        if (rc == CF_EEXIST) {
            struct cf_ca *old = NULL;
            char fpr[CF_CA_FPR_LEN] = "";
            if (cf_ca_open(dir, sp, &old, err, sizeof(err)) == 0)
                cf_ca_fingerprint(cf_ca_root_cert(old), fpr);
            cf_ca_close(old);
            ca_fail("a CA already exists in %s%s%s%s; --force replaces it (the certificates it "
                    "issued then no longer chain to the new root)",
                    dir, fpr[0] ? " (root SHA-256 " : "", fpr, fpr[0] ? ")" : "");
            goto out;
        }
        if (rc) {
            ca_fail("%s", err);
            goto out;
        }
        printf("embedded CA created in %s (%s)\n", dir, rsa ? "RSA-3072" : "ECDSA P-256");
    }
    struct cf_ca *ca = NULL;
    int rc = cf_ca_open(dir, sp, &ca, err, sizeof(err));
    if (rc == CF_ENOENT) {
        ca_fail("no CA in %s (certflow ca init creates one)", dir);
        goto out;
    }
    if (rc) {
        ca_fail("%s", err);
        goto out;
    }
    print_ca(dir, ca);
    cf_ca_close(ca);
    result = 0;
out:
    free(dir);
    return result;
}

/* ---- certflow templates ---- */

static int tpl_fail(const char *fmt, ...) CF_PRINTF(1, 2);

static int tpl_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("certflow templates: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 1;
}

static int tpl_usage_error(const char *msg)
{
    if (msg)
        fprintf(stderr, "certflow templates: %s\n", msg);
    fputs(templates_usage, stderr);
    return 2;
}

struct tpl_args {
    const char *verb;
    const char *name;
    const char *tenant;
    const char *connector;
    const char *settings;  /* as given: JSON or @FILE */
    const char *procedure; /* as given */
    bool tenant_given;
    const char *db;
};

/* JSON text from "JSON" or "@FILE"; the caller frees it. NULL after a message on stderr. */
static char *json_arg(const char *what, const char *arg)
{
    if (arg[0] != '@')
        return cf_xstrdup(arg);
    uint8_t *data = NULL;
    size_t len = 0;
    char err[512];
    if (cf_read_file(arg + 1, JSON_MAX_BYTES, &data, &len, err, sizeof(err)) != 0) {
        tpl_fail("--%s: %s", what, err);
        return NULL;
    }
    if (memchr(data, '\0', len)) {
        free(data);
        tpl_fail("--%s: %s is not a text file", what, arg + 1);
        return NULL;
    }
    char *text = cf_xstrndup((const char *)data, len);
    free(data);
    return text;
}

/* Checks what a template would be; prints why not. `settings` and `procedure` are JSON text. */
static int check_template(const char *name, const char *connector, const char *settings,
                          const char *procedure)
{
    json_error_t je;
    json_t *s = json_loads(settings, JSON_REJECT_DUPLICATES, &je);
    if (!s)
        return tpl_fail("template '%s': settings: invalid JSON at line %d, column %d: %s", name,
                        je.line, je.column, je.text);
    json_t *p = json_loads(procedure, JSON_REJECT_DUPLICATES, &je);
    if (!p) {
        json_decref(s);
        return tpl_fail("template '%s': procedure: invalid JSON at line %d, column %d: %s", name,
                        je.line, je.column, je.text);
    }
    char err[512];
    bool unavailable = false;
    int rc = cf_ca_template_check(connector, s, p, &unavailable, err, sizeof(err));
    json_decref(s);
    json_decref(p);
    if (rc)
        return tpl_fail("template '%s': %s", name, err);
    if (unavailable)
        fprintf(stderr,
                "certflow templates: note: this build has no %s client yet; requests through "
                "template '%s' fail with CaConnectionFailed until it has\n",
                connector, name);
    return 0;
}

static int open_store(const char *db, bool read_only, struct cf_store **s)
{
    char err[1024];
    struct cf_store_options so = {.read_only = read_only};
    if (cf_store_open(db, &so, s, err, sizeof(err)) != 0)
        return tpl_fail("%s", err);
    return 0;
}

/* Replaces *settings with its text to store, secrets sealed (ca/connector.h). */
static int seal_settings(struct cf_store *s, const struct tpl_args *a, const char *connector,
                         char **settings)
{
    char *sealed = NULL;
    char err[512];
    if (cf_ca_settings_seal(s, a->tenant, a->name, connector, *settings, &sealed, err,
                            sizeof(err)) != 0)
        return tpl_fail("cannot store the template: %s", err);
    if (sealed) {
        free(*settings);
        *settings = sealed;
    }
    return 0;
}

static int t_add(const struct tpl_args *a, struct cf_store *s)
{
    const char *connector = a->connector ? a->connector : "embedded";
    char *settings = a->settings ? json_arg("settings", a->settings) : cf_xstrdup("{}");
    char *procedure = a->procedure ? json_arg("procedure", a->procedure) : cf_xstrdup("{}");
    int result = 1;
    if (!settings || !procedure || check_template(a->name, connector, settings, procedure) != 0 ||
        seal_settings(s, a, connector, &settings) != 0)
        goto out;
    uint64_t now = cf_now_ms();
    bool created_tenant = false;
    int rc = cf_store_begin(s);
    if (!rc && cf_admin_tenant_exists(s, a->tenant) == CF_ENOENT) {
        rc = cf_admin_tenant_create(s, a->tenant, NULL, now);
        created_tenant = !rc;
    }
    int64_t id = 0;
    if (!rc)
        rc = cf_admin_template_create(s, a->tenant, a->name, connector, settings, procedure, now,
                                      &id);
    if (!rc)
        rc = cf_store_commit(s);
    if (rc) {
        if (cf_store_in_tx(s))
            cf_store_rollback(s);
        if (rc == CF_EEXIST)
            tpl_fail("tenant '%s' already has a template '%s' (templates update changes it)",
                     a->tenant, a->name);
        else
            tpl_fail("cannot store the template: %s (%s)", cf_strerror(rc), cf_store_errmsg(s));
        goto out;
    }
    if (created_tenant)
        printf("created tenant %s\n", a->tenant);
    printf("template %s added to tenant %s (id %" PRId64 ", connector %s)\n", a->name, a->tenant,
           id, connector);
    result = 0;
out:
    free(settings);
    free(procedure);
    return result;
}

static int t_update(const struct tpl_args *a, struct cf_store *s)
{
    if (!a->connector && !a->settings && !a->procedure)
        return tpl_usage_error("update needs --connector, --settings or --procedure");
    struct cf_template_row row;
    int rc = cf_admin_template_get(s, a->tenant, a->name, &row);
    if (rc == CF_ENOENT)
        return tpl_fail("tenant '%s' has no template '%s'", a->tenant, a->name);
    if (rc)
        return tpl_fail("cannot read the template: %s (%s)", cf_strerror(rc), cf_store_errmsg(s));
    char *settings = a->settings ? json_arg("settings", a->settings) : cf_xstrdup(row.settings);
    char *procedure =
        a->procedure ? json_arg("procedure", a->procedure) : cf_xstrdup(row.procedure);
    const char *connector = a->connector ? a->connector : row.connector;
    int result = 1;
    if (!settings || !procedure || check_template(a->name, connector, settings, procedure) != 0 ||
        (a->settings && seal_settings(s, a, connector, &settings) != 0))
        goto out;
    rc =
        cf_admin_template_update(s, a->tenant, a->name, a->connector, a->settings ? settings : NULL,
                                 a->procedure ? procedure : NULL, cf_now_ms());
    if (rc) {
        tpl_fail("cannot store the template: %s (%s)", cf_strerror(rc), cf_store_errmsg(s));
        goto out;
    }
    printf("template %s of tenant %s updated\n", a->name, a->tenant);
    result = 0;
out:
    free(settings);
    free(procedure);
    cf_template_row_free(&row);
    return result;
}

static int print_row(void *arg, const struct cf_template_row *r)
{
    int *n = arg;
    if (!*n)
        printf("%-16s %-24s %s\n", "TENANT", "NAME", "CONNECTOR");
    printf("%-16s %-24s %s\n", r->tenant_id, r->name, r->connector);
    (*n)++;
    return 0;
}

struct tenant_list {
    char **ids;
    size_t n;
};

static int collect_tenant(void *arg, const struct cf_tenant_row *r)
{
    struct tenant_list *l = arg;
    l->ids = cf_xrealloc(l->ids, (l->n + 1) * sizeof(*l->ids));
    l->ids[l->n++] = cf_xstrdup(r->id);
    return 0;
}

static int t_list(const struct tpl_args *a, struct cf_store *s)
{
    struct tenant_list l = {0};
    int rc = 0;
    if (a->tenant_given) {
        collect_tenant(&l, &(struct cf_tenant_row){.id = (char *)a->tenant});
    } else {
        rc = cf_admin_tenant_list(s, collect_tenant, &l);
    }
    int n = 0;
    if (!rc && l.n)
        rc = cf_admin_template_list(s, (const char *const *)l.ids, l.n, print_row, &n);
    for (size_t i = 0; i < l.n; i++)
        free(l.ids[i]);
    free(l.ids);
    if (rc)
        return tpl_fail("cannot list templates: %s (%s)", cf_strerror(rc), cf_store_errmsg(s));
    if (!n)
        printf("no templates%s%s\n", a->tenant_given ? " in tenant " : "",
               a->tenant_given ? a->tenant : "");
    return 0;
}

/* Settings fields that hold secrets are shown as "***": those the connector kind names in its
 * secret_fields (ca/connector.h), as /api/v1/templates does, and any whose name says so. */
static bool secret_field(const char *connector, const char *name)
{
    const struct cf_ca_connector_kind *k = cf_ca_connector_kind(connector);
    for (size_t i = 0; k && k->secret_fields && k->secret_fields[i]; i++)
        if (strcmp(k->secret_fields[i], name) == 0)
            return true;
    static const char *const words[] = {"secret", "password", "passphrase", "hmac"};
    for (size_t i = 0; i < CF_ARRAY_LEN(words); i++) {
        size_t wl = strlen(words[i]);
        for (const char *p = name; *p; p++)
            if (strncasecmp(p, words[i], wl) == 0)
                return true;
    }
    return false;
}

static int t_show(const struct tpl_args *a, struct cf_store *s)
{
    struct cf_template_row row;
    int rc = cf_admin_template_get(s, a->tenant, a->name, &row);
    if (rc == CF_ENOENT)
        return tpl_fail("tenant '%s' has no template '%s'", a->tenant, a->name);
    if (rc)
        return tpl_fail("cannot read the template: %s (%s)", cf_strerror(rc), cf_store_errmsg(s));
    char created[CF_TIME_ISO_LEN], updated[CF_TIME_ISO_LEN];
    cf_time_iso(row.created_at, created);
    cf_time_iso(row.updated_at, updated);
    printf("template:   %s\ntenant:     %s\nid:         %" PRId64 "\nconnector:  %s\n", row.name,
           row.tenant_id, row.id, row.connector);
    json_t *settings = json_loads(row.settings, JSON_REJECT_DUPLICATES, NULL);
    if (json_is_object(settings)) {
        const char *k;
        json_t *v;
        json_object_foreach(settings, k, v)
        {
            if (secret_field(row.connector, k) && !json_is_null(v))
                json_object_set_new(settings, k, json_string("***"));
        }
        char *text = json_dumps(settings, JSON_COMPACT | JSON_SORT_KEYS);
        printf("settings:   %s\n", text ? text : "?");
        free(text);
    } else {
        printf("settings:   (not a JSON object: the template is unusable)\n");
    }
    json_decref(settings);
    printf("procedure:  %s\n", row.procedure);
    struct cf_ca_policy *p = NULL;
    char err[512];
    int result = 0;
    if (cf_ca_policy_parse(row.procedure, &p, err, sizeof(err)) == 0) {
        char *eff = cf_ca_policy_to_json(p);
        printf("effective:  %s\n", eff ? eff : "?");
        free(eff);
        cf_ca_policy_free(p);
    } else {
        printf("effective:  (unusable: %s)\n", err);
        result = 1;
    }
    printf("created:    %s\nupdated:    %s\n", created, updated);
    cf_template_row_free(&row);
    return result;
}

static int t_remove(const struct tpl_args *a, struct cf_store *s)
{
    int rc = cf_admin_template_delete(s, a->tenant, a->name);
    if (rc == CF_ENOENT)
        return tpl_fail("tenant '%s' has no template '%s'", a->tenant, a->name);
    if (rc == CF_ESTATE)
        return tpl_fail("template '%s' of tenant '%s' stays: certificates issued through it refer "
                        "to it",
                        a->name, a->tenant);
    if (rc)
        return tpl_fail("cannot remove the template: %s (%s)", cf_strerror(rc), cf_store_errmsg(s));
    printf("template %s removed from tenant %s\n", a->name, a->tenant);
    return 0;
}

int cf_cli_templates(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)
        return tpl_usage_error(argc < 2 ? "a verb is needed (add, update, list, show, remove)"
                                        : NULL);
    struct tpl_args a = {.verb = argv[1], .tenant = CF_CA_DEFAULT_TENANT, .db = DEFAULT_DB};
    static const char *const verbs[] = {"add", "update", "list", "show", "remove"};
    bool known = false;
    for (size_t i = 0; i < CF_ARRAY_LEN(verbs); i++)
        known = known || strcmp(a.verb, verbs[i]) == 0;
    if (!known)
        return tpl_usage_error("unknown verb (add, update, list, show, remove)");
    bool edits = strcmp(a.verb, "add") == 0 || strcmp(a.verb, "update") == 0;
    for (int i = 2; i < argc; i++) {
        const char *o = argv[i];
        bool has_value = i + 1 < argc;
        if (strcmp(o, "--db") == 0 && has_value) {
            a.db = argv[++i];
        } else if (strcmp(o, "--tenant") == 0 && has_value) {
            a.tenant = argv[++i];
            a.tenant_given = true;
        } else if (edits && strcmp(o, "--connector") == 0 && has_value) {
            a.connector = argv[++i];
        } else if (edits && strcmp(o, "--settings") == 0 && has_value) {
            a.settings = argv[++i];
        } else if (edits && strcmp(o, "--procedure") == 0 && has_value) {
            a.procedure = argv[++i];
        } else if (o[0] == '-') {
            return tpl_usage_error("unknown option or missing value");
        } else if (!a.name) {
            a.name = o;
        } else {
            return tpl_usage_error("one template NAME at a time");
        }
    }
    bool list = strcmp(a.verb, "list") == 0;
    if (list ? a.name != NULL : a.name == NULL)
        return tpl_usage_error(list ? "list takes no NAME" : "a template NAME is needed");
    if (a.name && !*a.name)
        return tpl_usage_error("a template NAME must not be empty");
    if (!*a.tenant)
        return tpl_usage_error("the tenant must not be empty (instances without a tenant use "
                               "\"" CF_CA_DEFAULT_TENANT "\")");
    struct cf_store *s;
    bool read_only = list || strcmp(a.verb, "show") == 0;
    if (open_store(a.db, read_only, &s) != 0)
        return 1;
    int rc;
    if (strcmp(a.verb, "add") == 0)
        rc = t_add(&a, s);
    else if (strcmp(a.verb, "update") == 0)
        rc = t_update(&a, s);
    else if (list)
        rc = t_list(&a, s);
    else if (strcmp(a.verb, "show") == 0)
        rc = t_show(&a, s);
    else
        rc = t_remove(&a, s);
    cf_store_close(s);
    return rc;
}
