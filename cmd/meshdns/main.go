// Command meshdns is the lean build for the VM and node role: CoreDNS with
// the plugins that role needs and meshdns with its file and xds sources. It
// links no Kubernetes client and none of CoreDNS's other plugins, which a
// node's resolver never runs but would pay for in memory on every machine.
package main

import (
	"slices"

	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"
	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/forward"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/hosts"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/loop"
	_ "github.com/coredns/coredns/plugin/metrics"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"
	_ "github.com/coredns/coredns/plugin/rewrite"
	_ "github.com/coredns/coredns/plugin/template"

	_ "github.com/meshdns/meshdns/plugin/meshdns"
	_ "github.com/meshdns/meshdns/plugin/source/file"
	_ "github.com/meshdns/meshdns/plugin/source/xds"
)

// plugins are the directives this build serves, "prometheus" being the
// metrics plugin's.
var plugins = []string{"bind", "cache", "errors", "forward", "health", "hosts", "log", "loop", "prometheus",
	"ready", "reload", "rewrite", "template", "meshdns"}

func init() {
	// CoreDNS's order, meshdns in its place (before kubernetes, which this
	// build leaves out), with the directives of the plugins not linked
	// taken away.
	dnsserver.Directives = slices.DeleteFunc(slices.Clone(dnsserver.Directives), func(d string) bool {
		return !slices.Contains(plugins, d)
	})
}

func main() { coremain.Run() }
