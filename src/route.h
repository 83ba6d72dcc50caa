/*
 * Routes as sessions, balancing, health checks and the admin listener see
 * them: route snapshots, upstream and route state, their counters, and the
 * per-loop state sessions share.  No OS code here.
 *
 * Ownership and threads:
 * - A struct route is an immutable snapshot of one route's config, shared by
 *   the listeners bound to it and by every session it started; refcounted.
 *   A reload makes new snapshots; old sessions keep theirs.
 * - A struct route_state outlives reloads (matched by route name): counters,
 *   the round-robin position, the rate limiter, the per-client table.  A
 *   struct upstream_state outlives reloads too (matched by route name and
 *   upstream address): health and counters.  Both refcounted; atomics only,
 *   except where a field says which thread owns it.
 * - Sessions live on one loop and touch only that loop's struct loop_ctx,
 *   their loop's counter slots and atomics; anything for the control loop
 *   goes through sl_loop_post.
 */
#ifndef SL_ROUTE_H
#define SL_ROUTE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "acl.h"
#include "config.h"
#include "loop/loop.h"
#include "net/net.h"

struct session;

/* ---- counters ------------------------------------------------------------- */

/*
 * Event counters without a lock or a shared cache line on the data path:
 * one slot per loop, written only by that loop's thread (relaxed load and
 * store, no read-modify-write), summed by whoever reads them.
 */
enum ctr_id {
	CTR_SESSIONS,      /* route: accepted; upstream: connected */
	CTR_BYTES_IN,      /* client to upstream */
	CTR_BYTES_OUT,     /* upstream to client */
	CTR_CONNECT_FAILS, /* connect attempts that failed */
	CTR_DENIED,        /* route: refused by an access list */
	CTR_LIMITED,       /* route: refused by max_connections_per_client */
	CTR_NO_UPSTREAM,   /* route: refused or timed out, every upstream down */
	CTR_BAD_PROXY,     /* route: bad, late or untrusted PROXY header */
	CTR_TLS_REFUSED,   /* route: TLS client refused (handshake failed or
			    * timed out, no certificate, not verified, not
			    * in allow) */
	/* route: TLS handshakes by side and result, TLS_RESULTS each: the
	 * clients' (a TLS listener's), then the upstreams'. */
	CTR_TLS_CLIENT,
	CTR_TLS_UPSTREAM = CTR_TLS_CLIENT + 6,
	CTR_COUNT = CTR_TLS_UPSTREAM + 6
};

/* How a TLS handshake ended, as counted (CTR_TLS_CLIENT + result). */
enum tls_result {
	TLS_OK,
	TLS_NO_CERT,     /* the client showed no certificate */
	TLS_VERIFY,      /* the peer's certificate did not verify */
	TLS_NOT_ALLOWED, /* verified, not in allow */
	TLS_TIMEOUT,     /* handshake_timeout (connect_timeout upstream) */
	TLS_PROTOCOL,    /* any other failure: garbage, versions, alerts */
	TLS_RESULTS
};
_Static_assert(CTR_TLS_UPSTREAM - CTR_TLS_CLIENT == TLS_RESULTS &&
		       CTR_COUNT - CTR_TLS_UPSTREAM == TLS_RESULTS,
	       "one counter per TLS result and side");

struct ctr_slot {
	atomic_ullong v[CTR_COUNT];
	/* Keep each loop's slot on cache lines of its own. */
	char pad[64 - (CTR_COUNT * sizeof(atomic_ullong)) % 64];
};

static inline void ctr_add(struct ctr_slot *slots, unsigned loop,
			   enum ctr_id id, uint64_t n)
{
	atomic_ullong *c = &slots[loop].v[id];

	atomic_store_explicit(c,
			      atomic_load_explicit(c, memory_order_relaxed) + n,
			      memory_order_relaxed);
}

static inline uint64_t ctr_sum(const struct ctr_slot *slots, unsigned n,
			       enum ctr_id id)
{
	uint64_t t = 0;

	for (unsigned i = 0; i < n; i++)
		t += atomic_load_explicit(&slots[i].v[id],
					  memory_order_relaxed);
	return t;
}

/* ---- upstreams -------------------------------------------------------------- */

struct upstream_state {
	atomic_uint refs;
	char *name;          /* canonical endpoint text, the key in its route */
	atomic_uint active;  /* sessions connecting to or connected to it */
	atomic_int down;     /* 0: up, 1: down */
	atomic_uint fails;   /* connect failures in a row (passive health) */
	/* Down by passive health without active checks: sl_clock_ms() from
	 * which one connect may try it again (0: not until checks pass). */
	_Atomic uint64_t retry_at;
	atomic_ullong changed_ms; /* sl_clock_ms() of the last up/down change */
	atomic_ullong checks_failed;
	/* Why it went down or the last check failed: a static text. */
	_Atomic(const char *) reason;
	/* Active checks, owned by the control loop. */
	unsigned check_ok_run, check_fail_run;
	struct ctr_slot *ctr; /* per loop */
};

/* One upstream of a route snapshot. */
struct upstream {
	sl_endpoint ep;
	const char *name; /* st->name */
	unsigned weight;
	int backup;
	int send_proxy; /* 0, 1, 2 */
	struct sl_tls_ctx *tls; /* NULL: cleartext */
	sl_connect_opts copts; /* its source; sessions and checks use it */
	/* exec: the command a session starts instead of connecting
	 * (NULL-ended; NULL: an address), and how long it may outlive its
	 * session.  Not health-checked. */
	char **argv;
	uint64_t exec_timeout_ms;
	uint64_t hash;  /* of the name: source-hash's identity */
	struct upstream_state *st;
};

/* ---- admission ---------------------------------------------------------------- */

/*
 * The sessions of every route of one proxy, counted against the global
 * limit.  The proxy owns it and supplies the two tasks it posts, coalesced,
 * to the control loop: resume (a listener may be paused on a limit that a
 * session ending was holding) and idle (during a drain, the last session
 * has ended).  Each task clears its *_posted flag first.
 */
struct admission {
	atomic_ulong active;  /* sessions of every route */
	atomic_uint max;      /* global max_connections, 0 = unlimited */
	atomic_int draining;  /* read by loop threads as sessions end */
	sl_loop *control;
	sl_task resume_task;
	atomic_int resume_posted;
	sl_task idle_task;
	atomic_int idle_posted;
};

void admission_init(struct admission *a, sl_loop *control, sl_task_fn resume,
		    sl_task_fn idle, void *data);
/* Post the idle task unless it is posted already.  Any thread. */
void admission_post_idle(struct admission *a);

/* ---- routes ---------------------------------------------------------------- */

struct client_count {
	struct client_count *next;
	sl_ipaddr addr;
	unsigned n;
};

struct route_state {
	atomic_uint refs;
	char *name;
	unsigned nloops;
	atomic_ulong active;  /* sessions open now */
	atomic_uint rr;       /* round-robin position */
	atomic_uint queued;   /* sessions waiting for an upstream */
	/* rate_limit: GCRA's theoretical arrival time, in microseconds of
	 * sl_clock_ms(), and how often the limit paused accepting. */
	_Atomic uint64_t rate_tat;
	atomic_ullong rate_pauses;
	/* TLS files that did not load at a reload (the context loaded
	 * before stayed); control loop. */
	atomic_ullong tls_reload_refused;
	/* Rate-limited log of denied clients. */
	_Atomic uint64_t deny_log_ms;
	atomic_ulong deny_unlogged;
	/* Open sessions per client address (max_connections_per_client). */
	pthread_mutex_t clients_lock;
	struct client_count **clients;
	size_t nbuckets;
	/* Upstream states of the running config, for the next reload to
	 * carry over (control loop). */
	struct upstream_state **ups;
	size_t nups;
	struct ctr_slot *ctr; /* per loop */
};

/* One listen entry of a route snapshot, and what it asks of a session. */
struct route_listen {
	struct route *route;
	sl_endpoint ep;
	struct sl_tls_ctx *tls; /* NULL: cleartext */
	uint64_t handshake_timeout_ms;
	int accept_proxy;
	uint64_t proxy_timeout_ms;
	sl_acl trusted; /* peers that may send a PROXY header; empty: any */
};

struct route {
	atomic_uint refs;
	struct route_state *st;
	struct admission *adm;
	const char *name; /* st->name */
	struct upstream *ups;
	size_t nups;
	/* Weighted round-robin schedules of upstream indexes, spread as
	 * nginx's smooth weighted round-robin spreads them: [0] primaries,
	 * [1] backups. */
	unsigned *sched[2];
	size_t nsched[2];
	struct route_listen *listens;
	size_t nlistens;
	enum sl_balance balance;
	unsigned fails;       /* passive health; 0 = off */
	uint64_t cooldown_ms;
	int checks;           /* active checks configured */
	sl_acl gacl;          /* the global access list, then the route's */
	sl_acl acl;
	uint64_t connect_timeout_ms;
	uint64_t idle_timeout_ms;
	uint64_t half_closed_timeout_ms;
	uint64_t max_duration_ms;
	unsigned connect_attempts;
	unsigned max_connections; /* 0 = unlimited */
	unsigned max_per_client;  /* 0 = unlimited */
	unsigned queue_max;
	uint64_t queue_timeout_ms;
	unsigned rate_count;      /* 0 = no rate limit */
	uint64_t rate_period_ms;
	size_t buffer_size;
	sl_keepalive keepalive; /* of clients and upstreams (TCP) */
};

/*
 * A new snapshot of rc (a route of cfg) for a group of nloops loops,
 * admitting its sessions through adm.  It shares the state of old (the
 * running config's route of the same name, NULL when there is none), and
 * each upstream's state with that route's upstream of the same address.
 * The schedules are left empty: they are balance_init()'s.  Its TLS
 * contexts read every certificate, key and CA again (one that does not
 * load keeps old's for the same address, with a warning).  NULL with a
 * message in err (out of memory; "FILE:LINE:COL: tls: ..." for a TLS
 * file).  Control loop.
 */
struct route *route_new(const sl_config *cfg, const sl_route_conf *rc,
			const struct route *old, unsigned nloops,
			struct admission *adm, char *err, size_t errlen);

/* Any thread; route_unref(NULL) does nothing. */
void route_ref(struct route *r);
void route_unref(struct route *r);

/*
 * Admit one more session of r: 1, or 0 when the global limit or r's is
 * reached.  route_release(): that session has ended.  Any loop thread.
 */
int route_admit(struct route *r);
void route_release(struct route *r);
/*
 * Undo a route_admit() no session used (a gate that said no after it):
 * the counts only.  Not route_release(), whose resume would run the gate
 * again at once, to say no again, in a loop.
 */
void route_unadmit(struct route *r);

/*
 * r is running now: its state remembers r's upstream states, for the next
 * reload to carry over.  An upstream down by active checks that r no
 * longer checks gets a trial connect at once.  Control loop.
 */
void route_keep_upstreams(struct route *r);

/* Mark u up or down and log a change: active checks (control loop) and
 * passive health (loop threads). */
void upstream_set_down(struct route *r, struct upstream_state *u, int down,
		       const char *why);

static inline int acl_from_conf(sl_acl *acl, const sl_acl_conf *c)
{
	return sl_acl_init(acl, c->allow, c->nallow, c->deny, c->ndeny);
}

/* ---- per loop ---------------------------------------------------------------- */

/* Per-loop state of the proxy (sl_loop_get_data of every group loop). */
struct loop_ctx {
	sl_loop *loop;
	unsigned index; /* counter slot */
	uint64_t rng;   /* xorshift state for random balancing */
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

/* ---- hashing ------------------------------------------------------------------ */

/* 64-bit mixing hash of bytes (FNV-1a folded through a finaliser). */
uint64_t sl_hash64(const void *data, size_t len, uint64_t seed);

#endif
