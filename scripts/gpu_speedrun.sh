#!/usr/bin/env bash
# One-GPU speed run: train configs/crohme_h200.yaml under a time budget (training, final test
# evaluation and saving included), evaluate CROHME 2014 / 2016 / 2019 with bidirectional beam
# search, export the fp16 inference weights.
#
#   scripts/gpu_speedrun.sh OUT_DIR [--archive inkml.tar.xz] [--wheels DIR] [--budget 8m]
#                                   [--run-dir DIR] [--smoke] [--bench] [-- KEY=VALUE ...]
#
# --archive  CROHME InkML packed like ../shared/crohme/inkml.tar.xz (unpacked to a temp folder);
#            without it the data comes from $HMER_CROHME or ../shared/crohme.
# --wheels   a folder of wheels for pure dependencies the machine's Python lacks (albumentations,
#            omegaconf, editdistance, ...): installed into a private folder, nothing else touched.
# --smoke    the same path at CPU size (64 training expressions, 8 per test split, 150 s):
#            run it before spending any GPU time.
# --run-dir  where the full run directory goes (default OUT_DIR/run).
# --bench    afterwards, benchmarks/bench_decode.py on the same device (about a minute on a GPU:
#            formulas/s and ms/formula of batched beam-10 decoding) -> OUT_DIR/bench_decode.txt.
# KEY=VALUE  config overrides passed to train.py.
#
# First, benchmarks/gpu_probe.py times eager / autotuned / compiled / CUDA-graph steps on the
# run's batch shapes (probe.json, probe.log) and the run takes the fastest that works.
# OUT_DIR receives small files only (each well under 16 MB): model.pt (fp16 weights, config,
# vocabulary), probe.json, results.json, metrics.jsonl, train.log, curves.png,
# predictions.tar.gz, config.yaml, speedrun.log (and bench_decode.txt). The full run directory (checkpoints with optimizer state) is
# OUT_DIR/run unless --run-dir says otherwise. A failed or killed training still has its
# last or best checkpoint exported.
set -uo pipefail
cd "$(dirname "$0")/.."

out="" run="" archive="" wheels="" budget="8m" smoke=0 bench=0 overrides=()
while [ $# -gt 0 ]; do
  case "$1" in
    --archive) archive="$2"; shift 2 ;;
    --wheels) wheels="$2"; shift 2 ;;
    --budget) budget="$2"; shift 2 ;;
    --run-dir) run="$2"; shift 2 ;;
    --smoke) smoke=1; shift ;;
    --bench) bench=1; shift ;;
    --) shift; overrides=("$@"); break ;;
    -*) echo "gpu_speedrun: unknown option $1" >&2; exit 2 ;;
    *) out="$1"; shift ;;
  esac
done
[ -n "$out" ] || { echo "usage: scripts/gpu_speedrun.sh OUT_DIR [options]" >&2; exit 2; }
mkdir -p "$out" && out=$(cd "$out" && pwd)
run=${run:-$out/run}
start=$(date +%s)
log() { echo "[speedrun +$(( $(date +%s) - start ))s] $*" | tee -a "$out/speedrun.log"; }

PY=${PYTHON:-python3}
if [ -z "${PYTHON:-}" ] && [ -x .venv/bin/python ]; then PY=.venv/bin/python; fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

if [ -n "$wheels" ]; then
  if ! "$PY" -c "import albumentations, omegaconf, editdistance" 2>/dev/null; then
    log "installing the wheels in $wheels into /tmp/hmer-site"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/hmer-site \
      "$wheels"/*.whl || { log "wheel install failed"; exit 1; }
    export PYTHONPATH="$PYTHONPATH:/tmp/hmer-site"
  fi
fi

if [ -n "$archive" ]; then
  data=$(mktemp -d /tmp/hmer-crohme.XXXX)
  log "unpacking $archive"
  tar -xJf "$archive" -C "$data" || { log "cannot unpack $archive"; exit 1; }
  # The archive holds inkml/...; HMER_CROHME names the folder that contains inkml/.
  [ -d "$data/inkml" ] || data=$(dirname "$(find "$data" -maxdepth 3 -type d -name inkml | head -1)")
  export HMER_CROHME="$data"
fi

"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(),
torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')" 2>&1 | tee -a "$out/speedrun.log"

if [ "$smoke" = 1 ]; then
  overrides=(train.device=cpu train.precision=fp32 train.channels_last=false data.limit=64
             data.test_limit=8 data.num_workers=2 data.load_workers=2 train.progress=false
             train.batch_pixels=300000 train.max_batch=16 train.budget_warmup_steps=2
             train.budget_measure_steps=3 decode.beam=3 decode.max_len=24
             model.growth_rate=8 "model.block_config=[2,2,2]" model.bn_size=2 model.d_model=64
             model.nhead=4 model.num_decoder_layers=1 model.dim_feedforward=128
             "${overrides[@]}")
  budget=${SMOKE_BUDGET:-150s}
fi

# The probe (benchmarks/gpu_probe.py, <= PROBE_BUDGET s) times each way of running the step on
# the run's own batch shapes; training takes the fastest that works. Renders are cached for both.
overrides+=("data.cache_dir=${RENDER_CACHE:-/tmp/hmer-render-cache}")
probe_args=(--out "$out/probe.json" --budget "${PROBE_BUDGET:-90}")
[ "$smoke" = 1 ] && probe_args+=(--steps 2 --shapes 2)
log "probe: benchmarks/gpu_probe.py ${probe_args[*]}"
"$PY" benchmarks/gpu_probe.py configs/crohme_h200.yaml "${overrides[@]}" "${probe_args[@]}" \
  2>&1 | tee "$out/probe.log"
if [ -f "$out/probe.json" ]; then
  mapfile -t chosen < <("$PY" -c 'import json, sys
choice = json.load(open(sys.argv[1]))["choice"]
print("\n".join(choice["overrides"] if choice else []))' "$out/probe.json")
  log "probe chose: ${chosen[*]:-nothing (every variant failed): the config as it is}"
  overrides+=("${chosen[@]}")
else
  log "probe wrote nothing: training with the config as it is"
fi

log "training configs/crohme_h200.yaml for $budget ${overrides[*]}"
"$PY" train.py configs/crohme_h200.yaml --out "$run" --time-budget "$budget" \
  "${overrides[@]}" 2>&1 | tee "$out/train.log"
status=${PIPESTATUS[0]}
log "train.py exited with $status"

ckpt="$run/best.pt"
[ -f "$ckpt" ] || ckpt="$run/last.pt"
if [ -f "$ckpt" ]; then
  "$PY" -m hmer export-weights "$ckpt" "$out/model.pt" && log "exported $ckpt -> model.pt"
else
  log "no checkpoint to export"
fi
"$PY" -m hmer plot "$run" --out "$out/curves.png" >/dev/null 2>&1 || log "no plot"
for f in results.json metrics.jsonl config.yaml; do
  [ -f "$run/$f" ] && cp "$run/$f" "$out/$f"
done
(cd "$run" && ls predictions_*.tsv >/dev/null 2>&1 && tar -czf "$out/predictions.tar.gz" predictions_*.tsv)
if [ "$bench" = 1 ]; then
  if [ "$smoke" = 1 ]; then
    bench_args=(--batch-sizes 1 --steps 25 --no-recompute)
  else
    bench_args=(--device cuda --batch-sizes 1 16 64 --repeats 3 --no-recompute)
  fi
  log "decode benchmark ${bench_args[*]}"
  "$PY" benchmarks/bench_decode.py "${bench_args[@]}" > "$out/bench_decode.txt" 2>&1 \
    || log "decode benchmark failed"
  cat "$out/bench_decode.txt"
fi
log "done in $(( $(date +%s) - start ))s"
[ -f "$out/results.json" ] && cat "$out/results.json"
exit "$status"
