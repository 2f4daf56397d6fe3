"""Noise schedules in continuous time.

A schedule says how much signal and noise a noisy example holds at time t in [0, 1]:

    x_t = alpha(t) * x0 + sigma(t) * noise,        t = 0: clean data, t = 1: (nearly) pure noise.

Every schedule is defined by its log signal-to-noise ratio logsnr(t) = log(alpha^2 / sigma^2), which
falls strictly as t grows, and its inverse t_from_logsnr. Variance-preserving schedules have
alpha^2 + sigma^2 = 1; the variance-exploding EDM schedule has alpha = 1.

All arithmetic is float64; results come back in the input's dtype (give float64 for precision).
"""
from __future__ import annotations

import math

import torch

DEFAULT_LOGSNR_MIN = -20.0  # where capped schedules (cosine, sigmoid) stop: alpha^2 ~ 2e-9


def _as_float64(t) -> tuple[torch.Tensor, torch.dtype]:
    t = torch.as_tensor(t)
    dtype = t.dtype if t.is_floating_point() else torch.float64
    return t.to(torch.float64), dtype


class Schedule:
    """Base class: subclasses define ``_logsnr`` and ``_t_from_logsnr`` on float64 tensors."""

    name = ""
    variance_preserving = True

    def logsnr(self, t) -> torch.Tensor:
        t, dtype = _as_float64(t)
        return self._logsnr(t.clamp(0.0, 1.0)).to(dtype)

    def t_from_logsnr(self, logsnr) -> torch.Tensor:
        logsnr, dtype = _as_float64(logsnr)
        return self._t_from_logsnr(logsnr).clamp(0.0, 1.0).to(dtype)

    def levels(self, t) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(alpha(t), sigma(t), logsnr(t)) from one evaluation of logsnr, in t's dtype."""
        t, dtype = _as_float64(t)
        lam = self._logsnr(t.clamp(0.0, 1.0))
        if not self.variance_preserving:
            alpha, sigma = torch.ones_like(t), torch.exp(-0.5 * lam)
        else:
            alpha, sigma = torch.sigmoid(lam).sqrt(), torch.sigmoid(-lam).sqrt()
        return alpha.to(dtype), sigma.to(dtype), lam.to(dtype)

    def alpha(self, t) -> torch.Tensor:
        t, dtype = _as_float64(t)
        if not self.variance_preserving:
            return torch.ones_like(t).to(dtype)
        return torch.sigmoid(self._logsnr(t.clamp(0.0, 1.0))).sqrt().to(dtype)

    def sigma(self, t) -> torch.Tensor:
        t, dtype = _as_float64(t)
        lam = self._logsnr(t.clamp(0.0, 1.0))
        if not self.variance_preserving:
            return torch.exp(-0.5 * lam).to(dtype)
        return torch.sigmoid(-lam).sqrt().to(dtype)

    def _logsnr(self, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _t_from_logsnr(self, logsnr: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def interp(x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear interpolation, ``xp`` non-decreasing (torch's missing np.interp); a repeated
    ``xp`` value takes the left end of the step."""
    xp, fp = xp.to(x.device), fp.to(x.device)
    i = torch.searchsorted(xp, x.contiguous()).clamp_(1, len(xp) - 1)
    below = i - 1
    x0, x1, f0, f1 = xp.take(below), xp.take(i), fp.take(below), fp.take(i)
    w = ((x - x0) / (x1 - x0).clamp(min=1e-300)).clamp(0.0, 1.0)
    return f0 + w * (f1 - f0)


def _logsnr_from_log_alpha2(log_a2: torch.Tensor) -> torch.Tensor:
    return log_a2 - torch.log(-torch.expm1(log_a2))


def _log_alpha2_from_logsnr(logsnr: torch.Tensor) -> torch.Tensor:
    return -torch.nn.functional.softplus(-logsnr)


class DiscreteSchedule(Schedule):
    """A DDPM schedule given by its betas, exact at t = (k + 1) / T for diffusers' timestep k.

    log(alphas_cumprod) is interpolated linearly in t between the grid points, with
    alphas_cumprod = 1 at t = 0; that is exact on the grid and strictly monotone in between.
    """

    def __init__(self, alphas_cumprod: torch.Tensor, name: str = "discrete"):
        acp = torch.as_tensor(alphas_cumprod, dtype=torch.float64)
        if acp.ndim != 1 or len(acp) < 2 or not bool(((acp > 0) & (acp <= 1)).all()):
            raise ValueError("alphas_cumprod must be a 1-D sequence of values in (0, 1]")
        if not bool((acp[1:] < acp[:-1]).all()):
            raise ValueError("alphas_cumprod must fall strictly")
        self.name = name
        self.alphas_cumprod = acp
        self.num_steps = len(acp)
        self._grid_t = torch.linspace(0.0, 1.0, self.num_steps + 1, dtype=torch.float64)
        self._grid_log_a2 = torch.cat([torch.zeros(1, dtype=torch.float64), acp.log()])

    @classmethod
    def from_betas(cls, betas: torch.Tensor, name: str = "discrete") -> "DiscreteSchedule":
        betas = torch.as_tensor(betas)
        # Cumulative product in the betas' own precision, as diffusers does, so the grid matches it.
        return cls(torch.cumprod(1.0 - betas, dim=0), name=name)

    def _logsnr(self, t):
        return _logsnr_from_log_alpha2(interp(t, self._grid_t, self._grid_log_a2))

    def _t_from_logsnr(self, logsnr):
        log_a2 = _log_alpha2_from_logsnr(logsnr)
        # log alpha^2 falls with t: interpolate on the negated (increasing) grid.
        return interp(-log_a2, -self._grid_log_a2, self._grid_t)

    def __repr__(self):
        return f"DiscreteSchedule(name={self.name!r}, num_steps={self.num_steps})"


def ddpm_linear(num_steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> DiscreteSchedule:
    """DDPM's linear betas (Ho et al. 2020); alphas_cumprod identical to diffusers' ``"linear"``."""
    betas = torch.linspace(beta_start, beta_end, num_steps, dtype=torch.float32)
    return DiscreteSchedule.from_betas(betas, name="linear")


def ddpm_scaled_linear(num_steps: int = 1000, beta_start: float = 0.00085, beta_end: float = 0.012) -> DiscreteSchedule:
    """Latent/Stable Diffusion's betas, linear in sqrt(beta); identical to diffusers' ``"scaled_linear"``."""
    betas = torch.linspace(beta_start**0.5, beta_end**0.5, num_steps, dtype=torch.float32) ** 2
    return DiscreteSchedule.from_betas(betas, name="scaled_linear")


class _Capped(Schedule):
    """A continuous VP schedule whose formula reaches logSNR = -inf at t = 1.

    Time is rescaled, t -> t * t_end, so that t = 1 lands where the formula reaches ``logsnr_min``:
    the schedule stays strictly monotone and invertible, and t_end is within 1e-4 of 1.
    """

    def __init__(self, logsnr_min: float = DEFAULT_LOGSNR_MIN):
        self.logsnr_min = float(logsnr_min)
        self.t_end = float(self._raw_t(torch.tensor(self.logsnr_min, dtype=torch.float64)))

    def _logsnr(self, t):
        return self._raw_logsnr(t * self.t_end)

    def _t_from_logsnr(self, logsnr):
        return self._raw_t(logsnr.clamp(min=self.logsnr_min)) / self.t_end


class Cosine(_Capped):
    """Nichol & Dhariwal (2021): alpha^2(t) = f(t) / f(0), f(t) = cos^2(pi/2 (t + s) / (1 + s)).

    Capped at ``logsnr_min`` (default -20, about where their beta <= 0.999 clip leaves the last step).
    """

    name = "cosine"

    def __init__(self, s: float = 0.008, logsnr_min: float = DEFAULT_LOGSNR_MIN):
        self.s = float(s)
        self._log_f0 = 2.0 * math.log(math.cos(math.pi / 2 * self.s / (1 + self.s)))
        super().__init__(logsnr_min)

    def _raw_logsnr(self, t):
        log_a2 = 2.0 * torch.log(torch.cos(math.pi / 2 * (t + self.s) / (1 + self.s))) - self._log_f0
        return _logsnr_from_log_alpha2(log_a2.clamp(max=0.0))

    def _raw_t(self, logsnr):
        log_a2 = _log_alpha2_from_logsnr(logsnr)
        u = torch.acos(torch.exp(0.5 * (log_a2 + self._log_f0)).clamp(max=1.0))
        return (u * 2 / math.pi * (1 + self.s) - self.s).clamp(min=0.0)

    def __repr__(self):
        return f"Cosine(s={self.s}, logsnr_min={self.logsnr_min})"


class Sigmoid(_Capped):
    """Jabri et al. / Chen (2023) sigmoid schedule:
    alpha^2(t) = (v_end - sigmoid((t (end - start) + start) / tau)) / (v_end - v_start), v_x = sigmoid(x / tau).
    """

    name = "sigmoid"

    def __init__(self, start: float = -3.0, end: float = 3.0, tau: float = 1.0, logsnr_min: float = DEFAULT_LOGSNR_MIN):
        if not start < end or tau <= 0:
            raise ValueError(f"sigmoid schedule needs start < end and tau > 0, got {start}, {end}, {tau}")
        self.start, self.end, self.tau = float(start), float(end), float(tau)
        self.v_start = 1 / (1 + math.exp(-self.start / self.tau))
        self.v_end = 1 / (1 + math.exp(-self.end / self.tau))
        super().__init__(logsnr_min)

    def _raw_logsnr(self, t):
        s = torch.sigmoid((t * (self.end - self.start) + self.start) / self.tau)
        a2 = (self.v_end - s) / (self.v_end - self.v_start)
        return torch.log(a2) - torch.log1p(-a2)

    def _raw_t(self, logsnr):
        a2 = torch.sigmoid(logsnr)
        s = self.v_end - a2 * (self.v_end - self.v_start)
        return (self.tau * torch.logit(s) - self.start) / (self.end - self.start)

    def __repr__(self):
        return f"Sigmoid(start={self.start}, end={self.end}, tau={self.tau}, logsnr_min={self.logsnr_min})"


class EDM(Schedule):
    """Karras et al. (2022), variance exploding: alpha = 1 and
    sigma(t) = (sigma_min^(1/rho) + t (sigma_max^(1/rho) - sigma_min^(1/rho)))^rho,
    so that steps uniform in t are the paper's step placement. Samplers end with a last
    denoising step from sigma_min to 0.
    """

    name = "edm"
    variance_preserving = False

    def __init__(self, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0):
        if not 0 < sigma_min < sigma_max or rho <= 0:
            raise ValueError(f"edm schedule needs 0 < sigma_min < sigma_max and rho > 0, got {sigma_min}, {sigma_max}, {rho}")
        self.sigma_min, self.sigma_max, self.rho = float(sigma_min), float(sigma_max), float(rho)
        self._lo, self._hi = self.sigma_min ** (1 / self.rho), self.sigma_max ** (1 / self.rho)

    def _logsnr(self, t):
        return -2.0 * self.rho * torch.log(self._lo + t * (self._hi - self._lo))

    def _t_from_logsnr(self, logsnr):
        return (torch.exp(-0.5 * logsnr / self.rho) - self._lo) / (self._hi - self._lo)

    def __repr__(self):
        return f"EDM(sigma_min={self.sigma_min}, sigma_max={self.sigma_max}, rho={self.rho})"


class Shifted(Schedule):
    """logSNR shifted by a constant: logsnr'(t) = logsnr(t) + shift.

    A negative shift adds noise at every t, as high-resolution images, long clips and large
    point sets need (Hoogeboom et al. 2023 shift by 2 log(base / size)).
    """

    def __init__(self, inner: Schedule, shift: float):
        self.inner, self.shift = inner, float(shift)
        self.name = inner.name
        self.variance_preserving = inner.variance_preserving

    def _logsnr(self, t):
        return self.inner._logsnr(t) + self.shift

    def _t_from_logsnr(self, logsnr):
        return self.inner._t_from_logsnr(logsnr - self.shift)

    def __repr__(self):
        return f"Shifted({self.inner!r}, shift={self.shift})"


class ZeroTerminalSNR(Schedule):
    """Lin et al. (2024): rescale sqrt(alpha^2) linearly so that alpha(1) = 0 (pure noise at t = 1).

    a'(t) = (a(t) - a(1)) a(0) / (a(0) - a(1)) with a = alpha. For a discrete schedule a(0) is its
    first grid step (as diffusers' ``rescale_betas_zero_snr``), else alpha(0) = 1.
    """

    def __init__(self, inner: Schedule):
        if not inner.variance_preserving:
            raise ValueError("zero terminal SNR applies to variance-preserving schedules only")
        self.inner = inner
        self.name = inner.name
        self._grid_t = inner._grid_t if isinstance(inner, DiscreteSchedule) else None
        self.a_first = float(inner.alpha(self._grid_t[1])) if self._grid_t is not None else 1.0
        self.a_last = float(inner.alpha(torch.tensor(1.0, dtype=torch.float64)))

    def _scaled(self, a):
        return (a - self.a_last) * self.a_first / (self.a_first - self.a_last)

    def _logsnr(self, t):
        a = self._scaled(torch.sigmoid(self.inner._logsnr(t)).sqrt())
        if self._grid_t is not None:
            # Between t = 0 and the first grid step keep log alpha^2 linear, as on the rest of the grid.
            t1 = self._grid_t[1].item()
            a_ramp = torch.exp(0.5 * (t / t1) * math.log(self.a_first**2))
            a = torch.where(t < t1, a_ramp, a)
        a2 = (a * a).clamp(max=1.0)
        return torch.log(a2) - torch.log1p(-a2)

    def _t_from_logsnr(self, logsnr):
        a = torch.sigmoid(logsnr).sqrt()
        inner_a = a * (self.a_first - self.a_last) / self.a_first + self.a_last
        t = self.inner._t_from_logsnr(2 * torch.log(inner_a) - torch.log1p(-inner_a * inner_a))
        if self._grid_t is not None:
            t1 = self._grid_t[1].item()
            ramp = t1 * torch.log(a * a) / math.log(self.a_first**2)
            t = torch.where(a > self.a_first, ramp, t)
        return t

    def __repr__(self):
        return f"ZeroTerminalSNR({self.inner!r})"


_FACTORIES = {
    "linear": ddpm_linear,
    "scaled_linear": ddpm_scaled_linear,
    "cosine": Cosine,
    "sigmoid": Sigmoid,
    "edm": EDM,
}


def names() -> list[str]:
    """The schedule names that ``get`` accepts."""
    return sorted(_FACTORIES)


def get(name, *, logsnr_shift: float = 0.0, zero_terminal_snr: bool = False, **params) -> Schedule:
    """A schedule by name (``params`` go to its constructor), or a Schedule passed through.

    ``logsnr_shift`` adds a constant to logSNR; ``zero_terminal_snr`` then rescales it to end in pure noise.
    """
    if isinstance(name, Schedule):
        schedule = name
    else:
        if name not in _FACTORIES:
            raise ValueError(f"unknown schedule {name!r}; known: {', '.join(names())}")
        try:
            schedule = _FACTORIES[name](**params)
        except TypeError as err:
            raise ValueError(f"bad parameters for schedule {name!r}: {err}") from None
    if logsnr_shift:
        schedule = Shifted(schedule, logsnr_shift)
    if zero_terminal_snr:
        schedule = ZeroTerminalSNR(schedule)
    return schedule
