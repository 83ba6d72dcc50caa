/*
 * Active health checks, on the control loop: every `interval`, connect to
 * each upstream of a route that has `health: check:`, optionally send
 * bytes and expect the reply to begin with others, all within `timeout`.
 * `fall` failures in a row mark an upstream down, `rise` passes in a row
 * mark it up again; changes are logged (upstream_set_down).
 *
 * A check set lives as long as the config it was started for: a reload
 * starts a new one (health states carry over, they belong to the
 * upstream states) and stops the old, whose checks in flight are closed.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "health.h"
#include "log.h"

struct hconf {
	uint64_t interval_ms, timeout_ms;
	unsigned rise, fall;
	char *send, *expect;
	size_t send_len, expect_len;
};

struct check {
	struct health *h;
	struct route *r; /* a reference */
	struct upstream *u;
	const struct hconf *hc;
	sl_timer timer;
	sl_stream *s; /* the check in flight */
	sl_stream *ws; /* the stream wreq was queued on */
	sl_write_req wreq;
	char *got; /* expect_len bytes */
	size_t ngot;
	uint64_t started;
};

struct health {
	sl_loop *control;
	sl_wg *closing; /* the drain waits for the check streams in it */
	struct hconf *hc;
	size_t nhc;
	struct check *checks;
	size_t n;
	int stopping;
	unsigned refs; /* 1 until stopped, + 1 per check stream closing */
};

static void health_free(struct health *h)
{
	for (size_t i = 0; i < h->n; i++) {
		free(h->checks[i].got);
		route_unref(h->checks[i].r);
	}
	for (size_t i = 0; i < h->nhc; i++) {
		free(h->hc[i].send);
		free(h->hc[i].expect);
	}
	free(h->checks);
	free(h->hc);
	free(h);
}

static void health_unref(struct health *h)
{
	if (--h->refs == 0)
		health_free(h);
}

static void on_check_closed(sl_stream *s)
{
	struct check *c = sl_stream_get_data(s);
	sl_wg *closing = c->h->closing;

	health_unref(c->h);
	sl_wg_done(closing);
}

/* Every close holds the set (the stream's data is one of its checks) and
 * counts in the closing group the drain waits on. */
static void check_close(struct check *c)
{
	c->h->refs++;
	sl_wg_add(c->h->closing);
	sl_stream_close(c->s, on_check_closed);
	c->s = NULL;
}

/* The check in flight has its answer: count it, close, wait for the next. */
/*
 * kind: a static text (it is kept for /status, read by other threads);
 * err: the error behind it, 0 if none.
 */
static void check_done(struct check *c, int ok, const char *kind, int err)
{
	char why[160];
	struct upstream_state *st = c->u->st;
	const struct hconf *hc = c->hc;
	uint64_t now = sl_clock_ms();
	uint64_t next;

	if (c->s != NULL)
		check_close(c);
	if (ok) {
		st->check_fail_run = 0;
		if (++st->check_ok_run >= hc->rise &&
		    atomic_load(&st->down)) {
			char text[96];

			snprintf(text, sizeof text, "%u checks passed",
				 st->check_ok_run);
			upstream_set_down(c->r, st, 0, text);
		}
	} else {
		if (err != 0)
			snprintf(why, sizeof why, "%s: %s", kind,
				 sl_strerror(err));
		else
			snprintf(why, sizeof why, "%s", kind);
		atomic_fetch_add(&st->checks_failed, 1);
		atomic_store(&st->reason, kind);
		st->check_ok_run = 0;
		if (++st->check_fail_run >= hc->fall &&
		    !atomic_load(&st->down)) {
			char text[224];

			snprintf(text, sizeof text, "%u checks failed (last: %s)",
				 st->check_fail_run, why);
			upstream_set_down(c->r, st, 1, text);
		}
		sl_debug("route %s: check of %s failed: %s", c->r->name,
			 c->u->name, why);
	}
	/* Every interval from the start of the last check. */
	next = c->started + hc->interval_ms;
	sl_timer_start(&c->timer, next > now ? next - now : 0);
}

static void on_check_read_alloc(sl_stream *s, size_t suggested, sl_buf *buf)
{
	struct check *c = sl_stream_get_data(s);

	(void)suggested;
	buf->base = c->got + c->ngot;
	buf->len = c->hc->expect_len - c->ngot;
}

static void on_check_read(sl_stream *s, ptrdiff_t n, const sl_buf *buf)
{
	struct check *c = sl_stream_get_data(s);

	(void)buf;
	if (n == 0 || s != c->s)
		return; /* nothing, or a check already closed */
	if (n < 0) {
		check_done(c, 0, n == SL_EOF ? "closed before the expected reply"
					     : "read failed",
			   n == SL_EOF ? 0 : (int)n);
		return;
	}
	c->ngot += (size_t)n;
	if (memcmp(c->got, c->hc->expect, c->ngot) != 0) {
		check_done(c, 0, "unexpected reply", 0);
		return;
	}
	if (c->ngot == c->hc->expect_len)
		check_done(c, 1, NULL, 0);
}

static void on_check_written(sl_write_req *req, int status)
{
	struct check *c = req->data;

	/* A write done just before its check was closed still reports 0. */
	if (status == -ECANCELED || c->ws != c->s)
		return;
	if (status < 0) {
		check_done(c, 0, "send failed", status);
		return;
	}
	if (c->hc->expect == NULL)
		check_done(c, 1, NULL, 0);
}

static void on_check_connect(sl_stream *s, int status)
{
	struct check *c = sl_stream_get_data(s);
	int r;

	/*
	 * A connect that completed just before its check was closed (the
	 * check timed out, or a reload stopped the set) still reports its
	 * status: the check is over, and its set may be stopping.
	 */
	if (status == -ECANCELED || s != c->s)
		return;
	if (status < 0) {
		check_done(c, 0, "connect failed", status);
		return;
	}
	if (c->hc->send != NULL) {
		c->wreq.data = c;
		c->ws = s;
		r = sl_stream_write(s, &c->wreq, c->hc->send, c->hc->send_len,
				    on_check_written);
		if (r < 0) {
			check_done(c, 0, "send failed", r);
			return;
		}
	}
	if (c->hc->expect != NULL) {
		c->ngot = 0;
		r = sl_stream_read_start(s, on_check_read_alloc, on_check_read);
		if (r < 0)
			check_done(c, 0, "read failed", r);
		return;
	}
	if (c->hc->send == NULL)
		check_done(c, 1, NULL, 0);
}

static void on_check_timer(sl_timer *t)
{
	struct check *c = t->data;
	int r;

	if (c->s != NULL) { /* the check took too long */
		check_done(c, 0, "timed out", 0);
		return;
	}
	c->started = sl_clock_ms();
	r = sl_stream_connect_opts(c->h->control, &c->u->ep,
				   c->hc->timeout_ms, &c->u->copts,
				   on_check_connect, c, &c->s);
	if (r < 0) {
		c->s = NULL;
		check_done(c, 0, "connect failed", r);
		return;
	}
	/* The connect has its own timeout; this one covers the reply. */
	sl_timer_start(&c->timer, c->hc->timeout_ms);
}

static int hconf_copy(struct hconf *d, const sl_health_conf *s)
{
	d->interval_ms = s->interval_ms;
	d->timeout_ms = s->timeout_ms ? s->timeout_ms : 1;
	d->rise = s->rise ? s->rise : 1;
	d->fall = s->fall ? s->fall : 1;
	if (s->send != NULL) {
		if ((d->send = malloc(s->send_len)) == NULL)
			return -ENOMEM;
		memcpy(d->send, s->send, s->send_len);
		d->send_len = s->send_len;
	}
	if (s->expect != NULL) {
		if ((d->expect = malloc(s->expect_len)) == NULL)
			return -ENOMEM;
		memcpy(d->expect, s->expect, s->expect_len);
		d->expect_len = s->expect_len;
	}
	return 0;
}

int health_start(sl_loop *control, sl_wg *closing, const sl_config *cfg,
		 struct route **routes, size_t n, struct health **out)
{
	struct health *h = calloc(1, sizeof *h);
	size_t total = 0, k = 0;

	*out = NULL;
	if (h == NULL)
		return -ENOMEM;
	h->control = control;
	h->closing = closing;
	h->refs = 1;
	for (size_t i = 0; i < n; i++)
		if (cfg->routes[i].health.interval_ms > 0)
			total += routes[i]->nups;
	h->hc = calloc(n ? n : 1, sizeof *h->hc);
	h->checks = calloc(total ? total : 1, sizeof *h->checks);
	if (h->hc == NULL || h->checks == NULL) {
		health_free(h);
		return -ENOMEM;
	}
	h->nhc = n;
	for (size_t i = 0; i < n; i++) {
		if (cfg->routes[i].health.interval_ms == 0)
			continue;
		if (hconf_copy(&h->hc[i], &cfg->routes[i].health) < 0) {
			health_free(h);
			return -ENOMEM;
		}
		for (size_t j = 0; j < routes[i]->nups; j++) {
			struct check *c = &h->checks[k];

			/* A command started to check it would be a session
			 * of its own: an exec: upstream has no checks. */
			if (routes[i]->ups[j].argv != NULL)
				continue;
			if (h->hc[i].expect != NULL &&
			    (c->got = malloc(h->hc[i].expect_len)) == NULL) {
				health_free(h);
				return -ENOMEM;
			}
			c->h = h;
			c->r = routes[i];
			route_ref(c->r);
			c->u = &routes[i]->ups[j];
			c->hc = &h->hc[i];
			sl_timer_init(control, &c->timer, on_check_timer, c);
			h->n = ++k;
		}
	}
	/* The first round soon, spread out a little so a reload does not
	 * open every check connection in the same millisecond. */
	for (size_t i = 0; i < h->n; i++) {
		uint64_t spread = h->checks[i].hc->interval_ms < 1000
					  ? h->checks[i].hc->interval_ms
					  : 1000;

		sl_timer_start(&h->checks[i].timer, (i * 37) % (spread + 1));
	}
	*out = h;
	return 0;
}

void health_stop(struct health *h)
{
	if (h == NULL)
		return;
	h->stopping = 1;
	for (size_t i = 0; i < h->n; i++) {
		struct check *c = &h->checks[i];

		sl_timer_stop(&c->timer);
		if (c->s != NULL)
			check_close(c);
	}
	health_unref(h);
}
