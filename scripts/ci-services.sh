#!/usr/bin/env bash
# Make sure the services the test suite talks to are up: PostgreSQL on 127.0.0.1:5432
# (database `test`, trust auth). Installs and starts it when missing, as on a fresh machine.
set -euo pipefail

say() { echo "ci-services: $*" >&2; }

pg_ready() { pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; }

if ! command -v pg_isready >/dev/null 2>&1 || ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
  say "installing PostgreSQL"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq postgresql >/dev/null
fi

if ! pg_ready; then
  say "starting PostgreSQL"
  version="$(ls /etc/postgresql | sort -V | tail -n 1)"
  pg_ctlcluster --skip-systemctl-redirect "${version}" main start || true
  for _ in $(seq 1 30); do pg_ready && break; sleep 1; done
fi
pg_ready || { say "PostgreSQL did not come up on 127.0.0.1:5432"; exit 1; }

# Trust auth over TCP and a `test` database, as the test suite expects.
if ! psql -h 127.0.0.1 -U postgres -d test -Atqc 'select 1' >/dev/null 2>&1; then
  say "configuring PostgreSQL (trust auth on loopback, database test)"
  hba="$(su postgres -c "psql -Atqc 'show hba_file'")"
  if ! grep -q '^host all all 127.0.0.1/32 trust' "${hba}"; then
    sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "${hba}"
    su postgres -c "psql -Atqc 'select pg_reload_conf()'" >/dev/null
  fi
  su postgres -c "psql -Atqc \"select 1 from pg_database where datname='test'\"" | grep -q 1 \
    || su postgres -c "createdb test"
fi
psql -h 127.0.0.1 -U postgres -d test -Atqc 'select 1' >/dev/null
say "PostgreSQL ready on 127.0.0.1:5432"
