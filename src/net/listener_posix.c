/*
 * Listeners over POSIX sockets.
 *
 * A listener is owned by one loop of its group (the "owner"), which watches
 * the listening descriptor and accepts in batches; each accepted descriptor
 * is handed to a loop of the group (round robin, possibly the owner) as a
 * small task, and the stream is created there.  Everything that changes the
 * watcher runs on the owner loop; other threads post tasks to it.
 *
 * Lifetime: a reference count holds the listener while it is open (one
 * reference, dropped by the close task) and while any task naming it is in
 * flight (start, resume, each hand-off).  The last drop calls the close
 * callback and frees.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* glibc: accept4 */
#endif

#include "posix.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pthread.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <netinet/in.h>
#include <sys/stat.h>

#include "log.h"
#include "resolver.h"

#define SL_BACKLOG_DEFAULT 511
#define SL_ACCEPT_BATCH 32      /* accepts per readiness event */
#define SL_ACCEPT_PAUSE_MS 100 /* out of descriptors: retry after */

struct sl_listener {
	sl_endpoint ep;
	char name[SL_EP_PATH_MAX + 16]; /* endpoint text, for messages */
	int fd;
	int backlog;

	/* The socket file this listener created, for unlinking at close:
	 * absolute (the daemon may chdir later) and the inode it had. */
	char *unlink_path;
	dev_t dev;
	ino_t ino;

	sl_group *group;
	sl_loop *loop; /* owner; set by start */
	sl_accept_cb cb;
	sl_accept_gate gate;
	_Atomic(void *) data;
	_Atomic uint64_t fd_pauses;
	atomic_int resume_pending;
	atomic_int refs;

	/* Owner loop only: */
	sl_io io;
	sl_timer timer;
	int watching; /* io initialised on the owner loop */
	int fd_paused;
	int pause_logged; /* this shortage is in the log already */
	int closed;

	atomic_int started; /* set by start; resume reads it anywhere */
	sl_task start_task, resume_task, close_task;
	sl_listener_closed_cb done;
	void *done_arg;
};

struct handoff {
	sl_task task;
	sl_listener *l;
	sl_loop *loop;
	void *token;
	int fd;
	socklen_t peer_len;
	struct sockaddr_storage peer;
};

/*
 * umask is process-wide.  Listeners are opened on the main thread (startup,
 * reload), and this mutex keeps two sluice callers from interleaving their
 * umask changes; nothing else in sluice creates files while it is held.
 */
static pthread_mutex_t umask_lock = PTHREAD_MUTEX_INITIALIZER;

void (*sl_unix_bound_hook)(const char *path);

static int fail(char *err, size_t errlen, int r, const char *fmt, ...)
	__attribute__((format(SL_FMT_PRINTF, 4, 5)));

static int fail(char *err, size_t errlen, int r, const char *fmt, ...)
{
	va_list ap;

	if (err != NULL && errlen > 0) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return r;
}

/* ---- freeing ------------------------------------------------------------ */

static void unlink_own_file(sl_listener *l)
{
	struct stat st;

	/* Only the file we bound: another process may have replaced it. */
	if (l->unlink_path != NULL && lstat(l->unlink_path, &st) == 0 &&
	    S_ISSOCK(st.st_mode) && st.st_dev == l->dev && st.st_ino == l->ino)
		unlink(l->unlink_path);
}

static void close_fd(sl_listener *l)
{
	if (l->fd >= 0) {
		close(l->fd);
		l->fd = -1;
	}
	unlink_own_file(l);
}

static void listener_free(sl_listener *l)
{
	free(l->unlink_path);
	free(l);
}

static void unref(sl_listener *l)
{
	if (atomic_fetch_sub(&l->refs, 1) == 1) {
		if (l->done != NULL)
			l->done(l, l->done_arg);
		listener_free(l);
	}
}

/* ---- opening ------------------------------------------------------------ */

static int lookup_id(const char *s, int user, unsigned *id, char *err,
		     size_t errlen, const char *name)
{
	struct passwd pw, *pwp = NULL;
	struct group gr, *grp = NULL;
	char *end, *buf;
	unsigned long v;
	long sz;
	int r;

	if (*s >= '0' && *s <= '9') {
		errno = 0;
		v = strtoul(s, &end, 10);
		if (errno == 0 && *end == '\0' && v < (unsigned)-1) {
			*id = (unsigned)v;
			return 0;
		}
	}
	sz = sysconf(user ? _SC_GETPW_R_SIZE_MAX : _SC_GETGR_R_SIZE_MAX);
	if (sz < 16384)
		sz = 16384; /* -1 means "no limit", not "no buffer" */
	buf = malloc((size_t)sz);
	if (buf == NULL)
		return -ENOMEM;
	if (user)
		r = getpwnam_r(s, &pw, buf, (size_t)sz, &pwp);
	else
		r = getgrnam_r(s, &gr, buf, (size_t)sz, &grp);
	if (r == 0 && pwp != NULL)
		*id = pwp->pw_uid;
	else if (r == 0 && grp != NULL)
		*id = grp->gr_gid;
	free(buf);
	if (r != 0)
		return fail(err, errlen, -r, "%s: looking up %s '%s': %s",
			    name, user ? "user" : "group", s, strerror(r));
	if (pwp == NULL && grp == NULL)
		return fail(err, errlen, -ENOENT, "%s: no such %s '%s'", name,
			    user ? "user" : "group", s);
	return 0;
}

/*
 * path made absolute without resolving links (the daemon may chdir
 * later): the name to unlink at close is the one that was bound, not
 * whatever a link in it pointed to then.
 */
static char *absolute(const char *path)
{
	char cwd[PATH_MAX];
	size_t n;
	char *p;

	if (path[0] == '/')
		return strdup(path);
	if (getcwd(cwd, sizeof cwd) == NULL)
		return NULL;
	n = strlen(cwd) + 1 + strlen(path) + 1;
	p = malloc(n);
	if (p != NULL)
		snprintf(p, n, "%s/%s", cwd, path);
	return p;
}

/*
 * Is someone listening on the socket file?  1: yes, 0: stale (or gone),
 * -errno: cannot tell.
 */
static int unix_probe(const struct sockaddr_un *sa, socklen_t len)
{
	int fd, r;

	fd = sl_socket(AF_UNIX, SOCK_STREAM);
	if (fd < 0)
		return fd;
	do
		r = connect(fd, (const struct sockaddr *)sa, len);
	while (r < 0 && errno == EINTR);
	r = r == 0 ? 0 : errno;
	close(fd);
	switch (r) {
	case 0:
	case EAGAIN:      /* Linux: backlog full, but someone is there */
	case EINPROGRESS: /* BSD: may queue the connect */
		return 1;
	case ECONNREFUSED:
	case ENOENT:
		return 0;
	}
	return -r;
}

static int unix_address(const sl_listener *l, struct sockaddr_un *sa,
			socklen_t *len, char *err, size_t errlen)
{
	int r = sl_unix_sockaddr(&l->ep, sa, len);

	if (r == SL_EUNSUPP)
		return fail(err, errlen, r,
			    "%s: abstract Unix sockets exist on Linux only",
			    l->name);
	if (r < 0)
		return fail(err, errlen, r, "%s: %s", l->name, sl_strerror(r));
	return 0;
}

/* owner and group of opts as ids; (unsigned)-1 for "unchanged". */
static int lookup_ids(const sl_listener *l, const sl_listen_opts *opts,
		      unsigned *uid, unsigned *gid, char *err, size_t errlen)
{
	int r;

	*uid = *gid = (unsigned)-1;
	if (opts != NULL && opts->owner != NULL &&
	    (r = lookup_id(opts->owner, 1, uid, err, errlen, l->name)) < 0)
		return r;
	if (opts != NULL && opts->group != NULL &&
	    (r = lookup_id(opts->group, 0, gid, err, errlen, l->name)) < 0)
		return r;
	return 0;
}

/*
 * What is at the path now: 0 nothing, 1 a stale socket (nobody listens),
 * or -errno with the message in err (a live socket, something else).
 */
static int inspect_path(const sl_listener *l, const struct sockaddr_un *sa,
			socklen_t len, char *err, size_t errlen)
{
	struct stat st;
	int r;

	if (lstat(l->ep.path, &st) < 0) {
		if (errno == ENOENT)
			return 0;
		return fail(err, errlen, -errno, "%s: %s", l->name,
			    strerror(errno));
	}
	if (!S_ISSOCK(st.st_mode))
		return fail(err, errlen, -EEXIST,
			    "%s: exists and is not a socket; not removing it",
			    l->name);
	r = unix_probe(sa, len);
	if (r > 0)
		return fail(err, errlen, -EADDRINUSE,
			    "%s: another process is listening", l->name);
	if (r < 0)
		return fail(err, errlen, r,
			    "%s: cannot check the existing socket: %s", l->name,
			    sl_strerror(r));
	return 1;
}

/*
 * The directory part of path, as open_unix binds in it: "." for a bare
 * name.  0, or -ENAMETOOLONG.
 */
static int parent_dir(const char *path, char *buf, size_t len)
{
	const char *slash = strrchr(path, '/');
	int n;

	if (slash == NULL)
		n = snprintf(buf, len, ".");
	else if (slash == path)
		n = snprintf(buf, len, "/");
	else
		n = snprintf(buf, len, "%.*s", (int)(slash - path), path);
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

/*
 * With owner or group, the socket is bound as PRIVATE_SOCK in a private
 * directory made from PRIVATE_DIR beside its path.  Short names: all of
 * "<dir>/.slXXXXXX/s" must fit in sun_path (about 100 bytes).
 */
#define PRIVATE_DIR ".slXXXXXX"
#define PRIVATE_SOCK "s"
#define SUN_PATH_SIZE sizeof(((struct sockaddr_un *)0)->sun_path)
/* The longest directory part of a path with owner or group. */
#define PRIVATE_PARENT_MAX \
	(SUN_PATH_SIZE - sizeof("/" PRIVATE_DIR "/" PRIVATE_SOCK))

/* mkdtemp's template for path's private directory.  0 or -errno. */
static int private_template(const sl_listener *l, char *buf, size_t len,
			    char *err, size_t errlen)
{
	char parent[SUN_PATH_SIZE];
	int n = -1;

	if (parent_dir(l->ep.path, parent, sizeof parent) == 0 &&
	    strlen(parent) <= PRIVATE_PARENT_MAX)
		n = snprintf(buf, len, "%s%s" PRIVATE_DIR, parent,
			     strcmp(parent, "/") == 0 ? "" : "/");
	if (n < 0 || (size_t)n >= len)
		return fail(err, errlen, -ENAMETOOLONG,
			    "%s: with owner or group, the socket is first "
			    "bound in a new directory beside it, and that "
			    "path would be too long for a Unix socket: use a "
			    "directory of at most %zu bytes",
			    l->name, (size_t)PRIVATE_PARENT_MAX);
	return 0;
}

/*
 * bind(2) with the socket file created at mode (-1: as the umask leaves
 * it): the file gets its mode at creation, so there is no moment where a
 * wider mode is visible.  0 or -errno.
 */
static int bind_mode(int fd, const struct sockaddr_un *sa, socklen_t len,
		     int mode)
{
	mode_t old;
	int r, e;

	if (mode < 0)
		return bind(fd, (const struct sockaddr *)sa, len) < 0 ? -errno
								       : 0;
	pthread_mutex_lock(&umask_lock);
	old = umask((mode_t)(~mode & 0777));
	r = bind(fd, (const struct sockaddr *)sa, len);
	e = errno;
	umask(old);
	pthread_mutex_unlock(&umask_lock);
	return r < 0 ? -e : 0;
}

/* No owner or group to set: bind at the path itself. */
static int bind_in_place(sl_listener *l, const struct sockaddr_un *sa,
			 socklen_t len, int mode, char *err, size_t errlen)
{
	struct stat st;
	int r;

	r = bind_mode(l->fd, sa, len, mode);
	if (r < 0)
		return fail(err, errlen, r, "%s: bind: %s", l->name,
			    strerror(-r));
	if (sl_unix_bound_hook != NULL)
		sl_unix_bound_hook(l->ep.path);
	/* Not stat(2): through a link swapped in, that would remember (and
	 * at close compare with) another file. */
	if (lstat(l->ep.path, &st) < 0)
		return fail(err, errlen, -errno, "%s: %s", l->name,
			    strerror(errno));
	if (!S_ISSOCK(st.st_mode))
		return fail(err, errlen, -EEXIST,
			    "%s: replaced by something else right after "
			    "bind; not using it",
			    l->name);
	l->dev = st.st_dev;
	l->ino = st.st_ino;
	return 0;
}

/*
 * Owner or group to set: chown(path) after bind(path) would chown whatever
 * a user who can write the directory put at the path in between (a
 * symbolic or a hard link to any file; fchownat(AT_SYMLINK_NOFOLLOW) alone
 * still follows a hard link).  So the socket is bound in a new directory
 * that only we can write, given its owner there, and only then linked to
 * its path.
 */
static int bind_private(sl_listener *l, const sl_listen_opts *opts,
			unsigned uid, unsigned gid, int mode, char *err,
			size_t errlen)
{
	char dir[SUN_PATH_SIZE - sizeof("/" PRIVATE_SOCK) + 1];
	struct sockaddr_un sa;
	struct stat st;
	socklen_t len;
	int dfd = -1, bound = 0, r;

	r = private_template(l, dir, sizeof dir, err, errlen);
	if (r < 0)
		return r;
	if (mkdtemp(dir) == NULL)
		return fail(err, errlen, -errno,
			    "%s: creating a directory to bind in: %s", l->name,
			    strerror(errno));
	/*
	 * Whoever can write the parent may have renamed it and put a link
	 * or a directory of their own at its name since mkdtemp: from here
	 * on the directory is this descriptor, checked to be ours and
	 * closed to others (mode 0700 less the umask: no bits for group or
	 * others is what matters).
	 */
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dfd < 0) {
		r = fail(err, errlen, -errno, "%s: opening %s: %s", l->name,
			 dir, strerror(errno));
		goto out;
	}
	if (fstat(dfd, &st) < 0 || !S_ISDIR(st.st_mode) ||
	    st.st_uid != geteuid() || (st.st_mode & 077) != 0) {
		r = fail(err, errlen, -EPERM,
			 "%s: %s was replaced right after it was created; "
			 "not binding in it",
			 l->name, dir);
		goto out;
	}

	/* bind(2) takes a path, not a directory descriptor.  Should the
	 * directory's name be swapped for a link right now, the socket
	 * lands elsewhere, is not found in dfd below, and nothing is
	 * chowned. */
	memset(&sa, 0, sizeof sa);
	sa.sun_family = AF_UNIX;
	snprintf(sa.sun_path, sizeof sa.sun_path, "%s/" PRIVATE_SOCK, dir);
	len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) +
			  strlen(sa.sun_path) + 1);
	r = bind_mode(l->fd, &sa, len, mode);
	if (r < 0) {
		r = fail(err, errlen, r, "%s: bind: %s", l->name,
			 strerror(-r));
		goto out;
	}
	bound = 1;
	if (sl_unix_bound_hook != NULL)
		sl_unix_bound_hook(l->ep.path);
	/* Only we can make entries in dfd: a socket there is ours. */
	if (fstatat(dfd, PRIVATE_SOCK, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
	    !S_ISSOCK(st.st_mode)) {
		r = fail(err, errlen, -ENOENT,
			 "%s: the socket is not in %s after bind (was the "
			 "directory replaced?); not using it",
			 l->name, dir);
		goto out;
	}
	l->dev = st.st_dev;
	l->ino = st.st_ino;
	if (fchownat(dfd, PRIVATE_SOCK, (uid_t)uid, (gid_t)gid,
		     AT_SYMLINK_NOFOLLOW) < 0) {
		r = fail(err, errlen, -errno, "%s: chown to %s:%s: %s",
			 l->name, opts->owner != NULL ? opts->owner : "-",
			 opts->group != NULL ? opts->group : "-",
			 strerror(errno));
		goto out;
	}

	/*
	 * Into place.  linkat(2) never follows a link at the path and never
	 * replaces anything there: what appeared since the stale socket was
	 * removed (a link, another process's socket) stays, and this open
	 * fails.  Where the filesystem has no hard links, renameat(2) does
	 * it instead.  That replaces what is at the path: a link itself,
	 * never its target, so still nothing is chowned through it, but a
	 * socket another process bound there since the stale check would
	 * lose its name; hence linkat first.
	 */
	if (linkat(dfd, PRIVATE_SOCK, AT_FDCWD, l->ep.path, 0) == 0) {
		r = 0;
	} else if (errno == EEXIST) {
		r = fail(err, errlen, -EEXIST,
			 "%s: exists: another process created it while this "
			 "one was binding; not replacing it",
			 l->name);
	} else if (errno != EPERM && errno != EOPNOTSUPP &&
		   errno != ENOTSUP && errno != ENOSYS && errno != EMLINK) {
		r = fail(err, errlen, -errno, "%s: %s", l->name,
			 strerror(errno));
	} else if (renameat(dfd, PRIVATE_SOCK, AT_FDCWD, l->ep.path) == 0) {
		r = 0;
		bound = 0; /* moved: nothing left in dir */
	} else {
		r = fail(err, errlen, -errno, "%s: %s", l->name,
			 strerror(errno));
	}
out:
	if (bound)
		(void)unlinkat(dfd, PRIVATE_SOCK, 0);
	if (dfd >= 0)
		close(dfd);
	/* rmdir(2) removes only an empty directory and follows no link at
	 * the last name: should the name have been swapped, it fails, or
	 * removes an empty directory put there by someone who could have
	 * removed it anyway. */
	(void)rmdir(dir);
	return r;
}

static int open_unix(sl_listener *l, const sl_listen_opts *opts, char *err,
		     size_t errlen)
{
	struct sockaddr_un sa;
	socklen_t len;
	unsigned uid, gid;
	char *abs;
	int r, mode = opts != NULL ? opts->mode : -1;

	r = unix_address(l, &sa, &len, err, errlen);
	if (r < 0)
		return r;
	if (l->ep.abstract) {
		/* No file: no mode, owner, stale socket or unlink. */
		l->fd = sl_socket(AF_UNIX, SOCK_STREAM);
		if (l->fd < 0)
			return fail(err, errlen, l->fd, "%s: socket: %s",
				    l->name, sl_strerror(l->fd));
		if (bind(l->fd, (struct sockaddr *)&sa, len) < 0)
			return fail(err, errlen, -errno, "%s: bind: %s",
				    l->name, strerror(errno));
		goto listen;
	}

	r = lookup_ids(l, opts, &uid, &gid, err, errlen);
	if (r < 0)
		return r;
	r = inspect_path(l, &sa, len, err, errlen);
	if (r < 0)
		return r;
	/* Stale: left by a process that died.  unlink(2) removes the name,
	 * whatever it is by now, and never what a link points to. */
	if (r == 1 && unlink(l->ep.path) < 0 && errno != ENOENT)
		return fail(err, errlen, -errno,
			    "%s: removing the stale socket: %s", l->name,
			    strerror(errno));
	/* Before binding: once the socket is at its path nothing may fail
	 * before close_fd knows to remove it. */
	abs = absolute(l->ep.path);
	if (abs == NULL)
		return fail(err, errlen, -errno, "%s: %s", l->name,
			    strerror(errno));
	l->fd = sl_socket(AF_UNIX, SOCK_STREAM);
	if (l->fd < 0)
		r = fail(err, errlen, l->fd, "%s: socket: %s", l->name,
			 sl_strerror(l->fd));
	else if (uid == (unsigned)-1 && gid == (unsigned)-1)
		r = bind_in_place(l, &sa, len, mode, err, errlen);
	else
		r = bind_private(l, opts, uid, gid, mode, err, errlen);
	if (r < 0) {
		free(abs);
		return r;
	}
	l->unlink_path = abs; /* with l->dev and l->ino */
listen:
	if (listen(l->fd, l->backlog) < 0)
		return fail(err, errlen, -errno, "%s: listen: %s", l->name,
			    strerror(errno));
	return 0;
}

static int open_tcp(sl_listener *l, char *err, size_t errlen)
{
	struct sl_addr addrs[SL_RESOLVE_MAX_ADDRS];
	size_t n;
	int r, one = 1;

	/* open runs on the main thread, so a name may block here.  A name
	 * with several addresses binds the first (as HAProxy does). */
	if (l->ep.host_is_literal)
		r = sl_resolve_numeric(l->ep.host, l->ep.port, 1, addrs,
				       SL_RESOLVE_MAX_ADDRS, &n);
	else
		r = sl_resolve_sync(l->ep.host, l->ep.port, 1, addrs,
				    SL_RESOLVE_MAX_ADDRS, &n);
	if (r < 0)
		return fail(err, errlen, r, "%s: host '%s' did not resolve",
			    l->name, l->ep.host);
	l->fd = sl_socket(addrs[0].ss.ss_family, SOCK_STREAM);
	if (l->fd < 0)
		return fail(err, errlen, l->fd, "%s: socket: %s", l->name,
			    sl_strerror(l->fd));
	/* Rebind at once after a restart despite TIME_WAIT connections. */
	setsockopt(l->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	/* So that tcp://0.0.0.0:P and tcp://[::]:P can both be listened on
	 * (Linux defaults to dual-stack, bindv6only=0). */
	if (addrs[0].ss.ss_family == AF_INET6 &&
	    setsockopt(l->fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) < 0)
		return fail(err, errlen, -errno, "%s: IPV6_V6ONLY: %s",
			    l->name, strerror(errno));
	if (bind(l->fd, (struct sockaddr *)&addrs[0].ss, addrs[0].len) < 0)
		return fail(err, errlen, -errno, "%s: bind: %s", l->name,
			    strerror(errno));
	sl_listen_tune(l->fd, SL_EP_TCP);
	if (listen(l->fd, l->backlog) < 0)
		return fail(err, errlen, -errno, "%s: listen: %s", l->name,
			    strerror(errno));
	if (l->ep.port == 0) {
		/* Port 0 (tests): name the port the kernel chose. */
		r = sl_listener_port(l);
		if (r > 0) {
			l->ep.port = (uint16_t)r;
			sl_endpoint_format(&l->ep, l->name, sizeof l->name);
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
		return fail(err, errlen, -EINVAL, "no endpoint");
	l = calloc(1, sizeof *l);
	if (l == NULL)
		return fail(err, errlen, -ENOMEM, "out of memory");
	l->ep = *ep;
	sl_endpoint_format(ep, l->name, sizeof l->name);
	l->fd = -1;
	l->backlog = opts != NULL && opts->backlog > 0 ? opts->backlog
						       : SL_BACKLOG_DEFAULT;
	atomic_init(&l->refs, 1);
	atomic_init(&l->data, NULL);
	atomic_init(&l->fd_pauses, 0);
	atomic_init(&l->resume_pending, 0);
	atomic_init(&l->started, 0);

	switch (ep->kind) {
	case SL_EP_TCP:
		r = open_tcp(l, err, errlen);
		break;
	case SL_EP_UNIX:
		r = open_unix(l, opts, err, errlen);
		break;
	default:
		r = fail(err, errlen, SL_EUNSUPP,
			 "%s: named pipes exist on Windows only", l->name);
		break;
	}
	if (r < 0) {
		close_fd(l);
		listener_free(l);
		return r;
	}
	*out = l;
	return 0;
}

/*
 * sl_listener_check for a Unix socket path: everything open_unix would
 * meet, found out with lstat, stat, access and a connect, never with bind,
 * unlink or chown.
 */
static int check_unix(sl_listener *l, const sl_listen_opts *opts, char *msg,
		      size_t msglen)
{
	char parent[SUN_PATH_SIZE], dir[SUN_PATH_SIZE], how[128];
	struct sockaddr_un sa;
	struct stat st;
	socklen_t len;
	unsigned uid, gid;
	size_t n = 0;
	int r;

	r = unix_address(l, &sa, &len, msg, msglen);
	if (r < 0)
		return r;
	r = lookup_ids(l, opts, &uid, &gid, msg, msglen);
	if (r < 0)
		return r;
	if ((uid != (unsigned)-1 || gid != (unsigned)-1) &&
	    (r = private_template(l, dir, sizeof dir, msg, msglen)) < 0)
		return r;
	/* sl_unix_sockaddr took the path: its directory part fits. */
	(void)parent_dir(l->ep.path, parent, sizeof parent);
	if (stat(parent, &st) < 0)
		return fail(msg, msglen, -errno, "%s: directory %s: %s",
			    l->name, parent, strerror(errno));
	if (!S_ISDIR(st.st_mode))
		return fail(msg, msglen, -ENOTDIR, "%s: %s is not a directory",
			    l->name, parent);
	if (faccessat(AT_FDCWD, parent, W_OK | X_OK, AT_EACCESS) < 0)
		return fail(msg, msglen, -errno,
			    "%s: cannot create the socket in %s: %s", l->name,
			    parent, strerror(errno));
	r = inspect_path(l, &sa, len, msg, msglen);
	if (r < 0)
		return r;

	how[0] = '\0';
	if (opts != NULL && opts->mode >= 0)
		n += (size_t)snprintf(how + n, sizeof how - n, ", mode %04o",
				      (unsigned)opts->mode);
	if (opts != NULL && opts->owner != NULL && n < sizeof how)
		n += (size_t)snprintf(how + n, sizeof how - n, ", owner %s",
				      opts->owner);
	if (opts != NULL && opts->group != NULL && n < sizeof how)
		(void)snprintf(how + n, sizeof how - n, ", group %s",
			       opts->group);
	if (msg != NULL && msglen > 0)
		snprintf(msg, msglen, "%s: would %s%s", l->name,
			 r == 1 ? "replace a stale socket (nobody listens on it)"
				: "create the socket",
			 how);
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
		return fail(msg, msglen, -EINVAL, "no endpoint");
	/* A TCP address or an abstract name: binding creates no file, so
	 * bind and let go, which tells whether it is free. */
	if (ep->kind != SL_EP_UNIX || ep->abstract) {
		r = sl_listener_open(&l, ep, opts, msg, msglen);
		if (r == 0)
			sl_listener_close(l, NULL, NULL);
		return r;
	}
	l = calloc(1, sizeof *l);
	if (l == NULL)
		return fail(msg, msglen, -ENOMEM, "out of memory");
	l->ep = *ep;
	sl_endpoint_format(ep, l->name, sizeof l->name);
	r = check_unix(l, opts, msg, msglen);
	free(l);
	return r;
}

/* ---- accepting (owner loop) --------------------------------------------- */

/* Give an accepted descriptor to the session code, on `loop`'s thread. */
static void deliver(sl_listener *l, sl_loop *loop, int fd,
		    const struct sockaddr *peer, socklen_t peer_len,
		    void *token)
{
	sl_stream *s;
	int r;

	r = sl_stream_open_accepted(loop, fd, l->ep.kind, peer, peer_len, &s);
	if (r == 0) {
		l->cb(l, s, token);
	} else {
		sl_warn("%s: dropping an accepted connection: %s", l->name,
			sl_strerror(r));
		if (l->gate != NULL)
			l->cb(l, NULL, token);
	}
}

static void handoff_run(sl_task *t, int status)
{
	struct handoff *h = t->data;
	sl_listener *l = h->l;

	if (status != 0) {
		close(h->fd); /* the target loop is being freed */
		if (l->gate != NULL)
			l->cb(l, NULL, h->token);
	} else {
		deliver(l, h->loop, h->fd, (struct sockaddr *)&h->peer,
			h->peer_len, h->token);
	}
	free(h);
	unref(l);
}

static void pause_accepting(sl_listener *l, int err, int count)
{
	sl_io_set(&l->io, 0);
	l->fd_paused = 1;
	if (count)
		atomic_fetch_add(&l->fd_pauses, 1);
	/* Once per shortage: it is retried every SL_ACCEPT_PAUSE_MS for as
	 * long as it lasts, and a line per retry would flood the log (ten a
	 * second per listener) just when the system is short of resources.
	 * The pause counter counts every retry. */
	if (!l->pause_logged) {
		l->pause_logged = 1;
		sl_warn("%s: accept: %s; pausing for %d ms, and again until "
			"it works", l->name, strerror(err), SL_ACCEPT_PAUSE_MS);
	}
	sl_timer_start(&l->timer, SL_ACCEPT_PAUSE_MS);
}

/*
 * accept() got past the descriptor allocation (a connection, or EAGAIN:
 * Linux and FreeBSD allocate the descriptor before they look at the
 * queue): a shortage that was logged is over.
 */
static void shortage_over(sl_listener *l)
{
	if (l->pause_logged) {
		l->pause_logged = 0;
		sl_info("%s: accepting again", l->name);
	}
}

static int accept_one(int lfd, struct sockaddr_storage *ss, socklen_t *len)
{
	int fd, r;

	*len = sizeof *ss;
#if defined(HAVE_ACCEPT4) && HAVE_ACCEPT4 && defined(SL_HAVE_SOCK_FLAGS)
	fd = accept4(lfd, (struct sockaddr *)ss, len,
		     SOCK_NONBLOCK | SOCK_CLOEXEC);
	(void)r;
#else
	fd = accept(lfd, (struct sockaddr *)ss, len);
	if (fd >= 0) {
		r = sl_fd_prepare(fd);
		if (r < 0) {
			close(fd);
			errno = -r;
			return -1;
		}
	}
#endif
	return fd;
}

static void on_accept(sl_io *io, unsigned events)
{
	sl_listener *l = io->data;
	struct handoff *h;
	sl_loop *loop;
	struct sockaddr_storage ss;
	socklen_t sslen;
	int fd;

	(void)events;
	for (int i = 0; i < SL_ACCEPT_BATCH; i++) {
		void *token = NULL;

		if (l->gate != NULL && !l->gate(l, &token)) {
			/* Connections wait in the kernel's backlog. */
			sl_io_set(&l->io, 0);
			return;
		}
		fd = accept_one(l->fd, &ss, &sslen);
		if (fd < 0) {
			int err = errno;

			if (l->gate != NULL)
				l->cb(l, NULL, token); /* errno may change */
			errno = err;
			switch (errno) {
			case EINTR:
			case ECONNABORTED: /* the client gave up already */
			case EPROTO:       /* older Linux, Solaris: same */
				continue;
			case EAGAIN:
#if EWOULDBLOCK != EAGAIN
			case EWOULDBLOCK:
#endif
				shortage_over(l);
				return;
			case EMFILE:
			case ENFILE:
			case ENOBUFS:
			case ENOMEM:
				pause_accepting(l, errno, 1);
				return;
			default:
				/* Unknown: pause too; never spin on a
				 * level-triggered error. */
				pause_accepting(l, errno, 0);
				return;
			}
		}
		shortage_over(l);
		loop = sl_group_next(l->group);
		if (loop == l->loop) {
			/* Ours: no hand-off, no allocation, no wake-up. */
			deliver(l, loop, fd, (struct sockaddr *)&ss,
				sslen <= sizeof ss ? sslen : 0, token);
			continue;
		}
		h = malloc(sizeof *h);
		if (h == NULL) {
			close(fd);
			if (l->gate != NULL)
				l->cb(l, NULL, token);
			pause_accepting(l, ENOMEM, 1);
			return;
		}
		h->l = l;
		h->fd = fd;
		h->token = token;
		h->peer_len = sslen <= sizeof h->peer ? sslen : 0;
		if (h->peer_len > 0)
			memcpy(&h->peer, &ss, h->peer_len);
		h->loop = loop;
		sl_task_init(&h->task, handoff_run, h);
		atomic_fetch_add(&l->refs, 1);
		sl_loop_post(h->loop, &h->task);
	}
}

static void on_pause_over(sl_timer *t)
{
	sl_listener *l = t->data;
	int r;

	l->fd_paused = 0;
	if (!l->closed && (r = sl_io_set(&l->io, SL_IO_READ)) < 0)
		pause_accepting(l, -r, 1); /* the gate is asked again */
}

static void start_run(sl_task *t, int status)
{
	sl_listener *l = t->data;
	int r;

	if (status == 0 && !l->closed) {
		sl_io_init(l->loop, &l->io, l->fd, on_accept, l);
		sl_timer_init(l->loop, &l->timer, on_pause_over, l);
		l->watching = 1;
		r = sl_io_set(&l->io, SL_IO_READ);
		if (r < 0)
			pause_accepting(l, -r, 0);
	}
	unref(l);
}

static void resume_run(sl_task *t, int status)
{
	sl_listener *l = t->data;

	int r;

	/* Cleared first: a resume from now on posts again. */
	atomic_store(&l->resume_pending, 0);
	/* Watching again can itself fail for want of memory or, with
	 * libkqueue, of a descriptor: then retry on the pause timer rather
	 * than stop accepting for good. */
	if (status == 0 && !l->closed && l->watching && !l->fd_paused &&
	    (r = sl_io_set(&l->io, SL_IO_READ)) < 0)
		pause_accepting(l, -r, 1);
	unref(l);
}

static void close_run(sl_task *t, int status)
{
	sl_listener *l = t->data;

	l->closed = 1;
	/* status != 0: the loop is being freed; its watchers and timers
	 * go with it, only the descriptor is ours to close. */
	if (status == 0 && l->watching) {
		sl_timer_stop(&l->timer);
		sl_io_remove(&l->io);
	}
	close_fd(l);
	unref(l);
}

int sl_listener_start(sl_listener *l, sl_group *g, sl_accept_cb cb,
		      sl_accept_gate gate, void *data)
{
	if (l == NULL || g == NULL || cb == NULL)
		return -EINVAL;
	if (atomic_load(&l->started))
		return -EALREADY;
	if (l->fd < 0)
		return -EBADF;
	l->group = g;
	l->cb = cb;
	l->gate = gate;
	atomic_store(&l->data, data);
	l->loop = sl_group_next(g);
	atomic_store(&l->started, 1);
	sl_task_init(&l->start_task, start_run, l);
	sl_task_init(&l->resume_task, resume_run, l);
	sl_task_init(&l->close_task, close_run, l);
	atomic_fetch_add(&l->refs, 1);
	sl_loop_post(l->loop, &l->start_task);
	return 0;
}

void sl_listener_set_data(sl_listener *l, void *data)
{
	atomic_store(&l->data, data);
}

void *sl_listener_get_data(const sl_listener *l)
{
	return atomic_load(&((sl_listener *)l)->data);
}

const sl_endpoint *sl_listener_endpoint(const sl_listener *l)
{
	return &l->ep;
}

void sl_listener_resume(sl_listener *l)
{
	if (l == NULL || !atomic_load(&l->started))
		return;
	/* Many resumes between two runs of the task cost one task. */
	if (atomic_exchange(&l->resume_pending, 1) != 0)
		return;
	atomic_fetch_add(&l->refs, 1);
	sl_loop_post(l->loop, &l->resume_task);
}

uint64_t sl_listener_fd_pauses(const sl_listener *l)
{
	return atomic_load(&((sl_listener *)l)->fd_pauses);
}

void sl_listener_close(sl_listener *l, sl_listener_closed_cb done, void *arg)
{
	if (l == NULL)
		return;
	l->done = done;
	l->done_arg = arg;
	if (!atomic_load(&l->started)) {
		close_fd(l);
		unref(l);
		return;
	}
	sl_loop_post(l->loop, &l->close_task);
}

int sl_listener_port(const sl_listener *l)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;

	if (l == NULL || l->fd < 0)
		return -EBADF;
	if (getsockname(l->fd, (struct sockaddr *)&ss, &len) < 0)
		return -errno;
	if (ss.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&ss)->sin_port);
	if (ss.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	return -EAFNOSUPPORT;
}
