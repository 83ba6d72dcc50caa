/*
 * Active health checks of a config's routes, on the control loop
 * (health.c).
 */
#ifndef SL_HEALTH_H
#define SL_HEALTH_H

#include <stddef.h>

#include "config.h"
#include "loop/loop.h"
#include "route.h"

struct health;

/*
 * Start checking every upstream of routes[0..n) whose route has checks
 * configured (cfg->routes[i] matches routes[i]), on control.  The checks
 * hold route references; every check stream counts in closing while it
 * closes.  0 or -ENOMEM (then nothing runs).
 */
int health_start(sl_loop *control, sl_wg *closing, const sl_config *cfg,
		 struct route **routes, size_t n, struct health **out);
/* Stop; every check stream is closed.  NULL does nothing. */
void health_stop(struct health *h);

#endif
