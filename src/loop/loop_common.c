/*
 * The backend-neutral half of every loop: the timer heap, the cross-thread
 * task queue, deferred tasks, wait groups, the run loop, the clock and the
 * loop group.  The backend (loop_epoll.c, loop_kqueue.c, loop_iocp.c)
 * supplies only the four functions of loop_internal.h.
 *
 * This file is built on every target, mingw-w64 included: it uses only C11,
 * pthreads (winpthreads there) and a few lines of #ifdef for the clock, the
 * CPU count and thread names.
 */
#if !defined(_WIN32) && !defined(_GNU_SOURCE)
#define _GNU_SOURCE /* glibc: pthread_setname_np, sched_getaffinity,
		      SCHED_BATCH */
#endif

#include "loop_internal.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef _WIN32
#include <windows.h>
#else
#include <unistd.h>
#endif
#if defined(__linux__)
#include <sched.h>
#endif
#if defined(__FreeBSD__) || defined(__OpenBSD__)
#include <pthread_np.h>
#endif

/*
 * sl_loop.stop and sl_loop.running are written by one thread and read by
 * others; the __atomic builtins (gcc, clang, mingw-w64 gcc) make that a
 * defined exchange without changing the field types of loop_internal.h.
 */
#define LOAD(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)

/* ---- clock ------------------------------------------------------------- */

uint64_t sl_clock_ms(void)
{
#ifdef _WIN32
	/*
	 * QueryPerformanceCounter rather than GetTickCount64: the tick count
	 * moves in 10-16 ms steps, which would make short timers fire late by
	 * a whole tick.  Split the division so counter * 1000 cannot overflow.
	 */
	static LARGE_INTEGER freq;
	LARGE_INTEGER c;
	uint64_t f, v;

	if (freq.QuadPart == 0)
		QueryPerformanceFrequency(&freq); /* never fails since XP */
	QueryPerformanceCounter(&c);
	f = (uint64_t)freq.QuadPart;
	v = (uint64_t)c.QuadPart;
	return v / f * 1000 + v % f * 1000 / f;
#else
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
#endif
}

uint64_t sl_loop_now(const sl_loop *loop)
{
	return loop->now;
}

void sl_loop_update_time(sl_loop *loop)
{
	loop->now = sl_clock_ms();
}

/* ---- timer heap --------------------------------------------------------- */

static int timer_less(const sl_timer *a, const sl_timer *b)
{
	if (a->due != b->due)
		return a->due < b->due;
	return a->seq < b->seq;
}

static void heap_set(sl_loop *loop, size_t i, sl_timer *t)
{
	loop->heap[i] = t;
	t->heap_idx = i;
}

static void heap_up(sl_loop *loop, size_t i)
{
	sl_timer *t = loop->heap[i];

	while (i > 0) {
		size_t parent = (i - 1) / 2;

		if (!timer_less(t, loop->heap[parent]))
			break;
		heap_set(loop, i, loop->heap[parent]);
		i = parent;
	}
	heap_set(loop, i, t);
}

static void heap_down(sl_loop *loop, size_t i)
{
	sl_timer *t = loop->heap[i];
	size_t n = loop->heap_len;

	for (;;) {
		size_t c = 2 * i + 1;

		if (c >= n)
			break;
		if (c + 1 < n && timer_less(loop->heap[c + 1], loop->heap[c]))
			c++;
		if (!timer_less(loop->heap[c], t))
			break;
		heap_set(loop, i, loop->heap[c]);
		i = c;
	}
	heap_set(loop, i, t);
}

static void heap_remove(sl_loop *loop, sl_timer *t)
{
	size_t i = t->heap_idx;
	sl_timer *last = loop->heap[--loop->heap_len];

	t->heap_idx = SL_TIMER_IDLE;
	if (last == t)
		return;
	heap_set(loop, i, last);
	if (i > 0 && timer_less(last, loop->heap[(i - 1) / 2]))
		heap_up(loop, i);
	else
		heap_down(loop, i);
}

void sl_timer_init(sl_loop *loop, sl_timer *t, sl_timer_cb cb, void *data)
{
	t->loop = loop;
	t->cb = cb;
	t->data = data;
	t->due = 0;
	t->seq = 0;
	t->heap_idx = SL_TIMER_IDLE;
}

void sl_timer_start(sl_timer *t, uint64_t ms)
{
	sl_loop *loop = t->loop;

	if (sl_timer_active(t))
		heap_remove(loop, t);
	/* Saturate: "never" must not wrap round into "now". */
	t->due = ms > UINT64_MAX - loop->now ? UINT64_MAX : loop->now + ms;
	t->seq = loop->timer_seq++;
	if (loop->heap_len == loop->heap_cap) {
		size_t cap = loop->heap_cap ? loop->heap_cap * 2 : 64;
		sl_timer **h = realloc(loop->heap, cap * sizeof *h);

		/*
		 * The API promises that arming a timer cannot fail, and a
		 * connection whose timeout silently went missing would hang
		 * for ever.  The heap only doubles, so this is as rare as a
		 * failed malloc of a few kilobytes: treat it like one.
		 */
		if (h == NULL) {
			fputs("sluice: out of memory growing the timer heap\n",
			      stderr);
			abort();
		}
		loop->heap = h;
		loop->heap_cap = cap;
	}
	loop->heap[loop->heap_len] = t;
	t->heap_idx = loop->heap_len++;
	heap_up(loop, t->heap_idx);
}

void sl_timer_stop(sl_timer *t)
{
	if (sl_timer_active(t))
		heap_remove(t->loop, t);
}

/*
 * Run the timers that were due when this phase began.  A timer armed from
 * a callback gets a seq at or above `limit`, so even a 0 ms re-arm waits
 * for the next iteration instead of spinning here and starving I/O and
 * tasks.  The heap order (due, seq) puts every eligible timer before any
 * timer armed during the phase: a new timer's due is at least `now`, and
 * on equal due the older seq wins.
 */
static void run_timers(sl_loop *loop)
{
	uint64_t now = loop->now;
	uint64_t limit = loop->timer_seq;

	while (loop->heap_len > 0) {
		sl_timer *t = loop->heap[0];

		if (t->due > now || t->seq >= limit)
			break;
		heap_remove(loop, t);
		t->cb(t);
	}
}

/* Milliseconds until the nearest timer: -1 none, 0 already due. */
static int next_timeout(const sl_loop *loop)
{
	uint64_t due, d;

	if (loop->heap_len == 0)
		return -1;
	due = loop->heap[0]->due;
	if (due <= loop->now)
		return 0;
	d = due - loop->now;
	return d > INT_MAX ? INT_MAX : (int)d;
}

/* ---- tasks -------------------------------------------------------------- */

/*
 * Lock-free: producers only push (compare-and-swap on the top), the loop
 * only takes everything (exchange with NULL), so no node is ever popped
 * alone and there is no ABA.  The push that finds the stack empty is the
 * one that wakes the loop: until the loop takes the stack, a wake-up is on
 * its way for whatever is pushed on top.
 */
void sl_loop_post(sl_loop *loop, sl_task *t)
{
	sl_task *top = __atomic_load_n(&loop->tasks, __ATOMIC_RELAXED);

	do
		t->next = top;
	while (!__atomic_compare_exchange_n(&loop->tasks, &top, t, 1,
					    __ATOMIC_RELEASE, __ATOMIC_RELAXED));
	if (top == NULL)
		sl_backend_wake(loop);
}

void sl_loop_defer(sl_loop *loop, sl_task *t)
{
	t->next = NULL;
	if (loop->defer_tail != NULL)
		loop->defer_tail->next = t;
	else
		loop->defer_head = t;
	loop->defer_tail = t;
}

/* Call every task of a detached list; next is read first (t may be freed). */
static void run_list(sl_task *t, int status)
{
	while (t != NULL) {
		sl_task *next = t->next;

		t->next = NULL;
		t->fn(t, status);
		t = next;
	}
}

/*
 * Take every posted task at once and run them oldest first (the stack is
 * newest first), so a task may post (to any loop, this one included); what
 * it posts here runs in the next round, which bounds one round's work.
 * Emptying the stack is what lets the next post wake the loop again.
 */
static void run_tasks(sl_loop *loop, int status)
{
	sl_task *t = __atomic_exchange_n(&loop->tasks, NULL, __ATOMIC_ACQUIRE);
	sl_task *fifo = NULL;

	while (t != NULL) {
		sl_task *next = t->next;

		t->next = fifo;
		fifo = t;
		t = next;
	}
	run_list(fifo, status);
}

/* Until empty: tasks deferred by deferred tasks run in the same phase. */
static void run_deferred(sl_loop *loop, int status)
{
	while (loop->defer_head != NULL) {
		sl_task *head = loop->defer_head;

		loop->defer_head = loop->defer_tail = NULL;
		run_list(head, status);
	}
}

/* ---- loops -------------------------------------------------------------- */

int sl_loop_new(sl_loop **out)
{
	sl_loop *loop;
	int r;

	*out = NULL;
	loop = calloc(1, sizeof *loop);
	if (loop == NULL)
		return -ENOMEM;
	sl_loop_update_time(loop);
	if ((r = sl_backend_init(loop)) < 0) {
		free(loop);
		return r;
	}
	*out = loop;
	return 0;
}

void sl_loop_cancel_tasks(sl_loop *loop)
{
	if (loop == NULL)
		return;
	/*
	 * A cancelled task may release an object whose teardown defers or
	 * posts again: drain both queues until both stay empty.  The backend
	 * is still alive, so a post's wake-up lands somewhere valid.
	 */
	for (;;) {
		run_tasks(loop, -ECANCELED);
		run_deferred(loop, -ECANCELED);
		if (LOAD(&loop->tasks) == NULL)
			break;
	}
}

void sl_loop_free(sl_loop *loop)
{
	if (loop == NULL)
		return;
	sl_loop_cancel_tasks(loop);
	/* Dropped timers read as inactive, should an owner still look. */
	for (size_t i = 0; i < loop->heap_len; i++)
		loop->heap[i]->heap_idx = SL_TIMER_IDLE;
	free(loop->heap);
	sl_backend_free(loop);
	free(loop);
}

/*
 * The poll timeout needs no look at the cross-thread queue: a non-empty
 * queue always has a wake-up on its way (see sl_loop_post), so the poll returns
 * at once anyway.  Deferred tasks are ours alone and are checked directly.
 */
int sl_loop_run(sl_loop *loop)
{
	int r = 0;

	if (LOAD(&loop->running))
		return -EBUSY;
	loop->thread = pthread_self();
	STORE(&loop->running, 1);
	while (!LOAD(&loop->stop)) {
		int timeout;

		sl_loop_update_time(loop);
		timeout = loop->defer_head != NULL ? 0 : next_timeout(loop);
		if ((r = sl_backend_poll(loop, timeout)) < 0)
			break;
		run_deferred(loop, 0);
		run_timers(loop);
		run_deferred(loop, 0);
		run_tasks(loop, 0);
		run_deferred(loop, 0);
	}
	/* Consumed, so the loop can be run again after it stopped. */
	STORE(&loop->stop, 0);
	STORE(&loop->running, 0);
	return r;
}

void sl_loop_stop(sl_loop *loop)
{
	STORE(&loop->stop, 1);
	sl_backend_wake(loop);
}

int sl_loop_is_current(const sl_loop *loop)
{
	/* thread is written before running is set (release/acquire). */
	return LOAD(&loop->running) && pthread_equal(loop->thread,
						     pthread_self());
}

unsigned sl_loop_index(const sl_loop *loop)
{
	return loop->index;
}

void sl_loop_set_data(sl_loop *loop, void *data)
{
	loop->data = data;
}

void *sl_loop_get_data(const sl_loop *loop)
{
	return loop->data;
}

/* ---- wait groups -------------------------------------------------------- */

void sl_wg_init(sl_wg *wg, void (*zero)(void *arg), void *arg)
{
	atomic_init(&wg->n, 0);
	wg->zero = zero;
	wg->arg = arg;
}

void sl_wg_add(sl_wg *wg)
{
	atomic_fetch_add(&wg->n, 1);
}

void sl_wg_done(sl_wg *wg)
{
	if (atomic_fetch_sub(&wg->n, 1) == 1 && wg->zero != NULL)
		wg->zero(wg->arg);
}

int sl_wg_idle(sl_wg *wg)
{
	return atomic_load(&wg->n) == 0;
}

/* ---- loop group --------------------------------------------------------- */

struct sl_group {
	unsigned n;
	unsigned next; /* round-robin counter, __atomic */
	sl_loop **loops;
	pthread_t *threads;
	/* Guards `started`, so concurrent stops join each thread once. */
	pthread_mutex_t lock;
	int started;
};

unsigned sl_cpu_count(void)
{
#ifdef _WIN32
	SYSTEM_INFO si;

	GetSystemInfo(&si);
	return si.dwNumberOfProcessors > 0 ? si.dwNumberOfProcessors : 1;
#else
	long n = sysconf(_SC_NPROCESSORS_ONLN);
#if defined(__linux__) && defined(CPU_COUNT)
	/*
	 * Linux: taskset, cpusets and container runtimes restrict the CPUs a
	 * process may use without changing the online count; more loops than
	 * usable CPUs only adds context switches.
	 */
	cpu_set_t set;

	if (sched_getaffinity(0, sizeof set, &set) == 0) {
		long a = CPU_COUNT(&set);

		if (a > 0 && (n < 1 || a < n))
			n = a;
	}
#endif
	if (n < 1)
		return 1;
	return n > (long)UINT_MAX ? UINT_MAX : (unsigned)n;
#endif
}

static void set_thread_name(unsigned i)
{
	char name[16]; /* Linux: 15 characters and the NUL */

	snprintf(name, sizeof name, "sluice-loop-%u", i);
#if defined(__APPLE__)
	pthread_setname_np(name); /* macOS: current thread only */
#elif defined(__FreeBSD__) || defined(__OpenBSD__)
	pthread_set_name_np(pthread_self(), name);
#elif defined(__NetBSD__)
	pthread_setname_np(pthread_self(), "%s", name);
#elif defined(__linux__) || defined(__GLIBC__)
	/* glibc 2.12+, musl 1.1.16+; a failure only costs the name. */
	pthread_setname_np(pthread_self(), name);
#else
	(void)name; /* mingw-w64: winpthreads names need a debugger anyway */
#endif
}

static void *group_thread(void *arg)
{
	sl_loop *loop = arg;

	int r;

	set_thread_name(loop->index);
	/*
	 * The poll fails only on a broken kernel object (EBADF, EINVAL):
	 * say so, since this loop's connections now go unserved.  stderr,
	 * not the log module, keeps src/loop free of upward dependencies.
	 */
	if ((r = sl_loop_run(loop)) < 0)
		fprintf(stderr, "sluice: loop %u stopped: error %d\n",
			loop->index, -r);
	return NULL;
}

int sl_group_new(sl_group **out, unsigned n)
{
	sl_group *g;
	int r;

	*out = NULL;
	if (n == 0)
		return -EINVAL;
	g = calloc(1, sizeof *g);
	if (g == NULL)
		return -ENOMEM;
	if ((r = pthread_mutex_init(&g->lock, NULL)) != 0) {
		free(g);
		return -r;
	}
	g->loops = calloc(n, sizeof *g->loops);
	g->threads = calloc(n, sizeof *g->threads);
	if (g->loops == NULL || g->threads == NULL) {
		sl_group_free(g);
		return -ENOMEM;
	}
	for (unsigned i = 0; i < n; i++) {
		if ((r = sl_loop_new(&g->loops[i])) < 0) {
			sl_group_free(g);
			return r;
		}
		g->loops[i]->index = i;
		g->n = i + 1;
	}
	*out = g;
	return 0;
}

/* Stop and join loops [0, n); the caller holds g->lock. */
static void group_join(sl_group *g, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		sl_loop_stop(g->loops[i]);
	for (unsigned i = 0; i < n; i++)
		pthread_join(g->threads[i], NULL);
}

int sl_group_start(sl_group *g)
{
	int r = 0;

	pthread_mutex_lock(&g->lock);
	if (g->started) {
		pthread_mutex_unlock(&g->lock);
		return -EALREADY;
	}
	for (unsigned i = 0; i < g->n; i++) {
		if ((r = pthread_create(&g->threads[i], NULL, group_thread,
					g->loops[i])) != 0) {
			group_join(g, i);
			pthread_mutex_unlock(&g->lock);
			return -r;
		}
	}
	g->started = 1;
	pthread_mutex_unlock(&g->lock);
	return 0;
}

void sl_group_stop(sl_group *g)
{
	if (g == NULL)
		return;
	pthread_mutex_lock(&g->lock);
	if (g->started) {
		group_join(g, g->n);
		g->started = 0;
	}
	pthread_mutex_unlock(&g->lock);
}

void sl_group_free(sl_group *g)
{
	if (g == NULL)
		return;
	sl_group_stop(g);
	if (g->loops != NULL)
		for (unsigned i = 0; i < g->n; i++)
			sl_loop_free(g->loops[i]);
	free(g->loops);
	free(g->threads);
	pthread_mutex_destroy(&g->lock);
	free(g);
}

int sl_group_set_batch(sl_group *g, int batch)
{
#if defined(__linux__) && defined(SCHED_BATCH)
	/* Both policies take priority 0; the nice value is kept. */
	struct sched_param sp = {.sched_priority = 0};
	int r = 0, e;

	pthread_mutex_lock(&g->lock);
	if (!g->started) {
		pthread_mutex_unlock(&g->lock);
		return -ESRCH;
	}
	for (unsigned i = 0; i < g->n; i++) {
		e = pthread_setschedparam(g->threads[i],
					  batch ? SCHED_BATCH : SCHED_OTHER,
					  &sp);
		if (e != 0 && r == 0)
			r = -e;
	}
	pthread_mutex_unlock(&g->lock);
	return r;
#else
	(void)g;
	(void)batch;
	return -ENOTSUP;
#endif
}

unsigned sl_group_size(const sl_group *g)
{
	return g->n;
}

sl_loop *sl_group_loop(const sl_group *g, unsigned i)
{
	return i < g->n ? g->loops[i] : NULL;
}

sl_loop *sl_group_next(sl_group *g)
{
	/* Relaxed: only the spread matters, not an order with other memory. */
	unsigned i = __atomic_fetch_add(&g->next, 1, __ATOMIC_RELAXED);

	return g->loops[i % g->n];
}
