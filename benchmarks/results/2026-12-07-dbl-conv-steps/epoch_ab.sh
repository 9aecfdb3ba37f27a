#!/usr/bin/env bash
# Interleaved whole-epoch A/B of two worktrees (A: $1, B: $2) on the conv nets, float32, one BLAS thread
# (A first in every round; with ALTERNATE=1, B first in even rounds):
# ROUNDS rounds of `symbp bench --net NET` per case, each in a fresh process, medians of 5 epochs of 5,000 images
# (MNIST found as symbp finds it: SYMBP_DATA_DIR, the remembered folder, or the cache).
set -euo pipefail
A=$1; B=$2; ROUNDS=${ROUNDS:-3}
IFS=, read -r -a CASE_LIST <<< "${CASES:-dbl_conv 10,dbl_conv 100,modern 10}"
for case in "${CASE_LIST[@]}"; do
  set -- $case
  for round in $(seq "$ROUNDS"); do
    order="A B"; [ "${ALTERNATE:-0}" = 1 ] && [ $((round % 2)) -eq 0 ] && order="B A"
    for side in $order; do
      dir=$([ "$side" = A ] && echo "$A" || echo "$B")
      t=$(cd "$dir" && env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE -u PYTHONDONTWRITEBYTECODE OPENBLAS_NUM_THREADS=1 \
          PYTHONPATH="$dir" SYMBP_CACHE_DIR="/tmp/ab-cache-$side" python -m symbp.bench --net "$1" --batch-size "$2" \
          --dtype float32 --samples 5000 --repeats 5 --no-cold --no-memory --impl symbp-numba-epoch --out "/tmp/ab-out-$side" >/dev/null 2>&1 \
          && grep -E "^\| symbp-numba-epoch" "/tmp/ab-out-$side/results.md" | head -1 | awk -F'|' '{print $3, $8}')
      echo "$1 m$2 round $round $side $t"
    done
  done
done
