/*
 * Listeners over POSIX sockets.
 *
 * A listener is owned by one loop of its group (the "owner"), which watches
 * the listening descriptor and accepts in batches; each accepted descriptor
 * is handed to a loop of the group (round robin, possibly the owner) as a
 * small task, and the stream is created there.  Everything that changes the
 * watcher runs on the owner loop; other threads post tasks to it.
 *
 * Lifetime (listener_common.h): each hand-off holds a reference too.
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
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <netinet/in.h>
#include <sys/stat.h>

#include "listener_common.h"
#include "log.h"
#include "resolver.h"

#define SL_ACCEPT_BATCH 32      /* accepts per readiness event */

struct sl_listener {
	struct sl_listener_base b; /* first: see listener_common.h */
	int fd;

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

/* ---- creating and freeing ----------------------------------------------- */

sl_listener *sl_os_listener_new(void)
{
	sl_listener *l = calloc(1, sizeof *l);

	if (l != NULL)
		l->fd = -1;
	return l;
}

int sl_os_listener_is_open(const sl_listener *l)
{
	return l->fd >= 0;
}

static void unlink_own_file(sl_listener *l)
{
	struct stat st;

	/* Only the file we bound: another process may have replaced it. */
	if (l->unlink_path != NULL && lstat(l->unlink_path, &st) == 0 &&
	    S_ISSOCK(st.st_mode) && st.st_dev == l->dev && st.st_ino == l->ino)
		unlink(l->unlink_path);
}

void sl_os_listener_close(sl_listener *l)
{
	if (l->fd >= 0) {
		close(l->fd);
		l->fd = -1;
	}
	unlink_own_file(l);
}

void sl_os_listener_free(sl_listener *l)
{
	free(l->unlink_path);
	free(l);
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
		return sl_fail(err, errlen, -r, "%s: looking up %s '%s': %s",
			       name, user ? "user" : "group", s, strerror(r));
	if (pwp == NULL && grp == NULL)
		return sl_fail(err, errlen, -ENOENT, "%s: no such %s '%s'",
			       name, user ? "user" : "group", s);
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
	int r = sl_unix_sockaddr(&l->b.ep, sa, len);

	if (r == SL_EUNSUPP)
		return sl_fail(err, errlen, r,
			       "%s: abstract Unix sockets exist on Linux only",
			       l->b.name);
	if (r < 0)
		return sl_fail(err, errlen, r, "%s: %s", l->b.name,
			       sl_strerror(r));
	return 0;
}

/* owner and group of opts as ids; (unsigned)-1 for "unchanged". */
static int lookup_ids(const sl_listener *l, const sl_listen_opts *opts,
		      unsigned *uid, unsigned *gid, char *err, size_t errlen)
{
	int r;

	*uid = *gid = (unsigned)-1;
	if (opts != NULL && opts->owner != NULL &&
	    (r = lookup_id(opts->owner, 1, uid, err, errlen, l->b.name)) < 0)
		return r;
	if (opts != NULL && opts->group != NULL &&
	    (r = lookup_id(opts->group, 0, gid, err, errlen, l->b.name)) < 0)
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

	if (lstat(l->b.ep.path, &st) < 0) {
		if (errno == ENOENT)
			return 0;
		return sl_fail(err, errlen, -errno, "%s: %s", l->b.name,
			       strerror(errno));
	}
	if (!S_ISSOCK(st.st_mode))
		return sl_fail(err, errlen, -EEXIST,
			       "%s: exists and is not a socket; "
			       "not removing it",
			       l->b.name);
	r = unix_probe(sa, len);
	if (r > 0)
		return sl_fail(err, errlen, -EADDRINUSE,
			       "%s: another process is listening", l->b.name);
	if (r < 0)
		return sl_fail(err, errlen, r,
			       "%s: cannot check the existing socket: %s",
			       l->b.name, sl_strerror(r));
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

	if (parent_dir(l->b.ep.path, parent, sizeof parent) == 0 &&
	    strlen(parent) <= PRIVATE_PARENT_MAX)
		n = snprintf(buf, len, "%s%s" PRIVATE_DIR, parent,
			     strcmp(parent, "/") == 0 ? "" : "/");
	if (n < 0 || (size_t)n >= len)
		return sl_fail(err, errlen, -ENAMETOOLONG,
			       "%s: with owner or group, the socket is first "
			       "bound in a new directory beside it, and "
			       "that path would be too long for a Unix "
			       "socket: use a directory of at most %zu bytes",
			       l->b.name, (size_t)PRIVATE_PARENT_MAX);
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
		return sl_fail(err, errlen, r, "%s: bind: %s", l->b.name,
			       strerror(-r));
	if (sl_unix_bound_hook != NULL)
		sl_unix_bound_hook(l->b.ep.path);
	/* Not stat(2): through a link swapped in, that would remember (and
	 * at close compare with) another file. */
	if (lstat(l->b.ep.path, &st) < 0)
		return sl_fail(err, errlen, -errno, "%s: %s", l->b.name,
			       strerror(errno));
	if (!S_ISSOCK(st.st_mode))
		return sl_fail(err, errlen, -EEXIST,
			       "%s: replaced by something else right after "
			       "bind; not using it",
			       l->b.name);
	l->dev = st.st_dev;
	l->ino = st.st_ino;
	return 0;
}

/*
 * The private directory dir, made by mkdtemp, as a descriptor checked to
 * be ours and closed to others.  0 with *dfd, or -errno (*dfd may be open:
 * the caller closes it).
 */
static int open_private(const sl_listener *l, const char *dir, int *dfd,
			char *err, size_t errlen)
{
	struct stat st;

	/*
	 * Whoever can write the parent may have renamed it and put a link
	 * or a directory of their own at its name since mkdtemp: from here
	 * on the directory is this descriptor, checked to be ours and
	 * closed to others (mode 0700 less the umask: no bits for group or
	 * others is what matters).
	 */
	*dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (*dfd < 0)
		return sl_fail(err, errlen, -errno, "%s: opening %s: %s",
			       l->b.name, dir, strerror(errno));
	if (fstat(*dfd, &st) < 0 || !S_ISDIR(st.st_mode) ||
	    st.st_uid != geteuid() || (st.st_mode & 077) != 0)
		return sl_fail(err, errlen, -EPERM,
			       "%s: %s was replaced right after it was "
			       "created; not binding in it",
			       l->b.name, dir);
	return 0;
}

/*
 * Bind l's socket as PRIVATE_SOCK in dir (the descriptor dfd), under the
 * umask for mode, and remember the file.  *bound: there is a socket file
 * in dir to remove if what follows fails.
 */
static int bind_in_private(sl_listener *l, const char *dir, int dfd,
			   int mode, int *bound, char *err, size_t errlen)
{
	struct sockaddr_un sa;
	struct stat st;
	socklen_t len;
	int r;

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
	if (r < 0)
		return sl_fail(err, errlen, r, "%s: bind: %s", l->b.name,
			       strerror(-r));
	*bound = 1;
	if (sl_unix_bound_hook != NULL)
		sl_unix_bound_hook(l->b.ep.path);
	/* Only we can make entries in dfd: a socket there is ours. */
	if (fstatat(dfd, PRIVATE_SOCK, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
	    !S_ISSOCK(st.st_mode))
		return sl_fail(err, errlen, -ENOENT,
			       "%s: the socket is not in %s after bind (was "
			       "the directory replaced?); not using it",
			       l->b.name, dir);
	l->dev = st.st_dev;
	l->ino = st.st_ino;
	return 0;
}

/* The socket in dfd gets uid and gid (either may be (unsigned)-1). */
static int set_owner(const sl_listener *l, int dfd, const sl_listen_opts *opts,
		     unsigned uid, unsigned gid, char *err, size_t errlen)
{
	if (fchownat(dfd, PRIVATE_SOCK, (uid_t)uid, (gid_t)gid,
		     AT_SYMLINK_NOFOLLOW) < 0)
		return sl_fail(err, errlen, -errno, "%s: chown to %s:%s: %s",
			       l->b.name,
			       opts->owner != NULL ? opts->owner : "-",
			       opts->group != NULL ? opts->group : "-",
			       strerror(errno));
	return 0;
}

/*
 * The socket in dfd into place at l's path.  *bound becomes 0 when it was
 * moved there (nothing is left in the directory).
 */
static int put_in_place(const sl_listener *l, int dfd, int *bound, char *err,
			size_t errlen)
{
	/*
	 * linkat(2) never follows a link at the path and never replaces
	 * anything there: what appeared since the stale socket was removed
	 * (a link, another process's socket) stays, and this open fails.
	 * Where the filesystem has no hard links, renameat(2) does it
	 * instead.  That replaces what is at the path: a link itself, never
	 * its target, so still nothing is chowned through it, but a socket
	 * another process bound there since the stale check would lose its
	 * name; hence linkat first.
	 */
	if (linkat(dfd, PRIVATE_SOCK, AT_FDCWD, l->b.ep.path, 0) == 0)
		return 0;
	if (errno == EEXIST)
		return sl_fail(err, errlen, -EEXIST,
			       "%s: exists: another process created it while "
			       "this one was binding; not replacing it",
			       l->b.name);
	if (errno != EPERM && errno != EOPNOTSUPP && errno != ENOTSUP &&
	    errno != ENOSYS && errno != EMLINK)
		return sl_fail(err, errlen, -errno, "%s: %s", l->b.name,
			       strerror(errno));
	if (renameat(dfd, PRIVATE_SOCK, AT_FDCWD, l->b.ep.path) < 0)
		return sl_fail(err, errlen, -errno, "%s: %s", l->b.name,
			       strerror(errno));
	*bound = 0; /* moved: nothing left in dir */
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
	int dfd = -1, bound = 0, r;

	r = private_template(l, dir, sizeof dir, err, errlen);
	if (r < 0)
		return r;
	if (mkdtemp(dir) == NULL)
		return sl_fail(err, errlen, -errno,
			       "%s: creating a directory to bind in: %s",
			       l->b.name, strerror(errno));
	if ((r = open_private(l, dir, &dfd, err, errlen)) == 0 &&
	    (r = bind_in_private(l, dir, dfd, mode, &bound, err,
				 errlen)) == 0 &&
	    (r = set_owner(l, dfd, opts, uid, gid, err, errlen)) == 0)
		r = put_in_place(l, dfd, &bound, err, errlen);
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

/*
 * Make room at l's path: nothing there, or a stale socket (left by a
 * process that died) removed.  A live socket or anything else stays, and
 * the open fails.
 */
static int reclaim_path(const sl_listener *l, const struct sockaddr_un *sa,
			socklen_t len, char *err, size_t errlen)
{
	int r = inspect_path(l, sa, len, err, errlen);

	if (r < 0)
		return r;
	/* unlink(2) removes the name, whatever it is by now, and never what
	 * a link points to. */
	if (r == 1 && unlink(l->b.ep.path) < 0 && errno != ENOENT)
		return sl_fail(err, errlen, -errno,
			       "%s: removing the stale socket: %s", l->b.name,
			       strerror(errno));
	return 0;
}

/* An abstract name (Linux): no file, so no mode, owner, stale socket or
 * unlink. */
static int bind_abstract(sl_listener *l, const struct sockaddr_un *sa,
			 socklen_t len, char *err, size_t errlen)
{
	l->fd = sl_socket(AF_UNIX, SOCK_STREAM);
	if (l->fd < 0)
		return sl_fail(err, errlen, l->fd, "%s: socket: %s", l->b.name,
			       sl_strerror(l->fd));
	if (bind(l->fd, (const struct sockaddr *)sa, len) < 0)
		return sl_fail(err, errlen, -errno, "%s: bind: %s", l->b.name,
			       strerror(errno));
	return 0;
}

/* A socket file at the path: made room for, bound, owned, remembered. */
static int bind_path(sl_listener *l, const sl_listen_opts *opts,
		     const struct sockaddr_un *sa, socklen_t len, char *err,
		     size_t errlen)
{
	unsigned uid, gid;
	char *abs;
	int r, mode = opts != NULL ? opts->mode : -1;

	if ((r = lookup_ids(l, opts, &uid, &gid, err, errlen)) < 0 ||
	    (r = reclaim_path(l, sa, len, err, errlen)) < 0)
		return r;
	/* Before binding: once the socket is at its path nothing may fail
	 * before sl_os_listener_close knows to remove it. */
	abs = absolute(l->b.ep.path);
	if (abs == NULL)
		return sl_fail(err, errlen, -errno, "%s: %s", l->b.name,
			       strerror(errno));
	l->fd = sl_socket(AF_UNIX, SOCK_STREAM);
	if (l->fd < 0)
		r = sl_fail(err, errlen, l->fd, "%s: socket: %s", l->b.name,
			    sl_strerror(l->fd));
	else if (uid == (unsigned)-1 && gid == (unsigned)-1)
		r = bind_in_place(l, sa, len, mode, err, errlen);
	else
		r = bind_private(l, opts, uid, gid, mode, err, errlen);
	if (r < 0) {
		free(abs);
		return r;
	}
	l->unlink_path = abs; /* with l->dev and l->ino */
	return 0;
}

static int open_unix(sl_listener *l, const sl_listen_opts *opts, char *err,
		     size_t errlen)
{
	struct sockaddr_un sa;
	socklen_t len;
	int r;

	r = unix_address(l, &sa, &len, err, errlen);
	if (r < 0)
		return r;
	if (l->b.ep.abstract)
		r = bind_abstract(l, &sa, len, err, errlen);
	else
		r = bind_path(l, opts, &sa, len, err, errlen);
	if (r < 0)
		return r;
	if (listen(l->fd, l->b.backlog) < 0)
		return sl_fail(err, errlen, -errno, "%s: listen: %s", l->b.name,
			       strerror(errno));
	return 0;
}

int sl_os_listener_open_tcp(sl_listener *l, const struct sl_addr *a,
			    char *err, size_t errlen)
{
	int one = 1;

	l->fd = sl_socket(a->ss.ss_family, SOCK_STREAM);
	if (l->fd < 0)
		return sl_fail(err, errlen, l->fd, "%s: socket: %s", l->b.name,
			       sl_strerror(l->fd));
	/* Rebind at once after a restart despite TIME_WAIT connections. */
	setsockopt(l->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	/* So that tcp://0.0.0.0:P and tcp://[::]:P can both be listened on
	 * (Linux defaults to dual-stack, bindv6only=0). */
	if (a->ss.ss_family == AF_INET6 &&
	    setsockopt(l->fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) < 0)
		return sl_fail(err, errlen, -errno, "%s: IPV6_V6ONLY: %s",
			       l->b.name, strerror(errno));
	if (bind(l->fd, (const struct sockaddr *)&a->ss, a->len) < 0)
		return sl_fail(err, errlen, -errno, "%s: bind: %s", l->b.name,
			       strerror(errno));
	sl_listen_tune(l->fd, SL_EP_TCP);
	if (listen(l->fd, l->b.backlog) < 0)
		return sl_fail(err, errlen, -errno, "%s: listen: %s", l->b.name,
			       strerror(errno));
	return 0;
}

int sl_os_listener_open(sl_listener *l, const sl_listen_opts *opts,
			char *err, size_t errlen)
{
	if (l->b.ep.kind == SL_EP_UNIX)
		return open_unix(l, opts, err, errlen);
	return sl_fail(err, errlen, SL_EUNSUPP,
		       "%s: named pipes exist on Windows only", l->b.name);
}

/*
 * sl_listener_check for a Unix socket path: everything open_unix would
 * meet, found out with lstat, stat, access and a connect, never with bind,
 * unlink or chown.
 */
int sl_os_listener_check_path(sl_listener *l, const sl_listen_opts *opts,
			      char *msg, size_t msglen)
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
	(void)parent_dir(l->b.ep.path, parent, sizeof parent);
	if (stat(parent, &st) < 0)
		return sl_fail(msg, msglen, -errno, "%s: directory %s: %s",
			       l->b.name, parent, strerror(errno));
	if (!S_ISDIR(st.st_mode))
		return sl_fail(msg, msglen, -ENOTDIR,
			       "%s: %s is not a directory", l->b.name, parent);
	if (faccessat(AT_FDCWD, parent, W_OK | X_OK, AT_EACCESS) < 0)
		return sl_fail(msg, msglen, -errno,
			       "%s: cannot create the socket in %s: %s",
			       l->b.name, parent, strerror(errno));
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
		snprintf(msg, msglen, "%s: would %s%s", l->b.name,
			 r == 1 ? "replace a stale socket (nobody listens on it)"
				: "create the socket",
			 how);
	return 0;
}

/* ---- accepting (owner loop) --------------------------------------------- */

/* Give an accepted descriptor to the session code, on `loop`'s thread. */
static void deliver(sl_listener *l, sl_loop *loop, int fd,
		    const struct sockaddr *peer, socklen_t peer_len,
		    void *token)
{
	sl_stream *s;
	int r;

	r = sl_stream_open_accepted(loop, fd, l->b.ep.kind, peer, peer_len, &s);
	if (r == 0) {
		l->b.cb(l, s, token);
	} else {
		sl_warn("%s: dropping an accepted connection: %s", l->b.name,
			sl_strerror(r));
		if (l->b.gate != NULL)
			l->b.cb(l, NULL, token);
	}
}

static void handoff_run(sl_task *t, int status)
{
	struct handoff *h = t->data;
	sl_listener *l = h->l;

	if (status != 0) {
		close(h->fd); /* the target loop is being freed */
		if (l->b.gate != NULL)
			l->b.cb(l, NULL, h->token);
	} else {
		deliver(l, h->loop, h->fd, (struct sockaddr *)&h->peer,
			h->peer_len, h->token);
	}
	free(h);
	sl_listener_unref(l);
}

static void pause_accepting(sl_listener *l, int err, int count)
{
	sl_io_set(&l->io, 0);
	l->fd_paused = 1;
	if (count)
		atomic_fetch_add(&l->b.fd_pauses, 1);
	/* Once per shortage: it is retried every SL_ACCEPT_PAUSE_MS for as
	 * long as it lasts, and a line per retry would flood the log (ten a
	 * second per listener) just when the system is short of resources.
	 * The pause counter counts every retry. */
	if (!l->pause_logged) {
		l->pause_logged = 1;
		sl_warn("%s: accept: %s; pausing for %d ms, and again until "
			"it works",
			l->b.name, strerror(err), SL_ACCEPT_PAUSE_MS);
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
		sl_info("%s: accepting again", l->b.name);
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

		if (l->b.gate != NULL && !l->b.gate(l, &token)) {
			/* Connections wait in the kernel's backlog. */
			sl_io_set(&l->io, 0);
			return;
		}
		fd = accept_one(l->fd, &ss, &sslen);
		if (fd < 0) {
			int err = errno;

			if (l->b.gate != NULL)
				l->b.cb(l, NULL, token); /* errno may change */
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
		loop = sl_group_next(l->b.group);
		if (loop == l->b.loop) {
			/* Ours: no hand-off, no allocation, no wake-up. */
			deliver(l, loop, fd, (struct sockaddr *)&ss,
				sslen <= sizeof ss ? sslen : 0, token);
			continue;
		}
		h = malloc(sizeof *h);
		if (h == NULL) {
			close(fd);
			if (l->b.gate != NULL)
				l->b.cb(l, NULL, token);
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
		sl_listener_ref(l);
		sl_loop_post(h->loop, &h->task);
	}
}

static void on_pause_over(sl_timer *t)
{
	sl_listener *l = t->data;
	int r;

	l->fd_paused = 0;
	if (!l->b.closed && (r = sl_io_set(&l->io, SL_IO_READ)) < 0)
		pause_accepting(l, -r, 1); /* the gate is asked again */
}

void sl_os_listener_start(sl_listener *l)
{
	int r;

	sl_io_init(l->b.loop, &l->io, l->fd, on_accept, l);
	sl_timer_init(l->b.loop, &l->timer, on_pause_over, l);
	l->watching = 1;
	r = sl_io_set(&l->io, SL_IO_READ);
	if (r < 0)
		pause_accepting(l, -r, 0);
}

void sl_os_listener_resume(sl_listener *l)
{
	int r;

	/* Watching again can itself fail for want of memory or, with
	 * libkqueue, of a descriptor: then retry on the pause timer rather
	 * than stop accepting for good. */
	if (l->watching && !l->fd_paused &&
	    (r = sl_io_set(&l->io, SL_IO_READ)) < 0)
		pause_accepting(l, -r, 1);
}

void sl_os_listener_stop(sl_listener *l, int status)
{
	/* status != 0: the loop is being freed; its watchers and timers
	 * go with it, only the descriptor is ours to close. */
	if (status == 0 && l->watching) {
		sl_timer_stop(&l->timer);
		sl_io_remove(&l->io);
	}
}

int sl_os_listener_sockname(const sl_listener *l, struct sockaddr_storage *ss,
			    socklen_t *len)
{
	if (l->fd < 0)
		return -EBADF;
	if (getsockname(l->fd, (struct sockaddr *)ss, len) < 0)
		return -errno;
	return 0;
}
