/*
 * Config loading in two passes.  Pass one (yamltree.c) turns libyaml's
 * events into a small tree of nodes with their positions, refusing what the
 * schema never needs (anchors, aliases, unknown tags, several documents) so
 * pass two sees plain data.  Pass two, here, walks the tree against
 * per-mapping key tables and fills a struct sl_config.  Both stop at the
 * first error, so there is exactly one message; a YAML syntax error
 * anywhere wins over schema errors, which come in document order.
 *
 * To add a key: write a setter and add a line to the table of its mapping;
 * the unknown-key message lists the table, so it stays right by itself.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errf.h"
#include "hset.h"
#include "log.h"
#include "yamltree.h"

/* A config is read into memory whole; nothing sane comes near this. */
#define CONF_MAX_BYTES (16u * 1024 * 1024)
/* Timers add a duration to the loop clock: keep far from overflow. */
#define DURATION_MAX_MS (365ull * 24 * 3600 * 1000)
#define ROUTE_NAME_MAX 64
#define USER_NAME_MAX 256
#define SECURITY_MAX 4096
#define ATTEMPTS_MAX 16

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

struct ctx {
	struct yerr e; /* the file's name, and where its one message goes */
	sl_config *cfg;
	size_t route; /* index of the route being read */
	/* What the uniqueness checks compare against, so that a config of
	 * N routes costs N lookups rather than N * N / 2 comparisons. */
	sl_hset names;	 /* routes read so far (sl_route_conf), by name */
	sl_hset listens; /* listeners read so far (sl_listen_conf) */
};

#define fail_at(c, line, col, ...) \
	yerr_at(&(c)->e, (line), (col), __VA_ARGS__)
#define fail(c, node, ...) fail_at((c), (node)->line, (node)->col, __VA_ARGS__)

struct key {
	const char *name;
	/* Checks v (the value of key k) and stores it into obj. */
	int (*set)(struct ctx *c, const struct ynode *k, const struct ynode *v,
		   void *obj);
	const char *expect; /* for messages: what a value looks like */
	int required;
};

#define NKEYS(t) (sizeof(t) / sizeof((t)[0]))

static int key_is(const struct ynode *k, const char *name)
{
	return strcmp(k->text, name) == 0;
}

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
		if (keys[j].set(c, k, v, obj) < 0)
			return -1;
	}
	for (size_t j = 0; j < nkeys; j++)
		if (keys[j].required && seen[j] == NULL)
			return fail(c, map,
				    "missing required key '%s' %s (expected "
				    "%s: %s)",
				    keys[j].name, where, keys[j].name,
				    keys[j].expect);
	return 0;
}

/*
 * A decimal integer in [min, max]: digits only, so "0x10", "+4", "-1",
 * "1_000" and "1e3" are refused, and so is "010", which YAML 1.1 reads as
 * octal and a reader might not.
 */
static int get_uint(struct ctx *c, const struct ynode *k, const struct ynode *v,
		    uint64_t min, uint64_t max, const char *expect,
		    uint64_t *out)
{
	const char *s = yscalar(&c->e, k, v, expect);
	struct yquote q;
	uint64_t n;

	if (s == NULL)
		return -1;
	if (s[0] == '\0' || strspn(s, "0123456789") != strlen(s) ||
	    (s[0] == '0' && s[1] != '\0'))
		return fail(c, v, "%s: '%s' is not a decimal integer "
				  "(expected %s)",
			    k->text, yquote(&q, s), expect);
	if (parse_digits(s, s + strlen(s), &n) < 0 || n < min || n > max)
		return fail(c, v, "%s: '%s' is out of range (expected %s)",
			    k->text, yquote(&q, s), expect);
	*out = n;
	return 0;
}

static int get_duration(struct ctx *c, const struct ynode *k,
			const struct ynode *v, uint64_t min, const char *expect,
			uint64_t *out)
{
	const char *s = yscalar(&c->e, k, v, expect);
	struct yquote q;
	uint64_t ms;

	if (s == NULL)
		return -1;
	if (s[0] < '0' || s[0] > '9' || sl_parse_duration(s, &ms) < 0) {
		/* Tell overflow from nonsense: digits and a known unit. */
		size_t d = strspn(s, "0123456789");
		const char *u = s + d;

		if (d > 0 && (strcmp(u, "") == 0 || strcmp(u, "ms") == 0 ||
			      (u[0] != '\0' && u[1] == '\0' &&
			       strchr("smhd", u[0]) != NULL)))
			return fail(c, v, "%s: '%s' is out of range "
					  "(expected %s)",
				    k->text, yquote(&q, s), expect);
		return fail(c, v, "%s: '%s' is not a duration (expected %s)",
			    k->text, yquote(&q, s), expect);
	}
	if (ms < min || ms > DURATION_MAX_MS)
		return fail(c, v, "%s: '%s' is out of range (expected %s)",
			    k->text, yquote(&q, s), expect);
	*out = ms;
	return 0;
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
	mark->line = v->line;
	mark->col = v->col;
	return 0;
}

/* true or false, as written (YAML 1.1's yes/no/on/off are refused: a
 * reader cannot tell them from strings). */
static int get_bool(struct ctx *c, const struct ynode *k, const struct ynode *v,
		    int *out)
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

/* One of a fixed set of words, each standing for a value. */
struct keyword {
	const char *name;
	int value;
};

static int get_keyword(struct ctx *c, const struct ynode *k,
		       const struct ynode *v, const char *what,
		       const char *expect, const struct keyword *kw, size_t n,
		       int *out)
{
	const char *s = yscalar(&c->e, k, v, expect);
	struct yquote q;

	if (s == NULL)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (strcmp(s, kw[i].name) == 0) {
			*out = kw[i].value;
			return 0;
		}
	}
	return fail(c, v, "%s: '%s' is not %s (expected %s)", k->text,
		    yquote(&q, s), what, expect);
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

static int set_acl_allow(struct ctx *c, const struct ynode *k,
			 const struct ynode *v, sl_acl_conf *a)
{
	return get_cidrs(c, k, v, &a->allow, &a->nallow);
}

static int set_acl_deny(struct ctx *c, const struct ynode *k,
			const struct ynode *v, sl_acl_conf *a)
{
	return get_cidrs(c, k, v, &a->deny, &a->ndeny);
}

static void acl_conf_free(sl_acl_conf *a)
{
	free(a->allow);
	free(a->deny);
}

/* ---- top level ---- */

#define EXP_THREADS "auto or 1-1024"
#define EXP_THREAD_POLICY "batch or normal"
#define EXP_MAXCONN "0-4294967295, 0 = unlimited"
#define EXP_DRAIN "a duration 0-365d such as 30s"
#define EXP_LOGLEVEL "error, warn, info or debug"
#define EXP_ROUTES "a list of routes"

static int set_threads(struct ctx *c, const struct ynode *k,
		       const struct ynode *v, void *obj)
{
	sl_config *cfg = obj;
	uint64_t n;

	if (v->kind == YN_SCALAR && strcmp(v->text, "auto") == 0) {
		cfg->threads = 0;
		return 0;
	}
	if (get_uint(c, k, v, 1, 1024, EXP_THREADS, &n) < 0)
		return -1;
	cfg->threads = (unsigned)n;
	return 0;
}

static int set_thread_policy(struct ctx *c, const struct ynode *k,
			     const struct ynode *v, void *obj)
{
	static const struct keyword kw[] = { { "batch", 1 }, { "normal", 0 } };

	return get_keyword(c, k, v, "a thread policy", EXP_THREAD_POLICY, kw,
			   NKEYS(kw), &((sl_config *)obj)->thread_batch);
}

static int set_max_conn(struct ctx *c, const struct ynode *k,
			const struct ynode *v, unsigned *out)
{
	uint64_t n;

	if (get_uint(c, k, v, 0, UINT32_MAX, EXP_MAXCONN, &n) < 0)
		return -1;
	*out = (unsigned)n;
	return 0;
}

static int set_global_max_conn(struct ctx *c, const struct ynode *k,
			       const struct ynode *v, void *obj)
{
	return set_max_conn(c, k, v, &((sl_config *)obj)->max_connections);
}

static int set_drain(struct ctx *c, const struct ynode *k,
		     const struct ynode *v, void *obj)
{
	return get_duration(c, k, v, 0, EXP_DRAIN,
			    &((sl_config *)obj)->drain_timeout_ms);
}

static int set_log_level(struct ctx *c, const struct ynode *k,
			 const struct ynode *v, void *obj)
{
	const char *s = yscalar(&c->e, k, v, EXP_LOGLEVEL);
	struct yquote q;

	if (s == NULL)
		return -1;
	if (sl_log_level_parse(s, &((sl_config *)obj)->log_level) < 0)
		return fail(c, v, "%s: '%s' is not a log level (expected %s)",
			    k->text, yquote(&q, s), EXP_LOGLEVEL);
	return 0;
}

#define EXP_USER "a user name or number"
#define EXP_GROUP "a group name or number"
#define EXP_LOG "stderr, syslog, or an absolute file path"
#define EXP_FACILITY "daemon, user or local0-local7"
#define EXP_PIDFILE "an absolute file path"
#define FILE_PATH_MAX 4095

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

static int set_log(struct ctx *c, const struct ynode *k, const struct ynode *v,
		   void *obj)
{
	char **out = &((sl_config *)obj)->log;
	struct yquote q;

	if (get_string(c, k, v, FILE_PATH_MAX, EXP_LOG, out) < 0)
		return -1;
	if (strcmp(*out, "stderr") != 0 && strcmp(*out, "syslog") != 0 &&
	    !path_absolute(*out))
		return fail(c, v, "%s: '%s' is not a log destination "
				  "(expected %s)",
			    k->text, yquote(&q, *out), EXP_LOG);
	return 0;
}

static int set_facility(struct ctx *c, const struct ynode *k,
			const struct ynode *v, void *obj)
{
	const char *s = yscalar(&c->e, k, v, EXP_FACILITY);
	struct yquote q;

	if (s == NULL)
		return -1;
	if (sl_log_facility_parse(s, &((sl_config *)obj)->syslog_facility) < 0)
		return fail(c, v, "%s: '%s' is not a syslog facility "
				  "(expected %s)",
			    k->text, yquote(&q, s), EXP_FACILITY);
	return 0;
}

static int set_pidfile(struct ctx *c, const struct ynode *k,
		       const struct ynode *v, void *obj)
{
	char **out = &((sl_config *)obj)->pidfile;
	struct yquote q;

	if (get_string(c, k, v, FILE_PATH_MAX, EXP_PIDFILE, out) < 0)
		return -1;
	if (!path_absolute(*out))
		return fail(c, v, "%s: '%s' is not an absolute path "
				  "(expected %s)",
			    k->text, yquote(&q, *out), EXP_PIDFILE);
	return 0;
}

static int set_user(struct ctx *c, const struct ynode *k, const struct ynode *v,
		    void *obj)
{
	return get_string(c, k, v, USER_NAME_MAX, EXP_USER,
			  &((sl_config *)obj)->user);
}

static int set_run_group(struct ctx *c, const struct ynode *k,
			 const struct ynode *v, void *obj)
{
	return get_string(c, k, v, USER_NAME_MAX, EXP_GROUP,
			  &((sl_config *)obj)->group);
}

#define EXP_ACCESS "off, stderr, syslog, an absolute file path, or a mapping " \
		   "with to and format"
#define EXP_ACCESS_TO "off, stderr, syslog, or an absolute file path"
#define EXP_FORMAT "text or json"

static int set_access_to(struct ctx *c, const struct ynode *k,
			 const struct ynode *v, void *obj)
{
	char **out = &((sl_config *)obj)->access_log;
	struct yquote q;

	if (get_string(c, k, v, FILE_PATH_MAX, EXP_ACCESS_TO, out) < 0)
		return -1;
	if (strcmp(*out, "off") != 0 && strcmp(*out, "stderr") != 0 &&
	    strcmp(*out, "syslog") != 0 && !path_absolute(*out))
		return fail(c, v, "%s: '%s' is not an access log destination "
				  "(expected %s)",
			    k->text, yquote(&q, *out), EXP_ACCESS_TO);
	return 0;
}

static int set_access_format(struct ctx *c, const struct ynode *k,
			     const struct ynode *v, void *obj)
{
	static const struct keyword kw[] = { { "json", 1 }, { "text", 0 } };

	return get_keyword(c, k, v, "a format", EXP_FORMAT, kw, NKEYS(kw),
			   &((sl_config *)obj)->access_json);
}

static const struct key access_keys[] = {
	{ "to", set_access_to, EXP_ACCESS_TO, 1 },
	{ "format", set_access_format, EXP_FORMAT, 0 },
};

static int set_access_log(struct ctx *c, const struct ynode *k,
			  const struct ynode *v, void *obj)
{
	const struct ynode *seen[2];

	if (v->kind == YN_MAP)
		return walk_map(c, v, "in access_log", access_keys, 2, obj,
				seen);
	return set_access_to(c, k, v, obj);
}

static int set_routes(struct ctx *c, const struct ynode *k,
		      const struct ynode *v, void *obj);

static int set_top_allow(struct ctx *c, const struct ynode *k,
			 const struct ynode *v, void *obj)
{
	return set_acl_allow(c, k, v, &((sl_config *)obj)->acl);
}

static int set_top_deny(struct ctx *c, const struct ynode *k,
			const struct ynode *v, void *obj)
{
	return set_acl_deny(c, k, v, &((sl_config *)obj)->acl);
}

#define EXP_RESOLVE "a duration 1s-1d such as 30s"

static int set_resolve_interval(struct ctx *c, const struct ynode *k,
				const struct ynode *v, void *obj)
{
	sl_config *cfg = obj;
	struct yquote q;

	if (get_duration(c, k, v, 1000, EXP_RESOLVE,
			 &cfg->resolve_interval_ms) < 0)
		return -1;
	if (cfg->resolve_interval_ms > 86400000)
		return fail(c, v, "%s: '%s' is out of range (expected %s)",
			    k->text, yquote(&q, v->text), EXP_RESOLVE);
	return 0;
}

/* ---- admin ---- */

#define EXP_ADMIN "a mapping with listen (and allow, deny), an endpoint, or a port"
#define EXP_ADMIN_LISTEN "an endpoint such as tcp://127.0.0.1:9090, or a port"

/* An endpoint, or a bare port for that port on 127.0.0.1: the admin
 * listener is on loopback unless the config names another address. */
static int get_admin_endpoint(struct ctx *c, const struct ynode *k,
			      const struct ynode *v, const char *expect,
			      sl_admin_conf *a)
{
	struct ynode port;
	char text[32];
	uint64_t n;

	if (v->kind != YN_SCALAR || v->null || v->text[0] < '0' ||
	    v->text[0] > '9')
		return get_endpoint(c, k, v, expect, &a->ep, &a->address,
				    &a->mark);
	if (get_uint(c, k, v, 1, 65535, "a port 1-65535 or an endpoint",
		     &n) < 0)
		return -1;
	snprintf(text, sizeof text, "tcp://127.0.0.1:%u", (unsigned)n);
	port = *v;
	port.text = text;
	return get_endpoint(c, k, &port, expect, &a->ep, &a->address,
			    &a->mark);
}

static int set_admin_listen(struct ctx *c, const struct ynode *k,
			    const struct ynode *v, void *obj)
{
	return get_admin_endpoint(c, k, v, EXP_ADMIN_LISTEN, obj);
}

static int set_admin_allow(struct ctx *c, const struct ynode *k,
			   const struct ynode *v, void *obj)
{
	return set_acl_allow(c, k, v, &((sl_admin_conf *)obj)->acl);
}

static int set_admin_deny(struct ctx *c, const struct ynode *k,
			  const struct ynode *v, void *obj)
{
	return set_acl_deny(c, k, v, &((sl_admin_conf *)obj)->acl);
}

static const struct key admin_keys[] = {
	{ "listen", set_admin_listen, EXP_ADMIN_LISTEN, 1 },
	{ "allow", set_admin_allow, EXP_CIDRS, 0 },
	{ "deny", set_admin_deny, EXP_CIDRS, 0 },
};

static int set_admin(struct ctx *c, const struct ynode *k,
		     const struct ynode *v, void *obj)
{
	sl_config *cfg = obj;
	const struct ynode *seen[NKEYS(admin_keys)];

	if (v->kind == YN_MAP)
		return walk_map(c, v, "in admin", admin_keys,
				NKEYS(admin_keys), &cfg->admin, seen);
	return get_admin_endpoint(c, k, v, EXP_ADMIN, &cfg->admin);
}

static const struct key top_keys[] = {
	{ "threads", set_threads, EXP_THREADS, 0 },
	{ "thread_policy", set_thread_policy, EXP_THREAD_POLICY, 0 },
	{ "max_connections", set_global_max_conn, EXP_MAXCONN, 0 },
	{ "drain_timeout", set_drain, EXP_DRAIN, 0 },
	{ "log_level", set_log_level, EXP_LOGLEVEL, 0 },
	{ "log", set_log, EXP_LOG, 0 },
	{ "syslog_facility", set_facility, EXP_FACILITY, 0 },
	{ "pidfile", set_pidfile, EXP_PIDFILE, 0 },
	{ "user", set_user, EXP_USER, 0 },
	{ "group", set_run_group, EXP_GROUP, 0 },
	{ "access_log", set_access_log, EXP_ACCESS, 0 },
	{ "allow", set_top_allow, EXP_CIDRS, 0 },
	{ "deny", set_top_deny, EXP_CIDRS, 0 },
	{ "resolve_interval", set_resolve_interval, EXP_RESOLVE, 0 },
	{ "admin", set_admin, EXP_ADMIN, 0 },
	{ "routes", set_routes, EXP_ROUTES, 1 },
};

/* ---- listeners ---- */

#define EXP_LISTEN "an endpoint, a listener mapping, or a list of those"
#define EXP_ADDRESS "an endpoint such as tcp://127.0.0.1:8080 or unix:/path"
#define EXP_MODE "an octal file mode 0-0777 such as 0660"
#define EXP_SECURITY "an SDDL string"
#define EXP_BACKLOG "1-65535"

/* Where each option stood, to judge it against the address afterwards. */
struct listen_walk {
	sl_listen_conf *lc;
	const struct ynode *address;
};

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
 * Those are all unlike each other, so at most one can match.
 */
static int check_listen_unique(struct ctx *c, const struct ynode *v,
			       const sl_listen_conf *lc)
{
	uint64_t h = sl_endpoint_hash(&lc->ep);
	const sl_listen_conf *o;
	struct yquote q;
	size_t i;

	if ((o = sl_hset_find(&c->listens, h, listen_eq, &lc->ep)) == NULL) {
		if (sl_hset_add(&c->listens, h, lc) < 0)
			return fail_at(c, 0, 0, "out of memory");
		return 0;
	}
	if ((i = listen_route(c, o)) == c->route)
		return fail(c, v,
			    "listen: '%s' is already listed in this route at "
			    "%u:%u (each endpoint is listened on once)",
			    yquote(&q, lc->address), o->mark.line, o->mark.col);
	return fail(c, v,
		    "listen: '%s' is already used by route '%s' at %u:%u "
		    "(each endpoint is listened on once)",
		    yquote(&q, lc->address), c->cfg->routes[i].name,
		    o->mark.line, o->mark.col);
}

static int set_address(struct ctx *c, const struct ynode *k,
		       const struct ynode *v, void *obj)
{
	struct listen_walk *w = obj;

	w->address = v;
	return get_endpoint(c, k, v, EXP_ADDRESS, &w->lc->ep,
			    &w->lc->address, &w->lc->mark);
}

static int set_mode(struct ctx *c, const struct ynode *k, const struct ynode *v,
		    void *obj)
{
	struct listen_walk *w = obj;
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
	w->lc->mode = (int)m;
	return 0;
}

static int set_owner(struct ctx *c, const struct ynode *k,
		     const struct ynode *v, void *obj)
{
	struct listen_walk *w = obj;

	return get_string(c, k, v, USER_NAME_MAX, EXP_USER, &w->lc->owner);
}

static int set_group(struct ctx *c, const struct ynode *k,
		     const struct ynode *v, void *obj)
{
	struct listen_walk *w = obj;

	return get_string(c, k, v, USER_NAME_MAX, EXP_GROUP, &w->lc->group);
}

static int set_security(struct ctx *c, const struct ynode *k,
			const struct ynode *v, void *obj)
{
	struct listen_walk *w = obj;

	return get_string(c, k, v, SECURITY_MAX, EXP_SECURITY,
			  &w->lc->security);
}

static int set_backlog(struct ctx *c, const struct ynode *k,
		       const struct ynode *v, void *obj)
{
	struct listen_walk *w = obj;
	uint64_t n;

	if (get_uint(c, k, v, 1, 65535, EXP_BACKLOG, &n) < 0)
		return -1;
	w->lc->backlog = (int)n;
	return 0;
}

static int set_accept_proxy(struct ctx *c, const struct ynode *k,
			    const struct ynode *v, void *obj)
{
	return get_bool(c, k, v, &((struct listen_walk *)obj)->lc->accept_proxy);
}

#define EXP_PROXY_TIMEOUT "a duration 1ms-1h such as 5s"

static int set_proxy_timeout(struct ctx *c, const struct ynode *k,
			     const struct ynode *v, void *obj)
{
	sl_listen_conf *lc = ((struct listen_walk *)obj)->lc;
	struct yquote q;

	if (get_duration(c, k, v, 1, EXP_PROXY_TIMEOUT,
			 &lc->proxy_timeout_ms) < 0)
		return -1;
	if (lc->proxy_timeout_ms > 3600000)
		return fail(c, v, "%s: '%s' is out of range (expected %s)",
			    k->text, yquote(&q, v->text), EXP_PROXY_TIMEOUT);
	return 0;
}

static int set_trusted(struct ctx *c, const struct ynode *k,
		       const struct ynode *v, void *obj)
{
	sl_listen_conf *lc = ((struct listen_walk *)obj)->lc;

	return get_cidrs(c, k, v, &lc->trusted, &lc->ntrusted);
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
};

static const struct key listen_keys[] = {
	[LK_ADDRESS] = { "address", set_address, EXP_ADDRESS, 1 },
	[LK_MODE] = { "mode", set_mode, EXP_MODE, 0 },
	[LK_OWNER] = { "owner", set_owner, EXP_USER, 0 },
	[LK_GROUP] = { "group", set_group, EXP_GROUP, 0 },
	[LK_SECURITY] = { "security", set_security, EXP_SECURITY, 0 },
	[LK_BACKLOG] = { "backlog", set_backlog, EXP_BACKLOG, 0 },
	[LK_ACCEPT_PROXY] = { "accept_proxy", set_accept_proxy,
			      "true or false", 0 },
	[LK_PROXY_TIMEOUT] = { "proxy_timeout", set_proxy_timeout,
			       EXP_PROXY_TIMEOUT, 0 },
	[LK_TRUSTED] = { "trusted_proxies", set_trusted, EXP_CIDRS, 0 },
};

static int listen_one(struct ctx *c, const struct ynode *k,
		      const struct ynode *v, sl_listen_conf *lc)
{
	const struct ynode *seen[NKEYS(listen_keys)];
	struct listen_walk w = { lc, v };
	const sl_endpoint *ep = &lc->ep;

	lc->mode = -1;
	lc->proxy_timeout_ms = 5000;
	if (v->kind == YN_SCALAR) {
		if (get_endpoint(c, k, v, EXP_LISTEN, &lc->ep, &lc->address,
				 &lc->mark) < 0)
			return -1;
		return check_listen_unique(c, v, lc);
	}
	if (v->kind != YN_MAP)
		return fail(c, v, "%s item is %s (expected an endpoint or a "
				  "listener mapping)",
			    k->text, ykind_name(v->kind));
	if (walk_map(c, v, "in listener", listen_keys, NKEYS(listen_keys), &w,
		     seen) < 0)
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
	return check_listen_unique(c, w.address, lc);
}

/* ---- upstreams ---- */

#define EXP_UPSTREAMS "an endpoint, an upstream mapping, or a list of those"

static int set_up_address(struct ctx *c, const struct ynode *k,
			  const struct ynode *v, void *obj)
{
	sl_upstream_conf *uc = obj;

	return get_endpoint(c, k, v, EXP_ADDRESS, &uc->ep, &uc->address,
			    &uc->mark);
}

#define EXP_WEIGHT "1-256"
#define EXP_SEND_PROXY "v1 or v2"

static int set_weight(struct ctx *c, const struct ynode *k,
		      const struct ynode *v, void *obj)
{
	uint64_t n;

	if (get_uint(c, k, v, 1, 256, EXP_WEIGHT, &n) < 0)
		return -1;
	((sl_upstream_conf *)obj)->weight = (unsigned)n;
	return 0;
}

static int set_backup(struct ctx *c, const struct ynode *k,
		      const struct ynode *v, void *obj)
{
	return get_bool(c, k, v, &((sl_upstream_conf *)obj)->backup);
}

static int set_send_proxy(struct ctx *c, const struct ynode *k,
			  const struct ynode *v, void *obj)
{
	static const struct keyword kw[] = { { "v1", 1 }, { "v2", 2 } };

	return get_keyword(c, k, v, "a PROXY protocol version", EXP_SEND_PROXY,
			   kw, NKEYS(kw), &((sl_upstream_conf *)obj)->send_proxy);
}

static const struct key upstream_keys[] = {
	{ "address", set_up_address, EXP_ADDRESS, 1 },
	{ "weight", set_weight, EXP_WEIGHT, 0 },
	{ "backup", set_backup, "true or false", 0 },
	{ "send_proxy", set_send_proxy, EXP_SEND_PROXY, 0 },
};

static int upstream_one(struct ctx *c, const struct ynode *k,
			const struct ynode *v, sl_upstream_conf *uc)
{
	const struct ynode *seen[NKEYS(upstream_keys)];

	uc->weight = 1;
	if (v->kind == YN_SCALAR)
		return get_endpoint(c, k, v, EXP_UPSTREAMS, &uc->ep,
				    &uc->address, &uc->mark);
	if (v->kind != YN_MAP)
		return fail(c, v, "%s item is %s (expected an endpoint or an "
				  "upstream mapping)",
			    k->text, ykind_name(v->kind));
	return walk_map(c, v, "in upstream", upstream_keys,
			NKEYS(upstream_keys), uc, seen);
}

/* ---- routes ---- */

#define EXP_NAME "1-64 characters of A-Z a-z 0-9 _ . -"
#define EXP_CONNECT_TIMEOUT "a duration 1ms-365d such as 5s"
#define EXP_IDLE_TIMEOUT "a duration 0-365d such as 1h, 0 = none"
#define EXP_ATTEMPTS "1-16"
#define EXP_BUFFER "a size 1k-16m such as 16k"

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

static int set_name(struct ctx *c, const struct ynode *k, const struct ynode *v,
		    void *obj)
{
	sl_route_conf *rc = obj;
	const sl_route_conf *o;
	const char *s = yscalar(&c->e, k, v, EXP_NAME);
	struct yquote q;
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
		return fail(c, v, "%s: route '%s' is already defined at %u:%u "
				  "(expected a unique name)",
			    k->text, s, o->mark.line, o->mark.col);
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

static int set_connect_timeout(struct ctx *c, const struct ynode *k,
			       const struct ynode *v, void *obj)
{
	return get_duration(c, k, v, 1, EXP_CONNECT_TIMEOUT,
			    &((sl_route_conf *)obj)->connect_timeout_ms);
}

static int set_idle_timeout(struct ctx *c, const struct ynode *k,
			    const struct ynode *v, void *obj)
{
	return get_duration(c, k, v, 0, EXP_IDLE_TIMEOUT,
			    &((sl_route_conf *)obj)->idle_timeout_ms);
}

static int set_attempts(struct ctx *c, const struct ynode *k,
			const struct ynode *v, void *obj)
{
	uint64_t n;

	if (get_uint(c, k, v, 1, ATTEMPTS_MAX, EXP_ATTEMPTS, &n) < 0)
		return -1;
	((sl_route_conf *)obj)->connect_attempts = (unsigned)n;
	return 0;
}

static int set_route_max_conn(struct ctx *c, const struct ynode *k,
			      const struct ynode *v, void *obj)
{
	return set_max_conn(c, k, v, &((sl_route_conf *)obj)->max_connections);
}

static int set_buffer_size(struct ctx *c, const struct ynode *k,
			   const struct ynode *v, void *obj)
{
	const char *s = yscalar(&c->e, k, v, EXP_BUFFER);
	struct yquote q;
	uint64_t n;

	if (s == NULL)
		return -1;
	if (sl_parse_size(s, &n) < 0) {
		size_t d = strspn(s, "0123456789");

		if (d > 0 && (s[d] == '\0' || (strchr("kKmMgG", s[d]) &&
					       s[d + 1] == '\0')))
			return fail(c, v, "%s: '%s' is out of range "
					  "(expected %s)",
				    k->text, yquote(&q, s), EXP_BUFFER);
		return fail(c, v, "%s: '%s' is not a size (expected %s)",
			    k->text, yquote(&q, s), EXP_BUFFER);
	}
	if (n < 1024 || n > 16u * 1024 * 1024)
		return fail(c, v, "%s: '%s' is out of range (expected %s)",
			    k->text, yquote(&q, s), EXP_BUFFER);
	((sl_route_conf *)obj)->buffer_size = (size_t)n;
	return 0;
}

#define EXP_BALANCE "round-robin, least-connections, random, source-hash " \
		    "or first"

static int set_balance(struct ctx *c, const struct ynode *k,
		       const struct ynode *v, void *obj)
{
	static const struct keyword kw[] = {
		{ "round-robin", SL_BALANCE_ROUND_ROBIN },
		{ "least-connections", SL_BALANCE_LEAST_CONN },
		{ "random", SL_BALANCE_RANDOM },
		{ "source-hash", SL_BALANCE_SOURCE_HASH },
		{ "first", SL_BALANCE_FIRST },
	};
	int b = SL_BALANCE_ROUND_ROBIN;

	if (get_keyword(c, k, v, "a balancing method", EXP_BALANCE, kw,
			NKEYS(kw), &b) < 0)
		return -1;
	((sl_route_conf *)obj)->balance = (enum sl_balance)b;
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

static int set_fails(struct ctx *c, const struct ynode *k,
		     const struct ynode *v, void *obj)
{
	uint64_t n;

	if (get_uint(c, k, v, 0, 1000, EXP_FAILS, &n) < 0)
		return -1;
	((sl_health_conf *)obj)->fails = (unsigned)n;
	return 0;
}

/* A duration in [min, max]. */
static int get_duration_in(struct ctx *c, const struct ynode *k,
			   const struct ynode *v, uint64_t min, uint64_t max,
			   const char *expect, uint64_t *out)
{
	struct yquote q;

	if (get_duration(c, k, v, min, expect, out) < 0)
		return -1;
	if (*out > max)
		return fail(c, v, "%s: '%s' is out of range (expected %s)",
			    k->text, yquote(&q, v->text), expect);
	return 0;
}

static int set_cooldown(struct ctx *c, const struct ynode *k,
			const struct ynode *v, void *obj)
{
	return get_duration_in(c, k, v, 1, 86400000, EXP_COOLDOWN,
			       &((sl_health_conf *)obj)->cooldown_ms);
}

static int set_interval(struct ctx *c, const struct ynode *k,
			const struct ynode *v, void *obj)
{
	return get_duration_in(c, k, v, 10, 86400000, EXP_INTERVAL,
			       &((sl_health_conf *)obj)->interval_ms);
}

static int set_check_timeout(struct ctx *c, const struct ynode *k,
			     const struct ynode *v, void *obj)
{
	return get_duration_in(c, k, v, 1, 86400000, EXP_CHECK_TIMEOUT,
			       &((sl_health_conf *)obj)->timeout_ms);
}

static int get_rise_fall(struct ctx *c, const struct ynode *k,
			 const struct ynode *v, unsigned *out)
{
	uint64_t n;

	if (get_uint(c, k, v, 1, 100, EXP_RISE_FALL, &n) < 0)
		return -1;
	*out = (unsigned)n;
	return 0;
}

static int set_rise(struct ctx *c, const struct ynode *k, const struct ynode *v,
		    void *obj)
{
	return get_rise_fall(c, k, v, &((sl_health_conf *)obj)->rise);
}

static int set_fall(struct ctx *c, const struct ynode *k, const struct ynode *v,
		    void *obj)
{
	return get_rise_fall(c, k, v, &((sl_health_conf *)obj)->fall);
}

/* Bytes to send or expect: any text but NUL (the YAML reader refuses
 * those), escapes as YAML's double-quoted strings write them ("\r\n"). */
static int get_probe(struct ctx *c, const struct ynode *k,
		     const struct ynode *v, char **out, size_t *len)
{
	const char *s = yscalar(&c->e, k, v, EXP_PROBE);
	struct yquote q;
	size_t n;

	if (s == NULL)
		return -1;
	n = strlen(s);
	if (n == 0 || n > PROBE_MAX)
		return fail(c, v, "%s: '%s' has a bad length (expected %s)",
			    k->text, yquote(&q, s), EXP_PROBE);
	free(*out);
	if ((*out = strdup(s)) == NULL)
		return fail_at(c, 0, 0, "out of memory");
	*len = n;
	return 0;
}

static int set_send(struct ctx *c, const struct ynode *k, const struct ynode *v,
		    void *obj)
{
	sl_health_conf *h = obj;

	return get_probe(c, k, v, &h->send, &h->send_len);
}

static int set_expect(struct ctx *c, const struct ynode *k,
		      const struct ynode *v, void *obj)
{
	sl_health_conf *h = obj;

	return get_probe(c, k, v, &h->expect, &h->expect_len);
}

enum { CK_INTERVAL, CK_TIMEOUT, CK_RISE, CK_FALL, CK_SEND, CK_EXPECT };

static const struct key check_keys[] = {
	[CK_INTERVAL] = { "interval", set_interval, EXP_INTERVAL, 1 },
	[CK_TIMEOUT] = { "timeout", set_check_timeout, EXP_CHECK_TIMEOUT, 0 },
	[CK_RISE] = { "rise", set_rise, EXP_RISE_FALL, 0 },
	[CK_FALL] = { "fall", set_fall, EXP_RISE_FALL, 0 },
	[CK_SEND] = { "send", set_send, EXP_PROBE, 0 },
	[CK_EXPECT] = { "expect", set_expect, EXP_PROBE, 0 },
};

static int set_check(struct ctx *c, const struct ynode *k,
		     const struct ynode *v, void *obj)
{
	sl_health_conf *h = obj;
	const struct ynode *seen[NKEYS(check_keys)];

	if (v->kind != YN_MAP)
		return fail(c, v, "%s is %s (expected %s)", k->text,
			    v->kind == YN_SCALAR && v->null
				    ? "empty"
				    : ykind_name(v->kind),
			    EXP_CHECK);
	if (walk_map(c, v, "in check", check_keys, NKEYS(check_keys), h,
		     seen) < 0)
		return -1;
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
	{ "fails", set_fails, EXP_FAILS, 0 },
	{ "cooldown", set_cooldown, EXP_COOLDOWN, 0 },
	{ "check", set_check, EXP_CHECK, 0 },
};

static int set_health(struct ctx *c, const struct ynode *k,
		      const struct ynode *v, void *obj)
{
	const struct ynode *seen[NKEYS(health_keys)];

	if (v->kind != YN_MAP)
		return fail(c, v, "%s is %s (expected %s)", k->text,
			    v->kind == YN_SCALAR && v->null
				    ? "empty"
				    : ykind_name(v->kind),
			    EXP_HEALTH);
	return walk_map(c, v, "in health", health_keys, NKEYS(health_keys),
			&((sl_route_conf *)obj)->health, seen);
}

/* ---- queue, access, limits, timeouts ---- */

#define EXP_QUEUE "a mapping with max (and timeout)"
#define EXP_QUEUE_MAX "1-1000000"
#define EXP_QUEUE_TIMEOUT "a duration 1ms-1h such as 10s"

static int set_queue_max(struct ctx *c, const struct ynode *k,
			 const struct ynode *v, void *obj)
{
	uint64_t n;

	if (get_uint(c, k, v, 1, 1000000, EXP_QUEUE_MAX, &n) < 0)
		return -1;
	((sl_route_conf *)obj)->queue_max = (unsigned)n;
	return 0;
}

static int set_queue_timeout(struct ctx *c, const struct ynode *k,
			     const struct ynode *v, void *obj)
{
	return get_duration_in(c, k, v, 1, 3600000, EXP_QUEUE_TIMEOUT,
			       &((sl_route_conf *)obj)->queue_timeout_ms);
}

static const struct key queue_keys[] = {
	{ "max", set_queue_max, EXP_QUEUE_MAX, 1 },
	{ "timeout", set_queue_timeout, EXP_QUEUE_TIMEOUT, 0 },
};

static int set_queue(struct ctx *c, const struct ynode *k,
		     const struct ynode *v, void *obj)
{
	const struct ynode *seen[NKEYS(queue_keys)];

	if (v->kind != YN_MAP)
		return fail(c, v, "%s is %s (expected %s)", k->text,
			    v->kind == YN_SCALAR && v->null
				    ? "empty"
				    : ykind_name(v->kind),
			    EXP_QUEUE);
	return walk_map(c, v, "in queue", queue_keys, NKEYS(queue_keys), obj,
			seen);
}

static int set_route_allow(struct ctx *c, const struct ynode *k,
			   const struct ynode *v, void *obj)
{
	return set_acl_allow(c, k, v, &((sl_route_conf *)obj)->acl);
}

static int set_route_deny(struct ctx *c, const struct ynode *k,
			  const struct ynode *v, void *obj)
{
	return set_acl_deny(c, k, v, &((sl_route_conf *)obj)->acl);
}

#define EXP_PER_CLIENT "0-1000000, 0 = unlimited"

static int set_per_client(struct ctx *c, const struct ynode *k,
			  const struct ynode *v, void *obj)
{
	uint64_t n;

	if (get_uint(c, k, v, 0, 1000000, EXP_PER_CLIENT, &n) < 0)
		return -1;
	((sl_route_conf *)obj)->max_per_client = (unsigned)n;
	return 0;
}

#define EXP_RATE "N/s, N/m or N/h with N 1-1000000, such as 100/s"

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

#define EXP_HALF_CLOSED "a duration 0-365d such as 30s, 0 = as idle_timeout"
#define EXP_MAX_DURATION "a duration 0-365d such as 8h, 0 = none"

static int set_half_closed(struct ctx *c, const struct ynode *k,
			   const struct ynode *v, void *obj)
{
	return get_duration(c, k, v, 0, EXP_HALF_CLOSED,
			    &((sl_route_conf *)obj)->half_closed_timeout_ms);
}

static int set_max_duration(struct ctx *c, const struct ynode *k,
			    const struct ynode *v, void *obj)
{
	return get_duration(c, k, v, 0, EXP_MAX_DURATION,
			    &((sl_route_conf *)obj)->max_duration_ms);
}

static const struct key route_keys[] = {
	{ "name", set_name, EXP_NAME, 1 },
	{ "listen", set_listen, EXP_LISTEN, 1 },
	{ "upstreams", set_upstreams, EXP_UPSTREAMS, 1 },
	{ "connect_timeout", set_connect_timeout, EXP_CONNECT_TIMEOUT, 0 },
	{ "idle_timeout", set_idle_timeout, EXP_IDLE_TIMEOUT, 0 },
	{ "connect_attempts", set_attempts, EXP_ATTEMPTS, 0 },
	{ "max_connections", set_route_max_conn, EXP_MAXCONN, 0 },
	{ "buffer_size", set_buffer_size, EXP_BUFFER, 0 },
	{ "balance", set_balance, EXP_BALANCE, 0 },
	{ "health", set_health, EXP_HEALTH, 0 },
	{ "queue", set_queue, EXP_QUEUE, 0 },
	{ "allow", set_route_allow, EXP_CIDRS, 0 },
	{ "deny", set_route_deny, EXP_CIDRS, 0 },
	{ "max_connections_per_client", set_per_client, EXP_PER_CLIENT, 0 },
	{ "rate_limit", set_rate_limit, EXP_RATE, 0 },
	{ "half_closed_timeout", set_half_closed, EXP_HALF_CLOSED, 0 },
	{ "max_duration", set_max_duration, EXP_MAX_DURATION, 0 },
};

/* What only the whole route can judge. */
static int route_check(struct ctx *c, const struct ynode *r,
		       const sl_route_conf *rc)
{
	size_t primaries = 0;

	for (size_t i = 0; i < rc->nupstreams; i++)
		primaries += !rc->upstreams[i].backup;
	if (primaries == 0)
		return fail(c, r, "route '%s': every upstream is a backup "
				  "(expected at least one with backup: false)",
			    rc->name);
	return 0;
}

static int set_routes(struct ctx *c, const struct ynode *k,
		      const struct ynode *v, void *obj)
{
	const struct ynode *seen[NKEYS(route_keys)];
	sl_config *cfg = obj;

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
	if ((cfg->routes = calloc(v->nkid, sizeof *cfg->routes)) == NULL)
		return fail_at(c, 0, 0, "out of memory");
	for (size_t i = 0; i < v->nkid; i++) {
		const struct ynode *r = v->kid[i];
		sl_route_conf *rc = &cfg->routes[i];

		cfg->nroutes = i + 1;
		c->route = i;
		if (r->kind != YN_MAP)
			return fail(c, r, "route is %s (expected a mapping "
					  "with name, listen and upstreams)",
				    r->kind == YN_SCALAR && r->null
					    ? "empty"
					    : ykind_name(r->kind));
		rc->mark.line = r->line;
		rc->mark.col = r->col;
		rc->connect_timeout_ms = 5000;
		rc->idle_timeout_ms = 3600000;
		rc->buffer_size = 65536;
		rc->health.fails = 3;
		rc->health.cooldown_ms = 10000;
		rc->health.rise = 2;
		rc->health.fall = 3;
		rc->queue_timeout_ms = 10000;
		if (walk_map(c, r, "in route", route_keys, NKEYS(route_keys),
			     rc, seen) < 0)
			return -1;
		if (route_check(c, r, rc) < 0)
			return -1;
		if (rc->connect_attempts == 0)
			rc->connect_attempts = rc->nupstreams < ATTEMPTS_MAX
						       ? (unsigned)rc->nupstreams
						       : ATTEMPTS_MAX;
	}
	return 0;
}

/* The admin listener takes an endpoint no route listens on. */
static int admin_check(struct ctx *c, const sl_config *cfg)
{
	const sl_admin_conf *a = &cfg->admin;
	struct yquote q;

	if (a->address == NULL)
		return 0;
	for (size_t i = 0; i < cfg->nroutes; i++) {
		const sl_route_conf *rc = &cfg->routes[i];

		for (size_t j = 0; j < rc->nlisten; j++)
			if (sl_endpoint_equal(&rc->listen[j].ep, &a->ep))
				return fail_at(c, a->mark.line, a->mark.col,
					       "admin: '%s' is already used by "
					       "route '%s' at %u:%u (each "
					       "endpoint is listened on once)",
					       yquote(&q, a->address), rc->name,
					       rc->listen[j].mark.line,
					       rc->listen[j].mark.col);
	}
	return 0;
}

/* ---- entry points ----------------------------------------------------- */

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
	sl_hset_free(&c->names);
	sl_hset_free(&c->listens);
	if (r < 0 || admin_check(c, cfg) < 0) {
		sl_config_free(cfg);
		return -1;
	}
	*out = cfg;
	return 0;
}

static int load(struct ctx *c, const char *text, size_t len, sl_config **out)
{
	struct ytree t = { 0 };
	int r;

	if (len > CONF_MAX_BYTES)
		return fail_at(c, 0, 0, "config too large (at most %u MiB)",
			       CONF_MAX_BYTES >> 20);
	if ((r = ytree_build(&t, text, len, &c->e)) == 0)
		r = load_tree(c, t.root, out);
	ytree_free(&t);
	return r;
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
	return load(&c, text, len, out) < 0 ? -1 : 0;
}

int sl_config_load(const char *path, sl_config **out, char *err,
		   size_t errlen)
{
	struct ctx c = { .e = { .name = path != NULL ? path : "<null>",
			       .err = err,
			       .errlen = errlen } };
	char *buf = NULL;
	size_t len = 0, cap = 0;
	FILE *f;
	int r;

	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if (out == NULL)
		return -1;
	*out = NULL;
	if (path == NULL)
		return fail_at(&c, 0, 0, "no config file given");
	if ((f = fopen(path, "rb")) == NULL)
		return fail_at(&c, 0, 0, "cannot open: %s", strerror(errno));
	for (;;) {
		size_t n;

		if (len == cap) {
			char *nb;

			if (cap > CONF_MAX_BYTES) {
				fclose(f);
				free(buf);
				return fail_at(&c, 0, 0,
					       "config too large (at most %u "
					       "MiB)",
					       CONF_MAX_BYTES >> 20);
			}
			cap = cap ? cap * 2 : 16384;
			if ((nb = realloc(buf, cap)) == NULL) {
				fclose(f);
				free(buf);
				return fail_at(&c, 0, 0, "out of memory");
			}
			buf = nb;
		}
		n = fread(buf + len, 1, cap - len, f);
		len += n;
		if (n == 0)
			break;
	}
	if (ferror(f)) {
		int e = errno;

		fclose(f);
		free(buf);
		return fail_at(&c, 0, 0, "cannot read: %s", strerror(e));
	}
	fclose(f);
	r = load(&c, buf != NULL ? buf : "", len, out);
	free(buf);
	return r < 0 ? -1 : 0;
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
		}
		free(rc->listen);
		for (size_t j = 0; j < rc->nupstreams; j++)
			free(rc->upstreams[j].address);
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
	free(cfg);
}
