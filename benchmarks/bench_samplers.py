"""multidiff's samplers beside diffusers' schedulers: ODE error at equal network calls, and step overhead.

Run: ``python benchmarks/bench_samplers.py`` (about 3 minutes on 2 CPU cores; ``--quick`` for less).

Error. An analytic Gaussian mixture (``multidiff.analytic``) stands in for a perfectly trained eps
network on the DDPM "linear" schedule (1000 training steps), so the exact probability-flow ODE solution
from each starting noise is known. Every sampler starts from the same noise at t = 1 and gets the same
budget of network calls (NFE, not steps: Heun's N steps cost 2N - 1 calls, so it gets the most steps
that fit); the table gives the RMS over samples and coordinates of (result - exact solution).
diffusers' schedulers get the exact eps at the noise level they mean at each call (see
``diffusers_peer``), in the settings their docs recommend; the best setting is picked per NFE.
multidiff's "pilot" rows use ``multidiff.pilot_steps`` fitted on separate pilot noises; its network
calls are a one-off cost, listed in their own table.

Overhead. A free network (a constant eps) on a (16, 3, 64, 64) batch: the wall time of a whole
20-step run divided by its network calls, median of repeats, multidiff.sample against the
set_timesteps + scale_model_input + step loop of diffusers. Only the sampler's own arithmetic and
bookkeeping are left.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import diffusers_peer  # noqa: E402

import multidiff  # noqa: E402
from multidiff import pilot_steps, samplers, schedules  # noqa: E402
from multidiff.analytic import GaussianMixture  # noqa: E402
from multidiff.sampling import DEFAULT_PLACEMENT  # noqa: E402

BUDGETS = (5, 10, 20, 50)
TARGET_BUDGETS = (5, 10, 20)
STOCHASTIC = ("ddpm", "euler_ancestral", "dpmpp_2m_sde")   # they follow the SDE, not the ODE
PILOT_SAMPLERS = ("dpmpp_2m", "dpmpp_3m", "unipc")
DIM, MODES = 64, 8
OVERHEAD_SHAPE, OVERHEAD_STEPS = (16, 3, 64, 64), 20
# multidiff sampler -> the diffusers setting with the same update rule, for the overhead table
OVERHEAD_PEERS = {"ddim": "DDIM (trailing)", "heun": "HeunDiscrete (karras)",
                  "dpmpp_2m": "DPMSolverMultistep 2M (lu_lambdas)", "dpmpp_3m": "DPMSolverMultistep 3M (lu_lambdas)",
                  "unipc": "UniPCMultistep order 2 (linspace)"}


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
    exact = mix.ode_solution(noise, schedule, rtol=1e-9, atol=1e-9)
    start = noise * float(schedule.sigma(torch.tensor(1.0, dtype=torch.float64)))

    def rms(x: torch.Tensor) -> float:
        return float((x.to(torch.float64) - exact).pow(2).mean().sqrt())

    rows, pilots = [], {}
    for sampler in samplers.names():
        if sampler in STOCHASTIC:
            continue
        errors = []
        for budget in BUDGETS:
            steps = steps_for(sampler, budget)
            x = multidiff.sample(model, noise.shape, schedule=schedule, sampler=sampler, steps=steps, noise=noise)
            errors.append((rms(x), nfe_of(sampler, steps)))
        rows.append(("multidiff", sampler, DEFAULT_PLACEMENT[sampler], errors))
    for sampler in PILOT_SAMPLERS:
        pilot = pilot_steps.fit(model, (pilot_batch, DIM), schedule=schedule, sampler=sampler,
                                generator=torch.Generator().manual_seed(3))
        errors, tuning = [], []
        for budget in BUDGETS:
            before = pilot.nfe
            pilot(schedule, budget)
            tuning.append(pilot.nfe - before)
            x = multidiff.sample(model, noise.shape, schedule=schedule, sampler=sampler, steps=budget, noise=noise,
                                 placement="pilot")
            errors.append((rms(x), budget))
        rows.append(("multidiff", sampler, "pilot", errors))
        pilots[sampler] = (pilot.reference_nfe, tuning)

    def eps_at(x: torch.Tensor, alpha: float, sigma: float) -> torch.Tensor:
        x0 = mix.posterior_mean(x.to(torch.float64), alpha, sigma)
        return ((x.to(torch.float64) - alpha * x0) / sigma).to(x.dtype)

    for config in diffusers_peer.CONFIGS:
        errors = []
        for budget in BUDGETS:
            x, calls = diffusers_peer.sample(config, start, eps_at, budget)
            errors.append((rms(x), calls))
        rows.append(("diffusers", config.family, config.setting, errors))
    return dict(rows=rows, pilots=pilots, n_samples=n_samples, pilot_batch=pilot_batch)


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
    print(f"### ODE error at equal NFE (RMS vs the exact solution, {errors['n_samples']} samples)\n")
    print(f"Gaussian mixture: {MODES} modes in D = {DIM}, DDPM linear schedule (1000 steps), eps prediction, "
          "float32 state. A number in brackets is the NFE actually used when a budget does not fit.\n")
    print("| library | sampler | placement / setting | " + " | ".join(f"NFE {b}" for b in BUDGETS) + " |")
    print("| --- | --- | --- | " + " | ".join("---:" for _ in BUDGETS) + " |")
    for library, name, setting, errs in rows:
        cells = " | ".join(cell(e, n, b) for (e, n), b in zip(errs, BUDGETS))
        print(f"| {library} | {name} | {setting} | {cells} |")

    print(f"\n### Pilot cost (one-off, network calls on a batch of {errors['pilot_batch']} pilot noises)\n")
    print("| sampler | reference solve | " + " | ".join(f"tuning for {b} steps" for b in BUDGETS) + " |")
    print("| --- | ---: | " + " | ".join("---:" for _ in BUDGETS) + " |")
    for sampler, (reference, tuning) in errors["pilots"].items():
        print(f"| {sampler} | {reference} | " + " | ".join(str(n) for n in tuning) + " |")

    print("\n### Best of each library per NFE\n")
    print("| NFE | multidiff best | error | diffusers best | error | ratio | target (<= 0.5) "
          "| multidiff best without pilot | error | ratio |")
    print("| ---: | --- | ---: | --- | ---: | ---: | --- | --- | ---: | ---: |")
    for k, budget in enumerate(BUDGETS):
        best = {}
        for library, name, setting, errs in rows:
            for group in (library, "no pilot") if setting != "pilot" and library == "multidiff" else (library,):
                if group not in best or errs[k][0] < best[group][0]:
                    best[group] = (errs[k][0], f"{name} ({setting})")
        ours, theirs, plain = best["multidiff"], best["diffusers"], best["no pilot"]
        ratio = ours[0] / theirs[0]
        verdict = ("met" if ratio <= 0.5 else "missed") if budget in TARGET_BUDGETS else "-"
        print(f"| {budget} | {ours[1]} | {ours[0]:.2e} | {theirs[1]} | {theirs[0]:.2e} | {ratio:.2f} | {verdict} "
              f"| {plain[1]} | {plain[0]:.2e} | {plain[0] / theirs[0]:.2f} |")

    print_overhead(overhead)
    print(f"\n(benchmark wall time {seconds:.0f} s)")


def print_overhead(overhead: list) -> None:
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
    args = parser.parse_args()
    torch.set_num_threads(1)   # steadier timings on a shared machine; both libraries get the same
    begin = time.perf_counter()
    if args.overhead_only:
        print_overhead(overhead_table(repeats=3 if args.quick else 7))
        return
    errors = error_tables(n_samples=200 if args.quick else 1000, pilot_batch=64 if args.quick else 256)
    overhead = overhead_table(repeats=3 if args.quick else 7)
    print_report(errors, overhead, time.perf_counter() - begin)


if __name__ == "__main__":
    main()
