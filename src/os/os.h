/*
 * What the base files (log.c, path.c) need from the OS, behind one header:
 * os_posix.c or os_win.c is built, chosen by configure as loop/ and net/
 * choose theirs, so the base files hold no #ifdef.  Below every layer and
 * usable by each; it uses no other sluice module.
 */
#ifndef SL_OS_H
#define SL_OS_H

#include <stdio.h>
#include <time.h>
#ifdef _WIN32
#include <wchar.h>
#endif

/* Not a regular file (a directory, a device, a FIFO). */
#define SL_OS_ENOTREG 0x7f01

/* ---- file names (path.h's contracts, for this OS) ---------------------- */

/* realpath(3); Windows: _wfullpath() (no link resolved). */
char *sl_os_path_absolute(const char *path);
/* Joined to getcwd() as written; Windows: _wfullpath(). */
char *sl_os_path_join_cwd(const char *path);
/* fopen(3); Windows: _wfopen() of the UTF-16 name. */
FILE *sl_os_fopen(const char *path, const char *mode);
/*
 * At most cap bytes of the regular file at path, opened without following
 * a link (POSIX: O_NOFOLLOW; Windows: no reparse point, sl_os_open_file)
 * and without waiting (a FIFO there is refused, never read): the count,
 * or -errno (-EINVAL for what is not a regular file).
 */
long sl_os_read_small(const char *path, void *buf, size_t cap);
/* SL_CONF_PATH; Windows: under %ProgramData%, resolved at run time. */
const char *sl_os_default_conf(void);

/* ---- log files ----------------------------------------------------------- */

/*
 * Open a log file for appending (created 0640 on POSIX): a descriptor,
 * or -errno.  The last component is never followed through a symbolic
 * link (-ELOOP) and anything but a regular file is refused
 * (-SL_OS_ENOTREG); Windows also refuses a file with more than one name
 * (-EMLINK).
 */
int sl_os_open_log(const char *path);

/* ---- the system log: syslog(3), the Event Log on Windows --------------- */

/*
 * The code of syslog facility number (RFC 5424: 1 user, 3 daemon, 16 to
 * 23 local0 to local7) for sl_os_syslog_open(); 0 on Windows, where the
 * Event Log has none.
 */
int sl_os_syslog_facility(int number);

/*
 * Lines go to the system log as ident: openlog(3) with the pid, at once,
 * facility 0 taken as LOG_DAEMON; Windows: the Event Log source named
 * ident (the first name given to this or to sl_os_syslog_events() stays
 * the source's), facility unused.  0, or -EIO when Windows could not
 * register the source.
 */
int sl_os_syslog_open(const char *ident, int facility);

/*
 * Windows: the Event Log source named source (as above) also receives
 * what the log shows at error and warning level, whatever the log's
 * destination: non-zero when it will (a source given and registered),
 * 0 for NULL.  Elsewhere 0: nothing.
 */
int sl_os_syslog_events(const char *source);

/* One line to the system log at level (log.h's SL_LOG_ERROR .. _DEBUG). */
void sl_os_syslog(int level, const char *line);

/* t as UTC, broken down. */
void sl_os_gmtime(time_t t, struct tm *tm);

#ifdef _WIN32
/* ---- Windows: UTF-8 names for the UTF-16 calls --------------------------- */

/* UTF-8 <-> UTF-16, malloc'd; NULL with errno set (EINVAL: not UTF-8). */
wchar_t *sl_os_wide(const char *s);
char *sl_os_utf8(const wchar_t *w);

/*
 * CreateFileW(path, access, share, disposition) for a file sluice opens
 * with its own rights (a log, the pid file): the last component is never
 * followed (FILE_FLAG_OPEN_REPARSE_POINT) and, checked on the handle, it
 * must be a disk file with exactly one name: -ELOOP for a reparse point
 * (a symbolic link, a junction), -EMLINK for a file with more than one
 * hard link, -SL_OS_ENOTREG for a directory or a device (NUL, CON).
 * Nothing is truncated here, so a refused file is left as it was.  0
 * with *handle (a HANDLE) set, or -errno (-EBUSY: a sharing violation).
 */
int sl_os_open_file(const char *path, unsigned long access,
		    unsigned long share, unsigned long disposition,
		    void **handle);

/*
 * The check sl_os_open_file() makes on the handle, from GetFileType()
 * and GetFileInformationByHandle()'s attributes and link count: 0 or the
 * -errno above.  On its own for the tests: wine 8 follows Unix symbolic
 * links and its CreateSymbolicLinkW creates nothing, so a reparse point
 * (-ELOOP) is shown by Windows only.
 */
int sl_os_check_file(unsigned long type, unsigned long attributes,
		     unsigned long links);
#endif

#endif
