/*
 * POSIX sockets: descriptors made non-blocking and close-on-exec, socket
 * addresses and their names, and the process-wide setup (as libuv's
 * src/unix/core.c): what streams and listeners share below them.
 */
#include "posix.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include "resolver.h"

/* ---- descriptors -------------------------------------------------------- */

int sl_fd_prepare(int fd)
{
	int fl;

	fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -errno;
	fl = fcntl(fd, F_GETFD);
	if (fl < 0 || fcntl(fd, F_SETFD, fl | FD_CLOEXEC) < 0)
		return -errno;
#if SL_MSG_NOSIGNAL == 0 && defined(SL_HAVE_SO_NOSIGPIPE)
	{
		/* macOS: no MSG_NOSIGNAL; the socket option instead. */
		int one = 1;

		if (setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one,
			       sizeof one) < 0)
			return -errno;
	}
#endif
	return 0;
}

int sl_socket(int family, int type)
{
	int fd, r;

#ifdef SL_HAVE_SOCK_FLAGS
	fd = socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
#if SL_MSG_NOSIGNAL == 0 && defined(SL_HAVE_SO_NOSIGPIPE)
	r = sl_fd_prepare(fd);
	if (r < 0) {
		close(fd);
		return r;
	}
#endif
	(void)r;
#else
	fd = socket(family, type, 0);
	if (fd < 0)
		return -errno;
	r = sl_fd_prepare(fd);
	if (r < 0) {
		close(fd);
		return r;
	}
#endif
	return fd;
}

int sl_unix_sockaddr(const sl_endpoint *ep, struct sockaddr_un *sa_un,
		     socklen_t *len)
{
	size_t n = strlen(ep->path);

	memset(sa_un, 0, sizeof *sa_un);
	sa_un->sun_family = AF_UNIX;
	if (ep->abstract) {
#ifdef __linux__
		/* Linux: a leading NUL names the abstract namespace; the
		 * address length, not a terminator, ends the name. */
		if (n > sizeof sa_un->sun_path)
			return -ENAMETOOLONG;
		memcpy(sa_un->sun_path + 1, ep->path + 1, n - 1);
		*len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
		return 0;
#else
		return SL_EUNSUPP;
#endif
	}
	if (n == 0 || n >= sizeof sa_un->sun_path)
		return -ENAMETOOLONG;
	memcpy(sa_un->sun_path, ep->path, n + 1);
	*len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
	return 0;
}

int sl_sockaddr_name(const struct sockaddr *sa, socklen_t len, char *buf,
		     size_t buflen)
{
	char addr[INET6_ADDRSTRLEN], ifname[IF_NAMESIZE];
	size_t off = offsetof(struct sockaddr_un, sun_path);

	if (buf == NULL || buflen == 0)
		return -EINVAL;
	buf[0] = '\0';
	switch (sa->sa_family) {
	case AF_INET: {
		const struct sockaddr_in *in = (const void *)sa;

		inet_ntop(AF_INET, &in->sin_addr, addr, sizeof addr);
		snprintf(buf, buflen, "%s:%u", addr,
			 (unsigned)ntohs(in->sin_port));
		return 0;
	}
	case AF_INET6: {
		const struct sockaddr_in6 *in6 = (const void *)sa;

		inet_ntop(AF_INET6, &in6->sin6_addr, addr, sizeof addr);
		if (in6->sin6_scope_id == 0)
			snprintf(buf, buflen, "[%s]:%u", addr,
				 (unsigned)ntohs(in6->sin6_port));
		else if (if_indextoname(in6->sin6_scope_id, ifname) != NULL)
			snprintf(buf, buflen, "[%s%%%s]:%u", addr, ifname,
				 (unsigned)ntohs(in6->sin6_port));
		else
			snprintf(buf, buflen, "[%s%%%u]:%u", addr,
				 (unsigned)in6->sin6_scope_id,
				 (unsigned)ntohs(in6->sin6_port));
		return 0;
	}
	case AF_UNIX: {
		const struct sockaddr_un *un = (const void *)sa;
		size_t n;

		if ((size_t)len <= off) { /* unnamed (a connecting client) */
			snprintf(buf, buflen, "unix:");
			return 0;
		}
		n = (size_t)len - off;
		if (n > sizeof un->sun_path)
			n = sizeof un->sun_path;
		if (un->sun_path[0] == '\0') {
			if (n <= 1) { /* Linux: a zero-length abstract name */
				snprintf(buf, buflen, "unix:");
				return 0;
			}
			snprintf(buf, buflen, "unix:@%.*s", (int)(n - 1),
				 un->sun_path + 1);
			return 0;
		}
		snprintf(buf, buflen, "unix:%.*s",
			 (int)strnlen(un->sun_path, n), un->sun_path);
		return 0;
	}
	}
	return -EAFNOSUPPORT;
}

void sl_tcp_nodelay(int fd)
{
	int one = 1;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* One TCP option of ka's; 0 (the system's value) is left alone. */
static int tcp_knob(int fd, int opt, unsigned v)
{
	int n = (int)v;

	if (v == 0 || setsockopt(fd, IPPROTO_TCP, opt, &n, sizeof n) == 0)
		return 0;
	return -errno;
}

/*
 * SO_KEEPALIVE, then each of idle, interval and count that ka gives (0
 * leaves the system's: Linux 7200 s, 75 s, 9).  macOS names the idle
 * time TCP_KEEPALIVE; a system without one of the three keeps its own
 * value for it.
 */
int sl_tcp_keepalive(int fd, const sl_keepalive *ka)
{
	int on = ka->on != 0, r = 0;

	if (setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on) < 0)
		return -errno;
	if (!on)
		return 0;
#if defined(TCP_KEEPIDLE)
	r = tcp_knob(fd, TCP_KEEPIDLE, ka->idle);
#elif defined(TCP_KEEPALIVE)
	r = tcp_knob(fd, TCP_KEEPALIVE, ka->idle);
#endif
#if defined(TCP_KEEPINTVL)
	if (r == 0)
		r = tcp_knob(fd, TCP_KEEPINTVL, ka->interval);
#endif
#if defined(TCP_KEEPCNT)
	if (r == 0)
		r = tcp_knob(fd, TCP_KEEPCNT, ka->count);
#endif
	return r;
}

void sl_listen_tune(int fd, enum sl_ep_kind kind)
{
	if (kind == SL_EP_TCP)
		sl_tcp_nodelay(fd); /* inherited by accepted sockets */
}

/* ---- process-wide ------------------------------------------------------- */

int sl_net_init(void)
{
	struct sigaction sa;

	/* Belt and braces next to MSG_NOSIGNAL/SO_NOSIGPIPE: a write to a
	 * closed peer must be an EPIPE, never a dead daemon. */
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = SIG_IGN;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGPIPE, &sa, NULL) < 0)
		return -errno;
	return sl_resolver_init();
}

void sl_net_shutdown(void)
{
	sl_exec_shutdown();
	sl_resolver_shutdown();
}
