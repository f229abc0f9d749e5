/*
 * Checkpoint storage: see storage.h.
 *
 * Why it is shaped this way:
 * - Durability rests on one ordering. Every file is fsynced when closed;
 *   _metadata is written and fsynced last; the .inprogress folder is
 *   fsynced (making all its entries durable), then renamed to its final
 *   name, then the parent folder is fsynced (making the rename durable). A
 *   crash before the rename leaves only an .inprogress folder, removed at
 *   the next start; after it, a complete checkpoint. The caller may act on
 *   a completed checkpoint (transactional sinks commit) only once commit
 *   has returned, i.e. after the parent fsync.
 * - A failed fsync is never retried: after one, Linux may have dropped the
 *   dirty pages and a second fsync can succeed without the data being on
 *   disk. The checkpoint fails instead.
 * - Throughput: bytes are gathered into large buffers, handed to zstd a
 *   megabyte at a time (it copies small inputs into its own window anyway,
 *   and each call has a fixed cost) and written with large write(2) calls.
 *   The checksum (xxh3, many GB/s) covers the compressed bytes, so it costs
 *   little on top of zstd.
 * - Deleting a completed checkpoint renames it to chk-<n>.discard first, so
 *   a crash in the middle cannot leave a chk-<n> with files missing, which
 *   recovery would take for damage.
 * - Shared files need no reference counts on disk: the _metadata of the
 *   completed checkpoints is the record of who references what. A shared
 *   file goes once no completed checkpoint lists it (and no checkpoint
 *   being written will: the caller says which those are), and because a
 *   checkpoint that uploaded files lists them before its folder gets its
 *   final name, a crash can only leave files that nothing lists, which the
 *   next eddy_store_open removes. Uploads are written under a hidden
 *   temporary name and renamed, so a shared file is never half there.
 */
#include "runtime/storage.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>
#include <zstd.h>

#define METADATA "_metadata"
#define INPROGRESS ".inprogress"
#define DISCARD ".discard"
#define SHARED "shared"
#define NAME_MAX_LEN 200
/* bytes per write(2) and read(2) */
#define IO_BUF ((size_t)1 << 20)
/* uncompressed bytes gathered before they are handed to zstd */
#define ZIN_BUF ((size_t)1 << 20)
/* _metadata larger than this is not something we wrote */
#define METADATA_MAX ((size_t)1 << 30)

static const char *const reserved_keys[] = {"format", "kind", "job",   "id",
                                            "time",   "files", "shared"};

/* ------------------------------------------------------------------ */
/* paths and system calls                                              */

static int oom(eddy_err *err)
{
  return eddy_seterr(err, EDDY_ENOMEM, "out of memory");
}

/* eddy_err_copy for a caller's err, which may be NULL. */
static int pass_err(eddy_err *err, const eddy_err *e)
{
  return err ? eddy_err_copy(err, e) : e->code;
}

static int sys_fail(eddy_err *err, const char *path, int e)
{
  return eddy_seterr(err, EDDY_EIO, "%s: %s", path, strerror(e));
}

static int64_t now_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* "a/b", without doubling a '/' at the end of a. */
static char *join(const char *a, const char *b)
{
  size_t la = strlen(a), lb = strlen(b);
  int slash = la > 0 && a[la - 1] == '/';
  char *p = malloc(la + lb + 2);
  if (p == NULL)
    return NULL;
  memcpy(p, a, la);
  if (!slash)
    p[la++] = '/';
  memcpy(p + la, b, lb + 1);
  return p;
}

static char *concat(const char *a, const char *b)
{
  size_t la = strlen(a), lb = strlen(b);
  char *p = malloc(la + lb + 1);
  if (p == NULL)
    return NULL;
  memcpy(p, a, la);
  memcpy(p + la, b, lb + 1);
  return p;
}

static const char *base_name(const char *path)
{
  const char *s = strrchr(path, '/');
  return s ? s + 1 : path;
}

static int hexval(int c)
{
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

/* A plain path, or a file:// URI turned into one; other schemes refused.
 * Trailing slashes go (except for "/"). *out is malloc'd. */
static int local_path(const char *dir, char **out, eddy_err *err)
{
  *out = NULL;
  if (dir == NULL || dir[0] == '\0')
    return eddy_seterr(err, EDDY_EINVAL, "an empty checkpoint folder");
  const char *p = dir;
  int uri = 0;
  if (strncmp(dir, "file:", 5) == 0) {
    uri = 1;
    p = dir + 5;
    if (p[0] == '/' && p[1] == '/') {
      p += 2;
      const char *slash = strchr(p, '/');
      size_t host = slash ? (size_t)(slash - p) : strlen(p);
      if (!(host == 0 || (host == 9 && strncmp(p, "localhost", 9) == 0)))
        return eddy_seterr(err, EDDY_EUNSUPPORTED,
                           "%s: a file URI on another host", dir);
      p += host;
    }
    if (p[0] != '/')
      return eddy_seterr(err, EDDY_EINVAL,
                         "%s: a file URI needs an absolute path", dir);
  } else {
    /* scheme "://": letters, digits, '+', '-', '.' after a letter */
    const char *s = dir;
    if ((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z')) {
      while ((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
             (*s >= '0' && *s <= '9') || *s == '+' || *s == '-' || *s == '.')
        s++;
      if (strncmp(s, "://", 3) == 0)
        return eddy_seterr(err, EDDY_EUNSUPPORTED,
                           "%s: only local paths and file:// URIs are "
                           "supported",
                           dir);
    }
  }
  size_t n = strlen(p);
  char *r = malloc(n + 1);
  if (r == NULL)
    return oom(err);
  size_t j = 0;
  for (size_t i = 0; i < n; i++) {
    if (uri && p[i] == '%') {
      /* p is NUL-terminated: a cut escape meets the NUL, not hex */
      int hi = hexval((unsigned char)p[i + 1]);
      int lo = hi >= 0 ? hexval((unsigned char)p[i + 2]) : -1;
      if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
        free(r);
        return eddy_seterr(err, EDDY_EINVAL, "%s: a bad %%-escape in a URI",
                           dir);
      }
      r[j++] = (char)(hi * 16 + lo);
      i += 2;
    } else {
      r[j++] = p[i];
    }
  }
  while (j > 1 && r[j - 1] == '/')
    j--;
  r[j] = '\0';
  *out = r;
  return EDDY_OK;
}

/* A folder's new, renamed or removed entries are durable only once the
 * folder itself is fsynced. */
static int sync_dir(const char *dir, eddy_err *err)
{
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    return sys_fail(err, dir, errno);
  int rc = EDDY_OK;
  /* some file systems cannot sync a folder: EINVAL, nothing to do */
  if (fsync(fd) != 0 && errno != EINVAL)
    rc = sys_fail(err, dir, errno);
  close(fd);
  return rc;
}

static int sync_parent(const char *path, eddy_err *err)
{
  const char *s = strrchr(path, '/');
  if (s == NULL)
    return sync_dir(".", err);
  if (s == path)
    return sync_dir("/", err);
  char *parent = strndup(path, (size_t)(s - path));
  if (parent == NULL)
    return oom(err);
  int rc = sync_dir(parent, err);
  free(parent);
  return rc;
}

/* mkdir -p, each missing level reported by its own path, each new level
 * made durable in its parent. */
static int make_dirs(const char *dir, eddy_err *err)
{
  struct stat st;
  if (stat(dir, &st) == 0) {
    if (!S_ISDIR(st.st_mode))
      return sys_fail(err, dir, ENOTDIR);
    return EDDY_OK;
  }
  char *p = strdup(dir);
  if (p == NULL)
    return oom(err);
  int rc = EDDY_OK;
  for (char *s = p + 1;; s++) {
    if (*s != '/' && *s != '\0')
      continue;
    char c = *s;
    *s = '\0';
    if (mkdir(p, 0777) == 0) {
      rc = sync_parent(p, err);
    } else if (errno != EEXIST) {
      /* a read-only file system may say EROFS for a folder that exists */
      int e = errno;
      if (stat(p, &st) != 0 || !S_ISDIR(st.st_mode))
        rc = sys_fail(err, p, e);
    } else if (stat(p, &st) != 0 || !S_ISDIR(st.st_mode)) {
      rc = sys_fail(err, p, ENOTDIR);
    }
    *s = c;
    if (rc != EDDY_OK || c == '\0')
      break;
  }
  free(p);
  return rc;
}

static int write_all(int fd, const void *p, size_t n, const char *path,
                     eddy_err *err)
{
  const unsigned char *s = p;
  while (n > 0) {
    ssize_t k = write(fd, s, n);
    if (k < 0) {
      if (errno == EINTR)
        continue;
      return sys_fail(err, path, errno);
    }
    s += k;
    n -= (size_t)k;
  }
  return EDDY_OK;
}

/* Reads up to n bytes, fewer only at the end of the file. */
static int read_full(int fd, void *p, size_t n, size_t *got, const char *path,
                     eddy_err *err)
{
  unsigned char *s = p;
  size_t done = 0;
  while (done < n) {
    ssize_t k = read(fd, s + done, n - done);
    if (k < 0) {
      if (errno == EINTR)
        continue;
      return sys_fail(err, path, errno);
    }
    if (k == 0)
      break;
    done += (size_t)k;
  }
  *got = done;
  return EDDY_OK;
}

/* rm -r of path (shown in messages); a path already gone is fine. */
static int remove_at(int dfd, const char *name, const char *shown,
                     eddy_err *err)
{
  if (unlinkat(dfd, name, 0) == 0 || errno == ENOENT)
    return EDDY_OK;
  if (errno != EISDIR && errno != EPERM)
    return sys_fail(err, shown, errno);
  int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0)
    return sys_fail(err, shown, errno);
  DIR *d = fdopendir(fd);
  if (d == NULL) {
    int e = errno;
    close(fd);
    return sys_fail(err, shown, e);
  }
  int rc = EDDY_OK;
  struct dirent *de;
  while (rc == EDDY_OK && (errno = 0, de = readdir(d)) != NULL) {
    if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
      continue;
    char *child = join(shown, de->d_name);
    if (child == NULL) {
      rc = oom(err);
      break;
    }
    rc = remove_at(fd, de->d_name, child, err);
    free(child);
  }
  if (rc == EDDY_OK && errno != 0)
    rc = sys_fail(err, shown, errno);
  closedir(d);
  if (rc == EDDY_OK && unlinkat(dfd, name, AT_REMOVEDIR) != 0 &&
      errno != ENOENT)
    rc = sys_fail(err, shown, errno);
  return rc;
}

static int remove_tree(const char *path, eddy_err *err)
{
  return remove_at(AT_FDCWD, path, path, err);
}

/* rename that refuses to replace an existing target (an empty folder would
 * otherwise be replaced silently). */
static int rename_noreplace(const char *from, const char *to, eddy_err *err)
{
  if (renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) == 0)
    return EDDY_OK;
  if (errno != EINVAL && errno != ENOSYS)
    return sys_fail(err, to, errno);
  /* a file system without RENAME_NOREPLACE: ids are never reused, so a
   * check before the rename is enough */
  struct stat st;
  if (lstat(to, &st) == 0)
    return sys_fail(err, to, EEXIST);
  if (rename(from, to) != 0)
    return sys_fail(err, to, errno);
  return EDDY_OK;
}

/* Removes a completed folder so that no crash can leave it half there:
 * renamed to <path>.discard (made durable), then emptied. */
static int discard_folder(const char *path, eddy_err *err)
{
  char *tmp = concat(path, DISCARD);
  if (tmp == NULL)
    return oom(err);
  int rc = EDDY_OK;
  if (rename(path, tmp) != 0) {
    if (errno != ENOENT) /* someone else removed it */
      rc = sys_fail(err, path, errno);
  } else {
    rc = sync_parent(path, err);
    if (rc == EDDY_OK)
      rc = remove_tree(tmp, err);
  }
  free(tmp);
  return rc;
}

/* "chk-<digits>" with an optional suffix that must then follow exactly:
 * the id, or -1. */
static int64_t chk_id(const char *name, const char *suffix)
{
  if (strncmp(name, "chk-", 4) != 0)
    return -1;
  const char *s = name + 4;
  if (*s < '0' || *s > '9')
    return -1;
  int64_t v = 0;
  for (; *s >= '0' && *s <= '9'; s++) {
    if (v > (INT64_MAX - 9) / 10)
      return -1;
    v = v * 10 + (*s - '0');
  }
  return strcmp(s, suffix ? suffix : "") == 0 ? v : -1;
}

static int ends_with(const char *s, const char *suffix)
{
  size_t n = strlen(s), m = strlen(suffix);
  return n >= m && strcmp(s + n - m, suffix) == 0;
}

static int is_dir_at(int dfd, const struct dirent *de)
{
  if (de->d_type == DT_DIR)
    return 1;
  if (de->d_type != DT_UNKNOWN)
    return 0;
  struct stat st;
  return fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
         S_ISDIR(st.st_mode);
}

/* The names of the folders in dir; *names and each name malloc'd. */
static int list_dirs(const char *dir, char ***names, int *count, eddy_err *err)
{
  *names = NULL;
  *count = 0;
  DIR *d = opendir(dir);
  if (d == NULL)
    return eddy_seterr(err, errno == ENOENT ? EDDY_ENOTFOUND : EDDY_EIO,
                       "%s: %s", dir, strerror(errno));
  int rc = EDDY_OK, n = 0, cap = 0;
  char **v = NULL;
  struct dirent *de;
  while ((errno = 0, de = readdir(d)) != NULL) {
    if (de->d_name[0] == '.' || !is_dir_at(dirfd(d), de))
      continue;
    if (n == cap) {
      int ncap = cap ? cap * 2 : 16;
      char **nv = realloc(v, (size_t)ncap * sizeof *nv);
      if (nv == NULL) {
        rc = oom(err);
        break;
      }
      v = nv;
      cap = ncap;
    }
    if ((v[n] = strdup(de->d_name)) == NULL) {
      rc = oom(err);
      break;
    }
    n++;
  }
  if (rc == EDDY_OK && errno != 0)
    rc = sys_fail(err, dir, errno);
  closedir(d);
  if (rc != EDDY_OK) {
    for (int i = 0; i < n; i++)
      free(v[i]);
    free(v);
    return rc;
  }
  *names = v;
  *count = n;
  return EDDY_OK;
}

static void free_names(char **v, int n)
{
  for (int i = 0; i < n; i++)
    free(v[i]);
  free(v);
}

/* Text that _metadata (JSON) can hold. */
static int is_utf8(const char *s)
{
  json_t *j = json_string(s);
  json_decref(j);
  return j != NULL;
}

static int valid_file_name(const char *name)
{
  size_t n = strlen(name);
  return n > 0 && n <= NAME_MAX_LEN && strchr(name, '/') == NULL &&
         strcmp(name, ".") != 0 && strcmp(name, "..") != 0 &&
         strcmp(name, METADATA) != 0 && is_utf8(name);
}

static int valid_job_id(const char *job)
{
  return job != NULL && job[0] != '\0' && strchr(job, '/') == NULL &&
         strcmp(job, ".") != 0 && strcmp(job, "..") != 0 &&
         strlen(job) <= NAME_MAX_LEN && is_utf8(job);
}

/* A set of names (shared files), sorted once filled. */
typedef struct name_set {
  char **v;
  int n, cap;
} name_set;

static int set_add(name_set *s, const char *name)
{
  if (s->n == s->cap) {
    int ncap = s->cap ? s->cap * 2 : 64;
    char **nv = realloc(s->v, (size_t)ncap * sizeof *nv);
    if (nv == NULL)
      return EDDY_ENOMEM;
    s->v = nv;
    s->cap = ncap;
  }
  if ((s->v[s->n] = strdup(name)) == NULL)
    return EDDY_ENOMEM;
  s->n++;
  return EDDY_OK;
}

static int str_cmp(const void *a, const void *b)
{
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static void set_sort(name_set *s)
{
  if (s->n > 1)
    qsort(s->v, (size_t)s->n, sizeof *s->v, str_cmp);
}

static int set_has(const name_set *s, const char *name)
{
  return s->n > 0 && bsearch(&name, s->v, (size_t)s->n, sizeof *s->v, str_cmp) != NULL;
}

static void set_free(name_set *s)
{
  for (int i = 0; i < s->n; i++)
    free(s->v[i]);
  free(s->v);
  memset(s, 0, sizeof *s);
}

static int gc_shared(const char *dir, const name_set *cand, const char *const *keep, int nkeep,
                     eddy_err *err);

/* ------------------------------------------------------------------ */
/* the store                                                           */

struct eddy_store {
  char *path; /* <dir>/<job> */
  char *job;
};

int eddy_store_open(const char *dir, const char *job_id, int *stale,
                    eddy_store **out, eddy_err *err)
{
  *out = NULL;
  if (stale)
    *stale = 0;
  if (!valid_job_id(job_id))
    return eddy_seterr(err, EDDY_EINVAL,
                       "a bad job id \"%s\" (non-empty UTF-8, no '/', not "
                       "\".\" or \"..\")",
                       job_id ? job_id : "(null)");
  char *base;
  int rc = local_path(dir, &base, err);
  if (rc != EDDY_OK)
    return rc;
  eddy_store *s = calloc(1, sizeof *s);
  if (s == NULL || (s->path = join(base, job_id)) == NULL ||
      (s->job = strdup(job_id)) == NULL) {
    free(base);
    eddy_store_close(s);
    return oom(err);
  }
  free(base);
  if ((rc = make_dirs(s->path, err)) != EDDY_OK)
    goto fail;
  /* fail now rather than at the first checkpoint */
  if (access(s->path, W_OK | X_OK) != 0) {
    rc = sys_fail(err, s->path, errno);
    goto fail;
  }
  char **names;
  int n;
  if ((rc = list_dirs(s->path, &names, &n, err)) != EDDY_OK)
    goto fail;
  int removed = 0;
  for (int i = 0; i < n && rc == EDDY_OK; i++) {
    if (chk_id(names[i], INPROGRESS) < 0 && chk_id(names[i], DISCARD) < 0)
      continue;
    char *p = join(s->path, names[i]);
    if (p == NULL) {
      rc = oom(err);
      break;
    }
    rc = remove_tree(p, err);
    free(p);
    if (rc == EDDY_OK)
      removed++;
  }
  free_names(names, n);
  /* uploads of a checkpoint that crashed, deletions a crash cut short */
  if (rc == EDDY_OK)
    rc = gc_shared(s->path, NULL, NULL, 0, err);
  if (rc != EDDY_OK)
    goto fail;
  if (stale)
    *stale = removed;
  *out = s;
  return EDDY_OK;
fail:
  eddy_store_close(s);
  return rc;
}

void eddy_store_close(eddy_store *s)
{
  if (s == NULL)
    return;
  free(s->path);
  free(s->job);
  free(s);
}

const char *eddy_store_path(const eddy_store *s) { return s->path; }

const char *eddy_store_job(const eddy_store *s) { return s->job; }

/* ------------------------------------------------------------------ */
/* writing                                                             */

typedef struct wentry {
  char *name;
  uint64_t size, raw, sum;
  const char *compression;
} wentry;

/* A shared file the checkpoint references; uploaded: by this one. */
typedef struct sentry {
  char *name;
  uint64_t size, sum;
  int uploaded;
} sentry;

struct eddy_chk_writer {
  char *parent; /* the folder that holds the checkpoint's folder */
  char *name;   /* the folder's final name */
  char *tmp;    /* parent/name.inprogress */
  char *final;  /* parent/name */
  char *job;
  const char *kind;
  int64_t id, time;
  pthread_mutex_t mu; /* guards everything below */
  wentry *entries;
  int nentries, centries;
  eddy_chk_file *open; /* files not closed yet */
  int nopen;
  int failed;
  eddy_err failure; /* the first failure of a file */
  uint64_t bytes;
  uint64_t state_size; /* files, and every shared file referenced */
  char *shared_dir;    /* <job folder>/shared; NULL for a savepoint */
  sentry *shared;
  int nshared, cshared;
  int uploads; /* shared files uploaded: the folder needs an fsync */
};

struct eddy_chk_file {
  eddy_chk_writer *w;
  eddy_chk_file *prev, *next; /* in w->open */
  char *name;
  char *path;
  int fd;
  ZSTD_CCtx *cctx;   /* NULL: stored as is */
  unsigned char *in; /* zstd: bytes not compressed yet */
  size_t in_len, in_cap;
  unsigned char *out; /* bytes not written yet */
  size_t out_len, out_cap;
  XXH3_state_t *xxh; /* of the bytes written */
  uint64_t size, raw;
  int failed;
  eddy_err failure;
};

static void writer_free(eddy_chk_writer *w)
{
  for (int i = 0; i < w->nentries; i++)
    free(w->entries[i].name);
  free(w->entries);
  for (int i = 0; i < w->nshared; i++)
    free(w->shared[i].name);
  free(w->shared);
  free(w->shared_dir);
  free(w->parent);
  free(w->name);
  free(w->tmp);
  free(w->final);
  free(w->job);
  pthread_mutex_destroy(&w->mu);
  free(w);
}

/* A writer for parent/name, with its .inprogress folder made. */
static int writer_new(const char *parent, const char *name, const char *job,
                      const char *kind, int64_t id, eddy_chk_writer **out,
                      eddy_err *err)
{
  *out = NULL;
  eddy_chk_writer *w = calloc(1, sizeof *w);
  if (w == NULL)
    return oom(err);
  if (pthread_mutex_init(&w->mu, NULL) != 0) {
    free(w);
    return oom(err);
  }
  w->kind = kind;
  w->id = id;
  w->time = now_ms();
  if ((w->parent = strdup(parent)) == NULL ||
      (w->name = strdup(name)) == NULL || (w->job = strdup(job)) == NULL ||
      (w->final = join(parent, name)) == NULL ||
      (w->tmp = concat(w->final, INPROGRESS)) == NULL) {
    writer_free(w);
    return oom(err);
  }
  struct stat st;
  if (lstat(w->final, &st) == 0) {
    int rc = eddy_seterr(err, EDDY_EINVAL,
                         "%s: already exists (checkpoint ids are never "
                         "reused)",
                         w->final);
    writer_free(w);
    return rc;
  }
  if (mkdir(w->tmp, 0777) != 0) {
    int e = errno;
    int rc = e == EEXIST ? eddy_seterr(err, EDDY_EINVAL,
                                       "%s: is being written already", w->tmp)
                         : sys_fail(err, w->tmp, e);
    writer_free(w);
    return rc;
  }
  *out = w;
  return EDDY_OK;
}

int eddy_chk_begin(eddy_store *s, int64_t id, const char *kind,
                   eddy_chk_writer **out, eddy_err *err)
{
  *out = NULL;
  if (s == NULL)
    return eddy_seterr(err, EDDY_EINVAL, "no checkpoint store");
  if (id < 0)
    return eddy_seterr(err, EDDY_EINVAL, "a negative checkpoint id %" PRId64,
                       id);
  const char *k;
  if (kind == NULL || strcmp(kind, "checkpoint") == 0)
    k = "checkpoint";
  else if (strcmp(kind, "savepoint") == 0)
    k = "savepoint";
  else
    return eddy_seterr(err, EDDY_EINVAL,
                       "a checkpoint kind must be \"checkpoint\" or "
                       "\"savepoint\", not \"%s\"",
                       kind);
  char name[32];
  snprintf(name, sizeof name, "chk-%" PRId64, id);
  int rc = writer_new(s->path, name, s->job, k, id, out, err);
  if (rc == EDDY_OK && ((*out)->shared_dir = join(s->path, SHARED)) == NULL) {
    eddy_chk_abort(*out);
    *out = NULL;
    return oom(err);
  }
  return rc;
}

int eddy_savepoint_begin(const char *dir, const char *job_id, int64_t id,
                         eddy_chk_writer **out, eddy_err *err)
{
  *out = NULL;
  if (!valid_job_id(job_id))
    return eddy_seterr(err, EDDY_EINVAL,
                       "a bad job id \"%s\" (non-empty UTF-8, no '/', not "
                       "\".\" or \"..\")",
                       job_id ? job_id : "(null)");
  if (id < 0)
    return eddy_seterr(err, EDDY_EINVAL, "a negative checkpoint id %" PRId64,
                       id);
  char *base;
  int rc = local_path(dir, &base, err);
  if (rc != EDDY_OK)
    return rc;
  if ((rc = make_dirs(base, err)) != EDDY_OK) {
    free(base);
    return rc;
  }
  /* Flink's savepoint-<6 characters of the job id>-<12 random hex>; a
   * name already taken (by chance) is drawn again */
  char shortid[7];
  size_t k = 0;
  for (const char *s = job_id; *s && k < 6; s++)
    shortid[k++] = (*s == '/' || *s == '.') ? '_' : *s;
  shortid[k] = '\0';
  for (int attempt = 0; attempt < 8; attempt++) {
    unsigned char rnd[6];
    if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd) {
      rc = eddy_seterr(err, EDDY_EIO, "getrandom: %s", strerror(errno));
      break;
    }
    char name[64];
    snprintf(name, sizeof name, "savepoint-%s-%02x%02x%02x%02x%02x%02x",
             shortid, rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5]);
    rc = writer_new(base, name, job_id, "savepoint", id, out, err);
    if (rc != EDDY_EINVAL)
      break;
  }
  free(base);
  return rc;
}

void eddy_chk_set_time(eddy_chk_writer *w, int64_t ms) { w->time = ms; }

const char *eddy_chk_writer_path(const eddy_chk_writer *w) { return w->final; }

int64_t eddy_chk_writer_id(const eddy_chk_writer *w) { return w->id; }

uint64_t eddy_chk_writer_bytes(eddy_chk_writer *w)
{
  pthread_mutex_lock(&w->mu);
  uint64_t b = w->bytes;
  pthread_mutex_unlock(&w->mu);
  return b;
}

uint64_t eddy_chk_writer_state_size(eddy_chk_writer *w)
{
  pthread_mutex_lock(&w->mu);
  uint64_t b = w->state_size;
  pthread_mutex_unlock(&w->mu);
  return b;
}

/* ---- shared files ---- */

/* A shared file's name: a file name that is not hidden (hidden names are
 * uploads in progress). */
static int valid_shared_name(const char *name)
{
  return valid_file_name(name) && name[0] != '.';
}

/* The writer fails for good (as when a file fails): a message in w. */
static int writer_failed(eddy_chk_writer *w, const eddy_err *e, eddy_err *err)
{
  pthread_mutex_lock(&w->mu);
  if (!w->failed) {
    w->failed = 1;
    eddy_err_copy(&w->failure, e);
  }
  pthread_mutex_unlock(&w->mu);
  return pass_err(err, e);
}

/* Under w->mu: the entry of shared file name, or NULL. */
static sentry *find_shared(eddy_chk_writer *w, const char *name)
{
  for (int i = 0; i < w->nshared; i++)
    if (strcmp(w->shared[i].name, name) == 0)
      return &w->shared[i];
  return NULL;
}

/* Under w->mu: lists a shared file (name is taken). */
static int add_shared(eddy_chk_writer *w, char *name, uint64_t size, uint64_t sum,
                      int uploaded)
{
  if (w->nshared == w->cshared) {
    int ncap = w->cshared ? w->cshared * 2 : 16;
    sentry *ns = realloc(w->shared, (size_t)ncap * sizeof *ns);
    if (ns == NULL)
      return EDDY_ENOMEM;
    w->shared = ns;
    w->cshared = ncap;
  }
  w->shared[w->nshared++] = (sentry){name, size, sum, uploaded};
  w->state_size += size;
  if (uploaded) {
    w->bytes += size;
    w->uploads++;
  }
  return EDDY_OK;
}

/* Copies from fd src into the new file at path, fsyncs it; its size and
 * xxh3-64 checksum come back. */
static int copy_into(int src, const char *src_path, const char *path, uint64_t *size,
                     uint64_t *sum, eddy_err *err)
{
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
  if (fd < 0)
    return sys_fail(err, path, errno);
  unsigned char *buf = malloc(IO_BUF);
  XXH3_state_t *xxh = XXH3_createState();
  int rc = buf == NULL || xxh == NULL ? oom(err) : EDDY_OK;
  uint64_t total = 0;
  if (rc == EDDY_OK) {
    XXH3_64bits_reset(xxh);
    posix_fadvise(src, 0, 0, POSIX_FADV_SEQUENTIAL);
    for (size_t got = 1; rc == EDDY_OK && got > 0;) {
      rc = read_full(src, buf, IO_BUF, &got, src_path, err);
      if (rc == EDDY_OK && got > 0) {
        XXH3_64bits_update(xxh, buf, got);
        total += got;
        rc = write_all(fd, buf, got, path, err);
      }
    }
  }
  if (rc == EDDY_OK && fsync(fd) != 0)
    rc = sys_fail(err, path, errno);
  if (close(fd) != 0 && rc == EDDY_OK)
    rc = sys_fail(err, path, errno);
  if (rc == EDDY_OK) {
    *size = total;
    *sum = XXH3_64bits_digest(xxh);
  } else {
    unlink(path);
  }
  free(buf);
  if (xxh)
    XXH3_freeState(xxh);
  return rc;
}

int eddy_chk_share(eddy_chk_writer *w, const char *path, const char *name, uint64_t *size,
                   uint64_t *checksum, eddy_err *err)
{
  if (w == NULL || path == NULL || name == NULL)
    return eddy_seterr(err, EDDY_EINVAL, "no checkpoint writer, file or shared name");
  if (w->shared_dir == NULL)
    return eddy_seterr(err, EDDY_EINVAL, "%s: a savepoint has no shared files", w->name);
  if (!valid_shared_name(name))
    return eddy_seterr(err, EDDY_EINVAL,
                       "%s: a bad shared file name \"%s\" (non-empty, no '/', not "
                       "hidden, at most %d bytes)",
                       w->name, name, NAME_MAX_LEN);
  int rc = EDDY_OK;
  pthread_mutex_lock(&w->mu);
  if (w->failed)
    rc = pass_err(err, &w->failure);
  else if (find_shared(w, name) != NULL)
    rc = eddy_seterr(err, EDDY_EINVAL, "%s: lists shared file %s already", w->name, name);
  pthread_mutex_unlock(&w->mu);
  if (rc != EDDY_OK)
    return rc;
  eddy_err e;
  char *final = join(w->shared_dir, name);
  size_t tn = strlen(name) + 6;
  char *tmpname = malloc(tn);
  char *tmp = NULL;
  char *own = strdup(name);
  if (final == NULL || tmpname == NULL || own == NULL) {
    rc = oom(&e);
    goto done;
  }
  snprintf(tmpname, tn, ".%s.tmp", name);
  if ((tmp = join(w->shared_dir, tmpname)) == NULL) {
    rc = oom(&e);
    goto done;
  }
  struct stat st;
  if ((rc = make_dirs(w->shared_dir, &e)) != EDDY_OK)
    goto done;
  if (lstat(final, &st) == 0) {
    rc = eddy_seterr(&e, EDDY_EINVAL, "%s: already exists (shared file names are never reused)",
                     final);
    goto done;
  }
  int src = open(path, O_RDONLY | O_CLOEXEC);
  if (src < 0) {
    rc = sys_fail(&e, path, errno);
    goto done;
  }
  uint64_t n = 0, sum = 0;
  unlink(tmp); /* a crashed upload's, or nothing */
  rc = copy_into(src, path, tmp, &n, &sum, &e);
  close(src);
  if (rc == EDDY_OK && (rc = rename_noreplace(tmp, final, &e)) != EDDY_OK)
    unlink(tmp);
  if (rc != EDDY_OK)
    goto done;
  pthread_mutex_lock(&w->mu);
  if (add_shared(w, own, n, sum, 1) == EDDY_OK)
    own = NULL;
  else
    rc = oom(&e);
  pthread_mutex_unlock(&w->mu);
  if (rc != EDDY_OK) {
    unlink(final);
    goto done;
  }
  if (size)
    *size = n;
  if (checksum)
    *checksum = sum;
done:
  free(final);
  free(tmpname);
  free(tmp);
  free(own);
  return rc == EDDY_OK ? EDDY_OK : writer_failed(w, &e, err);
}

int eddy_chk_reference(eddy_chk_writer *w, const char *name, uint64_t size, uint64_t checksum,
                       eddy_err *err)
{
  if (w == NULL || name == NULL)
    return eddy_seterr(err, EDDY_EINVAL, "no checkpoint writer or shared name");
  if (w->shared_dir == NULL)
    return eddy_seterr(err, EDDY_EINVAL, "%s: a savepoint has no shared files", w->name);
  if (!valid_shared_name(name))
    return eddy_seterr(err, EDDY_EINVAL, "%s: a bad shared file name \"%s\"", w->name, name);
  char *path = join(w->shared_dir, name);
  if (path == NULL)
    return oom(err);
  struct stat st;
  int there = stat(path, &st) == 0, e = errno;
  int rc = EDDY_OK;
  if (!there && e != ENOENT)
    rc = sys_fail(err, path, e);
  else if (!there || !S_ISREG(st.st_mode) || (uint64_t)st.st_size != size)
    rc = eddy_seterr(err, EDDY_ENOTFOUND, "%s: %s", path,
                     !there ? "missing" : "not of the recorded size");
  free(path);
  if (rc != EDDY_OK)
    return rc;
  char *own = strdup(name);
  if (own == NULL)
    return oom(err);
  pthread_mutex_lock(&w->mu);
  sentry *old = find_shared(w, name);
  if (w->failed) {
    rc = pass_err(err, &w->failure);
  } else if (old != NULL) {
    if (old->size != size || old->sum != checksum)
      rc = eddy_seterr(err, EDDY_EINVAL, "%s: lists shared file %s already, with another size "
                       "or checksum", w->name, name);
  } else if (add_shared(w, own, size, checksum, 0) == EDDY_OK) {
    own = NULL;
  } else {
    rc = oom(err);
  }
  pthread_mutex_unlock(&w->mu);
  free(own);
  return rc;
}

/* A failed or aborted checkpoint takes what it uploaded with it: no other
 * checkpoint can list those files (their names are new). */
static void remove_uploads(eddy_chk_writer *w)
{
  for (int i = 0; i < w->nshared; i++) {
    if (!w->shared[i].uploaded)
      continue;
    char *p = join(w->shared_dir, w->shared[i].name);
    if (p != NULL)
      unlink(p);
    free(p);
  }
}

static void file_free(eddy_chk_file *f)
{
  if (f->fd >= 0)
    close(f->fd);
  ZSTD_freeCCtx(f->cctx);
  if (f->xxh)
    XXH3_freeState(f->xxh);
  free(f->in);
  free(f->out);
  free(f->name);
  free(f->path);
  free(f);
}

int eddy_chk_file_open(eddy_chk_writer *w, const char *name,
                       const char *compression, int level, eddy_chk_file **out,
                       eddy_err *err)
{
  *out = NULL;
  if (w == NULL || name == NULL)
    return eddy_seterr(err, EDDY_EINVAL, "no checkpoint writer or file name");
  if (!valid_file_name(name))
    return eddy_seterr(err, EDDY_EINVAL,
                       "%s: a bad checkpoint file name \"%s\" (non-empty, no "
                       "'/', not \".\", \"..\" or \"" METADATA "\", at most "
                       "%d bytes)",
                       w->name, name, NAME_MAX_LEN);
  int zstd;
  if (compression == NULL || strcmp(compression, "zstd") == 0)
    zstd = 1;
  else if (strcmp(compression, "none") == 0)
    zstd = 0;
  else
    return eddy_seterr(err, EDDY_EINVAL,
                       "compression must be \"zstd\" or \"none\", not \"%s\"",
                       compression);
  if (zstd && (level < ZSTD_minCLevel() || level > ZSTD_maxCLevel()))
    return eddy_seterr(err, EDDY_EINVAL, "zstd level %d is not in %d..%d",
                       level, ZSTD_minCLevel(), ZSTD_maxCLevel());

  eddy_chk_file *f = calloc(1, sizeof *f);
  if (f == NULL)
    return oom(err);
  f->fd = -1;
  f->w = w;
  f->out_cap = IO_BUF;
  if ((f->name = strdup(name)) == NULL ||
      (f->path = join(w->tmp, name)) == NULL ||
      (f->out = malloc(f->out_cap)) == NULL ||
      (f->xxh = XXH3_createState()) == NULL)
    goto nomem;
  XXH3_64bits_reset(f->xxh);
  if (zstd) {
    f->in_cap = ZIN_BUF;
    if ((f->in = malloc(f->in_cap)) == NULL ||
        (f->cctx = ZSTD_createCCtx()) == NULL)
      goto nomem;
    size_t r = ZSTD_CCtx_setParameter(f->cctx, ZSTD_c_compressionLevel, level);
    if (ZSTD_isError(r)) {
      int rc = eddy_seterr(err, EDDY_EINVAL, "zstd level %d: %s", level,
                           ZSTD_getErrorName(r));
      file_free(f);
      return rc;
    }
    /* One zstd worker compresses while this thread serializes state into
     * it, so the two overlap; a libzstd built without threads refuses,
     * and compresses on this thread. */
    (void)ZSTD_CCtx_setParameter(f->cctx, ZSTD_c_nbWorkers, 1);
  }

  int rc = EDDY_OK;
  pthread_mutex_lock(&w->mu);
  if (w->failed) {
    rc = pass_err(err, &w->failure);
  } else {
    for (int i = 0; i < w->nentries && rc == EDDY_OK; i++)
      if (strcmp(w->entries[i].name, name) == 0)
        rc = EDDY_EINVAL;
    for (eddy_chk_file *o = w->open; o && rc == EDDY_OK; o = o->next)
      if (strcmp(o->name, name) == 0)
        rc = EDDY_EINVAL;
    if (rc != EDDY_OK) {
      eddy_seterr(err, rc, "%s/%s: the checkpoint has this file already",
                  w->name, name);
    } else {
      /* O_EXCL as well: never write into a file we did not create */
      f->fd = open(f->path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
      if (f->fd < 0) {
        rc = sys_fail(err, f->path, errno);
      } else {
        f->next = w->open;
        if (w->open)
          w->open->prev = f;
        w->open = f;
        w->nopen++;
      }
    }
  }
  pthread_mutex_unlock(&w->mu);
  if (rc != EDDY_OK) {
    file_free(f);
    return rc;
  }
  *out = f;
  return EDDY_OK;
nomem:
  file_free(f);
  return oom(err);
}

/* Marks f failed with the message already in f->failure, makes the
 * checkpoint uncommittable, and hands the message to the caller. The
 * message is kept in f so that it survives a caller's NULL err. */
static int file_failed(eddy_chk_file *f, eddy_err *err)
{
  f->failed = 1;
  eddy_chk_writer *w = f->w;
  pthread_mutex_lock(&w->mu);
  if (!w->failed) {
    w->failed = 1;
    eddy_err_copy(&w->failure, &f->failure);
  }
  pthread_mutex_unlock(&w->mu);
  return pass_err(err, &f->failure);
}

static int put_bytes(eddy_chk_file *f, const void *p, size_t n, eddy_err *err)
{
  XXH3_64bits_update(f->xxh, p, n);
  if (write_all(f->fd, p, n, f->path, &f->failure) != EDDY_OK)
    return file_failed(f, err);
  f->size += n;
  return EDDY_OK;
}

static int drain(eddy_chk_file *f, eddy_err *err)
{
  if (f->out_len == 0)
    return EDDY_OK;
  size_t n = f->out_len;
  f->out_len = 0;
  return put_bytes(f, f->out, n, err);
}

/* Feeds p to zstd, writing its output as the buffer fills; with
 * ZSTD_e_end, until the frame is complete. */
static int compress(eddy_chk_file *f, const void *p, size_t n,
                    ZSTD_EndDirective mode, eddy_err *err)
{
  /* zstd makes progress whenever this much room is left */
  const size_t slack = ZSTD_CStreamOutSize();
  ZSTD_inBuffer in = {p, n, 0};
  for (;;) {
    if (f->out_cap - f->out_len < slack) {
      int rc = drain(f, err);
      if (rc != EDDY_OK)
        return rc;
    }
    ZSTD_outBuffer out = {f->out, f->out_cap, f->out_len};
    size_t r = ZSTD_compressStream2(f->cctx, &out, &in, mode);
    f->out_len = out.pos;
    if (ZSTD_isError(r)) {
      eddy_seterr(&f->failure, EDDY_EIO, "%s: zstd: %s", f->path,
                  ZSTD_getErrorName(r));
      return file_failed(f, err);
    }
    if (mode == ZSTD_e_end ? r == 0 : in.pos == in.size)
      return EDDY_OK;
  }
}

int eddy_chk_file_write(eddy_chk_file *f, const void *p, size_t n,
                        eddy_err *err)
{
  if (f->failed)
    return pass_err(err, &f->failure);
  if (n == 0)
    return EDDY_OK;
  f->raw += n;
  int rc;
  if (f->cctx == NULL) {
    if (n >= f->out_cap) {
      if ((rc = drain(f, err)) != EDDY_OK)
        return rc;
      return put_bytes(f, p, n, err);
    }
    if (f->out_cap - f->out_len < n && (rc = drain(f, err)) != EDDY_OK)
      return rc;
    memcpy(f->out + f->out_len, p, n);
    f->out_len += n;
    return EDDY_OK;
  }
  if (f->in_cap - f->in_len < n) {
    rc = compress(f, f->in, f->in_len, ZSTD_e_continue, err);
    f->in_len = 0;
    if (rc != EDDY_OK)
      return rc;
  }
  if (n >= f->in_cap)
    return compress(f, p, n, ZSTD_e_continue, err);
  memcpy(f->in + f->in_len, p, n);
  f->in_len += n;
  return EDDY_OK;
}

int eddy_chk_file_close(eddy_chk_file *f, eddy_err *err)
{
  if (f == NULL)
    return eddy_seterr(err, EDDY_EINVAL, "no checkpoint file");
  eddy_chk_writer *w = f->w;
  int rc = f->failed ? f->failure.code : EDDY_OK;
  if (rc == EDDY_OK && f->cctx != NULL) {
    rc = compress(f, f->in, f->in_len, ZSTD_e_end, NULL);
    f->in_len = 0;
  }
  if (rc == EDDY_OK)
    rc = drain(f, NULL);
  if (rc == EDDY_OK && fsync(f->fd) != 0)
    rc = sys_fail(&f->failure, f->path, errno);
  if (close(f->fd) != 0 && rc == EDDY_OK)
    rc = sys_fail(&f->failure, f->path, errno);
  f->fd = -1;
  if (rc != EDDY_OK)
    file_failed(f, NULL);

  pthread_mutex_lock(&w->mu);
  if (f->prev)
    f->prev->next = f->next;
  else
    w->open = f->next;
  if (f->next)
    f->next->prev = f->prev;
  w->nopen--;
  if (rc == EDDY_OK && w->nentries == w->centries) {
    int ncap = w->centries ? w->centries * 2 : 8;
    wentry *ne = realloc(w->entries, (size_t)ncap * sizeof *ne);
    if (ne == NULL) {
      rc = oom(&f->failure);
      if (!w->failed) {
        w->failed = 1;
        eddy_err_copy(&w->failure, &f->failure);
      }
    } else {
      w->entries = ne;
      w->centries = ncap;
    }
  }
  if (rc == EDDY_OK) {
    wentry *e = &w->entries[w->nentries++];
    e->name = f->name;
    f->name = NULL;
    e->size = f->size;
    e->raw = f->raw;
    e->sum = XXH3_64bits_digest(f->xxh);
    e->compression = f->cctx ? "zstd" : "none";
    w->bytes += f->size;
    w->state_size += f->size;
  }
  pthread_mutex_unlock(&w->mu);
  if (rc != EDDY_OK)
    pass_err(err, &f->failure);
  file_free(f);
  return rc;
}

static int entry_cmp(const void *a, const void *b)
{
  return strcmp(((const wentry *)a)->name, ((const wentry *)b)->name);
}

static int sentry_cmp(const void *a, const void *b)
{
  return strcmp(((const sentry *)a)->name, ((const sentry *)b)->name);
}

static int is_reserved(const char *key)
{
  for (size_t i = 0; i < sizeof reserved_keys / sizeof reserved_keys[0]; i++)
    if (strcmp(key, reserved_keys[i]) == 0)
      return 1;
  return 0;
}

/* The _metadata text; files in name order, so the same checkpoint gives
 * the same text whatever order its files were closed in. */
static int metadata_text(eddy_chk_writer *w, json_t *extra, char **text,
                         eddy_err *err)
{
  *text = NULL;
  if (extra != NULL) {
    const char *key;
    json_t *v;
    if (!json_is_object(extra))
      return eddy_seterr(err, EDDY_EINVAL,
                         "%s: extra metadata must be a JSON object", w->name);
    json_object_foreach(extra, key, v) {
      if (is_reserved(key))
        return eddy_seterr(err, EDDY_EINVAL,
                           "%s: extra metadata may not set \"%s\"", w->name,
                           key);
    }
  }
  if (w->nentries > 1)
    qsort(w->entries, (size_t)w->nentries, sizeof *w->entries, entry_cmp);
  if (w->nshared > 1)
    qsort(w->shared, (size_t)w->nshared, sizeof *w->shared, sentry_cmp);
  json_t *files = json_array();
  json_t *shared = w->nshared > 0 ? json_array() : NULL;
  json_t *meta = files ? json_object() : NULL;
  int ok = meta != NULL && (w->nshared == 0 || shared != NULL);
  for (int i = 0; ok && i < w->nentries; i++) {
    const wentry *e = &w->entries[i];
    char sum[17];
    snprintf(sum, sizeof sum, "%016" PRIx64, e->sum);
    json_t *f = json_pack("{s:s, s:I, s:I, s:s, s:s}", "name", e->name, "size",
                          (json_int_t)e->size, "raw_size", (json_int_t)e->raw,
                          "checksum", sum, "compression", e->compression);
    ok = f != NULL && json_array_append_new(files, f) == 0;
  }
  for (int i = 0; ok && i < w->nshared; i++) {
    const sentry *e = &w->shared[i];
    char sum[17];
    snprintf(sum, sizeof sum, "%016" PRIx64, e->sum);
    json_t *f = json_pack("{s:s, s:I, s:s}", "name", e->name, "size", (json_int_t)e->size,
                          "checksum", sum);
    ok = f != NULL && json_array_append_new(shared, f) == 0;
  }
  /* without shared files, the format older readers know */
  ok =
      ok &&
      json_object_set_new(meta, "format",
                          json_integer(w->nshared > 0 ? EDDY_CHK_FORMAT : 1)) == 0 &&
      json_object_set_new(meta, "kind", json_string(w->kind)) == 0 &&
      json_object_set_new(meta, "job", json_string(w->job)) == 0 &&
      json_object_set_new(meta, "id", json_integer(w->id)) == 0 &&
      json_object_set_new(meta, "time", json_integer(w->time)) == 0 &&
      json_object_set(meta, "files", files) == 0 &&
      (shared == NULL || json_object_set(meta, "shared", shared) == 0);
  if (ok && extra != NULL) {
    const char *key;
    json_t *v;
    json_object_foreach(extra, key, v) {
      if (json_object_set(meta, key, v) != 0) {
        ok = 0;
        break;
      }
    }
  }
  char *s = ok ? json_dumps(meta, JSON_INDENT(2)) : NULL;
  json_decref(files);
  json_decref(shared);
  json_decref(meta);
  /* names and the job id were checked to be UTF-8: only memory is left */
  if (s == NULL)
    return oom(err);
  *text = s;
  return EDDY_OK;
}

static int write_metadata(eddy_chk_writer *w, const char *text, eddy_err *err)
{
  char *path = join(w->tmp, METADATA);
  if (path == NULL)
    return oom(err);
  int rc = EDDY_OK;
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
  if (fd < 0) {
    rc = sys_fail(err, path, errno);
  } else {
    rc = write_all(fd, text, strlen(text), path, err);
    if (rc == EDDY_OK)
      rc = write_all(fd, "\n", 1, path, err);
    if (rc == EDDY_OK && fsync(fd) != 0)
      rc = sys_fail(err, path, errno);
    if (close(fd) != 0 && rc == EDDY_OK)
      rc = sys_fail(err, path, errno);
  }
  free(path);
  return rc;
}

static void free_open_files(eddy_chk_writer *w)
{
  while (w->open) {
    eddy_chk_file *f = w->open;
    w->open = f->next;
    file_free(f);
  }
  w->nopen = 0;
}

int eddy_chk_commit(eddy_chk_writer *w, json_t *extra, eddy_err *err)
{
  if (w == NULL) {
    json_decref(extra);
    return eddy_seterr(err, EDDY_EINVAL, "no checkpoint writer");
  }
  int rc = EDDY_OK, renamed = 0;
  char *text = NULL;
  if (w->nopen > 0)
    rc = eddy_seterr(err, EDDY_EINVAL, "%s: %d file%s still open", w->name,
                     w->nopen, w->nopen == 1 ? " is" : "s are");
  else if (w->failed)
    rc = pass_err(err, &w->failure);
  if (rc == EDDY_OK)
    rc = metadata_text(w, extra, &text, err);
  /* The order that makes the checkpoint atomic and durable: files and
   * uploads (already fsynced), the names of the uploads in shared/, then
   * _metadata fsynced, then the folder fsynced so that all its entries are
   * on disk before it gets its final name, then the rename, then the
   * parent fsynced so that the name is on disk before anyone is told the
   * checkpoint is complete. */
  if (rc == EDDY_OK && w->uploads > 0)
    rc = sync_dir(w->shared_dir, err);
  if (rc == EDDY_OK)
    rc = write_metadata(w, text, err);
  if (rc == EDDY_OK)
    rc = sync_dir(w->tmp, err);
  if (rc == EDDY_OK &&
      (rc = rename_noreplace(w->tmp, w->final, err)) == EDDY_OK) {
    renamed = 1;
    rc = sync_parent(w->final, err);
    if (rc != EDDY_OK) {
      /* The caller will treat the checkpoint as failed (no sink commits on
       * it), so it must not be found at the next start either. */
      eddy_err ignored;
      discard_folder(w->final, &ignored);
    }
  }
  if (rc != EDDY_OK && !renamed) {
    free_open_files(w);
    eddy_err ignored;
    remove_tree(w->tmp, &ignored);
  }
  if (rc != EDDY_OK)
    remove_uploads(w);
  free(text);
  json_decref(extra);
  writer_free(w);
  return rc;
}

int eddy_chk_commit_text(eddy_chk_writer *w, const char *extra, eddy_err *err)
{
  json_t *j = NULL;
  if (extra != NULL && w != NULL) {
    json_error_t je;
    j = json_loads(extra, JSON_REJECT_DUPLICATES, &je);
    if (j == NULL || !json_is_object(j)) {
      int rc = j == NULL ? eddy_seterr(err, EDDY_EINVAL,
                                       "%s: extra metadata: %s at byte %d",
                                       w->name, je.text, je.position)
                         : eddy_seterr(err, EDDY_EINVAL,
                                       "%s: extra metadata must be a JSON "
                                       "object",
                                       w->name);
      json_decref(j);
      eddy_chk_abort(w);
      return rc;
    }
  }
  return eddy_chk_commit(w, j, err);
}

void eddy_chk_abort(eddy_chk_writer *w)
{
  if (w == NULL)
    return;
  free_open_files(w);
  eddy_err ignored;
  remove_tree(w->tmp, &ignored);
  remove_uploads(w);
  writer_free(w);
}

/* ------------------------------------------------------------------ */
/* reading                                                             */

struct eddy_chk {
  char *dir;  /* the folder */
  char *name; /* its name, for messages */
  char *text; /* _metadata as read */
  size_t text_len;
  json_t *meta;
  const char *kind, *job; /* in meta */
  int64_t id, time;
  eddy_chk_entry *entries; /* names in meta */
  int nentries;
  eddy_chk_shared *shared; /* names in meta */
  int nshared;
  char *shared_dir; /* ../shared, made when there are shared files */
};

/* How much of a checkpoint open_chk checks. */
enum { CHECK_METADATA, CHECK_SIZES, CHECK_ALL };

static int corrupt(eddy_err *err, const eddy_chk *c, const char *file,
                   const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static int corrupt(eddy_err *err, const eddy_chk *c, const char *file,
                   const char *fmt, ...)
{
  char what[768];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  return eddy_seterr(err, EDDY_ECORRUPT, "%s/%s: %s", c->name, file, what);
}

static int read_metadata(eddy_chk *c, const char *path, eddy_err *err)
{
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT)
      return corrupt(err, c, METADATA, "missing");
    return sys_fail(err, path, errno);
  }
  struct stat st;
  int rc = EDDY_OK;
  if (fstat(fd, &st) != 0) {
    rc = sys_fail(err, path, errno);
  } else if (!S_ISREG(st.st_mode)) {
    rc = corrupt(err, c, METADATA, "not a regular file");
  } else if ((uint64_t)st.st_size > METADATA_MAX) {
    rc = corrupt(err, c, METADATA, "too large (%lld bytes)",
                 (long long)st.st_size);
  } else {
    size_t n = (size_t)st.st_size, got = 0;
    c->text = malloc(n + 1);
    if (c->text == NULL)
      rc = oom(err);
    else if ((rc = read_full(fd, c->text, n, &got, path, err)) == EDDY_OK) {
      c->text[got] = '\0';
      c->text_len = got;
    }
  }
  close(fd);
  return rc;
}

static int get_int(const eddy_chk *c, json_t *obj, const char *key,
                   const char *where, int64_t min, int64_t *v, eddy_err *err)
{
  json_t *j = json_object_get(obj, key);
  if (j == NULL)
    return corrupt(err, c, METADATA, "%s%s: missing", where, key);
  if (!json_is_integer(j))
    return corrupt(err, c, METADATA, "%s%s: expected an integer", where, key);
  *v = json_integer_value(j);
  if (*v < min)
    return corrupt(err, c, METADATA, "%s%s: %" PRId64 " is out of range", where,
                   key, *v);
  return EDDY_OK;
}

static int get_str(const eddy_chk *c, json_t *obj, const char *key,
                   const char *where, const char **v, eddy_err *err)
{
  json_t *j = json_object_get(obj, key);
  if (j == NULL)
    return corrupt(err, c, METADATA, "%s%s: missing", where, key);
  if (!json_is_string(j))
    return corrupt(err, c, METADATA, "%s%s: expected a string", where, key);
  *v = json_string_value(j);
  return EDDY_OK;
}

/* 16 hex digits into *v; 0 if sum is not that. */
static int parse_sum(const char *sum, uint64_t *v)
{
  if (strlen(sum) != 16)
    return 0;
  *v = 0;
  for (size_t k = 0; k < 16; k++) {
    int h = hexval((unsigned char)sum[k]);
    if (h < 0)
      return 0;
    *v = *v << 4 | (uint64_t)h;
  }
  return 1;
}

/* The job folder's shared/ beside the checkpoint's folder. */
static char *shared_dir_of(const char *dir)
{
  char *real = realpath(dir, NULL);
  if (real == NULL)
    return join(dir, "../" SHARED);
  char *slash = strrchr(real, '/');
  if (slash != NULL)
    slash[slash == real ? 1 : 0] = '\0';
  char *p = join(real, SHARED);
  free(real);
  return p;
}

/* "shared": the shared files the checkpoint references (format 2). */
static int parse_shared(eddy_chk *c, eddy_err *err)
{
  json_t *shared = json_object_get(c->meta, "shared");
  if (shared == NULL)
    return EDDY_OK;
  if (!json_is_array(shared))
    return corrupt(err, c, METADATA, "shared: expected an array");
  size_t n = json_array_size(shared);
  if (n > (size_t)INT_MAX / 2)
    return corrupt(err, c, METADATA, "shared: too many");
  c->shared = calloc(n ? n : 1, sizeof *c->shared);
  if (c->shared == NULL || (c->shared_dir = shared_dir_of(c->dir)) == NULL)
    return oom(err);
  for (size_t i = 0; i < n; i++) {
    json_t *f = json_array_get(shared, i);
    char where[32];
    snprintf(where, sizeof where, "shared[%zu].", i);
    if (!json_is_object(f))
      return corrupt(err, c, METADATA, "shared[%zu]: expected an object", i);
    eddy_chk_shared *e = &c->shared[i];
    const char *sum;
    int64_t size;
    int rc;
    if ((rc = get_str(c, f, "name", where, &e->name, err)) != EDDY_OK ||
        (rc = get_int(c, f, "size", where, 0, &size, err)) != EDDY_OK ||
        (rc = get_str(c, f, "checksum", where, &sum, err)) != EDDY_OK)
      return rc;
    if (!valid_shared_name(e->name))
      return corrupt(err, c, METADATA, "%sname: a bad shared file name \"%s\"", where, e->name);
    for (size_t k = 0; k < i; k++)
      if (strcmp(c->shared[k].name, e->name) == 0)
        return corrupt(err, c, METADATA, "%sname: \"%s\" is listed twice", where, e->name);
    if (!parse_sum(sum, &e->checksum))
      return corrupt(err, c, METADATA, "%schecksum: expected 16 hex digits, got \"%s\"", where,
                     sum);
    e->size = (uint64_t)size;
    c->nshared = (int)i + 1;
  }
  return EDDY_OK;
}

static int parse_metadata(eddy_chk *c, eddy_err *err)
{
  json_error_t je;
  c->meta = json_loadb(c->text, c->text_len, JSON_REJECT_DUPLICATES, &je);
  if (c->meta == NULL) {
    if (json_error_code(&je) == json_error_premature_end_of_input ||
        (size_t)je.position >= c->text_len)
      return corrupt(err, c, METADATA, "truncated JSON at byte %d",
                     je.position);
    return corrupt(err, c, METADATA, "bad JSON at byte %d: %s", je.position,
                   je.text);
  }
  if (!json_is_object(c->meta))
    return corrupt(err, c, METADATA, "expected a JSON object");
  int64_t format;
  int rc = get_int(c, c->meta, "format", "", 1, &format, err);
  if (rc != EDDY_OK)
    return rc;
  if (format > EDDY_CHK_FORMAT)
    return eddy_seterr(err, EDDY_EUNSUPPORTED,
                       "%s/" METADATA ": format %" PRId64
                       " is newer than this eddy reads (%d)",
                       c->name, format, EDDY_CHK_FORMAT);
  if ((rc = get_str(c, c->meta, "kind", "", &c->kind, err)) != EDDY_OK ||
      (rc = get_str(c, c->meta, "job", "", &c->job, err)) != EDDY_OK ||
      (rc = get_int(c, c->meta, "id", "", 0, &c->id, err)) != EDDY_OK ||
      (rc = get_int(c, c->meta, "time", "", INT64_MIN, &c->time, err)) !=
          EDDY_OK)
    return rc;
  if (strcmp(c->kind, "checkpoint") != 0 && strcmp(c->kind, "savepoint") != 0)
    return corrupt(err, c, METADATA, "kind: unknown kind \"%s\"", c->kind);
  json_t *files = json_object_get(c->meta, "files");
  if (files == NULL)
    return corrupt(err, c, METADATA, "files: missing");
  if (!json_is_array(files))
    return corrupt(err, c, METADATA, "files: expected an array");
  size_t n = json_array_size(files);
  if (n > (size_t)INT_MAX / 2)
    return corrupt(err, c, METADATA, "files: too many");
  c->entries = calloc(n ? n : 1, sizeof *c->entries);
  if (c->entries == NULL)
    return oom(err);
  for (size_t i = 0; i < n; i++) {
    json_t *f = json_array_get(files, i);
    char where[32];
    snprintf(where, sizeof where, "files[%zu].", i);
    if (!json_is_object(f))
      return corrupt(err, c, METADATA, "files[%zu]: expected an object", i);
    eddy_chk_entry *e = &c->entries[i];
    const char *sum;
    int64_t size, raw;
    if ((rc = get_str(c, f, "name", where, &e->name, err)) != EDDY_OK ||
        (rc = get_int(c, f, "size", where, 0, &size, err)) != EDDY_OK ||
        (rc = get_int(c, f, "raw_size", where, 0, &raw, err)) != EDDY_OK ||
        (rc = get_str(c, f, "checksum", where, &sum, err)) != EDDY_OK ||
        (rc = get_str(c, f, "compression", where, &e->compression, err)) !=
            EDDY_OK)
      return rc;
    if (!valid_file_name(e->name))
      return corrupt(err, c, METADATA, "%sname: a bad file name \"%s\"", where,
                     e->name);
    for (size_t k = 0; k < i; k++)
      if (strcmp(c->entries[k].name, e->name) == 0)
        return corrupt(err, c, METADATA, "%sname: \"%s\" is listed twice",
                       where, e->name);
    if (strcmp(e->compression, "zstd") != 0 &&
        strcmp(e->compression, "none") != 0)
      return corrupt(err, c, METADATA, "%scompression: unknown \"%s\"", where,
                     e->compression);
    if (strcmp(e->compression, "none") == 0 && raw != size)
      return corrupt(err, c, METADATA,
                     "%sraw_size: differs from size without compression",
                     where);
    uint64_t v = 0;
    size_t len = strlen(sum);
    for (size_t k = 0; k < len && len == 16; k++) {
      int h = hexval((unsigned char)sum[k]);
      if (h < 0) {
        len = 0;
        break;
      }
      v = v << 4 | (uint64_t)h;
    }
    if (len != 16)
      return corrupt(err, c, METADATA,
                     "%schecksum: expected 16 hex digits, got \"%s\"", where,
                     sum);
    e->size = (uint64_t)size;
    e->raw_size = (uint64_t)raw;
    e->checksum = v;
    c->nentries = (int)i + 1;
  }
  return parse_shared(c, err);
}

/* The file at path: there, of `size` bytes, and (CHECK_ALL) with checksum
 * `sum`. Damage is EDDY_ECORRUPT with what it is in `what` (err is left
 * alone); a failed system call EDDY_EIO in err. */
static int verify_file(const char *path, uint64_t size, uint64_t sum, int level,
                       unsigned char **buf, char *what, size_t whatlen, eddy_err *err)
{
  int rc = EDDY_OK;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  struct stat st;
  if (fd < 0) {
    if (errno != ENOENT)
      return sys_fail(err, path, errno);
    snprintf(what, whatlen, "missing");
    return EDDY_ECORRUPT;
  }
  if (fstat(fd, &st) != 0) {
    rc = sys_fail(err, path, errno);
  } else if (!S_ISREG(st.st_mode)) {
    snprintf(what, whatlen, "not a regular file");
    rc = EDDY_ECORRUPT;
  } else if ((uint64_t)st.st_size != size) {
    snprintf(what, whatlen, "%s (expected %" PRIu64 " bytes, found %lld)",
             (uint64_t)st.st_size < size ? "truncated" : "size mismatch", size,
             (long long)st.st_size);
    rc = EDDY_ECORRUPT;
  } else if (level == CHECK_ALL) {
    if (*buf == NULL && (*buf = malloc(IO_BUF)) == NULL) {
      rc = oom(err);
    } else {
      posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
      XXH3_state_t *xxh = XXH3_createState();
      if (xxh == NULL)
        rc = oom(err);
      else
        XXH3_64bits_reset(xxh);
      uint64_t total = 0;
      size_t got = 1;
      while (rc == EDDY_OK && got > 0) {
        rc = read_full(fd, *buf, IO_BUF, &got, path, err);
        if (rc == EDDY_OK) {
          XXH3_64bits_update(xxh, *buf, got);
          total += got;
        }
      }
      if (rc == EDDY_OK) {
        uint64_t found = XXH3_64bits_digest(xxh);
        if (total != size) {
          snprintf(what, whatlen,
                   "changed while read (expected %" PRIu64 " bytes, read %" PRIu64 ")", size,
                   total);
          rc = EDDY_ECORRUPT;
        } else if (found != sum) {
          snprintf(what, whatlen,
                   "checksum mismatch (expected %016" PRIx64 ", found %016" PRIx64 ")", sum,
                   found);
          rc = EDDY_ECORRUPT;
        }
      }
      if (xxh)
        XXH3_freeState(xxh);
    }
  }
  close(fd);
  return rc;
}

/* The file of e: there, of its size, and (CHECK_ALL) with its checksum. */
static int check_file(const eddy_chk *c, const eddy_chk_entry *e, int level,
                      unsigned char **buf, eddy_err *err)
{
  char *path = join(c->dir, e->name);
  if (path == NULL)
    return oom(err);
  char what[256];
  int rc = verify_file(path, e->size, e->checksum, level, buf, what, sizeof what, err);
  free(path);
  return rc == EDDY_ECORRUPT ? corrupt(err, c, e->name, "%s", what) : rc;
}

/* The same for a shared file c references. */
static int check_shared(const eddy_chk *c, const eddy_chk_shared *e, int level,
                        unsigned char **buf, eddy_err *err)
{
  char *path = join(c->shared_dir, e->name);
  if (path == NULL)
    return oom(err);
  char what[256];
  int rc = verify_file(path, e->size, e->checksum, level, buf, what, sizeof what, err);
  free(path);
  if (rc == EDDY_ECORRUPT)
    return eddy_seterr(err, EDDY_ECORRUPT, "%s: shared file %s: %s", c->name, e->name, what);
  return rc;
}

static int open_chk(const char *path, int level, eddy_chk **out, eddy_err *err)
{
  *out = NULL;
  char *p;
  int rc = local_path(path, &p, err);
  if (rc != EDDY_OK)
    return rc;
  struct stat st;
  if (stat(p, &st) != 0) {
    int e = errno;
    rc = eddy_seterr(err, e == ENOENT ? EDDY_ENOTFOUND : EDDY_EIO, "%s: %s", p,
                     strerror(e));
    free(p);
    return rc;
  }
  eddy_chk *c = calloc(1, sizeof *c);
  if (c == NULL) {
    free(p);
    return oom(err);
  }
  char *meta_path = NULL;
  if (S_ISDIR(st.st_mode)) {
    c->dir = p;
    meta_path = join(p, METADATA);
  } else if (strcmp(base_name(p), METADATA) == 0) {
    meta_path = p;
    const char *bn = base_name(p);
    c->dir = bn == p ? strdup(".") : strndup(p, (size_t)(bn - p - 1));
    if (c->dir != NULL && c->dir[0] == '\0') {
      free(c->dir);
      c->dir = strdup("/");
    }
  } else {
    rc = eddy_seterr(err, EDDY_EINVAL,
                     "%s: neither a checkpoint folder nor its " METADATA, p);
    free(p);
    free(c);
    return rc;
  }
  if (c->dir == NULL || meta_path == NULL) {
    rc = oom(err);
    goto done;
  }
  /* messages name the folder as it is called, even when reached as "." */
  char *real = realpath(c->dir, NULL);
  c->name = strdup(base_name(real && strcmp(real, "/") != 0 ? real : c->dir));
  free(real);
  if (c->name == NULL) {
    rc = oom(err);
    goto done;
  }
  if ((rc = read_metadata(c, meta_path, err)) != EDDY_OK ||
      (rc = parse_metadata(c, err)) != EDDY_OK)
    goto done;
  if (level >= CHECK_SIZES) {
    unsigned char *buf = NULL;
    for (int i = 0; i < c->nentries && rc == EDDY_OK; i++)
      rc = check_file(c, &c->entries[i], level, &buf, err);
    for (int i = 0; i < c->nshared && rc == EDDY_OK; i++)
      rc = check_shared(c, &c->shared[i], level, &buf, err);
    free(buf);
  }
done:
  free(meta_path);
  if (rc != EDDY_OK) {
    eddy_chk_close(c);
    return rc;
  }
  *out = c;
  return EDDY_OK;
}

int eddy_chk_open(const char *path, eddy_chk **out, eddy_err *err)
{
  return open_chk(path, CHECK_ALL, out, err);
}

void eddy_chk_close(eddy_chk *c)
{
  if (c == NULL)
    return;
  json_decref(c->meta);
  free(c->entries);
  free(c->shared);
  free(c->shared_dir);
  free(c->text);
  free(c->name);
  free(c->dir);
  free(c);
}

int64_t eddy_chk_id(const eddy_chk *c) { return c->id; }
const char *eddy_chk_kind(const eddy_chk *c) { return c->kind; }
int64_t eddy_chk_time(const eddy_chk *c) { return c->time; }
const char *eddy_chk_job(const eddy_chk *c) { return c->job; }
const char *eddy_chk_path(const eddy_chk *c) { return c->dir; }
const char *eddy_chk_name(const eddy_chk *c) { return c->name; }
json_t *eddy_chk_metadata(const eddy_chk *c) { return c->meta; }

const char *eddy_chk_metadata_text(const eddy_chk *c, size_t *len)
{
  if (len)
    *len = c->text_len;
  return c->text;
}

int eddy_chk_entry_count(const eddy_chk *c) { return c->nentries; }

const eddy_chk_entry *eddy_chk_entry_at(const eddy_chk *c, int i)
{
  return i >= 0 && i < c->nentries ? &c->entries[i] : NULL;
}

const eddy_chk_entry *eddy_chk_entry_find(const eddy_chk *c, const char *name)
{
  for (int i = 0; i < c->nentries; i++)
    if (strcmp(c->entries[i].name, name) == 0)
      return &c->entries[i];
  return NULL;
}

int eddy_chk_shared_count(const eddy_chk *c) { return c->nshared; }

const eddy_chk_shared *eddy_chk_shared_at(const eddy_chk *c, int i)
{
  return i >= 0 && i < c->nshared ? &c->shared[i] : NULL;
}

const eddy_chk_shared *eddy_chk_shared_find(const eddy_chk *c, const char *name)
{
  for (int i = 0; i < c->nshared; i++)
    if (strcmp(c->shared[i].name, name) == 0)
      return &c->shared[i];
  return NULL;
}

/* Reading ahead (eddy_chk_reader_ahead): a thread fills the blocks of a
 * ring, in order, with what read_now gives; the caller empties them in the
 * same order. Four blocks of 256 KiB keep the thread a megabyte ahead,
 * while what it wrote is still in the cache the two cores share. */
#define AHEAD_BLOCK ((size_t)256 << 10)
#define AHEAD_BLOCKS 4

typedef struct ahead {
  pthread_t thread;
  pthread_mutex_t lock;
  pthread_cond_t cond; /* a block was filled or emptied, or stop was set */
  unsigned char *block[AHEAD_BLOCKS];
  size_t len[AHEAD_BLOCKS];
  /* under lock */
  uint64_t filled, emptied; /* blocks, since the start */
  int stop;                 /* the reader is being closed */
  int end;                  /* the thread is done: after the blocks filled,
                               the reader gives rc */
  /* the thread's until end is set, then the caller's */
  int rc;
  eddy_err err;
  /* the caller's */
  size_t pos; /* in the block being emptied */
  int lent;   /* that block is lent (next): emptied at the next call */
} ahead;

struct eddy_chk_reader {
  char *label; /* "chk-7/op-1.zst" */
  char *path;
  int fd;
  ZSTD_DCtx *dctx; /* NULL: stored as is */
  unsigned char *in;
  size_t in_len, in_pos, in_cap;
  int eof;     /* read(2) said end of file */
  int done;    /* the end was reached and checked */
  size_t zret; /* zstd's last hint: 0 once a frame is complete */
  XXH3_state_t *xxh;
  uint64_t size, raw; /* read so far: on disk, uncompressed */
  uint64_t want_size, want_raw, want_sum;
  ahead *ahead; /* NULL: reads are made on the caller's thread */
  unsigned char *lend; /* what next lends when not reading ahead */
};

int eddy_chk_reader_open(eddy_chk *c, const char *name, eddy_chk_reader **out,
                         eddy_err *err)
{
  *out = NULL;
  if (c == NULL || name == NULL)
    return eddy_seterr(err, EDDY_EINVAL, "no checkpoint or file name");
  const eddy_chk_entry *e = eddy_chk_entry_find(c, name);
  if (e == NULL)
    return eddy_seterr(err, EDDY_ENOTFOUND,
                       "%s/%s: no such file in the checkpoint", c->name, name);
  eddy_chk_reader *r = calloc(1, sizeof *r);
  if (r == NULL)
    return oom(err);
  r->fd = -1;
  r->zret = 1; /* no frame seen yet */
  r->want_size = e->size;
  r->want_raw = e->raw_size;
  r->want_sum = e->checksum;
  r->in_cap = IO_BUF;
  size_t ll = strlen(c->name) + strlen(name) + 2;
  if ((r->label = malloc(ll)) == NULL ||
      (r->path = join(c->dir, name)) == NULL ||
      (r->in = malloc(r->in_cap)) == NULL ||
      (r->xxh = XXH3_createState()) == NULL ||
      (strcmp(e->compression, "zstd") == 0 &&
       (r->dctx = ZSTD_createDCtx()) == NULL)) {
    eddy_chk_reader_close(r);
    return oom(err);
  }
  snprintf(r->label, ll, "%s/%s", c->name, name);
  XXH3_64bits_reset(r->xxh);
  r->fd = open(r->path, O_RDONLY | O_CLOEXEC);
  if (r->fd < 0) {
    int rc = errno == ENOENT
                 ? eddy_seterr(err, EDDY_ECORRUPT, "%s: missing", r->label)
                 : sys_fail(err, r->path, errno);
    eddy_chk_reader_close(r);
    return rc;
  }
  posix_fadvise(r->fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  *out = r;
  return EDDY_OK;
}

static int refill(eddy_chk_reader *r, eddy_err *err)
{
  size_t got;
  int rc = read_full(r->fd, r->in, r->in_cap, &got, r->path, err);
  if (rc != EDDY_OK)
    return rc;
  XXH3_64bits_update(r->xxh, r->in, got);
  r->size += got;
  r->in_len = got;
  r->in_pos = 0;
  if (got < r->in_cap)
    r->eof = 1;
  return EDDY_OK;
}

/* At the end: what was read must be what _metadata promised. */
static int finish(eddy_chk_reader *r, eddy_err *err)
{
  uint64_t sum = XXH3_64bits_digest(r->xxh);
  if (r->size != r->want_size)
    return eddy_seterr(err, EDDY_ECORRUPT,
                       "%s: %s (expected %" PRIu64 " bytes, found %" PRIu64 ")",
                       r->label,
                       r->size < r->want_size ? "truncated" : "size mismatch",
                       r->want_size, r->size);
  if (sum != r->want_sum)
    return eddy_seterr(err, EDDY_ECORRUPT,
                       "%s: checksum mismatch (expected %016" PRIx64
                       ", found %016" PRIx64 ")",
                       r->label, r->want_sum, sum);
  if (r->dctx != NULL && r->zret != 0)
    return eddy_seterr(err, EDDY_ECORRUPT, "%s: truncated zstd frame",
                       r->label);
  if (r->raw != r->want_raw)
    return eddy_seterr(err, EDDY_ECORRUPT,
                       "%s: uncompressed size mismatch (expected %" PRIu64
                       " bytes, found %" PRIu64 ")",
                       r->label, r->want_raw, r->raw);
  r->done = 1;
  return EDDY_OK;
}

/* A read, made on the thread that calls it. */
static int read_now(eddy_chk_reader *r, void *buf, size_t cap, size_t *got,
                    eddy_err *err)
{
  *got = 0;
  if (r->done)
    return EDDY_OK;
  int rc;
  if (r->dctx == NULL) {
    if (r->in_pos == r->in_len) {
      if (r->eof)
        return finish(r, err);
      if (cap >= r->in_cap) {
        /* large reads skip the buffer */
        size_t n;
        if ((rc = read_full(r->fd, buf, cap, &n, r->path, err)) != EDDY_OK)
          return rc;
        XXH3_64bits_update(r->xxh, buf, n);
        r->size += n;
        r->raw += n;
        if (n < cap)
          r->eof = 1;
        if (n == 0)
          return finish(r, err);
        *got = n;
        return EDDY_OK;
      }
      if ((rc = refill(r, err)) != EDDY_OK)
        return rc;
      if (r->in_len == 0)
        return finish(r, err);
    }
    size_t n = r->in_len - r->in_pos < cap ? r->in_len - r->in_pos : cap;
    memcpy(buf, r->in + r->in_pos, n);
    r->in_pos += n;
    r->raw += n;
    *got = n;
    return EDDY_OK;
  }
  for (;;) {
    if (r->in_pos == r->in_len && !r->eof && (rc = refill(r, err)) != EDDY_OK)
      return rc;
    /* zstd's 0 means a frame is decoded and flushed: with no input left,
     * that is the end (asking again would give the hint for a next frame) */
    if (r->in_pos == r->in_len && r->eof && r->zret == 0)
      return finish(r, err);
    ZSTD_inBuffer in = {r->in, r->in_len, r->in_pos};
    ZSTD_outBuffer out = {buf, cap, 0};
    size_t z = ZSTD_decompressStream(r->dctx, &out, &in);
    if (ZSTD_isError(z))
      return eddy_seterr(err, EDDY_ECORRUPT, "%s: zstd: %s", r->label,
                         ZSTD_getErrorName(z));
    r->in_pos = in.pos;
    r->zret = z;
    r->raw += out.pos;
    if (out.pos > 0) {
      *got = out.pos;
      return EDDY_OK;
    }
    /* nothing came out and nothing is left to read: a cut frame */
    if (r->in_pos == r->in_len && r->eof)
      return finish(r, err);
  }
}

/* The thread of a reader that reads ahead. It stops at the end of the
 * file or at the first error, which the caller gets after the bytes
 * before it, or when the reader is closed. */
static void *ahead_main(void *p)
{
  eddy_chk_reader *r = p;
  ahead *a = r->ahead;
  for (;;) {
    pthread_mutex_lock(&a->lock);
    while (!a->stop && a->filled - a->emptied == AHEAD_BLOCKS)
      pthread_cond_wait(&a->cond, &a->lock);
    int stop = a->stop;
    size_t i = (size_t)(a->filled % AHEAD_BLOCKS);
    pthread_mutex_unlock(&a->lock);
    if (stop)
      return NULL;
    /* the slot is the thread's until it is counted as filled */
    size_t n = 0, got = 0;
    int rc;
    do {
      rc = read_now(r, a->block[i] + n, AHEAD_BLOCK - n, &got, &a->err);
      n += got;
    } while (rc == EDDY_OK && got > 0 && n < AHEAD_BLOCK);
    int end = rc != EDDY_OK || got == 0;
    pthread_mutex_lock(&a->lock);
    a->len[i] = n;
    a->filled += n > 0;
    a->rc = rc;
    a->end = end;
    pthread_cond_broadcast(&a->cond);
    pthread_mutex_unlock(&a->lock);
    if (end)
      return NULL;
  }
}

int eddy_chk_reader_ahead(eddy_chk_reader *r, eddy_err *err)
{
  if (r == NULL)
    return eddy_seterr(err, EDDY_EINVAL, "no reader");
  if (r->ahead != NULL || r->done)
    return EDDY_OK;
  ahead *a = calloc(1, sizeof *a);
  if (a == NULL)
    return oom(err);
  for (int i = 0; i < AHEAD_BLOCKS; i++)
    if ((a->block[i] = malloc(AHEAD_BLOCK)) == NULL) {
      while (i-- > 0)
        free(a->block[i]);
      free(a);
      return oom(err);
    }
  pthread_mutex_init(&a->lock, NULL);
  pthread_cond_init(&a->cond, NULL);
  r->ahead = a;
  /* signals are for the caller's thread (Ctrl-C in the REPL) */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int e = pthread_create(&a->thread, NULL, ahead_main, r);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (e == 0)
    return EDDY_OK;
  r->ahead = NULL;
  pthread_cond_destroy(&a->cond);
  pthread_mutex_destroy(&a->lock);
  for (int i = 0; i < AHEAD_BLOCKS; i++)
    free(a->block[i]);
  free(a);
  return eddy_seterr(err, EDDY_EIO, "%s: cannot start a thread to read ahead: %s", r->label,
                     strerror(e));
}

/* The next bytes of the blocks the thread filled, at most cap of them:
 * copied into buf, or (buf NULL) lent until the next call. */
static int read_ahead(eddy_chk_reader *r, void *buf, size_t cap, const void **p,
                      size_t *got, eddy_err *err)
{
  ahead *a = r->ahead;
  pthread_mutex_lock(&a->lock);
  if (a->lent) {
    a->lent = 0;
    a->pos = 0;
    a->emptied++;
    pthread_cond_broadcast(&a->cond);
  }
  while (a->filled == a->emptied && !a->end)
    pthread_cond_wait(&a->cond, &a->lock);
  if (a->filled == a->emptied) {
    pthread_mutex_unlock(&a->lock);
    if (a->rc != EDDY_OK && err != NULL)
      eddy_err_copy(err, &a->err);
    return a->rc; /* the end (again), or the thread's error (again) */
  }
  size_t i = (size_t)(a->emptied % AHEAD_BLOCKS), len = a->len[i];
  pthread_mutex_unlock(&a->lock);
  size_t n = len - a->pos < cap ? len - a->pos : cap;
  if (buf != NULL)
    memcpy(buf, a->block[i] + a->pos, n);
  else
    *p = a->block[i] + a->pos;
  a->pos += n;
  *got = n;
  if (a->pos == len) {
    if (buf == NULL) {
      a->lent = 1;
    } else {
      a->pos = 0;
      pthread_mutex_lock(&a->lock);
      a->emptied++;
      pthread_cond_broadcast(&a->cond);
      pthread_mutex_unlock(&a->lock);
    }
  }
  return EDDY_OK;
}

int eddy_chk_reader_read(eddy_chk_reader *r, void *buf, size_t cap, size_t *got,
                         eddy_err *err)
{
  *got = 0;
  if (cap == 0)
    return eddy_seterr(err, EDDY_EINVAL, "%s: a read into 0 bytes", r->label);
  if (buf == NULL)
    return eddy_seterr(err, EDDY_EINVAL, "%s: a read into no buffer", r->label);
  return r->ahead != NULL ? read_ahead(r, buf, cap, NULL, got, err)
                          : read_now(r, buf, cap, got, err);
}

int eddy_chk_reader_next(eddy_chk_reader *r, const void **p, size_t *n,
                         eddy_err *err)
{
  if (p == NULL || n == NULL)
    return eddy_seterr(err, EDDY_EINVAL, "%s: no result pointers", r->label);
  *p = NULL;
  *n = 0;
  if (r->ahead != NULL)
    return read_ahead(r, NULL, SIZE_MAX, p, n, err);
  if (r->lend == NULL && (r->lend = malloc(AHEAD_BLOCK)) == NULL)
    return oom(err);
  int rc = read_now(r, r->lend, AHEAD_BLOCK, n, err);
  if (rc == EDDY_OK && *n > 0)
    *p = r->lend;
  return rc;
}

void eddy_chk_reader_close(eddy_chk_reader *r)
{
  if (r == NULL)
    return;
  ahead *a = r->ahead;
  if (a != NULL) {
    pthread_mutex_lock(&a->lock);
    a->stop = 1;
    pthread_cond_broadcast(&a->cond);
    pthread_mutex_unlock(&a->lock);
    pthread_join(a->thread, NULL);
    pthread_cond_destroy(&a->cond);
    pthread_mutex_destroy(&a->lock);
    for (int i = 0; i < AHEAD_BLOCKS; i++)
      free(a->block[i]);
    free(a);
  }
  free(r->lend);
  if (r->fd >= 0)
    close(r->fd);
  ZSTD_freeDCtx(r->dctx);
  if (r->xxh)
    XXH3_freeState(r->xxh);
  free(r->in);
  free(r->path);
  free(r->label);
  free(r);
}

/* ---- putting files of a checkpoint elsewhere ---- */

/* A checkpoint file, decompressed, into the new file at `to`. */
static int extract_file(eddy_chk *c, const char *name, const char *to, eddy_err *err)
{
  eddy_chk_reader *r;
  int rc = eddy_chk_reader_open(c, name, &r, err);
  if (rc != EDDY_OK)
    return rc;
  int fd = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
  if (fd < 0) {
    rc = sys_fail(err, to, errno);
    eddy_chk_reader_close(r);
    return rc;
  }
  const void *p;
  size_t n;
  while ((rc = eddy_chk_reader_next(r, &p, &n, err)) == EDDY_OK && n > 0)
    rc = write_all(fd, p, n, to, err);
  if (close(fd) != 0 && rc == EDDY_OK)
    rc = sys_fail(err, to, errno);
  eddy_chk_reader_close(r);
  if (rc != EDDY_OK)
    unlink(to);
  return rc;
}

/* A shared file at `to`: a hard link, else a copy checked as it is made. */
static int extract_shared(eddy_chk *c, const eddy_chk_shared *e, const char *to, eddy_err *err)
{
  char *from = join(c->shared_dir, e->name);
  if (from == NULL)
    return oom(err);
  int rc = EDDY_OK;
  if (link(from, to) != 0) {
    int le = errno;
    if (le == EEXIST || le == ENOENT) {
      rc = le == ENOENT && access(from, F_OK) != 0
               ? eddy_seterr(err, EDDY_ECORRUPT, "%s: shared file %s: missing", c->name, e->name)
               : sys_fail(err, to, le);
    } else {
      /* another file system, or one without hard links: a copy */
      int fd = open(from, O_RDONLY | O_CLOEXEC);
      uint64_t size = 0, sum = 0;
      if (fd < 0)
        rc = errno == ENOENT ? eddy_seterr(err, EDDY_ECORRUPT, "%s: shared file %s: missing",
                                           c->name, e->name)
                             : sys_fail(err, from, errno);
      else
        rc = copy_into(fd, from, to, &size, &sum, err);
      if (fd >= 0)
        close(fd);
      if (rc == EDDY_OK && (size != e->size || sum != e->checksum)) {
        unlink(to);
        rc = eddy_seterr(err, EDDY_ECORRUPT,
                         "%s: shared file %s: %s (expected %" PRIu64 " bytes and checksum "
                         "%016" PRIx64 ", found %" PRIu64 " and %016" PRIx64 ")",
                         c->name, e->name, size != e->size ? "size mismatch" : "checksum mismatch",
                         e->size, e->checksum, size, sum);
      }
    }
  }
  free(from);
  return rc;
}

int eddy_chk_extract(eddy_chk *c, const char *name, int shared, const char *to, eddy_err *err)
{
  if (c == NULL || name == NULL || to == NULL)
    return eddy_seterr(err, EDDY_EINVAL, "no checkpoint, file name or target");
  if (!shared)
    return extract_file(c, name, to, err);
  const eddy_chk_shared *e = eddy_chk_shared_find(c, name);
  if (e == NULL)
    return eddy_seterr(err, EDDY_ENOTFOUND, "%s: references no shared file %s", c->name, name);
  return extract_shared(c, e, to, err);
}

int eddy_chk_extract_files(eddy_chk *c, json_t *files, const char *into, eddy_err *err)
{
  if (c == NULL || into == NULL)
    return eddy_seterr(err, EDDY_EINVAL, "no checkpoint or target folder");
  if (!json_is_array(files))
    return eddy_seterr(err, EDDY_ECORRUPT, "%s/" METADATA ": a native part without its files",
                       c->name);
  if (mkdir(into, 0777) != 0)
    return sys_fail(err, into, errno);
  int rc = EDDY_OK;
  for (size_t i = 0; i < json_array_size(files) && rc == EDDY_OK; i++) {
    json_t *f = json_array_get(files, i);
    const char *name = json_string_value(json_object_get(f, "name"));
    const char *shared = json_string_value(json_object_get(f, "shared"));
    const char *file = json_string_value(json_object_get(f, "file"));
    if (name == NULL || !valid_shared_name(name) || (shared == NULL) == (file == NULL)) {
      rc = eddy_seterr(err, EDDY_ECORRUPT,
                       "%s/" METADATA ": native file %zu: expected a name and either a shared "
                       "file or a file of the checkpoint",
                       c->name, i);
      break;
    }
    char *to = join(into, name);
    if (to == NULL) {
      rc = oom(err);
      break;
    }
    rc = eddy_chk_extract(c, shared ? shared : file, shared != NULL, to, err);
    if (rc == EDDY_ENOTFOUND)
      rc = eddy_seterr(err, EDDY_ECORRUPT, "%s/" METADATA ": native file %s names %s, which "
                       "the checkpoint does not list", c->name, name, shared ? shared : file);
    free(to);
  }
  if (rc != EDDY_OK) {
    eddy_err ignored;
    remove_tree(into, &ignored);
  }
  return rc;
}

/* ------------------------------------------------------------------ */
/* finding, retaining, listing                                         */

typedef struct chk_ref {
  int64_t id;
  char *name;
} chk_ref;

static int ref_cmp(const void *a, const void *b)
{
  int64_t x = ((const chk_ref *)a)->id, y = ((const chk_ref *)b)->id;
  return x < y ? -1 : x > y;
}

/* The completed (by name) chk-<n> folders of a job folder, by id. */
static int completed_refs(const char *dir, chk_ref **out, int *count,
                          eddy_err *err)
{
  *out = NULL;
  *count = 0;
  char **names;
  int n;
  int rc = list_dirs(dir, &names, &n, err);
  if (rc != EDDY_OK)
    return rc;
  chk_ref *v = calloc(n ? (size_t)n : 1, sizeof *v);
  if (v == NULL) {
    free_names(names, n);
    return oom(err);
  }
  int k = 0;
  for (int i = 0; i < n; i++) {
    int64_t id = chk_id(names[i], NULL);
    if (id < 0) {
      free(names[i]);
      continue;
    }
    v[k].id = id;
    v[k].name = names[i];
    k++;
  }
  free(names);
  qsort(v, (size_t)k, sizeof *v, ref_cmp);
  *out = v;
  *count = k;
  return EDDY_OK;
}

static void free_refs(chk_ref *v, int n)
{
  for (int i = 0; i < n; i++)
    free(v[i].name);
  free(v);
}

/* The shared files the completed checkpoints of job folder dir list, into
 * refs (sorted). *unsure when a _metadata could not be read for another
 * reason than damage (an I/O error, a newer format): its references are
 * unknown, so nothing should be deleted. A damaged one can never be
 * restored, so what it referenced does not count. */
static int referenced_shared(const char *dir, name_set *refs, int *unsure, eddy_err *err)
{
  *unsure = 0;
  chk_ref *v;
  int n;
  int rc = completed_refs(dir, &v, &n, err);
  if (rc == EDDY_ENOTFOUND)
    return EDDY_OK;
  for (int i = 0; i < n && rc == EDDY_OK; i++) {
    char *p = join(dir, v[i].name);
    if (p == NULL) {
      rc = oom(err);
      break;
    }
    eddy_chk *c;
    eddy_err why;
    int orc = open_chk(p, CHECK_METADATA, &c, &why);
    free(p);
    if (orc == EDDY_ENOMEM)
      rc = oom(err);
    else if (orc == EDDY_ECORRUPT)
      continue;
    else if (orc != EDDY_OK)
      *unsure = 1;
    for (int k = 0; orc == EDDY_OK && k < c->nshared && rc == EDDY_OK; k++)
      if (set_add(refs, c->shared[k].name) != EDDY_OK)
        rc = oom(err);
    if (orc == EDDY_OK)
      eddy_chk_close(c);
  }
  free_refs(v, n);
  set_sort(refs);
  return rc;
}

static int kept(const char *const *keep, int nkeep, const char *name)
{
  for (int i = 0; i < nkeep; i++)
    if (strcmp(keep[i], name) == 0)
      return 1;
  return 0;
}

/* Deletes the shared files of job folder dir that no completed checkpoint
 * lists and keep does not name: among the names in cand, or (cand NULL)
 * among every file in shared/, uploads cut short by a crash included. */
static int gc_shared(const char *dir, const name_set *cand, const char *const *keep, int nkeep,
                     eddy_err *err)
{
  char *shared = join(dir, SHARED);
  if (shared == NULL)
    return oom(err);
  name_set refs = {0};
  int unsure = 0, rc = EDDY_OK;
  struct stat st;
  if ((cand != NULL && cand->n == 0) || stat(shared, &st) != 0)
    goto done; /* nothing to look at */
  if ((rc = referenced_shared(dir, &refs, &unsure, err)) != EDDY_OK || unsure)
    goto done;
  name_set all = {0};
  if (cand == NULL) {
    DIR *d = opendir(shared);
    if (d == NULL) {
      rc = sys_fail(err, shared, errno);
      goto done;
    }
    struct dirent *de;
    while (rc == EDDY_OK && (errno = 0, de = readdir(d)) != NULL)
      if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0 &&
          set_add(&all, de->d_name) != EDDY_OK)
        rc = oom(err);
    if (rc == EDDY_OK && errno != 0)
      rc = sys_fail(err, shared, errno);
    closedir(d);
    cand = &all;
  }
  for (int i = 0; i < cand->n && rc == EDDY_OK; i++) {
    const char *name = cand->v[i];
    if (set_has(&refs, name) || kept(keep, nkeep, name) || strchr(name, '/') != NULL)
      continue;
    char *p = join(shared, name);
    if (p == NULL) {
      rc = oom(err);
      break;
    }
    if (unlinkat(AT_FDCWD, p, 0) != 0 && errno != ENOENT)
      rc = sys_fail(err, p, errno);
    free(p);
  }
  set_free(&all);
done:
  set_free(&refs);
  free(shared);
  return rc;
}

int eddy_store_latest(const char *job_dir, eddy_chk **out,
                      eddy_chk_damaged_fn damaged, void *ud, eddy_err *err)
{
  *out = NULL;
  char *dir;
  int rc = local_path(job_dir, &dir, err);
  if (rc != EDDY_OK)
    return rc;
  chk_ref *refs;
  int n;
  if ((rc = completed_refs(dir, &refs, &n, err)) != EDDY_OK) {
    free(dir);
    return rc;
  }
  int bad = 0;
  rc = EDDY_ENOTFOUND;
  for (int i = n - 1; i >= 0; i--) {
    char *p = join(dir, refs[i].name);
    if (p == NULL) {
      rc = oom(err);
      break;
    }
    eddy_err why;
    eddy_err_clear(&why);
    int orc = eddy_chk_open(p, out, &why);
    free(p);
    if (orc == EDDY_OK) {
      rc = EDDY_OK;
      break;
    }
    if (orc == EDDY_ENOMEM) {
      rc = pass_err(err, &why);
      break;
    }
    bad++;
    if (damaged)
      damaged(ud, refs[i].name, why.msg, i > 0 ? refs[i - 1].name : NULL);
  }
  if (rc == EDDY_ENOTFOUND) {
    if (bad > 0)
      eddy_seterr(err, rc, "%s: no usable checkpoint (%d damaged)", dir, bad);
    else
      eddy_seterr(err, rc, "%s: no completed checkpoint", dir);
  }
  free_refs(refs, n);
  free(dir);
  return rc;
}

int eddy_store_retain(eddy_store *s, int retained, int *removed, eddy_err *err)
{
  return eddy_store_retain_keep(s, retained, NULL, 0, removed, err);
}

int eddy_store_retain_keep(eddy_store *s, int retained, const char *const *keep, int nkeep,
                           int *removed, eddy_err *err)
{
  if (removed)
    *removed = 0;
  if (s == NULL || retained < 1)
    return eddy_seterr(err, EDDY_EINVAL,
                       "checkpoints to retain must be at least 1, not %d",
                       retained);
  chk_ref *refs;
  int n;
  int rc = completed_refs(s->path, &refs, &n, err);
  if (rc != EDDY_OK)
    return rc;
  /* kind of each: 0 checkpoint, 1 savepoint, -1 unreadable _metadata;
   * and each readable one, for the shared files it lists */
  int *kind = calloc(n ? (size_t)n : 1, sizeof *kind);
  eddy_chk **opened = calloc(n ? (size_t)n : 1, sizeof *opened);
  if (kind == NULL || opened == NULL) {
    free(kind);
    free(opened);
    free_refs(refs, n);
    return oom(err);
  }
  int latest = -1, latest_chk = -1, count = 0;
  for (int i = 0; i < n && rc == EDDY_OK; i++) {
    char *p = join(s->path, refs[i].name);
    if (p == NULL) {
      rc = oom(err);
      break;
    }
    eddy_chk *c;
    eddy_err ignored;
    int orc = open_chk(p, CHECK_METADATA, &c, &ignored);
    free(p);
    if (orc == EDDY_ENOMEM) {
      rc = oom(err);
      break;
    }
    if (orc != EDDY_OK) {
      kind[i] = -1;
      continue;
    }
    kind[i] = strcmp(c->kind, "savepoint") == 0;
    opened[i] = c;
    latest = i;
    if (kind[i] == 0)
      latest_chk = i;
    count++;
  }
  /* Flink's CheckpointSubsumeHelper, oldest first: never the latest, nor
   * the latest checkpoint (a later incremental one may build on it); a
   * savepoint leaves the count but keeps its files. */
  int gone = 0;
  name_set cand = {0};
  for (int i = 0; i < n && rc == EDDY_OK; i++) {
    int del = 0;
    if (kind[i] < 0)
      del = i < latest;
    else if (count <= retained || i == latest)
      continue;
    else if (kind[i] == 1)
      count--;
    else if (i != latest_chk) {
      del = 1;
      count--;
    }
    if (!del)
      continue;
    char *p = join(s->path, refs[i].name);
    if (p == NULL) {
      rc = oom(err);
      break;
    }
    rc = discard_folder(p, err);
    free(p);
    if (rc == EDDY_OK)
      gone++;
    for (int k = 0; rc == EDDY_OK && opened[i] != NULL && k < opened[i]->nshared; k++)
      if (set_add(&cand, opened[i]->shared[k].name) != EDDY_OK)
        rc = oom(err);
  }
  /* what only the deleted checkpoints referenced */
  if (rc == EDDY_OK && cand.n > 0)
    rc = gc_shared(s->path, &cand, keep, nkeep, err);
  set_free(&cand);
  for (int i = 0; i < n; i++)
    eddy_chk_close(opened[i]);
  free(opened);
  free(kind);
  free_refs(refs, n);
  if (removed)
    *removed = gone;
  return rc;
}

int eddy_store_discard(const char *job_dir, eddy_err *err)
{
  char *dir;
  int rc = local_path(job_dir, &dir, err);
  if (rc != EDDY_OK)
    return rc;
  char **names;
  int n;
  eddy_err scratch;
  if ((rc = list_dirs(dir, &names, &n, &scratch)) != EDDY_OK) {
    if (rc == EDDY_ENOTFOUND)
      rc = EDDY_OK;
    else
      pass_err(err, &scratch);
    free(dir);
    return rc;
  }
  for (int i = 0; i < n && rc == EDDY_OK; i++) {
    int leftover =
        chk_id(names[i], INPROGRESS) >= 0 || chk_id(names[i], DISCARD) >= 0;
    if (!leftover && chk_id(names[i], NULL) < 0)
      continue;
    char *p = join(dir, names[i]);
    if (p == NULL) {
      rc = oom(err);
      break;
    }
    if (leftover) {
      rc = remove_tree(p, err);
    } else {
      eddy_chk *c;
      int orc = open_chk(p, CHECK_METADATA, &c, &scratch);
      if (orc == EDDY_ENOMEM)
        rc = pass_err(err, &scratch);
      else if (orc != EDDY_OK || strcmp(c->kind, "savepoint") != 0)
        rc = discard_folder(p, err);
      eddy_chk_close(c);
    }
    free(p);
  }
  free_names(names, n);
  if (rc == EDDY_OK)
    rc = gc_shared(dir, NULL, NULL, 0, err);
  if (rc == EDDY_OK) {
    /* what is not empty stays: a savepoint, or files that are not ours */
    char *shared = join(dir, SHARED);
    if (shared == NULL)
      rc = oom(err);
    else if (rmdir(shared) != 0 && errno != ENOENT && errno != ENOTEMPTY &&
             errno != EEXIST)
      rc = sys_fail(err, shared, errno);
    free(shared);
  }
  if (rc == EDDY_OK && rmdir(dir) != 0 && errno != ENOENT &&
      errno != ENOTEMPTY && errno != EEXIST)
    rc = sys_fail(err, dir, errno);
  free(dir);
  return rc;
}

int eddy_chk_dispose(const char *path, eddy_err *err)
{
  eddy_chk *c;
  int rc = open_chk(path, CHECK_METADATA, &c, err);
  if (rc != EDDY_OK)
    return rc;
  /* the shared files it listed, which may now be nobody's */
  name_set cand = {0};
  for (int i = 0; i < c->nshared && rc == EDDY_OK; i++)
    if (set_add(&cand, c->shared[i].name) != EDDY_OK)
      rc = oom(err);
  char *job_dir = NULL;
  if (rc == EDDY_OK && cand.n > 0) {
    char *slash = strrchr(c->shared_dir, '/');
    if ((job_dir = strndup(c->shared_dir, slash ? (size_t)(slash - c->shared_dir) : 0)) == NULL)
      rc = oom(err);
  }
  if (rc == EDDY_OK)
    rc = discard_folder(c->dir, err);
  if (rc == EDDY_OK && job_dir != NULL)
    rc = gc_shared(job_dir[0] ? job_dir : "/", &cand, NULL, 0, err);
  free(job_dir);
  set_free(&cand);
  eddy_chk_close(c);
  return rc;
}

const char *eddy_chk_state_name(eddy_chk_state st)
{
  switch (st) {
  case EDDY_CHK_COMPLETED: return "completed";
  case EDDY_CHK_IN_PROGRESS: return "in progress";
  case EDDY_CHK_DAMAGED: return "damaged";
  }
  return "unknown";
}

/* Bytes and number of the files in a folder (not _metadata, not below). */
static void folder_usage(const char *dir, uint64_t *bytes, int *files,
                         int64_t *mtime)
{
  *bytes = 0;
  *files = 0;
  struct stat st;
  if (stat(dir, &st) == 0)
    *mtime = (int64_t)st.st_mtim.tv_sec * 1000 + st.st_mtim.tv_nsec / 1000000;
  DIR *d = opendir(dir);
  if (d == NULL)
    return;
  struct dirent *de;
  while ((de = readdir(d)) != NULL) {
    if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 ||
        !S_ISREG(st.st_mode))
      continue;
    *bytes += (uint64_t)st.st_size;
    if (strcmp(de->d_name, METADATA) != 0)
      (*files)++;
  }
  closedir(d);
}

typedef struct lister {
  int verify;
  int (*visit)(void *ud, const eddy_chk_info *info);
  void *ud;
} lister;

/* Describes parent/name (job: what to show when _metadata does not say)
 * and hands it to the visitor. */
static int visit_one(const lister *ls, const char *parent, const char *name,
                     const char *job, eddy_err *err)
{
  char *path = parent ? join(parent, name) : strdup(name);
  if (path == NULL)
    return oom(err);
  eddy_chk_info info;
  memset(&info, 0, sizeof info);
  info.path = path;
  info.name = base_name(path);
  info.job = job;
  info.id = -1;
  int is_sp = strncmp(info.name, "savepoint-", 10) == 0;
  info.kind = is_sp ? "savepoint" : "checkpoint";
  int64_t mtime = 0;
  folder_usage(path, &info.size, &info.files, &mtime);
  info.time = mtime;
  eddy_chk *c = NULL;
  eddy_err why;
  eddy_err_clear(&why);
  int rc = EDDY_OK;
  if (ends_with(info.name, INPROGRESS)) {
    info.state = EDDY_CHK_IN_PROGRESS;
    info.id = chk_id(info.name, INPROGRESS);
  } else {
    int orc = open_chk(path, ls->verify ? CHECK_ALL : CHECK_SIZES, &c, &why);
    if (orc == EDDY_ENOMEM) {
      free(path);
      return pass_err(err, &why);
    }
    if (orc == EDDY_OK) {
      info.state = EDDY_CHK_COMPLETED;
      info.job = c->job;
      info.id = c->id;
      info.kind = c->kind;
      info.time = c->time;
      info.files = c->nentries;
      for (int i = 0; i < c->nshared; i++)
        info.shared += c->shared[i].size;
      info.size += info.shared;
    } else {
      info.state = EDDY_CHK_DAMAGED;
      info.problem = why.msg;
      info.id = chk_id(info.name, NULL);
    }
  }
  int v = ls->visit(ls->ud, &info);
  if (v != 0)
    rc = v;
  eddy_chk_close(c);
  free(path);
  return rc;
}

static int name_cmp(const void *a, const void *b)
{
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static int is_chk_folder(const char *name)
{
  return chk_id(name, NULL) >= 0 || chk_id(name, INPROGRESS) >= 0;
}

/* The chk-<n> and chk-<n>.inprogress folders of one job folder, by id
 * (a completed one before its in-progress namesake, which cannot both be
 * there for long). */
static int visit_job(const lister *ls, const char *dir, const char *job,
                     char **names, int n, eddy_err *err)
{
  chk_ref *v = calloc(n ? (size_t)n : 1, sizeof *v);
  if (v == NULL)
    return oom(err);
  int k = 0;
  for (int i = 0; i < n; i++) {
    if (!is_chk_folder(names[i]))
      continue;
    int64_t id = chk_id(names[i], NULL);
    v[k].id = id >= 0 ? 2 * id : 2 * chk_id(names[i], INPROGRESS) + 1;
    v[k].name = names[i];
    k++;
  }
  qsort(v, (size_t)k, sizeof *v, ref_cmp);
  int rc = EDDY_OK;
  for (int i = 0; i < k && rc == EDDY_OK; i++)
    rc = visit_one(ls, dir, v[i].name, job, err);
  free(v);
  return rc;
}

typedef struct sp_ref {
  int64_t time;
  char *name;
} sp_ref;

static int sp_cmp(const void *a, const void *b)
{
  const sp_ref *x = a, *y = b;
  if (x->time != y->time)
    return x->time < y->time ? -1 : 1;
  return strcmp(x->name, y->name);
}

/* Savepoint folders of dir, ordered by their _metadata time (folder time
 * when it cannot be read). */
static int visit_savepoints(const lister *ls, const char *dir, char **names,
                            int n, eddy_err *err)
{
  sp_ref *v = calloc(n ? (size_t)n : 1, sizeof *v);
  if (v == NULL)
    return oom(err);
  int k = 0;
  for (int i = 0; i < n; i++) {
    if (strncmp(names[i], "savepoint-", 10) != 0)
      continue;
    char *p = join(dir, names[i]);
    if (p == NULL) {
      free(v);
      return oom(err);
    }
    eddy_chk *c;
    eddy_err ignored;
    uint64_t bytes;
    int files;
    int64_t t = 0;
    if (open_chk(p, CHECK_METADATA, &c, &ignored) == EDDY_OK) {
      t = c->time;
      eddy_chk_close(c);
    } else {
      folder_usage(p, &bytes, &files, &t);
    }
    free(p);
    v[k].time = t;
    v[k].name = names[i];
    k++;
  }
  qsort(v, (size_t)k, sizeof *v, sp_cmp);
  int rc = EDDY_OK;
  for (int i = 0; i < k && rc == EDDY_OK; i++)
    rc = visit_one(ls, dir, v[i].name, NULL, err);
  free(v);
  return rc;
}

int eddy_store_list(const char *dir, int verify,
                    int (*visit)(void *ud, const eddy_chk_info *info), void *ud,
                    eddy_err *err)
{
  char *p;
  int rc = local_path(dir, &p, err);
  if (rc != EDDY_OK)
    return rc;
  lister ls = {verify, visit, ud};
  /* one checkpoint or savepoint folder */
  char *meta = join(p, METADATA);
  struct stat st;
  if (meta == NULL) {
    free(p);
    return oom(err);
  }
  const char *bn = base_name(p);
  int single = stat(meta, &st) == 0 || is_chk_folder(bn) ||
               strncmp(bn, "savepoint-", 10) == 0;
  free(meta);
  if (single) {
    struct stat dst;
    if (stat(p, &dst) != 0)
      rc = eddy_seterr(err, errno == ENOENT ? EDDY_ENOTFOUND : EDDY_EIO,
                       "%s: %s", p, strerror(errno));
    else
      rc = visit_one(&ls, NULL, p, NULL, err);
    free(p);
    return rc;
  }
  char **names;
  int n;
  if ((rc = list_dirs(p, &names, &n, err)) != EDDY_OK) {
    free(p);
    return rc;
  }
  if (n > 1) /* no names: no array either */
    qsort(names, (size_t)n, sizeof *names, name_cmp);
  int own = 0;
  for (int i = 0; i < n; i++)
    own |= is_chk_folder(names[i]);
  if (own)
    rc = visit_job(&ls, p, base_name(p), names, n, err);
  /* job folders below: any other folder with chk-<n> folders in it */
  for (int i = 0; i < n && rc == EDDY_OK; i++) {
    if (is_chk_folder(names[i]) || strncmp(names[i], "savepoint-", 10) == 0 ||
        strcmp(names[i], "shared") == 0 || strcmp(names[i], "taskowned") == 0 ||
        ends_with(names[i], DISCARD))
      continue;
    char *jd = join(p, names[i]);
    if (jd == NULL) {
      rc = oom(err);
      break;
    }
    char **sub;
    int m;
    eddy_err ignored;
    if (list_dirs(jd, &sub, &m, &ignored) == EDDY_OK) {
      if (m > 1)
        qsort(sub, (size_t)m, sizeof *sub, name_cmp);
      rc = visit_job(&ls, jd, names[i], sub, m, err);
      free_names(sub, m);
    }
    /* a folder that cannot be read is not a job folder we can show */
    free(jd);
  }
  if (rc == EDDY_OK)
    rc = visit_savepoints(&ls, p, names, n, err);
  free_names(names, n);
  free(p);
  return rc;
}
