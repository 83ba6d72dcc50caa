/*
 * Streams over IOCP: TCP sockets (WSARecv/WSASend, ConnectEx) and named
 * pipes (ReadFile/WriteFile, CreateFile) are both overlapped handles bound
 * to the loop's completion port: one completion path, two ways to open.
 *
 * Lifetime (the IOCP rules of DESIGN.md): every operation handed to the
 * kernel counts in s->pending, and its sl_op (in the stream, or in the
 * caller's sl_write_req) is only reused or freed after its completion was
 * dequeued.  Closing cancels (closesocket, or CancelIoEx then CloseHandle)
 * and then waits for those completions; the stream is freed when the last
 * one has been consumed and every callback has run.
 *
 * Sockets are in skip mode where the provider allows it (socket_win.c): a
 * WSARecv or WSASend that succeeds at once queues no packet, and
 * sl_op_started() has the loop run its completion instead.  Pipe handles
 * are in skip mode too (sl_win_pipe_skip, once attached: the client's
 * from CreateFile, the server's instances from the listener), and every
 * ReadFile and WriteFile that queues a packet goes through sl_op_started:
 * the zero-byte read, the writes, the half-close's zero-byte write.  The
 * sized read after PeekNamedPipe (read_now) stays out: its event has the
 * low bit set, so it never queues a packet, skip mode or not.
 *
 * Which at-once results queue a packet in skip mode (the documented rule:
 * the port is skipped for a request that returns success at once; an
 * error status queues none in either mode):
 * - TRUE (success): none.
 * - ERROR_MORE_DATA (STATUS_BUFFER_OVERFLOW, a warning: a message longer
 *   than the read, message read mode only, which sluice's own handles
 *   never use): Windows queues its packet, as for a pending read.  Wine 8
 *   does not: its server (async_set_result) skips the port for any
 *   at-once status that is not an error, warnings included, as seen on a
 *   zero-byte read of a 70000-byte message (0x80000005, no packet).  Under
 *   wine it is taken as an at-once success, elsewhere as pending
 *   (post_read); only Windows can show the packet.
 * Seen under wine 8: SetFileCompletionNotificationModes succeeds on both
 * ends of a named pipe and is honoured: ReadFile (also of 0 bytes) with
 * bytes there and WriteFile that fits (also of 0 bytes) return TRUE and
 * queue no packet; a read that waits completes with a packet as before.
 *
 * Reading: a zero-byte read waits for data without holding a buffer (an
 * idle connection costs no buffer, as with readiness loops); when it
 * completes, the bytes there are read into the buffer the caller's alloc
 * callback gives at that moment.  Sockets: a zero-byte WSARecv, then
 * non-blocking recv().  Pipes: a one-byte ReadFile into the stream
 * itself, which stays pending on an empty pipe until data or a zero-byte
 * message arrives; then PeekNamedPipe for how much more is there and a
 * ReadFile of that much into the caller's buffer (after the byte), which
 * completes at once; its OVERLAPPED's event has the low bit set, so no
 * packet is queued for it.  The waiting read takes one byte, not zero,
 * because a zero-byte read cannot tell the end from data: a zero-byte
 * message completes it with 0 bytes as data does (and under wine 8 is
 * consumed by it), and PeekNamedPipe shows an empty pipe and one holding a
 * zero-length message alike.  A read of one byte completes with 0 bytes
 * only for the zero-byte message: the end, unambiguously.  (A zero-byte
 * read, and the rule "it completed and the pipe holds nothing, so this is
 * the end", saw ends that were not there under wine when both directions
 * of a pipe were busy: TLS over a pipe, test_tls test_tls_over_local.)
 *
 * Half-close on a pipe: byte-mode named pipes have no shutdown of one
 * direction.  sluice's pipe servers are message-type pipes read as bytes,
 * where a zero-byte write arrives as a zero-byte read: that is the end of
 * stream both ways (the convention of go-winio's CloseWrite, which Docker's
 * pipes use).  A byte-type pipe of another server never sees it.
 *
 * That zero-byte message goes last, after every write has completed and
 * the reader has taken every byte (go-winio: FlushFileBuffers, then the
 * zero-byte write).  Queued behind unread bytes it can be lost: a reader
 * in byte mode may take "abc", "" and a later "def" as one read of 6
 * (wine 8 does), and the end would never be seen.  FlushFileBuffers
 * blocks until the reader has read, which a loop thread must never do;
 * libuv (uv__pipe_shutdown) first asks NtQueryInformationFile for
 * FilePipeLocalInformation, where WriteQuotaAvailable == OutboundQuota
 * means the other end has read everything, and only otherwise flushes on
 * another thread.  sluice does the same: the quick question first, then,
 * when the answer is no, FlushFileBuffers on a thread of its own for this
 * one flush (on a duplicate of the handle, which that thread closes),
 * whose end comes back to the loop as a packet (flush_op); then the
 * zero-byte write.  The question alone cannot replace the flush: a read
 * pending on the other end takes its size off WriteQuotaAvailable (as
 * Cygwin found), so a reader that always keeps a read posted (go-winio's,
 * .NET's, sluice's own) never looks drained although it has taken
 * everything.  Closing the stream cancels the flush (CancelSynchronousIo,
 * again every 10 ms until its packet came: the thread may not have
 * entered the flush yet), and the stream waits for that packet like any
 * operation.  Wine 8 flushes and cancels as Windows does (FlushFileBuffers
 * waits for the reader; CancelSynchronousIo ends it).
 *
 * A pipe stream over two handles (sl_stream_open_pipe2: an exec: child's
 * stdout read, its stdin written) ends its writing side the same way,
 * but after the flush it closes the handle written to instead of the
 * zero-byte write.  A closed pipe is the end to every reader (ReadFile
 * fails with ERROR_BROKEN_PIPE, which the C runtime's read returns as
 * 0); a zero-byte message only to one that takes a read of 0 bytes as
 * the end (the C runtime's read does, and wine 8 gives a byte-mode
 * ReadFile those 0 bytes; a reader that first asks PeekNamedPipe how
 * much is there sees nothing and waits on).  Nobody else writes to that
 * pipe, so nothing is lost by closing it.
 */
#include "stream_win.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <winternl.h> /* NtQueryInformationFile */

#include "resolver.h"

#define SL_READS_PER_EVENT 4
#define SL_READ_SUGGEST 65536
/* STATUS_BUFFER_OVERFLOW: a message longer than the read; the bytes read
 * are good (message-type pipe read as bytes never does it; defensive). */
#define SL_STATUS_BUFFER_OVERFLOW 0x80000005u
/* At close, how often a flush still running is cancelled again. */
#define SL_PIPE_FLUSH_CANCEL_MS 10

/* ntifs.h's FILE_PIPE_LOCAL_INFORMATION (FilePipeLocalInformation, 24),
 * which mingw's winternl.h lacks. */
struct pipe_local_info {
	ULONG type, config, max_instances, cur_instances;
	ULONG in_quota, read_avail, out_quota, write_quota_avail;
	ULONG state, end;
};
#define SL_FILE_PIPE_LOCAL_INFO 24

/* A request's operation lives in its implementation slots. */
_Static_assert(sizeof(sl_op) <= sizeof(((sl_write_req *)0)->impl),
	       "sl_write_req.impl must hold an sl_op");

static sl_op *req_op(sl_write_req *req)
{
	return (sl_op *)(void *)req->impl;
}

static void stream_free(sl_stream *s)
{
	free(s->b.addrs);
	sl_net_qfree(s, sizeof *s, 0);
}

/* ---- names ----------------------------------------------------------------- */

/* What the stream keeps of its peer's (peer != 0) or its own address;
 * *len 0 when nothing. */
static const struct sockaddr *sockaddr_of(const sl_stream *s, int peer,
					  int *len)
{
	*len = peer ? s->peer_len : s->local_len;
	return (const struct sockaddr *)(peer ? &s->peer : &s->local);
}

int sl_os_stream_name(const sl_stream *s, int peer, char *buf, size_t len)
{
	const struct sockaddr *sa;
	int sl;

	if (s->b.kind == SL_EP_PIPE) {
		snprintf(buf, len, "pipe:%s", s->path);
		return 0;
	}
	sa = sockaddr_of(s, peer, &sl);
	if (sl <= 0)
		return -ENOTCONN;
	return sl_sockaddr_name(sa, sl, buf, len);
}

int sl_os_stream_addr(const sl_stream *s, int peer, sl_ipaddr *out)
{
	const struct sockaddr *sa;
	int sl;

	if (s->b.kind != SL_EP_TCP)
		return 0;
	sa = sockaddr_of(s, peer, &sl);
	if (sl <= 0)
		return -ENOTCONN;
	sl_sockaddr_ip(sa, (size_t)sl, out);
	return 0;
}

/* ---- deferred completions ------------------------------------------------ */

static void read_pipe(sl_stream *s);

int sl_stream_maybe_free(sl_stream *s)
{
	if (!(s->b.flags & ST_CLOSING) || s->pending > 0 ||
	    (s->b.flags & ST_TASK_QUEUED) || s->b.connect_ready ||
	    s->b.shutdown_ready)
		return 0;
	if (s->b.close_cb != NULL) {
		sl_close_cb cb = s->b.close_cb;

		s->b.close_cb = NULL;
		cb(s);
	}
	stream_free(s);
	return 1;
}

static void stream_task(sl_task *t, int status)
{
	sl_stream *s = t->data;

	s->b.flags &= ~ST_TASK_QUEUED;
	if (s->b.connect_ready) {
		sl_connect_cb cb = s->b.connect_cb;

		s->b.connect_ready = 0;
		s->b.connect_cb = NULL;
		if (cb != NULL)
			cb(s, s->b.connect_status);
	}
	if (s->b.shutdown_ready && s->writes == 0) {
		sl_shutdown_cb cb = s->b.shutdown_cb;

		s->b.shutdown_ready = 0;
		s->b.shutdown_cb = NULL;
		if (cb != NULL)
			cb(s, s->b.shutdown_status);
	}
	if (status == 0 && !(s->b.flags & ST_CLOSING) &&
	    (s->b.flags & ST_READING) && s->b.kind == SL_EP_PIPE &&
	    !(s->b.flags & ST_READ_POSTED))
		read_pipe(s);
	sl_stream_maybe_free(s);
}

/* ---- reading ------------------------------------------------------------- */

static void on_read_done(sl_loop *loop, sl_op *op, int err, size_t n);

static void post_read(sl_stream *s)
{
	BOOL ok;
	DWORD e;

	if (s->b.flags & (ST_READ_POSTED | ST_CLOSING | ST_EOF))
		return;
	sl_op_init(&s->read_op, on_read_done, s);
	if (s->b.kind == SL_EP_TCP) {
		WSABUF b = {0, NULL};
		DWORD fl = 0;

		ok = WSARecv(s->sock, &b, 1, NULL, &fl, &s->read_op.ov,
			     NULL) == 0;
		e = ok ? 0 : (DWORD)WSAGetLastError();
		ok = sl_op_started(s->b.loop, &s->read_op, ok, e, s->skip) ==
		     0;
	} else {
		ok = ReadFile(s->pipe, &s->first, 1, NULL, &s->read_op.ov);
		e = ok ? 0 : GetLastError();
		/* ERROR_MORE_DATA is STATUS_BUFFER_OVERFLOW, a warning: its
		 * packet is queued as for a pending read, also in skip mode;
		 * wine 8 queues none in skip mode (see the top). */
		if (!ok && e == ERROR_MORE_DATA) {
			if (s->skip && sl_under_wine())
				ok = TRUE; /* at once, no packet */
			else
				e = ERROR_IO_PENDING;
		}
		ok = sl_op_started(s->b.loop, &s->read_op, ok, e, s->skip) ==
		     0;
	}
	if (!ok) {
		/* Report it from the loop like any completion: sockets find
		 * the error again with recv(); pipes keep it. */
		s->read_err = sl_win_err(e);
		if (s->read_err == -EPIPE)
			s->read_err = SL_EOF;
		if (sl_win_post_hook(s->b.loop, &s->read_op, 0, 0) < 0)
			return; /* cannot happen but out of memory */
	}
	s->pending++;
	s->b.flags |= ST_READ_POSTED;
}

static void read_end(sl_stream *s, int err)
{
	sl_buf b = {NULL, 0};

	s->b.flags &= ~ST_READING;
	if (err == SL_EOF)
		s->b.flags |= ST_EOF;
	s->b.read_cb(s, err, &b);
}

static void read_socket(sl_stream *s)
{
	int i;

	for (i = 0; i < SL_READS_PER_EVENT; i++) {
		sl_buf buf = {NULL, 0};
		int n;

		s->b.alloc_cb(s, SL_READ_SUGGEST, &buf);
		if (buf.base == NULL || buf.len == 0) {
			s->b.flags &= ~ST_READING;
			s->b.read_cb(s, -ENOBUFS, &buf);
			return;
		}
		n = recv(s->sock, buf.base,
			 buf.len > INT_MAX ? INT_MAX : (int)buf.len, 0);
		if (n > 0) {
			s->b.read_cb(s, n, &buf);
		} else if (n == 0) {
			s->b.flags &= ~ST_READING;
			s->b.flags |= ST_EOF;
			s->b.read_cb(s, SL_EOF, &buf);
			return;
		} else {
			int e = WSAGetLastError();

			if (e == WSAEWOULDBLOCK) {
				s->b.read_cb(s, 0, &buf);
				break;
			}
			s->b.flags &= ~ST_READING;
			s->b.read_cb(s, sl_win_err((unsigned long)e), &buf);
			return;
		}
		if ((s->b.flags & (ST_READING | ST_CLOSING)) != ST_READING)
			return;
	}
	if ((s->b.flags & (ST_READING | ST_CLOSING)) == ST_READING)
		post_read(s);
}

/* Bytes of the pipe read now (they are there), into buf: how many, or
 * -errno (SL_EOF: the other end closed). */
static ptrdiff_t read_now(sl_stream *s, char *buf, DWORD len)
{
	/* One event per loop thread, for the case the read would wait
	 * (never seen: PeekNamedPipe said the bytes are there). */
	static _Thread_local HANDLE ev;
	OVERLAPPED ov;
	DWORD got = 0, e = 0;
	int r;

	if (ev == NULL && (ev = CreateEventA(NULL, TRUE, FALSE, NULL)) == NULL)
		return sl_win_err(GetLastError());
	memset(&ov, 0, sizeof ov);
	/* The low bit: no completion packet for this read. */
	ov.hEvent = (HANDLE)((ULONG_PTR)ev | 1);
	if (!ReadFile(s->pipe, buf, len, NULL, &ov))
		e = GetLastError();
	if ((e == 0 || e == ERROR_IO_PENDING) &&
	    !GetOverlappedResult(s->pipe, &ov, &got, TRUE))
		e = GetLastError();
	else if (e == ERROR_IO_PENDING)
		e = 0;
	/* A message longer than buf (message read mode): the rest is read
	 * next time. */
	if (e == ERROR_MORE_DATA) {
		got = (DWORD)ov.InternalHigh;
		e = 0;
	}
	if (e != 0) {
		r = sl_win_err(e);
		return r == -EPIPE ? SL_EOF : r;
	}
	return (ptrdiff_t)got;
}

/* Hand out what the pipe holds (see the top), then wait again. */
static void read_pipe(sl_stream *s)
{
	int i;

	for (i = 0; i < SL_READS_PER_EVENT; i++) {
		sl_buf buf = {NULL, 0};
		DWORD avail = 0, want;
		ptrdiff_t n = 0;
		int held = s->first_n;

		if (!held && s->read_err != 0) {
			int err = s->read_err;

			s->read_err = 0;
			read_end(s, err);
			return;
		}
		if (s->read_err == 0 &&
		    !PeekNamedPipe(s->pipe, NULL, 0, NULL, &avail, NULL)) {
			int err = sl_win_err(GetLastError());

			/* The other end closed: its bytes were all read. */
			s->read_err = err == -EPIPE ? SL_EOF : err;
			avail = 0;
		}
		if (!held) {
			if (s->read_err != 0)
				continue; /* handed out at the top */
			if (avail == 0)
				break; /* all taken: wait again */
		}
		s->b.alloc_cb(s, avail + (DWORD)held < SL_READ_SUGGEST
					 ? avail + (DWORD)held
					 : SL_READ_SUGGEST,
			      &buf);
		if (buf.base == NULL || buf.len == 0) {
			s->b.flags &= ~ST_READING;
			s->b.read_cb(s, -ENOBUFS, &buf);
			return;
		}
		if (held) {
			buf.base[0] = (char)s->first;
			s->first_n = 0;
		}
		want = buf.len - (size_t)held < avail
			       ? (DWORD)(buf.len - (size_t)held)
			       : avail;
		if (want > 0) {
			n = read_now(s, buf.base + held, want);
			if (n < 0) {
				/* Handed out after the byte held, if any. */
				if (s->read_err == 0)
					s->read_err = (int)n;
				n = 0;
			}
		}
		n += held;
		if (n == 0) {
			s->b.read_cb(s, 0, &buf); /* the buffer back */
			continue; /* the error, at the top */
		}
		s->b.read_cb(s, n, &buf);
		if ((s->b.flags & (ST_READING | ST_CLOSING)) != ST_READING)
			return;
	}
	if ((s->b.flags & (ST_READING | ST_CLOSING)) != ST_READING)
		return;
	if (s->read_err != 0 || s->first_n)
		sl_stream_schedule(s); /* the rest from the task */
	else
		post_read(s);
}

static void on_read_done(sl_loop *loop, sl_op *op, int err, size_t n)
{
	sl_stream *s = op->data;

	(void)loop;
	s->pending--;
	s->b.flags &= ~ST_READ_POSTED;
	if (s->b.flags & ST_CLOSING) {
		sl_stream_maybe_free(s);
		return;
	}
	if (s->b.kind == SL_EP_TCP) {
		s->read_err = 0;
		if (!(s->b.flags & ST_READING))
			return; /* the data waits in the kernel */
		if (err != 0) {
			read_end(s, err);
			return;
		}
		read_socket(s);
		return;
	}
	/* Pipe: the one-byte read is over (its byte, or the end, kept for
	 * the next start when nobody reads now).  A message longer than the
	 * read (message read mode) is STATUS_BUFFER_OVERFLOW: the byte is
	 * good.  Success with 0 bytes: a zero-byte message, the end. */
	if (sl_op_ntstatus(op) == SL_STATUS_BUFFER_OVERFLOW)
		err = 0;
	if (err == -EPIPE)
		err = SL_EOF; /* the other end closed */
	if (err == 0 && n == 0)
		err = SL_EOF; /* a zero-byte message: its half-close */
	if (err != 0) {
		if (s->read_err == 0)
			s->read_err = err;
	} else {
		s->first_n = 1;
	}
	if (s->b.flags & ST_READING)
		read_pipe(s);
}

int sl_stream_read_start(sl_stream *s, sl_alloc_cb alloc, sl_read_cb cb)
{
	if (s == NULL || alloc == NULL || cb == NULL)
		return -EINVAL;
	if (s->b.flags & (ST_CLOSING | ST_CONNECTING))
		return -EINVAL;
	if (s->b.flags & ST_EOF)
		return -EPIPE;
	if (!sl_stream_read_set(&s->b, alloc, cb))
		return 0;
	if (s->b.kind == SL_EP_PIPE) {
		/* A zero-byte read that completed, or an end, before a stop
		 * goes out from the task, never from inside this call. */
		if (!(s->b.flags & ST_READ_POSTED)) {
			if (s->first_n || s->read_err != 0)
				sl_stream_schedule(s);
			else
				post_read(s);
		}
		return 0;
	}
	post_read(s);
	return 0;
}

int sl_stream_read_stop(sl_stream *s)
{
	if (s == NULL)
		return -EINVAL;
	/* A posted read stays with the kernel; the bytes it found wait
	 * there for the next start (a pipe's one byte in s->first). */
	s->b.flags &= ~ST_READING;
	return 0;
}

/* ---- writing ------------------------------------------------------------- */

static void do_shutdown(sl_stream *s);

/* The handle a pipe stream writes to, and whether it is in skip mode. */
static HANDLE out_handle(const sl_stream *s)
{
	return s->wpipe != INVALID_HANDLE_VALUE ? s->wpipe : s->pipe;
}

static int out_skip(const sl_stream *s)
{
	return s->wpipe != INVALID_HANDLE_VALUE ? s->wskip : s->skip;
}

static void on_write_done(sl_loop *loop, sl_op *op, int err, size_t n)
{
	sl_write_req *req = op->data;
	sl_stream *s = req->stream;

	(void)loop;
	s->pending--;
	if (err == 0 && !(s->b.flags & ST_CLOSING) &&
	    n < req->len - req->done) {
		/* A short overlapped write: send the rest the same way. */
		BOOL ok;
		DWORD e;

		req->done += n;
		sl_op_init(op, on_write_done, req);
		if (s->b.kind == SL_EP_TCP) {
			WSABUF b = {(ULONG)(req->len - req->done),
				    (char *)req->buf + req->done};

			ok = WSASend(s->sock, &b, 1, NULL, 0, &op->ov, NULL) ==
			     0;
			e = ok ? 0 : (DWORD)WSAGetLastError();
			ok = sl_op_started(s->b.loop, op, ok, e, s->skip) == 0;
		} else {
			ok = WriteFile(out_handle(s), req->buf + req->done,
				       (DWORD)(req->len - req->done), NULL,
				       &op->ov);
			e = ok ? 0 : GetLastError();
			ok = sl_op_started(s->b.loop, op, ok, e,
					   out_skip(s)) == 0;
		}
		if (ok) {
			s->pending++;
			return;
		}
		err = sl_win_err(e);
	} else if (err == 0) {
		req->done = req->len;
	}
	if (s->b.flags & ST_CLOSING)
		err = -ECANCELED;
	if (err != 0 && s->b.write_err == 0)
		s->b.write_err = err;
	s->writes--;
	s->b.wq_bytes -= req->len;
	req->cb(req, err);
	if ((s->b.flags & ST_SHUT_WANTED) && s->writes == 0 &&
	    !(s->b.flags & ST_CLOSING)) {
		if (s->b.write_err != 0) {
			sl_stream_shutdown_fail(&s->b, s->b.write_err);
			sl_stream_schedule(s);
		} else {
			do_shutdown(s);
		}
	}
	sl_stream_maybe_free(s);
}

int sl_stream_write(sl_stream *s, sl_write_req *req, const void *buf,
		    size_t len, sl_write_cb cb)
{
	sl_op *op;
	BOOL ok;
	DWORD e;

	if (s == NULL || req == NULL || cb == NULL || len > 0x7fffffffu)
		return -EINVAL;
	if (s->b.flags & (ST_CLOSING | ST_CONNECTING))
		return -EINVAL;
	if (s->b.flags & (ST_SHUT_WANTED | ST_SHUT_DONE))
		return -EPIPE;
	if (s->b.write_err != 0)
		return s->b.write_err;
	sl_write_req_init(req, s, buf, len, cb);
	op = req_op(req);
	sl_op_init(op, on_write_done, req);
	if (s->b.kind == SL_EP_TCP) {
		WSABUF b = {(ULONG)len, (char *)buf};

		ok = WSASend(s->sock, &b, 1, NULL, 0, &op->ov, NULL) == 0;
		e = ok ? 0 : (DWORD)WSAGetLastError();
		ok = sl_op_started(s->b.loop, op, ok, e, s->skip) == 0;
	} else {
		ok = WriteFile(out_handle(s), buf, (DWORD)len, NULL, &op->ov);
		e = ok ? 0 : GetLastError();
		ok = sl_op_started(s->b.loop, op, ok, e, out_skip(s)) == 0;
	}
	if (!ok)
		return sl_win_err(e);
	s->pending++;
	s->writes++;
	s->b.wq_bytes += len;
	return 0;
}

int sl_stream_end_follows(const sl_stream *s)
{
	(void)s;
	return 0; /* a completion does not tell that the end follows */
}

/* flags: no way to hold bytes for the FIN of a later shutdown here. */
ptrdiff_t sl_stream_try_write(sl_stream *s, const void *buf, size_t len,
			      unsigned flags)
{
	int n;

	(void)flags;

	if (s == NULL || (s->b.flags & (ST_CLOSING | ST_CONNECTING)))
		return -EINVAL;
	if (s->b.flags & (ST_SHUT_WANTED | ST_SHUT_DONE))
		return -EPIPE;
	if (s->b.write_err != 0)
		return s->b.write_err;
	if (s->writes > 0 || s->b.kind != SL_EP_TCP)
		return -EAGAIN; /* order; pipes have no non-blocking write */
	n = send(s->sock, buf, len > INT_MAX ? INT_MAX : (int)len, 0);
	if (n >= 0)
		return n > 0 ? n : -EAGAIN;
	n = WSAGetLastError();
	if (n == WSAEWOULDBLOCK)
		return -EAGAIN;
	s->b.write_err = sl_win_err((unsigned long)n);
	return s->b.write_err;
}

/* ---- shutdown ------------------------------------------------------------- */

/*
 * The zero-byte message found the reader gone (broken pipe): every write
 * before it had completed, and the reader closed after it was done with
 * them (a TLS peer after its close_notify, say).  As a TCP shutdown after
 * the peer closed, that is no failure of the half-close.
 */
static int eof_status(int err)
{
	return err == -EPIPE ? 0 : err;
}

static void on_shut_done(sl_loop *loop, sl_op *op, int err, size_t n)
{
	sl_stream *s = op->data;

	(void)loop;
	(void)n;
	s->pending--;
	s->b.shutdown_status = (s->b.flags & ST_CLOSING) ? -ECANCELED
							  : eof_status(err);
	s->b.shutdown_ready = 1;
	sl_stream_schedule(s);
}

/* Wine's ntdll exports wine_get_version; Windows' does not. */
int sl_under_wine(void)
{
	static int known, wine;

	if (!known) {
		HMODULE nt = GetModuleHandleA("ntdll.dll");

		wine = nt != NULL &&
		       GetProcAddress(nt, "wine_get_version") != NULL;
		known = 1;
	}
	return wine;
}

/*
 * Has the other end of the pipe read everything we wrote?  The quick
 * question before a flush (see the top): yes when WriteQuotaAvailable is
 * the whole OutboundQuota; an error counts as yes (the zero-byte write
 * will say what is wrong).  No is not sure: a read pending on the other
 * end looks like unread bytes, and the flush then answers.  Wine 8 leaves
 * WriteQuotaAvailable at 0, so under wine every end goes through the
 * flush.  The tests stand in for Windows through sl_pipe_drained_hook.
 */
int sl_pipe_drained(HANDLE h)
{
	struct pipe_local_info info;
	IO_STATUS_BLOCK io;
	NTSTATUS st;

	memset(&info, 0, sizeof info);
	st = NtQueryInformationFile(h, &io, &info, sizeof info,
				    (FILE_INFORMATION_CLASS)
					    SL_FILE_PIPE_LOCAL_INFO);
	return st < 0 || info.write_quota_avail == info.out_quota;
}

sl_pipe_drained_fn sl_pipe_drained_hook = sl_pipe_drained;
sl_win_post_fn sl_win_post_hook = sl_loop_post_op;

static void write_eof(sl_stream *s)
{
	BOOL ok;
	int r;

	s->b.flags &= ~ST_DRAINING;
	if (s->wpipe != INVALID_HANDLE_VALUE) {
		/* Two handles: closing the one written to is the end (the
		 * reader, flushed, then sees a broken pipe: its EOF). */
		CloseHandle(s->wpipe);
		s->wpipe = INVALID_HANDLE_VALUE;
		s->b.shutdown_status = 0;
		s->b.shutdown_ready = 1;
		sl_stream_schedule(s);
		return;
	}
	/* A zero-byte message: the reader's end of stream (see the top).
	 * In skip mode it usually completes at once, with no packet. */
	sl_op_init(&s->shut_op, on_shut_done, s);
	ok = WriteFile(s->pipe, "", 0, NULL, &s->shut_op.ov);
	r = sl_op_started(s->b.loop, &s->shut_op, ok, ok ? 0 : GetLastError(),
			  s->skip);
	if (r < 0) {
		s->b.shutdown_status = eof_status(r);
		s->b.shutdown_ready = 1;
		sl_stream_schedule(s);
		return;
	}
	s->pending++;
}

/* Another thread: the flush of the pipe (see the top), then its packet. */
static DWORD WINAPI flush_proc(LPVOID arg)
{
	sl_stream *s = arg;
	BOOL ok = FlushFileBuffers(s->flush_pipe);

	CloseHandle(s->flush_pipe);
	/* STATUS_CANCELLED when it did not flush; the zero-byte write says
	 * what is wrong with the pipe, if anything. */
	sl_loop_post_op(s->b.loop, &s->flush_op, ok ? 0 : 0xC0000120u, 0);
	return 0;
}

static void on_flushed(sl_loop *loop, sl_op *op, int err, size_t n)
{
	sl_stream *s = op->data;

	(void)loop;
	(void)err;
	(void)n;
	s->pending--;
	CloseHandle(s->flush_thread);
	s->flush_thread = NULL;
	sl_timer_stop(&s->drain);
	if (s->b.flags & ST_CLOSING) {
		sl_stream_maybe_free(s);
		return;
	}
	write_eof(s);
}

/* At close: the flush is cancelled until its packet comes. */
static void on_flush_cancel(sl_timer *t)
{
	sl_stream *s = t->data;

	if (s->flush_thread == NULL)
		return;
	CancelSynchronousIo(s->flush_thread);
	sl_timer_start(&s->drain, SL_PIPE_FLUSH_CANCEL_MS);
}

/* The flush before the end, on its own thread.  0, or -1 when it could
 * not start (the end is then written at once). */
static int start_flush(sl_stream *s)
{
	if (!DuplicateHandle(GetCurrentProcess(), out_handle(s),
			     GetCurrentProcess(),
			     &s->flush_pipe, 0, FALSE, DUPLICATE_SAME_ACCESS))
		return -1;
	sl_op_init(&s->flush_op, on_flushed, s);
	s->flush_thread = CreateThread(NULL, 65536, flush_proc, s,
				       STACK_SIZE_PARAM_IS_A_RESERVATION,
				       NULL);
	if (s->flush_thread == NULL) {
		CloseHandle(s->flush_pipe);
		return -1;
	}
	s->pending++;
	s->b.flags |= ST_DRAINING;
	return 0;
}

static void do_shutdown(sl_stream *s)
{
	s->b.flags &= ~ST_SHUT_WANTED;
	s->b.flags |= ST_SHUT_DONE;
	if (s->b.kind == SL_EP_TCP) {
		s->b.shutdown_status = shutdown(s->sock, SD_SEND) == 0
			? 0
			: sl_win_err((unsigned long)WSAGetLastError());
		s->b.shutdown_ready = 1;
		sl_stream_schedule(s);
		return;
	}
	if (sl_pipe_drained_hook(out_handle(s)) || start_flush(s) < 0)
		write_eof(s);
}

int sl_stream_shutdown(sl_stream *s, sl_shutdown_cb cb)
{
	if (s == NULL || (s->b.flags & (ST_CLOSING | ST_CONNECTING)))
		return -EINVAL;
	if (s->b.flags & (ST_SHUT_WANTED | ST_SHUT_DONE))
		return -EALREADY;
	if (sl_stream_shutdown_set(&s->b, cb) != 0)
		sl_stream_schedule(s); /* a write failed already */
	else if (s->writes == 0)
		do_shutdown(s);
	return 0;
}

/* ---- opening --------------------------------------------------------------- */

sl_stream *sl_os_stream_new(sl_loop *loop, enum sl_ep_kind kind)
{
	sl_stream *s = calloc(1, sizeof *s);

	if (s == NULL)
		return NULL;
	sl_stream_init(s, loop, kind, stream_task);
	s->sock = INVALID_SOCKET;
	s->pipe = INVALID_HANDLE_VALUE;
	s->wpipe = INVALID_HANDLE_VALUE;
	sl_timer_init(loop, &s->retry, sl_pipe_busy_retry, s);
	sl_timer_init(loop, &s->drain, on_flush_cancel, s);
	return s;
}

int sl_stream_open_socket(sl_loop *loop, SOCKET sock,
			  const struct sockaddr *peer, int peer_len,
			  const struct sockaddr *local, int local_len,
			  sl_stream **out)
{
	sl_stream *s;
	int r;

	if ((r = sl_win_socket_tune(sock)) < 0 ||
	    (r = sl_loop_associate(loop, (HANDLE)sock)) < 0) {
		closesocket(sock);
		return r;
	}
	s = sl_os_stream_new(loop, SL_EP_TCP);
	if (s == NULL) {
		closesocket(sock);
		return -ENOMEM;
	}
	s->sock = sock;
	s->skip = sl_win_socket_skip(sock, peer != NULL ? peer->sa_family
					 : local != NULL ? local->sa_family
							 : AF_INET);
	if (peer != NULL && peer_len > 0 &&
	    (size_t)peer_len <= sizeof s->peer) {
		memcpy(&s->peer, peer, (size_t)peer_len);
		s->peer_len = peer_len;
	}
	if (local != NULL && local_len > 0 &&
	    (size_t)local_len <= sizeof s->local) {
		memcpy(&s->local, local, (size_t)local_len);
		s->local_len = local_len;
	}
	*out = s;
	return 0;
}

int sl_stream_set_keepalive(sl_stream *s, const sl_keepalive *ka)
{
	if (s->b.kind != SL_EP_TCP || s->sock == INVALID_SOCKET)
		return 0;
	return sl_win_tcp_keepalive(s->sock, ka);
}

int sl_stream_open_pipe(sl_loop *loop, HANDLE h, int skip, const char *path,
			sl_stream **out)
{
	sl_stream *s = sl_os_stream_new(loop, SL_EP_PIPE);

	if (s == NULL) {
		CloseHandle(h);
		return -ENOMEM;
	}
	s->pipe = h;
	s->skip = skip;
	snprintf(s->path, sizeof s->path, "%s", path);
	*out = s;
	return 0;
}

int sl_stream_open_pipe2(sl_loop *loop, HANDLE rh, int rskip, HANDLE wh,
			 int wskip, const char *path, sl_stream **out)
{
	int r = sl_stream_open_pipe(loop, rh, rskip, path, out);

	if (r < 0) {
		CloseHandle(wh);
		return r;
	}
	(*out)->wpipe = wh;
	(*out)->wskip = wskip;
	return 0;
}

int sl_win_pipe_skip(HANDLE h)
{
	return sl_win_skip_allowed ? sl_loop_skip_on_success(h) : 0;
}

/* ---- closing ------------------------------------------------------------------ */

void sl_os_stream_close(sl_stream *s, int reset)
{
	sl_timer_stop(&s->retry);
	if (s->flush_thread != NULL) {
		/* The flush ends, cancelled; its packet frees the way. */
		CancelSynchronousIo(s->flush_thread);
		sl_timer_start(&s->drain, SL_PIPE_FLUSH_CANCEL_MS);
	}
	/* Not with the kernel yet (also a pipe's end still waiting for the
	 * reader): ends here.  A pipe's zero-byte write that is completes,
	 * cancelled (on_shut_done). */
	if (s->b.shutdown_cb != NULL && !s->b.shutdown_ready &&
	    (!(s->b.flags & ST_SHUT_DONE) || (s->b.flags & ST_DRAINING))) {
		s->b.shutdown_status = -ECANCELED;
		s->b.shutdown_ready = 1;
	}
	/* Every operation still with the kernel completes, cancelled, and
	 * is consumed before the stream is freed. */
	if (s->sock != INVALID_SOCKET) {
		if (reset) {
			struct linger lg = {1, 0};

			setsockopt(s->sock, SOL_SOCKET, SO_LINGER,
				   (const char *)&lg, sizeof lg);
		}
		/*
		 * Windows cancels a socket's overlapped operations at
		 * closesocket(); wine (8.0) does not for a WSASend the peer
		 * never lets complete (it does not read), and the stream,
		 * and its session, would wait for that completion forever.
		 * Cancelling first does what Windows does either way.
		 */
		if (s->pending > 0)
			CancelIoEx((HANDLE)s->sock, NULL);
		closesocket(s->sock);
		s->sock = INVALID_SOCKET;
	}
	if (s->pipe != INVALID_HANDLE_VALUE) {
		CancelIoEx(s->pipe, NULL);
		CloseHandle(s->pipe);
		s->pipe = INVALID_HANDLE_VALUE;
	}
	if (s->wpipe != INVALID_HANDLE_VALUE) {
		CancelIoEx(s->wpipe, NULL);
		CloseHandle(s->wpipe);
		s->wpipe = INVALID_HANDLE_VALUE;
	}
	sl_stream_schedule(s);
}

/* ---- the rest of the API ----------------------------------------------------- */

/* Splicing is a Linux feature: the proxy copies here. */
int sl_stream_forward(sl_stream *src, sl_stream *dst, sl_forward_cb cb)
{
	(void)src;
	(void)dst;
	(void)cb;
	return SL_EUNSUPP;
}

int sl_stream_can_forward(const sl_stream *src, const sl_stream *dst)
{
	(void)src;
	(void)dst;
	return 0;
}

void sl_net_set_pipe_limit(unsigned long n)
{
	(void)n;
}
