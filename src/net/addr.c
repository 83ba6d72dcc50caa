/*
 * IP address text, both ways, written out here rather than left to
 * inet_pton and inet_ntop: those differ between systems exactly where an
 * access list cares (glibc refuses "010.0.0.1", other C libraries have read
 * it as octal 8.0.0.1; Windows before Vista has no inet_pton at all), and
 * RFC 5952 output is not promised by every inet_ntop.  With our own code,
 * `sluice -t` on Linux judges an address as sluice.exe does.
 */
#include "addr.h"

#include <stdio.h>
#include <string.h>

static const uint8_t mapped_prefix[12] = {
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff,
};

static int hex_value(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * A dotted quad, the whole of [s, end): four decimal parts 0-255 without
 * leading zeros, so "010.0.0.1" never means 8.0.0.1 anywhere.
 */
static int parse_v4(const char *s, const char *end, uint8_t out[4])
{
	for (int part = 0; part < 4; part++) {
		const char *start = s;
		unsigned v = 0;

		if (part > 0) {
			if (s == end || *s != '.')
				return -1;
			start = ++s;
		}
		while (s < end && *s >= '0' && *s <= '9') {
			if (s - start == 3)
				return -1;
			v = v * 10 + (unsigned)(*s - '0');
			s++;
		}
		if (s == start || v > 255 || (*start == '0' && s - start > 1))
			return -1;
		out[part] = (uint8_t)v;
	}
	return s == end ? 0 : -1;
}

/*
 * RFC 4291 section 2.2 text, the whole of [s, end): up to eight groups of
 * one to four hex digits, at most one "::" standing for one or more zero
 * groups, and optionally a dotted quad as the last 32 bits.
 */
static int parse_v6(const char *s, const char *end, uint8_t out[16])
{
	uint8_t tmp[16];
	size_t n = 0;       /* bytes of tmp filled */
	ptrdiff_t gap = -1; /* where "::" stands, as an offset into tmp */
	const char *p = s;

	memset(tmp, 0, sizeof tmp);
	if (p < end && *p == ':') {
		/* A single leading colon is a truncated group. */
		if (end - p < 2 || p[1] != ':')
			return -1;
		gap = 0;
		p += 2;
	}
	while (p < end) {
		const char *g = p;
		unsigned v = 0;

		while (p < end && hex_value((unsigned char)*p) >= 0)
			p++;
		if (p < end && *p == '.') {
			/* The dotted quad ends the text and takes 32 bits. */
			if (n > 12 || parse_v4(g, end, tmp + n) < 0)
				return -1;
			n += 4;
			break;
		}
		if (p == g || p - g > 4 || n == 16)
			return -1;
		for (; g < p; g++)
			v = v * 16 + (unsigned)hex_value((unsigned char)*g);
		tmp[n++] = (uint8_t)(v >> 8);
		tmp[n++] = (uint8_t)v;
		if (p == end)
			break;
		if (*p != ':')
			return -1;
		p++;
		if (p < end && *p == ':') {
			if (gap >= 0)
				return -1;
			gap = (ptrdiff_t)n;
			p++;
		} else if (p == end) {
			return -1; /* a trailing single colon */
		}
	}
	if (gap < 0) {
		if (n != 16)
			return -1;
	} else {
		size_t tail = n - (size_t)gap;

		/* "::" must stand for at least one group. */
		if (n > 14)
			return -1;
		memmove(tmp + 16 - tail, tmp + gap, tail);
		memset(tmp + gap, 0, 16 - tail - (size_t)gap);
	}
	memcpy(out, tmp, 16);
	return 0;
}

/*
 * 0 or -1; *out is zeroed first, so a failed parse leaves family
 * SL_AF_NONE.  Only the characters of addresses are accepted: no spaces,
 * no brackets, no "%zone", no port.
 */
int sl_ipaddr_parse(const char *s, sl_ipaddr *out)
{
	const char *end;

	if (out == NULL)
		return -1;
	memset(out, 0, sizeof *out);
	if (s == NULL)
		return -1;
	end = s + strlen(s);
	if (strchr(s, ':') != NULL) {
		if (parse_v6(s, end, out->ip) < 0)
			goto fail;
		out->family = SL_AF_INET6;
	} else {
		if (parse_v4(s, end, out->ip) < 0)
			goto fail;
		out->family = SL_AF_INET4;
	}
	return 0;
fail:
	memset(out, 0, sizeof *out);
	return -1;
}

static int is_mapped(const sl_ipaddr *a)
{
	return a->family == SL_AF_INET6 &&
	       memcmp(a->ip, mapped_prefix, sizeof mapped_prefix) == 0;
}

/*
 * RFC 5952: lower-case hex without leading zeros, the longest run of two
 * or more zero groups (the first of equal runs) as "::", a lone zero
 * group written as 0, and the dotted tail for IPv4-mapped addresses only
 * (section 5: the one well-known mixed form).
 */
static void format_v6(const uint8_t ip[16], char *out)
{
	unsigned g[8];
	int best = -1, bestlen = 1;
	char *p = out;

	if (memcmp(ip, mapped_prefix, sizeof mapped_prefix) == 0) {
		sprintf(out, "::ffff:%u.%u.%u.%u", (unsigned)ip[12],
			(unsigned)ip[13], (unsigned)ip[14], (unsigned)ip[15]);
		return;
	}
	for (int i = 0; i < 8; i++)
		g[i] = (unsigned)ip[2 * i] << 8 | ip[2 * i + 1];
	for (int i = 0; i < 8;) {
		int j = i;

		while (j < 8 && g[j] == 0)
			j++;
		if (j - i > bestlen) {
			best = i;
			bestlen = j - i;
		}
		i = j > i ? j : i + 1;
	}
	for (int i = 0; i < 8; i++) {
		if (i == best) {
			*p++ = ':';
			*p++ = ':';
			i += bestlen - 1;
			continue;
		}
		if (i > 0 && i != best + bestlen)
			*p++ = ':';
		p += sprintf(p, "%x", g[i]);
	}
	*p = '\0';
}

int sl_ipaddr_format(const sl_ipaddr *a, char *buf, size_t len)
{
	char text[SL_IPADDR_TEXT_MAX];

	text[0] = '\0';
	if (a->family == SL_AF_INET4)
		sprintf(text, "%u.%u.%u.%u", (unsigned)a->ip[0],
			(unsigned)a->ip[1], (unsigned)a->ip[2],
			(unsigned)a->ip[3]);
	else if (a->family == SL_AF_INET6)
		format_v6(a->ip, text);
	return snprintf(buf, len, "%s", text);
}

void sl_ipaddr_unmap(sl_ipaddr *a)
{
	if (!is_mapped(a))
		return;
	a->family = SL_AF_INET4;
	memmove(a->ip, a->ip + 12, 4);
	/* Cleared, so that two equal IPv4 addresses are equal bytes too. */
	memset(a->ip + 4, 0, sizeof a->ip - 4);
}

/* Two SL_AF_NONE addresses are equal: neither has an address. */
int sl_ipaddr_equal(const sl_ipaddr *a, const sl_ipaddr *b)
{
	sl_ipaddr x = *a, y = *b;

	sl_ipaddr_unmap(&x);
	sl_ipaddr_unmap(&y);
	if (x.family != y.family)
		return 0;
	switch (x.family) {
	case SL_AF_INET4:
		return memcmp(x.ip, y.ip, 4) == 0;
	case SL_AF_INET6:
		return memcmp(x.ip, y.ip, 16) == 0;
	}
	return 1;
}
