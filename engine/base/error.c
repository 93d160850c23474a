/*
 * Names and texts of the CF_E* codes, generated from the table in certflow/error.h.
 */
#include "certflow/error.h"

const char *cf_err_name(int err)
{
    switch (err) {
#define CF__ERR_NAME(name, code, text)                                                             \
    case CF_##name:                                                                                \
        return "CF_" #name;
        CF_ERRNO_MAP(CF__ERR_NAME)
#undef CF__ERR_NAME
    }
    return "CF_EUNKNOWN";
}

const char *cf_strerror(int err)
{
    switch (err) {
#define CF__ERR_TEXT(name, code, text)                                                             \
    case CF_##name:                                                                                \
        return text;
        CF_ERRNO_MAP(CF__ERR_TEXT)
#undef CF__ERR_TEXT
    }
    return "unknown error";
}
