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
#include <aclapi.h>
#include <sddl.h>
#include <shellapi.h>

#include "log.h"
#include "os/os.h"

/* ---- control events ---------------------------------------------------- */

enum { EV_STOP, EV_RELOAD, EV_REOPEN, EV_STOP_SOON, EV_STOP_NOW, EV_QUIT,
       EV_COUNT };

static HANDLE ctl_events[EV_COUNT];
static HANDLE ctl_done; /* set at exit: a console close may return */
static volatile LONG ctl_deadline_ms;
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
					  SL_CTL_REOPEN, SL_CTL_STOP_SOON,
					  SL_CTL_STOP_NOW};

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

unsigned long sl_ctl_deadline_ms(void)
{
	return (unsigned long)ctl_deadline_ms;
}

/*
 * The console window closing (or the user logging off, the system
 * shutting down): Windows ends the process when this handler returns, and
 * at the latest about 5 s after the event (SPI_GETHUNGAPPTIMEOUT on
 * Windows 7 and later).  So the drain gets 3 s, and the handler waits
 * until the process is exiting (ctl_done, set by atexit) or 4.5 s went by.
 * Only Windows shows this: wine has no console window to close here.
 */
#define CONSOLE_CLOSE_DRAIN_MS 3000
#define CONSOLE_CLOSE_WAIT_MS 4500

static BOOL WINAPI on_console(DWORD type)
{
	switch (type) {
	case CTRL_C_EVENT:
	case CTRL_BREAK_EVENT:
		if (ctl_events[EV_STOP] != NULL)
			SetEvent(ctl_events[EV_STOP]);
		return TRUE;
	case CTRL_CLOSE_EVENT:
	case CTRL_LOGOFF_EVENT:
	case CTRL_SHUTDOWN_EVENT:
		if (ctl_events[EV_STOP_SOON] == NULL)
			return FALSE;
		ctl_deadline_ms = CONSOLE_CLOSE_DRAIN_MS;
		SetEvent(ctl_events[EV_STOP_SOON]);
		WaitForSingleObject(ctl_done, CONSOLE_CLOSE_WAIT_MS);
		return TRUE;
	default:
		return FALSE;
	}
}

static void ctl_at_exit(void)
{
	if (ctl_done != NULL)
		SetEvent(ctl_done);
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
		if (i <= EV_REOPEN) { /* named: sltool sig, as kill(1) */
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
	if (ctl_done == NULL) {
		ctl_done = CreateEventA(NULL, TRUE, FALSE, NULL);
		atexit(ctl_at_exit);
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

/* The pid in the file another sluice holds. */
static long pidfile_holder(const char *path)
{
	wchar_t *w = sl_os_wide(path);
	char buf[32];
	DWORD n = 0;
	HANDLE h;

	if (w == NULL)
		return 0;
	h = CreateFileW(w, GENERIC_READ,
			FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE,
			NULL, OPEN_EXISTING, FILE_FLAG_OPEN_REPARSE_POINT, NULL);
	free(w);
	if (h == INVALID_HANDLE_VALUE)
		return 0;
	if (!ReadFile(h, buf, sizeof buf - 1, &n, NULL))
		n = 0;
	CloseHandle(h);
	buf[n] = '\0';
	return strtol(buf, NULL, 10);
}

/*
 * The pid file is held open for the life of the process, shared for
 * reading only: a second sluice cannot open it for writing (the lock), a
 * reader may (sharing writing and deletion: type does not, PowerShell's
 * [IO.File]::Open(path, 'Open', 'Read', 'ReadWrite, Delete') does), and
 * nobody may rename or delete it meanwhile.  It is opened as sluice's log
 * files are (sl_os_open_file: no reparse point followed, one name, a
 * disk file), truncated only after those checks, and deleted at exit
 * through this same handle (DELETE access), never by name.
 */
int sl_pidfile_create(const char *path, char *err, size_t errlen)
{
	char buf[32];
	DWORD n;
	void *h;
	int r;

	r = sl_os_open_file(path, GENERIC_READ | GENERIC_WRITE | DELETE,
			    FILE_SHARE_READ, OPEN_ALWAYS, &h);
	if (r == -EBUSY) {
		snprintf(err, errlen,
			 "pid file %s: held by another sluice (pid %ld)", path,
			 pidfile_holder(path));
		return -1;
	}
	if (r < 0) {
		snprintf(err, errlen, "pid file %s: %s", path,
			 sl_log_open_strerror(r));
		return -1;
	}
	snprintf(buf, sizeof buf, "%lu\r\n",
		 (unsigned long)GetCurrentProcessId());
	if (!SetEndOfFile(h) ||
	    !WriteFile(h, buf, (DWORD)strlen(buf), &n, NULL)) {
		snprintf(err, errlen, "pid file %s: cannot write", path);
		CloseHandle(h);
		return -1;
	}
	pid_handle = h;
	return 0;
}

void sl_pidfile_remove(void)
{
	FILE_DISPOSITION_INFO di = {TRUE};

	if (pid_handle == INVALID_HANDLE_VALUE)
		return;
	SetFileInformationByHandle(pid_handle, FileDispositionInfo, &di,
				   sizeof di);
	CloseHandle(pid_handle);
	pid_handle = INVALID_HANDLE_VALUE;
}

int sl_drop_privileges(const char *user, const char *group, char *err,
		       size_t errlen)
{
	(void)user;
	(void)group;
	snprintf(err, errlen, "user:/group: are not supported on Windows; run "
			      "the service under the account it should use "
			      "(sluice service install --account ACCOUNT)");
	return -1;
}

unsigned long sl_fd_limit_raise(void)
{
	return 0; /* no per-process descriptor limit */
}

/* ---- the command line ------------------------------------------------------ */

int sl_utf8_argv(int *argc, char ***argv)
{
	int n, i;
	wchar_t **wv = CommandLineToArgvW(GetCommandLineW(), &n);
	char **v;

	if (wv == NULL)
		return -1;
	if ((v = calloc((size_t)n + 1, sizeof *v)) == NULL) {
		LocalFree(wv);
		return -1;
	}
	for (i = 0; i < n; i++) {
		if ((v[i] = sl_os_utf8(wv[i])) == NULL) {
			LocalFree(wv);
			return -1; /* v stays: the process exits */
		}
	}
	LocalFree(wv);
	*argc = n;
	*argv = v;
	return 0;
}

/* ---- who may change the config ------------------------------------------- */

/* Rights that let a trustee change a file, or what a folder holds. */
static const struct {
	DWORD bits;
	const char *name;
} write_rights[] = {
	{GENERIC_ALL, "full control"},
	{GENERIC_WRITE, "write"},
	{FILE_WRITE_DATA, "write data or add files"},
	{FILE_APPEND_DATA, "append data or add folders"},
	{FILE_DELETE_CHILD, "delete what it holds"},
	{DELETE, "delete"},
	{WRITE_DAC, "change permissions"},
	{WRITE_OWNER, "take ownership"},
};

/* "DOMAIN\name (S-1-...)" of a SID, into buf. */
static void sid_name(PSID sid, char *buf, size_t len)
{
	wchar_t name[256], dom[256];
	DWORD nn = 256, dn = 256;
	SID_NAME_USE use;
	LPWSTR str = NULL;
	char *n = NULL, *d = NULL, *s = NULL;

	if (ConvertSidToStringSidW(sid, &str))
		s = sl_os_utf8(str);
	if (LookupAccountSidW(NULL, sid, name, &nn, dom, &dn, &use)) {
		n = sl_os_utf8(name);
		d = sl_os_utf8(dom);
	}
	if (n != NULL)
		snprintf(buf, len, "%s%s%s (%s)", d != NULL ? d : "",
			 d != NULL && *d ? "\\" : "", n, s != NULL ? s : "?");
	else
		snprintf(buf, len, "%s", s != NULL ? s : "an unknown SID");
	free(n);
	free(d);
	free(s);
	LocalFree(str);
}

static int sid_trusted(PSID sid, PSID self)
{
	static const WELL_KNOWN_SID_TYPE trusted[] = {
		WinLocalSystemSid, WinBuiltinAdministratorsSid};
	BYTE buf[SECURITY_MAX_SID_SIZE];
	DWORD n;
	PSID ti = NULL;
	int ok = 0;
	size_t i;

	if (self != NULL && EqualSid(sid, self))
		return 1;
	for (i = 0; i < sizeof trusted / sizeof *trusted; i++) {
		n = sizeof buf;
		if (CreateWellKnownSid(trusted[i], NULL, buf, &n) &&
		    EqualSid(sid, buf))
			return 1;
	}
	/* NT SERVICE\TrustedInstaller, which owns the system's files. */
	if (ConvertStringSidToSidW(L"S-1-5-80-956008885-3418522649-1831038044-"
				   L"1853292631-2271478464",
				   &ti)) {
		ok = EqualSid(sid, ti);
		LocalFree(ti);
	}
	return ok;
}

int sl_win_sd_check(const void *sd, const void *self, const char *what,
		    char *err, size_t errlen)
{
	BOOL present = FALSE, defaulted;
	PACL dacl = NULL;
	PSID owner = NULL;
	DWORD i;

	if (!GetSecurityDescriptorDacl((PSECURITY_DESCRIPTOR)sd, &present,
				       &dacl, &defaulted)) {
		snprintf(err, errlen, "%s: cannot read its permissions", what);
		return -1;
	}
	/* The owner may always change the DACL (an implicit WRITE_DAC), so
	 * an owner outside the trusted accounts could open the file to
	 * itself: refused, as OpenSSH for Windows refuses sshd_config.  A
	 * descriptor without an owner (built from SDDL) has none to judge. */
	if (GetSecurityDescriptorOwner((PSECURITY_DESCRIPTOR)sd, &owner,
				       &defaulted) &&
	    owner != NULL && !sid_trusted(owner, (PSID)self)) {
		char who[512];

		sid_name(owner, who, sizeof who);
		snprintf(err, errlen,
			 "%s: owned by %s, who may change its permissions; "
			 "make Administrators its owner (icacls NAME "
			 "/setowner *S-1-5-32-544)",
			 what, who);
		return -1;
	}
	if (!present || dacl == NULL) {
		snprintf(err, errlen,
			 "%s: no DACL, so everyone may change it; only "
			 "SYSTEM and Administrators may",
			 what);
		return -1;
	}
	for (i = 0; i < dacl->AceCount; i++) {
		ACCESS_ALLOWED_ACE *ace;
		char who[512], rights[256] = "";
		DWORD mask;
		size_t k, n = 0;

		if (!GetAce(dacl, i, (void **)&ace))
			continue;
		/* Allowed ACEs (a callback ACE has the same layout); one
		 * that only passes to children does not apply here. */
		if ((ace->Header.AceType != ACCESS_ALLOWED_ACE_TYPE &&
		     ace->Header.AceType != ACCESS_ALLOWED_CALLBACK_ACE_TYPE) ||
		    (ace->Header.AceFlags & INHERIT_ONLY_ACE))
			continue;
		mask = ace->Mask;
		for (k = 0; k < sizeof write_rights / sizeof *write_rights;
		     k++) {
			if ((mask & write_rights[k].bits) != write_rights[k].bits)
				continue;
			n += (size_t)snprintf(rights + n, sizeof rights - n,
					      "%s%s", n ? ", " : "",
					      write_rights[k].name);
			if (n >= sizeof rights)
				n = sizeof rights - 1;
		}
		if (n == 0 || sid_trusted((PSID)&ace->SidStart, (PSID)self))
			continue;
		sid_name((PSID)&ace->SidStart, who, sizeof who);
		snprintf(err, errlen,
			 "%s: %s may change it (ACE %lu: allow 0x%lx: %s); "
			 "only SYSTEM, Administrators and the service's "
			 "account may",
			 what, who, (unsigned long)i + 1, (unsigned long)mask,
			 rights);
		return -1;
	}
	return 0;
}

/* The SID of this process's account, malloc'd; NULL on failure. */
static PSID self_sid(void)
{
	HANDLE tok;
	BYTE buf[256];
	DWORD n;
	PSID sid = NULL;

	if (!OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &tok))
		return NULL;
	if (GetTokenInformation(tok, TokenUser, buf, sizeof buf, &n)) {
		PSID s = ((TOKEN_USER *)buf)->User.Sid;

		n = GetLengthSid(s);
		if ((sid = malloc(n)) != NULL)
			CopySid(n, sid, s);
	}
	CloseHandle(tok);
	return sid;
}

/* The check of one file or folder by name (w), what for messages. */
static int check_object(const wchar_t *w, const char *what, PSID self,
			char *err, size_t errlen)
{
	PSECURITY_DESCRIPTOR sd = NULL;
	PACL dacl;
	DWORD e;
	int r;

	e = GetNamedSecurityInfoW(w, SE_FILE_OBJECT,
				  OWNER_SECURITY_INFORMATION |
					  DACL_SECURITY_INFORMATION,
				  NULL, NULL, &dacl, NULL, &sd);
	if (e != ERROR_SUCCESS) {
		snprintf(err, errlen, "%s: cannot read its permissions "
				      "(error %lu)", what, (unsigned long)e);
		return -1;
	}
	r = sl_win_sd_check(sd, self, what, err, errlen);
	LocalFree(sd);
	return r;
}

/* The folder of an absolute wide path, in place (the last '\' cut). */
static int cut_to_folder(wchar_t *w)
{
	wchar_t *slash = wcsrchr(w, L'\\');

	if (slash == NULL)
		return -1;
	if (slash == w + 2 && w[1] == L':')
		slash[1] = L'\0'; /* "C:\" */
	else
		*slash = L'\0';
	return 0;
}

int sl_service_check_conf(const char *conf, char *err, size_t errlen)
{
	wchar_t *w = sl_os_wide(conf), *abs;
	PSID self;
	char what[1024];
	char *folder;
	int r = 0;

	if (w == NULL) {
		snprintf(err, errlen, "%s: not a UTF-8 name", conf);
		return -1;
	}
	abs = _wfullpath(NULL, w, 0);
	free(w);
	if (abs == NULL) {
		snprintf(err, errlen, "%s: cannot make it absolute", conf);
		return -1;
	}
	self = self_sid();
	if (GetFileAttributesW(abs) != INVALID_FILE_ATTRIBUTES) {
		snprintf(what, sizeof what, "config %s", conf);
		r = check_object(abs, what, self, err, errlen);
	}
	if (r == 0 && cut_to_folder(abs) == 0) {
		folder = sl_os_utf8(abs);
		snprintf(what, sizeof what, "config folder %s",
			 folder != NULL ? folder : conf);
		free(folder);
		r = check_object(abs, what, self, err, errlen);
	}
	free(self);
	free(abs);
	return r;
}

/* ---- service -------------------------------------------------------------- */

static SERVICE_STATUS_HANDLE svc_handle;
static SERVICE_STATUS svc_status;
static CRITICAL_SECTION svc_lock;
static HANDLE svc_ticker, svc_ticker_quit;
static unsigned long svc_stop_hint = 30000;
static unsigned long svc_preshutdown_ms = SL_PRESHUTDOWN_MS;
static wchar_t *svc_name;
static int (*svc_run)(void *);
static void *svc_arg;
static int svc_rc;
static int svc_stopping; /* under svc_lock */

#define SVC_START_HINT 10000

/* Under svc_lock.  Controls are accepted while running; the SCM sends
 * none to a service in a pending state. */
static void svc_set(DWORD state, DWORD win32_exit, DWORD specific,
		    DWORD hint)
{
	svc_status.dwServiceType = SERVICE_WIN32_OWN_PROCESS;
	svc_status.dwCurrentState = state;
	svc_status.dwWin32ExitCode = win32_exit;
	svc_status.dwServiceSpecificExitCode = specific;
	svc_status.dwWaitHint = hint;
	svc_status.dwControlsAccepted =
		state == SERVICE_RUNNING
			? SERVICE_ACCEPT_STOP | SERVICE_ACCEPT_SHUTDOWN |
				  SERVICE_ACCEPT_PRESHUTDOWN
			: 0;
	if (state == SERVICE_RUNNING || state == SERVICE_STOPPED)
		svc_status.dwCheckPoint = 0;
	else
		svc_status.dwCheckPoint++;
	SetServiceStatus(svc_handle, &svc_status);
}

static void svc_report(DWORD state, DWORD win32_exit, DWORD specific,
		       DWORD hint)
{
	EnterCriticalSection(&svc_lock);
	svc_set(state, win32_exit, specific, hint);
	LeaveCriticalSection(&svc_lock);
}

static DWORD stop_hint(void)
{
	return (DWORD)svc_stop_hint + 5000;
}

/* Enter STOP_PENDING once; 0 when a stop was already under way. */
static int svc_begin_stop(void)
{
	int first;

	EnterCriticalSection(&svc_lock);
	first = !svc_stopping;
	svc_stopping = 1;
	svc_set(SERVICE_STOP_PENDING, NO_ERROR, 0, stop_hint());
	LeaveCriticalSection(&svc_lock);
	return first;
}

/* While starting and while draining: a new checkpoint every second, so
 * the SCM sees progress and does not give up on the service. */
static DWORD WINAPI svc_tick(LPVOID arg)
{
	(void)arg;
	while (WaitForSingleObject(svc_ticker_quit, 1000) == WAIT_TIMEOUT) {
		EnterCriticalSection(&svc_lock);
		if (svc_status.dwCurrentState == SERVICE_START_PENDING)
			svc_set(SERVICE_START_PENDING, NO_ERROR, 0,
				SVC_START_HINT);
		else if (svc_status.dwCurrentState == SERVICE_STOP_PENDING)
			svc_set(SERVICE_STOP_PENDING, NO_ERROR, 0,
				stop_hint());
		LeaveCriticalSection(&svc_lock);
	}
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
		EnterCriticalSection(&svc_lock);
		if (!svc_stopping)
			svc_set(SERVICE_RUNNING, NO_ERROR, 0, 0);
		LeaveCriticalSection(&svc_lock);
	} else if (strncmp(state, "STOPPING=1", 10) == 0) {
		svc_begin_stop();
	}
}

/* The service manager has no watchdog of systemd's kind. */
unsigned long long sl_watchdog_usec(void)
{
	return 0;
}

static void ctl_set(int ev)
{
	if (ctl_events[ev] != NULL)
		SetEvent(ctl_events[ev]);
}

/*
 * The handler reports STOP_PENDING before it returns (the SCM waits for
 * that), then hands the stop to the control loop.  A STOP while a stop is
 * under way changes nothing: the drain goes on (Windows does not send one
 * to a service in STOP_PENDING; wine's SCM might).  PRESHUTDOWN drains
 * within the preshutdown timeout; SHUTDOWN (a few seconds left) closes
 * every session at once.
 */
static DWORD WINAPI svc_control(DWORD ctl, DWORD type, LPVOID data,
				LPVOID ctx)
{
	(void)type;
	(void)data;
	(void)ctx;
	switch (ctl) {
	case SERVICE_CONTROL_STOP:
		if (svc_begin_stop())
			ctl_set(EV_STOP);
		return NO_ERROR;
	case SERVICE_CONTROL_PRESHUTDOWN:
		/* A margin for closing after the drain. */
		ctl_deadline_ms = (LONG)(svc_preshutdown_ms > 6000
						 ? svc_preshutdown_ms - 3000
						 : svc_preshutdown_ms / 2);
		if (svc_begin_stop())
			ctl_set(EV_STOP_SOON);
		return NO_ERROR;
	case SERVICE_CONTROL_SHUTDOWN:
		svc_begin_stop();
		ctl_set(EV_STOP_NOW);
		return NO_ERROR;
	case SL_SERVICE_CONTROL_RELOAD:
		ctl_set(EV_RELOAD);
		return NO_ERROR;
	case SERVICE_CONTROL_INTERROGATE:
		return NO_ERROR;
	default:
		return ERROR_CALL_NOT_IMPLEMENTED;
	}
}

/* The preshutdown timeout install set (SERVICE_CONFIG_PRESHUTDOWN_INFO),
 * or an administrator changed since; SL_PRESHUTDOWN_MS if unreadable. */
static void svc_read_preshutdown(void)
{
	SC_HANDLE scm = OpenSCManagerW(NULL, NULL, SC_MANAGER_CONNECT), svc;
	SERVICE_PRESHUTDOWN_INFO *pi;
	BYTE buf[256];
	DWORD n;

	if (scm == NULL)
		return;
	svc = OpenServiceW(scm, svc_name, SERVICE_QUERY_CONFIG);
	if (svc != NULL) {
		pi = (SERVICE_PRESHUTDOWN_INFO *)buf;
		if (QueryServiceConfig2W(svc, SERVICE_CONFIG_PRESHUTDOWN_INFO,
					 buf, sizeof buf, &n) &&
		    pi->dwPreshutdownTimeout > 0)
			svc_preshutdown_ms = pi->dwPreshutdownTimeout;
		CloseServiceHandle(svc);
	}
	CloseServiceHandle(scm);
}

static void WINAPI svc_main(DWORD argc, LPWSTR *argv)
{
	(void)argc;
	(void)argv;
	svc_handle = RegisterServiceCtrlHandlerExW(svc_name, svc_control, NULL);
	if (svc_handle == NULL)
		return;
	svc_report(SERVICE_START_PENDING, NO_ERROR, 0, SVC_START_HINT);
	svc_ticker_quit = CreateEventA(NULL, TRUE, FALSE, NULL);
	if (svc_ticker_quit != NULL)
		svc_ticker = CreateThread(NULL, 0, svc_tick, NULL, 0, NULL);
	svc_read_preshutdown();
	svc_rc = svc_run(svc_arg);
	if (svc_ticker != NULL) {
		SetEvent(svc_ticker_quit);
		WaitForSingleObject(svc_ticker, INFINITE);
		CloseHandle(svc_ticker);
		svc_ticker = NULL;
	}
	if (svc_ticker_quit != NULL)
		CloseHandle(svc_ticker_quit);
	if (svc_rc == 0)
		svc_report(SERVICE_STOPPED, NO_ERROR, 0, 0);
	else
		svc_report(SERVICE_STOPPED, ERROR_SERVICE_SPECIFIC_ERROR,
			   (DWORD)svc_rc, 0);
}

static void svc_lock_init(void)
{
	static int done;

	if (!done)
		InitializeCriticalSection(&svc_lock);
	done = 1;
}

unsigned long sl_service_control(unsigned long ctl)
{
	svc_lock_init();
	return svc_control((DWORD)ctl, 0, NULL, NULL);
}

int sl_service_run(const char *name, int (*run)(void *arg), void *arg)
{
	SERVICE_TABLE_ENTRYW table[] = {
		{NULL, svc_main},
		{NULL, NULL},
	};

	svc_lock_init();
	if ((svc_name = sl_os_wide(name)) == NULL)
		return -EINVAL;
	table[0].lpServiceName = svc_name;
	svc_run = run;
	svc_arg = arg;
	svc_rc = 1;
	if (!StartServiceCtrlDispatcherW(table))
		return sl_win_err(GetLastError());
	return svc_rc;
}

/* ---- sluice service install|uninstall|start|stop|reload ---------------- */

static const char *svc_account, *svc_password;

void sl_service_set_account(const char *account, const char *password)
{
	svc_account = account;
	svc_password = password;
}

/* The system's text for error e, UTF-8, into msg. */
static void win_msg(DWORD e, char *msg, size_t len)
{
	wchar_t w[256];
	char *s;

	if (FormatMessageW(FORMAT_MESSAGE_FROM_SYSTEM |
				   FORMAT_MESSAGE_IGNORE_INSERTS,
			   NULL, e, 0, w, 256, NULL) != 0 &&
	    (s = sl_os_utf8(w)) != NULL) {
		snprintf(msg, len, "%s", s);
		free(s);
		msg[strcspn(msg, "\r\n")] = '\0';
	} else {
		snprintf(msg, len, "error %lu", (unsigned long)e);
	}
}

static int svc_err(char *err, size_t errlen, const char *what,
		   const char *name)
{
	DWORD e = GetLastError();
	char msg[512];

	win_msg(e, msg, sizeof msg);
	snprintf(err, errlen, "service %s: %s: %s", name, what, msg);
	return -1;
}

/* Wait for want, or STOPPED; the state reached (0: the query failed). */
static DWORD svc_wait(SC_HANDLE svc, DWORD want, unsigned timeout_ms,
		      SERVICE_STATUS *st)
{
	unsigned waited = 0;

	while (QueryServiceStatus(svc, st)) {
		if (st->dwCurrentState == want ||
		    st->dwCurrentState == SERVICE_STOPPED ||
		    waited >= timeout_ms)
			return st->dwCurrentState;
		Sleep(100);
		waited += 100;
	}
	return 0;
}

#define EVENTLOG_KEY L"SYSTEM\\CurrentControlSet\\Services\\EventLog\\Application\\"

/* The Event Log source NAME, with this executable as its message file. */
static int register_source(const wchar_t *name, const wchar_t *exe)
{
	wchar_t key[300];
	DWORD types = EVENTLOG_ERROR_TYPE | EVENTLOG_WARNING_TYPE |
		      EVENTLOG_INFORMATION_TYPE;
	HKEY k;
	LONG e;

	_snwprintf(key, 300, L"%ls%ls", EVENTLOG_KEY, name);
	key[299] = L'\0';
	e = RegCreateKeyExW(HKEY_LOCAL_MACHINE, key, 0, NULL, 0,
			    KEY_SET_VALUE, NULL, &k, NULL);
	if (e != ERROR_SUCCESS) {
		SetLastError((DWORD)e);
		return -1;
	}
	e = RegSetValueExW(k, L"EventMessageFile", 0, REG_EXPAND_SZ,
			   (const BYTE *)exe,
			   (DWORD)((wcslen(exe) + 1) * sizeof *exe));
	if (e == ERROR_SUCCESS)
		e = RegSetValueExW(k, L"TypesSupported", 0, REG_DWORD,
				   (const BYTE *)&types, sizeof types);
	RegCloseKey(k);
	if (e != ERROR_SUCCESS) {
		SetLastError((DWORD)e);
		return -1;
	}
	return 0;
}

static void unregister_source(const wchar_t *name)
{
	wchar_t key[300];

	_snwprintf(key, 300, L"%ls%ls", EVENTLOG_KEY, name);
	key[299] = L'\0';
	RegDeleteKeyW(HKEY_LOCAL_MACHINE, key);
}

/* The config's folder, created with SL_CONF_DIR_SDDL if missing. */
static int make_conf_folder(const wchar_t *conf, const char *name, char *err,
			    size_t errlen)
{
	wchar_t *dir = _wcsdup(conf);
	SECURITY_ATTRIBUTES sa = {sizeof sa, NULL, FALSE};
	int rc = 0;

	if (dir == NULL || cut_to_folder(dir) < 0 ||
	    GetFileAttributesW(dir) != INVALID_FILE_ATTRIBUTES) {
		free(dir);
		return 0;
	}
	if (!ConvertStringSecurityDescriptorToSecurityDescriptorA(
		    SL_CONF_DIR_SDDL, SDDL_REVISION_1,
		    &sa.lpSecurityDescriptor, NULL) ||
	    !CreateDirectoryW(dir, &sa))
		rc = svc_err(err, errlen, "cannot create the config folder",
			     name);
	LocalFree(sa.lpSecurityDescriptor);
	free(dir);
	return rc;
}

/* The account as the SCM wants it: NULL for LocalSystem. */
static const char *account_name(const char *a)
{
	if (a == NULL || _stricmp(a, "LocalSystem") == 0)
		return NULL;
	if (_stricmp(a, "LocalService") == 0)
		return "NT AUTHORITY\\LocalService";
	if (_stricmp(a, "NetworkService") == 0)
		return "NT AUTHORITY\\NetworkService";
	return a;
}

/* What install sets beside CreateService; 0 or -1 with err set. */
static int configure_service(SC_HANDLE svc, const char *name, char *err,
			     size_t errlen)
{
	static wchar_t desc[] =
		L"Forwards TCP connections and named pipes (sluice)";
	SERVICE_DESCRIPTIONW d = {desc};
	SC_ACTION acts[3] = {{SC_ACTION_RESTART, 5000},
			     {SC_ACTION_RESTART, 5000},
			     {SC_ACTION_RESTART, 5000}};
	SERVICE_FAILURE_ACTIONSW fa = {86400, NULL, NULL, 3, acts};
	SERVICE_FAILURE_ACTIONS_FLAG ff = {TRUE};
	SERVICE_DELAYED_AUTO_START_INFO da = {TRUE};
	SERVICE_PRESHUTDOWN_INFO pi = {SL_PRESHUTDOWN_MS};

	if (!ChangeServiceConfig2W(svc, SERVICE_CONFIG_DESCRIPTION, &d))
		return svc_err(err, errlen, "cannot set the description", name);
	if (!ChangeServiceConfig2W(svc, SERVICE_CONFIG_FAILURE_ACTIONS, &fa))
		return svc_err(err, errlen, "cannot set failure actions", name);
	if (!ChangeServiceConfig2W(svc, SERVICE_CONFIG_PRESHUTDOWN_INFO, &pi))
		return svc_err(err, errlen, "cannot set the preshutdown timeout",
			       name);
	/* Also restart after a stop with an error (a service-specific exit
	 * code), not only after a crash.  Wine 8 does not know these two
	 * levels (ERROR_INVALID_PARAMETER): said, not fatal. */
	if (!ChangeServiceConfig2W(svc, SERVICE_CONFIG_FAILURE_ACTIONS_FLAG,
				   &ff))
		fprintf(stderr, "sluice: service %s: failure actions only "
				"after a crash (error %lu)\n",
			name, (unsigned long)GetLastError());
	if (!ChangeServiceConfig2W(svc, SERVICE_CONFIG_DELAYED_AUTO_START_INFO,
				   &da))
		fprintf(stderr, "sluice: service %s: no delayed auto-start "
				"(error %lu)\n",
			name, (unsigned long)GetLastError());
	return 0;
}

static int install(SC_HANDLE scm, const char *name, const char *conf,
		   char *err, size_t errlen)
{
	wchar_t exe[MAX_PATH], *wconf = NULL, *wname = NULL, *cmdline = NULL,
				 *wdisplay = NULL, *wacct = NULL, *wpass = NULL;
	char display[300];
	const char *acct = account_name(svc_account);
	SC_HANDLE svc = NULL;
	size_t n;
	int rc = -1;

	if (GetModuleFileNameW(NULL, exe, MAX_PATH) == 0 ||
	    (wconf = sl_os_wide(conf)) == NULL ||
	    (wname = sl_os_wide(name)) == NULL) {
		snprintf(err, errlen, "service %s: names: %s", name,
			 strerror(errno));
		goto out;
	}
	{
		wchar_t *abs = _wfullpath(NULL, wconf, 0);

		if (abs == NULL) {
			snprintf(err, errlen, "%s: cannot make it absolute",
				 conf);
			goto out;
		}
		free(wconf);
		wconf = abs;
	}
	if (make_conf_folder(wconf, name, err, errlen) < 0 ||
	    sl_service_check_conf(conf, err, errlen) < 0)
		goto out;
	if (GetFileAttributesW(wconf) == INVALID_FILE_ATTRIBUTES)
		fprintf(stderr, "sluice: %s does not exist yet: write it "
				"before the service starts\n",
			conf);
	n = wcslen(exe) + wcslen(wconf) + wcslen(wname) + 64;
	if ((cmdline = malloc(n * sizeof *cmdline)) == NULL)
		goto out;
	_snwprintf(cmdline, n,
		   L"\"%ls\" service run -c \"%ls\" --name \"%ls\"", exe,
		   wconf, wname);
	cmdline[n - 1] = L'\0';
	/* Display names are unique too: one per instance (--name). */
	if (strcmp(name, "sluice") == 0)
		snprintf(display, sizeof display, "sluice forwarder");
	else
		snprintf(display, sizeof display, "sluice forwarder (%s)",
			 name);
	wdisplay = sl_os_wide(display);
	if (acct != NULL)
		wacct = sl_os_wide(acct);
	if (svc_password != NULL)
		wpass = sl_os_wide(svc_password);
	svc = CreateServiceW(scm, wname, wdisplay, SERVICE_ALL_ACCESS,
			     SERVICE_WIN32_OWN_PROCESS, SERVICE_AUTO_START,
			     SERVICE_ERROR_NORMAL, cmdline, NULL, NULL, NULL,
			     wacct, wpass);
	if (wpass != NULL)
		SecureZeroMemory(wpass, wcslen(wpass) * sizeof *wpass);
	if (svc == NULL) {
		svc_err(err, errlen, "cannot install", name);
		goto out;
	}
	if (configure_service(svc, name, err, errlen) < 0) {
		DeleteService(svc);
		goto out;
	}
	if (register_source(wname, exe) < 0) {
		svc_err(err, errlen, "cannot register the Event Log source",
			name);
		DeleteService(svc);
		goto out;
	}
	rc = 0;
out:
	if (svc != NULL)
		CloseServiceHandle(svc);
	free(wconf);
	free(wname);
	free(cmdline);
	free(wdisplay);
	free(wacct);
	free(wpass);
	return rc;
}

int sl_service_command(const char *cmd, const char *name, const char *conf,
		       char *err, size_t errlen)
{
	SC_HANDLE scm, svc = NULL;
	SERVICE_STATUS st;
	wchar_t *wname;
	int rc = 0;

	memset(&st, 0, sizeof st);
	if ((wname = sl_os_wide(name)) == NULL) {
		snprintf(err, errlen, "service name: not UTF-8");
		return -1;
	}
	scm = OpenSCManagerW(NULL, NULL,
			     strcmp(cmd, "install") == 0
				     ? SC_MANAGER_CREATE_SERVICE
				     : SC_MANAGER_CONNECT);
	if (scm == NULL) {
		free(wname);
		return svc_err(err, errlen, "cannot open the service manager",
			       name);
	}
	if (strcmp(cmd, "install") == 0) {
		rc = install(scm, name, conf, err, errlen);
		goto out;
	}
	svc = OpenServiceW(scm, wname,
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
		else
			unregister_source(wname);
	} else if (strcmp(cmd, "start") == 0) {
		if (!StartServiceW(svc, 0, NULL))
			rc = svc_err(err, errlen, "cannot start", name);
		else if (svc_wait(svc, SERVICE_RUNNING, 30000, &st) !=
			 SERVICE_RUNNING) {
			if (st.dwCurrentState == SERVICE_STOPPED &&
			    st.dwWin32ExitCode ==
				    ERROR_SERVICE_SPECIFIC_ERROR)
				snprintf(err, errlen,
					 "service %s: stopped with exit code "
					 "%lu (the Application event log "
					 "says why)",
					 name,
					 (unsigned long)
						 st.dwServiceSpecificExitCode);
			else if (st.dwCurrentState == SERVICE_STOPPED)
				snprintf(err, errlen,
					 "service %s: stopped (error %lu)",
					 name,
					 (unsigned long)st.dwWin32ExitCode);
			else
				snprintf(err, errlen,
					 "service %s: not RUNNING after 30 s "
					 "(state %lu)",
					 name,
					 (unsigned long)st.dwCurrentState);
			rc = -1;
		}
	} else if (strcmp(cmd, "stop") == 0) {
		if (!ControlService(svc, SERVICE_CONTROL_STOP, &st))
			rc = svc_err(err, errlen, "cannot stop", name);
		else if (svc_wait(svc, SERVICE_STOPPED, 120000, &st) !=
			 SERVICE_STOPPED)
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
	free(wname);
	return rc;
}
