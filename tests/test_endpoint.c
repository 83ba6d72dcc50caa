/*
 * Endpoint parser: every accepted form, its canonical text, equality (and
 * the hash that must agree with it), and the message for every kind of
 * mistake.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "net/endpoint.h"
#include "net/net.h"

struct good {
	const char *in;
	enum sl_ep_kind kind;
	const char *host; /* TCP */
	unsigned port;
	int literal;
	const char *path; /* UNIX, PIPE */
	int abstract;
	const char *canon; /* NULL: same as in */
};

static const struct good goods[] = {
	{"tcp://127.0.0.1:80", SL_EP_TCP, "127.0.0.1", 80, 1, NULL, 0, NULL},
	{"tcp://0.0.0.0:65535", SL_EP_TCP, "0.0.0.0", 65535, 1, NULL, 0, NULL},
	{"tcp://localhost:1", SL_EP_TCP, "localhost", 1, 0, NULL, 0, NULL},
	{"tcp://db-1.example_net.org:5432", SL_EP_TCP,
	 "db-1.example_net.org", 5432, 0, NULL, 0, NULL},
	/* Not dotted-quad: a name for getaddrinfo, not a literal. */
	{"tcp://127.1:80", SL_EP_TCP, "127.1", 80, 0, NULL, 0, NULL},
	{"tcp://[::1]:8080", SL_EP_TCP, "::1", 8080, 1, NULL, 0, NULL},
	{"tcp://[::]:443", SL_EP_TCP, "::", 443, 1, NULL, 0, NULL},
	{"tcp://[fe80::1%eth0]:22", SL_EP_TCP, "fe80::1%eth0", 22, 1, NULL, 0,
	 NULL},
	{"tcp://[::ffff:10.0.0.1]:9", SL_EP_TCP, "::ffff:10.0.0.1", 9, 1,
	 NULL, 0, NULL},
	{"TCP://Example.COM:00080", SL_EP_TCP, "Example.COM", 80, 0, NULL, 0,
	 "tcp://Example.COM:80"},
	{"unix:/run/sluice.sock", SL_EP_UNIX, NULL, 0, 0, "/run/sluice.sock",
	 0, NULL},
	{"unix:relative/s.sock", SL_EP_UNIX, NULL, 0, 0, "relative/s.sock", 0,
	 NULL},
	{"unix:@sluice-abstract", SL_EP_UNIX, NULL, 0, 0, "@sluice-abstract",
	 1, NULL},
	{"pipe:\\\\.\\pipe\\sluice", SL_EP_PIPE, NULL, 0, 0,
	 "\\\\.\\pipe\\sluice", 0, NULL},
	{"pipe://./pipe/sluice", SL_EP_PIPE, NULL, 0, 0, "\\\\.\\pipe\\sluice",
	 0, "pipe:\\\\.\\pipe\\sluice"},
	{"pipe:\\\\.\\PIPE\\a b", SL_EP_PIPE, NULL, 0, 0, "\\\\.\\pipe\\a b", 0,
	 "pipe:\\\\.\\pipe\\a b"},
	{"assuan:C:\\Users\\me\\AppData\\gnupg\\S.gpg-agent", SL_EP_ASSUAN, NULL,
	 0, 0, "C:\\Users\\me\\AppData\\gnupg\\S.gpg-agent", 0, NULL},
	{"assuan:/home/me/.gnupg/S.gpg-agent", SL_EP_ASSUAN, NULL, 0, 0,
	 "/home/me/.gnupg/S.gpg-agent", 0, NULL},
};

static void test_good(void **state)
{
	char err[256], buf[600];
	sl_endpoint ep, again;

	(void)state;
	for (size_t i = 0; i < sizeof goods / sizeof goods[0]; i++) {
		const struct good *g = &goods[i];

		strcpy(err, "untouched");
		if (sl_endpoint_parse(g->in, &ep, err, sizeof err) != 0)
			fail_msg("%s: %s", g->in, err);
		assert_string_equal(err, "");
		assert_int_equal(ep.kind, g->kind);
		if (g->kind == SL_EP_TCP) {
			assert_string_equal(ep.host, g->host);
			assert_int_equal(ep.port, g->port);
			assert_int_equal(ep.host_is_literal, g->literal);
		} else {
			assert_string_equal(ep.path, g->path);
			assert_int_equal(ep.abstract, g->abstract);
		}
		sl_endpoint_format(&ep, buf, sizeof buf);
		assert_string_equal(buf, g->canon != NULL ? g->canon : g->in);
		/* The canonical form parses back to the same endpoint. */
		assert_int_equal(sl_endpoint_parse(buf, &again, NULL, 0), 0);
		assert_true(sl_endpoint_equal(&ep, &again));
		assert_int_equal(memcmp(&ep, &again, sizeof ep), 0);
	}
}

struct bad {
	const char *in;
	const char *msg; /* a substring of the message */
};

static const struct bad bads[] = {
	{"", "empty endpoint"},
	{"127.0.0.1:80", "missing scheme (expected tcp://, unix: or pipe:)"},
	{"/run/x.sock", "missing scheme (expected tcp://, unix: or pipe:)"},
	{"udp://1.2.3.4:5", "unknown scheme 'udp' (expected tcp://, unix: or "
			    "pipe:)"},
	{"tcp:1.2.3.4:5", "expected tcp://HOST:PORT"},
	{"tcp://", "empty host"},
	{"tcp://:80", "empty host (expected tcp://HOST:PORT)"},
	{"tcp://host", "missing port (expected tcp://HOST:PORT)"},
	{"tcp://host:", "missing port after ':' (1-65535)"},
	{"tcp://host:0", "port 0 out of range (1-65535)"},
	{"tcp://host:65536", "port 65536 out of range (1-65535)"},
	{"tcp://host:70000", "port 70000 out of range (1-65535)"},
	{"tcp://host:99999999999999999999999", "out of range (1-65535)"},
	{"tcp://host:http", "port 'http' is not a number (1-65535)"},
	{"tcp://host:80/", "port '80/' is not a number (1-65535)"},
	{"tcp://host:-1", "port '-1' is not a number (1-65535)"},
	{"tcp://host: 80", "port ' 80' is not a number"},
	{"tcp://::1:80", "IPv6 address without brackets (expected "
			 "tcp://[IPV6]:PORT)"},
	{"tcp://[::1:80", "unbalanced brackets: '[' without ']'"},
	{"tcp://::1]:80", "unbalanced brackets: ']' without '['"},
	{"tcp://[[::1]]:80", "unbalanced brackets"},
	{"tcp://[]:80", "empty host in brackets"},
	{"tcp://[::1]", "missing port (expected tcp://[IPV6]:PORT)"},
	{"tcp://[::1]80", "expected ':' and a port after ']'"},
	{"tcp://[::1]:0", "port 0 out of range (1-65535)"},
	{"tcp://[example.com]:80", "is not an IPv6 address"},
	{"tcp://[1.2.3.4]:80", "is not an IPv6 address"},
	{"tcp://[fe80::1%]:80", "is not an IPv6 address"},
	{"tcp://ho st:80", "invalid character ' ' in host"},
	{"tcp://user@host:80", "invalid character '@' in host"},
	{"unix:", "empty path"},
	{"unix:@", "empty abstract socket name"},
	{"pipe:", "bad pipe name (expected pipe:\\\\.\\pipe\\NAME or "
		  "pipe://./pipe/NAME)"},
	{"pipe:\\\\.\\pipe\\", "empty pipe name"},
	{"pipe://./pipe/", "empty pipe name"},
	{"pipe:\\\\server\\pipe\\x", "bad pipe name"},
	{"pipe:sluice", "bad pipe name"},
	{"pipe://./pipe/a/b", "bad pipe name: '\\' or '/' inside NAME"},
	{"pipe:\\\\.\\pipe\\a\\b", "bad pipe name: '\\' or '/' inside NAME"},
	{"assuan:", "empty path (expected assuan:PATH"},
};

/* Each of bad[] is refused with its message. */
static void check_bads(const struct bad *bad, size_t n)
{
	char err[256];
	sl_endpoint ep;

	for (size_t i = 0; i < n; i++) {
		err[0] = '\0';
		assert_int_equal(sl_endpoint_parse(bad[i].in, &ep, err,
						   sizeof err),
				 -EINVAL);
		if (strstr(err, bad[i].msg) == NULL)
			fail_msg("'%s': got \"%s\", want \"%s\"", bad[i].in,
				 err, bad[i].msg);
	}
}

static void test_bad(void **state)
{
	char err[256];
	sl_endpoint ep;

	(void)state;
	check_bads(bads, sizeof bads / sizeof bads[0]);
	/* NULL input, NULL or tiny error buffers are fine. */
	assert_int_equal(sl_endpoint_parse(NULL, &ep, err, sizeof err),
			 -EINVAL);
	assert_int_equal(sl_endpoint_parse("x", &ep, NULL, 0), -EINVAL);
	assert_int_equal(sl_endpoint_parse("x", &ep, err, 1), -EINVAL);
	assert_string_equal(err, "");
}

static void test_lengths(void **state)
{
	char in[1024], err[256];
	sl_endpoint ep;
	/* sun_path: 108 bytes on Linux and Windows, 104 on BSD and macOS. */
#if defined(__linux__) || defined(_WIN32)
	const size_t sun = 108;
#else
	const size_t sun = 104;
#endif

	(void)state;
	/* Longest path: sun_path minus its NUL. */
	strcpy(in, "unix:/");
	memset(in + 6, 'p', sun - 2);
	in[6 + sun - 2] = '\0';
	assert_int_equal(sl_endpoint_parse(in, &ep, err, sizeof err), 0);
	assert_int_equal(strlen(ep.path), sun - 1);
	strcat(in, "p");
	assert_int_equal(sl_endpoint_parse(in, &ep, err, sizeof err), -EINVAL);
	assert_non_null(strstr(err, "socket path too long"));

	/* Abstract: the name fills sun_path after the leading NUL. */
	strcpy(in, "unix:@");
	memset(in + 6, 'a', sun - 1);
	in[6 + sun - 1] = '\0';
	assert_int_equal(sl_endpoint_parse(in, &ep, err, sizeof err), 0);
	strcat(in, "a");
	assert_int_equal(sl_endpoint_parse(in, &ep, err, sizeof err), -EINVAL);
	assert_non_null(strstr(err, "abstract socket name too long"));

	/* Host names up to SL_EP_HOST_MAX - 1. */
	strcpy(in, "tcp://");
	memset(in + 6, 'h', SL_EP_HOST_MAX - 1);
	strcpy(in + 6 + SL_EP_HOST_MAX - 1, ":1");
	assert_int_equal(sl_endpoint_parse(in, &ep, err, sizeof err), 0);
	strcpy(in + 6 + SL_EP_HOST_MAX - 1, "h:1");
	assert_int_equal(sl_endpoint_parse(in, &ep, err, sizeof err), -EINVAL);
	assert_non_null(strstr(err, "host too long"));

	/* Pipe names: the whole \\.\pipe\NAME fits the path buffer. */
	strcpy(in, "pipe:\\\\.\\pipe\\");
	memset(in + 14, 'n', SL_EP_PATH_MAX - 1 - 9);
	in[14 + SL_EP_PATH_MAX - 1 - 9] = '\0';
	assert_int_equal(sl_endpoint_parse(in, &ep, err, sizeof err), 0);
	assert_int_equal(strlen(ep.path), SL_EP_PATH_MAX - 1);
	strcat(in, "n");
	assert_int_equal(sl_endpoint_parse(in, &ep, err, sizeof err), -EINVAL);
	assert_non_null(strstr(err, "pipe name too long"));
}

/* Each pair of same[] parses to equal endpoints that hash alike; each
 * pair of differ[] to endpoints that differ. */
static void check_pairs(const char *const (*same)[2], size_t nsame,
			const char *const (*differ)[2], size_t ndiffer)
{
	sl_endpoint a, b;

	for (size_t i = 0; i < nsame; i++) {
		assert_int_equal(sl_endpoint_parse(same[i][0], &a, NULL, 0), 0);
		assert_int_equal(sl_endpoint_parse(same[i][1], &b, NULL, 0), 0);
		if (!sl_endpoint_equal(&a, &b) || !sl_endpoint_equal(&b, &a))
			fail_msg("%s != %s", same[i][0], same[i][1]);
		/* The config's uniqueness checks find duplicates by hash. */
		if (sl_endpoint_hash(&a) != sl_endpoint_hash(&b))
			fail_msg("%s and %s hash apart", same[i][0],
				 same[i][1]);
	}
	for (size_t i = 0; i < ndiffer; i++) {
		assert_int_equal(sl_endpoint_parse(differ[i][0], &a, NULL, 0),
				 0);
		assert_int_equal(sl_endpoint_parse(differ[i][1], &b, NULL, 0),
				 0);
		if (sl_endpoint_equal(&a, &b))
			fail_msg("%s == %s", differ[i][0], differ[i][1]);
	}
}

static void test_equal(void **state)
{
	static const char *const same[][2] = {
		{"tcp://[::1]:80", "tcp://[0:0::1]:80"},
		{"tcp://[fe80::1%eth0]:80", "tcp://[FE80::1%eth0]:80"},
		{"tcp://Example.com:80", "tcp://example.COM:0080"},
		{"pipe:\\\\.\\pipe\\ABC", "pipe://./pipe/abc"},
		{"unix:/a", "UNIX:/a"},
		{"tcp://[::a]:80", "tcp://[0::A]:80"},
		{"tcp://[fe80::1%eth0]:80", "tcp://[fe80:0::1%eth0]:80"},
		{"unix:@x", "unix:@x"},
	};
	static const char *const differ[][2] = {
		{"tcp://[::1]:80", "tcp://[::1]:81"},
		{"tcp://[fe80::1%eth0]:80", "tcp://[fe80::1%eth1]:80"},
		{"tcp://[fe80::1%eth0]:80", "tcp://[fe80::1]:80"},
		{"tcp://127.0.0.1:80", "tcp://localhost:80"},
		{"unix:/a", "unix:/A"},
		{"unix:@a", "unix:/a"},
		{"unix:/a", "tcp://a:1"},
		{"assuan:/a", "unix:/a"},
		{"assuan:/a", "assuan:/A"},
	};
	sl_endpoint a;

	(void)state;
	check_pairs(same, sizeof same / sizeof same[0], differ,
		    sizeof differ / sizeof differ[0]);
	assert_int_equal(sl_endpoint_parse("unix:/a", &a, NULL, 0), 0);
	assert_false(sl_endpoint_equal(NULL, &a));
}

/*
 * systemd:NAME (FileDescriptorName=) and systemd:N (a position, for the
 * default name "unknown" that every socket of a unit shares).
 */
static void test_systemd(void **state)
{
	static const struct {
		const char *in;
		int index;
		const char *name, *canon;
	} goods_sd[] = {
		{"systemd:web", -1, "web", NULL},
		{"SYSTEMD:Web-1.x_y", -1, "Web-1.x_y", "systemd:Web-1.x_y"},
		{"systemd:a b@/%", -1, "a b@/%", NULL},
		{"systemd:0", 0, "", NULL},
		{"systemd:007", 7, "", "systemd:7"},
		{"systemd:65535", 65535, "", NULL},
		{"systemd:1a", -1, "1a", NULL},
	};
	static const struct bad bads_sd[] = {
		{"systemd:", "empty name (expected systemd:NAME"},
		{"systemd:65536", "position 65536 out of range (0-65535)"},
		{"systemd:99999999999999999999", "out of range (0-65535)"},
		{"systemd:a:b", "':' in name"},
		{"systemd:a\tb", "invalid character in name"},
		{"systemd:caf\xc3\xa9", "invalid character in name"},
	};
	static const char *const same[][2] = {
		{"systemd:web", "SystemD:web"},
		{"systemd:3", "systemd:0003"},
	};
	static const char *const differ[][2] = {
		{"systemd:web", "systemd:Web"},
		{"systemd:0", "systemd:1"},
		{"systemd:0", "systemd:unknown"},
		{"systemd:1a", "systemd:1"},
		{"systemd:x", "unix:x"},
	};
	char err[256], buf[600], name[300];
	sl_endpoint ep, again;

	(void)state;
	for (size_t i = 0; i < sizeof goods_sd / sizeof goods_sd[0]; i++) {
		strcpy(err, "untouched");
		if (sl_endpoint_parse(goods_sd[i].in, &ep, err, sizeof err) != 0)
			fail_msg("%s: %s", goods_sd[i].in, err);
		assert_string_equal(err, "");
		assert_int_equal(ep.kind, SL_EP_SYSTEMD);
		assert_int_equal(ep.fd_index, goods_sd[i].index);
		assert_string_equal(ep.path, goods_sd[i].name);
		sl_endpoint_format(&ep, buf, sizeof buf);
		assert_string_equal(buf, goods_sd[i].canon != NULL
						 ? goods_sd[i].canon
						 : goods_sd[i].in);
		assert_int_equal(sl_endpoint_parse(buf, &again, NULL, 0), 0);
		assert_int_equal(memcmp(&ep, &again, sizeof ep), 0);
	}
	check_bads(bads_sd, sizeof bads_sd / sizeof bads_sd[0]);
	/* FileDescriptorName= takes 255 characters, and so do we. */
	memset(name, 'n', 255);
	name[255] = '\0';
	snprintf(buf, sizeof buf, "systemd:%s", name);
	assert_int_equal(sl_endpoint_parse(buf, &ep, err, sizeof err), 0);
	strcat(buf, "n");
	assert_int_equal(sl_endpoint_parse(buf, &ep, err, sizeof err), -EINVAL);
	assert_non_null(strstr(err, "name too long (at most 255"));
	/* A listener only Linux can have: on Windows the config fails to
	 * load; a pipe: on POSIX still loads (and fails to open). */
	assert_int_equal(sl_endpoint_parse("systemd:web", &ep, NULL, 0), 0);
	strcpy(err, "untouched");
#ifdef _WIN32
	assert_int_equal(sl_endpoint_listenable(&ep, err, sizeof err),
			 -EINVAL);
	assert_string_equal(err, "systemd: (socket activation) is for Linux; "
				 "on Windows listen on tcp:// or pipe:");
#else
	assert_int_equal(sl_endpoint_listenable(&ep, err, sizeof err), 0);
	assert_string_equal(err, "");
#endif
	assert_int_equal(sl_endpoint_parse("pipe://./pipe/x", &ep, NULL, 0), 0);
	assert_int_equal(sl_endpoint_listenable(&ep, err, sizeof err), 0);
	check_pairs(same, sizeof same / sizeof same[0], differ,
		    sizeof differ / sizeof differ[0]);
}

static void test_strerror(void **state)
{
	(void)state;
	assert_string_equal(sl_strerror(0), "success");
	assert_string_equal(sl_strerror(SL_EOF), "end of stream");
	assert_string_equal(sl_strerror(SL_ERESOLVE),
			    "host name did not resolve");
	assert_non_null(strstr(sl_strerror(SL_EUNSUPP), "not supported"));
	assert_non_null(strstr(sl_strerror(SL_EASSUAN), "Assuan socket file"));
#ifdef _WIN32
	/* msvcrt has no text for these; sluice brings glibc's words. */
	assert_string_equal(sl_strerror(-ECONNREFUSED), "Connection refused");
	assert_string_equal(sl_strerror(-ETIMEDOUT), "Connection timed out");
#else
	assert_string_equal(sl_strerror(-ECONNREFUSED),
			    strerror(ECONNREFUSED));
	assert_string_equal(sl_strerror(-ETIMEDOUT), strerror(ETIMEDOUT));
#endif
	assert_true(strlen(sl_strerror(-123456)) > 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good),
		cmocka_unit_test(test_bad),
		cmocka_unit_test(test_lengths),
		cmocka_unit_test(test_equal),
		cmocka_unit_test(test_systemd),
		cmocka_unit_test(test_strerror),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
