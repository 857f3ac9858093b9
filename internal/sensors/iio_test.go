package sensors

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func TestIIOValidate(t *testing.T) {
	tests := []struct {
		cfg IIOConfig
		key string // "" for valid
	}{
		{IIOConfig{Device: "bme280"}, ""},
		{IIOConfig{Device: "iio:device0"}, ""},
		{IIOConfig{Device: "iio:device12", Sysfs: "/srv/sys"}, ""},
		{IIOConfig{Device: "dht11@4"}, ""},
		{IIOConfig{}, "device"},
		{IIOConfig{Device: "  "}, "device"},
		{IIOConfig{Device: "iio:device"}, "device"},
		{IIOConfig{Device: "iio:devicex"}, "device"},
		{IIOConfig{Device: "../../etc"}, "device"},
		{IIOConfig{Device: "bme280", Sysfs: "relative/sys"}, "sysfs"},
	}
	for _, tt := range tests {
		checkValidate(t, &tt.cfg, tt.key)
	}
}

func TestIIORead(t *testing.T) {
	pi := copyTree(t, "iio-pi")
	raw := copyTree(t, "iio-raw")
	bme280 := []Reading{{Quantity: Temperature, Value: 23.45}, {Quantity: Humidity, Value: 41.983}, {Quantity: Pressure, Value: 1004.024}}
	dht22 := []Reading{{Quantity: Temperature, Value: 21.3}, {Quantity: Humidity, Value: 45.6}}
	tests := []struct {
		name, root, device string
		want               []Reading
		err                string
	}{
		// Processed channels: in_temp_input 23450 m°C, in_humidityrelative_input
		// 41983 m%, in_pressure_input 100.402421875 kPa = 1004.024 hPa.
		{"bme280 by name", pi, "bme280", bme280, ""},
		{"bme280 by number", pi, "iio:device1", bme280, ""},
		{"dht22 by name", pi, "dht11@4", dht22, ""},
		{"dht22 by number", pi, "iio:device0", dht22, ""},

		// (raw + offset) * scale, per the IIO ABI:
		//   temperature (2345 + 0) * 10 = 23450 m°C = 23.45 °C
		//   humidity    (42990 + 0) * 0.9765625 = 41982.421875 m% = 41.982 %
		//   pressure    (25703017 + 0) * 0.000003906 = 100.395984 kPa = 1003.96 hPa
		{"raw and scale", raw, "bme280", []Reading{{Quantity: Temperature, Value: 23.45}, {Quantity: Humidity, Value: 41.982}, {Quantity: Pressure, Value: 1003.96}}, ""},
		//   temperature (1234 + -500.5) * 62.5 = 45843.75 m°C = 45.844 °C
		//   humidity    (3500 + -1200.5) * 19.5 = 44840.25 m% = 44.84 %
		{"raw, offset and scale", raw, "hts221", []Reading{{Quantity: Temperature, Value: 45.844}, {Quantity: Humidity, Value: 44.84}}, ""},

		// Out of range values are returned; the core rejects them.
		{"out of range", raw, "hot", []Reading{{Quantity: Temperature, Value: 2500}, {Quantity: Pressure, Value: -15}}, ""},

		{"no known channel", raw, "ads1015", nil, "no temperature, humidity or pressure channel"},
		{"garbage", raw, "garbage", nil, `in_temp_input: not a number: "twenty"`},
		{"empty", raw, "empty", nil, "in_temp_input: empty"},
		{"unknown name", pi, "bmp180", nil, `no iio device named "bmp180"; found iio:device0 (dht11@4), iio:device1 (bme280)`},
		{"unknown number", pi, "iio:device7", nil, "no such file or directory"},
		{"no iio at all", t.TempDir(), "bme280", nil, "listing iio devices"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := newSource(t, &IIOConfig{Device: tt.device, Sysfs: tt.root})
			got, err := readWithin(t, src, 5*time.Second)
			checkRead(t, got, err, tt.want, tt.err)
			if err != nil && strings.Contains(err.Error(), "attempts") {
				t.Errorf("a permanent error was retried: %v", err)
			}
		})
	}
}

// The entries of /sys/bus/iio/devices are symlinks into /sys/devices.
func TestIIOSymlinks(t *testing.T) {
	root := t.TempDir()
	real := filepath.Join(root, "devices/platform/soc/fe804000.i2c/i2c-1/1-0076/iio:device0")
	writeFile(t, filepath.Join(real, "name"), "bme280\n")
	writeFile(t, filepath.Join(real, "in_temp_input"), "19875\n")
	link := filepath.Join(root, "bus/iio/devices/iio:device0")
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../../devices/platform/soc/fe804000.i2c/i2c-1/1-0076/iio:device0", link); err != nil {
		t.Fatal(err)
	}
	for _, dev := range []string{"bme280", "iio:device0"} {
		got, err := readWithin(t, newSource(t, &IIOConfig{Device: dev, Sysfs: root}), 5*time.Second)
		checkRead(t, got, err, []Reading{{Quantity: Temperature, Value: 19.875}}, "")
	}
}

// A device found by name is found again after it was renumbered (a driver
// reload or a hotplug); one given by number is not.
func TestIIORenumbered(t *testing.T) {
	root := copyTree(t, "iio-pi")
	byName := newSource(t, &IIOConfig{Device: "bme280", Sysfs: root})
	byNumber := newSource(t, &IIOConfig{Device: "iio:device1", Sysfs: root})
	want := []Reading{{Quantity: Temperature, Value: 23.45}, {Quantity: Humidity, Value: 41.983}, {Quantity: Pressure, Value: 1004.024}}
	for _, src := range []Source{byName, byNumber} {
		got, err := readWithin(t, src, 5*time.Second)
		checkRead(t, got, err, want, "")
	}
	devs := filepath.Join(root, "bus/iio/devices")
	if err := os.Rename(filepath.Join(devs, "iio:device1"), filepath.Join(devs, "iio:device4")); err != nil {
		t.Fatal(err)
	}
	got, err := readWithin(t, byName, 5*time.Second)
	checkRead(t, got, err, want, "")
	_, err = readWithin(t, byNumber, 5*time.Second)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("by number after renumbering: err = %v, want not found", err)
	}
}

func TestIIOAmbiguousName(t *testing.T) {
	root := copyTree(t, "iio-pi")
	writeFile(t, filepath.Join(root, "bus/iio/devices/iio:device2/name"), "bme280\n")
	writeFile(t, filepath.Join(root, "bus/iio/devices/iio:device2/in_temp_input"), "20000\n")
	_, err := readWithin(t, newSource(t, &IIOConfig{Device: "bme280", Sysfs: root}), 5*time.Second)
	if err == nil || !strings.Contains(err.Error(), `2 iio devices are named "bme280" (iio:device1, iio:device2)`) {
		t.Fatalf("err = %v, want an ambiguity error", err)
	}
}

// eioReader makes the first n reads of in_temp_input fail with errno.
func eioReader(n int32, errno syscall.Errno, reads *atomic.Int32) func(string) ([]byte, error) {
	return func(path string) ([]byte, error) {
		if filepath.Base(path) == "in_temp_input" {
			if reads.Add(1) <= n {
				return nil, &fs.PathError{Op: "read", Path: path, Err: errno}
			}
		}
		return readAttr(path)
	}
}

// DHT sensors fail often; the source retries within the deadline.
func TestIIORetriesTransientErrors(t *testing.T) {
	root := copyTree(t, "iio-pi")
	for _, errno := range []syscall.Errno{syscall.EIO, syscall.ETIMEDOUT} {
		t.Run(errno.Error(), func(t *testing.T) {
			src := newSource(t, &IIOConfig{Device: "dht11@4", Sysfs: root}).(*IIO)
			var reads atomic.Int32
			src.r.read = eioReader(2, errno, &reads)
			start := time.Now()
			got, err := readWithin(t, src, 10*time.Second)
			checkRead(t, got, err, []Reading{{Quantity: Temperature, Value: 21.3}, {Quantity: Humidity, Value: 45.6}}, "")
			if n := reads.Load(); n != 3 {
				t.Errorf("in_temp_input read %d times, want 3", n)
			}
			if d := time.Since(start); d < iioRetryFirst+2*iioRetryFirst {
				t.Errorf("succeeded after %v: the retries did not back off", d)
			}
		})
	}
}

func TestIIORetryGivesUpAtDeadline(t *testing.T) {
	root := copyTree(t, "iio-pi")
	src := newSource(t, &IIOConfig{Device: "dht11@4", Sysfs: root}).(*IIO)
	var reads atomic.Int32
	src.r.read = eioReader(1<<30, syscall.ETIMEDOUT, &reads)
	const timeout = time.Second
	start := time.Now()
	_, err := readWithin(t, src, timeout)
	elapsed := time.Since(start)
	if err == nil || !errors.Is(err, syscall.ETIMEDOUT) {
		t.Fatalf("err = %v, want ETIMEDOUT", err)
	}
	n := reads.Load()
	if n < 2 || !strings.Contains(err.Error(), "attempts failed") || !strings.Contains(err.Error(), "in_temp_input") {
		t.Fatalf("err = %v after %d reads, want 'N attempts failed' naming the file", err, n)
	}
	if !strings.HasPrefix(err.Error(), fmt.Sprintf("%d attempts failed", n)) {
		t.Errorf("err = %v, but %d reads were made", err, n)
	}
	if elapsed > timeout+time.Second {
		t.Fatalf("gave up after %v with a %v timeout", elapsed, timeout)
	}
}

// An error that a retry cannot fix fails the read at once: here the file
// is a directory, so reading it fails (EISDIR) as a broken driver would.
func TestIIONoRetryOnPermanentError(t *testing.T) {
	root := copyTree(t, "iio-pi")
	p := filepath.Join(root, "bus/iio/devices/iio:device1/in_temp_input")
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(p, 0o755); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err := readWithin(t, newSource(t, &IIOConfig{Device: "bme280", Sysfs: root}), 5*time.Second)
	if !errors.Is(err, syscall.EISDIR) || strings.Contains(err.Error(), "attempts") {
		t.Fatalf("err = %v, want EISDIR without retries", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("took %v", d)
	}
}

func TestIIOCancelled(t *testing.T) {
	src := newSource(t, &IIOConfig{Device: "bme280", Sysfs: copyTree(t, "iio-pi")})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := src.Read(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want Canceled", err)
	}
}
