#!/usr/bin/env bash
# The README's picture of `hmer serve`: a formula written on the page by a scripted browser.
#   scripts/serve_screenshot.sh CHECKPOINT "x ^ { 2 } + y" OUT.png [SEED]
# The strokes are the synthetic generator's handwriting of the tokens (hand SEED, default 0),
# scaled into the writing area. Needs Chromium (/usr/bin/chromium, or $CHROMIUM) and
# `npm install playwright-core` in scripts/ (or anywhere node resolves it from).
set -euo pipefail
checkpoint=$1 tokens=$2 out=$3 seed=${4:-0}
here=$(cd "$(dirname "$0")" && pwd)
py=${PYTHON:-$here/../.venv/bin/python}
work=$(mktemp -d)
trap 'kill "${server:-}" 2>/dev/null || true; rm -rf "$work"' EXIT
"$py" - "$tokens" "$seed" > "$work/strokes.json" <<'PY'
import json, sys
import numpy as np
from hmer.data.synth import draw

tokens, seed = sys.argv[1].split(), int(sys.argv[2])
traces = draw(tokens, np.random.default_rng(seed)).traces
low = np.min([t.min(0) for t in traces], 0)
high = np.max([t.max(0) for t in traces], 0)
scale = min(760 / (high[0] - low[0]), 200 / (high[1] - low[1]))
print(json.dumps([np.round((t - low) * scale + 40, 1).tolist() for t in traces]))
PY
"$py" -m hmer serve --checkpoint "$checkpoint" --port 0 --device cpu 2> "$work/serve.log" &
server=$!
for _ in $(seq 100); do grep -q "http://" "$work/serve.log" && break; sleep 0.2; done
url=$(grep -o "http://[0-9.]*:[0-9]*" "$work/serve.log")
node "$here/serve_screenshot.mjs" "$url/" "$work/strokes.json" "$out"
