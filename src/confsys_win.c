/*
 * confsys.h on Windows: FindFirstFileW over one folder, the file index of
 * an open handle, _wgetenv().
 */
#include "confsys.h"

#include <errno.h>
#include <io.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>

#include <windows.h>

#include "os/os.h"
#include "path.h"

const char sl_confsys_seps[] = "/\\";

int sl_confsys_has_wildcard(const char *pattern)
{
	return strpbrk(pattern, "*?") != NULL;
}

static wchar_t fold(wchar_t c)
{
	return c >= L'A' && c <= L'Z' ? (wchar_t)(c - L'A' + L'a') : c;
}

/*
 * * and ? against a name, ASCII letters folded (the case a name is found
 * in on NTFS).  FindFirstFileW's own matching is not enough: it also
 * tries each file's 8.3 short name, so "*.yam" finds "a.yaml" (its short
 * name is A~1.YAM), and a pattern of three letters after its dot finds
 * longer ones; only the long name counts here.
 */
static int match(const wchar_t *p, const wchar_t *s)
{
	const wchar_t *star = NULL, *back = NULL;

	while (*s != L'\0') {
		if (*p == L'*') {
			star = ++p;
			back = s;
		} else if (*p == L'?' || (*p != L'\0' && fold(*p) == fold(*s))) {
			p++;
			s++;
		} else if (star != NULL) {
			p = star;
			s = ++back;
		} else {
			return 0;
		}
	}
	while (*p == L'*')
		p++;
	return *p == L'\0';
}

static int add_name(char ***names, size_t *n, size_t *cap, const char *dir,
		    size_t dirlen, const wchar_t *file)
{
	char *u = sl_os_utf8(file), *full;

	if (u == NULL)
		return -1;
	if ((full = malloc(dirlen + strlen(u) + 1)) == NULL) {
		free(u);
		return -1;
	}
	memcpy(full, dir, dirlen);
	strcpy(full + dirlen, u);
	free(u);
	if (*n == *cap) {
		size_t c = *cap ? *cap * 2 : 16;
		char **nn = realloc(*names, c * sizeof *nn);

		if (nn == NULL) {
			free(full);
			return -1;
		}
		*names = nn;
		*cap = c;
	}
	(*names)[(*n)++] = full;
	return 0;
}

/*
 * Only the last component may hold * and ?: FindFirstFileW lists one
 * folder.  Names that begin with a dot are left to a pattern that begins
 * with one, as glob(3) does on POSIX.
 */
int sl_confsys_glob(const char *dir, const char *pattern, char ***names,
		    size_t *n, char *err, size_t errlen)
{
	const char *last = pattern, *p;
	WIN32_FIND_DATAW fd;
	wchar_t *wpat = NULL, *wlast = NULL;
	size_t cap = 0, dirlen;
	char *full;
	HANDLE h;
	DWORD e;
	int r = -1;

	*names = NULL;
	*n = 0;
	for (p = pattern; *p != '\0'; p++)
		if (*p == '/' || *p == '\\')
			last = p + 1;
	for (p = pattern; p < last; p++)
		if (*p == '*' || *p == '?') {
			snprintf(err, errlen, "on Windows only the last part of "
					      "a pattern may hold * and ?");
			return -1;
		}
	/* dir can hold neither: they are no characters of a Windows name. */
	if ((full = malloc(strlen(dir) + strlen(pattern) + 1)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	strcpy(full, dir);
	strcat(full, pattern);
	dirlen = strlen(dir) + (size_t)(last - pattern);
	if ((wpat = sl_os_wide(full)) == NULL ||
	    (wlast = sl_os_wide(last)) == NULL) {
		snprintf(err, errlen, errno == EINVAL ? "not a UTF-8 name"
						      : "out of memory");
		goto out;
	}
	h = FindFirstFileExW(wpat, FindExInfoBasic, &fd, FindExSearchNameMatch,
			     NULL, 0);
	if (h == INVALID_HANDLE_VALUE) {
		e = GetLastError();
		if (e == ERROR_FILE_NOT_FOUND || e == ERROR_PATH_NOT_FOUND ||
		    e == ERROR_DIRECTORY) {
			r = 0;
			goto out;
		}
		snprintf(err, errlen, "cannot list %s (error %lu)", full,
			 (unsigned long)e);
		goto out;
	}
	do {
		if (fd.dwFileAttributes & FILE_ATTRIBUTE_DIRECTORY)
			continue;
		if (fd.cFileName[0] == L'.' && wlast[0] != L'.')
			continue;
		if (!match(wlast, fd.cFileName))
			continue;
		if (add_name(names, n, &cap, full, dirlen, fd.cFileName) <
		    0) {
			FindClose(h);
			snprintf(err, errlen, "out of memory");
			goto out;
		}
	} while (FindNextFileW(h, &fd));
	e = GetLastError();
	FindClose(h);
	if (e != ERROR_NO_MORE_FILES) {
		snprintf(err, errlen, "cannot list %s (error %lu)", full,
			 (unsigned long)e);
		goto out;
	}
	r = 0;
out:
	free(full);
	free(wpat);
	free(wlast);
	if (r < 0) {
		for (size_t i = 0; i < *n; i++)
			free((*names)[i]);
		free(*names);
		*names = NULL;
		*n = 0;
	}
	return r;
}

FILE *sl_confsys_open(const char *path, sl_confsys_id *id)
{
	FILE *f = sl_path_fopen(path, "rb");
	BY_HANDLE_FILE_INFORMATION info;
	HANDLE h;

	if (f == NULL)
		return NULL;
	h = (HANDLE)_get_osfhandle(_fileno(f));
	if (h == INVALID_HANDLE_VALUE ||
	    !GetFileInformationByHandle(h, &info)) {
		fclose(f);
		errno = EIO;
		return NULL;
	}
	id->dev = info.dwVolumeSerialNumber;
	id->ino = ((unsigned long long)info.nFileIndexHigh << 32) |
		  info.nFileIndexLow;
	return f;
}

/* _wgetenv, not getenv: the latter gives the value in the ANSI code
 * page, and a config is UTF-8. */
int sl_confsys_getenv(const char *name, char **value)
{
	wchar_t *w = sl_os_wide(name), *v;

	if (w == NULL)
		return -1;
	v = _wgetenv(w);
	free(w);
	if (v == NULL)
		return 1;
	return (*value = sl_os_utf8(v)) == NULL ? -1 : 0;
}
