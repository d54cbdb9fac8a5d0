#!/usr/bin/env bash
# CPU time parley uses while connected and idle: the terminal UI runs in tmux
# against the python-socketio interop server (pings every 25 s), and the CPU
# time of all its threads over the window is counted by `perf stat` (or, without
# perf, from /proc/<pid>/stat). Usage: Benchmarks/idle_cpu.sh [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
port=$((20000 + RANDOM % 20000))
work="$(mktemp -d)"
socket="parley-idle-$$"
cleanup() {
    tmux -L "$socket" kill-server 2>/dev/null || true
    [[ -n "${server:-}" ]] && kill "$server" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

swift build -c release --product parley >/dev/null
python3 Tests/InteropTests/server.py --port "$port" >"$work/server.log" 2>&1 &
server=$!
for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break; sleep 0.1; done

tmux -L "$socket" new-session -d -x 120 -y 40 \
    "env XDG_STATE_HOME=$work/state $PWD/.build/release/parley --url http://127.0.0.1:$port --config-dir $work/config --username idler"
for _ in $(seq 200); do
    tmux -L "$socket" capture-pane -p | grep -q "connected as idler" && break
    sleep 0.1
done
tmux -L "$socket" capture-pane -p | grep -q "connected as idler" || { echo "parley did not connect" >&2; exit 1; }
pid="$(pgrep -f "^$PWD/.build/release/parley --url http://127.0.0.1:$port")"

if command -v perf >/dev/null && perf stat -e task-clock -p "$pid" -- true >/dev/null 2>&1; then
    # perf counts every thread, including ones that come and go during the window, to the microsecond.
    ms="$(perf stat -x, -e task-clock -p "$pid" -- sleep "$seconds" 2>&1 >/dev/null | awk -F, '/task-clock/ { print $1 }')"
    how="perf task-clock"
else
    # utime + stime of the whole process, in clock ticks (10 ms resolution).
    ticks() { awk '{ print $14 + $15 }' /proc/"$pid"/stat; }
    before="$(ticks)"
    sleep "$seconds"
    ms="$(( ($(ticks) - before) * 1000 / $(getconf CLK_TCK) ))"
    how="/proc stat ticks"
fi
awk -v s="$seconds" -v ms="$ms" -v how="$how" 'BEGIN { printf "{\"benchmark\":\"idle\",\"seconds\":%d,\"cpu_ms\":%.1f,\"measured_by\":\"%s\"}\n", s, ms, how }'
