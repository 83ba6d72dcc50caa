/*
 * File names (path.h).  The one place sluice makes a relative name
 * absolute, and on Windows the one place UTF-8 names become the UTF-16
 * names the system's wide-character calls take.
 */
#include "path.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef _WIN32
#include <windows.h>
#include <shlobj.h>
#include <knownfolders.h>
#else
#include <unistd.h>
#endif

#ifdef _WIN32

/* The few Windows errors opening a file gives, as -errno (path.c sits
 * below the loop's full mapping, sl_win_err()). */
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

wchar_t *sl_path_wide(const char *s)
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

char *sl_path_utf8(const wchar_t *w)
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

char *sl_path_absolute(const char *path)
{
	wchar_t *w = sl_path_wide(path), *abs;
	char *s;

	if (w == NULL)
		return NULL;
	abs = _wfullpath(NULL, w, 0);
	free(w);
	if (abs == NULL) {
		errno = ENOENT;
		return NULL;
	}
	s = sl_path_utf8(abs);
	free(abs);
	return s;
}

char *sl_path_join_cwd(const char *path)
{
	return sl_path_absolute(path); /* _wfullpath() resolves no link */
}

FILE *sl_path_fopen(const char *path, const char *mode)
{
	wchar_t *w = sl_path_wide(path), wmode[8];
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

int sl_path_check_file(unsigned long type, unsigned long attributes,
		       unsigned long links)
{
	if (type != FILE_TYPE_DISK) /* NUL, CON, a pipe */
		return -SL_PATH_ENOTREG;
	if (attributes & FILE_ATTRIBUTE_REPARSE_POINT)
		return -ELOOP;
	if (attributes & FILE_ATTRIBUTE_DIRECTORY)
		return -SL_PATH_ENOTREG;
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
int sl_path_open_file(const char *path, unsigned long access,
		      unsigned long share, unsigned long disposition,
		      void **handle)
{
	BY_HANDLE_FILE_INFORMATION bi;
	wchar_t *w = sl_path_wide(path);
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
			return -SL_PATH_ENOTREG;
		return open_err(e);
	}
	free(w);
	/* A device (NUL) has no file information: its type says enough. */
	if (GetFileType(h) != FILE_TYPE_DISK)
		r = sl_path_check_file(GetFileType(h), 0, 1);
	else if (!GetFileInformationByHandle(h, &bi))
		r = open_err(GetLastError());
	else
		r = sl_path_check_file(FILE_TYPE_DISK, bi.dwFileAttributes,
				       bi.nNumberOfLinks);
	if (r < 0) {
		CloseHandle(h);
		return r;
	}
	*handle = h;
	return 0;
}

const char *sl_path_default_conf(void)
{
	static char conf[MAX_PATH * 3];
	PWSTR dir = NULL;
	char *s;

	if (conf[0] != '\0')
		return conf;
	/* %ProgramData%, where only administrators may create folders:
	 * not $(sysconfdir), a C:\usr\local\etc any user may create. */
	if (SHGetKnownFolderPath(&FOLDERID_ProgramData, 0, NULL, &dir) == S_OK &&
	    (s = sl_path_utf8(dir)) != NULL) {
		snprintf(conf, sizeof conf, "%s\\sluice\\sluice.yaml", s);
		free(s);
	} else {
		snprintf(conf, sizeof conf,
			 "C:\\ProgramData\\sluice\\sluice.yaml");
	}
	CoTaskMemFree(dir);
	return conf;
}

#else

char *sl_path_absolute(const char *path)
{
	return realpath(path, NULL);
}

char *sl_path_join_cwd(const char *path)
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

FILE *sl_path_fopen(const char *path, const char *mode)
{
	return fopen(path, mode);
}

const char *sl_path_default_conf(void)
{
	return SL_CONF_PATH;
}

#endif
