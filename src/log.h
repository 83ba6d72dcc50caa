/*
 * Logging: one line per call, written with one write so lines from several
 * loop threads never interleave.  Any thread.
 */
#ifndef SL_LOG_H
#define SL_LOG_H

#include <stddef.h>

#include "os/os.h"

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
void sl_log_use_syslog(const char *ident, int facility);
/* syslog facility by name ("daemon", "user", "local0".."local7"): 0 or -1. */
int sl_log_facility_parse(const char *name, int *facility);
/*
 * Send lines to a file (appended; created 0640).  0 or -errno; on failure
 * the destination does not change.  sl_log_reopen(): open the same path
 * again (after logrotate renamed it); 0 or -errno, the old file kept.
 * Log files (and an access log file) are never opened through a symbolic
 * link (-ELOOP) and must be regular files (-SL_LOG_ENOTREG otherwise);
 * sl_log_open_strerror() says either for the operator.
 */
#define SL_LOG_ENOTREG SL_OS_ENOTREG
int sl_log_use_file(const char *path);
int sl_log_reopen(void);
const char *sl_log_open_strerror(int r);

/*
 * Text a peer chose (a Unix client's socket name, a PROXY header's
 * path), made safe for any log: every control byte (C0, DEL, C1), every
 * byte that is not part of valid UTF-8, and U+2028/U+2029 are written as
 * \xHH, so the text can neither end a line nor forge one, move a
 * terminal's cursor, or break a reader's UTF-8.  Writes at most cap bytes
 * to dst, NUL included, never cutting an escape; returns dst.  Every log
 * line is passed through the same filter before it is written, whatever
 * its source.
 */
char *sl_log_escape(char *dst, size_t cap, const char *src, size_t len);
/*
 * Also write errors and warnings to stderr (a daemon starting up: the
 * operator's terminal sees what went wrong), or stop.
 */
void sl_log_mirror_stderr(int on);
/*
 * Windows: errors and warnings also to the Event Log, as source (the
 * service's name), whatever the log's destination; NULL stops.  The
 * source of sl_log_use_syslog() is the same name.  Elsewhere nothing.
 */
void sl_log_events(const char *source);
/* Back to stderr. */
void sl_log_use_stderr(void);
/* In a fork()ed child, before it logs: lines then carry its own pid. */
void sl_log_forked(void);

/* ---- access log: one record per session ---------------------------- */

struct sl_access_rec {
	const char *route, *client, *upstream, *reason;
	const char *error; /* NULL: none */
	unsigned long long bytes_in, bytes_out, duration_ms;
	/* A TLS client's session (tls_version NULL: none): the version and
	 * cipher; the name it asked for (SNI), its certificate's subject,
	 * the name allow admitted it by and the certificate's SHA-256, each
	 * NULL when there is none.  The peer's text comes escaped, its '"'
	 * and '\\' as \\xHH too, so the text format can quote it. */
	const char *tls_version, *tls_cipher, *tls_sni, *tls_subject,
		*tls_san, *tls_sha256;
	const char *tls_alpn; /* the protocol ALPN chose, escaped; or NULL */
	int tls_resumed; /* the client resumed a session */
	/* TLS toward the upstream (up_tls_version NULL: none). */
	const char *up_tls_version, *up_tls_cipher;
	int up_tls_resumed;
};

/*
 * Where access records go: NULL (with the other lines, at info level),
 * "off", "stderr", "syslog" or a file path (reopened by sl_log_reopen);
 * json: one JSON object per line instead of key=value text.  0 or -errno.
 */
int sl_access_open(const char *to, int json);
void sl_access(const struct sl_access_rec *r);

#if defined(__GNUC__)
#define SL_PRINTF(a, b) __attribute__((format(SL_FMT_PRINTF, a, b)))
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
