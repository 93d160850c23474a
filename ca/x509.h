/*
 * Certificate formats that every part of the CA side needs, independent of any CA: decoding and
 * checking PKCS#10 requests (CSRs), the facts about a certificate that the certificates store
 * keeps, PEM text of a certificate, and a PKCS#7 "certs-only" bundle of a chain. Policy (what a
 * template allows) is ca/policy.h; issuing is ca/embedded.h.
 *
 * CSRs are decoded with certflow's own ASN.1 templates for the PKCS#10 structure (RFC 2986),
 * built from OpenSSL's public asn1t.h macros, and common public keys (EC on a named curve, RSA,
 * Ed25519, Ed448) are built with EVP_PKEY_fromdata(). The reason is speed: d2i_X509_REQ() in
 * OpenSSL 3.0 decodes every public key through the OSSL_DECODER machinery, which makes it about
 * five times slower than this decoder for a P-256 request, and slower than signing the
 * certificate. Keys of other algorithms fall back to d2i_PUBKEY(). Nothing is accepted that
 * d2i_X509_REQ() refuses (including its tolerance of a missing attributes field is kept); this
 * decoder is stricter about the version, the extensionRequest attribute and keys that do not
 * decode, which OpenSSL leaves for later. tools/fuzz/fuzz_pkcs10.c checks the two against each
 * other.
 *
 * Ownership: functions named _decode, _pem and _certs_only return memory the caller frees (with
 * cf_csr_free(), cf_cert_info_clear() or free()); pointers returned by cf_csr_* getters belong to
 * the cf_csr and live as long as it. Inputs are only read during the call.
 * Threads: no global state; a cf_csr may be read from several threads at once (the getters and
 * cf_csr_verify() do not modify it) but freed only once nobody uses it.
 * Errors: 0 or a negative CF_E* code, with a message for people in `err` (NULL allowed).
 * OpenSSL's per-thread error queue is left as the call found it.
 */
#ifndef CF_CA_X509_H
#define CF_CA_X509_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

/* Larger CSRs are refused before any parsing; a CSR with a 16384-bit RSA key and a hundred SANs
 * is well under 16 KiB. */
#define CF_CSR_MAX_BYTES 65536

/* A decoded PKCS#10 request. Opaque. */
struct cf_csr;

/*
 * Decodes a CSR given as DER, or as PEM text ("-----BEGIN CERTIFICATE REQUEST-----", or "NEW
 * CERTIFICATE REQUEST" as old Netscape and Microsoft tools write it). Bytes that start with a DER
 * SEQUENCE tag (0x30) are DER and must be exactly one CSR with nothing after it. Anything else is
 * read as PEM: text before the BEGIN line is allowed (openssl req -text writes some), anything
 * but white space after the END line is not, and neither are PEM headers (Proc-Type, ...).
 *
 * Checked here: the structure, version 1 (0), the public key when its algorithm is known (an EC
 * point on its curve, an RSA modulus), and the extensionRequest attribute when there is one (at
 * most one, with one value, holding well-formed extensions, at most one subjectAltName).
 * Not checked here: the signature (cf_csr_verify()) and anything a template decides.
 *
 * CF_EPARSE for anything that is not such a CSR, CF_ELIMIT beyond CF_CSR_MAX_BYTES, CF_EINVAL for
 * NULL or empty input; the message says what is wrong ("trailing data: 3 bytes follow the CSR").
 */
int cf_csr_decode(const uint8_t *bytes, size_t len, struct cf_csr **out, char *err, size_t errlen);
void cf_csr_free(struct cf_csr *csr);

/* The DER of the request (after PEM was unwrapped), e.g. for d2i_X509_REQ() in a connector that
 * needs an X509_REQ. */
const uint8_t *cf_csr_der(const struct cf_csr *csr, size_t *len);

/* The subject as requested. Never NULL (an empty name has no entries). */
const X509_NAME *cf_csr_subject(const struct cf_csr *csr);

/* The requested public key, or NULL when its algorithm is one OpenSSL 3.0 does not know (for
 * example a post-quantum key); cf_csr_key_algorithm() then names it for a message. */
EVP_PKEY *cf_csr_pubkey(const struct cf_csr *csr);

/* The key's algorithm as OpenSSL's short name ("id-ecPublicKey", "rsaEncryption", "ED25519") or
 * as a dotted OID when OpenSSL has no name for it, in `buf` of `buflen` bytes; returns `buf`. */
const char *cf_csr_key_algorithm(const struct cf_csr *csr, char *buf, size_t buflen);

/* The SubjectPublicKeyInfo as it appears in the request: the algorithm with its parameters and
 * the key's bit string, to be copied into a certificate without re-encoding the key. */
void cf_csr_spki(const struct cf_csr *csr, const X509_ALGOR **alg, const ASN1_BIT_STRING **bits);

/* The subjectAltName of the extensionRequest attribute, or NULL when the CSR asks for none. Other
 * requested extensions are not offered: a template decides key usage, basic constraints and the
 * rest, never the requester. */
const GENERAL_NAMES *cf_csr_sans(const struct cf_csr *csr);

/*
 * Checks the request's signature with its own public key: proof that whoever made the request
 * holds the private key, and that the request was not altered. 0 when it verifies; CF_EAUTH when
 * it does not; CF_EINVAL when the key's algorithm is unknown, so nothing can be verified.
 */
int cf_csr_verify(const struct cf_csr *csr, char *err, size_t errlen);

/*
 * The facts about a certificate that the certificates store keeps (schema/003_daemon.sql) and
 * that the push endpoint and the CA both record, formatted the same way everywhere so that the
 * store can compare them as text.
 */
struct cf_cert_info {
    char *serial;  /* upper-case hex of the serial's bytes, as BN_bn2hex() writes it: an even
                      number of digits, no separators ("0A1B..."); "-" first for a negative
                      serial, which only non-conforming certificates have */
    char *issuer;  /* OpenSSL's RFC 2253 text (XN_FLAG_RFC2253: most specific RDN first,
                      non-ASCII bytes escaped as \XX) */
    char *subject; /* the same for the subject */
    uint64_t not_before_ms; /* milliseconds since the epoch; a time before 1970 reads as 0 */
    uint64_t not_after_ms;
    char sha256[65]; /* of the DER, lower-case hex */
    char *ski;       /* the subjectKeyIdentifier extension's key identifier as upper-case hex
                        without separators, as cf_cert_key_id_hex() writes it; NULL when the
                        certificate has none */
};

/* Fills `out` from exactly one DER certificate (bytes after it are CF_EPARSE). On failure `out`
 * is left zeroed, so cf_cert_info_clear() is always safe. */
int cf_cert_info_from_der(const uint8_t *der, size_t len, struct cf_cert_info *out, char *err,
                          size_t errlen);
/* The same from a parsed certificate and its DER (the caller has both after signing). */
int cf_cert_info_from_x509(const X509 *x, const uint8_t *der, size_t len, struct cf_cert_info *out,
                           char *err, size_t errlen);
/* Frees the strings and zeroes `info`; NULL is a no-op. */
void cf_cert_info_clear(struct cf_cert_info *info);

/* The key identifier of a certificate's subjectKeyIdentifier extension (`authority` false) or
 * of its authorityKeyIdentifier extension (`authority` true) as upper-case hex without
 * separators ("9A0B..."), the form the certificates store keeps and searches; NULL when the
 * certificate has no such extension, or it cannot be read. The caller frees the text. */
char *cf_cert_key_id_hex(const X509 *x, bool authority);

/* "-----BEGIN CERTIFICATE-----\n" + Base64 in 64-column lines + "-----END CERTIFICATE-----\n".
 * The DER is not parsed; the caller frees the text. */
char *cf_cert_pem(const uint8_t *der, size_t len);

/*
 * A DER PKCS#7 SignedData without signers or content ("certs-only", as `openssl crl2pkcs7
 * -nocrl` writes and EST's /cacerts answers) holding the `n` DER certificates in the order given.
 * Each certificate must be one DER SEQUENCE; it is copied as is, not parsed, so that bundling a
 * chain costs no certificate decoding. CF_EPARSE names the first certificate that is not a
 * SEQUENCE. The caller frees *out.
 */
int cf_pkcs7_certs_only(const uint8_t *const *ders, const size_t *lens, size_t n, uint8_t **out,
                        size_t *outlen, char *err, size_t errlen);

/* Milliseconds since the epoch of an ASN1_TIME; CF_EPARSE when it is not a valid time. A time
 * before 1970 is 0, as in struct cf_cert_info. */
int cf_asn1_time_ms(const ASN1_TIME *t, uint64_t *out);

#endif
