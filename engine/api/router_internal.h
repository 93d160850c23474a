/*
 * What the router (api.c) shares with the push endpoint (push.c) beyond api.h: the loop, a slot
 * for the push module's state, and the count of requests waiting for a commit. Only files in
 * api/ include this.
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

#endif
