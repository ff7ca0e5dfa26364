package kubernetes

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	apinetworking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	istiofake "istio.io/client-go/pkg/clientset/versioned/fake"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/meshdns/meshdns/plugin/table"
)

// The watches (a reflector and a RealFIFO per kind and namespace), against
// the fake clientsets: initial sync, then one event at a time. test/ runs
// the same against a real API server.
func TestSourceSyncsThenFollowsChanges(t *testing.T) {
	kc := fake.NewClientset(&corev1.Service{
		ObjectMeta: meta("shop", "web"),
		Spec:       corev1.ServiceSpec{ClusterIPs: []string{"10.96.0.1"}},
	}, &corev1.Service{
		ObjectMeta: meta("other", "skipped"),
		Spec:       corev1.ServiceSpec{ClusterIPs: []string{"10.96.0.2"}},
	})
	ic := istioFake{istiofake.NewSimpleClientset()}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rec := &recorder{}
	s := &Source{Cluster: "test", Namespaces: []string{"shop"}, StartupTimeout: 10 * time.Second, Domain: "cluster.local"}
	if err := s.run(ctx, kc, ic, nil, rec, &watcher{name: s.Name(), sink: rec}); err != nil {
		t.Fatal(err)
	}
	rec.mu.Lock()
	if !rec.synced || len(rec.replaced) != 1 || !slices.Equal(hostsOf(rec.replaced[0]), []string{"web.shop.svc.cluster.local"}) {
		t.Fatalf("after Start: synced %v, replaced %v", rec.synced, rec.replaced)
	}
	rec.mu.Unlock()

	_, err := ic.NetworkingV1().ServiceEntries("shop").Create(ctx, &networkingv1.ServiceEntry{
		ObjectMeta: meta("shop", "api"),
		Spec:       apinetworking.ServiceEntry{Hosts: []string{"api.example.com"}, Addresses: []string{"192.0.2.1"}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = ic.NetworkingV1().ServiceEntries("shop").Create(ctx, &networkingv1.ServiceEntry{
		ObjectMeta: meta("shop", "bad"), Spec: apinetworking.ServiceEntry{Hosts: []string{"*"}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		for _, a := range rec.applies {
			if len(a.upserts) == 1 && a.upserts[0].Host == "api.example.com" && a.upserts[0].Registry == table.External {
				return slices.Contains(rec.rejects, "ServiceEntry shop/bad invalid_host")
			}
		}
		return false
	})

	// The Services watch keeps no store of its own, its known objects are
	// the state's: a change and a deletion still reach the sink.
	applied := func(match func(apply) bool) func() bool {
		return func() bool {
			rec.mu.Lock()
			defer rec.mu.Unlock()
			return slices.ContainsFunc(rec.applies, match)
		}
	}
	web := &corev1.Service{ObjectMeta: meta("shop", "web"), Spec: corev1.ServiceSpec{ClusterIPs: []string{"10.96.0.9"}}}
	web.ResourceVersion = "2" // the fake clientset keeps versions as given
	if _, err := kc.CoreV1().Services("shop").Update(ctx, web, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, applied(func(a apply) bool {
		return len(a.upserts) == 1 && slices.Equal(a.upserts[0].Addrs, addrs("10.96.0.9"))
	}))
	if err := kc.CoreV1().Services("shop").Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, applied(func(a apply) bool { return slices.Equal(a.deletes, []string{"web.shop.svc.cluster.local"}) }))
}

// istioFake is the Istio fake clientset, which cannot stream watch lists.
type istioFake struct{ *istiofake.Clientset }

func (istioFake) IsWatchListSemanticsUnSupported() bool { return true }

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// An object listed again at the resource version the state holds comes out
// of the transform as the state's own copy; a changed one is converted.
func TestRelistReusesUnchangedObjects(t *testing.T) {
	st := newState(scope{domain: "cluster.local"}, &recorder{})
	held := newService("web", "shop", "7", addrs("10.96.0.1"), nil, nil)
	st.setService("shop", "web", held)
	transform := reusing(serviceTransform("cluster.local"), st.knownServices(""))
	listed := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web", ResourceVersion: held.version()},
		Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.1"}}
	if got, err := transform(listed); err != nil || got != any(held) {
		t.Errorf("same version: got %v (%v), want the state's copy", got, err)
	}
	listed.ResourceVersion += "1"
	if got, err := transform(listed); err != nil || got == any(held) || got.(*service).version() != listed.ResourceVersion {
		t.Errorf("new version: got %v (%v), want a new conversion", got, err)
	}
	other := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: "web", ResourceVersion: held.version()},
		Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.2"}}
	if got, _ := transform(other); got == any(held) {
		t.Error("another Service with the same resource version got the state's copy of web")
	}
}

// A list the API server refuses marks the source down, and the watch keeps
// retrying within retryBackoff: once allowed, the source syncs and is up.
func TestRefusedListMarksSourceDown(t *testing.T) {
	kc := fake.NewClientset(&corev1.Service{ObjectMeta: meta("shop", "web"), Spec: corev1.ServiceSpec{ClusterIPs: []string{"10.96.0.1"}}})
	var allowed atomic.Bool
	kc.PrependReactor("list", "services", func(k8stesting.Action) (bool, runtime.Object, error) {
		if allowed.Load() {
			return false, nil, nil
		}
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "services"}, "", errors.New("not in the role"))
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rec := &recorder{}
	s := &Source{Cluster: "test", StartupTimeout: 100 * time.Millisecond, Domain: "cluster.local"}
	if err := s.run(ctx, kc, istioFake{istiofake.NewSimpleClientset()}, nil, rec, &watcher{name: s.Name(), sink: rec}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return slices.Equal(rec.up, []bool{false}) && !rec.synced
	})
	allowed.Store(true)
	waitFor(t, func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return rec.synced && slices.Equal(rec.up, []bool{false, true})
	})
}
