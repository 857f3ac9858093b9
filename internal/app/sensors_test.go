package app_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/internal/testbroker"
)

// TestRealSourceFollowsTheTree runs the daemon on an hwmon sensor (an SHT3x)
// and a w1 sensor (a DS18B20) read from a sysfs tree the test writes, changes
// the values in the tree, and checks that a subscriber sees the new values.
func TestRealSourceFollowsTheTree(t *testing.T) {
	root := t.TempDir()
	hwmon := filepath.Join(root, "class/hwmon/hwmon0")
	w1 := filepath.Join(root, "bus/w1/devices/28-0316a2791eff")
	write := func(path, content string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path+".tmp", []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(path+".tmp", path); err != nil { // readers never see half a file
			t.Fatal(err)
		}
	}
	write(filepath.Join(hwmon, "name"), "sht3x\n")
	write(filepath.Join(hwmon, "temp1_input"), "21500\n")
	write(filepath.Join(hwmon, "humidity1_input"), "45250\n")
	write(filepath.Join(w1, "temperature"), "8125\n")

	b := testbroker.Start(t, testbroker.Options{})
	sub := subscribe(t, b.URL(), "sensor-sub", "gatewayd/gw/+/+")
	startDaemon(t, baseYAML(b.URL())+fmt.Sprintf(`sensors:
  - {name: rack, type: hwmon, chip: sht3x, sysfs: %q, interval: 20ms}
  - {name: boiler, type: w1, device: 28-0316a2791eff, sysfs: %q, interval: 20ms, offset: {temperature: 0.5}}
`, root, root))

	testbroker.Eventually(t, 10*time.Second, "rack temperature 21.5", sub.sees(t, "gatewayd/gw/rack/temperature", 21.5))
	testbroker.Eventually(t, 10*time.Second, "rack humidity 45.25", sub.sees(t, "gatewayd/gw/rack/humidity", 45.25))
	testbroker.Eventually(t, 10*time.Second, "boiler 8.625 (offset applied)", sub.sees(t, "gatewayd/gw/boiler/temperature", 8.625))

	write(filepath.Join(hwmon, "temp1_input"), "23750\n")
	write(filepath.Join(w1, "temperature"), "-1250\n")
	testbroker.Eventually(t, 10*time.Second, "rack temperature 23.75", sub.sees(t, "gatewayd/gw/rack/temperature", 23.75))
	testbroker.Eventually(t, 10*time.Second, "boiler -0.75", sub.sees(t, "gatewayd/gw/boiler/temperature", -0.75))
}
