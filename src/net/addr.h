/*
 * IP addresses as the proxy layer sees them (access lists, PROXY protocol
 * headers, source hashing), independent of the OS's sockaddr types.  Pure
 * functions, the same on every platform.
 */
#ifndef SL_ADDR_H
#define SL_ADDR_H

#include <stddef.h>
#include <stdint.h>

enum {
	SL_AF_NONE = 0, /* no IP address: a Unix socket or a named pipe */
	SL_AF_INET4 = 4,
	SL_AF_INET6 = 6,
};

typedef struct sl_ipaddr {
	uint8_t family; /* SL_AF_* */
	uint16_t port;  /* host byte order */
	uint8_t ip[16]; /* network byte order; IPv4 uses ip[0..3] */
} sl_ipaddr;

/* Longest text sl_ipaddr_format() writes, with its NUL. */
#define SL_IPADDR_TEXT_MAX 48

/*
 * An IPv4 dotted quad ("10.0.0.1", four decimal parts 0-255, no leading
 * zeros) or IPv6 text ("2001:db8::1", "::ffff:10.0.0.1"; no brackets, no
 * zone, no port), the whole of s.  port is set to 0.  0, or -1 when s is
 * not an address.
 */
int sl_ipaddr_parse(const char *s, sl_ipaddr *out);

/*
 * "10.0.0.1", "2001:db8::1" (RFC 5952: lower case, the longest run of zero
 * groups as ::), "::ffff:10.0.0.1" for IPv4-mapped; no port.  Family
 * SL_AF_NONE gives "".  Returns what snprintf() would.
 */
int sl_ipaddr_format(const sl_ipaddr *a, char *buf, size_t len);

/* An IPv4-mapped IPv6 address (::ffff:a.b.c.d) becomes a.b.c.d (family
 * 4, same port); anything else is left as it is. */
void sl_ipaddr_unmap(sl_ipaddr *a);

/* Non-zero when a and b are the same address (ports ignored), taking an
 * IPv4-mapped IPv6 address and its IPv4 address as the same. */
int sl_ipaddr_equal(const sl_ipaddr *a, const sl_ipaddr *b);

#endif
