/*
 * PKCS#10 decoding, certificate facts, PEM and PKCS#7 certs-only bundles (see ca/x509.h).
 *
 * The CSR is decoded with ASN.1 templates of our own that mirror OpenSSL's X509_REQ, except that
 * the SubjectPublicKeyInfo is kept as an algorithm and a bit string instead of being decoded on
 * the spot: OpenSSL 3.0 decodes a key through OSSL_DECODER, which for a P-256 request costs five
 * times the rest of the parse. The key is then built here with EVP_PKEY_fromdata() for the
 * algorithms certificate requests use, and by d2i_PUBKEY() for the rest, so the set of requests
 * accepted stays OpenSSL's. The CertificationRequestInfo keeps its original encoding (the _enc
 * template), because the signature covers those bytes and not a re-encoding of them.
 */
#include "ca/x509.h"

#include <limits.h>
#include <string.h>
#include <time.h>

#include <openssl/asn1t.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>

#include "base/base.h"

/* ---- ASN.1 templates ------------------------------------------------------------------------
 * asn1t.h's macros paste the type name into identifiers, so these structures need one-word
 * typedef names; they never leave this file. */

typedef struct csr_spki {
    X509_ALGOR *algor;
    ASN1_BIT_STRING *public_key;
} csr_spki;

ASN1_SEQUENCE(csr_spki) =
    {
        ASN1_SIMPLE(csr_spki, algor, X509_ALGOR),
        ASN1_SIMPLE(csr_spki, public_key, ASN1_BIT_STRING),
} static_ASN1_SEQUENCE_END(csr_spki)

        typedef struct csr_info {
    ASN1_ENCODING enc;
    ASN1_INTEGER *version;
    X509_NAME *subject;
    csr_spki *spki;
    STACK_OF(X509_ATTRIBUTE) * attributes;
} csr_info;

/* The attributes are OPTIONAL here although RFC 2986 requires them, as in OpenSSL's own template:
 * some old clients leave the empty [0] out. */
ASN1_SEQUENCE_enc(csr_info, enc, NULL) =
    {
        ASN1_SIMPLE(csr_info, version, ASN1_INTEGER),
        ASN1_SIMPLE(csr_info, subject, X509_NAME),
        ASN1_SIMPLE(csr_info, spki, csr_spki),
        ASN1_IMP_SET_OF_OPT(csr_info, attributes, X509_ATTRIBUTE, 0),
} static_ASN1_SEQUENCE_END_ref(csr_info, csr_info)

        typedef struct csr_req {
    csr_info *info;
    X509_ALGOR *sig_alg;
    ASN1_BIT_STRING *signature;
} csr_req;

ASN1_SEQUENCE(csr_req) =
    {
        ASN1_SIMPLE(csr_req, info, csr_info),
        ASN1_SIMPLE(csr_req, sig_alg, X509_ALGOR),
        ASN1_SIMPLE(csr_req, signature, ASN1_BIT_STRING),
} static_ASN1_SEQUENCE_END(csr_req)

    /* RSAPublicKey (RFC 8017 A.1.1), the content of an rsaEncryption key's bit string. */
    typedef struct rsa_pub {
    ASN1_INTEGER *n;
    ASN1_INTEGER *e;
} rsa_pub;

ASN1_SEQUENCE(rsa_pub) =
    {
        ASN1_SIMPLE(rsa_pub, n, ASN1_INTEGER),
        ASN1_SIMPLE(rsa_pub, e, ASN1_INTEGER),
} static_ASN1_SEQUENCE_END(rsa_pub)

        struct cf_csr {
    csr_req *req;
    EVP_PKEY *pkey;      /* NULL when the algorithm is unknown to OpenSSL */
    GENERAL_NAMES *sans; /* NULL when none were requested */
    uint8_t *der;
    size_t der_len;
};

/* The reason of OpenSSL's most recent error in this thread, for messages; "" when none. */
static const char *ossl_reason(void)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    return r ? r : "";
}

/* ---- PEM or DER ----------------------------------------------------------------------------- */

/* memmem() is a GNU extension, and certflow builds as plain POSIX. */
static bool contains(const uint8_t *hay, size_t n, const char *needle)
{
    size_t m = strlen(needle);
    for (size_t i = 0; i + m <= n; i++) {
        if (memcmp(hay + i, needle, m) == 0)
            return true;
    }
    return false;
}

static bool only_space(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r' && p[i] != '\n')
            return false;
    }
    return true;
}

/* Unwraps one PEM CSR into DER that the caller frees with OPENSSL_free(). */
static int pem_unwrap(const uint8_t *bytes, size_t len, uint8_t **der, size_t *der_len, char *err,
                      size_t errlen)
{
    if (!contains(bytes, len, "-----BEGIN ")) {
        cf_errf(err, errlen,
                "the CSR is neither DER (which starts with a SEQUENCE, byte 0x30) nor PEM "
                "(no \"-----BEGIN CERTIFICATE REQUEST-----\" line)");
        return CF_EPARSE;
    }
    BIO *bio = BIO_new_mem_buf(bytes, (int)len);
    if (!bio) {
        cf_errf(err, errlen, "out of memory");
        return CF_ENOMEM;
    }
    char *name = NULL, *header = NULL;
    unsigned char *data = NULL;
    long n = 0;
    int rc = 0;
    if (!PEM_read_bio(bio, &name, &header, &data, &n)) {
        cf_errf(err, errlen, "the CSR's PEM text is invalid: %s",
                *ossl_reason() ? ossl_reason() : "no complete BEGIN/END block");
        rc = CF_EPARSE;
        goto out;
    }
    if (strcmp(name, "CERTIFICATE REQUEST") != 0 && strcmp(name, "NEW CERTIFICATE REQUEST") != 0) {
        cf_errf(err, errlen, "the PEM block is a \"%s\", not a \"CERTIFICATE REQUEST\"", name);
        rc = CF_EPARSE;
        goto out;
    }
    if (header && *header) {
        cf_errf(err, errlen, "the CSR's PEM block has headers (such as Proc-Type); a CSR has none");
        rc = CF_EPARSE;
        goto out;
    }
    char *rest = NULL;
    long left = BIO_get_mem_data(bio, &rest);
    if (left > 0 && !only_space(rest, (size_t)left)) {
        cf_errf(err, errlen, "%ld bytes that are not white space follow the CSR's END line", left);
        rc = CF_EPARSE;
        goto out;
    }
    if (n <= 0) {
        cf_errf(err, errlen, "the CSR's PEM block is empty");
        rc = CF_EPARSE;
        goto out;
    }
    *der = data;
    *der_len = (size_t)n;
    data = NULL;
out:
    OPENSSL_free(name);
    OPENSSL_free(header);
    OPENSSL_free(data);
    BIO_free(bio);
    return rc;
}

/* ---- public keys ---------------------------------------------------------------------------- */

/* Builds a key from parameters; NULL on any failure (the caller falls back to the decoder). */
static EVP_PKEY *key_fromdata(const char *type, const OSSL_PARAM *params)
{
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
    EVP_PKEY *pkey = NULL;
    if (ctx && EVP_PKEY_fromdata_init(ctx) == 1)
        EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, (OSSL_PARAM *)params);
    EVP_PKEY_CTX_free(ctx);
    return pkey;
}

/* EC on a named curve: the bit string is the encoded point, which fromdata checks lies on the
 * curve, as the decoder does. */
static EVP_PKEY *fast_ec(const X509_ALGOR *alg, const ASN1_BIT_STRING *bits)
{
    int ptype;
    const void *pval;
    X509_ALGOR_get0(NULL, &ptype, &pval, alg);
    if (ptype != V_ASN1_OBJECT)
        return NULL;
    int curve = OBJ_obj2nid(pval);
    const char *group = curve == NID_undef ? NULL : OBJ_nid2sn(curve);
    if (!group || bits->length <= 0)
        return NULL;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, (char *)group, 0),
        OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, bits->data,
                                          (size_t)bits->length),
        OSSL_PARAM_construct_end(),
    };
    return key_fromdata("EC", params);
}

static EVP_PKEY *fast_rsa(const X509_ALGOR *alg, const ASN1_BIT_STRING *bits)
{
    int ptype;
    X509_ALGOR_get0(NULL, &ptype, NULL, alg);
    if (ptype != V_ASN1_NULL)
        return NULL;
    const unsigned char *p = bits->data;
    rsa_pub *rp = (rsa_pub *)ASN1_item_d2i(NULL, &p, bits->length, ASN1_ITEM_rptr(rsa_pub));
    EVP_PKEY *pkey = NULL;
    BIGNUM *n = NULL, *e = NULL;
    OSSL_PARAM_BLD *bld = NULL;
    OSSL_PARAM *params = NULL;
    /* Anything unusual (bytes after the SEQUENCE, a negative number) is left to the decoder, so
     * that what is accepted stays what OpenSSL accepts. */
    if (!rp || p != bits->data + bits->length || ASN1_STRING_type(rp->n) != V_ASN1_INTEGER ||
        ASN1_STRING_type(rp->e) != V_ASN1_INTEGER)
        goto out;
    n = ASN1_INTEGER_to_BN(rp->n, NULL);
    e = ASN1_INTEGER_to_BN(rp->e, NULL);
    bld = OSSL_PARAM_BLD_new();
    if (!n || !e || !bld || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e))
        goto out;
    params = OSSL_PARAM_BLD_to_param(bld);
    if (params)
        pkey = key_fromdata("RSA", params);
out:
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_free(n);
    BN_free(e);
    ASN1_item_free((ASN1_VALUE *)rp, ASN1_ITEM_rptr(rsa_pub));
    return pkey;
}

static EVP_PKEY *fast_raw(const char *name, const X509_ALGOR *alg, const ASN1_BIT_STRING *bits)
{
    int ptype;
    X509_ALGOR_get0(NULL, &ptype, NULL, alg);
    if (ptype != V_ASN1_UNDEF)
        return NULL;
    return EVP_PKEY_new_raw_public_key_ex(NULL, name, NULL, bits->data, (size_t)bits->length);
}

/*
 * The public key of the request: 0 with *out set; 0 with *out NULL when OpenSSL does not know the
 * algorithm at all; CF_EPARSE when it knows the algorithm and the key is malformed.
 */
static int build_key(const csr_spki *spki, EVP_PKEY **out, char *err, size_t errlen)
{
    const ASN1_OBJECT *obj;
    X509_ALGOR_get0(&obj, NULL, NULL, spki->algor);
    int nid = OBJ_obj2nid(obj);
    EVP_PKEY *pkey = NULL;
    switch (nid) {
    case NID_X9_62_id_ecPublicKey:
        pkey = fast_ec(spki->algor, spki->public_key);
        break;
    case NID_rsaEncryption:
        pkey = fast_rsa(spki->algor, spki->public_key);
        break;
    case NID_ED25519:
        pkey = fast_raw("ED25519", spki->algor, spki->public_key);
        break;
    case NID_ED448:
        pkey = fast_raw("ED448", spki->algor, spki->public_key);
        break;
    default:
        break;
    }
    if (!pkey) {
        unsigned char *der = NULL;
        int n = ASN1_item_i2d((const ASN1_VALUE *)spki, &der, ASN1_ITEM_rptr(csr_spki));
        if (n > 0) {
            const unsigned char *p = der;
            pkey = d2i_PUBKEY(NULL, &p, n);
        }
        OPENSSL_free(der);
    }
    *out = pkey;
    if (pkey)
        return 0;
    /* An algorithm OpenSSL has a key method for is one we could have read: the key is broken. */
    if (nid != NID_undef && EVP_PKEY_asn1_find(NULL, nid)) {
        cf_errf(err, errlen, "the CSR's %s public key is malformed%s%s", OBJ_nid2sn(nid),
                *ossl_reason() ? ": " : "", ossl_reason());
        return CF_EPARSE;
    }
    return 0;
}

/* ---- the extensionRequest attribute --------------------------------------------------------- */

static int read_sans(const STACK_OF(X509_EXTENSION) * exts, GENERAL_NAMES **out, char *err,
                     size_t errlen)
{
    for (int i = 0; i < sk_X509_EXTENSION_num(exts); i++) {
        X509_EXTENSION *ext = sk_X509_EXTENSION_value(exts, i);
        if (OBJ_obj2nid(X509_EXTENSION_get_object(ext)) != NID_subject_alt_name)
            continue;
        if (*out) {
            cf_errf(err, errlen, "the CSR requests two subjectAltName extensions");
            return CF_EPARSE;
        }
        const ASN1_OCTET_STRING *v = X509_EXTENSION_get_data(ext);
        const unsigned char *p = ASN1_STRING_get0_data(v);
        GENERAL_NAMES *gens = d2i_GENERAL_NAMES(NULL, &p, ASN1_STRING_length(v));
        if (!gens || p != ASN1_STRING_get0_data(v) + ASN1_STRING_length(v)) {
            GENERAL_NAMES_free(gens);
            cf_errf(err, errlen, "the CSR's requested subjectAltName is malformed");
            return CF_EPARSE;
        }
        *out = gens;
    }
    return 0;
}

static int read_attributes(struct cf_csr *csr, char *err, size_t errlen)
{
    const STACK_OF(X509_ATTRIBUTE) *attrs = csr->req->info->attributes;
    bool seen = false;
    for (int i = 0; i < sk_X509_ATTRIBUTE_num(attrs); i++) {
        X509_ATTRIBUTE *attr = sk_X509_ATTRIBUTE_value(attrs, i);
        int nid = OBJ_obj2nid(X509_ATTRIBUTE_get0_object(attr));
        if (nid != NID_ext_req && nid != NID_ms_ext_req)
            continue;
        if (seen) {
            cf_errf(err, errlen, "the CSR has more than one extensionRequest attribute");
            return CF_EPARSE;
        }
        seen = true;
        if (X509_ATTRIBUTE_count(attr) != 1) {
            cf_errf(err, errlen,
                    "the CSR's extensionRequest attribute has %d values; it must have "
                    "exactly one",
                    X509_ATTRIBUTE_count(attr));
            return CF_EPARSE;
        }
        ASN1_TYPE *t = X509_ATTRIBUTE_get0_type(attr, 0);
        STACK_OF(X509_EXTENSION) *exts =
            t && t->type == V_ASN1_SEQUENCE
                ? ASN1_TYPE_unpack_sequence(ASN1_ITEM_rptr(X509_EXTENSIONS), t)
                : NULL;
        if (!exts) {
            cf_errf(err, errlen, "the CSR's extensionRequest attribute is malformed");
            return CF_EPARSE;
        }
        int rc = read_sans(exts, &csr->sans, err, errlen);
        sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
        if (rc)
            return rc;
    }
    /* RFC 5280 wants at least one name in a subjectAltName; an empty one asks for nothing. */
    if (csr->sans && sk_GENERAL_NAME_num(csr->sans) == 0) {
        GENERAL_NAMES_free(csr->sans);
        csr->sans = NULL;
    }
    return 0;
}

/* ---- decoding ------------------------------------------------------------------------------- */

static int decode_der(struct cf_csr *csr, char *err, size_t errlen)
{
    const unsigned char *p = csr->der;
    csr->req = (csr_req *)ASN1_item_d2i(NULL, &p, (long)csr->der_len, ASN1_ITEM_rptr(csr_req));
    if (!csr->req) {
        cf_errf(err, errlen, "the CSR is not a DER PKCS#10 request%s%s", *ossl_reason() ? ": " : "",
                ossl_reason());
        return CF_EPARSE;
    }
    size_t used = (size_t)(p - csr->der);
    if (used != csr->der_len) {
        cf_errf(err, errlen, "trailing data: %zu bytes follow the CSR (%zu bytes)",
                csr->der_len - used, used);
        return CF_EPARSE;
    }
    const ASN1_INTEGER *v = csr->req->info->version;
    if (ASN1_STRING_type(v) != V_ASN1_INTEGER || ASN1_INTEGER_get(v) != 0) {
        cf_errf(err, errlen, "the CSR's version is not 1 (encoded 0), the only PKCS#10 version");
        return CF_EPARSE;
    }
    int rc = build_key(csr->req->info->spki, &csr->pkey, err, errlen);
    if (rc)
        return rc;
    return read_attributes(csr, err, errlen);
}

int cf_csr_decode(const uint8_t *bytes, size_t len, struct cf_csr **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!bytes || !len) {
        cf_errf(err, errlen, "no CSR: the request is empty");
        return CF_EINVAL;
    }
    if (len > CF_CSR_MAX_BYTES) {
        cf_errf(err, errlen, "the CSR is %zu bytes, more than the limit of %d", len,
                CF_CSR_MAX_BYTES);
        return CF_ELIMIT;
    }
    ERR_set_mark();
    struct cf_csr *csr = cf_xcalloc(1, sizeof(*csr));
    int rc = 0;
    if (bytes[0] == 0x30) {
        csr->der = cf_xmemdup(bytes, len);
        csr->der_len = len;
    } else {
        uint8_t *der = NULL;
        size_t der_len = 0;
        rc = pem_unwrap(bytes, len, &der, &der_len, err, errlen);
        if (!rc) {
            csr->der = cf_xmemdup(der, der_len);
            csr->der_len = der_len;
            OPENSSL_free(der);
        }
    }
    if (!rc)
        rc = decode_der(csr, err, errlen);
    ERR_pop_to_mark();
    if (rc) {
        cf_csr_free(csr);
        return rc;
    }
    *out = csr;
    return 0;
}

void cf_csr_free(struct cf_csr *csr)
{
    if (!csr)
        return;
    ASN1_item_free((ASN1_VALUE *)csr->req, ASN1_ITEM_rptr(csr_req));
    EVP_PKEY_free(csr->pkey);
    GENERAL_NAMES_free(csr->sans);
    free(csr->der);
    free(csr);
}

const uint8_t *cf_csr_der(const struct cf_csr *csr, size_t *len)
{
    *len = csr->der_len;
    return csr->der;
}

const X509_NAME *cf_csr_subject(const struct cf_csr *csr)
{
    return csr->req->info->subject;
}

EVP_PKEY *cf_csr_pubkey(const struct cf_csr *csr)
{
    return csr->pkey;
}

const char *cf_csr_key_algorithm(const struct cf_csr *csr, char *buf, size_t buflen)
{
    const ASN1_OBJECT *obj;
    X509_ALGOR_get0(&obj, NULL, NULL, csr->req->info->spki->algor);
    if (buflen && OBJ_obj2txt(buf, (int)buflen, obj, 0) <= 0)
        buf[0] = '\0';
    return buf;
}

void cf_csr_spki(const struct cf_csr *csr, const X509_ALGOR **alg, const ASN1_BIT_STRING **bits)
{
    *alg = csr->req->info->spki->algor;
    *bits = csr->req->info->spki->public_key;
}

const GENERAL_NAMES *cf_csr_sans(const struct cf_csr *csr)
{
    return csr->sans;
}

int cf_csr_verify(const struct cf_csr *csr, char *err, size_t errlen)
{
    if (!csr->pkey) {
        char alg[80];
        cf_errf(err, errlen, "the CSR's signature cannot be checked: key algorithm %s is unknown",
                cf_csr_key_algorithm(csr, alg, sizeof(alg)));
        return CF_EINVAL;
    }
    ERR_set_mark();
    const csr_req *r = csr->req;
    int ok = ASN1_item_verify_ex(ASN1_ITEM_rptr(csr_info), r->sig_alg, r->signature, r->info, NULL,
                                 csr->pkey, NULL, NULL);
    int rc = 0;
    if (ok != 1) {
        cf_errf(err, errlen,
                "the CSR's signature does not verify with its public key (the request was altered "
                "or not signed with the key it names)%s%s",
                *ossl_reason() ? ": " : "", ossl_reason());
        rc = CF_EAUTH;
    }
    ERR_pop_to_mark();
    return rc;
}

/* ---- certificate facts ---------------------------------------------------------------------- */

/* Days since 1970-01-01 of a civil date (proleptic Gregorian), H. Hinnant's algorithm; timegm()
 * is not POSIX. */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

int cf_asn1_time_ms(const ASN1_TIME *t, uint64_t *out)
{
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    if (!t || ASN1_TIME_to_tm(t, &tm) != 1)
        return CF_EPARSE;
    int64_t days = days_from_civil((int64_t)tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday);
    int64_t secs = days * 86400 + tm.tm_hour * 3600 + tm.tm_min * 60 + tm.tm_sec;
    *out = secs < 0 ? 0 : (uint64_t)secs * 1000u;
    return 0;
}

static char *name_text(const X509_NAME *name)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *out = NULL;
    if (b && X509_NAME_print_ex(b, name, 0, XN_FLAG_RFC2253) >= 0) {
        char *data = NULL;
        long n = BIO_get_mem_data(b, &data);
        /* An empty name prints nothing, and the BIO then has no buffer at all. */
        if (n > 0 && data)
            out = cf_xstrndup(data, (size_t)n);
        else if (n == 0)
            out = cf_xstrdup("");
    }
    BIO_free(b);
    return out;
}

static char *serial_text(const ASN1_INTEGER *serial)
{
    BIGNUM *bn = ASN1_INTEGER_to_BN(serial, NULL);
    char *h = bn ? BN_bn2hex(bn) : NULL;
    char *out = h ? cf_xstrdup(h) : NULL;
    OPENSSL_free(h);
    BN_free(bn);
    return out;
}

char *cf_cert_key_id_hex(const X509 *x, bool authority)
{
    /* The getters cache the decoded extensions in the X509 (thread-safely in OpenSSL 3), which
     * is why they take a non-const pointer; nothing the caller sees changes. */
    X509 *m = (X509 *)x;
    ERR_set_mark();
    const ASN1_OCTET_STRING *id =
        authority ? X509_get0_authority_key_id(m) : X509_get0_subject_key_id(m);
    ERR_pop_to_mark();
    if (!id)
        return NULL;
    static const char hex[] = "0123456789ABCDEF";
    const unsigned char *p = ASN1_STRING_get0_data(id);
    int n = ASN1_STRING_length(id);
    if (!p || n <= 0)
        return NULL;
    char *out = cf_xmalloc((size_t)n * 2 + 1);
    for (int i = 0; i < n; i++) {
        out[i * 2] = hex[p[i] >> 4];
        out[i * 2 + 1] = hex[p[i] & 15];
    }
    out[(size_t)n * 2] = '\0';
    return out;
}

int cf_cert_info_from_x509(const X509 *x, const uint8_t *der, size_t len, struct cf_cert_info *out,
                           char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    ERR_set_mark();
    out->serial = serial_text(X509_get0_serialNumber(x));
    out->issuer = name_text(X509_get_issuer_name(x));
    out->subject = name_text(X509_get_subject_name(x));
    int rc = 0;
    if (!out->serial || !out->issuer || !out->subject) {
        cf_errf(err, errlen, "the certificate's serial or names cannot be read%s%s",
                *ossl_reason() ? ": " : "", ossl_reason());
        rc = CF_EPARSE;
    } else if (cf_asn1_time_ms(X509_get0_notBefore(x), &out->not_before_ms) ||
               cf_asn1_time_ms(X509_get0_notAfter(x), &out->not_after_ms)) {
        cf_errf(err, errlen, "the certificate's validity dates are invalid");
        rc = CF_EPARSE;
    }
    ERR_pop_to_mark();
    if (rc) {
        cf_cert_info_clear(out);
        return rc;
    }
    cf_sha256_hex(der, len, out->sha256);
    out->ski = cf_cert_key_id_hex(x, false);
    return 0;
}

int cf_cert_info_from_der(const uint8_t *der, size_t len, struct cf_cert_info *out, char *err,
                          size_t errlen)
{
    memset(out, 0, sizeof(*out));
    if (!der || !len || len > (size_t)LONG_MAX) {
        cf_errf(err, errlen, "no certificate: the input is empty");
        return CF_EINVAL;
    }
    ERR_set_mark();
    const unsigned char *p = der;
    X509 *x = d2i_X509(NULL, &p, (long)len);
    int rc = 0;
    if (!x) {
        cf_errf(err, errlen, "not a DER X.509 certificate%s%s", *ossl_reason() ? ": " : "",
                ossl_reason());
        rc = CF_EPARSE;
    } else if ((size_t)(p - der) != len) {
        cf_errf(err, errlen, "trailing data: %zu bytes follow the certificate",
                len - (size_t)(p - der));
        rc = CF_EPARSE;
    }
    ERR_pop_to_mark();
    if (!rc)
        rc = cf_cert_info_from_x509(x, der, len, out, err, errlen);
    X509_free(x);
    return rc;
}

void cf_cert_info_clear(struct cf_cert_info *info)
{
    if (!info)
        return;
    free(info->serial);
    free(info->issuer);
    free(info->subject);
    free(info->ski);
    memset(info, 0, sizeof(*info));
}

char *cf_cert_pem(const uint8_t *der, size_t len)
{
    struct cf_buf b;
    cf_buf_init(&b);
    cf_buf_puts(&b, "-----BEGIN CERTIFICATE-----\n");
    /* 48 bytes of DER make one 64-column line of Base64. */
    unsigned char line[65];
    for (size_t off = 0; off < len; off += 48) {
        size_t n = len - off < 48 ? len - off : 48;
        int w = EVP_EncodeBlock(line, der + off, (int)n);
        cf_buf_append(&b, line, (size_t)w);
        cf_buf_putc(&b, '\n');
    }
    cf_buf_puts(&b, "-----END CERTIFICATE-----\n");
    return cf_buf_steal(&b);
}

/* ---- PKCS#7 certs-only ---------------------------------------------------------------------- */

static void der_put_len(struct cf_buf *b, size_t len)
{
    if (len < 0x80) {
        cf_buf_putc(b, (char)len);
        return;
    }
    uint8_t tmp[sizeof(size_t)];
    size_t n = 0;
    for (size_t v = len; v; v >>= 8)
        tmp[n++] = (uint8_t)(v & 0xff);
    cf_buf_putc(b, (char)(0x80 | n));
    while (n)
        cf_buf_putc(b, (char)tmp[--n]);
}

/* Appends tag, length and content to `out`. */
static void der_wrap(struct cf_buf *out, uint8_t tag, const void *content, size_t len)
{
    cf_buf_putc(out, (char)tag);
    der_put_len(out, len);
    cf_buf_append(out, content, len);
}

/* True when `der` is exactly one SEQUENCE with a definite length. */
static bool der_is_one_sequence(const uint8_t *der, size_t len)
{
    if (len < 2 || der[0] != 0x30)
        return false;
    size_t hdr = 2, body;
    if (der[1] < 0x80) {
        body = der[1];
    } else {
        size_t n = der[1] & 0x7f;
        if (n == 0 || n > 4 || len < 2 + n)
            return false;
        body = 0;
        for (size_t i = 0; i < n; i++)
            body = (body << 8) | der[2 + i];
        hdr += n;
    }
    return body == len - hdr;
}

int cf_pkcs7_certs_only(const uint8_t *const *ders, const size_t *lens, size_t n, uint8_t **out,
                        size_t *outlen, char *err, size_t errlen)
{
    /* OIDs 1.2.840.113549.1.7.2 (signedData) and 1.2.840.113549.1.7.1 (data), with tag and
     * length. */
    static const uint8_t oid_signed[] = {0x06, 0x09, 0x2a, 0x86, 0x48, 0x86,
                                         0xf7, 0x0d, 0x01, 0x07, 0x02};
    static const uint8_t oid_data[] = {0x06, 0x09, 0x2a, 0x86, 0x48, 0x86,
                                       0xf7, 0x0d, 0x01, 0x07, 0x01};
    static const uint8_t version1[] = {0x02, 0x01, 0x01};
    static const uint8_t empty_set[] = {0x31, 0x00};
    struct cf_buf certs, sd, tmp, ci;
    cf_buf_init(&certs);
    cf_buf_init(&sd);
    cf_buf_init(&tmp);
    cf_buf_init(&ci);
    for (size_t i = 0; i < n; i++) {
        if (!der_is_one_sequence(ders[i], lens[i])) {
            cf_errf(err, errlen, "certificate %zu of %zu is not one DER SEQUENCE", i + 1, n);
            cf_buf_free(&certs);
            return CF_EPARSE;
        }
        cf_buf_append(&certs, ders[i], lens[i]);
    }
    /* SignedData: version 1, no digest algorithms, content type data without content, the
     * certificates as [0] IMPLICIT in the order given (as OpenSSL writes them), no signers. */
    cf_buf_append(&tmp, version1, sizeof(version1));
    cf_buf_append(&tmp, empty_set, sizeof(empty_set));
    der_wrap(&tmp, 0x30, oid_data, sizeof(oid_data));
    if (n)
        der_wrap(&tmp, 0xa0, certs.data, certs.len);
    cf_buf_append(&tmp, empty_set, sizeof(empty_set));
    der_wrap(&sd, 0x30, tmp.data, tmp.len);
    cf_buf_reset(&tmp);
    cf_buf_append(&tmp, oid_signed, sizeof(oid_signed));
    der_wrap(&tmp, 0xa0, sd.data, sd.len);
    der_wrap(&ci, 0x30, tmp.data, tmp.len);
    cf_buf_free(&certs);
    cf_buf_free(&sd);
    cf_buf_free(&tmp);
    *outlen = ci.len;
    *out = (uint8_t *)cf_buf_steal(&ci);
    return 0;
}
