package table

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strings"
)

// Registry says where a host comes from, as in Istio's NameInfo.registry.
type Registry uint8

const (
	// External is a ServiceEntry host (or any other non-Kubernetes name).
	External Registry = iota
	// Kubernetes is a Kubernetes Service host; it gets short names.
	Kubernetes
)

func (r Registry) String() string {
	if r == Kubernetes {
		return "Kubernetes"
	}
	return "External"
}

// ParseRegistry parses the NDS registry names; the empty string is External.
func ParseRegistry(s string) (Registry, error) {
	switch s {
	case "Kubernetes":
		return Kubernetes, nil
	case "External", "":
		return External, nil
	}
	return External, fmt.Errorf("unknown registry %q (want Kubernetes or External)", s)
}

// Entry is what a source knows about one host. It is the table's input; the
// table keeps its own precomputed form.
type Entry struct {
	// Host is the fully qualified name without the trailing dot, e.g.
	// "reviews.bookinfo.svc.cluster.local", or a wildcard "*.example.com".
	Host string
	// Registry Kubernetes gives a host of the form <name>.<ns>.svc.<domain> its
	// short names (NDS shortname and namespace are derived from the host).
	Registry Registry
	// Addrs are the addresses served at Host: the ClusterIPs, a ServiceEntry's
	// addresses, or the ready endpoint IPs of a headless service.
	Addrs []netip.Addr
	// Ports feed SRV records.
	Ports []Port
	// Endpoints are the per-endpoint names of a headless service:
	// "<hostname>.<Host>", or "<a-b-c-d>.<Host>" for an endpoint without one.
	Endpoints []Endpoint
	// Target makes Host a CNAME to this name (a Kubernetes ExternalName service).
	Target string
}

// Port is one service port.
type Port struct {
	Name     string
	Number   uint16
	Protocol Protocol
}

// Protocol is the transport protocol of a port, as used in SRV names.
type Protocol uint8

const (
	TCP Protocol = iota
	UDP
	SCTP
)

var protocolNames = [...]string{TCP: "tcp", UDP: "udp", SCTP: "sctp"}

func (p Protocol) String() string { return protocolNames[p] }

// ParseProtocol accepts tcp, udp and sctp in any case.
func ParseProtocol(s string) (Protocol, error) {
	for p, n := range protocolNames {
		if strings.EqualFold(s, n) {
			return Protocol(p), nil
		}
	}
	return TCP, fmt.Errorf("unknown protocol %q (want TCP, UDP or SCTP)", s)
}

// Endpoint is one endpoint of a headless service.
type Endpoint struct {
	Hostname string
	Addr     netip.Addr
	// Cluster, for an endpoint of a multicluster service, is the ID of the
	// member cluster it runs in: its name is then "<hostname>.<Cluster>.<Host>"
	// (Kubernetes Multicluster DNS specification §2.4.1).
	Cluster string
}

// Validation errors carry a reason that sources and metrics use as a label.
var (
	ErrHost     = errors.New("invalid_host")
	ErrAddress  = errors.New("invalid_address")
	ErrPort     = errors.New("invalid_port")
	ErrTarget   = errors.New("invalid_target")
	ErrEndpoint = errors.New("invalid_endpoint")
	ErrLoop     = errors.New("cname_loop")
	ErrDepth    = errors.New("cname_depth")
)

// maxName is the longest name, in presentation form without the final dot,
// whose wire form fits in 255 octets (RFC 1035 §2.3.4).
const maxName = 253

// A Record keeps the length of its address records' wire form in a uint32
// and its port count in a uint16: Normalize rejects entries past these limits
// rather than serve part of them. An endpoint name can get every endpoint's
// address, so endpoints are bounded as addresses are.
const (
	maxAddrs = math.MaxUint32 / WireAAAA // about 165 million
	maxPorts = math.MaxUint16
)

// Reason returns the metric label for an error returned by Normalize.
func Reason(err error) string {
	for _, e := range []error{ErrHost, ErrAddress, ErrPort, ErrTarget, ErrEndpoint, ErrLoop, ErrDepth} {
		if errors.Is(err, e) {
			return e.Error()
		}
	}
	return "invalid"
}

// Normalize lower-cases names, strips trailing dots, sorts and de-duplicates
// addresses, and checks everything the table relies on. It returns the
// cleaned entry or an error wrapping one of the Err* reasons.
func Normalize(e Entry) (Entry, error) {
	host, err := normalizeName(e.Host, true)
	if err != nil {
		return e, fmt.Errorf("%w: host %q: %v", ErrHost, e.Host, err)
	}
	e.Host = host
	if e.Target != "" {
		t, err := normalizeName(e.Target, false)
		if err != nil {
			return e, fmt.Errorf("%w: %s: target %q: %v", ErrTarget, host, e.Target, err)
		}
		if strings.HasPrefix(host, "*.") {
			return e, fmt.Errorf("%w: %s: a wildcard host cannot have a target", ErrTarget, host)
		}
		e.Target = t
	}
	if len(e.Addrs) > maxAddrs {
		return e, fmt.Errorf("%w: %s: %d addresses, more than %d", ErrAddress, host, len(e.Addrs), maxAddrs)
	}
	clean := true
	for i, a := range e.Addrs {
		if !usableAddr(a) {
			return e, fmt.Errorf("%w: %s: %v", ErrAddress, host, a)
		}
		if a.Is4In6() || (i > 0 && e.Addrs[i-1].Compare(a) >= 0) {
			clean = false
		}
	}
	if !clean {
		// Copy: the caller's slice is not ours to reorder.
		addrs := make([]netip.Addr, len(e.Addrs))
		for i, a := range e.Addrs {
			addrs[i] = a.Unmap()
		}
		slices.SortFunc(addrs, netip.Addr.Compare)
		e.Addrs = slices.Compact(addrs)
	}
	if len(e.Ports) > maxPorts {
		return e, fmt.Errorf("%w: %s: %d ports, more than %d", ErrPort, host, len(e.Ports), maxPorts)
	}
	for _, p := range e.Ports {
		// The name is asked for as the label "_<name>", at most 63 octets.
		if p.Number == 0 || p.Protocol > SCTP || (p.Name != "" && (!isLabel(p.Name) || len(p.Name) > 62)) {
			return e, fmt.Errorf("%w: %s: port %q %d", ErrPort, host, p.Name, p.Number)
		}
	}
	if len(e.Endpoints) > maxAddrs {
		return e, fmt.Errorf("%w: %s: %d endpoints, more than %d", ErrEndpoint, host, len(e.Endpoints), maxAddrs)
	}
	for _, ep := range e.Endpoints {
		if !usableAddr(ep.Addr) || (ep.Hostname != "" && !isLabel(ep.Hostname)) || (ep.Cluster != "" && !isLabel(ep.Cluster)) {
			return e, fmt.Errorf("%w: %s: endpoint %q %v", ErrEndpoint, host, endpointLabel(ep), ep.Addr)
		}
	}
	if len(e.Endpoints) > 0 && strings.HasPrefix(host, "*.") {
		return e, fmt.Errorf("%w: %s: a wildcard host cannot have endpoints", ErrEndpoint, host)
	}
	return e, nil
}

// longEndpoints leaves out the endpoints whose names ("<hostname>.<host>")
// would be longer than maxName: such a name can be neither asked for nor
// written in an SRV or PTR answer. Their addresses still answer for the host.
// The error names the first of them and counts the rest.
func longEndpoints(e Entry) (Entry, error) {
	var kept []Endpoint
	first, n := "", 0
	for i, ep := range e.Endpoints {
		label := endpointLabel(ep)
		if len(label)+1+len(e.Host) <= maxName {
			if n > 0 {
				kept = append(kept, ep)
			}
			continue
		}
		if n == 0 {
			// Copy: the caller's slice is not ours to change.
			kept, first = slices.Clone(e.Endpoints[:i]), label+"."+e.Host
		}
		n++
	}
	if n == 0 {
		return e, nil
	}
	e.Endpoints = kept
	return e, fmt.Errorf("%w: %s: %d endpoint names longer than %d characters, the first %s", ErrEndpoint, e.Host, n, maxName, first)
}

func usableAddr(a netip.Addr) bool {
	return a.IsValid() && a.Zone() == "" && !a.IsUnspecified()
}

// normalizeName lower-cases and checks a domain name: at most 253 characters,
// labels of 1 to 63 letters, digits, '-' or '_'. With wildcard, a leading "*."
// label is allowed, but never a bare "*".
func normalizeName(s string, wildcard bool) (string, error) {
	s = strings.ToLower(strings.TrimSuffix(s, "."))
	if s == "" {
		return "", errors.New("empty name")
	}
	if len(s) > maxName {
		return "", fmt.Errorf("longer than %d characters", maxName)
	}
	rest := s
	if strings.HasPrefix(s, "*.") {
		if !wildcard {
			return "", errors.New("wildcard not allowed here")
		}
		rest = s[2:]
	}
	for l := range strings.SplitSeq(rest, ".") {
		if !isLabel(l) {
			return "", fmt.Errorf("bad label %q", l)
		}
	}
	return s, nil
}

func isLabel(l string) bool {
	if l == "" || len(l) > 63 {
		return false
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return l[0] != '-' && l[len(l)-1] != '-'
}
