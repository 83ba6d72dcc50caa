/*
 * What streams do alike on every platform, written once: the getters,
 * closing, names and addresses, and connecting (resolve, then try each
 * address in turn, within the timeout).  What differs (descriptors and
 * readiness, or handles and completions) is behind the functions
 * stream_common.h lists for each platform.
 */
#include "stream_common.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void sl_stream_set_data(sl_stream *s, void *data)
{
	sl_stream_base(s)->data = data;
}

void *sl_stream_get_data(const sl_stream *s)
{
	return sl_stream_cbase(s)->data;
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
