package app_test

import (
	"strings"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/internal/testbroker"
)

// TestGuaranteesOnMQTT5 runs the daemon's tests again with broker.protocol
// 5: every guarantee holds on MQTT 5 as on 3.1.1.
func TestGuaranteesOnMQTT5(t *testing.T) {
	testProtocol = 5
	defer func() { testProtocol = 4 }()
	for _, tc := range []struct {
		name string
		test func(*testing.T)
	}{
		{"ReadingsArriveAsSpecified", TestReadingsArriveAsSpecified},
		{"BrokerRestartLosesNothing", TestBrokerRestartLosesNothing},
		{"HalfOpenLink", TestHalfOpenLink},
		{"HalfOpenLinkIdle", TestHalfOpenLinkIdle},
		{"QoS0NotLostWhileReconnecting", TestQoS0NotLostWhileReconnecting},
		{"OverflowDropsOldest", TestOverflowDropsOldest},
		{"BrokerAbsentAtStart", TestBrokerAbsentAtStart},
		{"QueuedMessagesBeforeSubscribe", TestQueuedMessagesBeforeSubscribe},
		{"RefusedSubscriptionIsCounted", TestRefusedSubscriptionIsCounted},
		{"FailoverToSecondURL", TestFailoverToSecondURL},
		{"UsernamePassword", TestUsernamePassword},
		{"WebSocket", TestWebSocket},
		{"TLSWithClientCertificate", TestTLSWithClientCertificate},
		{"LastWillOnLostLink", TestLastWillOnLostLink},
		{"MetricsEndpoint", TestMetricsEndpoint},
		{"DurableBufferAcrossRestart", TestDurableBufferAcrossRestart},
		{"ReloadReconnectKeepsOrder", TestReloadReconnectKeepsOrder},
	} {
		t.Run(tc.name, tc.test)
	}
}

// TestRefusedReadingsDroppedAndCounted: on MQTT 5, the readings of a
// sensor whose topic the broker denies are refused, dropped and counted;
// the other sensor's readings all arrive, in order; and every reading
// taken is published, dropped or refused.
func TestRefusedReadingsDroppedAndCounted(t *testing.T) {
	testProtocol = 5
	defer func() { testProtocol = 4 }()
	b := testbroker.Start(t, testbroker.Options{DenyPublish: []string{"gatewayd/gw/s0/temperature", "gatewayd/gw/s0/humidity"}})
	d := startDaemon(t, baseYAML(b.URL())+sensorsYAML(2, "20ms"))
	m := d.Metrics
	refused := m.MQTTPublishRefused.WithLabelValues("not_authorized")
	testbroker.Eventually(t, 10*time.Second, "refusals and publishes", func() bool {
		return value(refused) >= 50 && value(m.MQTTPublished) >= 50
	})
	_, body := scrape(t, d, "/metrics")
	if !strings.Contains(body, `gatewayd_mqtt_publish_refused_total{reason="not_authorized"} `) {
		t.Errorf("/metrics lacks the refusals:\n%s", grep(body, "refused"))
	}
	promtool(t, body)
	if err := d.stop(); err != nil {
		t.Fatal(err)
	}
	taken, published, dropped := value(m.ReadingsTaken), value(m.MQTTPublished), value(m.BufferDropped)
	if published+dropped+value(refused) != taken || d.Queue.Len() != 0 {
		t.Errorf("published %v + dropped %v + refused %v != taken %v (left %d)", published, dropped, value(refused), taken, d.Queue.Len())
	}
	got := series(t, b.Messages(readingsOn("gatewayd/gw/s")))
	if len(got) != 2 {
		t.Fatalf("series at the broker: %d", len(got))
	}
	checkNoGaps(t, got, 1)
	if n := strings.Count(d.logs.String(), "the broker refused a reading; dropped"); n != 2 {
		t.Errorf("%d refusal warnings, want 2 (one per topic)", n)
	}
}
