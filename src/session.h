/*
 * Sessions: one accepted client paired with one upstream connection on
 * the client's loop (session.c), and the per-loop state they share
 * (struct loop_ctx, route.h).
 */
#ifndef SL_SESSION_H
#define SL_SESSION_H

#include "route.h"

int loop_ctx_init(struct loop_ctx *lc, sl_loop *loop);
void loop_ctx_free(struct loop_ctx *lc);

/* Close every session of this loop (reason drain-timeout).  Any thread. */
void loop_ctx_abort_sessions(struct loop_ctx *lc);

/*
 * Start a session for an accepted client on the client's loop.  Consumes
 * one reference to rl->route and one admission (route_admit(), taken by
 * the listener's gate before the accept).
 */
void session_start(struct route_listen *rl, sl_stream *client);

#endif
