"""CLI verb ``explain``: Grad-CAM, Grad-CAM++ or activations of a run or ensemble for one image.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cnmc_core.cli.options import add_artifacts_option

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("explain", help="explain one image with a run or an ensemble; writes a PNG figure",
                       description="Write a figure with the image each model saw, its heatmap overlay "
                       "(or activation grid), P(ALL), the layer and the class.")
    p.add_argument("path", help="run or ensemble folder (or id)")
    p.add_argument("image", help="image file (bmp, png, jpg, tif)")
    p.add_argument("--out", required=True, help="PNG file to write")
    p.add_argument("--method", default="gradcam", help="gradcam (default), gradcam++ or activations")
    p.add_argument("--layer", help="layer to explain (default: the model's last kept conv block)")
    p.add_argument("--class", dest="target", default="predicted", help="all, hem or predicted (default)")
    add_artifacts_option(p, "artifacts folder, to find runs and ensembles by id "
                         "(default: $CNMC_ARTIFACTS or ./artifacts)")
    p.set_defaults(func=_explain)


def _explain(args) -> int:
    import cv2

    from cnmc_core.data.images import read_image
    from cnmc_core.exceptions import ConfigError
    from cnmc_core.explain.figure import render_figure
    from cnmc_core.explain.members import explain_path
    from cnmc_core.model_cards import card_text, model_card
    from cnmc_core.workspace.layout import resolve_member

    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise ConfigError(f"--out must be a .png file; got {out}.")
    path = resolve_member(args.path, args.artifacts)
    card = model_card(path)
    print(f"{path.name}: {card_text(card)}")
    if card["warning"]:
        print(f"warning: {path.name}: {card['warning']}.", file=sys.stderr)
    explanation = explain_path(path, read_image(args.image), method=args.method, layer=args.layer,
                               target=args.target)
    figure = render_figure(explanation)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out), cv2.cvtColor(figure, cv2.COLOR_RGB2BGR)):
        raise ConfigError(f"Could not write {out}; check the folder is writable.")
    for m in explanation.members:
        print(f"{m.name}: P(ALL) {m.prob:.4f}, {args.method} of layer {m.layer} for class {m.target}"
              + (" (all-zero map)" if m.zero else ""))
    if explanation.ensemble_prob is not None:
        print(f"ensemble: P(ALL) {explanation.ensemble_prob:.4f}")
    print(out)
    return 0
