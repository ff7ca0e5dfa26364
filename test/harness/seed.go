package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/protobuf"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes/scheme"
)

const (
	seedBatch   = 100 // keys per etcd transaction; etcd allows 128 operations
	seedWorkers = 4
	seedTimeout = 2 * time.Minute
	// ipAllocator is the managed-by label value of the API server's
	// ClusterIP allocator (ipallocator.ControllerName).
	ipAllocator = "ipallocator.k8s.io"
)

// SeedServices writes ClusterIP Services straight into etcd, as
// kube-apiserver stores them, together with the IPAddress objects its
// ClusterIP allocator would have created, and returns once the API server
// serves them all, so watchers can start right away.
//
// It is for the bulk setup of benchmarks only; tests of behaviour create
// objects through the API. Creating Services through the API is quadratic
// in kube-apiserver 1.36: every ClusterIP allocation counts all IPAddress
// objects twice (ipallocator.(*Allocator).Used, for its metrics; 79% of the
// API server's CPU in a profile of a bulk creation). At 10k Services a
// create costs about 20 ms of API server CPU; 100k would take about 3 hours.
//
// Every Service needs an explicit, new ClusterIP in one of the API server's
// ServiceCIDRs and must not exist yet; its namespace must. The API server's
// own answer gives the stored form: the first Service of each shape (the
// Service without its name, namespace and IP values) is created with dry
// run, and the answer, with its defaults and managedFields, is the
// template of every Service of that shape. Nothing else may create
// Services or IPAddresses meanwhile. After an error, what was written
// stays.
func (cp *ControlPlane) SeedServices(ctx context.Context, svcs []*corev1.Service) error {
	cidrs, err := cp.Client.NetworkingV1().ServiceCIDRs().List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("seed: list ServiceCIDRs: %w", err)
	}
	var prefixes []netip.Prefix
	for _, c := range cidrs.Items {
		for _, s := range c.Spec.CIDRs {
			prefixes = append(prefixes, netip.MustParsePrefix(s))
		}
	}

	now := metav1.NewTime(time.Now().Truncate(time.Second)) // protobuf keeps whole seconds
	templates := map[string]*corev1.Service{}
	perNS := map[string]int64{}
	seen := map[string]bool{}
	var services, addresses []seedObject
	for _, svc := range svcs {
		id := svc.Namespace + "/" + svc.Name
		if errs := validation.IsDNS1035Label(svc.Name); len(errs) > 0 || svc.Namespace == "" {
			return fmt.Errorf("seed: service %q: a name and a namespace are needed: %v", id, errs)
		}
		if t := svc.Spec.Type; t != "" && t != corev1.ServiceTypeClusterIP {
			return fmt.Errorf("seed: service %s: type %s; only ClusterIP Services can be seeded", id, t)
		}
		ips := svc.Spec.ClusterIPs
		if len(ips) == 0 {
			ips = []string{svc.Spec.ClusterIP}
		}
		if ips[0] != svc.Spec.ClusterIP {
			return fmt.Errorf("seed: service %s: clusterIP %q is not clusterIPs[0] %q", id, svc.Spec.ClusterIP, ips[0])
		}
		for _, ip := range ips {
			addr, err := netip.ParseAddr(ip)
			if err != nil || addr.String() != ip {
				return fmt.Errorf("seed: service %s: clusterIP %q is not an explicit IP in canonical form", id, ip)
			}
			if !contains(prefixes, addr) {
				return fmt.Errorf("seed: service %s: clusterIP %s is in no ServiceCIDR of the API server", id, ip)
			}
			if seen[ip] {
				return fmt.Errorf("seed: service %s: clusterIP %s is used twice", id, ip)
			}
			seen[ip] = true
		}
		if _, ok := perNS[svc.Namespace]; !ok {
			if _, err := cp.Client.CoreV1().Namespaces().Get(ctx, svc.Namespace, metav1.GetOptions{}); err != nil {
				return fmt.Errorf("seed: service %s: %w", id, err)
			}
			perNS[svc.Namespace] = 0
		}
		perNS[svc.Namespace]++

		key, err := shape(svc)
		if err != nil {
			return fmt.Errorf("seed: service %s: %w", id, err)
		}
		tmpl := templates[key]
		if tmpl == nil {
			tmpl, err = cp.Client.CoreV1().Services(svc.Namespace).Create(ctx, svc, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			if err != nil {
				return fmt.Errorf("seed: service %s: dry-run create: %w", id, err)
			}
			templates[key] = tmpl
		}
		s := tmpl.DeepCopy()
		s.TypeMeta = metav1.TypeMeta{APIVersion: "v1", Kind: "Service"}
		s.Namespace, s.Name, s.UID, s.CreationTimestamp, s.ResourceVersion = svc.Namespace, svc.Name, uuid.NewUUID(), now, ""
		for i := range s.ManagedFields {
			s.ManagedFields[i].Time = &now
		}
		s.Spec.ClusterIP, s.Spec.ClusterIPs = ips[0], append([]string(nil), ips...)
		services = append(services, seedObject{"/registry/services/specs/" + svc.Namespace + "/" + svc.Name, s})
		for _, ip := range ips {
			addresses = append(addresses, seedObject{"/registry/ipaddresses/" + ip, ipAddress(ip, svc, now)})
		}
	}

	etcd, err := clientv3.New(clientv3.Config{Endpoints: []string{cp.etcdURL}, DialTimeout: 10 * time.Second})
	if err != nil {
		return fmt.Errorf("seed: etcd client: %w", err)
	}
	defer etcd.Close()

	// The IPAddresses first, served before any Service is written, so the
	// API server's ClusterIP repair controller never sees a Service whose
	// IP it does not know (it would report it not allocated).
	countIPs := func(ctx context.Context) (int64, error) {
		l, err := cp.Client.NetworkingV1().IPAddresses().List(ctx, metav1.ListOptions{Limit: 1})
		if err != nil {
			return 0, err
		}
		return count(len(l.Items), l.ListMeta), nil
	}
	before, err := countIPs(ctx)
	if err != nil {
		return fmt.Errorf("seed: count IPAddresses: %w", err)
	}
	// A batch at a time: a burst of thousands of events makes the API
	// server's watch cache drop the watchers that fall behind, the repair
	// controller's informer among them, which then misses IPAddresses until
	// it lists again.
	for done := 0; done < len(addresses); done += seedBatch {
		batch := addresses[done:min(done+seedBatch, len(addresses))]
		if err := putNew(ctx, etcd, batch, 1); err != nil {
			return fmt.Errorf("seed: write IPAddresses: %w", err)
		}
		if err := waitCount(ctx, "IPAddresses", before+int64(done+len(batch)), countIPs); err != nil {
			return err
		}
	}

	countSvcs := map[string]func(context.Context) (int64, error){}
	want := map[string]int64{}
	for ns, n := range perNS {
		countSvcs[ns] = func(ctx context.Context) (int64, error) {
			l, err := cp.Client.CoreV1().Services(ns).List(ctx, metav1.ListOptions{Limit: 1})
			if err != nil {
				return 0, err
			}
			return count(len(l.Items), l.ListMeta), nil
		}
		had, err := countSvcs[ns](ctx)
		if err != nil {
			return fmt.Errorf("seed: count services in %s: %w", ns, err)
		}
		want[ns] = had + n
	}
	if err := putNew(ctx, etcd, services, seedWorkers); err != nil {
		return fmt.Errorf("seed: write services: %w", err)
	}
	for ns, f := range countSvcs {
		if err := waitCount(ctx, "services in "+ns, want[ns], f); err != nil {
			return err
		}
	}
	return nil
}

// seedObject is an object and its etcd key.
type seedObject struct {
	key string
	obj runtime.Object
}

// shape is svc without its name, namespace and IP values (their families
// stay): Services of one shape are stored alike but for those.
func shape(svc *corev1.Service) (string, error) {
	s := svc.DeepCopy()
	s.Name, s.Namespace = "", ""
	s.Spec.ClusterIP = family(s.Spec.ClusterIP)
	for i, ip := range s.Spec.ClusterIPs {
		s.Spec.ClusterIPs[i] = family(ip)
	}
	data, err := json.Marshal(s)
	return string(data), err
}

func family(ip string) string {
	if netip.MustParseAddr(ip).Is4() {
		return string(corev1.IPv4Protocol)
	}
	return string(corev1.IPv6Protocol)
}

func contains(prefixes []netip.Prefix, addr netip.Addr) bool {
	for _, p := range prefixes {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// ipAddress is the IPAddress object the API server's allocator creates for
// a ClusterIP of svc (ipallocator.go, createIPAddress); its repair
// controller checks the labels and the parentRef.
func ipAddress(ip string, svc *corev1.Service, now metav1.Time) *networkingv1.IPAddress {
	return &networkingv1.IPAddress{
		TypeMeta: metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "IPAddress"},
		ObjectMeta: metav1.ObjectMeta{
			Name:              ip,
			UID:               uuid.NewUUID(),
			CreationTimestamp: now,
			Labels: map[string]string{
				networkingv1.LabelIPAddressFamily: family(ip),
				networkingv1.LabelManagedBy:       ipAllocator,
			},
		},
		Spec: networkingv1.IPAddressSpec{
			ParentRef: &networkingv1.ParentReference{Group: "", Resource: "services", Namespace: svc.Namespace, Name: svc.Name},
		},
	}
}

// putNew writes objs in transactions of seedBatch keys, protobuf-encoded as
// the API server stores them; a transaction fails if one of its keys exists.
func putNew(ctx context.Context, etcd *clientv3.Client, objs []seedObject, workers int) error {
	codec := protobuf.NewSerializer(scheme.Scheme, scheme.Scheme)
	return Parallel((len(objs)+seedBatch-1)/seedBatch, workers, func(b int) error {
		batch := objs[b*seedBatch : min((b+1)*seedBatch, len(objs))]
		var cmps []clientv3.Cmp
		var puts []clientv3.Op
		for _, o := range batch {
			data, err := runtime.Encode(codec, o.obj)
			if err != nil {
				return fmt.Errorf("encode %s: %w", o.key, err)
			}
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(o.key), "=", 0))
			puts = append(puts, clientv3.OpPut(o.key, string(data)))
		}
		resp, err := etcd.Txn(ctx).If(cmps...).Then(puts...).Commit()
		if err != nil {
			return err
		}
		if !resp.Succeeded {
			return fmt.Errorf("one of %s ... %s exists already", batch[0].key, batch[len(batch)-1].key)
		}
		return nil
	})
}

// count is the number of items of a list made with a limit.
func count(items int, meta metav1.ListMeta) int64 {
	n := int64(items)
	if meta.RemainingItemCount != nil {
		n += *meta.RemainingItemCount
	}
	return n
}

// waitCount polls f until it counts at least want objects: a list with
// the default resourceVersion is consistent, so then the API server serves
// all that was written.
func waitCount(ctx context.Context, what string, want int64, f func(context.Context) (int64, error)) error {
	ctx, cancel := context.WithTimeout(ctx, seedTimeout)
	defer cancel()
	for {
		n, err := f(ctx)
		if err == nil && n >= want {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("seed: the API server serves %d of %d %s after %s (last error: %v)", n, want, what, seedTimeout, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
