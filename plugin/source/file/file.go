// Package file is the static source: a JSON name table on disk, re-read when
// it changes. The format is Istio's NDS NameTable in JSON (table, ips,
// registry, shortname, namespace) plus ports, endpoints and target, so an xDS
// snapshot and a hand-written file are the same thing.
package file

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/meshdns/meshdns/plugin/source"
	"github.com/meshdns/meshdns/plugin/table"
)

// NameTable is the file's top level.
type NameTable struct {
	Table map[string]NameInfo `json:"table"`
}

// NameInfo is one host.
type NameInfo struct {
	IPs       []string   `json:"ips,omitempty"`
	Registry  string     `json:"registry,omitempty"`
	Shortname string     `json:"shortname,omitempty"`
	Namespace string     `json:"namespace,omitempty"`
	Ports     []Port     `json:"ports,omitempty"`
	Endpoints []Endpoint `json:"endpoints,omitempty"`
	Target    string     `json:"target,omitempty"`
}

// Port is one service port; protocol is TCP (default), UDP or SCTP.
type Port struct {
	Name     string `json:"name,omitempty"`
	Port     int    `json:"port"`
	Protocol string `json:"protocol,omitempty"`
}

// Endpoint is one endpoint of a headless service.
type Endpoint struct {
	Hostname string `json:"hostname,omitempty"`
	IP       string `json:"ip"`
}

// Decode reads a name table. A file that is not a name table (bad JSON,
// unknown fields, trailing data) is an error; an entry that cannot be served
// is left out and returned as a rejection naming it, so one bad host never
// takes the others down.
func Decode(data []byte) ([]table.Entry, []source.Rejection, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var nt NameTable
	if err := dec.Decode(&nt); err != nil {
		return nil, nil, err
	}
	if dec.More() {
		return nil, nil, fmt.Errorf("trailing data after the name table")
	}
	if nt.Table == nil {
		return nil, nil, fmt.Errorf(`no "table" object`)
	}
	entries := make([]table.Entry, 0, len(nt.Table))
	var bad []source.Rejection
	for host, info := range nt.Table {
		e, err := info.entry(host)
		if err != nil {
			bad = append(bad, source.Rejection{Object: host, Reason: reason(err), Err: fmt.Errorf("entry %q: %w", host, err)})
			continue
		}
		entries = append(entries, e)
	}
	slices.SortFunc(entries, func(a, b table.Entry) int { return strings.Compare(a.Host, b.Host) })
	slices.SortFunc(bad, func(a, b source.Rejection) int { return strings.Compare(a.Object, b.Object) })
	return entries, bad, nil
}

// errRegistry marks an unknown registry.
var errRegistry = errors.New("invalid_registry")

func reason(err error) string {
	if errors.Is(err, errRegistry) {
		return errRegistry.Error()
	}
	return table.Reason(err)
}

func (n NameInfo) entry(host string) (table.Entry, error) {
	reg, err := table.ParseRegistry(n.Registry)
	if err != nil {
		return table.Entry{}, fmt.Errorf("%w: %v", errRegistry, err)
	}
	e := table.Entry{Host: host, Registry: reg, Target: n.Target}
	if n.Shortname != "" || n.Namespace != "" {
		if reg != table.Kubernetes || !strings.HasPrefix(strings.ToLower(host), strings.ToLower(n.Shortname+"."+n.Namespace+".svc.")) {
			return e, fmt.Errorf("%w: shortname %q and namespace %q need registry Kubernetes and a host <shortname>.<namespace>.svc.<domain>", table.ErrHost, n.Shortname, n.Namespace)
		}
	}
	for _, s := range n.IPs {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return e, fmt.Errorf("%w: ips: %v", table.ErrAddress, err)
		}
		e.Addrs = append(e.Addrs, a)
	}
	for _, p := range n.Ports {
		if p.Port < 1 || p.Port > 65535 {
			return e, fmt.Errorf("%w: port %q: number %d out of range", table.ErrPort, p.Name, p.Port)
		}
		proto := table.TCP
		if p.Protocol != "" {
			if proto, err = table.ParseProtocol(p.Protocol); err != nil {
				return e, fmt.Errorf("%w: port %q: %v", table.ErrPort, p.Name, err)
			}
		}
		e.Ports = append(e.Ports, table.Port{Name: p.Name, Number: uint16(p.Port), Protocol: proto})
	}
	for _, ep := range n.Endpoints {
		a, err := netip.ParseAddr(ep.IP)
		if err != nil {
			return e, fmt.Errorf("%w: endpoint %q: %v", table.ErrEndpoint, ep.Hostname, err)
		}
		e.Endpoints = append(e.Endpoints, table.Endpoint{Hostname: ep.Hostname, Addr: a})
	}
	return table.Normalize(e)
}

// Marshal writes entries in the file format, sorted by host.
func Marshal(entries []table.Entry) ([]byte, error) {
	nt := NameTable{Table: make(map[string]NameInfo, len(entries))}
	for _, e := range entries {
		n := NameInfo{Registry: e.Registry.String(), Target: e.Target}
		for _, a := range e.Addrs {
			n.IPs = append(n.IPs, a.String())
		}
		for _, p := range e.Ports {
			n.Ports = append(n.Ports, Port{Name: p.Name, Port: int(p.Number), Protocol: strings.ToUpper(p.Protocol.String())})
		}
		for _, ep := range e.Endpoints {
			n.Endpoints = append(n.Endpoints, Endpoint{Hostname: ep.Hostname, IP: ep.Addr.String()})
		}
		nt.Table[e.Host] = n
	}
	return json.MarshalIndent(nt, "", "  ")
}

// Load reads and decodes a file.
func Load(path string) ([]table.Entry, []source.Rejection, []byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, nil, err
	}
	entries, bad, err := Decode(data)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return entries, bad, data, nil
}

// Source serves a file and re-reads it every Reload (0: never) when it changed.
type Source struct {
	Path   string
	Reload time.Duration

	// checked holds what Check decoded, for Start, so a large file is not
	// decoded twice at start-up.
	checked    []table.Entry
	checkedBad []source.Rejection
	checkedSum [sha256.Size]byte
}

// Check reads and decodes the file now, so a file that is not a name table
// stops CoreDNS before it serves anything.
func (s *Source) Check() error {
	entries, bad, data, err := Load(s.Path)
	if err != nil {
		return err
	}
	s.checked, s.checkedBad, s.checkedSum = entries, bad, sha256.Sum256(data)
	return nil
}

// Name implements source.Source.
func (s *Source) Name() string { return "file:" + s.Path }

// Start loads the file once, synchronously, then watches it.
func (s *Source) Start(ctx context.Context, sink source.Sink) error {
	if s.checked == nil {
		if err := s.Check(); err != nil {
			sink.Up(false)
			return err
		}
	}
	entries, bad, sum := s.checked, s.checkedBad, s.checkedSum
	s.checked, s.checkedBad = nil, nil
	sink.Replace(entries, bad)
	sink.Up(true)
	sink.Synced()
	if s.Reload <= 0 {
		return nil
	}
	go s.watch(ctx, sink, sum)
	return nil
}

func (s *Source) watch(ctx context.Context, sink source.Sink, sum [sha256.Size]byte) {
	tick := time.NewTicker(s.Reload)
	defer tick.Stop()
	var last os.FileInfo
	// A file that stays unreadable is reported when it becomes so, not on
	// every tick.
	readable := true
	unreadable := func(err error) {
		if readable {
			sink.Up(false)
			sink.Reject(s.Path, "read", err)
		}
		readable = false
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		fi, err := os.Stat(s.Path)
		if err != nil {
			unreadable(err)
			continue
		}
		if last != nil && fi.ModTime().Equal(last.ModTime()) && fi.Size() == last.Size() && os.SameFile(fi, last) {
			continue
		}
		last = fi
		data, err := os.ReadFile(s.Path)
		if err != nil {
			unreadable(err)
			last = nil
			continue
		}
		readable = true
		sink.Up(true)
		if sha256.Sum256(data) == sum {
			continue
		}
		sum = sha256.Sum256(data)
		entries, bad, err := Decode(data)
		if err != nil {
			// Keep serving the last good table; try again when the file changes.
			sink.Reject(s.Path, "parse", err)
			continue
		}
		sink.Replace(entries, bad)
	}
}
