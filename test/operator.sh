#!/usr/bin/env bash
# What an operator sees, tested with the real tools: a running gatewayd
# (embedded broker, simulated sensors, one exec sensor with a pressure, one
# that fails), behind TLS and basic auth (metrics.web_config_file);
# Debian's Prometheus scraping it every second with the alert rules loaded;
# every query of the Grafana dashboard evaluated through Prometheus' HTTP
# API; Debian's Chromium headless on the status page; promtool on the
# alert rules.
#
# What it does, in order:
#   1. promtool check rules / test rules on deploy/prometheus/,
#   2. the dashboard's structure (variables, datasource of every panel),
#   3. builds gatewayd, makes a CA and a server certificate (openssl) and a
#      bcrypt password (htpasswd), checks that -check refuses an open
#      embedded broker on 0.0.0.0, starts gatewayd on free ports with its
#      embedded broker's password from $CREDENTIALS_DIRECTORY,
#   4. checks that the endpoints answer 401 without credentials,
#   5. starts prometheus (free port, own data dir) scraping gatewayd with
#      the credentials (job gatewayd) and without (job gatewayd-noauth),
#   6. evaluates each dashboard query (after variable substitution) as
#      Grafana would (query_range); each must succeed, and each must return
#      data except those of metrics this build may not have yet,
#   7. checks that the alert rules evaluate on the real Prometheus and that
#      the failing sensor's alert is pending,
#   8. chromium --dump-dom on / and checks what a person looks for; chromium
#      --screenshot for a desktop and a phone window.
#
# Every wait is a poll with a deadline. One line per check, PASS or FAIL;
# the exit status is non-zero when any check failed. Only the processes
# this script started are stopped, by PID; the temp dir is removed on exit
# (KEEP_TMP=1 keeps it).
#
# Needs: go, python3, curl, openssl, htpasswd (apache2-utils), prometheus
# and promtool (prometheus), chromium.
#
# Usage: test/operator.sh [-screenshot FILE.png]   (e.g. docs/status.png)

set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/gatewayd-operator.XXXXXX")
screenshot=
if [[ "${1:-}" == -screenshot ]]; then
	screenshot=$(realpath -m "$2")
fi
gw_id=pi-kitchen
. "$repo/test/lib.sh"
wait_for_interval=0.2

cleanup() {
	stop_started
	remove_tmp
}
trap cleanup EXIT
trap 'exit 130' INT TERM

die() {
	fail "$*"
	for f in "$tmp/gatewayd.log" "$tmp/prometheus.log"; do
		[[ -s "$f" ]] && { echo "---- last lines of $(basename "$f") ----"; tail -n 20 "$f"; }
	done
	exit 1
}

for tool in go python3 curl openssl htpasswd prometheus promtool chromium; do
	command -v "$tool" >/dev/null || die "$tool is not installed (Debian: apt-get install curl openssl apache2-utils prometheus chromium)"
done

# ---------------------------------------------------------------- alert rules
rules="$repo/deploy/prometheus"
if out=$(promtool check rules "$rules/alerts.yml" 2>&1); then
	pass "promtool check rules alerts.yml ($(grep -o '[0-9]* rules found' <<<"$out"))"
else
	fail "promtool check rules alerts.yml: $out"
fi
if out=$(cd "$rules" && promtool test rules alerts_test.yml 2>&1); then
	pass "promtool test rules alerts_test.yml"
else
	fail "promtool test rules alerts_test.yml: $out"
fi
# Every alert has a unit test.
untested=$(comm -23 <(grep -o 'alert: [A-Za-z]*' "$rules/alerts.yml" | cut -d' ' -f2 | sort -u) \
	<(grep -o 'alertname: [A-Za-z]*' "$rules/alerts_test.yml" | cut -d' ' -f2 | sort -u))
if [[ -z "$untested" ]]; then pass "every alert has a unit test"; else fail "alerts without a unit test: $untested"; fi

# ---------------------------------------------------------------- dashboard structure
dashboard="$repo/deploy/grafana/gatewayd.json"
if out=$(python3 "$repo/test/operator/dashboard.py" check "$dashboard" 2>&1); then
	pass "dashboard structure: $out"
else
	fail "dashboard structure: $out"
fi

# ---------------------------------------------------------------- gatewayd
gatewayd="$tmp/gatewayd"
(cd "$repo" && go build -o "$gatewayd" ./cmd/gatewayd) || die "go build ./cmd/gatewayd"
pass "go build ./cmd/gatewayd"

# A CA, a server certificate for 127.0.0.1, and a bcrypt password.
(
	cd "$tmp"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj "/CN=operator test CA" \
		-keyout ca.key -out ca.pem
	openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=127.0.0.1" -keyout server.key -out server.csr
	printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >server.ext
	openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 -extfile server.ext -out server.pem
) >"$tmp/openssl.log" 2>&1 || die "openssl: $(cat "$tmp/openssl.log")"
password="op-$RANDOM-$RANDOM"
printf '%s' "$password" >"$tmp/scrape-password"
cat >"$tmp/web.yml" <<EOF
tls_server_config:
  cert_file: server.pem
  key_file: server.key
basic_auth_users:
$(htpasswd -nbB -C 6 prometheus "$password" | sed -n 's/^\([^:]*\):\(.*\)$/  \1: "\2"/p')
EOF
pass "CA and server certificate (openssl), bcrypt password (htpasswd -B)"

mqtt_port=$(free_port)
http_port=$(free_port)
# The embedded broker's password as systemd's LoadCredential= hands it over.
mkdir -p "$tmp/credentials"
printf 'mqtt-%s\n' "$RANDOM$RANDOM" >"$tmp/credentials/mqtt-password"
cat >"$tmp/gateway.yaml" <<EOF
gateway: {id: $gw_id}
embedded_broker:
  enabled: true
  listen: "127.0.0.1:$mqtt_port"
  username: gateway
  password_file: \${CREDENTIALS_DIRECTORY}/mqtt-password
sensors:
  - {name: living-room, type: simulated, interval: 1s, seed: 1}
  - {name: bedroom, type: simulated, interval: 1s, seed: 2}
  - {name: barometer, type: exec, command: ["/bin/echo", "pressure=1013.25"], interval: 1s, timeout: 10s}
  - {name: cellar, type: exec, command: ["/bin/sh", "-c", "echo 'cannot open /dev/i2c-1: no such device' >&2; exit 1"], interval: 1s, timeout: 10s}
metrics:
  listen: "127.0.0.1:$http_port"
  web_config_file: "$tmp/web.yml"
EOF
export CREDENTIALS_DIRECTORY="$tmp/credentials"
"$gatewayd" -check -config "$tmp/gateway.yaml" >"$tmp/check.out" 2>&1 || die "gatewayd -check: $(cat "$tmp/check.out")"
# An open embedded broker beyond loopback is refused, naming the key.
sed -e "s/127.0.0.1:$mqtt_port/0.0.0.0:$mqtt_port/" -e '/username:/d' -e '/password_file:/d' "$tmp/gateway.yaml" >"$tmp/open.yaml"
rc=0
"$gatewayd" -check -config "$tmp/open.yaml" >"$tmp/open.out" 2>&1 || rc=$?
if [[ $rc == 2 ]] && grep -q 'open.yaml:4: embedded_broker.listen: .*embedded_broker.username' "$tmp/open.out"; then
	pass "gatewayd -check refuses an open embedded broker on 0.0.0.0 ($(head -c 120 "$tmp/open.out")...)"
else
	fail "gatewayd -check on an open embedded broker on 0.0.0.0: exit $rc: $(cat "$tmp/open.out")"
fi
"$gatewayd" -config "$tmp/gateway.yaml" 2>"$tmp/gatewayd.log" &
started_pids+=("$!")

base="https://127.0.0.1:$http_port"
code() { curl -s -o /dev/null -w '%{http_code}' --max-time 5 --cacert "$tmp/ca.pem" "$@" || true; }
authed() { [[ "$(code -u "prometheus:$password" "$base$1")" == 200 ]]; }
wait_for 15 authed /readyz || die "gatewayd: /readyz not 200 over TLS with the password within 15 s"
pass "gatewayd serves https on 127.0.0.1:$http_port and is connected to its embedded broker (with the password from \$CREDENTIALS_DIRECTORY)"
for path in / /metrics /api/status /healthz /readyz; do
	c1=$(code "$base$path")
	c2=$(code -u "prometheus:wrong" "$base$path")
	c3=$(code -u "prometheus:$password" "$base$path")
	if [[ "$c1/$c2/$c3" == 401/401/200 ]]; then
		pass "$path: 401 without credentials, 401 with a wrong password, 200 with the password"
	else
		fail "$path: $c1 without credentials, $c2 with a wrong password, $c3 with the password (want 401/401/200)"
	fi
done
c=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$http_port/metrics" || true)
if [[ "$c" != 200 ]]; then pass "plain HTTP on the TLS port is not served (got ${c:-nothing})"; else fail "plain HTTP served on the TLS port"; fi

# ---------------------------------------------------------------- prometheus
prom_port=$(free_port)
cat >"$tmp/prometheus.yml" <<EOF
global: {scrape_interval: 1s, evaluation_interval: 1s}
rule_files: ["$rules/alerts.yml"]
scrape_configs:
  - job_name: gatewayd
    scheme: https
    tls_config: {ca_file: "$tmp/ca.pem"}
    basic_auth: {username: prometheus, password_file: "$tmp/scrape-password"}
    static_configs: [{targets: ["127.0.0.1:$http_port"]}]
  - job_name: gatewayd-noauth
    scheme: https
    tls_config: {ca_file: "$tmp/ca.pem"}
    static_configs: [{targets: ["127.0.0.1:$http_port"]}]
EOF
prometheus --config.file="$tmp/prometheus.yml" --storage.tsdb.path="$tmp/prometheus-data" \
	--web.listen-address="127.0.0.1:$prom_port" >"$tmp/prometheus.log" 2>&1 &
started_pids+=("$!")
prom="http://127.0.0.1:$prom_port"
query() { curl -fsS --max-time 5 "$prom/api/v1/query" --data-urlencode "query=$1" 2>/dev/null; }
has_samples() { # enough samples for every rate() of the dashboard
	query "count_over_time(up{job=\"gatewayd\"}[1m]) >= 8 and up{job=\"gatewayd\"} == 1" | grep -q '"result":\[{'
}
wait_for 60 has_samples || die "prometheus: no 8 successful scrapes of gatewayd within 60 s ($(query 'up' || echo 'no answer'))"
pass "prometheus scrapes gatewayd every second over TLS with basic auth (up == 1)"
targets=$(curl -fsS --max-time 5 "$prom/api/v1/targets" || true)
if python3 -c '
import json, sys
t = [t for t in json.load(sys.stdin)["data"]["activeTargets"] if t["labels"]["job"] == "gatewayd-noauth"]
sys.exit(not (t and t[0]["health"] == "down" and "401" in t[0]["lastError"]))' <<<"$targets"; then
	pass "a scrape without credentials is refused (job gatewayd-noauth down with a 401)"
else
	fail "job gatewayd-noauth: $targets"
fi

# ---------------------------------------------------------------- dashboard queries
if python3 "$repo/test/operator/dashboard.py" eval "$dashboard" "$prom" "127.0.0.1:$http_port" >"$tmp/dashboard.out" 2>&1; then
	pass "dashboard queries: $(tail -n 1 "$tmp/dashboard.out")"
else
	fail "dashboard queries:"
	cat "$tmp/dashboard.out"
fi

# ---------------------------------------------------------------- alert rules on the real prometheus
alert_rules_ok() {
	curl -fsS --max-time 5 "$prom/api/v1/rules" | python3 -c '
import json, sys
rules = [r for g in json.load(sys.stdin)["data"]["groups"] for r in g["rules"]]
bad = ["%s: %s" % (r["name"], r.get("lastError") or r["health"]) for r in rules if r["health"] != "ok"]
pending = {a["labels"].get("sensor") for r in rules if r["name"] == "GatewaydSensorDown" for a in r.get("alerts", [])}
print(f"{len(rules)} rules, health ok: {len(rules) - len(bad)}; GatewaydSensorDown pending for {sorted(pending)}; {bad}")
sys.exit(not (rules and not bad and pending == {"cellar"}))' >"$tmp/rules.out"
}
if wait_for 15 alert_rules_ok; then
	pass "alert rules on prometheus: $(cat "$tmp/rules.out")"
else
	fail "alert rules on prometheus: $(cat "$tmp/rules.out")"
fi

# ---------------------------------------------------------------- the status page in chromium
chrome=(chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run
	--disable-background-networking --disable-component-update --disable-sync
	--ignore-certificate-errors --user-data-dir="$tmp/chromium")
page="https://prometheus:$password@127.0.0.1:$http_port/"
if timeout 60 "${chrome[@]}" --dump-dom "$page" >"$tmp/dom.html" 2>"$tmp/chromium.log" &&
	python3 "$repo/test/operator/statuspage.py" "$tmp/dom.html" "$gw_id" "tcp://127.0.0.1:$mqtt_port" >"$tmp/page.out" 2>&1; then
	pass "chromium --dump-dom /: $(tail -n 1 "$tmp/page.out")"
else
	fail "chromium --dump-dom /:"
	cat "$tmp/page.out" 2>/dev/null || tail -n 5 "$tmp/chromium.log"
fi
if timeout 60 "${chrome[@]}" --dump-dom "https://127.0.0.1:$http_port/" >"$tmp/dom-noauth.html" 2>>"$tmp/chromium.log" &&
	! grep -q 'data-sensor=' "$tmp/dom-noauth.html"; then
	pass "chromium without the password sees no status"
else
	fail "chromium without the password: $(head -c 300 "$tmp/dom-noauth.html")"
fi
shot() { # shot WIDTH HEIGHT FILE
	rm -f "$3"
	timeout 60 "${chrome[@]}" --hide-scrollbars --window-size="$1,$2" --screenshot="$3" "$page" >>"$tmp/chromium.log" 2>&1 &&
		[[ $(stat -c %s "$3" 2>/dev/null || echo 0) -gt 10000 ]]
}
for size in 1280x900 390x844; do
	file="$tmp/status-$size.png"
	if [[ $size == 1280x900 && -n "$screenshot" ]]; then file=$screenshot; fi
	if shot "${size%x*}" "${size#*x}" "$file"; then
		pass "chromium --screenshot at $size: $file ($(stat -c %s "$file") bytes)"
	else
		fail "chromium --screenshot at $size: $(tail -n 3 "$tmp/chromium.log")"
	fi
done

if ((failures > 0)); then
	echo "operator: $failures check(s) failed"
	exit 1
fi
echo "operator: all checks passed"
