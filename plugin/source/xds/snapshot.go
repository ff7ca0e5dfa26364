package xds

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/meshdns/meshdns/plugin/source/file"
)

// loadSnapshot serves the snapshot until the first push, so a node that boots
// while istiod is unreachable still resolves mesh names. A bad snapshot is
// only logged: istiod will send the real table.
func (c *client) loadSnapshot() {
	path := c.src.Snapshot
	if path == "" {
		return
	}
	entries, bad, data, err := file.Load(path)
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	if err != nil {
		c.sink.Reject(path, "snapshot", fmt.Errorf("snapshot ignored: %w", err))
		return
	}
	c.sink.Replace(entries, bad)
	c.markSynced()
	c.snapSum = sha256.Sum256(data)
	log.Infof("source %s: serving snapshot %s (%d hosts) until the first push", c.src.Name(), path, len(entries))
}

// saveSnapshot writes the entries last applied, unless the file has them.
func (c *client) saveSnapshot() {
	if c.src.Snapshot == "" || c.unsaved == nil {
		return
	}
	data, err := file.Marshal(c.unsaved)
	c.unsaved = nil
	if err != nil {
		c.sink.Reject(c.src.Snapshot, "snapshot", fmt.Errorf("writing snapshot: %w", err))
		return
	}
	sum := sha256.Sum256(data)
	if sum == c.snapSum {
		return
	}
	if err := writeAtomic(c.src.Snapshot, data); err != nil {
		c.sink.Reject(c.src.Snapshot, "snapshot", fmt.Errorf("writing snapshot: %w", err))
		return
	}
	c.snapSum = sum
}

// writeAtomic replaces path with data so that a crash leaves either the old
// file or the new one: a temporary file in the same directory, synced, then
// renamed over path, then the directory synced so the rename is durable.
func writeAtomic(path string, data []byte) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
