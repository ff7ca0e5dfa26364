package kubernetes

import (
	"cmp"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/miekg/dns"

	"github.com/meshdns/meshdns/test/harness"
)

// The differential test: meshdns and CoreDNS's kubernetes plugin serve the
// same API server; both are asked the same questions; their answers,
// normalised, must be equal, or the difference must be one of
// deliberateDifferences.

const zone = "cluster.local."

// queryTypes are asked for every name.
var queryTypes = []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeSRV, dns.TypePTR, dns.TypeTXT, dns.TypeCNAME,
	dns.TypeMX, dns.TypeANY, dns.TypeSOA, dns.TypeNS}

// Kinds of names, by the object they come from.
const (
	kindZone         = "zone"
	kindNamespace    = "namespace"       // a namespace with Services
	kindEmptyNS      = "empty namespace" // a namespace without Services
	kindClusterIP    = "ClusterIP"
	kindHeadless     = "headless"
	kindExternalName = "ExternalName"
	kindReverse      = "reverse"
)

// A question of the differential test. Shape is the name in the notation of
// the specification (<svc>, <ns>, <zone>...), with qualifiers in
// parentheses; shape, kind and owner are what deliberate differences are
// keyed by.
type question struct {
	name  string
	shape string
	kind  string
	owner string // the Service ("ns/name") or namespace it comes from
}

// Shapes of names.
const (
	shZone            = "<zone>"
	shSvcZone         = "svc.<zone>"
	shDNSVersion      = "dns-version.<zone>"
	shPod             = "pod.<zone>"
	shNSName          = "ns.dns.<zone>"
	shUnknownInZone   = "<unknown>.<zone>"
	shUnknownNS       = "<unknown-ns>.svc.<zone>"
	shSvcUnknownNS    = "<svc>.<unknown-ns>.svc.<zone>"
	shInAddr          = "in-addr.arpa."
	shIP6             = "ip6.arpa."
	shNS              = "<ns>.svc.<zone>"
	shUnknownSvc      = "<unknown-svc>.<ns>.svc.<zone>"
	shBelowUnknownSvc = "<name>.<unknown-svc>.<ns>.svc.<zone>"

	shSvc               = "<svc>.<ns>.svc.<zone>"
	shSvcMixed          = shSvc + " (mixed case)"
	shSearchNS          = "<svc>.<ns>.<ns2>.svc.<zone>"
	shSearchZone        = "<svc>.<ns>.<zone>"
	shSearchFQDN        = "<svc>.<ns>.svc.<zone>.<ns2>.svc.<zone>"
	shPort              = "_<port>._<proto>.<svc>.<ns>.svc.<zone>"
	shPortMixed         = shPort + " (mixed case)"
	shPortUnnamed       = "_<port-number>._<proto>.<svc>.<ns>.svc.<zone> (unnamed port)"
	shPortOtherProto    = "_<port>._<other-proto>.<svc>.<ns>.svc.<zone>"
	shPortBare          = "<port>.<proto>.<svc>.<ns>.svc.<zone>"
	shBelowPort         = "<name>._<port>._<proto>.<svc>.<ns>.svc.<zone>"
	shUnknownPort       = "_<unknown-port>._<proto>.<svc>.<ns>.svc.<zone>"
	shProto             = "_<proto>.<svc>.<ns>.svc.<zone>"
	shAbsentProto       = "_<absent-proto>.<svc>.<ns>.svc.<zone>"
	shHostname          = "<hostname>.<svc>.<ns>.svc.<zone>"
	shDashed            = "<dashed-ip>.<svc>.<ns>.svc.<zone>"
	shDashedOfHostname  = shDashed + " (of an endpoint with a hostname)"
	shBelowEndpoint     = "<name>.<hostname>.<svc>.<ns>.svc.<zone>"
	shPortBelowEndpoint = "_<port>._<proto>.<hostname>.<svc>.<ns>.svc.<zone>"
	shUnknownBelowSvc   = "<unknown-name>.<svc>.<ns>.svc.<zone>"
	shTwoBelowSvc       = "<name>.<name>.<svc>.<ns>.svc.<zone>"
	shThreeBelowSvc     = "<name>.<name>.<name>.<svc>.<ns>.svc.<zone>"

	shRevClusterIP = "<reverse of a ClusterIP>"
	shRevEndpoint  = "<reverse of an endpoint>"
	shRevUnknown   = "<reverse of an unknown address>"
	shRevAncestor  = "<ancestor of a reverse name>"
	shBelowRev     = "<name>.<reverse of a ClusterIP>"

	// Qualifiers of endpoint names: not ready, and not ready but
	// published (publishNotReadyAddresses).
	notReady  = " (not ready)"
	published = " (not ready, published)"
)

// A difference the test accepts: every question of one of shapes, kinds
// and types (and, if set, of one of services, as "ns/name"), where meshdns's
// answer is of outcome mesh and the kubernetes plugin's of outcome k8s
// (outcomes: NODATA, ANSWER, NXDOMAIN, NXDOMAIN+ANSWER, or another rcode's
// name).
type deliberate struct {
	shapes   []string
	kinds    []string
	services []string
	types    []uint16
	mesh     string
	k8s      string
	reason   string
}

func (d deliberate) matches(q question, qtype uint16, mesh, k8s string) bool {
	return slices.Contains(d.shapes, q.shape) && slices.Contains(d.kinds, q.kind) &&
		(d.services == nil || slices.Contains(d.services, q.owner)) &&
		slices.Contains(d.types, qtype) && d.mesh == mesh && d.k8s == k8s
}

// Type sets.
var (
	allTypes = queryTypes
	addrs    = []uint16{dns.TypeA, dns.TypeAAAA}
	soa      = []uint16{dns.TypeSOA}
	anyType  = []uint16{dns.TypeANY}
)

func allBut(ts ...uint16) []uint16 {
	return slices.DeleteFunc(slices.Clone(allTypes), func(t uint16) bool { return slices.Contains(ts, t) })
}

func only(ts ...uint16) []uint16 { return ts }

var (
	svcKinds    = []string{kindClusterIP, kindHeadless, kindExternalName}
	withPorts   = []string{kindClusterIP, kindHeadless}
	noEndpoints = []string{"beta/dead", "beta/idle"}
)

// deliberateDifferences are the differences from the kubernetes plugin that
// meshdns means to have. docs/kubernetes.md, "Differences from CoreDNS's
// kubernetes plugin", lists the same reasons, word for word.
var deliberateDifferences = []deliberate{
	{
		shapes: []string{shUnknownInZone, shUnknownNS, shSvcUnknownNS, shUnknownSvc, shBelowUnknownSvc,
			shUnknownBelowSvc, shTwoBelowSvc, shThreeBelowSvc, shBelowEndpoint, shBelowPort, shPortBelowEndpoint,
			shUnknownPort, shPortOtherProto, shPortUnnamed, shAbsentProto,
			shDashedOfHostname, shDashedOfHostname + notReady, shDashedOfHostname + published,
			shHostname + notReady, shDashed + notReady,
			shRevUnknown, shBelowRev, shRevEndpoint + notReady},
		kinds: append([]string{kindZone, kindNamespace, kindEmptyNS, kindReverse}, svcKinds...),
		types: soa, mesh: "NXDOMAIN", k8s: "NODATA",
		reason: "SOA below the apex: the kubernetes plugin answers NODATA for every name, existing or not; " +
			"a name that does not exist is NXDOMAIN for every type (RFC 1034 §4.3.2, RFC 2308 §2.1).",
	},
	{
		shapes: []string{shSvc, shSvcMixed, shPort, shPortMixed, shProto, shSearchNS, shSearchZone, shSearchFQDN},
		kinds:  []string{kindHeadless}, services: noEndpoints,
		types: soa, mesh: "NXDOMAIN", k8s: "NODATA",
		reason: "SOA at a headless Service without ready endpoints: NXDOMAIN, as for every type " +
			"(specification §2.4.1); the kubernetes plugin answers NODATA for SOA.",
	},
	{
		shapes: []string{shSvc, shSvcMixed, shPort, shPortMixed, shHostname, shDashed, shZone, shInAddr, shIP6, shNSName},
		kinds:  append([]string{kindZone}, svcKinds...),
		types:  anyType, mesh: "ANSWER", k8s: "NODATA",
		reason: "ANY: meshdns answers the name's own records (A and AAAA, CNAME, SRV, or the apex's NS and SOA; " +
			"RFC 8482 §4.1); the kubernetes plugin answers NODATA, as if the name had no records.",
	},
	{
		shapes: []string{shPort, shPortMixed}, kinds: withPorts,
		types: addrs, mesh: "NODATA", k8s: "ANSWER",
		reason: "A and AAAA at `_<port>._<proto>.` names: the specification gives them SRV records only; " +
			"the kubernetes plugin answers the Service's addresses there too.",
	},
	{
		shapes: []string{shPortBare}, kinds: withPorts,
		types: only(dns.TypeA, dns.TypeAAAA, dns.TypeSRV), mesh: "NXDOMAIN", k8s: "ANSWER",
		reason: "`<port>.<proto>.<svc>...` without underscores: no such name in the specification (RFC 2782 names " +
			"take underscores); the kubernetes plugin strips underscores and answers these as SRV names.",
	},
	{
		shapes: []string{shPortBare}, kinds: withPorts,
		types: allTypes, mesh: "NXDOMAIN", k8s: "NODATA",
		reason: "`<port>.<proto>.<svc>...` without underscores, other types: NXDOMAIN, as the name does not " +
			"exist; the kubernetes plugin answers NODATA.",
	},
	{
		shapes: []string{shProto}, kinds: withPorts,
		types: allBut(dns.TypeSOA), mesh: "NODATA", k8s: "NXDOMAIN",
		reason: "`_<proto>.<svc>...` above a Service's SRV names is an empty non-terminal: NODATA (RFC 8020); " +
			"the kubernetes plugin's NXDOMAIN there would deny the SRV names below it.",
	},
	{
		shapes: []string{shHostname, shDashed}, kinds: []string{kindHeadless},
		types: only(dns.TypeSRV), mesh: "NODATA", k8s: "ANSWER",
		reason: "SRV at an endpoint's own name is not in the specification: meshdns gives endpoint names " +
			"A and AAAA only; the kubernetes plugin answers an SRV for each port there.",
	},
	{
		shapes: []string{shDashed}, kinds: []string{kindClusterIP},
		types: only(dns.TypeA, dns.TypeSRV), mesh: "NXDOMAIN", k8s: "ANSWER",
		reason: "Endpoints of a ClusterIP Service: the specification names the endpoints of headless Services " +
			"only; the kubernetes plugin also answers those of ClusterIP Services by their dashed addresses.",
	},
	{
		shapes: []string{shDashed}, kinds: []string{kindClusterIP},
		types: allTypes, mesh: "NXDOMAIN", k8s: "NODATA",
		reason: "Endpoints of a ClusterIP Service, other types: NXDOMAIN, as meshdns has no such names; " +
			"the kubernetes plugin answers NODATA.",
	},
	{
		shapes: []string{shRevEndpoint}, kinds: []string{kindClusterIP},
		types: only(dns.TypePTR), mesh: "NXDOMAIN", k8s: "ANSWER",
		reason: "PTR of the endpoint address of a ClusterIP Service: none, as the specification gives PTRs to " +
			"ClusterIPs and to headless Services' endpoints; the kubernetes plugin points it at the dashed name.",
	},
	{
		shapes: []string{shRevEndpoint}, kinds: []string{kindClusterIP},
		types: soa, mesh: "NXDOMAIN", k8s: "NODATA",
		reason: "SOA at the reverse name of the endpoint address of a ClusterIP Service: NXDOMAIN, as meshdns " +
			"has no PTR there; the kubernetes plugin answers NODATA.",
	},
	{
		shapes: []string{shRevClusterIP, shRevEndpoint, shRevEndpoint + published, shRevAncestor},
		kinds:  []string{kindClusterIP, kindHeadless, kindReverse},
		types:  allBut(dns.TypeSOA), mesh: "NODATA", k8s: "NXDOMAIN",
		reason: "The reverse name of a served address owns its PTR, and the reverse names above it exist: other " +
			"types are NODATA there (RFC 8020); the kubernetes plugin answers NXDOMAIN.",
	},
	{
		shapes: []string{shSvc, shSvcMixed, shPort, shPortMixed}, kinds: []string{kindHeadless},
		services: []string{"beta/pnra"},
		types:    only(dns.TypeA, dns.TypeSRV), mesh: "ANSWER", k8s: "ANSWER",
		reason: "publishNotReadyAddresses: meshdns reads it from the Service and serves the not-ready endpoints; " +
			"the kubernetes plugin trusts only the EndpointSlice's ready condition (which the EndpointSlice " +
			"controller sets for such Services, other writers may not).",
	},
	{
		shapes: []string{shHostname + published}, kinds: []string{kindHeadless},
		types: only(dns.TypeA, dns.TypeANY), mesh: "ANSWER", k8s: "NXDOMAIN",
		reason: "publishNotReadyAddresses: a not-ready endpoint's name answers its address; the kubernetes " +
			"plugin answers NXDOMAIN.",
	},
	{
		shapes: []string{shHostname + published}, kinds: []string{kindHeadless},
		types: allTypes, mesh: "NODATA", k8s: "NXDOMAIN",
		reason: "publishNotReadyAddresses: a not-ready endpoint's name exists, so other types are NODATA; " +
			"the kubernetes plugin answers NXDOMAIN.",
	},
	{
		shapes: []string{shRevEndpoint + published}, kinds: []string{kindHeadless},
		types: only(dns.TypePTR), mesh: "ANSWER", k8s: "NXDOMAIN",
		reason: "publishNotReadyAddresses: a not-ready endpoint's address has its PTR; the kubernetes plugin " +
			"answers NXDOMAIN.",
	},
	{
		shapes: []string{shSearchNS, shSearchZone, shSearchFQDN}, kinds: svcKinds,
		types: allBut(dns.TypeSOA), mesh: "ANSWER", k8s: "NXDOMAIN",
		reason: "Search-domain short-cut: a name that a pod's search list makes from a Service's name " +
			"answers a CNAME to the Service and its records, so the walk ends there; the kubernetes plugin " +
			"(without autopath) answers NXDOMAIN.",
	},
	{
		shapes: []string{shSearchNS, shSearchZone, shSearchFQDN}, kinds: svcKinds,
		types: soa, mesh: "ANSWER", k8s: "NODATA",
		reason: "Search-domain short-cut, SOA: the CNAME to the Service, then NODATA; the kubernetes " +
			"plugin answers NODATA without it.",
	},
	{
		shapes: []string{shSearchNS, shSearchZone, shSearchFQDN}, kinds: []string{kindExternalName},
		types: allBut(dns.TypeSOA), mesh: "NXDOMAIN+ANSWER", k8s: "NXDOMAIN",
		reason: "Search-domain short-cut to an ExternalName whose target does not exist: the CNAMEs and " +
			"NXDOMAIN with the target's SOA (RFC 6604 §3); the kubernetes plugin answers NXDOMAIN alone.",
	},
	{
		shapes: []string{shSearchNS, shSearchZone, shSearchFQDN}, kinds: []string{kindExternalName},
		types: soa, mesh: "NXDOMAIN+ANSWER", k8s: "NODATA",
		reason: "Search-domain short-cut to an ExternalName whose target does not exist, SOA: the CNAMEs " +
			"and NXDOMAIN; the kubernetes plugin answers NODATA.",
	},
	{
		shapes: []string{shSvc, shSvcMixed}, kinds: []string{kindExternalName},
		types: allBut(dns.TypeA, dns.TypeCNAME, dns.TypeANY), mesh: "ANSWER", k8s: "NODATA",
		reason: "ExternalName: the CNAME answers every type and the chain is followed (RFC 1034 §3.6.2, " +
			"RFC 6604); the kubernetes plugin follows it for A, AAAA and TXT only, and drops the CNAME when " +
			"the target has nothing of the type.",
	},
	{
		shapes: []string{shSvc, shSvcMixed}, kinds: []string{kindExternalName},
		types: addrs, mesh: "NXDOMAIN+ANSWER", k8s: "ANSWER",
		reason: "ExternalName whose target does not exist: NXDOMAIN with the CNAME and the target's SOA " +
			"(RFC 6604 §3, RFC 2308 §2.1); the kubernetes plugin answers NOERROR with the CNAME alone.",
	},
	{
		shapes: []string{shSvc, shSvcMixed}, kinds: []string{kindExternalName},
		types: allBut(dns.TypeA, dns.TypeAAAA, dns.TypeCNAME, dns.TypeANY), mesh: "NXDOMAIN+ANSWER", k8s: "NODATA",
		reason: "ExternalName whose target does not exist, types other than A and AAAA: NXDOMAIN with the " +
			"CNAME; the kubernetes plugin answers NODATA without it.",
	},
	{
		shapes: []string{shNS}, kinds: []string{kindEmptyNS},
		types: allBut(dns.TypeTXT), mesh: "NXDOMAIN", k8s: "NODATA",
		reason: "A namespace without Services owns no name: NXDOMAIN; meshdns watches no Namespaces " +
			"(its role reads Services and EndpointSlices), the kubernetes plugin answers NODATA for every " +
			"namespace that exists.",
	},
	{
		shapes: []string{shNS, shSvcZone, shZone, shInAddr, shIP6}, kinds: []string{kindNamespace, kindZone},
		types: only(dns.TypeTXT), mesh: "NODATA", k8s: "NXDOMAIN",
		reason: "TXT at a name that exists but has no TXT: NODATA (RFC 2308 §2.2); the kubernetes plugin " +
			"answers NXDOMAIN for TXT where it answers NODATA for every other type.",
	},
	{
		shapes: []string{shDNSVersion}, kinds: []string{kindZone},
		types: allBut(dns.TypeTXT, dns.TypeSOA, dns.TypeANY), mesh: "NODATA", k8s: "NXDOMAIN",
		reason: "`dns-version.<zone>` exists, so types other than TXT are NODATA; the kubernetes plugin " +
			"answers NXDOMAIN for them.",
	},
	{
		shapes: []string{shDNSVersion}, kinds: []string{kindZone},
		types: anyType, mesh: "ANSWER", k8s: "NXDOMAIN",
		reason: "ANY at `dns-version.<zone>`: its TXT record (RFC 8482 §4.1); the kubernetes plugin answers NXDOMAIN.",
	},
	{
		shapes: []string{shPod}, kinds: []string{kindZone},
		types: allBut(dns.TypeTXT), mesh: "NXDOMAIN", k8s: "NODATA",
		reason: "`pod.<zone>`: meshdns has no pod records (they are not in the specification); the " +
			"kubernetes plugin keeps the name, NODATA, even with pods disabled.",
	},
	{
		shapes: []string{shZone, shInAddr, shIP6}, kinds: []string{kindZone},
		types: only(dns.TypeNS), mesh: "ANSWER", k8s: "NODATA",
		reason: "NS at a zone apex: `NS ns.dns.<zone>.` (RFC 1034 §4.2.1); the kubernetes plugin names " +
			"no NS when it listens on loopback addresses only, as in this test.",
	},
	{
		shapes: []string{shNSName}, kinds: []string{kindZone},
		types: only(dns.TypeA), mesh: "ANSWER", k8s: "NODATA",
		reason: "`ns.dns.<zone>`: the address meshdns listens on; the kubernetes plugin has none to give " +
			"when it listens on loopback addresses only, as in this test.",
	},
	{
		shapes: []string{shNSName}, kinds: []string{kindZone},
		types: only(dns.TypePTR, dns.TypeTXT), mesh: "NODATA", k8s: "NXDOMAIN",
		reason: "`ns.dns.<zone>` exists, so PTR and TXT are NODATA; the kubernetes plugin answers NXDOMAIN.",
	},
}

// The cluster as the API server has it, read back after the servers synced.

type clusterState struct {
	namespaces []string // with at least one Service
	empty      []string // without Services
	services   []clusterService
}

type clusterService struct {
	ns, name  string
	kind      string
	ips       []string
	ports     []corev1.ServicePort
	notReady  bool // publishNotReadyAddresses
	endpoints []clusterEndpoint
}

type clusterEndpoint struct {
	hostname, ip string
	ready        bool
}

func loadCluster(t *testing.T, a *harness.API) clusterState {
	t.Helper()
	var cs clusterState
	nss, err := a.CP.Client.CoreV1().Namespaces().List(a.Ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	svcs, err := a.CP.Client.CoreV1().Services("").List(a.Ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	eps, err := a.CP.Client.DiscoveryV1().EndpointSlices("").List(a.Ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	withServices := map[string]bool{}
	for _, s := range svcs.Items {
		withServices[s.Namespace] = true
		c := clusterService{ns: s.Namespace, name: s.Name, ports: s.Spec.Ports, notReady: s.Spec.PublishNotReadyAddresses}
		switch {
		case s.Spec.Type == corev1.ServiceTypeExternalName:
			c.kind = kindExternalName
		case s.Spec.ClusterIP == corev1.ClusterIPNone:
			c.kind = kindHeadless
		default:
			c.kind, c.ips = kindClusterIP, s.Spec.ClusterIPs
		}
		for _, sl := range eps.Items {
			if sl.Namespace != s.Namespace || sl.Labels[discoveryv1.LabelServiceName] != s.Name {
				continue
			}
			for _, e := range sl.Endpoints {
				for _, ip := range e.Addresses {
					ce := clusterEndpoint{ip: ip, ready: e.Conditions.Ready == nil || *e.Conditions.Ready}
					if e.Hostname != nil {
						ce.hostname = *e.Hostname
					}
					c.endpoints = append(c.endpoints, ce)
				}
			}
		}
		cs.services = append(cs.services, c)
	}
	for _, ns := range nss.Items {
		if withServices[ns.Name] {
			cs.namespaces = append(cs.namespaces, ns.Name)
		} else {
			cs.empty = append(cs.empty, ns.Name)
		}
	}
	return cs
}

// questions are every name the specification defines for cs, and the
// negative cases around them.
func (cs clusterState) questions() []question {
	var qs []question
	add := func(name, shape, kind, owner string) {
		qs = append(qs, question{name: dns.Fqdn(name), shape: shape, kind: kind, owner: owner})
	}
	for _, n := range []struct{ name, shape string }{
		{zone, shZone},
		{"svc." + zone, shSvcZone},
		{"dns-version." + zone, shDNSVersion},
		{"pod." + zone, shPod},
		{"ns.dns." + zone, shNSName},
		{"nope." + zone, shUnknownInZone},
		{"nope.svc." + zone, shUnknownNS},
		{"web.nope.svc." + zone, shSvcUnknownNS},
		{"in-addr.arpa.", shInAddr},
		{"ip6.arpa.", shIP6},
	} {
		add(n.name, n.shape, kindZone, "")
	}
	for _, ns := range cs.namespaces {
		add(ns+".svc."+zone, shNS, kindNamespace, ns)
		add("nope."+ns+".svc."+zone, shUnknownSvc, kindNamespace, ns)
		add("x.nope."+ns+".svc."+zone, shBelowUnknownSvc, kindNamespace, ns)
	}
	for _, ns := range cs.empty {
		add(ns+".svc."+zone, shNS, kindEmptyNS, ns)
		add("nope."+ns+".svc."+zone, shUnknownSvc, kindEmptyNS, ns)
	}
	for _, s := range cs.services {
		qs = append(qs, s.questions()...)
		for _, ip := range s.ips {
			add(reverse(ip), shRevClusterIP, s.kind, s.ns+"/"+s.name)
		}
		for _, e := range s.endpoints {
			add(reverse(e.ip), shRevEndpoint+s.served(e), s.kind, s.ns+"/"+s.name)
		}
	}
	// Reverse names that are no Service's: unallocated ClusterIPs, other
	// addresses; the ancestors of a served reverse name; a name below one.
	for _, ip := range []string{"10.96.1.99", "192.0.2.99", "fd00:10:96::99", "2001:db8::99"} {
		add(reverse(ip), shRevUnknown, kindReverse, "")
	}
	add("1.96.10.in-addr.arpa.", shRevAncestor, kindReverse, "")
	add(strings.SplitN(reverse("fd00:10:96::20"), ".", 2)[1], shRevAncestor, kindReverse, "")
	add("x."+reverse("10.96.1.10"), shBelowRev, kindReverse, "")
	return qs
}

// served qualifies an endpoint's shape by whether it should be served.
func (s clusterService) served(e clusterEndpoint) string {
	switch {
	case e.ready:
		return ""
	case s.notReady:
		return published
	}
	return notReady
}

func (s clusterService) questions() []question {
	var qs []question
	owner := s.ns + "/" + s.name
	base := s.name + "." + s.ns + ".svc." + zone
	add := func(name, shape string) {
		qs = append(qs, question{name: name, shape: shape, kind: s.kind, owner: owner})
	}
	add(base, shSvc)
	add(strings.ToUpper(s.name)+"."+s.ns+".SVC.Cluster.Local.", shSvcMixed)

	// The names of a pod's search list walk (ndots:5) that lead to it.
	other := "alpha"
	if s.ns == other {
		other = "beta"
	}
	add(s.name+"."+s.ns+"."+other+".svc."+zone, shSearchNS)
	add(s.name+"."+s.ns+"."+zone, shSearchZone)
	add(base+other+".svc."+zone, shSearchFQDN)

	// Ports.
	protos := map[string]bool{}
	first := true
	for _, p := range s.ports {
		proto := strings.ToLower(string(p.Protocol))
		if p.Name == "" {
			add(fmt.Sprintf("_%d._%s.%s", p.Port, proto, base), shPortUnnamed)
			continue
		}
		protos[proto] = true
		add("_"+p.Name+"._"+proto+"."+base, shPort)
		for _, op := range []string{"tcp", "udp", "sctp"} {
			if op != proto && !s.hasPort(p.Name, op) {
				add("_"+p.Name+"._"+op+"."+base, shPortOtherProto)
			}
		}
		if first {
			first = false
			add("_"+strings.ToUpper(p.Name)+"._"+strings.ToUpper(proto)+"."+base, shPortMixed)
			add(p.Name+"."+proto+"."+base, shPortBare)
			add("x._"+p.Name+"._"+proto+"."+base, shBelowPort)
			add("_nope._"+proto+"."+base, shUnknownPort)
		}
	}
	for _, proto := range []string{"tcp", "udp", "sctp"} {
		if protos[proto] {
			add("_"+proto+"."+base, shProto)
		} else {
			add("_"+proto+"."+base, shAbsentProto)
		}
	}

	// Endpoints, by hostname and by dashed address.
	seen := map[string]bool{}
	for _, e := range s.endpoints {
		served := s.served(e)
		if e.hostname != "" && !seen[e.hostname] {
			seen[e.hostname] = true
			add(e.hostname+"."+base, shHostname+served)
		}
		dashed := dashedName(e.ip)
		if e.hostname != "" {
			add(dashed+"."+base, shDashedOfHostname+served)
		} else {
			add(dashed+"."+base, shDashed+served)
		}
	}
	if len(s.endpoints) > 0 {
		e := s.endpoints[0]
		name := cmp.Or(e.hostname, dashedName(e.ip)) + "." + base
		add("x."+name, shBelowEndpoint)
		for _, p := range s.ports {
			if p.Name != "" {
				add("_"+p.Name+"._"+strings.ToLower(string(p.Protocol))+"."+name, shPortBelowEndpoint)
				break
			}
		}
	}

	// Below the Service.
	add("nope."+base, shUnknownBelowSvc)
	add("x.y."+base, shTwoBelowSvc)
	add("a.b.c."+base, shThreeBelowSvc)
	return qs
}

func (s clusterService) hasPort(name, proto string) bool {
	for _, p := range s.ports {
		if p.Name == name && strings.EqualFold(string(p.Protocol), proto) {
			return true
		}
	}
	return false
}

// dashedName is the name of an endpoint without a hostname: its address with
// dashes (the kubernetes plugin's form, which meshdns follows).
func dashedName(ip string) string {
	if strings.Contains(ip, ".") {
		return strings.ReplaceAll(ip, ".", "-")
	}
	d := strings.ReplaceAll(ip, ":", "-")
	if strings.HasSuffix(d, "-") {
		d += "0"
	}
	return d
}

func reverse(ip string) string {
	r, err := dns.ReverseAddr(ip)
	if err != nil {
		panic(err)
	}
	return r
}

// Normalised answers.

// ownZones hold the data both servers make themselves; the TTLs of any
// other data (the upstream's) are left out.
var ownZones = []string{zone, "in-addr.arpa.", "ip6.arpa."}

func own(name string) bool {
	for _, z := range ownZones {
		if dns.IsSubDomain(z, strings.ToLower(name)) {
			return true
		}
	}
	return false
}

// outcome classes a reply for deliberate differences.
func outcome(m *dns.Msg) string {
	switch {
	case m == nil:
		return "no reply"
	case m.Rcode == dns.RcodeSuccess && len(m.Answer) == 0:
		return "NODATA"
	case m.Rcode == dns.RcodeSuccess:
		return "ANSWER"
	case m.Rcode == dns.RcodeNameError && len(m.Answer) > 0:
		return "NXDOMAIN+ANSWER"
	}
	return dns.RcodeToString[m.Rcode]
}

// normalise renders a reply for comparison: the rcode, the AA and TC bits,
// the answer records sorted (owners as sent, other names lower case; SRV
// without priority and weight; SOA without serial; TTLs of own data only),
// and the type and owner of each authority record.
func normalise(m *dns.Msg, err error) string {
	if err != nil {
		return "error: " + err.Error()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s aa=%t tc=%t", dns.RcodeToString[m.Rcode], m.Authoritative, m.Truncated)
	var lines []string
	for _, rr := range m.Answer {
		lines = append(lines, renderRR(rr))
	}
	slices.Sort(lines)
	for _, l := range lines {
		b.WriteString("\n  " + l)
	}
	var auth []string
	for _, rr := range m.Ns {
		auth = append(auth, "authority: "+dns.TypeToString[rr.Header().Rrtype]+" "+strings.ToLower(rr.Header().Name))
	}
	slices.Sort(auth)
	for _, l := range auth {
		b.WriteString("\n  " + l)
	}
	return b.String()
}

func renderRR(rr dns.RR) string {
	h := rr.Header()
	ttl := "-"
	if own(h.Name) {
		ttl = fmt.Sprint(h.Ttl)
	}
	var data string
	switch rr := rr.(type) {
	case *dns.A:
		data = rr.A.String()
	case *dns.AAAA:
		data = rr.AAAA.String()
	case *dns.SRV:
		data = fmt.Sprintf("%d %s", rr.Port, strings.ToLower(rr.Target))
	case *dns.PTR:
		data = strings.ToLower(rr.Ptr)
	case *dns.CNAME:
		data = strings.ToLower(rr.Target)
	case *dns.NS:
		data = strings.ToLower(rr.Ns)
	case *dns.MX:
		data = fmt.Sprintf("%d %s", rr.Preference, strings.ToLower(rr.Mx))
	case *dns.SOA:
		data = fmt.Sprintf("%s %s %d %d %d %d", strings.ToLower(rr.Ns), strings.ToLower(rr.Mbox), rr.Refresh, rr.Retry, rr.Expire, rr.Minttl)
	case *dns.TXT:
		data = fmt.Sprintf("%q", rr.Txt)
	default:
		data = strings.TrimPrefix(rr.String(), h.String())
	}
	return fmt.Sprintf("%s %s %s %s", h.Name, ttl, dns.TypeToString[h.Rrtype], data)
}

// A result of one question to both servers over one transport.
type result struct {
	q               question
	qtype           uint16
	network         string
	mesh, k8s       string // normalised
	meshOut, k8sOut string // outcome
}

func ask(q question, qtype uint16, network, meshAddr, k8sAddr string) result {
	r := result{q: q, qtype: qtype, network: network}
	m, err := exchange(meshAddr, q.name, qtype, network)
	r.mesh, r.meshOut = normalise(m, err), outcome(m)
	k, err := exchange(k8sAddr, q.name, qtype, network)
	r.k8s, r.k8sOut = normalise(k, err), outcome(k)
	return r
}

// differential asks both servers every question, over UDP and TCP, and
// fails on every difference that is not deliberate.
func differential(t *testing.T, cs clusterState, meshAddr, k8sAddr string) {
	qs := cs.questions()
	type job struct {
		q       question
		qtype   uint16
		network string
	}
	var jobs []job
	for _, q := range qs {
		for _, qtype := range queryTypes {
			for _, network := range []string{"udp", "tcp"} {
				jobs = append(jobs, job{q, qtype, network})
			}
		}
	}
	begin := time.Now()
	results := make([]result, len(jobs))
	work := make(chan int)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for i := range work {
				j := jobs[i]
				results[i] = ask(j.q, j.qtype, j.network, meshAddr, k8sAddr)
			}
		})
	}
	for i := range jobs {
		work <- i
	}
	close(work)
	wg.Wait()
	t.Logf("%d names x %d types x UDP and TCP: %d questions to each server in %s",
		len(qs), len(queryTypes), len(jobs), time.Since(begin).Round(time.Millisecond))

	// A difference that does not last may be a server still catching up:
	// ask again for a few seconds before calling it one.
	var diffs []result
	for _, r := range results {
		if r.mesh != r.k8s {
			diffs = append(diffs, r)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for i := range diffs {
		r := diffs[i]
		if deliberateFor(r) >= 0 {
			continue
		}
		for r.mesh != r.k8s && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
			r = ask(r.q, r.qtype, r.network, meshAddr, k8sAddr)
		}
		diffs[i] = r
	}

	// Deliberate differences are counted; any other is reported by kind
	// (shape, kind, outcomes), with the types it was seen for and one
	// example in full.
	type group struct {
		example result
		types   []uint16
		names   []string
	}
	groups := map[string]*group{}
	seen := make([]int, len(deliberateDifferences))
	for _, r := range diffs {
		if r.mesh == r.k8s {
			continue
		}
		if i := deliberateFor(r); i >= 0 {
			seen[i]++
			continue
		}
		key := fmt.Sprintf("%s [%s]: meshdns %s, kubernetes %s", r.q.shape, r.q.kind, r.meshOut, r.k8sOut)
		g := groups[key]
		if g == nil {
			g = &group{example: r}
			groups[key] = g
		}
		if !slices.Contains(g.types, r.qtype) {
			g.types = append(g.types, r.qtype)
		}
		if !slices.Contains(g.names, r.q.name) {
			g.names = append(g.names, r.q.name)
		}
	}
	for i, d := range deliberateDifferences {
		if seen[i] == 0 {
			t.Logf("deliberate difference not seen: %s", d.reason)
		} else {
			t.Logf("deliberate (%d answers): %s", seen[i], d.reason)
		}
	}
	for _, key := range slices.Sorted(maps.Keys(groups)) {
		g := groups[key]
		r := g.example
		t.Errorf("DIFFERENCE %s\n  types %v, %d names, e.g. %s\n  example %s %s over %s (%s):\n  meshdns:    %s\n  kubernetes: %s",
			key, typeNames(g.types), len(g.names), strings.Join(g.names[:min(3, len(g.names))], " "),
			r.q.name, dns.TypeToString[r.qtype], r.network, r.q.owner,
			strings.ReplaceAll(r.mesh, "\n", "\n              "), strings.ReplaceAll(r.k8s, "\n", "\n              "))
	}
	if len(groups) > 0 {
		t.Errorf("%d kinds of difference are neither deliberate nor fixed", len(groups))
	}
}

// deliberateFor returns the index of the deliberate difference r is, or -1.
func deliberateFor(r result) int {
	return slices.IndexFunc(deliberateDifferences, func(d deliberate) bool { return d.matches(r.q, r.qtype, r.meshOut, r.k8sOut) })
}

func typeNames(ts []uint16) []string {
	var out []string
	for _, t := range ts {
		out = append(out, dns.TypeToString[t])
	}
	return out
}

// TestDeliberateDifferencesDocumented checks that docs/kubernetes.md gives
// every deliberate difference with its reason, word for word.
func TestDeliberateDifferencesDocumented(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(harness.RepoRoot(t), "docs", "kubernetes.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), "\n## Differences from CoreDNS's kubernetes plugin\n")
	if !ok {
		t.Fatal(`docs/kubernetes.md has no section "Differences from CoreDNS's kubernetes plugin"`)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	flat := strings.Join(strings.Fields(section), " ")
	for _, d := range deliberateDifferences {
		if !strings.Contains(flat, d.reason) {
			t.Errorf("docs/kubernetes.md does not give this reason: %s", d.reason)
		}
	}
}
