"""Training cost of named conditions: optimizer steps per second of the spoken-digit UNet conditioned on
one class label (spoken_digits), on digit + speaker (spoken_digits_speaker: two categoricals, their
pooled vector in the adaptive norms and cross-attention in the middle) and on a caption (spoken_digits_text:
the byte-level transformer encoder trained with the model), at the same size: the recipes' quick preset.
With ``--points``: the point transformer of modelnet10 (one category label) against modelnet10_text (a
caption; cross-attention from the middle block, ``cross_every = 2``), and the same with cross-attention from
every block, quick preset, 256 points. With ``--latent``: the same three conditionings of the latent recipes
(spoken_digits_latent, _speaker_latent, _text_latent; 32 latent channels x 128 frames).

    python benchmarks/bench_conditioning.py [--points | --latent] [--repeats 5] [--steps 10] [--batch 32]
        [--set conditions.caption.KEY=VALUE ...] [--out FILE]

``--set``: an override for the caption recipes (e.g. ``conditions.caption.tokens=words``).

Each timing is ``--steps`` optimizer steps (forward, backward, AdamW) of the engine's diffusion objective
on random encoded batches of the recipe's shape (48 mel bins x 64 frames; 256 x 3 points), after 2 warm-up
steps; the models take turns within every repeat (so a busy neighbour slows each alike); the median
steps/s is reported, and against the class label the median (and quartiles) of the ratios within each
repeat. A caption is what training writes for the item's fields (its template, synonym and made-up word),
so the encoder sees captions of the lengths it trains on. Data loading and encoding are left out: they are
the same for all three.
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
import platform
import statistics
import time

import torch

from multidiff import modality
from multidiff.conditioning import batch as condition_batch
from multidiff.conditioning import data as condition_data
from multidiff.conditioning import text
from multidiff.engine.config import load_recipe
from multidiff.engine.generate import build_model
from multidiff.engine.objectives import DiffusionObjective

SPEAKERS = ["george", "jackson", "lucas", "nicolas", "theo", "yweweler"]
DIGITS = [str(d) for d in range(10)]
CATEGORIES = ["bathtub", "bed", "chair", "desk", "dresser", "monitor", "night_stand", "sofa", "table", "toilet"]
TIMES = 12   # the caption table holds every combination of field values this many times (3 and 4 templates)
#: Per data type: its modality, and its fields and their values (the first names the class).
FAMILIES = {
    "audio": ("audio", {"digit": DIGITS, "speaker": SPEAKERS}),
    "points": ("points", {"category": CATEGORIES}),
}


def setup(recipe: str, batch: int, shape=(48, 64), family: str = "audio", overrides=()):
    """The recipe's quick network (with ``overrides``) on ``shape`` and a random batch conditioned as the recipe
    is: a class label (no [conditions]), its categoricals, or a caption of the batch's fields."""
    modality_name, values = FAMILIES[family]
    cfg = load_recipe(recipe, "quick", [f"train.batch_size={batch}", *overrides])
    caption = cfg["conditions"].get("caption")
    # a training set of every combination of field values, TIMES times over (each meets every template)
    combinations = [dict(zip(values, combination)) for combination in itertools.product(*values.values())]
    fields = combinations * TIMES
    if caption and not caption["max_length"]:     # as training settles it from the captions of the data's fields
        caption["max_length"] = condition_data.settled_length(caption, fields, "caption", str)
    cfg["dataset"] = {"encoded_shape": list(shape), "class_names": next(iter(values.values())),
                      "conditions": {**{k: {"values": v} for k, v in values.items()}, "caption": {}}}
    torch.manual_seed(0)
    model = build_model(modality.get(modality_name), cfg)
    g = torch.Generator().manual_seed(1)
    drawn = {k: torch.randint(len(v), (batch,), generator=g) for k, v in values.items()}
    if not cfg["conditions"]:
        cond = next(iter(drawn.values()))
    elif caption is None:
        cond = {**{k: drawn[k] for k in cfg["conditions"]}, "dropped": torch.zeros(batch, len(cfg["conditions"]),
                                                                                   dtype=torch.bool)}
    else:
        # the caption training writes (template, synonym, made-up word) for an item of the drawn fields
        table = condition_data.captions(caption, fields, "caption", lambda i: f"bench item {i}")
        combination = sum(drawn[k] * math.prod(len(values[j]) for j in list(values)[n + 1:])
                          for n, k in enumerate(values))
        rows = combination + len(combinations) * torch.randint(TIMES, (batch,), generator=g)
        cond = {"caption": text.tokenizer(caption)([table[int(r)] for r in rows], "bench"),
                "dropped": torch.zeros(batch, 1, dtype=torch.bool)}
    z = torch.randn(batch, *shape, generator=g)
    return cfg, model, z, cond


def steps_per_second(cfg, model, z, cond, steps: int, warmup: int = 2) -> float:
    objective = DiffusionObjective(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    rows = slice(0, len(z))
    for step in range(warmup + steps):
        if step == warmup:
            started = time.perf_counter()
        loss = objective.loss(model, z, condition_batch.take(cond, rows), None, objective.draws(step, z.device), rows)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return steps / (time.perf_counter() - started)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--points", action="store_true", help="modelnet10 against modelnet10_text")
    parser.add_argument("--latent", action="store_true",
                        help="the spoken-digit latent recipes (32 channels x 128 frames of spoken_digits_ae)")
    parser.add_argument("--set", action="append", default=[], dest="overrides",
                        help="KEY=VALUE for the caption recipes")
    parser.add_argument("--out")
    args = parser.parse_args()
    captioned = lambda recipe: args.overrides if "_text" in recipe else []  # noqa: E731
    if args.points:   # the quick preset's 256 points; the caption with cross-attention in every block too
        recipes = ["modelnet10", "modelnet10_text", "modelnet10_text cross_every=1"]
        setups = {r: setup(r.split()[0], args.batch, (256, 3), "points",
                           [f"model.{o}" for o in r.split()[1:]] + captioned(r)) for r in recipes}
    elif args.latent:
        recipes = ["spoken_digits_latent", "spoken_digits_speaker_latent", "spoken_digits_text_latent"]
        setups = {r: setup(r, args.batch, (32, 128), overrides=captioned(r)) for r in recipes}
    else:
        recipes = ["spoken_digits", "spoken_digits_speaker", "spoken_digits_text"]
        setups = {r: setup(r, args.batch, overrides=captioned(r)) for r in recipes}
    rates = {r: [] for r in recipes}
    for _ in range(args.repeats):
        for r in recipes:
            rates[r].append(steps_per_second(*setups[r], args.steps))
    base = rates[recipes[0]]
    result = {"batch": args.batch, "steps": args.steps, "repeats": args.repeats, "threads": torch.get_num_threads(),
              "machine": platform.processor() or platform.machine(), "torch": torch.__version__, "models": {}}
    print(f"{'recipe (quick preset)':32s} {'parameters':>11s} {'steps/s':>8s} {'vs class label':>15s} "
          f"{'(quartiles)':>13s}")
    for r in recipes:
        params = sum(p.numel() for p in setups[r][1].parameters())
        median = statistics.median(rates[r])
        # the ratio within each repeat (the models ran back to back), then their median: the machine's speed
        # drifts by +-20% over a run here, and a ratio of two medians would carry that drift
        ratios = [x / y for x, y in zip(rates[r], base)]
        q1, _, q3 = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else ratios * 3
        result["models"][r] = {"parameters": params, "steps_per_s_median": median, "all": rates[r],
                               "ratio_to_class_label": statistics.median(ratios), "ratios": ratios}
        print(f"{r:32s} {params:11,d} {median:8.2f} {statistics.median(ratios):14.2f}x  ({q1:.2f}-{q3:.2f})")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
