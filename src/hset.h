/*
 * A set of pointers, found by a hash of what they point to: open
 * addressing with linear probing, kept at most half full, so a lookup
 * costs about one comparison whatever the count.  The config loader uses
 * it to judge that route names and listen addresses are unique in linear
 * rather than quadratic time.
 *
 * The caller computes the hash and says what "equal" means (a callback),
 * so the set serves any key and keeps exactly the caller's notion of a
 * duplicate; the only rule is that items that are equal must hash alike.
 * The set neither owns nor frees its items.  Pure code, no locking: one
 * thread at a time.
 */
#ifndef SL_HSET_H
#define SL_HSET_H

#include <stddef.h>
#include <stdint.h>

struct sl_hset_slot;

/* All zero is an empty set (SL_HSET_INIT); sl_hset_free() empties it. */
typedef struct sl_hset {
	struct sl_hset_slot *slot;
	size_t cap;	/* slots: 0, or a power of two */
	size_t n;	/* items */
	unsigned shift; /* 64 - log2(cap): the hash's top bits index */
} sl_hset;

#define SL_HSET_INIT { NULL, 0, 0, 0 }

/* Non-zero when item (in the set) stands for key (what is looked up). */
typedef int (*sl_hset_eq)(const void *item, const void *key);

/* The item equal to key, of those added with this hash; NULL if none. */
const void *sl_hset_find(const sl_hset *h, uint64_t hash, sl_hset_eq eq,
			 const void *key);

/*
 * Add item (not NULL) under hash, without looking for an equal one first:
 * find first where that matters.  0, or -ENOMEM (-EINVAL for a NULL item)
 * with the set unchanged.
 */
int sl_hset_add(sl_hset *h, uint64_t hash, const void *item);

/* Frees the table (not the items); the set is empty and usable again. */
void sl_hset_free(sl_hset *h);

/*
 * 64-bit FNV-1a of n bytes, continuing from h: start with SL_FNV1A_INIT,
 * and feed the parts of a key one after the other.  Not meant to resist
 * keys chosen to collide; the config is its operator's own.
 */
#define SL_FNV1A_INIT UINT64_C(0xcbf29ce484222325)
uint64_t sl_fnv1a(uint64_t h, const void *p, size_t n);

#endif
