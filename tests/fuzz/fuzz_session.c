/*
 * libFuzzer target: a session's PROXY header intake, the real one.  An
 * in-process proxy (one loop thread, the control loop on a second) serves
 * accept_proxy routes with small relay buffers (1k, 1k+1, 1500, 2k, 64k)
 * on Unix sockets; each input is sent by a client in one or two writes,
 * then its write side is shut.  What must follow is what sl_pp_parse()
 * says of the same bytes: a whole header -> the upstream gets exactly the
 * bytes after it, then the end; a malformed or unfinished one -> the
 * client is closed and no upstream is dialled.  Anything else, or a stall
 * of 5 s, aborts; ASan sees every write past a buffer.
 *
 * Input: byte 0 picks the route, byte 1 where the second write begins
 * (0: one write), the rest is what the client sends (at most 4k).
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "loop/loop.h"
#include "net/net.h"
#include "proxy.h"
#include "proxyproto.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NROUTES 5
#define STALL_MS 5000
#define MAX_SEND 4096

static const char *const sizes[NROUTES] = {"1k", "1025", "1500", "2k",
					    "64k"};
static char dir[] = "/tmp/sl-fuzz-session-XXXXXX";
static struct sockaddr_un route_addr[NROUTES];
static int up_fd = -1;
static sl_loop *control;

static void set_addr(struct sockaddr_un *sun, const char *name)
{
	memset(sun, 0, sizeof *sun);
	sun->sun_family = AF_UNIX;
	snprintf(sun->sun_path, sizeof sun->sun_path, "%s/%s", dir, name);
}

static void *run_control(void *arg)
{
	(void)arg;
	(void)sl_loop_run(control);
	return NULL;
}

static void die(const char *what) __attribute__((noreturn));

static void die(const char *what)
{
	fprintf(stderr, "fuzz_session: %s (errno %d)\n", what, errno);
	abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char yaml[4096], err[512];
	size_t n = 0;
	sl_config *cfg;
	sl_group *group = NULL;
	sl_proxy *proxy = NULL;
	struct sockaddr_un up;
	pthread_t t;

	(void)argc;
	(void)argv;
	sl_log_set_level(SL_LOG_ERROR);
	if (mkdtemp(dir) == NULL)
		die("mkdtemp");
	set_addr(&up, "up.sock");
	up_fd = socket(AF_UNIX, SOCK_STREAM, 0);
	if (up_fd < 0 || bind(up_fd, (struct sockaddr *)&up, sizeof up) < 0 ||
	    listen(up_fd, 64) < 0)
		die("upstream listener");
	n += (size_t)snprintf(yaml + n, sizeof yaml - n,
			      "access_log: off\nroutes:\n");
	for (int i = 0; i < NROUTES; i++) {
		char name[16];

		snprintf(name, sizeof name, "r%d.sock", i);
		set_addr(&route_addr[i], name);
		n += (size_t)snprintf(
			yaml + n, sizeof yaml - n,
			"  - name: r%d\n"
			"    listen: {address: \"unix:%s\", accept_proxy: "
			"true, proxy_timeout: 30s}\n"
			"    buffer_size: %s\n"
			"    upstreams: [\"unix:%s\"]\n",
			i, route_addr[i].sun_path, sizes[i], up.sun_path);
	}
	if (sl_config_load_string(yaml, n, "fuzz.yaml", &cfg, err,
				  sizeof err) < 0) {
		fprintf(stderr, "fuzz_session: %s\n", err);
		abort();
	}
	if (sl_net_init() < 0 || sl_loop_new(&control) < 0 ||
	    sl_group_new(&group, 1) < 0 ||
	    sl_proxy_new(&proxy, control, group) < 0)
		die("proxy setup");
	if (sl_proxy_apply(proxy, cfg, err, sizeof err) < 0) {
		fprintf(stderr, "fuzz_session: %s\n", err);
		abort();
	}
	sl_config_free(cfg);
	if (sl_group_start(group) < 0 ||
	    pthread_create(&t, NULL, run_control, NULL) != 0)
		die("threads");
	return 0;
}

/* Wait for fd to be readable; abort after STALL_MS. */
static void wait_in(int fd, const char *what)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	int r;

	do
		r = poll(&p, 1, STALL_MS);
	while (r < 0 && errno == EINTR);
	if (r <= 0)
		die(what);
}

/* Read fd to its end (or a reset); the bytes, *len of them. */
static uint8_t *read_all(int fd, size_t *len)
{
	uint8_t *buf = malloc(MAX_SEND + 1);
	size_t n = 0;

	if (buf == NULL)
		die("malloc");
	for (;;) {
		ssize_t k;

		wait_in(fd, "stalled read");
		k = recv(fd, buf + n, MAX_SEND + 1 - n, 0);
		if (k == 0 || (k < 0 && errno == ECONNRESET))
			break;
		if (k < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			die("recv");
		}
		n += (size_t)k;
		if (n > MAX_SEND)
			die("more bytes than were sent");
	}
	*len = n;
	return buf;
}

static void send_all(int fd, const uint8_t *p, size_t len)
{
	while (len > 0) {
		ssize_t k = send(fd, p, len, MSG_NOSIGNAL);

		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return; /* closed early: a bad header may do that */
		p += k;
		len -= (size_t)k;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	sl_pp_info info;
	const uint8_t *msg;
	size_t len, split, got;
	ptrdiff_t h;
	uint8_t *back;
	int c, u;

	if (size < 2)
		return 0;
	msg = data + 2;
	len = size - 2 > MAX_SEND ? MAX_SEND : size - 2;
	split = data[1] < len ? data[1] : 0;
	h = sl_pp_parse(msg, len < SL_PP_MAX_LEN ? len : SL_PP_MAX_LEN, &info,
			NULL);

	c = socket(AF_UNIX, SOCK_STREAM, 0);
	if (c < 0 || connect(c, (struct sockaddr *)&route_addr[data[0] %
								NROUTES],
			     sizeof route_addr[0]) < 0)
		die("connect");
	if (split > 0) {
		send_all(c, msg, split);
		usleep(200); /* most often, two reads */
	}
	send_all(c, msg + split, len - split);
	shutdown(c, SHUT_WR);

	if (h > 0) {
		/* the upstream is dialled, and gets exactly the rest */
		wait_in(up_fd, "no upstream connection");
		u = accept(up_fd, NULL, NULL);
		if (u < 0)
			die("accept");
		back = read_all(u, &got);
		if (got != len - (size_t)h ||
		    memcmp(back, msg + h, got) != 0)
			die("the upstream got other bytes than those after "
			    "the header");
		free(back);
		close(u);
	}
	/* the client's session ends: at once for a bad header, after the
	 * upstream's end for a good one */
	back = read_all(c, &got);
	free(back);
	close(c);
	if (got != 0)
		die("the client got bytes nobody sent");
	if (h <= 0) {
		struct pollfd p = {.fd = up_fd, .events = POLLIN};

		if (poll(&p, 1, 0) > 0)
			die("an upstream was dialled for a bad header");
	}
	return 0;
}
