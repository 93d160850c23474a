/*
 * What the connectors for remote CAs share (ca/conn_cmp.c, ca/conn_cmrest.c): reading the CA's
 * address and checking a template's settings against the fields a kind accepts, the CSR check
 * every connector makes before it talks to a CA (so that a request that could not be made is
 * CommonError whatever the CA's state), and delivering an outcome from the loop rather than from
 * inside issue().
 */
#ifndef CF_CA_REMOTE_H
#define CF_CA_REMOTE_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>
#include <uv.h>

#include "ca/connector.h"

/* A CA's address: "host[:port][/path]", "[v6]:port", optionally after "http://" or "https://". */
struct cf__ca_endpoint {
    bool tls;        /* https */
    char host[256];  /* without brackets */
    int port;        /* 443 for https, 80 for http unless given */
    char path[1024]; /* "/" when none was given; always starts with '/' */
    char url[1400];  /* scheme://host:port/path, brackets around an IPv6 host */
};

/* Parses `text`, the value of settings.<field>. Without a scheme, `default_tls` decides. When
 * `require_tls`, an http:// address is refused. 0 or CF_EINVAL with "settings.<field>: ...". */
int cf__ca_parse_endpoint(const char *field, const char *text, bool default_tls, bool require_tls,
                          struct cf__ca_endpoint *ep, char *err, size_t errlen);

enum cf__ca_ftype {
    CF_CA_F_STRING, /* a non-empty string; `choices` (NULL-terminated) restricts it */
    CF_CA_F_INT,    /* a whole number from min to max */
    CF_CA_F_BOOL,
    CF_CA_F_FILE, /* a path to a file; checked for existence only when the request is made, so
                   * that a template can be stored before its files are in place */
};

struct cf__ca_field {
    const char *name;
    enum cf__ca_ftype type;
    bool required;
    long long min, max;         /* CF_CA_F_INT */
    const char *const *choices; /* CF_CA_F_STRING; NULL: any */
};

/* Checks a template's settings against a kind's fields (terminated by a NULL name): a JSON
 * object, no unknown field ("settings.<name>: the <kind> connector has no such setting"), each
 * of the right type, every required one present. 0 or CF_EINVAL with a message naming the field. */
int cf__ca_check_fields(const char *kind, const json_t *settings, const struct cf__ca_field *fields,
                        char *err, size_t errlen);

/* Getters for settings that passed cf__ca_check_fields(): the value, or `dflt` when absent. */
const char *cf__ca_setting_str(const json_t *settings, const char *name, const char *dflt);
long long cf__ca_setting_int(const json_t *settings, const char *name, long long dflt);
bool cf__ca_setting_bool(const json_t *settings, const char *name, bool dflt);

/* Decodes and verifies the request's CSR (proof of possession). 0 with *out to free with
 * cf_csr_free(), or CF_EINVAL with the reason (what CommonError carries). */
int cf__ca_csr_check(const struct cf_ca_conn_request *req, struct cf_csr **out, char *err,
                     size_t errlen);

/* Whether `der` (a certificate) certifies the public key of `csr`: 1 yes, 0 no, negative when
 * `der` is not a certificate. For replaying a known certificate and for reconciling. */
int cf__ca_cert_matches_csr(const uint8_t *der, size_t der_len, const struct cf_csr *csr);

/* Calls done(arg, &{status, message}) from the loop soon, not from the caller's stack: for a
 * request that fails before any I/O. Returns 0, or a negative CF_E* code when it cannot (then
 * nothing runs). The message is copied. */
int cf__ca_fail_later(uv_loop_t *loop, cf_ca_conn_done_fn done, void *arg, enum cf_ca_status st,
                      const char *message);

/* The name a result names the CA by in messages: "the CA at host:port (<kind> connector of
 * template '<name>')". */
void cf__ca_who(const struct cf__ca_endpoint *ep, const char *kind, const char *template_name,
                char *buf, size_t len);

#endif
