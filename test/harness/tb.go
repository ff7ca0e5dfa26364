package harness

// TB is the part of testing.TB the harness uses. Tests pass their *testing.T;
// test/demo passes its own, to run the same control plane outside go test.
type TB interface {
	Helper()
	Cleanup(func())
	TempDir() string
	Fatalf(format string, args ...any)
	Logf(format string, args ...any)
	Failed() bool
}
