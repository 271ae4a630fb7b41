"""The ODE likelihood on a (random, untrained) network denoiser: the divergence is the Jacobian's trace, and
a float32 network is called in its own dtype."""

import torch

from difflab.likelihood import continuous_elbo, ode_log_likelihood
from difflab.likelihood.ode import velocity_and_divergence
from difflab.nets.mlp import MLPNet
from difflab.param.denoiser import NetworkDenoiser
from difflab.param.parameterization import coefficients, ode_velocity, to_x0_eps
from tests.likelihood.cases import PROCESS


def network(dtype):
    torch.manual_seed(0)
    net = MLPNet(data_dim=3, hidden_dim=16, num_blocks=1, frequency_dim=8)
    torch.nn.init.normal_(net.out_proj.weight, std=0.3)  # the zero-initialized output would make v linear
    return NetworkDenoiser(net.to(dtype), PROCESS, "eps")


def test_exact_divergence_is_the_trace_of_the_full_jacobian():
    den = network(torch.float64)
    x = torch.randn(2, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    t = 0.3

    def v_single(xi):  # one sample's velocity, for torch.autograd.functional.jacobian
        t_b = torch.full((1,), t, dtype=torch.float64)
        k = coefficients(den.parameterization, PROCESS, t_b, 2, torch.float64)
        return ode_velocity(to_x0_eps(den.parameterization, den(xi[None], t_b), xi[None], k), k)[0]

    _, div = velocity_and_divergence(den, x, t, None, None)
    for b in range(2):
        trace = torch.autograd.functional.jacobian(v_single, x[b]).trace()
        assert torch.allclose(div[b, 0], trace, rtol=1e-10, atol=1e-12)


def test_float32_network_gives_hutchinson_within_three_se_of_exact():
    den = network(torch.float32)
    x = torch.randn(3, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    exact = ode_log_likelihood(den, x, rtol=1e-4, atol=1e-4)
    hutch = ode_log_likelihood(den, x, divergence="hutchinson", probes=8, rtol=1e-4, atol=1e-4,
                               generator=torch.Generator().manual_seed(3))
    assert bool(torch.isfinite(exact.nll).all())
    assert ((hutch.nll - exact.nll).abs() < 3 * hutch.nll_stderr + 1e-3).all()


def test_float32_network_elbo_runs_in_the_networks_dtype():
    # the ELBO bounds the network model's own -log p; the ODE gives that model's exact -log p only for an
    # exact score, so on a random network only finiteness and the dtype path are checked here
    den = network(torch.float32)
    x = torch.randn(3, 3, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    r = continuous_elbo(den, x, samples=8, generator=torch.Generator().manual_seed(5))
    assert bool(torch.isfinite(r.nll).all()) and bool((r.nll_stderr > 0).all())
