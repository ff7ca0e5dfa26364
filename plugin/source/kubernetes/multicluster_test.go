package kubernetes

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/meshdns/meshdns/plugin/source"
	"github.com/meshdns/meshdns/plugin/table"
)

// logSink records, across the clusters of a set, which cluster's sink got
// what, in order.
type logSink struct {
	cluster string
	log     *[]string
	has     map[string]table.Entry
}

func (s *logSink) Replace([]table.Entry, []source.Rejection) {
	panic("a cluster set sends changes only")
}
func (s *logSink) Apply(u []table.Entry, d []string) {
	for _, e := range u {
		s.has[e.Host] = e
		*s.log = append(*s.log, "+"+s.cluster+" "+e.Host)
	}
	for _, h := range d {
		delete(s.has, h)
		*s.log = append(*s.log, "-"+s.cluster+" "+h)
	}
}
func (s *logSink) Reject(string, string, error) {}
func (s *logSink) Synced()                      {}
func (s *logSink) Up(bool)                      {}

// testSet makes a set of the clusters named, the client marked with a
// leading "*", each "name@network" on a network; it returns the members'
// sinks (what the table gets) and the sinks their states feed, by name.
func testSet(t *testing.T, clusters ...string) (got map[string]*logSink, feed map[string]source.Sink, log *[]string) {
	t.Helper()
	log = &[]string{}
	var srcs []*Source
	for _, c := range clusters {
		s := &Source{}
		c, s.ClientCluster = strings.CutPrefix(c, "*")
		s.Cluster, s.Network, _ = strings.Cut(c, "@")
		srcs = append(srcs, s)
	}
	if _, err := newClusterSet(srcs); err != nil {
		t.Fatal(err)
	}
	got, feed = map[string]*logSink{}, map[string]source.Sink{}
	for _, s := range srcs {
		got[s.Cluster] = &logSink{cluster: s.Cluster, log: log, has: map[string]table.Entry{}}
		feed[s.Cluster] = s.member.start(got[s.Cluster])
	}
	return got, feed, log
}

func clusterIP(host string, addrs ...string) table.Entry {
	e := table.Entry{Host: host, Registry: table.Kubernetes}
	for _, a := range addrs {
		e.Addrs = append(e.Addrs, netip.MustParseAddr(a))
	}
	return e
}

// headlessEntry: each endpoint "hostname=addr", or "addr" alone.
func headlessEntry(host string, eps ...string) table.Entry {
	e := table.Entry{Host: host, Registry: table.Kubernetes, Ports: []table.Port{{Name: "db", Number: 5432}}}
	for _, ep := range eps {
		name, addr, ok := strings.Cut(ep, "=")
		if !ok {
			name, addr = "", ep
		}
		a := netip.MustParseAddr(addr)
		e.Endpoints = append(e.Endpoints, table.Endpoint{Hostname: name, Addr: a})
		e.Addrs = append(e.Addrs, a)
	}
	return e
}

// served says which cluster's sink holds each host, and its entry.
func served(got map[string]*logSink) map[string]string {
	out := map[string]string{}
	for c, s := range got {
		for h, e := range s.has {
			if _, dup := out[h]; dup {
				out[h] = "two sinks"
				continue
			}
			var eps []string
			for _, ep := range e.Endpoints {
				eps = append(eps, ep.Hostname+"="+ep.Addr.String())
			}
			out[h] = fmt.Sprintf("%s %v %v", c, e.Addrs, eps)
		}
	}
	return out
}

func TestClusterSetMerge(t *testing.T) {
	const (
		web = "web.app.svc.cluster.local"
		db  = "db.app.svc.cluster.local"
	)
	tests := []struct {
		name     string
		clusters []string
		feed     map[string][]table.Entry // by cluster, in that order
		want     map[string]string
	}{
		{
			name:     "a Service in one cluster only is served from it",
			clusters: []string{"c1", "c2"},
			feed:     map[string][]table.Entry{"c2": {clusterIP(web, "10.2.0.1")}},
			want:     map[string]string{web: "c2 [10.2.0.1] []"},
		},
		{
			name:     "a Service in both clusters has the client cluster's ClusterIP",
			clusters: []string{"c1", "c2"},
			feed:     map[string][]table.Entry{"c2": {clusterIP(web, "10.2.0.1")}, "c1": {clusterIP(web, "10.1.0.1")}},
			want:     map[string]string{web: "c1 [10.1.0.1] []"},
		},
		{
			name:     "client_cluster picks the client's cluster",
			clusters: []string{"c1", "*c2"},
			feed:     map[string][]table.Entry{"c1": {clusterIP(web, "10.1.0.1")}, "c2": {clusterIP(web, "10.2.0.1")}},
			want:     map[string]string{web: "c2 [10.2.0.1] []"},
		},
		{
			name:     "without the client's cluster, the first other one in the Corefile",
			clusters: []string{"c1", "c2", "c3"},
			feed:     map[string][]table.Entry{"c3": {clusterIP(web, "10.3.0.1")}, "c2": {clusterIP(web, "10.2.0.1")}},
			want:     map[string]string{web: "c2 [10.2.0.1] []"},
		},
		{
			name:     "a headless Service answers every cluster's endpoints; a hostname in two is the first cluster's",
			clusters: []string{"c1", "c2"},
			feed: map[string][]table.Entry{
				"c2": {headlessEntry(db, "db-0=10.2.0.5", "db-1=10.2.0.6", "10.2.0.7")},
				"c1": {headlessEntry(db, "db-0=10.1.0.5", "10.1.0.7")},
			},
			want: map[string]string{db: "c1 [10.1.0.5 10.1.0.7 10.2.0.5 10.2.0.6 10.2.0.7] [db-0=10.1.0.5 =10.1.0.7 db-1=10.2.0.6 =10.2.0.7]"},
		},
		{
			name:     "endpoints of a cluster on another network are left out",
			clusters: []string{"c1@net1", "c2@net2", "c3"},
			feed: map[string][]table.Entry{
				"c1": {headlessEntry(db, "db-0=10.1.0.5")},
				"c2": {headlessEntry(db, "db-1=10.2.0.5"), clusterIP(web, "10.2.0.1")},
				"c3": {headlessEntry(db, "db-2=10.3.0.5")},
			},
			want: map[string]string{
				db:  "c1 [10.1.0.5 10.3.0.5] [db-0=10.1.0.5 db-2=10.3.0.5]",
				web: "c2 [10.2.0.1] []", // a ClusterIP is reached through the network's gateway
			},
		},
		{
			name:     "a ServiceImport is its own cluster's view",
			clusters: []string{"c1", "c2"},
			feed: map[string][]table.Entry{
				"c1": {headlessEntry("db.app"+clustersetSuffix, "db-0=10.1.0.5")},
				"c2": {headlessEntry("db.app"+clustersetSuffix, "db-0=10.2.0.5")},
			},
			want: map[string]string{"db.app" + clustersetSuffix: "c1 [10.1.0.5] [db-0=10.1.0.5]"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, feed, _ := testSet(t, tt.clusters...)
			for _, c := range []string{"c1", "c2", "c3"} {
				if es, ok := tt.feed[c]; ok {
					feed[c].Apply(es, nil)
				}
			}
			if s := served(got); fmt.Sprint(s) != fmt.Sprint(tt.want) {
				t.Errorf("served\n%v\nwant\n%v", s, tt.want)
			}
		})
	}
}

// A host that moves to another cluster is added there before it leaves the
// first, so the table always has it; a full state of one cluster changes
// only what differs.
func TestClusterSetMoves(t *testing.T) {
	const web = "web.app.svc.cluster.local"
	got, feed, log := testSet(t, "c1", "c2")
	feed["c2"].Replace([]table.Entry{clusterIP(web, "10.2.0.1")}, nil)
	feed["c1"].Replace([]table.Entry{clusterIP(web, "10.1.0.1")}, nil)
	feed["c1"].Apply(nil, []string{web})
	feed["c2"].Replace(nil, nil)
	want := []string{"+c2 " + web, "+c1 " + web, "-c2 " + web, "+c2 " + web, "-c1 " + web, "-c2 " + web}
	if !slices.Equal(*log, want) {
		t.Errorf("sinks saw\n%v\nwant\n%v", *log, want)
	}
	if s := served(got); len(s) != 0 {
		t.Errorf("left served: %v", s)
	}
}

func TestClusterSetTwoClients(t *testing.T) {
	_, err := newClusterSet([]*Source{{Cluster: "c1", ClientCluster: true}, {Cluster: "c2", ClientCluster: true}})
	if err == nil || !strings.Contains(err.Error(), "c1, c2") {
		t.Errorf("err %v, want one naming c1, c2", err)
	}
}
