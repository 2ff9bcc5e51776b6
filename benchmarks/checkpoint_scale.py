"""Checkpoints at scale (issue 17): blocking time and extra disk per save of a 1 GB checkpoint.

Two shapes, each saved ``--saves`` times with new content:

* ``file``: one ``--size-mb`` MB checkpoint file.
* ``sharded``: a folder of 8 shards (``model-0000i-of-00008.safetensors``, ``--size-mb`` MB
  in all) plus ``model.safetensors.index.json``, as ``save_pretrained(max_shard_size=...)`` writes.

Three ways to hand it to W&B, each in a fresh process (offline run, its own folders):

* ``native``: what the frameworks' own integrations do after a save: ``wandb.Artifact``,
  ``add_file`` / ``add_dir``, ``run.log_artifact`` (wandb hashes and copies on the
  calling thread).
* ``upload``: ``Session(log_model="all").log_checkpoint(path)`` (large files hard-linked
  on the training thread; hashing and wandb's staging copy in the worker).
* ``reference``: the same with ``checkpoint_storage="reference"`` (the training thread
  records the path; the worker hashes once, nothing is copied).

Measured per save: the blocking time of the hand-over call on the training thread,
and the extra disk the save leaves behind once the run is finished (wandb's staging
copies, its cache, our staging folder; the checkpoint itself not counted). The time
``finish()`` takes is reported too. Writing the checkpoint is the framework's cost and
is not timed.

Run alone: ``python benchmarks/checkpoint_scale.py [--size-mb 1024] [--saves 2] [--out FILE]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

KINDS = ("file", "sharded")
VARIANTS = ("native", "upload", "reference")
SHARDS = 8
_BLOCK = 16 << 20


def _write(path: Path, size: int, seed: bytes) -> None:
    """``size`` bytes: a random 16 MB block repeated, each block prefixed with ``seed`` (new content per save)."""
    block = os.urandom(_BLOCK)
    with open(path, "wb") as handle:
        left = size
        index = 0
        while left > 0:
            chunk = (seed + index.to_bytes(8, "little") + block)[: min(_BLOCK, left)]
            handle.write(chunk)
            left -= len(chunk)
            index += 1


def write_checkpoint(root: Path, kind: str, size: int, save: int) -> Path:
    """Write save number ``save`` of a ``kind`` checkpoint of ``size`` bytes under ``root``."""
    seed = f"save-{save}-".encode()
    if kind == "file":
        path = root / f"step-{save}.ckpt"
        _write(path, size, seed)
        return path
    folder = root / f"checkpoint-{save}"
    folder.mkdir()
    weight_map = {}
    for index in range(1, SHARDS + 1):
        name = f"model-{index:05d}-of-{SHARDS:05d}.safetensors"
        _write(folder / name, size // SHARDS, seed + name.encode())
        weight_map[f"layer{index}.weight"] = name
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": size}, "weight_map": weight_map}), encoding="utf-8"
    )
    return folder


def _disk(paths: Sequence[Path]) -> int:
    """Bytes on disk in the files under ``paths`` (hard links counted once)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for root in paths:
        for folder, _, names in os.walk(root):
            for name in names:
                try:
                    info = Path(folder, name).lstat()
                except OSError:
                    continue
                if (info.st_dev, info.st_ino) not in seen:
                    seen.add((info.st_dev, info.st_ino))
                    total += info.st_blocks * 512
    return total


def worker(kind: str, variant: str, size: int, saves: int, root: Path) -> dict[str, Any]:
    """One process: ``saves`` saves of one kind, handed over one way; returns the figures."""
    ckpts = root / "ckpts"
    ckpts.mkdir()
    wandb_dirs = [root / "wandb", root / "data", root / "cache"]
    for folder in wandb_dirs:
        folder.mkdir()
    blocking: list[float] = []
    if variant == "native":
        import wandb

        run = wandb.init(project="ckpt-scale", mode="offline", settings=wandb.Settings(x_disable_stats=True))
        for save in range(1, saves + 1):
            path = write_checkpoint(ckpts, kind, size, save)
            start = time.perf_counter()
            artifact = wandb.Artifact(f"model-{run.id}", type="model")
            if path.is_dir():
                artifact.add_dir(str(path))
            else:
                artifact.add_file(str(path))
            run.log_artifact(artifact, aliases=["latest", f"step-{save}"])
            blocking.append(time.perf_counter() - start)
        start = time.perf_counter()
        run.finish()
        finish_s = time.perf_counter() - start
    else:
        from wandb_bridge import Session

        storage = "reference" if variant == "reference" else "upload"
        session = Session(project="ckpt-scale", mode="offline", log_model="all", checkpoint_storage=storage)
        session.log({"loss": 1.0}, step=0)  # the run starts here, not in the first timed call
        assert session.flush()
        for save in range(1, saves + 1):
            path = write_checkpoint(ckpts, kind, size, save)
            start = time.perf_counter()
            session.log_checkpoint(path, step=save)
            blocking.append(time.perf_counter() - start)
        start = time.perf_counter()
        session.finish()
        finish_s = time.perf_counter() - start
    from wandb_bridge.adapters.files import STAGING_DIR_NAME

    # what the run left beside the checkpoints: wandb's staging copies and cache, our staging folder
    extra = _disk([*wandb_dirs, ckpts / STAGING_DIR_NAME])
    return {
        "kind": kind,
        "variant": variant,
        "size_mb": size >> 20,
        "saves": saves,
        "blocking_s": blocking,
        "blocking_mean_s": sum(blocking) / len(blocking),
        "extra_disk_mb_per_save": extra / saves / (1 << 20),
        "finish_s": finish_s,
    }


def run_all(
    size_mb: int, saves: int, kinds: Sequence[str], variants: Sequence[str], timeout: float
) -> list[dict[str, Any]]:
    """Every (kind, variant) in a fresh process; returns their figures."""
    results = []
    here = Path(__file__).resolve()
    for kind in kinds:
        for variant in variants:
            root = Path(tempfile.mkdtemp(prefix=f"ckpt-scale-{kind}-{variant}-"))
            out = root / "result.json"
            env = {
                **os.environ,
                "WANDB_MODE": "offline",
                "WANDB_SILENT": "true",
                "WANDB_DIR": str(root / "wandb"),
                "WANDB_DATA_DIR": str(root / "data"),
                "WANDB_CACHE_DIR": str(root / "cache"),
                "WANDB_CONFIG_DIR": str(root / "config"),
                "WANDB_DISABLE_GIT": "true",
                "WANDB_DISABLE_CODE": "true",
                "WANDB__DISABLE_STATS": "true",
                "WANDB_BRIDGE_LOG_PROCESS": "false",
            }
            command = [sys.executable, str(here), "--worker", kind, variant, str(size_mb), str(saves), str(root)]
            try:
                done = subprocess.run(
                    command, env=env, cwd=root, capture_output=True, text=True, timeout=timeout, check=False
                )
                if done.returncode != 0 or not out.exists():
                    print(f"{kind}/{variant} failed:\n{done.stderr[-3000:]}", file=sys.stderr)
                    continue
                results.append(json.loads(out.read_text(encoding="utf-8")))
                print(_line(results[-1]), flush=True)
            finally:
                shutil.rmtree(root, ignore_errors=True)
    return results


def _line(r: dict[str, Any]) -> str:
    return (
        f"{r['kind']:8s} {r['variant']:10s} {r['size_mb']:6d} MB  blocking/save {r['blocking_mean_s'] * 1000:10.2f} ms"
        f"  extra disk/save {r['extra_disk_mb_per_save']:8.1f} MB  finish {r['finish_s']:6.2f} s"
    )


def table(results: Sequence[dict[str, Any]]) -> str:
    """A Markdown table of the figures, with ratios to native."""
    lines = [
        "| checkpoint | way | blocking per save | vs native | extra disk per save | finish() after the last save |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    native = {r["kind"]: r for r in results if r["variant"] == "native"}
    for r in results:
        base = native.get(r["kind"])
        ratio = "" if base is None or r is base else f"{base['blocking_mean_s'] / r['blocking_mean_s']:,.0f}x less"
        shape = f"{r['size_mb']} MB {'file' if r['kind'] == 'file' else f'folder ({SHARDS} shards)'}"
        lines.append(
            f"| {shape} | {r['variant']} | {r['blocking_mean_s'] * 1000:.2f} ms | {ratio} | "
            f"{r['extra_disk_mb_per_save']:.0f} MB | {r['finish_s']:.1f} s |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``python benchmarks/checkpoint_scale.py``: run every case, print the table, write ``--out``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--worker"]:
        kind, variant, size_mb, saves, root = args[1:6]
        result = worker(kind, variant, int(size_mb) << 20, int(saves), Path(root))
        Path(root, "result.json").write_text(json.dumps(result), encoding="utf-8")
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--saves", type=int, default=2)
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per case")
    parser.add_argument("--out", default=None, help="write the figures as JSON here")
    opts = parser.parse_args(args)
    results = run_all(opts.size_mb, opts.saves, opts.kinds, opts.variants, opts.timeout)
    print()
    print(table(results))
    if opts.out:
        Path(opts.out).write_text(json.dumps(results, indent=2), encoding="utf-8")
    return 0 if len(results) == len(opts.kinds) * len(opts.variants) else 1


if __name__ == "__main__":
    sys.exit(main())
