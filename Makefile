# caddy-pkce
#
#   make demo    build Caddy with the plugin and run the demo (Ctrl-C stops it)
#   make test    everything CI runs: format, vet, unit and integration tests
#                with -race, short fuzz runs, end-to-end tests in chromium
#
# Other targets: unit, fuzz, e2e, bench, caddy, clean.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

GO       ?= go
FUZZTIME ?= 10s

MODULE        := github.com/caddy-pkce/caddy-pkce
CADDY_VERSION := $(shell awk '{ for (i = 1; i < NF; i++) if ($$i == "github.com/caddyserver/caddy/v2") { print $$(i+1); exit } }' go.mod)
BIN           := e2e/bin
CADDY         := $(BIN)/caddy

# The plugin's sources: a change rebuilds Caddy, otherwise `make demo` starts
# in seconds.
PLUGIN_SOURCES := go.mod go.sum $(shell find . -path ./e2e -prune -o -path ./.git -prune -o -name '*.go' ! -name '*_test.go' -print)
E2E_SOURCES    := e2e/go.mod e2e/go.sum $(shell find e2e/cmd e2e/demoop -name '*.go' ! -name '*_test.go')

.PHONY: help demo test unit fmt vet fuzz e2e bench caddy clean

help:
	@sed -n '3,9s/^# \{0,1\}//p' Makefile

## The demo

demo: $(CADDY) $(BIN)/demo $(BIN)/demo-op
	@$(BIN)/demo -caddy $(CADDY) -op $(BIN)/demo-op

caddy: $(CADDY)

# Built exactly as a user builds it: xcaddy (pinned in e2e/go.mod as a Go
# tool) at the Caddy version the plugin requires, with this checkout. The
# zero pseudo-version is what Go writes for a module that is only a local
# replacement; without it, xcaddy's `go get` asks the module proxy for the
# plugin's latest version, which fails for an unpublished checkout on
# proxies that answer 403 instead of 404.
LOCAL_VERSION := v0.0.0-00010101000000-000000000000

$(CADDY): $(PLUGIN_SOURCES) e2e/go.mod e2e/go.sum
	@echo "Building Caddy $(CADDY_VERSION) with the plugin (xcaddy; the first build takes a few minutes)..."
	cd e2e && $(GO) tool xcaddy build $(CADDY_VERSION) --output bin/caddy --with $(MODULE)@$(LOCAL_VERSION)=$(CURDIR)

$(BIN)/demo: $(E2E_SOURCES)
	cd e2e && $(GO) build -o bin/demo ./cmd/demo

$(BIN)/demo-op: $(E2E_SOURCES)
	cd e2e && $(GO) build -o bin/demo-op ./cmd/demo-op

## Tests

test: unit fuzz e2e bench-smoke

unit: fmt vet
	$(GO) test -race ./...

fmt:
	@out="$$(gofmt -l .)"; if [ -n "$$out" ]; then echo "gofmt -l: these files need gofmt -w:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...
	cd e2e && $(GO) vet ./...

# Every fuzz target of the plugin's module, FUZZTIME each, found with
# `go test -list` so new targets are picked up.
fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for target in $$($(GO) test -list '^Fuzz' "$$pkg" | grep '^Fuzz' || true); do \
	    echo "fuzz $$pkg $$target ($(FUZZTIME))"; \
	    $(GO) test -run '^$$' -fuzz "^$$target\$$" -fuzztime $(FUZZTIME) "$$pkg"; \
	  done; \
	done

# The browser tests need chromium (apt-get install chromium); with CI=true
# a missing browser is a failure, not a skip. No -race here: the plugin runs
# in its own Caddy process (its races are the unit tier's job), so the race
# detector would watch only the harness, at the cost of a race build of
# chromedp and zitadel/oidc.
e2e: $(CADDY)
	cd e2e && E2E_CADDY=$(CURDIR)/$(CADDY) $(GO) test -timeout 20m ./...

# Benchmarks (docs/benchmarks.md): the Go benchmarks of the hot path and of
# logins, then the load test: the Caddy binary serving the same files with
# and without pkce_auth, driven by wrk on loopback (about 10 minutes;
# bench/run.sh installs wrk and redis-server when they are missing).
bench: $(CADDY)
	$(GO) test -run '^$$' -bench . -benchmem -count 5 -timeout 30m ./...
	bash bench/run.sh $(CADDY)

# The same benchmark code in a tiny mode (about a minute), so it cannot rot.
.PHONY: bench-smoke
bench-smoke: $(CADDY)
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 100x ./...
	bash bench/run.sh -short $(CADDY)

clean:
	rm -rf $(BIN) e2e/artifacts
