/*
 * Connecting Windows streams: ConnectEx on a socket for each address in
 * turn, or CreateFile on a named pipe, retried on a timer while every
 * instance is busy.  stream_common.c resolves and keeps the time.
 */
#include "stream_win.h"

#include <mstcpip.h> /* SIO_TCP_INITIAL_RTO */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ERROR_PIPE_BUSY: retry CreateFile after this, up to the connect timeout
 * (never WaitNamedPipe on a loop thread). */
#define SL_PIPE_BUSY_RETRY_MS 10
#define SL_PIPE_BUSY_DEFAULT_MS 10000

void sl_os_connect_finish(sl_stream *s, int status)
{
	sl_connect_cb cb = s->b.connect_cb;

	s->b.flags &= ~ST_CONNECTING;
	sl_timer_stop(&s->b.timer);
	sl_timer_stop(&s->retry);
	free(s->b.addrs);
	s->b.addrs = NULL;
	s->b.connect_cb = NULL;
	cb(s, status);
}

/* From inside sl_stream_connect: the callback must wait for the loop. */
static void connect_finish_later(sl_stream *s, int status)
{
	s->b.flags &= ~ST_CONNECTING;
	sl_timer_stop(&s->b.timer);
	sl_timer_stop(&s->retry);
	s->b.connect_status = status;
	s->b.connect_ready = 1;
	sl_stream_schedule(s);
}

/*
 * A TCP socket whose local address is its peer's connected to itself: a
 * bind to port 0 picked the destination's own port, which can only happen
 * while nobody listens there, and the SYN met itself (a simultaneous
 * open).  Wine 8 passes the bind to Linux, whose bind(0) can hand out the
 * port an upstream on the same host has just let go, and Linux completes
 * the open: the session then talked to itself and its client read its own
 * bytes back, and a health check saw the upstream up.  Go's net package
 * meets the same in its dials (golang.org/issue/2690) and dials again;
 * here it is the refusal it stands for, so failover and the passive
 * health count see what a connect a moment earlier would have seen.
 * Whether Windows' own stack ever completes such an open only Windows
 * can show; the check costs a few compares there.
 */
static int self_connected(const sl_stream *s)
{
	const struct sockaddr *l = (const struct sockaddr *)&s->local;
	const struct sockaddr *p = (const struct sockaddr *)&s->peer;

	if (s->local_len == 0 || s->local_len != s->peer_len ||
	    l->sa_family != p->sa_family)
		return 0;
	if (l->sa_family == AF_INET) {
		const struct sockaddr_in *a = (const void *)l,
					 *b = (const void *)p;

		return a->sin_port == b->sin_port &&
		       a->sin_addr.s_addr == b->sin_addr.s_addr;
	}
	if (l->sa_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const void *)l,
					  *b = (const void *)p;

		return a->sin6_port == b->sin6_port &&
		       memcmp(&a->sin6_addr, &b->sin6_addr,
			      sizeof a->sin6_addr) == 0;
	}
	return 0;
}

static void on_connect_done(sl_loop *loop, sl_op *op, int err, size_t n)
{
	sl_stream *s = op->data;
	int len;

	(void)loop;
	(void)n;
	s->pending--;
	if (s->b.flags & ST_CLOSING) {
		sl_stream_maybe_free(s);
		return;
	}
	if (s->b.flags & ST_TIMED_OUT) {
		sl_os_connect_finish(s, -ETIMEDOUT);
		return;
	}
	if (err == 0) {
		/* First, before SO_ERROR, getsockname, getpeername or
		 * shutdown: they need the socket's connected state. */
		if (setsockopt(s->sock, SOL_SOCKET, SO_UPDATE_CONNECT_CONTEXT,
			       NULL, 0) != 0)
			err = sl_win_err((unsigned long)WSAGetLastError());
	}
	if (err == 0) {
		len = sizeof s->local;
		if (getsockname(s->sock, (struct sockaddr *)&s->local, &len) ==
		    0)
			s->local_len = len;
		len = sizeof s->peer;
		if (getpeername(s->sock, (struct sockaddr *)&s->peer, &len) ==
		    0)
			s->peer_len = len;
		if (!self_connected(s)) {
			sl_os_connect_finish(s, 0);
			return;
		}
		err = -ECONNREFUSED;
		s->local_len = s->peer_len = 0;
	}
	closesocket(s->sock);
	s->sock = INVALID_SOCKET;
	s->b.last_err = err;
	sl_os_connect_next(s, 0);
}

/*
 * SO_REUSE_UNICASTPORT (Windows 10 1703 and later; mingw's headers may lack
 * it): a socket bound to port 0 before connecting gets its port when it
 * connects, from the ports not in use towards that destination, instead of
 * reserving one from the machine-wide range at bind time.  Without it,
 * about 16k upstream connections exhaust the range (WSAENOBUFS: .NET met
 * it, dotnet/runtime#47531, and sets the option for the same reason).
 * Wine 8 accepts the option and does nothing with it (its getsockopt
 * does not know it).
 */
#ifndef SO_REUSE_UNICASTPORT
#define SO_REUSE_UNICASTPORT 0x3007
#endif

/*
 * Windows answers a refused connect (RST) by retransmitting the SYN, twice
 * by default, and reports the refusal after about 2 s; on loopback that
 * only delays failover and health checks.  SIO_TCP_INITIAL_RTO (Windows 10
 * 1607 and later; libuv does the same in uv__tcp_try_connect) turns those
 * retransmissions off for the socket.  Wine 8 does not know the ioctl
 * (WSAEOPNOTSUPP) and its refusals come at once anyway: only Windows shows
 * the time saved.
 */
static int is_loopback(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const void *)sa;

		return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const void *)sa;
		const unsigned char *b = in6->sin6_addr.s6_addr;

		if (IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr))
			return 1;
		return IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr) && b[12] == 127;
	}
	return 0;
}

int sl_connect_step(SOCKET s, enum sl_connect_step step,
		    const struct sockaddr *dest, int destlen,
		    const struct sockaddr *src, int srclen)
{
	struct sockaddr_storage any;
	TCP_INITIAL_RTO_PARAMETERS rto = {
		TCP_INITIAL_RTO_UNSPECIFIED_RTT,
		TCP_INITIAL_RTO_NO_SYN_RETRANSMISSIONS,
	};
	DWORD on = 1, n = 0;
	int r = 0;

	(void)destlen;
	switch (step) {
	case SL_CONNECT_REUSE_PORT:
		r = setsockopt(s, SOL_SOCKET, SO_REUSE_UNICASTPORT,
			       (const char *)&on, sizeof on);
		break;
	case SL_CONNECT_BIND:
		if (src != NULL) {
			r = bind(s, src, srclen);
			break;
		}
		memset(&any, 0, sizeof any);
		any.ss_family = dest->sa_family;
		r = bind(s, (struct sockaddr *)&any,
			 dest->sa_family == AF_INET6
				 ? (int)sizeof(struct sockaddr_in6)
				 : (int)sizeof(struct sockaddr_in));
		break;
	case SL_CONNECT_NO_SYN_RETRY:
		r = WSAIoctl(s, SIO_TCP_INITIAL_RTO, &rto, sizeof rto, NULL, 0,
			     &n, NULL, NULL);
		break;
	}
	return r == 0 ? 0 : WSAGetLastError();
}

sl_connect_step_fn sl_connect_step_hook = sl_connect_step;

/* The socket for one attempt on a, bound and attached to the loop. */
static SOCKET connect_socket(sl_stream *s, const struct sl_addr *a)
{
	const struct sockaddr *dest = (const struct sockaddr *)&a->ss;
	struct sockaddr_storage src_ss;
	const struct sockaddr *src = NULL;
	socklen_t srclen;
	SOCKET sock;
	int e, r;

	/* A source of the other family: this address is not tried. */
	if ((r = sl_connect_source(s, a->ss.ss_family, &src_ss, &srclen)) < 0) {
		s->b.last_err = r;
		return INVALID_SOCKET;
	}
	if (srclen > 0)
		src = (const struct sockaddr *)&src_ss;
	sock = sl_win_socket(a->ss.ss_family);
	if (sock == INVALID_SOCKET) {
		s->b.last_err = sl_win_err((unsigned long)WSAGetLastError());
		return INVALID_SOCKET;
	}
	/* Before the bind, where the system picks the port.  A system that
	 * does not know the option (older than Windows 10 1703) binds as
	 * before. */
	if (src == NULL || s->b.source.port == 0) {
		e = sl_connect_step_hook(sock, SL_CONNECT_REUSE_PORT, dest,
					 (int)a->len, src, srclen);
		if (e != 0 && e != WSAENOPROTOOPT && e != WSAEINVAL)
			goto fail;
	}
	/* ConnectEx wants a bound socket: to the source, if there is one. */
	e = sl_connect_step_hook(sock, SL_CONNECT_BIND, dest, (int)a->len, src,
				 srclen);
	if (e != 0)
		goto fail;
	/* Where the system has no such ioctl, SYNs are retried as before. */
	if (is_loopback(dest))
		(void)sl_connect_step_hook(sock, SL_CONNECT_NO_SYN_RETRY, dest,
					   (int)a->len, src, srclen);
	if ((r = sl_win_socket_tune(sock)) < 0 ||
	    (r = sl_loop_associate(s->b.loop, (HANDLE)sock)) < 0) {
		s->b.last_err = r;
		closesocket(sock);
		return INVALID_SOCKET;
	}
	s->skip = sl_win_socket_skip(sock, dest->sa_family);
	return sock;
fail:
	s->b.last_err = sl_win_err((unsigned long)e);
	closesocket(sock);
	return INVALID_SOCKET;
}

void sl_os_connect_next(sl_stream *s, int inside)
{
	while (s->b.next_addr < s->b.naddrs) {
		const struct sl_addr *a = &s->b.addrs[s->b.next_addr++];
		SOCKET sock = connect_socket(s, a);
		BOOL ok;
		int r;

		if (sock == INVALID_SOCKET)
			continue;
		s->sock = sock;
		sl_op_init(&s->conn_op, on_connect_done, s);
		ok = sl_ConnectEx(sock, (const struct sockaddr *)&a->ss,
				  (int)a->len, NULL, 0, NULL, &s->conn_op.ov);
		r = sl_op_started(s->b.loop, &s->conn_op, ok,
				  ok ? 0 : (unsigned long)WSAGetLastError(),
				  s->skip);
		if (r == 0) {
			s->pending++;
			return;
		}
		s->b.last_err = r;
		closesocket(sock);
		s->sock = INVALID_SOCKET;
	}
	if (inside)
		connect_finish_later(s, s->b.last_err != 0 ? s->b.last_err
							 : -ECONNREFUSED);
	else
		sl_os_connect_finish(s, s->b.last_err != 0 ? s->b.last_err
							   : -ECONNREFUSED);
}

int sl_os_connect_timeout(sl_stream *s)
{
	if (s->pending > 0 && s->sock != INVALID_SOCKET) {
		/* ConnectEx in flight: closing it makes it complete. */
		s->b.flags |= ST_TIMED_OUT;
		closesocket(s->sock);
		s->sock = INVALID_SOCKET;
		return 1;
	}
	return 0;
}

/* One CreateFile on the pipe: 1 connected, 0 busy (retry), -errno. */
static int pipe_try_open(sl_stream *s)
{
	wchar_t wpath[SL_EP_PATH_MAX];
	HANDLE h;
	int r;

	if (MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, s->path, -1,
				wpath, SL_EP_PATH_MAX) == 0)
		return -EINVAL;
	h = CreateFileW(wpath, GENERIC_READ | GENERIC_WRITE, 0, NULL,
			OPEN_EXISTING,
			FILE_FLAG_OVERLAPPED | SECURITY_SQOS_PRESENT |
				SECURITY_IDENTIFICATION,
			NULL);
	if (h == INVALID_HANDLE_VALUE) {
		DWORD e = GetLastError();

		if (e == ERROR_PIPE_BUSY)
			return 0;
		if (e == ERROR_FILE_NOT_FOUND)
			return -ECONNREFUSED; /* nobody serves that name */
		return sl_win_err(e);
	}
	if ((r = sl_loop_associate(s->b.loop, h)) < 0) {
		CloseHandle(h);
		return r;
	}
	s->pipe = h;
	s->skip = sl_win_pipe_skip(h);
	return 1;
}

void sl_pipe_busy_retry(sl_timer *t)
{
	sl_stream *s = t->data;
	int r;

	if (!(s->b.flags & ST_CONNECTING))
		return;
	r = pipe_try_open(s);
	if (r > 0) {
		sl_os_connect_finish(s, 0);
	} else if (r < 0) {
		sl_os_connect_finish(s, r);
	} else if (sl_loop_now(s->b.loop) >= s->busy_deadline) {
		sl_os_connect_finish(s, -ETIMEDOUT);
	} else {
		sl_timer_start(&s->retry, SL_PIPE_BUSY_RETRY_MS);
	}
}

int sl_os_connect_local(sl_stream *s, const sl_endpoint *ep,
			uint64_t timeout_ms)
{
	int r;

	snprintf(s->path, sizeof s->path, "%s", ep->path);
	r = pipe_try_open(s);
	if (r > 0) {
		connect_finish_later(s, 0);
	} else if (r < 0) {
		connect_finish_later(s, r);
	} else {
		/* All instances busy: try again on a timer until the connect
		 * timeout. */
		s->busy_deadline = sl_loop_now(s->b.loop) +
				   (timeout_ms > 0 ? timeout_ms
						   : SL_PIPE_BUSY_DEFAULT_MS);
		sl_timer_start(&s->retry, SL_PIPE_BUSY_RETRY_MS);
	}
	return 1;
}
