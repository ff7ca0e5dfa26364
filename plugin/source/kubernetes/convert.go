package kubernetes

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	apinetworking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/meshdns/meshdns/plugin/table"
)

// exportToAnnotation is Istio's visibility annotation on Services.
const exportToAnnotation = "networking.istio.io/exportTo"

// healthChecksAnnotation turns on health checks for a WorkloadEntry: it is
// then served only while its status has the condition Healthy True.
const (
	healthChecksAnnotation = "proxy.istio.io/health-checks-enabled"
	healthyCondition       = "Healthy"
)

// autoAllocateLabel opts a ServiceEntry out of address allocation, as in istiod.
const autoAllocateLabel = "networking.istio.io/enable-autoallocate-ip"

// service is what the table needs from a Service. It is also what the
// state holds (see slim.go), one per Service in the cluster, so it
// is packed to 64 bytes: one short string for name, namespace and version,
// the first ClusterIP inline, the rest behind pointers. At 100k Services
// that is 88 B a Service with its string, against 172 B for the same fields
// as three strings and two slices: 8.0 MiB less, 77 % of the source's 10.4
// MiB at 100k (BenchmarkServiceMemory).
//
//	go test -run '^$' -bench TrickSlimMemory -benchtime 1x ./plugin/source/kubernetes/
type service struct {
	apiObject
	id      string        // <name>.<namespace>, then the resource version
	addr    [16]byte      // the first ClusterIP: 4 bytes for IPv4, else 16
	ports   *[]table.Port // shared (intern.go); nil for none
	rare    *serviceRare  // nil for a plain ClusterIP Service, as most are
	idLen   uint8         // of <name>.<namespace>: two DNS labels
	addrLen uint8         // 0 (no ClusterIP), 4 or 16
}

// serviceRare is what few Services have.
type serviceRare struct {
	addrs    []netip.Addr // ClusterIPs after the first (dual-stack)
	exportTo []string
	target   string // ExternalName
	headless bool
	notReady bool // publishNotReadyAddresses
}

var plainService serviceRare

// newService packs a Service; name and namespace must be DNS labels.
func newService(name, ns, version string, addrs []netip.Addr, ps []table.Port, rare *serviceRare) *service {
	s := &service{id: name + "." + ns + version, idLen: uint8(len(name) + 1 + len(ns)), ports: ports.intern(ps), rare: rare}
	if len(addrs) > 0 {
		a := addrs[0]
		if a.Is4() {
			s.addrLen = 4
			b := a.As4()
			copy(s.addr[:], b[:])
		} else {
			s.addrLen = 16
			s.addr = a.As16()
		}
	}
	if len(addrs) > 1 {
		if s.rare == nil {
			s.rare = &serviceRare{}
		}
		s.rare.addrs = addrs[1:]
	}
	return s
}

// host is made when asked: the domain is the same for all Services, and
// hosts are only needed on updates.
func (s *service) host(domain string) string { return serviceHost(s.name(), s.namespace(), domain) }
func (s *service) version() string           { return s.id[s.idLen:] }

// addrs returns the ClusterIPs in the Service's order.
func (s *service) addrs() []netip.Addr {
	var out []netip.Addr
	switch s.addrLen {
	case 4:
		out = append(out, netip.AddrFrom4([4]byte(s.addr[:4])))
	case 16:
		out = append(out, netip.AddrFrom16(s.addr))
	}
	return append(out, s.more().addrs...)
}

func (s *service) portList() []table.Port {
	if s.ports == nil {
		return nil
	}
	return *s.ports
}

// more returns s's rare fields, zero for a plain Service; read only.
func (s *service) more() *serviceRare {
	if s.rare == nil {
		return &plainService
	}
	return s.rare
}

// endpoint is one address of an EndpointSlice.
type endpoint struct {
	hostname string
	addr     netip.Addr
	ready    bool
}

// endpointSlice is what the table needs from an EndpointSlice.
type endpointSlice struct {
	apiObject
	ns, name, version string
	service           string // "ns/name" of the Service, or ServiceImport, it belongs to
	// cluster, for a slice an MCS controller imported, is the cluster its
	// endpoints run in; "" for the cluster's own.
	cluster   string
	endpoints []endpoint
	// ports are the ports on the endpoints (the Service's target ports),
	// which a headless Service's SRV records give; shared (intern.go).
	ports *[]table.Port
}

// serviceEntry is what the table needs from a ServiceEntry.
type serviceEntry struct {
	apiObject
	ns, name   string
	version    string
	created    time.Time
	hosts      []string // qualified and lower-cased
	exportTo   []string
	specAddrs  bool         // spec.addresses is set: nothing else gives addresses
	addrs      []netip.Addr // spec.addresses that are single addresses
	status     []hostAddr   // status.addresses
	resolution apinetworking.ServiceEntry_Resolution
	endpoints  []netip.Addr      // spec.endpoints that are IPs
	selector   map[string]string // workloadSelector; nil when unset
	ports      []table.Port
	noAlloc    bool // opted out of address allocation
}

type hostAddr struct {
	host string // "" for every host of the entry
	addr netip.Addr
}

// workloadEntry is what the table needs from a WorkloadEntry.
type workloadEntry struct {
	apiObject
	ns, name, version string
	labels            map[string]string
	addr              netip.Addr // invalid when the address is not an IP
	unhealthy         bool       // health checks enabled and not Healthy: not served
}

func (se *serviceEntry) key() string { return se.ns + "/" + se.name }

// nameNS is "<name>.<namespace>".
func (s *service) nameNS() string { return s.id[:s.idLen] }

// Neither the name nor the namespace can hold a dot: the API server checks
// both are DNS labels.
func (s *service) name() string {
	name, _, _ := strings.Cut(s.nameNS(), ".")
	return name
}

func (s *service) namespace() string {
	_, ns, _ := strings.Cut(s.nameNS(), ".")
	return ns
}

// serviceHost is the host of a Service, as istiod names it.
func serviceHost(name, ns, domain string) string {
	return name + "." + ns + ".svc." + domain
}

// convertService checks a Service and keeps what the table needs.
func convertService(s *corev1.Service, domain string) (*service, error) {
	host := serviceHost(s.Name, s.Namespace, domain)
	var addrs []netip.Addr
	var ps []table.Port
	rare := serviceRare{exportTo: splitList(s.Annotations[exportToAnnotation]), notReady: s.Spec.PublishNotReadyAddresses}
	if s.Spec.Type == corev1.ServiceTypeExternalName {
		rare.target = s.Spec.ExternalName
	} else {
		ips := s.Spec.ClusterIPs
		if len(ips) == 0 && s.Spec.ClusterIP != "" {
			ips = []string{s.Spec.ClusterIP}
		}
		for _, ip := range ips {
			if ip == corev1.ClusterIPNone {
				rare.headless = true
				continue
			}
			a, err := netip.ParseAddr(ip)
			if err != nil {
				return nil, fmt.Errorf("%w: cluster IP %q", table.ErrAddress, ip)
			}
			addrs = append(addrs, a)
		}
	}
	for _, p := range s.Spec.Ports {
		proto := table.TCP
		if p.Protocol != "" {
			var err error
			if proto, err = table.ParseProtocol(string(p.Protocol)); err != nil {
				return nil, fmt.Errorf("%w: port %q: %v", table.ErrPort, p.Name, err)
			}
		}
		if p.Port < 1 || p.Port > 65535 {
			return nil, fmt.Errorf("%w: port %q: number %d", table.ErrPort, p.Name, p.Port)
		}
		ps = append(ps, table.Port{Name: strings.ToLower(p.Name), Number: uint16(p.Port), Protocol: proto})
	}
	sortPorts(ps)
	// The table checks the rest (host length, labels, target) the same way.
	if _, err := table.Normalize(table.Entry{Host: host, Registry: table.Kubernetes, Addrs: addrs, Ports: ps, Target: rare.target}); err != nil {
		return nil, err
	}
	var more *serviceRare
	if rare.exportTo != nil || rare.target != "" || rare.headless || rare.notReady {
		more = &rare
	}
	return newService(s.Name, s.Namespace, s.ResourceVersion, addrs, ps, more), nil
}

// convertEndpointSlice keeps the addresses of a slice that belongs to a
// Service, or to a ServiceImport (mcs.go). Slices of FQDN type, or without
// a service label, give nothing.
func convertEndpointSlice(s *discoveryv1.EndpointSlice) (*endpointSlice, error) {
	cluster, err := mcsCluster(s.Labels)
	if err != nil {
		return nil, err
	}
	svc := s.Labels[discoveryv1.LabelServiceName]
	if cluster != "" {
		svc = s.Labels[mcsServiceLabel]
	}
	if svc == "" || s.AddressType == discoveryv1.AddressTypeFQDN {
		return nil, nil
	}
	out := &endpointSlice{ns: s.Namespace, name: s.Name, version: s.ResourceVersion, service: s.Namespace + "/" + svc, cluster: cluster}
	var ps []table.Port
	for _, p := range s.Ports {
		if p.Port == nil || *p.Port < 1 || *p.Port > 65535 {
			continue
		}
		proto := table.TCP
		if p.Protocol != nil {
			var err error
			if proto, err = table.ParseProtocol(string(*p.Protocol)); err != nil {
				continue // a protocol DNS has no name for
			}
		}
		name := ""
		if p.Name != nil {
			name = strings.ToLower(*p.Name)
		}
		ps = append(ps, table.Port{Name: name, Number: uint16(*p.Port), Protocol: proto})
	}
	out.ports = ports.intern(ps)
	for _, ep := range s.Endpoints {
		// A nil ready condition means ready (discovery/v1 API docs).
		ready := ep.Conditions.Ready == nil || *ep.Conditions.Ready
		hostname := ""
		if ep.Hostname != nil {
			hostname = strings.ToLower(*ep.Hostname)
		}
		for _, ip := range ep.Addresses {
			a, err := netip.ParseAddr(ip)
			if err != nil || !a.IsValid() || a.IsUnspecified() {
				return nil, fmt.Errorf("%w: endpoint address %q", table.ErrEndpoint, ip)
			}
			out.endpoints = append(out.endpoints, endpoint{hostname: hostname, addr: a.Unmap(), ready: ready})
		}
		if hostname != "" && len(validation.IsDNS1123Label(hostname)) > 0 {
			return nil, fmt.Errorf("%w: endpoint hostname %q", table.ErrEndpoint, hostname)
		}
	}
	return out, nil
}

// convertServiceEntry checks a ServiceEntry and keeps what the table needs.
// Short hosts are qualified as istiod does: <host>.<namespace>.svc.<domain>.
func convertServiceEntry(se *networkingv1.ServiceEntry, domain string) (*serviceEntry, error) {
	spec := &se.Spec
	out := &serviceEntry{
		ns: se.Namespace, name: se.Name, version: se.ResourceVersion, created: se.CreationTimestamp.Time,
		exportTo:   spec.ExportTo,
		specAddrs:  len(spec.Addresses) > 0,
		resolution: spec.Resolution,
		noAlloc:    se.Labels[autoAllocateLabel] == "false",
	}
	if len(spec.Hosts) == 0 {
		return nil, fmt.Errorf("%w: no hosts", table.ErrHost)
	}
	for _, h := range spec.Hosts {
		h = strings.ToLower(strings.TrimSuffix(h, "."))
		if h == "*" {
			return nil, fmt.Errorf("%w: bare wildcard host", table.ErrHost)
		}
		if !strings.Contains(h, ".") {
			h = serviceHost(h, se.Namespace, domain)
		}
		out.hosts = append(out.hosts, h)
	}
	slices.Sort(out.hosts)
	out.hosts = slices.Compact(out.hosts)
	for _, s := range spec.Addresses {
		a, ok, err := parseAddrOrCIDR(s)
		if err != nil {
			return nil, fmt.Errorf("%w: address %q", table.ErrAddress, s)
		}
		// A CIDR is not an address to answer with; istiod skips it too.
		if ok {
			out.addrs = append(out.addrs, a)
		}
	}
	for _, s := range se.Status.Addresses {
		if a, err := netip.ParseAddr(s.GetValue()); err == nil {
			out.status = append(out.status, hostAddr{host: strings.ToLower(s.GetHost()), addr: a.Unmap()})
		}
	}
	for _, ep := range spec.Endpoints {
		// DNS names and unix sockets are not addresses to answer with.
		if a, err := netip.ParseAddr(ep.GetAddress()); err == nil {
			out.endpoints = append(out.endpoints, a.Unmap())
		}
	}
	if ws := spec.WorkloadSelector; ws != nil {
		out.selector = ws.GetLabels()
		if out.selector == nil {
			out.selector = map[string]string{}
		}
	}
	for _, p := range spec.Ports {
		if p.GetNumber() < 1 || p.GetNumber() > 65535 {
			return nil, fmt.Errorf("%w: port %q: number %d", table.ErrPort, p.GetName(), p.GetNumber())
		}
		proto := table.TCP
		if strings.EqualFold(p.GetProtocol(), "UDP") {
			proto = table.UDP
		}
		out.ports = append(out.ports, table.Port{Name: strings.ToLower(p.GetName()), Number: uint16(p.GetNumber()), Protocol: proto})
	}
	sortPorts(out.ports)
	if p := ports.intern(out.ports); p != nil {
		out.ports = *p
	}
	for _, h := range out.hosts {
		if _, err := table.Normalize(table.Entry{Host: h, Addrs: out.addrs, Ports: out.ports}); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// convertWorkloadEntry keeps the labels and address of a WorkloadEntry; the
// spec labels add to the metadata labels, as istiod merges them.
func convertWorkloadEntry(we *networkingv1.WorkloadEntry) *workloadEntry {
	labels := make(map[string]string, len(we.Labels)+len(we.Spec.Labels))
	for k, v := range we.Labels {
		labels[k] = v
	}
	for k, v := range we.Spec.Labels {
		labels[k] = v
	}
	out := &workloadEntry{ns: we.Namespace, name: we.Name, version: we.ResourceVersion, labels: labels, unhealthy: !healthy(we)}
	if a, err := netip.ParseAddr(we.Spec.Address); err == nil {
		out.addr = a.Unmap()
	}
	return out
}

// healthy is istiod's rule: a WorkloadEntry without health checks is always
// healthy; with them, only while its Healthy condition is True, so a new one
// waits for its first probe.
func healthy(we *networkingv1.WorkloadEntry) bool {
	if on, err := strconv.ParseBool(we.Annotations[healthChecksAnnotation]); err != nil || !on {
		return true
	}
	for _, c := range we.Status.Conditions {
		if c.GetType() == healthyCondition {
			return c.GetStatus() == "True"
		}
	}
	return false
}

// parseAddrOrCIDR parses an address or a CIDR; ok is false for a CIDR wider
// than one address.
func parseAddrOrCIDR(s string) (a netip.Addr, ok bool, err error) {
	if !strings.Contains(s, "/") {
		a, err = netip.ParseAddr(s)
		return a.Unmap(), err == nil, err
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return a, false, err
	}
	return p.Addr().Unmap(), p.IsSingleIP(), nil
}

func splitList(s string) []string {
	var out []string
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func sortPorts(ps []table.Port) {
	slices.SortFunc(ps, func(a, b table.Port) int {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		if a.Number != b.Number {
			return int(a.Number) - int(b.Number)
		}
		return int(a.Protocol) - int(b.Protocol)
	})
}
