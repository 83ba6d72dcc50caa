/*
 * Routes and listeners; applying a config, reloads, limits, drain.
 *
 * The control loop (main thread) owns every structure here.  Loop threads
 * only read a listener binding's current route under its mutex, update
 * atomics, and post tasks to the control loop; the admin listener's
 * accessor (admin_read) copies the route list under state_lock.
 */
#include "proxy.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "admin.h"
#include "balance.h"
#include "health.h"
#include "hset.h"
#include "log.h"
#include "net/net.h"
#include "route.h"
#include "session.h"

struct sl_proxy {
	sl_loop *control;
	sl_group *group;
	struct loop_ctx *lcs;
	unsigned nloops;

	struct lbind *binds;
	/* Snapshots of the running config's routes, one reference each;
	 * swapped by apply on the control loop under state_lock, which the
	 * admin listener's accessor (admin_read) takes on a loop thread. */
	pthread_mutex_t state_lock;
	struct route **routes;
	size_t nroutes;

	struct admission adm; /* sessions and the global limit */
	unsigned long fd_limit; /* descriptors we may hold, 0 = no limit */
	/* Listeners, health checks and the admin listener still closing:
	 * the drain waits for them. */
	sl_wg closing;
	/* Listeners a reload removed, until their close is over (a loop
	 * thread ends it): a later reload that wants the same address back
	 * waits for it (gone_cond) instead of failing to bind. */
	pthread_mutex_t gone_lock;
	pthread_cond_t gone_cond;
	struct lbind *gone;

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

/* A listener and the route entry it feeds.  The route can change on
 * reload. */
struct lbind {
	struct lbind *next; /* in binds; once closing, in gone */
	struct sl_proxy *proxy;
	sl_listener *l;
	pthread_mutex_t lock;
	struct route_listen *rl; /* under lock; holds a route reference */
	int claimed;             /* during apply */
	char *security;          /* what it was opened with (a copy) */
};

/* ---- routes ------------------------------------------------------------- */

/* New snapshot of rc, sharing the state of old (the running route of the
 * same name, or NULL). */
static struct route *route_make(struct sl_proxy *p, const sl_config *cfg,
				const sl_route_conf *rc, const struct route *old,
				char *err, size_t errlen)
{
	struct route *r = route_new(cfg, rc, old, p->nloops, &p->adm, err,
				    errlen);

	if (r != NULL && balance_init(r) < 0) {
		route_unref(r);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	return r;
}

/* ---- limits (any loop thread) ---------------------------------------------- */

/* The last close the drain waits for is over (any thread). */
static void closed_all(void *arg)
{
	struct sl_proxy *p = arg;

	if (p->adm.draining)
		admission_post_idle(&p->adm);
}

static void resume_all(struct sl_proxy *p)
{
	for (struct lbind *b = p->binds; b != NULL; b = b->next)
		sl_listener_resume(b->l);
}

static void resume_task(sl_task *t, int status)
{
	struct sl_proxy *p = t->data;

	atomic_store(&p->adm.resume_posted, 0);
	if (status == 0)
		resume_all(p);
}

static void idle_task(sl_task *t, int status)
{
	struct sl_proxy *p = t->data;

	atomic_store(&p->adm.idle_posted, 0);
	if (status < 0 || !p->adm.draining || p->idle_cb == NULL)
		return;
	if (atomic_load(&p->adm.active) == 0 && sl_wg_idle(&p->closing)) {
		sl_proxy_idle_cb cb = p->idle_cb;
		p->idle_cb = NULL;
		cb(p, p->idle_arg);
	}
}

/*
 * rate_limit as GCRA (the generic cell rate algorithm, a token bucket
 * kept as one timestamp): sessions are due one emission interval T apart,
 * and may come up to a burst of rate_count early.  One CAS per accept; a
 * refusal asks the control loop to resume accepting when the next one is
 * due, so over-rate clients wait in the backlog rather than being reset.
 */
static int rate_admit(struct sl_proxy *p, struct route *r)
{
	struct route_state *st = r->st;
	uint64_t period = r->rate_period_ms * 1000; /* microseconds */
	uint64_t T = period / r->rate_count, tau, now, tat, t;

	if (T == 0)
		T = 1;
	tau = period - T;
	now = sl_clock_ms() * 1000;
	tat = atomic_load(&st->rate_tat);
	for (;;) {
		t = tat > now ? tat : now;
		if (t - now > tau)
			break;
		if (atomic_compare_exchange_weak(&st->rate_tat, &tat, t + T))
			return 1;
	}
	atomic_fetch_add(&st->rate_pauses, 1);
	{
		uint64_t due = (t - tau + 999) / 1000, cur = atomic_load(&p->rate_due);

		while (due < cur &&
		       !atomic_compare_exchange_weak(&p->rate_due, &cur, due))
			;
	}
	if (!atomic_exchange(&p->rate_posted, 1))
		sl_loop_post(p->control, &p->rate_task);
	return 0;
}

static void rate_task(sl_task *t, int status)
{
	struct sl_proxy *p = t->data;
	uint64_t due, now;

	atomic_store(&p->rate_posted, 0);
	if (status < 0)
		return;
	due = atomic_load(&p->rate_due);
	if (due == UINT64_MAX)
		return;
	now = sl_clock_ms();
	sl_timer_start(&p->rate_timer, due > now ? due - now : 0);
}

static void on_rate_timer(sl_timer *t)
{
	struct sl_proxy *p = t->data;

	atomic_store(&p->rate_due, UINT64_MAX);
	resume_all(p);
}

/* ---- host names ----------------------------------------------------------------- */

static void prefetch_all(struct sl_proxy *p)
{
	for (size_t i = 0; i < p->nroutes; i++) {
		const struct route *r = p->routes[i];

		for (size_t j = 0; j < r->nups; j++)
			if (r->ups[j].ep.kind == SL_EP_TCP &&
			    !r->ups[j].ep.host_is_literal)
				sl_net_prefetch(r->ups[j].ep.host);
	}
}

static void on_dns_timer(sl_timer *t)
{
	struct sl_proxy *p = t->data;

	prefetch_all(p);
	sl_timer_start(t, p->dns_interval);
}

/* ---- listeners -------------------------------------------------------------- */

/*
 * Give back the rate_limit token of an admission that found no
 * connection.  The listener asks the gate before every accept, so each
 * burst ends with one that finds the backlog empty; kept, those would
 * eat into the limit (with 3/m, one client an accept burst).  GCRA's
 * admissions add T each, so taking T off undoes one.
 */
static void rate_refund(struct route *r)
{
	uint64_t T = r->rate_period_ms * 1000 / r->rate_count;

	atomic_fetch_sub(&r->st->rate_tat, T ? T : 1);
}

static void on_accept(sl_listener *l, sl_stream *client, void *token)
{
	struct route_listen *rl = token; /* admitted and referenced by the gate */

	(void)l;
	if (client == NULL) {
		if (rl->route->rate_count != 0)
			rate_refund(rl->route);
		route_release(rl->route);
		route_unref(rl->route);
		return;
	}
	session_start(rl, client);
}

/* Admit one more session of the listener's current route, or pause. */
static int accept_gate(sl_listener *l, void **token)
{
	struct lbind *b = sl_listener_get_data(l);
	struct route_listen *rl;
	struct route *r;

	pthread_mutex_lock(&b->lock);
	rl = b->rl;
	r = rl->route;
	route_ref(r);
	pthread_mutex_unlock(&b->lock);
	if (!route_admit(r)) {
		route_unref(r);
		return 0;
	}
	if (r->rate_count != 0 && !rate_admit(b->proxy, r)) {
		route_unadmit(r); /* nobody waited on this reservation */
		route_unref(r);
		return 0;
	}
	*token = rl;
	return 1;
}

static void lbind_free(struct lbind *b)
{
	if (b->rl != NULL)
		route_unref(b->rl->route);
	pthread_mutex_destroy(&b->lock);
	free(b->security);
	free(b);
}

/* Runs on some loop thread once the listener is gone for good. */
static void on_listener_closed(sl_listener *l, void *arg)
{
	struct lbind *b = arg;
	struct sl_proxy *p = b->proxy;
	char text[SL_EP_HOST_MAX + SL_EP_PATH_MAX + 16];

	/* Logged once the socket is really closed: from this line on, new
	 * connections to it are refused. */
	sl_endpoint_format(sl_listener_endpoint(l), text, sizeof text);
	sl_info("listener %s closed", text);
	pthread_mutex_lock(&p->gone_lock);
	for (struct lbind **bp = &p->gone; *bp != NULL; bp = &(*bp)->next)
		if (*bp == b) {
			*bp = b->next;
			break;
		}
	pthread_cond_broadcast(&p->gone_cond);
	pthread_mutex_unlock(&p->gone_lock);
	lbind_free(b);
	sl_wg_done(&p->closing);
}

/* Close a listener that is in no list (no longer in binds). */
static void lbind_close(struct lbind *b)
{
	struct sl_proxy *p = b->proxy;

	pthread_mutex_lock(&p->gone_lock);
	b->next = p->gone;
	p->gone = b;
	pthread_mutex_unlock(&p->gone_lock);
	sl_wg_add(&p->closing);
	sl_listener_close(b->l, on_listener_closed, b);
}

#define GONE_WAIT_MS 2000

static int gone_on(const struct sl_proxy *p, const sl_endpoint *ep)
{
	for (const struct lbind *b = p->gone; b != NULL; b = b->next)
		if (sl_endpoint_equal(sl_listener_endpoint(b->l), ep))
			return 1;
	return 0;
}

/*
 * A listener on ep that a reload removed is still closing (its loop has
 * not run the close yet): wait up to GONE_WAIT_MS for it to be gone.
 * Non-zero when there was one (so opening ep again is worth a try).
 * Control loop; the close needs nothing from it.
 */
static int wait_gone(struct sl_proxy *p, const sl_endpoint *ep)
{
	struct timespec until;
	int found = 0;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += GONE_WAIT_MS / 1000;
	pthread_mutex_lock(&p->gone_lock);
	while (gone_on(p, ep)) {
		found = 1;
		if (pthread_cond_timedwait(&p->gone_cond, &p->gone_lock,
					   &until) == ETIMEDOUT)
			break;
	}
	pthread_mutex_unlock(&p->gone_lock);
	return found;
}

/* Accept pauses of r's listeners (under state_lock). */
static uint64_t route_fd_pauses(struct sl_proxy *p, const struct route *r)
{
	uint64_t n = 0;

	for (struct lbind *b = p->binds; b != NULL; b = b->next) {
		pthread_mutex_lock(&b->lock);
		if (b->rl->route->st == r->st)
			n += sl_listener_fd_pauses(b->l);
		pthread_mutex_unlock(&b->lock);
	}
	return n;
}

/* The admin listener's accessor: the running state (any loop thread). */
static int admin_read(void *arg, struct admin_view *v)
{
	struct sl_proxy *p = arg;
	int ret = 0;

	v->start_time = p->start_time;
	v->reloads = atomic_load(&p->reloads);
	v->reload_failures = atomic_load(&p->reload_failures);
	v->active = atomic_load(&p->adm.active);
	pthread_mutex_lock(&p->state_lock);
	v->routes = calloc(p->nroutes ? p->nroutes : 1, sizeof *v->routes);
	v->fd_pauses = calloc(p->nroutes ? p->nroutes : 1,
			      sizeof *v->fd_pauses);
	if (v->routes == NULL || v->fd_pauses == NULL) {
		free(v->routes);
		free(v->fd_pauses);
		v->routes = NULL;
		v->fd_pauses = NULL;
		ret = -ENOMEM;
	} else {
		for (size_t i = 0; i < p->nroutes; i++) {
			v->routes[i] = p->routes[i];
			route_ref(v->routes[i]);
			v->fd_pauses[i] = route_fd_pauses(p, p->routes[i]);
		}
		v->nroutes = p->nroutes;
	}
	pthread_mutex_unlock(&p->state_lock);
	return ret;
}

/* ---- apply ---------------------------------------------------------------- */

int sl_proxy_new(sl_proxy **out, sl_loop *control, sl_group *group)
{
	struct sl_proxy *p = calloc(1, sizeof *p);

	if (p == NULL)
		return -ENOMEM;
	p->control = control;
	p->group = group;
	p->nloops = sl_group_size(group);
	p->lcs = calloc(p->nloops, sizeof *p->lcs);
	if (p->lcs == NULL) {
		free(p);
		return -ENOMEM;
	}
	for (unsigned i = 0; i < p->nloops; i++) {
		sl_loop *loop = sl_group_loop(group, i);
		loop_ctx_init(&p->lcs[i], loop);
		sl_loop_set_data(loop, &p->lcs[i]);
	}
	pthread_mutex_init(&p->state_lock, NULL);
	pthread_mutex_init(&p->gone_lock, NULL);
	pthread_cond_init(&p->gone_cond, NULL);
	admission_init(&p->adm, control, resume_task, idle_task, p);
	sl_wg_init(&p->closing, closed_all, p);
	atomic_init(&p->rate_posted, 0);
	atomic_init(&p->rate_due, UINT64_MAX);
	atomic_init(&p->reloads, 0);
	atomic_init(&p->reload_failures, 0);
	sl_task_init(&p->rate_task, rate_task, p);
	sl_timer_init(control, &p->rate_timer, on_rate_timer, p);
	sl_timer_init(control, &p->dns_timer, on_dns_timer, p);
	p->start_time = (uint64_t)time(NULL);
	*out = p;
	return 0;
}

void sl_proxy_set_fd_limit(sl_proxy *p, unsigned long fds)
{
	p->fd_limit = fds;
}

void sl_proxy_reload_failed(sl_proxy *p)
{
	atomic_fetch_add(&p->reload_failures, 1);
}

/*
 * The global session limit in force: the configured one, capped by what
 * the descriptor limit allows, as HAProxy derives its maxconn and maxpipes
 * from ulimit -n.  After a reserve for the loops, listeners, the admin
 * listener's connections, logs and the resolver, four fifths of the
 * descriptors go to sessions (two each) and one fifth to forwarding pipes
 * (two each, for a quarter of the sessions at once; beyond that, sessions
 * copy).  Without the cap a full process
 * would accept a client and then fail its upstream connect; with it,
 * clients beyond the cap wait in the listen backlog like any over-limit
 * client.
 */
static unsigned effective_max(sl_proxy *p, const sl_config *cfg)
{
	unsigned long reserve, budget, cap, want = cfg->max_connections;

	if (p->fd_limit == 0)
		return (unsigned)want;
	reserve = 16 + 2ul * p->nloops;
	/* The admin listener and its connections hold descriptors of their
	 * own: left out, a full process would fail sessions' upstream
	 * connects (or its accepts) for them while scrapes run. */
	if (cfg->admin.address != NULL)
		reserve += 1 + ADMIN_CONNS_MAX;
	for (size_t i = 0; i < cfg->nroutes; i++) {
		reserve += cfg->routes[i].nlisten;
		if (cfg->routes[i].health.interval_ms > 0)
			reserve += cfg->routes[i].nupstreams;
	}
	budget = p->fd_limit > reserve ? p->fd_limit - reserve : 0;
	cap = budget * 2 / 5;
	if (cap < 1)
		cap = 1;
	if (cap > UINT_MAX)
		cap = UINT_MAX;
	sl_net_set_pipe_limit(budget / 10);
	if (want == 0 || want > cap) {
		sl_info("max_connections: %lu (descriptor limit %lu)", cap,
			p->fd_limit);
		return (unsigned)cap;
	}
	return (unsigned)want;
}

struct pending_bind {
	struct lbind *b; /* existing (kept) or new */
	struct route_listen *rl;
	int is_new;
};

/* One sl_proxy_apply(): what it has made and not yet handed over. */
struct attempt {
	const sl_config *cfg;
	/* The running routes by name and listeners by endpoint, so that
	 * matching a config of n routes to the running one costs O(n), not
	 * O(n^2): a SIGHUP holds up the control thread for that long. */
	sl_hset run_routes, run_binds;
	struct route **routes;   /* one per cfg->routes[] */
	struct pending_bind *pb; /* one per listen entry, npb so far */
	size_t npb;
	struct health *health;
	struct admin *admin;     /* opened for this config */
	struct admin *old_admin; /* replaced or removed by it */
};

static int no_memory(char *err, size_t errlen)
{
	snprintf(err, errlen, "out of memory");
	return -1;
}

static uint64_t name_hash(const char *name)
{
	return sl_fnv1a(SL_FNV1A_INIT, name, strlen(name));
}

static int route_is_named(const void *item, const void *key)
{
	return strcmp(((const struct route *)item)->name, key) == 0;
}

static int bind_is_on(const void *item, const void *key)
{
	return sl_endpoint_equal(sl_listener_endpoint(((const struct lbind *)
							       item)->l),
				 key);
}

/* The running routes and listeners into a's sets.  0 or -ENOMEM. */
static int index_running(struct sl_proxy *p, struct attempt *a)
{
	for (size_t i = 0; i < p->nroutes; i++)
		if (sl_hset_add(&a->run_routes, name_hash(p->routes[i]->name),
				p->routes[i]) < 0)
			return -ENOMEM;
	for (struct lbind *b = p->binds; b != NULL; b = b->next) {
		b->claimed = 0;
		if (sl_hset_add(&a->run_binds,
				sl_endpoint_hash(sl_listener_endpoint(b->l)),
				b) < 0)
			return -ENOMEM;
	}
	return 0;
}

static int same_text(const char *x, const char *y)
{
	return x == y || (x != NULL && y != NULL && strcmp(x, y) == 0);
}

/*
 * A running listener on lc's endpoint that no entry of this config has
 * claimed yet, claimed now; NULL if none (running listeners have distinct
 * endpoints).  One whose security lc changes is not kept (the descriptor
 * is the pipe's, set when it is created): *replace is set, and a new
 * listener replaces it.
 */
static struct lbind *lbind_claim(struct attempt *a, const sl_listen_conf *lc,
				 int *replace)
{
	struct lbind *b = (struct lbind *)sl_hset_find(
		&a->run_binds, sl_endpoint_hash(&lc->ep), bind_is_on, &lc->ep);

	*replace = 0;
	if (b == NULL || b->claimed)
		return NULL;
	if (!same_text(b->security, lc->security)) {
		*replace = 1;
		return NULL;
	}
	b->claimed = 1;
	return b;
}

/* A new listener for entry lc of route rc, claimed, not accepting yet.
 * NULL with err set. */
static struct lbind *lbind_open(struct sl_proxy *p, const sl_route_conf *rc,
				const sl_listen_conf *lc, int replace,
				char *err, size_t errlen)
{
	sl_listen_opts o = {
		.backlog = lc->backlog,
		.mode = lc->mode,
		.owner = lc->owner,
		.group = lc->group,
		.security = lc->security,
		.replace = replace,
	};
	char lerr[256] = "";
	struct lbind *b = calloc(1, sizeof *b);
	int r;

	if (b == NULL) {
		no_memory(err, errlen);
		return NULL;
	}
	b->proxy = p;
	if (lc->security != NULL &&
	    (b->security = strdup(lc->security)) == NULL) {
		free(b);
		no_memory(err, errlen);
		return NULL;
	}
	pthread_mutex_init(&b->lock, NULL);
	r = sl_listener_open(&b->l, &lc->ep, &o, lerr, sizeof lerr);
	if (r == -EADDRINUSE && wait_gone(p, &lc->ep)) {
		/* Ours: a listener the last reload removed, closing still. */
		lerr[0] = '\0';
		r = sl_listener_open(&b->l, &lc->ep, &o, lerr, sizeof lerr);
	}
	if (r < 0) {
		snprintf(err, errlen, "route %s: cannot listen on %s: %s",
			 rc->name, lc->address,
			 lerr[0] ? lerr : sl_strerror(r));
		pthread_mutex_destroy(&b->lock);
		free(b->security);
		free(b);
		return NULL;
	}
	if (replace)
		sl_info("route %s: re-creating the listener on %s (its "
			"security changed)",
			rc->name, lc->address);
	b->claimed = 1;
	return b;
}

/* The admin listener: kept when its endpoint stays (with the new access
 * lists), else opened now like the others.  0, or -1 with err set. */
static int admin_prepare(struct sl_proxy *p, struct attempt *a, char *err,
			 size_t errlen)
{
	const sl_admin_conf *ac = &a->cfg->admin;
	struct admin_env env = {
		.group = p->group,
		.closing = &p->closing,
		.read = admin_read,
		.arg = p,
	};

	if (ac->address == NULL)
		return 0;
	if (p->admin == NULL ||
	    !sl_endpoint_equal(admin_endpoint(p->admin), &ac->ep))
		return admin_open(ac, &env, &a->admin, err, errlen);
	if (admin_set_acl(p->admin, &ac->acl) < 0)
		return no_memory(err, errlen);
	return 0;
}

/*
 * 1. Everything the config needs, while nothing running changes: new
 * route snapshots, every listener claimed (its endpoint is running) or
 * opened, the admin listener, the health checks.  0, or -1 with err set.
 */
static int apply_open(struct sl_proxy *p, struct attempt *a, char *err,
		      size_t errlen)
{
	const sl_config *cfg = a->cfg;
	size_t total = 0;

	for (size_t i = 0; i < cfg->nroutes; i++)
		total += cfg->routes[i].nlisten;
	a->routes = calloc(cfg->nroutes ? cfg->nroutes : 1, sizeof *a->routes);
	a->pb = calloc(total ? total : 1, sizeof *a->pb);
	if (a->routes == NULL || a->pb == NULL || index_running(p, a) < 0)
		return no_memory(err, errlen);
	for (size_t i = 0; i < cfg->nroutes; i++) {
		const sl_route_conf *rc = &cfg->routes[i];
		const struct route *old = sl_hset_find(
			&a->run_routes, name_hash(rc->name), route_is_named,
			rc->name);

		if ((a->routes[i] = route_make(p, cfg, rc, old, err,
					       errlen)) == NULL)
			return -1;
		for (size_t j = 0; j < rc->nlisten; j++) {
			struct pending_bind *pb = &a->pb[a->npb];
			int replace;

			pb->b = lbind_claim(a, &rc->listen[j], &replace);
			if (pb->b == NULL) {
				pb->b = lbind_open(p, rc, &rc->listen[j],
						   replace, err, errlen);
				if (pb->b == NULL)
					return -1;
				pb->is_new = 1;
			}
			pb->rl = &a->routes[i]->listens[j];
			route_ref(a->routes[i]);
			a->npb++;
		}
	}
	if (admin_prepare(p, a, err, errlen) < 0)
		return -1;
	if (health_start(p->control, &p->closing, cfg, a->routes,
			 cfg->nroutes, &a->health) < 0)
		return no_memory(err, errlen);
	return 0;
}

/* 2. Kept listeners feed the new routes, new ones start accepting, the
 * ones this config no longer has close.  Under state_lock. */
static void apply_commit_binds(struct sl_proxy *p, struct attempt *a)
{
	for (size_t k = 0; k < a->npb; k++) {
		struct lbind *b = a->pb[k].b;
		struct route_listen *old;
		char text[SL_EP_HOST_MAX + SL_EP_PATH_MAX + 16];

		pthread_mutex_lock(&b->lock);
		old = b->rl;
		b->rl = a->pb[k].rl;
		pthread_mutex_unlock(&b->lock);
		a->pb[k].rl = NULL;
		if (old != NULL)
			route_unref(old->route);
		if (!a->pb[k].is_new)
			continue;
		sl_endpoint_format(sl_listener_endpoint(b->l), text,
				   sizeof text);
		if (sl_listener_start(b->l, p->group, on_accept, accept_gate,
				      b) < 0) {
			/* Cannot happen short of memory; the rest still runs. */
			sl_error("route %s: cannot accept on %s",
				 b->rl->route->name, text);
			lbind_close(b);
			continue;
		}
		sl_info("route %s: listening on %s", b->rl->route->name, text);
		b->next = p->binds;
		p->binds = b;
	}
	for (struct lbind **bp = &p->binds; *bp != NULL;) {
		struct lbind *b = *bp;
		if (b->claimed) {
			bp = &b->next;
			continue;
		}
		*bp = b->next; /* removed by this config */
		lbind_close(b);
	}
}

/* 3. The routes of this config replace the old list, each route state
 * remembering its upstream states for the next reload; a new admin
 * listener (or none) replaces the old.  Under state_lock. */
static void apply_swap_routes(struct sl_proxy *p, struct attempt *a)
{
	for (size_t i = 0; i < a->cfg->nroutes; i++)
		route_keep_upstreams(a->routes[i]);
	for (size_t i = 0; i < p->nroutes; i++)
		route_unref(p->routes[i]);
	free(p->routes);
	p->routes = a->routes;
	p->nroutes = a->cfg->nroutes;
	a->routes = NULL;
	if (a->admin != NULL || a->cfg->admin.address == NULL) {
		a->old_admin = p->admin;
		p->admin = a->admin;
	}
}

/* 4. The config runs: the checks and the admin listener change over,
 * names are looked up, paused listeners look at their limits again. */
static void apply_finish(struct sl_proxy *p, struct attempt *a)
{
	if (p->health != NULL)
		health_stop(p->health);
	p->health = a->health;
	if (a->old_admin != NULL)
		admin_close(a->old_admin);
	if (a->admin != NULL)
		admin_start(a->admin);
	if (p->applied)
		atomic_fetch_add(&p->reloads, 1);
	p->applied = 1;
	/* Upstream names are looked up now, so the first client does not
	 * wait for them, and again every interval. */
	p->dns_interval = a->cfg->resolve_interval_ms
				  ? a->cfg->resolve_interval_ms
				  : 30000;
	sl_net_set_resolve_interval(p->dns_interval);
	prefetch_all(p);
	sl_timer_start(&p->dns_timer, p->dns_interval);
	/* Listeners paused on a limit re-check it under the new config. */
	resume_all(p);
	free(a->pb);
}

/* The attempt failed in apply_open(): close the listeners it opened and
 * drop what it made; what runs is untouched. */
static void apply_abort(struct sl_proxy *p, struct attempt *a)
{
	for (size_t k = 0; k < a->npb; k++) {
		struct pending_bind *pb = &a->pb[k];

		if (pb->rl != NULL)
			route_unref(pb->rl->route);
		if (pb->is_new) {
			sl_listener_close(pb->b->l, NULL, NULL);
			pb->b->rl = NULL;
			lbind_free(pb->b);
		}
	}
	if (p->applied)
		atomic_fetch_add(&p->reload_failures, 1);
	if (a->health != NULL)
		health_stop(a->health);
	if (a->admin != NULL)
		admin_close(a->admin);
	if (a->routes != NULL)
		for (size_t i = 0; i < a->cfg->nroutes; i++)
			route_unref(a->routes[i]);
	free(a->routes);
	free(a->pb);
}

int sl_proxy_apply(sl_proxy *p, const sl_config *cfg, char *err,
		   size_t errlen)
{
	struct attempt a = { .cfg = cfg };

	if (apply_open(p, &a, err, errlen) < 0) {
		sl_hset_free(&a.run_routes);
		sl_hset_free(&a.run_binds);
		apply_abort(p, &a);
		return -1;
	}
	sl_hset_free(&a.run_routes);
	sl_hset_free(&a.run_binds);
	atomic_store(&p->adm.max, effective_max(p, cfg));
	/* The admin listener's accessor sees the old config or the new,
	 * never half of each. */
	pthread_mutex_lock(&p->state_lock);
	apply_commit_binds(p, &a);
	apply_swap_routes(p, &a);
	pthread_mutex_unlock(&p->state_lock);
	apply_finish(p, &a);
	return 0;
}

/* ---- drain ------------------------------------------------------------------ */

void sl_proxy_drain(sl_proxy *p, sl_proxy_idle_cb idle_cb, void *arg)
{
	struct admin *a;

	p->adm.draining = 1;
	p->idle_cb = idle_cb;
	p->idle_arg = arg;
	pthread_mutex_lock(&p->state_lock);
	while (p->binds != NULL) {
		struct lbind *b = p->binds;
		p->binds = b->next;
		lbind_close(b);
	}
	a = p->admin;
	p->admin = NULL;
	pthread_mutex_unlock(&p->state_lock);
	if (p->health != NULL) {
		health_stop(p->health);
		p->health = NULL;
	}
	if (a != NULL)
		admin_close(a);
	sl_timer_stop(&p->rate_timer);
	sl_timer_stop(&p->dns_timer);
	admission_post_idle(&p->adm);
}

void sl_proxy_abort_sessions(sl_proxy *p)
{
	for (unsigned i = 0; i < p->nloops; i++)
		loop_ctx_abort_sessions(&p->lcs[i]);
}

unsigned long sl_proxy_active(const sl_proxy *p)
{
	return atomic_load(&((struct sl_proxy *)p)->adm.active);
}

void sl_proxy_free(sl_proxy *p)
{
	if (p == NULL)
		return;
	/*
	 * A task of ours may still be queued on the control loop, the idle
	 * post above all: a listener's close is counted done (sl_wg_idle
	 * true, so the drain ended and the loop stopped) a moment before its
	 * closed_all() posts again.  The group is stopped, so nothing posts
	 * any more: cancel what is queued while the tasks' memory is ours.
	 */
	sl_loop_cancel_tasks(p->control);
	/* Drained before, unless the start failed half way. */
	if (p->health != NULL)
		health_stop(p->health);
	if (p->admin != NULL)
		admin_close(p->admin);
	while (p->binds != NULL) {
		struct lbind *b = p->binds;
		p->binds = b->next;
		sl_listener_close(b->l, NULL, NULL);
		lbind_free(b);
	}
	for (size_t i = 0; i < p->nroutes; i++)
		route_unref(p->routes[i]);
	free(p->routes);
	for (unsigned i = 0; i < p->nloops; i++) {
		sl_loop_set_data(p->lcs[i].loop, NULL);
		loop_ctx_free(&p->lcs[i]);
	}
	pthread_mutex_destroy(&p->state_lock);
	pthread_mutex_destroy(&p->gone_lock);
	pthread_cond_destroy(&p->gone_cond);
	free(p->lcs);
	free(p);
}
