/*
 * confsys.h on POSIX: glob(3), fstat(2), getenv(3).
 */
#include "confsys.h"

#include <errno.h>
#include <glob.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "path.h"

const char sl_confsys_seps[] = "/";

int sl_confsys_has_wildcard(const char *pattern)
{
	return strpbrk(pattern, "*?[") != NULL;
}

/*
 * glob(3) has no argument for its caller, so the first error it met
 * waits here (config loading runs on one thread).  A folder that does not
 * exist, or is no folder, is no error: the pattern matches nothing there.
 */
static int glob_errno;
static char glob_errpath[512];

static int glob_error(const char *path, int err)
{
	if (err == ENOENT || err == ENOTDIR)
		return 0;
	glob_errno = err;
	snprintf(glob_errpath, sizeof glob_errpath, "%s", path);
	return 1;
}

int sl_confsys_glob(const char *dir, const char *pattern, char ***names,
		    size_t *n, char *err, size_t errlen)
{
	size_t dl = strlen(dir), k = 0, o = 0;
	char *full;
	glob_t g;
	int r;

	*names = NULL;
	*n = 0;
	/* The folder as written: its *, ?, [ and \\ escaped for glob(3). */
	if ((full = malloc(2 * dl + strlen(pattern) + 1)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (size_t i = 0; i < dl; i++) {
		if (strchr("*?[\\", dir[i]) != NULL)
			full[o++] = '\\';
		full[o++] = dir[i];
	}
	strcpy(full + o, pattern);
	glob_errno = 0;
	/* GLOB_MARK puts a '/' after folders, which are then left out;
	 * GLOB_NOSORT: the caller sorts byte-wise, whatever the locale. */
	r = glob(full, GLOB_MARK | GLOB_NOSORT, glob_error, &g);
	free(full);
	if (r == GLOB_NOMATCH)
		return 0;
	if (r == GLOB_ABORTED) {
		snprintf(err, errlen, "cannot read folder %s: %s",
			 glob_errpath, strerror(glob_errno ? glob_errno : EIO));
		globfree(&g);
		return -1;
	}
	if (r != 0) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if ((*names = calloc(g.gl_pathc ? g.gl_pathc : 1,
			     sizeof **names)) == NULL)
		goto nomem;
	for (size_t i = 0; i < g.gl_pathc; i++) {
		size_t len = strlen(g.gl_pathv[i]);

		if (len > 0 && g.gl_pathv[i][len - 1] == '/')
			continue;
		if (((*names)[k] = strdup(g.gl_pathv[i])) == NULL)
			goto nomem;
		*n = ++k;
	}
	globfree(&g);
	return 0;
nomem:
	globfree(&g);
	for (size_t i = 0; i < k; i++)
		free((*names)[i]);
	free(*names);
	*names = NULL;
	*n = 0;
	snprintf(err, errlen, "out of memory");
	return -1;
}

FILE *sl_confsys_open(const char *path, sl_confsys_id *id)
{
	FILE *f = sl_path_fopen(path, "rb");
	struct stat st;

	if (f == NULL)
		return NULL;
	if (fstat(fileno(f), &st) < 0) {
		int e = errno;

		fclose(f);
		errno = e;
		return NULL;
	}
	id->dev = (unsigned long long)st.st_dev;
	id->ino = (unsigned long long)st.st_ino;
	return f;
}

int sl_confsys_getenv(const char *name, char **value)
{
	const char *v = getenv(name);

	if (v == NULL)
		return 1;
	return (*value = strdup(v)) == NULL ? -1 : 0;
}
