/*
 * Job control without a job: the control folder's checks, a server's
 * socket and status file, request and reply round trips with a client on
 * a thread, requests left to the job's end, malformed and unknown
 * requests, a stale socket of a dead process, a second server for the same
 * id, pruning of old status files, and (when the test runs as root) a
 * request from another uid, which SO_PEERCRED must refuse.
 */
#include "test.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "runtime/control.h"

/* ---- helpers ---- */

static int mode_of(const char *p)
{
  struct stat st;
  return lstat(p, &st) == 0 ? (int)(st.st_mode & 07777) : -1;
}

static int exists(const char *p)
{
  struct stat st;
  return lstat(p, &st) == 0;
}

static json_t *load(const char *p)
{
  return json_load_file(p, 0, NULL);
}

static const char *str_of(json_t *o, const char *key)
{
  return json_string_value(json_object_get(o, key));
}

/* A client on a thread, so the test's thread can serve it. */
typedef struct client {
  pthread_t thread;
  const char *socket;
  const char *request;
  int rc;
  char *reply;
  eddy_err err;
  volatile int done;
} client;

static void *client_main(void *arg)
{
  client *cl = arg;
  cl->rc = eddy_control_request(cl->socket, cl->request, 5000, &cl->reply, &cl->err);
  cl->done = 1;
  return NULL;
}

static void client_start(client *cl, const char *socket, const char *request)
{
  memset(cl, 0, sizeof *cl);
  cl->socket = socket;
  cl->request = request;
  CHECK(pthread_create(&cl->thread, NULL, client_main, cl) == 0);
}

static void client_join(client *cl)
{
  pthread_join(cl->thread, NULL);
}

/* What the test's handler saw, and what it does with it. */
typedef struct handled {
  int count;
  char last[64];
  int keep; /* leave requests to the end instead of answering */
} handled;

static void handler(void *ud, eddy_control *c, eddy_control_req *r)
{
  handled *h = ud;
  h->count++;
  snprintf(h->last, sizeof h->last, "%s", eddy_control_req_name(r));
  if (h->keep) {
    eddy_control_reply_at_end(c, r, "STOPPED", "/sp/savepoint-1");
    return;
  }
  json_t *o = json_object();
  json_object_set_new(o, "ok", json_true());
  json_t *dir = json_object_get(eddy_control_req_json(r), "dir");
  if (dir)
    json_object_set(o, "dir", dir);
  eddy_control_reply(c, r, o);
}

/* Serves c until the client is done (at most 5 s). */
static void serve_until(eddy_control *c, client *cl, handled *h)
{
  for (int i = 0; i < 500 && !cl->done; i++)
    eddy_control_poll(c, 10, handler, h);
}

static eddy_control *open_in(const char *dir, const char *id)
{
  eddy_control_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.dir = dir;
  cfg.id = id;
  cfg.name = "test-job";
  cfg.notify_fd = -1;
  eddy_control *c = NULL;
  eddy_err err;
  int rc = eddy_control_open(&c, &cfg, &err);
  if (rc != EDDY_OK)
    fprintf(stderr, "eddy_control_open: %s\n", err.msg);
  CHECK_EQ_INT(rc, EDDY_OK);
  return c;
}

/* ---- tests ---- */

static void test_peer_allowed(void)
{
  CHECK(eddy_control_peer_allowed(1000, 1000));
  CHECK(eddy_control_peer_allowed(0, 1000));     /* root may */
  CHECK(!eddy_control_peer_allowed(1001, 1000));
  CHECK(!eddy_control_peer_allowed(65534, 0));   /* nobody may not touch root's jobs */
  /* a socketpair's peer is this process: allowed */
  int sv[2];
  eddy_err err;
  CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  CHECK_EQ_INT(eddy_control_check_peer(sv[0], geteuid(), &err), EDDY_OK);
  if (geteuid() != 0) {
    CHECK_EQ_INT(eddy_control_check_peer(sv[0], geteuid() + 1, &err), EDDY_EINVAL);
    CHECK(strstr(err.msg, "permission denied") != NULL);
  }
  close(sv[0]);
  close(sv[1]);
}

static void test_check_dir(void)
{
  char *tmp = test_tmpdir();
  eddy_err err;
  const char *d = pathf("%s/eddy", tmp);
  CHECK(mkdir(d, 0700) == 0);
  CHECK_EQ_INT(eddy_control_check_dir(d, geteuid(), &err), EDDY_OK);
  /* open to others: refused, with the fix in the message */
  chmod(d, 0755);
  CHECK_EQ_INT(eddy_control_check_dir(d, geteuid(), &err), EDDY_EINVAL);
  CHECK(strstr(err.msg, "open to group or others (mode 0755; chmod 700 it)") != NULL);
  chmod(d, 0710);
  CHECK_EQ_INT(eddy_control_check_dir(d, geteuid(), &err), EDDY_EINVAL);
  chmod(d, 0700);
  /* someone else's */
  CHECK_EQ_INT(eddy_control_check_dir(d, geteuid() + 1, &err), EDDY_EINVAL);
  CHECK(strstr(err.msg, "belongs to uid") != NULL);
  /* a link to a good folder, and a file */
  const char *link = pathf("%s/link", tmp);
  CHECK(symlink(d, link) == 0);
  CHECK_EQ_INT(eddy_control_check_dir(link, geteuid(), &err), EDDY_EINVAL);
  CHECK(strstr(err.msg, "not a folder") != NULL);
  const char *file = pathf("%s/file", tmp);
  FILE *f = fopen(file, "w");
  CHECK(f != NULL);
  if (f)
    fclose(f);
  CHECK_EQ_INT(eddy_control_check_dir(file, geteuid(), &err), EDDY_EINVAL);
  CHECK_EQ_INT(eddy_control_check_dir(pathf("%s/none", tmp), geteuid(), &err), EDDY_EIO);

  /* eddy_control_dir: $XDG_RUNTIME_DIR/eddy, made 0700 */
  const char *old = getenv("XDG_RUNTIME_DIR");
  char *saved = old ? strdup(old) : NULL;
  setenv("XDG_RUNTIME_DIR", tmp, 1);
  char buf[4096];
  rmdir(d);
  CHECK_EQ_INT(eddy_control_dir(buf, sizeof buf, &err), EDDY_OK);
  CHECK_EQ_STR(buf, d);
  CHECK_EQ_INT(mode_of(d), 0700);
  chmod(d, 0777);
  CHECK_EQ_INT(eddy_control_dir(buf, sizeof buf, &err), EDDY_EINVAL);
  /* a folder too long for a path */
  CHECK_EQ_INT(eddy_control_dir(buf, 8, &err), EDDY_ELIMIT);
  /* an XDG_RUNTIME_DIR that does not exist */
  setenv("XDG_RUNTIME_DIR", pathf("%s/missing", tmp), 1);
  CHECK_EQ_INT(eddy_control_dir(buf, sizeof buf, &err), EDDY_EIO);
  CHECK(strstr(err.msg, "cannot create the control folder") != NULL);
  if (saved) {
    setenv("XDG_RUNTIME_DIR", saved, 1);
    free(saved);
  } else {
    unsetenv("XDG_RUNTIME_DIR");
  }
  test_rmdir(tmp);
}

static void test_round_trip(void)
{
  char *tmp = test_tmpdir();
  eddy_err err;
  eddy_control *c = open_in(tmp, "job1");
  if (c == NULL) {
    test_rmdir(tmp);
    return;
  }
  /* the socket and the status file, private */
  CHECK_EQ_STR(eddy_control_socket(c), pathf("%s/job1.sock", tmp));
  CHECK_EQ_INT(mode_of(eddy_control_socket(c)), 0600);
  CHECK_EQ_INT(mode_of(pathf("%s/job1.json", tmp)), 0600);
  json_t *st = load(pathf("%s/job1.json", tmp));
  CHECK_EQ_STR(str_of(st, "state"), "RUNNING");
  CHECK_EQ_STR(str_of(st, "name"), "test-job");
  CHECK_EQ_INT(json_integer_value(json_object_get(st, "pid")), getpid());
  CHECK(json_object_get(st, "end") == NULL);
  json_decref(st);

  /* a request and its answer */
  handled h = {0};
  client cl;
  client_start(&cl, eddy_control_socket(c), "{\"request\":\"savepoint\",\"dir\":\"/x\"}");
  serve_until(c, &cl, &h);
  client_join(&cl);
  CHECK_EQ_INT(cl.rc, EDDY_OK);
  CHECK_EQ_STR(cl.reply, "{\"ok\":true,\"dir\":\"/x\"}");
  CHECK_EQ_STR(h.last, "savepoint");
  free(cl.reply);

  /* not JSON, not an object, no request, an unknown one: answered with an
   * error, the handler never sees them */
  const char *bad[] = {"{nope", "[1,2]", "{\"dir\":\"/x\"}", "{\"request\":\"reboot\"}"};
  const char *says[] = {"one JSON object on a line", "not an object", "a request needs",
                        "unknown request \\\"reboot\\\""};
  for (int i = 0; i < 4; i++) {
    client_start(&cl, eddy_control_socket(c), bad[i]);
    serve_until(c, &cl, &h);
    client_join(&cl);
    CHECK_EQ_INT(cl.rc, EDDY_OK);
    CHECK(cl.reply != NULL && strstr(cl.reply, "\"ok\":false") != NULL);
    CHECK(cl.reply != NULL && strstr(cl.reply, says[i]) != NULL);
    free(cl.reply);
  }
  CHECK_EQ_INT(h.count, 1);

  /* a request left to the end is answered by finish, with the state */
  h.keep = 1;
  client_start(&cl, eddy_control_socket(c), "{\"request\":\"stop\"}");
  for (int i = 0; i < 500 && h.count < 2; i++)
    eddy_control_poll(c, 10, handler, &h);
  CHECK_EQ_INT(h.count, 2);
  CHECK(!cl.done);
  json_t *info = json_object();
  json_object_set_new(info, "vertices", json_array());
  eddy_control_set_info(c, info);
  CHECK_EQ_INT(eddy_control_finish(c, "STOPPED", "/sp/savepoint-1", NULL, &err), EDDY_OK);
  client_join(&cl);
  CHECK_EQ_INT(cl.rc, EDDY_OK);
  CHECK_EQ_STR(cl.reply, "{\"ok\":true,\"state\":\"STOPPED\",\"savepoint\":\"/sp/savepoint-1\"}");
  free(cl.reply);
  /* the socket is gone, the status says how it ended, with the last info */
  CHECK(!exists(pathf("%s/job1.sock", tmp)));
  st = load(pathf("%s/job1.json", tmp));
  CHECK_EQ_STR(str_of(st, "state"), "STOPPED");
  CHECK_EQ_STR(str_of(st, "savepoint"), "/sp/savepoint-1");
  CHECK(json_integer_value(json_object_get(st, "end")) >= json_integer_value(json_object_get(st, "start")));
  CHECK(json_is_object(json_object_get(st, "info")));
  CHECK(json_object_get(st, "socket") == NULL);
  json_decref(st);
  /* once only */
  CHECK_EQ_INT(eddy_control_finish(c, "FAILED", NULL, "x", &err), EDDY_OK);
  st = load(pathf("%s/job1.json", tmp));
  CHECK_EQ_STR(str_of(st, "state"), "STOPPED");
  json_decref(st);
  eddy_control_close(c);

  /* a job that is gone: a clear message, no wait */
  char *reply = NULL;
  CHECK_EQ_INT(eddy_control_request(pathf("%s/job1.sock", tmp), "{}", 1000, &reply, &err),
               EDDY_ENOTFOUND);
  CHECK(strstr(err.msg, "the job is not running") != NULL);
  CHECK(reply == NULL);
  test_rmdir(tmp);
}

/* A request waiting at the end, when the job fails or is closed without
 * a state: an error, and the status FAILED. */
static void test_end_without_state(void)
{
  char *tmp = test_tmpdir();
  eddy_control *c = open_in(tmp, "job2");
  if (c == NULL) {
    test_rmdir(tmp);
    return;
  }
  handled h = {.keep = 1};
  client cl;
  client_start(&cl, eddy_control_socket(c), "{\"request\":\"cancel\"}");
  for (int i = 0; i < 500 && h.count < 1; i++)
    eddy_control_poll(c, 10, handler, &h);
  eddy_control_fail_waiting(c, "the job failed: %s", "boom");
  client_join(&cl);
  CHECK(cl.reply != NULL && strstr(cl.reply, "the job failed: boom") != NULL);
  free(cl.reply);
  eddy_control_close(c);
  json_t *st = load(pathf("%s/job2.json", tmp));
  CHECK_EQ_STR(str_of(st, "state"), "FAILED");
  CHECK_EQ_STR(str_of(st, "error"), "the job ended without a final state");
  json_decref(st);
  test_rmdir(tmp);
}

/* kill -9 leaves a RUNNING status and a socket nobody listens on */
static void test_stale(void)
{
  char *tmp = test_tmpdir();
  eddy_err err;
  /* a dead pid: a child that exited and was reaped */
  pid_t dead = fork();
  if (dead == 0)
    _exit(0);
  waitpid(dead, NULL, 0);
  const char *sock = pathf("%s/gone.sock", tmp);
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  struct sockaddr_un sa;
  memset(&sa, 0, sizeof sa);
  sa.sun_family = AF_UNIX;
  snprintf(sa.sun_path, sizeof sa.sun_path, "%s", sock);
  CHECK(bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
  CHECK(listen(fd, 1) == 0);
  close(fd); /* the file stays, nobody listens */
  FILE *f = fopen(pathf("%s/gone.json", tmp), "w");
  CHECK(f != NULL);
  if (f) {
    fprintf(f, "{\"id\":\"gone\",\"name\":\"x\",\"state\":\"RUNNING\",\"pid\":%ld,\"start\":1,"
            "\"socket\":\"%s\"}", (long)dead, sock);
    fclose(f);
  }
  /* the same for a live pid whose socket refuses: a reused pid */
  const char *sock2 = pathf("%s/reused.sock", tmp);
  fd = socket(AF_UNIX, SOCK_STREAM, 0);
  snprintf(sa.sun_path, sizeof sa.sun_path, "%s", sock2);
  CHECK(bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
  close(fd);
  f = fopen(pathf("%s/reused.json", tmp), "w");
  if (f) {
    fprintf(f, "{\"id\":\"reused\",\"name\":\"y\",\"state\":\"RUNNING\",\"pid\":%ld,\"start\":2,"
            "\"socket\":\"%s\"}", (long)getpid(), sock2);
    fclose(f);
  }
  /* and a live one, which stays RUNNING */
  eddy_control *live = open_in(tmp, "live");
  json_t *list = NULL;
  CHECK_EQ_INT(eddy_control_list(tmp, &list, &err), EDDY_OK);
  CHECK_EQ_INT(json_array_size(list), 3);
  /* newest start first */
  CHECK_EQ_STR(str_of(json_array_get(list, 0), "id"), "live");
  CHECK_EQ_STR(str_of(json_array_get(list, 0), "state"), "RUNNING");
  CHECK_EQ_STR(str_of(json_array_get(list, 1), "id"), "reused");
  CHECK_EQ_STR(str_of(json_array_get(list, 1), "state"), "LOST");
  CHECK_EQ_STR(str_of(json_array_get(list, 2), "state"), "LOST");
  CHECK(strstr(str_of(json_array_get(list, 2), "error"), "ended without saying how") != NULL);
  json_decref(list);
  CHECK(!exists(sock));
  CHECK(!exists(sock2));
  json_t *st = load(pathf("%s/gone.json", tmp));
  CHECK_EQ_STR(str_of(st, "state"), "LOST");
  json_decref(st);

  /* a second server for a live id is refused; a stale one is replaced */
  eddy_control_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.dir = tmp;
  cfg.id = "live";
  cfg.notify_fd = -1;
  eddy_control *twice = NULL;
  CHECK_EQ_INT(eddy_control_open(&twice, &cfg, &err), EDDY_EINVAL);
  CHECK(strstr(err.msg, "running already") != NULL);
  fd = socket(AF_UNIX, SOCK_STREAM, 0);
  snprintf(sa.sun_path, sizeof sa.sun_path, "%s", pathf("%s/again.sock", tmp));
  CHECK(bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
  close(fd);
  eddy_control *again = open_in(tmp, "again");
  CHECK(again != NULL);
  eddy_control_close(again);
  eddy_control_close(live);

  /* bad ids */
  cfg.id = "../x";
  CHECK_EQ_INT(eddy_control_open(&twice, &cfg, &err), EDDY_EINVAL);
  cfg.id = "";
  CHECK_EQ_INT(eddy_control_open(&twice, &cfg, &err), EDDY_EINVAL);
  test_rmdir(tmp);
}

/* the status files of ended jobs do not pile up */
static void test_prune(void)
{
  char *tmp = test_tmpdir();
  for (int i = 0; i < 115; i++) {
    FILE *f = fopen(pathf("%s/old%03d.json", tmp, i), "w");
    if (f) {
      fprintf(f, "{\"id\":\"old%03d\",\"state\":\"FINISHED\",\"pid\":1,\"start\":%d}", i, i);
      fclose(f);
    }
  }
  FILE *f = fopen(pathf("%s/old000.log", tmp), "w");
  if (f)
    fclose(f);
  /* the oldest by modification time go first */
  struct timespec times[2] = {{1, 0}, {1, 0}};
  utimensat(AT_FDCWD, pathf("%s/old114.json", tmp), times, 0);
  eddy_control *c = open_in(tmp, "new");
  eddy_err err;
  json_t *list = NULL;
  CHECK_EQ_INT(eddy_control_list(tmp, &list, &err), EDDY_OK);
  CHECK_EQ_INT(json_array_size(list), 101);
  json_decref(list);
  CHECK(exists(pathf("%s/new.json", tmp)));
  CHECK(!exists(pathf("%s/old114.json", tmp)));
  eddy_control_close(c);
  test_rmdir(tmp);
}

/* A peer of another uid: only testable as root, which can become one. */
static void test_other_uid(void)
{
  if (geteuid() != 0) {
    printf("control: not root, the SO_PEERCRED refusal is tested by test_peer_allowed only\n");
    return;
  }
  char *tmp = test_tmpdir();
  eddy_control *c = open_in(tmp, "rootjob");
  if (c == NULL) {
    test_rmdir(tmp);
    return;
  }
  /* open the way for the test only: the folder's 0700 would stop the
   * other user before the socket could */
  chmod(tmp, 0711);
  chmod(eddy_control_socket(c), 0666);
  int fds[2];
  CHECK(pipe(fds) == 0);
  pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    if (setgid(65534) != 0 || setuid(65534) != 0)
      _exit(3);
    char *reply = NULL;
    eddy_err err;
    int rc = eddy_control_request(eddy_control_socket(c), "{\"request\":\"stop\"}", 3000, &reply,
                                  &err);
    const char *out = rc == EDDY_OK ? reply : err.msg;
    ssize_t w = write(fds[1], out, strlen(out));
    (void)w;
    _exit(0);
  }
  close(fds[1]);
  handled h = {0};
  int status = 0;
  for (int i = 0; i < 500; i++) {
    eddy_control_poll(c, 10, handler, &h);
    if (waitpid(pid, &status, WNOHANG) == pid)
      break;
  }
  char buf[2048] = "";
  ssize_t n = read(fds[0], buf, sizeof buf - 1);
  buf[n > 0 ? n : 0] = '\0';
  close(fds[0]);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  if (strstr(buf, "\"ok\":false") == NULL)
    fprintf(stderr, "other uid got: %s\n", buf);
  CHECK(strstr(buf, "\"ok\":false") != NULL);
  CHECK(strstr(buf, "permission denied: the job belongs to uid 0, the request comes from uid 65534")
        != NULL);
  CHECK_EQ_INT(h.count, 0); /* the handler never saw it */
  eddy_control_close(c);
  test_rmdir(tmp);
}

/* a peer that connects and sends nothing is dropped, not waited for */
static void test_silent_peer(void)
{
  char *tmp = test_tmpdir();
  eddy_control *c = open_in(tmp, "quiet");
  if (c == NULL) {
    test_rmdir(tmp);
    return;
  }
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  struct sockaddr_un sa;
  memset(&sa, 0, sizeof sa);
  sa.sun_family = AF_UNIX;
  snprintf(sa.sun_path, sizeof sa.sun_path, "%s", eddy_control_socket(c));
  CHECK(connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
  handled h = {0};
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  eddy_control_poll(c, 0, handler, &h); /* accepted, nothing to read */
  eddy_control_poll(c, 0, handler, &h);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  CHECK(t1.tv_sec - t0.tv_sec < 2); /* polls with 0 do not wait */
  close(fd);
  eddy_control_poll(c, 100, handler, &h); /* EOF: dropped quietly */
  CHECK_EQ_INT(h.count, 0);
  eddy_control_close(c);
  test_rmdir(tmp);
}

TEST_MAIN("control", TEST(test_peer_allowed), TEST(test_check_dir), TEST(test_round_trip),
          TEST(test_end_without_state), TEST(test_stale), TEST(test_prune), TEST(test_other_uid),
          TEST(test_silent_peer))
