"""The pilot placement on trained networks: sample quality at NFE 4, 6, 10 against fixed placements and diffusers.

Run: ``nice -n 10 python benchmarks/bench_pilot_trained.py [--runs /work/runs-shared] [--n 200]``; it uses every
run of RUNS listed in RUNS_DIR/done.txt.

For each run (the network as trained, its EMA weights, its schedule, prediction, guidance and trained range
t >= t_min) and each NFE:

- pilot: ``multidiff.pilot_steps.fit`` on ``--pilot-batch`` pilot noises of its own, per sampler; its one-off
  network calls are listed (each on the pilot batch, doubled by guidance);
- fixed: every named placement (``multidiff.steps``) with every sampler in SAMPLERS;
- diffusers: CANDIDATES, diffusers' strongest settings on the analytic benchmark, driving the network through
  its v output (``diffusers_peer.v_at``) on the run's schedule given to diffusers as trained betas.

Two measures on the same noises and labels for all: ``ode``, the RMS distance in the network's space from a
fine reference solve (dpmpp_3m, ``--reference-steps`` uniform in logSNR to t_min) on ``--select-batch``
held-out noises, which picks the
best setting of each method per NFE (the selection any user could make with a reference); and the modality's
metrics on ``--n`` samples drawn with that best setting (image: Frechet distance and accuracy of the CNN
classifier; audio: the same with its classifier; points: 1-NNA with Chamfer and EMD, 50% is ideal).
"""
from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import diffusers_peer  # noqa: E402

import multidiff  # noqa: E402
from multidiff import pilot_steps  # noqa: E402
from multidiff import steps as placements  # noqa: E402
from multidiff.engine.conditions import class_labels  # noqa: E402
from multidiff.engine.diffusion import from_config  # noqa: E402
from multidiff.engine.generate import load_run  # noqa: E402
from multidiff.engine.sampling_options import t_min as trained_t_min  # noqa: E402
from multidiff.guidance import guided  # noqa: E402
from multidiff.parameterizations import Denoiser  # noqa: E402

RUNS = ("mnist", "spoken_digits", "modelnet10_chair")
NFES = (4, 6, 10)
SAMPLERS = ("dpmpp_2m", "unipc")
# metric name, better is "low" / "high" / "half" (closest to 0.5); the first one decides
METRICS = {"image": [("frechet_cnn", "low"), ("accuracy_cnn", "high")],
           "audio": [("frechet_distance", "low"), ("classifier_accuracy", "high")],
           "points": [("1nna_cd", "half"), ("1nna_emd", "half")]}


def _candidates() -> list[diffusers_peer.PeerConfig]:
    wanted = ["DDIM (trailing)", "EulerDiscrete (karras linspace final zero)"]
    for spacing in ("trailing", "karras linspace", "exponential linspace", "lu_lambdas linspace"):
        wanted.append(f"DPMSolverMultistep dpmsolver++ (order 2 midpoint {spacing} final zero)")
    for spacing in ("trailing", "karras linspace", "exponential linspace", "beta linspace"):
        wanted.append(f"UniPCMultistep (order 2 bh2 {spacing} final zero)")
    wanted.append("DEISMultistep (order 2 exponential linspace)")
    by_label = {c.label: c for c in diffusers_peer.CONFIGS}
    missing = [w for w in wanted if w not in by_label]
    if missing:
        raise KeyError(f"no diffusers configuration {missing[0]!r}")
    return [by_label[w] for w in wanted]


CANDIDATES = _candidates()


def score(metrics: dict, modality: str) -> float:
    """The deciding metric as a loss (lower is better)."""
    name, better = METRICS[modality][0]
    value = metrics[name]
    return value if better == "low" else -value if better == "high" else abs(value - 0.5)


class Bench:
    """One run: its network as a denoiser, the evaluation and selection noises, and the reference."""

    def __init__(self, path: Path, n: int, cache_dir: Path, select_batch: int, reference_steps: int):
        self.run = load_run(path, "cpu")
        cfg = self.run.cfg
        d = cfg["diffusion"]
        self.path, self.cfg, self.cache_dir = path, cfg, cache_dir
        diffusion = from_config(d)
        self.schedule = diffusion.schedule
        self.t_min = trained_t_min(cfg)
        self.guidance = cfg["sample"]["guidance"]
        self.shape = tuple(cfg["dataset"]["encoded_shape"])
        self.common = dict(schedule=self.schedule, prediction=diffusion.prediction,
                           guidance_scale=self.guidance, t_min=self.t_min)
        self.n = n
        self.noise = torch.randn((n, *self.shape), generator=torch.Generator().manual_seed(0))
        self.labels = class_labels(n, cfg)
        self.select_noise = torch.randn((select_batch, *self.shape), generator=torch.Generator().manual_seed(1))
        self.select_labels = class_labels(select_batch, cfg)
        self.reference = self.sample(self.select_noise, self.select_labels, "dpmpp_3m", reference_steps,
                                     placement="logsnr")
        denoiser = guided(Denoiser(self.run.model, self.schedule, diffusion.prediction),
                          self.guidance)
        self.denoiser = denoiser

    def sample(self, noise, labels, sampler, steps, **options) -> torch.Tensor:
        with torch.no_grad():
            return multidiff.sample(self.run.model, noise.shape, sampler=sampler, steps=steps, noise=noise,
                                    cond=labels, **self.common, **options)

    def diffusers_sample(self, config, noise, labels, nfe) -> torch.Tensor | None:
        start = noise * float(self.schedule.sigma(torch.tensor(1.0, dtype=torch.float64)))
        predict = diffusers_peer.v_at(lambda x, t: self.denoiser(x, t, labels), self.schedule, self.t_min)
        try:
            with torch.no_grad():
                x, calls = diffusers_peer.sample(config, start, predict, nfe,
                                                 diffusers_peer.discrete_schedule(self.schedule))
        except RuntimeError as e:   # UniPC's singular solve at few steps; duplicate timesteps on a steep schedule
            print(f"  skipped: {str(e).splitlines()[0]}", file=sys.stderr, flush=True)
            return None
        return x

    def ode_error(self, z: torch.Tensor) -> float:
        return float((z.double() - self.reference.double()).pow(2).mean().sqrt())

    def metrics(self, z: torch.Tensor) -> dict:
        with torch.no_grad():
            x = self.run.encoder.decode(z.float())
        out = self.run.modality.evaluate(x, self.labels, self.cfg, self.cache_dir / self.run.modality.name)
        return {k: float(v) for k, v in out.items()}


def bench_run(path: Path, n: int, cache_dir: Path, args) -> dict:
    bench = Bench(path, n, cache_dir, args.select_batch, args.reference_steps)
    rows = {}     # method -> nfe -> (ode error, setting, eval draw function)
    fits = {}
    for sampler in args.samplers:
        begin = time.perf_counter()
        pilot = pilot_steps.fit(bench.run.model, (args.pilot_batch, *bench.shape), sampler=sampler, steps=NFES,
                                cond=class_labels(args.pilot_batch, bench.cfg), reference_steps=args.reference_steps,
                                generator=torch.Generator().manual_seed(2), **bench.common,
                                progress=lambda line: print(f"  {line}", file=sys.stderr, flush=True))
        fits[sampler] = (pilot, time.perf_counter() - begin)
        for nfe in NFES:
            _offer(rows, "pilot", nfe, bench.ode_error(bench.sample(bench.select_noise, bench.select_labels, sampler,
                                                                    nfe, placement=pilot)),
                   f"{sampler} pilot", lambda s=sampler, p=pilot, k=nfe: bench.sample(bench.noise, bench.labels, s, k,
                                                                                      placement=p))
        for placement in placements.names():
            for nfe in NFES:
                z = bench.sample(bench.select_noise, bench.select_labels, sampler, nfe, placement=placement)
                _offer(rows, "fixed", nfe, bench.ode_error(z), f"{sampler} {placement}",
                       lambda s=sampler, p=placement, k=nfe: bench.sample(bench.noise, bench.labels, s, k, placement=p))
    for config in CANDIDATES:
        for nfe in NFES:
            z = bench.diffusers_sample(config, bench.select_noise, bench.select_labels, nfe)
            if z is not None:
                _offer(rows, "diffusers", nfe, bench.ode_error(z), config.label,
                       lambda c=config, k=nfe: bench.diffusers_sample(c, bench.noise, bench.labels, k))
    results = {}
    for method, per_nfe in rows.items():
        for nfe, (error, setting, draw) in per_nfe.items():
            results[method, nfe] = dict(ode=error, setting=setting, metrics=bench.metrics(draw()))
            print(f"  {method} NFE {nfe}: {setting}, ode {error:.3g}, {results[method, nfe]['metrics']}",
                  file=sys.stderr, flush=True)
    return dict(name=path.name, modality=bench.run.modality.name, results=results, n=n, pilot_batch=args.pilot_batch,
                select_batch=args.select_batch,
                fits={s: (p.nfe, p.reference_nfe, [p.tuned[k]["tuning_nfe"] for k in NFES], seconds)
                      for s, (p, seconds) in fits.items()})


def _offer(rows: dict, method: str, nfe: int, error: float, setting: str, draw) -> None:
    """Keep the setting with the smallest ODE error per method and NFE."""
    best = rows.setdefault(method, {}).get(nfe)
    if math.isfinite(error) and (best is None or error < best[0]):
        rows[method][nfe] = (error, setting, draw)


def report(done: list[dict]) -> None:
    for entry in done:
        modality, results = entry["modality"], entry["results"]
        names = [m for m, _ in METRICS[modality]]
        print(f"\n### {entry['name']} ({modality}, {entry['n']} samples; settings picked on "
              f"{entry['select_batch']} held-out noises)\n")
        print("| method | NFE | best setting (by ODE error) | ODE error | " + " | ".join(names) + " |")
        print("| --- | ---: | --- | ---: | " + " | ".join("---:" for _ in names) + " |")
        for method in ("pilot", "fixed", "diffusers"):
            for nfe in NFES:
                r = results.get((method, nfe))
                if r:
                    print(f"| {method} | {nfe} | {r['setting']} | {r['ode']:.3g} | "
                          + " | ".join(f"{r['metrics'][k]:.4g}" for k in names) + " |")
        print(f"\nPilot one-off cost (network calls on {entry['pilot_batch']} pilot noises: reference + tuning at NFE "
              f"{', '.join(map(str, NFES))}; wall time):")
        for sampler, (total, reference, tuning, seconds) in entry["fits"].items():
            print(f"- {sampler}: {total} = {reference} + {' + '.join(map(str, tuning))}, {seconds:.0f} s")
        pilot6, fixed10 = results.get(("pilot", 6)), results.get(("fixed", 10))
        if pilot6 and fixed10:
            ok = score(pilot6["metrics"], modality) <= score(fixed10["metrics"], modality)
            name = METRICS[modality][0][0]
            print(f"\nTarget (pilot at NFE 6 at least as good as the best fixed placement at NFE 10, by {name}): "
                  f"{'met' if ok else 'missed'} ({pilot6['metrics'][name]:.4g} vs {fixed10['metrics'][name]:.4g})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=Path("/work/runs-shared"), help="folder of the quick runs")
    parser.add_argument("--n", type=int, default=200, help="samples per evaluation (points: at most eval.n)")
    parser.add_argument("--only", nargs="*", default=list(RUNS), help="run names to use")
    parser.add_argument("--samplers", nargs="*", default=list(SAMPLERS), help="multidiff samplers to use")
    parser.add_argument("--pilot-batch", type=int, default=64, help="pilot noises per fit")
    parser.add_argument("--select-batch", type=int, default=64, help="held-out noises that pick each method's setting")
    parser.add_argument("--reference-steps", type=int, default=200, help="steps of the reference solves")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    logging.getLogger("diffusers").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=FutureWarning)
    cache_dir = Path(os.environ.get("MULTIDIFF_CACHE", Path.home() / ".cache" / "multidiff"))
    listed = (args.runs / "done.txt").read_text() if (args.runs / "done.txt").is_file() else ""
    ready = [name for name in args.only if f"{name} rc=0" in listed]
    print(f"runs ready: {', '.join(ready) or 'none'}", file=sys.stderr)
    done = []
    for name in ready:
        begin = time.perf_counter()
        cfg_n = args.n
        if name.startswith("modelnet"):
            from multidiff.engine.checkpoint import read_metadata
            cfg_n = min(args.n, read_metadata(args.runs / name)[0]["eval"]["n"])
        print(f"{name}: ...", file=sys.stderr, flush=True)
        done.append(bench_run(args.runs / name, cfg_n, cache_dir, args))
        print(f"{name}: {time.perf_counter() - begin:.0f} s", file=sys.stderr, flush=True)
        report(done[-1:])


if __name__ == "__main__":
    main()
