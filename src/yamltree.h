/*
 * Pass one of config loading (config.c is pass two): libyaml's events for
 * one document turned into a tree of plain nodes with their positions,
 * refusing what the schema never needs (anchors, aliases, unknown tags,
 * several documents).  Also what reading the tree takes everywhere: the
 * first error as "NAME:LINE:COL: text", safe quoting of the file's text,
 * the names of node kinds, and a scalar's value or why there is none.
 */
#ifndef SL_YAMLTREE_H
#define SL_YAMLTREE_H

#include <stddef.h>

enum ykind { YN_SCALAR, YN_SEQ, YN_MAP };

struct ynode {
	enum ykind kind;
	const char *file;    /* its file's name, as messages give it */
	unsigned line, col;  /* 1-based */
	int null;	     /* plain ~, null, empty, or tagged !!null */
	char *text;	     /* scalars; NUL-terminated, no NUL inside */
	struct ynode **kid;  /* sequence items; mapping key, value, key, ... */
	size_t nkid;
};

/*
 * Where messages go.  Only the first error is kept: both passes stop at
 * it, so there is exactly one message, and a caller that fails after a
 * callee did cannot overwrite it.
 */
struct yerr {
	const char *name; /* the file, as messages name it */
	char *err;	  /* NULL: no message wanted */
	size_t errlen;
	int failed;
};

/*
 * "NAME:LINE:COL: text" into e->err, or "NAME: text" when line is 0 (no
 * position: out of memory, a file that cannot be read).  Returns -1, for
 * `return yerr_at(...)`, also when an earlier error is kept instead.
 */
int yerr_at(struct yerr *e, unsigned line, unsigned col, const char *fmt,
	    ...)
#if defined(__GNUC__)
	__attribute__((format(SL_FMT_PRINTF, 4, 5)))
#endif
	;

/* The same at a position in another file than e->name (an included one):
 * "FILE:LINE:COL: text". */
int yerr_in(struct yerr *e, const char *file, unsigned line, unsigned col,
	    const char *fmt, ...)
#if defined(__GNUC__)
	__attribute__((format(SL_FMT_PRINTF, 5, 6)))
#endif
	;

/*
 * The tree of one document; its nodes and texts live in one arena.  The
 * caps on nodes and on scalar text count from what nodes and text hold
 * when building starts, so a caller reading several files (includes)
 * carries the counts over and the caps hold for all of them.
 */
struct ytree {
	struct ynode *root; /* NULL: no document (empty, or comments only) */
	struct yarena *arena;
	unsigned nodes; /* made so far, up to the cap */
	size_t text;	/* bytes of scalar text so far, up to the cap */
};

/*
 * Build t (zeroed by the caller, but for nodes and text) from the len
 * bytes of text; every node's file is e->name, which must outlive the
 * tree.  0, or -1 with the message in e; either way ytree_free(t) frees
 * what was made.
 */
int ytree_build(struct ytree *t, const char *text, size_t len,
		struct yerr *e);
void ytree_free(struct ytree *t);

/*
 * ${NAME} in every scalar value of the tree (not in mapping keys, not in
 * null scalars) replaced by lookup(NAME): 0 with a malloc'd value, 1 for
 * a name that is not set, -1 out of memory.  NAME is [A-Za-z_][A-Za-z0-9_]*
 * between "${" and "}"; "$${" stands for "${"; any other '$' stays.  An
 * unset name, a malformed reference and text past the cap are errors at
 * the scalar.  0 or -1 with the message in e.
 */
int ytree_expand(struct ytree *t, struct yerr *e,
		 int (*lookup)(const char *name, char **value));

/* "a scalar", "a sequence", "a mapping". */
const char *ykind_name(enum ykind k);

/*
 * Text from the file, made safe and short for a message: at most 64
 * bytes and "...", control characters as '?'.  Returns q->s.  The buffer
 * is the caller's (one per quote in a message), so two quotes in one
 * message do not share it.
 */
struct yquote {
	char s[72];
};
const char *yquote(struct yquote *q, const char *text);

/*
 * The text of v, the value of key k, when it is a scalar with a value;
 * else NULL, with "KEY is a mapping (expected EXPECT)" or "KEY has no
 * value (expected EXPECT)" in e.
 */
const char *yscalar(struct yerr *e, const struct ynode *k,
		    const struct ynode *v, const char *expect);

#endif
