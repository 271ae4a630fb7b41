"""The diffusers scheduler defects users report, avoided by construction on the wrapped model.

1. Karras sigmas with rounded timesteps (DPMSolverMultistepScheduler(use_karras_sigmas=True) rounds each
   sigma's timestep to an integer, so the network is told a noise level that is not the level of x).
2. Index arithmetic instead of the grid (DDIMScheduler reads alphabar at tau - T // N, which is not the next
   timestep when N does not divide T; with 'leading' and set_alpha_to_one=False the last step lands at
   alphabar_0 = 1 - beta_1 instead of the data).
3. The shift applied twice on flow models (FlowMatchEulerDiscreteScheduler shifts the sigmas it is given, and
   its default sigma_min was already shifted at construction).
"""

from __future__ import annotations

import pytest
import torch

from difflab.interop import DiffusersDenoiser, schedule_from_config
from difflab.process import shift_time
from difflab.sampling import SAMPLERS, make_grid
from tests.interop.tiny import BETAS, diffusers, tiny_sd3, tiny_unet

f64 = torch.float64


def recorded_timesteps(model) -> list:
    seen = []
    model.register_forward_pre_hook(lambda m, args, kw: seen.append(kw["timestep"].to(f64)[0]), with_kwargs=True)
    return seen


def tilde_sigma(process, t):
    return process.sigma(t) / process.alpha(t)


def test_karras_grid_tells_the_network_the_level_of_x():
    sched = diffusers.DPMSolverMultistepScheduler(**BETAS, use_karras_sigmas=True)
    sched.set_timesteps(10)
    S = schedule_from_config(sched)
    # the defect: diffusers' rounded timesteps sit at other noise levels than its own karras sigmas
    told = tilde_sigma(S.process, S.time(sched.timesteps))
    assert float((told / sched.sigmas[:-1].to(f64) - 1).abs().max()) > 1e-3
    # difflab: the network receives tau = T t - 1 unrounded, whose level is the grid's sigma~
    model = tiny_unet()
    D = DiffusersDenoiser(model, S)
    seen = recorded_timesteps(model)
    ts = make_grid(D.process, "karras", 10)
    with torch.no_grad():
        SAMPLERS["dpmpp_2m"](D, torch.randn(1, 2, 8, 8, generator=torch.Generator().manual_seed(0)), ts)
    tau = torch.stack(seen)
    assert (tau - tau.round()).abs().max() > 0.01  # not rounded
    level = tilde_sigma(S.process, S.time(tau))
    torch.testing.assert_close(level, tilde_sigma(S.process, ts[:-1]), rtol=1e-6, atol=0)  # float32 timestep


@pytest.mark.parametrize("spacing, offset", [("trailing", 0), ("linspace", 0), ("leading", 1)])
def test_each_ddim_step_reads_its_neighbour_from_the_grid(spacing, offset):
    sched = diffusers.DDIMScheduler(**BETAS, timestep_spacing=spacing, steps_offset=offset, clip_sample=False,
                                    set_alpha_to_one=False)
    sched.set_timesteps(7)  # 1000 / 7 is not an integer
    taus = [int(v) for v in sched.timesteps]
    prev = [tau - 1000 // 7 for tau in taus]  # what diffusers' DDIM reads
    if spacing == "leading":  # consistent inside, but the last step ends at alphabar_0, not at the data
        assert prev[:-1] == taus[1:] and prev[-1] < 0 and float(sched.final_alpha_cumprod) < 1
    else:
        assert prev[:-1] != taus[1:]
    S = schedule_from_config(sched)
    model = tiny_unet()
    D = DiffusersDenoiser(model, S)
    ts = make_grid(D.process, spacing, 7, **({"steps_offset": offset} if spacing == "leading" else {}))
    assert torch.equal(S.time(sched.timesteps), ts[:-1]) and ts[-1] == 0
    x = torch.randn(2, 2, 8, 8, dtype=f64, generator=torch.Generator().manual_seed(1))
    abar = torch.cat([S.process.alphas_cumprod, torch.ones(1, dtype=f64)])  # index -1: the data end
    nxt = taus[1:] + [-1]
    with torch.no_grad():
        for i in range(len(taus)):
            out = SAMPLERS["ddim"](D, x, ts[i : i + 2])
            a, a_next = abar[taus[i]], abar[nxt[i]]
            eps = D(x, ts[i : i + 1])
            x0 = (x - (1 - a).sqrt() * eps) / a.sqrt()
            torch.testing.assert_close(out, a_next.sqrt() * x0 + (1 - a_next).sqrt() * eps, rtol=1e-12, atol=1e-12)


def test_flow_shift_is_applied_once():
    sched = diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0)
    S = schedule_from_config(sched)
    t = torch.linspace(0, 1, 11, dtype=f64)
    assert S.shift == 3.0 and torch.equal(S.process.alpha(t), 1 - t)  # the process itself is unshifted
    # the defect: sigmas that already carry the shift are shifted again
    once = shift_time(torch.linspace(1, 0, 6, dtype=f64)[:-1], 3.0)
    sched.set_timesteps(sigmas=once.float().numpy())
    torch.testing.assert_close(sched.sigmas[:-1].to(f64), shift_time(once, 3.0), rtol=1e-6, atol=1e-6)
    # difflab: the default grid is shifted once, an explicit grid is used as given, the network sees T t
    model = tiny_sd3()
    D = DiffusersDenoiser(model, S)
    seen = recorded_timesteps(model)
    cond = {"context": torch.randn(1, 3, 8), "pooled": torch.randn(1, 4)}
    x = torch.randn(1, 2, 8, 8, generator=torch.Generator().manual_seed(2))
    grid = D.default_grid(5)
    torch.testing.assert_close(grid[:-1], once, rtol=0, atol=1e-15)
    with torch.no_grad():
        a = SAMPLERS["euler"](D, x, grid, cond=cond)
        b = SAMPLERS["euler"](D, x, once.tolist() + [0.0], cond=cond)
    assert torch.equal(a, b)
    torch.testing.assert_close(torch.stack(seen[:5]), 1000 * once, rtol=1e-6, atol=0)
