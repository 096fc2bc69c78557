# Revenue Guard. One command per job.
GO        ?= go
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
FUZZTIME  ?= 30s
REDIS_URL ?= redis://127.0.0.1:6379/0
POSTGRES_URL ?= postgres://postgres@127.0.0.1:5432/test?sslmode=disable

.PHONY: build test test-all lint fuzz bench bench-http golden screenshot run

build:
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o bin/revguard ./cmd/revguard

run:
	$(GO) run ./cmd/revguard serve

test:
	$(GO) test -race -count=1 -timeout 20m ./...

test-all:
	REVGUARD_TEST_REDIS_URL=$(REDIS_URL) REVGUARD_TEST_POSTGRES_URL=$(POSTGRES_URL) \
	REVGUARD_TEST_REQUIRE_ALL=1 $(GO) test -race -count=1 -timeout 20m ./...

lint:
	gofmt -l . | (! grep .)
	$(GO) vet ./...

fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run='^$$' -fuzz="^$$f$$" -fuzztime=$(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

bench:
	$(GO) test -run='^$$' -bench=. -benchmem ./...

# The durable reserve over HTTP against a bare net/http handler, interleaved rounds, with the
# distributed variants too when REVGUARD_TEST_REDIS_URL and REVGUARD_TEST_POSTGRES_URL are set.
bench-http: build
	$(GO) run ./scripts/benchhttp -bin bin/revguard $(BENCHHTTP_ARGS)

golden:
	$(GO) test ./httpapi -update

screenshot:
	$(GO) test ./cmd/revguard -run 'TestStorefrontExample|TestDashboard' -count=1 -update-screenshot
