# shellcheck shell=bash
# Sourced by .ci/run: exports PHASEKIT_REDIS_URL and PHASEKIT_NATS_URL for the broker tests.
#
# Uses the servers those variables name, else Redis on 127.0.0.1:6379 and NATS on
# 127.0.0.1:4222 (JetStream on), when they answer. Otherwise starts a throwaway one
# (redis-server; nats-server -js) on a free loopback port, its files in a temporary directory,
# stopped and removed when the sourcing shell exits (an EXIT trap, chained before any trap
# already set). When a server neither answers nor can be started: an error under CI=true
# (the default of .ci/run), a warning otherwise (its tests are then skipped).

phasekit_services_dir=""
phasekit_services_pids=""

phasekit_service_probe() {
    # phasekit_service_probe redis|nats URL: whether a server answers there (NATS: with JetStream).
    python3 - "$1" "$2" <<'PY'
import json
import socket
import sys
from urllib.parse import unquote, urlsplit

kind, url = sys.argv[1:]
parts = urlsplit(url)
port = parts.port or (6379 if kind == "redis" else 4222)
try:
    with socket.create_connection((parts.hostname or "127.0.0.1", port), timeout=3) as sock:
        sock.settimeout(3)
        answer = sock.makefile("rb")
        if kind == "redis":
            command = [b"PING"]
            if parts.password:
                user = [unquote(parts.username).encode()] if parts.username else []
                command = [b"AUTH", *user, unquote(parts.password).encode()]
            sock.sendall(b"*%d\r\n" % len(command) + b"".join(
                b"$%d\r\n%s\r\n" % (len(arg), arg) for arg in command))
            ok = answer.readline().startswith((b"+PONG", b"+OK"))
        else:
            line = answer.readline()
            ok = line.startswith(b"INFO ") and bool(json.loads(line[5:]).get("jetstream"))
except (OSError, ValueError):
    ok = False
sys.exit(0 if ok else 1)
PY
}

phasekit_service_shown() {
    # A URL without its user, password or token, for the log.
    printf '%s\n' "$1" | sed -E 's#^([A-Za-z]+://)[^/]*@#\1#; s#\?.*$##'
}

phasekit_service_free_port() {
    python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

phasekit_services_stop() {
    local pid
    for pid in $phasekit_services_pids; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    phasekit_services_pids=""
    if [ -n "$phasekit_services_dir" ] && [ -d "$phasekit_services_dir" ]; then
        rm -rf "$phasekit_services_dir"
    fi
    phasekit_services_dir=""
}

phasekit_services_chain_exit_trap() {
    # Run phasekit_services_stop at exit, then whatever EXIT trap was already set.
    local previous
    eval "set -- $(trap -p EXIT)"
    previous="${3:-}"
    # shellcheck disable=SC2064
    trap "phasekit_services_stop; ${previous}" EXIT
}

phasekit_service_start_own() {
    # phasekit_service_start_own redis|nats: start a throwaway server; prints its URL.
    local kind="$1" port url i
    if [ -z "$phasekit_services_dir" ]; then
        phasekit_services_dir="$(mktemp -d /tmp/phasekit-services.XXXXXX)"
        phasekit_services_chain_exit_trap
    fi
    port="$(phasekit_service_free_port)"
    case "$kind" in
        redis)
            command -v redis-server >/dev/null 2>&1 || return 1
            redis-server --bind 127.0.0.1 --port "$port" --save "" --appendonly no \
                --dir "$phasekit_services_dir" >"$phasekit_services_dir/redis.log" 2>&1 &
            url="redis://127.0.0.1:${port}/0"
            ;;
        nats)
            command -v nats-server >/dev/null 2>&1 || return 1
            nats-server -a 127.0.0.1 -p "$port" -js -sd "$phasekit_services_dir/nats" \
                >"$phasekit_services_dir/nats.log" 2>&1 &
            url="nats://127.0.0.1:${port}"
            ;;
    esac
    phasekit_services_pids="$phasekit_services_pids $!"
    for i in $(seq 100); do
        if phasekit_service_probe "$kind" "$url"; then
            echo "$url"
            return 0
        fi
        sleep 0.1
    done
    echo "services.sh: the $kind server did not answer on port $port:" >&2
    cat "$phasekit_services_dir/$kind.log" >&2
    return 1
}

phasekit_service_find() {
    # phasekit_service_find redis|nats VARIABLE DEFAULT_URL [LABEL]: export VARIABLE.
    local kind="$1" variable="$2" url="${!2:-$3}" label="$4" own
    if phasekit_service_probe "$kind" "$url"; then
        export "$variable=$url"
        echo "$label for the tests: $(phasekit_service_shown "$url")"
        return 0
    fi
    # Not "$(...)": the server must be a child of this shell, for the EXIT trap to stop it.
    phasekit_service_start_own "$kind" >"${TMPDIR:-/tmp}/phasekit-$kind.url.$$" || own=""
    own="$(cat "${TMPDIR:-/tmp}/phasekit-$kind.url.$$" 2>/dev/null)"
    rm -f "${TMPDIR:-/tmp}/phasekit-$kind.url.$$"
    if [ -n "$own" ]; then
        export "$variable=$own"
        echo "$label for the tests: $own (started for this run; none answered on" \
            "$(phasekit_service_shown "$url"))"
        return 0
    fi
    if [ "${CI:-}" = true ]; then
        echo "services.sh: no $label answers on $(phasekit_service_shown "$url") and none" \
            "could be started (install ${kind}-server, or set $variable); CI needs its tests" >&2
        return 1
    fi
    echo "services.sh: warning: no $label on $(phasekit_service_shown "$url"); its tests" \
        "will be skipped" >&2
}

phasekit_service_find redis PHASEKIT_REDIS_URL "redis://127.0.0.1:6379/0" Redis
phasekit_service_find nats PHASEKIT_NATS_URL "nats://127.0.0.1:4222" "NATS (JetStream)"
