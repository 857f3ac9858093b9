package session

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/url"
	"sync/atomic"
	"time"
)

// client is one MQTT connection, made by one of the protocol files:
// paho3.go (paho.mqtt.golang, MQTT 3.1.1) or paho5.go (paho.golang, MQTT 5).
// Everything above it (reconnect, failover, subscriptions, availability)
// is written once, in session.go, for both.
type client interface {
	// publish sends one message; the token completes with its
	// acknowledgement (QoS 0: when written). It never blocks for long.
	publish(topic string, qos byte, retain bool, flags Flags, payload []byte) Token
	// subscribe sends one SUBSCRIBE and waits for its SUBACK until ctx
	// ends. codes holds the SUBACK's code per filter, in order: the granted
	// QoS, or a failure (>= 0x80).
	subscribe(ctx context.Context, filters []Filter) (codes []byte, err error)
	// unsubscribe sends one UNSUBSCRIBE and waits for its UNSUBACK.
	unsubscribe(ctx context.Context, filters []string) error
	// disconnect ends the connection cleanly with a DISCONNECT, so that the
	// broker drops the will, and returns once the broker closed the
	// connection (at most closeLinger after the DISCONNECT left): it then
	// handled everything sent before, and a next connection cannot
	// overtake a message of this one that it acknowledged but had not
	// delivered yet.
	disconnect()
	// close drops the network connection without a DISCONNECT (the broker
	// then publishes the will).
	close()
}

// connectFunc opens a connection of one protocol version. It returns when
// the CONNACK came, or when ctx ends (its deadline is connect_timeout).
type connectFunc func(ctx context.Context, p *connectParams) (client, connack, error)

// protocols maps broker.protocol to its client.
var protocols = map[int]connectFunc{
	4: connect3,
	5: connect5,
}

// connectParams is everything a client needs for one connection.
type connectParams struct {
	url            *url.URL
	clientID       string
	cleanSession   bool
	keepalive      time.Duration
	connectTimeout time.Duration
	username       string
	password       string
	tls            *tls.Config
	will           *will
	sessionExpiry  time.Duration // MQTT 5 only
	// expiry is the message expiry in seconds of the publishes flagged
	// Expiring (MQTT 5 only; 0: none). It may change while connected.
	expiry *atomic.Uint32

	// onMessage is called for every message that arrives, in order, on
	// the client's goroutine.
	onMessage func(Message)
	// onLost is called (at least once, from any goroutine) when the
	// connection is gone, with the reason.
	onLost func(error)
}

// will is the availability's last will.
type will struct {
	topic   string
	payload string
	qos     byte
	retain  bool
}

// connack is what the broker said about the connection. MQTT 3.1.1 brokers
// say nothing beyond sessionPresent; the zero limits mean "none".
type connack struct {
	sessionPresent bool
	// receiveMaximum caps the QoS 1 and 2 publishes in flight (0: none).
	receiveMaximum int
	// maxPacketSize is the largest packet the broker accepts (0: any).
	maxPacketSize int
	// maxQoS is the highest QoS the broker accepts.
	maxQoS byte
	// noRetain: the broker does not keep retained messages.
	noRetain bool
	// keepalive is the broker's Server Keep Alive, when it set one.
	keepalive time.Duration
	// assignedClientID is the client id the broker chose, when it did.
	assignedClientID string
}

// Filter is one topic filter to subscribe to.
type Filter struct {
	Topic string
	QoS   byte
}

// reasonNames are the MQTT 5 reason codes (section 2.4) a broker may send
// in a CONNACK, PUBACK, SUBACK or DISCONNECT, as metric labels and in logs.
var reasonNames = map[byte]string{
	0x00: "success",
	0x04: "disconnect_with_will_message",
	0x10: "no_matching_subscribers",
	0x11: "no_subscription_existed",
	0x80: "unspecified_error",
	0x81: "malformed_packet",
	0x82: "protocol_error",
	0x83: "implementation_specific_error",
	0x84: "unsupported_protocol_version",
	0x85: "client_identifier_not_valid",
	0x86: "bad_user_name_or_password",
	0x87: "not_authorized",
	0x88: "server_unavailable",
	0x89: "server_busy",
	0x8a: "banned",
	0x8b: "server_shutting_down",
	0x8c: "bad_authentication_method",
	0x8d: "keep_alive_timeout",
	0x8e: "session_taken_over",
	0x8f: "topic_filter_invalid",
	0x90: "topic_name_invalid",
	0x91: "packet_identifier_in_use",
	0x92: "packet_identifier_not_found",
	0x93: "receive_maximum_exceeded",
	0x94: "topic_alias_invalid",
	0x95: "packet_too_large",
	0x96: "message_rate_too_high",
	0x97: "quota_exceeded",
	0x98: "administrative_action",
	0x99: "payload_format_invalid",
	0x9a: "retain_not_supported",
	0x9b: "qos_not_supported",
	0x9c: "use_another_server",
	0x9d: "server_moved",
	0x9e: "shared_subscriptions_not_supported",
	0x9f: "connection_rate_exceeded",
	0xa0: "maximum_connect_time",
	0xa1: "subscription_identifiers_not_supported",
	0xa2: "wildcard_subscriptions_not_supported",
}

// ReasonName is the name of an MQTT 5 reason code ("not_authorized" for
// 0x87), or its hex form ("0xfe") for a code MQTT 5 does not define. The
// set is bounded, so it can be a metric label.
func ReasonName(code byte) string {
	if n, ok := reasonNames[code]; ok {
		return n
	}
	return fmt.Sprintf("0x%02x", code)
}
