// Package source defines how a source of names feeds the meshdns table. A
// source only turns its input into table entries; it knows nothing of DNS.
package source

import (
	"context"

	"github.com/meshdns/meshdns/plugin/table"
)

// Sink receives one source's changes. The plugin gives each source its own
// sink, which applies changes to the table and records metrics and logs.
type Sink interface {
	// Replace makes the source's entries exactly these (a full state).
	// skipped is the input the source left out of it; like what the table
	// refuses, each is logged and counted when it first appears, not again
	// on every full state that still has it.
	Replace(entries []table.Entry, skipped []Rejection)
	// Apply changes some entries and deletes others (an incremental update).
	// An entry equal to the one the source has, or a host it does not have
	// to delete, changes nothing: sources need not track what they sent.
	Apply(upserts []table.Entry, deletes []string)
	// Reject reports input the source skipped outside a full state (an
	// unreadable file, an object event): reason is a metric label. Sources
	// report a lasting fault once, when it starts.
	Reject(object, reason string, err error)
	// Synced marks the source as loaded once; until every source is, meshdns
	// answers SERVFAIL and is not ready.
	Synced()
	// Up reports whether the source can currently reach its input.
	Up(up bool)
}

// Source is a running feed of entries.
type Source interface {
	// Name identifies the source in metrics and logs, e.g. "file:/etc/mesh.json".
	Name() string
	// Start begins feeding sink and returns; it stops when ctx is done.
	Start(ctx context.Context, sink Sink) error
}

// Rejection is input a source skipped, as it reports it to Sink.Reject.
type Rejection struct {
	// Object names what was skipped: a host, an object, a file.
	Object string
	// Reason is the metric label.
	Reason string
	Err    error
}
