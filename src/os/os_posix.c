/*
 * os.h on POSIX: file names as given (bytes), log files opened with
 * O_NOFOLLOW and checked with fstat(2), syslog(3), gmtime_r().
 */
#include "os.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>
#include <sys/stat.h>

char *sl_os_path_absolute(const char *path)
{
	return realpath(path, NULL);
}

char *sl_os_path_join_cwd(const char *path)
{
	char cwd[PATH_MAX], *abs;
	size_t n;

	if (path[0] == '/')
		return strdup(path);
	if (getcwd(cwd, sizeof cwd) == NULL)
		return NULL;
	n = strlen(cwd) + 1 + strlen(path) + 1;
	if ((abs = malloc(n)) == NULL)
		return NULL;
	snprintf(abs, n, "%s%s%s", cwd, strcmp(cwd, "/") == 0 ? "" : "/",
		 path);
	return abs;
}

FILE *sl_os_fopen(const char *path, const char *mode)
{
	return fopen(path, mode);
}

const char *sl_os_default_conf(void)
{
	return SL_CONF_PATH;
}

/*
 * sluice often opens its logs as root in a directory its service user may
 * write, so the last component is never followed through a symbolic link
 * (-ELOOP), and anything but a regular file is refused (-SL_OS_ENOTREG):
 * a FIFO would stall the daemon on a write (O_NONBLOCK keeps the open
 * itself from waiting for a reader), a device is not a log.
 */
int sl_os_open_log(const char *path)
{
	struct stat st;
	int fd, e;

	fd = open(path,
		  O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW |
			  O_NOCTTY | O_NONBLOCK,
		  0640);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		e = errno;
		close(fd);
		return -e;
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		return -SL_OS_ENOTREG;
	}
	return fd; /* O_NONBLOCK changes nothing for a regular file */
}

/* Every <syslog.h> codes a facility as its number shifted by 3. */
_Static_assert(LOG_USER == 1 << 3 && LOG_DAEMON == 3 << 3 &&
		       LOG_LOCAL0 == 16 << 3 && LOG_LOCAL7 == 23 << 3,
	       "syslog facility codes");

int sl_os_syslog_facility(int number)
{
	return number << 3;
}

int sl_os_syslog_open(const char *ident, int facility)
{
	openlog(ident, LOG_PID | LOG_NDELAY, facility ? facility : LOG_DAEMON);
	return 0;
}

int sl_os_syslog_events(const char *source)
{
	(void)source;
	return 0;
}

void sl_os_syslog(int level, const char *line)
{
	static const int prio[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};

	syslog(prio[level], "%s", line);
}

void sl_os_gmtime(time_t t, struct tm *tm)
{
	gmtime_r(&t, tm);
}

long sl_os_read_small(const char *path, void *buf, size_t cap)
{
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	struct stat sb;
	ssize_t n;

	if (fd < 0)
		return -errno;
	if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
		close(fd);
		return -EINVAL;
	}
	while ((n = read(fd, buf, cap)) < 0 && errno == EINTR)
		;
	n = n < 0 ? -errno : n;
	close(fd);
	return (long)n;
}
