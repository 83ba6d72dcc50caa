/*
 * Fault-injection end-to-end tests: the real sluice binary ($SLUICE_BIN,
 * or sluice.exe under wine) on loopback, against peers that misbehave on
 * purpose (an upstream that resets mid-transfer, one that never reads, a
 * client that never reads, slowloris clients), with its descriptors taken
 * away, and under signal storms.  Each test has a daemon of its own.
 *
 * As in tests/test_features.c, timing is asserted only as a lower bound
 * where a feature delays something (a timeout), and as generous upper
 * bounds on what must happen at all: a bound on a hang, never a claim
 * about speed.  Memory is asserted as a bound that follows from the
 * design (see rss_bound below), not from a measurement of this machine.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* glibc: prlimit */
#endif

#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sys/resource.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "support/support.h"

#define KiB 1024ull
#define MiB (1024ull * 1024)

/* ---- checks ------------------------------------------------------------------- */

/* The log holds needle exactly n times; else fail with the log. */
static void log_exactly(st_daemon *d, const char *needle, unsigned n)
{
	unsigned got = st_daemon_log_count(d, needle);

	if (got != n) {
		st_print_logs();
		fail_msg("'%s' is in the log %u times, expected %u", needle,
			 got, n);
	}
}

/* ---- clients ------------------------------------------------------------------ */

/* Wait for the end of a connection whose peer may still send (drained). */
static int wait_end(st_sock c, unsigned timeout_ms)
{
	char buf[4096];
	uint64_t end = st_now_ms() + timeout_ms;
	ssize_t n;

	do {
		uint64_t now = st_now_ms();

		n = st_recv_some(c, buf, sizeof buf,
				 now < end ? (unsigned)(end - now) : 0);
	} while (n > 0);
	return (int)n;
}

static void expect_closed(st_sock c)
{
	int r = wait_end(c, ST_WAIT_MS);

	if (r != 0 && r != -1) {
		st_print_logs();
		fail_msg("expected the connection to end; nothing in %u ms",
			 ST_WAIT_MS);
	}
}

/* The connection is still open: no EOF or reset pending (data, which is
 * read and dropped, is fine). */
static int still_open(st_sock c)
{
	char buf[256];

	for (;;) {
		struct pollfd p = {.fd = c, .events = POLLIN};
		ssize_t n;

		if (poll(&p, 1, 0) == 0)
			return 1;
		n = recv(c, buf, sizeof buf, MSG_DONTWAIT);
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
			return 0;
	}
}

static void set_linger0(st_sock c)
{
	struct linger lg = {1, 0};

	if (setsockopt(c, SOL_SOCKET, SO_LINGER, &lg, sizeof lg) < 0)
		st_fail("SO_LINGER: %s", strerror(errno));
}

/* ---- the daemon's resources ----------------------------------------------------- */

/*
 * VmRSS of pid in KiB from /proc (Linux), or -1 where there is no such
 * file.  Under wine the daemon's pid is the Linux process running
 * sluice.exe (wine execs its loader in place), so this works there too,
 * and wine's own memory is in the figure.
 */
static long rss_kib(pid_t pid)
{
	char path[64];
	char *s, *p;
	long v = -1;

	snprintf(path, sizeof path, "/proc/%ld/status", (long)pid);
	s = st_read_file(path);
	if (s == NULL)
		return -1;
	p = strstr(s, "\nVmRSS:");
	if (p != NULL)
		v = strtol(p + strlen("\nVmRSS:"), NULL, 10);
	free(s);
	return v;
}

/*
 * What a session that cannot write may hold, by design: per direction one
 * pending buffer of buffer_size (64 KiB by default) while a write waits,
 * the loop's shared read buffer, and pooled buffers of at most 4 MiB per
 * loop (POOL_MAX_FREE in src/session.c).  Bytes in flight beyond that sit
 * in kernel socket buffers and forwarding pipes, which are not RSS.  So a
 * stalled session costs well under a megabyte; 16 MiB leaves room for
 * malloc's arenas and for wine's own state without letting a leak of the
 * stream through (256 MiB are offered).
 */
#define RSS_BOUND_KIB (16 * 1024L)

static void report_rss(const char *what, long before, long after,
		       uint64_t moved)
{
	printf("# %s: %llu KiB went in; sluice RSS %ld -> %ld KiB "
	       "(growth %ld KiB, bound %ld KiB)\n",
	       what, (unsigned long long)(moved / KiB), before, after,
	       after - before, RSS_BOUND_KIB);
	fflush(stdout);
}

/* ---- an upstream that resets mid-transfer ------------------------------------------- */

struct reset_srv {
	atomic_uint conns;
	_Atomic uint64_t reset_ms; /* when the first connection was reset */
};

#define RESET_AFTER MiB

/*
 * The first connection: read RESET_AFTER bytes, then close with SO_LINGER
 * 0 (a reset) while the client is still sending.  Later ones echo.
 */
static void reset_or_echo(st_sock c, void *arg)
{
	struct reset_srv *rs = arg;
	char buf[16384];
	uint64_t got = 0;

	if (atomic_fetch_add(&rs->conns, 1) != 0) {
		st_echo_rest(c);
		return;
	}
	while (got < RESET_AFTER) {
		ssize_t n = st_recv_some(c, buf, sizeof buf, ST_STALL_MS);

		if (n <= 0)
			return;
		got += (uint64_t)n;
	}
	set_linger0(c);
	atomic_store(&rs->reset_ms, st_now_ms());
	/* returning closes c: with linger 0 that sends a reset */
}

/*
 * Push up to `total` bytes as fast as the socket takes them until the
 * connection ends (EOF, reset or a send error).  Returns the bytes sent
 * and sets *ended_ms to when the end was seen (0: it did not end within
 * timeout_ms).
 */
static uint64_t push_until_end(st_sock c, uint64_t total, unsigned timeout_ms,
			       uint64_t *ended_ms)
{
	static char chunk[64 * 1024];
	uint64_t sent = 0, end = st_now_ms() + timeout_ms;

	memset(chunk, 'r', sizeof chunk);
	*ended_ms = 0;
	while (st_now_ms() < end) {
		struct pollfd p = {.fd = c, .events = POLLIN};
		char b[4096];
		ssize_t n;

		if (sent < total)
			p.events |= POLLOUT;
		if (poll(&p, 1, 100) < 0 && errno != EINTR)
			st_fail("poll: %s", strerror(errno));
		if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
			n = recv(c, b, sizeof b, MSG_DONTWAIT);
			if (n == 0 || (n < 0 && errno != EAGAIN &&
				       errno != EINTR)) {
				*ended_ms = st_now_ms();
				return sent;
			}
		}
		if (p.revents & POLLOUT) {
			size_t k = total - sent < sizeof chunk
					   ? (size_t)(total - sent)
					   : sizeof chunk;

			n = send(c, chunk, k, MSG_DONTWAIT);
			if (n > 0) {
				sent += (uint64_t)n;
			} else if (n < 0 && errno != EAGAIN && errno != EINTR) {
				*ended_ms = st_now_ms();
				return sent;
			}
		}
	}
	return sent;
}

static void test_upstream_reset(void **state)
{
	uint16_t uport, lport = st_free_port();
	struct reset_srv rs;
	st_server *srv;
	st_daemon *d;
	st_sock c;
	char *yaml;
	uint64_t sent, ended, reset;
	st_cfg *cfg;

	(void)state;
	atomic_init(&rs.conns, 0);
	atomic_init(&rs.reset_ms, 0);
	srv = st_server_start_fn(st_listen_tcp(&uport, 16), reset_or_echo, &rs);
	cfg = st_cfg_new();
	st_cfg_set(cfg, "threads", "2");
	st_cfg_route(cfg, "reset", lport, uport);
	yaml = st_cfg_done(cfg);
	d = st_daemon_start(yaml);

	c = st_connect_tcp_retry(lport, 10000);
	sent = push_until_end(c, 1024 * MiB, 60000, &ended);
	reset = atomic_load(&rs.reset_ms);
	printf("# sent %llu KiB before the end; the end came %lld ms after "
	       "the upstream's reset\n",
	       (unsigned long long)(sent / KiB),
	       ended && reset ? (long long)(ended - reset) : -1LL);
	if (ended == 0 || reset == 0) {
		st_print_logs();
		fail_msg("the client saw no end (upstream reset: %s)",
			 reset ? "yes" : "no");
	}
	assert_true(sent >= RESET_AFTER);
	/* A bound on a hang: the end must not wait for some timeout. */
	assert_true(ended - reset <= 10000);
	st_close(c);

	st_wait_log(d, "session route=reset ", 1);
	log_exactly(d, "session route=reset ", 1);
	log_exactly(d, "reason=upstream-error", 1);

	/* It goes on serving. */
	st_close(st_echo_open(lport, "after the reset"));
	st_wait_log(d, "reason=done", 1);
	log_exactly(d, "session route=reset ", 2);
	st_daemon_stop(d);
	st_server_stop(srv);
	free(yaml);
}

/* ---- an upstream that never reads ----------------------------------------------------- */

/*
 * Offer `total` bytes as fast as the socket takes them, for at most
 * for_ms; the bytes taken.
 */
static uint64_t push_for(st_sock c, uint64_t total, unsigned for_ms)
{
	static char chunk[256 * 1024];
	uint64_t sent = 0, end = st_now_ms() + for_ms;

	memset(chunk, 'h', sizeof chunk);
	while (sent < total && st_now_ms() < end) {
		struct pollfd p = {.fd = c, .events = POLLOUT};
		ssize_t n;

		if (poll(&p, 1, 50) < 0 && errno != EINTR)
			st_fail("poll: %s", strerror(errno));
		if (!(p.revents & POLLOUT))
			continue;
		n = send(c, chunk, sizeof chunk, MSG_DONTWAIT);
		if (n > 0)
			sent += (uint64_t)n;
		else if (n < 0 && errno != EAGAIN && errno != EINTR)
			st_fail("push: send: %s", strerror(errno));
	}
	return sent;
}

static void test_upstream_never_reads(void **state)
{
	uint16_t uport, lport = st_free_port();
	st_server *srv;
	st_daemon *d;
	st_sock c;
	char *yaml;
	long before, after;
	uint64_t sent;
	st_cfg *cfg;

	(void)state;
	srv = st_server_start(st_listen_tcp(&uport, 16), ST_HOLD, 0);
	/* The idle timeout is longer than the 3 s push: nothing moves
	 * once the buffers are full, and the session must live until the
	 * second measurement. */
	cfg = st_cfg_new();
	st_cfg_set(cfg, "threads", "2");
	st_cfg_route(cfg, "hold", lport, uport);
	st_cfg_route_set(cfg, "idle_timeout", "6s");
	yaml = st_cfg_done(cfg);
	d = st_daemon_start(yaml);
	before = rss_kib(st_daemon_pid(d));

	c = st_connect_tcp_retry(lport, 10000);
	sent = push_for(c, 256 * MiB, 3000);
	after = rss_kib(st_daemon_pid(d));
	assert_int_equal(st_server_accepted(srv), 1);
	/* Far less than offered: the stream is held back, not buffered. */
	assert_true(sent < 256 * MiB);
	if (before < 0 || after < 0) {
		printf("# RSS not measured: no /proc/%ld/status on this "
		       "system; %llu KiB went in\n",
		       (long)st_daemon_pid(d), (unsigned long long)(sent / KiB));
	} else {
		report_rss("upstream never reads", before, after, sent);
		assert_true(after - before < RSS_BOUND_KIB);
	}

	/*
	 * The client goes.  sluice does not read it while its write to the
	 * upstream waits (that is the back-pressure), so neither its FIN nor
	 * a reset is seen there: the streams report an end through a read or
	 * a write, and neither is under way.  idle_timeout reclaims the
	 * session, as HAProxy's timeout client/server and nginx's
	 * proxy_timeout do theirs.
	 */
	st_close(c);
	st_wait_log(d, "session route=hold ", 1);
	log_exactly(d, "session route=hold ", 1);
	log_exactly(d, "reason=idle-timeout", 1);
	st_daemon_stop(d);
	st_server_stop(srv);
	free(yaml);
}

/* ---- a client that never reads ---------------------------------------------------------- */

struct flood {
	_Atomic uint64_t sent;
};

/* Send a stream as fast as the connection takes it, until it ends. */
static void flood_main(st_sock c, void *arg)
{
	struct flood *f = arg;
	static char chunk[256 * 1024];
	uint64_t end = st_now_ms() + 60000;

	memset(chunk, 'f', sizeof chunk);
	while (st_now_ms() < end && atomic_load(&f->sent) < 1024 * MiB) {
		ssize_t n = st_send_some(c, chunk, sizeof chunk);

		if (n < 0)
			return;
		atomic_fetch_add(&f->sent, (uint64_t)n);
	}
}

static void test_client_never_reads(void **state)
{
	uint16_t uport, lport = st_free_port();
	struct flood f;
	st_server *srv;
	st_daemon *d;
	st_sock c;
	char *yaml;
	long before, after;
	uint64_t end;
	st_cfg *cfg;

	(void)state;
	atomic_init(&f.sent, 0);
	srv = st_server_start_fn(st_listen_tcp(&uport, 16), flood_main, &f);
	cfg = st_cfg_new();
	st_cfg_set(cfg, "threads", "2");
	st_cfg_route(cfg, "flood", lport, uport);
	yaml = st_cfg_done(cfg);
	d = st_daemon_start(yaml);
	before = rss_kib(st_daemon_pid(d));

	c = st_connect_tcp_retry(lport, 10000);
	end = st_now_ms() + ST_WAIT_MS;
	while (st_server_accepted(srv) < 1 && st_now_ms() < end)
		st_sleep_ms(5);
	assert_int_equal(st_server_accepted(srv), 1);
	st_sleep_ms(3000); /* the upstream sends; nobody reads */
	after = rss_kib(st_daemon_pid(d));
	assert_true(atomic_load(&f.sent) < 1024 * MiB);
	if (before < 0 || after < 0) {
		printf("# RSS not measured: no /proc/%ld/status on this "
		       "system; %llu KiB went in\n",
		       (long)st_daemon_pid(d),
		       (unsigned long long)(atomic_load(&f.sent) / KiB));
	} else {
		report_rss("client never reads", before, after,
			   atomic_load(&f.sent));
		assert_true(after - before < RSS_BOUND_KIB);
	}

	/* Closing with unread data resets: the session ends, and so does
	 * the upstream's send. */
	st_close(c);
	st_wait_log(d, "session route=flood ", 1);
	log_exactly(d, "session route=flood ", 1);
	end = st_now_ms() + ST_WAIT_MS;
	while (st_server_open(srv) > 0 && st_now_ms() < end)
		st_sleep_ms(5);
	assert_int_equal(st_server_open(srv), 0);
	st_daemon_stop(d);
	st_server_stop(srv);
	free(yaml);
}

/* ---- slowloris ------------------------------------------------------------------------ */

#define NTRICKLE 20 /* one byte every 300 ms: active, kept */
#define NSILENT 20  /* one byte, then nothing: idle_timeout */
#define NHALF 20    /* half-close, never read: half_closed_timeout */
#define TRICKLE_MS 300

struct trickle {
	st_sock c[NTRICKLE];
	atomic_int stop;
	atomic_uint rounds;
	atomic_uint failed; /* sends that failed, ends seen */
};

static void *trickle_main(void *arg)
{
	struct trickle *t = arg;

	while (!atomic_load(&t->stop)) {
		for (int i = 0; i < NTRICKLE; i++) {
			if (st_send_some(t->c[i], "t", 1) != 1 ||
			    !still_open(t->c[i]))
				atomic_fetch_add(&t->failed, 1);
		}
		atomic_fetch_add(&t->rounds, 1);
		st_sleep_ms(TRICKLE_MS);
	}
	return NULL;
}

static void test_slowloris(void **state)
{
	uint16_t eport, hport, lport = st_free_port(), hlport = st_free_port();
	uint16_t aport = st_free_port();
	st_server *echo = st_server_start(st_listen_tcp(&eport, 128), ST_ECHO, 0);
	st_server *hold = st_server_start(st_listen_tcp(&hport, 128), ST_HOLD, 0);
	char *yaml;
	st_daemon *d;
	struct trickle t;
	st_sock silent[NSILENT], half[NHALF];
	pthread_t th;
	uint64_t t0, first_end;
	int i;
	st_cfg *cfg;

	(void)state;
	cfg = st_cfg_new();
	st_cfg_set(cfg, "threads", "2");
	st_cfg_set(cfg, "admin", "tcp://127.0.0.1:%u", aport);
	st_cfg_route(cfg, "slow", lport, eport);
	st_cfg_route_set(cfg, "idle_timeout", "1s");
	st_cfg_route(cfg, "half", hlport, hport);
	st_cfg_route_set(cfg, "idle_timeout", "1h");
	st_cfg_route_set(cfg, "half_closed_timeout", "1s");
	yaml = st_cfg_done(cfg);
	d = st_daemon_start(yaml);
	memset(&t, 0, sizeof t);
	atomic_init(&t.stop, 0);
	atomic_init(&t.rounds, 0);
	atomic_init(&t.failed, 0);
	for (i = 0; i < NTRICKLE; i++)
		t.c[i] = st_connect_tcp_retry(lport, 10000);
	pthread_create(&th, NULL, trickle_main, &t);

	t0 = st_now_ms();
	for (i = 0; i < NSILENT; i++) {
		silent[i] = st_connect_tcp_retry(lport, 10000);
		st_send_all(silent[i], "s", 1);
	}
	for (i = 0; i < NHALF; i++) {
		half[i] = st_connect_tcp_retry(hlport, 10000);
		st_send_all(half[i], "h", 1);
		st_shutdown_wr(half[i]);
	}
	/* Reclaimed, each no sooner than its timeout after its last byte. */
	for (i = 0; i < NSILENT; i++)
		expect_closed(silent[i]);
	first_end = st_now_ms();
	for (i = 0; i < NHALF; i++)
		expect_closed(half[i]);
	assert_true(first_end - t0 >= 900);
	st_wait_log(d, "reason=idle-timeout", NSILENT);
	st_wait_log(d, "reason=half-closed-timeout", NHALF);
	st_wait_metric(aport, 0,
		       "sluice_route_sessions_active{route=\"half\"}");

	/* The tricklers outlive the idle timeout three times over. */
	while (st_now_ms() - t0 < 3500)
		st_sleep_ms(50);
	assert_true(atomic_load(&t.rounds) >= 5);
	assert_int_equal(atomic_load(&t.failed), 0);
	for (i = 0; i < NTRICKLE; i++)
		assert_true(still_open(t.c[i]));
	assert_int_equal(st_metric_at(aport, "sluice_route_sessions_active{"
					     "route=\"slow\"}"),
			 NTRICKLE);
	atomic_store(&t.stop, 1);
	pthread_join(th, NULL);
	assert_int_equal(atomic_load(&t.failed), 0);

	/* An orderly end (a close with an echo unread would reset). */
	for (i = 0; i < NTRICKLE; i++) {
		st_shutdown_wr(t.c[i]);
		expect_closed(t.c[i]);
		st_close(t.c[i]);
	}
	for (i = 0; i < NSILENT; i++)
		st_close(silent[i]);
	for (i = 0; i < NHALF; i++)
		st_close(half[i]);
	st_wait_metric(aport, 0,
		       "sluice_route_sessions_active{route=\"slow\"}");
	st_wait_log(d, "reason=done", NTRICKLE);
	log_exactly(d, "reason=idle-timeout", NSILENT);
	log_exactly(d, "reason=half-closed-timeout", NHALF);
	log_exactly(d, "reason=client-error", 0);
	st_daemon_stop(d);
	st_server_stop(echo);
	st_server_stop(hold);
	free(yaml);
}

/* ---- a paced, checked echo stream ------------------------------------------------------ */

/*
 * A session that keeps moving: chunks of a seeded stream out, the echo
 * back and checked, every few milliseconds, until told to stop; then a
 * half-close and the EOF back.  Any difference ends the program.
 */
struct paced {
	uint16_t port;
	uint64_t seed;
	atomic_int stop;
	_Atomic uint64_t done; /* bytes echoed and checked */
	atomic_int finished;
};

#define PACED_CHUNK (128 * 1024) /* fills a read buffer: tries to splice */

static void *paced_main(void *arg)
{
	struct paced *p = arg;
	char *out = malloc(PACED_CHUNK), *in = malloc(PACED_CHUNK);
	st_sock c = st_connect_tcp(p->port);
	st_rng r;

	if (c == ST_BAD_SOCK || out == NULL || in == NULL)
		st_fail("paced: connect to %u failed", p->port);
	st_rng_init(&r, p->seed);
	while (!atomic_load(&p->stop)) {
		st_rng_fill(&r, out, PACED_CHUNK);
		st_send_all(c, out, PACED_CHUNK);
		st_recv_all(c, in, PACED_CHUNK, ST_STALL_MS);
		if (memcmp(in, out, PACED_CHUNK) != 0)
			st_fail("paced: the echo differs after %llu bytes",
				(unsigned long long)atomic_load(&p->done));
		atomic_fetch_add(&p->done, PACED_CHUNK);
		st_sleep_ms(10);
	}
	st_shutdown_wr(c);
	if (st_wait_closed(c, ST_STALL_MS) != 0)
		st_fail("paced: no EOF after the half-close");
	st_close(c);
	free(out);
	free(in);
	atomic_store(&p->finished, 1);
	return NULL;
}

static void paced_start(struct paced *p, pthread_t *th, uint16_t port,
			uint64_t seed)
{
	p->port = port;
	p->seed = seed;
	atomic_init(&p->stop, 0);
	atomic_init(&p->done, 0);
	atomic_init(&p->finished, 0);
	pthread_create(th, NULL, paced_main, p);
}

/* Wait until p has moved more than it had (its session is alive). */
static void paced_progress(struct paced *p)
{
	uint64_t was = atomic_load(&p->done), end = st_now_ms() + ST_WAIT_MS;

	while (atomic_load(&p->done) <= was && st_now_ms() < end)
		st_sleep_ms(5);
	if (atomic_load(&p->done) <= was) {
		st_print_logs();
		fail_msg("the paced session stalled at %llu bytes",
			 (unsigned long long)was);
	}
}

/* ---- descriptor exhaustion ------------------------------------------------------------- */

#ifdef __linux__
/*
 * The lowest descriptor number pid does not use: with RLIMIT_NOFILE at
 * that, every new descriptor it asks for fails with EMFILE.
 */
static int lowest_free_fd(pid_t pid)
{
	char path[64];
	unsigned char used[4096] = {0};
	struct dirent *e;
	DIR *dir;
	int i;

	snprintf(path, sizeof path, "/proc/%ld/fd", (long)pid);
	dir = opendir(path);
	if (dir == NULL)
		st_fail("%s: %s", path, strerror(errno));
	while ((e = readdir(dir)) != NULL) {
		long fd = strtol(e->d_name, NULL, 10);

		if (e->d_name[0] != '.' && fd >= 0 && fd < (long)sizeof used)
			used[fd] = 1;
	}
	closedir(dir);
	for (i = 0; i < (int)sizeof used && used[i]; i++)
		;
	return i;
}

/* Wait until pid's descriptor count has stayed the same for 300 ms. */
static void settle_fds(pid_t pid)
{
	char path[64];
	uint64_t end = st_now_ms() + ST_WAIT_MS;
	int last = -1, same = 0;

	snprintf(path, sizeof path, "/proc/%ld/fd", (long)pid);
	while (same < 3 && st_now_ms() < end) {
		DIR *dir = opendir(path);
		struct dirent *e;
		int n = 0;

		if (dir == NULL)
			st_fail("%s: %s", path, strerror(errno));
		while ((e = readdir(dir)) != NULL)
			n += e->d_name[0] != '.';
		closedir(dir);
		same = n == last ? same + 1 : 0;
		last = n;
		st_sleep_ms(100);
	}
	if (same < 3)
		st_fail("the daemon's descriptors did not settle");
}

static void set_nofile(pid_t pid, rlim_t soft, rlim_t hard)
{
	struct rlimit rl = {soft, hard};

	if (prlimit(pid, RLIMIT_NOFILE, &rl, NULL) < 0)
		st_fail("prlimit %ld: %s", (long)pid, strerror(errno));
}
#endif

#define FD_LIMIT 128
#define FD_WAITING 30 /* clients that arrive while descriptors are out */
#define ADMIN_IDLE 31 /* + one scrape: the admin listener's 32 */

/*
 * Beyond test_e2e's test_descriptor_limit (the cap that ulimit -n sets):
 *  1. At the cap, the admin listener's 32 connections still find
 *     descriptors: the cap leaves room for them, so no accept fails.
 *  2. The descriptors run out for real (taken with prlimit(2), as when
 *     something the cap does not foresee holds them): accepting pauses,
 *     logged once rather than on every retry; a session opened before
 *     keeps moving, byte-exact; clients that arrive wait in the backlog.
 *  3. Descriptors come back: the waiting clients are all served, those
 *     over the cap in turn as others close; none is failed.
 */
static void test_descriptor_exhaustion(void **state)
{
	ST_NATIVE_ONLY();
#ifdef __linux__
	uint16_t uport, lport = st_free_port(), aport = st_free_port();
	st_server *srv = st_server_start(st_listen_tcp(&uport, 256), ST_ECHO, 0);
	st_cfg *cfg = st_cfg_new();
	char *yaml;
	st_daemon *d;
	pid_t pid;
	st_sock *held, admin[ADMIN_IDLE], waiting[FD_WAITING];
	struct paced bulk;
	pthread_t bt;
	unsigned cap, nheld, pauses, i;
	char *log, *p, *m;

	(void)state;
	st_cfg_set(cfg, "threads", "1");
	st_cfg_set(cfg, "admin", "tcp://127.0.0.1:%u", aport);
	st_cfg_route(cfg, "fds", lport, uport);
	st_cfg_listen_set(cfg, "backlog", "128");
	yaml = st_cfg_done(cfg);
	d = st_daemon_start_limited(yaml, FD_LIMIT);
	pid = st_daemon_pid(d);
	log = st_daemon_log(d);
	p = strstr(log, "max_connections: ");
	assert_non_null(p);
	cap = (unsigned)strtoul(p + strlen("max_connections: "), NULL, 10);
	free(log);
	assert_true(cap > 10 && cap < FD_LIMIT / 2);
	nheld = cap - 1;
	held = calloc(nheld, sizeof *held);
	assert_non_null(held);

	/* 1. The cap in use: one paced stream and cap - 1 held sessions,
	 * and every connection the admin listener takes. */
	paced_start(&bulk, &bt, lport, 77);
	paced_progress(&bulk);
	for (i = 0; i < nheld; i++) {
		char msg[32];

		snprintf(msg, sizeof msg, "held %04u", i);
		held[i] = st_echo_open(lport, msg);
	}
	for (i = 0; i < ADMIN_IDLE; i++)
		admin[i] = st_connect_tcp_retry(aport, 10000);
	m = st_http_get(aport, "/metrics");
	assert_non_null(strstr(m, "HTTP/1.1 200 OK\r\n"));
	free(m);
	log_exactly(d, "Too many open files", 0);
	for (i = 0; i < ADMIN_IDLE; i++)
		st_close(admin[i]);
	paced_progress(&bulk);

	/* 2. Room under the cap, but no descriptor to be had. */
	for (i = 10; i < nheld; i++)
		st_close(held[i]);
	st_wait_log(d, "reason=done", nheld - 10);
	/* Every descriptor sluice holds from here on is a session's (or
	 * the paced stream's pooled pipe): counted once nothing is closing
	 * any more, the admin connections included. */
	settle_fds(pid);
	set_nofile(pid, (rlim_t)lowest_free_fd(pid), FD_LIMIT);
	for (i = 0; i < FD_WAITING; i++) {
		char msg[32];

		waiting[i] = st_connect_tcp_retry(lport, 10000);
		snprintf(msg, sizeof msg, "waiting %04u", i);
		st_send_all(waiting[i], msg, strlen(msg));
	}
	st_wait_log(d, "Too many open files", 1);
	/* Paused, retried every 100 ms; the stream opened before moves on. */
	for (i = 0; i < 10; i++)
		paced_progress(&bulk);
	st_sleep_ms(1000);
	paced_progress(&bulk);
	{
		char got[32];

		assert_int_equal(st_recv_some(waiting[0], got, sizeof got, 0),
				 -2);
	}
	pauses = st_daemon_log_count(d, "Too many open files");
	printf("# descriptors out: %u log line(s) for the pause\n", pauses);
	/* One line per episode (per listener), not one per retry. */
	assert_true(pauses <= 2);

	/* 3. Descriptors back: everyone is served, in turn over the cap,
	 * and the log says the shortage is over. */
	set_nofile(pid, FD_LIMIT, FD_LIMIT);
	st_wait_log(d, "accepting again", 1);
	for (i = 0; i < FD_WAITING; i++) {
		char msg[32], got[32];
		size_t n;

		snprintf(msg, sizeof msg, "waiting %04u", i);
		n = strlen(msg);
		st_recv_all(waiting[i], got, n, ST_STALL_MS);
		assert_memory_equal(got, msg, n);
		st_close(waiting[i]);
	}
	/* Those over the cap got in as others closed; and so do new ones. */
	for (i = 0; i < 10; i++)
		st_close(held[i]);
	st_close(st_echo_open(lport, "a new client"));
	atomic_store(&bulk.stop, 1);
	pthread_join(bt, NULL);
	st_wait_log(d, "reason=done", nheld + FD_WAITING + 2);
	log_exactly(d, "reason=connect-failed", 0);
	log_exactly(d, "reason=client-error", 0);
	log_exactly(d, "reason=upstream-error", 0);
	assert_true(st_metric_at(aport, "sluice_route_accept_pauses_total{"
					"route=\"fds\"}") >= 1);
	st_daemon_stop(d);
	st_server_stop(srv);
	free(held);
	free(yaml);
#else
	(void)state;
	printf("# skipped: taking a daemon's descriptors needs prlimit(2) "
	       "(Linux)\n");
	skip();
#endif
}

/* ---- SIGHUP storm ------------------------------------------------------------------------ */

struct traffic {
	uint16_t port;
	atomic_int stop;
	atomic_uint ok, failed;
	char failure[96]; /* the first failure, written by the thread that
			     counted it first */
};

/* Short sessions back to back; a failure is noted, not fatal here. */
static void *traffic_main(void *arg)
{
	static const char msg[] = "during the storm";
	struct traffic *t = arg;

	while (!atomic_load(&t->stop)) {
		st_sock c = st_connect_tcp(t->port);
		char buf[sizeof msg];
		size_t got = 0;
		ssize_t n = 0;
		uint16_t port = 0;

		if (c != ST_BAD_SOCK) {
			port = st_local_port(c);
			if (st_send_some(c, msg, sizeof msg - 1) ==
			    (ssize_t)(sizeof msg - 1)) {
				while (got < sizeof msg - 1 &&
				       (n = st_recv_some(c, buf + got,
							 sizeof msg - 1 - got,
							 ST_STALL_MS)) > 0)
					got += (size_t)n;
			}
		}
		if (got == sizeof msg - 1 && memcmp(buf, msg, got) == 0)
			atomic_fetch_add(&t->ok, 1);
		else if (atomic_fetch_add(&t->failed, 1) == 0)
			snprintf(t->failure, sizeof t->failure,
				 "client port %u: %s, %zu of %zu bytes (last "
				 "recv %zd)",
				 port, c == ST_BAD_SOCK ? "connect failed"
							: "short",
				 got, sizeof msg - 1, n);
		st_close(c);
	}
	return NULL;
}

struct bulk_loop {
	uint16_t port;
	atomic_int stop;
	atomic_uint done;
};

/* Whole checked exchanges back to back, until told to stop. */
static void *bulk_loop_main(void *arg)
{
	struct bulk_loop *b = arg;
	uint64_t seed = 500;

	do {
		st_sock c = st_connect_tcp(b->port);

		if (c == ST_BAD_SOCK)
			st_fail("bulk: connect to %u: %s", b->port,
				strerror(errno));
		st_exchange(c, seed, seed, 16 * MiB, ST_STALL_MS);
		st_close(c);
		seed++;
		atomic_fetch_add(&b->done, 1);
	} while (!atomic_load(&b->stop));
	return NULL;
}

#define NHUP 50
#define NTRAFFIC 4

static void test_sighup_storm(void **state)
{
	uint16_t uport, lport = st_free_port(), sport = st_free_port();
	uint16_t aport = st_free_port();
	st_server *srv = st_server_start(st_listen_tcp(&uport, 256), ST_ECHO, 0);
	char *conf[2];
	struct traffic t;
	struct bulk_loop b;
	pthread_t tt[NTRAFFIC], bt;
	st_daemon *d;
	st_cfg *cfg;
	unsigned reloaded, i;
	uint64_t t0, end;

	(void)state;
	/* Two configs that keep the route and its listener, and add and
	 * remove a second one: each reload changes something. */
	cfg = st_cfg_new();
	st_cfg_set(cfg, "threads", "2");
	st_cfg_set(cfg, "admin", "tcp://127.0.0.1:%u", aport);
	st_cfg_route(cfg, "storm", lport, uport);
	st_cfg_listen_set(cfg, "backlog", "256");
	st_cfg_route_set(cfg, "idle_timeout", "1m");
	conf[0] = st_cfg_yaml(cfg);
	st_cfg_route_set(cfg, "idle_timeout", "2m");
	st_cfg_route(cfg, "side", sport, uport);
	conf[1] = st_cfg_done(cfg);
	d = st_daemon_start(conf[0]);
	memset(&t, 0, sizeof t);
	t.port = lport;
	atomic_init(&t.stop, 0);
	atomic_init(&t.ok, 0);
	atomic_init(&t.failed, 0);
	b.port = lport;
	atomic_init(&b.stop, 0);
	atomic_init(&b.done, 0);
	for (i = 0; i < NTRAFFIC; i++)
		pthread_create(&tt[i], NULL, traffic_main, &t);
	pthread_create(&bt, NULL, bulk_loop_main, &b);

	t0 = st_now_ms();
	for (i = 1; i <= NHUP; i++) {
		st_daemon_write_config(d, conf[i % 2]);
		st_daemon_signal(d, SIGHUP);
		st_sleep_ms(40);
	}
	printf("# %u SIGHUPs in %llu ms\n", NHUP,
	       (unsigned long long)(st_now_ms() - t0));
	/*
	 * Signals coalesce, and on a loaded machine the last SIGHUP may not
	 * have been taken yet.  The control loop takes its signals in the
	 * order they came (a self-pipe), so once a SIGUSR1 sent after the
	 * last SIGHUP is answered ("log file reopened"), every SIGHUP before
	 * it has been taken; then wait until every reload begun has ended.
	 */
	st_daemon_signal(d, SIGUSR1);
	if (st_daemon_wait_log(d, "log file reopened", 1, ST_WAIT_MS) < 0) {
		st_print_logs();
		fail_msg("no answer to SIGUSR1 after the storm");
	}
	end = st_now_ms() + ST_WAIT_MS;
	for (;;) {
		unsigned begun = st_daemon_log_count(d, "reloading ");

		st_sleep_ms(300);
		if ((begun == st_daemon_log_count(d, "reloaded ") &&
		     begun == st_daemon_log_count(d, "reloading ")) ||
		    st_now_ms() > end)
			break;
	}
	atomic_store(&t.stop, 1);
	atomic_store(&b.stop, 1);
	for (i = 0; i < NTRAFFIC; i++)
		pthread_join(tt[i], NULL);
	pthread_join(bt, NULL); /* byte-exact, or the program failed */

	reloaded = st_daemon_log_count(d, "reloaded ");
	printf("# %u reloads done, %u short sessions, %u bulk exchanges of "
	       "16 MiB\n",
	       reloaded, atomic_load(&t.ok), atomic_load(&b.done));
	if (atomic_load(&t.failed) > 0) {
		st_sleep_ms(500); /* for the session's log line */
		st_print_logs();
		fail_msg("%u sessions failed; the first: %s",
			 atomic_load(&t.failed), t.failure);
	}
	assert_true(reloaded >= 1);
	if (st_daemon_log_count(d, "reloading ") != reloaded) {
		st_print_logs();
		fail_msg("%u reloads begun, %u ended",
			 st_daemon_log_count(d, "reloading "), reloaded);
	}
	log_exactly(d, "reload failed", 0);
	assert_true(atomic_load(&t.ok) > 10);
	assert_true(atomic_load(&b.done) >= 1);
	log_exactly(d, "reason=client-error", 0);
	log_exactly(d, "reason=upstream-error", 0);
	log_exactly(d, "reason=connect-failed", 0);

	/* Alive, answering, and on the last config. */
	st_close(st_echo_open(lport, "after the storm"));
	assert_int_equal(st_metric_at(aport, "sluice_reloads_total"),
			 (long long)reloaded);
	if (NHUP % 2)
		st_close(st_echo_open(sport, "the side route is there"));
	st_daemon_stop(d);
	st_server_stop(srv);
	free(conf[0]);
	free(conf[1]);
}

/* ---- SIGTERM during 1,000 transfers -------------------------------------------------------- */

#define NXFER 1000
#define XFER_SIZE (64 * 1024)
#define XFER_STEP (4 * 1024)
#define XFER_PACE_MS 100 /* one step per connection this often */

struct xfer {
	st_sock s;
	char *data; /* what it sends, and must get back */
	size_t sent, got;
	int shut, eof;
};

/*
 * Drive every transfer with poll(): each may have sent `allowed` bytes
 * (raised by XFER_STEP every XFER_PACE_MS once `pace` is set, up to
 * XFER_SIZE); run until every one has received `until` bytes (and, at
 * XFER_SIZE, has seen the EOF after its half-close).  Fails on a
 * difference, an early end or no progress for ST_STALL_MS.
 */
static void xfer_run(struct xfer *x, size_t until, int pace)
{
	struct pollfd *p = calloc(NXFER, sizeof *p);
	size_t allowed = XFER_STEP;
	uint64_t next = st_now_ms() + XFER_PACE_MS, last = st_now_ms();
	char buf[16384];
	int i;

	assert_non_null(p);
	for (;;) {
		int done = 1, r;

		if (pace && st_now_ms() >= next && allowed < XFER_SIZE) {
			allowed += XFER_STEP;
			next += XFER_PACE_MS;
		}
		for (i = 0; i < NXFER; i++) {
			struct xfer *c = &x[i];
			size_t cap = pace ? allowed : XFER_STEP;

			p[i].fd = c->s;
			p[i].events = 0;
			p[i].revents = 0;
			if (c->sent < cap)
				p[i].events |= POLLOUT;
			if (c->got < until || (until == XFER_SIZE && !c->eof))
				p[i].events |= POLLIN;
			if (c->got < until ||
			    (until == XFER_SIZE && !c->eof))
				done = 0;
		}
		if (done)
			break;
		if (st_now_ms() - last > ST_STALL_MS)
			st_fail("transfers: no progress for %u ms",
				ST_STALL_MS);
		r = poll(p, NXFER, 20);
		if (r < 0 && errno != EINTR)
			st_fail("poll: %s", strerror(errno));
		for (i = 0; i < NXFER && r > 0; i++) {
			struct xfer *c = &x[i];
			size_t cap = pace ? allowed : XFER_STEP;
			ssize_t n;

			if (p[i].revents & POLLOUT && c->sent < cap) {
				n = send(c->s, c->data + c->sent,
					 cap - c->sent, MSG_DONTWAIT);
				if (n < 0 && errno != EAGAIN && errno != EINTR)
					st_fail("transfer %d: send: %s", i,
						strerror(errno));
				if (n > 0) {
					c->sent += (size_t)n;
					last = st_now_ms();
				}
			}
			if (c->sent == XFER_SIZE && !c->shut) {
				st_shutdown_wr(c->s);
				c->shut = 1;
			}
			if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			n = recv(c->s, buf, sizeof buf, MSG_DONTWAIT);
			if (n < 0 && (errno == EAGAIN || errno == EINTR))
				continue;
			if (n < 0)
				st_fail("transfer %d: recv: %s after %zu bytes",
					i, strerror(errno), c->got);
			if (n == 0) {
				if (c->got != XFER_SIZE)
					st_fail("transfer %d: EOF after %zu of "
						"%d bytes", i, c->got,
						XFER_SIZE);
				c->eof = 1;
				continue;
			}
			if (c->got + (size_t)n > c->sent ||
			    memcmp(buf, c->data + c->got, (size_t)n) != 0)
				st_fail("transfer %d: the echo differs at "
					"byte %zu", i, c->got);
			c->got += (size_t)n;
			last = st_now_ms();
		}
	}
	free(p);
}

static void test_sigterm_transfers(void **state)
{
	uint16_t uport, lport = st_free_port();
	st_server *srv;
	st_daemon *d;
	struct xfer *x;
	struct rlimit rl;
	char *yaml, *closed;
	st_rng r;
	uint64_t t0;
	int i, rc;
	st_cfg *cfg;

	(void)state;
	/* Here: a client and the echo server's end per transfer; the
	 * daemon, which inherits the limit, two per session. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
	    rl.rlim_cur < 2 * NXFER + 256) {
		printf("# skipped: ulimit -n is %llu, %d transfers need %d\n",
		       (unsigned long long)rl.rlim_cur, NXFER, 2 * NXFER + 256);
		skip();
	}
	srv = st_server_start(st_listen_tcp(&uport, 1024), ST_ECHO, 0);
	cfg = st_cfg_new();
	st_cfg_set(cfg, "threads", "2");
	st_cfg_set(cfg, "drain_timeout", "2m");
	st_cfg_route(cfg, "xfer", lport, uport);
	st_cfg_listen_set(cfg, "backlog", "1024");
	yaml = st_cfg_done(cfg);
	closed = st_fmt("listener tcp://127.0.0.1:%u closed", lport);
	d = st_daemon_start(yaml);

	x = calloc(NXFER, sizeof *x);
	assert_non_null(x);
	for (i = 0; i < NXFER; i++) {
		x[i].data = malloc(XFER_SIZE);
		assert_non_null(x[i].data);
		st_rng_init(&r, 1000 + (uint64_t)i);
		st_rng_fill(&r, x[i].data, XFER_SIZE);
		x[i].s = st_connect_tcp_retry(lport, 10000);
	}
	/* The first step of each, there and back: every session relays. */
	xfer_run(x, XFER_STEP, 0);
	assert_int_equal(st_server_open(srv), NXFER);

	t0 = st_now_ms();
	st_daemon_signal(d, SIGTERM);
	st_wait_log(d, "stopping: no new connections", 1);
	st_wait_log(d, closed, 1);
	assert_true(st_connect_tcp(lport) == ST_BAD_SOCK);
	/* Every transfer goes on to its end. */
	xfer_run(x, XFER_SIZE, 1);
	printf("# %d transfers of %d KiB finished %llu ms after SIGTERM\n",
	       NXFER, XFER_SIZE / 1024,
	       (unsigned long long)(st_now_ms() - t0));
	for (i = 0; i < NXFER; i++)
		st_close(x[i].s);

	rc = st_daemon_wait(d, 60000);
	if (rc != 0)
		st_print_logs();
	assert_int_equal(rc, 0);
	log_exactly(d, "reason=done", NXFER);
	log_exactly(d, "reason=drain-timeout", 0);
	st_daemon_free(d);
	st_server_stop(srv);
	for (i = 0; i < NXFER; i++)
		free(x[i].data);
	free(x);
	free(yaml);
	free(closed);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		ST_TEST(test_upstream_reset),
		ST_TEST(test_upstream_never_reads),
		ST_TEST(test_client_never_reads),
		ST_TEST(test_slowloris),
		ST_TEST(test_descriptor_exhaustion),
		ST_TEST(test_sighup_storm),
		ST_TEST(test_sigterm_transfers),
	};
	int rc;

	st_init();
	/* SL_TEST_FILTER=test_slow* runs the matching tests only. */
	if (getenv("SL_TEST_FILTER") != NULL)
		cmocka_set_test_filter(getenv("SL_TEST_FILTER"));
	/* One list for both runs: the tests that need one of them skip in
	 * the other (ST_NATIVE_ONLY, ST_WINE_ONLY). */
	rc = cmocka_run_group_tests_name(st_wine() ? "faults-wine" : "faults", tests,
					 NULL, NULL);
	st_cleanup();
	return rc;
}
