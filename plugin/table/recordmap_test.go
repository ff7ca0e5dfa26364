package table

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"unsafe"
)

// TestRecordMapMatchesMap drives a recordMap and a Go map with the same
// random sets and deletes, in batches, and compares them after every commit.
// Probe runs wrap around the end of a shard's slots and are cut by deletes;
// shards grow and shrink.
func TestRecordMapMatchesMap(t *testing.T) {
	for _, tc := range []struct {
		name     string
		keys     int // distinct keys drawn from
		batches  int
		perBatch int
	}{
		{"small", 50, 200, 10},
		{"grow and shrink", 3000, 60, 400},
		{"dense", 200_000, 4, 60_000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, 2))
			m := newRecordMap()
			want := map[string]*Record{}
			for round := range tc.batches {
				b := m
				if round == 0 {
					b.hint = tc.perBatch / shardCount
				}
				for range tc.perBatch {
					k := key(rng.IntN(tc.keys))
					// Deletes outnumber sets in odd rounds, so shards shrink.
					if rng.IntN(3) == 0 || (round%2 == 1 && rng.IntN(2) == 0) {
						b.del(k)
						delete(want, k)
					} else {
						r := named(k + ".")
						if rng.IntN(4) == 0 {
							// Wildcards are found by their suffix.
							r = named("*." + k + ".")
						}
						b.set(k, r)
						want[k] = r
					}
					if got, ok := b.pending(k); ok != (want[k] != nil) || got != want[k] {
						t.Fatalf("batch get(%s) = %p, %v before commit, want %p", k, got, ok, want[k])
					}
				}
				b.commit()
				compareRecordMap(t, m, want, tc.keys)
			}
		})
	}
}

func key(i int) string { return fmt.Sprintf("k%d.ns", i) }

// named returns a record of owner without addresses.
func named(owner string) *Record {
	return (&Table{}).newRecord(owner, "", nil)
}

func compareRecordMap(t *testing.T, m *recordMap, want map[string]*Record, keys int) {
	t.Helper()
	for i := range keys {
		k := key(i)
		got, ok := m.get(k)
		w, wok := want[k]
		if got != w || ok != wok {
			t.Fatalf("get(%s) = %p, %v, want %p, %v", k, got, ok, w, wok)
		}
	}
	n := 0
	m.all(func(r *Record) {
		n++
		if want[recordKey(r)] != r {
			t.Fatalf("all: %s is not the record set last", r.owner())
		}
	})
	if n != len(want) {
		t.Fatalf("all: %d entries, want %d", n, len(want))
	}
	for i := range m.shards {
		s := m.shards[i].Load()
		if s == nil {
			continue
		}
		if s.n == 0 || len(s.slots) > 2*recordShardSize(s.n) || len(s.slots) < recordShardSize(s.n) {
			t.Fatalf("shard %d: %d entries in %d slots", i, s.n, len(s.slots))
		}
	}
}

// TestRecordShardDeleteWraps deletes from a probe run that wraps around the
// end of the slots, where moving records back must not move one before its
// home slot.
func TestRecordShardDeleteWraps(t *testing.T) {
	sh := newRecordShard(2) // 4 slots
	// Hashes with homes 3, 3 and 0: the run is slots 3, 0, 1.
	hash := func(home uint64) uint64 { return home<<shardBits | 1 }
	recs := map[uint64]*Record{hash(3): named("a."), hash(3) + 2: named("b."), hash(0): named("c.")}
	for _, h := range []uint64{hash(3), hash(3) + 2, hash(0)} {
		sh.add(h, recs[h])
	}
	is := func(r *Record) func(*Record) bool { return func(e *Record) bool { return e == r } }
	sh.del(uint64(sh.index(hash(3), is(recs[hash(3)]))))
	for h, r := range recs {
		if i := sh.index(h, is(r)); (i >= 0) != (r.owner() != "a.") {
			t.Errorf("after deleting a: index(%s) = %d", r.owner(), i)
		}
	}
	if sh.n != 2 {
		t.Errorf("n = %d, want 2", sh.n)
	}
}

// TestAddrIndexMatchesMap adds and removes owners of a few addresses, many
// owners each, and compares with a Go map of sorted owner lists.
func TestAddrIndexMatchesMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	x := newAddrIndex()
	tb := New(Config{Domain: "cluster.local", TTL: 5})
	addrs := []netip.Addr{ip("10.0.0.1"), ip("10.0.0.2"), ip("fd00::1"), ip("10.0.0.3")}
	want := map[netip.Addr][]string{}
	for round := range 100 {
		for range 20 {
			a := addrs[rng.IntN(len(addrs))]
			owner := fmt.Sprintf("o%d.ns.", rng.IntN(30))
			if i, ok := slices.BinarySearch(want[a], owner); ok {
				x.del(a, owner)
				want[a] = slices.Delete(want[a], i, i+1)
			} else {
				// Each owner's record has the address among others.
				x.add(a, tb.newRecord(owner, "", []netip.Addr{ip("10.9.9.9"), a}))
				want[a] = slices.Insert(want[a], i, owner)
			}
		}
		x.commit()
		for _, a := range addrs {
			if got := x.owners(a, nil); !slices.Equal(got, want[a]) && len(got)+len(want[a]) > 0 {
				t.Fatalf("round %d: owners(%s) = %v, want %v", round, a, got, want[a])
			}
		}
	}
}

// TestAllocShard: a shard has size slots, after it in the same allocation
// up to 128.
func TestAllocShard(t *testing.T) {
	for size := 4; size <= 1024; size *= 2 {
		sh := allocShard(size)
		if len(sh.slots) != size || sh.mask != uint64(size-1) || sh.n != 0 {
			t.Fatalf("size %d: %d slots, mask %d, n %d", size, len(sh.slots), sh.mask, sh.n)
		}
		after := uintptr(unsafe.Pointer(sh)) + unsafe.Sizeof(recordShard{})
		if inline := uintptr(unsafe.Pointer(&sh.slots[0])) == after; inline != (size <= 128) {
			t.Errorf("size %d: slots after the shard %v", size, inline)
		}
	}
}
