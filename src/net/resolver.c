/*
 * Resolver threads: a mutex-protected FIFO of jobs, SL_RESOLVER_THREADS
 * workers (two, so one slow name does not hold up every other), and a small
 * cache.
 *
 * Answers stay in the cache; one older than the refresh interval is still
 * given at once (a connect never waits for a refresh) while a background
 * job looks the name up again.  A refresh that fails keeps the last good
 * addresses; one that finds others says so in the log.
 *
 * Cancellation: sl_resolve_cancel sets job->cancelled under res.lock.  A
 * worker decides under the same lock, once the answer is in, whether to
 * post the job back (then the result task frees it, and sees the flag if a
 * cancel came later: both run on the requesting loop's thread) or to free
 * it (cancelled: its stream, and maybe its loop, may be gone).
 */
#include "resolver.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef _WIN32
#include <netdb.h>
#include <netinet/in.h>
#endif

#include "log.h"
#include "net.h"

#define SL_RESOLVER_THREADS 2
#define SL_RESOLVE_CACHE_MAX 256 /* names; the oldest is dropped beyond */

struct sl_resolve {
	sl_task task;
	sl_resolve *next; /* resolver queue */
	sl_loop *loop;    /* NULL: a refresh, nobody waits for the answer */
	sl_resolve_cb cb;
	void *arg;
	int cancelled; /* written under res.lock */
	uint16_t port;
	int status;
	size_t n;
	struct sl_addr addrs[SL_RESOLVE_MAX_ADDRS];
	char host[]; /* NUL-terminated */
};

struct cache_entry {
	struct cache_entry *next;
	uint64_t stamp; /* sl_clock_ms() of the last good answer */
	int refreshing; /* a refresh job is queued or running */
	size_t n;
	struct sl_addr addrs[SL_RESOLVE_MAX_ADDRS];
	char host[];
};

static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	sl_resolve *head, *tail;
	int running;
	int stopping;
	pthread_t threads[SL_RESOLVER_THREADS];
	unsigned nthreads;
	struct cache_entry *cache; /* most recently stored first */
	size_t cache_len;
	uint64_t interval_ms; /* refresh answers older than this */
	sl_lookup_fn lookup_fn; /* NULL: getaddrinfo() */
} res = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.cond = PTHREAD_COND_INITIALIZER,
	.interval_ms = SL_RESOLVE_TTL_MS,
};

static void set_port(struct sl_addr *a, uint16_t port)
{
	if (a->ss.ss_family == AF_INET)
		((struct sockaddr_in *)&a->ss)->sin_port = htons(port);
	else if (a->ss.ss_family == AF_INET6)
		((struct sockaddr_in6 *)&a->ss)->sin6_port = htons(port);
}

void sl_sockaddr_ip(const struct sockaddr *sa, size_t len, sl_ipaddr *out)
{
	memset(out, 0, sizeof *out);
	if (sa->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
		const struct sockaddr_in *in = (const void *)sa;

		out->family = SL_AF_INET4;
		out->port = ntohs(in->sin_port);
		memcpy(out->ip, &in->sin_addr, 4);
	} else if (sa->sa_family == AF_INET6 &&
		   len >= sizeof(struct sockaddr_in6)) {
		const struct sockaddr_in6 *in6 = (const void *)sa;

		out->family = SL_AF_INET6;
		out->port = ntohs(in6->sin6_port);
		memcpy(out->ip, &in6->sin6_addr, 16);
	}
}

static int lookup(const char *host, uint16_t port, int flags,
		  struct sl_addr *addrs, size_t max, size_t *n)
{
	struct addrinfo hints, *ai = NULL, *p;
	int r;

	*n = 0;
	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_protocol = IPPROTO_TCP;
	/* No AI_ADDRCONFIG: glibc ignores loopback when deciding, so a host
	 * with only loopback configured (containers) could not resolve
	 * "localhost". */
	hints.ai_flags = flags;
	r = getaddrinfo(host, NULL, &hints, &ai);
	if (r != 0)
		return SL_ERESOLVE;
	for (p = ai; p != NULL && *n < max; p = p->ai_next) {
		if ((p->ai_family != AF_INET && p->ai_family != AF_INET6) ||
		    p->ai_addrlen > sizeof addrs[*n].ss)
			continue;
		memset(&addrs[*n], 0, sizeof addrs[*n]);
		memcpy(&addrs[*n].ss, p->ai_addr, p->ai_addrlen);
		addrs[*n].len = (socklen_t)p->ai_addrlen;
		set_port(&addrs[*n], port);
		(*n)++;
	}
	freeaddrinfo(ai);
	return *n > 0 ? 0 : SL_ERESOLVE;
}

int sl_resolve_numeric(const char *host, uint16_t port, int passive,
		       struct sl_addr *addrs, size_t max, size_t *n)
{
	return lookup(host, port, AI_NUMERICHOST | (passive ? AI_PASSIVE : 0),
		      addrs, max, n);
}

int sl_resolve_sync(const char *host, uint16_t port, int passive,
		    struct sl_addr *addrs, size_t max, size_t *n)
{
	return lookup(host, port, passive ? AI_PASSIVE : 0, addrs, max, n);
}

/* ---- cache (under res.lock) --------------------------------------------- */

static struct cache_entry *cache_find(const char *host)
{
	for (struct cache_entry *e = res.cache; e != NULL; e = e->next)
		if (strcmp(e->host, host) == 0)
			return e;
	return NULL;
}

/* The same addresses, ports aside, in any order. */
static int same_addrs(const struct sl_addr *a, size_t na,
		      const struct sl_addr *b, size_t nb)
{
	if (na != nb)
		return 0;
	for (size_t i = 0; i < na; i++) {
		sl_ipaddr x, y;
		size_t j;

		sl_sockaddr_ip((const struct sockaddr *)&a[i].ss, a[i].len, &x);
		for (j = 0; j < nb; j++) {
			sl_sockaddr_ip((const struct sockaddr *)&b[j].ss,
				       b[j].len, &y);
			if (x.family == y.family &&
			    memcmp(x.ip, y.ip, sizeof x.ip) == 0)
				break;
		}
		if (j == nb)
			return 0;
	}
	return 1;
}

static const char *addrs_text(const struct sl_addr *a, size_t n, char *buf,
			      size_t len)
{
	size_t off = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < n && off + 1 < len; i++) {
		char t[SL_IPADDR_TEXT_MAX];
		sl_ipaddr x;
		int w;

		sl_sockaddr_ip((const struct sockaddr *)&a[i].ss, a[i].len, &x);
		sl_ipaddr_format(&x, t, sizeof t);
		w = snprintf(buf + off, len - off, "%s%s", i ? " " : "", t);
		if (w < 0)
			break;
		off += (size_t)w;
	}
	return buf;
}

static void cache_store(const char *host, const struct sl_addr *addrs,
			size_t n, uint64_t now)
{
	struct cache_entry *e = cache_find(host), **pp;
	size_t hlen = strlen(host) + 1;
	char text[512];

	if (e == NULL) {
		e = malloc(sizeof *e + hlen);
		if (e == NULL)
			return; /* only the cache suffers */
		e->refreshing = 0;
		e->n = 0;
		memcpy(e->host, host, hlen);
		e->next = res.cache;
		res.cache = e;
		if (++res.cache_len > SL_RESOLVE_CACHE_MAX) {
			/* Drop the last (oldest inserted) entry. */
			for (pp = &res.cache; (*pp)->next != NULL;
			     pp = &(*pp)->next)
				;
			free(*pp);
			*pp = NULL;
			res.cache_len--;
		}
	}
	if (e->n > 0 && !same_addrs(e->addrs, e->n, addrs, n))
		sl_info("resolver: %s now resolves to %s", host,
			addrs_text(addrs, n, text, sizeof text));
	e->stamp = now;
	e->n = n;
	memcpy(e->addrs, addrs, n * sizeof *addrs);
}

/* Copy a cached answer into job; fresh_only: younger than the interval. */
static int cache_answer(sl_resolve *job, int fresh_only, uint64_t now)
{
	struct cache_entry *e = cache_find(job->host);

	if (e == NULL || (fresh_only && now - e->stamp >= res.interval_ms))
		return 0;
	job->n = e->n;
	memcpy(job->addrs, e->addrs, e->n * sizeof *e->addrs);
	for (size_t i = 0; i < job->n; i++)
		set_port(&job->addrs[i], job->port);
	job->status = 0;
	return 1;
}

/* ---- jobs --------------------------------------------------------------- */

/*
 * Under res.lock: hand the answered job to its loop, or free it when it was
 * cancelled meanwhile.  Posting under the lock is what makes a concurrent
 * cancel safe; sl_loop_post only takes the loop's own queue lock, and no
 * loop takes res.lock while holding that.
 */
static void job_finish_locked(sl_resolve *job)
{
	if (job->loop == NULL) { /* a refresh */
		struct cache_entry *e = cache_find(job->host);

		if (e != NULL)
			e->refreshing = 0;
		free(job);
	} else if (job->cancelled) {
		free(job);
	} else {
		sl_loop_post(job->loop, &job->task);
	}
}

/* On the requesting loop. */
static void job_done(sl_task *t, int status)
{
	sl_resolve *job = t->data;

	if (status == 0 && !job->cancelled)
		job->cb(job->arg, job->status, job->addrs, job->n);
	free(job);
}

static void *worker(void *unused)
{
	sl_lookup_fn fn;
	sl_resolve *job;
	uint64_t now;
	int r;

	(void)unused;
	pthread_mutex_lock(&res.lock);
	for (;;) {
		while (res.head == NULL && !res.stopping)
			pthread_cond_wait(&res.cond, &res.lock);
		if (res.stopping)
			break;
		job = res.head;
		res.head = job->next;
		if (res.head == NULL)
			res.tail = NULL;
		/* Cancelled while queued, or another worker refreshed this
		 * name meanwhile: no lookup. */
		if (job->cancelled || cache_answer(job, 1, sl_clock_ms())) {
			job_finish_locked(job);
			continue;
		}

		fn = res.lookup_fn;
		pthread_mutex_unlock(&res.lock);

		if (fn != NULL) {
			r = fn(job->host, job->addrs, SL_RESOLVE_MAX_ADDRS,
			       &job->n);
			for (size_t i = 0; r == 0 && i < job->n; i++)
				set_port(&job->addrs[i], job->port);
		} else {
			r = lookup(job->host, job->port, 0, job->addrs,
				   SL_RESOLVE_MAX_ADDRS, &job->n);
		}
		now = sl_clock_ms();

		pthread_mutex_lock(&res.lock);
		if (r == 0) {
			cache_store(job->host, job->addrs, job->n, now);
		} else if (!cache_answer(job, 0, now)) {
			job->status = SL_ERESOLVE;
		} else {
			sl_warn("resolver: %s did not resolve; keeping its "
				"last good addresses",
				job->host);
			/* Not again before the next interval. */
			cache_find(job->host)->stamp = now;
		}
		job_finish_locked(job);
	}
	pthread_mutex_unlock(&res.lock);
	return NULL;
}

int sl_resolver_init(void)
{
	int r = 0;

	pthread_mutex_lock(&res.lock);
	if (res.running) {
		pthread_mutex_unlock(&res.lock);
		return 0;
	}
	res.stopping = 0;
	for (res.nthreads = 0; res.nthreads < SL_RESOLVER_THREADS;
	     res.nthreads++) {
		r = pthread_create(&res.threads[res.nthreads], NULL, worker,
				   NULL);
		if (r != 0)
			break;
	}
	if (res.nthreads > 0) {
		res.running = 1;
		r = 0;
	}
	pthread_mutex_unlock(&res.lock);
	return -r;
}

void sl_resolver_shutdown(void)
{
	struct cache_entry *e;
	sl_resolve *job;

	pthread_mutex_lock(&res.lock);
	if (!res.running) {
		pthread_mutex_unlock(&res.lock);
		return;
	}
	res.stopping = 1;
	pthread_cond_broadcast(&res.cond);
	pthread_mutex_unlock(&res.lock);
	for (unsigned i = 0; i < res.nthreads; i++)
		pthread_join(res.threads[i], NULL);

	/* Jobs still queued: their loops may be gone by now, so they are
	 * dropped, not posted; their streams were closed (cancelled) first. */
	pthread_mutex_lock(&res.lock);
	while ((job = res.head) != NULL) {
		res.head = job->next;
		free(job);
	}
	res.tail = NULL;
	while ((e = res.cache) != NULL) {
		res.cache = e->next;
		free(e);
	}
	res.cache_len = 0;
	res.nthreads = 0;
	res.running = 0;
	pthread_mutex_unlock(&res.lock);
}

static sl_resolve *job_new(const char *host)
{
	size_t hlen = strlen(host) + 1;
	sl_resolve *job = malloc(sizeof *job + hlen);

	if (job == NULL)
		return NULL;
	memset(job, 0, sizeof *job);
	memcpy(job->host, host, hlen);
	sl_task_init(&job->task, job_done, job);
	return job;
}

static void enqueue_locked(sl_resolve *job)
{
	if (res.tail != NULL)
		res.tail->next = job;
	else
		res.head = job;
	res.tail = job;
	pthread_cond_signal(&res.cond);
}

/*
 * Under res.lock: when host's answer is older than the interval and no
 * refresh is on its way, queue one.  A name never looked up is queued as
 * well when queue_new says so (a prefetch).
 */
static void refresh_locked(const char *host, uint64_t now, int queue_new)
{
	struct cache_entry *e = cache_find(host);
	sl_resolve *job;

	if (e != NULL && (e->refreshing || now - e->stamp < res.interval_ms))
		return;
	if (e == NULL && !queue_new)
		return;
	if ((job = job_new(host)) == NULL)
		return; /* the next connect or prefetch tries again */
	if (e != NULL)
		e->refreshing = 1;
	enqueue_locked(job);
}

int sl_resolve_start(sl_loop *loop, const char *host, uint16_t port,
		     sl_resolve_cb cb, void *arg, sl_resolve **out)
{
	sl_resolve *job = job_new(host);
	uint64_t now = sl_clock_ms();

	if (job == NULL)
		return -ENOMEM;
	job->loop = loop;
	job->cb = cb;
	job->arg = arg;
	job->port = port;

	pthread_mutex_lock(&res.lock);
	if (!res.running) {
		pthread_mutex_unlock(&res.lock);
		free(job);
		return -EINVAL;
	}
	if (cache_answer(job, 0, now)) {
		/* In the cache, fresh or not: answer without waiting for a
		 * worker (the post still keeps the callback out of this
		 * call), and refresh in the background if it is old. */
		refresh_locked(host, now, 0);
		pthread_mutex_unlock(&res.lock);
		*out = job;
		sl_loop_post(loop, &job->task);
		return 0;
	}
	enqueue_locked(job);
	pthread_mutex_unlock(&res.lock);
	*out = job;
	return 0;
}

void sl_net_prefetch(const char *host)
{
	pthread_mutex_lock(&res.lock);
	if (res.running)
		refresh_locked(host, sl_clock_ms(), 1);
	pthread_mutex_unlock(&res.lock);
}

void sl_net_set_resolve_interval(uint64_t ms)
{
	pthread_mutex_lock(&res.lock);
	res.interval_ms = ms > 0 ? ms : SL_RESOLVE_TTL_MS;
	pthread_mutex_unlock(&res.lock);
}

void sl_resolver_set_lookup(sl_lookup_fn fn)
{
	pthread_mutex_lock(&res.lock);
	res.lookup_fn = fn;
	pthread_mutex_unlock(&res.lock);
}

void sl_resolve_cancel(sl_resolve *r)
{
	if (r == NULL)
		return;
	pthread_mutex_lock(&res.lock);
	r->cancelled = 1;
	pthread_mutex_unlock(&res.lock);
}
