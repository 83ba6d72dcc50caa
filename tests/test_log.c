/*
 * Unit tests of the log: what a peer could put in a line is escaped in
 * every format (text lines, text and JSON access records), and log files
 * are never opened through a link or when they are not regular files.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#ifndef _WIN32
#include <syslog.h>
#endif

#include <cmocka.h>

#include "log.h"

static void expect_escaped(const char *in, size_t len, const char *want)
{
	char out[256];

	sl_log_escape(out, sizeof out, in, len);
	assert_string_equal(out, want);
}

static void test_escape(void **state)
{
	(void)state;
	/* plain text, and valid UTF-8 of 2, 3 and 4 bytes, pass as they are */
	expect_escaped("unix:/run/a b", 13, "unix:/run/a b");
	expect_escaped("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x90\x9f", 14,
		       "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x90\x9f");
	/* the ones that end or forge a line, or drive a terminal */
	expect_escaped("a\nb\rc\td", 7, "a\\x0ab\\x0dc\\x09d");
	expect_escaped("\x1b[2J\x7f", 5, "\\x1b[2J\\x7f");
	expect_escaped("a\0b", 3, "a\\x00b");
	/* C1 controls (U+009B: CSI) and U+2028/U+2029 */
	expect_escaped("\xc2\x9b\xc2\x85", 4, "\\xc2\\x9b\\xc2\\x85");
	expect_escaped("\xe2\x80\xa8\xe2\x80\xa9", 6,
		       "\\xe2\\x80\\xa8\\xe2\\x80\\xa9");
	/* not UTF-8: stray continuation, overlong, surrogate, too high,
	 * cut short, bytes that never begin a character */
	expect_escaped("\x80x", 2, "\\x80x");
	expect_escaped("\xc0\xaf", 2, "\\xc0\\xaf");
	expect_escaped("\xe0\x80\xaf", 3, "\\xe0\\x80\\xaf");
	expect_escaped("\xed\xa0\x80", 3, "\\xed\\xa0\\x80");
	expect_escaped("\xf4\x90\x80\x80", 4, "\\xf4\\x90\\x80\\x80");
	expect_escaped("\xe2\x82", 2, "\\xe2\\x82");
	expect_escaped("\xfe\xff", 2, "\\xfe\\xff");
}

static void test_escape_truncates_whole(void **state)
{
	char out[8];

	(void)state;
	/* 7 bytes of room: "ab" and one escape; the next would be cut */
	sl_log_escape(out, sizeof out, "ab\n\ncd", 6);
	assert_string_equal(out, "ab\\x0a");
	/* a character is not cut either */
	sl_log_escape(out, 4, "ab\xc3\xa9", 4);
	assert_string_equal(out, "ab");
	sl_log_escape(out, 1, "abc", 3);
	assert_string_equal(out, "");
}

/* The facility names give syslog.h's codes; on Windows 0 each (the
 * Event Log has none), so a config checks alike on every OS. */
static void test_facility_codes(void **state)
{
	static const char *const names[] = {
		"daemon", "user",   "local0", "local1", "local2",
		"local3", "local4", "local5", "local6", "local7",
	};
#ifndef _WIN32
	static const int codes[] = {
		LOG_DAEMON, LOG_USER,	LOG_LOCAL0, LOG_LOCAL1, LOG_LOCAL2,
		LOG_LOCAL3, LOG_LOCAL4, LOG_LOCAL5, LOG_LOCAL6, LOG_LOCAL7,
	};
#endif
	int code;

	(void)state;
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
		code = -1;
		assert_int_equal(sl_log_facility_parse(names[i], &code), 0);
#ifndef _WIN32
		assert_int_equal(code, codes[i]);
#else
		assert_int_equal(code, 0);
#endif
	}
	assert_int_equal(sl_log_facility_parse("kern", &code), -1);
	assert_int_equal(sl_log_facility_parse("Daemon", &code), -1);
}

#ifndef _WIN32
static char dir[] = "/tmp/sl-test-log-XXXXXX";

static char *path_in(const char *name)
{
	size_t n = strlen(dir) + strlen(name) + 2;
	char *p = malloc(n);

	assert_non_null(p);
	snprintf(p, n, "%s/%s", dir, name);
	return p;
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "rb");
	char *buf = calloc(1, 65536);
	size_t n;

	assert_non_null(f);
	assert_non_null(buf);
	n = fread(buf, 1, 65535, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

static unsigned lines(const char *text)
{
	unsigned n = 0;

	for (; *text != '\0'; text++)
		n += *text == '\n';
	return n;
}

static int setup(void **state)
{
	(void)state;
	return mkdtemp(dir) == NULL ? -1 : 0;
}

static int teardown(void **state)
{
	char cmd[128];

	(void)state;
	sl_log_use_stderr();
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

/* A Unix client named "x\n<forged line>" (what a peer can bind to). */
static const char forged[] =
	"unix:/tmp/x\nsluice[1]: error: forged \xff\xc2\x9b line";

static void test_text_line_escaped(void **state)
{
	char *path = path_in("text.log"), *text;

	(void)state;
	assert_int_equal(sl_log_use_file(path), 0);
	sl_log(SL_LOG_INFO, "client %s", forged);
	sl_log(SL_LOG_INFO, "next");
	sl_log_use_stderr();
	text = slurp(path);
	assert_int_equal(lines(text), 2);
	/* a file's lines begin with the UTC time: 2026-12-07T13:11:03.042Z */
	assert_true(text[4] == '-' && text[10] == 'T' && text[19] == '.' &&
		    text[23] == 'Z' && text[24] == ' ');
	assert_memory_equal(text + 25, "sluice[", 7);
	assert_non_null(strstr(text, "client unix:/tmp/x\\x0asluice[1]: "
				     "error: forged \\xff\\xc2\\x9b line\n"));
	assert_null(strstr(text, "\nsluice[1]: error: forged"));
	free(text);
	free(path);
}

static void access_rec(void)
{
	struct sl_access_rec r = {
		.route = "web",
		.client = forged,
		.upstream = "tcp://127.0.0.1:1",
		.reason = "done",
		.error = "a\nb",
		.bytes_in = 1,
		.bytes_out = 2,
		.duration_ms = 3,
	};

	sl_access(&r);
}

static void test_access_text_escaped(void **state)
{
	char *path = path_in("access.log"), *text;

	(void)state;
	assert_int_equal(sl_access_open(path, 0), 0);
	access_rec();
	assert_int_equal(sl_access_open("off", 0), 0);
	text = slurp(path);
	assert_int_equal(lines(text), 1);
	assert_non_null(strstr(text, "client=unix:/tmp/x\\x0asluice[1]: "
				     "error: forged \\xff\\xc2\\x9b line "));
	assert_non_null(strstr(text, "error=\"a\\x0ab\"\n"));
	free(text);
	free(path);
}

static void test_access_json_escaped(void **state)
{
	char *path = path_in("access.json"), *text;

	(void)state;
	assert_int_equal(sl_access_open(path, 1), 0);
	access_rec();
	assert_int_equal(sl_access_open("off", 0), 0);
	text = slurp(path);
	assert_int_equal(lines(text), 1);
	assert_memory_equal(text, "{\"time\":\"", 9);
	assert_true(text[9 + 4] == '-' && text[9 + 10] == 'T' &&
		    text[9 + 23] == 'Z');
	assert_memory_equal(text + 9 + 24, "\",\"route\":\"web\"", 15);
	/* JSON's own escape for C0 controls; the rest as the text format
	 * shows it (its backslash escaped), so the line is valid UTF-8 */
	assert_non_null(strstr(text, "\"client\":\"unix:/tmp/x\\u000asluice[1]: "
				     "error: forged \\\\xff\\\\xc2\\\\x9b "
				     "line\""));
	assert_non_null(strstr(text, "\"error\":\"a\\u000ab\"}\n"));
	free(text);
	free(path);
}

/* Access records through the log itself (access_log unset) too. */
static void test_access_in_log_escaped(void **state)
{
	char *path = path_in("both.log"), *text;

	(void)state;
	assert_int_equal(sl_log_use_file(path), 0);
	assert_int_equal(sl_access_open(NULL, 0), 0);
	access_rec();
	assert_int_equal(sl_access_open(NULL, 1), 0);
	access_rec();
	assert_int_equal(sl_access_open("off", 0), 0);
	sl_log_use_stderr();
	text = slurp(path);
	assert_int_equal(lines(text), 2);
	assert_null(strstr(text, "\nsluice[1]: error: forged"));
	free(text);
	free(path);
}

/* A link in the log's directory never leads a root-owned write. */
static void test_file_not_through_link(void **state)
{
	char *victim = path_in("victim"), *link = path_in("link.log");
	char *text;
	FILE *f;

	(void)state;
	f = fopen(victim, "w");
	assert_non_null(f);
	fputs("precious\n", f);
	fclose(f);
	assert_int_equal(symlink(victim, link), 0);
	assert_int_equal(sl_log_use_file(link), -ELOOP);
	assert_int_equal(sl_access_open(link, 0), -ELOOP);
	assert_string_equal(sl_log_open_strerror(-ELOOP),
			    "is a symbolic link; not following it");

	/* reopening (log rotation) does not follow one either, and keeps
	 * the old file */
	{
		char *good = path_in("good.log");

		assert_int_equal(sl_log_use_file(good), 0);
		assert_int_equal(unlink(good), 0);
		assert_int_equal(symlink(victim, good), 0);
		assert_int_equal(sl_log_reopen(), -ELOOP);
		sl_log(SL_LOG_ERROR, "attacker text");
		sl_log_use_stderr();
		free(good);
	}
	text = slurp(victim);
	assert_string_equal(text, "precious\n");
	free(text);
	free(victim);
	free(link);
}

static void test_file_must_be_regular(void **state)
{
	char *fifo = path_in("fifo.log");

	(void)state;
	assert_int_equal(mkfifo(fifo, 0600), 0);
	/* no reader: the open must not wait for one, nor succeed */
	assert_true(sl_log_use_file(fifo) < 0);
	assert_true(sl_access_open(fifo, 0) < 0);
	/* a reader: opens, then is refused as no regular file */
	{
		int rd = open(fifo, O_RDONLY | O_NONBLOCK);

		assert_true(rd >= 0);
		assert_int_equal(sl_log_use_file(fifo), -SL_LOG_ENOTREG);
		assert_int_equal(sl_access_open(fifo, 0), -SL_LOG_ENOTREG);
		close(rd);
	}
	assert_int_equal(sl_log_use_file(dir), -EISDIR);
	assert_string_equal(sl_log_open_strerror(-SL_LOG_ENOTREG),
			    "is not a regular file");
	free(fifo);
}
#endif

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_escape),
		cmocka_unit_test(test_escape_truncates_whole),
		cmocka_unit_test(test_facility_codes),
#ifndef _WIN32
		cmocka_unit_test(test_text_line_escaped),
		cmocka_unit_test(test_access_text_escaped),
		cmocka_unit_test(test_access_json_escaped),
		cmocka_unit_test(test_access_in_log_escaped),
		cmocka_unit_test(test_file_not_through_link),
		cmocka_unit_test(test_file_must_be_regular),
#endif
	};

#ifndef _WIN32
	return cmocka_run_group_tests_name("log", tests, setup, teardown);
#else
	return cmocka_run_group_tests_name("log", tests, NULL, NULL);
#endif
}
