#!/usr/bin/env bash
# End-to-end test of gatewayd's Home Assistant discovery against a real
# mosquitto, with Home Assistant's template engine (Debian's python3-jinja2).
#
# What it does, in order:
#   1. builds gatewayd; -check accepts configs/examples/home-assistant.yaml
#      and refuses a gateway id Home Assistant would ignore,
#   2. starts its own mosquitto WITHOUT persistence on a free port of
#      127.0.0.1, and gatewayd with discovery on, custom availability
#      payloads and three sensors (simulated on publish.topic, simulated on
#      a topic of its own, exec printing temperature and co2),
#   3. checks the retained configs: one per sensor and quantity plus the
#      gateway's three, on the topics and with the keys Home Assistant reads,
#      state_topic where the readings really are,
#   4. renders each value_template with Jinja2 against a real reading: the
#      result is the reading's value,
#   5. publishes Home Assistant's birth message (online on
#      homeassistant/status): every config comes again,
#   6. restarts mosquitto (it forgets every retained message): the configs
#      are back without anyone asking,
#   7. reloads a config without one sensor and with a new one (SIGHUP): the
#      removed sensor's configs are cleared, the new one is announced,
#   8. stops gatewayd: the availability topic says the custom "offline".
#
# Every wait is a poll with a deadline; one line per check, PASS or FAIL;
# the exit status is non-zero when any check failed. Only processes
# this script started are stopped, by PID; the temp dir is removed on exit
# (KEEP_TMP=1 keeps it).
#
# Needs: go, mosquitto, /usr/bin/python3 with Debian's python3-paho-mqtt
# and python3-jinja2.
#
# Usage: test/homeassistant.sh

set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/gatewayd-ha.XXXXXX")
gw=e2e-ha
py=/usr/bin/python3 # Debian's, with python3-paho-mqtt and python3-jinja2
. "$repo/test/lib.sh"

cleanup() {
	stop_started
	remove_tmp
}
trap cleanup EXIT
trap 'exit 130' INT TERM

die() {
	fail "$*"
	show_logs
	exit 1
}
show_logs() {
	local f
	for f in "$tmp/gatewayd.log" "$tmp/mosquitto.log"; do
		[[ -s "$f" ]] || continue
		echo "---- last lines of $(basename "$f") ----"
		tail -n 30 "$f"
	done
}

for tool in go mosquitto mosquitto_pub python3; do
	command -v "$tool" >/dev/null || die "$tool is not installed"
done
if ! "$py" -c 'import jinja2, paho.mqtt.client' 2>/dev/null; then
	die "$py lacks jinja2 or paho (Debian: apt-get install python3-jinja2 python3-paho-mqtt)"
fi

# ---------------------------------------------------------------- helper
# ha.py talks MQTT with paho and renders templates with Jinja2:
#   ha.py retained PORT FILTER            print {topic: payload} of the retained messages
#   ha.py check PORT GW                   check the configs and render each template against a reading
#   ha.py live PORT FILTER OUT            append "subscribed", then every live (not retained) message's topic, to OUT
cat >"$tmp/ha.py" <<'EOF'
import json, re, sys, threading, time
import jinja2
import paho.mqtt.client as mqtt

def collect(port, filt, seconds, keep):
    """What arrives on filt within seconds of the SUBACK (retained
    messages come right after it), by topic: the last payload."""
    got, subscribed = {}, threading.Event()
    c = mqtt.Client(client_id="", clean_session=True)
    c.on_connect = lambda cl, u, f, rc: cl.subscribe(filt, 1)
    c.on_subscribe = lambda cl, u, mid, q: subscribed.set()
    c.on_message = lambda cl, u, m: got.__setitem__(m.topic, m.payload.decode()) if keep(m) else None
    c.connect("127.0.0.1", port)
    c.loop_start()
    if not subscribed.wait(10):
        raise SystemExit(f"no SUBACK for {filt} within 10 s")
    time.sleep(seconds)
    c.loop_stop()
    c.disconnect()
    return got

def retained(port, filt):
    return {t: p for t, p in collect(port, filt, 1.0, lambda m: m.retain).items() if p}

def check(port, gw):
    configs = retained(port, f"homeassistant/+/{gw}/+/config")
    want = {
        f"homeassistant/binary_sensor/{gw}/gatewayd_connectivity/config",
        f"homeassistant/sensor/{gw}/gatewayd_buffered/config",
        f"homeassistant/sensor/{gw}/gatewayd_sensors_up/config",
        f"homeassistant/sensor/{gw}/room_temperature/config",
        f"homeassistant/sensor/{gw}/room_humidity/config",
        f"homeassistant/sensor/{gw}/attic_temperature/config",
        f"homeassistant/sensor/{gw}/attic_humidity/config",
        f"homeassistant/sensor/{gw}/probe_temperature/config",
        f"homeassistant/sensor/{gw}/probe_co2/config",
    }
    assert set(configs) == want, f"configs: {sorted(configs)}"
    states = {}
    for topic, payload in configs.items():
        c = json.loads(payload)
        assert re.fullmatch(r"\w+/[a-zA-Z0-9_-]+/[a-zA-Z0-9_-]+/config", topic.split("/", 1)[1]), topic
        assert "object_id" not in c, topic
        assert c["origin"]["name"] == "gatewayd" and c["device"]["identifiers"], topic
        assert c["unique_id"].startswith(f"gatewayd:{gw}:"), topic
        if "connectivity" in topic:
            assert c["state_topic"] == f"gatewayd/{gw}/status" and (c["payload_on"], c["payload_off"]) == ("up", "down"), c
            continue
        assert (c["availability_topic"], c["payload_available"], c["payload_not_available"]) == (f"gatewayd/{gw}/status", "up", "down"), c
        assert c["state_class"] == "measurement", c
        if "gatewayd_" in topic:
            assert c["state_topic"] == f"gatewayd/{gw}/diagnostics", c
            continue
        sensor, quantity = topic.split("/")[3].split("_", 1)
        assert c["device"]["name"] == sensor and c["device"]["via_device"] == f"gatewayd:{gw}", c
        expect = {"temperature": ("temperature", "°C"), "humidity": ("humidity", "%"), "co2": (None, None)}[quantity]
        assert (c.get("device_class"), c.get("unit_of_measurement")) == expect, c
        states[c["state_topic"]] = c["value_template"]
    # state_topic is where the readings really go; the template gives the
    # reading's value, rendered by Jinja2 as Home Assistant renders it.
    readings = collect(port, "#", 1.5, lambda m: m.topic in states and not m.retain)
    assert set(readings) == set(states), f"readings on {sorted(readings)}, configs name {sorted(states)}"
    env = jinja2.Environment()
    for topic, payload in readings.items():
        r = json.loads(payload)
        rendered = env.from_string(states[topic]).render(value=payload, value_json=r).strip()
        literal = re.search(r'"value":([^,}]+)', payload).group(1)
        assert rendered == literal and float(rendered) == r["value"], (topic, payload, rendered)
        print(f"{topic}: {states[topic]} -> {rendered} ({payload})")
    print(f"{len(configs)} configs, {len(readings)} templates rendered")

def live(port, filt, out):
    with open(out, "a", buffering=1) as f:
        c = mqtt.Client(client_id="", clean_session=True)
        c.on_connect = lambda cl, u, fl, rc: cl.subscribe(filt, 1)
        c.on_subscribe = lambda cl, u, mid, q: f.write("subscribed\n")
        c.on_message = lambda cl, u, m: None if m.retain else f.write(m.topic + "\n")
        c.connect("127.0.0.1", port)
        c.loop_forever()

cmd, port = sys.argv[1], int(sys.argv[2])
if cmd == "retained":
    print(json.dumps(retained(port, sys.argv[3]), ensure_ascii=False))
elif cmd == "check":
    check(port, sys.argv[3])
elif cmd == "live":
    live(port, sys.argv[3], sys.argv[4])
EOF
retained() { "$py" "$tmp/ha.py" retained "$mqtt_port" "$1"; }
# has_retained TOPIC...: every topic has a retained message.
has_retained() {
	local r t
	r=$(retained "homeassistant/#") || return 1
	for t in "$@"; do
		[[ "$r" == *"\"$t\""* ]] || return 1
	done
}
# no_retained TOPIC...: none has.
no_retained() {
	local r t
	r=$(retained "homeassistant/#") || return 1
	for t in "$@"; do
		[[ "$r" != *"\"$t\""* ]] || return 1
	done
}
cfg_topic() { echo "homeassistant/sensor/$gw/$1/config"; }

# ---------------------------------------------------------------- build, -check
gatewayd="$tmp/gatewayd"
(cd "$repo" && go build -o "$gatewayd" ./cmd/gatewayd) || die "go build ./cmd/gatewayd"
pass "go build ./cmd/gatewayd"
if out=$("$gatewayd" -check -config "$repo/configs/examples/home-assistant.yaml" 2>&1); then
	pass "gatewayd -check configs/examples/home-assistant.yaml"
else
	fail "gatewayd -check configs/examples/home-assistant.yaml: $out"
fi
printf 'gateway: {id: "e2e.ha"}\nhomeassistant: {discovery: true}\n' >"$tmp/bad.yaml"
rc=0
out=$("$gatewayd" -check -config "$tmp/bad.yaml" 2>&1) || rc=$?
if [[ $rc == 2 && "$out" == *"bad.yaml:1: gateway.id"*"homeassistant.discovery"* ]]; then
	pass "-check refuses a gateway id Home Assistant ignores: $out"
else
	fail "-check on a gateway id with a dot: exit $rc: $out"
fi

# ---------------------------------------------------------------- broker, gatewayd
mqtt_port=$(free_port)
{
	echo "listener $mqtt_port 127.0.0.1"
	echo "allow_anonymous true"
	echo "persistence false" # a restart forgets every retained message
	echo "log_dest file $tmp/mosquitto.log"
	if ((EUID == 0)); then echo "user root"; fi
} >"$tmp/mosquitto.conf"
start_broker || die "mosquitto did not start"
pass "mosquitto (no persistence) on 127.0.0.1:$mqtt_port"

printf '#!/bin/sh\necho '"'"'{"temperature": 21.25, "co2": 415}'"'"'\n' >"$tmp/probe"
chmod +x "$tmp/probe"
write_config() { # write_config SECOND_SENSOR_LINE
	cat >"$tmp/gateway.yaml" <<EOF
gateway: {id: $gw}
broker:
  urls: ["tcp://127.0.0.1:$mqtt_port"]
  keepalive: 2s
  reconnect_max_interval: 500ms
  availability: {topic: "gatewayd/{gateway}/status", online: up, offline: down}
homeassistant: {discovery: true}
sensors:
  - {name: room, type: simulated, interval: 300ms}
$1
  - {name: probe, type: exec, command: ["$tmp/probe"], interval: 300ms}
subscriptions: []
metrics: {listen: "127.0.0.1:0"}
EOF
}
write_config '  - {name: attic, type: simulated, interval: 300ms, topic: "home/{sensor}/{quantity}"}'
"$gatewayd" -config "$tmp/gateway.yaml" 2>"$tmp/gatewayd.log" &
gatewayd_pid=$!
started_pids+=("$gatewayd_pid")

all_configs=(
	"homeassistant/binary_sensor/$gw/gatewayd_connectivity/config"
	"$(cfg_topic gatewayd_buffered)" "$(cfg_topic gatewayd_sensors_up)"
	"$(cfg_topic room_temperature)" "$(cfg_topic room_humidity)"
	"$(cfg_topic attic_temperature)" "$(cfg_topic attic_humidity)"
	"$(cfg_topic probe_temperature)" "$(cfg_topic probe_co2)"
)
if wait_for 15 has_retained "${all_configs[@]}"; then
	pass "${#all_configs[@]} retained configs: every sensor and quantity, and the gateway's entities"
else
	die "retained configs: $(retained "homeassistant/#")"
fi

# ---------------------------------------------------------------- payloads, templates
if out=$("$py" "$tmp/ha.py" check "$mqtt_port" "$gw" 2>&1); then
	pass "configs as Home Assistant reads them; each value_template rendered by Jinja2 $("$py" -c 'import jinja2; print(jinja2.__version__)') against a real reading gives its value:"
	sed 's/^/      /' <<<"$out"
else
	fail "configs and templates: $out"
fi

# ---------------------------------------------------------------- birth message
"$py" "$tmp/ha.py" live "$mqtt_port" "homeassistant/+/$gw/+/config" "$tmp/live.out" &
live_pid=$!
started_pids+=("$live_pid")
subscribed() { grep -qx subscribed "$tmp/live.out" 2>/dev/null; }
wait_for 10 subscribed || die "the live subscriber did not subscribe"
mosquitto_pub -p "$mqtt_port" -q 1 -t homeassistant/status -m online
all_live() {
	local t
	for t in "${all_configs[@]}"; do
		grep -qxF "$t" "$tmp/live.out" 2>/dev/null || return 1
	done
}
if wait_for 10 all_live; then
	pass "online on homeassistant/status: all ${#all_configs[@]} configs sent again"
else
	fail "after the birth message only: $(sort -u "$tmp/live.out" 2>/dev/null | tr '\n' ' ')"
fi
kill "$live_pid" 2>/dev/null || true

# ---------------------------------------------------------------- broker restart
stop_broker
start_broker || die "mosquitto did not restart"
if wait_for 15 has_retained "${all_configs[@]}"; then
	pass "mosquitto restarted without persistence: every config retained again"
else
	fail "after the broker restart: $(retained "homeassistant/#")"
fi

# ---------------------------------------------------------------- reload
write_config '  - {name: cellar, type: simulated, interval: 300ms}'
kill -HUP "$gatewayd_pid"
reloaded() { grep -q 'msg="config reloaded"' "$tmp/gatewayd.log"; }
if ! wait_for 10 reloaded; then
	die "SIGHUP: no \"config reloaded\" in the log (alive: $(kill -0 "$gatewayd_pid" 2>/dev/null && echo yes || echo no))"
fi
if wait_for 10 no_retained "$(cfg_topic attic_temperature)" "$(cfg_topic attic_humidity)"; then
	pass "SIGHUP without attic: its configs cleared (empty retained messages)"
else
	fail "attic's configs after the reload: $(retained "homeassistant/#")"
fi
if wait_for 10 has_retained "$(cfg_topic cellar_temperature)" "$(cfg_topic cellar_humidity)" "$(cfg_topic room_temperature)"; then
	pass "SIGHUP with cellar: announced; room's configs kept"
else
	fail "cellar after the reload: $(retained "homeassistant/#")"
fi

# ---------------------------------------------------------------- shutdown
kill -TERM "$gatewayd_pid"
wait "$gatewayd_pid" || true
status=$("$py" "$tmp/ha.py" retained "$mqtt_port" "gatewayd/$gw/status")
if [[ "$status" == "{\"gatewayd/$gw/status\": \"down\"}" ]]; then
	pass "stopped: gatewayd/$gw/status holds the custom \"down\" (Connectivity off, entities unavailable)"
else
	fail "status after the stop: $status"
fi

if ((failures > 0)); then
	show_logs
	echo "homeassistant e2e: $failures check(s) failed"
	exit 1
fi
echo "homeassistant e2e: all checks passed"
