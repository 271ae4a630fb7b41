"""SDE-DPM-Solver++(3M) (`dpmpp_3m_sde`): the exact Gaussian target in closed form, k-diffusion's algorithm
transcribed independently, the noise-free limit, and its cost (NFE, noise draws)."""

import math

import pytest
import torch

from difflab.analysis.gaussian_mixture import GaussianMixture
from difflab.process import VPSDE, DiscreteVP
from difflab.sampling import SAMPLERS, STOCHASTIC, CountingDenoiser, NoiseSource, make_grid, sample
from difflab.sampling.dpm_solver import dpmpp_3m, dpmpp_3m_sde
from difflab.utils.errors import DifflabError

f64 = torch.float64
# one diagonal Gaussian N(mu, diag(v)): its exact denoiser is linear and the data law is known in closed form
MU = torch.tensor([[0.5, -1.0, 2.0, 0.0]], dtype=f64)
VAR = torch.tensor([[0.04, 0.25, 1.0, 4.0]], dtype=f64)
GAUSS = GaussianMixture(torch.ones(1), MU, VAR)


class GaussianDenoiser:
    """The exact denoiser of N(mu, diag(v)) written out (independent of difflab.analysis): under x_t = alpha x0 +
    sigma eps, E[x0 | x_t] = mu + alpha v / (alpha^2 v + sigma^2) (x_t - alpha mu); eps-form (x_t - alpha x0) / sigma."""

    def __init__(self, process, parameterization):
        self.process, self.parameterization = process, parameterization

    def __call__(self, x, t, cond=None):
        a, s = self.process.alpha(t[:1]).to(f64), self.process.sigma(t[:1]).to(f64)
        x0 = MU[0] + a * VAR[0] / (a * a * VAR[0] + s * s) * (x - a * MU[0])
        return x0 if self.parameterization == "x0" else (x - a * x0) / s


def gaussian_errors(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean error, variance error) per dimension in standard errors: sqrt(v / N) and v sqrt(2 / N)."""
    n = x.shape[0]
    return (x.mean(0) - MU[0]) / (VAR[0] / n).sqrt(), (x.var(0) - VAR[0]) / (VAR[0] * math.sqrt(2 / n))


@pytest.mark.parametrize(
    ("process", "param", "eta", "published"),
    [(DiscreteVP(), "eps", 1.0, False), (DiscreteVP(), "eps", 0.5, False), (VPSDE(), "x0", 1.0, False),
     (DiscreteVP(), "eps", 1.0, True), (VPSDE(), "x0", 1.0, True)],
)
def test_gaussian_target_mean_and_variance(process, param, eta, published):
    """N = 40000 samples of a 4-D Gaussian with variances 0.04..4, 60 log-SNR steps: mean and variance within
    4 standard errors of the closed form in every dimension (4 SE of the variance = 2.8 %; the solver's own
    variance bias at 60 steps, measured with 400000 samples, is at most 0.7 % (default) and 1.2 %
    (published); at 30 steps 1.8-3.7 % and 3.1-5.5 %). A wrong noise scale moves the variance by far more."""
    out = sample(GaussianDenoiser(process, param), (40000, 4), sampler="dpmpp_3m_sde", steps=60, schedule="logsnr",
                 seed=5, dtype=f64, eta=eta, published=published)
    assert out.nfe == 60
    mean_err, var_err = gaussian_errors(out.x)
    assert mean_err.abs().max() < 4, mean_err
    assert var_err.abs().max() < 4, var_err


def test_noise_matters_on_the_gaussian_target():
    """The same check fails when the noise is halved (a NoiseSource scaled by 1/2): the test above can fail."""

    class Half(NoiseSource):
        def __init__(self, like):
            self.g, self.shape = torch.Generator().manual_seed(5), like.shape

        def __call__(self, t, t_next):
            return 0.5 * torch.randn(self.shape, generator=self.g, dtype=f64)

    process = DiscreteVP()
    z = torch.randn(40000, 4, generator=torch.Generator().manual_seed(4), dtype=f64)
    x = dpmpp_3m_sde(GaussianDenoiser(process, "eps"), z, make_grid(process, "logsnr", 60), generator=Half(z))
    assert gaussian_errors(x)[1].abs().min() > 10


@pytest.mark.parametrize("published", [False, True])
def test_without_noise_it_is_dpmpp_3m(published):
    """eta = 0: no noise term and H = h, so the plan is dpmpp_3m's (published: only its warm-up step
    differs, k-diffusion's phi2 form, so compare from the mixture against the own third-order update)."""
    process = DiscreteVP()
    ring = GaussianMixture(torch.ones(3) / 3, torch.tensor([[2.0, 0.0], [-1.0, 1.7], [-1.0, -1.7]], dtype=f64),
                           torch.full((3,), 0.05, dtype=f64))
    D = ring.denoiser(process, "eps")
    z = torch.randn(64, 2, generator=torch.Generator().manual_seed(0), dtype=f64)
    ts = make_grid(process, "logsnr", 12)
    sde = dpmpp_3m_sde(D, z, ts, eta=0.0, published=published, generator=torch.Generator().manual_seed(1))
    if not published:
        torch.testing.assert_close(sde, dpmpp_3m(D, z, ts), rtol=1e-12, atol=1e-12)
    else:
        assert float((sde - dpmpp_3m(D, z, ts, published=True)).abs().max()) < 1e-2  # the warm-up step only
        torch.testing.assert_close(sde, k_diffusion_3m_sde(D, z, ts, 0.0, None), rtol=1e-12, atol=1e-12)


def k_diffusion_3m_sde(D, x, ts, eta, generator):
    """k-diffusion 0.1.1's sample_dpmpp_3m_sde, transcribed in its own variables x~ = x / alpha and
    sigma~ = sigma / alpha with a Gaussian noise sampler (one draw per step that does not land on sigma = 0)."""
    process = D.process
    alpha, sigma = process.alpha(ts).to(f64), process.sigma(ts).to(f64)
    sig = (sigma / alpha).tolist()
    xt = x / float(alpha[0])
    denoised_1 = denoised_2 = h_1 = h_2 = None
    for i in range(len(sig) - 1):
        t = torch.full((x.shape[0],), float(ts[i]), dtype=f64)
        denoised = D.mixture.posterior_mean(xt * float(alpha[i]), t, process)
        if sig[i + 1] == 0:
            xt = denoised
        else:
            h = math.log(sig[i]) - math.log(sig[i + 1])
            h_eta = h * (eta + 1)
            xt = math.exp(-h_eta) * xt + -math.expm1(-h_eta) * denoised
            if h_2 is not None:
                r0, r1 = h_1 / h, h_2 / h
                d1_0 = (denoised - denoised_1) / r0
                d1_1 = (denoised_1 - denoised_2) / r1
                d1 = d1_0 + (d1_0 - d1_1) * r0 / (r0 + r1)
                d2 = (d1_0 - d1_1) / (r0 + r1)
                phi_2 = math.expm1(-h_eta) / h_eta + 1
                phi_3 = phi_2 / h_eta - 0.5
                xt = xt + phi_2 * d1 - phi_3 * d2
            elif h_1 is not None:
                r = h_1 / h
                phi_2 = math.expm1(-h_eta) / h_eta + 1
                xt = xt + phi_2 * (denoised - denoised_1) / r
            if eta:
                z = torch.randn(x.shape, generator=generator, dtype=f64)
                xt = xt + z * sig[i + 1] * math.sqrt(-math.expm1(-2 * h * eta))
        denoised_1, denoised_2 = denoised, denoised_1
        h_1, h_2 = h, h_1
    return xt * float(alpha[-1])


@pytest.mark.parametrize("eta", [1.0, 0.7])
def test_published_is_k_diffusion_step_for_step(eta):
    """published=True against the independent transcription, same noise draws: equal to 1e-12 (the grid ends
    at t = 0 of the discrete chain, sigma = 0, where both take x0_hat and draw nothing)."""
    process = DiscreteVP()
    ring = GaussianMixture(torch.ones(2) / 2, torch.tensor([[1.5, 0.0], [-1.5, 0.5]], dtype=f64),
                           torch.full((2,), 0.1, dtype=f64))
    D = ring.denoiser(process, "eps")
    z = torch.randn(32, 2, generator=torch.Generator().manual_seed(0), dtype=f64)
    ts = make_grid(process, "karras", 15)
    ours = dpmpp_3m_sde(D, z, ts, eta=eta, published=True, generator=torch.Generator().manual_seed(3))
    theirs = k_diffusion_3m_sde(D, z, ts, eta, torch.Generator().manual_seed(3))
    torch.testing.assert_close(ours, theirs, rtol=1e-11, atol=1e-11)
    default = dpmpp_3m_sde(D, z, ts, eta=eta, generator=torch.Generator().manual_seed(3))
    assert float((default - theirs).abs().max()) > 1e-6  # the corrected D2 is a different update


def test_one_noise_draw_per_step_and_nfe_equals_steps():
    class Counting(NoiseSource):
        def __init__(self, like):
            self.calls, self.shape = 0, like.shape

        def __call__(self, t, t_next):
            self.calls += 1
            return torch.zeros(self.shape, dtype=f64)

    process = DiscreteVP()
    z = torch.zeros(3, 4, dtype=f64)
    for steps in (1, 2, 3, 10):
        noise, D = Counting(z), CountingDenoiser(GAUSS.denoiser(process, "eps"))
        dpmpp_3m_sde(D, z, make_grid(process, "logsnr", steps), generator=noise)
        assert D.nfe == steps
        assert noise.calls == steps - 1  # the last step lands on sigma = 0: no noise
    assert "dpmpp_3m_sde" in SAMPLERS and "dpmpp_3m_sde" in STOCHASTIC


def test_eta_outside_the_unit_interval_is_one_clear_error():
    process = DiscreteVP()
    with pytest.raises(DifflabError, match=r"eta must be a number in \[0, 1\]"):
        dpmpp_3m_sde(GAUSS.denoiser(process, "eps"), torch.zeros(2, 4), make_grid(process, "logsnr", 4), eta=1.5)


@pytest.mark.parametrize("sampler", ["dpmpp_2m_sde", "dpmpp_3m_sde"])
def test_a_short_step_before_a_long_one_does_not_amplify_the_noise(sampler, monkeypatch):
    """On a discrete table's 'linspace' grid the last finite step is 4.3x its predecessor (r = 0.23): the
    second-order term (x0_i - x0_{i-1}) / r amplified the injected noise, a variance error of 1.4x (2M) and 46x
    (3M) on the exact Gaussian at 20 steps. With the rule (first order where r < 0.5) both stay under 0.6 and
    under 0.1 at 100 steps; without it (ratio 0) the check fails; grids without such a step are unchanged."""
    import difflab.sampling.dpm_solver as dpm

    process, z = DiscreteVP(), torch.randn(20000, 4, generator=torch.Generator().manual_seed(0), dtype=f64)
    den = GaussianDenoiser(process, "eps")

    def rel_var_error(steps, grid="linspace"):
        x = SAMPLERS[sampler](den, z, make_grid(process, grid, steps), generator=torch.Generator().manual_seed(1))
        return float((x.var(0) / VAR[0] - 1).abs().max()), x

    assert rel_var_error(20)[0] < 0.6 and rel_var_error(100)[0] < 0.1
    logsnr = rel_var_error(20, "logsnr")[1]
    monkeypatch.setattr(dpm, "SDE_MIN_STEP_RATIO", 0.0)
    assert rel_var_error(20)[0] > 1.0
    assert torch.equal(rel_var_error(20, "logsnr")[1], logsnr)
