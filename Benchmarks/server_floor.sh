#!/usr/bin/env bash
# parley-server against its floor: the same server with Benchmarks/server-floor.patch
# applied (private messages forwarded straight after the WebSocket frame is read, no
# application at all), in interleaved open-loop runs of `parley-bench server`.
#
# Usage: Benchmarks/server_floor.sh [rate ...]     (default: 21600 34000)
# Builds the floor in a git worktree under .build/floor (a cold release build: 5-10 min).
set -euo pipefail
cd "$(dirname "$0")/.."
rates=("$@")
[[ ${#rates[@]} -gt 0 ]] || rates=(21600 34000)
rounds="${ROUNDS:-2}"

swift build -q -c release --product parley-server
swift build -q -c release --product parley-bench
floor=.build/floor
[[ -d $floor ]] || git worktree add -q --detach "$floor" HEAD
git -C "$floor" checkout -q --force --detach "$(git rev-parse HEAD)"
git -C "$floor" apply "$PWD/Benchmarks/server-floor.patch"
(cd "$floor" && swift build -q -c release --product parley-server)

run() {  # run BINARY RATE
    .build/release/parley-bench server --parley-server "$1" --clients 1000 --seconds 10 --rate "$2" 2>/dev/null | grep '^{' |
        python3 -c 'import json,sys; d=json.loads(sys.stdin.read()); print("%-5s %6d/s  p50 %7.2f ms  p99 %7.2f ms  server %5.1f us/msg  benchmark %5.1f us/msg" % (sys.argv[1], d["target_rate"], d["p50_ms"], d["p99_ms"], d["server_us_per_msg"], d["bench_us_per_msg"]))' "$3"
}
for rate in "${rates[@]}"; do
    for _ in $(seq "$rounds"); do
        run .build/release/parley-server "$rate" full
        run "$floor/.build/release/parley-server" "$rate" floor
    done
done
