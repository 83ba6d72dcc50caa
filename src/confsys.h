/*
 * What config loading asks of the OS, beside reading the main file: the
 * files an include pattern names, opening one with its identity (so the
 * same file reached twice is told apart from two files), and the value of
 * an environment variable as UTF-8.  One file per OS implements it
 * (confsys_posix.c, confsys_win.c); the fuzz target links one of its own
 * that reaches no file system (tests/fuzz/confsys_fuzz.c).
 */
#ifndef SL_CONFSYS_H
#define SL_CONFSYS_H

#include <stddef.h>
#include <stdio.h>

/* A file's identity: device and inode, or volume and file index. */
typedef struct sl_confsys_id {
	unsigned long long dev, ino;
} sl_confsys_id;

/* The characters that end a folder in a name: "/" (POSIX), "/\\". */
extern const char sl_confsys_seps[];

/* Whether pattern holds a wildcard this OS's glob would expand. */
int sl_confsys_has_wildcard(const char *pattern);

/*
 * The names dir followed by pattern matches, in no particular order, each
 * malloc'd in a malloc'd array (free both; *names may be NULL when *n is
 * 0).  dir is taken as written, wildcards and all ("" or a folder ending
 * in a separator); pattern's wildcards expand.  Only files are listed,
 * never folders; a pattern whose folder does not exist matches nothing.
 * 0, or -1 with a sentence in err (a folder that cannot be read; on
 * Windows a wildcard before the last component).
 */
int sl_confsys_glob(const char *dir, const char *pattern, char ***names,
		    size_t *n, char *err, size_t errlen);

/* fopen(path, "rb") and the identity of what was opened; NULL with errno
 * set. */
FILE *sl_confsys_open(const char *path, sl_confsys_id *id);

/*
 * The value of the environment variable name: 0 with *value malloc'd
 * (UTF-8; "" for a variable set empty), 1 when it is not set, -1 out of
 * memory.
 */
int sl_confsys_getenv(const char *name, char **value);

#endif
