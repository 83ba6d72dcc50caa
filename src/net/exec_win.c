/*
 * Child processes for exec: upstreams, Windows (sl_exec_spawn in net.h):
 * not written yet.  The config accepts exec: everywhere (it is checked
 * alike on every OS); a session on Windows fails its connect with
 * SL_EUNSUPP, logged as for any connect that fails.
 */
#include "win.h"

#include <stdio.h>

int sl_exec_spawn(sl_loop *loop, const sl_exec_opts *o, sl_exec **out,
		  sl_stream **stream)
{
	(void)loop;
	(void)o;
	(void)out;
	(void)stream;
	return SL_EUNSUPP;
}

void *sl_exec_get_data(const sl_exec *x)
{
	(void)x;
	return NULL;
}

long sl_exec_pid(const sl_exec *x)
{
	(void)x;
	return 0;
}

void sl_exec_release(sl_exec *x, uint64_t timeout_ms)
{
	(void)x;
	(void)timeout_ms;
}

void sl_exec_status_text(int status, char *buf, size_t len)
{
	snprintf(buf, len, "exited %d", status);
}
