#!/usr/bin/env bash
# End-to-end test of gatewayd against a real mosquitto.
#
# What it does, in order:
#   1. builds gatewayd into a temp dir,
#   2. checks the command-line modes: -check (good and bad config) and -once,
#   3. starts its own mosquitto on a free port of 127.0.0.1 (own config, own
#      persistence directory, all in the temp dir) and a persistent-session
#      subscriber (mosquitto_sub -c -i e2e-sub -q 1) that records every reading,
#   4. runs gatewayd with 2 simulated sensors every 200ms and checks topics,
#      payloads, the logging of a command message, /metrics (promtool),
#      /healthz and /readyz,
#   5. restarts the broker (SIGTERM, start again on the same port) and checks
#      that gatewayd notices, reconnects by itself, and that the persistent
#      subscriber sees no seq gap across the restart,
#   6. stops gatewayd with SIGTERM: exit 0 within 10 s, retained "offline".
#
# Every wait is a poll with a deadline. One line per check, PASS or FAIL; the
# exit status is non-zero when any check failed. Only the processes this
# script started are stopped, by PID, and the temp dir is removed on exit
# (set KEEP_TMP=1 to keep it for a post-mortem).
#
# Needs: go, mosquitto, mosquitto_pub, mosquitto_sub, curl, python3; promtool
# (Debian package "prometheus") for the /metrics checks, which are skipped
# without it unless GATEWAYD_REQUIRE_PROMTOOL=1.
#
# Usage: test/e2e.sh   (from anywhere; it builds the module it lives in)

set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/gatewayd-e2e.XXXXXX")
gw_id=e2e
. "$repo/test/lib.sh"

cleanup() {
	stop_started
	remove_tmp
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# die: a failure after which nothing else can be checked.
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

for tool in go mosquitto mosquitto_pub mosquitto_sub curl python3; do
	if ! command -v "$tool" >/dev/null; then
		echo "FAIL  $tool is not installed (Debian: apt-get install mosquitto mosquitto-clients curl python3)"
		exit 1
	fi
done
have_promtool=1
if ! command -v promtool >/dev/null; then
	have_promtool=0
	if [[ "${GATEWAYD_REQUIRE_PROMTOOL:-0}" == 1 ]]; then
		echo "FAIL  promtool is not installed (Debian: apt-get install prometheus)"
		exit 1
	fi
fi

# ---------------------------------------------------------------- build
gatewayd="$tmp/gatewayd"
if (cd "$repo" && go build -o "$gatewayd" ./cmd/gatewayd); then
	pass "go build ./cmd/gatewayd"
else
	die "go build ./cmd/gatewayd"
fi

# ---------------------------------------------------------------- the broker
mqtt_port=$(free_port)
metrics_port=$(free_port)
mkdir -p "$tmp/mosquitto-data"
{
	echo "listener $mqtt_port 127.0.0.1"
	echo "allow_anonymous true"
	echo "persistence true"
	echo "persistence_location $tmp/mosquitto-data/"
	# The default (1000 per client) silently drops QoS 1 messages queued
	# for a subscriber that is away, while the publisher gets its PUBACKs.
	echo "max_queued_messages 1000000"
	echo "log_dest file $tmp/mosquitto.log"
	# As root, mosquitto switches to user "mosquitto", which cannot write
	# to our temp dir.
	if ((EUID == 0)); then echo "user root"; fi
} >"$tmp/mosquitto.conf"

if start_broker; then
	pass "mosquitto listening on 127.0.0.1:$mqtt_port"
else
	die "mosquitto did not start on 127.0.0.1:$mqtt_port"
fi

# ---------------------------------------------------------------- configs
cat >"$tmp/gateway.yaml" <<EOF
gateway:
  id: $gw_id
log:
  level: info
  format: text
broker:
  urls: ["tcp://127.0.0.1:$mqtt_port"]
  keepalive: 2s
  connect_timeout: 2s
  reconnect_max_interval: 1s
embedded_broker:
  enabled: false
sensors:
  - {name: s1, type: simulated, interval: 200ms}
  - {name: s2, type: simulated, interval: 200ms}
subscriptions:
  - topic: "gatewayd/{gateway}/cmd/#"
    qos: 1
metrics:
  listen: "127.0.0.1:$metrics_port"
EOF

# A config with an error on line 3: a negative interval.
cat >"$tmp/bad.yaml" <<'EOF'
sensors:
  - name: bad
    interval: -5s
    type: simulated
EOF

# ---------------------------------------------------------------- -check, -once
if out=$("$gatewayd" -check -config "$repo/configs/gateway.yaml" 2>&1); then
	pass "gatewayd -check configs/gateway.yaml exits 0"
else
	fail "gatewayd -check configs/gateway.yaml exits $?: $out"
fi

rc=0
out=$("$gatewayd" -check -config "$tmp/bad.yaml" 2>&1) || rc=$?
if [[ $rc == 2 && "$out" == *"bad.yaml:3:"* ]]; then
	pass "gatewayd -check on a bad config exits 2 and names file:line ($(grep -m 1 'bad.yaml:3:' <<<"$out"))"
else
	fail "gatewayd -check on a bad config: exit $rc, want 2 and \"bad.yaml:3:\" in: $out"
fi

rc=0
"$gatewayd" -once -config "$tmp/gateway.yaml" >"$tmp/once.out" 2>"$tmp/once.err" || rc=$?
if [[ $rc == 0 ]] && python3 - "$tmp/once.out" "$gw_id" <<'EOF'; then
import json, sys
lines = open(sys.argv[1], encoding="utf-8").read().splitlines()
gw = sys.argv[2]
want = {f"gatewayd/{gw}/{s}/{q}" for s in ("s1", "s2") for q in ("temperature", "humidity")}
got = set()
for line in lines:
    topic, _, payload = line.partition(" ")
    r = json.loads(payload)
    assert topic == f"gatewayd/{gw}/{r['sensor']}/{r['quantity']}", line
    got.add(topic)
assert len(lines) == 4 and got == want, lines
EOF
	pass "gatewayd -once prints 4 TOPIC PAYLOAD lines"
else
	fail "gatewayd -once (exit $rc): $(cat "$tmp/once.out" "$tmp/once.err")"
fi

# ---------------------------------------------------------------- subscriber
# The persistent-session subscriber: started before gatewayd, so that it
# gets every reading from seq 1, and kept running across the broker restart.
mosquitto_sub -h 127.0.0.1 -p "$mqtt_port" -c -i e2e-sub -q 1 -v \
	-t "gatewayd/$gw_id/+/+" >"$tmp/sub.out" 2>"$tmp/sub.err" &
started_pids+=("$!")
# It is subscribed once a probe message published after it comes back.
probe_seen() {
	mosquitto_pub -h 127.0.0.1 -p "$mqtt_port" -q 1 -t "gatewayd/$gw_id/probe/x" -m probe
	grep -q "^gatewayd/$gw_id/probe/x probe" "$tmp/sub.out"
}
if wait_for 10 probe_seen; then
	pass "persistent subscriber e2e-sub subscribed"
else
	die "persistent subscriber e2e-sub did not subscribe"
fi

# ---------------------------------------------------------------- gatewayd
"$gatewayd" -config "$tmp/gateway.yaml" 2>"$tmp/gatewayd.log" &
gatewayd_pid=$!
started_pids+=("$gatewayd_pid")

base="http://127.0.0.1:$metrics_port"
http_code() { curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$base$1" || true; }
http_is() { [[ "$(http_code "$2")" == "$1" ]]; }
# metric NAME: the value of an unlabelled sample.
metric() { { curl -s --max-time 2 "$base/metrics" || true; } | awk -v n="$1" '$1 == n { print $2 }'; }
metric_at_least() { local v; v=$(metric "$1"); [[ -n "$v" ]] && python3 -c "import sys; sys.exit(not float('$v') >= $2)"; }
promtool_ok() {
	if ((!have_promtool)); then
		echo "SKIP  curl /metrics | promtool check metrics ($1): promtool not installed"
		return
	fi
	local out
	if out=$(curl -fsS --max-time 5 "$base/metrics" | promtool check metrics 2>&1); then
		pass "curl /metrics | promtool check metrics ($1)"
	else
		fail "curl /metrics | promtool check metrics ($1): $out"
	fi
}

if wait_for 10 http_is 200 /healthz; then
	pass "/healthz 200"
else
	die "/healthz not 200 within 10 s (got $(http_code /healthz))"
fi
if wait_for 10 http_is 200 /readyz; then
	pass "/readyz 200 while connected"
else
	die "/readyz not 200 within 10 s (got $(http_code /readyz))"
fi

# Readings: a fresh subscriber takes 40 messages and checks each one.
if mosquitto_sub -h 127.0.0.1 -p "$mqtt_port" -q 1 -v -C 40 -W 15 \
	-t "gatewayd/$gw_id/s1/+" -t "gatewayd/$gw_id/s2/+" >"$tmp/readings.out" 2>&1 &&
	python3 - "$tmp/readings.out" "$gw_id" <<'EOF'; then
import json, re, sys
from datetime import datetime, timezone, timedelta
gw = sys.argv[2]
units = {"temperature": "°C", "humidity": "%"}
series = set()
for line in open(sys.argv[1], encoding="utf-8").read().splitlines():
    topic, _, payload = line.partition(" ")
    m = re.fullmatch(rf"gatewayd/{gw}/(s[12])/(temperature|humidity)", topic)
    assert m, f"unexpected topic {topic!r}"
    r = json.loads(payload)
    assert set(r) == {"sensor", "quantity", "value", "unit", "time", "seq"}, payload
    assert (r["sensor"], r["quantity"]) == m.groups(), payload
    assert r["unit"] == units[r["quantity"]], payload
    assert isinstance(r["value"], (int, float)) and not isinstance(r["value"], bool), payload
    assert isinstance(r["seq"], int) and r["seq"] >= 1, payload
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", r["time"]), payload
    t = datetime.fromisoformat(r["time"].replace("Z", "+00:00"))
    assert abs(datetime.now(timezone.utc) - t) < timedelta(minutes=1), payload
    series.add(topic)
assert len(series) == 4, f"series seen: {sorted(series)}"
EOF
	pass "readings on gatewayd/$gw_id/{s1,s2}/{temperature,humidity} with the SPEC payload"
else
	fail "readings: $(head -n 5 "$tmp/readings.out")"
fi

# A command message is logged with its payload.
cmd_payload="e2e-cmd-$$-$RANDOM"
mosquitto_pub -h 127.0.0.1 -p "$mqtt_port" -q 1 -t "gatewayd/$gw_id/cmd/test" -m "$cmd_payload"
cmd_logged() { grep 'msg="message received"' "$tmp/gatewayd.log" | grep -q "payload=$cmd_payload"; }
if wait_for 10 cmd_logged; then
	pass "message on gatewayd/$gw_id/cmd/test logged as \"message received\" with its payload"
else
	fail "message on gatewayd/$gw_id/cmd/test not logged within 10 s"
fi

promtool_ok "connected"

# ---------------------------------------------------------------- broker restart
stop_broker
if wait_for 10 http_is 503 /readyz; then
	pass "/readyz 503 while the broker is down"
else
	fail "/readyz $(http_code /readyz) while the broker is down, want 503"
fi
if http_is 200 /healthz; then
	pass "/healthz 200 while the broker is down"
else
	fail "/healthz $(http_code /healthz) while the broker is down, want 200"
fi
if [[ "$(metric gatewayd_mqtt_connected)" == 0 ]]; then
	pass "gatewayd_mqtt_connected 0 while the broker is down"
else
	fail "gatewayd_mqtt_connected $(metric gatewayd_mqtt_connected) while the broker is down"
fi
promtool_ok "disconnected"
# Let readings pile up in gatewayd's buffer for a second or two.
taken_at_stop=$(metric gatewayd_readings_taken_total)
taken_at_stop=${taken_at_stop:-0}
if ! wait_for 10 metric_at_least gatewayd_readings_taken_total "$taken_at_stop + 20"; then
	fail "no readings taken while the broker is down"
fi

if start_broker; then
	pass "mosquitto restarted on the same port"
else
	die "mosquitto did not restart on 127.0.0.1:$mqtt_port"
fi
if wait_for 15 metric_at_least gatewayd_mqtt_connects_total 2; then
	pass "gatewayd reconnected by itself (gatewayd_mqtt_connects_total $(metric gatewayd_mqtt_connects_total))"
else
	fail "gatewayd did not reconnect within 15 s (gatewayd_mqtt_connects_total $(metric gatewayd_mqtt_connects_total))"
fi
if wait_for 10 http_is 200 /readyz; then
	pass "/readyz 200 again after the reconnect"
else
	fail "/readyz $(http_code /readyz) after the reconnect"
fi

# No seq gap at the persistent subscriber: every series holds every seq
# from 1 to its highest, and the highest is past the restart. Polled,
# because the buffered readings are still being delivered.
cat >"$tmp/gaps.py" <<'EOF'
import json, re, sys
path, gw, min_distinct = sys.argv[1], sys.argv[2], int(sys.argv[3])
seen, dups = {}, 0
for line in open(path, encoding="utf-8", errors="replace").read().splitlines():
    topic, _, payload = line.partition(" ")
    if not re.fullmatch(rf"gatewayd/{gw}/s[12]/(temperature|humidity)", topic):
        continue
    try:
        seq = json.loads(payload)["seq"]
    except ValueError:
        continue  # a line still being written
    s = seen.setdefault(topic, set())
    if seq in s:
        dups += 1
    s.add(seq)
distinct = sum(len(s) for s in seen.values())
missing = {t: sorted(set(range(1, max(s) + 1)) - s) for t, s in seen.items()}
missing = {t: m for t, m in missing.items() if m}
print(f"{len(seen)} series, {distinct} distinct readings, {dups} duplicates, missing: {missing or 'none'}")
sys.exit(0 if len(seen) == 4 and not missing and distinct >= min_distinct else 1)
EOF
# Past the restart: more readings than were taken when the broker stopped.
min_distinct=$(python3 -c "print(int(float('$taken_at_stop')) + 20)")
no_gap() { python3 "$tmp/gaps.py" "$tmp/sub.out" "$gw_id" "$min_distinct" >"$tmp/gaps.out"; }
if wait_for 20 no_gap; then
	pass "persistent subscriber: no seq gap across the broker restart ($(cat "$tmp/gaps.out"))"
else
	fail "persistent subscriber: $(cat "$tmp/gaps.out")"
fi
promtool_ok "reconnected"

# ---------------------------------------------------------------- reload (SIGHUP)
connects_before=$(metric gatewayd_mqtt_connects_total)
cp "$tmp/gateway.yaml" "$tmp/gateway.good"
# A broken file changes nothing; its error is logged with file, line and key.
sed -i 's/  - {name: s2, type: simulated, interval: 200ms}/  - {name: s2, type: simulated, interval: -1s}/' "$tmp/gateway.yaml"
kill -HUP "$gatewayd_pid"
bad_logged() {
	grep -F "level=ERROR msg=\"config not reloaded; keeping the running one\" file=$tmp/gateway.yaml line=15 key=sensors[1].interval" "$tmp/gatewayd.log" >/dev/null
}
if wait_for 10 bad_logged && [[ "$(metric gatewayd_config_last_reload_successful)" == 0 ]]; then
	pass "SIGHUP with a broken file: error logged with file:line and key, gatewayd_config_last_reload_successful 0"
else
	fail "SIGHUP with a broken file: $(grep -i reload "$tmp/gatewayd.log" | tail -n 3)"
fi
# A good one: a sensor added, the subscription moved; no reconnect.
sed -e 's/  - {name: s2, type: simulated, interval: 200ms}/&\n  - {name: s3, type: simulated, interval: 200ms}/' \
	-e 's#gatewayd/{gateway}/cmd/\##gatewayd/{gateway}/ctl/\##' "$tmp/gateway.good" >"$tmp/gateway.yaml"
kill -HUP "$gatewayd_pid"
reloaded() { [[ "$(metric gatewayd_config_last_reload_successful)" == 1 ]] && grep -q 'msg="config reloaded"' "$tmp/gatewayd.log"; }
if wait_for 10 reloaded &&
	mosquitto_sub -h 127.0.0.1 -p "$mqtt_port" -q 1 -C 2 -W 10 -t "gatewayd/$gw_id/s3/+" >/dev/null 2>&1; then
	pass "SIGHUP with a good file: sensor s3 publishing, gatewayd_config_last_reload_successful 1"
else
	fail "SIGHUP with a good file: $(grep -i reload "$tmp/gatewayd.log" | tail -n 3)"
fi
mosquitto_pub -h 127.0.0.1 -p "$mqtt_port" -q 1 -t "gatewayd/$gw_id/cmd/gone" -m "gone-$$"
mosquitto_pub -h 127.0.0.1 -p "$mqtt_port" -q 1 -t "gatewayd/$gw_id/ctl/x" -m "ctl-$$"
ctl_logged() { grep 'msg="message received"' "$tmp/gatewayd.log" | grep -q "payload=ctl-$$"; }
if wait_for 10 ctl_logged && ! grep -q "payload=gone-$$" "$tmp/gatewayd.log"; then
	pass "SIGHUP: the new subscription is subscribed, the removed one unsubscribed"
else
	fail "SIGHUP: subscriptions not moved: $(grep 'message received' "$tmp/gatewayd.log" | tail -n 2)"
fi
if [[ "$(metric gatewayd_mqtt_connects_total)" == "$connects_before" ]] && wait_for 20 no_gap; then
	pass "SIGHUP: no reconnect, no seq gap ($(cat "$tmp/gaps.out"))"
else
	fail "SIGHUP: connects $connects_before -> $(metric gatewayd_mqtt_connects_total); $(cat "$tmp/gaps.out")"
fi

# ---------------------------------------------------------------- shutdown
kill -TERM "$gatewayd_pid"
stopped_at=$SECONDS
gatewayd_exited() { ! kill -0 "$gatewayd_pid" 2>/dev/null; }
if wait_for 10 gatewayd_exited; then
	rc=0
	wait "$gatewayd_pid" || rc=$?
	if [[ $rc == 0 ]]; then
		pass "SIGTERM: gatewayd exited 0 after $((SECONDS - stopped_at)) s"
	else
		fail "SIGTERM: gatewayd exited $rc"
	fi
else
	fail "SIGTERM: gatewayd still running after 10 s"
fi
status=$(mosquitto_sub -h 127.0.0.1 -p "$mqtt_port" -C 1 -W 5 -t "gatewayd/$gw_id/status" 2>&1 || true)
if [[ "$status" == offline ]]; then
	pass "retained \"offline\" on gatewayd/$gw_id/status"
else
	fail "gatewayd/$gw_id/status: \"$status\", want retained \"offline\""
fi

if ((failures > 0)); then
	show_logs
	echo "e2e: $failures check(s) failed"
	exit 1
fi
echo "e2e: all checks passed"
