#!/usr/bin/env bash
# Smoke test of README's first command on a brand-new machine:
#
#   python3 -m venv .venv && . .venv/bin/activate && pip install . && pacifica-notifications
#
#  1. a new venv in a temp dir, `pip install <repo root>` (no extras, no test dependencies);
#  2. the installed `pacifica-notifications -p PORT` with only PATH and HOME (a new empty dir) in its
#     environment, in an empty working directory, in its own session: embedded default (SQLite and
#     the filesystem broker in $HOME/.local/share/pacifica-notifications) and its own Celery worker;
#  3. a local target HTTP server that records POSTs;
#  4. subscribe the target (POST /eventmatch);
#  5. POST /receive the seed's fixture event tests/fixtures/events.json;
#  6. wait (60 s at most) until the target has received it;
#  7. SIGINT to the server's pid only; every process of its session must be gone within 15 s.
#
# Steps 2-7 are done by fresh_install.py beside this file (standard library only, run with the
# system python3).  Exit status 0 when every step passed; otherwise one line
# "FAIL step N (name): reason", then the server's (or pip's) log tail.
# Usage: bash tests/smoke/fresh_install.sh    (from any directory; takes about a minute)
# FRESH_INSTALL_KEEP=1 keeps the temp dir (venv, HOME, server log) for a post-mortem.
set -uo pipefail

HERE=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
REPO=$(cd -- "$HERE/../.." && pwd -P)
HELPER=$HERE/fresh_install.py

# A brand-new machine has no activated venv and no Python variables that could lend the fresh
# venv packages it did not install itself.
if [[ -n ${VIRTUAL_ENV:-} ]]; then
    PATH=":$PATH:"
    PATH=${PATH//":$VIRTUAL_ENV/bin:"/:}
    PATH=${PATH#:}
    PATH=${PATH%:}
fi
unset VIRTUAL_ENV PYTHONPATH PYTHONHOME PYTHONUSERBASE PYTHONSTARTUP PYTHONNOUSERSITE
export PATH

now() { printf '%s' "${EPOCHREALTIME/[!0-9]/.}"; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

T0=$(now)
WORK=
finish() {
    local rc=$?
    trap - EXIT INT TERM HUP
    if [[ -n $WORK && -d $WORK ]]; then
        # The helper cleans up after itself; this catches a helper that was killed outright.
        python3 "$HELPER" reap --pidfile "$WORK/server.pid" --marker "$WORK" || true
        if [[ ${FRESH_INSTALL_KEEP:-} == 1 ]]; then
            echo "kept $WORK"
        else
            rm -rf -- "$WORK"
        fi
    fi
    if [[ $rc == 0 ]]; then
        echo "PASS fresh install smoke test, total $(since "$T0")s"
    else
        echo "fresh install smoke test FAILED (exit $rc), total $(since "$T0")s"
    fi
    exit "$rc"
}
trap finish EXIT
trap 'echo "interrupted"; exit 130' INT TERM HUP

fail() {  # fail STEP NAME REASON [LOG]
    echo "FAIL step $1 ($2): $3"
    if [[ -n ${4:-} && -s $4 ]]; then
        echo "---- log tail ($4) ----"
        # the machine's pip configuration names local index folders that pip warns about
        grep -v "^WARNING: Location 'file:" "$4" | tail -n 40
        echo "---- end of log ----"
    fi
    exit 1
}

command -v python3 >/dev/null || fail 1 "create venv" "python3 is not on PATH"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/pacifica-notifications-smoke.XXXXXX") \
    || fail 1 "create venv" "mktemp -d failed"
cd -- "$WORK" || fail 1 "create venv" "cannot cd to $WORK"
VENV=$WORK/venv
echo "repo $REPO; work dir $WORK; $(python3 --version 2>&1) ($(command -v python3))"

# ---- step 1: venv + pip install <repo root>
T1=$(now)
python3 -m venv "$VENV" >"$WORK/venv.log" 2>&1 \
    || fail 1 "create venv" "python3 -m venv $VENV failed" "$WORK/venv.log"
# Build outside the repo: setuptools would otherwise write build/ and *.egg-info into the work tree
# (which the other people working in it do not want) and would pack stale files left in an old
# build/lib, which a fresh checkout does not have.  The wheel is otherwise the same.
mkdir -p "$WORK/build" "$WORK/egg-info"
printf '[build]\nbuild_base = %s\n[egg_info]\negg_base = %s\n' "$WORK/build" "$WORK/egg-info" \
    >"$WORK/build.cfg"
DIST_EXTRA_CONFIG=$WORK/build.cfg "$VENV/bin/python" -m pip install -q "$REPO" >"$WORK/pip.log" 2>&1 \
    || fail 1 "pip install" "python -m pip install -q $REPO failed (exit $?)" "$WORK/pip.log"
[[ -x $VENV/bin/pacifica-notifications ]] \
    || fail 1 "pip install" "no pacifica-notifications script in $VENV/bin" "$WORK/pip.log"
VERSION=$("$VENV/bin/python" -m pip show pacifica-notifications 2>/dev/null | sed -n 's/^Version: //p')
COUNT=$("$VENV/bin/python" -m pip list --format=freeze 2>/dev/null | wc -l)
echo "ok   step 1 venv + pip install ($(since "$T1")s): pacifica-notifications $VERSION," \
     "$COUNT distributions in the fresh venv"

# ---- steps 2-7
python3 "$HELPER" run --venv "$VENV" --repo "$REPO" --work "$WORK"
