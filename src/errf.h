/*
 * A message for the caller and the code to return, in one statement:
 *
 *	return sl_errf(err, errlen, -EINVAL, "port %s out of range", s);
 *
 * for every function that reports through a caller's buffer, whatever
 * codes it returns (-1, -EINVAL, -errno).  Any layer, any thread.
 */
#ifndef SL_ERRF_H
#define SL_ERRF_H

#include <stdarg.h>
#include <stddef.h>

/*
 * Formats into err (errlen bytes, always terminated, cut short when the
 * text is longer), unless err is NULL or errlen is 0; returns code,
 * whatever it is.
 */
int sl_errf(char *err, size_t errlen, int code, const char *fmt, ...)
#if defined(__GNUC__)
	__attribute__((format(SL_FMT_PRINTF, 4, 5)))
#endif
	;
/* The same with the arguments in ap. */
int sl_verrf(char *err, size_t errlen, int code, const char *fmt, va_list ap)
#if defined(__GNUC__)
	__attribute__((format(SL_FMT_PRINTF, 4, 0)))
#endif
	;

#endif
