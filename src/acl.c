/*
 * CIDR blocks and access lists.  The list is sorted once, at init, so that
 * a check is a walk to the first entry that contains the address: the
 * longest prefix comes first, and at equal length deny comes before allow,
 * which is the whole rule of acl.h.
 *
 * IPv4-mapped addresses are turned into IPv4 on both sides (the client's
 * address and a rule written as ::ffff:a.b.c.d/N, N >= 96) before anything
 * is compared; nothing compares a mapped address with an IPv4 one.  An
 * IPv6 block shorter than /96 that happens to cover ::ffff:0:0/96 (::/0,
 * ::/64) therefore does not match IPv4 clients: they are judged as IPv4
 * whether they came in through an IPv4 listener or a dual-stack one.
 */
#include "acl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errf.h"

#define EXPECTED_CIDR "expected e.g. 10.0.0.0/8 or 2001:db8::/32"

static const uint8_t mapped_prefix[12] = {
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff,
};

static unsigned max_bits(uint8_t family)
{
	return family == SL_AF_INET4 ? 32 : 128;
}

/* Do a and b agree in their first bits bits? */
static int prefix_equal(const uint8_t *a, const uint8_t *b, unsigned bits)
{
	unsigned full = bits / 8, rest = bits % 8;
	uint8_t mask;

	if (memcmp(a, b, full) != 0)
		return 0;
	if (rest == 0)
		return 1;
	mask = (uint8_t)(0xff << (8 - rest));
	return ((a[full] ^ b[full]) & mask) == 0;
}

/* Zero every bit after the first bits bits of ip[16]. */
static void clear_host_bits(uint8_t *ip, unsigned bits)
{
	unsigned full = bits / 8, rest = bits % 8;

	if (rest != 0) {
		ip[full] &= (uint8_t)(0xff << (8 - rest));
		full++;
	}
	if (full < 16)
		memset(ip + full, 0, 16 - full);
}

/*
 * The one form every comparison uses: a block inside ::ffff:0:0/96 becomes
 * the IPv4 block it stands for, the prefix length is capped at the
 * family's, and host bits are cleared (a block built by hand rather than
 * by sl_cidr_parse may have them).
 */
static void cidr_normalise(sl_cidr *c)
{
	if (c->family == SL_AF_INET6 && c->bits >= 96 &&
	    memcmp(c->ip, mapped_prefix, sizeof mapped_prefix) == 0) {
		c->family = SL_AF_INET4;
		c->bits = (uint8_t)(c->bits - 96);
		memmove(c->ip, c->ip + 12, 4);
		memset(c->ip + 4, 0, sizeof c->ip - 4);
	}
	if (c->bits > max_bits(c->family))
		c->bits = (uint8_t)max_bits(c->family);
	clear_host_bits(c->ip, c->bits);
}

/* A decimal prefix length, the whole of s, 0-maxbits. */
static int parse_bits(const char *s, unsigned maxbits, unsigned *bits,
		      char *err, size_t errlen)
{
	unsigned long v = 0;

	if (*s == '\0')
		return sl_errf(err, errlen, -1,
			       "missing prefix length after '/' (expected "
			       "0-%u)",
			       maxbits);
	for (const char *p = s; *p != '\0'; p++) {
		if (*p < '0' || *p > '9')
			return sl_errf(err, errlen, -1,
				       "prefix length '%.16s' is not a number "
				       "(expected 0-%u)",
				       s, maxbits);
		/* Saturate instead of overflowing on absurd digit strings. */
		if (v <= 128)
			v = v * 10 + (unsigned long)(*p - '0');
	}
	if (s[0] == '0' && s[1] != '\0')
		return sl_errf(err, errlen, -1,
			       "prefix length '%.16s' has a leading zero "
			       "(expected 0-%u)",
			       s, maxbits);
	if (v > maxbits)
		return sl_errf(err, errlen, -1,
			       "prefix length %.16s out of range (expected "
			       "0-%u)",
			       s, maxbits);
	*bits = (unsigned)v;
	return 0;
}

int sl_cidr_parse(const char *s, sl_cidr *out, char *err, size_t errlen)
{
	char text[SL_IPADDR_TEXT_MAX];
	const char *slash;
	sl_ipaddr a, masked;
	unsigned bits;
	size_t n;

	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if (out == NULL)
		return -1;
	memset(out, 0, sizeof *out);
	if (s == NULL || *s == '\0')
		return sl_errf(err, errlen, -1,
			       "empty address (" EXPECTED_CIDR ")");
	slash = strchr(s, '/');
	n = slash != NULL ? (size_t)(slash - s) : strlen(s);
	if (n >= sizeof text)
		goto not_addr;
	memcpy(text, s, n);
	text[n] = '\0';
	if (sl_ipaddr_parse(text, &a) < 0)
		goto not_addr;
	bits = max_bits(a.family);
	if (slash != NULL && parse_bits(slash + 1, bits, &bits, err,
					errlen) < 0)
		return -1;
	masked = a;
	clear_host_bits(masked.ip, bits);
	if (memcmp(masked.ip, a.ip, sizeof a.ip) != 0) {
		sl_ipaddr_format(&masked, text, sizeof text);
		return sl_errf(err, errlen, -1,
			       "'%.64s' has host bits set (expected %s/%u)", s,
			       text, bits);
	}
	out->family = a.family;
	out->bits = (uint8_t)bits;
	memcpy(out->ip, a.ip, sizeof out->ip);
	cidr_normalise(out);
	return 0;
not_addr:
	return sl_errf(err, errlen, -1,
		       "'%.64s' is not an IP address or CIDR (" EXPECTED_CIDR
		       ")",
		       s);
}

int sl_cidr_format(const sl_cidr *c, char *buf, size_t len)
{
	char text[SL_IPADDR_TEXT_MAX];
	sl_ipaddr a;

	memset(&a, 0, sizeof a);
	a.family = c->family;
	memcpy(a.ip, c->ip, sizeof a.ip);
	sl_ipaddr_format(&a, text, sizeof text);
	return snprintf(buf, len, "%s/%u", text, (unsigned)c->bits);
}

int sl_cidr_contains(const sl_cidr *c, const sl_ipaddr *a)
{
	sl_cidr n = *c;
	sl_ipaddr x = *a;

	if (n.family != SL_AF_INET4 && n.family != SL_AF_INET6)
		return 0;
	cidr_normalise(&n);
	sl_ipaddr_unmap(&x);
	if (x.family != n.family)
		return 0;
	return prefix_equal(n.ip, x.ip, n.bits);
}

/*
 * Check order: longer prefixes first, deny before allow at equal length;
 * family and address only make the order the same on every qsort.
 */
static int rule_cmp(const void *pa, const void *pb)
{
	const struct sl_acl_rule *a = pa, *b = pb;

	if (a->cidr.bits != b->cidr.bits)
		return a->cidr.bits > b->cidr.bits ? -1 : 1;
	if (a->allow != b->allow)
		return a->allow ? 1 : -1;
	if (a->cidr.family != b->cidr.family)
		return a->cidr.family < b->cidr.family ? -1 : 1;
	return memcmp(a->cidr.ip, b->cidr.ip, sizeof a->cidr.ip);
}

/*
 * Copies both lists (the caller keeps its arrays).  Entries are stored
 * normalised (IPv4-mapped blocks as IPv4, host bits cleared).  -EINVAL
 * when a count is non-zero with a NULL array or an entry's family is
 * neither IPv4 nor IPv6: dropping such an entry instead could empty the
 * allow list and so let everybody in.  On failure *acl is left empty.
 */
int sl_acl_init(sl_acl *acl, const sl_cidr *allow, size_t nallow,
		const sl_cidr *deny, size_t ndeny)
{
	struct sl_acl_rule *rules;
	size_t n = 0;

	acl->rules = NULL;
	acl->nrules = 0;
	acl->nallow = 0;
	if ((allow == NULL && nallow > 0) || (deny == NULL && ndeny > 0))
		return -EINVAL;
	if (ndeny > SIZE_MAX / sizeof *rules ||
	    nallow > SIZE_MAX / sizeof *rules - ndeny)
		return -ENOMEM;
	if (nallow + ndeny == 0)
		return 0;
	rules = calloc(nallow + ndeny, sizeof *rules);
	if (rules == NULL)
		return -ENOMEM;
	for (; n < nallow + ndeny; n++) {
		const sl_cidr *c = n < nallow ? &allow[n] : &deny[n - nallow];

		if (c->family != SL_AF_INET4 && c->family != SL_AF_INET6) {
			free(rules);
			return -EINVAL;
		}
		rules[n].cidr = *c;
		cidr_normalise(&rules[n].cidr);
		rules[n].allow = n < nallow;
	}
	qsort(rules, n, sizeof *rules, rule_cmp);
	acl->rules = rules;
	acl->nrules = n;
	acl->nallow = nallow;
	return 0;
}

void sl_acl_free(sl_acl *acl)
{
	if (acl == NULL)
		return;
	free(acl->rules);
	acl->rules = NULL;
	acl->nrules = 0;
	acl->nallow = 0;
}

int sl_acl_check(const sl_acl *acl, const sl_ipaddr *a,
		 const struct sl_acl_rule **rule)
{
	if (rule != NULL)
		*rule = NULL;
	if (acl == NULL || acl->nrules == 0 || a->family == SL_AF_NONE)
		return 1;
	for (size_t i = 0; i < acl->nrules; i++) {
		if (sl_cidr_contains(&acl->rules[i].cidr, a)) {
			if (rule != NULL)
				*rule = &acl->rules[i];
			return acl->rules[i].allow != 0;
		}
	}
	return acl->nallow == 0;
}
