/*
 * Balancing and passive health (src/balance.c) on hand-made routes: the
 * methods' choices and spreads, weights, backups, the upstreams a session
 * already tried, and the up/down/trial life of an upstream.  Deterministic:
 * the random method's generator is seeded here, and times are given.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "log.h"
#include "balance.h"

#define NOW 1000000u

static struct loop_ctx lc;

static struct route *mk(enum sl_balance b, size_t n, const unsigned *weights,
			const int *backups)
{
	struct route *r = calloc(1, sizeof *r);

	assert_non_null(r);
	r->st = calloc(1, sizeof *r->st);
	r->ups = calloc(n, sizeof *r->ups);
	assert_non_null(r->st);
	assert_non_null(r->ups);
	r->name = "t";
	r->nups = n;
	r->balance = b;
	r->fails = 3;
	r->cooldown_ms = 1000;
	for (size_t i = 0; i < n; i++) {
		struct upstream *u = &r->ups[i];

		u->st = calloc(1, sizeof *u->st);
		assert_non_null(u->st);
		u->st->name = malloc(32);
		assert_non_null(u->st->name);
		snprintf(u->st->name, 32, "tcp://10.0.0.%zu:80", i + 1);
		u->name = u->st->name;
		u->weight = weights != NULL ? weights[i] : 1;
		u->backup = backups != NULL ? backups[i] : 0;
	}
	assert_int_equal(balance_init(r), 0);
	return r;
}

static void rm(struct route *r)
{
	for (size_t i = 0; i < r->nups; i++) {
		free(r->ups[i].st->name);
		free(r->ups[i].st);
	}
	free(r->sched[0]);
	free(r->sched[1]);
	free(r->ups);
	free(r->st);
	free(r);
}

static int pick(struct route *r, const sl_ipaddr *client)
{
	return balance_pick(r, &lc, client, NULL, 0, NOW);
}

static void set_down(struct route *r, size_t i, int down)
{
	atomic_store(&r->ups[i].st->down, down);
	atomic_store(&r->ups[i].st->retry_at, 0);
}

static sl_ipaddr v4(unsigned a, unsigned b, unsigned c, unsigned d)
{
	sl_ipaddr x = { .family = SL_AF_INET4 };

	x.ip[0] = (uint8_t)a;
	x.ip[1] = (uint8_t)b;
	x.ip[2] = (uint8_t)c;
	x.ip[3] = (uint8_t)d;
	return x;
}

/* ---- round-robin ---------------------------------------------------------------- */

static void test_rr_smooth_weights(void **state)
{
	static const unsigned w[] = { 5, 1, 1 };
	static const int want[] = { 0, 0, 1, 0, 2, 0, 0 };
	struct route *r = mk(SL_BALANCE_ROUND_ROBIN, 3, w, NULL);
	unsigned n[3] = { 0 };

	(void)state;
	/* nginx's smooth spread, not five in a row. */
	for (size_t k = 0; k < 7; k++)
		assert_int_equal(pick(r, NULL), want[k]);
	for (size_t k = 0; k < 700; k++)
		n[pick(r, NULL)]++;
	assert_int_equal(n[0], 500);
	assert_int_equal(n[1], 100);
	assert_int_equal(n[2], 100);
	rm(r);
}

static void test_rr_weights_reduced(void **state)
{
	static const unsigned w[] = { 200, 100 };
	struct route *r = mk(SL_BALANCE_ROUND_ROBIN, 2, w, NULL);

	(void)state;
	/* Weights with a common divisor make a short cycle (2:1). */
	assert_int_equal(r->nsched[0], 3);
	rm(r);
}

static void test_rr_skips_down(void **state)
{
	struct route *r = mk(SL_BALANCE_ROUND_ROBIN, 3, NULL, NULL);

	(void)state;
	set_down(r, 1, 1);
	for (size_t k = 0; k < 30; k++)
		assert_int_not_equal(pick(r, NULL), 1);
	set_down(r, 0, 1);
	set_down(r, 2, 1);
	assert_int_equal(pick(r, NULL), -1);
	assert_false(balance_any_up(r, NOW));
	set_down(r, 2, 0);
	assert_true(balance_any_up(r, NOW));
	assert_int_equal(pick(r, NULL), 2);
	rm(r);
}

/* ---- backups and tried upstreams -------------------------------------------------- */

static void test_backup_only_when_primaries_down(void **state)
{
	static const int b[] = { 0, 1, 0, 1 };
	struct route *r = mk(SL_BALANCE_ROUND_ROBIN, 4, NULL, b);

	(void)state;
	for (size_t k = 0; k < 40; k++) {
		int i = pick(r, NULL);
		assert_true(i == 0 || i == 2);
	}
	set_down(r, 0, 1);
	for (size_t k = 0; k < 10; k++)
		assert_int_equal(pick(r, NULL), 2);
	set_down(r, 2, 1);
	for (size_t k = 0; k < 40; k++) {
		int i = pick(r, NULL);
		assert_true(i == 1 || i == 3);
	}
	rm(r);
}

static void test_tried_last(void **state)
{
	static const int b[] = { 0, 0, 1 };
	struct route *r = mk(SL_BALANCE_FIRST, 3, NULL, b);
	uint16_t tried[3] = { 0, 1, 2 };

	(void)state;
	assert_int_equal(balance_pick(r, &lc, NULL, tried, 1, NOW), 1);
	/* Every primary failed for this client: the backup before a
	 * primary again. */
	assert_int_equal(balance_pick(r, &lc, NULL, tried, 2, NOW), 2);
	/* All tried: the first one again rather than nothing. */
	assert_int_equal(balance_pick(r, &lc, NULL, tried, 3, NOW), 0);
	rm(r);
}

/* ---- least connections, random ------------------------------------------------------ */

static void test_least_connections(void **state)
{
	static const unsigned w[] = { 1, 1, 2 };
	struct route *r = mk(SL_BALANCE_LEAST_CONN, 3, w, NULL);
	unsigned n[3] = { 0 };

	(void)state;
	atomic_store(&r->ups[0].st->active, 5);
	atomic_store(&r->ups[1].st->active, 2);
	atomic_store(&r->ups[2].st->active, 6); /* 3 per weight */
	assert_int_equal(pick(r, NULL), 1);
	atomic_store(&r->ups[1].st->active, 4); /* 4 > 3 per weight */
	assert_int_equal(pick(r, NULL), 2);
	/* Ties spread over the tied ones. */
	atomic_store(&r->ups[0].st->active, 3);
	atomic_store(&r->ups[1].st->active, 3);
	atomic_store(&r->ups[2].st->active, 6);
	for (size_t k = 0; k < 300; k++)
		n[pick(r, NULL)]++;
	assert_int_equal(n[0] + n[1] + n[2], 300);
	assert_true(n[0] >= 50 && n[1] >= 50 && n[2] >= 50);
	rm(r);
}

static void test_random_two_choices(void **state)
{
	struct route *r = mk(SL_BALANCE_RANDOM, 3, NULL, NULL);
	unsigned n[3] = { 0 };

	(void)state;
	lc.rng = 0x9e3779b97f4a7c15ull;
	for (size_t k = 0; k < 3000; k++)
		n[pick(r, NULL)]++;
	for (size_t i = 0; i < 3; i++)
		assert_true(n[i] > 800 && n[i] < 1200);
	/* Of any two drawn, the less loaded: the busiest one is never
	 * chosen while the others are idle. */
	atomic_store(&r->ups[1].st->active, 50);
	for (size_t k = 0; k < 300; k++)
		assert_int_not_equal(pick(r, NULL), 1);
	rm(r);
}

static void test_random_weights(void **state)
{
	static const unsigned w[] = { 3, 1 };
	struct route *r = mk(SL_BALANCE_RANDOM, 2, w, NULL);
	struct route *one = mk(SL_BALANCE_RANDOM, 1, NULL, NULL);

	(void)state;
	lc.rng = 12345;
	/* Two candidates are always both drawn: the less loaded wins. */
	atomic_store(&r->ups[0].st->active, 4);
	atomic_store(&r->ups[1].st->active, 1);
	assert_int_equal(pick(r, NULL), 1); /* 4/3 > 1/1 */
	atomic_store(&r->ups[1].st->active, 2);
	assert_int_equal(pick(r, NULL), 0); /* 4/3 < 2/1 */
	assert_int_equal(pick(one, NULL), 0);
	rm(r);
	rm(one);
}

/* ---- source hash ---------------------------------------------------------------------- */

static void test_source_hash_stable(void **state)
{
	struct route *r = mk(SL_BALANCE_SOURCE_HASH, 4, NULL, NULL);
	int before[1000];
	unsigned n[4] = { 0 }, moved = 0;
	sl_ipaddr a = v4(192, 0, 2, 1), mapped = { .family = SL_AF_INET6 };

	(void)state;
	/* One client, one upstream; the same for its IPv4-mapped form. */
	memset(mapped.ip + 10, 0xff, 2);
	memcpy(mapped.ip + 12, a.ip, 4);
	for (size_t k = 0; k < 10; k++) {
		assert_int_equal(pick(r, &a), pick(r, &a));
		assert_int_equal(pick(r, &mapped), pick(r, &a));
	}
	for (unsigned k = 0; k < 1000; k++) {
		sl_ipaddr c = v4(10, 1, k >> 8, k & 255);
		before[k] = pick(r, &c);
		n[before[k]]++;
	}
	for (size_t i = 0; i < 4; i++)
		assert_true(n[i] > 170 && n[i] < 330);
	/* One goes down: only its clients move, spread over the rest. */
	set_down(r, 2, 1);
	memset(n, 0, sizeof n);
	for (unsigned k = 0; k < 1000; k++) {
		sl_ipaddr c = v4(10, 1, k >> 8, k & 255);
		int now = pick(r, &c);

		assert_int_not_equal(now, 2);
		if (before[k] != 2)
			assert_int_equal(now, before[k]);
		else
			moved++, n[now]++;
	}
	assert_true(moved > 170);
	for (size_t i = 0; i < 4; i++)
		if (i != 2)
			assert_true(n[i] > moved / 6);
	/* Back up: everyone returns where they were. */
	set_down(r, 2, 0);
	for (unsigned k = 0; k < 1000; k++) {
		sl_ipaddr c = v4(10, 1, k >> 8, k & 255);
		assert_int_equal(pick(r, &c), before[k]);
	}
	rm(r);
}

static void test_source_hash_weights(void **state)
{
	static const unsigned w[] = { 3, 1 };
	struct route *r = mk(SL_BALANCE_SOURCE_HASH, 2, w, NULL);
	unsigned n[2] = { 0 };
	sl_ipaddr none = { .family = SL_AF_NONE };

	(void)state;
	for (unsigned k = 0; k < 2000; k++) {
		sl_ipaddr c = v4(172, 16, k >> 8, k & 255);
		n[pick(r, &c)]++;
	}
	assert_true(n[0] > 1350 && n[0] < 1650);
	/* No address (a Unix socket client): round-robin. */
	assert_true(pick(r, &none) >= 0);
	rm(r);
}

static void test_first(void **state)
{
	struct route *r = mk(SL_BALANCE_FIRST, 3, NULL, NULL);

	(void)state;
	for (size_t k = 0; k < 10; k++)
		assert_int_equal(pick(r, NULL), 0);
	set_down(r, 0, 1);
	assert_int_equal(pick(r, NULL), 1);
	rm(r);
}

/* ---- passive health ----------------------------------------------------------------------- */

static void test_passive_down_trial_up(void **state)
{
	struct route *r = mk(SL_BALANCE_FIRST, 2, NULL, NULL);
	struct upstream *u = &r->ups[0];

	(void)state;
	balance_connect_failed(r, u, "refused", NOW);
	balance_connect_failed(r, u, "refused", NOW);
	assert_false(atomic_load(&u->st->down));
	balance_connect_ok(r, u); /* a success breaks the run */
	balance_connect_failed(r, u, "refused", NOW);
	balance_connect_failed(r, u, "refused", NOW);
	assert_false(atomic_load(&u->st->down));
	balance_connect_failed(r, u, "refused", NOW);
	assert_true(atomic_load(&u->st->down));
	/* Down for the cooldown: the others take its clients. */
	assert_int_equal(balance_pick(r, &lc, NULL, NULL, 0, NOW + 999), 1);
	/* Then one trial, and only one, at a time. */
	assert_int_equal(balance_pick(r, &lc, NULL, NULL, 0, NOW + 1000), 0);
	assert_int_equal(balance_pick(r, &lc, NULL, NULL, 0, NOW + 1000), 1);
	/* The trial fails: down for another cooldown, not logged again. */
	balance_connect_failed(r, u, "refused", NOW + 1001);
	assert_true(atomic_load(&u->st->down));
	assert_int_equal(balance_pick(r, &lc, NULL, NULL, 0, NOW + 1500), 1);
	assert_int_equal(balance_pick(r, &lc, NULL, NULL, 0, NOW + 2001), 0);
	/* It works: up at once. */
	balance_connect_ok(r, u);
	assert_false(atomic_load(&u->st->down));
	assert_int_equal(atomic_load(&u->st->fails), 0);
	assert_int_equal(balance_pick(r, &lc, NULL, NULL, 0, NOW + 2001), 0);
	rm(r);
}

static void test_passive_with_checks(void **state)
{
	struct route *r = mk(SL_BALANCE_FIRST, 2, NULL, NULL);
	struct upstream *u = &r->ups[0];

	(void)state;
	r->checks = 1;
	for (int k = 0; k < 3; k++)
		balance_connect_failed(r, u, "refused", NOW);
	assert_true(atomic_load(&u->st->down));
	/* No trial: only the checks bring it back. */
	assert_int_equal(balance_pick(r, &lc, NULL, NULL, 0, NOW + 999999), 1);
	balance_connect_ok(r, u);
	assert_true(atomic_load(&u->st->down));
	upstream_set_down(r, u->st, 0, "2 checks passed");
	assert_false(atomic_load(&u->st->down));
	assert_int_equal(balance_pick(r, &lc, NULL, NULL, 0, NOW), 0);
	rm(r);
}

static void test_passive_off(void **state)
{
	struct route *r = mk(SL_BALANCE_FIRST, 1, NULL, NULL);

	(void)state;
	r->fails = 0;
	for (int k = 0; k < 100; k++)
		balance_connect_failed(r, &r->ups[0], "refused", NOW);
	assert_false(atomic_load(&r->ups[0].st->down));
	rm(r);
}

static void test_hash64(void **state)
{
	(void)state;
	assert_true(sl_hash64("a", 1, 0) == sl_hash64("a", 1, 0));
	assert_true(sl_hash64("a", 1, 0) != sl_hash64("b", 1, 0));
	assert_true(sl_hash64("a", 1, 0) != sl_hash64("a", 1, 1));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rr_smooth_weights),
		cmocka_unit_test(test_rr_weights_reduced),
		cmocka_unit_test(test_rr_skips_down),
		cmocka_unit_test(test_backup_only_when_primaries_down),
		cmocka_unit_test(test_tried_last),
		cmocka_unit_test(test_least_connections),
		cmocka_unit_test(test_random_two_choices),
		cmocka_unit_test(test_random_weights),
		cmocka_unit_test(test_source_hash_stable),
		cmocka_unit_test(test_source_hash_weights),
		cmocka_unit_test(test_first),
		cmocka_unit_test(test_passive_down_trial_up),
		cmocka_unit_test(test_passive_with_checks),
		cmocka_unit_test(test_passive_off),
		cmocka_unit_test(test_hash64),
	};

	sl_log_set_level(SL_LOG_ERROR); /* the down/up lines are expected */
	lc.rng = 88172645463325252ull;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
