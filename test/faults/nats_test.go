//go:build faults

package faults

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/internal/config"
	"github.com/gatewayd/gatewayd/internal/metrics"
	"github.com/gatewayd/gatewayd/internal/session"
)

// The NATS cluster case: three nats-server nodes with JetStream and the
// MQTT listener (MQTT 3.1.1 only: NATS does not speak MQTT 5), gatewayd
// connected to one of them, and that node killed with SIGKILL while
// readings flow. Needs nats-server in PATH (go install
// github.com/nats-io/nats-server/v2@v2.15.2); skipped without it unless
// GATEWAYD_REQUIRE_NATS=1 (CI).

// natsNode is one nats-server of the cluster.
type natsNode struct {
	t                   *testing.T
	name                string
	dir, conf, logPath  string
	client, route, mqtt int
	cmd                 *exec.Cmd
	exited              chan struct{}
	tap                 *connectTap
}

// natsCluster starts three nodes routed to each other, waits until each
// serves MQTT, and connects one throwaway client to each (a node sets up
// its MQTT streams at its first client, which can take seconds).
func natsCluster(t *testing.T) []*natsNode {
	t.Helper()
	bin, err := exec.LookPath("nats-server")
	if err != nil {
		if os.Getenv("GATEWAYD_REQUIRE_NATS") == "1" {
			t.Fatal("nats-server is not in PATH (go install github.com/nats-io/nats-server/v2@v2.15.2)")
		}
		t.Skip("nats-server is not in PATH (go install github.com/nats-io/nats-server/v2@v2.15.2)")
	}
	nodes := make([]*natsNode, 3)
	for i := range nodes {
		n := &natsNode{t: t, name: fmt.Sprintf("n%d", i+1), dir: t.TempDir(),
			client: freePort(t), route: freePort(t), mqtt: freePort(t)}
		n.conf = filepath.Join(n.dir, "nats.conf")
		n.logPath = filepath.Join(n.dir, "nats.log")
		nodes[i] = n
	}
	for _, n := range nodes {
		var routes []string
		for _, o := range nodes {
			if o != n {
				routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", o.route))
			}
		}
		conf := fmt.Sprintf(`server_name: %s
listen: 127.0.0.1:%d
jetstream { store_dir: %q }
cluster {
  name: gatewayd-faults
  listen: 127.0.0.1:%d
  routes: [%s]
}
mqtt {
  listen: 127.0.0.1:%d
  stream_replicas: 3
}
`, n.name, n.client, filepath.Join(n.dir, "js"), n.route, strings.Join(routes, ", "), n.mqtt)
		if err := os.WriteFile(n.conf, []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
		n.start(bin)
	}
	t.Cleanup(func() {
		for _, n := range nodes {
			if n.running() {
				n.cmd.Process.Kill()
				<-n.exited
			}
			if t.Failed() {
				t.Logf("%s log:\n%s", n.name, tail(n.logPath, 15))
			}
		}
	})
	for _, n := range nodes {
		n.tap = newConnectTap(t, fmt.Sprintf("127.0.0.1:%d", n.mqtt))
	}
	// The first client of each node: until it was served, the node's MQTT
	// streams may not exist, and a gatewayd connecting would wait for them.
	start := time.Now()
	for _, n := range nodes {
		throwaway(t, "tcp://"+n.tap.addr, "faults-nats-warmup-"+n.name)
	}
	t.Logf("NATS cluster up; the first MQTT client of each node served after %s", time.Since(start).Round(time.Millisecond))
	return nodes
}

func (n *natsNode) start(bin string) {
	n.t.Helper()
	f, err := os.Create(n.logPath)
	if err != nil {
		n.t.Fatal(err)
	}
	n.cmd = exec.Command(bin, "-c", n.conf)
	n.cmd.Stdout, n.cmd.Stderr = f, f
	if err := n.cmd.Start(); err != nil {
		n.t.Fatal(err)
	}
	n.exited = make(chan struct{})
	go func(cmd *exec.Cmd, exited chan struct{}) {
		cmd.Wait()
		f.Close()
		close(exited)
	}(n.cmd, n.exited)
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", n.mqtt), 100*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		if !n.running() || time.Now().After(deadline) {
			n.t.Fatalf("%s does not serve MQTT on %d:\n%s", n.name, n.mqtt, tail(n.logPath, 20))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (n *natsNode) running() bool {
	select {
	case <-n.exited:
		return false
	default:
		return true
	}
}

// throwaway connects a client with a clean session to url and waits for
// its CONNACK (up to a minute: JetStream's first stream setup).
func throwaway(t *testing.T, url, id string) {
	t.Helper()
	b := config.Default().Broker
	b.URLs, b.ClientID, b.CleanSession = []string{url}, id, true
	b.ConnectTimeout = config.Duration(20 * time.Second)
	b.Availability.Topic = ""
	s, err := session.New(session.Options{Broker: b}, slog.New(slog.DiscardHandler), metrics.New("faults-warmup"), metrics.NewLiveness(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Run(ctx) }()
	defer func() { cancel(); <-done }()
	for deadline := time.Now().Add(time.Minute); !s.Connected(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: no MQTT connection within a minute", url)
		}
	}
}

// connectTap is a TCP proxy in front of a node's MQTT listener that notes
// when each connection's first packet (the CONNECT) passed, and when the
// node's first answer (the CONNACK) came back: what gatewayd did and what
// the broker did, seen from outside both. When the node is gone, a new
// connection is closed at once, as a refused one would be.
type connectTap struct {
	t        *testing.T
	addr     string
	upstream string
	ln       net.Listener

	mu    sync.Mutex
	conns []tapConn
	open  []net.Conn
}

type tapConn struct {
	connect, connack time.Time // zero: not seen
}

func newConnectTap(t *testing.T, upstream string) *connectTap {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &connectTap{t: t, addr: ln.Addr().String(), upstream: upstream, ln: ln}
	go c.serve()
	t.Cleanup(func() {
		ln.Close()
		c.mu.Lock()
		for _, o := range c.open {
			o.Close()
		}
		c.mu.Unlock()
	})
	return c
}

func (c *connectTap) serve() {
	for {
		down, err := c.ln.Accept()
		if err != nil {
			return
		}
		go c.relay(down)
	}
}

func (c *connectTap) relay(down net.Conn) {
	up, err := net.DialTimeout("tcp", c.upstream, time.Second)
	if err != nil {
		down.Close()
		return
	}
	c.mu.Lock()
	i := len(c.conns)
	c.conns = append(c.conns, tapConn{})
	c.open = append(c.open, down, up)
	c.mu.Unlock()
	note := func(connack bool) func() {
		var once sync.Once
		return func() {
			once.Do(func() {
				now := time.Now()
				c.mu.Lock()
				if connack {
					c.conns[i].connack = now
				} else {
					c.conns[i].connect = now
				}
				c.mu.Unlock()
			})
		}
	}
	go func() {
		pipe(up, down, note(false))
		up.Close()
		down.Close()
	}()
	pipe(down, up, note(true))
	up.Close()
	down.Close()
}

// pipe copies from src to dst, calling first at the first bytes.
func pipe(dst, src net.Conn, first func()) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			first()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return // io.EOF or the node's end
		}
	}
}

// firstConnectAfter is the first CONNECT that passed at or after t.
func (c *connectTap) firstConnectAfter(t time.Time) (tapConn, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var best tapConn
	for _, tc := range c.conns {
		if !tc.connect.IsZero() && !tc.connect.Before(t) && (best.connect.IsZero() || tc.connect.Before(best.connect)) {
			best = tc
		}
	}
	return best, !best.connect.IsZero()
}

// n. A node of a 3-node NATS cluster (JetStream, MQTT, stream replicas 3)
// is killed under gatewayd.
func TestNATSClusterNodeKilled(t *testing.T) {
	if protocol == 5 {
		t.Skip("NATS speaks MQTT 3.1.1 only; the case runs in the 3.1.1 pass")
	}
	row := newRow(t, "n", "NATS cluster of 3 (JetStream, MQTT, stream_replicas 3): SIGKILL of gatewayd's node")
	nodes := natsCluster(t)
	urls := make([]string, len(nodes))
	for i, n := range nodes {
		urls[i] = "tcp://" + n.tap.addr
	}
	// The witness on the last node, gatewayd starting on the first.
	sub := newSubscriber(t, urls[2], "faults-sub-fn", "fn")
	r := &rig{t: t, id: "fn", sub: sub}
	r.config = writeConfig(t, gwConfig{id: "fn", urls: urls, protocol: 4})
	g := startGatewayd(t, r.config)
	warmUp(g)
	on := g.waitLog(g.started, 10*time.Second, "connected").Broker
	victim := -1
	for i, u := range urls {
		if u == on {
			victim = i
		}
	}
	if victim < 0 {
		t.Fatalf("gatewayd connected to %q, not one of %v", on, urls)
	}
	// Readings flow for a second more, then the node dies.
	takenAtLeast(g, g.scrape(), float64(readingsPerSec))
	atKill := g.scrape()
	killed := time.Now()
	nodes[victim].cmd.Process.Signal(syscall.SIGKILL)
	<-nodes[victim].exited

	lostAt := g.waitLog(killed, 10*time.Second, "connection lost", "the broker stopped acknowledging; reconnecting").Time
	// The first CONNECT to a surviving node, seen by its tap.
	var first tapConn
	var firstNode string
	for deadline := time.Now().Add(10 * time.Second); first.connect.IsZero(); time.Sleep(5 * time.Millisecond) {
		for i, n := range nodes {
			if i == victim {
				continue
			}
			if tc, ok := n.tap.firstConnectAfter(killed); ok && (first.connect.IsZero() || tc.connect.Before(first.connect)) {
				first, firstNode = tc, n.name
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("no CONNECT to a surviving node within 10s of the kill")
		}
	}
	back := g.waitLog(killed, 60*time.Second, "connected")
	if back.Broker == on {
		t.Fatalf("gatewayd connected to the killed node %s", on)
	}
	// The cluster's part: until the broker acknowledges again everything
	// gatewayd had taken at the kill, and until the witness receives
	// readings taken after the reconnect.
	g.waitMetrics(60*time.Second, "readings taken before the kill acknowledged", func(m metricsSnap) bool {
		return m.get("gatewayd_mqtt_messages_published_total") >= atKill.get("gatewayd_readings_taken_total")
	})
	ackedAt := time.Now()
	sub.waitFresh(back.Time, 0)
	deliveredAt := time.Now()
	detect, toConnect := lostAt.Sub(killed), first.connect.Sub(killed)
	t.Logf("killed %s (gatewayd's node); gatewayd noticed after %s, sent CONNECT to %s after %s; connected to %s after %s",
		nodes[victim].name, detect.Round(time.Millisecond), firstNode, toConnect.Round(time.Millisecond), back.Broker, back.Time.Sub(killed).Round(time.Millisecond))
	row.reconnected(back.Time.Sub(killed))
	row.note("gatewayd's part: loss noticed %s after the SIGKILL, CONNECT to a surviving node (%s) %s after it (goal < 200ms)",
		detect.Round(time.Millisecond), firstNode, toConnect.Round(time.Millisecond))
	row.note("the cluster's part: CONNACK %s after that CONNECT; every reading taken before the kill acknowledged %s after the kill; the witness (on another node) received readings taken after the reconnect %s after the kill",
		back.Time.Sub(first.connect).Round(time.Millisecond), ackedAt.Sub(killed).Round(time.Millisecond), deliveredAt.Sub(killed).Round(time.Millisecond))
	t.Logf("acknowledged again %s after the kill; the witness received fresh readings %s after it",
		ackedAt.Sub(killed).Round(time.Millisecond), deliveredAt.Sub(killed).Round(time.Millisecond))
	if toConnect > 200*time.Millisecond {
		t.Errorf("gatewayd sent its CONNECT to a surviving node %s after the kill, want < 200ms", toConnect)
	}
	if !g.running() {
		t.Fatal("gatewayd exited")
	}
	m, tl := r.finish(g, row)
	if m.get("gatewayd_mqtt_connected") != 1 {
		t.Error("gatewayd is not connected at the end")
	}
	checkComplete(t, m, tl)
	if lim := maxInflight * max(1, m.get("gatewayd_mqtt_connection_lost_total")); float64(tl.Dups) > lim {
		t.Errorf("%d duplicates at the subscriber, more than the in-flight window of %v per lost connection (%v lost)",
			tl.Dups, maxInflight, m.get("gatewayd_mqtt_connection_lost_total"))
	}
	row.note("%v connections lost, %v connects failed on the way", m.get("gatewayd_mqtt_connection_lost_total"), m.get("gatewayd_mqtt_connect_failures_total"))
}
