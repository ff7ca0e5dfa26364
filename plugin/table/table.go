// Package table is meshdns's in-memory name table: entries from several
// sources, merged, with answers precomputed when an entry changes so that a
// lookup is a few lock-free map reads. It does no I/O and knows nothing of
// where entries come from.
package table

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Config is what the table needs to know to derive names.
type Config struct {
	// Domain is the cluster domain, e.g. "cluster.local".
	Domain string
	// Namespace is the client's namespace: it enables bare short names.
	Namespace string
	// Search lists the search domains whose expansions are short-cut, in the
	// order they are tried. A leading "*." stands for any one label.
	Search []string
	// TTL of every record.
	TTL uint32
}

// SourceID identifies a registered source. A lower ID wins when two sources
// have the same host.
type SourceID uint16

// Table is safe for concurrent use: lookups never block, updates are serialized.
type Table struct {
	cfg        Config
	kubeSuffix string // ".svc.<domain>"
	search     []searchDomain

	names *recordMap               // exact hosts, without trailing dot
	wild  *recordMap               // wildcard hosts by the suffix after "*."
	ptr   *addrIndex               // address -> owners
	ents  *shardMap[string, int32] // empty non-terminals -> reference count
	// reverse counts the served addresses under each prefix a reverse name
	// above an address stands for (IPv4 /8, /16, /24; IPv6 every nibble):
	// those names are empty non-terminals.
	reverse *shardMap[netip.Prefix, int32]

	// wildMaxLabels is the most labels of any wildcard suffix ever added (0:
	// none), so a lookup skips suffixes too deep to match.
	wildMaxLabels atomic.Int32
	hasEndpoint   atomic.Int64 // records with endpoint names
	hasCluster    atomic.Int64 // records with endpoint names under a cluster label
	updated       atomic.Int64 // unix seconds of the last change, for the SOA serial

	mu      sync.Mutex // serializes writers
	sources []sourceState
	shadow  map[string][]*Record // contributions that lost to another source
}

type sourceState struct {
	name           string
	entries, names int
}

type searchDomain struct {
	suffix   string // "." + domain (without trailing dot)
	anyLabel bool   // the domain started with "*.": one more label before suffix
}

// New returns an empty table.
func New(cfg Config) *Table {
	cfg.Domain = strings.ToLower(strings.Trim(cfg.Domain, "."))
	cfg.Namespace = strings.ToLower(cfg.Namespace)
	t := &Table{
		cfg:        cfg,
		kubeSuffix: ".svc." + cfg.Domain,
		names:      newRecordMap(),
		wild:       newRecordMap(),
		ptr:        newAddrIndex(),
		ents:       newShardMap[string, int32](),
		reverse:    newShardMap[netip.Prefix, int32](),
		shadow:     map[string][]*Record{},
	}
	for _, s := range cfg.Search {
		s = strings.ToLower(strings.Trim(s, "."))
		sd := searchDomain{suffix: "." + s}
		if rest, ok := strings.CutPrefix(s, "*."); ok {
			sd = searchDomain{suffix: "." + rest, anyLabel: true}
		}
		t.search = append(t.search, sd)
	}
	t.updated.Store(time.Now().Unix())
	return t
}

// Config returns the configuration the table was made with.
func (t *Table) Config() Config { return t.cfg }

// AddSource registers a source. Sources added first win over later ones for the
// same host.
func (t *Table) AddSource(name string) SourceID {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.sources = append(t.sources, sourceState{name: name})
	return SourceID(len(t.sources) - 1)
}

// SourceStats is what one source contributes.
type SourceStats struct {
	Name string
	// Entries is the number of hosts the source has in the table.
	Entries int
	// Names is the number of DNS names answered from the source's entries.
	Names int
}

// Stats returns per-source statistics, indexed by SourceID.
func (t *Table) Stats() []SourceStats {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]SourceStats, len(t.sources))
	for i, s := range t.sources {
		out[i] = SourceStats{Name: s.name, Entries: s.entries, Names: s.names}
	}
	return out
}

// Updated returns the time of the last change to the table.
func (t *Table) Updated() time.Time { return time.Unix(t.updated.Load(), 0) }

// Result says what an update did.
type Result struct {
	Added, Changed, Deleted, Unchanged int
	Rejected                           []Rejection
}

// Rejection is an entry the table refused; the previous entry for its host, if
// any, keeps serving.
type Rejection struct {
	Host   string
	Reason string // metric label, see Reason
	Err    error
}

func (r *Result) reject(host string, err error) {
	r.Rejected = append(r.Rejected, Rejection{Host: host, Reason: Reason(err), Err: err})
}

// Apply upserts and deletes entries of one source. Each entry is checked on
// its own: a bad one is rejected and the rest applied. Readers see each host
// change atomically; they never wait.
func (t *Table) Apply(src SourceID, upserts []Entry, deletes []string) Result {
	t.mu.Lock()
	defer t.mu.Unlock()
	w := t.begin(len(upserts))
	for _, e := range w.orderChains(upserts) {
		w.upsert(src, e)
	}
	for _, h := range deletes {
		h = strings.ToLower(strings.TrimSuffix(h, "."))
		w.remove(src, h)
	}
	w.commit()
	return w.res
}

// Replace makes the source's entries exactly entries: what is missing is
// deleted, what is equal is left alone, so a full push costs only its changes.
func (t *Table) Replace(src SourceID, entries []Entry) Result {
	t.mu.Lock()
	defer t.mu.Unlock()
	old := t.hostsOf(src)
	w := t.begin(len(entries))
	for _, e := range w.orderChains(entries) {
		if h := w.upsert(src, e); h != "" {
			delete(old, h)
		}
	}
	for h := range old {
		w.remove(src, h)
	}
	w.commit()
	return w.res
}

// Entries returns the entries of a source, for snapshots and dumps.
func (t *Table) Entries(src SourceID) []Entry {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []Entry
	t.forSource(src, func(r *Record) { out = append(out, r.Entry()) })
	slices.SortFunc(out, func(a, b Entry) int { return strings.Compare(a.Host, b.Host) })
	return out
}

func (t *Table) forSource(src SourceID, f func(*Record)) {
	each := func(r *Record) {
		if r.source == src {
			f(r)
		}
	}
	t.names.all(each)
	t.wild.all(each)
	for _, rs := range t.shadow {
		for _, r := range rs {
			if r.source == src {
				f(r)
			}
		}
	}
}

func (t *Table) hostsOf(src SourceID) map[string]bool {
	hosts := map[string]bool{}
	t.forSource(src, func(r *Record) { hosts[r.Host()] = true })
	return hosts
}

// writer applies one batch of changes under t.mu.
type writer struct {
	t     *Table
	names *recordMap
	wild  *recordMap
	ptr   *addrIndex
	ents  *batch[string, int32]
	// entDelta collects reference count changes by parent name.
	entDelta map[string]int32
	// reverseDelta collects changes to the counts of reverse by address:
	// a replaced record's addresses are mostly its successor's.
	reverseDelta   map[netip.Addr]int32
	oldPTR, newPTR []ptrPair // scratch for reindexPTR
	res            Result
}

func (t *Table) begin(size int) *writer {
	w := &writer{t: t, names: t.names, wild: t.wild, ptr: t.ptr, ents: t.ents.begin(),
		entDelta: map[string]int32{}, reverseDelta: map[netip.Addr]int32{}}
	// A bulk load fills empty shards: make them the right size at once.
	w.names.hint, w.ptr.hint = size/shardCount, size/shardCount
	return w
}

func (w *writer) commit() {
	for parent, d := range w.entDelta {
		for name := parent; name != "" && d != 0; _, name, _ = strings.Cut(name, ".") {
			n, _ := w.ents.get(name)
			if n += d; n <= 0 {
				w.ents.del(name)
			} else {
				w.ents.set(name, n)
			}
		}
	}
	if len(w.reverseDelta) > 0 {
		rev := w.t.reverse.begin()
		for a, d := range w.reverseDelta {
			if d == 0 {
				continue
			}
			for _, p := range reversePrefixes(a) {
				n, _ := rev.get(p)
				if n += d; n <= 0 {
					rev.del(p)
				} else {
					rev.set(p, n)
				}
			}
		}
		rev.commit()
	}
	w.names.commit()
	w.wild.commit()
	w.ptr.commit()
	w.ents.commit()
	if w.res.Added+w.res.Changed+w.res.Deleted > 0 {
		w.t.updated.Store(time.Now().Unix())
	}
}

// served returns the index and key a host is published under.
func (w *writer) served(host string) (*recordMap, string) {
	if suffix, ok := strings.CutPrefix(host, "*."); ok {
		return w.wild, suffix
	}
	return w.names, host
}

// find returns the source's record for host (nil if none) and the record
// served for host (nil if none); they are the same when the source wins.
func (w *writer) find(src SourceID, host string) (cur, winner *Record) {
	b, key := w.served(host)
	winner, _ = b.pending(key)
	if winner != nil && winner.source == src {
		return winner, winner
	}
	if len(w.t.shadow) > 0 {
		for _, r := range w.t.shadow[host] {
			if r.source == src {
				return r, winner
			}
		}
	}
	return nil, winner
}

// upsert returns the normalized host, or "" if the entry was rejected.
func (w *writer) upsert(src SourceID, e Entry) string {
	if int(src) >= len(w.t.sources) {
		w.res.reject(e.Host, fmt.Errorf("%w: unknown source %d", ErrHost, src))
		return ""
	}
	e, err := Normalize(e)
	if err != nil {
		w.res.reject(e.Host, err)
		return ""
	}
	e, err = longEndpoints(e)
	if err != nil {
		w.res.reject(e.Host, err)
	}
	// A host with nothing to answer is not served: a ServiceEntry host is
	// left to upstream DNS, as Istio does, and a headless Service without
	// ready endpoints is NXDOMAIN, as the Kubernetes DNS specification says.
	if len(e.Addrs) == 0 && e.Target == "" && len(e.Endpoints) == 0 {
		w.remove(src, e.Host)
		return e.Host
	}
	cur, winner := w.find(src, e.Host)
	if cur != nil && w.t.matches(cur, src, e) {
		w.res.Unchanged++
		return e.Host
	}
	r := w.t.build(src, e)
	if winner == nil || src <= winner.source {
		if err := w.checkChain(r); err != nil {
			w.res.reject(e.Host, err)
			return ""
		}
	}
	if cur == nil {
		w.res.Added++
		w.t.sources[src].entries++
	} else {
		w.res.Changed++
	}
	w.put(r, winner)
	return e.Host
}

// put installs r, which replaces its source's previous record for the host;
// winner is the record served for the host until now.
func (w *writer) put(r, winner *Record) {
	host := r.Host()
	b, key := w.served(host)
	switch {
	case winner == nil || winner.source == r.source:
		w.publish(b, key, winner, r)
	case r.source < winner.source:
		w.dropShadow(host, r.source)
		w.t.shadow[host] = append(w.t.shadow[host], winner)
		w.publish(b, key, winner, r)
	default:
		w.dropShadow(host, r.source)
		w.t.shadow[host] = append(w.t.shadow[host], r)
	}
}

func (w *writer) remove(src SourceID, host string) {
	cur, winner := w.find(src, host)
	if cur == nil {
		return
	}
	w.res.Deleted++
	w.t.sources[src].entries--
	if cur != winner {
		w.dropShadow(host, src)
		return
	}
	// Promote the best remaining contribution, if any.
	var next *Record
	for _, r := range w.t.shadow[host] {
		if next == nil || r.source < next.source {
			next = r
		}
	}
	if next != nil {
		w.dropShadow(host, next.source)
		if err := w.checkChain(next); err != nil {
			// Refused as if its source had sent it now.
			w.t.sources[next.source].entries--
			w.res.reject(host, err)
			next = nil
		}
	}
	b, key := w.served(host)
	w.publish(b, key, cur, next)
}

func (w *writer) dropShadow(host string, src SourceID) {
	rs := slices.DeleteFunc(w.t.shadow[host], func(r *Record) bool { return r.source == src })
	if len(rs) == 0 {
		delete(w.t.shadow, host)
		return
	}
	w.t.shadow[host] = rs
}

// publish makes next the served record for key instead of prev (either may be
// nil) and keeps the reverse and empty-non-terminal indexes in step.
func (w *writer) publish(b *recordMap, key string, prev, next *Record) {
	if next == nil {
		b.del(key)
	} else {
		b.set(key, next)
	}
	w.reindexPTR(prev, next)
	ns := w.t.cfg.Namespace
	if prev != nil {
		w.t.sources[prev.source].names -= prev.nameCount(ns)
		if len(prev.Endpoints()) > 0 {
			w.t.hasEndpoint.Add(-1)
		}
		if prev.extra != nil && len(prev.extra.clusters) > 0 {
			w.t.hasCluster.Add(-1)
		}
	}
	if next != nil {
		w.t.sources[next.source].names += next.nameCount(ns)
		if len(next.Endpoints()) > 0 {
			w.t.hasEndpoint.Add(1)
		}
		if next.extra != nil && len(next.extra.clusters) > 0 {
			w.t.hasCluster.Add(1)
		}
		if n := int32(strings.Count(key, ".") + 1); next.Wildcard() && n > w.t.wildMaxLabels.Load() {
			w.t.wildMaxLabels.Store(n)
		}
	}
	switch {
	case prev == nil && next != nil:
		w.refAncestors(next.Host(), 1)
	case prev != nil && next == nil:
		w.refAncestors(prev.Host(), -1)
	}
}

// refAncestors counts the proper ancestors of host (of the suffix, for a
// wildcard, including the suffix itself) as empty non-terminals. Hosts share
// parents, so deltas are collected by parent and spread at commit.
func (w *writer) refAncestors(host string, delta int32) {
	parent := strings.TrimPrefix(host, "*")
	if parent == host {
		_, parent, _ = strings.Cut(host, ".")
	} else {
		parent = parent[1:]
	}
	if parent != "" {
		w.entDelta[parent] += delta
	}
}

// ptrPair is one address a record answers PTR queries for, and the record
// that owns it.
type ptrPair struct {
	addr netip.Addr
	rec  *Record
}

// appendPTR appends r's PTR pairs: the endpoint names of a headless service,
// else the host's addresses. Wildcards own no address.
func appendPTR(pairs []ptrPair, r *Record) []ptrPair {
	if r == nil || r.Wildcard() {
		return pairs
	}
	owners := r.Endpoints()
	if len(owners) == 0 {
		owners = []*Record{r}
	}
	for _, o := range owners {
		for a := range o.addrs {
			pairs = append(pairs, ptrPair{a, o})
		}
	}
	return pairs
}

// reindexPTR replaces prev's pairs by next's. Every pair of next is added
// anew, even one prev had, so that the index never keeps a replaced Record.
func (w *writer) reindexPTR(prev, next *Record) {
	w.oldPTR = appendPTR(w.oldPTR[:0], prev)
	w.newPTR = appendPTR(w.newPTR[:0], next)
	for _, p := range w.oldPTR {
		w.ptr.del(p.addr, p.rec.owner())
		w.reverseDelta[p.addr]--
	}
	for _, p := range w.newPTR {
		w.ptr.add(p.addr, p.rec)
		w.reverseDelta[p.addr]++
	}
}

// reversePrefixes are the prefixes of a that reverse names above it stand
// for: the /8, /16 and /24 of an IPv4 address, every nibble of an IPv6 one.
func reversePrefixes(a netip.Addr) []netip.Prefix {
	step, top := 8, 32
	if a.Is6() {
		step, top = 4, 128
	}
	out := make([]netip.Prefix, 0, top/step-1)
	for bits := step; bits < top; bits += step {
		p, _ := a.Prefix(bits)
		out = append(out, p)
	}
	return out
}

// shortNameLen returns len("<name>.<ns>") when host is
// "<name>.<ns>.svc.<domain>", else 0.
func (t *Table) shortNameLen(host string) int {
	prefix, ok := strings.CutSuffix(host, t.kubeSuffix)
	if !ok {
		return 0
	}
	name, ns, ok := strings.Cut(prefix, ".")
	if !ok || name == "" || ns == "" || strings.Contains(ns, ".") || strings.HasPrefix(name, "*") {
		return 0
	}
	return len(prefix)
}
