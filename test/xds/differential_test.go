package xds

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	apinetworking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshdns/meshdns/test/harness"
)

// The differential test's client: a workload in namespace app.
var client = vmIdentity{ip: "10.0.0.5", name: "client", namespace: "app"}

// query is one question asked of both servers.
type query struct {
	name  string // FQDN
	qtype uint16
	host  string // the table host it derives from
	kind  string // "host", "short", "search", "wildcard", "endpoint", "negative"
}

// difference is a query the two servers answer differently.
type difference struct {
	query
	k8s, xds string
}

func (d difference) String() string {
	return fmt.Sprintf("%s %s (%s of %s): kubernetes %q, xds %q", d.name, dns.TypeToString[d.qtype], d.kind, d.host, d.k8s, d.xds)
}

// mesh is what a differential test created, for the deliberate
// differences to look things up in.
type mesh struct {
	table harness.NameTable // istiod's table for the client
	// services by host: in a multicluster test, the client's cluster's
	// Service if it has one, else the first other cluster's.
	services map[string]*corev1.Service
	// serviceEntries by host (several for merged hosts); in a multicluster
	// test the client's cluster's first.
	serviceEntries map[string][]*networkingv1.ServiceEntry
	// headlessReady counts the addresses of each headless Service host that
	// Kubernetes DNS serves (ready, or any with publishNotReadyAddresses).
	headlessReady map[string]int
	// shortSEHosts are ServiceEntry hosts written without dots, as istiod
	// sends them and as the kubernetes source qualifies them.
	shortSEHosts map[string]bool
	// endpointNames are the names the kubernetes source gives headless
	// endpoints: <hostname>.<host> or <a-b-c-d>.<host>.
	endpointNames map[string]bool
	// seCluster is the cluster each ServiceEntry was created in, in a
	// multicluster test.
	seCluster map[*networkingv1.ServiceEntry]string
	// negatives are names that neither server should have, asked besides
	// the names derived from the objects and istiod's table.
	negatives []string
}

func newMesh() *mesh {
	return &mesh{services: map[string]*corev1.Service{}, serviceEntries: map[string][]*networkingv1.ServiceEntry{},
		headlessReady: map[string]int{}, shortSEHosts: map[string]bool{}, endpointNames: map[string]bool{},
		seCluster: map[*networkingv1.ServiceEntry]string{}}
}

// addService records s under its host unless a Service already holds it:
// the first one added is the one the kubernetes source serves.
func (m *mesh) addService(s *corev1.Service) {
	if h := svcHost(s.Namespace, s.Name); m.services[h] == nil {
		m.services[h] = s
	}
}

// addServiceEntry records se under each of its hosts, a host without dots
// both as written and qualified with se's namespace.
func (m *mesh) addServiceEntry(se *networkingv1.ServiceEntry, cluster string) {
	m.seCluster[se] = cluster
	for _, h := range se.Spec.Hosts {
		if !strings.Contains(h, ".") {
			m.shortSEHosts[h] = true
			h = svcHost(se.Namespace, h)
			m.shortSEHosts[h] = true
		}
		m.serviceEntries[h] = append(m.serviceEntries[h], se)
	}
}

// headless is a headless Service and its EndpointSlices.
type headless struct {
	svc    *corev1.Service
	slices []*discoveryv1.EndpointSlice
}

// newHeadless is a headless Service with one EndpointSlice of eps, or none
// without eps.
func newHeadless(ns, name string, notReady bool, eps ...ep) headless {
	h := headless{svc: headlessService(ns, name, notReady)}
	if len(eps) > 0 {
		h.slices = append(h.slices, endpointSlice(ns, name+"-a", name, eps...))
	}
	return h
}

// addHeadless counts the served endpoints of h and records their names;
// endpoints of the same Service in several clusters add up.
func (m *mesh) addHeadless(h headless) {
	host := svcHost(h.svc.Namespace, h.svc.Name)
	m.headlessReady[host] += 0
	for _, sl := range h.slices {
		for _, e := range sl.Endpoints {
			if *e.Conditions.Ready || h.svc.Spec.PublishNotReadyAddresses {
				m.headlessReady[host]++
			}
			name := strings.ReplaceAll(e.Addresses[0], ".", "-")
			if e.Hostname != nil {
				name = *e.Hostname
			}
			m.endpointNames[name+"."+host] = true
		}
	}
}

// deliberate is a known, intended difference between the kubernetes source
// and istiod's table, with its reason. Every entry must be seen in the
// test, so the list stays exactly what the code does.
type deliberate struct {
	what   string
	match  func(m *mesh, d difference) bool
	reason string
}

// withoutRanges removes from an answer the addresses in prefixes; removed
// counts them. An answer left without records is NODATA.
func withoutRanges(ans string, prefixes ...string) (rest string, removed int) {
	var out []string
	for _, rr := range strings.Split(ans, " ") {
		if a, err := netip.ParseAddr(rr); err == nil && slices.ContainsFunc(prefixes, func(p string) bool {
			return netip.MustParsePrefix(p).Contains(a)
		}) {
			removed++
			continue
		}
		out = append(out, rr)
	}
	if len(out) == 0 {
		return "NODATA", removed
	}
	return strings.Join(out, " "), removed
}

// parentHost is the host an endpoint name is under.
func parentHost(name string) string {
	_, parent, _ := strings.Cut(name, ".")
	return parent
}

// ipv6ForIPv4Node is istiod keeping only the node's address family.
var ipv6ForIPv4Node = deliberate{
	what: "IPv6 ClusterIPs and istiod-allocated IPv6 VIPs, for an IPv4 node",
	match: func(m *mesh, d difference) bool {
		rest, removed := withoutRanges(d.k8s, harness.ServiceCIDRs[strings.Index(harness.ServiceCIDRs, ",")+1:], "2001:2::/48")
		return d.qtype == dns.TypeAAAA && removed > 0 && rest == d.xds
	},
	reason: "istiod filters a Service's ClusterIPs and a ServiceEntry's allocated VIPs by the node's address family " +
		"(INSTANCE_IPS, from node_ip: 10.0.0.5 here), so AAAA is NODATA over xds; the kubernetes source has no node and " +
		"serves both. istiod does not filter ServiceEntry spec.addresses. Unless istiod runs with ISTIO_DUAL_STACK=true " +
		"(off by default, and off in the test harness), even a dual-stack node (`metadata INSTANCE_IPS <v4>,<v6>`) gets " +
		"only one family per host: that of the host's first address.",
}

// ipv6OnlyService is istiod leaving a host out when the node's family
// filters all its addresses.
var ipv6OnlyService = deliberate{
	what: "IPv6-only Service, for an IPv4 node",
	match: func(m *mesh, d difference) bool {
		s := m.services[d.host]
		return s != nil && s.Spec.ClusterIP != corev1.ClusterIPNone && len(s.Spec.IPFamilies) == 1 &&
			s.Spec.IPFamilies[0] == corev1.IPv6Protocol && d.xds == "NXDOMAIN"
	},
	reason: "istiod filters out the Service's only addresses and then leaves the host out of the table: NXDOMAIN over xds. " +
		"The kubernetes source serves its AAAA, and NODATA for A.",
}

// headlessWithoutPorts is istiod finding headless endpoints by the first
// port.
var headlessWithoutPorts = deliberate{
	what: "headless Service without ports",
	match: func(m *mesh, d difference) bool {
		for _, h := range []string{d.host, parentHost(d.host)} {
			if s := m.services[h]; s != nil && s.Spec.ClusterIP == corev1.ClusterIPNone && len(s.Spec.Ports) == 0 {
				return d.xds == "NXDOMAIN"
			}
		}
		return false
	},
	reason: "istiod finds a headless Service's endpoints by its first port, so without ports it sends nothing; " +
		"the kubernetes source serves its endpoints like Kubernetes DNS (docs/kubernetes.md).",
}

// externalNameService is istiod leaving ExternalName Services out of NDS.
var externalNameService = deliberate{
	what: "ExternalName Service",
	match: func(m *mesh, d difference) bool {
		s := m.services[d.host]
		return s != nil && s.Spec.Type == corev1.ServiceTypeExternalName && d.xds == "NXDOMAIN" && strings.Contains(d.k8s, "CNAME")
	},
	reason: "istiod leaves ExternalName Services out of NDS; the kubernetes source answers CNAME <externalName> like CoreDNS's kubernetes plugin.",
}

// endpointNamesWithoutPod is the kubernetes source naming endpoints from
// EndpointSlices, istiod from Pods.
var endpointNamesWithoutPod = deliberate{
	what: "per-endpoint names of headless Services",
	match: func(m *mesh, d difference) bool {
		_, headless := m.headlessReady[parentHost(d.host)]
		return d.kind == "endpoint" && headless && d.xds == "NXDOMAIN"
	},
	reason: "the kubernetes source names every endpoint from its EndpointSlice: <hostname>.<service host>, or <a-b-c-d>.<service host> " +
		"without a hostname (CoreDNS kubernetes plugin style); istiod names only Pods that have spec.subdomain (next entry), " +
		"nothing for endpoints without a Pod. Both give <hostname>.<service host> for a StatefulSet's pods (spec.hostname set, " +
		"spec.subdomain the Service's name): no difference there.",
}

// podSubdomainHosts is istiod naming Pods with spec.subdomain that
// Kubernetes gives no EndpointSlice hostname.
var podSubdomainHosts = deliberate{
	what: "per-Pod hosts from Pods with spec.subdomain but no EndpointSlice hostname",
	match: func(m *mesh, d difference) bool {
		info, ok := m.table[d.host]
		return ok && info.Registry == "Kubernetes" && strings.Contains(info.Shortname, ".") && !m.endpointNames[d.host] &&
			d.k8s == "NXDOMAIN"
	},
	reason: "istiod names a Pod with spec.subdomain <spec.hostname, else the Pod's name>.<subdomain>.<ns>.svc.<domain>, from the Pod; " +
		"Kubernetes puts a hostname in the EndpointSlice only when spec.hostname is set and the subdomain is the Service's name, " +
		"so the kubernetes source has <a-b-c-d>.<service host> instead.",
}

// seEndpointIPs is the kubernetes source answering the endpoint IPs of
// ServiceEntries without addresses.
var seEndpointIPs = deliberate{
	what: "ServiceEntry endpoint IPs (no spec, status or allocated address)",
	match: func(m *mesh, d difference) bool {
		ses := m.serviceEntries[d.host]
		for _, se := range ses {
			res := se.Spec.Resolution
			if len(se.Spec.Addresses) > 0 || len(se.Status.Addresses) > 0 || (res != noneRes && res != staticRes) {
				return false
			}
		}
		return len(ses) > 0 && d.xds == "NXDOMAIN"
	},
	reason: "the kubernetes source answers a ServiceEntry of resolution NONE or STATIC that has no address with its endpoint IPs " +
		"(spec.endpoints or the WorkloadEntries it selects, docs/kubernetes.md); istiod's BuildNameTable considers endpoints only " +
		"for resolution NONE and keeps only those whose health status is Healthy, which ServiceEntry endpoints never have, " +
		"so it sends no host.",
}

// seHostWithoutDots is the two sources qualifying a ServiceEntry host
// without dots differently.
var seHostWithoutDots = deliberate{
	what: "ServiceEntry host without dots",
	match: func(m *mesh, d difference) bool {
		short, _, _ := strings.Cut(d.host, ".")
		return m.shortSEHosts[d.host] && (d.k8s == "NXDOMAIN" || strings.Contains(d.xds, "CNAME "+short+"."))
	},
	reason: "istiod sends the host as written (`legacy`): the xds source answers `legacy.`, and `legacy.<ns>.svc.cluster.local` " +
		"only as a search-domain short-cut (CNAME legacy.), as Istio's agent does; the kubernetes source qualifies it to " +
		"`legacy.<ServiceEntry namespace>.svc.cluster.local` (docs/kubernetes.md) and has no `legacy.`.",
}

// deliberateDifferences are the differences between the kubernetes source
// (for namespace app) and the xds source (for a node in app) on the same
// cluster. The list goes into docs/xds.md with the same reasons. The
// entries are named so that TestMulticlusterDifferential's list can share
// them.
var deliberateDifferences = []deliberate{
	ipv6ForIPv4Node,
	ipv6OnlyService,
	headlessWithoutPorts,
	externalNameService,
	endpointNamesWithoutPod,
	podSubdomainHosts,
	seEndpointIPs,
	seHostWithoutDots,
}

func TestDifferential(t *testing.T) {
	cp := harness.Start(t)
	istiod := harness.StartIstiod(t, cp)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	a := &api{&harness.API{T: t, CP: cp, Ctx: ctx}}
	m := newMesh()

	namespaces := []string{"app", "ns1", "ns2", "ns3", "ns4", "ns5", "ns6", "ns7", "ns8", "ns9"}
	for _, ns := range append(namespaces, "ext", "other") {
		a.Namespace(ns)
	}

	// 230 ClusterIP Services over 10 namespaces: IPv4, dual-stack either
	// way round, IPv6 only; some with exportTo.
	var services []*corev1.Service
	for i := range 230 {
		ns := namespaces[i%len(namespaces)]
		name := fmt.Sprintf("svc-%03d", i)
		var s *corev1.Service
		switch {
		case i%25 == 7:
			s = clusterIPService(ns, name, corev1.IPv6Protocol)
		case i%25 == 13:
			s = clusterIPService(ns, name, corev1.IPv6Protocol, corev1.IPv4Protocol)
		case i%4 == 1:
			s = dualStackService(ns, name)
		default:
			s = clusterIPService(ns, name)
		}
		switch i % 50 {
		case 5, 10: // own namespace only: hidden unless in app
			s.Annotations = map[string]string{"networking.istio.io/exportTo": "."}
		case 15:
			s.Annotations = map[string]string{"networking.istio.io/exportTo": "app"}
		case 25:
			s.Annotations = map[string]string{"networking.istio.io/exportTo": "ns1,ns2"}
		case 35:
			s.Annotations = map[string]string{"networking.istio.io/exportTo": "~"}
		}
		services = append(services, s)
	}
	// Headless Services with EndpointSlices.
	hl := newHeadless
	headlessServices := []headless{
		hl("app", "hl-pods", false, ep{"pod-0", "10.10.0.1", true}, ep{"pod-1", "10.10.0.2", true}),
		hl("ns1", "hl-pods", false, ep{"pod-0", "10.10.1.1", true}, ep{"pod-1", "10.10.1.2", false}),
		hl("ns2", "hl-anon", false, ep{"", "10.10.2.1", true}, ep{"", "10.10.2.2", true}),
		hl("ns3", "hl-notready", true, ep{"nr-0", "10.10.3.1", false}, ep{"", "10.10.3.2", false}),
		hl("ns4", "hl-empty", false),
		hl("app", "hl-mixed", false, ep{"m-0", "10.10.5.1", true}, ep{"", "10.10.5.2", true}, ep{"m-2", "10.10.5.3", false}),
	}
	noPorts := hl("ns5", "hl-noports", false, ep{"np-0", "10.10.6.1", true})
	noPorts.svc.Spec.Ports = nil
	noPorts.slices[0].Ports = nil
	headlessServices = append(headlessServices, noPorts)
	twoSlices := hl("ns6", "hl-two", false, ep{"a-0", "10.10.7.1", true})
	twoSlices.slices = append(twoSlices.slices, endpointSlice("ns6", "hl-two-b", "hl-two", ep{"b-0", "10.10.7.2", true}))
	headlessServices = append(headlessServices, twoSlices)
	// StatefulSet-style pods (spec.hostname and spec.subdomain) behind
	// headless Services: istiod names them <hostname>.<subdomain>.<ns>.svc
	// from the Pod, the kubernetes source from the EndpointSlice's hostname,
	// which Kubernetes sets only when the subdomain is the Service's name.
	pods := []pod{
		{"app", "sts-0", "sts-0", "hl-sts", "10.11.0.1"},
		{"app", "sts-1", "sts-1", "hl-sts", "10.11.0.2"},
		{"ns1", "web-7f9c", "", "hl-web", "10.11.1.1"}, // hostname: the pod's name
	}
	headlessServices = append(headlessServices,
		headless{svc: headlessService("app", "hl-sts", false), slices: []*discoveryv1.EndpointSlice{podSlice("hl-sts", pods[0], pods[1])}},
		headless{svc: headlessService("ns1", "hl-web", false), slices: []*discoveryv1.EndpointSlice{podSlice("hl-web", pods[2])}})
	for _, h := range headlessServices {
		services = append(services, h.svc)
	}
	services = append(services, &corev1.Service{ObjectMeta: om("app", "extname"),
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "www.example.org"}})

	// ServiceEntries of every resolution.
	var ses []*networkingv1.ServiceEntry
	add := func(se *networkingv1.ServiceEntry) *networkingv1.ServiceEntry { ses = append(ses, se); return se }
	for i := range 8 {
		add(serviceEntry("ext", fmt.Sprintf("dns-%d", i), dnsRes, []string{fmt.Sprintf("dns-%d.example.com", i)}))
	}
	add(serviceEntry("ext", "dns-two-hosts", dnsRes, []string{"two-a.example.com", "two-b.example.com"}))
	add(serviceEntry("app", "app-dns", dnsRes, []string{"app-dns.example.com"}))
	add(serviceEntry("ext", "static-addr", staticRes, []string{"static-addr.example.com"}, "192.0.2.1")).Spec.Endpoints =
		[]*apinetworking.WorkloadEntry{{Address: "10.5.0.1"}}
	add(serviceEntry("ext", "static-dual", staticRes, []string{"static-dual.example.com"}, "192.0.2.2", "2001:db8::2")).Spec.Endpoints =
		[]*apinetworking.WorkloadEntry{{Address: "10.5.0.2"}}
	add(serviceEntry("ext", "static-v6", staticRes, []string{"static-v6.example.com"}, "2001:db8::3")).Spec.Endpoints =
		[]*apinetworking.WorkloadEntry{{Address: "10.5.0.3"}}
	add(serviceEntry("ext", "static-alloc", staticRes, []string{"static-alloc.example.com"})).Spec.Endpoints =
		[]*apinetworking.WorkloadEntry{{Address: "10.5.0.4"}}
	optOutStatic := add(serviceEntry("ext", "static-optout", staticRes, []string{"static-optout.example.com"}))
	optOutStatic.Spec.Endpoints = []*apinetworking.WorkloadEntry{{Address: "10.5.0.5"}, {Address: "10.5.0.6"}}
	optOutStatic.Labels = map[string]string{"networking.istio.io/enable-autoallocate-ip": "false"}
	optOutDNS := add(serviceEntry("ext", "dns-optout", dnsRes, []string{"dns-optout.example.com"}))
	optOutDNS.Labels = map[string]string{"networking.istio.io/enable-autoallocate-ip": "false"}
	noneWE := add(serviceEntry("ext", "none-we", noneRes, []string{"none-we.example.com"}))
	noneWE.Spec.WorkloadSelector = &apinetworking.WorkloadSelector{Labels: map[string]string{"app": "none-we"}}
	add(serviceEntry("ext", "none-addr", noneRes, []string{"none-addr.example.com"}, "192.0.2.20"))
	add(serviceEntry("ext", "cidr", noneRes, []string{"cidr.example.com"}, "192.0.2.64/28"))
	add(serviceEntry("ext", "merged-1", dnsRes, []string{"merged.example.com"}, "192.0.2.31"))
	add(serviceEntry("ext", "merged-2", dnsRes, []string{"merged.example.com", "merged-other.example.com"}, "192.0.2.32"))
	add(serviceEntry("ext", "merged-auto-1", dnsRes, []string{"merged-auto.example.com"}))
	add(serviceEntry("ext", "merged-auto-2", dnsRes, []string{"merged-auto.example.com"}))
	add(serviceEntry("ext", "wild-dynamic", dynamicDNSRes, []string{"*.wild.example.com"}))
	add(serviceEntry("ext", "wild-addr", noneRes, []string{"*.wild2.example.com"}, "192.0.2.40"))
	add(serviceEntry("ext", "export-other", dnsRes, []string{"hidden.example.com"}, "192.0.2.50")).Spec.ExportTo = []string{"other"}
	add(serviceEntry("ext", "export-app", dnsRes, []string{"shown.example.com"}, "192.0.2.51")).Spec.ExportTo = []string{"app"}
	add(serviceEntry("app", "export-dot", dnsRes, []string{"mine.example.com"}, "192.0.2.52")).Spec.ExportTo = []string{"."}
	add(serviceEntry("ext", "export-dot", dnsRes, []string{"notmine.example.com"}, "192.0.2.53")).Spec.ExportTo = []string{"."}
	add(serviceEntry("ext", "export-alloc", dnsRes, []string{"shown-alloc.example.com"})).Spec.ExportTo = []string{"app", "ext"}
	add(serviceEntry("app", "short", dnsRes, []string{"legacy"}, "192.0.2.60"))
	add(serviceEntry("ext", "conflict", dnsRes, []string{"conflict.example.com"}, "192.0.2.70"))
	add(serviceEntry("app", "conflict", dnsRes, []string{"conflict.example.com"}, "192.0.2.71"))
	add(serviceEntry("ext", "shadowed", dnsRes, []string{svcHost("ns1", "svc-001")}, "192.0.2.80"))

	begin := time.Now()
	createAll(t, len(services), func(i int) error {
		got, err := cp.Client.CoreV1().Services(services[i].Namespace).Create(ctx, services[i], metav1.CreateOptions{})
		if err == nil {
			services[i] = got
		}
		return err
	})
	for _, p := range pods {
		a.pod(p)
	}
	for _, h := range headlessServices {
		for _, sl := range h.slices {
			a.Slice(sl)
		}
	}
	for i, ip := range []string{"10.6.0.1", "10.6.0.2"} {
		a.WorkloadEntry(workloadEntry("ext", fmt.Sprintf("none-we-%d", i), ip, map[string]string{"app": "none-we"}))
	}
	createAll(t, len(ses), func(i int) error {
		got, err := cp.Istio.NetworkingV1().ServiceEntries(ses[i].Namespace).Create(ctx, ses[i], metav1.CreateOptions{})
		if err == nil {
			ses[i] = got
		}
		return err
	})
	for _, s := range services {
		m.addService(s)
	}
	for _, se := range ses {
		m.addServiceEntry(se, "")
	}
	for _, h := range headlessServices {
		m.addHeadless(h)
	}
	t.Logf("created %d Services and %d ServiceEntries in %s", len(services), len(ses), time.Since(begin).Round(time.Millisecond))

	// istiod allocates addresses to these (DNS, STATIC without addresses;
	// wildcards only with DYNAMIC_DNS).
	for _, name := range []string{"dns-0", "dns-1", "dns-2", "dns-3", "dns-4", "dns-5", "dns-6", "dns-7", "dns-two-hosts",
		"static-alloc", "merged-auto-1", "merged-auto-2", "wild-dynamic", "export-alloc"} {
		a.allocated("ext", name)
	}
	a.allocated("app", "app-dns")
	// Markers, created last: when both servers answer them, they have seen
	// everything before (istiod and the informers keep the order of events).
	marker := a.Service(clusterIPService("app", "zz-marker"))
	a.ServiceEntry(serviceEntry("ext", "zz-marker", dnsRes, []string{"zz-marker.example.com"}, "192.0.2.99"))

	node := harness.SidecarNode(client.ip, client.name, client.namespace, nil)
	m.table = harness.WaitNameTable(t, istiod.PlaintextAddr, node, settle, func(nt harness.NameTable) bool {
		_, svc := nt[svcHost("app", "zz-marker")]
		_, se := nt["zz-marker.example.com"]
		return svc && se
	})
	t.Logf("istiod's table for %s has %d hosts", node.GetId(), len(m.table))

	k8s := harness.StartCoreDNS(t, fmt.Sprintf("namespace %s\nkubernetes %s {\n cluster main\n startup_timeout 30s\n}",
		client.namespace, cp.Kubeconfig))
	xds := harness.StartCoreDNS(t, fmt.Sprintf("namespace %s\nxds %s {\n insecure\n node_ip %s\n workload %s\n}",
		client.namespace, istiod.PlaintextAddr, client.ip, client.name))
	for _, c := range []*harness.CoreDNS{k8s, xds} {
		expect(t, c.Addr, svcHost("app", "zz-marker"), dns.TypeA, marker.Spec.ClusterIPs[0])
		expect(t, c.Addr, "zz-marker.example.com", dns.TypeA, "192.0.2.99")
	}

	c := differential(t, m, deliberateDifferences, k8s.Addr, xds.Addr)
	checkSeen(t, deliberateDifferences, c.seen)
	kube, external := checkTableAnswered(t, m.table, c.results)
	if kube < 200 || external < 20 {
		t.Errorf("istiod's table has %d Kubernetes and %d External hosts, want at least 200 and 20", kube, external)
	}
	writeDiffs(t, "", m.table, c.diffs)
}

// comparison is what a differential run found.
type comparison struct {
	results []result
	diffs   []difference            // every query the servers answer differently
	seen    map[string][]difference // the deliberate ones, by what
}

// differential asks the kubernetes server k8s and the xds server xds every
// query of m, over UDP and TCP, until each difference is one of list and
// each server answers both transports alike, or 10 s pass (a push may still
// be on its way). It fails t on what is left: a difference list does not
// explain, or a server whose UDP and TCP answers differ.
func differential(t *testing.T, m *mesh, list []deliberate, k8s, xds string) comparison {
	t.Helper()
	queries := m.queries()
	var c comparison
	var transport []string
	deadline := time.Now().Add(10 * time.Second)
	for {
		c.results = compare(queries, k8s, xds)
		c.diffs, transport = c.diffs[:0], transport[:0]
		for _, r := range c.results {
			if r.k8s != r.xds {
				c.diffs = append(c.diffs, r.difference)
			}
			if r.transport != "" {
				transport = append(transport, r.transport)
			}
		}
		if len(unexplained(list, m, c.diffs))+len(transport) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("%d queries for %d hosts in istiod's table: %d answered differently", len(queries), len(m.table), len(c.diffs))
	for _, s := range transport {
		t.Errorf("UDP and TCP differ: %s", s)
	}
	c.seen = map[string][]difference{}
	for _, d := range c.diffs {
		if dd := explain(list, m, d); dd != nil {
			c.seen[dd.what] = append(c.seen[dd.what], d)
			continue
		}
		t.Errorf("unexplained difference: %s", d)
	}
	return c
}

// checkSeen fails t for each deliberate difference of list never seen, so
// the list stays what the code does, and logs the others.
func checkSeen(t *testing.T, list []deliberate, seen map[string][]difference) {
	t.Helper()
	for _, dd := range list {
		if len(seen[dd.what]) == 0 {
			t.Errorf("deliberate difference %q never seen: the list is out of date", dd.what)
		} else {
			t.Logf("deliberate: %s: %d answers, e.g. %s", dd.what, len(seen[dd.what]), seen[dd.what][0])
		}
	}
}

// checkTableAnswered fails t unless the xds server answered every host of
// istiod's table with its addresses, A and AAAA: the comparison means
// something only if the answers do. It returns how many hosts of each
// registry the table has.
func checkTableAnswered(t *testing.T, table harness.NameTable, results []result) (kube, external int) {
	t.Helper()
	answered := map[query]string{}
	for _, r := range results {
		answered[query{name: r.name, qtype: r.qtype}] = r.xds
	}
	for h, info := range table {
		if info.Registry == "Kubernetes" {
			kube++
		} else {
			external++
		}
		if strings.HasPrefix(h, "*.") {
			h = "any" + h[1:]
		}
		var v4, v6 []string
		for _, ip := range info.IPs {
			if netip.MustParseAddr(ip).Is4() {
				v4 = append(v4, ip)
			} else {
				v6 = append(v6, ip)
			}
		}
		for qt, ips := range map[uint16][]string{dns.TypeA: v4, dns.TypeAAAA: v6} {
			want := "NODATA"
			if len(ips) > 0 {
				want = strings.Join(slices.Sorted(slices.Values(ips)), " ")
			}
			if got := answered[query{name: dns.Fqdn(h), qtype: qt}]; got != want {
				t.Errorf("xds: %s %s = %q, want %q from istiod's table", h, dns.TypeToString[qt], got, want)
			}
		}
	}
	return kube, external
}

// writeDiffs writes the differences and istiod's table to
// $MESHDNS_DIFF_OUT (with suffix), if set, for reading them whole.
func writeDiffs(t *testing.T, suffix string, table harness.NameTable, diffs []difference) {
	t.Helper()
	path := os.Getenv("MESHDNS_DIFF_OUT")
	if path == "" {
		return
	}
	var b strings.Builder
	for _, d := range diffs {
		fmt.Fprintln(&b, d)
	}
	fmt.Fprintf(&b, "\nistiod's table:\n%s", table)
	if err := os.WriteFile(path+suffix, []byte(b.String()), 0o644); err != nil {
		t.Error(err)
	}
}

// explain returns the deliberate difference of list d is, or nil.
func explain(list []deliberate, m *mesh, d difference) *deliberate {
	for i := range list {
		if list[i].match(m, d) {
			return &list[i]
		}
	}
	return nil
}

func unexplained(list []deliberate, m *mesh, diffs []difference) []difference {
	var out []difference
	for _, d := range diffs {
		if explain(list, m, d) == nil {
			out = append(out, d)
		}
	}
	return out
}

// queries lists, for every host in istiod's table and every host the
// objects give the kubernetes source, the host, its short names, one
// search-domain expansion a client in namespace app would try, and a name
// under each wildcard; A and AAAA each.
func (m *mesh) queries() []query {
	hosts := map[string]bool{}
	for h := range m.table {
		hosts[h] = true
	}
	for h := range m.services {
		hosts[h] = true
	}
	for h := range m.serviceEntries {
		hosts[h] = true
	}
	var qs []query
	addBoth := func(name, host, kind string) {
		for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA} {
			qs = append(qs, query{name: dns.Fqdn(name), qtype: qt, host: host, kind: kind})
		}
	}
	search := "." + client.namespace + ".svc.cluster.local"
	for _, h := range slices.Sorted(maps.Keys(hosts)) {
		if rest, ok := strings.CutPrefix(h, "*."); ok {
			addBoth("any."+rest, h, "wildcard")
			addBoth("any."+rest+search, h, "search")
			continue
		}
		addBoth(h, h, "host")
		name, ns, ok := kubeHost(h)
		if info, found := m.table[h]; found && info.Registry == "Kubernetes" && info.Shortname != "" {
			// The names Istio's agent derives: <shortname>.<namespace>...
			name, ns, ok = info.Shortname, info.Namespace, true
		}
		if ok {
			addBoth(name+"."+ns, h, "short")
			addBoth(name+"."+ns+".svc", h, "short")
			if ns == client.namespace {
				addBoth(name, h, "short")
			}
			addBoth(name+"."+ns+search, h, "search")
		} else {
			addBoth(h+search, h, "search")
		}
	}
	for _, e := range slices.Sorted(maps.Keys(m.endpointNames)) {
		if !hosts[e] {
			addBoth(e, e, "endpoint")
		}
	}
	for _, n := range m.negatives {
		addBoth(n, n, "negative")
	}
	return qs
}

// kubeHost splits <name>.<ns>.svc.cluster.local.
func kubeHost(h string) (name, ns string, ok bool) {
	rest, ok := strings.CutSuffix(h, ".svc.cluster.local")
	if !ok {
		return "", "", false
	}
	name, ns, ok = strings.Cut(rest, ".")
	return name, ns, ok && !strings.Contains(ns, ".")
}

// result is how both servers answer a query; transport describes a server
// that answers UDP and TCP differently.
type result struct {
	difference
	transport string
}

// compare asks both servers every query over UDP and TCP, 8 at a time.
func compare(qs []query, k8s, xds string) []result {
	out := make([]result, len(qs))
	var wg sync.WaitGroup
	work := make(chan int)
	for range 8 {
		wg.Go(func() {
			for i := range work {
				q := qs[i]
				r := result{difference: difference{query: q}}
				for _, s := range []struct {
					addr string
					ans  *string
				}{{k8s, &r.k8s}, {xds, &r.xds}} {
					udp, tcp := answer(s.addr, q.name, q.qtype, "udp"), answer(s.addr, q.name, q.qtype, "tcp")
					if udp != tcp {
						r.transport += fmt.Sprintf("%s %s on %s: %q over UDP, %q over TCP; ", q.name, dns.TypeToString[q.qtype], s.addr, udp, tcp)
					}
					*s.ans = udp
				}
				out[i] = r
			}
		})
	}
	for i := range qs {
		work <- i
	}
	close(work)
	wg.Wait()
	return out
}
