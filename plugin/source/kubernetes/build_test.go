package kubernetes

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	apinetworking "istio.io/api/networking/v1alpha3"

	"github.com/meshdns/meshdns/plugin/table"
)

func TestVisible(t *testing.T) {
	tests := []struct {
		exportTo   []string
		ns, client string
		want       bool
	}{
		{nil, "a", "b", true},
		{[]string{"*"}, "a", "b", true},
		{[]string{"."}, "a", "a", true},
		{[]string{"."}, "a", "b", false},
		{[]string{"~"}, "a", "a", false},
		{[]string{"b", "c"}, "a", "c", true},
		{[]string{"b"}, "a", "c", false},
		{[]string{"~"}, "a", "", true}, // no client namespace: the whole mesh
	}
	for _, tt := range tests {
		if got := visible(tt.exportTo, tt.ns, tt.client); got != tt.want {
			t.Errorf("visible(%q, %q, %q) = %v, want %v", tt.exportTo, tt.ns, tt.client, got, tt.want)
		}
	}
}

func TestServiceToEntry(t *testing.T) {
	a := netip.MustParseAddr
	slices_ := []*endpointSlice{
		{endpoints: []endpoint{{hostname: "mysql-0", addr: a("10.1.0.1"), ready: true}, {addr: a("10.1.0.2")}}},
		{endpoints: []endpoint{{hostname: "mysql-0", addr: a("10.1.0.1"), ready: true}, {addr: a("fd00::3"), ready: true}}},
	}
	ports := []table.Port{{Name: "mysql", Number: 3306}}
	tests := []struct {
		name string
		svc  *service
		want table.Entry
	}{
		{
			name: "ClusterIP ignores endpoints",
			svc:  svc("web.shop.svc.cluster.local", addrs("10.96.0.1", "fd00::1"), ports, nil),
			want: table.Entry{Host: "web.shop.svc.cluster.local", Registry: table.Kubernetes, Addrs: addrs("10.96.0.1", "fd00::1"), Ports: ports},
		},
		{
			name: "headless: ready endpoints, per-pod names, duplicates merged",
			svc:  svc("mysql.db.svc.cluster.local", nil, ports, &serviceRare{headless: true}),
			want: table.Entry{Host: "mysql.db.svc.cluster.local", Registry: table.Kubernetes, Ports: ports,
				Addrs:     addrs("10.1.0.1", "fd00::3"),
				Endpoints: []table.Endpoint{{Addr: a("fd00::3")}, {Hostname: "mysql-0", Addr: a("10.1.0.1")}}},
		},
		{
			name: "headless with publishNotReadyAddresses",
			svc:  svc("mysql.db.svc.cluster.local", nil, nil, &serviceRare{headless: true, notReady: true}),
			want: table.Entry{Host: "mysql.db.svc.cluster.local", Registry: table.Kubernetes,
				Addrs:     addrs("10.1.0.1", "10.1.0.2", "fd00::3"),
				Endpoints: []table.Endpoint{{Addr: a("10.1.0.2")}, {Addr: a("fd00::3")}, {Hostname: "mysql-0", Addr: a("10.1.0.1")}}},
		},
		{
			name: "ExternalName",
			svc:  svc("pay.shop.svc.cluster.local", nil, nil, &serviceRare{target: "pay.example.com"}),
			want: table.Entry{Host: "pay.shop.svc.cluster.local", Registry: table.Kubernetes, Target: "pay.example.com"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := serviceToEntry(tt.svc, "cluster.local", slices_); !equalEntry(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestEntryAddrs(t *testing.T) {
	host := "db.example.com"
	wes := []*workloadEntry{
		{ns: "shop", labels: map[string]string{"app": "db"}, addr: netip.MustParseAddr("10.2.0.1")},
		{ns: "shop", labels: map[string]string{"app": "db", "v": "2"}, addr: netip.MustParseAddr("10.2.0.2")},
		{ns: "shop", labels: map[string]string{"app": "web"}, addr: netip.MustParseAddr("10.2.0.3")},
		{ns: "shop", labels: map[string]string{"app": "db"}}, // a DNS name: no address
		{ns: "shop", labels: map[string]string{"app": "db"}, addr: netip.MustParseAddr("10.2.0.4"), unhealthy: true},
	}
	x := newWorkloadIndex()
	for i, we := range wes {
		we.name = fmt.Sprint("we-", i)
		x.put(we)
	}
	status := []hostAddr{{host: host, addr: netip.MustParseAddr("240.240.0.5")}, {host: "other.example.com", addr: netip.MustParseAddr("240.240.0.6")}}
	tests := []struct {
		name      string
		se        serviceEntry
		allocated []netip.Addr
		want      []netip.Addr
	}{
		{"spec addresses first", serviceEntry{specAddrs: true, addrs: addrs("192.0.2.1"), status: status}, nil, addrs("192.0.2.1")},
		{"only CIDRs: nothing", serviceEntry{specAddrs: true, status: status, resolution: apinetworking.ServiceEntry_STATIC, endpoints: addrs("10.0.0.1")}, nil, nil},
		{"status of this host", serviceEntry{status: status}, addrs("240.240.1.1"), addrs("240.240.0.5")},
		{"status without host", serviceEntry{status: []hostAddr{{addr: netip.MustParseAddr("240.240.0.7")}}}, nil, addrs("240.240.0.7")},
		{"allocated", serviceEntry{resolution: apinetworking.ServiceEntry_DNS}, addrs("240.240.1.1"), addrs("240.240.1.1")},
		{"DNS: nothing", serviceEntry{resolution: apinetworking.ServiceEntry_DNS, endpoints: addrs("10.0.0.1")}, nil, nil},
		{"NONE: endpoints", serviceEntry{resolution: apinetworking.ServiceEntry_NONE, endpoints: addrs("10.0.0.1")}, nil, addrs("10.0.0.1")},
		{"STATIC: selected healthy WorkloadEntries", serviceEntry{resolution: apinetworking.ServiceEntry_STATIC, selector: map[string]string{"app": "db"}},
			nil, addrs("10.2.0.1", "10.2.0.2")},
		{"STATIC: two labels", serviceEntry{resolution: apinetworking.ServiceEntry_STATIC, selector: map[string]string{"app": "db", "v": "2"}},
			nil, addrs("10.2.0.2")},
		{"STATIC: empty selector selects all", serviceEntry{resolution: apinetworking.ServiceEntry_STATIC, selector: map[string]string{}},
			nil, addrs("10.2.0.1", "10.2.0.2", "10.2.0.3")},
		{"STATIC: selects nothing", serviceEntry{resolution: apinetworking.ServiceEntry_STATIC, selector: map[string]string{"app": "cache"}},
			nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := sortAddrs(entryAddrs(&tt.se, host, x.selected, tt.allocated)); !slices.Equal(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestExternalEntryMerges(t *testing.T) {
	ses := []*serviceEntry{
		{ns: "shop", name: "a", specAddrs: true, addrs: addrs("192.0.2.2", "192.0.2.1"), ports: []table.Port{{Name: "http", Number: 80}}},
		{ns: "shop", name: "b", specAddrs: true, addrs: addrs("192.0.2.1", "192.0.2.3"), ports: []table.Port{{Name: "http", Number: 80}, {Name: "dns", Number: 53, Protocol: table.UDP}}},
	}
	got := externalEntry("api.example.com", ses, nil, func(allocKey) []netip.Addr { return nil })
	want := table.Entry{Host: "api.example.com", Registry: table.External, Addrs: addrs("192.0.2.1", "192.0.2.2", "192.0.2.3"),
		Ports: []table.Port{{Name: "dns", Number: 53, Protocol: table.UDP}, {Name: "http", Number: 80}}}
	if !equalEntry(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
}

func TestPickNamespace(t *testing.T) {
	t0 := time.Unix(1000, 0)
	old := &serviceEntry{ns: "b", name: "x", created: t0}
	newer := &serviceEntry{ns: "a", name: "x", created: t0.Add(time.Second)}
	newerSame := &serviceEntry{ns: "a", name: "y", created: t0.Add(2 * time.Second)}
	tests := []struct {
		client    string
		win, lose []*serviceEntry
	}{
		{"", []*serviceEntry{old}, []*serviceEntry{newer, newerSame}},
		{"c", []*serviceEntry{old}, []*serviceEntry{newer, newerSame}},
		{"a", []*serviceEntry{newer, newerSame}, []*serviceEntry{old}},
	}
	for _, tt := range tests {
		win, lose := pickNamespace([]*serviceEntry{newerSame, old, newer}, tt.client)
		if !slices.Equal(win, tt.win) || !slices.Equal(lose, tt.lose) {
			t.Errorf("client %q: win %v lose %v, want %v %v", tt.client, win, lose, tt.win, tt.lose)
		}
	}
}

func equalEntry(a, b table.Entry) bool {
	return a.Host == b.Host && a.Registry == b.Registry && a.Target == b.Target &&
		slices.Equal(a.Addrs, b.Addrs) && slices.Equal(a.Ports, b.Ports) && slices.Equal(a.Endpoints, b.Endpoints)
}

// A headless Service's SRV records give the port its endpoints listen on,
// matched by name and protocol; the Service's shared list is left alone.
func TestEndpointPorts(t *testing.T) {
	svcPorts := []table.Port{{Name: "web", Number: 80}, {Name: "dns", Number: 53, Protocol: table.UDP}, {Name: "admin", Number: 9000}}
	slicePorts := []table.Port{{Name: "web", Number: 8080}, {Name: "dns", Number: 5353, Protocol: table.TCP}}
	got := endpointPorts(svcPorts, []*endpointSlice{{}, {ports: &slicePorts}})
	want := []table.Port{{Name: "web", Number: 8080}, {Name: "dns", Number: 53, Protocol: table.UDP}, {Name: "admin", Number: 9000}}
	if !slices.Equal(got, want) || svcPorts[0].Number != 80 {
		t.Errorf("got %v, want %v; the Service's list is now %v", got, want, svcPorts)
	}
	if same := endpointPorts(svcPorts, nil); &same[0] != &svcPorts[0] {
		t.Error("a list without changes was copied")
	}
}
