/*
 * Windows sockets: overlapped sockets, the names of their addresses, and
 * the process-wide setup (Winsock, its extension functions, the resolver),
 * as libuv's src/win/winsock.c.  What streams and listeners share below
 * them.
 */
#include "win.h"

#include <errno.h>
#include <stdio.h>

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
	if ((r = sl_resolver_init()) < 0) {
		WSACleanup();
		return r;
	}
	return 0;
}

void sl_net_shutdown(void)
{
	sl_resolver_shutdown();
	WSACleanup();
}
