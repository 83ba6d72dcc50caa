/*
 * sluice: command line, start, reload, drain and stop.
 *
 * The main thread runs the control loop: OS control events (signals, or
 * service controls on Windows), reloads and the drain deadline.  The loop
 * group's threads carry the traffic.
 */
#include <errno.h>
#include <getopt.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "loop/loop.h"
#include "net/net.h"
#include "net/resolver.h"
#include "path.h"
#include "proc/proc.h"
#include "proxy.h"
#include "relay.h"
#include "tls.h"

/*
 * systemd's watchdog (WATCHDOG_USEC): every loop of the group must show it
 * runs, not only the control loop.  Every half interval the control loop
 * posts a probe task to each loop and counts the answers; "WATCHDOG=1"
 * goes out only when every loop answered the previous round.  A wedged
 * loop never runs its probe, so the pings stop and systemd restarts the
 * service when the interval runs out.  A loop whose probe is still queued
 * is not sent another: each loop answers at most once a round.
 */
struct wd_probe {
	sl_task task;
	atomic_int posted;
	struct watchdog *wd;
};

struct watchdog {
	sl_timer timer;
	sl_group *group;
	struct wd_probe *probes; /* one per loop */
	unsigned n;
	uint64_t half_ms;
	atomic_uint answers; /* this round's */
	int late;            /* a loop's silence is in the log already */
};

struct daemon_state {
	const char *conf_path;
	const char *service; /* the Windows service's name, or NULL */
	const char *pidfile; /* -p, else the config's */
	int verbose;
	int foreground;
	int dropped; /* privileges dropped: no new privileged binds */
	sl_config *cfg;
	sl_loop *control;
	sl_group *group;
	sl_proxy *proxy;
	sl_timer drain_timer;
	struct watchdog wd;
	int stopping;
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: sluice [-dhtvV] [-c file] [-p pidfile]\n"
		"  -c file    configuration file (default %s)\n"
		"  -d         stay in the foreground and log to stderr\n"
		"  -p file    write and lock a pid file (overrides pidfile:)\n"
		"  -t         check the configuration and exit\n"
		"  -v         verbose: log at debug level\n"
		"  -V         print the version, the event loop, the TLS library\n"
		"             and the default configuration file, then exit\n"
		"  -h         this help\n"
		"       sluice service install|uninstall|start|stop|reload|run\n"
		"              [-c file] [--name name]   (Windows)\n"
		"       sluice service install [-c file] [--name name]\n"
		"              [--account LocalService|NetworkService|NAME "
		"[--password pw]]\n"
		"       sluice relay [--wait[=SECONDS]] ENDPOINT\n"
		"              standard input and output to one endpoint\n",
		sl_path_default_conf());
}

static void apply_log_level(const struct daemon_state *ds)
{
	sl_log_set_level(ds->verbose ? SL_LOG_DEBUG : ds->cfg->log_level);
}

/*
 * Send log lines where the config says (log:), or by default to stderr in
 * the foreground and to syslog in a daemon.  0, or -1 after saying why.
 */
static int apply_log_target(const struct daemon_state *ds)
{
	const char *to = ds->cfg->log;
	int r;

	if (to == NULL)
		to = ds->foreground ? "stderr" : "syslog";
	if (strcmp(to, "stderr") == 0) {
		sl_log_use_stderr();
	} else if (strcmp(to, "syslog") == 0) {
		sl_log_use_syslog("sluice", ds->cfg->syslog_facility);
	} else if ((r = sl_log_use_file(to)) < 0) {
		sl_error("log file %s: %s", to, sl_log_open_strerror(r));
		return -1;
	}
	if ((r = sl_access_open(ds->cfg->access_log, ds->cfg->access_json)) <
	    0) {
		sl_error("access log %s: %s", ds->cfg->access_log,
			 sl_log_open_strerror(r));
		return -1;
	}
	return 0;
}

/*
 * sluice -t: beyond the config itself, what can be checked before a start,
 * as warnings (the config stays valid): listen addresses free and
 * bindable, upstream host names resolving.  It changes nothing in the
 * filesystem (the shipped units run it as root before every start): a
 * Unix socket path is looked at, and what a start would do there is
 * printed.
 */
static void preflight(const sl_config *cfg)
{
	for (size_t i = 0; i < cfg->nroutes; i++) {
		const sl_route_conf *rc = &cfg->routes[i];

		for (size_t j = 0; j < rc->nlisten; j++) {
			const sl_listen_conf *lc = &rc->listen[j];
			sl_listen_opts opts = {.backlog = lc->backlog,
					       .mode = lc->mode,
					       .owner = lc->owner,
					       .group = lc->group,
					       .security = lc->security};
			char e[512];

			if (sl_listener_check(&lc->ep, &opts, e, sizeof e) < 0)
				fprintf(stderr,
					"sluice: warning: %s:%u:%u: %s\n",
					sl_conf_file(cfg, &lc->mark),
					lc->mark.line, lc->mark.col,
					e);
			else if (e[0] != '\0')
				fprintf(stderr, "sluice: %s:%u:%u: %s\n",
					sl_conf_file(cfg, &lc->mark),
					lc->mark.line, lc->mark.col,
					e);
		}
		for (size_t j = 0; j < rc->nupstreams; j++) {
			const sl_upstream_conf *uc = &rc->upstreams[j];
			struct sl_addr addrs[4];
			size_t n;

			if (uc->ep.kind != SL_EP_TCP || uc->ep.host_is_literal)
				continue;
			if (sl_resolve_sync(uc->ep.host, uc->ep.port, 0, addrs,
					    4, &n) < 0)
				fprintf(stderr,
					"sluice: warning: %s:%u:%u: upstream "
					"host '%s' does not resolve now\n",
					sl_conf_file(cfg, &uc->mark),
					uc->mark.line, uc->mark.col,
					uc->ep.host);
		}
	}
}

#ifdef SL_HAVE_TLS
static void tls_warn(void *arg, const char *msg)
{
	(void)arg;
	fprintf(stderr, "sluice: warning: %s\n", msg);
}
#endif

/* sluice -t: every TLS certificate, key and CA loads (an error if not);
 * warnings for those that expire soon and for unverified upstreams. */
static int preflight_tls(const sl_config *cfg)
{
#ifdef SL_HAVE_TLS
	char err[1024];

	if (sl_tls_check(cfg, tls_warn, NULL, err, sizeof err) < 0) {
		fprintf(stderr, "sluice: %s\n", err);
		return -1;
	}
#else
	(void)cfg;
#endif
	return 0;
}

static void on_idle(sl_proxy *p, void *arg)
{
	struct daemon_state *ds = arg;

	(void)p;
	sl_info("all sessions closed; exiting");
	sl_timer_stop(&ds->drain_timer);
	sl_loop_stop(ds->control);
}

static void on_drain_timeout(sl_timer *t)
{
	struct daemon_state *ds = t->data;

	sl_warn("drain timeout: closing %lu open session(s)",
		sl_proxy_active(ds->proxy));
	sl_proxy_abort_sessions(ds->proxy);
}

/*
 * thread_policy: batch keeps a woken loop from preempting the client or
 * backend that runs on its CPU; where several wake-ups would each have
 * cost a context switch, one run takes them all.  Linux only: elsewhere
 * the key is accepted and the loops run as the platform schedules them.
 */
static void apply_thread_policy(struct daemon_state *ds, int batch)
{
	int r = sl_group_set_batch(ds->group, batch);

	if (r == 0)
		sl_debug("loop threads: %s scheduling policy",
			 batch ? "batch" : "normal");
	else if (r != -ENOTSUP)
		sl_warn("thread_policy: %s not applied: %s", batch ? "batch" :
			"normal", sl_strerror(r));
}

static void reload(struct daemon_state *ds)
{
	sl_config *cfg = NULL;
	char err[1024];

	sl_info("reloading %s", ds->conf_path);
	sl_notify("RELOADING=1");
	/* A service checks who may change its config at every read. */
	if (ds->service != NULL &&
	    sl_service_check_conf(ds->conf_path, err, sizeof err) < 0) {
		sl_error("reload refused: %s; keeping the running config", err);
		sl_proxy_reload_failed(ds->proxy);
		sl_notify("READY=1");
		return;
	}
	if (sl_config_load(ds->conf_path, &cfg, err, sizeof err) < 0) {
		sl_error("reload failed: %s; keeping the running config", err);
		sl_proxy_reload_failed(ds->proxy);
		sl_notify("READY=1");
		return;
	}
	if (sl_proxy_apply(ds->proxy, cfg, err, sizeof err) < 0) {
		if (ds->dropped && strstr(err, "Permission denied") != NULL)
			sl_error("reload failed: %s (sluice runs as user %s "
				 "now: a new privileged port or path needs a "
				 "restart); keeping the running config",
				 err, ds->cfg->user);
		else
			sl_error("reload failed: %s; keeping the running "
				 "config", err);
		sl_config_free(cfg);
		sl_notify("READY=1");
		return;
	}
	if (cfg->threads != ds->cfg->threads)
		sl_warn("threads: a new value takes effect at the next start");
	if (cfg->thread_batch != ds->cfg->thread_batch)
		apply_thread_policy(ds, cfg->thread_batch);
	if ((cfg->user == NULL) != (ds->cfg->user == NULL) ||
	    (cfg->user != NULL && strcmp(cfg->user, ds->cfg->user) != 0))
		sl_warn("user: a new value takes effect at the next start");
	if ((cfg->log == NULL) != (ds->cfg->log == NULL) ||
	    (cfg->log != NULL && strcmp(cfg->log, ds->cfg->log) != 0) ||
	    cfg->syslog_facility != ds->cfg->syslog_facility)
		sl_warn("log, syslog_facility: a new value takes effect at the "
			"next start");
	sl_config_free(ds->cfg);
	ds->cfg = cfg;
	apply_log_level(ds);
	sl_info("reloaded %s", ds->conf_path);
	sl_notify("READY=1");
}

/*
 * A stop: drain for drain_timeout (SL_CTL_STOP), for no longer than the
 * OS allows (SL_CTL_STOP_SOON: Windows' console closing, a service's
 * preshutdown), or not at all (SL_CTL_STOP_NOW: shutdown).  A second
 * SIGTERM or Ctrl-C closes the sessions at once; the service manager's
 * second STOP never gets here (proc_win.c).
 */
static void stop(struct daemon_state *ds, enum sl_ctl ev)
{
	uint64_t ms = ds->cfg->drain_timeout_ms;

	if (ev == SL_CTL_STOP_SOON && sl_ctl_deadline_ms() < ms)
		ms = sl_ctl_deadline_ms();
	if (ev == SL_CTL_STOP_NOW)
		ms = 0;
	if (ds->stopping) {
		if (ev == SL_CTL_STOP_SOON)
			return; /* a drain runs already */
		sl_warn("%s: closing %lu session(s) now",
			ev == SL_CTL_STOP_NOW ? "system shutdown"
					      : "second stop request",
			sl_proxy_active(ds->proxy));
		sl_proxy_abort_sessions(ds->proxy);
		return;
	}
	ds->stopping = 1;
	sl_notify("STOPPING=1");
	sl_info("stopping%s: no new connections; draining %lu session(s) "
		"for up to %llu ms",
		ev == SL_CTL_STOP_SOON  ? " (the system allows no longer)"
		: ev == SL_CTL_STOP_NOW ? " (system shutdown)"
					: "",
		sl_proxy_active(ds->proxy), (unsigned long long)ms);
	sl_timer_start(&ds->drain_timer, ms);
	sl_proxy_drain(ds->proxy, on_idle, ds); /* 0 ms: closes at once */
}

static void on_ctl(enum sl_ctl ev, void *arg)
{
	struct daemon_state *ds = arg;

	switch (ev) {
	case SL_CTL_STOP:
	case SL_CTL_STOP_SOON:
	case SL_CTL_STOP_NOW:
		stop(ds, ev);
		break;
	case SL_CTL_RELOAD:
		if (ds->stopping)
			sl_warn("reload ignored while stopping");
		else
			reload(ds);
		break;
	case SL_CTL_REOPEN: {
		int r = sl_log_reopen();

		if (r < 0)
			sl_error("log file: reopen failed: %s; still writing to "
				 "the old one", sl_log_open_strerror(r));
		else
			sl_info("log file reopened");
		break;
	}
	}
}

/* A loop ran its probe (status != 0: the loop is being freed). */
static void wd_answer(sl_task *t, int status)
{
	struct wd_probe *pr = t->data;

	if (status == 0)
		atomic_fetch_add(&pr->wd->answers, 1);
	atomic_store(&pr->posted, 0);
}

static void wd_probe_all(struct watchdog *wd)
{
	for (unsigned i = 0; i < wd->n; i++) {
		struct wd_probe *pr = &wd->probes[i];

		if (atomic_exchange(&pr->posted, 1) == 0)
			sl_loop_post(sl_group_loop(wd->group, i), &pr->task);
	}
}

static void wd_tick(sl_timer *t)
{
	struct watchdog *wd = t->data;
	unsigned got = atomic_exchange(&wd->answers, 0);

	if (got >= wd->n) {
		sl_notify("WATCHDOG=1");
		if (wd->late)
			sl_info("watchdog: every loop answers again");
		wd->late = 0;
	} else if (!wd->late) {
		wd->late = 1;
		for (unsigned i = 0; i < wd->n; i++)
			if (atomic_load(&wd->probes[i].posted))
				sl_warn("watchdog: loop %u has not answered "
					"for %llu ms: no WATCHDOG=1 until "
					"it does",
					i, (unsigned long long)wd->half_ms);
	}
	wd_probe_all(wd);
	sl_timer_start(t, wd->half_ms);
}

/* Ping at half the interval systemd asked for, if it asked.  After the
 * group started; 0 or -ENOMEM. */
static int wd_start(struct daemon_state *ds)
{
	struct watchdog *wd = &ds->wd;
	unsigned long long usec = sl_watchdog_usec();

	if (usec == 0)
		return 0;
	wd->group = ds->group;
	wd->n = sl_group_size(ds->group);
	wd->half_ms = usec / 2000 > 0 ? usec / 2000 : 1;
	wd->probes = calloc(wd->n, sizeof *wd->probes);
	if (wd->probes == NULL)
		return -ENOMEM;
	atomic_init(&wd->answers, 0);
	for (unsigned i = 0; i < wd->n; i++) {
		wd->probes[i].wd = wd;
		atomic_init(&wd->probes[i].posted, 0);
		sl_task_init(&wd->probes[i].task, wd_answer, &wd->probes[i]);
	}
	sl_timer_init(ds->control, &wd->timer, wd_tick, wd);
	wd_probe_all(wd);
	sl_timer_start(&wd->timer, wd->half_ms);
	sl_info("watchdog: every %llu ms, when all %u loop(s) answer",
		(unsigned long long)wd->half_ms, wd->n);
	return 0;
}

/* Inherited sockets no route took: systemd holds them for nothing, and
 * their clients wait in a backlog nobody accepts from. */
static void warn_unused_inherited(void)
{
	char names[512];
	size_t n = sl_listener_unused(names, sizeof names);

	if (n > 0)
		sl_warn("systemd passed %zu socket(s) that no listener uses: "
			"%s",
			n, names);
}

static int run(struct daemon_state *ds)
{
	char err[1024];
	unsigned threads;
	int r, rc = 1;

	if ((r = sl_net_init()) < 0) {
		sl_error("network setup failed: %s", sl_strerror(r));
		return 1;
	}
	threads = ds->cfg->threads ? ds->cfg->threads : sl_cpu_count();
	if ((r = sl_loop_new(&ds->control)) < 0 ||
	    (r = sl_group_new(&ds->group, threads)) < 0 ||
	    (r = sl_proxy_new(&ds->proxy, ds->control, ds->group)) < 0) {
		sl_error("startup failed: %s", sl_strerror(r));
		goto out;
	}
	sl_proxy_set_fd_limit(ds->proxy, sl_fd_limit_raise());
	sl_timer_init(ds->control, &ds->drain_timer, on_drain_timeout, ds);
	if (sl_proxy_apply(ds->proxy, ds->cfg, err, sizeof err) < 0) {
		sl_error("%s", err);
		goto out;
	}
	warn_unused_inherited();
	/* Listeners are bound (ports below 1024, sockets in root's
	 * directories): serve as the configured user from here on. */
	if (ds->cfg->user != NULL) {
		if (sl_drop_privileges(ds->cfg->user, ds->cfg->group, err,
				       sizeof err) < 0) {
			sl_error("%s", err);
			goto out;
		}
		ds->dropped = 1;
		sl_info("running as user %s", ds->cfg->user);
	}
	if ((r = sl_group_start(ds->group)) < 0) {
		sl_error("cannot start %u loop threads: %s", threads,
			 sl_strerror(r));
		goto out;
	}
	apply_thread_policy(ds, ds->cfg->thread_batch);
	if ((r = sl_ctl_start(ds->control, on_ctl, ds)) < 0) {
		sl_error("cannot watch control events: %s", sl_strerror(r));
		goto out;
	}
	sl_info("sluice %s started: %u thread(s), %s, %zu route(s)",
		PACKAGE_VERSION, threads, sl_loop_backend(), ds->cfg->nroutes);
	sl_daemon_ready();
	sl_log_mirror_stderr(0);
	{
		char st[64];

		snprintf(st, sizeof st, "READY=1\nMAINPID=%ld", (long)getpid());
		sl_notify(st);
	}
	if (wd_start(ds) < 0) {
		sl_error("watchdog: out of memory");
		goto out;
	}
	if ((r = sl_loop_run(ds->control)) < 0) {
		sl_error("control loop failed: %s", sl_strerror(r));
		goto out;
	}
	rc = 0;
out:
	sl_ctl_stop();
	if (ds->group != NULL)
		sl_group_stop(ds->group);
	sl_proxy_free(ds->proxy);
	sl_group_free(ds->group); /* runs the probes still queued */
	free(ds->wd.probes);
	sl_loop_free(ds->control);
	sl_net_shutdown();
	return rc;
}

/* The daemon once its config is loaded: log, pid file, serve. */
static int serve(struct daemon_state *ds)
{
	char err[1024];
	int rc;

	if (apply_log_target(ds) < 0)
		return 1;
	if (ds->pidfile != NULL &&
	    sl_pidfile_create(ds->pidfile, err, sizeof err) < 0) {
		sl_error("%s", err);
		return 1;
	}
	rc = run(ds);
	sl_pidfile_remove();
	return rc;
}

/*
 * The service's thread, once the service manager is connected: every
 * check happens here, so a bad config ends as STOPPED with an exit code
 * of its own (SL_EXIT_*) and its reason in the Event Log (and in the log
 * file once the config names one), not as a start that timed out.
 */
static int service_body(void *arg)
{
	struct daemon_state *ds = arg;
	char err[1024];
	int rc;

	/* Nobody sees stderr here: the Event Log is the first witness. */
	sl_log_use_syslog(ds->service, 0);
	if (sl_service_check_conf(ds->conf_path, err, sizeof err) < 0) {
		sl_error("refusing to start: %s", err);
		return SL_EXIT_CONFIG_ACL;
	}
	/* Each included file is held to the same rule, at every load. */
	sl_config_set_include_check(sl_service_check_conf);
	if (sl_config_load(ds->conf_path, &ds->cfg, err, sizeof err) < 0) {
		sl_error("%s", err);
		return SL_EXIT_CONFIG;
	}
	apply_log_level(ds);
	ds->pidfile = ds->cfg->pidfile;
	sl_service_set_stop_hint((unsigned long)ds->cfg->drain_timeout_ms);
	/* Errors and warnings reach the Event Log whatever log: says. */
	sl_log_events(ds->service);
	rc = serve(ds);
	sl_config_free(ds->cfg);
	ds->cfg = NULL;
	return rc == 0 ? 0 : SL_EXIT_FAILED;
}

/*
 * sluice service CMD [-c FILE] [--name NAME] [--account A [--password P]]:
 * the Windows service.  "run" is what the service manager starts (sluice
 * service install writes it into the service's command line); the others
 * talk to the manager.
 */
static int service_main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"name", required_argument, NULL, 'n'},
		{"account", required_argument, NULL, 'a'},
		{"password", required_argument, NULL, 'P'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct daemon_state ds;
	const char *name = "sluice", *conf = NULL, *cmd;
	const char *account = NULL, *password = NULL;
	char err[1024];
	int c, rc;

	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	cmd = argv[1];
	optind = 2;
	while ((c = getopt_long(argc, argv, "c:hn:", longopts, NULL)) != -1) {
		switch (c) {
		case 'c':
			conf = optarg;
			break;
		case 'n':
			name = optarg;
			break;
		case 'a':
			account = optarg;
			break;
		case 'P':
			password = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc || ((account != NULL || password != NULL) &&
			       strcmp(cmd, "install") != 0)) {
		usage(stderr);
		return 2;
	}
	if (strcmp(cmd, "run") != 0) {
		if (strcmp(cmd, "install") == 0 && conf == NULL)
			conf = sl_path_default_conf();
		sl_service_set_account(account, password);
		if (sl_service_command(cmd, name, conf, err, sizeof err) < 0) {
			fprintf(stderr, "sluice: %s\n", err);
			return 1;
		}
		return 0;
	}

	memset(&ds, 0, sizeof ds);
	ds.conf_path = conf != NULL ? conf : sl_path_default_conf();
	ds.service = name;
	rc = sl_service_run(name, service_body, &ds);
	if (rc < 0) {
		fprintf(stderr,
			"sluice: service run: not started by the service "
			"manager (%s); use sluice service start\n",
			sl_strerror(rc));
		rc = 1;
	}
	return rc;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"version", no_argument, NULL, 'V'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct daemon_state ds;
	int foreground = 0, test_only = 0, c, rc;
	char err[1024];

	/* Names as typed, whatever the code page: UTF-8 from here on. */
	if (sl_utf8_argv(&argc, &argv) < 0) {
		fprintf(stderr, "sluice: cannot read the command line\n");
		return 2;
	}
	if (argc >= 2 && strcmp(argv[1], "service") == 0)
		return service_main(argc - 1, argv + 1);
	if (argc >= 2 && strcmp(argv[1], "relay") == 0)
		return sl_relay_main(argc - 1, argv + 1);

	memset(&ds, 0, sizeof ds);
	ds.conf_path = sl_path_default_conf();
	while ((c = getopt_long(argc, argv, "c:dhp:tvV", longopts, NULL)) !=
	       -1) {
		switch (c) {
		case 'c':
			ds.conf_path = optarg;
			break;
		case 'd':
			foreground = 1;
			break;
		case 'p':
			ds.pidfile = optarg;
			break;
		case 't':
			test_only = 1;
			break;
		case 'v':
			ds.verbose = 1;
			break;
		case 'V':
			printf("sluice %s (event loop: %s)\nTLS: %s\n"
			       "default config: %s\n",
			       PACKAGE_VERSION, sl_loop_backend(), sl_tls_library(),
			       sl_path_default_conf());
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}

	if (sl_config_load(ds.conf_path, &ds.cfg, err, sizeof err) < 0) {
		fprintf(stderr, "sluice: %s\n", err);
		return 1;
	}
	/* Sockets systemd passed: LISTEN_PID is the pid it started, so
	 * before a daemon's fork; and before any thread (the environment
	 * changes). */
	if (sl_listener_inherit(err, sizeof err) < 0) {
		fprintf(stderr, "sluice: %s\n", err);
		sl_config_free(ds.cfg);
		return 1;
	}
	if (test_only) {
		/* The checks open sockets: on Windows, only after WSAStartup
		 * (each failed with WSANOTINITIALISED, 10093, before). */
		int r = sl_net_init();

		if (r < 0) {
			fprintf(stderr, "sluice: network setup failed: %s\n",
				sl_strerror(r));
			sl_config_free(ds.cfg);
			return 1;
		}
		preflight(ds.cfg);
		if (preflight_tls(ds.cfg) < 0) {
			sl_net_shutdown();
			sl_config_free(ds.cfg);
			return 1;
		}
		sl_net_shutdown();
		fprintf(stderr, "sluice: %s: configuration OK\n", ds.conf_path);
		sl_config_free(ds.cfg);
		return 0;
	}
	apply_log_level(&ds);

	ds.foreground = foreground;
	if (ds.pidfile == NULL)
		ds.pidfile = ds.cfg->pidfile;
	/* Before any thread exists: fork() keeps only the calling thread. */
	if (!foreground) {
		char *abs = sl_path_absolute(ds.conf_path);
		int r;

		if (abs == NULL) {
			fprintf(stderr, "sluice: %s: %s\n", ds.conf_path,
				strerror(errno));
			sl_config_free(ds.cfg);
			return 1;
		}
		ds.conf_path = abs; /* lives as long as the process */
		/* The daemon works in "/": a relative pid file is named from
		 * the directory we were started in.  Not with realpath(): a
		 * link planted as the pid file must be seen, and refused. */
		if (ds.pidfile != NULL) {
			char *pf = sl_path_join_cwd(ds.pidfile);

			if (pf == NULL) {
				fprintf(stderr, "sluice: pid file %s: %s\n",
					ds.pidfile, strerror(errno));
				sl_config_free(ds.cfg);
				return 1;
			}
			ds.pidfile = pf; /* lives as long as the process */
		}
		r = sl_daemon_start();
		if (r == -ENOSYS) {
			fprintf(stderr, "sluice: no daemon mode here: run with "
					"-d in a console, or as a service "
					"(sluice service install)\n");
			sl_config_free(ds.cfg);
			return 1;
		}
		if (r < 0) {
			fprintf(stderr, "sluice: cannot daemonize: %s\n",
				sl_strerror(r));
			sl_config_free(ds.cfg);
			return 1;
		}
		sl_log_forked();
		/* The whole log goes to its destination; until the daemon
		 * serves, errors also reach the operator's terminal. */
		sl_log_mirror_stderr(1);
	}
	rc = serve(&ds);
	sl_config_free(ds.cfg);
	return rc;
}
