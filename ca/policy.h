/*
 * A certificate template's procedure: what a certificate issued under the template looks like and
 * which requests the template accepts. The store keeps it as JSON text in
 * certificate_template.procedure; this file parses that text strictly and answers the questions a
 * CA asks while issuing (is this key acceptable, this subject, these SANs; which key usage, which
 * validity). It knows nothing of any CA: ca/embedded.c enforces it, and the other connectors may
 * check a request against it before sending it to a CA that has its own policy.
 *
 * The JSON object, every field optional ("{}" is the default procedure):
 *
 *   "validity":         "P90D" (ISO-8601 duration, at least one minute) or 90 (days).
 *                       Default "P1Y". The certificate's notAfter is notBefore + validity - 1 s
 *                       (RFC 5280 validity is inclusive), cut to the issuing CA's notAfter.
 *   "keyTypes":         {"RSA": 2048, "EC": ["P-256", "P-384"], "Ed25519": false, "Ed448": false}
 *                       RSA: smallest modulus in bits, at least 2048, or false; EC: the named
 *                       curves allowed, of P-256, P-384 and P-521. The object replaces the
 *                       default as a whole: a key type it does not name is not allowed.
 *                       Default {"RSA": 2048, "EC": ["P-256", "P-384"]}.
 *   "keyUsage":         names of RFC 5280 §4.2.1.3 bits: digitalSignature, nonRepudiation (or
 *                       contentCommitment), keyEncipherment, dataEncipherment, keyAgreement,
 *                       encipherOnly, decipherOnly. keyCertSign and cRLSign are refused: the
 *                       template issues end-entity certificates. Default digitalSignature and
 *                       keyEncipherment. A certificate gets the bits its key can perform (RFC 5480,
 *                       RFC 8410): keyEncipherment and dataEncipherment only for RSA,
 *                       keyAgreement (with encipherOnly/decipherOnly) only for EC, and EdDSA only
 *                       digitalSignature and nonRepudiation. Every key type the template allows
 *                       must keep at least one bit, or the procedure is refused.
 *   "extendedKeyUsage": names (serverAuth, clientAuth, codeSigning, emailProtection,
 *                       timeStamping, OCSPSigning, msSmartcardLogin, ipsecIKE) or dotted OIDs;
 *                       [] for none. Default serverAuth and clientAuth. timeStamping must stand
 *                       alone and makes the extension critical (RFC 3161 §2.3).
 *   "subject":          {"required": ["CN"], "allowed": ["O", "OU", "C", "L", "ST"],
 *                        "source": "any"}
 *                       Attribute short names: CN C ST L street O OU title GN SN initials
 *                       pseudonym serialNumber emailAddress DC UID postalCode
 *                       organizationIdentifier. Required attributes are allowed too; CN and C may
 *                       appear once. Default: CN required; O, OU, C, L, ST allowed.
 *   "san":              {"types": ["dns", "ip", "email", "uri"], "max": 20, "domains": [],
 *                        "wildcards": false, "required": false, "source": "any"}
 *                       domains: a name is allowed when it equals an entry or lies below it
 *                       ("example.com" allows example.com and a.b.example.com); [] allows every
 *                       domain. The list applies to DNS names, to the domain of e-mail addresses
 *                       and to the host of URIs (a URI without a DNS host is then refused); IP
 *                       addresses are not constrained by it. wildcards allows "*.example.com"
 *                       (the whole leftmost label only).
 *   "source" (in subject and san): where the certificate's subject or SANs come from. "csr":
 *                       from the request, and a call with an override is refused; "override":
 *                       from the caller (executeModifiedPKCS10RequestTask), and a call without
 *                       one is refused; "any" (default): the override when there is one, else
 *                       the request.
 *   "publication":      the name of a publication procedure, carried for the connector and the
 *                       publication task; not interpreted here.
 *
 * Unknown fields and wrong types are refused with a message naming the field, such as
 * "procedure.keyTypes.RSA: 1024 bits is below 2048, the smallest RSA key certflow issues for".
 *
 * Ownership: a policy is created by cf_ca_policy_parse() and freed by cf_ca_policy_free();
 * pointers it returns live as long as it.
 * Threads: a parsed policy is immutable; any number of threads may use one at once.
 * Errors: parsing returns 0, CF_EPARSE (the message names the field) or CF_EINVAL (NULL input).
 * The checks return 0 when the template allows the request and CF_EPERM when it does not, with a
 * message meant for the person who made the request ("RSA key of 1024 bits is below the
 * template's minimum of 2048").
 */
#ifndef CF_CA_POLICY_H
#define CF_CA_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "base/iso8601.h"

struct cf_ca_policy;

/* Where a certificate's subject or SANs come from; see "source" above. */
enum cf_ca_source {
    CF_CA_SOURCE_ANY = 0,
    CF_CA_SOURCE_CSR = 1,
    CF_CA_SOURCE_OVERRIDE = 2,
};

/* Parses the procedure text; "{}" gives the defaults. */
int cf_ca_policy_parse(const char *json, struct cf_ca_policy **out, char *err, size_t errlen);
/* The same from a parsed JSON value (the templates API has one); `procedure` is only read. */
int cf_ca_policy_from_json(const json_t *procedure, struct cf_ca_policy **out, char *err,
                           size_t errlen);
void cf_ca_policy_free(struct cf_ca_policy *p);

/* The procedure with every default filled in, as compact JSON that cf_ca_policy_parse() reads
 * back to the same policy; for the templates API to show what a template means. Caller frees. */
char *cf_ca_policy_to_json(const struct cf_ca_policy *p);

/* The publication procedure's name, or NULL when the template names none. */
const char *cf_ca_policy_publication(const struct cf_ca_policy *p);
enum cf_ca_source cf_ca_policy_subject_source(const struct cf_ca_policy *p);
enum cf_ca_source cf_ca_policy_san_source(const struct cf_ca_policy *p);
const struct cf_iso_duration *cf_ca_policy_validity(const struct cf_ca_policy *p);

/*
 * Is the key acceptable: type allowed, RSA modulus at least the minimum and public exponent odd
 * and at least 3, EC on an allowed named curve. 0 or CF_EPERM.
 */
int cf_ca_policy_check_key(const struct cf_ca_policy *p, EVP_PKEY *pkey, char *err, size_t errlen);

/* Is every attribute of the subject allowed, every required one present, none empty or longer
 * than RFC 5280's upper bound (64 characters for CN, O, OU), CN and C at most once. 0 or
 * CF_EPERM. */
int cf_ca_policy_check_subject(const struct cf_ca_policy *p, const X509_NAME *subject, char *err,
                               size_t errlen);

/*
 * Are the SANs acceptable: each of an allowed type and well formed (a DNS name of letters, digits
 * and hyphens, an e-mail address with such a domain, an absolute URI, an IP address of 4 or 16
 * bytes), within the allowed domains, no more than the maximum, and at least one when the
 * template requires it. `sans` may be NULL (none). 0 or CF_EPERM.
 */
int cf_ca_policy_check_sans(const struct cf_ca_policy *p, const GENERAL_NAMES *sans, char *err,
                            size_t errlen);

/* The keyUsage extension (critical) for a certificate of this key, with the bits its algorithm
 * can perform; NULL when the template does not allow the key's type (cf_ca_policy_check_key()
 * refuses such keys first). Shared and read-only: add it with X509_add_ext(), which copies. */
const X509_EXTENSION *cf_ca_policy_key_usage_ext(const struct cf_ca_policy *p, EVP_PKEY *pkey);

/* The extendedKeyUsage extension, or NULL when the template sets none. Shared and read-only. */
const X509_EXTENSION *cf_ca_policy_ext_key_usage_ext(const struct cf_ca_policy *p);

/* The NID of a subject attribute short name from the list above ("CN" -> NID_commonName), or
 * NID_undef for any other name; for callers that build a subject from names. */
int cf_ca_policy_attr_nid(const char *short_name);

#endif
