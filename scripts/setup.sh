#!/usr/bin/env bash
# Installs what ferry needs and builds it; safe to run again (npm start and npm test run it first).
set -euo pipefail
cd "$(dirname "$0")/.."

# npm dependencies: installed when missing or when package-lock.json changed since the last install.
stamp=node_modules/.ferry-lock
lock_sum=$(sha1sum package-lock.json | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$lock_sum" ]; then
  if [ -d node_modules ] && npm ls --depth=0 >/dev/null 2>&1 && node -e "require('better-sqlite3')" 2>/dev/null; then
    :
  else
    echo "setup: installing npm dependencies (npm ci)..." >&2
    npm ci --no-audit --no-fund --loglevel=error >&2
  fi
  echo "$lock_sum" > "$stamp"
fi

# A Debian package, where apt can install it (as root, or with sudo that needs no password).
apt_install() {
  local SUDO=""
  [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && SUDO="sudo -n"
  if command -v apt-get >/dev/null 2>&1 && { [ "$(id -u)" -eq 0 ] || [ -n "$SUDO" ]; }; then
    echo "setup: installing $1 (Debian package)..." >&2
    $SUDO apt-get update -qq >&2 || true
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$1" >&2
  fi
}

# nats-server: the Debian package, where it is missing and can be installed.
if ! command -v nats-server >/dev/null 2>&1 && [ ! -x /usr/sbin/nats-server ]; then
  apt_install nats-server
  if ! command -v nats-server >/dev/null 2>&1 && [ ! -x /usr/sbin/nats-server ]; then
    echo "setup: nats-server is missing; install it with: sudo apt-get install -y nats-server" >&2
    exit 1
  fi
fi

# Chromium (Debian's package), for the dashboard's browser test: with --chromium (npm test and CI do),
# where it is missing. Without it only that test fails, and says how to install it.
want_chromium=""; want_postgres=""
for a in "$@"; do
  case "$a" in
    --chromium) want_chromium=1 ;;
    --postgres) want_postgres=1 ;;
  esac
done

if [ -n "$want_chromium" ] && [ -z "${FERRY_CHROMIUM:-}" ] && [ ! -x /usr/bin/chromium ]; then
  apt_install chromium || true
  [ -x /usr/bin/chromium ] || echo "setup: chromium is missing (the dashboard test needs it); install it with: sudo apt-get install -y chromium" >&2
fi

# PostgreSQL's server programs (Debian's postgresql package), with --postgres (npm test, npm run
# bench, npm run chaos and CI pass it), where they are missing; `ferry up --postgres` needs them.
# Tests start their own servers and never use the cluster the package may start on 5432. Without
# them only the PostgreSQL tests fail.
pg_server_found() {
  local d
  d=$(pg_config --bindir 2>/dev/null) && [ -x "$d/initdb" ] && return 0
  for d in /usr/lib/postgresql/*/bin; do [ -x "$d/initdb" ] && [ -x "$d/postgres" ] && return 0; done
  return 1
}
if [ -n "$want_postgres" ] && ! pg_server_found; then
  apt_install postgresql || true
  pg_server_found || echo "setup: PostgreSQL's server programs (initdb, postgres) are missing (the PostgreSQL tests need them); install them with: sudo apt-get install -y postgresql" >&2
fi

# Build when a source is newer than the build.
if [ ! -f dist/cli/main.js ] || [ -n "$(find src tsconfig.json -newer dist/cli/main.js -print -quit)" ]; then
  echo "setup: building..." >&2
  npx tsc -p . >&2
  touch dist/cli/main.js
fi
