/*
 * The POSIX listener, for the files that make it: listener_posix.c
 * (opening TCP, accepting) and listener_unix.c (Unix socket files).
 * Internal to src/net.
 */
#ifndef SL_NET_LISTENER_POSIX_H
#define SL_NET_LISTENER_POSIX_H

#include <sys/stat.h>

#include "listener_common.h"
#include "posix.h"

struct sl_listener {
	struct sl_listener_base b; /* first: see listener_common.h */
	int fd;
	/* What fd is: SL_EP_TCP or SL_EP_UNIX (a systemd: endpoint is
	 * either, as systemd bound it). */
	enum sl_ep_kind sock_kind;

	/* The socket file this listener created, for unlinking at close:
	 * absolute (the daemon may chdir later) and the inode it had. */
	char *unlink_path;
	dev_t dev;
	ino_t ino;

	/* Owner loop only: */
	sl_io io;
	sl_timer timer;
	int watching; /* io initialised on the owner loop */
	int fd_paused;
	int pause_logged; /* this shortage is in the log already */
};

/*
 * Bind l to its Unix endpoint (a path, or a Linux abstract name) and
 * listen.  0, or -errno with the message in err.
 */
int sl_unix_listen(sl_listener *l, const sl_listen_opts *opts, char *err,
		   size_t errlen);

/* listen(2) on l's bound socket with its backlog.  0 or -errno with the
 * message in err. */
int sl_listen_fd(sl_listener *l, char *err, size_t errlen);

/* Remove the socket file l created, if it is still the one it bound. */
void sl_unix_unlink(sl_listener *l);

#endif
