#!/bin/sh
# Three interleaved pairs: OLD is a checkout of the commit before the built-ins became declarations.
# usage: OLD=/path/to/old NEW=/path/to/new SYMBP_DATA_DIR=... sh run.sh
here=$(cd "$(dirname "$0")" && pwd)
for k in 1 2 3; do
  (cd "$OLD" && env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=1 PYTHONPATH="$OLD" \
     python "$here/ab.py" before)
  (cd "$NEW" && env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=1 PYTHONPATH="$NEW" \
     python "$here/ab.py" after)
done
