package sensors_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/gatewayd/gatewayd/internal/config"
)

// Every example config passes the checks of gatewayd -check.
func TestExampleConfigs(t *testing.T) {
	files, err := filepath.Glob("../../configs/examples/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no example configs: %v", err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := config.Parse(f, b, func(string) (string, bool) { return "", false }); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}
