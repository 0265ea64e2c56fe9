#!/bin/bash
# The GPU runs of docs/training.md ("Equal schedules") and BENCHMARKS.md (H200 rows): e3, e10 and variants ran on
# one H200 (torch 2.11); sweep, seeds, seeds2 and rerun (folder gradalign-rs/) on one H100 (80 GB HBM3).
# usage, from the repository root:
#   bash benchmarks/results/training_schedules/run.sh e3|e10|variants|sweep|seeds|seeds2|rerun [cuda|cpu]
# Needs MNIST's four .gz files under $ROBUSTLENS_SHARED_DATA/mnist. Logs and runs go to $OUT (default /tmp/out).
set -u
WHAT=$1; DEV=${2:-cuda}
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
O=${OUT:-/tmp/out}; W=/tmp/train-$WHAT; mkdir -p "$O" $W
C="--data mnist --optimizer adam --lr 5e-3 --wd 0 --batch-size 100 --width 32 --hidden 256 --n-eval 10000 --device $DEV --out $W"
R="python3 benchmarks/training.py repro"
case $WHAT in
e3)  # smoothing throughput and the CUDA checks first, alone on the GPU; then two chains of 3-epoch runs
  { for w in 16 64; do python3 benchmarks/certify.py --device $DEV --images 8 --n 100000 --batch 10000 --repeats 5 \
      --no-peers --width $w; done; python3 benchmarks/cuda_check.py --device $DEV; } > "$O/bench.log" 2>&1
  C="$C --epochs 3"
  $R pgd-at --steps 40 --alpha 0.01 --budget-minutes 4.0 --tag pgd40-at $C > "$O/chainA.log" 2>&1 &
  { $R gradalign --lam 1.0 --budget-minutes 1.5 --tag gradalign $C
    $R fgsm-rs --alpha 0.375 --budget-minutes 0.7 --tag fgsm-rs $C
    $R pgd-at --steps 10 --alpha 0.04 --budget-minutes 1.5 --tag pgd10-at $C
    $R gradalign --lam 1.0 --detach-clean --budget-minutes 1.2 --tag gradalign-detach $C; } > "$O/chainB.log" 2>&1 &
  ;;
e10)  # three chains of 10-epoch runs
  C="$C --epochs 10"
  $R pgd-at --steps 10 --alpha 0.04 --budget-minutes 4.5 --tag pgd10-at-e10 $C > "$O/chain1.log" 2>&1 &
  { $R gradalign --lam 1.0 --budget-minutes 1.9 --tag gradalign-l1-e10 $C
    $R gradalign --lam 0.3 --budget-minutes 1.9 --tag gradalign-l0.3-e10 $C; } > "$O/chain2.log" 2>&1 &
  { $R fgsm-rs --alpha 0.375 --budget-minutes 1.3 --tag fgsm-rs-e10 $C
    $R gradalign --lam 3.0 --budget-minutes 1.9 --tag gradalign-l3-e10 $C; } > "$O/chain3.log" 2>&1 &
  ;;
variants)  # four GradAlign runs at once (each planned 7 of its 10 epochs within the budget)
  C="$C --epochs 10 --budget-minutes 2.2"
  $R gradalign --random-start --alpha 0.375 --lam 0.3 --tag ga-rs-l0.3 $C > "$O/a.log" 2>&1 &
  $R gradalign --random-start --alpha 0.375 --lam 1.0 --tag ga-rs-l1 $C > "$O/b.log" 2>&1 &
  $R gradalign --random-start --alpha 0.375 --lam 0.1 --tag ga-rs-l0.1 $C > "$O/c.log" 2>&1 &
  $R gradalign --lam 0.1 --tag ga-l0.1 $C > "$O/d.log" 2>&1 &
  ;;
sweep)  # GradAlign from a random start with small weights, zero start at lam 0.2, the authors' unclipped noise
  C="$C --epochs 10 --budget-minutes 3.6"; G="$R gradalign"
  $G --random-start --alpha 0.375 --lam 0.03 --tag ga-rs-l0.03 $C > "$O/a.log" 2>&1 &
  $G --random-start --alpha 0.375 --lam 0.1 --tag ga-rs-l0.1-e10 $C > "$O/b.log" 2>&1 &
  $G --lam 0.3 --unclipped-noise --tag ga-l0.3-unclipped $C > "$O/c.log" 2>&1 &
  $G --lam 0.2 --tag ga-l0.2 $C > "$O/d.log" 2>&1 &
  ;;
seeds)  # seed replicates (FGSM-RS got 7 of its 10 epochs within the budget)
  C="$C --epochs 10 --budget-minutes 3.6"; G="$R gradalign"
  $G --random-start --alpha 0.375 --lam 0.03 --seed 1 --tag ga-rs-l0.03-s1 $C > "$O/a.log" 2>&1 &
  $G --random-start --alpha 0.375 --lam 0.1 --seed 1 --tag ga-rs-l0.1-s1 $C > "$O/b.log" 2>&1 &
  $G --random-start --alpha 0.375 --lam 0.3 --tag ga-rs-l0.3-e10 $C > "$O/c.log" 2>&1 &
  $R fgsm-rs --alpha 0.375 --seed 1 --tag fgsm-rs-s1 $C > "$O/d.log" 2>&1 &
  ;;
seeds2)
  C="$C --epochs 10 --budget-minutes 3.6"; G="$R gradalign"
  $G --random-start --alpha 0.375 --lam 0.03 --seed 2 --tag ga-rs-l0.03-s2 $C > "$O/a.log" 2>&1 &
  $G --random-start --alpha 0.375 --lam 0.03 --seed 3 --tag ga-rs-l0.03-s3 $C > "$O/b.log" 2>&1 &
  $G --random-start --alpha 0.375 --lam 0.1 --seed 2 --tag ga-rs-l0.1-s2 $C > "$O/c.log" 2>&1 &
  ;;
rerun)  # the same seeds again, with the detector's clean-accuracy rule live
  C="$C --epochs 10 --budget-minutes 2.3"; G="$R gradalign"
  $G --random-start --alpha 0.375 --lam 0.3 --tag ga-rs-l0.3-e10-rerun $C > "$O/a.log" 2>&1 &
  $G --random-start --alpha 0.375 --lam 0.03 --tag ga-rs-l0.03-rerun $C > "$O/b.log" 2>&1 &
  ;;
*) echo "usage: run.sh e3|e10|variants|sweep|seeds|seeds2|rerun [cuda|cpu]"; exit 2 ;;
esac
wait
