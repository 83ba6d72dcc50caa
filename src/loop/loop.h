/*
 * sluice event loops: one loop per thread, a timer heap, a cross-thread task
 * queue, and (on readiness backends) I/O watchers.  The backend (epoll,
 * kqueue, IOCP) is chosen at configure time; this header is the whole API
 * the rest of sluice sees.
 *
 * Threading: every function here must be called on the loop's own thread,
 * except sl_loop_post(), sl_loop_stop() and the sl_group_* functions, which
 * any thread may call.
 *
 * Errors: 0 on success, a negative errno value (-ENOMEM, ...) on failure.
 */
#ifndef SL_LOOP_H
#define SL_LOOP_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct sl_loop sl_loop;
typedef struct sl_group sl_group;

/* ---- tasks ------------------------------------------------------------ */

typedef struct sl_task sl_task;

/*
 * status is 0 when the task runs normally, -ECANCELED when the loop is freed
 * with the task still queued (the task must then only release what it owns).
 */
typedef void (*sl_task_fn)(sl_task *t, int status);

/* Intrusive: embed in the object the task works on; posting never fails. */
struct sl_task {
	sl_task *next; /* owned by the queue while posted */
	sl_task_fn fn;
	void *data;
};

static inline void sl_task_init(sl_task *t, sl_task_fn fn, void *data)
{
	t->next = NULL;
	t->fn = fn;
	t->data = data;
}

/*
 * Queue t to run on loop's thread, in posting order.  Any thread.  A task
 * must not be posted again before it has run.  Wakes the loop only when its
 * queue goes from empty to non-empty, so a burst costs one wake-up.
 */
void sl_loop_post(sl_loop *loop, sl_task *t);

/*
 * Queue t to run on this loop after the current batch of events has been
 * dispatched (before the loop sleeps again).  Loop thread only.  Used to
 * free objects that a later event of the same batch may still name.
 */
void sl_loop_defer(sl_loop *loop, sl_task *t);

/* ---- wait groups ------------------------------------------------------ */

/*
 * A count of things under way on any thread (closes, mostly) that someone
 * waits for, without them knowing who: the owner hands the group to the
 * module that starts them.  sl_wg_add() before one starts, sl_wg_done()
 * once it is over (any thread); the done that brings the count back to 0
 * calls zero(arg) on its own thread, so zero must be thread-safe and
 * short (posting a task is the usual answer).
 */
typedef struct sl_wg {
	atomic_int n;
	void (*zero)(void *arg);
	void *arg;
} sl_wg;

void sl_wg_init(sl_wg *wg, void (*zero)(void *arg), void *arg);
void sl_wg_add(sl_wg *wg);
void sl_wg_done(sl_wg *wg);
/* Non-zero when nothing is under way.  Any thread. */
int sl_wg_idle(sl_wg *wg);

/* ---- timers ----------------------------------------------------------- */

typedef struct sl_timer sl_timer;
typedef void (*sl_timer_cb)(sl_timer *t);

/* Intrusive: embed in the owner; no allocation, cannot fail. */
struct sl_timer {
	sl_loop *loop;
	sl_timer_cb cb;
	void *data;
	uint64_t due;    /* loop clock, ms */
	uint64_t seq;    /* tie-break: equal deadlines fire in start order */
	size_t heap_idx; /* SL_TIMER_IDLE when not armed */
};

#define SL_TIMER_IDLE ((size_t)-1)

void sl_timer_init(sl_loop *loop, sl_timer *t, sl_timer_cb cb, void *data);
/* Arm (or re-arm) to fire once, ms milliseconds from the loop's now. */
void sl_timer_start(sl_timer *t, uint64_t ms);
/* Disarm; harmless when not armed.  The callback will not run after this. */
void sl_timer_stop(sl_timer *t);

static inline int sl_timer_active(const sl_timer *t)
{
	return t->heap_idx != SL_TIMER_IDLE;
}

/* ---- loops ------------------------------------------------------------ */

/* Name of the backend compiled in: "epoll", "kqueue" or "iocp". */
const char *sl_loop_backend(void);

int sl_loop_new(sl_loop **out);

/*
 * Free a loop that is not running.  Tasks still queued are called with
 * -ECANCELED; deferred tasks likewise.  Armed timers are dropped (their
 * owners must have been torn down first).
 */
void sl_loop_free(sl_loop *loop);

/*
 * Call the tasks still queued on a loop that is not running (posted and
 * deferred, and those their calls queue) with -ECANCELED, now: before an
 * owner frees the memory its posted tasks live in, once no thread can
 * post to it any more.  sl_loop_free() does this too.
 */
void sl_loop_cancel_tasks(sl_loop *loop);

/* Run on the calling thread until sl_loop_stop().  Returns 0 or -errno. */
int sl_loop_run(sl_loop *loop);

/* Make sl_loop_run() return after the current iteration.  Any thread. */
void sl_loop_stop(sl_loop *loop);

/* Cached monotonic clock in ms, updated once per iteration. */
uint64_t sl_loop_now(const sl_loop *loop);
void sl_loop_update_time(sl_loop *loop);

/* Non-zero when called on the thread currently running loop. */
int sl_loop_is_current(const sl_loop *loop);

/* Index of this loop in its group (0 for a loop outside any group). */
unsigned sl_loop_index(const sl_loop *loop);

/* Opaque pointer slot for the layer above (e.g. per-loop proxy state). */
void sl_loop_set_data(sl_loop *loop, void *data);
void *sl_loop_get_data(const sl_loop *loop);

/* Monotonic clock in ms, any thread. */
uint64_t sl_clock_ms(void);

/* ---- loop group ------------------------------------------------------- */

/* Number of online CPUs (at least 1). */
unsigned sl_cpu_count(void);

/* n loops, each to run on its own thread once started. */
int sl_group_new(sl_group **out, unsigned n);
int sl_group_start(sl_group *g);
/* Stop every loop and join every thread.  Idempotent. */
void sl_group_stop(sl_group *g);
/* Stop (if needed) and free everything. */
void sl_group_free(sl_group *g);
unsigned sl_group_size(const sl_group *g);
sl_loop *sl_group_loop(const sl_group *g, unsigned i);
/* Round-robin pick; any thread. */
sl_loop *sl_group_next(sl_group *g);
/*
 * The CPU scheduling policy of the running loop threads: Linux's
 * SCHED_BATCH (batch != 0) or the normal one.  A batch thread woken on a
 * busy CPU does not preempt what runs there; the events of that wait are
 * handled together, in fewer and longer runs.  Needs no privilege.
 * 0, -ESRCH when the group is not started, -ENOTSUP where the platform
 * has no such policy, or the first thread's refusal (every thread is
 * still tried).  Any thread but a loop's own.
 */
int sl_group_set_batch(sl_group *g, int batch);

/* ---- readiness I/O watchers (epoll, kqueue) ---------------------------- */

#if !defined(_WIN32)
#define SL_LOOP_READINESS 1

enum {
	SL_IO_READ = 1u << 0,
	SL_IO_WRITE = 1u << 1,
	/* Reported only, never requested: */
	SL_IO_ERROR = 1u << 2, /* error pending on the descriptor */
	SL_IO_HUP = 1u << 3,   /* peer hung up (read side will see EOF) */
	/* With READ: the peer shut down its write side, so what is queued
	 * now is all there will be (EPOLLRDHUP; kqueue's EV_EOF on a read
	 * filter).  A read that drains the queue has reached the end. */
	SL_IO_RDHUP = 1u << 4,
};

typedef struct sl_io sl_io;
typedef void (*sl_io_cb)(sl_io *io, unsigned events);

/*
 * A watcher on one descriptor.  Level-triggered: the callback runs while the
 * descriptor is ready for something in `want`.  The loop checks `want`
 * again before each callback, so a watcher stopped by an earlier callback in
 * the same batch is not called.
 */
struct sl_io {
	sl_loop *loop;
	sl_io_cb cb;
	void *data;
	int fd;
	unsigned want;       /* SL_IO_READ | SL_IO_WRITE */
	unsigned registered; /* backend state: what the kernel has */
	/*
	 * A socket error an event carried (kqueue's fflags), kept from then
	 * on; 0 when the descriptor must be asked (SO_ERROR, or the failing
	 * call), as always with epoll.  sl_io_init clears it.
	 */
	int error;
};

/* A stopped watcher on fd (no backend state yet: nothing to undo). */
static inline void sl_io_init(sl_loop *loop, sl_io *io, int fd, sl_io_cb cb,
			      void *data)
{
	io->loop = loop;
	io->cb = cb;
	io->data = data;
	io->fd = fd;
	io->want = 0;
	io->registered = 0;
	io->error = 0;
}
/* Set the events of interest; 0 stops watching.  Returns 0 or -errno. */
int sl_io_set(sl_io *io, unsigned want);
/* Remove from the kernel (call before close(fd)); the watcher is reusable. */
void sl_io_remove(sl_io *io);
/*
 * The descriptor is about to be closed and nothing else (no dup, no other
 * process) refers to its file: the backend may skip telling the kernel,
 * which forgets a closed file by itself (epoll, kqueue).  Otherwise as
 * sl_io_remove().
 */
void sl_io_forget(sl_io *io);
#endif

/* ---- completions (IOCP) ------------------------------------------------ */

#if defined(_WIN32)
#define SL_LOOP_COMPLETION 1

#include <winsock2.h>
#include <windows.h>

typedef struct sl_op sl_op;

/*
 * An operation completed on loop.  err is 0 or a sluice error (negative
 * errno, SL_EOF-style codes are the stream layer's business) made from the
 * operation's own OVERLAPPED.Internal, read as a 32-bit NTSTATUS;
 * OVERLAPPED_ENTRY.Internal is reserved and never read.  bytes: bytes
 * transferred.
 */
typedef void (*sl_op_cb)(sl_loop *loop, sl_op *op, int err, size_t bytes);

/*
 * One overlapped operation.  Embed it in the object the operation works on
 * and keep that object (and any buffer the operation names) alive until the
 * callback has run: also after CancelIoEx or closing the handle, which only
 * make the completion arrive sooner, with a cancelled status.
 */
struct sl_op {
	OVERLAPPED ov; /* the address the kernel hands back */
	sl_op_cb cb;
	void *data;
	sl_op *next; /* the loop's, while it waits to run without a packet */
};

/* Set cb and data and clear the OVERLAPPED (before every new operation). */
static inline void sl_op_init(sl_op *op, sl_op_cb cb, void *data)
{
	memset(&op->ov, 0, sizeof op->ov);
	op->cb = cb;
	op->data = data;
	op->next = NULL;
}

/* Attach a handle (socket or pipe) to loop's port, once.  0 or -errno. */
int sl_loop_associate(sl_loop *loop, HANDLE h);

/*
 * Skip mode: an operation on h that succeeds at once queues no packet
 * (FILE_SKIP_COMPLETION_PORT_ON_SUCCESS; FILE_SKIP_SET_EVENT_ON_HANDLE
 * spares the handle's event too), which saves a trip through the port
 * for most sends and many receives.  Once, after sl_loop_associate, on a
 * handle whose driver honours it (sockets: no non-IFS layered provider,
 * see socket_win.c).  1 when h is in skip mode: every operation started
 * on h must then go through sl_op_started(..., skip = 1); 0 when the
 * system refused it (the handle works as before).
 */
int sl_loop_skip_on_success(HANDLE h);

/*
 * What to do after starting an overlapped operation on op, on loop's
 * thread, for any handle: ok is non-zero when the call succeeded at once,
 * err the error it gave otherwise (GetLastError, WSAGetLastError), skip
 * whether the handle is in skip mode.  0 when op's callback will run:
 * from its packet, or, for an at-once success in skip mode (no packet
 * then), from the loop with the status and byte count the system wrote
 * into op->ov, after the packets of the current batch and never inside
 * the caller's call.  Otherwise the failure as -errno, and the callback
 * will not run.  Cannot fail for an operation that was started.
 */
int sl_op_started(sl_loop *loop, sl_op *op, int ok, unsigned long err,
		  int skip);

/*
 * Queue a completion for op on loop as if the kernel had finished it: its
 * OVERLAPPED.Internal is set to ntstatus (0: STATUS_SUCCESS) and bytes is
 * reported as transferred.  For operations that finish without a packet
 * (ConnectNamedPipe's ERROR_PIPE_CONNECTED, an error found before the
 * system call).  Any thread.  0 or -errno.
 */
int sl_loop_post_op(sl_loop *loop, sl_op *op, uint32_t ntstatus,
		    size_t bytes);

/* The operation's status: its OVERLAPPED.Internal as a 32-bit NTSTATUS. */
static inline uint32_t sl_op_ntstatus(const sl_op *op)
{
	return (uint32_t)op->ov.Internal;
}

/* NTSTATUS, or a Win32/Winsock error code, as a negative errno (0 ok). */
int sl_ntstatus_err(uint32_t status);
int sl_win_err(unsigned long code);
#endif

#endif
