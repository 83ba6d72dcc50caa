/*
 * Unix socket listeners' files (POSIX): a stale socket at the path
 * reclaimed, the socket bound under the umask for its mode, given its
 * owner in a private directory and then put at its path, removed again at
 * close, and all of that checked without doing it (sluice -t).  No link
 * at the path is ever followed.
 */
#include "listener_posix.h"
#include "path.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pthread.h>
#include <pwd.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/*
 * umask is process-wide.  Listeners are opened on the main thread (startup,
 * reload), and this mutex keeps two sluice callers from interleaving their
 * umask changes; nothing else in sluice creates files while it is held.
 */
static pthread_mutex_t umask_lock = PTHREAD_MUTEX_INITIALIZER;

void (*sl_unix_bound_hook)(const char *path);

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
		return sl_errf(err, errlen, -r, "%s: looking up %s '%s': %s",
			       name, user ? "user" : "group", s, strerror(r));
	if (pwp == NULL && grp == NULL)
		return sl_errf(err, errlen, -ENOENT, "%s: no such %s '%s'",
			       name, user ? "user" : "group", s);
	return 0;
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
		return sl_errf(err, errlen, r,
			       "%s: abstract Unix sockets exist on Linux only",
			       l->b.name);
	if (r < 0)
		return sl_errf(err, errlen, r, "%s: %s", l->b.name,
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
		return sl_errf(err, errlen, -errno, "%s: %s", l->b.name,
			       strerror(errno));
	}
	if (!S_ISSOCK(st.st_mode))
		return sl_errf(err, errlen, -EEXIST, "%s: exists and is "
			       "not a socket; not removing it", l->b.name);
	r = unix_probe(sa, len);
	if (r > 0)
		return sl_errf(err, errlen, -EADDRINUSE,
			       "%s: another process is listening", l->b.name);
	if (r < 0)
		return sl_errf(err, errlen, r,
			       "%s: cannot check the existing socket: %s",
			       l->b.name, sl_strerror(r));
	return 1;
}

/*
 * The directory part of path, as bind_private binds in it: "." for a bare
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
		return sl_errf(err, errlen, -ENAMETOOLONG,
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
		return sl_errf(err, errlen, r, "%s: bind: %s", l->b.name,
			       strerror(-r));
	if (sl_unix_bound_hook != NULL)
		sl_unix_bound_hook(l->b.ep.path);
	/* Not stat(2): through a link swapped in, that would remember (and
	 * at close compare with) another file. */
	if (lstat(l->b.ep.path, &st) < 0)
		return sl_errf(err, errlen, -errno, "%s: %s", l->b.name,
			       strerror(errno));
	if (!S_ISSOCK(st.st_mode))
		return sl_errf(err, errlen, -EEXIST,
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
		return sl_errf(err, errlen, -errno, "%s: opening %s: %s",
			       l->b.name, dir, strerror(errno));
	if (fstat(*dfd, &st) < 0 || !S_ISDIR(st.st_mode) ||
	    st.st_uid != geteuid() || (st.st_mode & 077) != 0)
		return sl_errf(err, errlen, -EPERM,
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
		return sl_errf(err, errlen, r, "%s: bind: %s", l->b.name,
			       strerror(-r));
	*bound = 1;
	if (sl_unix_bound_hook != NULL)
		sl_unix_bound_hook(l->b.ep.path);
	/* Only we can make entries in dfd: a socket there is ours. */
	if (fstatat(dfd, PRIVATE_SOCK, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
	    !S_ISSOCK(st.st_mode))
		return sl_errf(err, errlen, -ENOENT,
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
		return sl_errf(err, errlen, -errno, "%s: chown to %s:%s: %s",
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
		return sl_errf(err, errlen, -EEXIST,
			       "%s: exists: another process created it while "
			       "this one was binding; not replacing it",
			       l->b.name);
	if (errno != EPERM && errno != EOPNOTSUPP && errno != ENOTSUP &&
	    errno != ENOSYS && errno != EMLINK)
		return sl_errf(err, errlen, -errno, "%s: %s", l->b.name,
			       strerror(errno));
	if (renameat(dfd, PRIVATE_SOCK, AT_FDCWD, l->b.ep.path) < 0)
		return sl_errf(err, errlen, -errno, "%s: %s", l->b.name,
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
		return sl_errf(err, errlen, -errno,
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
		return sl_errf(err, errlen, -errno,
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
		return sl_errf(err, errlen, l->fd, "%s: socket: %s", l->b.name,
			       sl_strerror(l->fd));
	if (bind(l->fd, (const struct sockaddr *)sa, len) < 0)
		return sl_errf(err, errlen, -errno, "%s: bind: %s", l->b.name,
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
	abs = sl_path_join_cwd(l->b.ep.path);
	if (abs == NULL)
		return sl_errf(err, errlen, -errno, "%s: %s", l->b.name,
			       strerror(errno));
	l->fd = sl_socket(AF_UNIX, SOCK_STREAM);
	if (l->fd < 0)
		r = sl_errf(err, errlen, l->fd, "%s: socket: %s", l->b.name,
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

int sl_unix_listen(sl_listener *l, const sl_listen_opts *opts, char *err,
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
	return sl_listen_fd(l, err, errlen);
}

/*
 * sl_listener_check for a Unix socket path: everything sl_unix_listen would
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
		return sl_errf(msg, msglen, -errno, "%s: directory %s: %s",
			       l->b.name, parent, strerror(errno));
	if (!S_ISDIR(st.st_mode))
		return sl_errf(msg, msglen, -ENOTDIR,
			       "%s: %s is not a directory", l->b.name, parent);
	if (faccessat(AT_FDCWD, parent, W_OK | X_OK, AT_EACCESS) < 0)
		return sl_errf(msg, msglen, -errno,
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

void sl_unix_unlink(sl_listener *l)
{
	struct stat st;

	/* Only the file we bound: another process may have replaced it. */
	if (l->unlink_path != NULL && lstat(l->unlink_path, &st) == 0 &&
	    S_ISSOCK(st.st_mode) && st.st_dev == l->dev && st.st_ino == l->ino)
		unlink(l->unlink_path);
}
