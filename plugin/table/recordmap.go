package table

import (
	"hash/maphash"
	"math/bits"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
)

// The indexes every query reads, names and addresses to Records, have the
// shards of a shardMap, but a shard is a flat open-addressing array of
// (hash, *Record) instead of a Go map, and the key is not stored: it is
// checked against the Record, which the caller reads next anyway. A read
// hashes the key once and probes 16-byte slots, where a Go map costs a pointer
// hop per level (map, directory, table, group).
//
// go test -run NONE -bench RecordIndex ./plugin/table/, against a shardMap
// of Go maps (a []*Record per address): for 100k records, 1.2 MiB less for
// the names and 5.9 MiB less for the addresses (7 % and 33 % of the table at
// 100k, 17.9 MiB in BenchmarkLoad/100k); per read of the names, 14 ns less
// for a hit (33 % of BenchmarkLookup/hit, 42 ns), 13 ns less for a miss (7 %
// of BenchmarkLookup/miss, 200 ns) and 22 to 118 ns less for a hit on a
// spread of names (3 to 19 % of BenchmarkLookup/hit_spread in the same runs).

// recordMap finds the served Record of a name: a host, or for a wildcard
// "*.suffix" the suffix (recordKey).
type recordMap struct {
	seed maphash.Seed
	recordShards
}

// addrIndex finds the Records that own an address, for PTR: a host's
// addresses, or a headless service's endpoint names. An address may have
// several owners.
type addrIndex struct {
	seed maphash.Seed
	recordShards
}

func newRecordMap() *recordMap { return &recordMap{seed: maphash.MakeSeed()} }
func newAddrIndex() *addrIndex { return &addrIndex{seed: maphash.MakeSeed()} }

// recordKey is the name r is found by in a recordMap.
func recordKey(r *Record) string {
	host := r.Host()
	if suffix, ok := strings.CutPrefix(host, "*."); ok {
		return suffix
	}
	return host
}

func (m *recordMap) hash(k string) uint64 { return nonZero(maphash.String(m.seed, k)) }

func (m *recordMap) get(k string) (*Record, bool) {
	h := m.hash(k)
	r := m.shards[h%shardCount].Load().find(h, func(r *Record) bool { return recordKey(r) == k })
	return r, r != nil
}

// pending is get as the writer sees it, with its changes not yet committed.
func (m *recordMap) pending(k string) (*Record, bool) {
	h := m.hash(k)
	r := m.current(uint32(h%shardCount)).find(h, func(r *Record) bool { return recordKey(r) == k })
	return r, r != nil
}

// set makes r, whose recordKey is k, the record of k.
func (m *recordMap) set(k string, r *Record) {
	m.put(m.hash(k), r, func(e *Record) bool { return recordKey(e) == k })
}

func (m *recordMap) del(k string) {
	m.remove(m.hash(k), func(r *Record) bool { return recordKey(r) == k })
}

func (x *addrIndex) hash(a netip.Addr) uint64 {
	b := a.As16()
	return nonZero(maphash.Bytes(x.seed, b[:]))
}

// owners appends the names of a's owners, sorted.
func (x *addrIndex) owners(a netip.Addr, names []string) []string {
	n, h := len(names), x.hash(a)
	sh := x.shards[h%shardCount].Load()
	if sh == nil {
		return names
	}
	for i := sh.home(h); sh.slots[i].hash != 0; i = (i + 1) & sh.mask {
		if e := sh.slots[i]; e.hash == h && e.rec.hasAddr(a) {
			names = append(names, e.rec.owner())
		}
	}
	slices.Sort(names[n:])
	return names[:n+len(slices.Compact(names[n:]))]
}

// add makes r an owner of a.
func (x *addrIndex) add(a netip.Addr, r *Record) { x.put(x.hash(a), r, nil) }

// del removes the owner named owner from a.
func (x *addrIndex) del(a netip.Addr, owner string) {
	x.remove(x.hash(a), func(r *Record) bool { return r.owner() == owner && r.hasAddr(a) })
}

func nonZero(h uint64) uint64 {
	if h == 0 {
		return 1 // 0 marks an empty slot
	}
	return h
}

// recordShards are the published shards and, for the one writer, the
// private copies of the shards a batch touched; commit publishes them.
type recordShards struct {
	shards  [shardCount]atomic.Pointer[recordShard]
	dirty   []*recordShard // by shard; nil until touched
	touched []uint32
	hint    int // initial size of a shard made from nothing
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

// current is shard i as the writer sees it: its private copy, or the
// published shard. Readers load published shards only.
func (s *recordShards) current(i uint32) *recordShard {
	if s.dirty != nil {
		if d := s.dirty[i]; d != nil {
			return d
		}
	}
	return s.shards[i].Load()
}

// all calls f for every record; the writer uses it, readers never need to.
func (s *recordShards) all(f func(*Record)) {
	for i := range s.shards {
		if sh := s.shards[i].Load(); sh != nil {
			for _, e := range sh.slots {
				if e.rec != nil {
					f(e.rec)
				}
			}
		}
	}
}

// put replaces the record with hash h that same accepts by r, or adds r
// (always, when same is nil).
func (s *recordShards) put(h uint64, r *Record, same func(*Record) bool) {
	i := uint32(h % shardCount)
	d := s.private(i)
	if same != nil {
		if j := d.index(h, same); j >= 0 {
			d.slots[j].rec = r
			return
		}
	}
	if recordShardSize(d.n+1) > len(d.slots) {
		d = d.resized(1)
		s.dirty[i] = d
	}
	d.add(h, r)
}

// remove removes the first record with hash h that match accepts.
func (s *recordShards) remove(h uint64, match func(*Record) bool) {
	i := uint32(h % shardCount)
	if sh := s.current(i); sh == nil || sh.index(h, match) < 0 {
		return
	}
	d := s.private(i)
	d.del(uint64(d.index(h, match)))
}

func (s *recordShards) private(i uint32) *recordShard {
	if s.dirty == nil {
		s.dirty = make([]*recordShard, shardCount)
	}
	d := s.dirty[i]
	if d == nil {
		if sh := s.shards[i].Load(); sh != nil {
			d = allocShard(len(sh.slots))
			d.n = sh.n
			copy(d.slots, sh.slots)
		} else {
			d = newRecordShard(s.hint)
		}
		s.dirty[i] = d
		s.touched = append(s.touched, i)
	}
	return d
}

func (s *recordShards) commit() {
	for _, i := range s.touched {
		d := s.dirty[i]
		s.dirty[i] = nil
		switch {
		case d.n == 0:
			s.shards[i].Store(nil)
		case len(d.slots) > 2*recordShardSize(d.n):
			// Shrink a shard that deletes left mostly empty.
			s.shards[i].Store(d.resized(0))
		default:
			s.shards[i].Store(d)
		}
	}
	s.touched = s.touched[:0]
	s.hint = 0
}

// recordShardSize is the slot count for n records: a power of two, at most
// three quarters full. Slots are 16 bytes, four to a cache line, so a probe
// for a missing key ends within a line or two.
func recordShardSize(n int) int {
	size := 4
	for size*3 < n*4 {
		size *= 2
	}
	return size
}

func newRecordShard(n int) *recordShard { return allocShard(recordShardSize(n)) }

// shardAllocs[i] makes a shard of 4<<i slots, the slots after it (withTail).
//
// go test -run NONE -bench ShardTail ./plugin/table/: a full GC of a table of
// 100k services takes 11 to 22 % less time than with the slots apart
// (medians of three runs of -count 6); the heap (0.02 MiB less per index of
// 100k records, 0.1 % of the table) and the time of a lookup (within 3 %) are
// the same either way.
var shardAllocs = [...]func() (*recordShard, []recordSlot){
	newWithTail[recordShard, recordSlot, [4]recordSlot], newWithTail[recordShard, recordSlot, [8]recordSlot],
	newWithTail[recordShard, recordSlot, [16]recordSlot], newWithTail[recordShard, recordSlot, [32]recordSlot],
	newWithTail[recordShard, recordSlot, [64]recordSlot], newWithTail[recordShard, recordSlot, [128]recordSlot],
}

// allocShard returns an empty shard of size slots, a power of two from 4;
// its slots follow it when there are at most 128.
func allocShard(size int) *recordShard {
	var sh *recordShard
	if i := bits.TrailingZeros(uint(size)) - 2; i < len(shardAllocs) {
		var slots []recordSlot
		sh, slots = shardAllocs[i]()
		sh.slots = slots
	} else {
		sh = &recordShard{slots: make([]recordSlot, size)}
	}
	sh.mask = uint64(size - 1)
	return sh
}

func (sh *recordShard) home(h uint64) uint64 { return (h >> shardBits) & sh.mask }

// index returns the slot of the first record with hash h that match
// accepts, or -1.
func (sh *recordShard) index(h uint64, match func(*Record) bool) int {
	for i := sh.home(h); ; i = (i + 1) & sh.mask {
		e := &sh.slots[i]
		if e.hash == h && match(e.rec) {
			return int(i)
		}
		if e.hash == 0 {
			return -1
		}
	}
}

// find returns the first record with hash h that match accepts, or nil; sh
// may be nil, an empty shard.
func (sh *recordShard) find(h uint64, match func(*Record) bool) *Record {
	if sh != nil {
		if i := sh.index(h, match); i >= 0 {
			return sh.slots[i].rec
		}
	}
	return nil
}

// add puts r in the first free slot of its probe run. sh must be private to
// the writer and have room.
func (sh *recordShard) add(h uint64, r *Record) {
	i := sh.home(h)
	for sh.slots[i].hash != 0 {
		i = (i + 1) & sh.mask
	}
	sh.slots[i] = recordSlot{hash: h, rec: r}
	sh.n++
}

// del empties slot i and moves later records of its probe run back, so that
// every record stays reachable from its home slot without tombstones.
func (sh *recordShard) del(i uint64) {
	for j := i; ; {
		j = (j + 1) & sh.mask
		e := &sh.slots[j]
		if e.hash == 0 {
			break
		}
		// e stays unless its home is cyclically outside (i, j].
		if h := sh.home(e.hash); (j > i && (h <= i || h > j)) || (j < i && h <= i && h > j) {
			sh.slots[i] = *e
			i = j
		}
	}
	sh.slots[i] = recordSlot{}
	sh.n--
}

// resized returns a copy of sh with room for more records than it has.
func (sh *recordShard) resized(more int) *recordShard {
	r := newRecordShard(sh.n + more)
	for _, e := range sh.slots {
		if e.rec != nil {
			r.add(e.hash, e.rec)
		}
	}
	return r
}
