/*
 * Host-name lookup off the loop threads (internal to src/net).
 *
 * getaddrinfo() blocks, sometimes for seconds, so loops never call it for a
 * name: resolver threads do, and post the answer back to the asking loop as
 * a task.  Successful answers are cached per host name and refreshed in
 * the background once older than the interval (sl_net_set_resolve_interval,
 * default SL_RESOLVE_TTL_MS); when a refresh fails, the last good answer is
 * used instead (an upstream keeps working through a DNS outage).
 *
 * Literal addresses never reach the threads: sl_resolve_numeric() turns them
 * into socket addresses on the spot.
 */
#ifndef SL_RESOLVER_H
#define SL_RESOLVER_H

#include <stddef.h>
#include <stdint.h>

#ifdef _WIN32
#include <winsock2.h>
#include <ws2tcpip.h>
#else
#include <sys/socket.h>
#endif

#include "addr.h"
#include "loop/loop.h"

#define SL_RESOLVE_TTL_MS 10000
#define SL_RESOLVE_MAX_ADDRS 16 /* addresses kept per answer */

struct sl_addr {
	struct sockaddr_storage ss;
	socklen_t len;
};

typedef struct sl_resolve sl_resolve;

/*
 * Result, on the loop given to sl_resolve_start(): status 0 with n >= 1
 * addresses (port already set), or SL_ERESOLVE (n = 0).  addrs is valid
 * during the call only.  The request is freed after the callback returns.
 */
typedef void (*sl_resolve_cb)(void *arg, int status,
			      const struct sl_addr *addrs, size_t n);

/* A socket address as an sl_ipaddr (SL_AF_NONE when not IPv4/IPv6). */
void sl_sockaddr_ip(const struct sockaddr *sa, size_t len, sl_ipaddr *out);

/* Start and stop the resolver threads (sl_net_init, sl_net_shutdown). */
int sl_resolver_init(void);
void sl_resolver_shutdown(void);

/*
 * Tests: look names up with fn instead of getaddrinfo() (NULL: back to
 * it).  fn fills up to max addresses (ports are set afterwards) and
 * returns 0 or SL_ERESOLVE.  Any thread.
 */
typedef int (*sl_lookup_fn)(const char *host, struct sl_addr *addrs,
			    size_t max, size_t *n);
void sl_resolver_set_lookup(sl_lookup_fn fn);

/*
 * Look host up for TCP on port, from loop's thread.  On 0, *out names the
 * request until its callback has run or it was cancelled; cb never runs
 * inside this call.  -EINVAL when the resolver was not started.
 */
int sl_resolve_start(sl_loop *loop, const char *host, uint16_t port,
		     sl_resolve_cb cb, void *arg, sl_resolve **out);

/* Loop thread: cb will not run; the request is freed later.  NULL is ok. */
void sl_resolve_cancel(sl_resolve *r);

/*
 * Synchronous lookups for the main thread and for literals.  Fill up to max
 * addresses, set *n; return 0 or SL_ERESOLVE.  passive: for bind().
 * sl_resolve_numeric never touches the network (AI_NUMERICHOST); a %zone
 * suffix of an IPv6 literal becomes the scope id.
 */
int sl_resolve_numeric(const char *host, uint16_t port, int passive,
		       struct sl_addr *addrs, size_t max, size_t *n);
int sl_resolve_sync(const char *host, uint16_t port, int passive,
		    struct sl_addr *addrs, size_t max, size_t *n);

#endif
