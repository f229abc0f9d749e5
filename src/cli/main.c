/*
 * bin/eddy: one executable for the REPL, the job runner and the job-control
 * client (list, info, savepoint, stop, cancel, in lua/eddy/commands.lua).
 * This file dispatches on argv[1] and holds what the runner and the REPL
 * share, built from the parts of Lua's own lua.c:
 * a state with the standard libraries and the eddy module preloaded, calls
 * under lua_pcall with a traceback message handler, and a SIGINT handler that
 * only sets a hook, so that the running Lua code stops itself at the next
 * call, return or instruction, where raising an error is safe.
 */
#include "cli/cli.h"

#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lualib.h>

#include "lua/core.h"
#include "util/interrupt.h"

/*
 * The state Ctrl-C stops. A signal handler gets no context, so this has to be
 * a global, as in lua.c; readline's completion callback reuses it for the
 * same reason.
 */
static lua_State *globalL;

/* Registry key (its address) of the traceback of the last error. */
static const char traceback_key = 't';

lua_State *cli_newstate(void)
{
  lua_State *L = luaL_newstate();

  if (L == NULL) {
    fputs("eddy: cannot create a Lua state: not enough memory\n", stderr);
    return NULL;
  }
  lua_gc(L, LUA_GCGEN, 0, 0);  /* as stock lua5.4 does */
  globalL = L;
  return L;
}

void cli_closestate(lua_State *L)
{
  if (L == globalL)
    globalL = NULL;
  lua_close(L);
}

lua_State *cli_state(void) { return globalL; }

/* --- Ctrl-C ------------------------------------------------------------- */

void cli_set_sigint(void (*handler)(int), struct sigaction *old)
{
  struct sigaction sa;

  memset(&sa, 0, sizeof sa);
  sa.sa_handler = handler;
  sigemptyset(&sa.sa_mask);
  /* No SA_RESTART: a read blocked in C returns EINTR, so control gets back
   * to Lua, where the hook can fire. */
  sa.sa_flags = 0;
  sigaction(SIGINT, &sa, old);
}

/* Runs inside the interpreter at a safe point: only here may we raise. */
static void stop_hook(lua_State *L, lua_Debug *ar)
{
  (void)ar;
  lua_sethook(L, NULL, 0, 0);
  lua_pushliteral(L, "interrupted");  /* no position: the runner matches it */
  lua_error(L);
}

static void on_sigint(int sig)
{
  /* A second Ctrl-C gets the default action: the way out of C code that
   * never returns to Lua nor checks the engine's flag (as lua.c). */
  (void)sig;
  cli_set_sigint(SIG_DFL, NULL);
  eddy_interrupt_request();  /* stops the C executor */
  lua_sethook(globalL, stop_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
}

/* --- protected calls ---------------------------------------------------- */

/*
 * Keeps the message as the error value (the runner prints it on one line)
 * and puts the traceback aside in the registry, for EDDY_TRACEBACK=1.
 */
static int msghandler(lua_State *L)
{
  if (lua_type(L, 1) != LUA_TSTRING && lua_type(L, 1) != LUA_TNUMBER) {
    if (!luaL_callmeta(L, 1, "__tostring") || lua_type(L, -1) != LUA_TSTRING)
      lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
  }
  else
    lua_tostring(L, 1);  /* a number becomes its string in place */
  luaL_traceback(L, L, NULL, 1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &traceback_key);
  return 1;  /* the message, on top */
}

int cli_docall(lua_State *L, int narg, int nres)
{
  struct sigaction old;
  int base = lua_gettop(L) - narg;  /* function index */
  int status;

  lua_pushnil(L);  /* forget the previous traceback (memory errors skip the handler) */
  lua_rawsetp(L, LUA_REGISTRYINDEX, &traceback_key);
  lua_pushcfunction(L, msghandler);
  lua_insert(L, base);  /* put it under the function and arguments */
  globalL = L;
  cli_set_sigint(on_sigint, &old);
  status = lua_pcall(L, narg, nres, base);
  sigaction(SIGINT, &old, NULL);
  lua_remove(L, base);  /* remove message handler */
  return status;
}

static int traceback_wanted(void)
{
  const char *v = getenv("EDDY_TRACEBACK");
  return v != NULL && *v != '\0' && strcmp(v, "0") != 0;
}

/* Writes msg with each line break (and the indentation after it) as one
 * space: a caller parsing stderr sees one line per error. */
static void write_oneline(const char *msg, size_t len, FILE *f)
{
  size_t i = 0;

  while (len > 0 && (msg[len - 1] == '\n' || msg[len - 1] == '\r'
                     || msg[len - 1] == ' ' || msg[len - 1] == '\t'))
    len--;
  while (i < len) {
    if (msg[i] == '\n' || msg[i] == '\r') {
      fputc(' ', f);
      while (i < len && strchr("\r\n\t ", msg[i]) != NULL)
        i++;
    }
    else
      fputc(msg[i++], f);
  }
}

void cli_report(lua_State *L, const char *prefix, int oneline)
{
  size_t len = 0;
  const char *msg = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &len) : NULL;

  if (msg == NULL) {
    msg = "(error object is not a string)";
    len = strlen(msg);
  }
  fflush(stdout);  /* keep the order of what the code printed before */
  fputs(prefix, stderr);
  if (oneline)
    write_oneline(msg, len, stderr);
  else
    fwrite(msg, 1, len, stderr);
  fputc('\n', stderr);
  if (traceback_wanted()) {
    lua_rawgetp(L, LUA_REGISTRYINDEX, &traceback_key);
    if (lua_type(L, -1) == LUA_TSTRING)
      fprintf(stderr, "%s\n", lua_tostring(L, -1));
    lua_pop(L, 1);
  }
  fflush(stderr);
}

int cli_interrupted(lua_State *L)
{
  const char *msg = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;

  /* The flag catches the executor's own error too, whatever its wording. */
  return eddy_interrupt_pending() || (msg != NULL && strcmp(msg, "interrupted") == 0);
}

/* --- the state ---------------------------------------------------------- */

/*
 * Running from a source tree (or an unpacked one), use its lua/ folder,
 * found two levels above the executable (<root>/bin/eddy) or at $EDDY_ROOT.
 * Prepended so the tree's files win over an installed copy.
 */
static void add_root_path(lua_State *L)
{
  char exe[PATH_MAX];
  const char *root = getenv("EDDY_ROOT");
  int found;

  if (root == NULL || *root == '\0') {
    if (realpath("/proc/self/exe", exe) == NULL)
      return;
    for (int up = 0; up < 2; up++) {
      char *slash = strrchr(exe, '/');
      if (slash == NULL)
        return;
      *slash = '\0';  /* "" when the root is "/" */
    }
    root = exe;
  }
  lua_pushfstring(L, "%s/lua/eddy/init.lua", root);
  found = access(lua_tostring(L, -1), R_OK) == 0;
  lua_pop(L, 1);
  if (!found)
    return;  /* an installed eddy: the standard path finds it */
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "path");
  lua_pushfstring(L, "%s/lua/?.lua;%s/lua/?/init.lua;%s", root, root,
                  lua_tostring(L, -1));
  lua_setfield(L, -3, "path");
  lua_pop(L, 2);  /* path, package */
}

/* arg as stock lua builds it: the script at 0, its arguments after it, the
 * executable and the options before it at negative indices. */
static void create_arg(lua_State *L, int argc, char **argv, int script)
{
  int narr = argc - script - 1;

  lua_createtable(L, narr > 0 ? narr : 0, script + 1);
  for (int i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - script);
  }
  lua_setglobal(L, "arg");
}

void cli_open(lua_State *L, int argc, char **argv, int script)
{
  luaL_openlibs(L);
  /* bin/eddy carries the C part: no LUA_CPATH needed. */
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, luaopen_eddy_core);
  lua_setfield(L, -2, "eddy.core");
  lua_pop(L, 1);  /* preload table */
  add_root_path(L);
  create_arg(L, argc, argv, script);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "eddy");
  lua_call(L, 1, 1);
  lua_setglobal(L, "eddy");
}

/* --- usage -------------------------------------------------------------- */

int cli_usage_error(const char *fmt, ...)
{
  va_list ap;

  fputs("eddy: ", stderr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputs(" (see 'eddy --help')\n", stderr);
  return CLI_USAGE;
}

void cli_print_usage(void)
{
  fputs(
    "usage:\n"
    "  eddy                                 the REPL\n"
    "  eddy repl [script.lua]               the REPL after running a script\n"
    "  eddy run [opts] job.lua [args]       run a job script\n"
    "      -p N                             parallelism\n"
    "      -s, --from-savepoint PATH        restore from a savepoint or checkpoint\n"
    "      --allow-non-restored-state       skip state whose operator uid is gone\n"
    "      --resume [DIR]                   restore from the latest retained checkpoint\n"
    "      -D key=value                     configuration (eddy or Flink names)\n"
    "      -d, --detached                   run in the background, print the job id\n"
    "      --trace                          trace the job as it runs\n"
    "      --                               end of options\n"
    "  eddy list [-a]                       running jobs (-a: also finished)\n"
    "  eddy info JOB                        graph, metrics, checkpoint history\n"
    "  eddy savepoint JOB [DIR]             trigger a savepoint, print its path\n"
    "  eddy savepoint -d PATH               dispose of a savepoint\n"
    "  eddy stop JOB [--savepoint-path DIR] [--drain]\n"
    "  eddy cancel JOB [-s DIR]             cancel (with -s: after a savepoint into DIR)\n"
    "  eddy inspect PATH [--operator UID] [--state NAME] [--key K] [--json]\n"
    "  eddy checkpoints [--verify] DIR      completed and in-progress checkpoints\n"
    "  eddy --version | --help\n"
    "\n"
    "Exit status: 0 success, 1 job or user error, 2 bad usage, 130 interrupted.\n"
    "EDDY_TRACEBACK=1 adds the Lua traceback to error messages.\n",
    stdout);
}

/* --- eddy --version ----------------------------------------------------- */

static int l_version(lua_State *L)
{
  char **argv = lua_touserdata(L, 1);

  cli_open(L, 1, argv, 0);
  lua_getglobal(L, "eddy");
  lua_getfield(L, -1, "version");
  printf("eddy %s\n", luaL_optstring(L, -1, "(unknown version)"));
  return 0;
}

static int version(char **argv)
{
  lua_State *L = cli_newstate();
  int rc = CLI_OK;

  if (L == NULL)
    return CLI_FAIL;
  lua_pushcfunction(L, l_version);
  lua_pushlightuserdata(L, argv);
  if (cli_docall(L, 1, 0) != LUA_OK) {
    cli_report(L, "eddy: ", 1);
    rc = CLI_FAIL;
  }
  cli_closestate(L);
  return rc;
}

/* --- commands written in Lua (lua/eddy/commands.lua) ---------------------- */

/* Calls eddy.commands[argv[1]](argv[2], ...); a returned integer is the
 * exit status (2 with a usage message), an error is a one-line failure. */
static int l_lua_command(lua_State *L)
{
  int argc = (int)lua_tointeger(L, 1);
  char **argv = lua_touserdata(L, 2);

  cli_open(L, argc, argv, 0);
  lua_settop(L, 0);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "eddy.commands");
  lua_call(L, 1, 1);
  lua_getfield(L, -1, argv[1]);
  luaL_checkstack(L, argc, "too many arguments");
  for (int i = 2; i < argc; i++)
    lua_pushstring(L, argv[i]);
  lua_call(L, argc - 2, 1);
  return 1;
}

static int lua_command(int argc, char **argv)
{
  lua_State *L = cli_newstate();
  int rc = CLI_OK;

  if (L == NULL)
    return CLI_FAIL;
  lua_pushcfunction(L, l_lua_command);
  lua_pushinteger(L, argc);
  lua_pushlightuserdata(L, argv);
  if (cli_docall(L, 2, 1) != LUA_OK) {
    int interrupted = cli_interrupted(L);
    cli_report(L, "eddy: ", 1);
    rc = interrupted ? CLI_INTERRUPTED : CLI_FAIL;
  }
  else if (lua_isinteger(L, -1))
    rc = (int)lua_tointeger(L, -1);
  cli_closestate(L);
  return rc;
}

static const char *const lua_commands[] = {
  "cancel", "checkpoints", "info", "inspect", "list", "savepoint", "stop", NULL
};

/* --- dispatch ----------------------------------------------------------- */

static int ends_with(const char *s, const char *suffix)
{
  size_t n = strlen(s), m = strlen(suffix);
  return n >= m && strcmp(s + n - m, suffix) == 0;
}

int main(int argc, char **argv)
{
  const char *cmd = argc > 1 ? argv[1] : NULL;

  if (cmd == NULL)
    return cli_repl(argc, argv, 0);
  if (strcmp(cmd, "repl") == 0) {
    if (argc > 2 && argv[2][0] == '-' && argv[2][1] != '\0') {
      if (strcmp(argv[2], "-h") == 0 || strcmp(argv[2], "--help") == 0) {
        cli_print_usage();
        return CLI_OK;
      }
      return cli_usage_error("unknown option '%s' for 'eddy repl'", argv[2]);
    }
    return cli_repl(argc, argv, argc > 2 ? 2 : 0);
  }
  if (strcmp(cmd, "run") == 0)
    return cli_run(argc, argv);
  if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "help") == 0) {
    cli_print_usage();
    return CLI_OK;
  }
  if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0)
    return version(argv);
  for (int i = 0; lua_commands[i] != NULL; i++)
    if (strcmp(cmd, lua_commands[i]) == 0)
      return lua_command(argc, argv);
  if (cmd[0] == '-')
    return cli_usage_error("unknown option '%s'", cmd);
  if (ends_with(cmd, ".lua"))
    return cli_usage_error("unknown command '%s' (to run a script: eddy run %s)", cmd, cmd);
  return cli_usage_error("unknown command '%s'", cmd);
}
