/*
 * What streams do alike on every platform, written once: the getters,
 * closing, names and addresses, and connecting (resolve, then try each
 * address in turn, within the timeout).  What differs (descriptors and
 * readiness, or handles and completions) is behind the functions
 * stream_common.h lists for each platform.
 */
#include "stream_common.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "os/os.h"

#ifndef _WIN32
#include <netinet/in.h> /* sockaddr_in, htons */
#endif

static void on_timeout(sl_timer *t);

void sl_stream_init(sl_stream *s, sl_loop *loop, enum sl_ep_kind kind,
		    sl_task_fn fn)
{
	struct sl_stream_base *b = sl_stream_base(s);

	b->loop = loop;
	b->kind = kind;
	sl_timer_init(loop, &b->timer, on_timeout, s);
	sl_task_init(&b->task, fn, s);
}

void sl_stream_set_data(sl_stream *s, void *data)
{
	sl_stream_base(s)->data = data;
}

void *sl_stream_get_data(const sl_stream *s)
{
	return sl_stream_cbase(s)->data;
}

void sl_stream_set_layer(sl_stream *s, void *layer)
{
	sl_stream_base(s)->layer = layer;
}

void *sl_stream_get_layer(const sl_stream *s)
{
	return sl_stream_cbase(s)->layer;
}

sl_loop *sl_stream_loop(const sl_stream *s)
{
	return sl_stream_cbase(s)->loop;
}

enum sl_ep_kind sl_stream_kind(const sl_stream *s)
{
	return sl_stream_cbase(s)->kind;
}

size_t sl_stream_write_queue_size(const sl_stream *s)
{
	return s != NULL ? sl_stream_cbase(s)->wq_bytes : 0;
}

/* ---- connecting ---------------------------------------------------------- */

/*
 * A host name resolves on the resolver threads, never on the loop; a
 * literal (or the one address of a Unix socket) is ready at once.  The
 * platform then tries the addresses in turn, and the timer bounds it all.
 */

static void on_timeout(sl_timer *t)
{
	sl_stream *s = t->data;
	struct sl_stream_base *b = sl_stream_base(s);

	if (!(b->flags & ST_CONNECTING))
		return;
	if (sl_os_connect_timeout(s))
		return;
	sl_resolve_cancel(b->resolve);
	b->resolve = NULL;
	sl_os_connect_finish(s, -ETIMEDOUT);
}

static void on_resolved(void *arg, int status, const struct sl_addr *addrs,
			size_t n)
{
	sl_stream *s = arg;
	struct sl_stream_base *b = sl_stream_base(s);

	b->resolve = NULL;
	if (status < 0 || n == 0) {
		sl_os_connect_finish(s, status < 0 ? status : SL_ERESOLVE);
		return;
	}
	b->addrs = malloc(n * sizeof *addrs);
	if (b->addrs == NULL) {
		sl_os_connect_finish(s, -ENOMEM);
		return;
	}
	memcpy(b->addrs, addrs, n * sizeof *addrs);
	b->naddrs = n;
	b->next_addr = 0;
	sl_os_connect_next(s, 0);
}

int sl_connect_source(const sl_stream *s, int family,
		      struct sockaddr_storage *ss, socklen_t *len)
{
	const sl_ipaddr *src = &sl_stream_cbase(s)->source;

	*len = 0;
	if (src->family == SL_AF_NONE)
		return 0;
	memset(ss, 0, sizeof *ss);
	if (src->family == SL_AF_INET4 && family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)ss;

		in->sin_family = AF_INET;
		in->sin_port = htons(src->port);
		memcpy(&in->sin_addr, src->ip, 4);
		*len = (socklen_t)sizeof *in;
		return 0;
	}
	if (src->family == SL_AF_INET6 && family == AF_INET6) {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;

		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons(src->port);
		memcpy(&in6->sin6_addr, src->ip, 16);
		*len = (socklen_t)sizeof *in6;
		return 0;
	}
	return SL_ESRCFAMILY;
}

/* ---- assuan: --------------------------------------------------------------
 *
 * libassuan's socket emulation (assuan-socket.c, gpg-agent's sockets on
 * Windows): the "socket" is a file holding a decimal TCP port on the
 * loopback, a newline and 16 random bytes; a client connects to the port
 * and sends those bytes first, or the agent drops it.  The agent writes a
 * new file each time it starts, so it is read at every connect.  (Cygwin's
 * form, "!<socket >...", needs an exchange of its own and is refused.)
 */

#define ASSUAN_NONCE SL_ASSUAN_NONCE

struct assuan_hello {
	sl_write_req req;
	sl_connect_cb cb; /* the caller's */
	unsigned char nonce[ASSUAN_NONCE];
};

int sl_assuan_read(const char *path, uint16_t *port,
		   unsigned char nonce[SL_ASSUAN_NONCE])
{
	unsigned char buf[64];
	unsigned long v = 0;
	size_t n, i = 0;
	/* Read on the loop's thread: a small regular file, never a link
	 * followed nor a FIFO waited on. */
	long got = sl_os_read_small(path, buf, sizeof buf);

	if (got == -EINVAL)
		return SL_EASSUAN;
	if (got < 0)
		return (int)got;
	n = (size_t)got;
	while (i < n && i < 5 && buf[i] >= '0' && buf[i] <= '9')
		v = v * 10 + (unsigned long)(buf[i++] - '0');
	if (i == 0 || v < 1 || v > 65535 || i >= n || buf[i] != '\n' ||
	    n - i - 1 != ASSUAN_NONCE)
		return SL_EASSUAN;
	*port = (uint16_t)v;
	memcpy(nonce, buf + i + 1, ASSUAN_NONCE);
	return 0;
}

static void assuan_sent(sl_write_req *req, int status)
{
	sl_stream *s = req->stream;
	struct sl_stream_base *b = sl_stream_base(s);
	struct assuan_hello *h = b->assuan;
	sl_connect_cb cb = h->cb;

	b->assuan = NULL;
	free(h);
	cb(s, status);
}

/* Connected to the agent's port: the nonce, then the caller's callback. */
static void assuan_connected(sl_stream *s, int status)
{
	struct sl_stream_base *b = sl_stream_base(s);
	struct assuan_hello *h = b->assuan;
	sl_connect_cb cb = h->cb;

	if (status == 0)
		status = sl_stream_write(s, &h->req, h->nonce, ASSUAN_NONCE,
					 assuan_sent);
	if (status == 0)
		return;
	b->assuan = NULL;
	free(h);
	cb(s, status);
}

int sl_stream_connect(sl_loop *loop, const sl_endpoint *ep,
		      uint64_t timeout_ms, sl_connect_cb cb, void *data,
		      sl_stream **out)
{
	return sl_stream_connect_opts(loop, ep, timeout_ms, NULL, cb, data,
				      out);
}

int sl_stream_connect_opts(sl_loop *loop, const sl_endpoint *ep,
			   uint64_t timeout_ms, const sl_connect_opts *opts,
			   sl_connect_cb cb, void *data, sl_stream **out)
{
	struct sl_stream_base *b;
	sl_stream *s;
	size_t n;
	int r;

	if (loop == NULL || ep == NULL || cb == NULL || out == NULL)
		return -EINVAL;
	if (ep->kind == SL_EP_ASSUAN) {
		struct assuan_hello *h = calloc(1, sizeof *h);
		sl_endpoint tcp;

		if (h == NULL)
			return -ENOMEM;
		memset(&tcp, 0, sizeof tcp);
		tcp.kind = SL_EP_TCP;
		memcpy(tcp.host, "127.0.0.1", sizeof "127.0.0.1");
		tcp.host_is_literal = 1;
		if ((r = sl_assuan_read(ep->path, &tcp.port, h->nonce)) < 0 ||
		    (r = sl_stream_connect_opts(loop, &tcp, timeout_ms, NULL,
						assuan_connected, data,
						out)) < 0) {
			free(h);
			return r;
		}
		h->cb = cb;
		sl_stream_base(*out)->assuan = h;
		return 0;
	}
	if (ep->kind != SL_EP_TCP && ep->kind != SL_EP_LOCAL)
		return SL_EUNSUPP;
	s = sl_os_stream_new(loop, ep->kind);
	if (s == NULL)
		return -ENOMEM;
	b = sl_stream_base(s);
	b->data = data;
	b->connect_cb = cb;
	b->flags |= ST_CONNECTING;
	if (opts != NULL && ep->kind == SL_EP_TCP)
		b->source = opts->source;

	if (ep->kind == SL_EP_LOCAL) {
		r = sl_os_connect_local(s, ep, timeout_ms);
		if (r < 0)
			goto fail;
		if (r > 0) {
			*out = s;
			return 0;
		}
	} else if (ep->host_is_literal) {
		b->addrs = calloc(SL_RESOLVE_MAX_ADDRS, sizeof *b->addrs);
		if (b->addrs == NULL) {
			r = -ENOMEM;
			goto fail;
		}
		r = sl_resolve_numeric(ep->host, ep->port, 0, b->addrs,
				       SL_RESOLVE_MAX_ADDRS, &n);
		if (r < 0)
			goto fail;
		b->naddrs = n;
	} else {
		r = sl_resolve_start(loop, ep->host, ep->port, on_resolved, s,
				     &b->resolve);
		if (r < 0)
			goto fail;
	}
	if (timeout_ms > 0)
		sl_timer_start(&b->timer, timeout_ms);
	*out = s;
	if (b->addrs != NULL)
		sl_os_connect_next(s, 1);
	return 0;
fail:
	free(b->addrs);
	free(s);
	return r;
}

/* ---- closing ------------------------------------------------------------- */

/*
 * The platform goes first (its handle, its I/O); what is left is the
 * connect.  The stream's task, scheduled by the platform, then runs the
 * callbacks with -ECANCELED, the close callback, and frees.
 */

static void stream_close(sl_stream *s, sl_close_cb cb, int reset)
{
	struct sl_stream_base *b = sl_stream_base(s);

	if (s == NULL || (b->flags & ST_CLOSING))
		return;
	sl_os_stream_close(s, reset);
	b->flags |= ST_CLOSING;
	b->flags &= ~ST_READING;
	b->close_cb = cb;
	sl_timer_stop(&b->timer);
	sl_resolve_cancel(b->resolve);
	b->resolve = NULL;
	if (b->flags & ST_CONNECTING) {
		b->flags &= ~ST_CONNECTING;
		b->connect_status = -ECANCELED;
		b->connect_ready = 1;
	} else if (b->connect_ready) {
		/* Connected, or failed, with the callback still to run:
		 * closed first, as net.h says, so an owner that has moved
		 * on is not told of a connection it no longer holds. */
		b->connect_status = -ECANCELED;
	}
	free(b->addrs);
	b->addrs = NULL;
}

void sl_stream_close(sl_stream *s, sl_close_cb cb)
{
	stream_close(s, cb, 0);
}

void sl_stream_close_reset(sl_stream *s, sl_close_cb cb)
{
	stream_close(s, cb, 1);
}

/* ---- names and addresses ------------------------------------------------- */

static int name_of(const sl_stream *s, char *buf, size_t len, int peer)
{
	if (buf == NULL || len == 0)
		return -EINVAL;
	buf[0] = '\0';
	if (s == NULL)
		return -ENOTCONN;
	return sl_os_stream_name(s, peer, buf, len);
}

int sl_stream_peer_name(const sl_stream *s, char *buf, size_t len)
{
	return name_of(s, buf, len, 1);
}

int sl_stream_local_name(const sl_stream *s, char *buf, size_t len)
{
	return name_of(s, buf, len, 0);
}

static int addr_of(const sl_stream *s, sl_ipaddr *out, int peer)
{
	memset(out, 0, sizeof *out);
	if (s == NULL)
		return -ENOTCONN;
	return sl_os_stream_addr(s, peer, out);
}

int sl_stream_peer_addr(const sl_stream *s, sl_ipaddr *out)
{
	return addr_of(s, out, 1);
}

int sl_stream_local_addr(const sl_stream *s, sl_ipaddr *out)
{
	return addr_of(s, out, 0);
}
