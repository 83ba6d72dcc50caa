/*
 * Internal to the proxy layer (proxy.c, session.c): routes as the sessions
 * see them, per-loop state, and the session entry points.  No OS code here.
 *
 * Ownership and threads:
 * - A struct route is an immutable snapshot of one route's config, shared by
 *   the listeners bound to it and by every session it started; refcounted.
 *   A reload makes new snapshots; old sessions keep theirs.
 * - A struct route_state outlives reloads (matched by route name): the
 *   counters and the round-robin position.  Atomics only.
 * - Sessions live on one loop and touch only that loop's struct loop_ctx
 *   and atomics; anything for the control loop goes through sl_loop_post.
 */
#ifndef SL_SESSION_H
#define SL_SESSION_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "loop/loop.h"
#include "net/net.h"

struct sl_proxy;
struct session;

struct route_state {
	atomic_uint refs;
	char *name;
	atomic_ulong active;  /* sessions open now */
	atomic_uint rr;       /* round-robin start point for upstreams */
	atomic_ullong total;  /* sessions accepted since start */
};

struct route {
	atomic_uint refs;
	struct route_state *st;
	struct sl_proxy *proxy;
	const char *name; /* st->name */
	sl_endpoint *upstreams;
	char **upstream_names; /* canonical text, for logs */
	size_t nupstreams;
	uint64_t connect_timeout_ms;
	uint64_t idle_timeout_ms;
	unsigned connect_attempts;
	unsigned max_connections; /* 0 = unlimited */
	size_t buffer_size;
};

void route_ref(struct route *r);
void route_unref(struct route *r);

/* Per-loop state of the proxy (sl_loop_get_data of every group loop). */
struct loop_ctx {
	sl_loop *loop;
	struct sl_proxy *proxy;
	/* The read buffer every session on this loop reads into: data is
	 * written on at once, and only what the peer cannot take now is
	 * copied into a pooled per-direction buffer. */
	char *rbuf;
	size_t rbuf_len;
	/* Free pending-write buffers of pool_size bytes. */
	void *pool;
	size_t pool_len;
	size_t pool_size;
	/* Open sessions on this loop (for the drain deadline). */
	struct session *sessions;
	unsigned long nsessions;
	sl_task abort_task;
	atomic_int abort_posted;
};

int loop_ctx_init(struct loop_ctx *lc, sl_loop *loop, struct sl_proxy *p);
void loop_ctx_free(struct loop_ctx *lc);

/* Close every session of this loop (reason drain-timeout).  Any thread. */
void loop_ctx_abort_sessions(struct loop_ctx *lc);

/*
 * Start a session for an accepted client on the client's loop.  Consumes
 * one reference to r and one admission (proxy_session_admit(), taken by
 * the listener's gate before the accept).
 */
void session_start(struct route *r, sl_stream *client);

/* Hooks into proxy.c. */
int proxy_session_admit(struct sl_proxy *p, struct route *r);
void proxy_session_gone(struct sl_proxy *p, struct route *r);

#endif
