package kubernetes

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	apinetworking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/meshdns/meshdns/plugin/table"
)

// The transforms cache the converted struct, or a skipped one for an object
// that gives no names; either is keyed like the API object it came from.
func TestTransforms(t *testing.T) {
	withRV := func(ns, name string) metav1.ObjectMeta {
		m := meta(ns, name)
		m.ResourceVersion = "42"
		return m
	}
	sliceOf := func(svc string, typ discoveryv1.AddressType, addr string) *discoveryv1.EndpointSlice {
		m := withRV("db", "mysql-x")
		if svc != "" {
			m.Labels = map[string]string{discoveryv1.LabelServiceName: svc}
		}
		return &discoveryv1.EndpointSlice{ObjectMeta: m, AddressType: typ, Endpoints: []discoveryv1.Endpoint{{Addresses: []string{addr}}}}
	}
	tests := []struct {
		name      string
		transform cache.TransformFunc
		obj       any
		want      string // the cached type
		wantErr   error  // of a skipped object
	}{
		{"service", serviceTransform("cluster.local"),
			&corev1.Service{ObjectMeta: withRV("shop", "web"), Spec: corev1.ServiceSpec{ClusterIPs: []string{"10.96.0.1"}}},
			"*kubernetes.service", nil},
		{"bad service", serviceTransform("cluster.local"),
			&corev1.Service{ObjectMeta: withRV("shop", "web"), Spec: corev1.ServiceSpec{ClusterIPs: []string{"10.96.0"}}},
			"*kubernetes.skipped", table.ErrAddress},
		{"endpoint slice", endpointSliceTransform, sliceOf("mysql", discoveryv1.AddressTypeIPv4, "10.1.0.1"),
			"*kubernetes.endpointSlice", nil},
		{"FQDN slice", endpointSliceTransform, sliceOf("mysql", discoveryv1.AddressTypeFQDN, "a.example.com"),
			"*kubernetes.skipped", nil},
		{"slice without service", endpointSliceTransform, sliceOf("", discoveryv1.AddressTypeIPv4, "10.1.0.1"),
			"*kubernetes.skipped", nil},
		{"bad slice", endpointSliceTransform, sliceOf("mysql", discoveryv1.AddressTypeIPv4, "10.1.0"),
			"*kubernetes.skipped", table.ErrEndpoint},
		{"service entry", serviceEntryTransform("cluster.local"),
			&networkingv1.ServiceEntry{ObjectMeta: withRV("db", "x"), Spec: apinetworking.ServiceEntry{Hosts: []string{"x.example.com"}}},
			"*kubernetes.serviceEntry", nil},
		{"bad service entry", serviceEntryTransform("cluster.local"),
			&networkingv1.ServiceEntry{ObjectMeta: withRV("db", "x"), Spec: apinetworking.ServiceEntry{Hosts: []string{"*"}}},
			"*kubernetes.skipped", table.ErrHost},
		{"workload entry", workloadEntryTransform,
			&networkingv1.WorkloadEntry{ObjectMeta: withRV("db", "x"), Spec: apinetworking.WorkloadEntry{Address: "10.2.0.1"}},
			"*kubernetes.workloadEntry", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantKey, _ := cache.MetaNamespaceKeyFunc(tt.obj)
			got, err := tt.transform(tt.obj)
			if err != nil {
				t.Fatal(err)
			}
			if typ := fmt.Sprintf("%T", got); typ != tt.want {
				t.Fatalf("cached %s, want %s", typ, tt.want)
			}
			if key, err := cache.MetaNamespaceKeyFunc(got); err != nil || key != wantKey {
				t.Errorf("key %q (%v), want %q", key, err, wantKey)
			}
			if rv := got.(metav1.Object).GetResourceVersion(); rv != "42" {
				t.Errorf("resource version %q", rv)
			}
			if s, ok := got.(*skipped); ok && !errors.Is(s.err, tt.wantErr) || !ok && tt.wantErr != nil {
				t.Errorf("got %+v, want error %v", got, tt.wantErr)
			}
			// An object transformed already is left as it is.
			if again, _ := tt.transform(got); again != got {
				t.Errorf("transformed twice: %+v", again)
			}
		})
	}
}

// Handlers reject a skipped object with an error, once per event, and
// remove what its key had; a skipped object without one is not a rejection.
func TestConverted(t *testing.T) {
	rec := &recorder{}
	w := &watcher{name: "test", sink: rec}
	web := svc("web.shop.svc.cluster.local", nil, nil, nil)
	tests := []struct {
		obj        any
		want       *service
		wantReject bool
	}{
		{web, web, false},
		{nil, nil, false},
		{&skipped{ns: "shop", name: "web", err: fmt.Errorf("%w: bad", table.ErrPort)}, nil, true},
		{&skipped{ns: "shop", name: "web"}, nil, false},
	}
	for i, tt := range tests {
		rec.rejects = nil
		if got := converted[service](w, "Service", "shop/web", tt.obj); got != tt.want {
			t.Errorf("%d: got %v, want %v", i, got, tt.want)
		}
		if tt.wantReject != (len(rec.rejects) == 1 && rec.rejects[0] == "Service shop/web invalid_port") {
			t.Errorf("%d: rejects %v", i, rec.rejects)
		}
	}
}

func TestPortListsShared(t *testing.T) {
	p := &portLists{lists: map[string]*[]table.Port{}}
	http := func() []table.Port { return []table.Port{{Name: "http", Number: 80}} }
	a, b := p.intern(http()), p.intern(http())
	if a != b {
		t.Error("equal lists not shared")
	}
	tests := [][]table.Port{
		{{Name: "http", Number: 80, Protocol: table.UDP}},
		{{Name: "http", Number: 8080}},
		{{Name: "http8", Number: 80}},
		{{Name: "http", Number: 80}, {Name: "http", Number: 80}},
	}
	for _, ps := range tests {
		if got := p.intern(ps); got == a || !slices.Equal(*got, ps) {
			t.Errorf("%v shares %v", ps, a)
		}
	}
	if p.intern(nil) != nil {
		t.Error("empty list not nil")
	}
}
