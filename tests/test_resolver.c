/*
 * The resolver's cache and refresh (src/net/resolver.c) through its lookup
 * seam: answers come at once from the cache, fresh or not; an old one is
 * refreshed in the background; a refresh that fails keeps the last good
 * addresses; a prefetch fills the cache before anyone asks; a name that
 * never resolved fails.  The seam stands in for getaddrinfo() so the test
 * controls what "DNS" says, on every OS.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef _WIN32
#include <winsock2.h>
#include <ws2tcpip.h>
#else
#include <arpa/inet.h>
#include <netinet/in.h>
#endif

#include <cmocka.h>

#include "loop/loop.h"
#include "net/net.h"
#include "net/resolver.h"

static pthread_mutex_t dns_lock = PTHREAD_MUTEX_INITIALIZER;
static uint8_t dns_last_octet; /* 0: the name does not resolve */
static unsigned dns_calls;

static int fake_lookup(const char *host, struct sl_addr *addrs, size_t max,
		       size_t *n)
{
	struct sockaddr_in *in = (struct sockaddr_in *)&addrs[0].ss;
	uint8_t octet;

	(void)host;
	pthread_mutex_lock(&dns_lock);
	dns_calls++;
	octet = dns_last_octet;
	pthread_mutex_unlock(&dns_lock);
	*n = 0;
	if (octet == 0 || max == 0)
		return SL_ERESOLVE;
	memset(&addrs[0], 0, sizeof addrs[0]);
	in->sin_family = AF_INET;
	in->sin_addr.s_addr = htonl(0xc0000200u | octet); /* 192.0.2.x */
	addrs[0].len = sizeof *in;
	*n = 1;
	return 0;
}

static void dns_set(uint8_t octet)
{
	pthread_mutex_lock(&dns_lock);
	dns_last_octet = octet;
	pthread_mutex_unlock(&dns_lock);
}

static unsigned dns_count(void)
{
	unsigned n;

	pthread_mutex_lock(&dns_lock);
	n = dns_calls;
	pthread_mutex_unlock(&dns_lock);
	return n;
}

struct answer {
	sl_loop *loop;
	int done, status;
	uint8_t octet;
	uint16_t port;
};

static void on_answer(void *arg, int status, const struct sl_addr *addrs,
		      size_t n)
{
	struct answer *a = arg;

	a->done = 1;
	a->status = status;
	if (status == 0 && n > 0) {
		const struct sockaddr_in *in = (const void *)&addrs[0].ss;

		a->octet = (uint8_t)(ntohl(in->sin_addr.s_addr) & 0xff);
		a->port = ntohs(in->sin_port);
	}
	sl_loop_stop(a->loop);
}

static void on_guard(sl_timer *t)
{
	(void)t;
	fail_msg("no answer within 10 s");
}

/* Ask for host on a loop of our own and wait for the answer. */
static struct answer resolve(const char *host)
{
	struct answer a = { 0 };
	sl_resolve *req;
	sl_timer guard;

	assert_int_equal(sl_loop_new(&a.loop), 0);
	sl_timer_init(a.loop, &guard, on_guard, NULL);
	sl_timer_start(&guard, 10000);
	assert_int_equal(sl_resolve_start(a.loop, host, 8080, on_answer, &a,
					  &req),
			 0);
	assert_int_equal(sl_loop_run(a.loop), 0);
	sl_timer_stop(&guard);
	sl_loop_free(a.loop);
	assert_true(a.done);
	return a;
}

static void on_wake(sl_timer *t)
{
	sl_loop_stop(t->data);
}

/* A loop with one timer is the portable sleep. */
static void sleep_ms(unsigned ms)
{
	sl_loop *l;
	sl_timer t;

	assert_int_equal(sl_loop_new(&l), 0);
	sl_timer_init(l, &t, on_wake, l);
	sl_timer_start(&t, ms);
	assert_int_equal(sl_loop_run(l), 0);
	sl_loop_free(l);
}

/* Wait (bounded) until the lookup seam has been called `calls` times. */
static void wait_calls(unsigned calls)
{
	uint64_t end = sl_clock_ms() + 10000;

	while (dns_count() < calls) {
		if (sl_clock_ms() > end)
			fail_msg("the resolver did not look up again");
		sleep_ms(5);
	}
}

static void test_cache_refresh_keep(void **state)
{
	struct answer a;
	unsigned calls;

	(void)state;
	sl_net_set_resolve_interval(200);
	dns_set(1);
	a = resolve("svc.test");
	assert_int_equal(a.status, 0);
	assert_int_equal(a.octet, 1);
	assert_int_equal(a.port, 8080);
	calls = dns_count();

	/* Fresh: from the cache, no lookup. */
	dns_set(2);
	a = resolve("svc.test");
	assert_int_equal(a.octet, 1);
	assert_int_equal(dns_count(), calls);

	/* Old: still answered at once with what was known, and looked up
	 * again behind the scenes. */
	sleep_ms(250);
	a = resolve("svc.test");
	assert_int_equal(a.status, 0);
	assert_int_equal(a.octet, 1);
	wait_calls(calls + 1);
	for (int i = 0; i < 1000; i++) {
		a = resolve("svc.test");
		if (a.octet == 2)
			break;
		sleep_ms(5);
	}
	assert_int_equal(a.octet, 2);
	calls = dns_count();

	/* The name stops resolving: the last good address stays. */
	dns_set(0);
	sleep_ms(250);
	a = resolve("svc.test");
	assert_int_equal(a.status, 0);
	assert_int_equal(a.octet, 2);
	wait_calls(calls + 1);
	sleep_ms(20);
	a = resolve("svc.test");
	assert_int_equal(a.status, 0);
	assert_int_equal(a.octet, 2);
}

static void test_prefetch(void **state)
{
	unsigned calls;
	struct answer a;

	(void)state;
	sl_net_set_resolve_interval(60000);
	dns_set(7);
	calls = dns_count();
	sl_net_prefetch("early.test");
	wait_calls(calls + 1);
	sleep_ms(20); /* the answer is stored after the lookup returns */
	a = resolve("early.test");
	assert_int_equal(a.status, 0);
	assert_int_equal(a.octet, 7);
	assert_int_equal(dns_count(), calls + 1);
	/* Again: nothing to do while fresh. */
	sl_net_prefetch("early.test");
	sleep_ms(20);
	assert_int_equal(dns_count(), calls + 1);
}

static void test_never_resolved(void **state)
{
	struct answer a;

	(void)state;
	dns_set(0);
	a = resolve("nowhere.test");
	assert_int_equal(a.status, SL_ERESOLVE);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cache_refresh_keep),
		cmocka_unit_test(test_prefetch),
		cmocka_unit_test(test_never_resolved),
	};
	int rc;

	assert_int_equal(sl_net_init(), 0);
	sl_resolver_set_lookup(fake_lookup);
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	sl_resolver_set_lookup(NULL);
	sl_net_shutdown();
	return rc;
}
