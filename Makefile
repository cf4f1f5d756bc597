# mxcont — see README.md. Every target runs on a fresh Debian 12 machine with
# Go 1.26 (scripts/ci-setup.sh installs the tools the tests use).
GO        ?= go
PKGS      := ./...
BIN       := bin
export GOFLAGS := -buildvcs=false
export PATH := $(PATH):$(shell $(GO) env GOPATH)/bin:/usr/sbin

.PHONY: all build run test test-short lint fuzz bench clean

all: build

build:
	$(GO) build -o $(BIN)/ ./cmd/...

## run: a node on loopback with the embedded defaults and one sample domain
run: build
	$(BIN)/mxcont serve --config scripts/dev.yaml

## test: every package with the race detector (end-to-end suites included),
## then the process-level crash and memory tests, which skip under -race
test:
	$(GO) test -race -count=1 -timeout 25m $(PKGS)
	$(GO) test -count=1 -timeout 15m -run 'TestCrashKill9|TestMemoryBounded' ./spool/

## test-short: the fast subset (no process-level crash runs)
test-short:
	$(GO) test -short -count=1 $(PKGS)

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	staticcheck $(PKGS)

## fuzz: a short run of every fuzz target (FUZZTIME=30s for longer)
FUZZTIME ?= 10s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeRecord$$' -fuzztime $(FUZZTIME) ./spool/
	@if ls smtpd/*_test.go >/dev/null 2>&1 && grep -q 'func FuzzSession' smtpd/*_test.go; then \
		$(GO) test -run '^$$' -fuzz '^FuzzSession$$' -fuzztime $(FUZZTIME) ./smtpd/; fi

## fuzz-ci: every committed fuzz target for FUZZTIME_CI (20,000 inputs) each,
## as CI runs it; fails on a crash, or if FuzzSession and FuzzDecodeRecord
## are gone. A count, not a duration: Go 1.26's fuzz coordinator can report
## a spurious "context deadline exceeded" when a -fuzztime duration ends
## (golang/go#75804, fixed in Go 1.27); a count has no deadline to race.
FUZZTIME_CI ?= 20000x
.PHONY: fuzz-ci
fuzz-ci:
	@set -e; found=""; for f in $$(git ls-files '*_test.go'); do \
		for t in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' $$f); do \
			echo "fuzz-ci: $$t in ./$$(dirname $$f) for $(FUZZTIME_CI)"; found="$$found $$t"; \
			$(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME_CI) ./$$(dirname $$f)/; \
		done; \
	done; \
	for t in FuzzSession FuzzDecodeRecord; do \
		case " $$found " in *" $$t "*) ;; *) echo "fuzz-ci: $$t not found"; exit 1;; esac; \
	done

## bench: the Go benchmarks of the hot paths (see docs/PERFORMANCE.md)
bench:
	$(GO) test -run '^$$' -bench 'Append/size=4KiB' -benchtime 20000x ./spool/
	$(GO) test -run '^$$' -bench 'IndexMemory' -benchtime 1x ./spool/

clean:
	rm -rf $(BIN)
