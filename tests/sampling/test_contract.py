"""Contract of every sampler and of difflab.sample: shape, dtype, determinism, callback, NFE, seeds, errors."""

import pytest
import torch

from difflab.analysis import image_like_mixture
from difflab.analysis.gaussian_mixture import GaussianMixture
from difflab.process import VPSDE, RectifiedFlow
from difflab.sampling import (
    DETERMINISTIC,
    SAMPLERS,
    STOCHASTIC,
    CountingDenoiser,
    sample,
    sampler_options,
    uniform_log_snr,
    unipc,
)
from difflab.sampling.core import Run
from difflab.sampling.edm import _edm_plan
from difflab.sampling.unipc import _unipc_plan
from difflab.utils.errors import DifflabError
from tests.sampling.cases import denoiser

f64 = torch.float64

ALL = sorted(SAMPLERS)
IMAGES = image_like_mixture(dim=16, k=3, seed=1)  # 16 = 1 x 4 x 4
FAST = {"adaptive": {"rtol": 1e-5, "atol": 1e-5}}  # contract tests need no tight tolerance


def test_every_sampler_is_classified():
    assert sorted(DETERMINISTIC + STOCHASTIC) == ALL


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shape_and_dtype(name, dtype):
    D = IMAGES.denoiser(VPSDE(), "eps")
    out = sample(D, (3, 1, 4, 4), sampler=name, steps=4, seed=0, dtype=dtype, **FAST.get(name, {}))
    assert out.x.shape == (3, 1, 4, 4) and out.x.dtype == dtype
    assert bool(torch.isfinite(out.x).all())


@pytest.mark.parametrize("name", ALL)
def test_determinism_under_a_seed(name):
    D = denoiser("vp")
    opts = FAST.get(name, {})
    a, b = (sample(D, (5, 2), sampler=name, steps=6, seed=7, **opts).x for _ in range(2))
    assert torch.equal(a, b)
    c = sample(D, (5, 2), sampler=name, steps=6, seed=8, **opts).x
    assert not torch.allclose(a, c)
    if name in DETERMINISTIC:  # the same x_T gives the same output whatever the noise seed
        x_T = torch.randn(5, 2, generator=torch.Generator().manual_seed(1))
        torch.testing.assert_close(sample(D, x_T, sampler=name, steps=6, seed=1, **opts).x,
                                   sample(D, x_T, sampler=name, steps=6, seed=2, **opts).x, rtol=0, atol=0)


@pytest.mark.parametrize("name", ALL)
def test_per_sample_seeds_do_not_depend_on_the_batch(name):
    """EDM's per-sample seeds: sample b is the same whether drawn alone or in a batch (noise included).
    The adaptive solver shares its step sizes across the batch, so it agrees only to its tolerance; the
    predictor-corrector's Langevin step size uses batch-averaged norms (Song et al.), so it is excluded."""
    if name == "pc":
        pytest.skip("the Langevin step size of Song et al. is a batch statistic")
    D = denoiser("vp")
    batch = sample(D, (3, 2), sampler=name, steps=5, seed=[11, 12, 13], dtype=torch.float64).x
    alone = sample(D, (1, 2), sampler=name, steps=5, seed=[12], dtype=torch.float64).x
    tol = 1e-6 if name == "adaptive" else 1e-12
    torch.testing.assert_close(batch[1:2], alone, rtol=tol, atol=tol)


EXPECTED_NFE = {  # steps = N on a log-SNR grid of VP, which ends at sigma = 0
    "euler": lambda n: n,
    "ddim": lambda n: n,
    "ddpm": lambda n: n,
    "dpmpp_2m": lambda n: n,
    "dpmpp_3m": lambda n: n,
    "dpmpp_2m_sde": lambda n: n,
    "dpmpp_3m_sde": lambda n: n,
    "unipc": lambda n: n,
    "euler_maruyama": lambda n: n,
    "heun": lambda n: 2 * n - 1,  # no correction on the step into sigma = 0
    "dpmpp_sde": lambda n: 2 * n - 1,  # likewise: one stage on the final jump
    "pc": lambda n: 2 * n,  # one Langevin correction + one predictor evaluation per step
    "deis": lambda n: n,
    "ipndm": lambda n: n,
    "lms": lambda n: n,
    "bespoke": lambda n: n,
    "plms": lambda n: n + 1,  # PNDM's pseudo-improved Euler warm-up costs one more evaluation
    "consistency": lambda n: n,
    "meanflow": lambda n: n,
}


@pytest.mark.parametrize("name", ALL)
def test_callback_once_per_step_and_nfe(name):
    D = denoiser("vp")
    calls, steps = [], []

    def counted(x, t, cond=None):
        calls.append(x.shape[0])
        return D(x, t, cond)

    counted.parameterization, counted.process = D.parameterization, D.process
    out = sample(counted, (4, 2), sampler=name, steps=6, seed=0, callback=steps.append, return_trajectory=True)
    assert out.nfe == len(calls) and set(calls) == {4}
    if name == "adaptive":
        assert [s.i for s in steps] == [0] and out.trajectory.shape == (2, 4, 2)
        return
    assert out.nfe == EXPECTED_NFE[name](6)
    assert [s.i for s in steps] == list(range(6))
    assert [s.t for s in steps] == out.times[:-1].tolist() and [s.t_next for s in steps] == out.times[1:].tolist()
    assert out.trajectory.shape == (7, 4, 2)
    torch.testing.assert_close(out.trajectory[-1], out.x)
    assert all(s.x0.shape == (4, 2) for s in steps)


def test_counting_denoiser_counts_calls_not_rows():
    D = CountingDenoiser(denoiser("vp"))
    D(torch.zeros(8, 2), torch.full((8,), 0.5))
    D(torch.zeros(3, 2), torch.full((3,), 0.5))
    assert D.nfe == 2


def test_initial_noise_is_the_prior():
    D = denoiser("ve")
    out = sample(D, (20000, 2), sampler="ddim", steps=1, seed=0, return_trajectory=True)
    assert abs(float(out.trajectory[0].std()) / D.process.prior_std() - 1) < 0.02


def test_brownian_noise_makes_sde_paths_converge():
    """With a Brownian tree the SDE sampler sees one path for every step count, so refining the grid
    converges pathwise; with fresh Gaussian noise per step the outputs stay far apart."""
    D = denoiser("vp")
    x_T = torch.randn(64, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)

    def gap(noise):
        a, b = (sample(D, x_T, sampler="euler_maruyama", steps=n, seed=5, noise=noise).x for n in (200, 400))
        return float((a - b).square().mean().sqrt())

    assert gap("brownian") < gap("gaussian") / 4


def test_options_reach_the_sampler():
    D = denoiser("vp")
    x_T = torch.randn(6, 2, generator=torch.Generator().manual_seed(0))
    det = sample(D, x_T, sampler="ddim", steps=5, seed=0).x
    assert torch.equal(sample(D, x_T, sampler="ddim", steps=5, seed=0, eta=0.0).x, det)
    assert not torch.allclose(sample(D, x_T, sampler="ddim", steps=5, seed=0, eta=1.0).x, det)
    assert "eta" in sampler_options("ddim") and "order" in sampler_options("unipc")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sampler": "dpm++"}, "valid samplers are: adaptive, bespoke, consistency, ddim"),
        ({"schedule": "cosine"}, "valid schedules are:"),
        ({"steps": 0}, "steps must be an integer >= 1"),
        ({"sampler": "ddim", "eta": 1.5}, "eta must be a number in [0, 1]"),
        ({"sampler": "dpmpp_2m_sde", "eta": -0.1}, "eta must be a number in [0, 1]"),
        ({"sampler": "euler", "eta": 0.5}, "does not take the option(s) ['eta']"),
        ({"schedule": "leading"}, "needs a discrete-time process"),
        ({"schedule": [1.0, 0.2, 0.5, 0.0]}, "must strictly decrease"),
        ({"schedule": [1.5, 0.5, 0.0]}, "must lie in [0, 1]"),
        ({"schedule": "karras", "schedule_options": {"shift": 2}}, "does not take the option(s) ['shift']"),
        ({"seed": 1, "generator": torch.Generator()}, "either seed or generator"),
        ({"sampler": "unipc", "order": 4}, "unipc order must be 1, 2 or 3"),
        ({"sampler": "ddpm", "variance": "large"}, "valid DDPM variances are: beta, posterior"),
        ({"process": RectifiedFlow()}, "does not take the option(s) ['process']"),  # a denoiser brings its process
        ({"noise": "pink"}, "valid noises are: brownian, gaussian"),
        ({"shape_or_x_T": 7}, "pass x_T as a tensor or a shape tuple"),
        ({"shape_or_x_T": (0, 2)}, "positive sizes"),
    ],
)
def test_bad_input_gets_one_clear_message(kwargs, message):
    kwargs = {"shape_or_x_T": (2, 2), **kwargs}
    with pytest.raises(DifflabError) as err:
        sample(denoiser("vp"), **kwargs)
    assert message in str(err.value)


def test_eps_prediction_at_pure_noise_is_refused():
    D = IMAGES.denoiser(RectifiedFlow(), "eps")
    with pytest.raises(DifflabError, match="alpha\\(t\\) = 0"):
        sample(D, (2, 16), steps=3)
    sample(D, (2, 16), steps=3, schedule_options={"t_max": 0.999})  # the suggested fix works


def test_reverse_sde_from_pure_noise_is_refused():
    with pytest.raises(DifflabError, match="infinite drift"):
        sample(denoiser("flow"), (2, 2), sampler="euler_maruyama", steps=3)
    sample(denoiser("flow"), (2, 2), sampler="euler_maruyama", steps=3, schedule_options={"t_max": 0.999})


def test_dpmpp_sde_default_noise_is_one_brownian_path():
    """Exact oracle: for Gaussian data N(0, 0.2^2 I) the samples' variance must approach 0.04. Drawing the two
    stages' noise independently (they cover the overlapping [t_mid, t_i] and [t_{i+1}, t_i]) shrank it to
    0.69x at 25 steps; increments of one path give 0.95x at 25 steps and 0.98x at 50 (a Brownian tree, the same)."""
    std = 0.2
    gauss = GaussianMixture(torch.ones(1, dtype=f64), torch.zeros(1, 16, dtype=f64), torch.full((1,), std**2, dtype=f64))
    x = sample(gauss.denoiser(VPSDE(), "eps"), (4000, 16), sampler="dpmpp_sde", steps=25, seed=1, dtype=f64).x
    assert 0.92 < float(x.var()) / std**2 < 1.0  # 64000 values: the estimate's standard error is 0.6 %
    assert abs(float(x.mean())) < 0.01


def test_unipc_callback_reports_the_corrected_state():
    """Each reported state is the one the sampler continues from: the last UniP step, applied to the state
    reported for step n-2 and the reported x0 estimates, gives the output (the predicted, uncorrected state
    that the callback used to report does not)."""
    D, steps = denoiser("vp"), []
    x_T = torch.randn(8, 2, generator=torch.Generator().manual_seed(0), dtype=f64)
    ts = uniform_log_snr(D.process, 6, t_end=1e-3)
    out = unipc(D, x_T, ts, callback=steps.append)
    last = _unipc_plan(Run(D, x_T, ts), 2, True, True)[-1]
    m = [s.x0 for s in reversed(steps)]  # m_{n-1}, m_{n-2}, ...
    again = last.a * steps[-2].x + sum(w * mk for w, mk in zip(last.w, m, strict=False))
    torch.testing.assert_close(again, out, rtol=0, atol=1e-12)
    assert [s.i for s in steps] == list(range(6)) and torch.equal(steps[-1].x, out)
    predicted = []
    unipc(D, x_T, ts, callback=predicted.append, corrector=False)
    assert not torch.allclose(steps[-2].x, predicted[-2].x, atol=1e-6)


def test_edm_churn_is_algorithm_2():
    """sigma~_hat = (1 + gamma) sigma~_i with gamma = min(S_churn / N, sqrt(2) - 1), and x_hat's added noise
    makes sigma~_hat^2 = sigma~_i^2 + (noise / alpha_hat)^2 (EDM Algorithm 2, lines 4-6, in x~ = x / alpha)."""
    process = VPSDE()
    ts = uniform_log_snr(process, 8, t_end=1e-3)
    run = Run(denoiser("vp"), torch.zeros(1, 2, dtype=f64), ts)
    plan = _edm_plan(run, True, 2.0, 0.05, 10.0, 1.0)
    gamma = 2.0 / 8
    for i, step in enumerate(plan):
        t_i, t_hat = ts[i : i + 1], torch.tensor([step.t_hat], dtype=f64)
        sig_i = float(process.sigma(t_i) / process.alpha(t_i))
        a_hat, sig_hat = float(process.alpha(t_hat)), float(process.sigma(t_hat) / process.alpha(t_hat))
        if 0.05 <= sig_i <= 10.0:
            assert sig_hat == pytest.approx((1 + gamma) * sig_i, rel=1e-9)
            assert sig_hat**2 == pytest.approx(sig_i**2 + (step.noise / a_hat) ** 2, rel=1e-9)
            assert step.keep == pytest.approx(a_hat / float(process.alpha(t_i)), rel=1e-12)
        else:
            assert step.t_hat == float(t_i) and step.noise == 0.0 and step.keep == 1.0


def test_default_is_the_one_word_for_the_library_default_sampler_and_grid():
    """Configs and the API share one sentinel: sample(sampler='default', schedule='default') is the default call."""
    from difflab.analysis import ring_mixture
    from difflab.process import VPSDE
    from difflab.sampling import DEFAULT, DEFAULT_SAMPLER, default_schedule, sample

    d = ring_mixture().denoiser(VPSDE(), "eps")
    a = sample(d, (16, 2), seed=3, steps=6)
    b = sample(d, (16, 2), sampler=DEFAULT, schedule=DEFAULT, seed=3, steps=6)
    c = sample(d, (16, 2), sampler=DEFAULT_SAMPLER, schedule=default_schedule(d.process), seed=3, steps=6)
    assert DEFAULT == "default" and torch.equal(a.x, b.x) and torch.equal(a.x, c.x) and torch.equal(a.times, b.times)
    with pytest.raises(DifflabError, match="unknown schedule 'auto'"):
        sample(d, (4, 2), schedule="auto", steps=3)
