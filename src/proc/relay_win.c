/*
 * sluice relay's Windows part (proc.h): blocking sockets, a named pipe
 * opened for overlapped I/O, the standard handles whatever they are, and
 * a thread.
 *
 * One handle, two threads: I/O on a handle opened without
 * FILE_FLAG_OVERLAPPED is serialized by the I/O manager, so a ReadFile
 * waiting for the server's answer would hold back every WriteFile of the
 * other thread (a relay that never sends).  The pipe is opened overlapped
 * and each call waits for its own OVERLAPPED, with an event of the calling
 * thread's, as npiperelay and go-winio do.  Sockets need none of it: recv
 * on one thread and send on another is fine.  Only Windows shows the
 * serialization: wine 8 lets a WriteFile pass a waiting ReadFile on a
 * synchronous handle (test_relay's pipe tests pass with one there).
 *
 * The standard handles are what the parent gave: a console, a file, an
 * anonymous pipe, or a pipe or socket opened overlapped (WSL's interop
 * and libuv-based parents may give those).  ReadFile with no OVERLAPPED on
 * an overlapped handle is not defined to work, so each handle's mode is
 * asked first (FileModeInformation, as libuv's uv_pipe_open does): a
 * synchronous one is read and written plainly, an overlapped one as the
 * pipe is (test_relay's test_overlapped_stdio; wine 8 waits in either
 * call, so only Windows shows the difference).  Bytes pass untouched: the C runtime's text mode never sees
 * them.  A console's ReadFile ends at Ctrl+Z at the start of a line (0
 * bytes read), which is its end of input.
 */
#include "proc.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <winsock2.h>
#include <ws2tcpip.h>
#include <afunix.h>
#include <windows.h>
#include <winternl.h> /* NtQueryInformationFile */

#include "os/os.h"

/* Windows 7's console takes at most about 64 KB per call from its shared
 * heap (ERROR_NOT_ENOUGH_MEMORY beyond); smaller calls always work. */
#define SL_CONSOLE_IO_MAX 16384

struct sl_relay_conn {
	SOCKET sock; /* TCP and Unix sockets */
	HANDLE pipe; /* a named pipe, overlapped; else NULL */
};

/* One standard handle and how to use it. */
struct std_handle {
	HANDLE h;
	int overlapped; /* opened with FILE_FLAG_OVERLAPPED */
	int console;
	uint64_t offset; /* an overlapped file's position */
};

/*
 * One overlapped ReadFile or WriteFile, waited for: bytes moved, 0 at a
 * read's end (a zero-byte message, the other end gone, a file's end), or
 * -errno.  offset: a file's position, moved on; NULL for pipes.
 */
static long overlapped_io(HANDLE h, int wr, void *buf, DWORD len,
			  uint64_t *offset)
{
	static _Thread_local HANDLE ev;
	OVERLAPPED ov;
	DWORD n = 0, e = 0;
	BOOL ok;

	if (ev == NULL && (ev = CreateEventW(NULL, TRUE, FALSE, NULL)) == NULL)
		return sl_win_err(GetLastError());
	memset(&ov, 0, sizeof ov);
	ov.hEvent = ev;
	if (offset != NULL) {
		ov.Offset = (DWORD)*offset;
		ov.OffsetHigh = (DWORD)(*offset >> 32);
	}
	ok = wr ? WriteFile(h, buf, len, NULL, &ov)
		: ReadFile(h, buf, len, NULL, &ov);
	if (!ok && (e = GetLastError()) != ERROR_IO_PENDING)
		goto failed;
	if (!GetOverlappedResult(h, &ov, &n, TRUE)) {
		e = GetLastError();
		/* A message longer than the read (message read mode only):
		 * the bytes read are good, the rest comes next. */
		if (e != ERROR_MORE_DATA)
			goto failed;
	}
	if (offset != NULL)
		*offset += n;
	return (long)n;
failed:
	if (!wr && (e == ERROR_BROKEN_PIPE || e == ERROR_PIPE_NOT_CONNECTED ||
		    e == ERROR_HANDLE_EOF))
		return 0;
	return sl_win_err(e);
}

/* The same on a synchronous handle. */
static long plain_io(HANDLE h, int wr, void *buf, DWORD len)
{
	DWORD n = 0, e;

	if (wr ? WriteFile(h, buf, len, &n, NULL)
	       : ReadFile(h, buf, len, &n, NULL))
		return (long)n;
	e = GetLastError();
	if (!wr && (e == ERROR_BROKEN_PIPE || e == ERROR_PIPE_NOT_CONNECTED ||
		    e == ERROR_HANDLE_EOF))
		return 0;
	return sl_win_err(e);
}

/* ---- the endpoint ------------------------------------------------------- */

int sl_relay_init(void)
{
	WSADATA wd;
	int r = WSAStartup(MAKEWORD(2, 2), &wd);

	return r == 0 ? 0 : sl_win_err((unsigned long)r);
}

/* A blocking socket connected to sa, or -errno; not inherited. */
static int socket_connect(int family, const struct sockaddr *sa, int len,
			  SOCKET *out)
{
	SOCKET s = WSASocketW(family, SOCK_STREAM, 0, NULL, 0,
			      WSA_FLAG_NO_HANDLE_INHERIT);
	int r;

	if (s == INVALID_SOCKET)
		return sl_win_err((unsigned long)WSAGetLastError());
	if (connect(s, sa, len) != 0) {
		r = sl_win_err((unsigned long)WSAGetLastError());
		closesocket(s);
		return r;
	}
	*out = s;
	return 0;
}

/* AF_UNIX: Windows 10 1803 and later (WSAEAFNOSUPPORT before, and under
 * wine 8).  No abstract names. */
static int unix_connect(const struct sl_relay_target *t, SOCKET *out)
{
	SOCKADDR_UN sa;
	size_t n = strlen(t->path);

	if (t->abstract)
		return -EAFNOSUPPORT;
	if (n >= sizeof sa.sun_path)
		return -ENAMETOOLONG;
	memset(&sa, 0, sizeof sa);
	sa.sun_family = AF_UNIX;
	memcpy(sa.sun_path, t->path, n + 1);
	return socket_connect(AF_UNIX, (const struct sockaddr *)&sa,
			      (int)sizeof sa, out);
}

/*
 * CreateFile on the pipe; while every instance is busy, WaitNamedPipe
 * until one is free or busy_ms have passed (another client may still take
 * the instance first: then it waits again).  0, or -errno: -ENOENT when
 * no such pipe exists (any more), -ETIMEDOUT when none came free.
 */
static int pipe_connect(const char *path, unsigned long busy_ms, HANDLE *out)
{
	ULONGLONG end = GetTickCount64() + busy_ms;
	wchar_t *w = sl_os_wide(path);
	int r = -ETIMEDOUT;

	if (w == NULL)
		return -EINVAL;
	for (;;) {
		HANDLE h = CreateFileW(w, GENERIC_READ | GENERIC_WRITE, 0,
				       NULL, OPEN_EXISTING,
				       FILE_FLAG_OVERLAPPED |
					       SECURITY_SQOS_PRESENT |
					       SECURITY_IDENTIFICATION,
				       NULL);
		ULONGLONG now = GetTickCount64();
		DWORD e;

		if (h != INVALID_HANDLE_VALUE) {
			*out = h;
			r = 0;
			break;
		}
		e = GetLastError();
		if (e != ERROR_PIPE_BUSY) {
			r = sl_win_err(e);
			break;
		}
		if (now >= end)
			break;
		if (!WaitNamedPipeW(w, (DWORD)(end - now)) &&
		    GetLastError() != ERROR_SEM_TIMEOUT) {
			r = sl_win_err(GetLastError()); /* gone: -ENOENT */
			break;
		}
	}
	free(w);
	return r;
}

int sl_relay_connect(const struct sl_relay_target *t, unsigned long busy_ms,
		     sl_relay_conn **out)
{
	sl_relay_conn *c = calloc(1, sizeof *c);
	int r;

	if (c == NULL)
		return -ENOMEM;
	c->sock = INVALID_SOCKET;
	switch (t->kind) {
	case SL_RELAY_TCP:
		r = socket_connect(((const struct sockaddr *)t->addr)->sa_family,
				   t->addr, (int)t->addrlen, &c->sock);
		break;
	case SL_RELAY_UNIX:
		r = unix_connect(t, &c->sock);
		break;
	case SL_RELAY_PIPE:
		r = pipe_connect(t->path, busy_ms, &c->pipe);
		break;
	default:
		r = -EINVAL;
	}
	if (r < 0) {
		free(c);
		return r;
	}
	*out = c;
	return 0;
}

long sl_relay_recv(sl_relay_conn *c, void *buf, size_t len)
{
	int n;

	if (c->pipe != NULL)
		return overlapped_io(c->pipe, 0, buf, (DWORD)len, NULL);
	n = recv(c->sock, buf, (int)len, 0);
	return n >= 0 ? n : sl_win_err((unsigned long)WSAGetLastError());
}

int sl_relay_send(sl_relay_conn *c, const void *buf, size_t len)
{
	const char *p = buf;

	while (len > 0) {
		long n;

		if (c->pipe != NULL) {
			n = overlapped_io(c->pipe, 1, (void *)p, (DWORD)len,
					  NULL);
		} else {
			n = send(c->sock, p, (int)len, 0);
			if (n < 0)
				n = sl_win_err((unsigned long)WSAGetLastError());
		}
		if (n < 0)
			return (int)n;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/*
 * A pipe's half-close as sluice's streams make it (stream_win.c): the
 * flush first, so that the reader has taken every byte before the
 * zero-byte message arrives alone (behind unread bytes a byte-mode reader
 * may take it with them, and never see the end).  FlushFileBuffers waits
 * for the reader; here that is this thread's to wait.  A byte-type pipe
 * of another server never sees the message: its end comes when it closes.
 */
int sl_relay_shutdown(sl_relay_conn *c)
{
	long n;

	if (c->pipe == NULL)
		return shutdown(c->sock, SD_SEND) == 0
			       ? 0
			       : sl_win_err((unsigned long)WSAGetLastError());
	if (!FlushFileBuffers(c->pipe))
		return sl_win_err(GetLastError());
	n = overlapped_io(c->pipe, 1, (void *)"", 0, NULL);
	return n < 0 ? (int)n : 0;
}

/* ---- standard input and output ---------------------------------------- */

static struct std_handle std_in, std_out;

/* What the handle is and how to use it (see the top). */
static void std_init(struct std_handle *s, DWORD which)
{
	FILE_MODE_INFORMATION mode;
	IO_STATUS_BLOCK io;
	DWORD cmode;

	if (s->h != NULL)
		return;
	s->h = GetStdHandle(which);
	s->console = GetConsoleMode(s->h, &cmode);
	if (s->console || GetFileType(s->h) == FILE_TYPE_CHAR)
		return;
	memset(&mode, 0, sizeof mode);
	if (NtQueryInformationFile(s->h, &io, &mode, sizeof mode,
				   FileModeInformation) >= 0 &&
	    !(mode.Mode &
	      (FILE_SYNCHRONOUS_IO_ALERT | FILE_SYNCHRONOUS_IO_NONALERT)))
		s->overlapped = 1;
}

static long std_io(struct std_handle *s, int wr, void *buf, size_t len)
{
	DWORD n = len > 0x40000000 ? 0x40000000 : (DWORD)len;

	if (s->h == NULL || s->h == INVALID_HANDLE_VALUE)
		return wr ? -EBADF : 0; /* none given: nothing to read */
	if (s->console && n > SL_CONSOLE_IO_MAX)
		n = SL_CONSOLE_IO_MAX;
	if (!s->overlapped)
		return plain_io(s->h, wr, buf, n);
	return overlapped_io(s->h, wr, buf, n,
			     GetFileType(s->h) == FILE_TYPE_DISK ? &s->offset
								  : NULL);
}

long sl_relay_stdin_read(void *buf, size_t len)
{
	std_init(&std_in, STD_INPUT_HANDLE);
	return std_io(&std_in, 0, buf, len);
}

int sl_relay_stdout_write(const void *buf, size_t len)
{
	const char *p = buf;

	std_init(&std_out, STD_OUTPUT_HANDLE);
	while (len > 0) {
		long n = std_io(&std_out, 1, (void *)p, len);

		if (n < 0)
			return (int)n;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

void sl_relay_stdout_close(void)
{
	int type, tlen = (int)sizeof type;

	std_init(&std_out, STD_OUTPUT_HANDLE);
	if (std_out.h == NULL || std_out.h == INVALID_HANDLE_VALUE)
		return;
	/* A socket (which may be standard input too) ends by its shutdown,
	 * and is closed as a socket. */
	if (getsockopt((SOCKET)std_out.h, SOL_SOCKET, SO_TYPE, (char *)&type,
		       &tlen) == 0) {
		shutdown((SOCKET)std_out.h, SD_SEND);
		closesocket((SOCKET)std_out.h);
	} else {
		CloseHandle(std_out.h);
	}
	SetStdHandle(STD_OUTPUT_HANDLE, NULL);
	std_out.h = INVALID_HANDLE_VALUE;
}

/* ---- the thread ----------------------------------------------------------- */

struct sl_relay_thread {
	HANDLE h;
	void (*fn)(void *arg);
	void *arg;
};

static DWORD WINAPI thread_main(LPVOID arg)
{
	sl_relay_thread *t = arg;

	t->fn(t->arg);
	return 0;
}

int sl_relay_thread_start(sl_relay_thread **out, void (*fn)(void *arg),
			  void *arg)
{
	sl_relay_thread *t = calloc(1, sizeof *t);

	if (t == NULL)
		return -ENOMEM;
	t->fn = fn;
	t->arg = arg;
	t->h = CreateThread(NULL, 0, thread_main, t, 0, NULL);
	if (t->h == NULL) {
		int r = sl_win_err(GetLastError());

		free(t);
		return r;
	}
	*out = t;
	return 0;
}

int sl_relay_thread_wait(sl_relay_thread *t, unsigned long ms)
{
	return WaitForSingleObject(t->h, (DWORD)ms) == WAIT_OBJECT_0
		       ? 0
		       : -ETIMEDOUT;
}

void sl_relay_sleep_ms(unsigned ms)
{
	Sleep(ms);
}
