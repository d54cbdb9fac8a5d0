#!/usr/bin/env bash
# make cluster-demo: a private PostgreSQL, two parley-servers on it (one chat), nginx in
# front, and alice and bob in tmux, each reaching a different server through nginx.
#
#   nginx :$port      → either parley-server, by a hash of the client's address (sticky: a
#                       polling session's requests all reach the server that made it)
#   nginx :$port+1    → parley-server A (:$port+10), B when A does not answer (alice)
#   nginx :$port+2    → parley-server B (:$port+11), A when B does not answer (bob)
#
# nginx proxies WebSocket upgrades and tries the other server when one does not answer:
# kill one, and its clients come back through the other, the same users. Everything lives in .build/cluster-demo; the tmux session is
# parley-cluster: `tmux kill-session -t parley-cluster` and `scripts/cluster-demo.sh stop`.
set -euo pipefail
action=start
if [[ ${1:-} == stop ]]; then action=stop; shift; fi
port=${1:-3200}
root=$(cd "$(dirname "$0")/.." && pwd)
demo="$root/.build/cluster-demo"
session=parley-cluster
pgport=$((port + 20))

bin() {  # a PostgreSQL program (Debian keeps them in /usr/lib/postgresql/<version>/bin)
    local found
    found=$(ls -d /usr/lib/postgresql/*/bin/"$1" 2>/dev/null | sort -V | tail -1)
    [[ -n $found ]] && echo "$found" || command -v "$1"
}
as_postgres() { if [[ $(id -u) == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }

stop() {
    tmux kill-session -t "$session" 2>/dev/null || true
    [[ -f $demo/nginx.pid ]] && kill "$(cat "$demo/nginx.pid")" 2>/dev/null || true
    [[ -f $demo/pg/data/postmaster.pid ]] && kill -INT "$(head -1 "$demo/pg/data/postmaster.pid")" 2>/dev/null || true
    for _ in $(seq 50); do [[ -f $demo/pg/data/postmaster.pid ]] || break; sleep 0.1; done
}
if [[ $action == stop ]]; then stop; exit 0; fi

for tool in tmux nginx; do command -v $tool >/dev/null || { echo "cluster-demo: $tool is not installed (make deps installs it)" >&2; exit 2; }; done
[[ -n $(bin initdb) ]] || { echo "cluster-demo: PostgreSQL is not installed (make deps installs it)" >&2; exit 2; }
stop
rm -rf "$demo"
mkdir -p -m 700 "$demo" "$demo/alice" "$demo/bob"
mkdir -p "$demo/pg" "$demo/nginx-temp"
chmod 777 "$demo/nginx-temp"

# PostgreSQL of the demo's own: its data and socket in .build, owned by the postgres user.
password=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
echo "$password" >"$demo/pg/password"
[[ $(id -u) == 0 ]] && chown -R postgres: "$demo/pg" && chmod 711 "$demo"
as_postgres "$(bin initdb)" -D "$demo/pg/data" -U parley --pwfile "$demo/pg/password" -A scram-sha-256 -E UTF8 --locale C >"$demo/pg/initdb.log"
as_postgres "$(bin postgres)" -D "$demo/pg/data" -p "$pgport" -k "$demo/pg" -c listen_addresses=127.0.0.1 >"$demo/pg/postgres.log" 2>&1 &
for _ in $(seq 100); do grep -q "ready to accept connections" "$demo/pg/postgres.log" 2>/dev/null && break; sleep 0.1; done
PGPASSWORD=$password "$(bin psql)" -X -q -h 127.0.0.1 -p "$pgport" -U parley -d postgres -c "CREATE DATABASE chat"
url="postgres://parley@127.0.0.1:$pgport/chat"

# nginx: WebSocket upgrades through, the next server when one does not answer.
cat >"$demo/proxy.conf" <<EOF
proxy_http_version 1.1;
proxy_set_header Upgrade \$http_upgrade;
proxy_set_header Connection \$connection_upgrade;
proxy_set_header X-Forwarded-For \$remote_addr;
proxy_read_timeout 120s;
proxy_next_upstream error timeout;
EOF
cat >"$demo/nginx.conf" <<EOF
worker_processes 1;
pid $demo/nginx.pid;
error_log $demo/nginx-error.log;
events { worker_connections 1024; }
http {
    access_log $demo/nginx-access.log;
    client_body_temp_path $demo/nginx-temp/body;
    proxy_temp_path $demo/nginx-temp/proxy;
    fastcgi_temp_path $demo/nginx-temp/fastcgi;
    uwsgi_temp_path $demo/nginx-temp/uwsgi;
    scgi_temp_path $demo/nginx-temp/scgi;
    map \$http_upgrade \$connection_upgrade { default upgrade; '' close; }
    # The entrance as in production: sticky by client address (a polling session's
    # requests all reach the server that made it), the other server when one is down.
    upstream parley {
        hash \$remote_addr consistent;
        server 127.0.0.1:$((port + 10)) max_fails=1 fail_timeout=5s;
        server 127.0.0.1:$((port + 11)) max_fails=1 fail_timeout=5s;
    }
    # The demo's two users all come from 127.0.0.1: one entrance each, A first or B first.
    upstream via_a { server 127.0.0.1:$((port + 10)) max_fails=1 fail_timeout=5s; server 127.0.0.1:$((port + 11)) backup; }
    upstream via_b { server 127.0.0.1:$((port + 11)) max_fails=1 fail_timeout=5s; server 127.0.0.1:$((port + 10)) backup; }
    server { listen 127.0.0.1:$port; location / { proxy_pass http://parley; include $demo/proxy.conf; } }
    server { listen 127.0.0.1:$((port + 1)); location / { proxy_pass http://via_a; include $demo/proxy.conf; } }
    server { listen 127.0.0.1:$((port + 2)); location / { proxy_pass http://via_b; include $demo/proxy.conf; } }
}
EOF
nginx -p "$demo" -c "$demo/nginx.conf"

server() { echo "PGPASSWORD=$password $root/.build/release/parley-server --port $1 --postgres $url"; }
client="$root/.build/release/parley --log-file $demo/parley-%s.log --history-dir $demo/history-%s"
tmux new-session -d -s "$session" -x 200 -y 50 -n chat "$(server $((port + 10))); echo 'server A stopped'; read"
tmux split-window -t "$session:chat" -h "$(server $((port + 11))); echo 'server B stopped'; read"
for p in $((port + 10)) $((port + 11)); do
    for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && break; sleep 0.1; done
done
tmux split-window -t "$session:chat.0" -v -p 75 "$(printf "$client" alice alice) --url http://127.0.0.1:$((port + 1)) --config-dir $demo/alice --username alice"
tmux split-window -t "$session:chat.2" -v -p 75 "$(printf "$client" bob bob) --url http://127.0.0.1:$((port + 2)) --config-dir $demo/bob --username bob"
tmux select-pane -t "$session:chat.1"

echo "parley-cluster: PostgreSQL :$pgport, parley-server A :$((port + 10)) and B :$((port + 11)) (top), nginx :$port (sticky by address),"
echo "alice through :$((port + 1)) (A first) and bob through :$((port + 2)) (B first), bottom. Ctrl-C in a server's pane stops it: its client comes back through the other."
echo "Stop it all: scripts/cluster-demo.sh stop"
if [ -t 0 ] && [ -t 1 ] && [ -z "${TMUX:-}" ]; then
    exec tmux attach -t "$session:"
else
    echo "attach with: tmux attach -t $session"
fi
