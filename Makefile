# previewd: `make test` installs what the tests need (Debian packages:
# git, postgresql, pgbouncer, chromium, nodejs, npm), builds the Kubernetes control plane
# the kube tests run against (cached; about 6 minutes the first time, see
# scripts/k8s-testbed.sh), checks formatting, vet and lint (`make check`)
# and runs every test with -race. `make bench` runs every benchmark and
# prints the table of docs/benchmarks.md (bench/run.sh).
GO ?= go
PKGS ?= ./...
# Where scripts/k8s-testbed.sh caches etcd, kube-apiserver and
# kube-controller-manager; internal/kubetest reads it.
export KUBEBUILDER_ASSETS ?= $(shell ./scripts/k8s-testbed.sh --dir)

.PHONY: test deps check lint unit bench demo build

test: deps check
	$(GO) test -race -count=1 -timeout 30m $(PKGS)

deps:
	./scripts/install-test-deps.sh
	./scripts/k8s-testbed.sh

check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	./scripts/lint.sh

# golangci-lint, pinned and built once into a cache (scripts/lint.sh);
# .golangci.yml says what it checks and why.
lint:
	./scripts/lint.sh

unit:
	$(GO) test -race -short $(PKGS)

bench: deps
	./bench/run.sh

build:
	$(GO) build -o bin/previewd ./cmd/previewd

demo:
	$(GO) run ./cmd/previewd demo
