#!/usr/bin/env bash
# Make sure the services the test suite talks to are up: PostgreSQL on 127.0.0.1:5432
# (database `test`, trust auth), NATS on 127.0.0.1:4222 and the bubblewrap sandbox. Installs and starts them when
# missing, as on a fresh machine.
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

nats_ready() { (echo >/dev/tcp/127.0.0.1/4222) >/dev/null 2>&1; }
# The binary is needed even when a server already runs: the fault drills start their own
# `nats-server -js` on a free port, to kill and restart it.
if ! command -v nats-server >/dev/null 2>&1 && [ ! -x /usr/sbin/nats-server ]; then
  say "installing NATS"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq nats-server >/dev/null
fi
if ! nats_ready; then
  say "starting NATS"
  nats_bin="$(command -v nats-server || echo /usr/sbin/nats-server)"
  mkdir -p /var/lib/nats-server
  start-stop-daemon --start --oknodo --background --exec "${nats_bin}" -- \
    -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log
  for _ in $(seq 1 30); do nats_ready && break; sleep 1; done
fi
nats_ready || { say "NATS did not come up on 127.0.0.1:4222"; exit 1; }
say "NATS ready on 127.0.0.1:4222"

# The sandbox for model-written code (dry runs, acceptance tests): bubblewrap, plus setpriv and
# prlimit from util-linux. Without it those tests report SKIPPED (and fail under CI=true).
if ! command -v bwrap >/dev/null 2>&1; then
  say "installing bubblewrap"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq bubblewrap >/dev/null
fi
for tool in bwrap setpriv prlimit; do
  command -v "${tool}" >/dev/null 2>&1 || { say "${tool} is missing"; exit 1; }
done
bwrap --unshare-all --ro-bind / / --dev /dev --proc /proc true \
  || { say "bubblewrap cannot create namespaces on this machine"; exit 1; }
say "bubblewrap sandbox works"

# kubectl renders the deployment manifests in tests/deploy_manifests.rs (`kubectl kustomize`):
# Debian's kubernetes-client package when no kubectl is installed.
if ! command -v kubectl >/dev/null 2>&1; then
  say "installing kubectl (Debian's kubernetes-client)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq kubernetes-client >/dev/null
fi
command -v kubectl >/dev/null 2>&1 || { say "kubectl is missing"; exit 1; }
say "kubectl ready ($(kubectl version --client 2>/dev/null | head -n 1))"
