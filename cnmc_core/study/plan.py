"""What a study is, checked before anything is written: presets x K folds x S seeds.

A study trains every preset on the same K folds (fold ``i`` test, fold ``i + 1`` val, the rest
train), once per seed (each seed draws other folds and another initialisation), so that every
subject is scored out of fold once per seed and two presets pair up fold by fold. Its protocol is
``subject-kfold`` (subject-grouped, stratified by class at the subject level, as
:func:`cnmc_core.data.splits.grouped_kfold`), or ``image-kfold`` for the paper-like variant,
which is leaky and says so wherever a score of it is shown.

:func:`plan_study` checks every argument and every run config (with
:func:`cnmc_core.training.launch.check_config`: model, weights, dataset, folds) and returns the
plan: nothing is created until every run of the study can start.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path

from cnmc_core.contracts import KFOLD_PROTOCOLS, protocol_label
from cnmc_core.exceptions import ConfigError, DataError
from cnmc_core.validation import check_choice, check_scalar

__all__ = ["BACKENDS", "MAX_FOLDS", "MAX_SEEDS", "StudyPlan", "check_ray_address", "plan_study",
           "subjects_per_class"]

#: Where a study's runs train: the local queue of detached workers, or a Ray cluster.
BACKENDS = ("local", "ray")
MAX_FOLDS = 20
MAX_SEEDS = 20


@dataclass
class StudyPlan:
    """A checked study: its settings and one run config per (preset, fold, seed)."""

    presets: list[str]
    folds: int
    seeds: list[int]
    protocol: str
    data: str
    backend: str
    address: str | None
    epochs: int | None
    image_size: int
    dataset_fingerprint: str
    n_subjects: dict[str, int]
    resources: dict = field(default_factory=dict)
    configs: list[dict] = field(default_factory=list)

    def settings(self) -> dict:
        """The part of ``study.json`` known before any run exists."""
        return {"presets": list(self.presets), "folds": self.folds, "seeds": list(self.seeds),
                "protocol": self.protocol, "protocol_label": protocol_label(self.protocol),
                "leaky": "leaky" in protocol_label(self.protocol), "data": self.data,
                "dataset_fingerprint": self.dataset_fingerprint, "n_subjects": self.n_subjects,
                "backend": self.backend, "address": self.address, "epochs": self.epochs,
                "image_size": self.image_size, "resources": dict(self.resources)}


def subjects_per_class(manifest) -> dict[str, int]:
    """The labelled subjects of each class (``{"all": n, "hem": n}``) of a manifest."""
    labelled = manifest[manifest["y"].isin([0, 1]) & (manifest["subject"].fillna("") != "")]
    return {"all": int(labelled.loc[labelled["y"] == 1, "subject"].nunique()),
            "hem": int(labelled.loc[labelled["y"] == 0, "subject"].nunique())}


def check_ray_address(address: str | None) -> str:
    """The Ray cluster address a study will use, checked to answer before anything is created:
    ``auto`` (the cluster this machine runs: ``$RAY_ADDRESS``, or the one ``ray start`` left a
    record of), ``host:port`` (its GCS port) or ``ray://host:port`` (its client server).

    Raises:
        ConfigError: a malformed address, nothing listening there, or no cluster for ``auto``.
    """
    import socket
    import tempfile

    address = address or "auto"
    target = address
    if address == "auto":
        target = os.environ.get("RAY_ADDRESS", "")
        record = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"
        if not target and record.is_file():
            target = record.read_text().strip()
        if not target:
            raise ConfigError("--address auto: no Ray cluster runs on this machine ($RAY_ADDRESS is "
                              "unset and `ray start` left no record). Start one with `ray start "
                              "--head` or give --address host:port.")
    hostport = target.removeprefix("ray://")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--address {address!r} is not auto, host:port or ray://host:port.")
    try:
        with socket.create_connection((host, int(port)), timeout=5):
            pass
    except OSError as exc:
        raise ConfigError(f"--address {address!r}: nothing answers at {host}:{port} ({exc.strerror or exc}). "
                          "Start the cluster (`ray start --head --port PORT`) or give the right "
                          "address.") from None
    return address


def plan_study(presets: list[str], *, data: str | os.PathLike, folds: int = 5, seeds: int = 1,
               protocol: str = "subject-kfold", backend: str = "local",
               address: str | None = None, epochs: int | None = None,
               image_size: int | None = None, num_cpus: float | None = None,
               num_gpus: float | None = None,
               artifacts: str | os.PathLike | None = None) -> StudyPlan:
    """Check a study and make its run configs (no file is written).

    Args:
        presets: one or more preset names (each trained on every fold and seed).
        data: the dataset folder or manifest CSV.
        folds: K, at least 3 (test, val and train) and at most the subjects of the smaller class.
        seeds: S, the number of seeds (0, 1, ..., S - 1): each draws other folds.
        protocol: ``subject-kfold`` or the leaky ``image-kfold``.
        backend: ``local`` (the queue of detached workers) or ``ray`` (tasks on a cluster).
        address: the Ray cluster (``auto``, ``ray://host:port`` or ``host:port``); Ray only.
        epochs: the maximum epochs of every stage (default: the presets').
        image_size: the input side of every preset (default: the presets', which must agree).
        num_cpus, num_gpus: what each run asks of the Ray cluster (default 1 CPU, 0 GPU); Ray
            only.
        artifacts: the workspace (default ``$CNMC_ARTIFACTS`` or ``./artifacts``): with Ray,
            every node of the cluster must see it (checked with a probe file).

    Raises:
        ConfigError: an unknown preset, K < 3 or too many, a bad S, an unknown protocol or
            backend, an address without Ray, presets of different image sizes.
        DataError: the dataset cannot be read, or has fewer subjects of a class than folds.
    """
    from cnmc_core.data.manifest import manifest_fingerprint, resolve_manifest
    from cnmc_core.training.config import list_presets, resolve_config
    from cnmc_core.training.launch import check_config

    if isinstance(presets, str) or not presets:
        raise ConfigError("A study needs one or more presets (--presets P1 P2 ...); see "
                          "`python -m cnmc_core presets`.")
    known = list_presets()
    for name in presets:
        check_choice(name, "--presets", known, fix="List them with `python -m cnmc_core presets`.")
    if len(set(presets)) != len(presets):
        raise ConfigError(f"--presets lists a preset twice: {list(presets)}; give each once.")
    folds = check_scalar(folds, "--folds", "int", low=3, high=MAX_FOLDS,
                         fix="A study needs at least 3 folds (test, val and train), e.g. 5.")
    seeds = check_scalar(seeds, "--seeds", "int", low=1, high=MAX_SEEDS,
                         fix="Give the number of seeds, e.g. 3 (seeds 0, 1 and 2).")
    check_choice(protocol, "--protocol", KFOLD_PROTOCOLS)
    check_choice(backend, "--backend", BACKENDS)
    if address is not None and backend != "ray":
        raise ConfigError("--address names a Ray cluster: use it with --backend ray.")
    resources = {}
    for name, value in (("num_cpus", num_cpus), ("num_gpus", num_gpus)):
        if value is not None:
            if backend != "ray":
                raise ConfigError(f"--{name.replace('_', '-')} is what a run asks of a Ray "
                                  "cluster: use it with --backend ray.")
            resources[name] = check_scalar(value, f"--{name.replace('_', '-')}", "float", low=0)
    if backend == "ray":
        address = check_ray_address(address)
        resources.setdefault("num_cpus", 1.0)
        resources.setdefault("num_gpus", 0.0)
    if not data:
        raise ConfigError("A study needs a dataset: give --data ROOT (a C-NMC folder or a manifest "
                          "CSV).")
    data = str(Path(data).expanduser().resolve())
    base = {name: resolve_config(name, data=data, epochs=epochs, image_size=image_size)
            for name in presets}
    sizes = {name: config["image_size"] for name, config in base.items()}
    if len(set(sizes.values())) > 1:
        raise ConfigError(f"The presets of a study must share one input size; they have {sizes}. "
                          "Give --image-size PX to train them all at one size, or choose presets "
                          "of the same size.")
    manifest = resolve_manifest(data, verify=False)
    per_class = subjects_per_class(manifest)
    fewest = min(per_class, key=per_class.get)
    if protocol == "subject-kfold" and per_class[fewest] < folds:
        raise DataError(f"--folds {folds} needs at least {folds} subjects of each class; the dataset "
                        f"has {per_class[fewest]} {fewest.upper()} subjects. Use --folds "
                        f"{max(3, per_class[fewest])} or fewer.")
    plan = StudyPlan(presets=list(presets), folds=folds, seeds=list(range(seeds)), protocol=protocol,
                     data=data, backend=backend, address=address, epochs=epochs,
                     image_size=next(iter(sizes.values())),
                     dataset_fingerprint=manifest_fingerprint(manifest), n_subjects=per_class,
                     resources=resources)
    for name in presets:
        for seed in plan.seeds:
            for fold in range(folds):
                config = copy.deepcopy(base[name])
                config.update(split_protocol=protocol, seed=seed, kfold={"k": folds, "fold": fold})
                check_config(config)
                plan.configs.append(config)
    if backend == "ray":
        from cnmc_core.study.backends import REPO, check_workers_see, ray_connect
        from cnmc_core.workspace.paths import artifacts_root

        root = artifacts_root(artifacts).resolve()
        ray = ray_connect(address, root, REPO)
        try:
            check_workers_see(root)
        finally:
            ray.shutdown()
    return plan
