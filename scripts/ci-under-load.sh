#!/usr/bin/env bash
# Run CI's command (`bash .ci/run`) on fresh clones of this repository, one after another, while the
# machine is busy the way a shared CI host is: one CPU-bound process spinning the whole time, and
# `perfctl capture` of the built-in workload running again and again beside the suite (a real nsys
# session of its own, which must serialize with the suite's through perfctl's machine-wide nsys lock).
#
# Why: the suite must pass where CI runs it, on a loaded 2-core machine with other nsys sessions
# about; a green run on a quiet machine shows neither.
#
#   usage: scripts/ci-under-load.sh [RUNS] [WORK_DIR]     (default: 3 runs, /tmp/perfctl-ci-under-load)
# Prints one line per run (rc, minutes, the suite's last summary line) and writes WORK_DIR/results.txt;
# each run's full log is WORK_DIR/run-N.log. Exit status: 0 when every run passed.
set -uo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
runs=${1:-3}
work=${2:-/tmp/perfctl-ci-under-load}
rm -rf "$work" && mkdir -p "$work/profiles"
say() { printf 'ci-under-load: %s\n' "$*" | tee -a "$work/results.txt"; }

# The load beside the suite uses the checkout's own set-up (.venv), made first when missing.
bash "$repo/scripts/setup.sh" >"$work/setup.log" 2>&1 || { say "setup of $repo failed (see $work/setup.log)"; exit 1; }

spin_pid=""
captures_pid=""
stop_load() {
  [ -n "$spin_pid" ] && kill "$spin_pid" 2>/dev/null
  [ -n "$captures_pid" ] && kill -TERM -- "-$captures_pid" 2>/dev/null
  wait 2>/dev/null
  spin_pid=""
  captures_pid=""
}
trap stop_load EXIT

start_load() {  # $1: the run's number, in the captures' run ids (each run's captures get new folders)
  python3 -c 'while True: pass' &
  spin_pid=$!
  # a new process group, so that stopping it stops the capture it is running too
  setsid bash -c '
    n=0
    while true; do
      n=$((n + 1))
      "$0/.venv/bin/perfctl" capture --quiet --device cpu --profiles "$1" --run-id "beside-$2-$n" \
        >>"$1/captures.log" 2>&1
      echo "capture beside-$2-$n exit $?" >>"$1/captures.log"
      sleep 2
    done' "$repo" "$work/profiles" "$1" &
  captures_pid=$!
}

failed=0
for i in $(seq 1 "$runs"); do
  clone="$work/clone-$i"
  git clone -q "file://$repo" "$clone" || { say "run $i: git clone failed"; failed=1; continue; }
  start_load "$i"
  t0=$(date +%s)
  (cd "$clone" && bash .ci/run) >"$work/run-$i.log" 2>&1
  rc=$?
  t1=$(date +%s)
  stop_load
  beside=$(grep -c '^capture beside-.* exit 0$' "$work/profiles/captures.log" 2>/dev/null)
  beside_failed=$(grep '^capture beside-' "$work/profiles/captures.log" 2>/dev/null | grep -vc 'exit 0$')
  summary=$(grep -E '^=+ .*(passed|failed|error).* =+$' "$work/run-$i.log" | tail -n 1)
  say "run $i of $runs: rc $rc in $(((t1 - t0) / 60)) min $(((t1 - t0) % 60)) s; ${summary:-no pytest summary}; captures beside so far: ${beside:-0} ok, ${beside_failed:-0} not ok (stopped ones included)"
  grep -h '^status: failed' "$work/profiles/captures.log" | sort | uniq -c | sed 's/^/ci-under-load:   failed beside so far: /' | tee -a "$work/results.txt"
  [ "$rc" -eq 0 ] || failed=1
  rm -rf "$clone/.venv"
done
exit "$failed"
