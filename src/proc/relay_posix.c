/*
 * sluice relay's POSIX part (proc.h): blocking sockets, descriptors 0 and
 * 1, and a pthread.  Two threads use one socket at once, one receiving
 * and one sending, which sockets allow.
 */
#include "proc.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0 /* macOS: SIGPIPE is ignored (sl_relay_init) */
#endif

struct sl_relay_conn {
	int fd;
};

int sl_relay_init(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof sa);
	sa.sa_handler = SIG_IGN;
	sigemptyset(&sa.sa_mask);
	return sigaction(SIGPIPE, &sa, NULL) < 0 ? -errno : 0;
}

/* A connected socket, or -errno; the descriptor is not inherited. */
static int connect_fd(int family, const struct sockaddr *sa, socklen_t len)
{
	int fd = socket(family, SOCK_STREAM, 0), r;

	if (fd < 0)
		return -errno;
	(void)fcntl(fd, F_SETFD, FD_CLOEXEC);
	while ((r = connect(fd, sa, len)) < 0 && errno == EINTR)
		;
	if (r < 0) {
		r = -errno;
		close(fd);
		return r;
	}
	return fd;
}

static int connect_unix(const struct sl_relay_target *t)
{
	struct sockaddr_un sa;
	size_t n = strlen(t->path);
	socklen_t len;

	memset(&sa, 0, sizeof sa);
	sa.sun_family = AF_UNIX;
	if (n >= sizeof sa.sun_path)
		return -ENAMETOOLONG;
	if (t->abstract) {
#ifdef __linux__
		/* "@name": the name after a NUL, its length the address's. */
		memcpy(sa.sun_path + 1, t->path + 1, n - 1);
		len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
#else
		return -EAFNOSUPPORT;
#endif
	} else {
		memcpy(sa.sun_path, t->path, n + 1);
		len = (socklen_t)sizeof sa;
	}
	return connect_fd(AF_UNIX, (const struct sockaddr *)&sa, len);
}

int sl_relay_connect(const struct sl_relay_target *t, unsigned long busy_ms,
		     sl_relay_conn **out)
{
	sl_relay_conn *c;
	int fd;

	(void)busy_ms;
	switch (t->kind) {
	case SL_RELAY_TCP:
		fd = connect_fd(((const struct sockaddr *)t->addr)->sa_family,
				t->addr, (socklen_t)t->addrlen);
		break;
	case SL_RELAY_UNIX:
		fd = connect_unix(t);
		break;
	default:
		return -EAFNOSUPPORT; /* named pipes: Windows */
	}
	if (fd < 0)
		return fd;
	if ((c = malloc(sizeof *c)) == NULL) {
		close(fd);
		return -ENOMEM;
	}
	c->fd = fd;
	*out = c;
	return 0;
}

long sl_relay_recv(sl_relay_conn *c, void *buf, size_t len)
{
	ssize_t n;

	while ((n = recv(c->fd, buf, len, 0)) < 0 && errno == EINTR)
		;
	return n < 0 ? -errno : (long)n;
}

/* All of buf to fd (a socket: send, never a SIGPIPE).  0 or -errno. */
static int put_all(int fd, int sock, const void *buf, size_t len)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = sock ? send(fd, p, len, MSG_NOSIGNAL)
				 : write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int sl_relay_send(sl_relay_conn *c, const void *buf, size_t len)
{
	return put_all(c->fd, 1, buf, len);
}

int sl_relay_shutdown(sl_relay_conn *c)
{
	return shutdown(c->fd, SHUT_WR) < 0 ? -errno : 0;
}

long sl_relay_stdin_read(void *buf, size_t len)
{
	ssize_t n;

	while ((n = read(0, buf, len)) < 0 && errno == EINTR)
		;
	return n < 0 ? -errno : (long)n;
}

int sl_relay_stdout_write(const void *buf, size_t len)
{
	return put_all(1, 0, buf, len);
}

/*
 * socat's EXEC and ssh give one socket as both descriptors 0 and 1:
 * closing 1 alone would not end it, shutting its write side does.
 */
void sl_relay_stdout_close(void)
{
	(void)shutdown(1, SHUT_WR); /* ENOTSOCK for a pipe or a file */
	close(1);
}

struct sl_relay_thread {
	pthread_t id;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int done, joined;
	void (*fn)(void *arg);
	void *arg;
};

static void *thread_main(void *arg)
{
	sl_relay_thread *t = arg;

	t->fn(t->arg);
	pthread_mutex_lock(&t->lock);
	t->done = 1;
	pthread_cond_signal(&t->cond);
	pthread_mutex_unlock(&t->lock);
	return NULL;
}

int sl_relay_thread_start(sl_relay_thread **out, void (*fn)(void *arg),
			  void *arg)
{
	sl_relay_thread *t = calloc(1, sizeof *t);
	int r;

	if (t == NULL)
		return -ENOMEM;
	t->fn = fn;
	t->arg = arg;
	pthread_mutex_init(&t->lock, NULL);
	pthread_cond_init(&t->cond, NULL);
	if ((r = pthread_create(&t->id, NULL, thread_main, t)) != 0) {
		free(t);
		return -r;
	}
	*out = t;
	return 0;
}

/* CLOCK_REALTIME, pthread_cond_timedwait's: a clock step can only make
 * this wait shorter or longer by the step, never hang it. */
int sl_relay_thread_wait(sl_relay_thread *t, unsigned long ms)
{
	struct timespec ts;
	int r = 0;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += (time_t)(ms / 1000);
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&t->lock);
	while (!t->done && r != ETIMEDOUT)
		r = pthread_cond_timedwait(&t->cond, &t->lock, &ts);
	r = t->done ? 0 : -ETIMEDOUT;
	pthread_mutex_unlock(&t->lock);
	/* A thread seen done is joined (it has only its return left), so
	 * none ends the process unjoined; one still reading is left. */
	if (r == 0 && !t->joined) {
		pthread_join(t->id, NULL);
		t->joined = 1;
	}
	return r;
}

void sl_relay_sleep_ms(unsigned ms)
{
	struct timespec ts = {.tv_sec = (time_t)(ms / 1000),
			      .tv_nsec = (long)(ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}
