package file

import (
	"path/filepath"
	"time"

	"github.com/coredns/caddy"

	"github.com/meshdns/meshdns/plugin/source"
)

// Parse reads a file source from the Corefile, the cursor being on "file";
// a relative PATH is taken from root:
//
//	file PATH [reload DURATION]
//
// The file is read now, so a file that is not a name table stops CoreDNS
// with an error naming what is wrong.
func Parse(c *caddy.Controller, root string) (*Source, error) {
	args := c.RemainingArgs()
	s := &Source{Reload: 5 * time.Second}
	switch {
	case len(args) == 1:
	case len(args) == 3 && args[1] == "reload":
		d, err := time.ParseDuration(args[2])
		if err != nil || d < 0 {
			return nil, c.Errf("file: invalid reload duration %q", args[2])
		}
		s.Reload = d
	default:
		return nil, c.Errf("file: want 'file PATH [reload DURATION]'")
	}
	if c.NextBlock() {
		return nil, c.Errf("file: takes no block, got %q", c.Val())
	}
	s.Path = args[0]
	if !filepath.IsAbs(s.Path) && root != "" {
		s.Path = filepath.Join(root, s.Path)
	}
	if err := s.Check(); err != nil {
		return nil, c.Errf("file: %v", err)
	}
	return s, nil
}

func init() {
	source.Register("file", func(c *caddy.Controller, root string) (source.Source, error) {
		s, err := Parse(c, root)
		if err != nil {
			return nil, err
		}
		return s, nil
	})
}
