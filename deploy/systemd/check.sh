#!/usr/bin/env bash
# Checks the unit file as systemd reads it, without systemd running:
#   systemd-analyze verify   - any output on stderr (an unknown key is only a warning) fails
#   systemd-analyze security - the exposure must stay at or below THRESHOLD
# systemd 252 counts --threshold in tenths of the exposure it displays
# (1.1 shows as "1.1", compares as 11). A service with network access cannot
# go below 0.8 (PrivateNetwork=no costs 0.5, AF_INET 0.3), so the literal
# --threshold=3 (an exposure of 0.3) is out of reach for any MQTT client.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
threshold=${THRESHOLD:-11}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# The unit names /usr/bin/gatewayd; verify needs an executable there.
cp /bin/true "$tmp/gatewayd"
sed "s#/usr/bin/gatewayd#$tmp/gatewayd#g" "$here/gatewayd.service" >"$tmp/gatewayd.service"

# verify WHAT UNIT: systemd-analyze verify UNIT, which fails on any output on
# stderr (an unknown key is only a warning); WHAT ends the FAIL line. A
# SYSTEMD_UNIT_PATH given with the call passes through.
verify() {
  if ! systemd-analyze verify "$2" 2>"$tmp/verify.err" || [ -s "$tmp/verify.err" ]; then
    echo "FAIL systemd-analyze verify$1:"; cat "$tmp/verify.err"; exit 1
  fi
}

verify "" "$tmp/gatewayd.service"
echo "PASS systemd-analyze verify (no warnings)"
# The commented LoadCredential= example must stay valid when uncommented.
sed 's/^#LoadCredential=/LoadCredential=/' "$tmp/gatewayd.service" >"$tmp/gatewayd-credential.service"
grep -q '^LoadCredential=mqtt-password:' "$tmp/gatewayd-credential.service" || { echo "FAIL no LoadCredential= example in the unit"; exit 1; }
verify " with LoadCredential= uncommented" "$tmp/gatewayd-credential.service"
echo "PASS systemd-analyze verify with the LoadCredential= example uncommented"
# The drop-ins in gatewayd.service.d/, each on its own with the unit: verify
# reads a unit's drop-ins from gatewayd.service.d/ on the unit search path
# (SYSTEMD_UNIT_PATH), and must be clean with each.
for dropin in "$here"/gatewayd.service.d/*.conf; do
  [ -e "$dropin" ] || continue
  name=$(basename "$dropin")
  rm -rf "$tmp/unit" && mkdir -p "$tmp/unit/gatewayd.service.d"
  cp "$tmp/gatewayd.service" "$tmp/unit/"
  cp "$dropin" "$tmp/unit/gatewayd.service.d/"
  SYSTEMD_UNIT_PATH="$tmp/unit:" verify " with $name" "$tmp/unit/gatewayd.service"
  # A misspelt key is only a warning above, and a drop-in that is not read
  # at all is silent: check that systemd sees what the drop-in sets.
  # (Into a file first: grep -q stops reading early, and under pipefail the
  # writer's SIGPIPE failed the check at random.)
  # A drop-in names the line it changes in a "# check.sh expects:" comment
  # (default: ✗ PrivateDevices=, the device drop-ins).
  expect=$(sed -n 's/^# check.sh expects: //p' "$dropin")
  expect=${expect:-✗ PrivateDevices=}
  SYSTEMD_UNIT_PATH="$tmp/unit:" systemd-analyze security --offline=true "$tmp/unit/gatewayd.service" >"$tmp/dropin.out" 2>&1 || true
  if ! grep -qF "$expect" "$tmp/dropin.out"; then
    echo "FAIL $name: systemd does not apply it (no \"$expect\" in systemd-analyze security)"
    cat "$tmp/dropin.out"
    exit 1
  fi
  echo "PASS systemd-analyze verify with $name (no warnings, applied)"
done
if ! systemd-analyze security --offline=true --threshold="$threshold" "$tmp/gatewayd.service" >"$tmp/security.out" 2>&1; then
  echo "FAIL systemd-analyze security --threshold=$threshold:"; cat "$tmp/security.out"; exit 1
fi
echo "PASS systemd-analyze security: $(grep -o 'Overall exposure level.*' "$tmp/security.out")"
