#!/usr/bin/env bash
# Ship a finished training run as the package's default model:
#   1. its best.pt as fp16 weights at hmer/assets/model.pt (written atomically),
#   2. hmer evaluate on CROHME 2014 / 2016 / 2019 with beam search and greedy, from that file,
#   3. the model card beside it (hmer/assets/model.json for hmer predict / serve, MODEL_CARD.md).
#
#   scripts/ship_model.sh RUN_DIR "TRAINING COMMAND" "MACHINE" [NAME] [NOTES] [SUMMARY] [COMMIT]
#
# The evaluations land in RUN_DIR/eval-beam and RUN_DIR/eval-greedy.
set -euo pipefail
cd "$(dirname "$0")/.."
run=$1 command=$2 machine=$3
name=${4:-hmer CPU starter model}
notes=${5:-}
summary=${6:-}
code=${7:-$(git rev-parse HEAD)}
py=${PY:-.venv/bin/python}
weights=hmer/assets/model.pt

"$py" -m hmer export-weights "$run/best.pt" "$weights"
for method in beam greedy; do
  flag=(); [ "$method" = greedy ] && flag=(--greedy)
  "$py" -m hmer evaluate --checkpoint "$weights" --split 2014 2016 2019 --device cpu \
    "${flag[@]}" --out "$run/eval-$method"
done
"$py" scripts/model_card.py "$weights" --run "$run" \
  --beam-results "$run/eval-beam" --greedy-results "$run/eval-greedy" \
  --command "$command" --machine "$machine" --name "$name" --notes "$notes" \
  --summary "$summary" --commit "$code"
