package sensors

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestW1Validate(t *testing.T) {
	tests := []struct {
		cfg W1Config
		err string // "" for valid
	}{
		{W1Config{Device: "28-0316a2791eff"}, ""},
		{W1Config{Device: "10-000802b4c4e1", Sysfs: "/sys"}, ""},
		{W1Config{}, "device: is required"},
		{W1Config{Device: "28-0316A2791EFF"}, "device: \"28-0316A2791EFF\" must be written in lower case, as the kernel names it: 28-0316a2791eff"},
		{W1Config{Device: "28-0316a2791ef"}, "not a 1-Wire device name"},
		{W1Config{Device: "../../../etc"}, "not a 1-Wire device name"},
		{W1Config{Device: "w1_bus_master1"}, "not a 1-Wire device name"},
		{W1Config{Device: "28-0316a2791eff", Sysfs: "sys"}, "sysfs: must be an absolute path"},
	}
	for _, tt := range tests {
		err := tt.cfg.Validate()
		if tt.err == "" {
			if err != nil {
				t.Errorf("%+v: unexpected error %v", tt.cfg, err)
			}
			continue
		}
		var ke *KeyError
		if !errors.As(err, &ke) || !strings.Contains(err.Error(), tt.err) {
			t.Errorf("%+v: error %v, want a KeyError containing %q", tt.cfg, err, tt.err)
		}
	}
}

func TestW1Read(t *testing.T) {
	root := fixture(t, "w1")
	tests := []struct {
		name, device string
		want         float64
		err          string
	}{
		{"w1_slave", "28-0316a2791eff", 21.562, ""},
		{"temperature preferred", "28-01191ed0b1ff", 21.437, ""},
		{"below zero", "28-3c01d607d4aa", -10.125, ""},
		{"crc NO", "28-000005e2fdc3", 0, "w1_slave: CRC check failed"},
		{"power-on value in w1_slave", "28-00000a0b0c0d", 0, "w1_slave: 85 °C is the power-on value"},
		{"power-on value in temperature", "28-01192a3b4c5d", 0, "temperature: 85 °C is the power-on value"},
		{"all zeros", "28-0417c1b6e2ff", 0, "every scratchpad byte is 0"},
		{"empty w1_slave", "28-00000e1f2a3b", 0, "w1_slave: empty: the conversion failed"},
		{"empty temperature", "28-0119aabbccdd", 0, "temperature: empty: the conversion failed"},
		{"no t=", "28-0000075c293f", 0, "no t= in the second line"},
		{"not a thermometer", "3a-00000012ab34", 0, "not a w1_therm thermometer"},
		{"missing", "28-000000000001", 0, "no 1-Wire device 28-000000000001 in " + filepath.Join(root, "bus/w1/devices")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := newSource(t, &W1Config{Device: tt.device, Sysfs: root})
			got, err := readWithin(t, src, 5*time.Second)
			var want []Reading
			if tt.err == "" {
				want = []Reading{{Quantity: Temperature, Value: tt.want}}
			}
			checkRead(t, got, err, want, tt.err)
		})
	}
}

// A conversion that blocks in the driver does not hold Read past ctx.
func TestW1HonoursCtx(t *testing.T) {
	src := newSource(t, &W1Config{Device: "28-0316a2791eff", Sysfs: fixture(t, "w1")}).(*W1)
	release := make(chan struct{})
	defer close(release)
	src.r.read = func(path string) ([]byte, error) {
		<-release
		return readAttr(path)
	}
	start := time.Now()
	_, err := readWithin(t, src, 100*time.Millisecond)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("returned after %v", d)
	}
}

func TestParseW1Slave(t *testing.T) {
	good := "59 01 4b 46 7f ff 07 10 a2 : crc=a2 YES\n59 01 4b 46 7f ff 07 10 a2 t=21562\n"
	tests := []struct {
		in   string
		want float64
		err  string
	}{
		{good, 21.562, ""},
		{strings.ReplaceAll(good, "\n", "\r\n"), 21.562, ""},
		{strings.TrimSuffix(good, "\n"), 21.562, ""},
		{"ff ff 4b 46 7f ff 0c 10 13 : crc=13 YES\nff ff 4b 46 7f ff 0c 10 13 t=-62\n", -0.062, ""},
		{"d0 07 4b 46 7f ff 10 10 55 : crc=55 YES\nd0 07 4b 46 7f ff 10 10 55 t=125000\n", 125, ""},
		{"", 0, "empty"},
		{"\n\x00", 0, "empty"},
		{"59 01 4b 46 7f ff 07 10 a2 : crc=a2 YES\n", 0, "expected 2 lines, got 1"},
		{good + "extra\n", 0, "expected 2 lines, got 3"},
		{strings.Replace(good, "YES", "NO", 1), 0, "CRC check failed"},
		{strings.Replace(good, " YES", " MAYBE", 1), 0, "does not end in YES or NO"},
		{strings.Replace(good, "t=21562", "t=", 1), 0, "is not a whole number"},
		{strings.Replace(good, "t=21562", "t=21.5", 1), 0, "is not a whole number"},
		{strings.Replace(good, "t=21562", "t=99999999999", 1), 0, "is not a whole number"},
		{strings.Replace(good, "t=21562", "21562", 1), 0, "no t="},
		{strings.Replace(good, "t=21562", "t=85000", 1), 0, "power-on"},
	}
	for _, tt := range tests {
		got, err := parseW1Slave([]byte(tt.in))
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("parseW1Slave(%q) = %v, %v; want error %q", tt.in, got, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("parseW1Slave(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}

func FuzzParseW1Slave(f *testing.F) {
	files, _ := filepath.Glob("testdata/w1/bus/w1/devices/*/w1_slave")
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("x : crc=00 YES\nt=1"))
	f.Add([]byte(" YES\n t="))
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := parseW1Slave(b)
		if err != nil {
			return
		}
		if math.IsNaN(v) || math.IsInf(v, 0) || v == 85 {
			t.Fatalf("parseW1Slave(%q) = %v without an error", b, v)
		}
	})
}
