/*
 * The PKCS#10 tasks of Smart ID Identity Manager, on certflow's "ca" service (plugin.h):
 *   executePKCS10RequestTask          "Cert: Execute PKCS10 Request": sends the PKCS#10 request
 *                                     held in a process variable to the CA of a certificate
 *                                     template; the certificate is stored as a certificate core
 *                                     object and added to the process variables.
 *   executeModifiedPKCS10RequestTask  the same, except that the certificate's subject and SANs
 *                                     come from process variables named by its parameters, not
 *                                     from the CSR, which still proves possession of the key. Its
 *                                     old name executePlainRequestTask is an alias (deprecated;
 *                                     the engine warns at deploy).
 *
 * Results. P10RequestFormResult gets the certificate as Bytes, whatever booleanResultWithPEMHeaders
 * says: the DER, or the UTF-8 bytes of the PEM text with its "-----BEGIN CERTIFICATE-----" header
 * ("the utf-8 bytes of a PEM encoded certificate", as Smart ID documents it). Keeping one type
 * means a process does not change shape when an admin flips the flag, and a Camunda client reads
 * the same byte[] it would from Identity Manager. P7ResponseField gets the chain (certificate,
 * issuing CA, root) as a DER PKCS#7 certs-only container, Bytes. certificateIdField (a certflow
 * addition, default "certificateId") gets the id of the stored certificate core object, Long.
 *
 * Errors, with the meaning Smart ID gives them:
 *   CommonError         no valid request could be made: the CSR variable is missing, of another
 *                       type, empty or not a CSR, its signature does not verify, the template does
 *                       not exist or is broken, or the subject or SAN variables are unusable;
 *   CaRequestFailed     the CA said no (key type or size, subject or SAN policy, ...);
 *   CaConnectionFailed  the CA could not be reached or talked to. That failure is transient, so
 *                       the call fails retryably while its job has attempts left (the activity's
 *                       camunda:failedJobRetryTimeCycle, default R3/PT5M) and throws the error on
 *                       the last attempt, for the process's boundary event.
 * A configuration mistake the engine could not see at deploy — the modified task on a template
 * whose connector cannot carry a modified request (cmp and cm-rest send the CSR as signed), or
 * no subject or SAN field at all — fails the call without retry, which raises an incident that
 * says so; there is no deploy hook in the ABI, so that check happens at call time.
 *
 * Retries and crashes never issue twice: the "ca" service keys every request with the step's
 * idempotency key and returns the certificate already stored for it. Nothing here logs the CSR or
 * the certificate (neither holds a secret, but logs are not the place for them); no private key
 * ever passes through this task.
 */
#include <certflow/plugin.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PKCS10_VERSION "0.1.0"

/* Messages handed to the host are copied by it, so a buffer on the stack is enough. */
#define MSG_MAX 1024

/* At most this many SANs of one type are read from a variable; the template's own limit (at most
 * 1000) is checked by the CA. */
#define SAN_LIST_MAX 1000

CF_PLUGIN_EXPORT const struct cf_module *cf_plugin_init(const struct cf_host *host);

static const char *const bool_values[] = {"true", "false", NULL};
static const char *const error_codes[] = {"CaConnectionFailed", "CaRequestFailed", "CommonError",
                                          NULL};

/* The variables of the modified task, in the order of struct cf_ca_override's lists. */
enum { F_SUBJECT, F_DNS, F_IP, F_EMAIL, F_URI, F_N };
static const char *const field_params[F_N] = {"subjectDNField", "sanDNSField", "sanIPField",
                                              "sanEmailField", "sanURIField"};

/* The modified task's parameters: its own F_N first, then those it shares with
 * executePKCS10RequestTask, whose list is the tail of this one. */
static const struct cf_param_def params[] = {
    {
        .size = sizeof(struct cf_param_def),
        .name = "subjectDNField",
        .type = CF_PARAM_VARIABLE,
        .description = "Process variable holding the certificate's subject DN (String), either "
                       "as RFC 4514 text, most specific first (CN=a.example,O=Example,C=SE), or "
                       "in OpenSSL's form (/C=SE/O=Example/CN=a.example); replaces the CSR's "
                       "subject, and an empty value gives an empty subject.",
    },
    {
        .size = sizeof(struct cf_param_def),
        .name = "sanDNSField",
        .type = CF_PARAM_VARIABLE,
        .description = "Process variable holding DNS names for the subject alternative names: a "
                       "String of comma-separated values or a Json array of strings. When any "
                       "SAN field is given, the certificate's SANs are exactly those of the SAN "
                       "fields, not the CSR's.",
    },
    {
        .size = sizeof(struct cf_param_def),
        .name = "sanIPField",
        .type = CF_PARAM_VARIABLE,
        .description = "Process variable holding IP addresses (192.0.2.1, 2001:db8::1) for the "
                       "subject alternative names, as sanDNSField.",
    },
    {
        .size = sizeof(struct cf_param_def),
        .name = "sanEmailField",
        .type = CF_PARAM_VARIABLE,
        .description = "Process variable holding e-mail addresses for the subject alternative "
                       "names, as sanDNSField.",
    },
    {
        .size = sizeof(struct cf_param_def),
        .name = "sanURIField",
        .type = CF_PARAM_VARIABLE,
        .description = "Process variable holding URIs for the subject alternative names, as "
                       "sanDNSField.",
    },
    /* Shared with executePKCS10RequestTask from here on. */
    {
        .size = sizeof(struct cf_param_def),
        .name = "P10RequestFormEntry",
        .type = CF_PARAM_VARIABLE,
        .flags = CF_PARAM_MANDATORY,
        .description = "Process variable containing the PKCS#10 request: the bytes of a PEM or "
                       "binary (DER) CSR file as Bytes, or the PEM text as a String.",
    },
    {
        .size = sizeof(struct cf_param_def),
        .name = "P10RequestFormResult",
        .type = CF_PARAM_VARIABLE,
        .flags = CF_PARAM_MANDATORY,
        .description = "Process variable that receives the certificate as Bytes: its DER, or the "
                       "UTF-8 bytes of its PEM text when booleanResultWithPEMHeaders is true.",
    },
    {
        .size = sizeof(struct cf_param_def),
        .name = "P7ResponseField",
        .type = CF_PARAM_VARIABLE,
        .description = "Process variable that receives the certificate chain (certificate, "
                       "issuing CA, root) as a DER PKCS#7 container (Bytes).",
    },
    {
        .size = sizeof(struct cf_param_def),
        .name = "certTemplate",
        .type = CF_PARAM_STRING,
        .flags = CF_PARAM_MANDATORY,
        .description = "Certificate template name: the CA connection and certificate procedure, "
                       "looked up in the tenant of the process instance (instances without a "
                       "tenant use the tenant 'default').",
    },
    {
        .size = sizeof(struct cf_param_def),
        .name = "booleanResultWithPEMHeaders",
        .type = CF_PARAM_BOOLEAN,
        .valid_values = bool_values,
        .default_value = "false",
        .description = "true: the result is the UTF-8 bytes of a PEM encoded certificate "
                       "(-----BEGIN CERTIFICATE----- ...); false: its DER bytes.",
    },
    {
        .size = sizeof(struct cf_param_def),
        .name = "certificateIdField",
        .type = CF_PARAM_VARIABLE,
        .default_value = "certificateId",
        .description = "certflow: process variable that receives the id of the stored "
                       "certificate core object (Long).",
    },
    {.size = 0, .name = NULL},
};

/* ---- lists of SANs from a variable ---- */

struct list {
    char **items; /* NULL-terminated */
    size_t n;
};

static void list_free(struct list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->items[i]);
    free(l->items);
    l->items = NULL;
    l->n = 0;
}

static int list_add(struct list *l, const char *s, size_t len)
{
    if (l->n >= SAN_LIST_MAX)
        return -1;
    char **grown = realloc(l->items, (l->n + 2) * sizeof(*grown));
    char *copy = malloc(len + 1);
    if (!grown || !copy) {
        free(copy);
        if (grown)
            l->items = grown;
        return -1;
    }
    memcpy(copy, s, len);
    copy[len] = '\0';
    l->items = grown;
    l->items[l->n++] = copy;
    l->items[l->n] = NULL;
    return 0;
}

static const char *skip_ws(const char *p)
{
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    return p;
}

static int hex4(const char *p, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (unsigned)(c - 'A' + 10);
        else
            return -1;
    }
    *out = v;
    return 0;
}

/* Appends the UTF-8 of code point `cp` to buf (at least 4 bytes free). */
static size_t put_utf8(char *buf, unsigned cp)
{
    if (cp < 0x80) {
        buf[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        buf[0] = (char)(0xC0 | (cp >> 6));
        buf[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        buf[0] = (char)(0xE0 | (cp >> 12));
        buf[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        buf[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    buf[0] = (char)(0xF0 | (cp >> 18));
    buf[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    buf[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    buf[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* A JSON array of strings (the text of a Json variable). Returns NULL or what is wrong. */
static const char *parse_json_list(const char *text, struct list *l)
{
    const char *p = skip_ws(text);
    if (*p != '[')
        return "is Json but not an array of strings";
    p = skip_ws(p + 1);
    if (*p == ']')
        return *skip_ws(p + 1) ? "has text after its array" : NULL;
    for (;;) {
        if (*p != '"')
            return "is Json but not an array of strings";
        p++;
        size_t cap = strlen(p) + 1, n = 0;
        char *buf = malloc(cap + 4);
        if (!buf)
            return "cannot be read: out of memory";
        while (*p && *p != '"') {
            if ((unsigned char)*p < 0x20) {
                free(buf);
                return "is not valid Json (a control character inside a string)";
            }
            if (*p != '\\') {
                buf[n++] = *p++;
                continue;
            }
            p++;
            unsigned cp;
            switch (*p) {
            case '"':
            case '\\':
            case '/':
                buf[n++] = *p;
                break;
            case 'b':
                buf[n++] = '\b';
                break;
            case 'f':
                buf[n++] = '\f';
                break;
            case 'n':
                buf[n++] = '\n';
                break;
            case 'r':
                buf[n++] = '\r';
                break;
            case 't':
                buf[n++] = '\t';
                break;
            case 'u':
                if (hex4(p + 1, &cp) != 0) {
                    free(buf);
                    return "is not valid Json (a bad \\u escape)";
                }
                p += 4;
                if (cp >= 0xD800 && cp < 0xDC00) {
                    unsigned lo;
                    if (p[1] != '\\' || p[2] != 'u' || hex4(p + 3, &lo) != 0 || lo < 0xDC00 ||
                        lo > 0xDFFF) {
                        free(buf);
                        return "is not valid Json (a lone UTF-16 surrogate)";
                    }
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    p += 6;
                } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                    free(buf);
                    return "is not valid Json (a lone UTF-16 surrogate)";
                }
                n += put_utf8(buf + n, cp);
                break;
            default:
                free(buf);
                return "is not valid Json (an unknown escape)";
            }
            p++;
        }
        if (*p != '"') {
            free(buf);
            return "is not valid Json (a string without its closing quote)";
        }
        int rc = list_add(l, buf, n);
        free(buf);
        if (rc)
            return "has too many entries";
        p = skip_ws(p + 1);
        if (*p == ']')
            return *skip_ws(p + 1) ? "has text after its array" : NULL;
        if (*p != ',')
            return "is not valid Json (expected ',' or ']')";
        p = skip_ws(p + 1);
    }
}

/* Comma-separated values; blanks around each are dropped, empty entries skipped. */
static const char *parse_csv_list(const char *text, struct list *l)
{
    const char *p = text;
    while (*p) {
        const char *end = strchr(p, ',');
        if (!end)
            end = p + strlen(p);
        const char *a = p, *b = end;
        while (a < b && (*a == ' ' || *a == '\t' || *a == '\n' || *a == '\r'))
            a++;
        while (b > a && (b[-1] == ' ' || b[-1] == '\t' || b[-1] == '\n' || b[-1] == '\r'))
            b--;
        if (b > a && list_add(l, a, (size_t)(b - a)) != 0)
            return "has too many entries";
        p = *end ? end + 1 : end;
    }
    return NULL;
}

static const char *type_name(enum cf_value_type t)
{
    static const char *const names[] = {"Null",    "String", "Long", "Double",
                                        "Boolean", "Bytes",  "Json", "Date"};
    return (unsigned)t < sizeof(names) / sizeof(names[0]) ? names[t] : "value of unknown type";
}

/* ---- the call ---- */

struct state {
    char *result_var;
    char *p7_var;
    char *id_var;
    int pem;
};

static void state_free(struct state *st)
{
    if (!st)
        return;
    free(st->result_var);
    free(st->p7_var);
    free(st->id_var);
    free(st);
}

static char *dup_or_null(const char *s)
{
    if (!s || !*s)
        return NULL;
    size_t n = strlen(s) + 1;
    char *c = malloc(n);
    if (c)
        memcpy(c, s, n);
    return c;
}

static int attempts_left(struct cf_call *call)
{
    const struct cf_host *h = call->host;
    /* ABI 1.0 hosts have no attempts_left: treat every attempt as the last, so that the process
     * sees CaConnectionFailed rather than a retry it cannot see the end of. */
    if (h->size < offsetof(struct cf_host, attempts_left) + sizeof(h->attempts_left) ||
        !h->attempts_left)
        return 1;
    return h->attempts_left(call);
}

static void set_bytes(struct cf_call *call, const char *name, const uint8_t *p, size_t len,
                      int *failed)
{
    struct cf_value v = {.type = CF_VALUE_BYTES, .bytes = p, .len = len};
    if (!*failed && call->host->var_set(call, name, &v) != 0)
        *failed = 1;
}

static void on_issued(struct cf_call *call, const struct cf_ca_result *res, void *arg)
{
    const struct cf_host *h = call->host;
    struct state *st = arg;
    char msg[MSG_MAX];
    const char *why = res->message && *res->message ? res->message : "no reason given";
    switch (res->outcome) {
    case CF_CA_RESULT_OK: {
        int failed = 0;
        if (st->pem)
            set_bytes(call, st->result_var, (const uint8_t *)res->cert_pem, strlen(res->cert_pem),
                      &failed);
        else
            set_bytes(call, st->result_var, res->cert_der, res->cert_der_len, &failed);
        if (st->p7_var && res->chain_p7_len)
            set_bytes(call, st->p7_var, res->chain_p7, res->chain_p7_len, &failed);
        if (st->id_var && !failed) {
            struct cf_value v = {.type = CF_VALUE_LONG, .l = res->certificate_id};
            failed = h->var_set(call, st->id_var, &v) != 0;
        }
        if (failed) {
            /* The certificate is stored; a retry after the parameters are fixed returns it. */
            snprintf(msg, sizeof(msg),
                     "certificate %lld was issued and stored, but the variables named by "
                     "P10RequestFormResult, P7ResponseField or certificateIdField cannot be set",
                     (long long)res->certificate_id);
            h->fail(call, 0, msg);
        } else {
            h->complete(call);
        }
        break;
    }
    case CF_CA_RESULT_COMMON_ERROR:
        h->throw_error(call, "CommonError", why);
        break;
    case CF_CA_RESULT_REQUEST_FAILED:
        h->throw_error(call, "CaRequestFailed", why);
        break;
    case CF_CA_RESULT_CONNECTION_FAILED:
    default:
        if (attempts_left(call) > 1)
            h->fail(call, 1, why);
        else
            h->throw_error(call, "CaConnectionFailed", why);
        break;
    }
    state_free(st);
}

/* Reads the override of the modified task. Returns 0, or -1 after ending the call. */
static int read_override(struct cf_call *call, struct cf_ca_override *ov, struct list lists[F_N],
                         const char *tmpl, const struct cf_ca_service *ca)
{
    const struct cf_host *h = call->host;
    char msg[MSG_MAX];
    const char *names[F_N];
    int any = 0;
    for (int i = 0; i < F_N; i++) {
        names[i] = h->param(call, field_params[i]);
        if (names[i] && !*names[i])
            names[i] = NULL;
        any |= names[i] != NULL;
    }
    if (!any) {
        h->fail(call, 0,
                "executeModifiedPKCS10RequestTask needs at least one of subjectDNField, "
                "sanDNSField, sanIPField, sanEmailField and sanURIField; without them use "
                "executePKCS10RequestTask");
        return -1;
    }
    char why[MSG_MAX] = "";
    int rc = ca->supports_override(call, tmpl, why, sizeof(why));
    if (rc < 0) {
        h->throw_error(call, "CommonError", why[0] ? why : "the certificate template is unusable");
        return -1;
    }
    if (rc == 0) {
        /* The reason names the template and its connector, and what to use instead. */
        h->fail(call, 0, why[0] ? why : "the template cannot carry a modified request");
        return -1;
    }
    for (int i = 0; i < F_N; i++) {
        if (!names[i])
            continue;
        struct cf_value v;
        if (h->var_get(call, names[i], &v) != 0) {
            snprintf(msg, sizeof(msg), "variable '%s' (%s) does not exist", names[i],
                     field_params[i]);
            h->throw_error(call, "CommonError", msg);
            return -1;
        }
        const char *problem = NULL;
        if (i == F_SUBJECT) {
            if (v.type != CF_VALUE_STRING)
                problem = "must be a String holding a DN";
            else
                ov->subject_dn = v.str;
        } else if (v.type == CF_VALUE_STRING) {
            problem = parse_csv_list(v.str, &lists[i]);
        } else if (v.type == CF_VALUE_JSON) {
            problem = parse_json_list(v.str, &lists[i]);
        } else {
            problem = "must be a String of comma-separated values or a Json array of strings";
        }
        if (problem) {
            snprintf(msg, sizeof(msg), "variable '%s' (%s) holds a %s that %s", names[i],
                     field_params[i], type_name(v.type), problem);
            h->throw_error(call, "CommonError", msg);
            return -1;
        }
        if (i != F_SUBJECT) {
            /* An empty list still means "exactly these SANs": none of this type. */
            static const char *const empty[] = {NULL};
            const char *const *items =
                lists[i].n ? (const char *const *)lists[i].items : (const char *const *)empty;
            if (i == F_DNS)
                ov->san_dns = items;
            else if (i == F_IP)
                ov->san_ip = items;
            else if (i == F_EMAIL)
                ov->san_email = items;
            else
                ov->san_uri = items;
        }
    }
    return 0;
}

static void execute(struct cf_call *call, int modified)
{
    const struct cf_host *h = call->host;
    char msg[MSG_MAX];
    const char *entry = h->param(call, "P10RequestFormEntry");
    const char *result = h->param(call, "P10RequestFormResult");
    const char *tmpl = h->param(call, "certTemplate");
    if (!entry || !*entry || !result || !*result || !tmpl || !*tmpl) {
        h->fail(call, 0,
                "P10RequestFormEntry, P10RequestFormResult and certTemplate must all be set");
        return;
    }
    const struct cf_ca_service *ca =
        h->service ? h->service(call, CF_SERVICE_CA, CF_SERVICE_CA_VERSION) : NULL;
    if (!ca || ca->size < offsetof(struct cf_ca_service, supports_override) +
                              sizeof(ca->supports_override)) {
        h->fail(call, 0, "this certflow offers no CA service (\"ca\" version 1)");
        return;
    }

    struct cf_value v;
    if (h->var_get(call, entry, &v) != 0) {
        snprintf(msg, sizeof(msg), "variable '%s' (P10RequestFormEntry) does not exist", entry);
        h->throw_error(call, "CommonError", msg);
        return;
    }
    const uint8_t *csr;
    size_t csr_len;
    if (v.type == CF_VALUE_BYTES) {
        csr = v.bytes;
        csr_len = v.len;
    } else if (v.type == CF_VALUE_STRING) {
        csr = (const uint8_t *)v.str;
        csr_len = v.len;
    } else {
        snprintf(msg, sizeof(msg),
                 "variable '%s' (P10RequestFormEntry) holds a %s; it must hold the bytes (Bytes) "
                 "or the PEM text (String) of a PKCS#10 request",
                 entry, type_name(v.type));
        h->throw_error(call, "CommonError", msg);
        return;
    }

    struct cf_ca_override ov = {.size = sizeof(ov)};
    struct list lists[F_N];
    memset(lists, 0, sizeof(lists));
    if (modified && read_override(call, &ov, lists, tmpl, ca) != 0)
        goto out;

    struct state *st = calloc(1, sizeof(*st));
    const char *pem = h->param(call, "booleanResultWithPEMHeaders");
    const char *p7 = h->param(call, "P7ResponseField");
    const char *id = h->param(call, "certificateIdField");
    if (st) {
        st->result_var = dup_or_null(result);
        st->p7_var = dup_or_null(p7);
        st->id_var = dup_or_null(id);
        st->pem = pem && strcmp(pem, "true") == 0;
    }
    if (!st || !st->result_var || (p7 && *p7 && !st->p7_var) || (id && *id && !st->id_var)) {
        state_free(st);
        h->fail(call, 1, "out of memory");
        goto out;
    }
    /* The service copies what it keeps of the request, so the lists are freed below. */
    int rc = ca->issue_pkcs10(call, tmpl, csr, csr_len, modified ? &ov : NULL, on_issued, st);
    if (rc) {
        state_free(st);
        snprintf(msg, sizeof(msg), "the CA service did not take the request (error %d)", rc);
        h->fail(call, 1, msg);
    }
out:
    for (int i = 0; i < F_N; i++)
        list_free(&lists[i]);
}

static void execute_plain(struct cf_call *call)
{
    execute(call, 0);
}

static void execute_modified(struct cf_call *call)
{
    execute(call, 1);
}

static const char *const modified_aliases[] = {"executePlainRequestTask", NULL};

static const struct cf_task_def pkcs10_task = {
    .size = sizeof(struct cf_task_def),
    .name = "executePKCS10RequestTask",
    .summary = "Sends the PKCS#10 request in a process variable to the CA of a certificate "
               "template; the certificate is stored and added to the process variables.",
    .params = params + F_N,
    .error_codes = error_codes,
    .execute = execute_plain,
};

static const struct cf_task_def modified_task = {
    .size = sizeof(struct cf_task_def),
    .name = "executeModifiedPKCS10RequestTask",
    .aliases = modified_aliases,
    .summary = "Like executePKCS10RequestTask, but the certificate's subject and SANs come from "
               "process variables; the CSR only proves possession of the key.",
    .params = params,
    .error_codes = error_codes,
    .execute = execute_modified,
};

static const struct cf_task_def *const pkcs10_tasks[] = {&pkcs10_task, &modified_task, NULL};

static const struct cf_module pkcs10_module = {
    .size = sizeof(struct cf_module),
    .abi_major = CF_PLUGIN_ABI_MAJOR,
    .abi_minor = CF_PLUGIN_ABI_MINOR,
    .name = "pkcs10",
    .version = PKCS10_VERSION,
    .tasks = pkcs10_tasks,
};

const struct cf_module *cf_plugin_init(const struct cf_host *host)
{
    (void)host;
    return &pkcs10_module;
}
