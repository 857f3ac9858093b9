package sensors

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// script writes an executable shell script and returns its path. The exec
// tests do not run in parallel: a fork while another test still holds a
// script open for writing would make its exec fail with ETXTBSY.
func script(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "read-sensor")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func execSource(t *testing.T, command ...string) *Exec {
	t.Helper()
	return newSource(t, &ExecConfig{Command: command}).(*Exec)
}

func TestExecValidate(t *testing.T) {
	bin := t.TempDir()
	tool := filepath.Join(bin, "read-sensor")
	if err := os.WriteFile(tool, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin)
	tests := []struct {
		command []string
		err     string // "" for valid
	}{
		{[]string{"/usr/local/bin/read-sensor", "--json"}, ""}, // absolute: may be installed later
		{[]string{"read-sensor"}, ""},
		{nil, "command: is required"},
		{[]string{}, "command: is required"},
		{[]string{"", "--json"}, "command: is required"},
		{[]string{"./read-sensor"}, "is a relative path"},
		{[]string{"bin/read-sensor"}, "is a relative path"},
		{[]string{"no-such-tool"}, `"no-such-tool" not found in PATH`},
		{[]string{"/bin/echo", "a\x00b"}, "argument 1 contains a NUL byte"},
	}
	for _, tt := range tests {
		c := &ExecConfig{Command: tt.command}
		err := c.Validate()
		if err == nil {
			err = c.Probe() // PATH is looked at by Probe, not by Validate
		}
		if tt.err == "" {
			if err != nil {
				t.Errorf("%q: unexpected error %v", tt.command, err)
			}
			continue
		}
		var ke *KeyError
		if !errors.As(err, &ke) || ke.Key != "command" || !strings.Contains(err.Error(), tt.err) {
			t.Errorf("%q: error %v, want a command error containing %q", tt.command, err, tt.err)
		}
	}

	// Validate does not touch the system: a name not in PATH passes it.
	if err := (&ExecConfig{Command: []string{"no-such-tool"}}).Validate(); err != nil {
		t.Errorf("Validate looked PATH up: %v", err)
	}

	// A name is resolved once, when the source is built.
	src := execSource(t, "read-sensor", "--json")
	if src.path != tool {
		t.Errorf("path = %q, want %q", src.path, tool)
	}
}

func TestExecRead(t *testing.T) {
	tests := []struct {
		name, body string
		args       []string
		want       []Reading
		err        string
	}{
		{name: "json", body: `echo '{"temperature": 21.5, "humidity": 40}'`,
			want: []Reading{{Quantity: Temperature, Value: 21.5}, {Quantity: Humidity, Value: 40}}},
		{name: "json with other quantities", body: `printf '{\n  "co2": 415,\n  "temperature": -3.25e0\n}\n'`,
			want: []Reading{{Quantity: "co2", Value: 415}, {Quantity: Temperature, Value: -3.25}}},
		{name: "lines", body: "echo '# sensor 1'; echo; echo 'temperature=21.5'; echo ' humidity = 40 '; echo 'pressure=1013.2'",
			want: []Reading{{Quantity: Temperature, Value: 21.5}, {Quantity: Humidity, Value: 40}, {Quantity: Pressure, Value: 1013.2}}},
		{name: "argv, not a shell", body: `[ "$3" = '$(id); x' ] || exit 9; echo "$1=$2"`, args: []string{"temperature", "19.5", "$(id); x"},
			want: []Reading{{Quantity: Temperature, Value: 19.5}}},
		{name: "exit status", body: "echo 'i2c-1: no device at 0x76' >&2; echo temperature=1; exit 3",
			err: "exit status 3 (stderr: i2c-1: no device at 0x76)"},
		{name: "killed by a signal", body: "kill -TERM $$", err: "signal: terminated"},
		{name: "garbage", body: "echo hello", err: `line 1: "hello" is not quantity=value`},
		{name: "garbage with stderr", body: "echo 'temperature=n/a'; echo 'sensor busy' >&2", err: `line 1: "n/a" is not a number (stderr: sensor busy)`},
		{name: "string value", body: `echo '{"temperature": "21.5"}'`, err: `"temperature": expected a number, got a string`},
		{name: "bad quantity", body: "echo 'Temperature=21.5'", err: `"Temperature" is not a quantity name`},
		{name: "no output", body: "exit 0", err: "no output"},
		{name: "empty object", body: "echo '{}'", err: "output has no readings"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := execSource(t, append([]string{script(t, tt.body)}, tt.args...)...)
			got, err := readWithin(t, src, 10*time.Second)
			checkRead(t, got, err, tt.want, tt.err)
			if err != nil && !strings.HasPrefix(err.Error(), "read-sensor") {
				t.Errorf("error %q does not name the command", err)
			}
		})
	}
}

func TestExecMissingProgram(t *testing.T) {
	src := execSource(t, filepath.Join(t.TempDir(), "not-installed"))
	_, err := readWithin(t, src, 5*time.Second)
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("err = %v, want not found", err)
	}
}

// pidGone reports whether a process has ended (or is a zombie nobody reaped).
func pidGone(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	i := bytes.LastIndexByte(b, ')')
	return i >= 0 && i+2 < len(b) && (b[i+2] == 'Z' || b[i+2] == 'X')
}

// waitGone waits until the process whose pid is in pidFile has ended.
func waitGone(t *testing.T, pidFile string) {
	t.Helper()
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatalf("the script did not get to write its child's pid: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc to check processes")
	}
	deadline := time.Now().Add(5 * time.Second)
	for !pidGone(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("process %d still runs", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A command that hangs is killed, with its children, when ctx ends.
func TestExecKilledAtTimeout(t *testing.T) {
	const timeout = 300 * time.Millisecond
	tests := []struct{ name, body string }{
		{"hung", "echo $$ > \"$0.pid\"; exec sleep 60"},
		// The shell waits for a child that holds stdout open; killing the
		// shell alone would leave Read waiting for the pipe to close.
		{"child holds stdout", "sleep 60 & echo $! > \"$0.pid\"; wait"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := script(t, tt.body)
			start := time.Now()
			_, err := readWithin(t, execSource(t, path), timeout)
			elapsed := time.Since(start)
			if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "read-sensor: killed") {
				t.Fatalf("err = %v, want killed and DeadlineExceeded", err)
			}
			if elapsed > timeout+time.Second {
				t.Fatalf("Read returned %v after the start, with a %v timeout", elapsed, timeout)
			}
			waitGone(t, path+".pid")
		})
	}
}

// A command that exits but leaves a background job holding its stdout does
// not hang Read; the job is killed.
func TestExecBackgroundJobHoldsStdout(t *testing.T) {
	path := script(t, "sleep 60 & echo $! > \"$0.pid\"; echo temperature=1")
	start := time.Now()
	_, err := readWithin(t, execSource(t, path), 10*time.Second)
	if err == nil || !strings.Contains(err.Error(), "kept its output open") {
		t.Fatalf("err = %v, want 'kept its output open'", err)
	}
	if d := time.Since(start); d > execWaitDelay+2*time.Second {
		t.Fatalf("Read took %v", d)
	}
	waitGone(t, path+".pid")
}

func TestExecOutputCapped(t *testing.T) {
	start := time.Now()
	_, err := readWithin(t, execSource(t, script(t, "while :; do echo temperature=1; done")), 20*time.Second)
	if err == nil || !strings.Contains(err.Error(), "output exceeds 64 KiB") {
		t.Fatalf("err = %v, want output exceeds 64 KiB", err)
	}
	// The command dies of the closed pipe, long before the timeout.
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("Read took %v", d)
	}
}

func TestExecCancelled(t *testing.T) {
	path := script(t, "touch \"$0.ran\"; echo temperature=1")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := execSource(t, path).Read(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want Canceled", err)
	}
	if _, err := os.Stat(path + ".ran"); err == nil {
		t.Fatal("the command ran with a cancelled ctx")
	}
}

func TestCapBuffer(t *testing.T) {
	c := &capBuffer{max: 4}
	for _, s := range []string{"ab", "cdef", "gh"} {
		if n, err := c.Write([]byte(s)); n != len(s) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", s, n, err)
		}
	}
	if string(c.buf) != "abcd" || !c.over {
		t.Fatalf("buf = %q, over = %v", c.buf, c.over)
	}
	f := &capBuffer{max: 4, fail: true}
	if n, err := f.Write([]byte("abcdef")); n != 4 || err == nil {
		t.Fatalf("failing Write = %d, %v", n, err)
	}
}

func TestStderrTail(t *testing.T) {
	if got := stderrTail([]byte("\n  first \n\nsecond\n")); got != " (stderr: first; second)" {
		t.Errorf("got %q", got)
	}
	if got := stderrTail([]byte(" \n")); got != "" {
		t.Errorf("got %q", got)
	}
	long := stderrTail([]byte(strings.Repeat("é", 300)))
	if len(long) > execErrShown+20 || !strings.HasSuffix(long, "...)") || !strings.Contains(long, "é") || strings.ContainsRune(long, '\uFFFD') {
		t.Errorf("long stderr cut badly: %q", long)
	}
}

func TestParseExecOutput(t *testing.T) {
	tests := []struct {
		in   string
		want []Reading
		err  string
	}{
		{`{"temperature": 21.5, "humidity": 40}`, []Reading{{Quantity: Temperature, Value: 21.5}, {Quantity: Humidity, Value: 40}}, ""},
		{"\n  {\"temperature\":21}\n\n", []Reading{{Quantity: Temperature, Value: 21}}, ""},
		{"temperature=21.5\r\nhumidity=40\r\n", []Reading{{Quantity: Temperature, Value: 21.5}, {Quantity: Humidity, Value: 40}}, ""},
		{"# a comment\n\n  # indented comment\ntemperature = -4\n", []Reading{{Quantity: Temperature, Value: -4}}, ""},
		{"", nil, "no output"},
		{"  \n\t", nil, "no output"},
		{"# only a comment\n", nil, "no readings"},
		{"{}", nil, "no readings"},
		{`{"temperature": 21.5`, nil, "invalid JSON"},
		{`{"temperature": 21.5,}`, nil, "invalid JSON"},
		{`{"temperature": 21.5} {"humidity": 3}`, nil, "more after the object"},
		{`{"temperature": 21.5} x`, nil, "invalid JSON"},
		{`{"temperature": "21.5"}`, nil, "expected a number, got a string"},
		{`{"temperature": true}`, nil, "expected a number, got true or false"},
		{`{"temperature": null}`, nil, "expected a number, got null"},
		{`{"temperature": {"value": 1}}`, nil, "expected a number, got an object"},
		{`{"temperature": [1]}`, nil, "expected a number, got a list"},
		{`{"temperature": 1e999}`, nil, "is not a finite number"},
		{`{"temperature": 1, "temperature": 2}`, nil, `"temperature" given twice`},
		{`{"": 1}`, nil, "is not a quantity name"},
		{`{"temp/erature": 1}`, nil, "is not a quantity name"},
		{"temperature=1\ntemperature=2", nil, `line 2: "temperature" given twice`},
		{"temperature", nil, `line 1: "temperature" is not quantity=value`},
		{"temperature=", nil, `line 1: "" is not a number`},
		{"temperature=NaN", nil, "is not a number"},
		{"temperature=inf", nil, "is not a number"},
		{"temperature=21.5 C", nil, "is not a number"},
		{"2temperature=1", nil, "is not a quantity name"},
		{"[1, 2]", nil, "is not quantity=value"},
	}
	for _, tt := range tests {
		got, err := parseExecOutput([]byte(tt.in))
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("parseExecOutput(%q) = %v, %v; want error %q", tt.in, got, err, tt.err)
			}
			continue
		}
		if err != nil || fmt.Sprint(got) != fmt.Sprint(tt.want) {
			t.Errorf("parseExecOutput(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}

func FuzzParseExecOutput(f *testing.F) {
	for _, s := range []string{
		`{"temperature": 21.5, "humidity": 40}`,
		"temperature=21.5\nhumidity=40\n# c\n",
		`{"a": {"b": [1, {"c": null}]}}`,
		`{"temperature": 1e999}`,
		"=\n==\n#",
		"{",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		out, err := parseExecOutput(b)
		if err != nil {
			return
		}
		if len(out) == 0 {
			t.Fatal("no readings and no error")
		}
		seen := map[string]bool{}
		for _, r := range out {
			if !ValidQuantity(r.Quantity) || seen[r.Quantity] || math.IsNaN(r.Value) || math.IsInf(r.Value, 0) {
				t.Fatalf("parseExecOutput(%q) returned %v", b, out)
			}
			seen[r.Quantity] = true
		}
	})
}
