package main

import (
	"bufio"
	"crypto/aes"
	bin "encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/internal/ble/blueztest"
	"github.com/gatewayd/gatewayd/internal/testbroker"
	"github.com/pion/dtls/v3/pkg/crypto/ccm"
)

// End to end with Bluetooth: the real gatewayd binary against a private
// dbus-daemon on which dbusmock's bluez5 template stands in for bluetoothd
// (internal/ble/blueztest), publishing to a real broker over TCP. It skips
// when dbus-daemon or python3-dbusmock is missing, unless
// GATEWAYD_REQUIRE_DBUSMOCK is set (CI sets it). Nothing here touches a
// real adapter.

const (
	pvvxAddr   = "A4:C1:38:00:00:01"
	shellyAddr = "54:48:E6:8F:80:A5"
	ruuviAddr  = "F1:22:33:44:55:66"
	bindkey    = "231d39c1d7cc1ab1aee224cd096db932" // bthome.io's example key
)

// pvvxFrame is pvvx's custom format: temperature in 0.01 °C, a counter.
func pvvxFrame(temp int16, counter byte) blueztest.Data {
	b := []byte{0x01, 0x00, 0x00, 0x38, 0xC1, 0xA4, 0, 0, 0x8B, 0x10, 0xA8, 0x0B, 0x57, counter, 0x04}
	bin.LittleEndian.PutUint16(b[6:], uint16(temp))
	return blueztest.Data{Service: map[uint16][]byte{0x181A: b}}
}

// bthomeSealed is an encrypted BTHome v2 frame of the Shelly's address.
func bthomeSealed(t *testing.T, counter uint32, plain []byte) []byte {
	t.Helper()
	key, _ := hex.DecodeString(bindkey)
	mac, _ := hex.DecodeString(strings.ReplaceAll(shellyAddr, ":", ""))
	block, _ := aes.NewCipher(key)
	aead, err := ccm.NewCCM(block, 4, 13)
	if err != nil {
		t.Fatal(err)
	}
	var c [4]byte
	bin.LittleEndian.PutUint32(c[:], counter)
	nonce := append(append(mac, 0xD2, 0xFC, 0x41), c[:]...)
	s := aead.Seal(nil, nonce, plain, nil)
	out := append([]byte{0x41}, s[:len(s)-4]...)
	out = append(out, c[:]...)
	return append(out, s[len(s)-4:]...)
}

func bthome(b []byte) blueztest.Data { return blueztest.Data{Service: map[uint16][]byte{0xFCD2: b}} }

// process is a gatewayd process whose stderr is kept.
type process struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	logs []string
	done chan struct{}
}

func startDaemon(t *testing.T, env []string, stdout io.Writer, args ...string) *process {
	t.Helper()
	d := &process{cmd: exec.Command(binary, args...), done: make(chan struct{})}
	d.cmd.Env = append(os.Environ(), env...)
	d.cmd.Stdout = stdout
	stderr, err := d.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(d.done)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			d.mu.Lock()
			d.logs = append(d.logs, sc.Text())
			d.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		d.cmd.Process.Kill()
		<-d.done
		d.cmd.Wait()
		if t.Failed() {
			t.Logf("gatewayd's log:\n%s", d.log())
		}
	})
	return d
}

func (d *process) log() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return strings.Join(d.logs, "\n")
}

func (d *process) count(sub string) int { return strings.Count(d.log(), sub) }

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type payload struct {
	Sensor   string  `json:"sensor"`
	Quantity string  `json:"quantity"`
	Value    float64 `json:"value"`
	Unit     string  `json:"unit"`
	Time     string  `json:"time"`
	Seq      uint64  `json:"seq"`
}

// published returns the readings the broker received on a topic.
func published(t *testing.T, b *testbroker.Broker, topic string) []payload {
	t.Helper()
	var out []payload
	for _, m := range b.Messages(func(tp string) bool { return tp == topic }) {
		var p payload
		if err := json.Unmarshal(m.Payload, &p); err != nil {
			t.Fatalf("%s: %q: %v", topic, m.Payload, err)
		}
		out = append(out, p)
	}
	return out
}

// waitValue waits until a reading of value v arrives on topic.
func waitValue(t *testing.T, b *testbroker.Broker, topic string, v float64) payload {
	t.Helper()
	var got payload
	waitFor(t, fmt.Sprintf("%s = %v", topic, v), func() bool {
		for _, p := range published(t, b, topic) {
			if p.Value == v {
				got = p
				return true
			}
		}
		return false
	})
	return got
}

func TestBLEEndToEnd(t *testing.T) {
	bus := blueztest.Start(t)
	bus.StartBlueZ()
	bus.AddAdapter("hci0")
	// Known to BlueZ before gatewayd starts: its data (11.11 °C) is of
	// unknown age and must never be published.
	bus.AddDevice("hci0", pvvxAddr, pvvxFrame(1111, 1))

	broker := testbroker.Start(t, testbroker.Options{})
	metricsAddr := freePort(t)
	cfg := writeConfig(t, fmt.Sprintf(`gateway: {id: gw}
broker: {urls: [%q]}
metrics: {listen: %q}
sensors:
  - {name: pvvx, type: ble, address: %q}
  - {name: shelly, type: ble, address: %q, bindkey: %q}
  - {name: ruuvi, type: ble, address: %q, stale_after: 1h}
`, broker.URL(), metricsAddr, strings.ToLower(pvvxAddr), shellyAddr, bindkey, ruuviAddr))
	d := startDaemon(t, []string{"DBUS_SYSTEM_BUS_ADDRESS=" + bus.Addr}, nil, "-config", cfg)
	waitFor(t, "the scan", func() bool { return d.count("scanning for Bluetooth LE advertisements") == 1 })
	on, filter := bus.Discovering("hci0")
	if !on || filter["Transport"].Value() != "le" || filter["DuplicateData"].Value() != true {
		t.Fatalf("discovering %v with filter %v", on, filter)
	}
	// One scan serves the three sensors.
	if n := bus.Calls("hci0", "StartDiscovery"); n != 1 {
		t.Errorf("StartDiscovery called %d times", n)
	}

	// A new advertisement of the cached device is published, with the
	// time it was heard; changing data follows.
	before := time.Now()
	bus.Advertise("hci0", pvvxAddr, pvvxFrame(2222, 2))
	p := waitValue(t, broker, "gatewayd/gw/pvvx/temperature", 22.22)
	heard, err := time.Parse(time.RFC3339Nano, p.Time)
	if err != nil || heard.Before(before.Add(-time.Second)) || time.Since(heard) > 30*time.Second || p.Unit != "°C" {
		t.Errorf("reading %+v (time %v, err %v), advertised after %v", p, heard, err, before)
	}
	waitValue(t, broker, "gatewayd/gw/pvvx/humidity", 42.35)
	if p := waitValue(t, broker, "gatewayd/gw/pvvx/battery", 87); p.Unit != "%" {
		t.Errorf("battery unit %q", p.Unit)
	}
	bus.Advertise("hci0", pvvxAddr, pvvxFrame(2300, 3))
	waitValue(t, broker, "gatewayd/gw/pvvx/temperature", 23)

	// Encrypted BTHome with the sensor's bindkey.
	bus.AddDevice("hci0", shellyAddr, bthome(bthomeSealed(t, 1000, []byte{0x01, 0x50, 0x02, 0xCA, 0x09, 0x03, 0xBF, 0x13})))
	waitValue(t, broker, "gatewayd/gw/shelly/temperature", 25.06)
	waitValue(t, broker, "gatewayd/gw/shelly/humidity", 50.55)
	// A forged frame (bad MIC) is rejected and counted; the next good one
	// is published.
	forged := bthomeSealed(t, 1001, []byte{0x02, 0x00, 0x30})
	forged[len(forged)-2] ^= 0x40
	bus.Advertise("hci0", shellyAddr, bthome(forged))
	errors := regexp.MustCompile(`gatewayd_sensor_read_errors_total\{sensor="shelly"\} 1\b`)
	waitFor(t, "the bad MIC counted", func() bool { return errors.MatchString(get(t, "http://"+metricsAddr+"/metrics")) })
	bus.Advertise("hci0", shellyAddr, bthome(bthomeSealed(t, 1002, []byte{0x02, 0x00, 0x0A})))
	waitValue(t, broker, "gatewayd/gw/shelly/temperature", 25.6)
	if n := len(published(t, broker, "gatewayd/gw/shelly/temperature")); n != 2 {
		t.Errorf("shelly temperature published %d times, want 2 (the forged frame must not be)", n)
	}

	// RuuviTag, manufacturer data: Ruuvi's documented valid frame.
	ruuvi, _ := hex.DecodeString("0512FC5394C37C0004FFFC040CAC364200CDCBB8334C884F")
	bus.AddDevice("hci0", ruuviAddr, blueztest.Data{Manufacturer: map[uint16][]byte{0x0499: ruuvi}})
	waitValue(t, broker, "gatewayd/gw/ruuvi/temperature", 24.3)
	waitValue(t, broker, "gatewayd/gw/ruuvi/humidity", 53.49)
	if p := waitValue(t, broker, "gatewayd/gw/ruuvi/pressure", 1000.44); p.Unit != "hPa" {
		t.Errorf("pressure unit %q", p.Unit)
	}

	// BlueZ forgets a silent device and announces it again when heard.
	bus.RemoveDevice("hci0", pvvxAddr)
	bus.AddDevice("hci0", pvvxAddr, pvvxFrame(2400, 4))
	waitValue(t, broker, "gatewayd/gw/pvvx/temperature", 24)

	// bluetoothd restarts: gatewayd says so and scans again.
	bus.StopBlueZ()
	waitFor(t, "BlueZ gone in the log", func() bool { return d.count("BlueZ left the system bus") == 1 })
	bus.StartBlueZ()
	bus.AddAdapter("hci0")
	waitFor(t, "the scan again", func() bool { return d.count("scanning for Bluetooth LE advertisements") == 2 })
	bus.AddDevice("hci0", pvvxAddr, pvvxFrame(2500, 5))
	waitValue(t, broker, "gatewayd/gw/pvvx/temperature", 25)

	// A thermometer no sensor names is logged once.
	bus.AddDevice("hci0", "A4:C1:38:99:99:99", bthome([]byte{0x40, 0x02, 0xC4, 0x09}))
	bus.Advertise("hci0", "A4:C1:38:99:99:99", bthome([]byte{0x40, 0x02, 0xC5, 0x09}))
	waitFor(t, "the unnamed device logged", func() bool { return d.count("heard a Bluetooth device that no sensor names") == 1 })

	temps := published(t, broker, "gatewayd/gw/pvvx/temperature")
	for i, p := range temps {
		if p.Value == 11.11 {
			t.Errorf("the cached value was published: %+v", p)
		}
		if p.Seq != uint64(i+1) {
			t.Errorf("seq %d at %d: %+v", p.Seq, i, temps)
		}
	}
	if len(temps) != 4 {
		t.Errorf("pvvx temperatures %+v, want 22.22, 23, 24, 25 and no other", temps)
	}

	d.cmd.Process.Signal(syscall.SIGTERM)
	<-d.done
	if err := d.cmd.Wait(); err != nil {
		t.Errorf("after SIGTERM: %v", err)
	}
}

// gatewayd -once with a ble sensor: it waits for the sensor's first frame,
// prints it, and lists on stderr every device it heard meanwhile, so that
// an operator finds the addresses to configure.
func TestBLEOnce(t *testing.T) {
	bus := blueztest.Start(t)
	bus.StartBlueZ()
	bus.AddAdapter("hci0")
	cfg := writeConfig(t, fmt.Sprintf(`gateway: {id: gw}
sensors:
  - {name: pvvx, type: ble, address: %q}
`, pvvxAddr))
	stdout := &strings.Builder{} // written by exec's copier, read after Wait
	d := startDaemon(t, []string{"DBUS_SYSTEM_BUS_ADDRESS=" + bus.Addr}, stdout, "-once", "-config", cfg)
	waitFor(t, "both scans", func() bool { return d.count("scanning for Bluetooth LE advertisements") == 2 })
	bus.AddDevice("hci0", pvvxAddr, pvvxFrame(2222, 2))
	bus.AddDevice("hci0", "A4:C1:38:99:99:99", bthome([]byte{0x40, 0x02, 0xC4, 0x09, 0x01, 0x5A}))
	bus.AddDevice("hci0", "11:22:33:44:55:66", blueztest.Data{Manufacturer: map[uint16][]byte{0x004C: {2, 0x15}}})
	<-d.done
	err := d.cmd.Wait()
	if err != nil {
		t.Fatalf("gatewayd -once: %v", err)
	}
	if want := regexp.MustCompile(`^gatewayd/gw/pvvx/temperature \{"sensor":"pvvx","quantity":"temperature","value":22\.22,`); !want.MatchString(stdout.String()) {
		t.Errorf("stdout %q", stdout.String())
	}
	log := d.log()
	for _, want := range []string{
		"Bluetooth LE devices heard on hci0 in ",
		"  A4:C1:38:00:00:01  pvvx custom temperature=22.22 humidity=42.35 battery=87  [sensor pvvx]",
		"  A4:C1:38:99:99:99  BTHome v2 temperature=25 battery=90  [no sensor]",
		"  and 1 other Bluetooth devices in no format gatewayd knows",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("no %q in the list:\n%s", want, log)
		}
	}
}
