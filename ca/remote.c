/*
 * The shared part of the remote CA connectors (see ca/remote.h).
 */
#include "ca/remote.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/x509.h>

#include "base/base.h"

int cf__ca_parse_endpoint(const char *field, const char *text, bool default_tls, bool require_tls,
                          struct cf__ca_endpoint *ep, char *err, size_t errlen)
{
    memset(ep, 0, sizeof(*ep));
    const char *p = text;
    ep->tls = default_tls;
    if (strncmp(p, "https://", 8) == 0) {
        p += 8;
        ep->tls = true;
    } else if (strncmp(p, "http://", 7) == 0) {
        p += 7;
        ep->tls = false;
    } else if (strstr(p, "://")) {
        cf_errf(err, errlen, "settings.%s: \"%s\" has a scheme other than http or https", field,
                text);
        return CF_EINVAL;
    }
    if (require_tls && !ep->tls) {
        cf_errf(err, errlen, "settings.%s: \"%s\" must be an https:// address", field, text);
        return CF_EINVAL;
    }
    const char *host = p, *host_end;
    bool v6 = false;
    if (*p == '[') {
        host = p + 1;
        host_end = strchr(host, ']');
        if (!host_end) {
            cf_errf(err, errlen, "settings.%s: \"%s\" has an IPv6 address without its ']'", field,
                    text);
            return CF_EINVAL;
        }
        p = host_end + 1;
        v6 = true;
    } else {
        host_end = p + strcspn(p, ":/?#");
        p = host_end;
    }
    size_t hn = (size_t)(host_end - host);
    if (hn == 0 || hn >= sizeof(ep->host)) {
        cf_errf(err, errlen, "settings.%s: \"%s\" has no host name, or one that is too long", field,
                text);
        return CF_EINVAL;
    }
    for (size_t i = 0; i < hn; i++) {
        unsigned char ch = (unsigned char)host[i];
        if (ch <= ' ' || ch >= 0x7f || ch == '@' || ch == '%') {
            cf_errf(err, errlen,
                    "settings.%s: \"%s\" has a character that is not allowed in a "
                    "host name",
                    field, text);
            return CF_EINVAL;
        }
    }
    memcpy(ep->host, host, hn);
    ep->host[hn] = '\0';
    ep->port = ep->tls ? 443 : 80;
    if (*p == ':') {
        p++;
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 1 || v > 65535 || (*end && *end != '/')) {
            cf_errf(err, errlen,
                    "settings.%s: \"%s\" has a port that is not a number from 1 to 65535", field,
                    text);
            return CF_EINVAL;
        }
        ep->port = (int)v;
        p = end;
    }
    if (*p && *p != '/') {
        cf_errf(err, errlen, "settings.%s: \"%s\" is not [http(s)://]host[:port][/path]", field,
                text);
        return CF_EINVAL;
    }
    const char *path = *p ? p : "/";
    for (const char *q = path; *q; q++) {
        unsigned char ch = (unsigned char)*q;
        if (ch <= ' ' || ch >= 0x7f || ch == '?' || ch == '#') {
            cf_errf(err, errlen,
                    "settings.%s: \"%s\" has a path with a character that is not "
                    "allowed there (spaces, controls, '?', '#', non-ASCII)",
                    field, text);
            return CF_EINVAL;
        }
    }
    if (strlen(path) >= sizeof(ep->path)) {
        cf_errf(err, errlen, "settings.%s: the path is longer than %zu bytes", field,
                sizeof(ep->path) - 1);
        return CF_EINVAL;
    }
    cf_strlcpy(ep->path, path, sizeof(ep->path));
    snprintf(ep->url, sizeof(ep->url), "%s://%s%s%s:%d%s", ep->tls ? "https" : "http",
             v6 ? "[" : "", ep->host, v6 ? "]" : "", ep->port, ep->path);
    return 0;
}

static const char *type_name(enum cf__ca_ftype t)
{
    switch (t) {
    case CF_CA_F_INT:
        return "a whole number";
    case CF_CA_F_BOOL:
        return "true or false";
    case CF_CA_F_FILE:
        return "a file name";
    default:
        return "a string";
    }
}

int cf__ca_check_fields(const char *kind, const json_t *settings, const struct cf__ca_field *fields,
                        char *err, size_t errlen)
{
    if (!json_is_object(settings)) {
        cf_errf(err, errlen, "settings: must be a JSON object");
        return CF_EINVAL;
    }
    const char *name;
    json_t *v;
    json_object_foreach((json_t *)settings, name, v)
    {
        const struct cf__ca_field *f = fields;
        while (f->name && strcmp(f->name, name) != 0)
            f++;
        if (!f->name) {
            cf_errf(err, errlen, "settings.%s: the %s connector has no such setting", name, kind);
            return CF_EINVAL;
        }
        bool ok;
        switch (f->type) {
        case CF_CA_F_INT:
            ok = json_is_integer(v) && json_integer_value(v) >= f->min &&
                 json_integer_value(v) <= f->max;
            if (!ok) {
                cf_errf(err, errlen, "settings.%s: must be a whole number from %lld to %lld", name,
                        f->min, f->max);
                return CF_EINVAL;
            }
            break;
        case CF_CA_F_BOOL:
            ok = json_is_boolean(v);
            break;
        default:
            ok = json_is_string(v) && json_string_length(v) > 0 &&
                 strlen(json_string_value(v)) == json_string_length(v);
            break;
        }
        if (!ok) {
            cf_errf(err, errlen, "settings.%s: must be %s", name, type_name(f->type));
            return CF_EINVAL;
        }
        if (f->type == CF_CA_F_STRING && f->choices) {
            const char *s = json_string_value(v);
            size_t i = 0;
            while (f->choices[i] && strcmp(f->choices[i], s) != 0)
                i++;
            if (!f->choices[i]) {
                char list[256] = "";
                for (size_t j = 0; f->choices[j]; j++) {
                    if (j)
                        strncat(list, ", ", sizeof(list) - strlen(list) - 1);
                    strncat(list, f->choices[j], sizeof(list) - strlen(list) - 1);
                }
                cf_errf(err, errlen, "settings.%s: \"%s\" is not one of %s", name, s, list);
                return CF_EINVAL;
            }
        }
    }
    for (const struct cf__ca_field *f = fields; f->name; f++)
        if (f->required && !json_object_get(settings, f->name)) {
            cf_errf(err, errlen, "settings.%s: the %s connector needs it", f->name, kind);
            return CF_EINVAL;
        }
    return 0;
}

const char *cf__ca_setting_str(const json_t *settings, const char *name, const char *dflt)
{
    const json_t *v = json_object_get(settings, name);
    return json_is_string(v) ? json_string_value(v) : dflt;
}

long long cf__ca_setting_int(const json_t *settings, const char *name, long long dflt)
{
    const json_t *v = json_object_get(settings, name);
    return json_is_integer(v) ? json_integer_value(v) : dflt;
}

bool cf__ca_setting_bool(const json_t *settings, const char *name, bool dflt)
{
    const json_t *v = json_object_get(settings, name);
    return json_is_boolean(v) ? json_is_true(v) : dflt;
}

int cf__ca_csr_check(const struct cf_ca_conn_request *req, struct cf_csr **out, char *err,
                     size_t errlen)
{
    struct cf_csr *csr = NULL;
    if (cf_csr_decode(req->csr, req->csr_len, &csr, err, errlen) != 0 ||
        cf_csr_verify(csr, err, errlen) != 0) {
        cf_csr_free(csr);
        return CF_EINVAL;
    }
    *out = csr;
    return 0;
}

int cf__ca_cert_matches_csr(const uint8_t *der, size_t der_len, const struct cf_csr *csr)
{
    const unsigned char *p = der;
    X509 *x = d2i_X509(NULL, &p, (long)der_len);
    if (!x || p != der + der_len) {
        X509_free(x);
        return CF_EINVAL;
    }
    const X509_ALGOR *alg;
    const ASN1_BIT_STRING *bits;
    cf_csr_spki(csr, &alg, &bits);
    const ASN1_BIT_STRING *cert_bits = X509_get0_pubkey_bitstr(x);
    X509_PUBKEY *xpk = X509_get_X509_PUBKEY(x);
    X509_ALGOR *cert_alg = NULL;
    X509_PUBKEY_get0_param(NULL, NULL, NULL, &cert_alg, xpk);
    int same = cert_bits && bits && ASN1_STRING_cmp(cert_bits, bits) == 0 && cert_alg && alg &&
               X509_ALGOR_cmp(cert_alg, alg) == 0;
    X509_free(x);
    return same ? 1 : 0;
}

struct later {
    uv_timer_t timer;
    cf_ca_conn_done_fn done;
    void *arg;
    enum cf_ca_status st;
    char *message;
};

static void later_closed(uv_handle_t *h)
{
    struct later *l = h->data;
    struct cf_ca_conn_result res = {.status = l->st, .message = l->message};
    l->done(l->arg, &res);
    free(l->message);
    free(l);
}

static void later_fire(uv_timer_t *t)
{
    uv_close((uv_handle_t *)t, later_closed);
}

int cf__ca_fail_later(uv_loop_t *loop, cf_ca_conn_done_fn done, void *arg, enum cf_ca_status st,
                      const char *message)
{
    struct later *l = cf_xcalloc(1, sizeof(*l));
    if (uv_timer_init(loop, &l->timer) != 0) {
        free(l);
        return CF_EINVAL;
    }
    l->timer.data = l;
    l->done = done;
    l->arg = arg;
    l->st = st;
    l->message = cf_xstrdup(message ? message : "");
    uv_timer_start(&l->timer, later_fire, 0, 0);
    return 0;
}

void cf__ca_who(const struct cf__ca_endpoint *ep, const char *kind, const char *template_name,
                char *buf, size_t len)
{
    bool v6 = strchr(ep->host, ':') != NULL;
    snprintf(buf, len, "the CA at %s%s%s:%d (%s connector of template '%s')", v6 ? "[" : "",
             ep->host, v6 ? "]" : "", ep->port, kind, template_name ? template_name : "");
}
