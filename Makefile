# Troupe's everyday commands. Tests run against one throwaway PostgreSQL
# started from the local binaries (installed by scripts/ensure-postgres.sh
# when missing), or against DATABASE_URL when it is set.

GO ?= go
SCRIPTS := scripts

.PHONY: test demo bench lint ensure-postgres

ensure-postgres:
	@bash $(SCRIPTS)/ensure-postgres.sh

## test: every package with the race detector, sharing one PostgreSQL server
test: ensure-postgres
	bash $(SCRIPTS)/with-postgres.sh $(GO) test -race -count=1 ./...

## demo: the shopping-cart example's scripted demo (it starts its own server)
demo: ensure-postgres
	$(GO) run ./examples/cart -demo

## bench: the store and actor benchmarks against one PostgreSQL server
bench: ensure-postgres
	bash $(SCRIPTS)/with-postgres.sh $(GO) test -run '^$$' -bench . ./store/postgres/ ./actor/

## lint: formatting and vet
lint:
	@unformatted="$$(gofmt -l .)"; \
	if [ -n "$$unformatted" ]; then echo "gofmt -l reports:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
