/*
 * The contract between stream_common.c (what streams do alike on every
 * platform, as libuv's uv-common.c) and the platform's streams
 * (stream_posix.c, stream_win.c and their neighbours).  Nothing outside
 * src/net includes this file.
 *
 * Every platform's struct sl_stream starts with a struct sl_stream_base:
 * the common code sees a stream through it and never learns the rest.
 * The platform code reaches the same fields directly (s->b.flags), so the
 * data path pays nothing for the split.
 */
#ifndef SL_NET_STREAM_COMMON_H
#define SL_NET_STREAM_COMMON_H

#include <stddef.h>

#include "net.h"
#include "resolver.h"

/*
 * Flags that mean the same on every platform.  A platform numbers its own
 * ST_OS(0), ST_OS(1), ...
 */
enum {
	ST_CONNECTING = 1u << 0, /* resolving or connecting */
	ST_READING = 1u << 1,
	ST_SHUT_WANTED = 1u << 2, /* shutdown requested, writes not done */
	ST_SHUT_DONE = 1u << 3,
	ST_CLOSING = 1u << 4,
	ST_TASK_QUEUED = 1u << 5,
};
#define ST_OS(n) (1u << (6 + (n)))

/* The fields both platforms' streams have; what the data path touches
 * first. */
struct sl_stream_base {
	unsigned flags; /* ST_* */
	enum sl_ep_kind kind;
	sl_loop *loop;
	void *data;
	void *layer; /* sl_stream_set_layer() */

	sl_alloc_cb alloc_cb;
	sl_read_cb read_cb;
	size_t wq_bytes; /* given to sl_stream_write, not yet written */
	int write_err;   /* sticky after a failed write */

	sl_shutdown_cb shutdown_cb;
	int shutdown_status;
	int shutdown_ready;

	/* Connecting: the callback, its status once known, and the
	 * addresses a name resolved to, tried in turn. */
	sl_connect_cb connect_cb;
	int connect_status;
	int connect_ready;
	sl_resolve *resolve;
	struct sl_addr *addrs;
	size_t naddrs, next_addr;
	int last_err; /* of the last address tried */
	sl_ipaddr source; /* sl_connect_opts: to connect from */
	struct assuan_hello *assuan; /* an assuan: connect's nonce to send */
	sl_timer timer; /* the connect timeout */

	sl_close_cb close_cb;
	sl_task task; /* runs the completions, the close callback, frees */
};

/* The kind of endpoint besides TCP that streams connect to here. */
#ifdef _WIN32
#define SL_EP_LOCAL SL_EP_PIPE
#else
#define SL_EP_LOCAL SL_EP_UNIX
#endif

/* The base of any stream: its first member (C11 6.7.2.1). */
static inline struct sl_stream_base *sl_stream_base(sl_stream *s)
{
	return (struct sl_stream_base *)(void *)s;
}

static inline const struct sl_stream_base *
sl_stream_cbase(const sl_stream *s)
{
	return (const struct sl_stream_base *)(const void *)s;
}

/*
 * A new stream's common fields: loop, kind, the connect timer, and the
 * stream's task, which runs fn.  The platform's sl_os_stream_new calls it.
 */
void sl_stream_init(sl_stream *s, sl_loop *loop, enum sl_ep_kind kind,
		    sl_task_fn fn);

/*
 * What writing, starting to read and asking for a shutdown do to a stream
 * alike, after the platform's own checks and before its own start; inline,
 * so the data path makes no call for them.
 */

/* Read with alloc and cb from now on; 1 when s was not reading yet (the
 * platform starts now), 0 when it was. */
static inline int sl_stream_read_set(struct sl_stream_base *b,
				     sl_alloc_cb alloc, sl_read_cb cb)
{
	b->alloc_cb = alloc;
	b->read_cb = cb;
	if (b->flags & ST_READING)
		return 0;
	b->flags |= ST_READING;
	return 1;
}

/*
 * The shutdown asked for (ST_SHUT_WANTED) fails with err, the error of a
 * write before it; its callback is due, from the stream's task.
 */
static inline void sl_stream_shutdown_fail(struct sl_stream_base *b, int err)
{
	b->flags &= ~ST_SHUT_WANTED;
	b->shutdown_status = err;
	b->shutdown_ready = 1;
}

/*
 * A shutdown asked for, with cb.  A write before it failed: it fails
 * alike, and that error is returned (schedule the task: the callback is
 * due).  Else 0: the platform makes it once no write is left before it.
 */
static inline int sl_stream_shutdown_set(struct sl_stream_base *b,
					 sl_shutdown_cb cb)
{
	b->shutdown_cb = cb;
	b->flags |= ST_SHUT_WANTED;
	if (b->write_err != 0)
		sl_stream_shutdown_fail(b, b->write_err);
	return b->write_err;
}

/*
 * The local address a TCP connect to an address of family (AF_INET,
 * AF_INET6) binds first, from the connect's options: 0 with *len 0 when
 * there is none, 0 with *ss and *len, or SL_ESRCFAMILY when the source is
 * of the other family (that address is not tried).
 */
int sl_connect_source(const sl_stream *s, int family,
		      struct sockaddr_storage *ss, socklen_t *len);

/* ---- what each platform defines for stream_common.c -------------------- */

/*
 * A zeroed stream of kind on loop, through sl_stream_init, with no handle
 * yet.  NULL when out of memory.  Freed with free() while nothing of it
 * has started.
 */
sl_stream *sl_os_stream_new(sl_loop *loop, enum sl_ep_kind kind);

/*
 * Connecting (sl_stream_connect, written once).  The common part resolves
 * a name (or takes a literal), keeps the addresses in b->addrs, starts the
 * timeout and asks the platform:
 *
 * sl_os_connect_local: start a connect to ep of kind SL_EP_LOCAL.  0 with
 *     the one address to try in b->addrs, 1 when the platform connects it
 *     its own way (the connect timeout is then its business), or -errno
 *     with nothing started.
 * sl_os_connect_next: try the addresses from b->next_addr on until one
 *     connects or is in progress, else finish with b->last_err (or
 *     -ECONNREFUSED).  inside: called from sl_stream_connect itself,
 *     where the callback must wait for the loop.
 * sl_os_connect_finish: the connect ended with status (0, -errno); the
 *     callback runs now or from the stream's task.  Called from the loop,
 *     never inside sl_stream_connect.
 * sl_os_connect_timeout: the timeout fired while connecting: drop the
 *     attempt in progress and return 0 (the common part finishes with
 *     -ETIMEDOUT), or return 1 when the attempt will end by itself, the
 *     platform finishing it then.
 */
int sl_os_connect_local(sl_stream *s, const sl_endpoint *ep,
			uint64_t timeout_ms);
void sl_os_connect_next(sl_stream *s, int inside);
void sl_os_connect_finish(sl_stream *s, int status);
int sl_os_connect_timeout(sl_stream *s);

/*
 * The platform's part of closing s, run before anything else of it, while
 * s is not yet marked closing: stop what only the platform runs (a
 * forward, the readiness watcher), close the handle (reset: make the peer
 * see a reset where the transport has one, TCP), end queued writes and a
 * shutdown not yet made with -ECANCELED (now, or when the kernel gives
 * them back), and schedule the stream's task, which runs the callbacks
 * left, then the close callback, and frees.  The common part cancels the
 * connect.
 */
void sl_os_stream_close(sl_stream *s, int reset);

/*
 * The text name (sl_stream_peer_name) and the IP address
 * (sl_stream_peer_addr) of s's peer (peer != 0) or of its own end.  s is
 * not NULL, buf is "" with room for len > 0 bytes, out is zeroed.  0 or
 * -errno (-ENOTCONN: not known, or not connected).
 */
int sl_os_stream_name(const sl_stream *s, int peer, char *buf, size_t len);
int sl_os_stream_addr(const sl_stream *s, int peer, sl_ipaddr *out);

#endif
