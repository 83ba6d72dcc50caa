/*
 * Logging.  Each line is formatted into a stack buffer and written with a
 * single write(2) to stderr (O_APPEND semantics are not needed: one write
 * per line is enough for lines from several threads not to interleave on a
 * pipe or terminal), or handed to syslog(3) in daemon mode.
 */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "os/os.h"

static _Atomic int log_level = SL_LOG_INFO; /* read by every thread */
static int log_syslog;
static int log_events; /* errors and warnings there too (a service) */

void sl_log_events(const char *source)
{
	log_events = sl_os_syslog_events(source);
}

/* Where lines are written when not to syslog: stderr or the log file.
 * Reopening swaps the file in with dup2, so writers never see a closed
 * descriptor. */
static _Atomic int log_fd = 2;
static char *log_path;
static _Atomic int log_mirror; /* errors and warnings to stderr as well */

/* Access records: with the log (ACC_LOG), nowhere, or their own sink. */
enum { ACC_LOG, ACC_OFF, ACC_FD, ACC_SYSLOG };
static int acc_to = ACC_LOG;
static int acc_json;
static volatile int acc_fd = -1;
static char *acc_path;

/*
 * The pid in every line, read once: glibc no longer caches getpid(), and
 * a busy proxy logs a line per session.  The daemon's fork forgets it
 * (sl_log_forked), so the daemon reads its own on its next line.
 */
static _Atomic long log_pid;

void sl_log_forked(void)
{
	log_pid = 0;
}

static long cached_pid(void)
{
	long pid = log_pid;

	if (pid == 0) {
		pid = (long)getpid();
		log_pid = pid;
	}
	return pid;
}

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

/* The same names everywhere, so a config checks alike on every OS: their
 * numbers (RFC 5424), each made the OS's code by sl_os_syslog_facility(). */
static const struct {
	const char *name;
	int number;
} facilities[] = {
	{"daemon", 3},  {"user", 1},    {"local0", 16}, {"local1", 17},
	{"local2", 18}, {"local3", 19}, {"local4", 20}, {"local5", 21},
	{"local6", 22}, {"local7", 23},
};

int sl_log_facility_parse(const char *name, int *facility)
{
	for (size_t i = 0; i < sizeof facilities / sizeof facilities[0]; i++) {
		if (strcmp(name, facilities[i].name) == 0) {
			*facility = sl_os_syslog_facility(facilities[i].number);
			return 0;
		}
	}
	return -1;
}

void sl_log_use_syslog(const char *ident, int facility)
{
	log_syslog = sl_os_syslog_open(ident, facility) == 0;
}

const char *sl_log_open_strerror(int r)
{
	if (r == -ELOOP)
		return "is a symbolic link; not following it";
	if (r == -SL_LOG_ENOTREG)
		return "is not a regular file";
	if (r == -EMLINK)
		return "has more than one name (a hard link); not opening it";
	return strerror(-r);
}

int sl_log_use_file(const char *path)
{
	int fd = sl_os_open_log(path);
	char *copy;

	if (fd < 0)
		return fd;
	copy = strdup(path);
	if (copy == NULL) {
		close(fd);
		return -ENOMEM;
	}
	if (log_fd > 2)
		close(log_fd);
	free(log_path);
	log_path = copy;
	log_fd = fd;
	log_syslog = 0;
	return 0;
}

/* Atomically over the old descriptor: a line written meanwhile goes to
 * one file or the other, never to a closed descriptor. */
static int reopen_over(const char *path, int old)
{
	int fd, r = 0;

	fd = sl_os_open_log(path);
	if (fd < 0)
		return fd;
	if (dup2(fd, old) < 0)
		r = -errno;
	close(fd);
	return r;
}

int sl_log_reopen(void)
{
	int r = 0, r2 = 0;

	if (log_path != NULL && log_fd > 2)
		r = reopen_over(log_path, log_fd);
	if (acc_path != NULL && acc_fd > 2)
		r2 = reopen_over(acc_path, acc_fd);
	return r < 0 ? r : r2;
}

int sl_access_open(const char *to, int json)
{
	acc_json = json;
	if (to == NULL) {
		acc_to = ACC_LOG;
	} else if (strcmp(to, "off") == 0) {
		acc_to = ACC_OFF;
	} else if (strcmp(to, "stderr") == 0) {
		acc_to = ACC_FD;
		acc_fd = 2;
	} else if (strcmp(to, "syslog") == 0) {
		int r;

		if (!log_syslog && (r = sl_os_syslog_open("sluice", 0)) < 0)
			return r;
		acc_to = ACC_SYSLOG;
	} else {
		int fd = sl_os_open_log(to);
		char *copy;

		if (fd < 0)
			return fd;
		if ((copy = strdup(to)) == NULL) {
			close(fd);
			return -ENOMEM;
		}
		free(acc_path);
		acc_path = copy;
		acc_fd = fd;
		acc_to = ACC_FD;
	}
	return 0;
}

/* The time now, UTC, as "2026-12-07T13:11:03.042Z", at line+n (cap
 * bytes, at least 25 of them free); the new length. */
static size_t utc_stamp(char *line, size_t n, size_t cap)
{
	struct timespec ts;
	struct tm tm;
	int k;

	clock_gettime(CLOCK_REALTIME, &ts);
	sl_os_gmtime(ts.tv_sec, &tm);
	n += strftime(line + n, cap - n, "%Y-%m-%dT%H:%M:%S", &tm);
	k = snprintf(line + n, cap - n, ".%03ldZ", ts.tv_nsec / 1000000L);
	return n + (k > 0 ? (size_t)k : 0);
}

static const char hex[] = "0123456789abcdef";

/*
 * The length of the character at p (left > 0 bytes) when it may be
 * written to a log as it is: 1 to 4.  0 when its first byte must be
 * escaped: a C0 control or DEL, a byte that does not begin valid UTF-8
 * (stray continuation, overlong form, surrogate, beyond U+10FFFF, cut
 * short), a C1 control (U+0080..U+009F: some terminals obey them), or
 * U+2028/U+2029 (line breaks to some readers).
 */
static size_t char_ok(const unsigned char *p, size_t left)
{
	unsigned c = p[0];
	size_t n, i;
	unsigned lo = 0x80, hi = 0xbf;

	if (c < 0x80)
		return c >= 0x20 && c != 0x7f;
	if (c >= 0xc2 && c <= 0xdf)
		n = 2;
	else if (c >= 0xe0 && c <= 0xef)
		n = 3;
	else if (c >= 0xf0 && c <= 0xf4)
		n = 4;
	else
		return 0;
	if (left < n)
		return 0;
	if (c == 0xe0)
		lo = 0xa0; /* overlong */
	else if (c == 0xed)
		hi = 0x9f; /* surrogates */
	else if (c == 0xf0)
		lo = 0x90; /* overlong */
	else if (c == 0xf4)
		hi = 0x8f; /* beyond U+10FFFF */
	if (p[1] < lo || p[1] > hi)
		return 0;
	for (i = 2; i < n; i++)
		if (p[i] < 0x80 || p[i] > 0xbf)
			return 0;
	if (c == 0xc2 && p[1] <= 0x9f)
		return 0; /* C1 control */
	if (c == 0xe2 && p[1] == 0x80 && (p[2] == 0xa8 || p[2] == 0xa9))
		return 0; /* line and paragraph separators */
	return n;
}

/* Bytes of src (len) that need no escape: every line checks this first,
 * and nearly every line needs none. */
static int text_clean(const char *src, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)src[i] < 0x20 ||
		    (unsigned char)src[i] >= 0x7f)
			return 0;
	return 1;
}

/* Escape src (len) into dst (cap), without a NUL; the length written. */
static size_t escape_into(char *dst, size_t cap, const char *src, size_t len)
{
	const unsigned char *p = (const unsigned char *)src;
	size_t n = 0, i = 0, k;

	while (i < len) {
		k = char_ok(p + i, len - i);
		if (k == 0) {
			if (n + 4 > cap)
				break;
			dst[n++] = '\\';
			dst[n++] = 'x';
			dst[n++] = hex[p[i] >> 4];
			dst[n++] = hex[p[i] & 15];
			i++;
			continue;
		}
		if (n + k > cap)
			break;
		memcpy(dst + n, p + i, k);
		n += k;
		i += k;
	}
	return n;
}

char *sl_log_escape(char *dst, size_t cap, const char *src, size_t len)
{
	size_t n;

	if (cap == 0)
		return dst;
	n = escape_into(dst, cap - 1, src, len);
	dst[n] = '\0';
	return dst;
}

/*
 * A whole line's text (len bytes of src, from vsnprintf) into line+n
 * (cap), escaped where it must be: the guard that keeps any string a peer
 * could have put in a message from ending or forging a line, even one
 * that no caller escaped.  The new length.
 */
static size_t line_text(char *line, size_t n, size_t cap, const char *src,
			size_t len)
{
	if (n >= cap)
		return n;
	if (text_clean(src, len)) {
		if (len > cap - n)
			len = cap - n;
		memcpy(line + n, src, len);
		return n + len;
	}
	return n + escape_into(line + n, cap - n, src, len);
}

/*
 * Append s as a JSON string (quoted, escaped) at line+n; new length.
 * Quotes, backslashes and C0 controls take JSON's escapes; what else
 * sl_log_escape() escapes is written as its \xHH text (a backslash
 * escaped for JSON), so the value reads as in the text format and the
 * line stays valid UTF-8.
 */
static size_t json_str(char *line, size_t n, size_t cap, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t len = strlen(s), i = 0, k;

	if (n < cap)
		line[n++] = '"';
	while (i < len && n + 7 < cap) {
		unsigned char ch = p[i];

		k = char_ok(p + i, len - i);
		if (ch == '"' || ch == '\\') {
			line[n++] = '\\';
			line[n++] = (char)ch;
			i++;
		} else if (ch < 0x20 || ch == 0x7f) {
			memcpy(line + n, "\\u00", 4);
			line[n + 4] = hex[ch >> 4];
			line[n + 5] = hex[ch & 15];
			n += 6;
			i++;
		} else if (k == 0) {
			memcpy(line + n, "\\\\x", 3);
			line[n + 3] = hex[ch >> 4];
			line[n + 4] = hex[ch & 15];
			n += 5;
			i++;
		} else {
			memcpy(line + n, p + i, k);
			n += k;
			i += k;
		}
	}
	if (n < cap)
		line[n++] = '"';
	return n;
}

/* A TLS session's facts as text: " tls=V cipher=C sni="S" ...". */
static size_t access_tls_text(char *buf, size_t cap,
			      const struct sl_access_rec *r)
{
	int k = snprintf(buf, cap, " tls=%s cipher=%s%s%s%s%s%s%s%s%s%s%s",
			 r->tls_version, r->tls_cipher ? r->tls_cipher : "-",
			 r->tls_sni ? " sni=\"" : "",
			 r->tls_sni ? r->tls_sni : "", r->tls_sni ? "\"" : "",
			 r->tls_subject ? " subject=\"" : "",
			 r->tls_subject ? r->tls_subject : "",
			 r->tls_subject ? "\"" : "",
			 r->tls_san ? " san=\"" : "", r->tls_san ? r->tls_san : "",
			 r->tls_san ? "\"" : "",
			 r->tls_sha256 ? " sha256=" : "");

	if (k < 0)
		return 0;
	if ((size_t)k < cap && r->tls_sha256 != NULL)
		k += snprintf(buf + k, cap - (size_t)k, "%s", r->tls_sha256);
	if ((size_t)k < cap && r->tls_alpn != NULL)
		k += snprintf(buf + k, cap - (size_t)k, " alpn=\"%s\"",
			      r->tls_alpn);
	if ((size_t)k < cap && r->tls_resumed)
		k += snprintf(buf + k, cap - (size_t)k, " resumed=1");
	return (size_t)k < cap ? (size_t)k : cap - 1;
}

/* The upstream side's: " up_tls=V up_cipher=C[ up_resumed=1]". */
static size_t access_up_tls_text(char *buf, size_t cap,
				 const struct sl_access_rec *r)
{
	int k = snprintf(buf, cap, " up_tls=%s up_cipher=%s%s",
			 r->up_tls_version,
			 r->up_tls_cipher ? r->up_tls_cipher : "-",
			 r->up_tls_resumed ? " up_resumed=1" : "");

	if (k < 0)
		return 0;
	return (size_t)k < cap ? (size_t)k : cap - 1;
}

/* The same as a "tls" object of the JSON record. */
static size_t access_tls_json(char *line, size_t n, size_t cap,
			      const struct sl_access_rec *r)
{
	const char *keys[] = {"version", "cipher", "sni",    "subject",
			      "san",     "sha256", "alpn"};
	const char *vals[] = {r->tls_version, r->tls_cipher, r->tls_sni,
			      r->tls_subject, r->tls_san,    r->tls_sha256,
			      r->tls_alpn};
	int first = 1;

	n += (size_t)snprintf(line + n, n < cap ? cap - n : 0, ",\"tls\":{");
	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
		if (vals[i] == NULL || n >= cap)
			continue;
		n += (size_t)snprintf(line + n, cap - n, "%s\"%s\":",
				      first ? "" : ",", keys[i]);
		n = json_str(line, n, cap, vals[i]);
		first = 0;
	}
	if (n < cap)
		n += (size_t)snprintf(line + n, cap - n, ",\"resumed\":%s}",
				      r->tls_resumed ? "true" : "false");
	return n;
}

/* The upstream side's, as an "up_tls" object. */
static size_t access_up_tls_json(char *line, size_t n, size_t cap,
				 const struct sl_access_rec *r)
{
	if (n >= cap)
		return n;
	n += (size_t)snprintf(line + n, cap - n, ",\"up_tls\":{\"version\":");
	n = json_str(line, n, cap, r->up_tls_version);
	if (r->up_tls_cipher != NULL && n < cap) {
		n += (size_t)snprintf(line + n, cap - n, ",\"cipher\":");
		n = json_str(line, n, cap, r->up_tls_cipher);
	}
	if (n < cap)
		n += (size_t)snprintf(line + n, cap - n, ",\"resumed\":%s}",
				      r->up_tls_resumed ? "true" : "false");
	return n;
}

void sl_access(const struct sl_access_rec *r)
{
	char line[2048];
	size_t n = 0, cap = sizeof line - 2;
	int k;

	if (acc_to == ACC_OFF)
		return;
	if (!acc_json) {
		char err[1400] = "";
		size_t e = 0;

		if (r->tls_version != NULL)
			e = access_tls_text(err, sizeof err, r);
		if (r->up_tls_version != NULL)
			e += access_up_tls_text(err + e, sizeof err - e, r);
		if (r->error != NULL)
			snprintf(err + e, sizeof err - e, " error=\"%s\"",
				 r->error);
		if (acc_to == ACC_LOG) {
			sl_log(SL_LOG_INFO,
			       "session route=%s client=%s upstream=%s "
			       "bytes_in=%llu bytes_out=%llu duration_ms=%llu "
			       "reason=%s%s",
			       r->route, r->client, r->upstream, r->bytes_in,
			       r->bytes_out, r->duration_ms, r->reason, err);
			return;
		}
		char text[sizeof line];

		k = snprintf(text, sizeof text,
			     "session route=%s client=%s upstream=%s "
			     "bytes_in=%llu bytes_out=%llu duration_ms=%llu "
			     "reason=%s%s",
			     r->route, r->client, r->upstream, r->bytes_in,
			     r->bytes_out, r->duration_ms, r->reason, err);
		n = k < 0 ? 0 : (size_t)k < sizeof text ? (size_t)k
							 : sizeof text - 1;
		n = line_text(line, 0, cap, text, n);
	} else {
		n = (size_t)snprintf(line, cap, "{\"time\":\"");
		n = utc_stamp(line, n, cap);
		n += (size_t)snprintf(line + n, cap - n, "\",\"route\":");
		n = json_str(line, n, cap, r->route);
		n += (size_t)snprintf(line + n, cap - n, ",\"client\":");
		n = json_str(line, n, cap, r->client);
		n += (size_t)snprintf(line + n, cap - n, ",\"upstream\":");
		n = json_str(line, n, cap, r->upstream);
		n += (size_t)snprintf(line + n, cap - n,
				      ",\"bytes_in\":%llu,\"bytes_out\":%llu,"
				      "\"duration_ms\":%llu,\"reason\":",
				      r->bytes_in, r->bytes_out, r->duration_ms);
		n = json_str(line, n, cap, r->reason);
		if (r->error != NULL) {
			n += (size_t)snprintf(line + n, cap - n,
					      ",\"error\":");
			n = json_str(line, n, cap, r->error);
		}
		if (r->tls_version != NULL)
			n = access_tls_json(line, n, cap, r);
		if (r->up_tls_version != NULL)
			n = access_up_tls_json(line, n, cap, r);
		if (n < cap)
			line[n++] = '}';
		if (acc_to == ACC_LOG) {
			line[n] = '\0';
			sl_log(SL_LOG_INFO, "%s", line);
			return;
		}
	}
	if (acc_to == ACC_SYSLOG) {
		line[n] = '\0';
		sl_os_syslog(SL_LOG_INFO, line);
		return;
	}
	line[n++] = '\n';
	if (acc_fd >= 0 && write(acc_fd, line, (unsigned)n) < 0)
		return;
}

void sl_log_mirror_stderr(int on)
{
	log_mirror = on;
}

void sl_log_use_stderr(void)
{
	if (log_fd > 2)
		close(log_fd);
	log_fd = 2;
	free(log_path);
	log_path = NULL;
	log_syslog = 0;
}

/* The message of a line, formatted and made safe into line+n (cap
 * bytes); the new length. */
#if defined(__GNUC__)
__attribute__((format(SL_FMT_PRINTF, 4, 0)))
#endif
static size_t format_text(char *line, size_t n, size_t cap, const char *fmt,
			  va_list ap)
{
	char msg[2048];
	int k = vsnprintf(msg, sizeof msg, fmt, ap);

	if (k < 0)
		return n;
	if ((size_t)k >= sizeof msg)
		k = (int)sizeof msg - 1;
	return line_text(line, n, cap, msg, (size_t)k);
}

void sl_log(int level, const char *fmt, ...)
{
	char line[2048];
	va_list ap;
	int n, text;

	if (level > log_level)
		return;

	if (log_syslog) {
		va_start(ap, fmt);
		n = (int)format_text(line, 0, sizeof line - 1, fmt, ap);
		va_end(ap);
		line[n] = '\0';
		sl_os_syslog(level, line);
		if (log_mirror && level <= SL_LOG_WARN) {
			n = (int)strlen(line);
			if (n > (int)sizeof line - 2)
				n = (int)sizeof line - 2;
			line[n++] = '\n';
			(void)!write(2, "sluice: ", 8);
			(void)!write(2, line, (unsigned)n);
		}
		return;
	}

	n = 0;
	if (log_fd > 2) {
		/* A file has no journal or terminal to stamp the time. */
		n = (int)utc_stamp(line, 0, sizeof line);
		line[n++] = ' ';
	}
	n += snprintf(line + n, sizeof line - (size_t)n, "sluice[%ld]: %s: ",
		      cached_pid(), sl_log_level_name(level));
	text = n;
	va_start(ap, fmt);
	/* truncated if need be, with room for the newline */
	n = (int)format_text(line, (size_t)n, sizeof line - 1, fmt, ap);
	va_end(ap);
	line[n++] = '\n';
	/* One write per line; a failed log write has nowhere to be reported. */
	if (write(log_fd, line, (unsigned)n) < 0)
		return;
	if (log_mirror && log_fd != 2 && level <= SL_LOG_WARN)
		(void)!write(2, line, (unsigned)n);
	if (log_events && level <= SL_LOG_WARN) {
		line[n - 1] = '\0'; /* the Event Log stamps its own time */
		sl_os_syslog(level, line + text);
	}
}
