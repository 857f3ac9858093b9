package config

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/gatewayd/gatewayd/internal/sensors"
	"gopkg.in/yaml.v3"
)

// Decoding is yaml.v3's own, strict (KnownFields), from the text of the
// checked tree. yaml reports problems as "line N: ..." texts; parser turns
// each back into the key path it concerns, with the line of the file as
// written and a message that tells what to write instead.

// parser holds the state of one Parse. It keeps where every key of the file
// is, not the file's node tree: the tree is dropped before decoding (at
// 10,000 sensors it weighs tens of megabytes), and rebuilt from the decoded
// text only when there are errors to place.
type parser struct {
	file  string
	errs  Errors
	lines map[string]place  // every key path of the file as written
	types map[string]string // "sensors[1]" -> its type:
	used  map[string]bool
}

func (p *parser) failAt(line int, path, format string, args ...any) {
	p.errs = append(p.errs, FieldError{File: p.file, Line: line, Path: path, Msg: fmt.Sprintf(format, args...)})
}

// has reports whether the file gives path.
func (p *parser) has(path string) bool { _, ok := p.lines[path]; return ok }

// line is the line an error about path is reported at: its key's, or its
// nearest parent's when the file does not give it.
func (p *parser) line(path string) int { return lineOf(p.lines, path) }

// valueLine is the line of a single value at path, else its key's.
func (p *parser) valueLine(path string) int {
	if pl, ok := p.lines[path]; ok {
		return pl.valueLine
	}
	return p.line(path)
}

// scan records where every key is and each sensor's type, refuses a
// sensor without a known type and a fraction given for a whole number (see
// refuseFractions); it reports whether the tree changed.
func (p *parser) scan(root *yaml.Node) bool {
	p.lines, p.types = map[string]place{}, map[string]string{}
	var fractions []entry
	walkPaths(root, func(path string, key, val *yaml.Node) {
		n := aliased(val)
		pl := place{line: n.Line, valueLine: n.Line}
		if key != nil {
			pl.line = key.Line
			if n.Kind != yaml.ScalarNode {
				pl.valueLine = key.Line
			}
		}
		if path != "" {
			p.lines[path] = pl
		}
		if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!float" {
			fractions = append(fractions, entry{path, key, n})
		}
		if isSensorPath(path) && n.Kind == yaml.MappingNode {
			p.checkSensorType(path, n)
		}
	})
	return p.refuseFractions(fractions)
}

// isSensorPath reports whether path is "sensors[N]".
func isSensorPath(path string) bool {
	rest, ok := strings.CutPrefix(path, "sensors[")
	return ok && strings.HasSuffix(rest, "]") && !strings.ContainsAny(rest, ".[")
}

// checkSensorType records the type of the sensor entry n at path, or
// reports it missing or unknown.
func (p *parser) checkSensorType(path string, n *yaml.Node) {
	var t *yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == "type" {
			t = n.Content[i+1]
		}
	}
	t = aliased(t)
	switch {
	case t == nil || isNull(t):
		p.failAt(n.Line, path+".type", "is required (one of %s)", strings.Join(sensors.Types(), ", "))
	case t.Kind != yaml.ScalarNode:
		// reported by decoding
	default:
		p.types[path] = t.Value
		if _, known := sensors.NewConfig(t.Value); !known {
			p.failAt(t.Line, path+".type", "unknown sensor type %.64q (known: %s)", t.Value, strings.Join(sensors.Types(), ", "))
		}
	}
}

// decode decodes text, the file's tree (or, when the checks or ${VAR}
// expansion changed the tree, the tree marshalled again: yaml.v3's
// Node.Decode would drop KnownFields) into cfg. Errors are mapped back
// through their key paths to the lines of the file.
func (p *parser) decode(text []byte, cfg *Config) {
	d := yaml.NewDecoder(bytes.NewReader(text))
	d.KnownFields(true)
	err := d.Decode(cfg)
	var te *yaml.TypeError
	switch {
	case errors.As(err, &te):
		root, perr := parseDocument(text)
		if perr != nil {
			p.failAt(0, "", "%v", err)
			return
		}
		dec := newIndex(root)
		dec.reverse()
		for _, msg := range te.Errors {
			p.errs = append(p.errs, p.translate(msg, dec))
		}
	case err != nil:
		p.failAt(yamlErrLine(err), "", "%v", err)
	}
}

var (
	errLineRE   = regexp.MustCompile(`(?s)^line (\d+): (.*)$`)
	unmarshalRE = regexp.MustCompile("(?s)^cannot unmarshal (\\S+)( `(.*)`)? into (.+)$")
)

// translate turns one of yaml's error texts into a FieldError. dec indexes
// the text that was decoded.
func (p *parser) translate(msg string, dec *index) FieldError {
	m := errLineRE.FindStringSubmatch(msg)
	if m == nil {
		return FieldError{File: p.file, Msg: msg}
	}
	line, _ := strconv.Atoi(m[1])
	text := m[2]
	if rest, ok := strings.CutPrefix(text, posMark); ok { // nodeError
		if head, body, ok := strings.Cut(rest, posMark); ok {
			f := strings.SplitN(head, ":", 4)
			if len(f) == 4 {
				l, _ := strconv.Atoi(f[0])
				c, _ := strconv.Atoi(f[1])
				k, _ := strconv.Atoi(f[2])
				if path, ok := dec.byPos[pos{l, c, yaml.Kind(k)}]; ok {
					if f[3] != "" {
						return p.at(join(path, f[3]), p.line(path), body)
					}
					return p.at(path, p.valueLine(path), body)
				}
			}
			text = body
		}
	}
	if rest, ok := strings.CutPrefix(text, "field "); ok {
		if key, _, ok := strings.Cut(rest, " not found in type "); ok {
			if path, ok := dec.keys[keyAt{line, key}]; ok {
				return p.at(path, p.line(path), p.unknownKey(path))
			}
		}
	}
	if um := unmarshalRE.FindStringSubmatch(text); um != nil {
		if path, ok := p.match(dec, line, um[1], um[3], um[2] != ""); ok {
			n := aliased(dec.byPath[path].val)
			t, _ := p.typeAt(path)
			return p.at(path, p.valueLine(path), friendly(t, n, um[4]))
		}
	}
	if es := dec.onLine[line]; len(es) == 1 {
		return p.at(es[0].path, p.valueLine(es[0].path), text)
	}
	return FieldError{File: p.file, Line: p.lineIn(dec, line), Msg: text}
}

func (p *parser) at(path string, line int, msg string) FieldError {
	return FieldError{File: p.file, Line: line, Path: path, Msg: msg}
}

// lineIn maps a line of the decoded text to the file's: through the path of
// a key on it (the texts differ when the tree was marshalled again).
func (p *parser) lineIn(dec *index, line int) int {
	for _, e := range dec.onLine[line] {
		return p.line(e.path)
	}
	return 0
}

// match finds the value a "cannot unmarshal TAG `VALUE`" error of line is
// about: yaml gives the tag and the first characters of the value only.
func (p *parser) match(dec *index, line int, tag, value string, hasValue bool) (string, bool) {
	if p.used == nil {
		p.used = map[string]bool{}
	}
	fits := func(n *yaml.Node) bool {
		if n.ShortTag() != tag {
			return false
		}
		if !hasValue {
			return true
		}
		if v, cut := strings.CutSuffix(value, "..."); cut && len(n.Value) > 10 {
			return strings.HasPrefix(n.Value, v)
		}
		return n.Value == value
	}
	for pass := 0; pass < 2; pass++ {
		for _, e := range dec.onLine[line] {
			if !p.used[e.path] && (pass == 1 || fits(e.val)) {
				p.used[e.path] = true
				return e.path, true
			}
		}
	}
	return "", false
}

// friendly says what a key of Go type t (nil when unknown; goType is yaml's
// name for it) expects, given node n.
func friendly(t reflect.Type, n *yaml.Node, goType string) string {
	got := "a " + kindName(n)
	if n.Kind == yaml.ScalarNode {
		got = fmt.Sprintf("%.64q", n.Value)
	}
	kind := reflect.Invalid
	if t != nil {
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		kind = t.Kind()
	}
	switch kind {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if bits := t.Bits(); bits < 64 && n.ShortTag() == "!!int" {
			return fmt.Sprintf("must be a whole number from %d to %d, not %s", -1<<(bits-1), 1<<(bits-1)-1, n.Value)
		}
		return "expected a whole number, got " + got
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		if bits := t.Bits(); bits < 64 && n.ShortTag() == "!!int" {
			return fmt.Sprintf("must be a whole number from 0 to %d, not %s", uint64(math.MaxUint64)>>(64-bits), n.Value)
		}
		if n.ShortTag() == "!!int" {
			return "must be a whole number >= 0, not " + n.Value
		}
		return "expected a whole number, got " + got
	case reflect.Float32, reflect.Float64:
		return "expected a number, got " + got
	case reflect.Bool:
		return "expected true or false, got " + got
	case reflect.String:
		return "expected a single value, got " + got
	case reflect.Slice, reflect.Array:
		return "expected a list, got " + got
	case reflect.Map:
		return "expected a mapping, got " + got
	case reflect.Struct:
		if t == sensorType {
			return "expected a mapping of keys (name:, type:, ...), got " + got
		}
		return "expected a mapping of keys, got " + got
	}
	return fmt.Sprintf("cannot be read as %s from %s", goType, got)
}

// unknownKey is the message for a key that path's parent does not have.
func (p *parser) unknownKey(path string) string {
	i := lastSep(path)
	parent, key := "", path
	if i >= 0 {
		parent, key = path[:i], path[i+1:]
	}
	t, ok := p.typeAt(parent)
	if !ok {
		return "unknown key"
	}
	known := p.keysOf(t, parent)
	names := make([]string, 0, len(known))
	for k := range known {
		names = append(names, k)
	}
	if t == sensorType {
		return fmt.Sprintf("unknown key for a sensor of type %s%s", p.sensorTypeAt(parent), suggest(key, names))
	}
	return "unknown key" + suggest(key, names)
}

// refuseFractions reports a number with a fraction given for a whole-number
// key (yaml.v3 would cut 1.5 to 1 without a word), and nulls it so that it is
// reported once. It reports whether the tree changed.
func (p *parser) refuseFractions(found []entry) bool {
	changed := false
	for _, e := range found {
		t, ok := p.typeAt(e.path)
		if !ok || reflect.PointerTo(t).Implements(unmarshalerType) {
			continue
		}
		switch t.Kind() {
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
			reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			p.failAt(e.val.Line, e.path, "expected a whole number, got %.64q", e.val.Value)
			*e.val = yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Line: e.val.Line, Column: e.val.Column}
			changed = true
		}
	}
	return changed
}

var (
	unmarshalerType = reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()
	sensorType      = reflect.TypeOf(Sensor{})
	plainType       = reflect.TypeOf(plainSensor{})
)

// typeAt is the Go type a key path decodes into: struct fields by their
// yaml key, list items, map values; in a sensor entry, its type's keys too.
func (p *parser) typeAt(path string) (reflect.Type, bool) {
	t := reflect.TypeOf(Config{})
	at := ""
	for _, seg := range splitPath(path) {
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		switch {
		case seg[0] == '[':
			if t.Kind() != reflect.Slice {
				return nil, false
			}
			t = t.Elem()
			at += seg
		case t.Kind() == reflect.Map:
			t = t.Elem()
			at = join(at, seg)
		case t.Kind() == reflect.Struct:
			ft, ok := p.keysOf(t, at)[seg]
			if !ok {
				return nil, false
			}
			t = ft
			at = join(at, seg)
		default:
			return nil, false
		}
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t, true
}

// splitPath splits "sensors[1].offset.temperature" into "sensors", "[1]",
// "offset", "temperature".
func splitPath(path string) []string {
	var out []string
	for _, part := range strings.Split(path, ".") {
		for part != "" {
			i := strings.IndexByte(part[1:], '[') + 1
			if i == 0 {
				out = append(out, part)
				break
			}
			out = append(out, part[:i])
			part = part[i:]
		}
	}
	return out
}

// keysOf lists the yaml keys of struct type t at path with their types; for
// a sensor entry, the common keys and those of its type.
func (p *parser) keysOf(t reflect.Type, path string) map[string]reflect.Type {
	keys := map[string]reflect.Type{}
	addFields(keys, t)
	if t == sensorType {
		if src, ok := sensors.NewConfig(p.sensorTypeAt(path)); ok {
			addFields(keys, reflect.TypeOf(src))
		}
	}
	return keys
}

// sensorTypeAt is the type: written in the sensor entry at path.
func (p *parser) sensorTypeAt(path string) string { return p.types[path] }

// addFields adds the yaml keys of struct type t (inline fields flattened).
func addFields(keys map[string]reflect.Type, t reflect.Type) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return
	}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		switch {
		case name == "-":
		case strings.Contains(","+opts+",", ",inline,"):
			addFields(keys, f.Type)
		case name == "":
			keys[strings.ToLower(f.Name)] = f.Type
		default:
			keys[name] = f.Type
		}
	}
}

// plainSensor is Sensor without its UnmarshalYAML: the common keys of an
// entry, decoded by yaml itself.
type plainSensor Sensor

// UnmarshalYAML decodes one sensor entry: the common keys and the keys of its
// type together, strictly, so that a misspelt key of either is an error.
// (This form of the method keeps the decoder's KnownFields.) An entry without
// a known type gets its common keys only; Parse reports the type itself.
func (s *Sensor) UnmarshalYAML(unmarshal func(any) error) error {
	var entry nodeOf
	if err := unmarshal(&entry); err != nil {
		return err
	}
	n := entry.n
	if n.Kind != yaml.MappingNode {
		got := "a " + kindName(n)
		if n.Kind == yaml.ScalarNode {
			got = fmt.Sprintf("%.64q", n.Value)
		}
		return nodeError(n, "", "expected a mapping of keys (name:, type:, ...), got %s", got)
	}
	var src sensors.Config
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k, v := n.Content[i], n.Content[i+1]; k.Value == "type" && v.Kind == yaml.ScalarNode {
			src, _ = sensors.NewConfig(v.Value)
		}
	}
	if src == nil {
		return s.decodeCommon(n)
	}
	return s.decodeWith(src, unmarshal)
}

// nodeOf captures the node it is decoded from, without a copy.
type nodeOf struct{ n *yaml.Node }

func (c *nodeOf) UnmarshalYAML(n *yaml.Node) error { c.n = n; return nil }

// commonKeys are the yaml keys of the common sensor keys.
var commonKeys = func() map[string]reflect.Type {
	keys := map[string]reflect.Type{}
	addFields(keys, plainType)
	return keys
}()

// decodeCommon decodes only the common keys: without a known type, the other
// keys cannot be told from misspellings.
func (s *Sensor) decodeCommon(n *yaml.Node) error {
	only := &yaml.Node{Kind: yaml.MappingNode, Line: n.Line, Column: n.Column}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if _, ok := commonKeys[n.Content[i].Value]; ok {
			only.Content = append(only.Content, n.Content[i], n.Content[i+1])
		}
	}
	return only.Decode((*plainSensor)(s))
}

// decodeWith decodes the common keys and those of src's type together. A
// config that is not a pointer to a struct has no keys of its own.
func (s *Sensor) decodeWith(src sensors.Config, unmarshal func(any) error) error {
	own := reflect.ValueOf(src)
	if own.Kind() != reflect.Pointer || own.Elem().Kind() != reflect.Struct {
		own = reflect.ValueOf(&struct{}{})
	}
	t, err := entryType(own.Elem().Type())
	if err != nil {
		return err
	}
	v := reflect.New(t).Elem()
	v.Field(0).Set(reflect.ValueOf(plainSensor(*s)))
	v.Field(1).Set(own.Elem()) // the type's own defaults
	err = unmarshal(v.Addr().Interface())
	*s = Sensor(v.Field(0).Interface().(plainSensor))
	own.Elem().Set(v.Field(1))
	s.Source = src
	return err
}

var entryTypes sync.Map // source config struct type -> reflect.Type of the entry

// entryType is a struct of the common keys and own's keys, both inline.
func entryType(own reflect.Type) (reflect.Type, error) {
	if t, ok := entryTypes.Load(own); ok {
		return t.(reflect.Type), nil
	}
	mine := map[string]reflect.Type{}
	addFields(mine, own)
	for k := range mine {
		if _, clash := commonKeys[k]; clash {
			return nil, fmt.Errorf("sensor config %s: key %q is already a common sensor key", own, k)
		}
	}
	t := reflect.StructOf([]reflect.StructField{
		{Name: "Common", Type: plainType, Tag: `yaml:",inline"`},
		{Name: "Own", Type: own, Tag: `yaml:",inline"`},
	})
	entryTypes.Store(own, t)
	return t, nil
}

// suggest returns ` (did you mean "x"?)` for the closest known key, or the
// list of known keys when nothing is close.
func suggest(key string, known []string) string {
	sort.Strings(known)
	best, bestD := "", 1<<30
	for _, k := range known {
		if dd := editDistance(key, k); dd < bestD {
			best, bestD = k, dd
		}
	}
	if best != "" && bestD <= 2 && bestD < len(key) {
		return fmt.Sprintf(" (did you mean %q?)", best)
	}
	return " (known keys: " + strings.Join(known, ", ") + ")"
}

func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 1 << 20
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
