#!/usr/bin/env bash
# Make sure PostgreSQL and Valkey (or Redis) answer on loopback, for `make run` and
# `make test` on a bare Debian box: use MHERO_DATABASE_URL / MHERO_VALKEY_URL when set,
# otherwise start the local services, installing them with apt when missing and running
# as root, and otherwise say exactly what to do. Safe to run again and again.
set -euo pipefail

say() { printf 'deps: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

# host and port from a URL such as postgres://user@host:5432/db?x=y
url_host() { local u=${1#*://}; u=${u#*@}; u=${u%%/*}; u=${u%%\?*}; echo "${u%%:*}"; }
url_port() { local u=${1#*://}; u=${u#*@}; u=${u%%/*}; u=${u%%\?*}; [[ $u == *:* ]] && echo "${u##*:}" || echo "$2"; }

answers() { timeout 2 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null; }
wait_for() { for _ in $(seq 1 60); do answers "$1" "$2" && return 0; sleep 0.5; done; return 1; }
is_loopback() { [[ $1 == 127.* || $1 == localhost || $1 == ::1 ]]; }
apt_install() {
	[[ $(id -u) == 0 ]] || return 1
	say "installing $* with apt-get"
	DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
}

# --- PostgreSQL ---------------------------------------------------------------------
PG_URL=${MHERO_DATABASE_URL:-${MHERO_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable}}
PG_HOST=$(url_host "$PG_URL"); PG_PORT=$(url_port "$PG_URL" 5432)
if ! answers "$PG_HOST" "$PG_PORT"; then
	is_loopback "$PG_HOST" || die "PostgreSQL at $PG_HOST:$PG_PORT does not answer; start it or fix MHERO_DATABASE_URL."
	if ! command -v pg_ctlcluster >/dev/null; then
		apt_install postgresql || die "PostgreSQL is not installed. Run as root: apt-get install postgresql   (or set MHERO_DATABASE_URL)"
		# A fresh Debian cluster asks for passwords over TCP; this is a development box,
		# so let loopback connections in without one (never do this on a shared server).
		for hba in /etc/postgresql/*/main/pg_hba.conf; do
			grep -q '^host all all 127.0.0.1/32 trust' "$hba" || sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
		done
	fi
	version=$(ls /etc/postgresql | sort -V | tail -n1)
	say "starting PostgreSQL $version"
	pg_ctlcluster --skip-systemctl-redirect "$version" main start >&2 || true
	# The package's own scripts may have started it before pg_hba.conf changed.
	pg_ctlcluster --skip-systemctl-redirect "$version" main reload >&2 || true
	wait_for "$PG_HOST" "$PG_PORT" || die "PostgreSQL did not come up on $PG_HOST:$PG_PORT; see /var/log/postgresql/."
fi
say "PostgreSQL answers on $PG_HOST:$PG_PORT"

# `make run` uses the mhero database: create it when it is missing.
if [[ -n ${MHERO_ENSURE_DB:-} ]] && command -v psql >/dev/null; then
	admin=${PG_URL%%\?*}; admin=${admin%/*}/postgres
	if ! psql "$admin" -tAc "SELECT 1 FROM pg_database WHERE datname = '$MHERO_ENSURE_DB'" | grep -q 1; then
		say "creating database $MHERO_ENSURE_DB"
		psql "$admin" -qc "CREATE DATABASE \"$MHERO_ENSURE_DB\"" >&2
	fi
fi

# --- Valkey / Redis -----------------------------------------------------------------
KV_URL=${MHERO_VALKEY_URL:-${MHERO_TEST_VALKEY_URL:-redis://127.0.0.1:6379/0}}
KV_HOST=$(url_host "$KV_URL"); KV_PORT=$(url_port "$KV_URL" 6379)
if ! answers "$KV_HOST" "$KV_PORT"; then
	is_loopback "$KV_HOST" || die "Valkey at $KV_HOST:$KV_PORT does not answer; start it or fix MHERO_VALKEY_URL."
	server=$(command -v valkey-server || command -v redis-server || true)
	if [[ -z $server ]]; then
		# Valkey is not packaged for this Debian; Redis speaks the same protocol.
		apt_install valkey-server 2>/dev/null || apt_install redis-server ||
			die "Neither Valkey nor Redis is installed. Run as root: apt-get install redis-server   (or set MHERO_VALKEY_URL)"
		server=$(command -v valkey-server || command -v redis-server)
	fi
	say "starting $(basename "$server") on 127.0.0.1:$KV_PORT"
	"$server" --daemonize yes --bind 127.0.0.1 --port "$KV_PORT" --save "" --appendonly no >&2
	wait_for "$KV_HOST" "$KV_PORT" || die "$(basename "$server") did not come up on $KV_HOST:$KV_PORT."
fi
say "Valkey/Redis answers on $KV_HOST:$KV_PORT"
