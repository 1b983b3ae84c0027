# iyagi — build, run and test.
#   make            build build/rel/iyagid
#   make run        install missing Debian packages (build only), build, run on 127.0.0.1:8080 with ./data
#   make test       install what tests need (Debian packages, npm ci), then every suite (scripts/test.sh)
#   make bench      install missing Debian packages, build, run the benchmark suite (bench/run.sh)
#   make cluster    a local cluster: 3 NATS, PostgreSQL, HAProxy, 3 nodes (scripts/cluster.sh)
#   make chaos      100 SIGKILL/restart cycles under mixed load (CYCLES=N for another count)
#   make deps       install everything the targets above need
#   make asan       build build/asan/iyagid with AddressSanitizer + UndefinedBehaviorSanitizer
#   make VARIANT=tsan  build build/tsan/iyagid with ThreadSanitizer (make test runs the e2e suite on it)
#   make fuzz       build the libFuzzer targets (clang)
#   make fuzz-corpus  grow and minimise the committed seed corpora (tests/fuzz/corpus)
#   make install    the release build, systemd unit, example configuration and docs under
#                   $(DESTDIR)$(PREFIX) (PREFIX=/usr/local); make uninstall removes them

LLHTTP_DIR  ?= /usr/share/llhttp
LLHTTP_INC  ?= /usr/share/include/llhttp
CC          ?= gcc
PKGS        := libuv jansson libargon2 libssl libcrypto libcurl libpq libnats sqlite3 inih
LIBS        := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lrocksdb -lpthread -lm
WARN        := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wno-unused-parameter
GIT_COMMIT  := $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
BASEFLAGS   := -std=c11 -D_GNU_SOURCE -g -I$(LLHTTP_INC) $(shell pkg-config --cflags $(PKGS) 2>/dev/null)

SRC         := $(sort $(wildcard src/*/*.c src/*/*/*.c))
LIB_SRC     := $(SRC)
TESTS       := $(patsubst tests/unit/%.c,%,$(sort $(wildcard tests/unit/test_*.c)))
FUZZERS     := $(patsubst tests/fuzz/%.c,%,$(sort $(wildcard tests/fuzz/fuzz_*.c)))
LLHTTP_SRC  := $(LLHTTP_DIR)/llhttp.c $(LLHTTP_DIR)/api.c $(LLHTTP_DIR)/http.c

VARIANT     ?= rel
ifeq ($(VARIANT),asan)
OPT := -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
else ifeq ($(VARIANT),tsan)
OPT := -O1 -fno-omit-frame-pointer -fsanitize=thread
else
OPT := -O2
endif
B           := build/$(VARIANT)
OBJ         := $(patsubst src/%.c,$(B)/%.o,$(LIB_SRC)) $(B)/llhttp/llhttp.o $(B)/llhttp/api.o $(B)/llhttp/http.o

# The web client: every file under web/ is embedded into the binary at build
# time (tools/embed.c writes a C table of them), so iyagid serves it from memory.
WEB_FILES   := $(sort $(shell find web -type f 2>/dev/null))
OBJ         += $(B)/gen/web_assets.o $(B)/gen/commit.o
# The API reference (docs/openapi.json, docs/asyncapi.json), embedded the same
# way and served as /v1/openapi.json and /v1/asyncapi.json.
DOC_FILES   := docs/openapi.json docs/asyncapi.json
OBJ         += $(B)/gen/api_docs.o
# The benchmark client (issue 6): every bench/*.c linked with the codecs.
BENCH_SRC   := $(sort $(wildcard bench/*.c))

.PHONY: all check-deps run test unit fuzz asan e2e deps clean bench
all: check-deps $(B)/iyagid $(if $(BENCH_SRC),$(B)/iyagi-bench) build/faultfs.so

# The end-to-end tests' fault-injecting file layer (LD_PRELOAD into iyagid:
# tests/fault/faultfs.c); never linked into iyagid, one for every variant.
build/faultfs.so: tests/fault/faultfs.c
	@mkdir -p build
	$(CC) -shared -fPIC -O2 $(WARN) -o $@ $< -ldl

# Says what to install instead of failing later with missing headers or
# hundreds of undefined references.
check-deps:
	@test -f $(LLHTTP_DIR)/llhttp.c -a -f $(LLHTTP_INC)/llhttp.h || { \
	  echo "llhttp C sources not found in $(LLHTTP_DIR): install the Debian package node-llhttp (scripts/deps.sh build)"; exit 1; }
	@pkg-config --exists $(PKGS) || { \
	  echo "pkg-config or the -dev packages of $(PKGS) are missing: run scripts/deps.sh build"; exit 1; }

$(B)/%.o: src/%.c $(wildcard src/*/*.h src/*/*/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(BASEFLAGS) $(OPT) $(WARN) -c $< -o $@

# llhttp is compiled from Debian's node-llhttp sources (not vendored) with its own warnings relaxed.
$(B)/llhttp/%.o: $(LLHTTP_DIR)/%.c
	@mkdir -p $(dir $@)
	$(CC) $(BASEFLAGS) $(OPT) -w -c $< -o $@

build/tools/embed: tools/embed.c
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -O2 $(WARN) $< -o $@

$(B)/gen/web_assets.c: build/tools/embed $(WEB_FILES)
	@mkdir -p $(dir $@)
	build/tools/embed web $(WEB_FILES) > $@.tmp && mv $@.tmp $@

# The commit this build is from (--version, iyagi_build_info): rewritten
# only when it changes, so that a new commit relinks and nothing else rebuilds.
.PHONY: FORCE
$(B)/gen/commit.c: FORCE
	@mkdir -p $(dir $@)
	@echo 'const char iyagi_commit[] = "$(GIT_COMMIT)";' > $@.tmp; cmp -s $@.tmp $@ && rm -f $@.tmp || mv $@.tmp $@

$(B)/gen/commit.o: $(B)/gen/commit.c
	$(CC) $(BASEFLAGS) $(OPT) $(WARN) -c $< -o $@

$(B)/gen/web_assets.o: $(B)/gen/web_assets.c src/api/web_assets.h
	$(CC) $(BASEFLAGS) $(OPT) $(WARN) -Isrc -c $< -o $@

$(B)/gen/api_docs.c: build/tools/embed $(DOC_FILES)
	@mkdir -p $(dir $@)
	build/tools/embed -t api_docs docs $(DOC_FILES) > $@.tmp && mv $@.tmp $@

$(B)/gen/api_docs.o: $(B)/gen/api_docs.c src/api/web_assets.h
	$(CC) $(BASEFLAGS) $(OPT) $(WARN) -Isrc -c $< -o $@

$(B)/iyagi-bench: $(BENCH_SRC) $(wildcard bench/*.h) $(OBJ)
	$(CC) $(BASEFLAGS) $(OPT) $(WARN) -Isrc $(BENCH_SRC) $(OBJ) -o $@ $(LIBS)

$(B)/iyagid: $(OBJ) src/main.c
	$(CC) $(BASEFLAGS) $(OPT) $(WARN) src/main.c $(OBJ) -o $@ $(LIBS)

$(B)/test_%: tests/unit/test_%.c $(wildcard tests/unit/*.h) $(OBJ)
	$(CC) $(BASEFLAGS) $(OPT) $(WARN) -Isrc $< $(OBJ) -o $@ $(LIBS)

unit: $(addprefix $(B)/,$(TESTS))
	@set -e; for t in $(TESTS); do $(B)/$$t; done

asan:
	$(MAKE) VARIANT=asan all

# libFuzzer targets: clang, the codec sources only.
FUZZ_SRC := $(wildcard src/base/*.c) $(wildcard src/codec/*.c) src/bus/bus_wire.c src/bus/bus.c src/model/types.c src/model/search.c $(LLHTTP_SRC)
build/fuzz/%: tests/fuzz/%.c $(FUZZ_SRC)
	@mkdir -p build/fuzz
	clang -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined -I$(LLHTTP_INC) -Isrc \
	  $< $(FUZZ_SRC) -o $@ $(LIBS)

fuzz: $(addprefix build/fuzz/,$(FUZZERS))

# The committed seed corpora (tests/fuzz/corpus/NAME; make test's fuzz step
# starts from a copy): each target runs FUZZ_CORPUS_SECONDS from what is
# there, then libFuzzer's merge keeps the smallest set with the same coverage.
.PHONY: fuzz-corpus
fuzz-corpus: fuzz
	@for f in $(FUZZERS); do \
	  d=tests/fuzz/corpus/$$f; t=$$(mktemp -d); mkdir -p $$d; cp -r $$d/. $$t/; \
	  build/fuzz/$$f -max_total_time=$${FUZZ_CORPUS_SECONDS:-60} -max_len=512 -print_final_stats=0 $$t >/dev/null 2>&1; \
	  rm -rf $$d.new; mkdir -p $$d.new; build/fuzz/$$f -merge=1 $$d.new $$t >/dev/null 2>&1; \
	  rm -rf $$d $$t; mv $$d.new $$d; echo "$$f: $$(ls $$d | wc -l) inputs"; \
	done

# run, bench and test first install what is missing, then build in a fresh
# make: this make read the Makefile (and asked pkg-config for LIBS, looked for
# llhttp's sources) before the packages were there.
deps:
	@scripts/deps.sh test

run:
	@scripts/deps.sh build
	@$(MAKE) --no-print-directory all
	mkdir -p data
	$(B)/iyagid --listen 127.0.0.1:8080 --data ./data

test:
	@scripts/deps.sh test
	@scripts/test.sh

# Chaos (issue 12): 100 SIGKILL/restart cycles under mixed load, then every
# send checked exactly once and gap-free (make test runs 10 of them).
.PHONY: chaos
chaos:
	@scripts/deps.sh test
	@$(MAKE) --no-print-directory all
	cd tests/e2e && IYAGID="$$PWD/../../$(B)/iyagid" IYAGI_CHAOS_CYCLES=$${CYCLES:-100} node --test ./chaos.test.mjs

# A local cluster (issue 11): 3 NATS servers, PostgreSQL, HAProxy in front of 3
# iyagid nodes, all on 127.0.0.1; prints the URLs, Ctrl-C stops and removes it.
.PHONY: cluster
cluster:
	@scripts/deps.sh cluster
	@$(MAKE) --no-print-directory all
	@scripts/cluster.sh run

bench:
	@scripts/deps.sh bench
	@$(MAKE) --no-print-directory all
	@bench/run.sh

# Installation (issue 14): the release build (build/rel, whatever VARIANT says)
# into $(DESTDIR)$(PREFIX)/bin, the systemd unit with its ExecStart pointing
# there, the manual pages, the documentation, and /etc/iyagi/iyagid.conf only
# if there is none (a copy always goes to the docs). scripts/build-deb.sh
# packages the result of PREFIX=/usr UNITDIR=/lib/systemd/system.
PREFIX      ?= /usr/local
BINDIR      ?= $(PREFIX)/bin
UNITDIR     ?= $(PREFIX)/lib/systemd/system
DOCDIR      ?= $(PREFIX)/share/doc/iyagi
MANDIR      ?= $(PREFIX)/share/man
CONFDIR     ?= /etc/iyagi
DOCS        := README.md docs/ARCHITECTURE.md docs/DEPLOY.md docs/OPERATIONS.md docs/API.md \
               docs/PROTOCOL-ADDITIONS.md docs/openapi.json docs/asyncapi.json

.PHONY: install uninstall
install:
	@$(MAKE) --no-print-directory VARIANT=rel all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(UNITDIR) $(DESTDIR)$(DOCDIR) $(DESTDIR)$(CONFDIR) \
	  $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man8
	install -m 0755 build/rel/iyagid build/rel/iyagi-bench $(DESTDIR)$(BINDIR)/
	sed -e 's|/usr/bin/iyagid|$(BINDIR)/iyagid|g' -e 's|/usr/share/doc/iyagi|$(DOCDIR)|g' \
	  deploy/iyagid.service > $(DESTDIR)$(UNITDIR)/iyagid.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/iyagid.service
	install -m 0644 $(DOCS) $(DESTDIR)$(DOCDIR)/
	install -m 0644 deploy/man/iyagid.8 $(DESTDIR)$(MANDIR)/man8/
	install -m 0644 deploy/man/iyagi-bench.1 $(DESTDIR)$(MANDIR)/man1/
	install -m 0644 deploy/README.md $(DESTDIR)$(DOCDIR)/deploy-README.md
	install -m 0644 deploy/iyagid.conf $(DESTDIR)$(DOCDIR)/iyagid.conf.example
	@if [ -e $(DESTDIR)$(CONFDIR)/iyagid.conf ]; then \
	  echo "install: keeping $(DESTDIR)$(CONFDIR)/iyagid.conf (the new one is $(DOCDIR)/iyagid.conf.example)"; \
	else install -m 0644 deploy/iyagid.conf $(DESTDIR)$(CONFDIR)/iyagid.conf; fi

# Leaves /etc/iyagi/iyagid.conf (yours, perhaps edited) and any data.
uninstall:
	rm -f $(DESTDIR)$(BINDIR)/iyagid $(DESTDIR)$(BINDIR)/iyagi-bench $(DESTDIR)$(UNITDIR)/iyagid.service
	rm -f $(DESTDIR)$(MANDIR)/man8/iyagid.8 $(DESTDIR)$(MANDIR)/man1/iyagi-bench.1
	rm -rf $(DESTDIR)$(DOCDIR)

clean:
	rm -rf build
