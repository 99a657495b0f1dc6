package ratelimit

import "strings"

// level is one level of a domain's descriptor tree, by descriptor key.
type level map[string]*keyNodes

// keyNodes are the nodes of one level that share a key.
type keyNodes struct {
	exact    map[string]*node // by value
	wildcard []*node          // values with *, in the order of the file
	def      *node            // the node without a value
}

// node is one configured descriptor.
type node struct {
	limits   []*Limit // nil: no limit
	children level    // nil: a leaf
	pattern  glob     // wildcard nodes only
}

func (lv level) add(e Entry, n *node) {
	kn := lv[e.Key]
	if kn == nil {
		kn = &keyNodes{}
		lv[e.Key] = kn
	}
	switch {
	case e.Value == "":
		kn.def = n
	case strings.Contains(e.Value, "*"):
		n.pattern = compileGlob(e.Value)
		kn.wildcard = append(kn.wildcard, n)
	default:
		if kn.exact == nil {
			kn.exact = map[string]*node{}
		}
		kn.exact[e.Value] = n
	}
}

// find is the node an entry reaches: the node with the same key and value,
// else the first wildcard node in file order whose pattern matches the
// value, else the key's node without a value.
func (lv level) find(key, value string) *node {
	kn := lv[key]
	if kn == nil {
		return nil
	}
	if n := kn.exact[value]; n != nil {
		return n
	}
	for _, n := range kn.wildcard {
		if n.pattern.match(value) {
			return n
		}
	}
	return kn.def
}

// Match returns the limits of one request descriptor in domain, or nil
// when none applies (an unknown domain, an entry that reaches no node, or
// a node without a limit).
//
// Matching follows envoyproxy/ratelimit. The entries walk the domain's
// tree one level each. At each level the entry goes to the node with the
// same key and value; failing that, to the first node of that key in file
// order whose value is a wildcard pattern matching the value (the
// reference tries its wildcards in file order too; its patterns end in *,
// ours may have * anywhere, each standing for any run of bytes, the empty
// one included); failing that, to the key's node without a value. An entry
// that reaches no node ends the match with no limit, and so does a
// descriptor longer than the path it takes: the limits are those of the
// node the last entry reaches, so a parent's limit does not apply to a
// longer descriptor and a shorter descriptor does not reach a deeper
// node's limit. There is no backtracking: once an entry chose its node,
// the next entry looks only below it. Keys and values are compared
// exactly, case included.
//
// The returned slice and its limits are shared, built once when the
// configuration was loaded: callers must not modify them. Match does not
// allocate.
func (c *Config) Match(domain string, entries []Entry) []*Limit {
	if c == nil || len(entries) == 0 {
		return nil
	}
	lv := c.domains[domain]
	var n *node
	for i := range entries {
		if lv == nil {
			return nil
		}
		if n = lv.find(entries[i].Key, entries[i].Value); n == nil {
			return nil
		}
		lv = n.children
	}
	return n.limits
}

// glob is a value pattern in which each * matches any run of bytes.
type glob struct {
	prefix, suffix string
	middle         []string // the non-empty parts between stars
	min            int      // the shortest matching length
}

func compileGlob(p string) glob {
	parts := strings.Split(p, "*")
	g := glob{prefix: parts[0], suffix: parts[len(parts)-1]}
	g.min = len(g.prefix) + len(g.suffix)
	for _, m := range parts[1 : len(parts)-1] {
		if m != "" {
			g.middle = append(g.middle, m)
			g.min += len(m)
		}
	}
	return g
}

// match reports whether v matches. Placing each middle part at its
// leftmost occurrence is optimal, as every gap may be any length.
func (g *glob) match(v string) bool {
	if len(v) < g.min || !strings.HasPrefix(v, g.prefix) || !strings.HasSuffix(v, g.suffix) {
		return false
	}
	v = v[len(g.prefix) : len(v)-len(g.suffix)]
	for _, m := range g.middle {
		i := strings.Index(v, m)
		if i < 0 {
			return false
		}
		v = v[i+len(m):]
	}
	return true
}
