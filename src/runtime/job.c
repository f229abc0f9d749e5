/*
 * Job graph, channels and the inline executor: see job.h.
 *
 * A channel keeps its frames serialized back to back in one buffer that is
 * reset whenever it has been read to the end. With the inline executor a
 * channel is drained in the same round it is filled, so the buffer stays
 * small and no record costs an allocation.
 */
#include "runtime/job.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "state/keygroup.h"
#include "util/interrupt.h"

/* Records a source subtask emits per round of the inline executor, and
 * records handed to a consumer's callback at once: large enough to amortise
 * the call, small enough to keep channels short. */
#define INLINE_BATCH 256

typedef struct frame_header {
  int64_t timestamp;
  int32_t key_group;
  uint32_t key_len;
  uint32_t value_len;
  uint8_t kind;
} frame_header;

typedef struct channel {
  eddy_buf data;
  size_t read;
  int input; /* the consumer's input index */
  int ended;
} channel;

typedef struct task_output {
  eddy_partitioning part;
  channel **channels; /* indexed by consumer subtask */
  int nchannels;
  int next; /* round-robin position */
  int consumer_max_parallelism;
} task_output;

struct eddy_task {
  eddy_job *job;
  int vertex;
  int index;
  void *ud;
  int opened;
  int finished;
  channel **inputs;
  int ninputs;
  int ended_inputs;
  int next_input; /* round-robin position */
  task_output *outputs;
  int noutputs;
  eddy_frame *batch; /* INLINE_BATCH frames being handed to process */
  eddy_task_stats stats;
  eddy_err emit_err; /* why the last eddy_task_emit failed */
};

typedef struct vertex {
  char *name;
  int parallelism;
  int max_parallelism;
  int is_source;
  const eddy_vertex_ops *ops;
  void *ud;
  eddy_task *tasks;
  int ninputs;
  int noutputs;
} vertex;

typedef struct edge {
  int from, to;
  eddy_partitioning part;
  int output, input;
} edge;

struct eddy_job {
  vertex *vertices;
  int nvertices;
  edge *edges;
  int nedges;
  channel **channels; /* every channel, for freeing */
  size_t nchannels;
  int ran;
  eddy_err err;
};

int eddy_job_new(eddy_job **out, eddy_err *err)
{
  eddy_job *job = calloc(1, sizeof *job);
  if (job == NULL)
    return eddy_seterr(err, EDDY_ENOMEM, "out of memory creating a job");
  *out = job;
  return EDDY_OK;
}

static void free_tasks(vertex *v)
{
  if (v->tasks == NULL)
    return;
  for (int i = 0; i < v->parallelism; i++) {
    eddy_task *t = &v->tasks[i];
    free(t->inputs);
    free(t->batch);
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
  for (int i = 0; i < job->nvertices; i++) {
    free_tasks(&job->vertices[i]);
    free(job->vertices[i].name);
  }
  for (size_t i = 0; i < job->nchannels; i++) {
    eddy_buf_free(&job->channels[i]->data);
    free(job->channels[i]);
  }
  free(job->channels);
  free(job->vertices);
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
        src->tasks[p].outputs[e->output].channels[c] = ch;
        eddy_task *consumer = &dst->tasks[c];
        channel **ins = realloc(consumer->inputs,
                                (size_t)(consumer->ninputs + 1) * sizeof *ins);
        if (ins == NULL)
          goto oom;
        consumer->inputs = ins;
        consumer->inputs[consumer->ninputs++] = ch;
      }
    }
  }
  return EDDY_OK;
oom:
  return eddy_seterr(&job->err, EDDY_ENOMEM, "out of memory building the job's subtasks");
}

static int channel_push(eddy_err *err, channel *ch, eddy_frame_kind kind,
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
  return EDDY_OK;
}

static int channel_has_frame(const channel *ch) { return ch->read < ch->data.len; }

static void channel_pop(channel *ch, eddy_frame *f)
{
  frame_header h;
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

int eddy_task_emit(eddy_task *t, int output, int64_t ts, const void *key,
                   size_t key_len, const void *value, size_t value_len)
{
  eddy_err *err = &t->emit_err;
  if (output < 0 || output >= t->noutputs)
    return eddy_seterr(err, EDDY_EINVAL, "%s has no output %d",
                       t->job->vertices[t->vertex].name, output);
  task_output *o = &t->outputs[output];
  int kg = -1, rc;
  t->stats.records_out++;
  switch (o->part) {
  case EDDY_PART_FORWARD:
    return channel_push(err, o->channels[t->index], EDDY_FRAME_RECORD, ts, -1,
                        NULL, 0, value, value_len);
  case EDDY_PART_KEYED:
    rc = eddy_key_group(key, key_len, o->consumer_max_parallelism, &kg);
    if (rc == EDDY_EINVAL)
      return eddy_seterr(err, rc, "a record's key must not be nil");
    if (rc != EDDY_OK)
      return eddy_seterr(err, rc, "a record's key is not a complete value");
    return channel_push(err,
                        o->channels[eddy_operator_index(kg, o->consumer_max_parallelism,
                                                        o->nchannels)],
                        EDDY_FRAME_RECORD, ts, kg, key, key_len, value, value_len);
  case EDDY_PART_REBALANCE: {
    channel *ch = o->channels[o->next];
    o->next = (o->next + 1) % o->nchannels;
    return channel_push(err, ch, EDDY_FRAME_RECORD, ts, -1, NULL, 0, value, value_len);
  }
  case EDDY_PART_BROADCAST:
    for (int c = 0; c < o->nchannels; c++)
      if ((rc = channel_push(err, o->channels[c], EDDY_FRAME_RECORD, ts, -1, NULL,
                             0, value, value_len)) != EDDY_OK)
        return rc;
    return EDDY_OK;
  }
  return eddy_seterr(err, EDDY_EINVAL, "unknown partitioning");
}

const char *eddy_task_emit_errmsg(const eddy_task *t) { return t->emit_err.msg; }

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

/* A callback failed: make sure the job carries a message. */
static int fail(eddy_job *job, eddy_task *t, int rc, const char *what)
{
  if (job->err.code == EDDY_OK)
    eddy_seterr(&job->err, rc, "%s (subtask %d): %s failed: %s",
                job->vertices[t->vertex].name, t->index + 1, what, eddy_strerror(rc));
  return rc;
}

/* End of a subtask's input: let it emit its last records, then tell every
 * consumer that this producer is done. */
static int finish_task(eddy_job *job, eddy_task *t)
{
  vertex *v = &job->vertices[t->vertex];
  int rc;
  if (v->ops->finish && (rc = v->ops->finish(t->ud, t)) != EDDY_OK)
    return fail(job, t, rc, "finish");
  for (int o = 0; o < t->noutputs; o++) {
    task_output *out = &t->outputs[o];
    for (int c = 0; c < out->nchannels; c++) {
      if (out->channels[c] == NULL)
        continue;
      if ((rc = channel_push(&job->err, out->channels[c], EDDY_FRAME_END,
                             EDDY_NO_TIMESTAMP, -1, NULL, 0, NULL, 0)) != EDDY_OK)
        return rc;
    }
  }
  t->finished = 1;
  return EDDY_OK;
}

/* Takes one frame from each non-empty input channel in turn until all are
 * empty, handing the records over in batches. A batch's frames point into
 * the channels, so these are compacted only after the callback. */
static int drain_task(eddy_job *job, eddy_task *t)
{
  vertex *v = &job->vertices[t->vertex];
  int idle = 0;
  while (idle < t->ninputs) {
    int n = 0;
    idle = 0;
    while (n < INLINE_BATCH && idle < t->ninputs) {
      channel *ch = t->inputs[t->next_input];
      t->next_input = (t->next_input + 1) % t->ninputs;
      if (!channel_has_frame(ch)) {
        idle++;
        continue;
      }
      idle = 0;
      eddy_frame *f = &t->batch[n];
      channel_pop(ch, f);
      if (f->kind == EDDY_FRAME_END) {
        ch->ended = 1;
        t->ended_inputs++;
      } else {
        n++;
      }
    }
    int rc = EDDY_OK;
    if (n > 0) {
      t->stats.records_in += (uint64_t)n;
      rc = v->ops->process(t->ud, t, t->batch, n);
    }
    for (int i = 0; i < t->ninputs; i++)
      channel_compact(t->inputs[i]);
    if (rc != EDDY_OK)
      return fail(job, t, rc, "process");
  }
  if (!t->finished && t->ended_inputs == t->ninputs)
    return finish_task(job, t);
  return EDDY_OK;
}

static int run_inline(eddy_job *job)
{
  int rc;
  for (;;) {
    if (eddy_interrupt_pending())
      return eddy_seterr(&job->err, EDDY_EINTR, "interrupted");
    int running = 0;
    for (int vi = 0; vi < job->nvertices; vi++) {
      vertex *v = &job->vertices[vi];
      for (int i = 0; i < v->parallelism; i++) {
        eddy_task *t = &v->tasks[i];
        if (t->finished)
          continue;
        if (v->is_source) {
          int finished = 0;
          if ((rc = v->ops->poll(t->ud, t, INLINE_BATCH, &finished)) != EDDY_OK)
            return fail(job, t, rc, "poll");
          if (finished && (rc = finish_task(job, t)) != EDDY_OK)
            return rc;
        } else if ((rc = drain_task(job, t)) != EDDY_OK) {
          return rc;
        }
        running += !t->finished;
      }
    }
    if (running == 0)
      return EDDY_OK;
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
      if (v->ops->open && (rc = v->ops->open(v->ud, t, &t->ud)) != EDDY_OK)
        rc = fail(job, t, rc, "open");
      else
        t->opened = 1;
    }
  }
  if (rc == EDDY_OK)
    rc = run_inline(job);
  /* Close in reverse graph order, so sinks close before their sources. */
  for (int vi = job->nvertices - 1; vi >= 0; vi--) {
    vertex *v = &job->vertices[vi];
    if (v->tasks == NULL)
      continue;
    for (int i = v->parallelism - 1; i >= 0; i--) {
      eddy_task *t = &v->tasks[i];
      if (t->opened && v->ops->close) {
        int crc = v->ops->close(t->ud, t);
        if (rc == EDDY_OK && crc != EDDY_OK)
          rc = fail(job, t, crc, "close");
      }
      t->opened = 0;
    }
  }
  return rc;
}
