/*
 * What every CA connector of certflow (embedded, cmp, cm-rest) shares: the three ways a request
 * for a certificate can fail, as DESIGN.md §7 and the Smart ID task documentation name them.
 * A connector maps each of its failures onto one class, and the task layer turns the class into
 * the BPMN error of the same name, so that a process designer's boundary events mean the same
 * whatever CA sits behind a template.
 *
 * Nothing here allocates or keeps state; every function is safe from any thread.
 */
#ifndef CF_CA_CA_H
#define CF_CA_CA_H

/*
 * The outcome of a request to a CA. Unlike the CF_E* codes these are positive, so that a value of
 * one kind is never mistaken for the other; CF_CA_OK is 0, so `if (status)` reads as "failed".
 */
enum cf_ca_status {
    CF_CA_OK = 0,
    /* No valid request could be made: the CSR is missing, unparsable or its signature does not
     * verify, or data the request needs is missing or malformed. Retrying the same call cannot
     * help; the input must change. BPMN error "CommonError". */
    CF_CA_COMMON_ERROR = 1,
    /* The CA understood the request and said no: key type or size, key usage, subject or SAN
     * policy. BPMN error "CaRequestFailed". */
    CF_CA_REQUEST_FAILED = 2,
    /* The CA could not be reached or could not be talked to: refused connection, TLS failure,
     * timeout, a garbled answer, or for the embedded CA an internal failure such as an
     * unreadable key. A later retry may succeed. BPMN error "CaConnectionFailed". */
    CF_CA_CONNECTION_FAILED = 3,
};

/* "CommonError", "CaRequestFailed", "CaConnectionFailed": the BPMN error code a task throws for
 * the class; "OK" for CF_CA_OK and "CaConnectionFailed" for a value outside the enum (a failure
 * nobody classified is treated as the CA's, so that a retry policy gets to see it). */
const char *cf_ca_status_code(enum cf_ca_status status);

#endif
