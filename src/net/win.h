/*
 * What the Windows files of src/net share (internal to src/net, and to the
 * Windows tests).
 */
#ifndef SL_NET_WIN_H
#define SL_NET_WIN_H

#include <winsock2.h>
#include <ws2tcpip.h>
#include <mswsock.h>
#include <windows.h>

#include "listener_common.h" /* sl_listener_port */
#include "net.h"

/* Winsock extension functions, loaded once by sl_net_init(). */
extern LPFN_ACCEPTEX sl_AcceptEx;
extern LPFN_GETACCEPTEXSOCKADDRS sl_GetAcceptExSockaddrs;
extern LPFN_CONNECTEX sl_ConnectEx;

/* An overlapped, non-inheritable TCP socket.  INVALID_SOCKET, error set. */
SOCKET sl_win_socket(int family);

/* Non-blocking (for recv/send outside overlapped operations), no Nagle.
 * 0 or -errno. */
int sl_win_socket_tune(SOCKET sock);

/*
 * sl_stream_set_keepalive() on a TCP socket: SO_KEEPALIVE, then idle,
 * interval and count, each that ka gives, one by one as socket options
 * (TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT: Windows 10 1709 and later).
 * Where one of them is refused (an older Windows answers
 * WSAENOPROTOOPT), idle and interval go together through the ioctl
 * SIO_KEEPALIVE_VALS, the one that older systems have, with the system's
 * defaults (2 hours, 1 second) for the one ka leaves at 0; count cannot
 * be set there (the system's, 10).  0 or -errno.
 *
 * The seam sl_keepalive_opt_hook makes each of the three socket options
 * (sl_keepalive_opt does it; 0 or a Winsock error code): a test answers
 * as an older Windows would, to see the ioctl taken instead.
 */
int sl_win_tcp_keepalive(SOCKET sock, const sl_keepalive *ka);
typedef int (*sl_keepalive_opt_fn)(SOCKET sock, int opt, DWORD value);
extern sl_keepalive_opt_fn sl_keepalive_opt_hook;
int sl_keepalive_opt(SOCKET sock, int opt, DWORD value);

/* The TCP keepalive options of Windows 10 1709 and later, which mingw's
 * headers may lack (ws2ipdef.h; TCP_KEEPIDLE is TCP_KEEPALIVE's name). */
#ifndef TCP_KEEPIDLE
#define TCP_KEEPIDLE 3
#endif
#ifndef TCP_KEEPCNT
#define TCP_KEEPCNT 16
#endif
#ifndef TCP_KEEPINTVL
#define TCP_KEEPINTVL 17
#endif

/*
 * Put sock (already attached to a loop) in skip mode where its provider
 * allows it (sl_loop_skip_on_success): 1 when it is, and every operation
 * on it then goes through sl_op_started(..., 1); 0 otherwise.
 * sl_win_skip_allowed (tests, a bench): 0 keeps every new socket and
 * pipe handle out of skip mode; set it only while no listener runs.
 */
int sl_win_socket_skip(SOCKET sock, int family);
extern int sl_win_skip_allowed;

/*
 * A stream for a socket AcceptEx accepted (its accept context already
 * updated), with the addresses GetAcceptExSockaddrs gave; loop must be the
 * calling thread's loop, whose port the socket is attached to here.  Takes
 * the socket over even on failure.
 */
int sl_stream_open_socket(sl_loop *loop, SOCKET sock,
			  const struct sockaddr *peer, int peer_len,
			  const struct sockaddr *local, int local_len,
			  sl_stream **out);

/*
 * Put pipe handle h (already attached to a port) in skip mode unless
 * sl_win_skip_allowed is 0: 1 when it is in skip mode.
 */
int sl_win_pipe_skip(HANDLE h);

/*
 * A stream for a connected named-pipe server instance already attached to
 * loop's port; skip: whether h is in skip mode (sl_win_pipe_skip's
 * answer).  Takes the handle over even on failure.
 */
int sl_stream_open_pipe(sl_loop *loop, HANDLE h, int skip, const char *path,
			sl_stream **out);

/*
 * A pipe stream over two server instances, both attached to loop's port
 * (an exec: child's stdout and stdin): it reads from rh and writes to
 * wh, and its half-close closes wh once every write has completed and
 * the reader has taken every byte (the flush of sl_stream_shutdown), so
 * the other end reads a broken pipe: an end every reader knows (see
 * stream_win.c).  Closing closes both.  Takes both handles over even on
 * failure.
 */
int sl_stream_open_pipe2(sl_loop *loop, HANDLE rh, int rskip, HANDLE wh,
			 int wskip, const char *path, sl_stream **out);

/* sl_net_shutdown(): every exec: child still running is killed
 * (exec_win.c). */
void sl_exec_shutdown(void);

/*
 * Where src/net makes a completion packet itself, for an operation that
 * ended at once and queued none (sl_loop_post_op).  Tests count through
 * it: an operation whose packet the kernel queues must never get one
 * from here too.
 */
typedef int (*sl_win_post_fn)(sl_loop *loop, sl_op *op, uint32_t ntstatus,
			      size_t bytes);
extern sl_win_post_fn sl_win_post_hook;

/* Under wine (which differs from Windows in places, see the callers)? */
int sl_under_wine(void);

/* Whether a root of the store goes to sl_os_trusted_roots' caller at
 * now (certstore_win.c): 1, 0, or -ENOMEM.  Tests give it contexts with
 * usages of their own. */
int sl_win_root_usable(const CERT_CONTEXT *c, const FILETIME *now);

/* Has the other end of pipe h read everything written to it (or can
 * that not be told)?  The half-close waits for it (stream_win.c).  Tests
 * replace it through sl_pipe_drained_hook: wine cannot tell. */
typedef int (*sl_pipe_drained_fn)(HANDLE h);
extern sl_pipe_drained_fn sl_pipe_drained_hook;
int sl_pipe_drained(HANDLE h);

/* "127.0.0.1:80", "[::1]:80".  0 or -errno. */
int sl_sockaddr_name(const struct sockaddr *sa, int len, char *buf,
		     size_t buflen);


/*
 * Named pipes that sluice makes for itself: a server instance (overlapped,
 * duplex, byte reads, local clients only) under a fresh unique name
 * \\.\pipe\sluice-PID-N, created with FILE_FLAG_FIRST_PIPE_INSTANCE; on a
 * name collision a new name is tried, at most SL_PIPE_NAME_TRIES times in
 * all.  name_fn (NULL: the built-in counter) writes candidate names; tests
 * inject it to make collisions happen.  *path gets the name used.
 */
#define SL_PIPE_NAME_TRIES 10
typedef void (*sl_pipe_name_fn)(char *buf, size_t len, unsigned attempt,
				void *arg);
HANDLE sl_pipe_create_unique(char *path, size_t pathlen, sl_pipe_name_fn fn,
			     void *arg, int *err);

/*
 * The seam for the name check: creates one server instance of path the
 * way sl_pipe_create_unique does (first instance or not).  Tests replace
 * its result through sl_pipe_create_hook to stand in for a Windows that
 * refuses a taken name (wine does not enforce FILE_FLAG_FIRST_PIPE_INSTANCE).
 */
typedef HANDLE (*sl_pipe_create_fn)(const char *path, int first,
				    const SECURITY_ATTRIBUTES *sa);
extern sl_pipe_create_fn sl_pipe_create_hook;
HANDLE sl_pipe_create_instance(const char *path, int first,
			       const SECURITY_ATTRIBUTES *sa);

/*
 * The listener's ConnectNamedPipe.  Tests replace it to report an at-once
 * success (TRUE), which Windows may give and wine 8 never does.
 */
typedef BOOL(WINAPI *sl_connect_pipe_fn)(HANDLE h, OVERLAPPED *ov);
extern sl_connect_pipe_fn sl_ConnectNamedPipe;

/*
 * The security of a pipe listener's instances: the SDDL string (NULL: the
 * default DACL, also for a string without a D: part) with an ACE that
 * allows everything to the process token's user put first, so sluice can
 * always create its instances.  rival: someone other than that account,
 * SYSTEM and the administrators may create instances (rival_sid names the
 * first).  0, or -errno with a sentence in err.  sl_pipe_sd_free() after.
 */
struct sl_pipe_sd {
	PSECURITY_DESCRIPTOR parsed, dflt; /* LocalFree */
	TOKEN_USER *user;
	PACL acl;
	SECURITY_DESCRIPTOR abs; /* what instances are created with */
	SECURITY_ATTRIBUTES sa;  /* pointing at abs */
	int rival;
	char rival_sid[192];
};
int sl_pipe_security(const char *sddl, struct sl_pipe_sd *sd, char *err,
		     size_t errlen);
void sl_pipe_sd_free(struct sl_pipe_sd *sd);

/*
 * What a TCP connect does to its socket before ConnectEx, step by step
 * (sl_connect_step does it; 0 or a Winsock error code):
 * SL_CONNECT_REUSE_PORT  SO_REUSE_UNICASTPORT, so that the bind does not
 *                        reserve a port for good (optional: a system
 *                        without it is not an error);
 * SL_CONNECT_BIND        the bind ConnectEx wants: to src, the connect's
 *                        source (sl_connect_opts), or with src NULL to
 *                        the wildcard address;
 * SL_CONNECT_NO_SYN_RETRY  loopback destinations only: no SYN
 *                        retransmission (SIO_TCP_INITIAL_RTO), so a
 *                        refused connect fails at once (optional too).
 * The seam sl_connect_step_hook (tests) sees each step before it is made,
 * in order, with the destination (and src), and may make it fail.
 * SL_CONNECT_REUSE_PORT is made only where the bind leaves the port to
 * the system (no source, or one with port 0).
 */
enum sl_connect_step {
	SL_CONNECT_REUSE_PORT,
	SL_CONNECT_BIND,
	SL_CONNECT_NO_SYN_RETRY,
};
typedef int (*sl_connect_step_fn)(SOCKET s, enum sl_connect_step step,
				  const struct sockaddr *dest, int destlen,
				  const struct sockaddr *src, int srclen);
extern sl_connect_step_fn sl_connect_step_hook;
int sl_connect_step(SOCKET s, enum sl_connect_step step,
		    const struct sockaddr *dest, int destlen,
		    const struct sockaddr *src, int srclen);

/*
 * Debug aid for tests (mingw has no ASan): while the quarantine is on,
 * freed streams and listeners are poisoned and kept, not freed.
 * sl_net_quarantine_check() counts those written to after their free,
 * plus every read or write of a guarded block after its free (listeners
 * allocated while the quarantine is on: their pages are made
 * inaccessible at free, and a vectored exception handler counts the
 * access and lets it go on), then frees them all.
 */
void sl_net_quarantine(int on);
unsigned sl_net_quarantine_check(void);
/* calloc, or, while the quarantine is on, zeroed pages of their own
 * (*guarded set to 1) that sl_net_qfree can guard. */
void *sl_net_qalloc(size_t size, int *guarded);
/* free, or, while the quarantine is on, poison and keep. */
void sl_net_qfree(void *p, size_t size, int guarded);

#endif
