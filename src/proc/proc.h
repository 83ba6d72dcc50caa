/*
 * What the process needs from the OS around the loops: control events
 * (stop, reload, reopen logs) delivered to one loop, and detaching from the
 * terminal.  POSIX: signals through a self-pipe; Windows: console control
 * events and service controls (issue 3).  Process management, not part of
 * the event loop: main.c is the only user.
 */
#ifndef SL_PROC_H
#define SL_PROC_H

#include "loop/loop.h"

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
 * Become a daemon, in two halves.  sl_daemon_start(): fork; the parent
 * stays in the foreground and waits; the daemon (a new session, cwd "/",
 * stdin on the null device) goes on starting up with stdout and stderr
 * still those of the command, so that a startup error reaches the
 * operator.  sl_daemon_ready(): the daemon serves; stdout and stderr go to
 * the null device and the parent exits 0.  A daemon that exits before
 * sl_daemon_ready() makes the parent exit 1.  Returns 0 in the daemon or
 * -errno.  Not available on Windows (-ENOSYS; the service does this).
 */
int sl_daemon_start(void);
void sl_daemon_ready(void);

/*
 * Create and lock the pid file (locked for the life of the process; the
 * lock, not the file's presence, says a sluice runs) and write our pid.
 * Call in the daemon, after sl_daemon_start() (locks do not pass through
 * fork).  -1 with err set when another process holds it, and on POSIX
 * when path is a symbolic link or anything but a regular file with one
 * name: it is never followed, truncated or removed then.
 * sl_pidfile_remove(): unlink it at exit, if the name still leads to the
 * file we created.
 */
int sl_pidfile_create(const char *path, char *err, size_t errlen);
void sl_pidfile_remove(void);

/*
 * Tell the service manager (systemd's NOTIFY_SOCKET protocol: one datagram
 * to the socket named in the environment, '@' for an abstract name) a
 * state such as "READY=1", "RELOADING=1", "STOPPING=1".  Does nothing when
 * NOTIFY_SOCKET is not set.
 */
void sl_notify(const char *state);

/*
 * Become user (a name or a number) and group (NULL: the user's primary
 * group), for good: supplementary groups (a name: group and the user's
 * groups in the group database, as initgroups(3); a number: group alone),
 * gid then uid, and a check that root cannot be regained.  Only root may
 * switch; naming the user we already are is fine.  0, or -1 with err set.
 * Windows: the service account does this (-1, "not supported").
 */
int sl_drop_privileges(const char *user, const char *group, char *err,
		       size_t errlen);

/*
 * Raise the soft descriptor limit to the hard one and return it (0 where
 * the OS has no such per-process limit).
 */
unsigned long sl_fd_limit_raise(void);

/* ---- Windows service (elsewhere these return -ENOSYS) ------------------ */

/*
 * Serve as the service `name` of the service control manager: this thread
 * connects to it (StartServiceCtrlDispatcher) and run(arg) is called on the
 * service's thread, with START_PENDING reported.  Inside run(),
 * sl_notify("READY=1") reports RUNNING, sl_notify("STOPPING=1")
 * STOP_PENDING (with checkpoints and a wait hint until run() returns), and
 * the STOP and SHUTDOWN controls arrive as SL_CTL_STOP, the reload control
 * (SL_SERVICE_CONTROL_RELOAD) as SL_CTL_RELOAD, through sl_ctl_start().
 * run()'s return value is the exit code reported with STOPPED.  Returns
 * run()'s value, or -errno when the process was not started by the SCM.
 */
#define SL_SERVICE_CONTROL_RELOAD 128
int sl_service_run(const char *name, int (*run)(void *arg), void *arg);

/*
 * `sluice service ...`: install (auto start, running this executable with
 * "service run -c CONF --name NAME"), uninstall, start, stop (waits for
 * STOPPED, bounded), reload (sends SL_SERVICE_CONTROL_RELOAD).  0, or -1
 * with err set.
 */
int sl_service_command(const char *cmd, const char *name, const char *conf,
		       char *err, size_t errlen);

/* Upper bound the service manager is told a drain may take, in ms. */
void sl_service_set_stop_hint(unsigned long ms);

#endif
