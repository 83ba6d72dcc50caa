/*
 * The contract between loop_common.c (timers, tasks, groups, the run loop)
 * and the one backend compiled in (loop_epoll.c, loop_kqueue.c,
 * loop_iocp.c).  Nothing outside src/loop includes this file.
 */
#ifndef SL_LOOP_INTERNAL_H
#define SL_LOOP_INTERNAL_H

#include "loop.h"

#include <pthread.h>

struct sl_backend; /* defined by the backend */

struct sl_loop {
	/* timers: binary min-heap on (due, seq) */
	sl_timer **heap;
	size_t heap_len, heap_cap;
	uint64_t timer_seq;
	uint64_t now;

	/* cross-thread tasks: a lock-free stack of posted tasks, newest
	 * first, taken whole by the loop (atomic builtins only) */
	sl_task *tasks;

	/* deferred tasks: loop thread only */
	sl_task *defer_head, *defer_tail;

	volatile int stop; /* set by sl_loop_stop, read by the run loop */
	pthread_t thread;
	int running;
	unsigned index;
	void *data;

	struct sl_backend *be;
};

/*
 * Backend functions.  Each returns 0 or -errno.
 *
 * sl_backend_init: create the kernel object and the wake-up channel.
 * sl_backend_free: release them.
 * sl_backend_poll: wait at most timeout_ms (-1 = forever, 0 = don't block)
 *     for events and dispatch them; return early when woken.  Must call
 *     sl_loop_update_time() after waking and before dispatching.
 * sl_backend_wake: make a concurrent or the next sl_backend_poll return
 *     promptly.  Any thread; async-signal-safe where the backend allows.
 */
int sl_backend_init(sl_loop *loop);
void sl_backend_free(sl_loop *loop);
int sl_backend_poll(sl_loop *loop, int timeout_ms);
void sl_backend_wake(sl_loop *loop);

#endif
