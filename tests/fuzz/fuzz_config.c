/*
 * libFuzzer target: the whole config loader (YAML events, the node tree,
 * ${VAR} expansion, every schema check) on arbitrary bytes.  Whatever the
 * input, loading must end in a config or in one error message, without a
 * leak (the fuzzer's LeakSanitizer sees every path that forgets a free).
 * It links confsys_fuzz.c: include patterns match nothing and named files
 * are missing (no input reads the machine's files), and the variables
 * A, PORT, HOST, EMPTY, ODD and BIG are set, the same on every run.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	sl_config *cfg = (sl_config *)1;
	char err[512];
	int r;

	err[0] = '\0';
	r = sl_config_load_string((const char *)data, size, "fuzz.yaml", &cfg,
				  err, sizeof err);
	if (r == 0) {
		if (cfg == NULL)
			abort();
		sl_config_free(cfg);
	} else {
		/* A failure says why, and hands out no half-built config. */
		if (cfg != NULL || err[0] == '\0' ||
		    memchr(err, '\0', sizeof err) == NULL)
			abort();
	}
	return 0;
}
