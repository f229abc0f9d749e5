/*
 * What the pieces of bin/eddy share. main.c dispatches on argv[1] and owns
 * the Lua-facing plumbing taken from Lua's own lua.c (a state with the eddy
 * module preloaded, protected calls with a traceback handler, the Ctrl-C
 * hook); run.c is `eddy run`, repl.c is the REPL. Internal to src/cli.
 */
#ifndef EDDY_CLI_H
#define EDDY_CLI_H

#include <signal.h>

#include <lua.h>

/* Exit statuses (API.md "CLI"); 130 is what shells report for SIGINT. */
enum {
  CLI_OK = 0,
  CLI_FAIL = 1,
  CLI_USAGE = 2,
  CLI_INTERRUPTED = 130
};

/* A fresh state, or NULL (with a message on stderr) when out of memory.
 * It becomes the state that Ctrl-C stops and that completion looks into. */
lua_State *cli_newstate(void);
void cli_closestate(lua_State *L);
/* The state made by cli_newstate, for callbacks that get no context
 * (readline's completion). */
lua_State *cli_state(void);

/* Loads the standard libraries, preloads eddy.core, points package.path at
 * the tree bin/eddy was built in, creates `arg` (argv[script] at index 0;
 * script 0 when there is none) and sets the global `eddy = require "eddy"`.
 * Runs inside a protected call: it raises on failure. */
void cli_open(lua_State *L, int argc, char **argv, int script);

/* lua_pcall of the function below the narg arguments, with a message handler
 * that keeps the traceback aside (see cli_report) and with Ctrl-C turned
 * into the error "interrupted". Returns the lua_pcall status. */
int cli_docall(lua_State *L, int narg, int nres);

/* Installs handler for SIGINT without SA_RESTART (a read blocked in C
 * returns EINTR); old, unless NULL, receives the previous action. */
void cli_set_sigint(void (*handler)(int), struct sigaction *old);

/* Prints the error message on top of the stack to stderr after prefix, as
 * one line when oneline is set, then the traceback if EDDY_TRACEBACK=1.
 * Leaves the stack as it is. */
void cli_report(lua_State *L, const char *prefix, int oneline);

/* Whether the error on top of the stack comes from Ctrl-C. */
int cli_interrupted(lua_State *L);

/* "eddy: <message> (see 'eddy --help')" on stderr; returns CLI_USAGE. */
int cli_usage_error(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));
void cli_print_usage(void);

int cli_run(int argc, char **argv);
/* script: index in argv of the script to run first, 0 for none. */
int cli_repl(int argc, char **argv, int script);

#endif
