/*
 * What the POSIX files of src/net share (internal to src/net, and to the
 * tests that need a bound port).
 */
#ifndef SL_NET_POSIX_H
#define SL_NET_POSIX_H

#include <sys/socket.h>
#include <sys/un.h>

#include "listener_common.h" /* sl_listener_port */
#include "net.h"

/*
 * configure's AC_CHECK_DECLS defines HAVE_DECL_X to 1 or 0; a direct build
 * without configure has none, and then the header's own macro decides.
 */
#if defined(HAVE_DECL_SOCK_CLOEXEC) && defined(HAVE_DECL_SOCK_NONBLOCK)
#if HAVE_DECL_SOCK_CLOEXEC && HAVE_DECL_SOCK_NONBLOCK
#define SL_HAVE_SOCK_FLAGS 1
#endif
#elif defined(SOCK_CLOEXEC) && defined(SOCK_NONBLOCK)
#define SL_HAVE_SOCK_FLAGS 1
#endif

#if defined(HAVE_DECL_MSG_NOSIGNAL)
#if HAVE_DECL_MSG_NOSIGNAL
#define SL_MSG_NOSIGNAL MSG_NOSIGNAL
#endif
#elif defined(MSG_NOSIGNAL)
#define SL_MSG_NOSIGNAL MSG_NOSIGNAL
#endif
#ifndef SL_MSG_NOSIGNAL
#define SL_MSG_NOSIGNAL 0
#endif

/* Linux: send(2) may hold the bytes for more (SL_WRITE_END_NEXT); 0
 * where there is no such flag, and the bytes go at once. */
#if defined(__linux__) && defined(MSG_MORE)
#define SL_MSG_MORE MSG_MORE
#else
#define SL_MSG_MORE 0
#endif

#if defined(HAVE_DECL_SO_NOSIGPIPE)
#if HAVE_DECL_SO_NOSIGPIPE
#define SL_HAVE_SO_NOSIGPIPE 1
#endif
#elif defined(SO_NOSIGPIPE)
#define SL_HAVE_SO_NOSIGPIPE 1
#endif

/*
 * A socket that is non-blocking and close-on-exec from the start where the
 * OS allows (SOCK_NONBLOCK|SOCK_CLOEXEC), else set with fcntl right after
 * (a fork in between may leak it: macOS has no atomic way).  Also sets
 * SO_NOSIGPIPE where it exists and MSG_NOSIGNAL does not.  -errno.
 */
int sl_socket(int family, int type);

/* Make fd non-blocking and close-on-exec (and SO_NOSIGPIPE).  0 or -errno. */
int sl_fd_prepare(int fd);

/* TCP_NODELAY: relayed bytes go out as they come; Nagle would only add
 * delay. */
void sl_tcp_nodelay(int fd);

/* sl_stream_set_keepalive() on a TCP descriptor.  0 or -errno. */
int sl_tcp_keepalive(int fd, const sl_keepalive *ka);

/*
 * Wrap a connected descriptor as a stream of loop, which must be the
 * calling thread's loop.  Takes fd over even on failure (closes it).
 */
int sl_stream_open_fd(sl_loop *loop, int fd, enum sl_ep_kind kind,
		      sl_stream **out);

/*
 * A stream for a descriptor accept() returned, with the peer address it
 * gave (kept for sl_stream_peer_name).  The listening socket had
 * sl_listen_tune(), whose options accepted sockets inherit.
 */
int sl_stream_open_accepted(sl_loop *loop, int fd, enum sl_ep_kind kind,
			    const struct sockaddr *peer, socklen_t len,
			    sl_stream **out);
void sl_listen_tune(int fd, enum sl_ep_kind kind);

/* Kill and reap every exec: child left (exec_posix.c), for
 * sl_net_shutdown() once no loop runs. */
void sl_exec_shutdown(void);

/*
 * Fill *sa_un and *len for a Unix endpoint ("@name": Linux abstract).
 * SL_EUNSUPP for an abstract name on other systems, -ENAMETOOLONG.
 */
int sl_unix_sockaddr(const sl_endpoint *ep, struct sockaddr_un *sa_un,
		     socklen_t *len);

/* "127.0.0.1:80", "[::1]:80", "unix:/p", "unix:@n", "unix:".  0 or -errno. */
int sl_sockaddr_name(const struct sockaddr *sa, socklen_t len, char *buf,
		     size_t buflen);

/*
 * Test seam: when set, called with the configured path of a Unix listener
 * right after its socket is bound, before ownership is set and before the
 * socket is in place at that path.  Tests play a local user racing the
 * listener from here; the daemon never sets it.
 */
extern void (*sl_unix_bound_hook)(const char *path);

#endif
