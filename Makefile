# meridian: `make test` installs what the tests need (Debian packages) and runs them.
GO ?= go

.PHONY: test deps build bench vet

test: deps
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 30m ./...

deps:
	./scripts/deps.sh

build:
	$(GO) build -o meridian ./cmd/meridian

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./resolver
