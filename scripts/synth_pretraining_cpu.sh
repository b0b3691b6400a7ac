#!/usr/bin/env bash
# Does synthetic pre-training help on real data? The small CPU version of the experiment in
# benchmarks/RESULTS.md: two arms with equal 30-minute wall budgets, configs/tiny.yaml, one CPU
# thread each (run side by side on two cores), scored on CROHME 2014 with the final beam search.
#   A: 30 min on CROHME train.
#   B: 10 min on synthetic expressions (grammar + recombined CROHME train formulas),
#      then 20 min on CROHME train starting from those weights (train.init_from).
# Usage: scripts/synth_pretraining_cpu.sh OUT_DIR   (needs CROHME: HMER_CROHME or ../shared/crohme)
# A rehearsal at a fraction of the cost: SYNTH_N=200 TOTAL=90s PRE=30s FINETUNE=60s EXTRA=data.limit=300
set -euo pipefail
out=${1:?usage: $0 OUT_DIR}
synth_n=${SYNTH_N:-12000} total=${TOTAL:-30m} pre=${PRE:-10m} finetune=${FINETUNE:-20m}
py=${PYTHON:-.venv/bin/python}
crohme=${HMER_CROHME:-../shared/crohme}
export OMP_NUM_THREADS=1
common=(data.load_workers=1 "data.test_splits=[2014]" train.progress=false ${EXTRA:-})
"$py" -m hmer data synth --n "$synth_n" --out "$out/synth" --seed 7 --workers 2 --corpus "$crohme/inkml/train"
"$py" train.py configs/tiny.yaml --out "$out/A" --time-budget "$total" "${common[@]}" > "$out/A.log" 2>&1 &
{
  "$py" train.py configs/tiny.yaml --out "$out/B-pre" --time-budget "$pre" "${common[@]}" \
    data.train="$out/synth" data.train_split=train train.final_test=false
  "$py" train.py configs/tiny.yaml --out "$out/B" --time-budget "$finetune" "${common[@]}" \
    train.init_from="$out/B-pre/best.pt"
} > "$out/B.log" 2>&1 &
wait
tail -n 3 "$out/A.log" "$out/B.log"
