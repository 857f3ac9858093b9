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
// follows the links.

func init() { Register("hwmon", func() Config { return &HwmonConfig{} }) }

// HwmonConfig is the hwmon source's own keys.
type HwmonConfig struct {
	// Chip is the chip's name attribute (sht3x) or hwmonN. As with iio, N
	// follows probe order, the name does not.
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
	switch d := c.Chip; {
	case strings.TrimSpace(d) == "":
		errs = append(errs, Errorf("chip", "is required: the chip's name or hwmonN (cat /sys/class/hwmon/*/name)"))
	case strings.ContainsAny(d, "/\x00\n"):
		errs = append(errs, Errorf("chip", "%q cannot be a chip name", d))
	}
	if err := checkSysfs(c.Sysfs); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// New implements Config. The chip is looked up at the first Read.
func (c *HwmonConfig) New(env Env) (Source, error) {
	return &Hwmon{
		chip:    strings.TrimSpace(c.Chip),
		label:   strings.TrimSpace(c.Label),
		class:   filepath.Join(sysfsRoot(c.Sysfs), "class", "hwmon"),
		byIndex: indexOf(strings.TrimSpace(c.Chip), "hwmon") >= 0,
		r:       newAttrReader(),
	}, nil
}

// Hwmon reads the temperature and humidity of one hwmon chip.
type Hwmon struct {
	chip, label string
	class       string // <sysfs>/class/hwmon
	byIndex     bool
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
	if err != nil && gone(err) && ctx.Err() == nil && !s.byIndex && s.dir != "" {
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
		dir, err := s.resolve()
		if err != nil {
			return nil, err
		}
		if s.temp, s.humid, err = s.channels(dir); err != nil {
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

// resolve finds the chip's directory.
func (s *Hwmon) resolve() (string, error) {
	if s.byIndex {
		dir := filepath.Join(s.class, s.chip)
		if _, err := os.Stat(dir); err != nil {
			return "", fmt.Errorf("hwmon chip %s: %w", s.chip, err)
		}
		return dir, nil
	}
	entries, err := os.ReadDir(s.class)
	if err != nil {
		return "", fmt.Errorf("listing hwmon chips: %w", err)
	}
	var match, seen []string
	for _, e := range sortByIndex(entries, "hwmon") {
		name, err := readName(filepath.Join(s.class, e, "name"))
		if err != nil {
			continue
		}
		seen = append(seen, fmt.Sprintf("%s (%s)", e, name))
		if name == s.chip {
			match = append(match, e)
		}
	}
	if len(match) > 1 && s.label != "" {
		// Two chips of one kind: the label may tell them apart.
		var labelled []string
		for _, m := range match {
			if _, ok := tempLabelled(filepath.Join(s.class, m), s.label); ok {
				labelled = append(labelled, m)
			}
		}
		if len(labelled) > 0 {
			match = labelled
		}
	}
	switch len(match) {
	case 0:
		if len(seen) == 0 {
			return "", fmt.Errorf("no hwmon chip named %q: %s has no chips (is the driver loaded?)", s.chip, s.class)
		}
		return "", fmt.Errorf("no hwmon chip named %q; found %s", s.chip, strings.Join(seen, ", "))
	case 1:
		return filepath.Join(s.class, match[0]), nil
	}
	return "", fmt.Errorf("%d hwmon chips are named %q (%s): name one as hwmonN", len(match), s.chip, strings.Join(match, ", "))
}

// channels picks the temperature and humidity input files of the chip.
func (s *Hwmon) channels(dir string) (temp, humid string, err error) {
	temps, humids, err := hwmonInputs(dir)
	if err != nil {
		return "", "", err
	}
	if s.label != "" {
		n, ok := tempLabelled(dir, s.label)
		if !ok {
			return "", "", fmt.Errorf("%s (%s) has no temperature channel labelled %q%s", filepath.Base(dir), s.chip, s.label, labelsOf(dir, temps))
		}
		temp = filepath.Join(dir, "temp"+strconv.Itoa(n)+"_input")
	} else if len(temps) > 0 {
		temp = filepath.Join(dir, "temp"+strconv.Itoa(temps[0])+"_input")
	}
	if len(humids) > 0 {
		humid = filepath.Join(dir, "humidity"+strconv.Itoa(humids[0])+"_input")
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
