#!/usr/bin/env bash
# Issue 13's results: a sweep over η and λ on MNIST, a 5-model vote, and the sweep's wall time with 1 and 2
# workers.  Usage (virtual environment active):  bash run.sh [DATA_DIR]   (default: $SYMBP_DATA_DIR)
# Writes beside this file: run.log (commands, load averages, wall times), sweep-w2/ and sweep-w1/ (the same sweep
# with 2 and 1 worker processes: results.jsonl, sweep.png, the command's output), vote5/ (5 seeds of one config,
# voted on the test set), table.md and summary.json.  The models (*/models/) are not committed.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
DATA=${1:-${SYMBP_DATA_DIR:?give DATA_DIR or set SYMBP_DATA_DIR}}
SWEEP=(--layers 784,30,10 --cost cross-entropy --eta 0.025,0.1,0.25,0.5,1,2.5 --lmbda 0,1,5 --seeds 0-1
       --epochs 30 --data-dir "$DATA" --no-progress)
VOTE=(--layers 784,100,10 --cost cross-entropy --eta 0.5 --lmbda 5 --seeds 0-4 --epochs 30 --data-dir "$DATA"
      --no-progress)
rm -rf "$HERE/sweep-w1" "$HERE/sweep-w2" "$HERE/vote5" "$HERE/.warm"
: > "$HERE/run.log"
log() { echo "$*" | tee -a "$HERE/run.log"; }
now() { date +%s.%N; }

# run NAME OUTFILE ARGS...: one command, its output to OUTFILE, its wall time and the load average to run.log
run() {
    local name=$1 outfile=$2; shift 2
    log "== $name: $(date -Is), loadavg at start: $(cat /proc/loadavg)"
    log "\$ $*"
    local t0; t0=$(now)
    "$@" > "$outfile" 2>&1
    local t1; t1=$(now)
    log "$name: $(python -c "print(f'{$t1 - $t0:.1f}')") s wall (whole command), loadavg at end: $(cat /proc/loadavg)"
    grep -h "sweep wall time\|^ensemble of\|^best:" "$outfile" | tee -a "$HERE/run.log" || true
}

log "machine: $(nproc) CPUs, $(python -c 'import platform; print(platform.processor() or platform.machine())'); symbp $(symbp --version | cut -d' ' -f2-); SYMBP_CACHE_DIR=${SYMBP_CACHE_DIR:-default}"
# 0. the kernel cache warmed for both networks first, so neither timed sweep pays for numba's compilation
run warm-up /dev/null symbp sweep --layers 784,30,10 --cost cross-entropy --eta 0.5 --lmbda 0,1 --epochs 1 \
    --limit 1000 --data-dir "$DATA" --no-progress --out "$HERE/.warm" --workers 1 --plot "$HERE/.warm/p.png"
rm -rf "$HERE/.warm"
# a. and c. the sweep on 2 worker processes, then the same sweep on 1, each in a fresh results folder
mkdir -p "$HERE/sweep-w2" "$HERE/sweep-w1"
run "sweep, 2 workers" "$HERE/sweep-w2/sweep.out" symbp sweep "${SWEEP[@]}" --out "$HERE/sweep-w2" --workers 2 --top 36
run "sweep, 1 worker" "$HERE/sweep-w1/sweep.out" symbp sweep "${SWEEP[@]}" --out "$HERE/sweep-w1" --workers 1 --top 36
# b. five networks (seeds 0-4) of one configuration, then their plurality vote on the 10,000 test images
mkdir -p "$HERE/vote5"
run "5 models" "$HERE/vote5/sweep.out" symbp sweep "${VOTE[@]}" --out "$HERE/vote5" --workers 2
run "vote" "$HERE/vote5/vote.out" symbp vote --models "$HERE/vote5/models" --eval test --data-dir "$DATA"
cat "$HERE/vote5/vote.out" | tee -a "$HERE/run.log"

# the tables, the plots and a summary, from the results files
python "$HERE/summarize.py" "$HERE"
