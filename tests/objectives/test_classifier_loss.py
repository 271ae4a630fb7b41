"""NoisyClassifierLoss: the cross-entropy of seed 002's noisy-image classifier, checked against an independent
computation, and a tiny classifier trained with it against the Bayes-optimal p(y | x_t) of a Gaussian mixture."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from difflab.analysis import GaussianMixture
from difflab.nets import NoisyClassifier
from difflab.objectives import NoisyClassifierLoss, TimeSampler
from difflab.param.classifier import TimeClassifier
from difflab.process import DiscreteVP, RectifiedFlow
from difflab.utils import DifflabError

f64 = torch.float64


class Recorder(torch.nn.Module):
    """A classifier that records the (x_t, t) it saw and returns fixed logits."""

    def __init__(self, logits, process):
        super().__init__()
        self.logits, self.process = logits, process

    def forward(self, x, t):
        self.x, self.t = x, t
        return self.logits


@pytest.mark.parametrize("process", [DiscreteVP(), RectifiedFlow()], ids=["ddpm", "flow"])
def test_loss_is_cross_entropy_on_x_t_from_the_same_stream(process):
    """loss_i = logsumexp(l_i) - l_i[y_i] on x_t = alpha x0 + sigma eps, with t then eps drawn from the generator."""
    B = 6
    x0 = torch.randn(B, 1, 4, 4, dtype=f64)
    y = torch.tensor([0, 2, 1, 2, 0, 1])
    logits = torch.randn(B, 3, dtype=f64)
    model = Recorder(logits, process)
    loss = NoisyClassifierLoss()(model, x0, {"class_labels": y}, generator=torch.Generator().manual_seed(7))

    g = torch.Generator().manual_seed(7)  # the same stream, drawn by hand
    if process.is_discrete:
        i = torch.randint(1, process.T + 1, (B,), generator=g)
        t = i.to(f64) / process.T
        alpha, sigma = process.alphas_cumprod[i - 1].sqrt(), (1 - process.alphas_cumprod[i - 1]).sqrt()
    else:
        t = process.t_min + (1 - process.t_min) * torch.rand(B, generator=g, dtype=f64)
        alpha, sigma = 1 - t, t
    eps = torch.randn(x0.shape, generator=g, dtype=f64)
    assert torch.allclose(model.t, t)
    assert torch.allclose(model.x, alpha[:, None, None, None] * x0 + sigma[:, None, None, None] * eps)
    expected = torch.logsumexp(logits, 1) - logits[torch.arange(B), y]
    assert loss.shape == (B,) and torch.allclose(loss.double(), expected, atol=1e-6)


def test_loss_bad_input():
    model = Recorder(torch.zeros(2, 3), DiscreteVP())
    loss = NoisyClassifierLoss(TimeSampler("logit_normal"))
    x0 = torch.randn(2, 1, 4, 4)
    for cond in (None, {"context": torch.randn(2, 3, 5)}):
        with pytest.raises(DifflabError, match="needs class labels: pass cond=\\{'class_labels': y\\}"):
            loss(model, x0, cond)
    with pytest.raises(DifflabError, match=r"integer tensor of shape \(2,\).*torch.float32"):
        loss(model, x0, {"class_labels": torch.zeros(2)})
    with pytest.raises(DifflabError, match=r"integer tensor of shape \(2,\)"):
        loss(model, x0, {"class_labels": torch.zeros(3, dtype=torch.long)})
    with pytest.raises(DifflabError, match="wrap the network as .*TimeClassifier"):
        loss(lambda x, t: torch.zeros(2, 3), x0, {"class_labels": torch.zeros(2, dtype=torch.long)})
    drop = {"class_labels": torch.tensor([0, 1]), "drop": torch.tensor([True, False])}
    assert torch.allclose(loss(model, x0, drop), torch.full((2,), math.log(3)))  # labels are targets: drop ignored


#################################################################################
#              A trained classifier against the Bayes-optimal one               #
#################################################################################

N_EVAL = 1000
T_GRID = (0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def two_class_toy() -> GaussianMixture:
    """Two 8x8 classes N(+-m u, I) with u = (left half +1, right half -1) / 8 and m = 6.

    The labels are recoverable from x0 (x0 . u = +-6 with unit noise) and are the mixture components,
    so GaussianMixture.responsibilities is the exact p(y | x_t). Unit component variance makes
    x_t ~ N(+-alpha m u, I) under VP at EVERY t: only the 1-D projection x_t . u carries a (weak) hint
    of t, so the Bayes log-odds 2 alpha(t) m (x_t . u) can only be matched by reading t.
    """
    u = torch.ones(8, 8, dtype=f64)
    u[:, 4:] = -1
    u = u.flatten() / 8
    return GaussianMixture(torch.ones(2), 6 * torch.stack([u, -u]), torch.ones(2))


def train_classifier(mixture: GaussianMixture, time_scale: float) -> TimeClassifier:
    """250 plain AdamW steps of batch 64 on NoisyClassifierLoss under the DDPM process."""
    torch.manual_seed(0)
    net = NoisyClassifier(in_channels=1, num_classes=2, base_channels=8, channel_mult=(1,), num_res_blocks=1,
                          attention_resolutions=(), image_size=8, num_heads=1, pool="attention")
    clf = TimeClassifier(net, DiscreteVP(), time_scale=time_scale)
    loss_fn, opt = NoisyClassifierLoss(), torch.optim.AdamW(clf.parameters(), lr=5e-3)
    g = torch.Generator().manual_seed(1)
    for _ in range(250):
        x0, y = mixture.sample(64, generator=g)
        loss = loss_fn(clf, x0.float().reshape(-1, 1, 8, 8), {"class_labels": y}, generator=g).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return clf.eval()


@pytest.fixture(scope="module")
def toy():
    return two_class_toy()


@pytest.fixture(scope="module")
def trained(toy):
    return train_classifier(toy, time_scale=1000.0)


def noisy_batch(mixture, process, t: float, seed: int):
    """N_EVAL samples x_t at time t with their classes and the exact posterior r = p(y | x_t) (float64)."""
    g = torch.Generator().manual_seed(seed)
    x0, y = mixture.sample(N_EVAL, generator=g)
    tt = torch.full((N_EVAL,), t, dtype=f64)
    x_t = process.sample_xt(x0, tt, torch.randn(x0.shape, generator=g, dtype=f64))
    return x_t, tt, y, mixture.responsibilities(x_t, tt, process)


def probabilities(clf, x_t, t):
    with torch.no_grad():
        return clf(x_t.float().reshape(-1, 1, 8, 8), t.float()).softmax(-1).double()


def posterior_errors(clf, mixture) -> Tensor:
    """mean_i |p_phi(y | x_t^i) - p(y | x_t^i)| at each t of T_GRID, where the answer is uncertain."""
    errors = []
    for k, t in enumerate(T_GRID):
        x_t, tt, _, r = noisy_batch(mixture, clf.process, t, seed=10 + k)
        errors.append((probabilities(clf, x_t, tt) - r).abs().mean())
    return torch.stack(errors)


def test_accurate_at_small_t_and_at_chance_at_t1(trained, toy):
    """Confident and right near the data; at t = 1 near chance and uncertain (p ~ 1/2, the exact posterior)."""
    x_t, t, y, _ = noisy_batch(toy, trained.process, 0.02, seed=2)
    p = probabilities(trained, x_t, t)
    assert (p.argmax(1) == y).double().mean() > 0.98 and p.max(1).values.mean() > 0.95
    x_t, t, y, r = noisy_batch(toy, trained.process, 1.0, seed=3)
    p = probabilities(trained, x_t, t)
    assert (r.max(1).values - 0.5).abs().mean() < 0.05  # the exact posterior is nearly the prior here
    assert abs((p.argmax(1) == y).double().mean() - 0.5) < 0.06 and p.max(1).values.mean() < 0.62


def test_it_reads_the_noise_level(trained, toy):
    """p_phi(y | x_t, t) tracks the exact posterior across t; the same network trained blind to t
    (time_scale = 0) cannot, since x_t ~ N(+-alpha(t) m u, I) hides t: the check is able to fail."""
    errors = posterior_errors(trained, toy)
    blind = posterior_errors(train_classifier(toy, time_scale=0.0), toy)
    assert errors.max() < 0.15 and errors.mean() < 0.09 < blind.mean()


@pytest.mark.parametrize("t", [0.5, 0.6])
def test_gradient_points_toward_the_requested_class(trained, toy, t):
    """grad_x log p_phi(y | x_t) (the guidance direction) ~ the exact grad_x log p(y | x_t), toward mu_y - mu_y'."""
    x_t, tt, _, _ = noisy_batch(toy, trained.process, t, seed=5)
    y = torch.randint(0, 2, (N_EVAL,), generator=torch.Generator().manual_seed(6))  # requested classes
    x = x_t.float().reshape(-1, 1, 8, 8).requires_grad_(True)
    (grad,) = torch.autograd.grad(trained(x, tt.float()).log_softmax(-1).gather(1, y[:, None]).sum(), x)
    grad = grad.flatten(1).double()
    x_exact = x_t.clone().requires_grad_(True)
    log_r = toy.responsibilities(x_exact, tt, trained.process).log().gather(1, y[:, None])
    (grad_exact,) = torch.autograd.grad(log_r.sum(), x_exact)
    assert F.cosine_similarity(grad, grad_exact, dim=1).mean() > 0.6
    toward = toy.means[y] - toy.means[1 - y]
    assert ((grad * toward).sum(1) > 0).double().mean() > 0.95
