/*
 * libFuzzer target: address and CIDR text.  Whatever parses must format
 * within the documented size and parse back to the very same bytes (the
 * canonical form is a fixed point), and a block must contain its own
 * address, also through an access list and in the IPv4-mapped spelling.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "acl.h"
#include "net/addr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_addr(const char *s)
{
	char text[SL_IPADDR_TEXT_MAX];
	sl_ipaddr a, again;
	int n;

	if (sl_ipaddr_parse(s, &a) != 0) {
		if (a.family != SL_AF_NONE)
			abort();
		return;
	}
	n = sl_ipaddr_format(&a, text, sizeof text);
	if (n <= 0 || (size_t)n >= sizeof text || strlen(text) != (size_t)n)
		abort();
	if (sl_ipaddr_parse(text, &again) != 0 ||
	    memcmp(&a, &again, sizeof a) != 0 || !sl_ipaddr_equal(&a, &again))
		abort();
	/* Unmapping keeps the address the same address. */
	again = a;
	sl_ipaddr_unmap(&again);
	if (!sl_ipaddr_equal(&a, &again))
		abort();
}

static void check_cidr(const char *s)
{
	char err[256], text[SL_CIDR_TEXT_MAX];
	sl_cidr c, again;
	sl_ipaddr a;
	sl_acl acl;
	int n;

	err[0] = '\0';
	if (sl_cidr_parse(s, &c, err, sizeof err) != 0) {
		if (err[0] == '\0')
			abort(); /* a refusal always says why */
		return;
	}
	if (c.family != SL_AF_INET4 && c.family != SL_AF_INET6)
		abort();
	if (c.bits > (c.family == SL_AF_INET4 ? 32 : 128))
		abort();
	n = sl_cidr_format(&c, text, sizeof text);
	if (n <= 0 || (size_t)n >= sizeof text)
		abort();
	if (sl_cidr_parse(text, &again, err, sizeof err) != 0 ||
	    memcmp(&c, &again, sizeof c) != 0)
		abort();

	/* The block's own (network) address lies inside it... */
	memset(&a, 0, sizeof a);
	a.family = c.family;
	memcpy(a.ip, c.ip, sizeof a.ip);
	if (!sl_cidr_contains(&c, &a))
		abort();
	/* ...and so does its IPv4-mapped form. */
	if (c.family == SL_AF_INET4) {
		memmove(a.ip + 12, a.ip, 4);
		memset(a.ip, 0, 10);
		a.ip[10] = a.ip[11] = 0xff;
		a.family = SL_AF_INET6;
		if (!sl_cidr_contains(&c, &a))
			abort();
	}
	/* Denied by the block as a deny entry, let in as an allow entry. */
	if (sl_acl_init(&acl, NULL, 0, &c, 1) != 0)
		return;
	if (sl_acl_check(&acl, &a, NULL) != 0)
		abort();
	sl_acl_free(&acl);
	if (sl_acl_init(&acl, &c, 1, NULL, 0) != 0)
		return;
	if (sl_acl_check(&acl, &a, NULL) != 1)
		abort();
	sl_acl_free(&acl);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s;

	if ((s = malloc(size + 1)) == NULL)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	check_addr(s);
	check_cidr(s);
	free(s);
	return 0;
}
