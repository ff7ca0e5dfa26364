package file

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshdns/meshdns/plugin/source"
	"github.com/meshdns/meshdns/plugin/table"
)

func TestDecode(t *testing.T) {
	entries, bad, _, err := Load("testdata/good.json")
	if err != nil || len(bad) > 0 {
		t.Fatal(err, bad)
	}
	if len(entries) != 4 {
		t.Fatalf("%d entries", len(entries))
	}
	// Sorted by host.
	api := entries[0]
	if api.Host != "api.example.com" || api.Registry != table.External || len(api.Ports) != 1 || api.Ports[0].Protocol != table.UDP {
		t.Errorf("api.example.com: %+v", api)
	}
	rev := entries[3]
	want := []netip.Addr{netip.MustParseAddr("10.96.0.10"), netip.MustParseAddr("fd00:10:96::a")}
	if rev.Host != "reviews.bookinfo.svc.cluster.local" || rev.Registry != table.Kubernetes || len(rev.Addrs) != 2 || rev.Addrs[0] != want[0] || rev.Addrs[1] != want[1] {
		t.Errorf("reviews: %+v", rev)
	}
	if entries[1].Endpoints[0].Hostname != "db-0" || entries[2].Target != "example.org" {
		t.Errorf("db, ext: %+v %+v", entries[1], entries[2])
	}
}

// A file that is not a name table is an error.
func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name, json, want string
	}{
		{"not json", `{`, "unexpected EOF"},
		{"no table", `{}`, `no "table"`},
		{"unknown field", `{"table": {"a.example.com": {"ip": ["1.1.1.1"]}}}`, `unknown field "ip"`},
		{"trailing data", `{"table": {}} {}`, "trailing data"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := Decode([]byte(tc.json))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

// An entry that cannot be served is left out, named, with its reason; the
// good entry next to it is kept.
func TestDecodeSkipsBadEntries(t *testing.T) {
	long := strings.Repeat("a", 63)
	tests := []struct {
		name, entry, reason, want string
	}{
		{"bad ip", `"a.example.com": {"ips": ["1.1.1"]}`, "invalid_address", `entry "a.example.com": invalid_address: ips`},
		{"bad host", `"*": {"ips": ["1.1.1.1"]}`, "invalid_host", `entry "*": invalid_host`},
		{"bad registry", `"a.example.com": {"registry": "Consul"}`, "invalid_registry", `unknown registry "Consul"`},
		{"port range", `"a.example.com": {"ips": ["1.1.1.1"], "ports": [{"name": "p", "port": 70000}]}`, "invalid_port", "out of range"},
		{"port protocol", `"a.example.com": {"ips": ["1.1.1.1"], "ports": [{"name": "p", "port": 7, "protocol": "HTTP"}]}`, "invalid_port", `unknown protocol "HTTP"`},
		{"bad endpoint", `"a.example.com": {"endpoints": [{"hostname": "x", "ip": "nope"}]}`, "invalid_endpoint", `endpoint "x"`},
		{"shortname mismatch", `"a.b.svc.cluster.local": {"registry": "Kubernetes", "shortname": "x", "namespace": "b"}`, "invalid_host", "shortname"},
		{"host over 253", `"` + long + "." + long + "." + long + "." + long + `.example": {"ips": ["1.1.1.1"]}`, "invalid_host", "longer than 253"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			entries, bad, err := Decode([]byte(`{"table": {"ok.example.com": {"ips": ["1.1.1.1"]}, ` + tc.entry + `}}`))
			if err != nil {
				t.Fatal(err)
			}
			if len(entries) != 1 || entries[0].Host != "ok.example.com" {
				t.Errorf("entries %+v", entries)
			}
			if len(bad) != 1 || bad[0].Reason != tc.reason || !strings.Contains(bad[0].Err.Error(), tc.want) {
				t.Fatalf("rejections %+v, want one %s containing %q", bad, tc.reason, tc.want)
			}
		})
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	entries, _, _, err := Load("testdata/good.json")
	if err != nil {
		t.Fatal(err)
	}
	data, err := Marshal(entries)
	if err != nil {
		t.Fatal(err)
	}
	again, _, err := Decode(data)
	if err != nil {
		t.Fatalf("%v\n%s", err, data)
	}
	tb := table.New(table.Config{Domain: "cluster.local"})
	src := tb.AddSource("x")
	tb.Replace(src, entries)
	if res := tb.Replace(src, again); res.Unchanged != len(entries) {
		t.Fatalf("round trip changed entries: %+v\n%s", res, data)
	}
}

// recorder is a source.Sink that keeps what it was told.
type recorder struct {
	mu       sync.Mutex
	replaced [][]table.Entry
	rejected []string
	synced   bool
	up       []bool
}

func (r *recorder) Replace(es []table.Entry, skipped []source.Rejection) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range skipped {
		r.rejected = append(r.rejected, s.Reason)
	}
	r.replaced = append(r.replaced, es)
}
func (r *recorder) Apply([]table.Entry, []string) { panic("file source only replaces") }
func (r *recorder) Reject(_, reason string, _ error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rejected = append(r.rejected, reason)
}
func (r *recorder) Synced() { r.synced = true }
func (r *recorder) Up(up bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.up = append(r.up, up)
}

func (r *recorder) counts() (int, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.replaced), len(r.rejected)
}

func TestReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mesh.json")
	write := func(s string) {
		t.Helper()
		// A new mtime and size each time, so the change is noticed.
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		now := time.Now().Add(time.Duration(len(s)) * time.Second)
		os.Chtimes(path, now, now)
	}
	write(`{"table": {"a.example.com": {"ips": ["1.1.1.1"]}}}`)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rec := &recorder{}
	s := &Source{Path: path, Reload: 10 * time.Millisecond}
	if err := s.Start(ctx, rec); err != nil {
		t.Fatal(err)
	}
	if !rec.synced {
		t.Fatal("not synced after Start")
	}
	waitFor := func(replaced, rejected int) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			if r, j := rec.counts(); r == replaced && j == rejected {
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
		r, j := rec.counts()
		t.Fatalf("replaced %d rejected %d, want %d %d", r, j, replaced, rejected)
	}
	waitFor(1, 0)
	write(`{"table": {"a.example.com": {"ips": ["1.1.1.2"]}}}`)
	waitFor(2, 0)
	// Not a name table: skipped whole, the last good table stays.
	write(`{"table": {"a.example.com": {"ips": ["1.1.1.3"]}}`)
	waitFor(2, 1)
	write(`{"table": {"b.example.com": {"ips": ["1.1.1.3"]}, "a.example.com": {"ips": ["1.1.1.2"]}}}`)
	waitFor(3, 1)
	rec.mu.Lock()
	last := rec.replaced[2]
	rec.mu.Unlock()
	if len(last) != 2 || last[0].Host != "a.example.com" {
		t.Fatalf("last load %+v", last)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		rec.mu.Lock()
		down := !rec.up[len(rec.up)-1]
		rec.mu.Unlock()
		if down {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a missing file did not mark the source down")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Reported once when it went missing, not on every tick after that.
	time.Sleep(20 * s.Reload)
	if _, j := rec.counts(); j != 2 {
		t.Fatalf("%d rejections after the file went missing, want 2", j)
	}
}

func TestStartFailsOnMalformedFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mesh.json")
	os.WriteFile(path, []byte(`{"table": {"a.example.com": {"ips": ["1.1.1.1"]}}`), 0o644)
	err := (&Source{Path: path}).Start(context.Background(), &recorder{})
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("error %v", err)
	}
}

func TestStartSkipsBadEntry(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mesh.json")
	os.WriteFile(path, []byte(`{"table": {"a.example.com": {"ips": ["x"]}, "b.example.com": {"ips": ["1.1.1.1"]}}}`), 0o644)
	rec := &recorder{}
	if err := (&Source{Path: path}).Start(context.Background(), rec); err != nil {
		t.Fatal(err)
	}
	if len(rec.replaced) != 1 || len(rec.replaced[0]) != 1 || rec.replaced[0][0].Host != "b.example.com" || len(rec.rejected) != 1 || rec.rejected[0] != "invalid_address" {
		t.Fatalf("replaced %+v, rejected %v", rec.replaced, rec.rejected)
	}
}

// FuzzDecode: any input is decoded or refused without a panic, and what
// decodes survives Marshal and Decode unchanged.
func FuzzDecode(f *testing.F) {
	good, _ := os.ReadFile("testdata/good.json")
	f.Add(good)
	f.Add([]byte(`{"table": {"a.example.com": {"ips": ["1.1.1.1"]}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		entries, _, err := Decode(data)
		if err != nil {
			return
		}
		out, err := Marshal(entries)
		if err != nil {
			t.Fatal(err)
		}
		again, bad, err := Decode(out)
		if err != nil || len(again) != len(entries) || len(bad) > 0 {
			t.Fatalf("round trip: %v, %d entries, want %d\n%s", err, len(again), len(entries), out)
		}
	})
}
