/*
 * Job graph, channels and the inline executor: see job.h.
 *
 * A channel keeps its frames serialized back to back in one buffer that is
 * reset whenever it has been read to the end. With the inline executor a
 * channel is drained in the same round it is filled, so the buffer stays
 * small and no record costs an allocation.
 */
#include "runtime/job.h"
#include "runtime/job_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "state/keygroup.h"
#include "util/interrupt.h"

/* Runs one callback of subtask t, marking it as the one that may emit:
 * a `out` kept by a user function and called from another operator (or
 * after the job) must not write into channels another subtask is reading. */
int job_called(eddy_job *job, int rc)
{
  job->running = NULL;
  return rc;
}

vertex *job_vertex_of(const eddy_task *t) { return &t->job->vertices[t->vertex]; }

int eddy_job_new(eddy_job **out, eddy_err *err)
{
  eddy_job *job = calloc(1, sizeof *job);
  if (job == NULL)
    return eddy_seterr(err, EDDY_ENOMEM, "out of memory creating a job");
  *out = job;
  return EDDY_OK;
}

/* Asks an open subtask for its keyed state metrics; they stay as they
 * are when it cannot answer (no memory). */
static void refresh_state_metrics(vertex *v, eddy_task *t)
{
  if (v->ops->state_metrics == NULL)
    return;
  if (t->state_metrics == NULL &&
      (t->state_metrics = calloc(EDDY_TASK_STATE_METRICS_MAX, sizeof *t->state_metrics)) == NULL)
    return;
  int n = v->ops->state_metrics(t->ud, t, t->state_metrics, EDDY_TASK_STATE_METRICS_MAX);
  t->nstate_metrics = n < 0 ? 0 : n > EDDY_TASK_STATE_METRICS_MAX ? EDDY_TASK_STATE_METRICS_MAX : n;
}

int eddy_job_task_state_metrics(eddy_job *job, int vi, int index,
                                const eddy_task_state_metrics **out)
{
  *out = NULL;
  if (vi < 0 || vi >= job->nvertices)
    return 0;
  vertex *v = &job->vertices[vi];
  if (v->tasks == NULL || index < 0 || index >= v->parallelism)
    return 0;
  eddy_task *t = &v->tasks[index];
  if (t->opened)
    refresh_state_metrics(v, t);
  *out = t->state_metrics;
  return t->nstate_metrics;
}

static void free_tasks(vertex *v)
{
  if (v->tasks == NULL)
    return;
  for (int i = 0; i < v->parallelism; i++) {
    eddy_task *t = &v->tasks[i];
    free(t->inputs);
    free(t->batch);
    eddy_buf_free(&t->channel_state);
    ckpt_task_free(t);
    free(t->state_metrics);
    for (int o = 0; o < t->noutputs; o++)
      free(t->outputs[o].channels);
    free(t->outputs);
  }
  free(v->tasks);
  v->tasks = NULL;
}

void eddy_job_free(eddy_job *job)
{
  if (job == NULL)
    return;
  ckpt_free(job);
  for (int i = 0; i < job->nvertices; i++) {
    free_tasks(&job->vertices[i]);
    free(job->vertices[i].name);
    free(job->vertices[i].uid);
  }
  for (size_t i = 0; i < job->nchannels; i++) {
    eddy_buf_free(&job->channels[i]->data);
    free(job->channels[i]);
  }
  free(job->channels);
  free(job->vertices);
  free(job->savepoint_at_end);
  free(job->edges);
  free(job);
}

const char *eddy_job_errmsg(const eddy_job *job) { return job->err.msg; }

int eddy_job_add_vertex(eddy_job *job, const eddy_vertex_config *cfg, int *id)
{
  if (job->ran)
    return eddy_seterr(&job->err, EDDY_EINVAL, "a job that has run cannot change");
  const char *name = cfg->name ? cfg->name : "vertex";
  if (cfg->parallelism < 1 || cfg->ops == NULL)
    return eddy_seterr(&job->err, EDDY_EINVAL, "%s: parallelism must be at least 1", name);
  const char *bad = eddy_key_group_check(cfg->max_parallelism, cfg->parallelism);
  if (bad != NULL)
    return eddy_seterr(&job->err, EDDY_EINVAL, "%s: %s (parallelism %d, max parallelism %d)",
                       name, bad, cfg->parallelism, cfg->max_parallelism);
  vertex *vs = realloc(job->vertices, (size_t)(job->nvertices + 1) * sizeof *vs);
  if (vs == NULL)
    return eddy_seterr(&job->err, EDDY_ENOMEM, "out of memory adding %s", name);
  job->vertices = vs;
  vertex *v = &vs[job->nvertices];
  memset(v, 0, sizeof *v);
  if ((v->name = strdup(name)) == NULL)
    return eddy_seterr(&job->err, EDDY_ENOMEM, "out of memory adding %s", name);
  char uid[32];
  snprintf(uid, sizeof uid, "v%d", job->nvertices);
  if ((v->uid = strdup(cfg->uid ? cfg->uid : uid)) == NULL) {
    free(v->name);
    return eddy_seterr(&job->err, EDDY_ENOMEM, "out of memory adding %s", name);
  }
  v->parallelism = cfg->parallelism;
  v->max_parallelism = cfg->max_parallelism;
  v->is_source = cfg->is_source;
  v->ops = cfg->ops;
  v->ud = cfg->ud;
  *id = job->nvertices++;
  return EDDY_OK;
}

int eddy_job_connect(eddy_job *job, int from, int to, eddy_partitioning part,
                     int *output, int *input)
{
  if (job->ran)
    return eddy_seterr(&job->err, EDDY_EINVAL, "a job that has run cannot change");
  if (from < 0 || to >= job->nvertices || from >= to)
    return eddy_seterr(&job->err, EDDY_EINVAL,
                       "an edge must go from an earlier vertex to a later one (%d -> %d)",
                       from, to);
  vertex *src = &job->vertices[from], *dst = &job->vertices[to];
  if (dst->is_source)
    return eddy_seterr(&job->err, EDDY_EINVAL, "%s is a source and takes no input", dst->name);
  if (part == EDDY_PART_FORWARD && src->parallelism != dst->parallelism)
    return eddy_seterr(&job->err, EDDY_EINVAL,
                       "forward edge %s -> %s needs equal parallelism (%d vs %d)",
                       src->name, dst->name, src->parallelism, dst->parallelism);
  edge *es = realloc(job->edges, (size_t)(job->nedges + 1) * sizeof *es);
  if (es == NULL)
    return eddy_seterr(&job->err, EDDY_ENOMEM, "out of memory connecting %s", dst->name);
  job->edges = es;
  edge *e = &es[job->nedges++];
  e->from = from;
  e->to = to;
  e->part = part;
  e->output = src->noutputs++;
  e->input = dst->ninputs++;
  *output = e->output;
  *input = e->input;
  return EDDY_OK;
}

/* Creates the subtasks of every vertex and the channels between them. */
static int build_tasks(eddy_job *job)
{
  for (int vi = 0; vi < job->nvertices; vi++) {
    vertex *v = &job->vertices[vi];
    if ((v->tasks = calloc((size_t)v->parallelism, sizeof *v->tasks)) == NULL)
      goto oom;
    for (int i = 0; i < v->parallelism; i++) {
      eddy_task *t = &v->tasks[i];
      t->job = job;
      t->vertex = vi;
      t->index = i;
      t->noutputs = v->noutputs;
      if (v->noutputs > 0 &&
          (t->outputs = calloc((size_t)v->noutputs, sizeof *t->outputs)) == NULL)
        goto oom;
      if (!v->is_source && (t->batch = calloc(INLINE_BATCH, sizeof *t->batch)) == NULL)
        goto oom;
      t->next_input = 0;
      t->watermark = EDDY_MIN_WATERMARK;
      t->wake_at = EDDY_NEVER;
      t->wait_until = INT64_MIN;
    }
  }
  for (int ei = 0; ei < job->nedges; ei++) {
    edge *e = &job->edges[ei];
    vertex *src = &job->vertices[e->from], *dst = &job->vertices[e->to];
    for (int p = 0; p < src->parallelism; p++) {
      task_output *o = &src->tasks[p].outputs[e->output];
      o->part = e->part;
      o->nchannels = dst->parallelism;
      o->consumer_max_parallelism = dst->max_parallelism;
      /* Spread the first records of several producers over different
       * consumers; Flink starts at a random channel, eddy deterministically. */
      o->next = p % dst->parallelism;
      if ((o->channels = calloc((size_t)dst->parallelism, sizeof *o->channels)) == NULL)
        goto oom;
    }
  }
  /* Channels: one per (edge, producer, consumer) that can carry records. */
  for (int ei = 0; ei < job->nedges; ei++) {
    edge *e = &job->edges[ei];
    vertex *src = &job->vertices[e->from], *dst = &job->vertices[e->to];
    for (int p = 0; p < src->parallelism; p++) {
      for (int c = 0; c < dst->parallelism; c++) {
        if (e->part == EDDY_PART_FORWARD && p != c)
          continue;
        channel *ch = calloc(1, sizeof *ch);
        if (ch == NULL)
          goto oom;
        channel **all = realloc(job->channels, (job->nchannels + 1) * sizeof *all);
        if (all == NULL) {
          free(ch);
          goto oom;
        }
        job->channels = all;
        job->channels[job->nchannels++] = ch;
        ch->input = e->input;
        ch->first = e->part == EDDY_PART_BROADCAST;
        ch->watermark = EDDY_MIN_WATERMARK;
        ch->aligned = 1;
        ch->producer_vertex = e->from;
        ch->producer_index = p;
        src->tasks[p].outputs[e->output].channels[c] = ch;
        eddy_task *consumer = &dst->tasks[c];
        channel **ins = realloc(consumer->inputs,
                                (size_t)(consumer->ninputs + 1) * sizeof *ins);
        if (ins == NULL)
          goto oom;
        consumer->inputs = ins;
        consumer->inputs[consumer->ninputs++] = ch;
        consumer->first_inputs += ch->first;
      }
    }
  }
  return EDDY_OK;
oom:
  return eddy_seterr(&job->err, EDDY_ENOMEM, "out of memory building the job's subtasks");
}

int job_channel_push(eddy_err *err, channel *ch, eddy_frame_kind kind,
                        int64_t ts, int kg, const void *key, size_t klen,
                        const void *val, size_t vlen)
{
  frame_header h = {ts, kg, (uint32_t)klen, (uint32_t)vlen, (uint8_t)kind};
  if (klen > UINT32_MAX || vlen > UINT32_MAX)
    return eddy_seterr(err, EDDY_ELIMIT, "a record larger than 4 GiB cannot be sent");
  if (eddy_buf_reserve(&ch->data, sizeof h + klen + vlen) != EDDY_OK)
    return eddy_seterr(err, EDDY_ENOMEM, "out of memory queueing a record");
  eddy_buf_append(&ch->data, &h, sizeof h);
  eddy_buf_append(&ch->data, key, klen);
  eddy_buf_append(&ch->data, val, vlen);
  ch->frames++;
  return EDDY_OK;
}

/* A blocked channel (aligned checkpoint) holds its frames back; a barrier
 * that jumped the queue (unaligned) comes first. */
static int channel_has_frame(const channel *ch)
{
  return ch->priority != 0 || (!ch->blocked && ch->read < ch->data.len);
}

static void channel_pop(channel *ch, eddy_frame *f)
{
  if (ch->priority != 0) {
    memset(f, 0, sizeof *f);
    f->kind = EDDY_FRAME_BARRIER;
    f->input = ch->input;
    f->timestamp = ch->priority;
    f->key_group = 1; /* it jumped the queue: see checkpoint.c */
    ch->priority = 0;
    return;
  }
  frame_header h;
  ch->frames--;
  memcpy(&h, ch->data.data + ch->read, sizeof h);
  const unsigned char *p = ch->data.data + ch->read + sizeof h;
  f->kind = (eddy_frame_kind)h.kind;
  f->input = ch->input;
  f->timestamp = h.timestamp;
  f->key_group = h.key_group;
  f->key.data = p;
  f->key.len = h.key_len;
  f->value.data = p + h.key_len;
  f->value.len = h.value_len;
  ch->read += sizeof h + h.key_len + h.value_len;
}

/* The buffer may be reset only once the frame just popped is no longer in
 * use, so this runs after the consumer's callback returns. */
static void channel_compact(channel *ch)
{
  if (ch->read == ch->data.len) {
    ch->read = 0;
    eddy_buf_reset(&ch->data);
  }
}

/* Only the subtask whose callback is running may emit, and not once it has
 * finished: its consumers have been told its input ended. */
static int check_emitter(eddy_task *t)
{
  const char *name = t->job->vertices[t->vertex].name;
  if (t->finished)
    return eddy_seterr(&t->emit_err, EDDY_EINVAL,
                       "%s has reached the end of its input: it cannot emit any more "
                       "(records emitted in close are lost in Flink too)", name);
  if (t->job->running != t)
    return eddy_seterr(&t->emit_err, EDDY_EINVAL,
                       "the output of %s was used while it was not running "
                       "(an `out` kept and called from another operator or after the job?)",
                       name);
  return EDDY_OK;
}

int eddy_task_emit(eddy_task *t, int output, int64_t ts, const void *key,
                   size_t key_len, const void *value, size_t value_len)
{
  eddy_err *err = &t->emit_err;
  int rc = check_emitter(t);
  if (rc != EDDY_OK)
    return rc;
  if (output < 0 || output >= t->noutputs)
    return eddy_seterr(err, EDDY_EINVAL, "%s has no output %d",
                       t->job->vertices[t->vertex].name, output);
  task_output *o = &t->outputs[output];
  int kg = -1;
  switch (o->part) {
  case EDDY_PART_FORWARD:
    rc = job_channel_push(err, o->channels[t->index], EDDY_FRAME_RECORD, ts, -1, NULL, 0,
                      value, value_len);
    break;
  case EDDY_PART_KEYED:
    rc = eddy_key_group(key, key_len, o->consumer_max_parallelism, &kg);
    if (rc == EDDY_EINVAL)
      return eddy_seterr(err, rc, "a record's key must not be nil");
    if (rc != EDDY_OK)
      return eddy_seterr(err, rc, "a record's key is not a complete value");
    rc = job_channel_push(err,
                      o->channels[eddy_operator_index(kg, o->consumer_max_parallelism,
                                                      o->nchannels)],
                      EDDY_FRAME_RECORD, ts, kg, key, key_len, value, value_len);
    break;
  case EDDY_PART_REBALANCE: {
    channel *ch = o->channels[o->next];
    o->next = (o->next + 1) % o->nchannels;
    rc = job_channel_push(err, ch, EDDY_FRAME_RECORD, ts, -1, NULL, 0, value, value_len);
    break;
  }
  case EDDY_PART_BROADCAST:
    for (int c = 0; c < o->nchannels && rc == EDDY_OK; c++)
      rc = job_channel_push(err, o->channels[c], EDDY_FRAME_RECORD, ts, -1, NULL, 0, value,
                        value_len);
    break;
  default:
    return eddy_seterr(err, EDDY_EINVAL, "unknown partitioning");
  }
  if (rc == EDDY_OK)
    t->stats.records_out++;
  return rc;
}

const char *eddy_task_emit_errmsg(const eddy_task *t) { return t->emit_err.msg; }

/* Sends a control frame (watermark, idle, active) on every channel of an
 * output, or of every output when output < 0. The runtime's own
 * forwarding comes here directly; callbacks go through the checked
 * eddy_task_emit_* wrappers. */
static int emit_control(eddy_task *t, int output, eddy_frame_kind kind, int64_t ts)
{
  int rc;
  int first = output < 0 ? 0 : output, last = output < 0 ? t->noutputs - 1 : output;
  if (output >= t->noutputs)
    return eddy_seterr(&t->emit_err, EDDY_EINVAL, "%s has no output %d",
                       t->job->vertices[t->vertex].name, output);
  for (int o = first; o <= last; o++) {
    task_output *out = &t->outputs[o];
    for (int c = 0; c < out->nchannels; c++) {
      if (out->channels[c] == NULL)
        continue;
      if ((rc = job_channel_push(&t->emit_err, out->channels[c], kind, ts, -1, NULL, 0, NULL, 0)) != EDDY_OK)
        return rc;
    }
  }
  return EDDY_OK;
}

int eddy_task_emit_watermark(eddy_task *t, int output, int64_t wm)
{
  int rc = check_emitter(t);
  if (rc != EDDY_OK)
    return rc;
  if (output < 0)
    return eddy_seterr(&t->emit_err, EDDY_EINVAL, "no output %d", output);
  return emit_control(t, output, EDDY_FRAME_WATERMARK, wm);
}

int eddy_task_emit_status(eddy_task *t, int output, int idle)
{
  int rc = check_emitter(t);
  if (rc != EDDY_OK)
    return rc;
  if (output < 0)
    return eddy_seterr(&t->emit_err, EDDY_EINVAL, "no output %d", output);
  return emit_control(t, output, idle ? EDDY_FRAME_IDLE : EDDY_FRAME_ACTIVE, EDDY_NO_TIMESTAMP);
}

static int64_t wall_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t job_now(const eddy_job *job)
{
  return job->manual_clock ? job->clock : wall_ms();
}

int64_t eddy_task_now(const eddy_task *t) { return job_now(t->job); }

void eddy_task_wake_at(eddy_task *t, int64_t at)
{
  if (at < t->wake_at)
    t->wake_at = at;
}

void eddy_task_wait_until(eddy_task *t, int64_t at) { t->wait_until = at; }

int64_t eddy_task_watermark(const eddy_task *t) { return t->watermark; }

int eddy_job_use_manual_clock(eddy_job *job, int64_t start)
{
  if (job->ran)
    return eddy_seterr(&job->err, EDDY_EINVAL, "a job that has run cannot change");
  job->manual_clock = 1;
  job->clock = start;
  return EDDY_OK;
}

int eddy_task_seterr(eddy_task *t, int code, const char *fmt, ...)
{
  eddy_err *err = &t->job->err;
  if (err->code != EDDY_OK)
    return code; /* keep the first failure: later ones are its consequences */
  va_list ap;
  va_start(ap, fmt);
  eddy_vseterr(err, code, fmt, ap);
  va_end(ap);
  return code;
}

int eddy_task_index(const eddy_task *t) { return t->index; }

int eddy_task_parallelism(const eddy_task *t)
{
  return t->job->vertices[t->vertex].parallelism;
}

int eddy_task_vertex(const eddy_task *t) { return t->vertex; }

const char *eddy_task_name(const eddy_task *t) { return t->job->vertices[t->vertex].name; }

void eddy_task_key_groups(const eddy_task *t, int *max_parallelism, int *first,
                          int *last)
{
  vertex *v = &t->job->vertices[t->vertex];
  *max_parallelism = v->max_parallelism;
  eddy_key_group_range(v->max_parallelism, v->parallelism, t->index, first, last);
}

int eddy_job_vertex_count(const eddy_job *job) { return job->nvertices; }

int eddy_job_task_stats(const eddy_job *job, int vi, int index, eddy_task_stats *stats)
{
  if (vi < 0 || vi >= job->nvertices)
    return EDDY_EINVAL;
  vertex *v = &job->vertices[vi];
  if (index < 0 || index >= v->parallelism || v->tasks == NULL)
    return EDDY_EINVAL;
  *stats = v->tasks[index].stats;
  return EDDY_OK;
}

int job_fail(eddy_job *job, eddy_task *t, int rc, const char *what)
{
  if (job->err.code == EDDY_OK)
    eddy_seterr(&job->err, rc, "%s (subtask %d): %s failed: %s",
                job->vertices[t->vertex].name, t->index + 1, what, eddy_strerror(rc));
  return rc;
}

/* End of a subtask's input: let it emit its last records, then tell every
 * consumer that this producer is done. */
static int advance_watermark(eddy_job *job, eddy_task *t, int64_t wm);
static int change_status(eddy_job *job, eddy_task *t, int idle);

static int finish_task(eddy_job *job, eddy_task *t)
{
  vertex *v = &job->vertices[t->vertex];
  int rc;
  /* A bounded source's end is the end of event time (Flink's sources emit
   * MAX_WATERMARK when they finish); for other subtasks every input has
   * ended, which is the same (and covers inputs that ended idle). */
  if (t->idle && (rc = change_status(job, t, 0)) != EDDY_OK)
    return rc;
  if ((rc = advance_watermark(job, t, EDDY_MAX_WATERMARK)) != EDDY_OK)
    return rc;
  if (v->ops->finish && (rc = CALL(job, t, v->ops->finish(t->ud, t))) != EDDY_OK)
    return job_fail(job, t, rc, "finish");
  if ((rc = ckpt_task_finishing(job, t)) != EDDY_OK)
    return rc;
  for (int o = 0; o < t->noutputs; o++) {
    task_output *out = &t->outputs[o];
    for (int c = 0; c < out->nchannels; c++) {
      if (out->channels[c] == NULL)
        continue;
      if ((rc = job_channel_push(&job->err, out->channels[c], EDDY_FRAME_END,
                             EDDY_NO_TIMESTAMP, -1, NULL, 0, NULL, 0)) != EDDY_OK)
        return rc;
    }
  }
  t->finished = 1;
  return EDDY_OK;
}

/* The valve's output moved: hand it to the subtask, whose chain forwards
 * it; without a callback the runtime forwards it itself. */
static int advance_watermark(eddy_job *job, eddy_task *t, int64_t wm)
{
  vertex *v = &job->vertices[t->vertex];
  int rc;
  if (wm <= t->watermark)
    return EDDY_OK;
  t->watermark = wm;
  if (v->ops->watermark == NULL)
    rc = emit_control(t, -1, EDDY_FRAME_WATERMARK, wm) == EDDY_OK
             ? EDDY_OK
             : eddy_seterr(&job->err, EDDY_ENOMEM, "%s", t->emit_err.msg);
  else if ((rc = CALL(job, t, v->ops->watermark(t->ud, t, wm))) != EDDY_OK)
    rc = job_fail(job, t, rc, "watermark");
  return rc;
}

static int change_status(eddy_job *job, eddy_task *t, int idle)
{
  vertex *v = &job->vertices[t->vertex];
  t->idle = idle;
  if (v->ops->status == NULL)
    return emit_control(t, -1, idle ? EDDY_FRAME_IDLE : EDDY_FRAME_ACTIVE, EDDY_NO_TIMESTAMP) == EDDY_OK
               ? EDDY_OK
               : eddy_seterr(&job->err, EDDY_ENOMEM, "%s", t->emit_err.msg);
  int rc = CALL(job, t, v->ops->status(t->ud, t, idle));
  return rc == EDDY_OK ? rc : job_fail(job, t, rc, "status");
}

/* The minimum over aligned channels, if it moves the output forward. */
static int valve_emit_min(eddy_job *job, eddy_task *t)
{
  int found = 0;
  int64_t min = EDDY_MAX_WATERMARK;
  for (int i = 0; i < t->ninputs; i++) {
    channel *ch = t->inputs[i];
    if (!ch->idle && ch->aligned) {
      found = 1;
      if (ch->watermark < min)
        min = ch->watermark;
    }
  }
  return found ? advance_watermark(job, t, min) : EDDY_OK;
}

/* Flink's StatusWatermarkValve.inputWatermark: a watermark counts only
 * from an active channel and only if it moves that channel forward. */
static int valve_watermark(eddy_job *job, eddy_task *t, channel *ch, int64_t wm)
{
  if (t->idle || ch->idle || wm <= ch->watermark)
    return EDDY_OK;
  ch->watermark = wm;
  if (!ch->aligned && wm >= t->watermark)
    ch->aligned = 1;
  return valve_emit_min(job, t);
}

/* valve_watermark for a watermark that stays in its batch: the valve's new
 * output, if it moved, in *out (and as the subtask's watermark). */
static int valve_take(eddy_task *t, channel *ch, int64_t wm, int64_t *out)
{
  if (t->idle || ch->idle || wm <= ch->watermark)
    return 0;
  ch->watermark = wm;
  if (!ch->aligned && wm >= t->watermark)
    ch->aligned = 1;
  int found = 0;
  int64_t min = EDDY_MAX_WATERMARK;
  for (int i = 0; i < t->ninputs; i++) {
    channel *c = t->inputs[i];
    if (!c->idle && c->aligned) {
      found = 1;
      if (c->watermark < min)
        min = c->watermark;
    }
  }
  if (!found || min <= t->watermark)
    return 0;
  t->watermark = *out = min;
  return 1;
}

/* Flink's StatusWatermarkValve.inputWatermarkStatus. */
static int valve_status(eddy_job *job, eddy_task *t, channel *ch, int idle)
{
  if (idle && !ch->idle) {
    ch->idle = 1;
    ch->aligned = 0;
    int active = 0;
    for (int i = 0; i < t->ninputs; i++)
      active += !t->inputs[i]->idle;
    int rc = EDDY_OK;
    if (active == 0) {
      /* No channel will advance any more: flush to the highest watermark
       * any of them reached, if the one that just went idle held the
       * minimum. */
      if (ch->watermark == t->watermark) {
        int64_t max = EDDY_MIN_WATERMARK;
        for (int i = 0; i < t->ninputs; i++)
          if (t->inputs[i]->watermark > max)
            max = t->inputs[i]->watermark;
        rc = advance_watermark(job, t, max);
      }
      return rc != EDDY_OK ? rc : change_status(job, t, 1);
    }
    return ch->watermark == t->watermark ? valve_emit_min(job, t) : EDDY_OK;
  }
  if (!idle && ch->idle) {
    ch->idle = 0;
    /* caught up channels count again; a lagging one waits until it is */
    if (ch->watermark >= t->watermark)
      ch->aligned = 1;
    if (t->idle)
      return change_status(job, t, 0);
  }
  return EDDY_OK;
}

static int control_frame(eddy_job *job, eddy_task *t, channel *ch, const eddy_frame *f)
{
  int rc;
  switch (f->kind) {
  case EDDY_FRAME_BARRIER:
    return ckpt_barrier(job, t, ch, f);
  case EDDY_FRAME_WATERMARK:
    return valve_watermark(job, t, ch, f->timestamp);
  case EDDY_FRAME_IDLE:
    return valve_status(job, t, ch, 1);
  case EDDY_FRAME_ACTIVE:
    return valve_status(job, t, ch, 0);
  case EDDY_FRAME_END:
    ch->ended = 1;
    t->ended_inputs++;
    if ((rc = ckpt_input_ended(job, t, ch)) != EDDY_OK)
      return rc;
    /* A finished producer holds nothing back (it sent the maximum
     * watermark before, as Flink's sources do; this covers one that went
     * idle first, whose maximum the valve ignored). */
    if (ch->idle) {
      ch->idle = 0;
      if (t->idle && (rc = change_status(job, t, 0)) != EDDY_OK)
        return rc;
    }
    if (ch->watermark < EDDY_MAX_WATERMARK) {
      ch->watermark = EDDY_MAX_WATERMARK;
      ch->aligned = 1;
      return valve_emit_min(job, t);
    }
    return EDDY_OK;
  case EDDY_FRAME_RECORD:
    break;
  }
  return EDDY_OK;
}

/* Takes one frame from each non-empty input channel in turn until all are
 * empty, handing the records over in batches. A control frame (watermark,
 * status, end) ends the batch: the records before it are processed first,
 * as they arrived first. A batch's frames point into the channels, so these
 * are compacted only after the callback. Sets *progress if it handled any
 * frame. */
/*
 * Inputs are read round robin, a frame at a time, except broadcast inputs:
 * what they hold is read first. Any interleaving is one Flink could
 * produce; this one makes a connected operator see the rules (the
 * broadcast side) that arrived with the data before the data, every run.
 */
static channel *first_ready(eddy_task *t)
{
  if (t->first_inputs == 0)
    return NULL;
  for (int i = 0; i < t->ninputs; i++)
    if (t->inputs[i]->first && channel_has_frame(t->inputs[i]))
      return t->inputs[i];
  return NULL;
}

static int drain_task(eddy_job *job, eddy_task *t, int *progress)
{
  vertex *v = &job->vertices[t->vertex];
  int idle = 0;
  while (idle < t->ninputs) {
    int n = 0, records = 0;
    eddy_frame control = {0};
    channel *control_ch = NULL;
    idle = 0;
    /* While aligning, smaller batches let aligned_timeout act in time. */
    int limit = INLINE_BATCH;
    if (t->ckpt_id != 0) {
      int rc = ckpt_alignment_check(job, t);
      if (rc != EDDY_OK)
        return rc;
      limit = ALIGNING_BATCH;
    }
    while (n < limit && idle < t->ninputs) {
      channel *ch = first_ready(t);
      if (ch == NULL) {
        ch = t->inputs[t->next_input];
        t->next_input = (t->next_input + 1) % t->ninputs;
      }
      if (!channel_has_frame(ch)) {
        idle++;
        continue;
      }
      idle = 0;
      eddy_frame *f = &t->batch[n];
      channel_pop(ch, f);
      if (ch->recording != 0) {
        int rc = ckpt_record(job, t, ch, f);
        if (rc != EDDY_OK)
          return rc;
      }
      if (f->kind == EDDY_FRAME_RECORD) {
        n++;
        records++;
      } else if (f->kind == EDDY_FRAME_WATERMARK && v->ops->watermark != NULL) {
        /* With a watermark after every record (eddy's default), ending the
         * batch at each would hand records over one by one: the valve's
         * advance rides in the batch instead, in order. */
        int64_t wm;
        if (valve_take(t, ch, f->timestamp, &wm)) {
          f->timestamp = wm;
          n++;
        }
      } else {
        control = *f;
        control_ch = ch;
        break;
      }
    }
    int rc = EDDY_OK;
    if (n > 0) {
      *progress = 1;
      t->stats.records_in += (uint64_t)records;
      if ((rc = CALL(job, t, v->ops->process(t->ud, t, t->batch, n))) != EDDY_OK)
        rc = job_fail(job, t, rc, "process");
    }
    if (rc == EDDY_OK && control_ch != NULL) {
      *progress = 1;
      idle = 0;
      rc = control_frame(job, t, control_ch, &control);
    }
    for (int i = 0; i < t->ninputs; i++)
      channel_compact(t->inputs[i]);
    if (rc != EDDY_OK)
      return rc;
  }
  if (!t->finished && t->ended_inputs == t->ninputs) {
    *progress = 1;
    return finish_task(job, t);
  }
  return EDDY_OK;
}

/* Waits for processing time to reach `until`: the manual clock jumps
 * there; the system clock is slept on, in slices short enough to notice an
 * interrupt. */
static void wait_for_time(eddy_job *job, int64_t now, int64_t until)
{
  if (job->manual_clock) {
    job->clock = until;
    return;
  }
  int64_t ms = until - now;
  if (ms > 100)
    ms = 100;
  if (job->control != NULL) {
    jobctl_wait(job, ms); /* a request wakes it up at once */
    return;
  }
  struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static int run_inline(eddy_job *job)
{
  int rc;
  for (;;) {
    if (eddy_interrupt_pending())
      return eddy_seterr(&job->err, EDDY_EINTR, "interrupted");
    /* job control: between rounds, where no callback runs */
    if (job->control != NULL && (rc = jobctl_tick(job)) != EDDY_OK)
      return rc;
    int64_t now = job_now(job);
    int running = 0, progress = 0;
    /* A round: due alarms and the sources' polls, then the coordinator,
     * then every other subtask drains its inputs. Triggering between the
     * two puts barriers behind the records just read, so they travel
     * through queues as they do when operators lag behind their sources. */
    int sources_left = 0, sources_at_end = 0;
    for (int pass = 0; pass < 2; pass++) {
      if (pass == 1 && job->ckpt != NULL && (rc = ckpt_tick(job, now, &progress)) != EDDY_OK)
        return rc;
      if (job->cancelled)
        return eddy_seterr(&job->err, EDDY_EINTR, "cancelled");
      if (job->stopped)
        return EDDY_OK;
      for (int vi = 0; vi < job->nvertices; vi++) {
        vertex *v = &job->vertices[vi];
        for (int i = 0; i < v->parallelism; i++) {
          eddy_task *t = &v->tasks[i];
          if (t->finished)
            continue;
          if (pass == 0) {
            if (t->wake_at <= now && v->ops->alarm) {
              t->wake_at = EDDY_NEVER;
              progress = 1;
              if ((rc = CALL(job, t, v->ops->alarm(t->ud, t, now))) != EDDY_OK)
                return job_fail(job, t, rc, "processing-time timers");
            }
            if (v->is_source && job->draining) {
              /* stop --drain: the input ends here */
              if ((rc = finish_task(job, t)) != EDDY_OK)
                return rc;
              progress = 1;
            } else if (v->is_source && !t->at_end && t->wait_until <= now &&
                       ckpt_source_may_poll(job, t)) {
              int finished = 0;
              uint64_t before = t->stats.records_out;
              if ((rc = CALL(job, t, v->ops->poll(t->ud, t, INLINE_BATCH, &finished))) != EDDY_OK)
                return job_fail(job, t, rc, "poll");
              /* job:run{savepoint = dir}: at the end, a savepoint rather
               * than the end of event time */
              if (finished && job->savepoint_at_end != NULL)
                t->at_end = 1;
              else if (finished && (rc = finish_task(job, t)) != EDDY_OK)
                return rc;
              if (finished || t->stats.records_out != before)
                progress = 1;
            }
            if (v->is_source && !t->finished) {
              sources_left++;
              sources_at_end += t->at_end;
            }
          } else if (!v->is_source && (rc = drain_task(job, t, &progress)) != EDDY_OK) {
            return rc;
          }
          running += pass == 1 && !t->finished;
        }
      }
      if (pass == 0 && sources_left > 0 && sources_at_end == sources_left &&
          (rc = ckpt_sources_at_end(job)) != EDDY_OK)
        return rc;
    }
    if (running == 0) {
      int done = 1;
      if (job->ckpt != NULL && (rc = ckpt_final(job, now, &done)) != EDDY_OK)
        return rc;
      if (done)
        return EDDY_OK;
    } else if (progress) {
      continue;
    }
    /* Nothing could move: everyone waits for processing time, or for the
     * checkpoint writer. */
    int writing = 0;
    int64_t next = job->ckpt != NULL ? ckpt_next_wakeup(job, &writing) : EDDY_NEVER;
    for (int vi = 0; vi < job->nvertices; vi++) {
      vertex *v = &job->vertices[vi];
      for (int i = 0; i < v->parallelism; i++) {
        eddy_task *t = &v->tasks[i];
        if (t->finished)
          continue;
        if (t->wake_at < next)
          next = t->wake_at;
        if (v->is_source && t->wait_until > now && t->wait_until < next)
          next = t->wait_until;
      }
    }
    if (writing) {
      /* Time may not jump while a checkpoint is written: its completion
       * comes first, in wall time. */
      int64_t ms = job->manual_clock || next - now > 100 ? 100 : next - now;
      if (ms > 0)
        ckpt_wait_writer(job, ms);
      continue;
    }
    if (next == EDDY_NEVER && job->manual_clock)
      return eddy_seterr(&job->err, EDDY_EINVAL,
                         "the job cannot go on: its sources have no record ready and "
                         "nothing waits for the manual clock");
    if (next == EDDY_NEVER)
      next = now + 1; /* a source with nothing ready: look again soon */
    if (next > now)
      wait_for_time(job, now, next);
  }
}

int eddy_job_run(eddy_job *job)
{
  if (job->ran)
    return eddy_seterr(&job->err, EDDY_EINVAL, "a job runs only once");
  job->ran = 1;
  if (job->nvertices == 0)
    return eddy_seterr(&job->err, EDDY_EINVAL, "the job has no sources");
  for (int vi = 0; vi < job->nvertices; vi++) {
    vertex *v = &job->vertices[vi];
    if (!v->is_source && v->ninputs == 0)
      return eddy_seterr(&job->err, EDDY_EINVAL, "%s has no input", v->name);
  }
  int rc = build_tasks(job);
  for (int vi = 0; rc == EDDY_OK && vi < job->nvertices; vi++) {
    vertex *v = &job->vertices[vi];
    for (int i = 0; rc == EDDY_OK && i < v->parallelism; i++) {
      eddy_task *t = &v->tasks[i];
      if (v->ops->open && (rc = CALL(job, t, v->ops->open(v->ud, t, &t->ud))) != EDDY_OK)
        rc = job_fail(job, t, rc, "open");
      else {
        t->opened = 1;
        rc = ckpt_task_opened(job, t);
      }
    }
  }
  /* What a restored checkpoint saw finished stays so: a finished source
   * does not read its input again. */
  for (int vi = 0; rc == EDDY_OK && vi < job->nvertices; vi++) {
    vertex *v = &job->vertices[vi];
    for (int i = 0; rc == EDDY_OK && i < v->parallelism; i++)
      if (v->tasks[i].restored_finished)
        rc = finish_task(job, &v->tasks[i]);
  }
  if (rc == EDDY_OK)
    rc = run_inline(job);
  /* Without checkpoints, the end of the input is final: what
   * transactional sinks prepared is committed. (With them, the final
   * checkpoint's completion did it; a stopped job ends without finishing.) */
  int final = !job->stopped && !ckpt_periodic(job);
  for (int vi = 0; rc == EDDY_OK && final && vi < job->nvertices; vi++) {
    vertex *v = &job->vertices[vi];
    for (int i = 0; rc == EDDY_OK && i < v->parallelism; i++) {
      eddy_task *t = &v->tasks[i];
      if (t->opened && v->ops->notify &&
          (rc = CALL(job, t, v->ops->notify(t->ud, t, EDDY_JOB_FINISHED, 1))) != EDDY_OK)
        rc = job_fail(job, t, rc, "checkpoint notification");
    }
  }
  ckpt_shutdown(job);
  /* Close in reverse graph order, so sinks close before their sources. */
  for (int vi = job->nvertices - 1; vi >= 0; vi--) {
    vertex *v = &job->vertices[vi];
    if (v->tasks == NULL)
      continue;
    for (int i = v->parallelism - 1; i >= 0; i--) {
      eddy_task *t = &v->tasks[i];
      if (t->opened)
        refresh_state_metrics(v, t); /* what the job shows once it ended */
      if (t->opened && v->ops->close) {
        int crc = CALL(job, t, v->ops->close(t->ud, t));
        if (rc == EDDY_OK && crc != EDDY_OK)
          rc = job_fail(job, t, crc, "close");
      }
      t->opened = 0;
    }
  }
  jobctl_detach(job, rc);
  return rc;
}
