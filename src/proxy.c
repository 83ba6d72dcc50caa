/*
 * Routes and listeners; applying a config, reloads, drain.
 *
 * The control loop (main thread) owns every structure here.  Loop threads
 * only read a listener binding's current route under its mutex, update
 * atomics, and post tasks to the control loop.
 */
#include "proxy.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "net/net.h"
#include "session.h"

/* A listener and the route it feeds.  The route can change on reload. */
struct lbind {
	struct lbind *next;
	struct sl_proxy *proxy;
	sl_listener *l;
	pthread_mutex_t lock;
	struct route *route; /* under lock */
	int claimed;         /* during apply */
};

struct sl_proxy {
	sl_loop *control;
	sl_group *group;
	struct loop_ctx *lcs;
	unsigned nloops;

	struct lbind *binds;
	struct route_state **states; /* of the running config */
	size_t nstates;

	atomic_ulong active;
	atomic_uint max_connections; /* global, 0 = unlimited */
	unsigned long fd_limit;      /* descriptors we may hold, 0 = no limit */
	atomic_int closing_listeners;

	/* Coalesced requests to the control loop. */
	sl_task resume_task;
	atomic_int resume_posted;
	sl_task idle_task;
	atomic_int idle_posted;

	int draining;
	sl_proxy_idle_cb idle_cb;
	void *idle_arg;
};

/* ---- routes ----------------------------------------------------------- */

static void state_unref(struct route_state *st)
{
	if (st == NULL)
		return;
	if (atomic_fetch_sub(&st->refs, 1) == 1) {
		free(st->name);
		free(st);
	}
}

void route_ref(struct route *r)
{
	atomic_fetch_add_explicit(&r->refs, 1, memory_order_relaxed);
}

void route_unref(struct route *r)
{
	if (r == NULL)
		return;
	if (atomic_fetch_sub(&r->refs, 1) != 1)
		return;
	for (size_t i = 0; i < r->nupstreams; i++)
		free(r->upstream_names[i]);
	free(r->upstream_names);
	free(r->upstreams);
	state_unref(r->st);
	free(r);
}

static struct route_state *state_find(struct sl_proxy *p, const char *name)
{
	for (size_t i = 0; i < p->nstates; i++)
		if (strcmp(p->states[i]->name, name) == 0)
			return p->states[i];
	return NULL;
}

/* New snapshot of rc, sharing the state of a same-named running route. */
static struct route *route_new(struct sl_proxy *p, const sl_route_conf *rc)
{
	struct route *r = calloc(1, sizeof *r);
	struct route_state *st;

	if (r == NULL)
		return NULL;
	atomic_init(&r->refs, 1);
	st = state_find(p, rc->name);
	if (st != NULL) {
		atomic_fetch_add(&st->refs, 1);
	} else {
		st = calloc(1, sizeof *st);
		if (st == NULL || (st->name = strdup(rc->name)) == NULL) {
			free(st);
			free(r);
			return NULL;
		}
		atomic_init(&st->refs, 1);
	}
	r->st = st;
	r->proxy = p;
	r->name = st->name;
	r->nupstreams = rc->nupstreams;
	r->upstreams = calloc(rc->nupstreams, sizeof *r->upstreams);
	r->upstream_names = calloc(rc->nupstreams, sizeof *r->upstream_names);
	if (r->upstreams == NULL || r->upstream_names == NULL)
		goto fail;
	for (size_t i = 0; i < rc->nupstreams; i++) {
		char text[SL_EP_HOST_MAX + SL_EP_PATH_MAX + 16];
		r->upstreams[i] = rc->upstreams[i].ep;
		sl_endpoint_format(&rc->upstreams[i].ep, text, sizeof text);
		if ((r->upstream_names[i] = strdup(text)) == NULL)
			goto fail;
	}
	r->connect_timeout_ms = rc->connect_timeout_ms;
	r->idle_timeout_ms = rc->idle_timeout_ms;
	r->connect_attempts = rc->connect_attempts ? rc->connect_attempts : 1;
	r->max_connections = rc->max_connections;
	r->buffer_size = rc->buffer_size ? rc->buffer_size : 65536;
	return r;
fail:
	route_unref(r);
	return NULL;
}

/* ---- limits (any loop thread) ---------------------------------------------- */

int proxy_session_admit(struct sl_proxy *p, struct route *r)
{
	unsigned gmax = atomic_load(&p->max_connections);
	unsigned long g = atomic_fetch_add(&p->active, 1);
	unsigned long a = atomic_fetch_add(&r->st->active, 1);

	if ((gmax != 0 && g >= gmax) ||
	    (r->max_connections != 0 && a >= r->max_connections)) {
		atomic_fetch_sub(&r->st->active, 1);
		atomic_fetch_sub(&p->active, 1);
		return 0;
	}
	atomic_fetch_add_explicit(&r->st->total, 1, memory_order_relaxed);
	return 1;
}

static void post_idle_check(struct sl_proxy *p)
{
	if (!atomic_exchange(&p->idle_posted, 1))
		sl_loop_post(p->control, &p->idle_task);
}

void proxy_session_gone(struct sl_proxy *p, struct route *r)
{
	unsigned gmax = atomic_load(&p->max_connections);
	unsigned long g = atomic_fetch_sub(&p->active, 1);
	unsigned long a = atomic_fetch_sub(&r->st->active, 1);

	/* A listener may be paused on a limit this session was holding. */
	if ((gmax != 0 && g >= gmax) ||
	    (r->max_connections != 0 && a >= r->max_connections)) {
		if (!atomic_exchange(&p->resume_posted, 1))
			sl_loop_post(p->control, &p->resume_task);
	}
	if (g == 1 && p->draining)
		post_idle_check(p);
}

static void resume_task(sl_task *t, int status)
{
	struct sl_proxy *p = t->data;

	atomic_store(&p->resume_posted, 0);
	if (status < 0)
		return;
	for (struct lbind *b = p->binds; b != NULL; b = b->next)
		sl_listener_resume(b->l);
}

static void idle_task(sl_task *t, int status)
{
	struct sl_proxy *p = t->data;

	atomic_store(&p->idle_posted, 0);
	if (status < 0 || !p->draining || p->idle_cb == NULL)
		return;
	if (atomic_load(&p->active) == 0 &&
	    atomic_load(&p->closing_listeners) == 0) {
		sl_proxy_idle_cb cb = p->idle_cb;
		p->idle_cb = NULL;
		cb(p, p->idle_arg);
	}
}

/* ---- listeners -------------------------------------------------------------- */

static void on_accept(sl_listener *l, sl_stream *client, void *token)
{
	struct route *r = token; /* admitted and referenced by the gate */

	(void)l;
	if (client == NULL) {
		proxy_session_gone(r->proxy, r);
		route_unref(r);
		return;
	}
	session_start(r, client);
}

/* Admit one more session of the listener's current route, or pause. */
static int accept_gate(sl_listener *l, void **token)
{
	struct lbind *b = sl_listener_get_data(l);
	struct route *r;

	pthread_mutex_lock(&b->lock);
	r = b->route;
	route_ref(r);
	pthread_mutex_unlock(&b->lock);
	if (!proxy_session_admit(b->proxy, r)) {
		route_unref(r);
		return 0;
	}
	*token = r;
	return 1;
}

static void lbind_free(struct lbind *b)
{
	route_unref(b->route);
	pthread_mutex_destroy(&b->lock);
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
	lbind_free(b);
	if (atomic_fetch_sub(&p->closing_listeners, 1) == 1 && p->draining)
		post_idle_check(p);
}

static void lbind_close(struct lbind *b)
{
	atomic_fetch_add(&b->proxy->closing_listeners, 1);
	sl_listener_close(b->l, on_listener_closed, b);
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
		loop_ctx_init(&p->lcs[i], loop, p);
		sl_loop_set_data(loop, &p->lcs[i]);
	}
	atomic_init(&p->active, 0);
	atomic_init(&p->max_connections, 0);
	atomic_init(&p->closing_listeners, 0);
	atomic_init(&p->resume_posted, 0);
	atomic_init(&p->idle_posted, 0);
	sl_task_init(&p->resume_task, resume_task, p);
	sl_task_init(&p->idle_task, idle_task, p);
	*out = p;
	return 0;
}

void sl_proxy_set_fd_limit(sl_proxy *p, unsigned long fds)
{
	p->fd_limit = fds;
}

/*
 * The global session limit in force: the configured one, capped by what
 * the descriptor limit allows, as HAProxy derives its maxconn and maxpipes
 * from ulimit -n.  After a reserve for the loops, listeners, logs and the
 * resolver, four fifths of the descriptors go to sessions (two each) and
 * one fifth to forwarding pipes (two each, for a quarter of the sessions
 * at once; beyond that, sessions copy).  Without the cap a full process
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
	for (size_t i = 0; i < cfg->nroutes; i++)
		reserve += cfg->routes[i].nlisten;
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
	struct lbind *b;   /* existing (kept) or new */
	struct route *route;
	int is_new;
};

int sl_proxy_apply(sl_proxy *p, const sl_config *cfg, char *err,
		   size_t errlen)
{
	struct pending_bind *pb = NULL;
	struct route **routes = NULL;
	struct route_state **states = NULL;
	size_t npb = 0, total = 0;
	int ret = -1;

	for (size_t i = 0; i < cfg->nroutes; i++)
		total += cfg->routes[i].nlisten;
	routes = calloc(cfg->nroutes ? cfg->nroutes : 1, sizeof *routes);
	states = calloc(cfg->nroutes ? cfg->nroutes : 1, sizeof *states);
	pb = calloc(total ? total : 1, sizeof *pb);
	if (routes == NULL || states == NULL || pb == NULL) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	for (struct lbind *b = p->binds; b != NULL; b = b->next)
		b->claimed = 0;

	/* 1. New route snapshots; open every new listener.  Nothing running
	 * changes until all of them have opened. */
	for (size_t i = 0; i < cfg->nroutes; i++) {
		const sl_route_conf *rc = &cfg->routes[i];

		if ((routes[i] = route_new(p, rc)) == NULL) {
			snprintf(err, errlen, "out of memory");
			goto out;
		}
		for (size_t j = 0; j < rc->nlisten; j++) {
			const sl_listen_conf *lc = &rc->listen[j];
			struct lbind *b;

			for (b = p->binds; b != NULL; b = b->next)
				if (!b->claimed &&
				    sl_endpoint_equal(sl_listener_endpoint(b->l),
						      &lc->ep))
					break;
			if (b != NULL) {
				b->claimed = 1;
				pb[npb].b = b;
			} else {
				sl_listen_opts o = {
					.backlog = lc->backlog,
					.mode = lc->mode,
					.owner = lc->owner,
					.group = lc->group,
					.security = lc->security,
				};
				char lerr[256] = "";
				int r;

				b = calloc(1, sizeof *b);
				if (b == NULL) {
					snprintf(err, errlen, "out of memory");
					goto out;
				}
				b->proxy = p;
				pthread_mutex_init(&b->lock, NULL);
				r = sl_listener_open(&b->l, &lc->ep, &o, lerr,
						     sizeof lerr);
				if (r < 0) {
					snprintf(err, errlen,
						 "route %s: cannot listen on %s: %s",
						 rc->name, lc->address,
						 lerr[0] ? lerr
							 : sl_strerror(r));
					pthread_mutex_destroy(&b->lock);
					free(b);
					goto out;
				}
				b->claimed = 1;
				pb[npb].b = b;
				pb[npb].is_new = 1;
			}
			pb[npb].route = routes[i];
			route_ref(routes[i]);
			npb++;
		}
	}

	/* 2. Commit: rebind kept listeners, start new ones, close the rest. */
	atomic_store(&p->max_connections, effective_max(p, cfg));
	for (size_t k = 0; k < npb; k++) {
		struct lbind *b = pb[k].b;
		struct route *old;
		char text[SL_EP_HOST_MAX + SL_EP_PATH_MAX + 16];

		pthread_mutex_lock(&b->lock);
		old = b->route;
		b->route = pb[k].route;
		pthread_mutex_unlock(&b->lock);
		pb[k].route = NULL;
		route_unref(old);
		if (!pb[k].is_new)
			continue;
		sl_endpoint_format(sl_listener_endpoint(b->l), text,
				   sizeof text);
		if (sl_listener_start(b->l, p->group, on_accept, accept_gate,
				      b) < 0) {
			/* Cannot happen short of memory; the rest still runs. */
			sl_error("route %s: cannot accept on %s",
				 b->route->name, text);
			pb[k].b = NULL;
			atomic_fetch_add(&p->closing_listeners, 1);
			sl_listener_close(b->l, on_listener_closed, b);
			continue;
		}
		sl_info("route %s: listening on %s", b->route->name, text);
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

	/* 3. The route states of this config replace the old list. */
	for (size_t i = 0; i < cfg->nroutes; i++) {
		states[i] = routes[i]->st;
		atomic_fetch_add(&states[i]->refs, 1);
	}
	for (size_t i = 0; i < p->nstates; i++)
		state_unref(p->states[i]);
	free(p->states);
	p->states = states;
	p->nstates = cfg->nroutes;
	states = NULL;
	npb = 0;
	ret = 0;

	/* Listeners paused on a limit re-check it under the new config. */
	for (struct lbind *b = p->binds; b != NULL; b = b->next)
		sl_listener_resume(b->l);
out:
	/* On failure: close the listeners opened for this attempt. */
	for (size_t k = 0; k < npb; k++) {
		route_unref(pb[k].route);
		if (pb[k].is_new && pb[k].b != NULL) {
			sl_listener_close(pb[k].b->l, NULL, NULL);
			lbind_free(pb[k].b);
		}
	}
	if (routes != NULL)
		for (size_t i = 0; i < cfg->nroutes; i++)
			route_unref(routes[i]);
	free(routes);
	free(states);
	free(pb);
	return ret;
}

/* ---- drain ------------------------------------------------------------------ */

void sl_proxy_drain(sl_proxy *p, sl_proxy_idle_cb idle_cb, void *arg)
{
	p->draining = 1;
	p->idle_cb = idle_cb;
	p->idle_arg = arg;
	while (p->binds != NULL) {
		struct lbind *b = p->binds;
		p->binds = b->next;
		lbind_close(b);
	}
	post_idle_check(p);
}

void sl_proxy_abort_sessions(sl_proxy *p)
{
	for (unsigned i = 0; i < p->nloops; i++)
		loop_ctx_abort_sessions(&p->lcs[i]);
}

unsigned long sl_proxy_active(const sl_proxy *p)
{
	return atomic_load(&((struct sl_proxy *)p)->active);
}

void sl_proxy_free(sl_proxy *p)
{
	if (p == NULL)
		return;
	while (p->binds != NULL) {
		struct lbind *b = p->binds;
		p->binds = b->next;
		sl_listener_close(b->l, NULL, NULL);
		lbind_free(b);
	}
	for (size_t i = 0; i < p->nstates; i++)
		state_unref(p->states[i]);
	free(p->states);
	for (unsigned i = 0; i < p->nloops; i++) {
		sl_loop_set_data(p->lcs[i].loop, NULL);
		loop_ctx_free(&p->lcs[i]);
	}
	free(p->lcs);
	free(p);
}
