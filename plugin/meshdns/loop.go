package meshdns

import (
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/plugin/forward"
)

// checkLoop refuses to start when the server's own forward sends queries back
// to this server: on a VM whose resolv.conf names meshdns, `forward .
// /etc/resolv.conf` would send every unknown name around in a circle. The
// loop plugin catches longer circles at run time; this one is certain.
func checkLoop(cfg *dnsserver.Config) error {
	fwd, ok := cfg.Handler("forward").(*forward.Forward)
	if !ok {
		return nil
	}
	for _, p := range fwd.List() {
		if pointsAt(p.Addr(), cfg.ListenHosts, cfg.Port) {
			return fmt.Errorf("forward upstream %s is this server (port %s): every unknown name would loop; "+
				"point forward at the real resolvers, not at a resolv.conf that names meshdns", p.Addr(), cfg.Port)
		}
	}
	return nil
}

// pointsAt reports whether addr (host:port) reaches a server listening on
// port at hosts ("" or an unspecified address meaning every local address).
func pointsAt(addr string, hosts []string, port string) bool {
	host, p, err := net.SplitHostPort(addr)
	if err != nil || p != port {
		return false
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	ip = ip.Unmap()
	for _, h := range hosts {
		listen, err := netip.ParseAddr(h)
		switch {
		case h == "" || (err == nil && listen.IsUnspecified()):
			if ip.IsLoopback() || ip.IsUnspecified() || localAddr(ip) {
				return true
			}
		case err == nil && listen.Unmap() == ip:
			return true
		}
	}
	return false
}

func localAddr(ip netip.Addr) bool {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	return slices.ContainsFunc(addrs, func(a net.Addr) bool {
		p, err := netip.ParsePrefix(a.String())
		return err == nil && p.Addr().Unmap() == ip
	})
}
