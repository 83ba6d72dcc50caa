/*
 * Config loading in two passes.  Pass one (yamltree.c) turns libyaml's
 * events into a small tree of nodes with their positions, refusing what the
 * schema never needs (anchors, aliases, unknown tags, several documents) so
 * pass two sees plain data.  Pass two, here, walks the tree against
 * per-mapping key tables and fills a struct sl_config.  Both stop at the
 * first error, so there is exactly one message; a YAML syntax error
 * anywhere wins over schema errors, which come in document order.
 *
 * To add a key: add a row to the table of its mapping, with its type and
 * the offset of its field (set_key() reads every type, with the same
 * messages for every key of a type); only a value no type says needs a
 * function of its own.  The unknown-key message lists the table, so it
 * stays right by itself.
 */
#include "config.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "confsys.h"
#include "errf.h"
#include "hset.h"
#include "log.h"
#include "path.h"
#include "yamltree.h"

/* A config is read into memory whole; nothing sane comes near this. */
#define CONF_MAX_BYTES (16u * 1024 * 1024)
/* Timers add a duration to the loop clock: keep far from overflow. */
#define DURATION_MAX_MS (365ull * 24 * 3600 * 1000)
#define ROUTE_NAME_MAX 64
#define USER_NAME_MAX 256
#define SECURITY_MAX 4096
#define FILE_PATH_MAX 4095
#define ATTEMPTS_MAX 16
/* Files included from included files, and so on: this many levels. */
#define INCLUDE_DEPTH_MAX 8

/* ---- durations and sizes ---------------------------------------------- */

/* Decimal digits only, the whole of [s, end); 0 or -1 (none, overflow). */
static int parse_digits(const char *s, const char *end, uint64_t *v)
{
	uint64_t n = 0;

	if (s == end)
		return -1;
	for (; s < end; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		if (n > (UINT64_MAX - (uint64_t)(*s - '0')) / 10)
			return -1;
		n = n * 10 + (uint64_t)(*s - '0');
	}
	*v = n;
	return 0;
}

int sl_parse_duration(const char *s, uint64_t *ms)
{
	static const struct {
		const char *unit;
		uint64_t ms;
	} units[] = {
		{ "ms", 1 },
		{ "s", 1000 },
		{ "", 1000 }, /* a bare number is seconds */
		{ "m", 60000 },
		{ "h", 3600000 },
		{ "d", 86400000 },
	};
	const char *end;
	uint64_t n;

	if (s == NULL || ms == NULL)
		return -1;
	end = s + strspn(s, "0123456789");
	if (parse_digits(s, end, &n) < 0)
		return -1;
	for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
		if (strcmp(end, units[i].unit) != 0)
			continue;
		if (n > UINT64_MAX / units[i].ms)
			return -1;
		*ms = n * units[i].ms;
		return 0;
	}
	return -1;
}

int sl_parse_size(const char *s, uint64_t *bytes)
{
	const char *end;
	uint64_t n;
	unsigned shift;

	if (s == NULL || bytes == NULL)
		return -1;
	end = s + strspn(s, "0123456789");
	if (parse_digits(s, end, &n) < 0)
		return -1;
	switch (*end) {
	case '\0':
		shift = 0;
		break;
	case 'k':
	case 'K':
		shift = 10;
		break;
	case 'm':
	case 'M':
		shift = 20;
		break;
	case 'g':
	case 'G':
		shift = 30;
		break;
	default:
		return -1;
	}
	if (shift != 0 && end[1] != '\0')
		return -1;
	if (n > UINT64_MAX >> shift)
		return -1;
	*bytes = n << shift;
	return 0;
}

/* ---- pass two: the schema --------------------------------------------- */

/* A file read for this config: the config itself, or an included one. */
struct conf_file {
	char *name;	       /* as messages give it */
	sl_confsys_id id;      /* what it is, to find one read twice */
	int has_id;	       /* 0: from memory (the config as a string) */
	const struct ynode *by; /* the pattern that included it; NULL: the
				 * config itself */
	struct ytree tree;
};

struct ctx {
	struct yerr e; /* the file's name, and where its one message goes */
	sl_config *cfg;
	size_t route; /* index of the route being read */
	/* What the uniqueness checks compare against, so that a config of
	 * N routes costs N lookups rather than N * N / 2 comparisons. */
	sl_hset names;	 /* routes read so far (sl_route_conf), by name */
	sl_hset listens; /* listeners read so far (sl_listen_conf) */
	/* Every file read, the config first; and the routes of the included
	 * ones, in the order they are appended. */
	struct conf_file *files;
	size_t nfiles;
	const struct ynode **xroutes;
	size_t nxroutes;
};

#define fail_at(c, line, col, ...) \
	yerr_at(&(c)->e, (line), (col), __VA_ARGS__)
#define fail(c, node, ...) \
	yerr_in(&(c)->e, (node)->file, (node)->line, (node)->col, __VA_ARGS__)
#define fail_mark(c, m, ...) \
	yerr_in(&(c)->e, (m).file, (m).line, (m).col, __VA_ARGS__)

/*
 * Where mark m stood, for a message at a node of file here: "LINE:COL"
 * in the same file, "FILE:LINE:COL" in another.  Returns w->s.
 */
struct where {
	char s[FILE_PATH_MAX + 32];
};
static const char *where_at(struct where *w, const char *here,
			    const sl_conf_mark *m)
{
	if (m->file == NULL || here == m->file || strcmp(here, m->file) == 0)
		snprintf(w->s, sizeof w->s, "%u:%u", m->line, m->col);
	else
		snprintf(w->s, sizeof w->s, "%s:%u:%u", m->file, m->line,
			 m->col);
	return w->s;
}

static void mark_node(sl_conf_mark *m, const struct ynode *n)
{
	m->file = n->file;
	m->line = n->line;
	m->col = n->col;
}

/* One of a fixed set of words, each standing for a value. */
struct keyword {
	const char *name;
	int value;
};

/*
 * A key is a row (tmux's options table): its name, the type of its value,
 * and the offset of the field it fills in the object its mapping stands
 * for.  set_key() reads every type, so a key of a common kind is one line
 * of a table, and its messages are those of every key of its type.  A
 * value no type says (a route's name, a list of listeners) is read by a
 * function of its own (K_FUNC).
 */
enum key_type {
	K_UINT,	    /* unsigned: a decimal in [min, max], or one of words */
	K_INT,	    /* int: a decimal in [min, max] */
	K_DURATION, /* uint64_t ms: a duration in [min, max] */
	K_SECONDS,  /* unsigned s: a duration of whole seconds in [min, max]
		     * (seconds) */
	K_SIZE,	    /* size_t bytes: a size in [min, max] */
	K_BOOL,	    /* int: true or false */
	K_STRING,   /* char *: 1-max bytes, no control characters */
	K_BYTES,    /* char *, and its size_t length at off_n: 1-max bytes */
	K_PATH,	    /* char *: one of words, or an absolute path */
	K_ENUM,	    /* int: one of words, or a name parse() knows */
	K_CIDRS,    /* sl_cidr *, and its size_t count at off_n */
	K_STRINGS,  /* char **, and its size_t count at off_n: a string of
		     * 1-max bytes or a list of such */
	K_ENDPOINT, /* sl_endpoint; its text (char *) at off_n, its
		     * sl_conf_mark at off_mark */
	K_MAP,	    /* a mapping of the keys in sub, filling the object at
		     * off; any other value goes to alt */
	K_FUNC,	    /* set() reads it, given the whole object */
};

#define KF_REQUIRED 0x1 /* the mapping must have this key */
#define KF_PORT 0x2	/* K_ENDPOINT: a bare port is 127.0.0.1's */

struct key {
	const char *name;
	enum key_type type;
	size_t off;
	size_t off_n, off_mark;
	uint64_t min, max; /* numbers; K_STRING, K_BYTES, K_PATH: length */
	const char *expect; /* for messages: what a value looks like */
	const char *what;   /* K_ENUM, K_PATH: "'x' is not <what>" */
	const struct keyword *words; /* K_UINT, K_ENUM, K_PATH; NULL-ended */
	int (*parse)(const char *, int *); /* K_ENUM: 0 or -1 */
	const struct key *sub;		   /* K_MAP */
	size_t nsub;
	const char *where;     /* K_MAP: "in admin", for its keys' messages */
	const struct key *alt; /* K_MAP: reads a value that is no mapping */
	/* K_MAP: what only the whole mapping can judge, after its keys. */
	int (*check)(struct ctx *c, const struct ynode *map,
		     const struct ynode *const *seen, void *obj);
	/* K_FUNC: checks v (the value of key k) and stores it into obj. */
	int (*set)(struct ctx *c, const struct ynode *k, const struct ynode *v,
		   void *obj);
	unsigned flags; /* KF_* */
};

#define NKEYS(t) (sizeof(t) / sizeof((t)[0]))
/* The largest table a K_MAP may name (its seen[] is on the stack). */
#define KEYS_MAX 24
#define SUB(t)                                                                 \
	.sub = (t),                                                            \
	.nsub = NKEYS(t) + 0 * sizeof(char[NKEYS(t) <= KEYS_MAX ? 1 : -1])

/*
 * The offset of member m of struct type t, which must have type ft: a row
 * whose type does not match its field's fails to compile (an array of -1
 * chars), rather than write past the field or half of it.
 */
#define FIELD(t, m, ft)                                                        \
	(offsetof(t, m) +                                                      \
	 0 * sizeof(char[_Generic(((t *)0)->m, ft: 1, default: -1)]))

static int key_is(const struct ynode *k, const char *name)
{
	return strcmp(k->text, name) == 0;
}

static int set_key(struct ctx *c, const struct key *row,
		   const struct ynode *k, const struct ynode *v, void *obj);

/*
 * Walk the pairs of map in order against the table keys; where names the
 * mapping in messages ("at top level", "in route").  seen[] receives the
 * key node of each table entry that was present (NULL otherwise).
 */
static int walk_map(struct ctx *c, const struct ynode *map, const char *where,
		    const struct key *keys, size_t nkeys, void *obj,
		    const struct ynode **seen)
{
	char list[512];
	struct yquote q;
	size_t off = 0;

	for (size_t j = 0; j < nkeys; j++)
		seen[j] = NULL;
	for (size_t i = 0; i + 1 < map->nkid; i += 2) {
		const struct ynode *k = map->kid[i], *v = map->kid[i + 1];
		size_t j;

		if (k->kind != YN_SCALAR)
			return fail(c, k,
				    "%s as a key %s (expected a key name)",
				    ykind_name(k->kind), where);
		if (k->null)
			return fail(c, k, "empty key %s (expected a key name)",
				    where);
		for (j = 0; j < nkeys; j++)
			if (key_is(k, keys[j].name))
				break;
		if (j == nkeys) {
			for (size_t m = 0; m < nkeys; m++) {
				int n = snprintf(list + off, sizeof list - off,
						 "%s%s", m ? ", " : "",
						 keys[m].name);

				if (n > 0 && (size_t)n < sizeof list - off)
					off += (size_t)n;
			}
			list[off] = '\0';
			return fail(c, k, "unknown key '%s' %s (expected %s)",
				    yquote(&q, k->text), where, list);
		}
		if (seen[j] != NULL)
			return fail(c, k,
				    "duplicate key '%s' %s (each key once; "
				    "first at %u:%u)",
				    k->text, where, seen[j]->line,
				    seen[j]->col);
		seen[j] = k;
		if (set_key(c, &keys[j], k, v, obj) < 0)
			return -1;
	}
	for (size_t j = 0; j < nkeys; j++)
		if ((keys[j].flags & KF_REQUIRED) && seen[j] == NULL)
			return fail(c, map,
				    "missing required key '%s' %s (expected "
				    "%s: %s)",
				    keys[j].name, where, keys[j].name,
				    keys[j].expect);
	return 0;
}

/* ---- values, one function per type ---- */

/*
 * The three kinds of number a key may take.  parse() gives 0 with the
 * value, -1 for text that is no such number, or -2 for one of the right
 * form that is too large (so the message can say "out of range").
 */
struct measure {
	const char *what; /* "is not WHAT" */
	int (*parse)(const char *s, uint64_t *out);
};

/*
 * A decimal integer: digits only, so "0x10", "+4", "-1", "1_000" and
 * "1e3" are refused, and so is "010", which YAML 1.1 reads as octal and a
 * reader might not.
 */
static int parse_uint(const char *s, uint64_t *out)
{
	if (s[0] == '\0' || strspn(s, "0123456789") != strlen(s) ||
	    (s[0] == '0' && s[1] != '\0'))
		return -1;
	return parse_digits(s, s + strlen(s), out) < 0 ? -2 : 0;
}

/* A duration ("250ms", "5s", ...); max at most DURATION_MAX_MS.  Digits
 * and a known unit that do not parse are an overflow. */
static int parse_duration(const char *s, uint64_t *out)
{
	size_t d = strspn(s, "0123456789");
	const char *u = s + d;

	if (s[0] >= '0' && s[0] <= '9' && sl_parse_duration(s, out) == 0)
		return 0;
	if (d > 0 && (strcmp(u, "") == 0 || strcmp(u, "ms") == 0 ||
		      (u[0] != '\0' && u[1] == '\0' &&
		       strchr("smhd", u[0]) != NULL)))
		return -2;
	return -1;
}

/* A size in bytes ("16384", "16k", "1m", "1g"). */
static int parse_size(const char *s, uint64_t *out)
{
	size_t d = strspn(s, "0123456789");

	if (sl_parse_size(s, out) == 0)
		return 0;
	if (d > 0 &&
	    (s[d] == '\0' || (strchr("kKmMgG", s[d]) && s[d + 1] == '\0')))
		return -2;
	return -1;
}

/* A duration that is a whole number of seconds ("90s", "2m", "60"), in
 * seconds: what a system takes in seconds is not given milliseconds that
 * it would cut off. */
static int parse_seconds(const char *s, uint64_t *out)
{
	int r = parse_duration(s, out);

	if (r == 0 && *out % 1000 != 0)
		return -1;
	*out /= 1000;
	return r;
}

static const struct measure M_UINT = {"a decimal integer", parse_uint};
static const struct measure M_DURATION = {"a duration", parse_duration};
static const struct measure M_SECONDS = {"a duration of whole seconds",
					 parse_seconds};
static const struct measure M_SIZE = {"a size", parse_size};

/* A number of kind m in [min, max]. */
static int get_measure(struct ctx *c, const struct ynode *k,
		       const struct ynode *v, const struct measure *m,
		       uint64_t min, uint64_t max, const char *expect,
		       uint64_t *out)
{
	const char *s = yscalar(&c->e, k, v, expect);
	struct yquote q;
	uint64_t n;
	int r;

	if (s == NULL)
		return -1;
	if ((r = m->parse(s, &n)) == -1)
		return fail(c, v, "%s: '%s' is not %s (expected %s)", k->text,
			    yquote(&q, s), m->what, expect);
	if (r < 0 || n < min || n > max)
		return fail(c, v, "%s: '%s' is out of range (expected %s)",
			    k->text, yquote(&q, s), expect);
	*out = n;
	return 0;
}

/* A number, or one of words (threads: auto). */
static int get_number(struct ctx *c, const struct key *row,
		      const struct ynode *k, const struct ynode *v,
		      uint64_t *out)
{
	for (const struct keyword *w = row->words; w != NULL && w->name;
	     w++) {
		if (v->kind == YN_SCALAR && strcmp(v->text, w->name) == 0) {
			*out = (uint64_t)w->value;
			return 0;
		}
	}
	return get_measure(c, k, v, &M_UINT, row->min, row->max, row->expect,
			   out);
}

/* A string of 1..max bytes without control characters. */
static int get_string(struct ctx *c, const struct ynode *k,
		      const struct ynode *v, size_t max, const char *expect,
		      char **out)
{
	const char *s = yscalar(&c->e, k, v, expect);
	struct yquote q;
	size_t n;

	if (s == NULL)
		return -1;
	n = strlen(s);
	if (n == 0 || n > max)
		return fail(c, v, "%s: '%s' has a bad length (expected %s)",
			    k->text, yquote(&q, s), expect);
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return fail(c, v, "%s: control character in '%s' "
					  "(expected %s)",
				    k->text, yquote(&q, s), expect);
	if ((*out = strdup(s)) == NULL)
		return fail_at(c, 0, 0, "out of memory");
	return 0;
}

/* Bytes to send or expect: any text but NUL (the YAML reader refuses
 * those), escapes as YAML's double-quoted strings write them ("\r\n"). */
static int get_bytes(struct ctx *c, const struct ynode *k,
		     const struct ynode *v, size_t max, const char *expect,
		     char **out, size_t *len)
{
	const char *s = yscalar(&c->e, k, v, expect);
	struct yquote q;
	size_t n;

	if (s == NULL)
		return -1;
	n = strlen(s);
	if (n == 0 || n > max)
		return fail(c, v, "%s: '%s' has a bad length (expected %s)",
			    k->text, yquote(&q, s), expect);
	free(*out);
	if ((*out = strdup(s)) == NULL)
		return fail_at(c, 0, 0, "out of memory");
	*len = n;
	return 0;
}

/* Absolute in either OS's way: /p, C:\p or C:/p, \\server\share. */
static int path_absolute(const char *p)
{
	if (p[0] == '/')
		return 1;
	if (((p[0] >= 'A' && p[0] <= 'Z') || (p[0] >= 'a' && p[0] <= 'z')) &&
	    p[1] == ':' && (p[2] == '\\' || p[2] == '/'))
		return 1;
	return p[0] == '\\' && p[1] == '\\';
}

/* One of the row's words (stderr, syslog), or an absolute path. */
static int get_path(struct ctx *c, const struct key *row,
		    const struct ynode *k, const struct ynode *v, char **out)
{
	struct yquote q;

	if (get_string(c, k, v, (size_t)row->max, row->expect, out) < 0)
		return -1;
	for (const struct keyword *w = row->words; w != NULL && w->name; w++)
		if (strcmp(*out, w->name) == 0)
			return 0;
	if (!path_absolute(*out))
		return fail(c, v, "%s: '%s' is not %s (expected %s)", k->text,
			    yquote(&q, *out), row->what, row->expect);
	return 0;
}

/* true or false, as written (YAML 1.1's yes/no/on/off are refused: a
 * reader cannot tell them from strings). */
static int get_bool(struct ctx *c, const struct ynode *k,
		    const struct ynode *v, int *out)
{
	const char *s = yscalar(&c->e, k, v, "true or false");
	struct yquote q;

	if (s == NULL)
		return -1;
	if (strcmp(s, "true") == 0)
		*out = 1;
	else if (strcmp(s, "false") == 0)
		*out = 0;
	else
		return fail(c, v, "%s: '%s' is not a boolean (expected true or "
				  "false)",
			    k->text, yquote(&q, s));
	return 0;
}

/* One of the row's words, or a name its parse() knows. */
static int get_enum(struct ctx *c, const struct key *row,
		    const struct ynode *k, const struct ynode *v, int *out)
{
	const char *s = yscalar(&c->e, k, v, row->expect);
	struct yquote q;

	if (s == NULL)
		return -1;
	if (row->parse != NULL && row->parse(s, out) == 0)
		return 0;
	for (const struct keyword *w = row->words; w != NULL && w->name;
	     w++) {
		if (strcmp(s, w->name) == 0) {
			*out = w->value;
			return 0;
		}
	}
	return fail(c, v, "%s: '%s' is not %s (expected %s)", k->text,
		    yquote(&q, s), row->what, row->expect);
}

static int get_endpoint(struct ctx *c, const struct ynode *k,
			const struct ynode *v, const char *expect,
			sl_endpoint *ep, char **address, sl_conf_mark *mark)
{
	const char *s = yscalar(&c->e, k, v, expect);
	char eerr[256] = "";
	struct yquote q;

	if (s == NULL)
		return -1;
	if (sl_endpoint_parse(s, ep, eerr, sizeof eerr) < 0)
		return fail(c, v, "%s: bad endpoint '%s': %s", k->text,
			    yquote(&q, s), eerr[0] ? eerr : "invalid");
	if ((*address = strdup(s)) == NULL)
		return fail_at(c, 0, 0, "out of memory");
	mark_node(mark, v);
	return 0;
}

/* An endpoint, or a bare port for that port on 127.0.0.1: the admin
 * listener is on loopback unless the config names another address. */
static int get_port_endpoint(struct ctx *c, const struct ynode *k,
			     const struct ynode *v, const char *expect,
			     sl_endpoint *ep, char **address,
			     sl_conf_mark *mark)
{
	struct ynode port;
	char text[32];
	uint64_t n;

	if (v->kind != YN_SCALAR || v->null || v->text[0] < '0' ||
	    v->text[0] > '9')
		return get_endpoint(c, k, v, expect, ep, address, mark);
	if (get_measure(c, k, v, &M_UINT, 1, 65535,
			"a port 1-65535 or an endpoint", &n) < 0)
		return -1;
	snprintf(text, sizeof text, "tcp://127.0.0.1:%u", (unsigned)n);
	port = *v;
	port.text = text;
	return get_endpoint(c, k, &port, expect, ep, address, mark);
}

#define EXP_CIDRS "a CIDR such as 10.0.0.0/8 or 2001:db8::/32, or a list of " \
		  "those"
#define CIDRS_MAX 100000

/* One CIDR or a list of them. */
static int get_cidrs(struct ctx *c, const struct ynode *k,
		     const struct ynode *v, sl_cidr **out, size_t *nout)
{
	const struct ynode *const *item = NULL;
	size_t n = 1;

	if (v->kind == YN_SEQ) {
		item = (const struct ynode *const *)v->kid;
		n = v->nkid;
		/* "Nobody" or "anybody"?  An empty trusted_proxies would
		 * read as the first and act as the second. */
		if (n == 0)
			return fail(c, v, "%s: empty list (expected at least "
					  "one CIDR such as 10.0.0.0/8)",
				    k->text);
	} else if (v->kind != YN_SCALAR || v->null) {
		return fail(c, v, "%s %s (expected %s)", k->text,
			    v->kind == YN_SCALAR ? "has no value"
			    : v->kind == YN_MAP  ? "is a mapping"
						 : "is a sequence",
			    EXP_CIDRS);
	}
	if (n > CIDRS_MAX)
		return fail(c, v, "%s: %zu entries (expected at most %u)",
			    k->text, n, CIDRS_MAX);
	free(*out);
	*nout = 0;
	if ((*out = calloc(n ? n : 1, sizeof **out)) == NULL)
		return fail_at(c, 0, 0, "out of memory");
	for (size_t i = 0; i < n; i++) {
		const struct ynode *e = item != NULL ? item[i] : v;
		char cerr[160] = "";

		if (e->kind != YN_SCALAR || e->null)
			return fail(c, e, "%s item is %s (expected a CIDR such "
					  "as 10.0.0.0/8)",
				    k->text,
				    e->kind == YN_SCALAR ? "empty"
							 : ykind_name(e->kind));
		/* Its messages quote the text where that helps. */
		if (sl_cidr_parse(e->text, &(*out)[i], cerr, sizeof cerr) < 0)
			return fail(c, e, "%s: %s", k->text,
				    cerr[0] ? cerr : "not a CIDR");
		*nout = i + 1;
	}
	return 0;
}

#define STRINGS_MAX 1000

/* One string or a list of them, each as get_string() reads one. */
static int get_strings(struct ctx *c, const struct key *row,
		       const struct ynode *k, const struct ynode *v,
		       char ***out, size_t *nout)
{
	const struct ynode *const *item = NULL;
	size_t n = 1;

	if (v->kind == YN_SEQ) {
		item = (const struct ynode *const *)v->kid;
		n = v->nkid;
		if (n == 0)
			return fail(c, v, "%s: empty list (expected %s)",
				    k->text, row->expect);
		if (n > STRINGS_MAX)
			return fail(c, v, "%s: %zu entries (expected at most "
					  "%u)",
				    k->text, n, STRINGS_MAX);
	}
	if ((*out = calloc(n, sizeof **out)) == NULL)
		return fail_at(c, 0, 0, "out of memory");
	for (size_t i = 0; i < n; i++) {
		const struct ynode *e = item != NULL ? item[i] : v;

		if (get_string(c, k, e, (size_t)row->max, row->expect,
			       &(*out)[i]) < 0)
			return -1;
		*nout = i + 1;
	}
	return 0;
}

/* A mapping of the row's sub-keys, filling obj. */
static int get_map(struct ctx *c, const struct key *row,
		   const struct ynode *k, const struct ynode *v, void *obj)
{
	const struct ynode *seen[KEYS_MAX];

	if (v->kind != YN_MAP) {
		if (row->alt != NULL)
			return set_key(c, row->alt, k, v, obj);
		return fail(c, v, "%s is %s (expected %s)", k->text,
			    v->kind == YN_SCALAR && v->null
				    ? "empty"
				    : ykind_name(v->kind),
			    row->expect);
	}
	if (walk_map(c, v, row->where, row->sub, row->nsub, obj, seen) < 0)
		return -1;
	return row->check != NULL ? row->check(c, v, seen, obj) : 0;
}

/* A row's other fields (a count, a length, a text, a mark), by offset. */
#define AT(off, type) ((type *)(void *)((char *)obj + (off)))

/* The value v of key k, read as row says, into obj. */
static int set_key(struct ctx *c, const struct key *row,
		   const struct ynode *k, const struct ynode *v, void *obj)
{
	void *field = (char *)obj + row->off;
	uint64_t n = 0;

	switch (row->type) {
	case K_UINT:
	case K_INT:
		if (get_number(c, row, k, v, &n) < 0)
			return -1;
		/* min and max keep n within the field's type. */
		if (row->type == K_UINT)
			*(unsigned *)field = (unsigned)n;
		else
			*(int *)field = (int)n;
		return 0;
	case K_DURATION:
		return get_measure(c, k, v, &M_DURATION, row->min, row->max,
				   row->expect, field);
	case K_SECONDS:
		if (get_measure(c, k, v, &M_SECONDS, row->min, row->max,
				row->expect, &n) < 0)
			return -1;
		*(unsigned *)field = (unsigned)n; /* max keeps it in */
		return 0;
	case K_SIZE:
		if (get_measure(c, k, v, &M_SIZE, row->min, row->max,
				row->expect, &n) < 0)
			return -1;
		*(size_t *)field = (size_t)n;
		return 0;
	case K_BOOL:
		return get_bool(c, k, v, field);
	case K_STRING:
		return get_string(c, k, v, (size_t)row->max, row->expect,
				  field);
	case K_BYTES:
		return get_bytes(c, k, v, (size_t)row->max, row->expect, field,
				 AT(row->off_n, size_t));
	case K_PATH:
		return get_path(c, row, k, v, field);
	case K_ENUM:
		return get_enum(c, row, k, v, field);
	case K_CIDRS:
		return get_cidrs(c, k, v, field, AT(row->off_n, size_t));
	case K_STRINGS:
		return get_strings(c, row, k, v, field, AT(row->off_n, size_t));
	case K_ENDPOINT:
		if (row->flags & KF_PORT)
			return get_port_endpoint(
				c, k, v, row->expect, field,
				AT(row->off_n, char *),
				AT(row->off_mark, sl_conf_mark));
		return get_endpoint(c, k, v, row->expect, field,
				    AT(row->off_n, char *),
				    AT(row->off_mark, sl_conf_mark));
	case K_MAP:
		return get_map(c, row, k, v, field);
	case K_FUNC:
		break;
	}
	return row->set(c, k, v, obj);
}

#undef AT

/* ---- tls ---- */

#define EXP_TLS_LISTEN "a mapping with cert (and key, client_ca, " \
		       "verify_client, allow, min_version, handshake_timeout, " \
		       "ciphers, ciphersuites, session_tickets, alpn)"
#define EXP_TLS_UPSTREAM "a mapping with ca, server_name, verify, cert, key, " \
			 "min_version, ciphers, ciphersuites, session_reuse " \
			 "or alpn"
#define EXP_TLS_FILE "an absolute file path"
#define EXP_VERIFY_CLIENT "none, optional or required"
#define EXP_ALLOW "any, or a mapping with cn, dns and uri"
#define EXP_TLS_NAME "a name of 1-255 characters, or a list of those"
#define EXP_URI "a URI such as spiffe://example.com/ci, or a list of those"
#define EXP_MIN_VERSION "\"1.2\" or \"1.3\""
#define EXP_HANDSHAKE "a duration 1ms-1h such as 10s"
#define EXP_CIPHERS "an OpenSSL cipher list of 1-1024 characters"
#define EXP_ALPN "an ALPN protocol name of 1-255 characters such as h2, or " \
		 "a list of those"
#define EXP_SERVER_NAME "a host name of 1-253 characters"
#define TLS_NAME_MAX 255
#define CIPHERS_MAX 1024

#define TA(m, ft) FIELD(sl_tls_allow_conf, m, ft)
#define TL(m, ft) FIELD(sl_tls_listen_conf, m, ft)
#define TU(m, ft) FIELD(sl_tls_upstream_conf, m, ft)

static const struct keyword verify_client_words[] = {
	{ "none", SL_TLS_VERIFY_NONE },
	{ "optional", SL_TLS_VERIFY_OPTIONAL },
	{ "required", SL_TLS_VERIFY_REQUIRED },
	{ NULL, 0 },
};
static const struct keyword min_version_words[] = {
	{ "1.2", 0x0303 },
	{ "1.3", 0x0304 },
	{ NULL, 0 },
};

static const struct key allow_keys[] = {
	{ "cn", K_STRINGS, TA(cn, char **), .off_n = TA(ncn, size_t),
	  .max = TLS_NAME_MAX, .expect = EXP_TLS_NAME },
	{ "dns", K_STRINGS, TA(dns, char **), .off_n = TA(ndns, size_t),
	  .max = TLS_NAME_MAX, .expect = EXP_TLS_NAME },
	{ "uri", K_STRINGS, TA(uri, char **), .off_n = TA(nuri, size_t),
	  .max = 2048, .expect = EXP_URI },
};

/*
 * The one word a mapping's key takes instead of a mapping (allow: any,
 * tcp_keepalive: off); anything else "is not" what is_not says.
 */
static int get_word(struct ctx *c, const struct ynode *k,
		    const struct ynode *v, const char *word,
		    const char *is_not, const char *expect)
{
	const char *s = yscalar(&c->e, k, v, expect);
	struct yquote q;

	if (s == NULL)
		return -1;
	if (strcmp(s, word) != 0)
		return fail(c, v, "%s: '%s' is %s (expected %s)", k->text,
			    yquote(&q, s), is_not, expect);
	return 0;
}

/* allow: any, the one word that admits every verified client. */
static int set_allow_any(struct ctx *c, const struct ynode *k,
			 const struct ynode *v, void *obj)
{
	if (get_word(c, k, v, "any", "not a list of names", EXP_ALLOW) < 0)
		return -1;
	((sl_tls_allow_conf *)obj)->any = 1;
	return 0;
}
static const struct key allow_alt = { "allow", K_FUNC, 0,
				      .set = set_allow_any,
				      .expect = EXP_ALLOW };

/* A mapping that names nobody would read as "nobody" and act as "any". */
static int allow_check(struct ctx *c, const struct ynode *map,
		       const struct ynode *const *seen, void *obj)
{
	const sl_tls_allow_conf *a = obj;

	(void)seen;
	if (a->ncn + a->ndns + a->nuri == 0)
		return fail(c, map, "allow names nobody (expected %s)",
			    EXP_ALLOW);
	return 0;
}

enum {
	TK_CERT,
	TK_KEY,
	TK_CLIENT_CA,
	TK_VERIFY_CLIENT,
	TK_ALLOW,
	TK_MIN_VERSION,
	TK_HANDSHAKE,
	TK_CIPHERS,
	TK_CIPHERSUITES,
};

static const struct key tls_listen_keys[] = {
	[TK_CERT] = { "cert", K_PATH, TL(cert, char *), .max = FILE_PATH_MAX,
		      .expect = EXP_TLS_FILE, .what = "an absolute path",
		      .flags = KF_REQUIRED },
	[TK_KEY] = { "key", K_PATH, TL(key, char *), .max = FILE_PATH_MAX,
		     .expect = EXP_TLS_FILE, .what = "an absolute path" },
	[TK_CLIENT_CA] = { "client_ca", K_PATH, TL(client_ca, char *),
			   .max = FILE_PATH_MAX, .expect = EXP_TLS_FILE,
			   .what = "an absolute path" },
	[TK_VERIFY_CLIENT] = { "verify_client", K_ENUM,
			       TL(verify_client, int),
			       .expect = EXP_VERIFY_CLIENT,
			       .what = "a client verification mode",
			       .words = verify_client_words },
	[TK_ALLOW] = { "allow", K_MAP, TL(allow, sl_tls_allow_conf),
		       SUB(allow_keys), .where = "in allow", .alt = &allow_alt,
		       .check = allow_check, .expect = EXP_ALLOW },
	[TK_MIN_VERSION] = { "min_version", K_ENUM, TL(min_version, int),
			     .expect = EXP_MIN_VERSION,
			     .what = "a TLS version",
			     .words = min_version_words },
	[TK_HANDSHAKE] = { "handshake_timeout", K_DURATION,
			   TL(handshake_timeout_ms, uint64_t), .min = 1,
			   .max = 3600000, .expect = EXP_HANDSHAKE },
	[TK_CIPHERS] = { "ciphers", K_STRING, TL(ciphers, char *),
			 .max = CIPHERS_MAX, .expect = EXP_CIPHERS },
	[TK_CIPHERSUITES] = { "ciphersuites", K_STRING,
			      TL(ciphersuites, char *), .max = CIPHERS_MAX,
			      .expect = EXP_CIPHERS },
	{ "session_tickets", K_BOOL, TL(tickets, int),
	  .expect = "true or false" },
	{ "alpn", K_STRINGS, TL(alpn, char **), .off_n = TL(nalpn, size_t),
	  .max = TLS_NAME_MAX, .expect = EXP_ALPN },
};

/* What only a listener's whole tls mapping can judge. */
static int tls_listen_check(struct ctx *c, const struct ynode *map,
			    const struct ynode *const *seen, void *obj)
{
	sl_tls_listen_conf *t = obj;

	(void)map;
	if (t->verify_client != SL_TLS_VERIFY_NONE && t->client_ca == NULL)
		return fail(c, seen[TK_VERIFY_CLIENT],
			    "verify_client: %s needs client_ca (expected the "
			    "CAs client certificates are verified against)",
			    verify_client_words[t->verify_client].name);
	if (t->verify_client == SL_TLS_VERIFY_NONE) {
		if (seen[TK_CLIENT_CA] != NULL)
			return fail(c, seen[TK_CLIENT_CA],
				    "client_ca is only for verify_client: "
				    "optional or required");
		if (seen[TK_ALLOW] != NULL)
			return fail(c, seen[TK_ALLOW],
				    "allow is only for verify_client: "
				    "optional or required");
	}
	/* A CA alone admits everyone it ever signed: rarely what is meant,
	 * so that is said in so many words. */
	if (t->verify_client == SL_TLS_VERIFY_REQUIRED &&
	    seen[TK_ALLOW] == NULL)
		return fail(c, seen[TK_VERIFY_CLIENT],
			    "verify_client: required without allow admits "
			    "every certificate client_ca ever signed "
			    "(expected allow: with cn, dns or uri, or allow: "
			    "any)");
	t->on = 1;
	return 0;
}

static const struct key tls_listen_row = {
	"tls", K_MAP, 0, SUB(tls_listen_keys), .where = "in tls",
	.check = tls_listen_check, .expect = EXP_TLS_LISTEN
};

enum { TU_CA, TU_SERVER_NAME, TU_VERIFY, TU_CERT, TU_KEY };

static const struct key tls_upstream_keys[] = {
	[TU_CA] = { "ca", K_PATH, TU(ca, char *), .max = FILE_PATH_MAX,
		    .expect = EXP_TLS_FILE, .what = "an absolute path" },
	[TU_SERVER_NAME] = { "server_name", K_STRING, TU(server_name, char *),
			     .max = 253, .expect = EXP_SERVER_NAME },
	[TU_VERIFY] = { "verify", K_BOOL, TU(verify, int),
			.expect = "true or false" },
	[TU_CERT] = { "cert", K_PATH, TU(cert, char *), .max = FILE_PATH_MAX,
		      .expect = EXP_TLS_FILE, .what = "an absolute path" },
	[TU_KEY] = { "key", K_PATH, TU(key, char *), .max = FILE_PATH_MAX,
		     .expect = EXP_TLS_FILE, .what = "an absolute path" },
	{ "min_version", K_ENUM, TU(min_version, int),
	  .expect = EXP_MIN_VERSION, .what = "a TLS version",
	  .words = min_version_words },
	{ "ciphers", K_STRING, TU(ciphers, char *), .max = CIPHERS_MAX,
	  .expect = EXP_CIPHERS },
	{ "ciphersuites", K_STRING, TU(ciphersuites, char *),
	  .max = CIPHERS_MAX, .expect = EXP_CIPHERS },
	{ "session_reuse", K_BOOL, TU(session_reuse, int),
	  .expect = "true or false" },
	{ "alpn", K_STRINGS, TU(alpn, char **), .off_n = TU(nalpn, size_t),
	  .max = TLS_NAME_MAX, .expect = EXP_ALPN },
};

static int tls_upstream_check(struct ctx *c, const struct ynode *map,
			      const struct ynode *const *seen, void *obj)
{
	sl_tls_upstream_conf *t = obj;

	(void)map;
	if (seen[TU_KEY] != NULL && t->cert == NULL)
		return fail(c, seen[TU_KEY],
			    "key is only for a client certificate (expected "
			    "cert with it)");
	t->on = 1;
	return 0;
}

static const struct key tls_upstream_row = {
	"tls", K_MAP, 0, SUB(tls_upstream_keys), .where = "in upstream tls",
	.check = tls_upstream_check, .expect = EXP_TLS_UPSTREAM
};

/*
 * tls: on a listener or an upstream.  Read only where this sluice has
 * TLS; elsewhere the key is an error that says why, at the key.
 */
static int set_tls(struct ctx *c, const struct key *row, const struct ynode *k,
		   const struct ynode *v, void *tls, sl_conf_mark *mark)
{
#ifdef SL_HAVE_TLS
	mark_node(mark, k);
	return set_key(c, row, k, v, tls);
#else
	(void)row;
	(void)v;
	(void)tls;
	(void)mark;
	return fail(c, k, "tls: this sluice was built without TLS "
			  "(configure found no OpenSSL 3, or was given "
			  "--without-tls)");
#endif
}

static int set_listen_tls(struct ctx *c, const struct ynode *k,
			  const struct ynode *v, void *obj)
{
	sl_listen_conf *lc = obj;

	lc->tls.min_version = 0x0303;
	lc->tls.handshake_timeout_ms = 10000;
	lc->tls.tickets = 1;
	return set_tls(c, &tls_listen_row, k, v, &lc->tls, &lc->tls.mark);
}

static int set_upstream_tls(struct ctx *c, const struct ynode *k,
			    const struct ynode *v, void *obj)
{
	sl_upstream_conf *uc = obj;

	uc->tls.min_version = 0x0303;
	uc->tls.verify = 1;
	uc->tls.session_reuse = 1;
	return set_tls(c, &tls_upstream_row, k, v, &uc->tls, &uc->tls.mark);
}

/* ---- listeners ---- */

#define EXP_LISTEN "an endpoint, a listener mapping, or a list of those"
#define EXP_ADDRESS "an endpoint such as tcp://127.0.0.1:8080 or unix:/path"
#define EXP_USER "a user name or number"
#define EXP_GROUP "a group name or number"
#define EXP_MODE "an octal file mode 0-0777 such as 0660"
#define EXP_SECURITY "an SDDL string"
#define EXP_BACKLOG "1-65535"
#define EXP_PROXY_TIMEOUT "a duration 1ms-1h such as 5s"

static int listen_eq(const void *item, const void *key)
{
	return sl_endpoint_equal(&((const sl_listen_conf *)item)->ep, key);
}

/* The route of o, a listener read so far: an earlier one, or this one.
 * A walk, but only on the way out with an error. */
static size_t listen_route(const struct ctx *c, const sl_listen_conf *o)
{
	for (size_t i = 0; i < c->route; i++) {
		const sl_route_conf *rc = &c->cfg->routes[i];

		for (size_t j = 0; j < rc->nlisten; j++)
			if (&rc->listen[j] == o)
				return i;
	}
	return c->route;
}

/*
 * lc, just read, against every listener read before it (of earlier routes
 * and earlier in this one), by sl_endpoint_equal(); then lc joins them.
 * Those are all unlike each other, so at most one can match.  The message
 * stands at lc's address.
 */
static int check_listen_unique(struct ctx *c, const sl_listen_conf *lc)
{
	uint64_t h = sl_endpoint_hash(&lc->ep);
	const sl_listen_conf *o;
	struct yquote q;
	struct where w;
	size_t i;

	if ((o = sl_hset_find(&c->listens, h, listen_eq, &lc->ep)) == NULL) {
		if (sl_hset_add(&c->listens, h, lc) < 0)
			return fail_at(c, 0, 0, "out of memory");
		return 0;
	}
	if ((i = listen_route(c, o)) == c->route)
		return fail_mark(c, lc->mark,
				 "listen: '%s' is already listed in this "
				 "route at %u:%u (each endpoint is listened "
				 "on once)",
				 yquote(&q, lc->address), o->mark.line,
				 o->mark.col);
	return fail_mark(c, lc->mark,
			 "listen: '%s' is already used by route '%s' at %s "
			 "(each endpoint is listened on once)",
			 yquote(&q, lc->address), c->cfg->routes[i].name,
			 where_at(&w, lc->mark.file, &o->mark));
}

static int set_mode(struct ctx *c, const struct ynode *k,
		    const struct ynode *v, void *obj)
{
	sl_listen_conf *lc = obj;
	const char *s = yscalar(&c->e, k, v, EXP_MODE);
	struct yquote q;
	unsigned long m = 0;

	if (s == NULL)
		return -1;
	/* Octal whether quoted or not, as chmod reads it: "660" is 0660. */
	if (s[0] == '\0' || strspn(s, "01234567") != strlen(s))
		return fail(c, v, "%s: '%s' is not an octal number (expected "
				  "%s)",
			    k->text, yquote(&q, s), EXP_MODE);
	for (const char *p = s; *p != '\0'; p++) {
		m = m * 8 + (unsigned long)(*p - '0');
		if (m > 0777)
			return fail(c, v, "%s: '%s' is out of range (expected "
					  "%s)",
				    k->text, yquote(&q, s), EXP_MODE);
	}
	lc->mode = (int)m;
	return 0;
}

enum {
	LK_ADDRESS,
	LK_MODE,
	LK_OWNER,
	LK_GROUP,
	LK_SECURITY,
	LK_BACKLOG,
	LK_ACCEPT_PROXY,
	LK_PROXY_TIMEOUT,
	LK_TRUSTED,
	LK_TLS,
};

#define LC(m, ft) FIELD(sl_listen_conf, m, ft)

static const struct key listen_keys[] = {
	[LK_ADDRESS] = { "address", K_ENDPOINT, LC(ep, sl_endpoint),
			 .off_n = LC(address, char *),
			 .off_mark = LC(mark, sl_conf_mark),
			 .expect = EXP_ADDRESS, .flags = KF_REQUIRED },
	[LK_MODE] = { "mode", K_FUNC, 0, .set = set_mode,
		      .expect = EXP_MODE },
	[LK_OWNER] = { "owner", K_STRING, LC(owner, char *),
		       .max = USER_NAME_MAX, .expect = EXP_USER },
	[LK_GROUP] = { "group", K_STRING, LC(group, char *),
		       .max = USER_NAME_MAX, .expect = EXP_GROUP },
	[LK_SECURITY] = { "security", K_STRING, LC(security, char *),
			  .max = SECURITY_MAX, .expect = EXP_SECURITY },
	[LK_BACKLOG] = { "backlog", K_INT, LC(backlog, int), .min = 1,
			 .max = 65535, .expect = EXP_BACKLOG },
	[LK_ACCEPT_PROXY] = { "accept_proxy", K_BOOL, LC(accept_proxy, int),
			      .expect = "true or false" },
	[LK_PROXY_TIMEOUT] = { "proxy_timeout", K_DURATION,
			       LC(proxy_timeout_ms, uint64_t), .min = 1,
			       .max = 3600000, .expect = EXP_PROXY_TIMEOUT },
	[LK_TRUSTED] = { "trusted_proxies", K_CIDRS, LC(trusted, sl_cidr *),
			 .off_n = LC(ntrusted, size_t), .expect = EXP_CIDRS },
	[LK_TLS] = { "tls", K_FUNC, 0, .set = set_listen_tls,
		     .expect = EXP_TLS_LISTEN },
};

/* A listener this platform cannot have at all (systemd: on Windows), or
 * that nothing can listen on (assuan: names a file an agent writes).  0,
 * or -1 with the error at the address. */
static int listenable(struct ctx *c, const sl_listen_conf *lc)
{
	char why[128];

	if (lc->ep.kind == SL_EP_ASSUAN)
		return fail_at(c, lc->mark.line, lc->mark.col,
			       "assuan: is for upstreams only (expected "
			       "tcp://, unix: or pipe: to listen on)");
	if (sl_endpoint_listenable(&lc->ep, why, sizeof why) == 0)
		return 0;
	return fail_at(c, lc->mark.line, lc->mark.col, "listen '%s': %s",
		       lc->address, why);
}

static int listen_one(struct ctx *c, const struct ynode *k,
		      const struct ynode *v, sl_listen_conf *lc)
{
	const struct ynode *seen[NKEYS(listen_keys)];
	const sl_endpoint *ep = &lc->ep;

	lc->mode = -1;
	lc->proxy_timeout_ms = 5000;
	if (v->kind == YN_SCALAR) {
		if (get_endpoint(c, k, v, EXP_LISTEN, &lc->ep, &lc->address,
				 &lc->mark) < 0 ||
		    listenable(c, lc) < 0)
			return -1;
		return check_listen_unique(c, lc);
	}
	if (v->kind != YN_MAP)
		return fail(c, v, "%s item is %s (expected an endpoint or a "
				  "listener mapping)",
			    k->text, ykind_name(v->kind));
	if (walk_map(c, v, "in listener", listen_keys, NKEYS(listen_keys), lc,
		     seen) < 0 || listenable(c, lc) < 0)
		return -1;
	/* Options that the address's kind cannot honour are errors, not
	 * silently ignored: the operator meant something by them. */
	for (size_t j = LK_MODE; j <= LK_GROUP; j++) {
		if (seen[j] == NULL)
			continue;
		if (ep->kind != SL_EP_UNIX)
			return fail(c, seen[j],
				    "%s is not for this listener (expected "
				    "only with a unix: address)",
				    listen_keys[j].name);
		/* Linux: an abstract socket has no file to chmod/chown. */
		if (ep->abstract)
			return fail(c, seen[j],
				    "%s is not for an abstract socket "
				    "(expected only with a unix:/path "
				    "address)",
				    listen_keys[j].name);
	}
	if (seen[LK_SECURITY] != NULL && ep->kind != SL_EP_PIPE)
		return fail(c, seen[LK_SECURITY],
			    "security is not for this listener (expected only "
			    "with a pipe: address)");
	for (size_t j = LK_PROXY_TIMEOUT; j <= LK_TRUSTED; j++)
		if (seen[j] != NULL && !lc->accept_proxy)
			return fail(c, seen[j],
				    "%s is only for a listener with "
				    "accept_proxy: true",
				    listen_keys[j].name);
	return check_listen_unique(c, lc);
}

/* ---- source addresses ---- */

#define EXP_SOURCE "an IP address with an optional port, such as " \
		   "192.0.2.10, 127.0.0.2:0 or \"[2001:db8::1]:5000\""

/*
 * "192.0.2.10", "192.0.2.10:5000", "[2001:db8::1]", "[2001:db8::1]:0", or
 * an IPv6 address without brackets and so without a port ("::1").
 * 0, -1 (no such address), -2 (a port out of range).
 */
static int parse_source(const char *s, sl_ipaddr *out)
{
	char host[SL_IPADDR_TEXT_MAX];
	const char *end, *port = NULL, *colon = strchr(s, ':');
	int bracketed = s[0] == '[';
	uint64_t n;
	size_t len;

	if (bracketed) {
		if ((end = strchr(s, ']')) == NULL)
			return -1;
		if (end[1] == ':')
			port = end + 2;
		else if (end[1] != '\0')
			return -1;
		s++;
	} else if (colon != NULL && strchr(colon + 1, ':') == NULL) {
		end = colon; /* IPv4:PORT */
		port = colon + 1;
	} else {
		end = s + strlen(s);
	}
	len = (size_t)(end - s);
	if (len == 0 || len >= sizeof host)
		return -1;
	memcpy(host, s, len);
	host[len] = '\0';
	if (sl_ipaddr_parse(host, out) < 0 ||
	    (bracketed && out->family != SL_AF_INET6))
		return -1;
	if (port != NULL) {
		int r = parse_uint(port, &n);

		if (r < 0)
			return r;
		if (n > 65535)
			return -2;
		out->port = (uint16_t)n;
	}
	return 0;
}

static int get_source(struct ctx *c, const struct ynode *k,
		      const struct ynode *v, sl_source_conf *src)
{
	const char *s = yscalar(&c->e, k, v, EXP_SOURCE);
	struct yquote q;
	int r;

	if (s == NULL)
		return -1;
	if ((r = parse_source(s, &src->addr)) == -1)
		return fail(c, v, "%s: '%s' is not an IP address (expected %s)",
			    k->text, yquote(&q, s), EXP_SOURCE);
	if (r < 0)
		return fail(c, v, "%s: '%s' has a port out of range (expected "
				  "%s, the port 0-65535)",
			    k->text, yquote(&q, s), EXP_SOURCE);
	src->mark.line = v->line;
	src->mark.col = v->col;
	return 0;
}

static int set_upstream_source(struct ctx *c, const struct ynode *k,
			       const struct ynode *v, void *obj)
{
	return get_source(c, k, v, &((sl_upstream_conf *)obj)->source);
}

static int set_route_source(struct ctx *c, const struct ynode *k,
			    const struct ynode *v, void *obj)
{
	return get_source(c, k, v, &((sl_route_conf *)obj)->source);
}

/* The family of a TCP upstream's address where it is a literal (the
 * family a name resolves to is known only when it does): SL_AF_*. */
static int literal_family(const sl_upstream_conf *uc)
{
	sl_ipaddr a;

	if (uc->ep.kind != SL_EP_TCP || !uc->ep.host_is_literal ||
	    sl_ipaddr_parse(uc->ep.host, &a) < 0)
		return SL_AF_NONE;
	return a.family;
}

/* src (written at its mark) against uc's literal address: a source of
 * the other family could never connect to it. */
static int check_source_family(struct ctx *c, const sl_source_conf *src,
			       const sl_upstream_conf *uc)
{
	int fam = literal_family(uc);

	if (fam == SL_AF_NONE || fam == src->addr.family)
		return 0;
	return fail_at(c, src->mark.line, src->mark.col,
		       "source: an IPv%d address for the upstream '%s', "
		       "which is IPv%d (expected a source of the upstream's "
		       "family)",
		       src->addr.family, uc->address, fam);
}

/* ---- upstreams ---- */

#define EXP_UPSTREAMS "an endpoint, an upstream mapping, or a list of those"
#define EXP_WEIGHT "1-256"
#define EXP_SEND_PROXY "v1 or v2"

#define UC(m, ft) FIELD(sl_upstream_conf, m, ft)

static const struct keyword send_proxy_words[] = {
	{ "v1", 1 },
	{ "v2", 2 },
	{ NULL, 0 },
};

#define EXEC_ARGS_MAX 64
#define EXEC_ARG_MAX 4096
#define EXP_EXEC "a list of 1-64 strings: an absolute path or a name " \
		 "found in PATH, then the arguments"
#define EXP_EXEC_TIMEOUT "a duration 0-1h such as 5s, 0 = kill at once"

/*
 * exec: the command and its arguments, as a list (no shell splits a
 * string).  argv[0] is an absolute path, or a bare name looked up in the
 * PATH sluice started with (execvp's rule); a relative path with a
 * directory in it would depend on the daemon's working directory, so it
 * is refused.
 */
static int set_upstream_exec(struct ctx *c, const struct ynode *k,
			     const struct ynode *v, void *obj)
{
	sl_upstream_conf *uc = obj;
	const char *a0;
	struct yquote q;

	if (v->kind != YN_SEQ)
		return fail(c, v, "exec is %s (expected %s)",
			    v->kind == YN_SCALAR && v->null ? "empty"
							     : ykind_name(v->kind),
			    EXP_EXEC);
	if (v->nkid == 0)
		return fail(c, v, "exec: empty list (expected %s)", EXP_EXEC);
	if (v->nkid > EXEC_ARGS_MAX)
		return fail(c, v, "exec: %zu entries (expected at most %d)",
			    v->nkid, EXEC_ARGS_MAX);
	if ((uc->exec = calloc(v->nkid + 1, sizeof *uc->exec)) == NULL)
		return fail_at(c, 0, 0, "out of memory");
	for (size_t i = 0; i < v->nkid; i++) {
		if (get_string(c, k, v->kid[i], EXEC_ARG_MAX,
			       "1-4096 bytes without control characters",
			       &uc->exec[i]) < 0)
			return -1;
		uc->nexec = i + 1;
	}
	a0 = uc->exec[0];
	if (!path_absolute(a0) && strpbrk(a0, "/\\") != NULL)
		return fail(c, v->kid[0], "exec: '%s' is a relative path "
					  "(expected an absolute path, or a "
					  "name found in PATH)",
			    yquote(&q, a0));
	return 0;
}

enum {
	UK_ADDRESS,
	UK_WEIGHT,
	UK_BACKUP,
	UK_SEND_PROXY,
	UK_TLS,
	UK_SOURCE,
	UK_EXEC,
	UK_EXEC_TIMEOUT,
};

static const struct key upstream_keys[] = {
	[UK_ADDRESS] = { "address", K_ENDPOINT, UC(ep, sl_endpoint),
			 .off_n = UC(address, char *),
			 .off_mark = UC(mark, sl_conf_mark),
			 .expect = EXP_ADDRESS },
	[UK_WEIGHT] = { "weight", K_UINT, UC(weight, unsigned), .min = 1,
			.max = 256, .expect = EXP_WEIGHT },
	[UK_BACKUP] = { "backup", K_BOOL, UC(backup, int),
			.expect = "true or false" },
	[UK_SEND_PROXY] = { "send_proxy", K_ENUM, UC(send_proxy, int),
			    .expect = EXP_SEND_PROXY,
			    .what = "a PROXY protocol version",
			    .words = send_proxy_words },
	[UK_TLS] = { "tls", K_FUNC, 0, .set = set_upstream_tls,
		     .expect = EXP_TLS_UPSTREAM },
	[UK_SOURCE] = { "source", K_FUNC, 0, .set = set_upstream_source,
			.expect = EXP_SOURCE },
	[UK_EXEC] = { "exec", K_FUNC, 0, .set = set_upstream_exec,
		      .expect = EXP_EXEC },
	[UK_EXEC_TIMEOUT] = { "exec_timeout", K_DURATION,
			      UC(exec_timeout_ms, uint64_t), .max = 3600000,
			      .expect = EXP_EXEC_TIMEOUT },
};

/* systemd: names a socket systemd passed us to listen on: nothing to
 * connect to. */
static int upstream_connectable(struct ctx *c, const sl_upstream_conf *uc)
{
	if (uc->ep.kind != SL_EP_SYSTEMD)
		return 0;
	return fail_at(c, uc->mark.line, uc->mark.col,
		       "upstream '%s': systemd: is for listeners (a socket "
		       "systemd passed to listen on), not for upstreams",
		       uc->address);
}

/*
 * An exec: upstream has no address, and nothing that needs one: no PROXY
 * header (the command is no server that reads one), no TLS, no source.
 */
static int exec_check(struct ctx *c, const struct ynode *v,
		      const struct ynode *const *seen)
{
	static const int not_exec[] = { UK_SEND_PROXY, UK_TLS, UK_SOURCE };

	if (seen[UK_ADDRESS] != NULL && seen[UK_EXEC] != NULL)
		return fail(c, seen[UK_EXEC],
			    "exec and address in one upstream (expected one "
			    "of them)");
	if (seen[UK_ADDRESS] == NULL && seen[UK_EXEC] == NULL)
		return fail(c, v, "missing required key 'address' in upstream "
				  "(expected address: %s, or exec: %s)",
			    EXP_ADDRESS, EXP_EXEC);
	if (seen[UK_EXEC] == NULL) {
		if (seen[UK_EXEC_TIMEOUT] != NULL)
			return fail(c, seen[UK_EXEC_TIMEOUT],
				    "exec_timeout is only for an exec: "
				    "upstream");
		return 0;
	}
	for (size_t i = 0; i < NKEYS(not_exec); i++)
		if (seen[not_exec[i]] != NULL)
			return fail(c, seen[not_exec[i]],
				    "%s is not for an exec: upstream "
				    "(expected it only with an address)",
				    upstream_keys[not_exec[i]].name);
	return 0;
}

static int upstream_one(struct ctx *c, const struct ynode *k,
			const struct ynode *v, sl_upstream_conf *uc)
{
	const struct ynode *seen[NKEYS(upstream_keys)];

	uc->weight = 1;
	uc->exec_timeout_ms = 5000;
	if (v->kind == YN_SCALAR)
		return get_endpoint(c, k, v, EXP_UPSTREAMS, &uc->ep,
				    &uc->address, &uc->mark) < 0 ||
		       upstream_connectable(c, uc) < 0 ? -1 : 0;
	if (v->kind != YN_MAP)
		return fail(c, v, "%s item is %s (expected an endpoint or an "
				  "upstream mapping)",
			    k->text, ykind_name(v->kind));
	if (walk_map(c, v, "in upstream", upstream_keys, NKEYS(upstream_keys),
		     uc, seen) < 0 || upstream_connectable(c, uc) < 0 ||
	    exec_check(c, v, seen) < 0)
		return -1;
	if (uc->exec != NULL)
		return 0;
	/* A TCP upstream's host is the name its certificate is verified
	 * against; a socket file or a pipe has no such name to offer. */
	if (uc->tls.on && uc->tls.verify && uc->tls.server_name == NULL &&
	    uc->ep.kind != SL_EP_TCP)
		return fail_mark(c, uc->tls.mark,
			       "tls: an upstream at '%s' has no host name to "
			       "verify its certificate against (expected "
			       "server_name, or verify: false)",
			       uc->address);
	/* The agent takes its nonce first, and no PROXY header. */
	if (seen[UK_SEND_PROXY] != NULL && uc->send_proxy &&
	    uc->ep.kind == SL_EP_ASSUAN)
		return fail(c, seen[UK_SEND_PROXY],
			    "send_proxy is not for an assuan: upstream (the "
			    "agent expects its nonce first)");
	if (seen[UK_SOURCE] != NULL) {
		if (uc->ep.kind != SL_EP_TCP)
			return fail(c, seen[UK_SOURCE],
				    "source is not for this upstream "
				    "(expected only with a tcp:// address)");
		return check_source_family(c, &uc->source, uc);
	}
	return 0;
}

/* ---- routes ---- */

#define EXP_NAME "1-64 characters of A-Z a-z 0-9 _ . -"
#define EXP_CONNECT_TIMEOUT "a duration 1ms-365d such as 5s"
#define EXP_IDLE_TIMEOUT "a duration 0-365d such as 1h, 0 = none"
#define EXP_ATTEMPTS "1-16"
#define EXP_MAXCONN "0-4294967295, 0 = unlimited"
#define EXP_BUFFER "a size 1k-16m such as 16k"
#define EXP_BALANCE "round-robin, least-connections, random, source-hash " \
		    "or first"
#define EXP_PER_CLIENT "0-1000000, 0 = unlimited"
#define EXP_RATE "N/s, N/m or N/h with N 1-1000000, such as 100/s"
#define EXP_HALF_CLOSED "a duration 0-365d such as 30s, 0 = as idle_timeout"
#define EXP_MAX_DURATION "a duration 0-365d such as 8h, 0 = none"

/* A list, or one item standing for a list of one.  Returns the count and
 * the items (into v itself for a single item). */
static int items(struct ctx *c, const struct ynode *k, const struct ynode *v,
		 const char *expect, const struct ynode *const **item,
		 size_t *n)
{
	if (v->kind == YN_SEQ) {
		if (v->nkid == 0)
			return fail(c, v, "%s: empty list (expected %s)",
				    k->text, expect);
		*item = (const struct ynode *const *)v->kid;
		*n = v->nkid;
		return 0;
	}
	if (v->kind == YN_SCALAR && v->null)
		return fail(c, v, "%s has no value (expected %s)", k->text,
			    expect);
	*item = NULL;
	*n = 1;
	return 0;
}

static int route_name_eq(const void *item, const void *key)
{
	return strcmp(((const sl_route_conf *)item)->name, key) == 0;
}

static int set_name(struct ctx *c, const struct ynode *k,
		    const struct ynode *v, void *obj)
{
	sl_route_conf *rc = obj;
	const sl_route_conf *o;
	const char *s = yscalar(&c->e, k, v, EXP_NAME);
	struct yquote q;
	struct where w;
	uint64_t h;
	size_t n;

	if (s == NULL)
		return -1;
	n = strlen(s);
	if (n == 0 || n > ROUTE_NAME_MAX ||
	    strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
		      "0123456789_.-") != n)
		return fail(c, v, "%s: '%s' is not a valid route name "
				  "(expected %s)",
			    k->text, yquote(&q, s), EXP_NAME);
	/* Names are compared as written: "Web" and "web" are two routes. */
	h = sl_fnv1a(SL_FNV1A_INIT, s, n);
	if ((o = sl_hset_find(&c->names, h, route_name_eq, s)) != NULL)
		return fail(c, v, "%s: route '%s' is already defined at %s "
				  "(expected a unique name)",
			    k->text, s, where_at(&w, v->file, &o->mark));
	if ((rc->name = strdup(s)) == NULL ||
	    sl_hset_add(&c->names, h, rc) < 0)
		return fail_at(c, 0, 0, "out of memory");
	return 0;
}

static int set_listen(struct ctx *c, const struct ynode *k,
		      const struct ynode *v, void *obj)
{
	sl_route_conf *rc = obj;
	const struct ynode *const *item;
	size_t n;

	if (items(c, k, v, EXP_LISTEN, &item, &n) < 0)
		return -1;
	if ((rc->listen = calloc(n, sizeof *rc->listen)) == NULL)
		return fail_at(c, 0, 0, "out of memory");
	/* nlisten counts the entries filled so far: the uniqueness check
	 * reads them, and free needs them on an error half way. */
	for (size_t i = 0; i < n; i++) {
		rc->nlisten = i + 1;
		if (listen_one(c, k, item ? item[i] : v, &rc->listen[i]) < 0)
			return -1;
	}
	return 0;
}

static int set_upstreams(struct ctx *c, const struct ynode *k,
			 const struct ynode *v, void *obj)
{
	sl_route_conf *rc = obj;
	const struct ynode *const *item;
	size_t n;

	if (items(c, k, v, EXP_UPSTREAMS, &item, &n) < 0)
		return -1;
	if ((rc->upstreams = calloc(n, sizeof *rc->upstreams)) == NULL)
		return fail_at(c, 0, 0, "out of memory");
	for (size_t i = 0; i < n; i++) {
		rc->nupstreams = i + 1;
		if (upstream_one(c, k, item ? item[i] : v,
				 &rc->upstreams[i]) < 0)
			return -1;
	}
	return 0;
}

static int set_rate_limit(struct ctx *c, const struct ynode *k,
			  const struct ynode *v, void *obj)
{
	sl_route_conf *rc = obj;
	const char *s = yscalar(&c->e, k, v, EXP_RATE);
	const char *slash;
	struct yquote q;
	uint64_t n;

	if (s == NULL)
		return -1;
	slash = strchr(s, '/');
	if (slash == NULL || parse_digits(s, slash, &n) < 0 ||
	    (s[0] == '0' && slash - s > 1) ||
	    (strcmp(slash, "/s") != 0 && strcmp(slash, "/m") != 0 &&
	     strcmp(slash, "/h") != 0))
		return fail(c, v, "%s: '%s' is not a rate (expected %s)",
			    k->text, yquote(&q, s), EXP_RATE);
	if (n < 1 || n > 1000000)
		return fail(c, v, "%s: '%s' is out of range (expected %s)",
			    k->text, yquote(&q, s), EXP_RATE);
	rc->rate_count = (unsigned)n;
	rc->rate_period_ms = slash[1] == 's'   ? 1000
			     : slash[1] == 'm' ? 60000
					       : 3600000;
	return 0;
}

/* ---- health ---- */

#define EXP_HEALTH "a mapping with fails, cooldown and check"
#define EXP_FAILS "0-1000, 0 = never mark down"
#define EXP_COOLDOWN "a duration 1ms-1d such as 10s"
#define EXP_CHECK "a mapping with interval (and timeout, rise, fall, send, " \
		  "expect)"
#define EXP_INTERVAL "a duration 10ms-1d such as 5s"
#define EXP_CHECK_TIMEOUT "a duration 1ms-1d such as 2s, at most the interval"
#define EXP_RISE_FALL "1-100"
#define EXP_PROBE "a string of 1-1024 bytes"
#define PROBE_MAX 1024

#define HC(m, ft) FIELD(sl_health_conf, m, ft)

enum { CK_INTERVAL, CK_TIMEOUT, CK_RISE, CK_FALL, CK_SEND, CK_EXPECT };

static const struct key check_keys[] = {
	[CK_INTERVAL] = { "interval", K_DURATION, HC(interval_ms, uint64_t),
			  .min = 10, .max = 86400000, .expect = EXP_INTERVAL,
			  .flags = KF_REQUIRED },
	[CK_TIMEOUT] = { "timeout", K_DURATION, HC(timeout_ms, uint64_t),
			 .min = 1, .max = 86400000,
			 .expect = EXP_CHECK_TIMEOUT },
	[CK_RISE] = { "rise", K_UINT, HC(rise, unsigned), .min = 1,
		      .max = 100, .expect = EXP_RISE_FALL },
	[CK_FALL] = { "fall", K_UINT, HC(fall, unsigned), .min = 1,
		      .max = 100, .expect = EXP_RISE_FALL },
	[CK_SEND] = { "send", K_BYTES, HC(send, char *),
		      .off_n = HC(send_len, size_t), .max = PROBE_MAX,
		      .expect = EXP_PROBE },
	[CK_EXPECT] = { "expect", K_BYTES, HC(expect, char *),
			.off_n = HC(expect_len, size_t), .max = PROBE_MAX,
			.expect = EXP_PROBE },
};

/* The check's timeout: at most its interval; by default 2s, or the
 * interval when that is shorter. */
static int check_timeout(struct ctx *c, const struct ynode *map,
			 const struct ynode *const *seen, void *obj)
{
	sl_health_conf *h = obj;

	if (seen[CK_TIMEOUT] == NULL)
		h->timeout_ms = h->interval_ms < 2000 ? h->interval_ms : 2000;
	else if (h->timeout_ms > h->interval_ms)
		return fail(c, seen[CK_TIMEOUT],
			    "timeout is longer than the interval (expected "
			    "%s)",
			    EXP_CHECK_TIMEOUT);
	return 0;
}

static const struct key health_keys[] = {
	{ "fails", K_UINT, HC(fails, unsigned), .max = 1000,
	  .expect = EXP_FAILS },
	{ "cooldown", K_DURATION, HC(cooldown_ms, uint64_t), .min = 1,
	  .max = 86400000, .expect = EXP_COOLDOWN },
	{ "check", K_MAP, 0, SUB(check_keys), .where = "in check",
	  .check = check_timeout, .expect = EXP_CHECK },
};

/* ---- tcp_keepalive ---- */

#define EXP_KEEPALIVE "off, or a mapping with idle, interval and count"
#define EXP_KA_SECONDS "a duration of whole seconds 1s-32767s such as 60s"
#define EXP_KA_COUNT "1-127"

#define KA(m, ft) FIELD(sl_keepalive_conf, m, ft)

/* Linux's bounds (tcp(7)): the strictest of the systems sluice runs on. */
static const struct key keepalive_keys[] = {
	{ "idle", K_SECONDS, KA(idle_s, unsigned), .min = 1, .max = 32767,
	  .expect = EXP_KA_SECONDS },
	{ "interval", K_SECONDS, KA(interval_s, unsigned), .min = 1,
	  .max = 32767, .expect = EXP_KA_SECONDS },
	{ "count", K_UINT, KA(count, unsigned), .min = 1, .max = 127,
	  .expect = EXP_KA_COUNT },
};

/* tcp_keepalive: off, the one word it takes instead of a mapping. */
static int set_keepalive_off(struct ctx *c, const struct ynode *k,
			     const struct ynode *v, void *obj)
{
	if (get_word(c, k, v, "off", "neither off nor a mapping",
		     EXP_KEEPALIVE) < 0)
		return -1;
	((sl_keepalive_conf *)obj)->off = 1;
	return 0;
}
static const struct key keepalive_alt = { "tcp_keepalive", K_FUNC, 0,
					  .set = set_keepalive_off,
					  .expect = EXP_KEEPALIVE };

/* ---- a route's keys ---- */

#define EXP_QUEUE "a mapping with max (and timeout)"
#define EXP_QUEUE_MAX "1-1000000"
#define EXP_QUEUE_TIMEOUT "a duration 1ms-1h such as 10s"

#define RC(m, ft) FIELD(sl_route_conf, m, ft)

static const struct key queue_keys[] = {
	{ "max", K_UINT, RC(queue_max, unsigned), .min = 1, .max = 1000000,
	  .expect = EXP_QUEUE_MAX, .flags = KF_REQUIRED },
	{ "timeout", K_DURATION, RC(queue_timeout_ms, uint64_t), .min = 1,
	  .max = 3600000, .expect = EXP_QUEUE_TIMEOUT },
};

static const struct keyword balance_words[] = {
	{ "round-robin", SL_BALANCE_ROUND_ROBIN },
	{ "least-connections", SL_BALANCE_LEAST_CONN },
	{ "random", SL_BALANCE_RANDOM },
	{ "source-hash", SL_BALANCE_SOURCE_HASH },
	{ "first", SL_BALANCE_FIRST },
	{ NULL, 0 },
};

static const struct key route_keys[] = {
	{ "name", K_FUNC, 0, .set = set_name, .expect = EXP_NAME,
	  .flags = KF_REQUIRED },
	{ "listen", K_FUNC, 0, .set = set_listen, .expect = EXP_LISTEN,
	  .flags = KF_REQUIRED },
	{ "upstreams", K_FUNC, 0, .set = set_upstreams,
	  .expect = EXP_UPSTREAMS, .flags = KF_REQUIRED },
	{ "connect_timeout", K_DURATION, RC(connect_timeout_ms, uint64_t),
	  .min = 1, .max = DURATION_MAX_MS, .expect = EXP_CONNECT_TIMEOUT },
	{ "idle_timeout", K_DURATION, RC(idle_timeout_ms, uint64_t),
	  .max = DURATION_MAX_MS, .expect = EXP_IDLE_TIMEOUT },
	{ "connect_attempts", K_UINT, RC(connect_attempts, unsigned),
	  .min = 1, .max = ATTEMPTS_MAX, .expect = EXP_ATTEMPTS },
	{ "max_connections", K_UINT, RC(max_connections, unsigned),
	  .max = UINT32_MAX, .expect = EXP_MAXCONN },
	{ "buffer_size", K_SIZE, RC(buffer_size, size_t), .min = 1024,
	  .max = 16u * 1024 * 1024, .expect = EXP_BUFFER },
	{ "balance", K_ENUM, RC(balance, int), .expect = EXP_BALANCE,
	  .what = "a balancing method", .words = balance_words },
	{ "health", K_MAP, RC(health, sl_health_conf), SUB(health_keys),
	  .where = "in health", .expect = EXP_HEALTH },
	{ "queue", K_MAP, 0, SUB(queue_keys), .where = "in queue",
	  .expect = EXP_QUEUE },
	{ "allow", K_CIDRS, RC(acl.allow, sl_cidr *),
	  .off_n = RC(acl.nallow, size_t), .expect = EXP_CIDRS },
	{ "deny", K_CIDRS, RC(acl.deny, sl_cidr *),
	  .off_n = RC(acl.ndeny, size_t), .expect = EXP_CIDRS },
	{ "max_connections_per_client", K_UINT, RC(max_per_client, unsigned),
	  .max = 1000000, .expect = EXP_PER_CLIENT },
	{ "rate_limit", K_FUNC, 0, .set = set_rate_limit, .expect = EXP_RATE },
	{ "half_closed_timeout", K_DURATION,
	  RC(half_closed_timeout_ms, uint64_t), .max = DURATION_MAX_MS,
	  .expect = EXP_HALF_CLOSED },
	{ "max_duration", K_DURATION, RC(max_duration_ms, uint64_t),
	  .max = DURATION_MAX_MS, .expect = EXP_MAX_DURATION },
	{ "tcp_keepalive", K_MAP, RC(keepalive, sl_keepalive_conf),
	  SUB(keepalive_keys), .where = "in tcp_keepalive",
	  .alt = &keepalive_alt, .expect = EXP_KEEPALIVE },
	{ "source", K_FUNC, 0, .set = set_route_source, .expect = EXP_SOURCE },
};

/* What only the whole route can judge.  Its source becomes that of
 * each TCP upstream without one of its own. */
static int route_check(struct ctx *c, const struct ynode *r,
		       sl_route_conf *rc)
{
	size_t primaries = 0;

	for (size_t i = 0; i < rc->nupstreams; i++)
		primaries += !rc->upstreams[i].backup;
	if (primaries == 0)
		return fail(c, r, "route '%s': every upstream is a backup "
				  "(expected at least one with backup: false)",
			    rc->name);
	for (size_t i = 0; rc->source.addr.family != SL_AF_NONE &&
			   i < rc->nupstreams;
	     i++) {
		sl_upstream_conf *uc = &rc->upstreams[i];

		if (uc->ep.kind != SL_EP_TCP ||
		    uc->source.addr.family != SL_AF_NONE)
			continue;
		if (check_source_family(c, &rc->source, uc) < 0)
			return -1;
		uc->source = rc->source;
	}
	return 0;
}

#define EXP_ROUTES "a list of routes"

/* A routes: value: a list of at least one. */
static int check_routes(struct ctx *c, const struct ynode *k,
			const struct ynode *v)
{
	if (v->kind != YN_SEQ)
		return v->kind == YN_SCALAR && v->null
			       ? fail(c, v, "%s has no value (expected %s)",
				      k->text, EXP_ROUTES)
			       : fail(c, v, "%s is %s (expected %s)", k->text,
				      ykind_name(v->kind), EXP_ROUTES);
	if (v->nkid == 0)
		return fail(c, v, "%s: empty list (expected at least one "
				  "route)",
			    k->text);
	return 0;
}

/* The config's n routes and the included files' after them. */
static int routes_alloc(struct ctx *c, size_t n)
{
	if ((c->cfg->routes = calloc(n + c->nxroutes,
				     sizeof *c->cfg->routes)) == NULL)
		return fail_at(c, 0, 0, "out of memory");
	return 0;
}

/* Route i of the config, from r. */
static int read_route(struct ctx *c, const struct ynode *r, size_t i)
{
	const struct ynode *seen[NKEYS(route_keys)];
	sl_route_conf *rc = &c->cfg->routes[i];

	c->cfg->nroutes = i + 1;
	c->route = i;
	if (r->kind != YN_MAP)
		return fail(c, r, "route is %s (expected a mapping with name, "
				  "listen and upstreams)",
			    r->kind == YN_SCALAR && r->null
				    ? "empty"
				    : ykind_name(r->kind));
	mark_node(&rc->mark, r);
	rc->connect_timeout_ms = 5000;
	rc->idle_timeout_ms = 3600000;
	rc->buffer_size = 65536;
	rc->health.fails = 3;
	rc->health.cooldown_ms = 10000;
	rc->health.rise = 2;
	rc->health.fall = 3;
	rc->queue_timeout_ms = 10000;
	if (walk_map(c, r, "in route", route_keys, NKEYS(route_keys), rc,
		     seen) < 0)
		return -1;
	if (route_check(c, r, rc) < 0)
		return -1;
	if (rc->connect_attempts == 0)
		rc->connect_attempts = rc->nupstreams < ATTEMPTS_MAX
					       ? (unsigned)rc->nupstreams
					       : ATTEMPTS_MAX;
	return 0;
}

static int set_routes(struct ctx *c, const struct ynode *k,
		      const struct ynode *v, void *obj)
{
	(void)obj;
	if (check_routes(c, k, v) < 0 || routes_alloc(c, v->nkid) < 0)
		return -1;
	for (size_t i = 0; i < v->nkid; i++)
		if (read_route(c, v->kid[i], i) < 0)
			return -1;
	return 0;
}

/*
 * The included files' routes, after the config's own (none when it has
 * no routes: key; then the included files must have some).
 */
static int read_included_routes(struct ctx *c, const struct ynode *root)
{
	size_t base = c->cfg->nroutes;

	if (c->cfg->routes == NULL) {
		if (c->nxroutes == 0)
			return fail(c, root, "missing required key 'routes' "
					     "at top level (expected routes: "
					     "%s)",
				    EXP_ROUTES);
		if (routes_alloc(c, 0) < 0)
			return -1;
	}
	for (size_t i = 0; i < c->nxroutes; i++)
		if (read_route(c, c->xroutes[i], base + i) < 0)
			return -1;
	return 0;
}

/* ---- includes ---- */

#define EXP_INCLUDE "a file name or pattern such as conf.d/*.yaml, or a " \
		    "list of those"
/* Files in one config, itself and every included one. */
#define INCLUDE_FILES_MAX 10000

static int (*include_check)(const char *path, char *err, size_t errlen);

void sl_config_set_include_check(int (*check)(const char *path, char *err,
					      size_t errlen))
{
	include_check = check;
}

/*
 * All of f into a malloc'd buffer (at most CONF_MAX_BYTES).  0, or -1
 * with errno set (EFBIG: too large).
 */
static int read_all(FILE *f, char **text, size_t *len)
{
	char *buf = NULL;
	size_t cap = 0;

	*len = 0;
	for (;;) {
		size_t n;

		if (*len == cap) {
			char *nb;

			if (cap > CONF_MAX_BYTES) {
				free(buf);
				errno = EFBIG;
				return -1;
			}
			cap = cap ? cap * 2 : 16384;
			if ((nb = realloc(buf, cap)) == NULL) {
				free(buf);
				errno = ENOMEM;
				return -1;
			}
			buf = nb;
		}
		n = fread(buf + *len, 1, cap - *len, f);
		*len += n;
		if (n == 0)
			break;
	}
	if (ferror(f)) {
		int e = errno;

		free(buf);
		errno = e ? e : EIO;
		return -1;
	}
	*text = buf;
	return 0;
}

/* What read_all()'s errno means, as the end of a message. */
static const char *read_error(int err)
{
	return err == EFBIG ? "too large (at most 16 MiB)" : strerror(err);
}

/* A file joins the list: its name, identity and includer.  Its index, or
 * -1 out of memory. */
static long add_file(struct ctx *c, const char *name, const sl_confsys_id *id,
		     const struct ynode *by)
{
	struct conf_file *nf, *f;

	if ((nf = realloc(c->files, (c->nfiles + 1) * sizeof *nf)) == NULL)
		return -1;
	c->files = nf;
	f = &nf[c->nfiles];
	memset(f, 0, sizeof *f);
	if ((f->name = strdup(name)) == NULL)
		return -1;
	if (id != NULL) {
		f->id = *id;
		f->has_id = 1;
	}
	f->by = by;
	return (long)c->nfiles++;
}

/*
 * File i's text into its tree, variables expanded.  The node and text
 * caps count over every file: the tree starts from what the one before
 * left.
 */
static int parse_file(struct ctx *c, size_t i, const char *text, size_t len)
{
	struct conf_file *f = &c->files[i];
	const char *keep = c->e.name;
	int r;

	if (i > 0) {
		f->tree.nodes = c->files[i - 1].tree.nodes;
		f->tree.text = c->files[i - 1].tree.text;
	}
	c->e.name = f->name; /* its nodes' file, and its syntax errors' */
	if (len > CONF_MAX_BYTES)
		r = fail_at(c, 0, 0, "config too large (at most %u MiB)",
			    CONF_MAX_BYTES >> 20);
	else if ((r = ytree_build(&f->tree, text, len, &c->e)) == 0)
		r = ytree_expand(&f->tree, &c->e, sl_confsys_getenv);
	c->e.name = keep;
	return r;
}

static int read_file_includes(struct ctx *c, size_t i, unsigned depth);

/*
 * An included file's top level: routes (appended to the list) and
 * include, nothing else.  An empty file is fine.
 */
static int check_included(struct ctx *c, size_t i, unsigned depth)
{
	const struct ynode *root = c->files[i].tree.root;
	const struct ynode *seen[2] = { NULL, NULL };
	struct yquote q;

	if (root == NULL)
		return 0;
	if (root->kind != YN_MAP)
		return fail(c, root, "an included file is %s (expected a "
				     "mapping with routes or include)",
			    ykind_name(root->kind));
	for (size_t j = 0; j + 1 < root->nkid; j += 2) {
		const struct ynode *k = root->kid[j], *v = root->kid[j + 1];
		const struct ynode **nx;
		int which;

		if (k->kind != YN_SCALAR || k->null ||
		    ((which = key_is(k, "routes") ? 0
			      : key_is(k, "include") ? 1
						     : -1) < 0))
			return fail(c, k, "'%s' in an included file (only "
					  "routes: and include: may appear "
					  "there)",
				    k->kind == YN_SCALAR
					    ? yquote(&q, k->text)
					    : ykind_name(k->kind));
		if (seen[which] != NULL)
			return fail(c, k, "duplicate key '%s' at top level "
					  "(each key once; first at %u:%u)",
				    k->text, seen[which]->line,
				    seen[which]->col);
		seen[which] = k;
		if (which == 1)
			continue;
		if (check_routes(c, k, v) < 0)
			return -1;
		nx = realloc(c->xroutes, (c->nxroutes + v->nkid) * sizeof *nx);
		if (nx == NULL)
			return fail_at(c, 0, 0, "out of memory");
		c->xroutes = nx;
		memcpy(nx + c->nxroutes, v->kid, v->nkid * sizeof *nx);
		c->nxroutes += v->nkid;
	}
	return read_file_includes(c, i, depth);
}

/* The file name, one of those pattern p matched, included at depth. */
static int include_file(struct ctx *c, const struct ynode *p,
			const char *name, unsigned depth)
{
	char cerr[512] = "", *text = NULL;
	sl_confsys_id id;
	size_t len;
	long i;
	FILE *f;
	int r, e;

	if (c->nfiles >= INCLUDE_FILES_MAX)
		return fail(c, p, "include: more than %u files in all",
			    INCLUDE_FILES_MAX);
	if (include_check != NULL &&
	    include_check(name, cerr, sizeof cerr) < 0)
		return fail(c, p, "include: %s", cerr);
	if ((f = sl_confsys_open(name, &id)) == NULL)
		return fail(c, p, "include: cannot open %s: %s", name,
			    strerror(errno));
	for (size_t j = 0; j < c->nfiles; j++) {
		const struct conf_file *o = &c->files[j];

		if (!o->has_id || o->id.dev != id.dev || o->id.ino != id.ino)
			continue;
		fclose(f);
		if (o->by == NULL)
			return fail(c, p, "include: %s is the config itself "
					  "(each file is read once)",
				    name);
		return fail(c, p, "include: %s is already included at "
				  "%s:%u:%u (each file is read once)",
			    name, o->by->file, o->by->line, o->by->col);
	}
	r = read_all(f, &text, &len);
	e = errno;
	fclose(f);
	if (r < 0)
		return fail(c, p, "include: cannot read %s: %s", name,
			    read_error(e));
	if ((i = add_file(c, name, &id, p)) < 0) {
		free(text);
		return fail_at(c, 0, 0, "out of memory");
	}
	r = parse_file(c, (size_t)i, text != NULL ? text : "", len);
	free(text);
	if (r < 0)
		return -1;
	return check_included(c, (size_t)i, depth);
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * One include pattern, p, of a file at depth - 1: relative to that
 * file's folder; with a wildcard every match in byte order (none is
 * fine), without one the file, which must exist.
 */
static int include_pattern(struct ctx *c, const struct ynode *k,
			   const struct ynode *p, unsigned depth)
{
	char gerr[512] = "", **names = NULL, *dir;
	size_t n = 0, dl = 0;
	struct yquote q;
	int r = 0;

	if (p->kind != YN_SCALAR || p->null)
		return fail(c, p, "%s item is %s (expected %s)", k->text,
			    p->kind == YN_SCALAR ? "empty"
						 : ykind_name(p->kind),
			    EXP_INCLUDE);
	if (p->text[0] == '\0' || strlen(p->text) > FILE_PATH_MAX)
		return fail(c, p, "%s: '%s' has a bad length (expected %s)",
			    k->text, yquote(&q, p->text), EXP_INCLUDE);
	if (!path_absolute(p->text))
		for (const char *s = p->file; *s != '\0'; s++)
			if (strchr(sl_confsys_seps, *s) != NULL)
				dl = (size_t)(s - p->file) + 1;
	if ((dir = malloc(dl + strlen(p->text) + 1)) == NULL)
		return fail_at(c, 0, 0, "out of memory");
	memcpy(dir, p->file, dl);
	dir[dl] = '\0';
	if (!sl_confsys_has_wildcard(p->text)) {
		strcat(dir, p->text);
		r = include_file(c, p, dir, depth);
		free(dir);
		return r;
	}
	if (sl_confsys_glob(dir, p->text, &names, &n, gerr, sizeof gerr) < 0)
		r = fail(c, p, "%s: '%s': %s", k->text, yquote(&q, p->text),
			 gerr);
	free(dir);
	if (n > 1)
		qsort(names, n, sizeof *names, cmp_names);
	for (size_t i = 0; i < n && r == 0; i++)
		r = include_file(c, p, names[i], depth);
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	return r;
}

/* The include: key of file i (at depth), if it has one. */
static int read_file_includes(struct ctx *c, size_t i, unsigned depth)
{
	const struct ynode *root = c->files[i].tree.root;
	const struct ynode *const *item;
	size_t n;

	if (root == NULL || root->kind != YN_MAP)
		return 0;
	for (size_t j = 0; j + 1 < root->nkid; j += 2) {
		const struct ynode *k = root->kid[j], *v = root->kid[j + 1];

		if (k->kind != YN_SCALAR || !key_is(k, "include"))
			continue;
		if (depth == INCLUDE_DEPTH_MAX)
			return fail(c, k, "include: nested too deep (at most "
					  "%d levels of files included by "
					  "included files)",
				    INCLUDE_DEPTH_MAX);
		if (items(c, k, v, EXP_INCLUDE, &item, &n) < 0)
			return -1;
		for (size_t m = 0; m < n; m++)
			if (include_pattern(c, k, item ? item[m] : v,
					    depth + 1) < 0)
				return -1;
		/* A second include: is the duplicate key walk_map() or
		 * check_included() reports. */
		return 0;
	}
	return 0;
}

/* include: was read before the rest (read_file_includes()). */
static int set_include(struct ctx *c, const struct ynode *k,
		       const struct ynode *v, void *obj)
{
	(void)c;
	(void)k;
	(void)v;
	(void)obj;
	return 0;
}

/* ---- top level ---- */

#define EXP_THREADS "auto or 1-1024"
#define EXP_THREAD_POLICY "batch or normal"
#define EXP_DRAIN "a duration 0-365d such as 30s"
#define EXP_LOGLEVEL "error, warn, info or debug"
#define EXP_LOG "stderr, syslog, or an absolute file path"
#define EXP_FACILITY "daemon, user or local0-local7"
#define EXP_PIDFILE "an absolute file path"
#define EXP_ACCESS "off, stderr, syslog, an absolute file path, or a mapping " \
		   "with to and format"
#define EXP_ACCESS_TO "off, stderr, syslog, or an absolute file path"
#define EXP_FORMAT "text or json"
#define EXP_RESOLVE "a duration 1s-1d such as 30s"
#define EXP_ADMIN "a mapping with listen (and allow, deny), an endpoint, or " \
		  "a port"
#define EXP_ADMIN_LISTEN "an endpoint such as tcp://127.0.0.1:9090, or a port"

#define TOP(m, ft) FIELD(sl_config, m, ft)
#define AD(m, ft) FIELD(sl_admin_conf, m, ft)

static const struct keyword threads_words[] = { { "auto", 0 }, { NULL, 0 } };
static const struct keyword policy_words[] = {
	{ "batch", 1 },
	{ "normal", 0 },
	{ NULL, 0 },
};
static const struct keyword log_words[] = {
	{ "stderr", 0 },
	{ "syslog", 0 },
	{ NULL, 0 },
};
static const struct keyword access_to_words[] = {
	{ "off", 0 },
	{ "stderr", 0 },
	{ "syslog", 0 },
	{ NULL, 0 },
};
static const struct keyword format_words[] = {
	{ "json", 1 },
	{ "text", 0 },
	{ NULL, 0 },
};

/* access_log: a destination, or a mapping with it and a format. */
static const struct key access_keys[] = {
	{ "to", K_PATH, TOP(access_log, char *), .max = FILE_PATH_MAX,
	  .expect = EXP_ACCESS_TO, .what = "an access log destination",
	  .words = access_to_words, .flags = KF_REQUIRED },
	{ "format", K_ENUM, TOP(access_json, int), .expect = EXP_FORMAT,
	  .what = "a format", .words = format_words },
};

/* admin: an endpoint or a port, or a mapping with it and access lists. */
static const struct key admin_keys[] = {
	{ "listen", K_ENDPOINT, AD(ep, sl_endpoint),
	  .off_n = AD(address, char *), .off_mark = AD(mark, sl_conf_mark),
	  .expect = EXP_ADMIN_LISTEN, .flags = KF_REQUIRED | KF_PORT },
	{ "allow", K_CIDRS, AD(acl.allow, sl_cidr *),
	  .off_n = AD(acl.nallow, size_t), .expect = EXP_CIDRS },
	{ "deny", K_CIDRS, AD(acl.deny, sl_cidr *),
	  .off_n = AD(acl.ndeny, size_t), .expect = EXP_CIDRS },
};
static const struct key admin_alt = {
	"admin", K_ENDPOINT, AD(ep, sl_endpoint),
	.off_n = AD(address, char *), .off_mark = AD(mark, sl_conf_mark),
	.expect = EXP_ADMIN, .flags = KF_PORT
};

static const struct key top_keys[] = {
	{ "threads", K_UINT, TOP(threads, unsigned), .min = 1, .max = 1024,
	  .expect = EXP_THREADS, .words = threads_words },
	{ "thread_policy", K_ENUM, TOP(thread_batch, int),
	  .expect = EXP_THREAD_POLICY, .what = "a thread policy",
	  .words = policy_words },
	{ "max_connections", K_UINT, TOP(max_connections, unsigned),
	  .max = UINT32_MAX, .expect = EXP_MAXCONN },
	{ "drain_timeout", K_DURATION, TOP(drain_timeout_ms, uint64_t),
	  .max = DURATION_MAX_MS, .expect = EXP_DRAIN },
	{ "log_level", K_ENUM, TOP(log_level, int), .expect = EXP_LOGLEVEL,
	  .what = "a log level", .parse = sl_log_level_parse },
	{ "log", K_PATH, TOP(log, char *), .max = FILE_PATH_MAX,
	  .expect = EXP_LOG, .what = "a log destination", .words = log_words },
	{ "syslog_facility", K_ENUM, TOP(syslog_facility, int),
	  .expect = EXP_FACILITY, .what = "a syslog facility",
	  .parse = sl_log_facility_parse },
	{ "pidfile", K_PATH, TOP(pidfile, char *), .max = FILE_PATH_MAX,
	  .expect = EXP_PIDFILE, .what = "an absolute path" },
	{ "user", K_STRING, TOP(user, char *), .max = USER_NAME_MAX,
	  .expect = EXP_USER },
	{ "group", K_STRING, TOP(group, char *), .max = USER_NAME_MAX,
	  .expect = EXP_GROUP },
	{ "access_log", K_MAP, 0, SUB(access_keys), .where = "in access_log",
	  .alt = &access_keys[0], .expect = EXP_ACCESS },
	{ "allow", K_CIDRS, TOP(acl.allow, sl_cidr *),
	  .off_n = TOP(acl.nallow, size_t), .expect = EXP_CIDRS },
	{ "deny", K_CIDRS, TOP(acl.deny, sl_cidr *),
	  .off_n = TOP(acl.ndeny, size_t), .expect = EXP_CIDRS },
	{ "resolve_interval", K_DURATION, TOP(resolve_interval_ms, uint64_t),
	  .min = 1000, .max = 86400000, .expect = EXP_RESOLVE },
	{ "admin", K_MAP, TOP(admin, sl_admin_conf), SUB(admin_keys),
	  .where = "in admin", .alt = &admin_alt, .expect = EXP_ADMIN },
	/* Required, unless included files have routes (read_included_
	 * routes() says so then). */
	{ "routes", K_FUNC, 0, .set = set_routes, .expect = EXP_ROUTES },
	{ "include", K_FUNC, 0, .set = set_include, .expect = EXP_INCLUDE },
};

/* The admin listener takes an endpoint no route listens on. */
static int admin_check(struct ctx *c, const sl_config *cfg)
{
	const sl_admin_conf *a = &cfg->admin;
	struct yquote q;
	struct where w;

	if (a->address == NULL)
		return 0;
	for (size_t i = 0; i < cfg->nroutes; i++) {
		const sl_route_conf *rc = &cfg->routes[i];

		for (size_t j = 0; j < rc->nlisten; j++)
			if (sl_endpoint_equal(&rc->listen[j].ep, &a->ep))
				return fail_mark(c, a->mark,
						 "admin: '%s' is already used "
						 "by route '%s' at %s (each "
						 "endpoint is listened on "
						 "once)",
						 yquote(&q, a->address),
						 rc->name,
						 where_at(&w, a->mark.file,
							  &rc->listen[j].mark));
	}
	return 0;
}

static void acl_conf_free(sl_acl_conf *a)
{
	free(a->allow);
	free(a->deny);
}

static void strings_free(char **v, size_t n)
{
	for (size_t i = 0; v != NULL && i < n; i++)
		free(v[i]);
	free(v);
}

void sl_tls_allow_free(sl_tls_allow_conf *a)
{
	strings_free(a->cn, a->ncn);
	strings_free(a->dns, a->ndns);
	strings_free(a->uri, a->nuri);
	memset(a, 0, sizeof *a);
}

static int strings_copy(char ***to, size_t *nto, char *const *from,
			size_t n)
{
	*to = NULL;
	*nto = 0;
	if (n == 0)
		return 0;
	if ((*to = calloc(n, sizeof **to)) == NULL)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (((*to)[i] = strdup(from[i])) == NULL)
			return -1;
		*nto = i + 1;
	}
	return 0;
}

int sl_tls_allow_copy(sl_tls_allow_conf *to, const sl_tls_allow_conf *from)
{
	memset(to, 0, sizeof *to);
	to->any = from->any;
	if (strings_copy(&to->cn, &to->ncn, from->cn, from->ncn) < 0 ||
	    strings_copy(&to->dns, &to->ndns, from->dns, from->ndns) < 0 ||
	    strings_copy(&to->uri, &to->nuri, from->uri, from->nuri) < 0) {
		sl_tls_allow_free(to);
		return -1;
	}
	return 0;
}

static void tls_listen_free(sl_tls_listen_conf *t)
{
	free(t->cert);
	free(t->key);
	free(t->client_ca);
	sl_tls_allow_free(&t->allow);
	free(t->ciphers);
	free(t->ciphersuites);
	strings_free(t->alpn, t->nalpn);
}

static void tls_upstream_free(sl_tls_upstream_conf *t)
{
	free(t->ca);
	free(t->server_name);
	free(t->cert);
	free(t->key);
	free(t->ciphers);
	free(t->ciphersuites);
	strings_free(t->alpn, t->nalpn);
}

/* ---- entry points ----------------------------------------------------- */

/* The files' names go to the config, where its marks point. */
static int keep_files(struct ctx *c, sl_config *cfg)
{
	if ((cfg->files = calloc(c->nfiles, sizeof *cfg->files)) == NULL)
		return fail_at(c, 0, 0, "out of memory");
	for (size_t i = 0; i < c->nfiles; i++) {
		cfg->files[i] = c->files[i].name;
		c->files[i].name = NULL;
	}
	cfg->nfiles = c->nfiles;
	return 0;
}

/* Pass two: the config a document's tree describes. */
static int load_tree(struct ctx *c, const struct ynode *root, sl_config **out)
{
	const struct ynode *seen[NKEYS(top_keys)];
	sl_config *cfg;
	int r;

	if (root == NULL)
		return fail_at(c, 1, 1, "empty config (expected a mapping with "
					"routes)");
	if (root->kind != YN_MAP)
		return fail(c, root, "top level is %s (expected a mapping with "
				     "routes)",
			    root->kind == YN_SCALAR && root->null
				    ? "empty"
				    : ykind_name(root->kind));
	if ((cfg = calloc(1, sizeof *cfg)) == NULL ||
	    (cfg->path = strdup(c->e.name)) == NULL) {
		free(cfg);
		return fail_at(c, 0, 0, "out of memory");
	}
	cfg->drain_timeout_ms = 30000;
	cfg->log_level = SL_LOG_INFO;
	cfg->thread_batch = 1;
	cfg->resolve_interval_ms = 30000;
	c->cfg = cfg;
	r = walk_map(c, root, "at top level", top_keys, NKEYS(top_keys), cfg,
		     seen);
	if (r == 0)
		r = read_included_routes(c, root);
	sl_hset_free(&c->names);
	sl_hset_free(&c->listens);
	if (r < 0 || admin_check(c, cfg) < 0 || keep_files(c, cfg) < 0) {
		sl_config_free(cfg);
		return -1;
	}
	*out = cfg;
	return 0;
}

/*
 * The config's text (file 0 of c), its includes, then pass two over it.
 * Included files are read first, so their syntax and their top level are
 * judged before the config's keys are.
 */
static int load(struct ctx *c, const char *text, size_t len, sl_config **out)
{
	int r = parse_file(c, 0, text, len);

	if (r == 0)
		r = read_file_includes(c, 0, 0);
	if (r == 0)
		r = load_tree(c, c->files[0].tree.root, out);
	for (size_t i = 0; i < c->nfiles; i++) {
		ytree_free(&c->files[i].tree);
		free(c->files[i].name);
	}
	free(c->files);
	free(c->xroutes);
	return r;
}

/* The config's own file joins the list and names its messages. */
static int start(struct ctx *c, const char *name, const sl_confsys_id *id)
{
	if (add_file(c, name, id, NULL) < 0) {
		free(c->files != NULL ? c->files[0].name : NULL);
		free(c->files);
		c->files = NULL;
		return fail_at(c, 0, 0, "out of memory");
	}
	c->e.name = c->files[0].name;
	return 0;
}

int sl_config_load_string(const char *text, size_t len, const char *name,
			  sl_config **out, char *err, size_t errlen)
{
	struct ctx c = { .e = { .name = name != NULL ? name : "<string>",
			       .err = err,
			       .errlen = errlen } };

	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if (out == NULL)
		return -1;
	*out = NULL;
	if (text == NULL)
		text = "";
	if (start(&c, c.e.name, NULL) < 0)
		return -1;
	return load(&c, text, len, out) < 0 ? -1 : 0;
}

int sl_config_load(const char *path, sl_config **out, char *err,
		   size_t errlen)
{
	struct ctx c = { .e = { .name = path != NULL ? path : "<null>",
			       .err = err,
			       .errlen = errlen } };
	char *buf = NULL;
	sl_confsys_id id;
	size_t len = 0;
	FILE *f;
	int r, e;

	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if (out == NULL)
		return -1;
	*out = NULL;
	if (path == NULL)
		return fail_at(&c, 0, 0, "no config file given");
	if ((f = sl_confsys_open(path, &id)) == NULL)
		return fail_at(&c, 0, 0, "cannot open: %s", strerror(errno));
	r = read_all(f, &buf, &len);
	e = errno;
	fclose(f);
	if (r < 0)
		return e == EFBIG ? fail_at(&c, 0, 0, "config too large (at "
						      "most %u MiB)",
					    CONF_MAX_BYTES >> 20)
		       : e == ENOMEM
			       ? fail_at(&c, 0, 0, "out of memory")
			       : fail_at(&c, 0, 0, "cannot read: %s",
					 strerror(e));
	if (start(&c, path, &id) < 0) {
		free(buf);
		return -1;
	}
	r = load(&c, buf != NULL ? buf : "", len, out);
	free(buf);
	return r < 0 ? -1 : 0;
}

const char *sl_conf_file(const sl_config *cfg, const sl_conf_mark *m)
{
	return m->file != NULL ? m->file : cfg->path;
}

void sl_config_free(sl_config *cfg)
{
	if (cfg == NULL)
		return;
	for (size_t i = 0; i < cfg->nroutes; i++) {
		sl_route_conf *rc = &cfg->routes[i];

		for (size_t j = 0; j < rc->nlisten; j++) {
			free(rc->listen[j].address);
			free(rc->listen[j].owner);
			free(rc->listen[j].group);
			free(rc->listen[j].security);
			free(rc->listen[j].trusted);
			tls_listen_free(&rc->listen[j].tls);
		}
		free(rc->listen);
		for (size_t j = 0; j < rc->nupstreams; j++) {
			free(rc->upstreams[j].address);
			strings_free(rc->upstreams[j].exec,
				     rc->upstreams[j].nexec);
			tls_upstream_free(&rc->upstreams[j].tls);
		}
		free(rc->upstreams);
		free(rc->name);
		free(rc->health.send);
		free(rc->health.expect);
		acl_conf_free(&rc->acl);
	}
	acl_conf_free(&cfg->acl);
	acl_conf_free(&cfg->admin.acl);
	free(cfg->admin.address);
	free(cfg->routes);
	free(cfg->log);
	free(cfg->pidfile);
	free(cfg->user);
	free(cfg->group);
	free(cfg->access_log);
	free(cfg->path);
	for (size_t i = 0; i < cfg->nfiles; i++)
		free(cfg->files[i]);
	free(cfg->files);
	free(cfg);
}
