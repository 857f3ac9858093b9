package config

import (
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Duration is a time.Duration written as a Go duration string ("500ms",
// "10s", "1m"). A bare number is refused: yaml would read "10" as ten
// nanoseconds, which is never what the writer meant.
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String implements fmt.Stringer.
func (d Duration) String() string { return time.Duration(d).String() }

// UnmarshalYAML implements yaml.Unmarshaler. Its errors are *yaml.TypeError,
// so that decoding goes on and every error of the file is reported.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return nodeError(n, "", "expected a duration such as 10s, got a %s", kindName(n))
	}
	s := strings.TrimSpace(n.Value)
	if s != "" && s[len(s)-1] >= '0' && s[len(s)-1] <= '9' && s != "0" && isNumber(s) {
		return nodeError(n, "", "duration %q has no unit (write %ss or %sms)", s, s, s)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return nodeError(n, "", "invalid duration %.64q (use Go durations such as 500ms, 10s, 1m)", s)
	}
	*d = Duration(v)
	return nil
}

func isNumber(s string) bool { _, err := strconv.ParseFloat(s, 64); return err == nil }

// ByteSize is a size in bytes, written as a number or with a unit: 512KB,
// 64MiB, 1GB. KB, MB and GB are powers of 1000; KiB, MiB and GiB of 1024.
type ByteSize int64

var byteUnits = []struct {
	suffix string
	mult   int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9},
	{"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30},
	{"B", 1},
}

// UnmarshalYAML implements yaml.Unmarshaler; errors as Duration's.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return nodeError(n, "", "expected a size such as 64MiB, got a %s", kindName(n))
	}
	v, err := ParseByteSize(n.Value)
	if err != nil {
		return nodeError(n, "", "%v", err)
	}
	*b = ByteSize(v)
	return nil
}

// ParseByteSize reads "1048576", "512KB", "64MiB" or "1.5GB".
func ParseByteSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	mult := int64(1)
	num := s
	for _, u := range byteUnits {
		if strings.HasSuffix(s, u.suffix) {
			mult = u.mult
			num = strings.TrimSpace(strings.TrimSuffix(s, u.suffix))
			break
		}
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f != f {
		return 0, fmt.Errorf("invalid size %.64q (use bytes or a unit: 512KB, 64MiB, 1GB)", s)
	}
	total := f * float64(mult)
	if total < 0 || total > 1<<62 {
		return 0, fmt.Errorf("size %q out of range", s)
	}
	return int64(total), nil
}

// String formats the size for humans.
func (b ByteSize) String() string {
	switch v := int64(b); {
	case v >= 1<<30 && v%(1<<30) == 0:
		return fmt.Sprintf("%dGiB", v>>30)
	case v >= 1<<20 && v%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", v>>20)
	case v >= 1<<10 && v%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", v>>10)
	default:
		return fmt.Sprintf("%dB", v)
	}
}

// Secret is a string that never shows itself in logs or printed configs.
type Secret string

// String implements fmt.Stringer without revealing the secret.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "[redacted]"
}

// LogValue implements slog.LogValuer without revealing the secret.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// Reveal returns the secret itself, for the one place that must send it.
func (s Secret) Reveal() string { return string(s) }
