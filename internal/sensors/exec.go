package sensors

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// The exec source runs a program and reads its standard output, for a
// sensor gatewayd has no driver for: a vendor tool, a script around an
// I2C library, a reading from another box.

func init() { Register("exec", func() Config { return &ExecConfig{} }) }

// ExecConfig is the exec source's own keys.
type ExecConfig struct {
	// Command is the program and its arguments, run directly (no shell).
	// The program is an absolute path or a name found in PATH.
	Command []string `yaml:"command"`
}

// Validate implements Config. It checks the command's form only; Probe
// looks the program up.
func (c *ExecConfig) Validate() error {
	if len(c.Command) == 0 || c.Command[0] == "" {
		return Errorf("command", `is required: the program and its arguments, e.g. ["/usr/local/bin/read-sensor", "--json"]`)
	}
	for i, a := range c.Command {
		if strings.IndexByte(a, 0) >= 0 {
			return Errorf("command", "argument %d contains a NUL byte", i)
		}
	}
	if p := c.Command[0]; !filepath.IsAbs(p) && strings.ContainsRune(p, '/') {
		return Errorf("command", "%q is a relative path: give an absolute path or a program name found in PATH", p)
	}
	return nil
}

// Probe implements Prober: a program named without a path is looked up in
// PATH (at -check, the start and a reload), so that a typo fails the config
// check rather than every read.
func (c *ExecConfig) Probe() error {
	_, err := lookProgram(c.Command[0])
	return err
}

// lookProgram resolves the program of a command.
func lookProgram(prog string) (string, error) {
	switch {
	case filepath.IsAbs(prog):
		return prog, nil // may be installed later; a missing file fails the read
	case strings.ContainsRune(prog, '/'):
		return "", Errorf("command", "%q is a relative path: give an absolute path or a program name found in PATH", prog)
	}
	path, err := exec.LookPath(prog)
	switch {
	case errors.Is(err, exec.ErrDot) || err == nil && !filepath.IsAbs(path):
		return "", Errorf("command", "%q is found only relative to the working directory (PATH has a relative entry); give an absolute path", prog)
	case err != nil:
		return "", Errorf("command", "%q not found in PATH", prog)
	}
	return path, nil
}

// New implements Config.
func (c *ExecConfig) New(env Env) (Source, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	path, err := lookProgram(c.Command[0])
	if err != nil {
		return nil, err
	}
	return &Exec{path: path, args: append([]string(nil), c.Command[1:]...), name: filepath.Base(path)}, nil
}

// Limits of one run.
const (
	execMaxOutput = 64 << 10 // stdout beyond this fails the read
	execMaxStderr = 4 << 10  // stderr kept for the error message
	execErrShown  = 200      // bytes of stderr put in an error
	// execWaitDelay is how long Read waits, after the command exited or
	// was killed, for its stdout and stderr to close. A background job
	// that inherited them keeps them open; without this bound it would hang
	// Read until the job ends.
	execWaitDelay = 500 * time.Millisecond
)

// Exec runs a command at each Read and parses what it prints: one JSON
// object of numbers, {"temperature": 21.5, "humidity": 40}, or lines of
// quantity=value (blank lines and # comments ignored).
type Exec struct {
	path string
	args []string
	name string // for error messages
}

// Read implements Source. The command runs in its own process group; when
// ctx ends, the whole group is killed, so a shell script's children die
// with it.
func (s *Exec) Read(ctx context.Context) ([]Reading, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	stdout := &capBuffer{max: execMaxOutput, fail: true}
	stderr := &capBuffer{max: execMaxStderr}
	cmd := exec.CommandContext(ctx, s.path, s.args...)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.WaitDelay = execWaitDelay
	ownProcessGroup(cmd)
	err := cmd.Run()
	killProcessGroup(cmd) // whatever the command left running in the background

	switch {
	case ctx.Err() != nil:
		return nil, fmt.Errorf("%s: killed: %w", s.name, ctx.Err())
	case stdout.over:
		return nil, fmt.Errorf("%s: output exceeds %d KiB", s.name, execMaxOutput>>10)
	case errors.Is(err, exec.ErrWaitDelay):
		return nil, fmt.Errorf("%s exited, but a process it started kept its output open; redirect the output of background jobs", s.name)
	case err != nil:
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return nil, fmt.Errorf("%s: %v%s", s.name, exit, stderrTail(stderr.buf))
		}
		return nil, err // could not start: "fork/exec /path: no such file or directory"
	}
	readings, err := parseExecOutput(stdout.buf)
	if err != nil {
		return nil, fmt.Errorf("%s: %w%s", s.name, err, stderrTail(stderr.buf))
	}
	return readings, nil
}

// capBuffer keeps the first max bytes written to it. With fail set, a write
// past max fails: os/exec then closes the pipe, and a runaway command dies
// of SIGPIPE instead of running until the timeout.
type capBuffer struct {
	buf  []byte
	max  int
	fail bool
	over bool
}

var errTooMuch = errors.New("output limit reached")

func (c *capBuffer) Write(p []byte) (int, error) {
	room := c.max - len(c.buf)
	if len(p) <= room {
		c.buf = append(c.buf, p...)
		return len(p), nil
	}
	c.buf = append(c.buf, p[:room]...)
	c.over = true
	if c.fail {
		return room, errTooMuch
	}
	return len(p), nil
}

// stderrTail formats what the command wrote to stderr for an error message:
// trimmed, lines joined, cut to a couple of hundred bytes.
func stderrTail(b []byte) string {
	var lines []string
	for _, l := range strings.Split(strings.ToValidUTF8(string(b), "?"), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	s := strings.Join(lines, "; ")
	if s == "" {
		return ""
	}
	if len(s) > execErrShown {
		cut := execErrShown
		for cut > 0 && s[cut]&0xC0 == 0x80 { // do not split a UTF-8 sequence
			cut--
		}
		s = s[:cut] + "..."
	}
	return " (stderr: " + s + ")"
}

// parseExecOutput parses a command's output: one JSON object whose values
// are numbers, or quantity=value lines. Every quantity must be a valid name
// and appear once; there must be at least one.
func parseExecOutput(b []byte) ([]Reading, error) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return nil, errors.New("no output")
	}
	var out []Reading
	var err error
	if b[0] == '{' {
		out, err = parseExecJSON(b)
	} else {
		out, err = parseExecLines(b)
	}
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, errors.New("output has no readings")
	}
	return out, nil
}

func parseExecJSON(b []byte) ([]Reading, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if _, err := dec.Token(); err != nil { // the '{'
		return nil, fmt.Errorf("invalid JSON: %v", err)
	}
	var out []Reading
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("invalid JSON: %v", err)
		}
		key, _ := tok.(string) // a key is always a string
		if tok, err = dec.Token(); err != nil {
			return nil, fmt.Errorf("invalid JSON: %v", err)
		}
		num, ok := tok.(json.Number)
		if !ok {
			return nil, fmt.Errorf("%s: expected a number, got %s", quoteShort(key), jsonKind(tok))
		}
		v, err := strconv.ParseFloat(string(num), 64)
		if err != nil || math.IsInf(v, 0) {
			return nil, fmt.Errorf("%s: %s is not a finite number", quoteShort(key), quoteShort(string(num)))
		}
		if err := checkQuantity(key, seen); err != nil {
			return nil, err
		}
		out = append(out, Reading{Quantity: key, Value: v})
	}
	if _, err := dec.Token(); err != nil { // the '}'
		return nil, fmt.Errorf("invalid JSON: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("invalid JSON: more after the object")
	}
	return out, nil
}

func jsonKind(tok json.Token) string {
	switch t := tok.(type) {
	case json.Delim:
		if t == '{' {
			return "an object"
		}
		return "a list"
	case string:
		return "a string"
	case bool:
		return "true or false"
	case nil:
		return "null"
	}
	return fmt.Sprintf("%T", tok)
}

func parseExecLines(b []byte) ([]Reading, error) {
	var out []Reading
	seen := map[string]bool{}
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		key, val, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("line %d: %s is not quantity=value", i+1, quoteShort(line))
		}
		key, val = strings.TrimSpace(key), strings.TrimSpace(val)
		v, err := strconv.ParseFloat(val, 64)
		if err != nil || math.IsInf(v, 0) || math.IsNaN(v) {
			return nil, fmt.Errorf("line %d: %s is not a number", i+1, quoteShort(val))
		}
		if err := checkQuantity(key, seen); err != nil {
			return nil, fmt.Errorf("line %d: %w", i+1, err)
		}
		out = append(out, Reading{Quantity: key, Value: v})
	}
	return out, nil
}

func checkQuantity(q string, seen map[string]bool) error {
	if !ValidQuantity(q) {
		return fmt.Errorf("%s is not a quantity name (a-z, 0-9, _; starting with a letter)", quoteShort(q))
	}
	if seen[q] {
		return fmt.Errorf("%s given twice", quoteShort(q))
	}
	seen[q] = true
	return nil
}
