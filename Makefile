# meshdns: a CoreDNS plugin for service-mesh names. See README.md.
SHELL := /bin/bash
GO    ?= go

PLUGIN_SRC       := $(shell find cmd plugin -name '*.go' -not -name '*_test.go' -not -path 'cmd/package/*' -not -path 'cmd/meshdns-setup/*') go.mod go.sum
CONTROLPLANE_SRC := $(shell find test/controlplane -name '*.go') test/controlplane/go.mod test/controlplane/go.sum
ISTIO_SRC        := $(shell find test/istio -name '*.go') test/istio/go.mod test/istio/go.sum

.PHONY: all build run demo test test-unit test-integration test-fuzz test-package package test-binaries bench bench-kubernetes bench-fleet bench-go chaos proto istio-binaries fmt vet clean

all: build

## build: bin/coredns, CoreDNS with every standard plugin, meshdns and all its sources; bin/meshdns, the lean build
## for a VM or node (the plugins that role needs, meshdns with the file and xds sources)
build: bin/coredns bin/meshdns

bin/coredns: $(PLUGIN_SRC)
	$(GO) build -o $@ ./cmd/coredns

# Static, as CoreDNS builds its releases: no C library to map, on any distribution.
bin/meshdns: $(PLUGIN_SRC)
	CGO_ENABLED=0 $(GO) build -o $@ ./cmd/meshdns

# The helper that points a VM's resolv.conf at meshdns and back: standard library only, static.
bin/meshdns-setup: $(shell find cmd/meshdns-setup -name '*.go' -not -name '*_test.go') go.mod
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags='-s -w' -o $@ ./cmd/meshdns-setup

## package: bin/meshdns_<version>_<arch>.deb and .tar.gz for a VM (bin/meshdns, meshdns-setup, the unit, the VM
## Corefile), built in Go by cmd/package (its own module, nfpm); the version comes from git describe
package: bin/meshdns bin/meshdns-setup
	cd cmd/package && $(GO) run . -repo ../..

## run: serve the sample mesh (docs/sample-mesh.json) on 127.0.0.1:1053
run: bin/coredns
	bin/coredns -conf Corefile.example

## demo: local etcd + kube-apiserver, a sample mesh, bin/coredns with a kubernetes source on 127.0.0.1:1053; Ctrl-C tears it down
demo: bin/coredns test-binaries
	cd test && $(GO) run ./demo

## test: everything: unit, in-process wire tests (race detector), integration against a real API server and istiod,
## the conformance suite and the differential against CoreDNS's kubernetes plugin, and the whole server fuzzed for FUZZTIME
test: vet test-unit test-integration test-fuzz test-package

vet:
	@out=$$(gofmt -l cmd plugin test | grep -v '\.pb\.go$$' || true); if [ -n "$$out" ]; then echo "gofmt needed: $$out"; exit 1; fi
	$(GO) vet ./...
	cd test && $(GO) vet ./...
	cd test/controlplane && $(GO) vet ./...
	cd test/istio && $(GO) vet ./...

test-unit:
	$(GO) test -race -count=1 ./...

test-integration: bin/coredns bin/meshdns test-binaries istio-binaries
	cd test && $(GO) test -count=1 -timeout 30m ./...

## test-package: the .deb and .tar.gz built and read back (paths, modes, conffiles, scripts, the lean binary), and
## installed, upgraded, removed and purged with dpkg --root in a throwaway tree (as root, where dpkg is)
test-package: bin/meshdns bin/meshdns-setup
	cd cmd/package && $(GO) vet ./... && $(GO) test -count=1 ./...

## test-fuzz: arbitrary packets to an in-process CoreDNS with meshdns; a crasher is kept in plugin/meshdns/testdata/fuzz
FUZZTIME ?= 30s
test-fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzServer$$' -fuzztime $(FUZZTIME) ./plugin/meshdns/

## test-binaries: etcd and kube-apiserver for the integration tests, built from Go modules
test-binaries: bin/etcd bin/kube-apiserver

bin/etcd: $(CONTROLPLANE_SRC)
	cd test/controlplane && $(GO) build -o ../../bin/etcd ./cmd/etcd

bin/kube-apiserver: $(CONTROLPLANE_SRC)
	cd test/controlplane && $(GO) build -o ../../bin/kube-apiserver ./cmd/kube-apiserver

## istio-binaries: istiod (pilot-discovery), Istio's agent DNS proxy (istio-dns) and istioctl, built from istio.io/istio
istio-binaries: bin/pilot-discovery bin/istio-dns bin/istioctl

bin/pilot-discovery: $(ISTIO_SRC)
	cd test/istio && $(GO) build -o ../../bin/pilot-discovery ./cmd/pilot-discovery

bin/istio-dns: $(ISTIO_SRC)
	cd test/istio && $(GO) build -o ../../bin/istio-dns ./cmd/istio-dns

bin/istioctl: $(ISTIO_SRC)
	cd test/istio && $(GO) build -o ../../bin/istioctl ./cmd/istioctl

## bench: meshdns against hosts, file, kubernetes, Istio's agent proxy and a bare miekg/dns floor, by dnsperf → docs/bench/ (as root; BENCH_FLAGS=-k8s-100k adds the 100k kubernetes runs)
bench: bin/coredns bin/meshdns bin/coredns-floor bin/istio-dns test-binaries
	cd test && $(GO) run ./bench/dns -out ../docs/bench $(BENCH_FLAGS)

# CoreDNS with bind and hosts alone: the memory floor bin/meshdns is measured against.
bin/coredns-floor: test/bench/corefloor/main.go test/go.mod
	cd test && CGO_ENABLED=0 $(GO) build -o ../bin/coredns-floor ./bench/corefloor

## bench-kubernetes: meshdns's kubernetes source against CoreDNS's kubernetes plugin: sync time, memory, create-to-answer (10k Services)
bench-kubernetes: bin/coredns test-binaries
	cd test && $(GO) run ./bench/kubernetes

## bench-fleet: a VM fleet on the kubernetes source: 2,000 ServiceEntries, then 20,000 WorkloadEntries created, moved,
## deleted and health-checked through a real API server while a fixed-rate load checks every answer
bench-fleet: bin/coredns test-binaries
	cd test && $(GO) run ./bench/fleet -health

## chaos: faults under a fixed-rate load of mesh and external names (istiod and the API server killed, frozen or
## restarted; meshdns killed with its control plane away; the upstream dead, slow or SERVFAIL behind the shipped
## Corefiles; a flood; a malformed object; the snapshot's disk full or read-only) → docs/reliability.md (as root)
chaos: bin/coredns test-binaries istio-binaries
	cd test && $(GO) run ./chaos -out ../docs/reliability.md

## bench-go: the Go benchmarks behind docs/benchmarks.md
bench-go:
	$(GO) test -run NONE -bench . -benchmem -count 1 ./plugin/...

PROTOC_GEN_GO_VERSION = $(shell $(GO) list -m -f '{{.Version}}' google.golang.org/protobuf)

## proto: regenerate plugin/source/xds/{nds,ads,ca}/*.pb.go (protoc from Debian, protoc-gen-go at go.mod's protobuf version)
proto:
	command -v protoc >/dev/null || { apt-get update -qq && apt-get install -y -qq protobuf-compiler; }
	GOBIN=$(CURDIR)/bin $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	PATH="$(CURDIR)/bin:$$PATH" protoc --proto_path=. --go_out=. --go_opt=paths=source_relative plugin/source/xds/nds/nds.proto plugin/source/xds/ads/ads.proto plugin/source/xds/ca/ca.proto

fmt:
	gofmt -w cmd plugin test

clean:
	rm -rf bin
