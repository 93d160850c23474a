/*
 * Names of the CA outcome classes of ca/ca.h. The strings are the BPMN error codes that Smart ID
 * processes catch, so they must never change.
 */
#include "ca/ca.h"

const char *cf_ca_status_code(enum cf_ca_status status)
{
    switch (status) {
    case CF_CA_OK:
        return "OK";
    case CF_CA_COMMON_ERROR:
        return "CommonError";
    case CF_CA_REQUEST_FAILED:
        return "CaRequestFailed";
    case CF_CA_CONNECTION_FAILED:
        return "CaConnectionFailed";
    }
    return "CaConnectionFailed";
}
