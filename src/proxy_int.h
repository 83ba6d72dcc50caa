/*
 * The proxy's own state, shared by proxy.c, health.c and admin.c (not by
 * main.c, which sees proxy.h only).
 */
#ifndef SL_PROXY_INT_H
#define SL_PROXY_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "proxy.h"
#include "session.h"

struct lbind;
struct health;
struct admin;

struct sl_proxy {
	sl_loop *control;
	sl_group *group;
	struct loop_ctx *lcs;
	unsigned nloops;

	struct lbind *binds;
	/* Snapshots of the running config's routes, one reference each;
	 * swapped by apply on the control loop under state_lock, which the
	 * admin listener takes to read them from a loop thread. */
	pthread_mutex_t state_lock;
	struct route **routes;
	size_t nroutes;

	struct admission adm; /* sessions and the global limit */
	unsigned long fd_limit; /* descriptors we may hold, 0 = no limit */
	/* Listeners, health checks and the admin listener still closing:
	 * the drain waits for them. */
	sl_wg closing;

	/* rate_limit: a gate that said no asks for a resume at rate_due
	 * (sl_clock_ms); the control loop's rate_timer makes it. */
	sl_task rate_task;
	atomic_int rate_posted;
	_Atomic uint64_t rate_due;
	sl_timer rate_timer;

	/* Host names of upstreams are looked up again every dns_interval
	 * (sl_net_prefetch), traffic or not. */
	sl_timer dns_timer;
	uint64_t dns_interval;

	struct health *health; /* active checks of the running config */
	struct admin *admin;   /* NULL: no admin listener */

	uint64_t start_time; /* seconds since the epoch */
	int applied;         /* a config is running: applies are reloads */
	atomic_ullong reloads, reload_failures;

	sl_proxy_idle_cb idle_cb;
	void *idle_arg;
};

/* Listener accept-pause counts of a route's listeners (under state_lock). */
uint64_t proxy_route_fd_pauses(struct sl_proxy *p, const struct route *r);

/* ---- active health checks (health.c), control loop ------------------------------ */

/*
 * Start checking every upstream of routes[0..n) whose route has checks
 * configured (cfg->routes[i] matches routes[i]).  The checks hold route
 * references.  0 or -ENOMEM (then nothing runs).
 */
int health_start(sl_loop *control, sl_wg *closing, const sl_config *cfg,
		 struct route **routes, size_t n, struct health **out);
/* Stop; every check stream is closed, each counted in closing until
 * then. */
void health_stop(struct health *h);

/* ---- the admin listener (admin.c) -------------------------------------------------- */

/* Connections the admin listener holds at most (beyond, clients wait in
 * the backlog); the descriptor budget reserves them (effective_max). */
#define ADMIN_CONNS_MAX 32

/*
 * Open (bind) the admin listener of ac; not accepting yet.  0, or -1 with
 * err set.
 */
int admin_open(struct sl_proxy *p, const sl_admin_conf *ac,
	       struct admin **out, char *err, size_t errlen);
void admin_start(struct admin *a);
const sl_endpoint *admin_endpoint(const struct admin *a);
/* New access lists for a kept admin listener (control loop).  0 or -ENOMEM. */
int admin_set_acl(struct admin *a, const sl_acl_conf *acl);
/* Stop accepting and close; counted in the proxy's closing group until
 * gone and idle.  A never-started listener closes at once. */
void admin_close(struct admin *a);

#endif
