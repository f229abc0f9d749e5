/*
 * Checkpoints: asynchronous barrier snapshotting through the job graph
 * (Carbone et al., 2015) with Flink's coordinator rules (SEMANTICS.md
 * sections 7 and 8).
 *
 * The coordinator triggers checkpoint n at the source subtasks, which
 * snapshot their position and send barrier n downstream. A subtask with
 * several input channels aligns them (exactly once: a channel whose barrier
 * arrived is blocked until all have), tracks them without blocking (at
 * least once), or snapshots at the first barrier and persists the records
 * still in flight on the other channels as channel state (unaligned). Each
 * snapshot has a synchronous part on the executor's thread (the subtask's
 * callback freezes its state into parts) and an asynchronous part on the
 * job's writer thread (the parts are compressed and written). When every
 * subtask's parts are on disk, the coordinator writes _metadata and the
 * checkpoint is complete: subtasks are told, and transactional sinks
 * commit.
 */
#ifndef EDDY_RUNTIME_CHECKPOINT_H
#define EDDY_RUNTIME_CHECKPOINT_H

#include <stdint.h>
#include <stdio.h>

#include "runtime/job.h"
#include "runtime/storage.h"
#include "state/snapshot.h"

typedef enum eddy_ckpt_mode {
  EDDY_CKPT_EXACTLY_ONCE,
  EDDY_CKPT_AT_LEAST_ONCE
} eddy_ckpt_mode;

typedef struct eddy_checkpoint_config {
  int64_t interval;        /* ms between triggers; <= 0: none */
  int64_t timeout;         /* ms until a pending checkpoint expires */
  int64_t min_pause;       /* ms from a completion to the next trigger */
  int max_concurrent;      /* pending checkpoints at once */
  eddy_ckpt_mode mode;
  int unaligned;           /* exactly once only */
  int64_t aligned_timeout; /* with unaligned: ms of alignment before a subtask
                              goes unaligned; 0 = from the first barrier */
  int tolerable_failures;  /* consecutive counted failures tolerated */
  int retained;            /* completed checkpoints kept */
  const char *dir;         /* base folder (path or file:// URI); copied */
  const char *job_id;      /* copied */
  const char *job_name;    /* the job's name, for _metadata; copied; NULL: none */
  const char *compression; /* "zstd" or "none"; copied */
  int level;               /* zstd level */
  int64_t next_id;         /* id of the first checkpoint (ids continue
                              after a restore) */
  int failures;            /* consecutive counted failures so far: the count
                              goes on across restarts, as in Flink */
  FILE *trace;             /* a line per barrier event, or NULL */
} eddy_checkpoint_config;

/* Turns checkpointing on for a job that has not run (the folder is opened,
 * stale .inprogress folders removed). */
int eddy_job_enable_checkpoints(eddy_job *job, const eddy_checkpoint_config *cfg);

/* Done with a savepoint: rc EDDY_OK and its folder, or an error code and
 * why. Called on the executor's thread. */
typedef void (*eddy_savepoint_done)(void *ud, int rc, const char *path_or_message);

/*
 * Asks for a savepoint into dir, taken at the executor's next round
 * whatever the interval: a checkpoint of kind "savepoint" in a new folder
 * savepoint-<6 of the job id>-<12 hex> under dir, self-contained. It does
 * not count towards tolerable failures, is not subject to retention, and
 * transactional sinks commit on it. With stop, the job stops when it
 * completed (SEMANTICS.md section 9): the sources send nothing after its
 * barrier and the run ends without finishing (no maximum watermark: timers
 * and windows stay in state); a failure of that savepoint fails the job.
 * With drain as well, the sources end their input first (maximum
 * watermark, every subtask finishes) and the savepoint is the last
 * snapshot. One at a time: EDDY_EINVAL while another is being taken.
 * A refusal is described in err, not in the job's error, which belongs to
 * the first failure of the run.
 */
int eddy_job_savepoint(eddy_job *job, const char *dir, int stop, int drain,
                       eddy_savepoint_done done, void *ud, eddy_err *err);
/* At the end of bounded input, stop with a savepoint into dir instead of
 * finishing (job:run{savepoint = dir}). Before the run. */
int eddy_job_stop_with_savepoint_at_end(eddy_job *job, const char *dir);
/* Ends the run at once: eddy_job_run returns EDDY_EINTR, "cancelled". */
void eddy_job_cancel(eddy_job *job);
/* The run ended with a stop savepoint; the newest completed savepoint of
 * the run (valid as long as the job), or NULL. */
int eddy_job_stopped(const eddy_job *job);
const char *eddy_job_savepoint_path(const eddy_job *job);

/* Makes the subtasks of the next run start from a completed checkpoint:
 * their callbacks read their parts with eddy_task_restore_part(). The
 * checkpoint is owned by the caller and must outlive the run. */
int eddy_job_restore(eddy_job *job, eddy_chk *from);

/* ---- for a subtask's snapshot callback ---- */

typedef struct eddy_snapshot eddy_snapshot;

/* What a snapshot is taken for: a checkpoint may hold native parts; a
 * savepoint is canonical, always (SEMANTICS.md section 9); the last state
 * of a subtask that finished keeps no keyed state. */
typedef enum eddy_snapshot_purpose {
  EDDY_SNAPSHOT_CHECKPOINT,
  EDDY_SNAPSHOT_SAVEPOINT,
  EDDY_SNAPSHOT_FINAL
} eddy_snapshot_purpose;

eddy_snapshot_purpose eddy_snapshot_purpose_of(const eddy_snapshot *s);

/* Adds a part holding bytes (copied) to the subtask's snapshot. */
int eddy_snapshot_add_blob(eddy_snapshot *s, const char *part, const void *p, size_t n);
/* Adds a part written from a keyed snapshot on the writer thread; takes
 * ownership of ks (freed on the executor's thread once written). */
int eddy_snapshot_add_keyed(eddy_snapshot *s, const char *part, eddy_keyed_snapshot *ks);

/*
 * Adds a native part (incremental checkpoints, SEMANTICS.md section 10):
 * the files in folder dir, a backend's own snapshot (`format` says whose,
 * e.g. "rocksdb") of key groups first..last. The snapshot takes the folder
 * over: it is removed once written (or given up). On the writer thread,
 * every file whose name ends in ".sst" is immutable and shared: one that
 * this subtask's last completed checkpoint uploaded, or that the
 * checkpoint it was restored from holds (eddy_task_adopt_native), is only
 * referenced; the others are uploaded to the job's shared folder as
 * <uid>-<subtask>-chk<id>-<name>. The other files (MANIFEST, CURRENT,
 * OPTIONS...) are files of the checkpoint, <uid>-<subtask>.<part>.<name>.
 * The subtask's _metadata entry says "keyed": "native" and lists them
 * under "native": {format, key_groups, files}. Only checkpoints take
 * native parts: EDDY_EINVAL for a savepoint; for a finished subtask's last
 * state (which keeps no keyed state) the folder is removed and nothing
 * added.
 */
int eddy_snapshot_add_native(eddy_snapshot *s, const char *part, const char *format,
                             const char *dir, int first, int last);

/* A part of this subtask in the checkpoint being restored from:
 * EDDY_ENOTFOUND if there is none (a new operator, or no restore). The
 * reader belongs to the caller (eddy_chk_reader_close). */
int eddy_task_restore_part(eddy_task *t, const char *part, eddy_chk_reader **out,
                           eddy_err *err);
/* The same for old subtask old_index of the subtask's vertex, when the
 * restore changes its parallelism (keyed state moves by key group). */
int eddy_task_restore_part_of(eddy_task *t, int old_index, const char *part,
                              eddy_chk_reader **out, eddy_err *err);
/* The vertex's parallelism in the checkpoint restored from (0: it was not
 * there), and the key groups old subtask old_index owned (EDDY_ENOTFOUND
 * if it is not in the checkpoint). */
int eddy_task_restored_parallelism(const eddy_task *t);
int eddy_task_restored_key_groups(const eddy_task *t, int old_index, int *first, int *last);

/* Whether old subtask old_index of t's vertex holds its keyed state in a
 * native part in the checkpoint restored from: EDDY_OK with its format
 * (valid while the job runs; NULL is fine) and key groups, else
 * EDDY_ENOTFOUND. */
int eddy_task_restored_native(const eddy_task *t, int old_index, const char **format,
                              int *first, int *last);
/* Puts the files of that native part into folder into (made here; it must
 * not exist): hard links of the shared files where the file system allows,
 * copies otherwise. Errors as eddy_chk_extract_files gives them. */
int eddy_task_restore_native(eddy_task *t, int old_index, const char *into, eddy_err *err);
/* t's backend took old subtask old_index's native files as they are (the
 * same key groups): when they come from this job's own checkpoint folder,
 * t's next checkpoint references their shared files instead of uploading
 * them again. */
void eddy_task_adopt_native(eddy_task *t, int old_index);

/* ---- what happened, for metrics and eddy info ---- */

typedef enum eddy_ckpt_status {
  EDDY_CKPT_PENDING,
  EDDY_CKPT_COMPLETED,
  EDDY_CKPT_FAILED
} eddy_ckpt_status;

typedef struct eddy_ckpt_info {
  int64_t id;
  const char *kind;       /* "checkpoint" or "savepoint" */
  eddy_ckpt_status status;
  int64_t triggered;      /* processing time */
  double duration_ms;     /* wall time from trigger to completion */
  double sync_ms;         /* longest synchronous part of a subtask */
  double alignment_ms;    /* longest alignment of a subtask */
  uint64_t bytes;         /* written to disk: files, and shared files
                             uploaded (not those only referenced) */
  uint64_t state_size;    /* completed: every byte it holds, shared files
                             referenced included */
  const char *path;       /* completed: the chk folder */
  const char *failure;    /* failed: why */
} eddy_ckpt_info;

int eddy_job_checkpoint_count(const eddy_job *job);
/* The i-th checkpoint triggered in this run; strings valid as long as the
 * job. */
int eddy_job_checkpoint_info(const eddy_job *job, int i, eddy_ckpt_info *info);
/* The id the next checkpoint would get. */
int64_t eddy_job_next_checkpoint_id(const eddy_job *job);
/* Consecutive counted checkpoint failures now (0 after a job failure
 * caused by too many). */
int eddy_job_checkpoint_failures(const eddy_job *job);

#endif
