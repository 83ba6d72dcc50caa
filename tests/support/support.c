/*
 * POSIX implementation of the end-to-end test support (see support.h).
 */
#include "support.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

void st_fail(const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	fputs("support: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

char *st_vfmt(const char *fmt, va_list ap)
{
	va_list aq;
	char *s;
	int n;

	va_copy(aq, ap);
	n = vsnprintf(NULL, 0, fmt, aq);
	va_end(aq);
	s = malloc((size_t)n + 1);
	if (s == NULL)
		st_fail("out of memory");
	vsnprintf(s, (size_t)n + 1, fmt, ap);
	return s;
}

char *st_fmt(const char *fmt, ...)
{
	va_list ap;
	char *s;

	va_start(ap, fmt);
	s = st_vfmt(fmt, ap);
	va_end(ap);
	return s;
}

static char tmpdir[256];

void st_init(void)
{
	struct rlimit rl;

	signal(SIGPIPE, SIG_IGN);
	/* 1,000 concurrent sessions need about 4,000 descriptors here and
	 * in the daemon, which inherits this limit. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 8192) {
		rl.rlim_cur = rl.rlim_max < 8192 ? rl.rlim_max : 8192;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

const char *st_tmpdir(void)
{
	if (!tmpdir[0]) {
		const char *base = getenv("TMPDIR");

		/* Unix socket paths are short (108 bytes): keep this one so. */
		if (!base || !*base || strlen(base) > 60)
			base = "/tmp";
		snprintf(tmpdir, sizeof(tmpdir), "%s/sluice-e2e-XXXXXX", base);
		if (!mkdtemp(tmpdir))
			st_fail("mkdtemp %s: %s", tmpdir, strerror(errno));
	}
	return tmpdir;
}

void st_cleanup(void)
{
	DIR *d;
	struct dirent *e;

	if (!tmpdir[0])
		return;
	d = opendir(tmpdir);
	if (d) {
		while ((e = readdir(d)) != NULL) {
			char path[512];

			if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
				continue;
			snprintf(path, sizeof(path), "%s/%s", tmpdir, e->d_name);
			unlink(path);
		}
		closedir(d);
	}
	rmdir(tmpdir);
	tmpdir[0] = '\0';
}

uint64_t st_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void st_sleep_ms(unsigned ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

/* ---- sockets ------------------------------------------------------------ */

static void loopback(struct sockaddr_in *sin, uint16_t port)
{
	memset(sin, 0, sizeof(*sin));
	sin->sin_family = AF_INET;
	sin->sin_port = htons(port);
	sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
}

static st_sock listen_loopback(uint16_t want, uint16_t *port, int backlog)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);
	int one = 1;
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	if (fd < 0)
		st_fail("socket: %s", strerror(errno));
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	loopback(&sin, want);
	if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 ||
	    listen(fd, backlog) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sin, &len) < 0)
		st_fail("listen on 127.0.0.1:%u: %s", want, strerror(errno));
	*port = ntohs(sin.sin_port);
	return fd;
}

st_sock st_listen_tcp(uint16_t *port, int backlog)
{
	return listen_loopback(0, port, backlog);
}

st_sock st_listen_tcp_at(uint16_t port, int backlog)
{
	uint16_t got;

	return listen_loopback(port, &got, backlog);
}

static socklen_t unix_addr(struct sockaddr_un *sun, const char *path)
{
	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sun->sun_path))
		st_fail("unix path too long: %s", path);
	strcpy(sun->sun_path, path);
	return (socklen_t)sizeof(*sun);
}

st_sock st_listen_unix(const char *path, int backlog)
{
	struct sockaddr_un sun;
	socklen_t len = unix_addr(&sun, path);
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	if (fd < 0)
		st_fail("socket: %s", strerror(errno));
	unlink(path);
	if (bind(fd, (struct sockaddr *)&sun, len) < 0 || listen(fd, backlog) < 0)
		st_fail("listen on %s: %s", path, strerror(errno));
	return fd;
}

/*
 * A port handed out here must stay free until the daemon binds it, and a
 * busy machine running the test programs side by side takes ports all the
 * time: every outgoing connection gets a local one from the ephemeral
 * range, and bind(0) in another test program gets one too.
 *
 * On Linux the port is reserved rather than just seen free: a socket bound
 * to it with SO_REUSEADDR, never listening, is kept open until this program
 * exits.  While it exists the kernel gives the port to no connect() (the
 * autobind skips every port that has a bind bucket) and to no bind(0); a
 * listener that sets SO_REUSEADDR, as sluice's and ours do, can still bind
 * and listen there, and a connect to it is refused while nobody listens.
 * Without it, CI once saw sluice's bind fail because an outgoing
 * connection of a parallel test had taken the port in between.
 *
 * Wine's bind checks refuse the shared port (WSAEACCES), so in wine mode
 * the port comes from below the ephemeral range (32768-60999 on Linux),
 * where no outgoing connection has one, and is only probed.
 */
#define HELD_MAX 512
static int held[HELD_MAX];
static unsigned nheld;
static pthread_mutex_t held_lock = PTHREAD_MUTEX_INITIALIZER;

static void held_release(void)
{
	unsigned i;

	for (i = 0; i < nheld; i++)
		close(held[i]);
	nheld = 0;
}

static uint16_t reserve_port(void)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);
	int one = 1;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		st_fail("socket: %s", strerror(errno));
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	loopback(&sin, 0);
	if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sin, &len) < 0)
		st_fail("reserve a loopback port: %s", strerror(errno));
	pthread_mutex_lock(&held_lock);
	if (nheld == HELD_MAX)
		st_fail("more than %d ports reserved", HELD_MAX);
	if (nheld == 0)
		atexit(held_release);
	held[nheld++] = fd;
	pthread_mutex_unlock(&held_lock);
	return ntohs(sin.sin_port);
}

uint16_t st_free_port(void)
{
	uint16_t port;
	int fd;

	if (st_wine()) {
		static unsigned next;
		struct sockaddr_in sin;
		int i;

		if (next == 0)
			next = 20000 + (unsigned)(getpid() % 512) * 20;
		for (i = 0; i < 2000; i++) {
			port = (uint16_t)(20000 + (next++ - 20000) % 12000);
			fd = socket(AF_INET, SOCK_STREAM, 0);
			if (fd < 0)
				st_fail("socket: %s", strerror(errno));
			loopback(&sin, port);
			if (bind(fd, (struct sockaddr *)&sin, sizeof sin) == 0) {
				close(fd);
				return port;
			}
			close(fd);
		}
		st_fail("no free port below the ephemeral range");
	}
	return reserve_port();
}

/* Connect a new socket of sa's family; ST_BAD_SOCK with errno kept. */
static st_sock connect_sa(const struct sockaddr *sa, socklen_t len, int tcp)
{
	int one = 1;
	int fd = socket(sa->sa_family, SOCK_STREAM, 0);

	if (fd < 0)
		return ST_BAD_SOCK;
	if (connect(fd, sa, len) < 0) {
		int e = errno;

		close(fd);
		errno = e;
		return ST_BAD_SOCK;
	}
	if (tcp)
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

st_sock st_connect_tcp(uint16_t port)
{
	struct sockaddr_in sin;

	loopback(&sin, port);
	return connect_sa((struct sockaddr *)&sin, sizeof sin, 1);
}

st_sock st_connect_tcp_from(const char *src, uint16_t port, int nonblock)
{
	struct sockaddr_in sin, from;
	int fd = socket(AF_INET, SOCK_STREAM, 0), e;

	if (fd < 0)
		return ST_BAD_SOCK;
	memset(&from, 0, sizeof from);
	from.sin_family = AF_INET;
	if (inet_pton(AF_INET, src, &from.sin_addr) != 1) {
		close(fd);
		errno = EINVAL;
		return ST_BAD_SOCK;
	}
	if (bind(fd, (struct sockaddr *)&from, sizeof from) < 0)
		goto fail;
	if (nonblock && fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0)
		goto fail;
	loopback(&sin, port);
	if (connect(fd, (struct sockaddr *)&sin, sizeof sin) < 0 &&
	    !(nonblock && errno == EINPROGRESS))
		goto fail;
	return fd;
fail:
	e = errno;
	close(fd);
	errno = e;
	return ST_BAD_SOCK;
}

st_sock st_connect_unix(const char *path)
{
	struct sockaddr_un sun;
	socklen_t len = unix_addr(&sun, path);

	return connect_sa((struct sockaddr *)&sun, len, 0);
}

st_sock st_connect_tcp6(uint16_t port)
{
	struct sockaddr_in6 sin6;

	memset(&sin6, 0, sizeof(sin6));
	sin6.sin6_family = AF_INET6;
	sin6.sin6_port = htons(port);
	sin6.sin6_addr = in6addr_loopback;
	return connect_sa((struct sockaddr *)&sin6, sizeof sin6, 1);
}

st_sock st_connect_tcp_retry(uint16_t port, unsigned timeout_ms)
{
	uint64_t end = st_now_ms() + timeout_ms;

	for (;;) {
		st_sock s = st_connect_tcp(port);

		if (s != ST_BAD_SOCK)
			return s;
		if (st_now_ms() >= end)
			st_fail("connect to port %u: %s", port, strerror(errno));
		st_sleep_ms(10);
	}
}

uint16_t st_local_port(st_sock s)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	if (getsockname(s, (struct sockaddr *)&ss, &len) < 0)
		st_fail("getsockname: %s", strerror(errno));
	if (ss.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

void st_close(st_sock s)
{
	if (s != ST_BAD_SOCK)
		close(s);
}

void st_shutdown_wr(st_sock s)
{
	if (shutdown(s, SHUT_WR) < 0)
		st_fail("shutdown: %s", strerror(errno));
}

int st_try_shutdown_wr(st_sock s)
{
	return shutdown(s, SHUT_WR) < 0 ? -1 : 0;
}

/* Wait for events on s: 1 ready, 0 timeout. */
static int wait_fd(int fd, short events, unsigned timeout_ms)
{
	struct pollfd p = {.fd = fd, .events = events};
	uint64_t end = st_now_ms() + timeout_ms;

	for (;;) {
		uint64_t now = st_now_ms();
		int r;

		if (now >= end)
			return 0;
		r = poll(&p, 1, (int)(end - now));
		if (r > 0)
			return 1;
		if (r < 0 && errno != EINTR)
			st_fail("poll: %s", strerror(errno));
	}
}

void st_send_all(st_sock s, const void *buf, size_t len)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n;

		if (!wait_fd(s, POLLOUT, 20000))
			st_fail("send: no progress for 20 s");
		n = send(s, p, len, MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			st_fail("send: %s", strerror(errno));
		}
		p += n;
		len -= (size_t)n;
	}
}

ssize_t st_send_some(st_sock s, const void *buf, size_t len)
{
	for (;;) {
		ssize_t n;

		if (!wait_fd(s, POLLOUT, 20000))
			return 0;
		n = send(s, buf, len, MSG_DONTWAIT);
		if (n >= 0)
			return n;
		if (errno == EINTR)
			continue;
		return errno == EAGAIN ? 0 : -1;
	}
}

ssize_t st_recv_some(st_sock s, void *buf, size_t cap, unsigned timeout_ms)
{
	for (;;) {
		ssize_t n;

		if (!wait_fd(s, POLLIN, timeout_ms))
			return -2;
		n = recv(s, buf, cap, MSG_DONTWAIT);
		if (n >= 0)
			return n;
		if (errno == EINTR || errno == EAGAIN)
			continue;
		return -1;
	}
}

void st_recv_all(st_sock s, void *buf, size_t len, unsigned timeout_ms)
{
	char *p = buf;
	size_t want = len;

	while (len > 0) {
		ssize_t n = st_recv_some(s, p, len, timeout_ms);

		if (n == 0)
			st_fail("recv: EOF after %zu of %zu bytes", want - len, want);
		if (n == -1)
			st_fail("recv: %s after %zu of %zu bytes", strerror(errno),
				want - len, want);
		if (n == -2)
			st_fail("recv: timed out after %zu of %zu bytes", want - len,
				want);
		p += n;
		len -= (size_t)n;
	}
}

int st_wait_closed(st_sock s, unsigned timeout_ms)
{
	char c;
	ssize_t n = st_recv_some(s, &c, 1, timeout_ms);

	return n > 0 ? 1 : (int)n;
}

/* ---- deterministic data -------------------------------------------------- */

void st_rng_init(st_rng *r, uint64_t seed)
{
	r->s = seed * 0x9e3779b97f4a7c15ull + 0x632be59bd9b4e019ull;
}

static uint64_t rng_next(st_rng *r)
{
	/* splitmix64: a full 64-bit stream from any seed */
	uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/*
 * The stream is made of 8-byte little-endian words: every fill but the last
 * of a stream must be a multiple of 8 bytes long, so fills line up.
 */
void st_rng_fill(st_rng *r, void *buf, size_t len)
{
	unsigned char *p = buf;

	while (len > 0) {
		uint64_t w = rng_next(r);
		size_t i;

		for (i = 0; i < 8 && len > 0; i++, len--)
			*p++ = (unsigned char)(w >> (8 * i));
	}
}

struct sender {
	st_sock s;
	uint64_t seed, total;
	unsigned stall_ms;
};

static void *sender_main(void *arg)
{
	struct sender *snd = arg;
	st_rng r;
	char *buf = malloc(65536);
	uint64_t left = snd->total;

	if (!buf)
		st_fail("out of memory");
	st_rng_init(&r, snd->seed);
	while (left > 0) {
		size_t n = left < 65536 ? (size_t)left : 65536;
		size_t off = 0;

		st_rng_fill(&r, buf, n);
		while (off < n) {
			ssize_t w;

			if (!wait_fd(snd->s, POLLOUT, snd->stall_ms))
				st_fail("exchange: send stalled with %llu bytes "
					"left", (unsigned long long)left);
			w = send(snd->s, buf + off, n - off, MSG_DONTWAIT);
			if (w < 0) {
				if (errno == EINTR || errno == EAGAIN)
					continue;
				st_fail("exchange: send: %s", strerror(errno));
			}
			off += (size_t)w;
		}
		left -= n;
	}
	st_shutdown_wr(snd->s);
	free(buf);
	return NULL;
}

int st_exchange(st_sock s, uint64_t seed, uint64_t expect_seed,
		uint64_t total, unsigned stall_ms)
{
	struct sender snd = {s, seed, total, stall_ms};
	pthread_t t;
	st_rng r;
	char *want = malloc(65536), *got = malloc(65536);
	uint64_t done = 0;
	size_t have = 0, used = 0;

	if (total % 8)
		st_fail("exchange: total must be a multiple of 8");
	if (!want || !got)
		st_fail("out of memory");
	st_rng_init(&r, expect_seed);
	if (pthread_create(&t, NULL, sender_main, &snd))
		st_fail("pthread_create");
	while (done < total) {
		ssize_t n;
		size_t i;

		n = st_recv_some(s, got, 65536, stall_ms);
		if (n <= 0)
			st_fail("exchange: %s after %llu of %llu bytes",
				n == 0 ? "EOF" : n == -1 ? strerror(errno)
						 : "receive stalled",
				(unsigned long long)done,
				(unsigned long long)total);
		if ((uint64_t)n > total - done)
			st_fail("exchange: %llu bytes more than sent",
				(unsigned long long)(done + (uint64_t)n - total));
		for (i = 0; i < (size_t)n; i++) {
			if (used == have) {
				uint64_t rest = total - done - i;

				have = rest < 65536 ? (size_t)rest : 65536;
				st_rng_fill(&r, want, have);
				used = 0;
			}
			if (got[i] != want[used])
				st_fail("exchange: byte %llu differs",
					(unsigned long long)(done + i));
			used++;
		}
		done += (uint64_t)n;
	}
	{
		char c;
		ssize_t n = st_recv_some(s, &c, 1, stall_ms);

		if (n != 0)
			st_fail("exchange: expected EOF after %llu bytes, got %zd",
				(unsigned long long)total, n);
	}
	pthread_join(t, NULL);
	free(want);
	free(got);
	return 0;
}

/* ---- servers --------------------------------------------------------------- */

#define CONN_BUF 32768

struct conn {
	int fd;
	int eof_in;
	size_t len, off; /* buffered bytes [off, len) to write */
	uint64_t count;  /* COLLECT: bytes read */
	uint64_t reply_left;
	st_rng rng;
	char *buf;
};

/* A connection of an st_server_start_fn() server: its own thread. */
struct fn_conn {
	st_server *srv;
	pthread_t thread;
	int fd; /* under srv->lock; -1 once closed */
};

struct st_server {
	int lfd;
	int wake[2];
	enum st_server_mode mode;
	uint64_t reply;
	st_conn_fn fn; /* not NULL: a thread per connection */
	void *fn_arg;
	struct fn_conn **fconns;
	size_t nfconns;
	pthread_t thread;
	pthread_mutex_t lock;
	unsigned accepted, open;
	struct conn *conns;
	size_t nconns, cap;
	st_server *next; /* all servers not stopped yet (st_teardown) */
};

static st_server *servers;

static void set_nonblock(int fd)
{
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

static void conn_drop(st_server *srv, size_t i)
{
	close(srv->conns[i].fd);
	free(srv->conns[i].buf);
	srv->conns[i] = srv->conns[--srv->nconns];
	pthread_mutex_lock(&srv->lock);
	srv->open--;
	pthread_mutex_unlock(&srv->lock);
}

static void *fn_conn_main(void *arg)
{
	struct fn_conn *fc = arg;
	st_server *srv = fc->srv;

	srv->fn(fc->fd, srv->fn_arg);
	/* Closed under the lock: st_server_stop() shuts down only
	 * descriptors that are still this connection's. */
	pthread_mutex_lock(&srv->lock);
	close(fc->fd);
	fc->fd = -1;
	srv->open--;
	pthread_mutex_unlock(&srv->lock);
	return NULL;
}

static void fn_accept(st_server *srv, int fd)
{
	struct fn_conn *fc = calloc(1, sizeof(*fc));
	struct fn_conn **v;

	if (!fc)
		st_fail("out of memory");
	/* accept() does not pass O_NONBLOCK on (Linux), and the support
	 * functions fn uses wait with poll() anyway. */
	fc->srv = srv;
	fc->fd = fd;
	pthread_mutex_lock(&srv->lock);
	v = realloc(srv->fconns, (srv->nfconns + 1) * sizeof(*v));
	if (!v)
		st_fail("out of memory");
	srv->fconns = v;
	srv->fconns[srv->nfconns++] = fc;
	srv->accepted++;
	srv->open++;
	pthread_mutex_unlock(&srv->lock);
	if (pthread_create(&fc->thread, NULL, fn_conn_main, fc))
		st_fail("pthread_create");
}

static void server_accept(st_server *srv)
{
	for (;;) {
		int fd = accept(srv->lfd, NULL, NULL);
		struct conn *c;

		if (fd < 0)
			return;
		if (srv->fn) {
			fn_accept(srv, fd);
			continue;
		}
		set_nonblock(fd);
		if (srv->nconns == srv->cap) {
			srv->cap = srv->cap ? srv->cap * 2 : 64;
			srv->conns = realloc(srv->conns, srv->cap * sizeof(*c));
			if (!srv->conns)
				st_fail("out of memory");
		}
		c = &srv->conns[srv->nconns++];
		memset(c, 0, sizeof(*c));
		c->fd = fd;
		if (srv->mode != ST_HOLD) {
			c->buf = malloc(CONN_BUF);
			if (!c->buf)
				st_fail("out of memory");
		}
		pthread_mutex_lock(&srv->lock);
		srv->accepted++;
		srv->open++;
		pthread_mutex_unlock(&srv->lock);
	}
}

/* Advance one connection; return 0 to keep it, -1 to drop it. */
static int conn_step(st_server *srv, struct conn *c, short rev)
{
	ssize_t n;

	if (srv->mode == ST_HOLD)
		return (rev & (POLLHUP | POLLERR)) ? -1 : 0;
	if (srv->mode == ST_ECHO) {
		if (c->off < c->len) {
			n = send(c->fd, c->buf + c->off, c->len - c->off,
				 MSG_DONTWAIT);
			if (n < 0)
				return errno == EAGAIN || errno == EINTR ? 0 : -1;
			c->off += (size_t)n;
			if (c->off < c->len)
				return 0;
			c->off = c->len = 0;
		}
		if (c->eof_in) {
			shutdown(c->fd, SHUT_WR);
			return -1;
		}
		n = recv(c->fd, c->buf, CONN_BUF, MSG_DONTWAIT);
		if (n < 0)
			return errno == EAGAIN || errno == EINTR ? 0 : -1;
		if (n == 0) {
			c->eof_in = 1;
			shutdown(c->fd, SHUT_WR);
			return -1;
		}
		c->len = (size_t)n;
		return 0;
	}
	/* ST_COLLECT */
	if (!c->eof_in) {
		n = recv(c->fd, c->buf, CONN_BUF, MSG_DONTWAIT);
		if (n < 0)
			return errno == EAGAIN || errno == EINTR ? 0 : -1;
		if (n > 0) {
			c->count += (uint64_t)n;
			return 0;
		}
		c->eof_in = 1;
		c->reply_left = srv->reply;
		st_rng_init(&c->rng, 1);
		memcpy(c->buf, &c->count, 8); /* host order: same machine */
		c->off = 0;
		c->len = 8;
	}
	for (;;) {
		if (c->off == c->len) {
			size_t k;

			if (c->reply_left == 0) {
				shutdown(c->fd, SHUT_WR);
				return -1;
			}
			k = c->reply_left < CONN_BUF ? (size_t)c->reply_left
						      : CONN_BUF;
			st_rng_fill(&c->rng, c->buf, k);
			c->reply_left -= k;
			c->off = 0;
			c->len = k;
		}
		n = send(c->fd, c->buf + c->off, c->len - c->off, MSG_DONTWAIT);
		if (n < 0)
			return errno == EAGAIN || errno == EINTR ? 0 : -1;
		c->off += (size_t)n;
	}
}

static void *server_main(void *arg)
{
	st_server *srv = arg;
	struct pollfd *p = NULL;
	size_t pcap = 0;

	for (;;) {
		size_t i, n = srv->nconns + 2;
		int r;

		if (n > pcap) {
			pcap = n * 2;
			p = realloc(p, pcap * sizeof(*p));
			if (!p)
				st_fail("out of memory");
		}
		p[0] = (struct pollfd){.fd = srv->wake[0], .events = POLLIN};
		p[1] = (struct pollfd){.fd = srv->lfd, .events = POLLIN};
		for (i = 0; i < srv->nconns; i++) {
			struct conn *c = &srv->conns[i];
			short ev = 0;

			if (srv->mode == ST_ECHO)
				ev = c->off < c->len ? POLLOUT : POLLIN;
			else if (srv->mode == ST_COLLECT)
				ev = c->eof_in ? POLLOUT : POLLIN;
			p[i + 2] = (struct pollfd){.fd = c->fd, .events = ev};
		}
		r = poll(p, (nfds_t)n, -1);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			st_fail("server poll: %s", strerror(errno));
		}
		if (p[0].revents)
			break;
		/* walk backwards: conn_drop moves the last entry into i */
		for (i = srv->nconns; i-- > 0;) {
			if (p[i + 2].revents &&
			    conn_step(srv, &srv->conns[i], p[i + 2].revents) < 0)
				conn_drop(srv, i);
		}
		if (p[1].revents)
			server_accept(srv);
	}
	while (srv->nconns > 0)
		conn_drop(srv, srv->nconns - 1);
	free(p);
	return NULL;
}

/* fn NULL: serve in mode; else a thread per connection (mode unused). */
static st_server *server_start(st_sock l, enum st_server_mode mode,
			       uint64_t reply, st_conn_fn fn, void *arg)
{
	st_server *srv = calloc(1, sizeof(*srv));

	if (!srv || pipe(srv->wake) < 0)
		st_fail("server: %s", strerror(errno));
	srv->lfd = l;
	srv->mode = mode;
	srv->reply = reply;
	srv->fn = fn;
	srv->fn_arg = arg;
	set_nonblock(l);
	pthread_mutex_init(&srv->lock, NULL);
	if (pthread_create(&srv->thread, NULL, server_main, srv))
		st_fail("pthread_create");
	srv->next = servers;
	servers = srv;
	return srv;
}

st_server *st_server_start(st_sock l, enum st_server_mode mode,
			   uint64_t reply)
{
	return server_start(l, mode, reply, NULL, NULL);
}

st_server *st_server_start_fn(st_sock l, st_conn_fn fn, void *arg)
{
	return server_start(l, ST_HOLD, 0, fn, arg);
}

unsigned st_server_accepted(st_server *srv)
{
	unsigned n;

	pthread_mutex_lock(&srv->lock);
	n = srv->accepted;
	pthread_mutex_unlock(&srv->lock);
	return n;
}

unsigned st_server_open(st_server *srv)
{
	unsigned n;

	pthread_mutex_lock(&srv->lock);
	n = srv->open;
	pthread_mutex_unlock(&srv->lock);
	return n;
}

void st_server_stop(st_server *srv)
{
	st_server **pp;

	if (!srv)
		return;
	for (pp = &servers; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == srv) {
			*pp = srv->next;
			break;
		}
	}
	if (write(srv->wake[1], "x", 1) != 1)
		st_fail("server stop: %s", strerror(errno));
	pthread_join(srv->thread, NULL);
	close(srv->lfd);
	/* Per-connection threads: end their connections, then wait. */
	pthread_mutex_lock(&srv->lock);
	for (size_t i = 0; i < srv->nfconns; i++)
		if (srv->fconns[i]->fd >= 0)
			shutdown(srv->fconns[i]->fd, SHUT_RDWR);
	pthread_mutex_unlock(&srv->lock);
	for (size_t i = 0; i < srv->nfconns; i++) {
		pthread_join(srv->fconns[i]->thread, NULL);
		free(srv->fconns[i]);
	}
	free(srv->fconns);
	close(srv->wake[0]);
	close(srv->wake[1]);
	pthread_mutex_destroy(&srv->lock);
	free(srv->conns);
	free(srv);
}

/* ---- the daemon -------------------------------------------------------------- */

struct st_daemon {
	pid_t pid;
	int status;
	char *conf, *log;
	st_daemon *next; /* all daemons not freed yet */
};

static unsigned daemon_seq;
static st_daemon *daemons;

/*
 * st_fail() ends the program at once, without a teardown (st_teardown):
 * no daemon may outlive the test program.
 */
static void kill_daemons(void)
{
	st_daemon *d;

	for (d = daemons; d != NULL; d = d->next) {
		if (d->pid > 0) {
			kill(d->pid, SIGKILL);
			waitpid(d->pid, NULL, 0);
			d->pid = 0;
		}
	}
}

/*
 * In a child about to exec: close every descriptor but 0-2.  The test's
 * listening sockets would otherwise live on in the daemon (nothing here
 * opens them close-on-exec), and a server the test stops would go on
 * completing handshakes that nobody accepts, where a client should be
 * refused.
 */
static void close_inherited(void)
{
	struct rlimit rl;
	int fd, max = 8192;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
	    rl.rlim_cur < 65536)
		max = (int)rl.rlim_cur;
	for (fd = 3; fd < max; fd++)
		close(fd);
}

/* ---- wine mode ------------------------------------------------------------ */

const char *st_wine(void)
{
	const char *exe = getenv("SLUICE_WINE_EXE");

	return exe != NULL && *exe ? exe : NULL;
}

static const char *wine_tool(void)
{
	const char *t = getenv("SLUICE_WINE_TOOL");

	if (!t || !*t)
		st_fail("SLUICE_WINE_TOOL is not set (sltool.exe)");
	return t;
}

/* exec the Windows program under wine: argv[0] is the .exe. */
static void exec_wine(const char *const *argv)
{
	const char *av[24];
	int i;

	av[0] = "wine";
	for (i = 0; argv[i] != NULL && i < 22; i++)
		av[i + 1] = argv[i];
	av[i + 1] = NULL;
	setenv("WINEDEBUG", "-all", 0);
	setenv("WINEDLLOVERRIDES", "mscoree,mshtml=", 0);
	unsetenv("DISPLAY");
	execvp("wine", (char *const *)av);
}

/* sltool processes not reaped yet (st_teardown). */
#define TOOLS_MAX 64
static pid_t tools[TOOLS_MAX];
static unsigned ntools;

static void tool_reaped(pid_t pid)
{
	unsigned i;

	for (i = 0; i < ntools; i++) {
		if (tools[i] == pid) {
			tools[i] = tools[--ntools];
			return;
		}
	}
}

/*
 * Fork and exec argv (a Windows program under wine when wine is set) with
 * fd[0], fd[1] and fd[2] as its descriptors 0, 1 and 2; where one is -1,
 * the child opens path[0] to read or path[1] to write instead (a FIFO
 * waits there for its other end, not here), or keeps our stderr.  On
 * record with the sltools until reaped.
 */
static pid_t spawn(const char *const *argv, int wine, const int fd[3],
		   const char *const path[2])
{
	pid_t pid;

	fflush(NULL);
	pid = fork();
	if (pid < 0)
		st_fail("fork: %s", strerror(errno));
	if (pid == 0) {
		int in = fd[0] >= 0 ? fd[0] : open(path[0], O_RDONLY);
		int out = fd[1] >= 0 ? fd[1]
				     : open(path[1], O_WRONLY | O_CREAT |
						     O_TRUNC, 0600);

		if (in < 0 || out < 0)
			_exit(126);
		dup2(in, 0);
		dup2(out, 1);
		if (fd[2] >= 0)
			dup2(fd[2], 2);
		close_inherited();
		signal(SIGPIPE, SIG_DFL);
		if (wine)
			exec_wine(argv);
		else
			execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	if (ntools == TOOLS_MAX)
		st_fail("more than %d sltool processes at once", TOOLS_MAX);
	tools[ntools++] = pid;
	return pid;
}

/* argv (16 places): prog, then arg and the rest of ap up to a NULL. */
static void make_argv(const char **argv, const char *prog, const char *arg,
		      va_list ap)
{
	int n = 0;

	argv[n++] = prog;
	for (; arg && n < 15; arg = va_arg(ap, const char *))
		argv[n++] = arg;
	argv[n] = NULL;
}

pid_t st_tool_start(const char *in, const char *out, const char *arg, ...)
{
	static const int fd[3] = {-1, -1, -1};
	const char *path[2] = {in ? in : "/dev/null",
			       out ? out : "/dev/null"};
	const char *argv[16];
	va_list ap;

	va_start(ap, arg);
	make_argv(argv, wine_tool(), arg, ap);
	va_end(ap);
	return spawn(argv, 1, fd, path);
}

int st_tool_wait(pid_t pid, unsigned timeout_ms)
{
	uint64_t end = st_now_ms() + timeout_ms;

	for (;;) {
		int st;
		pid_t r = waitpid(pid, &st, WNOHANG);

		if (r == pid) {
			tool_reaped(pid);
			return WIFEXITED(st) ? WEXITSTATUS(st)
					     : 128 + WTERMSIG(st);
		}
		if (st_now_ms() > end) {
			st_tool_kill(pid);
			return -1;
		}
		st_sleep_ms(10);
	}
}

void st_tool_kill(pid_t pid)
{
	if (pid > 0) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		tool_reaped(pid);
	}
}

static const char *sluice_bin(void)
{
	if (st_wine())
		return st_wine();
	{
	const char *bin = getenv("SLUICE_BIN");

	if (!bin || !*bin)
		st_fail("SLUICE_BIN is not set (run through make check)");
	return bin;
	}
}

pid_t st_sluice_start(int in, int out, int err, const char *arg, ...)
{
	const char *argv[16];
	va_list ap;

	va_start(ap, arg);
	make_argv(argv, sluice_bin(), arg, ap);
	va_end(ap);
	return spawn(argv, st_wine() != NULL, (const int[3]){in, out, err},
		     NULL);
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	if (!f || fputs(text, f) == EOF || fclose(f) != 0)
		st_fail("write %s: %s", path, strerror(errno));
}

static char *read_file(const char *path)
{
	FILE *f = fopen(path, "r");
	char *s = NULL;
	size_t len = 0, cap = 0;

	if (!f)
		st_fail("read %s: %s", path, strerror(errno));
	for (;;) {
		size_t n;

		if (cap - len < 4096) {
			cap = cap ? cap * 2 : 8192;
			s = realloc(s, cap);
			if (!s)
				st_fail("out of memory");
		}
		n = fread(s + len, 1, cap - len - 1, f);
		if (n == 0)
			break;
		len += n;
	}
	fclose(f);
	s[len] = '\0';
	return s;
}

void st_daemon_write_config(st_daemon *d, const char *yaml)
{
	/* Write aside and rename, so a reload never reads half a file. */
	char *tmp = st_fmt("%s.new", d->conf);

	write_file(tmp, yaml);
	if (rename(tmp, d->conf) < 0)
		st_fail("rename %s: %s", tmp, strerror(errno));
	free(tmp);
}

/* SLUICE_VALGRIND=1: run the daemon under valgrind's memcheck. */
static int valgrind(void)
{
	const char *v = getenv("SLUICE_VALGRIND");

	return v != NULL && v[0] != '\0' && strcmp(v, "0") != 0 && !st_wine();
}

/* exec wrap... bin -d -c conf (at most WRAP_MAX words of wrap): the
 * wrapper must exec the daemon in its own process, so that the pid we
 * forked stays the daemon's. */
#define WRAP_MAX 19
static void exec_wrapped(const char *const *wrap, const char *bin,
			 const char *conf)
{
	const char *av[WRAP_MAX + 5];
	int n = 0;

	for (; wrap[n] != NULL; n++)
		av[n] = wrap[n];
	av[n++] = bin;
	av[n++] = "-d";
	av[n++] = "-c";
	av[n++] = conf;
	av[n] = NULL;
	execvp(av[0], (char *const *)av);
	fprintf(stderr, "exec %s: %s\n", av[0], strerror(errno));
	_exit(127);
}

static st_daemon *daemon_start(const char *yaml, unsigned nofile,
			       const char *const *wrap)
{
	st_daemon *d = calloc(1, sizeof(*d));
	const char *bin = sluice_bin();
	unsigned seq = ++daemon_seq;

	if (!d)
		st_fail("out of memory");
	{
		static int registered;

		if (!registered++)
			atexit(kill_daemons);
	}
	d->next = daemons;
	daemons = d;
	d->status = -1;
	d->conf = st_fmt("%s/sluice-%u.yaml", st_tmpdir(), seq);
	d->log = st_fmt("%s/sluice-%u.log", st_tmpdir(), seq);
	st_daemon_write_config(d, yaml);
	write_file(d->log, "");
	fflush(NULL);
	d->pid = fork();
	if (d->pid < 0)
		st_fail("fork: %s", strerror(errno));
	if (d->pid == 0) {
		int fd = open(d->log, O_WRONLY | O_APPEND);

		if (fd < 0)
			_exit(126);
		dup2(fd, 1);
		dup2(fd, 2);
		close_inherited();
		signal(SIGPIPE, SIG_DFL);
		if (nofile) {
			struct rlimit rl = {nofile, nofile};

			if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
				_exit(125);
		}
		if (st_wine()) {
			const char *av[] = {bin, "-d", "-c", d->conf, NULL};

			exec_wine(av);
		}
		if (wrap != NULL)
			exec_wrapped(wrap, bin, d->conf);
		if (valgrind())
			/* memcheck: any error, or a definite leak, makes the
			 * exit status 97, which the tests' wait sees. */
			execlp("valgrind", "valgrind", "--quiet",
			       "--error-exitcode=97", "--leak-check=full",
			       "--errors-for-leak-kinds=definite",
			       "--show-leak-kinds=definite", bin, "-d", "-c",
			       d->conf, (char *)NULL);
		execl(bin, bin, "-d", "-c", d->conf, (char *)NULL);
		fprintf(stderr, "exec %s: %s\n", bin, strerror(errno));
		_exit(127);
	}
	{
		uint64_t end = st_now_ms() + (valgrind() ? 60000 : 20000);

		while (st_daemon_log_count(d, " started: ") == 0) {
			int st;

			if (waitpid(d->pid, &st, WNOHANG) == d->pid) {
				char *log = read_file(d->log);

				d->pid = 0;
				st_fail("sluice exited at start (status %d):\n%s",
					WIFEXITED(st) ? WEXITSTATUS(st) : -1, log);
			}
			if (st_now_ms() > end)
				st_fail("sluice did not start within 20 s:\n%s",
					read_file(d->log));
			st_sleep_ms(5);
		}
	}
	return d;
}

st_daemon *st_daemon_start(const char *yaml)
{
	return daemon_start(yaml, 0, NULL);
}

st_daemon *st_daemon_start_limited(const char *yaml, unsigned nofile)
{
	return daemon_start(yaml, nofile, NULL);
}

st_daemon *st_daemon_start_wrapped(const char *yaml, const char *const *wrap)
{
	size_t n = 0;

	if (st_wine())
		st_fail("st_daemon_start_wrapped: not under wine");
	while (wrap[n] != NULL)
		n++;
	if (n == 0 || n > WRAP_MAX)
		st_fail("st_daemon_start_wrapped: %zu words of wrapper", n);
	return daemon_start(yaml, 0, wrap);
}

pid_t st_daemon_pid(const st_daemon *d)
{
	return d->pid;
}

long st_daemon_winpid(const st_daemon *d)
{
	/* The one in its log lines. */
	char *log = st_daemon_log(d), *p = strstr(log, "sluice[");
	long pid;

	if (p == NULL)
		st_fail("no pid in the sluice.exe log:\n%s", log);
	pid = strtol(p + 7, NULL, 10);
	free(log);
	return pid;
}

void st_daemon_signal(st_daemon *d, int sig)
{
	if (d->pid > 0 && st_wine()) {
		/* sluice.exe answers named events (sluice-PID-stop, ...). */
		const char *what = sig == SIGHUP	? "reload"
				   : sig == SIGUSR1 ? "reopen"
						    : "stop";
		char *ev = st_fmt("sluice-%ld-%s", st_daemon_winpid(d), what);
		pid_t t;
		int rc;

		t = st_tool_start(NULL, NULL, "sig", ev, NULL);
		rc = st_tool_wait(t, 20000);
		/* A timeout and a failure have different causes: say which. */
		if (rc < 0)
			st_fail("sltool sig %s did not finish within 20 s", ev);
		if (rc != 0)
			st_fail("sltool sig %s failed (exit status %d)", ev, rc);
		free(ev);
		return;
	}
	if (d->pid > 0 && kill(d->pid, sig) < 0)
		st_fail("kill %d: %s", (int)d->pid, strerror(errno));
}

int st_daemon_wait(st_daemon *d, unsigned timeout_ms)
{
	uint64_t end = st_now_ms() + timeout_ms;

	while (d->pid > 0) {
		int st;
		pid_t r = waitpid(d->pid, &st, WNOHANG);

		if (r == d->pid) {
			d->pid = 0;
			d->status = WIFEXITED(st) ? WEXITSTATUS(st)
						  : 128 + WTERMSIG(st);
			/* A sanitizer's exit status says less than its
			 * report: show the report. */
			if (d->status != 0 &&
			    (st_daemon_log_count(d, "Sanitizer") ||
			     st_daemon_log_count(d, "runtime error:") ||
			     (valgrind() && d->status == 97)))
				st_fail("sanitizer report in the sluice log:\n%s",
					st_daemon_log(d));
			break;
		}
		if (st_now_ms() > end)
			return -1;
		st_sleep_ms(5);
	}
	return d->status;
}

char *st_daemon_log(const st_daemon *d)
{
	return read_file(d->log);
}

unsigned st_daemon_log_count(const st_daemon *d, const char *needle)
{
	char *log = read_file(d->log), *p = log;
	unsigned n = 0;

	while ((p = strstr(p, needle)) != NULL) {
		n++;
		p += strlen(needle);
	}
	free(log);
	return n;
}

int st_daemon_wait_log(const st_daemon *d, const char *needle, unsigned n,
		       unsigned timeout_ms)
{
	uint64_t end = st_now_ms() + timeout_ms;

	while (st_daemon_log_count(d, needle) < n) {
		if (st_now_ms() > end)
			return -1;
		st_sleep_ms(10);
	}
	return 0;
}

void st_daemon_free(st_daemon *d)
{
	st_daemon **pp;

	if (!d)
		return;
	for (pp = &daemons; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == d) {
			*pp = d->next;
			break;
		}
	}
	if (d->pid > 0) {
		kill(d->pid, SIGKILL);
		waitpid(d->pid, NULL, 0);
	}
	/* A sanitizer report in the daemon's log fails the test that ran it. */
	if (st_daemon_log_count(d, "Sanitizer") ||
	    st_daemon_log_count(d, "runtime error:"))
		st_fail("sanitizer report in the sluice log:\n%s",
			st_daemon_log(d));
	unlink(d->conf);
	unlink(d->log);
	free(d->conf);
	free(d->log);
	free(d);
}

void st_print_logs(void)
{
	const st_daemon *d;

	for (d = daemons; d != NULL; d = d->next) {
		char *log = st_daemon_log(d);

		fprintf(stderr, "sluice log:\n%s\n", log);
		free(log);
	}
}

int st_teardown(void **state)
{
	(void)state;
	while (daemons != NULL)
		st_daemon_free(daemons);
	while (servers != NULL)
		st_server_stop(servers);
	while (ntools > 0)
		st_tool_kill(tools[ntools - 1]);
	return 0;
}

/*
 * Run argv to completion with its output in *out.  wine: argv[0] is a
 * Windows program to run under wine; else a program in PATH.
 */
static int run_argv(char **out, const char *const *argv, int wine)
{
	int st;
	int fds[2];
	pid_t pid;
	char *buf = NULL;
	size_t len = 0, cap = 0;
	uint64_t end;

	if (pipe(fds) < 0)
		st_fail("pipe: %s", strerror(errno));
	fflush(NULL);
	pid = fork();
	if (pid < 0)
		st_fail("fork: %s", strerror(errno));
	if (pid == 0) {
		dup2(fds[1], 1);
		dup2(fds[1], 2);
		close_inherited();
		if (wine)
			exec_wine(argv);
		execvp(argv[0], (char *const *)argv);
		_exit(127);
	}
	close(fds[1]);
	/*
	 * Read until the program has exited and its output is drained, not
	 * until EOF: under wine, helper processes the program's start brings
	 * up (services.exe, ...) inherit the pipe and outlive it.
	 */
	end = st_now_ms() + 20000;
	for (int exited = 0;;) {
		struct pollfd pfd = {.fd = fds[0], .events = POLLIN};
		ssize_t r;
		int ready;

		if (cap - len < 1024) {
			cap = cap ? cap * 2 : 4096;
			buf = realloc(buf, cap);
			if (!buf)
				st_fail("out of memory");
		}
		if (!exited && waitpid(pid, &st, WNOHANG) == pid)
			exited = 1;
		ready = poll(&pfd, 1, exited ? 0 : 50);
		if (ready < 0 && errno != EINTR)
			st_fail("poll: %s", strerror(errno));
		if (ready <= 0) {
			if (exited)
				break; /* gone, and nothing left to read */
			if (st_now_ms() > end)
				st_fail("%s %s did not finish within 20 s",
					argv[0], argv[1] ? argv[1] : "");
			continue;
		}
		r = read(fds[0], buf + len, cap - len - 1);
		if (r <= 0) {
			if (!exited && waitpid(pid, &st, 0) != pid)
				st_fail("waitpid: %s", strerror(errno));
			break;
		}
		len += (size_t)r;
	}
	close(fds[0]);
	buf[len] = '\0';
	*out = buf;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

int st_run_sluice(char **out, const char *arg, ...)
{
	const char *argv[16];
	va_list ap;

	va_start(ap, arg);
	make_argv(argv, sluice_bin(), arg, ap);
	va_end(ap);
	return run_argv(out, argv, st_wine() != NULL);
}

int st_run_argv(char **out, const char *const *argv)
{
	return run_argv(out, argv, 0);
}

int st_run_cmd(char **out, const char *prog, ...)
{
	const char *argv[24];
	const char *arg;
	int n = 0;
	va_list ap;

	argv[n++] = prog;
	va_start(ap, prog);
	while ((arg = va_arg(ap, const char *)) != NULL && n < 23)
		argv[n++] = arg;
	va_end(ap);
	argv[n] = NULL;
	return run_argv(out, argv, 0);
}

char *st_write_tmp(const char *name, const char *text)
{
	char *path = st_fmt("%s/%s", st_tmpdir(), name);

	write_file(path, text);
	return path;
}

char *st_read_file(const char *path)
{
	FILE *f = fopen(path, "r");

	if (!f)
		return NULL;
	fclose(f);
	return read_file(path);
}

char *st_http_get(uint16_t port, const char *path)
{
	st_sock c = st_connect_tcp_retry(port, 10000);
	char *req = st_fmt("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", path);
	size_t len = 0, cap = 65536;
	char *buf = malloc(cap);
	ssize_t n;

	if (buf == NULL)
		st_fail("out of memory");
	st_send_all(c, req, strlen(req));
	while ((n = st_recv_some(c, buf + len, cap - 1 - len, 20000)) > 0) {
		len += (size_t)n;
		if (len == cap - 1) {
			cap *= 2;
			buf = realloc(buf, cap);
			if (buf == NULL)
				st_fail("out of memory");
		}
	}
	if (n != 0) /* the answer ends at EOF, nothing else */
		st_fail("GET %s from port %u: %s after %zu bytes", path,
			(unsigned)port, n == -2 ? "stalled" : "reset", len);
	buf[len] = '\0';
	st_close(c);
	free(req);
	return buf;
}

long long st_metric(const char *text, const char *series)
{
	size_t n = strlen(series);
	const char *p = text;

	while ((p = strstr(p, series)) != NULL) {
		if ((p == text || p[-1] == '\n') && p[n] == ' ')
			return strtoll(p + n + 1, NULL, 10);
		p += n;
	}
	return -1;
}

void st_echo_rest(st_sock c)
{
	char buf[16384];

	for (;;) {
		ssize_t n = st_recv_some(c, buf, sizeof buf, 60000);
		ssize_t off = 0;

		if (n == 0)
			(void)st_try_shutdown_wr(c);
		if (n <= 0)
			return;
		while (off < n) {
			ssize_t w = st_send_some(c, buf + off,
						 (size_t)(n - off));

			if (w < 0)
				return;
			off += w;
		}
	}
}
