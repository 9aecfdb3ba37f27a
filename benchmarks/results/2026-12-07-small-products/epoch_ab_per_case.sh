#!/bin/bash
R=$1; shift
for r in $(seq $R); do
 for v in main wtcase; do
  d=/work/$v
  out=$(cd /tmp && PYTHONPATH=$d env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE -u PYTHONDONTWRITEBYTECODE OPENBLAS_NUM_THREADS=1 SYMBP_DATA_DIR=/work/shared/data python -c "import sys; from symbp.cli import main; sys.exit(main())" bench --no-cold --no-memory --impl symbp-numba-epoch --repeats 7 --out /tmp/ab_$v "$@" 2>&1 | grep "│ symbp-numba-epoch" | awk -F'│' '{print $3}')
  echo "$r $v $out"
 done
done
