"""Scoring new images with finished runs and ensembles: uploads checked and decoded safely,
cropped like the training images, scored, explained.

Safety of uploads (the Predict and Explain pages take files from a browser):

- only the bytes are used: no file name is ever opened, nothing is unpickled or ``eval``-ed;
- a file must be non-empty, at most :data:`MAX_UPLOAD_BYTES`, start with the signature of a BMP,
  PNG, JPEG or TIFF, and declare at most :data:`~cnmc_core.dataset.MAX_PIXELS` pixels in its
  header (read before decoding, so a small file cannot expand into gigabytes);
- decoding is OpenCV's ``cv2.imdecode`` on the bytes;
- models are loaded only from run folders, through
  :func:`cnmc_core.explain.load_model_cached` (``safe_mode=True``).

Every refusal is a :class:`~cnmc_core.exceptions.DataError` whose message names the file and
says what to do.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from .dataset import MAX_PIXELS, to_rgb
from .exceptions import CnmcError, ConfigError, DataError, RunError
from .fileio import read_json

__all__ = [
    "MAX_UPLOAD_BYTES",
    "UPLOAD_EXTENSIONS",
    "UploadedImage",
    "image_size_from_header",
    "decode_upload",
    "check_uploads",
    "prepare_for_run",
    "score_runs",
    "score_member",
    "member_threshold",
    "run_heatmaps",
    "results_frame",
    "results_csv",
    "explain_selection",
    "format_prob",
]

#: Largest upload accepted, in bytes (a C-NMC BMP is about 600 KB).
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
#: File name endings the uploader offers (the content is checked, not the name).
UPLOAD_EXTENSIONS = ("bmp", "png", "jpg", "jpeg", "tif", "tiff")

_SIGNATURES = (
    (b"BM", "BMP"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)


@dataclass
class UploadedImage:
    """One accepted upload: its name, content hash, and RGB pixels (uint8, as decoded)."""

    name: str
    sha1: str
    image: np.ndarray
    n_bytes: int
    meta: dict = field(default_factory=dict)


def _format(data: bytes) -> str | None:
    for sig, fmt in _SIGNATURES:
        if data.startswith(sig):
            return fmt
    return None


def _jpeg_size(data: bytes) -> tuple[int, int]:
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            i += 1
            continue
        marker = data[i + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7 or marker == 0xFF:
            i += 1 if marker == 0xFF else 2
            continue
        if i + 4 > n:
            break
        length = int.from_bytes(data[i + 2:i + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC) and i + 9 <= n:
            height = int.from_bytes(data[i + 5:i + 7], "big")
            width = int.from_bytes(data[i + 7:i + 9], "big")
            return width, height
        if length < 2:
            break
        i += 2 + length
    return 0, 0


def _tiff_size(data: bytes) -> tuple[int, int]:
    end = "<" if data[:2] == b"II" else ">"
    try:
        (offset,) = struct.unpack_from(end + "I", data, 4)
        (count,) = struct.unpack_from(end + "H", data, offset)
        width = height = 0
        for k in range(count):
            tag, typ, _, value = struct.unpack_from(end + "HHI4s", data, offset + 2 + 12 * k)
            if tag in (256, 257):
                number = struct.unpack_from(end + ("H" if typ == 3 else "I"), value)[0]
                if tag == 256:
                    width = number
                else:
                    height = number
        return width, height
    except struct.error:
        return 0, 0


def image_size_from_header(data: bytes) -> tuple[str | None, int, int]:
    """``(format, width, height)`` read from the first bytes, without decoding.

    ``format`` is ``BMP``, ``PNG``, ``JPEG``, ``TIFF`` or None (not an image we accept); the
    size is ``(0, 0)`` when the header does not give it.
    """
    fmt = _format(data)
    if fmt == "BMP" and len(data) >= 26:
        return fmt, abs(int.from_bytes(data[18:22], "little", signed=True)), \
            abs(int.from_bytes(data[22:26], "little", signed=True))
    if fmt == "PNG" and len(data) >= 24:
        return fmt, int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if fmt == "JPEG":
        return (fmt, *_jpeg_size(data))
    if fmt == "TIFF":
        return (fmt, *_tiff_size(data))
    return fmt, 0, 0


def decode_upload(name: str, data: bytes, max_bytes: int = MAX_UPLOAD_BYTES) -> UploadedImage:
    """Check and decode one uploaded file (bytes only) into an RGB uint8 image.

    Raises:
        DataError: empty, larger than ``max_bytes``, not a BMP/PNG/JPEG/TIFF, more pixels than
            the limit, undecodable (corrupt or truncated), or all black (no cell to crop).
    """
    import cv2

    label = str(name) or "the file"
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DataError(f"{label}: expected the file's bytes.")
    data = bytes(data)
    if len(data) == 0:
        raise DataError(f"{label} is empty (0 bytes): upload the image file itself.")
    if len(data) > max_bytes:
        raise DataError(f"{label} is {len(data) / 2**20:.1f} MB, more than the limit of "
                        f"{max_bytes / 2**20:.0f} MB: upload a single cell image (C-NMC images "
                        "are 450x450, under 1 MB).")
    fmt, width, height = image_size_from_header(data)
    if fmt is None:
        raise DataError(f"{label} is not a BMP, PNG, JPEG or TIFF image (its content does not "
                        "start like one): upload an image file.")
    if width <= 0 or height <= 0:
        raise DataError(f"{label}: the {fmt} header gives no image size (a damaged or unusual "
                        "file); save it again as PNG or BMP and upload that.")
    if width * height > MAX_PIXELS:
        raise DataError(f"{label} is {width}x{height} pixels, more than the limit of "
                        f"{MAX_PIXELS:,}: upload one cell image (C-NMC images are 450x450).")
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        raise DataError(f"{label} cannot be decoded as a {fmt} image (corrupt or truncated): "
                        "upload a good copy.")
    rgb = to_rgb(image)
    if not (rgb > 0).any():
        raise DataError(f"{label} is all black: there is no cell to crop. Upload an image of a "
                        "cell on a black background, as in C-NMC.")
    return UploadedImage(name=label, sha1=hashlib.sha1(data).hexdigest(), image=rgb,
                         n_bytes=len(data), meta={"format": fmt, "width": int(rgb.shape[1]),
                                                  "height": int(rgb.shape[0])})


def check_uploads(files: Sequence[tuple[str, bytes]], max_bytes: int = MAX_UPLOAD_BYTES,
                  max_files: int = 200) -> tuple[list[UploadedImage], list[str], list[str]]:
    """Decode many uploads; a bad file never stops the rest.

    Returns:
        ``(accepted, refusals, notes)``: the decoded images, one message per refused file (what
        is wrong and what to do), and notes (files beyond ``max_files`` left out, files with the
        same content as an earlier one kept once).
    """
    accepted, refused, notes, seen = [], [], [], {}
    files = list(files)
    if len(files) > max_files:
        notes.append(f"{len(files)} files uploaded; only the first {max_files} are scored. "
                     "Score the rest in another batch.")
        files = files[:max_files]
    for name, data in files:
        try:
            up = decode_upload(name, data, max_bytes)
        except DataError as exc:
            refused.append(str(exc))
            continue
        if up.sha1 in seen:
            notes.append(f"{name} has the same content as {seen[up.sha1]}; it is scored once.")
            continue
        seen[up.sha1] = name
        accepted.append(up)
    return accepted, refused, notes


def _run_config(run_path: Path) -> dict:
    try:
        config = read_json(run_path / "config.json")
    except (OSError, CnmcError) as exc:
        raise RunError(f"{run_path} has no readable config.json ({exc}).") from None
    if not isinstance(config, dict) or "image_size" not in config:
        raise RunError(f"{run_path / 'config.json'} gives no image_size; is it a run folder?")
    return config


def prepare_for_run(image: np.ndarray, run_path: str | os.PathLike) -> np.ndarray:
    """Crop, (CLAHE if the run used it) and resize an RGB image as the run's training images:
    ``(size, size, 3)`` uint8."""
    from .preprocess import preprocess_image

    config = _run_config(Path(run_path))
    return preprocess_image(image, int(config["image_size"]), bool(config.get("clahe", False)))


def _predict(model, batch: np.ndarray, batch_size: int = 32) -> np.ndarray:
    out = []
    for i in range(0, len(batch), batch_size):
        x = batch[i:i + batch_size].astype("float32")
        out.append(np.asarray(model(x, training=False), dtype=np.float64).reshape(-1))
    return np.concatenate(out) if out else np.zeros(0)


def score_runs(run_paths: Sequence[str | os.PathLike], images: Sequence[np.ndarray],
               progress: Callable[[int, int], None] | None = None) -> dict[str, np.ndarray]:
    """P(ALL) of each run for each image: ``{run folder name: (n,) array}``.

    Each image is prepared for each run (:func:`prepare_for_run`); each model is loaded once
    (cached) with safe loading.

    Raises:
        RunError: a run without a loadable ``model.keras``.
    """
    from .explain import load_model_cached

    out: dict[str, np.ndarray] = {}
    total = len(run_paths)
    for k, rp in enumerate(run_paths):
        rp = Path(rp)
        model = load_model_cached(rp / "model.keras")
        batch = np.stack([prepare_for_run(im, rp) for im in images]) if len(images) else \
            np.zeros((0, 1, 1, 3), np.uint8)
        out[rp.name] = _predict(model, batch) if len(images) else np.zeros(0)
        if progress is not None:
            progress(k + 1, total)
    return out


def _stack_predict(config: dict, probs: np.ndarray) -> np.ndarray:
    st = config.get("stacking") or {}
    coef = np.asarray(st.get("coef", []), dtype=np.float64)
    if coef.size != probs.shape[1]:
        raise RunError("The stacking ensemble's config.json has no coefficient per member.")
    p = np.clip(probs, 1e-6, 1 - 1e-6)
    z = (np.log(p) - np.log1p(-p)) @ coef + float(st.get("intercept", 0.0))
    return 1.0 / (1.0 + np.exp(-z))


def member_threshold(member_path: str | os.PathLike) -> float:
    """The decision threshold of a run or ensemble (its config's ``threshold``, else 0.5)."""
    try:
        t = read_json(Path(member_path) / "config.json").get("threshold", 0.5)
    except (OSError, CnmcError, AttributeError):
        return 0.5
    return float(t) if isinstance(t, (int, float)) and not isinstance(t, bool) else 0.5


def score_member(member_path: str | os.PathLike, images: Sequence[np.ndarray],
                 run_probs: dict[str, np.ndarray] | None = None, _depth: int = 0) -> np.ndarray:
    """P(ALL) of a run or a saved ensemble for each image, the way the ensemble combines its
    members (weighted soft vote, or the stacking model's logistic regression).

    ``run_probs`` caches the runs' probabilities (``{run folder name: array}``) between calls.

    Raises:
        RunError: an ensemble (at any depth) that is not completed (a search still running,
            failed, cancelled or killed: the message gives its state and what to do) or has no
            fitted weights; a run without a loadable model.
    """
    from .catalog import _member_paths, ensemble_weights
    from .runs import check_completed

    path = Path(member_path)
    if _depth > 8:
        raise RunError(f"{path}: ensembles nested too deeply (a cycle?).")
    run_probs = run_probs if run_probs is not None else {}
    config = read_json(path / "config.json")
    if config.get("kind") != "ensemble":
        if path.name not in run_probs:
            run_probs.update(score_runs([path], images))
        return run_probs[path.name]
    check_completed(path, "scored")
    stacking = bool(config.get("stacking") or config.get("method") == "stacking")
    w = None if stacking else np.array(ensemble_weights(path, config))
    subs = _member_paths(path, config)
    probs = np.column_stack([score_member(s, images, run_probs, _depth + 1) for s in subs])
    if stacking:
        return _stack_predict(config, probs)
    if w.size != probs.shape[1]:
        raise RunError(f"Ensemble {path.name}: config.json has no usable weights per member.")
    return np.clip(probs @ w, 0.0, 1.0)


def run_heatmaps(run_path: str | os.PathLike, images: Sequence[np.ndarray], *,
                 method: str = "gradcam", target: str = "predicted") -> tuple[np.ndarray, object]:
    """Grad-CAM maps of a run for RGB images: ``(prepared images (n, s, s, 3), CamResult)``;
    the maps are at the prepared images' size (the crop the model saw)."""
    from .explain import gradcam, load_model_cached

    rp = Path(run_path)
    model = load_model_cached(rp / "model.keras")
    batch = np.stack([prepare_for_run(im, rp) for im in images])
    return batch, gradcam(model, batch, target=target, method=method)


def format_prob(p: float, threshold: float = 0.5, digits: int = 3) -> str:
    """``p`` with ``digits`` decimals, or more (up to 6) where fewer would hide which side of
    ``threshold`` it is on (0.4996 is not shown as 0.500 when 0.5 is the threshold)."""
    p, t = float(p), float(threshold)
    for d in range(digits, 7):
        shown = round(p, d)
        if (shown >= t) == (p >= t):
            return f"{p:.{d}f}"
    return f"{p:.6f}"


def results_frame(names: Sequence[str], member_probs: dict[str, np.ndarray],
                  final: np.ndarray | None = None, threshold: float = 0.5,
                  final_name: str = "ensemble") -> pd.DataFrame:
    """One row per image: ``file``, ``P(ALL) <member>`` per member, the final P(ALL) (the
    ensemble's, or the only member's), ``predicted`` (``ALL``/``HEM`` at ``threshold``) and
    ``threshold``."""
    if not 0.0 <= float(threshold) <= 1.0:
        raise ConfigError(f"threshold must be in [0, 1]; got {threshold!r}.")
    # A name starting like a formula would run as one in a spreadsheet: quote it.
    frame = pd.DataFrame({"file": [f"'{n}" if str(n)[:1] in ("=", "+", "-", "@") else str(n)
                                   for n in names]})
    for member, p in member_probs.items():
        frame[f"P(ALL) {member}"] = np.round(np.asarray(p, dtype=float), 6)
    if final is None:
        if len(member_probs) != 1:
            raise ConfigError("Give the final probabilities when several members are scored.")
        final = next(iter(member_probs.values()))
    frame[f"P(ALL) {final_name}"] = np.round(np.asarray(final, dtype=float), 6)
    frame["predicted"] = np.where(np.asarray(final) >= float(threshold), "ALL", "HEM")
    frame["threshold"] = float(threshold)
    return frame


def results_csv(frame: pd.DataFrame) -> bytes:
    """The results as UTF-8 CSV bytes (for a download button)."""
    buf = io.StringIO()
    frame.to_csv(buf, index=False)
    return buf.getvalue().encode("utf-8")


def explain_selection(paths: Sequence[str | os.PathLike], image: np.ndarray, *,
                      method: str = "gradcam", target: str = "predicted",
                      weights: Sequence[float] | None = None):
    """Explain one raw RGB image with several runs (or ensembles) together.

    One path is :func:`cnmc_core.explain_runs.explain_path` itself. With several, each is
    explained for the same class (with ``target="predicted"``: the class their weighted vote
    predicts at 0.5, so that the maps can be combined), and their maps are combined with
    ``weights`` (default equal; an ensemble's own weights multiply in).

    Returns:
        a :class:`cnmc_core.explain_runs.Explanation` (``ensemble_heatmap`` and
        ``ensemble_prob`` set when more than one model is involved).

    Raises:
        ConfigError: no path, bad weights, method or target. RunError: a run without a model.
    """
    from dataclasses import replace

    from .explain import ensemble_heatmap
    from .explain_runs import TARGETS, Explanation, explain_path

    paths = [Path(p) for p in paths]
    if not paths:
        raise ConfigError("Choose at least one run to explain.")
    if target not in TARGETS:
        raise ConfigError(f"target must be one of {list(TARGETS)}; got {target!r}.")
    if len(paths) == 1:
        return explain_path(paths[0], image, method=method, target=target)
    w = np.ones(len(paths)) if weights is None else np.asarray(list(weights), dtype=np.float64)
    if w.shape != (len(paths),) or not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise ConfigError(f"weights must be {len(paths)} non-negative numbers, not all zero; "
                          f"got {list(np.ravel(w))}.")
    w = w / w.sum()
    probs = np.array([float(score_member(p, [image])[0]) for p in paths])
    ens_prob = float(probs @ w)
    cls = target
    if target == "predicted" or method == "activations":
        cls = "all" if ens_prob >= 0.5 else "hem"
    members = []
    for p, wi in zip(paths, w):
        part = explain_path(p, image, method=method, target=cls)
        members += [replace(m, weight=float(wi * m.weight)) for m in part.members]
    result = Explanation(source="+".join(p.name for p in paths), method=method, members=members,
                         ensemble_prob=ens_prob)
    if method != "activations":
        result.ensemble_heatmap = ensemble_heatmap(
            [m.heatmap for m in members], [max(m.weight, 0.0) for m in members])
    return result
