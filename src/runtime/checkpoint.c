/*
 * Checkpoints: the coordinator, the barrier handling of each subtask, and
 * the writer thread (see checkpoint.h for the protocol).
 *
 * Everything but writing files runs on the executor's thread, between
 * callbacks: the coordinator is ticked once per executor round, barriers
 * are control frames the executor hands here in channel order, so the same
 * job and input give the same barrier events in the same order, which is
 * what `trace` shows. The writer thread only compresses and writes the
 * parts that a subtask's synchronous snapshot produced; its results come
 * back through a queue the coordinator empties on its tick.
 */
#include "runtime/checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "runtime/format.h"
#include "runtime/job_internal.h"
#include "state/keygroup.h"
#include "util/fs.h"

/* ---- native parts: files a backend made, shared between checkpoints ---- */

/* One file of a native part. */
typedef struct native_file {
  char *name;   /* in the backend's folder: "000012.sst", "CURRENT" */
  char *stored; /* the shared file's name, or the checkpoint file's */
  int shared;
  uint64_t size, checksum; /* shared files */
} native_file;

typedef struct native_set {
  native_file *v;
  int n, cap;
} native_set;

static void native_set_free(native_set *ns)
{
  if (ns == NULL)
    return;
  for (int i = 0; i < ns->n; i++) {
    free(ns->v[i].name);
    free(ns->v[i].stored);
  }
  free(ns->v);
  memset(ns, 0, sizeof *ns);
}

static int native_set_add(native_set *ns, const char *name, const char *stored, int shared,
                          uint64_t size, uint64_t checksum)
{
  if (ns->n == ns->cap) {
    int cap = ns->cap ? 2 * ns->cap : 16;
    native_file *v = realloc(ns->v, (size_t)cap * sizeof *v);
    if (v == NULL)
      return EDDY_ENOMEM;
    ns->v = v;
    ns->cap = cap;
  }
  native_file *f = &ns->v[ns->n];
  f->name = strdup(name);
  f->stored = strdup(stored);
  if (f->name == NULL || f->stored == NULL) {
    free(f->name);
    free(f->stored);
    return EDDY_ENOMEM;
  }
  f->shared = shared;
  f->size = size;
  f->checksum = checksum;
  ns->n++;
  return EDDY_OK;
}

static const native_file *native_set_find(const native_set *ns, const char *name)
{
  for (int i = 0; ns != NULL && i < ns->n; i++)
    if (strcmp(ns->v[i].name, name) == 0)
      return &ns->v[i];
  return NULL;
}


/* ---- snapshots: the parts a subtask's callback adds ---- */

typedef struct ckpt_part {
  char *name;              /* "<uid>-<subtask>.<part>" */
  eddy_buf blob;           /* a blob part's bytes */
  eddy_keyed_snapshot *keyed; /* or a keyed part's snapshot */
  /* or a native part: the folder of its files (removed with the part),
   * whose they are, their key groups; what the subtask's last completed
   * checkpoint holds (base, copied at the snapshot) and, once written,
   * what this one holds (files) */
  char *native_dir;
  char *format;
  int first, last;
  char *prefix; /* "<uid>-<subtask>", for the names of shared files */
  int64_t id;
  native_set base, files;
  eddy_task *task;
  struct ckpt_part *next;
} part;

struct eddy_snapshot {
  eddy_task *task;
  part *parts;
  int final; /* the last state of a subtask that finished */
  int savepoint;
  int64_t id;
  eddy_err err;
};

eddy_snapshot_purpose eddy_snapshot_purpose_of(const eddy_snapshot *s)
{
  return s->final ? EDDY_SNAPSHOT_FINAL
                  : s->savepoint ? EDDY_SNAPSHOT_SAVEPOINT : EDDY_SNAPSHOT_CHECKPOINT;
}

static part *new_part(eddy_snapshot *s, const char *name)
{
  vertex *v = job_vertex_of(s->task);
  part *p = calloc(1, sizeof *p);
  if (p == NULL)
    return NULL;
  size_t n = strlen(v->uid) + strlen(name) + 24;
  if ((p->name = malloc(n)) == NULL) {
    free(p);
    return NULL;
  }
  snprintf(p->name, n, "%s-%d.%s", v->uid, s->task->index, name);
  p->task = s->task;
  p->id = s->id;
  return p;
}

static void free_part(part *p)
{
  if (p == NULL)
    return;
  free(p->name);
  eddy_buf_free(&p->blob);
  eddy_keyed_snapshot_free(p->keyed);
  eddy_remove_tree(p->native_dir);
  free(p->native_dir);
  free(p->format);
  free(p->prefix);
  native_set_free(&p->base);
  native_set_free(&p->files);
  free(p);
}

static void free_parts(part *p);

static int check_part_name(eddy_snapshot *s, const char *name)
{
  for (const char *c = name; *c; c++)
    if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '_' || *c == '-'))
      return eddy_seterr(&s->err, EDDY_EINVAL, "a snapshot part name is [a-z0-9_-]+, not \"%s\"",
                         name);
  for (part *p = s->parts; p; p = p->next) {
    const char *dot = strrchr(p->name, '.');
    if (dot && strcmp(dot + 1, name) == 0)
      return eddy_seterr(&s->err, EDDY_EINVAL, "snapshot part \"%s\" added twice", name);
  }
  return name[0] ? EDDY_OK : eddy_seterr(&s->err, EDDY_EINVAL, "an empty snapshot part name");
}

int eddy_snapshot_add_blob(eddy_snapshot *s, const char *name, const void *bytes, size_t n)
{
  int rc = check_part_name(s, name);
  if (rc != EDDY_OK)
    return rc;
  part *p = new_part(s, name);
  if (p == NULL || eddy_buf_append(&p->blob, bytes, n) != EDDY_OK) {
    free_part(p);
    return eddy_seterr(&s->err, EDDY_ENOMEM, "out of memory snapshotting %s", name);
  }
  p->next = s->parts;
  s->parts = p;
  return EDDY_OK;
}

int eddy_snapshot_add_native(eddy_snapshot *s, const char *name, const char *format,
                             const char *dir, int first, int last)
{
  if (s->final) {
    eddy_remove_tree(dir); /* a finished subtask keeps no keyed state */
    return EDDY_OK;
  }
  int rc = s->savepoint ? eddy_seterr(&s->err, EDDY_EINVAL,
                                      "a savepoint is canonical: it takes no native part")
                         : check_part_name(s, name);
  if (rc != EDDY_OK) {
    eddy_remove_tree(dir);
    return rc;
  }
  vertex *v = job_vertex_of(s->task);
  part *p = new_part(s, name);
  size_t n = strlen(v->uid) + 24;
  if (p == NULL || (p->native_dir = strdup(dir)) == NULL ||
      (p->format = strdup(format)) == NULL || (p->prefix = malloc(n)) == NULL)
    goto nomem;
  snprintf(p->prefix, n, "%s-%d", v->uid, s->task->index);
  p->first = first;
  p->last = last;
  /* what the last completed checkpoint holds, for the writer thread */
  const native_set *base = s->task->ckpt_base;
  for (int i = 0; base != NULL && i < base->n; i++)
    if (native_set_add(&p->base, base->v[i].name, base->v[i].stored, 1, base->v[i].size,
                       base->v[i].checksum) != EDDY_OK)
      goto nomem;
  p->next = s->parts;
  s->parts = p;
  return EDDY_OK;
nomem:
  if (p == NULL || p->native_dir == NULL)
    eddy_remove_tree(dir);
  free_part(p); /* removes the folder too */
  return eddy_seterr(&s->err, EDDY_ENOMEM, "out of memory snapshotting %s", name);
}

int eddy_snapshot_add_keyed(eddy_snapshot *s, const char *name, eddy_keyed_snapshot *ks)
{
  /* A finished subtask never processes again and a restore does not give
   * it state back (as Flink treats finished operators): its keyed state is
   * not kept. */
  if (s->final) {
    eddy_keyed_snapshot_free(ks);
    return EDDY_OK;
  }
  int rc = check_part_name(s, name);
  if (rc != EDDY_OK) {
    eddy_keyed_snapshot_free(ks);
    return rc;
  }
  part *p = new_part(s, name);
  if (p == NULL) {
    eddy_keyed_snapshot_free(ks);
    return eddy_seterr(&s->err, EDDY_ENOMEM, "out of memory snapshotting %s", name);
  }
  p->keyed = ks;
  p->next = s->parts;
  s->parts = p;
  return EDDY_OK;
}

/* ---- the coordinator's records ---- */

typedef struct pending {
  int64_t id;
  int64_t triggered; /* processing time */
  double wall_start; /* monotonic ms, for the duration */
  int acked;         /* subtasks whose synchronous part (and channel state) is done */
  int writes;        /* parts queued or being written */
  int aborted;       /* given up; its folder goes once its writes are done */
  int savepoint;     /* the savepoint asked for (c->sp) */
  eddy_chk_writer *writer;
  json_t *subtasks;  /* for _metadata */
  int history;       /* index into the coordinator's history */
  /* native parts: the shared files they may reference (retention must
   * keep those until this is over), and, once written, what each subtask's
   * part holds, its base from the completion on */
  char **refs;
  int nrefs, crefs;
  struct native_result *natives;
  struct pending *next;
} pending;

typedef struct native_result {
  eddy_task *task;
  native_set files;
  struct native_result *next;
} native_result;

typedef struct work {
  pending *p;
  part *part;
  eddy_task *ack; /* the subtask whose last part this is, for the trace */
  int rc;
  char msg[EDDY_ERR_MSG_MAX];
  struct work *next;
} work;

typedef struct savepoint_request {
  char *dir;
  int stop, drain;
  int triggered;
  eddy_savepoint_done done;
  void *ud;
} savepoint_request;

typedef struct history_entry {
  eddy_ckpt_info info;
  char *path;
  char *failure;
} history_entry;

struct ckpt_coordinator {
  eddy_checkpoint_config cfg;
  char *dir, *job_id, *job_name, *compression;
  eddy_store *store;
  int64_t next_id;
  int64_t next_trigger;
  int64_t last_completion; /* processing time of the last completion */
  int64_t last_success;    /* its id */
  int failures;            /* consecutive counted failures */
  int64_t final_id;        /* the checkpoint taken once all finished, 0 none */
  int final_completed;
  savepoint_request *sp;   /* the savepoint asked for, or NULL */
  pending *pending;        /* oldest first */
  int npending;
  int ntasks;
  history_entry *history;
  int nhistory;
  /* the writer thread */
  pthread_t thread;
  int thread_started;
  pthread_mutex_t lock;
  pthread_cond_t wake;    /* work for the writer */
  pthread_cond_t written; /* work done by the writer */
  work *todo, *todo_tail;
  work *done, *done_tail;
  int stop;
};

static double wall_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

static void trace(eddy_job *job, int64_t id, eddy_task *t, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* One line per barrier event, for watching checkpoints happen. */
static void trace(eddy_job *job, int64_t id, eddy_task *t, const char *fmt, ...)
{
  FILE *out = job->ckpt->cfg.trace;
  if (out == NULL)
    return;
  fprintf(out, "checkpoint %lld: ", (long long)id);
  if (t != NULL) {
    vertex *v = job_vertex_of(t);
    fprintf(out, "%s (%d/%d): ", v->name, t->index + 1, v->parallelism);
  }
  va_list ap;
  va_start(ap, fmt);
  vfprintf(out, fmt, ap);
  va_end(ap);
  fputc('\n', out);
  fflush(out);
}

/* The writer thread reads `aborted` to skip work that is no longer
 * wanted, so it changes under the lock. */
static void set_aborted(ckpt_coordinator *c, pending *p)
{
  pthread_mutex_lock(&c->lock);
  p->aborted = 1;
  pthread_mutex_unlock(&c->lock);
}

static pending *find_pending(ckpt_coordinator *c, int64_t id)
{
  for (pending *p = c->pending; p; p = p->next)
    if (p->id == id && !p->aborted)
      return p;
  return NULL;
}

static void set_history_failure(ckpt_coordinator *c, pending *p, const char *reason)
{
  history_entry *h = &c->history[p->history];
  h->info.status = EDDY_CKPT_FAILED;
  h->info.duration_ms = wall_ms() - p->wall_start;
  free(h->failure);
  h->failure = strdup(reason);
  h->info.failure = h->failure;
}

/* ---- the writer thread ---- */

typedef struct file_sink {
  eddy_chk_file *f;
  eddy_err *err;
} file_sink;

static int write_to_file(void *ud, const void *p, size_t n)
{
  file_sink *s = ud;
  return eddy_chk_file_write(s->f, p, n, s->err);
}

static int ends_with(const char *s, const char *suffix)
{
  size_t n = strlen(s), m = strlen(suffix);
  return n >= m && strcmp(s + n - m, suffix) == 0;
}

static int name_cmp(const void *a, const void *b)
{
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* A file of a native part that is the checkpoint's own: copied in as
 * <part name>.<file name>. */
static int write_private(ckpt_coordinator *c, work *w, const char *path, const char *file,
                         eddy_err *err)
{
  eddy_chk_file *f;
  int rc = eddy_chk_file_open(w->p->writer, file, c->compression, c->cfg.level, &f, err);
  if (rc != EDDY_OK)
    return rc;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    rc = eddy_seterr(err, EDDY_EIO, "%s: %s", path, strerror(errno));
  char buf[65536];
  while (rc == EDDY_OK) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      rc = eddy_seterr(err, EDDY_EIO, "%s: %s", path, strerror(errno));
    if (n <= 0)
      break;
    rc = eddy_chk_file_write(f, buf, (size_t)n, err);
  }
  if (fd >= 0)
    close(fd);
  int crc = eddy_chk_file_close(f, rc == EDDY_OK ? err : NULL);
  return rc == EDDY_OK ? crc : rc;
}

/* Writes a native part: SST files that the base holds are referenced, the
 * other SST files uploaded to shared/, the rest copied into the
 * checkpoint's folder. What it holds goes into the part's files. */
static int write_native(ckpt_coordinator *c, work *w, eddy_err *err)
{
  part *pt = w->part;
  DIR *d = opendir(pt->native_dir);
  if (d == NULL)
    return eddy_seterr(err, EDDY_EIO, "%s: %s", pt->native_dir, strerror(errno));
  char **names = NULL;
  int n = 0, cap = 0, rc = EDDY_OK;
  struct dirent *de;
  while (rc == EDDY_OK && (de = readdir(d)) != NULL) {
    if (de->d_name[0] == '.')
      continue;
    if (n == cap) {
      cap = cap ? 2 * cap : 32;
      char **nn = realloc(names, (size_t)cap * sizeof *nn);
      if (nn == NULL) {
        rc = eddy_seterr(err, EDDY_ENOMEM, "out of memory writing %s", pt->name);
        break;
      }
      names = nn;
    }
    if ((names[n] = strdup(de->d_name)) == NULL)
      rc = eddy_seterr(err, EDDY_ENOMEM, "out of memory writing %s", pt->name);
    else
      n++;
  }
  closedir(d);
  if (n > 1)
    qsort(names, (size_t)n, sizeof *names, name_cmp); /* the same _metadata every time */
  char path[4096], stored[512];
  for (int i = 0; i < n && rc == EDDY_OK; i++) {
    snprintf(path, sizeof path, "%s/%s", pt->native_dir, names[i]);
    struct stat st;
    if (stat(path, &st) != 0) {
      rc = eddy_seterr(err, EDDY_EIO, "%s: %s", path, strerror(errno));
      break;
    }
    if (!S_ISREG(st.st_mode))
      continue;
    if (!ends_with(names[i], ".sst")) {
      snprintf(stored, sizeof stored, "%s.%s", pt->name, names[i]);
      rc = write_private(c, w, path, stored, err);
      if (rc == EDDY_OK && native_set_add(&pt->files, names[i], stored, 0, 0, 0) != EDDY_OK)
        rc = eddy_seterr(err, EDDY_ENOMEM, "out of memory writing %s", pt->name);
      continue;
    }
    /* an SST file is immutable: its name in this backend's folder stands
     * for its bytes, so one the last completed checkpoint holds is only
     * referenced (unless retention took it meanwhile: then it goes up
     * again) */
    const native_file *b = native_set_find(&pt->base, names[i]);
    uint64_t size = 0, sum = 0;
    if (b != NULL && b->size == (uint64_t)st.st_size) {
      rc = eddy_chk_reference(w->p->writer, b->stored, b->size, b->checksum, err);
      if (rc == EDDY_OK) {
        if (native_set_add(&pt->files, names[i], b->stored, 1, b->size, b->checksum) != EDDY_OK)
          rc = eddy_seterr(err, EDDY_ENOMEM, "out of memory writing %s", pt->name);
        continue;
      }
      if (rc != EDDY_ENOTFOUND)
        break;
      rc = EDDY_OK;
    }
    snprintf(stored, sizeof stored, "%s-chk%" PRId64 "-%s", pt->prefix, pt->id, names[i]);
    rc = eddy_chk_share(w->p->writer, path, stored, &size, &sum, err);
    if (rc == EDDY_OK && native_set_add(&pt->files, names[i], stored, 1, size, sum) != EDDY_OK)
      rc = eddy_seterr(err, EDDY_ENOMEM, "out of memory writing %s", pt->name);
  }
  for (int i = 0; i < n; i++)
    free(names[i]);
  free(names);
  return rc;
}

/* Writes one part into its checkpoint's folder. */
static void write_part(ckpt_coordinator *c, work *w)
{
  eddy_err err;
  eddy_chk_file *f;
  if (w->part->native_dir != NULL) {
    w->rc = write_native(c, w, &err);
    if (w->rc != EDDY_OK)
      snprintf(w->msg, sizeof w->msg, "%s", err.msg);
    return;
  }
  int rc = eddy_chk_file_open(w->p->writer, w->part->name, c->compression, c->cfg.level, &f, &err);
  if (rc == EDDY_OK) {
    if (w->part->keyed != NULL) {
      file_sink sink = {f, &err};
      rc = eddy_keyed_snapshot_write(w->part->keyed, write_to_file, &sink, &err);
    } else {
      rc = eddy_chk_file_write(f, w->part->blob.data, w->part->blob.len, &err);
    }
    int crc = eddy_chk_file_close(f, rc == EDDY_OK ? &err : NULL);
    if (rc == EDDY_OK)
      rc = crc;
  }
  w->rc = rc;
  if (rc != EDDY_OK)
    snprintf(w->msg, sizeof w->msg, "%s", err.msg);
}

static void *writer_main(void *arg)
{
  ckpt_coordinator *c = arg;
  pthread_mutex_lock(&c->lock);
  for (;;) {
    while (c->todo == NULL && !c->stop)
      pthread_cond_wait(&c->wake, &c->lock);
    if (c->todo == NULL)
      break;
    work *w = c->todo;
    c->todo = w->next;
    if (c->todo == NULL)
      c->todo_tail = NULL;
    int skip = w->p->aborted;
    pthread_mutex_unlock(&c->lock);
    if (skip)
      w->rc = EDDY_EINTR; /* given up already: do not spend time on it */
    else
      write_part(c, w);
    pthread_mutex_lock(&c->lock);
    w->next = NULL;
    if (c->done_tail)
      c->done_tail->next = w;
    else
      c->done = w;
    c->done_tail = w;
    pthread_cond_signal(&c->written);
  }
  pthread_mutex_unlock(&c->lock);
  return NULL;
}

static int queue_part(ckpt_coordinator *c, pending *p, part *pt, eddy_task *ack)
{
  work *w = calloc(1, sizeof *w);
  if (w == NULL)
    return EDDY_ENOMEM;
  w->p = p;
  w->part = pt;
  w->ack = ack;
  p->writes++;
  pthread_mutex_lock(&c->lock);
  if (c->todo_tail)
    c->todo_tail->next = w;
  else
    c->todo = w;
  c->todo_tail = w;
  pthread_cond_signal(&c->wake);
  pthread_mutex_unlock(&c->lock);
  return EDDY_OK;
}

/* ---- setting up and tearing down ---- */

int eddy_job_enable_checkpoints(eddy_job *job, const eddy_checkpoint_config *cfg)
{
  if (job->ran)
    return eddy_seterr(&job->err, EDDY_EINVAL, "a job that has run cannot change");
  if ((cfg->interval > 0 && cfg->dir == NULL) || cfg->job_id == NULL)
    return eddy_seterr(&job->err, EDDY_EINVAL, "checkpoints need a folder and a job id");
  ckpt_coordinator *c = calloc(1, sizeof *c);
  if (c == NULL)
    return eddy_seterr(&job->err, EDDY_ENOMEM, "out of memory setting up checkpoints");
  c->cfg = *cfg;
  c->dir = strdup(cfg->dir ? cfg->dir : "");
  c->job_id = strdup(cfg->job_id);
  c->job_name = strdup(cfg->job_name ? cfg->job_name : "");
  c->compression = strdup(cfg->compression ? cfg->compression : "zstd");
  if (c->dir == NULL || c->job_id == NULL || c->job_name == NULL || c->compression == NULL) {
    free(c->dir);
    free(c->job_id);
    free(c->job_name);
    free(c->compression);
    free(c);
    return eddy_seterr(&job->err, EDDY_ENOMEM, "out of memory setting up checkpoints");
  }
  c->cfg.dir = c->dir;
  c->cfg.job_id = c->job_id;
  c->cfg.job_name = c->job_name;
  c->cfg.compression = c->compression;
  if (c->cfg.max_concurrent < 1)
    c->cfg.max_concurrent = 1;
  if (c->cfg.retained < 1)
    c->cfg.retained = 1;
  c->next_id = cfg->next_id > 0 ? cfg->next_id : 1;
  c->failures = cfg->failures > 0 ? cfg->failures : 0;
  c->next_trigger = EDDY_NEVER;
  c->last_completion = INT64_MIN;
  c->last_success = 0;
  pthread_mutex_init(&c->lock, NULL);
  pthread_cond_init(&c->wake, NULL);
  pthread_cond_init(&c->written, NULL);
  job->ckpt = c;
  eddy_err err;
  /* without periodic checkpoints there is no checkpoint folder: only
   * savepoints, which go where they are asked to */
  if (cfg->interval > 0 && eddy_store_open(c->dir, c->job_id, NULL, &c->store, &err) != EDDY_OK)
    return eddy_err_copy(&job->err, &err);
  if (pthread_create(&c->thread, NULL, writer_main, c) != 0)
    return eddy_seterr(&job->err, EDDY_EIO, "cannot start the checkpoint writer thread");
  c->thread_started = 1;
  return EDDY_OK;
}

int eddy_job_savepoint(eddy_job *job, const char *dir, int stop, int drain,
                       eddy_savepoint_done done, void *ud, eddy_err *err)
{
  ckpt_coordinator *c = job->ckpt;
  if (c == NULL)
    return eddy_seterr(err, EDDY_EINVAL, "savepoints need the job's checkpoint coordinator");
  if (c->sp != NULL || job->stop_after != 0 || job->draining)
    return eddy_seterr(err, EDDY_EINVAL, "a savepoint is already being taken");
  if (dir == NULL || *dir == '\0')
    return eddy_seterr(err, EDDY_EINVAL, "a savepoint needs a folder");
  savepoint_request *sp = calloc(1, sizeof *sp);
  if (sp == NULL || (sp->dir = strdup(dir)) == NULL) {
    free(sp);
    return eddy_seterr(err, EDDY_ENOMEM, "out of memory asking for a savepoint");
  }
  sp->stop = stop;
  sp->drain = stop && drain;
  sp->done = done;
  sp->ud = ud;
  c->sp = sp;
  return EDDY_OK;
}

int eddy_job_stop_with_savepoint_at_end(eddy_job *job, const char *dir)
{
  if (job->ckpt == NULL)
    return eddy_seterr(&job->err, EDDY_EINVAL, "savepoints need the job's checkpoint coordinator");
  free(job->savepoint_at_end);
  if ((job->savepoint_at_end = strdup(dir)) == NULL)
    return eddy_seterr(&job->err, EDDY_ENOMEM, "out of memory");
  return EDDY_OK;
}

int ckpt_sources_at_end(eddy_job *job)
{
  ckpt_coordinator *c = job->ckpt;
  if (c->sp != NULL || job->stop_after != 0)
    return EDDY_OK; /* asked already */
  return eddy_job_savepoint(job, job->savepoint_at_end, 1, 0, NULL, NULL, &job->err);
}

int ckpt_periodic(const eddy_job *job)
{
  return job->ckpt != NULL && job->ckpt->cfg.interval > 0;
}

int ckpt_source_may_poll(const eddy_job *job, const eddy_task *t)
{
  return job->stop_after == 0 || t->ckpt_last < job->stop_after;
}

void eddy_job_cancel(eddy_job *job)
{
  job->cancelled = 1;
}

int eddy_job_stopped(const eddy_job *job)
{
  return job->stopped;
}

const char *eddy_job_savepoint_path(const eddy_job *job)
{
  const ckpt_coordinator *c = job->ckpt;
  for (int i = c ? c->nhistory - 1 : -1; i >= 0; i--)
    if (c->history[i].info.kind != NULL && strcmp(c->history[i].info.kind, "savepoint") == 0 &&
        c->history[i].info.status == EDDY_CKPT_COMPLETED)
      return c->history[i].path;
  return NULL;
}

int eddy_job_restore(eddy_job *job, eddy_chk *from)
{
  if (job->ran)
    return eddy_seterr(&job->err, EDDY_EINVAL, "a job that has run cannot change");
  job->restore = from;
  return EDDY_OK;
}

/* Frees a pending checkpoint whose writes are over; a folder that was not
 * committed goes. */
static void release_pending(pending *p)
{
  if (p->writer != NULL)
    eddy_chk_abort(p->writer);
  json_decref(p->subtasks);
  for (int i = 0; i < p->nrefs; i++)
    free(p->refs[i]);
  free(p->refs);
  while (p->natives) {
    native_result *r = p->natives;
    p->natives = r->next;
    native_set_free(&r->files);
    free(r);
  }
  free(p);
}

/* Handles what the writer finished: counts writes down, frees the parts
 * (keyed snapshots must be freed on this thread), notes failures. */
static int collect_done(eddy_job *job);

void ckpt_shutdown(eddy_job *job)
{
  ckpt_coordinator *c = job->ckpt;
  if (c == NULL)
    return;
  if (c->thread_started) {
    pthread_mutex_lock(&c->lock);
    for (pending *p = c->pending; p; p = p->next)
      p->aborted = 1; /* the writer skips what is left */
    c->stop = 1;
    pthread_cond_signal(&c->wake);
    pthread_mutex_unlock(&c->lock);
    pthread_join(c->thread, NULL);
    c->thread_started = 0;
  }
  for (pending *p = c->pending; p; p = p->next)
    p->aborted = 1; /* nothing is notified any more */
  collect_done(job);
  for (work *w = c->todo; w;) {
    work *next = w->next;
    free_part(w->part);
    free(w);
    w = next;
  }
  c->todo = c->todo_tail = NULL;
  while (c->pending) {
    pending *p = c->pending;
    c->pending = p->next;
    if (c->history[p->history].info.status == EDDY_CKPT_PENDING)
      set_history_failure(c, p, "the job ended before it completed");
    release_pending(p);
  }
  c->npending = 0;
}

void ckpt_free(eddy_job *job)
{
  ckpt_coordinator *c = job->ckpt;
  if (c == NULL)
    return;
  ckpt_shutdown(job);
  for (int i = 0; i < c->nhistory; i++) {
    free(c->history[i].path);
    free(c->history[i].failure);
  }
  if (c->sp != NULL) {
    free(c->sp->dir);
    free(c->sp);
  }
  free(c->history);
  eddy_store_close(c->store);
  pthread_mutex_destroy(&c->lock);
  pthread_cond_destroy(&c->wake);
  pthread_cond_destroy(&c->written);
  free(c->dir);
  free(c->job_id);
  free(c->job_name);
  free(c->compression);
  free(c);
  job->ckpt = NULL;
}

/* ---- failures ---- */

/* Gives a pending checkpoint up. Counted failures (declined, expired,
 * written badly) count towards tolerable_failures, as SEMANTICS.md §7 says;
 * exceeding it fails the job. */
static int abort_pending(eddy_job *job, pending *p, int counted, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int abort_pending(eddy_job *job, pending *p, int counted, const char *fmt, ...)
{
  ckpt_coordinator *c = job->ckpt;
  char reason[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(reason, sizeof reason, fmt, ap);
  va_end(ap);
  if (p->aborted)
    return EDDY_OK;
  set_aborted(c, p);
  c->npending--;
  set_history_failure(c, p, reason);
  trace(job, p->id, NULL, "aborted: %s", reason);
  int stop_failed = 0;
  if (p->savepoint) {
    /* savepoints never count; one for stopping the job fails it, as in
     * Flink (its sources have stopped already) */
    counted = 0;
    savepoint_request *sp = c->sp;
    c->sp = NULL;
    stop_failed = sp->stop;
    if (sp->done)
      sp->done(sp->ud, EDDY_EIO, reason);
    free(sp->dir);
    free(sp);
  }
  /* subtasks still aligning or recording for it stop */
  for (int vi = 0; vi < job->nvertices; vi++) {
    vertex *v = &job->vertices[vi];
    for (int i = 0; v->tasks && i < v->parallelism; i++) {
      eddy_task *t = &v->tasks[i];
      if (t->ckpt_id != p->id)
        continue;
      for (int k = 0; k < t->ninputs; k++) {
        t->inputs[k]->blocked = 0;
        t->inputs[k]->recording = 0;
      }
      t->recording = 0;
      t->ckpt_id = 0;
      if (p->id > t->ckpt_last)
        t->ckpt_last = p->id;
      eddy_buf_reset(&t->channel_state);
    }
  }
  for (int vi = 0; vi < job->nvertices; vi++) {
    vertex *v = &job->vertices[vi];
    for (int i = 0; v->tasks && i < v->parallelism; i++) {
      eddy_task *t = &v->tasks[i];
      if (t->opened && v->ops->notify) {
        int rc = CALL(job, t, v->ops->notify(t->ud, t, p->id, 0));
        if (rc != EDDY_OK)
          return job_fail(job, t, rc, "checkpoint notification");
      }
    }
  }
  if (stop_failed)
    return eddy_seterr(&job->err, EDDY_EIO, "the savepoint to stop the job failed: %s", reason);
  /* INT32_MAX tolerates any number, as Integer.MAX_VALUE does in Flink */
  if (counted && p->id > c->last_success && c->cfg.tolerable_failures != INT32_MAX) {
    c->failures++;
    if (c->failures > c->cfg.tolerable_failures) {
      c->failures = 0;
      return eddy_seterr(&job->err, EDDY_EIO,
                         "Exceeded checkpoint tolerable failure threshold (%d): checkpoint "
                         "%lld: %s",
                         c->cfg.tolerable_failures, (long long)p->id, reason);
    }
  }
  return EDDY_OK;
}

/* ---- snapshots of subtasks ---- */

/* The key groups [first, last] as JSON. */
static json_t *range_json(int first, int last)
{
  json_t *range = json_array();
  json_array_append_new(range, json_integer(first));
  json_array_append_new(range, json_integer(last));
  return range;
}

static json_t *subtask_entry(eddy_task *t, eddy_snapshot *s)
{
  vertex *v = job_vertex_of(t);
  json_t *e = json_object();
  json_t *parts = json_array();
  /* how the keyed state is kept: a native part's files (listed once they
   * are written), or the canonical keyed part */
  const char *keyed = NULL;
  for (part *p = s->parts; p; p = p->next) {
    if (p->native_dir != NULL) {
      keyed = "native";
      json_object_set_new(e, "native",
                          json_pack("{s:s, s:o, s:[]}", "format", p->format, "key_groups",
                                    range_json(p->first, p->last), "files"));
      continue;
    }
    if (p->keyed != NULL && keyed == NULL)
      keyed = "canonical";
    json_array_append_new(parts, json_string(p->name));
  }
  if (keyed != NULL)
    json_object_set_new(e, "keyed", json_string(keyed));
  json_object_set_new(e, "vertex", json_string(v->name));
  json_object_set_new(e, "uid", json_string(v->uid));
  json_object_set_new(e, "subtask", json_integer(t->index));
  json_object_set_new(e, "parallelism", json_integer(v->parallelism));
  json_object_set_new(e, "max_parallelism", json_integer(v->max_parallelism));
  int first, last;
  eddy_key_group_range(v->max_parallelism, v->parallelism, t->index, &first, &last);
  json_object_set_new(e, "key_groups", range_json(first, last));
  json_object_set_new(e, "parts", parts);
  return e;
}

/* Remembers the shared files a native part may reference, so that
 * retention keeps them while the checkpoint is being written. */
static int note_refs(pending *p, const part *pt)
{
  for (int i = 0; i < pt->base.n; i++) {
    if (p->nrefs == p->crefs) {
      int cap = p->crefs ? 2 * p->crefs : 32;
      char **r = realloc(p->refs, (size_t)cap * sizeof *r);
      if (r == NULL)
        return EDDY_ENOMEM;
      p->refs = r;
      p->crefs = cap;
    }
    if ((p->refs[p->nrefs] = strdup(pt->base.v[i].stored)) == NULL)
      return EDDY_ENOMEM;
    p->nrefs++;
  }
  return EDDY_OK;
}

/* The synchronous part of subtask t's snapshot for checkpoint id: its
 * callback freezes its state into parts, which go to the writer. */
static int snapshot_task(eddy_job *job, eddy_task *t, int64_t id, int defer_ack)
{
  ckpt_coordinator *c = job->ckpt;
  pending *p = find_pending(c, id);
  if (p == NULL)
    return EDDY_OK; /* given up meanwhile: nothing to write */
  vertex *v = job_vertex_of(t);
  eddy_snapshot s;
  memset(&s, 0, sizeof s);
  s.task = t;
  s.savepoint = p->savepoint;
  s.id = id;
  double started = wall_ms();
  int rc = EDDY_OK;
  if (v->ops->snapshot)
    rc = CALL(job, t, v->ops->snapshot(t->ud, t, id, &s));
  double took = wall_ms() - started;
  history_entry *h = &c->history[p->history];
  if (took > h->info.sync_ms)
    h->info.sync_ms = took;
  if (rc != EDDY_OK) {
    /* the subtask declines: the job goes on, the checkpoint does not */
    char why[EDDY_ERR_MSG_MAX];
    snprintf(why, sizeof why, "%s", job->err.code != EDDY_OK ? job->err.msg : s.err.msg);
    eddy_err_clear(&job->err);
    while (s.parts) {
      part *n = s.parts->next;
      free_part(s.parts);
      s.parts = n;
    }
    return abort_pending(job, p, 1, "declined by %s (%d/%d): %s", v->name, t->index + 1,
                         v->parallelism, why);
  }
  json_array_append_new(p->subtasks, subtask_entry(t, &s));
  for (part *pt = s.parts; pt; pt = pt->next)
    if (pt->native_dir != NULL && note_refs(p, pt) != EDDY_OK) {
      free_parts(s.parts);
      return eddy_seterr(&job->err, EDDY_ENOMEM, "out of memory queueing a snapshot");
    }
  trace(job, id, t, "snapshot taken (%.1f ms)", took);
  if (s.parts == NULL && !defer_ack)
    trace(job, id, t, "acknowledged (no state to write)");
  while (s.parts) {
    part *n = s.parts->next;
    /* unaligned, the channel state written later is the last part */
    if (queue_part(c, p, s.parts, n == NULL && !defer_ack ? t : NULL) != EDDY_OK) {
      free_part(s.parts);
      return eddy_seterr(&job->err, EDDY_ENOMEM, "out of memory queueing a snapshot");
    }
    s.parts = n;
  }
  if (!defer_ack)
    p->acked++;
  return EDDY_OK;
}

/* Sends barrier id on every output channel: in the channel's order, or
 * (unaligned) ahead of everything queued, noting how much it jumped. */
static int emit_barrier(eddy_job *job, eddy_task *t, int64_t id, int64_t trigger, int priority)
{
  for (int o = 0; o < t->noutputs; o++) {
    task_output *out = &t->outputs[o];
    for (int k = 0; k < out->nchannels; k++) {
      channel *ch = out->channels[k];
      if (ch == NULL)
        continue;
      if (priority) {
        ch->priority = id;
        ch->priority_trigger = trigger;
        ch->overtaken = ch->frames;
      } else if (job_channel_push(&job->err, ch, EDDY_FRAME_BARRIER, id, 0, NULL, 0, &trigger,
                                  sizeof trigger) != EDDY_OK) {
        return job->err.code;
      }
    }
  }
  return EDDY_OK;
}

static int open_inputs(const eddy_task *t) { return t->ninputs - t->ended_inputs; }

/* ---- finished subtasks (Flink's checkpoints after tasks finish) ---- */

static void free_parts(part *p)
{
  while (p) {
    part *next = p->next;
    free_part(p);
    p = next;
  }
}

/* A subtask finishes: its last state (the callback's parts for the next
 * checkpoint id, keyed state left out) is kept and written again into
 * every later checkpoint, which marks the subtask finished, so that a
 * restore does not run it again: a finished source does not replay, a
 * finished sink still commits what it had prepared. */
int ckpt_task_finishing(eddy_job *job, eddy_task *t)
{
  ckpt_coordinator *c = job->ckpt;
  vertex *v = job_vertex_of(t);
  if (c == NULL || v->ops->snapshot == NULL)
    return EDDY_OK;
  eddy_snapshot s;
  memset(&s, 0, sizeof s);
  s.task = t;
  s.final = 1;
  int rc = CALL(job, t, v->ops->snapshot(t->ud, t, c->next_id, &s));
  if (rc != EDDY_OK) {
    free_parts(s.parts);
    if (job->err.code == EDDY_OK)
      eddy_err_copy(&job->err, &s.err);
    return job_fail(job, t, rc, "snapshot");
  }
  free_parts(t->ckpt_final);
  t->ckpt_final = s.parts;
  return EDDY_OK;
}

void ckpt_task_free(eddy_task *t)
{
  free_parts(t->ckpt_final);
  t->ckpt_final = NULL;
  native_set_free(t->ckpt_base);
  free(t->ckpt_base);
  t->ckpt_base = NULL;
}

/* A finished subtask's part of checkpoint p: its last state again. */
static int snapshot_finished(eddy_job *job, eddy_task *t, pending *p)
{
  ckpt_coordinator *c = job->ckpt;
  eddy_snapshot s;
  memset(&s, 0, sizeof s);
  s.task = t;
  for (part *f = t->ckpt_final; f; f = f->next) {
    const char *dot = strrchr(f->name, '.');
    if (eddy_snapshot_add_blob(&s, dot + 1, f->blob.data, f->blob.len) != EDDY_OK) {
      free_parts(s.parts);
      return eddy_seterr(&job->err, EDDY_ENOMEM, "out of memory snapshotting a finished subtask");
    }
  }
  json_t *e = subtask_entry(t, &s);
  json_object_set_new(e, "finished", json_true());
  json_array_append_new(p->subtasks, e);
  while (s.parts) {
    part *n = s.parts->next;
    if (queue_part(c, p, s.parts, n == NULL ? t : NULL) != EDDY_OK) {
      free_parts(s.parts);
      return eddy_seterr(&job->err, EDDY_ENOMEM, "out of memory queueing a snapshot");
    }
    s.parts = n;
  }
  p->acked++;
  trace(job, p->id, t, "finished: its last state is kept");
  return EDDY_OK;
}

/* Whether the restored checkpoint marks subtask t finished. */
static int restored_finished(const eddy_job *job, const eddy_task *t)
{
  if (job->restore == NULL)
    return 0;
  const vertex *v = job_vertex_of(t);
  json_t *subtasks = json_object_get(eddy_chk_metadata(job->restore), "subtasks");
  for (size_t i = 0; i < json_array_size(subtasks); i++) {
    json_t *e = json_array_get(subtasks, i);
    const char *uid = json_string_value(json_object_get(e, "uid"));
    if (uid != NULL && strcmp(uid, v->uid) == 0 &&
        json_integer_value(json_object_get(e, "subtask")) == t->index)
      return json_is_true(json_object_get(e, "finished"));
  }
  return 0;
}

/* ---- the coordinator's tick ---- */

static int all_opened(eddy_job *job)
{
  for (int vi = 0; vi < job->nvertices; vi++) {
    vertex *v = &job->vertices[vi];
    for (int i = 0; i < v->parallelism; i++)
      if (!v->tasks[i].opened)
        return 0;
  }
  return 1;
}

static int trigger(eddy_job *job, int64_t now, int savepoint)
{
  ckpt_coordinator *c = job->ckpt;
  int64_t id = c->next_id++;
  history_entry *hs = realloc(c->history, (size_t)(c->nhistory + 1) * sizeof *hs);
  pending *p = calloc(1, sizeof *p);
  if (hs == NULL || p == NULL) {
    if (hs != NULL)
      c->history = hs;
    free(p);
    return eddy_seterr(&job->err, EDDY_ENOMEM, "out of memory triggering a checkpoint");
  }
  c->history = hs;
  history_entry *h = &c->history[c->nhistory];
  memset(h, 0, sizeof *h);
  h->info.id = id;
  h->info.status = EDDY_CKPT_PENDING;
  h->info.triggered = now;
  p->history = c->nhistory++;
  p->id = id;
  p->triggered = now;
  p->wall_start = wall_ms();
  p->subtasks = json_array();
  p->savepoint = savepoint;
  h->info.kind = savepoint ? "savepoint" : "checkpoint";
  eddy_err err;
  int rc = savepoint ? eddy_savepoint_begin(c->sp->dir, c->job_id, id, &p->writer, &err)
                     : eddy_chk_begin(c->store, id, "checkpoint", &p->writer, &err);
  if (savepoint) {
    c->sp->triggered = 1;
    if (c->sp->stop && !c->sp->drain)
      job->stop_after = id; /* sources stop after this barrier */
  }
  pending **tail = &c->pending;
  while (*tail)
    tail = &(*tail)->next;
  *tail = p;
  c->npending++;
  trace(job, id, NULL, "%s triggered at %lld", savepoint ? "savepoint" : "checkpoint",
        (long long)now);
  if (rc != EDDY_OK)
    return abort_pending(job, p, 1, "%s", err.msg);
  /* Sources snapshot their position, then send the barrier: records they
   * emit after it belong to the next checkpoint. So does a subtask whose
   * inputs have all ended, which no barrier can reach any more; finished
   * subtasks give their last state. */
  for (int vi = 0; vi < job->nvertices; vi++) {
    vertex *v = &job->vertices[vi];
    for (int i = 0; i < v->parallelism; i++) {
      eddy_task *t = &v->tasks[i];
      if (t->finished) {
        if ((rc = snapshot_finished(job, t, p)) != EDDY_OK)
          return rc;
        continue;
      }
      if (!v->is_source && open_inputs(t) > 0)
        continue;
      if ((rc = snapshot_task(job, t, id, 0)) != EDDY_OK)
        return rc;
      if (find_pending(c, id) == NULL)
        return EDDY_OK; /* declined */
      if ((rc = emit_barrier(job, t, id, now, 0)) != EDDY_OK)
        return rc;
      t->ckpt_last = id;
      trace(job, id, t, "barrier emitted");
    }
  }
  return EDDY_OK;
}

/* Retention after a completion; shared files that checkpoints still being
 * written may reference are kept. */
static int retain(ckpt_coordinator *c, eddy_err *err)
{
  int n = 0;
  for (pending *q = c->pending; q; q = q->next)
    n += q->nrefs;
  const char **keep = calloc(n ? (size_t)n : 1, sizeof *keep);
  if (keep == NULL)
    return eddy_seterr(err, EDDY_ENOMEM, "out of memory deleting old checkpoints");
  n = 0;
  for (pending *q = c->pending; q; q = q->next)
    for (int i = 0; i < q->nrefs; i++)
      keep[n++] = q->refs[i];
  int rc = eddy_store_retain_keep(c->store, c->cfg.retained, keep, n, NULL, err);
  free(keep);
  return rc;
}

static int commit(eddy_job *job, pending *p, int64_t now)
{
  ckpt_coordinator *c = job->ckpt;
  json_t *extra = json_object();
  json_object_set_new(extra, "mode", json_string(c->cfg.mode == EDDY_CKPT_AT_LEAST_ONCE
                                                     ? "at_least_once"
                                                     : c->cfg.unaligned ? "unaligned"
                                                                        : "exactly_once"));
  /* `eddy run --resume` finds a job's checkpoints by its name */
  json_object_set_new(extra, "name", json_string(c->cfg.job_name));
  json_object_set(extra, "subtasks", p->subtasks);
  eddy_err err;
  history_entry *h = &c->history[p->history];
  h->info.bytes = eddy_chk_writer_bytes(p->writer);
  h->info.state_size = eddy_chk_writer_state_size(p->writer);
  char path[4096];
  snprintf(path, sizeof path, "%s", eddy_chk_writer_path(p->writer));
  int rc = eddy_chk_commit(p->writer, extra, &err);
  p->writer = NULL; /* committed or aborted by commit itself */
  if (rc != EDDY_OK) /* FINALIZE_CHECKPOINT_FAILURE: not counted */
    return abort_pending(job, p, 0, "%s", err.msg);
  h->info.status = EDDY_CKPT_COMPLETED;
  if (c->final_id != 0 && p->id >= c->final_id)
    c->final_completed = 1;
  h->info.duration_ms = wall_ms() - p->wall_start;
  h->path = strdup(path);
  h->info.path = h->path;
  set_aborted(c, p); /* done with it: no more writes, and it leaves the list */
  c->npending--;
  int subsumes = 1;
  if (p->savepoint) {
    /* a savepoint belongs to the user: no retention, and only one that
     * stops the job subsumes the checkpoints still pending */
    savepoint_request *sp = c->sp;
    c->sp = NULL;
    subsumes = sp->stop;
    if (sp->stop)
      job->stopped = 1;
    trace(job, p->id, NULL, "savepoint completed: %s", path);
    if (sp->done)
      sp->done(sp->ud, EDDY_OK, path);
    free(sp->dir);
    free(sp);
  } else {
    c->last_completion = now;
    if (p->id > c->last_success) {
      c->last_success = p->id;
      c->failures = 0;
    }
    trace(job, p->id, NULL, "completed (%llu bytes, %.1f ms)",
          (unsigned long long)h->info.bytes, h->info.duration_ms);
  }
  /* older pending checkpoints are subsumed: not counted as failures */
  for (pending *q = c->pending; subsumes && q; q = q->next)
    if (!q->aborted && q->id < p->id && (rc = abort_pending(job, q, 0, "subsumed by %lld",
                                                            (long long)p->id)) != EDDY_OK)
      return rc;
  /* the subtasks' native parts build on this one from now on */
  while (!p->savepoint && p->natives) {
    native_result *r = p->natives;
    p->natives = r->next;
    if (r->task->ckpt_base == NULL)
      r->task->ckpt_base = calloc(1, sizeof *r->task->ckpt_base);
    if (r->task->ckpt_base != NULL) {
      native_set_free(r->task->ckpt_base);
      *r->task->ckpt_base = r->files; /* moved */
    } else {
      native_set_free(&r->files); /* the next checkpoint uploads them again */
    }
    free(r);
  }
  if (!p->savepoint && retain(c, &err) != EDDY_OK)
    fprintf(stderr, "eddy: %s\n", err.msg); /* old checkpoints stay: nothing is lost */
  for (int vi = 0; vi < job->nvertices; vi++) {
    vertex *v = &job->vertices[vi];
    for (int i = 0; i < v->parallelism; i++) {
      eddy_task *t = &v->tasks[i];
      if (t->opened && v->ops->notify &&
          (rc = CALL(job, t, v->ops->notify(t->ud, t, p->id, 1))) != EDDY_OK)
        return job_fail(job, t, rc, "checkpoint notification");
    }
  }
  return EDDY_OK;
}

/* A native part is written: its files go into its subtask's _metadata
 * entry, and are kept to become the subtask's base if the checkpoint
 * completes. */
static int native_written(eddy_job *job, pending *p, part *pt)
{
  vertex *v = job_vertex_of(pt->task);
  json_t *files = NULL;
  for (size_t i = 0; i < json_array_size(p->subtasks); i++) {
    json_t *e = json_array_get(p->subtasks, i);
    const char *uid = json_string_value(json_object_get(e, "uid"));
    if (uid != NULL && strcmp(uid, v->uid) == 0 &&
        json_integer_value(json_object_get(e, "subtask")) == pt->task->index)
      files = json_object_get(json_object_get(e, "native"), "files");
  }
  native_result *r = calloc(1, sizeof *r);
  if (files == NULL || r == NULL) {
    free(r);
    return abort_pending(job, p, 1, "out of memory recording the files of %s", pt->name);
  }
  for (int i = 0; i < pt->files.n; i++) {
    const native_file *f = &pt->files.v[i];
    json_t *o;
    if (f->shared) {
      char sum[17];
      snprintf(sum, sizeof sum, "%016" PRIx64, f->checksum);
      o = json_pack("{s:s, s:s, s:I, s:s}", "name", f->name, "shared", f->stored, "size",
                    (json_int_t)f->size, "checksum", sum);
    } else {
      o = json_pack("{s:s, s:s}", "name", f->name, "file", f->stored);
    }
    json_array_append_new(files, o);
  }
  /* the SST files become the base; the others are this checkpoint's own */
  r->task = pt->task;
  for (int i = 0; i < pt->files.n; i++) {
    const native_file *f = &pt->files.v[i];
    if (f->shared && native_set_add(&r->files, f->name, f->stored, 1, f->size, f->checksum) !=
                         EDDY_OK) {
      native_set_free(&r->files);
      free(r);
      return abort_pending(job, p, 1, "out of memory recording the files of %s", pt->name);
    }
  }
  r->next = p->natives;
  p->natives = r;
  return EDDY_OK;
}

static int collect_done(eddy_job *job)
{
  ckpt_coordinator *c = job->ckpt;
  pthread_mutex_lock(&c->lock);
  work *w = c->done;
  c->done = c->done_tail = NULL;
  pthread_mutex_unlock(&c->lock);
  int rc = EDDY_OK;
  while (w) {
    work *next = w->next;
    pending *p = w->p;
    p->writes--;
    if (w->rc != EDDY_OK && w->rc != EDDY_EINTR && !p->aborted && rc == EDDY_OK) {
      /* asynchronous failure (disk full, ...): counted */
      rc = abort_pending(job, p, 1, "%s", w->msg);
    }
    if (w->ack != NULL && w->rc == EDDY_OK && !p->aborted)
      trace(job, p->id, w->ack, "acknowledged (state written)");
    if (w->rc == EDDY_OK && !p->aborted && w->part->native_dir != NULL && rc == EDDY_OK)
      rc = native_written(job, p, w->part);
    free_part(w->part);
    free(w);
    w = next;
  }
  return rc;
}

/* Removes given-up and committed checkpoints whose writes are over. */
static void sweep(ckpt_coordinator *c)
{
  pending **pp = &c->pending;
  while (*pp) {
    pending *p = *pp;
    if (p->aborted && p->writes == 0) {
      *pp = p->next;
      release_pending(p);
    } else {
      pp = &p->next;
    }
  }
}

int ckpt_tick(eddy_job *job, int64_t now, int *progress)
{
  ckpt_coordinator *c = job->ckpt;
  int rc = collect_done(job);
  if (rc != EDDY_OK)
    return rc;
  /* complete what every subtask has acknowledged and the writer wrote */
  for (pending *p = c->pending; p; p = p->next) {
    if (p->aborted)
      continue;
    if (p->acked == c->ntasks && p->writes == 0) {
      *progress = 1;
      if ((rc = commit(job, p, now)) != EDDY_OK)
        return rc;
    } else if (now - p->triggered > c->cfg.timeout &&
               (rc = abort_pending(job, p, 1, "expired after %lld ms",
                                   (long long)(now - p->triggered))) != EDDY_OK) {
      return rc;
    }
  }
  sweep(c);
  savepoint_request *sp = c->sp;
  if (sp != NULL && !sp->triggered) {
    if (sp->stop && sp->drain) {
      job->draining = 1; /* the sources end; ckpt_final takes the savepoint */
    } else if (all_opened(job)) {
      /* a savepoint is taken at once: interval, pause and concurrency do
       * not hold it back */
      *progress = 1;
      return trigger(job, now, 1);
    }
  }
  if (c->cfg.interval <= 0)
    return EDDY_OK;
  if (c->next_trigger == EDDY_NEVER) /* eddy's choice 7: one interval after the start */
    c->next_trigger = now + c->cfg.interval;
  if (now < c->next_trigger)
    return EDDY_OK;
  if (c->npending >= c->cfg.max_concurrent)
    return EDDY_OK; /* queued: tried again when one completes */
  if (c->last_completion != INT64_MIN && now < c->last_completion + c->cfg.min_pause) {
    c->next_trigger = c->last_completion + c->cfg.min_pause;
    return EDDY_OK;
  }
  int64_t base = c->cfg.interval > c->cfg.min_pause ? c->cfg.interval : c->cfg.min_pause;
  c->next_trigger = now + base;
  if (!all_opened(job))
    return EDDY_OK; /* not every subtask is running: not counted, tried again later */
  *progress = 1;
  return trigger(job, now, 0);
}

int64_t ckpt_next_wakeup(const eddy_job *job, int *writing)
{
  const ckpt_coordinator *c = job->ckpt;
  int64_t next = c->cfg.interval > 0 ? c->next_trigger : EDDY_NEVER;
  *writing = 0;
  if (c->sp != NULL && !c->sp->triggered)
    next = INT64_MIN; /* a savepoint asked for: at once */
  for (const pending *p = c->pending; p; p = p->next) {
    if (p->aborted)
      continue;
    if (p->writes > 0)
      *writing = 1;
    if (p->triggered + c->cfg.timeout + 1 < next)
      next = p->triggered + c->cfg.timeout + 1;
  }
  return next;
}

void ckpt_wait_writer(eddy_job *job, int64_t ms)
{
  ckpt_coordinator *c = job->ckpt;
  struct timespec until;
  clock_gettime(CLOCK_REALTIME, &until);
  until.tv_sec += (time_t)(ms / 1000);
  until.tv_nsec += (long)(ms % 1000) * 1000000L;
  if (until.tv_nsec >= 1000000000L) {
    until.tv_sec++;
    until.tv_nsec -= 1000000000L;
  }
  pthread_mutex_lock(&c->lock);
  if (c->done == NULL)
    pthread_cond_timedwait(&c->written, &c->lock, &until);
  pthread_mutex_unlock(&c->lock);
}

int ckpt_final(eddy_job *job, int64_t now, int *done)
{
  ckpt_coordinator *c = job->ckpt;
  savepoint_request *sp = c->sp;
  /* a savepoint asked for (stop --drain, or any not yet taken) is the last
   * snapshot; one in flight decides by its own end */
  int drained = sp != NULL && !sp->triggered;
  *done = c->final_completed || (c->cfg.interval <= 0 && sp == NULL);
  if (*done || (c->final_id != 0 && find_pending(c, c->final_id) != NULL) ||
      (sp != NULL && sp->triggered))
    return EDDY_OK;
  if (!drained && c->npending >= c->cfg.max_concurrent)
    return EDDY_OK; /* the ones in flight end first */
  c->final_id = c->next_id; /* a failed final checkpoint is taken again */
  trace(job, c->final_id, NULL, "every subtask finished: the final %s",
        drained ? "savepoint" : "checkpoint");
  return trigger(job, now, drained);
}

/* ---- barriers at a subtask ---- */


static int input_number(const eddy_task *t, const channel *ch)
{
  for (int i = 0; i < t->ninputs; i++)
    if (t->inputs[i] == ch)
      return i + 1;
  return 0;
}

static const char *producer_name(const eddy_job *job, const channel *ch, char *buf, size_t n)
{
  const vertex *v = &job->vertices[ch->producer_vertex];
  snprintf(buf, n, "%s %d/%d", v->name, ch->producer_index + 1, v->parallelism);
  return buf;
}

static void unblock_all(eddy_task *t)
{
  for (int i = 0; i < t->ninputs; i++)
    t->inputs[i]->blocked = 0;
}

/* The barriers of t's current checkpoint are all in (and, unaligned, the
 * records in flight recorded): its part of the checkpoint is done. */
static int finish_unaligned(eddy_job *job, eddy_task *t)
{
  ckpt_coordinator *c = job->ckpt;
  int64_t id = t->ckpt_id;
  pending *p = find_pending(c, id);
  int rc = EDDY_OK;
  if (p != NULL) {
    eddy_snapshot s;
    memset(&s, 0, sizeof s);
    s.task = t;
    if (eddy_snapshot_add_blob(&s, "channels", t->channel_state.data, t->channel_state.len) !=
            EDDY_OK ||
        queue_part(c, p, s.parts, t) != EDDY_OK) {
      free_part(s.parts);
      return eddy_seterr(&job->err, EDDY_ENOMEM, "out of memory saving channel state");
    }
    /* the channel state is one more part of this subtask */
    json_t *last = json_array_get(p->subtasks, json_array_size(p->subtasks) - 1);
    for (size_t i = json_array_size(p->subtasks); i-- > 0;) {
      json_t *e = json_array_get(p->subtasks, i);
      if (json_integer_value(json_object_get(e, "subtask")) == t->index &&
          strcmp(json_string_value(json_object_get(e, "uid")), job_vertex_of(t)->uid) == 0) {
        last = e;
        break;
      }
    }
    if (last != NULL)
      json_array_append_new(json_object_get(last, "parts"), json_string(s.parts->name));
    p->acked++;
    trace(job, id, t, "channel state recorded (%zu bytes)", t->channel_state.len);
  }
  eddy_buf_reset(&t->channel_state);
  t->ckpt_last = id;
  t->ckpt_id = 0;
  t->ckpt_unaligned = 0;
  return rc;
}

static int maybe_finish_unaligned(eddy_job *job, eddy_task *t)
{
  if (t->ckpt_unaligned && t->ckpt_count >= open_inputs(t) && t->recording == 0)
    return finish_unaligned(job, t);
  return EDDY_OK;
}

/* Unaligned: snapshot at once, send the barrier ahead of everything
 * queued downstream, and record what is still in flight towards t: on
 * channels whose barrier has not come, every record until it does; on the
 * channel whose barrier jumped the queue, the frames it jumped. */
static int go_unaligned(eddy_job *job, eddy_task *t, channel *first, size_t overtaken)
{
  int rc;
  t->ckpt_unaligned = 1;
  unblock_all(t);
  if ((rc = snapshot_task(job, t, t->ckpt_id, 1)) != EDDY_OK)
    return rc;
  if (t->ckpt_id == 0)
    return EDDY_OK; /* declined */
  if ((rc = emit_barrier(job, t, t->ckpt_id, t->ckpt_trigger, 1)) != EDDY_OK)
    return rc;
  trace(job, t->ckpt_id, t, "unaligned: barrier sent ahead of the queued output");
  eddy_buf_reset(&t->channel_state);
  t->recording = 0;
  for (int i = 0; i < t->ninputs; i++) {
    channel *ch = t->inputs[i];
    if (ch->ended)
      continue;
    if (ch->barrier < t->ckpt_id) {
      ch->recording = t->ckpt_id;
      ch->record_left = SIZE_MAX;
      t->recording++;
    } else if (ch == first && overtaken > 0) {
      ch->recording = t->ckpt_id;
      ch->record_left = overtaken;
      t->recording++;
    }
  }
  return maybe_finish_unaligned(job, t);
}

/* A newer barrier, or the end of an input, ends t's current checkpoint. */
static int drop_alignment(eddy_job *job, eddy_task *t, const char *why)
{
  int64_t id = t->ckpt_id;
  if (id == 0)
    return EDDY_OK;
  trace(job, id, t, "%s", why);
  unblock_all(t);
  for (int i = 0; i < t->ninputs; i++)
    t->inputs[i]->recording = 0;
  t->recording = 0;
  t->ckpt_id = 0;
  t->ckpt_unaligned = 0;
  eddy_buf_reset(&t->channel_state);
  if (id > t->ckpt_last)
    t->ckpt_last = id;
  pending *p = find_pending(job->ckpt, id);
  /* declined because a newer one came, or an input ended: not counted */
  return p ? abort_pending(job, p, 0, "%s at %s (%d/%d)", why, job_vertex_of(t)->name,
                           t->index + 1, job_vertex_of(t)->parallelism)
           : EDDY_OK;
}

/* At least once (CheckpointBarrierTracker): nothing blocks; the snapshot
 * is taken when a checkpoint's barrier has come on every open channel. */
static int complete_tracked(eddy_job *job, eddy_task *t);

static int track(eddy_job *job, eddy_task *t, int64_t id)
{
  if (id <= t->ckpt_last)
    return EDDY_OK;
  int slot = -1;
  for (int i = 0; i < t->ntracked; i++)
    if (t->tracked[i][0] == id)
      slot = i;
  if (slot < 0) {
    if (t->ntracked == 50) { /* as Flink: at most 50 pending ids */
      memmove(t->tracked, t->tracked + 1, sizeof t->tracked[0] * 49);
      t->ntracked--;
    }
    slot = t->ntracked++;
    t->tracked[slot][0] = id;
    t->tracked[slot][1] = 0;
  }
  t->tracked[slot][1]++;
  return complete_tracked(job, t);
}

/* Every open input of t delivered the barrier of t's checkpoint: the
 * snapshot is taken and the barrier goes on. */
static int aligned(eddy_job *job, eddy_task *t)
{
  ckpt_coordinator *c = job->ckpt;
  int64_t id = t->ckpt_id;
  double aligned_ms = wall_ms() - (double)t->ckpt_started;
  pending *p = find_pending(c, id);
  if (p && aligned_ms > c->history[p->history].info.alignment_ms)
    c->history[p->history].info.alignment_ms = aligned_ms;
  trace(job, id, t, "aligned");
  unblock_all(t);
  t->ckpt_id = 0;
  t->ckpt_last = id;
  int rc;
  if ((rc = snapshot_task(job, t, id, 0)) != EDDY_OK)
    return rc;
  if ((rc = emit_barrier(job, t, id, t->ckpt_trigger, 0)) != EDDY_OK)
    return rc;
  trace(job, id, t, "barrier forwarded");
  return EDDY_OK;
}

/* Whether barrier id came on every input that is still open (one that
 * ended without it ended before it was sent). */
static int all_barriers_in(const eddy_task *t, int64_t id)
{
  for (int i = 0; i < t->ninputs; i++)
    if (!t->inputs[i]->ended && t->inputs[i]->barrier < id)
      return 0;
  return 1;
}

/* At least once: the tracked checkpoints whose barriers came on every
 * input still open, oldest first; older ids still tracked are subsumed. */
static int complete_tracked(eddy_job *job, eddy_task *t)
{
  int rc = EDDY_OK;
  while (rc == EDDY_OK) {
    int found = -1;
    for (int i = 0; i < t->ntracked; i++)
      if (all_barriers_in(t, t->tracked[i][0]) &&
          (found < 0 || t->tracked[i][0] < t->tracked[found][0]))
        found = i;
    if (found < 0)
      break;
    int64_t id = t->tracked[found][0];
    int k = 0;
    for (int i = 0; i < t->ntracked; i++)
      if (t->tracked[i][0] > id)
        memcpy(t->tracked[k++], t->tracked[i], sizeof t->tracked[0]);
    t->ntracked = k;
    t->ckpt_last = id;
    pending *p = find_pending(job->ckpt, id);
    rc = snapshot_task(job, t, id, 0);
    if (rc == EDDY_OK)
      rc = emit_barrier(job, t, id, p ? p->triggered : 0, 0);
    trace(job, id, t, "barriers in from every open input: snapshot taken, barrier forwarded");
  }
  return rc;
}

int ckpt_barrier(eddy_job *job, eddy_task *t, channel *ch, const eddy_frame *f)
{
  ckpt_coordinator *c = job->ckpt;
  int64_t id = f->timestamp;
  int jumped = f->key_group == 1;
  int64_t trigger = jumped ? ch->priority_trigger : 0;
  if (!jumped && f->value.len == sizeof trigger)
    memcpy(&trigger, f->value.data, sizeof trigger);
  size_t overtaken = jumped ? ch->overtaken : 0;
  if (c == NULL)
    return EDDY_OK;
  char from[256];
  int input = input_number(t, ch);
  if (id > ch->barrier)
    ch->barrier = id;
  if (find_pending(c, id) == NULL) {
    /* given up already (declined, expired, subsumed): its barriers still
     * in flight change nothing, but on an unaligned channel one still ends
     * what was recorded for it */
    if (ch->recording != 0 && ch->recording == id) {
      ch->recording = 0;
      t->recording--;
      return maybe_finish_unaligned(job, t);
    }
    return EDDY_OK;
  }
  if (c->cfg.mode == EDDY_CKPT_AT_LEAST_ONCE) {
    trace(job, id, t, "barrier received on input %d (from %s)", input,
          producer_name(job, ch, from, sizeof from));
    return track(job, t, id);
  }
  if (id < t->ckpt_id || (t->ckpt_id == 0 && id <= t->ckpt_last)) {
    /* a stale barrier: its checkpoint was given up here already, but on an
     * unaligned channel it still ends what was in flight */
    if (ch->recording != 0 && ch->recording == id) {
      ch->recording = 0;
      t->recording--;
    }
    return EDDY_OK;
  }
  int rc;
  if (t->ckpt_id != 0 && id > t->ckpt_id) {
    char why[96];
    snprintf(why, sizeof why, "alignment aborted by the barrier of checkpoint %lld",
             (long long)id);
    if ((rc = drop_alignment(job, t, why)) != EDDY_OK)
      return rc;
  }
  if (t->ckpt_id == 0) {
    t->ckpt_id = id;
    t->ckpt_trigger = trigger;
    t->ckpt_count = 0;
    t->ckpt_unaligned = 0;
    t->ckpt_started = (int64_t)wall_ms();
  }
  t->ckpt_count++;
  trace(job, id, t, "barrier received on input %d of %d (from %s)%s", input, t->ninputs,
        producer_name(job, ch, from, sizeof from), jumped ? ", ahead of the queue" : "");
  if (t->ckpt_unaligned) {
    /* this channel's in-flight records end here, or after what it jumped */
    if (ch->recording == id) {
      ch->recording = 0;
      t->recording--;
    }
    if (jumped && overtaken > 0) {
      ch->recording = id;
      ch->record_left = overtaken;
      t->recording++;
    }
    return maybe_finish_unaligned(job, t);
  }
  int64_t now = eddy_task_now(t);
  if (c->cfg.unaligned && now - t->ckpt_trigger >= c->cfg.aligned_timeout)
    return go_unaligned(job, t, ch, overtaken);
  if (t->ckpt_count < open_inputs(t)) {
    ch->blocked = 1;
    trace(job, id, t, "input %d blocked until the other barriers arrive", input);
    return EDDY_OK;
  }
  return aligned(job, t);
}

int ckpt_alignment_check(eddy_job *job, eddy_task *t)
{
  ckpt_coordinator *c = job->ckpt;
  if (c == NULL || t->ckpt_id == 0 || t->ckpt_unaligned || !c->cfg.unaligned ||
      c->cfg.mode == EDDY_CKPT_AT_LEAST_ONCE)
    return EDDY_OK;
  int64_t waited = eddy_task_now(t) - t->ckpt_trigger;
  if (waited < c->cfg.aligned_timeout)
    return EDDY_OK;
  trace(job, t->ckpt_id, t, "aligned_timeout: still aligning %lld ms after the trigger, going unaligned",
        (long long)waited);
  return go_unaligned(job, t, NULL, 0);
}

/* An input ended. Its producer finished before it could send the barriers
 * still awaited on it, so everything it sent is before them: the input
 * counts as aligned (Flink's checkpoints after tasks finish). Once no input
 * is open, no barrier can come any more: t snapshots at once for every
 * pending checkpoint it has not handled. */
int ckpt_input_ended(eddy_job *job, eddy_task *t, channel *ch)
{
  ckpt_coordinator *c = job->ckpt;
  if (c == NULL)
    return EDDY_OK;
  int rc = EDDY_OK;
  if (ch->recording != 0) {
    ch->recording = 0;
    t->recording--;
  }
  if (c->cfg.mode == EDDY_CKPT_AT_LEAST_ONCE)
    rc = complete_tracked(job, t);
  else if (t->ckpt_id != 0 && t->ckpt_unaligned)
    rc = maybe_finish_unaligned(job, t);
  else if (t->ckpt_id != 0 && all_barriers_in(t, t->ckpt_id)) {
    trace(job, t->ckpt_id, t, "input %d ended: no barrier to wait for on it",
          input_number(t, ch));
    rc = aligned(job, t);
  }
  if (rc != EDDY_OK || open_inputs(t) > 0)
    return rc;
  for (pending *p = c->pending; p; p = p->next) {
    if (p->aborted || p->id <= t->ckpt_last || p->id == t->ckpt_id)
      continue;
    t->ckpt_last = p->id;
    int64_t id = p->id, triggered = p->triggered;
    if ((rc = snapshot_task(job, t, id, 0)) != EDDY_OK)
      return rc;
    if (find_pending(c, id) != NULL && (rc = emit_barrier(job, t, id, triggered, 0)) != EDDY_OK)
      return rc;
    trace(job, id, t, "every input ended: snapshot taken, barrier sent");
  }
  return EDDY_OK;
}

/* A frame read from a channel while its in-flight records are recorded. */
int ckpt_record(eddy_job *job, eddy_task *t, channel *ch, const eddy_frame *f)
{
  if (f->kind == EDDY_FRAME_BARRIER)
    return EDDY_OK; /* barriers end recordings; they are not recorded */
  if (f->kind == EDDY_FRAME_RECORD) {
    /* channel index, timestamp, key group, key, value: enough to put the
     * record back on the same input at restore */
    int32_t input = (int32_t)(input_number(t, ch) - 1);
    uint32_t klen = (uint32_t)f->key.len, vlen = (uint32_t)f->value.len;
    int32_t kg = f->key_group;
    eddy_buf *b = &t->channel_state;
    if (eddy_buf_reserve(b, 20 + klen + vlen) != EDDY_OK)
      return eddy_seterr(&job->err, EDDY_ENOMEM, "out of memory recording channel state");
    eddy_buf_append(b, &input, sizeof input);
    eddy_buf_append(b, &f->timestamp, sizeof f->timestamp);
    eddy_buf_append(b, &kg, sizeof kg);
    eddy_buf_append(b, &klen, sizeof klen);
    eddy_buf_append(b, &vlen, sizeof vlen);
    eddy_buf_append(b, f->key.data, klen);
    eddy_buf_append(b, f->value.data, vlen);
  }
  if (ch->record_left != SIZE_MAX && --ch->record_left == 0) {
    ch->recording = 0;
    t->recording--;
    return maybe_finish_unaligned(job, t);
  }
  return EDDY_OK;
}

/* ---- restoring ---- */

int eddy_task_restore_part(eddy_task *t, const char *name, eddy_chk_reader **out, eddy_err *err)
{
  return eddy_task_restore_part_of(t, t->index, name, out, err);
}

int eddy_task_restore_part_of(eddy_task *t, int old_index, const char *name,
                              eddy_chk_reader **out, eddy_err *err)
{
  eddy_job *job = t->job;
  if (job->restore == NULL)
    return EDDY_ENOTFOUND;
  vertex *v = job_vertex_of(t);
  char file[512];
  snprintf(file, sizeof file, "%s-%d.%s", v->uid, old_index, name);
  if (eddy_chk_entry_find(job->restore, file) == NULL)
    return EDDY_ENOTFOUND;
  return eddy_chk_reader_open(job->restore, file, out, err);
}

/* The _metadata entry of old subtask old_index of t's vertex, or NULL. */
static json_t *restored_entry(const eddy_task *t, int old_index)
{
  const eddy_job *job = t->job;
  if (job->restore == NULL)
    return NULL;
  const vertex *v = job_vertex_of(t);
  json_t *subtasks = json_object_get(eddy_chk_metadata(job->restore), "subtasks");
  for (size_t i = 0; i < json_array_size(subtasks); i++) {
    json_t *e = json_array_get(subtasks, i);
    const char *uid = json_string_value(json_object_get(e, "uid"));
    if (uid != NULL && strcmp(uid, v->uid) == 0 &&
        json_integer_value(json_object_get(e, "subtask")) == old_index)
      return e;
  }
  return NULL;
}

int eddy_task_restored_parallelism(const eddy_task *t)
{
  json_t *e = restored_entry(t, 0);
  return e ? (int)json_integer_value(json_object_get(e, "parallelism")) : 0;
}

int eddy_task_restored_key_groups(const eddy_task *t, int old_index, int *first, int *last)
{
  json_t *range = json_object_get(restored_entry(t, old_index), "key_groups");
  if (json_array_size(range) != 2)
    return EDDY_ENOTFOUND;
  *first = (int)json_integer_value(json_array_get(range, 0));
  *last = (int)json_integer_value(json_array_get(range, 1));
  return EDDY_OK;
}

int eddy_task_restored_native(const eddy_task *t, int old_index, const char **format,
                              int *first, int *last)
{
  json_t *e = restored_entry(t, old_index);
  json_t *native = json_object_get(e, "native");
  json_t *range = json_object_get(native, "key_groups");
  if (native == NULL || json_array_size(range) != 2)
    return EDDY_ENOTFOUND;
  if (format != NULL)
    *format = json_string_value(json_object_get(native, "format"));
  if (first != NULL)
    *first = (int)json_integer_value(json_array_get(range, 0));
  if (last != NULL)
    *last = (int)json_integer_value(json_array_get(range, 1));
  return EDDY_OK;
}

int eddy_task_restore_native(eddy_task *t, int old_index, const char *into, eddy_err *err)
{
  json_t *native = json_object_get(restored_entry(t, old_index), "native");
  if (native == NULL)
    return eddy_seterr(err, EDDY_ENOTFOUND, "subtask %d holds no native state", old_index);
  return eddy_chk_extract_files(t->job->restore, json_object_get(native, "files"), into, err);
}

/* Whether two paths name the same folder. */
static int same_folder(const char *a, const char *b)
{
  char *ra = realpath(a, NULL), *rb = realpath(b, NULL);
  int same = ra != NULL && rb != NULL && strcmp(ra, rb) == 0;
  free(ra);
  free(rb);
  return same;
}

void eddy_task_adopt_native(eddy_task *t, int old_index)
{
  eddy_job *job = t->job;
  ckpt_coordinator *c = job->ckpt;
  json_t *native = json_object_get(restored_entry(t, old_index), "native");
  if (native == NULL || c == NULL || c->store == NULL)
    return;
  /* only shared files of this job's own folder: those of another job's
   * checkpoint are that job's to delete (Flink's NO_CLAIM restore mode) */
  char parent[4096];
  snprintf(parent, sizeof parent, "%s/..", eddy_chk_path(job->restore));
  if (!same_folder(parent, eddy_store_path(c->store)))
    return;
  native_set *base = calloc(1, sizeof *base);
  if (base == NULL)
    return; /* the next checkpoint uploads everything: slower, not wrong */
  json_t *files = json_object_get(native, "files");
  for (size_t i = 0; i < json_array_size(files); i++) {
    json_t *f = json_array_get(files, i);
    const char *name = json_string_value(json_object_get(f, "name"));
    const char *shared = json_string_value(json_object_get(f, "shared"));
    const eddy_chk_shared *sh = shared ? eddy_chk_shared_find(job->restore, shared) : NULL;
    if (name != NULL && sh != NULL &&
        native_set_add(base, name, sh->name, 1, sh->size, sh->checksum) != EDDY_OK) {
      native_set_free(base);
      free(base);
      return;
    }
  }
  native_set_free(t->ckpt_base);
  free(t->ckpt_base);
  t->ckpt_base = base;
}

/* A restored subtask first replays the records that were in flight
 * towards it (unaligned checkpoints), on the inputs they were on. */
int ckpt_task_opened(eddy_job *job, eddy_task *t)
{
  if (job->ckpt != NULL)
    job->ckpt->ntasks++;
  t->restored_finished = restored_finished(job, t);
  eddy_chk_reader *r;
  eddy_err err;
  int rc = eddy_task_restore_part(t, "channels", &r, &err);
  if (rc == EDDY_ENOTFOUND)
    return EDDY_OK;
  if (rc != EDDY_OK)
    return eddy_err_copy(&job->err, &err);
  eddy_buf all = EDDY_BUF_INIT;
  char chunk[65536];
  size_t got;
  while ((rc = eddy_chk_reader_read(r, chunk, sizeof chunk, &got, &err)) == EDDY_OK && got > 0)
    if (eddy_buf_append(&all, chunk, got) != EDDY_OK) {
      rc = eddy_seterr(&err, EDDY_ENOMEM, "out of memory restoring channel state");
      break;
    }
  eddy_chk_reader_close(r);
  size_t at = 0;
  while (rc == EDDY_OK && at < all.len) {
    int32_t input, kg;
    int64_t ts;
    uint32_t klen, vlen;
    if (all.len - at < 24) {
      rc = eddy_seterr(&err, EDDY_ECORRUPT, "channel state of %s is truncated",
                       job_vertex_of(t)->name);
      break;
    }
    memcpy(&input, all.data + at, 4);
    memcpy(&ts, all.data + at + 4, 8);
    memcpy(&kg, all.data + at + 12, 4);
    memcpy(&klen, all.data + at + 16, 4);
    memcpy(&vlen, all.data + at + 20, 4);
    at += 24;
    if (input < 0 || input >= t->ninputs || all.len - at < (size_t)klen + vlen) {
      rc = eddy_seterr(&err, EDDY_ECORRUPT, "channel state of %s is damaged",
                       job_vertex_of(t)->name);
      break;
    }
    rc = job_channel_push(&err, t->inputs[input], EDDY_FRAME_RECORD, ts, kg, all.data + at,
                          klen, all.data + at + klen, vlen);
    at += (size_t)klen + vlen;
  }
  eddy_buf_free(&all);
  return rc == EDDY_OK ? rc : eddy_err_copy(&job->err, &err);
}

/* ---- what happened ---- */

int eddy_job_checkpoint_count(const eddy_job *job)
{
  return job->ckpt ? job->ckpt->nhistory : 0;
}

int eddy_job_checkpoint_info(const eddy_job *job, int i, eddy_ckpt_info *info)
{
  if (job->ckpt == NULL || i < 0 || i >= job->ckpt->nhistory)
    return EDDY_EINVAL;
  *info = job->ckpt->history[i].info;
  return EDDY_OK;
}

int64_t eddy_job_next_checkpoint_id(const eddy_job *job)
{
  return job->ckpt ? job->ckpt->next_id : 1;
}

int eddy_job_checkpoint_failures(const eddy_job *job)
{
  return job->ckpt != NULL ? job->ckpt->failures : 0;
}
