// Package kubernetes is the source that reads the mesh's names from a
// Kubernetes API server, as istiod builds its NameTable: Services,
// EndpointSlices, and Istio ServiceEntries and WorkloadEntries.
package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"time"

	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	istioclient "istio.io/client-go/pkg/clientset/versioned"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	coreinformers "k8s.io/client-go/informers/core/v1"
	discoveryinformers "k8s.io/client-go/informers/discovery/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"

	clog "github.com/coredns/coredns/plugin/pkg/log"

	"github.com/meshdns/meshdns/plugin/source"
	"github.com/meshdns/meshdns/plugin/table"
)

var log = clog.NewWithPlugin("meshdns")

// Source watches one cluster.
type Source struct {
	// Kubeconfig and Context select the cluster; in-cluster config when empty.
	Kubeconfig, Context string
	// Cluster names the source: "kubernetes:<Cluster>".
	Cluster string
	// Namespaces limits the watches; all namespaces when empty.
	Namespaces []string
	// Labels selects Services and ServiceEntries.
	Labels string
	// StartupTimeout bounds how long Start waits for the initial list.
	StartupTimeout time.Duration
	QPS            float32
	Burst          int
	// AutoAllocate gives addresses to ServiceEntries that have none.
	AutoAllocate bool
	// MeshWide ignores exportTo: every name of the mesh is served.
	MeshWide bool

	// Domain and Namespace come from the meshdns block.
	Domain, Namespace string
}

// Name implements source.Source.
func (s *Source) Name() string { return "kubernetes:" + s.Cluster }

// Start starts the watches and waits up to StartupTimeout for the initial
// list; the source keeps syncing in the background after that.
func (s *Source) Start(ctx context.Context, sink source.Sink) error {
	cfg, err := s.restConfig()
	if err != nil {
		return err
	}
	w := &watcher{name: s.Name(), sink: sink}
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { return &upTracker{rt: rt, w: w} })
	istioCfg := rest.CopyConfig(cfg)
	// Core types are read as protobuf; custom resources only exist as JSON.
	cfg.ContentType = "application/vnd.kubernetes.protobuf"
	cfg.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	kc, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("kubernetes client: %w", err)
	}
	ic, err := istioclient.NewForConfig(istioCfg)
	if err != nil {
		return fmt.Errorf("istio client: %w", err)
	}
	return s.run(ctx, kc, ic, sink, w)
}

func (s *Source) run(ctx context.Context, kc kubernetes.Interface, ic istioclient.Interface, sink source.Sink, w *watcher) error {
	namespace := s.Namespace
	if s.MeshWide {
		namespace = ""
	}
	services := informerServices{}
	selected := func(o *metav1.ListOptions) { o.LabelSelector = s.Labels }
	namespaces := s.Namespaces
	if len(namespaces) == 0 {
		namespaces = []string{metav1.NamespaceAll}
	}
	var informers []cache.SharedIndexInformer
	var synced []cache.InformerSynced
	for _, ns := range namespaces {
		kinds := []struct {
			inf       cache.SharedIndexInformer
			transform cache.TransformFunc
			handle    func(key string, obj any)
		}{
			{coreinformers.NewFilteredServiceInformer(kc, ns, 0, nil, selected), serviceTransform(s.Domain), w.service},
			{discoveryinformers.NewFilteredEndpointSliceInformer(kc, ns, 0, nil, nil), endpointSliceTransform, w.endpointSlice},
			{serviceEntryInformer(ic, ns, selected), serviceEntryTransform(s.Domain), w.serviceEntry},
			{workloadEntryInformer(ic, ns), workloadEntryTransform, w.workloadEntry},
		}
		for _, k := range kinds {
			if err := k.inf.SetTransform(k.transform); err != nil {
				return err
			}
			if err := k.inf.SetWatchErrorHandler(w.watchError); err != nil {
				return err
			}
			reg, err := k.inf.AddEventHandler(handler(k.handle))
			if err != nil {
				return err
			}
			informers = append(informers, k.inf)
			synced = append(synced, reg.HasSynced)
		}
		services[ns] = kinds[0].inf.GetStore()
	}
	st := newState(scope{domain: s.Domain, namespace: namespace, autoAllocate: s.AutoAllocate}, sink, services)
	w.state = st
	for _, inf := range informers {
		go inf.Run(ctx.Done())
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if !cache.WaitForCacheSync(ctx.Done(), synced...) {
			return
		}
		st.sync()
		w.setUp(true, nil)
		sink.Synced()
	}()
	select {
	case <-done:
	case <-ctx.Done():
	case <-time.After(s.StartupTimeout):
		log.Warningf("source %s: not synced after %s, serving SERVFAIL until it is", s.Name(), s.StartupTimeout)
	}
	return nil
}

// The Istio informers are built here rather than with istio.io/client-go's
// constructors, which do not tell the reflector whether the client supports
// watch-list streaming (the fake clientset does not).
func serviceEntryInformer(ic istioclient.Interface, ns string, tweak func(*metav1.ListOptions)) cache.SharedIndexInformer {
	c := ic.NetworkingV1().ServiceEntries(ns)
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			tweak(&o)
			return c.List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			tweak(&o)
			return c.Watch(ctx, o)
		},
	}
	return cache.NewSharedIndexInformer(cache.ToListWatcherWithWatchListSemantics(lw, ic), &networkingv1.ServiceEntry{}, 0, nil)
}

func workloadEntryInformer(ic istioclient.Interface, ns string) cache.SharedIndexInformer {
	c := ic.NetworkingV1().WorkloadEntries(ns)
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return c.List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return c.Watch(ctx, o)
		},
	}
	return cache.NewSharedIndexInformer(cache.ToListWatcherWithWatchListSemantics(lw, ic), &networkingv1.WorkloadEntry{}, 0, nil)
}

func (s *Source) restConfig() (*rest.Config, error) {
	var cfg *rest.Config
	var err error
	if s.Kubeconfig == "" {
		cfg, err = rest.InClusterConfig()
	} else {
		cfg, err = clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
			&clientcmd.ClientConfigLoadingRules{ExplicitPath: s.Kubeconfig},
			&clientcmd.ConfigOverrides{CurrentContext: s.Context},
		).ClientConfig()
	}
	if err != nil {
		return nil, fmt.Errorf("kubernetes config: %w", err)
	}
	if s.QPS > 0 {
		cfg.QPS = s.QPS
	}
	if s.Burst > 0 {
		cfg.Burst = s.Burst
	}
	cfg.UserAgent = "meshdns"
	return cfg, nil
}

// handler turns informer events into "this key is now obj" (nil: deleted).
// Updates that keep the resource version are resyncs and change nothing.
func handler(f func(key string, obj any)) cache.ResourceEventHandler {
	return cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { f(keyOf(obj), obj) },
		UpdateFunc: func(old, obj any) {
			if o, n := old.(metav1.Object), obj.(metav1.Object); o.GetResourceVersion() != n.GetResourceVersion() {
				f(keyOf(obj), obj)
			}
		},
		DeleteFunc: func(obj any) { f(keyOf(obj), nil) },
	}
}

func keyOf(obj any) string {
	key, _ := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
	return key
}

// watcher converts objects and feeds the state; it also tracks whether the
// API server is reachable.
type watcher struct {
	name  string
	sink  source.Sink
	state *state
	up    atomic.Int32 // unknown, up or down
}

const (
	upUnknown int32 = iota
	upYes
	upNo
)

// setUp reports reachability to the sink when it changes.
func (w *watcher) setUp(up bool, err error) {
	v := upNo
	if up {
		v = upYes
	}
	if w.up.Swap(v) == v {
		return
	}
	if up {
		log.Infof("source %s: API server reachable", w.name)
	} else {
		log.Warningf("source %s: API server unreachable, serving the last known names: %v", w.name, err)
	}
	w.sink.Up(up)
}

// The informers hand over objects their transform already converted (see
// slim.go); nil is a deletion.

// The informer's cache is what the state reads Services from.
func (w *watcher) service(key string, obj any) {
	converted[service](w, "Service", key, obj)
	ns, name, _ := cache.SplitMetaNamespaceKey(key)
	w.state.serviceChanged(ns, name)
}

func (w *watcher) endpointSlice(key string, obj any) {
	w.state.setSlice(key, converted[endpointSlice](w, "EndpointSlice", key, obj))
}

func (w *watcher) serviceEntry(key string, obj any) {
	w.state.setServiceEntry(key, converted[serviceEntry](w, "ServiceEntry", key, obj))
}

func (w *watcher) workloadEntry(key string, obj any) {
	w.state.setWorkloadEntry(key, converted[workloadEntry](w, "WorkloadEntry", key, obj))
}

// converted returns the converted object, or nil: for a deletion, or for an
// object the transform skipped, after rejecting it if it was bad.
func converted[T any](w *watcher, kind, key string, obj any) *T {
	if s, ok := obj.(*skipped); ok && s.err != nil {
		w.reject(kind, key, s.err)
	}
	o, _ := obj.(*T)
	return o
}

func (w *watcher) reject(kind, key string, err error) {
	w.sink.Reject(kind+" "+key, table.Reason(err), err)
}

// watchError marks the source down on a failed list or watch (a refused
// list, a forbidden one...). A closed or expired watch is routine: the
// informer resumes or relists by itself.
func (w *watcher) watchError(r *cache.Reflector, err error) {
	if errors.Is(err, io.EOF) || apierrors.IsResourceExpired(err) || apierrors.IsGone(err) {
		return
	}
	w.setUp(false, fmt.Errorf("%s: %w", r.TypeDescription(), err))
}

// informerServices finds Services in the caches of the Service informers,
// one per watched namespace (metav1.NamespaceAll for all).
type informerServices map[string]cache.Store

func (m informerServices) service(ns, name string) *service {
	store := m[ns]
	if store == nil {
		store = m[metav1.NamespaceAll]
	}
	if store == nil {
		return nil
	}
	obj, _, _ := store.GetByKey(ns + "/" + name)
	s, _ := obj.(*service)
	return s
}

func (m informerServices) each(f func(*service)) {
	for _, store := range m {
		for _, obj := range store.List() {
			if s, ok := obj.(*service); ok {
				f(s)
			}
		}
	}
}

// upTracker sees every API request: a transport error marks the source down,
// a success marks it up. Reflectors retry a refused watch by themselves
// without telling the watch error handler, so this is what notices an outage.
type upTracker struct {
	rt http.RoundTripper
	w  *watcher
}

func (u *upTracker) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := u.rt.RoundTrip(req)
	switch {
	case err != nil && req.Context().Err() == nil:
		u.w.setUp(false, err)
	case err == nil && resp.StatusCode < 300:
		u.w.setUp(true, nil)
	}
	return resp, err
}
