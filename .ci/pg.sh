# shellcheck shell=bash
# Sourced by .ci/run: exports PHASEKIT_PG_URL for the PostgreSQL tests.
#
# Uses the server on PHASEKIT_PG_HOST:PHASEKIT_PG_PORT (default 127.0.0.1:5432), database
# `test`, as user postgres or root, when it answers. Otherwise initdb's a throwaway server
# in a temporary directory, starts it on a free loopback port, creates database `test`, and
# stops and removes it when the sourcing shell exits (an EXIT trap, chained before any
# trap already set; a later `trap ... EXIT` in the caller must call phasekit_pg_stop).

phasekit_pg_host="${PHASEKIT_PG_HOST:-127.0.0.1}"
phasekit_pg_port="${PHASEKIT_PG_PORT:-5432}"
phasekit_pg_dir=""
phasekit_pg_bin=""

phasekit_pg_find_bin() {
    # The newest installed server binaries (initdb, pg_ctl), or the ones on PATH.
    local dir newest=""
    for dir in /usr/lib/postgresql/*/bin; do
        if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then
            newest="$(printf '%s\n' "$newest" "$dir" | sed '/^$/d' | sort -V | tail -n 1)"
        fi
    done
    if [ -n "$newest" ]; then
        echo "$newest"
        return 0
    fi
    if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
        dirname "$(command -v pg_ctl)"
        return 0
    fi
    return 1
}

phasekit_pg_as_owner() {
    # Server commands refuse to run as root: run them as user postgres then.
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

phasekit_pg_try_existing() {
    local user
    pg_isready -q -h "$phasekit_pg_host" -p "$phasekit_pg_port" -t 3 || return 1
    for user in postgres root; do
        if psql -h "$phasekit_pg_host" -p "$phasekit_pg_port" -U "$user" -d test -w \
            -qAtc 'select 1' >/dev/null 2>&1; then
            export PHASEKIT_PG_URL="postgresql://${user}@${phasekit_pg_host}:${phasekit_pg_port}/test"
            return 0
        fi
        # The server answers but has no database `test` yet: create it if we may.
        if psql -h "$phasekit_pg_host" -p "$phasekit_pg_port" -U "$user" -d postgres -w \
            -qAtc 'select 1' >/dev/null 2>&1 \
            && createdb -h "$phasekit_pg_host" -p "$phasekit_pg_port" -U "$user" -w test \
                >/dev/null 2>&1; then
            export PHASEKIT_PG_URL="postgresql://${user}@${phasekit_pg_host}:${phasekit_pg_port}/test"
            return 0
        fi
    done
    return 1
}

phasekit_pg_free_port() {
    python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

phasekit_pg_stop() {
    if [ -n "$phasekit_pg_dir" ] && [ -d "$phasekit_pg_dir" ]; then
        phasekit_pg_as_owner "$phasekit_pg_bin/pg_ctl" -D "$phasekit_pg_dir/data" \
            -m immediate -w stop >/dev/null 2>&1 || true
        rm -rf "$phasekit_pg_dir"
    fi
    phasekit_pg_dir=""
}

phasekit_pg_chain_exit_trap() {
    # Run phasekit_pg_stop at exit, then whatever EXIT trap the caller had already set.
    local previous
    eval "set -- $(trap -p EXIT)"
    previous="${3:-}"
    # shellcheck disable=SC2064
    trap "phasekit_pg_stop; ${previous}" EXIT
}

phasekit_pg_start_own() {
    local port
    phasekit_pg_bin="$(phasekit_pg_find_bin)" || {
        echo "pg.sh: no PostgreSQL answers on ${phasekit_pg_host}:${phasekit_pg_port}" \
            "and no initdb/pg_ctl is installed" >&2
        return 1
    }
    phasekit_pg_dir="$(mktemp -d /tmp/phasekit-pg.XXXXXX)"
    chmod 755 "$phasekit_pg_dir"
    if [ "$(id -u)" = 0 ]; then
        chown postgres: "$phasekit_pg_dir"
    fi
    phasekit_pg_chain_exit_trap
    phasekit_pg_as_owner "$phasekit_pg_bin/initdb" -D "$phasekit_pg_dir/data" -U postgres \
        --auth=trust -E UTF8 --no-sync >"$phasekit_pg_dir/initdb.log" 2>&1 || {
        echo "pg.sh: initdb failed:" >&2
        cat "$phasekit_pg_dir/initdb.log" >&2
        return 1
    }
    port="$(phasekit_pg_free_port)"
    phasekit_pg_as_owner "$phasekit_pg_bin/pg_ctl" -D "$phasekit_pg_dir/data" \
        -l "$phasekit_pg_dir/server.log" -w -t 60 \
        -o "-k $phasekit_pg_dir -h 127.0.0.1 -p $port -c fsync=off" start >/dev/null || {
        echo "pg.sh: the PostgreSQL server did not start:" >&2
        cat "$phasekit_pg_dir/server.log" >&2
        return 1
    }
    createdb -h 127.0.0.1 -p "$port" -U postgres -w test || return 1
    export PHASEKIT_PG_URL="postgresql://postgres@127.0.0.1:${port}/test"
}

if ! phasekit_pg_try_existing; then
    phasekit_pg_start_own
fi
