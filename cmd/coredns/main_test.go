package main

import (
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/coredns/coredns/core/dnsserver"
)

// TestBinaryPlugins checks the binary `make build` produced: it must list
// meshdns among its plugins.
func TestBinaryPlugins(t *testing.T) {
	bin, err := filepath.Abs("../../bin/coredns")
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "-plugins").CombinedOutput()
	if err != nil {
		t.Fatalf("%s -plugins: %v (run `make build` first)\n%s", bin, err, out)
	}
	plugins := strings.Fields(string(out))
	for _, want := range []string{"meshdns", "kubernetes", "hosts", "forward", "cache", "ready", "prometheus"} {
		if !slices.Contains(plugins, want) {
			t.Errorf("%s -plugins does not list %s:\n%s", bin, want, out)
		}
	}
}

// TestChainOrder checks the order this main's imports give the plugin chain.
func TestChainOrder(t *testing.T) {
	d := dnsserver.Directives
	i := slices.Index(d, "meshdns")
	if i < 0 || slices.Index(d, "cache") > i || slices.Index(d, "hosts") > i ||
		d[i+1] != "kubernetes" || slices.Index(d, "file") < i || slices.Index(d, "forward") < i {
		t.Fatalf("meshdns is not between cache/hosts and kubernetes/file/forward: %v", d)
	}
}
