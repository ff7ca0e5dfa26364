package main

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
)

// The client every candidate serves: a pod in namespace clientNS with
// Kubernetes' resolv.conf plus one VM domain.
const (
	clientNS   = "ns-00"
	namespaces = 100
	vmDomain   = "corp.internal"
	ndots      = 5
	nWildcards = 5
)

var searchDomains = []string{clientNS + ".svc.cluster.local", "svc.cluster.local", "cluster.local", vmDomain}

// A host of the table: a ClusterIP Service (ns and name set) or a
// ServiceEntry host (possibly a wildcard).
type host struct {
	fqdn     string // no trailing dot
	ns, name string // Services only
	ip       netip.Addr
	wildcard bool
}

// dataset is a table of n hosts and the files each candidate reads.
type dataset struct {
	n        int
	svcs     []host
	ses      []host
	dir      string
	table    string // NDS NameTable JSON (meshdns file source, istio-dns)
	hosts    string // hosts(5) file (CoreDNS hosts, the floor)
	zones    map[string]string
	mixes    []mix
	wildcard []string // the wildcard suffixes, "wild-N.example"
	names    map[string]bool
}

type mix struct {
	key, title string
	path       string
	queries    int
	qs         []question // the file's queries, for the latency client
}

// Service i and ServiceEntry j are the same in every size, so a bigger
// table's objects are a superset of a smaller one's.
func svcHost(i int) host {
	ns, name := fmt.Sprintf("ns-%02d", i%namespaces), fmt.Sprintf("svc-%05d", i)
	return host{fqdn: name + "." + ns + ".svc.cluster.local", ns: ns, name: name, ip: addr4(10, 96, 1, 0, i)}
}

func seHost(j int) host {
	if j < nWildcards {
		return host{fqdn: fmt.Sprintf("*.wild-%d.example", j), ns: fmt.Sprintf("ns-%02d", j%namespaces), ip: addr4(240, 241, 0, 1, j), wildcard: true}
	}
	return host{fqdn: fmt.Sprintf("se-%04d.partner-%02d.example", j, j%50), ns: fmt.Sprintf("ns-%02d", j%namespaces), ip: addr4(240, 240, 0, 1, j)}
}

func seName(j int) string {
	if j < nWildcards {
		return fmt.Sprintf("wild-%d", j)
	}
	return fmt.Sprintf("se-%04d", j)
}

// addr4 is a.b.c.d plus off.
func addr4(a, b, c, d byte, off int) netip.Addr {
	v := binary.BigEndian.Uint32([]byte{a, b, c, d}) + uint32(off)
	var out [4]byte
	binary.BigEndian.PutUint32(out[:], v)
	return netip.AddrFrom4(out)
}

// newDataset builds the table of n hosts (2% ServiceEntries, of which
// nWildcards wildcards; the rest Services over 100 namespaces) and writes
// every file into dir.
func newDataset(n int, dir string, lookups int) (*dataset, error) {
	d := &dataset{n: n, dir: dir, zones: map[string]string{}}
	nSE := max(n/50, nWildcards+1)
	for i := range n - nSE {
		d.svcs = append(d.svcs, svcHost(i))
	}
	for j := range nSE {
		h := seHost(j)
		d.ses = append(d.ses, h)
		if h.wildcard {
			d.wildcard = append(d.wildcard, strings.TrimPrefix(h.fqdn, "*."))
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	for _, f := range []func() error{d.writeTable, d.writeHosts, d.writeZones} {
		if err := f(); err != nil {
			return nil, err
		}
	}
	if err := d.writeMixes(lookups); err != nil {
		return nil, err
	}
	return d, nil
}

func (d *dataset) all() []host { return append(append([]host{}, d.svcs...), d.ses...) }

func (d *dataset) writeTable() error {
	type info struct {
		IPs       []string `json:"ips"`
		Registry  string   `json:"registry"`
		Shortname string   `json:"shortname,omitempty"`
		Namespace string   `json:"namespace,omitempty"`
	}
	t := map[string]info{}
	for _, h := range d.svcs {
		t[h.fqdn] = info{IPs: []string{h.ip.String()}, Registry: "Kubernetes", Shortname: h.name, Namespace: h.ns}
	}
	for _, h := range d.ses {
		t[h.fqdn] = info{IPs: []string{h.ip.String()}, Registry: "External"}
	}
	data, err := json.Marshal(map[string]any{"table": t})
	if err != nil {
		return err
	}
	d.table = filepath.Join(d.dir, "table.json")
	return os.WriteFile(d.table, data, 0o644)
}

// writeHosts writes every host but the wildcards: hosts(5) has none.
func (d *dataset) writeHosts() error {
	d.hosts = filepath.Join(d.dir, "hosts")
	return writeLines(d.hosts, func(w *bufio.Writer) {
		for _, h := range d.all() {
			if !h.wildcard {
				fmt.Fprintf(w, "%s %s\n", h.ip, h.fqdn)
			}
		}
	})
}

// writeZones writes two zones: cluster.local (the Services) and example
// (the ServiceEntry hosts, with the wildcards).
func (d *dataset) writeZones() error {
	for zone, hosts := range map[string][]host{"cluster.local": d.svcs, "example": d.ses} {
		path := filepath.Join(d.dir, zone+".zone")
		d.zones[zone] = path
		err := writeLines(path, func(w *bufio.Writer) {
			fmt.Fprintf(w, "$ORIGIN %s.\n@ 30 IN SOA ns.dns.%s. hostmaster.%s. 1 7200 1800 86400 30\n", zone, zone, zone)
			fmt.Fprintf(w, "@ 30 IN NS ns.dns.%s.\nns.dns 30 IN A 10.96.0.10\n", zone)
			for _, h := range hosts {
				fmt.Fprintf(w, "%s. 30 IN A %s\n", h.fqdn, h.ip)
			}
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// writeMixes writes the dnsperf inputs:
//
//	(a) the A query of every host's FQDN (not the wildcards), shuffled;
//	(b) what pods with ndots:5 send for a realistic set of lookups, each
//	    lookup expanded the way glibc walks the search list against a
//	    resolver that answers only real names (kube-dns): A and AAAA per
//	    step, until the step that exists.
func (d *dataset) writeMixes(lookups int) error {
	rng := rand.New(rand.NewPCG(uint64(d.n), 5))
	var a []string
	for _, h := range d.all() {
		if !h.wildcard {
			a = append(a, h.fqdn+" A")
		}
	}
	rng.Shuffle(len(a), func(i, j int) { a[i], a[j] = a[j], a[i] })

	var b []string
	for k := range lookups {
		name := d.lookupName(rng, pickKind(rng), k)
		for _, step := range searchWalk(name) {
			b = append(b, step+" A", step+" AAAA")
			if d.exists(step) {
				break
			}
		}
	}
	d.mixes = nil
	for _, m := range []struct {
		key, title string
		lines      []string
	}{
		{"a", "(a) FQDN A hits", a},
		{"b", "(b) ndots:5 pod mix", b},
	} {
		path := filepath.Join(d.dir, "mix-"+m.key+".txt")
		err := writeLines(path, func(w *bufio.Writer) {
			for _, l := range m.lines {
				fmt.Fprintln(w, l)
			}
		})
		if err != nil {
			return err
		}
		qs, err := readMix(path)
		if err != nil {
			return err
		}
		d.mixes = append(d.mixes, mix{key: m.key, title: m.title, path: path, queries: len(m.lines), qs: qs})
	}
	return nil
}

// The kinds of lookup of mix (b), with their weights in percent.
type kind int

const (
	shortSameNS  kind = iota // "svc-1": a Service of the pod's namespace
	shortOtherNS             // "svc-2.ns-07"
	serviceFQDN              // "svc-3.ns-07.svc.cluster.local", no trailing dot (4 dots < ndots)
	seHostName               // "se-0042.partner-42.example"
	wildcardName             // "api-7.wild-2.example"
	externalName             // "www.site-9.com", answered by the upstream
)

var kinds = []struct {
	k      kind
	weight int
	title  string
}{
	{shortSameNS, 30, "short name, same namespace (svc)"},
	{shortOtherNS, 30, "short name, other namespace (svc.ns)"},
	{serviceFQDN, 10, "Service FQDN without the final dot"},
	{seHostName, 10, "ServiceEntry host"},
	{wildcardName, 5, "name under a wildcard ServiceEntry"},
	{externalName, 15, "external name"},
}

func pickKind(rng *rand.Rand) kind {
	n := rng.IntN(100)
	for _, k := range kinds {
		if n < k.weight {
			return k.k
		}
		n -= k.weight
	}
	return externalName
}

// lookupName is the name an application asks for; seq makes external names
// unique.
func (d *dataset) lookupName(rng *rand.Rand, k kind, seq int) string {
	switch k {
	case shortSameNS:
		// Services of clientNS are every namespaces-th one.
		h := d.svcs[rng.IntN((len(d.svcs)+namespaces-1)/namespaces)*namespaces]
		return h.name
	case shortOtherNS:
		h := d.svcs[rng.IntN(len(d.svcs))]
		return h.name + "." + h.ns
	case serviceFQDN:
		return d.svcs[rng.IntN(len(d.svcs))].fqdn
	case seHostName:
		return d.ses[nWildcards+rng.IntN(len(d.ses)-nWildcards)].fqdn
	case wildcardName:
		return fmt.Sprintf("api-%d.%s", seq, d.wildcard[rng.IntN(len(d.wildcard))])
	default:
		return fmt.Sprintf("www.site-%d.%s", seq, strings.TrimSuffix(upstreamTLD, "."))
	}
}

// exists says whether a name (with the final dot) is real: a host of the
// table, a name under a wildcard host, or a name the upstream answers.
func (d *dataset) exists(name string) bool {
	name = strings.TrimSuffix(name, ".")
	if strings.HasSuffix(name, "."+strings.TrimSuffix(upstreamTLD, ".")) {
		return true
	}
	for _, w := range d.wildcard {
		if strings.HasSuffix(name, "."+w) {
			return true
		}
	}
	if d.names == nil {
		d.names = map[string]bool{}
		for _, h := range d.all() {
			d.names[h.fqdn] = true
		}
	}
	return d.names[name]
}

// searchWalk is the order in which glibc's resolver tries a name (res_search
// with ndots:5 and searchDomains); every entry ends in a dot.
func searchWalk(name string) []string {
	if strings.HasSuffix(name, ".") {
		return []string{name}
	}
	dots := strings.Count(name, ".")
	var out []string
	if dots >= ndots {
		out = append(out, name+".")
	}
	for _, s := range searchDomains {
		out = append(out, name+"."+s+".")
	}
	if dots < ndots {
		out = append(out, name+".")
	}
	return out
}

func writeLines(path string, f func(*bufio.Writer)) error {
	file, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(file, 1<<16)
	f(w)
	if err := w.Flush(); err != nil {
		file.Close()
		return err
	}
	return file.Close()
}
