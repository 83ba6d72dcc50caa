/*
 * PROXY protocol: valid v1 and v2 headers of every family (with the bytes
 * after them left alone, and every shorter prefix asking for more), the
 * builders' exact bytes and parse(build(x)) == x, and malformed input of
 * every kind refused with a reason, as early as the bytes allow.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "net/addr.h"
#include "proxyproto.h"

#define SIG "\r\n\r\n\0\r\nQUIT\n"
#define SIG_LEN 12
#define SIG_BYTES \
	0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a
#define TRAILER "GET / HTTP/1.1\r\n\r\n"

static sl_ipaddr addr(const char *s, uint16_t port)
{
	sl_ipaddr a;

	if (sl_ipaddr_parse(s, &a) != 0)
		fail_msg("'%s' does not parse as an address", s);
	a.port = port;
	return a;
}

static void expect_addr(const sl_ipaddr *a, const char *want, unsigned port)
{
	char buf[SL_IPADDR_TEXT_MAX];

	sl_ipaddr_format(a, buf, sizeof buf);
	if (strcmp(buf, want) != 0)
		fail_msg("address '%s', want '%s'", buf, want);
	assert_int_equal(a->port, port);
}

/*
 * Every prefix of a valid header is a valid beginning: 0, and *out and
 * *why untouched (why reset to NULL).
 */
static void expect_prefixes(const uint8_t *h, size_t len)
{
	for (size_t n = 0; n < len; n++) {
		const char *why = "untouched";
		sl_pp_info info;
		ptrdiff_t r;

		memset(&info, 0x5a, sizeof info);
		r = sl_pp_parse(h, n, &info, &why);
		if (r != 0)
			fail_msg("prefix of %d bytes (of %d): %d (%s)", (int)n,
				 (int)len, (int)r,
				 why != NULL ? why : "no reason");
		assert_null(why);
		assert_int_equal(info.version, 0x5a5a5a5a);
	}
}

/*
 * h[0, len) is a whole header: parse it alone, with data after it (not
 * consumed), and every prefix of it.
 */
static void parse_whole(const void *h, size_t len, sl_pp_info *info)
{
	uint8_t buf[SL_PP_MAX_LEN + sizeof TRAILER];
	const char *why = "untouched";
	ptrdiff_t r;

	assert_true(len <= SL_PP_MAX_LEN);
	memcpy(buf, h, len);
	r = sl_pp_parse(buf, len, info, &why);
	if (r != (ptrdiff_t)len)
		fail_msg("parse: %d, want %d (%s)", (int)r, (int)len,
			 why != NULL ? why : "no reason");
	assert_null(why);
	memcpy(buf + len, TRAILER, sizeof TRAILER - 1);
	assert_int_equal(sl_pp_parse(buf, len + sizeof TRAILER - 1, NULL,
				     NULL),
			 len);
	expect_prefixes(buf, len);
}

/* ---- v1 --------------------------------------------------------------- */

struct v1_good {
	const char *line;
	enum sl_pp_family family;
	const char *src, *dst; /* as sl_ipaddr_format writes them */
	unsigned sport, dport;
};

static const struct v1_good v1_goods[] = {
	{"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n", SL_PP_TCP4,
	 "192.168.0.1", "192.168.0.11", 56324, 443},
	{"PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n",
	 SL_PP_TCP4, "255.255.255.255", "255.255.255.255", 65535, 65535},
	{"PROXY TCP4 0.0.0.0 0.0.0.0 0 0\r\n", SL_PP_TCP4, "0.0.0.0",
	 "0.0.0.0", 0, 0},
	{"PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n", SL_PP_TCP6,
	 "2001:db8::1", "2001:db8::2", 1, 2},
	{"PROXY TCP6 2001:DB8:0:0:0:0:0:A ::B 10 20\r\n", SL_PP_TCP6,
	 "2001:db8::a", "::b", 10, 20},
	{"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
	 "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n",
	 SL_PP_TCP6, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
	 "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535, 65535},
	{"PROXY TCP6 ::ffff:a00:1 :: 80 8080\r\n", SL_PP_TCP6,
	 "::ffff:10.0.0.1", "::", 80, 8080},
	/* What HAProxy and nginx send for an IPv4 client of a dual-stack
	 * listener: inet_ntop()'s dotted tail, not the spec's hex groups. */
	{"PROXY TCP6 ::ffff:192.168.0.1 ::ffff:192.168.0.11 56324 443\r\n",
	 SL_PP_TCP6, "::ffff:192.168.0.1", "::ffff:192.168.0.11", 56324, 443},
	{"PROXY UNKNOWN\r\n", SL_PP_UNKNOWN, "", "", 0, 0},
	{"PROXY UNKNOWN \r\n", SL_PP_UNKNOWN, "", "", 0, 0},
	{"PROXY UNKNOWN 192.168.0.1 192.168.0.11 56324 443\r\n",
	 SL_PP_UNKNOWN, "", "", 0, 0},
	/* The worst case of the specification: 107 bytes. */
	{"PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
	 "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n",
	 SL_PP_UNKNOWN, "", "", 0, 0},
	/* "the receiver must ignore anything presented before the CRLF" */
	{"PROXY UNKNOWN whatever  it\tsays\r\n", SL_PP_UNKNOWN, "", "", 0, 0},
};

static void test_v1_good(void **state)
{
	(void)state;
	assert_int_equal(strlen(v1_goods[11].line), SL_PP_V1_MAX);
	for (size_t i = 0; i < sizeof v1_goods / sizeof v1_goods[0]; i++) {
		const struct v1_good *g = &v1_goods[i];
		sl_pp_info info;

		memset(&info, 0x5a, sizeof info);
		parse_whole(g->line, strlen(g->line), &info);
		assert_int_equal(info.version, 1);
		assert_int_equal(info.local, 0);
		assert_int_equal(info.family, g->family);
		expect_addr(&info.src, g->src, g->sport);
		expect_addr(&info.dst, g->dst, g->dport);
		assert_string_equal(info.src_path, "");
		assert_string_equal(info.dst_path, "");
	}
}

/* ---- v2 --------------------------------------------------------------- */

static const uint8_t v2_tcp4[] = {
	SIG_BYTES,
	0x21, 0x11, 0x00, 0x0c,
	192, 0, 2, 1, 198, 51, 100, 2, 0xd4, 0x31, 0x01, 0xbb,
};

static const uint8_t v2_tcp6[] = {
	SIG_BYTES,
	0x21, 0x21, 0x00, 0x24,
	0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
	0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2,
	0x00, 0x01, 0xff, 0xff,
};

static const uint8_t v2_unspec[] = {
	SIG_BYTES,
	0x21, 0x00, 0x00, 0x00,
};

static const uint8_t v2_local[] = {
	SIG_BYTES,
	0x20, 0x00, 0x00, 0x00,
};

/* The signature, ver_cmd, fam and a 16-bit length into h; 16. */
static size_t v2_head(uint8_t *h, unsigned ver_cmd, unsigned fam,
		      unsigned len)
{
	memcpy(h, SIG, SIG_LEN);
	h[12] = (uint8_t)ver_cmd;
	h[13] = (uint8_t)fam;
	h[14] = (uint8_t)(len >> 8);
	h[15] = (uint8_t)len;
	return 16;
}

/* An AF_UNIX header with the two paths, NUL-padded to 108 bytes. */
static size_t v2_unix(uint8_t *h, const char *src, const char *dst)
{
	size_t n = v2_head(h, 0x21, 0x31, 216);

	memset(h + n, 0, 216);
	memcpy(h + n, src, strlen(src));
	memcpy(h + n + 108, dst, strlen(dst));
	return n + 216;
}

static void test_v2_good(void **state)
{
	uint8_t h[SL_PP_MAX_LEN];
	sl_pp_info info;
	size_t n;

	(void)state;
	parse_whole(v2_tcp4, sizeof v2_tcp4, &info);
	assert_int_equal(info.version, 2);
	assert_int_equal(info.local, 0);
	assert_int_equal(info.family, SL_PP_TCP4);
	expect_addr(&info.src, "192.0.2.1", 54321);
	expect_addr(&info.dst, "198.51.100.2", 443);

	parse_whole(v2_tcp6, sizeof v2_tcp6, &info);
	assert_int_equal(info.family, SL_PP_TCP6);
	expect_addr(&info.src, "2001:db8::1", 1);
	expect_addr(&info.dst, "2001:db8::2", 65535);

	n = v2_unix(h, "/run/client.sock", "/run/sluice.sock");
	parse_whole(h, n, &info);
	assert_int_equal(info.family, SL_PP_UNIX);
	assert_string_equal(info.src_path, "/run/client.sock");
	assert_string_equal(info.dst_path, "/run/sluice.sock");
	assert_int_equal(info.src.family, SL_AF_NONE);

	/* A full 108-byte path has no NUL in the header; the copy has. */
	n = v2_unix(h, "", "");
	memset(h + 16 + 108, 'p', 108);
	parse_whole(h, n, &info);
	assert_string_equal(info.src_path, "");
	assert_int_equal(strlen(info.dst_path), 108);

	/* PROXY over AF_UNSPEC: no addresses, whatever the block holds. */
	parse_whole(v2_unspec, sizeof v2_unspec, &info);
	assert_int_equal(info.version, 2);
	assert_int_equal(info.local, 0);
	assert_int_equal(info.family, SL_PP_UNKNOWN);
	n = v2_head(h, 0x21, 0x00, 5);
	memcpy(h + n, "abcde", 5);
	parse_whole(h, n + 5, &info);
	assert_int_equal(info.family, SL_PP_UNKNOWN);
	/* A known family with the UNSPEC transport: the same. */
	n = v2_head(h, 0x21, 0x10, 0);
	parse_whole(h, n, &info);
	assert_int_equal(info.family, SL_PP_UNKNOWN);

	/* LOCAL: the addresses and the family are ignored. */
	parse_whole(v2_local, sizeof v2_local, &info);
	assert_int_equal(info.local, 1);
	assert_int_equal(info.family, SL_PP_UNKNOWN);
	n = v2_head(h, 0x20, 0x11, 12);
	memcpy(h + n, v2_tcp4 + 16, 12);
	parse_whole(h, n + 12, &info);
	assert_int_equal(info.local, 1);
	assert_int_equal(info.family, SL_PP_UNKNOWN);
	assert_int_equal(info.src.family, SL_AF_NONE);
	n = v2_head(h, 0x20, 0x11, 0); /* shorter than AF_INET needs */
	parse_whole(h, n, &info);
	assert_int_equal(info.local, 1);
	n = v2_head(h, 0x20, 0x32, 3); /* even UNIX DGRAM */
	memset(h + n, 0, 3);
	parse_whole(h, n + 3, &info);
	assert_int_equal(info.local, 1);
}

static void test_v2_tlv(void **state)
{
	uint8_t h[SL_PP_MAX_LEN];
	sl_pp_info info;
	size_t n;

	(void)state;
	/* NOOP of 3 bytes and ALPN "h2" after the addresses: skipped. */
	n = v2_head(h, 0x21, 0x11, 12 + 6 + 5);
	memcpy(h + n, v2_tcp4 + 16, 12);
	n += 12;
	memcpy(h + n, "\x04\x00\x03xyz\x01\x00\x02h2", 11);
	n += 11;
	parse_whole(h, n, &info);
	assert_int_equal(info.family, SL_PP_TCP4);
	expect_addr(&info.src, "192.0.2.1", 54321);

	/* An empty TLV is three bytes. */
	n = v2_head(h, 0x21, 0x21, 36 + 3);
	memcpy(h + n, v2_tcp6 + 16, 36);
	n += 36;
	memcpy(h + n, "\x04\x00\x00", 3);
	parse_whole(h, n + 3, &info);
	assert_int_equal(info.family, SL_PP_TCP6);

	/* The longest header allowed: SL_PP_MAX_LEN bytes in all. */
	n = v2_head(h, 0x21, 0x11, SL_PP_V2_DATA_MAX);
	memcpy(h + n, v2_tcp4 + 16, 12);
	n += 12;
	h[n] = 0x04;
	h[n + 1] = (uint8_t)((SL_PP_V2_DATA_MAX - 12 - 3) >> 8);
	h[n + 2] = (uint8_t)(SL_PP_V2_DATA_MAX - 12 - 3);
	memset(h + n + 3, 0xee, SL_PP_V2_DATA_MAX - 12 - 3);
	parse_whole(h, SL_PP_MAX_LEN, &info);
	assert_int_equal(info.family, SL_PP_TCP4);
}

/* ---- builders --------------------------------------------------------- */

static sl_pp_info pp_ip(enum sl_pp_family family, const char *src,
			uint16_t sport, const char *dst, uint16_t dport)
{
	sl_pp_info in;

	memset(&in, 0, sizeof in);
	in.family = family;
	in.src = addr(src, sport);
	in.dst = addr(dst, dport);
	return in;
}

static void expect_v1(const sl_pp_info *in, const char *want)
{
	char buf[SL_PP_V1_MAX + 16];
	size_t n = strlen(want);

	memset(buf, 0, sizeof buf);
	if (sl_pp_build_v1(in, buf, sizeof buf) != n ||
	    memcmp(buf, want, n) != 0)
		fail_msg("built '%s', want '%s'", buf, want);
	/* Exactly enough room is enough; one byte less is not. */
	assert_int_equal(sl_pp_build_v1(in, buf, n), n);
	assert_int_equal(sl_pp_build_v1(in, buf, n - 1), 0);
}

static void expect_v2(const sl_pp_info *in, const uint8_t *want, size_t n)
{
	uint8_t buf[16 + 216 + 16];

	assert_int_equal(sl_pp_build_v2(in, (char *)buf, sizeof buf), n);
	assert_memory_equal(buf, want, n);
	assert_int_equal(sl_pp_build_v2(in, (char *)buf, n), n);
	assert_int_equal(sl_pp_build_v2(in, (char *)buf, n - 1), 0);
}

static void test_build_v1(void **state)
{
	sl_pp_info in;

	(void)state;
	in = pp_ip(SL_PP_TCP4, "192.168.0.1", 56324, "192.168.0.11", 443);
	expect_v1(&in, "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n");
	in = pp_ip(SL_PP_TCP4, "0.0.0.0", 0, "255.255.255.255", 65535);
	expect_v1(&in, "PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n");
	in = pp_ip(SL_PP_TCP6, "2001:db8::1", 1, "2001:DB8::2", 2);
	expect_v1(&in, "PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n");
	in = pp_ip(SL_PP_TCP6, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
		   65535, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535);
	expect_v1(&in, "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
		       "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
		       "65535 65535\r\n");
	/* Both ends IPv4-mapped: TCP4. */
	in = pp_ip(SL_PP_TCP6, "::ffff:10.0.0.1", 1, "::ffff:10.0.0.2", 2);
	expect_v1(&in, "PROXY TCP4 10.0.0.1 10.0.0.2 1 2\r\n");
	/* IPv4 beside IPv6: TCP6 with the IPv4 end mapped, in hex. */
	in = pp_ip(SL_PP_TCP4, "10.0.0.1", 1, "2001:db8::2", 2);
	expect_v1(&in, "PROXY TCP6 ::ffff:a00:1 2001:db8::2 1 2\r\n");
	in = pp_ip(SL_PP_TCP6, "2001:db8::1", 1, "::ffff:10.0.0.2", 2);
	expect_v1(&in, "PROXY TCP6 2001:db8::1 ::ffff:a00:2 1 2\r\n");
	/* v1 has no LOCAL: the addresses are written. */
	in = pp_ip(SL_PP_TCP4, "10.0.0.1", 1, "10.0.0.2", 2);
	in.local = 1;
	expect_v1(&in, "PROXY TCP4 10.0.0.1 10.0.0.2 1 2\r\n");

	memset(&in, 0, sizeof in);
	in.family = SL_PP_UNKNOWN;
	expect_v1(&in, "PROXY UNKNOWN\r\n");
	in.family = SL_PP_UNIX;
	strcpy(in.src_path, "/a");
	expect_v1(&in, "PROXY UNKNOWN\r\n");
	/* TCP4 with an end that has no IP address. */
	in = pp_ip(SL_PP_TCP4, "10.0.0.1", 1, "10.0.0.2", 2);
	memset(&in.dst, 0, sizeof in.dst);
	expect_v1(&in, "PROXY UNKNOWN\r\n");
}

static void test_build_v2(void **state)
{
	uint8_t want[16 + 216];
	sl_pp_info in;
	size_t n;

	(void)state;
	in = pp_ip(SL_PP_TCP4, "192.0.2.1", 54321, "198.51.100.2", 443);
	expect_v2(&in, v2_tcp4, sizeof v2_tcp4);
	in.version = 1; /* ignored */
	expect_v2(&in, v2_tcp4, sizeof v2_tcp4);
	in = pp_ip(SL_PP_TCP6, "::ffff:192.0.2.1", 54321,
		   "::ffff:198.51.100.2", 443);
	expect_v2(&in, v2_tcp4, sizeof v2_tcp4);
	in = pp_ip(SL_PP_TCP6, "2001:db8::1", 1, "2001:db8::2", 65535);
	expect_v2(&in, v2_tcp6, sizeof v2_tcp6);

	/* IPv4 beside IPv6: AF_INET6 with the IPv4 end mapped. */
	in = pp_ip(SL_PP_TCP4, "10.0.0.1", 7, "2001:db8::2", 8);
	n = v2_head(want, 0x21, 0x21, 36);
	memcpy(want + n, "\0\0\0\0\0\0\0\0\0\0\xff\xff\x0a\0\0\x01", 16);
	memcpy(want + n + 16, v2_tcp6 + 32, 16);
	memcpy(want + n + 32, "\x00\x07\x00\x08", 4);
	expect_v2(&in, want, n + 36);

	memset(&in, 0, sizeof in);
	in.family = SL_PP_UNIX;
	strcpy(in.src_path, "/run/client.sock");
	strcpy(in.dst_path, "/run/sluice.sock");
	n = v2_unix(want, "/run/client.sock", "/run/sluice.sock");
	expect_v2(&in, want, n);
	/* A path of 108 bytes fills its field, without a NUL. */
	memset(in.dst_path, 'p', SL_PP_PATH_MAX);
	in.dst_path[SL_PP_PATH_MAX] = '\0';
	memset(want + 16 + 108, 'p', 108);
	expect_v2(&in, want, n);

	memset(&in, 0, sizeof in);
	in.family = SL_PP_UNKNOWN;
	expect_v2(&in, v2_unspec, sizeof v2_unspec);
	in.local = 1;
	expect_v2(&in, v2_local, sizeof v2_local);
	/* LOCAL with addresses: written, for the receiver to ignore. */
	in = pp_ip(SL_PP_TCP4, "192.0.2.1", 54321, "198.51.100.2", 443);
	in.local = 1;
	memcpy(want, v2_tcp4, sizeof v2_tcp4);
	want[12] = 0x20;
	expect_v2(&in, want, sizeof v2_tcp4);
	/* TCP6 with an end that has no IP address: AF_UNSPEC. */
	in = pp_ip(SL_PP_TCP6, "::1", 1, "::2", 2);
	memset(&in.src, 0, sizeof in.src);
	expect_v2(&in, v2_unspec, sizeof v2_unspec);
}

static void expect_same(const sl_pp_info *a, const sl_pp_info *b)
{
	assert_int_equal(a->local, b->local);
	assert_int_equal(a->family, b->family);
	assert_int_equal(memcmp(&a->src, &b->src, sizeof a->src), 0);
	assert_int_equal(memcmp(&a->dst, &b->dst, sizeof a->dst), 0);
	assert_string_equal(a->src_path, b->src_path);
	assert_string_equal(a->dst_path, b->dst_path);
}

/*
 * The TLS TLVs, byte for byte: PP2_TYPE_AUTHORITY (SNI), then PP2_TYPE_SSL
 * with the client flags, the verify result and the version, CN and
 * cipher sub-TLVs; a value over its bound is left out whole; the largest
 * header the builder can write is one the parser takes.
 */
static void test_build_v2_tls(void **state)
{
	static const uint8_t want[] = {
		0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49,
		0x54, 0x0a, 0x21, 0x11, 0x00, 12 + 3 + 4 + 3 + 5 + 3 + 7 + 3 + 3 +
						  3 + 2,
		10, 0, 0, 1, 10, 0, 0, 2, 0, 1, 0, 2,
		0x02, 0x00, 0x04, 'h', 'o', 's', 't',
		0x20, 0x00, 5 + 3 + 7 + 3 + 3 + 3 + 2,
		0x07, 0x00, 0x00, 0x00, 0x00,
		0x21, 0x00, 0x07, 'T', 'L', 'S', 'v', '1', '.', '3',
		0x22, 0x00, 0x03, 'c', '\0', 'n',
		0x23, 0x00, 0x02, 'c', 'x',
	};
	char big[SL_PP_TLS_VALUE_MAX + 1], buf[SL_PP_MAX_LEN];
	char ver[SL_PP_TLS_SHORT_MAX + 2];
	sl_pp_tls t = {
		.client = SL_PP2_CLIENT_SSL | SL_PP2_CLIENT_CERT_CONN |
			  SL_PP2_CLIENT_CERT_SESS,
		.verify = 0,
		.version = "TLSv1.3",
		.cipher = "cx",
		.cn = "c\0n",
		.cn_len = 3,
		.sni = "host",
		.sni_len = 4,
	};
	sl_pp_info in, out;
	size_t n;

	(void)state;
	in = pp_ip(SL_PP_TCP4, "10.0.0.1", 1, "10.0.0.2", 2);
	in.tls = &t;
	n = sl_pp_build_v2(&in, buf, sizeof buf);
	assert_int_equal(n, sizeof want);
	assert_memory_equal(buf, want, sizeof want);
	assert_int_equal(sl_pp_build_v2(&in, buf, n - 1), 0);
	parse_whole(buf, n, &out);
	assert_int_equal(out.family, SL_PP_TCP4);

	/* No certificate: verify says so (not 0), no CN; no SNI. */
	t.client = SL_PP2_CLIENT_SSL;
	t.verify = 1;
	t.cn = NULL;
	t.sni = NULL;
	n = sl_pp_build_v2(&in, buf, sizeof buf);
	assert_int_equal(n, 16 + 12 + 3 + 5 + 10 + 5);
	assert_memory_equal(buf + 28, "\x20\x00\x14\x01\x00\x00\x00\x01", 8);

	/* At the bounds: kept; one over: left out, never cut. */
	memset(big, 'a', sizeof big);
	t.sni = t.cn = big;
	t.sni_len = t.cn_len = SL_PP_TLS_VALUE_MAX;
	in.family = SL_PP_UNIX;
	memset(in.src_path, 'p', SL_PP_PATH_MAX);
	memset(in.dst_path, 'q', SL_PP_PATH_MAX);
	memset(ver, 'v', sizeof ver);
	ver[SL_PP_TLS_SHORT_MAX] = ver[SL_PP_TLS_SHORT_MAX + 1] = '\0';
	t.version = ver;
	n = sl_pp_build_v2(&in, buf, sizeof buf);
	assert_int_equal(n, 16 + 216 + 3 + 255 + 3 + 5 + 3 + 64 + 3 + 255 +
				    3 + 2);
	parse_whole(buf, n, &out);
	assert_int_equal(out.family, SL_PP_UNIX);
	t.sni_len = t.cn_len = SL_PP_TLS_VALUE_MAX + 1;
	ver[SL_PP_TLS_SHORT_MAX] = 'v';
	n = sl_pp_build_v2(&in, buf, sizeof buf);
	assert_int_equal(n, 16 + 216 + 3 + 5 + 3 + 2);
	assert_int_equal((uint8_t)buf[16 + 216], 0x20);
}

static void test_round_trip(void **state)
{
	sl_pp_info ins[8], out;
	char buf[SL_PP_MAX_LEN];
	size_t n, k = 0;

	(void)state;
	ins[k++] = pp_ip(SL_PP_TCP4, "192.0.2.1", 54321, "198.51.100.2", 443);
	ins[k++] = pp_ip(SL_PP_TCP4, "0.0.0.0", 0, "255.255.255.255", 65535);
	ins[k++] = pp_ip(SL_PP_TCP6, "2001:db8::1", 1, "fe80::1:2", 2);
	ins[k++] = pp_ip(SL_PP_TCP6, "::", 0, "::1", 1);
	ins[k++] = pp_ip(SL_PP_TCP6, "::ffff:10.0.0.1", 5, "2001:db8::", 6);
	memset(&ins[k], 0, sizeof ins[k]);
	ins[k++].family = SL_PP_UNKNOWN;
	for (size_t i = 0; i < k; i++) {
		const sl_pp_info *in = &ins[i];

		n = sl_pp_build_v1(in, buf, sizeof buf);
		assert_true(n > 0 && n <= SL_PP_V1_MAX);
		assert_int_equal(sl_pp_parse(buf, n, &out, NULL), n);
		assert_int_equal(out.version, 1);
		expect_same(in, &out);
		n = sl_pp_build_v2(in, buf, sizeof buf);
		assert_true(n >= 16 && n <= 16 + 216);
		assert_int_equal(sl_pp_parse(buf, n, &out, NULL), n);
		assert_int_equal(out.version, 2);
		expect_same(in, &out);
	}
	/* UNIX: v2 only. */
	memset(&ins[0], 0, sizeof ins[0]);
	ins[0].family = SL_PP_UNIX;
	strcpy(ins[0].src_path, "@abstract");
	memset(ins[0].dst_path, 'x', SL_PP_PATH_MAX);
	n = sl_pp_build_v2(&ins[0], buf, sizeof buf);
	assert_int_equal(n, 16 + 216);
	assert_int_equal(sl_pp_parse(buf, n, &out, NULL), n);
	expect_same(&ins[0], &out);
	/* LOCAL: comes back as LOCAL, without the addresses. */
	ins[0] = pp_ip(SL_PP_TCP6, "2001:db8::1", 1, "2001:db8::2", 2);
	ins[0].local = 1;
	n = sl_pp_build_v2(&ins[0], buf, sizeof buf);
	assert_int_equal(sl_pp_parse(buf, n, &out, NULL), n);
	assert_int_equal(out.local, 1);
	assert_int_equal(out.family, SL_PP_UNKNOWN);
	assert_int_equal(out.src.family, SL_AF_NONE);
}

/* ---- malformed -------------------------------------------------------- */

struct bad {
	const char *bytes;
	size_t len; /* 0: strlen(bytes) */
	const char *why; /* a substring of the reason */
};

#define V2(rest) SIG rest
#define V2_LEN(n) (SIG_LEN + (n))

static const struct bad bads[] = {
	/* Not the protocol at all: refused on the first byte that says so. */
	{"GET / HTTP/1.1\r\n\r\n", 0, "bad signature"},
	{"G", 0, "bad signature"},
	{"\x16\x03\x01\x02\x00", 5, "bad signature"},
	{"SSH-2.0-OpenSSH_9.2\r\n", 0, "bad signature"},
	{"\0", 1, "bad signature"},
	{"proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n", 0, "bad signature"},
	{"Proxy", 0, "bad signature"},
	{"PROXX", 0, "bad signature"},
	{"PROXY\t", 0, "bad signature"},
	{"PROXY\r\n", 0, "bad signature"},
	{"\r\n\r\n\0\r\nQUIT\x0b", 12, "bad signature"},
	{"\r\n\r\n\x01", 5, "bad signature"},
	{"\r\n\r\n\0\r\nquit\n", 12, "bad signature"},
	{"\r\r", 2, "bad signature"},
	/* v1: the protocol word. */
	{"PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n", 0, "v1 bad protocol"},
	{"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", 0, "v1 bad protocol"},
	{"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", 0, "v1 bad protocol"},
	{"PROXY X", 0, "v1 bad protocol"},
	{"PROXY \r\n", 0, "v1 bad protocol"},
	{"PROXY TCP4\r\n", 0, "v1 bad protocol"},
	{"PROXY UNKNOWNX\r\n", 0, "v1 bad protocol"},
	{"PROXY UNKNOWN\n", 0, "v1 bad protocol"},
	/* v1: one space between fields, and just the fields. */
	{"PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n", 0, "v1 bad protocol"},
	{"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n", 0, "v1 empty field"},
	{"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", 0, "v1 empty field"},
	{"PROXY TCP4 1.2.3.4 5.6.7.8  1 2\r\n", 0, "v1 empty field"},
	{"PROXY TCP4 1.2.3.4 5.6.7.8 1  2\r\n", 0, "v1 empty field"},
	{"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", 0, "v1 too many fields"},
	{"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", 0, "v1 too many fields"},
	{"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", 0, "v1 missing field"},
	{"PROXY TCP4 1.2.3.4\r\n", 0, "v1 missing field"},
	{"PROXY TCP4 \r\n", 0, "v1 empty field"},
	{"PROXY TCP4 1.2.3.4\t5.6.7.8 1 2\r\n", 0, "v1 bad character"},
	{"PROXY TCP4 1.2.3.4 5.6.7.8 1 2x\r\n", 0, "v1 bad character"},
	{"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\0\r\n", 33, "v1 bad character"},
	{"PROXY TCP4 GET / HTTP/1.1", 0, "v1 bad character"},
	/* v1: CRLF, and nothing else, within 107 bytes. */
	{"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", 0, "v1 LF without CR"},
	{"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX", 0, "v1 CR without LF"},
	{"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n", 0, "v1 CR without LF"},
	{"PROXY UNKNOWN a\nb\r\n", 0, "v1 LF without CR"},
	{"PROXY UNKNOWN a\rb\r\n", 0, "v1 CR without LF"},
	{"PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
	 "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 655350\r\n",
	 0, "v1 line too long"},
	/* (these two are longer than 107 bytes, and have no CRLF) */
	{"PROXY UNKNOWN aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
	 0, "v1 line too long"},
	{"PROXY TCP6 0000:0000:0000:0000:0000:0000:0000:0001 "
	 "0000:0000:0000:0000:0000:0000:0000:0002 65535 65535        ",
	 0, "v1 line too long"},
	/* v1: addresses valid for the family. */
	{"PROXY TCP4 256.1.1.1 5.6.7.8 1 2\r\n", 0, "v1 bad address"},
	{"PROXY TCP4 1.2.3.4 5.6.7.256 1 2\r\n", 0, "v1 bad address"},
	{"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n", 0, "v1 bad address"},
	{"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", 0, "v1 bad address"},
	{"PROXY TCP4 1.2.3.4.5 5.6.7.8 1 2\r\n", 0, "v1 bad address"},
	{"PROXY TCP4 ::1 ::2 1 2\r\n", 0, "v1 bad address"},
	{"PROXY TCP4 1.2.3.4 ::ffff:5.6.7.8 1 2\r\n", 0, "v1 bad address"},
	{"PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n", 0, "v1 bad address"},
	{"PROXY TCP6 ::1 5.6.7.8 1 2\r\n", 0, "v1 bad address"},
	{"PROXY TCP6 ::: ::1 1 2\r\n", 0, "v1 bad address"},
	{"PROXY TCP6 ::ffff:1.2.3 ::1 1 2\r\n", 0, "v1 bad address"},
	{"PROXY TCP6 ::ffff:01.2.3.4 ::1 1 2\r\n", 0, "v1 bad address"},
	{"PROXY TCP6 1::2::3 ::1 1 2\r\n", 0, "v1 bad address"},
	{"PROXY TCP6 12345::1 ::1 1 2\r\n", 0, "v1 bad address"},
	{"PROXY TCP6 1:2:3:4:5:6:7:8:9 ::1 1 2\r\n", 0, "v1 bad address"},
	/* v1: ports 0-65535 in decimal, no leading zeros or signs. */
	{"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", 0, "v1 bad port"},
	{"PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n", 0, "v1 bad port"},
	{"PROXY TCP4 1.2.3.4 5.6.7.8 99999 2\r\n", 0, "v1 bad port"},
	{"PROXY TCP4 1.2.3.4 5.6.7.8 123456 2\r\n", 0, "v1 bad port"},
	{"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", 0, "v1 bad port"},
	{"PROXY TCP4 1.2.3.4 5.6.7.8 1 00\r\n", 0, "v1 bad port"},
	{"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n", 0, "v1 bad character"},
	{"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n", 0, "v1 bad character"},
	{"PROXY TCP4 1.2.3.4 5.6.7.8 1a 2\r\n", 0, "v1 bad port"},
	{"PROXY TCP4 1.2.3.4 5.6.7.8 1.5 2\r\n", 0, "v1 bad port"},
	/* v2: version and command. */
	{V2("\x11\x11\x00\x0c"), V2_LEN(4), "v2 unsupported version"},
	{V2("\x31\x11\x00\x0c"), V2_LEN(4), "v2 unsupported version"},
	{V2("\x01"), V2_LEN(1), "v2 unsupported version"},
	{V2("\xf1"), V2_LEN(1), "v2 unsupported version"},
	{V2("\x22\x11\x00\x0c"), V2_LEN(4), "v2 unknown command"},
	{V2("\x2f"), V2_LEN(1), "v2 unknown command"},
	/* v2: family and transport. */
	{V2("\x21\x41"), V2_LEN(2), "v2 unknown address family"},
	{V2("\x20\xf0"), V2_LEN(2), "v2 unknown address family"},
	{V2("\x21\x13"), V2_LEN(2), "v2 unknown transport"},
	{V2("\x20\x03"), V2_LEN(2), "v2 unknown transport"},
	{V2("\x21\x12\x00\x0c"), V2_LEN(4), "v2 unsupported transport"},
	{V2("\x21\x22\x00\x24"), V2_LEN(4), "v2 unsupported transport"},
	{V2("\x21\x32\x00\xd8"), V2_LEN(4), "v2 unsupported transport"},
	{V2("\x21\x02\x00\x00"), V2_LEN(4), "v2 unsupported transport"},
	/* v2: the length, against the family and against the cap. */
	{V2("\x21\x11\x00\x0b"), V2_LEN(4), "v2 address block too short"},
	{V2("\x21\x11\x00\x00"), V2_LEN(4), "v2 address block too short"},
	{V2("\x21\x21\x00\x23"), V2_LEN(4), "v2 address block too short"},
	{V2("\x21\x21\x00\x0c"), V2_LEN(4), "v2 address block too short"},
	{V2("\x21\x31\x00\xd7"), V2_LEN(4), "v2 address block too short"},
	{V2("\x21\x11\x04\x01"), V2_LEN(4), "v2 header too long"},
	{V2("\x21\x00\xff\xff"), V2_LEN(4), "v2 header too long"},
	{V2("\x20\x00\x04\x01"), V2_LEN(4), "v2 header too long"},
	/* v2: TLVs after the addresses must fit. */
	{V2("\x21\x11\x00\x0e" "abcdefghijkl" "\x04\x00"), V2_LEN(18),
	 "v2 bad TLV"},
	{V2("\x21\x11\x00\x0f" "abcdefghijkl" "\x04\x00\x01"), V2_LEN(19),
	 "v2 bad TLV"},
	{V2("\x21\x11\x00\x11" "abcdefghijkl" "\x04\x00\x01" "x" "\x04"),
	 V2_LEN(21), "v2 bad TLV"},
};

static void test_bad(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof bads / sizeof bads[0]; i++) {
		const struct bad *b = &bads[i];
		size_t len = b->len != 0 ? b->len : strlen(b->bytes);
		const char *why = NULL;
		sl_pp_info info;
		ptrdiff_t r;

		memset(&info, 0x5a, sizeof info);
		r = sl_pp_parse(b->bytes, len, &info, &why);
		if (r != -1)
			fail_msg("bad %d ('%.40s'): %d, want -1", (int)i,
				 b->bytes, (int)r);
		if (why == NULL || strstr(why, b->why) == NULL)
			fail_msg("bad %d ('%.40s'): why '%s', want '%s'",
				 (int)i, b->bytes, why != NULL ? why : "(NULL)",
				 b->why);
		/* *out is only written for a whole header. */
		assert_int_equal(info.version, 0x5a5a5a5a);
		/* why may be NULL. */
		assert_int_equal(sl_pp_parse(b->bytes, len, NULL, NULL), -1);
	}
}

/*
 * Each malformed input is refused at the first byte that makes it so, and
 * stays refused with more bytes after it.
 */
static void test_early(void **state)
{
	static const struct {
		const char *bytes;
		size_t ok; /* the longest prefix still 0 */
	} cases[] = {
		{"GET", 0},
		{"PROXZ", 4},
		{"PROXY Z", 6},
		{"PROXY TCP4 GET", 11},
		{"PROXY UNKNOWN\n", 13},
		{"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rZ", 31},
		{V2("\x10"), 12},
		{V2("\x22"), 12},
		{V2("\x21\x12"), 13},
		{V2("\x21\x11\x00\x0b"), 15},
		{V2("\x21\x11\x04\x01"), 15},
	};
	char buf[SL_PP_MAX_LEN];

	(void)state;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		size_t len = cases[i].ok + 1;

		for (size_t n = 0; n <= cases[i].ok; n++)
			assert_int_equal(sl_pp_parse(cases[i].bytes, n, NULL,
						     NULL),
					 0);
		assert_int_equal(sl_pp_parse(cases[i].bytes, len, NULL, NULL),
				 -1);
		memset(buf, 'a', sizeof buf);
		memcpy(buf, cases[i].bytes, len);
		for (size_t n = len; n <= sizeof buf; n += 97)
			assert_int_equal(sl_pp_parse(buf, n, NULL, NULL), -1);
	}
}

/* Never 0 once SL_PP_MAX_LEN bytes are there. */
static void test_max_len(void **state)
{
	uint8_t buf[SL_PP_MAX_LEN + 8];
	size_t n;

	(void)state;
	memset(buf, ' ', sizeof buf);
	memcpy(buf, "PROXY UNKNOWN ", 14);
	assert_int_equal(sl_pp_parse(buf, SL_PP_V1_MAX - 1, NULL, NULL), 0);
	assert_int_equal(sl_pp_parse(buf, SL_PP_V1_MAX, NULL, NULL), -1);
	assert_int_equal(sl_pp_parse(buf, SL_PP_MAX_LEN, NULL, NULL), -1);
	/* A v2 header as long as allowed is whole at SL_PP_MAX_LEN. */
	memset(buf, 0, sizeof buf);
	n = v2_head(buf, 0x21, 0x00, SL_PP_V2_DATA_MAX);
	assert_int_equal(sl_pp_parse(buf, SL_PP_MAX_LEN - 1, NULL, NULL), 0);
	assert_int_equal(sl_pp_parse(buf, SL_PP_MAX_LEN, NULL, NULL),
			 SL_PP_MAX_LEN);
	assert_int_equal(sl_pp_parse(buf, sizeof buf, NULL, NULL),
			 n + SL_PP_V2_DATA_MAX);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_v1_good),
		cmocka_unit_test(test_v2_good),
		cmocka_unit_test(test_v2_tlv),
		cmocka_unit_test(test_build_v1),
		cmocka_unit_test(test_build_v2),
		cmocka_unit_test(test_build_v2_tls),
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_bad),
		cmocka_unit_test(test_early),
		cmocka_unit_test(test_max_len),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
