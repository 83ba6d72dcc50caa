/*
 * Streams over POSIX descriptors: TCP and Unix sockets alike, as a
 * completion-style API emulated on the loop's level-triggered readiness
 * watchers (as libuv does on Unix).
 *
 * Every user callback but read and alloc is called from one deferred task
 * per stream (stream_task), never from the function that started the
 * operation.  sl_stream_close() only marks the stream, closes the descriptor
 * and turns every pending operation into a -ECANCELED completion; the task
 * then runs those callbacks, the close callback, and frees.  So the stream's
 * memory outlives every callback, and code that calls a user callback only
 * has to re-check the flags afterwards, never whether the stream still
 * exists.
 */
#include "stream_posix.h"

#include <errno.h>
#include <stddef.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/uio.h>

#include "resolver.h"

#define SL_READ_SUGGEST 65536
/* Queued requests gathered into one sendmsg(). */
#define SL_WRITE_IOV 16

/* A request's completion status lives in its first implementation slot. */
static void req_set_status(sl_write_req *req, int status)
{
	req->impl[0] = (void *)(intptr_t)status;
}

static int req_status(const sl_write_req *req)
{
	return (int)(intptr_t)req->impl[0];
}

/* ---- the completion task ----------------------------------------------- */

static void stream_task(sl_task *t, int status);

static void schedule(sl_stream *s)
{
	if (s->b.flags & (ST_TASK_QUEUED | ST_DRAINING))
		return;
	s->b.flags |= ST_TASK_QUEUED;
	sl_loop_defer(s->b.loop, &s->b.task);
}

static int pending(const sl_stream *s)
{
	return s->b.connect_ready || s->done_head != NULL ||
	       s->b.shutdown_ready || s->shutdown_due;
}

/* Run the completions present now; the ones they cause run next time. */
static void run_completions(sl_stream *s)
{
	sl_write_req *list, *req;

	if (s->shutdown_due) {
		s->shutdown_due = 0;
		s->b.flags &= ~ST_CORKED; /* the FIN goes with the held bytes */
		s->b.shutdown_status =
			shutdown(s->fd, SHUT_WR) < 0 ? -errno : 0;
		s->b.shutdown_ready = 1;
	}
	if ((s->b.flags & ST_CORKED) && !(s->b.flags & ST_CLOSING)) {
		/* The end that SL_WRITE_END_NEXT announced did not come this
		 * round: send the held bytes now (setting TCP_NODELAY pushes
		 * what is pending, Linux tcp(7)). */
		int one = 1;

		s->b.flags &= ~ST_CORKED;
		setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	}
	if (s->b.connect_ready) {
		sl_connect_cb cb = s->b.connect_cb;

		s->b.connect_ready = 0;
		s->b.connect_cb = NULL;
		cb(s, s->b.connect_status);
	}
	list = s->done_head;
	s->done_head = s->done_tail = NULL;
	while ((req = list) != NULL) {
		list = req->next;
		req->next = NULL;
		req->cb(req, req_status(req));
	}
	/* After every write callback, also those queued meanwhile. */
	if (s->b.shutdown_ready && s->done_head == NULL) {
		sl_shutdown_cb cb = s->b.shutdown_cb;

		s->b.shutdown_ready = 0;
		s->b.shutdown_cb = NULL;
		if (cb != NULL)
			cb(s, s->b.shutdown_status);
	}
}

static void stream_task(sl_task *t, int status)
{
	sl_stream *s = t->data;

	s->b.flags &= ~ST_TASK_QUEUED;
	if (status != 0) {
		/* The loop is being freed.  A live stream stays for its owner
		 * to close; a closing one completes here and now, so its
		 * owner can still release what the callbacks hold. */
		if (!(s->b.flags & ST_CLOSING))
			return;
		s->b.flags |= ST_DRAINING;
		while (pending(s))
			run_completions(s);
	} else {
		run_completions(s);
	}
	if ((s->b.flags & ST_CLOSING) && !(s->b.flags & ST_TASK_QUEUED) &&
	    !pending(s)) {
		if (s->b.close_cb != NULL)
			s->b.close_cb(s);
		free(s);
	}
}

/* ---- watcher ------------------------------------------------------------ */

int sl_stream_update_io(sl_stream *s)
{
	unsigned want = 0;

	if (s->fd < 0 || (s->b.flags & ST_CLOSING))
		return 0;
	if (s->b.flags & ST_CONNECTING) {
		want = SL_IO_WRITE;
	} else {
		if (s->b.flags & ST_READING)
			want |= SL_IO_READ;
		if (s->wq_head != NULL)
			want |= SL_IO_WRITE;
		if ((s->b.flags &
		     (ST_FORWARDING | ST_FWD_BLOCKED | ST_FWD_EOF)) ==
		    ST_FORWARDING)
			want |= SL_IO_READ;
		if (s->fwd_src != NULL &&
		    (s->fwd_src->b.flags & ST_FWD_BLOCKED))
			want |= SL_IO_WRITE;
	}
	if (want == s->io.want)
		return 0;
	return sl_io_set(&s->io, want);
}

/* req was written (status 0) or failed: its callback runs from the task. */
static void write_done(sl_stream *s, sl_write_req *req, int status)
{
	req->next = NULL;
	req_set_status(req, status);
	if (s->done_tail != NULL)
		s->done_tail->next = req;
	else
		s->done_head = req;
	s->done_tail = req;
}

static void fail_writes(sl_stream *s, int err)
{
	sl_write_req *req;

	while ((req = s->wq_head) != NULL) {
		s->wq_head = req->next;
		write_done(s, req, err);
	}
	s->wq_tail = NULL;
	s->b.wq_bytes = 0;
	if (s->b.flags & ST_SHUT_WANTED)
		sl_stream_shutdown_fail(&s->b, err);
	schedule(s);
}

/*
 * The write half ends at the end of this loop round, not at once: when the
 * owner closes the stream before then (a proxy that sees both ends finish
 * in one round of events), the close sends the FIN and the shutdown(2) is
 * never made; its callback then gets -ECANCELED, as for any close.
 */
static void do_shutdown(sl_stream *s)
{
	s->b.flags &= ~ST_SHUT_WANTED;
	s->b.flags |= ST_SHUT_DONE;
	s->shutdown_due = 1;
	schedule(s);
}

/* Write what the kernel takes; never calls a user callback. */
static void flush(sl_stream *s)
{
	struct iovec iov[SL_WRITE_IOV];
	struct msghdr msg;
	sl_write_req *req;
	size_t total, left, wrote;
	ssize_t r;
	int n, err;

	while (s->wq_head != NULL) {
		n = 0;
		total = 0;
		for (req = s->wq_head; req != NULL && n < SL_WRITE_IOV;
		     req = req->next, n++) {
			iov[n].iov_base = (char *)req->buf + req->done;
			iov[n].iov_len = req->len - req->done;
			total += iov[n].iov_len;
		}
		memset(&msg, 0, sizeof msg);
		msg.msg_iov = iov;
		msg.msg_iovlen = n;
		r = sendmsg(s->fd, &msg, SL_MSG_NOSIGNAL);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			err = -errno;
			s->b.write_err = err;
			fail_writes(s, err);
			/* Drop the write interest, or a level-triggered
			 * error would wake this loop for nothing, forever. */
			sl_stream_update_io(s);
			return;
		}
		wrote = (size_t)r;
		s->b.flags &= ~ST_CORKED; /* this send pushed what was held */
		s->b.wq_bytes -= wrote;
		while ((req = s->wq_head) != NULL) {
			left = req->len - req->done;
			if ((size_t)r < left) {
				req->done += (size_t)r;
				break;
			}
			r -= (ssize_t)left;
			req->done = req->len;
			s->wq_head = req->next;
			if (s->wq_head == NULL)
				s->wq_tail = NULL;
			write_done(s, req, 0);
		}
		if (s->done_head != NULL)
			schedule(s);
		if (wrote < total)
			break; /* short write: the socket buffer is full */
	}
	if (s->wq_head == NULL && (s->b.flags & ST_SHUT_WANTED))
		do_shutdown(s);
	err = sl_stream_update_io(s);
	if (err < 0) {
		s->b.write_err = err;
		fail_writes(s, err);
	}
}

/*
 * `eof_known`: the event said the peer has shut down its write side and
 * carried no error.  A read shorter than its buffer then has drained
 * everything the peer will ever send (bytes arrive in order, the FIN last),
 * so the end is reported at once, sparing the read that would return 0 and
 * the loop round before it (libuv and HAProxy do the same).  Should a reset
 * follow that FIN, nothing the peer sent is lost: a later write sees it.
 */
static void do_read(sl_stream *s, int eof_known)
{
	sl_buf buf;
	ssize_t n;
	int err;

	for (int i = 0; i < SL_READS_PER_EVENT; i++) {
		if (!(s->b.flags & ST_READING))
			return;
		buf.base = NULL;
		buf.len = 0;
		s->b.alloc_cb(s, SL_READ_SUGGEST, &buf);
		if (!(s->b.flags & ST_READING))
			return;
		if (buf.base == NULL || buf.len == 0) {
			err = -ENOBUFS;
			goto stop;
		}
		do
			n = recv(s->fd, buf.base, buf.len, 0);
		while (n < 0 && errno == EINTR);
		if (n > 0) {
			if (eof_known && (size_t)n < buf.len)
				s->b.flags |= ST_END_FOLLOWS;
			s->b.read_cb(s, (ptrdiff_t)n, &buf);
			s->b.flags &= ~ST_END_FOLLOWS;
			if ((size_t)n < buf.len) {
				if (!eof_known || !(s->b.flags & ST_READING))
					return; /* drained: spare the EAGAIN */
				/* The end, with a buffer of its own as
				 * every read callback gets. */
				buf.base = NULL;
				buf.len = 0;
				s->b.alloc_cb(s, SL_READ_SUGGEST, &buf);
				if (!(s->b.flags & ST_READING))
					return;
				err = SL_EOF;
				goto stop;
			}
			continue;
		}
		if (n == 0) {
			/* An error the event carried (kqueue) was taken off
			 * the socket: recv() then shows an orderly end. */
			err = s->io.error != 0 ? -s->io.error : SL_EOF;
			goto stop;
		}
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			s->b.read_cb(s, 0, &buf);
			return;
		}
		err = -errno;
		goto stop;
	}
	return;
stop:
	s->b.flags &= ~ST_READING;
	sl_stream_update_io(s);
	s->b.read_cb(s, err, &buf);
}

void sl_stream_on_io(sl_io *io, unsigned events)
{
	sl_stream *s = io->data;

	if (s->b.flags & ST_CONNECTING) {
		sl_connect_event(s, events);
		return;
	}
	if ((events & (SL_IO_WRITE | SL_IO_ERROR | SL_IO_HUP)) &&
	    s->wq_head != NULL)
		flush(s);
	if ((events & (SL_IO_WRITE | SL_IO_ERROR | SL_IO_HUP)) &&
	    s->fwd_src != NULL && (s->fwd_src->b.flags & ST_FWD_BLOCKED))
		sl_forward_pump(s->fwd_src);
	if ((events & (SL_IO_READ | SL_IO_ERROR | SL_IO_HUP)) &&
	    (s->b.flags & ST_READING))
		do_read(s, (events & (SL_IO_RDHUP | SL_IO_ERROR)) ==
				   SL_IO_RDHUP && s->io.error == 0);
	if ((events & (SL_IO_READ | SL_IO_ERROR | SL_IO_HUP)) &&
	    (s->b.flags & ST_FORWARDING) &&
	    !(s->b.flags & (ST_FWD_BLOCKED | ST_CLOSING)))
		sl_forward_pump(s);
}

/* ---- creation, the end of a connect ------------------------------------- */

sl_stream *sl_os_stream_new(sl_loop *loop, enum sl_ep_kind kind)
{
	sl_stream *s = calloc(1, sizeof *s);

	if (s == NULL)
		return NULL;
	sl_stream_init(s, loop, kind, stream_task);
	s->fd = -1;
	s->pipe[0] = s->pipe[1] = -1;
	return s;
}

/* A stream for fd, which it takes over (closes when out of memory). */
static sl_stream *stream_on_fd(sl_loop *loop, int fd, enum sl_ep_kind kind)
{
	sl_stream *s = sl_os_stream_new(loop, kind);

	if (s == NULL) {
		close(fd);
		return NULL;
	}
	s->fd = fd;
	return s;
}

int sl_stream_open_fd(sl_loop *loop, int fd, enum sl_ep_kind kind,
		      sl_stream **out)
{
	sl_stream *s = stream_on_fd(loop, fd, kind);

	if (s == NULL)
		return -ENOMEM;
	if (kind == SL_EP_TCP)
		sl_tcp_nodelay(fd);
	sl_io_init(loop, &s->io, fd, sl_stream_on_io, s);
	*out = s;
	return 0;
}

int sl_stream_open_accepted(sl_loop *loop, int fd, enum sl_ep_kind kind,
			    const struct sockaddr *peer, socklen_t len,
			    sl_stream **out)
{
	sl_stream *s = stream_on_fd(loop, fd, kind);

	if (s == NULL)
		return -ENOMEM;
	if (peer != NULL && len > 0 && (size_t)len <= sizeof s->peer &&
	    (peer->sa_family == AF_INET || peer->sa_family == AF_INET6)) {
		memcpy(&s->peer, peer, (size_t)len);
		s->peer_len = len;
	}
#if !(defined(__linux__) || defined(__FreeBSD__) || defined(__APPLE__))
	/* Elsewhere TCP_NODELAY may not pass from the listening socket to
	 * the accepted one (it does on these three): set it here. */
	if (kind == SL_EP_TCP)
		sl_tcp_nodelay(fd);
#endif
	sl_io_init(loop, &s->io, fd, sl_stream_on_io, s);
	*out = s;
	return 0;
}

int sl_stream_set_keepalive(sl_stream *s, const sl_keepalive *ka)
{
	if (s->b.kind != SL_EP_TCP || s->fd < 0)
		return 0;
	return sl_tcp_keepalive(s->fd, ka);
}

void sl_os_connect_finish(sl_stream *s, int status)
{
	sl_timer_stop(&s->b.timer);
	s->b.flags &= ~ST_CONNECTING;
	free(s->b.addrs);
	s->b.addrs = NULL;
	s->b.naddrs = s->b.next_addr = 0;
	if (status == 0) {
		status = sl_stream_update_io(s);
		if (status == 0 && s->wq_head != NULL)
			flush(s);
		else if (status == 0 && (s->b.flags & ST_SHUT_WANTED))
			do_shutdown(s);
	}
	if (status < 0) {
		if (s->fd >= 0) {
			sl_io_forget(&s->io);
			close(s->fd);
			s->fd = -1;
		}
		s->b.flags &= ~ST_READING;
		fail_writes(s, status);
	}
	s->b.connect_status = status;
	s->b.connect_ready = 1;
	schedule(s);
}

/* ---- the stream API ----------------------------------------------------- */

int sl_stream_read_start(sl_stream *s, sl_alloc_cb alloc, sl_read_cb cb)
{
	int r;

	if (s == NULL || alloc == NULL || cb == NULL)
		return -EINVAL;
	if (s->b.flags & ST_CLOSING)
		return -EBADF;
	if (s->b.flags & ST_FORWARDING)
		return -EINVAL; /* its bytes go to the forward's destination */
	if (s->fd < 0 && !(s->b.flags & ST_CONNECTING))
		return -ENOTCONN;
	if (!sl_stream_read_set(&s->b, alloc, cb))
		return 0;
	r = sl_stream_update_io(s);
	if (r < 0)
		s->b.flags &= ~ST_READING;
	return r;
}

int sl_stream_read_stop(sl_stream *s)
{
	if (s == NULL)
		return -EINVAL;
	if (!(s->b.flags & ST_READING))
		return 0;
	s->b.flags &= ~ST_READING;
	return sl_stream_update_io(s);
}

int sl_stream_write(sl_stream *s, sl_write_req *req, const void *buf,
		    size_t len, sl_write_cb cb)
{
	if (s == NULL || req == NULL || (buf == NULL && len > 0) ||
	    s->fwd_src != NULL) /* bytes of a forward would interleave */
		return -EINVAL;
	if (s->b.flags & ST_CLOSING)
		return -EBADF;
	if (s->b.write_err != 0)
		return s->b.write_err;
	if (s->b.flags & (ST_SHUT_WANTED | ST_SHUT_DONE))
		return -EPIPE;
	if (s->fd < 0 && !(s->b.flags & ST_CONNECTING))
		return -ENOTCONN;
	sl_write_req_init(req, s, buf, len, cb);
	req_set_status(req, 0);
	if (s->wq_tail != NULL)
		s->wq_tail->next = req;
	else
		s->wq_head = req;
	s->wq_tail = req;
	s->b.wq_bytes += len;
	/* With older requests queued, the armed watcher writes this one. */
	if (s->wq_head == req && !(s->b.flags & ST_CONNECTING))
		flush(s);
	return 0;
}

int sl_stream_end_follows(const sl_stream *s)
{
	return s != NULL && (s->b.flags & ST_END_FOLLOWS) != 0;
}

ptrdiff_t sl_stream_try_write(sl_stream *s, const void *buf, size_t len,
			      unsigned flags)
{
	int more = 0;
	ssize_t r;

	if (s == NULL || (buf == NULL && len > 0) || s->fwd_src != NULL)
		return -EINVAL;
	if (s->b.flags & ST_CLOSING)
		return -EBADF;
	if (s->b.flags & ST_CONNECTING)
		return -EAGAIN;
	if (s->fd < 0)
		return -ENOTCONN;
	if (s->b.write_err != 0)
		return s->b.write_err;
	if (s->b.flags & (ST_SHUT_WANTED | ST_SHUT_DONE))
		return -EPIPE;
	if (s->wq_head != NULL)
		return -EAGAIN;
	if (len == 0)
		return 0;
	/* The end follows: hold the last bytes so that they and the FIN
	 * leave in one segment, not two (HAProxy does the same); the stream's
	 * task pushes them should the end not come this round. */
	if ((flags & SL_WRITE_END_NEXT) && s->b.kind == SL_EP_TCP)
		more = SL_MSG_MORE;
	do
		r = send(s->fd, buf, len, SL_MSG_NOSIGNAL | more);
	while (r < 0 && errno == EINTR);
	if (r < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	if (more) {
		s->b.flags |= ST_CORKED;
		schedule(s);
	}
	return (ptrdiff_t)r;
}

int sl_stream_shutdown(sl_stream *s, sl_shutdown_cb cb)
{
	if (s == NULL)
		return -EINVAL;
	if (s->b.flags & ST_CLOSING)
		return -EBADF;
	if ((s->b.flags & (ST_SHUT_WANTED | ST_SHUT_DONE)) ||
	    s->b.shutdown_ready)
		return -EALREADY;
	if (s->fd < 0 && !(s->b.flags & ST_CONNECTING))
		return -ENOTCONN;
	if (sl_stream_shutdown_set(&s->b, cb) != 0)
		schedule(s); /* the queue was already failed */
	else if (!(s->b.flags & ST_CONNECTING) && s->wq_head == NULL)
		do_shutdown(s);
	return 0;
}

void sl_os_stream_close(sl_stream *s, int reset)
{
	/* Forwarding stops without a callback, both ways. */
	if (s->fwd_dst != NULL || (s->b.flags & ST_FORWARDING) ||
	    s->fwd_src != NULL || s->pipe[0] >= 0)
		sl_forward_stop(s);
	if (s->fd >= 0) {
		sl_io_forget(&s->io);
		if (reset && s->b.kind == SL_EP_TCP &&
		    !(s->b.flags & ST_CONNECTING)) {
			struct linger lg = {1, 0};

			setsockopt(s->fd, SOL_SOCKET, SO_LINGER, &lg,
				   sizeof lg);
		}
		close(s->fd);
		s->fd = -1;
	}
	fail_writes(s, -ECANCELED); /* schedules the task */
	s->shutdown_due = 0; /* the close sent the FIN, or the RST */
	if (s->b.shutdown_cb != NULL && !s->b.shutdown_ready) {
		s->b.shutdown_status = -ECANCELED;
		s->b.shutdown_ready = 1;
	}
}

/*
 * The address of s's peer (peer != 0) or of its own end: the one accept()
 * gave, kept in s, or what getpeername(2) or getsockname(2) write in *ss.
 */
static int sockaddr_of(const sl_stream *s, int peer,
		       struct sockaddr_storage *ss, const struct sockaddr **sa,
		       socklen_t *len)
{
	int r;

	if (s->fd < 0)
		return -ENOTCONN;
	if (peer && s->peer_len > 0) {
		*sa = &s->peer.sa;
		*len = s->peer_len;
		return 0;
	}
	memset(ss, 0, sizeof *ss);
	*len = sizeof *ss;
	r = peer ? getpeername(s->fd, (struct sockaddr *)ss, len)
		 : getsockname(s->fd, (struct sockaddr *)ss, len);
	if (r < 0)
		return -errno;
	*sa = (const struct sockaddr *)ss;
	return 0;
}

int sl_os_stream_name(const sl_stream *s, int peer, char *buf, size_t len)
{
	struct sockaddr_storage ss;
	const struct sockaddr *sa = NULL;
	socklen_t sl = 0;
	int r = sockaddr_of(s, peer, &ss, &sa, &sl);

	return r < 0 ? r : sl_sockaddr_name(sa, sl, buf, len);
}

int sl_os_stream_addr(const sl_stream *s, int peer, sl_ipaddr *out)
{
	struct sockaddr_storage ss;
	const struct sockaddr *sa = NULL;
	socklen_t sl = 0;
	int r;

	if (s->fd >= 0 && s->b.kind != SL_EP_TCP)
		return 0; /* a Unix socket has no IP address */
	if ((r = sockaddr_of(s, peer, &ss, &sa, &sl)) < 0)
		return r;
	sl_sockaddr_ip(sa, sl, out);
	return 0;
}
