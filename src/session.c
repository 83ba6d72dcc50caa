/*
 * A session: one accepted client stream paired with one upstream stream on
 * the same loop, relaying bytes both ways.
 *
 * Life: [PROXY header] -> admission (access lists, per-client limit) ->
 * choose an upstream [wait in the route's queue while all are down] ->
 * connect (next upstream on failure) -> [PROXY header to the upstream] ->
 * relay -> close.  One timer serves every phase: the header deadline, the
 * queue's re-checks, then the idle, half-closed and max-duration
 * deadlines.
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

#include "balance.h"
#include "log.h"
#include "proxyproto.h"
#include "tls.h"

enum { C2U = 0, U2C = 1 };

enum phase {
	PH_HEADER,     /* reading the client's PROXY header */
	PH_TLS,        /* the client's TLS handshake, within its timeout */
	PH_QUEUED,     /* every upstream down: waiting in the route's queue */
	PH_CONNECTING, /* a connect attempt is under way */
	PH_UP_TLS,     /* the upstream's TLS handshake, within the connect
			* timeout */
	PH_RELAY,
};

/* A queued session re-checks the upstreams this often. */
#define QUEUE_RECHECK_MS 100
#define DENY_LOG_MS 1000 /* at most one line per route per second */

struct dir {
	struct session *sess;
	char *pend;       /* pooled buffer while a write is queued */
	sl_write_req req; /* the one queued write of this direction */
	uint64_t bytes;
	unsigned eof : 1;     /* source sent EOF */
	unsigned writing : 1; /* req is queued */
	unsigned shut : 1;    /* every byte out, destination's shutdown asked */
	unsigned fwd : 1;     /* bytes move by sl_stream_forward() */
};

/* What an accept_proxy listener's session keeps of the header phase. */
struct pp_state {
	sl_pp_info info;
	size_t len; /* bytes read into buf so far */
	size_t hlen; /* header length once parsed; then where the bytes
		      * after it not yet queued for the upstream begin */
	char buf[SL_PP_MAX_LEN];
};

struct session {
	struct session *prev, *next; /* loop_ctx list */
	struct loop_ctx *lc;
	struct route *route;
	struct route_listen *rl;
	sl_stream *client;
	sl_stream *upstream; /* NULL until a connect is under way */
	sl_exec *exec;       /* an exec: upstream's command, till the end */
	struct dir d[2];
	sl_timer timer;
	uint64_t start_ms;
	uint64_t last_ms;   /* last activity, for the idle timeout */
	uint64_t phase_ms;  /* start of the header wait or of the queue */
	uint64_t half_ms;   /* when the first direction ended; 0: not yet */
	/* The client's IP address: from the PROXY header if it names one
	 * (TCP4, TCP6), else the connection's own; what access lists, the
	 * per-client limit and source hashing judge. */
	sl_ipaddr client_ip;
	struct pp_state *pp; /* accept_proxy listeners only */
	struct tls_facts *tls; /* a TLS client's, for the access log */
	/* TLS toward the upstream, for the access log: OpenSSL's static
	 * names (NULL: none). */
	const char *up_tls_version, *up_tls_cipher;
	int up_tls_resumed;
	enum phase phase;
	unsigned attempts;
	unsigned up_index; /* index into route->ups of this attempt */
	uint16_t tried[16];
	unsigned ntried;
	unsigned connected : 1;
	unsigned closing : 1;
	unsigned up_held : 1;   /* counted in ups[up_index].st->active */
	unsigned per_client : 1; /* counted in the route's client table */
	unsigned queued : 1;    /* counted in the route's queue */
	unsigned quiet : 1;     /* no access-log line (denied: rate-limited) */
	unsigned exec_exited : 1; /* the exec: command has ended */
	int pending_closes;
	int tls_shuts; /* TLS shutdowns asked for, not done */
	const char *reason;
	int err;
	/* The client's name for logs when it has no IP address (a Unix
	 * socket or pipe peer, or a PROXY header's UNIX source); an IP
	 * client's is made from client_ip when needed.  An idle session
	 * keeps no text. */
	char *client_text;
};

#define CLIENT_NAME_MAX 128

/* A TLS client's facts for its access-log line, taken when its handshake
 * ends (the TLS layer is gone by the time the line is written). */
struct tls_facts {
	const char *version, *cipher; /* OpenSSL's own names */
	char *sni, *subject, *san;    /* the peer's text, escaped; NULL: none */
	char *alpn;                   /* the protocol ALPN chose, escaped */
	char sha256[65];
	int resumed;
};

#define POOL_MAX_FREE 64 /* per loop: 4 MiB of 64k buffers at most */

/* ---- per-loop context --------------------------------------------------- */

int loop_ctx_init(struct loop_ctx *lc, sl_loop *loop)
{
	memset(lc, 0, sizeof *lc);
	lc->loop = loop;
	lc->index = sl_loop_index(loop);
	lc->rng = sl_hash64(&lc, sizeof lc, sl_clock_ms()) | 1;
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

/* ---- per-client counts ----------------------------------------------------- */

static size_t client_bucket(const struct route_state *st, const sl_ipaddr *a)
{
	return (size_t)(sl_hash64(a->ip, 16, a->family) % st->nbuckets);
}

/* Count one more session of a; 0 when that would pass max. */
static int client_take(struct route_state *st, const sl_ipaddr *a,
		       unsigned max)
{
	struct client_count *c;
	int ok = 1;

	pthread_mutex_lock(&st->clients_lock);
	for (c = st->clients[client_bucket(st, a)]; c != NULL; c = c->next)
		if (sl_ipaddr_equal(&c->addr, a))
			break;
	if (c == NULL) {
		c = calloc(1, sizeof *c);
		if (c == NULL) {
			ok = 0;
		} else {
			size_t b = client_bucket(st, a);

			c->addr = *a;
			c->next = st->clients[b];
			st->clients[b] = c;
		}
	}
	if (ok && c->n >= max)
		ok = 0;
	if (ok)
		c->n++;
	pthread_mutex_unlock(&st->clients_lock);
	return ok;
}

static void client_release(struct route_state *st, const sl_ipaddr *a)
{
	struct client_count **pp;

	pthread_mutex_lock(&st->clients_lock);
	for (pp = &st->clients[client_bucket(st, a)]; *pp != NULL;
	     pp = &(*pp)->next) {
		struct client_count *c = *pp;

		if (!sl_ipaddr_equal(&c->addr, a))
			continue;
		if (--c->n == 0) {
			*pp = c->next;
			free(c);
		}
		break;
	}
	pthread_mutex_unlock(&st->clients_lock);
}

/* ---- close path ----------------------------------------------------------- */

/* client_ip as text ("-" without one). */
static const char *client_ip_name(const struct session *s, char *buf,
				  size_t len)
{
	char ip[SL_IPADDR_TEXT_MAX];

	if (s->client_ip.family == SL_AF_NONE)
		return "-";
	sl_ipaddr_format(&s->client_ip, ip, sizeof ip);
	snprintf(buf, len,
		 s->client_ip.family == SL_AF_INET6 ? "[%s]:%u" : "%s:%u", ip,
		 s->client_ip.port);
	return buf;
}

static const char *client_name(const struct session *s, char *buf, size_t len)
{
	if (s->client_text != NULL)
		return s->client_text;
	return client_ip_name(s, buf, len);
}

static void session_finish(struct session *s)
{
	struct loop_ctx *lc = s->lc;
	struct route *r = s->route;
	uint64_t dur = sl_loop_now(lc->loop) - s->start_ms;
	const char *up = s->attempts > 0 ? r->ups[s->up_index].name : "-";

	if (!s->quiet) {
		char name[CLIENT_NAME_MAX];
		struct sl_access_rec rec = {
			.route = r->name,
			.client = client_name(s, name, sizeof name),
			.upstream = up,
			.reason = s->reason,
			.error = s->err != 0 ? sl_tls_strerror(s->err) : NULL,
			.bytes_in = s->d[C2U].bytes,
			.bytes_out = s->d[U2C].bytes,
			.duration_ms = dur,
		};

		if (s->tls != NULL) {
			rec.tls_version = s->tls->version;
			rec.tls_cipher = s->tls->cipher;
			rec.tls_sni = s->tls->sni;
			rec.tls_alpn = s->tls->alpn;
			rec.tls_subject = s->tls->subject;
			rec.tls_san = s->tls->san;
			rec.tls_sha256 =
				s->tls->sha256[0] ? s->tls->sha256 : NULL;
			rec.tls_resumed = s->tls->resumed;
		}
		rec.up_tls_version = s->up_tls_version;
		rec.up_tls_cipher = s->up_tls_cipher;
		rec.up_tls_resumed = s->up_tls_resumed;

		sl_access(&rec);
	}

	if (s->prev != NULL)
		s->prev->next = s->next;
	else
		lc->sessions = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
	lc->nsessions--;

	if (s->up_held)
		atomic_fetch_sub(&r->ups[s->up_index].st->active, 1);
	if (s->per_client)
		client_release(r->st, &s->client_ip);
	if (s->queued)
		atomic_fetch_sub(&r->st->queued, 1);
	free(s->pp);
	if (s->tls != NULL) {
		free(s->tls->sni);
		free(s->tls->alpn);
		free(s->tls->subject);
		free(s->tls->san);
		free(s->tls);
	}
	free(s->client_text);
	route_release(r);
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
 * End the session.  abort_peer: the end is abnormal (an error, a deadline,
 * a refusal), so both peers see a reset rather than an orderly end that
 * could pass for a complete transfer.
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
		sl_tls_close_reset(s->client, on_stream_closed);
		if (s->upstream != NULL)
			sl_tls_close_reset(s->upstream, on_stream_closed);
	} else {
		sl_tls_close(s->client, on_stream_closed);
		if (s->upstream != NULL)
			sl_tls_close(s->upstream, on_stream_closed);
	}
	/* Its stdin has its EOF now; a command still running after its
	 * exec_timeout is killed, and reaped whatever happens. */
	if (s->exec != NULL) {
		sl_exec_release(s->exec,
				s->route->ups[s->up_index].exec_timeout_ms);
		s->exec = NULL;
	}
}

static void close_on_error(struct session *s, sl_stream *where, int err)
{
	/* A TLS peer's end without close_notify: the bytes before it may
	 * not be all it meant to send, so it is no orderly end. */
	if (err == SL_TLS_ETRUNC)
		session_close(s, "tls-truncated", 0, 1);
	else if (where == s->client)
		session_close(s, "client-error", err, 1);
	else
		session_close(s, "upstream-error", err, 1);
}

static void count(struct session *s, enum ctr_id id)
{
	ctr_add(s->route->st->ctr, s->lc->index, id, 1);
}

/* ---- deadlines -------------------------------------------------------------- */

/* The earliest relay deadline and what it stands for; 0 when none. */
static uint64_t relay_deadline(const struct session *s, const char **what)
{
	const struct route *r = s->route;
	uint64_t due = 0;

#define EARLIER(t, w)                                                          \
	do {                                                                   \
		uint64_t t_ = (t);                                             \
		if (due == 0 || t_ < due) {                                    \
			due = t_;                                              \
			*what = (w);                                           \
		}                                                              \
	} while (0)
	if (r->idle_timeout_ms > 0)
		EARLIER(s->last_ms + r->idle_timeout_ms, "idle-timeout");
	if (s->half_ms != 0 && r->half_closed_timeout_ms > 0)
		EARLIER(s->half_ms + r->half_closed_timeout_ms,
			"half-closed-timeout");
	if (r->max_duration_ms > 0)
		EARLIER(s->start_ms + r->max_duration_ms, "max-duration");
#undef EARLIER
	return due;
}

static void relay_timer_arm(struct session *s)
{
	const char *what;
	uint64_t due = relay_deadline(s, &what), now;

	if (due == 0)
		return;
	now = sl_loop_now(s->lc->loop);
	sl_timer_start(&s->timer, due > now ? due - now : 0);
}

static void queue_recheck(struct session *s);

/*
 * The idle deadline moves with every read, but the timer is not re-armed
 * on every read: it fires at most once per period and re-arms itself for
 * whatever is left.
 */
static void on_timer(sl_timer *t)
{
	struct session *s = t->data;
	uint64_t now = sl_loop_now(s->lc->loop);
	const char *what = NULL;
	uint64_t due;

	switch (s->phase) {
	case PH_HEADER:
		count(s, CTR_BAD_PROXY);
		session_close(s, "proxy-timeout", 0, 1);
		return;
	case PH_TLS:
		count(s, CTR_TLS_REFUSED);
		count(s, CTR_TLS_CLIENT + TLS_TIMEOUT);
		session_close(s, "tls-handshake-timeout", 0, 1);
		return;
	case PH_UP_TLS:
		count(s, CTR_TLS_UPSTREAM + TLS_TIMEOUT);
		session_close(s, "upstream-tls-timeout", 0, 1);
		return;
	case PH_QUEUED:
		queue_recheck(s);
		return;
	case PH_CONNECTING:
		return; /* the stream layer keeps the connect timeout */
	case PH_RELAY:
		break;
	}
	due = relay_deadline(s, &what);
	if (due == 0)
		return;
	if (now >= due) {
		session_close(s, what, 0, 0);
		return;
	}
	sl_timer_start(t, due - now);
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

/* n bytes went d's way: session, route and upstream counters. */
static void dir_count(struct session *s, struct dir *d, uint64_t n)
{
	enum ctr_id id = d == &s->d[C2U] ? CTR_BYTES_IN : CTR_BYTES_OUT;

	d->bytes += n;
	s->last_ms = sl_loop_now(s->lc->loop);
	ctr_add(s->route->st->ctr, s->lc->index, id, n);
	ctr_add(s->route->ups[s->up_index].st->ctr, s->lc->index, id, n);
}

static void on_forward(sl_stream *st, ptrdiff_t n, sl_stream *side);

/* Copying -> forwarding, from inside a read callback with nothing pending. */
static void relay_forward(struct session *s, struct dir *d, sl_stream *src,
			  sl_stream *dst)
{
	int r = sl_tls_read_stop(src);

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

	if (status == -ECANCELED || s->closing)
		return;
	/* Success needs nothing: the other direction's end closes the
	 * session (dir_shutdown); but a TLS stream's close_notify is out
	 * only now, and the session waits for it. */
	if (status < 0 && status != -ENOTCONN) {
		close_on_error(s, st, status);
		return;
	}
	if (sl_tls_on(st) && --s->tls_shuts == 0 &&
	    (s->d[C2U].shut || s->exec_exited) && s->d[U2C].shut)
		session_close(s, "done", 0, 0);
}

static void dir_shutdown(struct session *s, struct dir *d)
{
	struct dir *o = d == &s->d[C2U] ? &s->d[U2C] : &s->d[C2U];
	/* An exec: command that has ended and whose output is all out ends
	 * the session, whatever the client still sends. */
	int end = o->shut || (d == &s->d[U2C] && s->exec_exited);

	/*
	 * The other way has ended (every byte written, its shutdown asked
	 * for; the stream makes the call at the end of this round): this
	 * end is the session's end.  Closing sends the FIN a
	 * shutdown would (nothing is queued, nothing unread), so a session
	 * whose two ends finish in one round of events makes no shutdown(2)
	 * at all, and one that finishes in two rounds makes one.
	 */
	sl_stream *dst = dir_dst(s, d);

	/* A TLS end owes its peer a close_notify first, made by a
	 * shutdown: the session ends once those are out (on_shutdown). */
	if (end && !sl_tls_on(dst) && s->tls_shuts == 0) {
		session_close(s, "done", 0, 0);
		return;
	}
	int r = sl_tls_shutdown(dst, on_shutdown);

	if (r < 0) {
		close_on_error(s, dst, r);
		return;
	}
	d->shut = 1;
	s->tls_shuts += sl_tls_on(dst) != 0;
	if (end)
		return;
	/* Half closed from here: its own deadline may be the nearest. */
	if (s->half_ms == 0) {
		s->half_ms = sl_loop_now(s->lc->loop);
		if (s->route->half_closed_timeout_ms > 0)
			relay_timer_arm(s);
	}
}

static int dir_queue(struct session *s, struct dir *d, const char *data,
		     size_t len);

/* Bytes that came after the client's PROXY header, not yet queued. */
static int pp_rest(const struct session *s)
{
	return s->pp != NULL && s->pp->len > s->pp->hlen;
}

/*
 * Queue the next of them for the upstream.  The header's buffer holds up
 * to SL_PP_MAX_LEN bytes, which may be more than one relay buffer
 * (buffer_size may be as small as 1k), so they go in pieces of at most
 * buffer_size, one write at a time (on_write queues the next).  0, or -1
 * when the session closed.
 */
static int pp_queue_rest(struct session *s)
{
	size_t n = s->pp->len - s->pp->hlen;
	const char *from = s->pp->buf + s->pp->hlen;

	if (n > s->route->buffer_size)
		n = s->route->buffer_size;
	s->pp->hlen += n;
	dir_count(s, &s->d[C2U], n);
	return dir_queue(s, &s->d[C2U], from, n);
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
	if (d == &s->d[C2U] && pp_rest(s)) {
		(void)pp_queue_rest(s);
		return;
	}
	status = sl_tls_read_start(dir_src(s, d), on_alloc, on_read);
	if (status < 0)
		close_on_error(s, dir_src(s, d), status);
}

/*
 * Queue len bytes of data for d's destination in a pooled buffer and stop
 * reading d's source until they are written.  0, or -1 when the session
 * closed.
 */
static int dir_queue(struct session *s, struct dir *d, const char *data,
		     size_t len)
{
	sl_stream *dst = dir_dst(s, d);
	int r;

	d->pend = buf_get(s->lc, s->route->buffer_size);
	if (d->pend == NULL) {
		session_close(s, "no-memory", -ENOMEM, 1);
		return -1;
	}
	memcpy(d->pend, data, len);
	d->req.data = d;
	r = sl_tls_write(dst, &d->req, d->pend, len, on_write);
	if (r < 0) {
		buf_put(s->lc, d->pend, s->route->buffer_size);
		d->pend = NULL;
		close_on_error(s, dst, r);
		return -1;
	}
	d->writing = 1;
	return 0;
}

static void on_read(sl_stream *st, ptrdiff_t n, const sl_buf *buf)
{
	struct session *s = sl_stream_get_data(st);
	struct dir *d = dir_from(s, st);
	sl_stream *dst;
	ptrdiff_t w;
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

	dir_count(s, d, (uint64_t)n);
	dst = dir_dst(s, d);
	w = sl_tls_try_write(dst, buf->base, (size_t)n,
			     sl_tls_end_follows(st) ? SL_WRITE_END_NEXT : 0);
	if (w == n) {
		/* A full buffer: a bulk transfer.  Move it inside the
		 * network layer from now on where it can (splice). */
		if ((size_t)n == buf->len && sl_tls_can_forward(st, dst))
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
	if (dir_queue(s, d, buf->base + w, (size_t)(n - w)) < 0)
		return;
	r = sl_tls_read_stop(st);
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
		dir_count(s, d, (uint64_t)n);
		return;
	}
	if (n == SL_EOF) {
		d->eof = 1;
		dir_shutdown(s, d);
		return;
	}
	if (n == SL_EFWD) { /* no pipe to be had: copy again */
		d->fwd = 0;
		r = sl_tls_read_start(st, on_alloc, on_read);
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
	int r = sl_tls_read_start(src, on_alloc, on_read);

	if (r < 0) {
		close_on_error(s, src, r);
		return -1;
	}
	return 0;
}

/* ---- PROXY header to the upstream ------------------------------------------------ */

struct pp_out {
	sl_write_req req;
	char buf[SL_PP_MAX_LEN];
};

static void on_pp_written(sl_write_req *req, int status)
{
	struct session *s = req->data;

	free(req); /* req is the first member of its struct pp_out */
	if (status == -ECANCELED || s->closing)
		return;
	if (status < 0)
		close_on_error(s, s->upstream, status);
}

/* The path of a Unix stream's name ("unix:/p" -> "/p"). */
static void unix_path(int r, const char *name, char *out, size_t len)
{
	const char *p = r == 0 && strncmp(name, "unix:", 5) == 0 ? name + 5 : "";
	size_t n = strnlen(p, len - 1);

	memcpy(out, p, n);
	out[n] = '\0';
}

/*
 * What the upstream is told: the header the client's front proxy sent,
 * passed on as it was; else the client connection's own two ends.
 */
static void pp_describe(const struct session *s, sl_pp_info *in)
{
	char name[SL_PP_PATH_MAX + 8];
	int r;

	if (s->pp != NULL && !s->pp->info.local &&
	    s->pp->info.family != SL_PP_UNKNOWN) {
		*in = s->pp->info;
		in->local = 0;
		return;
	}
	memset(in, 0, sizeof *in);
	switch (sl_stream_kind(s->client)) {
	case SL_EP_TCP:
		in->src = s->client_ip;
		if (sl_stream_local_addr(s->client, &in->dst) < 0 ||
		    in->src.family == SL_AF_NONE)
			break;
		sl_ipaddr_unmap(&in->src);
		sl_ipaddr_unmap(&in->dst);
		in->family = in->src.family == SL_AF_INET4 &&
					     in->dst.family == SL_AF_INET4
				     ? SL_PP_TCP4
				     : SL_PP_TCP6;
		break;
	case SL_EP_UNIX:
		in->family = SL_PP_UNIX;
		r = sl_stream_peer_name(s->client, name, sizeof name);
		unix_path(r, name, in->src_path, sizeof in->src_path);
		r = sl_stream_local_name(s->client, name, sizeof name);
		unix_path(r, name, in->dst_path, sizeof in->dst_path);
		break;
	default:
		break; /* a pipe: no address the protocol can carry */
	}
}

#ifdef SL_HAVE_TLS
/*
 * A TLS client's facts for a v2 header (HAProxy's PP2_TYPE_SSL and
 * PP2_TYPE_AUTHORITY): the version, the cipher, SNI, and for a client
 * certificate whether it was shown in this handshake or only in the
 * session resumed, whether it verified, and its common name.  As the
 * specification says (HAProxy writes 0), verify is not 0 without a
 * certificate: 0 means "shown and verified".  The names are the peer's
 * bytes, bounded by the builder (SL_PP_TLS_VALUE_MAX: longer ones are
 * left out); cn is the buffer for the common name.
 */
static const sl_pp_tls *pp_tls(struct session *s, sl_pp_tls *t, char *cn,
			       size_t cnlen)
{
	long verify;
	int resumed, n;

	memset(t, 0, sizeof *t);
	t->client = SL_PP2_CLIENT_SSL;
	t->verify = 1;
	t->version = sl_tls_version(s->client);
	t->cipher = sl_tls_cipher(s->client);
	if ((t->sni = sl_tls_sni(s->client)) != NULL)
		t->sni_len = strlen(t->sni);
	t->alpn = sl_tls_alpn(s->client, &t->alpn_len);
	if (sl_tls_peer_cert_info(s->client, &verify, &resumed)) {
		t->client |= SL_PP2_CLIENT_CERT_SESS;
		if (!resumed)
			t->client |= SL_PP2_CLIENT_CERT_CONN;
		/* X509_V_* codes: small and not negative. */
		t->verify = verify >= 0 ? (uint32_t)verify : UINT32_MAX;
		if ((n = sl_tls_peer_cn(s->client, cn, cnlen)) > 0) {
			t->cn = cn;
			t->cn_len = (size_t)n;
		}
	}
	return t;
}
#endif

static int send_proxy_header(struct session *s, int version)
{
	struct pp_out *o = malloc(sizeof *o);
#ifdef SL_HAVE_TLS
	char cn[SL_PP_TLS_VALUE_MAX];
	sl_pp_tls tls;
#endif
	sl_pp_info in;
	size_t n;
	int r;

	if (o == NULL) {
		session_close(s, "no-memory", -ENOMEM, 1);
		return -1;
	}
	pp_describe(s, &in);
#ifdef SL_HAVE_TLS
	if (version == 2 && sl_tls_on(s->client))
		in.tls = pp_tls(s, &tls, cn, sizeof cn);
#endif
	n = version == 1 ? sl_pp_build_v1(&in, o->buf, sizeof o->buf)
			 : sl_pp_build_v2(&in, o->buf, sizeof o->buf);
	o->req.data = s;
	r = n > 0 ? sl_stream_write(s->upstream, &o->req, o->buf, n,
				    on_pp_written)
		  : -EINVAL;
	if (r < 0) {
		free(o);
		close_on_error(s, s->upstream, r);
		return -1;
	}
	return 0;
}

/* ---- connect ---------------------------------------------------------------- */

static void connect_to(struct session *s, int i);

static void relay_begin(struct session *s);

#ifdef SL_HAVE_TLS
/* How a TLS handshake that ended with status is counted. */
static enum tls_result tls_result_of(int status)
{
	switch (status) {
	case 0:
		return TLS_OK;
	case SL_TLS_ENOCERT:
		return TLS_NO_CERT;
	case SL_TLS_EVERIFY:
		return TLS_VERIFY;
	case SL_TLS_ENOTALLOWED:
		return TLS_NOT_ALLOWED;
	default:
		return TLS_PROTOCOL;
	}
}

/* The upstream's TLS handshake ended. */
static void on_up_tls(sl_stream *st, int status)
{
	struct session *s = sl_stream_get_data(st);

	if (status == -ECANCELED || s->closing)
		return;
	sl_timer_stop(&s->timer);
	count(s, CTR_TLS_UPSTREAM + tls_result_of(status));
	if (status < 0) {
		sl_warn("route %s: TLS to %s failed: %s%s%s", s->route->name,
			s->route->ups[s->up_index].name,
			sl_tls_strerror(status), sl_tls_why(st)[0] ? ": " : "",
			sl_tls_why(st));
		ctr_add(s->route->st->ctr, s->lc->index, CTR_CONNECT_FAILS, 1);
		session_close(s, "upstream-tls", status, 1);
		return;
	}
	s->up_tls_version = sl_tls_version(st);
	s->up_tls_cipher = sl_tls_cipher(st);
	s->up_tls_resumed = sl_tls_resumed(st);
	relay_begin(s);
}
#endif

/*
 * The route's TCP keepalive on one end (a Unix socket or a pipe takes
 * none).  A socket that refuses it still forwards; the config's ranges
 * are the system's, so a refusal is rare, and logging it at more than
 * debug for every session could flood the log.
 */
static void keepalive_set(struct session *s, sl_stream *st, const char *side)
{
	int err = sl_stream_set_keepalive(st, &s->route->keepalive);

	if (err < 0)
		sl_debug("route %s: tcp_keepalive on the %s socket: %s",
			s->route->name, side, sl_strerror(err));
}

/* Connected: tell the upstream whom for, [TLS], then relay. */
static void session_connected(struct session *s)
{
	struct route *r = s->route;
	struct upstream *u = &r->ups[s->up_index];

	balance_connect_ok(r, u);
	ctr_add(u->st->ctr, s->lc->index, CTR_SESSIONS, 1);
	s->connected = 1;
	keepalive_set(s, s->upstream, "upstream");
	/* The PROXY header goes first, in the clear, as HAProxy sends it. */
	if (u->send_proxy && send_proxy_header(s, u->send_proxy) < 0)
		return;
#ifdef SL_HAVE_TLS
	if (u->tls != NULL) {
		int err = sl_tls_connect(s->upstream, u->tls, on_up_tls);

		if (err < 0) {
			session_close(s, "upstream-tls", err, 1);
			return;
		}
		s->phase = PH_UP_TLS;
		sl_timer_start(&s->timer, r->connect_timeout_ms);
		return;
	}
#endif
	relay_begin(s);
}

/* Pass early bytes, relay. */
static void relay_begin(struct session *s)
{
	s->phase = PH_RELAY;
	s->last_ms = sl_loop_now(s->lc->loop);
	relay_timer_arm(s);
	/* Bytes that came with the client's PROXY header go first; the
	 * client is read again once they are out (on_write). */
	if (pp_rest(s)) {
		if (pp_queue_rest(s) < 0)
			return;
	} else if (relay_start(s, s->client) < 0) {
		return;
	}
	relay_start(s, s->upstream);
}

/* The attempt on ups[up_index] failed with err: the next one, or the end. */
static void connect_failed(struct session *s, int err)
{
	struct route *r = s->route;
	struct upstream *u = &r->ups[s->up_index];
	uint64_t now = sl_clock_ms();
	int next;

	sl_warn("route %s: connect to %s failed: %s (attempt %u of %u)",
		r->name, u->name, sl_strerror(err), s->attempts,
		r->connect_attempts);
	ctr_add(r->st->ctr, s->lc->index, CTR_CONNECT_FAILS, 1);
	ctr_add(u->st->ctr, s->lc->index, CTR_CONNECT_FAILS, 1);
	/* Only the upstream's own failures count against its health, not
	 * this process running out of descriptors or memory. */
	if (err != -EMFILE && err != -ENFILE && err != -ENOBUFS &&
	    err != -ENOMEM && err != -ECANCELED &&
	    !(u->argv != NULL && r->checks))
		balance_connect_failed(r, u, sl_strerror(err), now);
	atomic_fetch_sub(&u->st->active, 1);
	s->up_held = 0;
	if (s->attempts >= r->connect_attempts ||
	    (next = balance_pick(r, s->lc, &s->client_ip, s->tried, s->ntried,
				 now)) < 0) {
		session_close(s, "connect-failed", err, 0);
		return;
	}
	connect_to(s, next);
}

static void on_connect(sl_stream *st, int status)
{
	struct session *s = sl_stream_get_data(st);

	if (status == -ECANCELED || s->closing)
		return; /* session_close() closes the stream */
	if (status < 0) {
		s->upstream = NULL;
		sl_stream_close(st, NULL);
		connect_failed(s, status);
		return;
	}
	session_connected(s);
}

/*
 * An exec: command ended (its status is logged by net/).  Its output
 * reaches the client first: the session ends once the upstream's end is
 * passed on (dir_shutdown), or now if it was.
 */
static void on_exec_exit(sl_exec *x, int status)
{
	struct session *s = sl_exec_get_data(x);

	(void)status;
	s->exec_exited = 1;
	if (s->phase == PH_RELAY && s->d[U2C].shut && s->tls_shuts == 0)
		session_close(s, "done", 0, 0);
}

/* An exec: upstream: its command started is the connect. */
static int exec_start(struct session *s, struct upstream *u)
{
	char name[96];
	sl_exec_opts o = {
		.argv = u->argv,
		.log_name = name,
		.exit_cb = on_exec_exit,
		.data = s,
	};
	sl_stream *up;
	int err;

	snprintf(name, sizeof name, "route %s", s->route->name);
	if ((err = sl_exec_spawn(s->lc->loop, &o, &s->exec, &up)) < 0)
		return err;
	sl_debug("route %s: exec:%s started (pid %ld)", s->route->name,
		 u->argv[0], sl_exec_pid(s->exec));
	sl_stream_set_data(up, s);
	s->upstream = up;
	session_connected(s);
	return 0;
}

static void connect_to(struct session *s, int i)
{
	struct route *r = s->route;
	struct upstream *u = &r->ups[i];
	sl_stream *up = NULL;
	int err;

	s->phase = PH_CONNECTING;
	s->up_index = (unsigned)i;
	s->attempts++;
	if (s->ntried < sizeof s->tried / sizeof s->tried[0])
		s->tried[s->ntried++] = (uint16_t)i;
	atomic_fetch_add(&u->st->active, 1);
	s->up_held = 1;
	if (u->argv != NULL) {
		if ((err = exec_start(s, u)) == 0)
			return;
		connect_failed(s, err);
		return;
	}
	err = sl_stream_connect_opts(s->lc->loop, &u->ep, r->connect_timeout_ms,
				     &u->copts, on_connect, s, &up);
	if (err == 0) {
		s->upstream = up;
		return;
	}
	/* Failed before it started (no descriptor, say). */
	connect_failed(s, err);
}

/* ---- queue ------------------------------------------------------------------- */

/* Choose and connect, or wait in the queue, or refuse: every one down. */
static void choose(struct session *s)
{
	struct route *r = s->route;
	uint64_t now = sl_clock_ms();
	int i = balance_pick(r, s->lc, &s->client_ip, NULL, 0, now);

	if (i >= 0) {
		if (s->queued) {
			s->queued = 0;
			atomic_fetch_sub(&r->st->queued, 1);
			sl_timer_stop(&s->timer);
		}
		connect_to(s, i);
		return;
	}
	if (s->phase != PH_QUEUED) {
		unsigned q = atomic_fetch_add(&r->st->queued, 1);

		if (q >= r->queue_max) {
			atomic_fetch_sub(&r->st->queued, 1);
			count(s, CTR_NO_UPSTREAM);
			session_close(s, "no-upstream", 0, 1);
			return;
		}
		s->queued = 1;
		s->phase = PH_QUEUED;
		s->phase_ms = sl_loop_now(s->lc->loop);
	}
	sl_timer_start(&s->timer, QUEUE_RECHECK_MS);
}

static void queue_recheck(struct session *s)
{
	uint64_t now = sl_loop_now(s->lc->loop);

	if (now - s->phase_ms >= s->route->queue_timeout_ms) {
		count(s, CTR_NO_UPSTREAM);
		session_close(s, "queue-timeout", 0, 1);
		return;
	}
	choose(s);
}

/* ---- admission --------------------------------------------------------------- */

/* A refusal may be logged now: at most one line per route per second;
 * those not logged are counted for the next line. */
static int deny_log_due(struct route_state *st)
{
	uint64_t now = sl_clock_ms();
	uint64_t last = atomic_load(&st->deny_log_ms);

	if (now - last < DENY_LOG_MS ||
	    !atomic_compare_exchange_strong(&st->deny_log_ms, &last, now)) {
		atomic_fetch_add(&st->deny_unlogged, 1);
		return 0;
	}
	return 1;
}

static void log_denied(struct session *s, const struct sl_acl_rule *rule)
{
	struct route_state *st = s->route->st;
	char text[SL_CIDR_TEXT_MAX] = "", name[CLIENT_NAME_MAX];
	char via[CLIENT_NAME_MAX + 8] = "", ip[CLIENT_NAME_MAX];
	unsigned long more;

	if (!deny_log_due(st))
		return;
	more = atomic_exchange(&st->deny_unlogged, 0);
	if (rule != NULL)
		sl_cidr_format(&rule->cidr, text, sizeof text);
	/* A client named by a path (a PROXY header's UNIX source) was
	 * judged on the connection's address: say which. */
	if (s->client_text != NULL && s->client_ip.family != SL_AF_NONE)
		snprintf(via, sizeof via, " via %s",
			 client_ip_name(s, ip, sizeof ip));
	if (more == 0)
		sl_info("route %s: denied %s%s (%s%s)", s->route->name,
			client_name(s, name, sizeof name), via,
			rule != NULL ? "deny " : "not allowed", text);
	else
		sl_info("route %s: denied %s%s (%s%s); %lu more denied since "
			"the last report",
			s->route->name, client_name(s, name, sizeof name), via,
			rule != NULL ? "deny " : "not allowed", text, more);
}

#ifdef SL_HAVE_TLS
static const char *tls_reason(int status)
{
	switch (status) {
	case SL_TLS_ENOCERT:
		return "tls-no-cert";
	case SL_TLS_EVERIFY:
		return "tls-verify-failed";
	case SL_TLS_ENOTALLOWED:
		return "tls-not-allowed";
	default:
		return "tls-handshake";
	}
}

/*
 * A refused TLS client, with the certificate's subject it showed (the
 * peer's text: escaped here, as every name a peer chose), at most one
 * line per route per second as for access lists.  A handshake that
 * failed on its own (garbage, a scan) is only the access-log line.
 */
static void tls_log_refused(struct session *s, sl_stream *st, int status)
{
	char subj[256], safe[4 * sizeof subj], name[CLIENT_NAME_MAX];

	if (status != SL_TLS_ENOCERT && status != SL_TLS_EVERIFY &&
	    status != SL_TLS_ENOTALLOWED) {
		sl_debug("route %s: TLS handshake failed: %s%s%s",
			 s->route->name, sl_tls_strerror(status),
			 sl_tls_why(st)[0] ? ": " : "", sl_tls_why(st));
		return;
	}
	if (!deny_log_due(s->route->st))
		return;
	sl_tls_peer_subject(st, subj, sizeof subj);
	sl_info("route %s: TLS client %s refused: %s (%s)%s%s",
		s->route->name, client_name(s, name, sizeof name),
		sl_tls_strerror(status), sl_tls_why(st),
		subj[0] ? " subject=" : "",
		sl_log_escape(safe, sizeof safe, subj, strlen(subj)));
}

/*
 * A peer's text for the access log: escaped as every name a peer chose,
 * and its quotes and backslashes as \xHH too, so that the text format
 * can quote it.  NULL for none (or without memory).
 */
static char *tls_text(const char *src)
{
	char raw[4 * 256], safe[4 * sizeof raw];
	size_t n = 0;

	if (src == NULL || src[0] == '\0')
		return NULL;
	for (; *src != '\0' && n + 5 < sizeof raw / 4; src++) {
		if (*src == '"' || *src == '\\')
			n += (size_t)snprintf(raw + n, sizeof raw - n, "\\x%02x",
					      (unsigned char)*src);
		else
			raw[n++] = *src;
	}
	raw[n] = '\0';
	return strdup(sl_log_escape(safe, sizeof safe, raw, n));
}

/* What the access log says of a TLS client, taken now. */
static void tls_facts_take(struct session *s, sl_stream *st)
{
	struct tls_facts *f = calloc(1, sizeof *f);
	char subj[256];
	const char *alpn;
	size_t alen;

	if (f == NULL)
		return;
	f->version = sl_tls_version(st);
	f->cipher = sl_tls_cipher(st);
	f->sni = tls_text(sl_tls_sni(st));
	alpn = sl_tls_alpn(st, &alen);
	if (alpn != NULL) {
		char raw[256];

		memcpy(raw, alpn, alen < sizeof raw ? alen : sizeof raw - 1);
		raw[alen < sizeof raw ? alen : sizeof raw - 1] = '\0';
		f->alpn = tls_text(raw);
	}
	sl_tls_peer_subject(st, subj, sizeof subj);
	f->subject = tls_text(subj);
	f->san = tls_text(sl_tls_matched(st));
	sl_tls_peer_sha256(st, f->sha256, sizeof f->sha256);
	f->resumed = sl_tls_resumed(st);
	s->tls = f;
}

/* The client's TLS handshake ended: on to an upstream, or the end. */
static void on_tls_accepted(sl_stream *st, int status)
{
	struct session *s = sl_stream_get_data(st);

	if (status == -ECANCELED || s->closing)
		return;
	sl_timer_stop(&s->timer);
	count(s, CTR_TLS_CLIENT + tls_result_of(status));
	if (status < 0) {
		count(s, CTR_TLS_REFUSED);
		tls_log_refused(s, st, status);
		session_close(s, tls_reason(status), status, 1);
		return;
	}
	tls_facts_take(s, st);
	s->phase = PH_CONNECTING;
	choose(s);
}
#endif

/* Access lists, then the per-client limit, [TLS], then an upstream. */
static void admit(struct session *s)
{
	struct route *r = s->route;
	const struct sl_acl_rule *rule = NULL;

	if (!sl_acl_check(&r->gacl, &s->client_ip, &rule) ||
	    !sl_acl_check(&r->acl, &s->client_ip, &rule)) {
		count(s, CTR_DENIED);
		log_denied(s, rule);
		s->quiet = 1;
		session_close(s, "denied", 0, 1);
		return;
	}
	if (r->max_per_client > 0 && s->client_ip.family != SL_AF_NONE) {
		sl_ipaddr_unmap(&s->client_ip);
		if (!client_take(r->st, &s->client_ip, r->max_per_client)) {
			count(s, CTR_LIMITED);
			session_close(s, "client-limit", 0, 1);
			return;
		}
		s->per_client = 1;
	}
#ifdef SL_HAVE_TLS
	/* TLS once the address may come in: a refused client costs no
	 * handshake.  Its slots (route, per-client) are held until the
	 * session ends, as any session's. */
	if (s->rl->tls != NULL) {
		/* What came after a PROXY header is the handshake's. */
		size_t n = pp_rest(s) ? s->pp->len - s->pp->hlen : 0;
		int err = sl_tls_accept(s->client, s->rl->tls,
					n ? s->pp->buf + s->pp->hlen : NULL,
					n, on_tls_accepted);

		if (s->pp != NULL)
			s->pp->hlen = s->pp->len;

		if (err < 0) {
			session_close(s, "tls-handshake", err, 1);
			return;
		}
		s->phase = PH_TLS;
		sl_timer_start(&s->timer, s->rl->handshake_timeout_ms);
		return;
	}
#endif
	choose(s);
}

/* ---- PROXY header from the client ------------------------------------------------ */

static void on_pp_alloc(sl_stream *st, size_t suggested, sl_buf *buf)
{
	struct session *s = sl_stream_get_data(st);

	(void)suggested;
	buf->base = s->pp->buf + s->pp->len;
	buf->len = sizeof s->pp->buf - s->pp->len;
}

/*
 * A peer's name for the logs (a Unix client's socket name, a PROXY
 * header's path): the peer chose it, so it is escaped once here and every
 * log format shows the same safe text.  NULL (logged as "-") without
 * memory.
 */
static char *peer_text(const char *prefix, const char *name)
{
	char raw[CLIENT_NAME_MAX], safe[4 * CLIENT_NAME_MAX];

	snprintf(raw, sizeof raw, "%s%s", prefix, name);
	return strdup(sl_log_escape(safe, sizeof safe, raw, strlen(raw)));
}

/*
 * The header names the client: take its address for everything after.
 * A UNIX source names a client with no IP address, which no access list
 * and no per-client limit could judge: those go on judging the
 * connection's own address (the front proxy's), and only the logs (and a
 * header passed on to the upstream) show the path.
 */
static void pp_adopt(struct session *s)
{
	const sl_pp_info *in = &s->pp->info;

	if (in->local || in->family == SL_PP_UNKNOWN)
		return; /* the connection's own addresses stand */
	free(s->client_text);
	s->client_text = NULL;
	if (in->family == SL_PP_UNIX) {
		s->client_text = peer_text("unix:", in->src_path);
		return;
	}
	s->client_ip = in->src;
}

static void on_pp_read(sl_stream *st, ptrdiff_t n, const sl_buf *buf)
{
	struct session *s = sl_stream_get_data(st);
	const char *why = NULL;
	ptrdiff_t h;

	(void)buf;
	if (s->closing || n == 0)
		return;
	if (n < 0) {
		count(s, CTR_BAD_PROXY);
		session_close(s, "bad-proxy-header", n == SL_EOF ? 0 : (int)n,
			      1);
		return;
	}
	s->pp->len += (size_t)n;
	h = sl_pp_parse(s->pp->buf, s->pp->len, &s->pp->info, &why);
	if (h == 0)
		return; /* more to come */
	if (h < 0) {
		char name[CLIENT_NAME_MAX];

		sl_info("route %s: %s: bad PROXY header: %s", s->route->name,
			client_name(s, name, sizeof name),
			why != NULL ? why : "malformed");
		count(s, CTR_BAD_PROXY);
		session_close(s, "bad-proxy-header", 0, 1);
		return;
	}
	s->pp->hlen = (size_t)h;
	if (sl_stream_read_stop(st) < 0) {
		session_close(s, "client-error", 0, 1);
		return;
	}
	sl_timer_stop(&s->timer);
	pp_adopt(s);
	s->phase = PH_CONNECTING;
	admit(s);
}

/* ---- start ------------------------------------------------------------------ */

void session_start(struct route_listen *rl, sl_stream *client)
{
	struct route *r = rl->route;
	sl_loop *loop = sl_stream_loop(client);
	struct loop_ctx *lc = sl_loop_get_data(loop);
	struct session *s;

	s = calloc(1, sizeof *s);
	if (s == NULL) {
		sl_error("route %s: out of memory for a session", r->name);
		sl_stream_close(client, NULL);
		route_release(r);
		route_unref(r);
		return;
	}
	s->lc = lc;
	s->route = r;
	s->rl = rl;
	s->client = client;
	s->d[C2U].sess = s;
	s->d[U2C].sess = s;
	s->start_ms = sl_loop_now(loop);
	s->phase = PH_CONNECTING;
	sl_stream_set_data(client, s);
	keepalive_set(s, client, "client");
	sl_stream_peer_addr(client, &s->client_ip);
	if (s->client_ip.family == SL_AF_NONE) {
		char name[CLIENT_NAME_MAX];

		sl_stream_peer_name(client, name, sizeof name);
		s->client_text = peer_text("", name);
	}
	sl_timer_init(loop, &s->timer, on_timer, s);

	s->next = lc->sessions;
	if (lc->sessions != NULL)
		lc->sessions->prev = s;
	lc->sessions = s;
	lc->nsessions++;
	count(s, CTR_SESSIONS);

	if (!rl->accept_proxy) {
		admit(s);
		return;
	}
	/* Only a trusted front proxy may say whom a connection is for. */
	if (!sl_acl_empty(&rl->trusted) &&
	    (s->client_ip.family == SL_AF_NONE ||
	     !sl_acl_check(&rl->trusted, &s->client_ip, NULL))) {
		char name[CLIENT_NAME_MAX];

		count(s, CTR_BAD_PROXY);
		sl_info("route %s: %s may not send PROXY headers "
			"(not in trusted_proxies)",
			r->name, client_name(s, name, sizeof name));
		session_close(s, "untrusted-proxy", 0, 1);
		return;
	}
	s->pp = calloc(1, sizeof *s->pp);
	if (s->pp == NULL) {
		session_close(s, "no-memory", -ENOMEM, 1);
		return;
	}
	s->phase = PH_HEADER;
	sl_timer_start(&s->timer, rl->proxy_timeout_ms);
	if (sl_stream_read_start(client, on_pp_alloc, on_pp_read) < 0)
		session_close(s, "client-error", 0, 1);
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
