/*
 * PROXY protocol v1 and v2 (HAProxy's doc/proxy-protocol.txt, sections 2.1
 * and 2.2).  The parser works on whatever bytes have arrived so far and is
 * called again with more; it keeps no state, so every call decides from
 * the start.  Each step rejects as soon as the bytes it has seen cannot
 * become a valid header, so a client that speaks something else is turned
 * away on its first segment instead of after a timeout.
 *
 * Where the specification leaves the receiver a choice, the stricter one is
 * taken (a malformed header is a closed connection, and a sender that gets
 * it wrong should find out): a CR or LF anywhere but in the final CRLF is
 * refused, and v2 TLVs after a known address block must tile the rest of
 * the header exactly.  DGRAM is refused for PROXY connections: sluice
 * forwards streams only.
 *
 * One exception, for the senders that exist: the specification writes v1
 * TCP6 addresses as "sets of 4 hexadecimal digits", but HAProxy and nginx
 * print theirs with inet_ntop(), which writes an IPv4-mapped address (any
 * IPv4 client of a dual-stack listener) as ::ffff:a.b.c.d.  The dotted
 * tail is accepted; the builder writes hex groups, which every reader
 * takes.
 */
#include "proxyproto.h"

#include <stdio.h>
#include <string.h>

static const uint8_t v2_sig[12] = {
	0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
};

#define V1_SIG "PROXY "
#define V1_SIG_LEN 6
/* "PROXY TCP4 " and "PROXY TCP6 ": where the addresses start. */
#define V1_TCP_FIELDS 11
#define V1_BAD_PROTO "v1 bad protocol (TCP4, TCP6 or UNKNOWN)"

#define V2_HDR_LEN 16
#define V2_CMD_LOCAL 0x0
#define V2_CMD_PROXY 0x1
#define V2_AF_UNSPEC 0x0
#define V2_AF_INET 0x1
#define V2_AF_INET6 0x2
#define V2_AF_UNIX 0x3
#define V2_PROTO_UNSPEC 0x0
#define V2_PROTO_STREAM 0x1
#define V2_PROTO_DGRAM 0x2
#define V2_INET_LEN 12
#define V2_INET6_LEN 36
#define V2_UNIX_LEN (2 * SL_PP_PATH_MAX)
#define V2_TLV_HDR_LEN 3
#define PP2_TYPE_ALPN 0x01
#define PP2_TYPE_AUTHORITY 0x02
#define PP2_TYPE_SSL 0x20
#define PP2_SUBTYPE_SSL_VERSION 0x21
#define PP2_SUBTYPE_SSL_CN 0x22
#define PP2_SUBTYPE_SSL_CIPHER 0x23
/* PP2_TYPE_SSL's value before its sub-TLVs: client (1), verify (4). */
#define PP2_SSL_FIXED_LEN 5

static const uint8_t mapped_prefix[12] = {
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff,
};

static ptrdiff_t malformed(const char **why, const char *text)
{
	if (why != NULL)
		*why = text;
	return -1;
}

/* ---- v1 --------------------------------------------------------------- */

/*
 * The words that may follow "PROXY ", with what must come after each: the
 * addresses after a space, or for UNKNOWN either the CRLF at once or a
 * space and anything up to the CRLF.
 */
static const char *const v1_protos[] = {
	"TCP4 ", "TCP6 ", "UNKNOWN ", "UNKNOWN\r",
};

/* Can [s, s + n) begin one of v1_protos?  Its index (the first that
 * fits, when n is too short to tell), or -1. */
static int v1_proto(const uint8_t *s, size_t n)
{
	for (int i = 0; i < (int)(sizeof v1_protos / sizeof v1_protos[0]);
	     i++) {
		size_t m = strlen(v1_protos[i]);

		if (memcmp(s, v1_protos[i], n < m ? n : m) == 0)
			return i;
	}
	return -1;
}

/* What may stand between "PROXY TCPx " and the CRLF. */
static int v1_tcp_char(int c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
	       (c >= 'A' && c <= 'F') || c == '.' || c == ':' || c == ' ';
}

/* An address of the line's family, the whole of [s, s + n). */
static int v1_addr(const uint8_t *s, size_t n, uint8_t family,
		   sl_ipaddr *out)
{
	char text[SL_IPADDR_TEXT_MAX];

	if (n >= sizeof text)
		return -1;
	memcpy(text, s, n);
	text[n] = '\0';
	if (sl_ipaddr_parse(text, out) < 0 || out->family != family)
		return -1;
	return 0;
}

/* A port, the whole of [s, s + n): 0-65535 without leading zeros. */
static int v1_port(const uint8_t *s, size_t n, uint16_t *port)
{
	unsigned v = 0;

	if (n == 0 || n > 5 || (s[0] == '0' && n > 1))
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	if (v > 65535)
		return -1;
	*port = (uint16_t)v;
	return 0;
}

/* "SRC DST SPORT DPORT" of a TCP4 or TCP6 line, [s, end). */
static ptrdiff_t v1_tcp(const uint8_t *s, const uint8_t *end,
			uint8_t family, sl_pp_info *info, const char **why)
{
	const uint8_t *field[4];
	size_t flen[4];

	for (int k = 0; k < 4; k++) {
		const uint8_t *f = s;

		while (s < end && *s != ' ')
			s++;
		if (s == f)
			return malformed(why, "v1 empty field (one space "
					      "between fields)");
		field[k] = f;
		flen[k] = (size_t)(s - f);
		if (k < 3) {
			if (s == end)
				return malformed(why, "v1 missing field");
			s++;
		} else if (s != end) {
			return malformed(why, "v1 too many fields");
		}
	}
	if (v1_addr(field[0], flen[0], family, &info->src) < 0 ||
	    v1_addr(field[1], flen[1], family, &info->dst) < 0)
		return malformed(why, "v1 bad address");
	if (v1_port(field[2], flen[2], &info->src.port) < 0 ||
	    v1_port(field[3], flen[3], &info->dst.port) < 0)
		return malformed(why, "v1 bad port");
	return 0;
}

/* buf starts with "PROXY " and len >= 6. */
static ptrdiff_t parse_v1(const uint8_t *buf, size_t len, sl_pp_info *info,
			  const char **why)
{
	size_t avail = len < SL_PP_V1_MAX ? len : SL_PP_V1_MAX;
	size_t eol = 0;
	int proto, found = 0;

	proto = v1_proto(buf + V1_SIG_LEN, avail - V1_SIG_LEN);
	if (proto < 0)
		return malformed(why, V1_BAD_PROTO);
	for (size_t i = V1_SIG_LEN; i < avail; i++) {
		if (buf[i] == '\n')
			return malformed(why, "v1 LF without CR");
		if (buf[i] == '\r') {
			if (i + 1 == avail)
				break;
			if (buf[i + 1] != '\n')
				return malformed(why, "v1 CR without LF");
			eol = i;
			found = 1;
			break;
		}
		/* After "PROXY TCPx " (v1_proto() judged the bytes before),
		 * only what addresses and ports are written with. */
		if (buf[V1_SIG_LEN] == 'T' && i >= V1_TCP_FIELDS &&
		    !v1_tcp_char(buf[i]))
			return malformed(why, "v1 bad character");
	}
	if (!found && avail == SL_PP_V1_MAX)
		return malformed(why, "v1 line too long");
	if (!found)
		return 0;
	/*
	 * The whole line is here, so v1_proto() saw all of the word and what
	 * follows it (no word holds a CR or LF but UNKNOWN's CRLF form):
	 * proto is certain now.  The rest of an UNKNOWN line is ignored, as
	 * the specification says.
	 */
	info->version = 1;
	info->family = SL_PP_UNKNOWN;
	if (proto == 0 || proto == 1) {
		info->family = proto == 0 ? SL_PP_TCP4 : SL_PP_TCP6;
		if (v1_tcp(buf + V1_TCP_FIELDS, buf + eol,
			   proto == 0 ? SL_AF_INET4 : SL_AF_INET6, info,
			   why) < 0)
			return -1;
	}
	return (ptrdiff_t)(eol + 2);
}

/* ---- v2 --------------------------------------------------------------- */

static unsigned get16(const uint8_t *p)
{
	return (unsigned)p[0] << 8 | p[1];
}

/* TLVs, [p, end): type, 16-bit length, value; they must fit exactly. */
static int v2_tlvs(const uint8_t *p, const uint8_t *end)
{
	while (p < end) {
		size_t n;

		if (end - p < V2_TLV_HDR_LEN)
			return -1;
		n = get16(p + 1);
		p += V2_TLV_HDR_LEN;
		if ((size_t)(end - p) < n)
			return -1;
		p += n;
	}
	return 0;
}

/* A 108-byte AF_UNIX address, NUL-padded (or not, when it is full). */
static void v2_path(const uint8_t *p, char *out)
{
	const uint8_t *z = memchr(p, '\0', SL_PP_PATH_MAX);
	size_t n = z != NULL ? (size_t)(z - p) : SL_PP_PATH_MAX;

	memcpy(out, p, n);
	out[n] = '\0';
}

/* buf starts with the 12-byte signature and len >= 12. */
static ptrdiff_t parse_v2(const uint8_t *buf, size_t len, sl_pp_info *info,
			  const char **why)
{
	unsigned cmd, af, proto, dlen;
	size_t need = 0;
	const uint8_t *a = buf + V2_HDR_LEN;

	if (len < 13)
		return 0;
	if (buf[12] >> 4 != 2)
		return malformed(why, "v2 unsupported version");
	cmd = buf[12] & 0xf;
	if (cmd != V2_CMD_LOCAL && cmd != V2_CMD_PROXY)
		return malformed(why, "v2 unknown command");
	if (len < 14)
		return 0;
	af = buf[13] >> 4;
	proto = buf[13] & 0xf;
	if (af > V2_AF_UNIX)
		return malformed(why, "v2 unknown address family");
	if (proto > V2_PROTO_DGRAM)
		return malformed(why, "v2 unknown transport");
	/* LOCAL: the family "is ignored", so even DGRAM is let pass. */
	if (cmd == V2_CMD_PROXY && proto == V2_PROTO_DGRAM)
		return malformed(why, "v2 unsupported transport (DGRAM)");
	if (len < V2_HDR_LEN)
		return 0;
	dlen = get16(buf + 14);
	if (dlen > SL_PP_V2_DATA_MAX)
		return malformed(why, "v2 header too long");
	/* An UNSPEC family or transport carries nothing to read. */
	if (cmd == V2_CMD_PROXY && proto == V2_PROTO_STREAM) {
		if (af == V2_AF_INET)
			need = V2_INET_LEN;
		else if (af == V2_AF_INET6)
			need = V2_INET6_LEN;
		else if (af == V2_AF_UNIX)
			need = V2_UNIX_LEN;
	}
	if (dlen < need)
		return malformed(why, "v2 address block too short");
	if (len < V2_HDR_LEN + dlen)
		return 0;
	info->version = 2;
	info->local = cmd == V2_CMD_LOCAL;
	info->family = SL_PP_UNKNOWN;
	if (need == 0)
		return (ptrdiff_t)(V2_HDR_LEN + dlen);
	if (v2_tlvs(a + need, a + dlen) < 0)
		return malformed(why, "v2 bad TLV");
	switch (af) {
	case V2_AF_INET:
		info->family = SL_PP_TCP4;
		info->src.family = info->dst.family = SL_AF_INET4;
		memcpy(info->src.ip, a, 4);
		memcpy(info->dst.ip, a + 4, 4);
		info->src.port = (uint16_t)get16(a + 8);
		info->dst.port = (uint16_t)get16(a + 10);
		break;
	case V2_AF_INET6:
		info->family = SL_PP_TCP6;
		info->src.family = info->dst.family = SL_AF_INET6;
		memcpy(info->src.ip, a, 16);
		memcpy(info->dst.ip, a + 16, 16);
		info->src.port = (uint16_t)get16(a + 32);
		info->dst.port = (uint16_t)get16(a + 34);
		break;
	default:
		info->family = SL_PP_UNIX;
		v2_path(a, info->src_path);
		v2_path(a + SL_PP_PATH_MAX, info->dst_path);
		break;
	}
	return (ptrdiff_t)(V2_HDR_LEN + dlen);
}

ptrdiff_t sl_pp_parse(const void *buf, size_t len, sl_pp_info *out,
		      const char **why)
{
	const uint8_t *p = buf;
	sl_pp_info info;
	ptrdiff_t r;

	if (why != NULL)
		*why = NULL;
	if (len == 0)
		return 0;
	/* Filled on the side, so *out changes only for a whole header. */
	memset(&info, 0, sizeof info);
	if (p[0] == V1_SIG[0]) {
		if (memcmp(p, V1_SIG, len < V1_SIG_LEN ? len : V1_SIG_LEN) != 0)
			return malformed(why, "bad signature");
		if (len < V1_SIG_LEN)
			return 0;
		r = parse_v1(p, len, &info, why);
	} else {
		if (memcmp(p, v2_sig, len < sizeof v2_sig ? len : sizeof v2_sig)
		    != 0)
			return malformed(why, "bad signature");
		if (len < sizeof v2_sig)
			return 0;
		r = parse_v2(p, len, &info, why);
	}
	if (r > 0 && out != NULL)
		*out = info;
	return r;
}

/* ---- builders --------------------------------------------------------- */

static void to_mapped(sl_ipaddr *a)
{
	if (a->family != SL_AF_INET4)
		return;
	memmove(a->ip + 12, a->ip, 4);
	memcpy(a->ip, mapped_prefix, sizeof mapped_prefix);
	a->family = SL_AF_INET6;
}

/*
 * The family a header says, judged by the addresses themselves for TCP4
 * and TCP6: both IPv4 (mapped or not) is TCP4, an IPv6 end makes it TCP6
 * with the other end mapped, and an end without an IP address makes it
 * UNKNOWN.  *src and *dst become the addresses to write.
 */
static enum sl_pp_family wire_family(const sl_pp_info *in, sl_ipaddr *src,
				     sl_ipaddr *dst)
{
	*src = in->src;
	*dst = in->dst;
	if (in->family == SL_PP_UNIX)
		return SL_PP_UNIX;
	if (in->family != SL_PP_TCP4 && in->family != SL_PP_TCP6)
		return SL_PP_UNKNOWN;
	sl_ipaddr_unmap(src);
	sl_ipaddr_unmap(dst);
	if ((src->family != SL_AF_INET4 && src->family != SL_AF_INET6) ||
	    (dst->family != SL_AF_INET4 && dst->family != SL_AF_INET6))
		return SL_PP_UNKNOWN;
	if (src->family == SL_AF_INET4 && dst->family == SL_AF_INET4)
		return SL_PP_TCP4;
	to_mapped(src);
	to_mapped(dst);
	return SL_PP_TCP6;
}

/* v1's TCP6 text: RFC 5952, but hex groups even for IPv4-mapped. */
static void v1_format(const sl_ipaddr *a, char *out, size_t len)
{
	if (a->family == SL_AF_INET6 &&
	    memcmp(a->ip, mapped_prefix, sizeof mapped_prefix) == 0)
		snprintf(out, len, "::ffff:%x:%x", get16(a->ip + 12),
			 get16(a->ip + 14));
	else
		sl_ipaddr_format(a, out, len);
}

size_t sl_pp_build_v1(const sl_pp_info *in, char *buf, size_t cap)
{
	char line[SL_PP_V1_MAX + 1], s[SL_IPADDR_TEXT_MAX],
		d[SL_IPADDR_TEXT_MAX];
	sl_ipaddr src, dst;
	int n;

	switch (wire_family(in, &src, &dst)) {
	case SL_PP_TCP4:
	case SL_PP_TCP6:
		v1_format(&src, s, sizeof s);
		v1_format(&dst, d, sizeof d);
		n = snprintf(line, sizeof line, "PROXY TCP%c %s %s %u %u\r\n",
			     src.family == SL_AF_INET4 ? '4' : '6', s, d,
			     (unsigned)src.port, (unsigned)dst.port);
		break;
	default:
		n = snprintf(line, sizeof line, "PROXY UNKNOWN\r\n");
		break;
	}
	if (n < 0 || (size_t)n >= sizeof line || (size_t)n > cap)
		return 0;
	memcpy(buf, line, (size_t)n);
	return (size_t)n;
}

static void put16(uint8_t *p, unsigned v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void put_path(uint8_t *p, const char *path)
{
	const char *z = memchr(path, '\0', SL_PP_PATH_MAX);
	size_t n = z != NULL ? (size_t)(z - path) : SL_PP_PATH_MAX;

	memcpy(p, path, n);
	memset(p + n, 0, SL_PP_PATH_MAX - n);
}

/* One TLV at p (value v, n bytes) unless n is 0 or more than max: the
 * bytes written. */
static size_t put_tlv(uint8_t *p, uint8_t type, const void *v, size_t n,
		      size_t max)
{
	if (v == NULL || n == 0 || n > max)
		return 0;
	p[0] = type;
	put16(p + 1, (unsigned)n);
	memcpy(p + V2_TLV_HDR_LEN, v, n);
	return V2_TLV_HDR_LEN + n;
}

static size_t put_str_tlv(uint8_t *p, uint8_t type, const char *s)
{
	return s != NULL ? put_tlv(p, type, s, strlen(s), SL_PP_TLS_SHORT_MAX)
			 : 0;
}

/* The TLS TLVs of t at p: the bytes written (at most V2_TLS_MAX). */
static size_t put_tls(uint8_t *p, const sl_pp_tls *t)
{
	size_t n = put_tlv(p, PP2_TYPE_ALPN, t->alpn, t->alpn_len,
			   SL_PP_TLS_SHORT_MAX);
	uint8_t *ssl, *q;

	n += put_tlv(p + n, PP2_TYPE_AUTHORITY, t->sni, t->sni_len,
		     SL_PP_TLS_VALUE_MAX);
	ssl = p + n;
	q = ssl + V2_TLV_HDR_LEN;

	q[0] = t->client;
	q[1] = (uint8_t)(t->verify >> 24);
	q[2] = (uint8_t)(t->verify >> 16);
	q[3] = (uint8_t)(t->verify >> 8);
	q[4] = (uint8_t)t->verify;
	q += PP2_SSL_FIXED_LEN;
	q += put_str_tlv(q, PP2_SUBTYPE_SSL_VERSION, t->version);
	q += put_tlv(q, PP2_SUBTYPE_SSL_CN, t->cn, t->cn_len,
		     SL_PP_TLS_VALUE_MAX);
	q += put_str_tlv(q, PP2_SUBTYPE_SSL_CIPHER, t->cipher);
	ssl[0] = PP2_TYPE_SSL;
	put16(ssl + 1, (unsigned)(q - ssl - V2_TLV_HDR_LEN));
	return (size_t)(q - p);
}

/* The most put_tls writes. */
#define V2_TLS_MAX                                                         \
	(2 * (V2_TLV_HDR_LEN + SL_PP_TLS_VALUE_MAX) + V2_TLV_HDR_LEN +      \
	 PP2_SSL_FIXED_LEN + 3 * (V2_TLV_HDR_LEN + SL_PP_TLS_SHORT_MAX))
_Static_assert(V2_UNIX_LEN + V2_TLS_MAX <= SL_PP_V2_DATA_MAX,
	       "a built v2 header is one the parser takes");

size_t sl_pp_build_v2(const sl_pp_info *in, char *buf, size_t cap)
{
	uint8_t h[V2_HDR_LEN + V2_UNIX_LEN + V2_TLS_MAX];
	uint8_t *a = h + V2_HDR_LEN;
	sl_ipaddr src, dst;
	unsigned dlen = 0;

	memcpy(h, v2_sig, sizeof v2_sig);
	h[12] = 0x20 | (in->local ? V2_CMD_LOCAL : V2_CMD_PROXY);
	switch (wire_family(in, &src, &dst)) {
	case SL_PP_TCP4:
		h[13] = V2_AF_INET << 4 | V2_PROTO_STREAM;
		dlen = V2_INET_LEN;
		memcpy(a, src.ip, 4);
		memcpy(a + 4, dst.ip, 4);
		put16(a + 8, src.port);
		put16(a + 10, dst.port);
		break;
	case SL_PP_TCP6:
		h[13] = V2_AF_INET6 << 4 | V2_PROTO_STREAM;
		dlen = V2_INET6_LEN;
		memcpy(a, src.ip, 16);
		memcpy(a + 16, dst.ip, 16);
		put16(a + 32, src.port);
		put16(a + 34, dst.port);
		break;
	case SL_PP_UNIX:
		h[13] = V2_AF_UNIX << 4 | V2_PROTO_STREAM;
		dlen = V2_UNIX_LEN;
		put_path(a, in->src_path);
		put_path(a + SL_PP_PATH_MAX, in->dst_path);
		break;
	default:
		h[13] = V2_AF_UNSPEC << 4 | V2_PROTO_UNSPEC;
		break;
	}
	if (in->tls != NULL)
		dlen += (unsigned)put_tls(a + dlen, in->tls);
	put16(h + 14, dlen);
	if (V2_HDR_LEN + dlen > cap)
		return 0;
	memcpy(buf, h, V2_HDR_LEN + dlen);
	return V2_HDR_LEN + dlen;
}
