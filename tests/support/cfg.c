/*
 * The config builder of the end-to-end tests (see support.h): keys and
 * values as the test gives them, written out as block-style YAML.
 */
#include "support.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* key: value pairs in the order first set; setting a key again replaces
 * its value in place. */
struct kvs {
	char **key, **val;
	size_t n;
};

struct upstream {
	char *address;
	struct kvs opts;
};

struct route {
	char *name, *listen;
	struct kvs listen_opts, opts;
	struct upstream *up;
	size_t nup;
};

struct st_cfg {
	struct kvs top;
	struct route *routes;
	size_t nroutes;
};

static void *grow(void *p, size_t n, size_t size)
{
	p = realloc(p, n * size);
	if (p == NULL)
		st_fail("out of memory");
	return p;
}

static void kvs_set(struct kvs *k, const char *key, char *val)
{
	size_t i;

	for (i = 0; i < k->n; i++) {
		if (strcmp(k->key[i], key) == 0) {
			free(k->val[i]);
			k->val[i] = val;
			return;
		}
	}
	k->key = grow(k->key, k->n + 1, sizeof *k->key);
	k->val = grow(k->val, k->n + 1, sizeof *k->val);
	k->key[k->n] = st_fmt("%s", key);
	k->val[k->n++] = val;
}

static void kvs_free(struct kvs *k)
{
	size_t i;

	for (i = 0; i < k->n; i++) {
		free(k->key[i]);
		free(k->val[i]);
	}
	free(k->key);
	free(k->val);
}

/* The route being built: the last one. */
static struct route *cur(st_cfg *c, const char *who)
{
	if (c->nroutes == 0)
		st_fail("%s: no route yet (st_cfg_route)", who);
	return &c->routes[c->nroutes - 1];
}

st_cfg *st_cfg_new(void)
{
	st_cfg *c = calloc(1, sizeof *c);

	if (c == NULL)
		st_fail("out of memory");
	return c;
}

void st_cfg_free(st_cfg *c)
{
	size_t i, j;

	if (c == NULL)
		return;
	for (i = 0; i < c->nroutes; i++) {
		struct route *r = &c->routes[i];

		for (j = 0; j < r->nup; j++) {
			free(r->up[j].address);
			kvs_free(&r->up[j].opts);
		}
		free(r->up);
		free(r->name);
		free(r->listen);
		kvs_free(&r->listen_opts);
		kvs_free(&r->opts);
	}
	free(c->routes);
	kvs_free(&c->top);
	free(c);
}

void st_cfg_set(st_cfg *c, const char *key, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	kvs_set(&c->top, key, st_vfmt(fmt, ap));
	va_end(ap);
}

void st_cfg_route(st_cfg *c, const char *name, uint16_t lport,
		  uint16_t uport)
{
	struct route *r;

	c->routes = grow(c->routes, c->nroutes + 1, sizeof *c->routes);
	r = &c->routes[c->nroutes++];
	memset(r, 0, sizeof *r);
	r->name = st_fmt("%s", name);
	if (lport != 0)
		r->listen = st_fmt("tcp://127.0.0.1:%u", (unsigned)lport);
	if (uport != 0)
		st_cfg_upstream(c, "tcp://127.0.0.1:%u", (unsigned)uport);
}

void st_cfg_route_set(st_cfg *c, const char *key, const char *fmt, ...)
{
	struct route *r = cur(c, "st_cfg_route_set");
	va_list ap;

	va_start(ap, fmt);
	kvs_set(&r->opts, key, st_vfmt(fmt, ap));
	va_end(ap);
}

void st_cfg_listen(st_cfg *c, const char *fmt, ...)
{
	struct route *r = cur(c, "st_cfg_listen");
	va_list ap;

	free(r->listen);
	va_start(ap, fmt);
	r->listen = st_vfmt(fmt, ap);
	va_end(ap);
}

void st_cfg_listen_set(st_cfg *c, const char *key, const char *fmt, ...)
{
	struct route *r = cur(c, "st_cfg_listen_set");
	va_list ap;

	va_start(ap, fmt);
	kvs_set(&r->listen_opts, key, st_vfmt(fmt, ap));
	va_end(ap);
}

void st_cfg_upstream(st_cfg *c, const char *fmt, ...)
{
	struct route *r = cur(c, "st_cfg_upstream");
	struct upstream *u;
	va_list ap;

	r->up = grow(r->up, r->nup + 1, sizeof *r->up);
	u = &r->up[r->nup++];
	memset(u, 0, sizeof *u);
	va_start(ap, fmt);
	u->address = st_vfmt(fmt, ap);
	va_end(ap);
}

void st_cfg_upstream_set(st_cfg *c, const char *key, const char *fmt, ...)
{
	struct route *r = cur(c, "st_cfg_upstream_set");
	va_list ap;

	if (r->nup == 0)
		st_fail("st_cfg_upstream_set: route %s has no upstream yet",
			r->name);
	va_start(ap, fmt);
	kvs_set(&r->up[r->nup - 1].opts, key, st_vfmt(fmt, ap));
	va_end(ap);
}

/* A growing string. */
struct text {
	char *s;
	size_t len, cap;
};

#if defined(__GNUC__)
__attribute__((format(SL_FMT_PRINTF, 2, 3)))
#endif
static void put(struct text *t, const char *fmt, ...)
{
	va_list ap;
	char *s;
	size_t n;

	va_start(ap, fmt);
	s = st_vfmt(fmt, ap);
	va_end(ap);
	n = strlen(s);
	if (t->len + n + 1 > t->cap) {
		t->cap = (t->len + n + 1) * 2;
		t->s = grow(t->s, t->cap, 1);
	}
	memcpy(t->s + t->len, s, n + 1);
	t->len += n;
	free(s);
}

/* Each pair on a line of its own, at indent. */
static void put_kvs(struct text *t, const struct kvs *k, const char *indent)
{
	size_t i;

	for (i = 0; i < k->n; i++)
		put(t, "%s%s: %s\n", indent, k->key[i], k->val[i]);
}

char *st_cfg_yaml(const st_cfg *c)
{
	struct text t = {NULL, 0, 0};
	size_t i, j;

	put_kvs(&t, &c->top, "");
	if (c->nroutes > 0)
		put(&t, "routes:\n");
	for (i = 0; i < c->nroutes; i++) {
		const struct route *r = &c->routes[i];

		if (r->listen == NULL)
			st_fail("st_cfg_yaml: route %s has no listen", r->name);
		put(&t, "  - name: %s\n", r->name);
		if (r->listen_opts.n == 0) {
			put(&t, "    listen: %s\n", r->listen);
		} else {
			put(&t, "    listen:\n      address: %s\n", r->listen);
			put_kvs(&t, &r->listen_opts, "      ");
		}
		if (r->nup > 0)
			put(&t, "    upstreams:\n");
		for (j = 0; j < r->nup; j++) {
			const struct upstream *u = &r->up[j];

			if (u->opts.n == 0) {
				put(&t, "      - %s\n", u->address);
			} else {
				put(&t, "      - address: %s\n", u->address);
				put_kvs(&t, &u->opts, "        ");
			}
		}
		put_kvs(&t, &r->opts, "    ");
	}
	return t.s != NULL ? t.s : st_fmt("%s", "");
}

char *st_cfg_done(st_cfg *c)
{
	char *yaml = st_cfg_yaml(c);

	st_cfg_free(c);
	return yaml;
}

st_daemon *st_daemon_start_cfg(st_cfg *c)
{
	char *yaml = st_cfg_done(c);
	st_daemon *d = st_daemon_start(yaml);

	free(yaml);
	return d;
}
