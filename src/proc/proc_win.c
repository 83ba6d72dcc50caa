/*
 * Windows process glue: control events, the pid file, and the service.
 *
 * Control events reach the control loop the way nginx for Windows does it:
 * three auto-reset named events, sluice-PID-stop, sluice-PID-reload and
 * sluice-PID-reopen, which any process of the same session may set (they
 * stand for SIGTERM, SIGHUP and SIGUSR1).  Ctrl-C and Ctrl-Break on the
 * console and the service controls set the same events.  One thread waits
 * on them and posts each as a task to the loop, so the work happens on a
 * loop thread, as with the POSIX self-pipe.
 */
#include "proc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <windows.h>

/* ---- control events ---------------------------------------------------- */

enum { EV_STOP, EV_RELOAD, EV_REOPEN, EV_QUIT, EV_COUNT };

static HANDLE ctl_events[EV_COUNT];
static HANDLE ctl_thread;
static sl_loop *ctl_loop;
static sl_ctl_cb ctl_cb;
static void *ctl_data;

struct ctl_task {
	sl_task task;
	enum sl_ctl ev;
};

static void ctl_run(sl_task *t, int status)
{
	struct ctl_task *ct = (struct ctl_task *)t;

	if (status == 0 && ctl_cb != NULL)
		ctl_cb(ct->ev, ctl_data);
	free(ct);
}

static DWORD WINAPI ctl_wait(LPVOID arg)
{
	static const enum sl_ctl map[] = {SL_CTL_STOP, SL_CTL_RELOAD,
					  SL_CTL_REOPEN};

	(void)arg;
	for (;;) {
		DWORD w = WaitForMultipleObjects(EV_COUNT, ctl_events, FALSE,
						 INFINITE);
		struct ctl_task *ct;

		if (w >= WAIT_OBJECT_0 + EV_COUNT ||
		    w == WAIT_OBJECT_0 + EV_QUIT)
			return 0;
		ct = malloc(sizeof *ct);
		if (ct == NULL) {
			Sleep(100); /* the event is lost; try again later */
			continue;
		}
		sl_task_init(&ct->task, ctl_run, NULL);
		ct->ev = map[w - WAIT_OBJECT_0];
		sl_loop_post(ctl_loop, &ct->task);
	}
}

static BOOL WINAPI on_console(DWORD type)
{
	switch (type) {
	case CTRL_C_EVENT:
	case CTRL_BREAK_EVENT:
	case CTRL_CLOSE_EVENT:
		if (ctl_events[EV_STOP] != NULL)
			SetEvent(ctl_events[EV_STOP]);
		return TRUE;
	default:
		return FALSE;
	}
}

int sl_ctl_start(sl_loop *loop, sl_ctl_cb cb, void *data)
{
	static const char *const names[] = {"stop", "reload", "reopen"};
	char name[64];
	int i, r;

	if (ctl_thread != NULL)
		return -EBUSY;
	ctl_loop = loop;
	ctl_cb = cb;
	ctl_data = data;
	for (i = 0; i < EV_COUNT; i++) {
		if (i < EV_QUIT) {
			snprintf(name, sizeof name, "sluice-%lu-%s",
				 (unsigned long)GetCurrentProcessId(),
				 names[i]);
			ctl_events[i] = CreateEventA(NULL, FALSE, FALSE, name);
		} else {
			ctl_events[i] = CreateEventA(NULL, FALSE, FALSE, NULL);
		}
		if (ctl_events[i] == NULL) {
			r = sl_win_err(GetLastError());
			goto fail;
		}
	}
	ctl_thread = CreateThread(NULL, 0, ctl_wait, NULL, 0, NULL);
	if (ctl_thread == NULL) {
		r = sl_win_err(GetLastError());
		goto fail;
	}
	SetConsoleCtrlHandler(on_console, TRUE);
	return 0;
fail:
	for (i = 0; i < EV_COUNT; i++) {
		if (ctl_events[i] != NULL)
			CloseHandle(ctl_events[i]);
		ctl_events[i] = NULL;
	}
	return r;
}

void sl_ctl_stop(void)
{
	int i;

	if (ctl_thread == NULL)
		return;
	SetConsoleCtrlHandler(on_console, FALSE);
	SetEvent(ctl_events[EV_QUIT]);
	WaitForSingleObject(ctl_thread, INFINITE);
	CloseHandle(ctl_thread);
	ctl_thread = NULL;
	for (i = 0; i < EV_COUNT; i++) {
		CloseHandle(ctl_events[i]);
		ctl_events[i] = NULL;
	}
	ctl_cb = NULL;
}

/* ---- daemon, pid file, privileges ----------------------------------------- */

int sl_daemon_start(void)
{
	return -ENOSYS; /* the service manager detaches services */
}

void sl_daemon_ready(void)
{
}

static HANDLE pid_handle = INVALID_HANDLE_VALUE;
static char *pid_path;

/*
 * The pid file is held open without write sharing for the life of the
 * process: a second sluice cannot open it for writing (the lock), but may
 * read it to name the holder.
 */
int sl_pidfile_create(const char *path, char *err, size_t errlen)
{
	char buf[32];
	DWORD n;
	HANDLE h;

	h = CreateFileA(path, GENERIC_WRITE, FILE_SHARE_READ, NULL,
			OPEN_ALWAYS, FILE_ATTRIBUTE_NORMAL, NULL);
	if (h == INVALID_HANDLE_VALUE) {
		DWORD e = GetLastError();
		FILE *f;

		if (e == ERROR_SHARING_VIOLATION &&
		    (f = fopen(path, "r")) != NULL) {
			long pid = 0;

			if (fscanf(f, "%ld", &pid) != 1)
				pid = 0;
			fclose(f);
			snprintf(err, errlen,
				 "pid file %s: held by another sluice (pid %ld)",
				 path, pid);
		} else {
			snprintf(err, errlen, "pid file %s: %s", path,
				 strerror(-sl_win_err(e)));
		}
		return -1;
	}
	snprintf(buf, sizeof buf, "%lu\r\n",
		 (unsigned long)GetCurrentProcessId());
	SetEndOfFile(h);
	if (!WriteFile(h, buf, (DWORD)strlen(buf), &n, NULL)) {
		snprintf(err, errlen, "pid file %s: cannot write", path);
		CloseHandle(h);
		return -1;
	}
	pid_handle = h;
	pid_path = _strdup(path);
	return 0;
}

void sl_pidfile_remove(void)
{
	if (pid_handle == INVALID_HANDLE_VALUE)
		return;
	CloseHandle(pid_handle);
	pid_handle = INVALID_HANDLE_VALUE;
	if (pid_path != NULL)
		DeleteFileA(pid_path);
	free(pid_path);
	pid_path = NULL;
}

int sl_drop_privileges(const char *user, const char *group, char *err,
		       size_t errlen)
{
	(void)user;
	(void)group;
	snprintf(err, errlen, "user:/group: are not supported on Windows; run "
			      "the service under the account it should use "
			      "(sc.exe config NAME obj= ACCOUNT)");
	return -1;
}

unsigned long sl_fd_limit_raise(void)
{
	return 0; /* no per-process descriptor limit */
}

/* ---- service -------------------------------------------------------------- */

static SERVICE_STATUS_HANDLE svc_handle;
static SERVICE_STATUS svc_status;
static CRITICAL_SECTION svc_lock;
static HANDLE svc_stop_ticker, svc_ticker_quit;
static unsigned long svc_stop_hint = 30000;
static const char *svc_name;
static int (*svc_run)(void *);
static void *svc_arg;
static int svc_rc;

static void svc_report(DWORD state, DWORD win32_exit, DWORD specific,
		       DWORD hint)
{
	EnterCriticalSection(&svc_lock);
	svc_status.dwServiceType = SERVICE_WIN32_OWN_PROCESS;
	svc_status.dwCurrentState = state;
	svc_status.dwWin32ExitCode = win32_exit;
	svc_status.dwServiceSpecificExitCode = specific;
	svc_status.dwWaitHint = hint;
	svc_status.dwControlsAccepted =
		state == SERVICE_RUNNING
			? SERVICE_ACCEPT_STOP | SERVICE_ACCEPT_SHUTDOWN
			: 0;
	if (state == SERVICE_RUNNING || state == SERVICE_STOPPED)
		svc_status.dwCheckPoint = 0;
	else
		svc_status.dwCheckPoint++;
	SetServiceStatus(svc_handle, &svc_status);
	LeaveCriticalSection(&svc_lock);
}

/* While a drain runs: a new checkpoint every second, so the SCM sees
 * progress and does not give up on the service. */
static DWORD WINAPI svc_tick(LPVOID arg)
{
	(void)arg;
	while (WaitForSingleObject(svc_ticker_quit, 1000) == WAIT_TIMEOUT)
		svc_report(SERVICE_STOP_PENDING, NO_ERROR, 0,
			   (DWORD)svc_stop_hint + 5000);
	return 0;
}

void sl_service_set_stop_hint(unsigned long ms)
{
	svc_stop_hint = ms;
}

void sl_notify(const char *state)
{
	if (svc_handle == NULL)
		return;
	if (strncmp(state, "READY=1", 7) == 0) {
		svc_report(SERVICE_RUNNING, NO_ERROR, 0, 0);
	} else if (strncmp(state, "STOPPING=1", 10) == 0 &&
		   svc_stop_ticker == NULL) {
		svc_report(SERVICE_STOP_PENDING, NO_ERROR, 0,
			   (DWORD)svc_stop_hint + 5000);
		svc_ticker_quit = CreateEventA(NULL, TRUE, FALSE, NULL);
		if (svc_ticker_quit != NULL)
			svc_stop_ticker =
				CreateThread(NULL, 0, svc_tick, NULL, 0, NULL);
	}
}

static DWORD WINAPI svc_control(DWORD ctl, DWORD type, LPVOID data,
				LPVOID ctx)
{
	(void)type;
	(void)data;
	(void)ctx;
	switch (ctl) {
	case SERVICE_CONTROL_STOP:
	case SERVICE_CONTROL_SHUTDOWN:
		if (ctl_events[EV_STOP] != NULL)
			SetEvent(ctl_events[EV_STOP]);
		else
			svc_report(SERVICE_STOP_PENDING, NO_ERROR, 0, 5000);
		return NO_ERROR;
	case SL_SERVICE_CONTROL_RELOAD:
		if (ctl_events[EV_RELOAD] != NULL)
			SetEvent(ctl_events[EV_RELOAD]);
		return NO_ERROR;
	case SERVICE_CONTROL_INTERROGATE:
		return NO_ERROR;
	default:
		return ERROR_CALL_NOT_IMPLEMENTED;
	}
}

static void WINAPI svc_main(DWORD argc, LPSTR *argv)
{
	(void)argc;
	(void)argv;
	svc_handle = RegisterServiceCtrlHandlerExA(svc_name, svc_control, NULL);
	if (svc_handle == NULL)
		return;
	svc_report(SERVICE_START_PENDING, NO_ERROR, 0, 10000);
	svc_rc = svc_run(svc_arg);
	if (svc_stop_ticker != NULL) {
		SetEvent(svc_ticker_quit);
		WaitForSingleObject(svc_stop_ticker, INFINITE);
		CloseHandle(svc_stop_ticker);
		CloseHandle(svc_ticker_quit);
		svc_stop_ticker = NULL;
	}
	if (svc_rc == 0)
		svc_report(SERVICE_STOPPED, NO_ERROR, 0, 0);
	else
		svc_report(SERVICE_STOPPED, ERROR_SERVICE_SPECIFIC_ERROR,
			   (DWORD)svc_rc, 0);
}

int sl_service_run(const char *name, int (*run)(void *arg), void *arg)
{
	SERVICE_TABLE_ENTRYA table[] = {
		{(LPSTR)name, svc_main},
		{NULL, NULL},
	};

	InitializeCriticalSection(&svc_lock);
	svc_name = name;
	svc_run = run;
	svc_arg = arg;
	svc_rc = 1;
	if (!StartServiceCtrlDispatcherA(table))
		return sl_win_err(GetLastError());
	return svc_rc;
}

static int svc_err(char *err, size_t errlen, const char *what,
		   const char *name)
{
	DWORD e = GetLastError();
	char msg[256];

	if (FormatMessageA(FORMAT_MESSAGE_FROM_SYSTEM |
				   FORMAT_MESSAGE_IGNORE_INSERTS,
			   NULL, e, 0, msg, sizeof msg, NULL) == 0)
		snprintf(msg, sizeof msg, "error %lu", (unsigned long)e);
	msg[strcspn(msg, "\r\n")] = '\0';
	snprintf(err, errlen, "service %s: %s: %s", name, what, msg);
	return -1;
}

static int svc_wait(SC_HANDLE svc, DWORD want, unsigned timeout_ms)
{
	SERVICE_STATUS st;
	unsigned waited = 0;

	while (QueryServiceStatus(svc, &st)) {
		if (st.dwCurrentState == want)
			return 0;
		if (waited >= timeout_ms)
			break;
		Sleep(100);
		waited += 100;
	}
	return -1;
}

int sl_service_command(const char *cmd, const char *name, const char *conf,
		       char *err, size_t errlen)
{
	SC_HANDLE scm, svc = NULL;
	SERVICE_STATUS st;
	int rc = 0;

	scm = OpenSCManagerA(NULL, NULL,
			     strcmp(cmd, "install") == 0
				     ? SC_MANAGER_CREATE_SERVICE
				     : SC_MANAGER_CONNECT);
	if (scm == NULL)
		return svc_err(err, errlen, "cannot open the service manager",
			       name);
	if (strcmp(cmd, "install") == 0) {
		char exe[MAX_PATH], cmdline[3 * MAX_PATH + 64], display[300];
		char *abs = conf != NULL ? _fullpath(NULL, conf, 0) : NULL;

		if (GetModuleFileNameA(NULL, exe, sizeof exe) == 0) {
			free(abs);
			rc = svc_err(err, errlen, "own path", name);
			goto out;
		}
		if (abs != NULL)
			snprintf(cmdline, sizeof cmdline,
				 "\"%s\" service run -c \"%s\" --name \"%s\"",
				 exe, abs, name);
		else
			snprintf(cmdline, sizeof cmdline,
				 "\"%s\" service run --name \"%s\"", exe, name);
		free(abs);
		/* Display names are unique too: one per instance (--name). */
		if (strcmp(name, "sluice") == 0)
			snprintf(display, sizeof display, "sluice forwarder");
		else
			snprintf(display, sizeof display,
				 "sluice forwarder (%s)", name);
		svc = CreateServiceA(scm, name, display,
				     SERVICE_ALL_ACCESS,
				     SERVICE_WIN32_OWN_PROCESS,
				     SERVICE_AUTO_START, SERVICE_ERROR_NORMAL,
				     cmdline, NULL, NULL, NULL, NULL, NULL);
		if (svc == NULL)
			rc = svc_err(err, errlen, "cannot install", name);
		goto out;
	}
	svc = OpenServiceA(scm, name,
			   SERVICE_START | SERVICE_STOP | DELETE |
				   SERVICE_QUERY_STATUS |
				   SERVICE_USER_DEFINED_CONTROL);
	if (svc == NULL) {
		rc = svc_err(err, errlen, "cannot open", name);
		goto out;
	}
	if (strcmp(cmd, "uninstall") == 0) {
		if (!DeleteService(svc))
			rc = svc_err(err, errlen, "cannot uninstall", name);
	} else if (strcmp(cmd, "start") == 0) {
		if (!StartServiceA(svc, 0, NULL))
			rc = svc_err(err, errlen, "cannot start", name);
		else if (svc_wait(svc, SERVICE_RUNNING, 30000) < 0)
			rc = svc_err(err, errlen, "did not report RUNNING",
				     name);
	} else if (strcmp(cmd, "stop") == 0) {
		if (!ControlService(svc, SERVICE_CONTROL_STOP, &st))
			rc = svc_err(err, errlen, "cannot stop", name);
		else if (svc_wait(svc, SERVICE_STOPPED, 120000) < 0)
			rc = svc_err(err, errlen, "did not report STOPPED",
				     name);
	} else if (strcmp(cmd, "reload") == 0) {
		if (!ControlService(svc, SL_SERVICE_CONTROL_RELOAD, &st))
			rc = svc_err(err, errlen, "cannot send reload", name);
	} else {
		snprintf(err, errlen,
			 "unknown service command '%s' (install, uninstall, "
			 "start, stop, reload, run)",
			 cmd);
		rc = -1;
	}
out:
	if (svc != NULL)
		CloseServiceHandle(svc);
	CloseServiceHandle(scm);
	return rc;
}
