/*
 * Endpoints as written in the config:
 *
 *   tcp://HOST:PORT        HOST an IPv4 literal or a host name
 *   tcp://[IPV6]:PORT      IPv6 literal in brackets
 *   unix:/path/to/socket   POSIX Unix domain socket (path)
 *   unix:@name             Linux abstract Unix socket
 *   pipe:\\.\pipe\NAME     Windows named pipe (also pipe://./pipe/NAME)
 *   assuan:PATH            upstreams only: libassuan's socket emulation
 *                          (gpg-agent on Windows): PATH holds a loopback
 *                          TCP port and a nonce, read at each connect
 *   systemd:NAME           a listening socket systemd passed (socket
 *                          activation), by its FileDescriptorName=
 *   systemd:N              the same by position, 0-based (N all digits)
 *
 * Parsing is pure (no I/O, no name resolution) and platform independent, so
 * a config can be checked anywhere; whether the running platform supports a
 * kind is decided when a listener or connection is opened.
 */
#ifndef SL_ENDPOINT_H
#define SL_ENDPOINT_H

#include <stddef.h>
#include <stdint.h>

enum sl_ep_kind {
	SL_EP_TCP = 1,
	SL_EP_UNIX,
	SL_EP_PIPE,
	SL_EP_ASSUAN,
	SL_EP_SYSTEMD, /* listeners only; POSIX only */
};

#define SL_EP_HOST_MAX 256
#define SL_EP_PATH_MAX 256

typedef struct sl_endpoint {
	enum sl_ep_kind kind;
	/* SL_EP_TCP */
	char host[SL_EP_HOST_MAX]; /* without brackets; literal or name */
	uint16_t port;
	int host_is_literal; /* host is an IPv4/IPv6 literal: no lookup */
	/* SL_EP_UNIX: path ("@name" kept as written for abstract sockets).
	 * SL_EP_PIPE: the pipe path in the Windows form \\.\pipe\NAME.
	 * SL_EP_ASSUAN: the file's path, as written. */
	char path[SL_EP_PATH_MAX];
	int abstract; /* SL_EP_UNIX only */
	/* SL_EP_SYSTEMD: the position (0-based) when written as a number,
	 * else -1 and the name in path. */
	int fd_index;
} sl_endpoint;

/*
 * Parse s into *out.  On failure returns -EINVAL and writes into err (if
 * errlen > 0) what was wrong and what was expected, e.g.
 * "port 70000 out of range (1-65535)".
 */
int sl_endpoint_parse(const char *s, sl_endpoint *out, char *err,
		      size_t errlen);

/*
 * Whether a listener of ep's kind can exist on this platform at all: 0, or
 * -EINVAL with why in err.  Only systemd: is refused (on Windows), so that
 * a config that cannot run here fails to load; a pipe: listener on POSIX
 * stays a config that loads (a Windows config checked elsewhere) and fails
 * to open.
 */
int sl_endpoint_listenable(const sl_endpoint *ep, char *err, size_t errlen);

/* Canonical text form (as the parser accepts it).  Returns snprintf's. */
int sl_endpoint_format(const sl_endpoint *ep, char *buf, size_t len);

/* Non-zero when a and b name the same endpoint. */
int sl_endpoint_equal(const sl_endpoint *a, const sl_endpoint *b);

/*
 * A hash that agrees with sl_endpoint_equal(): endpoints it calls equal
 * hash alike (however their hosts or pipe names are spelt), so a hash set
 * of endpoints finds every duplicate that comparing each pair would.
 */
uint64_t sl_endpoint_hash(const sl_endpoint *ep);

#endif
