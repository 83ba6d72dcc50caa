/*
 * The Windows stream, for the files that make it: stream_win.c (the task,
 * reading, writing, shutdown, closing) and connect_win.c (ConnectEx, a
 * pipe's CreateFile).  Internal to src/net.
 */
#ifndef SL_NET_STREAM_WIN_H
#define SL_NET_STREAM_WIN_H

#include "stream_common.h"
#include "win.h"

/* Flags of Windows streams only, after the common ones (stream_common.h). */
enum {
	ST_READ_POSTED = ST_OS(0), /* the read op is with the kernel */
	ST_TIMED_OUT = ST_OS(1),
	ST_EOF = ST_OS(2), /* read side ended */
	ST_DRAINING = ST_OS(3), /* pipes: the end waits for the reader */
};

struct sl_stream {
	struct sl_stream_base b; /* first: see stream_common.h */
	SOCKET sock;  /* SL_EP_TCP */
	HANDLE pipe;  /* SL_EP_PIPE */
	/* Pipes over two handles (sl_stream_open_pipe2): written to, and
	 * closed as the half-close; INVALID_HANDLE_VALUE: pipe is both. */
	HANDLE wpipe;
	int wskip;    /* wpipe is in skip mode */
	int pending;  /* operations the kernel still holds */
	int skip;     /* the handle is in skip mode (sl_op_started) */

	sl_op read_op;
	int read_err; /* pipes: error/EOF to hand out */
	unsigned char first; /* pipes: the byte the waiting read takes */
	int first_n;         /* pipes: 1 while that byte is not handed out */

	unsigned writes; /* sl_stream_write requests in flight */
	sl_op shut_op;   /* pipes: the zero-byte write */
	sl_op flush_op;  /* pipes: the flush before the end (its packet) */
	HANDLE flush_thread, flush_pipe; /* the flush's thread, its handle */
	sl_timer drain;  /* pipes: at close, cancels that flush again */

	sl_op conn_op;
	sl_timer retry;  /* pipes: ERROR_PIPE_BUSY */
	uint64_t busy_deadline;

	struct sockaddr_storage peer, local;
	int peer_len, local_len;
	char path[SL_EP_PATH_MAX];
};

/* Run the stream's task (its callbacks due, or its freeing) from the
 * loop, once however often it is asked for before then. */
static inline void sl_stream_schedule(sl_stream *s)
{
	if (s->b.flags & ST_TASK_QUEUED)
		return;
	s->b.flags |= ST_TASK_QUEUED;
	sl_loop_defer(s->b.loop, &s->b.task);
}

/* Free s when its closing is complete (nothing with the kernel, no
 * callback due); 1 then. */
int sl_stream_maybe_free(sl_stream *s);

/* The busy-pipe timer's callback (connect_win.c): CreateFile again. */
void sl_pipe_busy_retry(sl_timer *t);

#endif
