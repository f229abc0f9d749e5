/*
 * Job control: the control folder, a job's socket and status file, and the
 * client's side of the protocol (see control.h).
 *
 * The server side never blocks for long: the listening socket and every
 * connection are non-blocking, and the executor decides how long a poll
 * may wait. A connection carries one request; it is answered at once, or
 * kept until the job can answer (a savepoint completing, the job ending).
 * Writing a reply is the one place that may wait, for at most a second,
 * for a peer that does not read.
 */
#include "runtime/control.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* Open connections at once; more are answered with an error. */
#define MAX_CONNS 32
/* A request line longer than this is refused. */
#define MAX_LINE 65536
/* A connection that sends no complete request in this long is dropped. */
#define READ_IDLE_MS 5000
/* How long a reply may wait for a peer that does not read. */
#define WRITE_MS 1000
/* Status files of ended jobs kept in the folder (the oldest go first). */
#define KEEP_ENDED 100

typedef enum req_state {
  REQ_READING,  /* the request line is not complete yet */
  REQ_HANDLING, /* handed to the job: it answers now or later */
  REQ_AT_END    /* answered when the job ends */
} req_state;

struct eddy_control_req {
  int fd;
  char *buf;
  size_t len, cap;
  double accepted; /* monotonic ms */
  req_state state;
  json_t *json;
  const char *name; /* in json */
  char *end_state;  /* REQ_AT_END: ok if the job ends in this state */
  char *savepoint;
  struct eddy_control_req *next;
};

struct eddy_control {
  char *dir, *id, *name, *log, *savepoint_dir;
  char *socket, *status;
  int64_t interval;
  int listen_fd;
  uid_t uid;
  pid_t pid;
  int64_t start;
  json_t *info;
  eddy_control_req *reqs;
  int nreqs;
  int finished;
};

static double mono_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

static int64_t epoch_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static char *join2(const char *dir, const char *name, const char *suffix)
{
  size_t n = strlen(dir) + strlen(name) + strlen(suffix) + 2;
  char *p = malloc(n);
  if (p != NULL)
    snprintf(p, n, "%s/%s%s", dir, name, suffix);
  return p;
}

static int oom(eddy_err *err) { return eddy_seterr(err, EDDY_ENOMEM, "out of memory in job control"); }

/* ---- the folder ---- */

int eddy_control_peer_allowed(uid_t peer, uid_t self)
{
  return peer == self || peer == 0;
}

int eddy_control_check_peer(int fd, uid_t self, eddy_err *err)
{
  struct ucred cred;
  socklen_t len = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0)
    return eddy_seterr(err, EDDY_EIO, "cannot tell who is on the other end: %s", strerror(errno));
  if (!eddy_control_peer_allowed(cred.uid, self))
    return eddy_seterr(err, EDDY_EINVAL,
                       "permission denied: the job belongs to uid %lu, the request comes from "
                       "uid %lu",
                       (unsigned long)self, (unsigned long)cred.uid);
  return EDDY_OK;
}

int eddy_control_check_dir(const char *dir, uid_t uid, eddy_err *err)
{
  struct stat st;
  if (lstat(dir, &st) != 0)
    return eddy_seterr(err, EDDY_EIO, "control folder %s: %s", dir, strerror(errno));
  if (!S_ISDIR(st.st_mode))
    return eddy_seterr(err, EDDY_EINVAL, "refusing to use %s as the control folder: it is not "
                       "a folder", dir);
  if (st.st_uid != uid)
    return eddy_seterr(err, EDDY_EINVAL, "refusing to use the control folder %s: it belongs to "
                       "uid %lu, not to uid %lu", dir, (unsigned long)st.st_uid,
                       (unsigned long)uid);
  if ((st.st_mode & 077) != 0)
    return eddy_seterr(err, EDDY_EINVAL, "refusing to use the control folder %s: it is open to "
                       "group or others (mode %04o; chmod 700 it)", dir,
                       (unsigned)(st.st_mode & 07777));
  return EDDY_OK;
}

/* Creates dir (0700) if it is missing, then checks it. */
static int ensure_dir(const char *dir, eddy_err *err)
{
  if (mkdir(dir, 0700) != 0 && errno != EEXIST)
    return eddy_seterr(err, EDDY_EIO, "cannot create the control folder %s: %s", dir,
                       strerror(errno));
  return eddy_control_check_dir(dir, geteuid(), err);
}

/* $XDG_RUNTIME_DIR/eddy, else ~/.eddy/run (DESIGN.md), else, without a
 * home, /tmp/eddy-<uid>. */
int eddy_control_dir(char *buf, size_t n, eddy_err *err)
{
  const char *xdg = getenv("XDG_RUNTIME_DIR");
  const char *home = getenv("HOME");
  int len;
  if (xdg != NULL && *xdg == '/') {
    len = snprintf(buf, n, "%s/eddy", xdg);
  } else if (home != NULL && *home == '/') {
    /* ~/.eddy first: only the folder the sockets live in is checked */
    len = snprintf(buf, n, "%s/.eddy", strcmp(home, "/") == 0 ? "" : home);
    if (len < 0 || (size_t)len >= n)
      return eddy_seterr(err, EDDY_ELIMIT, "the control folder's path is too long");
    if (mkdir(buf, 0700) != 0 && errno != EEXIST)
      return eddy_seterr(err, EDDY_EIO, "cannot create %s: %s", buf, strerror(errno));
    len = snprintf(buf + len, n - (size_t)len, "/run") + len;
  } else {
    len = snprintf(buf, n, "/tmp/eddy-%lu", (unsigned long)geteuid());
  }
  if (len < 0 || (size_t)len >= n)
    return eddy_seterr(err, EDDY_ELIMIT, "the control folder's path is too long");
  return ensure_dir(buf, err);
}

/* ---- status files ---- */

/* Writes o (not consumed) to path through a temporary file and a rename,
 * so a reader sees the old file or the new one. Runtime files: no fsync. */
static int write_json_atomic(const char *path, json_t *o, eddy_err *err)
{
  char *text = json_dumps(o, JSON_COMPACT);
  size_t n = strlen(path) + 32;
  char *tmp = malloc(n);
  if (text == NULL || tmp == NULL) {
    free(text);
    free(tmp);
    return oom(err);
  }
  /* the pid in the name: `eddy list` may rewrite a file its job also writes */
  snprintf(tmp, n, "%s.%ld.tmp", path, (long)getpid());
  int rc = EDDY_OK;
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    rc = eddy_seterr(err, EDDY_EIO, "cannot write %s: %s", tmp, strerror(errno));
  } else {
    size_t len = strlen(text), done = 0;
    while (done < len) {
      ssize_t w = write(fd, text + done, len - done);
      if (w < 0 && errno == EINTR)
        continue;
      if (w <= 0) {
        rc = eddy_seterr(err, EDDY_EIO, "cannot write %s: %s", tmp, strerror(errno));
        break;
      }
      done += (size_t)w;
    }
    if (close(fd) != 0 && rc == EDDY_OK)
      rc = eddy_seterr(err, EDDY_EIO, "cannot write %s: %s", tmp, strerror(errno));
    if (rc == EDDY_OK && rename(tmp, path) != 0)
      rc = eddy_seterr(err, EDDY_EIO, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
    if (rc != EDDY_OK)
      unlink(tmp);
  }
  free(tmp);
  free(text);
  return rc;
}

json_t *eddy_control_string(const char *s)
{
  if (s == NULL)
    return json_null();
  json_t *j = json_string(s);
  if (j != NULL)
    return j;
  char *copy = strdup(s);
  if (copy == NULL)
    return NULL;
  /* keep ASCII, replace every other byte: crude, but always valid */
  for (char *p = copy; *p; p++)
    if ((unsigned char)*p >= 0x80)
      *p = '?';
  j = json_string(copy);
  free(copy);
  return j;
}

static void set_str(json_t *o, const char *key, const char *v)
{
  if (v != NULL)
    json_object_set_new(o, key, eddy_control_string(v));
}

static int write_status(eddy_control *c, const char *state, int64_t end, const char *savepoint,
                        const char *error, eddy_err *err)
{
  json_t *o = json_object();
  if (o == NULL)
    return oom(err);
  json_object_set_new(o, "version", json_integer(1));
  set_str(o, "id", c->id);
  set_str(o, "name", c->name);
  set_str(o, "state", state);
  json_object_set_new(o, "pid", json_integer(c->pid));
  json_object_set_new(o, "uid", json_integer((json_int_t)c->uid));
  json_object_set_new(o, "start", json_integer(c->start));
  if (end > 0)
    json_object_set_new(o, "end", json_integer(end));
  if (strcmp(state, "RUNNING") == 0)
    set_str(o, "socket", c->socket);
  set_str(o, "log", c->log);
  set_str(o, "savepoint_dir", c->savepoint_dir);
  set_str(o, "savepoint", savepoint);
  set_str(o, "error", error);
  if (end > 0 && c->info != NULL)
    json_object_set(o, "info", c->info);
  int rc = write_json_atomic(c->status, o, err);
  json_decref(o);
  return rc;
}

static int process_alive(json_int_t pid)
{
  if (pid <= 0 || pid > INT32_MAX)
    return 0;
  return kill((pid_t)pid, 0) == 0 || errno == EPERM;
}

enum { PROBE_ANSWERS, PROBE_REFUSED, PROBE_OTHER };

/* Connects to a socket and hangs up: whether anyone listens there. */
static int probe_socket(const char *path)
{
  struct sockaddr_un sa;
  if (path == NULL || strlen(path) >= sizeof sa.sun_path)
    return PROBE_OTHER;
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return PROBE_OTHER;
  struct timeval tv = {1, 0};
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  memset(&sa, 0, sizeof sa);
  sa.sun_family = AF_UNIX;
  memcpy(sa.sun_path, path, strlen(path) + 1);
  int rc = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0 ? PROBE_ANSWERS
           : errno == ECONNREFUSED                             ? PROBE_REFUSED
                                                               : PROBE_OTHER;
  close(fd);
  return rc;
}

/* A socket file nobody listens on any more: its process died without
 * removing it (kill -9), or the pid was reused by another process. */
static int socket_refuses(const char *path)
{
  return probe_socket(path) == PROBE_REFUSED;
}

static int is_running(json_t *st)
{
  const char *state = json_string_value(json_object_get(st, "state"));
  return state != NULL && strcmp(state, "RUNNING") == 0;
}

/* A RUNNING status whose job is gone. */
static int is_lost(json_t *st)
{
  if (!is_running(st))
    return 0;
  return !process_alive(json_integer_value(json_object_get(st, "pid"))) ||
         socket_refuses(json_string_value(json_object_get(st, "socket")));
}

static void remove_socket(const char *path)
{
  struct stat st;
  if (path != NULL && lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
    unlink(path);
}

/* Rewrites a lost job's status (read again first: it may have ended
 * properly meanwhile) and removes its socket. */
static json_t *mark_lost(const char *path, json_t *st)
{
  json_t *now = json_load_file(path, 0, NULL);
  if (now == NULL || !is_running(now))
    return now != NULL ? now : json_incref(st);
  json_int_t pid = json_integer_value(json_object_get(now, "pid"));
  remove_socket(json_string_value(json_object_get(now, "socket")));
  json_object_del(now, "socket");
  json_object_set_new(now, "state", json_string("LOST"));
  char why[160];
  snprintf(why, sizeof why, "its process (pid %lld) ended without saying how", (long long)pid);
  json_object_set_new(now, "error", json_string(why));
  eddy_err ignored;
  write_json_atomic(path, now, &ignored);
  return now;
}

typedef struct status_file {
  char *path;
  int64_t mtime;
} status_file;

static int by_mtime(const void *a, const void *b)
{
  const status_file *x = a, *y = b;
  return (x->mtime > y->mtime) - (x->mtime < y->mtime);
}

static int is_status_name(const char *name)
{
  size_t n = strlen(name);
  return name[0] != '.' && n > 5 && strcmp(name + n - 5, ".json") == 0;
}

/* Keeps the folder from growing without end: beyond KEEP_ENDED, the
 * status files (and logs) of the jobs that ended longest ago go. */
static void prune(const char *dir)
{
  DIR *d = opendir(dir);
  if (d == NULL)
    return;
  status_file *files = NULL;
  size_t n = 0, cap = 0;
  struct dirent *de;
  while ((de = readdir(d)) != NULL) {
    struct stat st;
    if (!is_status_name(de->d_name) ||
        fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode))
      continue;
    if (n == cap) {
      size_t ncap = cap ? cap * 2 : 64;
      status_file *nf = realloc(files, ncap * sizeof *nf);
      if (nf == NULL)
        break;
      files = nf;
      cap = ncap;
    }
    if ((files[n].path = join2(dir, de->d_name, "")) == NULL)
      break;
    files[n++].mtime = (int64_t)st.st_mtim.tv_sec * 1000 + st.st_mtim.tv_nsec / 1000000;
  }
  closedir(d);
  if (n > KEEP_ENDED + 10) { /* a margin: not at every start once past it */
    qsort(files, n, sizeof *files, by_mtime);
    size_t left = n;
    for (size_t i = 0; i < n && left > KEEP_ENDED; i++) {
      json_t *st = json_load_file(files[i].path, 0, NULL);
      if (st != NULL && is_running(st) && !is_lost(st)) {
        json_decref(st);
        continue;
      }
      const char *id = json_string_value(json_object_get(st, "id"));
      char *log = id != NULL ? join2(dir, id, ".log") : NULL;
      if (log != NULL)
        unlink(log);
      free(log);
      remove_socket(json_string_value(json_object_get(st, "socket")));
      unlink(files[i].path);
      json_decref(st);
      left--;
    }
  }
  for (size_t i = 0; i < n; i++)
    free(files[i].path);
  free(files);
}

/* ---- the server ---- */

static int valid_id(const char *id)
{
  size_t n = id != NULL ? strlen(id) : 0;
  if (n == 0 || n > 64)
    return 0;
  for (const char *p = id; *p; p++)
    if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
          *p == '_' || *p == '-'))
      return 0;
  return 1;
}

static char *absolute(const char *path)
{
  if (path[0] == '/')
    return strdup(path);
  char cwd[4096];
  if (getcwd(cwd, sizeof cwd) == NULL)
    return strdup(path);
  while (path[0] == '.' && path[1] == '/')
    path += 2;
  if (strcmp(path, ".") == 0)
    return strdup(cwd);
  return join2(cwd, path, "");
}

static void free_control(eddy_control *c)
{
  free(c->dir);
  free(c->id);
  free(c->name);
  free(c->log);
  free(c->savepoint_dir);
  free(c->socket);
  free(c->status);
  json_decref(c->info);
  free(c);
}

static int listen_on(eddy_control *c, eddy_err *err)
{
  struct sockaddr_un sa;
  if (strlen(c->socket) >= sizeof sa.sun_path)
    return eddy_seterr(err, EDDY_ELIMIT, "the control socket's path %s is longer than %zu bytes "
                       "(set XDG_RUNTIME_DIR to a shorter folder)", c->socket,
                       sizeof sa.sun_path - 1);
  struct stat st;
  if (lstat(c->socket, &st) == 0) {
    if (!S_ISSOCK(st.st_mode))
      return eddy_seterr(err, EDDY_EINVAL, "%s exists and is not a socket", c->socket);
    if (probe_socket(c->socket) == PROBE_ANSWERS) {
      /* someone answers: the same job runs already (--resume twice?) */
      return eddy_seterr(err, EDDY_EINVAL, "job %s is running already (its socket %s answers)",
                         c->id, c->socket);
    }
    unlink(c->socket); /* stale: its process is gone */
  }
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return eddy_seterr(err, EDDY_EIO, "cannot create a control socket: %s", strerror(errno));
  memset(&sa, 0, sizeof sa);
  sa.sun_family = AF_UNIX;
  memcpy(sa.sun_path, c->socket, strlen(c->socket) + 1);
  /* The folder is 0700, so nobody else can reach the socket between bind
   * and chmod; no umask games in a process with threads. */
  if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || chmod(c->socket, 0600) != 0 ||
      listen(fd, 16) != 0) {
    int e = errno;
    close(fd);
    unlink(c->socket);
    return eddy_seterr(err, EDDY_EIO, "cannot listen on %s: %s", c->socket, strerror(e));
  }
  c->listen_fd = fd;
  return EDDY_OK;
}

int eddy_control_open(eddy_control **out, const eddy_control_config *cfg, eddy_err *err)
{
  *out = NULL;
  if (!valid_id(cfg->id))
    return eddy_seterr(err, EDDY_EINVAL, "a job id is 1 to 64 of [0-9A-Za-z_-], not \"%s\"",
                       cfg->id ? cfg->id : "(none)");
  eddy_control *c = calloc(1, sizeof *c);
  if (c == NULL)
    return oom(err);
  c->listen_fd = -1;
  c->uid = geteuid();
  c->pid = getpid();
  c->start = epoch_ms();
  c->interval = cfg->checkpoint_interval;
  char dir[4096];
  int rc = cfg->dir != NULL ? ensure_dir(cfg->dir, err) : eddy_control_dir(dir, sizeof dir, err);
  if (rc != EDDY_OK) {
    free_control(c);
    return rc;
  }
  c->dir = strdup(cfg->dir != NULL ? cfg->dir : dir);
  c->id = strdup(cfg->id);
  c->name = strdup(cfg->name != NULL ? cfg->name : "job");
  c->log = cfg->log != NULL ? absolute(cfg->log) : NULL;
  c->savepoint_dir = cfg->savepoint_dir != NULL ? absolute(cfg->savepoint_dir) : NULL;
  if (c->dir == NULL || c->id == NULL || c->name == NULL || (cfg->log && c->log == NULL) ||
      (cfg->savepoint_dir && c->savepoint_dir == NULL) ||
      (c->socket = join2(c->dir, c->id, ".sock")) == NULL ||
      (c->status = join2(c->dir, c->id, ".json")) == NULL) {
    free_control(c);
    return oom(err);
  }
  if ((rc = listen_on(c, err)) != EDDY_OK) {
    free_control(c);
    return rc;
  }
  prune(c->dir);
  if ((rc = write_status(c, "RUNNING", 0, NULL, NULL, err)) != EDDY_OK) {
    close(c->listen_fd);
    unlink(c->socket);
    free_control(c);
    return rc;
  }
  if (cfg->notify_fd >= 0) {
    /* `eddy run -d` waits for this line to print the id */
    char line[80];
    int n = snprintf(line, sizeof line, "%s\n", c->id);
    ssize_t w;
    do
      w = write(cfg->notify_fd, line, (size_t)n);
    while (w < 0 && errno == EINTR);
    close(cfg->notify_fd);
  }
  *out = c;
  return EDDY_OK;
}

const char *eddy_control_id(const eddy_control *c) { return c->id; }
const char *eddy_control_name(const eddy_control *c) { return c->name; }
const char *eddy_control_socket(const eddy_control *c) { return c->socket; }
const char *eddy_control_status_path(const eddy_control *c) { return c->status; }
const char *eddy_control_savepoint_dir(const eddy_control *c) { return c->savepoint_dir; }
int64_t eddy_control_start(const eddy_control *c) { return c->start; }
int64_t eddy_control_checkpoint_interval(const eddy_control *c) { return c->interval; }
int eddy_control_finished(const eddy_control *c) { return c->finished; }

const char *eddy_control_req_name(const eddy_control_req *r) { return r->name; }
json_t *eddy_control_req_json(const eddy_control_req *r) { return r->json; }

static void free_req(eddy_control *c, eddy_control_req *r)
{
  for (eddy_control_req **p = &c->reqs; *p; p = &(*p)->next)
    if (*p == r) {
      *p = r->next;
      c->nreqs--;
      break;
    }
  if (r->fd >= 0)
    close(r->fd);
  free(r->buf);
  json_decref(r->json);
  free(r->end_state);
  free(r->savepoint);
  free(r);
}

/* Sends all of p, waiting at most WRITE_MS for a peer that does not read. */
static void send_all(int fd, const char *p, size_t n)
{
  double deadline = mono_ms() + WRITE_MS;
  while (n > 0) {
    ssize_t w = send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w > 0) {
      p += w;
      n -= (size_t)w;
      continue;
    }
    if (w < 0 && errno == EINTR)
      continue;
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      int left = (int)(deadline - mono_ms());
      struct pollfd pfd = {fd, POLLOUT, 0};
      if (left > 0 && poll(&pfd, 1, left) > 0)
        continue;
    }
    return; /* gone, or not reading: it gets no answer */
  }
}

void eddy_control_reply(eddy_control *c, eddy_control_req *r, json_t *reply)
{
  char *text = reply != NULL ? json_dumps(reply, JSON_COMPACT) : NULL;
  if (text != NULL) {
    size_t n = strlen(text);
    char *line = realloc(text, n + 2);
    if (line != NULL) {
      line[n] = '\n';
      line[n + 1] = '\0';
      send_all(r->fd, line, n + 1);
      text = line;
    }
  }
  free(text);
  json_decref(reply);
  free_req(c, r);
}

static json_t *error_reply(const char *fmt, va_list ap)
{
  char msg[EDDY_ERR_MSG_MAX];
  vsnprintf(msg, sizeof msg, fmt, ap);
  json_t *o = json_object();
  json_object_set_new(o, "ok", json_false());
  json_object_set_new(o, "error", eddy_control_string(msg));
  return o;
}

void eddy_control_reply_error(eddy_control *c, eddy_control_req *r, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  json_t *o = error_reply(fmt, ap);
  va_end(ap);
  eddy_control_reply(c, r, o);
}

void eddy_control_reply_at_end(eddy_control *c, eddy_control_req *r, const char *state,
                               const char *savepoint)
{
  (void)c;
  r->state = REQ_AT_END;
  free(r->end_state);
  free(r->savepoint);
  r->end_state = strdup(state);
  r->savepoint = savepoint != NULL ? strdup(savepoint) : NULL;
}

void eddy_control_fail_waiting(eddy_control *c, const char *fmt, ...)
{
  eddy_control_req *r = c->reqs;
  while (r != NULL) {
    eddy_control_req *next = r->next;
    if (r->state == REQ_AT_END) {
      va_list ap;
      va_start(ap, fmt);
      json_t *o = error_reply(fmt, ap);
      va_end(ap);
      eddy_control_reply(c, r, o);
    }
    r = next;
  }
}

static int req_alive(const eddy_control *c, const eddy_control_req *r)
{
  for (const eddy_control_req *q = c->reqs; q; q = q->next)
    if (q == r)
      return 1;
  return 0;
}

static void accept_all(eddy_control *c)
{
  for (;;) {
    int fd = accept4(c->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR)
        continue;
      return; /* EAGAIN: no more; anything else: try at the next poll */
    }
    eddy_control_req *r = calloc(1, sizeof *r);
    if (r == NULL) {
      close(fd);
      return;
    }
    r->fd = fd;
    r->accepted = mono_ms();
    r->next = c->reqs;
    c->reqs = r;
    c->nreqs++;
    eddy_err err;
    if (eddy_control_check_peer(fd, c->uid, &err) != EDDY_OK)
      eddy_control_reply_error(c, r, "%s", err.msg);
    else if (c->nreqs > MAX_CONNS)
      eddy_control_reply_error(c, r, "too many connections to the job at once; try again");
  }
}

static const char *const known[] = {"info", "savepoint", "stop", "cancel", NULL};

/* A complete request line: checked, then handed to fn. */
static void take_request(eddy_control *c, eddy_control_req *r, size_t n, eddy_control_fn fn,
                         void *ud)
{
  json_error_t jerr;
  r->json = json_loadb(r->buf, n, 0, &jerr);
  if (r->json == NULL || !json_is_object(r->json)) {
    eddy_control_reply_error(c, r, "a request is one JSON object on a line (%s)",
                             r->json == NULL ? jerr.text : "not an object");
    return;
  }
  r->name = json_string_value(json_object_get(r->json, "request"));
  if (r->name == NULL) {
    eddy_control_reply_error(c, r, "a request needs \"request\": one of info, savepoint, stop, "
                                   "cancel");
    return;
  }
  for (int i = 0; known[i] != NULL; i++) {
    if (strcmp(known[i], r->name) == 0) {
      r->state = REQ_HANDLING;
      fn(ud, c, r);
      return;
    }
  }
  eddy_control_reply_error(c, r, "unknown request \"%s\" (known: info, savepoint, stop, cancel)",
                           r->name);
}

/* Reads what r's peer sent; a complete line goes to take_request. */
static void read_req(eddy_control *c, eddy_control_req *r, eddy_control_fn fn, void *ud)
{
  for (;;) {
    if (r->cap - r->len < 4096) {
      size_t ncap = r->cap ? r->cap * 2 : 4096;
      char *nb = realloc(r->buf, ncap);
      if (nb == NULL) {
        free_req(c, r);
        return;
      }
      r->buf = nb;
      r->cap = ncap;
    }
    ssize_t got = recv(r->fd, r->buf + r->len, r->cap - r->len, 0);
    if (got < 0 && errno == EINTR)
      continue;
    if (got < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK)
        free_req(c, r);
      return;
    }
    if (got == 0) {
      /* the peer is done sending: a last line without its newline counts;
       * nothing at all is a liveness probe (eddy list) */
      if (r->len > 0)
        take_request(c, r, r->len, fn, ud);
      else
        free_req(c, r);
      return;
    }
    char *nl = memchr(r->buf + r->len, '\n', (size_t)got);
    r->len += (size_t)got;
    if (nl != NULL) {
      take_request(c, r, (size_t)(nl - r->buf), fn, ud);
      return;
    }
    if (r->len > MAX_LINE) {
      eddy_control_reply_error(c, r, "a request line is at most %d bytes", MAX_LINE);
      return;
    }
  }
}

int eddy_control_poll(eddy_control *c, int timeout_ms, eddy_control_fn fn, void *ud)
{
  if (c == NULL || c->finished || c->listen_fd < 0) {
    if (timeout_ms > 0) {
      struct timespec ts = {timeout_ms / 1000, (long)(timeout_ms % 1000) * 1000000L};
      nanosleep(&ts, NULL);
    }
    return EDDY_OK;
  }
  struct pollfd fds[1 + MAX_CONNS + 1];
  eddy_control_req *who[1 + MAX_CONNS + 1];
  int n = 0;
  fds[n].fd = c->listen_fd;
  fds[n].events = POLLIN;
  who[n++] = NULL;
  double now = mono_ms();
  for (eddy_control_req *r = c->reqs; r && n < (int)(sizeof fds / sizeof fds[0]); r = r->next) {
    if (r->state != REQ_READING)
      continue;
    int idle_left = (int)(r->accepted + READ_IDLE_MS - now);
    if (idle_left < 0)
      idle_left = 0;
    if (idle_left < timeout_ms)
      timeout_ms = idle_left;
    fds[n].fd = r->fd;
    fds[n].events = POLLIN;
    who[n++] = r;
  }
  int k = poll(fds, (nfds_t)n, timeout_ms < 0 ? 0 : timeout_ms);
  if (k > 0) {
    for (int i = 1; i < n; i++)
      if (fds[i].revents != 0 && req_alive(c, who[i]) && who[i]->state == REQ_READING)
        read_req(c, who[i], fn, ud);
    if (fds[0].revents & POLLIN) {
      eddy_control_req *before = c->reqs;
      accept_all(c);
      /* the request is often there already: read it without another poll */
      for (eddy_control_req *r = c->reqs; r && r != before;) {
        eddy_control_req *next = r->next;
        if (r->state == REQ_READING)
          read_req(c, r, fn, ud);
        r = req_alive(c, next) ? next : NULL;
      }
    }
  }
  /* connections that never sent a request */
  now = mono_ms();
  for (eddy_control_req *r = c->reqs; r;) {
    eddy_control_req *next = r->next;
    if (r->state == REQ_READING && now - r->accepted >= READ_IDLE_MS)
      eddy_control_reply_error(c, r, "no request within %d s", READ_IDLE_MS / 1000);
    r = next;
  }
  return EDDY_OK;
}

void eddy_control_set_info(eddy_control *c, json_t *info)
{
  json_decref(c->info);
  c->info = info;
}

json_t *eddy_control_last_info(const eddy_control *c) { return c->info; }

typedef struct idle_ctx {
  const char *state;
  int *cancel;
} idle_ctx;

static void serve_idle_request(void *ud, eddy_control *c, eddy_control_req *r)
{
  idle_ctx *x = ud;
  const char *name = eddy_control_req_name(r);
  if (strcmp(name, "info") == 0) {
    json_t *o = c->info != NULL ? json_deep_copy(c->info) : json_object();
    json_object_set_new(o, "ok", json_true());
    json_object_set_new(o, "state", json_string(x->state));
    eddy_control_reply(c, r, o);
  } else if (strcmp(name, "cancel") == 0 && json_string_value(json_object_get(
                                                  eddy_control_req_json(r), "savepoint_dir")) == NULL) {
    *x->cancel = 1;
    eddy_control_reply_at_end(c, r, "CANCELED", NULL);
  } else {
    eddy_control_reply_error(c, r, "the job is %s: try again once it runs", x->state);
  }
}

int eddy_control_serve_idle(eddy_control *c, int64_t ms, const char *state, int *cancel)
{
  idle_ctx x = {state, cancel};
  double end = mono_ms() + (double)ms;
  for (;;) {
    double left = end - mono_ms();
    if (left <= 0 || *cancel)
      return EDDY_OK;
    eddy_control_poll(c, left > 100 ? 100 : (int)left + 1, serve_idle_request, &x);
  }
}

int eddy_control_finish(eddy_control *c, const char *state, const char *savepoint,
                        const char *error, eddy_err *err)
{
  if (c == NULL || c->finished)
    return EDDY_OK;
  c->finished = 1;
  /* the socket goes before the listener closes: a client then finds no
   * socket (the job ended) rather than one that refuses (a crashed job) */
  unlink(c->socket);
  if (c->listen_fd >= 0)
    close(c->listen_fd);
  c->listen_fd = -1;
  int rc = write_status(c, state, epoch_ms(), savepoint, error, err);
  while (c->reqs != NULL) {
    eddy_control_req *r = c->reqs;
    json_t *o = json_object();
    int ok = r->state == REQ_AT_END && r->end_state != NULL && strcmp(r->end_state, state) == 0;
    json_object_set_new(o, "ok", json_boolean(ok));
    json_object_set_new(o, "state", json_string(state));
    const char *sp = r->savepoint != NULL ? r->savepoint : savepoint;
    if (sp != NULL)
      json_object_set_new(o, "savepoint", eddy_control_string(sp));
    if (!ok) {
      char msg[EDDY_ERR_MSG_MAX];
      snprintf(msg, sizeof msg, "the job ended (%s%s%s) before it could answer", state,
               error ? ": " : "", error ? error : "");
      json_object_set_new(o, "error", eddy_control_string(msg));
    }
    eddy_control_reply(c, r, o);
  }
  return rc;
}

void eddy_control_close(eddy_control *c)
{
  if (c == NULL)
    return;
  eddy_err ignored;
  eddy_control_finish(c, "FAILED", NULL, "the job ended without a final state", &ignored);
  free_control(c);
}

/* ---- clients ---- */

static int by_start_desc(const void *a, const void *b)
{
  json_int_t x = json_integer_value(json_object_get(*(json_t *const *)a, "start"));
  json_int_t y = json_integer_value(json_object_get(*(json_t *const *)b, "start"));
  return (x < y) - (x > y);
}

int eddy_control_list(const char *dir, json_t **out, eddy_err *err)
{
  *out = NULL;
  DIR *d = opendir(dir);
  if (d == NULL)
    return eddy_seterr(err, EDDY_EIO, "cannot read the control folder %s: %s", dir,
                       strerror(errno));
  json_t **items = NULL;
  size_t n = 0, cap = 0;
  int rc = EDDY_OK;
  struct dirent *de;
  while ((de = readdir(d)) != NULL) {
    if (!is_status_name(de->d_name))
      continue;
    char *path = join2(dir, de->d_name, "");
    if (path == NULL) {
      rc = oom(err);
      break;
    }
    json_t *st = json_load_file(path, 0, NULL);
    if (st == NULL || !json_is_object(st) || json_string_value(json_object_get(st, "id")) == NULL) {
      json_decref(st); /* not ours, or being replaced: skip it */
      free(path);
      continue;
    }
    if (is_lost(st)) {
      json_t *now = mark_lost(path, st);
      json_decref(st);
      st = now;
    }
    free(path);
    if (n == cap) {
      size_t ncap = cap ? cap * 2 : 32;
      json_t **ni = realloc(items, ncap * sizeof *ni);
      if (ni == NULL) {
        json_decref(st);
        rc = oom(err);
        break;
      }
      items = ni;
      cap = ncap;
    }
    items[n++] = st;
  }
  closedir(d);
  if (rc == EDDY_OK && n > 1)
    qsort(items, n, sizeof *items, by_start_desc);
  json_t *a = rc == EDDY_OK ? json_array() : NULL;
  for (size_t i = 0; i < n; i++) {
    if (a != NULL)
      json_array_append(a, items[i]);
    json_decref(items[i]);
  }
  free(items);
  if (rc == EDDY_OK && a == NULL)
    rc = oom(err);
  *out = a;
  return rc;
}

int eddy_control_request(const char *path, const char *request, int timeout_ms, char **reply,
                         eddy_err *err)
{
  *reply = NULL;
  struct sockaddr_un sa;
  if (strlen(path) >= sizeof sa.sun_path)
    return eddy_seterr(err, EDDY_ELIMIT, "the socket path %s is too long", path);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return eddy_seterr(err, EDDY_EIO, "cannot create a socket: %s", strerror(errno));
  int connect_ms = timeout_ms < 5000 ? timeout_ms : 5000;
  struct timeval tv = {connect_ms / 1000, (connect_ms % 1000) * 1000};
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  memset(&sa, 0, sizeof sa);
  sa.sun_family = AF_UNIX;
  memcpy(sa.sun_path, path, strlen(path) + 1);
  int rc = EDDY_OK;
  if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
    int e = errno;
    close(fd);
    if (e == ENOENT)
      return eddy_seterr(err, EDDY_ENOTFOUND, "%s is gone: the job is not running", path);
    if (e == ECONNREFUSED)
      return eddy_seterr(err, EDDY_ENOTFOUND, "%s refuses connections: the job's process is gone",
                         path);
    if (e == EAGAIN || e == EINPROGRESS || e == ETIMEDOUT)
      return eddy_seterr(err, EDDY_EIO, "the job does not take connections on %s (busy?)", path);
    return eddy_seterr(err, EDDY_EIO, "cannot connect to %s: %s", path, strerror(e));
  }
  /* the other end must be the job's owner (or root), as it checks us */
  if (eddy_control_check_peer(fd, geteuid(), err) != EDDY_OK) {
    close(fd);
    return eddy_err_prefix(err, "%s", path);
  }
  double deadline = mono_ms() + timeout_ms;
  size_t len = strlen(request);
  char *line = malloc(len + 2);
  if (line == NULL) {
    close(fd);
    return oom(err);
  }
  memcpy(line, request, len);
  line[len] = '\n';
  size_t done = 0;
  int send_errno = 0;
  while (done < len + 1) {
    ssize_t w = send(fd, line + done, len + 1 - done, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0) {
      /* the job may have answered and hung up before reading (a refused
       * peer): its answer is still there to read */
      send_errno = w < 0 ? errno : EPIPE;
      break;
    }
    done += (size_t)w;
  }
  free(line);
  char *buf = NULL;
  size_t n = 0, cap = 0;
  while (rc == EDDY_OK) {
    int left = (int)(deadline - mono_ms());
    if (left <= 0) {
      rc = eddy_seterr(err, EDDY_EIO, "no answer from the job within %d s (it may be busy in a "
                       "function that does not return)", (timeout_ms + 999) / 1000);
      break;
    }
    struct pollfd pfd = {fd, POLLIN, 0};
    int k = poll(&pfd, 1, left);
    if (k < 0 && errno == EINTR)
      continue;
    if (k <= 0)
      continue; /* the deadline check above ends it */
    if (cap - n < 4096) {
      size_t ncap = cap ? cap * 2 : 8192;
      char *nb = realloc(buf, ncap);
      if (nb == NULL) {
        rc = oom(err);
        break;
      }
      buf = nb;
      cap = ncap;
    }
    ssize_t got = recv(fd, buf + n, cap - n - 1, 0);
    if (got < 0 && errno == EINTR)
      continue;
    if (got < 0) {
      rc = eddy_seterr(err, EDDY_EIO, "cannot read the answer from %s: %s", path, strerror(errno));
      break;
    }
    if (got == 0) {
      if (send_errno != 0)
        rc = eddy_seterr(err, EDDY_EIO, "cannot send the request to %s: %s", path,
                         strerror(send_errno));
      else
        rc = eddy_seterr(err, EDDY_EIO, "the job closed the connection without answering");
      break;
    }
    char *nl = memchr(buf + n, '\n', (size_t)got);
    n += (size_t)got;
    if (nl != NULL) {
      *nl = '\0';
      *reply = buf;
      buf = NULL;
      break;
    }
  }
  free(buf);
  close(fd);
  return rc;
}
