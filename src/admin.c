/*
 * The admin listener: just enough HTTP/1.1 for curl and Prometheus.
 *
 *   GET /metrics   Prometheus text format (version 0.0.4)
 *   GET /status    JSON: routes, upstreams, health
 *
 * One request per connection (the answer says Connection: close), a
 * request of at most 8 KiB read within 5 s, at most 32 connections at
 * once (beyond, clients wait in the backlog).  Access lists like a
 * route's; a client they refuse is closed without an answer.  Connections
 * spread over the loop group like sessions; the numbers are read from the
 * counters' atomics and, for the list of routes, through the accessor the
 * proxy hands the listener (under its state lock).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "admin.h"
#include "log.h"
#include "tls.h"

#define ADMIN_REQ_MAX 8192
#define ADMIN_TIMEOUT_MS 5000

struct admin {
	/* From the proxy; env.closing counts this listener until it and
	 * its last connection have closed. */
	struct admin_env env;
	sl_listener *l;
	sl_endpoint ep;
	pthread_mutex_t acl_lock;
	sl_acl acl; /* under acl_lock */
	atomic_uint conns;
	atomic_uint refs; /* 1 for the listener, 1 per connection */
	int started;
	int lclosed; /* under acl_lock: l may no longer be resumed */
};

struct aconn {
	struct admin *a;
	sl_stream *s;
	sl_timer timer;
	sl_write_req req;
	char *out; /* the answer */
	size_t len;
	char in[ADMIN_REQ_MAX];
};

/* ---- text building ---------------------------------------------------------- */

struct sbuf {
	char *b;
	size_t len, cap;
	int oom;
};

#if defined(__GNUC__)
__attribute__((format(SL_FMT_PRINTF, 2, 3)))
#endif
static void sb_printf(struct sbuf *sb, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (sb->oom)
		return;
	for (;;) {
		size_t room = sb->cap - sb->len;

		va_start(ap, fmt);
		n = vsnprintf(sb->b != NULL ? sb->b + sb->len : NULL, room, fmt,
			      ap);
		va_end(ap);
		if (n < 0) {
			sb->oom = 1;
			return;
		}
		if ((size_t)n < room) {
			sb->len += (size_t)n;
			return;
		}
		size_t cap = sb->cap ? sb->cap * 2 : 4096;
		while (cap - sb->len <= (size_t)n)
			cap *= 2;
		char *nb = realloc(sb->b, cap);
		if (nb == NULL) {
			sb->oom = 1;
			return;
		}
		sb->b = nb;
		sb->cap = cap;
	}
}

/* s as a Prometheus label value or a JSON string body (same escapes for
 * what endpoint names can hold: backslash, quote, control characters). */
static void sb_quoted(struct sbuf *sb, const char *s, int json)
{
	for (; *s != '\0'; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch == '\\' || ch == '"')
			sb_printf(sb, "\\%c", ch);
		else if (ch == '\n')
			sb_printf(sb, "\\n");
		else if (ch < 0x20 && json)
			sb_printf(sb, "\\u%04x", ch);
		else if (ch >= 0x20)
			sb_printf(sb, "%c", ch);
	}
}

/* ---- /metrics ------------------------------------------------------------------- */

struct metric {
	const char *name, *type, *help;
};

static const struct metric route_metrics[] = {
	{ "sluice_route_sessions_active", "gauge", "Sessions open now." },
	{ "sluice_route_sessions_total", "counter", "Sessions accepted." },
	{ "sluice_route_bytes_in_total", "counter",
	  "Bytes from clients to upstreams." },
	{ "sluice_route_bytes_out_total", "counter",
	  "Bytes from upstreams to clients." },
	{ "sluice_route_connect_failures_total", "counter",
	  "Upstream connect attempts that failed." },
	{ "sluice_route_denied_total", "counter",
	  "Clients refused by an access list." },
	{ "sluice_route_client_limited_total", "counter",
	  "Clients refused by max_connections_per_client." },
	{ "sluice_route_no_upstream_total", "counter",
	  "Clients refused or timed out in the queue: every upstream down." },
	{ "sluice_route_bad_proxy_total", "counter",
	  "Connections closed for a bad, late or untrusted PROXY header." },
	{ "sluice_route_queued", "gauge",
	  "Clients waiting for an upstream to come up." },
	{ "sluice_route_rate_limited_total", "counter",
	  "Times rate_limit paused accepting." },
	{ "sluice_route_tls_refused_total", "counter",
	  "TLS clients refused: handshake failed or timed out, no "
	  "certificate, not verified, or not in allow." },
	{ "sluice_route_accept_pauses_total", "counter",
	  "Times accepting paused for want of descriptors or memory." },
};

enum {
	RM_ACTIVE,
	RM_SESSIONS,
	RM_IN,
	RM_OUT,
	RM_FAILS,
	RM_DENIED,
	RM_LIMITED,
	RM_NOUP,
	RM_BADPP,
	RM_QUEUED,
	RM_RATE,
	RM_TLS,
	RM_PAUSES,
	RM_COUNT
};

static const struct metric up_metrics[] = {
	{ "sluice_upstream_up", "gauge", "1 when the upstream is up." },
	{ "sluice_upstream_sessions_active", "gauge",
	  "Sessions connecting or connected to it now." },
	{ "sluice_upstream_sessions_total", "counter",
	  "Sessions that connected to it." },
	{ "sluice_upstream_bytes_in_total", "counter",
	  "Bytes sent to it from clients." },
	{ "sluice_upstream_bytes_out_total", "counter",
	  "Bytes from it to clients." },
	{ "sluice_upstream_connect_failures_total", "counter",
	  "Connect attempts to it that failed." },
	{ "sluice_upstream_check_failures_total", "counter",
	  "Active health checks of it that failed." },
};

enum { UM_UP, UM_ACTIVE, UM_SESSIONS, UM_IN, UM_OUT, UM_FAILS, UM_CHECKS,
       UM_COUNT };

static uint64_t route_value(const struct admin_view *v, size_t i, int m)
{
	const struct route_state *st = v->routes[i]->st;
	unsigned n = st->nloops;

	switch (m) {
	case RM_ACTIVE:
		return atomic_load(&st->active);
	case RM_SESSIONS:
		return ctr_sum(st->ctr, n, CTR_SESSIONS);
	case RM_IN:
		return ctr_sum(st->ctr, n, CTR_BYTES_IN);
	case RM_OUT:
		return ctr_sum(st->ctr, n, CTR_BYTES_OUT);
	case RM_FAILS:
		return ctr_sum(st->ctr, n, CTR_CONNECT_FAILS);
	case RM_DENIED:
		return ctr_sum(st->ctr, n, CTR_DENIED);
	case RM_LIMITED:
		return ctr_sum(st->ctr, n, CTR_LIMITED);
	case RM_NOUP:
		return ctr_sum(st->ctr, n, CTR_NO_UPSTREAM);
	case RM_BADPP:
		return ctr_sum(st->ctr, n, CTR_BAD_PROXY);
	case RM_QUEUED:
		return atomic_load(&st->queued);
	case RM_RATE:
		return atomic_load(&st->rate_pauses);
	case RM_TLS:
		return ctr_sum(st->ctr, n, CTR_TLS_REFUSED);
	default:
		return v->fd_pauses[i];
	}
}

static uint64_t up_value(const struct upstream_state *u, unsigned n, int m)
{
	switch (m) {
	case UM_UP:
		return !atomic_load(&u->down);
	case UM_ACTIVE:
		return atomic_load(&u->active);
	case UM_SESSIONS:
		return ctr_sum(u->ctr, n, CTR_SESSIONS);
	case UM_IN:
		return ctr_sum(u->ctr, n, CTR_BYTES_IN);
	case UM_OUT:
		return ctr_sum(u->ctr, n, CTR_BYTES_OUT);
	case UM_FAILS:
		return ctr_sum(u->ctr, n, CTR_CONNECT_FAILS);
	default:
		return atomic_load(&u->checks_failed);
	}
}

/* ---- TLS series ---------------------------------------------------------- */

/* The result label of each TLS result (route.h's enum tls_result), as the
 * log's reasons name them. */
static const char *const tls_results[TLS_RESULTS] = {
	[TLS_OK] = "ok",
	[TLS_NO_CERT] = "no-cert",
	[TLS_VERIFY] = "verify-failed",
	[TLS_NOT_ALLOWED] = "not-allowed",
	[TLS_TIMEOUT] = "timeout",
	[TLS_PROTOCOL] = "protocol",
};

/* Whether r has a TLS listener (side 0) or a TLS upstream (side 1). */
static int route_tls_side(const struct route *r, int side)
{
	for (size_t i = 0; side == 0 && i < r->nlistens; i++)
		if (r->listens[i].tls != NULL)
			return 1;
	for (size_t i = 0; side == 1 && i < r->nups; i++)
		if (r->ups[i].tls != NULL)
			return 1;
	return 0;
}

static void sb_route_label(struct sbuf *sb, const char *metric,
			   const struct route *r)
{
	sb_printf(sb, "%s{route=\"", metric);
	sb_quoted(sb, r->name, 0);
	sb_printf(sb, "\"");
}

#ifdef SL_HAVE_TLS
/* The TLS context of r's k-th endpoint: its listeners, then its
 * upstreams. */
static const struct sl_tls_ctx *route_ctx(const struct route *r, size_t k)
{
	return k < r->nlistens ? r->listens[k].tls
			       : r->ups[k - r->nlistens].tls;
}

/* The certificate file of r's k-th endpoint, or NULL. */
static const char *route_cert(const struct route *r, size_t k,
			      long long *end)
{
	const struct sl_tls_ctx *c = route_ctx(r, k);
	const char *file = NULL;

	if (c != NULL)
		*end = sl_tls_ctx_not_after(c, &file);
	return file;
}

/* One expiry line per certificate file of r (the first endpoint that
 * names it). */
static void render_expiry(struct sbuf *sb, const struct route *r,
			  long long now)
{
	size_t n = r->nlistens + r->nups;

	for (size_t k = 0; k < n; k++) {
		long long end = 0, e2;
		const char *file = route_cert(r, k, &end), *f2;
		size_t j;

		for (j = 0; file != NULL && j < k; j++)
			if ((f2 = route_cert(r, j, &e2)) != NULL &&
			    strcmp(f2, file) == 0)
				break;
		if (file == NULL || j < k)
			continue;
		sb_route_label(sb, "sluice_tls_cert_expiry_seconds", r);
		sb_printf(sb, ",file=\"");
		sb_quoted(sb, file, 0);
		sb_printf(sb, "\"} %lld\n", end - now);
	}
}
#endif

static void render_tls(const struct admin_view *v, struct sbuf *sb)
{
	static const char *const sides[2] = {"client", "upstream"};

	sb_printf(sb, "# HELP sluice_tls_handshakes_total TLS handshakes by "
		      "side (client: a TLS listener's clients; upstream: "
		      "sluice's own to a TLS upstream) and result (ok, or "
		      "why it failed).\n"
		      "# TYPE sluice_tls_handshakes_total counter\n");
	for (size_t i = 0; i < v->nroutes; i++) {
		const struct route *r = v->routes[i];

		for (int side = 0; side < 2; side++) {
			if (!route_tls_side(r, side))
				continue;
			for (int res = 0; res < TLS_RESULTS; res++) {
				/* Upstreams are asked for no certificate
				 * and checked against no allow. */
				if (side == 1 && (res == TLS_NO_CERT ||
						  res == TLS_NOT_ALLOWED))
					continue;
				sb_route_label(sb, "sluice_tls_handshakes_total",
					       r);
				sb_printf(sb,
					  ",side=\"%s\",result=\"%s\"} %" PRIu64
					  "\n",
					  sides[side], tls_results[res],
					  ctr_sum(r->st->ctr, r->st->nloops,
						  (enum ctr_id)((side
								 ? CTR_TLS_UPSTREAM
								 : CTR_TLS_CLIENT) +
								res)));
			}
		}
	}
	sb_printf(sb, "# HELP sluice_tls_reload_refused_total TLS "
		      "certificates, keys or CAs that did not load at a "
		      "reload (the ones loaded before stayed).\n"
		      "# TYPE sluice_tls_reload_refused_total counter\n");
	for (size_t i = 0; i < v->nroutes; i++) {
		const struct route *r = v->routes[i];

		if (!route_tls_side(r, 0) && !route_tls_side(r, 1))
			continue;
		sb_route_label(sb, "sluice_tls_reload_refused_total", r);
		sb_printf(sb, "} %llu\n",
			  (unsigned long long)atomic_load(
				  &r->st->tls_reload_refused));
	}
#ifdef SL_HAVE_TLS
	long long now = (long long)time(NULL);

	sb_printf(sb, "# HELP sluice_tls_cert_expiry_seconds Seconds until "
		      "the certificate in file expires (negative: it has), "
		      "as loaded at the start or the last reload.\n"
		      "# TYPE sluice_tls_cert_expiry_seconds gauge\n");
	for (size_t i = 0; i < v->nroutes; i++)
		render_expiry(sb, v->routes[i], now);
#endif
}

static void render_metrics(const struct admin_view *v, struct sbuf *sb)
{
	sb_printf(sb,
		  "# HELP sluice_start_time_seconds When sluice started, in "
		  "seconds since the epoch.\n"
		  "# TYPE sluice_start_time_seconds gauge\n"
		  "sluice_start_time_seconds %" PRIu64 "\n"
		  "# HELP sluice_reloads_total Config reloads that took "
		  "effect.\n"
		  "# TYPE sluice_reloads_total counter\n"
		  "sluice_reloads_total %llu\n"
		  "# HELP sluice_reload_failures_total Reloads refused (the "
		  "running config stayed).\n"
		  "# TYPE sluice_reload_failures_total counter\n"
		  "sluice_reload_failures_total %llu\n"
		  "# HELP sluice_sessions_active Sessions open now.\n"
		  "# TYPE sluice_sessions_active gauge\n"
		  "sluice_sessions_active %lu\n",
		  v->start_time, v->reloads, v->reload_failures, v->active);
	for (int m = 0; m < RM_COUNT; m++) {
		sb_printf(sb, "# HELP %s %s\n# TYPE %s %s\n",
			  route_metrics[m].name, route_metrics[m].help,
			  route_metrics[m].name, route_metrics[m].type);
		for (size_t i = 0; i < v->nroutes; i++) {
			const struct route *r = v->routes[i];

			sb_printf(sb, "%s{route=\"", route_metrics[m].name);
			sb_quoted(sb, r->name, 0);
			sb_printf(sb, "\"} %" PRIu64 "\n",
				  route_value(v, i, m));
		}
	}
	for (int m = 0; m < UM_COUNT; m++) {
		sb_printf(sb, "# HELP %s %s\n# TYPE %s %s\n",
			  up_metrics[m].name, up_metrics[m].help,
			  up_metrics[m].name, up_metrics[m].type);
		for (size_t i = 0; i < v->nroutes; i++) {
			const struct route *r = v->routes[i];

			for (size_t j = 0; j < r->nups; j++) {
				/* An address listed twice is one upstream. */
				size_t k;
				for (k = 0; k < j; k++)
					if (r->ups[k].st == r->ups[j].st)
						break;
				if (k < j)
					continue;
				sb_printf(sb, "%s{route=\"", up_metrics[m].name);
				sb_quoted(sb, r->name, 0);
				sb_printf(sb, "\",upstream=\"");
				sb_quoted(sb, r->ups[j].name, 0);
				sb_printf(sb, "\"} %" PRIu64 "\n",
					  up_value(r->ups[j].st,
						   r->st->nloops, m));
			}
		}
	}
	render_tls(v, sb);
}

/* ---- /status ------------------------------------------------------------------- */

static const char *balance_name(enum sl_balance b)
{
	switch (b) {
	case SL_BALANCE_LEAST_CONN:
		return "least-connections";
	case SL_BALANCE_RANDOM:
		return "random";
	case SL_BALANCE_SOURCE_HASH:
		return "source-hash";
	case SL_BALANCE_FIRST:
		return "first";
	default:
		return "round-robin";
	}
}

static void render_status(const struct admin_view *v, struct sbuf *sb)
{
	uint64_t now = sl_clock_ms();

	sb_printf(sb,
		  "{\"version\":\"%s\",\"start_time\":%" PRIu64
		  ",\"reloads\":%llu,\"reload_failures\":%llu,"
		  "\"sessions_active\":%lu,\"routes\":[",
		  PACKAGE_VERSION, v->start_time, v->reloads, v->reload_failures,
		  v->active);
	for (size_t i = 0; i < v->nroutes; i++) {
		const struct route *r = v->routes[i];
		unsigned n = r->st->nloops;

		sb_printf(sb, "%s{\"name\":\"", i ? "," : "");
		sb_quoted(sb, r->name, 1);
		sb_printf(sb,
			  "\",\"balance\":\"%s\",\"sessions_active\":%lu,"
			  "\"sessions_total\":%" PRIu64 ",\"queued\":%u,"
			  "\"upstreams\":[",
			  balance_name(r->balance),
			  (unsigned long)atomic_load(&r->st->active),
			  ctr_sum(r->st->ctr, n, CTR_SESSIONS),
			  atomic_load(&r->st->queued));
		for (size_t j = 0; j < r->nups; j++) {
			const struct upstream *u = &r->ups[j];
			const struct upstream_state *us = u->st;
			const char *why = atomic_load(&us->reason);
			int down = atomic_load(&us->down);

			sb_printf(sb, "%s{\"address\":\"", j ? "," : "");
			sb_quoted(sb, u->name, 1);
			sb_printf(sb,
				  "\",\"weight\":%u,\"backup\":%s,"
				  "\"state\":\"%s\",\"since_ms\":%" PRIu64
				  ",\"sessions_active\":%u,"
				  "\"sessions_total\":%" PRIu64
				  ",\"connect_failures\":%" PRIu64
				  ",\"check_failures\":%llu",
				  u->weight, u->backup ? "true" : "false",
				  down ? "down" : "up",
				  (uint64_t)(now - atomic_load(&us->changed_ms)),
				  atomic_load(&us->active),
				  ctr_sum(us->ctr, n, CTR_SESSIONS),
				  ctr_sum(us->ctr, n, CTR_CONNECT_FAILS),
				  (unsigned long long)atomic_load(
					  &us->checks_failed));
			if (why != NULL) {
				sb_printf(sb, ",\"reason\":\"");
				sb_quoted(sb, why, 1);
				sb_printf(sb, "\"");
			}
			sb_printf(sb, "}");
		}
		sb_printf(sb, "]}");
	}
	sb_printf(sb, "]}\n");
}

/* ---- connections -------------------------------------------------------------- */

static void admin_unref(struct admin *a)
{
	sl_wg *closing = a->env.closing;

	if (atomic_fetch_sub(&a->refs, 1) != 1)
		return;
	sl_acl_free(&a->acl);
	pthread_mutex_destroy(&a->acl_lock);
	free(a);
	sl_wg_done(closing);
}

/*
 * Give back a connection slot the gate reserved, on every path: served,
 * denied, out of memory, or a reservation that found nobody.  The listener
 * may be paused at the limit, so resume it when the count was at or above
 * the cap before this release (the rule sessions follow): "exactly the cap"
 * would miss the gate's own brief +1 on the accepting loop, and the
 * listener would stay paused for good.  A resume that finds the limit
 * still reached pauses again at no cost.  Not once the listener is
 * closing: then it may be gone.
 */
static void admin_release(struct admin *a)
{
	if (atomic_fetch_sub(&a->conns, 1) >= ADMIN_CONNS_MAX) {
		pthread_mutex_lock(&a->acl_lock);
		if (!a->lclosed)
			sl_listener_resume(a->l);
		pthread_mutex_unlock(&a->acl_lock);
	}
	admin_unref(a);
}

static void on_conn_closed(sl_stream *s)
{
	struct aconn *c = sl_stream_get_data(s);
	struct admin *a = c->a;

	free(c->out);
	free(c);
	admin_release(a);
}

static void conn_close(struct aconn *c)
{
	sl_timer_stop(&c->timer);
	sl_stream_close(c->s, on_conn_closed);
}

static void on_conn_timer(sl_timer *t)
{
	conn_close(t->data);
}

static void on_answer_written(sl_write_req *req, int status)
{
	struct aconn *c = req->data;

	if (status == -ECANCELED)
		return;
	conn_close(c);
}

static void answer(struct aconn *c, int code, const char *reason,
		   const char *type, int head, const struct sbuf *body)
{
	struct sbuf sb = { 0 };
	size_t blen = body != NULL ? body->len : 0;

	sb_printf(&sb,
		  "HTTP/1.1 %d %s\r\n"
		  "Content-Type: %s\r\n"
		  "Content-Length: %zu\r\n"
		  "Cache-Control: no-store\r\n"
		  "Connection: close\r\n"
		  "\r\n",
		  code, reason, type, blen);
	if (!head && blen > 0 && !sb.oom) {
		char *nb = realloc(sb.b, sb.len + blen);

		if (nb == NULL) {
			sb.oom = 1;
		} else {
			sb.b = nb;
			memcpy(sb.b + sb.len, body->b, blen);
			sb.len += blen;
		}
	}
	if (sb.oom) {
		free(sb.b);
		conn_close(c);
		return;
	}
	c->out = sb.b;
	c->len = sb.len;
	c->req.data = c;
	sl_stream_read_stop(c->s);
	if (sl_stream_write(c->s, &c->req, c->out, c->len, on_answer_written) <
	    0)
		conn_close(c);
}

static void answer_text(struct aconn *c, int code, const char *reason,
			const char *text)
{
	struct sbuf body = { 0 };

	sb_printf(&body, "%s\n", text);
	answer(c, code, reason, "text/plain; charset=utf-8", 0, &body);
	free(body.b);
}

/* The running state, as of now, rendered by fn.  0 or -ENOMEM. */
static int render(struct admin *a,
		  void (*fn)(const struct admin_view *, struct sbuf *),
		  struct sbuf *body)
{
	struct admin_view v = { 0 };
	int r = a->env.read(a->env.arg, &v);

	if (r < 0)
		return r;
	fn(&v, body);
	for (size_t i = 0; i < v.nroutes; i++)
		route_unref(v.routes[i]);
	free(v.routes);
	free(v.fd_pauses);
	return 0;
}

/* The request line of a whole request head in c->in[0..len). */
static void handle(struct aconn *c)
{
	char *line = c->in, *sp1, *sp2, *eol, *q;
	struct sbuf body = { 0 };
	int head;

	eol = strpbrk(line, "\r\n");
	sp1 = strchr(line, ' ');
	sp2 = sp1 != NULL ? strchr(sp1 + 1, ' ') : NULL;
	if (eol == NULL || sp1 == NULL || sp2 == NULL || sp2 > eol ||
	    strncmp(sp2 + 1, "HTTP/1.", 7) != 0) {
		answer_text(c, 400, "Bad Request", "bad request");
		return;
	}
	*sp1 = '\0';
	*sp2 = '\0';
	if ((q = strchr(sp1 + 1, '?')) != NULL)
		*q = '\0';
	head = strcmp(line, "HEAD") == 0;
	if (!head && strcmp(line, "GET") != 0) {
		answer_text(c, 405, "Method Not Allowed",
			    "only GET and HEAD");
		return;
	}
	if (strcmp(sp1 + 1, "/metrics") == 0) {
		if (render(c->a, render_metrics, &body) < 0)
			conn_close(c); /* as when the answer finds no memory */
		else
			answer(c, 200, "OK",
			       "text/plain; version=0.0.4; charset=utf-8", head,
			       &body);
	} else if (strcmp(sp1 + 1, "/status") == 0) {
		if (render(c->a, render_status, &body) < 0)
			conn_close(c);
		else
			answer(c, 200, "OK", "application/json", head, &body);
	} else if (strcmp(sp1 + 1, "/") == 0) {
		answer_text(c, 200, "OK", "sluice: /metrics /status");
	} else {
		answer_text(c, 404, "Not Found", "not found");
	}
	free(body.b);
}

static void on_conn_alloc(sl_stream *s, size_t suggested, sl_buf *buf)
{
	struct aconn *c = sl_stream_get_data(s);

	(void)suggested;
	buf->base = c->in + c->len;
	buf->len = sizeof c->in - 1 - c->len;
}

static void on_conn_read(sl_stream *s, ptrdiff_t n, const sl_buf *buf)
{
	struct aconn *c = sl_stream_get_data(s);

	(void)buf;
	if (n == 0)
		return;
	if (n < 0) {
		conn_close(c);
		return;
	}
	c->len += (size_t)n;
	c->in[c->len] = '\0';
	if (strstr(c->in, "\r\n\r\n") != NULL || strstr(c->in, "\n\n") != NULL) {
		handle(c);
		return;
	}
	if (c->len == sizeof c->in - 1)
		answer_text(c, 431, "Request Header Fields Too Large",
			    "request too large");
}

static int admin_gate(sl_listener *l, void **token)
{
	struct admin *a = sl_listener_get_data(l);

	(void)token;
	if (atomic_fetch_add(&a->conns, 1) >= ADMIN_CONNS_MAX) {
		atomic_fetch_sub(&a->conns, 1);
		return 0;
	}
	atomic_fetch_add(&a->refs, 1);
	return 1;
}

static void on_admin_accept(sl_listener *l, sl_stream *s, void *token)
{
	struct admin *a = sl_listener_get_data(l);
	struct aconn *c;
	sl_ipaddr peer;
	int ok;

	(void)token;
	if (s == NULL) { /* the reservation found nobody */
		admin_release(a);
		return;
	}
	sl_stream_peer_addr(s, &peer);
	pthread_mutex_lock(&a->acl_lock);
	ok = sl_acl_check(&a->acl, &peer, NULL);
	pthread_mutex_unlock(&a->acl_lock);
	c = ok ? calloc(1, sizeof *c) : NULL;
	if (c == NULL) {
		sl_stream_close_reset(s, NULL);
		admin_release(a);
		return;
	}
	c->a = a;
	c->s = s;
	sl_stream_set_data(s, c);
	sl_timer_init(sl_stream_loop(s), &c->timer, on_conn_timer, c);
	sl_timer_start(&c->timer, ADMIN_TIMEOUT_MS);
	if (sl_stream_read_start(s, on_conn_alloc, on_conn_read) < 0)
		conn_close(c);
}

/* ---- the listener ---------------------------------------------------------------- */

int admin_open(const sl_admin_conf *ac, const struct admin_env *env,
	       struct admin **out, char *err, size_t errlen)
{
	struct admin *a = calloc(1, sizeof *a);
	sl_listen_opts o = { 0 };
	char lerr[256] = "";
	int r;

	if (a == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	a->env = *env;
	a->ep = ac->ep;
	atomic_init(&a->conns, 0);
	atomic_init(&a->refs, 1);
	pthread_mutex_init(&a->acl_lock, NULL);
	o.mode = -1;
	if (acl_from_conf(&a->acl, &ac->acl) < 0) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	r = sl_listener_open(&a->l, &ac->ep, &o, lerr, sizeof lerr);
	if (r < 0) {
		snprintf(err, errlen, "admin: cannot listen on %s: %s",
			 ac->address, lerr[0] ? lerr : sl_strerror(r));
		goto fail;
	}
	*out = a;
	return 0;
fail:
	sl_acl_free(&a->acl);
	pthread_mutex_destroy(&a->acl_lock);
	free(a);
	return -1;
}

void admin_start(struct admin *a)
{
	char text[SL_EP_HOST_MAX + SL_EP_PATH_MAX + 16];

	sl_endpoint_format(&a->ep, text, sizeof text);
	if (sl_listener_start(a->l, a->env.group, on_admin_accept, admin_gate,
			      a) < 0) {
		sl_error("admin: cannot accept on %s", text);
		return;
	}
	a->started = 1;
	sl_info("admin: listening on %s (/metrics, /status)", text);
}

const sl_endpoint *admin_endpoint(const struct admin *a)
{
	return &a->ep;
}

int admin_set_acl(struct admin *a, const sl_acl_conf *acl)
{
	sl_acl n, old;

	if (acl_from_conf(&n, acl) < 0)
		return -ENOMEM;
	pthread_mutex_lock(&a->acl_lock);
	old = a->acl;
	a->acl = n;
	pthread_mutex_unlock(&a->acl_lock);
	sl_acl_free(&old);
	return 0;
}

static void on_admin_closed(sl_listener *l, void *arg)
{
	struct admin *a = arg;
	char text[SL_EP_HOST_MAX + SL_EP_PATH_MAX + 16];

	sl_endpoint_format(sl_listener_endpoint(l), text, sizeof text);
	sl_info("admin: listener %s closed", text);
	admin_unref(a);
}

void admin_close(struct admin *a)
{
	sl_wg_add(a->env.closing);
	pthread_mutex_lock(&a->acl_lock);
	a->lclosed = 1;
	pthread_mutex_unlock(&a->acl_lock);
	if (!a->started) {
		/* Never accepted: nothing can be using it. */
		sl_listener_close(a->l, NULL, NULL);
		admin_unref(a);
		return;
	}
	sl_listener_close(a->l, on_admin_closed, a);
}
