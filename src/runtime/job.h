/*
 * The job graph and its execution: vertices (a chain of operators, run as
 * `parallelism` subtasks), edges (how records are partitioned between two
 * vertices), channels (FIFO queues of frames between two subtasks) and the
 * executor that schedules subtasks.
 *
 * The runtime knows nothing of Lua. A vertex's behaviour comes from a table
 * of callbacks (eddy_vertex_ops) that the binding implements by running the
 * chain's Lua functions; records cross channels as MessagePack bytes.
 *
 * The inline executor runs every subtask in the calling thread in a fixed
 * order: each round, every subtask whose processing-time alarm is due fires
 * it, every source subtask emits up to a batch of records, then every other
 * subtask, in graph order, drains its input channels (taking one frame from
 * each non-empty channel in turn). The same job and input therefore always
 * give the same interleaving, which is what lets a workshop replay alignment
 * and propagation step by step.
 *
 * Time. Processing time comes from the job's clock: the system clock, or a
 * manual clock that only moves when every subtask is waiting for time (a
 * source whose next record arrives later, a timer): then it jumps to the
 * earliest moment anyone waits for, so a run replays recorded arrival times
 * exactly. Event time travels as watermark frames; each subtask merges the
 * watermarks of its input channels with Flink's StatusWatermarkValve (the
 * minimum over active, caught-up channels; idle channels drop out) and hands
 * every advance to its watermark callback.
 */
#ifndef EDDY_RUNTIME_JOB_H
#define EDDY_RUNTIME_JOB_H

#include <stddef.h>
#include <stdint.h>

#include "state/backend.h"
#include "util/buf.h"
#include "util/err.h"

/* A record without a timestamp (Flink's Long.MIN_VALUE). */
#define EDDY_NO_TIMESTAMP INT64_MIN
/* No watermark yet, and the end of event time (Flink's Watermark
 * UNINITIALIZED and MAX_WATERMARK). */
#define EDDY_MIN_WATERMARK INT64_MIN
#define EDDY_MAX_WATERMARK INT64_MAX
/* "Never" for alarms and waits. */
#define EDDY_NEVER INT64_MAX

typedef struct eddy_job eddy_job;
typedef struct eddy_task eddy_task;
typedef struct eddy_snapshot eddy_snapshot; /* runtime/checkpoint.h */

typedef enum eddy_partitioning {
  EDDY_PART_FORWARD,   /* subtask i -> subtask i; equal parallelism */
  EDDY_PART_KEYED,     /* by key group of the record's key */
  EDDY_PART_REBALANCE, /* round robin */
  EDDY_PART_BROADCAST  /* every consumer subtask */
} eddy_partitioning;

typedef enum eddy_frame_kind {
  EDDY_FRAME_RECORD,
  EDDY_FRAME_WATERMARK, /* timestamp is the watermark */
  EDDY_FRAME_IDLE,      /* the producer will send no records for a while */
  EDDY_FRAME_ACTIVE,    /* it sends records again */
  EDDY_FRAME_BARRIER,   /* checkpoint barrier (runtime/checkpoint.h) */
  EDDY_FRAME_END        /* the producer subtask has finished */
} eddy_frame_kind;

/* A frame as a consumer sees it. The slices point into the channel and are
 * valid only during the process callback. */
typedef struct eddy_frame {
  eddy_frame_kind kind;
  int input;         /* index of the consumer's input edge it came by */
  int64_t timestamp; /* EDDY_NO_TIMESTAMP if none */
  int key_group;     /* keyed edges; -1 otherwise */
  eddy_slice key;    /* keyed edges: the key's canonical bytes */
  eddy_slice value;  /* the record's canonical bytes */
} eddy_frame;

/*
 * Callbacks of a vertex, called for each of its subtasks. Each returns
 * EDDY_OK or an error code after writing the message with
 * eddy_task_seterr(). task_ud is what open stored.
 */
#define EDDY_JOB_FINISHED INT64_MAX

/* One state's footprint in a subtask's backend (eddy_backend_state_metrics). */
typedef struct eddy_task_state_metrics {
  char name[128]; /* the state's name, cut to fit */
  eddy_state_metrics m;
} eddy_task_state_metrics;

#define EDDY_TASK_STATE_METRICS_MAX 64

typedef struct eddy_vertex_ops {
  int (*open)(void *vertex_ud, eddy_task *task, void **task_ud);
  /* Sources: emit up to budget records; set *finished at the end of input.
   * A source whose next record is due later calls eddy_task_wait_until()
   * and returns. */
  int (*poll)(void *task_ud, eddy_task *task, int budget, int *finished);
  /* Non-sources: n >= 1 frames in arrival order: records, and (when the
   * vertex has a watermark callback) EDDY_FRAME_WATERMARK frames saying
   * the subtask's event time moved to their timestamp, to be handled as
   * the watermark callback would. Handing over a batch lets a callback pay
   * its fixed cost (entering Lua) once for many records. */
  int (*process)(void *task_ud, eddy_task *task, const eddy_frame *frames, int n);
  /* The subtask's event time advanced to wm: fire event-time timers and
   * forward the watermark (eddy_task_emit_watermark). Sources get the
   * maximum watermark once, at the end of their input. */
  int (*watermark)(void *task_ud, eddy_task *task, int64_t wm);
  /* Every input went idle (idle = 1), or one came back (idle = 0). */
  int (*status)(void *task_ud, eddy_task *task, int idle);
  /* The alarm set with eddy_task_wake_at() is due: processing time is now. */
  int (*alarm)(void *task_ud, eddy_task *task, int64_t now);
  /* Checkpoint id: the synchronous part of the subtask's snapshot; add
   * its state to s (runtime/checkpoint.h). Optional: without it the
   * subtask has no state. */
  int (*snapshot)(void *task_ud, eddy_task *task, int64_t id, eddy_snapshot *s);
  /* Checkpoint id completed (completed = 1) or was given up (0). When the
   * whole job has finished its input, id is EDDY_JOB_FINISHED: everything
   * is final. A finished subtask is still told. */
  int (*notify)(void *task_ud, eddy_task *task, int64_t id, int completed);
  /* Every input has ended (or the source finished): a last chance to emit. */
  int (*finish)(void *task_ud, eddy_task *task);
  /* Called once for every opened subtask, after success or failure; an
   * error here fails a job that had succeeded so far. */
  int (*close)(void *task_ud, eddy_task *task);
  /* Optional, for metrics: the footprint of the subtask's keyed state,
   * per state, into at most cap entries; returns how many. Called between
   * callbacks, and once more just before close (what the job then shows). */
  int (*state_metrics)(void *task_ud, eddy_task *task, eddy_task_state_metrics *out, int cap);
} eddy_vertex_ops;

typedef struct eddy_vertex_config {
  const char *name;    /* for messages and metrics; copied */
  const char *uid;     /* names its files in checkpoints; copied; NULL:
                          "v<index>" */
  int parallelism;     /* >= 1 */
  int max_parallelism; /* number of key groups of its keyed inputs and state */
  int is_source;
  const eddy_vertex_ops *ops;
  void *ud; /* handed to ops->open; owned by the caller */
} eddy_vertex_config;

int eddy_job_new(eddy_job **out, eddy_err *err);
void eddy_job_free(eddy_job *job);

/* Vertices must be added in an order where every edge goes from an earlier
 * vertex to a later one (the order a job script creates them in). */
int eddy_job_add_vertex(eddy_job *job, const eddy_vertex_config *cfg, int *vertex);

/* Connects two vertices; *output is the producer's output index (for
 * eddy_task_emit), *input the consumer's input index (eddy_frame.input). */
int eddy_job_connect(eddy_job *job, int from, int to, eddy_partitioning part,
                     int *output, int *input);

/* Processing time from the system clock (the default), or from a manual
 * clock starting at start (see the top of this file). Before run. */
int eddy_job_use_manual_clock(eddy_job *job, int64_t start);

/* Runs the job to the end of its input with the inline executor. On failure
 * the message is in eddy_job_errmsg(). A pending interrupt
 * (util/interrupt.h) stops it with EDDY_EINTR. A job runs once. */
int eddy_job_run(eddy_job *job);

const char *eddy_job_errmsg(const eddy_job *job);

/* Records in and out per subtask, after (or during) a run. */
typedef struct eddy_task_stats {
  uint64_t records_in;
  uint64_t records_out;
} eddy_task_stats;
int eddy_job_vertex_count(const eddy_job *job);
int eddy_job_task_stats(const eddy_job *job, int vertex, int index,
                        eddy_task_stats *stats);
/* The subtask's keyed state metrics: fresh while it runs, as they were at
 * its close after. *out is valid until the next call for that subtask;
 * returns how many states (0: none, or no such subtask). */
int eddy_job_task_state_metrics(eddy_job *job, int vertex, int index,
                                const eddy_task_state_metrics **out);

/* ---- for callbacks ---- */

int eddy_task_index(const eddy_task *t);
int eddy_task_parallelism(const eddy_task *t);
int eddy_task_vertex(const eddy_task *t);
const char *eddy_task_name(const eddy_task *t);
/* The key-group range this subtask owns (for its keyed state). */
void eddy_task_key_groups(const eddy_task *t, int *max_parallelism,
                          int *first, int *last);

/*
 * Sends a record on output `output`. For keyed outputs key is the record's
 * key (canonical bytes): the key group and the consumer subtask follow from
 * it. The bytes are copied. On failure see eddy_task_emit_errmsg().
 */
int eddy_task_emit(eddy_task *t, int output, int64_t timestamp,
                   const void *key, size_t key_len, const void *value,
                   size_t value_len);

/* Sends watermark wm, or an idle/active status, on every channel of an
 * output. */
int eddy_task_emit_watermark(eddy_task *t, int output, int64_t wm);
int eddy_task_emit_status(eddy_task *t, int output, int idle);

/* The job's processing time, in milliseconds. */
int64_t eddy_task_now(const eddy_task *t);
/* Asks for the alarm callback once processing time reaches at (the
 * earliest of several requests wins; a request is used up when it fires). */
void eddy_task_wake_at(eddy_task *t, int64_t at);
/* A source: do not poll again before processing time at. */
void eddy_task_wait_until(eddy_task *t, int64_t at);
/* The subtask's current input watermark (EDDY_MIN_WATERMARK before any). */
int64_t eddy_task_watermark(const eddy_task *t);

/* Why the last eddy_task_emit on t failed (the emitter reports it to its
 * caller; it does not fail the job by itself). */
const char *eddy_task_emit_errmsg(const eddy_task *t);

/* Writes the job's error message (the first failure wins); returns code. */
int eddy_task_seterr(eddy_task *t, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
