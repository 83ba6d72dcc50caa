/*
 * kqueue backend (FreeBSD, OpenBSD, NetBSD, DragonFly, macOS; Linux through
 * libkqueue for testing): one kqueue per loop, EVFILT_READ and EVFILT_WRITE
 * filters per watcher, a cross-thread wake-up through EVFILT_USER where the
 * system has it and a pipe where it does not (OpenBSD).
 *
 * The same contract as the epoll backend: level-triggered watchers (kqueue
 * filters are, unless EV_CLEAR), stopped lazily (a filter no longer wanted
 * stays in the kernel until it fires or the descriptor is closed), timers
 * from the shared heap through kevent()'s timeout.
 *
 * Changes are applied at once, one kevent() per change of interest, not
 * batched into the next wait: a watcher is often removed and its
 * descriptor closed before that wait, and a batched EV_DELETE for a
 * descriptor that is closed (or, worse, whose number has been reused)
 * would fail or hit the wrong file.  Changes are rare next to events here:
 * lazy stopping leaves most interest untouched from one read to the next.
 */
#include "loop_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sys/types.h>
#include <sys/event.h>
#include <sys/time.h>
#if defined(__NetBSD__)
#include <sys/param.h>
#endif

/* Events taken per kevent(); the rest stay ready for the next call. */
#define SL_KQ_BATCH 256

/* NetBSD before 10 declares udata as intptr_t. */
#if defined(__NetBSD__) && defined(__NetBSD_Version__) && \
	__NetBSD_Version__ < 1000000000
#define UDATA(p) ((intptr_t)(void *)(p))
#define UDATA_PTR(u) ((void *)(u))
#else
#define UDATA(p) ((void *)(p))
#define UDATA_PTR(u) ((void *)(u))
#endif

/* SL_KQ_NO_EVFILT_USER: take the pipe path where EVFILT_USER exists too,
 * to test on one system what OpenBSD runs. */
#if defined(EVFILT_USER) && defined(NOTE_TRIGGER) && \
	!defined(SL_KQ_NO_EVFILT_USER)
#define SL_KQ_USER 1
#define SL_WAKE_IDENT 1 /* EVFILT_USER idents are ours: any number */
#endif

struct sl_backend {
	int kq;
#ifndef SL_KQ_USER
	int wake[2]; /* pipe: sl_backend_wake writes, the loop drains */
#endif
	struct kevent events[SL_KQ_BATCH];
};

const char *sl_loop_backend(void)
{
	return "kqueue";
}

static int kq_change(int kq, uintptr_t ident, short filter, unsigned short flags,
		     unsigned int fflags, void *udata)
{
	struct kevent kev;

	EV_SET(&kev, ident, filter, flags, fflags, 0, UDATA(udata));
	return kevent(kq, &kev, 1, NULL, 0, NULL) < 0 ? -errno : 0;
}

static int set_cloexec(int fd)
{
	int fl = fcntl(fd, F_GETFD);

	if (fl < 0 || fcntl(fd, F_SETFD, fl | FD_CLOEXEC) < 0)
		return -errno;
	return 0;
}

int sl_backend_init(sl_loop *loop)
{
	struct sl_backend *be = malloc(sizeof *be);
	int r;

	if (be == NULL)
		return -ENOMEM;
#ifndef SL_KQ_USER
	be->wake[0] = be->wake[1] = -1;
#endif
	/* A kqueue is not inherited across fork(); close-on-exec is for the
	 * systems (and libkqueue) where it is an ordinary descriptor. */
	be->kq = kqueue();
	if (be->kq < 0) {
		r = -errno;
		goto fail;
	}
	(void)set_cloexec(be->kq);
#ifdef SL_KQ_USER
	/* udata NULL marks the wake-up; a watcher is never NULL. */
	r = kq_change(be->kq, SL_WAKE_IDENT, EVFILT_USER, EV_ADD | EV_CLEAR, 0,
		      NULL);
	if (r < 0)
		goto fail;
#else
	if (pipe(be->wake) < 0) {
		r = -errno;
		goto fail;
	}
	for (int i = 0; i < 2; i++) {
		int fl = fcntl(be->wake[i], F_GETFL);

		if (fl < 0 ||
		    fcntl(be->wake[i], F_SETFL, fl | O_NONBLOCK) < 0 ||
		    set_cloexec(be->wake[i]) < 0) {
			r = -errno;
			goto fail;
		}
	}
	r = kq_change(be->kq, (uintptr_t)be->wake[0], EVFILT_READ, EV_ADD, 0,
		      NULL);
	if (r < 0)
		goto fail;
#endif
	loop->be = be;
	return 0;
fail:
#ifndef SL_KQ_USER
	if (be->wake[0] >= 0)
		close(be->wake[0]);
	if (be->wake[1] >= 0)
		close(be->wake[1]);
#endif
	if (be->kq >= 0)
		close(be->kq);
	free(be);
	return r;
}

void sl_backend_free(sl_loop *loop)
{
	struct sl_backend *be = loop->be;

	if (be == NULL)
		return;
#ifndef SL_KQ_USER
	close(be->wake[0]);
	close(be->wake[1]);
#endif
	close(be->kq);
	free(be);
	loop->be = NULL;
}

/* Any thread; errno preserved. */
void sl_backend_wake(sl_loop *loop)
{
	int saved = errno;

#ifdef SL_KQ_USER
	(void)kq_change(loop->be->kq, SL_WAKE_IDENT, EVFILT_USER, 0,
			NOTE_TRIGGER, NULL);
#else
	ssize_t n;

	/* EAGAIN: the pipe is full, so readable: the loop wakes anyway. */
	do
		n = write(loop->be->wake[1], "", 1);
	while (n < 0 && errno == EINTR);
#endif
	errno = saved;
}

static void drain_wake(struct sl_backend *be)
{
#ifdef SL_KQ_USER
	(void)be; /* EV_CLEAR: reading the event reset it */
#else
	char buf[64];

	while (read(be->wake[0], buf, sizeof buf) > 0)
		;
#endif
}

static unsigned filter_bit(short filter)
{
	return filter == EVFILT_READ ? SL_IO_READ : SL_IO_WRITE;
}

/*
 * What one event says, in SL_IO_* terms, for a watcher wanting `want`.
 * EV_EOF: on a read filter the peer shut down its write side (read()
 * returns the end; fflags holds a pending socket error, if any); on a write
 * filter the connection can take no more (write() fails), which is also how
 * a failed connect() shows, with the error in fflags.  As with epoll, an
 * error or hang-up is reported with whatever the watcher waits for, so the
 * stream code finds it through the call it was about to make.
 */
static unsigned io_events(const struct kevent *kev, unsigned want)
{
	unsigned ev = filter_bit(kev->filter);

	if (kev->flags & EV_ERROR)
		return SL_IO_ERROR | want;
	if (kev->flags & EV_EOF) {
		ev |= SL_IO_HUP;
		if (kev->fflags != 0)
			ev |= SL_IO_ERROR;
		if (kev->filter == EVFILT_READ)
			ev |= SL_IO_RDHUP;
		if (kev->filter == EVFILT_WRITE || kev->fflags != 0)
			ev |= want;
	}
	return ev & (want | SL_IO_ERROR | SL_IO_HUP | SL_IO_RDHUP);
}

static void filter_del(sl_io *io, short filter)
{
	/* ENOENT (already gone) and EBADF (closed) leave nothing to do. */
	(void)kq_change(io->loop->be->kq, (uintptr_t)io->fd, filter, EV_DELETE,
			0, NULL);
	io->registered &= ~filter_bit(filter);
}

int sl_backend_poll(sl_loop *loop, int timeout_ms)
{
	struct sl_backend *be = loop->be;
	struct timespec ts, *tsp = NULL;
	int n, err;

	if (timeout_ms >= 0) {
		ts.tv_sec = timeout_ms / 1000;
		ts.tv_nsec = (long)(timeout_ms % 1000) * 1000000L;
		tsp = &ts;
	}
	n = kevent(be->kq, NULL, 0, be->events, SL_KQ_BATCH, tsp);
	err = errno;
	sl_loop_update_time(loop);
	if (n < 0)
		return err == EINTR ? 0 : -err;
	for (int i = 0; i < n; i++) {
		struct kevent *kev = &be->events[i];
		sl_io *io = UDATA_PTR(kev->udata);
		unsigned bit, ev;

		if (io == NULL) {
			drain_wake(be);
			continue;
		}
		if (kev->filter != EVFILT_READ && kev->filter != EVFILT_WRITE)
			continue;
		bit = filter_bit(kev->filter);
		/*
		 * A callback earlier in this batch may have stopped or removed
		 * this watcher (its memory stays valid until the deferred
		 * tasks run after the batch).  A filter stopped lazily is
		 * removed now that it costs a wake-up.
		 */
		/*
		 * The socket error travels with the event, and is kept: the
		 * watcher may not be waiting for this filter now.  libkqueue
		 * reads SO_ERROR itself to fill fflags, which clears it, so
		 * the stream code could not find it on the descriptor any
		 * more (a refused connect would look connected, a reset like
		 * an orderly end).  The BSD kernels leave it in place;
		 * passing it on is right for both.  A socket error is final.
		 */
		if ((kev->flags & EV_EOF) && kev->fflags != 0)
			io->error = (int)kev->fflags;
		if (!(io->want & bit)) {
			if (io->registered & bit)
				filter_del(io, kev->filter);
			continue;
		}
		ev = io_events(kev, io->want);
		if (ev != 0)
			io->cb(io, ev);
	}
	return 0;
}

/* ---- watchers ----------------------------------------------------------- */

/*
 * EV_ADD one filter.  ENOENT never comes from a BSD kernel for EV_ADD; it
 * comes from libkqueue when a descriptor was closed without its filters
 * being deleted and the number now names a new file (libkqueue cannot see
 * a close): delete what it still holds for the number and add again.
 */
static int filter_add(sl_io *io, short filter)
{
	int kq = io->loop->be->kq;
	int r = kq_change(kq, (uintptr_t)io->fd, filter, EV_ADD, 0, io);

	if (r == -ENOENT) {
		(void)kq_change(kq, (uintptr_t)io->fd, EVFILT_READ, EV_DELETE,
				0, NULL);
		(void)kq_change(kq, (uintptr_t)io->fd, EVFILT_WRITE, EV_DELETE,
				0, NULL);
		io->registered = 0;
		r = kq_change(kq, (uintptr_t)io->fd, filter, EV_ADD, 0, io);
	}
	return r;
}

int sl_io_set(sl_io *io, unsigned want)
{
	int r;

	want &= SL_IO_READ | SL_IO_WRITE;
	io->want = want;
	/* Only additions reach the kernel now; removals are lazy. */
	if ((want & SL_IO_READ) && !(io->registered & SL_IO_READ)) {
		r = filter_add(io, EVFILT_READ);
		if (r < 0) {
			io->want &= io->registered;
			return r;
		}
		io->registered |= SL_IO_READ;
	}
	if ((want & SL_IO_WRITE) && !(io->registered & SL_IO_WRITE)) {
		r = filter_add(io, EVFILT_WRITE);
		if (r < 0) {
			io->want &= io->registered;
			return r;
		}
		io->registered |= SL_IO_WRITE;
	}
	return 0;
}

void sl_io_remove(sl_io *io)
{
	if (io->registered & SL_IO_READ)
		filter_del(io, EVFILT_READ);
	if (io->registered & SL_IO_WRITE)
		filter_del(io, EVFILT_WRITE);
	io->registered = 0;
	io->want = 0;
}

void sl_io_forget(sl_io *io)
{
#if defined(__linux__)
	/*
	 * libkqueue (kqueue emulated on Linux, for testing) cannot see a
	 * close(): its filters for the descriptor would stay and meet the
	 * next file to get the same number.  Remove them for real.
	 */
	sl_io_remove(io);
#else
	/* The kernel drops a descriptor's filters when it is closed. */
	io->registered = 0;
	io->want = 0;
#endif
}
