/*
 * Durable checkpoint storage: the folders and files a checkpoint or a
 * savepoint is made of, written so that a crash at any moment leaves either
 * a complete checkpoint or nothing that looks like one, and read back with
 * every byte verified.
 *
 * Layout (DESIGN.md, "Checkpoints, savepoints, recovery"):
 *
 *   <dir>/<job id>/chk-<n>/_metadata          one completed checkpoint
 *   <dir>/<job id>/chk-<n>/<file>...          its files
 *   <dir>/<job id>/chk-<n>.inprogress/        one being written (or crashed)
 *   <dir>/<job id>/shared/                    files several checkpoints share
 *   <dir>/savepoint-<6 chars of job>-<12 hex>/ a savepoint, same contents
 *
 * _metadata is JSON, written last. Until it is there and the folder has
 * been renamed to its final name, nothing reads the folder as a checkpoint;
 * stale ".inprogress" folders are removed when the store is opened.
 *
 * Shared files (incremental checkpoints, SEMANTICS.md section 10) are
 * immutable files that a checkpoint uploads once into shared/ under a name
 * of its own and that later checkpoints of the same job only reference.
 * Each checkpoint's _metadata lists the shared files it references, with
 * their sizes and checksums, beside its own files; a shared file is
 * deleted once no completed checkpoint in the job folder lists it: when
 * retention or disposal deletes the last one that did, when the checkpoint
 * that uploaded it fails, and, for what a crash left behind, when the store
 * is next opened.
 *
 * Every function takes a plain path or a file:// URI wherever it takes a
 * folder (file:///abs/path, file:/abs/path, file://localhost/abs/path;
 * %XX escapes are decoded). Other schemes give EDDY_EUNSUPPORTED.
 *
 * Errors: EDDY_EIO "<path>: <strerror>" for a failed system call (a full
 * disk is "...: No space left on device"); EDDY_EINVAL for misuse and bad
 * names; EDDY_ECORRUPT "<chk>/<file>: <what>" for damage found when reading
 * ("chk-7/_metadata: truncated JSON at byte 120", "chk-7/op-1.zst: checksum
 * mismatch (expected ..., found ...)", "chk-7/op-1.zst: missing");
 * EDDY_EUNSUPPORTED for a _metadata format newer than this eddy reads.
 *
 * Threads. A store is read-only after eddy_store_open: any number of
 * threads may begin checkpoints on it at once (eddy_store_retain may run
 * meanwhile; it never touches a folder that is in progress). A writer may
 * be used from several threads: files of one writer may be opened, written
 * and closed concurrently, each file by one thread at a time (its handle is
 * not shared). eddy_chk_commit and eddy_chk_abort must not race with any
 * other call on the same writer or its files. A completed checkpoint
 * (eddy_chk) is read-only: several threads may open readers on it at once,
 * each reader used by one thread at a time (a reader that reads ahead has
 * a thread of its own besides, which its calls hide).
 */
#ifndef EDDY_RUNTIME_STORAGE_H
#define EDDY_RUNTIME_STORAGE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "util/err.h"

/* The _metadata format this code writes; it reads this one and older.
 * Format 2 lists shared files ("shared"); a checkpoint without any is
 * still written as format 1, which older readers take. */
#define EDDY_CHK_FORMAT 2

typedef struct eddy_store eddy_store;           /* one job's checkpoints */
typedef struct eddy_chk_writer eddy_chk_writer; /* one being written */
typedef struct eddy_chk_file eddy_chk_file;     /* a file being written */
typedef struct eddy_chk eddy_chk;               /* a completed one */
typedef struct eddy_chk_reader eddy_chk_reader; /* a file being read */

/* ---- the store: one job's checkpoint folder ---- */

/*
 * Opens <dir>/<job_id>, creating it (and dir) when missing, and removes the
 * folders a crash left behind (chk-<n>.inprogress, and chk-<n>.discard from
 * an interrupted deletion); how many through *stale (NULL is fine); then
 * the shared files that no completed checkpoint references (uploads of a
 * checkpoint that crashed, deletions a crash interrupted). Nothing else in
 * the folder is touched, so a store must not be opened while another
 * process writes checkpoints of the same job into it. EDDY_EINVAL
 * for an empty job id or one with '/', EDDY_EIO when the folder cannot be
 * made or written. *out belongs to the caller (eddy_store_close).
 */
int eddy_store_open(const char *dir, const char *job_id, int *stale,
                    eddy_store **out, eddy_err *err);

/* Frees the store; writers begun on it stay valid. NULL is fine. */
void eddy_store_close(eddy_store *s);

/* "<dir>/<job id>" as a local path; owned by the store. */
const char *eddy_store_path(const eddy_store *s);
const char *eddy_store_job(const eddy_store *s);

/*
 * Deletes the completed checkpoints beyond the newest `retained` (>= 1),
 * oldest first, by Flink's subsumption rules (SEMANTICS.md section 7): the
 * newest is never deleted, nor the newest of kind "checkpoint"; entries of
 * kind "savepoint" count toward the limit but are never deleted. Folders
 * whose _metadata cannot be read are not counted and are deleted when
 * older than the newest readable one. Only _metadata is read, not the
 * files. A folder is renamed to chk-<n>.discard before it is emptied, so a
 * crash cannot leave a partial chk-<n>. *removed (NULL is fine) says how
 * many folders went.
 */
int eddy_store_retain(eddy_store *s, int retained, int *removed, eddy_err *err);

/*
 * eddy_store_retain, then the shared files that only the deleted
 * checkpoints referenced are deleted too, except the nkeep names in keep
 * (what checkpoints still being written reference: they are not listed in
 * any _metadata yet). A shared file that a remaining completed checkpoint
 * lists is never deleted.
 */
int eddy_store_retain_keep(eddy_store *s, int retained, const char *const *keep, int nkeep,
                           int *removed, eddy_err *err);

/*
 * Discards a job's checkpoints, as Flink does when a job ends and its
 * externalized retention does not keep them: every chk-<n> (each renamed
 * to chk-<n>.discard first, so a crash cannot leave a partial one) and the
 * leftovers of crashes; entries of kind "savepoint" stay (Flink never
 * deletes savepoints), and the shared files that what is left does not
 * reference. Then shared/ and the job folder go if nothing else is left in
 * them. job_dir is a path or file:// URI; one that does not
 * exist is fine. No writer of the job may be running.
 */
int eddy_store_discard(const char *job_dir, eddy_err *err);

/*
 * Disposes of one completed checkpoint or savepoint (`eddy savepoint -d`):
 * path is its folder or its _metadata. The folder must hold a _metadata
 * that reads as one (else the error eddy_chk_open would give: nothing that
 * is not a checkpoint is deleted); its files are not checked. The shared
 * files it references that no other completed checkpoint of its job folder
 * references go with it.
 */
int eddy_chk_dispose(const char *path, eddy_err *err);

/* ---- writing a checkpoint ---- */

/*
 * Starts checkpoint `id` (>= 0) of `kind` ("checkpoint", or "savepoint"
 * for a savepoint kept among the checkpoints, which retention never
 * deletes): creates chk-<id>.inprogress/. EDDY_EINVAL if chk-<id> already
 * exists (ids are never reused) or is being written. The writer is
 * independent of the store once begun; it ends with eddy_chk_commit or
 * eddy_chk_abort, which free it. The checkpoint's time is now unless set
 * with eddy_chk_set_time.
 */
int eddy_chk_begin(eddy_store *s, int64_t id, const char *kind,
                   eddy_chk_writer **out, eddy_err *err);

/*
 * Starts a savepoint of job_id in dir (created when missing), in a new
 * folder savepoint-<first 6 characters of job_id>-<12 random hex> (written
 * as <that>.inprogress, like a checkpoint). Its kind is "savepoint"; id is
 * the checkpoint id it takes. eddy_chk_writer_path gives where it will be.
 */
int eddy_savepoint_begin(const char *dir, const char *job_id, int64_t id,
                         eddy_chk_writer **out, eddy_err *err);

/* The checkpoint's "time" in ms since the epoch (e.g. its trigger time);
 * any time before commit, from the thread that will commit. */
void eddy_chk_set_time(eddy_chk_writer *w, int64_t ms);

/* The folder the checkpoint will have once committed (".../chk-7"); owned
 * by the writer, gone with it: copy it before commit or abort. */
const char *eddy_chk_writer_path(const eddy_chk_writer *w);
int64_t eddy_chk_writer_id(const eddy_chk_writer *w);

/* Bytes written so far: the files closed (without _metadata) and the
 * shared files this checkpoint uploaded. */
uint64_t eddy_chk_writer_bytes(eddy_chk_writer *w);

/* The whole size of the checkpoint so far: its files and every shared file
 * it references, uploaded by it or earlier. */
uint64_t eddy_chk_writer_state_size(eddy_chk_writer *w);

/*
 * Uploads the local file at path into the job's shared folder as `name`
 * (a name no shared file has: EDDY_EINVAL if one has; the rules of file
 * names hold), and lists it as a shared file of this checkpoint with its
 * size and xxh3-64 checksum, given back through *size and *checksum (NULL
 * is fine). The copy is fsynced before this returns, and written under a
 * temporary name first, so no shared file is ever half there. Only
 * checkpoints begun on a store have a shared folder (EDDY_EINVAL for a
 * savepoint). What a checkpoint uploaded goes again when it is aborted or
 * its commit fails. Threads: as eddy_chk_file_open.
 */
int eddy_chk_share(eddy_chk_writer *w, const char *path, const char *name, uint64_t *size,
                   uint64_t *checksum, eddy_err *err);

/*
 * Lists shared file `name`, which an earlier checkpoint uploaded with this
 * size and checksum, as referenced by this checkpoint, without copying
 * anything. EDDY_ENOTFOUND when the shared folder has no such file of that
 * size (the caller then uploads it again, under a new name).
 */
int eddy_chk_reference(eddy_chk_writer *w, const char *name, uint64_t size, uint64_t checksum,
                       eddy_err *err);

/*
 * Creates file `name` of the checkpoint. compression is "zstd" (level:
 * zstd's levels, negative ones included; 0 means zstd's default, 3) or
 * "none" (level ignored); NULL means "zstd". name must be non-empty,
 * without '/', not "." or "..", not "_metadata", at most 200 bytes, and
 * not used yet in this checkpoint (EDDY_EINVAL). The handle is used by one
 * thread at a time and ends with eddy_chk_file_close (or the writer's
 * abort, which frees files still open).
 */
int eddy_chk_file_open(eddy_chk_writer *w, const char *name,
                       const char *compression, int level, eddy_chk_file **out,
                       eddy_err *err);

/*
 * Appends n bytes (not kept). Bytes are buffered, compressed in large
 * chunks and written in large write(2) calls. A failure (EDDY_EIO with the
 * file's path) is final: later writes and the close return it again, and
 * the checkpoint cannot be committed any more.
 */
int eddy_chk_file_write(eddy_chk_file *f, const void *p, size_t n,
                        eddy_err *err);

/*
 * Ends the file: compresses and writes what is buffered, fsyncs, closes,
 * and records its name, size on disk, uncompressed size, xxh3-64 checksum
 * of the bytes on disk and compression for _metadata. Frees f in every
 * case; on failure the checkpoint cannot be committed any more.
 */
int eddy_chk_file_close(eddy_chk_file *f, eddy_err *err);

/*
 * Completes the checkpoint. Every file must be closed. Writes _metadata:
 *
 *   { "format": 1, "kind": ..., "job": ..., "id": ..., "time": ...,
 *     "files": [ { "name", "size", "raw_size", "checksum", "compression" } ],
 *     "shared": [ { "name", "size", "checksum" } ],
 *     ...every member of extra }
 *
 * ("shared" and format 2 only with shared files; checksum: 16 lower-case
 * hex digits), fsyncs the shared folder when files were uploaded, then
 * _metadata and the folder, renames
 * chk-<id>.inprogress to chk-<id> and fsyncs the parent folder: when this
 * returns EDDY_OK the checkpoint survives a crash. extra is a JSON object
 * or NULL; its members must not use the names above (EDDY_EINVAL). The
 * call takes the caller's reference to extra and frees w, whatever
 * happens; on failure (a file still open, a file that failed, an I/O
 * error) the folder is removed and files still open are freed, as by
 * eddy_chk_abort, and no chk-<id> is left behind.
 */
int eddy_chk_commit(eddy_chk_writer *w, json_t *extra, eddy_err *err);

/* eddy_chk_commit with extra given as JSON text (an object; NULL: none). */
int eddy_chk_commit_text(eddy_chk_writer *w, const char *extra, eddy_err *err);

/* Gives up: frees the files still open (no thread may still be using
 * them), removes the .inprogress folder and frees w. Errors are ignored:
 * what cannot be removed now goes when the store is next opened. NULL is
 * fine. */
void eddy_chk_abort(eddy_chk_writer *w);

/* ---- reading a completed checkpoint ---- */

/* One file of a completed checkpoint, as _metadata lists it. */
typedef struct eddy_chk_entry {
  const char *name;
  uint64_t size;           /* bytes on disk */
  uint64_t raw_size;       /* bytes before compression */
  uint64_t checksum;       /* xxh3-64 of the bytes on disk */
  const char *compression; /* "zstd" or "none" */
} eddy_chk_entry;

/* A shared file a completed checkpoint references, as _metadata lists it. */
typedef struct eddy_chk_shared {
  const char *name;
  uint64_t size;     /* bytes */
  uint64_t checksum; /* xxh3-64 */
} eddy_chk_shared;

/*
 * Opens a completed checkpoint or savepoint: path is its folder or its
 * _metadata. Parses _metadata, refuses a newer format (EDDY_EUNSUPPORTED),
 * checks its fields, and that every listed file, and every shared file it
 * references (in ../shared/), is there with the recorded size and checksum
 * (every file is read once); damage is EDDY_ECORRUPT "<folder
 * name>/<file>: <what>", or "<folder name>: shared file <name>: <what>".
 * EDDY_ENOTFOUND if path does not exist. *out belongs to the caller
 * (eddy_chk_close).
 */
int eddy_chk_open(const char *path, eddy_chk **out, eddy_err *err);

/* NULL is fine. Readers opened on c stay valid. */
void eddy_chk_close(eddy_chk *c);

/* Strings and the JSON are owned by c and valid until eddy_chk_close. */
int64_t eddy_chk_id(const eddy_chk *c);
const char *eddy_chk_kind(const eddy_chk *c);
int64_t eddy_chk_time(const eddy_chk *c);
const char *eddy_chk_job(const eddy_chk *c);
const char *eddy_chk_path(const eddy_chk *c); /* the folder, local path */
const char *eddy_chk_name(const eddy_chk *c); /* "chk-7", "savepoint-..." */
/* The parsed _metadata (borrowed: do not decref or modify). */
json_t *eddy_chk_metadata(const eddy_chk *c);
/* The _metadata text as stored; *len (NULL is fine) its length. */
const char *eddy_chk_metadata_text(const eddy_chk *c, size_t *len);
int eddy_chk_entry_count(const eddy_chk *c);
/* The i-th file (0 <= i < count), or NULL. */
const eddy_chk_entry *eddy_chk_entry_at(const eddy_chk *c, int i);
/* The file called name, or NULL. */
const eddy_chk_entry *eddy_chk_entry_find(const eddy_chk *c, const char *name);

/* The shared files c references, like its entries. */
int eddy_chk_shared_count(const eddy_chk *c);
const eddy_chk_shared *eddy_chk_shared_at(const eddy_chk *c, int i);
const eddy_chk_shared *eddy_chk_shared_find(const eddy_chk *c, const char *name);

/*
 * Puts a copy of one file of c at path `to` (a new file, which must not
 * exist): file `name` of the checkpoint, decompressed (shared 0), or shared
 * file `name` (shared 1), which is hard-linked where the file system
 * allows (shared files are never written again) and copied otherwise. A
 * copy is checked against the recorded size and checksum as it is made
 * (eddy_chk_open checked a link's). EDDY_ENOTFOUND when c does not list
 * the file; on failure nothing is left at `to`.
 */
int eddy_chk_extract(eddy_chk *c, const char *name, int shared, const char *to, eddy_err *err);

/*
 * The files of a native snapshot part put into folder `into` (created
 * here; it must not exist), each under its own name: files is a JSON array
 * of { "name": its name in the folder, "shared": a shared file of c } or
 * { "name":, "file": a file of c }, as runtime/checkpoint.c writes them.
 * Names must be plain file names (EDDY_ECORRUPT). On failure the folder is
 * removed again.
 */
int eddy_chk_extract_files(eddy_chk *c, json_t *files, const char *into, eddy_err *err);

/*
 * Opens file `name` of c for reading, decompressed. EDDY_ENOTFOUND
 * "chk-7/x: no such file in the checkpoint" when it is not listed. The
 * reader is independent of c once opened and belongs to the caller
 * (eddy_chk_reader_close).
 */
int eddy_chk_reader_open(eddy_chk *c, const char *name, eddy_chk_reader **out,
                         eddy_err *err);

/*
 * Reads up to cap (> 0) uncompressed bytes into buf; *got is how many, 0
 * only at the end (and on every call after it). The bytes on disk are
 * checked again as they are read: at the end, a size, checksum or
 * uncompressed size other than recorded, or a cut zstd frame, is
 * EDDY_ECORRUPT naming the file, as is a decompression error.
 */
int eddy_chk_reader_read(eddy_chk_reader *r, void *buf, size_t cap, size_t *got,
                         eddy_err *err);

/*
 * read without the copy: *p points to the next *n uncompressed bytes,
 * which r lends until the next call on it (*n is 0 only at the end, and on
 * every call after it). Reads and nexts may be mixed.
 */
int eddy_chk_reader_next(eddy_chk_reader *r, const void **p, size_t *n,
                         eddy_err *err);

/*
 * Makes r read ahead: from now on a thread of its own reads and
 * decompresses the file, up to a megabyte ahead of the caller, so that
 * the caller's work on the bytes and zstd's on making them overlap. The
 * reads give the same bytes and the same errors at the same places as
 * before. Between reads, from the thread that reads. EDDY_ENOMEM, or
 * EDDY_EIO when the thread cannot be started; r then reads as before.
 */
int eddy_chk_reader_ahead(eddy_chk_reader *r, eddy_err *err);

/* NULL is fine; stops the thread of a reader that reads ahead. */
void eddy_chk_reader_close(eddy_chk_reader *r);

/* ---- finding and listing checkpoints ---- */

/* Told about a checkpoint that cannot be used: name ("chk-7"), why (the
 * error message) and the one tried next ("chk-6"), or NULL if none is
 * left. Enough for "chk-7 is damaged (...): falling back to chk-6". */
typedef void (*eddy_chk_damaged_fn)(void *ud, const char *name, const char *why,
                                    const char *next);

/*
 * The newest completed checkpoint of a job folder (path or file:// URI)
 * that opens cleanly (eddy_chk_open, so checksums included). Each newer one
 * that does not is reported through damaged (NULL is fine) and passed
 * over. EDDY_ENOTFOUND when none is left, or the folder does not exist;
 * EDDY_ENOMEM stops the search. *out belongs to the caller.
 */
int eddy_store_latest(const char *job_dir, eddy_chk **out,
                      eddy_chk_damaged_fn damaged, void *ud, eddy_err *err);

typedef enum eddy_chk_state {
  EDDY_CHK_COMPLETED,
  EDDY_CHK_IN_PROGRESS,
  EDDY_CHK_DAMAGED
} eddy_chk_state;

/* "completed", "in progress", "damaged". */
const char *eddy_chk_state_name(eddy_chk_state st);

/* One entry of eddy_store_list; the strings are valid during the visit. */
typedef struct eddy_chk_info {
  const char *path; /* the folder */
  const char *name; /* "chk-7", "chk-8.inprogress", "savepoint-..." */
  const char *job;  /* from _metadata; else the job folder's name, or
                       NULL for a damaged savepoint */
  int64_t id;       /* from _metadata, else the folder name; -1 unknown */
  const char *kind; /* from _metadata, else from the folder name */
  int64_t time;     /* ms since the epoch: from _metadata, else the
                       folder's modification time */
  uint64_t size;    /* bytes of every file in the folder, and of the
                       shared files a completed one references */
  uint64_t shared;  /* of size, the bytes of those shared files */
  int files;        /* files listed in _metadata, else found */
  eddy_chk_state state;
  const char *problem; /* damaged: the message, else NULL */
} eddy_chk_info;

/*
 * Lists the checkpoints under dir (path or file:// URI), which may be a job
 * folder, a folder of job folders (a checkpoint dir), a folder with
 * savepoint-* folders, or one checkpoint folder. Jobs in name order, then
 * checkpoints by id, then savepoints by time. Completed checkpoints are
 * opened to tell damaged ones: with verify, as eddy_chk_open does (every
 * file read), else only _metadata and the file sizes are checked. A
 * non-zero return from visit stops the walk and is returned.
 */
int eddy_store_list(const char *dir, int verify,
                    int (*visit)(void *ud, const eddy_chk_info *info), void *ud,
                    eddy_err *err);

#endif
