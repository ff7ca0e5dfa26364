package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
)

func TestSeedServices(t *testing.T) {
	cp := Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	services := cp.Client.CoreV1().Services

	const n, nNS = 2000, 4
	for i := range nNS {
		if err := cp.ensureNamespace(ctx, fmt.Sprintf("seed-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	newSvc := func(ns, name, ip string) *corev1.Service {
		return &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app": "seed"}},
			Spec: corev1.ServiceSpec{
				ClusterIP: ip,
				Ports:     []corev1.ServicePort{{Name: "http", Port: 80}},
			},
		}
	}
	// Services 0..n-2 are IPv4 from 10.97.0.0, the last one IPv6.
	ipOf := func(i int) string {
		if i == n-1 {
			return "fd00:10:96::f001"
		}
		return netip.AddrFrom4([4]byte{10, 97, byte(i >> 8), byte(i)}).String()
	}
	var svcs []*corev1.Service
	for i := range n {
		svcs = append(svcs, newSvc(fmt.Sprintf("seed-%d", i%nNS), fmt.Sprintf("svc-%04d", i), ipOf(i)))
	}

	// What the API server stores for such a Service, created through it.
	ref, err := services("seed-0").Create(ctx, newSvc("seed-0", "ref", "10.98.0.1"), metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create reference service: %v", err)
	}

	// Rejected: no ClusterIP, an IP in no ServiceCIDR, a missing namespace.
	for _, bad := range []*corev1.Service{
		newSvc("seed-0", "no-ip", ""),
		newSvc("seed-0", "outside", "10.200.0.1"),
		newSvc("missing", "x", "10.98.0.2"),
	} {
		if err := cp.SeedServices(ctx, []*corev1.Service{bad}); err == nil {
			t.Errorf("SeedServices(%s/%s with IP %q) succeeded, want an error", bad.Namespace, bad.Name, bad.Spec.ClusterIP)
		}
	}

	begin := time.Now()
	if err := cp.SeedServices(ctx, svcs); err != nil {
		t.Fatal(err)
	}
	seeded := time.Now()
	t.Logf("seeded %d services in %s", n, seeded.Sub(begin).Round(time.Millisecond))
	seededUIDs := ipAddressUIDs(ctx, t, cp)

	// A seeded Service reads back like the one created through the API,
	// but for its name, identity and IP.
	got, err := services("seed-1").Get(ctx, "svc-0001", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get seeded service: %v", err)
	}
	if got.Spec.ClusterIP != ipOf(1) || got.UID == "" || got.CreationTimestamp.IsZero() || got.ResourceVersion == "" {
		t.Errorf("seeded service: clusterIP %s uid %q created %s resourceVersion %q; want clusterIP %s and all set",
			got.Spec.ClusterIP, got.UID, got.CreationTimestamp, got.ResourceVersion, ipOf(1))
	}
	if p := got.Spec.Ports[0]; p.Protocol != corev1.ProtocolTCP || p.TargetPort.IntValue() != 80 ||
		got.Spec.SessionAffinity != corev1.ServiceAffinityNone || *got.Spec.IPFamilyPolicy != corev1.IPFamilyPolicySingleStack {
		t.Errorf("seeded service is not defaulted: %+v", got.Spec)
	}
	if a, b := normalize(got), normalize(ref); !apiequality.Semantic.DeepEqual(a, b) {
		t.Errorf("seeded service differs from one created through the API:\nseeded: %s\nAPI:    %s", toJSON(a), toJSON(b))
	}
	v6, err := services(svcs[n-1].Namespace).Get(ctx, svcs[n-1].Name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get seeded IPv6 service: %v", err)
	}
	if fams := v6.Spec.IPFamilies; len(fams) != 1 || fams[0] != corev1.IPv6Protocol || v6.Spec.ClusterIPs[0] != ipOf(n-1) {
		t.Errorf("seeded IPv6 service: clusterIPs %v ipFamilies %v, want [%s] [IPv6]", v6.Spec.ClusterIPs, fams, ipOf(n-1))
	}

	// A list sees all of them.
	listed := map[string]string{}
	for i := range nNS {
		l, err := services(fmt.Sprintf("seed-%d", i)).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatalf("list services: %v", err)
		}
		for _, s := range l.Items {
			listed[s.Namespace+"/"+s.Name] = s.Spec.ClusterIP
		}
	}
	for i, s := range svcs {
		if ip := listed[s.Namespace+"/"+s.Name]; ip != ipOf(i) {
			t.Fatalf("list: %s/%s has clusterIP %q, want %s", s.Namespace, s.Name, ip, ipOf(i))
		}
	}

	// So does an informer started now.
	factory := informers.NewSharedInformerFactory(cp.Client, 0)
	lister := factory.Core().V1().Services().Lister()
	stop := make(chan struct{})
	factory.Start(stop)
	defer factory.Shutdown() // after close(stop), which ends the informers
	defer close(stop)
	for typ, ok := range factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			t.Fatalf("informer for %v did not sync", typ)
		}
	}
	cached, err := lister.List(labels.SelectorFromSet(labels.Set{"app": "seed"}))
	if err != nil || len(cached) != n+1 {
		t.Fatalf("informer has %d services labelled app=seed (%v), want %d", len(cached), err, n+1)
	}

	// The API server honours the seeded IPAddresses: a new Service gets
	// another IP, and a seeded IP is taken.
	fresh, err := services("seed-0").Create(ctx, newSvc("seed-0", "fresh", ""), metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create a service after seeding: %v", err)
	}
	for i := range svcs {
		if fresh.Spec.ClusterIP == ipOf(i) {
			t.Errorf("new service got the seeded clusterIP %s", ipOf(i))
		}
	}
	_, err = services("seed-0").Create(ctx, newSvc("seed-0", "dup", ipOf(7)), metav1.CreateOptions{})
	if err == nil || !strings.Contains(err.Error(), "already allocated") {
		t.Errorf("create with the seeded clusterIP %s: %v, want an already allocated error", ipOf(7), err)
	}

	// A seeded Service deletes through the API, which releases its IP.
	if err := services("seed-2").Delete(ctx, "svc-0002", metav1.DeleteOptions{}); err != nil {
		t.Fatalf("delete seeded service: %v", err)
	}
	if _, err := services("seed-2").Get(ctx, "svc-0002", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("get deleted service: %v, want not found", err)
	}
	if _, err := services("seed-2").Create(ctx, newSvc("seed-2", "reuse", ipOf(2)), metav1.CreateOptions{}); err != nil {
		t.Errorf("create with the released clusterIP %s: %v", ipOf(2), err)
	}

	// The ClusterIP repair controller deleted nothing: every seeded
	// IPAddress is the one written, but the released one, which "reuse"
	// took again. While its informer catches up after the burst it may
	// report a seeded IP as not allocated; it then finds the IPAddress there
	// and changes nothing, which the UIDs prove.
	time.Sleep(time.Until(seeded.Add(5 * time.Second)))
	events, err := cp.Client.EventsV1().Events("").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatalf("list events: %v", err)
	}
	repairs := 0
	for _, e := range events.Items {
		if e.ReportingController == "ipallocator-repair-controller" {
			if repairs == 0 {
				t.Logf("the ClusterIP repair controller reported %s on %s/%s: %s", e.Reason, e.Regarding.Namespace, e.Regarding.Name, e.Note)
			}
			repairs++
		}
	}
	t.Logf("%d events of the ClusterIP repair controller", repairs)
	now := ipAddressUIDs(ctx, t, cp)
	for i := range svcs {
		ip := ipOf(i)
		switch uid, ok := now[ip]; {
		case !ok:
			t.Errorf("IPAddress %s is gone", ip)
		case i == 2 && uid == seededUIDs[ip]:
			t.Errorf("IPAddress %s was not released by the delete of its Service", ip)
		case i != 2 && uid != seededUIDs[ip]:
			t.Errorf("IPAddress %s was deleted and created again", ip)
		}
	}
}

// ipAddressUIDs lists the IPAddresses: name to UID.
func ipAddressUIDs(ctx context.Context, t *testing.T, cp *ControlPlane) map[string]string {
	t.Helper()
	l, err := cp.Client.NetworkingV1().IPAddresses().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatalf("list IPAddresses: %v", err)
	}
	out := map[string]string{}
	for _, a := range l.Items {
		out[a.Name] = string(a.UID)
	}
	return out
}

// normalize clears what differs between two Services of the same shape.
func normalize(svc *corev1.Service) *corev1.Service {
	s := svc.DeepCopy()
	s.Namespace, s.Name, s.UID, s.ResourceVersion, s.CreationTimestamp = "", "", "", "", metav1.Time{}
	s.Spec.ClusterIP, s.Spec.ClusterIPs = "", nil
	for i := range s.ManagedFields {
		s.ManagedFields[i].Time = nil
	}
	return s
}

func toJSON(v any) string {
	data, _ := json.Marshal(v)
	return string(data)
}
