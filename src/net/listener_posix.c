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
#include <fcntl.h>
#include <limits.h>
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

	l->sock_kind = SL_EP_TCP;
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

/* ---- systemd socket activation ------------------------------------------ */

#define SD_LISTEN_FDS_START 3 /* sd-daemon.h */

/* The sockets systemd passed: written once by sl_listener_inherit()
 * before any thread, then read and marked taken on the main thread (where
 * listeners are opened).  Never closed: nothing could open them again. */
struct inherited {
	int fd;
	int taken;
	char *name;
};
static struct inherited *inh;
static size_t ninh;
static int activated;
static char not_ours[64]; /* why none were taken, for the errors */

/* A decimal number, the whole of s, at most max; -1 if not. */
static long parse_count(const char *s, long max)
{
	long v = 0;

	if (s == NULL || *s == '\0')
		return -1;
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		v = v * 10 + (*s - '0');
		if (v > max)
			return -1;
	}
	return v;
}

/* The i-th name of LISTEN_FDNAMES ("unknown" when there is none, as
 * sd_listen_fds_with_names() says when the variable is unset). */
static char *nth_name(const char *names, size_t i)
{
	const char *p = names, *end;

	for (; p != NULL && i > 0; i--) {
		p = strchr(p, ':');
		if (p != NULL)
			p++;
	}
	if (p == NULL || *p == '\0' || *p == ':')
		return strdup("unknown");
	end = strchr(p, ':');
	return strndup(p, end != NULL ? (size_t)(end - p) : strlen(p));
}

int sl_listener_inherit(char *err, size_t errlen)
{
	const char *spid = getenv("LISTEN_PID"), *sfds = getenv("LISTEN_FDS");
	const char *names = getenv("LISTEN_FDNAMES");
	long pid = parse_count(spid, LONG_MAX / 10), n;
	int r = 0;

	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if (inh != NULL || activated)
		return (int)ninh;
	/* Another process's (an ancestor that did not unset them): not for
	 * us, and not for our children either. */
	if (spid == NULL || sfds == NULL) {
		snprintf(not_ours, sizeof not_ours, "LISTEN_FDS is not set");
		goto out;
	}
	if (pid != (long)getpid()) {
		snprintf(not_ours, sizeof not_ours,
			 "LISTEN_PID=%.16s is not this process", spid);
		goto out;
	}
	n = parse_count(sfds, INT_MAX - SD_LISTEN_FDS_START);
	if (n < 0) {
		r = sl_errf(err, errlen, -EINVAL,
			    "LISTEN_FDS=%.32s is not a number of descriptors",
			    sfds);
		goto out;
	}
	inh = calloc(n > 0 ? (size_t)n : 1, sizeof *inh);
	if (inh == NULL) {
		r = sl_errf(err, errlen, -ENOMEM, "out of memory");
		goto out;
	}
	for (long i = 0; i < n; i++) {
		int fd = SD_LISTEN_FDS_START + (int)i;

		if (fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
			r = sl_errf(err, errlen, -EINVAL,
				    "LISTEN_FDS=%ld: descriptor %d is not "
				    "open: %s",
				    n, fd, strerror(errno));
			goto out;
		}
		inh[ninh].fd = fd;
		if ((inh[ninh].name = nth_name(names, (size_t)i)) == NULL) {
			r = sl_errf(err, errlen, -ENOMEM, "out of memory");
			goto out;
		}
		ninh++;
	}
	activated = 1;
	r = (int)ninh;
out:
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	return r;
}

int sl_listener_activated(void)
{
	return activated;
}

size_t sl_listener_unused(char *buf, size_t len)
{
	size_t count = 0, at = 0;

	if (len > 0)
		buf[0] = '\0';
	for (size_t i = 0; i < ninh; i++) {
		int w;

		if (inh[i].taken)
			continue;
		w = snprintf(buf + at, len - at, "%s%s (position %zu)",
			     count > 0 ? ", " : "", inh[i].name, i);
		if (w > 0 && (size_t)w < len - at)
			at += (size_t)w;
		count++;
	}
	return count;
}

/* The entry ep names; -1 with err set when there is none, or more than
 * one by that name. */
static int inherited_find(const sl_listener *l, char *err, size_t errlen)
{
	const sl_endpoint *ep = &l->b.ep;
	int found = -1, second = -1;

	if (!activated)
		return sl_errf(err, errlen, -ENOENT,
			       "%s: no socket passed by systemd (%s): a "
			       "systemd: listener can only be opened, and "
			       "checked, when systemd starts sluice through "
			       "a .socket unit",
			       l->b.name, not_ours);
	if (ep->fd_index >= 0) {
		if ((size_t)ep->fd_index >= ninh)
			return sl_errf(err, errlen, -ENOENT,
				       "%s: systemd passed %zu socket(s); "
				       "positions start at 0",
				       l->b.name, ninh);
		return ep->fd_index;
	}
	for (size_t i = 0; i < ninh; i++) {
		if (strcmp(inh[i].name, ep->path) != 0)
			continue;
		if (found < 0)
			found = (int)i;
		else if (second < 0)
			second = (int)i;
	}
	if (found < 0) {
		char names[256] = "";
		size_t at = 0;

		for (size_t i = 0; i < ninh && at < sizeof names; i++) {
			int w = snprintf(names + at, sizeof names - at, "%s%s",
					 i > 0 ? ", " : "", inh[i].name);
			if (w > 0)
				at += (size_t)w;
		}
		return sl_errf(err, errlen, -ENOENT,
			       "%s: systemd passed no socket named '%s' "
			       "(FileDescriptorName=; passed: %s)",
			       l->b.name, ep->path,
			       ninh > 0 ? names : "none");
	}
	if (second >= 0)
		return sl_errf(err, errlen, -EINVAL,
			       "%s: systemd passed more than one socket named "
			       "'%s' (positions %d and %d): give each its own "
			       "FileDescriptorName=, or use systemd:POSITION",
			       l->b.name, ep->path, found, second);
	return found;
}

/*
 * Listen on a duplicate of the inherited socket ep names, once it is seen
 * to be what a listener needs: a stream socket (ListenStream=, not
 * ListenDatagram= or ListenSequentialPacket=), listening, of a family we
 * serve.  The original stays in the table, open.
 */
static int adopt_inherited(sl_listener *l, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss, olen;
	int i, type = 0, acc = 0, fl;

	if ((i = inherited_find(l, err, errlen)) < 0)
		return i;
	olen = sizeof type;
	if (getsockopt(inh[i].fd, SOL_SOCKET, SO_TYPE, &type, &olen) < 0)
		return sl_errf(err, errlen, -errno,
			       "%s: descriptor %d is not a socket: %s",
			       l->b.name, inh[i].fd, strerror(errno));
	if (type != SOCK_STREAM)
		return sl_errf(err, errlen, -EINVAL,
			       "%s: descriptor %d is not a stream socket "
			       "(expected ListenStream= in the .socket unit)",
			       l->b.name, inh[i].fd);
	olen = sizeof acc;
	if (getsockopt(inh[i].fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &olen) < 0 ||
	    !acc)
		return sl_errf(err, errlen, -EINVAL,
			       "%s: descriptor %d is not listening (expected "
			       "a listening socket; Accept=yes passes "
			       "connections instead)",
			       l->b.name, inh[i].fd);
	if (getsockname(inh[i].fd, (struct sockaddr *)&ss, &len) < 0)
		return sl_errf(err, errlen, -errno, "%s: getsockname: %s",
			       l->b.name, strerror(errno));
	if (ss.ss_family == AF_INET || ss.ss_family == AF_INET6)
		l->sock_kind = SL_EP_TCP;
	else if (ss.ss_family == AF_UNIX)
		l->sock_kind = SL_EP_UNIX;
	else
		return sl_errf(err, errlen, -EAFNOSUPPORT,
			       "%s: descriptor %d is neither a TCP nor a "
			       "Unix socket",
			       l->b.name, inh[i].fd);
	/* Non-blocking is the open file's, so the original has it too: it
	 * serves no one else. */
	fl = fcntl(inh[i].fd, F_GETFL);
	if (fl < 0 || fcntl(inh[i].fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return sl_errf(err, errlen, -errno, "%s: O_NONBLOCK: %s",
			       l->b.name, strerror(errno));
	l->fd = fcntl(inh[i].fd, F_DUPFD_CLOEXEC, SD_LISTEN_FDS_START);
	if (l->fd < 0)
		return sl_errf(err, errlen, -errno, "%s: dup: %s", l->b.name,
			       strerror(errno));
	sl_listen_tune(l->fd, l->sock_kind);
	inh[i].taken = 1;
	{
		char name[SL_EP_PATH_MAX + 16];

		if (sl_sockaddr_name((struct sockaddr *)&ss, len, name,
				     sizeof name) < 0)
			snprintf(name, sizeof name, "?");
		sl_info("%s: the socket systemd passed as descriptor %d, on "
			"%s",
			l->b.name, inh[i].fd, name);
	}
	return 0;
}

int sl_os_listener_open(sl_listener *l, const sl_listen_opts *opts,
			char *err, size_t errlen)
{
	if (l->b.ep.kind == SL_EP_SYSTEMD)
		return adopt_inherited(l, err, errlen);
	l->sock_kind = l->b.ep.kind;
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

	r = sl_stream_open_accepted(loop, fd, l->sock_kind, peer, peer_len, &s);
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
