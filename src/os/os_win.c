/*
 * os.h on Windows: UTF-8 names turned into the UTF-16 names the system's
 * wide-character calls take (the one place they are), files opened as
 * POSIX opens them with O_NOFOLLOW (checked on the handle), the Event Log
 * standing in for syslog, gmtime_s().
 */
#include "os.h"

#include <errno.h>
#include <fcntl.h>
#include <io.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <windows.h>
#include <shlobj.h>
#include <knownfolders.h>

/* ---- file names ---------------------------------------------------------- */

/* The few Windows errors opening a file gives, as -errno (os/ sits below
 * the loop's full mapping, sl_win_err()). */
static int open_err(DWORD e)
{
	switch (e) {
	case ERROR_FILE_NOT_FOUND:
	case ERROR_PATH_NOT_FOUND:
	case ERROR_INVALID_NAME:
		return -ENOENT;
	case ERROR_ACCESS_DENIED:
		return -EACCES;
	case ERROR_SHARING_VIOLATION:
	case ERROR_LOCK_VIOLATION:
		return -EBUSY;
	case ERROR_NOT_ENOUGH_MEMORY:
	case ERROR_OUTOFMEMORY:
		return -ENOMEM;
	default:
		return -EIO;
	}
}

wchar_t *sl_os_wide(const char *s)
{
	int n = MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, s, -1,
				    NULL, 0);
	wchar_t *w;

	if (n <= 0) {
		errno = EINVAL; /* not UTF-8 */
		return NULL;
	}
	if ((w = malloc((size_t)n * sizeof *w)) == NULL)
		return NULL;
	MultiByteToWideChar(CP_UTF8, 0, s, -1, w, n);
	return w;
}

char *sl_os_utf8(const wchar_t *w)
{
	int n = WideCharToMultiByte(CP_UTF8, 0, w, -1, NULL, 0, NULL, NULL);
	char *s;

	if (n <= 0) {
		errno = EINVAL;
		return NULL;
	}
	if ((s = malloc((size_t)n)) == NULL)
		return NULL;
	WideCharToMultiByte(CP_UTF8, 0, w, -1, s, n, NULL, NULL);
	return s;
}

char *sl_os_path_absolute(const char *path)
{
	wchar_t *w = sl_os_wide(path), *abs;
	char *s;

	if (w == NULL)
		return NULL;
	abs = _wfullpath(NULL, w, 0);
	free(w);
	if (abs == NULL) {
		errno = ENOENT;
		return NULL;
	}
	s = sl_os_utf8(abs);
	free(abs);
	return s;
}

char *sl_os_path_join_cwd(const char *path)
{
	return sl_os_path_absolute(path); /* _wfullpath() resolves no link */
}

FILE *sl_os_fopen(const char *path, const char *mode)
{
	wchar_t *w = sl_os_wide(path), wmode[8];
	FILE *f;
	size_t i;

	if (w == NULL)
		return NULL;
	for (i = 0; mode[i] != '\0' && i + 1 < sizeof wmode / sizeof *wmode;
	     i++)
		wmode[i] = (wchar_t)(unsigned char)mode[i];
	wmode[i] = L'\0';
	f = _wfopen(w, wmode);
	free(w);
	return f;
}

int sl_os_check_file(unsigned long type, unsigned long attributes,
		     unsigned long links)
{
	if (type != FILE_TYPE_DISK) /* NUL, CON, a pipe */
		return -SL_OS_ENOTREG;
	if (attributes & FILE_ATTRIBUTE_REPARSE_POINT)
		return -ELOOP;
	if (attributes & FILE_ATTRIBUTE_DIRECTORY)
		return -SL_OS_ENOTREG;
	if (links != 1)
		return -EMLINK;
	return 0;
}

/*
 * What POSIX gets from O_NOFOLLOW and fstat(2), on the handle: the last
 * component is opened itself, not followed (FILE_FLAG_OPEN_REPARSE_POINT:
 * a symbolic link or junction is opened as the link), then refused unless
 * it is a disk file with one name and no reparse point.
 */
int sl_os_open_file(const char *path, unsigned long access,
		    unsigned long share, unsigned long disposition,
		    void **handle)
{
	BY_HANDLE_FILE_INFORMATION bi;
	wchar_t *w = sl_os_wide(path);
	HANDLE h;
	DWORD e;
	int r = 0;

	if (w == NULL)
		return -errno;
	h = CreateFileW(w, access, share, NULL, disposition,
			FILE_ATTRIBUTE_NORMAL | FILE_FLAG_OPEN_REPARSE_POINT,
			NULL);
	if (h == INVALID_HANDLE_VALUE) {
		DWORD attr;

		e = GetLastError();
		attr = GetFileAttributesW(w);
		free(w);
		/* A directory cannot be opened as a file: access denied. */
		if (e == ERROR_ACCESS_DENIED &&
		    attr != INVALID_FILE_ATTRIBUTES &&
		    (attr & FILE_ATTRIBUTE_DIRECTORY))
			return -SL_OS_ENOTREG;
		return open_err(e);
	}
	free(w);
	/* A device (NUL) has no file information: its type says enough. */
	if (GetFileType(h) != FILE_TYPE_DISK)
		r = sl_os_check_file(GetFileType(h), 0, 1);
	else if (!GetFileInformationByHandle(h, &bi))
		r = open_err(GetLastError());
	else
		r = sl_os_check_file(FILE_TYPE_DISK, bi.dwFileAttributes,
				     bi.nNumberOfLinks);
	if (r < 0) {
		CloseHandle(h);
		return r;
	}
	*handle = h;
	return 0;
}

const char *sl_os_default_conf(void)
{
	static char conf[MAX_PATH * 3];
	PWSTR dir = NULL;
	char *s;

	if (conf[0] != '\0')
		return conf;
	/* %ProgramData%, where only administrators may create folders:
	 * not $(sysconfdir), a C:\usr\local\etc any user may create. */
	if (SHGetKnownFolderPath(&FOLDERID_ProgramData, 0, NULL, &dir) == S_OK &&
	    (s = sl_os_utf8(dir)) != NULL) {
		snprintf(conf, sizeof conf, "%s\\sluice\\sluice.yaml", s);
		free(s);
	} else {
		snprintf(conf, sizeof conf,
			 "C:\\ProgramData\\sluice\\sluice.yaml");
	}
	CoTaskMemFree(dir);
	return conf;
}

/* ---- log files ----------------------------------------------------------- */

/*
 * The rules of POSIX's O_NOFOLLOW and fstat(2), checked on the handle
 * (sl_os_open_file: no reparse point followed, a disk file with one name,
 * or -EMLINK for a hard link).  FILE_APPEND_DATA alone: every write lands
 * at the end.  FILE_SHARE_DELETE lets the file be rotated by renaming it
 * while it is open (then sl_log_reopen); the name is UTF-8, opened with
 * CreateFileW.
 */
int sl_os_open_log(const char *path)
{
	void *h;
	int fd, r;

	r = sl_os_open_file(path, FILE_APPEND_DATA | SYNCHRONIZE,
			    FILE_SHARE_READ | FILE_SHARE_WRITE |
				    FILE_SHARE_DELETE,
			    OPEN_ALWAYS, &h);
	if (r < 0)
		return r;
	fd = _open_osfhandle((intptr_t)h, _O_WRONLY | _O_APPEND | _O_BINARY);
	if (fd < 0) {
		CloseHandle(h);
		return -EMFILE;
	}
	return fd;
}

/* ---- the Event Log ------------------------------------------------------- */

static wchar_t *event_name;

/*
 * The Event Log source: the service's name, registered by `sluice
 * service install` under EventLog\Application with sluice.exe as its
 * message file (src/proc/sluice-msg.mc), so Event Viewer shows the line
 * itself.  An unregistered source still reaches the Application log,
 * with a note that the description cannot be found.
 */
static HANDLE event_source(void)
{
	static HANDLE source;

	if (source == NULL)
		source = RegisterEventSourceW(
			NULL, event_name != NULL ? event_name : L"sluice");
	return source;
}

/* Message ids of src/proc/sluice-msg.mc, severity bits included: each
 * is "%1", the line. */
#define SL_MSG_ERROR 0xC0000001UL
#define SL_MSG_WARNING 0x80000002UL
#define SL_MSG_INFO 0x40000003UL

int sl_os_syslog_facility(int number)
{
	(void)number;
	return 0; /* the Event Log has no facility */
}

int sl_os_syslog_open(const char *ident, int facility)
{
	(void)facility;
	if (event_name == NULL && ident != NULL)
		event_name = sl_os_wide(ident);
	return event_source() != NULL ? 0 : -EIO;
}

int sl_os_syslog_events(const char *source)
{
	if (source == NULL)
		return 0;
	return sl_os_syslog_open(source, 0) == 0;
}

/* One line (UTF-8) to the Event Log at level. */
void sl_os_syslog(int level, const char *line)
{
	static const WORD type[] = {EVENTLOG_ERROR_TYPE,
				    EVENTLOG_WARNING_TYPE,
				    EVENTLOG_INFORMATION_TYPE,
				    EVENTLOG_INFORMATION_TYPE};
	static const DWORD id[] = {SL_MSG_ERROR, SL_MSG_WARNING, SL_MSG_INFO,
				   SL_MSG_INFO};
	wchar_t *w = sl_os_wide(line);
	const wchar_t *msg = w != NULL ? w : L"(a line that is not UTF-8)";

	ReportEventW(event_source(), type[level], 0, id[level], NULL, 1, 0,
		     &msg, NULL);
	free(w);
}

void sl_os_gmtime(time_t t, struct tm *tm)
{
	gmtime_s(tm, &t);
}

long sl_os_read_small(const char *path, void *buf, size_t cap)
{
	void *h;
	DWORD n = 0;
	int r = sl_os_open_file(path, GENERIC_READ,
				FILE_SHARE_READ | FILE_SHARE_WRITE |
					FILE_SHARE_DELETE,
				OPEN_EXISTING, &h);

	if (r < 0)
		return r == -SL_OS_ENOTREG ? -EINVAL : r;
	/* A failed read is an error, as POSIX read(2)'s, not an empty file. */
	r = ReadFile(h, buf, cap > 65536 ? 65536 : (DWORD)cap, &n, NULL)
		    ? (int)n
		    : open_err(GetLastError());
	CloseHandle(h);
	return r;
}
