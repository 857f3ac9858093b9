#!/usr/bin/env bash
# The release files, checked as an operator meets them.
#
# What it does, in order:
#   1. `make dist`: every file SPEC.md names is in dist/, and checksums.txt
#      verifies them (sha256sum -c);
#   2. lintian on every .deb: no error (lintian's own exit code);
#   3. the .rpm files: architecture, file list, the config file flagged
#      %config(noreplace), the scriptlets;
#   4. the amd64 .deb installed on this machine with dpkg, as an operator
#      would: -version and -check of the installed binary and config,
#      systemd-analyze verify of the installed unit (nothing on stderr), the
#      unit enabled (also without a running systemd), the config edited and
#      an upgrade installed (the edit survives), dpkg -r (binary gone, config
#      kept), dpkg -P (nothing left, also what systemd's DynamicUser leaves in
#      /var/lib/private);
#   5. the arm64, armv7 and armv6 binaries, taken out of their .debs, run
#      under qemu-user (armv6 on an ARM1176, a Raspberry Pi Zero/1's CPU):
#      -version, -once on a simulated config, and a daemon run that
#      publishes readings to a mosquitto started here (mosquitto_sub sees
#      them) and exits 0 on SIGTERM. An armv7 binary must die on the ARM1176,
#      or the armv6 check proves nothing.
#
# It installs a package system-wide, so it needs root (or sudo), and refuses
# to run where gatewayd is installed or /etc/gatewayd exists. Whatever
# happens, it purges what it installed and stops what it started, by PID.
#
# Needs: go, make, git, dpkg, lintian, rpm, qemu-user-static, mosquitto,
# mosquitto-clients, systemd (systemd-analyze), python3.
#
# Usage: test/packages.sh   (from anywhere)

set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/gatewayd-packages.XXXXXX")
. "$repo/test/lib.sh"
installed=0
made_private=0 # this script created /var/lib/private (to stand in for systemd)
sudo=()
if ((EUID != 0)); then sudo=(sudo); fi

cleanup() {
	stop_started
	if ((installed)); then
		echo "cleanup: dpkg -P gatewayd"
		"${sudo[@]}" dpkg -P gatewayd >/dev/null || true
	fi
	if ((made_private)); then
		"${sudo[@]}" rmdir /var/lib/private 2>/dev/null || true
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

die() {
	fail "$*"
	exit 1
}
# check DESCRIPTION CMD...: PASS when CMD succeeds, else FAIL (and go on).
check() {
	local what=$1
	shift
	if "$@"; then pass "$what"; else fail "$what"; fi
}
absent() { ! "${sudo[@]}" test -e "$1" && ! "${sudo[@]}" test -L "$1"; }

for tool in go make git dpkg lintian rpm qemu-aarch64-static qemu-arm-static mosquitto mosquitto_sub systemd-analyze python3 sha256sum; do
	command -v "$tool" >/dev/null || die "$tool is not installed (Debian: apt-get install make git lintian rpm qemu-user-static mosquitto mosquitto-clients systemd python3)"
done

# ---------------------------------------------------------------- 1. make dist
cd "$repo"
commit=unknown
if git rev-parse --short=12 HEAD >/dev/null 2>&1; then
	commit=$(git rev-parse --short=12 HEAD)
else
	export VERSION=0.0.0+nogit # a copy without .git: make dist needs a version given
fi
start=$SECONDS
make dist >"$tmp/dist.log" 2>&1 || {
	cat "$tmp/dist.log"
	die "make dist"
}
pass "make dist in $((SECONDS - start))s"
sed -n '/^dist\/:/,$p' "$tmp/dist.log"
version=$(sed -n 's/^gatewayd \([^ ]*\) (commit .*/\1/p' "$tmp/dist.log")
[[ -n "$version" ]] || die "make dist did not say the version"
declare -A deb_arch=([amd64]=amd64 [arm64]=arm64 [armv7]=armhf [armv6]=armhf)
declare -A rpm_arch=([amd64]=x86_64 [arm64]=aarch64 [armv7]=armv7hl [armv6]=armv6hl)
missing=()
for t in amd64 arm64 armv7 armv6; do
	for ext in tar.gz deb rpm; do
		f="dist/gatewayd_${version}_linux_$t.$ext"
		[[ -s "$f" ]] || missing+=("$f")
	done
done
[[ -s dist/checksums.txt ]] || missing+=(dist/checksums.txt)
check "dist/ has the 12 packages and checksums.txt (${missing[*]:-none missing})" test ${#missing[@]} -eq 0
check "checksums.txt lists the 12 files" test "$(wc -l <dist/checksums.txt)" -eq 12
check "sha256sum -c checksums.txt" bash -c 'cd dist && sha256sum --quiet -c checksums.txt'
tar_list=$(tar -tzf "dist/gatewayd_${version}_linux_armv6.tar.gz")
check "tarball: one top directory with the binary, config, unit, docs" \
	grep -qx "gatewayd_${version}_linux_armv6/gatewayd" <<<"$tar_list"

# ---------------------------------------------------------------- 2. lintian
start=$SECONDS
if lintian --fail-on error,warning --color never dist/*.deb >"$tmp/lintian.out" 2>&1; then
	pass "lintian: no error and no warning on the 4 .deb files ($((SECONDS - start))s)"
else
	fail "lintian: errors or warnings on the .deb files"
fi
grep -v '^running with root privileges' "$tmp/lintian.out" || true

for t in amd64 arm64 armv7 armv6; do
	deb="dist/gatewayd_${version}_linux_$t.deb"
	check "$t .deb: Architecture ${deb_arch[$t]}, Version $version" \
		test "$(dpkg-deb -f "$deb" Architecture Version | tr '\n' ' ')" = "Architecture: ${deb_arch[$t]} Version: $version "
done
description() { dpkg-deb -f "dist/gatewayd_${version}_linux_$1.deb" Description | tr -s '\n ' '  '; }
check "armv6 .deb says it is the one for every Raspberry Pi" grep -q "runs on every Raspberry Pi" <(description armv6)
check "armv7 .deb says it is not for a Pi Zero or 1" grep -q "does not run on a Raspberry Pi Zero or 1" <(description armv7)

# ---------------------------------------------------------------- 3. rpm
for t in amd64 arm64 armv7 armv6; do
	rpm_file="dist/gatewayd_${version}_linux_$t.rpm"
	check "$t .rpm: arch ${rpm_arch[$t]}" test "$(rpm -qp --qf '%{ARCH}' "$rpm_file" 2>/dev/null)" = "${rpm_arch[$t]}"
done
rpm_file="dist/gatewayd_${version}_linux_amd64.rpm"
rpm -qpl "$rpm_file" >"$tmp/rpm.files" 2>/dev/null
for f in /usr/bin/gatewayd /etc/gatewayd/gateway.yaml /usr/lib/systemd/system/gatewayd.service \
	/usr/share/doc/gatewayd/README.md /usr/share/doc/gatewayd/copyright /usr/share/man/man1/gatewayd.1.gz; do
	check "rpm -qpl lists $f" grep -qx "$f" "$tmp/rpm.files"
done
check "rpm -qpc: /etc/gatewayd/gateway.yaml is the only config file" \
	test "$(rpm -qpc "$rpm_file" 2>/dev/null)" = /etc/gatewayd/gateway.yaml
check "rpm: gateway.yaml is %config(noreplace)" \
	grep -qx '/etc/gatewayd/gateway.yaml cn' <(rpm -qp --qf '[%{FILENAMES} %{FILEFLAGS:fflags}\n]' "$rpm_file" 2>/dev/null)
rpm -qp --scripts "$rpm_file" >"$tmp/rpm.scripts" 2>/dev/null
scriptlets_ok() {
	grep -q '^postinstall scriptlet' "$tmp/rpm.scripts" && grep -q 'enable gatewayd.service' "$tmp/rpm.scripts" &&
		grep -q 'disable gatewayd.service' "$tmp/rpm.scripts" && grep -q 'try-restart gatewayd.service' "$tmp/rpm.scripts"
}
check "rpm scriptlets: %post enables, %preun disables, %postun try-restarts" scriptlets_ok
check "rpm %changelog names this version" grep -q -- "- ${version%%~*}" <(rpm -qp --changelog "$rpm_file" 2>/dev/null)

# ---------------------------------------------------------------- 4. dpkg -i, upgrade, -r, -P
if dpkg-query -W gatewayd >/dev/null 2>&1 || ! absent /etc/gatewayd || ! absent /var/lib/gatewayd; then
	die "gatewayd is installed here already, or /etc/gatewayd or /var/lib/gatewayd exists: not touching it"
fi
systemd_running=0
[[ -d /run/systemd/system ]] && systemd_running=1
echo "-- systemd running: $systemd_running"
deb="dist/gatewayd_${version}_linux_amd64.deb"
installed=1
check "dpkg -i $deb" "${sudo[@]}" dpkg -i "$deb"
check "dpkg-query: installed, version $version" \
	test "$(dpkg-query -W -f '${Status} ${Version}' gatewayd)" = "install ok installed $version"
out=$(/usr/bin/gatewayd -version)
echo "   $out"
check "/usr/bin/gatewayd -version: version, commit, Go, platform, build date" \
	grep -Eq "^gatewayd $(sed 's/[.+~]/\\&/g' <<<"$version") \(commit $commit, go1\.[0-9.]+ linux/amd64, built [0-9-]+T[0-9:]+Z\)$" <<<"$out"
check "gatewayd -check -config /etc/gatewayd/gateway.yaml" \
	"${sudo[@]}" /usr/bin/gatewayd -check -config /etc/gatewayd/gateway.yaml >"$tmp/check.out"
verify_err=$(systemd-analyze verify /lib/systemd/system/gatewayd.service 2>&1 >/dev/null) || verify_err+=" (exit $?)"
check "systemd-analyze verify /lib/systemd/system/gatewayd.service: nothing on stderr${verify_err:+: $verify_err}" test -z "$verify_err"
check "the unit points at /usr/bin/gatewayd" grep -q '^ExecStart=/usr/bin/gatewayd ' /lib/systemd/system/gatewayd.service
check "conffile: /etc/gatewayd/gateway.yaml" grep -q '/etc/gatewayd/gateway.yaml' <(dpkg-query -W -f '${Conffiles}' gatewayd)
check "enabled: multi-user.target.wants/gatewayd.service" test -L /etc/systemd/system/multi-user.target.wants/gatewayd.service
check "man gatewayd, README, copyright, changelog.gz, examples installed" \
	test -s /usr/share/man/man1/gatewayd.1.gz -a -s /usr/share/doc/gatewayd/README.md -a -s /usr/share/doc/gatewayd/copyright \
	-a -s /usr/share/doc/gatewayd/changelog.gz -a -s /usr/share/doc/gatewayd/examples/raspberry-pi.yaml
if ((systemd_running)); then
	check "systemd runs: gatewayd.service is active" wait_for 20 systemctl is-active --quiet gatewayd.service
fi

# The operator's edit, then an upgrade to a newer version.
"${sudo[@]}" sed -i 's/^    interval: 10s$/    interval: 15s   # edited by test\/packages.sh/' /etc/gatewayd/gateway.yaml
check "config edited" grep -q 'edited by test/packages.sh' /etc/gatewayd/gateway.yaml
upgrade_version=99.0.0+upgrade.test
(cd tools/dist && go run . -root ../.. -out "$tmp/upgrade" -version "$upgrade_version" -targets amd64) >"$tmp/upgrade.log" 2>&1 ||
	{ cat "$tmp/upgrade.log"; die "building the $upgrade_version .deb"; }
check "dpkg -i an upgrade ($version -> $upgrade_version)" \
	"${sudo[@]}" dpkg -i "$tmp/upgrade/gatewayd_${upgrade_version}_linux_amd64.deb"
check "upgrade installed" test "$(dpkg-query -W -f '${Version}' gatewayd)" = "$upgrade_version"
check "the edit survived the upgrade" grep -q 'edited by test/packages.sh' /etc/gatewayd/gateway.yaml
check "no .dpkg-new/.dpkg-dist left beside it" bash -c '! ls /etc/gatewayd/*.dpkg-* 2>/dev/null'
check "the config is still valid" "${sudo[@]}" /usr/bin/gatewayd -check -config /etc/gatewayd/gateway.yaml >"$tmp/check.out"

# What a running service would have left: the state directory systemd
# makes for DynamicUser=yes (/var/lib/gatewayd -> private/gatewayd) with a
# disk buffer, and an operator's file in /etc/gatewayd.
[[ -d /var/lib/private ]] || made_private=1
"${sudo[@]}" install -d -m 0700 /var/lib/private
"${sudo[@]}" install -d -m 0700 /var/lib/private/gatewayd
echo buffer | "${sudo[@]}" tee /var/lib/private/gatewayd/buffer.db >/dev/null
"${sudo[@]}" ln -s private/gatewayd /var/lib/gatewayd
echo secret | "${sudo[@]}" tee /etc/gatewayd/mqtt-password >/dev/null

check "dpkg -r gatewayd" "${sudo[@]}" dpkg -r gatewayd
check "removed: status deinstall ok config-files" test "$(dpkg-query -W -f '${Status}' gatewayd)" = "deinstall ok config-files"
check "removed: /usr/bin/gatewayd gone" absent /usr/bin/gatewayd
check "removed: the unit gone" absent /lib/systemd/system/gatewayd.service
check "removed: the edited config kept" grep -q 'edited by test/packages.sh' /etc/gatewayd/gateway.yaml
check "removed: the disk buffer kept" "${sudo[@]}" test -s /var/lib/private/gatewayd/buffer.db

check "dpkg -P gatewayd" "${sudo[@]}" dpkg -P gatewayd
installed=0
check "purged: dpkg knows no gatewayd" bash -c '! dpkg-query -W gatewayd >/dev/null 2>&1'
left=()
for p in /etc/gatewayd /var/lib/gatewayd /var/lib/private/gatewayd /usr/bin/gatewayd /lib/systemd/system/gatewayd.service \
	/etc/systemd/system/gatewayd.service /etc/systemd/system/multi-user.target.wants/gatewayd.service \
	/var/lib/systemd/deb-systemd-helper-enabled/gatewayd.service.dsh-also \
	/var/lib/systemd/deb-systemd-helper-enabled/multi-user.target.wants/gatewayd.service \
	/var/lib/systemd/deb-systemd-helper-masked/gatewayd.service /usr/share/doc/gatewayd /usr/share/man/man1/gatewayd.1.gz \
	/usr/share/lintian/overrides/gatewayd; do
	absent "$p" || left+=("$p")
done
left+=($("${sudo[@]}" find /etc /lib/systemd /usr/bin /usr/share/doc /usr/share/man /var/lib -name '*gatewayd*' 2>/dev/null || true))
check "purged: nothing left (${left[*]:-nothing})" test ${#left[@]} -eq 0

# ---------------------------------------------------------------- 5. ARM binaries under qemu
mqtt_port=$(free_port)
{
	echo "listener $mqtt_port 127.0.0.1"
	echo "allow_anonymous true"
	echo "log_dest file $tmp/mosquitto.log"
	# As root, mosquitto switches to user "mosquitto", which cannot write to our temp dir.
	if ((EUID == 0)); then echo "user root"; fi
} >"$tmp/mosquitto.conf"
start_broker || die "mosquitto did not start on 127.0.0.1:$mqtt_port"
pass "mosquitto on 127.0.0.1:$mqtt_port"

declare -A qemu=([arm64]="qemu-aarch64-static" [armv7]="qemu-arm-static" [armv6]="qemu-arm-static -cpu arm1176")
declare -A goarch=([arm64]=arm64 [armv7]=armv7 [armv6]=armv6)
declare -A gw_pid
for t in arm64 armv7 armv6; do
	mkdir -p "$tmp/$t"
	dpkg-deb --fsys-tarfile "dist/gatewayd_${version}_linux_$t.deb" | tar -x -C "$tmp/$t" ./usr/bin/gatewayd
	bin="$tmp/$t/usr/bin/gatewayd"
	read -r -a run <<<"${qemu[$t]}"
	out=$("${run[@]}" "$bin" -version 2>&1) || true
	check "$t (${qemu[$t]}): -version says linux/${goarch[$t]}: $out" grep -q "^gatewayd $version (commit $commit, go.* linux/${goarch[$t]}, built" <<<"$out"
	cat >"$tmp/$t/once.yaml" <<EOF
gateway: {id: qemu-$t}
sensors:
  - {name: room, type: simulated, interval: 1s, seed: 1}
  - {name: cellar, type: simulated, interval: 1s, seed: 2}
EOF
	"${run[@]}" "$bin" -once -config "$tmp/$t/once.yaml" >"$tmp/$t/once.out" 2>"$tmp/$t/once.err" || true
	check "$t: -once prints 4 readings (2 sensors x temperature, humidity)" \
		test "$(grep -cE "^gatewayd/qemu-$t/(room|cellar)/(temperature|humidity) \{\"sensor\":" "$tmp/$t/once.out")" -eq 4
	cat >"$tmp/$t/daemon.yaml" <<EOF
gateway: {id: qemu-$t}
broker: {urls: ["tcp://127.0.0.1:$mqtt_port"]}
sensors:
  - {name: room, type: simulated, interval: 200ms}
metrics: {listen: "127.0.0.1:$(free_port)"}
EOF
	"${run[@]}" "$bin" -config "$tmp/$t/daemon.yaml" >"$tmp/$t/daemon.log" 2>&1 &
	gw_pid[$t]=$!
	started_pids+=("${gw_pid[$t]}")
done
for t in arm64 armv7 armv6; do
	if mosquitto_sub -h 127.0.0.1 -p "$mqtt_port" -t "gatewayd/qemu-$t/room/+" -C 6 -W 40 >"$tmp/$t/sub.out" 2>&1 &&
		test "$(grep -c '"seq":' "$tmp/$t/sub.out")" -eq 6; then
		pass "$t: the daemon under qemu publishes readings to mosquitto (6 seen by mosquitto_sub)"
	else
		fail "$t: no readings from the daemon under qemu"
		tail -n 20 "$tmp/$t/daemon.log"
	fi
done
for t in arm64 armv7 armv6; do
	kill -TERM "${gw_pid[$t]}"
	rc=0
	wait "${gw_pid[$t]}" || rc=$?
	check "$t: SIGTERM: exit 0 (got $rc)" test "$rc" -eq 0
done

# The control: an ARMv7 build dies on the ARM1176, so the armv6 pass above
# means the armv6 build really is ARMv6.
rc=0
(qemu-arm-static -cpu arm1176 "$tmp/armv7/usr/bin/gatewayd" -version >/dev/null 2>&1; exit $?) 2>/dev/null || rc=$?
check "control: the armv7 binary dies on an ARM1176 (exit $rc; 132 is SIGILL)" test "$rc" -ne 0

if ((failures > 0)); then
	echo "$failures check(s) FAILED"
	exit 1
fi
echo "all package checks passed"
