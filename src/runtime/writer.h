/*
 * The part-file writer behind to_file(dir, {format = ...}): each sink
 * subtask writes its records as text into files dir/part-<subtask>-<seq>.
 *
 * A sink subtask owns its own files, so subtasks never share one and need
 * no locking; seq grows past every part file already in the folder, so a
 * second run adds files instead of overwriting the first run's output.
 *
 * The life of a part file is open (on its first record), write (buffered),
 * flush, close (flush + fsync). Rolling to the next part file is what
 * transactional sinks will do at each checkpoint; they will also open part
 * files under hidden names and commit them by renaming, which is why seq
 * also counts hidden ".part-..." files.
 */
#ifndef EDDY_RUNTIME_WRITER_H
#define EDDY_RUNTIME_WRITER_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/format.h"
#include "util/err.h"

typedef struct eddy_writer_config {
  const char *dir;         /* created with its parents when missing */
  eddy_format_kind format;
  eddy_csv_options csv;    /* for EDDY_FORMAT_CSV */
  int subtask;             /* >= 0: the <subtask> of part-<subtask>-<seq> */
  size_t buffer_size;      /* bytes kept before a write(2); 0: 64 KiB */
  int transactional;       /* write .part-<subtask>-<seq>.inprogress files,
                              made visible by eddy_writer_commit */
} eddy_writer_config;

/* No dir, jsonl, CSV defaults, subtask 0, 64 KiB buffer. */
void eddy_writer_config_init(eddy_writer_config *cfg);

typedef struct eddy_writer eddy_writer;

/* Creates dir if needed and gives a writer that the caller ends with
 * eddy_writer_close. No part file exists until the first record.
 * EDDY_EIO "<path>: <strerror>" when the folder cannot be made or is not a
 * folder; EDDY_EINVAL for a bad config. */
int eddy_writer_open(const eddy_writer_config *cfg, eddy_writer **out,
                     eddy_err *err);

/* Encodes one record (MessagePack bytes, not kept) into the buffer, opening
 * a part file first if none is open. EDDY_EFORMAT for a record the format
 * cannot hold (nothing of it is written), EDDY_EIO with the part file's
 * path for a failed open or write. */
int eddy_writer_write(eddy_writer *w, const void *record, size_t len,
                      eddy_err *err);

/* Hands the buffered bytes to the kernel (no fsync). */
int eddy_writer_flush(eddy_writer *w, eddy_err *err);

/* Closes the current part file (flush, fsync); the next record opens the
 * next one. Nothing to do when none is open. */
int eddy_writer_roll(eddy_writer *w, eddy_err *err);

/* Closes the current part file as roll does, then frees the writer, also
 * when that fails (the error is returned). NULL is fine. */
int eddy_writer_close(eddy_writer *w, eddy_err *err);

/* The path of the open part file, or of the last one closed; NULL before
 * the first record. Owned by the writer; valid until the next write, roll
 * or close. */
const char *eddy_writer_path(const eddy_writer *w);

/* Records written and part files opened so far. */
uint64_t eddy_writer_records(const eddy_writer *w);
uint64_t eddy_writer_files(const eddy_writer *w);

/* ---- transactional files (exactly-once output with checkpoints) ----
 *
 * A transactional writer writes hidden in-progress files. At a checkpoint
 * the current one is closed (eddy_writer_prepare) and remembered in the
 * sink's state; when the checkpoint completes it is committed: renamed to
 * its final name part-<subtask>-<seq>. After a failure, in-progress files
 * that no completed checkpoint knows of are deleted (eddy_writer_recover),
 * so what the replay writes again is not there twice. */

/* Closes the current file (flush, fsync) and gives its path (the caller
 * frees it), or NULL in *path when no file was open. */
int eddy_writer_prepare(eddy_writer *w, char **path, eddy_err *err);

/* Renames an in-progress file to its final name and syncs the folder. A
 * file committed already (the final name exists, the hidden one not) is
 * fine: commits are repeated after a restore. */
int eddy_writer_commit(const char *path, eddy_err *err);

/* Cleans dir for subtask after a restore: every in-progress file of the
 * subtask not in keep[0..n) is deleted, those in keep are committed. */
int eddy_writer_recover(const char *dir, int subtask, const char *const *keep, size_t n,
                        eddy_err *err);

#endif
