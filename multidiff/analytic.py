"""A Gaussian mixture whose denoiser and probability-flow ODE are known in closed form.

It stands in for a perfectly trained network: ``GaussianMixture.model(prediction, schedule)`` returns the
exact output of a network trained for that prediction (eps, x0, v, edm), and ``ode_solution`` integrates
the probability-flow ODE to round-off, so samplers can be checked against the answer they approximate,
with no training.

Conventions. ``x_t = alpha(t) x0 + sigma(t) noise`` with x0 drawn from the mixture
``sum_k w_k N(mu_k, s_k^2 I_D)``. The posterior mean E[x0 | x_t] only depends on x_t / alpha and on
``sigma~ = sigma / alpha``, and so does the probability-flow ODE: every schedule traces the same path in
(x / alpha, sigma~), only the clock differs. ``ode_solution`` integrates it in the variance-preserving
angle theta = atan(sigma~) with y = x / sqrt(alpha^2 + sigma^2) (so y = x0 at theta = 0 and y = noise at
theta = pi/2), where it reads dy/dtheta = cos(theta) eps_hat(y) - sin(theta) x0_hat(y): bounded on the
closed interval, so zero-terminal-SNR schedules (sigma~ infinite at t = 1) need no special case.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from scipy.integrate import solve_ivp
from torch import Tensor

from . import parameterizations


class GaussianMixture:
    """Mixture ``sum_k weights[k] N(means[k], stds[k]^2 I)`` in D dimensions (all float64).

    weights: (K,) non-negative, normalised here; means: (K, D) (or (K,) for D = 1); stds: (K,) positive.
    """

    def __init__(self, weights, means, stds):
        w = torch.as_tensor(weights, dtype=torch.float64)
        mu = torch.as_tensor(means, dtype=torch.float64)
        s = torch.as_tensor(stds, dtype=torch.float64)
        if mu.ndim == 1:
            mu = mu[:, None]
        if w.ndim != 1 or mu.ndim != 2 or s.shape != w.shape or len(mu) != len(w):
            raise ValueError(f"need weights (K,), means (K, D), stds (K,); got {tuple(w.shape)}, "
                             f"{tuple(mu.shape)}, {tuple(s.shape)}")
        if (w < 0).any() or w.sum() <= 0 or (s <= 0).any():
            raise ValueError("weights must be non-negative with a positive sum and stds positive")
        self.weights, self.means, self.stds = w / w.sum(), mu, s

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    @property
    def mean(self) -> Tensor:
        """E[x0], shape (D,)."""
        return self.weights @ self.means

    @property
    def variance(self) -> Tensor:
        """Per-coordinate Var[x0], shape (D,)."""
        second = self.weights @ (self.means**2 + self.stds[:, None] ** 2)
        return second - self.mean**2

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        """n draws, shape (n, D), float64."""
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        return self.means[k] + self.stds[k, None] * z

    def responsibilities(self, x_t: Tensor, alpha, sigma) -> Tensor:
        """p(component k | x_t), shape (N, K), via log-sum-exp. x_t (N, D); alpha, sigma scalars or (N,)."""
        x, a, s = _as_batch(x_t, alpha, sigma)
        var = a**2 * self.stds**2 + s**2                                   # (N, K)
        dist2 = ((x[:, None, :] - a[:, :, None] * self.means) ** 2).sum(-1)  # (N, K)
        logp = self.weights.log() - 0.5 * self.dim * var.log() - 0.5 * dist2 / var
        return torch.softmax(logp, dim=1)

    def posterior_mean(self, x_t: Tensor, alpha, sigma) -> Tensor:
        """E[x0 | x_t], shape (N, D), float64."""
        return self._posterior(x_t, alpha, sigma)[0]

    def _posterior(self, x_t: Tensor, alpha, sigma) -> tuple[Tensor, Tensor]:
        """(E[x0 | x_t], E[noise | x_t]), both computed without dividing by alpha or sigma."""
        x, a, s = _as_batch(x_t, alpha, sigma)
        r = self.responsibilities(x, a[:, 0], s[:, 0])                    # (N, K)
        var = a**2 * self.stds**2 + s**2                                   # (N, K)
        resid = x[:, None, :] - a[:, :, None] * self.means                 # x_t - alpha mu_k, (N, K, D)
        x0 = self.means + (a * self.stds**2 / var)[..., None] * resid      # E[x0 | x_t, k]
        eps = (s / var)[..., None] * resid                                 # E[noise | x_t, k]
        return (r[..., None] * x0).sum(1), (r[..., None] * eps).sum(1)

    def model(self, prediction, schedule):
        """A callable ``model(x_t, t, cond)`` returning the exact ``prediction`` (a name or a
        ``multidiff.parameterizations`` object): its training target at the posterior means
        E[x0 | x_t] and E[noise | x_t], exact because every target is linear in (x0, noise).

        x_t is (B, ...) in any float dtype; its trailing dims are flattened and split into chunks of D,
        each an independent draw (so a 1-D mixture serves any shape). The answer has x_t's shape and dtype.
        The input is the network input (c_in x_t for edm), as ``multidiff.parameterizations.Denoiser`` gives it.
        """
        prediction = parameterizations.get(prediction)

        def exact(x_t: Tensor, t: Tensor, cond=None) -> Tensor:
            batch = x_t.shape[0]
            flat = x_t.detach().to(torch.float64).reshape(batch, -1)
            if flat.shape[1] % self.dim:
                raise ValueError(f"input of {flat.shape[1]} values per example is not a multiple of D={self.dim}")
            per = flat.shape[1] // self.dim
            t64 = t.detach().to(torch.float64).reshape(-1).expand(batch).cpu()
            a = schedule.alpha(t64).to(flat.device).repeat_interleave(per)
            s = schedule.sigma(t64).to(flat.device).repeat_interleave(per)
            x = flat.reshape(batch * per, self.dim)
            c_in = prediction.input_scale(a, s)
            if c_in is not None:
                x = x / c_in[:, None]
            x0, eps = self._on(x.device)._posterior(x, a, s)
            return prediction.target(x0, eps, a, s).reshape(x_t.shape).to(x_t.dtype)

        return exact

    def ode_solution(self, noise: Tensor, schedule, t_start: float = 1.0, rtol: float = 1e-10,
                     atol: float = 1e-10, t_end: float = 0.0) -> Tensor:
        """x at t_end of the probability-flow ODE started from x = sigma(t_start) * noise at t_start.

        t_end = 0 means clean data (sigma = 0), the point a sampler's last step lands on, even for
        schedules with sigma(0) > 0 (EDM). noise: (N, D) or (N, ...) with a multiple of D values per
        example; returns that shape in float64.
        """
        shape = noise.shape
        sigma0, norm0, theta0 = _vp_coordinates(schedule, t_start)
        _, norm_end, theta_end = _vp_coordinates(schedule, t_end) if t_end else (0.0, 1.0, 0.0)
        if not theta_end <= theta0:
            raise ValueError(f"t_end = {t_end} must not exceed t_start = {t_start}")
        y_start = noise.detach().to(torch.float64).cpu().reshape(-1, self.dim) * (sigma0 / norm0)
        n = len(y_start)
        w, mu, s_k = self.weights.numpy(), self.means.numpy(), self.stds.numpy()

        def rhs(theta, y_flat):
            a, s = math.cos(theta), math.sin(theta)
            x0, eps = _posterior_np(y_flat.reshape(n, self.dim), a, s, w, mu, s_k)
            return (a * eps - s * x0).reshape(-1)

        if theta0 == theta_end:
            y_end = y_start
        else:
            sol = solve_ivp(rhs, (theta0, theta_end), y_start.numpy().reshape(-1), method="DOP853", rtol=rtol,
                            atol=atol)
            if not sol.success:
                raise RuntimeError(f"probability-flow ODE solve failed: {sol.message}")
            y_end = torch.from_numpy(sol.y[:, -1])
        return (y_end * norm_end).reshape(shape)

    def _on(self, device) -> GaussianMixture:
        if self.means.device == torch.device(device):
            return self
        moved = GaussianMixture.__new__(GaussianMixture)
        moved.weights, moved.means, moved.stds = (v.to(device) for v in (self.weights, self.means, self.stds))
        return moved


def _as_batch(x_t: Tensor, alpha, sigma) -> tuple[Tensor, Tensor, Tensor]:
    """x_t as float64 (N, D); alpha and sigma as float64 (N, 1) columns."""
    x = x_t.to(torch.float64)
    n = x.shape[0]
    a = torch.as_tensor(alpha, dtype=torch.float64, device=x.device).reshape(-1).expand(n)[:, None]
    s = torch.as_tensor(sigma, dtype=torch.float64, device=x.device).reshape(-1).expand(n)[:, None]
    return x, a, s


def _posterior_np(y: np.ndarray, a: float, s: float, w, mu, s_k):
    """(E[x0 | y], E[noise | y]) for scalar alpha = a, sigma = s, in numpy (the ODE's hot loop)."""
    var = a * a * s_k**2 + s * s                                           # (K,)
    resid = y[:, None, :] - a * mu                                         # (N, K, D)
    logp = np.log(w) - 0.5 * y.shape[1] * np.log(var) - 0.5 * (resid**2).sum(-1) / var
    logp -= logp.max(1, keepdims=True)
    r = np.exp(logp)
    r /= r.sum(1, keepdims=True)
    x0 = mu + (a * s_k**2 / var)[:, None] * resid
    eps = (s / var)[:, None] * resid
    return (r[..., None] * x0).sum(1), (r[..., None] * eps).sum(1)


def _vp_coordinates(schedule, t: float) -> tuple[float, float, float]:
    """(sigma, sqrt(alpha^2 + sigma^2), theta = atan2(sigma, alpha)) at time t; y = x / the norm."""
    t64 = torch.tensor([float(t)], dtype=torch.float64)
    a = float(schedule.alpha(t64)[0])
    s = float(schedule.sigma(t64)[0])
    return s, math.hypot(a, s), math.atan2(s, a)
