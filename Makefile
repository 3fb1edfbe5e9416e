# kmsbackup — the two commands are `make run` and `make test`.
SHELL := /bin/bash
GO    ?= go
PKGS  := ./...
DATA  ?= ./data
LISTEN ?= 127.0.0.1:8080

.PHONY: run build test test-short lint chromium screenshots bench fuzz tidy clean

## run: start the server in --dev mode on the embedded store (./data); ARGS="..." adds flags
run:
	$(GO) run ./cmd/kmsbackup server --dev --data-dir $(DATA) --listen $(LISTEN) $(ARGS)

## build: build bin/kmsbackup
build:
	$(GO) build -o bin/kmsbackup ./cmd/kmsbackup

## test: lint, then every test (unit, conformance, crash, end to end, the console in
## headless Chromium), with the race detector
test: lint chromium
	$(GO) test -race -count=1 -timeout 30m $(PKGS)

## chromium: install Debian's Chromium for the console's browser tests when it is missing
## (waits for the dpkg lock when another apt-get holds it)
chromium:
	@./.ci/install-chromium

## test-short: every test without the race detector (faster)
test-short: chromium
	$(GO) test -count=1 -timeout 20m $(PKGS)

## lint: gofmt, go vet, and the architecture rules of DESIGN.md
lint:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt would change:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) test -count=1 ./test/archtest

## screenshots: remake the console screenshots in docs/img (the console tour in Chromium)
screenshots: chromium
	KMSBACKUP_SCREENSHOTS=$(CURDIR)/docs/img $(GO) test -count=1 -run TestConsoleTour ./test/e2e

## bench: the benchmarks recorded in docs/BENCHMARKS.md
bench:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 2s -timeout 60m $(PKGS)

## fuzz: run every fuzz target of the tree (each func Fuzz... in a _test.go) for FUZZTIME (default 30s)
FUZZTIME ?= 30s
fuzz:
	@set -e; for dir in $$(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u); do \
		for target in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$dir/*_test.go | cut -d' ' -f2); do \
			echo "fuzz $$dir $$target ($(FUZZTIME))"; \
			$(GO) test -run '^$$' -fuzz "^$$target\$$" -fuzztime $(FUZZTIME) $$dir; \
		done; \
	done

clean:
	rm -rf bin
