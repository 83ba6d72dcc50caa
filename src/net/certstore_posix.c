/*
 * The OS's trusted roots, POSIX: no store to enumerate.  tls.c uses
 * OpenSSL's default CA file and directory there
 * (SSL_CTX_set_default_verify_paths), which is where these systems keep
 * their roots.
 */
#include "net.h"

#include <errno.h>

int sl_os_trusted_roots(int (*add)(const unsigned char *der, size_t len,
				   void *arg),
			void *arg)
{
	(void)add;
	(void)arg;
	return -ENOSYS;
}
