package table

import (
	"hash/maphash"
	"maps"
	"sync/atomic"
)

// shardCount splits a map into copy-on-write shards: a reader loads one shard
// with a single atomic load and never waits; a writer copies only the shards it
// touches, so one change in a table of 100k names copies a few dozen entries,
// not the table.
const (
	shardBits  = 12
	shardCount = 1 << shardBits
)

// shardMap is a map with lock-free reads and copy-on-write shards. Only one
// writer may use it at a time (the table's mutex); see batch.
type shardMap[K comparable, V any] struct {
	seed   maphash.Seed
	shards [shardCount]atomic.Pointer[map[K]V]
	w      batch[K, V]
}

func newShardMap[K comparable, V any]() *shardMap[K, V] {
	return &shardMap[K, V]{seed: maphash.MakeSeed()}
}

func (m *shardMap[K, V]) shard(k K) uint32 {
	return uint32(maphash.Comparable(m.seed, k) % shardCount)
}

func (m *shardMap[K, V]) get(k K) (V, bool) {
	if p := m.shards[m.shard(k)].Load(); p != nil {
		v, ok := (*p)[k]
		return v, ok
	}
	var zero V
	return zero, false
}

// all calls f for every entry; the writer uses it, readers never need to.
func (m *shardMap[K, V]) all(f func(K, V)) {
	for i := range m.shards {
		if p := m.shards[i].Load(); p != nil {
			for k, v := range *p {
				f(k, v)
			}
		}
	}
}

// batch collects changes to a shardMap. Each touched shard is copied once,
// changed in place while private, and published by commit. A shardMap has one
// batch, reused: writers are serialized by the table.
type batch[K comparable, V any] struct {
	m       *shardMap[K, V]
	dirty   []map[K]V // by shard; nil until touched
	touched []uint32
	hint    int // initial size of a shard made from nothing
}

func (m *shardMap[K, V]) begin() *batch[K, V] {
	if m.w.dirty == nil {
		m.w = batch[K, V]{m: m, dirty: make([]map[K]V, shardCount)}
	}
	return &m.w
}

func (b *batch[K, V]) private(i uint32) map[K]V {
	d := b.dirty[i]
	if d == nil {
		if p := b.m.shards[i].Load(); p != nil {
			d = maps.Clone(*p)
		} else {
			d = make(map[K]V, b.hint)
		}
		b.dirty[i] = d
		b.touched = append(b.touched, i)
	}
	return d
}

func (b *batch[K, V]) get(k K) (V, bool) {
	i := b.m.shard(k)
	if d := b.dirty[i]; d != nil {
		v, ok := d[k]
		return v, ok
	}
	if p := b.m.shards[i].Load(); p != nil {
		v, ok := (*p)[k]
		return v, ok
	}
	var zero V
	return zero, false
}

func (b *batch[K, V]) set(k K, v V) { b.private(b.m.shard(k))[k] = v }

func (b *batch[K, V]) del(k K) {
	if _, ok := b.get(k); ok {
		delete(b.private(b.m.shard(k)), k)
	}
}

func (b *batch[K, V]) commit() {
	for _, i := range b.touched {
		d := b.dirty[i]
		b.dirty[i] = nil
		if len(d) == 0 {
			b.m.shards[i].Store(nil)
			continue
		}
		b.m.shards[i].Store(&d)
	}
	b.touched = b.touched[:0]
	b.hint = 0
}
