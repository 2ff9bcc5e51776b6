"""``wandb-bridge show``: the offline-run viewer, on runs recorded here through ``Session``."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from wandb_bridge import Session
from wandb_bridge.__main__ import main
from wandb_bridge.testing import RunRecord, WandbOfflineRuns, read_run
from wandb_bridge.viewer import WIDTH, sparkline

pytestmark = pytest.mark.filterwarnings("ignore:Metric .train/grad_norm. is NaN")

LOSSES = {1: 4.0, 2: 2.0, 3: 3.0, 4: 0.5, 5: 1.0, 6: 0.75}
VAL_LOSSES = {2: 2.0, 4: 1.5, 6: 1.0}
GRAD_NORMS = {2: 0.5, 4: math.nan, 6: 0.25}
LONG_NOTE = "a long value " * 30


def _record(
    tmp_path: Path,
    name: str,
    *,
    losses: dict[int, float] = LOSSES,
    fail: bool = False,
    media: bool = False,
) -> str:
    """Record one offline run through Session; returns its run id."""
    config = {"lr": 0.001, "model": {"layers": 2}, "note": LONG_NOTE}
    checkpoint = tmp_path / f"{name}.ckpt"
    session = Session(
        project="viewer", name=name, group="grp", job_type="train", config=config, log_model="all", monitor="val_loss"
    )
    try:
        with session:
            for step, loss in losses.items():
                session.log({"loss": loss}, step=step, epoch=(step - 1) // 2)
                if step in VAL_LOSSES:
                    session.log({"val_loss": VAL_LOSSES[step], "grad_norm": GRAD_NORMS[step]}, step=step)
                    checkpoint.write_bytes(bytes([step]) * 2048)
                    session.log_checkpoint(
                        checkpoint, step=step, epoch=(step - 1) // 2, metrics={"val_loss": VAL_LOSSES[step]}
                    )
            if media:
                table = session.wandb_type("Table", columns=["x"], data=[[1], [2]])
                session.log({"preds": table, "weights": session.wandb_type("Histogram", [1.0, 2.0, 3.0])}, step=6)
            if fail:
                session.mark_preempting()
                raise RuntimeError("boom")
    except RuntimeError:
        assert fail
    return session.run_id or ""


def _metric(text: str, key: str) -> list[str]:
    """The metric line of ``key`` split into [key, count, first, last, min, max, sparkline]."""
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 7 and parts[0] == key and parts[1].isdigit():
            return parts
    raise AssertionError(f"no metric line for {key!r} in:\n{text}")


def _line(text: str, *needles: str) -> str:
    found = [line for line in text.splitlines() if all(n in line for n in needles)]
    assert len(found) == 1, (needles, text)
    return found[0]


def test_sparkline_downsamples_and_shows_nan_gaps() -> None:
    falling = [100.0 - i for i in range(100)]
    line = sparkline(falling)
    assert len(line) == 30 and line[0] == "█" and line[-1] == "▁"
    assert list(line) == sorted(line, reverse=True)
    assert sparkline([1.0, math.nan, 3.0]) == "▁·█"
    assert sparkline([5.0, 5.0]) == "▄▄"
    assert sparkline([float("inf")] * 3) == "···"
    assert sparkline([1.0, 2.0], ascii_only=True) == "_#"
    assert sparkline([]) == ""


def test_text_view_of_finished_and_failed_runs(
    wandb_offline: WandbOfflineRuns, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = _record(tmp_path, "alpha")
    bad = _record(tmp_path, "beta", losses={1: 9.0, 2: 8.0}, fail=True)
    wandb_offline.flush()

    assert main(["show", str(wandb_offline.wandb_dir)]) == 0
    captured = capsys.readouterr()
    out = captured.out
    assert captured.err == ""
    assert all(len(line) <= WIDTH for line in out.splitlines())
    alpha, beta = out.split("── run ")[1:]

    # header
    assert alpha.startswith(f"{good} · alpha ")
    assert _line(alpha, "project").split() == ["project", "viewer"]
    assert "grp · job type train" in alpha
    assert "finished, exit code 0" in alpha
    assert "history  6 rows · trainer/global_step 1 → 6" in alpha
    assert beta.startswith(f"{bad} · beta ")
    assert "failed, exit code 1; preempting" in beta

    # metrics: key, count, first, last, min, max, sparkline against trainer/global_step
    assert "metrics (" in alpha and ") against trainer/global_step" in alpha
    assert _metric(alpha, "train/loss") == ["train/loss", "6", "4", "0.75", "0.5", "4", "█▄▆▁▂▁"]
    assert _metric(alpha, "val/loss") == ["val/loss", "3", "2", "1", "1", "2", "█▅▁"]
    assert _metric(alpha, "train/grad_norm") == ["train/grad_norm", "3", "0.5", "0.25", "0.25", "0.5", "█·▁"]
    assert "non-finite values (drawn as '·'): train/grad_norm (1)" in alpha
    section = alpha.split("  metrics (")[1]
    order = [
        section.index(f"\n    {key} ") for key in ("train/grad_norm", "train/loss", "val/loss", "perf/step_time_s")
    ]
    assert order == sorted(order)
    assert _metric(beta, "train/loss")[1:6] == ["2", "9", "8", "8", "9"]
    for step_key in ("trainer/global_step", "trainer/epoch", "_step", "_runtime", "_timestamp"):
        with pytest.raises(AssertionError):
            _metric(alpha, step_key)

    # config: flat, sorted, long values shortened
    config = alpha.split("  config (3)\n")[1].split("  summary")[0].splitlines()
    assert [line.split()[0] for line in config] == ["lr", "model/layers", "note"]
    assert config[1].split() == ["model/layers", "2"]
    assert config[2].rstrip().endswith("…") and len(config[2]) < len(LONG_NOTE)

    # summary: the monitored metric keeps its best value
    assert _line(alpha, "val/loss.min").split() == ["val/loss.min", "1"]
    summary = alpha.split("  summary (")[1].split("  artifacts")[0]
    assert _line(summary, "    train/loss ").split() == ["train/loss", "0.75"]

    # artifacts: type, file count and size, aliases
    assert "artifacts (3)" in alpha
    first_ckpt = _line(alpha, f"model-{good}", "step-2")
    assert first_ckpt.split()[1:5] == ["model", "1", "file", "2.0"]
    assert first_ckpt.split()[-4:] == ["best,", "latest,", "epoch-0,", "step-2"]
    assert _line(alpha, f"model-{good}", "step-6").split()[-4:] == ["best,", "latest,", "epoch-2,", "step-6"]
    assert "artifacts (1)" in beta and "step-2" in _line(beta, f"model-{bad}")


def test_json_view_is_one_strict_document(
    wandb_offline: WandbOfflineRuns, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_id = _record(tmp_path, "alpha")
    run = wandb_offline.run()

    assert main(["show", "--json", str(run.folder)]) == 0
    out = capsys.readouterr().out
    assert "NaN" not in out  # strict JSON: non-finite values are null
    runs = json.loads(out)
    assert isinstance(runs, list) and len(runs) == 1
    data = runs[0]
    assert (data["run_id"], data["name"], data["project"], data["group"], data["job_type"]) == (
        run_id,
        "alpha",
        "viewer",
        "grp",
        "train",
    )
    assert (data["state"], data["finished"], data["exit_code"], data["truncated"]) == ("finished", True, 0, False)
    assert (data["history_rows"], data["step_key"], data["first_step"], data["last_step"]) == (
        6,
        "trainer/global_step",
        1,
        6,
    )
    assert data["config"] == {"lr": 0.001, "model/layers": 2, "note": LONG_NOTE}
    assert data["summary"]["val/loss"] == {"min": 1.0}
    assert {"train/loss", "val/loss", "train/grad_norm"} <= set(data["metrics"])
    assert not [key for key in data["metrics"] if key.startswith(("trainer/", "_"))]
    loss = data["metrics"]["train/loss"]
    assert {k: loss[k] for k in ("count", "nonfinite", "first", "last", "min", "max", "first_step", "last_step")} == {
        "count": 6,
        "nonfinite": 0,
        "first": 4.0,
        "last": 0.75,
        "min": 0.5,
        "max": 4.0,
        "first_step": 1,
        "last_step": 6,
    }
    assert loss["mean"] == pytest.approx(sum(LOSSES.values()) / 6)
    grad = data["metrics"]["train/grad_norm"]
    assert (grad["count"], grad["nonfinite"], grad["min"], grad["max"], grad["sparkline"]) == (3, 1, 0.25, 0.5, "█·▁")
    arts = data["artifacts"]
    assert [a["aliases"][2:] for a in arts] == [["epoch-0", "step-2"], ["epoch-1", "step-4"], ["epoch-2", "step-6"]]
    assert all(a["aliases"][:2] == ["best", "latest"] for a in arts)
    assert all((a["type"], a["file_count"], a["size_bytes"]) == ("model", 1, 2048) for a in arts)
    assert arts[0]["metadata"]["step"] == 2


def test_plot_writes_png_of_chosen_keys_across_runs(
    wandb_offline: WandbOfflineRuns, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _record(tmp_path, "alpha")
    _record(tmp_path, "beta", losses={step: loss * 1.5 for step, loss in LOSSES.items()})
    wandb_offline.flush()
    png = tmp_path / "plots" / "loss.png"

    assert main(["show", str(wandb_offline.wandb_dir), "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert f"plot: {png} (train/loss, val/loss; 2 run(s))" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 20_000

    # chosen keys; --json keeps stdout pure JSON
    one = tmp_path / "one.png"
    assert main(["show", str(wandb_offline.wandb_dir), "--json", "--plot", str(one), "--keys", "val/loss,nope/x"]) == 0
    captured = capsys.readouterr()
    assert len(json.loads(captured.out)) == 2
    assert "--keys nope/x: not in any of the runs shown" in captured.err
    assert 10_000 < one.stat().st_size < png.stat().st_size

    assert main(["show", str(wandb_offline.wandb_dir), "--plot", str(tmp_path / "none.png"), "--keys", "nope/x"]) == 1
    assert not (tmp_path / "none.png").exists()
    capsys.readouterr()
    assert main(["show", str(wandb_offline.wandb_dir), "--json", "--plot", str(tmp_path / "chart.xyz")]) == 1
    captured = capsys.readouterr()
    assert f"cannot write the plot to {tmp_path / 'chart.xyz'}: Format 'xyz' is not supported" in captured.err
    assert len(json.loads(captured.out)) == 2

    # matplotlib missing: exit 2 with the install hint, nothing else done
    for module in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, module, None)
    assert main(["show", str(wandb_offline.wandb_dir), "--plot", str(tmp_path / "x.png")]) == 2
    captured = capsys.readouterr()
    assert 'pip install "wandb-bridge[plot]"' in captured.err
    assert captured.out == ""


def _copy(run: RunRecord, folder: Path, data: bytes) -> Path:
    folder.mkdir(parents=True)
    target = folder / run.path.name
    target.write_bytes(data)
    return target


def test_corrupt_truncated_and_empty_paths(
    wandb_offline: WandbOfflineRuns, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_id = _record(tmp_path, "alpha", media=True)
    run = wandb_offline.run()
    data = run.path.read_bytes()
    assert len(data) > 4096

    # One byte flipped in the middle: whatever it hits (payload, CRC, length, type), the framing check fails.
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0xFF
    corrupt = _copy(run, tmp_path / "corrupt", bytes(flipped))
    # The tail cut off inside a record, as when the writing process is killed.
    cut = next(n for n in range(200, 600) if read_run(_copy(run, tmp_path / f"probe{n}", data[:-n])).truncated)
    truncated = _copy(run, tmp_path / "truncated", data[:-cut])
    empty = tmp_path / "empty"
    empty.mkdir()

    code = main(["show", str(corrupt), str(truncated.parent), str(empty), str(tmp_path / "missing"), str(run.folder)])
    assert code == 1
    captured = capsys.readouterr()
    errors = captured.err.splitlines()
    assert len(errors) == 3
    assert errors[0].startswith(f"wandb-bridge show: {corrupt}: corrupt run file, ")
    assert "offset" in errors[0]
    assert errors[1] == f"wandb-bridge show: {empty}: no W&B offline run here (no run-*.wandb file under it)"
    assert errors[2] == f"wandb-bridge show: {tmp_path / 'missing'}: no such file or folder"

    # the other runs are still shown: the truncated copy and the original
    shown = captured.out.split("── run ")[1:]
    assert len(shown) == 2
    assert all(part.startswith(f"{run_id} · alpha") for part in shown)
    assert "not finished (still running, or killed); truncated file (last record incomplete)" in shown[0]
    assert "truncated/run-" in shown[0] and "corrupt/" not in captured.out
    count, first = _metric(shown[0], "train/loss")[1:3]
    assert 1 <= int(count) <= 6 and first == "4"
    assert "finished, exit code 0" in shown[1]
    assert "media and other non-numeric keys: train/preds (table-file), train/weights (histogram)" in shown[1]
    assert _line(shown[1], "    train/preds ").split() == ["train/preds", "<table-file>"]
    with pytest.raises(AssertionError):
        _metric(shown[1], "train/preds.nrows")

    assert main(["show", "--json", str(corrupt)]) == 1
    captured = capsys.readouterr()
    assert json.loads(captured.out) == []
    assert str(corrupt) in captured.err


@pytest.mark.slow
def test_console_command_in_a_subprocess(wandb_offline: WandbOfflineRuns, tmp_path: Path) -> None:
    run_id = _record(tmp_path, "alpha")
    wandb_offline.flush()
    env = {**os.environ, **wandb_offline.env, "PYTHONIOENCODING": "utf-8"}
    done = subprocess.run(
        [sys.executable, "-m", "wandb_bridge", "show", str(wandb_offline.wandb_dir)],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert f"── run {run_id} · alpha" in done.stdout
    assert _metric(done.stdout, "train/loss")[1:] == ["6", "4", "0.75", "0.5", "4", "█▄▆▁▂▁"]

    # a stream that cannot encode the block characters gets the ASCII view
    raw = subprocess.run(
        [sys.executable, "-m", "wandb_bridge", "show", str(wandb_offline.wandb_dir)],
        capture_output=True,
        env={**env, "PYTHONIOENCODING": "ascii"},
        timeout=120,
        check=False,
    )
    assert raw.returncode == 0, raw.stderr
    text = raw.stdout.decode("ascii")
    assert _metric(text, "train/loss")[6] == "#~+_._"

    # no framework and no matplotlib is imported to show runs
    frameworks = ("torch", "lightning", "pytorch_lightning", "transformers", "keras", "tensorflow", "jax", "matplotlib")
    script = (
        "import sys; from wandb_bridge.__main__ import main; code = main(['show', sys.argv[1]]); "
        f"loaded = sorted(set(sys.modules) & set({frameworks!r})); print(loaded, file=sys.stderr); "
        "sys.exit(code or len(loaded))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(wandb_offline.wandb_dir)],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr

    done = subprocess.run(
        [sys.executable, "-m", "wandb_bridge", "show", str(tmp_path / "nothing")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1
    assert "no such file or folder" in done.stderr
