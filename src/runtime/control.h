/*
 * Job control: the socket a running job listens on, the status files that
 * `eddy list` reads, and the client side that `eddy info/savepoint/stop/
 * cancel` use (DESIGN.md "Interfaces").
 *
 * Everything lives in one folder per user: $XDG_RUNTIME_DIR/eddy, else
 * ~/.eddy/run (/tmp/eddy-<uid> without a home). It is created 0700 and
 * refused when it belongs to someone else or is open to group or others,
 * since whoever can reach a job's socket can stop it. Per job there are:
 *
 *   <id>.sock   the control socket (0600) while the job runs
 *   <id>.json   its status: name, id, state, pid, start and end times,
 *               savepoint, log, and at the end the last `info`; written
 *               atomically (temporary file + rename) at start and at end
 *   <id>.log    the output of a job started with `eddy run -d`
 *
 * The protocol is one JSON object per line each way, one request per
 * connection: {"request": "info"}, {"request": "savepoint", "dir": D},
 * {"request": "stop", "savepoint_dir": D, "drain": true},
 * {"request": "cancel", "savepoint_dir": D}; the reply is
 * {"ok": true, ...} or {"ok": false, "error": "..."}. A peer whose uid is
 * neither the job's nor root's is answered with an error and nothing else.
 *
 * There is no thread: the job's executor polls the socket between rounds
 * (and while it waits for time), so every request is handled on the thread
 * that owns the job's state. A request the job cannot answer at once (a
 * savepoint) keeps its connection open until it can.
 */
#ifndef EDDY_RUNTIME_CONTROL_H
#define EDDY_RUNTIME_CONTROL_H

#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

#include "runtime/job.h"
#include "util/err.h"

typedef struct eddy_control eddy_control;
typedef struct eddy_control_req eddy_control_req;

/* ---- the folder ---- */

/* The control folder for this user, created (0700) if missing and checked
 * with eddy_control_check_dir, into buf. */
int eddy_control_dir(char *buf, size_t n, eddy_err *err);
/* Whether dir is a folder (not a link) owned by uid with no permissions
 * for group or others; the error says what is wrong and how to fix it. */
int eddy_control_check_dir(const char *dir, uid_t uid, eddy_err *err);
/* Whether a peer with uid peer may control a job of uid self: the same
 * user, or root. */
int eddy_control_peer_allowed(uid_t peer, uid_t self);
/* The same for the peer of a connected Unix socket (SO_PEERCRED). */
int eddy_control_check_peer(int fd, uid_t self, eddy_err *err);

/* ---- a job's socket and status (the server) ---- */

typedef struct eddy_control_config {
  const char *dir;           /* NULL: eddy_control_dir() */
  const char *id;            /* the job id: [0-9A-Za-z_-]+ */
  const char *name;          /* the job's name */
  const char *log;           /* where its output goes, or NULL */
  const char *savepoint_dir; /* the default folder for savepoints, or NULL */
  int64_t checkpoint_interval; /* ms, 0 none; for info */
  int notify_fd;             /* >= 0: "<id>\n" is written there once the
                                socket listens, and it is closed */
} eddy_control_config;

/*
 * Creates the socket (a stale one of the same id, whose process is gone,
 * is replaced; a live one is an error) and writes the status RUNNING. The
 * strings are copied.
 */
int eddy_control_open(eddy_control **out, const eddy_control_config *cfg, eddy_err *err);

const char *eddy_control_id(const eddy_control *c);
const char *eddy_control_name(const eddy_control *c);
const char *eddy_control_socket(const eddy_control *c);
/* The status file's path. */
const char *eddy_control_status_path(const eddy_control *c);
/* The configured default savepoint folder (absolute), or NULL. */
const char *eddy_control_savepoint_dir(const eddy_control *c);
/* Start time, ms since the epoch. */
int64_t eddy_control_start(const eddy_control *c);
int64_t eddy_control_checkpoint_interval(const eddy_control *c);

/* A request being handled: its name ("info", ...) and its JSON object
 * (borrowed: valid until the request is answered). */
const char *eddy_control_req_name(const eddy_control_req *r);
json_t *eddy_control_req_json(const eddy_control_req *r);

/* Answers r with the object reply (its reference is taken), closes the
 * connection and frees r. A peer that went away is not an error. */
void eddy_control_reply(eddy_control *c, eddy_control_req *r, json_t *reply);
void eddy_control_reply_error(eddy_control *c, eddy_control_req *r, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Leaves r to be answered when the job ends (eddy_control_finish): with
 * ok if it ends in state, and savepoint (copied, may be NULL) as the
 * savepoint's path. */
void eddy_control_reply_at_end(eddy_control *c, eddy_control_req *r, const char *state,
                               const char *savepoint);
/* Answers every request left to the end with an error now (the run they
 * were waiting for failed). */
void eddy_control_fail_waiting(eddy_control *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * Handles what arrived: accepts connections, reads their request lines and
 * calls fn for each complete request, waiting up to timeout_ms for the
 * first event (0: only what is there now). fn answers r, or keeps it and
 * answers later (before eddy_control_finish, which answers what is left).
 * Returns EDDY_OK; errors of single connections are answered to them.
 */
typedef void (*eddy_control_fn)(void *ud, eddy_control *c, eddy_control_req *r);
int eddy_control_poll(eddy_control *c, int timeout_ms, eddy_control_fn fn, void *ud);

/*
 * While the job does not run (a restart delay): serves requests for ms,
 * answering info with the last info and state, cancel by setting *cancel
 * (answered at the end), and the others with an error. Returns early once
 * cancelled.
 */
int eddy_control_serve_idle(eddy_control *c, int64_t ms, const char *state, int *cancel);

/* Keeps info (its reference is taken) as the job's latest, for the final
 * status and for eddy_control_serve_idle. */
void eddy_control_set_info(eddy_control *c, json_t *info);
/* The latest info, borrowed, or NULL. */
json_t *eddy_control_last_info(const eddy_control *c);

/*
 * The job ended in state (FINISHED, STOPPED, CANCELED, FAILED), with the
 * savepoint it ended on (or NULL) and, when it failed, why: writes the
 * final status, answers the requests left to the end and removes the
 * socket. Once only; later calls do nothing.
 */
int eddy_control_finish(eddy_control *c, const char *state, const char *savepoint,
                        const char *error, eddy_err *err);
int eddy_control_finished(const eddy_control *c);
/* Finishes as FAILED ("ended without a final state") if not finished,
 * then frees. NULL is fine. */
void eddy_control_close(eddy_control *c);

/* ---- a running job's side (runtime/jobctl.c) ---- */

/* Serves c from the job's executor while it runs (NULL: none). Not owned;
 * it must outlive the run. */
int eddy_job_set_control(eddy_job *job, eddy_control *c);
/* What `eddy info` shows of a job: its vertices with parallelism and
 * records, its edges and its checkpoint history. A new reference. */
json_t *eddy_job_info(eddy_job *job, const eddy_control *c);

/* A JSON string of s (NULL: null); bytes that are not UTF-8 (a file
 * name, a message quoting binary data) become '?', where json_string
 * would give up. */
json_t *eddy_control_string(const char *s);

/* ---- clients ---- */

/*
 * The jobs of folder dir: a new JSON array of their status objects, most
 * recent start first. A status RUNNING whose process is gone (its pid does
 * not exist, or its socket refuses connections) is rewritten as LOST and
 * its socket removed.
 */
int eddy_control_list(const char *dir, json_t **out, eddy_err *err);

/* Sends request (one line of JSON, without the newline) to the socket and
 * waits at most timeout_ms for the one-line reply, returned in *reply
 * (malloc'd, without the newline; the caller frees it). */
int eddy_control_request(const char *socket_path, const char *request, int timeout_ms,
                         char **reply, eddy_err *err);

#endif
