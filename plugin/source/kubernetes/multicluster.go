package kubernetes

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/meshdns/meshdns/plugin/source"
	"github.com/meshdns/meshdns/plugin/table"
)

// clusterSet merges the names of the kubernetes sources of one meshdns block,
// one source per cluster, as istiod merges its clusters' registries for a
// proxy in the client's cluster (pilot/pkg/serviceregistry/aggregate and
// pkg/dns/server/name_table.go in istio/istio):
//   - a host is owned by the client's cluster when it has the host there,
//     else by the first other cluster, in the Corefile's order, that has it;
//     the owner's entry is served (a Service's ClusterIP, an ExternalName, a
//     ServiceEntry, a ServiceImport);
//   - a headless Service answers the ready endpoints of every cluster on the
//     client's network; an endpoint's own name is the first cluster's (the
//     client's first) when two clusters have the same hostname.
//
// Each host goes to the table through the sink of the cluster that owns it,
// so the metrics count it under that cluster.
type clusterSet struct {
	mu      sync.Mutex
	members []*member          // the client's cluster first, then the Corefile's order
	owner   map[string]*member // host -> the member whose sink has it
}

// member is one cluster of a set: its state's sink.
type member struct {
	set     *clusterSet
	cluster string
	network string
	sink    source.Sink            // the plugin's sink for this source; set by Start
	entries map[string]table.Entry // what this cluster's state built, by host
}

// newClusterSet groups sources, one per cluster. The client's cluster is
// the one with client_cluster, else the first.
func newClusterSet(sources []*Source) (*clusterSet, error) {
	cs := &clusterSet{owner: map[string]*member{}}
	client := 0
	var named []string
	for i, s := range sources {
		if s.ClientCluster {
			client = i
			named = append(named, s.Cluster)
		}
	}
	if len(named) > 1 {
		return nil, fmt.Errorf("client_cluster is set for more than one cluster: %s", strings.Join(named, ", "))
	}
	order := append([]*Source{sources[client]}, slices.Delete(slices.Clone(sources), client, client+1)...)
	for _, s := range order {
		m := &member{set: cs, cluster: s.Cluster, network: s.Network, entries: map[string]table.Entry{}}
		cs.members = append(cs.members, m)
		s.member = m
	}
	return cs, nil
}

// Group implements source.Grouper: the kubernetes sources of one block form
// a cluster set when there are two or more.
func (s *Source) Group(all []source.Source) error {
	var kube []*Source
	for _, o := range all {
		if k, ok := o.(*Source); ok {
			kube = append(kube, k)
		}
	}
	if len(kube) < 2 || kube[0].member != nil {
		return nil
	}
	_, err := newClusterSet(kube)
	return err
}

// client reports whether m is the client's cluster.
func (m *member) client() bool { return m.set.members[0] == m }

// start gives the member its sink and returns the sink the cluster's state
// feeds.
func (m *member) start(sink source.Sink) source.Sink {
	m.set.mu.Lock()
	m.sink = sink
	m.set.mu.Unlock()
	return m
}

// Replace implements source.Sink: the cluster's full state.
func (m *member) Replace(entries []table.Entry, skipped []source.Rejection) {
	for _, r := range skipped {
		m.sink.Reject(r.Object, r.Reason, r.Err)
	}
	m.set.mu.Lock()
	defer m.set.mu.Unlock()
	affected := slices.Collect(maps.Keys(m.entries))
	m.entries = make(map[string]table.Entry, len(entries))
	for _, e := range entries {
		m.entries[e.Host] = e
		affected = append(affected, e.Host)
	}
	m.set.publish(affected)
}

// Apply implements source.Sink: a change in the cluster.
func (m *member) Apply(upserts []table.Entry, deletes []string) {
	m.set.mu.Lock()
	defer m.set.mu.Unlock()
	affected := slices.Clone(deletes)
	for _, h := range deletes {
		delete(m.entries, h)
	}
	for _, e := range upserts {
		m.entries[e.Host] = e
		affected = append(affected, e.Host)
	}
	m.set.publish(affected)
}

func (m *member) Reject(object, reason string, err error) { m.sink.Reject(object, reason, err) }
func (m *member) Synced()                                 { m.sink.Synced() }
func (m *member) Up(up bool)                              { m.sink.Up(up) }

// publish merges the hosts and sends each to its owner's sink, with cs.mu
// held so that the sinks see changes in order. A host that changes owner is
// added to the new owner before it is deleted from the old one: the table
// keeps a host two sources have, so it never goes missing in between.
func (cs *clusterSet) publish(hosts []string) {
	slices.Sort(hosts)
	hosts = slices.Compact(hosts)
	upserts := map[*member][]table.Entry{}
	deletes := map[*member][]string{}
	for _, h := range hosts {
		prev := cs.owner[h]
		owner, e := cs.merge(h)
		if owner != nil {
			upserts[owner] = append(upserts[owner], e)
			cs.owner[h] = owner
		} else {
			delete(cs.owner, h)
		}
		if prev != nil && prev != owner {
			deletes[prev] = append(deletes[prev], h)
		}
	}
	for _, m := range cs.members {
		if len(upserts[m]) > 0 {
			m.sink.Apply(upserts[m], nil)
		}
	}
	for _, m := range cs.members {
		if len(deletes[m]) > 0 {
			m.sink.Apply(nil, deletes[m])
		}
	}
}

// merge returns the owner of host and the entry served for it; no owner
// when no cluster has it.
func (cs *clusterSet) merge(host string) (*member, table.Entry) {
	var owner *member
	var e table.Entry
	for _, m := range cs.members {
		if x, ok := m.entries[host]; ok {
			owner, e = m, x
			break
		}
	}
	// A ServiceImport is already the clusterset's view, from its own
	// cluster's import.
	if owner == nil || !headless(e) || strings.HasSuffix(host, clustersetSuffix) {
		return owner, e
	}
	merged := table.Entry{Host: e.Host, Registry: e.Registry, Ports: e.Ports}
	named := map[string]bool{} // endpoint hostnames an earlier cluster has
	for _, m := range cs.members {
		x, ok := m.entries[host]
		if !ok || !headless(x) || !cs.sameNetwork(m) {
			continue
		}
		merged.Addrs = append(merged.Addrs, x.Addrs...)
		for _, ep := range x.Endpoints {
			if ep.Hostname == "" || !named[ep.Hostname] {
				merged.Endpoints = append(merged.Endpoints, ep)
			}
		}
		for _, ep := range x.Endpoints {
			named[ep.Hostname] = true
		}
	}
	merged.Addrs = sortAddrs(merged.Addrs)
	return owner, merged
}

// sameNetwork reports whether m's endpoints are reachable from the client
// directly: same network, or a network not given on either side (Istio's
// Proxy.InNetwork).
func (cs *clusterSet) sameNetwork(m *member) bool {
	client := cs.members[0].network
	return client == "" || m.network == "" || m.network == client
}

// headless reports whether e is a headless Service's entry: a Kubernetes
// host without a target whose addresses are its endpoints' (none when no
// endpoint is ready). A ClusterIP Service always has an address and no
// endpoint names.
func headless(e table.Entry) bool {
	return e.Registry == table.Kubernetes && e.Target == "" && (len(e.Endpoints) > 0 || len(e.Addrs) == 0)
}
