/*
 * Listeners over POSIX sockets.
 *
 * A listener is owned by one loop of its group (the "owner"), which watches
 * the listening descriptor and accepts in batches; each accepted descriptor
 * is handed to a loop of the group (round robin, possibly the owner) as a
 * small task, and the stream is created there.  Everything that changes the
 * watcher runs on the owner loop; other threads post tasks to it.
 *
 * Lifetime (listener_common.h): each hand-off holds a reference too.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* glibc: accept4 */
#endif

#include "listener_posix.h"

#include <errno.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <netinet/in.h>

#include "log.h"
#include "resolver.h"

#define SL_ACCEPT_BATCH 32      /* accepts per readiness event */

struct handoff {
	sl_task task;
	sl_listener *l;
	sl_loop *loop;
	void *token;
	int fd;
	socklen_t peer_len;
	struct sockaddr_storage peer;
};

/* ---- creating and freeing ----------------------------------------------- */

sl_listener *sl_os_listener_new(void)
{
	sl_listener *l = calloc(1, sizeof *l);

	if (l != NULL)
		l->fd = -1;
	return l;
}

int sl_os_listener_is_open(const sl_listener *l)
{
	return l->fd >= 0;
}

void sl_os_listener_close(sl_listener *l)
{
	if (l->fd >= 0) {
		close(l->fd);
		l->fd = -1;
	}
	sl_unix_unlink(l);
}

void sl_os_listener_free(sl_listener *l)
{
	free(l->unlink_path);
	free(l);
}

/* ---- opening ------------------------------------------------------------ */

int sl_os_listener_open_tcp(sl_listener *l, const struct sl_addr *a,
			    char *err, size_t errlen)
{
	int one = 1;

	l->fd = sl_socket(a->ss.ss_family, SOCK_STREAM);
	if (l->fd < 0)
		return sl_errf(err, errlen, l->fd, "%s: socket: %s", l->b.name,
			       sl_strerror(l->fd));
	/* Rebind at once after a restart despite TIME_WAIT connections. */
	setsockopt(l->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	/* So that tcp://0.0.0.0:P and tcp://[::]:P can both be listened on
	 * (Linux defaults to dual-stack, bindv6only=0). */
	if (a->ss.ss_family == AF_INET6 &&
	    setsockopt(l->fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) < 0)
		return sl_errf(err, errlen, -errno, "%s: IPV6_V6ONLY: %s",
			       l->b.name, strerror(errno));
	if (bind(l->fd, (const struct sockaddr *)&a->ss, a->len) < 0)
		return sl_errf(err, errlen, -errno, "%s: bind: %s", l->b.name,
			       strerror(errno));
	sl_listen_tune(l->fd, SL_EP_TCP);
	return sl_listen_fd(l, err, errlen);
}

int sl_listen_fd(sl_listener *l, char *err, size_t errlen)
{
	if (listen(l->fd, l->b.backlog) < 0)
		return sl_errf(err, errlen, -errno, "%s: listen: %s", l->b.name,
			       strerror(errno));
	return 0;
}

int sl_os_listener_open(sl_listener *l, const sl_listen_opts *opts,
			char *err, size_t errlen)
{
	if (l->b.ep.kind == SL_EP_UNIX)
		return sl_unix_listen(l, opts, err, errlen);
	return sl_errf(err, errlen, SL_EUNSUPP,
		       "%s: named pipes exist on Windows only", l->b.name);
}

/* ---- accepting (owner loop) --------------------------------------------- */

/* Give an accepted descriptor to the session code, on `loop`'s thread. */
static void deliver(sl_listener *l, sl_loop *loop, int fd,
		    const struct sockaddr *peer, socklen_t peer_len,
		    void *token)
{
	sl_stream *s;
	int r;

	r = sl_stream_open_accepted(loop, fd, l->b.ep.kind, peer, peer_len, &s);
	if (r == 0) {
		l->b.cb(l, s, token);
	} else {
		sl_warn("%s: dropping an accepted connection: %s", l->b.name,
			sl_strerror(r));
		if (l->b.gate != NULL)
			l->b.cb(l, NULL, token);
	}
}

static void handoff_run(sl_task *t, int status)
{
	struct handoff *h = t->data;
	sl_listener *l = h->l;

	if (status != 0) {
		close(h->fd); /* the target loop is being freed */
		if (l->b.gate != NULL)
			l->b.cb(l, NULL, h->token);
	} else {
		deliver(l, h->loop, h->fd, (struct sockaddr *)&h->peer,
			h->peer_len, h->token);
	}
	free(h);
	sl_listener_unref(l);
}

static void pause_accepting(sl_listener *l, int err, int count)
{
	sl_io_set(&l->io, 0);
	l->fd_paused = 1;
	if (count)
		atomic_fetch_add(&l->b.fd_pauses, 1);
	/* Once per shortage: it is retried every SL_ACCEPT_PAUSE_MS for as
	 * long as it lasts, and a line per retry would flood the log (ten a
	 * second per listener) just when the system is short of resources.
	 * The pause counter counts every retry. */
	if (!l->pause_logged) {
		l->pause_logged = 1;
		sl_warn("%s: accept: %s; pausing for %d ms, and again until "
			"it works",
			l->b.name, strerror(err), SL_ACCEPT_PAUSE_MS);
	}
	sl_timer_start(&l->timer, SL_ACCEPT_PAUSE_MS);
}

/*
 * accept() got past the descriptor allocation (a connection, or EAGAIN:
 * Linux and FreeBSD allocate the descriptor before they look at the
 * queue): a shortage that was logged is over.
 */
static void shortage_over(sl_listener *l)
{
	if (l->pause_logged) {
		l->pause_logged = 0;
		sl_info("%s: accepting again", l->b.name);
	}
}

static int accept_one(int lfd, struct sockaddr_storage *ss, socklen_t *len)
{
	int fd, r;

	*len = sizeof *ss;
#if defined(HAVE_ACCEPT4) && HAVE_ACCEPT4 && defined(SL_HAVE_SOCK_FLAGS)
	fd = accept4(lfd, (struct sockaddr *)ss, len,
		     SOCK_NONBLOCK | SOCK_CLOEXEC);
	(void)r;
#else
	fd = accept(lfd, (struct sockaddr *)ss, len);
	if (fd >= 0) {
		r = sl_fd_prepare(fd);
		if (r < 0) {
			close(fd);
			errno = -r;
			return -1;
		}
	}
#endif
	return fd;
}

static void on_accept(sl_io *io, unsigned events)
{
	sl_listener *l = io->data;
	struct handoff *h;
	sl_loop *loop;
	struct sockaddr_storage ss;
	socklen_t sslen;
	int fd;

	(void)events;
	for (int i = 0; i < SL_ACCEPT_BATCH; i++) {
		void *token = NULL;

		if (l->b.gate != NULL && !l->b.gate(l, &token)) {
			/* Connections wait in the kernel's backlog. */
			sl_io_set(&l->io, 0);
			return;
		}
		fd = accept_one(l->fd, &ss, &sslen);
		if (fd < 0) {
			int err = errno;

			if (l->b.gate != NULL)
				l->b.cb(l, NULL, token); /* errno may change */
			errno = err;
			switch (errno) {
			case EINTR:
			case ECONNABORTED: /* the client gave up already */
			case EPROTO:       /* older Linux, Solaris: same */
				continue;
			case EAGAIN:
#if EWOULDBLOCK != EAGAIN
			case EWOULDBLOCK:
#endif
				shortage_over(l);
				return;
			case EMFILE:
			case ENFILE:
			case ENOBUFS:
			case ENOMEM:
				pause_accepting(l, errno, 1);
				return;
			default:
				/* Unknown: pause too; never spin on a
				 * level-triggered error. */
				pause_accepting(l, errno, 0);
				return;
			}
		}
		shortage_over(l);
		loop = sl_group_next(l->b.group);
		if (loop == l->b.loop) {
			/* Ours: no hand-off, no allocation, no wake-up. */
			deliver(l, loop, fd, (struct sockaddr *)&ss,
				sslen <= sizeof ss ? sslen : 0, token);
			continue;
		}
		h = malloc(sizeof *h);
		if (h == NULL) {
			close(fd);
			if (l->b.gate != NULL)
				l->b.cb(l, NULL, token);
			pause_accepting(l, ENOMEM, 1);
			return;
		}
		h->l = l;
		h->fd = fd;
		h->token = token;
		h->peer_len = sslen <= sizeof h->peer ? sslen : 0;
		if (h->peer_len > 0)
			memcpy(&h->peer, &ss, h->peer_len);
		h->loop = loop;
		sl_task_init(&h->task, handoff_run, h);
		sl_listener_ref(l);
		sl_loop_post(h->loop, &h->task);
	}
}

static void on_pause_over(sl_timer *t)
{
	sl_listener *l = t->data;
	int r;

	l->fd_paused = 0;
	if (!l->b.closed && (r = sl_io_set(&l->io, SL_IO_READ)) < 0)
		pause_accepting(l, -r, 1); /* the gate is asked again */
}

void sl_os_listener_start(sl_listener *l)
{
	int r;

	sl_io_init(l->b.loop, &l->io, l->fd, on_accept, l);
	sl_timer_init(l->b.loop, &l->timer, on_pause_over, l);
	l->watching = 1;
	r = sl_io_set(&l->io, SL_IO_READ);
	if (r < 0)
		pause_accepting(l, -r, 0);
}

void sl_os_listener_resume(sl_listener *l)
{
	int r;

	/* Watching again can itself fail for want of memory or, with
	 * libkqueue, of a descriptor: then retry on the pause timer rather
	 * than stop accepting for good. */
	if (l->watching && !l->fd_paused &&
	    (r = sl_io_set(&l->io, SL_IO_READ)) < 0)
		pause_accepting(l, -r, 1);
}

void sl_os_listener_stop(sl_listener *l, int status)
{
	/* status != 0: the loop is being freed; its watchers and timers
	 * go with it, only the descriptor is ours to close. */
	if (status == 0 && l->watching) {
		sl_timer_stop(&l->timer);
		sl_io_remove(&l->io);
	}
}

int sl_os_listener_sockname(const sl_listener *l, struct sockaddr_storage *ss,
			    socklen_t *len)
{
	if (l->fd < 0)
		return -EBADF;
	if (getsockname(l->fd, (struct sockaddr *)ss, len) < 0)
		return -errno;
	return 0;
}
