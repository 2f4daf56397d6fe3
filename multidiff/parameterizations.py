"""What the network predicts, and how its output becomes a data prediction.

Each parameterization turns a network into one denoiser D(x_t, t, cond) -> x0_hat, the only thing
samplers consume. With x_t = alpha x0 + sigma eps:

    eps:  network predicts eps              x0 = (x_t - sigma eps_hat) / alpha
    x0:   network predicts x0               x0 = x0_hat
    v:    network predicts v = alpha eps - sigma x0 (Salimans & Ho 2022, VP schedules)
                                            x0 = alpha x_t - sigma v_hat
    edm:  Karras et al. (2022) preconditioning in the rescaled variables x~ = x_t / alpha,
          s = sigma / alpha (s is EDM's sigma; alpha = 1 for the EDM schedule):
              c_skip = sd^2 / (s^2 + sd^2)      c_out = s sd / sqrt(s^2 + sd^2)
              c_in   = 1 / sqrt(s^2 + sd^2)     the network sees c_in x~ and the time t
          D = c_skip x~ + c_out F(c_in x~, t).

The v form is written for alpha^2 + sigma^2 = 1; for other schedules use eps, x0 or edm.
"""
from __future__ import annotations

import torch

from .schedules import Schedule

NAMES = ("eps", "x0", "v", "edm")


def names() -> list[str]:
    return list(NAMES)


def check_name(prediction: str) -> str:
    if prediction not in NAMES:
        raise ValueError(f"unknown prediction {prediction!r}; known: {', '.join(NAMES)}")
    return prediction


def _expand(c: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(B,) coefficients -> broadcastable against x of shape (B, ...)."""
    return c.reshape(-1, *([1] * (x.ndim - 1)))


def edm_coefficients(alpha: torch.Tensor, sigma: torch.Tensor, sigma_data: float = 0.5):
    """(c_skip, c_out, c_in) of EDM preconditioning in the rescaled variables; float64 (B,) tensors."""
    s = sigma / alpha
    total = s * s + sigma_data**2
    return sigma_data**2 / total, s * sigma_data / total.sqrt(), 1.0 / total.sqrt()


def training_target(prediction: str, x0, noise, alpha, sigma, sigma_data: float = 0.5) -> torch.Tensor:
    """What the network should output for clean data ``x0`` noised with ``noise`` (alpha, sigma: (B,))."""
    a, s = _expand(alpha, x0).to(x0.dtype), _expand(sigma, x0).to(x0.dtype)
    if prediction == "eps":
        return noise
    if prediction == "x0":
        return x0
    if prediction == "v":
        return a * noise - s * x0
    if prediction == "edm":
        c_skip, c_out, _ = edm_coefficients(alpha, sigma, sigma_data)
        x_tilde = x0 + _expand(sigma / alpha, x0).to(x0.dtype) * noise
        return (x0 - _expand(c_skip, x0).to(x0.dtype) * x_tilde) / _expand(c_out, x0).to(x0.dtype)
    raise ValueError(f"unknown prediction {prediction!r}; known: {', '.join(NAMES)}")


def x0_error_scale(prediction: str, alpha, sigma, sigma_data: float = 0.5) -> torch.Tensor:
    """Factor f(t) with |x0_hat - x0| = f |out - target|: converts an error in the network's target
    into the error of the data prediction it implies (used to weight losses)."""
    if prediction == "eps":
        return sigma / alpha
    if prediction == "x0":
        return torch.ones_like(alpha)
    if prediction == "v":
        return sigma
    if prediction == "edm":
        return edm_coefficients(alpha, sigma, sigma_data)[1]
    raise ValueError(f"unknown prediction {prediction!r}; known: {', '.join(NAMES)}")


class Denoiser:
    """Wraps ``model(x_in, t, cond)`` into D(x_t, t, cond) -> x0_hat for a schedule and a prediction.

    The network may run in any precision; its output is taken to float32 (float64 when x_t is
    float64) before the combination, so sampler arithmetic never happens in bf16/fp16. A network
    output of the wrong shape, or containing NaN/Inf, raises a ValueError naming the time.
    """

    def __init__(self, model, schedule: Schedule, prediction: str = "eps", sigma_data: float = 0.5):
        self.model = model
        self.schedule = schedule
        self.prediction = check_name(prediction)
        self.sigma_data = sigma_data

    def network_input(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if self.prediction != "edm":
            return x_t
        alpha, sigma = self.schedule.alpha(t.double()), self.schedule.sigma(t.double())
        c_in = edm_coefficients(alpha, sigma, self.sigma_data)[2] / alpha
        return x_t * _expand(c_in, x_t).to(x_t.dtype)

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor, cond=None) -> torch.Tensor:
        if t.ndim == 0:
            t = t.expand(x_t.shape[0])
        out = self.model(self.network_input(x_t, t), t, cond)
        if not isinstance(out, torch.Tensor) or out.shape != x_t.shape:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"the model returned shape {got} for input of shape {tuple(x_t.shape)}; "
                             f"it must return a {self.prediction!r} prediction of the input's shape")
        work = torch.float64 if x_t.dtype == torch.float64 else torch.float32
        out = out.to(work)
        if not torch.isfinite(out).all():
            raise ValueError(f"the model returned NaN or Inf at t = {t.flatten()[0].item():.6g}")
        return self.to_x0(out, x_t.to(work), t)

    def to_x0(self, out: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        alpha, sigma = self.schedule.alpha(t.double()), self.schedule.sigma(t.double())
        if self.prediction in ("eps", "edm") and bool((alpha == 0).any()):
            raise ValueError(f"prediction {self.prediction!r} cannot give x0 where alpha = 0 (pure noise); "
                             "use prediction 'v' or 'x0' with a zero-terminal-SNR schedule")
        a, s = _expand(alpha, x_t).to(x_t.dtype), _expand(sigma, x_t).to(x_t.dtype)
        if self.prediction == "eps":
            return (x_t - s * out) / a
        if self.prediction == "x0":
            return out
        if self.prediction == "v":
            return a * x_t - s * out
        c_skip, c_out, _ = edm_coefficients(alpha, sigma, self.sigma_data)
        return _expand(c_skip, x_t).to(x_t.dtype) * (x_t / a) + _expand(c_out, x_t).to(x_t.dtype) * out
