/*
 * sl_errf(): see errf.h.  One definition, so that every module that
 * reports through a caller's buffer truncates and terminates the same way.
 */
#include "errf.h"

#include <stdio.h>

int sl_verrf(char *err, size_t errlen, int code, const char *fmt, va_list ap)
{
	if (err != NULL && errlen > 0)
		vsnprintf(err, errlen, fmt, ap);
	return code;
}

int sl_errf(char *err, size_t errlen, int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	code = sl_verrf(err, errlen, code, fmt, ap);
	va_end(ap);
	return code;
}
