"""Which category a caption model draws: for each asked category, the category of each sample's nearest
training cloud (Chamfer distance), for the class-label model, the caption model with trained words and with
the held-out synonym. A coarse judge (a 1-nearest-neighbour classifier over ``--per-class`` training clouds
per category), but one that names the category a sample looks like, where 1-NNA only says how far off it is.

    python benchmarks/bench_nearest_category.py LABEL_RUN TEXT_RUN [--categories desk,dresser] [--n 30]
        [--per-class 30] [--out FILE]

Sampling: each run's [sample] sampler, steps and guidance, seed 0; prompts as bench_text_points.py writes them.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_text_points as texts  # noqa: E402

from modalities.points.metrics import distance_matrices  # noqa: E402
from multidiff.conditioning.evaluation import captioned  # noqa: E402
from multidiff.engine.generate import draw, load_run  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("label_run")
    p.add_argument("text_run")
    p.add_argument("--categories", default="")
    p.add_argument("--n", type=int, default=30)
    p.add_argument("--per-class", type=int, default=30)
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    label, textual = load_run(args.label_run), load_run(args.text_run)
    names = list(label.cfg["dataset"]["class_names"])
    train = label.modality.dataset(label.cfg, "train")
    labels = np.asarray(train.labels)
    rng = np.random.default_rng(0)
    pick = np.concatenate([rng.choice(np.where(labels == c)[0], args.per_class, replace=False)
                           for c in range(len(names))])
    reference, reference_labels = train.clouds[pick], labels[pick]
    caption, spec = texts.text_condition(textual.cfg)
    s = label.cfg["sample"]
    sampling = dict(sampler=s["sampler"], steps=s["steps"], guidance=s["guidance"], seed=0)
    lines = ["# " + shlex.join(["python", "benchmarks/bench_nearest_category.py", *sys.argv[1:]]),
             f"# label run {args.label_run}, text run {args.text_run} (tokens = {spec['tokens']!r}); {sampling}; "
             f"{args.per_class} training clouds per category", "",
             f"{'asked':<12} {'model':<6} {'right':>6}  nearest categories"]
    print("\n".join(lines), flush=True)
    for name in (args.categories.split(",") if args.categories else names):
        c = names.index(name)
        drawn = {"label": draw(label, torch.full((args.n,), c), args.n, **sampling)}
        for kind, held in (("text", False), ("held", True)):
            prompts = texts.prompts(spec, name, args.n, held)
            drawn[kind] = draw(textual, captioned(textual.cfg, caption, prompts), args.n, **sampling)
        for kind, x in drawn.items():
            nearest = reference_labels[distance_matrices(x.float(), reference, emd=False)["cd"].argmin(1)]
            counts = ", ".join(f"{names[k]} {int((nearest == k).sum())}" for k in np.unique(nearest))
            line = f"{name:<12} {kind:<6} {int((nearest == c).sum()):>3}/{args.n}  {counts}"
            lines.append(line)
            print(line, flush=True)
    if args.out:
        args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
