/*
 * File names: absolute names for a process that may change directory (a
 * daemon works in "/"), and on Windows UTF-8 names for the system's
 * UTF-16 calls.  Usable from every layer, like log.h.
 */
#ifndef SL_PATH_H
#define SL_PATH_H

#include <stdio.h>
#ifdef _WIN32
#include <wchar.h>
#endif

/*
 * The absolute form of path with every link resolved (so a daemon that
 * changed directory still finds its config on reload), malloc'd; NULL
 * with errno set on failure (POSIX: the file must exist).
 */
char *sl_path_absolute(const char *path);

/*
 * path made absolute against the current directory as written: unlike
 * sl_path_absolute() no link is resolved and the file need not exist, so
 * the name is the one the operator gave (a pid file, a Unix socket: what
 * is later checked, or removed, is that name and not a link's target).
 * malloc'd; NULL with errno set on failure.
 */
char *sl_path_join_cwd(const char *path);

/* fopen(3) of a UTF-8 name (Windows: _wfopen, whatever the code page). */
FILE *sl_path_fopen(const char *path, const char *mode);

/*
 * The config file read when none is given: $(sysconfdir)/sluice/sluice.yaml;
 * on Windows %ProgramData%\sluice\sluice.yaml, resolved at run time
 * (SHGetKnownFolderPath).  Static storage.
 */
const char *sl_path_default_conf(void);

/* Not a regular file (a directory, a device, a FIFO). */
#define SL_PATH_ENOTREG 0x7f01

#ifdef _WIN32
/* UTF-8 <-> UTF-16, malloc'd; NULL with errno set (EINVAL: not UTF-8). */
wchar_t *sl_path_wide(const char *s);
char *sl_path_utf8(const wchar_t *w);

/*
 * CreateFileW(path, access, share, disposition) for a file sluice opens
 * with its own rights (a log, the pid file): the last component is never
 * followed (FILE_FLAG_OPEN_REPARSE_POINT) and, checked on the handle, it
 * must be a disk file with exactly one name: -ELOOP for a reparse point
 * (a symbolic link, a junction), -EMLINK for a file with more than one
 * hard link, -SL_PATH_ENOTREG for a directory or a device (NUL, CON).
 * Nothing is truncated here, so a refused file is left as it was.  0
 * with *handle (a HANDLE) set, or -errno (-EBUSY: a sharing violation).
 */
int sl_path_open_file(const char *path, unsigned long access,
		      unsigned long share, unsigned long disposition,
		      void **handle);

/*
 * The check sl_path_open_file() makes on the handle, from GetFileType()
 * and GetFileInformationByHandle()'s attributes and link count: 0 or the
 * -errno above.  On its own for the tests: wine 8 follows Unix symbolic
 * links and its CreateSymbolicLinkW creates nothing, so a reparse point
 * (-ELOOP) is shown by Windows only.
 */
int sl_path_check_file(unsigned long type, unsigned long attributes,
		       unsigned long links);
#endif

#endif
