/*
 * sluice.exe as a Windows service, through the real service control
 * manager (wine's services.exe here):
 *
 * 1. CreateServiceW with "sluice.exe service run -c CONF --name NAME",
 *    StartService, RUNNING within a bound, a byte-exact round trip through
 *    the forwarded port, SERVICE_CONTROL_STOP, STOPPED with exit code 0,
 *    DeleteService; the log file shows the drain.
 * 2. The same life through sluice's own commands: sluice service install,
 *    start, stop, uninstall.
 *
 * What wine cannot show: it ends services.exe, and the services with it,
 * as soon as no ordinary wine process is left, so this program stays alive
 * while the service runs (it does anyway); and wine's sc.exe did not
 * deliver a user-defined control code (128, the reload) to the handler, so
 * reload through the SCM is not tested here (the named reload event is, by
 * tests/e2e-wine).
 */
#include <winsock2.h>
#include <ws2tcpip.h>
#include <windows.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>

#include <cmocka.h>

static char sluice_exe[MAX_PATH];
static char tmp[MAX_PATH];

/* SLUICE_BIN is a Unix path under wine: drive Z: is the Unix root. */
static void windows_path(const char *in, char *out, size_t len)
{
	size_t i;

	if (in[0] == '/')
		snprintf(out, len, "Z:%s", in);
	else
		snprintf(out, len, "%s", in);
	for (i = 0; out[i]; i++)
		if (out[i] == '/')
			out[i] = '\\';
}

/* ---- an echo server on its own thread ----------------------------------------- */

static SOCKET echo_l;

static DWORD WINAPI echo_main(LPVOID arg)
{
	(void)arg;
	for (;;) {
		SOCKET c = accept(echo_l, NULL, NULL);
		char buf[4096];
		int n;

		if (c == INVALID_SOCKET)
			return 0;
		while ((n = recv(c, buf, sizeof buf, 0)) > 0)
			send(c, buf, n, 0);
		closesocket(c);
	}
}

static uint16_t listen_any(SOCKET *out)
{
	struct sockaddr_in sa;
	int len = sizeof sa;
	SOCKET s = socket(AF_INET, SOCK_STREAM, IPPROTO_TCP);

	memset(&sa, 0, sizeof sa);
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(s, (struct sockaddr *)&sa, sizeof sa), 0);
	assert_int_equal(listen(s, 16), 0);
	assert_int_equal(getsockname(s, (struct sockaddr *)&sa, &len), 0);
	*out = s;
	return ntohs(sa.sin_port);
}

static uint16_t free_port(void)
{
	SOCKET s;
	uint16_t p = listen_any(&s);

	closesocket(s);
	return p;
}

/* Connect (retrying while sluice starts), send, expect the echo. */
static void round_trip(uint16_t port)
{
	static const char msg[] = "through the service";
	struct sockaddr_in sa;
	char got[sizeof msg];
	DWORD tmo = 10000;
	SOCKET c = INVALID_SOCKET;
	int i, n = 0, r;

	memset(&sa, 0, sizeof sa);
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sa.sin_port = htons(port);
	for (i = 0; i < 100; i++) {
		c = socket(AF_INET, SOCK_STREAM, IPPROTO_TCP);
		if (connect(c, (struct sockaddr *)&sa, sizeof sa) == 0)
			break;
		closesocket(c);
		c = INVALID_SOCKET;
		Sleep(100);
	}
	assert_true(c != INVALID_SOCKET);
	setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, (const char *)&tmo, sizeof tmo);
	assert_int_equal(send(c, msg, sizeof msg, 0), (int)sizeof msg);
	while (n < (int)sizeof msg &&
	       (r = recv(c, got + n, (int)sizeof msg - n, 0)) > 0)
		n += r;
	assert_int_equal(n, (int)sizeof msg);
	assert_memory_equal(got, msg, sizeof msg);
	closesocket(c);
}

static DWORD wait_state(SC_HANDLE svc, DWORD want, unsigned ms,
			SERVICE_STATUS *st)
{
	unsigned waited = 0;

	while (QueryServiceStatus(svc, st)) {
		if (st->dwCurrentState == want || waited >= ms)
			return st->dwCurrentState;
		Sleep(100);
		waited += 100;
	}
	return 0;
}

static char *read_all(const char *path)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	long n;

	if (f == NULL)
		return NULL;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = calloc(1, (size_t)n + 1);
	if (fread(buf, 1, (size_t)n, f) != (size_t)n)
		n = 0;
	fclose(f);
	return buf;
}

static void write_config(const char *conf, const char *log, uint16_t lport,
			 uint16_t uport)
{
	FILE *f = fopen(conf, "w");

	assert_non_null(f);
	fprintf(f,
		"log: '%s'\n"
		"drain_timeout: 5s\n"
		"routes:\n"
		"  - name: svc\n"
		"    listen: tcp://127.0.0.1:%u\n"
		"    upstreams: [tcp://127.0.0.1:%u]\n",
		log, lport, uport);
	assert_int_equal(fclose(f), 0);
}

static void test_service_through_scm(void **state)
{
	char conf[MAX_PATH], log[MAX_PATH], cmd[3 * MAX_PATH];
	wchar_t wname[64], wcmd[3 * MAX_PATH];
	uint16_t uport = listen_any(&echo_l), lport = free_port();
	SC_HANDLE scm, svc;
	SERVICE_STATUS st;
	char *text;

	(void)state;
	CloseHandle(CreateThread(NULL, 0, echo_main, NULL, 0, NULL));
	snprintf(conf, sizeof conf, "%ssluice-svc-%lu.yaml", tmp,
		 (unsigned long)GetCurrentProcessId());
	snprintf(log, sizeof log, "%ssluice-svc-%lu.log", tmp,
		 (unsigned long)GetCurrentProcessId());
	DeleteFileA(log);
	write_config(conf, log, lport, uport);

	swprintf(wname, 64, L"sluice-test-%lu",
		 (unsigned long)GetCurrentProcessId());
	snprintf(cmd, sizeof cmd, "\"%s\" service run -c \"%s\" --name %ls",
		 sluice_exe, conf, wname);
	MultiByteToWideChar(CP_ACP, 0, cmd, -1, wcmd, 3 * MAX_PATH);

	scm = OpenSCManagerW(NULL, NULL, SC_MANAGER_ALL_ACCESS);
	assert_non_null(scm);
	/* Wine reuses process ids: a service left by a failed earlier run
	 * may carry this name. */
	svc = OpenServiceW(scm, wname, DELETE);
	if (svc != NULL) {
		DeleteService(svc);
		CloseServiceHandle(svc);
	}
	svc = CreateServiceW(scm, wname, wname, SERVICE_ALL_ACCESS,
			     SERVICE_WIN32_OWN_PROCESS, SERVICE_DEMAND_START,
			     SERVICE_ERROR_NORMAL, wcmd, NULL, NULL, NULL,
			     NULL, NULL);
	assert_non_null(svc);
	if (!StartServiceW(svc, 0, NULL)) {
		/* 1053 or 1055 under wine: a new prefix that is still
		 * booting (scripts/check waits for it). */
		print_error("StartServiceW: error %lu\n",
			    (unsigned long)GetLastError());
		DeleteService(svc);
		fail();
	}
	assert_int_equal(wait_state(svc, SERVICE_RUNNING, 30000, &st),
			 SERVICE_RUNNING);
	/* A running sluice accepts STOP and SHUTDOWN. */
	assert_true(st.dwControlsAccepted & SERVICE_ACCEPT_STOP);

	round_trip(lport);
	round_trip(lport);

	assert_true(ControlService(svc, SERVICE_CONTROL_STOP, &st));
	assert_int_equal(wait_state(svc, SERVICE_STOPPED, 30000, &st),
			 SERVICE_STOPPED);
	assert_int_equal(st.dwWin32ExitCode, NO_ERROR);
	assert_true(DeleteService(svc));
	CloseServiceHandle(svc);
	CloseServiceHandle(scm);

	text = read_all(log);
	assert_non_null(text);
	assert_non_null(strstr(text, " started: "));
	assert_non_null(strstr(text, "reason=done"));
	assert_non_null(strstr(text, "stopping: no new connections"));
	assert_non_null(strstr(text, "exiting"));
	free(text);
	DeleteFileA(conf);
	DeleteFileA(log);
}

/* sluice.exe ARGS..., waited for; its exit status. */
static int run_sluice(const char *args)
{
	char line[3 * MAX_PATH];
	STARTUPINFOA si;
	PROCESS_INFORMATION pi;
	DWORD code = 999;

	snprintf(line, sizeof line, "\"%s\" %s", sluice_exe, args);
	memset(&si, 0, sizeof si);
	si.cb = sizeof si;
	if (!CreateProcessA(NULL, line, NULL, NULL, FALSE, 0, NULL, NULL, &si,
			    &pi))
		return -1;
	if (WaitForSingleObject(pi.hProcess, 60000) != WAIT_OBJECT_0)
		TerminateProcess(pi.hProcess, 998);
	GetExitCodeProcess(pi.hProcess, &code);
	CloseHandle(pi.hThread);
	CloseHandle(pi.hProcess);
	return (int)code;
}

static void test_service_commands(void **state)
{
	char conf[MAX_PATH], log[MAX_PATH], args[2 * MAX_PATH], name[64];
	uint16_t lport = free_port(), uport;
	char *text;

	(void)state;
	/* The echo thread of the first test still serves echo_l. */
	uport = 0;
	{
		struct sockaddr_in sa;
		int len = sizeof sa;

		if (echo_l == 0 || echo_l == INVALID_SOCKET) {
			uport = listen_any(&echo_l);
			CloseHandle(CreateThread(NULL, 0, echo_main, NULL, 0,
						 NULL));
		} else {
			getsockname(echo_l, (struct sockaddr *)&sa, &len);
			uport = ntohs(sa.sin_port);
		}
	}
	snprintf(name, sizeof name, "sluice-cmd-%lu",
		 (unsigned long)GetCurrentProcessId());
	snprintf(conf, sizeof conf, "%s%s.yaml", tmp, name);
	snprintf(log, sizeof log, "%s%s.log", tmp, name);
	DeleteFileA(log);
	write_config(conf, log, lport, uport);

	snprintf(args, sizeof args, "service uninstall --name %s", name);
	run_sluice(args); /* a leftover of a failed run, as above */
	snprintf(args, sizeof args, "service install -c \"%s\" --name %s",
		 conf, name);
	assert_int_equal(run_sluice(args), 0);
	/* A second instance installs beside it (names and display names
	 * are unique per instance). */
	snprintf(args, sizeof args,
		 "service install -c \"%s\" --name %s-b", conf, name);
	assert_int_equal(run_sluice(args), 0);
	snprintf(args, sizeof args, "service uninstall --name %s-b", name);
	assert_int_equal(run_sluice(args), 0);
	snprintf(args, sizeof args, "service start --name %s", name);
	assert_int_equal(run_sluice(args), 0); /* waits for RUNNING */
	round_trip(lport);
	snprintf(args, sizeof args, "service stop --name %s", name);
	assert_int_equal(run_sluice(args), 0); /* waits for STOPPED */
	snprintf(args, sizeof args, "service uninstall --name %s", name);
	assert_int_equal(run_sluice(args), 0);
	/* Gone: a second uninstall says so and fails. */
	assert_int_equal(run_sluice(args), 1);

	text = read_all(log);
	assert_non_null(text);
	assert_non_null(strstr(text, "exiting"));
	free(text);
	DeleteFileA(conf);
	DeleteFileA(log);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_service_through_scm),
		cmocka_unit_test(test_service_commands),
	};
	const char *bin = getenv("SLUICE_BIN");
	WSADATA wd;

	if (bin == NULL || !*bin) {
		fprintf(stderr, "SLUICE_BIN is not set (run through make "
				"check)\n");
		return 1;
	}
	windows_path(bin, sluice_exe, sizeof sluice_exe);
	GetTempPathA(sizeof tmp, tmp);
	WSAStartup(MAKEWORD(2, 2), &wd);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
