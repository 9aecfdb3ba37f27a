#!/usr/bin/env bash
# A second measurement of 1 against 2 workers, made because the machine was shared during run.sh: a smaller sweep
# (6 trials, 10 epochs) run 2, 1, 2, 1 workers alternately, each in a fresh folder, so that both see the same
# background load.  Usage: bash timing.sh [DATA_DIR]; appends to run.log, writes timing/<n>-w<workers>/.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
DATA=${1:-${SYMBP_DATA_DIR:?give DATA_DIR or set SYMBP_DATA_DIR}}
SWEEP=(--layers 784,30,10 --cost cross-entropy --eta 0.1,0.5,2.5 --lmbda 0,5 --epochs 10 --data-dir "$DATA"
       --no-progress)
rm -rf "$HERE/timing"
log() { echo "$*" | tee -a "$HERE/run.log"; }
n=0
for w in 2 1 2 1; do
    n=$((n + 1)); out="$HERE/timing/$n-w$w"; mkdir -p "$out"
    log "== timing run $n, $w worker(s): $(date -Is), loadavg at start: $(cat /proc/loadavg)"
    log "   busiest other processes: $(ps -eo pcpu,comm --sort=-pcpu --no-headers | head -3 | tr -s ' ' | paste -sd ';')"
    symbp sweep "${SWEEP[@]}" --out "$out" --workers "$w" > "$out/sweep.out" 2>&1
    log "$(grep -h 'sweep wall time' "$out/sweep.out"); loadavg at end: $(cat /proc/loadavg)"
done
