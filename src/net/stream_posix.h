/*
 * The POSIX stream, for the files that make it: stream_posix.c (the task,
 * the watcher, reading, writing, closing), connect_posix.c (connecting)
 * and splice_posix.c (forwarding).
 * Internal to src/net.
 */
#ifndef SL_NET_STREAM_POSIX_H
#define SL_NET_STREAM_POSIX_H

#include <netinet/in.h>

#include "posix.h"
#include "stream_common.h"

/* Reads per readiness event: enough to drain a burst, few enough that one
 * busy stream does not starve the others on its loop. */
#define SL_READS_PER_EVENT 4

/* Flags of POSIX streams only, after the common ones (stream_common.h). */
enum {
	ST_DRAINING = ST_OS(0),    /* loop freed: run completions in place */
	ST_FORWARDING = ST_OS(1),  /* source of a sl_stream_forward() */
	ST_FWD_EOF = ST_OS(2),     /* forwarding source read its EOF */
	ST_FWD_BLOCKED = ST_OS(3), /* forwarding: the destination is full */
	ST_END_FOLLOWS = ST_OS(4), /* in read_cb: SL_EOF comes next */
	ST_CORKED = ST_OS(5),      /* bytes held for the end (MSG_MORE) */
};

struct sl_stream {
	struct sl_stream_base b; /* first: see stream_common.h */
	int fd;
	sl_io io;

	sl_write_req *wq_head, *wq_tail; /* not fully written, in order */
	sl_write_req *done_head, *done_tail; /* written or failed: to call */
	int shutdown_due; /* shutdown(2) owed, at the end of this loop round */

	/* The peer's address as accept() gave it (TCP), so naming the
	 * client costs no getpeername(); peer_len 0: not known. */
	union {
		struct sockaddr sa;
		struct sockaddr_in in;
		struct sockaddr_in6 in6;
	} peer;
	socklen_t peer_len;

	/* Forwarding (sl_stream_forward): on the source, its destination,
	 * callback and the pipe holding bytes in flight (-1: none held); on
	 * the destination, fwd_src points back. */
	sl_stream *fwd_dst, *fwd_src;
	sl_forward_cb fwd_cb;
	int pipe[2];
	size_t in_pipe;
};

/* The watcher's callback: what the loop saw on s's descriptor. */
void sl_stream_on_io(sl_io *io, unsigned events);

/* Connecting (connect_posix.c): the watcher saw events on a connecting
 * s. */
void sl_connect_event(sl_stream *s, unsigned events);

/* Watch for what s waits for now (reading, writing, connecting, a
 * forward).  0 or -errno. */
int sl_stream_update_io(sl_stream *s);

/*
 * Forwarding (splice_posix.c).  sl_forward_pump: move what can be moved
 * now from s to its destination.  sl_forward_stop: s closes: forwarding
 * from and to it stops without a callback, and its pipe goes back.
 */
void sl_forward_pump(sl_stream *s);
void sl_forward_stop(sl_stream *s);

#endif
