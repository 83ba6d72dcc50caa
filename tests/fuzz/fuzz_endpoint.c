/*
 * libFuzzer target: the endpoint parser, and its canonical form.  An
 * endpoint that parses must format to text that parses back to an equal
 * endpoint, so what sluice logs and `sluice -t` prints can be pasted into
 * a config; and the two must hash alike.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/endpoint.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s, err[256], text[2 * SL_EP_PATH_MAX + SL_EP_HOST_MAX];
	sl_endpoint ep, again;
	int n;

	/* The parser takes a C string: cut at the first NUL, as a config
	 * string would be. */
	if ((s = malloc(size + 1)) == NULL)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	if (sl_endpoint_parse(s, &ep, err, sizeof err) == 0) {
		n = sl_endpoint_format(&ep, text, sizeof text);
		if (n < 0 || (size_t)n >= sizeof text)
			abort();
		if (sl_endpoint_parse(text, &again, err, sizeof err) != 0)
			abort();
		if (!sl_endpoint_equal(&ep, &again) ||
		    !sl_endpoint_equal(&again, &ep))
			abort();
		/* Equal endpoints hash alike, or the config's uniqueness
		 * check would miss a duplicate. */
		if (sl_endpoint_hash(&ep) != sl_endpoint_hash(&again))
			abort();
	} else if (err[0] == '\0') {
		abort(); /* a refusal always says why */
	}
	free(s);
	return 0;
}
