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

		{"the block takes the xds source's namespace", "meshdns {\nxds 127.0.0.1:15010 {\ninsecure\nnode_ip 10.0.0.5\nworkload vm1\nnamespace shop\n}\n}", func(t *testing.T, m *MeshDNS) {
			if cfg := m.table.Config(); cfg.Namespace != "shop" || cfg.Search[0] != "shop.svc.cluster.local" {
				t.Errorf("config %+v", cfg)
			}
		}, ""},

		{"no source", "meshdns", nil, "no source configured"},
		{"xds without identity", "meshdns {\nxds 127.0.0.1:15010 {\ninsecure\n}\n}", nil, "no node identity"},
		{"unknown option", "meshdns {\nfile " + f + "\nbogus 1\n}", nil, `unknown property "bogus"`},
		{"file without path", "meshdns {\nfile\n}", nil, "file PATH"},
		{"file missing", "meshdns {\nfile testdata/nope.json\n}", nil, "no such file"},
		{"file bad reload", "meshdns {\nfile " + f + " reload soon\n}", nil, `invalid reload duration "soon"`},
		{"file negative reload", "meshdns {\nfile " + f + " reload -1s\n}", nil, "invalid reload duration"},
		{"file extra args", "meshdns {\nfile " + f + " every 1s\n}", nil, "file PATH"},
		{"ttl word", "meshdns {\nfile " + f + "\nttl long\n}", nil, `ttl: want seconds in [0, 3600], got "long"`},
		{"ttl too big", "meshdns {\nfile " + f + "\nttl 3601\n}", nil, "ttl: want seconds"},
		{"ttl negative", "meshdns {\nfile " + f + "\nttl -1\n}", nil, "ttl: want seconds"},
		{"max_fallthrough zero", "meshdns {\nfile " + f + "\nmax_fallthrough 0\n}", nil, "max_fallthrough: want a positive number"},
		{"max_fallthrough word", "meshdns {\nfile " + f + "\nmax_fallthrough many\n}", nil, "max_fallthrough: want a positive number"},
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

// A file that is not a name table stops startup with an error naming it; a
// bad entry in a good file does not (it is skipped when the source starts).
func TestParseMalformedFile(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"table": {"ok.example.com": {"ips": ["1.1.1.1"]}`), 0o644)
	_, err := parse(caddy.NewTestController("dns", "meshdns {\nfile "+bad+"\n}"))
	if err == nil || !strings.Contains(err.Error(), bad) {
		t.Fatalf("error %v", err)
	}
	entry := filepath.Join(dir, "entry.json")
	os.WriteFile(entry, []byte(`{"table": {"ok.example.com": {"ips": ["1.1.1.1"]}, "bad.example.com": {"ips": ["300.1.1.1"]}}}`), 0o644)
	if _, err := parse(caddy.NewTestController("dns", "meshdns {\nfile "+entry+"\n}")); err != nil {
		t.Fatal(err)
	}
}

// A source option ends where its own block ends, or at the end of its line
// when it has none, wherever it stands among the other options.
func TestParseSourceBlocks(t *testing.T) {
	f := "testdata/setup.json"
	tests := []struct {
		name, body string
		want       []string // source names, then namespace and fallthrough zones
	}{
		{"kubernetes without block, options after", "kubernetes /k\nnamespace shop\nfallthrough", []string{"kubernetes:Kubernetes", "shop", "."}},
		{"kubernetes with arguments and block", "kubernetes /k ctx {\ncluster east\n}\nnamespace shop", []string{"kubernetes:east", "shop"}},
		{"kubernetes empty block", "kubernetes {\n}\nnamespace shop", []string{"kubernetes:Kubernetes", "shop"}},
		{"kubernetes block on one line", "kubernetes { }\nfallthrough", []string{"kubernetes:Kubernetes", "", "."}},
		{"options before and after", "namespace shop\nkubernetes /k {\ncluster a\n}\nkubernetes /k\nfallthrough", []string{"kubernetes:a", "kubernetes:Kubernetes", "shop", "."}},
		{"two blocks in a row", "kubernetes {\ncluster a\n}\nkubernetes {\ncluster b\n}", []string{"kubernetes:a", "kubernetes:b", ""}},
		{"xds without block", "namespace shop\nxds 127.0.0.1:15010\nfallthrough", nil},
		{"xds block then file", "xds 127.0.0.1:15010 {\ninsecure\nnode_ip 10.0.0.5\nworkload vm\n}\nfile " + f + "\nnamespace shop", []string{"xds:127.0.0.1:15010", "file:" + f, "shop"}},
		{"file then kubernetes without block", "file " + f + "\nkubernetes\nnamespace shop", []string{"file:" + f, "kubernetes:Kubernetes", "shop"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := caddy.NewTestController("dns", "meshdns {\n"+tc.body+"\n}")
			c.ServerBlockKeys = []string{"."}
			m, err := parse(c)
			if tc.want == nil {
				// xds without a block has no tls or insecure: its own error,
				// not an unknown property of the meshdns block.
				if err == nil || !strings.Contains(err.Error(), "xds: want 'tls") {
					t.Fatalf("error %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, s := range m.sources {
				got = append(got, s.name)
			}
			got = append(got, m.table.Config().Namespace)
			got = append(got, m.Fall.Zones...)
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestParseSourceBlockErrors(t *testing.T) {
	f := "testdata/setup.json"
	tests := []struct{ name, body, want string }{
		{"unknown option inside the source block", "kubernetes {\nnamespace shop\n}", `kubernetes: unknown property "namespace"`},
		{"brace on its own line", "kubernetes\n{\ncluster a\n}", "'{' must be on the line of the option it opens"},
		{"file with a block", "file " + f + " {\nreload 1s\n}", "file: takes no block"},
		{"two clusters of the client", "kubernetes /k {\ncluster a\nclient_cluster\n}\nkubernetes /k {\ncluster b\nclient_cluster\n}",
			"client_cluster is set for more than one cluster: a, b"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := caddy.NewTestController("dns", "meshdns {\n"+tc.body+"\n}")
			c.ServerBlockKeys = []string{"."}
			_, err := parse(c)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// Options that are accepted but cannot do what they say are named.
func TestParseWarnings(t *testing.T) {
	f := "testdata/setup.json"
	tests := []struct {
		name, input string
		want        []string
	}{
		{"none", "meshdns {\nfile " + f + "\nauthoritative cluster.local\nfallthrough\n}", nil},
		{"authoritative outside zones", "meshdns cluster.local {\nfile " + f + "\nauthoritative example.com\n}", []string{"authoritative zone example.com. is outside"}},
		{"fallthrough outside zones", "meshdns cluster.local {\nfile " + f + "\nfallthrough example.com\n}", []string{"fallthrough zone example.com. is outside"}},
		{"fallthrough inside authoritative", "meshdns {\nfile " + f + "\nauthoritative cluster.local\nfallthrough svc.cluster.local\n}", []string{"fallthrough zone svc.cluster.local. is inside authoritative zone cluster.local."}},
		{"domain outside zones", "meshdns example.com {\nfile " + f + "\n}", []string{"cluster domain cluster.local. is outside"}},
		{"authoritative containing the zone", "meshdns svc.cluster.local {\nfile " + f + "\nauthoritative cluster.local\n}", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := caddy.NewTestController("dns", tc.input)
			c.ServerBlockKeys = []string{"."}
			m, err := parse(c)
			if err != nil {
				t.Fatal(err)
			}
			got := m.warnings()
			if len(got) != len(tc.want) {
				t.Fatalf("warnings %q, want %d", got, len(tc.want))
			}
			for i, w := range tc.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("warning %q, want one containing %q", got[i], w)
				}
			}
		})
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
