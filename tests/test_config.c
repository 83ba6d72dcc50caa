/*
 * Config loader tests: every file in tests/conf/good must load, every file
 * in tests/conf/bad must fail with exactly the message on its first line
 * ("# expect: LINE:COL: text", the test puts the path in front), plus the
 * duration and size parsers and a field-by-field check of a loaded config.
 *
 * SL_TEST_SRCDIR names the tests/ directory (make check sets it); without
 * it the test runs from the top of the source tree.
 */
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h> /* access() */

#include <cmocka.h>

#include "config.h"
#include "log.h"

#define EXPECT_TAG "# expect: "

static const char *srcdir(void)
{
	const char *d = getenv("SL_TEST_SRCDIR");

	return d != NULL && d[0] != '\0' ? d : "tests";
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * The sorted *.yaml names of tests/conf/<sub>; fails the test if the
 * directory cannot be read.  opendir() and qsort() rather than scandir(),
 * which mingw-w64 lacks.
 */
static size_t list_fixtures(const char *sub, char *dir, size_t dirlen,
			    char ***names)
{
	size_t n = 0, cap = 64;
	struct dirent *de;
	DIR *d;

	snprintf(dir, dirlen, "%s/conf/%s", srcdir(), sub);
	if ((d = opendir(dir)) == NULL)
		fail_msg("%s: %s (set SL_TEST_SRCDIR to the tests directory)",
			 dir, strerror(errno));
	*names = malloc(cap * sizeof **names);
	assert_non_null(*names);
	while ((de = readdir(d)) != NULL) {
		size_t len = strlen(de->d_name);

		if (len <= 5 || strcmp(de->d_name + len - 5, ".yaml") != 0)
			continue;
		if (n == cap) {
			cap *= 2;
			*names = realloc(*names, cap * sizeof **names);
			assert_non_null(*names);
		}
		(*names)[n] = strdup(de->d_name);
		assert_non_null((*names)[n]);
		n++;
	}
	closedir(d);
	qsort(*names, n, sizeof **names, cmp_names);
	return n;
}

static void free_names(char **names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

/* The whole file, NUL-terminated; *len without the NUL. */
static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	long n;

	assert_non_null(f);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	n = ftell(f);
	assert_true(n >= 0);
	rewind(f);
	buf = malloc((size_t)n + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = '\0';
	fclose(f);
	*len = (size_t)n;
	return buf;
}

/* Every file of tests/conf/<sub> loads. */
static void run_good_fixtures(const char *sub, size_t min)
{
	char **names;
	char dir[1024], path[1300], err[1024];
	size_t n = list_fixtures(sub, dir, sizeof dir, &names);

	assert_true(n >= min);
	for (size_t i = 0; i < n; i++) {
		sl_config *cfg = (sl_config *)&cfg; /* must become NULL or a config */

		snprintf(path, sizeof path, "%s/%s", dir, names[i]);
		if (sl_config_load(path, &cfg, err, sizeof err) != 0)
			fail_msg("%s should load, got: %s", path, err);
		assert_non_null(cfg);
		assert_string_equal(cfg->path, path);
		assert_true(cfg->nroutes >= 1);
		for (size_t r = 0; r < cfg->nroutes; r++) {
			assert_true(cfg->routes[r].nlisten >= 1);
			assert_true(cfg->routes[r].nupstreams >= 1);
			assert_true(cfg->routes[r].connect_attempts >= 1);
		}
		sl_config_free(cfg);
	}
	free_names(names, n);
}

static void test_good_fixtures(void **state)
{
	run_good_fixtures("good", 5);
}

/* The sample config the daemon installs must load too. */
static void test_sample_config(void **state)
{
	char path[1024], err[1024];
	sl_config *cfg = NULL;

	snprintf(path, sizeof path, "%s/../conf/sluice.yaml", srcdir());
	if (access(path, R_OK) != 0)
		skip();
	if (sl_config_load(path, &cfg, err, sizeof err) != 0)
		fail_msg("%s should load, got: %s", path, err);
	sl_config_free(cfg);
}

/* Every file of tests/conf/<sub> fails with the message it expects. */
static void run_bad_fixtures(const char *sub, size_t min)
{
	char **names;
	char dir[1024], path[1300], want[2048], err[2048], err2[2048];
	size_t n = list_fixtures(sub, dir, sizeof dir, &names);
	int failed = 0;

	assert_true(n >= min);
	for (size_t i = 0; i < n; i++) {
		sl_config *cfg = (sl_config *)&cfg;
		size_t len;
		char *text, *nl;

		snprintf(path, sizeof path, "%s/%s", dir, names[i]);
		text = slurp(path, &len);
		if (strncmp(text, EXPECT_TAG, strlen(EXPECT_TAG)) != 0)
			fail_msg("%s: first line must be '" EXPECT_TAG "...'",
				 path);
		nl = strchr(text, '\n');
		assert_non_null(nl);
		if (nl > text && nl[-1] == '\r') /* a CRLF checkout */
			nl--;
		snprintf(want, sizeof want, "%s:%.*s", path,
			 (int)(nl - text - (ptrdiff_t)strlen(EXPECT_TAG)),
			 text + strlen(EXPECT_TAG));

		if (sl_config_load(path, &cfg, err, sizeof err) != -1) {
			print_error("%s: loaded, expected: %s\n", path, want);
			failed++;
			sl_config_free(cfg);
		} else if (strcmp(err, want) != 0) {
			print_error("%s:\n  got:  %s\n  want: %s\n", path, err,
				    want);
			failed++;
		}
		if (cfg != NULL) {
			print_error("%s: *out not NULL on failure\n", path);
			failed++;
		}
		/* From memory, under the same name: the same message. */
		cfg = (sl_config *)&cfg;
		if (sl_config_load_string(text, len, path, &cfg, err2,
					  sizeof err2) != -1 ||
		    cfg != NULL || strcmp(err2, want) != 0) {
			print_error("%s: from a string: %s\n", path, err2);
			failed++;
		}
		free(text);
	}
	free_names(names, n);
	assert_int_equal(failed, 0);
}

static void test_bad_fixtures(void **state)
{
	run_bad_fixtures("bad", 30);
}

static const char full_yaml[] =
	"threads: 8\n"
	"max_connections: 1000\n"
	"drain_timeout: 2m\n"
	"log_level: warn\n"
	"routes:\n"
	"  - name: one\n"
	"    listen:\n"
	"      - tcp://127.0.0.1:7000\n"
	"      - address: unix:/tmp/one.sock\n"
	"        mode: 0640\n"
	"        owner: www\n"
	"        group: \"33\"\n"
	"        backlog: 64\n"
	"      - address: pipe:\\\\.\\pipe\\one\n"
	"        security: D:(A;;GA;;;WD)\n"
	"    upstreams:\n"
	"      - \"tcp://[2001:db8::1]:443\"\n"
	"      - address: unix:@up\n"
	"    connect_timeout: 1500ms\n"
	"    idle_timeout: 0\n"
	"    connect_attempts: 5\n"
	"    max_connections: 7\n"
	"    buffer_size: 1m\n"
	"  - name: two\n"
	"    listen: tcp://localhost:7001\n"
	"    upstreams: [tcp://127.0.0.1:1, tcp://127.0.0.1:2, "
	"tcp://127.0.0.1:3]\n";

static void test_fields(void **state)
{
	char err[512];
	sl_config *cfg = NULL;
	const sl_route_conf *r;
	const sl_listen_conf *l;
	const sl_upstream_conf *u;

	if (sl_config_load_string(full_yaml, strlen(full_yaml), "full.yaml",
				  &cfg, err, sizeof err) != 0)
		fail_msg("%s", err);
	assert_string_equal(err, "");
	assert_string_equal(cfg->path, "full.yaml");
	assert_int_equal(cfg->threads, 8);
	assert_int_equal(cfg->max_connections, 1000);
	assert_int_equal(cfg->drain_timeout_ms, 120000);
	assert_int_equal(cfg->log_level, SL_LOG_WARN);
	assert_int_equal(cfg->nroutes, 2);

	r = &cfg->routes[0];
	assert_string_equal(r->name, "one");
	assert_int_equal(r->mark.line, 6);
	assert_int_equal(r->mark.col, 5);
	assert_int_equal(r->nlisten, 3);
	l = &r->listen[0];
	assert_int_equal(l->ep.kind, SL_EP_TCP);
	assert_string_equal(l->ep.host, "127.0.0.1");
	assert_int_equal(l->ep.port, 7000);
	assert_string_equal(l->address, "tcp://127.0.0.1:7000");
	assert_int_equal(l->mode, -1);
	assert_null(l->owner);
	assert_null(l->group);
	assert_null(l->security);
	assert_int_equal(l->backlog, 0);
	assert_int_equal(l->mark.line, 8);
	assert_int_equal(l->mark.col, 9);
	l = &r->listen[1];
	assert_int_equal(l->ep.kind, SL_EP_UNIX);
	assert_string_equal(l->ep.path, "/tmp/one.sock");
	assert_false(l->ep.abstract);
	assert_string_equal(l->address, "unix:/tmp/one.sock");
	assert_int_equal(l->mode, 0640);
	assert_string_equal(l->owner, "www");
	assert_string_equal(l->group, "33");
	assert_null(l->security);
	assert_int_equal(l->backlog, 64);
	/* The mark of a listener mapping is that of its address. */
	assert_int_equal(l->mark.line, 9);
	assert_int_equal(l->mark.col, 18);
	l = &r->listen[2];
	assert_int_equal(l->ep.kind, SL_EP_PIPE);
	assert_string_equal(l->ep.path, "\\\\.\\pipe\\one");
	assert_int_equal(l->mode, -1);
	assert_string_equal(l->security, "D:(A;;GA;;;WD)");

	assert_int_equal(r->nupstreams, 2);
	u = &r->upstreams[0];
	assert_int_equal(u->ep.kind, SL_EP_TCP);
	assert_string_equal(u->ep.host, "2001:db8::1");
	assert_int_equal(u->ep.port, 443);
	assert_true(u->ep.host_is_literal);
	assert_string_equal(u->address, "tcp://[2001:db8::1]:443");
	assert_int_equal(u->mark.line, 17);
	assert_int_equal(u->mark.col, 9);
	u = &r->upstreams[1];
	assert_int_equal(u->ep.kind, SL_EP_UNIX);
	assert_true(u->ep.abstract);
	assert_string_equal(u->ep.path, "@up");
	assert_int_equal(r->connect_timeout_ms, 1500);
	assert_int_equal(r->idle_timeout_ms, 0);
	assert_int_equal(r->connect_attempts, 5);
	assert_int_equal(r->max_connections, 7);
	assert_int_equal(r->buffer_size, 1024 * 1024);

	/* Defaults. */
	r = &cfg->routes[1];
	assert_string_equal(r->name, "two");
	assert_int_equal(r->nlisten, 1);
	assert_string_equal(r->listen[0].ep.host, "localhost");
	assert_false(r->listen[0].ep.host_is_literal);
	assert_int_equal(r->nupstreams, 3);
	assert_int_equal(r->connect_timeout_ms, 5000);
	assert_int_equal(r->idle_timeout_ms, 3600000);
	assert_int_equal(r->connect_attempts, 3);
	assert_int_equal(r->max_connections, 0);
	assert_int_equal(r->buffer_size, 65536);
	sl_config_free(cfg);
}

static const char features_yaml[] =
	"allow: [10.0.0.0/8, \"::ffff:192.168.0.0/112\"]\n"
	"deny: 10.9.0.0/16\n"
	"resolve_interval: 1m\n"
	"admin: {listen: tcp://127.0.0.1:9090, allow: 127.0.0.1}\n"
	"routes:\n"
	"  - name: f\n"
	"    listen:\n"
	"      - address: tcp://0.0.0.0:8000\n"
	"        accept_proxy: true\n"
	"        proxy_timeout: 3s\n"
	"        trusted_proxies: [192.0.2.0/24, 2001:db8::/32]\n"
	"      - tcp://127.0.0.1:8001\n"
	"    upstreams:\n"
	"      - {address: tcp://10.0.0.1:80, weight: 3, send_proxy: v2}\n"
	"      - {address: tcp://10.0.0.2:80, backup: true, send_proxy: v1}\n"
	"      - tcp://10.0.0.3:80\n"
	"    balance: source-hash\n"
	"    health:\n"
	"      fails: 5\n"
	"      cooldown: 30s\n"
	"      check:\n"
	"        interval: 2s\n"
	"        rise: 3\n"
	"        fall: 4\n"
	"        send: \"PING\\r\\n\"\n"
	"        expect: \"+PONG\"\n"
	"    queue: {max: 50, timeout: 20s}\n"
	"    deny: [10.1.2.3]\n"
	"    max_connections_per_client: 10\n"
	"    rate_limit: 600/m\n"
	"    half_closed_timeout: 15s\n"
	"    max_duration: 8h\n";

static void test_feature_fields(void **state)
{
	char err[512], text[SL_CIDR_TEXT_MAX];
	sl_config *cfg = NULL;
	const sl_route_conf *r;
	const sl_listen_conf *l;

	(void)state;
	if (sl_config_load_string(features_yaml, strlen(features_yaml),
				  "features.yaml", &cfg, err, sizeof err) != 0)
		fail_msg("%s", err);
	assert_int_equal(cfg->acl.nallow, 2);
	sl_cidr_format(&cfg->acl.allow[1], text, sizeof text);
	assert_string_equal(text, "192.168.0.0/16"); /* mapped: as IPv4 */
	assert_int_equal(cfg->acl.ndeny, 1);
	assert_int_equal(cfg->resolve_interval_ms, 60000);
	assert_string_equal(cfg->admin.address, "tcp://127.0.0.1:9090");
	assert_int_equal(cfg->admin.ep.port, 9090);
	assert_int_equal(cfg->admin.acl.nallow, 1);

	r = &cfg->routes[0];
	l = &r->listen[0];
	assert_true(l->accept_proxy);
	assert_int_equal(l->proxy_timeout_ms, 3000);
	assert_int_equal(l->ntrusted, 2);
	sl_cidr_format(&l->trusted[1], text, sizeof text);
	assert_string_equal(text, "2001:db8::/32");
	l = &r->listen[1];
	assert_false(l->accept_proxy);
	assert_int_equal(l->proxy_timeout_ms, 5000);
	assert_int_equal(l->ntrusted, 0);

	assert_int_equal(r->upstreams[0].weight, 3);
	assert_int_equal(r->upstreams[0].send_proxy, 2);
	assert_false(r->upstreams[0].backup);
	assert_int_equal(r->upstreams[1].weight, 1);
	assert_true(r->upstreams[1].backup);
	assert_int_equal(r->upstreams[1].send_proxy, 1);
	assert_int_equal(r->upstreams[2].weight, 1);
	assert_int_equal(r->upstreams[2].send_proxy, 0);
	assert_int_equal(r->balance, SL_BALANCE_SOURCE_HASH);
	assert_int_equal(r->health.fails, 5);
	assert_int_equal(r->health.cooldown_ms, 30000);
	assert_int_equal(r->health.interval_ms, 2000);
	assert_int_equal(r->health.timeout_ms, 2000); /* default: min(2s, interval) */
	assert_int_equal(r->health.rise, 3);
	assert_int_equal(r->health.fall, 4);
	assert_int_equal(r->health.send_len, 6);
	assert_memory_equal(r->health.send, "PING\r\n", 6);
	assert_int_equal(r->health.expect_len, 5);
	assert_memory_equal(r->health.expect, "+PONG", 5);
	assert_int_equal(r->queue_max, 50);
	assert_int_equal(r->queue_timeout_ms, 20000);
	assert_int_equal(r->acl.ndeny, 1);
	assert_int_equal(r->acl.nallow, 0);
	assert_int_equal(r->max_per_client, 10);
	assert_int_equal(r->rate_count, 600);
	assert_int_equal(r->rate_period_ms, 60000);
	assert_int_equal(r->half_closed_timeout_ms, 15000);
	assert_int_equal(r->max_duration_ms, 8 * 3600000);
	sl_config_free(cfg);
}

static void test_feature_defaults(void **state)
{
	static const char y[] = "routes:\n"
				"  - name: a\n"
				"    listen: tcp://127.0.0.1:1\n"
				"    upstreams: tcp://127.0.0.1:2\n"
				"    health: {check: {interval: 500ms}}\n";
	char err[256];
	sl_config *cfg = NULL;
	const sl_route_conf *r;

	(void)state;
	assert_int_equal(sl_config_load_string(y, strlen(y), NULL, &cfg, err,
					       sizeof err),
			 0);
	assert_int_equal(cfg->acl.nallow + cfg->acl.ndeny, 0);
	assert_null(cfg->admin.address);
	assert_int_equal(cfg->resolve_interval_ms, 30000);
	r = &cfg->routes[0];
	assert_int_equal(r->balance, SL_BALANCE_ROUND_ROBIN);
	assert_int_equal(r->upstreams[0].weight, 1);
	assert_int_equal(r->health.fails, 3);
	assert_int_equal(r->health.cooldown_ms, 10000);
	assert_int_equal(r->health.interval_ms, 500);
	assert_int_equal(r->health.timeout_ms, 500); /* at most the interval */
	assert_int_equal(r->health.rise, 2);
	assert_int_equal(r->health.fall, 3);
	assert_null(r->health.send);
	assert_null(r->health.expect);
	assert_int_equal(r->queue_max, 0);
	assert_int_equal(r->max_per_client, 0);
	assert_int_equal(r->rate_count, 0);
	assert_int_equal(r->half_closed_timeout_ms, 0);
	assert_int_equal(r->max_duration_ms, 0);
	sl_config_free(cfg);
}

static void test_admin_port(void **state)
{
	static const char *const forms[] = {
		"admin: 9090\n",
		"admin: {listen: 9090}\n",
		"admin: \"tcp://127.0.0.1:9090\"\n",
	};
	char err[256];

	(void)state;
	/* A port alone is on loopback: the admin listener is never on every
	 * address unless the config says so. */
	for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
		char *y = malloc(512);
		sl_config *cfg = NULL;

		assert_non_null(y);
		snprintf(y, 512,
			 "%sroutes:\n  - name: a\n    listen: tcp://127.0.0.1:1\n"
			 "    upstreams: tcp://127.0.0.1:2\n",
			 forms[i]);
		if (sl_config_load_string(y, strlen(y), NULL, &cfg, err,
					  sizeof err) != 0)
			fail_msg("%s: %s", forms[i], err);
		assert_int_equal(cfg->admin.ep.kind, SL_EP_TCP);
		assert_string_equal(cfg->admin.ep.host, "127.0.0.1");
		assert_int_equal(cfg->admin.ep.port, 9090);
		assert_string_equal(cfg->admin.address, "tcp://127.0.0.1:9090");
		sl_config_free(cfg);
		free(y);
	}
}

static void test_defaults(void **state)
{
	static const char y[] = "routes:\n"
				"  - name: a\n"
				"    listen: tcp://127.0.0.1:1\n"
				"    upstreams: tcp://127.0.0.1:2\n";
	char err[256];
	sl_config *cfg = NULL;

	assert_int_equal(sl_config_load_string(y, strlen(y), NULL, &cfg, err,
					       sizeof err),
			 0);
	assert_string_equal(cfg->path, "<string>");
	assert_int_equal(cfg->threads, 0);
	assert_int_equal(cfg->thread_batch, 1);
	assert_int_equal(cfg->max_connections, 0);
	assert_int_equal(cfg->drain_timeout_ms, 30000);
	assert_int_equal(cfg->log_level, SL_LOG_INFO);
	assert_int_equal(cfg->routes[0].connect_attempts, 1);
	sl_config_free(cfg);
}

/* connect_attempts defaults to the number of upstreams, at most 16. */
static void test_attempts_cap(void **state)
{
	char y[4096], err[256];
	size_t off;
	sl_config *cfg = NULL;

	off = (size_t)snprintf(y, sizeof y,
			       "routes:\n  - name: many\n"
			       "    listen: tcp://127.0.0.1:1\n"
			       "    upstreams:\n");
	for (int i = 0; i < 20; i++)
		off += (size_t)snprintf(y + off, sizeof y - off,
					"      - tcp://127.0.0.1:%d\n", 100 + i);
	if (sl_config_load_string(y, off, "many", &cfg, err, sizeof err) != 0)
		fail_msg("%s", err);
	assert_int_equal(cfg->routes[0].nupstreams, 20);
	assert_int_equal(cfg->routes[0].connect_attempts, 16);
	sl_config_free(cfg);
}

static void test_empty_and_odd_input(void **state)
{
	char err[256];
	sl_config *cfg = (sl_config *)&cfg;

	assert_int_equal(sl_config_load_string("", 0, "e.yaml", &cfg, err,
					       sizeof err),
			 -1);
	assert_null(cfg);
	assert_string_equal(err, "e.yaml:1:1: empty config (expected a "
				 "mapping with routes)");
	assert_int_equal(sl_config_load_string(NULL, 0, NULL, &cfg, err,
					       sizeof err),
			 -1);
	assert_string_equal(err, "<string>:1:1: empty config (expected a "
				 "mapping with routes)");
	/* A NUL inside the text is a YAML reader error, not a cut-off. */
	assert_int_equal(sl_config_load_string("a: 1\0b: 2\n", 10, "z", &cfg,
					       err, sizeof err),
			 -1);
	assert_null(cfg);
	assert_string_equal(err, "z:1:5: control characters are not allowed "
				 "(expected UTF-8 text)");
	/* No room for a message, or none at all: still just -1. */
	assert_int_equal(sl_config_load_string("x", 1, "n", &cfg, NULL, 0),
			 -1);
	assert_int_equal(sl_config_load_string("x", 1, "n", &cfg, err, 0),
			 -1);
	/* A short buffer gets a truncated, terminated message. */
	memset(err, 'X', sizeof err);
	assert_int_equal(sl_config_load_string("x", 1, "name", &cfg, err, 8),
			 -1);
	assert_string_equal(err, "name:1:");
	assert_int_equal(sl_config_load_string("x", 1, "name", NULL, err,
					       sizeof err),
			 -1);
}

static void test_file_errors(void **state)
{
	char path[1024], err[2048], want[2048];
	sl_config *cfg = (sl_config *)&cfg;

	snprintf(path, sizeof path, "%s/conf/no-such-file.yaml", srcdir());
	assert_int_equal(sl_config_load(path, &cfg, err, sizeof err), -1);
	assert_null(cfg);
	snprintf(want, sizeof want, "%s: cannot open: %s", path,
		 strerror(ENOENT));
	assert_string_equal(err, want);
	/* A directory: Linux opens it and fails the read (EISDIR), Windows
	 * fails the open (EACCES); either way a message without position. */
	snprintf(path, sizeof path, "%s/conf", srcdir());
	cfg = (sl_config *)&cfg;
	assert_int_equal(sl_config_load(path, &cfg, err, sizeof err), -1);
	assert_null(cfg);
	snprintf(want, sizeof want, "%s: cannot ", path);
	assert_true(strncmp(err, want, strlen(want)) == 0);
	assert_int_equal(sl_config_load(NULL, &cfg, err, sizeof err), -1);
	assert_string_equal(err, "<null>: no config file given");
}

static void test_free_null(void **state)
{
	sl_config_free(NULL);
}

static void test_parse_duration(void **state)
{
	static const struct {
		const char *s;
		uint64_t ms;
	} good[] = {
		{ "0", 0 },
		{ "5", 5000 },
		{ "250ms", 250 },
		{ "0ms", 0 },
		{ "5s", 5000 },
		{ "2m", 120000 },
		{ "1h", 3600000 },
		{ "1d", 86400000 },
		{ "007s", 7000 },
		{ "18446744073709551615ms", UINT64_MAX },
		{ "18446744073709551s", 18446744073709551000u },
	};
	static const char *const bad[] = {
		"",	    "s",       "ms",	"-1",	 "+1",	   "1.5s",
		"5 s",	    " 5s",     "5s ",	"5S",	 "5sec",   "1h30m",
		"0x10",	    "5us",     "1w",	"1e3",	 "1_000",  "5mss",
		"18446744073709551616ms", "18446744073709552s",
		"99999999999999999999999",
	};
	uint64_t ms;

	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
		ms = 1;
		if (sl_parse_duration(good[i].s, &ms) != 0)
			fail_msg("'%s' should parse", good[i].s);
		assert_int_equal(ms, good[i].ms);
	}
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		ms = 12345;
		if (sl_parse_duration(bad[i], &ms) != -1)
			fail_msg("'%s' should not parse", bad[i]);
		assert_int_equal(ms, 12345);
	}
	assert_int_equal(sl_parse_duration(NULL, &ms), -1);
	assert_int_equal(sl_parse_duration("5s", NULL), -1);
}

static void test_parse_size(void **state)
{
	static const struct {
		const char *s;
		uint64_t bytes;
	} good[] = {
		{ "0", 0 },
		{ "16384", 16384 },
		{ "16k", 16384 },
		{ "16K", 16384 },
		{ "1m", 1048576 },
		{ "1M", 1048576 },
		{ "1g", 1073741824 },
		{ "3G", 3221225472u },
		{ "18446744073709551615", UINT64_MAX },
		{ "17179869183g", 17179869183ull << 30 },
	};
	static const char *const bad[] = {
		"",	"k",	 "-1",	   "+1",      "1.5k",  "16 k",
		"16kb", "16KiB", "1t",	   "0x4000",  "1e3",   " 1k",
		"1k ",	"1kk",	 "18446744073709551616", "17179869184g",
	};
	uint64_t n;

	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
		n = 1;
		if (sl_parse_size(good[i].s, &n) != 0)
			fail_msg("'%s' should parse", good[i].s);
		assert_int_equal(n, good[i].bytes);
	}
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		n = 12345;
		if (sl_parse_size(bad[i], &n) != -1)
			fail_msg("'%s' should not parse", bad[i]);
		assert_int_equal(n, 12345);
	}
	assert_int_equal(sl_parse_size(NULL, &n), -1);
	assert_int_equal(sl_parse_size("1k", NULL), -1);
}

/* Limits that are easier to state here than in a fixture file. */
static void test_limits(void **state)
{
	char y[8192], err[512];
	sl_config *cfg = NULL;
	int n;

	/* 64 characters is the longest route name. */
	n = snprintf(y, sizeof y,
		     "routes:\n  - name: %064d\n"
		     "    listen: tcp://127.0.0.1:1\n"
		     "    upstreams: tcp://127.0.0.1:2\n",
		     7);
	if (sl_config_load_string(y, (size_t)n, "l", &cfg, err, sizeof err))
		fail_msg("%s", err);
	assert_int_equal(strlen(cfg->routes[0].name), 64);
	sl_config_free(cfg);

	/* The extremes of every range load. */
	n = snprintf(y, sizeof y,
		     "threads: 1024\nthread_policy: normal\n"
		     "max_connections: 4294967295\n"
		     "drain_timeout: 365d\n"
		     "routes:\n  - name: x\n"
		     "    listen: {address: unix:/a, mode: 0, backlog: 65535}\n"
		     "    upstreams: tcp://127.0.0.1:2\n"
		     "    connect_timeout: 1ms\n    idle_timeout: 365d\n"
		     "    connect_attempts: 1\n    buffer_size: 16m\n");
	if (sl_config_load_string(y, (size_t)n, "l", &cfg, err, sizeof err))
		fail_msg("%s", err);
	assert_int_equal(cfg->threads, 1024);
	assert_int_equal(cfg->thread_batch, 0);
	assert_int_equal(cfg->max_connections, 4294967295u);
	assert_int_equal(cfg->drain_timeout_ms, 365ull * 86400000);
	assert_int_equal(cfg->routes[0].listen[0].mode, 0);
	assert_int_equal(cfg->routes[0].listen[0].backlog, 65535);
	assert_int_equal(cfg->routes[0].connect_timeout_ms, 1);
	assert_int_equal(cfg->routes[0].buffer_size, 16 << 20);
	sl_config_free(cfg);

	/* The same 3 listeners in other spellings clash. */
	n = snprintf(y, sizeof y,
		     "routes:\n"
		     "  - {name: a, listen: [\"pipe:\\\\\\\\.\\\\pipe\\\\X\"],"
		     " upstreams: tcp://h:1}\n"
		     "  - {name: b, listen: pipe://./PIPE/x, upstreams: "
		     "tcp://h:1}\n");
	assert_int_equal(sl_config_load_string(y, (size_t)n, "p", &cfg, err,
					       sizeof err),
			 -1);
	assert_string_equal(err, "p:3:23: listen: 'pipe://./PIPE/x' is "
				 "already used by route 'a' at 2:24 (each "
				 "endpoint is listened on once)");
	n = snprintf(y, sizeof y,
		     "routes:\n"
		     "  - {name: a, listen: tcp://LOCALHOST:1, upstreams: "
		     "tcp://h:1}\n"
		     "  - {name: b, listen: tcp://localhost:1, upstreams: "
		     "tcp://h:1}\n");
	assert_int_equal(sl_config_load_string(y, (size_t)n, "h", &cfg, err,
					       sizeof err),
			 -1);
	assert_string_equal(err, "h:3:23: listen: 'tcp://localhost:1' is "
				 "already used by route 'a' at 2:23 (each "
				 "endpoint is listened on once)");
	/* Unix paths and abstract names are different things. */
	n = snprintf(y, sizeof y,
		     "routes:\n"
		     "  - {name: a, listen: [unix:/x, unix:@/x], upstreams: "
		     "tcp://h:1}\n");
	if (sl_config_load_string(y, (size_t)n, "u", &cfg, err, sizeof err))
		fail_msg("%s", err);
	sl_config_free(cfg);
}

/*
 * Text of routes r0 .. r<n-1>, one a line from line 2, each listening on
 * its own IPv6 address (so that a duplicate can be spelt otherwise); the
 * last route's name and listen address are given.  Free it.
 */
static char *many_routes(size_t n, const char *last_name,
			 const char *last_listen, size_t *len)
{
	size_t cap = (n + 1) * 96, off;
	char *y = malloc(cap);

	assert_non_null(y);
	off = (size_t)snprintf(y, cap, "routes:\n");
	for (size_t i = 0; i + 1 < n; i++)
		off += (size_t)snprintf(y + off, cap - off,
					"  - {name: r%zu, listen: "
					"\"tcp://[2001:db8::%zx]:80\", "
					"upstreams: tcp://h:1}\n",
					i, i);
	off += (size_t)snprintf(y + off, cap - off,
				"  - {name: %s, listen: \"%s\", upstreams: "
				"tcp://h:1}\n",
				last_name, last_listen);
	assert_true(off < cap);
	*len = off;
	return y;
}

/* Enough routes that the uniqueness checks' hash sets grow many times:
 * a duplicate is still found, whatever its spelling, and reported where
 * it was before (the second occurrence, naming the first). */
static void test_many_routes(void **state)
{
	char err[512];
	sl_config *cfg = NULL;
	size_t len;
	char *y;

	/* Names are compared as written, so R17 is not r17. */
	y = many_routes(5000, "R17", "tcp://[2001:db8::1:0]:80", &len);
	if (sl_config_load_string(y, len, "m", &cfg, err, sizeof err) != 0)
		fail_msg("%s", err);
	assert_int_equal(cfg->nroutes, 5000);
	assert_string_equal(cfg->routes[4999].name, "R17");
	sl_config_free(cfg);
	free(y);

	y = many_routes(5000, "r17", "tcp://[2001:db8::1:0]:80", &len);
	assert_int_equal(sl_config_load_string(y, len, "m", &cfg, err,
					       sizeof err),
			 -1);
	assert_string_equal(err, "m:5001:12: name: route 'r17' is already "
				 "defined at 19:5 (expected a unique name)");
	free(y);

	/* Route r17's address, written another way. */
	y = many_routes(5000, "last", "tcp://[2001:DB8:0::0:11]:080", &len);
	assert_int_equal(sl_config_load_string(y, len, "m", &cfg, err,
					       sizeof err),
			 -1);
	assert_string_equal(err, "m:5001:26: listen: 'tcp://[2001:DB8:0::0:"
				 "11]:080' is already used by route 'r17' at "
				 "19:25 (each endpoint is listened on once)");
	free(y);
}

/* sluice.yaml(5) promises this many nodes, and no more. */
#define MAX_NODES 2000000

/* "routes: [a,a,...]" with n items: the mapping, its key and the list
 * come first, so the document has n + 3 nodes. */
static char *scalar_list(size_t n, size_t *len)
{
	char *y = malloc(9 + 2 * n + 2);

	assert_non_null(y);
	memcpy(y, "routes: [", 9);
	for (size_t i = 0; i < n; i++)
		memcpy(y + 9 + 2 * i, "a,", 2);
	memcpy(y + 9 + 2 * n - 1, "]\n", 2);
	*len = 9 + 2 * n + 1;
	return y;
}

static void test_node_cap(void **state)
{
	char err[512], want[512];
	sl_config *cfg = (sl_config *)&cfg;
	size_t len;
	char *y;

	/* At the cap the tree is built, and the schema has its say. */
	y = scalar_list(MAX_NODES - 3, &len);
	assert_int_equal(sl_config_load_string(y, len, "n", &cfg, err,
					       sizeof err),
			 -1);
	assert_null(cfg);
	assert_string_equal(err, "n:1:10: route is a scalar (expected a "
				 "mapping with name, listen and upstreams)");
	free(y);

	/* One more is refused where it stands: item MAX_NODES - 2, at
	 * column 10 + 2 * (MAX_NODES - 3). */
	y = scalar_list(MAX_NODES - 2, &len);
	cfg = (sl_config *)&cfg;
	assert_int_equal(sl_config_load_string(y, len, "n", &cfg, err,
					       sizeof err),
			 -1);
	assert_null(cfg);
	snprintf(want, sizeof want,
		 "n:1:%d: too many YAML nodes (at most %d scalars, sequences "
		 "and mappings in all)",
		 10 + 2 * (MAX_NODES - 3), MAX_NODES);
	assert_string_equal(err, want);
	free(y);
}

/* ---- tls ---------------------------------------------------------------- */

static const char tls_yaml[] =
	"routes:\n"
	"  - name: in\n"
	"    listen:\n"
	"      - address: tcp://127.0.0.1:8443\n"
	"        tls:\n"
	"          cert: /etc/s/server.pem\n"
	"          key: /etc/s/server.key\n"
	"          client_ca: /etc/s/ca.pem\n"
	"          verify_client: required\n"
	"          allow:\n"
	"            cn: [ci-runner, deploy]\n"
	"            dns: ci.example.com\n"
	"            uri: [\"spiffe://example.com/ci\"]\n"
	"          min_version: \"1.3\"\n"
	"          handshake_timeout: 2500ms\n"
	"          ciphers: ECDHE+AESGCM\n"
	"          ciphersuites: TLS_AES_128_GCM_SHA256\n"
	"      - address: tcp://127.0.0.1:8444\n"
	"        tls: {cert: /etc/s/both.pem}\n"
	"      - tcp://127.0.0.1:8445\n"
	"    upstreams:\n"
	"      - address: tcp://api.example.com:443\n"
	"        tls:\n"
	"          ca: /etc/ssl/ca.pem\n"
	"          server_name: api.internal\n"
	"          verify: false\n"
	"          cert: /etc/s/client.pem\n"
	"          key: /etc/s/client.key\n"
	"      - address: tcp://b.example.com:443\n"
	"        tls: {}\n"
	"      - tcp://127.0.0.1:80\n";

#ifdef SL_HAVE_TLS
/* Every tls key lands in its field; what is not written has its default. */
static void test_tls_fields(void **state)
{
	char err[512];
	sl_config *cfg = NULL;
	const sl_route_conf *rc;
	const sl_tls_listen_conf *t;
	const sl_tls_upstream_conf *u;

	(void)state;
	if (sl_config_load_string(tls_yaml, strlen(tls_yaml), "tls.yaml",
				  &cfg, err, sizeof err) != 0)
		fail_msg("%s", err);
	rc = &cfg->routes[0];
	t = &rc->listen[0].tls;
	assert_int_equal(t->on, 1);
	assert_string_equal(t->cert, "/etc/s/server.pem");
	assert_string_equal(t->key, "/etc/s/server.key");
	assert_string_equal(t->client_ca, "/etc/s/ca.pem");
	assert_int_equal(t->verify_client, SL_TLS_VERIFY_REQUIRED);
	assert_int_equal(t->allow.any, 0);
	assert_int_equal(t->allow.ncn, 2);
	assert_string_equal(t->allow.cn[1], "deploy");
	assert_int_equal(t->allow.ndns, 1);
	assert_string_equal(t->allow.dns[0], "ci.example.com");
	assert_int_equal(t->allow.nuri, 1);
	assert_string_equal(t->allow.uri[0], "spiffe://example.com/ci");
	assert_int_equal(t->min_version, 0x0304);
	assert_int_equal(t->handshake_timeout_ms, 2500);
	assert_string_equal(t->ciphers, "ECDHE+AESGCM");
	assert_string_equal(t->ciphersuites, "TLS_AES_128_GCM_SHA256");
	assert_int_equal(t->mark.line, 5);
	assert_int_equal(t->mark.col, 9);

	t = &rc->listen[1].tls;
	assert_int_equal(t->on, 1);
	assert_string_equal(t->cert, "/etc/s/both.pem");
	assert_null(t->key);
	assert_null(t->client_ca);
	assert_int_equal(t->verify_client, SL_TLS_VERIFY_NONE);
	assert_int_equal(t->min_version, 0x0303);
	assert_int_equal(t->handshake_timeout_ms, 10000);
	assert_null(t->ciphers);
	assert_int_equal(rc->listen[2].tls.on, 0);

	u = &rc->upstreams[0].tls;
	assert_int_equal(u->on, 1);
	assert_string_equal(u->ca, "/etc/ssl/ca.pem");
	assert_string_equal(u->server_name, "api.internal");
	assert_int_equal(u->verify, 0);
	assert_string_equal(u->cert, "/etc/s/client.pem");
	assert_string_equal(u->key, "/etc/s/client.key");
	u = &rc->upstreams[1].tls;
	assert_int_equal(u->on, 1);
	assert_null(u->ca);
	assert_null(u->server_name);
	assert_int_equal(u->verify, 1);
	assert_int_equal(u->min_version, 0x0303);
	assert_int_equal(rc->upstreams[2].tls.on, 0);
	sl_config_free(cfg);
}

static void test_tls_good_fixtures(void **state)
{
	(void)state;
	run_good_fixtures("good-tls", 2);
}

static void test_tls_bad_fixtures(void **state)
{
	(void)state;
	run_bad_fixtures("bad-tls", 15);
}
#else
/* Built without TLS: any tls key is an error that says so, at the key. */
static void test_tls_absent(void **state)
{
	static const char up[] = "routes:\n"
				 "  - name: a\n"
				 "    listen: tcp://127.0.0.1:1\n"
				 "    upstreams:\n"
				 "      - {address: tcp://127.0.0.1:2, tls: {}}\n";
	char err[512];
	sl_config *cfg = NULL;

	(void)state;
	assert_int_equal(sl_config_load_string(tls_yaml, strlen(tls_yaml),
					       "tls.yaml", &cfg, err,
					       sizeof err),
			 -1);
	assert_null(cfg);
	assert_string_equal(err, "tls.yaml:5:9: tls: this sluice was built "
				 "without TLS (configure found no OpenSSL 3, "
				 "or was given --without-tls)");
	assert_int_equal(sl_config_load_string(up, strlen(up), "up.yaml", &cfg,
					       err, sizeof err),
			 -1);
	assert_string_equal(err, "up.yaml:5:38: tls: this sluice was built "
				 "without TLS (configure found no OpenSSL 3, "
				 "or was given --without-tls)");
}
#endif

/* ---- tcp_keepalive and source (issue 20) ------------------------------------ */

/* A route r with its upstreams and extra keys (each line indented as a
 * route key), loaded as file "k"; sl_config_load_string's result. */
static int load_keys(const char *keys, const char *upstreams, sl_config **cfg,
		     char *err, size_t errlen)
{
	char y[2048];
	int n = snprintf(y, sizeof y,
			 "routes:\n  - name: r\n    listen: tcp://127.0.0.1:1\n"
			 "    upstreams: %s\n%s",
			 upstreams, keys);

	*cfg = NULL;
	return sl_config_load_string(y, (size_t)n, "k", cfg, err, errlen);
}

/* That route, which must load. */
static sl_config *load_route(const char *keys, const char *upstreams)
{
	char err[512];
	sl_config *cfg;

	if (load_keys(keys, upstreams, &cfg, err, sizeof err) < 0)
		fail_msg("%s", err);
	return cfg;
}

/* That route, which must fail with "k:" + want. */
static void route_fails(const char *keys, const char *upstreams,
			const char *want)
{
	char err[512], full[600];
	sl_config *cfg;

	assert_int_equal(load_keys(keys, upstreams, &cfg, err, sizeof err), -1);
	assert_null(cfg);
	snprintf(full, sizeof full, "k:%s", want);
	assert_string_equal(err, full);
}

static void test_keepalive_keys(void **state)
{
	/* The default (on, every value the system's), the full mapping,
	 * any subset, durations in any unit that is whole seconds, the
	 * bounds Linux takes, an empty mapping, and off. */
	static const struct {
		const char *keys;
		sl_keepalive_conf want;
	} ok[] = {
		{ "", { 0, 0, 0, 0 } },
		{ "{idle: 60s, interval: 10s, count: 6}", { 0, 60, 10, 6 } },
		{ "{idle: 2m}", { 0, 120, 0, 0 } },
		{ "{idle: 32767, interval: 1000ms, count: 127}",
		  { 0, 32767, 1, 127 } },
		{ "{count: 1}", { 0, 0, 0, 1 } },
		{ "{}", { 0, 0, 0, 0 } },
		{ "off", { 1, 0, 0, 0 } },
	};

	(void)state;
	for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
		char keys[128];
		sl_config *cfg;
		const sl_keepalive_conf *ka;

		snprintf(keys, sizeof keys, "%s%s\n",
			 ok[i].keys[0] ? "    tcp_keepalive: " : "",
			 ok[i].keys);
		cfg = load_route(keys, "tcp://127.0.0.1:2");
		ka = &cfg->routes[0].keepalive;
		assert_int_equal(ka->off, ok[i].want.off);
		assert_int_equal(ka->idle_s, ok[i].want.idle_s);
		assert_int_equal(ka->interval_s, ok[i].want.interval_s);
		assert_int_equal(ka->count, ok[i].want.count);
		sl_config_free(cfg);
	}

	route_fails("    tcp_keepalive: {idle: 0s}\n", "tcp://h:2",
		    "5:27: idle: '0s' is out of range (expected a duration "
		    "of whole seconds 1s-32767s such as 60s)");
	route_fails("    tcp_keepalive: {interval: 32768s}\n", "tcp://h:2",
		    "5:31: interval: '32768s' is out of range (expected a "
		    "duration of whole seconds 1s-32767s such as 60s)");
	route_fails("    tcp_keepalive: {interval: 10d}\n", "tcp://h:2",
		    "5:31: interval: '10d' is out of range (expected a "
		    "duration of whole seconds 1s-32767s such as 60s)");
	route_fails("    tcp_keepalive: {idle: 1500ms}\n", "tcp://h:2",
		    "5:27: idle: '1500ms' is not a duration of whole seconds "
		    "(expected a duration of whole seconds 1s-32767s such as "
		    "60s)");
	route_fails("    tcp_keepalive: {idle: soon}\n", "tcp://h:2",
		    "5:27: idle: 'soon' is not a duration of whole seconds "
		    "(expected a duration of whole seconds 1s-32767s such as "
		    "60s)");
	route_fails("    tcp_keepalive: {count: 0}\n", "tcp://h:2",
		    "5:28: count: '0' is out of range (expected 1-127)");
	route_fails("    tcp_keepalive: {count: 128}\n", "tcp://h:2",
		    "5:28: count: '128' is out of range (expected 1-127)");
	route_fails("    tcp_keepalive: {probes: 3}\n", "tcp://h:2",
		    "5:21: unknown key 'probes' in tcp_keepalive (expected "
		    "idle, interval, count)");
	route_fails("    tcp_keepalive: on\n", "tcp://h:2",
		    "5:20: tcp_keepalive: 'on' is neither off nor a mapping "
		    "(expected off, or a mapping with idle, interval and "
		    "count)");
	route_fails("    tcp_keepalive: [1]\n", "tcp://h:2",
		    "5:20: tcp_keepalive is a sequence "
		    "(expected off, or a mapping with idle, interval and "
		    "count)");
}

static void test_source_keys(void **state)
{
	static const struct {
		const char *text;
		int family;
		uint16_t port;
		uint8_t first, last;
	} ok[] = {
		{ "192.0.2.10", SL_AF_INET4, 0, 192, 10 },
		{ "127.0.0.2:0", SL_AF_INET4, 0, 127, 2 },
		{ "127.0.0.2:5000", SL_AF_INET4, 5000, 127, 2 },
		{ "\"[2001:db8::1]\"", SL_AF_INET6, 0, 0x20, 1 },
		{ "\"[::1]:5000\"", SL_AF_INET6, 5000, 0, 1 },
		{ "\"::1\"", SL_AF_INET6, 0, 0, 1 },
	};
	char keys[256];
	sl_config *cfg;
	const sl_upstream_conf *uc;

	(void)state;
	for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
		const sl_ipaddr *a;

		snprintf(keys, sizeof keys, "    source: %s\n", ok[i].text);
		cfg = load_route(keys, ok[i].family == SL_AF_INET4
					       ? "tcp://127.0.0.1:2"
					       : "\"tcp://[::1]:2\"");
		a = &cfg->routes[0].source.addr;
		assert_int_equal(a->family, ok[i].family);
		assert_int_equal(a->port, ok[i].port);
		assert_int_equal(a->ip[0], ok[i].first);
		assert_int_equal(a->ip[ok[i].family == SL_AF_INET4 ? 3 : 15],
				 ok[i].last);
		/* The route's source is its upstream's. */
		assert_memory_equal(&cfg->routes[0].upstreams[0].source.addr,
				    a, sizeof *a);
		sl_config_free(cfg);
	}

	/* An upstream's own wins over its route's; a name's family is
	 * not known yet, so any source goes; a unix: upstream takes
	 * none of its route's. */
	cfg = load_route("    source: 127.0.0.2\n",
			 "[{address: tcp://127.0.0.1:2, source: "
			 "127.0.0.3:7}, tcp://localhost:3, unix:/u]");
	uc = cfg->routes[0].upstreams;
	assert_int_equal(uc[0].source.addr.ip[3], 3);
	assert_int_equal(uc[0].source.addr.port, 7);
	assert_int_equal(uc[1].source.addr.ip[3], 2);
	assert_int_equal(uc[1].source.addr.family, SL_AF_INET4);
	assert_int_equal(uc[2].source.addr.family, SL_AF_NONE);
	sl_config_free(cfg);

	/* None: the system chooses. */
	cfg = load_route("", "tcp://127.0.0.1:2");
	assert_int_equal(cfg->routes[0].upstreams[0].source.addr.family,
			 SL_AF_NONE);
	sl_config_free(cfg);

	route_fails("    source: 192.0.2\n", "tcp://h:2",
		    "5:13: source: '192.0.2' is not an IP address (expected "
		    "an IP address with an optional port, such as 192.0.2.10, "
		    "127.0.0.2:0 or \"[2001:db8::1]:5000\")");
	route_fails("    source: host.example\n", "tcp://h:2",
		    "5:13: source: 'host.example' is not an IP address "
		    "(expected an IP address with an optional port, such as "
		    "192.0.2.10, 127.0.0.2:0 or \"[2001:db8::1]:5000\")");
	route_fails("    source: \"[127.0.0.1]\"\n", "tcp://h:2",
		    "5:13: source: '[127.0.0.1]' is not an IP address "
		    "(expected an IP address with an optional port, such as "
		    "192.0.2.10, 127.0.0.2:0 or \"[2001:db8::1]:5000\")");
	route_fails("    source: \"[::1]x\"\n", "tcp://h:2",
		    "5:13: source: '[::1]x' is not an IP address (expected an "
		    "IP address with an optional port, such as 192.0.2.10, "
		    "127.0.0.2:0 or \"[2001:db8::1]:5000\")");
	route_fails("    source: 127.0.0.1:x\n", "tcp://h:2",
		    "5:13: source: '127.0.0.1:x' is not an IP address "
		    "(expected an IP address with an optional port, such as "
		    "192.0.2.10, 127.0.0.2:0 or \"[2001:db8::1]:5000\")");
	route_fails("    source: 127.0.0.1:65536\n", "tcp://h:2",
		    "5:13: source: '127.0.0.1:65536' has a port out of range "
		    "(expected an IP address with an optional port, such as "
		    "192.0.2.10, 127.0.0.2:0 or \"[2001:db8::1]:5000\", the "
		    "port 0-65535)");
	/* A literal upstream address of the other family, from the route
	 * (at the route's source) or from the upstream itself. */
	route_fails("    source: 127.0.0.2\n", "\"tcp://[::1]:2\"",
		    "5:13: source: an IPv4 address for the upstream "
		    "'tcp://[::1]:2', which is IPv6 (expected a source of the "
		    "upstream's family)");
	route_fails("", "{address: tcp://127.0.0.1:2, source: \"[::1]\"}",
		    "4:53: source: an IPv6 address for the upstream "
		    "'tcp://127.0.0.1:2', which is IPv4 (expected a source of "
		    "the upstream's family)");
	route_fails("", "{address: unix:/u, source: 127.0.0.2}",
		    "4:35: source is not for this upstream (expected only "
		    "with a tcp:// address)");
}

/* ---- includes and ${VAR} (issue 20) ----------------------------------- */

#ifdef _WIN32
#include <direct.h>
#include <process.h>
#define inc_mkdir(p) _mkdir(p)
#define inc_rmdir(p) _rmdir(p)
#define inc_pid() _getpid()
#else
#include <sys/stat.h>
#define inc_mkdir(p) mkdir((p), 0700)
#define inc_rmdir(p) rmdir(p)
#define inc_pid() getpid()
#endif

/* A scratch folder of files for one test, removed after it. */
struct incdir {
	char root[512];
	char *made[64]; /* files and folders, in the order made */
	int dir[64];
	size_t n;
};

static void inc_add(struct incdir *d, const char *path, int dir)
{
	assert_true(d->n < sizeof d->made / sizeof d->made[0]);
	d->made[d->n] = strdup(path);
	assert_non_null(d->made[d->n]);
	d->dir[d->n++] = dir;
}

static void inc_start(struct incdir *d, const char *name)
{
	const char *tmp = getenv("TMPDIR");

#ifdef _WIN32
	tmp = getenv("TEMP");
#endif
	if (tmp == NULL || tmp[0] == '\0')
		tmp = "/tmp";
	memset(d, 0, sizeof *d);
	snprintf(d->root, sizeof d->root, "%s/sl-inc-%s-%d", tmp, name,
		 (int)inc_pid());
	if (inc_mkdir(d->root) != 0)
		fail_msg("mkdir %s: %s", d->root, strerror(errno));
	inc_add(d, d->root, 1);
}

/* root/rel, a folder. */
static void inc_dir(struct incdir *d, const char *rel)
{
	char path[1024];

	snprintf(path, sizeof path, "%s/%s", d->root, rel);
	if (inc_mkdir(path) != 0)
		fail_msg("mkdir %s: %s", path, strerror(errno));
	inc_add(d, path, 1);
}

/* root/rel holding text; its path in buf. */
static const char *inc_put(struct incdir *d, const char *rel,
			   const char *text, char *buf, size_t len)
{
	FILE *f;

	snprintf(buf, len, "%s/%s", d->root, rel);
	if ((f = fopen(buf, "wb")) == NULL)
		fail_msg("%s: %s", buf, strerror(errno));
	fputs(text, f);
	fclose(f);
	inc_add(d, buf, 0);
	return buf;
}

static void inc_end(struct incdir *d)
{
	while (d->n > 0) {
		d->n--;
		if (d->dir[d->n])
			inc_rmdir(d->made[d->n]);
		else
			remove(d->made[d->n]);
		free(d->made[d->n]);
	}
}

/* A route of one listener on 127.0.0.1:port, in an included file. */
#define INC_ROUTE(name, port)                                                  \
	"  - name: " name "\n"                                                 \
	"    listen: tcp://127.0.0.1:" #port "\n"                              \
	"    upstreams: [tcp://127.0.0.1:9]\n"

/* Loading main fails with root/want as its message ("%R" stands for
 * root). */
static void inc_fails(struct incdir *d, const char *main, const char *want)
{
	char err[2048], full[2048];
	sl_config *cfg = (sl_config *)&cfg;
	size_t o = 0;

	for (const char *w = want; *w != '\0' && o + 1 < sizeof full; w++) {
		if (w[0] == '%' && w[1] == 'R') {
			o += (size_t)snprintf(full + o, sizeof full - o, "%s",
					      d->root);
			w++;
		} else {
			full[o++] = *w;
		}
	}
	full[o] = '\0';
	assert_int_equal(sl_config_load(main, &cfg, err, sizeof err), -1);
	assert_null(cfg);
	assert_string_equal(err, full);
}

static const char *file_tail(const char *path)
{
	const char *t = path;

	for (const char *p = path; *p != '\0'; p++)
		if (*p == '/' || *p == '\\')
			t = p + 1;
	return t;
}

/*
 * Routes come in order: the config's, then each included file's, a
 * pattern's matches in byte order, a file's own includes after its
 * routes; each route's mark names its file.  A folder and a file the
 * pattern does not match are left out; a pattern that matches nothing
 * is fine.
 */
static void test_include_order(void **state)
{
	struct incdir d;
	char main[1024], buf[1024], err[1024], text[1024];
	sl_config *cfg = NULL;
	static const char *const names[] = { "a", "b", "n", "c", "e" };

	(void)state;
	inc_start(&d, "order");
	inc_dir(&d, "conf.d");
	inc_dir(&d, "conf.d/sub.yaml");
	inc_dir(&d, "nested");
	inc_put(&d, "conf.d/20-c.yaml", "routes:\n" INC_ROUTE("c", 7003), buf,
		sizeof buf);
	inc_put(&d, "conf.d/10-b.yaml",
		"routes:\n" INC_ROUTE("b", 7002) "include: ../nested/n.yaml\n",
		buf, sizeof buf);
	inc_put(&d, "conf.d/README", "not yaml: [", buf, sizeof buf);
	inc_put(&d, "nested/n.yaml", "routes:\n" INC_ROUTE("n", 7004), buf,
		sizeof buf);
	inc_put(&d, "extra.yaml", "# nothing but a comment\n", buf,
		sizeof buf);
	inc_put(&d, "e.yaml", "routes:\n" INC_ROUTE("e", 7005), buf,
		sizeof buf);
	inc_put(&d, "main.yaml",
		"include: [conf.d/*.yaml, none.d/*.yaml, extra.yaml]\n"
		"routes:\n" INC_ROUTE("a", 7001) "threads: 2\n",
		main, sizeof main);
	/* e.yaml by an absolute name, from a file in another folder. */
	snprintf(text, sizeof text, "routes:\n" INC_ROUTE("c", 7003)
		 "include: '%s/e.yaml'\n", d.root);
	inc_put(&d, "conf.d/20-c.yaml", text, buf, sizeof buf);
	if (sl_config_load(main, &cfg, err, sizeof err) != 0)
		fail_msg("%s", err);
	assert_int_equal(cfg->threads, 2);
	assert_int_equal(cfg->nroutes, 5);
	for (size_t i = 0; i < 5; i++)
		assert_string_equal(cfg->routes[i].name, names[i]);
	assert_string_equal(cfg->routes[0].mark.file, main);
	assert_string_equal(file_tail(cfg->routes[1].mark.file), "10-b.yaml");
	assert_int_equal(cfg->routes[1].mark.line, 2);
	assert_int_equal(cfg->routes[1].mark.col, 5);
	assert_string_equal(file_tail(cfg->routes[2].mark.file), "n.yaml");
	assert_string_equal(file_tail(cfg->routes[3].listen[0].mark.file),
			    "20-c.yaml");
	assert_string_equal(file_tail(cfg->routes[4].mark.file), "e.yaml");
	/* main, 10-b, n, 20-c, e, extra. */
	assert_int_equal(cfg->nfiles, 6);
	assert_string_equal(cfg->path, main);
	sl_config_free(cfg);
	inc_end(&d);
}

/* A config may leave every route to its included files; with none
 * anywhere the message is the one without includes. */
static void test_include_routes_only(void **state)
{
	struct incdir d;
	char main[1024], buf[1024], err[1024];
	sl_config *cfg = NULL;

	(void)state;
	inc_start(&d, "only");
	inc_dir(&d, "conf.d");
	inc_put(&d, "main.yaml", "include: conf.d/*.yaml\nthreads: 1\n", main,
		sizeof main);
	inc_fails(&d, main, "%R/main.yaml:1:1: missing required key 'routes' "
			    "at top level (expected routes: a list of routes)");
	inc_put(&d, "conf.d/x.yaml", "routes:\n" INC_ROUTE("x", 7001), buf,
		sizeof buf);
	if (sl_config_load(main, &cfg, err, sizeof err) != 0)
		fail_msg("%s", err);
	assert_int_equal(cfg->nroutes, 1);
	assert_string_equal(cfg->routes[0].name, "x");
	sl_config_free(cfg);
	inc_end(&d);
}

/* Each error at its own file:line:col. */
static void test_include_errors(void **state)
{
	struct incdir d;
	char main[1024], buf[1024];

	(void)state;
	inc_start(&d, "errors");
	inc_dir(&d, "conf.d");
	/* A schema error and a syntax error in an included file. */
	inc_put(&d, "conf.d/bad.yaml",
		"routes:\n"
		"  - name: bad\n"
		"    listen: tcp://127.0.0.1:99999\n"
		"    upstreams: [tcp://127.0.0.1:9]\n",
		buf, sizeof buf);
	inc_put(&d, "main.yaml",
		"routes:\n" INC_ROUTE("a", 7001) "include: conf.d/bad.yaml\n",
		main, sizeof main);
	inc_fails(&d, main, "%R/conf.d/bad.yaml:3:13: listen: bad endpoint "
			    "'tcp://127.0.0.1:99999': port 99999 out of range "
			    "(1-65535)");
	inc_put(&d, "conf.d/bad.yaml", "routes:\n  - [\n", buf, sizeof buf);
	inc_fails(&d, main, "%R/conf.d/bad.yaml:3:1: did not find expected "
			    "node content (YAML syntax, while parsing a flow "
			    "node at 3:1)");
	/* Only routes: and include: in an included file. */
	inc_put(&d, "conf.d/bad.yaml",
		"routes:\n" INC_ROUTE("b", 7002) "threads: 2\n", buf,
		sizeof buf);
	inc_fails(&d, main, "%R/conf.d/bad.yaml:5:1: 'threads' in an included "
			    "file (only routes: and include: may appear "
			    "there)");
	inc_put(&d, "conf.d/bad.yaml", "- routes\n", buf, sizeof buf);
	inc_fails(&d, main, "%R/conf.d/bad.yaml:1:1: an included file is a "
			    "sequence (expected a mapping with routes or "
			    "include)");
	/* The same name, or listener, in two files: both places named. */
	inc_put(&d, "conf.d/bad.yaml", "routes:\n" INC_ROUTE("a", 7002), buf,
		sizeof buf);
	inc_fails(&d, main, "%R/conf.d/bad.yaml:2:11: name: route 'a' is "
			    "already defined at %R/main.yaml:2:5 (expected a "
			    "unique name)");
	inc_put(&d, "conf.d/bad.yaml", "routes:\n" INC_ROUTE("b", 7001), buf,
		sizeof buf);
	inc_fails(&d, main, "%R/conf.d/bad.yaml:3:13: listen: "
			    "'tcp://127.0.0.1:7001' is already used by route "
			    "'a' at %R/main.yaml:3:13 (each endpoint is "
			    "listened on once)");
	/* A file named without a wildcard must exist. */
	inc_put(&d, "main.yaml",
		"routes:\n" INC_ROUTE("a", 7001)
		"include: [conf.d/*.none, missing.yaml]\n",
		main, sizeof main);
	snprintf(buf, sizeof buf, "%%R/main.yaml:5:26: include: cannot open "
		 "%%R/missing.yaml: %s", strerror(ENOENT));
	inc_fails(&d, main, buf);
	/* Items that are no names. */
	inc_put(&d, "main.yaml",
		"routes:\n" INC_ROUTE("a", 7001) "include: [{a: b}]\n", main,
		sizeof main);
	inc_fails(&d, main, "%R/main.yaml:5:11: include item is a mapping "
			    "(expected a file name or pattern such as "
			    "conf.d/*.yaml, or a list of those)");
	inc_end(&d);
}

/* A file read twice is an error naming both places: a cycle back to the
 * config, a cycle between included files, two patterns that overlap. */
static void test_include_twice(void **state)
{
	struct incdir d;
	char main[1024], buf[1024];

	(void)state;
	inc_start(&d, "twice");
	inc_put(&d, "main.yaml",
		"routes:\n" INC_ROUTE("a", 7001) "include: a.yaml\n", main,
		sizeof main);
	inc_put(&d, "a.yaml", "include: [b.yaml]\n", buf, sizeof buf);
	inc_put(&d, "b.yaml", "include: a.yaml\n", buf, sizeof buf);
	inc_fails(&d, main, "%R/b.yaml:1:10: include: %R/a.yaml is already "
			    "included at %R/main.yaml:5:10 (each file is read "
			    "once)");
	inc_put(&d, "b.yaml", "include: main.yaml\n", buf, sizeof buf);
	inc_fails(&d, main, "%R/b.yaml:1:10: include: %R/main.yaml is the "
			    "config itself (each file is read once)");
	inc_put(&d, "a.yaml", "", buf, sizeof buf);
	inc_put(&d, "b.yaml", "routes:\n" INC_ROUTE("b", 7002), buf,
		sizeof buf);
	inc_put(&d, "main.yaml",
		"routes:\n" INC_ROUTE("a", 7001)
		"include: [b.yaml, '[ab].yaml']\n",
		main, sizeof main);
#ifdef _WIN32
	/* [ is no wildcard on Windows: the literal name is missing. */
	snprintf(buf, sizeof buf, "%%R/main.yaml:5:19: include: cannot open "
		 "%%R/[ab].yaml: %s", strerror(ENOENT));
	inc_fails(&d, main, buf);
#else
	inc_fails(&d, main, "%R/main.yaml:5:19: include: %R/b.yaml is already "
			    "included at %R/main.yaml:5:11 (each file is read "
			    "once)");
#endif
	inc_end(&d);
}

/*
 * Patterns as each OS reads them.  "*.yam" finds no "x.yaml": Windows's
 * own matching also tries 8.3 short names (X~1.YAM), which sluice matches
 * again on the long name.  A wildcard in a folder: glob(3) expands it;
 * on Windows only the last part may hold one.
 */
static void test_include_patterns(void **state)
{
	struct incdir d;
	char main[1024], buf[1024], err[1024];
	sl_config *cfg = NULL;

	(void)state;
	inc_start(&d, "patterns");
	inc_dir(&d, "conf.d");
	inc_put(&d, "conf.d/x.yaml", "routes:\n" INC_ROUTE("x", 7002), buf,
		sizeof buf);
	inc_put(&d, "main.yaml",
		"routes:\n" INC_ROUTE("a", 7001)
		"include: [conf.d/*.yam, conf.d/?.yam, conf.d/X.YAM*]\n",
		main, sizeof main);
	if (sl_config_load(main, &cfg, err, sizeof err) != 0)
		fail_msg("%s", err);
#ifdef _WIN32
	/* X.YAM* is x.yaml on a file system that folds case. */
	assert_int_equal(cfg->nroutes, 2);
#else
	assert_int_equal(cfg->nroutes, 1);
#endif
	sl_config_free(cfg);
	inc_put(&d, "main.yaml",
		"routes:\n" INC_ROUTE("a", 7001) "include: c*.d/*.yaml\n",
		main, sizeof main);
#ifdef _WIN32
	inc_fails(&d, main, "%R/main.yaml:5:10: include: 'c*.d/*.yaml': on "
			    "Windows only the last part of a pattern may hold "
			    "* and ?");
#else
	if (sl_config_load(main, &cfg, err, sizeof err) != 0)
		fail_msg("%s", err);
	assert_int_equal(cfg->nroutes, 2);
	sl_config_free(cfg);
#endif
	inc_end(&d);
}

/* A check that refuses the files whose name ends in "-open.yaml". */
static int refuse_open(const char *path, char *err, size_t errlen)
{
	size_t n = strlen(path);

	if (n < 10 || strcmp(path + n - 10, "-open.yaml") != 0)
		return 0;
	snprintf(err, errlen, "config %s: writable by Users", path);
	return -1;
}

/*
 * Each included file passes the check a Windows service makes of its
 * config (who may write it: sl_service_check_conf, which test_service
 * shows), before it is read; here through a check of the test's own.
 */
static void test_include_check(void **state)
{
	struct incdir d;
	char main[1024], buf[1024], err[1024];
	sl_config *cfg = NULL;

	(void)state;
	inc_start(&d, "check");
	inc_put(&d, "a.yaml", "routes:\n" INC_ROUTE("x", 7002), buf,
		sizeof buf);
	inc_put(&d, "b-open.yaml", "routes: [\n", buf, sizeof buf);
	inc_put(&d, "main.yaml",
		"routes:\n" INC_ROUTE("a", 7001)
		"include: [a.yaml, '*-open.yaml']\n",
		main, sizeof main);
	sl_config_set_include_check(refuse_open);
	inc_fails(&d, main, "%R/main.yaml:5:19: include: config "
			    "%R/b-open.yaml: writable by Users");
	sl_config_set_include_check(NULL);
	/* Without the check the file is read (and its syntax fails). */
	assert_int_equal(sl_config_load(main, &cfg, err, sizeof err), -1);
	assert_non_null(strstr(err, "b-open.yaml:2:1: "));
	inc_end(&d);
}

/* Files included from included files: 8 levels, not 9. */
static void test_include_depth(void **state)
{
	struct incdir d;
	char main[1024], buf[1024], err[1024], name[32];
	sl_config *cfg = NULL;

	(void)state;
	inc_start(&d, "depth");
	inc_put(&d, "main.yaml",
		"routes:\n" INC_ROUTE("a", 7001) "include: d1.yaml\n", main,
		sizeof main);
	for (int i = 1; i <= 8; i++) {
		char text[64];

		snprintf(name, sizeof name, "d%d.yaml", i);
		snprintf(text, sizeof text, "include: d%d.yaml\n", i + 1);
		inc_put(&d, name, i < 8 ? text : "", buf, sizeof buf);
	}
	if (sl_config_load(main, &cfg, err, sizeof err) != 0)
		fail_msg("%s", err);
	assert_int_equal(cfg->nfiles, 9);
	sl_config_free(cfg);
	inc_put(&d, "d8.yaml", "include: d9.yaml\n", buf, sizeof buf);
	inc_put(&d, "d9.yaml", "", buf, sizeof buf);
	inc_fails(&d, main, "%R/d8.yaml:1:1: include: nested too deep (at "
			    "most 8 levels of files included by included "
			    "files)");
	inc_end(&d);
}

static void env_set(const char *name, const char *value)
{
#ifdef _WIN32
	assert_int_equal(_putenv_s(name, value != NULL ? value : ""), 0);
#else
	if (value != NULL)
		assert_int_equal(setenv(name, value, 1), 0);
	else
		assert_int_equal(unsetenv(name), 0);
#endif
}

/* Load text as x.yaml: 0 and the config, or -1 with the message. */
static int env_load(const char *text, sl_config **cfg, char *err,
		    size_t errlen)
{
	*cfg = NULL;
	return sl_config_load_string(text, strlen(text), "x.yaml", cfg, err,
				     errlen);
}

static void env_fails(const char *text, const char *want)
{
	char err[1024];
	sl_config *cfg;

	assert_int_equal(env_load(text, &cfg, err, sizeof err), -1);
	assert_null(cfg);
	assert_string_equal(err, want);
}

/*
 * ${VAR} in values: a list item, a mapping's value, inside other text;
 * $${ for a literal ${, a lone $ kept, an expanded value never expanded
 * again; keys stay as written.
 */
static void test_env_expand(void **state)
{
	static const char yaml[] =
		"user: 'a$${SL_T_PORT}$b$'\n"
		"group: \"${SL_T_ODD}\"\n"
		"routes:\n"
		"  - name: w${SL_T_ODD_NAME}b\n"
		"    listen:\n"
		"      - tcp://127.0.0.1:${SL_T_PORT}\n"
		"      - 'tcp://${SL_T_HOST}:9001'\n"
		"    upstreams:\n"
		"      - {address: 'tcp://${SL_T_HOST}:1${SL_T_PORT}'}\n";
	char err[1024];
	sl_config *cfg;

	(void)state;
	env_set("SL_T_PORT", "8080");
	env_set("SL_T_HOST", "127.0.0.2");
	env_set("SL_T_ODD", "${SL_T_PORT}");
	env_set("SL_T_ODD_NAME", "e");
	if (env_load(yaml, &cfg, err, sizeof err) != 0)
		fail_msg("%s", err);
	assert_string_equal(cfg->user, "a${SL_T_PORT}$b$");
	assert_string_equal(cfg->group, "${SL_T_PORT}");
	assert_string_equal(cfg->routes[0].name, "web");
	assert_string_equal(cfg->routes[0].listen[0].address,
			    "tcp://127.0.0.1:8080");
	assert_string_equal(cfg->routes[0].listen[1].address,
			    "tcp://127.0.0.2:9001");
	/* The position is the scalar's, as written. */
	assert_int_equal(cfg->routes[0].listen[1].mark.line, 7);
	assert_int_equal(cfg->routes[0].listen[1].mark.col, 9);
	assert_string_equal(cfg->routes[0].upstreams[0].address,
			    "tcp://127.0.0.2:18080");
	sl_config_free(cfg);
	/* Not in keys. */
	env_fails("${SL_T_PORT}: 1\n",
		  "x.yaml:1:1: unknown key '${SL_T_PORT}' at top level "
		  "(expected threads, thread_policy, max_connections, "
		  "drain_timeout, log_level, log, syslog_facility, pidfile, "
		  "user, group, access_log, allow, deny, resolve_interval, "
		  "admin, routes, include)");
	env_set("SL_T_UNSET", NULL);
}

/* A variable set empty expands to nothing. */
static void test_env_empty(void **state)
{
	static const char yaml[] = "routes:\n"
				   "  - name: a${SL_T_EMPTY}${SL_T_EMPTY}b\n"
				   "    listen: tcp://127.0.0.1:1\n"
				   "    upstreams: tcp://127.0.0.1:2\n";
	char err[1024];
	sl_config *cfg;

	(void)state;
#ifdef _WIN32
	/* The C runtime's _putenv_s() cannot set a variable empty: it
	 * removes it (Windows itself can, as an inherited environment
	 * shows, and _wgetenv() then gives ""). */
	skip();
#endif
	env_set("SL_T_EMPTY", "");
	if (env_load(yaml, &cfg, err, sizeof err) != 0)
		fail_msg("%s", err);
	assert_string_equal(cfg->routes[0].name, "ab");
	sl_config_free(cfg);
}

/* An unset variable and malformed references, at the scalar. */
static void test_env_errors(void **state)
{
	static const struct {
		const char *value, *want;
	} bad[] = {
		{ "a${SL_T_UNSET}b",
		  "x.yaml:1:7: environment variable SL_T_UNSET is not set (in "
		  "'a${SL_T_UNSET}b'; expected it set, or $${ for a literal "
		  "${)" },
		{ "${", "x.yaml:1:7: malformed variable in '${' (expected "
			"${NAME} with NAME of A-Z a-z 0-9 _ not starting with "
			"a digit, or $${ for a literal ${)" },
		{ "${1x}", "x.yaml:1:7: malformed variable in '${1x}' "
			   "(expected ${NAME} with NAME of A-Z a-z 0-9 _ not "
			   "starting with a digit, or $${ for a literal ${)" },
		{ "${A", "x.yaml:1:7: malformed variable in '${A' (expected "
			 "${NAME} with NAME of A-Z a-z 0-9 _ not starting with "
			 "a digit, or $${ for a literal ${)" },
		{ "${}", "x.yaml:1:7: malformed variable in '${}' (expected "
			 "${NAME} with NAME of A-Z a-z 0-9 _ not starting with "
			 "a digit, or $${ for a literal ${)" },
		{ "${A-B}", "x.yaml:1:7: malformed variable in '${A-B}' "
			    "(expected ${NAME} with NAME of A-Z a-z 0-9 _ not "
			    "starting with a digit, or $${ for a literal ${)" },
	};
	char text[256];

	(void)state;
	env_set("SL_T_UNSET", NULL);
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		snprintf(text, sizeof text, "user: '%s'\nroutes: []\n",
			 bad[i].value);
		env_fails(text, bad[i].want);
	}
	/* In a list item of an included-file pattern, and in a nested
	 * mapping's value. */
	env_fails("routes:\n  - name: a\n    listen: [x, '${SL_T_UNSET}']\n",
		  "x.yaml:3:17: environment variable SL_T_UNSET is not set (in "
		  "'${SL_T_UNSET}'; expected it set, or $${ for a literal ${)");
	env_fails("admin: {listen: '${SL_T_UNSET}'}\n",
		  "x.yaml:1:17: environment variable SL_T_UNSET is not set (in "
		  "'${SL_T_UNSET}'; expected it set, or $${ for a literal ${)");
}

/* What variables expand to counts toward the cap on the text of a
 * config: 600 references to 30,000 bytes pass 16 MiB.  (A Windows
 * variable holds at most 32,767 characters.) */
static void test_env_cap(void **state)
{
	size_t n = 600, o;
	char *big = malloc(30001), *text = malloc(n * 13 + 64);
	char err[1024];
	sl_config *cfg;

	(void)state;
	assert_non_null(big);
	assert_non_null(text);
	memset(big, 'b', 30000);
	big[30000] = '\0';
	env_set("SL_T_BIG", big);
	o = (size_t)sprintf(text, "user: \"");
	for (size_t i = 0; i < n; i++)
		o += (size_t)sprintf(text + o, "${SL_T_BIG}");
	sprintf(text + o, "\"\n");
	assert_int_equal(env_load(text, &cfg, err, sizeof err), -1);
	assert_string_equal(err, "x.yaml:1:7: too much text after expanding "
				 "variables (at most 16 MiB in all scalars)");
	/* Under the cap it expands (and is then too long for a user). */
	sprintf(text, "user: \"${SL_T_BIG}\"\n");
	assert_int_equal(env_load(text, &cfg, err, sizeof err), -1);
	assert_true(strstr(err, "has a bad length") != NULL);
	env_set("SL_T_BIG", NULL);
	free(big);
	free(text);
}

/* ---- exec: upstreams (issue 20) --------------------------------------------- */

static void test_exec_keys(void **state)
{
	char big[4200], y[4400];
	const sl_upstream_conf *uc;
	sl_config *cfg;

	(void)state;
	/* The command as a list, the default exec_timeout, no address; a
	 * name to look up in PATH; 0 and 1h; beside an address upstream. */
	cfg = load_route("", "[{exec: [/usr/bin/ssh, -W, \"db:5432\", "
			     "bastion]}, {exec: [cat], exec_timeout: 0}, "
			     "{exec: [/bin/cat], exec_timeout: 1h, weight: 2, "
			     "backup: true}, tcp://127.0.0.1:2]");
	uc = cfg->routes[0].upstreams;
	assert_int_equal(cfg->routes[0].nupstreams, 4);
	assert_int_equal(uc[0].nexec, 4);
	assert_string_equal(uc[0].exec[0], "/usr/bin/ssh");
	assert_string_equal(uc[0].exec[2], "db:5432");
	assert_string_equal(uc[0].exec[3], "bastion");
	assert_null(uc[0].exec[4]); /* NULL-ended, as execv takes it */
	assert_null(uc[0].address);
	assert_int_equal(uc[0].ep.kind, 0);
	assert_int_equal(uc[0].exec_timeout_ms, 5000);
	assert_string_equal(uc[1].exec[0], "cat");
	assert_int_equal(uc[1].exec_timeout_ms, 0);
	assert_int_equal(uc[2].exec_timeout_ms, 3600000);
	assert_int_equal(uc[2].weight, 2);
	assert_int_equal(uc[2].backup, 1);
	assert_null(uc[3].exec);
	sl_config_free(cfg);

	/* Windows' forms of an absolute path; 64 arguments of 4096 bytes. */
	cfg = load_route("", "[{exec: ['C:\\bin\\relay.exe']}, "
			     "{exec: ['\\\\srv\\share\\x.exe', a]}]");
	assert_string_equal(cfg->routes[0].upstreams[0].exec[0],
			    "C:\\bin\\relay.exe");
	sl_config_free(cfg);
	memset(big, 'a', 4096);
	big[4096] = '\0';
	{
		char err[512];
		int n = snprintf(y, sizeof y,
				 "routes:\n  - name: r\n    listen: "
				 "tcp://127.0.0.1:1\n    upstreams: "
				 "{exec: [/bin/echo, %s]}\n",
				 big);

		assert_int_equal(sl_config_load_string(y, (size_t)n, "k", &cfg,
						       err, sizeof err),
				 0);
	}
	assert_int_equal(strlen(cfg->routes[0].upstreams[0].exec[1]), 4096);
	sl_config_free(cfg);

	/* Each error at its line:col. */
	route_fails("", "{exec: []}",
		    "4:23: exec: empty list (expected a list of 1-64 strings: "
		    "an absolute path or a name found in PATH, then the "
		    "arguments)");
	route_fails("", "{exec: /bin/cat}",
		    "4:23: exec is a scalar (expected a list of 1-64 "
		    "strings: an absolute path or a name found in PATH, then "
		    "the arguments)");
	route_fails("", "{exec: [bin/cat]}",
		    "4:24: exec: 'bin/cat' is a relative path (expected an "
		    "absolute path, or a name found in PATH)");
	route_fails("", "{exec: [/bin/cat, '']}",
		    "4:34: exec: '' has a bad length (expected 1-4096 bytes "
		    "without control characters)");
	route_fails("", "{exec: [/bin/cat], address: tcp://127.0.0.1:2}",
		    "4:17: exec and address in one upstream (expected one of "
		    "them)");
	route_fails("", "{address: tcp://127.0.0.1:2, exec_timeout: 1s}",
		    "4:45: exec_timeout is only for an exec: upstream");
	route_fails("", "{exec: [/bin/cat], exec_timeout: 2h}",
		    "4:49: exec_timeout: '2h' is out of range (expected a "
		    "duration 0-1h such as 5s, 0 = kill at once)");
	route_fails("", "{exec: [/bin/cat], send_proxy: v2}",
		    "4:35: send_proxy is not for an exec: upstream (expected "
		    "it only with an address)");
#ifdef SL_HAVE_TLS
	route_fails("", "{exec: [/bin/cat], tls: {}}",
		    "4:35: tls is not for an exec: upstream (expected it "
		    "only with an address)");
#endif
	route_fails("", "{exec: [/bin/cat], source: 127.0.0.2}",
		    "4:35: source is not for an exec: upstream (expected it "
		    "only with an address)");
	memset(big, 0, sizeof big);
	strcpy(y, "{exec: [/bin/echo");
	for (int i = 0; i < 64; i++)
		strcat(y, ", x");
	strcat(y, "]}");
	route_fails("", y, "4:23: exec: 65 entries (expected at most 64)");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_duration),
		cmocka_unit_test(test_parse_size),
		cmocka_unit_test(test_fields),
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_feature_fields),
		cmocka_unit_test(test_feature_defaults),
		cmocka_unit_test(test_admin_port),
		cmocka_unit_test(test_attempts_cap),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_many_routes),
		cmocka_unit_test(test_node_cap),
		cmocka_unit_test(test_empty_and_odd_input),
		cmocka_unit_test(test_file_errors),
		cmocka_unit_test(test_free_null),
		cmocka_unit_test(test_good_fixtures),
		cmocka_unit_test(test_sample_config),
		cmocka_unit_test(test_bad_fixtures),
		cmocka_unit_test(test_keepalive_keys),
		cmocka_unit_test(test_source_keys),
		cmocka_unit_test(test_exec_keys),
#ifdef SL_HAVE_TLS
		cmocka_unit_test(test_tls_fields),
		cmocka_unit_test(test_tls_good_fixtures),
		cmocka_unit_test(test_tls_bad_fixtures),
#else
		cmocka_unit_test(test_tls_absent),
#endif
		cmocka_unit_test(test_include_order),
		cmocka_unit_test(test_include_routes_only),
		cmocka_unit_test(test_include_errors),
		cmocka_unit_test(test_include_twice),
		cmocka_unit_test(test_include_patterns),
		cmocka_unit_test(test_include_check),
		cmocka_unit_test(test_include_depth),
		cmocka_unit_test(test_env_expand),
		cmocka_unit_test(test_env_empty),
		cmocka_unit_test(test_env_errors),
		cmocka_unit_test(test_env_cap),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
