/*
 * epoll backend (Linux): one epoll descriptor per loop, level-triggered
 * watchers, an eventfd for cross-thread wake-ups.
 *
 * Level-triggered on purpose: a callback may stop after part of the
 * available data (a full write side pauses reading), and the kernel then
 * reports the rest at the next poll without any bookkeeping here.  The cost,
 * one epoll_ctl per change of interest, is kept down by comparing `want`
 * with what the kernel already has.
 */
#include "loop_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

/* Events taken per epoll_wait; the rest stay ready for the next call. */
#define SL_EPOLL_BATCH 256

struct sl_backend {
	int epfd;
	int evfd; /* eventfd: sl_backend_wake writes, the loop drains */
	struct epoll_event events[SL_EPOLL_BATCH];
	sl_io *stale[SL_EPOLL_BATCH]; /* stopped, yet reported: see poll */
};

const char *sl_loop_backend(void)
{
	return "epoll";
}

/*
 * epoll_create1 and EFD_CLOEXEC/EFD_NONBLOCK: Linux 2.6.27, which every
 * glibc and musl we build against requires anyway, so no fallback to
 * epoll_create or a pipe.
 */
int sl_backend_init(sl_loop *loop)
{
	struct sl_backend *be = malloc(sizeof *be);
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
	int r;

	if (be == NULL)
		return -ENOMEM;
	be->evfd = -1;
	be->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (be->epfd < 0)
		goto fail;
	be->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (be->evfd < 0)
		goto fail;
	/* data.ptr NULL marks the wake-up; a watcher is never NULL. */
	if (epoll_ctl(be->epfd, EPOLL_CTL_ADD, be->evfd, &ev) < 0)
		goto fail;
	loop->be = be;
	return 0;
fail:
	r = -errno;
	if (be->evfd >= 0)
		close(be->evfd);
	if (be->epfd >= 0)
		close(be->epfd);
	free(be);
	return r;
}

void sl_backend_free(sl_loop *loop)
{
	struct sl_backend *be = loop->be;

	if (be == NULL)
		return;
	close(be->evfd);
	close(be->epfd);
	free(be);
	loop->be = NULL;
}

/*
 * Async-signal-safe: one write(2), errno preserved.  EAGAIN means the
 * counter is at its maximum, i.e. already readable: the loop wakes anyway.
 */
void sl_backend_wake(sl_loop *loop)
{
	uint64_t one = 1;
	int saved = errno;
	ssize_t n;

	do
		n = write(loop->be->evfd, &one, sizeof one);
	while (n < 0 && errno == EINTR);
	errno = saved;
}

static void drain_wake(struct sl_backend *be)
{
	uint64_t v;

	/* One read resets an eventfd counter to 0; EAGAIN: already drained. */
	while (read(be->evfd, &v, sizeof v) < 0 && errno == EINTR)
		;
}

/*
 * Which readiness a watcher's mask of interest turns into.  EPOLLRDHUP
 * (Linux 2.6.17) only with READ: level-triggered, it stays raised after the
 * peer's half-close, and a watcher that has read the EOF and now only waits
 * to write (half-close passes through sluice) would otherwise be woken in a
 * loop.  EPOLLERR and EPOLLHUP are always reported by the kernel.
 */
static uint32_t epoll_mask(unsigned want)
{
	uint32_t m = 0;

	if (want & SL_IO_READ)
		m |= EPOLLIN | EPOLLRDHUP;
	if (want & SL_IO_WRITE)
		m |= EPOLLOUT;
	return m;
}

/* What the kernel said, in SL_IO_* terms, for a watcher wanting `want`. */
static unsigned io_events(uint32_t e, unsigned want)
{
	unsigned ev = 0;

	if (e & EPOLLIN)
		ev |= SL_IO_READ;
	if (e & EPOLLOUT)
		ev |= SL_IO_WRITE;
	/*
	 * An error or a full hang-up is found by the stream code through
	 * read()/write() returning it, so also report whichever of those
	 * the watcher is waiting for.  A half-close (RDHUP) says nothing
	 * about the write side: only READ, where read() returns the EOF.
	 */
	if (e & EPOLLERR)
		ev |= SL_IO_ERROR | want;
	if (e & EPOLLHUP)
		ev |= SL_IO_HUP | want;
	if (e & EPOLLRDHUP) {
		ev |= SL_IO_HUP;
		if (want & SL_IO_READ)
			ev |= SL_IO_READ | SL_IO_RDHUP;
	}
	return ev & (want | SL_IO_ERROR | SL_IO_HUP | SL_IO_RDHUP);
}

int sl_backend_poll(sl_loop *loop, int timeout_ms)
{
	struct sl_backend *be = loop->be;
	int n, err, nstale = 0;

	n = epoll_wait(be->epfd, be->events, SL_EPOLL_BATCH, timeout_ms);
	err = errno;
	sl_loop_update_time(loop);
	if (n < 0)
		return err == EINTR ? 0 : -err; /* a signal is not an error */
	for (int i = 0; i < n; i++) {
		sl_io *io = be->events[i].data.ptr;
		unsigned ev;

		if (io == NULL) {
			drain_wake(be);
			continue;
		}
		/*
		 * A callback earlier in this batch may have stopped or
		 * removed this watcher; its memory stays valid until the
		 * deferred tasks run after the batch.
		 */
		if (io->want == 0) {
			if (io->registered != 0)
				be->stale[nstale++] = io;
			continue;
		}
		ev = io_events(be->events[i].events, io->want);
		if (ev != 0)
			io->cb(io, ev);
	}
	/*
	 * Stopped lazily (see sl_io_set) and reported all the same: it would
	 * wake every poll, so out of the kernel with it -- unless the batch
	 * has closed it since (a reading side that saw its EOF, then the
	 * other side's event ending the session: close() did it for free)
	 * or wants it again.
	 */
	for (int i = 0; i < nstale; i++) {
		sl_io *io = be->stale[i];

		if (io->want == 0 && io->registered != 0)
			sl_io_remove(io);
	}
	return 0;
}

/* ---- watchers ----------------------------------------------------------- */

int sl_io_set(sl_io *io, unsigned want)
{
	struct sl_backend *be = io->loop->be;
	struct epoll_event ev = {.data.ptr = io};
	int op, r;

	want &= SL_IO_READ | SL_IO_WRITE;
	io->want = want;
	if (want == io->registered)
		return 0;
	if (want == 0) {
		/*
		 * Stop lazily: keep the kernel's registration and drop it only
		 * if an event comes for it (sl_backend_poll).  A descriptor is
		 * often closed right after its watcher stops (EOF, then the
		 * session ends), and close() removes it for free; a read
		 * stopped for back-pressure and started again costs nothing.
		 */
		return 0;
	}
	ev.events = epoll_mask(want);
	op = io->registered ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
	r = epoll_ctl(be->epfd, op, io->fd, &ev);
	/*
	 * Our record and the kernel's can differ when a descriptor was
	 * closed without sl_io_remove (the kernel drops it; the number may
	 * come back as a new file) or was registered through another
	 * watcher: follow the kernel.
	 */
	if (r < 0 && op == EPOLL_CTL_MOD && errno == ENOENT)
		r = epoll_ctl(be->epfd, EPOLL_CTL_ADD, io->fd, &ev);
	else if (r < 0 && op == EPOLL_CTL_ADD && errno == EEXIST)
		r = epoll_ctl(be->epfd, EPOLL_CTL_MOD, io->fd, &ev);
	if (r < 0) {
		r = -errno;
		io->want = io->registered;
		return r;
	}
	io->registered = want;
	return 0;
}

void sl_io_forget(sl_io *io)
{
	/* close() drops the descriptor from every epoll set once no other
	 * descriptor refers to the same file: nothing to tell the kernel. */
	io->registered = 0;
	io->want = 0;
}

void sl_io_remove(sl_io *io)
{
	/*
	 * Linux before 2.6.9 wants a non-NULL event even for DEL.  ENOENT
	 * and EBADF (already closed) leave nothing to remove.
	 */
	struct epoll_event ev = {0};

	if (io->registered != 0)
		(void)epoll_ctl(io->loop->be->epfd, EPOLL_CTL_DEL, io->fd, &ev);
	io->registered = 0;
	io->want = 0;
}
