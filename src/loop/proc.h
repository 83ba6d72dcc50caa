/*
 * What the process needs from the OS around the loops: control events
 * (stop, reload, reopen logs) delivered to one loop, and detaching from the
 * terminal.  POSIX: signals through a self-pipe; Windows: console control
 * events and service controls (issue 3).
 */
#ifndef SL_PROC_H
#define SL_PROC_H

#include "loop.h"

enum sl_ctl {
	SL_CTL_STOP = 1, /* SIGTERM, SIGINT; Ctrl-C; service stop */
	SL_CTL_RELOAD,   /* SIGHUP; service reload control */
	SL_CTL_REOPEN,   /* SIGUSR1: reopen log files */
};

typedef void (*sl_ctl_cb)(enum sl_ctl ev, void *data);

/*
 * Deliver control events to cb on loop's thread.  One watcher per process;
 * call on loop's thread (or before it runs).  Returns 0 or -errno.
 */
int sl_ctl_start(sl_loop *loop, sl_ctl_cb cb, void *data);
/* Stop delivering and restore the default handlers. */
void sl_ctl_stop(void);

/*
 * Detach from the terminal: fork (the parent exits 0 once the child is
 * set up), new session, cwd "/", stdin/stdout/stderr on the null device.
 * Returns 0 in the daemon or -errno.  Not available on Windows (-ENOSYS).
 */
int sl_daemonize(void);

/*
 * Raise the soft descriptor limit to the hard one and return it (0 where
 * the OS has no such per-process limit).
 */
unsigned long sl_fd_limit_raise(void);

/*
 * The absolute form of path (so a daemon that changed directory still
 * finds its config on reload), malloc'd; NULL with errno set on failure.
 */
char *sl_path_absolute(const char *path);

#endif
