package main

import (
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/coredns/coredns/core/dnsserver"
	coretest "github.com/coredns/coredns/test"
)

// The chain serves this build's plugins, in CoreDNS's order, with meshdns
// after cache, hosts and template and before loop and forward.
func TestDirectives(t *testing.T) {
	want := []string{"reload", "bind", "ready", "health", "prometheus", "errors", "log", "rewrite", "cache", "template",
		"hosts", "meshdns", "loop", "forward"}
	if !slices.Equal(dnsserver.Directives, want) {
		t.Errorf("directives %v, want %v", dnsserver.Directives, want)
	}
}

// The build links neither a Kubernetes nor an Istio client, nor CoreDNS's
// kubernetes plugin: the memory a node would pay for them is the point.
func TestDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	for _, d := range deps {
		for _, banned := range []string{"k8s.io/client-go/", "istio.io/client-go/", "github.com/coredns/coredns/plugin/kubernetes",
			"github.com/meshdns/meshdns/plugin/source/kubernetes", "go.etcd.io/etcd/client/"} {
			if strings.HasPrefix(d, banned) {
				t.Errorf("cmd/meshdns links %s", d)
			}
		}
	}
	for _, needed := range []string{"github.com/meshdns/meshdns/plugin/source/file", "github.com/meshdns/meshdns/plugin/source/xds"} {
		if !slices.Contains(deps, needed) {
			t.Errorf("cmd/meshdns does not link %s", needed)
		}
	}
}

// A Corefile naming a source this build lacks says which binary has it.
func TestSourceNotLinked(t *testing.T) {
	_, err := coretest.CoreDNSServer(".:0 {\n\tmeshdns {\n\t\tkubernetes\n\t}\n}\n")
	if err == nil || !strings.Contains(err.Error(), `source "kubernetes" is not in this binary; bin/coredns (the full build) has it`) {
		t.Fatalf("error %v", err)
	}
}
