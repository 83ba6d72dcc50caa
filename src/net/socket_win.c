/*
 * Windows sockets: overlapped sockets, the names of their addresses, and
 * the process-wide setup (Winsock, its extension functions, the resolver),
 * as libuv's src/win/winsock.c.  What streams and listeners share below
 * them.
 */
#include "win.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mstcpip.h> /* SIO_KEEPALIVE_VALS */

#include "resolver.h"

SOCKET sl_win_socket(int family)
{
	return WSASocketW(family, SOCK_STREAM, IPPROTO_TCP, NULL, 0,
			  WSA_FLAG_OVERLAPPED | WSA_FLAG_NO_HANDLE_INHERIT);
}

int sl_win_socket_tune(SOCKET sock)
{
	u_long one = 1;
	BOOL nodelay = TRUE;

	if (ioctlsocket(sock, FIONBIO, &one) != 0)
		return sl_win_err((unsigned long)WSAGetLastError());
	setsockopt(sock, IPPROTO_TCP, TCP_NODELAY, (const char *)&nodelay,
		   sizeof nodelay);
	return 0;
}

int sl_keepalive_opt(SOCKET sock, int opt, DWORD value)
{
	if (setsockopt(sock, IPPROTO_TCP, opt, (const char *)&value,
		       sizeof value) == 0)
		return 0;
	return WSAGetLastError();
}

sl_keepalive_opt_fn sl_keepalive_opt_hook = sl_keepalive_opt;

/* Windows' own defaults (KeepAliveTime, KeepAliveInterval), which
 * SIO_KEEPALIVE_VALS must be given when the config leaves one out. */
#define KEEPALIVE_IDLE_DEFAULT_S 7200
#define KEEPALIVE_INTERVAL_DEFAULT_S 1

int sl_win_tcp_keepalive(SOCKET sock, const sl_keepalive *ka)
{
	struct tcp_keepalive kv;
	BOOL on = ka->on != 0;
	DWORD n = 0;
	int e = 0;

	if (setsockopt(sock, SOL_SOCKET, SO_KEEPALIVE, (const char *)&on,
		       sizeof on) != 0)
		return sl_win_err((unsigned long)WSAGetLastError());
	if (!on)
		return 0;
	if (ka->idle != 0)
		e = sl_keepalive_opt_hook(sock, TCP_KEEPIDLE, ka->idle);
	if (e == 0 && ka->interval != 0)
		e = sl_keepalive_opt_hook(sock, TCP_KEEPINTVL, ka->interval);
	if (e == 0 && ka->count != 0)
		e = sl_keepalive_opt_hook(sock, TCP_KEEPCNT, ka->count);
	if (e == 0)
		return 0;
	/* Before Windows 10 1709: no such options.  The ioctl sets idle
	 * and interval (in milliseconds) as one; the count stays the
	 * system's.  Nothing asked of idle and interval: nothing to do. */
	if (ka->idle == 0 && ka->interval == 0)
		return 0;
	kv.onoff = 1;
	kv.keepalivetime = (ka->idle != 0 ? ka->idle
					  : KEEPALIVE_IDLE_DEFAULT_S) * 1000u;
	kv.keepaliveinterval = (ka->interval != 0
					? ka->interval
					: KEEPALIVE_INTERVAL_DEFAULT_S) * 1000u;
	if (WSAIoctl(sock, SIO_KEEPALIVE_VALS, &kv, sizeof kv, NULL, 0, &n,
		     NULL, NULL) != 0)
		return sl_win_err((unsigned long)WSAGetLastError());
	return 0;
}

/*
 * Skip mode needs the socket handle to be the base provider's own (an
 * installable file system handle).  A layered service provider without
 * XP1_IFS_HANDLES hands out handles of its own and would lose the
 * at-once completions (libuv makes the same check at start).  Found once
 * per family by sl_net_init.
 */
int sl_win_skip_allowed = 1;
static int ifs_v4, ifs_v6;

static int family_is_ifs(int family)
{
	WSAPROTOCOL_INFOW pi;
	int len = sizeof pi;
	SOCKET s = sl_win_socket(family);
	int ifs;

	if (s == INVALID_SOCKET)
		return 0; /* no such family here */
	ifs = getsockopt(s, SOL_SOCKET, SO_PROTOCOL_INFOW, (char *)&pi,
			 &len) == 0 &&
	      (pi.dwServiceFlags1 & XP1_IFS_HANDLES) != 0;
	closesocket(s);
	return ifs;
}

int sl_win_socket_skip(SOCKET sock, int family)
{
	if (!sl_win_skip_allowed ||
	    !(family == AF_INET6 ? ifs_v6 : ifs_v4))
		return 0;
	return sl_loop_skip_on_success((HANDLE)sock);
}

int sl_sockaddr_name(const struct sockaddr *sa, int len, char *buf,
		     size_t buflen)
{
	char host[INET6_ADDRSTRLEN];

	buf[0] = '\0';
	if (sa->sa_family == AF_INET && len >= (int)sizeof(struct sockaddr_in)) {
		const struct sockaddr_in *in = (const void *)sa;

		if (inet_ntop(AF_INET, &in->sin_addr, host, sizeof host) == NULL)
			return -EINVAL;
		snprintf(buf, buflen, "%s:%u", host, ntohs(in->sin_port));
		return 0;
	}
	if (sa->sa_family == AF_INET6 &&
	    len >= (int)sizeof(struct sockaddr_in6)) {
		const struct sockaddr_in6 *in6 = (const void *)sa;

		if (inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host) ==
		    NULL)
			return -EINVAL;
		snprintf(buf, buflen, "[%s]:%u", host, ntohs(in6->sin6_port));
		return 0;
	}
	return -EAFNOSUPPORT;
}

/* ---- quarantine (tests) ------------------------------------------------ */

#define QUAR_BYTE 0xDB
#define QUAR_MAX 4096

static struct quar {
	void *p;
	size_t size;
	int guarded; /* its own pages, inaccessible since its free */
	int touched; /* a guarded block was read or written after its free */
} quar[QUAR_MAX];
static unsigned quar_n;
static int quar_on;
static SRWLOCK quar_lock = SRWLOCK_INIT;
static PVOID quar_handler;

/* An access to a guarded block after its free: count it, open the pages
 * and let the access go on (it then reads the poison). */
static LONG CALLBACK quar_fault(EXCEPTION_POINTERS *ep)
{
	const EXCEPTION_RECORD *er = ep->ExceptionRecord;
	uintptr_t at;
	unsigned i;
	LONG r = EXCEPTION_CONTINUE_SEARCH;

	if (er->ExceptionCode != EXCEPTION_ACCESS_VIOLATION ||
	    er->NumberParameters < 2)
		return r;
	at = (uintptr_t)er->ExceptionInformation[1];
	AcquireSRWLockExclusive(&quar_lock);
	for (i = 0; i < quar_n; i++) {
		struct quar *q = &quar[i];
		DWORD old;

		if (!q->guarded || q->touched || at < (uintptr_t)q->p ||
		    at >= (uintptr_t)q->p + q->size)
			continue;
		q->touched = 1;
		VirtualProtect(q->p, q->size, PAGE_READWRITE, &old);
		r = EXCEPTION_CONTINUE_EXECUTION;
		break;
	}
	ReleaseSRWLockExclusive(&quar_lock);
	return r;
}

void sl_net_quarantine(int on)
{
	AcquireSRWLockExclusive(&quar_lock);
	if (on && quar_handler == NULL)
		quar_handler = AddVectoredExceptionHandler(1, quar_fault);
	quar_on = on;
	ReleaseSRWLockExclusive(&quar_lock);
}

unsigned sl_net_quarantine_check(void)
{
	unsigned bad = 0, i;

	AcquireSRWLockExclusive(&quar_lock);
	for (i = 0; i < quar_n; i++) {
		struct quar *q = &quar[i];
		const unsigned char *p = q->p;
		size_t k;
		DWORD old;

		if (q->guarded)
			VirtualProtect(q->p, q->size, PAGE_READWRITE, &old);
		for (k = 0; k < q->size && !q->touched; k++)
			q->touched = p[k] != QUAR_BYTE;
		bad += q->touched != 0;
		if (q->guarded)
			VirtualFree(q->p, 0, MEM_RELEASE);
		else
			free(q->p);
	}
	quar_n = 0;
	ReleaseSRWLockExclusive(&quar_lock);
	return bad;
}

void *sl_net_qalloc(size_t size, int *guarded)
{
	*guarded = 0;
	if (quar_on) {
		/* Zeroed, as calloc's; its own pages, which a free can make
		 * inaccessible without touching a neighbour. */
		void *p = VirtualAlloc(NULL, size, MEM_COMMIT | MEM_RESERVE,
				       PAGE_READWRITE);

		if (p != NULL)
			*guarded = 1;
		return p;
	}
	return calloc(1, size);
}

void sl_net_qfree(void *p, size_t size, int guarded)
{
	AcquireSRWLockExclusive(&quar_lock);
	if ((quar_on || guarded) && quar_n < QUAR_MAX) {
		struct quar *q = &quar[quar_n++];
		DWORD old;

		memset(p, QUAR_BYTE, size);
		q->p = p;
		q->size = size;
		q->guarded = guarded;
		q->touched = 0;
		if (guarded)
			VirtualProtect(p, size, PAGE_NOACCESS, &old);
		ReleaseSRWLockExclusive(&quar_lock);
		return;
	}
	ReleaseSRWLockExclusive(&quar_lock);
	if (guarded)
		VirtualFree(p, 0, MEM_RELEASE);
	else
		free(p);
}

/* ---- process-wide ------------------------------------------------------ */

LPFN_ACCEPTEX sl_AcceptEx;
LPFN_GETACCEPTEXSOCKADDRS sl_GetAcceptExSockaddrs;
LPFN_CONNECTEX sl_ConnectEx;

static int load_ext(SOCKET s, GUID guid, void *fn, size_t fnlen)
{
	DWORD n = 0;

	if (WSAIoctl(s, SIO_GET_EXTENSION_FUNCTION_POINTER, &guid, sizeof guid,
		     fn, (DWORD)fnlen, &n, NULL, NULL) != 0)
		return sl_win_err((unsigned long)WSAGetLastError());
	return 0;
}

int sl_net_init(void)
{
	WSADATA wd;
	SOCKET s;
	int r;

	if (WSAStartup(MAKEWORD(2, 2), &wd) != 0)
		return -EIO;
	s = sl_win_socket(AF_INET);
	if (s == INVALID_SOCKET) {
		r = sl_win_err((unsigned long)WSAGetLastError());
		WSACleanup();
		return r;
	}
	if ((r = load_ext(s, (GUID)WSAID_ACCEPTEX, &sl_AcceptEx,
			  sizeof sl_AcceptEx)) < 0 ||
	    (r = load_ext(s, (GUID)WSAID_GETACCEPTEXSOCKADDRS,
			  &sl_GetAcceptExSockaddrs,
			  sizeof sl_GetAcceptExSockaddrs)) < 0 ||
	    (r = load_ext(s, (GUID)WSAID_CONNECTEX, &sl_ConnectEx,
			  sizeof sl_ConnectEx)) < 0) {
		closesocket(s);
		WSACleanup();
		return r;
	}
	closesocket(s);
	ifs_v4 = family_is_ifs(AF_INET);
	ifs_v6 = family_is_ifs(AF_INET6);
	if ((r = sl_resolver_init()) < 0) {
		WSACleanup();
		return r;
	}
	return 0;
}

void sl_net_shutdown(void)
{
	sl_exec_shutdown();
	sl_resolver_shutdown();
	WSACleanup();
}
