/*
 * `certflow --url URL ...`: the command-line tool against a running certflowd, through its HTTP
 * APIs (the Camunda 7 subset under /engine-rest, certflow's /api/v1, /health) with libcurl.
 * Commands: deploy, list pd|pi|inc, get pi, start, cancel, retry, params, certs, status.
 *
 * Conventions (shared/reference/camunda-rest-templates-libs.md §2.4): the daemon is named by
 * --url or $CERTFLOW_URL; a client certificate (--cert/--key) or HTTP Basic (--user, with the
 * password from $CERTFLOW_PASSWORD or a prompt without echo, never from the command line)
 * authenticates; --cacert names the CA that signed the daemon's certificate. Output is a table for
 * people, or with -o json the API's own JSON, indented with sorted keys so that scripts and diffs
 * see stable text. Exit codes: 0 success, 1 the API or the server reported an error (or could not
 * be reached), 2 usage.
 *
 * What it leaves to others: without --url (and without $CERTFLOW_URL, or with --db) certflow.c
 * runs the local commands on a database file as before. Secret parameter values come back from
 * the server as "***"; nothing here can reveal them.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <termios.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>
#include <sodium.h>

#include "base/base.h"

int cf_cli_remote_wanted(int argc, char **argv);
int cf_cli_remote(int argc, char **argv);

#define MAX_RESPONSE (256u * 1024u * 1024u)
#define MAX_ARGS 256

static const char *remote_usage =
    "usage: certflow --url URL [--cacert FILE] [--cert FILE --key FILE | --user NAME]\n"
    "                [-o json] [--tenant ID] COMMAND [ARGS]\n"
    "\n"
    "commands against certflowd:\n"
    "  status                               readiness and version of the daemon\n"
    "  deploy FILE... [--name NAME]         deploy BPMN files (new versions only when changed)\n"
    "  list pd [--key KEY] [--latest]       process definitions\n"
    "  list pi [--key KEY] [--business-key BK] [--all]\n"
    "                                       process instances (running; --all: ended too)\n"
    "  list inc [--instance ID] [--type TYPE]\n"
    "                                       open incidents\n"
    "  get pi ID                            one instance: state, activities, variables, incidents\n"
    "  start KEY [--var NAME[:TYPE]=VALUE]... [--business-key BK]\n"
    "                                       start an instance of the latest version of KEY\n"
    "  cancel ID                            cancel a running instance\n"
    "  retry INCIDENT [--retries N]         retry an incident\n"
    "  retry --job ID [--retries N]         give a failed job retries again (Camunda's way)\n"
    "  params list KEY [ACTIVITY] | params get KEY ACTIVITY NAME\n"
    "  params set KEY ACTIVITY NAME (VALUE | --stdin) | params unset KEY ACTIVITY NAME\n"
    "                                       admin configuration of task parameters\n"
    "  certs [list] [--template T] [--serial S] [--subject TEXT] [--status S] [--limit N]\n"
    "  certs get ID [--pem]                 certificates of your tenants\n"
    "\n"
    "A --key before the command names the client key; after `list` it filters by process key.\n"
    "The URL may also come from $CERTFLOW_URL; the Basic password from $CERTFLOW_PASSWORD or a\n"
    "prompt, never from the command line. TYPE is String (default), Long, Double, Boolean,\n"
    "Date, Json or Null. Exit codes: 0 ok, 1 API or server error, 2 usage.\n";

static void usage(const char *fmt, ...) CF_PRINTF(1, 2);

static void usage(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("certflow: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\n(certflow --url URL help for the remote commands)\n", stderr);
    exit(2);
}

static const char *const remote_commands[] = {"status", "deploy", "list",   "get",   "start",
                                              "cancel", "retry",  "params", "certs", "help"};

static bool is_remote_command(const char *c)
{
    for (size_t i = 0; i < CF_ARRAY_LEN(remote_commands); i++)
        if (strcmp(c, remote_commands[i]) == 0)
            return true;
    return false;
}

/* Options that take a value, wherever they stand. */
static bool takes_value(const char *o)
{
    static const char *const with_value[] = {
        "--url",      "--cert",         "--key",      "--cacert",  "--user",      "-o",
        "--output",   "--tenant",       "--timeout",  "--plugins", "--log-level", "--name",
        "--var",      "--business-key", "--instance", "--type",    "--job",       "--retries",
        "--template", "--serial",       "--subject",  "--status",  "--limit",     "--db"};
    for (size_t i = 0; i < CF_ARRAY_LEN(with_value); i++)
        if (strcmp(o, with_value[i]) == 0)
            return true;
    return false;
}

/* Remote when --url is given, or $CERTFLOW_URL is set and no --db asks for a local file; and the
 * command is one the daemon serves. */
int cf_cli_remote_wanted(int argc, char **argv)
{
    bool url = false, db = false;
    const char *cmd = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--url") == 0 || strncmp(argv[i], "--url=", 6) == 0)
            url = true;
        else if (strcmp(argv[i], "--db") == 0 || strncmp(argv[i], "--db=", 5) == 0)
            db = true;
        if (!cmd && argv[i][0] != '-')
            cmd = argv[i];
        else if (!cmd && takes_value(argv[i]))
            i++;
    }
    /* With --url everything goes to the remote side, which also explains a command that only
     * runs locally; $CERTFLOW_URL only claims the commands the daemon serves. */
    if (url)
        return 1;
    const char *env = getenv("CERTFLOW_URL");
    return env && *env && !db && cmd && is_remote_command(cmd);
}

/* ---- connection ---------------------------------------------------------------------------- */

struct remote {
    char *base; /* scheme://host[:port], no trailing '/' */
    const char *cert;
    const char *key;
    const char *cacert;
    const char *user;
    char *password;
    const char *tenant;
    bool json;
    long timeout_s;
    CURL *curl;
};

struct resp {
    long status;
    struct cf_buf body;
    json_t *json; /* parsed body, when it is JSON */
};

static void resp_free(struct resp *r)
{
    cf_buf_free(&r->body);
    json_decref(r->json);
    memset(r, 0, sizeof(*r));
}

static size_t on_data(char *p, size_t size, size_t n, void *arg)
{
    struct cf_buf *b = arg;
    if (b->len + size * n > MAX_RESPONSE)
        return 0;
    cf_buf_append(b, p, size * n);
    return size * n;
}

/* Reads a password from the terminal without echo. */
static char *prompt_password(const char *user)
{
    FILE *tty = fopen("/dev/tty", "r+");
    if (!tty)
        return NULL;
    fprintf(tty, "password for %s: ", user);
    fflush(tty);
    struct termios old, quiet;
    bool restore = tcgetattr(fileno(tty), &old) == 0;
    if (restore) {
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        tcsetattr(fileno(tty), TCSAFLUSH, &quiet);
    }
    char line[1100];
    char *got = fgets(line, sizeof line, tty);
    if (restore)
        tcsetattr(fileno(tty), TCSAFLUSH, &old);
    fputc('\n', tty);
    fclose(tty);
    if (!got)
        return NULL;
    line[strcspn(line, "\r\n")] = '\0';
    char *pw = cf_xstrdup(line);
    sodium_memzero(line, sizeof line);
    return pw;
}

static char *esc(struct remote *rm, const char *s)
{
    char *e = curl_easy_escape(rm->curl, s, 0);
    char *copy = cf_xstrdup(e ? e : "");
    curl_free(e);
    return copy;
}

/* One request. `path` starts with '/'. Returns 0 with r->status set (also for 4xx/5xx), or 1
 * when the server could not be reached (already reported). */
static int request(struct remote *rm, const char *method, const char *path, const char *ctype,
                   const char *body, curl_mime *mime, struct resp *r)
{
    memset(r, 0, sizeof(*r));
    cf_buf_init(&r->body);
    CURL *c = rm->curl;
    curl_easy_reset(c);
    char *url = cf_xasprintf("%s%s", rm->base, path);
    char errbuf[CURL_ERROR_SIZE] = "";
    struct curl_slist *h = NULL;
    h = curl_slist_append(h, "Accept: application/json");
    if (ctype) {
        char *line = cf_xasprintf("Content-Type: %s", ctype);
        h = curl_slist_append(h, line);
        free(line);
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, rm->timeout_s);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r->body);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "certflow-cli/0.1.0");
    if (rm->cacert)
        curl_easy_setopt(c, CURLOPT_CAINFO, rm->cacert);
    if (rm->cert) {
        curl_easy_setopt(c, CURLOPT_SSLCERT, rm->cert);
        curl_easy_setopt(c, CURLOPT_SSLKEY, rm->key ? rm->key : rm->cert);
    }
    if (rm->user) {
        curl_easy_setopt(c, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        curl_easy_setopt(c, CURLOPT_USERNAME, rm->user);
        curl_easy_setopt(c, CURLOPT_PASSWORD, rm->password ? rm->password : "");
    }
    if (mime) {
        curl_easy_setopt(c, CURLOPT_MIMEPOST, mime);
    } else if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    }
    if (strcmp(method, "GET") != 0 && strcmp(method, "POST") != 0)
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    else if (strcmp(method, "POST") == 0 && !body && !mime)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, "");
    CURLcode cc = curl_easy_perform(c);
    curl_slist_free_all(h);
    if (cc != CURLE_OK) {
        fprintf(stderr, "certflow: %s: %s\n", url, errbuf[0] ? errbuf : curl_easy_strerror(cc));
        free(url);
        return 1;
    }
    free(url);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    if (r->body.len)
        r->json = json_loadb(r->body.data, r->body.len, JSON_DECODE_ANY, NULL);
    return 0;
}

/* Reports an error answer: "certflow: HTTP 404 NotFoundException: message". Returns 1. */
static int api_error(const struct resp *r, const char *what)
{
    const char *type = json_string_value(json_object_get(r->json, "type"));
    const char *msg = json_string_value(json_object_get(r->json, "message"));
    if (r->status == 401)
        fprintf(stderr, "certflow: %s: HTTP 401: not authenticated (give --user or --cert)\n",
                what);
    else if (msg)
        fprintf(stderr, "certflow: %s: HTTP %ld %s: %s\n", what, r->status, type ? type : "", msg);
    else
        fprintf(stderr, "certflow: %s: HTTP %ld\n", what, r->status);
    return 1;
}

static void print_json(json_t *j)
{
    char *text = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    printf("%s\n", text ? text : "null");
    free(text);
}

/* A member as text for tables: strings as they are, null as "-", others as JSON. */
static const char *field(json_t *o, const char *k, char *buf, size_t len)
{
    json_t *v = json_object_get(o, k);
    if (!v || json_is_null(v))
        return "-";
    if (json_is_string(v))
        return json_string_value(v);
    char *t = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    snprintf(buf, len, "%s", t ? t : "?");
    free(t);
    return buf;
}

/* Up to eight fields may be formatted for one printf: each gets its own buffer of the ring. */
struct fbufs {
    char b[8][256];
    unsigned i;
};

static const char *fld(struct fbufs *f, json_t *o, const char *k)
{
    char *buf = f->b[f->i++ % 8];
    return field(o, k, buf, sizeof f->b[0]);
}

#define F(o, k) fld(&fb, (o), (k))

/* ---- arguments ----------------------------------------------------------------------------- */

struct args {
    const char *pos[MAX_ARGS];
    size_t n_pos;
    const char *opt_name[MAX_ARGS];
    const char *opt_value[MAX_ARGS];
    size_t n_opt;
};

static const char *opt(const struct args *a, const char *name)
{
    const char *v = NULL;
    for (size_t i = 0; i < a->n_opt; i++)
        if (strcmp(a->opt_name[i], name) == 0)
            v = a->opt_value[i] ? a->opt_value[i] : "";
    return v;
}

/* Only the options a command knows; anything else is a usage error. */
static void allow_opts(const struct args *a, const char *cmd, const char *const *known)
{
    for (size_t i = 0; i < a->n_opt; i++) {
        bool ok = false;
        for (const char *const *k = known; k && *k && !ok; k++)
            ok = strcmp(*k, a->opt_name[i]) == 0;
        if (!ok)
            usage("%s: unknown option %s", cmd, a->opt_name[i]);
    }
}

static char *query_add(char *q, struct remote *rm, const char *name, const char *value)
{
    if (!value)
        return q;
    char *e = esc(rm, value);
    char *n = cf_xasprintf("%s%c%s=%s", q, strchr(q, '?') ? '&' : '?', name, e);
    free(e);
    free(q);
    return n;
}

/* ---- status -------------------------------------------------------------------------------- */

static int cmd_status(struct remote *rm, const struct args *a)
{
    allow_opts(a, "status", NULL);
    struct resp ready, ver;
    if (request(rm, "GET", "/health/ready", NULL, NULL, NULL, &ready))
        return 1;
    bool have_ver = !request(rm, "GET", "/engine-rest/version", NULL, NULL, NULL, &ver);
    bool up = ready.status == 200;
    if (rm->json) {
        json_t *o =
            json_pack("{s:s, s:b, s:O?, s:O?}", "url", rm->base, "ready", up, "health", ready.json,
                      "version", have_ver && ver.status == 200 ? ver.json : NULL);
        print_json(o);
        json_decref(o);
    } else {
        struct fbufs fb = {.i = 0};
        printf("certflowd at %s: %s\n", rm->base, up ? "ready" : "NOT READY");
        json_t *checks = json_object_get(ready.json, "checks");
        const char *k;
        json_t *v;
        json_object_foreach(checks, k, v)
        {
            printf("  %-12s %s", k, F(v, "status"));
            if (json_object_get(v, "reason"))
                printf(": %s", F(v, "reason"));
            printf("\n");
        }
        if (have_ver && ver.status == 200)
            printf("  version      certflow %s, Camunda REST %s\n", F(ver.json, "certflowVersion"),
                   F(ver.json, "version"));
        else if (have_ver)
            printf("  version      unknown (HTTP %ld)\n", ver.status);
    }
    if (!up && ready.status != 503)
        api_error(&ready, "status");
    resp_free(&ready);
    if (have_ver)
        resp_free(&ver);
    return up ? 0 : 1;
}

/* ---- deploy -------------------------------------------------------------------------------- */

static void mime_text(curl_mime *m, const char *name, const char *value)
{
    curl_mimepart *p = curl_mime_addpart(m);
    curl_mime_name(p, name);
    curl_mime_data(p, value, CURL_ZERO_TERMINATED);
}

static int cmd_deploy(struct remote *rm, const struct args *a)
{
    static const char *const known[] = {"--name", NULL};
    allow_opts(a, "deploy", known);
    if (a->n_pos < 1)
        usage("deploy needs at least one FILE");
    for (size_t i = 0; i < a->n_pos; i++)
        if (access(a->pos[i], R_OK) != 0)
            usage("deploy: cannot read %s: %s", a->pos[i], strerror(errno));
    const char *first = strrchr(a->pos[0], '/') ? strrchr(a->pos[0], '/') + 1 : a->pos[0];
    curl_mime *m = curl_mime_init(rm->curl);
    mime_text(m, "deployment-name", opt(a, "--name") ? opt(a, "--name") : first);
    mime_text(m, "deployment-source", "certflow CLI");
    mime_text(m, "enable-duplicate-filtering", "true");
    if (rm->tenant)
        mime_text(m, "tenant-id", rm->tenant);
    for (size_t i = 0; i < a->n_pos; i++) {
        const char *base = strrchr(a->pos[i], '/') ? strrchr(a->pos[i], '/') + 1 : a->pos[i];
        curl_mimepart *p = curl_mime_addpart(m);
        curl_mime_name(p, base);
        curl_mime_filedata(p, a->pos[i]);
        curl_mime_filename(p, base);
        curl_mime_type(p, "text/xml");
    }
    struct resp r;
    int rc = request(rm, "POST", "/engine-rest/deployment/create", NULL, NULL, m, &r);
    curl_mime_free(m);
    if (rc)
        return 1;
    if (r.status != 200) {
        const char *msg = json_string_value(json_object_get(r.json, "message"));
        if (r.status == 400 && msg && strncmp(msg, "ENGINE-09005", 12) == 0) {
            /* The problem list, one line per problem, as `certflow validate` prints it. */
            fprintf(stderr, "certflow: deploy refused:\n%s\n", msg);
            rc = 1;
        } else {
            rc = api_error(&r, "deploy");
        }
        if (rm->json && r.json)
            print_json(r.json);
        resp_free(&r);
        return rc;
    }
    if (rm->json) {
        print_json(r.json);
    } else {
        struct fbufs fb = {.i = 0};
        json_t *defs = json_object_get(r.json, "deployedProcessDefinitions");
        printf("deployment %s (tenant %s)", F(r.json, "id"), F(r.json, "tenantId"));
        if (!json_object_size(defs)) {
            printf(": no changes, nothing new deployed\n");
        } else {
            printf(":\n");
            const char *k;
            json_t *d;
            json_object_foreach(defs, k, d)
            {
                printf("  %s version %s (definition %s, %s)\n", F(d, "key"), F(d, "version"),
                       F(d, "id"), F(d, "resource"));
            }
        }
    }
    resp_free(&r);
    return 0;
}

/* ---- list ---------------------------------------------------------------------------------- */

static int get_json(struct remote *rm, const char *path, const char *what, struct resp *r)
{
    if (request(rm, "GET", path, NULL, NULL, NULL, r))
        return 1;
    if (r->status != 200 || !r->json) {
        int rc = api_error(r, what);
        resp_free(r);
        return rc;
    }
    return 0;
}

static int cmd_list(struct remote *rm, const struct args *a)
{
    if (a->n_pos != 1)
        usage("list needs one of pd, pi, inc");
    const char *what = a->pos[0];
    char *path = NULL;
    if (strcmp(what, "pd") == 0) {
        static const char *const known[] = {"--key", "--latest", NULL};
        allow_opts(a, "list pd", known);
        path = cf_xstrdup("/engine-rest/process-definition");
        path = query_add(path, rm, "key", opt(a, "--key"));
        path = query_add(path, rm, "latestVersion", opt(a, "--latest") ? "true" : NULL);
    } else if (strcmp(what, "pi") == 0) {
        static const char *const known[] = {"--key", "--business-key", "--all", NULL};
        allow_opts(a, "list pi", known);
        path = cf_xstrdup("/engine-rest/history/process-instance");
        path = query_add(path, rm, "processDefinitionKey", opt(a, "--key"));
        path = query_add(path, rm, "businessKey", opt(a, "--business-key"));
        path = query_add(path, rm, "unfinished", opt(a, "--all") ? NULL : "true");
    } else if (strcmp(what, "inc") == 0) {
        static const char *const known[] = {"--instance", "--type", NULL};
        allow_opts(a, "list inc", known);
        path = cf_xstrdup("/engine-rest/incident");
        path = query_add(path, rm, "processInstanceId", opt(a, "--instance"));
        path = query_add(path, rm, "incidentType", opt(a, "--type"));
    } else {
        usage("list: '%s' is not one of pd, pi, inc", what);
    }
    path = query_add(path, rm, "tenantIdIn", rm->tenant);
    struct resp r;
    int rc = get_json(rm, path, "list", &r);
    free(path);
    if (rc)
        return rc;
    if (rm->json) {
        print_json(r.json);
        resp_free(&r);
        return 0;
    }
    struct fbufs fb = {.i = 0};
    size_t i;
    json_t *o;
    if (strcmp(what, "pd") == 0) {
        printf("%-8s %-32s %-7s %-12s %s\n", "ID", "KEY", "VERSION", "TENANT", "NAME");
        json_array_foreach(r.json, i, o)
        {
            fb.i = 0;
            printf("%-8s %-32s %-7s %-12s %s\n", F(o, "id"), F(o, "key"), F(o, "version"),
                   F(o, "tenantId"), F(o, "name"));
        }
    } else if (strcmp(what, "pi") == 0) {
        printf("%-8s %-28s %-20s %-21s %-12s %s\n", "ID", "KEY", "BUSINESS-KEY", "STATE", "TENANT",
               "STARTED");
        json_array_foreach(r.json, i, o)
        {
            fb.i = 0;
            printf("%-8s %-28s %-20s %-21s %-12s %s\n", F(o, "id"), F(o, "processDefinitionKey"),
                   F(o, "businessKey"), F(o, "state"), F(o, "tenantId"), F(o, "startTime"));
        }
    } else {
        printf("%-8s %-9s %-24s %-18s %-6s %s\n", "ID", "INSTANCE", "ACTIVITY", "TYPE", "JOB",
               "MESSAGE");
        json_array_foreach(r.json, i, o)
        {
            fb.i = 0;
            printf("%-8s %-9s %-24s %-18s %-6s %s\n", F(o, "id"), F(o, "processInstanceId"),
                   F(o, "activityId"), F(o, "incidentType"), F(o, "configuration"),
                   F(o, "incidentMessage"));
        }
    }
    if (!json_array_size(r.json))
        printf("(none)\n");
    resp_free(&r);
    return 0;
}

/* ---- get pi -------------------------------------------------------------------------------- */

static int cmd_get(struct remote *rm, const struct args *a)
{
    allow_opts(a, "get", NULL);
    if (a->n_pos != 2 || strcmp(a->pos[0], "pi") != 0)
        usage("get needs: pi ID");
    char *id = esc(rm, a->pos[1]);
    char *p1 = cf_xasprintf("/engine-rest/history/process-instance/%s", id);
    char *p2 = cf_xasprintf("/engine-rest/history/"
                            "activity-instance?processInstanceId=%s&sortBy=startTime&sortOrder=asc",
                            id);
    char *p3 = cf_xasprintf("/engine-rest/history/variable-instance?processInstanceId=%s", id);
    char *p4 = cf_xasprintf("/engine-rest/incident?processInstanceId=%s", id);
    free(id);
    struct resp inst, acts, vars, incs;
    int rc = get_json(rm, p1, "get pi", &inst);
    if (!rc && (rc = get_json(rm, p2, "get pi", &acts)))
        resp_free(&inst);
    if (!rc && (rc = get_json(rm, p3, "get pi", &vars))) {
        resp_free(&inst);
        resp_free(&acts);
    }
    if (!rc && (rc = get_json(rm, p4, "get pi", &incs))) {
        resp_free(&inst);
        resp_free(&acts);
        resp_free(&vars);
    }
    free(p1);
    free(p2);
    free(p3);
    free(p4);
    if (rc)
        return rc;
    if (rm->json) {
        json_t *o = json_pack("{s:O, s:O, s:O, s:O}", "instance", inst.json, "activities",
                              acts.json, "variables", vars.json, "incidents", incs.json);
        print_json(o);
        json_decref(o);
    } else {
        struct fbufs fb = {.i = 0};
        json_t *o = inst.json;
        printf("instance %s of %s (definition %s), business key %s, tenant %s\n", F(o, "id"),
               F(o, "processDefinitionKey"), F(o, "processDefinitionId"), F(o, "businessKey"),
               F(o, "tenantId"));
        fb.i = 0;
        printf("state: %s, started %s, ended %s\n", F(o, "state"), F(o, "startTime"),
               F(o, "endTime"));
        size_t i;
        json_t *e;
        printf("activities:\n");
        json_array_foreach(acts.json, i, e)
        {
            fb.i = 0;
            bool ended = !json_is_null(json_object_get(e, "endTime"));
            printf("  %-28s %-24s %s\n", F(e, "activityId"), F(e, "activityType"),
                   !ended                                         ? "active"
                   : json_is_true(json_object_get(e, "canceled")) ? "canceled"
                                                                  : "completed");
        }
        printf("variables:\n");
        json_array_foreach(vars.json, i, e)
        {
            fb.i = 0;
            printf("  %s = %s  (%s)\n", F(e, "name"), F(e, "value"), F(e, "type"));
        }
        if (!json_array_size(vars.json))
            printf("  (none)\n");
        printf("incidents:\n");
        json_array_foreach(incs.json, i, e)
        {
            fb.i = 0;
            printf("  incident %s at %s (%s, job %s): %s\n", F(e, "id"), F(e, "activityId"),
                   F(e, "incidentType"), F(e, "configuration"), F(e, "incidentMessage"));
        }
        if (!json_array_size(incs.json))
            printf("  (none)\n");
    }
    resp_free(&inst);
    resp_free(&acts);
    resp_free(&vars);
    resp_free(&incs);
    return 0;
}

/* ---- start --------------------------------------------------------------------------------- */

/* NAME[:TYPE]=VALUE into Camunda's {value, type}; the server checks the value. */
static void add_var(json_t *vars, const char *arg)
{
    const char *eq = strchr(arg, '=');
    if (!eq || eq == arg)
        usage("--var needs NAME=VALUE or NAME:TYPE=VALUE, got '%s'", arg);
    char *name = cf_xstrndup(arg, (size_t)(eq - arg));
    const char *type = "String";
    char *colon = strchr(name, ':');
    if (colon) {
        *colon = '\0';
        type = colon + 1;
        static const char *const types[] = {"String",  "Long", "Integer", "Double",
                                            "Boolean", "Date", "Json",    "Null"};
        bool ok = false;
        for (size_t i = 0; i < CF_ARRAY_LEN(types) && !ok; i++)
            ok = strcasecmp(type, types[i]) == 0;
        if (!ok)
            usage("--var %s: unknown type '%s' (String, Long, Double, Boolean, Date, Json, Null)",
                  name, type);
    }
    json_t *value = strcasecmp(type, "Null") == 0 ? json_null() : json_string(eq + 1);
    if (!value)
        usage("--var %s: the value is not valid UTF-8", name);
    json_object_set_new(vars, name, json_pack("{s:o, s:s}", "value", value, "type", type));
    free(name);
}

static int cmd_start(struct remote *rm, const struct args *a)
{
    static const char *const known[] = {"--var", "--business-key", NULL};
    allow_opts(a, "start", known);
    if (a->n_pos != 1)
        usage("start needs one process KEY");
    json_t *vars = json_object();
    for (size_t i = 0; i < a->n_opt; i++)
        if (strcmp(a->opt_name[i], "--var") == 0)
            add_var(vars, a->opt_value[i]);
    json_t *body = json_pack("{s:o}", "variables", vars);
    if (opt(a, "--business-key"))
        json_object_set_new(body, "businessKey", json_string(opt(a, "--business-key")));
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    char *key = esc(rm, a->pos[0]);
    char *path;
    if (rm->tenant) {
        char *t = esc(rm, rm->tenant);
        path = cf_xasprintf("/engine-rest/process-definition/key/%s/tenant-id/%s/start", key, t);
        free(t);
    } else {
        path = cf_xasprintf("/engine-rest/process-definition/key/%s/start", key);
    }
    free(key);
    struct resp r;
    int rc = request(rm, "POST", path, "application/json", text, NULL, &r);
    free(path);
    free(text);
    if (rc)
        return 1;
    if (r.status != 200) {
        rc = api_error(&r, "start");
        resp_free(&r);
        return rc;
    }
    if (rm->json) {
        print_json(r.json);
    } else {
        struct fbufs fb = {.i = 0};
        printf("instance %s of %s started (%s)\n", F(r.json, "id"), a->pos[0],
               json_is_true(json_object_get(r.json, "ended")) ? "already ended" : "running");
    }
    resp_free(&r);
    return 0;
}

/* ---- cancel, retry ------------------------------------------------------------------------- */

/* A mutation answered with 204: prints `done` (or {} with -o json). */
static int mutation(struct remote *rm, const char *method, const char *path, const char *body,
                    const char *what, const char *done)
{
    struct resp r;
    if (request(rm, method, path, body ? "application/json" : NULL, body, NULL, &r))
        return 1;
    int rc = 0;
    if (r.status / 100 != 2)
        rc = api_error(&r, what);
    else if (rm->json)
        print_json(r.json ? r.json : json_object());
    else
        printf("%s\n", done);
    resp_free(&r);
    return rc;
}

static int cmd_cancel(struct remote *rm, const struct args *a)
{
    allow_opts(a, "cancel", NULL);
    if (a->n_pos != 1)
        usage("cancel needs one instance ID");
    char *id = esc(rm, a->pos[0]);
    char *path = cf_xasprintf("/engine-rest/process-instance/%s", id);
    char *done = cf_xasprintf("instance %s canceled", a->pos[0]);
    int rc = mutation(rm, "DELETE", path, NULL, "cancel", done);
    free(id);
    free(path);
    free(done);
    return rc;
}

static int cmd_retry(struct remote *rm, const struct args *a)
{
    static const char *const known[] = {"--job", "--retries", NULL};
    allow_opts(a, "retry", known);
    const char *job = opt(a, "--job");
    const char *rs = opt(a, "--retries");
    int64_t retries = 1;
    if (rs && (cf_parse_i64(rs, &retries) != 0 || retries < 1 || retries > 1000))
        usage("--retries needs a number from 1 to 1000");
    if ((job && a->n_pos != 0) || (!job && a->n_pos != 1))
        usage("retry needs one INCIDENT id, or --job ID");
    char *id = esc(rm, job ? job : a->pos[0]);
    char *body = cf_xasprintf("{\"retries\":%lld}", (long long)retries);
    char *path = job ? cf_xasprintf("/engine-rest/job/%s/retries", id)
                     : cf_xasprintf("/api/v1/incidents/%s/retry", id);
    char *done = job ? cf_xasprintf("job %s: %lld retries; its incident is resolved", job,
                                    (long long)retries)
                     : cf_xasprintf("incident %s retried", a->pos[0]);
    int rc = mutation(rm, job ? "PUT" : "POST", path, body, "retry", done);
    free(id);
    free(body);
    free(path);
    free(done);
    return rc;
}

/* ---- params -------------------------------------------------------------------------------- */

static char *read_stdin(void)
{
    struct cf_buf b;
    cf_buf_init(&b);
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, stdin)) > 0)
        cf_buf_append(&b, chunk, n);
    while (b.len && (b.data[b.len - 1] == '\n' || b.data[b.len - 1] == '\r'))
        b.data[--b.len] = '\0';
    return cf_buf_steal(&b);
}

static int cmd_params(struct remote *rm, const struct args *a)
{
    static const char *const known[] = {"--stdin", NULL};
    allow_opts(a, "params", known);
    if (a->n_pos < 2)
        usage("params needs a verb (list, get, set, unset) and a process KEY");
    const char *verb = a->pos[0];
    bool from_stdin = opt(a, "--stdin") != NULL;
    size_t want = strcmp(verb, "set") == 0 ? (from_stdin ? 4 : 5) : 4;
    if (strcmp(verb, "list") == 0) {
        if (a->n_pos > 3)
            usage("params list KEY [ACTIVITY]");
    } else if (strcmp(verb, "get") == 0 || strcmp(verb, "set") == 0 || strcmp(verb, "unset") == 0) {
        if (a->n_pos != want)
            usage("params %s KEY ACTIVITY NAME%s", verb,
                  strcmp(verb, "set") == 0 ? " (VALUE | --stdin)" : "");
    } else {
        usage("params: unknown verb '%s' (list, get, set, unset)", verb);
    }
    char *path = cf_xstrdup("/api/v1/params");
    for (size_t i = 1; i < a->n_pos && i < 4; i++) {
        char *e = esc(rm, a->pos[i]);
        char *n = cf_xasprintf("%s/%s", path, e);
        free(e);
        free(path);
        path = n;
    }
    path = query_add(path, rm, "tenantId", rm->tenant);
    int rc;
    if (strcmp(verb, "set") == 0) {
        char *value = from_stdin ? read_stdin() : cf_xstrdup(a->pos[4]);
        json_t *b = json_pack("{s:s%}", "value", value, strlen(value));
        char *text = b ? json_dumps(b, JSON_COMPACT) : NULL;
        json_decref(b);
        sodium_memzero(value, strlen(value));
        free(value);
        if (!text)
            usage("params set: the value is not valid UTF-8");
        struct resp r;
        rc = request(rm, "PUT", path, "application/json", text, NULL, &r);
        sodium_memzero(text, strlen(text));
        free(text);
        if (!rc) {
            if (r.status != 200)
                rc = api_error(&r, "params set");
            else if (rm->json)
                print_json(r.json);
            else
                printf("%s %s %s set\n", a->pos[1], a->pos[2], a->pos[3]);
            resp_free(&r);
        }
    } else if (strcmp(verb, "unset") == 0) {
        char *done = cf_xasprintf("%s %s %s unset", a->pos[1], a->pos[2], a->pos[3]);
        rc = mutation(rm, "DELETE", path, NULL, "params unset", done);
        free(done);
    } else {
        struct resp r;
        rc = get_json(rm, path, strcmp(verb, "get") == 0 ? "params get" : "params list", &r);
        if (!rc) {
            struct fbufs fb = {.i = 0};
            json_t *values = json_is_array(r.json) ? r.json : json_object_get(r.json, "values");
            if (rm->json) {
                print_json(r.json);
            } else if (strcmp(verb, "get") == 0) {
                printf("%s\n", F(r.json, "value"));
            } else {
                size_t i;
                json_t *o;
                json_array_foreach(values, i, o)
                {
                    fb.i = 0;
                    printf("%s %s=%s\n", F(o, "activityId"), F(o, "name"), F(o, "value"));
                }
                if (!json_array_size(values))
                    printf("(no admin values)\n");
            }
            resp_free(&r);
        }
    }
    free(path);
    return rc;
}

/* ---- certs --------------------------------------------------------------------------------- */

static int cmd_certs(struct remote *rm, const struct args *a)
{
    const char *verb = a->n_pos ? a->pos[0] : "list";
    if (strcmp(verb, "get") == 0) {
        static const char *const known[] = {"--pem", NULL};
        allow_opts(a, "certs get", known);
        if (a->n_pos != 2)
            usage("certs get needs one certificate ID");
        char *id = esc(rm, a->pos[1]);
        bool pem = opt(a, "--pem") != NULL;
        char *path = cf_xasprintf("/api/v1/certificates/%s%s", id, pem ? "/pem" : "");
        free(id);
        struct resp r;
        int rc = request(rm, "GET", path, NULL, NULL, NULL, &r);
        free(path);
        if (rc)
            return 1;
        if (r.status != 200) {
            rc = api_error(&r, "certs get");
        } else if (pem) {
            fwrite(r.body.data, 1, r.body.len, stdout);
        } else if (rm->json) {
            print_json(r.json);
        } else {
            struct fbufs fb = {.i = 0};
            static const char *const keys[] = {
                "id",     "tenantId",          "template", "serial", "subject",
                "issuer", "notBefore",         "notAfter", "sha256", "status",
                "source", "processInstanceId", "createdAt"};
            for (size_t i = 0; i < CF_ARRAY_LEN(keys); i++) {
                fb.i = 0;
                printf("%-18s %s\n", keys[i], F(r.json, keys[i]));
            }
        }
        resp_free(&r);
        return rc;
    }
    if (strcmp(verb, "list") != 0 || a->n_pos > 1)
        usage("certs [list] [options] or certs get ID [--pem]");
    static const char *const known[] = {"--template", "--serial", "--subject",
                                        "--status",   "--limit",  NULL};
    allow_opts(a, "certs", known);
    char *path = cf_xstrdup("/api/v1/certificates");
    path = query_add(path, rm, "tenantId", rm->tenant);
    path = query_add(path, rm, "template", opt(a, "--template"));
    path = query_add(path, rm, "serial", opt(a, "--serial"));
    path = query_add(path, rm, "subject", opt(a, "--subject"));
    path = query_add(path, rm, "status", opt(a, "--status"));
    path = query_add(path, rm, "maxResults", opt(a, "--limit"));
    struct resp r;
    int rc = get_json(rm, path, "certs", &r);
    free(path);
    if (rc)
        return rc;
    if (rm->json) {
        print_json(r.json);
    } else {
        struct fbufs fb = {.i = 0};
        size_t i;
        json_t *o;
        printf("%-8s %-26s %-8s %-12s %-25s %s\n", "ID", "SERIAL", "STATUS", "TEMPLATE",
               "NOT-AFTER", "SUBJECT");
        json_array_foreach(r.json, i, o)
        {
            fb.i = 0;
            printf("%-8s %-26s %-8s %-12s %-25s %s\n", F(o, "id"), F(o, "serial"), F(o, "status"),
                   F(o, "template"), F(o, "notAfter"), F(o, "subject"));
        }
        if (!json_array_size(r.json))
            printf("(none)\n");
    }
    resp_free(&r);
    return 0;
}

/* ---- entry --------------------------------------------------------------------------------- */

int cf_cli_remote(int argc, char **argv)
{
    struct remote rm = {.timeout_s = 60};
    struct args a = {0};
    const char *url = NULL, *cmd = NULL;
    /* Global options may stand before or after the command; the rest belongs to it. */
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        const char *v = NULL;
        char *eq = NULL;
        if (strncmp(s, "--", 2) == 0 && (eq = strchr(s, '='))) {
            static char names[MAX_ARGS][32];
            size_t nl =
                (size_t)(eq - s) < sizeof names[0] - 1 ? (size_t)(eq - s) : sizeof names[0] - 1;
            memcpy(names[i % MAX_ARGS], s, nl);
            names[i % MAX_ARGS][nl] = '\0';
            v = eq + 1;
            s = names[i % MAX_ARGS];
        } else if (s[0] == '-' && s[1] && takes_value(s)) {
            if (i + 1 >= argc)
                usage("%s needs a value", s);
            v = argv[++i];
        }
        if (strcmp(s, "--password") == 0 || strcmp(s, "-p") == 0)
            usage("passwords are never taken from the command line: set CERTFLOW_PASSWORD or "
                  "answer the prompt");
        if (strcmp(s, "--url") == 0)
            url = v;
        else if (strcmp(s, "--cert") == 0)
            rm.cert = v;
        else if (strcmp(s, "--key") == 0 && !cmd)
            rm.key = v;
        else if (strcmp(s, "--key") == 0 && cmd && strcmp(cmd, "list") != 0)
            rm.key = v;
        else if (strcmp(s, "--cacert") == 0)
            rm.cacert = v;
        else if (strcmp(s, "--user") == 0)
            rm.user = v;
        else if (strcmp(s, "-o") == 0 || strcmp(s, "--output") == 0) {
            if (strcmp(v, "json") != 0 && strcmp(v, "table") != 0)
                usage("-o is json or table");
            rm.json = strcmp(v, "json") == 0;
        } else if (strcmp(s, "--tenant") == 0)
            rm.tenant = v;
        else if (strcmp(s, "--timeout") == 0) {
            int64_t t;
            if (cf_parse_i64(v, &t) != 0 || t < 1 || t > 3600)
                usage("--timeout needs seconds from 1 to 3600");
            rm.timeout_s = (long)t;
        } else if (strcmp(s, "--plugins") == 0 || strcmp(s, "--log-level") == 0) {
            /* Meaningful for local commands only. */
        } else if (strcmp(s, "--help") == 0 || strcmp(s, "-h") == 0) {
            fputs(remote_usage, stdout);
            return 0;
        } else if (s[0] == '-' && s[1]) {
            if (a.n_opt >= MAX_ARGS)
                usage("too many options");
            a.opt_name[a.n_opt] = s;
            a.opt_value[a.n_opt++] = v;
        } else if (!cmd) {
            cmd = s;
        } else {
            if (a.n_pos >= MAX_ARGS)
                usage("too many arguments");
            a.pos[a.n_pos++] = s;
        }
    }
    if (!cmd)
        usage("no command given");
    if (strcmp(cmd, "help") == 0) {
        fputs(remote_usage, stdout);
        return 0;
    }
    if (!url)
        url = getenv("CERTFLOW_URL");
    if (!url || !*url)
        usage("--url (or $CERTFLOW_URL) is needed for %s", cmd);
    if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0)
        usage("--url must start with http:// or https://");
    if (rm.key && !rm.cert)
        usage("--key goes with --cert");
    /* The base is the daemon's root; a Camunda-style .../engine-rest is accepted too. */
    rm.base = cf_xstrdup(url);
    size_t bl = strlen(rm.base);
    while (bl && rm.base[bl - 1] == '/')
        rm.base[--bl] = '\0';
    if (bl >= 12 && strcmp(rm.base + bl - 12, "/engine-rest") == 0)
        rm.base[bl - 12] = '\0';
    if (rm.user) {
        const char *env = getenv("CERTFLOW_PASSWORD");
        rm.password = env ? cf_xstrdup(env) : prompt_password(rm.user);
        if (!rm.password) {
            fprintf(stderr,
                    "certflow: no password for %s: set CERTFLOW_PASSWORD or run on a "
                    "terminal\n",
                    rm.user);
            free(rm.base);
            return 2;
        }
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK || !(rm.curl = curl_easy_init())) {
        fprintf(stderr, "certflow: libcurl cannot be initialised\n");
        free(rm.base);
        return 1;
    }
    int rc;
    if (strcmp(cmd, "status") == 0) {
        if (a.n_pos)
            usage("status takes no arguments");
        rc = cmd_status(&rm, &a);
    } else if (strcmp(cmd, "deploy") == 0)
        rc = cmd_deploy(&rm, &a);
    else if (strcmp(cmd, "list") == 0)
        rc = cmd_list(&rm, &a);
    else if (strcmp(cmd, "get") == 0)
        rc = cmd_get(&rm, &a);
    else if (strcmp(cmd, "start") == 0)
        rc = cmd_start(&rm, &a);
    else if (strcmp(cmd, "cancel") == 0)
        rc = cmd_cancel(&rm, &a);
    else if (strcmp(cmd, "retry") == 0)
        rc = cmd_retry(&rm, &a);
    else if (strcmp(cmd, "params") == 0)
        rc = cmd_params(&rm, &a);
    else if (strcmp(cmd, "certs") == 0)
        rc = cmd_certs(&rm, &a);
    else
        usage("'%s' runs locally: leave out --url (and $CERTFLOW_URL)", cmd);
    curl_easy_cleanup(rm.curl);
    curl_global_cleanup();
    if (rm.password) {
        sodium_memzero(rm.password, strlen(rm.password));
        free(rm.password);
    }
    free(rm.base);
    return rc;
}
