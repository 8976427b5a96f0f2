# Troupe's everyday commands. Tests run against one throwaway PostgreSQL
# started from the local binaries (installed by scripts/ensure-postgres.sh
# when missing), or against DATABASE_URL when it is set.

GO ?= go
SCRIPTS := scripts

.PHONY: test demo cluster-demo bench lint ensure-postgres test-faults

ensure-postgres:
	@bash $(SCRIPTS)/ensure-postgres.sh

## test: every package with the race detector, sharing one PostgreSQL server
test: ensure-postgres
	bash $(SCRIPTS)/with-postgres.sh $(GO) test -race -count=1 ./...

## test-faults: the cart binary (built without -race) against a throwaway
## PostgreSQL under load, through kill -9, a PostgreSQL restart, a 20 s
## freeze and a 20 s table lock (about 90 s; not part of make test)
test-faults: ensure-postgres
	$(GO) test -tags faults -count=1 -v -timeout 20m ./examples/cart/faults/

## demo: the shopping-cart example's scripted demo (it starts its own server)
demo: ensure-postgres
	$(GO) run ./examples/cart -demo

## cluster-demo: three cart members of one cluster on 127.0.0.1 (child
## processes) on a throwaway PostgreSQL; any member serves any cart; exits
## 0 when every check passed, after stopping them all
cluster-demo: ensure-postgres
	$(GO) run ./examples/cart -cluster-demo

## bench: the store and actor benchmarks against one PostgreSQL server
bench: ensure-postgres
	bash $(SCRIPTS)/with-postgres.sh $(GO) test -run '^$$' -bench . ./store/postgres/ ./actor/

## lint: formatting and vet
lint:
	@unformatted="$$(gofmt -l .)"; \
	if [ -n "$$unformatted" ]; then echo "gofmt -l reports:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
