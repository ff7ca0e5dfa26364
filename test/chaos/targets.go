package main

import (
	"fmt"
	"time"
)

// The targets every row is held to.
const (
	recoveryTarget = 5 * time.Second
	// growthTarget bounds the RSS a row may leave behind once idle again:
	// more is memory the fault took and has not given back.
	growthTarget = 32 << 20
	// peakTarget bounds the peak RSS, as a multiple of the idle RSS before
	// the row: a fault may cost memory, but not without bound.
	peakTarget = 2.0
)

// check is one target of a row.
type check struct {
	target, measured string
	met              bool
}

func (r row) growth() float64 { return r.rssAfter - r.rssBefore }

func (r row) checks() []check {
	var cs []check
	wrong := r.mesh.Wrong + r.mesh.Refused + r.ext.Wrong
	sf := r.mesh.ServFail
	if r.flood != nil {
		wrong += int(r.flood.wrong)
		sf += int(r.flood.servfail)
	}
	cs = append(cs, check{"0 wrong answers", fmt.Sprint(wrong), wrong == 0})
	if r.fault.servfailExpected {
		cs = append(cs, check{"SERVFAIL for mesh names only while there is no table (documented)", fmt.Sprint(sf), true})
	} else {
		cs = append(cs, check{"0 SERVFAIL for mesh names known before the fault", fmt.Sprint(sf), sf == 0})
	}
	if !r.fault.meshdnsDown {
		cs = append(cs, check{"0 mesh names lost (meshdns runs throughout)", fmt.Sprint(r.mesh.Lost), r.mesh.Lost == 0})
	}
	if r.recoveryApplies {
		cs = append(cs, check{fmt.Sprintf("recovery within %s of the component's return", recoveryTarget), r.recoveryText(), r.recovered && r.recovery <= recoveryTarget})
	}
	cs = append(cs, check{fmt.Sprintf("peak RSS at most %.0f× the idle RSS before the row", peakTarget),
		fmt.Sprintf("%.1f MiB, %.1f×", r.peak/mib, r.peak/r.rssBefore), r.peak <= peakTarget*r.rssBefore})
	cs = append(cs, check{fmt.Sprintf("RSS growth over idle at most %d MiB", growthTarget/mib), fmt.Sprintf("%.1f MiB", r.growth()/mib), r.growth() <= growthTarget})
	if r.meshAfter != nil {
		ok := r.meshAfter.Clean() && r.extAfter.Clean()
		cs = append(cs, check{"the normal load clean after the flood", fmt.Sprintf("mesh %s; external %s", r.meshAfter, r.extAfter), ok})
	}
	return cs
}

func (r row) missed() []check {
	var out []check
	for _, c := range r.checks() {
		if !c.met {
			out = append(out, c)
		}
	}
	return out
}
