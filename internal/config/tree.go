package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"

	"gopkg.in/yaml.v3"
)

// The YAML node tree of the file is kept beside the decoded Config: it holds
// the line of every key, and it is where the file is checked before decoding
// (duplicate and merge keys, the alias bound) and where ${VAR} is expanded.

// maxNodes bounds the YAML nodes of a file counted with every alias expanded,
// so that a file of nested aliases ("billion laughs") cannot exhaust memory.
const maxNodes = 100000

// parseDocument returns the top mapping node, or nil for an empty document.
func parseDocument(data []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil // empty file: every default
		}
		return nil, err
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("yaml: line %d: a second YAML document; a config file holds one", extra.Line)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return nil, nil
	}
	root := doc.Content[0]
	if isNull(root) {
		return nil, nil
	}
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("yaml: line %d: the config must be a mapping of keys (gateway:, broker:, ...), not a %s", root.Line, kindName(root))
	}
	return root, nil
}

var yamlLineRE = regexp.MustCompile(`line (\d+)`)

func yamlErrLine(err error) int {
	m := yamlLineRE.FindStringSubmatch(err.Error())
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// expandedSize counts the nodes under n with every alias expanded, stopping
// once past limit. Sizes are memoised per node, so it runs in linear time
// however deep the aliases nest.
func expandedSize(n *yaml.Node, limit int) int {
	memo := map[*yaml.Node]int{}
	var size func(n *yaml.Node, depth int) int
	size = func(n *yaml.Node, depth int) int {
		if n == nil {
			return 0
		}
		if s, ok := memo[n]; ok {
			return s
		}
		if depth > 1000 { // a cycle or absurd nesting
			return limit + 1
		}
		s := 1
		if n.Kind == yaml.AliasNode {
			s += size(n.Alias, depth+1)
		}
		for _, c := range n.Content {
			if s > limit {
				break
			}
			s += size(c, depth+1)
		}
		memo[n] = s
		return s
	}
	return size(n, 0)
}

// checkKeys refuses non-scalar, merge ("<<") and duplicate keys, and removes
// them from the tree so that decoding does not report them again. It reports
// whether the tree changed.
func (p *parser) checkKeys(n *yaml.Node, path string) bool {
	changed := false
	seen := map[*yaml.Node]bool{}
	var walk func(n *yaml.Node, path string)
	walk = func(n *yaml.Node, path string) {
		if n == nil || seen[n] {
			return
		}
		seen[n] = true
		switch n.Kind {
		case yaml.MappingNode:
			first := map[string]int{}
			kept := n.Content[:0]
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				switch {
				case k.Kind != yaml.ScalarNode:
					p.failAt(k.Line, path, "a key must be a plain word, not a %s", kindName(k))
				case k.ShortTag() == "!!merge":
					p.failAt(k.Line, path, "merge keys (<<) are not supported; write the keys out")
				case first[k.Value] > 0:
					p.failAt(k.Line, join(path, k.Value), "key given twice (first at line %d)", first[k.Value])
				default:
					first[k.Value] = k.Line
					kept = append(kept, k, v)
					walk(v, join(path, k.Value))
					continue
				}
				changed = true
			}
			n.Content = kept
		case yaml.SequenceNode:
			for i, c := range n.Content {
				walk(c, fmt.Sprintf("%s[%d]", path, i))
			}
		}
	}
	walk(n, path)
	return changed
}

// expandEnv replaces ${NAME} in every scalar value (not in keys), on the
// nodes: a plain ${QOS} then still reads as a number, and a value cannot
// inject YAML. "$${" stands for a literal "${"; a "$" not followed by "{" is
// left alone, as in "$SYS/#". A value that cannot be expanded becomes null,
// so that it is reported once. It reports whether the tree changed.
func (p *parser) expandEnv(n *yaml.Node, lookup func(string) (string, bool)) bool {
	changed := false
	seen := map[*yaml.Node]bool{}
	var walk func(n *yaml.Node)
	walk = func(n *yaml.Node) {
		if n == nil || seen[n] {
			return
		}
		seen[n] = true
		switch n.Kind {
		case yaml.MappingNode:
			for i := 1; i < len(n.Content); i += 2 {
				walk(n.Content[i])
			}
		case yaml.SequenceNode:
			for _, c := range n.Content {
				walk(c)
			}
		case yaml.ScalarNode:
			out, err := expand(n.Value, lookup)
			if err != nil {
				p.failAt(n.Line, "", "%v", err)
				*n = yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Line: n.Line, Column: n.Column}
				changed = true
				return
			}
			if out != n.Value {
				n.Value = out
				if n.Style == 0 {
					n.Tag = "" // resolved again from the expanded text
				}
				changed = true
			}
		}
	}
	walk(n)
	return changed
}

// expand performs ${NAME} substitution on one string.
func expand(s string, lookup func(string) (string, bool)) (string, error) {
	if !containsDollarBrace(s) {
		return s, nil
	}
	var b []byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '$' {
			b = append(b, c)
			continue
		}
		if i+2 < len(s) && s[i+1] == '$' && s[i+2] == '{' { // $${ -> ${
			b = append(b, '$', '{')
			i += 2
			continue
		}
		if i+1 >= len(s) || s[i+1] != '{' {
			b = append(b, c)
			continue
		}
		end := -1
		for j := i + 2; j < len(s); j++ {
			if s[j] == '}' {
				end = j
				break
			}
		}
		if end < 0 {
			return "", fmt.Errorf("unterminated ${ in %.64q", s)
		}
		name := s[i+2 : end]
		if !envNameRE.MatchString(name) {
			return "", fmt.Errorf("invalid environment variable name %.64q in %.64q", name, s)
		}
		val, ok := lookup(name)
		if !ok {
			return "", fmt.Errorf("environment variable %s is not set (write $${%s} for a literal ${%s})", name, name, name)
		}
		b = append(b, val...)
		i = end
	}
	return string(b), nil
}

var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func containsDollarBrace(s string) bool {
	for i := 0; i+1 < len(s); i++ {
		if s[i] == '$' && s[i+1] == '{' {
			return true
		}
	}
	return false
}

// index maps the nodes of one tree to their key paths ("sensors[1].interval")
// and back. Aliases are followed, so a key reached through one has a path
// too; a node reached by two paths keeps the first.
type index struct {
	byPath map[string]entry
	byPos  map[pos]string
	keys   map[keyAt]string
	onLine map[int][]entry
}

// entry is one key and its value (key is nil for a list item).
type entry struct {
	path     string
	key, val *yaml.Node
}

type pos struct {
	line, col int
	kind      yaml.Kind
}

type keyAt struct {
	line int
	key  string
}

// newIndex indexes the tree under root; its size must have been bounded.
func newIndex(root *yaml.Node) *index {
	x := &index{byPath: map[string]entry{}, byPos: map[pos]string{}, keys: map[keyAt]string{}, onLine: map[int][]entry{}}
	if root == nil {
		return x
	}
	var walk func(e entry)
	walk = func(e entry) {
		x.byPath[e.path] = e
		if e.key != nil {
			if _, ok := x.keys[keyAt{e.key.Line, e.key.Value}]; !ok {
				x.keys[keyAt{e.key.Line, e.key.Value}] = e.path
			}
		}
		n := e.val
		for n.Kind == yaml.AliasNode && n.Alias != nil {
			n = n.Alias
		}
		p := pos{n.Line, n.Column, n.Kind}
		if _, ok := x.byPos[p]; !ok {
			x.byPos[p] = e.path
			x.onLine[n.Line] = append(x.onLine[n.Line], entry{e.path, e.key, n})
		}
		switch n.Kind {
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				walk(entry{join(e.path, n.Content[i].Value), n.Content[i], n.Content[i+1]})
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				walk(entry{fmt.Sprintf("%s[%d]", e.path, i), nil, c})
			}
		}
	}
	walk(entry{val: root})
	return x
}

// has reports whether the file gives path.
func (x *index) has(path string) bool { _, ok := x.byPath[path]; return ok }

// line is the line an error about path is reported at: the key's line (a
// mapping's or a list's own line is that of its first entry), a list item's
// line; for a path that is not in the file, its nearest parent's.
func (x *index) line(path string) int {
	for p := path; p != ""; {
		if e, ok := x.byPath[p]; ok {
			if e.key != nil {
				return e.key.Line
			}
			return e.val.Line
		}
		i := lastSep(p)
		if i < 0 {
			break
		}
		p = p[:i]
	}
	return 0
}

// lastSep is the index of the separator before the last element of a key
// path, or -1.
func lastSep(p string) int {
	for i := len(p) - 1; i >= 0; i-- {
		if p[i] == '.' || p[i] == '[' {
			return i
		}
	}
	return -1
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	case yaml.ScalarNode:
		return "value"
	case yaml.AliasNode:
		return "alias"
	}
	return "document"
}
