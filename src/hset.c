/*
 * Open addressing with linear probing.  Each slot keeps the item's whole
 * hash: a probe compares hashes before it calls the caller's (slower)
 * equality, and growing moves items without hashing them again.
 */
#include "hset.h"

#include <errno.h>
#include <stdlib.h>

struct sl_hset_slot {
	uint64_t hash;
	const void *item; /* NULL: free */
};

#define HSET_MIN_CAP 16

/*
 * The slot to start probing at.  FNV-1a's low bits depend on the low bits
 * of the input bytes only (its multiply carries upward), so the index is
 * taken from the top bits, after a Fibonacci multiply that spreads every
 * bit of the hash into them.
 */
static size_t home(const sl_hset *h, uint64_t hash)
{
	return (size_t)((hash * UINT64_C(0x9e3779b97f4a7c15)) >> h->shift);
}

static void put(sl_hset *h, uint64_t hash, const void *item)
{
	size_t i = home(h, hash);

	while (h->slot[i].item != NULL)
		i = (i + 1) & (h->cap - 1);
	h->slot[i].hash = hash;
	h->slot[i].item = item;
}

static int grow(sl_hset *h)
{
	sl_hset old = *h;
	size_t cap = old.cap ? old.cap * 2 : HSET_MIN_CAP;
	unsigned bits = 0;

	if (old.cap > SIZE_MAX / 2 / sizeof *h->slot)
		return -ENOMEM;
	if ((h->slot = calloc(cap, sizeof *h->slot)) == NULL) {
		*h = old;
		return -ENOMEM;
	}
	while (((size_t)1 << bits) < cap)
		bits++;
	h->cap = cap;
	h->shift = 64 - bits;
	for (size_t i = 0; i < old.cap; i++)
		if (old.slot[i].item != NULL)
			put(h, old.slot[i].hash, old.slot[i].item);
	free(old.slot);
	return 0;
}

const void *sl_hset_find(const sl_hset *h, uint64_t hash, sl_hset_eq eq,
			 const void *key)
{
	size_t i;

	if (h == NULL || h->cap == 0)
		return NULL;
	/* At most half full: a free slot always ends the probe. */
	for (i = home(h, hash); h->slot[i].item != NULL;
	     i = (i + 1) & (h->cap - 1))
		if (h->slot[i].hash == hash && eq(h->slot[i].item, key))
			return h->slot[i].item;
	return NULL;
}

int sl_hset_add(sl_hset *h, uint64_t hash, const void *item)
{
	int r;

	if (h == NULL || item == NULL)
		return -EINVAL;
	if ((h->n + 1) * 2 > h->cap && (r = grow(h)) < 0)
		return r;
	put(h, hash, item);
	h->n++;
	return 0;
}

void sl_hset_free(sl_hset *h)
{
	if (h == NULL)
		return;
	free(h->slot);
	h->slot = NULL;
	h->cap = h->n = 0;
	h->shift = 0;
}

uint64_t sl_fnv1a(uint64_t h, const void *p, size_t n)
{
	const unsigned char *b = p;

	for (size_t i = 0; i < n; i++) {
		h ^= b[i];
		h *= UINT64_C(0x100000001b3);
	}
	return h;
}
