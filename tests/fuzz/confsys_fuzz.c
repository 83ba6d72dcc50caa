/*
 * confsys.h for fuzz_config: no file system (every include pattern
 * matches nothing, every named file is missing), so an input cannot make
 * the fuzzer read the machine's files; and an environment of its own,
 * the same on every run, so ${VAR} expands to known values: a short one,
 * an empty one, one that holds YAML and variable syntax (expanded text
 * is never parsed again), and a large one for the text cap.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "confsys.h"

const char sl_confsys_seps[] = "/";

int sl_confsys_has_wildcard(const char *pattern)
{
	return strpbrk(pattern, "*?[") != NULL;
}

int sl_confsys_glob(const char *dir, const char *pattern, char ***names,
		    size_t *n, char *err, size_t errlen)
{
	(void)dir;
	(void)pattern;
	(void)err;
	(void)errlen;
	*names = NULL;
	*n = 0;
	return 0;
}

FILE *sl_confsys_open(const char *path, sl_confsys_id *id)
{
	(void)path;
	(void)id;
	errno = ENOENT;
	return NULL;
}

int sl_confsys_getenv(const char *name, char **value)
{
	static const struct {
		const char *name, *value;
	} env[] = {
		{ "A", "x" },
		{ "PORT", "8080" },
		{ "HOST", "127.0.0.1" },
		{ "EMPTY", "" },
		{ "ODD", "${A} $${ - [a]: {b}" },
	};

	for (size_t i = 0; i < sizeof env / sizeof env[0]; i++)
		if (strcmp(name, env[i].name) == 0)
			return (*value = strdup(env[i].value)) == NULL ? -1
									: 0;
	if (strcmp(name, "BIG") == 0) {
		/* 1 MiB: sixteen of them reach the cap. */
		if ((*value = malloc(1u << 20)) == NULL)
			return -1;
		memset(*value, 'b', (1u << 20) - 1);
		(*value)[(1u << 20) - 1] = '\0';
		return 0;
	}
	return 1;
}
