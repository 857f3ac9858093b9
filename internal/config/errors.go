package config

import (
	"fmt"
	"strings"

	"gopkg.in/yaml.v3"
)

// FieldError is one problem in the config file, at a line and a key.
type FieldError struct {
	File string
	Line int    // 0 when unknown
	Path string // e.g. "sensors[1].interval"; "" for the file as a whole
	Msg  string
}

func (e FieldError) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d", e.Line)
		}
		b.WriteString(": ")
	} else if e.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in one config file, in file order.
type Errors []FieldError

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// nodeError is how this package's types (Duration, ByteSize, a sensor entry)
// report a bad value to yaml: as a *yaml.TypeError, so that yaml goes on
// decoding and every error of the file is collected, whose text carries the
// node's exact position for Parse to map back to the key path. sub names a
// key below the node ("type" of a sensor entry) or is "".
func nodeError(n *yaml.Node, sub, format string, args ...any) *yaml.TypeError {
	return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %s%d:%d:%d:%s%s%s",
		n.Line, posMark, n.Line, n.Column, n.Kind, sub, posMark, fmt.Sprintf(format, args...))}}
}

// posMark delimits the position in a nodeError's text; it cannot occur in a
// YAML document.
const posMark = "\x00"
