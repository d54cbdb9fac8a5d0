# Parley: make build | test | run | demo | server | release | clean | deps
SHELL := /bin/bash
SWIFT ?= swift
PYTHON ?= python3
PORT ?= 3000
# Where `make run` and `make server` keep sessions and messages (SQLite).
DATA ?= .build/parley-server.sqlite
DEMO_PORT ?= 3100
CLUSTER_PORT ?= 3200
# The release build of every target that runs something (release, run, demo, server,
# conformance): one whole-package build, in a fixed environment. SwiftPM keys its build plan
# on the whole environment, so make's own variables and a terminal's (TMUX_PANE differs in
# every tmux pane) made each `make run` replan and rebuild: 25 s to the prompt, 2 min 20 s
# after a `swift build -c release` from a shell. Now `make run` after `make release` builds
# nothing (a release build made outside make is not reused: use `make release`).
RELEASE_BUILD = env -i PATH="$(PATH)" HOME="$(HOME)" $(SWIFT) build -c release

.PHONY: all build test run demo cluster-demo server server-python release clean deps fuzz conformance

all: build

## deps: install missing Debian and Python packages (idempotent)
deps:
	@PARLEY_PYTHON=$(PYTHON) scripts/install-deps.sh

## build: debug build of every target
build: deps
	$(SWIFT) build

## test: every test, including the python-socketio interop suite (it starts its own server).
##       One test at a time: the interop and terminal tests run real servers, clients and
##       heartbeats, and on two cores running them all at once made timing flaky (30 s in all).
test: deps
	PARLEY_PYTHON=$(PYTHON) $(SWIFT) test --no-parallel

## run: parley in this terminal; starts parley-server on PORT first (in the background,
##      logging to .build/server.log, data in DATA) when nothing answers there
run: deps
	@$(RELEASE_BUILD)
	@if ! (exec 3<>/dev/tcp/127.0.0.1/$(PORT)) 2>/dev/null; then \
		mkdir -p .build; \
		echo "starting parley-server on :$(PORT) (log: .build/server.log, data: $(DATA))"; \
		nohup .build/release/parley-server --port $(PORT) --data $(DATA) >.build/server.log 2>&1 & \
		for i in $$(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$(PORT)) 2>/dev/null && break; sleep 0.1; done; \
	fi
	@.build/release/parley --url http://localhost:$(PORT) $(ARGS)

## demo: a tmux session "parley-demo": parley-server on DEMO_PORT, alice and bob (separate
##       config dirs under .build/demo), ready to chat; attaches when run from a terminal
demo: deps
	@$(RELEASE_BUILD)
	@scripts/demo.sh $(DEMO_PORT)

## cluster-demo: PostgreSQL, two parley-servers on it, nginx in front, alice and bob in tmux
##               on different servers (scripts/cluster-demo.sh; `scripts/cluster-demo.sh stop`)
cluster-demo: deps
	@$(RELEASE_BUILD)
	scripts/cluster-demo.sh $(CLUSTER_PORT)

## server: parley-server on PORT in the foreground (data in DATA; Ctrl-C stops it)
server: deps
	@$(RELEASE_BUILD)
	@echo "parley-server on http://127.0.0.1:$(PORT), data in $(DATA) - Ctrl-C stops it"
	@.build/release/parley-server --port $(PORT) --data $(DATA) $(ARGS)

## server-python: the python-socketio port of the guide's server on PORT, in the foreground
server-python: deps
	@$(PYTHON) Tests/InteropTests/server.py --port $(PORT) --store-messages

FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?=

## fuzz: libFuzzer + AddressSanitizer on every network decoder (Fuzz/README.md), FUZZ_SECONDS
##       each (default 60), into .build-fuzz; FUZZ_TARGETS="json socketioPacket" picks some.
##       (make test replays the corpus and the regressions, without the fuzzer)
fuzz:
	FUZZ_SECONDS=$(FUZZ_SECONDS) scripts/fuzz.sh $(FUZZ_TARGETS)

## conformance: the official Engine.IO v4 and Socket.IO v5 server suites, as they are, against
##       parley-server's test apps (README, "Conformance"); SOCKET_IO is a checkout of
##       github.com/socketio/socket.io (the suites are theirs, not in this repository)
SOCKET_IO ?=
conformance: deps
	@test -n "$(SOCKET_IO)" || { echo "usage: make conformance SOCKET_IO=path/to/a/socket.io/checkout"; exit 2; }
	@$(RELEASE_BUILD)
	scripts/official-suites.sh $(SOCKET_IO)

## release: optimised build
release: deps
	$(RELEASE_BUILD)

clean:
	rm -rf .build .build-*
