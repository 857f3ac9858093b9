package sensors

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

// The iio source reads a sensor through the kernel's Industrial I/O
// subsystem (BME280/BMP280, DHT11/DHT22, SHT4x, HTS221, ...), following the
// ABI in Documentation/ABI/testing/sysfs-bus-iio:
//
//   - <sysfs>/bus/iio/devices/iio:deviceN/name is the device's name;
//   - in_temp_input is milli degrees Celsius, in_humidityrelative_input milli
//     percent, in_pressure_input kilopascal;
//   - a channel without _input has _raw, and optionally _offset and _scale:
//     value = (raw + offset) * scale, in the same units as _input.

func init() { Register("iio", func() Config { return &IIOConfig{} }) }

// IIOConfig is the iio source's own keys.
type IIOConfig struct {
	// Device is iio:deviceN or the device's name attribute (bme280,
	// dht11@4). The name is the better choice: N follows probe order and
	// changes when devices come and go.
	Device string `yaml:"device"`
	// Sysfs is where sysfs is mounted; default /sys.
	Sysfs string `yaml:"sysfs"`
}

// Validate implements Config. It does not look at the device: the box that
// checks a config need not be the one with the sensor, and a driver may be
// loaded after the daemon starts.
func (c *IIOConfig) Validate() error {
	var errs []error
	switch d := c.Device; {
	case strings.TrimSpace(d) == "":
		errs = append(errs, Errorf("device", "is required: iio:deviceN or the device's name (cat /sys/bus/iio/devices/*/name)"))
	case strings.HasPrefix(d, "iio:device") && indexOf(d, "iio:device") < 0:
		errs = append(errs, Errorf("device", "%q is neither iio:deviceN nor a device name", d))
	case strings.ContainsAny(d, "/\x00\n"):
		errs = append(errs, Errorf("device", "%q cannot be a device name", d))
	}
	if err := checkSysfs(c.Sysfs); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// New implements Config. The device is looked up at the first Read.
func (c *IIOConfig) New(env Env) (Source, error) {
	return &IIO{
		device:  strings.TrimSpace(c.Device),
		devices: filepath.Join(sysfsRoot(c.Sysfs), "bus", "iio", "devices"),
		byIndex: indexOf(c.Device, "iio:device") >= 0,
		r:       newAttrReader(),
	}, nil
}

// Retries of transient errors within one Read. DHT11/DHT22 reads fail often
// (the driver returns EIO on a checksum or timing error, ETIMEDOUT when the
// sensor does not answer), and one more try a moment later usually works.
const (
	iioRetryFirst  = 100 * time.Millisecond
	iioRetryMax    = time.Second
	iioMaxAttempts = 10 // bounds a Read whose ctx has no deadline
)

// IIO reads the temperature, humidity and pressure channels of one IIO
// device; whichever of the three it has.
type IIO struct {
	device  string
	devices string // <sysfs>/bus/iio/devices
	byIndex bool   // device is iio:deviceN
	r       *attrReader

	// The resolved device and its channels, kept between reads and
	// dropped after a failure, so that a device renumbered by a hotplug or a
	// driver reload is found again.
	dir   string
	chans []iioChannel
	out   []Reading
}

type iioChannel struct {
	quantity           string
	input              string // path of _input, or "" when read from _raw
	raw, offset, scale string // paths; offset and scale "" when absent
	mul, div           float64
}

// The quantities an IIO device may have, with the factor from the IIO unit
// to the published one.
var iioQuantities = []struct {
	quantity, prefix string
	mul, div         float64
}{
	{Temperature, "in_temp", 1, 1000},          // milli °C -> °C
	{Humidity, "in_humidityrelative", 1, 1000}, // milli percent -> %
	{Pressure, "in_pressure", 10, 1},           // kPa -> hPa
}

// Read implements Source. Transient errors (EIO, ETIMEDOUT, EAGAIN) are
// retried with a short backoff while ctx allows; the error then says how
// many attempts failed.
func (s *IIO) Read(ctx context.Context) ([]Reading, error) {
	wait := iioRetryFirst
	reresolved := false
	for attempt := 1; ; attempt++ {
		out, err := s.readOnce(ctx)
		if err == nil {
			return out, nil
		}
		found := s.dir != "" // the device was there, a file of it was not
		s.dir, s.chans = "", nil
		switch {
		case ctx.Err() != nil:
		case gone(err) && found && !s.byIndex && !reresolved:
			reresolved = true // renumbered? look the name up again, at once
			continue
		case transient(err) && attempt < iioMaxAttempts && sleepCtx(ctx, wait):
			wait = min(2*wait, iioRetryMax)
			continue
		}
		if attempt == 1 {
			return nil, err
		}
		return nil, fmt.Errorf("%d attempts failed, the last: %w", attempt, err)
	}
}

func (s *IIO) readOnce(ctx context.Context) ([]Reading, error) {
	if s.dir == "" {
		dir, err := s.resolve()
		if err != nil {
			return nil, err
		}
		chans, err := iioChannels(dir)
		if err != nil {
			return nil, err
		}
		s.dir, s.chans = dir, chans
	}
	s.out = s.out[:0]
	for i := range s.chans {
		v, err := s.chans[i].read(ctx, s.r)
		if err != nil {
			return nil, err
		}
		s.out = append(s.out, Reading{Quantity: s.chans[i].quantity, Value: v})
	}
	return s.out, nil
}

// resolve finds the device's directory.
func (s *IIO) resolve() (string, error) {
	if s.byIndex {
		dir := filepath.Join(s.devices, s.device)
		if _, err := os.Stat(dir); err != nil {
			return "", fmt.Errorf("iio device %s: %w", s.device, err)
		}
		return dir, nil
	}
	entries, err := os.ReadDir(s.devices)
	if err != nil {
		return "", fmt.Errorf("listing iio devices: %w", err)
	}
	var match, seen []string
	for _, e := range sortByIndex(entries, "iio:device") {
		name, err := readName(filepath.Join(s.devices, e, "name"))
		if err != nil {
			continue
		}
		seen = append(seen, fmt.Sprintf("%s (%s)", e, name))
		if name == s.device {
			match = append(match, e)
		}
	}
	switch len(match) {
	case 0:
		if len(seen) == 0 {
			return "", fmt.Errorf("no iio device named %q: %s has no devices (is the driver loaded?)", s.device, s.devices)
		}
		return "", fmt.Errorf("no iio device named %q; found %s", s.device, strings.Join(seen, ", "))
	case 1:
		return filepath.Join(s.devices, match[0]), nil
	}
	return "", fmt.Errorf("%d iio devices are named %q (%s): name one as iio:deviceN", len(match), s.device, strings.Join(match, ", "))
}

// iioChannels lists the channels of the device in dir that gatewayd knows.
func iioChannels(dir string) ([]iioChannel, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	has := make(map[string]bool, len(entries))
	for _, e := range entries {
		has[e.Name()] = true
	}
	var chans []iioChannel
	for _, q := range iioQuantities {
		ch := iioChannel{quantity: q.quantity, mul: q.mul, div: q.div}
		switch p := q.prefix; {
		case has[p+"_input"]:
			ch.input = filepath.Join(dir, p+"_input")
		case has[p+"_raw"]:
			ch.raw = filepath.Join(dir, p+"_raw")
			if has[p+"_offset"] {
				ch.offset = filepath.Join(dir, p+"_offset")
			}
			if has[p+"_scale"] {
				ch.scale = filepath.Join(dir, p+"_scale")
			}
		default:
			continue
		}
		chans = append(chans, ch)
	}
	if len(chans) == 0 {
		return nil, fmt.Errorf("%s has no temperature, humidity or pressure channel (in_temp_*, in_humidityrelative_*, in_pressure_*)", dir)
	}
	return chans, nil
}

// read returns the channel's value in the published unit.
func (ch *iioChannel) read(ctx context.Context, r *attrReader) (float64, error) {
	var v float64
	if ch.input != "" {
		in, err := r.readNumber(ctx, ch.input)
		if err != nil {
			return 0, err
		}
		v = in
	} else {
		raw, err := r.readNumber(ctx, ch.raw)
		if err != nil {
			return 0, err
		}
		offset, scale := 0.0, 1.0
		if ch.offset != "" {
			if offset, err = r.readNumber(ctx, ch.offset); err != nil {
				return 0, err
			}
		}
		if ch.scale != "" {
			if scale, err = r.readNumber(ctx, ch.scale); err != nil {
				return 0, err
			}
		}
		v = (raw + offset) * scale
	}
	return round3(v * ch.mul / ch.div), nil
}

// transient reports whether a read error is worth another try soon.
func transient(err error) bool {
	return errors.Is(err, syscall.EIO) || errors.Is(err, syscall.ETIMEDOUT) || errors.Is(err, syscall.EAGAIN)
}

// gone reports whether an error says that the device is no longer there
// (removed, or renumbered by a hotplug or a driver reload).
func gone(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENODEV)
}

// sleepCtx waits d, unless ctx ends first or would end before d is over
// (then a retry could not finish anyway). It reports whether it waited.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < d {
		return false
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// sortByIndex returns the names of entries that are prefix followed by a
// number, in numeric order (hwmon2 before hwmon10). Entries may be symlinks,
// as in real sysfs; they are not filtered by type.
func sortByIndex(entries []fs.DirEntry, prefix string) []string {
	var names []string
	for _, e := range entries {
		if indexOf(e.Name(), prefix) >= 0 {
			names = append(names, e.Name())
		}
	}
	sort.Slice(names, func(i, j int) bool { return indexOf(names[i], prefix) < indexOf(names[j], prefix) })
	return names
}
