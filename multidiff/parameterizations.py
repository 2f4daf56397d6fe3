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

A prediction is an object, like a schedule: ``get("v")``, ``get("edm", sigma_data=1.0)`` or
``EDMPrediction(sigma_data=1.0)``; ``get`` passes an object through. Each owns its network-input
scaling, the coefficients that turn its output into x0, its training target, its x0 error scale and
whether it needs alpha > 0. ``Denoiser`` wraps a network with one.
"""
from __future__ import annotations

import math

import torch

from . import named
from .schedules import Schedule


def _expand(c: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(B,) coefficients -> broadcastable against x of shape (B, ...)."""
    return c.reshape(-1, *([1] * (x.ndim - 1)))


def _like(c: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(B,) coefficients -> broadcastable against x, in x's dtype."""
    return _expand(c, x).to(x.dtype)


class Prediction:
    """Base class. Coefficients are float64 (B,) tensors of alpha and sigma (B,).

    ``input_scale``: c_in, the network sees c_in x_t (None: x_t itself). ``x0_coefficients`` and
    ``to_x0``: x0_hat from x_t and the network output ``out``; ``to_x0`` takes the coefficients as
    Python numbers or as tensors broadcastable against x_t, and never changes x_t or out.
    ``target``: what the network should output for x0 noised with ``noise``. ``x0_error_scale``: f
    with |x0_hat - x0| = f |out - target| (to weight losses). ``needs_alpha``: x0_hat divides by alpha.
    """

    name = ""
    needs_alpha = False

    def input_scale(self, alpha: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor | None:
        return None

    def x0_coefficients(self, alpha: torch.Tensor, sigma: torch.Tensor) -> tuple[torch.Tensor, ...]:
        raise NotImplementedError

    def to_x0(self, x_t: torch.Tensor, out: torch.Tensor, *coefficients) -> torch.Tensor:
        raise NotImplementedError

    def target(self, x0: torch.Tensor, noise: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def x0_error_scale(self, alpha: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class EpsPrediction(Prediction):
    """The network predicts the noise: x0 = (x_t - sigma eps_hat) / alpha (DDPM)."""

    name = "eps"
    needs_alpha = True

    def x0_coefficients(self, alpha, sigma):
        return alpha, sigma

    def to_x0(self, x_t, out, alpha, sigma):
        d = out * sigma
        if torch.is_grad_enabled():        # autograd takes no out= (reconstruction guidance differentiates D)
            return (x_t - d).div_(alpha)
        return torch.sub(x_t, d, out=d).div_(alpha)

    def target(self, x0, noise, alpha, sigma):
        return noise

    def x0_error_scale(self, alpha, sigma):
        return sigma / alpha


class X0Prediction(Prediction):
    """The network predicts the clean data itself."""

    name = "x0"

    def x0_coefficients(self, alpha, sigma):
        return ()

    def to_x0(self, x_t, out):
        return out

    def target(self, x0, noise, alpha, sigma):
        return x0

    def x0_error_scale(self, alpha, sigma):
        return torch.ones_like(alpha)


class VPrediction(Prediction):
    """The network predicts v = alpha eps - sigma x0 (Salimans & Ho 2022): x0 = alpha x_t - sigma v_hat
    when alpha^2 + sigma^2 = 1."""

    name = "v"

    def x0_coefficients(self, alpha, sigma):
        return alpha, sigma

    def to_x0(self, x_t, out, alpha, sigma):
        return (x_t * alpha).sub_(out * sigma)

    def target(self, x0, noise, alpha, sigma):
        return _like(alpha, x0) * noise - _like(sigma, x0) * x0

    def x0_error_scale(self, alpha, sigma):
        return sigma


class EDMPrediction(Prediction):
    """Karras et al. (2022) preconditioning with data standard deviation ``sigma_data`` (the module
    docstring gives the table); the network sees c_in x_t / alpha and returns F."""

    name = "edm"
    needs_alpha = True

    def __init__(self, sigma_data: float = 0.5):
        if not sigma_data > 0:
            raise ValueError(f"edm prediction needs sigma_data > 0, got {sigma_data}")
        self.sigma_data = float(sigma_data)

    def preconditioning(self, alpha: torch.Tensor, sigma: torch.Tensor):
        """(c_skip, c_out, c_in) of the paper's table 1 at s = sigma / alpha; float64 (B,) tensors."""
        s = sigma / alpha
        total = s * s + self.sigma_data**2
        return self.sigma_data**2 / total, s * self.sigma_data / total.sqrt(), 1.0 / total.sqrt()

    def input_scale(self, alpha, sigma):
        return self.preconditioning(alpha, sigma)[2] / alpha

    def x0_coefficients(self, alpha, sigma):
        c_skip, c_out, _ = self.preconditioning(alpha, sigma)
        return alpha, c_skip, c_out

    def to_x0(self, x_t, out, alpha, c_skip, c_out):
        return (x_t / alpha).mul_(c_skip).add_(out * c_out)

    def target(self, x0, noise, alpha, sigma):
        c_skip, c_out, _ = self.preconditioning(alpha, sigma)
        x_tilde = x0 + _like(sigma / alpha, x0) * noise
        return (x0 - _like(c_skip, x0) * x_tilde) / _like(c_out, x0)

    def x0_error_scale(self, alpha, sigma):
        return self.preconditioning(alpha, sigma)[1]

    def __repr__(self) -> str:
        return f"EDMPrediction(sigma_data={self.sigma_data})"


PREDICTIONS = {cls.name: cls for cls in (EpsPrediction, X0Prediction, VPrediction, EDMPrediction)}


def names() -> list[str]:
    """The prediction names that ``get`` accepts."""
    return list(PREDICTIONS)


def get(prediction, **params) -> Prediction:
    """A prediction by name (``params`` go to its constructor), or a Prediction passed through."""
    return named.build(prediction, PREDICTIONS, Prediction, "prediction", params)


class Denoiser:
    """Wraps ``model(x_in, t, cond)`` into D(x_t, t, cond) -> x0_hat for a schedule and a prediction
    (a ``Prediction`` or its name).

    The network may run in any precision; its output is taken to float32 (float64 when x_t is
    float64) before the combination, so sampler arithmetic never happens in bf16/fp16. A network
    output of the wrong shape, or containing NaN/Inf, raises a ValueError naming the time.

    A sampler calls with one time shared by the batch; ``prepare(times)`` evaluates the schedule
    at all of them at once, and such calls then look their coefficients up as Python numbers. The
    conversion to x0 keeps the rounding of the plain formulas (a fused a x + b y rounds differently,
    enough to move the pilot placement search), reusing its temporaries in place.
    """

    def __init__(self, model, schedule: Schedule, prediction):
        self.model = model
        self.schedule = schedule
        self.prediction = get(prediction)
        self._prepared: dict[float, tuple] = {}

    def prepare(self, times: torch.Tensor) -> None:
        """Precompute the coefficients at ``times``, given in the dtype the calls will pass t in."""
        coefficients = self._coefficients(*self.schedule.levels(times.double())[:2])
        columns = [c.tolist() if c is not None else [None] * len(times) for c in coefficients]
        self._prepared.update(zip(times.tolist(), zip(*columns)))

    def network_input(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """What the network sees for x_t at times t (B,)."""
        alpha, sigma = self.schedule.levels(t.double())[:2]
        c_in = self.prediction.input_scale(alpha, sigma)
        if c_in is None:
            return x_t
        self._check_alpha(alpha)
        return x_t * _like(c_in, x_t)

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor, cond=None) -> torch.Tensor:
        if t.ndim == 0:
            t = t.expand(x_t.shape[0])
        work = torch.float64 if x_t.dtype == torch.float64 else torch.float32
        c_in, *coefficients = self._coefficients_at(t, x_t, work)
        out = self.model(x_t if c_in is None else x_t * c_in, t, cond)
        if not isinstance(out, torch.Tensor) or out.shape != x_t.shape:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"the model returned shape {got} for input of shape {tuple(x_t.shape)}; "
                             f"it must return a {self.prediction.name!r} prediction of the input's shape")
        out = out.to(work)
        # NaN or Inf anywhere makes the sum non-finite; only then is the full check (about 20 times
        # dearer) needed, to tell it from a finite output whose sum overflowed.
        if not math.isfinite(out.detach().sum()) and not torch.isfinite(out).all():
            raise ValueError(f"the model returned NaN or Inf at t = {t.flatten()[0].item():.6g}")
        return self.prediction.to_x0(x_t.to(work), out, *coefficients)

    def _coefficients_at(self, t: torch.Tensor, x_t: torch.Tensor, work: torch.dtype) -> tuple:
        """(c_in, *x0 coefficients) at t: prepared Python numbers when the batch shares a prepared time,
        else tensors broadcastable against x_t (c_in in x_t's dtype, the rest in the working dtype)."""
        if self._prepared:
            values = t.tolist()
            if values.count(values[0]) == len(values) and values[0] in self._prepared:
                return self._prepared[values[0]]
        c_in, *rest = self._coefficients(*self.schedule.levels(t.double())[:2])
        return (None if c_in is None else _like(c_in, x_t), *(_expand(v, x_t).to(work) for v in rest))

    def _coefficients(self, alpha: torch.Tensor, sigma: torch.Tensor) -> tuple:
        """float64 (c_in or None, *x0 coefficients). Raises where x0 would divide by alpha = 0."""
        self._check_alpha(alpha)
        return (self.prediction.input_scale(alpha, sigma), *self.prediction.x0_coefficients(alpha, sigma))

    def _check_alpha(self, alpha: torch.Tensor) -> None:
        if self.prediction.needs_alpha and bool((alpha == 0).any()):
            raise ValueError(f"prediction {self.prediction.name!r} cannot give x0 where alpha = 0 (pure noise); "
                             "use prediction 'v' or 'x0' with a zero-terminal-SNR schedule")
