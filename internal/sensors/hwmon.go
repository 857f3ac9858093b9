package sensors

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// The hwmon source reads a chip of the kernel's hardware monitoring
// subsystem (SHT3x, SHT4x, HTU21, CPU and board sensors), following
// Documentation/hwmon/sysfs-interface.rst:
//
//   - <sysfs>/class/hwmon/hwmonN/name is the chip's name;
//   - tempM_input is milli degrees Celsius, tempM_label names channel M;
//   - humidityM_input is milli percent (per cent mille).
//
// The hwmonN entries are symlinks into /sys/devices; reading through them
// follows the links. Kernels before 3.x, and drivers that still register the
// old way, keep name and the channel attributes in hwmonN/device/ (the
// parent device) instead of hwmonN/: both places are read.

func init() { Register("hwmon", func() Config { return &HwmonConfig{} }) }

// HwmonConfig is the hwmon source's own keys.
type HwmonConfig struct {
	// Chip is the chip's name attribute (sht3x), its I2C bus and address
	// (1-0044), or hwmonN. As with iio, N follows probe order, the name and
	// the address do not.
	Chip string `yaml:"chip"`
	// Label selects the temperature channel whose tempM_label equals it
	// ("Package id 0"); empty takes the lowest-numbered tempM_input. It also
	// picks among chips of the same name.
	Label string `yaml:"label"`
	// Sysfs is where sysfs is mounted; default /sys.
	Sysfs string `yaml:"sysfs"`
}

// Validate implements Config. Like iio, it does not look for the chip.
func (c *HwmonConfig) Validate() error {
	var errs []error
	if err := checkDeviceKey("chip", c.Chip, "",
		"the chip's name (cat /sys/class/hwmon/*/name), its I2C bus and address (1-0044) or hwmonN"); err != nil {
		errs = append(errs, err)
	}
	if err := checkSysfs(c.Sysfs); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// New implements Config. The chip is looked up at the first Read.
func (c *HwmonConfig) New(env Env) (Source, error) {
	s := &Hwmon{
		chip:  strings.TrimSpace(c.Chip),
		label: strings.TrimSpace(c.Label),
		r:     newAttrReader(),
	}
	s.sel = devSelector{
		what:   "hwmon chip",
		list:   filepath.Join(sysfsRoot(c.Sysfs), "class", "hwmon"),
		prefix: "hwmon",
		want:   s.chip,
		nameOf: hwmonName,
	}
	if s.label != "" {
		// Two chips of one kind: the label may tell them apart.
		s.sel.prefer = func(dir string) bool { _, ok := tempLabelled(hwmonAttrDir(dir), s.label); return ok }
	}
	return s, nil
}

// hwmonName reads the chip's name, from hwmonN/name or, on older kernels,
// hwmonN/device/name.
func hwmonName(dir string) (string, error) {
	name, err := readName(filepath.Join(dir, "name"))
	if err != nil {
		if n, err2 := readName(filepath.Join(dir, "device", "name")); err2 == nil {
			return n, nil
		}
	}
	return name, err
}

// hwmonAttrDir returns where the chip's channel attributes are: hwmonN, or
// hwmonN/device when only that has temp*_input or humidity*_input.
func hwmonAttrDir(dir string) string {
	if t, h, err := hwmonInputs(dir); err == nil && len(t)+len(h) > 0 {
		return dir
	}
	dev := filepath.Join(dir, "device")
	if t, h, err := hwmonInputs(dev); err == nil && len(t)+len(h) > 0 {
		return dev
	}
	return dir
}

// Hwmon reads the temperature and humidity of one hwmon chip.
type Hwmon struct {
	chip, label string
	sel         devSelector
	r           *attrReader

	// The resolved chip and the files of its channels, dropped after a
	// failure so that the chip is looked up again.
	dir         string
	temp, humid string // paths; "" when the chip lacks the quantity
	out         []Reading
}

// Read implements Source.
func (s *Hwmon) Read(ctx context.Context) ([]Reading, error) {
	out, err := s.readOnce(ctx)
	if err != nil && gone(err) && ctx.Err() == nil && !s.sel.byIndex() && s.dir != "" {
		s.dir = "" // renumbered? look the name up again
		out, err = s.readOnce(ctx)
	}
	if err != nil {
		s.dir = ""
		return nil, err
	}
	return out, nil
}

func (s *Hwmon) readOnce(ctx context.Context) ([]Reading, error) {
	if s.dir == "" {
		dir, err := s.sel.resolve()
		if err != nil {
			return nil, err
		}
		if s.temp, s.humid, err = s.channels(dir, hwmonAttrDir(dir)); err != nil {
			return nil, err
		}
		s.dir = dir
	}
	s.out = s.out[:0]
	for _, ch := range []struct{ quantity, path string }{{Temperature, s.temp}, {Humidity, s.humid}} {
		if ch.path == "" {
			continue
		}
		v, err := s.r.readNumber(ctx, ch.path)
		if err != nil {
			return nil, err
		}
		s.out = append(s.out, Reading{Quantity: ch.quantity, Value: round3(v / 1000)})
	}
	return s.out, nil
}

// channels picks the temperature and humidity input files of the chip in
// dir, whose attributes are in attrs (dir or dir/device).
func (s *Hwmon) channels(dir, attrs string) (temp, humid string, err error) {
	temps, humids, err := hwmonInputs(attrs)
	if err != nil {
		return "", "", err
	}
	if s.label != "" {
		n, ok := tempLabelled(attrs, s.label)
		if !ok {
			return "", "", fmt.Errorf("%s (%s) has no temperature channel labelled %q%s", filepath.Base(dir), s.chip, s.label, labelsOf(attrs, temps))
		}
		temp = filepath.Join(attrs, "temp"+strconv.Itoa(n)+"_input")
	} else if len(temps) > 0 {
		temp = filepath.Join(attrs, "temp"+strconv.Itoa(temps[0])+"_input")
	}
	if len(humids) > 0 {
		humid = filepath.Join(attrs, "humidity"+strconv.Itoa(humids[0])+"_input")
	}
	if temp == "" && humid == "" {
		return "", "", fmt.Errorf("%s (%s) has no temp*_input or humidity*_input", filepath.Base(dir), s.chip)
	}
	return temp, humid, nil
}

// hwmonInputs returns M of every tempM_input and humidityM_input, ascending.
func hwmonInputs(dir string) (temps, humids []int, err error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, err
	}
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), "_input")
		if !ok {
			continue
		}
		if n := indexOf(name, "temp"); n >= 0 {
			temps = append(temps, n)
		} else if n := indexOf(name, "humidity"); n >= 0 {
			humids = append(humids, n)
		}
	}
	sort.Ints(temps)
	sort.Ints(humids)
	return temps, humids, nil
}

// tempLabelled returns M of the lowest tempM_input whose tempM_label is label.
func tempLabelled(dir, label string) (int, bool) {
	temps, _, err := hwmonInputs(dir)
	if err != nil {
		return 0, false
	}
	for _, n := range temps {
		if l, err := readName(filepath.Join(dir, "temp"+strconv.Itoa(n)+"_label")); err == nil && l == label {
			return n, true
		}
	}
	return 0, false
}

// labelsOf lists the chip's temperature labels for an error message.
func labelsOf(dir string, temps []int) string {
	var labels []string
	for _, n := range temps {
		if l, err := readName(filepath.Join(dir, "temp"+strconv.Itoa(n)+"_label")); err == nil {
			labels = append(labels, strconv.Quote(l))
		}
	}
	if len(labels) == 0 {
		return " (its channels have no labels)"
	}
	return " (labels: " + strings.Join(labels, ", ") + ")"
}
