/*
 * End-to-end tests of sluice as a Unix daemon: the parent returns once the
 * daemon serves (or fails), the pid file and its lock, the log file and its
 * reopening, and the service manager's notifications.
 */
#if defined(__linux__) && !defined(_GNU_SOURCE)
#define _GNU_SOURCE /* glibc: SCHED_BATCH */
#endif

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <pwd.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#ifdef __linux__
#include <sys/ptrace.h>
#endif
#include <unistd.h>

#include <cmocka.h>

#include "support/support.h"

static pid_t read_pid(const char *path)
{
	char *text = st_read_file(path);
	long pid;

	assert_non_null(text);
	pid = strtol(text, NULL, 10);
	free(text);
	assert_true(pid > 1);
	return (pid_t)pid;
}

/* Wait for a process that is not our child to be gone. */
static int wait_gone(pid_t pid, unsigned timeout_ms)
{
	uint64_t end = st_now_ms() + timeout_ms;

	while (kill(pid, 0) == 0) {
		if (st_now_ms() > end)
			return -1;
		st_sleep_ms(10);
	}
	return 0;
}

static int log_has(const char *path, const char *needle)
{
	char *text = st_read_file(path);
	int r = text != NULL && strstr(text, needle) != NULL;

	free(text);
	return r;
}

static void wait_log(const char *path, const char *needle)
{
	uint64_t end = st_now_ms() + 10000;

	while (!log_has(path, needle)) {
		if (st_now_ms() > end)
			fail_msg("'%s' never appeared in %s", needle, path);
		st_sleep_ms(10);
	}
}

/* Daemons started with -p are not our children (st_teardown does not
 * know them): a failed assertion must not leave one running after its
 * test, nor st_fail() one after the test program. */
static pid_t started[16];
static int nstarted;

static void kill_started(void)
{
	for (int i = 0; i < nstarted; i++)
		if (started[i] > 0)
			kill(started[i], SIGKILL);
	nstarted = 0;
}

static int teardown(void **state)
{
	kill_started();
	return st_teardown(state);
}
#define DAEMON_TEST(f) cmocka_unit_test_teardown(f, teardown)

struct daemon {
	uint16_t port;
	char *conf, *pidfile, *log;
	pid_t pid;
};

/* Start `sluice -c CONF -p PIDFILE` (daemon mode) and return once the
 * command did: by then the daemon must serve. */
static void daemon_up(struct daemon *d, const char *tag, uint16_t uport)
{
	st_cfg *cfg = st_cfg_new();
	char *yaml, *name, *out;
	int rc;

	d->port = st_free_port();
	d->pidfile = st_fmt("%s/%s.pid", st_tmpdir(), tag);
	d->log = st_fmt("%s/%s.log", st_tmpdir(), tag);
	st_cfg_set(cfg, "log", "%s", d->log);
	st_cfg_route(cfg, tag, d->port, uport);
	yaml = st_cfg_done(cfg);
	name = st_fmt("%s.yaml", tag);
	d->conf = st_write_tmp(name, yaml);
	rc = st_run_sluice(&out, "-c", d->conf, "-p", d->pidfile, NULL);
	if (rc != 0)
		fail_msg("sluice exited %d: %s", rc, out);
	assert_string_equal(out, ""); /* nothing on the terminal */
	d->pid = read_pid(d->pidfile);
	if (nstarted < 16)
		started[nstarted++] = d->pid;
	/* Ready means serving: no retry needed. */
	st_echo_once(d->port, "hello");
	free(out);
	free(name);
	free(yaml);
}

static void daemon_down(struct daemon *d)
{
	if (d->pid > 0 && kill(d->pid, SIGTERM) == 0)
		assert_int_equal(wait_gone(d->pid, 10000), 0);
	unlink(d->log);
	unlink(d->conf);
	free(d->conf);
	free(d->pidfile);
	free(d->log);
}

static void test_daemonize_pidfile(void **state)
{
	uint16_t uport;
	st_server *srv = st_server_start(st_listen_tcp(&uport, 16), ST_ECHO, 0);
	struct daemon d;

	(void)state;
	daemon_up(&d, "daemon", uport);
	assert_true(d.pid != getpid());
	wait_log(d.log, " started: ");
	{
		/* Lines carry the daemon's pid, not the command's. */
		char *who = st_fmt("sluice[%ld]: ", (long)d.pid);

		assert_true(log_has(d.log, who));
		free(who);
	}
	assert_int_equal(kill(d.pid, SIGTERM), 0);
	assert_int_equal(wait_gone(d.pid, 10000), 0);
	/* Removed on the way out, after an orderly stop. */
	assert_int_equal(access(d.pidfile, F_OK), -1);
	assert_true(log_has(d.log, "all sessions closed; exiting"));
	assert_true(log_has(d.log, "session route=daemon"));
	d.pid = 0;
	daemon_down(&d);
	st_server_stop(srv);
}

static void test_pidfile_held(void **state)
{
	uint16_t uport;
	st_server *srv = st_server_start(st_listen_tcp(&uport, 16), ST_ECHO, 0);
	struct daemon d;
	char *yaml, *conf, *out, *want;
	int rc;
	st_cfg *cfg;

	(void)state;
	daemon_up(&d, "held", uport);
	cfg = st_cfg_new();
	st_cfg_route(cfg, "other", st_free_port(), uport);
	yaml = st_cfg_done(cfg);
	conf = st_write_tmp("held2.yaml", yaml);
	rc = st_run_sluice(&out, "-d", "-c", conf, "-p", d.pidfile, NULL);
	assert_int_equal(rc, 1);
	want = st_fmt("pid file %s is locked by another sluice (pid %ld)",
		      d.pidfile, (long)d.pid);
	assert_non_null(strstr(out, want));
	/* The first one is untouched: same pid file, still serving. */
	assert_int_equal(read_pid(d.pidfile), d.pid);
	st_echo_once(d.port, "hello");
	daemon_down(&d);
	free(want);
	free(out);
	free(conf);
	free(yaml);
	st_server_stop(srv);
}

/* The file a planted link or second name leads to: still there, as it was. */
static void assert_untouched(const char *victim)
{
	char *text = st_read_file(victim);

	if (text == NULL)
		fail_msg("%s is gone", victim);
	assert_string_equal(text, "precious\n");
	free(text);
}

/*
 * Issue 17: whoever may write the pid file's directory (the service
 * user's /run/sluice, say) must not get root to write over, or remove,
 * another file through it.  Run `sluice -d -p pidfile` and expect it to
 * refuse with `want`, leaving victim (when not NULL) as it was.  Its
 * listen port is taken, so that a sluice which accepted the pid file
 * still stops at once rather than outlive the test.
 */
static void pidfile_refused(const char *pidfile, const char *want,
			    const char *victim)
{
	uint16_t taken;
	st_sock l = st_listen_tcp(&taken, 1);
	char *yaml, *conf, *out;
	int rc;
	st_cfg *cfg;

	cfg = st_cfg_new();
	st_cfg_route(cfg, "refused", taken, 0);
	st_cfg_upstream(cfg, "tcp://127.0.0.1:1");
	yaml = st_cfg_done(cfg);
	conf = st_write_tmp("refused.yaml", yaml);
	rc = st_run_sluice(&out, "-d", "-c", conf, "-p", pidfile, NULL);
	st_close(l);
	unlink(conf);
	if (victim != NULL)
		assert_untouched(victim);
	assert_int_equal(rc, 1);
	if (strstr(out, want) == NULL)
		fail_msg("expected '%s' in: %s", want, out);
	free(out);
	free(conf);
	free(yaml);
}

static void test_pidfile_symlink(void **state)
{
	char *victim = st_write_tmp("victim-symlink", "precious\n");
	char *pidfile = st_fmt("%s/symlink.pid", st_tmpdir());
	char *want;
	struct stat st;

	(void)state;
	assert_int_equal(symlink(victim, pidfile), 0);
	want = st_fmt("pid file %s: is a symbolic link; not following it",
		      pidfile);
	pidfile_refused(pidfile, want, victim);
	assert_int_equal(lstat(pidfile, &st), 0);
	assert_true(S_ISLNK(st.st_mode));
	unlink(pidfile);
	unlink(victim);
	free(want);
	free(pidfile);
	free(victim);
}

static void test_pidfile_hardlink(void **state)
{
	char *victim = st_write_tmp("victim-hardlink", "precious\n");
	char *pidfile = st_fmt("%s/hardlink.pid", st_tmpdir());
	char *want;

	(void)state;
	assert_int_equal(link(victim, pidfile), 0);
	want = st_fmt("pid file %s: has 2 links", pidfile);
	pidfile_refused(pidfile, want, victim);
	assert_untouched(pidfile); /* the same file, by its second name */
	unlink(pidfile);
	unlink(victim);
	free(want);
	free(pidfile);
	free(victim);
}

static void test_pidfile_fifo(void **state)
{
	char *pidfile = st_fmt("%s/fifo.pid", st_tmpdir());
	char *want;
	struct stat st;

	(void)state;
	assert_int_equal(mkfifo(pidfile, 0644), 0);
	want = st_fmt("pid file %s: not a regular file", pidfile);
	pidfile_refused(pidfile, want, NULL);
	assert_int_equal(lstat(pidfile, &st), 0);
	assert_true(S_ISFIFO(st.st_mode));
	unlink(pidfile);
	free(want);
	free(pidfile);
}

/* At exit the pid file goes only while its name still leads to the file
 * the daemon created: not what was put in its place since. */
static void test_pidfile_replaced(void **state)
{
	uint16_t uport;
	st_server *srv = st_server_start(st_listen_tcp(&uport, 16), ST_ECHO, 0);
	char *victim = st_write_tmp("victim-replaced", "precious\n");
	char *aside;
	struct daemon d;
	struct stat st;

	(void)state;
	daemon_up(&d, "replaced", uport);
	aside = st_fmt("%s.new", d.pidfile);
	assert_int_equal(symlink(victim, aside), 0);
	assert_int_equal(rename(aside, d.pidfile), 0);
	assert_int_equal(kill(d.pid, SIGTERM), 0);
	assert_int_equal(wait_gone(d.pid, 10000), 0);
	d.pid = 0;
	assert_true(log_has(d.log, "all sessions closed; exiting"));
	assert_untouched(victim);
	if (lstat(d.pidfile, &st) != 0)
		fail_msg("%s, put in place of the pid file, was removed",
			 d.pidfile);
	assert_true(S_ISLNK(st.st_mode));
	unlink(d.pidfile);
	unlink(victim);
	daemon_down(&d);
	free(aside);
	free(victim);
	st_server_stop(srv);
}

/* A relative -p names a file in the directory sluice was started from,
 * not in "/", where the daemon works. */
static void test_pidfile_relative(void **state)
{
	uint16_t uport, lport = st_free_port();
	st_server *srv = st_server_start(st_listen_tcp(&uport, 16), ST_ECHO, 0);
	char *yaml, *conf, *out, *pidfile, cwd[4096];
	pid_t pid;
	int rc;
	st_cfg *cfg;

	(void)state;
	assert_non_null(getcwd(cwd, sizeof cwd));
	cfg = st_cfg_new();
	st_cfg_route(cfg, "relative", lport, uport);
	yaml = st_cfg_done(cfg);
	conf = st_write_tmp("relative.yaml", yaml);
	pidfile = st_fmt("%s/relative.pid", st_tmpdir());
	assert_int_equal(chdir(st_tmpdir()), 0);
	rc = st_run_sluice(&out, "-c", conf, "-p", "relative.pid", NULL);
	assert_int_equal(chdir(cwd), 0);
	if (rc != 0)
		fail_msg("sluice exited %d: %s", rc, out);
	pid = read_pid(pidfile);
	if (nstarted < 16)
		started[nstarted++] = pid;
	st_echo_once(lport, "hello");
	assert_int_equal(kill(pid, SIGTERM), 0);
	assert_int_equal(wait_gone(pid, 10000), 0);
	assert_int_equal(access(pidfile, F_OK), -1);
	unlink(conf);
	free(pidfile);
	free(out);
	free(conf);
	free(yaml);
	st_server_stop(srv);
}

/* The parent waits for the daemon: a failure at startup is its exit
 * status and its message, on the operator's terminal. */
static void test_startup_error_reaches_terminal(void **state)
{
	uint16_t taken;
	st_sock l = st_listen_tcp(&taken, 1);
	char *yaml, *conf, *out, *pidfile;
	int rc;
	st_cfg *cfg;

	(void)state;
	pidfile = st_fmt("%s/fail.pid", st_tmpdir());
	cfg = st_cfg_new();
	st_cfg_route(cfg, "busy", taken, 0);
	st_cfg_upstream(cfg, "tcp://127.0.0.1:1");
	yaml = st_cfg_done(cfg);
	conf = st_write_tmp("fail.yaml", yaml);
	rc = st_run_sluice(&out, "-c", conf, "-p", pidfile, NULL);
	assert_int_equal(rc, 1);
	assert_non_null(strstr(out, "bind"));
	assert_non_null(strstr(out, "Address already in use"));
	st_close(l);
	free(pidfile);
	free(out);
	free(conf);
	free(yaml);
}

static void test_log_reopen(void **state)
{
	uint16_t uport;
	st_server *srv = st_server_start(st_listen_tcp(&uport, 16), ST_ECHO, 0);
	struct daemon d;
	char *old;

	(void)state;
	daemon_up(&d, "reopen", uport);
	wait_log(d.log, " started: ");
	old = st_fmt("%s.1", d.log);
	/* As logrotate does: rename, then signal. */
	assert_int_equal(rename(d.log, old), 0);
	assert_int_equal(kill(d.pid, SIGUSR1), 0);
	wait_log(d.log, "log file reopened");
	st_echo_once(d.port, "hello");
	wait_log(d.log, "session route=reopen");
	/* Lines before the reopen stay in the renamed file; file lines carry
	 * a UTC time stamp. */
	assert_true(log_has(old, " started: "));
	assert_false(log_has(old, "log file reopened"));
	{
		char *text = st_read_file(d.log);

		assert_non_null(text);
		assert_true(strlen(text) > 24 && text[4] == '-' &&
			    text[10] == 'T' && text[23] == 'Z');
		free(text);
	}
	unlink(old);
	free(old);
	daemon_down(&d);
	st_server_stop(srv);
}

/* NOTIFY_SOCKET: READY=1 once serving, RELOADING=1 and READY=1 around a
 * reload, STOPPING=1 on the way out. */
static int notify_recv(int fd, char *buf, size_t len)
{
	uint64_t end = st_now_ms() + 10000;

	for (;;) {
		ssize_t n = recv(fd, buf, len - 1, MSG_DONTWAIT);

		if (n >= 0) {
			buf[n] = '\0';
			return 0;
		}
		if (st_now_ms() > end)
			return -1;
		st_sleep_ms(5);
	}
}

static void test_sd_notify(void **state)
{
	uint16_t uport, lport = st_free_port();
	st_server *srv = st_server_start(st_listen_tcp(&uport, 16), ST_ECHO, 0);
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	char *path = st_fmt("%s/notify.sock", st_tmpdir()), *yaml, *want;
	char buf[256];
	st_daemon *d;
	int fd;
	st_cfg *cfg;

	(void)state;
	fd = socket(AF_UNIX, SOCK_DGRAM, 0);
	assert_true(fd >= 0);
	strcpy(sun.sun_path, path);
	assert_int_equal(bind(fd, (struct sockaddr *)&sun, sizeof sun), 0);
	assert_int_equal(setenv("NOTIFY_SOCKET", path, 1), 0);
	cfg = st_cfg_new();
	st_cfg_route(cfg, "sd", lport, uport);
	yaml = st_cfg_done(cfg);
	d = st_daemon_start(yaml);
	unsetenv("NOTIFY_SOCKET");

	assert_int_equal(notify_recv(fd, buf, sizeof buf), 0);
	want = st_fmt("READY=1\nMAINPID=%ld", (long)st_daemon_pid(d));
	assert_string_equal(buf, want);
	st_echo_once(lport, "hello");

	st_daemon_signal(d, SIGHUP);
	assert_int_equal(notify_recv(fd, buf, sizeof buf), 0);
	assert_string_equal(buf, "RELOADING=1");
	assert_int_equal(notify_recv(fd, buf, sizeof buf), 0);
	assert_string_equal(buf, "READY=1");

	st_daemon_signal(d, SIGTERM);
	assert_int_equal(notify_recv(fd, buf, sizeof buf), 0);
	assert_string_equal(buf, "STOPPING=1");
	assert_int_equal(st_daemon_wait(d, 10000), 0);
	st_daemon_free(d);
	close(fd);
	unlink(path);
	free(want);
	free(yaml);
	free(path);
	st_server_stop(srv);
}

/* As root: listeners bound first, then the daemon runs as nobody. */
static void test_privilege_drop(void **state)
{
	uint16_t uport, lport = st_free_port();
	st_server *srv;
	struct passwd *pw = getpwnam("nobody");
	char *yaml, *status, *want;
	st_daemon *d;
	st_cfg *cfg;

	(void)state;
	if (geteuid() != 0 || pw == NULL)
		skip(); /* needs root, and a user to become */
	srv = st_server_start(st_listen_tcp(&uport, 16), ST_ECHO, 0);
	/* The daemon reads its config again on reload, as nobody. */
	assert_int_equal(chmod(st_tmpdir(), 0755), 0);
	cfg = st_cfg_new();
	st_cfg_set(cfg, "user", "nobody");
	st_cfg_route(cfg, "drop", lport, uport);
	yaml = st_cfg_yaml(cfg);
	d = st_daemon_start(yaml);
	assert_int_equal(st_daemon_log_count(d, "running as user nobody"), 1);
	st_echo_once(lport, "hello");
	{
		char *path = st_fmt("/proc/%ld/status", (long)st_daemon_pid(d));

		status = st_read_file(path);
		free(path);
	}
	assert_non_null(status);
	/* real, effective, saved and file-system ids all changed */
	want = st_fmt("Uid:\t%u\t%u\t%u\t%u\n", (unsigned)pw->pw_uid,
		      (unsigned)pw->pw_uid, (unsigned)pw->pw_uid,
		      (unsigned)pw->pw_uid);
	assert_non_null(strstr(status, want));
	free(want);
	want = st_fmt("Gid:\t%u\t%u\t%u\t%u\n", (unsigned)pw->pw_gid,
		      (unsigned)pw->pw_gid, (unsigned)pw->pw_gid,
		      (unsigned)pw->pw_gid);
	assert_non_null(strstr(status, want));
	free(want);
	assert_non_null(strstr(status, "Groups:\t"));

	/* A reload that needs a privileged port says why it cannot be. */
	{
		uint16_t low = 0;
		char *more;

		for (uint16_t p = 900; p < 1000 && low == 0; p++) {
			struct sockaddr_in sin = {.sin_family = AF_INET,
						  .sin_port = htons(p)};
			int fd = socket(AF_INET, SOCK_STREAM, 0);

			sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
			if (fd >= 0 && bind(fd, (struct sockaddr *)&sin,
					    sizeof sin) == 0)
				low = p;
			close(fd);
		}
		assert_int_not_equal(low, 0);
		st_cfg_route(cfg, "low", low, uport);
		more = st_cfg_done(cfg);
		st_daemon_write_config(d, more);
		st_daemon_signal(d, SIGHUP);
		assert_int_equal(st_daemon_wait_log(d, "reload failed", 1,
						    10000), 0);
		assert_int_equal(st_daemon_log_count(d, "runs as user nobody "
						     "now: a new privileged "
						     "port or path needs a "
						     "restart"),
				 1);
		st_echo_once(lport, "hello"); /* the running config stays */
		free(more);
	}
	st_daemon_signal(d, SIGTERM);
	assert_int_equal(st_daemon_wait(d, 10000), 0);
	st_daemon_free(d);
	free(status);
	free(yaml);
	st_server_stop(srv);
}

/* Whether the Groups: line of /proc/PID/status holds gid. */
static int in_groups(const char *status, unsigned gid)
{
	const char *p = strstr(status, "\nGroups:");
	char *end;

	if (p == NULL)
		fail_msg("no Groups: line in:\n%s", status);
	for (p += strlen("\nGroups:"); *p != '\n' && *p != '\0'; p = end) {
		unsigned long g = strtoul(p, &end, 10);

		if (end == p)
			break;
		if (g == gid)
			return 1;
	}
	return 0;
}

/*
 * As root: `user:` by name keeps the user's supplementary groups (issue
 * 17: a user in the docker group must still reach docker.sock).  The
 * machine's /etc/group stays as it is: the daemon runs in a mount
 * namespace of its own, where a copy that puts nobody in one more group
 * is mounted over it.
 */
#define SLTEST_GID 48213u
static void test_privilege_groups(void **state)
{
	uint16_t uport, lport = st_free_port();
	struct passwd *pw = getpwnam("nobody");
	/* unshare(1) without --fork and sh's exec: the daemon keeps the pid
	 * we forked.  $0 is the group file, "$@" the daemon's command. */
	const char *mount_it = "mount --bind \"$0\" /etc/group && exec \"$@\"";
	char *etc, *text, *groupfile, *yaml, *status, *out, *want;
	st_server *srv;
	st_daemon *d;
	uid_t uid;
	gid_t gid;
	st_cfg *cfg;

	(void)state;
	if (geteuid() != 0 || pw == NULL)
		skip(); /* needs root, and a user to become */
	uid = pw->pw_uid;
	gid = pw->pw_gid;
	etc = st_read_file("/etc/group");
	if (etc == NULL)
		skip(); /* no group file to add to */
	text = st_fmt("%s%ssltestgrp:x:%u:nobody\n", etc,
		      *etc && etc[strlen(etc) - 1] != '\n' ? "\n" : "",
		      SLTEST_GID);
	groupfile = st_write_tmp("group", text);
	free(text);
	/* No mount namespaces here (a container without CAP_SYS_ADMIN, no
	 * unshare(1)): say so and skip. */
	if (st_run_cmd(&out, "unshare", "-m", "sh", "-c", mount_it, groupfile,
		       "grep", "-q", "^sltestgrp:", "/etc/group", NULL) != 0) {
		print_message("no private mount of /etc/group: %s\n", out);
		free(out);
		unlink(groupfile);
		free(groupfile);
		free(etc);
		skip();
	}
	free(out);
	srv = st_server_start(st_listen_tcp(&uport, 16), ST_ECHO, 0);
	cfg = st_cfg_new();
	st_cfg_set(cfg, "user", "nobody");
	st_cfg_route(cfg, "groups", lport, uport);
	yaml = st_cfg_done(cfg);
	{
		const char *wrap[] = {"unshare", "-m", "sh", "-c",
				      mount_it, groupfile, NULL};

		d = st_daemon_start_wrapped(yaml, wrap);
	}
	assert_int_equal(st_daemon_log_count(d, "running as user nobody"), 1);
	st_echo_once(lport, "hello");
	{
		char *path = st_fmt("/proc/%ld/status", (long)st_daemon_pid(d));

		status = st_read_file(path);
		free(path);
	}
	assert_non_null(status);
	want = st_fmt("Uid:\t%u\t%u\t%u\t%u\n", (unsigned)uid, (unsigned)uid,
		      (unsigned)uid, (unsigned)uid);
	assert_non_null(strstr(status, want));
	free(want);
	want = st_fmt("Gid:\t%u\t%u\t%u\t%u\n", (unsigned)gid, (unsigned)gid,
		      (unsigned)gid, (unsigned)gid);
	assert_non_null(strstr(status, want));
	free(want);
	/* The primary group, and the one the group database adds. */
	if (!in_groups(status, (unsigned)gid) ||
	    !in_groups(status, SLTEST_GID))
		fail_msg("want groups %u and %u in:\n%s", (unsigned)gid,
			 SLTEST_GID, status);
	st_daemon_signal(d, SIGTERM);
	assert_int_equal(st_daemon_wait(d, 10000), 0);
	st_daemon_free(d);
	/* The mount went with the namespace. */
	text = st_read_file("/etc/group");
	assert_non_null(text);
	assert_null(strstr(text, "sltestgrp:"));
	free(text);
	unlink(groupfile);
	free(status);
	free(yaml);
	free(groupfile);
	free(etc);
	st_server_stop(srv);
}
#undef SLTEST_GID

/* access_log with format json: one object per session, every field. */
static void test_access_log_json(void **state)
{
	uint16_t uport, lport = st_free_port();
	st_server *srv = st_server_start(st_listen_tcp(&uport, 16), ST_ECHO, 0);
	char *path = st_fmt("%s/access.json", st_tmpdir()), *yaml, *text, *want;
	st_daemon *d;
	st_sock c;
	uint16_t cport;
	st_cfg *cfg;

	(void)state;
	cfg = st_cfg_new();
	st_cfg_set(cfg, "access_log", "{to: %s, format: json}", path);
	st_cfg_route(cfg, "js", lport, uport);
	yaml = st_cfg_done(cfg);
	d = st_daemon_start(yaml);
	c = st_connect_tcp(lport);
	assert_true(c != ST_BAD_SOCK);
	cport = st_local_port(c);
	st_send_all(c, "hello", 5);
	{
		char buf[5];

		st_recv_all(c, buf, 5, 10000);
	}
	st_close(c);
	wait_log(path, "\"reason\"");
	text = st_read_file(path);
	assert_non_null(text);
	/* One line, one object, fields in order. */
	assert_memory_equal(text, "{\"time\":\"", 9);
	assert_int_equal(text[strlen(text) - 1], '\n');
	assert_int_equal(text[strlen(text) - 2], '}');
	assert_ptr_equal(strchr(text, '\n') + 1, text + strlen(text));
	want = st_fmt("Z\",\"route\":\"js\",\"client\":\"127.0.0.1:%u\","
		      "\"upstream\":\"tcp://127.0.0.1:%u\",\"bytes_in\":5,"
		      "\"bytes_out\":5,\"duration_ms\":",
		      cport, uport);
	assert_non_null(strstr(text, want));
	assert_non_null(strstr(text, ",\"reason\":\"done\"}"));
	/* The session line is not also in the main log. */
	assert_int_equal(st_daemon_log_count(d, "session route=js"), 0);
	st_daemon_free(d);
	free(want);
	free(text);
	free(yaml);
	unlink(path);
	free(path);
	st_server_stop(srv);
}

/*
 * thread_policy: the loop threads run as the config says (Linux: read
 * back from /proc by the threads' names), and a reload changes it in
 * place, serving on.
 */
#ifdef __linux__
/* The sluice-loop-N threads of pid (by their names), into tids[] with
 * their N in idx[]; how many. */
static int loop_threads(pid_t pid, pid_t *tids, unsigned *idx, int max)
{
	char *dir = st_fmt("/proc/%ld/task", (long)pid);
	DIR *dp = opendir(dir);
	struct dirent *de;
	int n = 0;

	assert_non_null(dp);
	while ((de = readdir(dp)) != NULL && n < max) {
		char *path, *comm;
		long tid = strtol(de->d_name, NULL, 10);

		if (tid <= 0)
			continue;
		path = st_fmt("%s/%ld/comm", dir, tid);
		comm = st_read_file(path);
		if (comm != NULL && strncmp(comm, "sluice-loop-", 12) == 0) {
			tids[n] = (pid_t)tid;
			idx[n++] = (unsigned)strtoul(comm + 12, NULL, 10);
		}
		free(comm);
		free(path);
	}
	closedir(dp);
	free(dir);
	return n;
}

/* Policy of each sluice-loop-N thread of pid, into pol[]; how many. */
static int loop_policies(pid_t pid, int *pol, int max)
{
	pid_t tids[8];
	unsigned idx[8];
	int n = loop_threads(pid, tids, idx, max < 8 ? max : 8);

	for (int i = 0; i < n; i++)
		pol[i] = sched_getscheduler(tids[i]);
	return n;
}
#endif

static void test_thread_policy(void **state)
{
#ifdef __linux__
	uint16_t uport, lport = st_free_port();
	st_server *srv = st_server_start(st_listen_tcp(&uport, 16), ST_ECHO, 0);
	st_cfg *cfg = st_cfg_new();
	char *yaml, *normal;
	st_daemon *d;
	int pol[4];

	(void)state;
	st_cfg_set(cfg, "threads", "2");
	st_cfg_route(cfg, "tp", lport, uport);
	yaml = st_cfg_yaml(cfg); /* the default policy */
	st_cfg_set(cfg, "thread_policy", "normal");
	normal = st_cfg_done(cfg);
	d = st_daemon_start(normal);
	st_echo_once(lport, "hello");
	assert_int_equal(loop_policies(st_daemon_pid(d), pol, 4), 2);
	assert_int_equal(pol[0], SCHED_OTHER);
	assert_int_equal(pol[1], SCHED_OTHER);

	/* The default, batch, by a reload. */
	st_daemon_write_config(d, yaml);
	st_daemon_signal(d, SIGHUP);
	assert_int_equal(st_daemon_wait_log(d, "reloaded ", 1, 10000), 0);
	assert_int_equal(loop_policies(st_daemon_pid(d), pol, 4), 2);
	assert_int_equal(pol[0], SCHED_BATCH);
	assert_int_equal(pol[1], SCHED_BATCH);
	st_echo_once(lport, "hello");
	assert_int_equal(st_daemon_log_count(d, "thread_policy"), 0);
	st_daemon_signal(d, SIGTERM);
	assert_int_equal(st_daemon_wait(d, 10000), 0);
	st_daemon_free(d);
	free(normal);
	free(yaml);
	st_server_stop(srv);
#else
	(void)state;
	skip(); /* SCHED_BATCH is Linux's */
#endif
}


/* ---- systemd socket activation ----------------------------------------- */

/*
 * systemd-socket-activate(1) (package systemd) does for a test what
 * systemd does for a .socket unit: it binds each -l address (a path is a
 * Unix socket; -d makes datagram sockets), and execs the command in its
 * own process with LISTEN_FDS, LISTEN_PID (so, the command's pid) and
 * LISTEN_FDNAMES (--fdname, ':' between names).  As a socket unit starts
 * its service, it execs only once a first client comes: a knock thread is
 * that client, and its connection, waiting in the backlog, is served once
 * sluice runs.
 */
static const char *activate(void)
{
	static int have = -1;

	if (have < 0)
		have = system("command -v systemd-socket-activate "
			      ">/dev/null 2>&1") == 0;
	if (!have)
		fprintf(stderr, "systemd-socket-activate not found "
				"(package systemd): skipped\n");
	return have ? "systemd-socket-activate" : NULL;
}

#define SD_NEEDED()                                                            \
	do {                                                                   \
		ST_NATIVE_ONLY();                                              \
		if (activate() == NULL)                                        \
			skip();                                                \
	} while (0)

struct knock {
	pthread_t t;
	uint16_t port;
	int udp; /* datagrams until stopped, instead of one connect */
	atomic_int stop;
	st_sock s;
};

static void *knock_run(void *arg)
{
	struct knock *k = arg;
	struct sockaddr_in sin = {.sin_family = AF_INET};
	int fd;

	if (!k->udp) {
		k->s = st_connect_tcp_retry(k->port, ST_WAIT_MS);
		return NULL;
	}
	sin.sin_port = htons(k->port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_DGRAM, 0);
	while (fd >= 0 && !atomic_load(&k->stop)) {
		(void)sendto(fd, "x", 1, 0, (struct sockaddr *)&sin, sizeof sin);
		st_sleep_ms(20);
	}
	if (fd >= 0)
		close(fd);
	return NULL;
}

static void knock_start(struct knock *k, uint16_t port, int udp)
{
	memset(k, 0, sizeof *k);
	k->port = port;
	k->udp = udp;
	k->s = ST_BAD_SOCK;
	atomic_init(&k->stop, 0);
	assert_int_equal(pthread_create(&k->t, NULL, knock_run, k), 0);
}

/* The knocking connection (TCP), once it is made. */
static st_sock knock_end(struct knock *k)
{
	atomic_store(&k->stop, 1);
	pthread_join(k->t, NULL);
	return k->s;
}

/*
 * `systemd-socket-activate -l 127.0.0.1:PORT ... -- sluice -d -c FILE`
 * (args: the words after the command, up to "--"), knocked at kport; the
 * daemon once it serves, and the knock's connection in *knocked.
 */
static st_daemon *sd_start(const char *yaml, const char *const *args,
			   uint16_t kport, st_sock *knocked)
{
	const char *wrap[20];
	struct knock k;
	st_daemon *d;
	size_t n = 0;

	wrap[n++] = activate();
	for (; *args != NULL && n < 18; args++)
		wrap[n++] = *args;
	wrap[n++] = "--";
	wrap[n] = NULL;
	knock_start(&k, kport, 0);
	d = st_daemon_start_wrapped(yaml, wrap);
	*knocked = knock_end(&k);
	assert_true(*knocked != ST_BAD_SOCK);
	return d;
}

/*
 * The same for a start that must fail (or a sluice -t): the words after
 * the command, up to "--", then shell's words if any (a wrapper that
 * execs "$0" "$@"), then sluice's; kport knocked (udp: with datagrams).
 * The exit status, the output in *out.
 */
static int sd_run(char **out, const char *const *args, const char *sluice_opt,
		  const char *yaml, uint16_t kport, int udp, const char *shell)
{
	char *conf = st_write_tmp("sd-run.yaml", yaml);
	const char *argv[24];
	struct knock k;
	size_t n = 0;
	int rc;

	argv[n++] = activate();
	for (; *args != NULL && n < 14; args++)
		argv[n++] = *args;
	argv[n++] = "--";
	if (shell != NULL) {
		argv[n++] = "sh";
		argv[n++] = "-c";
		argv[n++] = shell;
	}
	argv[n++] = getenv("SLUICE_BIN");
	argv[n++] = sluice_opt;
	argv[n++] = "-c";
	argv[n++] = conf;
	argv[n] = NULL;
	assert_non_null(argv[n - 4]);
	knock_start(&k, kport, udp);
	rc = st_run_argv(out, argv);
	st_close(knock_end(&k));
	free(conf);
	return rc;
}

/*
 * One test's sockets and the rest: an echo upstream; ntcp TCP addresses on
 * free ports, then a Unix socket at path (if any), as -l options of
 * systemd-socket-activate in args, with --fdname=names (if any) and a
 * first word of its own (opt: -d for datagram sockets, or NULL); a config
 * to fill with sd_route().
 */
struct sd_env {
	st_server *srv;
	uint16_t uport, port[2];
	char *listen[2], *names;
	const char *args[10];
	st_cfg *cfg;
};

static void sd_env(struct sd_env *e, const char *opt, unsigned ntcp,
		   const char *path, const char *names)
{
	size_t n = 0;

	memset(e, 0, sizeof *e);
	e->srv = st_server_start(st_listen_tcp(&e->uport, 16), ST_ECHO, 0);
	if (opt != NULL)
		e->args[n++] = opt;
	for (unsigned i = 0; i < ntcp && i < 2; i++) {
		e->port[i] = st_free_port();
		e->listen[i] = st_fmt("127.0.0.1:%u", e->port[i]);
		e->args[n++] = "-l";
		e->args[n++] = e->listen[i];
	}
	if (path != NULL) {
		e->args[n++] = "-l";
		e->args[n++] = path;
	}
	if (names != NULL) {
		e->names = st_fmt("--fdname=%s", names);
		e->args[n++] = e->names;
	}
	e->args[n] = NULL;
	e->cfg = st_cfg_new();
}

/* A route of e's config: listen on listen, forward to the echo server. */
static void sd_route(struct sd_env *e, const char *name, const char *listen)
{
	st_cfg_route(e->cfg, name, 0, e->uport);
	st_cfg_listen(e->cfg, "%s", listen);
}

/* sluice with e's config under systemd-socket-activate, knocked at the
 * first TCP port; its knocking connection in *k, served. */
static st_daemon *sd_env_start(struct sd_env *e, st_sock *k)
{
	char *yaml = st_cfg_yaml(e->cfg);
	st_daemon *d = sd_start(yaml, e->args, e->port[0], k);

	free(yaml);
	return d;
}

static void sd_env_free(struct sd_env *e)
{
	for (unsigned i = 0; i < 2; i++)
		free(e->listen[i]);
	free(e->names);
	st_cfg_free(e->cfg);
	st_server_stop(e->srv);
}

/* The exit status and output of sluice OPT -c (e's config) under
 * systemd-socket-activate, knocked (udp: with datagrams); shell: see
 * sd_run(). */
static int sd_env_run(struct sd_env *e, char **out, const char *opt, int udp,
		      const char *shell)
{
	char *yaml = st_cfg_yaml(e->cfg);
	int rc = sd_run(out, e->args, opt, yaml, e->port[0], udp, shell);

	free(yaml);
	return rc;
}

/* sluice with one route, web, on systemd:web, among ntcp sockets named
 * by names; the knock is served. */
static st_daemon *sd_web(struct sd_env *e, unsigned ntcp, const char *names)
{
	st_daemon *d;
	st_sock k;

	sd_env(e, NULL, ntcp, NULL, names);
	sd_route(e, "web", "systemd:web");
	d = sd_env_start(e, &k);
	st_echo(k, "knocked first");
	st_close(k);
	return d;
}

/*
 * systemd:NAME: the socket named so is served, and it is the one systemd
 * bound (the client that knocked before sluice ran is served too).  The
 * other socket passed, which no route takes, is a warning naming it.
 */
static void test_sd_by_name(void **state)
{
	struct sd_env e;
	st_daemon *d;

	(void)state;
	SD_NEEDED();
	d = sd_web(&e, 2, "web:spare");
	st_echo_once(e.port[0], "hello");
	assert_int_equal(st_daemon_log_count(d, "route web: listening on "
					     "systemd:web"), 1);
	assert_int_equal(st_daemon_log_count(d, "warn: systemd passed 1 "
					     "socket(s) that no listener "
					     "uses: spare (position 1)"),
			 1);
	st_daemon_stop(d);
	sd_env_free(&e);
}

/* systemd:N: by position, 0-based, whatever the names (all "unknown"
 * here, without --fdname); a Unix socket is served as one. */
static void test_sd_by_position(void **state)
{
	char *path = st_fmt("%s/sd-pos.sock", st_tmpdir());
	struct sd_env e;
	st_daemon *d;
	st_sock k, u;

	(void)state;
	SD_NEEDED();
	sd_env(&e, NULL, 1, path, NULL);
	sd_route(&e, "second", "systemd:1");
	sd_route(&e, "first", "systemd:0");
	d = sd_env_start(&e, &k);
	st_echo(k, "tcp");
	st_close(k);
	u = st_connect_unix(path);
	assert_true(u != ST_BAD_SOCK);
	st_echo(u, "unix");
	st_close(u);
	st_wait_log(d, "session route=second", 1);
	st_wait_log(d, "session route=first", 1);
	assert_int_equal(st_daemon_log_count(d, "no listener uses"), 0);
	st_daemon_stop(d);
	/* systemd's socket, not ours: sluice leaves its file alone. */
	assert_int_equal(access(path, F_OK), 0);
	unlink(path);
	free(path);
	sd_env_free(&e);
}

/* Two names, each its route, whatever the order of the routes. */
static void test_sd_two_names(void **state)
{
	struct sd_env e;
	st_daemon *d;
	st_sock k;

	(void)state;
	SD_NEEDED();
	sd_env(&e, NULL, 2, NULL, "one:two");
	sd_route(&e, "r2", "systemd:two");
	sd_route(&e, "r1", "systemd:one");
	d = sd_env_start(&e, &k);
	st_echo(k, "one");
	st_close(k);
	st_wait_log(d, "session route=r1", 1);
	st_echo_once(e.port[1], "two");
	st_wait_log(d, "session route=r2", 1);
	assert_int_equal(st_daemon_log_count(d, "session route=r1"), 1);
	st_daemon_stop(d);
	sd_env_free(&e);
}

/*
 * Reloads keep the inherited socket: one that keeps the route serves on;
 * one that drops it closes sluice's listener but not the socket (a client
 * still connects, into its backlog); one that brings the route back
 * serves that waiting client.  Reopened, the address would be gone: only
 * systemd can bind it again.
 */
static void test_sd_reload(void **state)
{
	struct sd_env e;
	char *with, *without, buf[6];
	st_daemon *d;
	st_sock k, waiting;

	(void)state;
	SD_NEEDED();
	d = sd_web(&e, 1, "web");
	with = st_cfg_yaml(e.cfg);
	k = st_echo_open(e.port[0], "before");
	st_cfg_free(e.cfg);
	e.cfg = st_cfg_new();
	st_cfg_route(e.cfg, "other", st_free_port(), e.uport);
	without = st_cfg_yaml(e.cfg);

	st_daemon_signal(d, SIGHUP);
	st_wait_log(d, "reloaded ", 1);
	st_echo(k, "same session");
	st_close(k);
	st_echo_once(e.port[0], "kept");
	assert_int_equal(st_daemon_log_count(d, "listener systemd:web closed"),
			 0);

	st_daemon_write_config(d, without);
	st_daemon_signal(d, SIGHUP);
	st_wait_log(d, "reloaded ", 2);
	st_wait_log(d, "listener systemd:web closed", 1);
	waiting = st_connect_tcp(e.port[0]);
	assert_true(waiting != ST_BAD_SOCK); /* still listening */
	st_send_all(waiting, "waited", 6);

	st_daemon_write_config(d, with);
	st_daemon_signal(d, SIGHUP);
	st_wait_log(d, "reloaded ", 3);
	st_recv_all(waiting, buf, sizeof buf, ST_STALL_MS);
	assert_memory_equal(buf, "waited", 6);
	st_close(waiting);
	st_echo_once(e.port[0], "back");
	assert_int_equal(st_daemon_log_count(d, "reload failed"), 0);
	st_daemon_stop(d);
	free(with);
	free(without);
	sd_env_free(&e);
}

/* The exit status is want_rc and out holds want (and warning, if not
 * NULL), or the test fails with all of it.  out is freed. */
static void sd_expect(int rc, char *out, int want_rc, const char *warning,
		      const char *want)
{
	if (rc != want_rc || strstr(out, want) == NULL ||
	    (warning != NULL && strstr(out, warning) == NULL))
		fail_msg("exit status %d, want %d and '%s':\n%s", rc, want_rc,
			 want, out);
	free(out);
}

/* A name systemd did not pass: the start fails, naming it and the names
 * there are; a datagram socket is refused as one. */
static void test_sd_missing(void **state)
{
	struct sd_env e, dg;
	char *out;
	int rc;

	(void)state;
	SD_NEEDED();
	sd_env(&e, NULL, 1, NULL, "other");
	sd_route(&e, "web", "systemd:web");
	rc = sd_env_run(&e, &out, "-d", 0, NULL);
	sd_expect(rc, out, 1, NULL, "route web: cannot listen on systemd:web: "
			      "systemd:web: systemd passed no socket named "
			      "'web' (FileDescriptorName=; passed: other)");
	sd_env(&dg, "-d", 1, NULL, "web");
	sd_route(&dg, "web", "systemd:web");
	rc = sd_env_run(&dg, &out, "-d", 1, NULL);
	sd_expect(rc, out, 1, NULL, "systemd:web: descriptor 3 is not a stream "
			      "socket (expected ListenStream= in the .socket "
			      "unit)");
	sd_env_free(&dg);
	sd_env_free(&e);
}

/* LISTEN_PID of another process: the sockets are not ours to take. */
static void test_sd_pid_mismatch(void **state)
{
	struct sd_env e;
	char *out;
	int rc;

	(void)state;
	SD_NEEDED();
	sd_env(&e, NULL, 1, NULL, "web");
	sd_route(&e, "web", "systemd:web");
	rc = sd_env_run(&e, &out, "-d", 0, "LISTEN_PID=1 exec \"$0\" \"$@\"");
	sd_expect(rc, out, 1, NULL, "systemd:web: no socket passed by systemd "
			      "(LISTEN_PID=1 is not this process)");
	sd_env_free(&e);
}

/* sluice -t: the names are checked under systemd; elsewhere a warning
 * says they can only be checked there.  Neither is an error. */
static void test_sd_check(void **state)
{
	struct sd_env good, bad;
	char *yaml, *conf, *out;
	int rc;

	(void)state;
	SD_NEEDED();
	sd_env(&good, NULL, 1, NULL, "web");
	sd_route(&good, "web", "systemd:web");
	sd_env(&bad, NULL, 1, NULL, "other");
	sd_route(&bad, "web", "systemd:web");
	yaml = st_cfg_yaml(good.cfg);
	conf = st_write_tmp("sd-check.yaml", yaml);
	rc = st_run_sluice(&out, "-t", "-c", conf, NULL);
	sd_expect(rc, out, 0, "warning: ",
		  "systemd:web: no socket passed by systemd (LISTEN_FDS is "
		  "not set): a systemd: listener can only be opened, and "
		  "checked, when systemd starts sluice");
	rc = sd_env_run(&bad, &out, "-t", 0, NULL);
	sd_expect(rc, out, 0, "warning: ",
		  "systemd passed no socket named 'web'");
	rc = sd_env_run(&good, &out, "-t", 0, NULL);
	if (strstr(out, "warning") != NULL)
		fail_msg("a warning:\n%s", out);
	sd_expect(rc, out, 0, NULL, "configuration OK");
	free(conf);
	free(yaml);
	sd_env_free(&bad);
	sd_env_free(&good);
}

/* ---- systemd's watchdog -------------------------------------------------- */

/* A datagram socket of ours at path, as NOTIFY_SOCKET. */
static int notify_socket(const char *path)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_DGRAM, 0);

	assert_true(fd >= 0);
	assert_true(strlen(path) < sizeof sun.sun_path);
	strcpy(sun.sun_path, path);
	unlink(path);
	assert_int_equal(bind(fd, (struct sockaddr *)&sun, sizeof sun), 0);
	return fd;
}

/* Datagrams waiting on fd that say WATCHDOG=1 (read, so gone). */
static unsigned drain_pings(int fd)
{
	char buf[256];
	ssize_t n;
	unsigned pings = 0;

	while ((n = recv(fd, buf, sizeof buf - 1, MSG_DONTWAIT)) >= 0) {
		buf[n] = '\0';
		pings += strcmp(buf, "WATCHDOG=1") == 0;
	}
	return pings;
}

/* Wait (ST_WAIT_MS at most) for n WATCHDOG=1 datagrams on fd. */
static void wait_pings(int fd, unsigned n)
{
	uint64_t end = st_now_ms() + ST_WAIT_MS;
	unsigned got = 0;

	while ((got += drain_pings(fd)) < n) {
		if (st_now_ms() > end)
			fail_msg("%u WATCHDOG=1 of %u", got, n);
		st_sleep_ms(10);
	}
}

/* The daemon of the watchdog tests: two loops, NOTIFY_SOCKET at path,
 * WATCHDOG_USEC=200000 and WATCHDOG_PID as given (NULL: unset). */
static st_daemon *watched_daemon(const char *path, const char *wpid,
				 uint16_t *port, st_server **srv)
{
	uint16_t uport;
	st_cfg *cfg = st_cfg_new();
	st_daemon *d;
	char *yaml;

	*port = st_free_port();
	*srv = st_server_start(st_listen_tcp(&uport, 16), ST_ECHO, 0);
	st_cfg_set(cfg, "threads", "2");
	st_cfg_route(cfg, "wd", *port, uport);
	yaml = st_cfg_done(cfg);
	assert_int_equal(setenv("NOTIFY_SOCKET", path, 1), 0);
	assert_int_equal(setenv("WATCHDOG_USEC", "200000", 1), 0);
	if (wpid != NULL)
		assert_int_equal(setenv("WATCHDOG_PID", wpid, 1), 0);
	d = st_daemon_start(yaml);
	unsetenv("NOTIFY_SOCKET");
	unsetenv("WATCHDOG_USEC");
	unsetenv("WATCHDOG_PID");
	free(yaml);
	return d;
}

/*
 * WATCHDOG_USEC=200000: WATCHDOG=1 every 100 ms while every loop answers.
 * One loop wedged stops them; it runs again, they come again.
 *
 * The seam: a loop is wedged from outside, by stopping its thread alone
 * under ptrace (PTRACE_SEIZE and PTRACE_INTERRUPT on that thread's id;
 * the other loops, the control thread and the process run on), as a
 * loop stuck in a callback would be.  The daemon carries no test code:
 * no variable, no build of its own, nothing an operator could set.
 */
static void test_watchdog(void **state)
{
#ifdef __linux__
	char *path = st_fmt("%s/wd-notify.sock", st_tmpdir());
	const char *wedged = "watchdog: loop 1 has not answered for 100 ms";
	int fd = notify_socket(path), st, n;
	unsigned late, late1;
	pid_t tids[4], tid = 0;
	unsigned idx[4];
	st_server *srv;
	uint16_t port;
	st_daemon *d;

	(void)state;
	ST_NATIVE_ONLY();
	d = watched_daemon(path, NULL, &port, &srv);
	wait_pings(fd, 3);
	st_wait_log(d, "watchdog: every 100 ms, when all 2 loop(s) answer", 1);
	st_echo_once(port, "alive");

	n = loop_threads(st_daemon_pid(d), tids, idx, 4);
	assert_int_equal(n, 2);
	for (int i = 0; i < n; i++)
		if (idx[i] == 1)
			tid = tids[i];
	assert_true(tid > 0);
	if (ptrace(PTRACE_SEIZE, tid, NULL, NULL) < 0) {
		fprintf(stderr, "ptrace: %s: skipped\n", strerror(errno));
		st_daemon_stop(d);
		close(fd);
		st_server_stop(srv);
		skip();
	}
	/* A loop slow for a round on a busy machine costs a ping and a
	 * line already: count from here. */
	late = st_daemon_log_count(d, "has not answered");
	late1 = st_daemon_log_count(d, wedged);
	assert_int_equal(ptrace(PTRACE_INTERRUPT, tid, NULL, NULL), 0);
	assert_int_equal(waitpid(tid, &st, __WALL), tid);
	assert_true(WIFSTOPPED(st));
	/* Pings sent before the control loop saw the silence are queued
	 * before this line is written; none may follow it. */
	st_wait_log(d, wedged, late1 + 1);
	drain_pings(fd);
	st_sleep_ms(500); /* five rounds */
	assert_int_equal(drain_pings(fd), 0);
	assert_int_equal(st_daemon_log_count(d, "has not answered"), late + 1);

	assert_int_equal(ptrace(PTRACE_DETACH, tid, NULL, NULL), 0);
	wait_pings(fd, 2);
	st_wait_log(d, "watchdog: every loop answers again", 1);
	st_echo_once(port, "again");
	st_daemon_stop(d);
	close(fd);
	unlink(path);
	free(path);
	st_server_stop(srv);
#else
	(void)state;
	skip(); /* ptrace of one thread, /proc: Linux */
#endif
}

/* WATCHDOG_PID of another process: that process is watched, not us. */
static void test_watchdog_pid(void **state)
{
	char *path = st_fmt("%s/wd-pid.sock", st_tmpdir());
	int fd = notify_socket(path);
	st_server *srv;
	uint16_t port;
	st_daemon *d;

	(void)state;
	ST_NATIVE_ONLY();
	d = watched_daemon(path, "1", &port, &srv);
	st_echo_once(port, "served");
	st_daemon_signal(d, SIGTERM);
	assert_int_equal(st_daemon_wait(d, ST_WAIT_MS), 0);
	assert_int_equal(drain_pings(fd), 0);
	assert_int_equal(st_daemon_log_count(d, "watchdog"), 0);
	st_daemon_free(d);
	close(fd);
	unlink(path);
	free(path);
	st_server_stop(srv);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		DAEMON_TEST(test_daemonize_pidfile),
		DAEMON_TEST(test_pidfile_held),
		DAEMON_TEST(test_pidfile_symlink),
		DAEMON_TEST(test_pidfile_hardlink),
		DAEMON_TEST(test_pidfile_fifo),
		DAEMON_TEST(test_pidfile_replaced),
		DAEMON_TEST(test_pidfile_relative),
		DAEMON_TEST(test_startup_error_reaches_terminal),
		DAEMON_TEST(test_log_reopen),
		DAEMON_TEST(test_sd_notify),
		DAEMON_TEST(test_privilege_drop),
		DAEMON_TEST(test_privilege_groups),
		DAEMON_TEST(test_access_log_json),
		DAEMON_TEST(test_thread_policy),
		DAEMON_TEST(test_sd_by_name),
		DAEMON_TEST(test_sd_by_position),
		DAEMON_TEST(test_sd_two_names),
		DAEMON_TEST(test_sd_reload),
		DAEMON_TEST(test_sd_missing),
		DAEMON_TEST(test_sd_pid_mismatch),
		DAEMON_TEST(test_sd_check),
		DAEMON_TEST(test_watchdog),
		DAEMON_TEST(test_watchdog_pid),
	};
	int rc;

	st_init();
	atexit(kill_started);
	/* SL_TEST_FILTER=test_sd_* runs the matching tests only. */
	if (getenv("SL_TEST_FILTER") != NULL)
		cmocka_set_test_filter(getenv("SL_TEST_FILTER"));
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	st_cleanup();
	return rc;
}
