"""Drawing explanations: a heatmap over an image, and the figure the ``explain`` verb writes.
"""

from __future__ import annotations

import cv2
import numpy as np

from cnmc_core.exceptions import ConfigError, DataError
from cnmc_core.explain.members import Explanation

__all__ = ["overlay", "overlay_panel", "explanation_panels", "render_figure"]


def overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.4,
            colormap: int = cv2.COLORMAP_JET) -> np.ndarray:
    """Blend a heatmap in [0, 1] over an image.

    Args:
        image: RGB ``(h, w, 3)`` or grey ``(h, w)``; uint8, or float in 0-255 (a float image whose
            maximum is at most 1 is taken as 0-1).
        heatmap: ``(h', w')`` in [0, 1]; resized to the image if needed. NaN count as 0.
        alpha: weight of the coloured heatmap, in [0, 1].
        colormap: an OpenCV colormap.

    Returns:
        ``(h, w, 3)`` uint8 RGB.

    Raises:
        ConfigError: ``alpha`` outside [0, 1]. DataError: wrong shapes.
    """
    if not 0.0 <= float(alpha) <= 1.0:
        raise ConfigError(f"alpha must be in [0, 1]; got {alpha!r}.")
    img = np.asarray(image)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    if img.ndim != 3 or img.shape[-1] != 3:
        raise DataError(f"image must be (h, w, 3) or (h, w); got shape {np.shape(image)}.")
    img = img.astype("float32")
    if not np.issubdtype(np.asarray(image).dtype, np.integer) and img.size and img.max() <= 1.0:
        img = img * 255.0
    hm = np.nan_to_num(np.asarray(heatmap, dtype="float32"))
    if hm.ndim != 2:
        raise DataError(f"heatmap must be 2-D (h, w); got shape {hm.shape}.")
    if hm.shape != img.shape[:2]:
        hm = cv2.resize(hm, (img.shape[1], img.shape[0]), interpolation=cv2.INTER_LINEAR)
    hm8 = np.round(np.clip(hm, 0.0, 1.0) * 255).astype("uint8")
    colour = cv2.cvtColor(cv2.applyColorMap(hm8, colormap), cv2.COLOR_BGR2RGB).astype("float32")
    out = (1.0 - alpha) * img + alpha * colour
    return np.clip(np.round(out), 0, 255).astype("uint8")


def overlay_panel(explanation: Explanation, side: int = 224) -> np.ndarray:
    """The explanation's map for the whole (combined, or the only run's) over the image the
    runs saw, ``side`` x ``side`` RGB (the Predict page's panel)."""
    base = explanation.base_image
    heat = explanation.heatmap
    if heat is None:
        raise DataError("This explanation has no heatmap (activations): show its grids instead.")
    return cv2.resize(overlay(base, cv2.resize(heat, (base.shape[1], base.shape[0]))),
                      (side, side), interpolation=cv2.INTER_LINEAR)


def explanation_panels(explanation: Explanation, labels: dict[str, str] | None = None,
                       side: int = 240) -> list[tuple[np.ndarray, str]]:
    """The panels of the Explain page, ``(RGB image side x side, caption)``: the cell as the
    models saw it, each run's map over it (P(ALL), weight, a note for an all-zero map), and the
    combined map with the P(ALL) of the models together."""
    from cnmc_core.data.summary import thumbnail
    from cnmc_core.predict import format_prob

    labels = labels or {}
    panels = [(thumbnail(explanation.base_image, side), "the cell as the models see it (cropped)")]
    for m in explanation.members:
        note = " · no positive evidence (map all zero)" if m.zero else ""
        panels.append((thumbnail(overlay(m.image, m.heatmap), side),
                       f"{labels.get(m.name, m.name)} · P(ALL) {format_prob(m.prob)} · weight "
                       f"{m.weight:.2f}{note}"))
    if explanation.ensemble_heatmap is not None:
        panels.append((overlay_panel(explanation, side),
                       f"combined (weighted) · P(ALL) {format_prob(explanation.ensemble_prob)}"))
    return panels


def _panel(image: np.ndarray, lines: list[str], side: int = 320) -> np.ndarray:
    """An image scaled to ``side`` with caption lines above it, on white."""
    import cv2

    body = cv2.resize(image, (side, side), interpolation=cv2.INTER_NEAREST if image.shape[0] < side // 2 else cv2.INTER_AREA)
    line_h = 22
    head = np.full((line_h * len(lines) + 8, side, 3), 255, np.uint8)
    for i, text in enumerate(lines):
        cv2.putText(head, text[:44], (6, 18 + i * line_h), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (20, 20, 20), 1, cv2.LINE_AA)
    return np.vstack([head, body])


def render_figure(explanation: Explanation) -> np.ndarray:
    """A figure a person can read: per model the image it saw and the overlay (or activation
    grid), with P(ALL), the layer and the class; for an ensemble also the combined map."""
    import cv2

    panels = []
    for m in explanation.members:
        caption = [f"{m.name[:40]}", f"P(ALL) = {m.prob:.3f}  weight {m.weight:.2f}"]
        panels.append(_panel(m.image, caption + ["input (cropped, resized)"]))
        if m.grid is not None:
            panels.append(_panel(m.grid, [f"activations of {m.layer}", "one tile per channel", "red X = dead channel"]))
        else:
            note = " (all zero: no evidence)" if m.zero else ""
            panels.append(_panel(overlay(m.image, m.heatmap),
                                 [f"{explanation.method} for class {m.target.upper()}", f"layer {m.layer}", note or "red = supports the class"]))
    if explanation.ensemble_heatmap is not None:
        base = explanation.members[0].image
        heat = cv2.resize(explanation.ensemble_heatmap, (base.shape[1], base.shape[0]))
        panels.append(_panel(overlay(base, heat), ["weighted ensemble map", f"P(ALL) = {explanation.ensemble_prob:.3f}",
                                                   f"class {explanation.members[0].target.upper()}"]))
    height = max(p.shape[0] for p in panels)
    panels = [np.vstack([p, np.full((height - p.shape[0], p.shape[1], 3), 255, np.uint8)]) for p in panels]
    per_row = 4
    rows = []
    for i in range(0, len(panels), per_row):
        row = panels[i:i + per_row]
        row += [np.full_like(panels[0], 255)] * (per_row - len(row)) if len(panels) > per_row else []
        sep = np.full((height, 6, 3), 255, np.uint8)
        rows.append(np.hstack([x for p in row for x in (p, sep)][:-1]))
    width = max(r.shape[1] for r in rows)
    rows = [np.hstack([r, np.full((r.shape[0], width - r.shape[1], 3), 255, np.uint8)]) for r in rows]
    return np.vstack(rows)
