#!/usr/bin/env bash
# Run pacifica-notifications 0.5.2's own test suite (30 tests, from its PyPI sdist)
# against OUR package, to check that the 0.5.2 module API is still supported.
#
# Usage (any cwd), in an activated virtualenv where our package is installed:
#     tests/compat/run_0_5_2_suite.sh
#
# Needs: PostgreSQL on 127.0.0.1:5432 (user postgres, trust auth), Redis on
# 127.0.0.1:6379, ports 8070, 8080 and 8181 free, network access to PyPI, and
# pg_config plus a C compiler (the suite's cmd_test.py pip-installs psycopg2 from
# source into a virtualenv it makes itself).
#
# What it does:
#   1. pip-installs tests/compat/requirements.txt into the active virtualenv;
#   2. downloads and unpacks the 0.5.2 sdist into a temporary folder and deletes its
#      own pacifica/ package (and egg-info), so that the tests import ours;
#   3. (re)creates the PostgreSQL database $COMPAT_DB_NAME and sets the environment
#      the suite expects (see .travis.yml in the sdist);
#   4. starts the peers the suite talks to: a policy-server stand-in on :8181
#      (policy_server.py) and the sdist's tests/cherrypy_catch_test.py target on :8080;
#   5. runs `cd tests; pytest -v` in the sdist, with sdist_conftest.py copied in as
#      tests/conftest.py (Celery 4 -> 5 command-line shim, per-test timeouts, results
#      file), under a whole-run timeout;
#   6. prints a summary; exits 0 only if exactly the allowed tests fail (28 of 30 pass).
#
# Exit status: 0 as expected; 1 the suite did not give the expected result;
# 2 the environment is not usable (a port taken, no database, no PyPI...).
#
# Tunables (environment): COMPAT_DB_NAME (pacifica_compat_052), COMPAT_RUN_TIMEOUT
# (900 s, whole pytest run), COMPAT_TEST_TIMEOUT (120 s per test),
# COMPAT_CMD_TEST_TIMEOUT (600 s per cmd_test.py test), COMPAT_KEEP=1 (keep the
# temporary folder even when the run succeeds; it is always kept when it fails),
# COMPAT_PYTEST_ARGS (extra pytest arguments, e.g. "-k eventmatch"; a subset of the
# tests cannot give the expected result, so the status is then 1: read the summary).
#
# Caveat: the suite's tearDown broadcasts `celery control shutdown` on Redis db 0,
# which stops every Celery worker with remote control on that Redis db, not only
# the suite's own: do not run this beside other test runs that use redis db 0.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SUITE_VERSION=0.5.2
EXPECTED_TESTS=30
# The tests allowed (and expected) to fail, each with what its failure must say: the
# service answers, with the status our package deliberately gives instead of 0.5.2's
# (400 for a malformed UUID instead of an unhandled 500; 200 and [] for an empty
# subscription list instead of 403).  Failing any other way is a failure.
ALLOWED_FAILURES=(
  'eventmatch_test.py::EventMatchCPTest::test_bad_uuid=^AssertionError: 400 != 500'
  'eventmatch_test.py::EventMatchCPTest::test_not_found=^AssertionError: 200 != 403'
)
DB_NAME=${COMPAT_DB_NAME:-pacifica_compat_052}
PG_HOST=127.0.0.1
PG_PORT=5432
PG_USER=postgres
REDIS_HOST=127.0.0.1
REDIS_PORT=6379
BROKER=redis://$REDIS_HOST:$REDIS_PORT/0
SERVICE_PORT=8070   # the suite's in-process CherryPy service
TARGET_PORT=8080    # tests/cherrypy_catch_test.py
POLICY_PORT=8181    # policy_server.py
RUN_TIMEOUT=${COMPAT_RUN_TIMEOUT:-900}
PEER_DEADLINE=30

log() { printf 'compat: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 2; }

WORK=''
TARGET_PID=''
POLICY_PID=''
PYTEST_PGID=''
TAIL_PID=''
RUN_OK=0

# stop_pid PID NAME: TERM, wait up to 10 s, then KILL; only ever the PIDs we started.
stop_pid() {
  local pid=$1 name=$2
  [[ -n $pid ]] || return 0
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    sleep 0.2
  done
  log "$name (pid $pid) did not stop on TERM; killing it"
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# stop_group PGID: whatever is left of the pytest process group (it was started
# by `timeout`, which makes its own group): TERM, then KILL, each PID by id.
stop_group() {
  local pgid=$1 pids
  [[ -n $pgid ]] || return 0
  pids=$(pgrep -g "$pgid" 2>/dev/null | tr '\n' ' ' || true)
  [[ -n ${pids// /} ]] || return 0
  log "processes of the test run still alive: $(ps -o pid=,args= -p "${pids// /,}" 2>/dev/null | tr '\n' ';' | cut -c1-600)"
  # shellcheck disable=SC2086
  kill -TERM $pids 2>/dev/null || true
  for _ in $(seq 1 25); do
    pids=$(pgrep -g "$pgid" 2>/dev/null | tr '\n' ' ' || true)
    [[ -n ${pids// /} ]] || return 0
    sleep 0.2
  done
  # shellcheck disable=SC2086
  kill -KILL $pids 2>/dev/null || true
}

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  stop_group "$PYTEST_PGID"
  [[ -n $TAIL_PID ]] && { kill "$TAIL_PID" 2>/dev/null || true; wait "$TAIL_PID" 2>/dev/null || true; }
  stop_pid "$TARGET_PID" "target (cherrypy_catch_test.py)"
  stop_pid "$POLICY_PID" "policy stand-in"
  if [[ -n $WORK && -d $WORK ]]; then
    if [[ $RUN_OK == 1 && ${COMPAT_KEEP:-0} != 1 ]]; then
      rm -rf "$WORK"
    else
      log "kept the work folder (sdist, logs): $WORK"
    fi
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT
trap 'log "terminated"; exit 143' TERM

# --- 0. preconditions --------------------------------------------------------------

command -v python >/dev/null || die "no python on PATH; activate the virtualenv that holds our package"
[[ -n ${VIRTUAL_ENV:-} ]] || log "warning: VIRTUAL_ENV is not set; using $(command -v python)"
OUR_PKG=$(cd / && python -c 'import pacifica.notifications as p, os; print(os.path.dirname(p.__file__))' 2>/dev/null) \
  || die "pacifica.notifications is not importable by $(command -v python); install our package first (pip install -e .)"
OUR_VERSION=$(cd / && python -c 'from pacifica.notifications import __version__; print(__version__)' 2>/dev/null || echo '?')
log "our package: pacifica-notifications $OUR_VERSION at $OUR_PKG (python: $(command -v python))"

port_in_use() {  # port_in_use PORT: true if anything listens on PORT (any address)
  if command -v ss >/dev/null; then
    [[ -n $(ss -Htln "sport = :$1" 2>/dev/null) ]]
  else
    python - "$1" <<'EOF'
import socket, sys
s = socket.socket()
s.settimeout(1)
sys.exit(0 if s.connect_ex(('127.0.0.1', int(sys.argv[1]))) == 0 else 1)
EOF
  fi
}
for port in $SERVICE_PORT $TARGET_PORT $POLICY_PORT; do
  if port_in_use "$port"; then
    die "port $port is already in use ($(ss -Htlnp "sport = :$port" 2>/dev/null | head -1)); \
the suite needs ports $SERVICE_PORT (service), $TARGET_PORT (target) and $POLICY_PORT (policy) free"
  fi
done

# --- 1. the harness's own requirements ---------------------------------------------

WORK=$(mktemp -d "${TMPDIR:-/tmp}/pacifica-compat-$SUITE_VERSION.XXXXXX")
log "work folder: $WORK"
log "installing $HERE/requirements.txt"
python -m pip install -q -r "$HERE/requirements.txt" > "$WORK/pip-install.log" 2>&1 \
  || { tail -20 "$WORK/pip-install.log" >&2; die "pip install -r $HERE/requirements.txt failed (see $WORK/pip-install.log)"; }

python - "$PG_HOST" "$PG_PORT" "$PG_USER" "$REDIS_HOST" "$REDIS_PORT" <<'EOF' || die "PostgreSQL or Redis is not reachable (see above)"
import socket, sys
import psycopg2, redis
host, port, user, rhost, rport = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
try:
    psycopg2.connect(host=host, port=port, user=user, dbname='postgres', connect_timeout=5).close()
except Exception as exc:
    sys.exit(f'compat: cannot connect to PostgreSQL {user}@{host}:{port}: {exc}'.strip())
try:
    redis.Redis(host=rhost, port=rport, socket_connect_timeout=5).ping()
except Exception as exc:
    sys.exit(f'compat: cannot reach Redis at {rhost}:{rport}: {exc}')
EOF
command -v pg_config >/dev/null || log "warning: pg_config is not on PATH; cmd_test.py's pip install psycopg2 (from source) will fail"

# --- 2. the 0.5.2 sdist, without its own package -----------------------------------

python -m pip download -q --no-deps --no-binary :all: "pacifica-notifications==$SUITE_VERSION" -d "$WORK/dl" \
  > "$WORK/pip-download.log" 2>&1 || { tail -20 "$WORK/pip-download.log" >&2; die "pip download of the $SUITE_VERSION sdist failed"; }
SDIST_TGZ=$(ls "$WORK"/dl/pacifica[-_]notifications-"$SUITE_VERSION".tar.gz 2>/dev/null | head -1 || true)
[[ -n $SDIST_TGZ ]] || die "no sdist in $WORK/dl: $(ls "$WORK/dl")"
tar -xzf "$SDIST_TGZ" -C "$WORK"
SDIST=$(ls -d "$WORK"/pacifica[-_]notifications-"$SUITE_VERSION" 2>/dev/null | head -1 || true)
[[ -d $SDIST/tests && -f $SDIST/server.conf ]] || die "unexpected sdist layout in $SDIST"
# pytest puts the sdist root first on sys.path (tests/ is a package): remove the
# sdist's own package so `import pacifica.notifications` finds ours, and its
# egg-info so package metadata lookups do not find 0.5.2 either.
rm -rf "$SDIST/pacifica" "$SDIST"/*.egg-info
[[ ! -e $SDIST/tests/conftest.py ]] || die "the sdist has its own tests/conftest.py; the harness would overwrite it"
cp "$HERE/sdist_conftest.py" "$SDIST/tests/conftest.py"
SEEN_PKG=$(cd "$SDIST/tests" && PYTHONPATH="$SDIST${PYTHONPATH:+:$PYTHONPATH}" \
  python -c 'import pacifica.notifications as p, os; print(os.path.dirname(p.__file__))')
[[ $SEEN_PKG == "$OUR_PKG" ]] || die "from the sdist the tests would import $SEEN_PKG, not ours ($OUR_PKG)"
log "sdist $SUITE_VERSION unpacked at $SDIST; its tests import $SEEN_PKG"

# --- 3. database and environment ---------------------------------------------------

python - "$PG_HOST" "$PG_PORT" "$PG_USER" "$DB_NAME" <<'EOF' || die "could not (re)create database $DB_NAME"
import sys
import psycopg2
from psycopg2 import sql
host, port, user, name = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
conn = psycopg2.connect(host=host, port=port, user=user, dbname='postgres', connect_timeout=5)
conn.autocommit = True
with conn.cursor() as cur:
    cur.execute('SELECT pg_terminate_backend(pid) FROM pg_stat_activity '
                'WHERE datname = %s AND pid <> pg_backend_pid()', (name,))
    cur.execute(sql.SQL('DROP DATABASE IF EXISTS {}').format(sql.Identifier(name)))
    cur.execute(sql.SQL('CREATE DATABASE {}').format(sql.Identifier(name)))
conn.close()
EOF
log "database $DB_NAME created on $PG_HOST:$PG_PORT"

export PEEWEE_URL="postgres://$PG_USER@$PG_HOST:$PG_PORT/$DB_NAME"
export BROKER_URL=$BROKER
export POLICY_URL="http://127.0.0.1:$POLICY_PORT"
export NOTIFICATIONS_CPCONFIG="$SDIST/server.conf"
export RETRY_SCHEDULE=''          # as in 0.5.2: a failed delivery disables the subscription at once
export DATABASE_CONNECT_ATTEMPTS=1
export DATABASE_CONNECT_WAIT=1
export NOTIFICATIONS_DATA_DIR="$WORK/data"   # keep anything embedded out of the user's data folder
export COMPAT_RESULTS="$WORK/results.jsonl"
export PYTHONUNBUFFERED=1
unset NOTIFICATIONS_CONFIG
# Settings the suite does not set must have their built-in defaults.
unset DEFAULT_USER USER_HEADER MAX_REQUEST_BYTES CONNECT_TIMEOUT READ_TIMEOUT MAX_LOGGED_BODY \
  RECOVER_AFTER SWEEP_INTERVAL BACKEND_URL CELERY_QUEUE CELERY_BROKER_URL CELERY_RESULT_BACKEND

# --- 4. peers: policy server and delivery target -------------------------------------

python "$HERE/policy_server.py" --host 127.0.0.1 --port "$POLICY_PORT" > "$WORK/policy.log" 2>&1 &
POLICY_PID=$!
(cd "$SDIST/tests" && exec python cherrypy_catch_test.py) > "$WORK/target.log" 2>&1 &
TARGET_PID=$!

# wait_http NAME PID URL EXPECTED_STATUS: POST {} until it answers as expected (deadline).
wait_http() {
  local name=$1 pid=$2 url=$3 want=$4 got='' deadline=$((SECONDS + PEER_DEADLINE))
  while ((SECONDS < deadline)); do
    kill -0 "$pid" 2>/dev/null || die "$name exited before answering; its log:
$(tail -20 "$WORK/$name.log")"
    got=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 -X POST \
      -H 'Content-Type: application/json' -d '{}' "$url" || true)
    [[ $got == "$want" ]] && return 0
    sleep 0.2
  done
  die "$name did not answer $want at $url within ${PEER_DEADLINE}s (last: ${got:-no answer}); its log:
$(tail -20 "$WORK/$name.log")"
}
wait_http policy "$POLICY_PID" "http://127.0.0.1:$POLICY_PORT/events/dmlb2001" 200
wait_http target "$TARGET_PID" "http://127.0.0.1:$TARGET_PORT/" 200
log "peers up: policy stand-in on :$POLICY_PORT (pid $POLICY_PID), target on :$TARGET_PORT (pid $TARGET_PID)"

# A clean queue: what an earlier, interrupted run left in the broker would be
# delivered during this one (the suite purges only after each test).
(cd "$WORK" && timeout 60 celery -A pacifica.notifications.tasks -b "$BROKER" purge -f) > "$WORK/purge.log" 2>&1 \
  || log "warning: could not purge the broker queue first (see $WORK/purge.log)"

# --- 5. the suite ------------------------------------------------------------------

# As the sdist's .travis.yml: cd tests; pytest. `timeout` runs pytest in its own
# process group, so nothing the run starts can outlive it (see stop_group).
log "running the $SUITE_VERSION suite (whole-run timeout ${RUN_TIMEOUT}s, per test ${COMPAT_TEST_TIMEOUT:-120}s)"
: > "$WORK/pytest.log"
# TMPDIR: cmd_test.py's virtualenv (tempfile.mkdtemp) lands in the work folder,
# so it goes with it even if the run is killed before its tearDownClass.
mkdir -p "$WORK/tmp"
# shellcheck disable=SC2086
(cd "$SDIST/tests" && TMPDIR="$WORK/tmp" exec timeout -k 30 "$RUN_TIMEOUT" python -m pytest -v -rA \
  -p no:cacheprovider ${COMPAT_PYTEST_ARGS:-}) > "$WORK/pytest.log" 2>&1 < /dev/null &
PYTEST_PGID=$!
tail -n +1 -f --pid="$PYTEST_PGID" "$WORK/pytest.log" &
TAIL_PID=$!
PYTEST_RC=0
wait "$PYTEST_PGID" || PYTEST_RC=$?
wait "$TAIL_PID" 2>/dev/null || true
TAIL_PID=''
[[ -z $(tail -c1 "$WORK/pytest.log") ]] || echo   # pytest killed mid-line
case $PYTEST_RC in
  124|137) log "the whole-run timeout (${RUN_TIMEOUT}s) stopped pytest (status $PYTEST_RC); tests that did not finish count as failed" ;;
  *) log "pytest exited with status $PYTEST_RC" ;;
esac
stop_group "$PYTEST_PGID"
PYTEST_PGID=''

# --- 6. summary --------------------------------------------------------------------

allow_args=()
for t in "${ALLOWED_FAILURES[@]}"; do allow_args+=(--allow "$t"); done
SUMMARY_RC=0
python "$HERE/summarize.py" "$COMPAT_RESULTS" --expected "$EXPECTED_TESTS" "${allow_args[@]}" || SUMMARY_RC=$?
if [[ $SUMMARY_RC == 0 ]]; then
  RUN_OK=1
  [[ ${COMPAT_KEEP:-0} == 1 ]] && log "full pytest output: $WORK/pytest.log; peers: $WORK/policy.log, $WORK/target.log"
  exit 0
fi
log "full pytest output: $WORK/pytest.log; peers: $WORK/policy.log, $WORK/target.log"
exit 1
