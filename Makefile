# mhero: `make run` and `make test` do all the set-up; see README.md.
export MHERO_TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable
export MHERO_TEST_VALKEY_URL   ?= redis://127.0.0.1:6379/0

GOBIN              := $(shell go env GOPATH)/bin
STATICCHECK_VERSION := v0.8.2
STATICCHECK        := $(GOBIN)/staticcheck
BENCH              ?= .
BENCHCOUNT         ?= 1
FUZZTIME           ?= 60s

.PHONY: run build test test-short bench fuzz lint deps smsc clean

## run: build, start PostgreSQL and Valkey/Redis if needed, migrate, seed a demo country, serve with an SMSC simulator
run: build
	MHERO_ENSURE_DB=mhero MHERO_DATABASE_URL=$${MHERO_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/mhero?sslmode=disable} deploy/deps.sh
	MHERO_DATABASE_URL=$${MHERO_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/mhero?sslmode=disable} ./bin/mhero demo

## build: compile mhero and smscsim into bin/
build:
	go build -o bin/ ./cmd/...

## test: every test, with the race detector, on the real PostgreSQL and Valkey/Redis (fuzz seeds included)
test: deps
	go test -race -count=1 -timeout 20m ./...

## test-short: the tests that need no PostgreSQL or Valkey
test-short:
	go test -short -count=1 ./...

## bench: the benchmarks behind the numbers in the issues (BENCH=regexp BENCHCOUNT=6 for benchstat)
bench: deps
	go test -run='^$$' -bench='$(BENCH)' -benchmem -count=$(BENCHCOUNT) -timeout 60m ./... | tee bench.txt

## fuzz: one fuzz target, e.g. make fuzz FUZZ=FuzzParseReceiptText PKG=./smpp
fuzz:
	go test -run='^$$' -fuzz='$(FUZZ)' -fuzztime=$(FUZZTIME) $(PKG)

## lint: gofmt, go vet, staticcheck, and the dependency direction of STYLE.md A3
lint: $(STATICCHECK)
	@test -z "$$(gofmt -l .)" || { echo "gofmt needed:"; gofmt -l .; exit 1; }
	go vet ./...
	$(STATICCHECK) ./...
	@! go list -deps ./registry ./sessions ./smpp | grep -x 'github.com/mhero-health/mhero/\(ussd\|reports\)' || { echo "adapters must not import ussd or reports"; exit 1; }
	@! go list -deps ./api | grep -E 'jackc/pgx|valkey-go|go-smpp' || { echo "api must not import drivers"; exit 1; }
	@! go list -deps ./smpp | grep -E 'jackc/pgx|valkey-go|/registry$$' || { echo "smpp must not import the registry or drivers other than go-smpp"; exit 1; }
	@! go list -deps ./sessions | grep -E 'jackc/pgx|go-smpp' || { echo "sessions must not import pgx or go-smpp"; exit 1; }
	@! go list -deps ./ussd | grep -E 'jackc/pgx|valkey-go|go-smpp|mhero/(registry|reports|outbox|sessions|smpp)$$' || { echo "ussd must reach storage and SMPP only through its interfaces"; exit 1; }
	@! go list -deps ./internal/... | grep -E '^[a-z0-9-]+\.[a-z]' | grep -v '^github.com/mhero-health/mhero/internal/' || { echo "internal packages import the standard library only"; exit 1; }

$(STATICCHECK):
	go install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

## deps: PostgreSQL and Valkey/Redis answering on loopback (starts or installs them)
deps:
	deploy/deps.sh

## smsc: the SMSC simulator alone, on 127.0.0.1:2775 (control API on :2776)
smsc:
	go run ./cmd/smscsim

clean:
	rm -rf bin bench.txt
