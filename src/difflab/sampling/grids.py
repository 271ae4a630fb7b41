"""Time grids: where a sampler evaluates the denoiser, chosen independently of the solver (DESIGN example 1).

A grid of `steps` steps is a float64 tensor of steps + 1 strictly decreasing times in [0, 1]: ts[0] is the
start (noise, default t = 1), ts[-1] the end (data, default t = 0). A solver walks consecutive pairs
(ts[i], ts[i+1]); one-evaluation-per-step solvers call the denoiser at ts[:-1] only.

Spacings in t: uniform, polynomial (EDM's rho ramp in t; rho = 2 is DDIM's quadratic), shifted, and the
discrete tables' leading / trailing / linspace. Grids that space the steps in log-SNR lambda = log(alpha / sigma) (uniform log-SNR, Karras) need finite
end values. They use the process's `log_snr_range` for an infinite end, then put the exact end back:

* start with alpha(ts[0]) = 0 (rectified flow at t = 1): the first spaced point is replaced by ts[0];
* end with sigma(ts[-1]) = 0 (DDPM, VP, flow at t = 0): `steps` points are spaced down to the smallest
  finite-lambda time and the end is appended, EDM's sigma_N = 0 (Karras et al. 2022, eq. 5): the last
  step jumps to the data end with the denoiser's x0 estimate.

Every constructor takes the process first so that a grid that does not fit it (a discrete spacing on a
continuous process, times outside [0, 1], a non-decreasing list) fails with one message.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from functools import partial

import torch
from torch import Tensor

from difflab.process.base import NoiseProcess
from difflab.process.time_warp import shift_time
from difflab.utils.errors import DifflabError, check_choice

f64 = torch.float64
DISCRETE_SPACINGS = ("leading", "trailing", "linspace")


def check_steps(steps: int) -> int:
    """Steps must be an integer >= 1."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise DifflabError(f"steps must be an integer >= 1; got {steps!r}")
    return steps


def check_grid(ts: Tensor | Sequence[float]) -> Tensor:
    """Validate a grid: 1-D, at least two times, finite, inside [0, 1], strictly decreasing. Returns float64 CPU."""
    try:
        ts = torch.as_tensor(ts, dtype=f64).detach().cpu()
    except (TypeError, ValueError, RuntimeError) as err:
        raise DifflabError(f"a time grid must be a 1-D sequence of floats; got {ts!r}") from err
    if ts.ndim != 1 or ts.numel() < 2:
        raise DifflabError(
            f"a time grid needs at least 2 times (start, end) in a 1-D sequence; got shape {tuple(ts.shape)}"
        )
    if not bool(torch.isfinite(ts).all()):
        raise DifflabError("a time grid must hold finite times; got NaN or inf")
    lo, hi = float(ts.min()), float(ts.max())
    if lo < 0 or hi > 1:
        raise DifflabError(f"grid times must lie in [0, 1] (0 = data, 1 = noise); got values in [{lo}, {hi}]")
    bad = torch.nonzero(ts[1:] >= ts[:-1])
    if bad.numel():
        k = int(bad[0])
        raise DifflabError(
            "a time grid must strictly decrease from noise (t near 1) to data (t near 0); "
            f"got times[{k}] = {float(ts[k])} followed by times[{k + 1}] = {float(ts[k + 1])}"
        )
    return ts


def _ends(t_max: float, t_end: float) -> None:
    if not 0 <= t_end < t_max <= 1:
        raise DifflabError(f"grid ends need 0 <= t_end < t_max <= 1; got t_max={t_max}, t_end={t_end}")


def _log_snr_at(process: NoiseProcess, t: float) -> float:
    return float(process.log_snr(torch.tensor(t, dtype=f64)))


def _lambda_spaced(
    process: NoiseProcess,
    steps: int,
    t_max: float,
    t_end: float,
    place: Callable[[float, float, int], Tensor],
    lam_start: float | None = None,
    lam_stop: float | None = None,
) -> Tensor:
    """Times whose log-SNR values are `place(lam_start, lam_stop, n)`, with the end rules of the module doc.

    An explicit lam_start is the first time itself; an explicit lam_stop is the last evaluated time, after
    which the grid steps to t_end (EDM: sigma_min, then 0).
    """
    check_steps(steps)
    _ends(t_max, t_end)
    lam_lo, lam_hi = process.log_snr_range
    lam_max, lam_end = _log_snr_at(process, t_max), _log_snr_at(process, t_end)
    if lam_start is not None and lam_start < lam_max - 1e-9:
        raise DifflabError(f"sigma_max = {math.exp(-lam_start):.4g} is noisier than the grid start t_max = {t_max}")
    if lam_stop is not None and lam_stop > lam_end + 1e-9:
        raise DifflabError(f"sigma_min = {math.exp(-lam_stop):.4g} is less noisy than the grid end t_end = {t_end}")
    replace_first = lam_start is None
    if lam_start is None:
        lam_start = lam_max if math.isfinite(lam_max) else lam_lo
    append_end = lam_stop is not None or not math.isfinite(lam_end)
    if lam_stop is None:
        lam_stop = lam_end if math.isfinite(lam_end) else lam_hi
    if lam_stop <= lam_start:
        raise DifflabError(
            f"the grid's log-SNR must increase from start ({lam_start:.3g}) to end ({lam_stop:.3g}); "
            "check t_max / t_end or sigma_max / sigma_min"
        )
    ts = process.t_from_log_snr(place(lam_start, lam_stop, steps if append_end else steps + 1)).to(f64)
    ts = ts.clamp(0.0, 1.0)
    if replace_first:
        ts[0] = t_max
    end = torch.tensor([t_end], dtype=f64)
    return check_grid(torch.cat([ts, end]) if append_end else torch.cat([ts[:-1], end]))


def uniform_time(process: NoiseProcess, steps: int, *, t_max: float = 1.0, t_end: float = 0.0) -> Tensor:
    """Uniform in t: t_i = t_max + i (t_end - t_max) / steps (seed 003's rectified-flow sampler grid)."""
    check_steps(steps)
    _ends(t_max, t_end)
    return check_grid(torch.linspace(t_max, t_end, steps + 1, dtype=f64))


def uniform_log_snr(process: NoiseProcess, steps: int, *, t_max: float = 1.0, t_end: float = 0.0) -> Tensor:
    """Uniform in log-SNR lambda (DPM-Solver's 'logSNR' skip type, Lu et al. 2022, sec. 3.3)."""

    def place(a: float, b: float, n: int) -> Tensor:
        return torch.linspace(a, b, n, dtype=f64) if n > 1 else torch.tensor([a], dtype=f64)

    return _lambda_spaced(process, steps, t_max, t_end, place)


def karras(
    process: NoiseProcess,
    steps: int,
    *,
    rho: float = 7.0,
    sigma_min: float | None = None,
    sigma_max: float | None = None,
    t_max: float = 1.0,
    t_end: float = 0.0,
) -> Tensor:
    """EDM's grid (Karras et al. 2022, eq. 5) in sigma~ = sigma / alpha, mapped to t through t_from_log_snr:

    sigma~_i = (sigma~_max^(1/rho) + i / (n - 1) (sigma~_min^(1/rho) - sigma~_max^(1/rho)))^rho.
    sigma_max / sigma_min (in sigma/alpha units) default to the grid ends, or to the process's finite
    log-SNR range where an end is infinite. A given sigma_max is the first time; a given sigma_min is the
    last evaluated time, followed by t_end (EDM's sigma_N = 0).
    """
    if not rho > 0:
        raise DifflabError(f"karras rho must be positive; got {rho!r}")
    for name, value in (("sigma_min", sigma_min), ("sigma_max", sigma_max)):
        if value is not None and not value > 0:
            raise DifflabError(f"karras {name} must be positive; got {value!r}")
    if sigma_min is not None and sigma_max is not None and not sigma_min < sigma_max:
        raise DifflabError(f"karras needs 0 < sigma_min < sigma_max; got {sigma_min}, {sigma_max}")

    def place(a: float, b: float, n: int) -> Tensor:
        hi, lo = math.exp(-a), math.exp(-b)
        if n == 1:
            return torch.tensor([a], dtype=f64)
        ramp = torch.linspace(0, 1, n, dtype=f64)
        return -rho * torch.log(hi ** (1 / rho) + ramp * (lo ** (1 / rho) - hi ** (1 / rho)))

    lam_start = None if sigma_max is None else -math.log(sigma_max)
    lam_stop = None if sigma_min is None else -math.log(sigma_min)
    return _lambda_spaced(process, steps, t_max, t_end, place, lam_start, lam_stop)


def time_polynomial(
    process: NoiseProcess, steps: int, *, rho: float = 2.0, t_max: float = 1.0, t_end: float = 0.0,
    t_min: float | None = None,
) -> Tensor:
    """Polynomial in t, EDM's rho ramp (Karras et al. 2022, eq. 5) applied to time instead of sigma:

    t_i = (t_max^(1/rho) + i / m (t_lo^(1/rho) - t_max^(1/rho)))^rho,   i = 0..m.

    rho = 1 is uniform in t, rho = 2 DDIM's 'quad' spacing (Song et al. 2021, App. D.2: tau_i ~ i^2). On a
    discrete table the last evaluated time is t_min = 1/T (the table's sigma_min; or a given t_min), and the
    grid then jumps to t_end, m = steps - 1 (EDM's sigma_N = 0); otherwise t_lo = t_end, m = steps.
    """
    check_steps(steps)
    _ends(t_max, t_end)
    if not (isinstance(rho, (int, float)) and rho > 0):
        raise DifflabError(f"the time-polynomial rho must be a positive number; got {rho!r}")
    if t_min is None and getattr(process, "is_discrete", False):
        t_min = 1.0 / process.T
    if t_min is not None and not t_end < t_min < t_max:
        raise DifflabError(f"t_min must lie between t_end = {t_end} and t_max = {t_max}; got {t_min}")
    jump = t_min is not None and steps > 1
    lo, m = (t_min, steps - 1) if jump else (t_end, steps)
    ramp = torch.linspace(0, 1, m + 1, dtype=f64)
    ts = (t_max ** (1 / rho) + ramp * (lo ** (1 / rho) - t_max ** (1 / rho))) ** rho
    ts[0] = t_max
    return check_grid(torch.cat([ts, torch.tensor([t_end], dtype=f64)]) if jump else torch.cat([ts[:-1], torch.tensor([t_end], dtype=f64)]))


def shifted(
    process: NoiseProcess, steps: int, *, shift: float = 3.0, t_max: float = 1.0, t_end: float = 0.0
) -> Tensor:
    """A uniform-t grid pushed toward noise by `shift` (s > 1 spends more steps at high noise)."""
    if not (isinstance(shift, (int, float)) and shift > 0):
        raise DifflabError(f"shift must be a positive number; got {shift!r}")
    return check_grid(shift_time(uniform_time(process, steps, t_max=t_max, t_end=t_end), float(shift)))


def discrete(process: NoiseProcess, steps: int, *, spacing: str = "trailing", steps_offset: int = 0) -> Tensor:
    """DDPM timestep spacings with diffusers' meanings, as times t = (tau + 1) / T, then the data end t = 0.

    With T training steps and tau in 0..T-1 (diffusers' 0-based index; our step i = tau + 1 sits at t = i/T):
    'leading'  tau_k = k floor(T / N) + offset, k = N-1..0   (DDIM/SD default; misses the noisiest step);
    'trailing' tau_k = round(T - k T / N) - 1, k = 0..N-1    (Lin et al. 2024, 'Common diffusion noise
               schedules and sample steps are flawed', Table 2; starts at t = 1);
    'linspace' tau_k = round(linspace(0, T - 1, N)), reversed.
    The solver reads each step's neighbour from this grid, never as tau - T // N (diffusers issues #12633,
    #11347, where DDIM's index arithmetic reads the wrong alphabar for 'linspace' and 'trailing').
    """
    if not getattr(process, "is_discrete", False):
        raise DifflabError(
            f"the discrete spacing {spacing!r} needs a discrete-time process (ddpm / DiscreteVP); "
            f"{process!r} is continuous: use schedule 'uniform', 'logsnr', 'karras' or 'shift'"
        )
    check_steps(steps)
    check_choice("discrete spacing", spacing, DISCRETE_SPACINGS)
    T = process.T
    if steps > T:
        raise DifflabError(f"a discrete spacing can take at most T = {T} steps; got steps = {steps}")
    if spacing == "leading":
        tau = torch.arange(steps - 1, -1, -1, dtype=f64) * (T // steps) + steps_offset
    elif spacing == "trailing":
        tau = torch.round(T - torch.arange(steps, dtype=f64) * (T / steps)) - 1
    else:
        tau = torch.round(torch.linspace(0, T - 1, steps, dtype=f64)).flip(0)
    if int(tau.max()) > T - 1 or int(tau.min()) < 0:
        raise DifflabError(f"steps_offset {steps_offset} pushes timesteps outside 0..{T - 1}")
    return check_grid(torch.cat([(tau + 1) / T, torch.zeros(1, dtype=f64)]))


def user_times(process: NoiseProcess, times: Sequence[float] | Tensor) -> Tensor:
    """Explicit times from the user, validated (the process is unused but kept for the common signature)."""
    return check_grid(times)


GRIDS: dict[str, Callable[..., Tensor]] = {
    "uniform": uniform_time,
    "logsnr": uniform_log_snr,
    "karras": karras,
    "shift": shifted,
    "polynomial": time_polynomial,
    "leading": partial(discrete, spacing="leading"),
    "trailing": partial(discrete, spacing="trailing"),
    "linspace": partial(discrete, spacing="linspace"),
}


def make_grid(process: NoiseProcess, schedule: str | Sequence[float] | Tensor, steps: int, **options) -> Tensor:
    """The grid named `schedule` (one of GRIDS) with `steps` steps, or explicit times given as a sequence."""
    if not isinstance(schedule, str):
        return user_times(process, schedule)
    fn, accepted = GRIDS.get(schedule), schedule_options(schedule)
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise DifflabError(
            f"schedule {schedule!r} does not take the option(s) {unknown}; it takes: {', '.join(sorted(accepted))}"
        )
    return fn(process, steps, **options)


def schedule_options(schedule: str) -> set[str]:
    """The options the grid named `schedule` takes."""
    check_choice("schedule", schedule, GRIDS)
    return _keyword_options(GRIDS[schedule])


def _keyword_options(fn: Callable[..., Tensor]) -> set[str]:
    fixed = set(fn.keywords) if isinstance(fn, partial) else set()
    return {p.name for p in inspect.signature(fn).parameters.values() if p.kind is p.KEYWORD_ONLY} - fixed
