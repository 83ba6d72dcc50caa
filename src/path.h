/*
 * File names: absolute names for a process that may change directory (a
 * daemon works in "/"), and UTF-8 names opened whatever the code page
 * (Windows; os/os.h turns them into the system's UTF-16).  Usable from
 * every layer, like log.h.
 */
#ifndef SL_PATH_H
#define SL_PATH_H

#include <stdio.h>

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

#endif
