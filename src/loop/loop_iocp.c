/*
 * IOCP backend (Windows): one I/O completion port per loop.  Handles are
 * attached with sl_loop_associate(); every overlapped operation carries an
 * sl_op whose callback runs on the loop when its packet is dequeued.
 *
 * Rules kept here (see DESIGN.md, "IOCP rules"):
 * - an operation's status comes from its own OVERLAPPED.Internal, read as a
 *   32-bit NTSTATUS; OVERLAPPED_ENTRY.Internal is reserved and never read;
 * - packets are taken in batches with GetQueuedCompletionStatusEx;
 * - the cross-thread wake-up is a packet with no OVERLAPPED, so it can never
 *   be mistaken for an operation;
 * - an operation that succeeded at once on a handle in skip mode has no
 *   packet: it waits in the ready list, and runs after the packets of the
 *   next batch as if it had come with them (libuv queues such a request
 *   itself the same way, uv__insert_pending_req).  A packet queued before
 *   it started is in that batch (up to the batch size), so operations of
 *   one handle complete in the order they were started.
 */
/* windows.h without its few STATUS_ values, then ntstatus.h with all. */
#define WIN32_NO_STATUS
#include "loop_internal.h"
#undef WIN32_NO_STATUS

#include <errno.h>
#include <stdlib.h>

#include <ntstatus.h>
#include <winternl.h> /* RtlNtStatusToDosError */

/* Packets taken per GetQueuedCompletionStatusEx; the rest wait their turn. */
#define SL_IOCP_BATCH 128

struct sl_backend {
	HANDLE port;
	sl_op *ready, *ready_tail; /* completed at once, no packet */
	OVERLAPPED_ENTRY entries[SL_IOCP_BATCH];
};

const char *sl_loop_backend(void)
{
	return "iocp";
}

int sl_backend_init(sl_loop *loop)
{
	struct sl_backend *be = malloc(sizeof *be);

	if (be == NULL)
		return -ENOMEM;
	/* One thread dequeues: concurrency 1. */
	be->ready = be->ready_tail = NULL;
	be->port = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 1);
	if (be->port == NULL) {
		int r = sl_win_err(GetLastError());

		free(be);
		return r;
	}
	loop->be = be;
	return 0;
}

void sl_backend_free(sl_loop *loop)
{
	struct sl_backend *be = loop->be;

	if (be == NULL)
		return;
	CloseHandle(be->port);
	free(be);
	loop->be = NULL;
}

void sl_backend_wake(sl_loop *loop)
{
	/* Fails only when the port is gone or out of memory; a lost wake-up
	 * then costs at most the current poll timeout. */
	PostQueuedCompletionStatus(loop->be->port, 0, 0, NULL);
}

int sl_loop_associate(sl_loop *loop, HANDLE h)
{
	if (CreateIoCompletionPort(h, loop->be->port, 0, 0) == NULL)
		return sl_win_err(GetLastError());
	return 0;
}

int sl_loop_skip_on_success(HANDLE h)
{
	return SetFileCompletionNotificationModes(
		       h, FILE_SKIP_COMPLETION_PORT_ON_SUCCESS |
				  FILE_SKIP_SET_EVENT_ON_HANDLE)
		       ? 1
		       : 0;
}

int sl_op_started(sl_loop *loop, sl_op *op, int ok, unsigned long err,
		  int skip)
{
	struct sl_backend *be = loop->be;

	if (!ok)
		return err == ERROR_IO_PENDING ? 0 : sl_win_err(err);
	if (!skip)
		return 0; /* its packet is queued */
	op->next = NULL;
	if (be->ready_tail != NULL)
		be->ready_tail->next = op;
	else
		be->ready = op;
	be->ready_tail = op;
	return 0;
}

static void run_op(sl_loop *loop, sl_op *op, size_t bytes)
{
	op->cb(loop, op, sl_ntstatus_err((uint32_t)op->ov.Internal), bytes);
}

/* The operations that completed at once so far; those they start in
 * turn wait for the next round. */
static void run_ready(sl_loop *loop)
{
	struct sl_backend *be = loop->be;
	sl_op *op = be->ready;

	be->ready = be->ready_tail = NULL;
	while (op != NULL) {
		sl_op *next = op->next;

		op->next = NULL;
		run_op(loop, op, (size_t)op->ov.InternalHigh);
		op = next;
	}
}

int sl_loop_post_op(sl_loop *loop, sl_op *op, uint32_t ntstatus, size_t bytes)
{
	op->ov.Internal = (ULONG_PTR)ntstatus;
	op->ov.InternalHigh = (ULONG_PTR)bytes;
	if (!PostQueuedCompletionStatus(loop->be->port, (DWORD)bytes, 0,
					&op->ov))
		return sl_win_err(GetLastError());
	return 0;
}

int sl_backend_poll(sl_loop *loop, int timeout_ms)
{
	struct sl_backend *be = loop->be;
	ULONG n = 0, i;

	if (be->ready != NULL)
		timeout_ms = 0; /* completions are due already */
	if (!GetQueuedCompletionStatusEx(be->port, be->entries, SL_IOCP_BATCH,
					 &n, timeout_ms < 0 ? INFINITE
							    : (DWORD)timeout_ms,
					 FALSE)) {
		DWORD e = GetLastError();

		sl_loop_update_time(loop);
		if (e != WAIT_TIMEOUT)
			return sl_win_err(e);
		n = 0;
	} else {
		sl_loop_update_time(loop);
	}
	for (i = 0; i < n; i++) {
		OVERLAPPED_ENTRY *ent = &be->entries[i];

		if (ent->lpOverlapped == NULL)
			continue; /* a wake-up: the run loop takes the tasks */
		run_op(loop, CONTAINING_RECORD(ent->lpOverlapped, sl_op, ov),
		       (size_t)ent->dwNumberOfBytesTransferred);
	}
	if (be->ready != NULL)
		run_ready(loop);
	return 0;
}

/* ---- error codes ---------------------------------------------------------- */

/*
 * The statuses that sockets (AFD) complete with, read as libuv reads them
 * (uv__ntstatus_to_winsock_error in its src/win/winsock.c).
 * RtlNtStatusToDosError knows few of them: a resource shortage on an
 * accept (STATUS_INSUFFICIENT_RESOURCES) came out as -EIO, and the
 * listener paused uncounted, logging "I/O error".  0 for a status not
 * listed here.
 */
static int socket_status_err(uint32_t status)
{
	switch (status) {
	case (uint32_t)STATUS_INSUFFICIENT_RESOURCES:
	case (uint32_t)STATUS_PAGEFILE_QUOTA:
	case (uint32_t)STATUS_COMMITMENT_LIMIT:
	case (uint32_t)STATUS_WORKING_SET_QUOTA:
	case (uint32_t)STATUS_NO_MEMORY:
	case (uint32_t)STATUS_QUOTA_EXCEEDED:
	case (uint32_t)STATUS_TOO_MANY_PAGING_FILES:
	case (uint32_t)STATUS_REMOTE_RESOURCES:
		return -ENOBUFS;
	case (uint32_t)STATUS_TOO_MANY_ADDRESSES:
	case (uint32_t)STATUS_ADDRESS_ALREADY_EXISTS:
		return -EADDRINUSE;
	case (uint32_t)STATUS_LINK_TIMEOUT:
	case (uint32_t)STATUS_IO_TIMEOUT:
		return -ETIMEDOUT;
	/* The peer closed before the operation could finish (an accept
	 * whose client left, a send after its FIN): as a broken pipe. */
	case (uint32_t)STATUS_GRACEFUL_DISCONNECT:
		return -EPIPE;
	case (uint32_t)STATUS_REMOTE_DISCONNECT:
	case (uint32_t)STATUS_CONNECTION_RESET:
	case (uint32_t)STATUS_LINK_FAILED:
	case (uint32_t)STATUS_CONNECTION_DISCONNECTED:
	case (uint32_t)STATUS_PORT_UNREACHABLE:
	case (uint32_t)STATUS_HOPLIMIT_EXCEEDED:
		return -ECONNRESET;
	case (uint32_t)STATUS_LOCAL_DISCONNECT:
	case (uint32_t)STATUS_TRANSACTION_ABORTED:
	case (uint32_t)STATUS_CONNECTION_ABORTED:
		return -ECONNABORTED;
	case (uint32_t)STATUS_BAD_NETWORK_PATH:
	case (uint32_t)STATUS_NETWORK_UNREACHABLE:
	case (uint32_t)STATUS_PROTOCOL_UNREACHABLE:
		return -ENETUNREACH;
	case (uint32_t)STATUS_HOST_UNREACHABLE:
		return -EHOSTUNREACH;
	case (uint32_t)STATUS_CANCELLED:
	case (uint32_t)STATUS_REQUEST_ABORTED:
		return -ECANCELED;
	/* A warning, not an error severity: on a socket a message longer
	 * than the buffer; a pipe read takes it as bytes that are good
	 * (stream_win.c reads the status itself). */
	case (uint32_t)STATUS_BUFFER_OVERFLOW:
	case (uint32_t)STATUS_INVALID_BUFFER_SIZE:
		return -EMSGSIZE;
	case (uint32_t)STATUS_DEVICE_NOT_READY:
	case (uint32_t)STATUS_REQUEST_NOT_ACCEPTED:
		return -EAGAIN;
	case (uint32_t)STATUS_INVALID_NETWORK_RESPONSE:
	case (uint32_t)STATUS_NETWORK_BUSY:
	case (uint32_t)STATUS_UNEXPECTED_NETWORK_ERROR:
		return -ENETDOWN;
	case (uint32_t)STATUS_INVALID_CONNECTION:
		return -ENOTCONN;
	case (uint32_t)STATUS_REMOTE_NOT_LISTENING:
	case (uint32_t)STATUS_CONNECTION_REFUSED:
		return -ECONNREFUSED;
	case (uint32_t)STATUS_CONFLICTING_ADDRESSES:
	case (uint32_t)STATUS_INVALID_ADDRESS:
	case (uint32_t)STATUS_INVALID_ADDRESS_COMPONENT:
		return -EADDRNOTAVAIL;
	case (uint32_t)STATUS_NOT_SUPPORTED:
	case (uint32_t)STATUS_NOT_IMPLEMENTED:
		return -EOPNOTSUPP;
	}
	return 0;
}

int sl_ntstatus_err(uint32_t status)
{
	int r;

	/* NT_SUCCESS: severity success or informational (the top bit
	 * clear).  Warnings (0x8...) are not successes. */
	if ((int32_t)status >= 0)
		return 0;
	if ((r = socket_status_err(status)) != 0)
		return r;
	/* The rest (pipes and files: STATUS_PIPE_BROKEN is -EPIPE, a
	 * Win32 error carried as FACILITY_NTWIN32 is that error) as the
	 * system translates them. */
	return sl_win_err(RtlNtStatusToDosError((NTSTATUS)status));
}

int sl_win_err(unsigned long code)
{
	switch (code) {
	case ERROR_SUCCESS:
		return 0;
	case ERROR_OPERATION_ABORTED:
	case ERROR_CANCELLED: /* WSA_OPERATION_ABORTED is the same code */
	case WSAEINTR:
		return -ECANCELED;
	case ERROR_NETNAME_DELETED:
	case WSAECONNRESET:
	case WSAENETRESET:
		return -ECONNRESET;
	case ERROR_CONNECTION_ABORTED:
	case ERROR_REQUEST_ABORTED:
	case WSAECONNABORTED:
		return -ECONNABORTED;
	case ERROR_CONNECTION_REFUSED:
	case WSAECONNREFUSED:
		return -ECONNREFUSED;
	case ERROR_SEM_TIMEOUT:
	case ERROR_TIMEOUT:
	case WAIT_TIMEOUT:
	case WSAETIMEDOUT:
		return -ETIMEDOUT;
	case ERROR_HOST_UNREACHABLE:
	case WSAEHOSTUNREACH:
		return -EHOSTUNREACH;
	case ERROR_NETWORK_UNREACHABLE:
	case WSAENETUNREACH:
		return -ENETUNREACH;
	case ERROR_BROKEN_PIPE:
	case ERROR_NO_DATA:
	case ERROR_PIPE_NOT_CONNECTED:
	case WSAESHUTDOWN:
	case WSAEDISCON:
		return -EPIPE;
	case ERROR_PIPE_BUSY:
		return -EBUSY;
	case ERROR_FILE_NOT_FOUND:
	case ERROR_PATH_NOT_FOUND:
	case ERROR_BAD_PATHNAME:
		return -ENOENT;
	case ERROR_ACCESS_DENIED:
	case WSAEACCES:
		return -EACCES;
	case ERROR_NOT_ENOUGH_MEMORY:
	case ERROR_OUTOFMEMORY:
		return -ENOMEM;
	case ERROR_INSUFFICIENT_BUFFER:
	case ERROR_NO_SYSTEM_RESOURCES:
	case ERROR_NONPAGED_SYSTEM_RESOURCES:
	case ERROR_PAGED_SYSTEM_RESOURCES:
	case ERROR_WORKING_SET_QUOTA:
	case ERROR_PAGEFILE_QUOTA:
	case ERROR_COMMITMENT_LIMIT:
	case WSAENOBUFS:
		return -ENOBUFS;
	case WSAEMSGSIZE:
		return -EMSGSIZE;
	case WSAENETDOWN:
		return -ENETDOWN;
	case ERROR_TOO_MANY_OPEN_FILES:
	case WSAEMFILE:
		return -EMFILE;
	case ERROR_ADDRESS_ALREADY_ASSOCIATED:
	case WSAEADDRINUSE:
		return -EADDRINUSE;
	case WSAEADDRNOTAVAIL:
		return -EADDRNOTAVAIL;
	case WSAEAFNOSUPPORT:
	case WSAEPFNOSUPPORT:
		return -EAFNOSUPPORT;
	case WSAEWOULDBLOCK:
		return -EAGAIN;
	case WSAEINPROGRESS:
	case WSAEALREADY:
		return -EALREADY;
	case WSAENOTCONN:
		return -ENOTCONN;
	case WSAEISCONN:
		return -EISCONN;
	case ERROR_INVALID_HANDLE:
	case WSAENOTSOCK:
		return -EBADF;
	case ERROR_INVALID_PARAMETER:
	case WSAEINVAL:
	case WSAEFAULT:
		return -EINVAL;
	case ERROR_NOT_SUPPORTED:
	case WSAEOPNOTSUPP:
		return -EOPNOTSUPP;
	case ERROR_FILE_EXISTS:
	case ERROR_ALREADY_EXISTS:
		return -EEXIST;
	case ERROR_FILENAME_EXCED_RANGE:
		return -ENAMETOOLONG;
	default:
		return -EIO;
	}
}
