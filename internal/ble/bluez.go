package ble

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/godbus/dbus/v5"
)

// Listening through BlueZ (bluetoothd) on the D-Bus system bus, as its
// documents describe it (doc/org.bluez.Adapter.rst, org.bluez.Device.rst):
//
//   - Discovery is per D-Bus client: SetDiscoveryFilter with Transport "le"
//     and DuplicateData true (else BlueZ reports an advertisement only when
//     its data changes, and a thermometer whose value does not change
//     would go silent), then StartDiscovery. BlueZ stops a client's
//     discovery when the client leaves the bus.
//   - Each advertisement heard updates the device's object: a new device
//     appears with InterfacesAdded (its data just heard), a known one sends
//     PropertiesChanged with ServiceData (a{sv}, by 128-bit UUID) and
//     ManufacturerData (a{qv}, by company id), and BlueZ removes a device
//     not heard for about 30 s (InterfacesRemoved), to add it again when it
//     is heard.
//   - A device BlueZ knew before gatewayd started is in GetManagedObjects
//     with the data it last sent, of unknown age: that is never published;
//     its next PropertiesChanged is.
//   - When bluetoothd restarts (org.bluez changes owner) or the adapter is
//     powered off and on, discovery is gone and is started again.

const (
	bluezName        = "org.bluez"
	adapterInterface = "org.bluez.Adapter1"
	deviceInterface  = "org.bluez.Device1"
	objectManager    = "org.freedesktop.DBus.ObjectManager"
	properties       = "org.freedesktop.DBus.Properties"
	busName          = "org.freedesktop.DBus"
)

// callTimeout bounds every call to BlueZ: a bluetoothd that hangs must not
// hang the scan.
const callTimeout = 10 * time.Second

// subscriberQueue is how many advertisements may wait for one subscriber.
const subscriberQueue = 64

// maxHeard bounds the memory of devices logged as named by no sensor.
const maxHeard = 1000

// signalQueue is how many D-Bus signals may wait: a busy place sends
// hundreds a second (every device's RSSI, with DuplicateData every
// advertisement). Past it signals are dropped and counted, never queued
// without bound.
const signalQueue = 4096

// Scanner is one scan of one adapter, shared by every sensor that listens
// on it (sensors.Join keeps one per adapter). Its Run is a
// sensors.Receiver's: it returns early only when the system bus is gone
// or BlueZ refuses discovery, and is started again after a backoff.
type Scanner struct {
	adapter string
	path    dbus.ObjectPath
	log     *slog.Logger

	mu    sync.Mutex
	subs  map[*Subscription]struct{}
	heard map[string]bool // devices logged as named by no sensor

	dropped atomic.Uint64 // advertisements a subscriber had no room for
}

// Subscription receives the advertisements of one device (or of every
// device, for a survey) as they are heard.
type Subscription struct {
	address string // "" for every device
	C       <-chan *Advertisement
	c       chan *Advertisement
}

// NewScanner returns a scanner of the adapter ("hci0"); it starts in Run.
func NewScanner(adapter string, log *slog.Logger) *Scanner {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Scanner{
		adapter: adapter,
		path:    dbus.ObjectPath("/org/bluez/" + adapter),
		log:     log,
		subs:    map[*Subscription]struct{}{},
		heard:   map[string]bool{},
	}
}

// Subscribe returns a subscription to the advertisements of the device at
// address ("A4:C1:38:12:34:56"), or of every device when address is "".
// The advertisements are shared: read them, never change them.
func (s *Scanner) Subscribe(address string) *Subscription {
	c := make(chan *Advertisement, subscriberQueue)
	sub := &Subscription{address: strings.ToUpper(address), C: c, c: c}
	s.mu.Lock()
	s.subs[sub] = struct{}{}
	s.mu.Unlock()
	return sub
}

// Unsubscribe ends a subscription; its channel is not closed.
func (s *Scanner) Unsubscribe(sub *Subscription) {
	s.mu.Lock()
	delete(s.subs, sub)
	s.mu.Unlock()
}

// deliver hands an advertisement to its subscribers, or logs, once, a
// thermometer that no subscriber takes.
func (s *Scanner) deliver(ad *Advertisement) {
	s.mu.Lock()
	defer s.mu.Unlock()
	named := false
	for sub := range s.subs {
		if sub.address != "" && sub.address != ad.Address {
			continue
		}
		named = true // a survey lists what it hears: no log line needed
		select {
		case sub.c <- ad:
		default:
			if s.dropped.Add(1) == 1 {
				s.log.Warn("a Bluetooth sensor does not keep up; advertisements dropped", "address", ad.Address)
			}
		}
	}
	if !named {
		s.unnamed(ad)
	}
}

// unnamed logs, once per device, a device that sends a format gatewayd
// knows but that no sensor names, so that an operator can add it. s.mu is
// held.
func (s *Scanner) unnamed(ad *Advertisement) {
	if s.heard[ad.Address] || len(s.heard) > maxHeard {
		return
	}
	f, err := Identify(ad)
	if errors.Is(err, ErrUnknown) {
		return // not a thermometer: a phone, a watch, a beacon
	}
	if len(s.heard) == maxHeard {
		s.heard[""] = true
		s.log.Info("heard more Bluetooth devices that no sensor names; no longer logging them", "logged", maxHeard)
		return
	}
	s.heard[ad.Address] = true
	s.log.Info("heard a Bluetooth device that no sensor names", "address", ad.Address, "adapter", s.adapter, "format", f.Format, "frame", f.String())
}

// scan is the state of one Run: what BlueZ has, as far as it was told.
type scan struct {
	conn     *dbus.Conn
	owner    string // the unique name owning org.bluez, "" when none
	adapter  bool   // BlueZ has the adapter
	powered  bool
	scanning bool                       // our discovery is on
	devices  map[dbus.ObjectPath]string // device objects of the adapter: their address
	// The first absence of each is logged at warn, once until it changes.
	saidNoBlueZ, saidNoAdapter, saidPoweredOff bool
	retry                                      *time.Timer // a StartDiscovery to try again
}

// Run listens until ctx ends. It connects to the system bus
// (DBUS_SYSTEM_BUS_ADDRESS, else /run/dbus/system_bus_socket), waits for
// BlueZ, the adapter and its power as long as they are missing, saying so
// once in the log, and scans while they are there. It returns an error
// when the system bus cannot be reached or is lost, or BlueZ refuses the
// discovery: the caller starts it again after a backoff.
func (s *Scanner) Run(ctx context.Context) error {
	if ctx.Err() != nil {
		return nil
	}
	q := &signalSink{ch: make(chan *dbus.Signal, signalQueue)}
	conn, err := dbus.ConnectSystemBus(dbus.WithSignalHandler(q), dbus.WithContext(ctx))
	if err != nil {
		return fmt.Errorf("cannot connect to the D-Bus system bus (is dbus running? DBUS_SYSTEM_BUS_ADDRESS may name another): %w", err)
	}
	defer conn.Close()
	for _, m := range [][]dbus.MatchOption{
		{dbus.WithMatchSender(busName), dbus.WithMatchInterface(busName), dbus.WithMatchMember("NameOwnerChanged"), dbus.WithMatchArg(0, bluezName)},
		{dbus.WithMatchSender(bluezName), dbus.WithMatchInterface(objectManager)},
		{dbus.WithMatchSender(bluezName), dbus.WithMatchInterface(properties), dbus.WithMatchMember("PropertiesChanged"), dbus.WithMatchPathNamespace(s.path)},
	} {
		if err := conn.AddMatchSignalContext(ctx, m...); err != nil {
			return fmt.Errorf("subscribing to BlueZ's signals on the system bus: %w", err)
		}
	}
	st := &scan{conn: conn, devices: map[dbus.ObjectPath]string{}, retry: time.NewTimer(time.Hour)}
	st.retry.Stop()
	defer st.retry.Stop()
	// The signals are subscribed first, so that nothing BlueZ does between
	// the snapshot and the signals is missed.
	if err := s.sync(ctx, st); err != nil {
		return err
	}
	dropLogged := uint64(0)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-conn.Context().Done():
			if ctx.Err() != nil {
				return nil
			}
			return errors.New("lost the connection to the D-Bus system bus")
		case <-st.retry.C:
			if err := s.startDiscovery(ctx, st); err != nil {
				return err
			}
		case sig := <-q.ch:
			if err := s.handle(ctx, st, sig); err != nil {
				return err
			}
			if d := q.dropped.Load(); d > dropLogged && (dropLogged == 0 || d-dropLogged >= 1000) {
				dropLogged = d
				s.log.Warn("D-Bus signals dropped: gatewayd does not keep up with BlueZ", "dropped", d)
			}
		}
	}
}

// signalSink queues the signals of the connection without ever blocking
// its reader: godbus's default handler starts a goroutine per signal that
// does not fit.
type signalSink struct {
	ch      chan *dbus.Signal
	dropped atomic.Uint64
}

func (q *signalSink) DeliverSignal(_, _ string, sig *dbus.Signal) {
	select {
	case q.ch <- sig:
	default:
		q.dropped.Add(1)
	}
}

// call calls a method of BlueZ with callTimeout.
func (s *Scanner) call(ctx context.Context, st *scan, path dbus.ObjectPath, method string, out any, args ...any) error {
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	c := st.conn.Object(bluezName, path).CallWithContext(cctx, method, 0, args...)
	if c.Err != nil || out == nil {
		return c.Err
	}
	return c.Store(out)
}

// sync reads the state of BlueZ: its owner, its adapter, the devices it
// knows (their cached data is not published), and starts discovery when
// everything is there.
func (s *Scanner) sync(ctx context.Context, st *scan) error {
	st.owner, st.adapter, st.powered, st.scanning = "", false, false, false
	clear(st.devices)
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	var owner string
	err := st.conn.BusObject().CallWithContext(cctx, busName+".GetNameOwner", 0, bluezName).Store(&owner)
	cancel()
	if err != nil {
		if dbusErrorName(err) == "org.freedesktop.DBus.Error.NameHasNoOwner" {
			if !st.saidNoBlueZ {
				st.saidNoBlueZ = true
				s.log.Warn("BlueZ is not running: no org.bluez on the D-Bus system bus; waiting for bluetoothd (systemctl start bluetooth)", "adapter", s.adapter)
			}
			return nil
		}
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("asking the system bus for BlueZ: %w", err)
	}
	st.owner, st.saidNoBlueZ = owner, false
	var objects map[dbus.ObjectPath]map[string]map[string]dbus.Variant
	if err := s.call(ctx, st, "/", objectManager+".GetManagedObjects", &objects); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("reading BlueZ's objects: %w", hint(err))
	}
	var adapters []string
	for path, ifaces := range objects {
		if props, ok := ifaces[adapterInterface]; ok {
			adapters = append(adapters, strings.TrimPrefix(string(path), "/org/bluez/"))
			if path == s.path {
				st.adapter = true
				st.powered, _ = props["Powered"].Value().(bool)
			}
		}
		if props, ok := ifaces[deviceInterface]; ok && s.ours(path) {
			st.devices[path] = deviceAddress(path, props)
		}
	}
	if !st.adapter {
		if !st.saidNoAdapter {
			st.saidNoAdapter = true
			have := strings.Join(adapters, ", ")
			if have == "" {
				have = "none"
			}
			s.log.Warn("no Bluetooth adapter "+s.adapter+" in BlueZ; waiting for it", "adapter", s.adapter, "adapters", have)
		}
		return nil
	}
	st.saidNoAdapter = false
	return s.startDiscovery(ctx, st)
}

// startDiscovery sets the filter and starts discovery, when BlueZ, the
// adapter and its power are there and discovery is not on yet.
func (s *Scanner) startDiscovery(ctx context.Context, st *scan) error {
	if st.owner == "" || !st.adapter || st.scanning {
		return nil
	}
	if !st.powered {
		if !st.saidPoweredOff {
			st.saidPoweredOff = true
			s.log.Warn("Bluetooth adapter "+s.adapter+" is powered off; waiting for it to be powered on (bluetoothctl power on)", "adapter", s.adapter)
		}
		return nil
	}
	st.saidPoweredOff = false
	filter := map[string]dbus.Variant{
		"Transport":     dbus.MakeVariant("le"),
		"DuplicateData": dbus.MakeVariant(true),
	}
	if err := s.call(ctx, st, s.path, adapterInterface+".SetDiscoveryFilter", nil, filter); err != nil {
		return s.discoveryFailed(ctx, st, "SetDiscoveryFilter", err)
	}
	err := s.call(ctx, st, s.path, adapterInterface+".StartDiscovery", nil)
	if err != nil && dbusErrorName(err) != "org.bluez.Error.InProgress" {
		return s.discoveryFailed(ctx, st, "StartDiscovery", err)
	}
	st.scanning = true
	s.log.Info("scanning for Bluetooth LE advertisements", "adapter", s.adapter, "known_devices", len(st.devices))
	return nil
}

// discoveryFailed decides what a failed discovery call means: the adapter
// not ready (powered off meanwhile: wait for its power), BlueZ gone or
// going (wait for it), or a refusal (return it, to be tried again after a
// backoff).
func (s *Scanner) discoveryFailed(ctx context.Context, st *scan, method string, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	switch dbusErrorName(err) {
	case "org.bluez.Error.NotReady":
		st.powered = false
		return s.startDiscovery(ctx, st) // logs that it waits for power
	case "org.freedesktop.DBus.Error.ServiceUnknown", "org.freedesktop.DBus.Error.NoReply", "org.freedesktop.DBus.Error.UnknownObject":
		// bluetoothd or the adapter went away while we called: its signal
		// follows, or a retry finds out.
		st.retry.Reset(time.Second)
		return nil
	}
	return fmt.Errorf("%s on %s: %w", method, s.adapter, hint(err))
}

// hint adds what to do to a refusal of the D-Bus policy.
func hint(err error) error {
	if dbusErrorName(err) == "org.freedesktop.DBus.Error.AccessDenied" {
		return fmt.Errorf("%w (BlueZ's D-Bus policy does not let this user talk to org.bluez: run gatewayd in group bluetooth, see deploy/systemd/gatewayd.service.d/bluetooth.conf)", err)
	}
	return err
}

func dbusErrorName(err error) string {
	var de dbus.Error
	if errors.As(err, &de) {
		return de.Name
	}
	var dp *dbus.Error
	if errors.As(err, &dp) {
		return dp.Name
	}
	return ""
}

// ours reports whether path is a device object of the adapter.
func (s *Scanner) ours(path dbus.ObjectPath) bool {
	p := string(path)
	return strings.HasPrefix(p, string(s.path)+"/dev_") && !strings.Contains(p[len(s.path)+1:], "/")
}

// handle takes one signal.
func (s *Scanner) handle(ctx context.Context, st *scan, sig *dbus.Signal) error {
	switch sig.Name {
	case busName + ".NameOwnerChanged":
		var name, old, owner string
		if dbus.Store(sig.Body, &name, &old, &owner) != nil || name != bluezName || sig.Sender != busName {
			return nil
		}
		if owner == "" {
			s.log.Warn("BlueZ left the system bus (bluetoothd stopped or restarted); scanning again when it is back", "adapter", s.adapter)
			st.owner, st.adapter, st.powered, st.scanning = "", false, false, false
			clear(st.devices)
			st.saidNoBlueZ = true
			return nil
		}
		if owner == st.owner {
			return nil
		}
		s.log.Info("BlueZ is on the system bus", "adapter", s.adapter)
		return s.sync(ctx, st)
	}
	if st.owner == "" || sig.Sender != st.owner {
		return nil // from a bluetoothd that is gone, or before we know it
	}
	switch sig.Name {
	case objectManager + ".InterfacesAdded":
		var path dbus.ObjectPath
		var ifaces map[string]map[string]dbus.Variant
		if dbus.Store(sig.Body, &path, &ifaces) != nil {
			return nil
		}
		if props, ok := ifaces[adapterInterface]; ok && path == s.path {
			if st.adapter {
				return nil // already in the snapshot sync took after this signal was sent
			}
			s.log.Info("Bluetooth adapter "+s.adapter+" appeared", "adapter", s.adapter)
			st.adapter, st.scanning, st.saidNoAdapter = true, false, false
			st.powered, _ = props["Powered"].Value().(bool)
			return s.startDiscovery(ctx, st)
		}
		if props, ok := ifaces[deviceInterface]; ok && s.ours(path) {
			addr := deviceAddress(path, props)
			st.devices[path] = addr
			// A device object made while we scan was made for what was just
			// heard: its data is fresh. One loaded from BlueZ's storage
			// while we do not scan is not.
			if st.scanning {
				s.advertise(addr, props)
			}
		}
	case objectManager + ".InterfacesRemoved":
		var path dbus.ObjectPath
		var ifaces []string
		if dbus.Store(sig.Body, &path, &ifaces) != nil {
			return nil
		}
		for _, i := range ifaces {
			switch {
			case i == adapterInterface && path == s.path:
				s.log.Warn("Bluetooth adapter "+s.adapter+" was removed; waiting for it", "adapter", s.adapter)
				st.adapter, st.powered, st.scanning = false, false, false
				st.saidNoAdapter = true
				clear(st.devices)
			case i == deviceInterface:
				delete(st.devices, path)
			}
		}
	case properties + ".PropertiesChanged":
		var iface string
		var changed map[string]dbus.Variant
		var invalidated []string
		if dbus.Store(sig.Body, &iface, &changed, &invalidated) != nil {
			return nil
		}
		switch {
		case iface == adapterInterface && sig.Path == s.path:
			return s.adapterChanged(ctx, st, changed)
		case iface == deviceInterface && s.ours(sig.Path):
			addr, ok := st.devices[sig.Path]
			if !ok {
				addr = deviceAddress(sig.Path, changed)
				st.devices[sig.Path] = addr
			}
			// A PropertiesChanged with data is an advertisement heard now.
			s.advertise(addr, changed)
		}
	}
	return nil
}

// adapterChanged follows the adapter's power: discovery ends when it is
// powered off, and is started again when it is powered on.
func (s *Scanner) adapterChanged(ctx context.Context, st *scan, changed map[string]dbus.Variant) error {
	if v, ok := changed["Powered"]; ok {
		on, _ := v.Value().(bool)
		switch {
		case on && !st.powered:
			s.log.Info("Bluetooth adapter "+s.adapter+" is powered on", "adapter", s.adapter)
			st.powered, st.scanning = true, false
			return s.startDiscovery(ctx, st)
		case !on && st.powered:
			st.powered, st.scanning = false, false
			return s.startDiscovery(ctx, st) // logs that it waits for power
		}
	}
	if v, ok := changed["Discovering"]; ok {
		if on, _ := v.Value().(bool); !on && st.scanning && st.powered {
			// Our discovery ended without a power change (an adapter reset):
			// start it again, after a moment so that a flapping adapter
			// does not make a tight loop.
			st.scanning = false
			st.retry.Reset(time.Second)
		}
	}
	return nil
}

// advertise turns the ServiceData and ManufacturerData among props into
// an advertisement of addr heard now, and delivers it.
func (s *Scanner) advertise(addr string, props map[string]dbus.Variant) {
	if addr == "" {
		return
	}
	ad := &Advertisement{Address: addr, Time: time.Now()}
	if v, ok := props["ServiceData"]; ok {
		if m, ok := v.Value().(map[string]dbus.Variant); ok {
			for uuid, data := range m {
				id, ok := shortUUID(uuid)
				b, isBytes := data.Value().([]byte)
				if ok && isBytes {
					if ad.ServiceData == nil {
						ad.ServiceData = map[uint16][]byte{}
					}
					ad.ServiceData[id] = b
				}
			}
		}
	}
	if v, ok := props["ManufacturerData"]; ok {
		if m, ok := v.Value().(map[uint16]dbus.Variant); ok {
			for id, data := range m {
				if b, ok := data.Value().([]byte); ok {
					if ad.ManufacturerData == nil {
						ad.ManufacturerData = map[uint16][]byte{}
					}
					ad.ManufacturerData[id] = b
				}
			}
		}
	}
	if ad.ServiceData == nil && ad.ManufacturerData == nil {
		return // RSSI, name, connection state: not an advertisement's data
	}
	s.deliver(ad)
}

// deviceAddress is the device's Address property, or its object's name
// (dev_A4_C1_38_12_34_56) when the property is not among props.
func deviceAddress(path dbus.ObjectPath, props map[string]dbus.Variant) string {
	if a, ok := props["Address"].Value().(string); ok {
		if n, err := NormalizeAddress(a); err == nil {
			return n
		}
	}
	p := string(path)
	i := strings.LastIndex(p, "/dev_")
	if i < 0 {
		return ""
	}
	n, err := NormalizeAddress(strings.ReplaceAll(p[i+len("/dev_"):], "_", ":"))
	if err != nil {
		return ""
	}
	return n
}

// shortUUID returns the 16-bit UUID of a Bluetooth base UUID
// ("0000fcd2-0000-1000-8000-00805f9b34fb").
func shortUUID(u string) (uint16, bool) {
	const base = "-0000-1000-8000-00805f9b34fb"
	if len(u) != 36 || !strings.EqualFold(u[8:], base) || u[:4] != "0000" {
		return 0, false
	}
	var id uint16
	for _, c := range []byte(u[4:8]) {
		v, ok := unhex(c)
		if !ok {
			return 0, false
		}
		id = id<<4 | uint16(v)
	}
	return id, true
}
