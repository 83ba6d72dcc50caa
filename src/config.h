/*
 * The YAML config (libyaml) turned into a struct config, with every check
 * done here: a config that loads is one the daemon can run.  Errors name
 * file:line:column (1-based) and what was expected.  Schema: sluice.yaml(5).
 */
#ifndef SL_CONFIG_H
#define SL_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "acl.h"
#include "net/endpoint.h"

/* Where an item stood, for messages after loading: its file (the config
 * or an included one; owned by the config) and its place there. */
typedef struct sl_conf_mark {
	const char *file;
	unsigned line, col; /* 1-based */
} sl_conf_mark;

/* TLS names a peer's certificate may be admitted by (any match admits). */
typedef struct sl_tls_allow_conf {
	int any;           /* allow: any */
	char **cn;         /* subject common names */
	size_t ncn;
	char **dns;        /* DNS subjectAltNames */
	size_t ndns;
	char **uri;        /* URI subjectAltNames (spiffe://...) */
	size_t nuri;
} sl_tls_allow_conf;

/* A copy of from's lists (0, or -1 without memory, to then empty), and
 * freeing one (for whoever keeps a copy past the config: tls.c). */
int sl_tls_allow_copy(sl_tls_allow_conf *to, const sl_tls_allow_conf *from);
void sl_tls_allow_free(sl_tls_allow_conf *a);

enum sl_tls_verify_client {
	SL_TLS_VERIFY_NONE = 0, /* the default */
	SL_TLS_VERIFY_OPTIONAL,
	SL_TLS_VERIFY_REQUIRED,
};

/* A listener's tls: terminating TLS from its clients.  on == 0: none. */
typedef struct sl_tls_listen_conf {
	int on;
	char *cert;      /* PEM chain; the key may be in it too */
	char *key;       /* NULL: in cert */
	char *client_ca; /* CAs client certificates are verified against */
	int verify_client; /* enum sl_tls_verify_client */
	sl_tls_allow_conf allow;
	int min_version;  /* 0x0303 (TLS 1.2, default) or 0x0304 (1.3) */
	uint64_t handshake_timeout_ms; /* default 10000 */
	char *ciphers;      /* TLS 1.2 cipher list; NULL: OpenSSL's */
	char *ciphersuites; /* TLS 1.3 suites; NULL: OpenSSL's */
	int tickets;        /* session tickets; default 1 */
	char **alpn;        /* ALPN protocols, by preference; NULL: none */
	size_t nalpn;
	sl_conf_mark mark;  /* of the tls key */
} sl_tls_listen_conf;

/* An upstream's tls: originating TLS toward it.  on == 0: none. */
typedef struct sl_tls_upstream_conf {
	int on;
	char *ca;          /* NULL: the system's store */
	char *server_name; /* SNI and the name verified; NULL: the host */
	int verify;        /* default 1; 0 only with a warning at start */
	char *cert;        /* client certificate; NULL: none */
	char *key;         /* NULL: in cert */
	int min_version;   /* as a listener's */
	char *ciphers, *ciphersuites;
	int session_reuse; /* offer the last session again; default 1 */
	char **alpn;       /* ALPN protocols offered; NULL: none */
	size_t nalpn;
	sl_conf_mark mark;
} sl_tls_upstream_conf;

typedef struct sl_listen_conf {
	sl_endpoint ep;
	char *address;  /* as written */
	int mode;       /* unix only; -1 = not set */
	char *owner;    /* unix only; NULL = not set */
	char *group;    /* unix only; NULL = not set */
	char *security; /* pipe only (SDDL); NULL = not set */
	int backlog;    /* 0 = default */
	/* PROXY protocol header expected first on every connection. */
	int accept_proxy;
	uint64_t proxy_timeout_ms; /* to receive it; default 5000 */
	sl_cidr *trusted; /* peers that may send it; none = any */
	size_t ntrusted;
	sl_tls_listen_conf tls;
	sl_conf_mark mark;
} sl_listen_conf;

/*
 * A source: the local address (and port, 0: any) connects to an upstream
 * are made from.  family SL_AF_NONE: none, the system chooses.
 */
typedef struct sl_source_conf {
	sl_ipaddr addr;
	sl_conf_mark mark; /* of the value */
} sl_source_conf;

typedef struct sl_upstream_conf {
	sl_endpoint ep;  /* kind 0 for an exec: upstream */
	char *address;  /* as written; NULL for an exec: upstream */
	/* exec: the command run for each session (no shell): argv[0] an
	 * absolute path or a name looked up in PATH, then its arguments;
	 * NULL for an upstream with an address. */
	char **exec;
	size_t nexec;
	uint64_t exec_timeout_ms; /* after the session: then killed; 5000 */
	unsigned weight; /* 1-256; default 1 */
	int backup;      /* used only while every primary is down */
	int send_proxy;  /* PROXY protocol version to send: 0 (none), 1, 2 */
	sl_tls_upstream_conf tls;
	/* Its own source:, or else its route's (filled in for a TCP
	 * upstream when the config loads). */
	sl_source_conf source;
	sl_conf_mark mark;
} sl_upstream_conf;

/*
 * tcp_keepalive of a route, for the TCP sockets of its clients and of
 * its upstreams.  Default: on, every value the system's.
 */
typedef struct sl_keepalive_conf {
	int off;             /* tcp_keepalive: off */
	unsigned idle_s;     /* 1-32767; 0: the system's */
	unsigned interval_s; /* 1-32767; 0: the system's */
	unsigned count;      /* 1-127; 0: the system's */
} sl_keepalive_conf;

enum sl_balance {
	SL_BALANCE_ROUND_ROBIN = 0, /* the default */
	SL_BALANCE_LEAST_CONN,
	SL_BALANCE_RANDOM, /* power of two choices */
	SL_BALANCE_SOURCE_HASH,
	SL_BALANCE_FIRST,
};

typedef struct sl_health_conf {
	/* Passive: connect failures in a row that mark an upstream down
	 * (0 = never), and for how long when there are no active checks. */
	unsigned fails;       /* default 3 */
	uint64_t cooldown_ms; /* default 10000 */
	/* Active checks: off while interval_ms is 0. */
	uint64_t interval_ms;
	uint64_t timeout_ms; /* default 2000, at most the interval */
	unsigned rise;       /* checks passed in a row to be up; default 2 */
	unsigned fall;       /* checks failed in a row to be down; default 3 */
	char *send;          /* bytes to send after connecting; NULL = none */
	size_t send_len;
	char *expect; /* bytes the reply must begin with; NULL = none */
	size_t expect_len;
} sl_health_conf;

/* Access lists as written (judged by sl_acl, see acl.h). */
typedef struct sl_acl_conf {
	sl_cidr *allow;
	size_t nallow;
	sl_cidr *deny;
	size_t ndeny;
} sl_acl_conf;

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
	size_t buffer_size;          /* per direction; default 65536 */
	uint64_t half_closed_timeout_ms; /* 0 = as idle_timeout */
	uint64_t max_duration_ms;        /* 0 = none */
	int balance; /* enum sl_balance (an int: the key table fills it) */
	sl_health_conf health;
	/* All upstreams down: refuse at once (queue_max 0), or hold up to
	 * queue_max clients for up to queue_timeout_ms for one to come up. */
	unsigned queue_max;
	uint64_t queue_timeout_ms; /* default 10000 */
	sl_acl_conf acl;
	unsigned max_per_client; /* open sessions per client address; 0 = any */
	/* At most rate_count new sessions per rate_period_ms (a token
	 * bucket of rate_count, refilled evenly); over it, clients wait in
	 * the listen backlog.  rate_count 0 = no limit. */
	unsigned rate_count;
	uint64_t rate_period_ms;
	sl_keepalive_conf keepalive;
	sl_source_conf source; /* for its TCP upstreams without their own */
	sl_conf_mark mark;
} sl_route_conf;

typedef struct sl_admin_conf {
	sl_endpoint ep;
	char *address; /* as written; NULL = no admin listener */
	sl_acl_conf acl;
	sl_conf_mark mark;
} sl_admin_conf;

typedef struct sl_config {
	char *path;                /* file the config came from */
	unsigned threads;          /* 0 = auto (online CPUs) */
	int thread_batch;          /* thread_policy: batch (1, default) */
	unsigned max_connections;  /* 0 = unlimited; global */
	uint64_t drain_timeout_ms; /* default 30000 */
	int log_level;             /* SL_LOG_*; default SL_LOG_INFO */
	char *log;                 /* "stderr", "syslog", a file; NULL = by mode */
	int syslog_facility;       /* LOG_*; 0 = LOG_DAEMON */
	char *pidfile;             /* NULL = none */
	char *user, *group;        /* switch to after binding; NULL = stay */
	char *access_log;          /* off|stderr|syslog|FILE; NULL = with log */
	int access_json;           /* access_log format: json (1) or text */
	sl_acl_conf acl;           /* checked before every route's own */
	uint64_t resolve_interval_ms; /* re-resolve host names; default 30000 */
	sl_admin_conf admin;
	sl_route_conf *routes; /* the config's, then each included file's */
	size_t nroutes;
	char **files; /* the config's name, then each included file's */
	size_t nfiles;
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

/* The file a mark stands in: its own, else (a mark not from a file) the
 * config's. */
const char *sl_conf_file(const sl_config *cfg, const sl_conf_mark *m);

/*
 * A check every included file must pass before it is read, given its name
 * (a Windows service's: who may write it, as for the config itself);
 * 0, or -1 with a sentence in err.  NULL (the default): none.  Set once,
 * before the first load.
 */
void sl_config_set_include_check(int (*check)(const char *path, char *err,
					      size_t errlen));

/* "250ms", "5s", "2m", "1h", "1d"; a bare number is seconds.  0 or -1. */
int sl_parse_duration(const char *s, uint64_t *ms);
/* "16384", "16k", "1m", "1g" (powers of 1024). 0 or -1. */
int sl_parse_size(const char *s, uint64_t *bytes);

#endif
