"""Inpainting against the exact conditional of a Gaussian mixture: replacement vs RePaint side by side (issue 14).

    OMP_NUM_THREADS=1 python benchmarks/editing_exact.py

Known coordinates y are drawn from the mixture; each method completes the rest once per y with the exact
denoiser (VP-SDE, DDPM ancestral steps on a uniform grid, seed 5); the exact completions come from
difflab.analysis.conditional.inpainting_posterior_sample. Reported: SW2(method, exact) / SW2(exact,
exact') on the joint (known, completed) vectors, 256 projections, where exact' is a second exact draw for
the same y (the floor: 1.0 is as good as exact sampling), and the NFE.

* two modes: 2-D, modes (-1, -1) and (1, 1), std 0.3, x1 known (it names the mode), 1000 y;
* image-like: difflab.analysis.image_like_mixture(16, k=10), the left half of the 4x4 'image' known, 1000 y.
"""

from __future__ import annotations

import torch

from difflab.analysis import GaussianMixture, image_like_mixture
from difflab.analysis.conditional import inpainting_posterior_sample
from difflab.editing import inpaint
from difflab.metrics.lowdim import sliced_wasserstein2
from difflab.process import VPSDE

f64 = torch.float64
SETTINGS = [("replace", 1, 1), ("repaint", 5, 2), ("repaint", 5, 5), ("repaint", 5, 10), ("repaint", 10, 10)]


def sw2(a, b) -> float:
    return sliced_wasserstein2(a, b, num_projections=256, generator=torch.Generator().manual_seed(0))


def cases():
    two = GaussianMixture(torch.ones(2), torch.tensor([[-1.0, -1.0], [1.0, 1.0]], dtype=f64), torch.full((2,), 0.09))
    yield "two modes (2-D, x1 known)", two, torch.tensor([0.0, 1.0], dtype=f64)
    img = image_like_mixture(16, k=10)
    left = torch.zeros(4, 4, dtype=f64)
    left[:, 2:] = 1  # keep the left half, regenerate the right
    yield "image-like (16-D, left half known)", img, left.reshape(16)


def main() -> None:
    torch.set_grad_enabled(False)
    print("| case | method | jump length | passes | steps | NFE | SW2 / floor |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, mix, mask in cases():
        y = mix.sample(1000, torch.Generator().manual_seed(1))[0]
        known = mask == 0
        exact = inpainting_posterior_sample(mix, y, known, torch.Generator().manual_seed(2))
        floor = sw2(exact, inpainting_posterior_sample(mix, y, known, torch.Generator().manual_seed(3)))
        d = mix.denoiser(VPSDE(), "eps")
        for steps in (40, 200):
            for method, j, r in SETTINGS:
                out = inpaint(d, y, mask, method=method, jump_length=j, resample=r, sampler="ddpm", steps=steps,
                              schedule="uniform", seed=5)
                jr = ("-", "-") if method == "replace" else (j, r)
                print(f"| {name} | {method} | {jr[0]} | {jr[1]} | {steps} | {out.nfe} | {sw2(out.x, exact) / floor:.2f} |",
                      flush=True)


if __name__ == "__main__":
    main()
