// Package kubernetes is the source that reads the mesh's names from a
// Kubernetes API server, as istiod builds its NameTable: Services,
// EndpointSlices, and Istio ServiceEntries and WorkloadEntries.
package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"sync/atomic"
	"time"

	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	istioclient "istio.io/client-go/pkg/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
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
	// ClientCluster says the client runs in this cluster, when the block
	// has several (multicluster.go); else the first is the client's.
	ClientCluster bool
	// Network is the cluster's network: a headless Service answers only the
	// endpoints of clusters on the client's network. Empty matches any.
	Network string

	// member is this cluster's place in the block's cluster set; nil with
	// one kubernetes source.
	member *member

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
	if s.member != nil {
		sink = s.member.start(sink)
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
	dc, err := dynamic.NewForConfig(istioCfg)
	if err != nil {
		return fmt.Errorf("dynamic client: %w", err)
	}
	return s.run(ctx, kc, ic, dc, sink, w)
}

// run starts the watches; without dc (a test's fake clients) there are no
// ServiceImports.
func (s *Source) run(ctx context.Context, kc kubernetes.Interface, ic istioclient.Interface, dc dynamic.Interface, sink source.Sink, w *watcher) error {
	namespace := s.Namespace
	if s.MeshWide {
		namespace = ""
	}
	st := newState(scope{domain: s.Domain, namespace: namespace, autoAllocate: s.AutoAllocate}, sink)
	w.state = st
	selected := func(o *metav1.ListOptions) { o.LabelSelector = s.Labels }
	every := func(*metav1.ListOptions) {}
	namespaces := s.Namespaces
	if len(namespaces) == 0 {
		namespaces = []string{metav1.NamespaceAll}
	}
	var watches []*kindWatch
	for _, ns := range namespaces {
		svcs, eps := kc.CoreV1().Services(ns), kc.DiscoveryV1().EndpointSlices(ns)
		ses, wes := ic.NetworkingV1().ServiceEntries(ns), ic.NetworkingV1().WorkloadEntries(ns)
		watches = append(watches,
			newWatch(listWatch(kc, selected, svcs.List, svcs.Watch, w.failed("Services")), &corev1.Service{},
				serviceTransform(s.Domain), st.knownServices(ns), w.service),
			newWatch(listWatch(kc, every, eps.List, eps.Watch, w.failed("EndpointSlices")), &discoveryv1.EndpointSlice{},
				endpointSliceTransform, knownIn(st, ns, st.slices), w.endpointSlice),
			newWatch(listWatch(ic, selected, ses.List, ses.Watch, w.failed("ServiceEntries")), &networkingv1.ServiceEntry{},
				serviceEntryTransform(s.Domain), knownIn(st, ns, st.ses), w.serviceEntry),
			newWatch(listWatch(ic, every, wes.List, wes.Watch, w.failed("WorkloadEntries")), &networkingv1.WorkloadEntry{},
				workloadEntryTransform, knownIn(st, ns, st.wes), w.workloadEntry),
		)
	}
	if dc != nil {
		if ok, _ := servesImports(kc.Discovery()); ok {
			watches = append(watches, importWatches(dc, namespaces, st, w)...)
		} else {
			// Not served (or the API server is unreachable, which the
			// watches report): ask again until it is.
			go watchImportsOnceServed(ctx, kc.Discovery(), func() {
				log.Infof("source %s: the cluster serves ServiceImports: watching them", s.Name())
				for _, c := range importWatches(dc, namespaces, st, w) {
					go c.RunWithContext(ctx)
				}
			})
		}
	}
	synced := make([]cache.InformerSynced, len(watches))
	for i, c := range watches {
		go c.RunWithContext(ctx)
		synced[i] = c.HasSynced
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
		if s.member != nil && !s.member.client() {
			// As istiod does with a remote cluster that does not sync in
			// time: the mesh is served without it until it does.
			log.Warningf("source %s: not synced after %s, serving the other clusters without it until it is", s.Name(), s.StartupTimeout)
			sink.Synced()
			break
		}
		log.Warningf("source %s: not synced after %s, serving SERVFAIL until it is", s.Name(), s.StartupTimeout)
	}
	return nil
}

// newWatch lists and watches one kind in one namespace. The state is its
// only cache: each change goes from the queue straight to apply, and the
// queue's known objects are the state's, so that a relist finds what was
// deleted meanwhile. An informer would keep a second map of the cluster's
// objects in its store, and a buffer of notifications as large as the
// initial list.
func newWatch(lw cache.ListerWatcher, obj runtime.Object, transform cache.TransformFunc, known cache.KeyListerGetter,
	apply func(key string, obj any)) *kindWatch {
	// RealFIFO, as informers use: a DeltaFIFO keeps a map as large as the
	// initial list for good.
	queue := cache.NewRealFIFOWithOptions(cache.RealFIFOOptions{KnownObjects: known, Transformer: reusing(transform, known)})
	process := func(item any, _ bool) error {
		d := item.(cache.Deltas).Newest() // a RealFIFO passes one change at a time
		key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(d.Object)
		if err != nil {
			return nil // not an object of the API: nothing to key it by
		}
		if d.Type == cache.Deleted {
			apply(key, nil)
			return nil
		}
		// A relist gives every object again: those the state has at the
		// same resource version change nothing.
		if old, ok, _ := known.GetByKey(key); ok && sameVersion(old, d.Object) {
			return nil
		}
		apply(key, d.Object)
		return nil
	}
	backoff := retryBackoff
	return &kindWatch{queue: queue, process: process,
		reflector: cache.NewReflectorWithOptions(lw, obj, queue, cache.ReflectorOptions{Backoff: &backoff})}
}

// retryBackoff is how a watch retries a failed list or watch: 0.5 s, doubling
// up to 4 s, jittered. client-go's default doubles up to 30 s, so a source
// would notice an API server that is back up to 30 s late; a failed request
// to an API server that is down costs it nothing.
var retryBackoff = wait.Backoff{Duration: 500 * time.Millisecond, Factor: 2, Jitter: 0.5, Steps: math.MaxInt32, Cap: 4 * time.Second}

// kindWatch runs one kind's reflector and feeds its queue's changes to the
// state, as client-go's controller (cache.New) does, with retryBackoff.
type kindWatch struct {
	reflector *cache.Reflector
	queue     *cache.RealFIFO
	process   cache.PopProcessFunc
}

// RunWithContext lists, watches and applies until ctx is done.
func (k *kindWatch) RunWithContext(ctx context.Context) {
	go func() {
		<-ctx.Done()
		k.queue.Close()
	}()
	go k.reflector.RunWithContext(ctx)
	for {
		if _, err := k.queue.Pop(k.process); errors.Is(err, cache.ErrFIFOClosed) {
			return
		}
	}
}

// HasSynced reports whether the initial list has been applied.
func (k *kindWatch) HasSynced() bool { return k.queue.HasSynced() }

// reusing wraps transform so that an object the state holds at the same
// resource version is passed on as the state's own copy. On a relist,
// client-go keeps the whole new list until its end, beside the state: what
// did not change is then held once, not twice.
func reusing(transform cache.TransformFunc, known cache.KeyListerGetter) cache.TransformFunc {
	return func(obj any) (any, error) {
		if m, ok := obj.(metav1.Object); ok && m.GetResourceVersion() != "" {
			if old, ok, _ := known.GetByKey(m.GetNamespace() + "/" + m.GetName()); ok && sameVersion(old, obj) {
				return old, nil
			}
		}
		return transform(obj)
	}
}

func sameVersion(a, b any) bool {
	x, ok1 := a.(metav1.Object)
	y, ok2 := b.(metav1.Object)
	return ok1 && ok2 && x.GetResourceVersion() == y.GetResourceVersion()
}

// listWatch lists and watches one kind through a typed client, reports a
// failed list or watch to failed, and tells the reflector whether client
// can stream watch lists (the fake clientsets cannot).
func listWatch[L runtime.Object](client any, tweak func(*metav1.ListOptions),
	list func(context.Context, metav1.ListOptions) (L, error),
	watchFn func(context.Context, metav1.ListOptions) (watch.Interface, error), failed func(error)) cache.ListerWatcher {
	report := func(ctx context.Context, err error) {
		if err != nil && ctx.Err() == nil {
			failed(err)
		}
	}
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			tweak(&o)
			l, err := list(ctx, o)
			if err != nil {
				report(ctx, err)
				return nil, err
			}
			return l, nil
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			tweak(&o)
			w, err := watchFn(ctx, o)
			report(ctx, err)
			return w, err
		},
	}
	return cache.ToListWatcherWithWatchListSemantics(lw, client)
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

// The watches hand over objects their transform already converted (see
// slim.go); nil is a deletion.

func (w *watcher) service(key string, obj any) {
	ns, name, _ := cache.SplitMetaNamespaceKey(key)
	w.state.setService(ns, name, converted[service](w, "Service", key, obj))
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

// failed returns what marks the source down on a failed list or watch of
// kind (a refused list, a forbidden one...). A closed or expired watch is
// routine: the reflector resumes or relists by itself.
func (w *watcher) failed(kind string) func(error) {
	return func(err error) {
		if errors.Is(err, io.EOF) || apierrors.IsResourceExpired(err) || apierrors.IsGone(err) {
			return
		}
		w.setUp(false, fmt.Errorf("%s: %w", kind, err))
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
