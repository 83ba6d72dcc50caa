/*
 * A Windows command line from an argv (sl_win_cmdline in net.h): the
 * inverse of how the Microsoft C runtime and CommandLineToArgvW split one,
 * so the program receives exactly the arguments of the config.  Pure
 * code, built on every OS so the rules are tested everywhere; under wine
 * the tests check it against CommandLineToArgvW itself.
 *
 * The rules (the C runtime's "Parsing C command-line arguments"):
 * - an argument without a space, a tab, a newline, a vertical tab or a
 *   quote, and not empty, is written as it is;
 * - otherwise it is quoted; inside, n backslashes before a quote become
 *   2n+1 backslashes and the quote, n backslashes at the end become 2n
 *   (the closing quote follows), and other backslashes stay as they are;
 * - the program name (argv[0]) is read by other rules: no escapes, a
 *   quote only opens or closes.  It is quoted when it has a space or a
 *   tab, and a quote in it cannot be written (no file name has one).
 *
 * Also, at the end, what both exec_*.c files share: the line splitter
 * they read a child's stderr with (sl_exec_lines_take) and their list
 * of children (sl_exec_link_add).
 */
#include "net.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "log.h"

/* Append c to buf at *n if it fits (one byte kept for the NUL). */
static void put(char *buf, size_t len, size_t *n, char c)
{
	if (*n + 1 < len)
		buf[*n] = c;
	(*n)++;
}

static void put_run(char *buf, size_t len, size_t *n, char c, size_t k)
{
	while (k-- > 0)
		put(buf, len, n, c);
}

static void put_arg(char *buf, size_t len, size_t *n, const char *a)
{
	size_t slashes = 0;

	if (a[0] != '\0' && strpbrk(a, " \t\n\v\"") == NULL) {
		while (*a != '\0')
			put(buf, len, n, *a++);
		return;
	}
	put(buf, len, n, '"');
	for (; *a != '\0'; a++) {
		if (*a == '\\') {
			slashes++;
			continue;
		}
		if (*a == '"') {
			put_run(buf, len, n, '\\', 2 * slashes + 1);
		} else {
			put_run(buf, len, n, '\\', slashes);
		}
		slashes = 0;
		put(buf, len, n, *a);
	}
	put_run(buf, len, n, '\\', 2 * slashes);
	put(buf, len, n, '"');
}

int sl_win_cmdline(char *const *argv, char *buf, size_t len)
{
	size_t n = 0;
	int quote;

	if (argv[0] == NULL || argv[0][0] == '\0' ||
	    strchr(argv[0], '"') != NULL)
		return -EINVAL;
	quote = strpbrk(argv[0], " \t") != NULL;
	if (quote)
		put(buf, len, &n, '"');
	for (const char *p = argv[0]; *p != '\0'; p++)
		put(buf, len, &n, *p);
	if (quote)
		put(buf, len, &n, '"');
	for (size_t i = 1; argv[i] != NULL; i++) {
		put(buf, len, &n, ' ');
		put_arg(buf, len, &n, argv[i]);
	}
	if (len > 0)
		buf[n < len ? n : len - 1] = '\0';
	if (n >= len)
		return -ENAMETOOLONG;
	return (int)n;
}

/* ---- a child's stderr, a line at a time ---------------------------------- */

#define LINE_MS (1000 / SL_EXEC_LINES_PER_S)

static void dropped_emit(sl_exec_lines *l, const char *name)
{
	if (l->dropped == 0)
		return;
	sl_warn("%s: stderr: %lu line%s dropped (more than %d at once or %d "
		"a second)",
		name, l->dropped, l->dropped == 1 ? "" : "s",
		SL_EXEC_LINES_BURST, SL_EXEC_LINES_PER_S);
	l->dropped = 0;
}

/* The line in l->line to the log, if the limit lets it (GCRA: each line
 * takes LINE_MS of the clock; a burst may run BURST lines ahead). */
static void line_emit(sl_exec_lines *l, const char *name, uint64_t now)
{
	char esc[4 * SL_EXEC_LINE_MAX + 1];
	uint64_t tat = l->tat > now ? l->tat : now;

	if (tat - now > (uint64_t)(SL_EXEC_LINES_BURST - 1) * LINE_MS) {
		l->dropped++;
		l->len = 0;
		return;
	}
	l->tat = tat + LINE_MS;
	dropped_emit(l, name);
	sl_log_escape(esc, sizeof esc, l->line, l->len);
	sl_info("%s: stderr: %s%s", name, esc, l->cut ? " [cut]" : "");
	l->len = 0;
}

void sl_exec_lines_take(sl_exec_lines *l, const char *name, const char *p,
			size_t n, uint64_t now)
{
	while (n > 0) {
		const char *nl = memchr(p, '\n', n);
		size_t k = nl != NULL ? (size_t)(nl - p) : n;

		if (!l->cut) {
			size_t room = sizeof l->line - l->len;
			size_t take = k < room ? k : room;

			memcpy(l->line + l->len, p, take);
			l->len += take;
			if (take < k) {
				/* Too long: what fits goes now, the rest of
				 * the line is dropped. */
				l->cut = 1;
				line_emit(l, name, now);
			}
		}
		if (nl == NULL)
			return;
		if (!l->cut || l->len > 0) {
			if (l->len > 0 && l->line[l->len - 1] == '\r')
				l->len--;
			line_emit(l, name, now);
		}
		l->cut = 0;
		p = nl + 1;
		n -= k + 1;
	}
}

void sl_exec_lines_end(sl_exec_lines *l, const char *name, uint64_t now)
{
	if (l->len > 0)
		line_emit(l, name, now);
	dropped_emit(l, name);
}

/* ---- the children not yet freed ------------------------------------------- */

static pthread_mutex_t links_lock = PTHREAD_MUTEX_INITIALIZER;
static sl_exec_link *links;

void sl_exec_link_add(sl_exec_link *l, sl_exec *x)
{
	pthread_mutex_lock(&links_lock);
	l->x = x;
	l->prev = NULL;
	l->next = links;
	if (links != NULL)
		links->prev = l;
	links = l;
	pthread_mutex_unlock(&links_lock);
}

void sl_exec_link_del(sl_exec_link *l)
{
	pthread_mutex_lock(&links_lock);
	if (l->prev != NULL)
		l->prev->next = l->next;
	else
		links = l->next;
	if (l->next != NULL)
		l->next->prev = l->prev;
	pthread_mutex_unlock(&links_lock);
}

sl_exec_link *sl_exec_links_take(void)
{
	sl_exec_link *l;

	pthread_mutex_lock(&links_lock);
	l = links;
	links = NULL;
	pthread_mutex_unlock(&links_lock);
	return l;
}
