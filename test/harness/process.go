package harness

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// Process is a child process running in its own process group, with its
// combined output appended to a log file. The benchmarks run their servers
// with it too.
type Process struct {
	name    string
	logPath string
	cmd     *exec.Cmd
	done    chan struct{} // closed once the process has exited
	err     error         // result of Wait, valid after done is closed
}

func startProcess(name, bin string, args []string, logPath string) (*Process, error) {
	return StartProcess(name, append([]string{bin}, args...), nil, logPath)
}

// StartProcess runs argv, with env added to this program's environment,
// its output appended to logPath. The kernel kills it if this program dies.
func StartProcess(name string, argv, env []string, logPath string) (*Process, error) {
	bin, args := argv[0], argv[1:]
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open %s log: %w", name, err)
	}
	fmt.Fprintf(logFile, "=== %s starting at %s: %s %q\n", name, time.Now().Format(time.RFC3339), bin, args)

	cmd := exec.Command(bin, args...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// Own process group, so the whole group can be killed at once.
		Setpgid: true,
		// If the test binary dies without running cleanups (a panic in a
		// goroutine, a -timeout panic, SIGINT), the kernel kills the child.
		Pdeathsig: syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s (%s): %w", name, bin, err)
	}

	p := &Process{name: name, logPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	return p, nil
}

// Name is the name the process was started with.
func (p *Process) Name() string { return p.name }

// Err is the result of waiting for the process, once it has exited.
func (p *Process) Err() error {
	if !p.Exited() {
		return nil
	}
	return p.err
}

// Pid is the process's ID.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Exited reports whether the process has already exited.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Stop sends SIGTERM to the process group and SIGKILL if the process has not
// exited within 10 s. It always waits for the process to be gone.
func (p *Process) Stop() { p.stop(stopGrace) }

func (p *Process) stop(grace time.Duration) {
	if p.Exited() {
		return
	}
	pgid := -p.cmd.Process.Pid
	if err := syscall.Kill(pgid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		_ = syscall.Kill(pgid, syscall.SIGKILL)
	}
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = syscall.Kill(pgid, syscall.SIGKILL)
		<-p.done
	}
}

// LogLines is the process's whole log, line by line.
func (p *Process) LogLines() []string {
	return strings.Split(p.LogTail(math.MaxInt), "\n")
}

// LogTail returns the last n lines of the process log.
func (p *Process) LogTail(n int) string {
	data, err := os.ReadFile(p.logPath)
	if err != nil {
		return fmt.Sprintf("(cannot read %s log: %v)", p.name, err)
	}
	lines := bytes.Split(bytes.TrimRight(data, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// CopyBinary copies the executable at from to to (mode 0755). The benchmark
// programs run a private copy of bin/coredns, which a rebuild during the run
// leaves alone.
func CopyBinary(from, to string) error {
	src, err := os.Open(from)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return err
	}
	return dst.Close()
}
