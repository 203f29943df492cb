# previewd: `make test` installs what the tests need (Debian packages:
# git, postgresql, pgbouncer, chromium) and runs every test with -race.
GO ?= go
PKGS ?= ./...

.PHONY: test deps check unit bench demo build

test: deps check
	$(GO) test -race -count=1 -timeout 30m $(PKGS)

deps:
	./scripts/install-test-deps.sh

check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

unit:
	$(GO) test -race -short $(PKGS)

bench: deps
	./bench/run.sh

build:
	$(GO) build -o bin/previewd ./cmd/previewd

demo:
	$(GO) run ./cmd/previewd demo
