/*
 * Logging.  Each line is formatted into a stack buffer and written with a
 * single write(2) to stderr (O_APPEND semantics are not needed: one write
 * per line is enough for lines from several threads not to interleave on a
 * pipe or terminal), or handed to syslog(3) in daemon mode.
 */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#ifdef _WIN32
#include <io.h>
#include <process.h>
#define write _write
#define getpid _getpid
#else
#include <syslog.h>
#include <unistd.h>
#endif

static volatile int log_level = SL_LOG_INFO;
static int log_syslog;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void sl_log_set_level(int level)
{
	if (level < SL_LOG_ERROR)
		level = SL_LOG_ERROR;
	if (level > SL_LOG_DEBUG)
		level = SL_LOG_DEBUG;
	log_level = level;
}

int sl_log_get_level(void)
{
	return log_level;
}

int sl_log_level_parse(const char *name, int *level)
{
	for (int i = 0; i < (int)(sizeof level_names / sizeof level_names[0]);
	     i++) {
		if (strcmp(name, level_names[i]) == 0) {
			*level = i;
			return 0;
		}
	}
	return -1;
}

const char *sl_log_level_name(int level)
{
	if (level < SL_LOG_ERROR || level > SL_LOG_DEBUG)
		return "?";
	return level_names[level];
}

void sl_log_use_syslog(const char *ident)
{
#ifndef _WIN32
	openlog(ident, LOG_PID | LOG_NDELAY, LOG_DAEMON);
	log_syslog = 1;
#else
	(void)ident;
#endif
}

void sl_log(int level, const char *fmt, ...)
{
	char line[2048];
	va_list ap;
	int n;

	if (level > log_level)
		return;

#ifndef _WIN32
	if (log_syslog) {
		static const int prio[] = {LOG_ERR, LOG_WARNING, LOG_INFO,
					   LOG_DEBUG};
		va_start(ap, fmt);
		vsnprintf(line, sizeof line, fmt, ap);
		va_end(ap);
		syslog(prio[level], "%s", line);
		return;
	}
#endif

	n = snprintf(line, sizeof line, "sluice[%ld]: %s: ", (long)getpid(),
		     sl_log_level_name(level));
	va_start(ap, fmt);
	n += vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
	va_end(ap);
	if (n >= (int)sizeof line - 1)
		n = (int)sizeof line - 2; /* truncated: keep the newline */
	line[n++] = '\n';
	/* One write per line; a failed log write has nowhere to be reported. */
	if (write(2, line, (unsigned)n) < 0)
		return;
}
