"""hmer works where pip puts it: what the wheel holds, shipped configs by name, a missing onnx.

The slow part builds the wheel from a copy of the working tree (the files git tracks or would
track), installs it into a fresh virtualenv without the network (the dependencies come from the
environment running the tests, through a ``.pth`` file; hmer itself only from the wheel) and runs
``hmer`` there from a folder outside the checkout.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from hmer import __version__
from hmer.cli import build_parser, main
from hmer.cli.predict import choose_engine
from hmer.cli.train import train_main
from hmer.errors import ConfigError, HmerError
from hmer.paths import config_path, example_image, shipped_configs

ROOT = Path(__file__).resolve().parents[1]
NAMES = ("tiny", "bttr", "cpu", "crohme_h200")


# --- shipped configs, by name -------------------------------------------------------------------


def test_each_shipped_config_answers_to_its_name_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no configs/ here
    for name in NAMES:
        path = config_path(name)
        assert path.is_file() and path.name == f"{name}.yaml"
        # The spellings of older commands and of the checkout name the same file.
        assert config_path(f"{name}.yaml") == config_path(f"configs/{name}.yaml") == path
    assert config_path("h200") == config_path("crohme_h200")
    assert set(shipped_configs()) == {*NAMES, "h200"}


def test_an_existing_file_wins_over_a_shipped_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").mkdir()
    mine = tmp_path / "configs" / "tiny.yaml"
    mine.write_text("model:\n  d_model: 32\n")
    assert config_path("configs/tiny.yaml") == Path("configs/tiny.yaml")
    assert config_path(mine) == mine
    assert config_path("tiny") == shipped_configs()["tiny"] != mine  # a bare name: shipped


@pytest.mark.parametrize("spec", ["tinny", "elsewhere/tiny.yaml", "configs/nope.yaml"])
def test_an_unknown_config_is_refused_listing_the_shipped_names(spec, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as caught:
        config_path(spec)
    message = str(caught.value)
    assert message.startswith(f"{spec}: no such config file")
    assert all(name in message for name in (*NAMES, "h200"))


def test_train_refuses_an_unknown_name_or_two_configs_before_training(tmp_path, capsys):
    assert main(["train", "tinny", "--out", str(tmp_path / "run")]) == 2
    assert "tinny: no such config file" in capsys.readouterr().err
    assert train_main(["tiny", "--config", "bttr", "--out", str(tmp_path / "run")]) == 2
    assert "two configs given: tiny and --config bttr" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path / "run")]) == 2
    assert "no config given" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_model_info_takes_a_shipped_name(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["model", "info", "tiny", "model.d_model=32"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("tiny: densenet encoder, d_model 32") and "parameters" in out


def test_the_example_image_and_its_truth_ship(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    image, truth = example_image()
    assert image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert truth == (ROOT / "data" / "examples" / "example.txt").read_text().strip()


def test_a_checkout_that_was_never_installed_finds_them_too(tmp_path):
    # -S: no site-packages, so no install of hmer (nor any dependency: these modules need none).
    code = (
        f"import sys; sys.path.insert(0, {str(ROOT)!r}); "
        "from hmer.paths import config_path, example_image; "
        "print(config_path('h200')); print(example_image()[0])"
    )
    done = subprocess.run(
        [sys.executable, "-S", "-c", code], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [
        str(ROOT / "configs" / "crohme_h200.yaml"),
        str(ROOT / "data" / "examples" / "example.png"),
    ]


# --- without onnx / onnxruntime -----------------------------------------------------------------


def _engine(*argv: str) -> str:
    return choose_engine(build_parser().parse_args(["predict", "x.png", *argv]))


def test_without_onnxruntime_engine_onnx_names_the_remedy(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if not installed
    for argv, asked in ((["--engine", "onnx"], "--engine onnx"), (["--onnx", "d"], "--onnx d")):
        with pytest.raises(HmerError) as caught:
            _engine(*argv)
        message = str(caught.value)
        assert message.startswith(f"{asked} needs onnxruntime, not installed")
        assert "pip install onnx onnxruntime" in message


def test_without_onnx_auto_says_once_why_it_reads_with_pytorch(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnx", None)
    assert _engine("--device", "cpu") == "torch"
    (note,) = capsys.readouterr().err.splitlines()
    assert note.startswith("hmer: note: onnx not installed, so this reads with PyTorch")
    assert "pip install onnx onnxruntime" in note
    # An export folder needs only onnxruntime; asking for PyTorch needs neither, silently.
    assert _engine("--onnx", "d") == "onnx"
    assert _engine("--device", "cpu", "--engine", "torch") == "torch"
    assert capsys.readouterr().err == ""


# --- the wheel, installed ----------------------------------------------------------------------


def _run(argv: list[str | Path], cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    done = subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{argv}:\n{done.stdout}\n{done.stderr}"
    return done


def _working_tree(dest: Path) -> Path:
    """A copy of the files git tracks or would track (so no stale build/ or egg-info)."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("building the wheel copies the working tree with git: not a git checkout")
    for name in filter(None, listed.decode().split("\0")):
        source = ROOT / name
        if source.is_file():  # deleted but still tracked: not part of the tree
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel of the working tree, built offline with the installed setuptools."""
    source = _working_tree(tmp_path_factory.mktemp("source"))
    out = tmp_path_factory.mktemp("wheel")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    _run([*pip, "wheel", "--no-deps", "--no-index", "--no-build-isolation", "-w", out, "."], source)
    (built,) = out.glob("hmer-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    """A fresh virtualenv holding the wheel; its dependencies are those of this environment."""
    venv = tmp_path_factory.mktemp("venv")
    _run([sys.executable, "-m", "venv", "--without-pip", venv], venv)
    python = venv / "bin" / "python"
    site = _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], venv)
    ours = {sysconfig.get_paths()[key] for key in ("purelib", "platlib")}
    # Appended to sys.path after the venv's own site-packages; its .pth files are not run, so
    # an editable hmer there stays out of sight.
    (Path(site.stdout.strip()) / "hmer-test-deps.pth").write_text("\n".join(sorted(ours)) + "\n")
    install = ["install", "--no-deps", "--no-index", "--ignore-installed", wheel]
    _run([python, "-m", "pip", "--disable-pip-version-check", *install], venv)
    return venv


@pytest.mark.slow
def test_the_wheel_holds_the_package_and_the_files_hmer_reads(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        dist_info = f"hmer-{__version__}.dist-info"
        metadata = archive.read(f"{dist_info}/METADATA").decode()
    package = {
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / "hmer").rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    configs = {f"hmer/configs/{p.name}" for p in (ROOT / "configs").iterdir() if p.is_file()}
    examples = {f"hmer/examples/{name}" for name in ("__init__.py", "example.png", "example.txt")}
    assert package | configs | examples <= names
    assert {name.split("/")[0] for name in names} == {"hmer", dist_info}
    assert f"{dist_info}/licenses/LICENSE" in names
    assert "License-Expression: MIT" in metadata
    assert "Requires-Dist: onnxruntime" in metadata and "Provides-Extra: onnx" in metadata


@pytest.mark.slow
def test_the_installed_commands_work_outside_the_checkout(venv, tmp_path):
    bin_dir = venv / "bin"
    where = _run([bin_dir / "python", "-c", "import hmer; print(hmer.__file__)"], tmp_path)
    assert Path(where.stdout.strip()).is_relative_to(venv)
    assert _run([bin_dir / "hmer", "--version"], tmp_path).stdout.strip() == f"hmer {__version__}"
    info = _run([bin_dir / "hmer", "model", "info", "tiny"], tmp_path).stdout
    assert info.startswith("tiny: densenet encoder") and "parameters" in info

    argv = ["demo", "--out", "demo", "--budget", "10s", "--n-train", "16", "--n-test", "2"]
    out = _run([bin_dir / "hmer", *argv], tmp_path).stdout
    truth = (ROOT / "data" / "examples" / "example.txt").read_text().strip()
    assert "held-out synthetic ExpRate:" in out
    (shown,) = [line for line in out.splitlines() if line.endswith(f", truth: {truth}")]
    assert Path(shown.split(", truth:")[0]).is_relative_to(venv)  # the installed copy
    (run,) = (tmp_path / "demo").glob("run-*")
    assert (run / "results.json").is_file() and (run / "best.pt").is_file()
