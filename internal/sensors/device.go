package sensors

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// Finding the sysfs directory of one device, for iio and hwmon alike. A
// device is named in one of three ways:
//
//   - by number, iio:device3 or hwmon2: exact, but the number follows the
//     order in which drivers probe and changes when a device comes or goes;
//   - by name, its name attribute (bme280, sht3x, dht11@4);
//   - by I2C bus and address, 1-0076: the kernel's name for the I2C client
//     (bus 1, address 0x76), an ancestor of the device's directory in
//     /sys/devices. It tells two sensors of one kind apart, which the name
//     cannot, and it does not change with probe order.

// i2cClient matches the kernel's name of an I2C client: bus-address, the
// address as four lower-case hex digits (drivers/i2c/i2c-core-base.c,
// i2c_dev_set_name).
var i2cClient = regexp.MustCompile(`^[0-9]{1,4}-[0-9a-f]{4}$`)

// devSelector says which device a sensor names.
type devSelector struct {
	what   string // "iio device", "hwmon chip": for messages
	list   string // the directory that lists the devices (<sysfs>/bus/iio/devices)
	prefix string // "iio:device", "hwmon"
	want   string // as configured
	// nameOf reads a device's name attribute from its directory.
	nameOf func(dir string) (string, error)
	// prefer, when set, picks among several devices of the wanted name
	// (hwmon: the one with the configured label).
	prefer func(dir string) bool
}

// byIndex reports whether the selector names a device by number.
func (d *devSelector) byIndex() bool { return indexOf(d.want, d.prefix) >= 0 }

// checkDeviceKey validates a device key that may be a number, a name or an
// I2C client. With prefix set, a value that starts with it must be prefixN.
func checkDeviceKey(key, value, prefix, hint string) error {
	switch v := value; {
	case strings.TrimSpace(v) == "":
		return Errorf(key, "is required: %s", hint)
	case prefix != "" && strings.HasPrefix(v, prefix) && indexOf(v, prefix) < 0:
		return Errorf(key, "%q is neither %sN nor a name", v, prefix)
	case strings.ContainsAny(v, "/\x00\n"):
		return Errorf(key, "%q cannot be a device name", v)
	case !i2cClient.MatchString(v) && i2cClient.MatchString(strings.ToLower(v)):
		return Errorf(key, "%q: write the I2C address in lower case, as the kernel does: %s", v, strings.ToLower(v))
	}
	return nil
}

// resolve returns the directory of the wanted device under d.list.
func (d *devSelector) resolve() (string, error) {
	if d.byIndex() {
		dir := filepath.Join(d.list, d.want)
		if _, err := os.Stat(dir); err != nil {
			return "", fmt.Errorf("%s %s: %w", d.what, d.want, err)
		}
		return dir, nil
	}
	entries, err := os.ReadDir(d.list)
	if err != nil {
		return "", fmt.Errorf("listing %ss: %w", d.what, err)
	}
	byAddr := i2cClient.MatchString(d.want)
	var match, seen []string
	for _, e := range sortByIndex(entries, d.prefix) {
		dir := filepath.Join(d.list, e)
		name, err := d.nameOf(dir)
		if err != nil {
			continue
		}
		addr := i2cAddress(dir)
		desc := name
		if addr != "" {
			desc += " at " + addr
		}
		seen = append(seen, fmt.Sprintf("%s (%s)", e, desc))
		if byAddr && addr == d.want || !byAddr && name == d.want {
			match = append(match, e)
		}
	}
	if len(match) > 1 && d.prefer != nil {
		var preferred []string
		for _, m := range match {
			if d.prefer(filepath.Join(d.list, m)) {
				preferred = append(preferred, m)
			}
		}
		if len(preferred) > 0 {
			match = preferred
		}
	}
	named := fmt.Sprintf("named %q", d.want)
	if byAddr {
		named = "at I2C address " + d.want
	}
	switch len(match) {
	case 0:
		if len(seen) == 0 {
			return "", fmt.Errorf("no %s %s: %s lists none (is the driver loaded?)", d.what, named, d.list)
		}
		return "", fmt.Errorf("no %s %s; found %s", d.what, named, strings.Join(seen, ", "))
	case 1:
		return filepath.Join(d.list, match[0]), nil
	}
	return "", fmt.Errorf("%d %ss are %s (%s): name one by its I2C address (bus-address, e.g. 1-0076) or as %sN",
		len(match), d.what, named, strings.Join(match, ", "), d.prefix)
}

// i2cAddress returns the I2C client (1-0076) that a device directory
// belongs to, or "". In sysfs the entries of /sys/bus/iio/devices and
// /sys/class/hwmon are symlinks into /sys/devices, where the device sits
// below its I2C client: .../i2c-1/1-0076/iio:device0,
// .../i2c-1/1-0044/hwmon/hwmon3. The nearest such ancestor below "devices"
// is the answer.
func i2cAddress(dir string) string {
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return ""
	}
	for p := real; ; {
		parent := filepath.Dir(p)
		if parent == p || filepath.Base(p) == "devices" {
			return ""
		}
		if b := filepath.Base(p); i2cClient.MatchString(b) {
			return b
		}
		p = parent
	}
}
