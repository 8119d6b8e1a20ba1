"""The ensemble search as a tracked job: its folder, with a live status, exists from the start.

:func:`run_search` (behind the CLI ``ensemble`` verb) first checks everything it can without writing: the method, the threshold rule, every
method's parameters, the members (resolved, loaded and aligned) and the ensemble id. Then it
creates ``<ensembles>/<id>/`` like a run folder:

- ``config.json``: what is known up front (kind ``ensemble``, id, members and their paths,
  method, seed, threshold rule, parameters, split protocol, dataset fingerprint, created); the
  fitted weights and threshold are added at the end.
- ``status.json``: ``running`` with ``pid``, ``pid_start`` and a ``heartbeat`` refreshed every
  :data:`~cnmc_core.workspace.status.HEARTBEAT_SECONDS` by a thread (:class:`~cnmc_core.workspace.status.Heartbeat`),
  and progress: ``fitting`` (the method being fitted), ``step``/``steps`` (methods), and while
  the GA runs ``restart``/``restarts`` (1-based) and ``generation``/``generations``. It ends
  ``completed``, written last, after ``predictions.csv``, ``metrics.json`` and the final
  ``config.json``; or ``failed`` with the error (``cancelled`` on Ctrl-C), and the exception is
  re-raised (:meth:`~cnmc_core.workspace.status.Heartbeat.finish`). A search that fails before its first
  ``config.json`` is written writes it then (or a minimal one), so that readers list the folder
  and show the failure.
- ``history.jsonl``: one line per GA generation, ``stage`` (the GA's method name, ``ga`` or
  ``ga_mean``), ``restart`` (0-based, as the
  GA's callback gives it), ``generation``, ``best_fitness`` (best so far over all restarts),
  ``generation_best``, ``mean_fitness``, ``time``. A restart of more than
  :data:`MAX_LINES_PER_RESTART` generations logs every k-th one (plus its last and every one that
  improves the best), so a long search does not write gigabytes. Lines are appended in batches,
  at the end of each restart and at least every :data:`HISTORY_FLUSH_SECONDS`: an ``fsync`` per
  line made the default GA (10 restarts x 100 generations) two to ten times slower.

A search killed at any moment leaves a readable folder that
:func:`cnmc_core.workspace.status.effective_status` reports ``failed`` (process gone, or heartbeat older
than :data:`~cnmc_core.workspace.status.STALE_SECONDS`), with its history up to the last batch; readers
(:func:`cnmc_core.workspace.views.list_members`, :func:`cnmc_core.workspace.listing.list_experiments`) skip it
as a member.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from cnmc_core.ensemble.align import align_runs
from cnmc_core.ensemble.combiners import parse_threshold_rule
from cnmc_core.ensemble.genetic import GeneticSearch
from cnmc_core.ensemble.methods import (
    COMBINERS,
    DEFAULT_METHODS,
    make_combiner,
    method_params,
)
from cnmc_core.ensemble.report import score_methods
from cnmc_core.ensemble.store import (
    base_config,
    ensemble_outputs,
    ensemble_workspace,
    fitted_config,
    new_ensemble_id,
)
from cnmc_core.metrics.bootstrap import MAX_N_BOOT
from cnmc_core.validation import check_scalar, check_seed
from cnmc_core.workspace.fileio import atomic_write_csv, atomic_write_json, check_name
from cnmc_core.workspace.layout import (
    append_history,
    make_unique_folder,
    resolve_member,
)
from cnmc_core.workspace.status import Heartbeat, process_fields
from cnmc_core.workspace.summary import write_summary

__all__ = ["HISTORY_FLUSH_SECONDS", "MAX_LINES_PER_RESTART", "GAHistory", "run_search"]

#: The longest time GA generations wait in memory before they are appended to history.jsonl.
HISTORY_FLUSH_SECONDS = 1.0
#: About how many generations of one GA restart are logged (all of them up to this many).
MAX_LINES_PER_RESTART = 1000


class GAHistory:
    """A :class:`~cnmc_core.ensemble.genetic.GeneticSearch` callback that logs each generation.

    Puts the generation's progress in the heartbeat's fields (written at the next beat) and its
    line in a buffer: every generation when a restart has at most ``max_lines`` of them, else
    every ``ceil(generations / max_lines)``-th, the last, and any that improves the best. The
    buffer goes to ``history.jsonl`` at the last generation of a restart, every
    ``flush_seconds`` and on :meth:`flush`. ``inner``, when given, is called too and its
    ``False`` stops the GA. ``stage`` names the GA in the lines and the status message.
    """

    def __init__(self, folder: str | os.PathLike, heartbeat: Heartbeat | None, *, restarts: int,
                 generations: int, flush_seconds: float = HISTORY_FLUSH_SECONDS,
                 max_lines: int = MAX_LINES_PER_RESTART,
                 inner: Callable[[dict], Any] | None = None, stage: str = "ga"):
        self.stage = stage
        self.folder = Path(folder)
        self.heartbeat = heartbeat
        self.restarts = restarts
        self.generations = generations
        self.flush_seconds = flush_seconds
        self.stride = max(1, math.ceil(generations / max(1, max_lines)))
        self.inner = inner
        self._buffer: list[dict] = []
        self._best = -math.inf
        self._last = time.monotonic()

    def __call__(self, info: dict) -> Any:
        g = info["generation"]
        if g % self.stride == 0 or g >= self.generations or info["best_fitness"] > self._best:
            self._buffer.append({"stage": self.stage, **info, "time": time.time()})
        self._best = max(self._best, info["best_fitness"])
        if self.heartbeat is not None:
            r = info["restart"] + 1
            self.heartbeat.note(restart=r, restarts=self.restarts, generation=g,
                                generations=self.generations,
                                message=f"{self.stage}: restart {r} of {self.restarts}, "
                                        f"generation {g} of {self.generations}")
        if g >= self.generations or time.monotonic() - self._last >= self.flush_seconds:
            self.flush()
        return self.inner(info) if self.inner is not None else None

    def flush(self) -> None:
        """Append the buffered lines to ``history.jsonl`` (one write, one fsync)."""
        if self._buffer:
            lines, self._buffer = self._buffer, []
            append_history(self.folder, lines)
        self._last = time.monotonic()


def _keep_config(folder: Path, base: dict) -> None:
    """Write the search's first ``config.json`` if it is missing (its first write failed):
    readers list a folder only when it has one, and the failure recorded in ``status.json``
    would never be shown. Errors are ignored (the job's own error is the one raised); when the
    full config cannot be written, a minimal one is tried."""
    if (folder / "config.json").is_file():
        return
    minimal = {k: base[k] for k in ("kind", "ensemble_id", "run_id", "model", "members",
                                   "method", "seed", "created") if k in base}
    for config in (base, minimal):
        try:
            atomic_write_json(folder / "config.json", config)
            return
        except Exception:  # noqa: BLE001 - a full disk, a value that is not JSON...
            continue


def run_search(
    members: Sequence[str | os.PathLike],
    *,
    method: str = "ga",
    threshold: float | str = 0.5,
    seed: int = 0,
    out_dir: str | os.PathLike | None = None,
    runs_root: str | os.PathLike | None = None,
    ensemble_id: str | None = None,
    methods: Sequence[str] | None = DEFAULT_METHODS,
    params: dict[str, dict] | None = None,
    n_boot: int = 1000,
    on_start: Callable[[Path], Any] | None = None,
    actor=None,
) -> tuple[Path, list[dict]]:
    """Resolve, load and align ``members``, fit ``method`` (and the other ``methods``, for the
    report) on val, score them on test, save ``method``: a tracked search.

    ``methods`` are the methods reported beside ``method`` (equal weights, ``mean``, always
    is: the differences are taken against it); None or ``()`` reports ``method`` and ``mean``
    only. ``params`` gives extra parameters by method name.

    Bad arguments, members that do not align and an ``out_dir`` outside the members' workspace
    (:func:`~cnmc_core.ensemble.store.ensemble_workspace`; by default the ensemble goes to the
    members' ``<workspace>/ensembles``) are refused before anything is written. Then
    ``<out_dir>/<ensemble_id>/`` is created at once with ``status.json`` ``running`` (pid,
    heartbeat, progress), ``on_start(folder)`` is called, the GA logs its generations to
    ``history.jsonl``, and the status ends ``completed`` (or ``failed`` with the error, which is
    re-raised); a killed search reads as ``failed`` through
    :func:`cnmc_core.workspace.status.effective_status`.

    ``actor`` (None: the local OS user) must be a trainer or admin, and is recorded as
    ``launched_by``.

    Returns:
        ``(ensemble folder, comparison rows)``.

    Raises:
        AccessError: the actor may not save ensembles (checked first). ConfigError: a bad method, threshold, seed, ``n_boot`` (0 to
            :data:`~cnmc_core.metrics.bootstrap.MAX_N_BOOT`) or parameter, or a GA too large
            for the memory guards; RunError: members that cannot be aligned, or an ensemble
            folder that exists; CnmcError: an unsafe ``ensemble_id``.
    """
    from cnmc_core.auth.roles import require

    actor = require(actor, "save_ensemble")
    if method not in COMBINERS:
        make_combiner(method)  # raises the uniform message
    parse_threshold_rule(threshold)
    check_seed(seed, owner="run_search")
    check_scalar(n_boot, "n_boot", "int", low=0, high=MAX_N_BOOT, owner="run_search",
                 fix="0 skips the CIs; 1,000 to 10,000 resamples are plenty for a 95% CI.")
    if ensemble_id is not None:
        check_name(ensemble_id, "ensemble id")
    aligned = align_runs([resolve_member(m, runs_root) for m in members])
    reported = list(dict.fromkeys([*(methods or []), method]))
    if "mean" not in reported:
        reported.insert(0, "mean")
    methods = reported
    n_models, n_val = len(aligned.members), int(aligned.splits["val"].y.size)
    # every method's parameters, and what the GA's memory guards need, before any folder
    combiners = {m: make_combiner(m, **method_params(m, seed, threshold, params))
                 .check_params(n_models, n_val) for m in methods}

    # the ensemble refers to its members inside its own workspace: refused before writing if
    # out_dir is elsewhere; by default it goes beside its members
    root, workspace = ensemble_workspace(out_dir, aligned.paths)
    folder = make_unique_folder(
        root, ensemble_id or (lambda: new_ensemble_id(aligned, method, seed, threshold)), "ensemble")
    created = time.time()
    base = base_config(aligned, combiners[method], eid=folder.name, method=method,
                       threshold_rule=threshold, seed=seed, created=created,
                       workspace=workspace, launched_by=actor.launched_by)
    base.update(methods=methods, n_boot=n_boot)
    heartbeat = Heartbeat(folder)
    histories: list[GAHistory] = []
    try:
        # status first: readers list a folder once it has config.json, and then it has a status
        heartbeat.update(state="running", kind="ensemble", created=created, started=created,
                         **process_fields(os.getpid()), error=None,
                         fitting=None, step=0, steps=len(methods), message="starting")
        atomic_write_json(folder / "config.json", base)
        heartbeat.start()
        if on_start is not None:
            on_start(folder)
        run_params = {k: dict(v) for k, v in (params or {}).items()}
        for name, comb in combiners.items():
            if isinstance(comb, GeneticSearch):
                histories.append(GAHistory(folder, heartbeat, restarts=comb.restarts,
                                           generations=comb.generations, inner=comb.callback,
                                           stage=name))
                run_params.setdefault(name, {})["callback"] = histories[-1]
        steps = iter(range(1, len(methods) + 1))

        def fitting(name: str) -> None:
            heartbeat.note(fitting=name, step=next(steps), message=f"fitting {name}")

        rows, fitted = score_methods(aligned, methods, threshold=threshold, seed=seed,
                                     n_boot=n_boot, params=run_params, on_fit=fitting)
        for history in histories:
            history.flush()
        heartbeat.note(fitting=None, message="scoring and writing predictions and metrics")
        combiner = fitted[method]
        predictions, metrics = ensemble_outputs(aligned, combiner, method=method, seed=seed,
                                                   comparison=rows, n_boot=n_boot)
        atomic_write_csv(folder / "predictions.csv", predictions)
        atomic_write_json(folder / "metrics.json", metrics)
        atomic_write_json(folder / "config.json", fitted_config(aligned, combiner, base))
        heartbeat.finish()
    except BaseException as exc:
        for history in histories:
            try:
                history.flush()
            except OSError:
                pass
        _keep_config(folder, base)
        heartbeat.finish(exc)  # failed with the error (cancelled on Ctrl-C); stops the thread
        raise
    write_summary(folder, "ensemble")  # what the listing shows of it
    return folder, rows
