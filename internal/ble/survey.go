package ble

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"time"
)

// Heard is one device a survey heard in a format gatewayd knows.
type Heard struct {
	Address string
	Frame   Frame // the last frame decoded
	Err     error // the last frame's rejection (a bad MIC), if it had one
	Frames  int   // advertisements heard
}

// Survey listens on the adapter until ctx ends and returns the devices it
// heard in a format gatewayd knows, sorted by address, and how many other
// devices it heard. keys holds the bindkeys of the devices that have one,
// so that their values can be shown. It returns an error when the scan
// could not run (no system bus).
func Survey(ctx context.Context, adapter string, keys map[string][]byte, log *slog.Logger) ([]Heard, int, error) {
	s := NewScanner(adapter, log)
	sub := s.Subscribe("")
	defer s.Unsubscribe(sub)
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	heard := map[string]*Heard{}
	others := map[string]bool{}
	decoders := map[string]*Decoder{}
	for {
		select {
		case err := <-done:
			out := make([]Heard, 0, len(heard))
			for _, h := range heard {
				out = append(out, *h)
			}
			sort.Slice(out, func(i, j int) bool { return out[i].Address < out[j].Address })
			return out, len(others), err
		case ad := <-sub.C:
			var f Frame
			var err error
			if key, ok := keys[ad.Address]; ok {
				d := decoders[ad.Address]
				if d == nil {
					if d, err = NewDecoder(ad.Address, key); err != nil {
						continue
					}
					decoders[ad.Address] = d
				}
				f, err = d.Decode(ad)
			} else {
				f, err = Identify(ad)
			}
			switch {
			case errors.Is(err, ErrUnknown):
				if len(others) < maxHeard {
					others[ad.Address] = true
				}
				continue
			case errors.Is(err, ErrRepeat):
				if h := heard[ad.Address]; h != nil {
					h.Frames++
				}
				continue
			}
			h := heard[ad.Address]
			if h == nil {
				if len(heard) >= maxHeard {
					continue
				}
				h = &Heard{Address: ad.Address}
				heard[ad.Address] = h
			}
			h.Frames++
			h.Err = err
			if err == nil || len(h.Frame.Values) == 0 {
				h.Frame = f
			}
		}
	}
}

// WriteSurvey writes what Survey heard on an adapter for an operator:
// one line per device, with the name of the sensor that names it.
func WriteSurvey(w io.Writer, adapter string, took time.Duration, heard []Heard, others int, names map[string]string) error {
	var b strings.Builder
	switch {
	case len(heard) == 0:
		fmt.Fprintf(&b, "no Bluetooth LE thermometer heard on %s in %s", adapter, took.Round(time.Second))
	default:
		fmt.Fprintf(&b, "Bluetooth LE devices heard on %s in %s (address, format, values):\n", adapter, took.Round(time.Second))
		for _, h := range heard {
			line := h.Frame.String()
			if h.Err != nil {
				line += " (last frame rejected: " + h.Err.Error() + ")"
			}
			fmt.Fprintf(&b, "  %s  %s", h.Address, line)
			if n, ok := names[h.Address]; ok {
				fmt.Fprintf(&b, "  [sensor %s]", n)
			} else {
				b.WriteString("  [no sensor]")
			}
			b.WriteString("\n")
		}
	}
	if others > 0 {
		if len(heard) > 0 {
			b.WriteString("  and ")
		} else {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "%d other Bluetooth devices in no format gatewayd knows (phones, watches, beacons)", others)
	}
	s := strings.TrimSuffix(b.String(), "\n") + "\n"
	_, err := io.WriteString(w, s)
	return err
}
