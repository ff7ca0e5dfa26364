package kubernetes

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	apinetworking "istio.io/api/networking/v1alpha3"

	"github.com/meshdns/meshdns/plugin/table"
)

// fleet is a synced state fed into a real table: ses ServiceEntries in one
// namespace, each selecting app-<i>, and wes WorkloadEntries spread over
// them round robin, as WorkloadGroup auto-registration makes them.
type fleet struct {
	st       *state
	ses, wes int
}

func newFleet(ses, wes int, autoAllocate bool) *fleet {
	tbl := table.New(table.Config{Domain: "cluster.local", TTL: 5})
	sink := tableSink{tbl, tbl.AddSource("kubernetes:bench")}
	f := &fleet{st: newState(scope{domain: "cluster.local", autoAllocate: autoAllocate}, sink), ses: ses, wes: wes}
	for i := range ses {
		f.st.setServiceEntry(f.seKey(i), f.serviceEntry(i, i))
	}
	for j := range wes {
		f.st.setWorkloadEntry(f.weKey(j), f.workloadEntry(j, j%ses))
	}
	f.st.sync()
	return f
}

func (f *fleet) seKey(i int) string { return fmt.Sprintf("fleet/se-%d", i) }
func (f *fleet) weKey(j int) string { return fmt.Sprintf("fleet/we-%d", j) }

// serviceEntry i selects app-<app>.
func (f *fleet) serviceEntry(i, app int) *serviceEntry {
	return &serviceEntry{ns: "fleet", name: fmt.Sprint("se-", i), version: fmt.Sprint(app),
		created: time.Unix(int64(i), 0), hosts: []string{fmt.Sprintf("svc-%d.fleet.example", i)},
		resolution: apinetworking.ServiceEntry_STATIC, selector: map[string]string{"app": fmt.Sprint("app-", app)},
		ports: []table.Port{{Name: "http", Number: 8080, Protocol: table.TCP}}}
}

// workloadEntry j has app-<app> and a unique address.
func (f *fleet) workloadEntry(j, app int) *workloadEntry {
	return &workloadEntry{ns: "fleet", name: fmt.Sprint("we-", j), version: fmt.Sprint(app),
		labels: map[string]string{"app": fmt.Sprint("app-", app), "version": "v1"},
		addr:   netip.AddrFrom4([4]byte{10, byte(j >> 16), byte(j >> 8), byte(j)})}
}

// BenchmarkWorkloadEntryEvents times one event of an autoscaled VM fleet,
// including the table's update of the hosts it changes:
//
//	go test -run '^$' -bench WorkloadEntryEvents -benchmem ./plugin/source/kubernetes/
func BenchmarkWorkloadEntryEvents(b *testing.B) {
	for _, size := range []struct{ ses, wes int }{{500, 5_000}, {2_000, 20_000}} {
		name := fmt.Sprintf("%dx%d", size.ses, size.wes)
		b.Run(name+"/add", func(b *testing.B) {
			f := newFleet(size.ses, size.wes, false)
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				j := f.wes + i
				f.st.setWorkloadEntry(f.weKey(j), f.workloadEntry(j, j%f.ses))
			}
		})
		b.Run(name+"/label-change", func(b *testing.B) {
			f := newFleet(size.ses, size.wes, false)
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				// we-0 moves between app-0 and app-1.
				f.st.setWorkloadEntry(f.weKey(0), f.workloadEntry(0, (i+1)%2))
			}
		})
		b.Run(name+"/delete", func(b *testing.B) {
			f := newFleet(size.ses, size.wes, false)
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				j := i % f.wes
				f.st.setWorkloadEntry(f.weKey(j), nil)
				b.StopTimer()
				f.st.setWorkloadEntry(f.weKey(j), f.workloadEntry(j, j%f.ses))
				b.StartTimer()
			}
		})
		b.Run(name+"/selector-change", func(b *testing.B) {
			f := newFleet(size.ses, size.wes, false)
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				// se-0 selects app-1, then app-0 again.
				f.st.setServiceEntry(f.seKey(0), f.serviceEntry(0, (i+1)%2))
			}
		})
		// With auto_allocate every ServiceEntry has an address of its own,
		// which a new one must not take from the others.
		b.Run(name+"/serviceentry-add-allocating", func(b *testing.B) {
			f := newFleet(size.ses, size.wes, true)
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				k := f.ses + i
				f.st.setServiceEntry(f.seKey(k), f.serviceEntry(k, k))
			}
		})
	}
}
