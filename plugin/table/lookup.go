package table

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"unsafe"
)

// Kind says how a query name matched the table.
type Kind uint8

const (
	// Miss: the table does not know the name.
	Miss Kind = iota
	// Hit: a host, one of its short names, or an endpoint name.
	Hit
	// Wildcard: the name falls under a "*.suffix" host.
	Wildcard
	// Shortcut: the name is a served name with a search domain appended.
	Shortcut
	// Empty: an empty non-terminal, an ancestor of served names (NODATA).
	Empty
)

var kindNames = [...]string{Miss: "miss", Hit: "hit", Wildcard: "wildcard", Shortcut: "shortcut", Empty: "empty"}

func (k Kind) String() string { return kindNames[k] }

// Match is the result of Lookup.
type Match struct {
	Kind   Kind
	Record *Record
	// Cut, for a Shortcut, is the length of the served part of the query name
	// including its trailing dot: the query was name[:Cut] + search domain.
	Cut int
	// SRV is the length of a "_port._proto." prefix that was stripped to find
	// Record (only Hit matches have one); Port and Proto are its labels
	// without the underscores.
	SRV         int
	Port, Proto string
}

// Lookup finds qname, a lower-case name with its trailing dot. Precedence: an
// exact name (host, short name, endpoint name, SRV name), then the most
// specific wildcard, then a search-domain shortcut (search domains in order;
// the remainder found exactly or by wildcard), then an empty non-terminal.
// It does not allocate.
func (t *Table) Lookup(qname string) Match {
	name := strings.TrimSuffix(qname, ".")
	if name == "" {
		return Match{}
	}
	if r := t.exact(name); r != nil {
		return Match{Kind: Hit, Record: r}
	}
	if m := t.srv(name); m.Kind != Miss {
		return m
	}
	if t.protoParent(name) {
		return Match{Kind: Empty}
	}
	if r := t.wildcard(name); r != nil {
		return Match{Kind: Wildcard, Record: r}
	}
	for _, sd := range t.search {
		head, ok := strings.CutSuffix(name, sd.suffix)
		if !ok || head == "" {
			continue
		}
		if sd.anyLabel {
			i := strings.LastIndexByte(head, '.')
			// A bare short name under another namespace's domain is not a
			// shortcut: it would be that namespace's service.
			if i <= 0 || strings.IndexByte(head[:i], '.') < 0 {
				continue
			}
			head = head[:i]
		}
		if r := t.exact(head); r != nil {
			return Match{Kind: Shortcut, Record: r, Cut: len(head) + 1}
		}
		if r := t.wildcard(head); r != nil {
			return Match{Kind: Shortcut, Record: r, Cut: len(head) + 1}
		}
	}
	if _, ok := t.ents.get(name); ok || t.shortParent(name) || t.clusterParent(name) {
		return Match{Kind: Empty}
	}
	return Match{}
}

// shortParent reports whether name is "<ns>" or "<ns>.svc", the parent of
// short names "<name>.<ns>" and "<name>.<ns>.svc": an empty non-terminal.
func (t *Table) shortParent(name string) bool {
	var buf [256]byte
	key := append(buf[:0], name...)
	switch {
	case strings.IndexByte(name, '.') < 0:
		key = append(key, t.kubeSuffix...)
	case strings.Count(name, ".") == 1 && strings.HasSuffix(name, ".svc"):
		key = append(append(key, '.'), t.cfg.Domain...)
	default:
		return false
	}
	if len(key) > len(buf) {
		return false
	}
	// As in short, the key stays on the stack.
	_, ok := t.ents.get(unsafe.String(&key[0], len(key)))
	return ok
}

// exact finds a host, a short name of a Kubernetes host, or an endpoint name.
func (t *Table) exact(name string) *Record {
	if r, ok := t.names.get(name); ok {
		return r
	}
	if r := t.short(name); r != nil {
		return r
	}
	if t.hasEndpoint.Load() > 0 {
		if label, parent, ok := strings.Cut(name, "."); ok {
			if r, ok := t.names.get(parent); ok {
				if r.extra != nil {
					return r.extra.byLabel[label]
				}
				return nil
			}
			// A multicluster service's endpoint: "<hostname>.<cluster>.<host>".
			if cluster, host, ok := strings.Cut(parent, "."); ok && t.hasCluster.Load() > 0 {
				if r, ok := t.names.get(host); ok && r.extra != nil && len(r.extra.clusters) > 0 {
					return r.extra.byLabel[name[:len(label)+1+len(cluster)]]
				}
			}
		}
	}
	return nil
}

// clusterParent reports whether name is "<cluster>.<host>", the empty
// non-terminal above the names of a multicluster service's endpoints in one
// cluster.
func (t *Table) clusterParent(name string) bool {
	if t.hasCluster.Load() == 0 {
		return false
	}
	cluster, host, ok := strings.Cut(name, ".")
	if !ok {
		return false
	}
	r, ok := t.names.get(host)
	return ok && r.extra != nil && slices.Contains(r.extra.clusters, cluster)
}

// short resolves "name.ns", "name.ns.svc" and, with a configured namespace,
// "name" to the Kubernetes host "name.ns.svc.<domain>".
func (t *Table) short(name string) *Record {
	var buf [256]byte
	key := t.shortKey(buf[:0], name)
	if key == nil {
		return nil
	}
	// The key lives on the stack only for the duration of the map read;
	// string(key) would copy it to the heap when it is longer than 32 bytes.
	// go test -run NONE -bench ShortKey ./plugin/table/: 115 to 133 ns and
	// one allocation less per short name of a 34-byte host, where
	// BenchmarkLookup/short takes 81 to 146 ns and no allocation.
	r, ok := t.names.get(unsafe.String(&key[0], len(key)))
	if !ok || r.shortName == 0 {
		return nil
	}
	return r
}

// shortKey appends to buf the Kubernetes host that name is a short form of,
// or returns nil if it is none or the host would not fit in buf.
func (t *Table) shortKey(buf []byte, name string) []byte {
	key := append(buf, name...)
	switch strings.Count(name, ".") {
	case 0:
		if t.cfg.Namespace == "" {
			return nil
		}
		key = append(append(append(key, '.'), t.cfg.Namespace...), t.kubeSuffix...)
	case 1:
		key = append(key, t.kubeSuffix...)
	case 2:
		if !strings.HasSuffix(name, ".svc") {
			return nil
		}
		key = append(append(key, '.'), t.cfg.Domain...)
	default:
		return nil
	}
	if len(key) > cap(buf) {
		return nil
	}
	return key
}

// wildcard finds the most specific "*.suffix" host that covers name.
func (t *Table) wildcard(name string) *Record {
	maxLabels := int(t.wildMaxLabels.Load())
	if maxLabels == 0 {
		return nil
	}
	// Only suffixes as deep as some wildcard's are worth a map read.
	labels := strings.Count(name, ".") + 1
	for {
		i := strings.IndexByte(name, '.')
		if i < 0 {
			return nil
		}
		name, labels = name[i+1:], labels-1
		if labels > maxLabels {
			continue
		}
		if r, ok := t.wild.get(name); ok {
			return r
		}
	}
}

// Covering finds the most specific wildcard that covers the names below
// parent (lower case, no trailing dot), for a query name whose first labels
// no table name can have.
func (t *Table) Covering(parent string) Match {
	if r := t.wildcard("*." + parent); r != nil {
		return Match{Kind: Wildcard, Record: r}
	}
	return Match{}
}

// srv resolves "_port._proto.<name>" when name is served exactly and has a
// matching port.
func (t *Table) srv(name string) Match {
	if len(name) < 2 || name[0] != '_' {
		return Match{}
	}
	port, rest, ok := strings.Cut(name, ".")
	if !ok || len(rest) < 2 || rest[0] != '_' {
		return Match{}
	}
	proto, host, ok := strings.Cut(rest, ".")
	if !ok {
		return Match{}
	}
	// An ExternalName host owns its CNAME and nothing else (RFC 2181 §10.1).
	r := t.exact(host)
	if r == nil || r.Target() != "" {
		return Match{}
	}
	m := Match{Kind: Hit, Record: r, SRV: len(name) - len(host), Port: port[1:], Proto: proto[1:]}
	for _, p := range r.Ports() {
		if m.Selects(p) {
			return m
		}
	}
	return Match{}
}

// protoParent reports whether name is "_proto.<name>", the parent of the SRV
// names "_port._proto.<name>" of a served name with a named port of that
// protocol: an empty non-terminal.
func (t *Table) protoParent(name string) bool {
	if len(name) < 2 || name[0] != '_' {
		return false
	}
	proto, host, ok := strings.Cut(name[1:], ".")
	if !ok {
		return false
	}
	r := t.exact(host)
	if r == nil || r.Target() != "" {
		return false
	}
	for _, p := range r.Ports() {
		if p.Name != "" && p.Protocol.String() == proto {
			return true
		}
	}
	return false
}

// Selects reports whether an SRV query selects port p. An SRV name selects
// a named port; the host's own SRV query has every port.
func (m Match) Selects(p Port) bool {
	return m.SRV == 0 || (p.Name != "" && p.Name == m.Port && p.Protocol.String() == m.Proto)
}

// PTR returns the names that own addr.
func (t *Table) PTR(addr netip.Addr) []string {
	return t.ptr.owners(addr, nil)
}

// ReverseParent reports whether name (lower case) is a reverse name above a
// served address, such as "1.96.10.in-addr.arpa.": an empty non-terminal.
func (t *Table) ReverseParent(name string) bool {
	p, ok := ParseReverseParent(name)
	if !ok {
		return false
	}
	n, _ := t.reverse.get(p)
	return n > 0
}

// ParseReverseParent turns a reverse name above an address, with one to three
// labels in in-addr.arpa or one to 31 nibbles in ip6.arpa, into the prefix it
// stands for.
func ParseReverseParent(name string) (netip.Prefix, bool) {
	name = strings.TrimSuffix(name, ".")
	if rest, ok := strings.CutSuffix(name, ".in-addr.arpa"); ok {
		labels := strings.Split(rest, ".")
		if len(labels) > 3 {
			return netip.Prefix{}, false
		}
		var ip [4]byte
		for i, l := range labels {
			n, err := strconv.Atoi(l)
			if err != nil || n < 0 || n > 255 || strconv.Itoa(n) != l {
				return netip.Prefix{}, false
			}
			ip[len(labels)-1-i] = byte(n)
		}
		return netip.PrefixFrom(netip.AddrFrom4(ip), 8*len(labels)), true
	}
	if rest, ok := strings.CutSuffix(name, ".ip6.arpa"); ok {
		nibbles := strings.Split(rest, ".")
		if len(nibbles) > 31 {
			return netip.Prefix{}, false
		}
		var ip [16]byte
		for i, l := range nibbles {
			v, err := strconv.ParseUint(l, 16, 4)
			if err != nil || len(l) != 1 {
				return netip.Prefix{}, false
			}
			// Nibble k from the most significant end is the (n-1-i)th label.
			k := len(nibbles) - 1 - i
			if k%2 == 0 {
				ip[k/2] |= byte(v) << 4
			} else {
				ip[k/2] |= byte(v)
			}
		}
		return netip.PrefixFrom(netip.AddrFrom16(ip), 4*len(nibbles)), true
	}
	return netip.Prefix{}, false
}

// ParseReverse turns an in-addr.arpa or ip6.arpa name (lower case, with or
// without the trailing dot) into an address, without allocating.
func ParseReverse(name string) (netip.Addr, bool) {
	name = strings.TrimSuffix(name, ".")
	if rest, ok := strings.CutSuffix(name, ".in-addr.arpa"); ok {
		var ip [4]byte
		for i := 3; i >= 0; i-- {
			// Exactly four labels: a dot after each but the last.
			label := rest
			j := strings.IndexByte(rest, '.')
			if (j >= 0) != (i > 0) {
				return netip.Addr{}, false
			}
			if j >= 0 {
				label, rest = rest[:j], rest[j+1:]
			}
			if len(label) == 0 || len(label) > 3 || (len(label) > 1 && label[0] == '0') {
				return netip.Addr{}, false
			}
			n := 0
			for k := 0; k < len(label); k++ {
				if label[k] < '0' || label[k] > '9' {
					return netip.Addr{}, false
				}
				n = n*10 + int(label[k]-'0')
			}
			if n > 255 {
				return netip.Addr{}, false
			}
			ip[i] = byte(n)
		}
		return netip.AddrFrom4(ip), true
	}
	if rest, ok := strings.CutSuffix(name, ".ip6.arpa"); ok {
		// 32 nibbles, each a single hex digit followed by a dot (but the last).
		if len(rest) != 63 {
			return netip.Addr{}, false
		}
		var ip [16]byte
		for i := 0; i < 32; i++ {
			c := rest[2*i]
			if i < 31 && rest[2*i+1] != '.' {
				return netip.Addr{}, false
			}
			var v byte
			switch {
			case c >= '0' && c <= '9':
				v = c - '0'
			case c >= 'a' && c <= 'f':
				v = c - 'a' + 10
			default:
				return netip.Addr{}, false
			}
			// Nibble i counts from the least significant end.
			b := 15 - i/2
			if i%2 == 0 {
				ip[b] |= v
			} else {
				ip[b] |= v << 4
			}
		}
		return netip.AddrFrom16(ip), true
	}
	return netip.Addr{}, false
}
