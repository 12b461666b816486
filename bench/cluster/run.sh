#!/usr/bin/env bash
# Changes through the cluster: RUNS runs (env, default 3) of bench_apply,
# each against a fresh nats-server -js on a free loopback port in a temp
# dir (stopped after it): N (default 5000) suspend/resume changes
# published one by one, then applied by one node's applier.
#	bench/cluster/run.sh [BUILD] [N]
set -euo pipefail
build=${1:-build}
n=${2:-5000}
runs=${RUNS:-3}
exe="$build/bench/cluster/bench_apply"
[ -x "$exe" ] || { echo "no $exe (a build with libnats)" >&2; exit 1; }
for i in $(seq "$runs"); do
	dir=$(mktemp -d)
	port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
	nats-server -js -a 127.0.0.1 -p "$port" -sd "$dir/js" >"$dir/nats.log" 2>&1 &
	pid=$!
	trap 'kill $pid 2>/dev/null; rm -rf "$dir"' EXIT
	for _ in $(seq 100); do
		(echo >/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break
		sleep 0.05
	done
	echo "run $i load=$(cut -d' ' -f1 /proc/loadavg) $("$exe" "nats://127.0.0.1:$port" "$dir" "$n")"
	kill "$pid"
	wait "$pid" 2>/dev/null || true
	rm -rf "$dir"
	trap - EXIT
done
