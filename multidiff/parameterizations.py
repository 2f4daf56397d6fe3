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

import math

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

    A sampler calls with one time shared by the batch; ``prepare(times)`` evaluates the schedule
    at all of them at once, and such calls then look their coefficients up as Python numbers. The
    conversion to x0 keeps the rounding of the plain formulas (a fused a x + b y rounds differently,
    enough to move the pilot placement search), reusing its temporaries in place.
    """

    def __init__(self, model, schedule: Schedule, prediction: str = "eps", sigma_data: float = 0.5):
        self.model = model
        self.schedule = schedule
        self.prediction = check_name(prediction)
        self.sigma_data = sigma_data
        self._prepared: dict[float, tuple] = {}

    def prepare(self, times: torch.Tensor) -> None:
        """Precompute the coefficients at ``times``, given in the dtype the calls will pass t in."""
        coefficients = self._coefficients(*self.schedule.levels(times.double())[:2])
        columns = [c.tolist() if c is not None else [None] * len(times) for c in coefficients]
        self._prepared.update(zip(times.tolist(), zip(*columns)))

    def network_input(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if self.prediction != "edm":
            return x_t
        c_in = self._coefficients(*self.schedule.levels(t.double())[:2])[0]
        return x_t * _expand(c_in, x_t).to(x_t.dtype)

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor, cond=None) -> torch.Tensor:
        if t.ndim == 0:
            t = t.expand(x_t.shape[0])
        work = torch.float64 if x_t.dtype == torch.float64 else torch.float32
        c_in, *coefficients = self._coefficients_at(t, x_t, work)
        out = self.model(x_t if c_in is None else x_t * c_in, t, cond)
        if not isinstance(out, torch.Tensor) or out.shape != x_t.shape:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"the model returned shape {got} for input of shape {tuple(x_t.shape)}; "
                             f"it must return a {self.prediction!r} prediction of the input's shape")
        out = out.to(work)
        # NaN or Inf anywhere makes the sum non-finite; only then is the full check (about 20 times
        # dearer) needed, to tell it from a finite output whose sum overflowed.
        if not math.isfinite(out.sum()) and not torch.isfinite(out).all():
            raise ValueError(f"the model returned NaN or Inf at t = {t.flatten()[0].item():.6g}")
        x_t, (a, b, c) = x_t.to(work), coefficients
        if self.prediction == "x0":
            return out
        if self.prediction == "eps":                                  # (x_t - s out) / a
            d = out * b
            return torch.sub(x_t, d, out=d).div_(a)
        if self.prediction == "v":                                    # a x_t - s out
            return (x_t * a).sub_(out * b)
        return (x_t / a).mul_(b).add_(out * c)                        # c_skip (x_t / a) + c_out out

    def _coefficients_at(self, t: torch.Tensor, x_t: torch.Tensor, work: torch.dtype) -> tuple:
        """(c_in, a, b, c) at t (see ``_coefficients``): prepared Python numbers when the batch shares a prepared time, else
        tensors broadcastable against x_t (c_in in x_t's dtype, cx and cy in the working dtype)."""
        if self._prepared:
            values = t.tolist()
            if values.count(values[0]) == len(values) and values[0] in self._prepared:
                return self._prepared[values[0]]
        c_in, *rest = self._coefficients(*self.schedule.levels(t.double())[:2])
        return (None if c_in is None else _expand(c_in, x_t).to(x_t.dtype),
                *(None if v is None else _expand(v, x_t).to(work) for v in rest))

    def _coefficients(self, alpha: torch.Tensor, sigma: torch.Tensor) -> tuple:
        """float64 (c_in or None, a, b, c): the network sees c_in x_t, and eps and v use (alpha, sigma),
        edm (alpha, c_skip, c_out), x0 nothing. Raises where eps or edm would divide by alpha = 0."""
        if self.prediction in ("eps", "edm") and bool((alpha == 0).any()):
            raise ValueError(f"prediction {self.prediction!r} cannot give x0 where alpha = 0 (pure noise); "
                             "use prediction 'v' or 'x0' with a zero-terminal-SNR schedule")
        if self.prediction == "x0":
            return None, None, None, None
        if self.prediction in ("eps", "v"):
            return None, alpha, sigma, None
        c_skip, c_out, c_in = edm_coefficients(alpha, sigma, self.sigma_data)
        return c_in / alpha, alpha, c_skip, c_out
