/*
 * Error text.  strerror() may share one static buffer between threads, so
 * the text is copied into a buffer of the calling thread; the pointer stays
 * valid until that thread's next sl_strerror() call.
 */
#include "net.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char err_buf[128];

#if defined(_WIN32)
/*
 * msvcrt's strerror knows the C89 errno values only; the POSIX ones that
 * mingw-w64 defines for sockets (ECONNREFUSED, ETIMEDOUT, ...) come back as
 * "Unknown error".  The same words as glibc, so logs read alike.
 */
static const struct {
	int e;
	const char *text;
} net_texts[] = {
	{ECONNREFUSED, "Connection refused"},
	{ECONNRESET, "Connection reset by peer"},
	{ECONNABORTED, "Software caused connection abort"},
	{ETIMEDOUT, "Connection timed out"},
	{EHOSTUNREACH, "No route to host"},
	{ENETUNREACH, "Network is unreachable"},
	{EADDRINUSE, "Address already in use"},
	{EADDRNOTAVAIL, "Cannot assign requested address"},
	{EAFNOSUPPORT, "Address family not supported by protocol"},
	{ECANCELED, "Operation canceled"},
	{ENOTCONN, "Transport endpoint is not connected"},
	{EISCONN, "Transport endpoint is already connected"},
	{EALREADY, "Operation already in progress"},
	{ENOBUFS, "No buffer space available"},
	{ENETDOWN, "Network is down"},
	{EMSGSIZE, "Message too long"},
	{EOPNOTSUPP, "Operation not supported"},
	{EWOULDBLOCK, "Resource temporarily unavailable"},
};

static const char *errno_text(int e)
{
	for (size_t i = 0; i < sizeof net_texts / sizeof net_texts[0]; i++)
		if (net_texts[i].e == e)
			return net_texts[i].text;
	if (strerror_s(err_buf, sizeof err_buf, e) != 0)
		snprintf(err_buf, sizeof err_buf, "error %d", e);
	return err_buf;
}
#else
/*
 * glibc with _GNU_SOURCE has the GNU strerror_r (returns a char *, which may
 * not point into buf); everyone else has the XSI one (returns 0 or an error
 * number).  _Generic picks the matching handler from the return type, so
 * the same code builds in either mode.
 */
static const char *xsi_result(int r, char *buf)
{
	if (r != 0)
		return NULL;
	return buf;
}

static const char *gnu_result(char *r, char *buf)
{
	(void)buf;
	return r;
}

static const char *errno_text(int e)
{
	const char *s;

	err_buf[0] = '\0';
	s = _Generic(strerror_r(e, err_buf, sizeof err_buf),
		     char *: gnu_result,
		     default: xsi_result)(strerror_r(e, err_buf, sizeof err_buf),
					  err_buf);
	if (s == NULL || *s == '\0') {
		snprintf(err_buf, sizeof err_buf, "error %d", e);
		return err_buf;
	}
	return s;
}
#endif

const char *sl_strerror(int err)
{
	switch (err) {
	case 0:
		return "success";
	case SL_EOF:
		return "end of stream";
	case SL_ERESOLVE:
		return "host name did not resolve";
	case SL_EUNSUPP:
		return "not supported on this platform";
	case SL_EFWD:
		return "forwarding stopped (no descriptor for a pipe)";
	case SL_ESRCFAMILY:
		return "the source address is of another family than the "
		       "upstream's address";
	case SL_EASSUAN:
		return "not an Assuan socket file (expected a port, a "
		       "newline and a 16-byte nonce)";
	}
	return errno_text(err < 0 ? -err : err);
}
