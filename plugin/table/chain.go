package table

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// MaxChain bounds the CNAME chains the table serves: a host whose target
// leads through more than this many CNAMEs in the table, or back to itself,
// is refused, so a query never follows a loop.
const MaxChain = 8

// checkChain reports whether r, about to be served for its host, starts a
// CNAME chain that loops or runs deeper than MaxChain. Only served records
// take part; a target the table does not hold ends the chain (the rest of
// the server answers it). A chain that a later change makes longer is not
// refused here: orderChains builds each batch from the chains' ends, and the
// query path answers SERVFAIL past MaxChain.
func (w *writer) checkChain(r *Record) error {
	if r.Target() == "" {
		return nil
	}
	host := r.Host()
	chain := []string{host}
	for cur := r; ; {
		target := strings.TrimSuffix(cur.Target(), ".")
		next := w.resolve(target)
		// r is not served yet: a target naming its host is r.
		if next != nil && next.Host() == host || next == nil && w.findsAt(r, target) {
			return fmt.Errorf("%w: %s: its CNAME chain %s comes back to it", ErrLoop, host, strings.Join(append(chain, host), " -> "))
		}
		if next == nil {
			return nil
		}
		if next.Target() == "" {
			return nil
		}
		if chain = append(chain, next.Host()); len(chain) > MaxChain {
			return fmt.Errorf("%w: %s: its CNAME chain %s... is longer than %d", ErrDepth, host, strings.Join(chain, " -> "), MaxChain)
		}
		cur = next
	}
}

// resolve finds the served record a CNAME target names, as a query for it
// would: the host itself or a short name of a Kubernetes host. Endpoint names
// and wildcards own no target, so they end a chain like a name outside the
// table does.
func (w *writer) resolve(name string) *Record {
	if r, _ := w.names.pending(name); r != nil {
		return r
	}
	var buf [256]byte
	if key := w.t.shortKey(buf[:0], name); key != nil {
		if r, _ := w.names.pending(string(key)); r != nil && r.shortName > 0 {
			return r
		}
	}
	return nil
}

// findsAt reports whether a query for name would find r once served.
func (w *writer) findsAt(r *Record, name string) bool {
	if name == r.Host() {
		return true
	}
	var buf [256]byte
	key := w.t.shortKey(buf[:0], name)
	return key != nil && r.shortName > 0 && string(key) == r.Host()
}

// orderChains returns upserts with the entries that have a target last, each
// after the entry of the same batch that its target names, so that a chain
// is checked from its end and the entry refused for its length is the one at
// its head. Entries whose targets go round in a circle within the batch are
// refused, all of them, and left out.
func (w *writer) orderChains(upserts []Entry) []Entry {
	var targeted []int
	for i, e := range upserts {
		if e.Target != "" {
			targeted = append(targeted, i)
		}
	}
	if len(targeted) == 0 {
		return upserts
	}
	// Each batch host by the names a target can use for it.
	byName := map[string]int{}
	for i, e := range upserts {
		host := canonical(e.Host)
		byName[host] = i
		if e.Registry == Kubernetes {
			if n := w.t.shortNameLen(host); n > 0 {
				short := host[:n]
				byName[short], byName[short+".svc"] = i, i
				if name, ns, _ := strings.Cut(short, "."); ns == w.t.cfg.Namespace {
					byName[name] = i
				}
			}
		}
	}
	// A depth-first walk along the targets: depth is the number of CNAMEs
	// from an entry to the end of its chain within the batch.
	const visiting, done = 1, 2
	state, depth, onCycle := map[int]int{}, map[int]int{}, map[int]bool{}
	var stack []int
	var visit func(i int)
	visit = func(i int) {
		state[i] = visiting
		stack = append(stack, i)
		depth[i] = 1
		if j, ok := byName[canonical(upserts[i].Target)]; ok && upserts[j].Target != "" {
			switch state[j] {
			case 0:
				visit(j)
			case visiting:
				for _, k := range stack[slices.Index(stack, j):] {
					onCycle[k] = true
				}
			}
			// A target on a circle is refused, so the chain ends there.
			if state[j] == done && !onCycle[j] {
				depth[i] += depth[j]
			}
		}
		stack = stack[:len(stack)-1]
		state[i] = done
	}
	out := make([]Entry, 0, len(upserts))
	for _, e := range upserts {
		if e.Target == "" {
			out = append(out, e)
		}
	}
	var chained []int
	for _, i := range targeted {
		if state[i] == 0 {
			visit(i)
		}
	}
	for _, i := range targeted {
		if onCycle[i] {
			w.res.reject(upserts[i].Host, fmt.Errorf("%w: %s: its CNAME target %s leads back to it", ErrLoop, upserts[i].Host, upserts[i].Target))
			continue
		}
		chained = append(chained, i)
	}
	slices.SortStableFunc(chained, func(a, b int) int { return cmp.Compare(depth[a], depth[b]) })
	for _, i := range chained {
		out = append(out, upserts[i])
	}
	return out
}

func canonical(name string) string {
	return strings.ToLower(strings.TrimSuffix(name, "."))
}
