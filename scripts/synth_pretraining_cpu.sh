#!/usr/bin/env bash
# Does synthetic pre-training help on real data? The small CPU version of the experiment in
# benchmarks/RESULTS.md: two arms with equal 30-minute wall budgets, configs/tiny.yaml, one CPU
# thread each (run side by side on two cores), scored on CROHME 2014 with the final beam search.
#   A: 30 min on CROHME train.
#   B: 10 min on synthetic expressions (grammar + recombined CROHME train formulas),
#      then 20 min on CROHME train starting from those weights (train.init_from).
# Usage: scripts/synth_pretraining_cpu.sh OUT_DIR   (needs CROHME: HMER_CROHME or ../shared/crohme)
set -euo pipefail
out=${1:?usage: $0 OUT_DIR}
py=${PYTHON:-.venv/bin/python}
crohme=${HMER_CROHME:-../shared/crohme}
export OMP_NUM_THREADS=1
common=(data.load_workers=1 "data.test_splits=[2014]" train.progress=false)
"$py" -m hmer data synth --n 12000 --out "$out/synth" --seed 7 --workers 2 --corpus "$crohme/inkml/train"
"$py" train.py configs/tiny.yaml --out "$out/A" --time-budget 30m "${common[@]}" > "$out/A.log" 2>&1 &
{
  "$py" train.py configs/tiny.yaml --out "$out/B-pre" --time-budget 10m "${common[@]}" \
    data.train="$out/synth" data.train_split=train train.final_test=false
  "$py" train.py configs/tiny.yaml --out "$out/B" --time-budget 20m "${common[@]}" \
    train.init_from="$out/B-pre/best.pt"
} > "$out/B.log" 2>&1 &
wait
tail -n 3 "$out/A.log" "$out/B.log"
