/*
 * Certificate template procedures (see ca/policy.h): strict JSON parsing with messages that name
 * the field, and the checks a CA runs on a request. The extensions a template fixes (key usage
 * per key family, extended key usage) are encoded once at parse time, so that issuing only copies
 * them; this is also what makes a parsed policy safe to share between threads.
 */
#include "ca/policy.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/objects.h>

#include "base/base.h"

/* Key families, for the key usage bits their algorithms can perform. */
enum family { FAM_RSA, FAM_EC, FAM_EDDSA, FAM_N };

/* RFC 5280 §4.2.1.3 bit numbers. */
enum {
    KU_DS = 1u << 0,
    KU_NR = 1u << 1,
    KU_KE = 1u << 2,
    KU_DE = 1u << 3,
    KU_KA = 1u << 4,
    KU_KCS = 1u << 5,
    KU_CRL = 1u << 6,
    KU_EO = 1u << 7,
    KU_DO = 1u << 8,
};

/* RFC 5480 §3 (EC), RFC 8017 / RFC 4055 (RSA), RFC 8410 §5 (EdDSA). */
static const unsigned family_ku[FAM_N] = {
    [FAM_RSA] = KU_DS | KU_NR | KU_KE | KU_DE,
    [FAM_EC] = KU_DS | KU_NR | KU_KA | KU_EO | KU_DO,
    [FAM_EDDSA] = KU_DS | KU_NR,
};
static const char *const family_name[FAM_N] = {"RSA", "EC", "EdDSA"};

static const struct {
    const char *name;
    unsigned bit;
} ku_names[] = {
    {"digitalSignature", KU_DS}, {"nonRepudiation", KU_NR},   {"contentCommitment", KU_NR},
    {"keyEncipherment", KU_KE},  {"dataEncipherment", KU_DE}, {"keyAgreement", KU_KA},
    {"keyCertSign", KU_KCS},     {"cRLSign", KU_CRL},         {"encipherOnly", KU_EO},
    {"decipherOnly", KU_DO},
};

static const struct {
    const char *name;
    int nid;
} eku_names[] = {
    {"serverAuth", NID_server_auth},
    {"clientAuth", NID_client_auth},
    {"codeSigning", NID_code_sign},
    {"emailProtection", NID_email_protect},
    {"timeStamping", NID_time_stamp},
    {"OCSPSigning", NID_OCSP_sign},
    {"msSmartcardLogin", NID_ms_smartcard_login},
    {"ipsecIKE", NID_ipsec_IKE},
};

enum { CURVE_P256 = 1u << 0, CURVE_P384 = 1u << 1, CURVE_P521 = 1u << 2 };
static const struct {
    const char *name;
    int nid;
    unsigned bit;
} curves[] = {
    {"P-256", NID_X9_62_prime256v1, CURVE_P256},
    {"P-384", NID_secp384r1, CURVE_P384},
    {"P-521", NID_secp521r1, CURVE_P521},
};

static const struct {
    const char *name;
    int nid;
} attrs[] = {
    {"CN", NID_commonName},
    {"C", NID_countryName},
    {"ST", NID_stateOrProvinceName},
    {"L", NID_localityName},
    {"street", NID_streetAddress},
    {"O", NID_organizationName},
    {"OU", NID_organizationalUnitName},
    {"title", NID_title},
    {"GN", NID_givenName},
    {"SN", NID_surname},
    {"initials", NID_initials},
    {"pseudonym", NID_pseudonym},
    {"serialNumber", NID_serialNumber},
    {"emailAddress", NID_pkcs9_emailAddress},
    {"DC", NID_domainComponent},
    {"UID", NID_userId},
    {"postalCode", NID_postalCode},
    {"organizationIdentifier", NID_organizationIdentifier},
};
#define ATTR_CN (1u << 0)
#define ATTR_C (1u << 1)

enum { SAN_DNS = 1u << 0, SAN_IP = 1u << 1, SAN_EMAIL = 1u << 2, SAN_URI = 1u << 3 };
static const char *const san_type_names[] = {"dns", "ip", "email", "uri"};

static const char *const source_names[] = {"any", "csr", "override"};

#define RSA_FLOOR 2048
#define RSA_CEILING 16384
#define SAN_MAX_LIMIT 1000
#define DEFAULT_SAN_MAX 20

struct cf_ca_policy {
    struct cf_iso_duration validity;
    char *validity_text; /* as given, or NULL when given in days */
    int64_t validity_days;
    int rsa_min; /* 0: RSA not allowed */
    unsigned curves;
    bool ed25519, ed448;
    unsigned ku;
    X509_EXTENSION *ku_ext[FAM_N]; /* NULL for a family the template does not allow */
    char **eku;                    /* names or dotted OIDs, as given */
    size_t n_eku;
    X509_EXTENSION *eku_ext; /* NULL when there is no extended key usage */
    uint32_t subj_required, subj_allowed;
    enum cf_ca_source subj_source, san_source;
    unsigned san_types;
    int san_max;
    char **domains; /* lower case */
    size_t n_domains;
    bool wildcards, san_required;
    char *publication;
};

/* ---- helpers for messages ------------------------------------------------------------------- */

struct pc {
    char *err;
    size_t errlen;
};

static int fail(struct pc *c, const char *field, const char *fmt, ...) CF_PRINTF(3, 4);
static int fail(struct pc *c, const char *field, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    cf_errf(c->err, c->errlen, "procedure%s%s: %s", *field ? "." : "", field, msg);
    return CF_EPARSE;
}

static const char *json_kind(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
        return "an integer";
    case JSON_REAL:
        return "a number with a fraction";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    case JSON_NULL:
        return "null";
    }
    return "something else";
}

/* Appends `s` to a ", "-separated list in `buf`. */
static void list_add(char *buf, size_t len, const char *s)
{
    size_t used = strlen(buf);
    snprintf(buf + used, len - used, "%s%s", used ? ", " : "", s);
}

static void attr_list(uint32_t mask, char *buf, size_t len)
{
    buf[0] = '\0';
    for (size_t i = 0; i < CF_ARRAY_LEN(attrs); i++) {
        if (mask & (1u << i))
            list_add(buf, len, attrs[i].name);
    }
    if (!buf[0])
        cf_strlcpy(buf, "none", len);
}

static void san_type_list(unsigned mask, char *buf, size_t len)
{
    buf[0] = '\0';
    for (size_t i = 0; i < CF_ARRAY_LEN(san_type_names); i++) {
        if (mask & (1u << i))
            list_add(buf, len, san_type_names[i]);
    }
    if (!buf[0])
        cf_strlcpy(buf, "none", len);
}

/* "RSA of at least 2048 bits, EC on P-256 or P-384, Ed25519" */
static void key_types_text(const struct cf_ca_policy *p, char *buf, size_t len)
{
    buf[0] = '\0';
    if (p->rsa_min) {
        char t[64];
        snprintf(t, sizeof(t), "RSA of at least %d bits", p->rsa_min);
        list_add(buf, len, t);
    }
    if (p->curves) {
        char t[64] = "EC on ";
        bool first = true;
        for (size_t i = 0; i < CF_ARRAY_LEN(curves); i++) {
            if (!(p->curves & curves[i].bit))
                continue;
            size_t u = strlen(t);
            snprintf(t + u, sizeof(t) - u, "%s%s", first ? "" : " or ", curves[i].name);
            first = false;
        }
        list_add(buf, len, t);
    }
    if (p->ed25519)
        list_add(buf, len, "Ed25519");
    if (p->ed448)
        list_add(buf, len, "Ed448");
}

static void ku_text(unsigned mask, char *buf, size_t len)
{
    buf[0] = '\0';
    for (size_t i = 0; i < CF_ARRAY_LEN(ku_names); i++) {
        /* contentCommitment is the same bit as nonRepudiation; name it once. */
        if ((mask & ku_names[i].bit) && strcmp(ku_names[i].name, "contentCommitment") != 0)
            list_add(buf, len, ku_names[i].name);
    }
}

/* Copies up to `len` bytes of untrusted text for a message, with anything unprintable as '?'. */
static void printable(const unsigned char *s, int n, char *buf, size_t len)
{
    size_t j = 0;
    for (int i = 0; i < n; i++) {
        if (j + 4 >= len) {
            memcpy(buf + j, "...", 3);
            j += 3;
            break;
        }
        buf[j++] = (s[i] >= 0x20 && s[i] < 0x7f) ? (char)s[i] : '?';
    }
    buf[j] = '\0';
}

/* ---- names ---------------------------------------------------------------------------------- */

static int attr_index_by_name(const char *name)
{
    for (size_t i = 0; i < CF_ARRAY_LEN(attrs); i++) {
        if (strcmp(attrs[i].name, name) == 0)
            return (int)i;
    }
    return -1;
}

static int attr_index_by_nid(int nid)
{
    for (size_t i = 0; i < CF_ARRAY_LEN(attrs); i++) {
        if (attrs[i].nid == nid)
            return (int)i;
    }
    return -1;
}

int cf_ca_policy_attr_nid(const char *short_name)
{
    int i = short_name ? attr_index_by_name(short_name) : -1;
    return i < 0 ? NID_undef : attrs[i].nid;
}

static char lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

/*
 * A host name of letters, digits and hyphens (RFC 1123 §2.1, RFC 5280 §4.2.1.6 "preferred name
 * syntax"), no trailing dot, at most 253 characters; with `wildcard`, "*." may lead. Writes it
 * lower-cased into `out` (254 bytes). Returns NULL when valid, else what is wrong.
 */
static const char *dns_check(const unsigned char *s, int n, bool wildcard, char out[254])
{
    if (n <= 0)
        return "is empty";
    if (n > 253)
        return "is longer than 253 characters";
    int start = 0;
    if (wildcard && n >= 2 && s[0] == '*' && s[1] == '.')
        start = 2;
    int label = 0, labels = 0;
    bool all_digits = true;
    for (int i = start; i <= n; i++) {
        if (i == n || s[i] == '.') {
            if (label == 0)
                return i == n ? "ends with a dot or has an empty label" : "has an empty label";
            if (s[i - 1] == '-')
                return "has a label that ends with a hyphen";
            labels++;
            label = 0;
            if (i < n)
                all_digits = true;
            continue;
        }
        unsigned char ch = s[i];
        bool alnum =
            (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9');
        if (!alnum && ch != '-')
            return ch == '*' ? "has a wildcard that is not the whole leftmost label"
                             : "has a character other than letters, digits, hyphens and dots";
        if (label == 0 && ch == '-')
            return "has a label that starts with a hyphen";
        if (++label > 63)
            return "has a label longer than 63 characters";
        if (!(ch >= '0' && ch <= '9'))
            all_digits = false;
    }
    if (all_digits)
        return "ends in a numeric label (an IP address belongs in an IP SAN)";
    if (start && labels < 2)
        return "is a wildcard over a single label";
    for (int i = 0; i < n; i++)
        out[i] = lower((char)s[i]);
    out[n] = '\0';
    return NULL;
}

/* ---- JSON parsing --------------------------------------------------------------------------- */

static int parse_source(struct pc *c, const char *field, const json_t *v, enum cf_ca_source *out)
{
    const char *s = json_string_value(v);
    for (size_t i = 0; s && i < CF_ARRAY_LEN(source_names); i++) {
        if (strcmp(s, source_names[i]) == 0) {
            *out = (enum cf_ca_source)i;
            return 0;
        }
    }
    if (!s)
        return fail(c, field, "expected \"csr\", \"override\" or \"any\", got %s", json_kind(v));
    return fail(c, field, "unknown source \"%s\"; expected \"csr\", \"override\" or \"any\"", s);
}

static int parse_validity(struct pc *c, struct cf_ca_policy *p, const json_t *v)
{
    if (json_is_integer(v)) {
        json_int_t days = json_integer_value(v);
        if (days < 1)
            return fail(c, "validity", "%lld days: the validity must be at least 1 day",
                        (long long)days);
        memset(&p->validity, 0, sizeof(p->validity));
        p->validity.days = (int64_t)days;
        p->validity_days = (int64_t)days;
        free(p->validity_text);
        p->validity_text = NULL;
        return 0;
    }
    const char *s = json_string_value(v);
    if (!s)
        return fail(c, "validity",
                    "expected an ISO-8601 duration such as \"P1Y\" or a number of "
                    "days, got %s",
                    json_kind(v));
    char e[256];
    if (cf_iso_parse_duration(s, &p->validity, e, sizeof(e)))
        return fail(c, "validity", "%s", e);
    const struct cf_iso_duration *d = &p->validity;
    if (!d->years && !d->months && !d->weeks && !d->days && !d->hours &&
        d->minutes * 60000 + d->ms < 60000)
        return fail(c, "validity", "\"%s\" is shorter than one minute", s);
    free(p->validity_text);
    p->validity_text = cf_xstrdup(s);
    p->validity_days = 0;
    return 0;
}

static int parse_curves(struct pc *c, struct cf_ca_policy *p, const json_t *v)
{
    if (json_is_false(v)) {
        p->curves = 0;
        return 0;
    }
    if (!json_is_array(v))
        return fail(c, "keyTypes.EC", "expected an array of curve names or false, got %s",
                    json_kind(v));
    p->curves = 0;
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e)
    {
        char field[64];
        snprintf(field, sizeof(field), "keyTypes.EC[%zu]", i);
        const char *s = json_string_value(e);
        if (!s)
            return fail(c, field, "expected a curve name, got %s", json_kind(e));
        unsigned bit = 0;
        for (size_t k = 0; k < CF_ARRAY_LEN(curves); k++) {
            if (strcmp(s, curves[k].name) == 0)
                bit = curves[k].bit;
        }
        if (!bit)
            return fail(c, field, "unknown curve \"%s\"; expected P-256, P-384 or P-521", s);
        p->curves |= bit;
    }
    return 0;
}

static int parse_key_types(struct pc *c, struct cf_ca_policy *p, const json_t *v)
{
    if (!json_is_object(v))
        return fail(c, "keyTypes",
                    "expected an object such as {\"RSA\": 2048, \"EC\": "
                    "[\"P-256\"]}, got %s",
                    json_kind(v));
    p->rsa_min = 0;
    p->curves = 0;
    p->ed25519 = p->ed448 = false;
    const char *key;
    json_t *e;
    json_object_foreach((json_t *)v, key, e)
    {
        int rc = 0;
        if (strcmp(key, "RSA") == 0) {
            if (json_is_false(e))
                continue;
            if (!json_is_integer(e))
                return fail(c, "keyTypes.RSA", "expected a number of bits or false, got %s",
                            json_kind(e));
            json_int_t bits = json_integer_value(e);
            if (bits < RSA_FLOOR)
                return fail(c, "keyTypes.RSA",
                            "%lld bits is below %d, the smallest RSA key certflow issues for",
                            (long long)bits, RSA_FLOOR);
            if (bits > RSA_CEILING)
                return fail(c, "keyTypes.RSA",
                            "%lld bits is above %d, the largest RSA key OpenSSL verifies",
                            (long long)bits, RSA_CEILING);
            p->rsa_min = (int)bits;
        } else if (strcmp(key, "EC") == 0) {
            rc = parse_curves(c, p, e);
        } else if (strcmp(key, "Ed25519") == 0 || strcmp(key, "Ed448") == 0) {
            char field[32];
            snprintf(field, sizeof(field), "keyTypes.%s", key);
            if (!json_is_boolean(e))
                return fail(c, field, "expected true or false, got %s", json_kind(e));
            if (key[2] == '2')
                p->ed25519 = json_is_true(e);
            else
                p->ed448 = json_is_true(e);
        } else {
            return fail(c, "keyTypes",
                        "unknown key type \"%s\"; expected RSA, EC, Ed25519 or "
                        "Ed448",
                        key);
        }
        if (rc)
            return rc;
    }
    if (!p->rsa_min && !p->curves && !p->ed25519 && !p->ed448)
        return fail(c, "keyTypes", "allows no key type at all");
    return 0;
}

static int parse_key_usage(struct pc *c, struct cf_ca_policy *p, const json_t *v)
{
    if (!json_is_array(v))
        return fail(c, "keyUsage", "expected an array of key usage names, got %s", json_kind(v));
    if (json_array_size(v) == 0)
        return fail(c, "keyUsage", "must name at least one key usage");
    p->ku = 0;
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e)
    {
        char field[64];
        snprintf(field, sizeof(field), "keyUsage[%zu]", i);
        const char *s = json_string_value(e);
        if (!s)
            return fail(c, field, "expected a key usage name, got %s", json_kind(e));
        unsigned bit = 0;
        for (size_t k = 0; k < CF_ARRAY_LEN(ku_names); k++) {
            if (strcmp(s, ku_names[k].name) == 0)
                bit = ku_names[k].bit;
        }
        if (!bit)
            return fail(c, field,
                        "unknown key usage \"%s\"; expected digitalSignature, nonRepudiation, "
                        "keyEncipherment, dataEncipherment, keyAgreement, encipherOnly or "
                        "decipherOnly",
                        s);
        if (bit == KU_KCS || bit == KU_CRL)
            return fail(c, field,
                        "%s is for CA certificates; templates issue end-entity "
                        "certificates",
                        s);
        if (p->ku & bit)
            return fail(c, field, "%s appears twice", s);
        p->ku |= bit;
    }
    if ((p->ku & (KU_EO | KU_DO)) && !(p->ku & KU_KA))
        return fail(c, "keyUsage", "encipherOnly and decipherOnly need keyAgreement (RFC 5280)");
    if ((p->ku & KU_EO) && (p->ku & KU_DO))
        return fail(c, "keyUsage", "encipherOnly and decipherOnly exclude each other");
    return 0;
}

static int parse_eku(struct pc *c, struct cf_ca_policy *p, const json_t *v)
{
    if (!json_is_array(v))
        return fail(c, "extendedKeyUsage", "expected an array of names or OIDs, got %s",
                    json_kind(v));
    for (size_t i = 0; i < p->n_eku; i++)
        free(p->eku[i]);
    free(p->eku);
    p->n_eku = json_array_size(v);
    p->eku = cf_xcalloc(p->n_eku + 1, sizeof(char *));
    bool ts = false;
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e)
    {
        char field[64];
        snprintf(field, sizeof(field), "extendedKeyUsage[%zu]", i);
        const char *s = json_string_value(e);
        if (!s)
            return fail(c, field, "expected a name or a dotted OID, got %s", json_kind(e));
        p->eku[i] = cf_xstrdup(s);
        bool known = false;
        for (size_t k = 0; k < CF_ARRAY_LEN(eku_names); k++) {
            if (strcmp(s, eku_names[k].name) == 0)
                known = true;
        }
        ASN1_OBJECT *obj = NULL;
        if (!known && (s[0] < '0' || s[0] > '9' || !(obj = OBJ_txt2obj(s, 1))))
            return fail(c, field,
                        "unknown extended key usage \"%s\"; expected serverAuth, clientAuth, "
                        "codeSigning, emailProtection, timeStamping, OCSPSigning, "
                        "msSmartcardLogin, ipsecIKE or a dotted OID",
                        s);
        ASN1_OBJECT_free(obj);
        for (size_t k = 0; k < i; k++) {
            if (strcmp(p->eku[k], s) == 0)
                return fail(c, field, "%s appears twice", s);
        }
        if (strcmp(s, "timeStamping") == 0 || strcmp(s, "1.3.6.1.5.5.7.3.8") == 0)
            ts = true;
    }
    if (ts && p->n_eku > 1)
        return fail(c, "extendedKeyUsage",
                    "timeStamping must be the only extended key usage (RFC 3161 §2.3)");
    return 0;
}

static int parse_attr_list(struct pc *c, const char *field, const json_t *v, uint32_t *out)
{
    if (!json_is_array(v))
        return fail(c, field,
                    "expected an array of attribute names such as [\"CN\", \"O\"], "
                    "got %s",
                    json_kind(v));
    *out = 0;
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e)
    {
        char f[64];
        snprintf(f, sizeof(f), "%s[%zu]", field, i);
        const char *s = json_string_value(e);
        if (!s)
            return fail(c, f, "expected an attribute name, got %s", json_kind(e));
        int k = attr_index_by_name(s);
        if (k < 0) {
            char all[400];
            attr_list(~0u, all, sizeof(all));
            return fail(c, f, "unknown subject attribute \"%s\"; expected one of %s", s, all);
        }
        *out |= 1u << k;
    }
    return 0;
}

static int parse_subject(struct pc *c, struct cf_ca_policy *p, const json_t *v)
{
    if (!json_is_object(v))
        return fail(c, "subject", "expected an object with required, allowed and source, got %s",
                    json_kind(v));
    const char *key;
    json_t *e;
    json_object_foreach((json_t *)v, key, e)
    {
        int rc;
        if (strcmp(key, "required") == 0)
            rc = parse_attr_list(c, "subject.required", e, &p->subj_required);
        else if (strcmp(key, "allowed") == 0)
            rc = parse_attr_list(c, "subject.allowed", e, &p->subj_allowed);
        else if (strcmp(key, "source") == 0)
            rc = parse_source(c, "subject.source", e, &p->subj_source);
        else
            rc = fail(c, "subject", "unknown field \"%s\"; expected required, allowed or source",
                      key);
        if (rc)
            return rc;
    }
    return 0;
}

static int parse_domains(struct pc *c, struct cf_ca_policy *p, const json_t *v)
{
    if (!json_is_array(v))
        return fail(c, "san.domains", "expected an array of domain names, got %s", json_kind(v));
    for (size_t i = 0; i < p->n_domains; i++)
        free(p->domains[i]);
    free(p->domains);
    p->domains = cf_xcalloc(json_array_size(v) + 1, sizeof(char *));
    p->n_domains = 0;
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e)
    {
        char field[64];
        snprintf(field, sizeof(field), "san.domains[%zu]", i);
        const char *s = json_string_value(e);
        if (!s)
            return fail(c, field, "expected a domain name, got %s", json_kind(e));
        char name[254];
        const char *why = dns_check((const unsigned char *)s, (int)strnlen(s, 300), false, name);
        if (why)
            return fail(c, field, "\"%s\" is not a domain name: it %s%s", s, why,
                        s[0] == '.' || s[0] == '*'
                            ? " (write example.com; it allows example.com and every name "
                              "below it)"
                            : "");
        p->domains[p->n_domains++] = cf_xstrdup(name);
    }
    return 0;
}

static int parse_san(struct pc *c, struct cf_ca_policy *p, const json_t *v)
{
    if (!json_is_object(v))
        return fail(c, "san",
                    "expected an object with types, max, domains, wildcards, required "
                    "and source, got %s",
                    json_kind(v));
    const char *key;
    json_t *e;
    json_object_foreach((json_t *)v, key, e)
    {
        int rc = 0;
        if (strcmp(key, "types") == 0) {
            if (!json_is_array(e))
                return fail(c, "san.types",
                            "expected an array of \"dns\", \"ip\", \"email\", "
                            "\"uri\", got %s",
                            json_kind(e));
            p->san_types = 0;
            size_t i;
            json_t *t;
            json_array_foreach(e, i, t)
            {
                char field[64];
                snprintf(field, sizeof(field), "san.types[%zu]", i);
                const char *s = json_string_value(t);
                unsigned bit = 0;
                for (size_t k = 0; s && k < CF_ARRAY_LEN(san_type_names); k++) {
                    if (strcmp(s, san_type_names[k]) == 0)
                        bit = 1u << k;
                }
                if (!bit)
                    return fail(c, field, "expected \"dns\", \"ip\", \"email\" or \"uri\", got %s",
                                s ? s : json_kind(t));
                p->san_types |= bit;
            }
        } else if (strcmp(key, "max") == 0) {
            if (!json_is_integer(e) || json_integer_value(e) < 0 ||
                json_integer_value(e) > SAN_MAX_LIMIT)
                return fail(c, "san.max", "expected an integer from 0 to %d", SAN_MAX_LIMIT);
            p->san_max = (int)json_integer_value(e);
        } else if (strcmp(key, "domains") == 0) {
            rc = parse_domains(c, p, e);
        } else if (strcmp(key, "wildcards") == 0 || strcmp(key, "required") == 0) {
            char field[32];
            snprintf(field, sizeof(field), "san.%s", key);
            if (!json_is_boolean(e))
                return fail(c, field, "expected true or false, got %s", json_kind(e));
            if (key[0] == 'w')
                p->wildcards = json_is_true(e);
            else
                p->san_required = json_is_true(e);
        } else if (strcmp(key, "source") == 0) {
            rc = parse_source(c, "san.source", e, &p->san_source);
        } else {
            return fail(c, "san",
                        "unknown field \"%s\"; expected types, max, domains, "
                        "wildcards, required or source",
                        key);
        }
        if (rc)
            return rc;
    }
    if (p->san_required && (!p->san_types || !p->san_max))
        return fail(c, "san.required", "the template requires a SAN but allows none");
    return 0;
}

/* ---- building the fixed extensions ---------------------------------------------------------- */

static X509_EXTENSION *ku_extension(unsigned bits)
{
    ASN1_BIT_STRING *bs = ASN1_BIT_STRING_new();
    X509_EXTENSION *ext = NULL;
    bool ok = bs != NULL;
    for (int i = 0; ok && i < 9; i++) {
        if (bits & (1u << i))
            ok = ASN1_BIT_STRING_set_bit(bs, i, 1) == 1;
    }
    if (ok)
        ext = X509V3_EXT_i2d(NID_key_usage, 1, bs);
    ASN1_BIT_STRING_free(bs);
    return ext;
}

static X509_EXTENSION *eku_extension(char *const *names, size_t n)
{
    EXTENDED_KEY_USAGE *eku = sk_ASN1_OBJECT_new_null();
    bool critical = false, ok = eku != NULL;
    for (size_t i = 0; ok && i < n; i++) {
        ASN1_OBJECT *obj = NULL;
        for (size_t k = 0; k < CF_ARRAY_LEN(eku_names); k++) {
            if (strcmp(names[i], eku_names[k].name) == 0)
                obj = OBJ_nid2obj(eku_names[k].nid);
        }
        if (!obj)
            obj = OBJ_txt2obj(names[i], 1);
        if (obj && OBJ_obj2nid(obj) == NID_time_stamp)
            critical = true;
        ok = obj && sk_ASN1_OBJECT_push(eku, obj) > 0;
        if (!ok)
            ASN1_OBJECT_free(obj);
    }
    X509_EXTENSION *ext = ok ? X509V3_EXT_i2d(NID_ext_key_usage, critical, eku) : NULL;
    sk_ASN1_OBJECT_pop_free(eku, ASN1_OBJECT_free);
    return ext;
}

static int finish(struct pc *c, struct cf_ca_policy *p)
{
    bool allowed[FAM_N] = {
        [FAM_RSA] = p->rsa_min > 0,
        [FAM_EC] = p->curves != 0,
        [FAM_EDDSA] = p->ed25519 || p->ed448,
    };
    for (int f = 0; f < FAM_N; f++) {
        if (!allowed[f])
            continue;
        unsigned bits = p->ku & family_ku[f];
        if (!bits) {
            char names[200];
            ku_text(p->ku, names, sizeof(names));
            return fail(c, "keyUsage",
                        "none of %s applies to %s keys, which keyTypes allows; add "
                        "digitalSignature or disallow %s keys",
                        names, family_name[f], family_name[f]);
        }
        p->ku_ext[f] = ku_extension(bits);
        if (!p->ku_ext[f])
            return fail(c, "keyUsage", "cannot be encoded");
    }
    if (p->n_eku) {
        p->eku_ext = eku_extension(p->eku, p->n_eku);
        if (!p->eku_ext)
            return fail(c, "extendedKeyUsage", "cannot be encoded");
    }
    return 0;
}

static void set_defaults(struct cf_ca_policy *p)
{
    memset(p, 0, sizeof(*p));
    p->validity.years = 1;
    p->validity_text = cf_xstrdup("P1Y");
    p->rsa_min = RSA_FLOOR;
    p->curves = CURVE_P256 | CURVE_P384;
    p->ku = KU_DS | KU_KE;
    p->n_eku = 2;
    p->eku = cf_xcalloc(3, sizeof(char *));
    p->eku[0] = cf_xstrdup("serverAuth");
    p->eku[1] = cf_xstrdup("clientAuth");
    p->subj_required = ATTR_CN;
    for (size_t i = 0; i < CF_ARRAY_LEN(attrs); i++) {
        const char *n = attrs[i].name;
        if (!strcmp(n, "O") || !strcmp(n, "OU") || !strcmp(n, "C") || !strcmp(n, "L") ||
            !strcmp(n, "ST"))
            p->subj_allowed |= 1u << i;
    }
    p->san_types = SAN_DNS | SAN_IP | SAN_EMAIL | SAN_URI;
    p->san_max = DEFAULT_SAN_MAX;
}

int cf_ca_policy_from_json(const json_t *procedure, struct cf_ca_policy **out, char *err,
                           size_t errlen)
{
    *out = NULL;
    struct pc c = {err, errlen};
    if (!procedure) {
        cf_errf(err, errlen, "procedure: missing");
        return CF_EINVAL;
    }
    if (!json_is_object(procedure))
        return fail(&c, "", "expected a JSON object, got %s", json_kind(procedure));
    struct cf_ca_policy *p = cf_xmalloc(sizeof(*p));
    set_defaults(p);
    const char *key;
    json_t *v;
    int rc = 0;
    json_object_foreach((json_t *)procedure, key, v)
    {
        if (strcmp(key, "validity") == 0)
            rc = parse_validity(&c, p, v);
        else if (strcmp(key, "keyTypes") == 0)
            rc = parse_key_types(&c, p, v);
        else if (strcmp(key, "keyUsage") == 0)
            rc = parse_key_usage(&c, p, v);
        else if (strcmp(key, "extendedKeyUsage") == 0)
            rc = parse_eku(&c, p, v);
        else if (strcmp(key, "subject") == 0)
            rc = parse_subject(&c, p, v);
        else if (strcmp(key, "san") == 0)
            rc = parse_san(&c, p, v);
        else if (strcmp(key, "publication") == 0) {
            const char *s = json_string_value(v);
            if (!s || !*s)
                rc = fail(&c, "publication",
                          "expected the name of a publication procedure, "
                          "got %s",
                          s ? "an empty string" : json_kind(v));
            else {
                free(p->publication);
                p->publication = cf_xstrdup(s);
            }
        } else
            rc = fail(&c, "",
                      "unknown field \"%s\"; expected validity, keyTypes, keyUsage, "
                      "extendedKeyUsage, subject, san or publication",
                      key);
        if (rc)
            break;
    }
    if (!rc)
        rc = finish(&c, p);
    if (rc) {
        cf_ca_policy_free(p);
        return rc;
    }
    *out = p;
    return 0;
}

int cf_ca_policy_parse(const char *json, struct cf_ca_policy **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!json) {
        cf_errf(err, errlen, "procedure: missing");
        return CF_EINVAL;
    }
    json_error_t je;
    json_t *root = json_loads(json, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        cf_errf(err, errlen, "procedure: invalid JSON at line %d, column %d: %s", je.line,
                je.column, je.text);
        return CF_EPARSE;
    }
    int rc = cf_ca_policy_from_json(root, out, err, errlen);
    json_decref(root);
    return rc;
}

void cf_ca_policy_free(struct cf_ca_policy *p)
{
    if (!p)
        return;
    free(p->validity_text);
    for (int f = 0; f < FAM_N; f++)
        X509_EXTENSION_free(p->ku_ext[f]);
    for (size_t i = 0; i < p->n_eku; i++)
        free(p->eku[i]);
    free(p->eku);
    X509_EXTENSION_free(p->eku_ext);
    for (size_t i = 0; i < p->n_domains; i++)
        free(p->domains[i]);
    free(p->domains);
    free(p->publication);
    free(p);
}

static json_t *attr_array(uint32_t mask)
{
    json_t *a = json_array();
    for (size_t i = 0; i < CF_ARRAY_LEN(attrs); i++) {
        if (mask & (1u << i))
            json_array_append_new(a, json_string(attrs[i].name));
    }
    return a;
}

char *cf_ca_policy_to_json(const struct cf_ca_policy *p)
{
    json_t *o = json_object();
    if (p->validity_text)
        json_object_set_new(o, "validity", json_string(p->validity_text));
    else
        json_object_set_new(o, "validity", json_integer((json_int_t)p->validity_days));

    json_t *kt = json_object();
    json_object_set_new(kt, "RSA", p->rsa_min ? json_integer(p->rsa_min) : json_false());
    json_t *ec = json_array();
    for (size_t i = 0; i < CF_ARRAY_LEN(curves); i++) {
        if (p->curves & curves[i].bit)
            json_array_append_new(ec, json_string(curves[i].name));
    }
    json_object_set_new(kt, "EC", ec);
    json_object_set_new(kt, "Ed25519", json_boolean(p->ed25519));
    json_object_set_new(kt, "Ed448", json_boolean(p->ed448));
    json_object_set_new(o, "keyTypes", kt);

    json_t *ku = json_array();
    for (size_t i = 0; i < CF_ARRAY_LEN(ku_names); i++) {
        if ((p->ku & ku_names[i].bit) && strcmp(ku_names[i].name, "contentCommitment") != 0)
            json_array_append_new(ku, json_string(ku_names[i].name));
    }
    json_object_set_new(o, "keyUsage", ku);

    json_t *eku = json_array();
    for (size_t i = 0; i < p->n_eku; i++)
        json_array_append_new(eku, json_string(p->eku[i]));
    json_object_set_new(o, "extendedKeyUsage", eku);

    json_t *subj = json_object();
    json_object_set_new(subj, "required", attr_array(p->subj_required));
    json_object_set_new(subj, "allowed", attr_array(p->subj_allowed & ~p->subj_required));
    json_object_set_new(subj, "source", json_string(source_names[p->subj_source]));
    json_object_set_new(o, "subject", subj);

    json_t *san = json_object();
    json_t *types = json_array();
    for (size_t i = 0; i < CF_ARRAY_LEN(san_type_names); i++) {
        if (p->san_types & (1u << i))
            json_array_append_new(types, json_string(san_type_names[i]));
    }
    json_object_set_new(san, "types", types);
    json_object_set_new(san, "max", json_integer(p->san_max));
    json_t *domains = json_array();
    for (size_t i = 0; i < p->n_domains; i++)
        json_array_append_new(domains, json_string(p->domains[i]));
    json_object_set_new(san, "domains", domains);
    json_object_set_new(san, "wildcards", json_boolean(p->wildcards));
    json_object_set_new(san, "required", json_boolean(p->san_required));
    json_object_set_new(san, "source", json_string(source_names[p->san_source]));
    json_object_set_new(o, "san", san);

    if (p->publication)
        json_object_set_new(o, "publication", json_string(p->publication));
    char *text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    char *out = cf_xstrdup(text ? text : "{}");
    free(text);
    return out;
}

const char *cf_ca_policy_publication(const struct cf_ca_policy *p)
{
    return p->publication;
}

enum cf_ca_source cf_ca_policy_subject_source(const struct cf_ca_policy *p)
{
    return p->subj_source;
}

enum cf_ca_source cf_ca_policy_san_source(const struct cf_ca_policy *p)
{
    return p->san_source;
}

const struct cf_iso_duration *cf_ca_policy_validity(const struct cf_ca_policy *p)
{
    return &p->validity;
}

/* ---- checks --------------------------------------------------------------------------------- */

static int refuse(char *err, size_t errlen, const char *fmt, ...) CF_PRINTF(3, 4);
static int refuse(char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return CF_EPERM;
}

static int key_family(EVP_PKEY *pkey)
{
    switch (EVP_PKEY_get_base_id(pkey)) {
    case EVP_PKEY_RSA:
        return FAM_RSA;
    case EVP_PKEY_EC:
        return FAM_EC;
    case EVP_PKEY_ED25519:
    case EVP_PKEY_ED448:
        return FAM_EDDSA;
    default:
        return -1;
    }
}

static int check_rsa(const struct cf_ca_policy *p, EVP_PKEY *pkey, char *err, size_t errlen,
                     const char *allowed)
{
    if (!p->rsa_min)
        return refuse(err, errlen, "RSA keys are not allowed by the template (it allows %s)",
                      allowed);
    int bits = EVP_PKEY_get_bits(pkey);
    if (bits < p->rsa_min)
        return refuse(err, errlen, "RSA key of %d bits is below the template's minimum of %d", bits,
                      p->rsa_min);
    BIGNUM *e = NULL;
    int rc = 0;
    if (EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_RSA_E, &e) != 1 || !BN_is_odd(e) ||
        BN_num_bits(e) < 2) {
        char *dec = e ? BN_bn2dec(e) : NULL;
        rc = refuse(err, errlen,
                    "RSA public exponent %s is not allowed: it must be odd and at "
                    "least 3",
                    dec ? dec : "(unreadable)");
        OPENSSL_free(dec);
    }
    BN_free(e);
    return rc;
}

int cf_ca_policy_check_key(const struct cf_ca_policy *p, EVP_PKEY *pkey, char *err, size_t errlen)
{
    char allowed[200];
    key_types_text(p, allowed, sizeof(allowed));
    switch (EVP_PKEY_get_base_id(pkey)) {
    case EVP_PKEY_RSA:
        return check_rsa(p, pkey, err, errlen, allowed);
    case EVP_PKEY_EC: {
        if (!p->curves)
            return refuse(err, errlen, "EC keys are not allowed by the template (it allows %s)",
                          allowed);
        /* RFC 5480 §2.1.1: PKIX uses named curves only. OpenSSL 3 recognises explicit
         * parameters of a known curve and would name it, so the encoding is asked for. */
        char group[80], encoding[32] = "";
        size_t glen = 0;
        EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_EC_ENCODING, encoding,
                                       sizeof(encoding), NULL);
        if (strcmp(encoding, OSSL_PKEY_EC_ENCODING_EXPLICIT) == 0 ||
            EVP_PKEY_get_group_name(pkey, group, sizeof(group), &glen) != 1)
            return refuse(err, errlen,
                          "EC keys with explicit curve parameters are not allowed; "
                          "use a named curve (the template allows %s)",
                          allowed);
        int nid = OBJ_sn2nid(group);
        if (nid == NID_undef)
            nid = EC_curve_nist2nid(group);
        for (size_t i = 0; i < CF_ARRAY_LEN(curves); i++) {
            if (curves[i].nid == nid) {
                if (p->curves & curves[i].bit)
                    return 0;
                return refuse(err, errlen,
                              "EC key on curve %s is not allowed by the template (it allows %s)",
                              curves[i].name, allowed);
            }
        }
        return refuse(err, errlen,
                      "EC key on curve %s is not allowed by the template (it allows %s)", group,
                      allowed);
    }
    case EVP_PKEY_ED25519:
        if (p->ed25519)
            return 0;
        return refuse(err, errlen, "Ed25519 keys are not allowed by the template (it allows %s)",
                      allowed);
    case EVP_PKEY_ED448:
        if (p->ed448)
            return 0;
        return refuse(err, errlen, "Ed448 keys are not allowed by the template (it allows %s)",
                      allowed);
    default: {
        const char *name = EVP_PKEY_get0_type_name(pkey);
        return refuse(err, errlen, "%s keys are not allowed by the template (it allows %s)",
                      name ? name : "such", allowed);
    }
    }
}

/* Characters, not bytes, as RFC 5280's upper bounds count them. */
static long string_chars(const ASN1_STRING *v)
{
    const unsigned char *s = ASN1_STRING_get0_data(v);
    long n = ASN1_STRING_length(v);
    switch (ASN1_STRING_type(v)) {
    case V_ASN1_BMPSTRING:
        return n / 2;
    case V_ASN1_UNIVERSALSTRING:
        return n / 4;
    case V_ASN1_UTF8STRING: {
        long chars = 0;
        for (long i = 0; i < n; i++)
            chars += (s[i] & 0xc0) != 0x80;
        return chars;
    }
    default:
        return n;
    }
}

int cf_ca_policy_check_subject(const struct cf_ca_policy *p, const X509_NAME *subject, char *err,
                               size_t errlen)
{
    uint32_t permitted = p->subj_allowed | p->subj_required, seen = 0;
    int cn = 0, country = 0;
    for (int i = 0; i < X509_NAME_entry_count(subject); i++) {
        const X509_NAME_ENTRY *ne = X509_NAME_get_entry(subject, i);
        const ASN1_OBJECT *obj = X509_NAME_ENTRY_get_object(ne);
        int k = attr_index_by_nid(OBJ_obj2nid(obj));
        if (k < 0 || !(permitted & (1u << k))) {
            char name[80], list[400];
            if (k >= 0)
                cf_strlcpy(name, attrs[k].name, sizeof(name));
            else if (OBJ_obj2txt(name, sizeof(name), obj, 0) <= 0)
                cf_strlcpy(name, "(unreadable)", sizeof(name));
            attr_list(permitted, list, sizeof(list));
            return refuse(err, errlen,
                          "subject attribute %s is not allowed by the template (it allows %s)",
                          name, list);
        }
        const ASN1_STRING *v = X509_NAME_ENTRY_get_data(ne);
        if (ASN1_STRING_length(v) <= 0)
            return refuse(err, errlen, "subject attribute %s is empty", attrs[k].name);
        const ASN1_STRING_TABLE *tbl = ASN1_STRING_TABLE_get(attrs[k].nid);
        long chars = string_chars(v);
        if (tbl && tbl->maxsize > 0 && chars > tbl->maxsize)
            return refuse(err, errlen,
                          "subject attribute %s is %ld characters long, more than the %ld that "
                          "RFC 5280 allows",
                          attrs[k].name, chars, tbl->maxsize);
        seen |= 1u << k;
        cn += (1u << k) == ATTR_CN;
        country += (1u << k) == ATTR_C;
    }
    if (cn > 1 || country > 1)
        return refuse(err, errlen, "the subject has %d %s attributes; at most one is allowed",
                      cn > 1 ? cn : country, cn > 1 ? "CN" : "C");
    uint32_t missing = p->subj_required & ~seen;
    for (size_t i = 0; missing && i < CF_ARRAY_LEN(attrs); i++) {
        if (missing & (1u << i))
            return refuse(err, errlen,
                          "the template requires the subject attribute %s, and the subject has "
                          "none",
                          attrs[i].name);
    }
    return 0;
}

static bool domain_allowed(const struct cf_ca_policy *p, const char *host)
{
    if (!p->n_domains)
        return true;
    size_t hl = strlen(host);
    for (size_t i = 0; i < p->n_domains; i++) {
        const char *d = p->domains[i];
        size_t dl = strlen(d);
        if (hl == dl && memcmp(host, d, dl) == 0)
            return true;
        if (hl > dl && memcmp(host + hl - dl, d, dl) == 0 && host[hl - dl - 1] == '.')
            return true;
    }
    return false;
}

static void domains_text(const struct cf_ca_policy *p, char *buf, size_t len)
{
    buf[0] = '\0';
    for (size_t i = 0; i < p->n_domains; i++)
        list_add(buf, len, p->domains[i]);
}

static int check_dns(const struct cf_ca_policy *p, const ASN1_IA5STRING *v, char *err,
                     size_t errlen)
{
    const unsigned char *s = ASN1_STRING_get0_data(v);
    int n = ASN1_STRING_length(v);
    char shown[128], name[254], list[300];
    printable(s, n, shown, sizeof(shown));
    bool wildcard = n >= 2 && s[0] == '*' && s[1] == '.';
    if (wildcard && !p->wildcards)
        return refuse(err, errlen, "SAN DNS:%s is a wildcard, which the template does not allow",
                      shown);
    const char *why = dns_check(s, n, p->wildcards, name);
    if (why)
        return refuse(err, errlen, "SAN DNS:%s is not a valid DNS name: it %s", shown, why);
    if (!domain_allowed(p, wildcard ? name + 2 : name)) {
        domains_text(p, list, sizeof(list));
        return refuse(err, errlen, "SAN DNS:%s is outside the template's allowed domains (%s)",
                      shown, list);
    }
    return 0;
}

static int check_email(const struct cf_ca_policy *p, const ASN1_IA5STRING *v, char *err,
                       size_t errlen)
{
    const unsigned char *s = ASN1_STRING_get0_data(v);
    int n = ASN1_STRING_length(v);
    char shown[128], name[254], list[300];
    printable(s, n, shown, sizeof(shown));
    int at = -1;
    for (int i = 0; i < n; i++) {
        if (s[i] <= 0x20 || s[i] >= 0x7f)
            return refuse(err, errlen,
                          "SAN email:%s is not a valid e-mail address: it has a "
                          "space or a character outside printable ASCII",
                          shown);
        if (s[i] == '@')
            at = i;
    }
    if (at <= 0)
        return refuse(err, errlen,
                      "SAN email:%s is not a valid e-mail address: it has no "
                      "local part and domain",
                      shown);
    const char *why = dns_check(s + at + 1, n - at - 1, false, name);
    if (why)
        return refuse(err, errlen, "SAN email:%s has an invalid domain: it %s", shown, why);
    if (!domain_allowed(p, name)) {
        domains_text(p, list, sizeof(list));
        return refuse(err, errlen, "SAN email:%s is outside the template's allowed domains (%s)",
                      shown, list);
    }
    return 0;
}

static int check_uri(const struct cf_ca_policy *p, const ASN1_IA5STRING *v, char *err,
                     size_t errlen)
{
    const unsigned char *s = ASN1_STRING_get0_data(v);
    int n = ASN1_STRING_length(v);
    char shown[128], name[254], list[300];
    printable(s, n, shown, sizeof(shown));
    for (int i = 0; i < n; i++) {
        if (s[i] <= 0x20 || s[i] >= 0x7f)
            return refuse(err, errlen,
                          "SAN URI:%s is not a valid URI: it has a space or a "
                          "character outside printable ASCII",
                          shown);
    }
    /* RFC 3986 §3.1: scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ), then ':'. */
    int i = 0;
    while (i < n &&
           ((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
            (i > 0 && ((s[i] >= '0' && s[i] <= '9') || s[i] == '+' || s[i] == '-' || s[i] == '.'))))
        i++;
    if (i == 0 || i >= n || s[i] != ':')
        return refuse(err, errlen, "SAN URI:%s is not an absolute URI (scheme:...)", shown);
    if (!p->n_domains)
        return 0;
    domains_text(p, list, sizeof(list));
    int h = i + 1;
    if (!(n - h >= 2 && s[h] == '/' && s[h + 1] == '/'))
        return refuse(err, errlen,
                      "SAN URI:%s has no host to check against the template's allowed domains "
                      "(%s)",
                      shown, list);
    h += 2;
    int end = h;
    while (end < n && s[end] != '/' && s[end] != '?' && s[end] != '#')
        end++;
    /* The authority is [userinfo@]host[:port]; the host follows the last '@'. */
    for (int k = h; k < end; k++) {
        if (s[k] == '@')
            h = k + 1;
    }
    int hend = h;
    while (hend < end && s[hend] != ':')
        hend++;
    if (hend == h || s[h] == '[' || dns_check(s + h, hend - h, false, name) ||
        !domain_allowed(p, name))
        return refuse(err, errlen, "SAN URI:%s is outside the template's allowed domains (%s)",
                      shown, list);
    return 0;
}

/* The template's bit for a SAN's type (0 for types templates cannot allow), and its name. */
static unsigned san_type(const GENERAL_NAME *g, const char **name)
{
    switch (g->type) {
    case GEN_DNS:
        *name = "dns";
        return SAN_DNS;
    case GEN_IPADD:
        *name = "ip";
        return SAN_IP;
    case GEN_EMAIL:
        *name = "email";
        return SAN_EMAIL;
    case GEN_URI:
        *name = "uri";
        return SAN_URI;
    case GEN_OTHERNAME:
        *name = "otherName";
        return 0;
    case GEN_DIRNAME:
        *name = "directoryName";
        return 0;
    case GEN_RID:
        *name = "registeredID";
        return 0;
    case GEN_X400:
        *name = "x400Address";
        return 0;
    default:
        *name = "ediPartyName";
        return 0;
    }
}

int cf_ca_policy_check_sans(const struct cf_ca_policy *p, const GENERAL_NAMES *sans, char *err,
                            size_t errlen)
{
    int n = sans ? sk_GENERAL_NAME_num(sans) : 0;
    if (n == 0 && p->san_required)
        return refuse(err, errlen,
                      "the template requires at least one subject alternative "
                      "name, and there is none");
    if (n > p->san_max)
        return refuse(err, errlen,
                      "%d subject alternative names are more than the template's "
                      "maximum of %d",
                      n, p->san_max);
    for (int i = 0; i < n; i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, i);
        const char *tname;
        unsigned type = san_type(g, &tname);
        if (!(p->san_types & type)) {
            char list[64];
            san_type_list(p->san_types, list, sizeof(list));
            return refuse(err, errlen, "SAN type %s is not allowed by the template (it allows %s)",
                          tname, list);
        }
        int rc = 0;
        switch (g->type) {
        case GEN_DNS:
            rc = check_dns(p, g->d.dNSName, err, errlen);
            break;
        case GEN_EMAIL:
            rc = check_email(p, g->d.rfc822Name, err, errlen);
            break;
        case GEN_URI:
            rc = check_uri(p, g->d.uniformResourceIdentifier, err, errlen);
            break;
        default: {
            int len = ASN1_STRING_length(g->d.iPAddress);
            if (len != 4 && len != 16)
                rc = refuse(err, errlen,
                            "SAN IP address of %d bytes is malformed (4 or 16 "
                            "bytes expected)",
                            len);
            break;
        }
        }
        if (rc)
            return rc;
    }
    return 0;
}

const X509_EXTENSION *cf_ca_policy_key_usage_ext(const struct cf_ca_policy *p, EVP_PKEY *pkey)
{
    int f = key_family(pkey);
    return f < 0 ? NULL : p->ku_ext[f];
}

const X509_EXTENSION *cf_ca_policy_ext_key_usage_ext(const struct cf_ca_policy *p)
{
    return p->eku_ext;
}
