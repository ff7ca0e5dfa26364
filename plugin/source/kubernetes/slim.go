package kubernetes

import (
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
)

// The watches' transforms convert API objects as they arrive, so what their
// queues pass on, and what the state keeps, are meshdns's compact structs: a
// cluster's objects are mostly fields DNS never looks at. At 100k Services
// as BenchmarkServiceMemory makes them (one port, one ClusterIP, no labels,
// annotations or managed fields) the API objects take 117.7 MiB and the
// structs 8.4 MiB: 109 MiB less, ten times the source's 10.4 MiB at 100k.
//
//	go test -run '^$' -bench TrickSlimMemory -benchtime 1x ./plugin/source/kubernetes/
//
// The queue only needs a metav1.Object to key a struct by namespace/name,
// and the watch to tell an object listed again (same resource version) from
// a change: each struct carries those three strings, and apiObject answers
// the rest.

// skipped stands for an object that gives no names: err says why it was
// rejected, or is nil for one that is fine but not for DNS (an FQDN slice).
type skipped struct {
	apiObject
	ns, name, version string
	err               error
}

func serviceTransform(domain string) cache.TransformFunc {
	return func(obj any) (any, error) {
		s, ok := obj.(*corev1.Service)
		if !ok {
			return obj, nil // already transformed
		}
		out, err := convertService(s, domain)
		if err != nil {
			return skip(&s.ObjectMeta, err), nil
		}
		return out, nil
	}
}

func endpointSliceTransform(obj any) (any, error) {
	s, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok {
		return obj, nil
	}
	out, err := convertEndpointSlice(s)
	if out == nil {
		return skip(&s.ObjectMeta, err), nil
	}
	return out, nil
}

func serviceEntryTransform(domain string) cache.TransformFunc {
	return func(obj any) (any, error) {
		se, ok := obj.(*networkingv1.ServiceEntry)
		if !ok {
			return obj, nil
		}
		out, err := convertServiceEntry(se, domain)
		if err != nil {
			return skip(&se.ObjectMeta, err), nil
		}
		return out, nil
	}
}

func workloadEntryTransform(obj any) (any, error) {
	if we, ok := obj.(*networkingv1.WorkloadEntry); ok {
		return convertWorkloadEntry(we), nil
	}
	return obj, nil
}

// The queue can key every struct.
var (
	_ metav1.Object = (*service)(nil)
	_ metav1.Object = (*endpointSlice)(nil)
	_ metav1.Object = (*serviceEntry)(nil)
	_ metav1.Object = (*workloadEntry)(nil)
	_ metav1.Object = (*skipped)(nil)
)

func skip(m *metav1.ObjectMeta, err error) *skipped {
	return &skipped{ns: m.Namespace, name: m.Name, version: m.ResourceVersion, err: err}
}

func (s *skipped) GetNamespace() string       { return s.ns }
func (s *skipped) GetName() string            { return s.name }
func (s *skipped) GetResourceVersion() string { return s.version }

func (s *service) GetNamespace() string       { return s.namespace() }
func (s *service) GetName() string            { return s.name() }
func (s *service) GetResourceVersion() string { return s.version() }

func (s *endpointSlice) GetNamespace() string       { return s.ns }
func (s *endpointSlice) GetName() string            { return s.name }
func (s *endpointSlice) GetResourceVersion() string { return s.version }

func (se *serviceEntry) GetNamespace() string       { return se.ns }
func (se *serviceEntry) GetName() string            { return se.name }
func (se *serviceEntry) GetResourceVersion() string { return se.version }

func (we *workloadEntry) GetNamespace() string       { return we.ns }
func (we *workloadEntry) GetName() string            { return we.name }
func (we *workloadEntry) GetResourceVersion() string { return we.version }

// apiObject completes metav1.Object for the cached structs, which define
// GetNamespace, GetName and GetResourceVersion themselves. It has no size;
// nothing reads its fields and setters are no-ops.
type apiObject struct{}

func (apiObject) SetNamespace(string)                           {}
func (apiObject) SetName(string)                                {}
func (apiObject) GetGenerateName() string                       { return "" }
func (apiObject) SetGenerateName(string)                        {}
func (apiObject) GetUID() types.UID                             { return "" }
func (apiObject) SetUID(types.UID)                              {}
func (apiObject) SetResourceVersion(string)                     {}
func (apiObject) GetGeneration() int64                          { return 0 }
func (apiObject) SetGeneration(int64)                           {}
func (apiObject) GetSelfLink() string                           { return "" }
func (apiObject) SetSelfLink(string)                            {}
func (apiObject) GetCreationTimestamp() metav1.Time             { return metav1.Time{} }
func (apiObject) SetCreationTimestamp(metav1.Time)              {}
func (apiObject) GetDeletionTimestamp() *metav1.Time            { return nil }
func (apiObject) SetDeletionTimestamp(*metav1.Time)             {}
func (apiObject) GetDeletionGracePeriodSeconds() *int64         { return nil }
func (apiObject) SetDeletionGracePeriodSeconds(*int64)          {}
func (apiObject) GetLabels() map[string]string                  { return nil }
func (apiObject) SetLabels(map[string]string)                   {}
func (apiObject) GetAnnotations() map[string]string             { return nil }
func (apiObject) SetAnnotations(map[string]string)              {}
func (apiObject) GetFinalizers() []string                       { return nil }
func (apiObject) SetFinalizers([]string)                        {}
func (apiObject) GetOwnerReferences() []metav1.OwnerReference   { return nil }
func (apiObject) SetOwnerReferences([]metav1.OwnerReference)    {}
func (apiObject) GetManagedFields() []metav1.ManagedFieldsEntry { return nil }
func (apiObject) SetManagedFields([]metav1.ManagedFieldsEntry)  {}
