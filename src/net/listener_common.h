/*
 * The contract between listener_common.c (what listeners do alike on every
 * platform) and the platform's listeners (listener_posix.c and
 * listener_unix.c, listener_win.c).  Nothing outside src/net includes this
 * file but the tests, through posix.h and win.h, for sl_listener_port.
 *
 * Every platform's struct sl_listener starts with a struct
 * sl_listener_base, as streams start with theirs (stream_common.h).
 *
 * Lifetime: a reference count holds the listener while it is open (one
 * reference, dropped when it is closed) and while anything that names it
 * is in flight (a task, a posted accept).  The last drop calls the close
 * callback and frees.
 */
#ifndef SL_NET_LISTENER_COMMON_H
#define SL_NET_LISTENER_COMMON_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "errf.h"
#include "net.h"
#include "resolver.h"

#define SL_BACKLOG_DEFAULT 511
#define SL_ACCEPT_PAUSE_MS 100 /* out of descriptors or memory: retry after */

struct sl_listener_base {
	sl_endpoint ep;
	char name[SL_EP_PATH_MAX + 16]; /* endpoint text, for messages */
	int backlog;

	sl_group *group;
	sl_loop *loop; /* owner; set by start */
	sl_accept_cb cb;
	sl_accept_gate gate;
	_Atomic(void *) data;
	_Atomic uint64_t fd_pauses;
	atomic_int resume_pending;
	atomic_int refs;
	atomic_int started; /* set by start; resume reads it anywhere */
	int closed;         /* owner loop only */

	sl_task start_task, resume_task, close_task;
	sl_listener_closed_cb done;
	void *done_arg;
};

/* The base of any listener: its first member (C11 6.7.2.1). */
static inline struct sl_listener_base *sl_listener_base(sl_listener *l)
{
	return (struct sl_listener_base *)(void *)l;
}

static inline void sl_listener_ref(sl_listener *l)
{
	atomic_fetch_add(&sl_listener_base(l)->refs, 1);
}

/* Drop a reference; the last one calls the close callback and frees. */
void sl_listener_unref(sl_listener *l);


/* The bound TCP port of a listener (tests bind port 0), or -errno. */
int sl_listener_port(const sl_listener *l);

/* ---- what each platform defines for listener_common.c ------------------ */

/*
 * sl_os_listener_new: a zeroed listener with no handle yet (the common
 *     part fills the base), or NULL when out of memory.
 * sl_os_listener_free: free it and what it owns (its handles are closed).
 * sl_os_listener_is_open: non-zero while it has a listening handle.
 */
sl_listener *sl_os_listener_new(void);
void sl_os_listener_free(sl_listener *l);
int sl_os_listener_is_open(const sl_listener *l);

/*
 * Opening (sl_listener_open, written once, on the main thread).  The
 * common part fills the base and resolves a TCP host; the platform:
 *
 * sl_os_listener_open_tcp: create, bind to a and listen.
 * sl_os_listener_open: the same for an endpoint of another kind (a Unix
 *     socket, a named pipe), or SL_EUNSUPP where the kind does not exist.
 * sl_os_listener_check_path: what opening a Unix socket path would meet,
 *     changing nothing (sl_listener_check).
 *
 * Each returns 0 or -errno with the message in err.  On failure the
 * common part calls sl_os_listener_close, then sl_os_listener_free.
 */
int sl_os_listener_open_tcp(sl_listener *l, const struct sl_addr *a,
			    char *err, size_t errlen);
int sl_os_listener_open(sl_listener *l, const sl_listen_opts *opts,
			char *err, size_t errlen);
int sl_os_listener_check_path(sl_listener *l, const sl_listen_opts *opts,
			      char *msg, size_t msglen);

/* Close the listening handles (POSIX: and remove the socket file it
 * created).  Harmless when there are none. */
void sl_os_listener_close(sl_listener *l);

/* The listening socket's own address.  -EBADF without one, or -errno. */
int sl_os_listener_sockname(const sl_listener *l, struct sockaddr_storage *ss,
			    socklen_t *len);

/*
 * On the owner loop (the tasks of sl_listener_start, sl_listener_resume
 * and sl_listener_close, not after the listener was closed):
 *
 * sl_os_listener_start: begin accepting.
 * sl_os_listener_resume: accept again if the gate had paused it.
 * sl_os_listener_stop: stop accepting, before the handles are closed;
 *     status != 0: the loop is being freed, and its watchers and timers
 *     go with it.
 */
void sl_os_listener_start(sl_listener *l);
void sl_os_listener_resume(sl_listener *l);
void sl_os_listener_stop(sl_listener *l, int status);

#endif
