/*
 * Logging: one line per call, written with one write so lines from several
 * loop threads never interleave.  Any thread.
 */
#ifndef SL_LOG_H
#define SL_LOG_H

enum {
	SL_LOG_ERROR = 0,
	SL_LOG_WARN,
	SL_LOG_INFO,
	SL_LOG_DEBUG,
};

/* Where lines go.  Default: stderr, level INFO. */
void sl_log_set_level(int level);
int sl_log_get_level(void);
/* 0 or -1 for an unknown name ("error", "warn", "info", "debug"). */
int sl_log_level_parse(const char *name, int *level);
const char *sl_log_level_name(int level);
/* Send lines to syslog (daemon mode) instead of stderr. */
void sl_log_use_syslog(const char *ident);

#if defined(__GNUC__)
#define SL_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define SL_PRINTF(a, b)
#endif

void sl_log(int level, const char *fmt, ...) SL_PRINTF(2, 3);

#define sl_error(...) sl_log(SL_LOG_ERROR, __VA_ARGS__)
#define sl_warn(...) sl_log(SL_LOG_WARN, __VA_ARGS__)
#define sl_info(...) sl_log(SL_LOG_INFO, __VA_ARGS__)
#define sl_debug(...)                                                          \
	do {                                                                   \
		if (sl_log_get_level() >= SL_LOG_DEBUG)                        \
			sl_log(SL_LOG_DEBUG, __VA_ARGS__);                     \
	} while (0)

#endif
