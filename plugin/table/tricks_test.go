package table

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"slices"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/miekg/dns"
)

// The benchmarks here weigh each layout or unsafe trick of the package against
// plain Go built from the same 100k entries as BenchmarkLoad/100k, side by
// side. Run:
//
//	go test -run NONE -bench 'RecordLayout|RecordTail|ShardTail|RecordIndex|ShortKey' -count 6 ./plugin/table/
//
// Memory is the heap the built structure holds after a GC, in MiB per 100k
// records; the table holds about 17.9 MiB at 100k (BenchmarkLoad/100k).

const trickN = 100_000

// heldMiB returns the heap, in MiB, that the result of build holds after a GC.
func heldMiB(build func() any) float64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	x := build()
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(x)
	return float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / (1 << 20)
}

// benchHeld reports the heap that build's result holds as MiB/100k.
func benchHeld(b *testing.B, build func() any) {
	var mib float64
	for b.Loop() {
		mib = heldMiB(build)
	}
	b.ReportMetric(mib, "MiB/100k")
}

// trickRecords returns the Records the table builds for genEntries(trickN),
// and the entries.
func trickRecords() ([]*Record, []Entry) {
	tb := New(Config{Domain: "cluster.local", TTL: 30})
	src := tb.AddSource("bench")
	entries := genEntries(trickN)
	recs := make([]*Record, len(entries))
	for i, e := range entries {
		e, _ = Normalize(e)
		entries[i] = e
		recs[i] = tb.build(src, e)
	}
	return recs, entries
}

// bytesApart is a copy of r's bytes in an allocation of their own.
func bytesApart(r *Record) *byte {
	data := make([]byte, int(r.ownerLen)+int(r.wireLen))
	copy(data[copy(data, r.owner()):], r.wire())
	return unsafe.SliceData(data)
}

// apart is a copy of r with its bytes in an allocation of their own.
func apart(r *Record) *Record {
	return &Record{data: bytesApart(r), wireLen: r.wireLen, wireSplit: r.wireSplit,
		ownerLen: r.ownerLen, source: r.source, nports: r.nports, shortName: r.shortName,
		registry: r.registry, extra: r.extra, ports: r.ports}
}

// plainRecord is Record in plain Go: string and slice headers.
type plainRecord struct {
	owner, wire string // one allocation, as Record's data
	wireSplit   uint32
	source      SourceID
	shortName   uint8
	registry    Registry
	extra       *recordExtra
	ports       []Port
	rrs         atomic.Pointer[[]dns.RR]
}

// stringsRecord has the strings of plainRecord and the ports of Record.
type stringsRecord struct {
	owner, wire string
	wireSplit   uint32
	source      SourceID
	nports      uint16
	shortName   uint8
	registry    Registry
	extra       *recordExtra
	ports       *Port
	rrs         atomic.Pointer[[]dns.RR]
}

// portsSliceRecord has the bytes of Record and the ports of plainRecord.
type portsSliceRecord struct {
	data      *byte
	wireLen   uint32
	wireSplit uint32
	ownerLen  uint16
	source    SourceID
	shortName uint8
	registry  Registry
	extra     *recordExtra
	ports     []Port
	rrs       atomic.Pointer[[]dns.RR]
}

// BenchmarkRecordLayout weighs Record's lengths and *byte instead of string
// headers, and *Port and a count instead of a slice header, against the
// plain alternatives. Every variant keeps its bytes in an allocation of their
// own (BenchmarkRecordTail weighs putting them after the Record).
func BenchmarkRecordLayout(b *testing.B) {
	recs, entries := trickRecords()
	b.Logf("sizes: Record %d, portsSlice %d, strings %d, plain %d bytes", unsafe.Sizeof(Record{}),
		unsafe.Sizeof(portsSliceRecord{}), unsafe.Sizeof(stringsRecord{}), unsafe.Sizeof(plainRecord{}))
	benchEach(b, "Record", recs, func(_ int, r *Record) *Record { return apart(r) })
	benchEach(b, "portsSlice", recs, func(i int, r *Record) *portsSliceRecord {
		return &portsSliceRecord{data: bytesApart(r), wireLen: r.wireLen, wireSplit: r.wireSplit,
			ownerLen: r.ownerLen, source: r.source, shortName: r.shortName, registry: r.registry,
			extra: r.extra, ports: entries[i].Ports}
	})
	benchEach(b, "strings", recs, func(_ int, r *Record) *stringsRecord {
		data := r.owner() + r.wire()
		return &stringsRecord{owner: data[:r.ownerLen], wire: data[r.ownerLen:], wireSplit: r.wireSplit,
			source: r.source, nports: r.nports, shortName: r.shortName, registry: r.registry,
			extra: r.extra, ports: r.ports}
	})
	benchEach(b, "plain", recs, func(i int, r *Record) *plainRecord {
		data := r.owner() + r.wire()
		return &plainRecord{owner: data[:r.ownerLen], wire: data[r.ownerLen:], wireSplit: r.wireSplit,
			source: r.source, shortName: r.shortName, registry: r.registry,
			extra: r.extra, ports: entries[i].Ports}
	})
}

// benchEach runs the sub-benchmark name, which reports the heap that mk's
// copies of recs hold.
func benchEach[T any](b *testing.B, name string, recs []*Record, mk func(i int, r *Record) *T) {
	b.Run(name, func(b *testing.B) {
		benchHeld(b, func() any {
			out := make([]*T, len(recs))
			for i, r := range recs {
				out[i] = mk(i, r)
			}
			return out
		})
	})
}

// spreadNames are the hosts of genEntries(trickN) in random order.
func spreadNames(entries []Entry) []string {
	names := make([]string, len(entries))
	for i, e := range entries {
		names[i] = e.Host
	}
	rand.New(rand.NewPCG(1, 1)).Shuffle(len(names), func(i, j int) { names[i], names[j] = names[j], names[i] })
	return names
}

// getter returns a function that looks up the i-th of names (cyclically) in
// m and reads the answer's last byte, as BenchmarkLookup/hit_spread does.
func getter(m *recordMap, names []string) func(i int) byte {
	return func(i int) byte {
		r, ok := m.get(names[i%len(names)])
		if !ok {
			panic("miss")
		}
		rrs, _ := r.WireAddrs(dns.TypeA)
		return rrs[len(rrs)-1]
	}
}

// benchPair times f and g in turns of a thousand calls each, so that what
// else the machine does falls on both alike, and reports the ns per call of
// each, as "<fname>-ns/call" and "<gname>-ns/call". Each turn gives both the
// same arguments; which goes first alternates.
func benchPair(b *testing.B, fname string, f func(int) byte, gname string, g func(int) byte) {
	const turn = 1000
	var t [2]time.Duration
	fs := [2]func(int) byte{f, g}
	var sink byte
	n := 0
	for b.Loop() {
		for k := range 2 {
			k ^= n & 1
			start := time.Now()
			for j := range turn {
				sink += fs[k](n*turn + j)
			}
			t[k] += time.Since(start)
		}
		n++
	}
	_ = sink
	b.ReportMetric(float64(t[0].Nanoseconds())/float64(n*turn), fname+"-ns/call")
	b.ReportMetric(float64(t[1].Nanoseconds())/float64(n*turn), gname+"-ns/call")
	i := 0
	b.ReportMetric(testing.AllocsPerRun(turn, func() { f(i); i++ }), fname+"-allocs/call")
	b.ReportMetric(testing.AllocsPerRun(turn, func() { g(i); i++ }), gname+"-allocs/call")
}

// recordMapOf returns a names index of recs, loaded in one batch as the
// table loads it.
func recordMapOf(recs []*Record) *recordMap {
	m := newRecordMap()
	m.hint = len(recs) / shardCount
	for _, r := range recs {
		m.set(recordKey(r), r)
	}
	m.commit()
	return m
}

// BenchmarkRecordTail weighs a Record with its bytes after it, in one
// allocation, against a Record and its bytes allocated apart: the heap they
// hold, and the time to find a name in the names index and read its answer,
// for 64 names in the caches and for every name in random order.
func BenchmarkRecordTail(b *testing.B) {
	recs, entries := trickRecords()
	apartRecs := make([]*Record, len(recs))
	for i, r := range recs {
		apartRecs[i] = apart(r)
	}
	variants := []struct {
		name string
		recs []*Record
	}{{"tail", recs}, {"apart", apartRecs}}
	for _, v := range variants {
		b.Run("heap/"+v.name, func(b *testing.B) {
			benchHeld(b, func() any {
				tb := New(Config{Domain: "cluster.local", TTL: 30})
				src := tb.AddSource("bench")
				out := make([]*Record, len(entries))
				for i, e := range entries {
					if v.name == "tail" {
						out[i] = tb.build(src, e)
					} else {
						out[i] = apart(tb.build(src, e))
					}
				}
				return out
			})
		})
	}
	spread := spreadNames(entries)
	// The same index with the records apart in place of recs.
	tailMap := recordMapOf(recs)
	apartMap := &recordMap{seed: tailMap.seed}
	apartOf := make(map[*Record]*Record, len(recs))
	for i, r := range recs {
		apartOf[r] = apartRecs[i]
	}
	for i := range tailMap.shards {
		if sh := tailMap.shards[i].Load(); sh != nil {
			c := allocShard(len(sh.slots))
			c.n = sh.n
			for j, e := range sh.slots {
				c.slots[j] = recordSlot{hash: e.hash, rec: apartOf[e.rec]}
			}
			apartMap.shards[i].Store(c)
		}
	}
	for _, names := range []struct {
		name string
		list []string
	}{{"hit", spread[:64]}, {"hit_spread", spread}} {
		b.Run(names.name, func(b *testing.B) {
			benchPair(b, "tail", getter(tailMap, names.list), "apart", getter(apartMap, names.list))
		})
	}
}

// apartShards is a copy of x with each shard's slots in an allocation of
// their own, and the same seed.
func apartShards(x *recordShards) *recordShards {
	c := &recordShards{}
	for i := range x.shards {
		if sh := x.shards[i].Load(); sh != nil {
			c.shards[i].Store(&recordShard{mask: sh.mask, n: sh.n, slots: slices.Clone(sh.slots)})
		}
	}
	return c
}

// tableIndexes are the names index and the address index of recs, as the
// table builds them, with the slots of each shard after it (allocShard) or
// apart.
func tableIndexes(recs []*Record, apart bool) (*recordMap, *addrIndex) {
	m := recordMapOf(recs)
	x := newAddrIndex()
	x.hint = len(recs) / shardCount
	for _, r := range recs {
		for a := range r.addrs {
			x.add(a, r)
		}
	}
	x.commit()
	if apart {
		m = &recordMap{seed: m.seed, recordShards: *apartShards(&m.recordShards)}
		x = &addrIndex{seed: x.seed, recordShards: *apartShards(&x.recordShards)}
	}
	return m, x
}

// BenchmarkShardTail weighs a recordShard with its slots after it, in one
// allocation, against a shard and its slots allocated apart: the heap of a
// names index of 100k records, the time of a full GC of a table of 100k
// services, and the time to find a name, for 64 names in the caches and for
// every name in random order.
func BenchmarkShardTail(b *testing.B) {
	recs, entries := trickRecords()
	for _, apart := range []bool{false, true} {
		name := map[bool]string{false: "tail", true: "apart"}[apart]
		b.Run("heap/"+name, func(b *testing.B) {
			benchHeld(b, func() any { m, _ := tableIndexes(recs, apart); return m })
		})
	}
	// A table loaded as BenchmarkLoad/100k loads it, or the same with the
	// shards of names and ptr copied apart; one is live at a time.
	loaded := func(apart bool) *Table {
		tb := New(Config{Domain: "cluster.local", TTL: 30})
		tb.Apply(tb.AddSource("bench"), entries, nil)
		if apart {
			tb.names.recordShards = *apartShards(&tb.names.recordShards)
			tb.ptr.recordShards = *apartShards(&tb.ptr.recordShards)
		}
		runtime.GC()
		return tb
	}
	// turns times f on each table in turn, as benchPair.
	turns := func(b *testing.B, unit string, calls int, f func(*Table)) {
		var t [2]time.Duration
		n := 0
		for b.Loop() {
			for k := range 2 {
				k ^= n & 1
				tb := loaded(k == 1)
				start := time.Now()
				f(tb)
				t[k] += time.Since(start)
				runtime.KeepAlive(tb)
			}
			n++
		}
		b.ReportMetric(float64(t[0].Nanoseconds())/float64(n*calls), "tail-"+unit)
		b.ReportMetric(float64(t[1].Nanoseconds())/float64(n*calls), "apart-"+unit)
	}
	b.Run("gc", func(b *testing.B) { turns(b, "ns/GC", 1, func(*Table) { runtime.GC() }) })
	spread := spreadNames(entries)
	tailMap, _ := tableIndexes(recs, false)
	apartMap := &recordMap{seed: tailMap.seed, recordShards: *apartShards(&tailMap.recordShards)}
	for _, names := range []struct {
		name string
		list []string
	}{{"hit", spread[:64]}, {"hit_spread", spread}} {
		b.Run(names.name, func(b *testing.B) {
			benchPair(b, "tail", getter(tailMap, names.list), "apart", getter(apartMap, names.list))
		})
	}
}

// BenchmarkRecordIndex weighs the indexes every query reads, recordMap and
// addrIndex with their open-addressing shards, against the package's
// shardMap of Go maps: the heap of each index of 100k records, and the time
// of a hit, a miss and a spread of hits, a PTR lookup.
func BenchmarkRecordIndex(b *testing.B) {
	recs, entries := trickRecords()
	goNames := func() *shardMap[string, *Record] {
		m := newShardMap[string, *Record]()
		w := m.begin()
		w.hint = len(recs) / shardCount
		for _, r := range recs {
			w.set(recordKey(r), r)
		}
		w.commit()
		return m
	}
	goAddrs := func() *shardMap[netip.Addr, []*Record] {
		m := newShardMap[netip.Addr, []*Record]()
		w := m.begin()
		w.hint = len(recs) / shardCount
		for _, r := range recs {
			for a := range r.addrs {
				rs, _ := w.get(a)
				w.set(a, append(rs, r))
			}
		}
		w.commit()
		return m
	}
	addrIndexOf := func() *addrIndex {
		x := newAddrIndex()
		x.hint = len(recs) / shardCount
		for _, r := range recs {
			for a := range r.addrs {
				x.add(a, r)
			}
		}
		x.commit()
		return x
	}
	b.Run("names_heap/recordMap", func(b *testing.B) { benchHeld(b, func() any { return recordMapOf(recs) }) })
	b.Run("names_heap/goMap", func(b *testing.B) { benchHeld(b, func() any { return goNames() }) })
	b.Run("addrs_heap/addrIndex", func(b *testing.B) { benchHeld(b, func() any { return addrIndexOf() }) })
	b.Run("addrs_heap/goMap", func(b *testing.B) { benchHeld(b, func() any { return goAddrs() }) })

	rm, gm := recordMapOf(recs), goNames()
	spread := spreadNames(entries)
	var misses []string
	for i := range 64 {
		misses = append(misses, fmt.Sprintf("www-%d.example.org", i))
	}
	for _, l := range []struct {
		name  string
		names []string
		hit   bool
	}{{"hit", spread[:64], true}, {"miss", misses, false}, {"hit_spread", spread, true}} {
		b.Run(l.name, func(b *testing.B) {
			benchPair(b, "recordMap", func(i int) byte {
				if _, ok := rm.get(l.names[i%len(l.names)]); ok != l.hit {
					panic(l.names[i%len(l.names)])
				}
				return 0
			}, "goMap", func(i int) byte {
				if _, ok := gm.get(l.names[i%len(l.names)]); ok != l.hit {
					panic(l.names[i%len(l.names)])
				}
				return 0
			})
		})
	}
	ai, ga := addrIndexOf(), goAddrs()
	a := netip.MustParseAddr("10.96.200.34")
	var buf []string
	b.Run("ptr", func(b *testing.B) {
		benchPair(b, "addrIndex", func(int) byte {
			buf = ai.owners(a, buf[:0])
			return buf[0][0]
		}, "goMap", func(int) byte {
			buf = buf[:0]
			rs, _ := ga.get(a)
			for _, r := range rs {
				buf = append(buf, r.owner())
			}
			slices.Sort(buf)
			return buf[0][0]
		})
	})
}

// BenchmarkShortKey weighs looking up a short name's host, built in a buffer
// on the stack, through unsafe.String (Table.short) against string(key), which
// copies it to the heap.
func BenchmarkShortKey(b *testing.B) {
	tb := benchTable(b, trickN)
	var names []string
	// Hosts of 34 characters, as "reviews.bookinfo.svc.cluster.local":
	// string(key) copies one of 32 or fewer to the stack.
	for i := range 64 {
		names = append(names, fmt.Sprintf("svc-%d.ns-%d", 10_000+i*1000, 100+i*10))
	}
	plain := func(name string) *Record {
		var buf [256]byte
		key := tb.shortKey(buf[:0], name)
		if key == nil {
			return nil
		}
		r, ok := tb.names.get(string(key))
		if !ok || r.shortName == 0 {
			return nil
		}
		return r
	}
	benchPair(b, "unsafe", func(i int) byte {
		return byte(tb.short(names[i%len(names)]).registry)
	}, "string", func(i int) byte {
		return byte(plain(names[i%len(names)]).registry)
	})
}
