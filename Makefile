# relaymesh — see README.md. `make run` starts a dev region; `make test` runs the suite.
GO ?= go
BIN := bin/relaymesh
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
NODE_SDK := conformance/js/node_modules/leancloud-realtime

.PHONY: build run test test-go race lint bench proto lab fuzz clean

build:
	$(GO) build -o $(BIN) ./cmd/relaymesh

run: build
	./$(BIN) dev

# The whole suite: unit tests, end-to-end tests on real processes, and the
# official LeanCloud JS SDK conformance run (needs Node; npm packages are
# installed on first use).
test: $(NODE_SDK)
	$(GO) test -count=1 -timeout 20m ./...

$(NODE_SDK): conformance/js/package.json conformance/js/package-lock.json
	npm ci --prefix conformance/js --no-audit --no-fund
	touch $@

race: $(NODE_SDK)
	$(GO) test -race -count=1 -timeout 30m ./...

lint:
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

# Short fuzzing of every frame decoder; run longer by hand with FUZZTIME=10m.
FUZZTIME ?= 10s
fuzz:
	$(GO) test ./proto/lcpb -run='^$$' -fuzz=FuzzDecode -fuzztime=$(FUZZTIME)
	$(GO) test ./edge -run='^$$' -fuzz=FuzzDecodeFrame -fuzztime=$(FUZZTIME)

# Go micro-benchmarks and the standard load-test suite on relaymesh dev
# (scripts/bench.sh; ~15 minutes on 2 cores); writes docs/BENCHMARKS.md.
bench:
	GO=$(GO) ./scripts/bench.sh

# Long soaks, not run by CI: a 10-minute pairs run and a reconnect storm of
# 15k sessions (~13 minutes), then issue 8's kill -9 runs (leader, edge) on
# three core and two edge processes, 20 s at 300 msgs/s each (~1 minute).
lab:
	GO=$(GO) ./scripts/bench.sh --lab
	RELAYMESH_LAB=1 $(GO) test -count=1 -timeout 15m -run 'TestFailoverLab' -v ./e2e

proto:
	PATH="$$PATH:$$($(GO) env GOPATH)/bin" protoc -I proto --go_out=. --go_opt=module=github.com/relaymesh/relaymesh proto/lcpb/message.proto proto/meshpb/mesh.proto

clean:
	rm -rf bin
