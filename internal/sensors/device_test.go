package sensors

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Indexed and modified IIO channels, with their own or the type's shared
// _offset and _scale (testdata/iio-indexed).
func TestIIOIndexedChannels(t *testing.T) {
	root := copyTree(t, "iio-indexed")
	tests := []struct {
		name, device string
		channels     map[string]string
		want         []Reading
		err          string
	}{
		// in_temp0_raw 1600 with the shared in_temp_scale 7.8125 = 12500 m°C.
		{"lowest index, shared scale", "max31856", nil, []Reading{{Quantity: Temperature, Value: 12.5}}, ""},
		// in_temp1_raw 384 with its own in_temp1_scale 62.5 = 24000 m°C.
		{"chosen index, own scale", "max31856", map[string]string{Temperature: "in_temp1"}, []Reading{{Quantity: Temperature, Value: 24}}, ""},
		// (14800 + -13657.5) * 20 = 22850 m°C; the object: (15000 - 13657.5) * 20.
		{"modifier, shared offset and scale", "mlx90614", nil, []Reading{{Quantity: Temperature, Value: 22.85}}, ""},
		{"chosen modifier", "mlx90614", map[string]string{Temperature: "in_temp_object"}, []Reading{{Quantity: Temperature, Value: 26.85}}, ""},
		// in_temp0 before in_temp2 before in_temp10; humidity1 45000 m%;
		// pressure0 101.3 kPa.
		{"numeric order", "combo", nil, []Reading{{Quantity: Temperature, Value: 21}, {Quantity: Humidity, Value: 45}, {Quantity: Pressure, Value: 1013}}, ""},
		{"index 10", "combo", map[string]string{Temperature: "in_temp10"}, []Reading{{Quantity: Temperature, Value: 19}, {Quantity: Humidity, Value: 45}, {Quantity: Pressure, Value: 1013}}, ""},
		{"missing channel", "combo", map[string]string{Temperature: "in_temp3"},
			nil, "has no temperature channel in_temp3; it has in_temp0, in_temp2, in_temp10"},
		{"missing type", "max31856", map[string]string{Humidity: "in_humidityrelative0"},
			nil, "has no humidity channel (no in_humidityrelative0_input or in_humidityrelative0_raw)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := newSource(t, &IIOConfig{Device: tt.device, Channels: tt.channels, Sysfs: root})
			got, err := readWithin(t, src, 5*time.Second)
			checkRead(t, got, err, tt.want, tt.err)
		})
	}
}

func TestIIOChannelsValidate(t *testing.T) {
	for _, tt := range []struct {
		channels map[string]string
		key      string
	}{
		{map[string]string{Temperature: "in_temp1", Humidity: "in_humidityrelative0", Pressure: "in_pressure"}, ""},
		{map[string]string{Temperature: "in_temp_object"}, ""},
		{map[string]string{Temperature: "in_humidityrelative1"}, "channels.temperature"},
		{map[string]string{Temperature: "temp1"}, "channels.temperature"},
		{map[string]string{Temperature: "in_temp1_raw"}, "channels.temperature"},
		{map[string]string{Temperature: "../in_temp1"}, "channels.temperature"},
		{map[string]string{"co2": "in_concentration"}, "channels.co2"},
	} {
		checkValidate(t, &IIOConfig{Device: "bme280", Channels: tt.channels}, tt.key)
	}
}

// On kernels before 3.x (and for drivers registered the old way) the name
// and the channels of a hwmon chip are in hwmonN/device/.
func TestHwmonAttributesUnderDevice(t *testing.T) {
	root := fixture(t, "hwmon")
	for _, chip := range []string{"lm75", "hwmon6"} {
		got, err := readWithin(t, newSource(t, &HwmonConfig{Chip: chip, Sysfs: root}), 5*time.Second)
		checkRead(t, got, err, []Reading{{Quantity: Temperature, Value: 23.5}}, "")
	}
	_, err := readWithin(t, newSource(t, &HwmonConfig{Chip: "nope", Sysfs: root}), 5*time.Second)
	checkRead(t, nil, err, nil, "hwmon6 (lm75)")
}

// i2cTree builds a sysfs tree as the kernel lays it out: the entries of
// bus/iio/devices and class/hwmon are symlinks into devices/, below the I2C
// client (1-0076) of each sensor. old puts a hwmon chip's attributes in
// hwmonN/device/ and makes device a symlink to the client, as kernels
// before 3.x did.
func i2cTree(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	bus := "devices/platform/soc/fe804000.i2c/i2c-1"
	link := func(target, name string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(filepath.Join(root, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		rel, err := filepath.Rel(filepath.Dir(filepath.Join(root, name)), filepath.Join(root, target))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(rel, filepath.Join(root, name)); err != nil {
			t.Fatal(err)
		}
	}
	for i, dev := range []struct{ addr, temp string }{{"1-0076", "21000"}, {"1-0077", "25000"}} {
		d := filepath.Join(bus, dev.addr, "iio:device"+string(rune('0'+i)))
		writeFile(t, filepath.Join(root, d, "name"), "bme280\n")
		writeFile(t, filepath.Join(root, d, "in_temp_input"), dev.temp+"\n")
		link(d, "bus/iio/devices/iio:device"+string(rune('0'+i)))
	}
	for i, dev := range []struct{ addr, temp string }{{"1-0044", "20000"}, {"1-0045", "30000"}} {
		d := filepath.Join(bus, dev.addr, "hwmon", "hwmon"+string(rune('1'+i)))
		writeFile(t, filepath.Join(root, d, "name"), "sht3x\n")
		writeFile(t, filepath.Join(root, d, "temp1_input"), dev.temp+"\n")
		writeFile(t, filepath.Join(root, d, "humidity1_input"), "50000\n")
		link(d, "class/hwmon/hwmon"+string(rune('1'+i)))
	}
	// An older kernel's lm75 at 3-0048 on another bus: hwmon3/device is the
	// client, and holds the attributes.
	client := "devices/platform/soc/fe205000.i2c/i2c-3/3-0048"
	writeFile(t, filepath.Join(root, client, "name"), "lm75\n")
	writeFile(t, filepath.Join(root, client, "temp1_input"), "18500\n")
	if err := os.MkdirAll(filepath.Join(root, client, "hwmon", "hwmon3"), 0o755); err != nil {
		t.Fatal(err)
	}
	link(client, filepath.Join(client, "hwmon", "hwmon3", "device"))
	link(filepath.Join(client, "hwmon", "hwmon3"), "class/hwmon/hwmon3")
	return root
}

func TestI2CAddress(t *testing.T) {
	root := i2cTree(t)
	tests := []struct {
		name string
		cfg  Config
		want []Reading
		err  string
	}{
		{"iio 0x76", &IIOConfig{Device: "1-0076", Sysfs: root}, []Reading{{Quantity: Temperature, Value: 21}}, ""},
		{"iio 0x77", &IIOConfig{Device: "1-0077", Sysfs: root}, []Reading{{Quantity: Temperature, Value: 25}}, ""},
		{"iio by name: two", &IIOConfig{Device: "bme280", Sysfs: root}, nil,
			`2 iio devices are named "bme280" (iio:device0, iio:device1): name one by its I2C address (bus-address, e.g. 1-0076)`},
		{"iio absent", &IIOConfig{Device: "1-0078", Sysfs: root}, nil,
			"no iio device at I2C address 1-0078; found iio:device0 (bme280 at 1-0076), iio:device1 (bme280 at 1-0077)"},
		{"hwmon 0x45", &HwmonConfig{Chip: "1-0045", Sysfs: root}, []Reading{{Quantity: Temperature, Value: 30}, {Quantity: Humidity, Value: 50}}, ""},
		{"hwmon 0x44", &HwmonConfig{Chip: "1-0044", Sysfs: root}, []Reading{{Quantity: Temperature, Value: 20}, {Quantity: Humidity, Value: 50}}, ""},
		{"old hwmon by address", &HwmonConfig{Chip: "3-0048", Sysfs: root}, []Reading{{Quantity: Temperature, Value: 18.5}}, ""},
		{"old hwmon by name", &HwmonConfig{Chip: "lm75", Sysfs: root}, []Reading{{Quantity: Temperature, Value: 18.5}}, ""},
		{"hwmon absent", &HwmonConfig{Chip: "2-0044", Sysfs: root}, nil,
			"no hwmon chip at I2C address 2-0044; found hwmon1 (sht3x at 1-0044), hwmon2 (sht3x at 1-0045), hwmon3 (lm75 at 3-0048)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := readWithin(t, newSource(t, tt.cfg), 5*time.Second)
			checkRead(t, got, err, tt.want, tt.err)
		})
	}
}

func TestDeviceKeyValidate(t *testing.T) {
	checkValidate(t, &IIOConfig{Device: "1-0076"}, "")
	checkValidate(t, &IIOConfig{Device: "1-007A"}, "device")
	checkValidate(t, &HwmonConfig{Chip: "11-004f"}, "")
	checkValidate(t, &HwmonConfig{Chip: "1-004F"}, "chip")
	checkValidate(t, &HwmonConfig{Chip: "   "}, "chip")
}

// A driver that answers EAGAIN: with an os.File, Go's poller would park the
// read until the file is "ready", for a sysfs file never. The plain read(2)
// gets EAGAIN back, retries it until the deadline, and then fails with it.
// A FIFO opened O_NONBLOCK with a writer but no data answers EAGAIN just so.
func TestAttrReaderEAGAIN(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "in_temp_input")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	// The writer: opened read-write so that the open does not wait for a
	// reader, and so that a reader sees "no data yet" rather than EOF.
	w, err := os.OpenFile(fifo, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	r := newAttrReader()
	var reads int
	r.read = func(p string) ([]byte, error) {
		reads++
		return readAttrFlags(p, syscall.O_NONBLOCK)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	start := time.Now()
	_, err = r.readNumber(ctx, fifo)
	cancel()
	if !errors.Is(err, syscall.EAGAIN) && !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want EAGAIN or the deadline", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("returned after %v with a 300ms deadline", d)
	}
	// It was retried, with a backoff (10, 20, 40, 80, 160 ms: about 5 tries).
	if reads < 3 || reads > 20 {
		t.Errorf("read %d times in 300ms, want a few retries with backoff", reads)
	}

	// Once the driver has a value, the next read gets it.
	if _, err := w.WriteString("21500\n"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	v, err := r.readNumber(ctx, fifo)
	if err != nil || v != 21500 {
		t.Fatalf("after the write: %v, %v; want 21500", v, err)
	}
}

// A read(2) that blocks inside the driver (here: a FIFO with a writer that
// writes nothing) ends for the caller at its deadline; the blocked call
// itself ends when the driver lets go, and leaves no goroutine behind.
func TestAttrReaderBlockedRead(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "w1_slave")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	w, err := os.OpenFile(fifo, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	r := newAttrReader()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	start := time.Now()
	_, err = r.readCtx(ctx, fifo)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), fifo) {
		t.Fatalf("err = %v, want the deadline, naming the file", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("returned after %v with a 100ms deadline", d)
	}
	// The driver lets go: the blocked read(2) returns and frees the slot.
	if _, err := w.WriteString("1\n"); err != nil {
		t.Fatal(err)
	}
	w.Close()
	deadline := time.Now().Add(10 * time.Second)
	for len(r.busy) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the blocked read never ended")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Channel names come from directory entries: whatever a driver (or a
// broken tree) names them must neither crash the ordering nor make it
// inconsistent.
func FuzzIIOChannelOrder(f *testing.F) {
	for _, s := range [][2]string{{"in_temp", "in_temp0"}, {"in_temp10", "in_temp2"}, {"in_temp_object", "in_temp_ambient"}, {"in_temp9999", "x"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		ma, mb := iioChannelName.MatchString(a), iioChannelName.MatchString(b)
		if !ma || !mb {
			return
		}
		if iioChannelLess(a, b) && iioChannelLess(b, a) {
			t.Fatalf("%q < %q and %q < %q", a, b, b, a)
		}
		if a != b && !iioChannelLess(a, b) && !iioChannelLess(b, a) {
			t.Fatalf("%q and %q are unordered", a, b)
		}
	})
}
