package table

import (
	"hash/maphash"
	"slices"
	"strings"
	"sync/atomic"
)

// recordMap maps served names to Records, the map every query reads. It has
// the shards of a shardMap, but a shard is a flat open-addressing array of
// (hash, *Record) instead of a Go map: a read hashes the name once, probes
// 16-byte slots and compares the name with the Record's own, which the caller
// reads next anyway. A Go map costs a pointer hop per level (map, directory,
// table, group) and the key's bytes besides, each a cache miss when the table
// is larger than the caches. Only one writer may use it at a time.
type recordMap struct {
	seed   maphash.Seed
	shards [shardCount]atomic.Pointer[recordShard]
	w      recordBatch
}

// recordShard is linear probing: the home slot is taken from the hash bits
// above the shard bits, and a hash of 0 marks an empty slot. It is never
// changed once published.
type recordShard struct {
	mask  uint64
	n     int
	slots []recordSlot
}

type recordSlot struct {
	hash uint64
	rec  *Record
}

func newRecordMap() *recordMap { return &recordMap{seed: maphash.MakeSeed()} }

// recordKey is the name r is found by: its host, or for a wildcard
// "*.suffix" the suffix.
func recordKey(r *Record) string {
	host := r.Host()
	if suffix, ok := strings.CutPrefix(host, "*."); ok {
		return suffix
	}
	return host
}

func (m *recordMap) hash(k string) uint64 {
	if h := maphash.String(m.seed, k); h != 0 {
		return h
	}
	return 1 // 0 marks an empty slot
}

func (m *recordMap) get(k string) (*Record, bool) {
	h := m.hash(k)
	if s := m.shards[h%shardCount].Load(); s != nil {
		if i := s.index(h, k); i >= 0 {
			return s.slots[i].rec, true
		}
	}
	return nil, false
}

// all calls f for every record; the writer uses it, readers never need to.
func (m *recordMap) all(f func(*Record)) {
	for i := range m.shards {
		if s := m.shards[i].Load(); s != nil {
			for _, e := range s.slots {
				if e.rec != nil {
					f(e.rec)
				}
			}
		}
	}
}

// recordShardSize is the slot count for n records: a power of two, at most
// two thirds full, so that a probe for a missing name ends after a few slots.
func recordShardSize(n int) int {
	size := 4
	for size*2 < n*3 {
		size *= 2
	}
	return size
}

func newRecordShard(n int) *recordShard {
	size := recordShardSize(n)
	return &recordShard{mask: uint64(size - 1), slots: make([]recordSlot, size)}
}

func (s *recordShard) home(h uint64) uint64 { return (h >> shardBits) & s.mask }

// index returns the slot of k, or -1.
func (s *recordShard) index(h uint64, k string) int {
	for i := s.home(h); ; i = (i + 1) & s.mask {
		e := &s.slots[i]
		if e.hash == h && recordKey(e.rec) == k {
			return int(i)
		}
		if e.hash == 0 {
			return -1
		}
	}
}

// set inserts r under hash h, or replaces the record with the same key. s
// must be private to the writer and have room.
func (s *recordShard) set(h uint64, r *Record) {
	k := recordKey(r)
	for i := s.home(h); ; i = (i + 1) & s.mask {
		e := &s.slots[i]
		if e.hash == 0 {
			*e = recordSlot{hash: h, rec: r}
			s.n++
			return
		}
		if e.hash == h && recordKey(e.rec) == k {
			e.rec = r
			return
		}
	}
}

// del empties slot i and moves later records of its probe run back, so that
// every record stays reachable from its home slot without tombstones.
func (s *recordShard) del(i uint64) {
	for j := i; ; {
		j = (j + 1) & s.mask
		e := &s.slots[j]
		if e.hash == 0 {
			break
		}
		// e stays unless its home is cyclically outside (i, j].
		if h := s.home(e.hash); (j > i && (h <= i || h > j)) || (j < i && h <= i && h > j) {
			s.slots[i] = *e
			i = j
		}
	}
	s.slots[i] = recordSlot{}
	s.n--
}

// resized returns a copy of s with room for more records than it has.
func (s *recordShard) resized(more int) *recordShard {
	r := newRecordShard(s.n + more)
	for _, e := range s.slots {
		if e.rec != nil {
			r.set(e.hash, e.rec)
		}
	}
	return r
}

// recordBatch collects changes to a recordMap like batch does for a
// shardMap: each touched shard is copied once, changed while private, and
// published by commit.
type recordBatch struct {
	m       *recordMap
	dirty   []*recordShard // by shard; nil until touched
	touched []uint32
	hint    int // initial size of a shard made from nothing
}

func (m *recordMap) begin() *recordBatch {
	if m.w.dirty == nil {
		m.w = recordBatch{m: m, dirty: make([]*recordShard, shardCount)}
	}
	return &m.w
}

func (b *recordBatch) private(i uint32) *recordShard {
	d := b.dirty[i]
	if d == nil {
		if s := b.m.shards[i].Load(); s != nil {
			d = &recordShard{mask: s.mask, n: s.n, slots: slices.Clone(s.slots)}
		} else {
			d = newRecordShard(b.hint)
		}
		b.dirty[i] = d
		b.touched = append(b.touched, i)
	}
	return d
}

// current is the shard as this batch sees it.
func (b *recordBatch) current(i uint32) *recordShard {
	if d := b.dirty[i]; d != nil {
		return d
	}
	return b.m.shards[i].Load()
}

func (b *recordBatch) get(k string) (*Record, bool) {
	h := b.m.hash(k)
	if s := b.current(uint32(h % shardCount)); s != nil {
		if i := s.index(h, k); i >= 0 {
			return s.slots[i].rec, true
		}
	}
	return nil, false
}

// set makes r the record of k, which must be recordKey(r).
func (b *recordBatch) set(k string, r *Record) {
	h := b.m.hash(k)
	i := uint32(h % shardCount)
	d := b.private(i)
	if recordShardSize(d.n+1) > len(d.slots) {
		d = d.resized(1)
		b.dirty[i] = d
	}
	d.set(h, r)
}

func (b *recordBatch) del(k string) {
	h := b.m.hash(k)
	i := uint32(h % shardCount)
	if s := b.current(i); s == nil || s.index(h, k) < 0 {
		return
	}
	d := b.private(i)
	d.del(uint64(d.index(h, k)))
}

func (b *recordBatch) commit() {
	for _, i := range b.touched {
		d := b.dirty[i]
		b.dirty[i] = nil
		switch {
		case d.n == 0:
			b.m.shards[i].Store(nil)
		case len(d.slots) > 2*recordShardSize(d.n):
			// Shrink a shard that deletes left mostly empty.
			b.m.shards[i].Store(d.resized(0))
		default:
			b.m.shards[i].Store(d)
		}
	}
	b.touched = b.touched[:0]
	b.hint = 0
}
