/*
 * Route snapshots and the states they carry over reloads: made from the
 * config on the control loop, then shared read-only (atomics apart) by
 * listeners, sessions and checks on every loop, each holding a reference.
 */
#include "route.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "tls.h"

#define CLIENT_BUCKETS 1024

/* ---- hashing ------------------------------------------------------------ */

uint64_t sl_hash64(const void *data, size_t len, uint64_t seed)
{
	const unsigned char *p = data;
	uint64_t h = 0xcbf29ce484222325ull ^ seed;

	for (size_t i = 0; i < len; i++) {
		h ^= p[i];
		h *= 0x100000001b3ull;
	}
	/* splitmix64's finaliser: FNV's low bits alone mix poorly. */
	h ^= h >> 30;
	h *= 0xbf58476d1ce4e5b9ull;
	h ^= h >> 27;
	h *= 0x94d049bb133111ebull;
	h ^= h >> 31;
	return h;
}

/* ---- states ------------------------------------------------------------- */

static struct ctr_slot *ctr_new(unsigned nloops)
{
	return calloc(nloops ? nloops : 1, sizeof(struct ctr_slot));
}

static void ustate_unref(struct upstream_state *u)
{
	if (u == NULL || atomic_fetch_sub(&u->refs, 1) != 1)
		return;
	free(u->ctr);
	free(u->name);
	free(u);
}

static struct upstream_state *ustate_new(unsigned nloops, const char *name)
{
	struct upstream_state *u = calloc(1, sizeof *u);

	if (u == NULL)
		return NULL;
	atomic_init(&u->refs, 1);
	atomic_init(&u->changed_ms, sl_clock_ms());
	atomic_init(&u->reason, (const char *)NULL);
	u->name = strdup(name);
	u->ctr = ctr_new(nloops);
	if (u->name == NULL || u->ctr == NULL) {
		ustate_unref(u);
		return NULL;
	}
	return u;
}

static void state_unref(struct route_state *st)
{
	if (st == NULL || atomic_fetch_sub(&st->refs, 1) != 1)
		return;
	for (size_t i = 0; i < st->nups; i++)
		ustate_unref(st->ups[i]);
	free(st->ups);
	for (size_t i = 0; st->clients != NULL && i < st->nbuckets; i++) {
		while (st->clients[i] != NULL) {
			struct client_count *c = st->clients[i];
			st->clients[i] = c->next;
			free(c);
		}
	}
	free(st->clients);
	pthread_mutex_destroy(&st->clients_lock);
	free(st->ctr);
	free(st->name);
	free(st);
}

static struct route_state *state_new(unsigned nloops, const char *name)
{
	struct route_state *st = calloc(1, sizeof *st);

	if (st == NULL)
		return NULL;
	atomic_init(&st->refs, 1);
	pthread_mutex_init(&st->clients_lock, NULL);
	st->nloops = nloops;
	st->nbuckets = CLIENT_BUCKETS;
	st->name = strdup(name);
	st->clients = calloc(st->nbuckets, sizeof *st->clients);
	st->ctr = ctr_new(nloops);
	if (st->name == NULL || st->clients == NULL || st->ctr == NULL) {
		state_unref(st);
		return NULL;
	}
	return st;
}

/* ---- routes ------------------------------------------------------------- */

void route_ref(struct route *r)
{
	atomic_fetch_add_explicit(&r->refs, 1, memory_order_relaxed);
}

static void tls_unref(struct sl_tls_ctx *c)
{
#ifdef SL_HAVE_TLS
	sl_tls_ctx_unref(c);
#else
	(void)c;
#endif
}

#ifdef SL_HAVE_TLS
/*
 * A context that did not load (e says why): at a reload, the one the
 * running route has for the same address (an open endpoint, or an
 * upstream) stays, with a warning, and the rest of the reload applies;
 * at a start (no such context), the error.  0 with *ctx, or -1.
 */
static int tls_or_old(const sl_config *cfg, const sl_conf_mark *m,
		      struct route_state *st, const char *e,
		      struct sl_tls_ctx *old, struct sl_tls_ctx **ctx,
		      char *err, size_t errlen)
{
	if (old == NULL) {
		snprintf(err, errlen, "%s:%u:%u: tls: %s", sl_conf_file(cfg, m),
			 m->line, m->col, e);
		return -1;
	}
	sl_warn("route %s: %s:%u:%u: tls: %s; keeping the certificates "
		"loaded before",
		st->name, sl_conf_file(cfg, m), m->line, m->col, e);
	atomic_fetch_add(&st->tls_reload_refused, 1);
	sl_tls_ctx_ref(old);
	*ctx = old;
	return 0;
}

/* The running route's context for a listener or an upstream at ep. */
static struct sl_tls_ctx *old_listen_tls(const struct route *old,
					 const sl_endpoint *ep)
{
	for (size_t j = 0; old != NULL && j < old->nlistens; j++)
		if (sl_endpoint_equal(&old->listens[j].ep, ep))
			return old->listens[j].tls;
	return NULL;
}

static struct sl_tls_ctx *old_up_tls(const struct route *old,
				     const sl_endpoint *ep)
{
	for (size_t j = 0; old != NULL && j < old->nups; j++)
		if (sl_endpoint_equal(&old->ups[j].ep, ep))
			return old->ups[j].tls;
	return NULL;
}
#endif

/*
 * The TLS contexts of r's listeners and upstreams, each file read now
 * (old: the running route of the same name, or NULL).  0, or -1 with
 * "FILE:LINE:COL: tls: ..." in err.
 */
static int route_tls(struct route *r, const struct route *old,
		     const sl_config *cfg, const sl_route_conf *rc, char *err,
		     size_t errlen)
{
#ifdef SL_HAVE_TLS
	char e[768];

	for (size_t i = 0; i < r->nlistens; i++) {
		const sl_tls_listen_conf *t = &rc->listen[i].tls;
		struct route_listen *rl = &r->listens[i];

		if (!t->on)
			continue;
		rl->handshake_timeout_ms = t->handshake_timeout_ms;
		if ((rl->tls = sl_tls_ctx_server(t, e, sizeof e)) == NULL &&
		    tls_or_old(cfg, &t->mark, r->st, e,
			       old_listen_tls(old, &rl->ep), &rl->tls, err,
			       errlen) < 0)
			return -1;
	}
	for (size_t i = 0; i < r->nups; i++) {
		const sl_tls_upstream_conf *t = &rc->upstreams[i].tls;
		struct upstream *u = &r->ups[i];

		if (!t->on)
			continue;
		if ((u->tls = sl_tls_ctx_client(t, &u->ep, e, sizeof e)) ==
			    NULL &&
		    tls_or_old(cfg, &t->mark, r->st, e,
			       old_up_tls(old, &u->ep), &u->tls, err,
			       errlen) < 0)
			return -1;
		if (!t->verify)
			sl_warn("route %s: upstream %s: tls verify: false: its "
				"certificate is not checked",
				rc->name, rc->upstreams[i].address);
	}
	return 0;
#else
	(void)r;
	(void)old;
	(void)cfg;
	(void)rc;
	(void)err;
	(void)errlen;
	return 0;
#endif
}

static void argv_free(char **argv)
{
	for (size_t i = 0; argv != NULL && argv[i] != NULL; i++)
		free(argv[i]);
	free(argv);
}

/* An exec: upstream's command, NULL-ended, into u (its own copy: the
 * config is freed before the route).  0 or -1. */
static int argv_copy(struct upstream *u, const sl_upstream_conf *uc)
{
	if ((u->argv = calloc(uc->nexec + 1, sizeof *u->argv)) == NULL)
		return -1;
	for (size_t i = 0; i < uc->nexec; i++)
		if ((u->argv[i] = strdup(uc->exec[i])) == NULL)
			return -1;
	u->exec_timeout_ms = uc->exec_timeout_ms;
	return 0;
}

void route_unref(struct route *r)
{
	if (r == NULL)
		return;
	if (atomic_fetch_sub(&r->refs, 1) != 1)
		return;
	for (size_t i = 0; r->ups != NULL && i < r->nups; i++) {
		ustate_unref(r->ups[i].st);
		tls_unref(r->ups[i].tls);
		argv_free(r->ups[i].argv);
	}
	free(r->ups);
	free(r->sched[0]);
	free(r->sched[1]);
	for (size_t i = 0; r->listens != NULL && i < r->nlistens; i++) {
		sl_acl_free(&r->listens[i].trusted);
		tls_unref(r->listens[i].tls);
	}
	free(r->listens);
	sl_acl_free(&r->gacl);
	sl_acl_free(&r->acl);
	state_unref(r->st);
	free(r);
}

/* The state of upstream `name` in route r: carried over from the running
 * config (health, counters), shared with an earlier entry of the same
 * address, or new. */
static struct upstream_state *ustate_for(struct route *r, size_t upto,
					 unsigned nloops, const char *name)
{
	struct route_state *st = r->st;
	struct upstream_state *u = NULL;

	for (size_t i = 0; i < st->nups && u == NULL; i++)
		if (strcmp(st->ups[i]->name, name) == 0)
			u = st->ups[i];
	for (size_t i = 0; i < upto && u == NULL; i++)
		if (strcmp(r->ups[i].st->name, name) == 0)
			u = r->ups[i].st;
	if (u != NULL) {
		atomic_fetch_add(&u->refs, 1);
		return u;
	}
	return ustate_new(nloops, name);
}

struct route *route_new(const sl_config *cfg, const sl_route_conf *rc,
			const struct route *old, unsigned nloops,
			struct admission *adm, char *err, size_t errlen)
{
	struct route *r = calloc(1, sizeof *r);
	struct route_state *st;

	snprintf(err, errlen, "out of memory");
	if (r == NULL)
		return NULL;
	atomic_init(&r->refs, 1);
	st = old != NULL ? old->st : NULL;
	if (st != NULL) {
		atomic_fetch_add(&st->refs, 1);
	} else if ((st = state_new(nloops, rc->name)) == NULL) {
		free(r);
		return NULL;
	}
	r->st = st;
	r->adm = adm;
	r->name = st->name;
	r->ups = calloc(rc->nupstreams, sizeof *r->ups);
	r->listens = calloc(rc->nlisten ? rc->nlisten : 1, sizeof *r->listens);
	if (r->ups == NULL || r->listens == NULL)
		goto fail;
	for (size_t i = 0; i < rc->nupstreams; i++) {
		const sl_upstream_conf *uc = &rc->upstreams[i];
		struct upstream *u = &r->ups[i];
		char text[SL_EP_HOST_MAX + SL_EP_PATH_MAX + 16];

		/* An exec: upstream is named by its command alone. */
		if (uc->exec != NULL)
			snprintf(text, sizeof text, "exec:%s", uc->exec[0]);
		else
			sl_endpoint_format(&uc->ep, text, sizeof text);
		r->nups = i + 1; /* what is set of it is freed on failure */
		if (uc->exec != NULL && argv_copy(u, uc) < 0)
			goto fail;
		u->ep = uc->ep;
		u->weight = uc->weight ? uc->weight : 1;
		u->backup = uc->backup;
		u->send_proxy = uc->send_proxy;
		u->copts.source = uc->source.addr;
		if ((u->st = ustate_for(r, i, nloops, text)) == NULL)
			goto fail;
		u->name = u->st->name;
		r->nups = i + 1;
	}
	for (size_t i = 0; i < rc->nlisten; i++) {
		const sl_listen_conf *lc = &rc->listen[i];
		struct route_listen *rl = &r->listens[i];

		rl->route = r;
		rl->ep = lc->ep;
		rl->accept_proxy = lc->accept_proxy;
		rl->proxy_timeout_ms = lc->proxy_timeout_ms;
		r->nlistens = i + 1;
		if (sl_acl_init(&rl->trusted, lc->trusted, lc->ntrusted, NULL,
				0) < 0)
			goto fail;
	}
	if (acl_from_conf(&r->gacl, &cfg->acl) < 0 ||
	    acl_from_conf(&r->acl, &rc->acl) < 0)
		goto fail;
	r->balance = rc->balance;
	r->fails = rc->health.fails;
	r->cooldown_ms = rc->health.cooldown_ms;
	r->checks = rc->health.interval_ms > 0;
	r->connect_timeout_ms = rc->connect_timeout_ms;
	r->idle_timeout_ms = rc->idle_timeout_ms;
	r->half_closed_timeout_ms = rc->half_closed_timeout_ms;
	r->max_duration_ms = rc->max_duration_ms;
	r->connect_attempts = rc->connect_attempts ? rc->connect_attempts : 1;
	r->max_connections = rc->max_connections;
	r->max_per_client = rc->max_per_client;
	r->queue_max = rc->queue_max;
	r->queue_timeout_ms = rc->queue_timeout_ms;
	r->rate_count = rc->rate_count;
	r->rate_period_ms = rc->rate_period_ms;
	r->buffer_size = rc->buffer_size ? rc->buffer_size : 65536;
	r->keepalive.on = !rc->keepalive.off;
	r->keepalive.idle = rc->keepalive.idle_s;
	r->keepalive.interval = rc->keepalive.interval_s;
	r->keepalive.count = rc->keepalive.count;
	if (route_tls(r, old, cfg, rc, err, errlen) < 0)
		goto fail;
	return r;
fail:
	route_unref(r);
	return NULL;
}

void route_keep_upstreams(struct route *r)
{
	struct route_state *st = r->st;
	struct upstream_state **ups = calloc(r->nups, sizeof *ups);

	/* Down by active checks, an upstream waits for them to pass
	 * (retry_at 0).  In a route that has none now nothing ever
	 * would: it gets a trial connect at once, as after a passive
	 * cooldown. */
	for (size_t j = 0; !r->checks && j < r->nups; j++) {
		struct upstream_state *u = r->ups[j].st;
		uint64_t zero = 0;

		if (atomic_load(&u->down))
			atomic_compare_exchange_strong(&u->retry_at, &zero,
						       sl_clock_ms());
	}
	if (ups == NULL)
		return; /* the next reload starts them afresh */
	for (size_t j = 0; j < r->nups; j++) {
		ups[j] = r->ups[j].st;
		atomic_fetch_add(&ups[j]->refs, 1);
	}
	for (size_t j = 0; j < st->nups; j++)
		ustate_unref(st->ups[j]);
	free(st->ups);
	st->ups = ups;
	st->nups = r->nups;
}

/* ---- admission (any loop thread) ---------------------------------------- */

void admission_init(struct admission *a, sl_loop *control, sl_task_fn resume,
		    sl_task_fn idle, void *data)
{
	atomic_init(&a->active, 0);
	atomic_init(&a->max, 0);
	atomic_init(&a->draining, 0);
	a->control = control;
	sl_task_init(&a->resume_task, resume, data);
	atomic_init(&a->resume_posted, 0);
	sl_task_init(&a->idle_task, idle, data);
	atomic_init(&a->idle_posted, 0);
}

void admission_post_idle(struct admission *a)
{
	if (!atomic_exchange(&a->idle_posted, 1))
		sl_loop_post(a->control, &a->idle_task);
}

int route_admit(struct route *r)
{
	struct admission *adm = r->adm;
	unsigned gmax = atomic_load(&adm->max);
	unsigned long g = atomic_fetch_add(&adm->active, 1);
	unsigned long a = atomic_fetch_add(&r->st->active, 1);

	if ((gmax != 0 && g >= gmax) ||
	    (r->max_connections != 0 && a >= r->max_connections)) {
		route_unadmit(r);
		return 0;
	}
	return 1;
}

void route_unadmit(struct route *r)
{
	atomic_fetch_sub(&r->st->active, 1);
	atomic_fetch_sub(&r->adm->active, 1);
}

void route_release(struct route *r)
{
	struct admission *adm = r->adm;
	unsigned gmax = atomic_load(&adm->max);
	unsigned long g = atomic_fetch_sub(&adm->active, 1);
	unsigned long a = atomic_fetch_sub(&r->st->active, 1);

	/* A listener may be paused on a limit this session was holding. */
	if ((gmax != 0 && g >= gmax) ||
	    (r->max_connections != 0 && a >= r->max_connections)) {
		if (!atomic_exchange(&adm->resume_posted, 1))
			sl_loop_post(adm->control, &adm->resume_task);
	}
	if (g == 1 && adm->draining)
		admission_post_idle(adm);
}

/* ---- up and down -------------------------------------------------------- */

void upstream_set_down(struct route *r, struct upstream_state *u, int down,
		       const char *why)
{
	if (!down) {
		atomic_store(&u->fails, 0);
		atomic_store(&u->retry_at, 0);
	}
	if (atomic_exchange(&u->down, down) == down)
		return;
	atomic_store(&u->changed_ms, sl_clock_ms());
	if (down)
		sl_warn("route %s: upstream %s is down: %s", r->name, u->name,
			why);
	else
		sl_info("route %s: upstream %s is up: %s", r->name, u->name,
			why);
}
