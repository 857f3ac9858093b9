package sensors

import (
	"context"
	"errors"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// copyTree copies testdata/<name> into a temporary directory and returns it,
// renaming iio_deviceN to iio:deviceN (see testdata/README.md). Tests may
// change the copy.
func copyTree(t *testing.T, name string) string {
	t.Helper()
	dst := t.TempDir()
	src := filepath.Join("testdata", name)
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		parts := strings.Split(rel, string(filepath.Separator))
		for i, p := range parts {
			if indexOf(p, "iio_device") >= 0 {
				parts[i] = "iio:device" + strings.TrimPrefix(p, "iio_device")
			}
		}
		target := filepath.Join(dst, filepath.Join(parts...))
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// fixture returns the absolute path of testdata/<name>, for trees that
// need no renaming and that the test does not change.
func fixture(t *testing.T, name string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// newSource validates cfg and builds its source, as the daemon does.
func newSource(t *testing.T, cfg Config) Source {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	src, err := cfg.New(Env{Name: "test"})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return src
}

func readWithin(t *testing.T, src Source, d time.Duration) ([]Reading, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	out, err := src.Read(ctx)
	return append([]Reading(nil), out...), err
}

// checkRead compares a read with the expected readings or error text.
func checkRead(t *testing.T, got []Reading, err error, want []Reading, wantErr string) {
	t.Helper()
	if wantErr != "" {
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Fatalf("error = %v, want one containing %q (readings %v)", err, wantErr, got)
		}
		return
	}
	if err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("readings = %v, want %v", got, want)
	}
}

func TestTypesRegistered(t *testing.T) {
	for _, typ := range []string{"exec", "hwmon", "iio", "modbus", "rtl433", "simulated", "w1"} {
		cfg, ok := NewConfig(typ)
		if !ok {
			t.Fatalf("type %s not registered (have %v)", typ, Types())
		}
		// The config loader decodes only yaml-tagged fields.
		v := reflect.TypeOf(cfg).Elem()
		for i := 0; i < v.NumField(); i++ {
			if f := v.Field(i); f.IsExported() && f.Tag.Get("yaml") == "" {
				t.Errorf("%s: field %s has no yaml tag", typ, f.Name)
			}
		}
	}
}

func TestCheckSysfs(t *testing.T) {
	for _, cfg := range []Config{
		&IIOConfig{Device: "bme280", Sysfs: "sys"},
		&HwmonConfig{Chip: "sht3x", Sysfs: "./sys"},
		&W1Config{Device: "28-0316a2791eff", Sysfs: "sys"},
	} {
		var ke *KeyError
		if err := cfg.Validate(); !errors.As(err, &ke) || ke.Key != "sysfs" {
			t.Errorf("%T: Validate = %v, want a sysfs error", cfg, err)
		}
	}
}

func TestParseSysfsNumber(t *testing.T) {
	tests := []struct {
		in   string
		want float64
		err  string
	}{
		{"23450\n", 23450, ""},
		{"-10125\n", -10125, ""},
		{"100.402421875\n", 100.402421875, ""},
		{"-0.500000\n", -0.5, ""},
		{"0.000003906\n", 0.000003906, ""},
		{"  42 \t\n", 42, ""},
		{"+7", 7, ""},
		{"0", 0, ""},
		{"12\x00", 12, ""},
		{"", 0, "empty"},
		{"\n", 0, "empty"},
		{"twenty\n", 0, "not a number"},
		{"1e3", 0, "not a number"},
		{"0x10", 0, "not a number"},
		{"NaN", 0, "not a number"},
		{"Inf", 0, "not a number"},
		{"1.", 0, "not a number"},
		{".5", 0, "not a number"},
		{"--1", 0, "not a number"},
		{"1 2", 0, "not a number"},
		{"1.2.3", 0, "not a number"},
		{"-", 0, "not a number"},
		{strings.Repeat("9", 65), 0, "not a number"},
	}
	for _, tt := range tests {
		got, err := parseSysfsNumber([]byte(tt.in))
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("parseSysfsNumber(%q) = %v, %v; want error %q", tt.in, got, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("parseSysfsNumber(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}

func FuzzParseSysfsNumber(f *testing.F) {
	for _, s := range []string{"23450\n", "-0.500000\n", "100.402421875", "", "x", "1e400", "-", "0.", "+1.5\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := parseSysfsNumber(b)
		if err == nil && (math.IsNaN(v) || math.IsInf(v, 0)) {
			t.Fatalf("parseSysfsNumber(%q) = %v without an error", b, v)
		}
	})
}

// A read that blocks in the driver must not hold Read past its deadline,
// and must not pile up goroutines when it stays blocked.
func TestAttrReaderHonoursCtx(t *testing.T) {
	release := make(chan struct{})
	calls := 0
	r := newAttrReader()
	r.read = func(path string) ([]byte, error) {
		calls++
		if calls == 1 {
			<-release
		}
		return []byte("1\n"), nil
	}

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	start := time.Now()
	_, err := r.readNumber(ctx, "/blocked")
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("blocked read: err = %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("blocked read returned after %v", d)
	}

	// The first read is still in the driver: a second one waits for it
	// and gives up with its own ctx rather than starting another.
	ctx, cancel = context.WithTimeout(context.Background(), 50*time.Millisecond)
	_, err = r.readNumber(ctx, "/second")
	cancel()
	if err == nil || !strings.Contains(err.Error(), "still blocked") {
		t.Fatalf("second read: err = %v, want 'still blocked'", err)
	}

	close(release)
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	v, err := r.readNumber(ctx, "/third")
	if err != nil || v != 1 {
		t.Fatalf("third read = %v, %v; want 1", v, err)
	}
	if calls != 2 {
		t.Fatalf("driver reads = %d, want 2 (the second read must not start)", calls)
	}
}

// checkValidate asserts that cfg validates, or (key != "") that it fails
// with a KeyError for that key.
func checkValidate(t *testing.T, cfg Config, key string) {
	t.Helper()
	err := cfg.Validate()
	if key == "" {
		if err != nil {
			t.Errorf("%+v: unexpected error %v", cfg, err)
		}
		return
	}
	var ke *KeyError
	if !errors.As(err, &ke) || ke.Key != key {
		t.Errorf("%+v: error %v, want one for key %q", cfg, err, key)
	}
}
