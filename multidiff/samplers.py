"""Samplers: each a plain function ``sampler(denoise, x, times, schedule, **options) -> x0``.

They consume only the data-prediction denoiser ``denoise(x, t) -> x0_hat`` (t: (B,) tensor), the
schedule's alpha(t), sigma(t) (and, for Heun's churn, t_from_logsnr), a falling list of times ending at 0
(``multidiff.steps``) and the starting x = sigma(times[0]) * noise. They keep no state between calls.

Notation: a = alpha, s = sigma, lam = log(a / s) (half the logSNR), h = lam_next - lam, and
sigma~ = s / a = exp(-lam), x~ = x / a: the probability-flow ODE is dx~/dsigma~ = (x~ - D) / sigma~.
Every step to a nonzero time is the sampler's own update; the last step, to t = 0, returns the
denoiser's prediction at the last nonzero time (EDM, k-diffusion and DPM-Solver all end this way).

The state x stays in its own dtype (float32 or float64); coefficients are float64 Python numbers; the
denoiser returns float32 or float64 whatever the network's precision. Each update is written as one
linear combination of whole tensors (``_combination``: one pass over the batch per term, into a new
tensor), with its coefficients worked out in Python numbers; no tensor the sampler received is changed.

NFE (network evaluations) for N = len(times) - 1 steps: N for every sampler except heun, which takes
2N - 1 (no correction on the last step), one fewer when it starts at sigma~ = inf.

Every sampler takes ``step_hook(x, i) -> x``, called on each state it reaches at times[i] (i >= 1)
before evaluating there; editing's resampling jumps use it (``multidiff.editing``). It defaults to
leaving x as it is.

Stochastic samplers take ``noise``: a function returning a fresh standard-normal tensor like x
(``multidiff.sampling`` draws it per sample, so a seeded sample does not depend on its batch).

A step from sigma~ = inf (zero-terminal-SNR schedules at t = 1) has no finite length in lam or sigma~;
every sampler takes it as its h -> inf limit, the DDIM step x = a_next D + s_next x / s, and no
multistep sampler keeps that prediction as history.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

Denoise = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Noise = Callable[[], torch.Tensor]
StepHook = Callable[[torch.Tensor, int], torch.Tensor]


def _unchanged(x: torch.Tensor, i: int) -> torch.Tensor:
    return x


def _levels(schedule, times: torch.Tensor):
    """alpha, sigma, lam = log(alpha / sigma) and sigma~ at every nonzero time, as float64 Python lists."""
    alpha, sigma, logsnr = schedule.levels(times[:-1].to(torch.float64).cpu())
    lam = 0.5 * logsnr
    return alpha.tolist(), sigma.tolist(), lam.tolist(), torch.exp(-lam).tolist()


def _denoised(denoise: Denoise, x: torch.Tensor, t: float) -> torch.Tensor:
    return denoise(x, torch.full((x.shape[0],), t, dtype=x.dtype, device=x.device))


def _combination(*terms: tuple[float, torch.Tensor]) -> torch.Tensor:
    """sum c y over (c, y) terms, as a new tensor: one fused pass per term."""
    (c, y), *rest = terms
    out = y * c
    for c, y in rest:
        out.add_(y, alpha=c)
    return out


def _needs_noise(noise: Noise | None, why: str) -> None:
    if noise is None:
        raise ValueError(f"{why} draws fresh noise: pass noise=, a function returning standard-normal tensors like x")


def ddim(denoise: Denoise, x, times, schedule, *, eta: float = 0.0, noise: Noise | None = None,
         step_hook: StepHook = _unchanged):
    """DDIM (Song et al. 2021, eq. 12) in (alpha, sigma) form; eta = 0 deterministic, eta = 1 ancestral.

    x_next = a_next D + sqrt(s_next^2 - c^2) eps + c z,  eps = (x - a D) / s,
    c = eta s_next sqrt(1 - exp(-2h)) (the paper's sigma_t(eta), written for any schedule).
    """
    if eta:
        _needs_noise(noise, f"ddim with eta={eta}")
    a, s, lam, _ = _levels(schedule, times)
    ts = times.tolist()
    for i in range(len(ts) - 2):
        d = _denoised(denoise, x, ts[i])
        c = eta * s[i + 1] * math.sqrt(-math.expm1(-2 * (lam[i + 1] - lam[i])))
        k = math.sqrt(max(s[i + 1] ** 2 - c * c, 0.0)) / s[i]            # eps = (x - a D) / s enters as k s eps
        x = _combination((k, x), (a[i + 1] - k * a[i], d))
        if c:
            x.add_(noise(), alpha=c)
        x = step_hook(x, i + 1)
    return _denoised(denoise, x, ts[-2])


def ddpm(denoise: Denoise, x, times, schedule, *, noise: Noise | None = None, step_hook: StepHook = _unchanged):
    """Ancestral sampling from DDPM's posterior q(x_next | x, x0 = D) (Ho et al. 2020, eqs. 6-7).

    With a_ts = a / a_next and var_ts = s^2 - a_ts^2 s_next^2 (the forward step from t_next to t):
    mean = a_ts s_next^2 / s^2 x + a_next var_ts / s^2 D, variance = var_ts s_next^2 / s^2
    (diffusers' "fixed_small"). Identical in law and in arithmetic outcome to ddim with eta = 1.
    """
    _needs_noise(noise, "ddpm")
    a, s, _, _ = _levels(schedule, times)
    ts = times.tolist()
    for i in range(len(ts) - 2):
        d = _denoised(denoise, x, ts[i])
        x = step_hook(ancestral_step(x, d, a[i], s[i], a[i + 1], s[i + 1], noise()), i + 1)
    return _denoised(denoise, x, ts[-2])


def ancestral_step(x, d, a: float, s: float, a_next: float, s_next: float, z: torch.Tensor) -> torch.Tensor:
    """One draw from DDPM's posterior q(x_next | x, x0 = d) at levels (a, s) -> (a_next, s_next), given
    the standard-normal z (the formulas of ``ddpm``)."""
    a_ts = a / a_next
    var_ts = s**2 - a_ts**2 * s_next**2
    return _combination((a_ts * s_next**2 / s**2, x), (a_next * var_ts / s**2, d),
                        (math.sqrt(max(var_ts, 0.0)) * (s_next / s), z))


def euler(denoise: Denoise, x, times, schedule, *, step_hook: StepHook = _unchanged):
    """Euler's method on dx~/dsigma~ = (x~ - D) / sigma~ (Karras et al. 2022; k-diffusion's sample_euler).

    x~_next = x~ + (sigma~_next - sigma~) d with d = (x~ - D) / sigma~, written as D + sigma~_next d so
    that sigma~ = inf works. Step for step the same as ddim with eta = 0.
    """
    a, s, _, st = _levels(schedule, times)
    ts = times.tolist()
    for i in range(len(ts) - 2):
        d = _denoised(denoise, x, ts[i])
        k = a[i + 1] * st[i + 1] / s[i]                    # slope = (x~ - D) / sigma~ = (x - a D) / s
        x = step_hook(_combination((k, x), (a[i + 1] - k * a[i], d)), i + 1)
    return _denoised(denoise, x, ts[-2])


def euler_ancestral(denoise: Denoise, x, times, schedule, *, eta: float = 1.0, noise: Noise | None = None,
                    step_hook: StepHook = _unchanged):
    """k-diffusion's sample_euler_ancestral in x~: an Euler step down to sigma_down, then noise sigma_up.

    sigma_up = min(sigma~_next, eta sigma~_next sqrt(1 - (sigma~_next / sigma~)^2)),
    sigma_down = sqrt(sigma~_next^2 - sigma_up^2). With eta = 1 it is ddpm.
    """
    if eta:
        _needs_noise(noise, f"euler_ancestral with eta={eta}")
    a, s, _, st = _levels(schedule, times)
    ts = times.tolist()
    for i in range(len(ts) - 2):
        d = _denoised(denoise, x, ts[i])
        up = min(st[i + 1], eta * st[i + 1] * math.sqrt(1 - (st[i + 1] / st[i]) ** 2))
        down = math.sqrt(st[i + 1] ** 2 - up**2)
        k = a[i + 1] * down / s[i]                         # slope = (x - a D) / s
        x = _combination((k, x), (a[i + 1] - k * a[i], d))
        if up:
            x.add_(noise(), alpha=a[i + 1] * up)
        x = step_hook(x, i + 1)
    return _denoised(denoise, x, ts[-2])


def heun(denoise: Denoise, x, times, schedule, *, s_churn: float = 0.0, s_tmin: float = 0.0,
         s_tmax: float = math.inf, s_noise: float = 1.0, noise: Noise | None = None, step_hook: StepHook = _unchanged):
    """EDM's 2nd-order sampler (Karras et al. 2022, Algorithm 2) in x~ = x / alpha, sigma~.

    Where s_tmin <= sigma~ <= s_tmax, "churn" first raises sigma~ by gamma = min(s_churn / N, sqrt(2) - 1)
    adding s_noise-scaled fresh noise; the raised level is mapped back to a time (capped at t = 1, the
    noise added matches the level reached). Then an Euler step and, unless the next time is 0, the
    trapezoidal correction. NFE 2N - 1.
    """
    if s_churn:
        _needs_noise(noise, f"heun with s_churn={s_churn}")
    a, s, _, st = _levels(schedule, times)
    ts = times.tolist()
    n = len(ts) - 1
    gamma = min(s_churn / n, math.sqrt(2) - 1)
    for i in range(n):
        x, t, a_hat, s_hat, st_hat = step_hook(x, i) if i else x, ts[i], a[i], s[i], st[i]
        if gamma and s_tmin <= st[i] <= s_tmax and math.isfinite(st[i]):
            raised = torch.tensor(-2 * math.log(st[i] * (1 + gamma)), dtype=torch.float64)
            t_hat = schedule.t_from_logsnr(raised).reshape(1)
            t, a_hat, s_hat = float(t_hat), float(schedule.alpha(t_hat)), float(schedule.sigma(t_hat))
            st_hat = s_hat / a_hat
            x = _combination((a_hat / a[i], x), (a_hat * math.sqrt(max(st_hat**2 - st[i] ** 2, 0.0)) * s_noise, noise()))
        d = _denoised(denoise, x, t)
        if i == n - 1:
            return d
        # Euler to x_euler = a_next (D + sigma~_next slope), slope = (x~ - D) / sigma~ = (x - a D) / s
        k = a[i + 1] * st[i + 1] / s_hat
        x_euler = _combination((k, x), (a[i + 1] - k * a_hat, d))
        if not math.isfinite(st_hat):
            x = x_euler
            continue
        # a_next (x~ + (sigma~_next - sigma~) (slope + slope_next) / 2), slope_next = (x_euler / a_next - D_next) / sigma~_next
        d_next = _denoised(denoise, x_euler, ts[i + 1])
        half = 0.5 * (st[i + 1] - st_hat)
        k, k_next = a[i + 1] * half / s_hat, half / st[i + 1]
        x = _combination((a[i + 1] / a_hat + k, x), (-k * a_hat, d), (k_next, x_euler), (-a[i + 1] * k_next, d_next))


def dpmpp_2m(denoise: Denoise, x, times, schedule, *, step_hook: StepHook = _unchanged):
    """DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2), k-diffusion's form with variable steps.

    x_next = (s_next / s) x - a_next expm1(-h) D', D' = (1 + 1/(2r)) D - 1/(2r) D_prev, r = h_prev / h.
    """
    a, s, lam, _ = _levels(schedule, times)
    ts = times.tolist()
    prev = None                                              # (D, h) of the previous step
    for i in range(len(ts) - 2):
        d = _denoised(denoise, x, ts[i])
        h = lam[i + 1] - lam[i]
        gain = -a[i + 1] * math.expm1(-h)
        if prev is None:
            x = _combination((s[i + 1] / s[i], x), (gain, d))
        else:
            r = h / (2 * prev[1])
            x = _combination((s[i + 1] / s[i], x), (gain * (1 + r), d), (-gain * r, prev[0]))
        prev = (d, h) if math.isfinite(h) else None
        if (moved := step_hook(x, i + 1)) is not x:        # a state the hook moved starts a new history
            x, prev = moved, None
    return _denoised(denoise, x, ts[-2])


def dpmpp_3m(denoise: Denoise, x, times, schedule, *, step_hook: StepHook = _unchanged):
    """DPM-Solver++(3M), third order after two warm-up steps (exact phi functions, variable steps).

    x~ changes by the integral of e^-(h - u) D(lam + u) over [0, h]; with D's Taylor terms that is
    (1 - e^-h) D + phi2 h D' - phi3 h^2 D'' where phi2 = expm1(-h)/h + 1, phi3 = phi2/h - 1/2.
    d1 ~ h D' and d2 ~ h^2 D'' / 2 are divided differences over the last three predictions, so the last
    term is -2 phi3 d2. (k-diffusion's sample_dpmpp_3m_sde and diffusers' third-order update use
    -phi3 d2, which is not exact for quadratic D and measures second order on the analytic mixture.)
    """
    a, s, lam, _ = _levels(schedule, times)
    ts = times.tolist()
    history: list[tuple[torch.Tensor, float]] = []           # (D, h) of earlier steps, newest first
    for i in range(len(ts) - 2):
        d = _denoised(denoise, x, ts[i])
        h = lam[i + 1] - lam[i]
        terms = [(s[i + 1] / s[i], x), (-a[i + 1] * math.expm1(-h), d)]
        phi2 = math.expm1(-h) / h + 1 if math.isfinite(h) else 1.0
        if len(history) >= 2:
            # phi2 d1 - 2 phi3 d2 = p0 diff0 + p1 diff1 with diff0 = (D - D_1) / r0, diff1 = (D_1 - D_2) / r1
            (d1_prev, h1), (d2_prev, h2) = history[:2]
            r0, r1 = h1 / h, h2 / h
            phi3 = phi2 / h - 0.5
            p0 = phi2 * (1 + r0 / (r0 + r1)) - 2 * phi3 / (r0 + r1)
            p1 = -phi2 * r0 / (r0 + r1) + 2 * phi3 / (r0 + r1)
            c0, c1 = a[i + 1] * p0 / r0, a[i + 1] * p1 / r1
            terms[1] = (terms[1][0] + c0, d)
            terms += [(c1 - c0, d1_prev), (-c1, d2_prev)]
        elif history:
            d1_prev, h1 = history[0]
            c = a[i + 1] * phi2 * h / h1                    # c (D - D_1)
            terms[1] = (terms[1][0] + c, d)
            terms.append((-c, d1_prev))
        x = _combination(*terms)
        history = [(d, h)] + history[:1] if math.isfinite(h) else []
        if (moved := step_hook(x, i + 1)) is not x:        # a state the hook moved starts a new history
            x, history = moved, []
    return _denoised(denoise, x, ts[-2])


def dpmpp_2m_sde(denoise: Denoise, x, times, schedule, *, eta: float = 1.0, noise: Noise | None = None,
                 step_hook: StepHook = _unchanged):
    """DPM-Solver++(2M) SDE (k-diffusion's sample_dpmpp_2m_sde, midpoint form); eta = 0 is an ODE solver.

    x_next = (s_next / s) e^(-eta h) x + a_next (1 - e^(-(1+eta) h)) (D + (D - D_prev) / (2r))
             + s_next sqrt(1 - e^(-2 eta h)) z.
    """
    if eta:
        _needs_noise(noise, f"dpmpp_2m_sde with eta={eta}")
    a, s, lam, _ = _levels(schedule, times)
    ts = times.tolist()
    prev = None
    for i in range(len(ts) - 2):
        d = _denoised(denoise, x, ts[i])
        h = lam[i + 1] - lam[i]
        eta_h = eta * h if eta else 0.0
        gain = -a[i + 1] * math.expm1(-h - eta_h)
        terms = [(s[i + 1] / s[i] * math.exp(-eta_h), x)]
        if prev is None:
            terms.append((gain, d))
        else:
            r = h / (2 * prev[1])
            terms += [(gain * (1 + r), d), (-gain * r, prev[0])]
        if eta_h:
            terms.append((s[i + 1] * math.sqrt(-math.expm1(-2 * eta_h)), noise()))
        x = _combination(*terms)
        prev = (d, h) if math.isfinite(h) else None
        if (moved := step_hook(x, i + 1)) is not x:        # a state the hook moved starts a new history
            x, prev = moved, None
    return _denoised(denoise, x, ts[-2])


def unipc(denoise: Denoise, x, times, schedule, *, order: int = 2, variant: str = "bh2",
          step_hook: StepHook = _unchanged):
    """UniPC (Zhao et al. 2023) with data prediction: the UniP-p predictor then the UniC corrector.

    The corrector reuses the evaluation at the predicted point (no extra NFE) and raises the order by one;
    none follows the last step. ``order`` (1-3) is reached after order - 1 warm-up steps; ``variant``
    picks B(h) = h ("bh1") or e^h - 1 ("bh2"). Coefficients as in diffusers' UniPCMultistepScheduler.
    """
    if order not in (1, 2, 3):
        raise ValueError(f"unipc order must be 1, 2 or 3, got {order!r}")
    if variant not in ("bh1", "bh2"):
        raise ValueError(f"unipc variant must be 'bh1' or 'bh2', got {variant!r}")
    a, s, lam, _ = _levels(schedule, times)
    ts = times.tolist()
    history: list[tuple[float, torch.Tensor]] = []           # (lam, D) at finite lam, newest first
    start = None                                              # (x, index, order) of the last predictor step
    for i in range(len(ts) - 1):
        if i and (moved := step_hook(x, i)) is not x:       # a state the hook moved: no correction, new history
            x, start, history = moved, None, []
        d = _denoised(denoise, x, ts[i])
        if i == len(ts) - 2:
            return d
        if start is not None:                                 # UniC: correct x with the new evaluation
            x0, j, p = start
            x = _unipc_update(x0, history, lam[j], lam[i], s[j], s[i], a[i], p, variant, d_next=d)
        history = [(lam[i], d)] + history[: order - 1] if math.isfinite(lam[i]) else []
        p = max(1, min(order, len(history)))
        if history:
            x_next = _unipc_update(x, history, lam[i], lam[i + 1], s[i], s[i + 1], a[i + 1], p, variant)
        else:                                                 # from sigma~ = inf: the DDIM limit
            x_next = _combination((s[i + 1] / s[i], x), (a[i + 1], d))
        start = (x, i, p) if history else None
        x = x_next


def _unipc_update(x, history, lam0, lam_next, s0, s_next, a_next, order, variant, d_next=None):
    """One UniP step (d_next None) or UniC correction (d_next = D at the predicted point) from lam0.

    history[0] is D at lam0 (m0); history[1:order] are earlier predictions used as divided differences.
    """
    m0 = history[0][1]
    h = lam_next - lam0
    h_phi_1 = math.expm1(-h)
    x_lin = [(s_next / s0, x), (-a_next * h_phi_1, m0)]
    if order == 1 and d_next is None:
        return _combination(*x_lin)
    ratios = [(lam_k - lam0) / h for lam_k, _ in history[1:order]]
    earlier = [m_k for _, m_k in history[1:order]]          # diff_k = (m_k - m0) / r_k
    ratios.append(1.0)
    b_h = -h if variant == "bh1" else h_phi_1
    b, h_phi_k, factorial = [], h_phi_1 / -h - 1, 1
    for k in range(1, order + 1):
        b.append(h_phi_k * factorial / b_h)
        factorial *= k + 1
        h_phi_k = h_phi_k / -h - 1 / factorial
    powers = np.array([[r**k for r in ratios] for k in range(order)])
    if d_next is None:
        rhos = [0.5] if order == 2 else np.linalg.solve(powers[:-1, :-1], b[:-1]).tolist()
        corrected = list(zip(rhos, ratios, earlier))
    else:
        rhos = [0.5] if order == 1 else np.linalg.solve(powers, b).tolist()
        corrected = list(zip(rhos, ratios, earlier + [d_next]))    # the last: rho (d_next - m0), r = 1
    # x_lin - a_next b_h sum rho (m - m0) / r, regrouped per tensor
    scale = -a_next * b_h
    terms = x_lin + [(scale * rho / r, m) for rho, r, m in corrected]
    terms[1] = (terms[1][0] - sum(scale * rho / r for rho, r, _ in corrected), m0)
    return _combination(*terms)


_SAMPLERS = {fn.__name__: fn for fn in (ddpm, ddim, euler, euler_ancestral, heun, dpmpp_2m, dpmpp_3m,
                                         dpmpp_2m_sde, unipc)}


def names() -> list[str]:
    return list(_SAMPLERS)


def get(name: str):
    if name not in _SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; known: {', '.join(names())}")
    return _SAMPLERS[name]
