package kubernetes

import "slices"

// A WorkloadEntry event must find the ServiceEntries that select it, and a
// ServiceEntry host the WorkloadEntries its selector selects, without reading
// the rest of the namespace: a fleet of VMs is thousands of each. Both
// indexes are kept per namespace, as a selector only selects in its own.

// label is one key=value pair of a label set.
type label struct{ key, value string }

// workloadIndex holds the WorkloadEntries of one namespace, also by label.
type workloadIndex struct {
	all     map[string]*workloadEntry // by name
	byLabel map[label]map[string]*workloadEntry
}

func newWorkloadIndex() *workloadIndex {
	return &workloadIndex{all: map[string]*workloadEntry{}, byLabel: map[label]map[string]*workloadEntry{}}
}

func (x *workloadIndex) put(we *workloadEntry) {
	x.all[we.name] = we
	for k, v := range we.labels {
		l := label{k, v}
		if x.byLabel[l] == nil {
			x.byLabel[l] = map[string]*workloadEntry{}
		}
		x.byLabel[l][we.name] = we
	}
}

func (x *workloadIndex) del(we *workloadEntry) {
	delete(x.all, we.name)
	for k, v := range we.labels {
		l := label{k, v}
		delete(x.byLabel[l], we.name)
		if len(x.byLabel[l]) == 0 {
			delete(x.byLabel, l)
		}
	}
}

// selected returns the WorkloadEntries whose labels selector matches. It
// reads those that have the selector's rarest pair, so a host costs what it
// selects, not what the namespace holds.
func (x *workloadIndex) selected(selector map[string]string) []*workloadEntry {
	candidates := x.all
	if len(selector) > 0 {
		candidates = nil
		for k, v := range selector {
			set := x.byLabel[label{k, v}]
			if len(set) == 0 {
				return nil
			}
			if candidates == nil || len(set) < len(candidates) {
				candidates = set
			}
		}
	}
	var out []*workloadEntry
	for _, we := range candidates {
		if matches(selector, we.labels) {
			out = append(out, we)
		}
	}
	return out
}

// selectorIndex holds the ServiceEntries of one namespace that have a
// workload selector, each under one pair of its selector: a WorkloadEntry
// it selects has that pair, so the WorkloadEntry's own pairs find it.
type selectorIndex struct {
	byLabel map[label]map[string]*serviceEntry // by key
	empty   map[string]*serviceEntry           // an empty selector selects every WorkloadEntry
}

func newSelectorIndex() *selectorIndex {
	return &selectorIndex{byLabel: map[label]map[string]*serviceEntry{}, empty: map[string]*serviceEntry{}}
}

// indexLabel is the pair se is indexed under: its selector's first key.
func indexLabel(se *serviceEntry) (label, bool) {
	if len(se.selector) == 0 {
		return label{}, false
	}
	var keys []string
	for k := range se.selector {
		keys = append(keys, k)
	}
	k := slices.Min(keys)
	return label{k, se.selector[k]}, true
}

func (x *selectorIndex) put(se *serviceEntry) {
	l, ok := indexLabel(se)
	if !ok {
		x.empty[se.key()] = se
		return
	}
	if x.byLabel[l] == nil {
		x.byLabel[l] = map[string]*serviceEntry{}
	}
	x.byLabel[l][se.key()] = se
}

func (x *selectorIndex) del(se *serviceEntry) {
	l, ok := indexLabel(se)
	if !ok {
		delete(x.empty, se.key())
		return
	}
	delete(x.byLabel[l], se.key())
	if len(x.byLabel[l]) == 0 {
		delete(x.byLabel, l)
	}
}

func (x *selectorIndex) isEmpty() bool { return len(x.byLabel) == 0 && len(x.empty) == 0 }

// selecting calls yield for each ServiceEntry whose selector matches labels.
func (x *selectorIndex) selecting(labels map[string]string, yield func(*serviceEntry)) {
	for _, se := range x.empty {
		yield(se)
	}
	for k, v := range labels {
		for _, se := range x.byLabel[label{k, v}] {
			if matches(se.selector, labels) {
				yield(se)
			}
		}
	}
}
