// Command chaos injects faults into meshdns and what it depends on, under
// a fixed-rate load of mesh and external names, and writes what a stub
// resolver saw (docs/reliability.md): istiod killed, frozen or restarted
// with another table; the API server killed, frozen, or restarted so that
// every watch lists 10k Services again; meshdns killed and started with
// its control plane away, with and without a snapshot; the upstream dead,
// slow or answering SERVFAIL behind the shipped Corefiles; a flood at
// three times what the server answers; a malformed object; the snapshot's
// disk full or read-only.
//
// Run it from test/ (make chaos), as root (the VM, the tmpfs):
//
//	go run ./chaos [-out FILE] [-faults a,b] [-sources a,b] [-corefile FILE] [-vm-corefile FILE] [-fault 10s ...]
//
// -faults and -sources re-measure a few rows; -corefile and -vm-corefile
// run a candidate in the shape of Corefile.example or docs/vm/Corefile.
// go test ./chaos runs the short profile of a few rows.
package main

import (
	"bytes"
	"flag"
	"log"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/meshdns/meshdns/test/harness"
)

// profile is how long and how hard each row runs.
type profile struct {
	Before, Fault, Freeze, After time.Duration // load before the fault; a fault; a freeze (SIGSTOP); load after recovery
	MeshQPS, ExternalQPS         int
	UpstreamFor                  time.Duration // the upstream rows' fault
	UpstreamMeshQPS              int
	UpstreamExternalQPS          int
	FloodFor                     time.Duration
	RelistServices               int // Services the API server holds when it restarts for the relist
	RecoverLimit                 time.Duration
	SettleWindow, SettleLimit    time.Duration // idle RSS: moved less than 1 MiB in the window, or the limit passed
}

// fullProfile is make chaos's.
var fullProfile = profile{
	Before: 3 * time.Second, Fault: 10 * time.Second, Freeze: 15 * time.Second, After: 5 * time.Second,
	MeshQPS: 1000, ExternalQPS: 1000,
	UpstreamFor: 20 * time.Second, UpstreamMeshQPS: 500, UpstreamExternalQPS: 5000,
	FloodFor: 5 * time.Second, RelistServices: 10000, RecoverLimit: time.Minute,
	SettleWindow: 3 * time.Second, SettleLimit: 20 * time.Second,
}

// options are what a run is pointed at.
type options struct {
	corefile   string // Corefile.example or a candidate in its shape
	vmCorefile string // docs/vm/Corefile or a candidate
	faults     []string
	sources    []string // run only these sources of each fault (default: all)
	root       string   // the repository
}

// sourcesOf is the sources f runs with here.
func (o options) sourcesOf(f *fault) []string {
	if len(o.sources) == 0 {
		return f.sources
	}
	var out []string
	for _, s := range f.sources {
		if slices.Contains(o.sources, s) {
			out = append(out, s)
		}
	}
	return out
}

func (o options) name(path, shipped string) string {
	if rel, err := filepath.Rel(o.root, path); err == nil && rel == shipped {
		return shipped
	}
	return path + " (a candidate)"
}

func (o options) corefileName() string { return o.name(o.corefile, "Corefile.example") }
func (o options) vmCorefileName() string {
	return o.name(o.vmCorefile, filepath.Join("docs", "vm", "Corefile"))
}

// selected is the faults the options name, in the full run's order.
func (o options) selected(t harness.TB) []*fault {
	all := faults()
	if len(o.faults) == 0 {
		return all
	}
	var out []*fault
	for _, name := range o.faults {
		i := slices.IndexFunc(all, func(f *fault) bool { return f.name == name })
		if i < 0 {
			var names []string
			for _, f := range all {
				names = append(names, f.name)
			}
			t.Fatalf("no fault %q; the faults are %s", name, strings.Join(names, ", "))
		}
		out = append(out, all[i])
	}
	slices.SortStableFunc(out, func(a, b *fault) int {
		return slices.Index(all, a) - slices.Index(all, b)
	})
	return out
}

// run runs the selected faults and returns their rows.
func run(t harness.TB, prof profile, opt options) *report {
	t.Helper()
	begin := time.Now()
	rep := &report{prof: prof, opt: opt, loadAvg: [2]string{harness.LoadAvg()}}
	fs := opt.selected(t)
	for _, s := range opt.sources {
		if !slices.Contains([]string{srcKubernetes, srcXDS, srcFile, srcVM}, s) {
			t.Fatalf("no source %q; the sources are %s, %s, %s and %s", s, srcKubernetes, srcXDS, srcFile, srcVM)
		}
	}
	needIstiod, needVM := false, false
	for _, f := range fs {
		for _, s := range opt.sourcesOf(f) {
			needIstiod = needIstiod || s == srcXDS || s == srcVM
			needVM = needVM || s == srcVM
		}
	}
	l := newLab(t, prof, opt, needIstiod, needVM)
	rep.serverCPU = l.serverCPU
	for _, f := range fs {
		rep.rows = append(rep.rows, l.runFault(f)...)
	}
	rep.took = time.Since(begin)
	rep.loadAvg[1] = harness.LoadAvg()
	return rep
}

func main() {
	var out, only, sources, corefile, vmCorefile string
	for _, f := range []struct {
		v           *string
		name, usage string
	}{
		{&out, "out", "write the report here (default: stdout)"},
		{&only, "faults", "run only these faults, comma-separated (default: all)"},
		{&sources, "sources", "run only these sources, comma-separated: kubernetes, xds, file, xds-vm (default: all)"},
		{&corefile, "corefile", "the Corefile in Corefile.example's shape to run (default: the repository's Corefile.example)"},
		{&vmCorefile, "vm-corefile", "the Corefile in docs/vm/Corefile's shape to run in the VM (default: the repository's)"},
	} {
		flag.StringVar(f.v, f.name, "", f.usage)
	}
	p := fullProfile
	flag.DurationVar(&p.Before, "before", p.Before, "load before each fault")
	flag.DurationVar(&p.Fault, "fault", p.Fault, "how long a component stays down")
	flag.DurationVar(&p.Freeze, "freeze", p.Freeze, "how long a component stays SIGSTOPped")
	flag.DurationVar(&p.After, "after", p.After, "load after recovery")
	flag.DurationVar(&p.UpstreamFor, "upstream-for", p.UpstreamFor, "how long the upstream is faulty")
	flag.DurationVar(&p.FloodFor, "flood-for", p.FloodFor, "how long the flood lasts")
	flag.IntVar(&p.MeshQPS, "mesh-qps", p.MeshQPS, "mesh-name queries a second")
	flag.IntVar(&p.ExternalQPS, "external-qps", p.ExternalQPS, "external queries a second")
	flag.IntVar(&p.UpstreamMeshQPS, "upstream-mesh-qps", p.UpstreamMeshQPS, "mesh-name queries a second in the upstream rows")
	flag.IntVar(&p.UpstreamExternalQPS, "upstream-external-qps", p.UpstreamExternalQPS, "external queries a second in the upstream rows")
	flag.IntVar(&p.RelistServices, "relist-services", p.RelistServices, "Services the API server holds for the relist")
	flag.Parse()
	log.SetFlags(log.Ltime)

	r := &harness.Runner{Prefix: "meshdns-chaos-"}
	defer r.Teardown()
	r.InterruptOnSignal(nil)
	opt := defaultOptions(r)
	if corefile != "" {
		opt.corefile = absolute(r, corefile)
	}
	if vmCorefile != "" {
		opt.vmCorefile = absolute(r, vmCorefile)
	}
	if only != "" {
		opt.faults = strings.Split(only, ",")
	}
	if sources != "" {
		opt.sources = strings.Split(sources, ",")
	}
	rep := run(r, p, opt)
	var buf bytes.Buffer
	rep.write(&buf)
	if out == "" {
		os.Stdout.Write(buf.Bytes())
		return
	}
	if err := os.WriteFile(out, buf.Bytes(), 0o644); err != nil {
		r.Fatalf("%v", err)
	}
	log.Printf("wrote %s in %s", out, rep.took.Round(time.Second))
}

func defaultOptions(t harness.TB) options {
	root := harness.RepoRoot(t)
	return options{
		root:       root,
		corefile:   filepath.Join(root, "Corefile.example"),
		vmCorefile: filepath.Join(root, "docs", "vm", "Corefile"),
	}
}

func absolute(t harness.TB, path string) string {
	abs, err := filepath.Abs(path)
	if err != nil {
		t.Fatalf("%v", err)
	}
	if _, err := os.Stat(abs); err != nil {
		t.Fatalf("%v", err)
	}
	return abs
}
