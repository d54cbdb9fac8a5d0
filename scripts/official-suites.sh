#!/usr/bin/env bash
# Runs the official Engine.IO v4 and Socket.IO v5 server test suites, as they are, against
# parley-server's test apps (--app engine.io-test, --app socket.io-test).
#
#   scripts/official-suites.sh PATH-TO-SOCKET.IO-CHECKOUT [engine.io|socket.io]...
#
# The suites live in a checkout of github.com/socketio/socket.io (nothing of theirs is in
# this repository): docs/engine.io-protocol/v4-test-suite and
# docs/socket.io-protocol/v5-test-suite. Each is copied to a temporary directory where only
# its URL line changes (to the port parley-server listens on), and run with Debian's mocha,
# chai, node-fetch and node-ws (installed when missing). Debian has no chai-string, whose
# startsWith the suites use: a four-line stand-in of ours provides it.
set -euo pipefail

checkout="${1:?usage: $0 PATH-TO-SOCKET.IO-CHECKOUT [engine.io|socket.io]...}"
shift
suites=("$@")
[ ${#suites[@]} -gt 0 ] || suites=(engine.io socket.io)
here="$(cd "$(dirname "$0")/.." && pwd)"
server="${PARLEY_SERVER:-$here/.build/release/parley-server}"

missing=()
for p in nodejs mocha chai node-fetch node-ws; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing Debian packages: ${missing[*]}"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi
[ -x "$server" ] || (cd "$here" && swift build -c release --product parley-server)

work="$(mktemp -d)"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

status=0
for suite in "${suites[@]}"; do
    case "$suite" in
    engine.io) source_dir="$checkout/docs/engine.io-protocol/v4-test-suite" ;;
    socket.io) source_dir="$checkout/docs/socket.io-protocol/v5-test-suite" ;;
    *) echo "unknown suite $suite (engine.io or socket.io)" >&2; exit 2 ;;
    esac
    [ -f "$source_dir/test-suite.js" ] || { echo "no $source_dir/test-suite.js: is $checkout a socket.io checkout?" >&2; exit 2; }

    dir="$work/$suite"
    mkdir -p "$dir/node_modules/chai-string"
    cp "$source_dir/test-suite.js" "$source_dir/node-imports.js" "$source_dir/package.json" "$dir/"
    # Debian's node modules, where the suite's imports look for them…
    for module in /usr/share/nodejs/*; do
        [ -e "$dir/node_modules/$(basename "$module")" ] || ln -s "$module" "$dir/node_modules/"
    done
    # …and chai-string's startsWith, which Debian does not package.
    echo '{"name": "chai-string", "main": "index.js"}' >"$dir/node_modules/chai-string/package.json"
    cat >"$dir/node_modules/chai-string/index.js" <<'JS'
module.exports = (chai) => chai.Assertion.addMethod("startsWith", function (prefix) {
  const actual = this._obj;
  this.assert(typeof actual === "string" && actual.startsWith(prefix), "expected #{this} to start with #{exp}", "expected #{this} not to start with #{exp}", prefix);
});
JS

    "$server" --app "$suite-test" --port 0 --log-level warning >"$work/$suite.port" 2>"$work/$suite.log" &
    pids+=($!)
    for _ in $(seq 100); do grep -q LISTENING "$work/$suite.port" 2>/dev/null && break; sleep 0.1; done
    port="$(awk '/LISTENING/ {print $2}' "$work/$suite.port")"
    [ -n "$port" ] || { echo "parley-server --app $suite-test did not start:"; cat "$work/$suite.log"; exit 1; }
    # The one line that changes: where the server is.
    sed -i "s|^const URL = .*|const URL = \"http://localhost:$port\";|" "$dir/test-suite.js"

    echo "== the official $suite suite against parley-server --app $suite-test (port $port)"
    if ! (cd "$dir" && NODE_PATH=/usr/share/nodejs NODE_OPTIONS=--preserve-symlinks mocha --reporter tap test-suite.js); then
        status=1
    fi
done
exit $status
