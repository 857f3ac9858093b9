package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParse feeds arbitrary bytes to the loader: it must return a config or
// an error, never panic, and every error must name the file.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.yaml")
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte("sensors:\n  - {name: a, type: simulated, seed: 1, offset: {temperature: 1e400}}\n"))
	f.Add([]byte("a: &a [*a]\n"))
	env := func(name string) (string, bool) {
		if name == "SET" {
			return "${SET}", true
		}
		return "", false
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("fuzz.yaml", data, env)
		if err != nil {
			for _, line := range strings.Split(err.Error(), "\n") {
				if !strings.HasPrefix(line, "fuzz.yaml") {
					t.Fatalf("error line without file name: %q", line)
				}
			}
			return
		}
		if c == nil {
			t.Fatal("nil config without error")
		}
		for _, s := range c.Sensors {
			if s.Source == nil {
				t.Fatalf("sensor %q without source config", s.Name)
			}
		}
	})
}
