/*
 * Event loop tests: timers, tasks, deferred tasks, stop, the loop group, and
 * (readiness backends only) I/O watchers.  Everything outside the
 * SL_LOOP_READINESS block is backend-neutral, so the same file tests epoll,
 * kqueue and IOCP.  Every test arms a watchdog: a bug fails, never hangs.
 */
#if !defined(_WIN32) && !defined(_GNU_SOURCE)
#define _GNU_SOURCE /* glibc: pthread_getname_np, SCHED_BATCH */
#endif

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "loop/loop_internal.h" /* wake_pending: the coalescing test */

#ifdef _WIN32
#include <windows.h>
#else
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>
#endif

#define WATCHDOG_S 20

/* ---- helpers ------------------------------------------------------------ */

#ifdef _WIN32
static DWORD WINAPI watchdog_thread(LPVOID arg)
{
	(void)arg;
	Sleep(WATCHDOG_S * 1000);
	fprintf(stderr, "test_loop: watchdog: test hung\n");
	_exit(1);
}
#endif

/* Re-armed by each test: a hang kills the process, which fails the run. */
static void watchdog(void)
{
#ifdef _WIN32
	static int started;

	if (!started) {
		started = 1;
		CloseHandle(CreateThread(NULL, 0, watchdog_thread, NULL, 0,
					 NULL));
	}
#else
	alarm(WATCHDOG_S);
#endif
}

static void sleep_ms(unsigned ms)
{
#ifdef _WIN32
	Sleep(ms);
#else
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
#endif
}

static sl_loop *new_loop(void)
{
	sl_loop *loop = NULL;

	assert_int_equal(sl_loop_new(&loop), 0);
	assert_non_null(loop);
	return loop;
}

/* Stops the loop after ms: a bound on tests that wait for nothing. */
static void on_stop_timer(sl_timer *t)
{
	sl_loop_stop(t->loop);
}

/* A record of what ran, in order. */
#define LOG_MAX 64
struct log {
	int v[LOG_MAX];
	int n;
};

static void log_add(struct log *l, int v)
{
	assert_true(l->n < LOG_MAX);
	l->v[l->n++] = v;
}

static void log_expect(const struct log *l, const int *want, int n)
{
	assert_int_equal(l->n, n);
	for (int i = 0; i < n; i++)
		assert_int_equal(l->v[i], want[i]);
}

/* ---- basics ------------------------------------------------------------- */

static void test_backend_and_basics(void **state)
{
	const char *b = sl_loop_backend();
	sl_loop *loop;
	int x;

	(void)state;
	watchdog();
	assert_non_null(b);
	assert_true(strcmp(b, "epoll") == 0 || strcmp(b, "kqueue") == 0 ||
		    strcmp(b, "iocp") == 0);
	loop = new_loop();
	assert_int_equal(sl_loop_index(loop), 0);
	assert_null(sl_loop_get_data(loop));
	sl_loop_set_data(loop, &x);
	assert_ptr_equal(sl_loop_get_data(loop), &x);
	assert_false(sl_loop_is_current(loop));
	assert_true(sl_loop_now(loop) <= sl_clock_ms());
	assert_true(sl_cpu_count() >= 1);
	sl_loop_free(loop);
	sl_loop_free(NULL);
	sl_group_free(NULL);
}

static void test_clock_monotonic(void **state)
{
	uint64_t a, b;

	(void)state;
	watchdog();
	a = sl_clock_ms();
	sleep_ms(20);
	b = sl_clock_ms();
	/* Lower bound only: the sleep may last longer, never shorter. */
	assert_true(b >= a + 15);
}

/* ---- timers ------------------------------------------------------------- */

struct tctx {
	struct log log;
	sl_timer t[8];
	int last;     /* index whose firing stops the loop, -1 none */
	int fired[8];
	int rearm;    /* test_timer_zero_rearm: re-arms left */
};

static void on_order_timer(sl_timer *t)
{
	struct tctx *c = t->data;
	int i = (int)(t - c->t);

	log_add(&c->log, i);
	if (i == c->last)
		sl_loop_stop(t->loop);
}

static void test_timer_order(void **state)
{
	static const int delays[] = {30, 10, 20, 10, 0, 20};
	static const int want[] = {4, 1, 3, 2, 5, 0};
	struct tctx c = {.last = 0};
	sl_loop *loop;

	(void)state;
	watchdog();
	loop = new_loop();
	for (int i = 0; i < 6; i++) {
		sl_timer_init(loop, &c.t[i], on_order_timer, &c);
		assert_false(sl_timer_active(&c.t[i]));
	}
	/* All armed against one `now`: order is fixed by (due, seq). */
	for (int i = 0; i < 6; i++) {
		sl_timer_start(&c.t[i], delays[i]);
		assert_true(sl_timer_active(&c.t[i]));
	}
	assert_int_equal(sl_loop_run(loop), 0);
	log_expect(&c.log, want, 6);
	for (int i = 0; i < 6; i++)
		assert_false(sl_timer_active(&c.t[i]));
	sl_loop_free(loop);
}

/* Re-arming an armed timer moves it; it fires once, at the new time. */
static void test_timer_rearm_moves(void **state)
{
	static const int want[] = {1, 0};
	struct tctx c = {.last = 0};
	sl_loop *loop;

	(void)state;
	watchdog();
	loop = new_loop();
	sl_timer_init(loop, &c.t[0], on_order_timer, &c);
	sl_timer_init(loop, &c.t[1], on_order_timer, &c);
	sl_timer_start(&c.t[0], 0);
	sl_timer_start(&c.t[1], 10);
	sl_timer_start(&c.t[0], 20); /* now after t[1] */
	assert_int_equal(sl_loop_run(loop), 0);
	log_expect(&c.log, want, 2);
	sl_loop_free(loop);
}

/*
 * Timers 0..3 are due in the same tick.  0 stops 1 (due in this very
 * phase) and re-arms itself twice; 2 stops itself (already disarmed: a
 * no-op) and stops 5 (due later); 3 is stopped by nobody and must fire.
 * 4 stops the loop once 0 has fired three times.
 */
static void on_cb_timer(sl_timer *t)
{
	struct tctx *c = t->data;
	int i = (int)(t - c->t);

	c->fired[i]++;
	log_add(&c->log, i);
	switch (i) {
	case 0:
		sl_timer_stop(&c->t[1]);
		if (c->fired[0] < 3)
			sl_timer_start(t, 5);
		else
			sl_timer_start(&c->t[4], 0);
		break;
	case 2:
		assert_false(sl_timer_active(t));
		sl_timer_stop(t);
		sl_timer_stop(&c->t[5]);
		break;
	case 4:
		sl_loop_stop(t->loop);
		break;
	}
}

static void test_timer_stop_rearm_in_callbacks(void **state)
{
	static const int want[] = {0, 2, 3, 0, 0, 4};
	struct tctx c = {.last = -1};
	sl_loop *loop;

	(void)state;
	watchdog();
	loop = new_loop();
	for (int i = 0; i < 6; i++)
		sl_timer_init(loop, &c.t[i], on_cb_timer, &c);
	for (int i = 0; i < 4; i++)
		sl_timer_start(&c.t[i], 0);
	sl_timer_start(&c.t[5], 50);
	assert_int_equal(sl_loop_run(loop), 0);
	log_expect(&c.log, want, 6);
	assert_int_equal(c.fired[1], 0);
	assert_int_equal(c.fired[5], 0);
	assert_false(sl_timer_active(&c.t[5]));
	sl_loop_free(loop);
}

/*
 * Heap stress: many timers with clashing deadlines, some stopped before the
 * run, some stopped by other timers' callbacks.  Every survivor fires once,
 * in (due, seq) order; no stopped one fires.  A fixed-seed generator keeps
 * it deterministic; a last timer, due after all others, ends the run.
 */
#define NSTRESS 2000

struct stressctx {
	sl_timer t[NSTRESS + 1];
	unsigned char state[NSTRESS]; /* 0 armed, 1 stopped, 2 fired */
	uint64_t last_due, last_seq;
	uint32_t rnd;
	int fired, bad;
};

static uint32_t lcg(uint32_t *x)
{
	*x = *x * 1103515245u + 12345u;
	return *x >> 8;
}

static void on_stress_timer(sl_timer *t)
{
	struct stressctx *c = t->data;
	size_t i = (size_t)(t - c->t);

	if (i == NSTRESS) {
		sl_loop_stop(t->loop);
		return;
	}
	if (c->state[i] != 0 || t->due < c->last_due ||
	    (t->due == c->last_due && t->seq < c->last_seq))
		c->bad++;
	c->last_due = t->due;
	c->last_seq = t->seq;
	c->state[i] = 2;
	c->fired++;
	if (lcg(&c->rnd) % 4 == 0) {
		size_t j = lcg(&c->rnd) % NSTRESS;

		if (c->state[j] == 0) {
			sl_timer_stop(&c->t[j]);
			c->state[j] = 1;
		}
	}
}

static void test_timer_heap_stress(void **state)
{
	struct stressctx *c = calloc(1, sizeof *c);
	sl_loop *loop;
	int fired = 0;

	(void)state;
	watchdog();
	assert_non_null(c);
	c->rnd = 12345;
	loop = new_loop();
	for (size_t i = 0; i <= NSTRESS; i++)
		sl_timer_init(loop, &c->t[i], on_stress_timer, c);
	for (size_t i = 0; i < NSTRESS; i++)
		sl_timer_start(&c->t[i], lcg(&c->rnd) % 16);
	/* Re-arm a few: they move to the back of their new deadline. */
	for (size_t i = 0; i < NSTRESS; i += 7)
		sl_timer_start(&c->t[i], lcg(&c->rnd) % 16);
	for (size_t i = 0; i < NSTRESS; i += 3) {
		sl_timer_stop(&c->t[i]);
		c->state[i] = 1;
	}
	sl_timer_start(&c->t[NSTRESS], 100);
	/* The far future saturates instead of wrapping round to "now". */
	sl_timer_start(&c->t[1], UINT64_MAX);
	assert_int_equal(c->t[1].due, UINT64_MAX);
	sl_timer_stop(&c->t[1]);
	c->state[1] = 1;
	assert_int_equal(sl_loop_run(loop), 0);
	assert_int_equal(c->bad, 0);
	/* Nothing left armed: each timer was stopped, or fired once. */
	for (size_t i = 0; i < NSTRESS; i++) {
		assert_int_not_equal(c->state[i], 0);
		assert_false(sl_timer_active(&c->t[i]));
		fired += c->state[i] == 2;
	}
	assert_int_equal(c->fired, fired);
	assert_true(fired > NSTRESS / 3);
	sl_loop_free(loop);
	free(c);
}

/* A timer that re-arms itself with 0 ms must let the loop go round. */
static void on_zero_timer(sl_timer *t)
{
	struct tctx *c = t->data;

	c->fired[0]++;
	sl_timer_start(t, 0);
}

static void on_zero_task(sl_task *task, int status)
{
	struct tctx *c = task->data;

	assert_int_equal(status, 0);
	c->fired[1]++;
	if (c->fired[1] == 100) {
		sl_timer_stop(&c->t[0]);
		sl_loop_stop(c->t[0].loop);
	} else {
		sl_loop_post(c->t[0].loop, task);
	}
}

static void test_timer_zero_rearm_no_starve(void **state)
{
	struct tctx c = {.last = -1};
	sl_loop *loop;
	sl_task task;

	(void)state;
	watchdog();
	loop = new_loop();
	sl_timer_init(loop, &c.t[0], on_zero_timer, &c);
	sl_timer_start(&c.t[0], 0);
	sl_task_init(&task, on_zero_task, &c);
	sl_loop_post(loop, &task);
	assert_int_equal(sl_loop_run(loop), 0);
	/* One firing per iteration, one task per iteration: in step. */
	assert_int_equal(c.fired[1], 100);
	assert_true(c.fired[0] >= 99 && c.fired[0] <= 101);
	sl_loop_free(loop);
}

/* The poll timeout follows the nearest timer: a 30 ms timer is not early. */
static void on_elapsed_timer(sl_timer *t)
{
	uint64_t *start = t->data;

	*start = sl_clock_ms() - *start;
	sl_loop_stop(t->loop);
}

static void test_timer_not_early(void **state)
{
	sl_loop *loop;
	sl_timer t;
	uint64_t v;

	(void)state;
	watchdog();
	loop = new_loop();
	sl_timer_init(loop, &t, on_elapsed_timer, &v);
	/* v no later than the loop's now, so the 30 ms count from after v. */
	v = sl_clock_ms();
	sl_loop_update_time(loop);
	sl_timer_start(&t, 30);
	assert_int_equal(sl_loop_run(loop), 0);
	assert_true(v >= 30);
	sl_loop_free(loop);
}

/* ---- tasks -------------------------------------------------------------- */

#define NPOST 100000

struct postctx {
	sl_loop *loop;
	sl_task *tasks;
	int next; /* index the next task must carry */
	int bad;  /* out-of-order or bad status */
	int ran;
};

static void on_post_task(sl_task *t, int status)
{
	struct postctx *c = t->data;
	int i = (int)(t - c->tasks);

	if (status != 0 || i != c->next || !sl_loop_is_current(c->loop))
		c->bad++;
	c->next = i + 1;
	if (++c->ran == NPOST)
		sl_loop_stop(c->loop);
}

static void *post_thread(void *arg)
{
	struct postctx *c = arg;

	for (int i = 0; i < NPOST; i++)
		sl_loop_post(c->loop, &c->tasks[i]);
	return NULL;
}

static void test_post_from_thread(void **state)
{
	struct postctx c = {0};
	pthread_t th;

	(void)state;
	watchdog();
	c.loop = new_loop();
	c.tasks = calloc(NPOST, sizeof *c.tasks);
	assert_non_null(c.tasks);
	for (int i = 0; i < NPOST; i++)
		sl_task_init(&c.tasks[i], on_post_task, &c);
	assert_int_equal(pthread_create(&th, NULL, post_thread, &c), 0);
	assert_int_equal(sl_loop_run(c.loop), 0);
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_int_equal(c.ran, NPOST);
	assert_int_equal(c.bad, 0);
	assert_false(sl_loop_is_current(c.loop));
	sl_loop_free(c.loop);
	free(c.tasks);
}

/* Several producers at once: all run, each producer's order is kept. */
#define NPROD 4
#define PER_PROD 10000

struct prodctx;

struct prodtask {
	sl_task task;
	struct prodctx *c;
	int prod, seq;
};

struct prodctx {
	sl_loop *loop;
	struct prodtask *tasks; /* NPROD * PER_PROD */
	int next[NPROD];
	int ran, bad;
};

struct producer {
	struct prodctx *c;
	int id;
};

static void on_prod_task(sl_task *t, int status)
{
	struct prodtask *pt = t->data;
	struct prodctx *c = pt->c;

	if (status != 0 || pt->seq != c->next[pt->prod])
		c->bad++;
	c->next[pt->prod] = pt->seq + 1;
	if (++c->ran == NPROD * PER_PROD)
		sl_loop_stop(c->loop);
}

static void *prod_thread(void *arg)
{
	struct producer *p = arg;
	struct prodtask *mine = &p->c->tasks[p->id * PER_PROD];

	for (int i = 0; i < PER_PROD; i++)
		sl_loop_post(p->c->loop, &mine[i].task);
	return NULL;
}

static void test_post_many_producers(void **state)
{
	struct prodctx c = {0};
	struct producer p[NPROD];
	pthread_t th[NPROD];

	(void)state;
	watchdog();
	c.loop = new_loop();
	c.tasks = calloc(NPROD * PER_PROD, sizeof *c.tasks);
	assert_non_null(c.tasks);
	for (int i = 0; i < NPROD * PER_PROD; i++) {
		c.tasks[i].c = &c;
		c.tasks[i].prod = i / PER_PROD;
		c.tasks[i].seq = i % PER_PROD;
		sl_task_init(&c.tasks[i].task, on_prod_task, &c.tasks[i]);
	}
	for (int i = 0; i < NPROD; i++) {
		p[i].c = &c;
		p[i].id = i;
		assert_int_equal(
			pthread_create(&th[i], NULL, prod_thread, &p[i]), 0);
	}
	assert_int_equal(sl_loop_run(c.loop), 0);
	for (int i = 0; i < NPROD; i++)
		assert_int_equal(pthread_join(th[i], NULL), 0);
	assert_int_equal(c.ran, NPROD * PER_PROD);
	assert_int_equal(c.bad, 0);
	for (int i = 0; i < NPROD; i++)
		assert_int_equal(c.next[i], PER_PROD);
	sl_loop_free(c.loop);
	free(c.tasks);
}

#if defined(__linux__)
/*
 * Linux: the eventfd counter of this process's only eventfd, from
 * /proc/self/fdinfo ("eventfd-count: <hex>"), or -1 when there is none
 * (another backend, or no /proc).
 */
static long eventfd_count(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	long count = -1;

	if (d == NULL)
		return -1;
	while ((e = readdir(d)) != NULL) {
		char path[300], link[64], line[128];
		ssize_t n;
		FILE *f;

		snprintf(path, sizeof path, "/proc/self/fd/%s", e->d_name);
		n = readlink(path, link, sizeof link - 1);
		if (n < 0)
			continue;
		link[n] = '\0';
		if (strcmp(link, "anon_inode:[eventfd]") != 0)
			continue;
		snprintf(path, sizeof path, "/proc/self/fdinfo/%s", e->d_name);
		if ((f = fopen(path, "r")) == NULL)
			continue;
		while (fgets(line, sizeof line, f) != NULL)
			if (sscanf(line, "eventfd-count: %lx", &count) == 1)
				break;
		fclose(f);
	}
	closedir(d);
	return count;
}
#endif

/* n[0] counts normal runs, n[1] cancellations. */
static void on_count_task(sl_task *t, int status)
{
	int *n = t->data;

	assert_true(status == 0 || status == -ECANCELED);
	n[status == 0 ? 0 : 1]++;
}

static void on_stop_task(sl_task *t, int status)
{
	sl_loop *loop = t->data;

	if (status == 0)
		sl_loop_stop(loop);
}

/*
 * A burst of posts to an idle queue costs one wake-up: the first post
 * finds the queue empty and wakes, the others only queue.  Draining the
 * queue empties it so the next burst wakes again.
 */
static void test_post_coalesces_wakeups(void **state)
{
	struct postctx c = {0};
	sl_task stop;
	int n[2] = {0, 0};

	(void)state;
	watchdog();
	c.loop = new_loop();
	c.tasks = calloc(1000, sizeof *c.tasks);
	assert_non_null(c.tasks);
	for (int i = 0; i < 1000; i++)
		sl_task_init(&c.tasks[i], on_count_task, n);
	assert_null(c.loop->tasks);
	/* The loop is not running: nothing drains between the posts. */
	for (int i = 0; i < 1000; i++)
		sl_loop_post(c.loop, &c.tasks[i]);
	assert_non_null(c.loop->tasks);
#if defined(__linux__)
	if (strcmp(sl_loop_backend(), "epoll") == 0) {
		long v = eventfd_count();

		if (v >= 0)
			assert_int_equal(v, 1);
	}
#endif
	sl_task_init(&stop, on_stop_task, c.loop);
	sl_loop_post(c.loop, &stop);
	assert_int_equal(sl_loop_run(c.loop), 0);
	assert_int_equal(n[0], 1000);
	assert_int_equal(n[1], 0);
	assert_null(c.loop->tasks);
	/* The next post wakes again. */
	sl_task_init(&c.tasks[0], on_count_task, n);
	sl_loop_post(c.loop, &c.tasks[0]);
	assert_non_null(c.loop->tasks);
	sl_loop_free(c.loop);
	assert_int_equal(n[0], 1000);
	assert_int_equal(n[1], 1); /* cancelled, not run */
	free(c.tasks);
}

/* Stop from another thread while the loop sleeps with nothing to do. */
struct stopctx {
	sl_loop *loop;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int started;
};

static void on_started_task(sl_task *t, int status)
{
	struct stopctx *c = t->data;

	assert_int_equal(status, 0);
	pthread_mutex_lock(&c->lock);
	c->started = 1;
	pthread_cond_signal(&c->cond);
	pthread_mutex_unlock(&c->lock);
}

static void *stopper_thread(void *arg)
{
	struct stopctx *c = arg;

	pthread_mutex_lock(&c->lock);
	while (!c->started)
		pthread_cond_wait(&c->cond, &c->lock);
	pthread_mutex_unlock(&c->lock);
	sleep_ms(30); /* most likely asleep in the poll by now; either way */
	sl_loop_stop(c->loop);
	return NULL;
}

static void test_stop_from_thread(void **state)
{
	struct stopctx c = {0};
	sl_task task;
	pthread_t th;

	(void)state;
	watchdog();
	c.loop = new_loop();
	pthread_mutex_init(&c.lock, NULL);
	pthread_cond_init(&c.cond, NULL);
	sl_task_init(&task, on_started_task, &c);
	sl_loop_post(c.loop, &task);
	assert_int_equal(pthread_create(&th, NULL, stopper_thread, &c), 0);
	assert_int_equal(sl_loop_run(c.loop), 0);
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_false(sl_loop_is_current(c.loop));
	/* A stopped loop runs again, and stops again. */
	c.started = 0;
	sl_loop_post(c.loop, &task);
	assert_int_equal(pthread_create(&th, NULL, stopper_thread, &c), 0);
	assert_int_equal(sl_loop_run(c.loop), 0);
	assert_int_equal(pthread_join(th, NULL), 0);
	pthread_cond_destroy(&c.cond);
	pthread_mutex_destroy(&c.lock);
	sl_loop_free(c.loop);
}

/* A stop requested before the run makes the run return at once. */
static void test_stop_before_run(void **state)
{
	sl_loop *loop;
	int n[2] = {0, 0};
	sl_task t;

	(void)state;
	watchdog();
	loop = new_loop();
	sl_task_init(&t, on_count_task, n);
	sl_loop_stop(loop);
	assert_int_equal(sl_loop_run(loop), 0);
	sl_loop_post(loop, &t);
	sl_loop_free(loop);
	assert_int_equal(n[0], 0); /* never ran: cancelled */
	assert_int_equal(n[1], 1);
}

/* Freeing with work left: queued and deferred tasks see -ECANCELED. */
struct cancelctx {
	sl_loop *loop;
	struct log log;
	sl_task t[8];
};

static void on_cancel_task(sl_task *t, int status)
{
	struct cancelctx *c = t->data;
	int i = (int)(t - c->t);

	log_add(&c->log, status == -ECANCELED ? 100 + i : i);
	if (i == 0 && status == 0) {
		/* Left behind by the stop: posted 2, 3; deferred 4. */
		sl_loop_post(c->loop, &c->t[2]);
		sl_loop_post(c->loop, &c->t[3]);
		sl_loop_stop(c->loop);
	}
	if (i == 1 && status == 0)
		sl_loop_defer(c->loop, &c->t[4]);
	if (i == 7 && status == -ECANCELED)
		/* Teardown that defers again is still drained. */
		sl_loop_defer(c->loop, &c->t[5]);
}

static const int cancel_want[] = {0, 1, 4, 102, 103, 106, 107, 105};

/* A loop run until t[0] stops it, with work left behind: posted 2, 3 and
 * 6, deferred 7, and the timer armed. */
static void cancel_setup(struct cancelctx *c, sl_timer *timer)
{
	watchdog();
	c->loop = new_loop();
	for (int i = 0; i < 8; i++)
		sl_task_init(&c->t[i], on_cancel_task, c);
	sl_loop_post(c->loop, &c->t[0]);
	sl_loop_post(c->loop, &c->t[1]);
	sl_timer_init(c->loop, timer, on_stop_timer, NULL);
	sl_timer_start(timer, 60000);
	assert_int_equal(sl_loop_run(c->loop), 0);
	/* After the run: these never run normally. */
	sl_loop_post(c->loop, &c->t[6]);
	sl_loop_defer(c->loop, &c->t[7]);
	assert_true(sl_timer_active(timer));
}

static void test_free_cancels_pending(void **state)
{
	const int *want = cancel_want;
	struct cancelctx c = {0};
	sl_timer timer;

	(void)state;
	cancel_setup(&c, &timer);
	sl_loop_free(c.loop);
	/*
	 * 0 and 1 ran, and 4, deferred by 1, ran in the same iteration; the
	 * queued 2, 3, 6 and the deferred 7 are cancelled in order, and 5,
	 * deferred by the cancelled 7, too.
	 */
	log_expect(&c.log, want, 8);
	assert_false(sl_timer_active(&timer));
}

/* sl_loop_cancel_tasks(): the same cancellations, at once, before the
 * loop is freed (an owner about to free its tasks' memory); the free
 * that follows finds nothing left to call. */
static void test_cancel_tasks_before_free(void **state)
{
	const int *want = cancel_want;
	struct cancelctx c = {0};
	sl_timer timer;

	(void)state;
	cancel_setup(&c, &timer);
	sl_loop_cancel_tasks(c.loop);
	log_expect(&c.log, want, 8);
	/* The tasks' memory may go now: poisoned, any call would show. */
	memset(c.t, 0xA5, sizeof c.t);
	sl_timer_stop(&timer);
	sl_loop_free(c.loop);
	log_expect(&c.log, want, 8);
}

/* Deferred tasks run after the batch, before the next round of tasks. */
struct deferctx {
	sl_loop *loop;
	struct log log;
	sl_task t[4];
};

static void on_defer_task(sl_task *t, int status)
{
	struct deferctx *c = t->data;
	int i = (int)(t - c->t);

	assert_int_equal(status, 0);
	log_add(&c->log, i);
	switch (i) {
	case 0:
		sl_loop_post(c->loop, &c->t[3]); /* next round */
		sl_loop_defer(c->loop, &c->t[1]);
		break;
	case 1:
		sl_loop_defer(c->loop, &c->t[2]); /* same phase */
		break;
	case 3:
		sl_loop_stop(c->loop);
		break;
	}
}

static void on_defer_from_timer(sl_timer *timer)
{
	struct deferctx *c = timer->data;

	log_add(&c->log, 10);
	sl_loop_defer(c->loop, &c->t[0]);
}

static void test_defer(void **state)
{
	static const int want[] = {10, 0, 1, 2, 3};
	struct deferctx c = {0};
	sl_timer timer;

	(void)state;
	watchdog();
	c.loop = new_loop();
	for (int i = 0; i < 4; i++)
		sl_task_init(&c.t[i], on_defer_task, &c);
	sl_timer_init(c.loop, &timer, on_defer_from_timer, &c);
	sl_timer_start(&timer, 0);
	assert_int_equal(sl_loop_run(c.loop), 0);
	log_expect(&c.log, want, 5);
	sl_loop_free(c.loop);
}

/* ---- loop group --------------------------------------------------------- */

#define GROUP_N 4
#define GROUP_TASKS 1000

struct gtask {
	sl_task task;
	sl_loop *loop;
	struct gctx *c;
};

struct gctx {
	sl_group *g;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int done;
	int per_loop[GROUP_N];
	int bad;
};

static void on_group_task(sl_task *t, int status)
{
	struct gtask *gt = t->data;
	struct gctx *c = gt->c;
	unsigned idx = sl_loop_index(gt->loop);
	int bad = status != 0 || !sl_loop_is_current(gt->loop);

	for (unsigned i = 0; i < GROUP_N; i++)
		if (i != idx && sl_loop_is_current(sl_group_loop(c->g, i)))
			bad = 1;
#if defined(__linux__) && defined(__GLIBC__)
	{
		char name[16], want[16];

		snprintf(want, sizeof want, "sluice-loop-%u", idx);
		if (pthread_getname_np(pthread_self(), name, sizeof name) ==
			    0 &&
		    strcmp(name, want) != 0)
			bad = 1;
	}
#endif
	pthread_mutex_lock(&c->lock);
	c->per_loop[idx]++;
	c->bad += bad;
	if (++c->done == GROUP_TASKS)
		pthread_cond_signal(&c->cond);
	pthread_mutex_unlock(&c->lock);
}

static void test_group(void **state)
{
	struct gctx c = {0};
	struct gtask *gt;
	sl_group *g = NULL;

	(void)state;
	watchdog();
	assert_int_equal(sl_group_new(&g, 0), -EINVAL);
	assert_null(g);
	assert_int_equal(sl_group_new(&g, GROUP_N), 0);
	c.g = g;
	pthread_mutex_init(&c.lock, NULL);
	pthread_cond_init(&c.cond, NULL);
	assert_int_equal(sl_group_size(g), GROUP_N);
	for (unsigned i = 0; i < GROUP_N; i++)
		assert_int_equal(sl_loop_index(sl_group_loop(g, i)), i);
	assert_null(sl_group_loop(g, GROUP_N));
	/* Round-robin: every loop in turn, from any starting point. */
	{
		sl_loop *first = sl_group_next(g);
		unsigned k = sl_loop_index(first);

		for (unsigned i = 1; i <= 2 * GROUP_N; i++)
			assert_ptr_equal(sl_group_next(g),
					 sl_group_loop(g, (k + i) % GROUP_N));
	}
	gt = calloc(GROUP_TASKS, sizeof *gt);
	assert_non_null(gt);
	/* Posted before the start: queued, then run once the threads go. */
	for (int i = 0; i < GROUP_TASKS; i++) {
		gt[i].loop = sl_group_next(g);
		gt[i].c = &c;
		sl_task_init(&gt[i].task, on_group_task, &gt[i]);
		if (i == GROUP_TASKS / 2)
			assert_int_equal(sl_group_start(g), 0);
		sl_loop_post(gt[i].loop, &gt[i].task);
	}
	assert_int_equal(sl_group_start(g), -EALREADY);
	pthread_mutex_lock(&c.lock);
	/* The watchdog bounds this wait. */
	while (c.done < GROUP_TASKS)
		pthread_cond_wait(&c.cond, &c.lock);
	pthread_mutex_unlock(&c.lock);
	for (unsigned i = 0; i < GROUP_N; i++)
		assert_int_equal(c.per_loop[i], GROUP_TASKS / GROUP_N);
	assert_int_equal(c.bad, 0);
	sl_group_stop(g);
	sl_group_stop(g); /* idempotent */
	for (unsigned i = 0; i < GROUP_N; i++)
		assert_false(sl_loop_is_current(sl_group_loop(g, i)));
	/* Start again after a stop, then free a running group. */
	assert_int_equal(sl_group_start(g), 0);
	sl_group_free(g);
	pthread_cond_destroy(&c.cond);
	pthread_mutex_destroy(&c.lock);
	free(gt);
}

static void test_group_free_unstarted(void **state)
{
	sl_group *g = NULL;

	(void)state;
	watchdog();
	assert_int_equal(sl_group_new(&g, 2), 0);
	sl_group_stop(g); /* not started: nothing to do */
	sl_group_free(g);
	/* Start and stop at once: the stop may come before any run. */
	assert_int_equal(sl_group_new(&g, 3), 0);
	assert_int_equal(sl_group_start(g), 0);
	sl_group_stop(g);
	sl_group_free(g);
}

/* ---- scheduling policy of the loop threads ------------------------------ */

struct policy_probe {
	sl_task task;
	pthread_mutex_t *lock;
	pthread_cond_t *cond;
	int *left;
	int policy; /* as the loop thread itself reads it */
};

static void on_policy_probe(sl_task *t, int status)
{
	struct policy_probe *p = t->data;

#if defined(__linux__) && defined(SCHED_BATCH)
	p->policy = status == 0 ? sched_getscheduler(0) : -2;
#else
	p->policy = status == 0 ? 0 : -2;
#endif
	pthread_mutex_lock(p->lock);
	if (--*p->left == 0)
		pthread_cond_signal(p->cond);
	pthread_mutex_unlock(p->lock);
}

/* Every loop thread reports its own policy. */
static void probe_policies(sl_group *g, struct policy_probe *p, unsigned n)
{
	pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
	int left = (int)n;

	for (unsigned i = 0; i < n; i++) {
		p[i].lock = &lock;
		p[i].cond = &cond;
		p[i].left = &left;
		p[i].policy = -1;
		sl_task_init(&p[i].task, on_policy_probe, &p[i]);
		sl_loop_post(sl_group_loop(g, i), &p[i].task);
	}
	pthread_mutex_lock(&lock);
	while (left > 0) /* the watchdog bounds this wait */
		pthread_cond_wait(&cond, &lock);
	pthread_mutex_unlock(&lock);
}

static void test_group_batch_policy(void **state)
{
	struct policy_probe p[3];
	sl_group *g = NULL;

	(void)state;
	watchdog();
	assert_int_equal(sl_group_new(&g, 3), 0);
#if defined(__linux__) && defined(SCHED_BATCH)
	assert_int_equal(sl_group_set_batch(g, 1), -ESRCH); /* not started */
	assert_int_equal(sl_group_start(g), 0);
	probe_policies(g, p, 3);
	for (unsigned i = 0; i < 3; i++)
		assert_int_equal(p[i].policy, SCHED_OTHER);
	assert_int_equal(sl_group_set_batch(g, 1), 0);
	probe_policies(g, p, 3);
	for (unsigned i = 0; i < 3; i++)
		assert_int_equal(p[i].policy, SCHED_BATCH);
	/* Back again, unprivileged as well. */
	assert_int_equal(sl_group_set_batch(g, 0), 0);
	probe_policies(g, p, 3);
	for (unsigned i = 0; i < 3; i++)
		assert_int_equal(p[i].policy, SCHED_OTHER);
#else
	/* No SCHED_BATCH here: said so, and the loops run on. */
	assert_int_equal(sl_group_start(g), 0);
	assert_int_equal(sl_group_set_batch(g, 1), -ENOTSUP);
	probe_policies(g, p, 3);
	for (unsigned i = 0; i < 3; i++)
		assert_int_equal(p[i].policy, 0);
#endif
	sl_group_free(g);
}

/* ---- readiness watchers ------------------------------------------------- */

#ifdef SL_LOOP_READINESS

struct ioctx {
	sl_io io[2];
	int fds[4];
	unsigned events[2];
	int calls[2];
	int stop_other; /* callback stops the other watcher */
	int remove_other;
	int consume; /* bytes each READ callback reads */
	int stop_after;
	int got;
};

static void on_io(sl_io *io, unsigned events)
{
	struct ioctx *c = io->data;
	int i = (int)(io - c->io);

	c->calls[i]++;
	c->events[i] |= events;
	if (c->stop_other)
		sl_io_set(&c->io[1 - i], 0);
	if (c->remove_other)
		sl_io_remove(&c->io[1 - i]);
	if (c->consume > 0 && (events & SL_IO_READ)) {
		char buf[16];
		ssize_t n = read(io->fd, buf, (size_t)c->consume);

		if (n > 0)
			c->got += (int)n;
	}
	if (c->calls[0] + c->calls[1] >= c->stop_after)
		sl_loop_stop(io->loop);
}

static void make_pair(int *fds)
{
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
	fcntl(fds[0], F_SETFL, O_NONBLOCK);
	fcntl(fds[1], F_SETFL, O_NONBLOCK);
}

static void close_fds(int *fds, int n)
{
	for (int i = 0; i < n; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

static void test_io_read(void **state)
{
	struct ioctx c = {.stop_after = 1, .consume = 1};
	sl_loop *loop;

	(void)state;
	watchdog();
	loop = new_loop();
	make_pair(c.fds);
	sl_io_init(loop, &c.io[0], c.fds[0], on_io, &c);
	assert_int_equal(sl_io_set(&c.io[0], SL_IO_READ), 0);
	assert_int_equal(write(c.fds[1], "x", 1), 1);
	assert_int_equal(sl_loop_run(loop), 0);
	assert_int_equal(c.calls[0], 1);
	assert_true(c.events[0] & SL_IO_READ);
	assert_false(c.events[0] & SL_IO_WRITE);
	assert_int_equal(c.got, 1);
	sl_io_remove(&c.io[0]);
	sl_io_remove(&c.io[0]); /* twice: harmless */
	close_fds(c.fds, 2);
	sl_loop_free(loop);
}

/* Level-triggered: what a callback leaves unread is reported again. */
static void test_io_level_triggered(void **state)
{
	struct ioctx c = {.stop_after = 3, .consume = 1};
	sl_loop *loop;

	(void)state;
	watchdog();
	loop = new_loop();
	make_pair(c.fds);
	sl_io_init(loop, &c.io[0], c.fds[0], on_io, &c);
	assert_int_equal(sl_io_set(&c.io[0], SL_IO_READ), 0);
	assert_int_equal(write(c.fds[1], "abc", 3), 3);
	assert_int_equal(sl_loop_run(loop), 0);
	assert_int_equal(c.calls[0], 3);
	assert_int_equal(c.got, 3);
	sl_io_remove(&c.io[0]);
	close_fds(c.fds, 2);
	sl_loop_free(loop);
}

static void test_io_write_and_pipe(void **state)
{
	struct ioctx c = {.stop_after = 2};
	sl_loop *loop;
	int p[2];

	(void)state;
	watchdog();
	loop = new_loop();
	assert_int_equal(pipe(p), 0);
	c.fds[0] = p[0];
	c.fds[1] = p[1];
	assert_int_equal(write(p[1], "y", 1), 1);
	sl_io_init(loop, &c.io[0], p[0], on_io, &c);
	sl_io_init(loop, &c.io[1], p[1], on_io, &c);
	assert_int_equal(sl_io_set(&c.io[0], SL_IO_READ), 0);
	assert_int_equal(sl_io_set(&c.io[1], SL_IO_WRITE), 0);
	assert_int_equal(sl_loop_run(loop), 0);
	assert_int_equal(c.calls[0], 1);
	assert_int_equal(c.calls[1], 1);
	assert_true(c.events[0] & SL_IO_READ);
	assert_true(c.events[1] & SL_IO_WRITE);
	assert_false(c.events[1] & SL_IO_READ);
	sl_io_remove(&c.io[0]);
	sl_io_remove(&c.io[1]);
	close_fds(c.fds, 2);
	sl_loop_free(loop);
}

/*
 * Both watchers are ready in the same batch; whichever runs first stops
 * (or removes) the other, whose callback must then not run.  A timer ends
 * the loop so a wrong extra callback would be counted, not missed.
 */
static void io_suppress(int remove)
{
	struct ioctx c = {.stop_after = 1000};
	sl_loop *loop;
	sl_timer t;

	watchdog();
	if (remove)
		c.remove_other = 1;
	else
		c.stop_other = 1;
	loop = new_loop();
	make_pair(&c.fds[0]);
	make_pair(&c.fds[2]);
	assert_int_equal(write(c.fds[1], "a", 1), 1);
	assert_int_equal(write(c.fds[3], "b", 1), 1);
	sl_io_init(loop, &c.io[0], c.fds[0], on_io, &c);
	sl_io_init(loop, &c.io[1], c.fds[2], on_io, &c);
	assert_int_equal(sl_io_set(&c.io[0], SL_IO_READ), 0);
	assert_int_equal(sl_io_set(&c.io[1], SL_IO_READ), 0);
	sl_timer_init(loop, &t, on_stop_timer, NULL);
	sl_timer_start(&t, 30);
	assert_int_equal(sl_loop_run(loop), 0);
	/*
	 * The first callback stops the other; the second one, left with
	 * nobody to stop it, keeps firing (level-triggered, nothing read)
	 * and stops nothing more: so exactly one watcher was called.
	 */
	assert_true((c.calls[0] == 0) != (c.calls[1] == 0));
	assert_int_equal(c.io[c.calls[0] ? 1 : 0].want, 0);
	sl_io_remove(&c.io[0]);
	sl_io_remove(&c.io[1]);
	close_fds(c.fds, 4);
	sl_loop_free(loop);
}

static void test_io_stop_other_in_batch(void **state)
{
	(void)state;
	io_suppress(0);
}

/*
 * A stopped watcher is not called, even when its descriptor becomes ready
 * (backends may stop lazily), and forgetting a watcher before close() lets
 * the descriptor number serve a new watcher at once.
 */
static void test_io_stop_forget_reuse(void **state)
{
	struct ioctx c = {.stop_after = 1, .consume = 1};
	sl_timer t;
	sl_loop *loop;
	int old;

	(void)state;
	watchdog();
	loop = new_loop();
	make_pair(c.fds);
	sl_io_init(loop, &c.io[0], c.fds[0], on_io, &c);
	assert_int_equal(sl_io_set(&c.io[0], SL_IO_READ), 0);
	assert_int_equal(sl_io_set(&c.io[0], 0), 0);
	assert_int_equal(write(c.fds[1], "x", 1), 1);
	sl_timer_init(loop, &t, on_stop_timer, loop);
	sl_timer_start(&t, 30);
	assert_int_equal(sl_loop_run(loop), 0);
	sl_timer_start(&t, 30);
	assert_int_equal(sl_loop_run(loop), 0); /* still nothing */
	assert_int_equal(c.calls[0], 0);

	/* Started again: the byte waiting is reported. */
	assert_int_equal(sl_io_set(&c.io[0], SL_IO_READ), 0);
	assert_int_equal(sl_loop_run(loop), 0);
	assert_int_equal(c.calls[0], 1);
	assert_int_equal(c.got, 1);

	/* Forget and close while registered, then reuse the number. */
	old = c.fds[0];
	sl_io_forget(&c.io[0]);
	close_fds(c.fds, 2);
	make_pair(c.fds);
	if (c.fds[0] != old) { /* make the new socket take the old number */
		assert_int_equal(dup2(c.fds[0], old), old);
		close(c.fds[0]);
		c.fds[0] = old;
	}
	c.calls[0] = 0;
	c.got = 0;
	sl_io_init(loop, &c.io[0], c.fds[0], on_io, &c);
	assert_int_equal(sl_io_set(&c.io[0], SL_IO_READ), 0);
	assert_int_equal(write(c.fds[1], "y", 1), 1);
	assert_int_equal(sl_loop_run(loop), 0);
	assert_int_equal(c.calls[0], 1);
	assert_int_equal(c.got, 1);
	sl_io_remove(&c.io[0]);
	close_fds(c.fds, 2);
	sl_loop_free(loop);
}

/*
 * A watcher stopped lazily and reported anyway leaves the kernel at the
 * end of that batch -- unless the batch closed it first: then its number
 * may already belong to a new descriptor of another watcher, whose
 * registration must survive (epoll: the removal waits for the batch's
 * end, so this is the order in which it could go wrong).
 */
struct stale_ctx {
	sl_loop *loop;
	sl_io a, b, c;
	int fa[2], fb[2], fc[2];
	int b_calls, c_calls;
};

static void on_stale_c(sl_io *io, unsigned events)
{
	struct stale_ctx *x = io->data;
	char ch;

	(void)events;
	if (read(io->fd, &ch, 1) == 1)
		x->c_calls++;
	sl_loop_stop(io->loop);
}

static void on_stale_b(sl_io *io, unsigned events)
{
	struct stale_ctx *x = io->data;
	char ch;
	int old = x->fa[0];

	(void)events;
	if (read(io->fd, &ch, 1) != 1 || x->b_calls++ > 0)
		return;
	/* Close a's descriptor and give its number to c. */
	sl_io_forget(&x->a);
	close(x->fa[0]);
	make_pair(x->fc);
	if (x->fc[0] != old) {
		assert_int_equal(dup2(x->fc[0], old), old);
		close(x->fc[0]);
		x->fc[0] = old;
	}
	x->fa[0] = -1;
	sl_io_init(x->loop, &x->c, x->fc[0], on_stale_c, x);
	assert_int_equal(sl_io_set(&x->c, SL_IO_READ), 0);
	sl_io_set(&x->b, 0);
	sl_loop_stop(io->loop);
}

static void test_io_stale_removed_after_batch(void **state)
{
	struct stale_ctx x = {0};
	sl_timer t;

	(void)state;
	watchdog();
	x.loop = new_loop();
	make_pair(x.fa);
	make_pair(x.fb);
	sl_io_init(x.loop, &x.a, x.fa[0], on_stale_c, &x);
	sl_io_init(x.loop, &x.b, x.fb[0], on_stale_b, &x);
	assert_int_equal(sl_io_set(&x.a, SL_IO_READ), 0);
	assert_int_equal(sl_io_set(&x.a, 0), 0); /* stopped, still there */
	assert_int_equal(sl_io_set(&x.b, SL_IO_READ), 0);
	assert_int_equal(write(x.fa[1], "a", 1), 1);
	assert_int_equal(write(x.fb[1], "b", 1), 1);
	assert_int_equal(sl_loop_run(x.loop), 0); /* one batch: a and b */
	assert_int_equal(x.b_calls, 1);
	assert_int_not_equal(x.c.registered, 0);

	/* c's registration survived the batch: its byte is reported. */
	assert_int_equal(write(x.fc[1], "c", 1), 1);
	sl_timer_init(x.loop, &t, on_stop_timer, x.loop);
	sl_timer_start(&t, 5000); /* a failure, not a hang */
	assert_int_equal(sl_loop_run(x.loop), 0);
	assert_int_equal(x.c_calls, 1);
	sl_timer_stop(&t);
	sl_io_remove(&x.c);
	sl_io_remove(&x.b);
	close_fds(x.fb, 2);
	close_fds(x.fc, 2);
	close(x.fa[1]);

	/* A stopped watcher whose descriptor stays open and ready: reported
	 * once, then out of the kernel, so it wakes no later poll. */
	make_pair(x.fa);
	sl_io_init(x.loop, &x.a, x.fa[0], on_stale_c, &x);
	assert_int_equal(sl_io_set(&x.a, SL_IO_READ), 0);
	assert_int_equal(sl_io_set(&x.a, 0), 0);
	assert_int_equal(write(x.fa[1], "a", 1), 1);
	sl_timer_start(&t, 30);
	assert_int_equal(sl_loop_run(x.loop), 0);
	assert_int_equal(x.a.registered, 0);
	assert_int_equal(x.c_calls, 1); /* a's callback never ran */
	close_fds(x.fa, 2);
	sl_loop_free(x.loop);
}

static void test_io_remove_other_in_batch(void **state)
{
	(void)state;
	io_suppress(1);
}

/* A stopped watcher on a ready descriptor is silent; restarted, it fires. */
static void test_io_stop_restart(void **state)
{
	struct ioctx c = {.stop_after = 1000};
	sl_loop *loop;
	sl_timer t;

	(void)state;
	watchdog();
	loop = new_loop();
	make_pair(c.fds);
	assert_int_equal(write(c.fds[1], "z", 1), 1);
	sl_io_init(loop, &c.io[0], c.fds[0], on_io, &c);
	assert_int_equal(sl_io_set(&c.io[0], SL_IO_READ), 0);
	assert_int_equal(sl_io_set(&c.io[0], 0), 0);
	assert_int_equal(c.io[0].want, 0);
	sl_timer_init(loop, &t, on_stop_timer, NULL);
	sl_timer_start(&t, 20);
	assert_int_equal(sl_loop_run(loop), 0);
	assert_int_equal(c.calls[0], 0);
	/* READ|WRITE, then WRITE only: the MOD path, not ADD. */
	c.stop_after = 1;
	assert_int_equal(sl_io_set(&c.io[0], SL_IO_READ | SL_IO_WRITE), 0);
	assert_int_equal(sl_io_set(&c.io[0], SL_IO_READ), 0);
	assert_int_equal(sl_loop_run(loop), 0);
	assert_int_equal(c.calls[0], 1);
	assert_true(c.events[0] & SL_IO_READ);
	assert_false(c.events[0] & SL_IO_WRITE);
	sl_io_remove(&c.io[0]);
	close_fds(c.fds, 2);
	sl_loop_free(loop);
}

/*
 * Peer shut down its write side after a byte: READ with SL_IO_RDHUP (what
 * is queued is all there will be), both before and after the byte is read;
 * a watcher that waits only to write is not told of it (RDHUP is no
 * hang-up of the write side).
 */
static void test_io_rdhup_on_half_close(void **state)
{
	struct ioctx c = {.stop_after = 1};
	sl_loop *loop;
	char b;

	(void)state;
	watchdog();
	loop = new_loop();
	make_pair(c.fds);
	assert_int_equal(write(c.fds[1], "q", 1), 1);
	assert_int_equal(shutdown(c.fds[1], SHUT_WR), 0);
	sl_io_init(loop, &c.io[0], c.fds[0], on_io, &c);
	assert_int_equal(sl_io_set(&c.io[0], SL_IO_READ), 0);
	assert_int_equal(sl_loop_run(loop), 0);
	assert_true(c.events[0] & SL_IO_READ);
	assert_true(c.events[0] & SL_IO_RDHUP);
	assert_false(c.events[0] & SL_IO_ERROR);
	assert_int_equal(read(c.fds[0], &b, 1), 1);
	c.calls[0] = 0;
	c.stop_after = 1;
	assert_int_equal(sl_loop_run(loop), 0);
	assert_true(c.events[0] & SL_IO_RDHUP);
	assert_int_equal(read(c.fds[0], &b, 1), 0);

	c.calls[0] = 0;
	c.events[0] = 0;
	c.stop_after = 1;
	assert_int_equal(sl_io_set(&c.io[0], SL_IO_WRITE), 0);
	assert_int_equal(sl_loop_run(loop), 0);
	assert_true(c.events[0] & SL_IO_WRITE);
	assert_false(c.events[0] & SL_IO_RDHUP);
	sl_io_remove(&c.io[0]);
	close_fds(c.fds, 2);
	sl_loop_free(loop);
}

/* Peer closed: HUP, with READ so read() finds the EOF. */
static void test_io_hup_on_peer_close(void **state)
{
	struct ioctx c = {.stop_after = 1};
	sl_loop *loop;
	char b;

	(void)state;
	watchdog();
	loop = new_loop();
	make_pair(c.fds);
	sl_io_init(loop, &c.io[0], c.fds[0], on_io, &c);
	assert_int_equal(sl_io_set(&c.io[0], SL_IO_READ), 0);
	close(c.fds[1]);
	c.fds[1] = -1;
	assert_int_equal(sl_loop_run(loop), 0);
	assert_true(c.events[0] & SL_IO_READ);
	assert_true(c.events[0] & SL_IO_HUP);
	assert_int_equal(read(c.fds[0], &b, 1), 0);
	sl_io_remove(&c.io[0]);
	close_fds(c.fds, 2);
	sl_loop_free(loop);
}

/* A write-only watcher on a socket whose peer is gone learns it by write. */
static void test_io_write_after_peer_close(void **state)
{
	struct ioctx c = {.stop_after = 1};
	sl_loop *loop;
	ssize_t n;

	(void)state;
	watchdog();
	loop = new_loop();
	make_pair(c.fds);
	sl_io_init(loop, &c.io[0], c.fds[0], on_io, &c);
	assert_int_equal(sl_io_set(&c.io[0], SL_IO_WRITE), 0);
	close(c.fds[1]);
	c.fds[1] = -1;
	assert_int_equal(sl_loop_run(loop), 0);
	assert_true(c.events[0] & SL_IO_WRITE);
	assert_false(c.events[0] & SL_IO_READ);
	n = send(c.fds[0], "q", 1, MSG_NOSIGNAL);
	assert_true(n < 0 && (errno == EPIPE || errno == ECONNRESET));
	sl_io_remove(&c.io[0]);
	close_fds(c.fds, 2);
	sl_loop_free(loop);
}

/*
 * TCP reset: ERROR or HUP, with READ, and read() returns ECONNRESET.  The
 * peer closes with SO_LINGER 0, which sends an RST instead of a FIN.
 */
static void test_io_error_on_reset(void **state)
{
	struct ioctx c = {.stop_after = 1};
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t len = sizeof sa;
	struct linger lg = {1, 0};
	int lfd, cfd, afd;
	sl_loop *loop;
	char b;

	(void)state;
	watchdog();
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	lfd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(lfd >= 0);
	assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof sa), 0);
	assert_int_equal(listen(lfd, 1), 0);
	assert_int_equal(getsockname(lfd, (struct sockaddr *)&sa, &len), 0);
	cfd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(cfd >= 0);
	assert_int_equal(connect(cfd, (struct sockaddr *)&sa, sizeof sa), 0);
	afd = accept(lfd, NULL, NULL);
	assert_true(afd >= 0);
	fcntl(cfd, F_SETFL, O_NONBLOCK);
	assert_int_equal(setsockopt(afd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg),
			 0);
	close(afd);

	loop = new_loop();
	sl_io_init(loop, &c.io[0], cfd, on_io, &c);
	assert_int_equal(sl_io_set(&c.io[0], SL_IO_READ), 0);
	assert_int_equal(sl_loop_run(loop), 0);
	assert_true(c.events[0] & SL_IO_READ);
	assert_true(c.events[0] & (SL_IO_ERROR | SL_IO_HUP));
	/* The reset is found on the descriptor, or (libkqueue, which takes
	 * SO_ERROR off the socket to fill the event) in the watcher. */
	errno = 0;
	if (c.io[0].error != 0) {
		assert_int_equal(c.io[0].error, ECONNRESET);
	} else {
		assert_true(read(cfd, &b, 1) < 0);
		assert_int_equal(errno, ECONNRESET);
	}
	sl_io_remove(&c.io[0]);
	close(cfd);
	close(lfd);
	sl_loop_free(loop);
}

/*
 * The peer's half-close must not wake a watcher that waits only to write
 * (sluice passes half-closes through: after reading the EOF a stream may
 * still have bytes to send).  The send buffer is full, so WRITE is not
 * ready either: the callback must stay silent until the timer ends it.
 */
static void test_io_half_close_write_only_is_quiet(void **state)
{
	struct ioctx c = {.stop_after = 1};
	char buf[4096];
	sl_loop *loop;
	sl_timer t;

	(void)state;
	watchdog();
	memset(buf, 'f', sizeof buf);
	loop = new_loop();
	make_pair(c.fds);
	while (write(c.fds[0], buf, sizeof buf) > 0)
		;
	assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
	assert_int_equal(shutdown(c.fds[1], SHUT_WR), 0);
	sl_io_init(loop, &c.io[0], c.fds[0], on_io, &c);
	assert_int_equal(sl_io_set(&c.io[0], SL_IO_WRITE), 0);
	sl_timer_init(loop, &t, on_stop_timer, NULL);
	sl_timer_start(&t, 30);
	assert_int_equal(sl_loop_run(loop), 0);
	assert_int_equal(c.calls[0], 0);
	sl_io_remove(&c.io[0]);
	close_fds(c.fds, 2);
	sl_loop_free(loop);
}

/* A descriptor closed without sl_io_remove, its number reused: follow it. */
static void test_io_fd_reused(void **state)
{
	struct ioctx c = {.stop_after = 1};
	sl_loop *loop;
	int old;

	(void)state;
	watchdog();
	loop = new_loop();
	make_pair(c.fds);
	sl_io_init(loop, &c.io[0], c.fds[0], on_io, &c);
	assert_int_equal(sl_io_set(&c.io[0], SL_IO_WRITE), 0);
	old = c.fds[0];
	close(c.fds[0]);
	close(c.fds[1]);
	make_pair(c.fds);
	if (c.fds[0] != old) {
		/* The kernel chose another number: nothing to check. */
		sl_io_remove(&c.io[0]);
		close_fds(c.fds, 2);
		sl_loop_free(loop);
		return;
	}
	assert_int_equal(write(c.fds[1], "r", 1), 1);
	assert_int_equal(sl_io_set(&c.io[0], SL_IO_READ), 0);
	assert_int_equal(sl_loop_run(loop), 0);
	assert_true(c.events[0] & SL_IO_READ);
	sl_io_remove(&c.io[0]);
	close_fds(c.fds, 2);
	sl_loop_free(loop);
}

#endif /* SL_LOOP_READINESS */

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_backend_and_basics),
		cmocka_unit_test(test_clock_monotonic),
		cmocka_unit_test(test_timer_order),
		cmocka_unit_test(test_timer_rearm_moves),
		cmocka_unit_test(test_timer_stop_rearm_in_callbacks),
		cmocka_unit_test(test_timer_heap_stress),
		cmocka_unit_test(test_timer_zero_rearm_no_starve),
		cmocka_unit_test(test_timer_not_early),
		cmocka_unit_test(test_post_from_thread),
		cmocka_unit_test(test_post_many_producers),
		cmocka_unit_test(test_post_coalesces_wakeups),
		cmocka_unit_test(test_stop_from_thread),
		cmocka_unit_test(test_stop_before_run),
		cmocka_unit_test(test_free_cancels_pending),
		cmocka_unit_test(test_cancel_tasks_before_free),
		cmocka_unit_test(test_defer),
		cmocka_unit_test(test_group),
		cmocka_unit_test(test_group_free_unstarted),
		cmocka_unit_test(test_group_batch_policy),
#ifdef SL_LOOP_READINESS
		cmocka_unit_test(test_io_read),
		cmocka_unit_test(test_io_stop_forget_reuse),
		cmocka_unit_test(test_io_level_triggered),
		cmocka_unit_test(test_io_write_and_pipe),
		cmocka_unit_test(test_io_stop_other_in_batch),
		cmocka_unit_test(test_io_remove_other_in_batch),
		cmocka_unit_test(test_io_stale_removed_after_batch),
		cmocka_unit_test(test_io_stop_restart),
		cmocka_unit_test(test_io_rdhup_on_half_close),
		cmocka_unit_test(test_io_hup_on_peer_close),
		cmocka_unit_test(test_io_write_after_peer_close),
		cmocka_unit_test(test_io_error_on_reset),
		cmocka_unit_test(test_io_half_close_write_only_is_quiet),
		cmocka_unit_test(test_io_fd_reused),
#endif
	};

#ifndef _WIN32
	/* A write to a closed peer must return EPIPE, not kill the test. */
	signal(SIGPIPE, SIG_IGN);
#endif
	return cmocka_run_group_tests(tests, NULL, NULL);
}
