# eddy: a stream-processing shell in C and Lua 5.4.
#
#   make            bin/eddy, lib/eddy/core.so (the module) and lua/eddy/*.lua
#   make test       every C unit test and busted spec, then all of it again
#                   under AddressSanitizer + UndefinedBehaviorSanitizer
#   make demo       the order-stats example on the heap backend
#   make bench      the benchmarks in scripts/bench (medians of several runs)
#
# Options: SANITIZE=1 (ASan+UBSan build under build/san), V=1 (verbose),
# PREFIX/DESTDIR for `make install`.

PKG_CONFIG ?= pkg-config
CC ?= cc
LUA ?= lua5.4
BUSTED ?= /usr/bin/busted
PREFIX ?= /usr/local
DESTDIR ?=

ifeq ($(V),1)
Q :=
else
Q := @
endif

ifeq ($(SANITIZE),1)
OUT := build/san
OPT := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
LDSAN := -fsanitize=address,undefined
else
OUT := .
OPT := -O2 -g
LDSAN :=
endif
OBJ := build/obj$(if $(filter 1,$(SANITIZE)),-san,)

WARN := -Wall -Wextra -Wshadow -Wundef -Wwrite-strings -Wmissing-prototypes \
        -Wstrict-prototypes -Wpointer-arith -Wformat=2 -Wno-unused-parameter
DEPS_PC := libzstd libxxhash jansson
LUA_CFLAGS := $(shell $(PKG_CONFIG) --cflags lua5.4 2>/dev/null)
LUA_LIBS := $(shell $(PKG_CONFIG) --libs lua5.4 2>/dev/null)
DEP_CFLAGS := $(shell $(PKG_CONFIG) --cflags $(DEPS_PC) 2>/dev/null)
DEP_LIBS := $(shell $(PKG_CONFIG) --libs $(DEPS_PC) 2>/dev/null) -lcsv -lm
# RocksDB (the rocksdb backend): Debian's librocksdb-dev has a .pc file;
# without one, plain -lrocksdb.
ROCKSDB_CFLAGS := $(shell $(PKG_CONFIG) --cflags rocksdb 2>/dev/null)
ROCKSDB_LIBS := $(or $(shell $(PKG_CONFIG) --libs rocksdb 2>/dev/null),-lrocksdb)
DEP_CFLAGS += $(ROCKSDB_CFLAGS)
DEP_LIBS += $(ROCKSDB_LIBS)

ALL_CFLAGS := -std=c11 -D_GNU_SOURCE -fPIC -MMD -MP -Isrc $(OPT) $(WARN) \
              $(DEP_CFLAGS) $(CFLAGS)
ALL_LDFLAGS := $(LDSAN) $(LDFLAGS)

ENGINE_SRC := $(sort $(wildcard src/util/*.c src/state/*.c src/runtime/*.c))
BINDING_SRC := $(sort $(wildcard src/lua/*.c))
CLI_SRC := $(sort $(wildcard src/cli/*.c))
CTEST_SRC := $(sort $(wildcard spec/c/test_*.c))

ENGINE_OBJ := $(ENGINE_SRC:%.c=$(OBJ)/%.o)
BINDING_OBJ := $(BINDING_SRC:%.c=$(OBJ)/%.o)
CLI_OBJ := $(CLI_SRC:%.c=$(OBJ)/%.o)
CTEST_BIN := $(CTEST_SRC:spec/c/%.c=$(OBJ)/ctest/%)

MODULE := $(OUT)/lib/eddy/core.so
EXE := $(OUT)/bin/eddy

# Where specs and examples find the module built by this tree.
RUN_ENV := LUA_PATH='$(CURDIR)/lua/?.lua;$(CURDIR)/lua/?/init.lua;;' \
           LUA_CPATH='$(CURDIR)/$(OUT)/lib/?.so;;' \
           EDDY_EXE='$(CURDIR)/$(EXE)' EDDY_ROOT='$(CURDIR)'
ifeq ($(SANITIZE),1)
# The stock interpreter is not instrumented, and preloading the sanitizer
# runtimes into it would also load them into every shell and tool a spec
# starts. So the sanitized suite runs busted inside the instrumented
# bin/eddy, which carries the same module.
RUN_ENV += ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
           UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
SPEC_RUNNER := $(EXE) run
else
SPEC_RUNNER := $(LUA)
endif

.PHONY: all test check ctest spec crash demo bench deps install clean
.DEFAULT_GOAL := all

all: $(MODULE) $(EXE)

deps:
	$(Q)sh scripts/deps.sh

$(OBJ)/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<",:)
	$(Q)$(CC) $(ALL_CFLAGS) $(if $(filter src/lua/% src/cli/%,$<),$(LUA_CFLAGS),) -c $< -o $@

# The module leaves the Lua symbols to the interpreter that loads it. It is
# never unloaded (nodelete): lua_close would otherwise dlclose it before the
# leak checker runs, leaving its reports without symbols.
$(MODULE): $(ENGINE_OBJ) $(BINDING_OBJ)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@",:)
	$(Q)$(CC) -shared -Wl,-z,nodelete $(ALL_LDFLAGS) -o $@ $^ $(DEP_LIBS)

# The executable carries the engine and binding itself and preloads them as
# eddy.core, so it works without LUA_CPATH.
$(EXE): $(ENGINE_OBJ) $(BINDING_OBJ) $(CLI_OBJ)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@",:)
	$(Q)$(CC) $(ALL_LDFLAGS) -rdynamic -o $@ $^ $(LUA_LIBS) $(DEP_LIBS) -lreadline

$(OBJ)/ctest/%: spec/c/%.c spec/c/test.h $(ENGINE_OBJ)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CTEST   $@",:)
	$(Q)$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -Ispec/c -o $@ $< $(ENGINE_OBJ) $(DEP_LIBS)

ctest: $(CTEST_BIN)
	$(Q)set -e; for t in $(CTEST_BIN); do \
	  $(if $(filter 1,$(SANITIZE)),ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1,) $$t; \
	done

# Jobs that specs run keep their control sockets and status files in a
# private folder (mktemp -d: 0700, and short enough for a socket's path),
# not in the user's, whose `eddy list -a` would fill up with them.
PRIVATE_RUNTIME = d=$$(mktemp -d) && trap 'rm -rf "$$d"' EXIT && XDG_RUNTIME_DIR=$$d

spec: $(MODULE) $(EXE)
	$(Q)$(PRIVATE_RUNTIME) $(RUN_ENV) $(SPEC_RUNNER) $(BUSTED) $(BUSTED_ARGS)

# kill -9 at random moments, resume, and compare with a clean run; then
# fewer kills on RocksDB with incremental checkpoints
crash: $(EXE)
	$(Q)$(PRIVATE_RUNTIME) $(RUN_ENV) $(LUA) spec/crash.lua
	$(Q)$(PRIVATE_RUNTIME) $(RUN_ENV) $(LUA) spec/crash.lua 6 - rocksdb

check: ctest spec crash

test: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)$(MAKE) --no-print-directory check
	$(Q)$(MAKE) --no-print-directory SANITIZE=1 check

demo: deps
	$(Q)$(MAKE) --no-print-directory all
	@echo "eddy run examples/order_stats.lua: per customer, a ValueState {count, total};"
	@echo "every 50th order of a customer prints the average of those 50 orders."
	$(Q)$(RUN_ENV) $(EXE) run examples/order_stats.lua

bench: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)$(RUN_ENV) $(LUA) scripts/bench/run.lua

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/lua/5.4/eddy \
	  $(DESTDIR)$(PREFIX)/share/lua/5.4/eddy
	install -m 755 $(EXE) $(DESTDIR)$(PREFIX)/bin/eddy
	install -m 644 $(MODULE) $(DESTDIR)$(PREFIX)/lib/lua/5.4/eddy/core.so
	install -m 644 lua/eddy/*.lua $(DESTDIR)$(PREFIX)/share/lua/5.4/eddy/

clean:
	rm -rf build bin lib

-include $(ENGINE_OBJ:.o=.d) $(BINDING_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(CTEST_BIN:=.d)
