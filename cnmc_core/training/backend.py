"""The Keras backend a run trains on (TensorFlow, JAX or PyTorch): choosing it, importing it
quietly, recording it, and what the backend-specific options do under each.

How a backend is chosen. Keras reads ``KERAS_BACKEND`` (else the ``backend`` of
``$KERAS_HOME/keras.json``, else ``tensorflow``) once, when it is first imported, so one process
runs one backend. A run's config may name one (``backend``: ``tensorflow``, ``jax`` or
``torch``; ``null``, the default, means the environment's). When a run is created,
:func:`cnmc_core.training.launch.start_runs` resolves it (:func:`resolve_backend`) into its
``config.json`` and starts a detached worker with ``KERAS_BACKEND`` set to it; a foreground
``train`` sets ``KERAS_BACKEND`` before Keras is imported, or refuses a backend other than the
one its process already runs (:func:`select_backend`). The dashboard may have TensorFlow imported: its runs are separate
processes, each with the backend its config asks for. The resolved ``config.json`` of every
run records the backend it trained on and that backend's versions.

What the backend-specific options do (checked before a run folder exists by
:func:`check_backend_options`; the run's log says which apply, :class:`Runtime`):

- ``jit_compile``: tensorflow compiles the train step with XLA when it is true; jax always
  compiles every step with ``jax.jit`` (XLA), so the option does not apply (logged); torch
  refuses ``true`` (Keras would use ``torch.compile``, which this project does not support).
- ``mixed_precision``: Keras' ``mixed_float16`` policy under every backend (meant for GPUs).
- several GPUs: tensorflow trains on all of them with ``MirroredStrategy``; jax and torch use
  the first one (logged).
- op determinism: enforced under tensorflow (``enable_op_determinism``); on a GPU, jax and
  torch runs with one seed may differ slightly (logged).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from cnmc_core.contracts import BACKENDS, DEFAULT_BACKEND
from cnmc_core.exceptions import ConfigError
from cnmc_core.validation import check_choice

__all__ = ["STARTUP_NOISE", "BACKEND_PACKAGES", "configured_backend", "check_backend",
           "resolve_backend", "check_backend_options", "select_backend",
           "import_backend", "backend_versions", "accelerators", "Runtime", "prepare_runtime"]

#: The packages each backend needs, and how to install them (the versions this project pins).
BACKEND_PACKAGES = {
    "tensorflow": (("tensorflow",), "pip install tensorflow-cpu==2.21.0"),
    "jax": (("jax", "jaxlib"), 'pip install "jax[cpu]==0.10.2"'),
    "torch": (("torch",), "pip install torch==2.13.0"),
}

#: TensorFlow's start-up lines: written by its C++ logging before TF_CPP_MIN_LOG_LEVEL applies
#: (so at every level), they read like errors in a run's log.txt and say nothing about the run.
STARTUP_NOISE = re.compile(
    r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR$"
    r"|[IW]\d{4} [\d:. ]+\d+ (port|cpu_feature_guard)\.cc:\d+\] "
    r"|To enable the following instructions: .*rebuild TensorFlow")


def configured_backend() -> str:
    """The backend Keras runs on in this process, or will when it is imported: what Keras
    itself reads (``KERAS_BACKEND``, else ``keras.json``, else ``tensorflow``), without
    importing Keras when it is not imported yet."""
    if "keras" in sys.modules:
        import keras

        return keras.backend.backend()
    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"]
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    try:
        return str(json.loads((Path(home) / "keras.json").read_text()).get("backend", DEFAULT_BACKEND))
    except (OSError, ValueError, AttributeError):
        return DEFAULT_BACKEND


def check_backend(name: str, what: str = "backend") -> str:
    """``name`` if it is one of :data:`~cnmc_core.contracts.BACKENDS` and installed here.

    Raises:
        ConfigError: an unknown backend, or one whose package is missing (with the install line).
    """
    check_choice(name, what, BACKENDS, fix="Set KERAS_BACKEND or the run's backend to one of them.")
    packages, install = BACKEND_PACKAGES[name]
    missing = [p for p in packages if importlib.util.find_spec(p) is None]
    if missing:
        raise ConfigError(f"The Keras backend {name!r} needs the package(s) {missing}, which are not "
                          f"installed; `{install}`, or choose another backend.")
    return name


def resolve_backend(config: dict) -> str:
    """The backend a run trains on: its config's ``backend``, else the environment's
    (:func:`configured_backend`); checked with :func:`check_backend`."""
    name = config.get("backend")
    if name is None:
        return check_backend(configured_backend(), what="KERAS_BACKEND")
    return check_backend(name, what="backend")


def check_backend_options(config: dict, backend: str) -> None:
    """Refuse the options that cannot apply under ``backend`` (see the module's table).

    Raises:
        ConfigError: ``jit_compile`` asked for under torch.
    """
    if backend == "torch" and config.get("jit_compile"):
        raise ConfigError("jit_compile (XLA) applies to the tensorflow and jax backends only; under "
                          "torch Keras would use torch.compile, which this project does not support. "
                          "Set jit_compile=false, or train with backend jax or tensorflow.")


def select_backend(name: str) -> str:
    """Make ``name`` this process's backend, before Keras is imported.

    Raises:
        ConfigError: Keras is already imported here with another backend (a process has one).
    """
    check_backend(name)
    if "keras" in sys.modules:
        current = configured_backend()
        if current != name:
            raise ConfigError(f"This process already runs Keras on {current!r}, and the run asks for "
                              f"backend {name!r}; train it detached (--detach, or from the dashboard), "
                              f"or start the process with KERAS_BACKEND={name}.")
        return name
    os.environ["KERAS_BACKEND"] = name
    return name


def import_backend() -> str:
    """Import Keras and its backend; returns the backend's name.

    Under TensorFlow its start-up lines (:data:`STARTUP_NOISE`) are kept off stderr, which is
    a detached worker's log.txt, and every other line it prints is passed on: its C++ code writes
    to file descriptor 2 directly, so the descriptor points at a temporary file for the import
    and is restored after it, even when the import fails. A no-op once Keras is imported.
    """
    if "keras" in sys.modules or configured_backend() != "tensorflow":
        import keras

        return keras.backend.backend()
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import keras
            import tensorflow  # noqa: F401
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            lines = captured.read().decode("utf-8", errors="replace").splitlines()
            kept = [line for line in lines if not STARTUP_NOISE.match(line)]
            if kept:
                sys.stderr.write("\n".join(kept) + "\n")
                sys.stderr.flush()
    return keras.backend.backend()


def backend_versions(backend: str) -> dict[str, str]:
    """Versions of the packages ``backend`` runs on (it is imported already)."""
    modules = BACKEND_PACKAGES[backend][0]
    return {m: str(getattr(importlib.import_module(m), "__version__", "?")) for m in modules}


def accelerators(backend: str) -> list[str]:
    """Names of the GPUs (or TPUs) ``backend`` sees; empty on a CPU-only machine."""
    if backend == "tensorflow":
        import tensorflow as tf

        return [d.name for d in tf.config.list_physical_devices("GPU")]
    if backend == "jax":
        import jax

        return [f"{d.platform}:{d.id} {d.device_kind}" for d in jax.devices() if d.platform != "cpu"]
    import torch

    return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]


@dataclass
class Runtime:
    """What a run trains on: its backend, devices, strategy and compile flag (:func:`prepare_runtime`).

    Attributes:
        backend: the Keras backend.
        devices: the accelerators seen (empty: the CPU).
        jit_compile: what ``model.compile(jit_compile=...)`` gets.
        strategy: the ``tf.distribute`` strategy under tensorflow, else None.
        notes: a line per option that does not apply as the config says, for the run's log.
    """

    backend: str
    devices: list[str]
    jit_compile: bool
    strategy: object | None = None
    notes: list[str] = field(default_factory=list)

    def scope(self):
        """The context to build the model, optimizer and metrics in (the strategy's scope)."""
        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()

    def describe(self) -> str:
        """One log line: backend, versions, devices and replicas."""
        versions = ", ".join(f"{k} {v}" for k, v in backend_versions(self.backend).items())
        where = ", ".join(self.devices) if self.devices else f"CPU ({os.cpu_count()} cores)"
        replicas = self.strategy.num_replicas_in_sync if self.strategy is not None else 1
        kind = type(self.strategy).__name__ if self.strategy is not None else "one device"
        return f"backend {self.backend} ({versions}) on {where}: {replicas} replica(s) ({kind})"


def prepare_runtime(config: dict, seed: int) -> Runtime:
    """Set up the imported backend for a run: seeds, determinism, precision, devices, strategy.

    Raises:
        ConfigError: an option that cannot apply under this backend (:func:`check_backend_options`).
    """
    import keras

    backend = keras.backend.backend()
    check_backend_options(config, backend)
    keras.utils.set_random_seed(seed)
    if config.get("mixed_precision"):
        keras.mixed_precision.set_global_policy("mixed_float16")
    devices = accelerators(backend)
    if backend == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
        strategy = tf.distribute.MirroredStrategy() if len(devices) > 1 else tf.distribute.get_strategy()
        return Runtime(backend, devices, bool(config.get("jit_compile")), strategy)
    notes = []
    if backend == "jax" and not config.get("jit_compile"):
        notes.append("jit_compile=false does not apply under jax: every train step is compiled "
                     "with jax.jit (XLA); eager JAX would be many times slower")
    if len(devices) > 1:
        notes.append(f"{len(devices)} GPUs seen, but several-GPU training is wired for the "
                     f"tensorflow backend only (MirroredStrategy): this run uses {devices[0]}")
    if devices:
        notes.append(f"op determinism is enforced under tensorflow only: on a GPU, {backend} runs "
                     "with one seed may differ slightly")
    return Runtime(backend, devices, backend == "jax", None, notes)
