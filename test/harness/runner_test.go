package harness

import (
	"os"
	"slices"
	"testing"
)

func TestRunnerTeardown(t *testing.T) {
	r := &Runner{Prefix: "meshdns-runner-test-"}
	var order []int
	dir := r.TempDir()
	for i := range 3 {
		r.Cleanup(func() {
			order = append(order, i)
			if _, err := os.Stat(dir); err != nil {
				t.Errorf("cleanup %d: the temporary directory is gone before the cleanups ran: %v", i, err)
			}
		})
	}
	r.Teardown()
	r.Teardown() // a second teardown runs nothing again
	if want := []int{2, 1, 0}; !slices.Equal(order, want) {
		t.Errorf("cleanups ran in order %v, want %v", order, want)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("temporary directory %s still there: %v", dir, err)
	}
	if r.Failed() {
		t.Error("Failed without a Fatalf")
	}
}
