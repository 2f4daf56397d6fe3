"""Editing with trained runs, scored by the modalities' own evaluation classifiers and point metrics.

    python benchmarks/bench_editing.py mnist RUN [--n 500]        top half kept, bottom half generated;
                                                                   strength-0.5 variations
    python benchmarks/bench_editing.py audio RUN [--n 300]        the middle 40% of held-out clips regenerated
    python benchmarks/bench_editing.py chair RUN [--n 100]        partial clouds (one viewpoint; a half-space
                                                                   cut) completed to the run's point count;
                                                                   a latent run (modelnet10_chair_latent) by
                                                                   guidance on its shape code [--fit-scale 0 1]
                                                                   [--best-of 1 4]

Every edit asks for no class (label -1): the model must read the class from the kept part. Each figure
comes with the classifier's accuracy on the untouched inputs (the ceiling) and, for inpainting, what the
kept part alone tells: a classifier of the same architecture trained on training inputs with the same
part blanked, its accuracy and its mean probability of the true class. That mean is what an exact
sampler of the missing part given the kept one would score under a perfect judge (a completion shows
class c with the posterior probability of c), so it bounds any completion method's figure.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch

from multidiff.engine.edit import edit, edit_labels
from multidiff.engine.generate import load_run
from multidiff.metrics import accuracy, fit_classifier, predict


def cache_dir(name: str) -> Path:
    return Path(os.environ.get("MULTIDIFF_CACHE", Path.home() / ".cache" / "multidiff")) / name


def pick(n: int, total: int) -> torch.Tensor:
    return torch.as_tensor(np.sort(np.random.default_rng(0).choice(total, min(n, total), replace=False)))


def run_edit(run, x, args, **options):
    s = run.cfg["sample"]
    started = time.perf_counter()
    out = edit(run, x, labels=edit_labels(len(x), run.cfg, None), sampler=args.sampler or s["sampler"],
               steps=args.steps or s["steps"], guidance=1.0, seed=0, **options)
    return out, time.perf_counter() - started


def guidances(run, args) -> list[float]:
    """The known-data guidance scales to try: those asked for on a mask-conditioned run, else 1."""
    return args.known_guidance if getattr(run.model, "mask_conditioned", False) else [1.0]


def kept_part_ceiling(make_net, x_train, y_train, x_test, y_test, blank, steps: int, augment=None) -> str:
    """Accuracy and mean true-class probability of a classifier trained on the kept part alone."""
    net = fit_classifier(make_net(), blank(x_train), y_train, steps=steps, batch_size=64, lr=2e-3, seed=0,
                         augment=augment)
    logits = predict(net, blank(x_test))
    p_true = logits.softmax(-1)[torch.arange(len(y_test)), y_test]
    return f"accuracy {accuracy(logits, y_test):.3f}, mean p(true class) {float(p_true.mean()):.3f}"


def mnist(run, args):
    from modalities.image.data import image_dataset
    from modalities.image.metrics import FeatureCNN, trained_classifier

    train = image_dataset(run.cfg, "train", full=True, with_labels=True)
    test = image_dataset(run.cfg, "test", full=True, with_labels=True)
    chosen = pick(args.n, len(test.labels))
    x, labels = test.images[chosen].float() / 127.5 - 1.0, test.labels[chosen]
    net = trained_classifier(run.cfg, cache_dir("image"))
    keep = torch.zeros(1, 1, *x.shape[-2:])
    keep[..., : x.shape[-2] // 2, :] = 1
    print(f"MNIST, {len(x)} test digits, sampler {args.sampler or run.cfg['sample']['sampler']}, "
          f"{args.steps or run.cfg['sample']['steps']} steps, no class given")
    print(f"  classifier on the originals:                   {accuracy(predict(net, x), labels):.3f}")
    def blank(images):
        return images * keep - (1 - keep)

    print(f"  classifier on the top half alone (rest blank): {accuracy(predict(net, blank(x)), labels):.3f}")
    ceiling = kept_part_ceiling(lambda: FeatureCNN(1, 10), train.images.float() / 127.5 - 1.0, train.labels,
                                test.images.float() / 127.5 - 1.0, test.labels, blank, args.ceiling_steps)
    print(f"  trained on top halves, all {len(test.labels)} test digits:   {ceiling}")
    for r in args.resample:
        for w in guidances(run, args):
            out, seconds = run_edit(run, x, args, known_mask=keep, resample=r, known_guidance=w)
            score = accuracy(predict(net, out), labels)
            print(f"  top half kept, bottom generated, resample {r}, known guidance {w:g}: {score:.3f}  "
                  f"({seconds:.0f} s)")
    for strength in (0.5,):
        out, seconds = run_edit(run, x, args, strength=strength)
        print(f"  variations at strength {strength}:                 {accuracy(predict(net, out), labels):.3f}  "
              f"(RMS change {float((out - x).pow(2).mean().sqrt()):.3f}, {seconds:.0f} s)")


def audio(run, args):
    from modalities.audio import data
    from modalities.audio.classifier import ClipClassifier
    from modalities.audio.evaluation import augment, trained_classifier

    labelled = {**run.cfg, "data": {**run.cfg["data"], "conditional": True}}     # the judge's labels, whatever
    train, test = data.load(labelled, "train"), data.load(labelled, "test")      # the model was trained on
    chosen = pick(args.n, len(test))
    x, labels = test.x[chosen], test.labels[chosen]
    net = trained_classifier(labelled, train, run.encoder, cache_dir("audio"))
    length = x.shape[-1]
    keep = torch.ones(1, 1, length)
    keep[..., int(0.3 * length): int(0.7 * length)] = 0
    round_trip = torch.cat([run.encoder.decode(run.encoder.encode(x[i:i + 100])[0]) for i in range(0, len(x), 100)])
    print(f"FSDD, {len(x)} held-out clips, middle 40% regenerated, no class given")
    print(f"  classifier on the originals:                    {accuracy(predict(net, x), labels):.3f}")
    print(f"  classifier on the originals through the encoder: {accuracy(predict(net, round_trip), labels):.3f}")
    print(f"  classifier with the middle 40% silenced:         {accuracy(predict(net, x * keep), labels):.3f}")
    rate = int(run.cfg["data"]["sample_rate"])
    ceiling = kept_part_ceiling(lambda: ClipClassifier(rate, len(train.class_names)), train.x, train.labels,
                                test.x, test.labels, lambda clips: clips * keep, args.ceiling_steps,
                                augment=lambda batch, gen: augment(batch, gen, rate) * keep)
    print(f"  trained on clips with the middle silenced, all {len(test)} test clips: {ceiling}")
    for r in args.resample:
        for w in guidances(run, args):
            out, seconds = run_edit(run, x, args, known_mask=keep, resample=r, known_guidance=w)
            score = accuracy(predict(net, out), labels)
            print(f"  middle regenerated, resample {r}, known guidance {w:g}: {score:.3f}  ({seconds:.0f} s)")


def chair(run, args):
    from modalities.points.edit import half_space, mirrored, seen_from
    from modalities.points.metrics import chamfer, emd_auction
    from multidiff.latent import is_latent

    latent = is_latent(run.cfg)
    test = run.modality.dataset(run.cfg, "test")
    x = test.clouds[pick(args.n, len(test))]
    n = x.shape[1]
    print(f"ModelNet10 chairs, {len(x)} test clouds of {n} points; CD (sum of mean squared distances) and EMD "
          "(mean distance; auction, within 0.1% of the mean pair distance of exact) to the full cloud, in the "
          "data's units")
    cuts = {"half-space z > 0 kept": lambda c: half_space(c, "z", ">", 0.0),
            "seen from azimuth 30, elevation 20": lambda c: seen_from(c, 30.0, 20.0)}
    for name, cut in cuts.items():
        keep = torch.stack([cut(c) for c in x])                                   # (B, N, 1)
        kept = keep[..., 0].sum(1)
        partial = [c[k[:, 0] > 0] for c, k in zip(x, keep)]
        mirror = torch.stack([mirrored(p, n) for p in partial])
        padded = torch.stack([p[torch.arange(n) % len(p)] for p in partial])    # the partial input, repeated to n
        print(f"  {name}: {float(kept.float().mean()):.0f} of {n} points kept on average")
        rows = {"partial input": padded, "copy and mirror": mirror}
        if latent:
            rows.update(latent_completions(run, partial, n, args))
        else:
            for r in args.resample:
                for w in guidances(run, args):
                    label = f"completion, resample {r}" + (f", known guidance {w:g}" if w != 1 else "")
                    rows[label], _ = run_edit(run, x, args, known_mask=keep, resample=r, known_guidance=w)
        for label, clouds in rows.items():
            cd = float(chamfer(clouds.float(), x.float()).mean())
            emd = float(emd_auction(clouds.float(), x.float()).mean())
            print(f"    {label:40s} CD {cd:.5f}  EMD {emd:.4f}", flush=True)


def latent_completions(run, partial, n, args) -> dict:
    """Completions through the shape code: the partial encoded as it is (no diffusion), then sampled codes
    unguided, guided at each scale, and the best of K guided draws by their fit to the partial."""
    from modalities.points.completion import assemble, complete

    s = run.cfg["sample"]
    options = dict(sampler=args.sampler or s["sampler"], steps=args.steps or s["steps"], seed=0)
    rows = {}
    started = time.perf_counter()
    with torch.no_grad():
        codes = torch.cat([run.encoder.encode(p[None])[0] for p in partial])
        decoded = run.encoder.decode(codes, n)
    rows["partial encoded, decoded (no diffusion)"] = torch.stack([assemble(p, d, n) for p, d in zip(partial, decoded)])
    print(f"    (partial encoded: {time.perf_counter() - started:.0f} s)")
    for scale in args.fit_scale:
        for k in args.best_of if scale > 0 else [1]:
            label = "completion, unguided" if scale == 0 else f"completion, fit scale {scale:g}" + (
                f", best of {k}" if k > 1 else "")
            started = time.perf_counter()
            rows[label] = complete(run, partial, n, fit_scale=scale, best_of=k, **options)
            print(f"    ({label}: {time.perf_counter() - started:.0f} s)", flush=True)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("task", choices=("mnist", "audio", "chair"))
    parser.add_argument("run")
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--resample", type=int, nargs="+", default=[1])
    parser.add_argument("--known-guidance", type=float, nargs="+", default=[1.0],
                        help="guidance scales on the kept data to try (mask-conditioned runs)")
    parser.add_argument("--ceiling-steps", type=int, default=1500,
                        help="training steps of the classifier that sees the kept part alone")
    parser.add_argument("--fit-scale", type=float, nargs="+", default=[0.0, 1.0],
                        help="latent point runs: guidance scales on the fit to the partial (0 = unguided)")
    parser.add_argument("--best-of", type=int, nargs="+", default=[1],
                        help="latent point runs: draws per partial, the best fit kept")
    parser.add_argument("--sampler")
    parser.add_argument("--steps", type=int)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    run = load_run(args.run, "cpu")
    {"mnist": mnist, "audio": audio, "chair": chair}[args.task](run, args)


if __name__ == "__main__":
    main()
