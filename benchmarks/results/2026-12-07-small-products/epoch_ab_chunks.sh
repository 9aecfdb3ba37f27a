#!/bin/bash
# usage: ab2.sh ROUNDS ARGS... : the epoch with SYMBP_SMALL_PATH=0 (one BLAS call per product) and with the default
R=$1; shift
for r in $(seq $R); do
 for v in 0 default; do
  if [ $v = 0 ]; then extra="SYMBP_SMALL_PATH=0"; else extra="SYMBP_UNUSED=1"; fi
  out=$(cd /tmp && env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE -u PYTHONDONTWRITEBYTECODE $extra OPENBLAS_NUM_THREADS=1 SYMBP_DATA_DIR=/work/shared/data symbp bench --no-cold --no-memory --impl symbp-numba-epoch --repeats 7 --out /tmp/ab_chunks_$v "$@" 2>&1 | grep "│ symbp-numba-epoch" | awk -F'│' '{print $3}')
  echo "$r $v $out"
 done
done
