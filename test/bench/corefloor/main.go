// Command corefloor is CoreDNS with only the bind and hosts plugins, built
// as CoreDNS builds its releases (CGO_ENABLED=0): the memory of the server
// itself, with nothing of meshdns, that make bench measures bin/meshdns
// against.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"
	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/hosts"
)

func init() { dnsserver.Directives = []string{"bind", "hosts"} }

func main() { coremain.Run() }
