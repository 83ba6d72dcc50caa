/*
 * POSIX control events: the signal handlers write the signal number into a
 * non-blocking self-pipe watched by one loop, so all the work happens on a
 * loop thread and the handlers stay async-signal-safe.  Which thread the
 * kernel picks to run a handler does not matter.
 */
#include "proc.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "path.h"

static int ctl_pipe[2] = {-1, -1};
static sl_io ctl_io;
static sl_ctl_cb ctl_cb;
static void *ctl_data;

static const int ctl_signals[] = {SIGTERM, SIGINT, SIGHUP, SIGUSR1};

static void on_signal(int sig)
{
	int saved = errno;
	unsigned char b = (unsigned char)sig;
	/* A full pipe already holds a wake-up: dropping this byte is fine. */
	if (write(ctl_pipe[1], &b, 1) < 0) {
	}
	errno = saved;
}

static void on_ctl_readable(sl_io *io, unsigned events)
{
	unsigned char buf[64];
	ssize_t n;

	(void)events;
	while ((n = read(io->fd, buf, sizeof buf)) > 0) {
		for (ssize_t i = 0; i < n; i++) {
			switch (buf[i]) {
			case SIGTERM:
			case SIGINT:
				ctl_cb(SL_CTL_STOP, ctl_data);
				break;
			case SIGHUP:
				ctl_cb(SL_CTL_RELOAD, ctl_data);
				break;
			case SIGUSR1:
				ctl_cb(SL_CTL_REOPEN, ctl_data);
				break;
			}
			if (ctl_pipe[0] < 0)
				return; /* sl_ctl_stop() from the callback */
		}
	}
}

static int set_flags(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -errno;
	if (fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
		return -errno;
	return 0;
}

int sl_ctl_start(sl_loop *loop, sl_ctl_cb cb, void *data)
{
	struct sigaction sa;
	int r;

	if (ctl_pipe[0] >= 0)
		return -EBUSY;
	if (pipe(ctl_pipe) < 0)
		return -errno;
	if ((r = set_flags(ctl_pipe[0])) < 0 ||
	    (r = set_flags(ctl_pipe[1])) < 0)
		goto fail;
	ctl_cb = cb;
	ctl_data = data;
	sl_io_init(loop, &ctl_io, ctl_pipe[0], on_ctl_readable, NULL);
	if ((r = sl_io_set(&ctl_io, SL_IO_READ)) < 0)
		goto fail;

	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < sizeof ctl_signals / sizeof ctl_signals[0]; i++)
		sigaction(ctl_signals[i], &sa, NULL);
	return 0;
fail:
	close(ctl_pipe[0]);
	close(ctl_pipe[1]);
	ctl_pipe[0] = ctl_pipe[1] = -1;
	return r;
}

void sl_ctl_stop(void)
{
	struct sigaction sa;

	if (ctl_pipe[0] < 0)
		return;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = SIG_DFL;
	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < sizeof ctl_signals / sizeof ctl_signals[0]; i++)
		sigaction(ctl_signals[i], &sa, NULL);
	sl_io_remove(&ctl_io);
	close(ctl_pipe[0]);
	close(ctl_pipe[1]);
	ctl_pipe[0] = ctl_pipe[1] = -1;
}

static int ready_fd = -1;

static int null_fd(int target, int flags)
{
	int fd = open("/dev/null", flags);

	if (fd < 0)
		return -errno;
	if (fd != target) {
		if (dup2(fd, target) < 0) {
			int e = errno;

			close(fd);
			return -e;
		}
		close(fd);
	}
	return 0;
}

int sl_daemon_start(void)
{
	int p[2], r;
	pid_t pid;

	if (pipe(p) < 0)
		return -errno;
	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		r = -errno;
		close(p[0]);
		close(p[1]);
		return r;
	}
	if (pid > 0) {
		/* The command: wait for the daemon's word, or its end. */
		char st = 1;
		ssize_t n;

		close(p[1]);
		do
			n = read(p[0], &st, 1);
		while (n < 0 && errno == EINTR);
		_exit(n == 1 && st == 0 ? 0 : 1);
	}
	close(p[0]);
	(void)fcntl(p[1], F_SETFD, FD_CLOEXEC);
	if (setsid() < 0)
		return -errno;
	/* Fork again so the daemon can never reacquire a terminal; the
	 * middle process exits at once, the pipe goes with the daemon. */
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid > 0)
		_exit(0);
	if (chdir("/") < 0)
		return -errno;
	if ((r = null_fd(0, O_RDONLY)) < 0)
		return r;
	ready_fd = p[1];
	return 0;
}

void sl_daemon_ready(void)
{
	ssize_t n;

	if (ready_fd < 0)
		return;
	(void)null_fd(1, O_WRONLY);
	(void)null_fd(2, O_WRONLY);
	do
		n = write(ready_fd, "", 1);
	while (n < 0 && errno == EINTR);
	close(ready_fd);
	ready_fd = -1;
}

static int pid_fd = -1;
static char *pid_path; /* absolute, links not resolved */
static dev_t pid_dev;  /* the file we created there */
static ino_t pid_ino;

/*
 * Remove path only while it still names the file dev/ino: whoever may
 * write its directory can have put another file, or a link, in its place
 * since.  What is swapped in between lstat() and unlink() is removed, but
 * only that name: unlink() never reaches a link's target.
 */
static void unlink_if_same(const char *path, dev_t dev, ino_t ino)
{
	struct stat st;

	if (lstat(path, &st) == 0 && st.st_dev == dev && st.st_ino == ino)
		(void)unlink(path);
}

int sl_pidfile_create(const char *path, char *err, size_t errlen)
{
	struct flock fl;
	struct stat st;
	char buf[32], *abs;
	int fd, n;

	if ((abs = sl_path_join_cwd(path)) == NULL) {
		snprintf(err, errlen, "pid file %s: %s", path, strerror(errno));
		return -1;
	}
	/*
	 * Root writes this file, often in a directory its service user may
	 * write (/run/sluice).  A link planted there would have us truncate
	 * and write the file it leads to; a second name (hard link) the
	 * same.  O_NOFOLLOW covers the last component only: the directories
	 * above are the operator's choice.
	 */
	fd = open(abs, O_RDWR | O_CREAT | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC,
		  0644);
	if (fd < 0) {
		int e = errno;

		/* O_NOFOLLOW fails with ELOOP (Linux, macOS), EMLINK
		 * (FreeBSD) or EFTYPE (NetBSD): ask lstat() instead. */
		if (lstat(abs, &st) == 0 && S_ISLNK(st.st_mode))
			snprintf(err, errlen,
				 "pid file %s: is a symbolic link; not "
				 "following it",
				 path);
		else
			snprintf(err, errlen, "pid file %s: %s", path,
				 strerror(e));
		goto fail;
	}
	if (fstat(fd, &st) < 0) {
		snprintf(err, errlen, "pid file %s: %s", path, strerror(errno));
		goto fail;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "pid file %s: not a regular file", path);
		goto fail;
	}
	if (st.st_nlink != 1) {
		snprintf(err, errlen,
			 "pid file %s: has %lu links; a pid file must have "
			 "one name only",
			 path, (unsigned long)st.st_nlink);
		goto fail;
	}
	memset(&fl, 0, sizeof fl);
	fl.l_type = F_WRLCK;
	fl.l_whence = SEEK_SET;
	if (fcntl(fd, F_SETLK, &fl) < 0) {
		int e = errno;
		long other = 0;

		if ((e == EAGAIN || e == EACCES) && fcntl(fd, F_GETLK, &fl) == 0)
			other = (long)fl.l_pid;
		if (e == EAGAIN || e == EACCES)
			snprintf(err, errlen,
				 "pid file %s is locked by another sluice "
				 "(pid %ld): is it running already?",
				 path, other);
		else
			snprintf(err, errlen, "pid file %s: lock: %s", path,
				 strerror(e));
		goto fail;
	}
	n = snprintf(buf, sizeof buf, "%ld\n", (long)getpid());
	if (ftruncate(fd, 0) < 0 || write(fd, buf, (size_t)n) != n) {
		snprintf(err, errlen, "pid file %s: %s", path, strerror(errno));
		unlink_if_same(abs, st.st_dev, st.st_ino);
		goto fail;
	}
	pid_fd = fd;
	free(pid_path);
	pid_path = abs;
	pid_dev = st.st_dev;
	pid_ino = st.st_ino;
	return 0;
fail:
	if (fd >= 0)
		close(fd);
	free(abs);
	return -1;
}

void sl_pidfile_remove(void)
{
	if (pid_fd < 0)
		return;
	unlink_if_same(pid_path, pid_dev, pid_ino);
	close(pid_fd);
	pid_fd = -1;
	free(pid_path);
	pid_path = NULL;
}

void sl_notify(const char *state)
{
	const char *name = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sun;
	socklen_t len;
	size_t n;
	int fd;

	if (name == NULL || (name[0] != '/' && name[0] != '@'))
		return;
	n = strlen(name);
	if (n >= sizeof sun.sun_path)
		return;
	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	memcpy(sun.sun_path, name, n);
	if (name[0] == '@')
		sun.sun_path[0] = '\0'; /* abstract (Linux) */
	len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
	fd = socket(AF_UNIX, SOCK_DGRAM, 0);
	if (fd < 0)
		return;
	(void)fcntl(fd, F_SETFD, FD_CLOEXEC);
	/* A lost notification is not worth failing for: systemd times out
	 * and says so. */
	(void)sendto(fd, state, strlen(state), 0, (struct sockaddr *)&sun, len);
	close(fd);
}

/* A decimal number, the whole of s (no sign, no spaces); 0 if not. */
static unsigned long long env_number(const char *s)
{
	unsigned long long v = 0;

	if (s == NULL || *s == '\0')
		return 0;
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '9' || v > ULLONG_MAX / 10 - 1)
			return 0;
		v = v * 10 + (unsigned long long)(*s - '0');
	}
	return v;
}

unsigned long long sl_watchdog_usec(void)
{
	const char *spid = getenv("WATCHDOG_PID");
	unsigned long long usec = env_number(getenv("WATCHDOG_USEC"));

	/* A pid that is not ours: the watchdog is another process's (a
	 * daemon forked from the process systemd started is not the one
	 * it watches). */
	if (spid != NULL && env_number(spid) != (unsigned long long)getpid())
		usec = 0;
	unsetenv("WATCHDOG_USEC");
	unsetenv("WATCHDOG_PID");
	return usec;
}

unsigned long sl_fd_limit_raise(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return 0;
	if (rl.rlim_cur < rl.rlim_max) {
		rlim_t old = rl.rlim_cur;

		rl.rlim_cur = rl.rlim_max;
		/* macOS refuses more than OPEN_MAX whatever the hard limit */
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
			rl.rlim_cur = old;
	}
	if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > (1ul << 24))
		return 1ul << 24;
	return (unsigned long)rl.rlim_cur;
}

/* The arguments are the bytes the command was given: names as typed. */
int sl_utf8_argv(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	return 0;
}

int sl_drop_privileges(const char *user, const char *group, char *err,
		       size_t errlen)
{
	struct passwd *pw;
	struct group *gr;
	char *name = NULL, *end;
	uid_t uid;
	gid_t gid;
	unsigned long n;
	int r = -1;

	errno = 0;
	pw = getpwnam(user);
	if (pw != NULL) {
		uid = pw->pw_uid;
		gid = pw->pw_gid;
		/* getgrnam() below may reuse getpwnam()'s storage. */
		if ((name = strdup(pw->pw_name)) == NULL) {
			snprintf(err, errlen, "user %s: %s", user,
				 strerror(errno));
			return -1;
		}
	} else {
		n = strtoul(user, &end, 10);
		if (*user == '\0' || *end != '\0') {
			snprintf(err, errlen, "user %s: no such user", user);
			return -1;
		}
		uid = (uid_t)n;
		gid = (gid_t)n;
	}
	if (group != NULL) {
		gr = getgrnam(group);
		if (gr != NULL) {
			gid = gr->gr_gid;
		} else {
			n = strtoul(group, &end, 10);
			if (*group == '\0' || *end != '\0') {
				snprintf(err, errlen, "group %s: no such group",
					 group);
				goto out;
			}
			gid = (gid_t)n;
		}
	}
	if (geteuid() != 0) {
		if (geteuid() == uid && getegid() == gid) {
			r = 0;
			goto out;
		}
		snprintf(err, errlen,
			 "user %s: only root can switch to another user", user);
		goto out;
	}
	/*
	 * A user known by name keeps the supplementary groups the group
	 * database gives it, besides gid: its access is often a group's
	 * (docker for docker.sock).  A bare number has no entry to ask:
	 * gid alone.
	 */
	if ((name != NULL ? initgroups(name, gid) : setgroups(1, &gid)) < 0 ||
	    setgid(gid) < 0 || setuid(uid) < 0) {
		snprintf(err, errlen, "cannot become user %s: %s", user,
			 strerror(errno));
		goto out;
	}
	if (uid != 0 && (setuid(0) == 0 || seteuid(0) == 0)) {
		snprintf(err, errlen, "user %s: root could be regained", user);
		goto out;
	}
	r = 0;
out:
	free(name);
	return r;
}

/* ---- Windows service: not on POSIX ---------------------------------------- */

int sl_service_run(const char *name, int (*run)(void *arg), void *arg)
{
	(void)name;
	(void)run;
	(void)arg;
	return -ENOSYS;
}

int sl_service_command(const char *cmd, const char *name, const char *conf,
		       char *err, size_t errlen)
{
	(void)cmd;
	(void)name;
	(void)conf;
	snprintf(err, errlen, "services are a Windows feature; see sluice(8) "
			      "for systemd and rc.d");
	return -1;
}

void sl_service_set_stop_hint(unsigned long ms)
{
	(void)ms;
}

void sl_service_set_account(const char *account, const char *password)
{
	(void)account;
	(void)password;
}
