/*
 * The proxy: routes, their listeners, and the sessions they start, over a
 * loop group.  Driven from one control loop (the main thread): apply a
 * config (first start and every reload), drain, abort.
 */
#ifndef SL_PROXY_H
#define SL_PROXY_H

#include <stddef.h>

#include "config.h"
#include "loop/loop.h"

typedef struct sl_proxy sl_proxy;

/* control: the loop the calling thread runs; group: not started yet. */
int sl_proxy_new(sl_proxy **out, sl_loop *control, sl_group *group);

/*
 * Make cfg the running config.  Control thread.  All new listeners are
 * opened first; if any fails, nothing changes, -1 is returned and err says
 * why.  Then listeners whose endpoint stays are kept open and rebound to
 * the new route, new ones start accepting and removed ones close.  Open
 * sessions keep the route they started with.  cfg may be freed afterwards.
 */
int sl_proxy_apply(sl_proxy *p, const sl_config *cfg, char *err,
		   size_t errlen);

/*
 * The process may hold fds descriptors (0: no limit).  The global session
 * limit is capped to fit, from the next sl_proxy_apply() on.
 */
void sl_proxy_set_fd_limit(sl_proxy *p, unsigned long fds);

/* A reload failed before sl_proxy_apply() (the config did not load): for
 * the reload counters.  Control thread. */
void sl_proxy_reload_failed(sl_proxy *p);

typedef void (*sl_proxy_idle_cb)(sl_proxy *p, void *arg);

/*
 * Stop accepting (every listener closes) and call idle_cb on the control
 * loop once no session and no listener is left.  Control thread.
 */
void sl_proxy_drain(sl_proxy *p, sl_proxy_idle_cb idle_cb, void *arg);

/* Close every open session now (the drain deadline).  Control thread. */
void sl_proxy_abort_sessions(sl_proxy *p);

/* Sessions open now.  Any thread. */
unsigned long sl_proxy_active(const sl_proxy *p);

/* Free; the group must be stopped and the proxy drained. */
void sl_proxy_free(sl_proxy *p);

#endif
