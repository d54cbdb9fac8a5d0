# Parley: make build | test | run | release | clean | deps
SWIFT ?= swift
PYTHON ?= python3
PORT ?= 3000

.PHONY: all build test run release clean deps

all: build

## deps: install missing Debian and Python packages (idempotent)
deps:
	@PARLEY_PYTHON=$(PYTHON) scripts/install-deps.sh

## build: debug build of every target
build: deps
	$(SWIFT) build

## test: every test, including the python-socketio interop suite (it starts its own server)
test: deps
	PARLEY_PYTHON=$(PYTHON) $(SWIFT) test

## run: the private-messaging server (python-socketio port) on PORT, for trying clients against
run: deps
	@echo "private-messaging server (python-socketio) on http://127.0.0.1:$(PORT) - Ctrl-C stops it"
	@$(PYTHON) Tests/InteropTests/server.py --port $(PORT)

## release: optimised build
release: deps
	$(SWIFT) build -c release

clean:
	rm -rf .build .build-*
