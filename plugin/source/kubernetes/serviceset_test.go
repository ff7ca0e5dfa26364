package kubernetes

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// A serviceSet holds what a Go map would, through random puts and deletes
// that grow it, shrink it and wrap around its end.
func TestServiceSetMatchesMap(t *testing.T) {
	m := newServiceSet()
	want := map[string]*service{}
	rnd := rand.New(rand.NewPCG(1, 2))
	for step := range 20000 {
		key := fmt.Sprintf("svc-%d.ns-%d", rnd.IntN(500), rnd.IntN(3))
		if step > 15000 || rnd.IntN(3) == 0 {
			if step > 15000 && len(want) > 0 {
				key = slices.Sorted(maps.Keys(want))[0] // empty it
			}
			m.del(key)
			delete(want, key)
		} else {
			name, ns, _ := strings.Cut(key, ".")
			s := newService(name, ns, fmt.Sprint(step), nil, nil, nil)
			m.put(s)
			want[key] = s
		}
		if step%100 != 0 {
			continue
		}
		if m.n != len(want) || m.n*4 > len(m.slots)*3 {
			t.Fatalf("step %d: %d services in %d slots, want %d", step, m.n, len(m.slots), len(want))
		}
		for k, s := range want {
			if got := m.get(k); got != s {
				t.Fatalf("step %d: get(%s) = %v, want %v", step, k, got, s)
			}
		}
		if got := slices.Collect(m.all); len(got) != len(want) {
			t.Fatalf("step %d: all gives %d, want %d", step, len(got), len(want))
		}
	}
	if m.get("svc-1.ns-1") != nil || len(m.slots) > 8 || len(want) != 0 {
		t.Errorf("after deleting all: %d slots, %v", len(m.slots), slices.Collect(maps.Keys(want)))
	}
}
