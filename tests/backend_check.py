"""Run in a subprocess by tests/test_backends.py, under the Keras backend of its environment
(``KERAS_BACKEND``): the library's whole path on that backend, and the numbers the test compares
with the other backends'.

    python tests/backend_check.py OUT DATA ARTIFACTS FOREIGN_RUN

1. trains a run of two stages (``demo_scratch``, 1 epoch each, the second with RMSprop) in the
   foreground, through ``start_run`` and ``train_run`` as ``python -m cnmc_core train`` does;
2. evaluates it on the dataset (``evaluate_run``);
3. explains two images with Grad-CAM, Grad-CAM++ and activations (``explain_images``,
   ``activation_view``);
4. fits a mean ensemble of this run and ``FOREIGN_RUN`` (a run trained under another backend)
   and scores it, with both its runs, on the images (``score_selection``);
5. writes ``OUT/result.json`` and, for the models of both runs, P(ALL) and Grad-CAM maps of
   fixed images (``OUT/<run>.npz``) for the cross-backend comparison.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np


def fixed_images(size: int) -> np.ndarray:
    """Images every backend scores the same way: smooth colour blobs on black, 0-255."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = []
    for k in range(4):
        blob = np.exp(-((yy - 0.3 - 0.1 * k) ** 2 + (xx - 0.5) ** 2) / 0.05)
        out.append(np.stack([blob * 200, blob * (60 + 30 * k), blob * 150], axis=-1))
    return np.asarray(out, dtype=np.float32)


def main() -> None:
    out, data, artifacts, foreign = (Path(a) for a in sys.argv[1:5])
    from cnmc_core.training.config import resolve_config
    from cnmc_core.training.launch import start_run
    from cnmc_core.training.loop import train_run

    config = resolve_config("demo_scratch", data=str(data), epochs=1, sets=["batch_size=8"])
    config["stages"].append({"name": "fine_tune", "trainable": "all", "optimizer": "rmsprop",
                             "learning_rate": 1e-4, "epochs": 1})
    run = start_run(config, artifacts, detach=False)
    metrics = train_run(run, log=None, artifacts=artifacts, wait_in_queue=False)

    import keras

    from cnmc_core.data.images import read_image
    from cnmc_core.data.manifest import resolve_manifest
    from cnmc_core.ensemble.search import run_search
    from cnmc_core.explain.cam import gradcam
    from cnmc_core.explain.members import (
        activation_view,
        explain_images,
        run_feature_layers,
    )
    from cnmc_core.models.io import load_model, predict_images
    from cnmc_core.predict import score_selection
    from cnmc_core.training.evaluate import evaluate_run
    from cnmc_core.workspace.fileio import read_json

    _, evaluation = evaluate_run(run, data, split="all", artifacts=artifacts, log=None)
    paths = resolve_manifest(str(data))["path"].head(2).tolist()
    images = [read_image(p) for p in paths]
    explained = {}
    for method in ("gradcam", "gradcam++"):
        (ex,) = explain_images([run], images[:1], method=method)
        maps = np.asarray(ex.members[0].heatmap)
        explained[method] = {"shape": list(maps.shape), "finite": bool(np.isfinite(maps).all()),
                             "max": float(maps.max())}
    layer = run_feature_layers(run)[0]
    grid, activation_shape = activation_view(run, images[0], layer)
    ensemble, _ = run_search([run, foreign], method="mean", methods=("mean",), n_boot=20,
                             runs_root=artifacts, out_dir=artifacts / "ensembles")
    run_probs, final = score_selection([ensemble], images)

    for folder in (run, foreign):
        model = load_model(folder / "model.keras")
        x = fixed_images(int(model.inputs[0].shape[1]))
        cam = gradcam(model, x, target="all")
        cam_pp = gradcam(model, x, target="hem", method="gradcam++")
        np.savez(out / f"{folder.name}.npz", probs=predict_images(model, x), heatmaps=cam.heatmaps,
                 weights=cam.channel_weights, logits=cam.logits, heatmaps_pp=cam_pp.heatmaps)

    resolved = read_json(run / "config.json")
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    (out / "result.json").write_text(json.dumps({
        "keras_backend": keras.backend.backend(), "run": run.name, "foreign": foreign.name,
        "tensorflow_imported": "tensorflow" in sys.modules,
        "config_backend": resolved.get("backend"), "versions": resolved.get("versions"),
        "status": read_json(run / "status.json")["state"],
        "stages": sorted({h["stage"] for h in history}), "epochs": len(history),
        "files": sorted(p.name for p in run.iterdir()),
        "val_f1": metrics["val"]["weighted_f1"], "evaluation_n": evaluation["test"]["n"],
        "explained": explained, "activation_shape": list(activation_shape), "grid_dtype": str(grid.dtype),
        "scored": {k: [float(v) for v in p] for k, p in run_probs.items()},
        "ensemble_final": [float(v) for v in final],
        "log": (run / "log.txt").read_text(),
    }, indent=1))


if __name__ == "__main__":
    main()
