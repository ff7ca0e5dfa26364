// Command coredns is CoreDNS with all its standard plugins plus meshdns,
// which sits right before kubernetes in the plugin chain, and every meshdns
// source.
package main

import (
	_ "github.com/coredns/coredns/core/plugin" // CoreDNS's standard plugins.
	"github.com/coredns/coredns/coremain"

	_ "github.com/meshdns/meshdns/plugin/meshdns" // Registers meshdns and its place in the chain.
	_ "github.com/meshdns/meshdns/plugin/source/file"
	_ "github.com/meshdns/meshdns/plugin/source/kubernetes"
	_ "github.com/meshdns/meshdns/plugin/source/xds"
)

func main() { coremain.Run() }
