package main

import (
	"bytes"
	"testing"
	"time"
)

// shortProfile is go test's: seconds per fault, a light load.
var shortProfile = profile{
	Before: time.Second, Fault: 3 * time.Second, Freeze: 3 * time.Second, After: time.Second,
	MeshQPS: 300, ExternalQPS: 300,
	UpstreamFor: 4 * time.Second, UpstreamMeshQPS: 100, UpstreamExternalQPS: 1000,
	FloodFor: 2 * time.Second, RelistServices: 500, RecoverLimit: time.Minute,
	SettleWindow: time.Second, SettleLimit: 3 * time.Second,
}

// shortFaults are the rows the short profile runs; the upstream rows run
// Corefile.example only (the VM and its onboarding would add half again).
var shortFaults = []string{"upstream-dead", "istiod-kill", "apiserver-kill", "meshdns-kill-snapshot", "malformed"}

// recoverBound is generous: the test holds recovery to happening, not to
// the 5 s target, which depends on the machine's speed.
const recoverBound = 30 * time.Second

// TestChaosShort runs a few faults for seconds each and holds every row to
// the targets that do not depend on the machine's speed: no wrong answer,
// no SERVFAIL for a mesh name known before the fault, and recovery.
func TestChaosShort(t *testing.T) {
	opt := defaultOptions(t)
	opt.faults = shortFaults
	opt.sources = []string{srcFile, srcKubernetes, srcXDS}
	rep := run(t, shortProfile, opt)
	var buf bytes.Buffer
	rep.write(&buf)
	t.Logf("the short profile took %s:\n%s", rep.took.Round(time.Second), buf.String())
	if len(rep.rows) < len(shortFaults) {
		t.Fatalf("%d rows, want at least one per fault of %v", len(rep.rows), shortFaults)
	}
	for _, r := range rep.rows {
		name := r.fault.name + " / " + r.source
		wrong := r.mesh.Wrong + r.mesh.Refused + r.ext.Wrong
		if wrong != 0 {
			t.Errorf("%s: %d wrong answers (mesh %s; external %s)", name, wrong, r.mesh, r.ext)
		}
		if r.mesh.ServFail != 0 && !r.fault.servfailExpected {
			t.Errorf("%s: %d SERVFAIL for mesh names known before the fault (%s)", name, r.mesh.ServFail, r.mesh)
		}
		if r.recoveryApplies && (!r.recovered || r.recovery > recoverBound) {
			t.Errorf("%s: recovery %s, want within %s of the component's return", name, r.recoveryText(), recoverBound)
		}
		if r.mesh.Sent == 0 || r.ext.Sent == 0 {
			t.Errorf("%s: %d mesh and %d external queries sent: the load did not run", name, r.mesh.Sent, r.ext.Sent)
		}
	}
}
