#!/usr/bin/env bash
# The modern small net on Fashion-MNIST and MNIST (float32, numba, mini-batch 10, momentum 0.9, eta halved
# after 5 epochs without a better validation accuracy).  Usage: run.sh NAME LAYERS DATASET EPOCHS SEED [ETA [MORE OPTIONS]]
set -euo pipefail
cd "$(dirname "$0")"
name=$1 layers=$2 dataset=$3 epochs=$4 seed=$5 eta=${6:-0.05}; shift $(( $# < 6 ? $# : 6 ))
OPENBLAS_NUM_THREADS=1 NUMBA_NUM_THREADS=1 env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE symbp train --dataset "$dataset" --layers "$layers" \
  --activation relu --cost log-likelihood --eta "$eta" --momentum 0.9 --schedule halve --patience 5 \
  --epochs "$epochs" --dtype float32 --eval validation --seed "$seed" --no-progress \
  --plot "$name.png" --save "$name" "$@" > "$name.log" 2>&1
