package sensors

import (
	"context"
	"crypto/aes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/internal/ble"
	"github.com/gatewayd/gatewayd/internal/ble/blueztest"
	"github.com/pion/dtls/v3/pkg/crypto/ccm"
)

func TestBLEConfig(t *testing.T) {
	for _, c := range []struct {
		cfg  BLEConfig
		errs []string // substrings, one per error; none: valid
	}{
		{cfg: BLEConfig{Address: "A4:C1:38:12:34:56"}},
		{cfg: BLEConfig{Address: "a4-c1-38-12-34-56", Bindkey: "231d39c1d7cc1ab1aee224cd096db932", Adapter: "hci1"}},
		{cfg: BLEConfig{}, errs: []string{"address: is required"}},
		{cfg: BLEConfig{Address: "A4:C1:38:12:34"}, errs: []string{"address: \"A4:C1:38:12:34\" is not a Bluetooth address"}},
		{cfg: BLEConfig{Address: "A4:C1:38:12:34:56", Bindkey: "231d39c1d7cc1ab1aee224cd096db9"}, errs: []string{"bindkey: must be 32 hex digits (a 16-byte AES key), got 30 characters"}},
		{cfg: BLEConfig{Address: "A4:C1:38:12:34:56", Bindkey: "zz1d39c1d7cc1ab1aee224cd096db932"}, errs: []string{"bindkey: must be 32 hex digits"}},
		{cfg: BLEConfig{Address: "A4:C1:38:12:34:56", Adapter: "../hci0"}, errs: []string{"adapter: \"../hci0\" is not an adapter name"}},
		{cfg: BLEConfig{Adapter: "HCI0"}, errs: []string{"address: is required", "adapter:"}},
	} {
		err := c.cfg.Validate()
		if len(c.errs) == 0 {
			if err != nil {
				t.Errorf("%+v: %v", c.cfg, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("%+v: valid, want %v", c.cfg, c.errs)
			continue
		}
		for _, want := range c.errs {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%+v: %q, want %q", c.cfg, err, want)
			}
		}
		var ke *KeyError
		if !errors.As(err, &ke) {
			t.Errorf("%+v: %T is no KeyError", c.cfg, err)
		}
		if c.cfg.Bindkey != "" && strings.Contains(err.Error(), c.cfg.Bindkey) {
			t.Errorf("the bindkey is in the error: %v", err)
		}
	}
}

// bleSensor runs a ble sensor and collects what it emits and rejects.
type bleSensor struct {
	mu       sync.Mutex
	got      [][]Reading
	rejected []error
	emitted  chan struct{}
}

func runBLE(t *testing.T, rs *Receivers, cfg BLEConfig) *bleSensor {
	t.Helper()
	b := &bleSensor{emitted: make(chan struct{}, 100)}
	src, err := cfg.New(Env{Name: "t", Log: slog.New(slog.DiscardHandler), Receivers: rs, Rejected: func(err error) {
		b.mu.Lock()
		b.rejected = append(b.rejected, err)
		b.mu.Unlock()
		b.emitted <- struct{}{}
	}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- src.(Pusher).Run(ctx, func(rs []Reading) {
			b.mu.Lock()
			b.got = append(b.got, append([]Reading(nil), rs...))
			b.mu.Unlock()
			b.emitted <- struct{}{}
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return b
}

// wait waits until the sensor emitted or rejected n times in all.
func (b *bleSensor) wait(t *testing.T, n int) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		b.mu.Lock()
		have := len(b.got) + len(b.rejected)
		b.mu.Unlock()
		if have >= n {
			return
		}
		select {
		case <-b.emitted:
		case <-deadline:
			t.Fatalf("waited for %d frames, have %d", n, have)
		}
	}
}

func sealed(t *testing.T, key []byte, mac string, counter uint32, plain []byte) []byte {
	t.Helper()
	m, err := ble.ParseAddress(mac)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := aes.NewCipher(key)
	aead, _ := ccm.NewCCM(block, 4, 13)
	var c [4]byte
	binary.LittleEndian.PutUint32(c[:], counter)
	nonce := append(append(m[:], 0xD2, 0xFC, 0x41), c[:]...)
	s := aead.Seal(nil, nonce, plain, nil)
	out := append([]byte{0x41}, s[:len(s)-4]...)
	out = append(out, c[:]...)
	return append(out, s[len(s)-4:]...)
}

// Two sensors on one adapter share one scan; each takes its own device's
// frames, decrypts with its own key, and a frame with a bad MIC is
// rejected through Env.Rejected while the sensor goes on.
func TestBLESharedScan(t *testing.T) {
	bus := blueztest.Start(t)
	bus.StartBlueZ()
	bus.AddAdapter("hci0")
	t.Setenv("DBUS_SYSTEM_BUS_ADDRESS", bus.Addr)
	rs := NewReceivers(slog.New(slog.DiscardHandler))
	defer rs.Close()

	const plainAddr, secretAddr = "A4:C1:38:00:00:01", "54:48:E6:8F:80:A5"
	key, _ := hex.DecodeString("231d39c1d7cc1ab1aee224cd096db932")
	plain := runBLE(t, rs, BLEConfig{Address: strings.ToLower(plainAddr)})
	secret := runBLE(t, rs, BLEConfig{Address: secretAddr, Bindkey: hex.EncodeToString(key)})
	deadline := time.Now().Add(20 * time.Second)
	for !func() bool { on, _ := bus.Discovering("hci0"); return on }() {
		if time.Now().After(deadline) {
			t.Fatal("no discovery")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := rs.Running(); len(got) != 1 || got[0] != "ble hci0" {
		t.Fatalf("receivers %v, want one scan", got)
	}

	before := time.Now()
	bus.AddDevice("hci0", plainAddr, blueztest.Data{Service: map[uint16][]byte{0xFCD2: {0x40, 0x00, 0x01, 0x01, 0x5A, 0x02, 0xCA, 0x09}}})
	bus.AddDevice("hci0", secretAddr, blueztest.Data{Service: map[uint16][]byte{0xFCD2: sealed(t, key, secretAddr, 1000, []byte{0x02, 0xCA, 0x09, 0x03, 0xBF, 0x13})}})
	plain.wait(t, 1)
	secret.wait(t, 1)
	// A forged frame (the MIC of another payload) and then a good one.
	bad := sealed(t, key, secretAddr, 1001, []byte{0x02, 0x00, 0x10})
	bad[len(bad)-1] ^= 0xFF
	bus.Advertise("hci0", secretAddr, blueztest.Data{Service: map[uint16][]byte{0xFCD2: bad}})
	bus.Advertise("hci0", secretAddr, blueztest.Data{Service: map[uint16][]byte{0xFCD2: sealed(t, key, secretAddr, 1002, []byte{0x02, 0x00, 0x10})}})
	secret.wait(t, 3)

	plain.mu.Lock()
	defer plain.mu.Unlock()
	secret.mu.Lock()
	defer secret.mu.Unlock()
	want := []Reading{{Quantity: Battery, Value: 90}, {Quantity: Temperature, Value: 25.06}}
	if len(plain.got) != 1 || len(plain.got[0]) != 2 || plain.got[0][0].Quantity != want[0].Quantity || plain.got[0][0].Value != want[0].Value ||
		plain.got[0][1].Quantity != want[1].Quantity || plain.got[0][1].Value != want[1].Value {
		t.Fatalf("plain sensor got %v", plain.got)
	}
	if at := plain.got[0][0].Time; at.Before(before) || time.Since(at) > 10*time.Second {
		t.Errorf("reading time %v, the advertisement was sent after %v", at, before)
	}
	if len(plain.rejected) != 0 {
		t.Errorf("plain sensor rejected %v", plain.rejected)
	}
	if len(secret.got) != 2 || secret.got[0][0].Value != 25.06 || secret.got[0][1].Value != 50.55 || secret.got[1][0].Value != 40.96 {
		t.Fatalf("encrypted sensor got %v", secret.got)
	}
	if len(secret.rejected) != 1 || !strings.Contains(secret.rejected[0].Error(), "MIC does not match") {
		t.Fatalf("rejected %v", secret.rejected)
	}
}
