/*
 * Addresses, CIDR blocks and access lists: the text forms both ways (RFC
 * 5952 output, strict input the same on every OS), IPv4-mapped addresses
 * on either side of a rule, and the most-specific-match rule with its tie
 * and default cases.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "acl.h"
#include "net/addr.h"

static sl_ipaddr addr(const char *s)
{
	sl_ipaddr a;

	if (sl_ipaddr_parse(s, &a) != 0)
		fail_msg("'%s' does not parse as an address", s);
	return a;
}

static sl_cidr cidr(const char *s)
{
	char err[256];
	sl_cidr c;

	if (sl_cidr_parse(s, &c, err, sizeof err) != 0)
		fail_msg("'%s' does not parse as a CIDR: %s", s, err);
	return c;
}

/* ---- addresses -------------------------------------------------------- */

struct addr_good {
	const char *in;
	int family;
	const char *canon; /* NULL: same as in */
};

static const struct addr_good addr_goods[] = {
	{"0.0.0.0", SL_AF_INET4, NULL},
	{"10.0.0.1", SL_AF_INET4, NULL},
	{"192.0.2.255", SL_AF_INET4, NULL},
	{"255.255.255.255", SL_AF_INET4, NULL},
	{"::", SL_AF_INET6, NULL},
	{"::1", SL_AF_INET6, NULL},
	{"1::", SL_AF_INET6, NULL},
	{"0:0:0:0:0:0:0:0", SL_AF_INET6, "::"},
	{"0:0:0:0:0:0:0:1", SL_AF_INET6, "::1"},
	{"2001:db8::1", SL_AF_INET6, NULL},
	{"1:2:3:4:5:6:7:8", SL_AF_INET6, NULL},
	/* RFC 5952 4.1: no leading zeros; 4.3: lower case. */
	{"2001:0db8::0001", SL_AF_INET6, "2001:db8::1"},
	{"2001:DB8:0:0:0:0:0:1", SL_AF_INET6, "2001:db8::1"},
	{"ABCD:EF01:2345:6789:ABCD:EF01:2345:6789", SL_AF_INET6,
	 "abcd:ef01:2345:6789:abcd:ef01:2345:6789"},
	/* 4.2.1: the longest run is shortened as far as it goes. */
	{"2001:db8:0:0:0:0:2:1", SL_AF_INET6, "2001:db8::2:1"},
	/* 4.2.2: a lone zero group is not "::". */
	{"2001:db8:0:1:1:1:1:1", SL_AF_INET6, NULL},
	{"2001:db8::1:1:1:1:1", SL_AF_INET6, "2001:db8:0:1:1:1:1:1"},
	{"1:2:3:4:5:6:7::", SL_AF_INET6, "1:2:3:4:5:6:7:0"},
	{"::2:3:4:5:6:7:8", SL_AF_INET6, "0:2:3:4:5:6:7:8"},
	/* 4.2.3: the longest run wins; of equal runs, the first. */
	{"2001:0:0:1:0:0:0:1", SL_AF_INET6, "2001:0:0:1::1"},
	{"2001:db8:0:0:1:0:0:1", SL_AF_INET6, "2001:db8::1:0:0:1"},
	{"1:0:1:0:1:0:1:0", SL_AF_INET6, NULL},
	{"0:1::", SL_AF_INET6, NULL},
	{"fe80::1:2", SL_AF_INET6, NULL},
	/* Dotted tails: kept for IPv4-mapped (RFC 5952 5), hex otherwise. */
	{"::ffff:10.0.0.1", SL_AF_INET6, NULL},
	{"::FFFF:a00:1", SL_AF_INET6, "::ffff:10.0.0.1"},
	{"0:0:0:0:0:ffff:192.0.2.1", SL_AF_INET6, "::ffff:192.0.2.1"},
	{"::ffff:0.0.0.0", SL_AF_INET6, NULL},
	{"::1.2.3.4", SL_AF_INET6, "::102:304"},
	{"1:2:3:4:5:6:1.2.3.4", SL_AF_INET6, "1:2:3:4:5:6:102:304"},
	{"64:ff9b::192.0.2.33", SL_AF_INET6, "64:ff9b::c000:221"},
	{"::fffe:1.2.3.4", SL_AF_INET6, "::fffe:102:304"},
};

static void test_addr_good(void **state)
{
	char buf[SL_IPADDR_TEXT_MAX];
	sl_ipaddr a, again;

	(void)state;
	for (size_t i = 0; i < sizeof addr_goods / sizeof addr_goods[0]; i++) {
		const struct addr_good *g = &addr_goods[i];
		const char *want = g->canon != NULL ? g->canon : g->in;
		int n;

		if (sl_ipaddr_parse(g->in, &a) != 0)
			fail_msg("'%s' refused", g->in);
		assert_int_equal(a.family, g->family);
		assert_int_equal(a.port, 0);
		n = sl_ipaddr_format(&a, buf, sizeof buf);
		if (strcmp(buf, want) != 0)
			fail_msg("'%s' formats as '%s', want '%s'", g->in, buf,
				 want);
		assert_int_equal(n, strlen(want));
		/* The canonical text is the same address. */
		assert_int_equal(sl_ipaddr_parse(buf, &again), 0);
		assert_int_equal(memcmp(&a, &again, sizeof a), 0);
	}
}

static void test_addr_bytes(void **state)
{
	static const uint8_t v6[16] = {
		0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0,
		0, 0, 0, 0, 0, 0, 0x12, 0x34,
	};
	static const uint8_t mapped[16] = {
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 1,
	};
	sl_ipaddr a;

	(void)state;
	a = addr("192.0.2.1");
	assert_memory_equal(a.ip, "\xc0\x00\x02\x01", 4);
	/* The rest of ip[] is zero, so equal addresses are equal bytes. */
	for (size_t i = 4; i < 16; i++)
		assert_int_equal(a.ip[i], 0);
	a = addr("2001:db8::1234");
	assert_memory_equal(a.ip, v6, 16);
	a = addr("::ffff:10.0.0.1");
	assert_memory_equal(a.ip, mapped, 16);
	a = addr("::ffff:a00:1");
	assert_memory_equal(a.ip, mapped, 16);
}

static const char *const addr_bads[] = {
	"",
	"1.2.3",
	"1.2.3.4.5",
	"256.0.0.1",
	"1.2.3.256",
	"1.2.3.1000",
	"01.2.3.4",
	"1.2.3.04",
	"00.0.0.0",
	"1.2.3.4 ",
	" 1.2.3.4",
	"1..2.3",
	"1.2.3.",
	".1.2.3",
	"0x1.2.3.4",
	"+1.2.3.4",
	"1.2.3.-4",
	"1.2.3.4:80",
	"localhost",
	":",
	":::",
	"1:::2",
	":1::",
	":1:2:3:4:5:6:7:8",
	"1::2:",
	"1:2:3:4:5:6:7:",
	"1::2::3",
	"::1::",
	"1:2:3:4:5:6:7:8:9",
	"1:2:3:4:5:6:7::8",
	"::1:2:3:4:5:6:7:8",
	"1:2:3:4:5:6:7:8::",
	"12345::",
	"00000::1",
	"g::",
	"1:2:3:4:5:6:7:8 ",
	"::ffff:1.2.3",
	"::ffff:1.2.3.4.5",
	"::ffff:01.2.3.4",
	"::ffff:256.1.1.1",
	"::ffff:1.2.3.4:5",
	"1.2.3.4::",
	"::1.2.3.4:5",
	"::1.2.3.4.",
	"1:2:3:4:5:6:7:1.2.3.4",
	"1:2:3:4:5:6:7:8:1.2.3.4",
	"::abcd1.2.3.4",
	"fe80::1%eth0",
	"[::1]",
	"::1/128",
	"10.0.0.0/8",
};

static void test_addr_bad(void **state)
{
	sl_ipaddr a;

	(void)state;
	for (size_t i = 0; i < sizeof addr_bads / sizeof addr_bads[0]; i++) {
		memset(&a, 0x5a, sizeof a);
		if (sl_ipaddr_parse(addr_bads[i], &a) != -1)
			fail_msg("'%s' accepted", addr_bads[i]);
		/* A failed parse leaves no half-written address behind. */
		assert_int_equal(a.family, SL_AF_NONE);
	}
	assert_int_equal(sl_ipaddr_parse(NULL, &a), -1);
	assert_int_equal(sl_ipaddr_parse("1.2.3.4", NULL), -1);
}

static void test_addr_format(void **state)
{
	char buf[SL_IPADDR_TEXT_MAX];
	sl_ipaddr a;

	(void)state;
	memset(&a, 0, sizeof a);
	strcpy(buf, "untouched");
	assert_int_equal(sl_ipaddr_format(&a, buf, sizeof buf), 0);
	assert_string_equal(buf, "");
	/* The longest text fits SL_IPADDR_TEXT_MAX. */
	a = addr("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
	assert_int_equal(sl_ipaddr_format(&a, buf, sizeof buf), 39);
	a = addr("::ffff:255.255.255.255");
	assert_int_equal(sl_ipaddr_format(&a, buf, sizeof buf), 22);
	/* Short buffers truncate and report the whole length. */
	a = addr("192.0.2.1");
	a.port = 443; /* no port in the text */
	assert_int_equal(sl_ipaddr_format(&a, buf, 4), 9);
	assert_string_equal(buf, "192");
	assert_int_equal(sl_ipaddr_format(&a, NULL, 0), 9);
	sl_ipaddr_format(&a, buf, sizeof buf);
	assert_string_equal(buf, "192.0.2.1");
}

static void test_addr_unmap(void **state)
{
	static const char *const kept[] = {
		"::1", "::10.0.0.1", "::fffe:10.0.0.1", "1::ffff:10.0.0.1",
		"10.0.0.1", "2001:db8::",
	};
	char buf[SL_IPADDR_TEXT_MAX];
	sl_ipaddr a, b;

	(void)state;
	a = addr("::ffff:10.0.0.1");
	a.port = 1234;
	sl_ipaddr_unmap(&a);
	assert_int_equal(a.family, SL_AF_INET4);
	assert_int_equal(a.port, 1234);
	b = addr("10.0.0.1");
	b.port = 1234;
	assert_int_equal(memcmp(&a, &b, sizeof a), 0);
	sl_ipaddr_format(&a, buf, sizeof buf);
	assert_string_equal(buf, "10.0.0.1");
	for (size_t i = 0; i < sizeof kept / sizeof kept[0]; i++) {
		a = addr(kept[i]);
		b = a;
		sl_ipaddr_unmap(&a);
		assert_int_equal(memcmp(&a, &b, sizeof a), 0);
	}
	memset(&a, 0, sizeof a);
	sl_ipaddr_unmap(&a);
	assert_int_equal(a.family, SL_AF_NONE);
}

static void test_addr_equal(void **state)
{
	static const char *const same[][2] = {
		{"10.0.0.1", "10.0.0.1"},
		{"10.0.0.1", "::ffff:10.0.0.1"},
		{"::ffff:10.0.0.1", "::ffff:a00:1"},
		{"::1", "0:0::1"},
		{"2001:db8::1", "2001:DB8:0:0:0:0:0:1"},
	};
	static const char *const differ[][2] = {
		{"10.0.0.1", "10.0.0.2"},
		{"10.0.0.1", "::10.0.0.1"},
		{"10.0.0.1", "::fffe:10.0.0.1"},
		{"0.0.0.0", "::"},
		{"::1", "::2"},
		{"::ffff:10.0.0.1", "::ffff:10.0.0.2"},
	};
	sl_ipaddr a, b, none;

	(void)state;
	for (size_t i = 0; i < sizeof same / sizeof same[0]; i++) {
		a = addr(same[i][0]);
		b = addr(same[i][1]);
		a.port = 1;
		b.port = 2; /* ports are not compared */
		if (!sl_ipaddr_equal(&a, &b) || !sl_ipaddr_equal(&b, &a))
			fail_msg("%s != %s", same[i][0], same[i][1]);
	}
	for (size_t i = 0; i < sizeof differ / sizeof differ[0]; i++) {
		a = addr(differ[i][0]);
		b = addr(differ[i][1]);
		if (sl_ipaddr_equal(&a, &b) || sl_ipaddr_equal(&b, &a))
			fail_msg("%s == %s", differ[i][0], differ[i][1]);
	}
	memset(&none, 0, sizeof none);
	a = addr("0.0.0.0");
	assert_true(sl_ipaddr_equal(&none, &none));
	assert_false(sl_ipaddr_equal(&none, &a));
	assert_false(sl_ipaddr_equal(&a, &none));
}

/* ---- CIDR blocks ------------------------------------------------------ */

struct cidr_good {
	const char *in;
	const char *canon; /* NULL: same as in */
	int family;
	unsigned bits;
};

static const struct cidr_good cidr_goods[] = {
	{"10.0.0.0/8", NULL, SL_AF_INET4, 8},
	{"0.0.0.0/0", NULL, SL_AF_INET4, 0},
	{"128.0.0.0/1", NULL, SL_AF_INET4, 1},
	{"192.168.0.0/23", NULL, SL_AF_INET4, 23},
	{"192.0.2.1/32", NULL, SL_AF_INET4, 32},
	{"192.0.2.1", "192.0.2.1/32", SL_AF_INET4, 32},
	{"255.255.255.255/32", NULL, SL_AF_INET4, 32},
	{"::/0", NULL, SL_AF_INET6, 0},
	{"2001:db8::/32", NULL, SL_AF_INET6, 32},
	{"2001:DB8:0::/48", "2001:db8::/48", SL_AF_INET6, 48},
	{"2001:db8::1/128", NULL, SL_AF_INET6, 128},
	{"::1", "::1/128", SL_AF_INET6, 128},
	{"::/80", NULL, SL_AF_INET6, 80},
	{"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128", NULL, SL_AF_INET6,
	 128},
	/* Written IPv4-mapped from /96 on: stored as the IPv4 block. */
	{"::ffff:10.0.0.0/104", "10.0.0.0/8", SL_AF_INET4, 8},
	{"::ffff:0.0.0.0/96", "0.0.0.0/0", SL_AF_INET4, 0},
	{"::ffff:0:0/96", "0.0.0.0/0", SL_AF_INET4, 0},
	{"::ffff:192.0.2.1", "192.0.2.1/32", SL_AF_INET4, 32},
	{"::ffff:192.0.2.1/128", "192.0.2.1/32", SL_AF_INET4, 32},
	{"::ffff:192.0.2.128/121", "192.0.2.128/25", SL_AF_INET4, 25},
};

static void test_cidr_good(void **state)
{
	char err[256], buf[SL_CIDR_TEXT_MAX];
	sl_cidr c, again;

	(void)state;
	for (size_t i = 0; i < sizeof cidr_goods / sizeof cidr_goods[0]; i++) {
		const struct cidr_good *g = &cidr_goods[i];
		const char *want = g->canon != NULL ? g->canon : g->in;

		strcpy(err, "untouched");
		if (sl_cidr_parse(g->in, &c, err, sizeof err) != 0)
			fail_msg("%s: %s", g->in, err);
		assert_string_equal(err, "");
		assert_int_equal(c.family, g->family);
		assert_int_equal(c.bits, g->bits);
		assert_int_equal(sl_cidr_format(&c, buf, sizeof buf),
				 strlen(want));
		if (strcmp(buf, want) != 0)
			fail_msg("'%s' formats as '%s', want '%s'", g->in, buf,
				 want);
		assert_int_equal(sl_cidr_parse(buf, &again, NULL, 0), 0);
		assert_int_equal(memcmp(&c, &again, sizeof c), 0);
	}
	/* The longest text fits SL_CIDR_TEXT_MAX. */
	c = cidr("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
	assert_true(sl_cidr_format(&c, buf, sizeof buf) <
		    (int)SL_CIDR_TEXT_MAX);
}

struct cidr_bad {
	const char *in;
	const char *msg; /* a substring of the message */
};

static const struct cidr_bad cidr_bads[] = {
	{"10.0.0.1/8", "'10.0.0.1/8' has host bits set (expected 10.0.0.0/8)"},
	{"192.168.1.0/23", "has host bits set (expected 192.168.0.0/23)"},
	{"2001:db8::1/32", "'2001:db8::1/32' has host bits set (expected "
			   "2001:db8::/32)"},
	{"::ffff:10.0.0.1/104", "has host bits set (expected "
				"::ffff:10.0.0.0/104)"},
	{"::ffff:0:0/95", "has host bits set"},
	{"10.0.0.0/33", "prefix length 33 out of range (expected 0-32)"},
	{"::/129", "prefix length 129 out of range (expected 0-128)"},
	{"10.0.0.0/4294967296",
	 "prefix length 4294967296 out of range (expected 0-32)"},
	{"10.0.0.0/99999999999999999999999999999999",
	 "out of range (expected 0-32)"},
	{"foo", "'foo' is not an IP address or CIDR (expected e.g. "
		"10.0.0.0/8 or 2001:db8::/32)"},
	{"foo/8", "'foo/8' is not an IP address or CIDR"},
	{"/8", "'/8' is not an IP address or CIDR"},
	{"10.0.0/8", "'10.0.0/8' is not an IP address or CIDR"},
	{"010.0.0.0/8", "is not an IP address or CIDR"},
	{"[::1]/128", "is not an IP address or CIDR"},
	{"::1%lo/128", "is not an IP address or CIDR"},
	{" 10.0.0.0/8", "is not an IP address or CIDR"},
	{"", "empty address (expected e.g. 10.0.0.0/8 or 2001:db8::/32)"},
	{"10.0.0.0/", "missing prefix length after '/' (expected 0-32)"},
	{"::/", "missing prefix length after '/' (expected 0-128)"},
	{"10.0.0.0/x", "prefix length 'x' is not a number (expected 0-32)"},
	{"10.0.0.0/-1", "prefix length '-1' is not a number"},
	{"10.0.0.0/+8", "prefix length '+8' is not a number"},
	{"10.0.0.0/ 8", "prefix length ' 8' is not a number"},
	{"10.0.0.0/8 ", "prefix length '8 ' is not a number"},
	{"10.0.0.0/8/8", "prefix length '8/8' is not a number"},
	{"10.0.0.0/08", "prefix length '08' has a leading zero (expected "
			"0-32)"},
	{"::/00", "prefix length '00' has a leading zero (expected 0-128)"},
};

static void test_cidr_bad(void **state)
{
	char err[256], in[512];
	sl_cidr c;

	(void)state;
	for (size_t i = 0; i < sizeof cidr_bads / sizeof cidr_bads[0]; i++) {
		err[0] = '\0';
		memset(&c, 0x5a, sizeof c);
		assert_int_equal(sl_cidr_parse(cidr_bads[i].in, &c, err,
					       sizeof err),
				 -1);
		if (strstr(err, cidr_bads[i].msg) == NULL)
			fail_msg("'%s': got \"%s\", want \"%s\"",
				 cidr_bads[i].in, err, cidr_bads[i].msg);
		assert_int_equal(c.family, 0);
	}
	/* A long input is quoted shortened, not overflowing err. */
	memset(in, '1', sizeof in - 1);
	in[sizeof in - 1] = '\0';
	assert_int_equal(sl_cidr_parse(in, &c, err, sizeof err), -1);
	assert_non_null(strstr(err, "is not an IP address or CIDR"));
	/* NULL input, NULL or tiny error buffers are fine. */
	assert_int_equal(sl_cidr_parse(NULL, &c, err, sizeof err), -1);
	assert_int_equal(sl_cidr_parse("x", &c, NULL, 0), -1);
	assert_int_equal(sl_cidr_parse("x", &c, err, 1), -1);
	assert_string_equal(err, "");
	assert_int_equal(sl_cidr_parse("10.0.0.0/8", NULL, err, sizeof err),
			 -1);
}

struct contains {
	const char *cidr, *addr;
	int in;
};

static const struct contains containss[] = {
	{"10.0.0.0/8", "10.0.0.0", 1},
	{"10.0.0.0/8", "10.255.255.255", 1},
	{"10.0.0.0/8", "11.0.0.0", 0},
	{"10.0.0.0/8", "9.255.255.255", 0},
	{"10.0.0.0/8", "::ffff:10.1.2.3", 1},
	{"10.0.0.0/8", "::10.1.2.3", 0},
	{"10.0.0.0/8", "::fffe:10.1.2.3", 0},
	{"192.168.0.0/23", "192.168.1.255", 1},
	{"192.168.0.0/23", "192.168.2.0", 0},
	{"192.0.2.1/32", "192.0.2.1", 1},
	{"192.0.2.1/32", "192.0.2.2", 0},
	{"0.0.0.0/0", "0.0.0.0", 1},
	{"0.0.0.0/0", "255.255.255.255", 1},
	{"0.0.0.0/0", "::ffff:1.2.3.4", 1},
	{"0.0.0.0/0", "::1", 0},
	{"0.0.0.0/0", "::", 0},
	{"::/0", "::1", 1},
	{"::/0", "ffff::1", 1},
	/* An IPv4 client is judged as IPv4, whatever its listener. */
	{"::/0", "10.0.0.1", 0},
	{"::/0", "::ffff:10.0.0.1", 0},
	{"::/80", "::ffff:10.0.0.1", 0},
	{"::/80", "::10.0.0.1", 1},
	{"2001:db8::/32", "2001:db8:ffff::1", 1},
	{"2001:db8::/32", "2001:db9::", 0},
	{"2001:db8::/33", "2001:db8:7fff::", 1},
	{"2001:db8::/33", "2001:db8:8000::", 0},
	{"2001:db8::1/128", "2001:db8::1", 1},
	{"2001:db8::1/128", "2001:db8::2", 0},
	{"::ffff:10.0.0.0/104", "10.9.9.9", 1},
	{"::ffff:10.0.0.0/104", "::ffff:10.9.9.9", 1},
	{"::ffff:10.0.0.0/104", "11.0.0.0", 0},
};

static void test_cidr_contains(void **state)
{
	sl_ipaddr none;
	sl_cidr c;

	(void)state;
	for (size_t i = 0; i < sizeof containss / sizeof containss[0]; i++) {
		const struct contains *t = &containss[i];
		sl_ipaddr a = addr(t->addr);

		c = cidr(t->cidr);
		if ((sl_cidr_contains(&c, &a) != 0) != t->in)
			fail_msg("%s %s %s", t->cidr,
				 t->in ? "does not contain" : "contains",
				 t->addr);
	}
	memset(&none, 0, sizeof none);
	c = cidr("0.0.0.0/0");
	assert_false(sl_cidr_contains(&c, &none));
	c = cidr("::/0");
	assert_false(sl_cidr_contains(&c, &none));

	/* A block built by hand in the mapped form still means IPv4. */
	memset(&c, 0, sizeof c);
	c.family = SL_AF_INET6;
	c.bits = 104;
	c.ip[10] = c.ip[11] = 0xff;
	c.ip[12] = 10;
	{
		sl_ipaddr a = addr("10.1.1.1");

		assert_true(sl_cidr_contains(&c, &a));
	}
}

/* ---- access lists ----------------------------------------------------- */

/* An ACL from two lists of text, NULL-terminated. */
static void acl_make(sl_acl *acl, const char *const *allow,
		     const char *const *deny)
{
	sl_cidr a[16], d[16];
	size_t na = 0, nd = 0;

	for (; allow != NULL && allow[na] != NULL; na++)
		a[na] = cidr(allow[na]);
	for (; deny != NULL && deny[nd] != NULL; nd++)
		d[nd] = cidr(deny[nd]);
	assert_int_equal(sl_acl_init(acl, a, na, d, nd), 0);
	assert_int_equal(acl->nrules, na + nd);
	assert_int_equal(acl->nallow, na);
}

/* Check addr against acl; want 1 (allowed) or 0, decided by rule_text
 * ("allow 10.0.0.0/8", "deny ...", or NULL for no entry). */
static void expect(const sl_acl *acl, const char *a, int want,
		   const char *rule_text)
{
	const struct sl_acl_rule *rule = (const void *)1;
	char buf[SL_CIDR_TEXT_MAX + 8], text[SL_CIDR_TEXT_MAX];
	sl_ipaddr ip = addr(a);
	int got = sl_acl_check(acl, &ip, &rule);

	if (got != want)
		fail_msg("%s: %s, want %s", a, got ? "allowed" : "denied",
			 want ? "allowed" : "denied");
	if (rule_text == NULL) {
		if (rule != NULL)
			fail_msg("%s: decided by an entry, want none", a);
		return;
	}
	if (rule == NULL)
		fail_msg("%s: no entry decided, want '%s'", a, rule_text);
	sl_cidr_format(&rule->cidr, text, sizeof text);
	snprintf(buf, sizeof buf, "%s %s", rule->allow ? "allow" : "deny",
		 text);
	if (strcmp(buf, rule_text) != 0)
		fail_msg("%s: decided by '%s', want '%s'", a, buf, rule_text);
	/* Without the out-parameter, the same answer. */
	assert_int_equal(sl_acl_check(acl, &ip, NULL), want);
}

static void test_acl_empty(void **state)
{
	sl_acl empty = SL_ACL_EMPTY, built;
	const struct sl_acl_rule *rule = (const void *)1;
	sl_ipaddr a = addr("10.0.0.1");

	(void)state;
	assert_true(sl_acl_empty(&empty));
	assert_int_equal(sl_acl_check(&empty, &a, &rule), 1);
	assert_null(rule);
	expect(&empty, "::1", 1, NULL);
	expect(&empty, "::ffff:10.0.0.1", 1, NULL);
	sl_acl_free(&empty);
	sl_acl_free(&empty);

	assert_int_equal(sl_acl_init(&built, NULL, 0, NULL, 0), 0);
	assert_true(sl_acl_empty(&built));
	expect(&built, "192.0.2.1", 1, NULL);
	sl_acl_free(&built);
	sl_acl_free(NULL);
}

static void test_acl_allow_only(void **state)
{
	static const char *const allow[] = {"10.0.0.0/8", "2001:db8::/32",
					    NULL};
	sl_acl acl;

	(void)state;
	acl_make(&acl, allow, NULL);
	assert_false(sl_acl_empty(&acl));
	expect(&acl, "10.1.1.1", 1, "allow 10.0.0.0/8");
	expect(&acl, "::ffff:10.1.1.1", 1, "allow 10.0.0.0/8");
	expect(&acl, "2001:db8::1", 1, "allow 2001:db8::/32");
	/* Nothing matches and there is an allow list: denied. */
	expect(&acl, "11.0.0.1", 0, NULL);
	expect(&acl, "::1", 0, NULL);
	expect(&acl, "::ffff:11.0.0.1", 0, NULL);
	sl_acl_free(&acl);
	assert_true(sl_acl_empty(&acl));
}

static void test_acl_deny_only(void **state)
{
	static const char *const deny[] = {"10.0.0.0/8", "::1", NULL};
	sl_acl acl;

	(void)state;
	acl_make(&acl, NULL, deny);
	expect(&acl, "10.1.1.1", 0, "deny 10.0.0.0/8");
	expect(&acl, "::1", 0, "deny ::1/128");
	/* Nothing matches and there is no allow list: allowed. */
	expect(&acl, "11.0.0.1", 1, NULL);
	expect(&acl, "::2", 1, NULL);
	sl_acl_free(&acl);
}

static void test_acl_longest_prefix(void **state)
{
	static const char *const allow1[] = {"10.1.0.0/16", NULL};
	static const char *const deny1[] = {"10.0.0.0/8", NULL};
	static const char *const allow2[] = {"10.0.0.0/8", NULL};
	static const char *const deny2[] = {"10.1.0.0/16", NULL};
	/* Three levels, written in no particular order. */
	static const char *const allow3[] = {"10.1.2.0/24", "10.0.0.0/8",
					     "2001:db8:1::/48", NULL};
	static const char *const deny3[] = {"2001:db8::/32", "10.1.0.0/16",
					    "2001:db8:1:2::/64", NULL};
	sl_acl acl;

	(void)state;
	/* deny a block, allow a part of it. */
	acl_make(&acl, allow1, deny1);
	expect(&acl, "10.1.2.3", 1, "allow 10.1.0.0/16");
	expect(&acl, "10.2.0.1", 0, "deny 10.0.0.0/8");
	expect(&acl, "11.0.0.1", 0, NULL);
	sl_acl_free(&acl);

	/* allow a block, deny a part of it. */
	acl_make(&acl, allow2, deny2);
	expect(&acl, "10.1.2.3", 0, "deny 10.1.0.0/16");
	expect(&acl, "10.2.0.1", 1, "allow 10.0.0.0/8");
	expect(&acl, "11.0.0.1", 0, NULL);
	sl_acl_free(&acl);

	acl_make(&acl, allow3, deny3);
	expect(&acl, "10.1.2.3", 1, "allow 10.1.2.0/24");
	expect(&acl, "10.1.3.3", 0, "deny 10.1.0.0/16");
	expect(&acl, "10.2.2.2", 1, "allow 10.0.0.0/8");
	expect(&acl, "2001:db8:1:2::5", 0, "deny 2001:db8:1:2::/64");
	expect(&acl, "2001:db8:1:3::5", 1, "allow 2001:db8:1::/48");
	expect(&acl, "2001:db8:2::5", 0, "deny 2001:db8::/32");
	/* Sorted most specific first, deny before allow. */
	for (size_t i = 1; i < acl.nrules; i++)
		assert_true(acl.rules[i - 1].cidr.bits >=
			    acl.rules[i].cidr.bits);
	sl_acl_free(&acl);
}

static void test_acl_tie(void **state)
{
	static const char *const allow[] = {"10.0.0.0/8", "192.0.2.1",
					    "::1", NULL};
	static const char *const deny[] = {"192.0.2.1/32", "10.0.0.0/8",
					   "::1/128", NULL};
	sl_acl acl;

	(void)state;
	acl_make(&acl, allow, deny);
	expect(&acl, "10.0.0.1", 0, "deny 10.0.0.0/8");
	expect(&acl, "192.0.2.1", 0, "deny 192.0.2.1/32");
	expect(&acl, "::1", 0, "deny ::1/128");
	sl_acl_free(&acl);
}

/*
 * A client on a dual-stack [::] listener shows up as ::ffff:a.b.c.d.  It
 * must meet the IPv4 rules, and rules written in the mapped form must
 * meet plain IPv4 clients: neither spelling gets around the other.
 */
static void test_acl_mapped(void **state)
{
	static const char *const deny_v4[] = {"10.0.0.0/8", NULL};
	static const char *const allow_v6_all[] = {"::/0", NULL};
	static const char *const deny_mapped[] = {"::ffff:10.0.0.0/104",
						  NULL};
	static const char *const allow_mapped[] = {"::ffff:192.0.2.0/120",
						   NULL};
	static const char *const allow_v4[] = {"192.0.2.0/24", NULL};
	sl_acl acl;

	(void)state;
	/* The bypass attempt: allow all IPv6, deny 10/8. */
	acl_make(&acl, allow_v6_all, deny_v4);
	expect(&acl, "10.0.0.1", 0, "deny 10.0.0.0/8");
	expect(&acl, "::ffff:10.0.0.1", 0, "deny 10.0.0.0/8");
	expect(&acl, "::ffff:a00:1", 0, "deny 10.0.0.0/8");
	/* ::/0 is IPv6 only: other IPv4 clients meet the allow list. */
	expect(&acl, "::ffff:11.0.0.1", 0, NULL);
	expect(&acl, "2001:db8::1", 1, "allow ::/0");
	sl_acl_free(&acl);

	acl_make(&acl, NULL, deny_mapped);
	assert_int_equal(acl.rules[0].cidr.family, SL_AF_INET4);
	expect(&acl, "10.0.0.1", 0, "deny 10.0.0.0/8");
	expect(&acl, "::ffff:10.0.0.1", 0, "deny 10.0.0.0/8");
	expect(&acl, "11.0.0.1", 1, NULL);
	sl_acl_free(&acl);

	acl_make(&acl, allow_mapped, NULL);
	expect(&acl, "192.0.2.7", 1, "allow 192.0.2.0/24");
	expect(&acl, "::ffff:192.0.2.7", 1, "allow 192.0.2.0/24");
	expect(&acl, "192.0.3.7", 0, NULL);
	sl_acl_free(&acl);

	acl_make(&acl, allow_v4, NULL);
	expect(&acl, "::ffff:192.0.2.7", 1, "allow 192.0.2.0/24");
	/* IPv4-compatible (deprecated) is not IPv4-mapped. */
	expect(&acl, "::192.0.2.7", 0, NULL);
	sl_acl_free(&acl);

	/* The same, with the mapped block built by hand, not parsed. */
	{
		sl_cidr c;

		memset(&c, 0, sizeof c);
		c.family = SL_AF_INET6;
		c.bits = 120;
		c.ip[10] = c.ip[11] = 0xff;
		c.ip[12] = 192;
		c.ip[14] = 2;
		c.ip[15] = 99; /* a host bit: cleared on the way in */
		assert_int_equal(sl_acl_init(&acl, NULL, 0, &c, 1), 0);
		expect(&acl, "192.0.2.1", 0, "deny 192.0.2.0/24");
		sl_acl_free(&acl);
	}
}

static void test_acl_no_ip(void **state)
{
	static const char *const allow[] = {"10.0.0.0/8", NULL};
	static const char *const deny[] = {"0.0.0.0/0", "::/0", NULL};
	const struct sl_acl_rule *rule = (const void *)1;
	sl_ipaddr none;
	sl_acl acl;

	(void)state;
	memset(&none, 0, sizeof none);
	acl_make(&acl, allow, deny);
	assert_int_equal(sl_acl_check(&acl, &none, &rule), 1);
	assert_null(rule);
	assert_int_equal(sl_acl_check(&acl, &none, NULL), 1);
	sl_acl_free(&acl);
}

static void test_acl_init_errors(void **state)
{
	sl_cidr c = cidr("10.0.0.0/8"), bad;
	sl_acl acl;

	(void)state;
	assert_int_equal(sl_acl_init(&acl, NULL, 1, NULL, 0), -EINVAL);
	assert_true(sl_acl_empty(&acl));
	assert_int_equal(sl_acl_init(&acl, &c, 1, NULL, 2), -EINVAL);
	assert_true(sl_acl_empty(&acl));
	/* An entry without a family is refused, not dropped: dropping the
	 * only allow entry would let everybody in. */
	memset(&bad, 0, sizeof bad);
	assert_int_equal(sl_acl_init(&acl, &bad, 1, NULL, 0), -EINVAL);
	assert_true(sl_acl_empty(&acl));
	assert_int_equal(sl_acl_init(&acl, &c, 1, &bad, 1), -EINVAL);
	assert_true(sl_acl_empty(&acl));
	assert_int_equal(sl_acl_init(&acl, &c, SIZE_MAX, &c, 2), -ENOMEM);
	assert_true(sl_acl_empty(&acl));
	sl_acl_free(&acl);
	/* The lists are copied: the caller's array may go. */
	assert_int_equal(sl_acl_init(&acl, &c, 1, NULL, 0), 0);
	memset(&c, 0, sizeof c);
	expect(&acl, "10.0.0.1", 1, "allow 10.0.0.0/8");
	sl_acl_free(&acl);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_addr_good),
		cmocka_unit_test(test_addr_bytes),
		cmocka_unit_test(test_addr_bad),
		cmocka_unit_test(test_addr_format),
		cmocka_unit_test(test_addr_unmap),
		cmocka_unit_test(test_addr_equal),
		cmocka_unit_test(test_cidr_good),
		cmocka_unit_test(test_cidr_bad),
		cmocka_unit_test(test_cidr_contains),
		cmocka_unit_test(test_acl_empty),
		cmocka_unit_test(test_acl_allow_only),
		cmocka_unit_test(test_acl_deny_only),
		cmocka_unit_test(test_acl_longest_prefix),
		cmocka_unit_test(test_acl_tie),
		cmocka_unit_test(test_acl_mapped),
		cmocka_unit_test(test_acl_no_ip),
		cmocka_unit_test(test_acl_init_errors),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
