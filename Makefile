# meridian: `make test` installs what the tests need (Debian packages) and runs them.
GO ?= go

# The latency lab test measures real round-trip times through a userspace
# relay in the test process: it runs on its own, after the rest, without the
# race detector (which slows the relay tenfold) and with nothing else running.
LAB_TESTS = ^TestLatencyRoutingInLab$$

.PHONY: test deps build bench vet

test: deps
	$(GO) vet ./...
	$(GO) test -race -count=1 -p 1 -timeout 40m -skip '$(LAB_TESTS)' ./...
	$(GO) test -count=1 -timeout 10m -run '$(LAB_TESTS)' ./cmd/meridian

deps:
	./scripts/deps.sh

build:
	$(GO) build -o meridian ./cmd/meridian

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./resolver ./skew ./placement
