#!/usr/bin/env bash
# The README's picture of `hmer serve`: a formula written on the page by a scripted browser.
#   scripts/serve_screenshot.sh CHECKPOINT "x ^ { 2 } + y" OUT.png [SEED]
# The strokes are the synthetic generator's handwriting of the tokens (hand SEED, default 0),
# scaled into the writing area. Needs, once:
#   apt-get install chromium          # Debian's Chromium at /usr/bin/chromium (or set $CHROMIUM)
#   npm ci --prefix tests/js          # playwright-core, which drives it (tests/js/package.json)
set -euo pipefail
checkpoint=$1 tokens=$2 out=$3 seed=${4:-0}
here=$(cd "$(dirname "$0")" && pwd)
py=${PYTHON:-$here/../.venv/bin/python}
export NODE_PATH="$here/../tests/js/node_modules${NODE_PATH:+:$NODE_PATH}"
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
# The first use of a model exports it to ONNX (seconds, more on a busy machine).
for _ in $(seq 600); do
  grep -q "http://" "$work/serve.log" && break
  kill -0 "$server" 2>/dev/null || break
  sleep 0.5
done
url=$(grep -o "http://[0-9.]*:[0-9]*" "$work/serve.log") || { cat "$work/serve.log" >&2; exit 1; }
node "$here/serve_screenshot.mjs" "$url/" "$work/strokes.json" "$out"
