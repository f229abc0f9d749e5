/*
 * Part-file writer: see writer.h. Records are encoded straight into one
 * buffer that goes to the file in large write(2) calls; a record the format
 * refuses leaves no trace in it.
 */
#include "runtime/writer.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "util/buf.h"

#define DEFAULT_BUFFER ((size_t)64 * 1024)

struct eddy_writer {
  char *dir;
  int subtask;
  int transactional;
  size_t buffer_size;
  eddy_encoder *enc;
  eddy_buf buf;  /* encoded, not yet written */
  int fd;        /* the open part file, or -1 */
  uint64_t seq;  /* of the open part file, or of the next one */
  int seq_known; /* seq comes from scanning dir once */
  char *path;    /* of the open (or last) part file */
  uint64_t records, files;
};

void eddy_writer_config_init(eddy_writer_config *cfg)
{
  memset(cfg, 0, sizeof *cfg);
  cfg->format = EDDY_FORMAT_JSONL;
  eddy_format_csv_defaults(&cfg->csv);
  cfg->buffer_size = DEFAULT_BUFFER;
}

/* mkdir -p: every missing folder on the way, each reported by its own
 * path when it cannot be made. */
static int make_dirs(const char *dir, eddy_err *err)
{
  struct stat st;
  if (stat(dir, &st) == 0) {
    if (!S_ISDIR(st.st_mode))
      return eddy_seterr(err, EDDY_EIO, "%s: %s", dir, strerror(ENOTDIR));
    return EDDY_OK;
  }
  char *p = strdup(dir);
  if (p == NULL)
    return eddy_seterr(err, EDDY_ENOMEM, "out of memory");
  int rc = EDDY_OK;
  for (char *s = p + 1;; s++) {
    if (*s != '/' && *s != '\0')
      continue;
    char c = *s;
    *s = '\0';
    /* A read-only file system may say EROFS for a folder that exists. */
    if (mkdir(p, 0777) != 0 && errno != EEXIST) {
      int e = errno;
      if (stat(p, &st) != 0 || !S_ISDIR(st.st_mode)) {
        rc = eddy_seterr(err, EDDY_EIO, "%s: %s", p, strerror(e));
        break;
      }
    }
    *s = c;
    if (c == '\0')
      break;
  }
  free(p);
  if (rc != EDDY_OK)
    return rc;
  if (stat(dir, &st) != 0)
    return eddy_seterr(err, EDDY_EIO, "%s: %s", dir, strerror(errno));
  if (!S_ISDIR(st.st_mode))
    return eddy_seterr(err, EDDY_EIO, "%s: %s", dir, strerror(ENOTDIR));
  return EDDY_OK;
}

int eddy_writer_open(const eddy_writer_config *cfg, eddy_writer **out,
                     eddy_err *err)
{
  *out = NULL;
  if (cfg->dir == NULL || cfg->dir[0] == '\0')
    return eddy_seterr(err, EDDY_EINVAL, "to_file needs a folder");
  if (cfg->subtask < 0)
    return eddy_seterr(err, EDDY_EINVAL, "a negative subtask index");
  int rc = make_dirs(cfg->dir, err);
  if (rc != EDDY_OK)
    return rc;
  eddy_writer *w = calloc(1, sizeof *w);
  if (w == NULL || (w->dir = strdup(cfg->dir)) == NULL) {
    free(w);
    return eddy_seterr(err, EDDY_ENOMEM, "out of memory");
  }
  w->fd = -1;
  w->subtask = cfg->subtask;
  w->transactional = cfg->transactional;
  w->buffer_size = cfg->buffer_size ? cfg->buffer_size : DEFAULT_BUFFER;
  eddy_buf_init(&w->buf);
  if ((rc = eddy_format_encoder_new(cfg->format, &cfg->csv, &w->enc, err)) !=
      EDDY_OK) {
    free(w->dir);
    free(w);
    return rc;
  }
  *out = w;
  return EDDY_OK;
}

/* "part-3-12", ".part-3-12" or either with a suffix after a '.': the seq
 * for our subtask, or -1 for any other name. */
static int64_t part_seq(const char *name, int subtask)
{
  char prefix[32];
  if (name[0] == '.')
    name++;
  int n = snprintf(prefix, sizeof prefix, "part-%d-", subtask);
  if (strncmp(name, prefix, (size_t)n) != 0)
    return -1;
  const char *s = name + n;
  if (*s < '0' || *s > '9')
    return -1;
  uint64_t v = 0;
  for (; *s >= '0' && *s <= '9'; s++) {
    if (v > (uint64_t)INT64_MAX / 10 - 1)
      return -1;
    v = v * 10 + (uint64_t)(*s - '0');
  }
  if (*s != '\0' && *s != '.')
    return -1;
  return (int64_t)v;
}

static int scan_seq(eddy_writer *w, eddy_err *err)
{
  DIR *d = opendir(w->dir);
  if (d == NULL)
    return eddy_seterr(err, EDDY_EIO, "%s: %s", w->dir, strerror(errno));
  uint64_t next = 0;
  struct dirent *de;
  errno = 0;
  while ((de = readdir(d)) != NULL) {
    int64_t s = part_seq(de->d_name, w->subtask);
    if (s >= 0 && (uint64_t)s + 1 > next)
      next = (uint64_t)s + 1;
  }
  int e = errno;
  closedir(d);
  if (e != 0)
    return eddy_seterr(err, EDDY_EIO, "%s: %s", w->dir, strerror(e));
  w->seq = next;
  w->seq_known = 1;
  return EDDY_OK;
}

static int set_path(eddy_writer *w, eddy_err *err)
{
  size_t n = strlen(w->dir) + 64;
  char *p = malloc(n);
  if (p == NULL)
    return eddy_seterr(err, EDDY_ENOMEM, "out of memory");
  snprintf(p, n, w->transactional ? "%s%s.part-%d-%" PRIu64 ".inprogress" : "%s%spart-%d-%" PRIu64,
           w->dir, w->dir[strlen(w->dir) - 1] == '/' ? "" : "/", w->subtask, w->seq);
  free(w->path);
  w->path = p;
  return EDDY_OK;
}

/* O_EXCL: a name another writer took meanwhile is passed over, never
 * opened twice. */
static int part_open(eddy_writer *w, eddy_err *err)
{
  int rc;
  if (!w->seq_known && (rc = scan_seq(w, err)) != EDDY_OK)
    return rc;
  for (;;) {
    if ((rc = set_path(w, err)) != EDDY_OK)
      return rc;
    w->fd = open(w->path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (w->fd >= 0)
      break;
    if (errno != EEXIST)
      return eddy_seterr(err, EDDY_EIO, "%s: %s", w->path, strerror(errno));
    w->seq++;
  }
  w->files++;
  eddy_format_encoder_new_file(w->enc);
  return EDDY_OK;
}

/* Writes what is buffered; what the kernel took is dropped from the buffer
 * even on failure, so a retry does not write it twice. */
static int part_flush(eddy_writer *w, eddy_err *err)
{
  size_t done = 0;
  int rc = EDDY_OK;
  while (done < w->buf.len) {
    ssize_t n = write(w->fd, w->buf.data + done, w->buf.len - done);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      rc = eddy_seterr(err, EDDY_EIO, "%s: %s", w->path, strerror(errno));
      break;
    }
    done += (size_t)n;
  }
  if (done > 0) {
    memmove(w->buf.data, w->buf.data + done, w->buf.len - done);
    w->buf.len -= done;
  }
  return rc;
}

/* A folder's entry for a new file is durable only once the folder itself
 * is synced. */
static int sync_dir(const char *dir, eddy_err *err)
{
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    return eddy_seterr(err, EDDY_EIO, "%s: %s", dir, strerror(errno));
  int rc = EDDY_OK;
  if (fsync(fd) != 0 && errno != EINVAL)
    rc = eddy_seterr(err, EDDY_EIO, "%s: %s", dir, strerror(errno));
  close(fd);
  return rc;
}

static int part_close(eddy_writer *w, eddy_err *err)
{
  if (w->fd < 0)
    return EDDY_OK;
  int rc = part_flush(w, err);
  if (rc == EDDY_OK && fsync(w->fd) != 0)
    rc = eddy_seterr(err, EDDY_EIO, "%s: %s", w->path, strerror(errno));
  if (close(w->fd) != 0 && rc == EDDY_OK)
    rc = eddy_seterr(err, EDDY_EIO, "%s: %s", w->path, strerror(errno));
  w->fd = -1;
  w->seq++;
  /* bytes that could not be written belong to the closed file */
  eddy_buf_reset(&w->buf);
  if (rc == EDDY_OK)
    rc = sync_dir(w->dir, err);
  return rc;
}

int eddy_writer_write(eddy_writer *w, const void *record, size_t len,
                      eddy_err *err)
{
  int rc;
  if (w->fd < 0 && (rc = part_open(w, err)) != EDDY_OK)
    return rc;
  if ((rc = eddy_format_encode(w->enc, record, len, &w->buf, err)) != EDDY_OK)
    return rc;
  w->records++;
  if (w->buf.len >= w->buffer_size)
    return part_flush(w, err);
  return EDDY_OK;
}

int eddy_writer_flush(eddy_writer *w, eddy_err *err)
{
  if (w->fd < 0)
    return EDDY_OK;
  return part_flush(w, err);
}

int eddy_writer_roll(eddy_writer *w, eddy_err *err)
{
  return part_close(w, err);
}

int eddy_writer_close(eddy_writer *w, eddy_err *err)
{
  if (w == NULL)
    return EDDY_OK;
  int rc = part_close(w, err);
  eddy_format_encoder_free(w->enc);
  eddy_buf_free(&w->buf);
  free(w->path);
  free(w->dir);
  free(w);
  return rc;
}

int eddy_writer_prepare(eddy_writer *w, char **path, eddy_err *err)
{
  *path = NULL;
  if (w->fd < 0)
    return EDDY_OK;
  char *closing = strdup(w->path);
  if (closing == NULL)
    return eddy_seterr(err, EDDY_ENOMEM, "out of memory");
  int rc = part_close(w, err);
  if (rc != EDDY_OK) {
    free(closing);
    return rc;
  }
  *path = closing;
  return EDDY_OK;
}

/* "dir/.part-3-7.inprogress" -> "dir/part-3-7"; NULL for other names. */
static char *final_name(const char *path)
{
  const char *base = strrchr(path, '/');
  base = base ? base + 1 : path;
  size_t dirlen = (size_t)(base - path), blen = strlen(base);
  static const char suffix[] = ".inprogress";
  size_t slen = sizeof suffix - 1;
  if (base[0] != '.' || blen <= slen + 1 || strcmp(base + blen - slen, suffix) != 0)
    return NULL;
  char *out = malloc(dirlen + blen);
  if (out == NULL)
    return NULL;
  memcpy(out, path, dirlen);
  memcpy(out + dirlen, base + 1, blen - slen - 1);
  out[dirlen + blen - slen - 1] = '\0';
  return out;
}

int eddy_writer_commit(const char *path, eddy_err *err)
{
  char *final = final_name(path);
  if (final == NULL)
    return eddy_seterr(err, EDDY_EINVAL, "%s: not an in-progress part file", path);
  int rc = EDDY_OK;
  struct stat st;
  if (rename(path, final) != 0) {
    if (errno != ENOENT || stat(final, &st) != 0)
      rc = eddy_seterr(err, EDDY_EIO, "%s: cannot commit: %s", path, strerror(errno));
    free(final);
    return rc; /* committed already: nothing to sync */
  }
  char *dir = strdup(path);
  if (dir == NULL) {
    free(final);
    return eddy_seterr(err, EDDY_ENOMEM, "out of memory");
  }
  char *slash = strrchr(dir, '/');
  if (slash != NULL)
    *slash = '\0';
  rc = sync_dir(slash ? dir : ".", err);
  free(dir);
  free(final);
  return rc;
}

int eddy_writer_recover(const char *dir, int subtask, const char *const *keep, size_t n,
                        eddy_err *err)
{
  DIR *d = opendir(dir);
  if (d == NULL)
    return errno == ENOENT ? EDDY_OK : eddy_seterr(err, EDDY_EIO, "%s: %s", dir, strerror(errno));
  int rc = EDDY_OK;
  struct dirent *de;
  size_t dlen = strlen(dir);
  while (rc == EDDY_OK && (de = readdir(d)) != NULL) {
    const char *name = de->d_name;
    size_t len = strlen(name);
    if (name[0] != '.' || part_seq(name, subtask) < 0 || len < 12 ||
        strcmp(name + len - 11, ".inprogress") != 0)
      continue;
    char *path = malloc(dlen + len + 2);
    if (path == NULL) {
      rc = eddy_seterr(err, EDDY_ENOMEM, "out of memory");
      break;
    }
    snprintf(path, dlen + len + 2, "%s/%s", dir, name);
    int kept = 0;
    for (size_t i = 0; i < n && !kept; i++) {
      const char *k = strrchr(keep[i], '/');
      kept = strcmp(k ? k + 1 : keep[i], name) == 0;
    }
    if (kept)
      rc = eddy_writer_commit(path, err);
    else if (unlink(path) != 0 && errno != ENOENT)
      rc = eddy_seterr(err, EDDY_EIO, "%s: %s", path, strerror(errno));
    free(path);
  }
  closedir(d);
  if (rc == EDDY_OK)
    rc = sync_dir(dir, err);
  return rc;
}

const char *eddy_writer_path(const eddy_writer *w) { return w->path; }

uint64_t eddy_writer_records(const eddy_writer *w) { return w->records; }

uint64_t eddy_writer_files(const eddy_writer *w) { return w->files; }
