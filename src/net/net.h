/*
 * Asynchronous byte streams and listeners, completion-style: start an
 * operation, get its callback on the stream's own loop.  POSIX implements
 * it over the readiness watchers of src/loop (TCP and Unix sockets are both
 * descriptors); Windows implements it over IOCP (sockets and named pipes are
 * both overlapped handles).  The proxy layer sees only this header.
 *
 * Rules, as in libuv:
 * - Every function returns 0 or a negative errno value (-ECONNREFUSED, ...;
 *   the SL_E* codes below for what errno has no name for).  A function that
 *   takes a callback and returns an error never calls that callback.
 * - A callback is never called from inside the function that started the
 *   operation; it runs later, from the loop.
 * - A stream belongs to one loop; all calls on it are made on that loop's
 *   thread.  Listener functions marked "any thread" are the exception.
 * - A stream that was returned to the caller must be closed with
 *   sl_stream_close(); its memory is freed after its close callback.
 */
#ifndef SL_NET_H
#define SL_NET_H

#include <stddef.h>
#include <stdint.h>

#include "addr.h"
#include "endpoint.h"
#include "loop/loop.h"

#define SL_EOF (-4095)      /* end of stream, as a read "error" */
#define SL_ERESOLVE (-4094) /* host name did not resolve */
#define SL_EUNSUPP (-4093)  /* endpoint kind not available on this OS */
#define SL_EFWD (-4092)     /* forwarding cannot go on; nothing was lost */
#define SL_ESRCFAMILY (-4091) /* the source address and the destination are
			       * of two families (IPv4, IPv6) */
#define SL_EASSUAN (-4090) /* an assuan: file holds no port and nonce */

/* Text for any error this API returns (negative errno or SL_E*). */
const char *sl_strerror(int err);

/*
 * Process-wide setup: resolver thread, SIGPIPE ignored (POSIX), WSAStartup
 * (Windows).  Call once before anything else here; sl_net_shutdown() at exit.
 */
int sl_net_init(void);
void sl_net_shutdown(void);

/*
 * Host names: answers are kept and looked up again in the background once
 * older than ms (default 10 s); a connect never waits for such a refresh,
 * and a refresh that fails keeps the last good addresses.  Any thread.
 */
void sl_net_set_resolve_interval(uint64_t ms);
/* Look host up now, in the background, so the first connect finds the
 * answer ready (and refresh it when old).  Any thread. */
void sl_net_prefetch(const char *host);

/*
 * The certificates the OS trusts as roots for TLS servers: add runs once
 * for each, with its DER bytes (valid only during the call); a negative
 * return from add stops and is returned.  Windows: the ROOT stores of the
 * machine and of the account, each root once, those valid for server
 * authentication and not expired.  The count handed to add, or -errno:
 * -ENOSYS where the OS keeps no such store (POSIX: OpenSSL's default
 * paths hold the roots).  Any thread; it may take a while (one call per
 * TLS context).
 */
int sl_os_trusted_roots(int (*add)(const unsigned char *der, size_t len,
				   void *arg),
			void *arg);

typedef struct sl_stream sl_stream;
typedef struct sl_listener sl_listener;

typedef struct sl_buf {
	char *base;
	size_t len;
} sl_buf;

/* ---- streams ------------------------------------------------------------ */

/* Give the read a buffer; buf->len = 0 makes the read fail with -ENOBUFS. */
typedef void (*sl_alloc_cb)(sl_stream *s, size_t suggested, sl_buf *buf);
/*
 * nread > 0: that many bytes are in buf->base.  nread == SL_EOF: the peer
 * shut down its write side (reading stops by itself).  nread < 0: error
 * (reading stops by itself).  nread == 0: nothing read; buf is returned.
 */
typedef void (*sl_read_cb)(sl_stream *s, ptrdiff_t nread, const sl_buf *buf);

typedef struct sl_write_req sl_write_req;
typedef void (*sl_write_cb)(sl_write_req *req, int status);

/* Embedded by the caller; fields below `data` belong to the implementation. */
struct sl_write_req {
	sl_write_cb cb;
	void *data;
	sl_stream *stream;
	const char *buf;
	size_t len;
	size_t done;
	sl_write_req *next;
	void *impl[8]; /* room for an OVERLAPPED on Windows */
};

/* A request for len bytes of buf to s, none written yet (what a write
 * call does first; a filter above the streams queues its own with it). */
static inline void sl_write_req_init(sl_write_req *req, sl_stream *s,
				     const void *buf, size_t len,
				     sl_write_cb cb)
{
	req->cb = cb;
	req->stream = s;
	req->buf = buf;
	req->len = len;
	req->done = 0;
	req->next = NULL;
}

typedef void (*sl_connect_cb)(sl_stream *s, int status);
typedef void (*sl_shutdown_cb)(sl_stream *s, int status);
typedef void (*sl_close_cb)(sl_stream *s);

void sl_stream_set_data(sl_stream *s, void *data);
void *sl_stream_get_data(const sl_stream *s);
/*
 * A second slot, for a layer written above this API that takes the
 * stream's callbacks (TLS): the layer's state, while data stays the
 * caller's, so the caller's callbacks read it as for any stream.
 */
void sl_stream_set_layer(sl_stream *s, void *layer);
void *sl_stream_get_layer(const sl_stream *s);
sl_loop *sl_stream_loop(const sl_stream *s);
enum sl_ep_kind sl_stream_kind(const sl_stream *s);

/*
 * Connect to ep (resolving a host name on the resolver thread, never on the
 * loop; every resolved address is tried in turn) within timeout_ms (0 = no
 * timeout).  On 0, *out is a connecting stream and cb runs once with 0 or
 * -errno (-ETIMEDOUT, -ECONNREFUSED, SL_ERESOLVE, -ECANCELED when closed
 * first).  After a failed connect the caller still closes the stream.
 *
 * An assuan: endpoint (libassuan's socket emulation, gpg-agent's on
 * Windows) is read at each connect: its file holds a TCP port on the
 * loopback and a 16-byte nonce; the stream connects to 127.0.0.1 at that
 * port and sends the nonce before cb says it is connected.  A file that
 * cannot be read fails the call (-errno, or SL_EASSUAN for a file of
 * another form).
 */
int sl_stream_connect(sl_loop *loop, const sl_endpoint *ep,
		      uint64_t timeout_ms, sl_connect_cb cb, void *data,
		      sl_stream **out);

/* An assuan: file's port and nonce (what a connect to it sends first):
 * 0, or -errno, or SL_EASSUAN for a file of another form. */
#define SL_ASSUAN_NONCE 16
int sl_assuan_read(const char *path, uint16_t *port,
		   unsigned char nonce[SL_ASSUAN_NONCE]);

/* What a connect may be asked to do besides; zeroed: nothing. */
typedef struct sl_connect_opts {
	/*
	 * TCP: the local address to connect from (bound before the
	 * connect), with its port, or 0 for one the system picks when it
	 * connects (Linux: IP_BIND_ADDRESS_NO_PORT; Windows:
	 * SO_REUSE_UNICASTPORT), so a bind does not hold a port of the
	 * ephemeral range for good.  A destination address of the other
	 * family is not tried (SL_ESRCFAMILY when none is left).  Family
	 * SL_AF_NONE: the system chooses.  Other kinds of endpoint ignore
	 * it.
	 */
	sl_ipaddr source;
} sl_connect_opts;

/* sl_stream_connect() with opts (NULL: none). */
int sl_stream_connect_opts(sl_loop *loop, const sl_endpoint *ep,
			   uint64_t timeout_ms, const sl_connect_opts *opts,
			   sl_connect_cb cb, void *data, sl_stream **out);

/*
 * TCP keepalive (SO_KEEPALIVE), so that a peer that vanished without a
 * word (a host powered off, a NAT that forgot the flow) is found and the
 * stream fails instead of holding its session for ever.  on == 0 turns
 * it off.  idle (seconds of silence before the first probe), interval
 * (seconds between probes) and count (probes unanswered before the
 * connection is dropped): 0 leaves the system's value.  Linux takes
 * idle and interval 1-32767 and count 1-127 (the config checks those).
 */
typedef struct sl_keepalive {
	int on;
	unsigned idle, interval, count;
} sl_keepalive;

/*
 * Set ka on a connected TCP stream; a stream of another kind (a Unix
 * socket, a named pipe) has no keepalive and takes nothing: 0.  Windows
 * sets idle, interval and count one by one where the system has them
 * (Windows 10 1709 and later), else idle and interval together through
 * SIO_KEEPALIVE_VALS, where count is the system's (10) whatever ka says.
 * 0 or -errno.
 */
int sl_stream_set_keepalive(sl_stream *s, const sl_keepalive *ka);

/* Read until sl_stream_read_stop(), EOF or an error. */
int sl_stream_read_start(sl_stream *s, sl_alloc_cb alloc, sl_read_cb cb);
int sl_stream_read_stop(sl_stream *s);

/*
 * Queue len bytes; cb(req, 0) once all are written, or cb(req, -errno).
 * Writes complete in order.  buf must stay valid until cb.
 */
int sl_stream_write(sl_stream *s, sl_write_req *req, const void *buf,
		    size_t len, sl_write_cb cb);

/*
 * Write what can be written now without blocking or queueing.  Returns the
 * number of bytes written (> 0), -EAGAIN when nothing could be written now
 * (also when writes are queued: order is kept), or another -errno.
 *
 * flags SL_WRITE_END_NEXT: the caller shuts this stream down (or closes
 * it) in this loop round, right after.  The transport may then hold the
 * bytes to send them with the end: on Linux TCP (MSG_MORE) the last bytes
 * and the FIN leave in one segment, not two.  Should the end not come in
 * this round, the held bytes are sent at its end.
 */
#define SL_WRITE_END_NEXT 1u
ptrdiff_t sl_stream_try_write(sl_stream *s, const void *buf, size_t len,
			      unsigned flags);

/*
 * In a read callback with bytes (nread > 0): non-zero when the peer's end
 * is already known to follow them, that is, SL_EOF is this stream's next
 * callback unless the callback stops reading.
 */
int sl_stream_end_follows(const sl_stream *s);

/* Bytes queued by sl_stream_write() and not yet written. */
size_t sl_stream_write_queue_size(const sl_stream *s);

/*
 * Forwarding: move bytes from src to dst inside this layer, without handing
 * them to the caller (Linux: splice(2) through a pipe, taken from a
 * per-thread pool only while bytes are in flight), with the same
 * back-pressure as a read/write relay: src is not read while dst cannot
 * take more.  While forwarding, the caller neither reads src nor writes dst.
 *
 * cb(src, n > 0, NULL): n more bytes were written to dst.
 * cb(src, SL_EOF, src): src ended and every byte before the end reached
 *     dst.  Forwarding has stopped; the caller shuts dst down if it wants
 *     the end passed on.
 * cb(src, SL_EFWD, src): forwarding had to stop (no descriptor for a
 *     pipe) with nothing in flight: relay with read/write from here on.
 * cb(src, err < 0, side): an error on side (src or dst); forwarding has
 *     stopped.
 * Closing either stream stops forwarding, without a callback.
 *
 * Returns SL_EUNSUPP where forwarding is not available for these two
 * streams (then relay with read/write), -EINVAL when src is reading,
 * connecting, already forwarding, or dst already receives a forward.
 */
typedef void (*sl_forward_cb)(sl_stream *src, ptrdiff_t n, sl_stream *side);
int sl_stream_forward(sl_stream *src, sl_stream *dst, sl_forward_cb cb);
/* Non-zero when forwarding between these two kinds of stream exists here. */
int sl_stream_can_forward(const sl_stream *src, const sl_stream *dst);

/*
 * The most pipes (two descriptors each) forwarding may hold at once,
 * process-wide; beyond it, forwarding falls back as without descriptors
 * (SL_EFWD).  Default: no limit.  Any thread.
 */
void sl_net_set_pipe_limit(unsigned long n);

/* Shut the write side down once queued writes are written; cb after. */
int sl_stream_shutdown(sl_stream *s, sl_shutdown_cb cb);

/*
 * Close: stop reading, cancel a connect, queued writes and a shutdown (their
 * callbacks run with -ECANCELED), close the handle, then call cb (may be
 * NULL) from the loop; the stream is freed when cb returns.  Safe to call
 * from any callback of the stream.  Calling it twice is a bug.
 */
void sl_stream_close(sl_stream *s, sl_close_cb cb);

/*
 * Like sl_stream_close(), but make the peer see a reset rather than an
 * orderly end where the transport has one (TCP: SO_LINGER 0).
 */
void sl_stream_close_reset(sl_stream *s, sl_close_cb cb);

/*
 * Text names for logs: "127.0.0.1:5000", "[::1]:5000", "unix:/path",
 * "unix:@name", "pipe:\\.\pipe\x".  A Unix peer without a name is shown as
 * "unix:" followed by nothing.  Return 0 or -errno; buf always terminated.
 */
int sl_stream_peer_name(const sl_stream *s, char *buf, size_t len);
int sl_stream_local_name(const sl_stream *s, char *buf, size_t len);

/*
 * The peer's (or this end's) IP address and port, for access lists, PROXY
 * headers and hashing.  A Unix socket or a named pipe has none: family
 * SL_AF_NONE, and 0.  An IPv4 client of a dual-stack listener comes as
 * the IPv4-mapped IPv6 address the OS reports.  0 or -errno.
 */
int sl_stream_peer_addr(const sl_stream *s, sl_ipaddr *out);
int sl_stream_local_addr(const sl_stream *s, sl_ipaddr *out);

/* ---- child processes (exec: upstreams) --------------------------------- */

/*
 * A command run for one session, its standard input and output a stream
 * of the caller's, its standard error read line by line into the log.
 * POSIX: one socketpair (the child's fd 0 and 1) and a pipe (fd 2); the
 * child has no other descriptor, the default signal mask and
 * dispositions, and a process group of its own, so a kill reaches what
 * it started.  A stream shutdown gives the child's stdin its EOF, and
 * the child may still answer.  Windows: three named pipes (stdin and
 * stdout one stream over two handles; the stream's shutdown closes
 * stdin's) and a job object of the child's own, which a kill ends.
 */
typedef struct sl_exec sl_exec;

/* The child ended (reaped).  status: its exit code (>= 0), or minus the
 * signal that killed it.  Not called after sl_exec_release(). */
typedef void (*sl_exec_exit_cb)(sl_exec *x, int status);

typedef struct sl_exec_opts {
	/* argv[0] an absolute path, or a name looked up in PATH; NULL-ended.
	 * No shell is involved. */
	char *const *argv;
	/* What its log lines begin with ("route NAME"): each stderr line
	 * (escaped, at most SL_EXEC_LINE_MAX bytes of it) and its end. */
	const char *log_name;
	sl_exec_exit_cb exit_cb;
	void *data;
} sl_exec_opts;

#define SL_EXEC_LINE_MAX 1024

/*
 * The stderr reader of exec_posix.c and exec_win.c: bytes a child wrote
 * to its stderr go to the log a line at a time ("NAME: stderr: LINE",
 * escaped, a CR before the newline dropped), each line cut at
 * SL_EXEC_LINE_MAX bytes (marked " [cut]", the rest of it dropped), so a
 * child that writes megabytes costs no memory.  And so that one cannot
 * flood the log either, a child's lines are rate-limited: a burst of
 * SL_EXEC_LINES_BURST, then SL_EXEC_LINES_PER_S a second; the lines over
 * it are dropped and counted, and the count goes to the log ("NAME:
 * stderr: N lines dropped ...") before the next line let through, or at
 * the end.  now: the loop's clock, in ms.  sl_exec_lines_end(): the last
 * line, which had no newline, and the count.  A zeroed struct is a new
 * one.  cmdline.c, any OS.
 */
#define SL_EXEC_LINES_BURST 100
#define SL_EXEC_LINES_PER_S 10
typedef struct sl_exec_lines {
	size_t len; /* bytes of the line in line[] */
	int cut;    /* the line passed the bound: rest dropped */
	uint64_t tat;          /* the limit's next free slot (ms; GCRA) */
	unsigned long dropped; /* lines over the limit, not yet logged */
	char line[SL_EXEC_LINE_MAX];
} sl_exec_lines;
void sl_exec_lines_take(sl_exec_lines *l, const char *name, const char *p,
			size_t n, uint64_t now);
void sl_exec_lines_end(sl_exec_lines *l, const char *name, uint64_t now);

/*
 * The process-wide list of exec_*.c's children not yet freed, so that
 * sl_net_shutdown() finds what the loops left: add and del under its
 * lock, any thread; sl_exec_links_take() empties it and returns what it
 * held (once no loop runs).  cmdline.c, any OS.
 */
typedef struct sl_exec_link {
	struct sl_exec_link *prev, *next;
	sl_exec *x;
} sl_exec_link;
void sl_exec_link_add(sl_exec_link *l, sl_exec *x);
void sl_exec_link_del(sl_exec_link *l);
sl_exec_link *sl_exec_links_take(void);

/*
 * Start the command on loop (the calling thread's).  On 0, *out is the
 * child and *stream a connected stream to its stdin and stdout (closed
 * by the caller as any stream).  -errno (-ENOENT: no such command) with
 * nothing started.
 */
int sl_exec_spawn(sl_loop *loop, const sl_exec_opts *o, sl_exec **out,
		  sl_stream **stream);

void *sl_exec_get_data(const sl_exec *x);
long sl_exec_pid(const sl_exec *x);

/*
 * The caller is done with x (no callback from now on): a child still
 * running timeout_ms later (0: now) is killed (SIGTERM to its group,
 * SIGKILL a second later; Windows: TerminateJobObject) and reaped, and
 * x frees itself.  sl_net_shutdown() kills and reaps every child left.
 */
void sl_exec_release(sl_exec *x, uint64_t timeout_ms);

/* "exited 3", "killed by signal 9" (Windows: "killed") for an exit_cb
 * status. */
void sl_exec_status_text(int status, char *buf, size_t len);

/*
 * The Windows command line (UTF-8) that the C runtime and
 * CommandLineToArgvW split back into argv (NULL-ended): arguments quoted
 * where they must be, backslashes doubled before a quote.  The length,
 * or -EINVAL (an empty program name, or one with a quote, which no
 * command line can carry), or -ENAMETOOLONG when it does not fit in len
 * bytes with its NUL (buf then holds what fit).  Any OS, any thread.
 */
int sl_win_cmdline(char *const *argv, char *buf, size_t len);

/* ---- listeners ---------------------------------------------------------- */

typedef struct sl_listen_opts {
	int backlog;       /* 0: default (511) */
	/* SL_EP_UNIX only (ignored elsewhere): */
	int mode;          /* file mode of the socket, -1: default (umask) */
	const char *owner; /* user name or numeric uid, NULL: unchanged */
	const char *group; /* group name or numeric gid, NULL: unchanged */
	/* SL_EP_PIPE only: */
	const char *security; /* SDDL string, NULL: default */
	/* The endpoint is this process's own running listener, which the new
	 * one replaces (a reload changed what the endpoint keeps, e.g. its
	 * security): a pipe joins the name the running one holds. */
	int replace;
} sl_listen_opts;

/*
 * Admission: may the listener accept one more connection?  Called on the
 * accepting loop before each accept.  Returning 0 pauses the listener
 * (connections wait in the kernel's backlog) until sl_listener_resume().
 * Returning 1 reserves room for one connection; *token (NULL unless set)
 * then reaches the accept callback with that connection.  Reserving here,
 * not when the connection arrives on its loop, keeps a limit exact while
 * several accepted connections are on their way to other loops.
 */
typedef int (*sl_accept_gate)(sl_listener *l, void **token);

/*
 * Called on the loop the new stream belongs to, with the gate's token.
 * s == NULL: a reservation found no connection (the backlog was empty, or
 * the connection was lost on its way); undo it.  That call comes from the
 * accepting loop, and only when there is a gate.
 */
typedef void (*sl_accept_cb)(sl_listener *l, sl_stream *s, void *token);

/*
 * Create, bind and listen, without accepting yet (so privileged ports and
 * paths can be bound before a privilege drop).  A Unix socket path that
 * exists but has nobody listening (stale) is replaced; a live one fails with
 * -EADDRINUSE.  With opts->owner or ->group, the socket gets them in a
 * private directory beside its path and is then linked to the path: no
 * link there is followed, and what appeared there meanwhile is not
 * replaced (-EEXIST).  err gets a message for the operator on failure.
 */
int sl_listener_open(sl_listener **out, const sl_endpoint *ep,
		     const sl_listen_opts *opts, char *err, size_t errlen);

/*
 * What sl_listener_open() would do, without changing the filesystem (for
 * sluice -t): a TCP address, a Linux abstract socket or a named pipe is
 * opened and closed at once (that creates no file); a Unix socket path is
 * only looked at, and nothing is created, removed or chowned.  0 with what
 * opening would do in msg ("" when there is nothing to say), or the error
 * opening would meet (-EADDRINUSE: another process listens there) with
 * the message in msg.
 */
int sl_listener_check(const sl_endpoint *ep, const sl_listen_opts *opts,
		      char *msg, size_t msglen);

/*
 * systemd socket activation, as sd_listen_fds_with_names(3) reads it: when
 * LISTEN_PID is this process, LISTEN_FDS descriptors from 3 on are
 * listening sockets systemd passed, named by LISTEN_FDNAMES (a ':'
 * separated list; "unknown" for a missing name).  sl_listener_inherit()
 * takes them (FD_CLOEXEC, so no child inherits them) into a table kept
 * for the life of the process, and unsets the three variables, so that
 * children do not take them as theirs.  Call once, before any thread and
 * before fork()ing a daemon (LISTEN_PID is the pid systemd started).  The
 * number of descriptors taken (0: not socket-activated, or LISTEN_PID is
 * another process's), or -EINVAL with err set when LISTEN_FDS is not a
 * count of open descriptors.  POSIX; elsewhere 0.
 *
 * A systemd: endpoint is opened from this table: sl_listener_open()
 * takes a duplicate of the descriptor the endpoint names, after checking
 * that it is a listening stream socket (TCP or Unix) and, by name, that
 * exactly one descriptor has that name; closing the listener closes the
 * duplicate only.  The socket itself can never be opened again, so it
 * stays open in the table whatever reloads do; while no listener holds
 * it, connections wait in its backlog.
 */
int sl_listener_inherit(char *err, size_t errlen);

/* Non-zero when sl_listener_inherit() found sockets passed to us. */
int sl_listener_activated(void);

/*
 * The inherited sockets no listener has taken so far, as "NAME (position
 * N)" joined by ", " into buf (truncated to len); their number.
 */
size_t sl_listener_unused(char *buf, size_t len);

/*
 * Begin accepting.  Accepted connections are spread over the loops of g;
 * cb runs on the loop that owns each new stream.  gate may be NULL.
 * When accept fails for want of descriptors or memory (EMFILE, ENFILE,
 * ENOBUFS, ENOMEM), accepting pauses on a timer and resumes by itself.
 */
int sl_listener_start(sl_listener *l, sl_group *g, sl_accept_cb cb,
		      sl_accept_gate gate, void *data);

void sl_listener_set_data(sl_listener *l, void *data); /* any thread */
void *sl_listener_get_data(const sl_listener *l);      /* any thread */
const sl_endpoint *sl_listener_endpoint(const sl_listener *l);

/* Re-check the gate and accept again if it allows.  Any thread. */
void sl_listener_resume(sl_listener *l);

/* Times accepting paused for want of descriptors/memory (any thread). */
uint64_t sl_listener_fd_pauses(const sl_listener *l);

typedef void (*sl_listener_closed_cb)(sl_listener *l, void *arg);

/*
 * Stop accepting and close.  Any thread.  Connections already accepted are
 * still delivered to the accept callback; done (may be NULL) runs, on some
 * loop thread, after the last one, when no callback of this listener will
 * run again; then the listener is freed.  A Unix socket file the listener
 * created is removed.  A listener that was never started may be closed too
 * (done then runs on the calling thread).
 */
void sl_listener_close(sl_listener *l, sl_listener_closed_cb done, void *arg);

#endif
