package xds

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/meshdns/meshdns/plugin/source/file"
	"github.com/meshdns/meshdns/plugin/source/xds/nds"
	"github.com/meshdns/meshdns/plugin/table"
)

// Each applied push is written in the file source's format, atomically; an
// unchanged push does not rewrite it, a NACKed one does not touch it.
func TestSnapshotWritten(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "mesh.json")
	f := newFake()
	addr, _ := serve(t, f, "127.0.0.1:0")
	s := testSource(addr)
	s.Snapshot = path
	sink := newSink()
	start(t, s, sink)
	f.next(t)

	tbl := map[string]*nds.NameTable_NameInfo{
		"a.ns.svc.cluster.local": kube("a", "ns", "10.96.0.1", "fd00::1"),
		"ext.example.com":        ips("240.240.0.1"),
	}
	pushAndWait := func(version string, tbl map[string]*nds.NameTable_NameInfo) {
		t.Helper()
		f.send(t, nameTable(version, "n"+version, tbl))
		f.next(t)
	}
	pushAndWait("1", tbl)
	eventually(t, "snapshot", func() bool { _, err := os.Stat(path); return err == nil })
	check := func(want []string) os.FileInfo {
		t.Helper()
		es, _, _, err := file.Load(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := hostLines(es); !slices.Equal(got, want) {
			t.Errorf("snapshot\n%q\nwant\n%q", got, want)
		}
		if names, _ := os.ReadDir(dir); len(names) != 1 {
			t.Errorf("directory holds %v, want only the snapshot", names)
		}
		fi, _ := os.Stat(path)
		return fi
	}
	want := []string{"a.ns.svc.cluster.local Kubernetes 10.96.0.1,fd00::1", "ext.example.com External 240.240.0.1"}
	fi := check(want)

	// The same table again: not rewritten (a rewrite is a new inode).
	pushAndWait("2", tbl)
	f.send(t, nameTable("3", "n3", tbl)) // the snapshot is saved after the ACK: one more push orders it
	f.next(t)
	if now := check(want); !os.SameFile(fi, now) {
		t.Error("unchanged table rewritten")
	}

	tbl["new.example.com"] = ips("240.240.0.9")
	pushAndWait("4", tbl)
	want = append(want, "new.example.com External 240.240.0.9")
	eventually(t, "snapshot update", func() bool {
		es, _, _, err := file.Load(path)
		return err == nil && len(es) == 3
	})
	check(want)
}

// At start a good snapshot is served (and makes the source ready) before any
// connection; the first push then replaces it as a diff.
func TestSnapshotServedAtStart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mesh.json")
	data, _ := file.Marshal(mustEntries(t, map[string]*nds.NameTable_NameInfo{
		"a.ns.svc.cluster.local": kube("a", "ns", "10.96.0.1"),
		"old.example.com":        ips("240.240.0.1"),
	}))
	os.WriteFile(path, data, 0o600)

	addr := freeAddr(t) // istiod is down
	s := testSource(addr)
	s.Snapshot = path
	sink := newSink()
	start(t, s, sink)
	// Synchronously, before Start returned.
	sink.state(func(s *recSink) {
		if s.synced != 1 || len(s.replaces) != 1 || len(s.rejects) != 0 {
			t.Errorf("synced %d, %d replaces, rejects %q", s.synced, len(s.replaces), s.rejects)
		}
	})
	if got, want := sink.hosts(), []string{"a.ns.svc.cluster.local Kubernetes 10.96.0.1", "old.example.com External 240.240.0.1"}; !slices.Equal(got, want) {
		t.Errorf("served %q, want %q", got, want)
	}
	if sink.isUp() {
		t.Error("up without istiod")
	}

	f := newFake()
	serve(t, f, addr)
	f.next(t)
	f.send(t, nameTable("v1", "n1", map[string]*nds.NameTable_NameInfo{
		"a.ns.svc.cluster.local": kube("a", "ns", "10.96.0.1"),
		"new.example.com":        ips("240.240.0.2"),
	}))
	f.next(t)
	sink.state(func(s *recSink) {
		res := s.results[len(s.results)-1]
		if len(s.replaces) != 2 || res.Added != 1 || res.Deleted != 1 || res.Unchanged != 1 || s.synced != 1 {
			t.Errorf("%d replaces, last %+v, synced %d", len(s.replaces), res, s.synced)
		}
	})
	// The push becomes the snapshot; waiting for it also keeps the write
	// from racing the removal of the test's directory.
	eventually(t, "the push saved as the snapshot", func() bool {
		es, _, _, err := file.Load(path)
		return err == nil && slices.Equal(hostLines(es), []string{"a.ns.svc.cluster.local Kubernetes 10.96.0.1", "new.example.com External 240.240.0.2"})
	})
}

// A snapshot that is not a good name table is ignored with a rejection; the
// source waits for istiod, and the first push overwrites the file.
func TestSnapshotIgnored(t *testing.T) {
	tests := []struct{ name, content string }{
		{"corrupt", "{\"table\": {\"a.example.com\": {\"ips\": [\"10.0"},
		{"foreign", `{"apiVersion": "v1", "kind": "ConfigMap"}`},
		{"empty", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, addr, path, sink := startFromSnapshot(t, tt.content)
			sink.state(func(s *recSink) {
				if s.synced != 0 || len(s.replaces) != 0 || !slices.Equal(s.rejects, []string{path + " snapshot"}) {
					t.Errorf("synced %d, %d replaces, rejects %q", s.synced, len(s.replaces), s.rejects)
				}
			})

			serve(t, f, addr)
			f.next(t)
			f.send(t, nameTable("v1", "n1", map[string]*nds.NameTable_NameInfo{"a.example.com": ips("240.240.0.1")}))
			f.next(t)
			eventually(t, "snapshot rewritten", func() bool {
				es, _, _, err := file.Load(path)
				return err == nil && len(es) == 1
			})
		})
	}
}

// A snapshot entry that cannot be served is skipped with a rejection that
// names it; the rest of the snapshot serves.
func TestSnapshotBadEntry(t *testing.T) {
	_, _, _, sink := startFromSnapshot(t, `{"table": {"a.example.com": {"ips": ["10.0.0.300"]}, "b.example.com": {"ips": ["10.0.0.3"]}}}`)
	sink.state(func(s *recSink) {
		if s.synced != 1 || len(s.replaces) != 1 || len(s.replaces[0]) != 1 || !slices.Equal(s.rejects, []string{"a.example.com invalid_address"}) {
			t.Errorf("synced %d, replaces %v, rejects %q", s.synced, s.replaces, s.rejects)
		}
	})
}

// startFromSnapshot starts a source whose snapshot file holds content while
// its istiod, f at addr, is down.
func startFromSnapshot(t *testing.T, content string) (f *fakeADS, addr, path string, sink *recSink) {
	path = filepath.Join(t.TempDir(), "mesh.json")
	os.WriteFile(path, []byte(content), 0o600)
	f = newFake()
	addr, stop := serve(t, f, "127.0.0.1:0")
	stop()
	s := testSource(addr)
	s.Snapshot = path
	sink = newSink()
	start(t, s, sink)
	return f, addr, path, sink
}

func TestWriteAtomicErrors(t *testing.T) {
	dir := t.TempDir()
	if err := writeAtomic(filepath.Join(dir, "missing", "mesh.json"), []byte("{}")); err == nil {
		t.Error("no error for a missing directory")
	}
	// The target is a directory: the rename fails and the temporary file goes.
	target := filepath.Join(dir, "taken")
	os.Mkdir(target, 0o700)
	os.WriteFile(filepath.Join(target, "x"), nil, 0o600)
	if err := writeAtomic(target, []byte("{}")); err == nil {
		t.Error("no error renaming over a directory")
	}
	if names, _ := os.ReadDir(dir); len(names) != 1 {
		t.Errorf("left behind %v", names)
	}
}

func mustEntries(t *testing.T, tbl map[string]*nds.NameTable_NameInfo) []table.Entry {
	t.Helper()
	es, bad := entries(&nds.NameTable{Table: tbl})
	if len(bad) > 0 {
		t.Fatal(bad)
	}
	return es
}
