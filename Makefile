GO ?= go
BIN := bin/relaymesh

.PHONY: build run test race lint bench proto lab fuzz

build:
	$(GO) build -o $(BIN) ./cmd/relaymesh

run: build
	./$(BIN) dev

test:
	$(GO) test -count=1 ./...

race:
	$(GO) test -race -count=1 ./...

lint:
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@latest ./...

bench:
	$(GO) test -run='^$$' -bench=. -benchmem ./...

proto:
	PATH="$$PATH:$$($(GO) env GOPATH)/bin" protoc -I proto --go_out=. --go_opt=module=github.com/relaymesh/relaymesh proto/lcpb/message.proto proto/meshpb/mesh.proto
