#!/usr/bin/env bash
# make demo: parley-server and two parley clients (alice and bob) in one tmux session.
set -euo pipefail
port=${1:-3100}
session=parley-demo
root=$(cd "$(dirname "$0")/.." && pwd)
demo="$root/.build/demo"

command -v tmux >/dev/null || { echo "demo: tmux is not installed (make deps installs it)" >&2; exit 2; }
tmux kill-session -t "$session:" 2>/dev/null || true
# A server from an earlier demo needs a moment to let go of the port.
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || break; sleep 0.1; done
if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "demo: something already listens on port $port (make demo DEMO_PORT=… picks another)" >&2
    exit 2
fi
# Fresh identities each time: the usernames below log in without a prompt.
rm -rf "$demo"
mkdir -p -m 700 "$demo" "$demo/alice" "$demo/bob"

server="$root/.build/release/parley-server --port $port"
client="$root/.build/release/parley --url http://127.0.0.1:$port --log-file $demo/parley-%s.log --history-dir $demo/history-%s"

tmux new-session -d -s "$session" -x 200 -y 50 -n chat "$server; echo 'parley-server stopped'; read"
# The clients start once the server answers.
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
tmux split-window -t "$session:chat" -v -p 80 "$(printf "$client" alice alice) --config-dir $demo/alice --username alice"
tmux split-window -t "$session:chat" -h "$(printf "$client" bob bob) --config-dir $demo/bob --username bob"
tmux select-pane -t "$session:chat.1"

echo "parley-demo: parley-server on :$port (top), alice (left) and bob (right)."
echo "Tab picks a user, Enter sends, Ctrl-Q quits a client; tmux kill-session -t parley-demo ends it all."
if [ -t 0 ] && [ -t 1 ] && [ -z "${TMUX:-}" ]; then
    exec tmux attach -t "$session:"
else
    echo "attach with: tmux attach -t parley-demo"
fi
