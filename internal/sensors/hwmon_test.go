package sensors

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestHwmonValidate(t *testing.T) {
	tests := []struct {
		cfg HwmonConfig
		key string
	}{
		{HwmonConfig{Chip: "sht3x"}, ""},
		{HwmonConfig{Chip: "hwmon2", Label: "Core 0", Sysfs: "/sys"}, ""},
		{HwmonConfig{}, "chip"},
		{HwmonConfig{Chip: "../hwmon0"}, "chip"},
		{HwmonConfig{Chip: "sht3x", Sysfs: "sys"}, "sysfs"},
	}
	for _, tt := range tests {
		checkValidate(t, &tt.cfg, tt.key)
	}
}

func TestHwmonRead(t *testing.T) {
	root := fixture(t, "hwmon")
	tests := []struct {
		name, chip, label string
		want              []Reading
		err               string
	}{
		{"sht3x", "sht3x", "", []Reading{{Quantity: Temperature, Value: 22.815}, {Quantity: Humidity, Value: 48.25}}, ""},
		{"by number", "hwmon1", "", []Reading{{Quantity: Temperature, Value: 22.815}, {Quantity: Humidity, Value: 48.25}}, ""},
		{"temperature only", "cpu_thermal", "", []Reading{{Quantity: Temperature, Value: 48.312}}, ""},
		{"first channel", "coretemp", "", []Reading{{Quantity: Temperature, Value: 45}}, ""},
		{"by label", "coretemp", "Core 0", []Reading{{Quantity: Temperature, Value: 43}}, ""},
		{"label of temp10", "coretemp", "Core 8", []Reading{{Quantity: Temperature, Value: 47}}, ""},
		{"out of range", "hot", "", []Reading{{Quantity: Temperature, Value: -280}, {Quantity: Humidity, Value: 104.5}}, ""},
		{"unknown label", "coretemp", "Core 99", nil, `no temperature channel labelled "Core 99" (labels: "Package id 0", "Core 0", "Core 8")`},
		{"label without labels", "sht3x", "ambient", nil, "its channels have no labels"},
		{"garbage", "garbage", "", nil, `temp1_input: not a number: "N/A"`},
		{"no channels", "pwmfan", "", nil, "has no temp*_input or humidity*_input"},
		{"unknown chip", "sht4x", "", nil, `no hwmon chip named "sht4x"; found hwmon0 (cpu_thermal), hwmon1 (sht3x)`},
		{"unknown number", "hwmon9", "", nil, "no such file or directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := newSource(t, &HwmonConfig{Chip: tt.chip, Label: tt.label, Sysfs: root})
			got, err := readWithin(t, src, 5*time.Second)
			checkRead(t, got, err, tt.want, tt.err)
		})
	}
	_, err := readWithin(t, newSource(t, &HwmonConfig{Chip: "sht3x", Sysfs: t.TempDir()}), 5*time.Second)
	if err == nil || !strings.Contains(err.Error(), "listing hwmon chips") {
		t.Fatalf("no hwmon class: err = %v", err)
	}
}

// In real sysfs, class/hwmon/hwmonN is a symlink into /sys/devices.
func TestHwmonSymlinks(t *testing.T) {
	root := t.TempDir()
	real := filepath.Join(root, "devices/platform/soc/fe804000.i2c/i2c-1/1-0044/hwmon/hwmon3")
	writeFile(t, filepath.Join(real, "name"), "sht3x\n")
	writeFile(t, filepath.Join(real, "temp1_input"), "21000\n")
	writeFile(t, filepath.Join(real, "humidity1_input"), "50500\n")
	link := filepath.Join(root, "class/hwmon/hwmon3")
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../devices/platform/soc/fe804000.i2c/i2c-1/1-0044/hwmon/hwmon3", link); err != nil {
		t.Fatal(err)
	}
	for _, chip := range []string{"sht3x", "hwmon3"} {
		got, err := readWithin(t, newSource(t, &HwmonConfig{Chip: chip, Sysfs: root}), 5*time.Second)
		checkRead(t, got, err, []Reading{{Quantity: Temperature, Value: 21}, {Quantity: Humidity, Value: 50.5}}, "")
	}
}

// "The first tempN_input" is the lowest N, not the first in name order.
func TestHwmonChannelOrder(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "class/hwmon/hwmon0")
	writeFile(t, filepath.Join(dir, "name"), "nvme\n")
	writeFile(t, filepath.Join(dir, "temp10_input"), "70000\n")
	writeFile(t, filepath.Join(dir, "temp2_input"), "35000\n")
	writeFile(t, filepath.Join(dir, "humidity3_input"), "1000\n")
	writeFile(t, filepath.Join(dir, "humidity12_input"), "2000\n")
	got, err := readWithin(t, newSource(t, &HwmonConfig{Chip: "nvme", Sysfs: root}), 5*time.Second)
	checkRead(t, got, err, []Reading{{Quantity: Temperature, Value: 35}, {Quantity: Humidity, Value: 1}}, "")
}

// Two chips of one name: the label picks one; without it, the error says so.
func TestHwmonSameName(t *testing.T) {
	root := t.TempDir()
	for _, c := range []struct{ dir, label, temp string }{
		{"hwmon1", "ambient", "20000"},
		{"hwmon2", "probe", "60000"},
	} {
		dir := filepath.Join(root, "class/hwmon", c.dir)
		writeFile(t, filepath.Join(dir, "name"), "tmp102\n")
		writeFile(t, filepath.Join(dir, "temp1_label"), c.label+"\n")
		writeFile(t, filepath.Join(dir, "temp1_input"), c.temp+"\n")
	}
	got, err := readWithin(t, newSource(t, &HwmonConfig{Chip: "tmp102", Label: "probe", Sysfs: root}), 5*time.Second)
	checkRead(t, got, err, []Reading{{Quantity: Temperature, Value: 60}}, "")
	_, err = readWithin(t, newSource(t, &HwmonConfig{Chip: "tmp102", Sysfs: root}), 5*time.Second)
	checkRead(t, nil, err, nil, `2 hwmon chips are named "tmp102" (hwmon1, hwmon2)`)
}

func TestHwmonRenumbered(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "class/hwmon/hwmon1")
	writeFile(t, filepath.Join(dir, "name"), "sht3x\n")
	writeFile(t, filepath.Join(dir, "temp1_input"), "22000\n")
	src := newSource(t, &HwmonConfig{Chip: "sht3x", Sysfs: root})
	got, err := readWithin(t, src, 5*time.Second)
	checkRead(t, got, err, []Reading{{Quantity: Temperature, Value: 22}}, "")
	if err := os.Rename(dir, filepath.Join(root, "class/hwmon/hwmon4")); err != nil {
		t.Fatal(err)
	}
	got, err = readWithin(t, src, 5*time.Second)
	checkRead(t, got, err, []Reading{{Quantity: Temperature, Value: 22}}, "")
}
