// Command steps is CoreDNS built up step by step to bin/meshdns, for
// bench/memory to measure what each step costs in memory. Build tags add
// the steps, cumulatively: none is CoreDNS with bind and hosts (the floor);
// forward adds forward and prometheus, which meshdns itself needs; meshdns
// adds meshdns with its file source; plugins adds the rest of bin/meshdns's
// plugins; xds adds the xds source, which makes it bin/meshdns.
package main

import (
	"slices"

	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"
	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/hosts"
)

// plugins are the directives of the steps built in.
var plugins = []string{"bind", "hosts"}

func main() {
	dnsserver.Directives = slices.DeleteFunc(slices.Clone(dnsserver.Directives), func(d string) bool {
		return !slices.Contains(plugins, d)
	})
	coremain.Run()
}
