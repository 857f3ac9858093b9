package config

import (
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"github.com/gatewayd/gatewayd/internal/sensors"
	"gopkg.in/yaml.v3"
)

// decoder turns the YAML node tree into Config. It does the work of
// yaml.v3's KnownFields itself (Node.Decode drops that option) so that every
// unknown or misspelt key is reported with its line and full path, and so
// that a sensor's entry can mix the common keys with its type's own.
type decoder struct {
	file  string
	errs  Errors
	lines map[string]int // key path -> line where it was written
	nodes int
}

var (
	unmarshalerType = reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()
	sensorType      = reflect.TypeOf(Sensor{})
)

// fail records an error at node n, or at the key of path when n is a
// mapping or list (whose own line is that of its first entry).
func (d *decoder) fail(n *yaml.Node, path, format string, args ...any) {
	line := 0
	if n != nil {
		line = n.Line
		if l, ok := d.lines[path]; ok && (n.Kind == yaml.MappingNode || n.Kind == yaml.SequenceNode) {
			line = l
		}
	}
	d.errs = append(d.errs, FieldError{File: d.file, Line: line, Path: path, Msg: fmt.Sprintf(format, args...)})
}

func (d *decoder) tooMany() bool {
	d.nodes++
	if d.nodes == maxNodes+1 {
		d.errs = append(d.errs, FieldError{File: d.file, Msg: fmt.Sprintf("more than %d YAML nodes (aliases included); refusing to expand", maxNodes)})
	}
	return d.nodes > maxNodes
}

func (d *decoder) decodeRoot(root *yaml.Node, cfg *Config) {
	d.decode(root, reflect.ValueOf(cfg).Elem(), "")
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// decode stores node n into v, whose key path is path.
func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) {
	if d.tooMany() {
		return
	}
	if n.Kind == yaml.AliasNode {
		d.decode(n.Alias, v, path)
		return
	}
	if isNull(n) {
		return // a key with no value keeps its default
	}
	if v.CanAddr() && v.Addr().Type().Implements(unmarshalerType) {
		if err := v.Addr().Interface().(yaml.Unmarshaler).UnmarshalYAML(n); err != nil {
			d.fail(n, path, "%s", err.Error())
		}
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		if v.Type() == sensorType {
			d.decodeSensor(n, v.Addr().Interface().(*Sensor), path)
			return
		}
		d.decodeStruct(n, v, path, nil)
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		d.decode(n, v.Elem(), path)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.fail(n, path, "expected a list, got a %s", kindName(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, c := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			d.lines[p] = c.Line
			d.decode(c, s.Index(i), p)
		}
		v.Set(s)
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			d.fail(n, path, "expected a mapping, got a %s", kindName(n))
			return
		}
		m := reflect.MakeMap(v.Type())
		d.eachKey(n, path, func(key string, k, val *yaml.Node) {
			p := join(path, key)
			d.lines[p] = k.Line
			e := reflect.New(v.Type().Elem()).Elem()
			d.decode(val, e, p)
			m.SetMapIndex(reflect.ValueOf(key), e)
		})
		v.Set(m)
	default:
		d.decodeScalar(n, v, path)
	}
}

// eachKey calls f for every key of a mapping, refusing duplicate, non-scalar
// and merge ("<<") keys.
func (d *decoder) eachKey(n *yaml.Node, path string, f func(key string, k, v *yaml.Node)) {
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			d.fail(k, path, "a key must be a plain word, not a %s", kindName(k))
			continue
		}
		if k.ShortTag() == "!!merge" {
			d.fail(k, path, "merge keys (<<) are not supported; write the keys out")
			continue
		}
		if line, dup := seen[k.Value]; dup {
			d.fail(k, join(path, k.Value), "key given twice (first at line %d)", line)
			continue
		}
		seen[k.Value] = k.Line
		f(k.Value, k, val)
	}
}

// fieldsOf maps yaml keys to struct field indexes.
func fieldsOf(t reflect.Type) map[string]int {
	out := map[string]int{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := strings.Split(f.Tag.Get("yaml"), ",")[0]
		if tag == "" || tag == "-" || !f.IsExported() {
			continue
		}
		out[tag] = i
	}
	return out
}

// decodeStruct decodes a mapping into a struct. Keys for which skip returns
// true are left for another decoder (a sensor type's own keys).
func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, path string, skip func(string) bool) {
	if n.Kind != yaml.MappingNode {
		d.fail(n, path, "expected a mapping of keys, got a %s", kindName(n))
		return
	}
	fields := fieldsOf(v.Type())
	d.eachKey(n, path, func(key string, k, val *yaml.Node) {
		if skip != nil && skip(key) {
			return
		}
		p := join(path, key)
		i, ok := fields[key]
		if !ok {
			d.fail(k, p, "unknown key%s", suggest(key, fields))
			return
		}
		d.lines[p] = k.Line
		d.decode(val, v.Field(i), p)
	})
}

// decodeSensor decodes one sensor entry: the common keys into s, the rest
// into the config of the sensor's type, each strictly.
func (d *decoder) decodeSensor(n *yaml.Node, s *Sensor, path string) {
	if n.Kind != yaml.MappingNode {
		d.fail(n, path, "expected a mapping of keys (name:, type:, ...), got a %s", kindName(n))
		return
	}
	s.Type = "simulated"
	typeLine := n.Line
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == "type" {
			typeLine = n.Content[i].Line
			if tn := n.Content[i+1]; tn.Kind == yaml.ScalarNode && !isNull(tn) {
				s.Type = tn.Value
			}
		}
	}
	sv := reflect.ValueOf(s).Elem()
	common := fieldsOf(sensorType)
	src, ok := sensors.NewConfig(s.Type)
	if !ok {
		d.errs = append(d.errs, FieldError{File: d.file, Line: typeLine, Path: join(path, "type"),
			Msg: fmt.Sprintf("unknown sensor type %q (known: %s)", s.Type, strings.Join(sensors.Types(), ", "))})
	} else {
		s.Source = src
	}
	var srcv reflect.Value
	own := map[string]int{}
	if rv := reflect.ValueOf(src); src != nil && rv.Kind() == reflect.Pointer && rv.Elem().Kind() == reflect.Struct {
		srcv = rv.Elem()
		own = fieldsOf(srcv.Type())
	}
	d.eachKey(n, path, func(key string, k, val *yaml.Node) {
		p := join(path, key)
		if i, ok := common[key]; ok {
			d.lines[p] = k.Line
			d.decode(val, sv.Field(i), p)
			return
		}
		if src == nil {
			return // the type is unknown, and so are its keys
		}
		if i, ok := own[key]; ok && srcv.IsValid() {
			d.lines[p] = k.Line
			d.decode(val, srcv.Field(i), p)
			return
		}
		all := map[string]int{}
		for k, i := range common {
			all[k] = i
		}
		for k, i := range own {
			all[k] = i
		}
		d.fail(k, p, "unknown key for a sensor of type %s%s", s.Type, suggest(key, all))
	})
}

func (d *decoder) decodeScalar(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.ScalarNode {
		d.fail(n, path, "expected a single value, got a %s", kindName(n))
		return
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(n.Value)
	case reflect.Bool:
		b, err := strconv.ParseBool(n.Value)
		if err != nil {
			d.fail(n, path, "expected true or false, got %q", n.Value)
			return
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int64, reflect.Int32:
		if n.ShortTag() != "!!int" {
			d.fail(n, path, "expected a whole number, got %q", n.Value)
			return
		}
		var i int64
		if err := n.Decode(&i); err != nil || v.OverflowInt(i) {
			d.fail(n, path, "expected a whole number, got %q", n.Value)
			return
		}
		v.SetInt(i)
	case reflect.Float64:
		if t := n.ShortTag(); t != "!!int" && t != "!!float" {
			d.fail(n, path, "expected a number, got %q", n.Value)
			return
		}
		var f float64
		if err := n.Decode(&f); err != nil {
			d.fail(n, path, "expected a number, got %q", n.Value)
			return
		}
		v.SetFloat(f)
	default:
		d.fail(n, path, "cannot decode into %s", v.Type())
	}
}

// suggest returns ` (did you mean "x"?)` for the closest known key, or the
// list of known keys when nothing is close.
func suggest(key string, known map[string]int) string {
	best, bestD := "", 1<<30
	names := make([]string, 0, len(known))
	for k := range known {
		names = append(names, k)
		if dd := editDistance(key, k); dd < bestD || dd == bestD && k < best {
			best, bestD = k, dd
		}
	}
	if best != "" && bestD <= 2 && bestD < len(key) {
		return fmt.Sprintf(" (did you mean %q?)", best)
	}
	sort.Strings(names)
	return " (known keys: " + strings.Join(names, ", ") + ")"
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
