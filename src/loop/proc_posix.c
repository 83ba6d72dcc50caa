/*
 * POSIX control events: the signal handlers write the signal number into a
 * non-blocking self-pipe watched by one loop, so all the work happens on a
 * loop thread and the handlers stay async-signal-safe.  Which thread the
 * kernel picks to run a handler does not matter.
 */
#include "proc.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

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

int sl_daemonize(void)
{
	pid_t pid;
	int fd;

	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid > 0)
		_exit(0);
	if (setsid() < 0)
		return -errno;
	/* Fork again so the daemon can never reacquire a terminal. */
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid > 0)
		_exit(0);
	if (chdir("/") < 0)
		return -errno;
	fd = open("/dev/null", O_RDWR);
	if (fd < 0)
		return -errno;
	dup2(fd, 0);
	dup2(fd, 1);
	dup2(fd, 2);
	if (fd > 2)
		close(fd);
	return 0;
}

char *sl_path_absolute(const char *path)
{
	return realpath(path, NULL);
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
