package source

import (
	"sync"

	"github.com/coredns/caddy"
)

// Parser reads a source's option from the Corefile, as a plugin reads its
// directive: the cursor is on the option's name, and what follows on its
// line and in its block is the source's. Relative file names are taken from
// root.
type Parser func(c *caddy.Controller, root string) (Source, error)

// Finisher is a source that needs the meshdns block's cluster domain and
// client namespace, known once the whole block is read.
type Finisher interface {
	Finish(domain, namespace string) error
}

// Grouper is a source that works with the other sources of the same meshdns
// block (the clusters of one mesh, each its own source). Group is called
// once per source, after Finish, with every source of the block in the
// Corefile's order.
type Grouper interface {
	Group(all []Source) error
}

// ClientNamespacer is a source that knows the namespace of the client it
// speaks for (an xds source's node): the meshdns block takes it when it
// sets none.
type ClientNamespacer interface {
	ClientNamespace() string
}

var (
	mu      sync.RWMutex
	parsers = map[string]Parser{}
)

// Register makes a source available to the meshdns block under name, from
// the source package's init, as database/sql drivers register: a binary
// has the sources it imports. Registering a name twice panics.
func Register(name string, p Parser) {
	mu.Lock()
	defer mu.Unlock()
	if _, dup := parsers[name]; dup {
		panic("source: " + name + " registered twice")
	}
	parsers[name] = p
}

// Lookup returns the parser of the source registered as name.
func Lookup(name string) (Parser, bool) {
	mu.RLock()
	defer mu.RUnlock()
	p, ok := parsers[name]
	return p, ok
}
