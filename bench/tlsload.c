/*
 * tlsload -- the TLS client (and the plain sink and source) of bench/run's
 * TLS table.  Not part of sluice: bench/run compiles it into its temporary
 * directory with the system's cc and OpenSSL.  Every mode prints one line
 * of figures on stdout; errors go to stderr.
 *
 *   tlsload hs PORT SECS CONNS THREADS
 *	Full TLS 1.3 handshakes: CONNS connections at a time, spread over
 *	THREADS threads, each a new TCP connection and a new session (no
 *	session cache, no ticket offered), then one HTTP/1.0 request read to
 *	the end (a response of at least one byte, then the end, with or
 *	without close_notify).  Prints "DONE ERRORS" (completed connections,
 *	failures).
 *   tlsload send PORT SECS
 *	One TLS connection; writes for SECS, then close_notify and FIN, and
 *	waits for the far end to close.  Prints "BYTES SECONDS".
 *   tlsload recv PORT
 *	One TLS connection; reads until the far end closes.  Prints "BYTES
 *	SECONDS" from the first byte to the end.
 *   tlsload sink PORT		(plain TCP) accepts connections one after the
 *	other and reads each to its end; runs until killed.
 *   tlsload source PORT SECS	(plain TCP) accepts connections one after the
 *	other and writes to each for SECS, then closes it; runs until killed.
 *   tlsload floor CERT KEY N
 *	No network: N server-side SSL objects, each after a TLS 1.3
 *	handshake (over its own BIOs, which are then replaced by empty ones)
 *	with SSL_MODE_RELEASE_BUFFERS, as a proxy holds an idle session.
 *	Prints the heap they hold, in KB per SSL (glibc's mallinfo2): what
 *	OpenSSL itself costs per idle TLS session, whatever holds it.
 *
 * Only 127.0.0.1.  The certificate is not verified: the figures are about
 * the server's cost, and every row is measured with the same client.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BUF (256 * 1024)

static const char request[] = "GET / HTTP/1.0\r\nHost: bench\r\n\r\n";

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
	fprintf(stderr, "tlsload: %s: %s\n", what, strerror(errno));
	exit(1);
}

static struct sockaddr_in loopback(int port)
{
	struct sockaddr_in a;

	memset(&a, 0, sizeof a);
	a.sin_family = AF_INET;
	a.sin_port = htons((unsigned short)port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	return a;
}

static SSL_CTX *client_ctx(void)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	if (ctx == NULL) {
		ERR_print_errors_fp(stderr);
		exit(1);
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	/* A close without close_notify ends a response as well. */
	SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET | SSL_OP_IGNORE_UNEXPECTED_EOF);
	return ctx;
}

/* ---- hs: many short connections ------------------------------------------ */

enum { C_CONNECT, C_HANDSHAKE, C_WRITE, C_READ };

struct conn {
	int fd, state;
	size_t got; /* response bytes */
	SSL *ssl;
};

struct worker {
	pthread_t t;
	int port, conns;
	double end;
	SSL_CTX *ctx;
	unsigned long done, errors;
};

static int arm(int ep, struct conn *c, int op, unsigned events)
{
	struct epoll_event ev;

	ev.events = events;
	ev.data.ptr = c;
	return epoll_ctl(ep, op, c->fd, &ev);
}

static void conn_open(int ep, struct worker *w, struct conn *c)
{
	struct sockaddr_in a = loopback(w->port);

	for (;;) {
		c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
		if (c->fd < 0)
			die("socket");
		c->ssl = NULL;
		c->got = 0;
		c->state = C_CONNECT;
		if (connect(c->fd, (struct sockaddr *)&a, sizeof a) == 0 ||
		    errno == EINPROGRESS) {
			if (arm(ep, c, EPOLL_CTL_ADD, EPOLLOUT) < 0)
				die("epoll_ctl");
			return;
		}
		w->errors++;
		close(c->fd);
		if (now() >= w->end) {
			c->fd = -1;
			return;
		}
	}
}

static void conn_close(struct conn *c)
{
	if (c->ssl != NULL)
		SSL_free(c->ssl);
	close(c->fd);
	c->ssl = NULL;
	c->fd = -1;
}

/* Advances c; returns 1 when it ended (done or failed), else 0. */
static int conn_step(int ep, struct worker *w, struct conn *c)
{
	char buf[4096];
	int r = 0, e, err;
	socklen_t len = sizeof err;
	unsigned want;

	switch (c->state) {
	case C_CONNECT:
		if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 ||
		    err != 0)
			goto fail;
		if ((c->ssl = SSL_new(w->ctx)) == NULL ||
		    !SSL_set_fd(c->ssl, c->fd))
			goto fail;
		SSL_set_connect_state(c->ssl);
		c->state = C_HANDSHAKE;
		/* fall through */
	case C_HANDSHAKE:
		r = SSL_do_handshake(c->ssl);
		if (r == 1) {
			c->state = C_WRITE;
			goto write;
		}
		goto retry;
	case C_WRITE:
	write:
		r = SSL_write(c->ssl, request, sizeof request - 1);
		if (r > 0) {
			c->state = C_READ;
			goto read;
		}
		goto retry;
	case C_READ:
	read:
		while ((r = SSL_read(c->ssl, buf, sizeof buf)) > 0)
			c->got += (size_t)r;
		e = SSL_get_error(c->ssl, r);
		if (e == SSL_ERROR_ZERO_RETURN && c->got > 0) {
			w->done++;
			conn_close(c);
			return 1;
		}
		goto retry;
	}
retry:
	e = SSL_get_error(c->ssl, r);
	if (e == SSL_ERROR_WANT_READ)
		want = EPOLLIN;
	else if (e == SSL_ERROR_WANT_WRITE)
		want = EPOLLOUT;
	else
		goto fail;
	if (arm(ep, c, EPOLL_CTL_MOD, want) < 0)
		die("epoll_ctl");
	return 0;
fail:
	ERR_clear_error();
	w->errors++;
	conn_close(c);
	return 1;
}

static void *hs_worker(void *arg)
{
	struct worker *w = arg;
	struct epoll_event evs[64];
	struct conn *cs = calloc((size_t)w->conns, sizeof *cs);
	int ep = epoll_create1(0), i, n, live = w->conns;

	if (cs == NULL || ep < 0)
		die("hs setup");
	for (i = 0; i < w->conns; i++)
		conn_open(ep, w, &cs[i]);
	while (live > 0) {
		n = epoll_wait(ep, evs, 64, 100);
		if (n < 0 && errno != EINTR)
			die("epoll_wait");
		for (i = 0; i < n; i++) {
			struct conn *c = evs[i].data.ptr;

			if (!conn_step(ep, w, c))
				continue;
			if (now() < w->end)
				conn_open(ep, w, c);
			if (c->fd < 0)
				live--;
		}
		if (now() >= w->end + 10) /* stragglers: give up on them */
			break;
	}
	free(cs);
	close(ep);
	return NULL;
}

static int run_hs(int port, int secs, int conns, int threads)
{
	struct worker *ws = calloc((size_t)threads, sizeof *ws);
	SSL_CTX *ctx = client_ctx();
	unsigned long done = 0, errors = 0;
	double end = now() + secs;
	int i;

	if (ws == NULL)
		die("calloc");
	for (i = 0; i < threads; i++) {
		ws[i].port = port;
		ws[i].conns = conns / threads + (i < conns % threads);
		ws[i].end = end;
		ws[i].ctx = ctx;
		if (pthread_create(&ws[i].t, NULL, hs_worker, &ws[i]) != 0)
			die("pthread_create");
	}
	for (i = 0; i < threads; i++) {
		pthread_join(ws[i].t, NULL);
		done += ws[i].done;
		errors += ws[i].errors;
	}
	printf("%lu %lu\n", done, errors);
	return 0;
}

/* ---- send and recv: one stream ------------------------------------------- */

static SSL *stream_open(int port, SSL_CTX *ctx)
{
	struct sockaddr_in a = loopback(port);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	SSL *ssl;

	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) < 0)
		die("connect");
	if ((ssl = SSL_new(ctx)) == NULL || !SSL_set_fd(ssl, fd) ||
	    SSL_connect(ssl) != 1) {
		ERR_print_errors_fp(stderr);
		exit(1);
	}
	fprintf(stderr, "negotiated: %s %s %s\n", SSL_get_version(ssl),
		SSL_get_cipher_name(ssl),
		OBJ_nid2sn(SSL_get_negotiated_group(ssl)));
	return ssl;
}

static int run_send(int port, int secs)
{
	SSL_CTX *ctx = client_ctx();
	SSL *ssl = stream_open(port, ctx);
	char *buf = calloc(1, BUF);
	unsigned long long bytes = 0;
	double t0 = now(), end = t0 + secs;
	int r;

	if (buf == NULL)
		die("calloc");
	while (now() < end) {
		if ((r = SSL_write(ssl, buf, BUF)) <= 0) {
			ERR_print_errors_fp(stderr);
			fprintf(stderr, "tlsload: write failed\n");
			return 1;
		}
		bytes += (unsigned long long)r;
	}
	SSL_shutdown(ssl);
	shutdown(SSL_get_fd(ssl), SHUT_WR);
	/* The far end closes once the sink has read everything. */
	while (SSL_read(ssl, buf, BUF) > 0)
		;
	printf("%llu %.3f\n", bytes, now() - t0);
	return 0;
}

static int run_recv(int port)
{
	SSL_CTX *ctx = client_ctx();
	SSL *ssl = stream_open(port, ctx);
	char *buf = malloc(BUF);
	unsigned long long bytes = 0;
	double t0 = 0;
	int r;

	if (buf == NULL)
		die("malloc");
	while ((r = SSL_read(ssl, buf, BUF)) > 0) {
		if (bytes == 0)
			t0 = now();
		bytes += (unsigned long long)r;
	}
	printf("%llu %.3f\n", bytes, bytes ? now() - t0 : 0.0);
	return 0;
}

/* ---- plain backends ------------------------------------------------------ */

static int listen_on(int port)
{
	struct sockaddr_in a = loopback(port);
	int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;

	if (fd < 0)
		die("socket");
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, 64) < 0)
		die("bind/listen");
	return fd;
}

static void __attribute__((noreturn)) run_backend(int port, int secs, int source)
{
	int ls = listen_on(port), fd;
	char *buf = calloc(1, BUF);
	double end;

	if (buf == NULL)
		die("calloc");
	signal(SIGPIPE, SIG_IGN);
	for (;;) {
		if ((fd = accept(ls, NULL, NULL)) < 0) {
			if (errno == EINTR)
				continue;
			die("accept");
		}
		if (source) {
			end = now() + secs;
			while (now() < end && write(fd, buf, BUF) > 0)
				;
		} else {
			while (read(fd, buf, BUF) > 0)
				;
		}
		close(fd);
	}
}

/* ---- floor: OpenSSL's own memory per idle server session ---------------- */

static size_t heap_used(void)
{
	struct mallinfo2 m = mallinfo2();

	return m.uordblks + m.hblkhd;
}

static void pump(BIO *from, BIO *to)
{
	char b[16384];
	int n;

	while ((n = BIO_read(from, b, sizeof b)) > 0)
		BIO_write(to, b, n);
}

static BIO *mem_bio(void)
{
	BIO *b = BIO_new(BIO_s_mem());

	BIO_set_mem_eof_return(b, -1);
	return b;
}

static int run_floor(const char *cert, const char *key, int n)
{
	SSL_CTX *sc = SSL_CTX_new(TLS_server_method()), *cc = client_ctx();
	SSL **held = calloc((size_t)n, sizeof *held);
	size_t before;
	char b[256];

	if (held == NULL || sc == NULL ||
	    SSL_CTX_use_certificate_chain_file(sc, cert) != 1 ||
	    SSL_CTX_use_PrivateKey_file(sc, key, SSL_FILETYPE_PEM) != 1) {
		ERR_print_errors_fp(stderr);
		return 1;
	}
	SSL_CTX_set_mode(sc, SSL_MODE_RELEASE_BUFFERS);
	/* One first, so that what OpenSSL sets up once is not counted. */
	for (int round = 0; round < 2; round++) {
		int count = round ? n : 1;

		before = heap_used();
		for (int i = 0; i < count; i++) {
			SSL *s = SSL_new(sc), *c = SSL_new(cc);
			BIO *sr = mem_bio(), *sw = mem_bio(), *cr = mem_bio(),
			    *cw = mem_bio();

			SSL_set_bio(s, sr, sw);
			SSL_set_bio(c, cr, cw);
			SSL_set_accept_state(s);
			SSL_set_connect_state(c);
			for (int k = 0; k < 8 && !SSL_is_init_finished(s); k++) {
				SSL_do_handshake(c);
				pump(cw, sr);
				SSL_do_handshake(s);
				pump(sw, cr);
			}
			if (!SSL_is_init_finished(s)) {
				ERR_print_errors_fp(stderr);
				return 1;
			}
			(void)SSL_read(c, b, sizeof b); /* the tickets */
			SSL_set_bio(s, mem_bio(), mem_bio());
			SSL_free(c);
			if (round)
				held[i] = s;
			else
				SSL_free(s);
		}
	}
	printf("%.1f\n", (double)(heap_used() - before) / n / 1024);
	return 0;
}

int main(int argc, char **argv)
{
	const char *m = argc > 2 ? argv[1] : "";

	signal(SIGPIPE, SIG_IGN);
	if (strcmp(m, "hs") == 0 && argc == 6)
		return run_hs(atoi(argv[2]), atoi(argv[3]), atoi(argv[4]),
			      atoi(argv[5]));
	if (strcmp(m, "send") == 0 && argc == 4)
		return run_send(atoi(argv[2]), atoi(argv[3]));
	if (strcmp(m, "recv") == 0 && argc == 3)
		return run_recv(atoi(argv[2]));
	if (strcmp(m, "sink") == 0 && argc == 3)
		run_backend(atoi(argv[2]), 0, 0);
	if (strcmp(m, "source") == 0 && argc == 4)
		run_backend(atoi(argv[2]), atoi(argv[3]), 1);
	if (strcmp(m, "floor") == 0 && argc == 5)
		return run_floor(argv[2], argv[3], atoi(argv[4]));
	fprintf(stderr, "usage: tlsload hs PORT SECS CONNS THREADS | send PORT "
			"SECS | recv PORT | sink PORT | source PORT SECS | floor CERT KEY "
			"N\n");
	return 2;
}
