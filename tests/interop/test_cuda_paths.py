"""The CUDA paths: bf16 autocast and torch.compile in the trainer, channels_last and fused AdamW on the
U-Net, and a wrapped diffusers model sampled on the GPU. They run where a GPU is present and skip with the
reason otherwise (this suite's CPU machines: every test here skips). The trainer has no channels_last or
fused-AdamW option: those two tests check the U-Net and the optimizer that such options would use.
"""

from __future__ import annotations

import pytest
import torch

from difflab.nets.unet import UNet
from difflab.objectives import DiffusionLoss
from difflab.param import NetworkDenoiser
from difflab.process import make_process
from difflab.train import TensorBatchDataset, TrainConfig, Trainer, read_log

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none on this machine)")
bf16 = pytest.mark.skipif(not (torch.cuda.is_available() and torch.cuda.is_bf16_supported()),
                          reason="needs a CUDA GPU with bf16 (none on this machine)")


def unet_denoiser(seed: int = 0) -> NetworkDenoiser:
    torch.manual_seed(seed)
    net = UNet(in_channels=3, base_channels=16, channel_mult=(1, 2), num_res_blocks=1, attention_resolutions=(8,),
               image_size=16, num_heads=2)
    return NetworkDenoiser(net, make_process("flow"), "velocity")


def images(n: int = 32) -> TensorBatchDataset:
    g = torch.Generator().manual_seed(0)
    return TensorBatchDataset(torch.rand(n, 3, 16, 16, generator=g) * 2 - 1, torch.zeros(n, dtype=torch.long))


def train(tmp_path, **options) -> list[float]:
    cfg = TrainConfig(batch_size=8, max_steps=4, log_every=1, ckpt_every=0, ema=16.0, seed=1, **options)
    trainer = Trainer(unet_denoiser(), DiffusionLoss(), images(), cfg, tmp_path)
    trainer.train()
    return [r["loss"] for r in read_log(tmp_path / "log.jsonl")]


@bf16
def test_bf16_autocast_trains_close_to_float32(tmp_path):
    full, half = train(tmp_path / "fp32"), train(tmp_path / "bf16", mixed_precision="bf16")
    assert all(abs(a - b) <= 0.05 * abs(a) for a, b in zip(full, half, strict=True))  # bf16: 8 mantissa bits


@cuda
def test_compiled_training_matches_eager(tmp_path):
    eager, compiled = train(tmp_path / "eager"), train(tmp_path / "compiled", compile=True)
    assert all(abs(a - b) <= 1e-3 * abs(a) for a, b in zip(eager, compiled, strict=True))


@cuda
def test_channels_last_unet_equals_contiguous():
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    D = unet_denoiser().cuda()
    x = torch.randn(4, 3, 16, 16, device="cuda", generator=torch.Generator("cuda").manual_seed(0))
    t = torch.full((4,), 0.5, device="cuda")
    with torch.no_grad():
        ref = D(x, t)
        D_cl = D.to(memory_format=torch.channels_last)
        out = D_cl(x.to(memory_format=torch.channels_last), t)
    torch.testing.assert_close(out.contiguous(), ref, rtol=1e-4, atol=1e-5)


@cuda
def test_fused_adamw_step_equals_foreach():
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    models = [unet_denoiser().cuda() for _ in range(2)]
    opts = [torch.optim.AdamW(models[0].parameters(), lr=1e-3, foreach=True),
            torch.optim.AdamW(models[1].parameters(), lr=1e-3, fused=True)]
    x = torch.randn(4, 3, 16, 16, device="cuda", generator=torch.Generator("cuda").manual_seed(1))
    t = torch.full((4,), 0.3, device="cuda")
    for _ in range(3):
        for m, o in zip(models, opts, strict=True):
            o.zero_grad()
            m(x, t).square().mean().backward()
            o.step()
    for a, b in zip(models[0].parameters(), models[1].parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@cuda
def test_wrapped_diffusers_model_samples_on_the_gpu():
    from difflab.interop import DiffusersDenoiser, schedule_from_config
    from difflab.sampling import SAMPLERS, make_grid
    from tests.interop.tiny import BETAS, diffusers, tiny_unet

    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    S = schedule_from_config(diffusers.DDPMScheduler(**BETAS))
    cpu, gpu = DiffusersDenoiser(tiny_unet(), S), DiffusersDenoiser(tiny_unet().cuda(), S)
    z = torch.randn(2, 2, 8, 8, generator=torch.Generator().manual_seed(0))
    ts = make_grid(S.process, "trailing", 10)
    with torch.no_grad():
        a, b = SAMPLERS["dpmpp_2m"](cpu, z, ts), SAMPLERS["dpmpp_2m"](gpu, z.cuda(), ts).cpu()
    assert float((a - b).abs().max()) <= 1e-4 * float(a.abs().max())
