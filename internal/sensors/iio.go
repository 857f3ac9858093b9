package sensors

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
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
//     value = (raw + offset) * scale, in the same units as _input;
//   - a device with several channels of one type numbers them (in_temp0_input,
//     in_temp1_raw) or gives them a modifier (in_temp_object_raw,
//     in_temp_ambient_raw); _offset and _scale may then be the channel's own
//     (in_temp1_scale) or shared by every channel of the type (in_temp_scale).

func init() { Register("iio", func() Config { return &IIOConfig{} }) }

// IIOConfig is the iio source's own keys.
type IIOConfig struct {
	// Device is iio:deviceN, the device's name attribute (bme280,
	// dht11@4), or its I2C bus and address (1-0076). The name or the
	// address is the better choice: N follows probe order and changes when
	// devices come and go.
	Device string `yaml:"device"`
	// Channels picks, per quantity, which channel of a device that has
	// several to read: {temperature: in_temp1} or in_temp_object. Default:
	// the unnumbered one, else the lowest-numbered, else the first modified.
	Channels map[string]string `yaml:"channels"`
	// Sysfs is where sysfs is mounted; default /sys.
	Sysfs string `yaml:"sysfs"`
}

// iioChannelName matches a channel as sysfs names it, without the
// attribute: in_temp, in_temp1, in_temp_object, in_humidityrelative0.
var iioChannelName = regexp.MustCompile(`^in_(temp|humidityrelative|pressure)([0-9]{0,4})((?:_[a-z]+)?)$`)

// iioAttrSuffix are the attribute suffixes that iioChannelName would take
// for a modifier.
var iioAttrSuffix = map[string]bool{"_input": true, "_raw": true, "_offset": true, "_scale": true}

// Validate implements Config. It does not look at the device: the box that
// checks a config need not be the one with the sensor, and a driver may be
// loaded after the daemon starts.
func (c *IIOConfig) Validate() error {
	var errs []error
	if err := checkDeviceKey("device", c.Device, "iio:device",
		"iio:deviceN, the device's name (cat /sys/bus/iio/devices/*/name) or its I2C bus and address (1-0076)"); err != nil {
		errs = append(errs, err)
	}
	for _, q := range slices.Sorted(maps.Keys(c.Channels)) {
		ch := c.Channels[q]
		prefix := ""
		for _, iq := range iioQuantities {
			if iq.quantity == q {
				prefix = iq.prefix
			}
		}
		m := iioChannelName.FindStringSubmatch(ch)
		switch {
		case prefix == "":
			errs = append(errs, Errorf("channels."+q, "not a quantity the iio source reads (temperature, humidity, pressure)"))
		case m == nil || "in_"+m[1] != prefix || iioAttrSuffix[m[3]]:
			errs = append(errs, Errorf("channels."+q, "%q is not a %s channel such as %s1 or %s_object (ls /sys/bus/iio/devices/iio:device*/%s*)", ch, q, prefix, prefix, prefix))
		}
	}
	if err := checkSysfs(c.Sysfs); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// New implements Config. The device is looked up at the first Read.
func (c *IIOConfig) New(env Env) (Source, error) {
	dev := strings.TrimSpace(c.Device)
	return &IIO{
		sel: devSelector{
			what:   "iio device",
			list:   filepath.Join(sysfsRoot(c.Sysfs), "bus", "iio", "devices"),
			prefix: "iio:device",
			want:   dev,
			nameOf: func(dir string) (string, error) { return readName(filepath.Join(dir, "name")) },
		},
		channels: c.Channels,
		r:        newAttrReader(),
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
	sel      devSelector
	channels map[string]string // quantity -> channel, as configured
	r        *attrReader

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
		case gone(err) && found && !s.sel.byIndex() && !reresolved:
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
		dir, err := s.sel.resolve()
		if err != nil {
			return nil, err
		}
		chans, err := iioChannels(dir, s.channels)
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

// iioChannels lists the channels of the device in dir that gatewayd knows:
// per quantity the one chosen in want, else the first by iioChannelOrder.
func iioChannels(dir string, want map[string]string) ([]iioChannel, error) {
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
		var stems []string // channels of this type: in_temp, in_temp0, in_temp_object ...
		for _, e := range entries {
			stem, ok := strings.CutSuffix(e.Name(), "_input")
			if !ok {
				stem, ok = strings.CutSuffix(e.Name(), "_raw")
			}
			if m := iioChannelName.FindStringSubmatch(stem); ok && m != nil && "in_"+m[1] == q.prefix {
				stems = append(stems, stem)
			}
		}
		if len(stems) == 0 {
			if w, ok := want[q.quantity]; ok {
				return nil, fmt.Errorf("%s has no %s channel (no %s_input or %s_raw)", dir, q.quantity, w, w)
			}
			continue
		}
		sort.Slice(stems, func(i, j int) bool { return iioChannelLess(stems[i], stems[j]) })
		stem := stems[0]
		if w, ok := want[q.quantity]; ok {
			if !has[w+"_input"] && !has[w+"_raw"] {
				return nil, fmt.Errorf("%s has no %s channel %s; it has %s", dir, q.quantity, w, strings.Join(slices.Compact(stems), ", "))
			}
			stem = w
		}
		ch := iioChannel{quantity: q.quantity, mul: q.mul, div: q.div}
		if has[stem+"_input"] {
			ch.input = filepath.Join(dir, stem+"_input")
		} else {
			ch.raw = filepath.Join(dir, stem+"_raw")
			// The channel's own _offset and _scale, else those shared by
			// every channel of its type (in_temp_scale).
			for _, name := range []string{stem, q.prefix} {
				if ch.offset == "" && has[name+"_offset"] {
					ch.offset = filepath.Join(dir, name+"_offset")
				}
				if ch.scale == "" && has[name+"_scale"] {
					ch.scale = filepath.Join(dir, name+"_scale")
				}
			}
		}
		chans = append(chans, ch)
	}
	if len(chans) == 0 {
		return nil, fmt.Errorf("%s has no temperature, humidity or pressure channel (in_temp*, in_humidityrelative*, in_pressure*)", dir)
	}
	return chans, nil
}

// iioChannelLess orders the channels of one type: the unnumbered, plain
// one first (in_temp), then by number (in_temp0, in_temp1, in_temp10),
// then those with a modifier (in_temp_ambient before in_temp_object).
func iioChannelLess(a, b string) bool {
	ma, mb := iioChannelName.FindStringSubmatch(a), iioChannelName.FindStringSubmatch(b)
	rank := func(m []string) (int, int) {
		switch {
		case m[2] == "" && m[3] == "":
			return 0, 0
		case m[3] == "":
			n, _ := strconv.Atoi(m[2])
			return 1, n
		}
		return 2, 0
	}
	ra, na := rank(ma)
	rb, nb := rank(mb)
	if ra != rb {
		return ra < rb
	}
	if na != nb {
		return na < nb
	}
	return a < b
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
