package ratelimit

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Config is a loaded set of rate-limit files, one domain per file, in
// envoyproxy/ratelimit's YAML format with Portcullis's additive extensions.
// A Config is immutable once loaded and safe for concurrent use; the zero
// value and nil have no domains, so Match finds no limit.
//
// # Format
//
//	domain: mcp                  # required, unique across the files
//	descriptors:                 # a tree, any depth
//	  - key: subject             # required
//	    value: alice             # optional: exact, or a pattern with * anywhere
//	    rate_limit:              # optional: the limit of this node
//	      unit: minute           # second|minute|hour|day|week|month|year (any case)
//	      requests_per_unit: 60  # 0 admits nothing; missing means 0, as in the reference
//	      name: per_subject      # optional, what replaces refers to
//	      replaces: [{name: x}]  # drop the limits named x when both match
//	      unlimited: false       # true: no limit, and no other limit key may be set
//	      algorithm: gcra        # ours: fixed_window (default), sliding_window, gcra
//	      burst: 10              # ours, gcra only; default requests_per_unit
//	      window: 5m             # ours, instead of unit: whole seconds, at least 1s
//	    limits: [{...}, {...}]   # ours, instead of rate_limit: several limits on one node
//	    shadow_mode: false       # over limit is counted but never rejected
//	    detailed_metric: false   # metrics labelled with the request's values
//	    descriptors: [...]       # the next level
//
// Decoding is strict: an unknown or repeated key, a value of the wrong
// type, or a broken rule is an error naming the file and the path in it
// (descriptors[0].rate_limit.unit), and every problem is reported at once.
//
// Units are fixed durations as in the reference: a week is 7 days, a month
// 30 days, a year 365 days. A window that is not a unit is reported to
// Envoy (Limit.ReportUnit, Limit.ReportRequests) in the largest unit that
// divides it, with the requests scaled to that unit and rounded up: 100 per
// 5m is reported as 20 per minute, 10 per 90s as 1 per second.
//
// shadow_mode and detailed_metric are properties of one descriptor, as in
// the reference: they apply to the limits of that node and are not
// inherited by the nodes below it.
//
// Limit.Key is the node's path in the domain: each level is key, or
// key_value when the node has a value (the value as written, wildcards
// included), joined with dots: "message_type_marketing.to_number". This is
// the reference's stat key without its domain prefix. A limit declared in a
// limits list has its index appended ("subject.tool[1]"), so that every
// limit of a domain has its own Key.
type Config struct {
	domains map[string]level
	names   []string // sorted
}

// Entry is one entry of a request descriptor.
type Entry struct{ Key, Value string }

// ConfigError is one problem in a rate-limit file: the file, the path of
// the offending node in it ("descriptors[0].rate_limit.unit"; empty for
// the file as a whole), and what is wrong.
type ConfigError struct {
	File    string
	Path    string
	Message string
}

func (e *ConfigError) Error() string {
	if e.Path == "" {
		return e.File + ": " + e.Message
	}
	return e.File + ": " + e.Path + ": " + e.Message
}

// HasDomain reports whether domain is configured.
func (c *Config) HasDomain(domain string) bool {
	if c == nil {
		return false
	}
	_, ok := c.domains[domain]
	return ok
}

// Domains returns the configured domains, sorted.
func (c *Config) Domains() []string {
	if c == nil {
		return nil
	}
	return slices.Clone(c.names)
}

// units are the fixed durations of the reference's units.
var units = [...]struct {
	name string
	d    time.Duration
}{
	{"year", 365 * 24 * time.Hour},
	{"month", 30 * 24 * time.Hour},
	{"week", 7 * 24 * time.Hour},
	{"day", 24 * time.Hour},
	{"hour", time.Hour},
	{"minute", time.Minute},
	{"second", time.Second},
}

const unitList = "second, minute, hour, day, week, month, year"

func unitDuration(name string) (string, time.Duration, bool) {
	for _, u := range units {
		if strings.EqualFold(name, u.name) {
			return u.name, u.d, true
		}
	}
	return "", 0, false
}

// reportUnitFor is the largest unit that divides w (a whole number of
// seconds), and requests per w scaled to it, rounded up.
func reportUnitFor(w time.Duration, requests uint64) (string, uint64) {
	for _, u := range units {
		if w%u.d == 0 {
			sec, usec := uint64(w/time.Second), uint64(u.d/time.Second)
			if u.d == w {
				return u.name, requests
			}
			// u.d divides w and u.d < w: requests·usec/sec ≤ requests, and
			// requests·usec < 2^32·2^25 cannot overflow.
			return u.name, (requests*usec + sec - 1) / sec
		}
	}
	return "second", requests // unreachable: windows are whole seconds
}

// Bounds on one file, aliases expanded, so that a small file of nested or
// cyclic aliases cannot blow up: descriptors, nesting depth, the bytes of
// all the Keys, and errors reported.
const (
	maxDescriptors = 100_000
	maxDepth       = 64
	maxKeyBytes    = 64 << 20
	maxErrors      = 100
)

// configFile is one file to parse.
type configFile struct {
	name string
	data []byte
}

// LoadConfig reads rate-limit files and builds a Config. Each path is a
// file (read whatever its name) or a directory, of which the *.yaml and
// *.yml files directly inside are read (not subdirectories; names starting
// with a dot are skipped, so a Kubernetes ConfigMap volume loads once).
// Files are read in the order given, directories in name order. Every
// problem in every file is reported, joined.
func LoadConfig(paths []string) (*Config, error) {
	files, err := readConfigFiles(paths)
	if err != nil {
		return nil, err
	}
	return parseConfig(files)
}

// ParseConfig builds a Config from file contents by file name, for tests
// and embedded configurations. Files are parsed in name order.
func ParseConfig(files map[string][]byte) (*Config, error) {
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	list := make([]configFile, len(names))
	for i, name := range names {
		list[i] = configFile{name: name, data: files[name]}
	}
	return parseConfig(list)
}

// readConfigFiles reads the files LoadConfig would load.
func readConfigFiles(paths []string) ([]configFile, error) {
	var errs []error
	var files []configFile
	seen := map[string]bool{}
	add := func(path string) {
		clean := filepath.Clean(path)
		if seen[clean] {
			return
		}
		seen[clean] = true
		data, err := os.ReadFile(path)
		if err != nil {
			errs = append(errs, err)
			return
		}
		files = append(files, configFile{name: path, data: data})
	}
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !fi.IsDir() {
			add(p)
			continue
		}
		ents, err := os.ReadDir(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, e := range ents { // sorted by name
			name := e.Name()
			if strings.HasPrefix(name, ".") || !(strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yml")) {
				continue
			}
			full := filepath.Join(p, name)
			if fi, err := os.Stat(full); err != nil { // follows symlinks
				errs = append(errs, err)
				continue
			} else if fi.IsDir() {
				continue
			}
			add(full)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return files, nil
}

func parseConfig(files []configFile) (*Config, error) {
	c := &Config{domains: map[string]level{}}
	var errs []error
	owner := map[string]string{} // domain → file
	for _, f := range files {
		d := &decoder{file: f.name}
		domain, top := d.decodeFile(f.data)
		errs = append(errs, d.errs...)
		if domain == "" {
			continue
		}
		if prev, ok := owner[domain]; ok {
			errs = append(errs, &ConfigError{File: f.name, Path: "domain", Message: quote(domain) + " is also the domain of " + prev})
			continue
		}
		owner[domain] = f.name
		if len(d.errs) == 0 {
			c.domains[domain] = top
			c.names = append(c.names, domain)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	sort.Strings(c.names)
	return c, nil
}

// decoder decodes one file from its YAML node tree, collecting errors.
type decoder struct {
	file        string
	errs        []error
	descriptors int
	keyBytes    int
	stop        bool // a bound was reached: decode no further
}

func (d *decoder) errorf(path, format string, args ...any) {
	switch {
	case len(d.errs) < maxErrors:
		d.errs = append(d.errs, &ConfigError{File: d.file, Path: path, Message: fmt.Sprintf(format, args...)})
	case len(d.errs) == maxErrors:
		d.errs = append(d.errs, &ConfigError{File: d.file, Message: "too many errors"})
		d.stop = true
	}
}

// decodeFile decodes one file: its domain and its top level. The domain is
// returned even when the descriptors have errors, so that a duplicate
// domain is still reported.
func (d *decoder) decodeFile(data []byte) (domain string, top level) {
	root, err := parseYAML(data)
	if err != nil {
		d.errorf("", "%s", syntaxError(err))
		return "", nil
	}
	var m map[string]*yaml.Node
	if root != nil {
		m = d.mapping("", root, "domain", "descriptors")
		if m == nil {
			return "", nil
		}
	}
	ok := true
	if n := m["domain"]; n != nil {
		domain, ok = d.str("domain", n)
	}
	if domain == "" && ok {
		d.errorf("domain", "is required")
	}
	top = level{}
	d.level("descriptors", "", m["descriptors"], top, 1)
	return domain, top
}

// parseYAML parses exactly one YAML document; nil for an empty file.
func parseYAML(data []byte) (root *yaml.Node, err error) {
	defer func() {
		if r := recover(); r != nil { // the parser must never take the process down
			root, err = nil, fmt.Errorf("cannot parse YAML: %v", r)
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if err == io.EOF {
			return nil, nil
		}
		return nil, err
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err != io.EOF {
		if err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("line %d: a file holds one YAML document", extra.Line)
	}
	if doc.Kind == yaml.DocumentNode {
		if len(doc.Content) == 0 {
			return nil, nil
		}
		return doc.Content[0], nil
	}
	return &doc, nil
}

// parserProblems are the messages of the YAML parser (not its scanner),
// whose line numbers the yaml package reports counted from 0: the line
// where the construct with the problem starts, less one.
var parserProblems = []string{
	"did not find expected <stream-start>",
	"did not find expected <document start>",
	"did not find expected '-' indicator",
	"did not find expected key",
	"did not find expected ',' or ']'",
	"did not find expected ',' or '}'",
	"did not find expected node content",
	"found duplicate %YAML directive",
	"found incompatible YAML document",
	"found duplicate %TAG directive",
	"found undefined tag handle",
}

// syntaxError is the message of a YAML syntax error, its line counted
// from 1.
func syntaxError(err error) string {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	rest, ok := strings.CutPrefix(msg, "line ")
	if !ok {
		return msg
	}
	num, problem, ok := strings.Cut(rest, ": ")
	n, err := strconv.Atoi(num)
	if !ok || err != nil || !slices.Contains(parserProblems, problem) {
		return msg
	}
	return "line " + strconv.Itoa(n+1) + ": " + problem
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func index(path string, i int) string {
	return path + "[" + strconv.Itoa(i) + "]"
}

// resolve follows aliases.
func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 100; i++ {
		n = n.Alias
	}
	return n
}

// quote quotes s for a message, shortened when long.
func quote(s string) string {
	const maxLen = 64
	if len(s) > maxLen {
		return strconv.Quote(strings.ToValidUTF8(s[:maxLen], "")) + "..."
	}
	return strconv.Quote(s)
}

func isNull(n *yaml.Node) bool {
	return n == nil || n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return quote(n.Value)
	default:
		return "an alias"
	}
}

// mapping checks that n is a mapping with only the known keys, each once,
// and returns the values by key; nil when n is not a mapping.
func (d *decoder) mapping(path string, n *yaml.Node, known ...string) map[string]*yaml.Node {
	n = resolve(n)
	if isNull(n) {
		return map[string]*yaml.Node{}
	}
	if n.Kind != yaml.MappingNode {
		d.errorf(path, "expected a mapping, got %s", kindName(n))
		return nil
	}
	m := make(map[string]*yaml.Node, len(n.Content)/2)
	line := make(map[string]int, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolve(n.Content[i]), n.Content[i+1]
		if k == nil || k.Kind != yaml.ScalarNode {
			d.errorf(path, "line %d: keys must be strings", n.Content[i].Line)
			continue
		}
		switch {
		case !slices.Contains(known, k.Value):
			d.errorf(join(path, k.Value), "unknown key")
		case line[k.Value] != 0:
			d.errorf(join(path, k.Value), "repeated (first at line %d)", line[k.Value])
		default:
			m[k.Value] = resolve(v)
			line[k.Value] = max(k.Line, 1)
		}
	}
	return m
}

// list returns the items of a sequence; nil (and no error) for null.
func (d *decoder) list(path string, n *yaml.Node) ([]*yaml.Node, bool) {
	n = resolve(n)
	if isNull(n) {
		return nil, true
	}
	if n.Kind != yaml.SequenceNode {
		d.errorf(path, "expected a list, got %s", kindName(n))
		return nil, false
	}
	return n.Content, true
}

// str decodes a scalar as its text, as the reference does for numbers in
// string fields; null is "".
func (d *decoder) str(path string, n *yaml.Node) (string, bool) {
	n = resolve(n)
	if isNull(n) {
		return "", true
	}
	if n.Kind != yaml.ScalarNode {
		d.errorf(path, "expected a string, got %s", kindName(n))
		return "", false
	}
	return n.Value, true
}

func (d *decoder) boolean(path string, n *yaml.Node) bool {
	n = resolve(n)
	if n != nil && n.Kind == yaml.ScalarNode {
		// YAML 1.1 spellings too: the reference reads its files with yaml.v2.
		switch strings.ToLower(n.Value) {
		case "true", "yes", "on", "y":
			return true
		case "false", "no", "off", "n":
			return false
		}
	}
	d.errorf(path, "expected true or false, got %s", kindName(n))
	return false
}

func (d *decoder) uint32(path string, n *yaml.Node) (uint64, bool) {
	n = resolve(n)
	if n != nil && n.Kind == yaml.ScalarNode && n.ShortTag() == "!!int" {
		v, err := strconv.ParseUint(n.Value, 10, 32)
		if err != nil {
			v, err = strconv.ParseUint(n.Value, 0, 32)
		}
		if err == nil {
			return v, true
		}
	}
	d.errorf(path, "expected an integer from 0 to %d, got %s", uint64(1<<32-1), kindName(n))
	return 0, false
}

// level decodes the descriptor list at depth (1 for the top) into lv.
func (d *decoder) level(path, parentKey string, n *yaml.Node, lv level, depth int) {
	items, _ := d.list(path, n)
	if len(items) > 0 && depth > maxDepth {
		d.errorf(path, "descriptors nested deeper than %d levels", maxDepth)
		d.stop = true
		return
	}
	seen := map[Entry]string{}
	for i, item := range items {
		if d.stop {
			return
		}
		p := index(path, i)
		d.descriptors++
		if d.descriptors > maxDescriptors {
			d.errorf(p, "more than %d descriptors in one file", maxDescriptors)
			d.stop = true
			return
		}
		d.descriptor(p, parentKey, item, lv, seen, depth)
	}
}

func (d *decoder) descriptor(path, parentKey string, n *yaml.Node, lv level, seen map[Entry]string, depth int) {
	m := d.mapping(path, n, "key", "value", "rate_limit", "limits", "shadow_mode", "detailed_metric", "descriptors")
	if m == nil {
		return
	}
	var e Entry
	ok := true
	if k := m["key"]; k != nil {
		e.Key, ok = d.str(join(path, "key"), k)
	}
	if e.Key == "" && ok {
		d.errorf(join(path, "key"), "is required")
	}
	if v := m["value"]; v != nil {
		e.Value, _ = d.str(join(path, "value"), v)
	}
	var shadow, detailed bool
	if v := m["shadow_mode"]; v != nil {
		shadow = d.boolean(join(path, "shadow_mode"), v)
	}
	if v := m["detailed_metric"]; v != nil {
		detailed = d.boolean(join(path, "detailed_metric"), v)
	}

	key := e.Key
	if e.Value != "" {
		key += "_" + e.Value
	}
	if parentKey != "" {
		key = parentKey + "." + key
	}
	if d.keyBytes += len(key); d.keyBytes > maxKeyBytes {
		d.errorf(path, "descriptor keys longer than %d bytes in all", maxKeyBytes)
		d.stop = true
		return
	}

	nd := &node{}
	rl, lims := m["rate_limit"], m["limits"]
	if !isNull(rl) && !isNull(lims) {
		d.errorf(path, "rate_limit and limits are mutually exclusive")
	}
	if !isNull(rl) {
		if l := d.limit(join(path, "rate_limit"), rl, key); l != nil {
			nd.limits = []*Limit{l}
		}
	}
	if !isNull(lims) {
		lp := join(path, "limits")
		items, ok := d.list(lp, lims)
		if ok && len(items) == 0 {
			d.errorf(lp, "is empty")
		}
		for i, item := range items {
			ip := index(lp, i)
			l := d.limit(ip, item, index(key, i))
			if l == nil {
				continue
			}
			if l.Unlimited && len(items) > 1 {
				d.errorf(join(ip, "unlimited"), "an unlimited limit must be the only one")
			}
			nd.limits = append(nd.limits, l)
		}
	}
	for _, l := range nd.limits {
		l.ShadowMode, l.DetailedMetric = shadow, detailed
	}

	if c := m["descriptors"]; !isNull(c) {
		children := level{}
		d.level(join(path, "descriptors"), key, c, children, depth+1)
		if len(children) > 0 {
			nd.children = children
		}
	}

	if e.Key == "" {
		return
	}
	if prev, ok := seen[e]; ok {
		d.errorf(path, "key %s value %s is already defined at %s", quote(e.Key), quote(e.Value), prev)
		return
	}
	seen[e] = path
	lv.add(e, nd)
}

// limit decodes one rate_limit block; key is the limit's Key. It returns
// nil when the block is not a mapping.
func (d *decoder) limit(path string, n *yaml.Node, key string) *Limit {
	m := d.mapping(path, n, "unit", "requests_per_unit", "unlimited", "name", "replaces", "algorithm", "burst", "window")
	if m == nil {
		return nil
	}
	l := &Limit{Key: key}
	if v := m["name"]; v != nil {
		l.Name, _ = d.str(join(path, "name"), v)
	}
	if v := m["unlimited"]; v != nil {
		l.Unlimited = d.boolean(join(path, "unlimited"), v)
	}
	if v := m["replaces"]; !isNull(v) {
		rp := join(path, "replaces")
		items, _ := d.list(rp, v)
		for i, item := range items {
			ip := index(rp, i)
			rm := d.mapping(ip, item, "name")
			if rm == nil {
				continue
			}
			var name string
			if v := rm["name"]; v != nil {
				name, _ = d.str(join(ip, "name"), v)
			}
			switch {
			case name == "":
				d.errorf(join(ip, "name"), "is required")
			case name == l.Name:
				d.errorf(join(ip, "name"), "%s is the name of this limit: a limit cannot replace itself", quote(name))
			default:
				l.Replaces = append(l.Replaces, name)
			}
		}
	}

	if l.Unlimited {
		for _, k := range []string{"unit", "requests_per_unit", "window", "algorithm", "burst"} {
			if m[k] != nil {
				d.errorf(join(path, k), "not allowed with unlimited: true")
			}
		}
		return l
	}

	if v := m["requests_per_unit"]; v != nil {
		l.Requests, _ = d.uint32(join(path, "requests_per_unit"), v)
	}
	if v := m["algorithm"]; v != nil {
		ap := join(path, "algorithm")
		s, ok := d.str(ap, v)
		switch {
		case !ok:
		case s == "fixed_window":
			l.Algorithm = FixedWindow
		case s == "sliding_window":
			l.Algorithm = SlidingWindow
		case s == "gcra":
			l.Algorithm = GCRA
		default:
			d.errorf(ap, "%s is not an algorithm (fixed_window, sliding_window, gcra)", quote(s))
		}
	}

	unit, window := m["unit"], m["window"]
	switch {
	case unit != nil && window != nil:
		d.errorf(join(path, "window"), "not allowed with unit")
	case unit != nil:
		up := join(path, "unit")
		if s, ok := d.str(up, unit); ok {
			if name, dur, ok := unitDuration(s); ok {
				l.Unit, l.Window = name, dur
				l.ReportUnit, l.ReportRequests = name, l.Requests
			} else {
				d.errorf(up, "%s is not a unit (%s)", quote(s), unitList)
			}
		}
	case window != nil:
		wp := join(path, "window")
		if s, ok := d.str(wp, window); ok {
			w, err := time.ParseDuration(s)
			switch {
			case err != nil:
				d.errorf(wp, "%s is not a duration", quote(s))
			case w < time.Second:
				d.errorf(wp, "%s is shorter than 1s", quote(s))
			case w%time.Second != 0:
				d.errorf(wp, "%s is not a whole number of seconds", quote(s))
			default:
				l.Window = w
				l.ReportUnit, l.ReportRequests = reportUnitFor(w, l.Requests)
			}
		}
	default:
		d.errorf(path, "one of unit, window or unlimited: true is required")
	}

	if v := m["burst"]; v != nil {
		bp := join(path, "burst")
		b, ok := d.uint32(bp, v)
		switch {
		case !ok:
		case l.Algorithm != GCRA:
			d.errorf(bp, "only algorithm gcra has a burst")
		case b == 0:
			d.errorf(bp, "must be at least 1")
		default:
			l.Burst = b
		}
	}
	if l.Algorithm == GCRA {
		if l.Requests == 0 {
			d.errorf(join(path, "requests_per_unit"), "algorithm gcra needs at least 1")
		}
		if l.Burst == 0 {
			l.Burst = l.Requests
		}
	}
	return l
}
