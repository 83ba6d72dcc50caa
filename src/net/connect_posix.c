/*
 * Connecting POSIX streams: a socket for each address in turn, connect(2)
 * without blocking, and its outcome from the watcher (as libuv's tcp.c and
 * pipe.c).  stream_common.c resolves and keeps the time;
 * sl_os_connect_finish (stream_posix.c) takes the connected stream over.
 */
#include "stream_posix.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <netinet/in.h>
#include <netinet/tcp.h>

void sl_connect_event(sl_stream *s, unsigned events)
{
	socklen_t len = sizeof(int);
	int err = 0;

	/* A failed connect reports an error or a hang-up with the write
	 * readiness (EPOLLERR, kqueue's EV_EOF): only then is SO_ERROR worth
	 * a system call. */
	if (s->io.error != 0)
		err = s->io.error; /* the event carried it (kqueue) */
	else if ((events & (SL_IO_ERROR | SL_IO_HUP)) &&
		 getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		err = errno;
	if (err == 0) {
		sl_os_connect_finish(s, 0);
		return;
	}
	sl_io_forget(&s->io);
	close(s->fd);
	s->fd = -1;
	s->b.last_err = -err;
	sl_os_connect_next(s, 0);
}

/*
 * Linux completes a connect to a loopback address inside connect() itself
 * (the SYN, the SYN-ACK and the ACK all pass in that call), yet says
 * EINPROGRESS.  Asking the socket's state costs one system call; waiting
 * for the writable event would cost a registration for it, a change of
 * it afterwards, and a turn of the loop.  Any other destination takes a
 * round trip at least, so it is not asked.
 */
#if defined(__linux__) && defined(TCP_INFO)
static int connected_at_once(int fd, const struct sockaddr_storage *ss)
{
	struct tcp_info ti;
	socklen_t len = sizeof ti;

	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const void *)ss;

		if ((ntohl(sin->sin_addr.s_addr) >> 24) != 127)
			return 0;
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const void *)ss;

		if (!IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr) &&
		    !(IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr) &&
		      sin6->sin6_addr.s6_addr[12] == 127))
			return 0;
	} else {
		return 0;
	}
	return getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0 &&
	       len > offsetof(struct tcp_info, tcpi_state) &&
	       ti.tcpi_state == TCP_ESTABLISHED;
}
#else
static int connected_at_once(int fd, const struct sockaddr_storage *ss)
{
	(void)fd;
	(void)ss;
	return 0;
}
#endif

/*
 * Bind fd to the connect's source, if it has one, for a connect to an
 * address of family.  Linux: with port 0, IP_BIND_ADDRESS_NO_PORT first
 * (4.2 and later; also for IPv6 sockets), so the bind takes the address
 * only and the port is chosen at connect(), by the 4-tuple: a bind(0)
 * would hold a port of the ephemeral range for good, and with many
 * upstream connections run out of them (EADDRINUSE) long before the
 * connect would.  An older kernel that does not know the option binds
 * the old way.  0 or -errno (SL_ESRCFAMILY).
 */
static int bind_source(sl_stream *s, int fd, int family)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int r = sl_connect_source(s, family, &ss, &len);

	if (r < 0 || len == 0)
		return r;
#if defined(__linux__)
#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif
	if (s->b.source.port == 0) {
		int one = 1;

		(void)setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one,
				 sizeof one);
	}
#endif
	if (bind(fd, (const struct sockaddr *)&ss, len) < 0)
		return -errno;
	return 0;
}

/* inside: no matter here; every callback comes from the stream's task. */
void sl_os_connect_next(sl_stream *s, int inside)
{
	const struct sl_addr *a;
	int fd, r, err;

	while (s->b.next_addr < s->b.naddrs) {
		a = &s->b.addrs[s->b.next_addr++];
		fd = sl_socket(a->ss.ss_family, SOCK_STREAM);
		if (fd < 0) {
			s->b.last_err = fd;
			continue;
		}
		if (s->b.kind == SL_EP_TCP) {
			sl_tcp_nodelay(fd);
			if ((r = bind_source(s, fd, a->ss.ss_family)) < 0) {
				close(fd);
				s->b.last_err = r;
				continue;
			}
		}
		do
			r = connect(fd, (const struct sockaddr *)&a->ss, a->len);
		while (r < 0 && errno == EINTR);
		err = r < 0 ? errno : 0;
		s->fd = fd;
		sl_io_init(s->b.loop, &s->io, fd, sl_stream_on_io, s);
		if (r == 0 || (err == EINPROGRESS && s->b.kind == SL_EP_TCP &&
			       connected_at_once(fd, &a->ss))) {
			sl_os_connect_finish(s, 0);
			return;
		}
		if (err == EINPROGRESS) {
			r = sl_stream_update_io(s);
			if (r == 0)
				return;
		} else {
			/* Linux: a Unix socket with a full backlog says
			 * EAGAIN; that is a failure here, never a retry. */
			r = -err;
		}
		sl_io_forget(&s->io);
		close(fd);
		s->fd = -1;
		s->b.last_err = r;
	}
	sl_os_connect_finish(s, s->b.last_err != 0 ? s->b.last_err
						   : -ECONNREFUSED);
}

int sl_os_connect_local(sl_stream *s, const sl_endpoint *ep,
			uint64_t timeout_ms)
{
	struct sockaddr_un sa_un;
	socklen_t len;
	int r;

	(void)timeout_ms; /* the common timer keeps it */
	s->b.addrs = calloc(1, sizeof *s->b.addrs);
	if (s->b.addrs == NULL)
		return -ENOMEM;
	r = sl_unix_sockaddr(ep, &sa_un, &len);
	if (r < 0)
		return r;
	memcpy(&s->b.addrs[0].ss, &sa_un, len);
	s->b.addrs[0].len = len;
	s->b.naddrs = 1;
	return 0;
}

int sl_os_connect_timeout(sl_stream *s)
{
	if (s->fd >= 0) {
		sl_io_forget(&s->io);
		close(s->fd);
		s->fd = -1;
	}
	return 0;
}
