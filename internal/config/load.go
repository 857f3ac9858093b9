package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strconv"

	"gopkg.in/yaml.v3"
)

// MaxFileSize bounds the config file; a larger one is refused rather than
// parsed, since it is surely not a hand-written config.
const MaxFileSize = 1 << 20

// maxNodes bounds the YAML nodes visited, aliases included, so that a file
// of nested aliases ("billion laughs") cannot exhaust memory.
const maxNodes = 100000

// Load reads, decodes and validates the config file at path. The error, if
// any, is an Errors value listing every problem with its file, line and key,
// or a plain error when the file cannot be read at all.
func Load(path string) (*Config, error) {
	data, err := readLimited(path)
	if err != nil {
		return nil, fmt.Errorf("reading config file %s: %w", path, err)
	}
	return Parse(path, data, os.LookupEnv)
}

func readLimited(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("file is larger than %d bytes", MaxFileSize)
	}
	return data, nil
}

// Parse decodes and validates a config held in memory. name is used in error
// messages; lookupEnv resolves ${NAME}.
func Parse(name string, data []byte, lookupEnv func(string) (string, bool)) (*Config, error) {
	return parse(name, data, lookupEnv, true)
}

// parse is Parse; probe false skips the checks that touch the network (host
// lookups, trial listens), for the fuzzer.
func parse(name string, data []byte, lookupEnv func(string) (string, bool), probe bool) (*Config, error) {
	d := &decoder{file: name, lines: map[string]int{}}
	cfg := Default()
	cfg.File = name

	root, err := parseDocument(data)
	if err != nil {
		return nil, Errors{{File: name, Line: yamlErrLine(err), Msg: err.Error()}}
	}
	if root != nil {
		d.expandEnv(root, lookupEnv)
		if len(d.errs) == 0 {
			d.decodeRoot(root, cfg)
		}
	}
	if len(d.errs) > 0 {
		return nil, d.errs
	}
	if _, ok := d.lines["sensors"]; !ok {
		cfg.Sensors = defaultSensors()
	}
	v := &validator{file: name, lines: d.lines, probe: probe}
	v.complete(cfg)
	v.validate(cfg)
	if len(v.errs) > 0 {
		sort.SliceStable(v.errs, func(i, j int) bool { return v.errs[i].Line < v.errs[j].Line })
		return nil, v.errs
	}
	return cfg, nil
}

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
		line := extra.Line
		if err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("yaml: line %d: a second YAML document; a config file holds one", line)
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

// expandEnv replaces ${NAME} in every scalar value (not in keys). "$${" stands
// for a literal "${"; a "$" not followed by "{" is left alone, as in "$SYS/#".
func (d *decoder) expandEnv(n *yaml.Node, lookup func(string) (string, bool)) {
	seen := map[*yaml.Node]bool{}
	var walk func(n *yaml.Node)
	walk = func(n *yaml.Node) {
		if n == nil || seen[n] || d.tooMany() {
			return
		}
		seen[n] = true
		switch n.Kind {
		case yaml.MappingNode:
			for i := 1; i < len(n.Content); i += 2 {
				walk(n.Content[i])
			}
		case yaml.SequenceNode, yaml.DocumentNode:
			for _, c := range n.Content {
				walk(c)
			}
		case yaml.AliasNode:
			walk(n.Alias)
		case yaml.ScalarNode:
			out, err := expand(n.Value, lookup)
			if err != nil {
				d.errs = append(d.errs, FieldError{File: d.file, Line: n.Line, Msg: err.Error()})
				return
			}
			if out != n.Value {
				n.Value = out
				if n.Style == 0 || n.Style == yaml.TaggedStyle {
					// A plain ${QOS} should still decode as a number: let
					// yaml resolve the tag from the expanded text.
					n.Tag = ""
				}
			}
		}
	}
	walk(n)
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
			return "", fmt.Errorf("unterminated ${ in %q", s)
		}
		name := s[i+2 : end]
		if !envNameRE.MatchString(name) {
			return "", fmt.Errorf("invalid environment variable name %q in %q", name, s)
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
