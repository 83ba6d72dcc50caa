/*
 * Test support for the end-to-end tests: loopback sockets with hard
 * timeouts, an echo/collect server on its own thread, deterministic data
 * streams, the real sluice daemon started on a generated config, checks
 * shared by the tests, and a cleanup after each test.
 *
 * Everything here fails loudly: the set-up functions with st_fail
 * (message and exit 1), since a test harness that cannot set itself up
 * must not report a pass; the checks by failing the running cmocka test.
 * Socket and process calls are kept behind these functions; in wine mode
 * (st_wine) the daemon functions drive sluice.exe instead.
 */
#ifndef SL_TEST_SUPPORT_H
#define SL_TEST_SUPPORT_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef int st_sock;
#define ST_BAD_SOCK (-1)

/* No progress at all for this long is a failure. */
#define ST_STALL_MS 20000
/* What must happen at all happens within this (a bound on a hang, never
 * a claim about speed). */
#define ST_WAIT_MS 20000

/* Print "support: " + message and exit 1. */
void st_fail(const char *fmt, ...)
#if defined(__GNUC__)
	__attribute__((format(SL_FMT_PRINTF, 1, 2), noreturn))
#endif
	;

/* Once per test program: SIGPIPE ignored, descriptor limit raised. */
void st_init(void);

/* A scratch directory for this test program, removed by st_cleanup(). */
const char *st_tmpdir(void);
void st_cleanup(void);

/* Monotonic milliseconds. */
uint64_t st_now_ms(void);
void st_sleep_ms(unsigned ms);

/* ---- sockets (blocking, with timeouts where they wait) ---------------- */

/* Listen on 127.0.0.1 at a kernel-chosen port; *port gets it. */
st_sock st_listen_tcp(uint16_t *port, int backlog);
/* Listen on 127.0.0.1 at the given port (again, after a server there
 * stopped); st_fail when it cannot. */
st_sock st_listen_tcp_at(uint16_t port, int backlog);
/* Listen on a Unix socket path (replaced if it exists). */
st_sock st_listen_unix(const char *path, int backlog);
/* A loopback port nothing listens on, kept from other connect() and
 * bind(0) callers until this program exits (see support.c). */
uint16_t st_free_port(void);

/* Connect, or return ST_BAD_SOCK with errno set (no st_fail). */
st_sock st_connect_tcp(uint16_t port);
st_sock st_connect_unix(const char *path);
/* Connect to [::1]:port; ST_BAD_SOCK with errno set when that fails (no
 * IPv6 loopback, nothing listening). */
st_sock st_connect_tcp6(uint16_t port);
/*
 * Connect to 127.0.0.1:port from the loopback address src ("127.0.0.2"),
 * so one test can be two clients an access list tells apart.  nonblock:
 * return with the connect under way.  ST_BAD_SOCK with errno set.
 */
st_sock st_connect_tcp_from(const char *src, uint16_t port, int nonblock);
/* Retry connecting for up to timeout_ms; st_fail if it never works. */
st_sock st_connect_tcp_retry(uint16_t port, unsigned timeout_ms);

/* The local port of a TCP socket (what the peer sees as ours). */
uint16_t st_local_port(st_sock s);
void st_close(st_sock s);
void st_shutdown_wr(st_sock s);
/* The same without st_fail (0, or -1 when the connection is gone): for
 * servers, whose peers may reset at any time. */
int st_try_shutdown_wr(st_sock s);
/* Send everything or st_fail. */
void st_send_all(st_sock s, const void *buf, size_t len);
/*
 * Send what the socket takes now, at most len bytes, without st_fail: the
 * count, or -1 on an error (a peer that reset the connection, say).
 */
ssize_t st_send_some(st_sock s, const void *buf, size_t len);
/*
 * Receive up to cap bytes, waiting at most timeout_ms for the first.
 * Returns > 0 bytes, 0 at EOF, -1 on a connection error (reset), and -2 on
 * timeout.
 */
ssize_t st_recv_some(st_sock s, void *buf, size_t cap, unsigned timeout_ms);
/* Receive exactly len bytes or st_fail (EOF, error or timeout). */
void st_recv_all(st_sock s, void *buf, size_t len, unsigned timeout_ms);
/*
 * Wait for the peer to end the connection: 0 at EOF, -1 on reset, -2 on
 * timeout, 1 when data arrived instead.
 */
int st_wait_closed(st_sock s, unsigned timeout_ms);

/* ---- deterministic data ------------------------------------------------ */

/*
 * A byte stream from a seed: the same seed gives the same bytes.  Every
 * fill but the last of a stream must be a multiple of 8 bytes long.
 */
typedef struct st_rng {
	uint64_t s;
} st_rng;
void st_rng_init(st_rng *r, uint64_t seed);
void st_rng_fill(st_rng *r, void *buf, size_t len);

/*
 * Send `total` bytes of the stream `seed` on s while receiving `total`
 * bytes and checking them against the stream `expect_seed`, both at once
 * (a sender thread), then shut down the write side and expect EOF.
 * Returns 0 when every byte matched, or st_fail with the first difference.
 * The wait for any progress is bounded by stall_ms.
 */
int st_exchange(st_sock s, uint64_t seed, uint64_t expect_seed,
		uint64_t total, unsigned stall_ms);

/* ---- servers ------------------------------------------------------------ */

enum st_server_mode {
	ST_ECHO,    /* echo every byte; EOF in -> echo the rest, then shut down */
	ST_COLLECT, /* read to EOF, then send an 8-byte count + `reply` bytes */
	ST_HOLD,    /* accept and never read (a black hole for data) */
};

typedef struct st_server st_server;

/* Serve on the listening socket l (taken over) from its own thread. */
st_server *st_server_start(st_sock l, enum st_server_mode mode,
			   uint64_t reply);
/*
 * A server that runs fn(c, arg) on a thread of its own for every
 * connection c it accepts on l (taken over).  The server owns c: it is
 * closed when fn returns.  st_server_stop() shuts every open connection
 * down (fn's receives then see EOF) and joins the threads, so fn must
 * return once its socket ends.
 */
typedef void (*st_conn_fn)(st_sock c, void *arg);
st_server *st_server_start_fn(st_sock l, st_conn_fn fn, void *arg);
/* Connections accepted so far. */
unsigned st_server_accepted(st_server *srv);
/* Connections currently open. */
unsigned st_server_open(st_server *srv);
void st_server_stop(st_server *srv);

/* ---- the daemon ---------------------------------------------------------- */

typedef struct st_daemon st_daemon;

/*
 * With SLUICE_VALGRIND=1 in the environment the daemon runs under
 * valgrind's memcheck, and a memcheck error or a definite leak is its exit
 * status 97 (a test that waits for a clean exit fails, with the log).
 *
 * Write yaml to a config file and start `$SLUICE_BIN -d -c FILE` with its
 * stderr in a log file; return once it logs that it started (st_fail if it
 * exits or does not within 20 s).
 */
st_daemon *st_daemon_start(const char *yaml);
/* The same, with the daemon's descriptor limit (soft and hard) at nofile. */
st_daemon *st_daemon_start_limited(const char *yaml, unsigned nofile);
/*
 * The same, started as `wrap... $SLUICE_BIN -d -c FILE` (wrap: a
 * NULL-terminated argv prefix, such as unshare(1) and a shell line that
 * ends in exec "$@").  The wrapper must exec the daemon in place, so that
 * st_daemon_pid() is the daemon's pid.  Not under wine or valgrind.
 */
st_daemon *st_daemon_start_wrapped(const char *yaml, const char *const *wrap);
/* Replace the config file's contents (for a reload). */
void st_daemon_write_config(st_daemon *d, const char *yaml);
pid_t st_daemon_pid(const st_daemon *d);
/* Wine mode: sluice.exe's Windows process id. */
long st_daemon_winpid(const st_daemon *d);
void st_daemon_signal(st_daemon *d, int sig);
/* Wait for exit; return the exit status, or -1 when it did not in time. */
int st_daemon_wait(st_daemon *d, unsigned timeout_ms);
/* Whole log so far (malloc'd). */
char *st_daemon_log(const st_daemon *d);
/* Occurrences of needle in the log. */
unsigned st_daemon_log_count(const st_daemon *d, const char *needle);
/* Wait until the log holds needle at least n times; 0 or -1 on timeout. */
int st_daemon_wait_log(const st_daemon *d, const char *needle, unsigned n,
		       unsigned timeout_ms);
/* SIGKILL if still running, reap, remove its files. */
void st_daemon_free(st_daemon *d);
/* The logs of the daemons the running test has not freed, on stderr. */
void st_print_logs(void);

/*
 * Wine mode: with SLUICE_WINE_EXE set (the path of sluice.exe), the daemon
 * functions run that under wine, and signals become its named events
 * (SIGTERM/SIGINT: sluice-PID-stop, SIGHUP: -reload, SIGUSR1: -reopen),
 * set by SLUICE_WINE_TOOL (sltool.exe).  st_wine() returns the .exe path,
 * NULL when not in wine mode.
 */
const char *st_wine(void);
/* Run sltool.exe args... under wine, stdin from in, stdout to out (NULL:
 * the null device); its pid. */
pid_t st_tool_start(const char *in, const char *out, const char *arg, ...);
/* Its exit status, or -1 (and killed) after timeout_ms. */
int st_tool_wait(pid_t pid, unsigned timeout_ms);
void st_tool_kill(pid_t pid);

/*
 * Start `$SLUICE_BIN args...` (NULL-terminated; sluice.exe in wine mode)
 * with in, out and err as its descriptors 0, 1 and 2 (err -1: ours); its
 * pid, ended as an sltool's is (st_tool_wait, st_tool_kill, the
 * teardown).
 */
pid_t st_sluice_start(int in, int out, int err, const char *arg, ...);

/*
 * Run `$SLUICE_BIN args...` (NULL-terminated) to completion with stdout and
 * stderr captured into *out (malloc'd); return its exit status.
 */
int st_run_sluice(char **out, const char *arg, ...);

/*
 * Run a program of this machine (found in PATH, never under wine) with
 * args... (NULL-terminated), stdout and stderr captured into *out
 * (malloc'd), within 20 s; its exit status (127: it could not be run).
 */
int st_run_cmd(char **out, const char *prog, ...);
/* The same with the words in a NULL-terminated array. */
int st_run_argv(char **out, const char *const *argv);

/* Write text to a new file in st_tmpdir() named name; the path, malloc'd. */
char *st_write_tmp(const char *name, const char *text);
/* A whole file (malloc'd), or NULL when it cannot be read. */
char *st_read_file(const char *path);

/* ---- admin listener and echo helpers (shared by the end-to-end tests) ---- */

/*
 * GET path from an HTTP listener on 127.0.0.1:port and read the answer to
 * its EOF (the admin listener answers with Connection: close); the whole
 * answer, headers included (malloc'd).  Fails the program when the answer
 * stalls for 20 s or the connection is reset.
 */
char *st_http_get(uint16_t port, const char *path);
/*
 * The value of one series ("name{labels}" exactly as written) in a
 * Prometheus text answer; -1 when it is not there.
 */
long long st_metric(const char *text, const char *series);
/* Echo until EOF, then pass the EOF on (shutdown); returns at any end. */
void st_echo_rest(st_sock c);

/* ---- the config builder (tests/support/cfg.c) ------------------------------ */

/*
 * A config for the daemon under test, built from the keys and values the
 * test gives: values are YAML as they stand (a flow list, a quoted string),
 * formatted with printf, and written out in block style.  Setting a key
 * again replaces its value.  For example
 *
 *	st_cfg *c = st_cfg_new();
 *	st_cfg_set(c, "threads", "2");
 *	st_cfg_route(c, "web", lport, uport);
 *	st_cfg_route_set(c, "idle_timeout", "400ms");
 *	st_cfg_upstream(c, "tcp://127.0.0.1:%u", backup);
 *	st_cfg_upstream_set(c, "backup", "true");
 *	yaml = st_cfg_done(c);
 *
 * makes
 *
 *	threads: 2
 *	routes:
 *	  - name: web
 *	    listen: tcp://127.0.0.1:LPORT
 *	    upstreams:
 *	      - tcp://127.0.0.1:UPORT
 *	      - address: tcp://127.0.0.1:BACKUP
 *	        backup: true
 *	    idle_timeout: 400ms
 *
 * Configs whose text a test checks itself (a config error's line and
 * column) stay written out by hand.
 */
typedef struct st_cfg st_cfg;

st_cfg *st_cfg_new(void);
void st_cfg_free(st_cfg *c);
/* A top-level key (before routes:). */
void st_cfg_set(st_cfg *c, const char *key, const char *fmt, ...)
#if defined(__GNUC__)
	__attribute__((format(SL_FMT_PRINTF, 3, 4)))
#endif
	;
/*
 * A new route, the one the calls below add to until the next: it listens
 * on tcp://127.0.0.1:lport (0: st_cfg_listen says where) and forwards to
 * tcp://127.0.0.1:uport (0: st_cfg_upstream adds each upstream).
 */
void st_cfg_route(st_cfg *c, const char *name, uint16_t lport, uint16_t uport);
/* A key of the route (idle_timeout, balance, health, ...). */
void st_cfg_route_set(st_cfg *c, const char *key, const char *fmt, ...)
#if defined(__GNUC__)
	__attribute__((format(SL_FMT_PRINTF, 3, 4)))
#endif
	;
/* The route's listen address, in place of tcp://127.0.0.1:lport. */
void st_cfg_listen(st_cfg *c, const char *fmt, ...)
#if defined(__GNUC__)
	__attribute__((format(SL_FMT_PRINTF, 2, 3)))
#endif
	;
/* A key of the route's listener (backlog, accept_proxy, ...): the listen
 * becomes a mapping with the address under address:. */
void st_cfg_listen_set(st_cfg *c, const char *key, const char *fmt, ...)
#if defined(__GNUC__)
	__attribute__((format(SL_FMT_PRINTF, 3, 4)))
#endif
	;
/* One more upstream of the route, by its address. */
void st_cfg_upstream(st_cfg *c, const char *fmt, ...)
#if defined(__GNUC__)
	__attribute__((format(SL_FMT_PRINTF, 2, 3)))
#endif
	;
/* A key of the route's last upstream (weight, backup, send_proxy): that
 * upstream becomes a mapping with its address under address:. */
void st_cfg_upstream_set(st_cfg *c, const char *key, const char *fmt, ...)
#if defined(__GNUC__)
	__attribute__((format(SL_FMT_PRINTF, 3, 4)))
#endif
	;
/* The config so far (malloc'd); c stays as it is, to change and write
 * out again (for a reload). */
char *st_cfg_yaml(const st_cfg *c);
/* The same, and c freed: a config's last text. */
char *st_cfg_done(st_cfg *c);
/* st_daemon_start() on c's last text; c and the text freed. */
st_daemon *st_daemon_start_cfg(st_cfg *c);

/* ---- checks (tests/support/check.c) ------------------------------------- */

/*
 * These fail the running cmocka test (its teardown then ends what it
 * started); where a daemon's log says why, it goes to stderr first.
 */

/* SIGTERM, then a clean exit (status 0) within ST_WAIT_MS; freed. */
void st_daemon_stop(st_daemon *d);
/* The log holds needle at least n times within ST_WAIT_MS. */
void st_wait_log(const st_daemon *d, const char *needle, unsigned n);
/* The same with a printf format for the needle. */
void st_wait_logf(const st_daemon *d, unsigned n, const char *fmt, ...)
#if defined(__GNUC__)
	__attribute__((format(SL_FMT_PRINTF, 3, 4)))
#endif
	;
/* msg out on c, the same back (an echo upstream behind it). */
void st_echo(st_sock c, const char *msg);
/* One short session to 127.0.0.1:port, which must be listening: msg out,
 * the same back, closed. */
void st_echo_once(uint16_t port, const char *msg);
/* The same with the connect retried for up to 10 s; the session stays
 * open (the socket). */
st_sock st_echo_open(uint16_t port, const char *msg);
/* The value of a series (a printf format) in the admin listener's
 * /metrics at 127.0.0.1:aport; -1 when it is not there. */
long long st_metric_at(uint16_t aport, const char *fmt, ...)
#if defined(__GNUC__)
	__attribute__((format(SL_FMT_PRINTF, 2, 3)))
#endif
	;
/* Poll /metrics until the series has the value want (ST_WAIT_MS). */
void st_wait_metric(uint16_t aport, long long want, const char *fmt, ...)
#if defined(__GNUC__)
	__attribute__((format(SL_FMT_PRINTF, 3, 4)))
#endif
	;

/* ---- cleanup after each test ---------------------------------------------- */

/*
 * Every daemon, server and sltool process is on record from its start
 * (st_daemon_start*, st_server_start*, st_tool_start) until the test ends
 * it (st_daemon_free, st_server_stop, st_tool_wait or st_tool_kill).  A
 * failed assertion leaves the test at once, past its own stops: this
 * teardown ends what is still on record, daemons first (killed, as
 * st_daemon_free does), then servers, then sltools.  Whatever a test
 * ended itself is off the record and not touched again.
 *
 * Start and end these from the test's own thread.
 */
int st_teardown(void **state);
/* A cmocka test with that teardown (in a file that includes cmocka.h). */
#define ST_TEST(f) cmocka_unit_test_teardown(f, st_teardown)
/*
 * First in a test that needs the native daemon (Unix sockets, the -d
 * fork, prlimit): skipped where the tests drive sluice.exe under wine.
 * ST_WINE_ONLY: first in one that needs sluice.exe (named pipes).  One
 * list of tests then serves both runs.
 */
#define ST_NATIVE_ONLY()                                                       \
	do {                                                                   \
		if (st_wine() != NULL)                                         \
			skip();                                                \
	} while (0)
#define ST_WINE_ONLY()                                                         \
	do {                                                                   \
		if (st_wine() == NULL)                                         \
			skip();                                                \
	} while (0)

/* malloc'd vprintf; ap is used up. */
char *st_vfmt(const char *fmt, va_list ap)
#if defined(__GNUC__)
	__attribute__((format(SL_FMT_PRINTF, 1, 0)))
#endif
	;
/* malloc'd printf. */
char *st_fmt(const char *fmt, ...)
#if defined(__GNUC__)
	__attribute__((format(SL_FMT_PRINTF, 1, 2)))
#endif
	;

#endif
