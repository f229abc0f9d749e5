/*
 * The runtime's own view of a job: the structs behind the opaque handles
 * of job.h, shared by the files that implement it (job.c: graph, channels,
 * executor, watermarks; checkpoint.c: barriers and the coordinator). Not
 * for use outside src/runtime/.
 */
#ifndef EDDY_RUNTIME_JOB_INTERNAL_H
#define EDDY_RUNTIME_JOB_INTERNAL_H

#include <stdio.h>

#include "runtime/job.h"

/* Records a source subtask emits per round of the inline executor, and
 * records handed to a consumer's callback at once: large enough to amortise
 * the call, small enough to keep channels short. */
#define INLINE_BATCH 256
/* records per batch while a subtask aligns barriers */
#define ALIGNING_BATCH 32

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
  size_t frames; /* queued frames, the priority barrier not counted */
  int input; /* the consumer's input index */
  int first;  /* read before the consumer's other inputs: see drain_task */
  int ended;
  int producer_vertex, producer_index; /* for traces */
  /* checkpoints (checkpoint.c) */
  int blocked;            /* aligned: its barrier arrived, it waits */
  int64_t barrier;        /* highest barrier id seen on it */
  int64_t priority;       /* an unaligned barrier that jumped the queue, 0 none */
  int64_t priority_trigger;
  size_t overtaken;       /* frames it jumped */
  int64_t recording;      /* unaligned: records read are in flight for this id */
  size_t record_left;     /* frames left to record; SIZE_MAX: until its barrier */
  /* the consumer's watermark valve: this channel's state */
  int64_t watermark;
  int idle;
  int aligned; /* counts towards the minimum (caught up and active) */
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
  /* keyed state metrics (eddy_job_task_state_metrics), kept after close */
  eddy_task_state_metrics *state_metrics;
  int nstate_metrics;
  int finished;
  channel **inputs;
  int ninputs;
  int ended_inputs;
  int next_input; /* round-robin position */
  int first_inputs; /* how many of the inputs are read first */
  task_output *outputs;
  int noutputs;
  eddy_frame *batch; /* INLINE_BATCH frames being handed to process */
  int64_t watermark; /* the valve's last output */
  int idle;          /* every input is idle */
  int64_t wake_at;   /* processing-time alarm, EDDY_NEVER if none */
  int64_t wait_until; /* sources: no poll before this processing time */
  eddy_task_stats stats;
  eddy_err emit_err; /* why the last eddy_task_emit failed */
  /* checkpoints (checkpoint.c) */
  int64_t ckpt_id;        /* barrier being aligned or tracked, 0 none */
  int64_t ckpt_trigger;   /* its trigger time */
  int64_t ckpt_started;   /* when its first barrier arrived (wall ms) */
  int ckpt_count;         /* channels whose barrier arrived */
  int ckpt_unaligned;     /* handled unaligned (snapshot taken already) */
  int64_t ckpt_last;      /* highest id handled: older barriers are stale */
  int64_t tracked[50][2]; /* at least once: (id, barriers seen) */
  int ntracked;
  eddy_buf channel_state; /* unaligned: records in flight, for ckpt_id */
  int recording;          /* channels still recording */
  struct ckpt_part *ckpt_final; /* finished: its last state, for checkpoints */
  struct native_set *ckpt_base; /* native parts: the files of its last
                                   completed checkpoint, which the next
                                   one only references */
  int at_end; /* a source at the end of its input, kept for a savepoint */
  int restored_finished;  /* finished in the checkpoint restored from */
};

typedef struct vertex {
  char *name;
  char *uid;
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

typedef struct ckpt_coordinator ckpt_coordinator;

struct eddy_job {
  eddy_task *running; /* whose callback runs now: only it may emit */
  ckpt_coordinator *ckpt; /* NULL: checkpointing off */
  struct eddy_chk *restore; /* run from this checkpoint; not owned */
  int manual_clock;
  int64_t clock; /* processing time of the manual clock */
  vertex *vertices;
  int nvertices;
  edge *edges;
  int nedges;
  channel **channels; /* every channel, for freeing */
  size_t nchannels;
  int ran;
  /* stopping (checkpoint.c): sources send nothing after the barrier of
   * checkpoint stop_after; draining: sources end their input now; at the
   * end of input, stop with a savepoint instead of finishing */
  int64_t stop_after;
  int draining;
  int stopped;   /* the stop savepoint completed: the run ends */
  int cancelled; /* the run ends at once */
  char *savepoint_at_end;
  /* job control (jobctl.c): the socket served between rounds, and the
   * request waiting for the savepoint it asked for */
  struct eddy_control *control;
  double control_next; /* monotonic ms of the next look at the socket */
  struct eddy_control_req *control_req;
  int control_kind;
  eddy_err err;
};


/* ---- shared by job.c and checkpoint.c ---- */

/* A callback of subtask t: marks it as the one that may emit. */
int job_called(eddy_job *job, int rc);
#define CALL(job, t, expr) ((job)->running = (t), job_called((job), (expr)))

int job_channel_push(eddy_err *err, channel *ch, eddy_frame_kind kind, int64_t ts,
                     int kg, const void *key, size_t klen, const void *val, size_t vlen);
/* A callback failed: make sure the job carries a message. */
int job_fail(eddy_job *job, eddy_task *t, int rc, const char *what);
vertex *job_vertex_of(const eddy_task *t);

/* checkpoint.c, called by the executor */
int ckpt_tick(eddy_job *job, int64_t now, int *progress);
/* When the coordinator next needs the executor (a trigger, a timeout);
 * *writing says that the writer thread has work in hand. */
int64_t ckpt_next_wakeup(const eddy_job *job, int *writing);
/* Waits until the writer thread finished something, at most ms. */
void ckpt_wait_writer(eddy_job *job, int64_t ms);
/* Periodic checkpoints are on. */
int ckpt_periodic(const eddy_job *job);
/* A source subtask may poll (not stopped after a stop savepoint). */
int ckpt_source_may_poll(const eddy_job *job, const eddy_task *t);
/* Every source reached the end of its input while the job is to stop with
 * a savepoint there: asks for it. */
int ckpt_sources_at_end(eddy_job *job);
/* Every subtask finished: one last checkpoint, in which all are finished,
 * is taken at once (Flink takes the next periodic one), and the job ends
 * when it completed (*done): sinks commit on it, and a restore from it
 * runs nothing again. */
int ckpt_final(eddy_job *job, int64_t now, int *done);
int ckpt_barrier(eddy_job *job, eddy_task *t, channel *ch, const eddy_frame *f);
int ckpt_input_ended(eddy_job *job, eddy_task *t, channel *ch);
/* Between batches of a subtask that is aligning: past aligned_timeout it
 * goes unaligned (Flink checks with a timer; this is as soon as it can). */
int ckpt_alignment_check(eddy_job *job, eddy_task *t);
int ckpt_record(eddy_job *job, eddy_task *t, channel *ch, const eddy_frame *f);
int ckpt_task_opened(eddy_job *job, eddy_task *t);
/* t finished its work (after its finish callback, before its end goes
 * downstream): keeps its last state for later checkpoints. */
int ckpt_task_finishing(eddy_job *job, eddy_task *t);
void ckpt_task_free(eddy_task *t);
/* The run is over: the writer thread stops and pending checkpoints are
 * given up, before the subtasks close (keyed snapshots must be freed while
 * their backends live). */
void ckpt_shutdown(eddy_job *job);
void ckpt_free(eddy_job *job);

/* jobctl.c, called by the executor when the job has a control socket:
 * handles requests between rounds (at most every few ms), waits for them
 * instead of sleeping, and answers what waits on this run when it ends. */
int jobctl_tick(eddy_job *job);
void jobctl_wait(eddy_job *job, int64_t ms);
void jobctl_detach(eddy_job *job, int rc);

#endif
