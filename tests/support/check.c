/*
 * Checks of the end-to-end tests (see support.h): a failure fails the
 * running cmocka test, with the logs of its daemons on stderr, and the
 * test's teardown (st_teardown) ends what it started.
 */
#include "support.h"

#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

void st_daemon_stop(st_daemon *d)
{
	int rc;

	st_daemon_signal(d, SIGTERM);
	rc = st_daemon_wait(d, ST_WAIT_MS);
	if (rc != 0)
		st_print_logs();
	assert_int_equal(rc, 0);
	st_daemon_free(d);
}

void st_wait_log(const st_daemon *d, const char *needle, unsigned n)
{
	if (st_daemon_wait_log(d, needle, n, ST_WAIT_MS) < 0) {
		char *log = st_daemon_log(d);

		/* Not print_error(): cmocka cuts its messages short. */
		fprintf(stderr, "no %u x '%s' in the log:\n%s\n", n, needle,
			log);
		free(log);
		fail();
	}
}

void st_wait_logf(const st_daemon *d, unsigned n, const char *fmt, ...)
{
	va_list ap;
	char buf[512];

	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	st_wait_log(d, buf, n);
}

/* msg out on c, the same back within ST_STALL_MS. */
void st_echo(st_sock c, const char *msg)
{
	size_t n = strlen(msg);
	char *buf = malloc(n + 1);

	assert_non_null(buf);
	st_send_all(c, msg, n);
	st_recv_all(c, buf, n, ST_STALL_MS);
	assert_memory_equal(buf, msg, n);
	free(buf);
}

void st_echo_once(uint16_t port, const char *msg)
{
	st_sock c = st_connect_tcp(port);

	if (c == ST_BAD_SOCK)
		fail_msg("connect to port %u: %s", (unsigned)port,
			 strerror(errno));
	st_echo(c, msg);
	st_close(c);
}

st_sock st_echo_open(uint16_t port, const char *msg)
{
	st_sock c = st_connect_tcp_retry(port, 10000);

	st_echo(c, msg);
	return c;
}

long long st_metric_at(uint16_t aport, const char *fmt, ...)
{
	va_list ap;
	char series[512];
	char *m = st_http_get(aport, "/metrics");
	long long v;

	va_start(ap, fmt);
	vsnprintf(series, sizeof series, fmt, ap);
	va_end(ap);
	v = st_metric(m, series);
	free(m);
	return v;
}

void st_wait_metric(uint16_t aport, long long want, const char *fmt, ...)
{
	va_list ap;
	char series[512];
	uint64_t end = st_now_ms() + ST_WAIT_MS;
	long long v;

	va_start(ap, fmt);
	vsnprintf(series, sizeof series, fmt, ap);
	va_end(ap);
	while ((v = st_metric_at(aport, "%s", series)) != want &&
	       st_now_ms() < end)
		st_sleep_ms(20);
	if (v != want) {
		st_print_logs();
		fail_msg("%s is %lld, expected %lld", series, v, want);
	}
}
