/*
 * Listeners over IOCP: TCP with AcceptEx, named pipes with overlapped
 * ConnectNamedPipe.
 *
 * A listener is owned by one loop of its group, whose completion port has
 * the listening socket (or the pipe instances).  It keeps up to
 * SL_ACCEPT_POSTED accepts posted, each with a fresh socket or pipe
 * instance.  The gate is asked when a connection has arrived (a posted
 * accept holds no reservation, so idle listeners never starve busy ones of
 * a shared limit); when it says no, the connection is held in its slot,
 * as it would wait in the backlog, and nothing more is posted until
 * sl_listener_resume().  An accepted socket is handed to a loop of the group (round
 * robin) and attached to that loop's port there, after AcceptEx completed.
 * A pipe handle can be attached to one port only, for good, so a pipe
 * instance is attached when it is made to the port of the loop that will
 * serve its client (round robin over the group, as sockets are handed
 * out); its ConnectNamedPipe completes on that loop, which sends the
 * result to the owner loop in a task (the slots are the owner's), and the
 * owner hands the connection back to that loop like a socket.
 *
 * Lifetime (listener_common.h): each posted accept (its OVERLAPPED is
 * inside the listener) and each hand-off holds a reference too.
 */
#include "win.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sddl.h>

#include "listener_common.h"
#include "log.h"
#include "resolver.h"

#define SL_ACCEPT_POSTED 8      /* accepts kept posted per listener */
#define SL_PIPE_BUF 65536
/* AcceptEx: room for each address plus 16 bytes, as it requires. */
#define SL_ADDR_ROOM ((DWORD)sizeof(struct sockaddr_storage) + 16)

enum { SLOT_FREE, SLOT_POSTED, SLOT_HELD };

struct accept_slot {
	sl_op op;
	sl_listener *l;
	int state;
	SOCKET sock; /* TCP: the socket AcceptEx fills */
	HANDLE pipe; /* pipe: the instance ConnectNamedPipe waits on */
	sl_loop *loop; /* pipe: whose port the instance is attached to */
	int skip;      /* pipe: the instance is in skip mode */
	sl_task done;  /* pipe: the completion, to the owner loop */
	int err;       /* pipe: its status */
	char buf[2 * (sizeof(struct sockaddr_storage) + 16)];
	struct sockaddr_storage peer, local; /* a held connection's */
	int peer_len, local_len;
};

struct sl_listener {
	struct sl_listener_base b; /* first: see listener_common.h */
	SOCKET sock;
	int family;
	HANDLE first_pipe; /* pipes: the instance that holds the name */
	HANDLE spare_pipe; /* pipes: the second, created at open */
	sl_loop *spare_loop; /* pipes: whose port the spare is attached to */
	int first_skip, spare_skip; /* pipes: those two are in skip mode */
	struct sl_pipe_sd sd;
	int replace; /* pipes: joined our own running listener's name */

	/* Owner loop only: */
	struct accept_slot slots[SL_ACCEPT_POSTED];
	sl_timer timer;
	int paused; /* out of resources: the timer refills */
	int gated;  /* the gate said no: sl_listener_resume refills */
	int attached;
	int guarded; /* tests: allocated in the quarantine's pages */
	int skip;    /* TCP: the socket is in skip mode (sl_op_started) */
};

struct handoff {
	sl_task task;
	sl_listener *l;
	sl_loop *loop;
	void *token;
	SOCKET sock;
	int peer_len, local_len;
	struct sockaddr_storage peer, local;
};

static const char *win_text(DWORD e)
{
	static _Thread_local char msg[256];

	if (FormatMessageA(FORMAT_MESSAGE_FROM_SYSTEM |
				   FORMAT_MESSAGE_IGNORE_INSERTS,
			   NULL, e, 0, msg, sizeof msg, NULL) == 0)
		snprintf(msg, sizeof msg, "error %lu", (unsigned long)e);
	msg[strcspn(msg, "\r\n")] = '\0';
	return msg;
}

/* ---- creating and freeing ----------------------------------------------- */

sl_listener *sl_os_listener_new(void)
{
	int guarded;
	sl_listener *l = sl_net_qalloc(sizeof *l, &guarded);

	if (l != NULL) {
		l->guarded = guarded;
		l->sock = INVALID_SOCKET;
		l->first_pipe = INVALID_HANDLE_VALUE;
		l->spare_pipe = INVALID_HANDLE_VALUE;
	}
	return l;
}

void sl_os_listener_free(sl_listener *l)
{
	sl_pipe_sd_free(&l->sd);
	sl_net_qfree(l, sizeof *l, l->guarded);
}

int sl_os_listener_is_open(const sl_listener *l)
{
	return l->sock != INVALID_SOCKET ||
	       l->first_pipe != INVALID_HANDLE_VALUE;
}

void sl_os_listener_close(sl_listener *l)
{
	if (l->sock != INVALID_SOCKET) {
		closesocket(l->sock);
		l->sock = INVALID_SOCKET;
	}
	if (l->first_pipe != INVALID_HANDLE_VALUE) {
		CloseHandle(l->first_pipe);
		l->first_pipe = INVALID_HANDLE_VALUE;
	}
	if (l->spare_pipe != INVALID_HANDLE_VALUE) {
		CloseHandle(l->spare_pipe);
		l->spare_pipe = INVALID_HANDLE_VALUE;
	}
}

/* ---- named pipe instances ------------------------------------------------- */

HANDLE sl_pipe_create_instance(const char *path, int first,
			       const SECURITY_ATTRIBUTES *sa)
{
	/* Message type read as bytes: a zero-byte write reaches the reader
	 * as a zero-byte read, the half-close (see stream_win.c).  Remote
	 * clients are refused: a pipe listener serves this machine. */
	wchar_t wpath[SL_EP_PATH_MAX];

	/* Config text is UTF-8; the pipe name is UTF-16 to Windows. */
	if (MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, path, -1, wpath,
				SL_EP_PATH_MAX) == 0) {
		SetLastError(ERROR_INVALID_NAME);
		return INVALID_HANDLE_VALUE;
	}
	/* WRITE_DAC: a reload may give the pipe a new descriptor
	 * (pipe_start). */
	return CreateNamedPipeW(wpath,
				PIPE_ACCESS_DUPLEX | FILE_FLAG_OVERLAPPED |
					WRITE_DAC |
					(first ? FILE_FLAG_FIRST_PIPE_INSTANCE
					       : 0),
				PIPE_TYPE_MESSAGE | PIPE_READMODE_BYTE |
					PIPE_WAIT | PIPE_REJECT_REMOTE_CLIENTS,
				PIPE_UNLIMITED_INSTANCES, SL_PIPE_BUF,
				SL_PIPE_BUF, 0, (LPSECURITY_ATTRIBUTES)sa);
}

sl_pipe_create_fn sl_pipe_create_hook = sl_pipe_create_instance;

static BOOL WINAPI connect_named_pipe(HANDLE h, OVERLAPPED *ov)
{
	return ConnectNamedPipe(h, ov);
}

sl_connect_pipe_fn sl_ConnectNamedPipe = connect_named_pipe;

static void default_pipe_name(char *buf, size_t len, unsigned attempt,
			      void *arg)
{
	static volatile LONG counter;

	(void)attempt;
	(void)arg;
	snprintf(buf, len, "\\\\.\\pipe\\sluice-%lu-%ld-%lu",
		 (unsigned long)GetCurrentProcessId(),
		 (long)InterlockedIncrement(&counter),
		 (unsigned long)GetTickCount());
}

HANDLE sl_pipe_create_unique(char *path, size_t pathlen, sl_pipe_name_fn fn,
			     void *arg, int *err)
{
	unsigned i;

	if (fn == NULL)
		fn = default_pipe_name;
	for (i = 0; i < SL_PIPE_NAME_TRIES; i++) {
		HANDLE h;
		DWORD e;

		fn(path, pathlen, i, arg);
		h = sl_pipe_create_hook(path, 1, NULL);
		if (h != INVALID_HANDLE_VALUE) {
			*err = 0;
			return h;
		}
		e = GetLastError();
		/* Windows refuses a taken name with FIRST_PIPE_INSTANCE as
		 * access denied (or pipe busy): try another name. */
		if (e != ERROR_ACCESS_DENIED && e != ERROR_PIPE_BUSY) {
			*err = sl_win_err(e);
			return INVALID_HANDLE_VALUE;
		}
	}
	*err = -EADDRINUSE;
	return INVALID_HANDLE_VALUE;
}

/* ---- opening ------------------------------------------------------------ */

int sl_os_listener_open_tcp(sl_listener *l, const struct sl_addr *a,
			    char *err, size_t errlen)
{
	BOOL on = TRUE;

	l->family = a->ss.ss_family;
	l->sock = sl_win_socket(l->family);
	if (l->sock == INVALID_SOCKET) {
		DWORD e = (DWORD)WSAGetLastError();

		return sl_errf(err, errlen, sl_win_err(e), "%s: socket: %s",
			       l->b.name, win_text(e));
	}
	/*
	 * Windows binds a port that only TIME_WAIT connections use without
	 * any option, and its SO_REUSEADDR would let another socket take the
	 * port over, so none is set (SO_EXCLUSIVEADDRUSE would refuse the
	 * rebind after a restart while TIME_WAIT connections remain).  Wine
	 * maps the default to Linux's, where TIME_WAIT blocks the bind, and
	 * maps SO_REUSEADDR to Linux's, which allows exactly that rebind:
	 * under wine, set it.
	 */
	if (sl_under_wine())
		setsockopt(l->sock, SOL_SOCKET, SO_REUSEADDR,
			   (const char *)&on, sizeof on);
	if (l->family == AF_INET6)
		setsockopt(l->sock, IPPROTO_IPV6, IPV6_V6ONLY,
			   (const char *)&on, sizeof on);
	if (bind(l->sock, (const struct sockaddr *)&a->ss, (int)a->len) != 0) {
		DWORD e = (DWORD)WSAGetLastError();

		return sl_errf(err, errlen, sl_win_err(e), "%s: bind: %s",
			       l->b.name, win_text(e));
	}
	if (listen(l->sock, l->b.backlog) != 0) {
		DWORD e = (DWORD)WSAGetLastError();

		return sl_errf(err, errlen, sl_win_err(e), "%s: listen: %s",
			       l->b.name, win_text(e));
	}
	return 0;
}

/* ---- pipe security ------------------------------------------------------ */

/*
 * Every instance after the first needs FILE_CREATE_PIPE_INSTANCE on the
 * pipe, which is FILE_APPEND_DATA (0x4) and so inside FILE_GENERIC_WRITE
 * (GW maps to it), FILE_ALL_ACCESS and GENERIC_ALL: whoever holds it can
 * create a rival instance of the name and serve sluice's clients.  What
 * clients get by default is read and write without it (0x0012019b).  An
 * administrator or SYSTEM can rewrite any DACL anyway: not worth a
 * warning.
 */
#define SL_PIPE_SDDL_DEFAULT                                                   \
	"D:(A;;FA;;;SY)(A;;FA;;;BA)(A;;0x0012019b;;;IU)(A;;0x0012019b;;;AU)"
#define SL_PIPE_CREATE_RIGHTS                                                  \
	(FILE_CREATE_PIPE_INSTANCE | GENERIC_WRITE | GENERIC_ALL |             \
	 MAXIMUM_ALLOWED)

void sl_pipe_sd_free(struct sl_pipe_sd *sd)
{
	if (sd->parsed != NULL)
		LocalFree(sd->parsed);
	if (sd->dflt != NULL)
		LocalFree(sd->dflt);
	free(sd->acl);
	free(sd->user);
	memset(sd, 0, sizeof *sd);
}

/* The process token's user: the account sluice runs as.  0 or -errno. */
static int token_user(TOKEN_USER **out)
{
	HANDLE tok;
	DWORD len = 0;
	TOKEN_USER *tu;
	int r = 0;

	if (!OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &tok))
		return sl_win_err(GetLastError());
	GetTokenInformation(tok, TokenUser, NULL, 0, &len);
	tu = len > 0 ? malloc(len) : NULL;
	if (tu == NULL)
		r = -ENOMEM;
	else if (!GetTokenInformation(tok, TokenUser, tu, len, &len))
		r = sl_win_err(GetLastError());
	CloseHandle(tok);
	if (r < 0)
		free(tu);
	else
		*out = tu;
	return r;
}

/* Does the allowed ACE ace let someone other than me (or SYSTEM, or the
 * administrators) create instances? */
static int grants_create(const ACE_HEADER *ace, PSID me)
{
	const ACCESS_ALLOWED_ACE *a = (const ACCESS_ALLOWED_ACE *)ace;
	PSID sid = (PSID)&a->SidStart;

	return ace->AceType == ACCESS_ALLOWED_ACE_TYPE &&
	       (a->Mask & SL_PIPE_CREATE_RIGHTS) != 0 && !EqualSid(sid, me) &&
	       !IsWellKnownSid(sid, WinLocalSystemSid) &&
	       !IsWellKnownSid(sid, WinBuiltinAdministratorsSid);
}

/* sd->acl: an allow-everything ACE for the token user, then src's ACEs
 * in their order (ours first: no deny in src can lock sluice out of its
 * own pipe).  0 or -errno. */
static int build_acl(struct sl_pipe_sd *sd, const ACL *src)
{
	PSID me = sd->user->User.Sid;
	DWORD size = sizeof(ACL) + sizeof(ACCESS_ALLOWED_ACE) +
		     GetLengthSid(me);
	DWORD rev = src->AclRevision > ACL_REVISION ? src->AclRevision
						    : ACL_REVISION;
	WORD i;

	size += src->AclSize > sizeof(ACL) ? src->AclSize - sizeof(ACL) : 0;
	size = (size + 3) & ~3u;
	if ((sd->acl = calloc(1, size)) == NULL)
		return -ENOMEM;
	if (!InitializeAcl(sd->acl, size, rev) ||
	    !AddAccessAllowedAce(sd->acl, rev, FILE_ALL_ACCESS, me))
		return sl_win_err(GetLastError());
	for (i = 0; i < src->AceCount; i++) {
		ACE_HEADER *ace;

		if (!GetAce((PACL)src, i, (void **)&ace) ||
		    !AddAce(sd->acl, rev, MAXDWORD, ace, ace->AceSize))
			return sl_win_err(GetLastError());
		if (grants_create(ace, me) && !sd->rival) {
			LPSTR text = NULL;

			sd->rival = 1;
			if (ConvertSidToStringSidA(
				    (PSID) & ((ACCESS_ALLOWED_ACE *)ace)->SidStart,
				    &text)) {
				snprintf(sd->rival_sid, sizeof sd->rival_sid,
					 "%s", text);
				LocalFree(text);
			}
		}
	}
	return 0;
}

int sl_pipe_security(const char *sddl, struct sl_pipe_sd *sd, char *err,
		     size_t errlen)
{
	BOOL present = FALSE, defaulted = FALSE;
	PACL dacl = NULL;
	PSID sid;
	int r;

	memset(sd, 0, sizeof *sd);
	if ((r = token_user(&sd->user)) < 0)
		return sl_errf(err, errlen, r, "cannot tell sluice's account: %s",
			       sl_strerror(r));
	if (sddl != NULL &&
	    !ConvertStringSecurityDescriptorToSecurityDescriptorA(
		    sddl, SDDL_REVISION_1, &sd->parsed, NULL)) {
		DWORD e = GetLastError();

		sl_pipe_sd_free(sd);
		return sl_errf(err, errlen, -EINVAL,
			       "security '%s' is not a valid SDDL string: %s",
			       sddl, win_text(e));
	}
	if (sd->parsed != NULL)
		GetSecurityDescriptorDacl(sd->parsed, &present, &dacl,
					  &defaulted);
	if (!present) {
		/* No D: part (or no string): the default DACL. */
		if (!ConvertStringSecurityDescriptorToSecurityDescriptorA(
			    SL_PIPE_SDDL_DEFAULT, SDDL_REVISION_1, &sd->dflt,
			    NULL) ||
		    !GetSecurityDescriptorDacl(sd->dflt, &present, &dacl,
					       &defaulted)) {
			r = sl_win_err(GetLastError());
			goto fail;
		}
	}
	InitializeSecurityDescriptor(&sd->abs, SECURITY_DESCRIPTOR_REVISION);
	if (dacl == NULL) {
		/* A NULL DACL ("D:NO_ACCESS_CONTROL") lets anyone do anything,
		 * sluice included: taken as written. */
		sd->rival = 1;
		snprintf(sd->rival_sid, sizeof sd->rival_sid, "everyone");
	} else if ((r = build_acl(sd, dacl)) < 0) {
		goto fail;
	}
	SetSecurityDescriptorDacl(&sd->abs, TRUE, sd->acl, FALSE);
	if (sd->parsed != NULL) {
		if (GetSecurityDescriptorOwner(sd->parsed, &sid, &defaulted) &&
		    sid != NULL)
			SetSecurityDescriptorOwner(&sd->abs, sid, defaulted);
		if (GetSecurityDescriptorGroup(sd->parsed, &sid, &defaulted) &&
		    sid != NULL)
			SetSecurityDescriptorGroup(&sd->abs, sid, defaulted);
	}
	sd->sa.nLength = sizeof sd->sa;
	sd->sa.lpSecurityDescriptor = &sd->abs;
	sd->sa.bInheritHandle = FALSE;
	return 0;
fail:
	sl_pipe_sd_free(sd);
	return sl_errf(err, errlen, r, "cannot build the pipe's security: %s",
		       sl_strerror(r));
}

static int open_pipe(sl_listener *l, const sl_listen_opts *opts, char *err,
		     size_t errlen)
{
	char why[256];
	int r, replace = opts != NULL && opts->replace;
	DWORD e;

	r = sl_pipe_security(opts != NULL ? opts->security : NULL, &l->sd, why,
			     sizeof why);
	if (r < 0)
		return sl_errf(err, errlen, r, "%s: %s", l->b.name, why);
	if (l->sd.rival)
		sl_warn("%s: the security descriptor lets %s create instances "
			"of the pipe (FILE_CREATE_PIPE_INSTANCE, part of GW, "
			"GA, FA and FW): such an account can serve sluice's "
			"clients itself",
			l->b.name, l->sd.rival_sid[0] ? l->sd.rival_sid
						       : "another account");
	/* The first instance claims the name: no other process can have
	 * created it before us, nor squat it while we run.  A listener
	 * that replaces our own running one joins the name it holds and
	 * sets the new descriptor when it starts (set_new_dacl). */
	l->first_pipe = sl_pipe_create_hook(l->b.ep.path, !replace,
					    &l->sd.sa);
	if (l->first_pipe == INVALID_HANDLE_VALUE) {
		e = GetLastError();
		if (e == ERROR_ACCESS_DENIED || e == ERROR_PIPE_BUSY)
			return sl_errf(err, errlen, -EADDRINUSE,
				       "%s: the pipe name is already in use by "
				       "another process",
				       l->b.name);
		return sl_errf(err, errlen, sl_win_err(e), "%s: %s", l->b.name,
			       win_text(e));
	}
	l->replace = replace;
	/* Every later instance needs FILE_CREATE_PIPE_INSTANCE: found out
	 * now, not when the second client comes. */
	l->spare_pipe = sl_pipe_create_hook(l->b.ep.path, 0, &l->sd.sa);
	if (l->spare_pipe == INVALID_HANDLE_VALUE) {
		e = GetLastError();
		return sl_errf(err, errlen, sl_win_err(e),
			       "%s: cannot create a second instance of the "
			       "pipe (its security descriptor must let "
			       "sluice's own account create instances): %s",
			       l->b.name, win_text(e));
	}
	return 0;
}

static int no_unix(const sl_listener *l, char *err, size_t errlen)
{
	return sl_errf(err, errlen, SL_EUNSUPP,
		       "%s: Unix sockets are not served on Windows; use a "
		       "named pipe (pipe:\\\\.\\pipe\\NAME)",
		       l->b.name);
}

int sl_os_listener_open(sl_listener *l, const sl_listen_opts *opts,
			char *err, size_t errlen)
{
	if (l->b.ep.kind == SL_EP_PIPE)
		return open_pipe(l, opts, err, errlen);
	if (l->b.ep.kind == SL_EP_SYSTEMD)
		return sl_errf(err, errlen, SL_EUNSUPP,
			       "%s: systemd socket activation is for Linux; "
			       "on Windows listen on tcp:// or pipe:",
			       l->b.name);
	return no_unix(l, err, errlen);
}

/* systemd passes no sockets on Windows (net.h). */
int sl_listener_inherit(char *err, size_t errlen)
{
	if (err != NULL && errlen > 0)
		err[0] = '\0';
	return 0;
}

int sl_listener_activated(void)
{
	return 0;
}

size_t sl_listener_unused(char *buf, size_t len)
{
	if (len > 0)
		buf[0] = '\0';
	return 0;
}

/* Nothing to look at here: a Unix socket path is refused as by open. */
int sl_os_listener_check_path(sl_listener *l, const sl_listen_opts *opts,
			      char *msg, size_t msglen)
{
	(void)opts;
	return no_unix(l, msg, msglen);
}

/* ---- accepting (owner loop) --------------------------------------------- */

static void fill(sl_listener *l);

static void pause_accepting(sl_listener *l, int err, int count)
{
	if (l->paused)
		return;
	l->paused = 1;
	if (count)
		atomic_fetch_add(&l->b.fd_pauses, 1);
	sl_warn("%s: accept: %s; pausing for %d ms", l->b.name,
		sl_strerror(err), SL_ACCEPT_PAUSE_MS);
	sl_timer_start(&l->timer, SL_ACCEPT_PAUSE_MS);
}

static void handoff_run(sl_task *t, int status)
{
	struct handoff *h = t->data;
	sl_listener *l = h->l;
	sl_stream *s;
	int r;

	if (status != 0) {
		closesocket(h->sock);
		if (l->b.gate != NULL)
			l->b.cb(l, NULL, h->token);
	} else {
		r = sl_stream_open_socket(h->loop, h->sock,
					  (struct sockaddr *)&h->peer,
					  h->peer_len,
					  (struct sockaddr *)&h->local,
					  h->local_len, &s);
		if (r == 0) {
			l->b.cb(l, s, h->token);
		} else {
			sl_warn("%s: dropping an accepted connection: %s",
				l->b.name, sl_strerror(r));
			if (l->b.gate != NULL)
				l->b.cb(l, NULL, h->token);
		}
	}
	free(h);
	sl_listener_unref(l);
}

static void on_accepted(sl_loop *loop, sl_op *op, int err, size_t n);

/* A pipe client, on its way to the loop whose port has its instance. */
struct pipe_handoff {
	sl_task task;
	sl_listener *l;
	sl_loop *loop;
	void *token;
	HANDLE pipe;
	int skip;
};

static void pipe_handoff_run(sl_task *t, int status)
{
	struct pipe_handoff *h = t->data;
	sl_listener *l = h->l;
	sl_stream *s = NULL;
	int r = -ECANCELED;

	if (status == 0)
		r = sl_stream_open_pipe(h->loop, h->pipe, h->skip,
					l->b.ep.path, &s);
	else
		CloseHandle(h->pipe);
	if (r == 0) {
		l->b.cb(l, s, h->token);
	} else {
		if (status == 0)
			sl_warn("%s: dropping a pipe client: %s", l->b.name,
				sl_strerror(r));
		if (l->b.gate != NULL)
			l->b.cb(l, NULL, h->token);
	}
	free(h);
	sl_listener_unref(l);
}

/* Owner loop: slot a's client goes to the loop that has its instance. */
static void pipe_handoff(sl_listener *l, struct accept_slot *a, void *token)
{
	struct pipe_handoff *h = calloc(1, sizeof *h);

	if (h == NULL) {
		CloseHandle(a->pipe);
		a->pipe = INVALID_HANDLE_VALUE;
		if (l->b.gate != NULL)
			l->b.cb(l, NULL, token);
		pause_accepting(l, -ENOMEM, 1);
		return;
	}
	h->l = l;
	h->loop = a->loop;
	h->token = token;
	h->pipe = a->pipe;
	h->skip = a->skip;
	a->pipe = INVALID_HANDLE_VALUE;
	sl_task_init(&h->task, pipe_handoff_run, h);
	sl_listener_ref(l);
	sl_loop_post(h->loop, &h->task);
}

#define SL_PIPE_REARM_TRIES 8

/*
 * ConnectNamedPipe on a's instance; its error (0: TRUE).  ERROR_NO_DATA
 * is a client that came and went before we looked: a normal event, not
 * a failure.  DisconnectNamedPipe readies the instance for the next
 * client and it waits again at once (the answer is the same after a few
 * such clients in a row only if they keep coming and going).
 */
static DWORD connect_instance(struct accept_slot *a)
{
	DWORD e = 0;
	int i;

	for (i = 0; i < SL_PIPE_REARM_TRIES; i++) {
		e = sl_ConnectNamedPipe(a->pipe, &a->op.ov) ? 0
							     : GetLastError();
		if (e != ERROR_NO_DATA)
			break;
		DisconnectNamedPipe(a->pipe);
		sl_op_init(&a->op, on_accepted, a);
	}
	return e;
}

/* Post one AcceptEx or ConnectNamedPipe on a.  0, or -errno. */
static int post_one(sl_listener *l, struct accept_slot *a)
{
	DWORD e;

	sl_op_init(&a->op, on_accepted, a);
	if (l->b.ep.kind == SL_EP_TCP) {
		DWORD got = 0;
		BOOL ok;
		int r;

		a->sock = sl_win_socket(l->family);
		if (a->sock == INVALID_SOCKET)
			return sl_win_err((unsigned long)WSAGetLastError());
		ok = sl_AcceptEx(l->sock, a->sock, a->buf, 0, SL_ADDR_ROOM,
				 SL_ADDR_ROOM, &got, &a->op.ov);
		e = ok ? 0 : (DWORD)WSAGetLastError();
		/* A client already waiting: in skip mode, no packet; the
		 * loop runs on_accepted after this batch, not in here. */
		if ((r = sl_op_started(l->b.loop, &a->op, ok, e, l->skip)) <
		    0) {
			closesocket(a->sock);
			a->sock = INVALID_SOCKET;
			return r;
		}
		a->state = SLOT_POSTED;
		sl_listener_ref(l);
		return 0;
	}
	if (l->first_pipe != INVALID_HANDLE_VALUE) {
		a->pipe = l->first_pipe; /* attached by sl_os_listener_start */
		a->loop = l->b.loop;
		a->skip = l->first_skip;
		l->first_pipe = INVALID_HANDLE_VALUE;
	} else if (l->spare_pipe != INVALID_HANDLE_VALUE) {
		a->pipe = l->spare_pipe; /* the same */
		a->loop = l->spare_loop;
		a->skip = l->spare_skip;
		l->spare_pipe = INVALID_HANDLE_VALUE;
	} else {
		int r;

		a->pipe = sl_pipe_create_hook(l->b.ep.path, 0, &l->sd.sa);
		if (a->pipe == INVALID_HANDLE_VALUE)
			return sl_win_err(GetLastError());
		a->loop = sl_group_next(l->b.group);
		if ((r = sl_loop_associate(a->loop, a->pipe)) < 0) {
			CloseHandle(a->pipe);
			a->pipe = INVALID_HANDLE_VALUE;
			return r;
		}
		a->skip = sl_win_pipe_skip(a->pipe);
	}
	e = connect_instance(a);
	/*
	 * ERROR_IO_PENDING: the kernel queues the packet.  TRUE (e == 0): it
	 * queues one too, except in skip mode.  ERROR_PIPE_CONNECTED, the
	 * client came first, is an error status (STATUS_PIPE_CONNECTED) and
	 * queues none in either mode.  Where none comes, make one: exactly
	 * one completion per ConnectNamedPipe.  Not sl_op_started: that
	 * works on its loop's thread only, and the instance's loop is
	 * another thread's in general; an at-once connect is rare enough
	 * for a packet.  Wine 8 never answers TRUE (a client that came
	 * first is ERROR_PIPE_CONNECTED, one that came and went leaves the
	 * listen pending, not ERROR_NO_DATA); Windows may (tests:
	 * sl_ConnectNamedPipe).
	 */
	if (e == ERROR_PIPE_CONNECTED || (e == 0 && a->skip)) {
		if (sl_win_post_hook(a->loop, &a->op, 0, 0) < 0) {
			CloseHandle(a->pipe);
			a->pipe = INVALID_HANDLE_VALUE;
			return -ENOMEM;
		}
	} else if (e != 0 && e != ERROR_IO_PENDING) {
		CloseHandle(a->pipe);
		a->pipe = INVALID_HANDLE_VALUE;
		return sl_win_err(e);
	}
	a->state = SLOT_POSTED;
	sl_listener_ref(l);
	return 0;
}

/*
 * A connection arrived in slot a: ask the gate, then hand it to its loop.
 * 1 when it went, 0 when the gate said no (it stays held in the slot, as
 * a connection would wait in the backlog, until sl_listener_resume()).
 */
static int deliver(sl_listener *l, struct accept_slot *a)
{
	void *token = NULL;

	if (l->b.gate != NULL && !l->b.gate(l, &token)) {
		a->state = SLOT_HELD;
		l->gated = 1;
		return 0;
	}
	a->state = SLOT_FREE;
	if (l->b.ep.kind == SL_EP_PIPE) {
		pipe_handoff(l, a, token);
	} else {
		struct handoff *h = calloc(1, sizeof *h);

		if (h == NULL) {
			closesocket(a->sock);
			a->sock = INVALID_SOCKET;
			if (l->b.gate != NULL)
				l->b.cb(l, NULL, token);
			pause_accepting(l, -ENOMEM, 1);
			return 1;
		}
		h->peer_len = a->peer_len;
		h->local_len = a->local_len;
		memcpy(&h->peer, &a->peer, sizeof h->peer);
		memcpy(&h->local, &a->local, sizeof h->local);
		h->l = l;
		h->sock = a->sock;
		h->token = token;
		a->sock = INVALID_SOCKET;
		h->loop = sl_group_next(l->b.group);
		sl_task_init(&h->task, handoff_run, h);
		sl_listener_ref(l);
		sl_loop_post(h->loop, &h->task);
	}
	return 1;
}

static void fill(sl_listener *l)
{
	int i, r;

	/* Held connections first, in slot order, while the gate allows. */
	for (i = 0; i < SL_ACCEPT_POSTED; i++) {
		if (l->b.closed)
			return;
		if (l->slots[i].state == SLOT_HELD &&
		    !deliver(l, &l->slots[i]))
			return;
	}
	l->gated = 0;
	for (i = 0; i < SL_ACCEPT_POSTED; i++) {
		struct accept_slot *a = &l->slots[i];

		if (l->b.closed || l->paused || l->gated)
			return;
		if (a->state != SLOT_FREE)
			continue;
		r = post_one(l, a);
		if (r < 0) {
			pause_accepting(l, r, r == -ENOBUFS || r == -EMFILE ||
						      r == -ENOMEM);
			return;
		}
	}
}

static void accepted(struct accept_slot *a, int err);

/* Owner loop: a pipe instance's completion, from its own loop. */
static void pipe_done_run(sl_task *t, int status)
{
	struct accept_slot *a = t->data;

	if (status != 0) {
		/* The owner loop is going away: nothing more to accept. */
		if (a->pipe != INVALID_HANDLE_VALUE)
			CloseHandle(a->pipe);
		a->pipe = INVALID_HANDLE_VALUE;
		a->state = SLOT_FREE;
		sl_listener_unref(a->l);
		return;
	}
	accepted(a, a->err);
}

static void on_accepted(sl_loop *loop, sl_op *op, int err, size_t n)
{
	struct accept_slot *a = op->data;

	(void)n;
	if (loop != a->l->b.loop) {
		/* A pipe instance's loop: the slot is the owner's. */
		a->err = err;
		sl_task_init(&a->done, pipe_done_run, a);
		sl_loop_post(a->l->b.loop, &a->done);
		return;
	}
	accepted(a, err);
}

static void accepted(struct accept_slot *a, int err)
{
	sl_listener *l = a->l;

	a->state = SLOT_FREE;
	if (l->b.closed || err != 0) {
		if (a->sock != INVALID_SOCKET)
			closesocket(a->sock);
		if (a->pipe != INVALID_HANDLE_VALUE)
			CloseHandle(a->pipe);
		a->sock = INVALID_SOCKET;
		a->pipe = INVALID_HANDLE_VALUE;
		/* A client that gave up before we took it costs nothing;
		 * running out of something pauses. */
		if (!l->b.closed && err != -ECONNRESET &&
		    err != -ECONNABORTED && err != -ECANCELED && err != -EPIPE)
			pause_accepting(l, err, err == -ENOBUFS ||
							err == -EMFILE ||
							err == -ENOMEM);
		goto out;
	}
	if (l->b.ep.kind == SL_EP_TCP) {
		struct sockaddr *lsa = NULL, *rsa = NULL;
		int llen = 0, rlen = 0;

		/* The accepted socket takes the listener's properties and
		 * becomes usable for getpeername, shutdown and the rest. */
		if (setsockopt(a->sock, SOL_SOCKET, SO_UPDATE_ACCEPT_CONTEXT,
			       (const char *)&l->sock, sizeof l->sock) != 0) {
			closesocket(a->sock);
			a->sock = INVALID_SOCKET;
			goto out;
		}
		sl_GetAcceptExSockaddrs(a->buf, 0, SL_ADDR_ROOM, SL_ADDR_ROOM,
					&lsa, &llen, &rsa, &rlen);
		a->peer_len = a->local_len = 0;
		if (rsa != NULL && rlen > 0 && (size_t)rlen <= sizeof a->peer) {
			memcpy(&a->peer, rsa, (size_t)rlen);
			a->peer_len = rlen;
		}
		if (lsa != NULL && llen > 0 &&
		    (size_t)llen <= sizeof a->local) {
			memcpy(&a->local, lsa, (size_t)llen);
			a->local_len = llen;
		}
	}
	deliver(l, a);
out:
	/* Refill while the posted accept's reference still holds l: once
	 * closed, that reference may be the last, and l is gone after it. */
	if (!l->b.closed)
		fill(l);
	sl_listener_unref(l);
}

static void on_pause_over(sl_timer *t)
{
	sl_listener *l = t->data;

	l->paused = 0;
	fill(l);
}

/*
 * The pipe's two instances go to the loop's port.  A listener that
 * replaces our own running one (a reload changed its security) joined
 * that one's name, and on Windows an instance after the first keeps the
 * descriptor the first gave the pipe: the new one is set on the pipe now,
 * when the new listener takes over (the old one is closing).  0 or -errno.
 */
static int pipe_start(sl_listener *l)
{
	int r;

	l->spare_loop = sl_group_next(l->b.group);
	if ((r = sl_loop_associate(l->b.loop, l->first_pipe)) < 0 ||
	    (r = sl_loop_associate(l->spare_loop, l->spare_pipe)) < 0)
		return r;
	l->first_skip = sl_win_pipe_skip(l->first_pipe);
	l->spare_skip = sl_win_pipe_skip(l->spare_pipe);
	if (l->replace &&
	    !SetKernelObjectSecurity(l->first_pipe, DACL_SECURITY_INFORMATION,
				     &l->sd.abs))
		sl_warn("%s: cannot set the new security descriptor on the "
			"pipe: %s",
			l->b.name, win_text(GetLastError()));
	return 0;
}

void sl_os_listener_start(sl_listener *l)
{
	int i, r = 0;

	sl_timer_init(l->b.loop, &l->timer, on_pause_over, l);
	for (i = 0; i < SL_ACCEPT_POSTED; i++) {
		l->slots[i].l = l;
		l->slots[i].sock = INVALID_SOCKET;
		l->slots[i].pipe = INVALID_HANDLE_VALUE;
	}
	if (l->sock != INVALID_SOCKET) {
		r = sl_loop_associate(l->b.loop, (HANDLE)l->sock);
		if (r == 0)
			l->skip = sl_win_socket_skip(l->sock, l->family);
	} else if (l->first_pipe != INVALID_HANDLE_VALUE) {
		r = pipe_start(l);
	}
	l->attached = 1;
	if (r < 0)
		sl_error("%s: cannot attach to the loop: %s", l->b.name,
			 sl_strerror(r));
	else
		fill(l);
}

void sl_os_listener_resume(sl_listener *l)
{
	if (l->attached)
		fill(l);
}

void sl_os_listener_stop(sl_listener *l, int status)
{
	int i;

	if (status == 0 && l->attached)
		sl_timer_stop(&l->timer);
	/* Posted accepts complete, cancelled, and drop their references. */
	for (i = 0; i < SL_ACCEPT_POSTED; i++) {
		struct accept_slot *a = &l->slots[i];

		if (a->state == SLOT_HELD) {
			/* Never admitted: closed like a backlog at close. */
			if (a->sock != INVALID_SOCKET)
				closesocket(a->sock);
			if (a->pipe != INVALID_HANDLE_VALUE)
				CloseHandle(a->pipe);
			a->sock = INVALID_SOCKET;
			a->pipe = INVALID_HANDLE_VALUE;
			a->state = SLOT_FREE;
		} else if (a->state == SLOT_POSTED &&
			   a->pipe != INVALID_HANDLE_VALUE) {
			CancelIoEx(a->pipe, &a->op.ov);
			CloseHandle(a->pipe);
			a->pipe = INVALID_HANDLE_VALUE;
		}
	}
}

int sl_os_listener_sockname(const sl_listener *l, struct sockaddr_storage *ss,
			    socklen_t *len)
{
	if (l->sock == INVALID_SOCKET)
		return -EBADF;
	if (getsockname(l->sock, (struct sockaddr *)ss, len) != 0)
		return sl_win_err((unsigned long)WSAGetLastError());
	return 0;
}
