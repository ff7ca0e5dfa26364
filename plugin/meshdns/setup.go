package meshdns

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/coredns/caddy"
	"github.com/coredns/caddy/caddyfile"
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/plugin"
	clog "github.com/coredns/coredns/plugin/pkg/log"
	"github.com/coredns/coredns/plugin/pkg/upstream"
	"github.com/miekg/dns"

	"github.com/meshdns/meshdns/plugin/source"
	"github.com/meshdns/meshdns/plugin/table"
)

const pluginName = "meshdns"

var log = clog.NewWithPlugin(pluginName)

func init() {
	plugin.Register(pluginName, setup)
	dnsserver.Directives = directives(dnsserver.Directives)
}

// directives returns a new directive list with meshdns right before
// kubernetes, after cache and hosts, so caching and static overrides apply
// to mesh names and everything unknown can fall through to file or forward.
func directives(base []string) []string {
	if slices.Contains(base, pluginName) {
		return base
	}
	i := slices.Index(base, "kubernetes")
	if i < 0 {
		i = len(base)
	}
	out := make([]string, 0, len(base)+1)
	out = append(out, base[:i]...)
	out = append(out, pluginName)
	return append(out, base[i:]...)
}

func setup(c *caddy.Controller) error {
	m, err := parse(c)
	if err != nil {
		return plugin.Error(pluginName, err)
	}
	for _, w := range m.warnings() {
		log.Warning(w)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cfg := dnsserver.GetConfig(c)
	c.OnStartup(func() error {
		if err := checkLoop(cfg); err != nil {
			return plugin.Error(pluginName, err)
		}
		for _, s := range m.sources {
			if err := s.src.Start(ctx, s); err != nil {
				return plugin.Error(pluginName, fmt.Errorf("source %s: %w", s.name, err))
			}
		}
		return nil
	})
	c.OnShutdown(func() error {
		cancel()
		return nil
	})
	dnsserver.GetConfig(c).AddPlugin(func(next plugin.Handler) plugin.Handler {
		m.Next = next
		return m
	})
	return nil
}

// options collects the Corefile block before the table is made.
type options struct {
	domain, namespace string
	search            []string
	searchSet         bool
	ttl               uint32
}

func parse(c *caddy.Controller) (*MeshDNS, error) {
	cfg := dnsserver.GetConfig(c)
	m := &MeshDNS{upstream: upstream.New()}
	o := options{domain: "cluster.local", ttl: 30}
	var sources []source.Source
	i := 0
	for c.Next() {
		if i > 0 {
			if c.Val() == "{" {
				return nil, c.Err("'{' must be on the line of the option it opens")
			}
			return nil, plugin.ErrOnce
		}
		i++
		m.Zones = plugin.OriginsFromArgsOrServerBlock(c.RemainingArgs(), c.ServerBlockKeys)
		for c.NextBlock() {
			switch c.Val() {
			case "domain":
				args := c.RemainingArgs()
				if len(args) != 1 || !validDomain(args[0]) {
					return nil, c.Errf("domain: want one domain name, got %q", args)
				}
				o.domain = strings.ToLower(strings.Trim(args[0], "."))
			case "namespace":
				args := c.RemainingArgs()
				if len(args) != 1 || !validLabel(args[0]) {
					return nil, c.Errf("namespace: want one namespace name, got %q", args)
				}
				o.namespace = strings.ToLower(args[0])
			case "search":
				o.search, o.searchSet = nil, true
				for _, d := range c.RemainingArgs() {
					if !validDomain(strings.TrimPrefix(d, "*.")) {
						return nil, c.Errf("search: invalid domain %q", d)
					}
					o.search = append(o.search, d)
				}
			case "ttl":
				args := c.RemainingArgs()
				if len(args) != 1 {
					return nil, c.ArgErr()
				}
				ttl, err := strconv.Atoi(args[0])
				if err != nil || ttl < 0 || ttl > 3600 {
					return nil, c.Errf("ttl: want seconds in [0, 3600], got %q", args[0])
				}
				o.ttl = uint32(ttl)
			case "capture":
				args := c.RemainingArgs()
				if len(args) != 1 || (args[0] != "on" && args[0] != "off") {
					return nil, c.Errf("capture: want on or off, got %q", args)
				}
				m.noCapture = args[0] == "off"
			case "authoritative":
				m.Authoritative = zonesOrAll(c.RemainingArgs(), m.Zones)
			case "fallthrough":
				m.Fall.SetZonesFromArgs(c.RemainingArgs())
			case "max_fallthrough":
				args := c.RemainingArgs()
				var n int64
				if len(args) == 1 {
					n, _ = strconv.ParseInt(args[0], 10, 64)
				}
				if n < 1 {
					return nil, c.Errf("max_fallthrough: want a positive number of queries, got %q", args)
				}
				m.maxPassed = n
			default:
				parse, ok := source.Lookup(c.Val())
				if !ok {
					return nil, unknownOption(c)
				}
				sub := sourceBlock(c)
				sub.Next()
				src, err := parse(sub, cfg.Root)
				if err != nil {
					return nil, err
				}
				sources = append(sources, src)
			}
		}
	}
	if len(sources) == 0 {
		return nil, c.Err("no source configured: add 'file PATH', 'kubernetes [KUBECONFIG]' or 'xds ADDRESS'")
	}
	// The client's namespace: on a VM, the one its xds source knows it by.
	for _, s := range sources {
		if cn, ok := s.(source.ClientNamespacer); ok && o.namespace == "" {
			o.namespace = strings.ToLower(cn.ClientNamespace())
		}
	}
	if !o.searchSet {
		o.search = defaultSearch(o.domain, o.namespace)
	}
	m.table = table.New(table.Config{Domain: o.domain, Namespace: o.namespace, Search: o.search, TTL: o.ttl})
	m.domain = dns.Fqdn(o.domain)
	m.versionName = "dns-version." + m.domain
	m.listen = listenAddrs(cfg.ListenHosts)
	if s := newSiblings(o.search); len(s.suffixes) > 0 {
		m.siblings = s
	}
	m.ttl = o.ttl
	seen := map[string]bool{}
	for _, s := range sources {
		if seen[s.Name()] {
			return nil, c.Errf("two sources named %q: give each kubernetes source its own 'cluster NAME', each file its own path", s.Name())
		}
		seen[s.Name()] = true
		if f, ok := s.(source.Finisher); ok {
			if err := f.Finish(o.domain, o.namespace); err != nil {
				return nil, c.Errf("%s: %v", s.Name(), err)
			}
		}
	}
	for _, s := range sources {
		if g, ok := s.(source.Grouper); ok {
			if err := g.Group(sources); err != nil {
				return nil, c.Errf("%s: %v", s.Name(), err)
			}
		}
		m.addSource(s)
	}
	m.setSOAs()
	return m, nil
}

// sourceBlock returns a controller over the source option at c's cursor
// alone: its name, its arguments and, when '{' ends its line, its block up
// to the matching '}'. The source reads it as a plugin reads its own
// directive, so a source written without a block never reads on into the
// options of the meshdns block that follow it.
func sourceBlock(c *caddy.Controller) *caddy.Controller {
	token := func() caddyfile.Token { return caddyfile.Token{File: c.File(), Line: c.Line(), Text: c.Val()} }
	tokens := []caddyfile.Token{token()}
	for c.NextArg() {
		tokens = append(tokens, token())
		if c.Val() != "{" {
			continue
		}
		for depth := 1; depth > 0 && c.Next(); {
			switch c.Val() {
			case "{":
				depth++
			case "}":
				depth--
			}
			tokens = append(tokens, token())
		}
		break
	}
	sub := *c
	sub.Dispenser = caddyfile.NewDispenserTokens(c.File(), tokens)
	return &sub
}

// sourceBinaries says which of this project's binaries link each source,
// for the error a Corefile naming a source this binary lacks gets.
var sourceBinaries = map[string]string{
	"file":       "bin/meshdns and bin/coredns",
	"xds":        "bin/meshdns and bin/coredns",
	"kubernetes": "bin/coredns (the full build)",
}

// unknownOption is the error of an option the block does not know: a
// source this binary does not link says which binary has it.
func unknownOption(c *caddy.Controller) error {
	if bins, ok := sourceBinaries[c.Val()]; ok {
		return c.Errf("source %q is not in this binary; %s has it", c.Val(), bins)
	}
	return c.Errf("unknown property %q", c.Val())
}

// warnings names the options that were accepted but cannot do what they say.
func (m *MeshDNS) warnings() []string {
	var out []string
	for _, z := range m.Authoritative {
		if !overlaps(z, m.Zones) {
			out = append(out, fmt.Sprintf("authoritative zone %s is outside the plugin's zones %v: no query for it reaches meshdns", z, m.Zones))
		}
	}
	for _, z := range m.Fall.Zones {
		switch {
		case !overlaps(z, m.Zones):
			out = append(out, fmt.Sprintf("fallthrough zone %s is outside the plugin's zones %v: no query for it reaches meshdns", z, m.Zones))
		case matchZone(m.Authoritative, z) != "":
			out = append(out, fmt.Sprintf("fallthrough zone %s is inside authoritative zone %s: its unknown names get NXDOMAIN, never fall through", z, matchZone(m.Authoritative, z)))
		}
	}
	if !overlaps(m.domain, m.Zones) {
		out = append(out, fmt.Sprintf("cluster domain %s is outside the plugin's zones %v: its names are never answered", m.domain, m.Zones))
	}
	return out
}

// listenAddrs returns the addresses the server listens on, leaving out the
// unspecified ones (every address) and names.
func listenAddrs(hosts []string) []netip.Addr {
	var out []netip.Addr
	for _, h := range hosts {
		if a, err := netip.ParseAddr(h); err == nil && !a.IsUnspecified() {
			out = append(out, a.Unmap())
		}
	}
	return out
}

// overlaps reports whether zone and one of zones contain each other.
func overlaps(zone string, zones []string) bool {
	for _, z := range zones {
		if inZone(z, zone) || inZone(zone, z) {
			return true
		}
	}
	return false
}

// defaultSearch covers a pod's search list in any namespace, with the
// configured namespace's own domain first.
func defaultSearch(domain, namespace string) []string {
	var s []string
	if namespace != "" {
		s = append(s, namespace+".svc."+domain)
	}
	return append(s, "*.svc."+domain, "svc."+domain, domain)
}

func zonesOrAll(args, all []string) []string {
	if len(args) == 0 {
		return slices.Clone(all)
	}
	return plugin.OriginsFromArgsOrServerBlock(args, nil)
}

func validDomain(s string) bool {
	s = strings.Trim(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	for l := range strings.SplitSeq(s, ".") {
		if !validLabel(l) {
			return false
		}
	}
	return true
}

func validLabel(l string) bool {
	_, ok := dns.IsDomainName(l)
	return ok && l != "" && len(l) <= 63 && !strings.ContainsAny(l, ". *")
}
