"""Editing a latent run: the pixel mask on the latent grid (max-pooling), inpainting on encoded latents with
the kept pixels pasted back, probability-flow inversion in latent space with pixel PSNRs, interpolation
between two images; exact oracles with exactly invertible autoencoders (identity f = 1, pixel shuffle
f = 2) and an image-like Gaussian mixture, and the CLI on the tiny diffusers latent run (conftest)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from typer.testing import CliRunner

from difflab.analysis import GaussianMixture
from difflab.analysis.gaussian_mixture import image_like_mixture
from difflab.autoencoders.base import Autoencoder
from difflab.cli.main import app
from difflab.data.images import decode_image, to_unit_range
from difflab.editing import inpaint
from difflab.jobs.edit import inpaint_loaded, latent_mask, psnr, run_interpolate, run_invert
from difflab.jobs.runs import LoadedRun, RunMeta
from difflab.process import VPSDE
from tests.editing.cases import sw2

SIDE = 4  # 1 x 4 x 4 images: the mixture's 16 dimensions


class ShuffleAutoencoder(Autoencoder):
    """Exactly invertible: encode = pixel_unshuffle by f (C f^2 latent channels), decode = pixel_shuffle."""

    def __init__(self, factor: int, channels: int = 1):
        super().__init__(factor, channels * factor**2)
        self.weight = torch.nn.Parameter(torch.ones(()), requires_grad=False)  # a device for encode_images

    def encode(self, x):
        return F.pixel_unshuffle(x, self.factor)

    def decode(self, z):
        return F.pixel_shuffle(z, self.factor)


def unshuffled(mix: GaussianMixture, f: int) -> GaussianMixture:
    """The mixture of pixel_unshuffle(x, f): means and variances moved as the pixels are (a permutation)."""
    def move(v):
        return F.pixel_unshuffle(v.reshape(-1, 1, SIDE, SIDE), f).reshape(v.shape[0], -1)
    return GaussianMixture(mix.weights, move(mix.means), move(mix.variances))


def runs(f: int):
    """(pixel run, latent run) as LoadedRuns of one data distribution: the latent one's exact denoiser is the
    pixel one's seen through the autoencoder."""
    mix, process = image_like_mixture(dim=SIDE * SIDE, k=4, seed=3), VPSDE()
    pixel = LoadedRun(None, RunMeta((1, SIDE, SIDE), None, None, value_range=(-1.0, 1.0)),
                      mix.denoiser(process, "eps"), None, None)
    c, h = f * f, SIDE // f
    meta = RunMeta((c, h, h), None, None, value_range=None, latent={"image_shape": [1, SIDE, SIDE]})
    latent = LoadedRun(None, meta, unshuffled(mix, f).denoiser(process, "eps"), None, None, ShuffleAutoencoder(f))
    return mix, pixel, latent


def pictures(mix, n, seed):
    return mix.sample(n, torch.Generator().manual_seed(seed))[0].reshape(n, 1, SIDE, SIDE).float().clamp(-1, 1)


LEFT = torch.zeros(1, 1, SIDE, SIDE)
LEFT[..., :, : SIDE // 2] = 1  # regenerate the left half: whole 2 x 2 blocks
OPTS = dict(method="replace", sampler="ddpm", steps=20, schedule="uniform")


def test_the_mask_is_max_pooled_onto_the_latent_grid():
    """f = 4, a 3 x 8 x 8 mask on a 4 x 2 x 2 grid: one pixel of one channel regenerates its cell."""
    m = torch.zeros(1, 3, 8, 8)
    m[0, 2, 1, 2] = 1  # block (0, 0), channel 2 only
    m[0, :, 4:, 4:] = 1  # block (1, 1) whole
    m[0, 0, 7, 0] = 1  # block (1, 0), one corner pixel
    got = latent_mask(m, (4, 2, 2))
    want = torch.tensor([[1.0, 0.0], [1.0, 1.0]]).expand(1, 4, 2, 2)
    assert got.shape == (1, 4, 2, 2) and torch.equal(got, want)
    assert torch.equal(latent_mask(torch.zeros(1, 3, 8, 8), (4, 2, 2)), torch.zeros(1, 4, 2, 2))
    # the regenerated pixels (those of regenerated cells) cover the mask
    assert bool((F.interpolate(got[:, :1], scale_factor=4, mode="nearest") >= m.amax(1, keepdim=True)).all())


def test_identity_autoencoder_latent_inpainting_is_pixel_inpainting():
    """f = 1: the latent job (encode, mapped mask, library inpaint, decode, paste) is pixel inpainting exactly."""
    mix, pixel, latent = runs(1)
    y = pictures(mix, 6, 1)
    ours, nfe = inpaint_loaded(latent, y, LEFT, seed=4, **OPTS)
    ref, ref_nfe = inpaint_loaded(pixel, y, LEFT, seed=4, **OPTS)
    assert nfe == ref_nfe == 20
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-6)
    assert float((ours - y).abs()[..., : SIDE // 2].mean()) > 0.05  # the left half was regenerated


def test_shuffle_autoencoder_calls_the_library_on_encoded_latents_and_pastes_the_kept_pixels():
    """f = 2, an irregular mask: the result is shuffle(inpaint(unshuffle(y), max-pooled mask)) with the kept
    pixels replaced by the input's, computed here without the job's helpers."""
    mix, _, latent = runs(2)
    y = pictures(mix, 5, 2)
    m = torch.zeros(1, 1, SIDE, SIDE)
    m[0, 0, 0, 1] = 1  # one pixel of block (0, 0)
    m[0, 0, 3, 2:] = 1  # the bottom row of block (1, 1)
    ours, _ = inpaint_loaded(latent, y, m, seed=7, **OPTS)
    cells = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).expand(1, 4, 2, 2)
    z = inpaint(latent.model, F.pixel_unshuffle(y, 2), cells, seed=7, **OPTS).x
    decoded = F.pixel_shuffle(z, 2).clamp(-1, 1)
    torch.testing.assert_close(ours, m * decoded + (1 - m) * y, rtol=0, atol=1e-6)
    keep = (m == 0).expand_as(y)
    assert torch.equal(ours[keep], y[keep])  # the kept pixels are the input's exactly
    # the kept pixels of a regenerated cell were regenerated in latent space and pasted back
    assert float((decoded - y)[..., 0, 0].abs().mean()) > 0.01
    no_paste, _ = inpaint_loaded(latent, y, m, seed=7, paste=False, **OPTS)
    torch.testing.assert_close(no_paste, decoded, rtol=0, atol=1e-6)


def test_shuffle_autoencoder_inpaints_as_pixel_space_does():
    """f = 2, a block-aligned mask: latent and pixel replacement inpainting of one image-like mixture draw
    their noise in other orders, so they agree in distribution: sliced W2 within the seed-to-seed floor, and
    both far from the unconditioned completions (mixture draws) a wrong mask mapping would give."""
    mix, pixel, latent = runs(2)
    n = 600
    y = pictures(mix, 1, 5).expand(n, 1, SIDE, SIDE).contiguous()
    lat, _ = inpaint_loaded(latent, y, LEFT, seed=11, **OPTS)
    pix, _ = inpaint_loaded(pixel, y, LEFT, seed=12, **OPTS)
    pix2, _ = inpaint_loaded(pixel, y, LEFT, seed=13, **OPTS)
    left = LEFT.bool().expand_as(y)
    a, b, c = (v[left].reshape(n, -1).double() for v in (lat, pix, pix2))
    free = pictures(mix, n, 6)[left].reshape(n, -1).double()
    floor = sw2(b, c)
    assert sw2(a, b) < 3.0 * floor  # measured 1.8x (seed-to-seed pairs vary 1-2x); a wrong mask: ~30x
    assert sw2(free, b) > 4.0 * floor


# ---- the tiny diffusers latent run (conftest), through the CLI -------------------------------------------
@pytest.fixture(scope="module")
def picture(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pics")
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f"{name}.png")
    mask = np.zeros((32, 32), np.uint8)
    mask[5:20, 3:13] = 255  # not aligned with the 4 x 4 blocks
    Image.fromarray(mask).save(folder / "mask.png")
    Image.fromarray(mask[:16, :16]).save(folder / "small.png")
    return folder


def test_cli_inpaint_of_a_latent_run_keeps_the_input_pixels(latent_run, picture, tmp_path):
    run, _ = latent_run
    x_in = to_unit_range(decode_image(picture / "a.png", 32, "RGB")).numpy()
    keep = np.asarray(Image.open(picture / "mask.png")) < 128
    outs = {}
    for method, paste in (("replace", "--paste"), ("repaint", "--no-paste")):
        out = tmp_path / f"{method}.npy"
        r = CliRunner().invoke(app, ["inpaint", str(run), "--image", str(picture / "a.png"), "--mask",
                                     str(picture / "mask.png"), "--method", method, "--jump-length", "1", "--resample",
                                     "2", "--n", "2", "--steps", "2", "--prompt", "a red circle", "--guidance", "2",
                                     paste, "--out", str(tmp_path / f"{method}.png"), "--save-array", str(out)])
        assert r.exit_code == 0, r.output
        outs[method] = np.load(out)
        assert outs[method].shape == (2, 3, 32, 32) and (tmp_path / f"{method}.png").is_file()
    assert np.array_equal(outs["replace"][:, :, keep], np.broadcast_to(x_in[:, keep], (2, 3, keep.sum())))
    # the untrained tiny autoencoder does not reconstruct: without the paste the kept pixels are its output
    assert np.abs(outs["repaint"][:, :, keep] - x_in[:, keep]).mean() > 0.05


def test_cli_latent_inpaint_bad_inputs_keep_their_messages(latent_run, picture, tmp_path):
    run, _ = latent_run
    r = CliRunner().invoke(app, ["inpaint", str(run), "--image", str(picture / "a.png"), "--mask",
                                 str(picture / "small.png"), "--out", str(tmp_path / "i.png")])
    assert r.exit_code == 2 and "draw the mask on the image's own canvas" in r.output
    np.save(tmp_path / "odd.npy", np.zeros((1, 3, 30, 30), np.float32))
    r = CliRunner().invoke(app, ["inpaint", str(run), "--image", str(tmp_path / "odd.npy"), "--mask",
                                 str(picture / "mask.png"), "--out", str(tmp_path / "i.png")])
    assert r.exit_code == 2 and "this run takes (N, 3, 32, 32)" in r.output


def test_cli_invert_reconstruct_of_a_latent_run_reports_pixel_and_autoencoder_psnr(latent_run, picture, tmp_path):
    run, _ = latent_run
    r = CliRunner().invoke(app, ["invert", str(run), "--image", str(picture / "a.png"), "--out",
                                 str(tmp_path / "z.npy"), "--reconstruct", "--steps", "4", "--prompt", "a blue square"])
    assert r.exit_code == 0, r.output
    assert np.load(tmp_path / "z.npy").shape == (1, 4, 8, 8)  # the latent shape, not the picture's
    assert Image.open(tmp_path / "z.reconstruction.png").size == (4 * 34, 4 * 2 * 34)  # input above, output below
    text = " ".join(r.output.split())
    found = re.search(r"reconstruction PSNR (\S+) dB in pixels; the autoencoder alone, decode\(encode\(x\)\): (\S+) dB",
                      text)
    assert found and all(np.isfinite(float(v)) for v in found.groups()), r.output


def test_latent_round_trip_error_falls_with_steps(latent_run, picture, tmp_path):
    run, _ = latent_run
    reports = [run_invert(run, image=picture / "b.png", out=tmp_path / f"z{s}.npy", reconstruct_too=True, steps=s,
                          schedule="uniform", prompt="a red circle", device="cpu") for s in (3, 12, 48)]
    errors = [r.latent_rms for r in reports]
    assert errors[0] > 2 * errors[1] > 4 * errors[2] > 0, errors
    assert all(r.noise.shape == (1, 4, 8, 8) for r in reports)
    # the pixel PSNR against the input, and the autoencoder's own beside it, computed here independently
    x = to_unit_range(decode_image(picture / "b.png", 32, "RGB"))[None]
    from difflab.jobs.runs import load_run

    ae = load_run(run, device="cpu").autoencoder
    with torch.no_grad():
        own = ae.from_latent(ae.to_latent(x)).clamp(-1, 1)
    for r in reports:
        assert r.autoencoder_psnr == pytest.approx(psnr(own, x), abs=1e-4)
        assert r.psnr == pytest.approx(psnr(r.reconstruction, x), abs=1e-9) and np.isfinite(r.psnr)
    # as the inversion converges, the pixel PSNR approaches the autoencoder's (the remaining error is its)
    assert abs(reports[-1].psnr - reports[-1].autoencoder_psnr) < abs(reports[0].psnr - reports[0].autoencoder_psnr)


def test_cli_interpolate_images_of_a_latent_run(latent_run, picture, tmp_path):
    run, _ = latent_run
    r = CliRunner().invoke(app, ["interpolate", str(run), "--images", str(picture / "a.png"), str(picture / "b.png"),
                                 "--frames", "3", "--steps", "3", "--prompt", "a red circle",
                                 "--out", str(tmp_path / "s.png")])
    assert r.exit_code == 0, r.output
    assert Image.open(tmp_path / "s.png").size == (4 * 3 * 34, 4 * 34)  # 3 decoded 32-pixel frames at scale 4
    r = CliRunner().invoke(app, ["interpolate", str(run), "--images", str(picture / "a.png"), str(picture / "b.png"),
                                 "--frames", "3", "--steps", "3", "--prompt", "a green triangle", "--sampler", "heun",
                                 "--out", str(tmp_path / "s.gif")])
    assert r.exit_code == 0, r.output
    assert Image.open(tmp_path / "s.gif").n_frames == 4  # there and back


def test_interpolation_ends_are_the_images_reconstructions(latent_run, picture, tmp_path):
    """Each end is inverted under the prompt and guidance its frame is sampled with: the strip's first and
    last frames are run_invert's reconstructions of A and B (the same latent round trip, decoded)."""
    run, _ = latent_run
    common = dict(sampler="heun", steps=3, guidance=2.0, device="cpu")
    strip = run_interpolate(run, images=[picture / "a.png", picture / "b.png"], frames=3, prompts=["a red circle"],
                            out=tmp_path / "s.png", **common)
    for frame, name in ((0, "a"), (2, "b")):
        rec = run_invert(run, image=picture / f"{name}.png", out=tmp_path / f"{name}.npy", reconstruct_too=True,
                         prompt="a red circle", **common).reconstruction
        torch.testing.assert_close(strip[frame:frame + 1], rec, rtol=0, atol=2e-5)  # measured 3e-6; unconditioned inversion: 2e-4
    assert float((strip[0] - strip[2]).abs().mean()) > 0.05  # the two ends differ
