"""The writing page in a real browser: headless Chromium, driven by playwright-core
(tests/js/page_test.cjs), against a real server with the fitted tiny model. It writes with the
mouse, picks another reading, copies (with and without the clipboard API), chooses a picture
and pastes one; each time the page must show the server's own answer.

Needs node, ``npm ci --prefix tests/js`` (playwright-core) and Debian's Chromium
(``apt-get install chromium``; or set $CHROMIUM to a Chromium binary); skipped, saying which is
missing, without them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import httpx
import numpy as np
import pytest
from helpers import LABELS, paper
from serve_helpers import page_strokes, png, running

from hmer.card import LowScore
from hmer.serve import make_app

pytestmark = pytest.mark.usefixtures("single_thread")

JS = Path(__file__).parent / "js"
CARD = {"name": "hmer CPU starter model", "scores": {"beam": {"2014": {"exprate": 15.2}}}}
CARD["low_score"] = {
    "threshold": -0.33,
    "exprate": 5,
    "count": 621,
    "split": "2014",
    "method": "beam",
}


def _node_env() -> dict[str, str]:
    """node resolving packages from tests/js (npm ci there) and from the global folder."""
    folders = [str(JS / "node_modules")]
    npm = shutil.which("npm")
    if npm:
        found = subprocess.run([npm, "root", "-g"], capture_output=True, text=True, timeout=60)
        folders.append(found.stdout.strip())
    return {**os.environ, "NODE_PATH": os.pathsep.join(folders)}


@pytest.fixture(scope="module")
def browser_env() -> dict[str, str]:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the page cannot be driven in a browser")
    env = _node_env()
    found = subprocess.run(
        [node, "-e", "require.resolve('playwright-core')"], env=env, capture_output=True, timeout=60
    )
    if found.returncode != 0:
        pytest.skip("playwright-core is missing: run `npm ci --prefix tests/js`")
    chromium = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    if not Path(chromium).is_file():
        pytest.skip(f"no Chromium at {chromium}: `apt-get install chromium`, or set $CHROMIUM")
    return {**env, "CHROMIUM": chromium}


def _fitted(strokes: list[list[list[float]]]) -> list[list[list[float]]]:
    """Strokes scaled into the writing area (700 x 200 px, 40 px from its corner)."""
    points = np.concatenate([np.asarray(stroke) for stroke in strokes])
    low, high = points.min(0), points.max(0)
    scale = min(700 / (high[0] - low[0]), 200 / (high[1] - low[1]))
    return [np.round((np.asarray(s) - low) * scale + 40, 1).tolist() for s in strokes]


def test_a_person_can_write_pick_copy_upload_and_paste(browser_env, recognizer, renders, tmp_path):
    strokes = _fitted(page_strokes(LABELS[0]))
    (tmp_path / "strokes.json").write_text(json.dumps(strokes))
    picture = png(paper(renders[0]))
    (tmp_path / "formula.png").write_bytes(picture)
    app = make_app(recognizer, beam=3, card=CARD, low_score=LowScore(**CARD["low_score"]))
    with running(app, access_log=False) as server:
        files = [tmp_path / "strokes.json", tmp_path / "formula.png"]
        run = subprocess.run(
            ["node", str(JS / "page_test.cjs"), f"{server.url}/", *map(str, files)],
            env=browser_env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert run.returncode == 0, run.stderr[-3000:]
        seen = json.loads(run.stdout)
        # What the server answers to what the page sent, asked directly.
        written = httpx.post(f"{server.url}/predict", json=seen["written"]["sent"], timeout=120)
        upload = {"image": ("formula.png", picture, "image/png")}
        uploaded = httpx.post(f"{server.url}/predict/image", files=upload, timeout=120).json()
    written = written.json()

    before = seen["before"]
    assert before["hint"] and not before["result"]  # a hint, not an empty box
    assert "starter model" in before["about"]
    assert "beam" not in before["text"].lower()

    shown = seen["written"]
    assert len(shown["sent"]["strokes"]) == len(strokes)
    assert np.allclose(shown["sent"]["strokes"][0][0], strokes[0][0], atol=1)
    assert not shown["hint"] and shown["math"]
    assert shown["latex"] == written["latex"]
    offered = [r["latex"] for i, r in enumerate(written["alternatives"]) if r["latex"] or i == 0]
    assert shown["readings"] == offered  # an empty reading is no alternative
    assert shown["chosen"][0] == "true" and "true" not in shown["chosen"][1:]
    assert shown["confidence"].startswith(
        {"sure": "Not flagged", "unsure": "Unsure"}[written["confidence"]]
    )

    picked = seen.get("picked") or shown
    if "picked" in seen:
        assert picked["latex"] == offered[1]
        assert picked["chosen"][:2] == ["false", "true"]
    assert seen["copy"] == {"said": "Copied.", "clipboard": picked["latex"]}

    for name in ("uploaded", "pasted"):
        assert seen[name]["sent"] == ["/predict/image"]
        assert seen[name]["latex"] == uploaded["latex"] and seen[name]["math"]
    assert uploaded["tokens"] == LABELS[0]
    assert seen["cleared"]["hint"] and not seen["cleared"]["result"]

    # No clipboard API (plain http on another address): selected, copied the old way ...
    assert seen["oldCopy"] == {"said": "Copied.", "selected": True}
    # ... or, where even that is refused, the person is asked to press Ctrl+C.
    assert "Ctrl+C" in seen["noCopy"]["said"] and seen["noCopy"]["selected"]
