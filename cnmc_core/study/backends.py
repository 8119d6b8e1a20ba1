"""Where a study's runs train: the local queue, or a Ray cluster.

Both run the same worker code (:func:`cnmc_core.training.loop.train_run` on a run folder), which
writes the run's status and heartbeat as always, so the dashboard watches a run the same way
wherever it trains.

- ``local``: the runs' detached workers were started with the study and train one at a time in
  the local queue (``CNMC_MAX_PARALLEL_RUNS``); the coordinator only watches them.
- ``ray``: the coordinator connects to the cluster at ``address`` (``auto``: the one this machine
  belongs to; ``ray://host:port`` or ``host:port``), checks that every node sees the artifacts
  folder (it must be on a path all nodes share: a worker that cannot see it is refused before
  any run is submitted), and submits each run as a Ray task with the CPUs and GPUs the study asks
  for. Cancel sets each run's cancel flag (the run stops at its next batch) and cancels the
  tasks not started; a task whose worker or node dies is recorded as ``failed`` at once (and
  liveness would show it so within :data:`~cnmc_core.workspace.status.STALE_SECONDS`), while the
  other runs go on.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from cnmc_core.exceptions import ConfigError, RunError
from cnmc_core.study.pooling import StudyRun
from cnmc_core.workspace.status import effective_status, write_status

__all__ = ["REPO", "LocalBackend", "RayBackend", "make_backend", "train_on_worker", "probe_workspace",
           "ray_connect", "check_workers_see"]

#: The project's folder, put on the Ray workers' path.
REPO = Path(__file__).resolve().parents[2]


class LocalBackend:
    """The local queue: the runs' workers already run (or wait for a slot)."""

    name = "local"

    def start(self, runs: list[StudyRun], study_dir: Path) -> None:  # noqa: D102 - see class
        return None

    def poll(self, runs: list[StudyRun]) -> None:  # noqa: D102 - liveness does the work
        return None

    def cancel(self, runs: list[StudyRun]) -> None:  # noqa: D102 - the runs' flags suffice
        return None

    def close(self) -> None:  # noqa: D102
        return None


def train_on_worker(run_dir: str, artifacts: str) -> str:
    """Train one run folder where Ray placed this task (the same code as a local worker)."""
    from cnmc_core.training.loop import train_run
    from cnmc_core.workspace.queue import CancelledError

    try:
        train_run(Path(run_dir), log=None, artifacts=artifacts, wait_in_queue=False)
    except CancelledError:
        return "cancelled"
    return "completed"


def probe_workspace(probe_file: str) -> dict:
    """What a Ray worker sees of the workspace: whether it can read the probe file the driver
    wrote into the artifacts folder and write beside it, and on which host."""
    probe = Path(probe_file)
    seen = probe.is_file() and probe.read_text() == probe.name
    writable = False
    if seen:
        mine = probe.with_name(f"{probe.name}-{socket.gethostname()}-{os.getpid()}")
        try:
            mine.write_text("ok")
            mine.unlink()
            writable = True
        except OSError:
            writable = False
    return {"host": socket.gethostname(), "sees": seen, "writable": writable}


def ray_connect(address: str, artifacts: Path, repo: Path):
    """Connect this process to the Ray cluster, with the environment its workers need (the
    project on their path, the workspace, quiet TensorFlow); returns the ``ray`` module.

    Raises:
        ConfigError: the cluster cannot be reached.
    """
    import ray

    env = {"PYTHONPATH": str(repo), "CNMC_ARTIFACTS": str(artifacts), "TF_CPP_MIN_LOG_LEVEL": "3"}
    try:
        ray.init(address=address, ignore_reinit_error=True, log_to_driver=False,
                 runtime_env={"env_vars": env})
    except Exception as exc:  # noqa: BLE001 - every connection failure is the same to a user
        raise ConfigError(f"Cannot reach the Ray cluster at {address!r} ({type(exc).__name__}: "
                          f"{exc}). Start one (`ray start --head`) and give its address with "
                          "--address (e.g. 127.0.0.1:6379 or ray://host:10001), or use --backend "
                          "local.") from None
    return ray


def check_workers_see(artifacts: Path) -> None:
    """Check that a worker on every node of the connected cluster sees the artifacts folder
    (reads a probe file written here, writes beside it); the probe is removed afterwards.

    Raises:
        ConfigError: the nodes that cannot, and what to do.
    """
    import secrets

    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    artifacts = Path(artifacts).resolve()
    artifacts.mkdir(parents=True, exist_ok=True)
    probe = artifacts / f".ray-probe-{secrets.token_hex(4)}"
    probe.write_text(probe.name)
    try:
        task = ray.remote(num_cpus=0)(probe_workspace)
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        answers = ray.get([task.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
            n["NodeID"], soft=False)).remote(str(probe)) for n in nodes], timeout=180)
    finally:
        probe.unlink(missing_ok=True)
    blind = [a for a in answers if not (a["sees"] and a["writable"])]
    if blind:
        hosts = ", ".join(sorted({a["host"] for a in blind}))
        raise ConfigError(f"Ray worker(s) on {hosts} cannot see (or write) the artifacts folder "
                          f"{artifacts}: put it on a path every node of the cluster shares (a "
                          "network file system mounted at the same path), or use --backend local.")


class RayBackend:
    """Runs as Ray tasks on the cluster at ``address``."""

    name = "ray"

    def __init__(self, address: str | None, resources: dict, repo: Path):
        self.address = address or "auto"
        self.resources = {"num_cpus": float(resources.get("num_cpus", 1.0)),
                          "num_gpus": float(resources.get("num_gpus", 0.0))}
        self.repo = repo
        self.refs: dict = {}  # ObjectRef -> StudyRun

    def start(self, runs: list[StudyRun], study_dir: Path) -> None:
        """Connect, check every node sees the workspace, and submit the queued runs."""
        artifacts = study_dir.parent.parent.resolve()
        ray = ray_connect(self.address, artifacts, self.repo)
        check_workers_see(artifacts)
        task = ray.remote(train_on_worker)
        for run in runs:
            if effective_status(run.path).get("state") != "queued":
                continue
            ref = task.options(max_retries=0, **self.resources).remote(
                str(run.path.resolve()), str(artifacts))
            self.refs[ref] = run

    def poll(self, runs: list[StudyRun]) -> None:
        """Record the runs whose task ended without the run recording it (a dead worker or
        node: the run's own status would otherwise read running until its heartbeat is old)."""
        import ray

        if not self.refs:
            return
        ready, _ = ray.wait(list(self.refs), num_returns=len(self.refs), timeout=0)
        for ref in ready:
            run = self.refs.pop(ref)
            try:
                ray.get(ref)
            except Exception as exc:  # noqa: BLE001 - the task's own error or a dead worker
                status = effective_status(run.path)
                if status.get("state") in ("queued", "running"):
                    write_status(run.path, state="failed", message="failed",
                                 error=f"the Ray task ended without finishing the run "
                                       f"({type(exc).__name__}): its worker or node died")

    def cancel(self, runs: list[StudyRun]) -> None:
        """Cancel the tasks not started yet (started ones stop at their cancel flag)."""
        import ray

        for ref, run in list(self.refs.items()):
            # a started run stops at its cancel flag and records itself cancelled; cancelling
            # its task would interrupt it with a KeyboardInterrupt that reads as a failure
            if effective_status(run.path).get("state") == "running":
                continue
            try:
                ray.cancel(ref, force=False)
            except Exception:  # noqa: BLE001 - already finished
                pass

    def close(self) -> None:  # noqa: D102
        import ray

        ray.shutdown()


def make_backend(study: dict) -> LocalBackend | RayBackend:
    """The backend a study's ``study.json`` names.

    Raises:
        RunError: an unknown backend.
    """
    name = study.get("backend", "local")
    if name == "local":
        return LocalBackend()
    if name == "ray":
        return RayBackend(study.get("address"), study.get("resources") or {}, REPO)
    raise RunError(f"study.json names the backend {name!r}; known: local, ray.")
