/*
 * What streams do alike on every platform, written once: the getters,
 * closing, names and addresses, and connecting (resolve, then try each
 * address in turn, within the timeout).  What differs (descriptors and
 * readiness, or handles and completions) is behind the functions
 * stream_common.h lists for each platform.
 */
#include "stream_common.h"

void sl_stream_set_data(sl_stream *s, void *data)
{
	sl_stream_base(s)->data = data;
}

void *sl_stream_get_data(const sl_stream *s)
{
	return sl_stream_cbase(s)->data;
}

sl_loop *sl_stream_loop(const sl_stream *s)
{
	return sl_stream_cbase(s)->loop;
}

enum sl_ep_kind sl_stream_kind(const sl_stream *s)
{
	return sl_stream_cbase(s)->kind;
}

size_t sl_stream_write_queue_size(const sl_stream *s)
{
	return s != NULL ? sl_stream_cbase(s)->wq_bytes : 0;
}
