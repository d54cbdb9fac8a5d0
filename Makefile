# Parley: make build | test | run | server | release | clean | deps
SHELL := /bin/bash
SWIFT ?= swift
PYTHON ?= python3
PORT ?= 3000

.PHONY: all build test run server release clean deps

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

## run: parley in this terminal; starts a server on PORT first (python-socketio port, in the
##      background, logging to .build/server.log) when nothing answers there
run: deps
	@$(SWIFT) build -c release --product parley
	@if ! (exec 3<>/dev/tcp/127.0.0.1/$(PORT)) 2>/dev/null; then \
		mkdir -p .build; \
		echo "starting a private-messaging server on :$(PORT) (log: .build/server.log)"; \
		nohup $(PYTHON) Tests/InteropTests/server.py --port $(PORT) >.build/server.log 2>&1 & \
		for i in $$(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$(PORT)) 2>/dev/null && break; sleep 0.1; done; \
	fi
	@.build/release/parley --url http://localhost:$(PORT) $(ARGS)

## server: the private-messaging server (python-socketio port) on PORT, in the foreground
server: deps
	@echo "private-messaging server (python-socketio) on http://127.0.0.1:$(PORT) - Ctrl-C stops it"
	@$(PYTHON) Tests/InteropTests/server.py --port $(PORT)

## release: optimised build
release: deps
	$(SWIFT) build -c release

clean:
	rm -rf .build .build-*
