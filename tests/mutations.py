"""Plant each known defect in a copy of the repository and show that its tests go red.

Usage (from the repository root, in the project's virtual environment)::

    python tests/mutations.py                 # every mutation, on a copy of the committed tree (HEAD)
    python tests/mutations.py --working-tree  # on a copy of the files as they are now (uncommitted too)
    python tests/mutations.py --baseline      # first check that the targeted tests pass unmutated
    python tests/mutations.py dedup-off rows-not-in-helper   # only these

The shared working tree is never touched: the copy is a ``git worktree`` (or a
plain copy) under a temporary folder, removed at the end. Each mutation is a
literal text replacement in one ``src/`` file; if its anchor text is not found
(the code moved), the mutation is reported as ``STALE`` so the list is kept in
step with the code. The targeted tests run with ``PYTHONPATH=<copy>/src``, so
the copy's package wins over the editable install. Exit status: 0 when every
mutation made at least one of its tests fail, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Mutation:
    """One planted defect: replace ``old`` by ``new`` in ``path``; ``tests`` must go red."""

    name: str
    what: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]


MUTATIONS = (
    Mutation(
        "empty-version-logged",
        "a checkpoint that include/exclude leave no file of is logged as an empty model version",
        "src/wandb_bridge/core/checkpoint_uploads.py",
        'if files.holds_nothing(snap):  # before the policy: it is no candidate for "latest" or "best"',
        "if False:",
        ("tests/test_session.py::test_a_checkpoint_with_every_file_excluded_logs_no_empty_version",),
    ),
    Mutation(
        "dedup-off",
        "the duplicate-content skip in the checkpoint worker switched off",
        "src/wandb_bridge/core/checkpoint_uploads.py",
        "duplicate = digest in self._digests",
        "duplicate = False",
        ("tests/test_lightning.py::test_every_checkpoint_callback_followed_best_alias_metadata_and_dedup",),
    ),
    Mutation(
        "rows-not-in-helper",
        "every row logged from the training process, none through the logging process",
        "src/wandb_bridge/core/row_sinks.py",
        "shared = handle.share() if self._wanted and self._faults.broken is None else None",
        "shared = None",
        (
            "tests/test_log_process.py::test_rows_are_logged_by_a_helper_process_in_order",
            "tests/test_log_process.py::test_plain_rows_of_every_kind_go_to_the_helper",
        ),
    ),
    Mutation(
        "plan-ignored",
        "a training that plans many rows still waits for a look before the logging process takes them",
        "src/wandb_bridge/core/row_sinks.py",
        "PLAN_ROWS = 500",
        "PLAN_ROWS = 10**12",
        (
            "tests/test_log_process.py::test_auto_a_planned_training_gets_the_helper_from_the_start",
            "tests/test_log_process.py::test_the_framework_callbacks_plan_their_rows",
        ),
    ),
    Mutation(
        "helper-never-forked",
        "the logging process is always a fresh interpreter (a second import of wandb)",
        "src/wandb_bridge/adapters/row_process.py",
        "and threading.active_count() == 1",
        "and False",
        ("tests/test_log_process.py::test_a_single_threaded_process_forks_its_helper",),
    ),
    Mutation(
        "unsent-rows-dropped",
        "rows wandb could not take after a real wandb-core failure are dropped, not kept",
        "src/wandb_bridge/core/row_sinks.py",
        "        if rows:\n            self._keep(rows)",
        "        if False:\n            self._keep(rows)",
        (
            "tests/test_keras.py::test_logging_failure_does_not_stop_training",
            "tests/test_faults.py::test_wandb_core_killed_mid_run_keeps_training_and_rows",
        ),
    ),
    Mutation(
        "later-calls-not-cheap",
        "after wandb-core died, every later row is still handed to wandb",
        "src/wandb_bridge/core/row_sinks.py",
        'faults.break_off(f"{type(exc).__name__}: {exc}")',
        "pass",
        ("tests/test_faults.py::test_wandb_core_killed_mid_run_keeps_training_and_rows",),
    ),
    Mutation(
        "end-uploads-eagerly",
        'log_model="end" uploads every checkpoint when it is written',
        "src/wandb_bridge/core/checkpoints.py",
        'if self.log_model == "all" or (self.log_model == "best" and best):',
        'if self.log_model in ("all", "end") or (self.log_model == "best" and best):',
        ("tests/test_session.py::test_checkpoints_end_uploads_latest_and_best_once",),
    ),
    Mutation(
        "summary-min-and-max",
        "the monitored metric's summary keeps min and max, not the monitor mode",
        "src/wandb_bridge/adapters/wandb_sdk.py",
        "self.run.define_metric(key, summary=mode)",
        'self.run.define_metric(key, summary="min,max")',
        ("tests/test_keras.py::test_checkpoint_files_followed_with_aliases",),
    ),
    Mutation(
        "failed-fit-exit-code-2",
        "a Keras fit that raised finishes its run with exit code 2 instead of 1",
        "src/wandb_bridge/core/run_lifecycle.py",
        "        return code if isinstance(code, int) else (0 if code is None else 1)\n    return 1\n",
        "        return code if isinstance(code, int) else (0 if code is None else 1)\n    return 2\n",
        ("tests/test_keras.py::test_failed_fit_records_non_zero_exit_code",),
    ),
    Mutation(
        "trainable-equals-total",
        "transformers config reports every parameter as trainable",
        "src/wandb_bridge/callbacks/transformers_data.py",
        'config["model/num_trainable_parameters"] = counts.trainable',
        'config["model/num_trainable_parameters"] = counts.total',
        ("tests/test_transformers.py::test_config_and_planted_hub_token_absent_everywhere",),
    ),
    Mutation(
        "no-rows-without-stats",
        "system_stats=False drops the history rows too",
        "src/wandb_bridge/core/session_worker.py",
        "        if not rows:\n            return\n        self._markers.count(rows)",
        "        if not rows or not self._settings.system_stats:\n            return\n        self._markers.count(rows)",
        ("tests/test_session.py::test_system_stats_off_records_no_perf_keys",),
    ),
    Mutation(
        "every-rank-reports-files",
        "every rank reports the checkpoint files rank 0 wrote (per-rank runs would each record a copy)",
        "src/wandb_bridge/core/checkpoint_reports.py",
        "    return global_rank is None or global_rank == 0\n",
        "    return True\n",
        (
            "tests/test_core_steps.py::test_only_the_writer_of_checkpoint_files_reports_them",
            "tests/test_lightning.py::test_ddp_final_weights_are_reported_by_rank_zeros_run_only",
        ),
    ),
    Mutation(
        "evaluate-at-step-0",
        "evaluate() on a reloaded model records its results at step 0 instead of the run's last step",
        "src/wandb_bridge/core/steps.py",
        "    return last_step if optimizer_steps == 0 and last_step else optimizer_steps\n",
        "    return optimizer_steps\n",
        (
            "tests/test_core_steps.py::test_evaluation_results_outside_training_go_to_the_optimizer_step_or_the_runs_last_step",
        ),
    ),
    Mutation(
        "console-window-ignored",
        "a held progress-bar redraw handed over late whatever wandb-core's window of open lines",
        "src/wandb_bridge/adapters/console.py",
        "return self._least[name] >= FROZEN_LINES or self._most[name] + added < LIVE_LINES",
        "return True",
        ("tests/test_console_batch.py", "tests/test_speed_guard.py::test_progress_bar_logs_are_the_same_as_native"),
    ),
    Mutation(
        "console-line-start-uncounted",
        "lines printed before a stream started its line counted as below it",
        "src/wandb_bridge/adapters/console.py",
        'if not was_open or "\\n" in text or moves:',
        'if "\\n" in text or moves:',
        ("tests/test_speed_guard.py::test_output_log_file_is_the_same_as_native",),
    ),
    Mutation(
        "small-files-linked",
        "small checkpoint files hard-linked instead of read at the call (a rewrite in place changes the version)",
        "src/wandb_bridge/adapters/files.py",
        "COPY_BELOW_BYTES = 4 << 20",
        "COPY_BELOW_BYTES = 0",
        ("tests/test_claims_session.py::test_a_checkpoint_uploads_what_the_file_held_at_the_call",),
    ),
    Mutation(
        "attach-imports-again",
        "nothing of what attaching imports is loaded before the helper is forked",
        "src/wandb_bridge/adapters/wandb_sdk.py",
        '_RUN_START_MODULES = ("wandb.apis.public", "wandb.sdk.launch.inputs.internal")',
        "_RUN_START_MODULES: tuple[str, ...] = ()",
        ("tests/test_log_process.py::test_a_helper_attaches_without_importing_anything",),
    ),
    Mutation(
        "plain-rows-skip-the-nan-check",
        "rows of plain numbers take the fast path without the finite check",
        "src/wandb_bridge/core/metrics.py",
        "    return not total - total\n",
        "    return True\n",
        ("tests/test_metrics.py::test_rows_of_plain_numbers_report_every_non_finite_value",),
    ),
    Mutation(
        "attach-imports-launch-first",
        "what attaching needs is imported launch package first (pydantic's slow docstring path)",
        "src/wandb_bridge/adapters/wandb_sdk.py",
        '_RUN_START_MODULES = ("wandb.apis.public", "wandb.sdk.launch.inputs.internal")',
        '_RUN_START_MODULES = ("wandb.sdk.launch.inputs.internal", "wandb.apis.public")',
        ("tests/test_log_process.py::test_what_attaching_needs_is_imported_the_cheap_way",),
    ),
    Mutation(
        "auto-logs-before-looking",
        "log_process='auto' logs a whole batch here before its look (no probe)",
        "src/wandb_bridge/core/row_sinks.py",
        "                probe = choice.probing\n",
        "                probe = len(rows) if choice.probing else 0\n",
        (
            "tests/test_log_process.py::test_auto_a_first_batch_of_training_rows_goes_to_the_helper_after_the_probe",
            "tests/test_log_process.py::test_auto_looks_before_it_logs_a_batch_here",
        ),
    ),
    Mutation(
        "auto-forks-for-any-script",
        "log_process='auto' forks a waiting helper for a script that does not train",
        "src/wandb_bridge/core/row_sinks.py",
        "return self._planned >= PLAN_ROWS or any(name in sys.modules for name in TRAINING_MODULES)",
        "return True",
        ("tests/test_log_process.py::test_auto_a_script_that_does_not_train_forks_no_helper",),
    ),
    Mutation(
        "gc-never-unfrozen",
        "the objects frozen before the helper's fork are never handed back to the collector",
        "src/wandb_bridge/adapters/row_process.py",
        "                gc.unfreeze()",
        "                pass",
        ("tests/test_log_process.py::test_a_single_threaded_process_forks_its_helper",),
    ),
    Mutation(
        "gc-user-freeze-undone",
        "the session freezes and unfreezes even where the process froze objects itself",
        "src/wandb_bridge/adapters/row_process.py",
        "if not self._owned and gc.get_freeze_count() > 0:",
        "if False:",
        ("tests/test_log_process.py::test_objects_the_script_froze_itself_stay_frozen",),
    ),
    Mutation(
        "spawned-helper-in-the-job-group",
        "a spawned helper stays in the job's process group, where a SIGTERM kills it while it imports wandb",
        "src/wandb_bridge/adapters/row_process.py",
        "            start_new_session=True,",
        "            start_new_session=False,",
        ("tests/test_log_process.py::test_a_signal_to_the_process_group_never_reaches_a_starting_helper",),
    ),
)


def _make_copy(working_tree: bool) -> tuple[Path, bool]:
    base = Path(tempfile.mkdtemp(prefix="wandb-bridge-mutants-"))
    target = base / "repo"
    if working_tree:
        shutil.copytree(
            ROOT, target, ignore=shutil.ignore_patterns(".git", ".venv", "__pycache__", "*.egg-info", ".nox", "wandb")
        )
        return target, False
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(target), "HEAD"], check=True, timeout=120
    )
    return target, True


def _run_tests(copy: Path, tests: tuple[str, ...], timeout: float) -> tuple[int, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(copy / "src"), str(copy / "tests")])}
    command = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests]
    with tempfile.TemporaryFile() as out:
        try:
            code = subprocess.run(
                command, cwd=copy, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=timeout
            ).returncode
        except subprocess.TimeoutExpired:
            code = -1
        out.seek(0)
        tail = out.read().decode(errors="replace").strip().splitlines()
    return code, tail[-1] if tail else ""


def main() -> int:
    """Apply each mutation to a copy, run its tests, print one line per mutation."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help="mutations to run (default: all)")
    parser.add_argument("--working-tree", action="store_true", help="copy the current files instead of HEAD")
    parser.add_argument("--baseline", action="store_true", help="check the targeted tests pass unmutated first")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per pytest run")
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    args = parser.parse_args()
    chosen = [m for m in MUTATIONS if not args.names or m.name in args.names]
    if args.list:
        for m in MUTATIONS:
            print(f"{m.name:24} {m.what}\n{'':24} {m.path}; tests: {', '.join(m.tests)}")
        return 0
    copy, is_worktree = _make_copy(args.working_tree)
    survived = 0
    try:
        if args.baseline:
            targets = tuple(dict.fromkeys(t for m in chosen for t in m.tests))
            code, last = _run_tests(copy, targets, args.timeout)
            print(f"{'baseline':24} {'green' if code == 0 else 'RED (fix the suite first)'}  {last}", flush=True)
            if code != 0:
                return 1
        for m in chosen:
            path = copy / m.path
            original = path.read_text()
            if original.count(m.old) != 1:
                print(f"{m.name:24} STALE: anchor not found once in {m.path}", flush=True)
                survived += 1
                continue
            path.write_text(original.replace(m.old, m.new))
            started = time.monotonic()
            try:
                code, last = _run_tests(copy, m.tests, args.timeout)
            finally:
                path.write_text(original)
            verdict = "red (caught)" if code != 0 else "GREEN (survived)"
            survived += code == 0
            print(f"{m.name:24} {verdict:17} {time.monotonic() - started:5.0f} s  {last}", flush=True)
    finally:
        if is_worktree:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(copy)], check=False, timeout=120
            )
        shutil.rmtree(copy.parent, ignore_errors=True)
    print(f"{len(chosen) - survived} of {len(chosen)} mutations caught")
    return 1 if survived else 0


if __name__ == "__main__":
    raise SystemExit(main())
