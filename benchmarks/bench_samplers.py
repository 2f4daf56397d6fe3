"""multidiff's samplers beside diffusers' schedulers: ODE error at equal network calls, and step overhead.

Run: ``nice -n 10 python benchmarks/bench_samplers.py`` (``--quick`` for fewer samples).

Error. An analytic Gaussian mixture (``multidiff.analytic``) stands in for a perfectly trained eps
network on the DDPM "linear" schedule (1000 training steps). Fair rules: every sampler may query the
network only in the trained range, t >= T_MIN = 1e-3 (diffusers' first timestep, the smallest time
``multidiff.losses.sample_times`` trains on), so the target is what all of them can reach: the exact
probability-flow ODE solution at t = 1e-3 followed by the final denoising step (the exact posterior
mean there). Every sampler starts from the same noise at t = 1 and gets the same budget of network
calls (NFE, not steps: a scheduler with 2 calls per step gets the most steps that fit); the table gives
the RMS over samples and coordinates of (result - target).
multidiff runs every deterministic sampler with every named placement, and the ``pilot`` placement
(``multidiff.pilot_steps.fit`` on separate pilot noises, restricted to t >= 1e-3 like everything else;
its network calls are a one-off cost, listed beside its figures). diffusers runs its complete option
set (``diffusers_peer.CONFIGS``: every spacing and sigma family, final sigma type, solver order and
type, ...), each configuration given the exact eps at its own noise level; the best is picked per NFE.

Overhead. A free network (a constant eps) on a (16, 3, 64, 64) batch: the wall time of a whole
20-step run divided by its network calls, median of repeats, multidiff.sample against the
set_timesteps + scale_model_input + step loop of diffusers. Only the sampler's own arithmetic and
bookkeeping are left.
"""
from __future__ import annotations

import argparse
import logging
import math
import warnings
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import diffusers_peer  # noqa: E402

import multidiff  # noqa: E402
from multidiff import pilot_steps, samplers, schedules  # noqa: E402
from multidiff import steps as placements  # noqa: E402
from multidiff.analytic import GaussianMixture  # noqa: E402

BUDGETS = (5, 10, 20, 50)
TARGET_BUDGETS = (5, 10, 20)
STOCHASTIC = ("ddpm", "euler_ancestral", "dpmpp_2m_sde")   # they follow the SDE, not the ODE
PILOT_SAMPLERS = ("dpmpp_2m", "dpmpp_3m", "unipc")
DIM, MODES = 64, 8
OVERHEAD_SHAPE, OVERHEAD_STEPS = (16, 3, 64, 64), 20
# multidiff sampler -> the diffusers setting with the same update rule, for the overhead table
OVERHEAD_PEERS = {"ddim": "DDIM (trailing)", "heun": "HeunDiscrete (karras linspace)",
                  "dpmpp_2m": "DPMSolverMultistep dpmsolver++ (order 2 midpoint lu_lambdas linspace final zero)",
                  "dpmpp_3m": "DPMSolverMultistep dpmsolver++ (order 3 midpoint lu_lambdas linspace final zero)",
                  "unipc": "UniPCMultistep (order 2 bh2 linspace final zero)"}
VARIANTS = {"unipc": [{}, {"order": 3}, {"variant": "bh1"}]}   # sampler options beyond the defaults


def mixture() -> GaussianMixture:
    """Eight modes in 64 dimensions with small spreads, so that the ODE bends where modes separate."""
    g = torch.Generator().manual_seed(1)
    weights = torch.rand(MODES, generator=g) + 0.5
    means = 0.05 * torch.randn(MODES, DIM, generator=g, dtype=torch.float64)
    stds = 0.02 + 0.04 * torch.rand(MODES, generator=g, dtype=torch.float64)
    return GaussianMixture(weights, means, stds)


def steps_for(sampler: str, nfe: int) -> int:
    return (nfe + 1) // 2 if sampler == "heun" else nfe


def nfe_of(sampler: str, steps: int) -> int:
    return 2 * steps - 1 if sampler == "heun" else steps


def cell(error: float, nfe: int, budget: int) -> str:
    return f"{error:.2e}" if nfe == budget else f"{error:.2e} ({nfe})"


def error_tables(n_samples: int, pilot_batch: int) -> dict:
    schedule = schedules.get("linear")
    mix = mixture()
    model = mix.model("eps", schedule)
    noise = torch.randn(n_samples, DIM, generator=torch.Generator().manual_seed(2))
    t_min = torch.tensor(placements.T_MIN, dtype=torch.float64)
    at_t_min = mix.ode_solution(noise, schedule, rtol=1e-9, atol=1e-9, t_end=placements.T_MIN)
    target = mix.posterior_mean(at_t_min, schedule.alpha(t_min), schedule.sigma(t_min))
    start = noise * float(schedule.sigma(torch.tensor(1.0, dtype=torch.float64)))

    def rms(x: torch.Tensor) -> float:
        return float((x.to(torch.float64) - target).pow(2).mean().sqrt())

    rows, pilots = [], {}
    for sampler in samplers.names():
        if sampler in STOCHASTIC:
            continue
        for options in VARIANTS.get(sampler, [{}]):
            name = " ".join([sampler] + [f"{k}={v}" for k, v in options.items()])
            for placement in placements.names():
                errors = []
                for budget in BUDGETS:
                    steps = steps_for(sampler, budget)
                    x = multidiff.sample(model, noise.shape, schedule=schedule, sampler=sampler, steps=steps,
                                         noise=noise, placement=placement, **options)
                    errors.append((rms(x), nfe_of(sampler, steps)))
                rows.append(("multidiff", name, placement, errors))
    for sampler in PILOT_SAMPLERS:
        pilot = pilot_steps.fit(model, (pilot_batch, DIM), schedule=schedule, sampler=sampler, steps=BUDGETS,
                                generator=torch.Generator().manual_seed(3))
        errors = []
        for budget in BUDGETS:
            x = multidiff.sample(model, noise.shape, schedule=schedule, sampler=sampler, steps=budget, noise=noise,
                                 placement=pilot)
            errors.append((rms(x), budget))
        rows.append(("multidiff", sampler, "pilot", errors))
        pilots[sampler] = (pilot.reference_nfe, [pilot.tuned[b]["tuning_nfe"] for b in BUDGETS])

    def eps_at(x: torch.Tensor, alpha: float, sigma: float) -> torch.Tensor:
        x0 = mix.posterior_mean(x.to(torch.float64), alpha, sigma)
        return ((x.to(torch.float64) - alpha * x0) / sigma).to(x.dtype)

    configs = diffusers_peer.distinct(diffusers_peer.CONFIGS, BUDGETS)
    for config in configs:
        errors = []
        for budget in BUDGETS:
            try:
                x, calls = diffusers_peer.sample(config, start, eps_at, budget)
            except torch.linalg.LinAlgError:    # UniPC's singular solve for some orders at few steps
                x, calls = None, 0
            errors.append((rms(x) if calls else math.inf, calls))
        rows.append(("diffusers", config.family, config.setting, errors))
    return dict(rows=rows, pilots=pilots, n_samples=n_samples, pilot_batch=pilot_batch,
                n_configs=(len(diffusers_peer.CONFIGS), len(configs)))


def overhead_table(repeats: int) -> list[tuple[str, float, str, float]]:
    """(multidiff sampler, us per call, diffusers setting, us per call), medians over interleaved repeats."""
    eps = torch.zeros(OVERHEAD_SHAPE)
    noise = torch.randn(OVERHEAD_SHAPE, generator=torch.Generator().manual_seed(0))
    configs = {c.label: c for c in diffusers_peer.CONFIGS}

    def free_network(x, t, cond=None):
        return eps

    def multidiff_seconds(sampler: str) -> tuple[float, int]:
        begin = time.perf_counter()
        multidiff.sample(free_network, OVERHEAD_SHAPE, schedule="linear", sampler=sampler, steps=OVERHEAD_STEPS,
                         noise=noise)
        return time.perf_counter() - begin, nfe_of(sampler, OVERHEAD_STEPS)

    table = []
    for sampler, label in OVERHEAD_PEERS.items():
        ours, theirs = [], []
        for _ in range(repeats):
            seconds, calls = multidiff_seconds(sampler)
            ours.append(seconds / calls)
            seconds, calls = diffusers_peer.loop_seconds(configs[label], OVERHEAD_SHAPE, OVERHEAD_STEPS)
            theirs.append(seconds / calls)
        table.append((sampler, 1e6 * statistics.median(ours), label, 1e6 * statistics.median(theirs)))
    return table


def print_report(errors: dict, overhead: list, seconds: float) -> None:
    rows = errors["rows"]
    print(f"### ODE error at equal NFE (RMS vs the exact solution at t = 1e-3 and the final denoising step, "
          f"{errors['n_samples']} samples)\n")
    print(f"Gaussian mixture: {MODES} modes in D = {DIM}, DDPM linear schedule (1000 steps), eps prediction, "
          "float32 state, no network call below t = 1e-3. A number in brackets is the NFE actually used when a "
          "budget does not fit.\n")
    print("| library | sampler | placement / setting | " + " | ".join(f"NFE {b}" for b in BUDGETS) + " |")
    print("| --- | --- | --- | " + " | ".join("---:" for _ in BUDGETS) + " |")
    for library, name, setting, errs in rows:
        if library == "multidiff":
            cells = " | ".join(cell(e, n, b) for (e, n), b in zip(errs, BUDGETS))
            print(f"| {library} | {name} | {setting} | {cells} |")
    total, run = errors["n_configs"]
    print(f"\ndiffusers: {total} configurations, {run} with distinct steps; the best setting of each scheduler "
          "per NFE:\n")
    print("| scheduler | " + " | ".join(f"NFE {b}" for b in BUDGETS) + " |")
    print("| --- | " + " | ".join("---" for _ in BUDGETS) + " |")
    families = {}
    for library, name, setting, errs in rows:
        if library == "diffusers":
            best = families.setdefault(name, [(math.inf, 0, "")] * len(BUDGETS))
            families[name] = [min(b, (e, n, setting)) for b, (e, n) in zip(best, errs)]
    for name, best in families.items():
        print(f"| {name} | " + " | ".join(f"{cell(e, n, b)} {setting}" for (e, n, setting), b in zip(best, BUDGETS))
              + " |")

    print(f"\n### Pilot cost (one-off, network calls on a batch of {errors['pilot_batch']} pilot noises)\n")
    print("| sampler | reference solve | " + " | ".join(f"tuning for {b} steps" for b in BUDGETS) + " |")
    print("| --- | ---: | " + " | ".join("---:" for _ in BUDGETS) + " |")
    for sampler, (reference, tuning) in errors["pilots"].items():
        print(f"| {sampler} | {reference} | " + " | ".join(str(n) for n in tuning) + " |")

    print("\n### Best of each library per NFE\n")
    print("| NFE | multidiff best | error | pilot cost (calls) | diffusers best | error | ratio | target (<= 0.5) "
          "| multidiff best without pilot | error | ratio |")
    print("| ---: | --- | ---: | ---: | --- | ---: | ---: | --- | --- | ---: | ---: |")
    for k, budget in enumerate(BUDGETS):
        best = {}
        for library, name, setting, errs in rows:
            for group in (library, "no pilot") if setting != "pilot" and library == "multidiff" else (library,):
                if group not in best or errs[k][0] < best[group][0]:
                    best[group] = (errs[k][0], f"{name} ({setting})", name, setting)
        ours, theirs, plain = best["multidiff"], best["diffusers"], best["no pilot"]
        cost = "-"
        if ours[3] == "pilot":
            reference, tuning = errors["pilots"][ours[2]]
            cost = f"{reference} + {tuning[k]}"
        ratio = ours[0] / theirs[0]
        verdict = ("met" if ratio <= 0.5 else "missed") if budget in TARGET_BUDGETS else "-"
        print(f"| {budget} | {ours[1]} | {ours[0]:.2e} | {cost} | {theirs[1]} | {theirs[0]:.2e} | {ratio:.2f} | "
              f"{verdict} | {plain[1]} | {plain[0]:.2e} | {plain[0] / theirs[0]:.2f} |")

    print_overhead(overhead)
    print(f"\n(benchmark wall time {seconds:.0f} s)")


def print_overhead(overhead: list) -> None:
    if not overhead:
        return
    print(f"\n### Sampler overhead per network call (us), free network, batch {OVERHEAD_SHAPE}, "
          f"{OVERHEAD_STEPS} steps, float32, {torch.get_num_threads()} thread(s)\n")
    print("| multidiff sampler | us / call | diffusers scheduler | us / call | ratio |")
    print("| --- | ---: | --- | ---: | ---: |")
    for sampler, ours, label, theirs in overhead:
        print(f"| {sampler} | {ours:.0f} | {label} | {theirs:.0f} | {ours / theirs:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples and repeats (about a minute)")
    parser.add_argument("--overhead-only", action="store_true", help="only the per-call overhead table")
    parser.add_argument("--errors-only", action="store_true", help="only the error tables")
    args = parser.parse_args()
    torch.set_num_threads(1)   # steadier timings on a shared machine; both libraries get the same
    logging.getLogger("diffusers").setLevel(logging.ERROR)       # "lower_order_final set to True" notices
    warnings.filterwarnings("ignore", category=FutureWarning)   # algorithm_type dpmsolver is deprecated
    begin = time.perf_counter()
    if args.overhead_only:
        print_overhead(overhead_table(repeats=3 if args.quick else 7))
        return
    errors = error_tables(n_samples=200 if args.quick else 1000, pilot_batch=64 if args.quick else 256)
    if args.errors_only:
        print_report(errors, [], time.perf_counter() - begin)
        return
    overhead = overhead_table(repeats=3 if args.quick else 7)
    print_report(errors, overhead, time.perf_counter() - begin)


if __name__ == "__main__":
    main()
