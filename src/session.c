/*
 * A session: one accepted client stream paired with one upstream stream on
 * the same loop, relaying bytes both ways.
 *
 * Relay, per direction: read into the loop's shared buffer, write on at
 * once with sl_stream_try_write(); only the part the receiver cannot take
 * now is copied into a pooled buffer and queued, and reading that direction
 * stops until the queued write completes (back-pressure: at most one
 * buffer per direction, whatever the peers do).  EOF on one side becomes a
 * shutdown of the other side's write half once queued data is out; the
 * other direction keeps flowing.  An idle session holds no buffer at all.
 *
 * Every way a session ends goes through session_close(), which closes both
 * streams and, once both are closed, writes the one access-log line.
 */
#include "session.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

enum { C2U = 0, U2C = 1 };

struct dir {
	struct session *sess;
	char *pend;       /* pooled buffer while a write is queued */
	sl_write_req req; /* the one queued write of this direction */
	uint64_t bytes;
	unsigned eof : 1;     /* source sent EOF */
	unsigned writing : 1; /* req is queued */
	unsigned shut : 1;    /* destination's write side shut down */
	unsigned fwd : 1;     /* bytes move by sl_stream_forward() */
};

struct session {
	struct session *prev, *next; /* loop_ctx list */
	struct loop_ctx *lc;
	struct route *route;
	sl_stream *client;
	sl_stream *upstream; /* NULL until a connect is under way */
	struct dir d[2];
	sl_timer timer; /* idle timeout */
	uint64_t start_ms;
	uint64_t last_ms; /* last activity, for the idle timeout */
	unsigned attempts;
	unsigned up_index; /* index into route->upstreams of this attempt */
	int connected;
	int closing;
	int pending_closes;
	const char *reason;
	int err;
	char client_name[128];
};

#define POOL_MAX_FREE 64 /* per loop: 4 MiB of 64k buffers at most */

/* ---- per-loop context --------------------------------------------------- */

int loop_ctx_init(struct loop_ctx *lc, sl_loop *loop, struct sl_proxy *p)
{
	memset(lc, 0, sizeof *lc);
	lc->loop = loop;
	lc->proxy = p;
	lc->pool_size = 16384;
	atomic_init(&lc->abort_posted, 0);
	return 0;
}

void loop_ctx_free(struct loop_ctx *lc)
{
	if (lc == NULL)
		return;
	while (lc->pool != NULL) {
		void *next = *(void **)lc->pool;
		free(lc->pool);
		lc->pool = next;
	}
	free(lc->rbuf);
	lc->rbuf = NULL;
}

static char *buf_get(struct loop_ctx *lc, size_t size)
{
	if (size == lc->pool_size && lc->pool != NULL) {
		void *b = lc->pool;
		lc->pool = *(void **)b;
		lc->pool_len--;
		return b;
	}
	return malloc(size);
}

static void buf_put(struct loop_ctx *lc, char *b, size_t size)
{
	if (b == NULL)
		return;
	if (size == lc->pool_size && lc->pool_len < POOL_MAX_FREE) {
		*(void **)b = lc->pool;
		lc->pool = b;
		lc->pool_len++;
		return;
	}
	free(b);
}

/* ---- close path ----------------------------------------------------------- */

static void session_finish(struct session *s)
{
	struct loop_ctx *lc = s->lc;
	struct route *r = s->route;
	uint64_t dur = sl_loop_now(lc->loop) - s->start_ms;
	const char *up = s->connected || s->attempts > 0
				 ? r->upstream_names[s->up_index]
				 : "-";

	{
		struct sl_access_rec rec = {
			.route = r->name,
			.client = s->client_name,
			.upstream = up,
			.reason = s->reason,
			.error = s->err != 0 ? sl_strerror(s->err) : NULL,
			.bytes_in = s->d[C2U].bytes,
			.bytes_out = s->d[U2C].bytes,
			.duration_ms = dur,
		};

		sl_access(&rec);
	}

	if (s->prev != NULL)
		s->prev->next = s->next;
	else
		lc->sessions = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
	lc->nsessions--;

	proxy_session_gone(lc->proxy, r);
	route_unref(r);
	free(s);
}

static void on_stream_closed(sl_stream *st)
{
	struct session *s = sl_stream_get_data(st);

	if (--s->pending_closes == 0)
		session_finish(s);
}

/*
 * End the session.  abort_peer: the end is abnormal (an error, a deadline),
 * so both peers see a reset rather than an orderly end that could pass for
 * a complete transfer.
 */
static void session_close(struct session *s, const char *reason, int err,
			  int abort_peer)
{
	if (s->closing)
		return;
	s->closing = 1;
	s->reason = reason;
	s->err = err;
	sl_timer_stop(&s->timer);

	s->pending_closes = 1 + (s->upstream != NULL);
	if (abort_peer) {
		sl_stream_close_reset(s->client, on_stream_closed);
		if (s->upstream != NULL)
			sl_stream_close_reset(s->upstream, on_stream_closed);
	} else {
		sl_stream_close(s->client, on_stream_closed);
		if (s->upstream != NULL)
			sl_stream_close(s->upstream, on_stream_closed);
	}
}

static void close_on_error(struct session *s, sl_stream *where, int err)
{
	if (where == s->client)
		session_close(s, "client-error", err, 1);
	else
		session_close(s, "upstream-error", err, 1);
}

/* ---- relay ---------------------------------------------------------------- */

static void on_read(sl_stream *st, ptrdiff_t n, const sl_buf *buf);

static struct dir *dir_from(struct session *s, sl_stream *st)
{
	return st == s->client ? &s->d[C2U] : &s->d[U2C];
}

static sl_stream *dir_src(struct session *s, struct dir *d)
{
	return d == &s->d[C2U] ? s->client : s->upstream;
}

static sl_stream *dir_dst(struct session *s, struct dir *d)
{
	return d == &s->d[C2U] ? s->upstream : s->client;
}

static void on_forward(sl_stream *st, ptrdiff_t n, sl_stream *side);

/* Copying -> forwarding, from inside a read callback with nothing pending. */
static void relay_forward(struct session *s, struct dir *d, sl_stream *src,
			  sl_stream *dst)
{
	int r = sl_stream_read_stop(src);

	if (r == 0)
		r = sl_stream_forward(src, dst, on_forward);
	if (r < 0) {
		close_on_error(s, src, r);
		return;
	}
	d->fwd = 1;
}

static void on_alloc(sl_stream *st, size_t suggested, sl_buf *buf)
{
	struct session *s = sl_stream_get_data(st);
	struct loop_ctx *lc = s->lc;
	size_t want = s->route->buffer_size;

	(void)suggested;
	if (lc->rbuf_len < want) {
		char *nb = realloc(lc->rbuf, want);
		if (nb == NULL) {
			buf->base = NULL;
			buf->len = 0; /* the read fails with -ENOBUFS */
			return;
		}
		lc->rbuf = nb;
		lc->rbuf_len = want;
	}
	buf->base = lc->rbuf;
	buf->len = want;
}

static void on_shutdown(sl_stream *st, int status)
{
	struct session *s = sl_stream_get_data(st);
	struct dir *d = st == s->upstream ? &s->d[C2U] : &s->d[U2C];

	if (status == -ECANCELED || s->closing)
		return;
	if (status < 0 && status != -ENOTCONN) {
		close_on_error(s, st, status);
		return;
	}
	d->shut = 1;
	if (s->d[C2U].shut && s->d[U2C].shut)
		session_close(s, "done", 0, 0);
}

static void dir_shutdown(struct session *s, struct dir *d)
{
	struct dir *o = d == &s->d[C2U] ? &s->d[U2C] : &s->d[C2U];

	/*
	 * The other way is over already: this end is the session's end.
	 * Closing sends the FIN a shutdown would (nothing is queued, nothing
	 * unread), one system call fewer per connection.
	 */
	if (o->shut) {
		d->shut = 1;
		session_close(s, "done", 0, 0);
		return;
	}
	sl_stream *dst = dir_dst(s, d);
	int r = sl_stream_shutdown(dst, on_shutdown);

	if (r < 0)
		close_on_error(s, dst, r);
}

static void on_write(sl_write_req *req, int status)
{
	struct dir *d = req->data;
	struct session *s = d->sess;

	buf_put(s->lc, d->pend, s->route->buffer_size);
	d->pend = NULL;
	d->writing = 0;
	if (status == -ECANCELED || s->closing)
		return;
	if (status < 0) {
		close_on_error(s, dir_dst(s, d), status);
		return;
	}
	s->last_ms = sl_loop_now(s->lc->loop);
	if (d->eof) {
		dir_shutdown(s, d);
		return;
	}
	status = sl_stream_read_start(dir_src(s, d), on_alloc, on_read);
	if (status < 0)
		close_on_error(s, dir_src(s, d), status);
}

static void on_read(sl_stream *st, ptrdiff_t n, const sl_buf *buf)
{
	struct session *s = sl_stream_get_data(st);
	struct dir *d = dir_from(s, st);
	sl_stream *dst;
	ptrdiff_t w;
	size_t rest;
	int r;

	if (s->closing)
		return;
	if (n == 0)
		return;
	if (n == SL_EOF) {
		d->eof = 1;
		if (!d->writing)
			dir_shutdown(s, d);
		return;
	}
	if (n < 0) {
		close_on_error(s, st, (int)n);
		return;
	}

	d->bytes += (uint64_t)n;
	s->last_ms = sl_loop_now(s->lc->loop);
	dst = dir_dst(s, d);
	w = sl_stream_try_write(dst, buf->base, (size_t)n);
	if (w == n) {
		/* A full buffer: a bulk transfer.  Move it inside the
		 * network layer from now on where it can (splice). */
		if ((size_t)n == buf->len && sl_stream_can_forward(st, dst))
			relay_forward(s, d, st, dst);
		return;
	}
	if (w < 0 && w != -EAGAIN) {
		close_on_error(s, dst, (int)w);
		return;
	}
	if (w < 0)
		w = 0;

	/* The receiver is full: keep the rest, stop reading this side. */
	rest = (size_t)(n - w);
	d->pend = buf_get(s->lc, s->route->buffer_size);
	if (d->pend == NULL) {
		session_close(s, "no-memory", -ENOMEM, 1);
		return;
	}
	memcpy(d->pend, buf->base + w, rest);
	d->req.data = d;
	r = sl_stream_write(dst, &d->req, d->pend, rest, on_write);
	if (r < 0) {
		buf_put(s->lc, d->pend, s->route->buffer_size);
		d->pend = NULL;
		close_on_error(s, dst, r);
		return;
	}
	d->writing = 1;
	r = sl_stream_read_stop(st);
	if (r < 0)
		close_on_error(s, st, r);
}

/*
 * Forwarded bytes (splice) are counted as they reach the receiver; the end
 * comes once all have.
 */
static void on_forward(sl_stream *st, ptrdiff_t n, sl_stream *side)
{
	struct session *s = sl_stream_get_data(st);
	struct dir *d = dir_from(s, st);
	int r;

	if (s->closing)
		return;
	if (n > 0) {
		d->bytes += (uint64_t)n;
		s->last_ms = sl_loop_now(s->lc->loop);
		return;
	}
	if (n == SL_EOF) {
		d->eof = 1;
		dir_shutdown(s, d);
		return;
	}
	if (n == SL_EFWD) { /* no pipe to be had: copy again */
		d->fwd = 0;
		r = sl_stream_read_start(st, on_alloc, on_read);
		if (r < 0)
			close_on_error(s, st, r);
		return;
	}
	close_on_error(s, side, (int)n);
}

/*
 * Relay src -> dst.  Every direction starts by copying (read into the
 * loop's buffer, write out): for small messages that is the cheapest, as
 * HAProxy's splice-auto also finds.  A read that fills the whole buffer
 * switches the direction to forwarding (on_read).  0, or -1 when the
 * session closed.
 */
static int relay_start(struct session *s, sl_stream *src)
{
	int r = sl_stream_read_start(src, on_alloc, on_read);

	if (r < 0) {
		close_on_error(s, src, r);
		return -1;
	}
	return 0;
}

/* ---- idle timeout ----------------------------------------------------------- */

/*
 * The timer is not re-armed on every read: it fires at most once per idle
 * period and re-arms itself for whatever is left since the last activity.
 */
static void on_idle_timer(sl_timer *t)
{
	struct session *s = t->data;
	uint64_t now = sl_loop_now(s->lc->loop);
	uint64_t idle = s->route->idle_timeout_ms;
	uint64_t since = now - s->last_ms;

	if (since >= idle) {
		session_close(s, "idle-timeout", 0, 0);
		return;
	}
	sl_timer_start(t, idle - since);
}

/* ---- connect ---------------------------------------------------------------- */

static void try_connect(struct session *s);

static void on_connect(sl_stream *st, int status)
{
	struct session *s = sl_stream_get_data(st);

	if (status == -ECANCELED || s->closing)
		return; /* session_close() closes the stream */

	if (status < 0) {
		const struct route *rt = s->route;
		sl_warn("route %s: connect to %s failed: %s (attempt %u of %u)",
			rt->name, rt->upstream_names[s->up_index],
			sl_strerror(status), s->attempts, rt->connect_attempts);
		s->upstream = NULL;
		sl_stream_close(st, NULL);
		if (s->attempts >= rt->connect_attempts) {
			session_close(s, "connect-failed", status, 0);
			return;
		}
		s->up_index = (s->up_index + 1) % (unsigned)rt->nupstreams;
		try_connect(s);
		return;
	}

	s->connected = 1;
	s->last_ms = sl_loop_now(s->lc->loop);
	if (s->route->idle_timeout_ms > 0)
		sl_timer_start(&s->timer, s->route->idle_timeout_ms);
	if (relay_start(s, s->client) == 0)
		relay_start(s, s->upstream);
}

static void try_connect(struct session *s)
{
	const struct route *rt = s->route;
	sl_stream *up = NULL;
	int r;

	for (;;) {
		s->attempts++;
		r = sl_stream_connect(s->lc->loop, &rt->upstreams[s->up_index],
				      rt->connect_timeout_ms, on_connect, s,
				      &up);
		if (r == 0) {
			s->upstream = up;
			return;
		}
		/* Failed before it started (e.g. no descriptors): next one. */
		sl_warn("route %s: connect to %s failed: %s (attempt %u of %u)",
			rt->name, rt->upstream_names[s->up_index],
			sl_strerror(r), s->attempts, rt->connect_attempts);
		if (s->attempts >= rt->connect_attempts) {
			session_close(s, "connect-failed", r, 0);
			return;
		}
		s->up_index = (s->up_index + 1) % (unsigned)rt->nupstreams;
	}
}

/* ---- start ------------------------------------------------------------------ */

void session_start(struct route *r, sl_stream *client)
{
	sl_loop *loop = sl_stream_loop(client);
	struct loop_ctx *lc = sl_loop_get_data(loop);
	struct session *s;

	s = calloc(1, sizeof *s);
	if (s == NULL) {
		sl_error("route %s: out of memory for a session", r->name);
		sl_stream_close(client, NULL);
		proxy_session_gone(r->proxy, r);
		route_unref(r);
		return;
	}
	s->lc = lc;
	s->route = r;
	s->client = client;
	s->d[C2U].sess = s;
	s->d[U2C].sess = s;
	s->start_ms = sl_loop_now(loop);
	sl_stream_set_data(client, s);
	sl_stream_peer_name(client, s->client_name, sizeof s->client_name);
	sl_timer_init(loop, &s->timer, on_idle_timer, s);

	s->next = lc->sessions;
	if (lc->sessions != NULL)
		lc->sessions->prev = s;
	lc->sessions = s;
	lc->nsessions++;

	s->up_index = atomic_fetch_add_explicit(&r->st->rr, 1,
						memory_order_relaxed) %
		      (unsigned)r->nupstreams;
	try_connect(s);
}

/* ---- drain deadline --------------------------------------------------------- */

static void abort_task(sl_task *t, int status)
{
	struct loop_ctx *lc = t->data;
	struct session *s, *next;

	atomic_store(&lc->abort_posted, 0);
	if (status < 0)
		return;
	for (s = lc->sessions; s != NULL; s = next) {
		next = s->next;
		session_close(s, "drain-timeout", 0, 1);
	}
}

void loop_ctx_abort_sessions(struct loop_ctx *lc)
{
	if (atomic_exchange(&lc->abort_posted, 1))
		return;
	sl_task_init(&lc->abort_task, abort_task, lc);
	sl_loop_post(lc->loop, &lc->abort_task);
}
