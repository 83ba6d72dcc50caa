/*
 * exec: upstreams' helpers that need no process: the Windows command line
 * made from an argv (sl_win_cmdline), by a table of the C runtime's
 * quoting rules on every OS, and under Windows (wine included) read back
 * by CommandLineToArgvW, the splitting the rules invert.  The commands
 * themselves are tested end to end in test_features.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "net/net.h"

#ifdef _WIN32
#include <windows.h>
#include <shellapi.h>
#endif

struct cmdline_case {
	const char *argv[6];
	const char *want; /* NULL: the error in err */
	int err;
};

static const struct cmdline_case cases[] = {
	/* As they are: no space, tab, newline, quote; backslashes stay. */
	{ { "cat", NULL }, "cat", 0 },
	{ { "sluice.exe", "relay", "pipe:\\\\.\\pipe\\openssh-ssh-agent",
	    NULL },
	  "sluice.exe relay pipe:\\\\.\\pipe\\openssh-ssh-agent", 0 },
	{ { "p", "a\\b", "c:\\dir\\", NULL }, "p a\\b c:\\dir\\", 0 },
	/* Quoted: a space, a tab, an empty argument. */
	{ { "p", "a", "b c", NULL }, "p a \"b c\"", 0 },
	{ { "p", "tab\there", NULL }, "p \"tab\there\"", 0 },
	{ { "p", "", "x", NULL }, "p \"\" x", 0 },
	/* A quote: escaped, and the backslashes before it doubled, plus
	 * one: a\"b is "a\\\"b". */
	{ { "p", "a\"b", NULL }, "p \"a\\\"b\"", 0 },
	{ { "p", "a\\\"b", NULL }, "p \"a\\\\\\\"b\"", 0 },
	{ { "p", "\"", NULL }, "p \"\\\"\"", 0 },
	/* Backslashes at the end of a quoted argument doubled (the closing
	 * quote follows them); elsewhere kept. */
	{ { "p", "c:\\dir with space\\", NULL },
	  "p \"c:\\dir with space\\\\\"", 0 },
	{ { "p", "a b\\\\", NULL }, "p \"a b\\\\\\\\\"", 0 },
	{ { "p", "a\\\\b c", NULL }, "p \"a\\\\b c\"", 0 },
	/* The program: quoted for a space, never escaped. */
	{ { "C:\\Program Files\\x\\x.exe", "-y", NULL },
	  "\"C:\\Program Files\\x\\x.exe\" -y", 0 },
	/* A program name no command line can carry. */
	{ { "a\"b", NULL }, NULL, -EINVAL },
	{ { "", "x", NULL }, NULL, -EINVAL },
};

#ifdef _WIN32
/* cmd read back as CommandLineToArgvW splits it: argv exactly. */
static void check_split(const char *cmd, const char *const *argv)
{
	wchar_t wcmd[1024];
	wchar_t **wv;
	int n = 0, want = 0;

	while (argv[want] != NULL)
		want++;
	assert_true(MultiByteToWideChar(CP_UTF8, 0, cmd, -1, wcmd, 1024) > 0);
	wv = CommandLineToArgvW(wcmd, &n);
	assert_non_null(wv);
	assert_int_equal(n, want);
	for (int i = 0; i < n; i++) {
		char back[1024];

		assert_true(WideCharToMultiByte(CP_UTF8, 0, wv[i], -1, back,
						sizeof back, NULL, NULL) > 0);
		if (strcmp(back, argv[i]) != 0)
			fail_msg("%s: argument %d is '%s', not '%s'", cmd, i,
				 back, argv[i]);
	}
	LocalFree(wv);
}
#endif

static void test_cmdline_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		const struct cmdline_case *c = &cases[i];
		char buf[512];
		int r = sl_win_cmdline((char *const *)c->argv, buf, sizeof buf);

		if (c->want == NULL) {
			assert_int_equal(r, c->err);
			continue;
		}
		if (r < 0 || strcmp(buf, c->want) != 0)
			fail_msg("case %u: got '%s' (%d), want '%s'",
				 (unsigned)i, buf, r, c->want);
		assert_int_equal(r, (int)strlen(c->want));
#ifdef _WIN32
		check_split(buf, c->argv);
#endif
	}
}

/* A line that does not fit: -ENAMETOOLONG, and buf still ends in a NUL
 * within its length; one that just fits is whole. */
static void test_cmdline_length(void **state)
{
	const char *argv[] = { "prog", "a b", NULL };
	char buf[16];

	(void)state;
	memset(buf, 'z', sizeof buf);
	assert_int_equal(sl_win_cmdline((char *const *)argv, buf, 10),
			 -ENAMETOOLONG);
	assert_int_equal(buf[9], '\0');
	assert_int_equal(buf[10], 'z');
	assert_int_equal(sl_win_cmdline((char *const *)argv, buf, 11), 10);
	assert_string_equal(buf, "prog \"a b\"");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cmdline_table),
		cmocka_unit_test(test_cmdline_length),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
