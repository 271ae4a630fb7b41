"""Guidance wrappers against closed forms on the Gaussian-mixture ring, whose components are its classes:
the 'conditional' model is one component, the 'unconditional' one the whole mixture."""

import pytest
import torch

from difflab.analysis import ring_mixture
from difflab.guidance import ClassifierFreeGuidance, ClassifierGuidance, classifier_free, classifier_guided
from difflab.metrics.lowdim import sliced_wasserstein2
from difflab.process import VESDE, VPSDE, DiscreteVP, RectifiedFlow
from difflab.sampling import sample
from difflab.utils.errors import DifflabError

MIX = ring_mixture()
CASES = [(VPSDE(), "v"), (DiscreteVP(), "eps"), (VESDE(), "x0"), (RectifiedFlow(), "velocity")]
IDS = [f"{p.name}-{param}" for p, param in CASES]
B = 16


def batch(process, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, 2, generator=g, dtype=torch.float64) * 1.5
    t = torch.rand(B, generator=g, dtype=torch.float64) * 0.9 + 0.05
    y = torch.randint(0, 8, (B,), generator=g)
    return x, t, y


def exact(process, x, t, cond):
    """(x0, eps) of the mixture, restricted by cond, straight from its closed form."""
    return MIX.denoiser(process, "x0").exact(x, t, cond)


@pytest.mark.parametrize(("process", "param"), CASES, ids=IDS)
@pytest.mark.parametrize("w", [0.0, 1.0, 3.5])
def test_cfg_combines_eps_and_x0_linearly(process, param, w):
    """Combining in the denoiser's own parameterization equals combining eps (and x0): the guided eps is
    eps_u + w (eps_c - eps_u), whatever the prediction type."""
    x, t, y = batch(process)
    guided = ClassifierFreeGuidance(MIX.denoiser(process, param), w).predict(x, t, {"class_labels": y})
    c = exact(process, x, t, {"class_labels": y})
    u = exact(process, x, t, None)
    torch.testing.assert_close(guided.eps, u.eps + w * (c.eps - u.eps), rtol=1e-8, atol=1e-9)
    torch.testing.assert_close(guided.x0, u.x0 + w * (c.x0 - u.x0), rtol=1e-8, atol=1e-9)


@pytest.mark.parametrize(("process", "param"), CASES, ids=IDS)
def test_cfg_score_is_that_of_the_tilted_density(process, param):
    """Seed 002: the guided score is grad log p^(1-w) p(.|y)^w = (1 - w) score + w score_y."""
    x, t, y = batch(process, seed=1)
    w = 2.5
    guided = ClassifierFreeGuidance(MIX.denoiser(process, param), w).predict(x, t, {"class_labels": y})
    sigma = process.sigma(t)[:, None]
    expected = (1 - w) * MIX.score(x, t, process) + w * MIX.score(x, t, process, {"class_labels": y})
    torch.testing.assert_close(-guided.eps / sigma, expected, rtol=1e-7, atol=1e-8)


def test_cfg_runs_one_batched_call():
    D = MIX.denoiser(VPSDE(), "eps")
    seen = []

    def inner(x, t, cond=None):
        seen.append((x.shape[0], t.shape[0], cond["class_labels"].shape[0], cond["drop"].tolist()))
        return D(x, t, cond)

    inner.parameterization, inner.process = "eps", D.process
    x, t, y = batch(D.process)
    ClassifierFreeGuidance(inner, 2.0)(x, t, {"class_labels": y})
    assert seen == [(2 * B, 2 * B, 2 * B, [False] * B + [True] * B)]


def test_cfg_interval_and_negative_condition():
    process = VPSDE()
    D = MIX.denoiser(process, "eps")
    x, t, y = batch(process, seed=2)
    cond, neg = {"class_labels": y}, {"class_labels": (y + 4) % 8}
    guided = ClassifierFreeGuidance(D, 3.0, uncond=neg, interval=(0.3, 0.7))(x, t, cond)
    y_c, y_n = D(x, t, cond), D(x, t, neg)
    inside = ((t >= 0.3) & (t <= 0.7))[:, None]
    assert 0 < int(inside.sum()) < B
    torch.testing.assert_close(guided, torch.where(inside, y_n + 3.0 * (y_c - y_n), y_c))


@pytest.mark.parametrize(("process", "param"), CASES, ids=IDS)
def test_classifier_guidance_with_the_exact_classifier(process, param):
    """With the exact posterior over components as classifier, s = 1 turns the unconditional model into
    the conditional one (Bayes), and scale s gives eps_u - s sigma grad log p(y|x) = CFG with w = s."""
    x, t, y = batch(process, seed=3)
    x, t = x[t < 0.9], t[t < 0.9]
    y = y[: x.shape[0]]

    def classifier(x_t, t_):
        return MIX.responsibilities(x_t, t_, process).log()

    D = MIX.denoiser(process, param)
    dropped = {"class_labels": y, "drop": torch.ones(x.shape[0], dtype=torch.bool)}  # unconditional branch
    c = exact(process, x, t, {"class_labels": y})
    one = ClassifierGuidance(D, classifier, 1.0).predict(x, t, dropped)
    torch.testing.assert_close(one.eps, c.eps, rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(one.x0, c.x0, rtol=1e-6, atol=1e-8)
    three = ClassifierGuidance(D, classifier, 3.0).predict(x, t, dropped)
    cfg = ClassifierFreeGuidance(D, 3.0).predict(x, t, {"class_labels": y})
    torch.testing.assert_close(three.eps, cfg.eps, rtol=1e-6, atol=1e-8)


def test_guided_sampling_counts_nfe_once_and_hits_the_class():
    """Through difflab.sample: CFG doubles the batch, not the NFE; with w = 1 (the conditional model)
    every sample lands in its class, distributed as that component."""
    D = MIX.denoiser(VPSDE(), "eps")
    n = 2000
    cond = {"class_labels": torch.full((n,), 3)}
    out = sample(D, (n, 2), sampler="ddpm", steps=60, seed=0, cond=cond, guidance=classifier_free(1.0),
                 dtype=torch.float64)
    assert out.nfe == 60
    comp = MIX.responsibilities(out.x, torch.zeros(n), RectifiedFlow()).argmax(1)
    assert bool((comp == 3).all())
    g = torch.Generator().manual_seed(1)
    exact_a = MIX.means[3] + MIX.variances[3].sqrt() * torch.randn(n, 2, generator=g, dtype=torch.float64)
    exact_b = MIX.means[3] + MIX.variances[3].sqrt() * torch.randn(n, 2, generator=g, dtype=torch.float64)
    floor = sliced_wasserstein2(exact_b, exact_a, 64, torch.Generator().manual_seed(0))
    assert sliced_wasserstein2(out.x, exact_a, 64, torch.Generator().manual_seed(0)) < 1.5 * floor


def test_classifier_guided_sampling_through_sample():
    process = VPSDE()
    D = MIX.denoiser(process, "eps")
    n = 500
    cond = {"class_labels": torch.full((n,), 5), "drop": torch.ones(n, dtype=torch.bool)}
    guidance = classifier_guided(lambda x, t: MIX.responsibilities(x, t, process).log(), 1.0)
    out = sample(D, (n, 2), sampler="dpmpp_2m", steps=30, seed=0, cond=cond, guidance=guidance, dtype=torch.float64)
    comp = MIX.responsibilities(out.x, torch.zeros(n), RectifiedFlow()).argmax(1)
    assert out.nfe == 30 and float((comp == 5).double().mean()) > 0.99


def test_guidance_errors():
    D = MIX.denoiser(VPSDE(), "eps")
    x, t, _ = batch(D.process)
    with pytest.raises(DifflabError, match="needs a condition"):
        ClassifierFreeGuidance(D, 2.0)(x, t, None)
    with pytest.raises(DifflabError, match="interval must be"):
        ClassifierFreeGuidance(D, 2.0, interval=(0.8, 0.2))
    with pytest.raises(DifflabError, match="class_labels"):
        ClassifierGuidance(D, lambda x, t: x, 1.0)(x, t, None)
    with pytest.raises(DifflabError, match="must be callable"):
        ClassifierGuidance(D, "resnet", 1.0)
