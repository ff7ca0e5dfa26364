package kubernetes

import (
	"fmt"
	"runtime"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/meshdns/meshdns/plugin/source"
	"github.com/meshdns/meshdns/plugin/table"
)

// tableSink feeds a real table, as the meshdns plugin does.
type tableSink struct {
	t  *table.Table
	id table.SourceID
}

func (s tableSink) Replace(es []table.Entry, _ []source.Rejection) { s.t.Replace(s.id, es) }
func (s tableSink) Apply(u []table.Entry, d []string)              { s.t.Apply(s.id, u, d) }
func (s tableSink) Reject(object, reason string, err error)        {}
func (s tableSink) Synced()                                        {}
func (s tableSink) Up(bool)                                        {}

// benchService is a ClusterIP Service as the API server sends it, every
// string its own allocation as after decoding.
func benchService(i int) *corev1.Service {
	ns := fmt.Sprintf("bench-%d", i%100)
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: ns, Name: fmt.Sprintf("svc-%d", i), UID: types.UID(fmt.Sprintf("6f1c4a52-0000-4000-8000-%012d", i)),
			ResourceVersion: fmt.Sprint(1000 + i), CreationTimestamp: metav1.Now(),
		},
		Spec: corev1.ServiceSpec{
			Type:       corev1.ServiceTypeClusterIP,
			ClusterIP:  fmt.Sprintf("10.96.%d.%d", i/250%250, i%250+1),
			ClusterIPs: []string{fmt.Sprintf("10.96.%d.%d", i/250%250, i%250+1)},
			Ports:      []corev1.ServicePort{{Name: fmt.Sprint("http"), Protocol: corev1.ProtocolTCP, Port: 80}},
			Selector:   map[string]string{"app": fmt.Sprintf("svc-%d", i)},
		},
	}
}

func heapBytes() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// loadServices runs n Services through what a watch does with them
// (transform, then the state), then the initial sync into a table. It
// returns the table and what the source keeps.
func loadServices(n int) (*table.Table, any) {
	tbl := table.New(table.Config{Domain: "cluster.local", TTL: 5})
	sink := tableSink{tbl, tbl.AddSource("kubernetes:bench")}
	w := &watcher{name: "bench", sink: sink}
	w.state = newState(scope{domain: "cluster.local"}, sink)
	for i := range n {
		obj, err := serviceTransform("cluster.local")(benchService(i))
		if err != nil {
			panic(err)
		}
		s := obj.(*service)
		w.service(s.namespace()+"/"+s.name(), obj)
	}
	w.state.sync()
	return tbl, w
}

// BenchmarkServiceMemory reports the live heap per Service kept by the
// source (its state) and by the table:
//
//	go test -run '^$' -bench ServiceMemory -benchtime 1x ./plugin/source/kubernetes/
func BenchmarkServiceMemory(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			var source, tbl float64
			for range b.N {
				base := heapBytes()
				t, src := loadServices(n)
				all := heapBytes()
				runtime.KeepAlive(src) // and no further: only the table stays
				onlyTable := heapBytes()
				runtime.KeepAlive(t)
				source = float64(all-onlyTable) / float64(n)
				tbl = float64(onlyTable-base) / float64(n)
			}
			b.ReportMetric(source, "source-B/svc")
			b.ReportMetric(tbl, "table-B/svc")
		})
	}
}
