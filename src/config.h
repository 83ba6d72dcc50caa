/*
 * The YAML config (libyaml) turned into a struct config, with every check
 * done here: a config that loads is one the daemon can run.  Errors name
 * file:line:column (1-based) and what was expected.  Schema: sluice.yaml(5).
 */
#ifndef SL_CONFIG_H
#define SL_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "net/endpoint.h"

/* Where an item stood in the file, for messages after loading. */
typedef struct sl_conf_mark {
	unsigned line, col; /* 1-based */
} sl_conf_mark;

typedef struct sl_listen_conf {
	sl_endpoint ep;
	char *address;  /* as written */
	int mode;       /* unix only; -1 = not set */
	char *owner;    /* unix only; NULL = not set */
	char *group;    /* unix only; NULL = not set */
	char *security; /* pipe only (SDDL); NULL = not set */
	int backlog;    /* 0 = default */
	sl_conf_mark mark;
} sl_listen_conf;

typedef struct sl_upstream_conf {
	sl_endpoint ep;
	char *address; /* as written */
	sl_conf_mark mark;
} sl_upstream_conf;

typedef struct sl_route_conf {
	char *name;
	sl_listen_conf *listen;
	size_t nlisten;
	sl_upstream_conf *upstreams;
	size_t nupstreams;
	uint64_t connect_timeout_ms; /* default 5000 */
	uint64_t idle_timeout_ms;    /* default 3600000 (1h); 0 = none */
	unsigned connect_attempts;   /* default: number of upstreams, max 16 */
	unsigned max_connections;    /* 0 = unlimited */
	size_t buffer_size;          /* per direction; default 16384 */
	sl_conf_mark mark;
} sl_route_conf;

typedef struct sl_config {
	char *path;                /* file the config came from */
	unsigned threads;          /* 0 = auto (online CPUs) */
	unsigned max_connections;  /* 0 = unlimited; global */
	uint64_t drain_timeout_ms; /* default 30000 */
	int log_level;             /* SL_LOG_*; default SL_LOG_INFO */
	char *log;                 /* "stderr", "syslog", a file; NULL = by mode */
	int syslog_facility;       /* LOG_*; 0 = LOG_DAEMON */
	char *pidfile;             /* NULL = none */
	char *user, *group;        /* switch to after binding; NULL = stay */
	char *access_log;          /* off|stderr|syslog|FILE; NULL = with log */
	int access_json;           /* access_log format: json (1) or text */
	sl_route_conf *routes;
	size_t nroutes;
} sl_config;

/*
 * Load and check a config.  On failure returns -1, *out is NULL, and err
 * holds "FILE:LINE:COL: message" (or "FILE: message" where there is no
 * position, e.g. the file cannot be opened).
 */
int sl_config_load(const char *path, sl_config **out, char *err,
		   size_t errlen);

/* The same from memory; name stands for the file name in messages. */
int sl_config_load_string(const char *text, size_t len, const char *name,
			  sl_config **out, char *err, size_t errlen);

void sl_config_free(sl_config *cfg);

/* "250ms", "5s", "2m", "1h", "1d"; a bare number is seconds.  0 or -1. */
int sl_parse_duration(const char *s, uint64_t *ms);
/* "16384", "16k", "1m", "1g" (powers of 1024). 0 or -1. */
int sl_parse_size(const char *s, uint64_t *bytes);

#endif
