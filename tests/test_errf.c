/*
 * sl_errf(), which every module that reports through a caller's buffer
 * returns through: the code comes back whatever it is, the text is cut
 * and terminated to the buffer, and no buffer (NULL, or 0 bytes) is
 * never written.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "errf.h"

static void test_code_and_text(void **state)
{
	char err[64];

	(void)state;
	assert_int_equal(sl_errf(err, sizeof err, -1, "port %d of %s", 70000,
				 "tcp"),
			 -1);
	assert_string_equal(err, "port 70000 of tcp");
	assert_int_equal(sl_errf(err, sizeof err, -EINVAL, "x"), -EINVAL);
	assert_string_equal(err, "x");
	assert_int_equal(sl_errf(err, sizeof err, 0, "%s", ""), 0);
	assert_string_equal(err, "");
}

static void test_cut(void **state)
{
	char err[8];

	(void)state;
	memset(err, 'z', sizeof err);
	assert_int_equal(sl_errf(err, 6, -ENOMEM, "%s", "abcdefgh"), -ENOMEM);
	assert_string_equal(err, "abcde");
	/* Nothing past the length given. */
	assert_int_equal(err[6], 'z');
	assert_int_equal(err[7], 'z');
}

static void test_no_buffer(void **state)
{
	char err[4] = "abc";

	(void)state;
	assert_int_equal(sl_errf(NULL, 0, -2, "%s", "lost"), -2);
	assert_int_equal(sl_errf(NULL, 64, -3, "%s", "lost"), -3);
	assert_int_equal(sl_errf(err, 0, -4, "%s", "lost"), -4);
	assert_string_equal(err, "abc");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_code_and_text),
		cmocka_unit_test(test_cut),
		cmocka_unit_test(test_no_buffer),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
