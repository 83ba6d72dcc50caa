/*
 * sltool.exe: the Windows half of the end-to-end tests.  The Linux test
 * programs drive sluice.exe under wine over the shared loopback with their
 * own TCP clients; what only a Windows process can do is here:
 *
 *   sltool sig EVENT          set a named event (sluice-PID-stop, ...)
 *   sltool cat PIPE           a pipe client: stdin to the pipe while the
 *                             pipe goes to stdout; at the end of stdin a
 *                             zero-byte message (the half-close); exits at
 *                             the pipe's end of stream
 *   sltool echo PIPE          a pipe server: echoes every client (a thread
 *                             each); a client's zero-byte message is
 *                             answered with one after the echo
 *   sltool echo1 PIPE         the same with one instance, its clients
 *                             served one after another: a client that
 *                             comes while one is served finds it busy
 *   sltool many PIPE N BYTES  N concurrent pipe clients, each sending
 *                             BYTES of its own pattern and checking the
 *                             echo; busy pipes are waited for, as clients do
 *   sltool collect PIPE       a pipe server: reads a client's stream to its
 *                             end (the zero-byte message), then answers
 *                             with the count of bytes read (8 bytes, this
 *                             machine's order), those bytes again, and
 *                             its own end
 *   sltool hold PIPE N        N pipe clients that connect, say "held N" and
 *                             stay idle until stdin ends (bench/win-idle)
 *   sltool dacl PIPE          prints the pipe's DACL in SDDL, read through
 *                             a client handle
 *   sltool ovstdio PROG ARGS  runs PROG with overlapped pipe handles as
 *                             its standard input and output (as some
 *                             parents give them), ours copied in and its
 *                             out; exits with its status
 *   sltool root-add CERT      adds the certificate in file CERT (PEM or
 *                             DER) to the account's ROOT store
 *                             (CERT_SYSTEM_STORE_CURRENT_USER)
 *   sltool root-del CERT      removes it from there again (exit 1 when it
 *                             is not there)
 *   sltool stdecho [MODE]     an exec: command: a line to stderr, then its
 *                             standard input copied to its standard output
 *                             (ReadFile, WriteFile) to the end; MODE
 *                             "done": input read and dropped, then
 *                             "done\n"; "errs": first the stderr lines of
 *                             test_exec_stderr (one of 300000 bytes)
 *   sltool stdexit N TEXT     writes TEXT and a newline, exits with N
 *   sltool sleep SECONDS      sleeps (its standard input left alone)
 *   sltool handles PID        prints how many handles the process PID
 *                             holds (SystemExtendedHandleInformation:
 *                             wine's GetProcessHandleCount gives 0)
 *   sltool stdkind FILE       writes to FILE what its standard input and
 *                             output are ("in=console out=console": the
 *                             console API takes them; else disk, pipe,
 *                             char or unknown, by GetFileType)
 *   sltool version FILE       prints FILE's version resource as
 *                             GetFileVersionInfoW and VerQueryValueW read
 *                             it (as Explorer does): the fixed file and
 *                             product versions, then "Name: value" for
 *                             each string of its first language
 *
 * root-add is a test tool for wine: on Windows a change to the user's ROOT
 * store asks the user to confirm it in a dialog (CryptoAPI protects that
 * store), which no test could answer; wine's crypt32 asks nothing.
 *
 * Exit status 0 on success, 1 on a failure (with a message on stderr),
 * 2 on bad usage.
 *
 * Arguments are taken as UTF-8 from the wide command line (main's argv is
 * in the ANSI code page, which cannot hold every name; a wine program
 * started from Linux gets its UTF-8 arguments through the wide command
 * line whole), and pipe names go to the wide API calls.
 */
#include <windows.h>
#include <aclapi.h>
#include <wincrypt.h>
#include <shellapi.h> /* CommandLineToArgvW */
#include <sddl.h>
#include <winternl.h> /* NtQuerySystemInformation */

#include <fcntl.h>
#include <io.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK 65536

/* A UTF-8 name as UTF-16 in w (exits on a name that is not UTF-8). */
static const wchar_t *wide(const char *name, wchar_t *w, int len)
{
	if (MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, name, -1, w,
				len) == 0) {
		fprintf(stderr, "sltool: %s: not a UTF-8 name\n", name);
		ExitProcess(2);
	}
	return w;
}

static HANDLE open_pipe(const char *name, unsigned wait_ms)
{
	DWORD start = GetTickCount();
	wchar_t w[MAX_PATH];

	wide(name, w, MAX_PATH);
	for (;;) {
		HANDLE h = CreateFileW(w, GENERIC_READ | GENERIC_WRITE, 0,
				       NULL, OPEN_EXISTING,
				       FILE_FLAG_OVERLAPPED, NULL);
		DWORD e;

		if (h != INVALID_HANDLE_VALUE)
			return h;
		e = GetLastError();
		if (GetTickCount() - start > wait_ms ||
		    (e != ERROR_PIPE_BUSY && e != ERROR_FILE_NOT_FOUND)) {
			fprintf(stderr, "sltool: open %s: error %lu\n", name,
				(unsigned long)e);
			return INVALID_HANDLE_VALUE;
		}
		if (e == ERROR_PIPE_BUSY)
			WaitNamedPipeW(w, 1000);
		else
			Sleep(20);
	}
}

/* Overlapped I/O waited for: bytes moved, or -1 (EOF/broken: *eof=1). */
static long io(HANDLE h, int wr, void *buf, DWORD len, int *eof)
{
	OVERLAPPED ov;
	DWORD n = 0, e;
	BOOL ok;

	memset(&ov, 0, sizeof ov);
	ov.hEvent = CreateEventA(NULL, TRUE, FALSE, NULL);
	ok = wr ? WriteFile(h, buf, len, NULL, &ov)
		: ReadFile(h, buf, len, NULL, &ov);
	if (!ok && GetLastError() != ERROR_IO_PENDING) {
		e = GetLastError();
		goto fail;
	}
	if (!GetOverlappedResult(h, &ov, &n, TRUE)) {
		e = GetLastError();
		if (e == ERROR_MORE_DATA)
			goto done;
		goto fail;
	}
done:
	CloseHandle(ov.hEvent);
	return (long)n;
fail:
	CloseHandle(ov.hEvent);
	if (e == ERROR_BROKEN_PIPE || e == ERROR_PIPE_NOT_CONNECTED ||
	    e == ERROR_NO_DATA) {
		if (eof != NULL)
			*eof = 1;
		return -1;
	}
	fprintf(stderr, "sltool: %s: error %lu\n", wr ? "write" : "read",
		(unsigned long)e);
	return -1;
}

/* ---- cat ------------------------------------------------------------------ */

static DWORD WINAPI cat_in(LPVOID arg)
{
	HANDLE p = arg;
	static char buf[CHUNK];
	int n;

	while ((n = _read(0, buf, sizeof buf)) > 0) {
		if (io(p, 1, buf, (DWORD)n, NULL) != n) {
			fprintf(stderr, "sltool cat: short write\n");
			ExitProcess(1);
		}
	}
	io(p, 1, buf, 0, NULL); /* zero-byte message: our end */
	return 0;
}

static int cmd_cat(const char *name)
{
	static char buf[CHUNK];
	HANDLE p = open_pipe(name, 10000), t;
	long n;
	int eof = 0;

	if (p == INVALID_HANDLE_VALUE)
		return 1;
	_setmode(0, _O_BINARY);
	_setmode(1, _O_BINARY);
	t = CreateThread(NULL, 0, cat_in, p, 0, NULL);
	for (;;) {
		n = io(p, 0, buf, sizeof buf, &eof);
		if (n <= 0)
			break; /* zero bytes: the peer's half-close */
		if (_write(1, buf, (unsigned)n) != n)
			return 1;
	}
	if (n < 0 && !eof)
		return 1;
	WaitForSingleObject(t, 30000);
	return 0;
}

/* ---- echo server -------------------------------------------------------------- */

/* Echo one client to its end; the handle stays open. */
static void echo_session(HANDLE h)
{
	char *buf = malloc(CHUNK);
	long n = -1;

	while (buf != NULL && (n = io(h, 0, buf, CHUNK, NULL)) > 0) {
		if (io(h, 1, buf, (DWORD)n, NULL) != n)
			break;
	}
	if (buf != NULL && n == 0) {
		/* The client's half-close: echo it, then wait for its close. */
		io(h, 1, buf, 0, NULL);
		while (io(h, 0, buf, CHUNK, NULL) >= 0)
			;
	}
	free(buf);
	FlushFileBuffers(h);
	DisconnectNamedPipe(h);
}

static DWORD WINAPI echo_client(LPVOID arg)
{
	echo_session(arg);
	CloseHandle(arg);
	return 0;
}

static DWORD WINAPI collect_client(LPVOID arg)
{
	HANDLE h = arg;
	char *all = NULL, buf[CHUNK];
	uint64_t n = 0, off;
	long r;

	while ((r = io(h, 0, buf, sizeof buf, NULL)) > 0) {
		char *more = realloc(all, (size_t)(n + (uint64_t)r));

		if (more == NULL)
			ExitProcess(1);
		all = more;
		memcpy(all + n, buf, (size_t)r);
		n += (uint64_t)r;
	}
	if (r == 0) {
		/* The client's end came: now the answer. */
		io(h, 1, &n, sizeof n, NULL);
		for (off = 0; off < n; off += CHUNK) {
			DWORD k = n - off < CHUNK ? (DWORD)(n - off) : CHUNK;

			if (io(h, 1, all + off, k, NULL) != (long)k)
				break;
		}
		io(h, 1, buf, 0, NULL);
		while (io(h, 0, buf, sizeof buf, NULL) >= 0)
			;
	}
	free(all);
	DisconnectNamedPipe(h);
	CloseHandle(h);
	return 0;
}

/* Wait for a client on h (ConnectNamedPipe, overlapped).  0 or -1. */
static int accept_client(HANDLE h)
{
	OVERLAPPED ov;
	DWORD n, e = 0;

	memset(&ov, 0, sizeof ov);
	ov.hEvent = CreateEventA(NULL, TRUE, FALSE, NULL);
	if (!ConnectNamedPipe(h, &ov)) {
		e = GetLastError();
		if (e == ERROR_IO_PENDING)
			e = GetOverlappedResult(h, &ov, &n, TRUE)
				    ? 0
				    : GetLastError();
		else if (e == ERROR_PIPE_CONNECTED)
			e = 0;
	}
	CloseHandle(ov.hEvent);
	return e == 0 ? 0 : -1;
}

static int cmd_echo1(const char *name)
{
	wchar_t w[MAX_PATH];
	HANDLE h = CreateNamedPipeW(
		wide(name, w, MAX_PATH),
		PIPE_ACCESS_DUPLEX | FILE_FLAG_OVERLAPPED,
		PIPE_TYPE_MESSAGE | PIPE_READMODE_BYTE | PIPE_WAIT, 1, CHUNK,
		CHUNK, 0, NULL);

	if (h == INVALID_HANDLE_VALUE) {
		fprintf(stderr, "sltool: create %s: %lu\n", name,
			(unsigned long)GetLastError());
		return 1;
	}
	for (;;) {
		if (accept_client(h) == 0)
			echo_session(h);
		else
			DisconnectNamedPipe(h);
	}
}

/* A pipe server running fn for each client (a thread each). */
static int serve(const char *name, LPTHREAD_START_ROUTINE fn)
{
	wchar_t w[MAX_PATH];

	wide(name, w, MAX_PATH);
	for (;;) {
		HANDLE h = CreateNamedPipeW(
			w, PIPE_ACCESS_DUPLEX | FILE_FLAG_OVERLAPPED,
			PIPE_TYPE_MESSAGE | PIPE_READMODE_BYTE | PIPE_WAIT,
			PIPE_UNLIMITED_INSTANCES, CHUNK, CHUNK, 0, NULL);

		if (h == INVALID_HANDLE_VALUE) {
			fprintf(stderr, "sltool: create %s: %lu\n", name,
				(unsigned long)GetLastError());
			return 1;
		}
		if (accept_client(h) < 0) {
			CloseHandle(h);
			continue;
		}
		CloseHandle(CreateThread(NULL, 0, fn, h, 0, NULL));
	}
}

/* ---- many clients --------------------------------------------------------------- */

static const char *many_name;
static uint64_t many_bytes;
static volatile LONG many_failed;

static void pattern(unsigned id, uint64_t off, char *buf, size_t n)
{
	for (size_t i = 0; i < n; i++)
		buf[i] = (char)((off + i) * 31u + id * 7u + ((off + i) >> 12));
}

static DWORD WINAPI many_client(LPVOID arg)
{
	unsigned id = (unsigned)(uintptr_t)arg;
	char *out = malloc(16384), *in = malloc(16384), *want = malloc(16384);
	HANDLE h = open_pipe(many_name, 20000);
	uint64_t off = 0;
	int eof = 0;

	if (h == INVALID_HANDLE_VALUE || !out || !in || !want)
		goto fail;
	while (off < many_bytes) {
		DWORD n = many_bytes - off < 16384 ? (DWORD)(many_bytes - off)
						   : 16384;
		DWORD got = 0;

		pattern(id, off, out, n);
		if (io(h, 1, out, n, NULL) != (long)n)
			goto fail;
		while (got < n) {
			long r = io(h, 0, in + got, n - got, &eof);

			if (r <= 0)
				goto fail;
			got += (DWORD)r;
		}
		pattern(id, off, want, n);
		if (memcmp(in, want, n) != 0) {
			fprintf(stderr, "sltool many: client %u: bytes differ "
					"at %llu\n",
				id, (unsigned long long)off);
			goto fail;
		}
		off += n;
	}
	/* Our end; the echo of it is the end of the stream. */
	io(h, 1, out, 0, NULL);
	if (io(h, 0, in, 16384, &eof) > 0)
		goto fail;
	CloseHandle(h);
	free(out);
	free(in);
	free(want);
	return 0;
fail:
	fprintf(stderr, "sltool many: client %u failed after %llu bytes\n", id,
		(unsigned long long)off);
	InterlockedIncrement(&many_failed);
	if (h != INVALID_HANDLE_VALUE)
		CloseHandle(h);
	free(out);
	free(in);
	free(want);
	return 1;
}

static int cmd_many(const char *name, unsigned n, uint64_t bytes)
{
	HANDLE *t = calloc(n, sizeof *t);
	unsigned i;

	many_name = name;
	many_bytes = bytes;
	for (i = 0; i < n; i++)
		t[i] = CreateThread(NULL, 0, many_client, (LPVOID)(uintptr_t)i,
				    0, NULL);
	for (i = 0; i < n; i++) {
		if (WaitForSingleObject(t[i], 120000) != WAIT_OBJECT_0) {
			fprintf(stderr, "sltool many: client %u hangs\n", i);
			return 1;
		}
		CloseHandle(t[i]);
	}
	free(t);
	if (many_failed) {
		fprintf(stderr, "sltool many: %ld of %u clients failed\n",
			(long)many_failed, n);
		return 1;
	}
	printf("sltool many: %u clients, %llu bytes each, all echoed\n", n,
	       (unsigned long long)bytes);
	return 0;
}

/* ---- idle clients -------------------------------------------------------------- */

static int cmd_hold(const char *name, unsigned n)
{
	HANDLE *h = calloc(n ? n : 1, sizeof *h);
	char buf[64];
	unsigned i;

	if (h == NULL)
		return 1;
	for (i = 0; i < n; i++)
		if ((h[i] = open_pipe(name, 60000)) == INVALID_HANDLE_VALUE)
			return 1;
	printf("held %u\n", n);
	fflush(stdout);
	while (_read(0, buf, sizeof buf) > 0)
		;
	for (i = 0; i < n; i++)
		CloseHandle(h[i]);
	free(h);
	return 0;
}

/* ---- the DACL a client sees ------------------------------------------------------ */

static int cmd_dacl(const char *name)
{
	HANDLE h = open_pipe(name, 10000);
	PSECURITY_DESCRIPTOR sd = NULL;
	PACL acl = NULL;
	LPSTR text = NULL;
	DWORD e;

	if (h == INVALID_HANDLE_VALUE)
		return 1;
	e = GetSecurityInfo(h, SE_KERNEL_OBJECT, DACL_SECURITY_INFORMATION,
			    NULL, NULL, &acl, NULL, &sd);
	CloseHandle(h);
	if (e != ERROR_SUCCESS ||
	    !ConvertSecurityDescriptorToStringSecurityDescriptorA(
		    sd, SDDL_REVISION_1, DACL_SECURITY_INFORMATION, &text,
		    NULL)) {
		fprintf(stderr, "sltool dacl %s: error %lu\n", name,
			(unsigned long)(e ? e : GetLastError()));
		return 1;
	}
	printf("%s\n", text);
	LocalFree(text);
	LocalFree(sd);
	return 0;
}

/* ---- the account's ROOT store --------------------------------------------------- */

/* The certificate in file name (PEM or DER) as DER; NULL on a failure. */
static BYTE *read_cert(const char *name, DWORD *len)
{
	wchar_t w[MAX_PATH];
	FILE *f = _wfopen(wide(name, w, MAX_PATH), L"rb");
	BYTE *text = malloc(65536), *der = NULL;
	size_t n = 0;

	if (f == NULL || text == NULL) {
		fprintf(stderr, "sltool: %s: cannot read it\n", name);
		goto out;
	}
	n = fread(text, 1, 65535, f);
	text[n] = '\0';
	if (n > 0 && text[0] == 0x30) {
		der = text; /* DER already */
		text = NULL;
		*len = (DWORD)n;
		goto out;
	}
	/* PEM: the base64 between the BEGIN and END lines. */
	*len = 0;
	if (!CryptStringToBinaryA((const char *)text, 0,
				  CRYPT_STRING_BASE64HEADER, NULL, len, NULL,
				  NULL) ||
	    (der = malloc(*len)) == NULL ||
	    !CryptStringToBinaryA((const char *)text, 0,
				  CRYPT_STRING_BASE64HEADER, der, len, NULL,
				  NULL)) {
		fprintf(stderr, "sltool: %s: not a PEM or DER certificate\n",
			name);
		free(der);
		der = NULL;
	}
out:
	if (f != NULL)
		fclose(f);
	free(text);
	return der;
}

static int cmd_root(const char *name, int add)
{
	HCERTSTORE st = NULL;
	PCCERT_CONTEXT c = NULL, found;
	DWORD len = 0;
	BYTE *der = read_cert(name, &len);
	int r = 1;

	if (der == NULL)
		return 1;
	st = CertOpenStore(CERT_STORE_PROV_SYSTEM_W, 0, 0,
			   CERT_SYSTEM_STORE_CURRENT_USER, L"ROOT");
	c = CertCreateCertificateContext(X509_ASN_ENCODING, der, len);
	if (st == NULL || c == NULL) {
		fprintf(stderr, "sltool: %s: %s: error %lu\n", name,
			st == NULL ? "the ROOT store" : "the certificate",
			(unsigned long)GetLastError());
		goto out;
	}
	if (add) {
		if (CertAddCertificateContextToStore(
			    st, c, CERT_STORE_ADD_REPLACE_EXISTING, NULL))
			r = 0;
	} else if ((found = CertFindCertificateInStore(
			    st, X509_ASN_ENCODING, 0, CERT_FIND_EXISTING, c,
			    NULL)) == NULL) {
		fprintf(stderr, "sltool: %s: not in the ROOT store\n", name);
		goto out;
	} else if (CertDeleteCertificateFromStore(found)) {
		r = 0; /* which frees found */
	}
	/* Written out now: wine 8 keeps the store open past CertCloseStore
	 * when a context found in it was deleted, and so never wrote the
	 * delete. */
	if (r == 0 && !CertControlStore(st, 0, CERT_STORE_CTRL_COMMIT, NULL))
		r = 1;
	if (r != 0)
		fprintf(stderr, "sltool: %s: %s: error %lu\n", name,
			add ? "add" : "delete", (unsigned long)GetLastError());
out:
	if (c != NULL)
		CertFreeCertificateContext(c);
	if (st != NULL)
		CertCloseStore(st, 0);
	free(der);
	return r;
}

/* ---- a child with overlapped standard handles ------------------------------ */

static HANDLE ov_in; /* our end of the child's standard input */

static DWORD WINAPI ovstdio_in(LPVOID arg)
{
	static char buf[CHUNK];
	int n;

	(void)arg;
	while ((n = _read(0, buf, sizeof buf)) > 0)
		if (io(ov_in, 1, buf, (DWORD)n, NULL) != n)
			break;
	CloseHandle(ov_in); /* the child reads its end */
	return 0;
}

/* A pipe: our end (overlapped) and the child's (overlapped, inherited). */
static int ov_pipe(const char *what, int child_reads, HANDLE *ours,
		   HANDLE *theirs)
{
	SECURITY_ATTRIBUTES sa = {sizeof sa, NULL, TRUE};
	char name[128];
	wchar_t w[128];

	snprintf(name, sizeof name, "\\\\.\\pipe\\sltool-ovstdio-%lu-%s",
		 (unsigned long)GetCurrentProcessId(), what);
	*ours = CreateNamedPipeW(wide(name, w, 128),
				 (child_reads ? PIPE_ACCESS_OUTBOUND
					      : PIPE_ACCESS_INBOUND) |
					 FILE_FLAG_OVERLAPPED |
					 FILE_FLAG_FIRST_PIPE_INSTANCE,
				 PIPE_TYPE_BYTE | PIPE_WAIT, 1, CHUNK, CHUNK,
				 0, NULL);
	if (*ours == INVALID_HANDLE_VALUE)
		return -1;
	*theirs = CreateFileW(w, child_reads ? GENERIC_READ : GENERIC_WRITE,
			      0, &sa, OPEN_EXISTING, FILE_FLAG_OVERLAPPED,
			      NULL);
	return *theirs == INVALID_HANDLE_VALUE ? -1 : 0;
}

static int cmd_ovstdio(int argc, char **argv)
{
	static char buf[CHUNK];
	wchar_t cmd[4096], *p = cmd;
	STARTUPINFOW si;
	PROCESS_INFORMATION pi;
	HANDLE out, cin, cout;
	DWORD code = 1;
	long n;
	int i;

	for (i = 0; i < argc; i++) {
		wchar_t w[1024];

		p += swprintf(p, (size_t)(cmd + 4096 - p), L"%s\"%ls\"",
			      i ? L" " : L"", wide(argv[i], w, 1024));
	}
	if (ov_pipe("in", 1, &ov_in, &cin) < 0 ||
	    ov_pipe("out", 0, &out, &cout) < 0) {
		fprintf(stderr, "sltool ovstdio: pipes: %lu\n",
			(unsigned long)GetLastError());
		return 1;
	}
	memset(&si, 0, sizeof si);
	si.cb = sizeof si;
	si.dwFlags = STARTF_USESTDHANDLES;
	si.hStdInput = cin;
	si.hStdOutput = cout;
	si.hStdError = GetStdHandle(STD_ERROR_HANDLE);
	if (!CreateProcessW(NULL, cmd, NULL, NULL, TRUE, 0, NULL, NULL, &si,
			    &pi)) {
		fprintf(stderr, "sltool ovstdio: %ls: %lu\n", cmd,
			(unsigned long)GetLastError());
		return 1;
	}
	CloseHandle(cin);
	CloseHandle(cout);
	_setmode(0, _O_BINARY);
	_setmode(1, _O_BINARY);
	CloseHandle(CreateThread(NULL, 0, ovstdio_in, NULL, 0, NULL));
	while ((n = io(out, 0, buf, sizeof buf, NULL)) > 0)
		if (_write(1, buf, (unsigned)n) != n)
			return 1;
	WaitForSingleObject(pi.hProcess, 30000);
	GetExitCodeProcess(pi.hProcess, &code);
	return (int)code;
}

/* All of p to h; 0 or -1. */
static int std_write(HANDLE h, const char *p, size_t n)
{
	while (n > 0) {
		DWORD w = 0;

		if (!WriteFile(h, p, (DWORD)n, &w, NULL) || w == 0)
			return -1;
		p += w;
		n -= w;
	}
	return 0;
}

static int cmd_stdecho(const char *mode)
{
	static char buf[CHUNK];
	HANDLE in = GetStdHandle(STD_INPUT_HANDLE),
	       out = GetStdHandle(STD_OUTPUT_HANDLE),
	       err = GetStdHandle(STD_ERROR_HANDLE);
	int drop = strcmp(mode, "done") == 0;
	DWORD n;

	if (strcmp(mode, "errs") == 0) {
		static char line[300000];

		memset(line, 'x', sizeof line);
		if (std_write(err, "first line\n", 11) < 0 ||
		    std_write(err, "bell\a and \033[31mred\r\n", 20) < 0 ||
		    std_write(err, line, sizeof line) < 0 ||
		    std_write(err, "\nlast, no newline", 17) < 0)
			return 1;
	} else if (std_write(err, "stdecho: start\n", 15) < 0) {
		return 1;
	}
	/* The end: 0 bytes, or the pipe broken (sluice closed it). */
	while (ReadFile(in, buf, sizeof buf, &n, NULL) && n > 0)
		if (!drop && std_write(out, buf, n) < 0)
			return 1;
	if (drop && std_write(out, "done\n", 5) < 0)
		return 1;
	return 0;
}

static int cmd_stdexit(int code, const char *text)
{
	HANDLE out = GetStdHandle(STD_OUTPUT_HANDLE);

	if (std_write(out, text, strlen(text)) < 0 ||
	    std_write(out, "\n", 1) < 0)
		return 1;
	return code;
}

/* SystemExtendedHandleInformation's records (not in mingw's headers). */
#define SL_SYSTEM_EXTENDED_HANDLE_INFORMATION 64
#define SL_STATUS_INFO_LENGTH_MISMATCH ((NTSTATUS)0xC0000004L)

struct handle_entry {
	PVOID object;
	ULONG_PTR pid;
	ULONG_PTR value;
	ULONG access;
	USHORT backtrace;
	USHORT type;
	ULONG attributes;
	ULONG reserved;
};

struct handle_table {
	ULONG_PTR count;
	ULONG_PTR reserved;
	struct handle_entry h[1];
};

static int cmd_handles(const char *pid_text)
{
	ULONG_PTR pid = (ULONG_PTR)strtoul(pid_text, NULL, 10);
	ULONG len = 1 << 20, got = 0;
	struct handle_table *t = NULL;
	unsigned long n = 0;
	NTSTATUS st;

	do {
		free(t);
		if ((t = malloc(len)) == NULL)
			return 1;
		st = NtQuerySystemInformation(
			(SYSTEM_INFORMATION_CLASS)SL_SYSTEM_EXTENDED_HANDLE_INFORMATION,
			t, len, &got);
		len *= 2;
	} while (st == SL_STATUS_INFO_LENGTH_MISMATCH && len <= (1u << 28));
	if (st < 0) {
		fprintf(stderr, "sltool: the handle table: status 0x%lx\n",
			(unsigned long)st);
		free(t);
		return 1;
	}
	for (ULONG_PTR i = 0; i < t->count; i++)
		if (t->h[i].pid == pid)
			n++;
	free(t);
	printf("%lu\n", n);
	return 0;
}

static const char *std_kind(HANDLE h)
{
	DWORD mode;

	if (GetConsoleMode(h, &mode))
		return "console";
	switch (GetFileType(h)) {
	case FILE_TYPE_DISK:
		return "disk";
	case FILE_TYPE_PIPE:
		return "pipe";
	case FILE_TYPE_CHAR:
		return "char";
	default:
		return "unknown";
	}
}

static int cmd_stdkind(const char *file)
{
	FILE *f = fopen(file, "wb");

	if (f == NULL) {
		fprintf(stderr, "sltool: %s: %s\n", file, strerror(errno));
		return 1;
	}
	fprintf(f, "in=%s out=%s\n", std_kind(GetStdHandle(STD_INPUT_HANDLE)),
		std_kind(GetStdHandle(STD_OUTPUT_HANDLE)));
	return fclose(f) == 0 ? 0 : 1;
}

/* The version resource's strings that sltool version prints. */
static const wchar_t *const version_keys[] = {
	L"CompanyName",	     L"FileDescription", L"FileVersion",
	L"InternalName",     L"LegalCopyright",	 L"OriginalFilename",
	L"ProductName",	     L"ProductVersion",	 L"BuildDate",
};

static int cmd_version(const char *file)
{
	wchar_t w[MAX_PATH], key[128];
	VS_FIXEDFILEINFO *fixed;
	struct {
		WORD lang, cp;
	} *tr;
	DWORD size, dummy;
	UINT len;
	void *data;
	size_t i;

	wide(file, w, MAX_PATH);
	if ((size = GetFileVersionInfoSizeW(w, &dummy)) == 0 ||
	    (data = malloc(size)) == NULL ||
	    !GetFileVersionInfoW(w, 0, size, data)) {
		fprintf(stderr, "sltool version %s: no version resource "
				"(error %lu)\n",
			file, (unsigned long)GetLastError());
		return 1;
	}
	if (!VerQueryValueW(data, L"\\", (void **)&fixed, &len) ||
	    len < sizeof *fixed ||
	    !VerQueryValueW(data, L"\\VarFileInfo\\Translation",
			    (void **)&tr, &len) ||
	    len < sizeof *tr) {
		fprintf(stderr, "sltool version %s: no fixed part or no "
				"translation\n",
			file);
		return 1;
	}
	printf("fixed file version: %u.%u.%u.%u\n",
	       (unsigned)HIWORD(fixed->dwFileVersionMS),
	       (unsigned)LOWORD(fixed->dwFileVersionMS),
	       (unsigned)HIWORD(fixed->dwFileVersionLS),
	       (unsigned)LOWORD(fixed->dwFileVersionLS));
	printf("fixed product version: %u.%u.%u.%u\n",
	       (unsigned)HIWORD(fixed->dwProductVersionMS),
	       (unsigned)LOWORD(fixed->dwProductVersionMS),
	       (unsigned)HIWORD(fixed->dwProductVersionLS),
	       (unsigned)LOWORD(fixed->dwProductVersionLS));
	for (i = 0; i < sizeof version_keys / sizeof *version_keys; i++) {
		wchar_t *v;
		char u[1024];

		swprintf(key, 128, L"\\StringFileInfo\\%04x%04x\\%ls",
			 tr->lang, tr->cp, version_keys[i]);
		if (!VerQueryValueW(data, key, (void **)&v, &len) || len == 0)
			continue;
		if (WideCharToMultiByte(CP_UTF8, 0, v, -1, u, sizeof u, NULL,
					NULL) == 0)
			return 1;
		printf("%ls: %s\n", version_keys[i], u);
	}
	free(data);
	return 0;
}

/* argv as UTF-8, from the wide command line; NULL on a failure. */
static char **utf8_argv(int *argc)
{
	wchar_t **wv = CommandLineToArgvW(GetCommandLineW(), argc);
	char **v;
	int i;

	if (wv == NULL || (v = calloc((size_t)*argc + 1, sizeof *v)) == NULL)
		return NULL;
	for (i = 0; i < *argc; i++) {
		int n = WideCharToMultiByte(CP_UTF8, 0, wv[i], -1, NULL, 0,
					    NULL, NULL);

		if (n <= 0 || (v[i] = malloc((size_t)n)) == NULL)
			return NULL;
		WideCharToMultiByte(CP_UTF8, 0, wv[i], -1, v[i], n, NULL, NULL);
	}
	LocalFree(wv);
	return v;
}

int main(int argc, char **argv)
{
	if ((argv = utf8_argv(&argc)) == NULL) {
		fprintf(stderr, "sltool: cannot read the command line\n");
		return 2;
	}
	if (argc == 3 && strcmp(argv[1], "sig") == 0) {
		HANDLE e = OpenEventA(EVENT_MODIFY_STATE, FALSE, argv[2]);

		if (e == NULL || !SetEvent(e)) {
			fprintf(stderr, "sltool sig %s: error %lu\n", argv[2],
				(unsigned long)GetLastError());
			return 1;
		}
		return 0;
	}
	if (argc == 3 && strcmp(argv[1], "cat") == 0)
		return cmd_cat(argv[2]);
	if (argc == 4 && strcmp(argv[1], "hold") == 0)
		return cmd_hold(argv[2], (unsigned)atoi(argv[3]));
	if (argc == 3 && strcmp(argv[1], "dacl") == 0)
		return cmd_dacl(argv[2]);
	if (argc == 3 && strcmp(argv[1], "root-add") == 0)
		return cmd_root(argv[2], 1);
	if (argc == 3 && strcmp(argv[1], "root-del") == 0)
		return cmd_root(argv[2], 0);
	if (argc == 3 && strcmp(argv[1], "echo") == 0)
		return serve(argv[2], echo_client);
	if (argc >= 3 && strcmp(argv[1], "ovstdio") == 0)
		return cmd_ovstdio(argc - 2, argv + 2);
	if (argc == 3 && strcmp(argv[1], "echo1") == 0)
		return cmd_echo1(argv[2]);
	if (argc == 3 && strcmp(argv[1], "collect") == 0)
		return serve(argv[2], collect_client);
	if (argc == 5 && strcmp(argv[1], "many") == 0)
		return cmd_many(argv[2], (unsigned)atoi(argv[3]),
				strtoull(argv[4], NULL, 10));
	if (argc <= 3 && argc >= 2 && strcmp(argv[1], "stdecho") == 0)
		return cmd_stdecho(argc == 3 ? argv[2] : "");
	if (argc == 4 && strcmp(argv[1], "stdexit") == 0)
		return cmd_stdexit(atoi(argv[2]), argv[3]);
	if (argc == 3 && strcmp(argv[1], "handles") == 0)
		return cmd_handles(argv[2]);
	if (argc == 3 && strcmp(argv[1], "stdkind") == 0)
		return cmd_stdkind(argv[2]);
	if (argc == 3 && strcmp(argv[1], "sleep") == 0) {
		Sleep((DWORD)atoi(argv[2]) * 1000);
		return 0;
	}
	if (argc == 3 && strcmp(argv[1], "version") == 0)
		return cmd_version(argv[2]);
	fprintf(stderr, "usage: sltool sig EVENT | cat PIPE | echo PIPE | "
			"echo1 PIPE | many PIPE N BYTES | collect PIPE | "
			"hold PIPE N | dacl PIPE | root-add CERT | "
			"root-del CERT | ovstdio PROG ARGS... | "
			"stdecho [done|errs] | stdexit N TEXT | "
			"sleep SECONDS | handles PID | stdkind FILE | "
			"version FILE\n");
	return 2;
}
