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

// aliased is the node an alias stands for (through aliases of aliases), or
// n itself when it is no alias.
func aliased(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

// expandedSize counts the nodes under n with every alias expanded, stopping
// once past limit. The sizes of alias targets are memoised, so it runs in
// linear time however deep the aliases nest.
func expandedSize(n *yaml.Node, limit int) int {
	memo := map[*yaml.Node]int{}
	var size func(n *yaml.Node, depth int) int
	size = func(n *yaml.Node, depth int) int {
		if n == nil {
			return 0
		}
		if depth > 1000 { // a cycle or absurd nesting
			return limit + 1
		}
		if n.Kind == yaml.AliasNode {
			t, ok := memo[n.Alias]
			if !ok {
				t = size(n.Alias, depth+1)
				memo[n.Alias] = t
			}
			return 1 + t
		}
		s := 1
		for _, c := range n.Content {
			if s > limit {
				break
			}
			s += size(c, depth+1)
		}
		return s
	}
	return size(n, 0)
}

// checkKeys refuses non-scalar, merge ("<<") and duplicate keys, and removes
// them from the tree so that decoding does not report them again. It reports
// whether the tree changed.
func (p *parser) checkKeys(n *yaml.Node, path string) bool {
	changed := false
	var walk func(n *yaml.Node, path string)
	walk = func(n *yaml.Node, path string) { // aliases are not followed: each node once
		if n == nil {
			return
		}
		switch n.Kind {
		case yaml.MappingNode:
			kept := n.Content[:0]
			var seen map[string]int // for a large mapping
			if len(n.Content) > 32 {
				seen = map[string]int{}
			}
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				first := 0
				if seen != nil {
					first = seen[k.Value]
				} else {
					for j := 0; j < len(kept); j += 2 { // most mappings are small
						if kept[j].Value == k.Value {
							first = kept[j].Line
						}
					}
				}
				switch {
				case k.Kind != yaml.ScalarNode:
					p.failAt(k.Line, path, "a key must be a plain word, not a %s", kindName(k))
				case k.ShortTag() == "!!merge":
					p.failAt(k.Line, path, "merge keys (<<) are not supported; write the keys out")
				case first > 0:
					p.failAt(k.Line, join(path, k.Value), "key given twice (first at line %d)", first)
				default:
					if seen != nil {
						seen[k.Value] = k.Line
					}
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
	var walk func(n *yaml.Node)
	walk = func(n *yaml.Node) { // aliases are not followed: each node once
		if n == nil {
			return
		}
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

// index maps the key paths of one tree ("sensors[1].interval") to their
// nodes, and, built when an error needs it, the nodes back to their paths.
// Aliases are followed, so a key reached through one has a path too; a node
// reached by two paths maps back to the first.
type index struct {
	byPath map[string]entry
	order  []string // paths in document order

	reversed bool
	byPos    map[pos]string
	keys     map[keyAt]string
	onLine   map[int][]entry
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

// walkPaths calls f for every key path of the tree under root, in document
// order, aliases followed; the tree's size must have been bounded.
func walkPaths(root *yaml.Node, f func(path string, key, val *yaml.Node)) {
	if root == nil {
		return
	}
	var walk func(path string, key, val *yaml.Node)
	walk = func(path string, key, val *yaml.Node) {
		f(path, key, val)
		n := aliased(val)
		switch n.Kind {
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				walk(join(path, n.Content[i].Value), n.Content[i], n.Content[i+1])
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				walk(fmt.Sprintf("%s[%d]", path, i), nil, c)
			}
		}
	}
	walk("", nil, root)
}

// newIndex indexes the tree under root.
func newIndex(root *yaml.Node) *index {
	x := &index{byPath: map[string]entry{}}
	walkPaths(root, func(path string, key, val *yaml.Node) {
		x.byPath[path] = entry{path, key, val}
		x.order = append(x.order, path)
	})
	return x
}

// reverse builds the maps from nodes back to paths.
func (x *index) reverse() {
	if x.reversed {
		return
	}
	x.reversed = true
	x.byPos, x.keys, x.onLine = map[pos]string{}, map[keyAt]string{}, map[int][]entry{}
	for _, path := range x.order {
		e := x.byPath[path]
		if e.key != nil {
			if _, ok := x.keys[keyAt{e.key.Line, e.key.Value}]; !ok {
				x.keys[keyAt{e.key.Line, e.key.Value}] = e.path
			}
		}
		n := aliased(e.val)
		p := pos{n.Line, n.Column, n.Kind}
		if _, ok := x.byPos[p]; !ok {
			x.byPos[p] = e.path
			x.onLine[n.Line] = append(x.onLine[n.Line], entry{e.path, e.key, n})
		}
	}
}

// place is where a key path is in the file: line is its key's (a list
// item's own), valueLine that of its single value (which may sit on the
// line after the key), else line.
type place struct{ line, valueLine int }

// lineOf is the line of path, or of its nearest parent given.
func lineOf(lines map[string]place, path string) int {
	for p := path; p != ""; {
		if pl, ok := lines[p]; ok {
			return pl.line
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
