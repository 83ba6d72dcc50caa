/*
 * Choosing an upstream, and passive health.
 *
 * Every method works on the same candidate set: upstreams that are up, or
 * down by passive health with their cooldown over (one trial connect at a
 * time), in two tiers (primaries, then backups), first without the
 * upstreams this session already tried.  Shared state is atomics only: a
 * round-robin position per route, an active count and a health word per
 * upstream.  No lock is taken on this path.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "balance.h"

/* ---- random ------------------------------------------------------------- */

static uint64_t rng_next(struct loop_ctx *lc)
{
	uint64_t x = lc->rng;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	lc->rng = x;
	return x;
}

/* ---- schedules ------------------------------------------------------------- */

static unsigned gcd(unsigned a, unsigned b)
{
	while (b != 0) {
		unsigned t = a % b;
		a = b;
		b = t;
	}
	return a;
}

/*
 * nginx's smooth weighted round-robin, run once here for a whole cycle:
 * weights 5, 1, 1 give a a b a c a a rather than a a a a a b c.
 */
static int schedule(struct route *r, int tier)
{
	unsigned g = 0, total = 0, n = 0;
	long *cur;
	unsigned *idx;

	for (size_t i = 0; i < r->nups; i++)
		if (r->ups[i].backup == tier) {
			g = gcd(g, r->ups[i].weight);
			n++;
		}
	if (n == 0)
		return 0;
	for (size_t i = 0; i < r->nups; i++)
		if (r->ups[i].backup == tier)
			total += r->ups[i].weight / g;
	cur = calloc(r->nups, sizeof *cur);
	idx = calloc(total, sizeof *idx);
	if (cur == NULL || idx == NULL) {
		free(cur);
		free(idx);
		return -ENOMEM;
	}
	for (unsigned k = 0; k < total; k++) {
		size_t best = r->nups;

		for (size_t i = 0; i < r->nups; i++) {
			if (r->ups[i].backup != tier)
				continue;
			cur[i] += (long)(r->ups[i].weight / g);
			if (best == r->nups || cur[i] > cur[best])
				best = i;
		}
		cur[best] -= (long)total;
		idx[k] = (unsigned)best;
	}
	free(cur);
	r->sched[tier] = idx;
	r->nsched[tier] = total;
	return 0;
}

int balance_init(struct route *r)
{
	for (size_t i = 0; i < r->nups; i++)
		r->ups[i].hash = sl_hash64(r->ups[i].name,
					   strlen(r->ups[i].name), 0);
	if (schedule(r, 0) < 0 || schedule(r, 1) < 0)
		return -ENOMEM;
	return 0;
}

/* ---- candidates -------------------------------------------------------------- */

/* Up, or down by passive health with the cooldown over. */
static int usable(const struct upstream_state *st, uint64_t now)
{
	uint64_t at;

	if (!atomic_load_explicit(&st->down, memory_order_relaxed))
		return 1;
	at = atomic_load_explicit(&st->retry_at, memory_order_relaxed);
	return at != 0 && now >= at;
}

int balance_any_up(const struct route *r, uint64_t now)
{
	for (size_t i = 0; i < r->nups; i++)
		if (usable(r->ups[i].st, now))
			return 1;
	return 0;
}

struct pick {
	struct route *r;
	int tier;
	const uint16_t *tried;
	unsigned ntried; /* 0: tried ones are candidates too */
	uint64_t now;
	const uint16_t *excl; /* lost a trial race this call */
	unsigned nexcl;
};

static int listed(const uint16_t *v, unsigned n, size_t i)
{
	for (unsigned k = 0; k < n; k++)
		if (v[k] == i)
			return 1;
	return 0;
}

static int candidate(const struct pick *pk, size_t i)
{
	const struct upstream *u = &pk->r->ups[i];

	return u->backup == pk->tier && usable(u->st, pk->now) &&
	       !listed(pk->tried, pk->ntried, i) &&
	       !listed(pk->excl, pk->nexcl, i);
}

/* active/weight of a below b's, without division. */
static int less_loaded(const struct upstream *a, const struct upstream *b)
{
	uint64_t la = atomic_load_explicit(&a->st->active, memory_order_relaxed);
	uint64_t lb = atomic_load_explicit(&b->st->active, memory_order_relaxed);

	return la * b->weight < lb * a->weight;
}

static int pick_rr(const struct pick *pk)
{
	struct route *r = pk->r;
	const unsigned *s = r->sched[pk->tier];
	size_t n = r->nsched[pk->tier];
	unsigned pos;

	if (n == 0)
		return -1;
	pos = atomic_fetch_add_explicit(&r->st->rr, 1, memory_order_relaxed);
	for (size_t k = 0; k < n; k++) {
		unsigned i = s[(pos + k) % n];
		if (candidate(pk, i))
			return (int)i;
	}
	return -1;
}

static int pick_least(const struct pick *pk)
{
	struct route *r = pk->r;
	unsigned start = atomic_fetch_add_explicit(&r->st->rr, 1,
						   memory_order_relaxed);
	int best = -1;

	/* Starting where round-robin stands spreads ties. */
	for (size_t k = 0; k < r->nups; k++) {
		size_t i = (start + k) % r->nups;

		if (!candidate(pk, i))
			continue;
		if (best < 0 || less_loaded(&r->ups[i], &r->ups[best]))
			best = (int)i;
	}
	return best;
}

/* A candidate drawn with probability weight / sum of weights. */
static int draw(const struct pick *pk, struct loop_ctx *lc, uint64_t total,
		int skip)
{
	struct route *r = pk->r;
	uint64_t x = rng_next(lc) % total;

	for (size_t i = 0; i < r->nups; i++) {
		if ((int)i == skip || !candidate(pk, i))
			continue;
		if (x < r->ups[i].weight)
			return (int)i;
		x -= r->ups[i].weight;
	}
	return -1;
}

/* Power of two choices: two at random (by weight), the less loaded. */
static int pick_random(const struct pick *pk, struct loop_ctx *lc)
{
	struct route *r = pk->r;
	uint64_t total = 0;
	int a, b;

	for (size_t i = 0; i < r->nups; i++)
		if (candidate(pk, i))
			total += r->ups[i].weight;
	if (total == 0)
		return -1;
	a = draw(pk, lc, total, -1);
	if (a < 0 || total == r->ups[a].weight)
		return a;
	b = draw(pk, lc, total - r->ups[a].weight, a);
	if (b < 0)
		return a;
	return less_loaded(&r->ups[b], &r->ups[a]) ? b : a;
}

/*
 * Weighted rendezvous hashing: each candidate scores weight / -ln(U) with
 * U uniform in (0, 1) from hash(client, upstream); the highest wins.  A
 * client keeps its upstream while that one stays; when one goes, only its
 * clients move, spread over the rest in proportion to their weights.
 */
static int pick_hash(const struct pick *pk, const sl_ipaddr *client)
{
	struct route *r = pk->r;
	sl_ipaddr a = *client;
	size_t alen;
	double best_score = 0;
	int best = -1;

	sl_ipaddr_unmap(&a);
	alen = a.family == SL_AF_INET4 ? 4 : 16;
	for (size_t i = 0; i < r->nups; i++) {
		uint64_t h;
		double u, score;

		if (!candidate(pk, i))
			continue;
		h = sl_hash64(a.ip, alen, r->ups[i].hash);
		u = ((double)(h >> 11) + 0.5) * (1.0 / 9007199254740992.0);
		score = (double)r->ups[i].weight / -log(u);
		if (best < 0 || score > best_score) {
			best = (int)i;
			best_score = score;
		}
	}
	return best;
}

static int pick_first(const struct pick *pk)
{
	for (size_t i = 0; i < pk->r->nups; i++)
		if (candidate(pk, i))
			return (int)i;
	return -1;
}

static int pick_tier(const struct pick *pk, struct loop_ctx *lc,
		     const sl_ipaddr *client)
{
	switch (pk->r->balance) {
	case SL_BALANCE_LEAST_CONN:
		return pick_least(pk);
	case SL_BALANCE_RANDOM:
		return pick_random(pk, lc);
	case SL_BALANCE_SOURCE_HASH:
		if (client != NULL && client->family != SL_AF_NONE)
			return pick_hash(pk, client);
		return pick_rr(pk);
	case SL_BALANCE_FIRST:
		return pick_first(pk);
	case SL_BALANCE_ROUND_ROBIN:
	default:
		return pick_rr(pk);
	}
}

int balance_pick(struct route *r, struct loop_ctx *lc,
		 const sl_ipaddr *client, const uint16_t *tried,
		 unsigned ntried, uint64_t now)
{
	uint16_t excl[16];
	struct pick pk = { r, 0, tried, ntried, now, excl, 0 };

	for (;;) {
		int i = -1;

		/* Primaries, then backups; each first without the ones
		 * this session tried. */
		for (int pass = 0; pass < 4 && i < 0; pass++) {
			pk.tier = pass & 1;
			pk.ntried = pass < 2 ? ntried : 0;
			if (pass >= 2 && ntried == 0)
				break;
			i = pick_tier(&pk, lc, client);
		}
		if (i < 0)
			return -1;
		struct upstream_state *st = r->ups[i].st;
		uint64_t at = atomic_load(&st->retry_at);

		if (!atomic_load(&st->down))
			return i;
		/* Down with its cooldown over: one session makes the trial
		 * connect; the others look elsewhere meanwhile. */
		if (at != 0 && now >= at &&
		    atomic_compare_exchange_strong(&st->retry_at, &at,
						   now + r->cooldown_ms))
			return i;
		if (pk.nexcl == sizeof excl / sizeof excl[0])
			return -1;
		excl[pk.nexcl++] = (uint16_t)i;
	}
}

/* ---- passive health ------------------------------------------------------------ */

void balance_connect_ok(struct route *r, struct upstream *u)
{
	struct upstream_state *st = u->st;

	atomic_store_explicit(&st->fails, 0, memory_order_relaxed);
	/* A trial after the cooldown worked.  With active checks, the
	 * checks alone bring an upstream back. */
	if (!r->checks && atomic_load_explicit(&st->down, memory_order_relaxed))
		upstream_set_down(r, st, 0, "a connect succeeded");
}

void balance_connect_failed(struct route *r, struct upstream *u,
			    const char *why, uint64_t now)
{
	struct upstream_state *st = u->st;
	unsigned n = atomic_fetch_add(&st->fails, 1) + 1;
	char text[256];

	if (r->fails == 0 || n < r->fails)
		return;
	atomic_store(&st->retry_at, r->checks ? 0 : now + r->cooldown_ms);
	if (atomic_load(&st->down))
		return; /* a trial failed: the cooldown starts again */
	atomic_store(&st->reason, "connects failed");
	if (r->checks)
		snprintf(text, sizeof text,
			 "%u connects failed in a row (last: %s); waiting "
			 "for health checks to pass",
			 n, why);
	else
		snprintf(text, sizeof text,
			 "%u connects failed in a row (last: %s); trying "
			 "again in %llu ms",
			 n, why, (unsigned long long)r->cooldown_ms);
	upstream_set_down(r, st, 1, text);
}
