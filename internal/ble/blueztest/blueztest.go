// Package blueztest runs a stand-in for bluetoothd for tests: a private
// dbus-daemon on a socket of the test's own, and Debian's python3-dbusmock
// with its bluez5 template owning org.bluez on it, driven to advertise
// changing data. Tests point gatewayd at it with DBUS_SYSTEM_BUS_ADDRESS.
//
// Three quirks of dbusmock 0.28.7 are worked around here, not in gatewayd:
// its AddDevice gives ServiceData and ManufacturerData the wrong D-Bus
// types (arrays, not a{sv} and a{qv}), so devices are added with
// Mock.AddObject and an InterfacesAdded emitted by hand, and their data
// changed with org.freedesktop.DBus.Properties.Set; its StartDiscovery
// fails unless SetDiscoveryFilter was called first (gatewayd always calls
// it first); and Mock.UpdateProperties cannot take a dictionary value.
package blueztest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
)

// RequireEnv names the variable that turns a missing dbus-daemon or
// dbusmock into a failure instead of a skip: CI sets it.
const RequireEnv = "GATEWAYD_REQUIRE_DBUSMOCK"

// Bus is a private system bus with a mock BlueZ on it.
type Bus struct {
	t      testing.TB
	dir    string
	Addr   string // for DBUS_SYSTEM_BUS_ADDRESS
	python string
	daemon *exec.Cmd
	conn   *dbus.Conn

	mu   sync.Mutex
	mock *exec.Cmd
	log  *bytes.Buffer
}

// python finds a python3 that has dbusmock: Debian's, also where another
// python3 comes first in PATH.
func python() (string, error) {
	var tried []string
	for _, p := range []string{"/usr/bin/python3", "python3"} {
		path, err := exec.LookPath(p)
		if err != nil {
			continue
		}
		tried = append(tried, path)
		if exec.Command(path, "-c", "import dbusmock").Run() == nil {
			return path, nil
		}
	}
	return "", fmt.Errorf("no python3 with dbusmock (tried %v): apt-get install python3-dbusmock", tried)
}

// Start starts the bus (not BlueZ: see StartBlueZ). It skips the test when
// dbus-daemon or dbusmock is missing, unless RequireEnv is set.
func Start(t testing.TB) *Bus {
	t.Helper()
	missing := func(err error) {
		t.Helper()
		if os.Getenv(RequireEnv) != "" {
			t.Fatalf("%v (%s is set: this must run)", err, RequireEnv)
		}
		t.Skip(err)
	}
	daemon, err := exec.LookPath("dbus-daemon")
	if err != nil {
		missing(fmt.Errorf("dbus-daemon not found: apt-get install dbus"))
	}
	py, err := python()
	if err != nil {
		missing(err)
	}
	dir, err := os.MkdirTemp("", "gatewayd-bus-") // short: a socket path has 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "bus")
	conf := filepath.Join(dir, "bus.conf")
	// A system-like bus that lets everyone talk to everyone: the policy of
	// the real bus is not what is tested here.
	if err := os.WriteFile(conf, []byte(`<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=`+sock+`</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
    <allow own="*"/>
  </policy>
</busconfig>
`), 0o600); err != nil {
		t.Fatal(err)
	}
	b := &Bus{t: t, dir: dir, Addr: "unix:path=" + sock, python: py}
	b.daemon = exec.Command(daemon, "--config-file="+conf, "--nofork", "--nopidfile")
	// A test binary killed at its timeout runs no cleanup: its children go
	// with it.
	b.daemon.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var derr bytes.Buffer
	b.daemon.Stderr = &derr
	if err := b.daemon.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		b.stopBlueZ(false)
		if b.conn != nil {
			b.conn.Close()
		}
		b.daemon.Process.Signal(syscall.SIGTERM)
		b.daemon.Wait()
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		b.conn, err = dbus.Connect(b.Addr)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("dbus-daemon did not come up: %v; its stderr: %s", err, derr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return b
}

// StartBlueZ starts dbusmock's bluez5 template and waits until it owns
// org.bluez. A second StartBlueZ after StopBlueZ is bluetoothd restarting:
// the new one knows nothing of the old one's adapters and devices.
func (b *Bus) StartBlueZ() {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.mock != nil {
		b.t.Fatal("BlueZ mock already running")
	}
	cmd := exec.Command(b.python, "-m", "dbusmock", "--template", "bluez5")
	cmd.Env = append(os.Environ(), "DBUS_SYSTEM_BUS_ADDRESS="+b.Addr)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	b.log = &bytes.Buffer{}
	cmd.Stdout, cmd.Stderr = b.log, b.log
	if err := cmd.Start(); err != nil {
		b.t.Fatal(err)
	}
	b.mock = cmd
	b.waitOwner(true)
}

// StopBlueZ ends the mock (SIGTERM) and waits until org.bluez has no owner,
// as when bluetoothd stops.
func (b *Bus) StopBlueZ() { b.stopBlueZ(true) }

func (b *Bus) stopBlueZ(wait bool) {
	b.mu.Lock()
	cmd := b.mock
	b.mock = nil
	b.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		<-done
	}
	if wait {
		b.waitOwner(false)
	}
}

// MockLog is what the mock printed (its method calls among it).
func (b *Bus) MockLog() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.log == nil {
		return ""
	}
	return b.log.String()
}

func (b *Bus) waitOwner(want bool) {
	b.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var has bool
		err := b.conn.BusObject().Call("org.freedesktop.DBus.NameHasOwner", 0, "org.bluez").Store(&has)
		if err == nil && has == want {
			return
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("org.bluez owned: %v (%v), want %v; mock output: %s", has, err, want, b.log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (b *Bus) call(path, method string, out any, args ...any) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := b.conn.Object("org.bluez", dbus.ObjectPath(path)).CallWithContext(ctx, method, 0, args...)
	if c.Err != nil {
		b.t.Fatalf("%s %s: %v", path, method, c.Err)
	}
	if out != nil {
		if err := c.Store(out); err != nil {
			b.t.Fatal(err)
		}
	}
}

// AddAdapter adds an adapter ("hci0"), powered.
func (b *Bus) AddAdapter(name string) {
	b.t.Helper()
	b.call("/", "org.bluez.Mock.AddAdapter", nil, name, "gatewayd test")
}

// RemoveAdapter removes an adapter (its devices stay, as the template does).
func (b *Bus) RemoveAdapter(name string) {
	b.t.Helper()
	b.call("/", "org.bluez.Mock.RemoveAdapter", nil, name)
}

// SetPowered powers the adapter on or off (a PropertiesChanged follows).
func (b *Bus) SetPowered(adapter string, on bool) {
	b.t.Helper()
	b.call("/org/bluez/"+adapter, "org.freedesktop.DBus.Properties.Set", nil, "org.bluez.Adapter1", "Powered", dbus.MakeVariant(on))
}

// Discovering reports whether the adapter's Discovering property is true
// and the last discovery filter set on it.
func (b *Bus) Discovering(adapter string) (bool, map[string]dbus.Variant) {
	b.t.Helper()
	var props map[string]dbus.Variant
	b.call("/org/bluez/"+adapter, "org.freedesktop.DBus.Properties.GetAll", &props, "org.bluez.Adapter1")
	on, _ := props["Discovering"].Value().(bool)
	filter, _ := props["DiscoveryFilter"].Value().(map[string]dbus.Variant)
	return on, filter
}

// Data is what an advertisement carries: service data by 16-bit UUID and
// manufacturer data by company id.
type Data struct {
	Service      map[uint16][]byte
	Manufacturer map[uint16][]byte
}

func uuid16(id uint16) string { return fmt.Sprintf("0000%04x-0000-1000-8000-00805f9b34fb", id) }

func (d Data) serviceData() map[string]dbus.Variant {
	m := map[string]dbus.Variant{}
	for id, v := range d.Service {
		m[uuid16(id)] = dbus.MakeVariant(v)
	}
	return m
}

func (d Data) manufacturerData() map[uint16]dbus.Variant {
	m := map[uint16]dbus.Variant{}
	for id, v := range d.Manufacturer {
		m[id] = dbus.MakeVariant(v)
	}
	return m
}

// DevicePath is BlueZ's object path of a device.
func DevicePath(adapter, address string) string {
	return "/org/bluez/" + adapter + "/dev_" + strings.ReplaceAll(strings.ToUpper(address), ":", "_")
}

// AddDevice adds a device object carrying data, as BlueZ does when it
// hears a new device, and announces it (InterfacesAdded). It returns the
// object's path.
func (b *Bus) AddDevice(adapter, address string, data Data) string {
	b.t.Helper()
	path := DevicePath(adapter, address)
	props := map[string]dbus.Variant{
		"Address":          dbus.MakeVariant(strings.ToUpper(address)),
		"AddressType":      dbus.MakeVariant("public"),
		"Alias":            dbus.MakeVariant(strings.ReplaceAll(address, ":", "-")),
		"Adapter":          dbus.MakeVariant(dbus.ObjectPath("/org/bluez/" + adapter)),
		"Paired":           dbus.MakeVariant(false),
		"Connected":        dbus.MakeVariant(false),
		"Trusted":          dbus.MakeVariant(false),
		"Blocked":          dbus.MakeVariant(false),
		"RSSI":             dbus.MakeVariant(int16(-60)),
		"ServiceData":      dbus.MakeVariant(data.serviceData()),
		"ManufacturerData": dbus.MakeVariant(data.manufacturerData()),
	}
	type method struct{ Name, In, Out, Code string }
	b.call("/", "org.freedesktop.DBus.Mock.AddObject", nil, path, "org.bluez.Device1", props, []method{})
	b.call("/", "org.freedesktop.DBus.Mock.EmitSignal", nil, "org.freedesktop.DBus.ObjectManager", "InterfacesAdded", "oa{sa{sv}}",
		[]dbus.Variant{dbus.MakeVariant(dbus.ObjectPath(path)), dbus.MakeVariant(map[string]map[string]dbus.Variant{"org.bluez.Device1": props})})
	return path
}

// Advertise is a new advertisement of a known device: its ServiceData
// and/or ManufacturerData set (each a PropertiesChanged), as BlueZ does for
// every advertisement when discovery has DuplicateData on.
func (b *Bus) Advertise(adapter, address string, data Data) {
	b.t.Helper()
	path := DevicePath(adapter, address)
	if data.Service != nil {
		b.call(path, "org.freedesktop.DBus.Properties.Set", nil, "org.bluez.Device1", "ServiceData", dbus.MakeVariant(data.serviceData()))
	}
	if data.Manufacturer != nil {
		b.call(path, "org.freedesktop.DBus.Properties.Set", nil, "org.bluez.Device1", "ManufacturerData", dbus.MakeVariant(data.manufacturerData()))
	}
}

// SetRSSI changes a device's RSSI only (no advertisement data).
func (b *Bus) SetRSSI(adapter, address string, rssi int16) {
	b.t.Helper()
	b.call(DevicePath(adapter, address), "org.freedesktop.DBus.Properties.Set", nil, "org.bluez.Device1", "RSSI", dbus.MakeVariant(rssi))
}

// RemoveDevice removes a device (InterfacesRemoved), as BlueZ does with a
// device it has not heard for a while.
func (b *Bus) RemoveDevice(adapter, address string) {
	b.t.Helper()
	b.call("/org/bluez/"+adapter, "org.bluez.Adapter1.RemoveDevice", nil, dbus.ObjectPath(DevicePath(adapter, address)))
}

// Calls counts the calls of a method of the adapter's object since BlueZ
// started (StartDiscovery, SetDiscoveryFilter).
func (b *Bus) Calls(adapter, method string) int {
	b.t.Helper()
	var calls []struct {
		At   uint64
		Args []dbus.Variant
	}
	b.call("/org/bluez/"+adapter, "org.freedesktop.DBus.Mock.GetMethodCalls", &calls, method)
	return len(calls)
}
