# Helpers the end-to-end scripts (test/*.sh) share; sourced, not run:
#
#   . "$repo/test/lib.sh"
#
# It sets failures=0 and started_pids=(). A script appends the PID of every
# background process it starts to started_pids, calls stop_started in its
# EXIT trap (then remove_tmp), and ends with a non-zero status when failures > 0.

failures=0
started_pids=() # every background process the script started

pass() { echo "PASS  $*"; }
fail() {
	echo "FAIL  $*"
	failures=$((failures + 1))
}

# stop_started: SIGTERM to every process in started_pids still there, then
# wait for each. Only those: never a process this script did not start.
stop_started() {
	local pid
	for pid in "${started_pids[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in "${started_pids[@]}"; do
		{ wait "$pid"; } 2>/dev/null || true
	done
}

# remove_tmp: rm -rf "$tmp", unless KEEP_TMP=1 (kept for a post-mortem).
remove_tmp() {
	if [[ "${KEEP_TMP:-0}" == 1 ]]; then
		echo "temp dir kept: $tmp"
	else
		rm -rf "$tmp"
	fi
}

# wait_for SECONDS CMD...: run CMD every $wait_for_interval seconds until it
# succeeds (0) or the deadline passes (1).
wait_for_interval=0.1
wait_for() {
	local deadline=$((SECONDS + $1))
	shift
	until "$@"; do
		((SECONDS < deadline)) || return 1
		sleep "$wait_for_interval"
	done
}

# start_broker: mosquitto -c "$tmp/mosquitto.conf" in the background (its
# output appended to "$tmp/mosquitto.out", its PID in mosquitto_pid and
# started_pids); fails unless it accepts on 127.0.0.1:$mqtt_port within 10 s.
mosquitto_pid=
start_broker() {
	mosquitto -c "$tmp/mosquitto.conf" >>"$tmp/mosquitto.out" 2>&1 &
	mosquitto_pid=$!
	started_pids+=("$mosquitto_pid")
	wait_for 10 port_open "$mqtt_port"
}
# stop_broker: SIGTERM to the mosquitto start_broker started (it saves its
# persistence file, if any, and exits), and wait for it.
stop_broker() {
	kill -TERM "$mosquitto_pid"
	wait "$mosquitto_pid" || true
}

# free_port: a TCP port of 127.0.0.1 that was free a moment ago.
free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# port_open PORT: something accepts connections on 127.0.0.1:PORT.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
