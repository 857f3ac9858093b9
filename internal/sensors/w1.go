package sensors

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// The w1 source reads a 1-Wire thermometer (DS18B20, DS18S20, DS1822,
// DS1825, MAX31850) through the kernel's w1_therm driver, following
// Documentation/ABI/testing/sysfs-driver-w1_therm and
// drivers/w1/slaves/w1_therm.c:
//
//   - <sysfs>/bus/w1/devices/<family>-<serial>/temperature (kernel 5.9 and
//     later) holds milli degrees Celsius, and is empty when the conversion
//     failed;
//   - w1_slave (every kernel) holds two lines: the nine scratchpad bytes and
//     ": crc=xx YES" (or NO), then the bytes again and "t=" with milli °C.
//     Newer kernels leave it empty instead of writing a NO.
//
// 85000 (85 °C) is the DS18B20's power-on value: it means the sensor was
// read without converting (a brown-out, or parasite power too weak) and is
// refused like a CRC error.

func init() { Register("w1", func() Config { return &W1Config{} }) }

// W1Config is the w1 source's own keys.
type W1Config struct {
	// Device is the sensor's name under /sys/bus/w1/devices: the family
	// code and the serial number, e.g. 28-0316a2791eff.
	Device string `yaml:"device"`
	// Sysfs is where sysfs is mounted; default /sys.
	Sysfs string `yaml:"sysfs"`
}

var w1Name = regexp.MustCompile(`^[0-9a-f]{2}-[0-9a-f]{12}$`)

// Validate implements Config.
func (c *W1Config) Validate() error {
	var errs []error
	switch d := c.Device; {
	case d == "":
		errs = append(errs, Errorf("device", "is required: the sensor's name, e.g. 28-0316a2791eff (ls /sys/bus/w1/devices)"))
	case !w1Name.MatchString(d) && w1Name.MatchString(strings.ToLower(d)):
		errs = append(errs, Errorf("device", "%q must be written in lower case, as the kernel names it: %s", d, strings.ToLower(d)))
	case !w1Name.MatchString(d):
		errs = append(errs, Errorf("device", "%q is not a 1-Wire device name such as 28-0316a2791eff (ls /sys/bus/w1/devices)", d))
	}
	if err := checkSysfs(c.Sysfs); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// New implements Config. The sensor is looked for at each Read: a 1-Wire
// bus finds its devices some seconds after the driver loads.
func (c *W1Config) New(env Env) (Source, error) {
	return &W1{
		device: c.Device,
		dir:    filepath.Join(sysfsRoot(c.Sysfs), "bus", "w1", "devices", c.Device),
		r:      newAttrReader(),
	}, nil
}

// W1 reads the temperature of one 1-Wire thermometer.
type W1 struct {
	device, dir string
	r           *attrReader
	out         [1]Reading
}

// Read implements Source. A conversion takes up to 750 ms; the read honours
// ctx all the same.
func (s *W1) Read(ctx context.Context) ([]Reading, error) {
	v, err := s.read(ctx)
	if err != nil {
		return nil, err
	}
	s.out[0] = Reading{Quantity: Temperature, Value: v}
	return s.out[:], nil
}

func (s *W1) read(ctx context.Context) (float64, error) {
	path := filepath.Join(s.dir, "temperature")
	b, err := s.r.readCtx(ctx, path)
	if errors.Is(err, fs.ErrNotExist) { // an older kernel: only w1_slave
		path = filepath.Join(s.dir, "w1_slave")
		b, err = s.r.readCtx(ctx, path)
		if errors.Is(err, fs.ErrNotExist) {
			if _, serr := os.Stat(s.dir); serr != nil {
				return 0, fmt.Errorf("no 1-Wire device %s in %s (is the w1-gpio overlay loaded and the sensor wired?)", s.device, filepath.Dir(s.dir))
			}
			return 0, fmt.Errorf("%s has neither temperature nor w1_slave: not a w1_therm thermometer", s.dir)
		}
		if err != nil {
			return 0, err
		}
		v, err := parseW1Slave(b)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", path, err)
		}
		return v, nil
	}
	if err != nil {
		return 0, err
	}
	v, err := parseW1Temperature(b)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return v, nil
}

// Why a 1-Wire reading is refused.
var (
	errW1NoData  = errors.New("empty: the conversion failed (CRC error or no answer from the sensor)")
	errW1CRC     = errors.New("CRC check failed (crc=.. NO): noise on the bus; check the pull-up resistor and the cable")
	errW1PowerOn = errors.New("85 °C is the power-on value: the sensor did not convert (check its power supply)")
	errW1Zeros   = errors.New("every scratchpad byte is 0: the data line is shorted or the sensor is gone")
)

// parseW1Temperature parses the temperature attribute: milli °C.
func parseW1Temperature(b []byte) (float64, error) {
	v, err := parseSysfsNumber(b)
	if errors.Is(err, errEmpty) {
		return 0, errW1NoData
	}
	if err != nil {
		return 0, err
	}
	if v == 85000 {
		return 0, errW1PowerOn
	}
	return round3(v / 1000), nil
}

// parseW1Slave parses the w1_slave attribute and returns °C:
//
//	59 01 4b 46 7f ff 07 10 a2 : crc=a2 YES
//	59 01 4b 46 7f ff 07 10 a2 t=21562
func parseW1Slave(b []byte) (float64, error) {
	text := strings.TrimSpace(strings.TrimRight(string(b), "\x00"))
	if text == "" {
		return 0, errW1NoData
	}
	lines := strings.Split(text, "\n")
	if len(lines) != 2 {
		return 0, fmt.Errorf("expected 2 lines, got %d", len(lines))
	}
	first := strings.TrimSpace(lines[0])
	switch {
	case strings.HasSuffix(first, " YES"):
	case strings.HasSuffix(first, " NO"):
		return 0, errW1CRC
	default:
		return 0, fmt.Errorf("first line %s does not end in YES or NO", quoteShort(first))
	}
	// Nine zero bytes have a valid CRC (0), so the kernel says YES and t=0;
	// a real DS18B20 never sends them (its configuration byte has 1 bits).
	scratch, _, _ := strings.Cut(first, ":")
	if f := strings.Fields(scratch); len(f) == 9 && strings.Join(f, "") == "000000000000000000" {
		return 0, errW1Zeros
	}
	second := strings.TrimSpace(lines[1])
	i := strings.LastIndex(second, "t=")
	if i < 0 {
		return 0, fmt.Errorf("no t= in the second line %s", quoteShort(second))
	}
	milli, err := strconv.ParseInt(second[i+2:], 10, 32)
	if err != nil {
		return 0, fmt.Errorf("t=%s is not a whole number", quoteShort(second[i+2:]))
	}
	if milli == 85000 {
		return 0, errW1PowerOn
	}
	return float64(milli) / 1000, nil
}
