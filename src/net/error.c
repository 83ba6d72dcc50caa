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
static const char *errno_text(int e)
{
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
	}
	return errno_text(err < 0 ? -err : err);
}
