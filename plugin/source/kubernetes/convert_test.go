package kubernetes

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
	"unsafe"

	istiometa "istio.io/api/meta/v1alpha1"
	apinetworking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshdns/meshdns/plugin/table"
)

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

// svc is a Service as convertService makes it, with no resource version;
// host is "<name>.<namespace>.svc.cluster.local".
func svc(host string, as []netip.Addr, ps []table.Port, rare *serviceRare) *service {
	name, rest, _ := strings.Cut(host, ".")
	ns, _, _ := strings.Cut(rest, ".")
	return newService(name, ns, "", as, ps, rare)
}

func meta(ns, name string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Namespace: ns, Name: name}
}

func TestConvertService(t *testing.T) {
	tests := []struct {
		name    string
		svc     corev1.Service
		want    *service
		wantErr error
	}{
		{
			name: "dual-stack ClusterIPs and ports",
			svc: corev1.Service{ObjectMeta: meta("shop", "web"), Spec: corev1.ServiceSpec{
				ClusterIP: "10.96.0.10", ClusterIPs: []string{"10.96.0.10", "fd00::10"},
				Ports: []corev1.ServicePort{{Name: "http", Port: 80}, {Name: "DNS", Port: 53, Protocol: corev1.ProtocolUDP}},
			}},
			want: svc("web.shop.svc.cluster.local", addrs("10.96.0.10", "fd00::10"),
				[]table.Port{{Name: "dns", Number: 53, Protocol: table.UDP}, {Name: "http", Number: 80}}, nil),
		},
		{
			name: "headless with publishNotReadyAddresses and exportTo",
			svc: corev1.Service{
				ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: "mysql", Annotations: map[string]string{exportToAnnotation: ". , shop"}},
				Spec:       corev1.ServiceSpec{ClusterIP: "None", ClusterIPs: []string{"None"}, PublishNotReadyAddresses: true},
			},
			want: svc("mysql.db.svc.cluster.local", nil, nil, &serviceRare{headless: true, notReady: true, exportTo: []string{".", "shop"}}),
		},
		{
			name: "ExternalName",
			svc: corev1.Service{ObjectMeta: meta("shop", "pay"), Spec: corev1.ServiceSpec{
				Type: corev1.ServiceTypeExternalName, ExternalName: "pay.example.com",
			}},
			want: svc("pay.shop.svc.cluster.local", nil, nil, &serviceRare{target: "pay.example.com"}),
		},
		{
			name:    "invalid ClusterIP",
			svc:     corev1.Service{ObjectMeta: meta("shop", "bad"), Spec: corev1.ServiceSpec{ClusterIPs: []string{"10.0.0.300"}}},
			wantErr: table.ErrAddress,
		},
		{
			name:    "invalid port",
			svc:     corev1.Service{ObjectMeta: meta("shop", "bad"), Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 70000}}}},
			wantErr: table.ErrPort,
		},
		{
			name: "invalid ExternalName",
			svc: corev1.Service{ObjectMeta: meta("shop", "bad"), Spec: corev1.ServiceSpec{
				Type: corev1.ServiceTypeExternalName, ExternalName: "bad name!",
			}},
			wantErr: table.ErrTarget,
		},
		{
			name:    "name too long",
			svc:     corev1.Service{ObjectMeta: meta("shop", strings.Repeat("a", 300))},
			wantErr: table.ErrHost,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := convertService(&tt.svc, "cluster.local")
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			g, w := got.more(), tt.want.more()
			if got.id != tt.want.id || (got.rare == nil) != (tt.want.rare == nil) || g.headless != w.headless ||
				g.notReady != w.notReady || g.target != w.target || !slices.Equal(got.addrs(), tt.want.addrs()) ||
				!slices.Equal(got.portList(), tt.want.portList()) || !slices.Equal(g.exportTo, w.exportTo) {
				t.Errorf("got %+v %+v, want %+v %+v", *got, *g, *tt.want, *w)
			}
		})
	}
}

func TestConvertEndpointSlice(t *testing.T) {
	no, host := false, "mysql-0"
	tests := []struct {
		name    string
		slice   discoveryv1.EndpointSlice
		want    *endpointSlice
		wantErr bool
	}{
		{
			name: "ready, not ready and hostname",
			slice: discoveryv1.EndpointSlice{
				ObjectMeta:  metav1.ObjectMeta{Namespace: "db", Name: "mysql-x", Labels: map[string]string{discoveryv1.LabelServiceName: "mysql"}},
				AddressType: discoveryv1.AddressTypeIPv4,
				Endpoints: []discoveryv1.Endpoint{
					{Addresses: []string{"10.1.0.1"}, Hostname: &host},
					{Addresses: []string{"10.1.0.2"}, Conditions: discoveryv1.EndpointConditions{Ready: &no}},
				},
			},
			want: &endpointSlice{service: "db/mysql", endpoints: []endpoint{
				{hostname: "mysql-0", addr: netip.MustParseAddr("10.1.0.1"), ready: true},
				{addr: netip.MustParseAddr("10.1.0.2")},
			}},
		},
		{
			name: "imported by an MCS controller: the ServiceImport's and the cluster's labels",
			slice: discoveryv1.EndpointSlice{
				ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: "imported-x", Labels: map[string]string{
					mcsServiceLabel: "mysql", mcsClusterLabel: "East", discoveryv1.LabelServiceName: "derived-mysql"}},
				Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"10.1.0.1"}, Hostname: &host}},
			},
			want: &endpointSlice{service: "db/mysql", cluster: "east", endpoints: []endpoint{
				{hostname: "mysql-0", addr: netip.MustParseAddr("10.1.0.1"), ready: true},
			}},
		},
		{
			name: "imported without its cluster",
			slice: discoveryv1.EndpointSlice{
				ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: "imported-x", Labels: map[string]string{mcsServiceLabel: "mysql"}},
				Endpoints:  []discoveryv1.Endpoint{{Addresses: []string{"10.1.0.1"}}},
			},
			wantErr: true,
		},
		{
			name:  "no service label",
			slice: discoveryv1.EndpointSlice{ObjectMeta: meta("db", "x"), Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"10.1.0.1"}}}},
		},
		{
			name: "FQDN slice",
			slice: discoveryv1.EndpointSlice{
				ObjectMeta:  metav1.ObjectMeta{Namespace: "db", Name: "x", Labels: map[string]string{discoveryv1.LabelServiceName: "mysql"}},
				AddressType: discoveryv1.AddressTypeFQDN, Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"a.example.com"}}},
			},
		},
		{
			name: "bad address",
			slice: discoveryv1.EndpointSlice{
				ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: "x", Labels: map[string]string{discoveryv1.LabelServiceName: "mysql"}},
				Endpoints:  []discoveryv1.Endpoint{{Addresses: []string{"10.1.0"}}},
			},
			wantErr: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := convertEndpointSlice(&tt.slice)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if tt.wantErr {
				return
			}
			if (got == nil) != (tt.want == nil) || got != nil && (got.service != tt.want.service || got.cluster != tt.want.cluster || !slices.Equal(got.endpoints, tt.want.endpoints)) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestConvertServiceEntry(t *testing.T) {
	created := metav1.NewTime(time.Unix(100, 0))
	tests := []struct {
		name    string
		se      *networkingv1.ServiceEntry
		check   func(*testing.T, *serviceEntry)
		wantErr error
	}{
		{
			name: "short host qualified, CIDR skipped, ports",
			se: &networkingv1.ServiceEntry{
				ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "se", CreationTimestamp: created},
				Spec: apinetworking.ServiceEntry{
					Hosts:     []string{"Legacy", "api.example.com."},
					Addresses: []string{"192.0.2.1", "192.0.2.0/24", "2001:db8::1/128"},
					Ports:     []*apinetworking.ServicePort{{Number: 53, Name: "dns", Protocol: "UDP"}, {Number: 443, Name: "HTTPS", Protocol: "TLS"}},
				},
			},
			check: func(t *testing.T, se *serviceEntry) {
				if want := []string{"api.example.com", "legacy.shop.svc.cluster.local"}; !slices.Equal(se.hosts, want) {
					t.Errorf("hosts = %v, want %v", se.hosts, want)
				}
				if want := addrs("192.0.2.1", "2001:db8::1"); !se.specAddrs || !slices.Equal(se.addrs, want) {
					t.Errorf("addrs = %v, want %v", se.addrs, want)
				}
				if want := []table.Port{{Name: "dns", Number: 53, Protocol: table.UDP}, {Name: "https", Number: 443}}; !slices.Equal(se.ports, want) {
					t.Errorf("ports = %v, want %v", se.ports, want)
				}
				if !se.created.Equal(created.Time) {
					t.Errorf("created = %v", se.created)
				}
			},
		},
		{
			name: "status, endpoints, selector, opt-out",
			se: &networkingv1.ServiceEntry{
				ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "se", Labels: map[string]string{autoAllocateLabel: "false"}},
				Spec: apinetworking.ServiceEntry{
					Hosts:            []string{"db.example.com"},
					Resolution:       apinetworking.ServiceEntry_STATIC,
					Endpoints:        []*apinetworking.WorkloadEntry{{Address: "10.0.0.1"}, {Address: "db.internal"}, {Address: "unix:///sock"}},
					WorkloadSelector: &apinetworking.WorkloadSelector{Labels: map[string]string{"app": "db"}},
				},
				Status: apinetworking.ServiceEntryStatus{Addresses: []*apinetworking.ServiceEntryAddress{{Value: "240.240.0.9", Host: "db.example.com"}, {Value: "junk"}}},
			},
			check: func(t *testing.T, se *serviceEntry) {
				if len(se.status) != 1 || se.status[0] != (hostAddr{"db.example.com", netip.MustParseAddr("240.240.0.9")}) {
					t.Errorf("status = %v", se.status)
				}
				if !slices.Equal(se.endpoints, addrs("10.0.0.1")) || se.selector["app"] != "db" || !se.noAlloc {
					t.Errorf("got %+v", *se)
				}
			},
		},
		{name: "bare wildcard", se: seWith("*"), wantErr: table.ErrHost},
		{name: "300-character host", se: seWith(strings.Repeat("a.", 150) + "com"), wantErr: table.ErrHost},
		{name: "bad label", se: seWith("bad_host!.example.com"), wantErr: table.ErrHost},
		{name: "no hosts", se: seWith(), wantErr: table.ErrHost},
		{
			name:    "bad address",
			se:      &networkingv1.ServiceEntry{Spec: apinetworking.ServiceEntry{Hosts: []string{"a.example.com"}, Addresses: []string{"1.2.3"}}},
			wantErr: table.ErrAddress,
		},
		{
			name:    "bad port",
			se:      &networkingv1.ServiceEntry{Spec: apinetworking.ServiceEntry{Hosts: []string{"a.example.com"}, Ports: []*apinetworking.ServicePort{{Number: 0, Name: "x"}}}},
			wantErr: table.ErrPort,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := convertServiceEntry(tt.se, "cluster.local")
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, got)
		})
	}
}

func seWith(hosts ...string) *networkingv1.ServiceEntry {
	return &networkingv1.ServiceEntry{ObjectMeta: meta("ns", "se"), Spec: apinetworking.ServiceEntry{Hosts: hosts}}
}

func TestConvertWorkloadEntry(t *testing.T) {
	we := &networkingv1.WorkloadEntry{
		ObjectMeta: metav1.ObjectMeta{Namespace: "vm", Name: "vm1", Labels: map[string]string{"app": "x", "v": "1"}},
		Spec:       apinetworking.WorkloadEntry{Address: "10.2.0.1", Labels: map[string]string{"v": "2"}},
	}
	got := convertWorkloadEntry(we)
	if got.ns != "vm" || got.addr != netip.MustParseAddr("10.2.0.1") || got.labels["app"] != "x" || got.labels["v"] != "2" {
		t.Errorf("got %+v", *got)
	}
	we.Spec.Address = "vm1.example.com"
	if got := convertWorkloadEntry(we); got.addr.IsValid() {
		t.Errorf("a DNS name gave address %v", got.addr)
	}
}

// Istio's rule: with health checks enabled (a true annotation, as
// strconv.ParseBool reads it), a WorkloadEntry is served only while its
// Healthy condition is True; without them, always.
func TestConvertWorkloadEntryHealth(t *testing.T) {
	healthy := func(status string) []*istiometa.IstioCondition {
		return []*istiometa.IstioCondition{{Type: "Reconciled", Status: "True"}, {Type: "Healthy", Status: status}}
	}
	tests := []struct {
		name       string
		annotation string
		conditions []*istiometa.IstioCondition
		unhealthy  bool
	}{
		{"no annotation, no condition", "", nil, false},
		{"no annotation, Healthy False", "", healthy("False"), false},
		{"checks off", "false", healthy("False"), false},
		{"annotation not a bool", "yes", healthy("False"), false},
		{"checks on, no condition yet", "true", nil, true},
		{"checks on, another condition only", "true", []*istiometa.IstioCondition{{Type: "Reconciled", Status: "True"}}, true},
		{"checks on, Healthy True", "true", healthy("True"), false},
		{"checks on (1), Healthy True", "1", healthy("True"), false},
		{"checks on, Healthy False", "TRUE", healthy("False"), true},
		{"checks on, Healthy Unknown", "true", healthy("Unknown"), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			we := &networkingv1.WorkloadEntry{ObjectMeta: metav1.ObjectMeta{Namespace: "vm", Name: "vm1"},
				Spec: apinetworking.WorkloadEntry{Address: "10.2.0.1"}}
			if tt.annotation != "" {
				we.Annotations = map[string]string{healthChecksAnnotation: tt.annotation}
			}
			we.Status.Conditions = tt.conditions
			if got := convertWorkloadEntry(we).unhealthy; got != tt.unhealthy {
				t.Errorf("unhealthy = %v, want %v", got, tt.unhealthy)
			}
		})
	}
}

// Every Service in the cluster is held as one service, in the state (the
// watches keep no store of their own): keep it in the 64-byte size class.
func TestServiceSize(t *testing.T) {
	if n := unsafe.Sizeof(service{}); n > 64 {
		t.Errorf("service is %d bytes, want at most 64", n)
	}
}
