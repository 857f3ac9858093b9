package ble

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/internal/ble/blueztest"
)

// The scanner against dbusmock's bluez5 template on a private dbus-daemon
// (blueztest): discovery with its filter, cached data not published, new
// advertisements published, devices removed and added again, bluetoothd
// restarting, the adapter missing and powered off and on.

// syncBuffer is a log that tests read while the scanner writes it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (s *syncBuffer) count(sub string) int { return strings.Count(s.String(), sub) }

// eventually waits for cond, failing the test after the deadline.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type scannerRun struct {
	s    *Scanner
	log  *syncBuffer
	done chan error
	stop context.CancelFunc
}

func runScanner(t *testing.T, bus *blueztest.Bus, adapter string) *scannerRun {
	t.Helper()
	t.Setenv("DBUS_SYSTEM_BUS_ADDRESS", bus.Addr)
	log := &syncBuffer{}
	s := NewScanner(adapter, slog.New(slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelDebug})))
	ctx, cancel := context.WithCancel(context.Background())
	r := &scannerRun{s: s, log: log, done: make(chan error, 1), stop: cancel}
	go func() { r.done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-r.done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return")
		}
		if t.Failed() {
			t.Logf("scanner log:\n%s", log.String())
		}
	})
	return r
}

// next waits for the next advertisement of sub.
func next(t *testing.T, sub *Subscription) *Advertisement {
	t.Helper()
	select {
	case ad := <-sub.C:
		return ad
	case <-time.After(20 * time.Second):
		t.Fatal("no advertisement")
		return nil
	}
}

// none checks that sub gets nothing for a moment.
func none(t *testing.T, sub *Subscription, d time.Duration) {
	t.Helper()
	select {
	case ad := <-sub.C:
		t.Fatalf("unexpected advertisement %+v", ad)
	case <-time.After(d):
	}
}

func pvvxFrame(temp uint16, counter byte) []byte {
	b := []byte{0x56, 0x34, 0x12, 0x38, 0xC1, 0xA4, 0, 0, 0x8B, 0x10, 0xA8, 0x0B, 0x57, counter, 0x04}
	b[6], b[7] = byte(temp), byte(temp>>8)
	return b
}

const thermo = "A4:C1:38:12:34:56"

func TestScannerAdvertisements(t *testing.T) {
	bus := blueztest.Start(t)
	bus.StartBlueZ()
	bus.AddAdapter("hci0")
	// Known to BlueZ before the scan starts, with data of unknown age.
	bus.AddDevice("hci0", thermo, blueztest.Data{Service: map[uint16][]byte{0x181A: pvvxFrame(1111, 1)}})

	r := runScanner(t, bus, "hci0")
	sub := r.s.Subscribe(thermo)
	eventually(t, "discovery", func() bool { on, _ := bus.Discovering("hci0"); return on })
	_, filter := bus.Discovering("hci0")
	if filter["Transport"].Value() != "le" || filter["DuplicateData"].Value() != true {
		t.Fatalf("discovery filter %v", filter)
	}
	if n := bus.Calls("hci0", "SetDiscoveryFilter"); n != 1 {
		t.Errorf("SetDiscoveryFilter called %d times", n)
	}
	none(t, sub, 300*time.Millisecond) // the cached data is not new

	bus.Advertise("hci0", thermo, blueztest.Data{Service: map[uint16][]byte{0x181A: pvvxFrame(2222, 2)}})
	ad := next(t, sub)
	f, err := Identify(ad)
	if err != nil || f.Values[0] != (Value{Temperature, 22.22}) || ad.Address != thermo || time.Since(ad.Time) > 10*time.Second {
		t.Fatalf("%+v %v %v", ad, f, err)
	}
	// The same data again is an advertisement too (DuplicateData): the
	// decoder, not the scanner, tells repeats.
	bus.Advertise("hci0", thermo, blueztest.Data{Service: map[uint16][]byte{0x181A: pvvxFrame(2222, 2)}})
	next(t, sub)
	// An RSSI change alone is no advertisement data.
	bus.SetRSSI("hci0", thermo, -70)
	none(t, sub, 300*time.Millisecond)

	// Manufacturer data, several company ids in one advertisement.
	bus.Advertise("hci0", thermo, blueztest.Data{Manufacturer: map[uint16][]byte{0xEC88: {0, 3, 0x4D, 0xB2, 0x64, 0}, 0x004C: {2, 0x15}}})
	ad = next(t, sub)
	if f, err := Identify(ad); err != nil || f.Format != FormatH5075 {
		t.Fatalf("%+v %v %v", ad, f, err)
	}

	// BlueZ forgets a silent device and announces it again when heard.
	bus.RemoveDevice("hci0", thermo)
	bus.AddDevice("hci0", thermo, blueztest.Data{Service: map[uint16][]byte{0x181A: pvvxFrame(3333, 3)}})
	ad = next(t, sub)
	if f, _ := Identify(ad); f.Values[0].Value != 33.33 {
		t.Fatalf("after re-adding: %v", f)
	}

	// A thermometer nobody names is logged once; a device of no known
	// format is not logged.
	other := "A4:C1:38:AA:BB:CC"
	bus.AddDevice("hci0", other, blueztest.Data{Service: map[uint16][]byte{0xFCD2: {0x40, 0x02, 0xCA, 0x09}}})
	bus.Advertise("hci0", other, blueztest.Data{Service: map[uint16][]byte{0xFCD2: {0x40, 0x02, 0xCB, 0x09}}})
	bus.AddDevice("hci0", "11:22:33:44:55:66", blueztest.Data{Manufacturer: map[uint16][]byte{0x004C: {2, 0x15}}})
	eventually(t, "the unnamed device logged", func() bool { return r.log.count("heard a Bluetooth device that no sensor names") > 0 })
	bus.Advertise("hci0", other, blueztest.Data{Service: map[uint16][]byte{0xFCD2: {0x40, 0x02, 0xCC, 0x09}}})
	// A survey subscription sees every device.
	all := r.s.Subscribe("")
	bus.Advertise("hci0", other, blueztest.Data{Service: map[uint16][]byte{0xFCD2: {0x40, 0x02, 0xCD, 0x09}}})
	if ad := next(t, all); ad.Address != other {
		t.Fatalf("survey got %+v", ad)
	}
	r.s.Unsubscribe(all)
	log := r.log.String()
	if n := strings.Count(log, "heard a Bluetooth device that no sensor names"); n != 1 || !strings.Contains(log, "address="+other) || !strings.Contains(log, `format="BTHome v2"`) {
		t.Errorf("unnamed devices logged %d times:\n%s", n, log)
	}
	if strings.Contains(log, "11:22:33:44:55:66") {
		t.Errorf("a device of no known format was logged:\n%s", log)
	}
}

func TestScannerBlueZRestarts(t *testing.T) {
	bus := blueztest.Start(t)
	// No BlueZ at all when the scan starts: said once, then waited for.
	r := runScanner(t, bus, "hci0")
	sub := r.s.Subscribe(thermo)
	eventually(t, "no BlueZ logged", func() bool { return r.log.count("BlueZ is not running") == 1 })

	// BlueZ without the adapter.
	bus.StartBlueZ()
	eventually(t, "no adapter logged", func() bool { return r.log.count("no Bluetooth adapter hci0 in BlueZ") == 1 })
	bus.AddAdapter("hci1")
	bus.AddAdapter("hci0")
	eventually(t, "discovery", func() bool { on, _ := bus.Discovering("hci0"); return on })
	if on, _ := bus.Discovering("hci1"); on {
		t.Error("discovering on hci1 too")
	}
	bus.AddDevice("hci0", thermo, blueztest.Data{Service: map[uint16][]byte{0x181A: pvvxFrame(1000, 1)}})
	if f, _ := Identify(next(t, sub)); f.Values[0].Value != 10 {
		t.Fatal(f)
	}
	// A device of another adapter is not ours.
	bus.AddDevice("hci1", thermo, blueztest.Data{Service: map[uint16][]byte{0x181A: pvvxFrame(1500, 1)}})
	none(t, sub, 300*time.Millisecond)

	// bluetoothd restarts: the new one has to be told to discover again.
	for i := range 2 {
		bus.StopBlueZ()
		eventually(t, "BlueZ gone logged", func() bool { return r.log.count("BlueZ left the system bus") == i+1 })
		bus.StartBlueZ()
		bus.AddAdapter("hci0")
		eventually(t, "discovery after the restart", func() bool { on, _ := bus.Discovering("hci0"); return on })
		bus.AddDevice("hci0", thermo, blueztest.Data{Service: map[uint16][]byte{0x181A: pvvxFrame(uint16(2000+i), 2)}})
		if f, _ := Identify(next(t, sub)); f.Values[0].Value != float64(2000+i)/100 {
			t.Fatal(f)
		}
	}
	if n := r.log.count("BlueZ is not running"); n != 1 {
		t.Errorf("no BlueZ logged %d times", n)
	}

	// The adapter removed and plugged in again.
	bus.RemoveAdapter("hci0")
	eventually(t, "adapter removed logged", func() bool { return r.log.count("Bluetooth adapter hci0 was removed") == 1 })
	bus.AddAdapter("hci0")
	eventually(t, "discovery again", func() bool {
		return bus.Calls("hci0", "StartDiscovery") == 1 && r.log.count("scanning for Bluetooth LE") == 4
	})
}

func TestScannerPowerCycle(t *testing.T) {
	bus := blueztest.Start(t)
	bus.StartBlueZ()
	bus.AddAdapter("hci0")
	bus.SetPowered("hci0", false)
	r := runScanner(t, bus, "hci0")
	sub := r.s.Subscribe(thermo)
	eventually(t, "powered off logged", func() bool { return r.log.count("is powered off") == 1 })
	if n := bus.Calls("hci0", "StartDiscovery"); n != 0 {
		t.Fatalf("StartDiscovery on a powered-off adapter: %d", n)
	}
	for i := 1; i <= 2; i++ {
		bus.SetPowered("hci0", true)
		eventually(t, "discovery after power on", func() bool { return bus.Calls("hci0", "StartDiscovery") == i })
		bus.AddDevice("hci0", thermo, blueztest.Data{Service: map[uint16][]byte{0x181A: pvvxFrame(uint16(i), byte(i))}})
		next(t, sub)
		bus.RemoveDevice("hci0", thermo)
		bus.SetPowered("hci0", false)
		eventually(t, "power off logged", func() bool { return r.log.count("is powered off") == i+1 })
	}
}

func TestScannerNoBus(t *testing.T) {
	t.Setenv("DBUS_SYSTEM_BUS_ADDRESS", "unix:path="+t.TempDir()+"/nobus")
	err := NewScanner("hci0", nil).Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "cannot connect to the D-Bus system bus") {
		t.Fatalf("%v", err)
	}
}

func TestShortUUID(t *testing.T) {
	for u, want := range map[string]int{
		"0000fcd2-0000-1000-8000-00805f9b34fb": 0xFCD2,
		"0000181A-0000-1000-8000-00805F9B34FB": 0x181A,
		"0001fcd2-0000-1000-8000-00805f9b34fb": -1,
		"0000fcd2-0000-1000-8000-00805f9b34fc": -1,
		"0000fcz2-0000-1000-8000-00805f9b34fb": -1,
		"fcd2":                                 -1,
	} {
		id, ok := shortUUID(u)
		if (want < 0) == ok || (ok && int(id) != want) {
			t.Errorf("%s: %x %v", u, id, ok)
		}
	}
}
