/*
 * File names (path.h).  The one place sluice makes a relative name
 * absolute; how each OS does it, and how a Windows name becomes the
 * UTF-16 name its calls take, is in os/.
 */
#include "path.h"

#include "os/os.h"

char *sl_path_absolute(const char *path)
{
	return sl_os_path_absolute(path);
}

char *sl_path_join_cwd(const char *path)
{
	return sl_os_path_join_cwd(path);
}

FILE *sl_path_fopen(const char *path, const char *mode)
{
	return sl_os_fopen(path, mode);
}

const char *sl_path_default_conf(void)
{
	return sl_os_default_conf();
}
