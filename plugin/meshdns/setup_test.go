package meshdns

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/core/dnsserver"

	"github.com/meshdns/meshdns/plugin/source/file"
	"github.com/meshdns/meshdns/plugin/source/xds"
)

func TestDirectiveOrder(t *testing.T) {
	d := dnsserver.Directives
	at := func(name string) int {
		i := slices.Index(d, name)
		if i < 0 {
			t.Fatalf("%s missing from %v", name, d)
		}
		return i
	}
	me := at("meshdns")
	for _, before := range []string{"cache", "hosts"} {
		if at(before) > me {
			t.Errorf("%s must come before meshdns", before)
		}
	}
	for _, after := range []string{"kubernetes", "file", "forward"} {
		if at(after) < me {
			t.Errorf("%s must come after meshdns", after)
		}
	}
	if at("kubernetes") != me+1 {
		t.Errorf("meshdns must sit immediately before kubernetes")
	}
	// Applying it again changes nothing and never touches the input.
	base := []string{"hosts", "kubernetes", "forward"}
	got := directives(base)
	if !slices.Equal(got, []string{"hosts", "meshdns", "kubernetes", "forward"}) || !slices.Equal(base, []string{"hosts", "kubernetes", "forward"}) {
		t.Errorf("directives(%v) = %v", base, got)
	}
	if again := directives(got); !slices.Equal(again, got) {
		t.Errorf("not idempotent: %v", again)
	}
}

func TestParse(t *testing.T) {
	f := "testdata/setup.json"
	tests := []struct {
		name   string
		input  string
		check  func(t *testing.T, m *MeshDNS)
		errMsg string // "" means it must parse
	}{
		{"defaults", "meshdns {\nfile " + f + "\n}", func(t *testing.T, m *MeshDNS) {
			cfg := m.table.Config()
			if cfg.Domain != "cluster.local" || cfg.TTL != 30 || cfg.Namespace != "" {
				t.Errorf("config %+v", cfg)
			}
			if !slices.Equal(cfg.Search, []string{"*.svc.cluster.local", "svc.cluster.local", "cluster.local"}) {
				t.Errorf("search %v", cfg.Search)
			}
			if !slices.Equal(m.Zones, []string{"."}) || len(m.Fall.Zones) != 0 || len(m.Authoritative) != 0 {
				t.Errorf("zones %v fall %v auth %v", m.Zones, m.Fall, m.Authoritative)
			}
			if s := m.sources[0].src.(*file.Source); s.Reload != 5*time.Second || s.Name() != "file:"+f {
				t.Errorf("file source %+v", s)
			}
		}, ""},
		{"every option", `meshdns cluster.local example.com {
			file ` + f + ` reload 10s
			file testdata/mesh.json reload 0
			domain Corp.Local.
			namespace BookInfo
			search a.example b.example
			ttl 5
			authoritative cluster.local
			fallthrough example.com
		}`, func(t *testing.T, m *MeshDNS) {
			cfg := m.table.Config()
			if cfg.Domain != "corp.local" || cfg.Namespace != "bookinfo" || cfg.TTL != 5 || m.ttl != 5 || m.domain != "corp.local." {
				t.Errorf("config %+v", cfg)
			}
			if !slices.Equal(cfg.Search, []string{"a.example", "b.example"}) {
				t.Errorf("search %v", cfg.Search)
			}
			if !slices.Equal(m.Zones, []string{"cluster.local.", "example.com."}) || !slices.Equal(m.Authoritative, []string{"cluster.local."}) || !slices.Equal(m.Fall.Zones, []string{"example.com."}) {
				t.Errorf("zones %v auth %v fall %v", m.Zones, m.Authoritative, m.Fall.Zones)
			}
			if len(m.sources) != 2 || m.sources[0].src.(*file.Source).Reload != 10*time.Second || m.sources[1].src.(*file.Source).Reload != 0 {
				t.Errorf("sources %+v", m.sources)
			}
		}, ""},
		{"namespace first in default search", "meshdns {\nfile " + f + "\nnamespace ns1\n}", func(t *testing.T, m *MeshDNS) {
			if got := m.table.Config().Search; !slices.Equal(got, []string{"ns1.svc.cluster.local", "*.svc.cluster.local", "svc.cluster.local", "cluster.local"}) {
				t.Errorf("search %v", got)
			}
		}, ""},
		{"search with no domain disables shortcuts", "meshdns {\nfile " + f + "\nsearch\n}", func(t *testing.T, m *MeshDNS) {
			if got := m.table.Config().Search; len(got) != 0 {
				t.Errorf("search %v", got)
			}
		}, ""},
		{"authoritative without zones means all", "meshdns example.com {\nfile " + f + "\nauthoritative\nfallthrough\n}", func(t *testing.T, m *MeshDNS) {
			if !slices.Equal(m.Authoritative, []string{"example.com."}) || !slices.Equal(m.Fall.Zones, []string{"."}) {
				t.Errorf("auth %v fall %v", m.Authoritative, m.Fall.Zones)
			}
		}, ""},

		{"xds takes the block's namespace and domain", "meshdns {\ndomain corp.local\nnamespace shop\nxds 127.0.0.1:15010 {\ninsecure\nnode_ip 10.0.0.5\nworkload vm1\n}\n}", func(t *testing.T, m *MeshDNS) {
			s := m.sources[0].src.(*xds.Source)
			if s.NodeID != "sidecar~10.0.0.5~vm1.shop~shop.svc.corp.local" || s.Name() != "xds:127.0.0.1:15010" {
				t.Errorf("node id %q, name %q", s.NodeID, s.Name())
			}
		}, ""},

		{"no source", "meshdns", nil, "no source configured"},
		{"xds without identity", "meshdns {\nxds 127.0.0.1:15010 {\ninsecure\n}\n}", nil, "missing node_ip, workload, namespace"},
		{"unknown option", "meshdns {\nfile " + f + "\nbogus 1\n}", nil, `unknown property "bogus"`},
		{"file without path", "meshdns {\nfile\n}", nil, "file PATH"},
		{"file missing", "meshdns {\nfile testdata/nope.json\n}", nil, "no such file"},
		{"file bad reload", "meshdns {\nfile " + f + " reload soon\n}", nil, `invalid reload duration "soon"`},
		{"file negative reload", "meshdns {\nfile " + f + " reload -1s\n}", nil, "invalid reload duration"},
		{"file extra args", "meshdns {\nfile " + f + " every 1s\n}", nil, "file PATH"},
		{"ttl word", "meshdns {\nfile " + f + "\nttl long\n}", nil, `ttl: want seconds in [0, 3600], got "long"`},
		{"ttl too big", "meshdns {\nfile " + f + "\nttl 3601\n}", nil, "ttl: want seconds"},
		{"ttl negative", "meshdns {\nfile " + f + "\nttl -1\n}", nil, "ttl: want seconds"},
		{"ttl missing", "meshdns {\nfile " + f + "\nttl\n}", nil, "Wrong argument count"},
		{"domain missing", "meshdns {\nfile " + f + "\ndomain\n}", nil, "domain: want one domain name"},
		{"domain bad", "meshdns {\nfile " + f + "\ndomain a..b\n}", nil, "domain: want one domain name"},
		{"namespace two", "meshdns {\nfile " + f + "\nnamespace a b\n}", nil, "namespace: want one namespace name"},
		{"namespace dotted", "meshdns {\nfile " + f + "\nnamespace a.b\n}", nil, "namespace: want one namespace name"},
		{"search bad", "meshdns {\nfile " + f + "\nsearch ok.example bad..example\n}", nil, `search: invalid domain "bad..example"`},
		{"same file twice", "meshdns {\nfile " + f + "\nfile " + f + "\n}", nil, "two sources named"},
		{"twice", "meshdns {\nfile " + f + "\n}\nmeshdns {\nfile " + f + "\n}", nil, "this plugin"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := caddy.NewTestController("dns", tc.input)
			c.ServerBlockKeys = []string{"."}
			m, err := parse(c)
			if tc.errMsg != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errMsg) {
					t.Fatalf("error %v, want one containing %q", err, tc.errMsg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, m)
		})
	}
}

// A malformed entry stops startup with an error naming the entry.
func TestParseMalformedFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.json")
	os.WriteFile(path, []byte(`{"table": {"ok.example.com": {"ips": ["1.1.1.1"]}, "bad.example.com": {"ips": ["300.1.1.1"]}}}`), 0o644)
	_, err := parse(caddy.NewTestController("dns", "meshdns {\nfile "+path+"\n}"))
	if err == nil || !strings.Contains(err.Error(), `entry "bad.example.com"`) {
		t.Fatalf("error %v", err)
	}
}

func TestMatchZone(t *testing.T) {
	zones := []string{".", "cluster.local.", "svc.cluster.local.", "example.com."}
	tests := []struct{ name, want string }{
		{"a.svc.cluster.local.", "svc.cluster.local."},
		{"svc.cluster.local.", "svc.cluster.local."},
		{"xsvc.cluster.local.", "cluster.local."},
		{"cluster.local.", "cluster.local."},
		{"notexample.com.", "."},
		{"www.example.com.", "example.com."},
		{".", "."},
	}
	for _, tc := range tests {
		if got := matchZone(zones, tc.name); got != tc.want {
			t.Errorf("matchZone(%q) = %q, want %q", tc.name, got, tc.want)
		}
		if got := matchZone(zones[1:], "www.example.org."); got != "" {
			t.Errorf("matchZone outside = %q", got)
		}
	}
}
