package table

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"testing"

	"github.com/miekg/dns"
)

// Run: go test -run NONE -bench . -benchmem ./plugin/table/

func benchTable(b *testing.B, n int) *Table {
	b.Helper()
	tb := New(Config{Domain: "cluster.local", TTL: 30, Search: []string{"*.svc.cluster.local", "svc.cluster.local", "cluster.local"}})
	src := tb.AddSource("bench")
	tb.Apply(src, genEntries(n), nil)
	tb.Apply(src, []Entry{{Host: "*.wild.example.com", Addrs: []netip.Addr{ip("240.240.0.2")}}}, nil)
	return tb
}

func BenchmarkLookup(b *testing.B) {
	tb := benchTable(b, 100_000)
	cases := []struct{ name, q string }{
		{"hit", "svc-51234.ns-512.svc.cluster.local."},
		{"short", "svc-51234.ns-512."},
		{"shortcut", "svc-51234.ns-512.default.svc.cluster.local."},
		{"wildcard", "a.wild.example.com."},
		{"miss", "www.example.org."},
		{"miss_ndots", "www.example.org.default.svc.cluster.local."},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if m := tb.Lookup(c.q); m.Kind == Miss && c.name[:4] != "miss" {
					b.Fatal("miss")
				}
			}
		})
	}
	// Every name in random order: the table does not fit in the caches, as
	// for a server that answers a spread of names.
	var spread []string
	for _, e := range genEntries(100_000) {
		spread = append(spread, e.Host+".")
	}
	rand.New(rand.NewPCG(1, 1)).Shuffle(len(spread), func(i, j int) { spread[i], spread[j] = spread[j], spread[i] })
	b.Run("hit_spread", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		// The answer's bytes are read too, as the server does.
		var sink byte
		for b.Loop() {
			m := tb.Lookup(spread[i])
			if m.Kind != Hit {
				b.Fatal("miss")
			}
			rrs, _ := m.Record.WireAddrs(dns.TypeA)
			sink += rrs[len(rrs)-1]
			if i++; i == len(spread) {
				i = 0
			}
		}
		_ = sink
	})
	b.Run("ptr", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			a, _ := ParseReverse("34.200.96.10.in-addr.arpa.")
			if tb.PTR(a) == nil {
				b.Fatal("no PTR")
			}
		}
	})
}

// BenchmarkLoad loads n services into an empty table in one batch and reports
// the heap the table holds afterwards.
func BenchmarkLoad(b *testing.B) {
	for _, n := range []int{1_000, 10_000, 100_000} {
		b.Run(fmt.Sprintf("%dk", n/1000), func(b *testing.B) {
			entries := genEntries(n)
			var heap uint64
			for b.Loop() {
				var before, after runtime.MemStats
				b.StopTimer()
				runtime.GC()
				runtime.ReadMemStats(&before)
				b.StartTimer()
				tb := New(Config{Domain: "cluster.local", TTL: 30})
				tb.Apply(tb.AddSource("bench"), entries, nil)
				b.StopTimer()
				runtime.GC()
				runtime.ReadMemStats(&after)
				heap = after.HeapAlloc - before.HeapAlloc
				runtime.KeepAlive(tb)
				b.StartTimer()
			}
			b.ReportMetric(float64(heap)/(1<<20), "heap-MiB")
		})
	}
}

// BenchmarkUpdate changes one service's address in a table of 100k services.
func BenchmarkUpdate(b *testing.B) {
	tb := benchTable(b, 100_000)
	src := SourceID(0)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		e := Entry{Host: "svc-777.ns-7.svc.cluster.local", Registry: Kubernetes,
			Addrs: []netip.Addr{netip.AddrFrom4([4]byte{10, 250, byte(i >> 8), byte(i)})},
			Ports: []Port{{Name: "http", Number: 80, Protocol: TCP}}}
		if res := tb.Apply(src, []Entry{e}, nil); res.Changed != 1 {
			b.Fatalf("%+v", res)
		}
	}
}
