/*
 * Absolute file names (path.h).  The one place sluice makes a relative
 * name absolute.
 */
#include "path.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef _WIN32
#include <unistd.h>
#endif

#ifdef _WIN32

char *sl_path_absolute(const char *path)
{
	char *abs = _fullpath(NULL, path, 0);

	if (abs == NULL)
		errno = ENOENT;
	return abs;
}

char *sl_path_join_cwd(const char *path)
{
	return sl_path_absolute(path); /* _fullpath() resolves no link */
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

#endif
