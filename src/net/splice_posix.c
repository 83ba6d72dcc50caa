/*
 * Forwarding between two POSIX streams inside this layer
 * (sl_stream_forward): Linux moves the bytes with splice(2) through a
 * pipe, never through user memory.  The stream's watcher (stream_posix.c)
 * calls sl_forward_pump when the source can be read or the blocked
 * destination written.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* glibc: splice */
#endif
#include "stream_posix.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#if defined(HAVE_SPLICE) && HAVE_SPLICE && defined(HAVE_PIPE2) && HAVE_PIPE2
#define SL_CAN_FORWARD 1

/*
 * Pipes for splice(2), pooled per thread (each loop is one thread): a
 * session holds one only while bytes are in flight, so idle sessions cost
 * no descriptors and no pipe buffers, and a busy one costs no pipe() per
 * burst.  An empty pipe goes back to the pool; one that is closed with
 * bytes still in it is closed, never reused.
 */
#define SL_PIPE_POOL 16
#define SL_PIPE_CHUNK (1u << 20) /* splice asks for up to this; the pipe
				  * takes what fits (64 KiB by default) */
#define SL_PIPE_MIN 65536        /* a pipe holds at least this much */

struct pipe_pool {
	int n;
	int fds[SL_PIPE_POOL][2];
};

static pthread_key_t pool_key;
/* Pipes that exist (held or pooled) and how many may; see
 * sl_net_set_pipe_limit. */
static atomic_ulong pipes_open, pipes_max = ULONG_MAX;
static pthread_once_t pool_once = PTHREAD_ONCE_INIT;

static void pool_free(void *arg)
{
	struct pipe_pool *pp = arg;

	for (int i = 0; i < pp->n; i++) {
		close(pp->fds[i][0]);
		close(pp->fds[i][1]);
		atomic_fetch_sub(&pipes_open, 1);
	}
	free(pp);
}

static void pool_init(void)
{
	(void)pthread_key_create(&pool_key, pool_free);
}

static int pipe_get(sl_stream *s)
{
	struct pipe_pool *pp;

	pthread_once(&pool_once, pool_init);
	pp = pthread_getspecific(pool_key);
	if (pp != NULL && pp->n > 0) {
		pp->n--;
		s->pipe[0] = pp->fds[pp->n][0];
		s->pipe[1] = pp->fds[pp->n][1];
		return 0;
	}
	/* Over the limit: as if out of descriptors (the owner copies). */
	if (atomic_fetch_add(&pipes_open, 1) >= atomic_load(&pipes_max)) {
		atomic_fetch_sub(&pipes_open, 1);
		s->pipe[0] = s->pipe[1] = -1;
		return -EMFILE;
	}
	if (pipe2(s->pipe, O_NONBLOCK | O_CLOEXEC) < 0) {
		atomic_fetch_sub(&pipes_open, 1);
		s->pipe[0] = s->pipe[1] = -1;
		return -errno;
	}
	return 0;
}

static void pipe_put(sl_stream *s)
{
	struct pipe_pool *pp;

	if (s->pipe[0] < 0)
		return;
	pp = pthread_getspecific(pool_key);
	if (pp == NULL && (pp = calloc(1, sizeof *pp)) != NULL &&
	    pthread_setspecific(pool_key, pp) != 0) {
		free(pp);
		pp = NULL;
	}
	if (s->in_pipe == 0 && pp != NULL && pp->n < SL_PIPE_POOL) {
		pp->fds[pp->n][0] = s->pipe[0];
		pp->fds[pp->n][1] = s->pipe[1];
		pp->n++;
	} else {
		close(s->pipe[0]);
		close(s->pipe[1]);
		atomic_fetch_sub(&pipes_open, 1);
	}
	s->pipe[0] = s->pipe[1] = -1;
	s->in_pipe = 0;
}

void sl_net_set_pipe_limit(unsigned long n)
{
	atomic_store(&pipes_max, n);
}
#else
static void pipe_put(sl_stream *s)
{
	(void)s;
}

void sl_net_set_pipe_limit(unsigned long n)
{
	(void)n; /* no forwarding here: no pipes */
}
#endif

/* Stop forwarding from s; no callback. */
static void fwd_detach(sl_stream *s)
{
	sl_stream *d = s->fwd_dst;

	s->b.flags &= ~(ST_FORWARDING | ST_FWD_BLOCKED);
	s->fwd_dst = NULL;
	pipe_put(s);
	if (d != NULL) {
		d->fwd_src = NULL;
		sl_stream_update_io(d);
	}
	sl_stream_update_io(s);
}

void sl_forward_stop(sl_stream *s)
{
	if (s->fwd_dst != NULL || (s->b.flags & ST_FORWARDING))
		fwd_detach(s);
	if (s->fwd_src != NULL)
		fwd_detach(s->fwd_src);
	pipe_put(s);
}

#ifdef SL_CAN_FORWARD
/* Forwarding ended on err (SL_EOF included): tell the owner, once. */
static void fwd_end(sl_stream *s, ptrdiff_t err, sl_stream *side)
{
	sl_forward_cb cb = s->fwd_cb;

	fwd_detach(s);
	s->fwd_cb = NULL;
	if (cb != NULL)
		cb(s, err, side);
}

/*
 * Move what can be moved now: socket -> pipe -> socket, a few rounds per
 * event, like do_read.  The source is read only while its pipe is empty,
 * so at most one pipe's worth is in flight per direction (back-pressure).
 */
void sl_forward_pump(sl_stream *s)
{
	sl_stream *d = s->fwd_dst;
	ssize_t n;
	int r, last = 0;

	for (int i = 0; i < SL_READS_PER_EVENT; i++) {
		if (s->in_pipe == 0 && !(s->b.flags & ST_FWD_EOF)) {
			if (s->pipe[0] < 0 && (r = pipe_get(s)) < 0) {
				/* No descriptor for a pipe: nothing is in
				 * flight, the owner can copy instead. */
				fwd_end(s, SL_EFWD, s);
				return;
			}
			do
				n = splice(s->fd, NULL, s->pipe[1], NULL,
					   SL_PIPE_CHUNK,
					   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
			while (n < 0 && errno == EINTR);
			if (n == 0) {
				s->b.flags |= ST_FWD_EOF;
			} else if (n < 0) {
				if (errno == EAGAIN || errno == EWOULDBLOCK)
					break;
				fwd_end(s, -errno, s);
				return;
			} else {
				s->in_pipe = (size_t)n;
				/* Less than a pipe's worth: the socket is
				 * most likely drained; spare the EAGAIN
				 * (level-triggered: more data wakes us). */
				if ((size_t)n < SL_PIPE_MIN)
					last = 1;
			}
		}
		while (s->in_pipe > 0) {
			do
				n = splice(s->pipe[0], NULL, d->fd, NULL,
					   s->in_pipe,
					   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
			while (n < 0 && errno == EINTR);
			if (n < 0) {
				if (errno == EAGAIN || errno == EWOULDBLOCK) {
					s->b.flags |= ST_FWD_BLOCKED;
					sl_stream_update_io(s);
					sl_stream_update_io(d);
					return;
				}
				fwd_end(s, -errno, d);
				return;
			}
			s->in_pipe -= (size_t)n;
			if (s->b.flags & ST_FWD_BLOCKED) {
				s->b.flags &= ~ST_FWD_BLOCKED;
				sl_stream_update_io(d);
			}
			s->fwd_cb(s, (ptrdiff_t)n, NULL);
			if (!(s->b.flags & ST_FORWARDING) ||
			    (s->b.flags & ST_CLOSING))
				return; /* stopped or closed by the callback */
		}
		if (s->b.flags & ST_FWD_EOF) {
			fwd_end(s, SL_EOF, s);
			return;
		}
		if (last)
			break;
	}
	/* Between bursts the pipe goes back to the pool. */
	if (s->in_pipe == 0)
		pipe_put(s);
	sl_stream_update_io(s);
}
#else
void sl_forward_pump(sl_stream *s)
{
	(void)s;
}
#endif

int sl_stream_can_forward(const sl_stream *src, const sl_stream *dst)
{
#ifdef SL_CAN_FORWARD
	/* TCP only: splice to and from other sockets depends on the kernel
	 * version, and a failure with bytes in the pipe could not be undone. */
	return src != NULL && dst != NULL && src->b.kind == SL_EP_TCP &&
	       dst->b.kind == SL_EP_TCP;
#else
	(void)src;
	(void)dst;
	return 0;
#endif
}

int sl_stream_forward(sl_stream *src, sl_stream *dst, sl_forward_cb cb)
{
	if (src == NULL || dst == NULL || cb == NULL || src == dst)
		return -EINVAL;
#ifdef SL_CAN_FORWARD
	if (!sl_stream_can_forward(src, dst))
		return SL_EUNSUPP;
	if ((src->b.flags & (ST_CLOSING | ST_CONNECTING | ST_READING |
			   ST_FORWARDING | ST_FWD_EOF)) ||
	    (dst->b.flags & (ST_CLOSING | ST_CONNECTING)) ||
	    dst->fwd_src != NULL || src->fd < 0 || dst->fd < 0)
		return -EINVAL;
	src->fwd_dst = dst;
	src->fwd_cb = cb;
	dst->fwd_src = src;
	src->b.flags |= ST_FORWARDING;
	return sl_stream_update_io(src);
#else
	return SL_EUNSUPP;
#endif
}
