package sensors

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/gatewayd/gatewayd/internal/ble"
)

// The ble source publishes what a Bluetooth LE thermometer broadcasts
// (BTHome v2, pvvx custom, ATC1441, Xiaomi MiBeacon, RuuviTag RAWv2, Govee
// H5075/H5074), heard passively through BlueZ on the D-Bus system bus. It
// is a push source: it publishes when the device advertises. One scan runs
// per adapter, shared by every ble sensor on it (internal/ble's Scanner,
// joined through Env.Receivers); each sensor takes its device's
// advertisements and decodes them with its own bindkey and counters.

func init() { Register("ble", func() Config { return &BLEConfig{} }) }

// BLEConfig is the ble source's own keys.
type BLEConfig struct {
	// Address is the device's Bluetooth address, A4:C1:38:12:34:56 (what
	// gatewayd -once and bluetoothctl show).
	Address string `yaml:"address"`
	// Bindkey is the device's 16-byte AES key as 32 hex digits, for
	// encrypted BTHome; empty for a device that does not encrypt. With a
	// bindkey, only encrypted frames are taken.
	Bindkey string `yaml:"bindkey"`
	// Adapter is the Bluetooth adapter, hci0 (the default).
	Adapter string `yaml:"adapter"`
}

// bleDefaultAdapter is the adapter a sensor listens on unless it names one.
const bleDefaultAdapter = "hci0"

var bleAdapterName = regexp.MustCompile(`^[a-z][a-z0-9_]{0,31}$`)

// Pushes implements PushConfig.
func (c *BLEConfig) Pushes() {}

func (c *BLEConfig) adapter() string {
	if c.Adapter == "" {
		return bleDefaultAdapter
	}
	return c.Adapter
}

// bindkey returns the key's bytes, nil when there is none.
func (c *BLEConfig) bindkey() ([]byte, error) {
	k := strings.TrimSpace(c.Bindkey)
	if k == "" {
		return nil, nil
	}
	b, err := hex.DecodeString(k)
	if err != nil || len(b) != 16 {
		// The key itself is a secret: never in an error.
		return nil, Errorf("bindkey", "must be 32 hex digits (a 16-byte AES key), got %d characters", len(k))
	}
	return b, nil
}

// Validate implements Config.
func (c *BLEConfig) Validate() error {
	var errs []error
	if strings.TrimSpace(c.Address) == "" {
		errs = append(errs, Errorf("address", "is required: the device's Bluetooth address, e.g. A4:C1:38:12:34:56 (gatewayd -once lists the devices it hears)"))
	} else if _, err := ble.ParseAddress(c.Address); err != nil {
		errs = append(errs, Errorf("address", "%s", err))
	}
	if _, err := c.bindkey(); err != nil {
		errs = append(errs, err)
	}
	if !bleAdapterName.MatchString(c.adapter()) {
		errs = append(errs, Errorf("adapter", "%s is not an adapter name, like hci0", quoteShort(c.Adapter)))
	}
	return errors.Join(errs...)
}

// New implements Config. The scan is started by the first sensor's Run.
func (c *BLEConfig) New(env Env) (Source, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	addr, _ := ble.NormalizeAddress(c.Address)
	key, _ := c.bindkey()
	return &BLE{address: addr, key: key, adapter: c.adapter(), receivers: env.Receivers, log: env.Log, rejected: env.Rejected}, nil
}

// BLE is one ble sensor: a Pusher that takes, from the scan of its
// adapter, the advertisements of its device.
type BLE struct {
	PushOnly
	address   string
	key       []byte
	adapter   string
	receivers *Receivers
	log       *slog.Logger
	rejected  func(error)
	out       []Reading
}

// bleReceiverKey names the shared scan of an adapter in the registry (and
// in its log lines).
func bleReceiverKey(adapter string) string { return "ble " + adapter }

// Run implements Pusher: it joins (or starts) the scan of its adapter and
// emits its device's frames, each reading with the time its advertisement
// was heard, until ctx ends. A frame that must not be used (see
// ble.FrameError) is counted through Env.Rejected.
func (s *BLE) Run(ctx context.Context, emit func([]Reading)) error {
	dec, err := ble.NewDecoder(s.address, s.key)
	if err != nil {
		return err
	}
	sub, done, err := joinSubscribed(s.receivers, s.log, bleReceiverKey(s.adapter),
		func(log *slog.Logger) *ble.Scanner { return ble.NewScanner(s.adapter, log) },
		func(sc *ble.Scanner) *ble.Subscription { return sc.Subscribe(s.address) },
		(*ble.Scanner).Unsubscribe)
	if err != nil {
		return err
	}
	defer done()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ad := <-sub.C:
			f, err := dec.Decode(ad)
			var fe *ble.FrameError
			switch {
			case errors.As(err, &fe):
				if s.rejected != nil {
					s.rejected(err)
				}
				continue
			case err != nil || len(f.Values) == 0:
				continue // not a known format, a repeat, a frame without readings
			}
			s.out = s.out[:0]
			for _, v := range f.Values {
				s.out = append(s.out, Reading{Quantity: v.Quantity, Value: v.Value, Time: ad.Time})
			}
			emit(s.out)
		}
	}
}

// BLESurveyMin is how long gatewayd -once listens at least for the
// Bluetooth LE devices around: thermometers advertise every 1 to 10 s
// (a Shelly BLU H&T once a minute).
const BLESurveyMin = 10 * time.Second

// BLESurvey is gatewayd -once's list of the Bluetooth LE devices around,
// for an operator looking for a thermometer's address. When ble sensors
// are among cfgs (names[i] is the name of cfgs[i]), it listens on each of
// their adapters until ctx ends, and at least BLESurveyMin, then writes to
// w every device heard in a format gatewayd knows: address, format, values
// (decrypted with the sensor's bindkey where one names the device) and the
// sensor that names it. Without ble sensors it does nothing.
func BLESurvey(ctx context.Context, names []string, cfgs []Config, w io.Writer, log *slog.Logger) error {
	type adapterSurvey struct {
		names map[string]string
		keys  map[string][]byte
		heard []ble.Heard
		other int
		err   error
	}
	adapters := map[string]*adapterSurvey{}
	for i, c := range cfgs {
		b, ok := c.(*BLEConfig)
		if !ok || b.Validate() != nil {
			continue
		}
		a := adapters[b.adapter()]
		if a == nil {
			a = &adapterSurvey{names: map[string]string{}, keys: map[string][]byte{}}
			adapters[b.adapter()] = a
		}
		addr, _ := ble.NormalizeAddress(b.Address)
		if i < len(names) {
			a.names[addr] = names[i]
		}
		if key, _ := b.bindkey(); key != nil {
			a.keys[addr] = key
		}
	}
	if len(adapters) == 0 {
		return nil
	}
	start := time.Now()
	sctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-ctx.Done():
		case <-sctx.Done():
			return
		}
		t := time.NewTimer(BLESurveyMin - time.Since(start))
		defer t.Stop()
		select {
		case <-t.C:
		case <-sctx.Done():
		}
		cancel()
	}()
	var wg sync.WaitGroup
	for name, a := range adapters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.heard, a.other, a.err = ble.Survey(sctx, name, a.keys, log.With("receiver", "survey "+name))
			cancel() // a scan that could not run ends the others' wait too
		}()
	}
	wg.Wait()
	took := time.Since(start)
	order := make([]string, 0, len(adapters))
	for name := range adapters {
		order = append(order, name)
	}
	sort.Strings(order)
	var errs []error
	for _, name := range order {
		a := adapters[name]
		if a.err != nil {
			errs = append(errs, fmt.Errorf("cannot list the Bluetooth devices on %s: %w", name, a.err))
			continue
		}
		if err := ble.WriteSurvey(w, name, took, a.heard, a.other, a.names); err != nil {
			return err
		}
	}
	return errors.Join(errs...)
}
