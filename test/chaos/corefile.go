package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// The shipped Corefiles are run as they are, but for what names this
// machine: paths, ports, the upstream, and for the rows of another source
// the source line. Every other line, forward's options included, is the
// file's own, so a change to a shipped Corefile is what the rows measure.

// edit is one change to a template: old, found in the code of exactly one
// line (comments are never edited), becomes new; or, with lines, that
// whole line becomes lines, indented as it was.
type edit struct {
	old   string
	new   string
	lines []string
}

// render applies edits to tmpl. Each old must be found exactly once, so a
// template that changed shape fails here rather than run something else.
func render(tmpl string, edits []edit) (string, error) {
	found := make([]int, len(edits))
	var out []string
	for _, line := range strings.Split(tmpl, "\n") {
		code, comment, hasComment := strings.Cut(line, "#")
		var whole []string
		for i, e := range edits {
			n := strings.Count(code, e.old)
			found[i] += n
			if n == 0 {
				continue
			}
			if e.lines != nil {
				indent := line[:len(line)-len(strings.TrimLeft(line, " \t"))]
				for _, l := range e.lines {
					whole = append(whole, indent+l)
				}
				continue
			}
			code = strings.ReplaceAll(code, e.old, e.new)
		}
		if whole != nil {
			out = append(out, whole...)
			continue
		}
		if hasComment {
			code += "#" + comment
		}
		out = append(out, code)
	}
	for i, e := range edits {
		if found[i] != 1 {
			return "", fmt.Errorf("%q is in %d lines of code, want 1: the template changed shape", e.old, found[i])
		}
	}
	return strings.Join(out, "\n"), nil
}

// hostCorefile is Corefile.example (or a candidate in its shape) for a
// server on 127.0.0.1: its port, ready and prometheus addresses, and
// forward's resolv.conf become this run's; its file source reads mesh, or
// is replaced by source's lines when source is not nil.
func hostCorefile(tmplPath, dir string, port int, ready, metrics, upstream, mesh string, source []string) (string, error) {
	tmpl, err := os.ReadFile(tmplPath)
	if err != nil {
		return "", err
	}
	meshEdit := edit{old: "docs/sample-mesh.json", new: mesh}
	if source != nil {
		meshEdit = edit{old: "docs/sample-mesh.json", lines: source}
	}
	text, err := render(string(tmpl), []edit{
		{old: ".:1053", new: fmt.Sprintf(".:%d", port)},
		{old: "127.0.0.1:8181", new: ready},
		{old: "127.0.0.1:9153", new: metrics},
		{old: "/etc/resolv.conf", new: upstream},
		meshEdit,
	})
	if err != nil {
		return "", fmt.Errorf("%s: %w", tmplPath, err)
	}
	return writeCorefile(dir, text)
}

// The addresses docs/vm/Corefile serves on, inside its VM.
const (
	vmDNSIP     = "127.0.0.2"
	vmDNSAddr   = vmDNSIP + ":53"
	vmReadyAddr = "127.0.0.1:8181"
)

// vmCorefile is docs/vm/Corefile (or a candidate in its shape) with only
// its paths replaced, shipped path to this machine's, as test/xds runs it
// in a VM; its addresses stay, the VM has its own loopback.
func vmCorefile(tmplPath, dir string, paths map[string]string) (string, error) {
	tmpl, err := os.ReadFile(tmplPath)
	if err != nil {
		return "", err
	}
	edits := []edit{
		{old: "bind " + vmDNSIP, new: "bind " + vmDNSIP},
		{old: vmReadyAddr, new: vmReadyAddr},
	}
	for shipped, here := range paths {
		edits = append(edits, edit{old: shipped, new: here})
	}
	text, err := render(string(tmpl), edits)
	if err != nil {
		return "", fmt.Errorf("%s: %w", tmplPath, err)
	}
	return writeCorefile(dir, text)
}

func writeCorefile(dir, text string) (string, error) {
	path := filepath.Join(dir, "Corefile")
	return path, os.WriteFile(path, []byte(text), 0o644)
}
