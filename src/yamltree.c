/*
 * Pass one: libyaml's events into a tree of nodes (see yamltree.h).  The
 * events come one at a time; the open sequences and mappings sit on a
 * stack, and their children gather in one list until their parent ends,
 * when they get an array of their exact size.
 */
#include "yamltree.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "errf.h"

/* The schema nests 5 levels deep; the cap sizes the stack of open nodes
 * while the tree is built. */
#define CONF_MAX_DEPTH 64
/*
 * Scalars, sequences and mappings in one config.  A route with a name, one
 * listen address and one upstream is 7 nodes, so this leaves room for
 * 100,000 routes of 20 nodes each; and at some 60 bytes a node it bounds
 * what a 16 MiB file of two-byte scalars ("[a,a,...", eight million
 * nodes) can make the tree take to about 120 MB.
 */
#define CONF_MAX_NODES 2000000u
/*
 * Bytes of scalar text in one config, its included files and what ${VAR}
 * expanded to all counted: as much as the largest file holds, so a
 * variable of a megabyte named a million times cannot make a terabyte.
 */
#define CONF_MAX_TEXT (16u * 1024 * 1024)

#define TAG_PREFIX "tag:yaml.org,2002:"

static int yerr_v(struct yerr *e, const char *file, unsigned line,
		  unsigned col, const char *fmt, va_list ap)
#if defined(__GNUC__)
	__attribute__((format(SL_FMT_PRINTF, 5, 0)))
#endif
	;

static int yerr_v(struct yerr *e, const char *file, unsigned line,
		  unsigned col, const char *fmt, va_list ap)
{
	int n;

	if (e->failed)
		return -1;
	e->failed = 1;
	if (e->err == NULL || e->errlen == 0)
		return -1;
	if (line > 0)
		n = snprintf(e->err, e->errlen, "%s:%u:%u: ", file, line, col);
	else
		n = snprintf(e->err, e->errlen, "%s: ", file);
	if (n < 0 || (size_t)n >= e->errlen)
		return -1;
	return sl_verrf(e->err + n, e->errlen - (size_t)n, -1, fmt, ap);
}

int yerr_at(struct yerr *e, unsigned line, unsigned col, const char *fmt,
	    ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = yerr_v(e, e->name, line, col, fmt, ap);
	va_end(ap);
	return n;
}

int yerr_in(struct yerr *e, const char *file, unsigned line, unsigned col,
	    const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = yerr_v(e, file, line, col, fmt, ap);
	va_end(ap);
	return n;
}

/*
 * The tree lives in an arena freed at once: nodes, texts and child arrays
 * are cut from 64 KiB blocks, so a node costs its 40 bytes and its text
 * rather than two mallocs with their headers and slack, and freeing a tree
 * of a million nodes is a walk over a thousand blocks.
 */
struct yarena {
	struct yarena *next;
	size_t size, used; /* bytes after the header */
};

#define ARENA_BLOCK (64u * 1024)
/* Enough for struct ynode's pointers and sizes on every target. */
#define ARENA_ALIGN ((size_t)8)
#define ARENA_ROUND(n) (((n) + ARENA_ALIGN - 1) & ~(ARENA_ALIGN - 1))
#define ARENA_HDR ARENA_ROUND(sizeof(struct yarena))

/* n bytes from the arena *a, aligned; NULL when out of memory. */
static void *arena_alloc(struct yarena **a, size_t n)
{
	struct yarena *b = *a;
	void *p;

	n = ARENA_ROUND(n);
	if (b == NULL || b->size - b->used < n) {
		/* A large piece (a long scalar, the list of routes) gets a
		 * block of its own, behind the current one, which goes on
		 * serving the small pieces. */
		int own = n > ARENA_BLOCK / 4;
		size_t size = own ? n : ARENA_BLOCK;
		struct yarena *nb = malloc(ARENA_HDR + size);

		if (nb == NULL)
			return NULL;
		nb->size = size;
		nb->used = 0;
		if (own && b != NULL) {
			nb->next = b->next;
			b->next = nb;
		} else {
			nb->next = b;
			*a = nb;
		}
		b = nb;
	}
	p = (char *)b + ARENA_HDR + b->used;
	b->used += n;
	return p;
}

void ytree_free(struct ytree *t)
{
	while (t->arena != NULL) {
		struct yarena *next = t->arena->next;

		free(t->arena);
		t->arena = next;
	}
	t->root = NULL;
	t->nodes = 0;
	t->text = 0;
}

const char *yquote(struct yquote *q, const char *text)
{
	size_t i;

	for (i = 0; text[i] != '\0' && i < 64; i++)
		q->s[i] = (unsigned char)text[i] < 0x20 || text[i] == 0x7f
				  ? '?'
				  : text[i];
	if (text[i] != '\0') {
		memcpy(q->s + i, "...", 3);
		i += 3;
	}
	q->s[i] = '\0';
	return q->s;
}

const char *ykind_name(enum ykind k)
{
	return k == YN_SCALAR ? "a scalar"
	       : k == YN_SEQ  ? "a sequence"
			      : "a mapping";
}

/* Anchors, aliases and tags are refused before any node is made. */
static int check_props(struct yerr *e, const yaml_event_t *ev,
		       const yaml_char_t *anchor, const yaml_char_t *tag,
		       enum ykind kind)
{
	static const char *const scalar_tags[] = { "str", "int", "float",
						   "bool", "null" };
#define NSCALAR_TAGS (sizeof scalar_tags / sizeof scalar_tags[0])
	unsigned line = (unsigned)ev->start_mark.line + 1;
	unsigned col = (unsigned)ev->start_mark.column + 1;
	const char *t = (const char *)tag;
	struct yquote q;

	if (anchor != NULL)
		return yerr_at(e, line, col,
			       "anchors and aliases are not supported (write "
			       "the value out)");
	/* "!" is YAML's non-specific tag: a quoted string, so allowed. */
	if (t == NULL || strcmp(t, "!") == 0)
		return 0;
	if (strncmp(t, TAG_PREFIX, sizeof TAG_PREFIX - 1) == 0) {
		const char *s = t + sizeof TAG_PREFIX - 1;

		if (kind == YN_SEQ && strcmp(s, "seq") == 0)
			return 0;
		if (kind == YN_MAP && strcmp(s, "map") == 0)
			return 0;
		for (size_t i = 0; kind == YN_SCALAR && i < NSCALAR_TAGS; i++)
			if (strcmp(s, scalar_tags[i]) == 0)
				return 0;
		return yerr_at(e, line, col,
			       "tag '!!%s' on %s (expected no tag, or a core "
			       "tag that fits: !!str, !!int, !!float, !!bool, "
			       "!!null, !!seq, !!map)",
			       yquote(&q, s), ykind_name(kind));
	}
	return yerr_at(e, line, col,
		       "unsupported tag '%s' (expected no tag, or a YAML core "
		       "tag such as !!str)",
		       yquote(&q, t));
}

static struct ynode *node_new(struct ytree *t, struct yerr *e,
			      enum ykind kind, const yaml_event_t *ev)
{
	unsigned line = (unsigned)ev->start_mark.line + 1;
	unsigned col = (unsigned)ev->start_mark.column + 1;
	struct ynode *n;

	if (t->nodes == CONF_MAX_NODES) {
		yerr_at(e, line, col,
			"too many YAML nodes (at most %u scalars, sequences "
			"and mappings in all)",
			CONF_MAX_NODES);
		return NULL;
	}
	if ((n = arena_alloc(&t->arena, sizeof *n)) == NULL) {
		yerr_at(e, 0, 0, "out of memory");
		return NULL;
	}
	t->nodes++;
	memset(n, 0, sizeof *n);
	n->kind = kind;
	n->file = e->name;
	n->line = line;
	n->col = col;
	return n;
}

/* A sequence or mapping is complete: its children, which were gathered in
 * kids[from..to), get an array of their exact size. */
static int node_close(struct ytree *t, struct yerr *e, struct ynode *parent,
		      struct ynode *const *kids, size_t from, size_t to)
{
	size_t n = to - from;

	if (n == 0)
		return 0; /* kids may be NULL yet */
	if ((parent->kid = arena_alloc(&t->arena, n * sizeof *kids)) == NULL)
		return yerr_at(e, 0, 0, "out of memory");
	memcpy(parent->kid, kids + from, n * sizeof *kids);
	parent->nkid = n;
	return 0;
}

static int is_null_text(const char *s)
{
	return s[0] == '\0' || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 ||
	       strcmp(s, "Null") == 0 || strcmp(s, "NULL") == 0;
}

static struct ynode *scalar_new(struct ytree *t, struct yerr *e,
				const yaml_event_t *ev)
{
	const char *tag = (const char *)ev->data.scalar.tag;
	size_t len = ev->data.scalar.length;
	struct ynode *n;

	if (check_props(e, ev, ev->data.scalar.anchor, ev->data.scalar.tag,
			YN_SCALAR) < 0)
		return NULL;
	if ((n = node_new(t, e, YN_SCALAR, ev)) == NULL)
		return NULL;
	if (memchr(ev->data.scalar.value, '\0', len) != NULL) {
		yerr_at(e, n->line, n->col,
			"NUL character in a string (not allowed)");
		return NULL;
	}
	if (len > CONF_MAX_TEXT - t->text) {
		yerr_at(e, n->line, n->col,
			"too much text (at most %u MiB in all scalars)",
			CONF_MAX_TEXT >> 20);
		return NULL;
	}
	t->text += len;
	if ((n->text = arena_alloc(&t->arena, len + 1)) == NULL) {
		yerr_at(e, 0, 0, "out of memory");
		return NULL;
	}
	memcpy(n->text, ev->data.scalar.value, len);
	n->text[len] = '\0';
	if (tag != NULL)
		n->null = strcmp(tag, TAG_PREFIX "null") == 0;
	else
		n->null = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
			  is_null_text(n->text);
	return n;
}

/* Line and column of a byte offset, for reader errors (bad encoding), which
 * libyaml reports by offset only. */
static void offset_mark(const char *text, size_t len, size_t off,
			unsigned *line, unsigned *col)
{
	*line = 1;
	*col = 1;
	for (size_t i = 0; i < off && i < len; i++) {
		if (text[i] == '\n') {
			(*line)++;
			*col = 1;
		} else if (((unsigned char)text[i] & 0xc0) != 0x80) {
			(*col)++;
		}
	}
}

static int yaml_fail(struct yerr *e, const yaml_parser_t *p, const char *text,
		     size_t len)
{
	unsigned line, col;

	switch (p->error) {
	case YAML_MEMORY_ERROR:
		return yerr_at(e, 0, 0, "out of memory");
	case YAML_READER_ERROR:
		offset_mark(text, len, p->problem_offset, &line, &col);
		return yerr_at(e, line, col, "%s (expected UTF-8 text)",
			       p->problem ? p->problem : "cannot read");
	default:
		line = (unsigned)p->problem_mark.line + 1;
		col = (unsigned)p->problem_mark.column + 1;
		if (p->context != NULL)
			return yerr_at(e, line, col, "%s (YAML syntax, %s at "
						     "%u:%u)",
				       p->problem ? p->problem : "syntax error",
				       p->context,
				       (unsigned)p->context_mark.line + 1,
				       (unsigned)p->context_mark.column + 1);
		return yerr_at(e, line, col, "%s (YAML syntax)",
			       p->problem ? p->problem : "syntax error");
	}
}

int ytree_build(struct ytree *t, const char *text, size_t len,
		struct yerr *e)
{
	struct ynode *stack[CONF_MAX_DEPTH];
	size_t first[CONF_MAX_DEPTH]; /* stack[i]'s first child in kids */
	/* The children of the open nodes, in document order, until their
	 * parent ends; reused, so it grows to the widest list only. */
	struct ynode **kids = NULL;
	size_t nkids = 0, kidcap = 0;
	size_t depth = 0;
	yaml_parser_t p;
	yaml_event_t ev;
	int ndocs = 0, done = 0, r = 0;

	if (!yaml_parser_initialize(&p))
		return yerr_at(e, 0, 0, "out of memory");
	yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
	while (!done) {
		struct ynode *n = NULL;
		enum ykind kind;

		if (!yaml_parser_parse(&p, &ev)) {
			r = yaml_fail(e, &p, text, len);
			break;
		}
		switch (ev.type) {
		case YAML_STREAM_END_EVENT:
			done = 1;
			break;
		case YAML_DOCUMENT_START_EVENT:
			if (++ndocs > 1)
				r = yerr_at(e, (unsigned)ev.start_mark.line + 1,
					    (unsigned)ev.start_mark.column + 1,
					    "a second YAML document (expected "
					    "one document)");
			break;
		case YAML_ALIAS_EVENT:
			r = yerr_at(e, (unsigned)ev.start_mark.line + 1,
				    (unsigned)ev.start_mark.column + 1,
				    "anchors and aliases are not supported "
				    "(write the value out)");
			break;
		case YAML_SCALAR_EVENT:
			if ((n = scalar_new(t, e, &ev)) == NULL)
				r = -1;
			break;
		case YAML_SEQUENCE_START_EVENT:
		case YAML_MAPPING_START_EVENT:
			kind = ev.type == YAML_SEQUENCE_START_EVENT ? YN_SEQ
								     : YN_MAP;
			if (kind == YN_SEQ)
				r = check_props(e, &ev,
						ev.data.sequence_start.anchor,
						ev.data.sequence_start.tag,
						kind);
			else
				r = check_props(e, &ev,
						ev.data.mapping_start.anchor,
						ev.data.mapping_start.tag,
						kind);
			if (r < 0)
				break;
			if (depth == CONF_MAX_DEPTH) {
				r = yerr_at(e, (unsigned)ev.start_mark.line + 1,
					    (unsigned)ev.start_mark.column + 1,
					    "nested too deep (at most %d "
					    "levels)",
					    CONF_MAX_DEPTH);
				break;
			}
			if ((n = node_new(t, e, kind, &ev)) == NULL)
				r = -1;
			break;
		case YAML_SEQUENCE_END_EVENT:
		case YAML_MAPPING_END_EVENT:
			depth--;
			r = node_close(t, e, stack[depth], kids, first[depth],
				       nkids);
			nkids = first[depth];
			break;
		default:
			break;
		}
		yaml_event_delete(&ev);
		if (n != NULL) {
			if (depth == 0) {
				t->root = n;
			} else {
				if (nkids == kidcap) {
					size_t cap = kidcap ? kidcap * 2 : 64;
					struct ynode **k =
						realloc(kids, cap * sizeof *k);

					if (k == NULL) {
						r = yerr_at(e, 0, 0,
							    "out of memory");
						break;
					}
					kids = k;
					kidcap = cap;
				}
				kids[nkids++] = n;
			}
			if (n->kind != YN_SCALAR) {
				first[depth] = nkids;
				stack[depth++] = n;
			}
		}
		if (r < 0)
			break;
	}
	yaml_parser_delete(&p);
	free(kids);
	if (r < 0)
		t->root = NULL;
	return r;
}


const char *yscalar(struct yerr *e, const struct ynode *k,
		    const struct ynode *v, const char *expect)
{
	if (v->kind != YN_SCALAR) {
		yerr_at(e, v->line, v->col, "%s is %s (expected %s)", k->text,
			ykind_name(v->kind), expect);
		return NULL;
	}
	if (v->null) {
		yerr_at(e, v->line, v->col, "%s has no value (expected %s)",
			k->text, expect);
		return NULL;
	}
	return v->text;
}

/* ---- ${VAR} ---- */

#define EXP_VAR "${NAME} with NAME of A-Z a-z 0-9 _ not starting with a " \
		"digit, or $${ for a literal ${"

static int name_start(char ch)
{
	return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
	       ch == '_';
}

static int name_char(char ch)
{
	return name_start(ch) || (ch >= '0' && ch <= '9');
}

/* A growing buffer for one expanded scalar. */
struct xbuf {
	char *s;
	size_t len, cap;
};

static int xbuf_add(struct xbuf *b, const char *p, size_t n)
{
	if (n == 0)
		return 0; /* b->s may be NULL yet */
	if (n > b->cap - b->len) {
		size_t cap = b->cap ? b->cap : 64;
		char *ns;

		while (cap - b->len < n)
			cap *= 2;
		if ((ns = realloc(b->s, cap)) == NULL)
			return -1;
		b->s = ns;
		b->cap = cap;
	}
	memcpy(b->s + b->len, p, n);
	b->len += n;
	return 0;
}

/* n's text with its variables replaced, into b; room is what the cap
 * leaves.  0 or -1 with the message in e. */
static int expand_text(struct yerr *e, const struct ynode *n,
		       int (*lookup)(const char *, char **), size_t room,
		       struct xbuf *b)
{
	const char *s = n->text;
	struct yquote q;

	while (*s != '\0') {
		const char *name, *end, *lit = s;
		char key[256], *v = NULL;
		int r;

		if (s[0] == '$' && s[1] == '$' && s[2] == '{') {
			if (xbuf_add(b, "${", 2) < 0)
				goto nomem;
			s += 3;
			continue;
		}
		if (s[0] != '$' || s[1] != '{') {
			/* Up to the next '$' at once. */
			for (s++; *s != '\0' && *s != '$'; s++)
				;
			if (xbuf_add(b, lit, (size_t)(s - lit)) < 0)
				goto nomem;
			continue;
		}
		name = s + 2;
		for (end = name; name_char(*end); end++)
			;
		if (!name_start(*name) || *end != '}')
			return yerr_in(e, n->file, n->line, n->col,
				       "malformed variable in '%s' (expected "
				       EXP_VAR ")",
				       yquote(&q, n->text));
		if ((size_t)(end - name) >= sizeof key)
			return yerr_in(e, n->file, n->line, n->col,
				       "variable name too long in '%s' (at "
				       "most %zu characters)",
				       yquote(&q, n->text), sizeof key - 1);
		memcpy(key, name, (size_t)(end - name));
		key[end - name] = '\0';
		if ((r = lookup(key, &v)) < 0)
			goto nomem;
		if (r > 0)
			return yerr_in(e, n->file, n->line, n->col,
				       "environment variable %s is not set "
				       "(in '%s'; expected it set, or $${ "
				       "for a literal ${)",
				       key, yquote(&q, n->text));
		/* Past room already (literal text after an earlier value
		 * counts too), or by this value: the message below. */
		r = b->len > room || strlen(v) > room - b->len
			    ? 1
			    : xbuf_add(b, v, strlen(v));
		free(v);
		if (r < 0)
			goto nomem;
		if (r > 0)
			break;
		s = end + 1;
	}
	if (b->len > room || *s != '\0')
		return yerr_in(e, n->file, n->line, n->col,
			       "too much text after expanding variables (at "
			       "most %u MiB in all scalars)",
			       CONF_MAX_TEXT >> 20);
	return 0;
nomem:
	return yerr_at(e, 0, 0, "out of memory");
}

static int expand_node(struct ytree *t, struct yerr *e, struct ynode *n,
		       int (*lookup)(const char *, char **))
{
	struct xbuf b = { 0 };
	size_t before;
	int r;

	if (n->kind != YN_SCALAR) {
		/* A mapping's keys (its even children) stay as written. */
		size_t step = n->kind == YN_MAP ? 2 : 1;

		for (size_t i = n->kind == YN_MAP ? 1 : 0; i < n->nkid;
		     i += step)
			if (expand_node(t, e, n->kid[i], lookup) < 0)
				return -1;
		return 0;
	}
	if (n->null || strchr(n->text, '$') == NULL)
		return 0;
	/* The scalar's own text is counted already; what it grows by must
	 * fit in what the cap leaves. */
	before = strlen(n->text);
	r = expand_text(e, n, lookup, before + (CONF_MAX_TEXT - t->text), &b);
	if (r == 0 && xbuf_add(&b, "", 1) < 0)
		r = yerr_at(e, 0, 0, "out of memory");
	if (r == 0) {
		char *text = arena_alloc(&t->arena, b.len);

		if (text == NULL) {
			r = yerr_at(e, 0, 0, "out of memory");
		} else {
			memcpy(text, b.s, b.len);
			n->text = text;
			/* b.len counts the NUL. */
			t->text = t->text - before + (b.len - 1);
		}
	}
	free(b.s);
	return r;
}

int ytree_expand(struct ytree *t, struct yerr *e,
		 int (*lookup)(const char *name, char **value))
{
	return t->root != NULL ? expand_node(t, e, t->root, lookup) : 0;
}
