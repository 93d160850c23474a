/*
 * What the router (api.c) shares with the push endpoint (push.c) and the CM REST subset
 * (cmrest.c) beyond api.h: the loop, a slot for each module's state, whether it still waits for
 * work of its own, and for cmrest.c, which authenticates itself to answer in Certificate
 * Manager's envelope, the client certificate mapping and answers with extra headers. Only files
 * in api/ include this.
 */
#ifndef CF_API_ROUTER_INTERNAL_H
#define CF_API_ROUTER_INTERNAL_H

#include "api/api.h"

struct cf__push;

uv_loop_t *cf__api_loop(struct cf_api *api);
/* push.c keeps its state here; api.c frees it with cf__push_free() in cf_api_free(). */
struct cf__push **cf__api_push_slot(struct cf_api *api);
const struct cf__push *cf__api_push_cslot(const struct cf_api *api);
void cf__push_free(struct cf__push *p);
bool cf__push_busy(const struct cf__push *p);

/* cmrest.c's state, kept and freed like push.c's. */
struct cf__cmrest;
struct cf__cmrest **cf__api_cmrest_slot(struct cf_api *api);
void cf__cmrest_free(struct cf__cmrest *c);
bool cf__cmrest_busy(const struct cf__cmrest *c);

/* Maps the request's verified client certificate to its user, as the router does on the
 * TLS_CLIENT listener, and fills r->who. 0; CF_EPERM when there is no certificate, or it is not
 * mapped to a user (the reason in `msg`); another CF_E* code when the user store cannot be read. */
int cf__api_cert_user(struct cf_api_request *r, char *msg, size_t msglen);
/* cf_api_respond() with extra headers (NULL-terminated name/value pairs); frees `r`. */
void cf__api_respond_headers(struct cf_api_request *r, int status, const char *content_type,
                             const char *const *headers, const void *body, size_t len);
/* Frees `r` without answering: only for a request whose server is gone (the api was freed while
 * the route waited for work of its own). */
void cf__api_request_drop(struct cf_api_request *r);

#endif
