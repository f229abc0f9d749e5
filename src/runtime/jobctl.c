/*
 * A running job's side of job control (control.h): what the executor does
 * with the requests that arrive on its control socket.
 *
 * Requests are handled on the executor's thread between rounds, where no
 * callback runs and the job's state is consistent, so they go through the
 * same entry points the Lua API uses: eddy_job_savepoint (taken at the
 * coordinator's next tick), eddy_job_cancel (the run ends at once), and the
 * statistics and checkpoint history for info. A request that waits for a
 * savepoint is remembered here; the savepoint's completion answers it, or
 * leaves it to be answered when the job has ended (stop, cancel).
 */
#include "runtime/checkpoint.h"
#include "runtime/control.h"
#include "runtime/job_internal.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* How often the executor looks at the socket while it is busy. */
#define POLL_EVERY_MS 10
/* Checkpoints listed by info: the newest ones. */
#define INFO_HISTORY 50

enum { KIND_SAVEPOINT = 1, KIND_STOP, KIND_CANCEL };

static double mono_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

static int64_t epoch_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int eddy_job_set_control(eddy_job *job, eddy_control *c)
{
  job->control = c;
  job->control_next = 0;
  return EDDY_OK;
}

static const char *partitioning_name(eddy_partitioning p)
{
  switch (p) {
  case EDDY_PART_FORWARD: return "forward";
  case EDDY_PART_KEYED: return "keyed";
  case EDDY_PART_REBALANCE: return "rebalance";
  case EDDY_PART_BROADCAST: return "broadcast";
  }
  return "?";
}


/* A vertex's keyed state figures, summed over its subtasks: { name:
 * {estimated_keys, live_sst_bytes, memtable_bytes, block_cache_bytes} }
 * (figures a backend lacks left out), or NULL when it has none. */
static json_t *state_metrics_of(eddy_job *job, int vi)
{
  json_t *out = NULL;
  for (int i = 0; i < job->vertices[vi].parallelism; i++) {
    const eddy_task_state_metrics *sm;
    int n = eddy_job_task_state_metrics(job, vi, i, &sm);
    for (int k = 0; k < n; k++) {
      const char *names[] = {"estimated_keys", "live_sst_bytes", "memtable_bytes",
                             "block_cache_bytes"};
      int64_t values[] = {sm[k].m.estimated_keys, sm[k].m.live_sst_bytes, sm[k].m.memtable_bytes,
                          sm[k].m.block_cache_bytes};
      if (out == NULL)
        out = json_object();
      json_t *st = json_object_get(out, sm[k].name);
      if (st == NULL) {
        st = json_object();
        json_object_set_new(out, sm[k].name, st);
      }
      for (int f = 0; f < 4; f++) {
        if (values[f] < 0)
          continue;
        json_int_t sum = json_integer_value(json_object_get(st, names[f]));
        json_object_set_new(st, names[f], json_integer(sum + (json_int_t)values[f]));
      }
    }
  }
  return out;
}

static json_t *checkpoint_json(const eddy_ckpt_info *ci)
{
  static const char *const status[] = {"in progress", "completed", "failed"};
  json_t *o = json_object();
  json_object_set_new(o, "id", json_integer(ci->id));
  json_object_set_new(o, "kind", eddy_control_string(ci->kind ? ci->kind : "checkpoint"));
  json_object_set_new(o, "status", eddy_control_string(status[ci->status]));
  json_object_set_new(o, "triggered", json_integer(ci->triggered));
  json_object_set_new(o, "duration_ms", json_real(ci->duration_ms));
  json_object_set_new(o, "sync_ms", json_real(ci->sync_ms));
  json_object_set_new(o, "alignment_ms", json_real(ci->alignment_ms));
  json_object_set_new(o, "bytes", json_integer((json_int_t)ci->bytes));
  if (ci->status == EDDY_CKPT_COMPLETED)
    json_object_set_new(o, "state_size", json_integer((json_int_t)ci->state_size));
  if (ci->path)
    json_object_set_new(o, "path", eddy_control_string(ci->path));
  if (ci->failure)
    json_object_set_new(o, "failure", eddy_control_string(ci->failure));
  return o;
}

json_t *eddy_job_info(eddy_job *job, const eddy_control *c)
{
  json_t *o = json_object();
  if (c != NULL) {
    json_object_set_new(o, "id", eddy_control_string(eddy_control_id(c)));
    json_object_set_new(o, "name", eddy_control_string(eddy_control_name(c)));
    json_object_set_new(o, "start", json_integer(eddy_control_start(c)));
    if (eddy_control_savepoint_dir(c))
      json_object_set_new(o, "savepoint_dir", eddy_control_string(eddy_control_savepoint_dir(c)));
    json_object_set_new(o, "checkpoint_interval",
                        json_integer(eddy_control_checkpoint_interval(c)));
  }
  json_object_set_new(o, "now", json_integer(epoch_ms()));
  json_t *vs = json_array();
  for (int vi = 0; vi < job->nvertices; vi++) {
    const vertex *v = &job->vertices[vi];
    json_t *jv = json_object();
    uint64_t in = 0, out = 0;
    int finished = 0, with_wm = 0;
    int64_t wm = EDDY_MAX_WATERMARK;
    json_t *subtasks = json_array();
    for (int i = 0; v->tasks != NULL && i < v->parallelism; i++) {
      const eddy_task *t = &v->tasks[i];
      in += t->stats.records_in;
      out += t->stats.records_out;
      finished += t->finished;
      json_t *js = json_object();
      json_object_set_new(js, "records_in", json_integer((json_int_t)t->stats.records_in));
      json_object_set_new(js, "records_out", json_integer((json_int_t)t->stats.records_out));
      if (t->finished)
        json_object_set_new(js, "finished", json_true());
      json_array_append_new(subtasks, js);
      /* a subtask's input watermark; sources have none */
      if (!v->is_source && t->watermark != EDDY_MIN_WATERMARK) {
        with_wm++;
        if (t->watermark < wm)
          wm = t->watermark;
      }
    }
    json_object_set_new(jv, "index", json_integer(vi + 1));
    json_object_set_new(jv, "name", eddy_control_string(v->name));
    json_object_set_new(jv, "uid", eddy_control_string(v->uid));
    json_object_set_new(jv, "parallelism", json_integer(v->parallelism));
    json_object_set_new(jv, "max_parallelism", json_integer(v->max_parallelism));
    json_object_set_new(jv, "source", json_boolean(v->is_source));
    json_object_set_new(jv, "records_in", json_integer((json_int_t)in));
    json_object_set_new(jv, "records_out", json_integer((json_int_t)out));
    json_object_set_new(jv, "finished", json_integer(finished));
    /* only when every subtask has one: the minimum is the vertex's */
    if (v->tasks != NULL && with_wm == v->parallelism)
      json_object_set_new(jv, "watermark", json_integer(wm));
    json_object_set_new(jv, "subtasks", subtasks);
    json_t *state = state_metrics_of(job, vi);
    if (state != NULL)
      json_object_set_new(jv, "state", state);
    json_array_append_new(vs, jv);
  }
  json_object_set_new(o, "vertices", vs);
  json_t *es = json_array();
  for (int ei = 0; ei < job->nedges; ei++) {
    const edge *e = &job->edges[ei];
    json_t *je = json_object();
    json_object_set_new(je, "from", json_integer(e->from + 1));
    json_object_set_new(je, "to", json_integer(e->to + 1));
    json_object_set_new(je, "partitioning", eddy_control_string(partitioning_name(e->part)));
    json_array_append_new(es, je);
  }
  json_object_set_new(o, "edges", es);
  int n = eddy_job_checkpoint_count(job);
  int counts[3] = {0, 0, 0};
  json_t *history = json_array();
  for (int i = 0; i < n; i++) {
    eddy_ckpt_info ci;
    if (eddy_job_checkpoint_info(job, i, &ci) != EDDY_OK)
      continue;
    counts[ci.status]++;
    if (i >= n - INFO_HISTORY)
      json_array_append_new(history, checkpoint_json(&ci));
  }
  json_t *ck = json_object();
  json_object_set_new(ck, "in_progress", json_integer(counts[EDDY_CKPT_PENDING]));
  json_object_set_new(ck, "completed", json_integer(counts[EDDY_CKPT_COMPLETED]));
  json_object_set_new(ck, "failed", json_integer(counts[EDDY_CKPT_FAILED]));
  json_object_set_new(ck, "history", history);
  json_object_set_new(o, "checkpoints", ck);
  return o;
}

/* The savepoint a request asked for ended (on the executor's thread). */
static void savepoint_done(void *ud, int rc, const char *what)
{
  eddy_job *job = ud;
  eddy_control *c = job->control;
  eddy_control_req *r = job->control_req;
  int kind = job->control_kind;
  job->control_req = NULL;
  if (rc == EDDY_OK)
    fprintf(stderr, "eddy: savepoint written: %s\n", what);
  else
    fprintf(stderr, "eddy: savepoint failed: %s\n", what);
  if (r == NULL || c == NULL)
    return;
  if (rc != EDDY_OK) {
    if (kind == KIND_STOP)
      eddy_control_reply_error(c, r, "the savepoint failed, which fails the job: %s", what);
    else if (kind == KIND_CANCEL)
      eddy_control_reply_error(c, r, "the savepoint failed, the job was not cancelled: %s", what);
    else
      eddy_control_reply_error(c, r, "the savepoint failed: %s", what);
    return;
  }
  if (kind == KIND_SAVEPOINT) {
    json_t *o = json_object();
    json_object_set_new(o, "ok", json_true());
    json_object_set_new(o, "savepoint", eddy_control_string(what));
    eddy_control_reply(c, r, o);
  } else if (kind == KIND_STOP) {
    eddy_control_reply_at_end(c, r, "STOPPED", what);
  } else {
    eddy_job_cancel(job);
    eddy_control_reply_at_end(c, r, "CANCELED", what);
  }
}

/* Whether a savepoint could be written into dir: it, or the nearest of its
 * parents that exists (the rest is created), is a folder we may write.
 * Checked before asking, because a stop whose savepoint fails fails the
 * job: a mistyped folder must not. */
static int folder_usable(const char *dir, char *why, size_t n)
{
  char path[PATH_MAX];
  if (snprintf(path, sizeof path, "%s", dir) >= (int)sizeof path) {
    snprintf(why, n, "%.3800s...: the path is too long", dir);
    return 0;
  }
  for (;;) {
    struct stat st;
    if (stat(path, &st) == 0) {
      if (!S_ISDIR(st.st_mode)) {
        snprintf(why, n, "%.3800s: not a folder", path);
        return 0;
      }
      if (access(path, W_OK | X_OK) != 0) {
        snprintf(why, n, "%.3800s: %s", path, strerror(errno));
        return 0;
      }
      return 1;
    }
    if (errno != ENOENT) {
      snprintf(why, n, "%.3800s: %s", path, strerror(errno));
      return 0;
    }
    char *slash = strrchr(path, '/');
    if (slash == NULL)
      return 1; /* relative, and nothing of it exists: the current folder */
    if (slash == path) {
      path[1] = '\0';
    } else {
      *slash = '\0';
    }
  }
}

static void ask_savepoint(eddy_job *job, eddy_control *c, eddy_control_req *r, const char *dir,
                          int stop, int drain, int kind)
{
  if (job->control_req != NULL || job->cancelled) {
    eddy_control_reply_error(c, r, "the job is busy with an earlier request (%s); try again when "
                             "it is done", job->cancelled ? "cancel" : "a savepoint");
    return;
  }
  char why[4096];
  if (!folder_usable(dir, why, sizeof why)) {
    eddy_control_reply_error(c, r, "cannot write a savepoint into %s", why);
    return;
  }
  eddy_err refused;
  if (eddy_job_savepoint(job, dir, stop, drain, savepoint_done, job, &refused) != EDDY_OK) {
    eddy_control_reply_error(c, r, "%s", refused.msg);
    return;
  }
  job->control_req = r;
  job->control_kind = kind;
}

static const char *state_now(const eddy_job *job)
{
  if (job->cancelled)
    return "CANCELLING";
  if (job->stop_after != 0 || job->draining ||
      (job->control_req != NULL && job->control_kind == KIND_STOP))
    return "STOPPING";
  return "RUNNING";
}

static void handle(void *ud, eddy_control *c, eddy_control_req *r)
{
  eddy_job *job = ud;
  const char *name = eddy_control_req_name(r);
  json_t *req = eddy_control_req_json(r);
  if (strcmp(name, "info") == 0) {
    json_t *o = eddy_job_info(job, c);
    json_object_set_new(o, "ok", json_true());
    json_object_set_new(o, "state", eddy_control_string(state_now(job)));
    eddy_control_reply(c, r, o);
    return;
  }
  const char *key = strcmp(name, "savepoint") == 0 ? "dir" : "savepoint_dir";
  json_t *jdir = json_object_get(req, key);
  if (jdir != NULL && !json_is_null(jdir) && (!json_is_string(jdir) || !*json_string_value(jdir))) {
    eddy_control_reply_error(c, r, "\"%s\" must be a folder", key);
    return;
  }
  const char *dir = json_string_value(jdir);
  if (strcmp(name, "cancel") == 0) {
    if (dir != NULL) {
      ask_savepoint(job, c, r, dir, 0, 0, KIND_CANCEL);
    } else {
      eddy_job_cancel(job);
      eddy_control_reply_at_end(c, r, "CANCELED", NULL);
    }
    return;
  }
  if (dir == NULL)
    dir = eddy_control_savepoint_dir(c);
  if (dir == NULL) {
    eddy_control_reply_error(c, r, "no savepoint folder given, and the job has no savepoint_dir "
                             "(state.savepoints.dir) to default to");
    return;
  }
  if (strcmp(name, "savepoint") == 0)
    ask_savepoint(job, c, r, dir, 0, 0, KIND_SAVEPOINT);
  else
    ask_savepoint(job, c, r, dir, 1, json_is_true(json_object_get(req, "drain")), KIND_STOP);
}

int jobctl_tick(eddy_job *job)
{
  double now = mono_ms();
  if (now < job->control_next)
    return EDDY_OK;
  job->control_next = now + POLL_EVERY_MS;
  return eddy_control_poll(job->control, 0, handle, job);
}

void jobctl_wait(eddy_job *job, int64_t ms)
{
  eddy_control_poll(job->control, (int)ms, handle, job);
  job->control_next = mono_ms() + POLL_EVERY_MS;
}

void jobctl_detach(eddy_job *job, int rc)
{
  eddy_control *c = job->control;
  if (c == NULL)
    return;
  eddy_control_req *r = job->control_req;
  job->control_req = NULL;
  if (r != NULL) {
    /* its savepoint was never taken: no callback comes after the run */
    if (rc == EDDY_OK)
      eddy_control_reply_error(c, r, "the job finished before the savepoint was taken");
    else
      eddy_control_reply_error(c, r, "the job ended before the savepoint completed: %s",
                               job->err.msg);
  }
  eddy_control_set_info(c, eddy_job_info(job, c));
  if (rc != EDDY_OK && !(rc == EDDY_EINTR && job->cancelled))
    eddy_control_fail_waiting(c, "the job failed: %s", job->err.msg);
}
