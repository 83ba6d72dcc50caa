/*
 * Choosing a session's upstream, and passive health: the connects that
 * fail or succeed mark upstreams down and up.  Loop threads; atomics only.
 */
#ifndef SL_BALANCE_H
#define SL_BALANCE_H

#include <stdint.h>

#include "route.h"

/* Build r's round-robin schedules from the weights.  0 or -ENOMEM. */
int balance_init(struct route *r);

/*
 * The upstream for a session's next connect attempt: an index into
 * r->ups, or -1 when none may be tried.  Only upstreams that are up (or
 * whose passive cooldown has passed) are candidates; backups only when no
 * primary is; upstreams in tried[0..ntried) only when no other candidate
 * is left.  client: the client's address (source-hash; SL_AF_NONE falls
 * back to round-robin).  now: sl_clock_ms().
 */
int balance_pick(struct route *r, struct loop_ctx *lc,
		 const sl_ipaddr *client, const uint16_t *tried,
		 unsigned ntried, uint64_t now);

/* Non-zero when some upstream of r may be tried now. */
int balance_any_up(const struct route *r, uint64_t now);

/* A connect to u succeeded or failed (passive health; logs changes). */
void balance_connect_ok(struct route *r, struct upstream *u);
void balance_connect_failed(struct route *r, struct upstream *u,
			    const char *why, uint64_t now);

#endif
