// Command meshdns-setup points a machine's resolver at meshdns and back,
// without ever leaving the machine unable to resolve names.
//
//	meshdns-setup [flags] upstreams   write /etc/meshdns/upstream.conf from the current resolver
//	meshdns-setup [flags] install     once meshdns is ready, save /etc/resolv.conf and point it at meshdns
//	meshdns-setup [flags] remove      put back the saved /etc/resolv.conf
//	meshdns-setup [flags] status      show where resolv.conf points and what is saved
//
// Flags may come before or after the command. -root DIR makes every path
// below relative to DIR, as if chrooted there: tests and image builders use
// it on a throwaway tree; the network checks of install still go to the
// addresses given.
//
// How it avoids cutting the machine off, and the choices behind it:
//
//   - meshdns's address is the first IP of the Corefile's `bind` (127.0.0.2 in
//     the VM Corefile; -listen overrides), and its ready URL comes from the
//     Corefile's `ready` (http://127.0.0.1:8181/ready by default). Taking them
//     from the Corefile meshdns runs keeps an operator's edit and this helper
//     in agreement.
//   - upstreams writes the nameservers of the real resolver: those of
//     resolv.conf, or `nameserver 127.0.0.53` when resolv.conf is
//     systemd-resolved's stub, so resolved stays the upstream and keeps
//     following DHCP. When install has already run, it reads the saved
//     original, not the resolv.conf that names meshdns. It refuses, writing
//     nothing, when the result would name meshdns (a loop) or be empty.
//   - install changes nothing until everything is known to work: the
//     upstreams and the Corefile's forward targets are checked for a loop
//     (including systemd-resolved's own upstreams when resolved is the
//     upstream), then it polls the ready URL until it answers 200 and a DNS
//     query to meshdns's address on port 53 gets a reply, so the address
//     written into resolv.conf is known to answer. On timeout it fails and
//     nothing is touched.
//   - The saved copy is exact: a file's bytes, mode, owner and modification
//     time, or a symlink's target as readlink gives it, or the fact that there
//     was none. It lives in /var/lib/meshdns-setup (root, 0700), not in
//     /var/lib/meshdns: that one is the service's StateDirectory, owned by the
//     meshdns user, who could otherwise rewrite what root later puts back
//     into /etc/resolv.conf.
//   - The new resolv.conf names meshdns only and keeps the previous search,
//     domain, options and sortlist lines. A resolved stub symlink is replaced
//     by this file (resolved keeps running, as meshdns's upstream). Every
//     write is a temporary file renamed over the target, so resolv.conf is
//     always either the old or the new one; the saved copy is committed
//     before resolv.conf is replaced.
//   - remove restores the saved copy and deletes it; with nothing saved it is
//     a no-op that says so, so it can run any number of times. When
//     resolv.conf was changed after install and no longer names meshdns, the
//     machine resolves without meshdns already: remove leaves that file and
//     keeps the saved copy (-force restores it anyway). When nothing is saved
//     but resolv.conf names meshdns (pointed at it by hand), remove fails:
//     the package runs it before meshdns goes away, and going on would leave
//     the machine without a resolver (-force goes on).
//   - install and remove hold an exclusive lock on the state directory, so a
//     package script and an operator cannot interleave.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"
)

const usage = `usage: meshdns-setup [flags] upstreams|install|remove|status

  upstreams  write /etc/meshdns/upstream.conf (meshdns's forward targets) from the current resolver
  install    wait until meshdns is ready, save /etc/resolv.conf, point it at meshdns
  remove     restore the /etc/resolv.conf saved by install (nothing saved: nothing to do)
  status     show where /etc/resolv.conf points and what is saved

flags:
`

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// run is the whole command, returning its exit status: 0 done, 1 refused or
// failed, 2 usage.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("meshdns-setup", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.StringVar(&o.root, "root", "/", "act on the tree under `DIR` as if it were /")
	fs.StringVar(&o.corefile, "corefile", "/etc/meshdns/Corefile", "meshdns's Corefile (under -root), read for bind, ready and forward")
	fs.StringVar(&o.listen, "listen", "", "meshdns's `address` for resolv.conf (default: the Corefile's bind, else 127.0.0.2)")
	fs.StringVar(&o.ready, "ready", "", "meshdns's ready `URL` (default: from the Corefile's ready, else http://127.0.0.1:8181/ready)")
	fs.StringVar(&o.probe, "probe", "", "install: `HOST:PORT` to send a test DNS query to (default: the listen address, port 53; \"off\" skips it)")
	fs.DurationVar(&o.timeout, "timeout", 60*time.Second, "install: how long to wait for meshdns to be ready")
	fs.BoolVar(&o.force, "force", false, "remove: restore the saved resolv.conf even if it was changed after install and no longer names meshdns; "+
		"with nothing saved, succeed even if resolv.conf names meshdns")
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}

	// Flags on either side of the command: the first parse stops at it.
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return 2
	}
	cmd := fs.Arg(0)
	if err := fs.Parse(fs.Args()[1:]); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "meshdns-setup: unexpected argument %q\n", fs.Arg(0))
		return 2
	}

	s, err := newSetup(o, stdout)
	if err != nil {
		fmt.Fprintf(stderr, "meshdns-setup: %v\n", err)
		return 1
	}
	switch cmd {
	case "upstreams":
		err = s.upstreams()
	case "install":
		err = s.install(ctx)
	case "remove":
		err = s.remove()
	case "status":
		err = s.status()
	default:
		fmt.Fprintf(stderr, "meshdns-setup: unknown command %q\n", cmd)
		fs.Usage()
		return 2
	}
	if err != nil {
		fmt.Fprintf(stderr, "meshdns-setup %s: %v\n", cmd, err)
		var refused *refusal
		if errors.As(err, &refused) {
			fmt.Fprintln(stderr, "meshdns-setup: nothing was changed")
		}
		return 1
	}
	return 0
}
