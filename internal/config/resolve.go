package config

import (
	"fmt"
	"strings"
)

// resolve fills in, in this one place, every default that depends on other
// values and every per-sensor override, so that the daemon reads one
// resolved config and no other package derives them again: the gateway id,
// {gateway} in the client id, availability topic, subscriptions and topic
// templates, the embedded broker as the broker, each sensor's interval,
// timeout, stale_after and publish settings. has tells whether the file gives a key.
func resolve(c *Config, has func(path string) bool) {
	if c.Gateway.ID == "" {
		c.Gateway.ID = hostID()
	}
	gw := c.Gateway.ID
	fill := func(s string) string { return strings.ReplaceAll(s, "{gateway}", gw) }
	if c.Broker.ClientID == "" {
		c.Broker.ClientID = "gatewayd-{gateway}"
	}
	c.Broker.ClientID = fill(c.Broker.ClientID)
	c.Broker.Availability.Topic = fill(c.Broker.Availability.Topic)
	for i := range c.Subscriptions {
		c.Subscriptions[i].Topic = fill(c.Subscriptions[i].Topic)
	}
	// With the embedded broker on and no broker named, talk to the embedded one.
	if c.EmbeddedBroker.Enabled && !has("broker.urls") {
		c.Broker.URLs = []string{"tcp://" + c.EmbeddedBroker.Listen}
		c.Broker.UseEmbedded = true
	}
	for i := range c.Sensors {
		s := &c.Sensors[i]
		given := func(key string) bool { return has(fmt.Sprintf("sensors[%d].%s", i, key)) }
		switch {
		case s.Push():
			if !given("stale_after") {
				s.StaleAfter = Duration(DefaultStaleAfter)
			}
		default:
			if !given("interval") {
				s.Interval = Duration(DefaultInterval)
			}
			if !given("timeout") {
				s.Timeout = Duration(DefaultReadTimeout)
				if s.Interval > 0 {
					s.Timeout = Duration(min(DefaultReadTimeout, s.Interval.D()))
				}
			}
		}
		out := SensorPublish{Topic: c.Publish.Topic, Format: c.Publish.Format, QoS: byte(c.Publish.QoS), Retain: c.Publish.Retain}
		if s.Topic != "" {
			out.Topic = s.Topic
		}
		if s.QoS != nil {
			out.QoS = byte(*s.QoS)
		}
		if s.Retain != nil {
			out.Retain = *s.Retain
		}
		// A valid gateway id has no braces: filling one after the other is
		// filling both at once (and a strings.Replacer per sensor weighs).
		out.Topic = strings.ReplaceAll(fill(out.Topic), "{sensor}", s.Name)
		s.Publish = out
	}
}
