/*
 * sluice relay [--wait[=SECONDS]] ENDPOINT: standard input to the
 * endpoint and the endpoint to standard output, until both directions
 * are done (ssh's ProxyCommand, WSL's interop into a Windows pipe).
 *
 * The shape is npiperelay's and socat's, not the daemon's: two threads
 * with blocking I/O, no event loop.  This thread connects, then copies
 * the endpoint to standard output; a second one copies standard input to
 * the endpoint.  What differs per OS (sockets, pipes, standard handles,
 * threads) is in proc/relay_posix.c and proc/relay_win.c.
 *
 * The ends:
 * - Standard input's end becomes the endpoint's: a socket's write side is
 *   shut down; a pipe gets sluice's half-close, the zero-byte message
 *   after a flush (src/net/stream_win.c), which sluice's own pipe
 *   listeners and go-winio's take as the end.  Then the endpoint's answer
 *   is still copied out, for as long as it takes.
 * - The endpoint's end closes standard output.  If standard input is
 *   still open then, this does not wait for it forever: its direction may
 *   go on while it moves bytes, and the relay ends once no byte has come
 *   in or gone out for SL_RELAY_GRACE_MS (socat's -t is 0.5 s after
 *   either end, whatever moves).  A write toward an endpoint that has
 *   closed after its end is the end of that direction, not an error.
 * - Any other failure: one sentence on stderr and exit status 1.
 */
#include "relay.h"

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loop/loop.h"
#include "net/endpoint.h"
#include "net/net.h"
#include "net/resolver.h"
#include "proc/proc.h"

#define SL_RELAY_BUF 65536
/* Without --wait a busy pipe is still waited for, as long as the daemon's
 * own pipe connects wait by default. */
#define SL_RELAY_BUSY_MS 10000
#define SL_RELAY_WAIT_DEFAULT_S 30
#define SL_RELAY_WAIT_MAX_S 86400
/* How often --wait tries again (npiperelay -p: 200 ms). */
#define SL_RELAY_RETRY_MS 50
#define SL_RELAY_GRACE_MS 500
#define SL_RELAY_ADDRS 16

struct relay {
	sl_relay_conn *conn;
	char name[SL_EP_PATH_MAX + 16]; /* the endpoint, for messages */
	atomic_ullong moved;            /* standard input's progress */
	atomic_int ep_ended;            /* the endpoint's end was read */
};

/* One exit for the process, whichever thread gets there first. */
static atomic_flag exiting = ATOMIC_FLAG_INIT;

static void finish(int rc)
{
	if (atomic_flag_test_and_set(&exiting))
		for (;;)
			sl_relay_sleep_ms(1000); /* the other thread exits */
	fflush(stderr);
	exit(rc);
}

static void fail(const char *fmt, ...)
#if defined(__GNUC__)
	__attribute__((format(SL_FMT_PRINTF, 1, 2), noreturn))
#endif
	;

static void fail(const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (!atomic_flag_test_and_set(&exiting)) {
		fprintf(stderr, "sluice relay: %s\n", msg);
		fflush(stderr);
		exit(1);
	}
	for (;;)
		sl_relay_sleep_ms(1000);
}

static void usage(FILE *f)
{
	fprintf(f, "usage: sluice relay [--wait[=SECONDS]] ENDPOINT\n"
		   "  ENDPOINT   tcp://HOST:PORT (or tcp:HOST:PORT), "
		   "unix:PATH, pipe:\\\\.\\pipe\\NAME\n"
		   "  --wait     retry the connect until the socket or pipe "
		   "exists,\n"
		   "             for SECONDS (default %d)\n",
		   SL_RELAY_WAIT_DEFAULT_S);
}

/* A peer that has gone away: after its end, not a failure of ours. */
static int gone(int err)
{
	return err == -EPIPE || err == -ECONNRESET || err == -ENOTCONN ||
	       err == -ECONNABORTED;
}

/* The second thread: standard input to the endpoint, then its end. */
static void in_to_endpoint(void *arg)
{
	static char buf[SL_RELAY_BUF];
	struct relay *rl = arg;
	long n;
	int r;

	while ((n = sl_relay_stdin_read(buf, sizeof buf)) > 0) {
		atomic_fetch_add(&rl->moved, 1);
		r = sl_relay_send(rl->conn, buf, (size_t)n);
		if (r < 0 && gone(r) && atomic_load(&rl->ep_ended))
			return;
		if (r < 0)
			fail("write to %s: %s", rl->name, sl_strerror(r));
		atomic_fetch_add(&rl->moved, 1);
	}
	if (n < 0)
		fail("read standard input: %s", sl_strerror((int)n));
	r = sl_relay_shutdown(rl->conn);
	if (r < 0 && !(gone(r) && atomic_load(&rl->ep_ended)))
		fail("end of stream toward %s: %s", rl->name, sl_strerror(r));
}

/* This thread: the endpoint to standard output, then the ends. */
static void endpoint_to_out(struct relay *rl, sl_relay_thread *in)
{
	static char buf[SL_RELAY_BUF];
	unsigned long long seen;
	long n;
	int r;

	while ((n = sl_relay_recv(rl->conn, buf, sizeof buf)) > 0) {
		r = sl_relay_stdout_write(buf, (size_t)n);
		if (r < 0)
			fail("write standard output: %s", sl_strerror(r));
	}
	if (n < 0)
		fail("read from %s: %s", rl->name, sl_strerror((int)n));
	atomic_store(&rl->ep_ended, 1);
	sl_relay_stdout_close();
	/* Standard input's direction, while it moves (see the top). */
	seen = atomic_load(&rl->moved);
	while (sl_relay_thread_wait(in, SL_RELAY_GRACE_MS) == -ETIMEDOUT) {
		unsigned long long now = atomic_load(&rl->moved);

		if (now == seen)
			break;
		seen = now;
	}
}

/*
 * An assuan: endpoint (gpg-agent's socket emulation): the port its file
 * names on the loopback, and the nonce sent first, as the daemon's
 * connects do.  0 or -errno / SL_EASSUAN.
 */
static int connect_assuan(const sl_endpoint *ep, sl_relay_conn **out)
{
	struct sl_relay_target t = {.kind = SL_RELAY_TCP};
	unsigned char nonce[SL_ASSUAN_NONCE];
	struct sl_addr addr;
	uint16_t port;
	size_t n;
	int r;

	if ((r = sl_assuan_read(ep->path, &port, nonce)) < 0 ||
	    (r = sl_resolve_sync("127.0.0.1", port, 0, &addr, 1, &n)) < 0)
		return r;
	t.addr = &addr.ss;
	t.addrlen = (size_t)addr.len;
	if ((r = sl_relay_connect(&t, 0, out)) < 0)
		return r;
	/* On a failure the relay exits, which closes the connection. */
	return sl_relay_send(*out, nonce, sizeof nonce);
}

/* One attempt at every address of the endpoint.  0 or -errno. */
static int connect_once(const sl_endpoint *ep, unsigned long busy_ms,
			sl_relay_conn **out)
{
	struct sl_relay_target t = {.path = ep->path,
				    .abstract = ep->abstract};
	struct sl_addr addrs[SL_RELAY_ADDRS];
	size_t n, i;
	int r;

	switch (ep->kind) {
	case SL_EP_TCP:
		t.kind = SL_RELAY_TCP;
		break;
	case SL_EP_ASSUAN:
		return connect_assuan(ep, out);
	case SL_EP_SYSTEMD:
		return SL_EUNSUPP; /* a listener's, passed by systemd */
	case SL_EP_UNIX:
		t.kind = SL_RELAY_UNIX;
		return sl_relay_connect(&t, busy_ms, out);
	case SL_EP_PIPE:
		t.kind = SL_RELAY_PIPE;
		return sl_relay_connect(&t, busy_ms, out);
	}
	if ((r = sl_resolve_sync(ep->host, ep->port, 0, addrs, SL_RELAY_ADDRS,
				 &n)) < 0)
		return r;
	for (i = 0; i < n; i++) {
		t.addr = &addrs[i].ss;
		t.addrlen = (size_t)addrs[i].len;
		if ((r = sl_relay_connect(&t, busy_ms, out)) == 0)
			return 0;
	}
	return r;
}

/*
 * Connect, and with --wait (wait_s > 0) try again while there is nothing
 * to connect to yet (no such file or pipe, or nothing listening): a busy
 * pipe is waited for inside one attempt, within the same time.
 */
static void connect_endpoint(struct relay *rl, const sl_endpoint *ep,
			     unsigned wait_s)
{
	uint64_t start = sl_clock_ms(), end = start + wait_s * 1000ull;
	int r;

	for (;;) {
		uint64_t now = sl_clock_ms();
		unsigned long busy = wait_s == 0 ? SL_RELAY_BUSY_MS
			: now < end ? (unsigned long)(end - now) : 1;

		r = connect_once(ep, busy, &rl->conn);
		if (r == 0)
			return;
		if (r == -EAFNOSUPPORT)
			r = SL_EUNSUPP; /* pipes off Windows, say */
		now = sl_clock_ms();
		if (wait_s == 0 || (r != -ENOENT && r != -ECONNREFUSED))
			fail("connect %s: %s", rl->name, sl_strerror(r));
		if (now >= end)
			fail("connect %s: %s (waited %u s)", rl->name,
			     sl_strerror(r), wait_s);
		sl_relay_sleep_ms(end - now < SL_RELAY_RETRY_MS
					  ? (unsigned)(end - now)
					  : SL_RELAY_RETRY_MS);
	}
}

/* --wait's value: whole seconds, 1 to a day.  0 when it is not one. */
static unsigned wait_seconds(const char *s)
{
	unsigned long v = 0;

	if (s == NULL)
		return SL_RELAY_WAIT_DEFAULT_S;
	if (*s == '\0')
		return 0;
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '9' || v > SL_RELAY_WAIT_MAX_S)
			return 0;
		v = v * 10 + (unsigned long)(*s - '0');
	}
	return v <= SL_RELAY_WAIT_MAX_S ? (unsigned)v : 0;
}

/*
 * The endpoint as the config writes it, and socat's tcp:HOST:PORT too
 * (the config wants the "//", which it says when missing).
 */
static int parse_endpoint(const char *text, sl_endpoint *ep, char *err,
			  size_t errlen)
{
	char buf[SL_EP_HOST_MAX + 16];
	int tcp = (text[0] | 0x20) == 't' && (text[1] | 0x20) == 'c' &&
		  (text[2] | 0x20) == 'p' && text[3] == ':';

	if (tcp && strncmp(text + 4, "//", 2) != 0 &&
	    strlen(text) + 3 <= sizeof buf) {
		snprintf(buf, sizeof buf, "tcp://%s", text + 4);
		text = buf;
	}
	return sl_endpoint_parse(text, ep, err, errlen);
}

int sl_relay_main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"wait", optional_argument, NULL, 'w'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	static struct relay rl;
	sl_relay_thread *in;
	sl_endpoint ep;
	unsigned wait_s = 0;
	char err[256];
	int c, r;

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 'w':
			wait_s = wait_seconds(optarg);
			if (wait_s == 0) {
				fprintf(stderr, "sluice relay: --wait=%s: "
						"expected whole seconds, 1-%d\n",
					optarg, SL_RELAY_WAIT_MAX_S);
				return 2;
			}
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc - 1) {
		usage(stderr);
		return 2;
	}
	if (parse_endpoint(argv[optind], &ep, err, sizeof err) < 0) {
		fprintf(stderr, "sluice relay: %s: %s\n", argv[optind], err);
		return 1;
	}
	sl_endpoint_format(&ep, rl.name, sizeof rl.name);
	if ((r = sl_relay_init()) < 0)
		fail("setup failed: %s", sl_strerror(r));
	connect_endpoint(&rl, &ep, wait_s);
	if ((r = sl_relay_thread_start(&in, in_to_endpoint, &rl)) < 0)
		fail("cannot start a thread: %s", sl_strerror(r));
	endpoint_to_out(&rl, in);
	finish(0);
	return 0;
}
