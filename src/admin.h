/*
 * The admin listener: /metrics and /status over HTTP (admin.c).
 */
#ifndef SL_ADMIN_H
#define SL_ADMIN_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "loop/loop.h"
#include "net/net.h"
#include "route.h"

/* Connections the admin listener holds at most (beyond, clients wait in
 * the backlog); the descriptor budget reserves them (effective_max). */
#define ADMIN_CONNS_MAX 32

/* The running state as one answer shows it. */
struct admin_view {
	uint64_t start_time; /* seconds since the epoch */
	unsigned long long reloads, reload_failures;
	unsigned long active; /* sessions open */
	struct route **routes; /* a reference each */
	uint64_t *fd_pauses;   /* per route: its listeners' accept pauses */
	size_t nroutes;
};

/*
 * What the admin listener is given by whoever runs it: the group its
 * connections spread over, the wait group it counts in while it closes,
 * and the accessor for the running state.  read() fills v, the routes and
 * pauses taken under the state lock that guards them (routes and
 * fd_pauses malloc'd, released by the admin listener); 0 or -ENOMEM.
 * Any loop thread.
 */
struct admin_env {
	sl_group *group;
	sl_wg *closing;
	int (*read)(void *arg, struct admin_view *v);
	void *arg;
};

struct admin;

/*
 * Open (bind) the admin listener of ac; not accepting yet.  0, or -1 with
 * err set.
 */
int admin_open(const sl_admin_conf *ac, const struct admin_env *env,
	       struct admin **out, char *err, size_t errlen);
void admin_start(struct admin *a);
const sl_endpoint *admin_endpoint(const struct admin *a);
/* New access lists for a kept admin listener (control loop).  0 or -ENOMEM. */
int admin_set_acl(struct admin *a, const sl_acl_conf *acl);
/* Stop accepting and close; counted in env->closing until gone and idle.
 * A never-started listener closes at once. */
void admin_close(struct admin *a);

#endif
