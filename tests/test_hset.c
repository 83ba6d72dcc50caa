/*
 * The hash set under the config's uniqueness checks: FNV-1a against the
 * published test vectors, finding what was added and nothing else across
 * many growths, the caller's equality deciding among equal hashes (down to
 * every item sharing one hash), and the empty and freed states.
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

#include "hset.h"

static uint64_t str_hash(const char *s)
{
	return sl_fnv1a(SL_FNV1A_INIT, s, strlen(s));
}

static int str_eq(const void *item, const void *key)
{
	return strcmp(item, key) == 0;
}

/* Vectors of the FNV reference (Landon Curt Noll's test suite). */
static void test_fnv1a_vectors(void **state)
{
	(void)state;
	assert_true(str_hash("") == UINT64_C(0xcbf29ce484222325));
	assert_true(str_hash("a") == UINT64_C(0xaf63dc4c8601ec8c));
	assert_true(str_hash("foobar") == UINT64_C(0x85944171f73967e8));
	/* Parts fed one after the other hash as their concatenation. */
	assert_true(sl_fnv1a(sl_fnv1a(SL_FNV1A_INIT, "foo", 3), "bar", 3) ==
		    str_hash("foobar"));
}

static void test_empty(void **state)
{
	sl_hset h = SL_HSET_INIT;

	(void)state;
	assert_null(sl_hset_find(&h, str_hash("x"), str_eq, "x"));
	assert_int_equal(sl_hset_add(&h, 1, NULL), -EINVAL);
	assert_int_equal(h.n, 0);
	sl_hset_free(&h);
	sl_hset_free(&h); /* twice is fine, and so is NULL */
	sl_hset_free(NULL);
}

#define MANY 100000

/* Names like a generated config's: "r0" .. "r99999", which differ in a
 * few low bits only. */
static void test_many(void **state)
{
	sl_hset h = SL_HSET_INIT;
	char (*name)[16] = calloc(MANY, sizeof *name);
	char key[16];

	(void)state;
	assert_non_null(name);
	for (size_t i = 0; i < MANY; i++) {
		snprintf(name[i], sizeof name[i], "r%zu", i);
		assert_null(sl_hset_find(&h, str_hash(name[i]), str_eq,
					 name[i]));
		assert_int_equal(sl_hset_add(&h, str_hash(name[i]), name[i]),
				 0);
	}
	assert_int_equal(h.n, MANY);
	assert_true(h.cap >= 2 * h.n); /* never more than half full */
	for (size_t i = 0; i < MANY; i++) {
		/* A copy: found by value, and the item is the one added. */
		snprintf(key, sizeof key, "r%zu", i);
		assert_ptr_equal(sl_hset_find(&h, str_hash(key), str_eq, key),
				 name[i]);
	}
	snprintf(key, sizeof key, "r%d", MANY);
	assert_null(sl_hset_find(&h, str_hash(key), str_eq, key));
	assert_null(sl_hset_find(&h, str_hash("R1"), str_eq, "R1"));
	sl_hset_free(&h);
	assert_int_equal(h.n, 0);
	assert_null(sl_hset_find(&h, str_hash("r1"), str_eq, "r1"));
	free(name);
}

/* The set's idea of "equal" is the caller's: here case does not count,
 * so the hash must not count it either. */
static char lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static uint64_t case_hash(const char *s)
{
	uint64_t h = SL_FNV1A_INIT;

	for (; *s != '\0'; s++) {
		char c = lower(*s);

		h = sl_fnv1a(h, &c, 1);
	}
	return h;
}

static int case_eq(const void *item, const void *key)
{
	const char *a = item, *b = key;

	for (; *a != '\0' && *b != '\0'; a++, b++)
		if (lower(*a) != lower(*b))
			return 0;
	return *a == *b;
}

static void test_caller_equality(void **state)
{
	sl_hset h = SL_HSET_INIT;
	char web[] = "Web";

	(void)state;
	assert_int_equal(sl_hset_add(&h, case_hash(web), web), 0);
	assert_ptr_equal(sl_hset_find(&h, case_hash("WEB"), case_eq, "WEB"),
			 web);
	assert_null(sl_hset_find(&h, case_hash("webs"), case_eq, "webs"));
	sl_hset_free(&h);
}

/* Every item under one hash: each probe walks the whole run, and only
 * the equality tells items apart.  Slow, but right. */
static void test_all_collide(void **state)
{
	sl_hset h = SL_HSET_INIT;
	static char name[300][8];
	char key[8];

	(void)state;
	for (size_t i = 0; i < 300; i++) {
		snprintf(name[i], sizeof name[i], "%zu", i);
		assert_int_equal(sl_hset_add(&h, 42, name[i]), 0);
	}
	for (size_t i = 0; i < 300; i++) {
		snprintf(key, sizeof key, "%zu", i);
		assert_ptr_equal(sl_hset_find(&h, 42, str_eq, key), name[i]);
	}
	assert_null(sl_hset_find(&h, 42, str_eq, "300"));
	/* Same text, other hash: not found (equal items must hash alike). */
	assert_null(sl_hset_find(&h, 43, str_eq, "7"));
	sl_hset_free(&h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fnv1a_vectors),
		cmocka_unit_test(test_empty),
		cmocka_unit_test(test_many),
		cmocka_unit_test(test_caller_equality),
		cmocka_unit_test(test_all_collide),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
