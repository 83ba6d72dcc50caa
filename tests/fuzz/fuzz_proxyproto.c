/*
 * libFuzzer target: the PROXY protocol parser on arbitrary first bytes of
 * a connection.  It must stay inside len, never ask for more once
 * SL_PP_MAX_LEN bytes are there, give a reason for every refusal, and for
 * a header it accepts: every shorter prefix asks for more, and the same
 * version's builder writes a header that parses back to the same
 * addresses.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/addr.h"
#include "proxyproto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int same_addr(const sl_ipaddr *a, const sl_ipaddr *b)
{
	return sl_ipaddr_equal(a, b) && a->port == b->port;
}

static void check_rebuilt(const sl_pp_info *in)
{
	char buf[SL_PP_MAX_LEN];
	sl_pp_info out;
	size_t n;
	ptrdiff_t r;

	n = in->version == 1 ? sl_pp_build_v1(in, buf, sizeof buf)
			     : sl_pp_build_v2(in, buf, sizeof buf);
	if (n == 0 || n > (in->version == 1 ? SL_PP_V1_MAX : 16 + 216))
		abort();
	r = sl_pp_parse(buf, n, &out, NULL);
	if (r != (ptrdiff_t)n || out.version != in->version ||
	    out.local != in->local)
		abort();
	switch (in->family) {
	case SL_PP_TCP4:
	case SL_PP_TCP6:
		/* Both ends IPv4-mapped come back as TCP4. */
		if (out.family != SL_PP_TCP4 && out.family != SL_PP_TCP6)
			abort();
		if (!same_addr(&in->src, &out.src) ||
		    !same_addr(&in->dst, &out.dst))
			abort();
		break;
	case SL_PP_UNIX:
		if (out.family != SL_PP_UNIX ||
		    strcmp(in->src_path, out.src_path) != 0 ||
		    strcmp(in->dst_path, out.dst_path) != 0)
			abort();
		break;
	case SL_PP_UNKNOWN:
		if (out.family != SL_PP_UNKNOWN)
			abort();
		break;
	default:
		abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *why = "untouched";
	sl_pp_info info;
	uint8_t *copy;
	ptrdiff_t r;

	/* An exact-size copy, so AddressSanitizer sees a read past len. */
	if ((copy = malloc(size != 0 ? size : 1)) == NULL)
		return 0;
	memcpy(copy, data, size);
	r = sl_pp_parse(copy, size, &info, &why);
	if (r < 0) {
		if (r != -1 || why == NULL)
			abort();
	} else if (r == 0) {
		if (size >= SL_PP_MAX_LEN || why != NULL)
			abort();
	} else {
		if ((size_t)r > size || r > SL_PP_MAX_LEN || why != NULL)
			abort();
		if (info.version != 1 && info.version != 2)
			abort();
		if (info.version == 1 && (r > SL_PP_V1_MAX || info.local))
			abort();
		if (info.local && info.family != SL_PP_UNKNOWN)
			abort();
		for (ptrdiff_t n = 0; n < r; n++)
			if (sl_pp_parse(copy, (size_t)n, NULL, NULL) != 0)
				abort();
		check_rebuilt(&info);
	}
	free(copy);
	return 0;
}
