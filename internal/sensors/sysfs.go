package sensors

import (
	"context"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Helpers shared by the sources that read sysfs (iio, hwmon, w1).

// defaultSysfs is where sysfs is mounted; the sysfs key of a source points
// elsewhere, e.g. at a fixture tree in tests (node_exporter's --path.sysfs).
const defaultSysfs = "/sys"

// maxAttrSize bounds how much of one attribute is read. The kernel fills at
// most one page per sysfs attribute, and the ones read here hold a number
// or two short lines.
const maxAttrSize = 8192

// checkSysfs validates a sysfs key: empty (the default) or an absolute path,
// since a daemon's working directory is nothing a config should depend on.
func checkSysfs(root string) error {
	if root != "" && !filepath.IsAbs(root) {
		return Errorf("sysfs", "must be an absolute path such as /sys, not %q", root)
	}
	return nil
}

// sysfsRoot returns the configured root, or /sys.
func sysfsRoot(root string) string {
	if root == "" {
		return defaultSysfs
	}
	return filepath.Clean(root)
}

// readAttr reads one small attribute file whole, with plain read(2) (see
// readAttrFlags). Reading follows symlinks, as it must: the entries of
// /sys/class and /sys/bus are symlinks.
func readAttr(path string) ([]byte, error) {
	b, err := readAttrFlags(path, 0)
	if err != nil {
		return nil, err // an *fs.PathError naming the file, e.g. "input/output error"
	}
	if len(b) > maxAttrSize {
		return nil, fmt.Errorf("%s: longer than %d bytes, not a sysfs attribute", path, maxAttrSize)
	}
	return b, nil
}

// readName reads an attribute that holds a name (name, label), trimmed.
func readName(path string) (string, error) {
	b, err := readAttr(path)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// attrReader reads value attributes so that no driver can hold Read past
// its deadline: a DS18B20 conversion takes 750 ms, the dht11 driver waits up
// to a second for the sensor's edges, a wedged I2C bus can take longer, and
// a broken driver may answer EAGAIN for ever.
//
// Each read has its own deadline, ctx's. EAGAIN ("try again") is retried
// with a short backoff until then, and the read ends with the last error
// when it passes. A read(2) that blocks inside the driver cannot be
// interrupted from user space (Go restarts system calls after its signals),
// so it runs in a goroutine: when ctx ends, readCtx returns at once, and
// the goroutine closes the file and ends when the driver lets go. At most
// one such read is in flight per source, so a stuck driver costs one
// thread, not one per interval.
type attrReader struct {
	read func(path string) ([]byte, error) // readAttr; a test swaps it to inject errors
	busy chan struct{}
}

func newAttrReader() *attrReader {
	return &attrReader{read: readAttr, busy: make(chan struct{}, 1)}
}

type readResult struct {
	b   []byte
	err error
}

// EAGAIN backoff within one read.
const (
	againFirst = 10 * time.Millisecond
	againMax   = 200 * time.Millisecond
)

// readCtx reads path, or gives up when ctx ends.
func (r *attrReader) readCtx(ctx context.Context, path string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	select {
	case r.busy <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("read %s: an earlier read is still blocked in the driver: %w", path, ctx.Err())
	}
	done := make(chan readResult, 1)
	go func() {
		defer func() { <-r.busy }()
		wait := againFirst
		for {
			b, err := r.read(path)
			if !errors.Is(err, syscall.EAGAIN) || !sleepCtx(ctx, wait) {
				done <- readResult{b, err}
				return
			}
			wait = min(2*wait, againMax)
		}
	}()
	select {
	case res := <-done:
		return res.b, res.err
	case <-ctx.Done():
		select {
		case res := <-done: // finished at the same moment: take it
			return res.b, res.err
		default:
		}
		return nil, fmt.Errorf("read %s: %w", path, ctx.Err())
	}
}

// readNumber reads and parses one numeric attribute.
func (r *attrReader) readNumber(ctx context.Context, path string) (float64, error) {
	b, err := r.readCtx(ctx, path)
	if err != nil {
		return 0, err
	}
	v, err := parseSysfsNumber(b)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return v, nil
}

// errEmpty is what a driver that failed quietly leaves: w1_therm and others
// return zero bytes instead of an error when a conversion fails.
var errEmpty = errors.New("empty: the driver returned no value")

// parseSysfsNumber parses a numeric sysfs attribute: an integer ("23450")
// or a fixed-point decimal as IIO prints them ("100.402421875",
// "-0.500000"), with surrounding whitespace and the trailing newline. Hex,
// exponents, Inf and NaN are not what the kernel prints, so they are refused.
func parseSysfsNumber(b []byte) (float64, error) {
	s := strings.Trim(string(b), " \t\r\n\x00")
	if s == "" {
		return 0, errEmpty
	}
	if len(s) > 64 || !isDecimal(s) {
		return 0, fmt.Errorf("not a number: %s", quoteShort(s))
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(v, 0) || math.IsNaN(v) {
		return 0, fmt.Errorf("not a finite number: %s", quoteShort(s))
	}
	return v, nil
}

// isDecimal reports whether s is [+-]digits[.digits].
func isDecimal(s string) bool {
	if s[0] == '-' || s[0] == '+' {
		s = s[1:]
	}
	whole, frac, dot := strings.Cut(s, ".")
	if whole == "" || dot && frac == "" {
		return false
	}
	for _, part := range []string{whole, frac} {
		for i := 0; i < len(part); i++ {
			if part[i] < '0' || part[i] > '9' {
				return false
			}
		}
	}
	return true
}

// quoteShort quotes s for an error message, cut to 32 bytes so that a
// garbage file cannot flood the log.
func quoteShort(s string) string {
	if len(s) > 32 {
		return strconv.Quote(s[:32]) + "..."
	}
	return strconv.Quote(s)
}

// round3 rounds to three decimals: the milli-unit resolution of the sysfs
// interfaces, and it keeps float noise such as 23.450000000000003 out of the
// payloads. Non-finite values pass through for the core's range check.
func round3(v float64) float64 {
	r := math.Round(v*1000) / 1000
	if math.IsInf(r, 0) || math.IsNaN(r) {
		return v
	}
	return r
}

// indexOf returns N of a name such as "iio:device12" or "hwmon3" with the
// given prefix, or -1.
func indexOf(name, prefix string) int {
	rest, ok := strings.CutPrefix(name, prefix)
	if !ok || rest == "" || len(rest) > 9 {
		return -1
	}
	n := 0
	for i := 0; i < len(rest); i++ {
		c := rest[i]
		if c < '0' || c > '9' {
			return -1
		}
		n = n*10 + int(c-'0')
	}
	return n
}
