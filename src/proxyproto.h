/*
 * The PROXY protocol, versions 1 (text) and 2 (binary), as HAProxy's
 * specification (doc/proxy-protocol.txt) defines them: a header a front
 * proxy sends first on a connection to say whom the connection is for.
 * Pure code: parse a header from bytes, build one into a buffer.
 *
 * The parser is strict: anything the specification does not allow is
 * malformed, and the caller closes that connection.  It never reads past
 * len, never needs more than SL_PP_MAX_LEN bytes, and decides as early as
 * it can: bytes that cannot begin either signature are malformed at once
 * (a client that does not speak the protocol is not left waiting for a
 * timeout).
 */
#ifndef SL_PROXYPROTO_H
#define SL_PROXYPROTO_H

#include <stddef.h>
#include <stdint.h>

#include "net/addr.h"

/* v1: the longest line the specification allows, CRLF included. */
#define SL_PP_V1_MAX 107
/* v2: 16 bytes of fixed header plus at most this much address and TLV
 * data; a longer header is refused as malformed. */
#define SL_PP_V2_DATA_MAX 1024
#define SL_PP_MAX_LEN (16 + SL_PP_V2_DATA_MAX)

#define SL_PP_PATH_MAX 108 /* v2 AF_UNIX address bytes */

enum sl_pp_family {
	SL_PP_UNKNOWN = 0, /* v1 UNKNOWN, v2 AF_UNSPEC: no addresses */
	SL_PP_TCP4,
	SL_PP_TCP6,
	SL_PP_UNIX, /* v2 only */
};

/*
 * What a v2 header can say of a TLS client (HAProxy's TLVs,
 * doc/proxy-protocol.txt 2.2.5): PP2_TYPE_AUTHORITY with the name the
 * client asked for (SNI), and PP2_TYPE_SSL with the client flags, the
 * verify result and the sub-TLVs PP2_SUBTYPE_SSL_VERSION, _SSL_CN and
 * _SSL_CIPHER.  Values are bytes with their lengths (a name from a
 * certificate may hold any byte); a value longer than
 * SL_PP_TLS_VALUE_MAX is left out, never cut (a cut name could be
 * someone else's).  The TLVs fit SL_PP_MAX_LEN with any addresses.
 */
#define SL_PP_TLS_VALUE_MAX 255
#define SL_PP_TLS_SHORT_MAX 64 /* version and cipher */

#define SL_PP2_CLIENT_SSL 0x01
#define SL_PP2_CLIENT_CERT_CONN 0x02 /* a certificate in this handshake */
#define SL_PP2_CLIENT_CERT_SESS 0x04 /* one in the session (resumed too) */

typedef struct sl_pp_tls {
	uint8_t client;  /* SL_PP2_CLIENT_* */
	uint32_t verify; /* 0: a certificate shown and verified */
	const char *version, *cipher; /* NUL-terminated, or NULL */
	const char *cn, *sni;         /* or NULL */
	size_t cn_len, sni_len;
	const char *alpn; /* the protocol ALPN chose, or NULL */
	size_t alpn_len;  /* longer than SL_PP_TLS_SHORT_MAX: left out */
} sl_pp_tls;

typedef struct sl_pp_info {
	int version; /* 1 or 2 (set by the parser; ignored by the builders) */
	/* v2 LOCAL: the connection was made by the front proxy itself (a
	 * health check, say); the addresses, if any, are not a client's, so
	 * the parser ignores them and reports family SL_PP_UNKNOWN (the
	 * specification: use the real connection's endpoints). */
	int local;
	enum sl_pp_family family;
	sl_ipaddr src, dst; /* TCP4, TCP6: addresses and ports */
	/* UNIX: the paths, NUL-terminated (v2 carries 108 bytes each) */
	char src_path[SL_PP_PATH_MAX + 1], dst_path[SL_PP_PATH_MAX + 1];
	/* v2 builder: the client's TLS, or NULL (not set by the parser). */
	const sl_pp_tls *tls;
} sl_pp_info;

/*
 * Look at the first len bytes of a connection.  Returns the header's
 * length (> 0) with *out filled, 0 when the bytes so far are a valid
 * beginning but not yet a whole header (read more; never once len >=
 * SL_PP_MAX_LEN), or -1 when they are malformed, with *why (if not NULL)
 * set to a short static text for the log ("bad signature", "v1 line too
 * long", "v2 unsupported version", ...).  Bytes after the header are the
 * connection's data and are not looked at.
 */
ptrdiff_t sl_pp_parse(const void *buf, size_t len, sl_pp_info *out,
		      const char **why);

/*
 * Write a header for in into buf (cap bytes) and return its length, or 0
 * when cap is too small.  v1 writes "PROXY TCP4 ...\r\n" or "PROXY TCP6
 * ...\r\n", and "PROXY UNKNOWN\r\n" for SL_PP_UNKNOWN and SL_PP_UNIX
 * (which v1 cannot express); at most SL_PP_V1_MAX bytes.  v2 writes the
 * PROXY command (LOCAL when in->local) with the family's addresses and,
 * when in->tls, its TLVs (sl_pp_tls); at most SL_PP_MAX_LEN bytes.  For TCP4 and TCP6 the addresses decide
 * what is written: an IPv4-mapped IPv6 address is written as IPv4 when
 * both ends are (TCP4 then), an IPv4 end beside an IPv6 one as
 * IPv4-mapped (TCP6; v1 in hex groups, "::ffff:a00:1"), and an end
 * without an IP address makes the header UNKNOWN (v2: AF_UNSPEC).  v1
 * has no LOCAL: in->local is ignored there.
 */
size_t sl_pp_build_v1(const sl_pp_info *in, char *buf, size_t cap);
size_t sl_pp_build_v2(const sl_pp_info *in, char *buf, size_t cap);

#endif
