// Package sensors defines what a sensor source is, keeps the registry of source
// types by name, and holds one file per source type.
//
// A source only reads (a Source, pulled on the sensor's interval) or receives
// (a Pusher, which delivers what its device transmits): scheduling, timeouts,
// calibration, deadbands, rate limits, metrics and publishing live once, in the
// core (internal/gateway), so that every type behaves the same and a new type
// is a single small file.
package sensors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"
)

// Reading is one value of one quantity, in the quantity's unit (see Unit).
type Reading struct {
	Quantity string
	Value    float64
	// Time is the moment the device was heard or measured the value; the
	// published reading carries it. Zero means "when the core took it",
	// which is right for a source read on demand.
	Time time.Time
}

// Source reads a sensor. Read must honour ctx (the core gives it the sensor's
// timeout); it may retry a flaky device within ctx, but keeps no schedule
// and no metrics: the core does both.
// The core calls Read of one source from one goroutine at a time and is done
// with the returned slice before the next call, so a source may reuse it.
type Source interface {
	Read(ctx context.Context) ([]Reading, error)
}

// Instant marks a source whose Read computes from memory and never blocks,
// such as the simulated one. The core reads it inline in its scheduler,
// without a timeout and without a goroutine: with thousands of sensors
// those cost more than the read itself.
type Instant interface {
	Source
	Instant()
}

// Pusher is a source that delivers readings when its device transmits (a
// radio receiver, a Bluetooth scan) instead of being read on an interval. The
// core runs it for as long as the sensor is configured, and treats what it
// emits exactly as what a Source returns (calibration, range, deadband, seq,
// metrics), plus the push rules: interval is the least time between two
// published readings of a quantity, repeats of one transmission within 2 s
// are one reading, and the sensor is up while it was heard within stale_after.
//
// The core never calls Read of a Pusher: embed PushOnly for it. A push type's
// Config implements PushConfig, so that the config loader knows the rules
// before New.
type Pusher interface {
	Source
	// Run receives until ctx ends, then returns (nil). It calls emit with
	// the readings of one transmission, each with its Time set; emit is
	// called from Run's goroutine only, and copies what it keeps before it
	// returns, so the source may reuse the slice. An error returned before
	// ctx ended is logged and counted as a failed read, and Run is called
	// again after a backoff (1 s, doubling up to 1 min).
	Run(ctx context.Context, emit func([]Reading)) error
}

// PushOnly gives a Pusher the Read method that Source requires; the core
// never calls it.
type PushOnly struct{}

// Read implements Source for a Pusher.
func (PushOnly) Read(context.Context) ([]Reading, error) {
	return nil, errors.New("a push source delivers its readings itself")
}

// PushConfig marks the Config of a push type (its New returns a Pusher): the
// loader then defaults interval to 0 (every transmission), takes stale_after
// and refuses timeout.
type PushConfig interface {
	Config
	Pushes()
}

// Config holds one source type's own keys (those beside the common ones such as
// name and interval). yaml.v3 decodes it strictly from the sensor's entry in
// the config file, together with the common keys: make it a pointer to a
// struct whose exported fields carry yaml tags (any type yaml.v3 decodes,
// inline structs included; a key may not repeat a common one). A type without
// keys may be any value. A field type with its own UnmarshalYAML should
// return a *yaml.TypeError ("line N: message") for a bad value, so that
// decoding goes on and every error of the file is reported.
type Config interface {
	// Validate checks the type's keys. Errors that concern one key should be
	// a *KeyError so that the config loader can point at the key's line.
	Validate() error
	// New builds the source, a Source or a Pusher. It runs at start and
	// when a reload adds or changes the sensor, after Validate; it starts
	// nothing (a Pusher starts in Run).
	New(env Env) (Source, error)
}

// Prober is a Config that can also check the system: a device or program
// that must exist. config.Probe calls it (for -check, the start and a
// reload); Validate must not touch the system, since it runs on every parse.
type Prober interface {
	Probe() error // errors as Validate's
}

// Env is what a source may need from the daemon when it is built.
type Env struct {
	Name string // the sensor's name
	// Log is the daemon's logger with the sensor's name: for what a source
	// has to say beyond its errors (a receiver's stderr at debug, say).
	Log *slog.Logger
	// Receivers lets push sensors share one receiver (one rtl_433 child
	// per command, one BLE scan); see Join.
	Receivers *Receivers
	// Rejected counts, as a failed read, a transmission of the sensor's own
	// device that its Pusher heard but must not use (a frame whose MIC does
	// not match its key, a replayed counter); Run goes on. Call it from
	// Run's goroutine only, like emit. Nil where nothing counts them.
	Rejected func(err error)
}

// KeyError is a validation error of one key of a source's config.
type KeyError struct {
	Key string // the yaml key, e.g. "device"
	Msg string
}

func (e *KeyError) Error() string { return e.Key + ": " + e.Msg }

// Errorf returns a *KeyError for key.
func Errorf(key, format string, args ...any) error {
	return &KeyError{Key: key, Msg: fmt.Sprintf(format, args...)}
}

var (
	registryMu sync.RWMutex
	registry   = map[string]func() Config{}
)

// Register makes a source type available under typ. It is called from init()
// of the type's file and panics on an empty or duplicate name, since either is
// a programming error that must not reach a user.
func Register(typ string, newConfig func() Config) {
	registryMu.Lock()
	defer registryMu.Unlock()
	if typ == "" || newConfig == nil {
		panic("sensors: Register with empty type or nil constructor")
	}
	if _, dup := registry[typ]; dup {
		panic("sensors: Register called twice for type " + typ)
	}
	registry[typ] = newConfig
}

// NewConfig returns a fresh config of the type's own keys, or false when no
// such type is registered.
func NewConfig(typ string) (Config, bool) {
	registryMu.RLock()
	defer registryMu.RUnlock()
	f, ok := registry[typ]
	if !ok {
		return nil, false
	}
	return f(), true
}

// Types lists the registered type names, sorted.
func Types() []string {
	registryMu.RLock()
	defer registryMu.RUnlock()
	out := make([]string, 0, len(registry))
	for t := range registry {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

// The quantities gatewayd knows, with their unit and physical range. A source
// may return other quantities (an exec script may), which are published with
// an empty unit and no range check.
const (
	Temperature = "temperature"
	Humidity    = "humidity"
	Pressure    = "pressure"
	Battery     = "battery" // charge of a wireless sensor's battery
)

type quantityInfo struct {
	unit     string
	min, max float64
}

var quantities = map[string]quantityInfo{
	Temperature: {unit: "°C", min: -273.15, max: 2000},
	Humidity:    {unit: "%", min: 0, max: 100},
	Pressure:    {unit: "hPa", min: 0, max: 20000},
	Battery:     {unit: "%", min: 0, max: 100},
}

// Unit returns the unit a quantity is published in ("" when unknown).
func Unit(quantity string) string { return quantities[quantity].unit }

// ErrOutOfRange marks a reading outside its quantity's physical range.
var ErrOutOfRange = errors.New("value outside the physical range")

// CheckRange reports whether v is a possible value of the quantity: finite,
// and for the known quantities inside their physical range.
func CheckRange(quantity string, v float64) error {
	if v != v || v > 1e300 || v < -1e300 { // NaN or ±Inf cannot be published as JSON
		return fmt.Errorf("%s %v: %w", quantity, v, ErrOutOfRange)
	}
	q, ok := quantities[quantity]
	if ok && (v < q.min || v > q.max) {
		return fmt.Errorf("%s %v (allowed %v..%v): %w", quantity, v, q.min, q.max, ErrOutOfRange)
	}
	return nil
}

// ValidQuantity reports whether name may be used as a quantity: it ends up in
// topics and JSON, so only [a-z][a-z0-9_]* of at most 64 bytes. It is
// checked for every pushed reading, so it is a loop, not a regexp (which
// cost 3 % of the daemon's CPU at 4,000 readings/s).
func ValidQuantity(name string) bool {
	if len(name) == 0 || len(name) > 64 || name[0] < 'a' || name[0] > 'z' {
		return false
	}
	for i := 1; i < len(name); i++ {
		c := name[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '_' {
			return false
		}
	}
	return true
}
