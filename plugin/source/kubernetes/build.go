package kubernetes

import (
	"cmp"
	"net/netip"
	"slices"
	"strings"

	apinetworking "istio.io/api/networking/v1alpha3"

	"github.com/meshdns/meshdns/plugin/table"
)

// visible reports whether an object of namespace ns exported to exportTo
// (Istio's syntax: "*", ".", "~" or namespace names; empty means everywhere)
// can be seen from namespace client. With no client namespace the whole mesh
// is served.
func visible(exportTo []string, ns, client string) bool {
	if client == "" || len(exportTo) == 0 {
		return true
	}
	for _, e := range exportTo {
		switch e {
		case "*":
			return true
		case ".":
			if ns == client {
				return true
			}
		default:
			if e == client {
				return true
			}
		}
	}
	return false
}

// serviceToEntry builds the entry of a Service. A headless Service answers
// with its endpoints (the ready ones, or all with publishNotReadyAddresses),
// each also under its own name.
func serviceToEntry(s *service, domain string, eps []*endpointSlice) table.Entry {
	rare := s.more()
	e := table.Entry{Host: s.host(domain), Registry: table.Kubernetes, Addrs: s.addrs(), Ports: s.portList(), Target: rare.target}
	if !rare.headless {
		return e
	}
	return withEndpoints(e, eps, rare.notReady)
}

// withEndpoints gives a headless service's entry the ready endpoints of its
// slices (all of them with notReady) as its addresses, each also under its
// own name, and the ports they listen on.
func withEndpoints(e table.Entry, eps []*endpointSlice, notReady bool) table.Entry {
	e.Addrs = nil
	e.Ports = endpointPorts(e.Ports, eps)
	for _, sl := range eps {
		for _, ep := range sl.endpoints {
			if ep.ready || notReady {
				e.Endpoints = append(e.Endpoints, table.Endpoint{Hostname: ep.hostname, Addr: ep.addr, Cluster: sl.cluster})
				e.Addrs = append(e.Addrs, ep.addr)
			}
		}
	}
	// Several slices may carry the same endpoint while they are updated.
	slices.SortFunc(e.Endpoints, func(a, b table.Endpoint) int {
		return cmp.Or(strings.Compare(a.Cluster, b.Cluster), strings.Compare(a.Hostname, b.Hostname), a.Addr.Compare(b.Addr))
	})
	e.Endpoints = slices.Compact(e.Endpoints)
	e.Addrs = sortAddrs(e.Addrs)
	return e
}

// endpointPorts gives a headless Service's ports the numbers its endpoints
// listen on, found by name and protocol in its EndpointSlices: an SRV record
// gives the port on its target (RFC 2782), and a headless Service's targets
// are its pods, not a virtual IP that maps its port to theirs. A port no
// slice lists keeps the Service's number.
func endpointPorts(svc []table.Port, eps []*endpointSlice) []table.Port {
	var out []table.Port
	for i, p := range svc {
		n := p.Number
		for _, sl := range eps {
			if sl.ports == nil {
				continue
			}
			if j := slices.IndexFunc(*sl.ports, func(q table.Port) bool { return q.Name == p.Name && q.Protocol == p.Protocol }); j >= 0 {
				n = (*sl.ports)[j].Number
				break
			}
		}
		if n != p.Number && out == nil {
			out = slices.Clone(svc) // the Service's list is shared
		}
		if out != nil {
			out[i].Number = n
		}
	}
	if out == nil {
		return svc
	}
	return out
}

// pickNamespace keeps the ServiceEntries of one namespace for a host: the
// client's own if it has one, else that of the oldest entry, as istiod picks
// one namespace per host for a proxy. The others lose.
func pickNamespace(ses []*serviceEntry, client string) (win, lose []*serviceEntry) {
	slices.SortFunc(ses, olderFirst)
	ns := ses[0].ns
	for _, se := range ses {
		if se.ns == client {
			ns = client
		}
	}
	for _, se := range ses {
		if se.ns == ns {
			win = append(win, se)
		} else {
			lose = append(lose, se)
		}
	}
	return win, lose
}

func olderFirst(a, b *serviceEntry) int {
	return cmp.Or(a.created.Compare(b.created), strings.Compare(a.ns, b.ns), strings.Compare(a.name, b.name))
}

// externalEntry merges the ServiceEntries of one namespace that have host.
// selected gives the WorkloadEntries of that namespace a selector selects;
// allocated the addresses meshdns allocated itself.
func externalEntry(host string, ses []*serviceEntry, selected func(map[string]string) []*workloadEntry,
	allocated func(allocKey) []netip.Addr) table.Entry {
	e := table.Entry{Host: host, Registry: table.External}
	for _, se := range ses {
		e.Addrs = append(e.Addrs, entryAddrs(se, host, selected, allocated(allocKey{se.key(), host}))...)
		e.Ports = append(e.Ports, se.ports...)
	}
	e.Addrs = sortAddrs(e.Addrs)
	sortPorts(e.Ports)
	e.Ports = slices.Compact(e.Ports)
	return e
}

// entryAddrs are the addresses one ServiceEntry gives host, in istiod's order
// of preference: spec.addresses, then status.addresses (istiod's allocation),
// then meshdns's own allocation, then for NONE and STATIC the endpoint IPs:
// spec.endpoints, or the healthy WorkloadEntries its selector selects.
func entryAddrs(se *serviceEntry, host string, selected func(map[string]string) []*workloadEntry, allocated []netip.Addr) []netip.Addr {
	if se.specAddrs {
		return se.addrs
	}
	if a := statusAddrs(se, host); len(a) > 0 {
		return a
	}
	if len(allocated) > 0 {
		return allocated
	}
	if se.resolution != apinetworking.ServiceEntry_NONE && se.resolution != apinetworking.ServiceEntry_STATIC {
		return nil
	}
	if se.selector == nil {
		return se.endpoints
	}
	var out []netip.Addr
	for _, we := range selected(se.selector) {
		if we.addr.IsValid() && !we.unhealthy {
			out = append(out, we.addr)
		}
	}
	return out
}

func statusAddrs(se *serviceEntry, host string) []netip.Addr {
	var out []netip.Addr
	for _, s := range se.status {
		if s.host == host || s.host == "" {
			out = append(out, s.addr)
		}
	}
	return out
}

func matches(selector, labels map[string]string) bool {
	for k, v := range selector {
		if l, ok := labels[k]; !ok || l != v {
			return false
		}
	}
	return true
}

// sortAddrs sorts and de-duplicates in a new slice: the input may be shared.
func sortAddrs(in []netip.Addr) []netip.Addr {
	if len(in) == 0 {
		return nil
	}
	out := slices.Clone(in)
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.Compact(out)
}
