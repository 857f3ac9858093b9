// Package ble hears Bluetooth LE thermometers: it decodes the advertisement
// formats they broadcast (one small file per format) and listens to BlueZ
// over D-Bus (bluez.go), one scan per adapter shared by every sensor.
//
// Advertisements are hostile input: anyone in radio range can send any
// bytes under any address. The decoders check every length, never panic
// (each has a fuzz target), and a frame that fails its check (a bad MIC, a
// replayed counter, a plaintext frame where a bindkey is configured) is a
// FrameError, which the sensor counts as a failed read.
package ble

import (
	"crypto/aes"
	"crypto/cipher"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/pion/dtls/v3/pkg/crypto/ccm"
)

// The quantities the decoders produce, named as gatewayd publishes them.
const (
	Temperature = "temperature" // °C
	Humidity    = "humidity"    // % relative humidity
	Pressure    = "pressure"    // hPa
	Battery     = "battery"     // % charge
)

// The formats the decoders know, as they are shown to an operator.
const (
	FormatBTHome   = "BTHome v2"
	FormatPVVX     = "pvvx custom"
	FormatATC1441  = "ATC1441"
	FormatMiBeacon = "Xiaomi MiBeacon"
	FormatRuuvi    = "RuuviTag RAWv2"
	FormatH5075    = "Govee H5075"
	FormatH5074    = "Govee H5074"
)

// Advertisement is what one advertisement of a device carried, as BlueZ
// hands it over: service data by 16-bit UUID and manufacturer data by
// company id, each without its id.
type Advertisement struct {
	Address          string // "A4:C1:38:12:34:56", upper case
	Time             time.Time
	ServiceData      map[uint16][]byte
	ManufacturerData map[uint16][]byte
}

// Value is one decoded value in its quantity's unit.
type Value struct {
	Quantity string
	Value    float64
}

// Frame is what a decoder read from an advertisement.
type Frame struct {
	Format    string
	Values    []Value
	Encrypted bool
	// Counter is the frame's own counter (a measurement count, a packet id,
	// an encryption counter) when HasCounter: an advertisement is sent
	// several times, and the same counter again is the same measurement.
	Counter    uint32
	HasCounter bool
}

func (f *Frame) add(q string, v float64) {
	for _, have := range f.Values {
		if have.Quantity == q {
			return // the first of a quantity wins (a second probe, say)
		}
	}
	f.Values = append(f.Values, Value{Quantity: q, Value: v})
}

// String shows the frame as the operator reads it: "pvvx custom
// temperature=21.5 humidity=40.1 battery=87".
func (f Frame) String() string {
	var b strings.Builder
	b.WriteString(f.Format)
	switch {
	case f.Encrypted && f.Format != FormatBTHome:
		b.WriteString(" (encrypted: not supported)")
	case f.Encrypted && len(f.Values) == 0:
		b.WriteString(" (encrypted: needs its bindkey)")
	}
	for _, v := range f.Values {
		fmt.Fprintf(&b, " %s=%g", v.Quantity, v.Value)
	}
	return b.String()
}

// ErrUnknown means that an advertisement carries no format gatewayd knows
// (most devices around, phones among them): not an error of the device.
var ErrUnknown = errors.New("no advertisement format gatewayd knows")

// ErrRepeat means that a frame repeats one already taken (a device sends
// each measurement several times): dropped, not an error.
var ErrRepeat = errors.New("a repeat of a frame already taken")

// FrameError is a frame of a known format that must not be used: too
// short, a bad MIC (a wrong bindkey), a replayed counter, encrypted without
// a bindkey, or plaintext where a bindkey is configured.
type FrameError struct {
	Format string
	Reason string
}

func (e *FrameError) Error() string { return e.Format + " frame rejected: " + e.Reason }

func reject(format, f string, args ...any) error {
	return &FrameError{Format: format, Reason: fmt.Sprintf(f, args...)}
}

// The 16-bit UUIDs and company ids of the formats.
const (
	uuidBTHome   = 0xFCD2
	uuidEnvSense = 0x181A // pvvx custom and ATC1441
	uuidMiBeacon = 0xFE95
	companyRuuvi = 0x0499
	companyGovee = 0xEC88
)

// parse decodes the first part of ad that it knows, in a fixed order. key
// is the AES-CCM cipher of the device's bindkey or nil; an encrypted frame
// without a key comes back with Encrypted set and no values. mac is the
// device's address as bytes, most significant first (for nonces).
func parse(ad *Advertisement, key cipher.AEAD, mac [6]byte) (Frame, error) {
	if d, ok := ad.ServiceData[uuidBTHome]; ok {
		return parseBTHome(d, key, mac)
	}
	if d, ok := ad.ServiceData[uuidEnvSense]; ok {
		switch len(d) {
		case pvvxLen:
			return parsePVVX(d)
		case atcLen:
			return parseATC1441(d)
		}
	}
	if d, ok := ad.ServiceData[uuidMiBeacon]; ok {
		return parseMiBeacon(d)
	}
	if d, ok := ad.ManufacturerData[companyRuuvi]; ok && len(d) > 0 && d[0] == ruuviFormat5 {
		return parseRuuvi5(d)
	}
	if d, ok := ad.ManufacturerData[companyGovee]; ok {
		switch len(d) {
		case h5075Len:
			return parseH5075(d)
		case h5074Len:
			return parseH5074(d)
		}
	}
	return Frame{}, ErrUnknown
}

// Identify decodes an advertisement without any key or history: what a
// device that no sensor names sends, for the log and for gatewayd -once.
func Identify(ad *Advertisement) (Frame, error) {
	mac, _ := ParseAddress(ad.Address)
	return parse(ad, nil, mac)
}

// Decoder decodes the advertisements of one device and keeps what checking
// them needs: its bindkey, the last encryption counter, the counters of the
// last frames taken. Not safe for concurrent use.
type Decoder struct {
	key     cipher.AEAD
	mac     [6]byte
	counter uint32 // last BTHome encryption counter accepted
	keyed   bool   // a frame passed the MIC: counter is set
	recent  [4]seen
	next    int
}

type seen struct {
	format  string
	counter uint32
	set     bool
}

// NewDecoder returns a decoder for the device at address; bindkey is its
// 16-byte AES key, or nil for a device that does not encrypt.
func NewDecoder(address string, bindkey []byte) (*Decoder, error) {
	mac, err := ParseAddress(address)
	if err != nil {
		return nil, err
	}
	d := &Decoder{mac: mac}
	if bindkey != nil {
		block, err := aes.NewCipher(bindkey)
		if err != nil {
			return nil, fmt.Errorf("bindkey: %w", err)
		}
		// BTHome v2 uses AES-CCM with a 13-byte nonce and a 4-byte MIC.
		d.key, err = ccm.NewCCM(block, 4, 13)
		if err != nil {
			return nil, fmt.Errorf("bindkey: %w", err)
		}
	}
	return d, nil
}

// Decode decodes one advertisement of the device. It returns ErrUnknown
// for an advertisement without a known format, ErrRepeat for a frame
// already taken, and a *FrameError for a frame that must not be used.
func (d *Decoder) Decode(ad *Advertisement) (Frame, error) {
	f, err := parse(ad, d.key, d.mac)
	if err != nil {
		return f, err
	}
	switch {
	case f.Encrypted && f.Format != FormatBTHome:
		return f, reject(f.Format, "encrypted, which gatewayd does not decode: switch the firmware to BTHome")
	case f.Encrypted && d.key == nil:
		return f, reject(f.Format, "encrypted; give the sensor its bindkey")
	case !f.Encrypted && d.key != nil:
		// A bindkey says the device encrypts: a plaintext frame under its
		// address is someone else's (HA's bthome-ble refuses it too).
		return f, reject(f.Format, "not encrypted, but the sensor has a bindkey")
	}
	if f.Format == FormatBTHome && f.Encrypted {
		if err := d.checkCounter(f.Counter); err != nil {
			return f, err
		}
	}
	if f.HasCounter {
		for _, s := range d.recent {
			if s.set && s.format == f.Format && s.counter == f.Counter {
				return f, ErrRepeat
			}
		}
		d.recent[d.next] = seen{format: f.Format, counter: f.Counter, set: true}
		d.next = (d.next + 1) % len(d.recent)
	}
	return f, nil
}

// counterRestart is below what a BTHome encryption counter may fall back
// to: a device that lost power counts again from zero. The same rule as
// Home Assistant's bthome-ble.
const counterRestart = 100

// checkCounter is the replay check of BTHome encryption (bthome.io/encryption:
// "verifying that the counter has increased"): a frame whose MIC is good but
// whose counter went back is a recording played again.
func (d *Decoder) checkCounter(c uint32) error {
	switch {
	case !d.keyed || c >= d.counter:
		// c == d.counter is the same frame again: a repeat, found by the
		// counter check in Decode.
	case c < counterRestart:
		// the device restarted
	default:
		return reject(FormatBTHome, "encryption counter %d is lower than the last one taken (%d): a replayed frame", c, d.counter)
	}
	d.counter, d.keyed = c, true
	return nil
}

// ParseAddress parses a Bluetooth address "A4:C1:38:12:34:56" (or with
// dashes) into its bytes, most significant first.
func ParseAddress(s string) ([6]byte, error) {
	var mac [6]byte
	if len(s) != 17 {
		return mac, fmt.Errorf("%q is not a Bluetooth address (like A4:C1:38:12:34:56)", s)
	}
	for i := range 6 {
		if i > 0 && s[3*i-1] != ':' && s[3*i-1] != '-' {
			return mac, fmt.Errorf("%q is not a Bluetooth address (like A4:C1:38:12:34:56)", s)
		}
		hi, ok1 := unhex(s[3*i])
		lo, ok2 := unhex(s[3*i+1])
		if !ok1 || !ok2 {
			return mac, fmt.Errorf("%q is not a Bluetooth address (like A4:C1:38:12:34:56)", s)
		}
		mac[i] = hi<<4 | lo
	}
	return mac, nil
}

// NormalizeAddress returns s in BlueZ's form: upper case, colons.
func NormalizeAddress(s string) (string, error) {
	mac, err := ParseAddress(s)
	if err != nil {
		return "", err
	}
	return FormatAddress(mac), nil
}

// FormatAddress formats an address's bytes as BlueZ does.
func FormatAddress(mac [6]byte) string {
	return fmt.Sprintf("%02X:%02X:%02X:%02X:%02X:%02X", mac[0], mac[1], mac[2], mac[3], mac[4], mac[5])
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
