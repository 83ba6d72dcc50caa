/*
 * What listeners do alike on every platform, written once: opening (the
 * base, the TCP host, the port a test's port 0 became), checking, the
 * tasks that start, resume and close a listener on its owner loop, the
 * reference count, and the getters.  What differs (a watched descriptor
 * and accept(), or posted AcceptEx and ConnectNamedPipe) is behind the
 * functions listener_common.h lists for each platform.
 */
#include "listener_common.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>

void sl_listener_unref(sl_listener *l)
{
	struct sl_listener_base *b = sl_listener_base(l);

	if (atomic_fetch_sub(&b->refs, 1) == 1) {
		if (b->done != NULL)
			b->done(l, b->done_arg);
		sl_os_listener_free(l);
	}
}

/* ---- opening ------------------------------------------------------------ */

static sl_listener *listener_new(const sl_endpoint *ep,
				 const sl_listen_opts *opts)
{
	sl_listener *l = sl_os_listener_new();
	struct sl_listener_base *b;

	if (l == NULL)
		return NULL;
	b = sl_listener_base(l);
	b->ep = *ep;
	sl_endpoint_format(ep, b->name, sizeof b->name);
	b->backlog = opts != NULL && opts->backlog > 0 ? opts->backlog
						       : SL_BACKLOG_DEFAULT;
	atomic_init(&b->refs, 1);
	atomic_init(&b->data, NULL);
	atomic_init(&b->fd_pauses, 0);
	atomic_init(&b->resume_pending, 0);
	atomic_init(&b->started, 0);
	return l;
}

static int open_tcp(sl_listener *l, char *err, size_t errlen)
{
	struct sl_listener_base *b = sl_listener_base(l);
	struct sl_addr addrs[SL_RESOLVE_MAX_ADDRS];
	size_t n;
	int r;

	/* open runs on the main thread, so a name may block here.  A name
	 * with several addresses binds the first (as HAProxy does). */
	if (b->ep.host_is_literal)
		r = sl_resolve_numeric(b->ep.host, b->ep.port, 1, addrs,
				       SL_RESOLVE_MAX_ADDRS, &n);
	else
		r = sl_resolve_sync(b->ep.host, b->ep.port, 1, addrs,
				    SL_RESOLVE_MAX_ADDRS, &n);
	if (r < 0)
		return sl_errf(err, errlen, r, "%s: host '%s' did not resolve",
			       b->name, b->ep.host);
	r = sl_os_listener_open_tcp(l, &addrs[0], err, errlen);
	if (r < 0)
		return r;
	if (b->ep.port == 0) {
		/* Port 0 (tests): name the port the kernel chose. */
		r = sl_listener_port(l);
		if (r > 0) {
			b->ep.port = (uint16_t)r;
			sl_endpoint_format(&b->ep, b->name, sizeof b->name);
		}
	}
	return 0;
}

int sl_listener_open(sl_listener **out, const sl_endpoint *ep,
		     const sl_listen_opts *opts, char *err, size_t errlen)
{
	sl_listener *l;
	int r;

	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if (out == NULL || ep == NULL)
		return sl_errf(err, errlen, -EINVAL, "no endpoint");
	l = listener_new(ep, opts);
	if (l == NULL)
		return sl_errf(err, errlen, -ENOMEM, "out of memory");
	if (ep->kind == SL_EP_TCP)
		r = open_tcp(l, err, errlen);
	else
		r = sl_os_listener_open(l, opts, err, errlen);
	if (r < 0) {
		sl_os_listener_close(l);
		sl_os_listener_free(l);
		return r;
	}
	*out = l;
	return 0;
}

int sl_listener_check(const sl_endpoint *ep, const sl_listen_opts *opts,
		      char *msg, size_t msglen)
{
	sl_listener *l;
	int r;

	if (msg != NULL && msglen > 0)
		msg[0] = '\0';
	if (ep == NULL)
		return sl_errf(msg, msglen, -EINVAL, "no endpoint");
	/* A TCP address, an abstract name or a named pipe: binding creates
	 * no file, so bind and let go, which tells whether it is free. */
	if (ep->kind != SL_EP_UNIX || ep->abstract) {
		r = sl_listener_open(&l, ep, opts, msg, msglen);
		if (r == 0)
			sl_listener_close(l, NULL, NULL);
		return r;
	}
	l = listener_new(ep, opts);
	if (l == NULL)
		return sl_errf(msg, msglen, -ENOMEM, "out of memory");
	r = sl_os_listener_check_path(l, opts, msg, msglen);
	sl_os_listener_free(l);
	return r;
}

int sl_listener_port(const sl_listener *l)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;
	sl_ipaddr ip;
	int r;

	if (l == NULL)
		return -EBADF;
	r = sl_os_listener_sockname(l, &ss, &len);
	if (r < 0)
		return r;
	sl_sockaddr_ip((const struct sockaddr *)&ss, (size_t)len, &ip);
	if (ip.family == SL_AF_NONE)
		return -EAFNOSUPPORT;
	return ip.port;
}

/* ---- the owner loop's tasks --------------------------------------------- */

static void start_run(sl_task *t, int status)
{
	sl_listener *l = t->data;

	if (status == 0 && !sl_listener_base(l)->closed)
		sl_os_listener_start(l);
	sl_listener_unref(l);
}

static void resume_run(sl_task *t, int status)
{
	sl_listener *l = t->data;
	struct sl_listener_base *b = sl_listener_base(l);

	/* Cleared first: a resume from now on posts again. */
	atomic_store(&b->resume_pending, 0);
	if (status == 0 && !b->closed)
		sl_os_listener_resume(l);
	sl_listener_unref(l);
}

static void close_run(sl_task *t, int status)
{
	sl_listener *l = t->data;

	sl_listener_base(l)->closed = 1;
	sl_os_listener_stop(l, status);
	sl_os_listener_close(l);
	sl_listener_unref(l);
}

int sl_listener_start(sl_listener *l, sl_group *g, sl_accept_cb cb,
		      sl_accept_gate gate, void *data)
{
	struct sl_listener_base *b;

	if (l == NULL || g == NULL || cb == NULL)
		return -EINVAL;
	b = sl_listener_base(l);
	if (atomic_load(&b->started))
		return -EALREADY;
	if (!sl_os_listener_is_open(l))
		return -EBADF;
	b->group = g;
	b->cb = cb;
	b->gate = gate;
	atomic_store(&b->data, data);
	b->loop = sl_group_next(g);
	atomic_store(&b->started, 1);
	sl_task_init(&b->start_task, start_run, l);
	sl_task_init(&b->resume_task, resume_run, l);
	sl_task_init(&b->close_task, close_run, l);
	sl_listener_ref(l);
	sl_loop_post(b->loop, &b->start_task);
	return 0;
}

void sl_listener_resume(sl_listener *l)
{
	struct sl_listener_base *b = sl_listener_base(l);

	if (l == NULL || !atomic_load(&b->started))
		return;
	/* Many resumes between two runs of the task cost one task. */
	if (atomic_exchange(&b->resume_pending, 1) != 0)
		return;
	sl_listener_ref(l);
	sl_loop_post(b->loop, &b->resume_task);
}

void sl_listener_close(sl_listener *l, sl_listener_closed_cb done, void *arg)
{
	struct sl_listener_base *b = sl_listener_base(l);

	if (l == NULL)
		return;
	b->done = done;
	b->done_arg = arg;
	if (!atomic_load(&b->started)) {
		sl_os_listener_close(l);
		sl_listener_unref(l);
		return;
	}
	sl_loop_post(b->loop, &b->close_task);
}

/* ---- getters (any thread) ------------------------------------------------ */

void sl_listener_set_data(sl_listener *l, void *data)
{
	atomic_store(&sl_listener_base(l)->data, data);
}

void *sl_listener_get_data(const sl_listener *l)
{
	return atomic_load(&sl_listener_base((sl_listener *)l)->data);
}

const sl_endpoint *sl_listener_endpoint(const sl_listener *l)
{
	return &sl_listener_base((sl_listener *)l)->ep;
}

uint64_t sl_listener_fd_pauses(const sl_listener *l)
{
	return atomic_load(&sl_listener_base((sl_listener *)l)->fd_pauses);
}
