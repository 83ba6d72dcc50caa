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
	/* Windows: drain, but within sl_ctl_deadline_ms() (the console
	 * closed: about 5 s; the service's preshutdown timeout) */
	SL_CTL_STOP_SOON,
	SL_CTL_STOP_NOW, /* Windows: the system shuts down: no drain */
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
 * For SL_CTL_STOP_SOON: how long the OS lets the drain take, in ms, a
 * margin for the exit already taken off.
 */
#ifdef _WIN32
unsigned long sl_ctl_deadline_ms(void);
#else
static inline unsigned long sl_ctl_deadline_ms(void)
{
	return 0;
}
#endif

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
 * systemd's watchdog, as sd_watchdog_enabled(3) reads it: the interval in
 * microseconds that WATCHDOG_USEC asks for when WATCHDOG_PID is unset or
 * names this process, else 0.  Both variables are unset, so that no child
 * takes them as its own.  The caller then sends "WATCHDOG=1" through
 * sl_notify() more often than that.  0 on Windows (no such manager).
 */
unsigned long long sl_watchdog_usec(void);

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
 * service's thread, with START_PENDING reported (a new checkpoint every
 * second until RUNNING: loading the config, resolving names).  Inside
 * run(), sl_notify("READY=1") reports RUNNING, sl_notify("STOPPING=1")
 * STOP_PENDING (with checkpoints and a wait hint until run() returns).
 * Controls arrive through sl_ctl_start(): STOP as SL_CTL_STOP (reported
 * STOP_PENDING by the handler itself; a STOP during the drain changes
 * nothing), PRESHUTDOWN as SL_CTL_STOP_SOON (the drain within the
 * service's preshutdown timeout), SHUTDOWN as SL_CTL_STOP_NOW, the reload
 * control (SL_SERVICE_CONTROL_RELOAD) as SL_CTL_RELOAD.  run()'s return
 * value is the service-specific exit code reported with STOPPED
 * (SL_EXIT_*).  Returns run()'s value, or -errno when the process was not
 * started by the SCM.
 */
#define SL_EXIT_FAILED 1 /* could not start (a listener, the pid file) */
#define SL_EXIT_CONFIG 2 /* the config does not load */
#define SL_EXIT_CONFIG_ACL 3 /* the config may be changed by others */
#define SL_SERVICE_CONTROL_RELOAD 128
int sl_service_run(const char *name, int (*run)(void *arg), void *arg);

/*
 * `sluice service ...`: install, uninstall, start, stop (waits for
 * STOPPED, bounded), reload (sends SL_SERVICE_CONTROL_RELOAD).  0, or -1
 * with err set.
 *
 * install: the config's folder is created if missing, with the DACL
 * SL_CONF_DIR_SDDL; the config and its folder are checked
 * (sl_service_check_conf); the service runs this executable with
 * "service run -c CONF --name NAME" under the account set by
 * sl_service_set_account() (LocalSystem by default), delayed auto-start,
 * with a description, failure actions (restart after 5 s, three times,
 * the count reset after a day), a preshutdown timeout
 * (SL_PRESHUTDOWN_MS) and an Event Log source named NAME whose messages
 * are in this executable.  uninstall removes the service and the source.
 */
#define SL_CONF_DIR_SDDL                                                       \
	"D:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)(A;OICI;0x1200a9;;;BU)"
#define SL_PRESHUTDOWN_MS 30000
int sl_service_command(const char *cmd, const char *name, const char *conf,
		       char *err, size_t errlen);

/* Upper bound the service manager is told a drain may take, in ms. */
void sl_service_set_stop_hint(unsigned long ms);

/*
 * The account `service install` gives the service: "LocalService",
 * "NetworkService", "LocalSystem" (the default, NULL), or a name (a
 * virtual account "NT SERVICE\NAME" needs no password; a user does).
 * Elsewhere nothing (sl_service_command() refuses every command).
 */
void sl_service_set_account(const char *account, const char *password);

/*
 * The command line as UTF-8: on Windows from GetCommandLineW, whatever
 * the code page, *argc and *argv replaced for the life of the process;
 * elsewhere the arguments are the bytes given and nothing changes.  0 or
 * -1.
 */
int sl_utf8_argv(int *argc, char ***argv);

#ifdef _WIN32
/*
 * Refuse a config that someone other than SYSTEM, Administrators,
 * TrustedInstaller or the account running this check may change: the
 * file's DACL and its folder's, and their owners (an owner may always
 * rewrite the DACL).  0, or -1 with err naming the owner, or the trustee
 * of the first such ACE and its rights.  A missing file is not checked (its
 * folder is).
 */
int sl_service_check_conf(const char *conf, char *err, size_t errlen);

/*
 * The check of one security descriptor (a SECURITY_DESCRIPTOR *), what
 * naming the object in the message; self (a SID, or NULL) is trusted
 * too.  0, or -1 with err set.  Exposed for the tests.
 */
int sl_win_sd_check(const void *sd, const void *self, const char *what,
		    char *err, size_t errlen);

/*
 * The service's control handler, called as the SCM would call it: for the
 * tests, since neither Windows nor wine lets a program send PRESHUTDOWN
 * or SHUTDOWN (ControlService: ERROR_INVALID_PARAMETER).  Its result.
 */
unsigned long sl_service_control(unsigned long ctl);
#else
static inline int sl_service_check_conf(const char *conf, char *err,
					size_t errlen)
{
	(void)conf;
	(void)err;
	(void)errlen;
	return 0;
}
#endif

/* ---- sluice relay: what relay.c needs from the OS ----------------------- */

/*
 * One connection to one endpoint with blocking I/O, standard input and
 * output as bytes, and a thread (relay_posix.c, relay_win.c).  Every call
 * blocks.  The connection is read on one thread while another writes it:
 * sockets with recv and send; a Windows pipe with overlapped ReadFile and
 * WriteFile, each thread with an OVERLAPPED and an event of its own,
 * since synchronous I/O on one handle is serialized (a ReadFile that
 * waits would hold every WriteFile back).
 */
enum sl_relay_kind {
	SL_RELAY_TCP = 1,
	SL_RELAY_UNIX,
	SL_RELAY_PIPE,
};

struct sl_relay_target {
	enum sl_relay_kind kind;
	/* TCP: one address (a struct sockaddr of its family) */
	const void *addr;
	size_t addrlen;
	/* unix: the path ("@name": abstract, Linux); pipe: \\.\pipe\NAME */
	const char *path;
	int abstract;
};

typedef struct sl_relay_conn sl_relay_conn;

/*
 * Before the rest: a write to a reader that has gone is an error
 * (SIGPIPE ignored), Winsock started.  None of the daemon's network
 * set-up (sl_net_init: its resolver threads, the Winsock extensions).
 * 0 or -errno.
 */
int sl_relay_init(void);

/*
 * One attempt to connect (TCP: to the one address given); a pipe whose instances are all busy is waited for (WaitNamedPipe) for up
 * to busy_ms.  0 and *out, or -errno: -ENOENT when no such socket file or
 * pipe exists, -ECONNREFUSED when nothing listens, -EAFNOSUPPORT for a
 * kind this OS has not (named pipes off Windows; Unix sockets on a
 * Windows before 10 1803, and under wine).
 */
int sl_relay_connect(const struct sl_relay_target *t, unsigned long busy_ms,
		     sl_relay_conn **out);
/* Bytes read (> 0); 0 at the endpoint's end of stream (FIN; on a pipe the
 * zero-byte message, or the server gone); or -errno. */
long sl_relay_recv(sl_relay_conn *c, void *buf, size_t len);
/* Writes all of buf: 0 or -errno. */
int sl_relay_send(sl_relay_conn *c, const void *buf, size_t len);
/*
 * The end of stream toward the endpoint: a socket's write side shut down;
 * on a pipe, sluice's half-close (src/net/stream_win.c): a flush, so the
 * reader has taken every byte, then a zero-byte message.  0 or -errno.
 */
int sl_relay_shutdown(sl_relay_conn *c);

/*
 * Standard input and output as bytes, whatever they are (Windows: pipes,
 * overlapped or not, files and consoles; no text mode).  Reading: > 0,
 * 0 at the end, or -errno.  Writing: all of buf, 0 or -errno.
 * sl_relay_stdout_close(): the reader of standard output sees its end
 * (a socket, which may be standard input too, is shut down for writing).
 */
long sl_relay_stdin_read(void *buf, size_t len);
int sl_relay_stdout_write(const void *buf, size_t len);
void sl_relay_stdout_close(void);

/*
 * A thread running fn(arg), kept until the process exits.
 * sl_relay_thread_wait(): 0 once fn has returned, -ETIMEDOUT when it has
 * not after ms milliseconds.
 */
typedef struct sl_relay_thread sl_relay_thread;
int sl_relay_thread_start(sl_relay_thread **out, void (*fn)(void *arg),
			  void *arg);
int sl_relay_thread_wait(sl_relay_thread *t, unsigned long ms);
void sl_relay_sleep_ms(unsigned ms);

#endif
