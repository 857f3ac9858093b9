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
# The unit names /usr/local/bin/gatewayd; verify needs an executable there.
cp /bin/true "$tmp/gatewayd"
sed "s#/usr/local/bin/gatewayd#$tmp/gatewayd#g" "$here/gatewayd.service" >"$tmp/gatewayd.service"

if ! systemd-analyze verify "$tmp/gatewayd.service" 2>"$tmp/verify.err" || [ -s "$tmp/verify.err" ]; then
  echo "FAIL systemd-analyze verify:"; cat "$tmp/verify.err"; exit 1
fi
echo "PASS systemd-analyze verify (no warnings)"
# The commented LoadCredential= example must stay valid when uncommented.
sed 's/^#LoadCredential=/LoadCredential=/' "$tmp/gatewayd.service" >"$tmp/gatewayd-credential.service"
grep -q '^LoadCredential=mqtt-password:' "$tmp/gatewayd-credential.service" || { echo "FAIL no LoadCredential= example in the unit"; exit 1; }
if ! systemd-analyze verify "$tmp/gatewayd-credential.service" 2>"$tmp/verify.err" || [ -s "$tmp/verify.err" ]; then
  echo "FAIL systemd-analyze verify with LoadCredential= uncommented:"; cat "$tmp/verify.err"; exit 1
fi
echo "PASS systemd-analyze verify with the LoadCredential= example uncommented"
if ! systemd-analyze security --offline=true --threshold="$threshold" "$tmp/gatewayd.service" >"$tmp/security.out" 2>&1; then
  echo "FAIL systemd-analyze security --threshold=$threshold:"; cat "$tmp/security.out"; exit 1
fi
echo "PASS systemd-analyze security: $(grep -o 'Overall exposure level.*' "$tmp/security.out")"
