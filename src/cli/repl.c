/*
 * The eddy REPL, for exploring state semantics a line at a time. It follows
 * lua.c: a line is first tried as `return <line>` so expressions print their
 * values (with the module's pretty printer), a chunk cut short (a syntax
 * error at "<eof>") continues on the next line, and everything runs under
 * cli_docall, so an error or a Ctrl-C ends the command, never the session.
 *
 * Input comes from readline on a terminal and from plain lines otherwise (so
 * specs can pipe a session in: no prompts, no history). Readline sits behind
 * line_init / line_read / line_add_history, so it could be swapped.
 */
#include "cli/cli.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <unistd.h>

#include <readline/history.h>
#include <readline/readline.h>

#include <lauxlib.h>

#include "util/interrupt.h"

#define PROMPT "eddy> "
#define PROMPT_MORE ">> "
#define HISTORY_MAX 1000
#define EOFMARK "<eof>"
#define CHUNKNAME "=stdin"

/* Where a Lua word ends, for completion: '.' and ':' stay inside, so that
 * "eddy.wat" and "h:pu" are completed as a whole. */
static const char lua_breaks[] = " \t\n\"'`\\><=;+-*/%^~#&|,()[]{}";
static const char file_breaks[] = " \t\n";

static const char help_text[] =
  "Commands:\n"
  "  .help              this text\n"
  "  .load FILE         run a Lua file in this session (its results are printed)\n"
  "  .quit              leave (so does Ctrl-D on an empty line)\n"
  "\n"
  "A line is evaluated as an expression when it is one: its values are printed\n"
  "with eddy.inspect, one per line. An incomplete chunk continues on the next\n"
  "line (the >> prompt). Ctrl-C stops running code, or clears the line.\n"
  "Tab completes globals, fields (eddy.wat<Tab>) and methods (h:pu<Tab>).\n"
  "\n"
  "The module is the global eddy:\n"
  "  eddy.harness{process = fns, key_by = ...}  step by step: h:push(v [, ts]),\n"
  "      h:watermark(ts), h:advance_processing_time(ms), h:output(), h:state(),\n"
  "      h:timers()\n"
  "  eddy.job{...}                  a job: job:from_collection(t), stream:key_by(f),\n"
  "      keyed:process(uid, fns), keyed:window(w), stream:collect(), job:run()\n"
  "  eddy.watermarks.bounded(d)  eddy.windows.tumbling(size)  .sliding  .session\n"
  "  eddy.inspect(v)  eddy.encode(v)  eddy.decode(s)  eddy.key_group(key)\n"
  "  eddy.savepoint.load(path)   what a checkpoint or savepoint holds\n"
  "State TTL comes in a later version.\n";

static const char *const keywords[] = {
  "and", "break", "do", "else", "elseif", "end", "false", "for", "function",
  "goto", "if", "in", "local", "nil", "not", "or", "repeat", "return", "then",
  "true", "until", "while", NULL
};

enum { LINE_OK, LINE_EOF, LINE_INTERRUPTED };
enum { CHUNK_OK, CHUNK_ERROR, CHUNK_SKIP, CHUNK_EOF, CHUNK_DOT };

struct repl {
  lua_State *L;
  int argc;
  char **argv;
  int script;                   /* index in argv of the script to run first, or 0 */
  int tty;                      /* stdin is a terminal: readline, prompts, history */
  char history[PATH_MAX];       /* the history file, "" for none */
};

/* At the prompt Ctrl-C only raises the flag; the line reader sees it and
 * drops the line. */
static void on_prompt_sigint(int sig)
{
  (void)sig;
  eddy_interrupt_request();
}

/* --- completion --------------------------------------------------------- */

static int is_name(const char *s)
{
  if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || *s == '_'))
    return 0;
  for (const char *p = s + 1; *p != '\0'; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
          || (*p >= '0' && *p <= '9') || *p == '_'))
      return 0;
  for (int i = 0; keywords[i] != NULL; i++)
    if (strcmp(s, keywords[i]) == 0)
      return 0;
  return 1;
}

/*
 * Replaces the value on top with its metatable's __index when that is a
 * table (how methods of userdata and of Lua objects are found) and returns
 * 1; otherwise leaves the stack alone and returns 0. Raw accesses only:
 * completion must never run user code.
 */
static int next_index(lua_State *L)
{
  if (!lua_getmetatable(L, -1))
    return 0;
  lua_pushliteral(L, "__index");
  if (lua_rawget(L, -2) != LUA_TTABLE) {
    lua_pop(L, 2);  /* __index, metatable */
    return 0;
  }
  lua_remove(L, -2);  /* metatable */
  lua_remove(L, -2);  /* the value */
  return 1;
}

/* Replaces the value on top with its field name, following __index tables
 * (a bounded number of hops: an __index may lead back to itself). */
static void get_field(lua_State *L, const char *name, size_t len)
{
  for (int hops = 0; hops < 8; hops++) {
    if (lua_type(L, -1) == LUA_TTABLE) {
      lua_pushlstring(L, name, len);
      if (lua_rawget(L, -2) != LUA_TNIL) {
        lua_remove(L, -2);  /* the table */
        return;
      }
      lua_pop(L, 1);  /* nil */
    }
    if (!next_index(L))
      break;
  }
  lua_pop(L, 1);
  lua_pushnil(L);
}

/*
 * Adds to the result table (index res, with the set of names seen at res+1)
 * "<prefix><key>" for each name key of the value on top and of its __index
 * tables that starts with partial; only functions when methods is set. Pops
 * the value.
 */
static void add_fields(lua_State *L, int res, const char *prefix,
                       const char *partial, int methods)
{
  size_t plen = strlen(partial);

  for (int hops = 0; hops < 8; hops++) {
    if (lua_type(L, -1) == LUA_TTABLE) {
      lua_pushnil(L);
      while (lua_next(L, -2) != 0) {
        const char *key = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
        if (key != NULL && strncmp(key, partial, plen) == 0 && is_name(key)
            && (!methods || lua_type(L, -1) == LUA_TFUNCTION)) {
          if (lua_getfield(L, res + 1, key) == LUA_TNIL) {  /* not seen yet */
            lua_pushboolean(L, 1);
            lua_setfield(L, res + 1, key);
            lua_pushfstring(L, "%s%s", prefix, key);
            lua_rawseti(L, res, (lua_Integer)lua_rawlen(L, res) + 1);
          }
          lua_pop(L, 1);  /* seen[key] */
        }
        lua_pop(L, 1);  /* value */
      }
    }
    if (!next_index(L))
      break;
  }
  lua_pop(L, 1);
}

/*
 * Completion candidates for text (a light userdata string): globals and
 * keywords, "a.b.<field>" or "a.b:<method>". Returns an array of strings.
 */
static int l_candidates(lua_State *L)
{
  const char *text = lua_touserdata(L, 1);
  const char *sep = NULL;
  int res;

  for (const char *p = text; *p != '\0'; p++)
    if (*p == '.' || *p == ':')
      sep = p;
  lua_newtable(L);  /* result */
  res = lua_gettop(L);
  lua_newtable(L);  /* names seen */
  lua_pushglobaltable(L);
  if (sep == NULL) {
    add_fields(L, res, "", text, 0);
    for (int i = 0; keywords[i] != NULL; i++) {
      if (strncmp(keywords[i], text, strlen(text)) == 0) {
        lua_pushstring(L, keywords[i]);
        lua_rawseti(L, res, (lua_Integer)lua_rawlen(L, res) + 1);
      }
    }
  }
  else {
    const char *start = text;
    while (start < sep) {  /* walk "a.b" of "a.b.c" or "a.b:c" */
      const char *end = start;
      while (end < sep && *end != '.')
        end++;
      if (end == start || memchr(start, ':', (size_t)(end - start)) != NULL) {
        lua_settop(L, res);  /* "a..b", "a:b.c": nothing sensible to offer */
        return 1;
      }
      get_field(L, start, (size_t)(end - start));
      start = end + 1;
    }
    lua_pushlstring(L, text, (size_t)(sep - text) + 1);  /* prefix */
    lua_insert(L, -2);
    add_fields(L, res, lua_tostring(L, -2), sep + 1, *sep == ':');
  }
  lua_settop(L, res);
  return 1;
}

/* The candidates on top as readline wants them: malloc'd, match[0] the
 * longest common prefix (the text to insert), NULL-terminated. */
static char **to_matches(lua_State *L)
{
  size_t n = lua_rawlen(L, -1), common;
  char **m;

  if (n == 0)
    return NULL;
  m = calloc(n + 2, sizeof *m);
  if (m == NULL)
    return NULL;
  for (size_t i = 1; i <= n; i++) {
    lua_rawgeti(L, -1, (lua_Integer)i);
    m[i] = strdup(lua_tostring(L, -1));
    lua_pop(L, 1);
    if (m[i] == NULL)
      goto fail;
  }
  common = strlen(m[1]);
  for (size_t i = 2; i <= n; i++) {
    size_t k = 0;
    while (k < common && m[i][k] == m[1][k])
      k++;
    common = k;
  }
  if (n == 1) {
    m[0] = m[1];
    m[1] = NULL;
    return m;
  }
  m[0] = strndup(m[1], common);
  if (m[0] != NULL)
    return m;
fail:
  for (size_t i = 0; i <= n; i++)
    free(m[i]);
  free(m);
  return NULL;
}

static char **complete(const char *text, int start, int end)
{
  lua_State *L = cli_state();
  char **matches = NULL;
  int top;

  (void)start;
  (void)end;
  if (strncmp(rl_line_buffer, ".load ", 6) == 0)
    return NULL;  /* readline completes the file name */
  rl_attempted_completion_over = 1;  /* Lua code: never file names */
  rl_completion_append_character = '\0';
  if (L == NULL)
    return NULL;
  top = lua_gettop(L);
  lua_pushcfunction(L, l_candidates);
  lua_pushlightuserdata(L, (void *)text);
  if (lua_pcall(L, 1, 1, 0) == LUA_OK)
    matches = to_matches(L);
  lua_settop(L, top);
  return matches;
}

static char *word_breaks(void)
{
  /* .load takes a path: break at blanks only, so "spec/fi" completes whole.
   * readline only reads the string it gets. */
  return (char *)(strncmp(rl_line_buffer, ".load ", 6) == 0 ? file_breaks : lua_breaks);
}

/* --- input: the three functions readline sits behind --------------------- */

/*
 * readline's key reader. SIGINT stays blocked while readline runs and is let
 * in only while we wait here, so a Ctrl-C is never lost between a check and a
 * read. On Ctrl-C the line is emptied and EOF returned: readline gives up the
 * line, and line_read tells that from a real EOF by the flag.
 */
static int line_getc(FILE *in)
{
  int fd = fileno(in);
  sigset_t waitmask;

  pthread_sigmask(SIG_SETMASK, NULL, &waitmask);
  sigdelset(&waitmask, SIGINT);
  for (;;) {
    fd_set fds;
    unsigned char c;
    ssize_t n;

    if (eddy_interrupt_pending()) {
      rl_point = rl_end;  /* show ^C after the text, as shells do */
      rl_redisplay();
      fputs("^C", rl_outstream);
      rl_replace_line("", 0);  /* an EOF on an empty line ends readline */
      return EOF;
    }
    FD_ZERO(&fds);
    FD_SET(fd, &fds);
    if (pselect(fd + 1, &fds, NULL, NULL, NULL, &waitmask) < 0) {
      if (errno == EINTR)
        continue;
      return EOF;
    }
    n = read(fd, &c, 1);
    if (n == 1)
      return c;
    if (n == 0 || (errno != EINTR && errno != EAGAIN))
      return EOF;
  }
}

static void line_init(struct repl *r)
{
  const char *file = getenv("EDDY_HISTORY");
  const char *home = getenv("HOME");
  int n = 0;

  r->history[0] = '\0';
  if (!r->tty)
    return;
  rl_readline_name = "eddy";
  rl_catch_signals = 0;  /* Ctrl-C is ours: see line_getc */
  rl_getc_function = line_getc;
  rl_attempted_completion_function = complete;
  rl_completion_word_break_hook = word_breaks;
  rl_basic_word_break_characters = lua_breaks;
  stifle_history(HISTORY_MAX);
  if (file != NULL)  /* set but empty: no history file */
    n = snprintf(r->history, sizeof r->history, "%s", file);
  else if (home != NULL && *home != '\0')
    n = snprintf(r->history, sizeof r->history, "%s/.eddy_history", home);
  if (n < 0 || (size_t)n >= sizeof r->history)
    r->history[0] = '\0';
  if (r->history[0] != '\0') {
    int err = read_history(r->history);
    if (err == ENOENT)
      err = write_history(r->history);  /* append_history needs the file */
    if (err != 0)
      r->history[0] = '\0';  /* unreadable: leave it alone */
  }
}

/* A line without its newline, from the file: for pipes and files. */
static int read_plain(char **line)
{
  size_t cap = 0;
  ssize_t n;

  *line = NULL;
  errno = 0;
  n = getline(line, &cap, stdin);
  if (n < 0) {
    free(*line);
    *line = NULL;
    if (errno == EINTR && eddy_interrupt_pending()) {
      clearerr(stdin);
      return LINE_INTERRUPTED;
    }
    return LINE_EOF;
  }
  while (n > 0 && ((*line)[n - 1] == '\n' || (*line)[n - 1] == '\r'))
    (*line)[--n] = '\0';
  return LINE_OK;
}

/*
 * After an EOF readline leaves the cursor on the prompt's line, except that
 * from 8.1 on it ends the line itself when bracketed paste was on.
 */
static void end_line_after_eof(void)
{
#if RL_READLINE_VERSION >= 0x0801
  const char *paste = rl_variable_value("enable-bracketed-paste");
  if (paste != NULL && strcmp(paste, "on") == 0)
    return;
#endif
  fputc('\n', rl_outstream);
}

/* *line is malloc'd on LINE_OK, NULL otherwise. */
static int line_read(struct repl *r, const char *prompt, char **line)
{
  sigset_t block, old;

  if (!r->tty)
    return read_plain(line);
  sigemptyset(&block);
  sigaddset(&block, SIGINT);
  pthread_sigmask(SIG_BLOCK, &block, &old);
  *line = readline(prompt);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (*line == NULL)
    end_line_after_eof();
  if (eddy_interrupt_pending()) {  /* the line is gone: see line_getc */
    free(*line);
    *line = NULL;
    return LINE_INTERRUPTED;
  }
  return *line != NULL ? LINE_OK : LINE_EOF;
}

/*
 * The history file holds an entry per line: a multi-line chunk is joined
 * with spaces when that keeps its meaning (no comment nor long string nor
 * escape that a line break ends), and kept as typed otherwise, which a later
 * session reads back as several entries.
 */
static char *history_entry(const char *chunk)
{
  char *e = strdup(chunk);

  if (e != NULL && strstr(e, "--") == NULL && strstr(e, "[[") == NULL
      && strstr(e, "[=") == NULL && strchr(e, '\\') == NULL)
    for (char *p = e; (p = strchr(p, '\n')) != NULL; )
      *p = ' ';
  return e;
}

static void line_add_history(struct repl *r, const char *chunk)
{
  HIST_ENTRY *last;
  char *entry;

  if (!r->tty || chunk == NULL || chunk[strspn(chunk, " \t\r\n")] == '\0')
    return;
  entry = history_entry(chunk);
  if (entry == NULL)
    return;
  last = history_length > 0 ? history_get(history_base + history_length - 1) : NULL;
  if (last == NULL || strcmp(last->line, entry) != 0) {  /* no repeats */
    add_history(entry);
    if (r->history[0] != '\0' && append_history(1, r->history) == 0)
      history_truncate_file(r->history, HISTORY_MAX);
  }
  free(entry);
}

/* --- reading chunks ----------------------------------------------------- */

static int l_pushline(lua_State *L)
{
  lua_pushstring(L, lua_touserdata(L, 1));
  return 1;
}

/* Pushes line as a Lua string and frees it, even when the push fails (then
 * raising only after the free). */
static void push_line(lua_State *L, char *line)
{
  int status;

  lua_pushcfunction(L, l_pushline);
  lua_pushlightuserdata(L, line);
  status = lua_pcall(L, 1, 1, 0);
  free(line);
  if (status != LUA_OK)
    lua_error(L);
}

/* Whether a failed load ran out of text: more lines may complete it. */
static int incomplete(lua_State *L, int status)
{
  size_t len, mark = sizeof EOFMARK - 1;
  const char *msg;

  if (status != LUA_ERRSYNTAX)
    return 0;
  msg = lua_tolstring(L, -1, &len);
  return len >= mark && strcmp(msg + len - mark, EOFMARK) == 0;
}

enum { COMPILED, INCOMPLETE, FAILED };

/*
 * Compiles the chunk on top as `return <chunk>` (an expression has its
 * values printed), else as it is. It is incomplete when either form ran out
 * of text: "{" only makes sense as the start of an expression. Pushes the
 * function or an error message.
 */
static int compile(lua_State *L)
{
  size_t len;
  const char *code;
  int status, expr_incomplete;

  lua_pushliteral(L, "return ");
  lua_pushvalue(L, -2);
  lua_concat(L, 2);
  code = lua_tolstring(L, -1, &len);
  status = luaL_loadbuffer(L, code, len, CHUNKNAME);
  lua_remove(L, -2);  /* the "return" text */
  if (status == LUA_OK)
    return COMPILED;
  expr_incomplete = incomplete(L, status);
  code = lua_tolstring(L, -2, &len);
  status = luaL_loadbuffer(L, code, len, CHUNKNAME);
  if (status == LUA_OK || incomplete(L, status) || !expr_incomplete) {
    lua_remove(L, -2);  /* the expression's error */
    return status == LUA_OK ? COMPILED : incomplete(L, status) ? INCOMPLETE : FAILED;
  }
  lua_pop(L, 1);  /* the statement's error: the expression's is the one */
  return INCOMPLETE;
}

static int is_dot_command(const char *line)
{
  return line[0] == '.' && ((line[1] >= 'a' && line[1] <= 'z') || (line[1] >= 'A' && line[1] <= 'Z'));
}

/*
 * Reads lines until they make a chunk. Pushes the chunk's text, then (for
 * CHUNK_OK) its function or (CHUNK_ERROR) the error message; CHUNK_DOT pushes
 * only the line; CHUNK_SKIP and CHUNK_EOF push nothing.
 */
static int read_chunk(struct repl *r)
{
  lua_State *L = r->L;
  char *line;
  int rc = line_read(r, PROMPT, &line);

  if (rc == LINE_EOF)
    return CHUNK_EOF;
  if (rc == LINE_INTERRUPTED)
    return CHUNK_SKIP;
  if (line[strspn(line, " \t")] == '\0') {
    free(line);
    return CHUNK_SKIP;
  }
  push_line(L, line);
  if (is_dot_command(lua_tostring(L, -1)))
    return CHUNK_DOT;
  for (;;) {
    int status = compile(L);
    if (status == COMPILED)
      return CHUNK_OK;
    if (status == FAILED)
      return CHUNK_ERROR;
    rc = line_read(r, PROMPT_MORE, &line);
    if (rc == LINE_INTERRUPTED) {
      lua_pop(L, 2);  /* message, text */
      return CHUNK_SKIP;
    }
    if (rc == LINE_EOF)
      return CHUNK_ERROR;  /* the input ended inside the chunk */
    lua_pop(L, 1);  /* message */
    lua_pushliteral(L, "\n");
    push_line(L, line);
    lua_concat(L, 3);  /* text "\n" line */
  }
}

/* --- running ------------------------------------------------------------ */

static int l_tostring(lua_State *L)
{
  luaL_tolstring(L, 1, NULL);
  return 1;
}

/* eddy.inspect once the module has it; until then the printer on its own;
 * failing both, tostring, so results always show. */
static void push_inspect(lua_State *L)
{
  int top = lua_gettop(L);

  lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  if (lua_getfield(L, -1, "eddy") == LUA_TTABLE
      && lua_getfield(L, -1, "inspect") == LUA_TFUNCTION) {
    lua_replace(L, top + 1);
    lua_settop(L, top + 1);
    return;
  }
  lua_settop(L, top);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "eddy.inspect");
  if (lua_pcall(L, 1, 1, 0) == LUA_OK && lua_type(L, -1) == LUA_TFUNCTION)
    return;
  lua_settop(L, top);
  lua_pushcfunction(L, l_tostring);
}

/* Prints its arguments, one per line. */
static int l_print_results(lua_State *L)
{
  int n = lua_gettop(L);

  luaL_checkstack(L, 4, "too many results to print");
  push_inspect(L);
  for (int i = 1; i <= n; i++) {
    size_t len;
    const char *s;

    lua_pushvalue(L, n + 1);
    lua_pushvalue(L, i);
    lua_call(L, 1, 1);
    s = luaL_tolstring(L, -1, &len);
    fwrite(s, 1, len, stdout);
    fputc('\n', stdout);
    lua_pop(L, 2);  /* the string, inspect's result */
  }
  return 0;
}

static void report(struct repl *r)
{
  if (r->tty && cli_interrupted(r->L))
    fputc('\n', stdout);  /* after the ^C the terminal echoed */
  cli_report(r->L, "error: ", 0);
  lua_pop(r->L, 1);
}

/* Calls the function under its nargs arguments; prints what it returns
 * when show is set. */
static void execute(struct repl *r, int nargs, int show)
{
  lua_State *L = r->L;
  int base = lua_gettop(L) - nargs - 1;
  int n;

  if (cli_docall(L, nargs, LUA_MULTRET) != LUA_OK) {
    report(r);
    return;
  }
  n = lua_gettop(L) - base;
  if (show && n > 0) {
    if (!lua_checkstack(L, 1)) {
      lua_settop(L, base);
      lua_pushliteral(L, "too many results to print");
      report(r);
    }
    else {
      lua_pushcfunction(L, l_print_results);
      lua_insert(L, base + 1);
      if (cli_docall(L, n, 0) != LUA_OK)
        report(r);
    }
  }
  lua_settop(L, base);
  fflush(stdout);
}

/* .load FILE and friends; returns 1 for .quit. The line is on top. */
static int dot_command(struct repl *r)
{
  lua_State *L = r->L;
  const char *line = lua_tostring(L, -1) + 1;
  size_t name = strcspn(line, " \t");
  const char *arg = line + name + strspn(line + name, " \t");
  size_t alen = strlen(arg);

  while (alen > 0 && (arg[alen - 1] == ' ' || arg[alen - 1] == '\t'))
    alen--;
  if (name == 4 && strncmp(line, "quit", 4) == 0)
    return 1;
  if (name == 4 && strncmp(line, "help", 4) == 0)
    fputs(help_text, stdout);
  else if (name == 4 && strncmp(line, "load", 4) == 0) {
    if (alen == 0) {
      lua_pushliteral(L, ".load needs a file name");
      report(r);
    }
    else {
      lua_pushlstring(L, arg, alen);
      if (luaL_loadfile(L, lua_tostring(L, -1)) == LUA_OK)
        execute(r, 0, 1);
      else
        report(r);
      lua_pop(L, 1);  /* file name */
    }
  }
  else {
    lua_pushlstring(L, line, name);
    lua_pushfstring(L, "unknown command '.%s' (.help lists them)", lua_tostring(L, -1));
    report(r);
    lua_pop(L, 1);  /* name */
  }
  fflush(stdout);
  return 0;
}

/* Runs the REPL's script, if any; 0 when it cannot even be loaded. */
static int run_script(struct repl *r)
{
  lua_State *L = r->L;

  if (luaL_loadfile(r->L, r->argv[r->script]) != LUA_OK)
    return 0;
  luaL_checkstack(L, r->argc, "too many arguments to the script");
  for (int i = r->script + 1; i < r->argc; i++)
    lua_pushstring(L, r->argv[i]);
  execute(r, r->argc - r->script - 1, 0);
  return 1;
}

static void banner(lua_State *L)
{
  lua_getglobal(L, "eddy");
  lua_getfield(L, -1, "version");
  printf("eddy %s (%s). .help for help, Ctrl-D to quit.\n",
         lua_isstring(L, -1) ? lua_tostring(L, -1) : "?", LUA_RELEASE);
  lua_pop(L, 2);
}

static int l_repl(lua_State *L)
{
  struct repl *r = lua_touserdata(L, 1);
  struct sigaction old;
  int base, quit = 0;

  cli_open(L, r->argc, r->argv, r->script);
  if (r->script != 0 && !run_script(r))
    return lua_error(L);  /* the script cannot be loaded: leave, status 1 */
  cli_set_sigint(on_prompt_sigint, &old);
  line_init(r);
  if (r->tty)
    banner(L);
  base = lua_gettop(L);
  while (!quit) {
    lua_settop(L, base);
    eddy_interrupt_clear();  /* a new command starts clean */
    lua_sethook(L, NULL, 0, 0);
    switch (read_chunk(r)) {
    case CHUNK_EOF:
      quit = 1;
      break;
    case CHUNK_SKIP:
      break;
    case CHUNK_DOT:
      line_add_history(r, lua_tostring(L, base + 1));
      quit = dot_command(r);
      break;
    case CHUNK_ERROR:
      line_add_history(r, lua_tostring(L, base + 1));
      report(r);
      break;
    case CHUNK_OK:
      line_add_history(r, lua_tostring(L, base + 1));
      execute(r, 0, 1);
      break;
    }
  }
  sigaction(SIGINT, &old, NULL);
  return 0;
}

int cli_repl(int argc, char **argv, int script)
{
  struct repl r;
  int rc = CLI_OK;

  memset(&r, 0, sizeof r);
  r.argc = argc;
  r.argv = argv;
  r.script = script;
  r.tty = isatty(STDIN_FILENO);
  r.L = cli_newstate();
  if (r.L == NULL)
    return CLI_FAIL;
  lua_pushcfunction(r.L, l_repl);
  lua_pushlightuserdata(r.L, &r);
  if (cli_docall(r.L, 1, 0) != LUA_OK) {
    rc = cli_interrupted(r.L) ? CLI_INTERRUPTED : CLI_FAIL;
    cli_report(r.L, "eddy: ", 1);
  }
  fflush(stdout);
  cli_closestate(r.L);
  return rc;
}
