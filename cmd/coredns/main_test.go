package main

import (
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/coredns/coredns/core/dnsserver"
)

// The binary this package builds lists meshdns among its plugins, beside
// the standard ones the chain puts around it. The test builds it, as `make
// build` does, rather than running whatever bin/coredns is on disk.
func TestBinaryPlugins(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "coredns")
	// go test puts its own GOROOT/bin first in PATH: this is its go command.
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "-plugins").CombinedOutput()
	if err != nil {
		t.Fatalf("%s -plugins: %v\n%s", bin, err, out)
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
