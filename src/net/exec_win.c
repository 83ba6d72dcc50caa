/*
 * Child processes for exec: upstreams, Windows (sl_exec_spawn in net.h).
 *
 * Pipes: three named pipes of sluice's own (sl_pipe_create_unique: a
 * fresh name, FILE_FLAG_FIRST_PIPE_INSTANCE, another name when one is
 * taken), one each for the child's stdin, stdout and stderr.  sluice
 * keeps the server instances (overlapped, on the loop's port); the child
 * gets client handles opened here (not overlapped: a command reads and
 * writes its standard handles synchronously).  The child's stdin and
 * stdout become one sl_stream over two handles (sl_stream_open_pipe2):
 * it reads stdout and writes stdin, and its half-close, once the child
 * has read every byte, closes stdin's instance: the child's EOF.  Two
 * pipes and not one duplex pipe as both handles: I/O on a synchronous
 * handle is serialized by the system, so a child reading its stdin in
 * one thread would block its writes to stdout in another; and a closed
 * pipe is an end every reader sees, where sluice's zero-byte message is
 * not (stream_win.c).  stderr is a pipe stream read on the loop into the log,
 * line by line as on POSIX (each line cut at SL_EXEC_LINE_MAX bytes).
 * A child that writes zero bytes to its stdout or stderr ends it for
 * sluice (these are sluice's message pipes, where a zero-byte message
 * is the end of stream); the C runtime never writes zero bytes.
 *
 * Spawning: CreateProcessW with PROC_THREAD_ATTRIBUTE_HANDLE_LIST naming
 * only the three client handles, suspended, then put in a job object of
 * its own with JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE before it runs, so
 * what it starts is in the job too and a kill (TerminateJobObject) ends
 * the whole tree, as a process group does on POSIX.  Where the list is
 * not honoured (a system or wine that ignores the attribute inherits
 * every inheritable handle), another loop's child could take this one's
 * pipe ends and hold its stdin open, so the client handles are made
 * inheritable only under spawn_lock, for the length of the
 * CreateProcessW; with the list honoured the lock costs little.  argv[0] is
 * found by CreateProcessW's own search (lpApplicationName NULL): the
 * program's directory, the current one, the system directories, PATH;
 * ".exe" is added to a name without an extension.
 *
 * The exit: RegisterWaitForSingleObject on the process handle (once),
 * whose callback, on a thread of the system's pool, posts exit_task to
 * the loop; the status is GetExitCodeProcess's code.  Once released
 * (the session is over) the child is the loop's alone: the wait is
 * unregistered and a timer of the loop looks at the process every
 * SL_EXEC_POLL_MS instead, so nothing posts to a loop that may be gone
 * (a stopping daemon frees its loops before sl_net_shutdown).  A child
 * still running exec_timeout after its session is killed:
 * TerminateJobObject with exit code SL_EXEC_KILL_CODE, logged "killed"
 * (Windows has no SIGTERM for a console-less child: there is no gentle
 * first step).  Every child is on one process-wide list until freed, so
 * sl_net_shutdown() can kill what a stopping daemon left behind.
 */
#include "win.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#define SL_EXEC_POLL_MS 50    /* a released child: its end looked for */
#define SL_EXEC_ERR_GRACE_MS 1000 /* stderr after the end, at most */
#define SL_EXEC_KILL_CODE 1  /* TerminateJobObject's exit code */
#define SL_EXEC_KILLED (-9)  /* the status of a child sluice killed */
#define SL_EXEC_CMDLINE_MAX 32768 /* CreateProcessW's limit, in chars */

struct sl_exec {
	sl_loop *loop;
	HANDLE proc, job, wait;
	DWORD pid;
	sl_stream *err; /* stderr's stream; NULL once closed */
	sl_task exit_task, free_task;
	sl_timer kill_timer, poll_timer, err_timer;
	volatile LONG posted; /* the wait's callback posted exit_task */
	unsigned task_ran : 1; /* ... and it has run */
	unsigned exited : 1, released : 1, freeing : 1, killed : 1;
	sl_exec_exit_cb exit_cb;
	void *data;
	char *name; /* "route R: exec:ARGV0 (pid N)", for log lines */
	sl_exec_link link;    /* every child not yet freed */
	sl_exec_lines lines;  /* stderr's line so far */
	char rbuf[4096];      /* stderr's reads */
};

/* Held while the client handles of one spawn are inheritable. */
static SRWLOCK spawn_lock = SRWLOCK_INIT;

/* An exit code, or SL_EXEC_KILLED for a child sluice killed. */
void sl_exec_status_text(int status, char *buf, size_t len)
{
	if (status >= 0)
		snprintf(buf, len, "exited %d", status);
	else
		snprintf(buf, len, "killed");
}

void *sl_exec_get_data(const sl_exec *x)
{
	return x->data;
}

long sl_exec_pid(const sl_exec *x)
{
	return (long)x->pid;
}

/* ---- stderr ------------------------------------------------------------- */

static void maybe_free(sl_exec *x);

static void err_close(sl_exec *x)
{
	if (x->err == NULL)
		return;
	sl_exec_lines_end(&x->lines, x->name, sl_loop_now(x->loop));
	sl_stream_close(x->err, NULL);
	x->err = NULL;
	sl_timer_stop(&x->err_timer);
}

static void err_alloc(sl_stream *s, size_t suggested, sl_buf *buf)
{
	sl_exec *x = sl_stream_get_data(s);

	(void)suggested;
	buf->base = x->rbuf;
	buf->len = sizeof x->rbuf;
}

static void err_read(sl_stream *s, ptrdiff_t nread, const sl_buf *buf)
{
	sl_exec *x = sl_stream_get_data(s);

	if (nread > 0) {
		sl_exec_lines_take(&x->lines, x->name, buf->base,
				   (size_t)nread, sl_loop_now(x->loop));
		return;
	}
	if (nread == 0)
		return;
	/* The end (every holder of the child's stderr closed it), or an
	 * error: what is left goes to the log. */
	err_close(x);
	maybe_free(x);
}

/* The child has ended and been released, but a process it started
 * still holds stderr: no longer waited for. */
static void on_err_grace(sl_timer *t)
{
	sl_exec *x = t->data;

	err_close(x);
	maybe_free(x);
}

/* ---- the end ------------------------------------------------------------- */

static void free_task(sl_task *t, int status)
{
	sl_exec *x = t->data;

	(void)status;
	sl_exec_link_del(&x->link);
	/* KILL_ON_JOB_CLOSE: what the child left running ends here. */
	CloseHandle(x->job);
	CloseHandle(x->proc);
	free(x->name);
	free(x);
}

/* Ended and released: free once stderr is read to its end (a process
 * the child started may hold it: SL_EXEC_ERR_GRACE_MS at most), after
 * this batch of events (a later event of it may still name x). */
static void maybe_free(sl_exec *x)
{
	if (!x->exited || !x->released || x->freeing)
		return;
	/* exit_task posted (the end seen by the poll or the kill first):
	 * it names x, so it runs first. */
	if (InterlockedCompareExchange(&x->posted, 0, 0) && !x->task_ran)
		return;
	if (x->err != NULL) {
		if (!sl_timer_active(&x->err_timer))
			sl_timer_start(&x->err_timer, SL_EXEC_ERR_GRACE_MS);
		return;
	}
	x->freeing = 1;
	sl_timer_stop(&x->kill_timer);
	sl_timer_stop(&x->poll_timer);
	sl_task_init(&x->free_task, free_task, x);
	sl_loop_defer(x->loop, &x->free_task);
}

/* No more callback from the wait; one that ran has returned. */
static void wait_drop(sl_exec *x)
{
	if (x->wait == NULL)
		return;
	UnregisterWaitEx(x->wait, INVALID_HANDLE_VALUE);
	x->wait = NULL;
}

/* The process has ended (on the loop). */
static void ended(sl_exec *x)
{
	char text[64];
	DWORD code = 0;
	int status;

	x->exited = 1;
	wait_drop(x);
	sl_timer_stop(&x->poll_timer);
	sl_timer_stop(&x->kill_timer);
	if (x->killed)
		status = SL_EXEC_KILLED;
	else if (GetExitCodeProcess(x->proc, &code))
		status = (int)(code & 0x7fffffff);
	else
		status = SL_EXEC_KILLED;
	sl_exec_status_text(status, text, sizeof text);
	if (status == 0 || x->killed)
		sl_info("%s %s", x->name, text);
	else
		sl_warn("%s %s", x->name, text);
	if (!x->released && x->exit_cb != NULL)
		x->exit_cb(x, status);
	maybe_free(x);
}

/* status: -ECANCELED when the loop is being freed; x then stays on the
 * list for sl_exec_shutdown. */
static void exit_task(sl_task *t, int status)
{
	sl_exec *x = t->data;

	if (status != 0)
		return;
	x->task_ran = 1;
	if (!x->exited)
		ended(x);
	else
		maybe_free(x);
}

/* A thread of the system's pool: the process has ended. */
static VOID CALLBACK on_wait(PVOID arg, BOOLEAN timed_out)
{
	sl_exec *x = arg;

	(void)timed_out;
	InterlockedExchange(&x->posted, 1);
	sl_loop_post(x->loop, &x->exit_task);
}

static void on_poll(sl_timer *t)
{
	sl_exec *x = t->data;

	if (WaitForSingleObject(x->proc, 0) == WAIT_OBJECT_0)
		ended(x);
	else
		sl_timer_start(&x->poll_timer, SL_EXEC_POLL_MS);
}

static void on_kill(sl_timer *t)
{
	sl_exec *x = t->data;

	if (x->exited)
		return;
	if (WaitForSingleObject(x->proc, 0) == WAIT_OBJECT_0) {
		ended(x);
		return;
	}
	sl_info("%s still running after its session: %s", x->name,
		"terminating its job");
	x->killed = 1;
	if (!TerminateJobObject(x->job, SL_EXEC_KILL_CODE))
		TerminateProcess(x->proc, SL_EXEC_KILL_CODE);
}

void sl_exec_release(sl_exec *x, uint64_t timeout_ms)
{
	x->released = 1;
	x->exit_cb = NULL;
	if (x->exited) {
		maybe_free(x);
		return;
	}
	/* From here the loop looks for the end itself (see the top). */
	wait_drop(x);
	if (!InterlockedCompareExchange(&x->posted, 0, 0))
		sl_timer_start(&x->poll_timer, SL_EXEC_POLL_MS);
	sl_timer_start(&x->kill_timer, timeout_ms);
}

/* ---- spawning ----------------------------------------------------------- */

/* One pipe: the server instance, attached to loop's port (*skip: in skip
 * mode), and the client end for the child, not inheritable yet
 * (child_writes: the child's stdout or stderr). */
static int pipe_pair(sl_loop *loop, int child_writes, HANDLE *srv, int *skip,
		     HANDLE *cli)
{
	char path[SL_EP_PATH_MAX];
	OVERLAPPED ov;
	DWORD e, n;
	int r;

	*srv = sl_pipe_create_unique(path, sizeof path, NULL, NULL, &r);
	if (*srv == INVALID_HANDLE_VALUE)
		return r;
	memset(&ov, 0, sizeof ov);
	if ((ov.hEvent = CreateEventW(NULL, TRUE, FALSE, NULL)) == NULL) {
		r = sl_win_err(GetLastError());
		goto fail;
	}
	/* Listening first, then the client: connected at once, or soon. */
	e = ConnectNamedPipe(*srv, &ov) ? 0 : GetLastError();
	*cli = CreateFileA(path, child_writes ? GENERIC_WRITE : GENERIC_READ,
			   0, NULL, OPEN_EXISTING, 0, NULL);
	if (*cli == INVALID_HANDLE_VALUE) {
		r = sl_win_err(GetLastError());
		if (e == ERROR_IO_PENDING) {
			CancelIoEx(*srv, &ov);
			GetOverlappedResult(*srv, &ov, &n, TRUE);
		}
		CloseHandle(ov.hEvent);
		goto fail;
	}
	if (e == ERROR_IO_PENDING)
		e = GetOverlappedResult(*srv, &ov, &n, TRUE) ? 0
							     : GetLastError();
	CloseHandle(ov.hEvent);
	if (e != 0 && e != ERROR_PIPE_CONNECTED) {
		r = sl_win_err(e);
		CloseHandle(*cli);
		goto fail;
	}
	if ((r = sl_loop_associate(loop, *srv)) < 0) {
		CloseHandle(*cli);
		goto fail;
	}
	*skip = sl_win_pipe_skip(*srv);
	return 0;
fail:
	CloseHandle(*srv);
	*srv = INVALID_HANDLE_VALUE;
	*cli = INVALID_HANDLE_VALUE;
	return r;
}

/* The job the child goes in: closing it ends all of it. */
static HANDLE job_new(void)
{
	JOBOBJECT_EXTENDED_LIMIT_INFORMATION li;
	HANDLE job = CreateJobObjectW(NULL, NULL);

	if (job == NULL)
		return NULL;
	memset(&li, 0, sizeof li);
	li.BasicLimitInformation.LimitFlags = JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE;
	if (!SetInformationJobObject(job, JobObjectExtendedLimitInformation,
				     &li, sizeof li)) {
		CloseHandle(job);
		return NULL;
	}
	return job;
}

/* The command line, UTF-16. */
static wchar_t *cmdline_of(char *const *argv, int *err)
{
	char *buf = malloc(SL_EXEC_CMDLINE_MAX * 3);
	wchar_t *w = NULL;
	int n;

	*err = -ENOMEM;
	if (buf == NULL)
		return NULL;
	if ((n = sl_win_cmdline(argv, buf, SL_EXEC_CMDLINE_MAX * 3)) < 0) {
		*err = n;
	} else if ((w = malloc(SL_EXEC_CMDLINE_MAX * sizeof *w)) != NULL &&
		   MultiByteToWideChar(CP_UTF8, 0, buf, -1, w,
				       SL_EXEC_CMDLINE_MAX) == 0) {
		*err = -E2BIG;
		free(w);
		w = NULL;
	}
	free(buf);
	return w;
}

/* CreateProcessW, suspended, with the three handles (in, out, err) its
 * only inheritance. */
static int create(wchar_t *cmd, HANDLE *h, PROCESS_INFORMATION *pi)
{
	LPPROC_THREAD_ATTRIBUTE_LIST attrs;
	STARTUPINFOEXW si;
	SIZE_T size = 0;
	DWORD e = 0;
	BOOL ok;
	int i;

	InitializeProcThreadAttributeList(NULL, 1, 0, &size);
	if ((attrs = malloc(size)) == NULL)
		return -ENOMEM;
	if (!InitializeProcThreadAttributeList(attrs, 1, 0, &size)) {
		free(attrs);
		return sl_win_err(GetLastError());
	}
	memset(&si, 0, sizeof si);
	si.StartupInfo.cb = sizeof si;
	si.StartupInfo.dwFlags = STARTF_USESTDHANDLES;
	si.StartupInfo.hStdInput = h[0];
	si.StartupInfo.hStdOutput = h[1];
	si.StartupInfo.hStdError = h[2];
	si.lpAttributeList = attrs;
	ok = UpdateProcThreadAttribute(attrs, 0,
				       PROC_THREAD_ATTRIBUTE_HANDLE_LIST, h,
				       3 * sizeof *h, NULL, NULL);
	if (ok) {
		AcquireSRWLockExclusive(&spawn_lock);
		for (i = 0; i < 3; i++)
			SetHandleInformation(h[i], HANDLE_FLAG_INHERIT,
					     HANDLE_FLAG_INHERIT);
		ok = CreateProcessW(NULL, cmd, NULL, NULL, TRUE,
				    CREATE_SUSPENDED |
					    CREATE_UNICODE_ENVIRONMENT |
					    CREATE_NO_WINDOW |
					    EXTENDED_STARTUPINFO_PRESENT,
				    NULL, NULL, &si.StartupInfo, pi);
		if (!ok)
			e = GetLastError();
		for (i = 0; i < 3; i++)
			SetHandleInformation(h[i], HANDLE_FLAG_INHERIT, 0);
		ReleaseSRWLockExclusive(&spawn_lock);
	} else {
		e = GetLastError();
	}
	DeleteProcThreadAttributeList(attrs);
	free(attrs);
	return ok ? 0 : sl_win_err(e);
}

static void close_handles(HANDLE *h, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (h[i] != INVALID_HANDLE_VALUE && h[i] != NULL)
			CloseHandle(h[i]);
}

int sl_exec_spawn(sl_loop *loop, const sl_exec_opts *o, sl_exec **out,
		  sl_stream **stream)
{
	/* srv: sluice's ends of stdin, stdout, stderr; cli: the child's. */
	HANDLE srv[3] = { INVALID_HANDLE_VALUE, INVALID_HANDLE_VALUE,
			  INVALID_HANDLE_VALUE },
	       cli[3] = { INVALID_HANDLE_VALUE, INVALID_HANDLE_VALUE,
			  INVALID_HANDLE_VALUE };
	size_t nlen = strlen(o->log_name) + strlen(o->argv[0]) + 48;
	PROCESS_INFORMATION pi;
	int skip[3], r = -ENOMEM;
	wchar_t *cmd = NULL;
	sl_exec *x;

	if ((x = calloc(1, sizeof *x)) == NULL ||
	    (x->name = malloc(nlen)) == NULL)
		goto fail;
	if ((cmd = cmdline_of(o->argv, &r)) == NULL)
		goto fail;
	for (int i = 0; i < 3; i++)
		if ((r = pipe_pair(loop, i > 0, &srv[i], &skip[i], &cli[i])) <
		    0)
			goto fail;
	if ((x->job = job_new()) == NULL) {
		r = sl_win_err(GetLastError());
		goto fail;
	}
	if ((r = create(cmd, cli, &pi)) < 0)
		goto fail;
	free(cmd);
	cmd = NULL;
	close_handles(cli, 3);
	/* In the job before it runs a single instruction. */
	if (!AssignProcessToJobObject(x->job, pi.hProcess)) {
		r = sl_win_err(GetLastError());
		TerminateProcess(pi.hProcess, SL_EXEC_KILL_CODE);
		CloseHandle(pi.hThread);
		CloseHandle(pi.hProcess);
		goto fail;
	}
	ResumeThread(pi.hThread);
	CloseHandle(pi.hThread);

	x->loop = loop;
	x->proc = pi.hProcess;
	x->pid = pi.dwProcessId;
	x->exit_cb = o->exit_cb;
	x->data = o->data;
	snprintf(x->name, nlen, "%s: exec:%s (pid %lu)", o->log_name,
		 o->argv[0], (unsigned long)x->pid);
	sl_timer_init(loop, &x->kill_timer, on_kill, x);
	sl_timer_init(loop, &x->poll_timer, on_poll, x);
	sl_timer_init(loop, &x->err_timer, on_err_grace, x);
	sl_task_init(&x->exit_task, exit_task, x);
	sl_exec_link_add(&x->link, x);
	/* The child runs: from here a failure kills it at once and x
	 * frees itself, instead of undoing. */
	r = sl_stream_open_pipe(loop, srv[2], skip[2], "exec:stderr", &x->err);
	srv[2] = INVALID_HANDLE_VALUE;
	if (r == 0) {
		sl_stream_set_data(x->err, x);
		if ((r = sl_stream_read_start(x->err, err_alloc, err_read)) <
		    0)
			err_close(x);
	}
	if (r == 0 && !RegisterWaitForSingleObject(&x->wait, x->proc, on_wait,
						   x, INFINITE,
						   WT_EXECUTEONLYONCE)) {
		x->wait = NULL;
		r = sl_win_err(GetLastError());
	}
	if (r == 0) {
		r = sl_stream_open_pipe2(loop, srv[1], skip[1], srv[0],
					 skip[0], "exec:stdio", stream);
		srv[0] = srv[1] = INVALID_HANDLE_VALUE;
	}
	if (r < 0) {
		close_handles(srv, 3);
		sl_exec_release(x, 0);
		return r;
	}
	*out = x;
	return 0;
fail:
	free(cmd);
	close_handles(srv, 3);
	close_handles(cli, 3);
	if (x != NULL) {
		if (x->job != NULL)
			CloseHandle(x->job);
		free(x->name);
	}
	free(x);
	return r;
}

/* ---- the daemon's end --------------------------------------------------- */

/*
 * Called by sl_net_shutdown(), once no loop runs: every child still on
 * the list is killed with its job and waited for (a second at most),
 * and its handles closed.  The loops are gone, so neither streams nor
 * timers are touched (stderr's stream goes with the process).  A child
 * still unreleased has its wait registered, whose callback posts to its
 * loop: sessions release their child as they close, before their loop
 * is freed (the proxy's drain), so none is left here unreleased.
 */
void sl_exec_shutdown(void)
{
	sl_exec_link *all = sl_exec_links_take(), *l;

	while ((l = all) != NULL) {
		sl_exec *x = l->x;

		all = l->next;
		wait_drop(x);
		if (!x->exited &&
		    WaitForSingleObject(x->proc, 0) != WAIT_OBJECT_0) {
			TerminateJobObject(x->job, SL_EXEC_KILL_CODE);
			WaitForSingleObject(x->proc, 1000);
		}
		CloseHandle(x->job);
		CloseHandle(x->proc);
		free(x->name);
		free(x);
	}
}
