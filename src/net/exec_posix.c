/*
 * Child processes for exec: upstreams, POSIX (sl_exec_spawn in net.h).
 *
 * The child's stdin and stdout are one end of a socketpair, so sluice's
 * end is an ordinary Unix stream (relayed, spliced, half-closed like any
 * other: shutdown(SHUT_WR) is the child's EOF on stdin).  Its stderr is
 * a pipe, read on the loop line by line into the log, each line cut at
 * SL_EXEC_LINE_MAX bytes so a child that writes megabytes costs no
 * memory.  posix_spawn (glibc: a vfork-like clone, no copy of the
 * daemon's memory) with the descriptors limited to 0, 1 and 2 (every
 * descriptor of sluice is close-on-exec), the default signal mask and
 * dispositions, and a process group of the child's own, so a kill
 * reaches the commands it started too (ssh's ProxyCommand, a shell's
 * pipeline).
 *
 * Reaping: waitpid(pid, WNOHANG) for this child only, never -1, so no
 * other child of the process is taken.  On Linux 5.3 and later a pidfd
 * (pidfd_open) becomes readable when the child ends and the loop watches
 * it like a socket: the exit is seen at once, with no signal handler and
 * no polling.  Where there is none (older kernels, other systems) a
 * timer of the loop polls every SL_EXEC_POLL_MS; a signal handler for
 * SIGCHLD would have to find the loop of each child from a handler, and
 * a signalfd takes the signal from every thread of a process that may
 * have other children.  SIGCHLD must not be ignored (SIG_IGN would reap
 * children before waitpid could see their status); sluice never sets it.
 *
 * Every child is on one process-wide list until reaped and released, so
 * sl_net_shutdown() can kill and reap what a stopping daemon's loops
 * left behind.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "posix.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

extern char **environ;

#define SL_EXEC_POLL_MS 50   /* waitpid polling without a pidfd */
#define SL_EXEC_KILL_MS 1000 /* SIGTERM, then SIGKILL this much later */
#define SL_EXEC_READS 4      /* stderr reads per event */

struct sl_exec {
	sl_loop *loop;
	pid_t pid;
	int pidfd; /* -1: polled on poll_timer */
	sl_io pid_io;
	int err_fd; /* stderr's read end; -1 once closed */
	sl_io err_io;
	sl_timer kill_timer, poll_timer;
	sl_task free_task;
	int kills; /* signals sent: 1 SIGTERM, 2 SIGKILL */
	unsigned reaped : 1, released : 1, freeing : 1;
	sl_exec_exit_cb exit_cb;
	void *data;
	char *name; /* "route R: exec:ARGV0 (pid N)", for log lines */
	sl_exec_link link;    /* every child not yet freed */
	sl_exec_lines lines;  /* stderr's line so far */
};

void sl_exec_status_text(int status, char *buf, size_t len)
{
	if (status >= 0)
		snprintf(buf, len, "exited %d", status);
	else
		snprintf(buf, len, "killed by signal %d", -status);
}

void *sl_exec_get_data(const sl_exec *x)
{
	return x->data;
}

long sl_exec_pid(const sl_exec *x)
{
	return (long)x->pid;
}

/* ---- stderr ------------------------------------------------------------- */

static void err_close(sl_exec *x)
{
	if (x->err_fd < 0)
		return;
	sl_exec_lines_end(&x->lines, x->name, sl_loop_now(x->loop));
	sl_io_forget(&x->err_io);
	close(x->err_fd);
	x->err_fd = -1;
}

/* Read what stderr holds now; at its end (or an error) close it.  Returns
 * 1 when it is closed. */
static int err_read(sl_exec *x, int reads)
{
	char buf[4096];

	while (reads-- > 0) {
		ssize_t n = read(x->err_fd, buf, sizeof buf);

		if (n > 0) {
			sl_exec_lines_take(&x->lines, x->name, buf,
					   (size_t)n, sl_loop_now(x->loop));
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		err_close(x);
		return 1;
	}
	return 0;
}

static void maybe_free(sl_exec *x);

static void on_err_io(sl_io *io, unsigned events)
{
	sl_exec *x = io->data;

	(void)events;
	if (err_read(x, SL_EXEC_READS))
		maybe_free(x);
}

/* ---- reaping and killing ------------------------------------------------ */

static void free_task(sl_task *t, int status)
{
	sl_exec *x = t->data;

	(void)status;
	sl_exec_link_del(&x->link);
	free(x->name);
	free(x);
}

/* Reaped and released: the rest of stderr (what a grandchild still
 * holding it writes is not waited for), then free once this batch of
 * events is done (a later event of it may still name x's watchers). */
static void maybe_free(sl_exec *x)
{
	if (!x->reaped || !x->released || x->freeing)
		return;
	if (x->err_fd >= 0 && !err_read(x, 64))
		err_close(x);
	x->freeing = 1;
	sl_timer_stop(&x->kill_timer);
	sl_timer_stop(&x->poll_timer);
	sl_task_init(&x->free_task, free_task, x);
	sl_loop_defer(x->loop, &x->free_task);
}

static int status_of(int st)
{
	if (WIFEXITED(st))
		return WEXITSTATUS(st);
	if (WIFSIGNALED(st))
		return -WTERMSIG(st);
	return -SIGKILL;
}

/* The child's end, if it has come. */
static void reap(sl_exec *x)
{
	char text[64];
	int st = 0, status;
	pid_t r;

	do
		r = waitpid(x->pid, &st, WNOHANG);
	while (r < 0 && errno == EINTR);
	if (r == 0)
		return;
	x->reaped = 1;
	if (x->pidfd >= 0) {
		sl_io_forget(&x->pid_io);
		close(x->pidfd);
		x->pidfd = -1;
	}
	sl_timer_stop(&x->poll_timer);
	sl_timer_stop(&x->kill_timer);
	if (r < 0) {
		/* ECHILD: someone reaped it first (SIGCHLD set to SIG_IGN
		 * by an embedding program): the status is lost. */
		sl_warn("%s ended; its status is lost: %s", x->name,
			strerror(errno));
		status = -SIGKILL;
	} else {
		status = status_of(st);
		sl_exec_status_text(status, text, sizeof text);
		if (status == 0 || x->kills > 0)
			sl_info("%s %s", x->name, text);
		else
			sl_warn("%s %s", x->name, text);
	}
	if (!x->released && x->exit_cb != NULL)
		x->exit_cb(x, status);
	maybe_free(x);
}

static void on_pid_io(sl_io *io, unsigned events)
{
	(void)events;
	reap(io->data);
}

static void on_poll(sl_timer *t)
{
	sl_exec *x = t->data;

	reap(x);
	if (!x->reaped)
		sl_timer_start(&x->poll_timer, SL_EXEC_POLL_MS);
}

/* SIGTERM to the child's group, then SIGKILL SL_EXEC_KILL_MS later. */
static void on_kill(sl_timer *t)
{
	sl_exec *x = t->data;
	int sig = x->kills == 0 ? SIGTERM : SIGKILL;

	reap(x);
	if (x->reaped)
		return;
	if (x->kills == 0)
		sl_info("%s still running after its session: %s", x->name,
			"SIGTERM, SIGKILL a second later");
	/* The group is the child's own (setpgid at spawn); the child, not
	 * yet reaped, keeps its id from being reused. */
	if (kill(-x->pid, sig) < 0)
		kill(x->pid, sig);
	if (++x->kills < 2)
		sl_timer_start(&x->kill_timer, SL_EXEC_KILL_MS);
}

void sl_exec_release(sl_exec *x, uint64_t timeout_ms)
{
	x->released = 1;
	x->exit_cb = NULL;
	if (x->reaped) {
		maybe_free(x);
		return;
	}
	sl_timer_start(&x->kill_timer, timeout_ms);
}

/* ---- spawning ----------------------------------------------------------- */

/* fd moved above 2, so dup2 onto 0, 1 or 2 in the child never meets it
 * (dup2 of a descriptor onto itself would keep close-on-exec). */
static int above_stdio(int fd)
{
	int n;

	if (fd > 2)
		return fd;
	n = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	close(fd);
	return n < 0 ? -errno : n;
}

static int pidfd_for(pid_t pid)
{
#if defined(__linux__) && defined(SYS_pidfd_open)
	/* Close-on-exec by the kernel (pidfd_open(2)). */
	int fd = (int)syscall(SYS_pidfd_open, pid, 0);

	if (fd >= 0)
		return above_stdio(fd);
#else
	(void)pid;
#endif
	return -1;
}

/*
 * What sluice opens is close-on-exec, but what it inherited may not be
 * (a descriptor its parent leaked): where the C library can, every
 * descriptor above 2 is closed in the child (glibc 2.34 and later,
 * FreeBSD 13: close_range(2) underneath).  Elsewhere such a descriptor
 * would reach the command.
 */
static int close_rest(posix_spawn_file_actions_t *fa)
{
#if defined(HAVE_POSIX_SPAWN_FILE_ACTIONS_ADDCLOSEFROM_NP) && \
	HAVE_POSIX_SPAWN_FILE_ACTIONS_ADDCLOSEFROM_NP
	return posix_spawn_file_actions_addclosefrom_np(fa, 3);
#else
	(void)fa;
	return 0;
#endif
}

/* posix_spawnp with the child's stdio on io (0, 1) and err (2). */
static int spawn(char *const *argv, int io, int err, pid_t *pid)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	sigset_t none, all_sigs;
	int r;

	if ((r = posix_spawn_file_actions_init(&fa)) != 0)
		return -r;
	if ((r = posix_spawnattr_init(&at)) != 0) {
		posix_spawn_file_actions_destroy(&fa);
		return -r;
	}
	sigemptyset(&none);
	sigfillset(&all_sigs);
	sigdelset(&all_sigs, SIGKILL);
	sigdelset(&all_sigs, SIGSTOP);
	if ((r = posix_spawn_file_actions_adddup2(&fa, io, 0)) == 0 &&
	    (r = posix_spawn_file_actions_adddup2(&fa, io, 1)) == 0 &&
	    (r = posix_spawn_file_actions_adddup2(&fa, err, 2)) == 0 &&
	    (r = close_rest(&fa)) == 0 &&
	    (r = posix_spawnattr_setsigmask(&at, &none)) == 0 &&
	    (r = posix_spawnattr_setsigdefault(&at, &all_sigs)) == 0 &&
	    (r = posix_spawnattr_setpgroup(&at, 0)) == 0 &&
	    (r = posix_spawnattr_setflags(
		     &at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF |
				  POSIX_SPAWN_SETPGROUP)) == 0)
		r = posix_spawnp(pid, argv[0], &fa, &at, argv, environ);
	posix_spawnattr_destroy(&at);
	posix_spawn_file_actions_destroy(&fa);
	return -r;
}

static int socketpair_cloexec(int sv[2])
{
#ifdef SL_HAVE_SOCK_FLAGS
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return -errno;
#else
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		return -errno;
	fcntl(sv[0], F_SETFD, FD_CLOEXEC);
	fcntl(sv[1], F_SETFD, FD_CLOEXEC);
#endif
	return 0;
}

static int pipe_cloexec(int p[2])
{
#if defined(HAVE_PIPE2) && HAVE_PIPE2
	if (pipe2(p, O_CLOEXEC) < 0)
		return -errno;
#else
	if (pipe(p) < 0)
		return -errno;
	fcntl(p[0], F_SETFD, FD_CLOEXEC);
	fcntl(p[1], F_SETFD, FD_CLOEXEC);
#endif
	return 0;
}

static void close_fds(int *fds, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

int sl_exec_spawn(sl_loop *loop, const sl_exec_opts *o, sl_exec **out,
		  sl_stream **stream)
{
	/* sv[0] and ep[0] stay with sluice; the child gets sv[1], ep[1]. */
	int fds[4] = { -1, -1, -1, -1 }, *sv = fds, *ep = fds + 2;
	size_t nlen = strlen(o->log_name) + strlen(o->argv[0]) + 48;
	sl_exec *x;
	int r = -ENOMEM;

	if ((x = calloc(1, sizeof *x)) == NULL ||
	    (x->name = malloc(nlen)) == NULL)
		goto fail;
	if ((r = socketpair_cloexec(sv)) < 0 || (r = pipe_cloexec(ep)) < 0)
		goto fail;
	for (int i = 0; i < 4; i++)
		if ((r = fds[i] = above_stdio(fds[i])) < 0)
			goto fail;
	/* Only sluice's ends are non-blocking: the child's are its own
	 * files, as a command expects them. */
	if ((r = sl_fd_prepare(sv[0])) < 0)
		goto fail;
	if (fcntl(ep[0], F_SETFL, fcntl(ep[0], F_GETFL) | O_NONBLOCK) < 0) {
		r = -errno;
		goto fail;
	}
	if ((r = spawn(o->argv, sv[1], ep[1], &x->pid)) < 0)
		goto fail;
	close(sv[1]);
	close(ep[1]);

	x->loop = loop;
	x->exit_cb = o->exit_cb;
	x->data = o->data;
	x->err_fd = ep[0];
	snprintf(x->name, nlen, "%s: exec:%s (pid %ld)", o->log_name,
		 o->argv[0], (long)x->pid);
	sl_timer_init(loop, &x->kill_timer, on_kill, x);
	sl_timer_init(loop, &x->poll_timer, on_poll, x);
	sl_io_init(loop, &x->err_io, x->err_fd, on_err_io, x);
	sl_exec_link_add(&x->link, x);
	if ((x->pidfd = pidfd_for(x->pid)) >= 0) {
		sl_io_init(loop, &x->pid_io, x->pidfd, on_pid_io, x);
		if (sl_io_set(&x->pid_io, SL_IO_READ) < 0) {
			close(x->pidfd);
			x->pidfd = -1;
		}
	}
	if (x->pidfd < 0)
		sl_timer_start(&x->poll_timer, SL_EXEC_POLL_MS);
	/* The child runs: from here a failure kills it at once and reaps
	 * it (x frees itself) instead of undoing. */
	if ((r = sl_io_set(&x->err_io, SL_IO_READ)) < 0)
		close(sv[0]);
	else
		r = sl_stream_open_fd(loop, sv[0], SL_EP_UNIX, stream);
	if (r < 0) {
		sl_exec_release(x, 0);
		return r;
	}
	*out = x;
	return 0;
fail:
	close_fds(fds, 4);
	if (x != NULL)
		free(x->name);
	free(x);
	return r;
}

/* ---- the daemon's end --------------------------------------------------- */

/*
 * Called by sl_net_shutdown(), once no loop runs: every child still on
 * the list gets SIGTERM, a second to end, then SIGKILL, and is reaped.
 * The loops are gone, so neither watchers nor timers are touched.
 */
void sl_exec_shutdown(void)
{
	struct timespec ts = { 0, 10 * 1000 * 1000 };
	sl_exec_link *all = sl_exec_links_take(), *l;
	sl_exec *x;

	for (l = all; l != NULL; l = l->next)
		if (!l->x->reaped)
			kill(-l->x->pid, SIGTERM);
	for (int i = 0; i < SL_EXEC_KILL_MS / 10; i++) {
		int left = 0;

		for (l = all; l != NULL; l = l->next) {
			x = l->x;
			if (!x->reaped && waitpid(x->pid, NULL, WNOHANG) != 0)
				x->reaped = 1;
			else
				left += !x->reaped;
		}
		if (left == 0)
			break;
		nanosleep(&ts, NULL);
	}
	while ((l = all) != NULL) {
		all = l->next;
		x = l->x;
		if (!x->reaped) {
			kill(-x->pid, SIGKILL);
			while (waitpid(x->pid, NULL, 0) < 0 && errno == EINTR)
				;
		}
		if (x->pidfd >= 0)
			close(x->pidfd);
		if (x->err_fd >= 0)
			close(x->err_fd);
		free(x->name);
		free(x);
	}
}
