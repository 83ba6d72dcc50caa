/*
 * sluice relay ENDPOINT, the real binary ($SLUICE_BIN, or sluice.exe under
 * wine with SLUICE_WINE_EXE): its standard input and output are pipes of
 * this program, the endpoint a server of this program (TCP, Unix socket)
 * or of sltool.exe (a named pipe, under wine, where wine gives sluice.exe
 * these Linux pipes as Windows pipe handles).  Every wait is bounded;
 * every transfer is checked byte by byte.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* glibc: posix_openpt, ptsname, cfmakeraw */
#endif
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <cmocka.h>

#include "support/support.h"

#define MiB (1024ull * 1024)

/* One relay: its pid and our ends of its standard input and output. */
struct relay {
	pid_t pid;
	int in;  /* we write its standard input */
	int out; /* we read its standard output */
	char *err_path;
};

static void relay_start(struct relay *r, const char *wait, const char *ep)
{
	static unsigned seq;
	int in[2], out[2], err;

	if (pipe(in) < 0 || pipe(out) < 0)
		st_fail("pipe: %s", strerror(errno));
	r->err_path = st_fmt("%s/relay-%u.err", st_tmpdir(), ++seq);
	err = open(r->err_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (err < 0)
		st_fail("%s: %s", r->err_path, strerror(errno));
	if (wait != NULL)
		r->pid = st_sluice_start(in[0], out[1], err, "relay", wait, ep,
					 NULL);
	else
		r->pid = st_sluice_start(in[0], out[1], err, "relay", ep, NULL);
	close(in[0]);
	close(out[1]);
	close(err);
	r->in = in[1];
	r->out = out[0];
	(void)fcntl(r->in, F_SETFD, FD_CLOEXEC);
	(void)fcntl(r->out, F_SETFD, FD_CLOEXEC);
}

static void relay_close_in(struct relay *r)
{
	if (r->in >= 0)
		close(r->in);
	r->in = -1;
}

/* Its exit status within ST_WAIT_MS (-1: it was killed then), our ends
 * closed, its stderr in *err (malloc'd) when err is not NULL. */
static int relay_end(struct relay *r, char **err)
{
	int st = st_tool_wait(r->pid, ST_WAIT_MS);
	char *text = st_read_file(r->err_path);

	relay_close_in(r);
	close(r->out);
	if (text != NULL && st != 0 && err == NULL)
		fprintf(stderr, "relay's stderr: %s", text);
	if (err != NULL)
		*err = text;
	else
		free(text);
	free(r->err_path);
	return st;
}

/* Read its output: > 0 bytes, 0 at the end; the test fails on a stall. */
static ssize_t out_read(struct relay *r, void *buf, size_t cap)
{
	struct pollfd p = {.fd = r->out, .events = POLLIN};
	ssize_t n;
	int k;

	while ((k = poll(&p, 1, ST_STALL_MS)) < 0 && errno == EINTR)
		;
	if (k == 0) /* a failed test: the teardown kills what is left */
		fail_msg("relay: no output for %d ms", ST_STALL_MS);
	n = read(r->out, buf, cap);
	if (n < 0)
		st_fail("relay's output: %s", strerror(errno));
	return n;
}

/* Exactly len bytes of its output, or fail. */
static void out_expect(struct relay *r, void *buf, size_t len)
{
	size_t got = 0;

	while (got < len) {
		ssize_t n = out_read(r, (char *)buf + got, len - got);

		if (n == 0)
			fail_msg("relay's output ended after %zu of %zu bytes",
				 got, len);
		got += (size_t)n;
	}
}

static void out_expect_end(struct relay *r)
{
	char c;

	assert_int_equal(out_read(r, &c, 1), 0);
}

/* All of buf into its input: 0, or -1 (errno) when it has gone. */
static int in_write(struct relay *r, const void *buf, size_t len)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = write(r->in, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* ---- both ways at once ------------------------------------------------ */

struct feed {
	struct relay *r;
	uint64_t total, seed;
};

/* total bytes of the stream seed into its input, then its end. */
static void *feed_main(void *arg)
{
	struct feed *f = arg;
	static char buf[1 << 16];
	uint64_t done = 0;
	st_rng g;

	st_rng_init(&g, f->seed);
	while (done < f->total) {
		size_t k = f->total - done < sizeof buf
				   ? (size_t)(f->total - done)
				   : sizeof buf;

		st_rng_fill(&g, buf, k);
		if (in_write(f->r, buf, k) < 0)
			st_fail("relay's input: %s", strerror(errno));
		done += k;
	}
	relay_close_in(f->r);
	return NULL;
}

/* Check total bytes of the stream seed on its output. */
static void out_check(struct relay *r, uint64_t total, uint64_t seed)
{
	static char got[1 << 16], want[1 << 16];
	uint64_t done = 0;
	st_rng g;

	st_rng_init(&g, seed);
	while (done < total) {
		size_t k = total - done < sizeof got ? (size_t)(total - done)
						     : sizeof got;

		out_expect(r, got, k);
		st_rng_fill(&g, want, k);
		for (size_t i = 0; i < k; i++)
			if (got[i] != want[i])
				fail_msg("byte %llu differs",
					 (unsigned long long)(done + i));
		done += k;
	}
}

/*
 * 1 MiB in while its echo comes out, then the end of input: the echo
 * server sees it (its end passes back), and the relay ends with status 0.
 */
static void echo_through(const char *ep)
{
	struct relay r;
	struct feed f = {.r = &r, .total = MiB, .seed = 7};
	pthread_t t;

	relay_start(&r, NULL, ep);
	if (pthread_create(&t, NULL, feed_main, &f) != 0)
		st_fail("pthread_create");
	out_check(&r, MiB, 7);
	out_expect_end(&r);
	pthread_join(t, NULL);
	assert_int_equal(relay_end(&r, NULL), 0);
}

/*
 * The end of input is a half-close: a collect server reads to its end and
 * only then answers (a count, then `reply` bytes of stream 1, then its
 * own end), which must still come out whole.
 */
static void collect_through(const char *ep, uint64_t sent, uint64_t reply)
{
	struct relay r;
	struct feed f = {.r = &r, .total = sent, .seed = 9};
	uint64_t count;

	relay_start(&r, NULL, ep);
	feed_main(&f);
	out_expect(&r, &count, sizeof count);
	assert_int_equal(count, sent);
	out_check(&r, reply, 1);
	out_expect_end(&r);
	assert_int_equal(relay_end(&r, NULL), 0);
}

static char *tcp_ep(uint16_t port)
{
	return st_fmt("tcp://127.0.0.1:%u", port);
}

static char *unix_path(const char *name)
{
	return st_fmt("%s/%s.sock", st_tmpdir(), name);
}

static void test_tcp_echo(void **state)
{
	uint16_t port;
	st_server *srv = st_server_start(st_listen_tcp(&port, 8), ST_ECHO, 0);
	char *ep = tcp_ep(port);

	(void)state;
	echo_through(ep);
	st_server_stop(srv);
	free(ep);
}

/* socat's spelling, tcp:HOST:PORT, as well. */
static void test_tcp_half_close(void **state)
{
	uint16_t port;
	st_server *srv =
		st_server_start(st_listen_tcp(&port, 8), ST_COLLECT, 300000);
	char *ep = st_fmt("tcp:127.0.0.1:%u", port);

	(void)state;
	collect_through(ep, 100000, 300000);
	st_server_stop(srv);
	free(ep);
}

static void test_unix_echo(void **state)
{
	ST_NATIVE_ONLY(); /* wine 8 has no AF_UNIX */
	char *path = unix_path("echo"), *ep = st_fmt("unix:%s", path);
	st_server *srv;

	(void)state;
	srv = st_server_start(st_listen_unix(path, 8), ST_ECHO, 0);
	echo_through(ep);
	st_server_stop(srv);
	free(ep);
	free(path);
}

static void test_unix_half_close(void **state)
{
	ST_NATIVE_ONLY();
	char *path = unix_path("collect"), *ep = st_fmt("unix:%s", path);
	st_server *srv;

	(void)state;
	srv = st_server_start(st_listen_unix(path, 8), ST_COLLECT, 300000);
	collect_through(ep, 100000, 300000);
	st_server_stop(srv);
	free(ep);
	free(path);
}

/*
 * The endpoint ends first while input stays open: the output ends, and the
 * relay does not wait for an input that never ends (it exits 0 once the
 * input has been idle for a moment).
 */
static void say_bye(st_sock c, void *arg)
{
	(void)arg;
	st_send_all(c, "bye\n", 4);
}

static void test_endpoint_ends_first(void **state)
{
	uint16_t port;
	st_server *srv =
		st_server_start_fn(st_listen_tcp(&port, 8), say_bye, NULL);
	char *ep = tcp_ep(port), buf[4];
	struct relay r;

	(void)state;
	relay_start(&r, NULL, ep);
	out_expect(&r, buf, 4);
	assert_memory_equal(buf, "bye\n", 4);
	out_expect_end(&r);
	/* r.in stays open until the relay has ended. */
	assert_int_equal(relay_end(&r, NULL), 0);
	st_server_stop(srv);
	free(ep);
}

/* A short echo through a relay already started: "hello" back, then the
 * end both ways, status 0. */
static void hello_echo(struct relay *r)
{
	char buf[5];

	assert_int_equal(in_write(r, "hello", 5), 0);
	out_expect(r, buf, 5);
	assert_memory_equal(buf, "hello", 5);
	relay_close_in(r);
	out_expect_end(r);
	assert_int_equal(relay_end(r, NULL), 0);
}

/* --wait: the relay starts before the socket exists, which comes 300 ms
 * later; it connects. */
static void test_wait_unix(void **state)
{
	ST_NATIVE_ONLY();
	char *path = unix_path("late"), *ep = st_fmt("unix:%s", path);
	struct relay r;
	st_server *srv;

	(void)state;
	relay_start(&r, "--wait=20", ep);
	st_sleep_ms(300);
	srv = st_server_start(st_listen_unix(path, 8), ST_ECHO, 0);
	hello_echo(&r);
	st_server_stop(srv);
	free(ep);
	free(path);
}

/* The end of a relay that could not connect: status 1, one sentence. */
static void expect_failure(struct relay *r, const char *sentence)
{
	char *err;

	relay_close_in(r);
	assert_int_equal(relay_end(r, &err), 1);
	assert_non_null(err);
	/* sluice.exe's stderr is in text mode: "\r\n". */
	for (char *p = err, *q = err;; p++)
		if (*p != '\r' && (*q++ = *p) == '\0')
			break;
	if (strcmp(err, sentence) != 0)
		fail_msg("stderr: '%s', expected '%s'", err, sentence);
	free(err);
}

/* --wait=1 with nothing at KIND:WHERE: status 1 and the sentence,
 * within the bound relay_end waits. */
static void wait_gives_up(const char *kind, const char *where)
{
	char *ep = st_fmt("%s:%s", kind, where);
	char *want = st_fmt("sluice relay: connect %s: No such file or "
			    "directory (waited 1 s)\n", ep);
	struct relay r;

	relay_start(&r, "--wait=1", ep);
	expect_failure(&r, want);
	free(want);
	free(ep);
}

static void test_wait_gives_up(void **state)
{
	ST_NATIVE_ONLY();
	char *path = unix_path("never");

	(void)state;
	wait_gives_up("unix", path);
	free(path);
}

static void test_refused(void **state)
{
	uint16_t port = st_free_port();
	char *ep = tcp_ep(port);
	char *want = st_fmt("sluice relay: connect tcp://127.0.0.1:%u: "
			    "Connection refused\n", port);
	struct relay r;

	(void)state;
	relay_start(&r, NULL, ep);
	expect_failure(&r, want);
	free(want);
	free(ep);
}

/*
 * assuan: (gpg-agent's socket emulation): the relay reads the file, connects
 * to its port and sends the nonce first; the test's agent echoes only after
 * the right nonce.  A file of another form is the sentence.
 */
static const unsigned char agent_nonce[16] = "sluice\nnonce-16";

static void agent_echo(st_sock c, void *arg)
{
	unsigned char got[16];
	char buf[4096];
	size_t n = 0;
	ssize_t r;

	(void)arg;
	while (n < sizeof got) {
		if ((r = st_recv_some(c, got + n, sizeof got - n, 10000)) <= 0)
			return;
		n += (size_t)r;
	}
	if (memcmp(got, agent_nonce, sizeof got) != 0)
		return;
	while ((r = st_recv_some(c, buf, sizeof buf, 10000)) > 0)
		if (st_send_some(c, buf, (size_t)r) != r)
			return;
	(void)st_try_shutdown_wr(c);
}

static void test_assuan(void **state)
{
	uint16_t port;
	st_server *srv = st_server_start_fn(st_listen_tcp(&port, 8),
					    agent_echo, NULL);
	char *path = st_fmt("%s/S.gpg-agent", st_tmpdir());
	char *ep = st_fmt("assuan:%s", path), *want;
	FILE *f = fopen(path, "wb");
	struct relay r;

	(void)state;
	assert_non_null(f);
	fprintf(f, "%u\n", (unsigned)port);
	fwrite(agent_nonce, 1, sizeof agent_nonce, f);
	assert_int_equal(fclose(f), 0);
	echo_through(ep);
	assert_int_equal(st_server_accepted(srv), 1);

	f = fopen(path, "wb");
	assert_non_null(f);
	fprintf(f, "%u\n", (unsigned)port); /* no nonce */
	assert_int_equal(fclose(f), 0);
	want = st_fmt("sluice relay: connect %s: not an Assuan socket file "
		      "(expected a port, a newline and a 16-byte nonce)\n",
		      ep);
	relay_start(&r, NULL, ep);
	expect_failure(&r, want);
	st_server_stop(srv);
	free(want);
	free(ep);
	free(path);
}

static void test_missing_unix(void **state)
{
	ST_NATIVE_ONLY();
	char *path = unix_path("missing"), *ep = st_fmt("unix:%s", path);
	char *want = st_fmt("sluice relay: connect unix:%s: No such file or "
			    "directory\n", path);
	struct relay r;

	(void)state;
	relay_start(&r, NULL, ep);
	expect_failure(&r, want);
	free(want);
	free(ep);
	free(path);
}

/*
 * socat's EXEC and ssh give a relay one socket as both standard input and
 * output.  The endpoint ends its side first ("bye", then a FIN, reading
 * on): the relay's output must end although the same socket is its
 * input, which goes on to the endpoint for as long as it moves, and ends
 * as a half-close the endpoint sees.
 */
static atomic_ullong counted;

static void bye_then_count(st_sock c, void *arg)
{
	char buf[4096];
	ssize_t n;

	(void)arg;
	st_send_all(c, "bye\n", 4);
	st_shutdown_wr(c);
	while ((n = st_recv_some(c, buf, sizeof buf, ST_STALL_MS)) > 0)
		atomic_fetch_add(&counted, (unsigned long long)n);
}

static void test_socket_stdio(void **state)
{
	ST_NATIVE_ONLY(); /* a Unix socket as a wine program's stdio */
	uint16_t port;
	st_server *srv = st_server_start_fn(st_listen_tcp(&port, 8),
					    bye_then_count, NULL);
	char *ep = tcp_ep(port), buf[64], chunk[1000];
	uint64_t end = st_now_ms() + ST_WAIT_MS;
	size_t got = 0, sent = 0;
	int sv[2], st;
	pid_t pid;

	(void)state;
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		st_fail("socketpair: %s", strerror(errno));
	(void)fcntl(sv[0], F_SETFD, FD_CLOEXEC);
	pid = st_sluice_start(sv[1], sv[1], -1, "relay", ep, NULL);
	close(sv[1]);
	memset(chunk, 'x', sizeof chunk);
	/* Input keeps moving while we wait for the output's end. */
	for (;;) {
		ssize_t n = st_recv_some(sv[0], buf + got, sizeof buf - got,
					 100);

		if (n == 0)
			break;
		if (n == -1 || st_now_ms() > end)
			fail_msg("no end of the relay's output (%zu bytes)",
				 got);
		if (n > 0)
			got += (size_t)n;
		st_send_all(sv[0], chunk, sizeof chunk);
		sent += sizeof chunk;
	}
	assert_int_equal(got, 4);
	assert_memory_equal(buf, "bye\n", 4);
	st_shutdown_wr(sv[0]);
	st = st_tool_wait(pid, ST_WAIT_MS);
	assert_int_equal(st, 0);
	st_server_stop(srv);
	assert_int_equal(atomic_load(&counted), sent);
	close(sv[0]);
	free(ep);
}

/* ---- named pipes (sluice.exe under wine) ------------------------------- */

static char *pipe_name(const char *what)
{
	static unsigned seq;

	return st_fmt("\\\\.\\pipe\\sluice-relay-%ld-%s-%u", (long)getpid(),
		      what, ++seq);
}

/* `sltool CMD NAME`, up once a client gets in (`sltool dacl` opens the
 * pipe and leaves). */
static pid_t pipe_server_start(const char *cmd, const char *name)
{
	pid_t pid = st_tool_start(NULL, NULL, cmd, name, NULL);
	uint64_t end = st_now_ms() + ST_WAIT_MS;

	while (st_tool_wait(st_tool_start(NULL, NULL, "dacl", name, NULL),
			    ST_WAIT_MS) != 0) {
		if (st_now_ms() > end)
			st_fail("sltool %s %s did not come up", cmd, name);
		st_sleep_ms(100);
	}
	return pid;
}

/*
 * 1 MiB both ways through a pipe; the end of input goes as the zero-byte
 * message, which sltool's echo answers with its own after the echo: that
 * ends the output.
 */
static void test_pipe_echo(void **state)
{
	ST_WINE_ONLY();
	char *name = pipe_name("echo"), *ep = st_fmt("pipe:%s", name);
	pid_t srv;

	(void)state;
	srv = pipe_server_start("echo", name);
	echo_through(ep);
	st_tool_kill(srv);
	free(ep);
	free(name);
}

/* sltool collect answers only after the zero-byte message. */
static void test_pipe_half_close(void **state)
{
	ST_WINE_ONLY();
	char *name = pipe_name("collect"), *ep = st_fmt("pipe:%s", name);
	uint64_t count, sent = 100000;
	struct relay r;
	struct feed f = {.r = &r, .total = sent, .seed = 9};
	pid_t srv;

	(void)state;
	srv = pipe_server_start("collect", name);
	relay_start(&r, NULL, ep);
	feed_main(&f);
	/* The count, then the same bytes again, then its end. */
	out_expect(&r, &count, sizeof count);
	assert_int_equal(count, sent);
	out_check(&r, sent, 9);
	out_expect_end(&r);
	assert_int_equal(relay_end(&r, NULL), 0);
	st_tool_kill(srv);
	free(ep);
	free(name);
}

/*
 * sluice's own pipe listener takes the relay's zero-byte message as the
 * end: the daemon passes it on to a TCP collect server as a FIN, whose
 * answer comes back, and its end as the daemon's zero-byte message.
 */
static void test_pipe_to_daemon(void **state)
{
	ST_WINE_ONLY();
	char *name = pipe_name("daemon"), *ep = st_fmt("pipe:%s", name);
	uint16_t port;
	st_server *srv =
		st_server_start(st_listen_tcp(&port, 8), ST_COLLECT, 200000);
	st_cfg *cfg = st_cfg_new();
	st_daemon *d;
	char *yaml;

	(void)state;
	st_cfg_route(cfg, "relay", 0, port);
	st_cfg_listen(cfg, "'pipe:%s'", name);
	yaml = st_cfg_done(cfg);
	d = st_daemon_start(yaml);
	collect_through(ep, 100000, 200000);
	st_wait_log(d, "reason=done", 1);
	st_daemon_stop(d);
	st_server_stop(srv);
	free(yaml);
	free(ep);
	free(name);
}

static void test_pipe_wait(void **state)
{
	ST_WINE_ONLY();
	char *name = pipe_name("late"), *ep = st_fmt("pipe:%s", name);
	struct relay r;
	pid_t srv;

	(void)state;
	relay_start(&r, "--wait=20", ep);
	st_sleep_ms(300);
	srv = st_tool_start(NULL, NULL, "echo", name, NULL);
	hello_echo(&r);
	st_tool_kill(srv);
	free(ep);
	free(name);
}

/*
 * A pipe whose one instance is busy is waited for (WaitNamedPipe), without
 * --wait: relay B comes while A holds sltool echo1's only instance, and
 * gets in once A has ended.
 */
static void test_pipe_busy(void **state)
{
	ST_WINE_ONLY();
	char *name = pipe_name("busy"), *ep = st_fmt("pipe:%s", name);
	struct relay a, b;
	char c;
	pid_t srv;

	(void)state;
	srv = pipe_server_start("echo1", name);
	relay_start(&a, NULL, ep);
	assert_int_equal(in_write(&a, "a", 1), 0);
	out_expect(&a, &c, 1); /* A holds the instance */
	relay_start(&b, NULL, ep);
	st_sleep_ms(300);
	relay_close_in(&a);
	out_expect_end(&a);
	assert_int_equal(relay_end(&a, NULL), 0);
	hello_echo(&b);
	st_tool_kill(srv);
	free(ep);
	free(name);
}

/* A file of len random bytes (seed) in the test's directory: its path,
 * and the bytes in *data (malloc'd). */
static char *data_file(const char *name, size_t len, uint64_t seed,
		       char **data)
{
	char *path = st_fmt("%s/%s", st_tmpdir(), name);
	st_rng g;
	FILE *f;

	*data = malloc(len);
	assert_non_null(*data);
	st_rng_init(&g, seed);
	st_rng_fill(&g, *data, len);
	f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(*data, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
	return path;
}

/* The file at path holds exactly data. */
static void file_expect(const char *path, const char *data, size_t len)
{
	struct stat sb;
	char *got;

	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal((long long)sb.st_size, (long long)len);
	got = st_read_file(path);
	assert_non_null(got);
	assert_memory_equal(got, data, len);
	free(got);
}

/*
 * Standard handles opened overlapped (some parents give those): sltool
 * ovstdio runs sluice.exe relay with overlapped pipes as its standard
 * input and output, which a ReadFile or WriteFile without an OVERLAPPED
 * must not be used on; 200 KB through a TCP echo server come back whole.
 * Wine 8 waits in a ReadFile without an OVERLAPPED on an overlapped handle
 * as on a synchronous one, so there this passes whether or not the relay
 * asks the handle's mode (Windows gives no such promise): it shows the
 * overlapped way works, not that it is needed.
 */
static void test_overlapped_stdio(void **state)
{
	ST_WINE_ONLY();
	enum { LEN = 200000 };
	uint16_t port;
	st_server *srv = st_server_start(st_listen_tcp(&port, 8), ST_ECHO, 0);
	char *ep = tcp_ep(port), *exe, *in, *out, *data, *p;
	pid_t pid;

	(void)state;
	in = data_file("ov-in.bin", LEN, 5, &data);
	out = st_fmt("%s/ov-out.bin", st_tmpdir());
	/* The program as Windows names it: drive Z: is the Linux root. */
	exe = st_fmt("Z:%s", st_wine());
	for (p = exe; *p != '\0'; p++)
		if (*p == '/')
			*p = '\\';
	pid = st_tool_start(in, out, "ovstdio", exe, "relay", ep, NULL);
	assert_int_equal(st_tool_wait(pid, ST_WAIT_MS), 0);
	file_expect(out, data, LEN);
	st_server_stop(srv);
	free(data);
	free(exe);
	free(out);
	free(in);
	free(ep);
}

/*
 * Files as standard input and output (a Windows program run with `<` and
 * `>`: wine gives it file handles, as Windows does): the input file goes
 * to a TCP echo server, its end becomes the half-close, and the echo ends
 * up whole in the output file.  Consoles: test_console_stdio.
 */
static void test_file_stdio(void **state)
{
	ST_WINE_ONLY();
	enum { LEN = 300000 };
	uint16_t port;
	st_server *srv = st_server_start(st_listen_tcp(&port, 8), ST_ECHO, 0);
	char *ep = tcp_ep(port), *data;
	char *in = data_file("relay-in.bin", LEN, 131, &data);
	char *out = st_fmt("%s/relay-out.bin", st_tmpdir());
	char *err = st_fmt("%s/relay-file.err", st_tmpdir());
	int fi, fo, fe, st;
	pid_t pid;

	(void)state;
	fi = open(in, O_RDONLY | O_CLOEXEC);
	fo = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	fe = open(err, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(fi >= 0 && fo >= 0 && fe >= 0);
	pid = st_sluice_start(fi, fo, fe, "relay", ep, NULL);
	close(fi);
	close(fo);
	close(fe);
	st = st_tool_wait(pid, ST_WAIT_MS);
	if (st != 0) {
		char *text = st_read_file(err);

		fail_msg("relay exited %d: %s", st, text ? text : "");
	}
	file_expect(out, data, LEN);
	st_server_stop(srv);
	free(data);
	free(err);
	free(out);
	free(in);
	free(ep);
}

/*
 * Consoles as standard input and output (sluice.exe relay typed into a
 * Command Prompt, as nc is).  Under wine a program whose standard handles
 * are a terminal gets a console (wine's conhost, in its Unix mode, turns
 * the terminal into one), so a pseudo-terminal stands in for the Command
 * Prompt; `sltool stdkind` checks first that the console API takes both
 * handles there, or the test would show nothing.  A line typed with Enter
 * reaches the endpoint as a console's ReadFile gives it, "hello\r\n"; the
 * endpoint's 3,000 numbered lines (33 KB: more than one of the relay's
 * console writes, SL_CONSOLE_IO_MAX) all reach the screen, in order; and
 * the endpoint's end ends the relay, status 0, while the console is still
 * open for input.
 *
 * What wine cannot show: Windows ends a console's input at a Ctrl+Z at
 * the start of a line (ReadFile reads 0 bytes, which the relay takes as
 * the end of input); wine 8's console drops the Ctrl+Z and reads an empty
 * line.  The end of input is shown with pipes, files and sockets.  Nor
 * the two things the relay does for consoles alone (proc/relay_win.c):
 * it asks no I/O mode of a console handle, and writes to it in pieces of
 * SL_CONSOLE_IO_MAX, for Windows 7's console heap; wine's console gives a
 * synchronous mode and takes any size, so this passes without either.
 */
#define CONSOLE_LINES 3000

struct console_peer {
	atomic_int accepted;
	char line[64];
	size_t len;
};

static void console_peer(st_sock c, void *arg)
{
	struct console_peer *p = arg;
	char *reply = malloc(CONSOLE_LINES * 12 + 16), *q = reply;
	ssize_t r;

	atomic_store(&p->accepted, 1);
	while (p->len < sizeof p->line - 1 &&
	       (p->len == 0 || p->line[p->len - 1] != '\n')) {
		r = st_recv_some(c, p->line + p->len, sizeof p->line - 1 - p->len,
				 ST_WAIT_MS);
		if (r <= 0)
			break;
		p->len += (size_t)r;
	}
	if (reply == NULL)
		return;
	for (int i = 0; i < CONSOLE_LINES; i++)
		q += sprintf(q, "line %05d\r\n", i);
	q += sprintf(q, "end-of-reply\r\n");
	st_send_all(c, reply, (size_t)(q - reply));
	free(reply);
}

/* A pseudo-terminal, raw (no echo, no line editing: wine's console does
 * its own): its master, and the slave's name in *slave. */
static int pty_open(char **slave)
{
	int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
	struct termios t;
	int s;

	assert_true(m >= 0);
	assert_int_equal(grantpt(m), 0);
	assert_int_equal(unlockpt(m), 0);
	*slave = strdup(ptsname(m));
	assert_non_null(*slave);
	s = open(*slave, O_RDWR | O_NOCTTY | O_CLOEXEC);
	assert_true(s >= 0);
	assert_int_equal(tcgetattr(s, &t), 0);
	cfmakeraw(&t);
	assert_int_equal(tcsetattr(s, TCSANOW, &t), 0);
	close(s);
	return m;
}

/* What the terminal showed, until every writer has gone (EIO) or
 * ST_WAIT_MS; NUL-terminated, the terminal's escape sequences left out. */
static char *pty_screen(int m)
{
	size_t cap = 1 << 20, len = 0, out = 0;
	char *buf = malloc(cap);
	uint64_t end = st_now_ms() + ST_WAIT_MS;

	assert_non_null(buf);
	while (len < cap - 1 && st_now_ms() < end) {
		struct pollfd pfd = {.fd = m, .events = POLLIN};
		ssize_t n;

		if (poll(&pfd, 1, 100) <= 0)
			continue;
		n = read(m, buf + len, cap - 1 - len);
		if (n <= 0)
			break; /* EIO: no process has the terminal open */
		len += (size_t)n;
	}
	for (size_t i = 0; i < len; i++) {
		if (buf[i] == '\033' && i + 1 < len && buf[i + 1] == '[') {
			for (i += 2; i < len && !(buf[i] >= '@' && buf[i] <= '~');
			     i++)
				;
			continue;
		}
		buf[out++] = buf[i];
	}
	buf[out] = '\0';
	return buf;
}

static void test_console_stdio(void **state)
{
	ST_WINE_ONLY();
	struct console_peer peer = {.len = 0};
	uint16_t port;
	st_server *srv = st_server_start_fn(st_listen_tcp(&port, 8),
					    console_peer, &peer);
	char *ep = tcp_ep(port), *slave, *kind_file, *kind, *screen, *p;
	uint64_t end;
	int m, s, st, i;
	pid_t pid;

	(void)state;
	atomic_init(&peer.accepted, 0);
	m = pty_open(&slave);
	kind_file = st_fmt("%s/stdkind.txt", st_tmpdir());
	pid = st_tool_start(slave, slave, "stdkind", kind_file, NULL);
	assert_int_equal(st_tool_wait(pid, ST_WAIT_MS), 0);
	kind = st_read_file(kind_file);
	assert_non_null(kind);
	assert_string_equal(kind, "in=console out=console\n");

	s = open(slave, O_RDWR | O_NOCTTY | O_CLOEXEC);
	assert_true(s >= 0);
	pid = st_sluice_start(s, s, s, "relay", ep, NULL);
	close(s);
	/* Connected: the console is there (made before main), typing may
	 * begin. */
	end = st_now_ms() + ST_WAIT_MS;
	while (!atomic_load(&peer.accepted) && st_now_ms() < end)
		usleep(10000);
	assert_true(atomic_load(&peer.accepted));
	assert_int_equal(write(m, "hello\r", 6), 6);
	screen = pty_screen(m);
	st = st_tool_wait(pid, ST_WAIT_MS);
	if (st != 0)
		fail_msg("relay exited %d; the console showed: %s", st, screen);
	assert_int_equal(peer.len, 7);
	assert_memory_equal(peer.line, "hello\r\n", 7);
	/* Every line, in order, and the last. */
	p = screen;
	for (i = 0; i < CONSOLE_LINES; i++) {
		char want[16];

		snprintf(want, sizeof want, "line %05d", i);
		p = strstr(p, want);
		if (p == NULL)
			fail_msg("the console lacks \"%s\"", want);
		p += strlen(want);
	}
	assert_non_null(strstr(p, "end-of-reply"));
	st_server_stop(srv);
	close(m);
	free(screen);
	free(kind);
	free(kind_file);
	free(slave);
	free(ep);
}

static void test_pipe_wait_gives_up(void **state)
{
	ST_WINE_ONLY();
	char *name = pipe_name("never");

	(void)state;
	wait_gives_up("pipe", name);
	free(name);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		ST_TEST(test_tcp_echo),
		ST_TEST(test_tcp_half_close),
		ST_TEST(test_unix_echo),
		ST_TEST(test_unix_half_close),
		ST_TEST(test_endpoint_ends_first),
		ST_TEST(test_wait_unix),
		ST_TEST(test_wait_gives_up),
		ST_TEST(test_refused),
		ST_TEST(test_assuan),
		ST_TEST(test_missing_unix),
		ST_TEST(test_socket_stdio),
		ST_TEST(test_pipe_echo),
		ST_TEST(test_pipe_half_close),
		ST_TEST(test_pipe_to_daemon),
		ST_TEST(test_pipe_wait),
		ST_TEST(test_pipe_busy),
		ST_TEST(test_overlapped_stdio),
		ST_TEST(test_file_stdio),
		ST_TEST(test_console_stdio),
		ST_TEST(test_pipe_wait_gives_up),
	};
	int rc;

	st_init();
	/* SL_TEST_FILTER=test_pipe* runs the matching tests only. */
	if (getenv("SL_TEST_FILTER") != NULL)
		cmocka_set_test_filter(getenv("SL_TEST_FILTER"));
	rc = cmocka_run_group_tests_name(st_wine() ? "relay-wine" : "relay",
					 tests, NULL, NULL);
	st_cleanup();
	return rc;
}
