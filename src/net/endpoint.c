/*
 * Endpoint parsing: pure string work, no I/O and no name resolution, and the
 * same on every platform, so `sluice -t` on Linux judges a config written for
 * Windows exactly as Windows would (whether a kind can be opened is decided
 * at open time).  The only library call is inet_pton, to tell a literal
 * address from a host name.
 */
#include "endpoint.h"
#include "errf.h"
#include "hset.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#ifdef _WIN32
#include <winsock2.h>
#include <ws2tcpip.h> /* inet_pton: Vista and later */
#else
#include <arpa/inet.h>
#include <netinet/in.h>
#endif

/*
 * Bytes of sockaddr_un.sun_path: 108 on Linux (and on Windows 10's AF_UNIX),
 * 104 on the BSDs and macOS.  A path must leave room for its terminating
 * NUL; an abstract name (Linux) takes the leading NUL instead.
 */
#if defined(__linux__) || defined(_WIN32)
#define SL_SUN_PATH_MAX 108
#else
#define SL_SUN_PATH_MAX 104
#endif

/* Windows limits the whole pipe name (\\.\pipe\NAME) to 256 characters. */
#define SL_PIPE_NAME_MAX 256
#define SL_PIPE_PREFIX "\\\\.\\pipe\\"

#define EXPECTED_FORMS "expected tcp://HOST:PORT, unix:PATH or pipe:\\\\.\\pipe\\NAME"
#define EXPECTED_PIPE "expected pipe:\\\\.\\pipe\\NAME or pipe://./pipe/NAME"

static int lower(int c)
{
	return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c;
}

/* Case-insensitive prefix test (schemes and "pipe" are case-insensitive). */
static int has_prefix(const char *s, const char *prefix)
{
	for (; *prefix != '\0'; s++, prefix++)
		if (lower((unsigned char)*s) != *prefix)
			return 0;
	return 1;
}

static int is_host_char(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_';
}

/* Parse a decimal port, the whole of s. */
static int parse_port(const char *s, uint16_t *port, char *err, size_t errlen)
{
	unsigned long v = 0;
	const char *p;

	if (*s == '\0')
		return sl_errf(err, errlen, -EINVAL,
			       "missing port after ':' (1-65535)");
	for (p = s; *p != '\0'; p++) {
		if (*p < '0' || *p > '9')
			return sl_errf(err, errlen, -EINVAL,
				       "port '%.32s' is not a number (1-65535)",
				       s);
		/* Saturate instead of overflowing on absurd digit strings. */
		if (v <= 65535)
			v = v * 10 + (unsigned long)(*p - '0');
	}
	if (v < 1 || v > 65535)
		return sl_errf(err, errlen, -EINVAL,
			       "port %.32s out of range (1-65535)",
			       s);
	*port = (uint16_t)v;
	return 0;
}

/* Is the bracketed text an IPv6 literal, allowing a %zone suffix? */
static int is_v6_literal(const char *host)
{
	char addr[INET6_ADDRSTRLEN + 1];
	const char *zone = strchr(host, '%');
	size_t n = zone != NULL ? (size_t)(zone - host) : strlen(host);
	unsigned char bin[16];

	if (n == 0 || n >= sizeof addr)
		return 0;
	if (zone != NULL && zone[1] == '\0')
		return 0;
	memcpy(addr, host, n);
	addr[n] = '\0';
	return inet_pton(AF_INET6, addr, bin) == 1;
}

static int parse_tcp(const char *s, sl_endpoint *out, char *err, size_t errlen)
{
	const char *hend, *port;
	size_t hlen;

	if (*s == '\0')
		return sl_errf(err, errlen, -EINVAL,
			       "empty host (expected tcp://HOST:PORT or "
			       "tcp://[IPV6]:PORT)");
	if (*s == '[') {
		hend = strchr(s, ']');
		if (hend == NULL)
			return sl_errf(err, errlen, -EINVAL,
				       "unbalanced brackets: '[' without ']' "
				       "(expected tcp://[IPV6]:PORT)");
		s++;
		hlen = (size_t)(hend - s);
		if (hlen == 0)
			return sl_errf(err, errlen, -EINVAL,
				       "empty host in brackets (expected "
				       "tcp://[IPV6]:PORT)");
		if (hlen >= sizeof out->host)
			return sl_errf(err, errlen, -EINVAL,
				       "host too long (at most %d characters)",
				       SL_EP_HOST_MAX - 1);
		memcpy(out->host, s, hlen);
		out->host[hlen] = '\0';
		if (strchr(out->host, '[') != NULL)
			return sl_errf(err, errlen, -EINVAL,
				       "unbalanced brackets: '[' inside "
				       "brackets");
		if (!is_v6_literal(out->host))
			return sl_errf(err, errlen, -EINVAL,
				       "'%.64s' in brackets is not an IPv6 address "
				       "(brackets are for IPv6 literals only)",
				       out->host);
		if (hend[1] == '\0')
			return sl_errf(err, errlen, -EINVAL,
				       "missing port (expected "
				       "tcp://[IPV6]:PORT)");
		if (hend[1] != ':')
			return sl_errf(err, errlen, -EINVAL,
				       "expected ':' and a port after ']'");
		out->host_is_literal = 1;
		return parse_port(hend + 2, &out->port, err, errlen);
	}

	if (strchr(s, ']') != NULL)
		return sl_errf(err, errlen, -EINVAL,
			       "unbalanced brackets: ']' without '['");
	port = strrchr(s, ':');
	if (port == NULL)
		return sl_errf(err, errlen, -EINVAL,
			       "missing port (expected tcp://HOST:PORT)");
	if (memchr(s, ':', (size_t)(port - s)) != NULL)
		return sl_errf(err, errlen, -EINVAL,
			       "IPv6 address without brackets (expected "
			       "tcp://[IPV6]:PORT)");
	hlen = (size_t)(port - s);
	if (hlen == 0)
		return sl_errf(err, errlen, -EINVAL,
			       "empty host (expected tcp://HOST:PORT)");
	if (hlen >= sizeof out->host)
		return sl_errf(err, errlen, -EINVAL,
			       "host too long (at most %d characters)",
			       SL_EP_HOST_MAX - 1);
	for (size_t i = 0; i < hlen; i++)
		if (!is_host_char((unsigned char)s[i]))
			return sl_errf(err, errlen, -EINVAL,
				       "invalid character '%c' in host "
				       "(letters, "
				       "digits, '-', '.' and '_' only)",
				       s[i]);
	memcpy(out->host, s, hlen);
	out->host[hlen] = '\0';
	{
		unsigned char bin[4];

		out->host_is_literal = inet_pton(AF_INET, out->host, bin) == 1;
	}
	return parse_port(port + 1, &out->port, err, errlen);
}

static int parse_unix(const char *s, sl_endpoint *out, char *err,
		      size_t errlen)
{
	size_t n = strlen(s);

	if (*s == '@') {
		if (s[1] == '\0')
			return sl_errf(err, errlen, -EINVAL,
				       "empty abstract socket name (expected "
				       "unix:@NAME)");
		/* The name takes sun_path after its leading NUL. */
		if (n - 1 > SL_SUN_PATH_MAX - 1)
			return sl_errf(err, errlen, -EINVAL,
				       "abstract socket name too long (at most "
				       "%d "
				       "bytes)",
				       SL_SUN_PATH_MAX - 1);
		out->abstract = 1;
	} else {
		if (n == 0)
			return sl_errf(err, errlen, -EINVAL,
				       "empty path (expected "
				       "unix:/path/to/socket "
				       "or unix:@NAME)");
		if (n > SL_SUN_PATH_MAX - 1)
			return sl_errf(err, errlen, -EINVAL,
				       "socket path too long: %zu bytes (at "
				       "most "
				       "%d)",
				       n, SL_SUN_PATH_MAX - 1);
	}
	memcpy(out->path, s, n + 1);
	return 0;
}

static int parse_pipe(const char *s, sl_endpoint *out, char *err,
		      size_t errlen)
{
	const char *name;
	size_t n, pre = sizeof SL_PIPE_PREFIX - 1;

	if (has_prefix(s, "\\\\.\\pipe\\"))
		name = s + pre;
	else if (has_prefix(s, "//./pipe/"))
		name = s + sizeof "//./pipe/" - 1;
	else
		return sl_errf(err, errlen, -EINVAL,
			       "bad pipe name (" EXPECTED_PIPE ")");
	n = strlen(name);
	if (n == 0)
		return sl_errf(err, errlen, -EINVAL,
			       "empty pipe name (" EXPECTED_PIPE ")");
	/* Windows: the name may hold any character but a backslash; '/'
	 * is refused too, as pipe://./pipe/a/b is surely a typo. */
	if (strpbrk(name, "\\/") != NULL)
		return sl_errf(err, errlen, -EINVAL,
			       "bad pipe name: '\\' or '/' inside NAME ("
			       EXPECTED_PIPE ")");
	if (pre + n > SL_PIPE_NAME_MAX || pre + n >= sizeof out->path)
		return sl_errf(err, errlen, -EINVAL,
			       "pipe name too long (at most %d characters in "
			       "all)",
			       (int)(sizeof out->path - 1 < SL_PIPE_NAME_MAX
			       ? sizeof out->path - 1
			       : SL_PIPE_NAME_MAX));
	memcpy(out->path, SL_PIPE_PREFIX, pre);
	memcpy(out->path + pre, name, n + 1);
	return 0;
}

static int parse_assuan(const char *s, sl_endpoint *out, char *err,
			size_t errlen)
{
	size_t n = strlen(s);

	if (n == 0)
		return sl_errf(err, errlen, -EINVAL,
			       "empty path (expected assuan:PATH, the file "
			       "an agent such as gpg-agent writes its port "
			       "and nonce into)");
	if (n >= sizeof out->path)
		return sl_errf(err, errlen, -EINVAL,
			       "path too long: %zu bytes (at most %zu)", n,
			       sizeof out->path - 1);
	memcpy(out->path, s, n + 1);
	return 0;
}

/*
 * systemd:NAME or systemd:N.  A name is what systemd accepts for
 * FileDescriptorName= (fdname_is_valid(): at most 255 ASCII characters,
 * no control character and no ':', which separates LISTEN_FDNAMES).  All
 * digits is a position instead: every socket of a unit has the same name
 * (its FileDescriptorName=, by default the unit's, "sluice.socket"; or
 * "unknown" where LISTEN_FDNAMES is not set), so a position is the only
 * way to tell those apart.
 */
#define SL_FDNAME_MAX 255
#define SL_FD_INDEX_MAX 65535

static int parse_systemd(const char *s, sl_endpoint *out, char *err,
			 size_t errlen)
{
	size_t n = strlen(s);

	out->fd_index = -1;
	if (n == 0)
		return sl_errf(err, errlen, -EINVAL,
			       "empty name (expected systemd:NAME, the "
			       "socket's FileDescriptorName=, or "
			       "systemd:POSITION)");
	if (strspn(s, "0123456789") == n) {
		long v = 0;

		for (const char *p = s; *p != '\0' && v <= SL_FD_INDEX_MAX; p++)
			v = v * 10 + (*p - '0');
		if (v > SL_FD_INDEX_MAX)
			return sl_errf(err, errlen, -EINVAL,
				       "position %.32s out of range (0-%d)", s,
				       SL_FD_INDEX_MAX);
		out->fd_index = (int)v;
		return 0;
	}
	if (n > SL_FDNAME_MAX)
		return sl_errf(err, errlen, -EINVAL,
			       "name too long (at most %d characters, as "
			       "FileDescriptorName=)",
			       SL_FDNAME_MAX);
	for (const char *p = s; *p != '\0'; p++)
		if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
			return sl_errf(err, errlen, -EINVAL,
				       "invalid character in name (printable "
				       "ASCII only, as FileDescriptorName=)");
	if (strchr(s, ':') != NULL)
		return sl_errf(err, errlen, -EINVAL,
			       "':' in name (LISTEN_FDNAMES separates names "
			       "with it)");
	memcpy(out->path, s, n + 1);
	return 0;
}

int sl_endpoint_parse(const char *s, sl_endpoint *out, char *err,
		      size_t errlen)
{
	const char *colon;
	int r;

	if (out == NULL)
		return -EINVAL;
	memset(out, 0, sizeof *out);
	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if (s == NULL || *s == '\0')
		return sl_errf(err, errlen, -EINVAL,
			       "empty endpoint (" EXPECTED_FORMS ")");

	if (has_prefix(s, "tcp://")) {
		out->kind = SL_EP_TCP;
		r = parse_tcp(s + 6, out, err, errlen);
	} else if (has_prefix(s, "tcp:")) {
		return sl_errf(err, errlen, -EINVAL,
			       "expected tcp://HOST:PORT ('//' missing after "
			       "'tcp:')");
	} else if (has_prefix(s, "unix:")) {
		out->kind = SL_EP_UNIX;
		r = parse_unix(s + 5, out, err, errlen);
	} else if (has_prefix(s, "pipe:")) {
		out->kind = SL_EP_PIPE;
		r = parse_pipe(s + 5, out, err, errlen);
	} else if (has_prefix(s, "assuan:")) {
		out->kind = SL_EP_ASSUAN;
		r = parse_assuan(s + 7, out, err, errlen);
	} else if (has_prefix(s, "systemd:")) {
		out->kind = SL_EP_SYSTEMD;
		r = parse_systemd(s + 8, out, err, errlen);
	} else {
		colon = strchr(s, ':');
		if (colon != NULL && colon > s && colon - s <= 16 &&
		    strspn(s, "abcdefghijklmnopqrstuvwxyz"
			      "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-.") ==
			    (size_t)(colon - s) &&
		    colon[1] == '/' && colon[2] == '/')
			return sl_errf(err, errlen, -EINVAL,
				       "unknown scheme '%.*s' (expected "
				       "tcp://, "
				       "unix: or pipe:)",
				       (int)(colon - s), s);
		return sl_errf(err, errlen, -EINVAL,
			       "missing scheme (expected tcp://, unix: or "
			       "pipe:)");
	}
	if (r < 0) {
		enum sl_ep_kind kind = out->kind;

		memset(out, 0, sizeof *out);
		out->kind = kind;
	}
	return r;
}

int sl_endpoint_listenable(const sl_endpoint *ep, char *err, size_t errlen)
{
#ifdef _WIN32
	if (ep->kind == SL_EP_SYSTEMD)
		return sl_errf(err, errlen, -EINVAL,
			       "systemd: (socket activation) is for Linux; on "
			       "Windows listen on tcp:// or pipe:");
#else
	(void)ep;
#endif
	if (err != NULL && errlen > 0)
		err[0] = '\0';
	return 0;
}

int sl_endpoint_format(const sl_endpoint *ep, char *buf, size_t len)
{
	switch (ep->kind) {
	case SL_EP_TCP:
		if (strchr(ep->host, ':') != NULL)
			return snprintf(buf, len, "tcp://[%s]:%u", ep->host,
					(unsigned)ep->port);
		return snprintf(buf, len, "tcp://%s:%u", ep->host,
				(unsigned)ep->port);
	case SL_EP_UNIX:
		return snprintf(buf, len, "unix:%s", ep->path);
	case SL_EP_PIPE:
		return snprintf(buf, len, "pipe:%s", ep->path);
	case SL_EP_ASSUAN:
		return snprintf(buf, len, "assuan:%s", ep->path);
	case SL_EP_SYSTEMD:
		if (ep->fd_index >= 0)
			return snprintf(buf, len, "systemd:%d", ep->fd_index);
		return snprintf(buf, len, "systemd:%s", ep->path);
	}
	return snprintf(buf, len, "?");
}

static int strcaseeq(const char *a, const char *b)
{
	for (; *a != '\0' && *b != '\0'; a++, b++)
		if (lower((unsigned char)*a) != lower((unsigned char)*b))
			return 0;
	return *a == *b;
}

/* Same address, whatever the spelling ("::1" and "0:0::1"). */
static int host_equal(const sl_endpoint *a, const sl_endpoint *b)
{
	unsigned char ba[16], bb[16];
	const char *za, *zb;

	if (a->host_is_literal && b->host_is_literal &&
	    strchr(a->host, ':') != NULL && strchr(b->host, ':') != NULL) {
		char sa[INET6_ADDRSTRLEN + 1], sb[INET6_ADDRSTRLEN + 1];
		size_t na, nb;

		za = strchr(a->host, '%');
		zb = strchr(b->host, '%');
		na = za != NULL ? (size_t)(za - a->host) : strlen(a->host);
		nb = zb != NULL ? (size_t)(zb - b->host) : strlen(b->host);
		if (na >= sizeof sa || nb >= sizeof sb)
			return 0;
		memcpy(sa, a->host, na);
		sa[na] = '\0';
		memcpy(sb, b->host, nb);
		sb[nb] = '\0';
		if (inet_pton(AF_INET6, sa, ba) != 1 ||
		    inet_pton(AF_INET6, sb, bb) != 1)
			return 0;
		if (memcmp(ba, bb, sizeof ba) != 0)
			return 0;
		/* Interface names are case-sensitive on POSIX. */
		if ((za == NULL) != (zb == NULL))
			return 0;
		return za == NULL || strcmp(za, zb) == 0;
	}
	/* DNS names are case-insensitive. */
	return strcaseeq(a->host, b->host);
}

int sl_endpoint_equal(const sl_endpoint *a, const sl_endpoint *b)
{
	if (a == NULL || b == NULL || a->kind != b->kind)
		return 0;
	switch (a->kind) {
	case SL_EP_TCP:
		return a->port == b->port && host_equal(a, b);
	case SL_EP_UNIX:
		return a->abstract == b->abstract &&
		       strcmp(a->path, b->path) == 0;
	case SL_EP_PIPE:
		/* Windows pipe names are case-insensitive. */
		return strcaseeq(a->path, b->path);
	case SL_EP_ASSUAN:
		return strcmp(a->path, b->path) == 0;
	case SL_EP_SYSTEMD:
		/* systemd compares names as they are (strv_find). */
		return a->fd_index == b->fd_index &&
		       strcmp(a->path, b->path) == 0;
	}
	return 0;
}

/* FNV-1a of s with ASCII letters folded, as strcaseeq compares. */
static uint64_t hash_folded(uint64_t h, const char *s)
{
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)lower((unsigned char)*s);

		h = sl_fnv1a(h, &c, 1);
	}
	return h;
}

/*
 * What sl_endpoint_equal() compares, normalised as it normalises: the port;
 * an IPv6 host as its 16 bytes and its zone; any other host, and a pipe
 * name, with letters folded; a Unix path as written.  host_equal() takes
 * the IPv6 way only when both hosts are literals, and otherwise compares
 * text, folded; hashing every host with a ':' the IPv6 way (zone folded
 * too) keeps equal hosts hashing alike in both cases, since text that is
 * equal but for case parses to the same bytes.
 */
uint64_t sl_endpoint_hash(const sl_endpoint *ep)
{
	unsigned char k = (unsigned char)ep->kind;
	uint64_t h = sl_fnv1a(SL_FNV1A_INIT, &k, 1);

	switch (ep->kind) {
	case SL_EP_TCP: {
		unsigned char port[2] = { (unsigned char)(ep->port >> 8),
					  (unsigned char)ep->port };
		const char *zone = strchr(ep->host, '%');
		size_t n = zone != NULL ? (size_t)(zone - ep->host)
					: strlen(ep->host);
		char addr[INET6_ADDRSTRLEN + 1];
		unsigned char bin[16];

		h = sl_fnv1a(h, port, sizeof port);
		if (strchr(ep->host, ':') != NULL && n < sizeof addr) {
			memcpy(addr, ep->host, n);
			addr[n] = '\0';
			if (inet_pton(AF_INET6, addr, bin) == 1) {
				h = sl_fnv1a(h, bin, sizeof bin);
				return zone != NULL ? hash_folded(h, zone) : h;
			}
		}
		return hash_folded(h, ep->host);
	}
	case SL_EP_UNIX:
		k = (unsigned char)(ep->abstract != 0);
		h = sl_fnv1a(h, &k, 1);
		return sl_fnv1a(h, ep->path, strlen(ep->path));
	case SL_EP_PIPE:
		return hash_folded(h, ep->path);
	case SL_EP_ASSUAN:
		return sl_fnv1a(h, ep->path, strlen(ep->path));
	case SL_EP_SYSTEMD: {
		unsigned char idx[4] = { (unsigned char)(ep->fd_index >> 24),
					 (unsigned char)(ep->fd_index >> 16),
					 (unsigned char)(ep->fd_index >> 8),
					 (unsigned char)ep->fd_index };

		h = sl_fnv1a(h, idx, sizeof idx);
		return sl_fnv1a(h, ep->path, strlen(ep->path));
	}
	}
	return h;
}
