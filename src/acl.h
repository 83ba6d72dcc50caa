/*
 * Access lists: allow and deny lists of CIDR blocks, judged by the most
 * specific match.  Pure code (no I/O, no OS calls), the same everywhere.
 *
 * Rule: among all entries of both lists that contain the address, the one
 * with the longest prefix decides (allow or deny); where an allow and a
 * deny entry of the same length both match, deny wins.  When nothing
 * matches, the address is denied if the allow list has entries, and
 * allowed otherwise.  So "deny: [10.0.0.0/8], allow: [10.1.0.0/16]" lets
 * 10.1.x.x in and keeps the rest of 10/8 out, whatever the order written.
 *
 * IPv4-mapped IPv6 addresses (::ffff:a.b.c.d, what a dual-stack [::]
 * listener reports for IPv4 clients) are judged as the IPv4 address they
 * carry, and CIDRs written in that form are stored as IPv4, so neither
 * spelling slips past the other.  An address without IP (Unix socket,
 * named pipe: SL_AF_NONE) is not judged by access lists: allowed.
 */
#ifndef SL_ACL_H
#define SL_ACL_H

#include <stddef.h>
#include <stdint.h>

#include "net/addr.h"

typedef struct sl_cidr {
	uint8_t family; /* SL_AF_INET4 or SL_AF_INET6 */
	uint8_t bits;   /* prefix length: 0-32 or 0-128 */
	uint8_t ip[16]; /* network byte order, host bits cleared */
} sl_cidr;

/* Longest text sl_cidr_format() writes, with its NUL. */
#define SL_CIDR_TEXT_MAX (SL_IPADDR_TEXT_MAX + 4)

/*
 * "10.0.0.0/8", "192.0.2.1" (a host: /32), "2001:db8::/32", "::1" (/128),
 * "::ffff:10.0.0.0/104" (stored as 10.0.0.0/8).  Host bits set below the
 * prefix ("10.0.0.1/8") are an error: the operator likely meant something
 * else.  On failure returns -1 and err says what was wrong and what was
 * expected, e.g. "prefix length 33 out of range (expected 0-32)".
 */
int sl_cidr_parse(const char *s, sl_cidr *out, char *err, size_t errlen);

/* "10.0.0.0/8", "2001:db8::/32".  Returns what snprintf() would. */
int sl_cidr_format(const sl_cidr *c, char *buf, size_t len);

/* Non-zero when a (IPv4-mapped taken as IPv4) lies inside c. */
int sl_cidr_contains(const sl_cidr *c, const sl_ipaddr *a);

struct sl_acl_rule {
	sl_cidr cidr;
	int allow;
};

typedef struct sl_acl {
	struct sl_acl_rule *rules; /* most specific first, deny before allow */
	size_t nrules;
	size_t nallow; /* allow entries: nothing matching them is denied */
} sl_acl;

/* An empty list allows everything; sl_acl_free() of it is harmless. */
#define SL_ACL_EMPTY {NULL, 0, 0}

/* Build from the two lists (either may be empty; the arrays are copied).
 * 0, -ENOMEM, or -EINVAL for a NULL array with a non-zero count or an
 * entry whose family is neither IPv4 nor IPv6. */
int sl_acl_init(sl_acl *acl, const sl_cidr *allow, size_t nallow,
		const sl_cidr *deny, size_t ndeny);
void sl_acl_free(sl_acl *acl);

/* Non-zero when acl has no entries (lets everything in). */
static inline int sl_acl_empty(const sl_acl *acl)
{
	return acl->nrules == 0;
}

/*
 * 1: allowed, 0: denied, by the rule above.  When rule is not NULL it is
 * set to the entry that decided (NULL: no entry matched).
 */
int sl_acl_check(const sl_acl *acl, const sl_ipaddr *a,
		 const struct sl_acl_rule **rule);

#endif
