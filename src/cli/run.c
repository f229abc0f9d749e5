/*
 * `eddy run [opts] job.lua [args]`: the batch runner. Options are checked
 * here, before any Lua runs, so bad usage exits 2 without side effects; what
 * they mean is the module's business: they reach it as one table through
 * eddy._cli_defaults(opts) before the script runs. The script then runs as
 * stock lua runs one (`arg`, and its arguments as `...`), and the exit status
 * comes from the pcall status.
 */
#include "cli/cli.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <lauxlib.h>

#include "runtime/control.h"

/* The command line, checked. Strings point into argv. */
struct run_opts {
  int argc;
  char **argv;
  int script;                   /* index of the script in argv */
  int parallelism;              /* 0: not given */
  const char *restore;          /* -s PATH */
  const char *resume;           /* --resume: NULL not given, "" without DIR */
  int allow_non_restored;
  int detached;
  int notify_fd;                /* detached, in the background process: where
                                   the first job writes its id; else -1 */
  char log[PATH_MAX + 64];      /* detached: the log, in the control folder */
  int trace;
  int help;
  const char **defines;         /* every -D, "key=value" */
  int ndefines;
};

/*
 * Whether argv[*i] is the option named short_name ("-p", may be NULL) or
 * long_name ("--parallelism", may be NULL) and takes a value: "-p 4", "-p4",
 * "--parallelism 4", "--parallelism=4". On a match *value is the value (NULL
 * when it is missing) and *i the last argument used.
 */
static int option_value(const struct run_opts *o, int *i, const char *short_name,
                        const char *long_name, const char **value)
{
  const char *a = o->argv[*i];
  size_t n;

  if ((short_name != NULL && strcmp(a, short_name) == 0)
      || (long_name != NULL && strcmp(a, long_name) == 0)) {
    *value = *i + 1 < o->argc ? o->argv[++*i] : NULL;
    return 1;
  }
  if (short_name != NULL && strncmp(a, short_name, 2) == 0 && a[1] != '-') {
    *value = a + 2;  /* glued: -p4, -Dkey=value */
    return 1;
  }
  n = long_name != NULL ? strlen(long_name) : 0;
  if (n > 0 && strncmp(a, long_name, n) == 0 && a[n] == '=') {
    *value = a + n + 1;
    return 1;
  }
  return 0;
}

static int parse_parallelism(const char *s, int *out)
{
  char *end;
  long v;

  if (s == NULL || *s < '0' || *s > '9')  /* no sign, no blanks */
    return 0;
  v = strtol(s, &end, 10);
  /* Flink's bound on parallelism (and max parallelism) */
  if (*end != '\0' || v < 1 || v > 32768)
    return 0;
  *out = (int)v;
  return 1;
}

static int is_directory(const char *path)
{
  struct stat st;
  return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int looks_like_script(const char *s)
{
  size_t n = strlen(s);
  return n >= 4 && strcmp(s + n - 4, ".lua") == 0;
}

/*
 * --resume takes an optional DIR, which makes `--resume job.lua` ambiguous:
 * the next argument is the DIR when it is a folder, or when it does not look
 * like a script and something after it can be the script. --resume=DIR is
 * never ambiguous.
 */
static int resume_takes_next(const struct run_opts *o, int i)
{
  const char *next = i + 1 < o->argc ? o->argv[i + 1] : NULL;

  if (next == NULL || next[0] == '-')
    return 0;
  if (is_directory(next))
    return 1;
  return !looks_like_script(next) && i + 2 < o->argc;
}

/* Fills o from argv; returns CLI_OK or, after a message, CLI_USAGE. */
static int parse(struct run_opts *o)
{
  int i = 2;  /* after "eddy run" */
  const char *v;

  while (i < o->argc) {
    const char *a = o->argv[i];

    if (a[0] != '-' || a[1] == '\0')
      break;  /* the script ("-" is stdin): options stop here */
    if (strcmp(a, "--") == 0) {
      i++;
      break;
    }
    if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
      o->help = 1;
      return CLI_OK;
    }
    else if (option_value(o, &i, "-p", "--parallelism", &v)) {
      if (v == NULL)
        return cli_usage_error("option '%s' needs a value", a);
      if (!parse_parallelism(v, &o->parallelism))
        return cli_usage_error("-p: expected an integer from 1 to 32768, got '%s'", v);
    }
    else if (option_value(o, &i, "-D", NULL, &v)) {
      if (v == NULL)
        return cli_usage_error("option '-D' needs key=value");
      if (strchr(v, '=') == NULL || v[0] == '=')
        return cli_usage_error("-D: expected key=value, got '%s'", v);
      o->defines[o->ndefines++] = v;
    }
    else if (option_value(o, &i, "-s", "--from-savepoint", &v)) {
      if (v == NULL || *v == '\0')
        return cli_usage_error("option '%s' needs a path", a);
      o->restore = v;
    }
    else if (strncmp(a, "--resume=", 9) == 0) {
      if (a[9] == '\0')
        return cli_usage_error("option '--resume=' needs a folder");
      o->resume = a + 9;
    }
    else if (strcmp(a, "--resume") == 0)
      o->resume = resume_takes_next(o, i) ? o->argv[++i] : "";
    else if (strcmp(a, "--allow-non-restored-state") == 0)
      o->allow_non_restored = 1;
    else if (strcmp(a, "-d") == 0 || strcmp(a, "--detached") == 0)
      o->detached = 1;
    else if (strcmp(a, "--trace") == 0)
      o->trace = 1;
    else
      return cli_usage_error("unknown option '%s' for 'eddy run'", a);
    i++;
  }
  if (i >= o->argc)
    return cli_usage_error("'eddy run' needs a job script");
  o->script = i;
  return CLI_OK;
}

/* Pushes the table eddy._cli_defaults receives: a field per option given,
 * and flink (every -D, values as strings) always. */
static void push_opts(lua_State *L, const struct run_opts *o)
{
  lua_createtable(L, 0, 7);
  if (o->parallelism > 0) {
    lua_pushinteger(L, o->parallelism);
    lua_setfield(L, -2, "parallelism");
  }
  lua_createtable(L, 0, o->ndefines);
  for (int i = 0; i < o->ndefines; i++) {
    const char *eq = strchr(o->defines[i], '=');
    lua_pushlstring(L, o->defines[i], (size_t)(eq - o->defines[i]));
    lua_pushstring(L, eq + 1);
    lua_rawset(L, -3);  /* a repeated key: the last one wins */
  }
  lua_setfield(L, -2, "flink");
  if (o->restore != NULL) {
    lua_pushstring(L, o->restore);
    lua_setfield(L, -2, "restore");
  }
  if (o->allow_non_restored) {
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "allow_non_restored_state");
  }
  if (o->resume != NULL) {
    if (*o->resume != '\0')
      lua_pushstring(L, o->resume);
    else
      lua_pushboolean(L, 1);
    lua_setfield(L, -2, "resume");
  }
  if (o->detached) {
    /* {fd =, log =}: see Job:_open_control */
    lua_createtable(L, 0, 2);
    if (o->notify_fd >= 0) {
      lua_pushinteger(L, o->notify_fd);
      lua_setfield(L, -2, "fd");
    }
    if (o->log[0] != '\0') {
      lua_pushstring(L, o->log);
      lua_setfield(L, -2, "log");
    }
    lua_setfield(L, -2, "detached");
  }
  if (o->trace) {
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "trace");
  }
}

static int any_option(const struct run_opts *o)
{
  return o->parallelism > 0 || o->ndefines > 0 || o->restore != NULL
         || o->resume != NULL || o->allow_non_restored || o->detached || o->trace;
}

/* The whole run, under one protected call: every failure is a Lua error. */
static int l_run(lua_State *L)
{
  const struct run_opts *o = lua_touserdata(L, 1);
  const char *script = o->argv[o->script];
  int nargs = o->argc - o->script - 1;

  cli_open(L, o->argc, o->argv, o->script);
  lua_getglobal(L, "eddy");
  if (lua_getfield(L, -1, "_cli_defaults") == LUA_TFUNCTION) {
    push_opts(L, o);
    lua_call(L, 1, 0);
  }
  else if (any_option(o))
    luaL_error(L, "this eddy module takes no command-line options");
  lua_settop(L, 1);
  if (luaL_loadfile(L, strcmp(script, "-") == 0 ? NULL : script) != LUA_OK)
    return lua_error(L);  /* "cannot open job.lua: ..." or a syntax error */
  luaL_checkstack(L, nargs, "too many arguments to the script");
  for (int i = o->script + 1; i < o->argc; i++)
    lua_pushstring(L, o->argv[i]);
  lua_call(L, nargs, 0);
  return 0;
}

/* The last line of the log that says something, to stderr. */
static int report_log_tail(const char *log)
{
  FILE *f = fopen(log, "r");
  char line[4096], last[4096] = "";
  if (f == NULL)
    return 0;
  while (fgets(line, sizeof line, f) != NULL)
    if (line[0] != '\n')
      memcpy(last, line, sizeof line);
  fclose(f);
  if (last[0] == '\0')
    return 0;
  fputs(last, stderr);
  if (last[strlen(last) - 1] != '\n')
    fputc('\n', stderr);
  return 1;
}

/*
 * eddy run -d: the script goes on in a background process of its own
 * session, its output in a log in the control folder; this one prints the
 * id of the first job the script runs (it arrives on a pipe once that
 * job's control socket listens), or, if the script ends or fails before
 * running one, the last line of its log. *background says which process
 * returns: the background one carries on with the run.
 */
static int run_detached(struct run_opts *o, int *background)
{
  char dir[PATH_MAX];
  eddy_err err;
  int fds[2];
  pid_t pid;

  *background = 0;
  if (eddy_control_dir(dir, sizeof dir, &err) != EDDY_OK) {
    fprintf(stderr, "eddy: run --detached: %s\n", err.msg);
    return CLI_FAIL;
  }
  if (pipe2(fds, O_CLOEXEC) != 0) {
    fprintf(stderr, "eddy: run --detached: cannot make a pipe: %s\n", strerror(errno));
    return CLI_FAIL;
  }
  fflush(stdout);
  fflush(stderr);
  pid = fork();
  if (pid < 0) {
    fprintf(stderr, "eddy: run --detached: cannot fork: %s\n", strerror(errno));
    close(fds[0]);
    close(fds[1]);
    return CLI_FAIL;
  }
  if (pid == 0) {
    int null_fd, log_fd;

    close(fds[0]);
    setsid();  /* no terminal: Ctrl-C and hang-ups of the shell do not reach it */
    snprintf(o->log, sizeof o->log, "%s/run-%ld.log", dir, (long)getpid());
    log_fd = open(o->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (log_fd < 0 || null_fd < 0) {
      fprintf(stderr, "eddy: run --detached: cannot open %s: %s\n", o->log, strerror(errno));
      _exit(CLI_FAIL);
    }
    dup2(null_fd, STDIN_FILENO);
    dup2(log_fd, STDOUT_FILENO);
    dup2(log_fd, STDERR_FILENO);
    close(null_fd);
    close(log_fd);
    setvbuf(stdout, NULL, _IOLBF, 0);  /* a log is read while it grows */
    o->notify_fd = fds[1];
    *background = 1;
    return CLI_OK;
  }
  close(fds[1]);
  char id[160];
  size_t n = 0;
  for (;;) {
    ssize_t got = read(fds[0], id + n, sizeof id - 1 - n);
    if (got < 0 && errno == EINTR)
      continue;
    if (got <= 0)
      break;
    n += (size_t)got;
    if (memchr(id, '\n', n) != NULL || n == sizeof id - 1)
      break;
  }
  close(fds[0]);
  id[n] = '\0';
  char *nl = strchr(id, '\n');
  if (nl != NULL) {
    *nl = '\0';
    printf("%s\n", id);
    return CLI_OK;
  }
  /* no job started: the background process has ended (the pipe closed) */
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
    ;
  char log[PATH_MAX + 64];
  snprintf(log, sizeof log, "%s/run-%ld.log", dir, (long)pid);
  int failed = !WIFEXITED(status) || WEXITSTATUS(status) != 0;
  if (!failed || !report_log_tail(log))
    fprintf(stderr, "eddy: %s ended without running a job (log: %s)\n", o->argv[o->script], log);
  else
    unlink(log);  /* its one message is on stderr now */
  return failed && WIFEXITED(status) ? WEXITSTATUS(status) : CLI_FAIL;
}

int cli_run(int argc, char **argv)
{
  struct run_opts o;
  lua_State *L;
  int rc;

  memset(&o, 0, sizeof o);
  o.argc = argc;
  o.argv = argv;
  o.notify_fd = -1;
  o.defines = malloc((size_t)argc * sizeof *o.defines);
  if (o.defines == NULL) {
    fputs("eddy: not enough memory\n", stderr);
    return CLI_FAIL;
  }
  rc = parse(&o);
  if (rc == CLI_OK && o.help)
    cli_print_usage();
  if (rc == CLI_OK && o.detached && strcmp(o.argv[o.script], "-") == 0)
    rc = cli_usage_error("a detached job cannot read its script from standard input");
  if (rc != CLI_OK || o.help) {
    free(o.defines);
    return rc;
  }
  if (o.detached) {
    int background;

    rc = run_detached(&o, &background);
    if (!background) {
      free(o.defines);
      return rc;
    }
  }
  L = cli_newstate();
  if (L == NULL) {
    free(o.defines);
    return CLI_FAIL;
  }
  lua_pushcfunction(L, l_run);
  lua_pushlightuserdata(L, &o);
  rc = CLI_OK;
  if (cli_docall(L, 1, 0) != LUA_OK) {
    rc = cli_interrupted(L) ? CLI_INTERRUPTED : CLI_FAIL;
    if (rc == CLI_INTERRUPTED && isatty(STDERR_FILENO))
      fputc('\n', stderr);  /* after the ^C the terminal echoed */
    cli_report(L, "eddy: ", 1);
  }
  fflush(stdout);
  cli_closestate(L);  /* __gc and __close of the script's objects run here */
  free(o.defines);
  return rc;
}
