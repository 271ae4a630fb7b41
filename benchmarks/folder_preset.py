"""The `folder` preset on ~80 scikit-image sample photos at 32x32 (issue 19): data, training, picture.

    python benchmarks/folder_preset.py prepare /tmp/photos        # write the photo crops as PNGs
    OMP_NUM_THREADS=1 difflab train folder --minutes 10 --threads 1 --out /tmp/folder-run \
        --set data.options.root=/tmp/photos
    python benchmarks/folder_preset.py figure /tmp/photos /tmp/folder-run docs/figures/folder_samples.png

prepare: the eight colour photos bundled with scikit-image (astronaut, coffee, chelsea, rocket,
immunohistochemistry, retina, hubble_deep_field, stereo_motorcycle): each whole, and nine square
crops of half its shorter side on a 3x3 grid, 80 images; ImageFolder resizes them to 32x32.
figure: 64 training images (left) beside 64 samples of the run (right), with the run's steps.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "retina",
          "hubble_deep_field", "stereo_motorcycle")


def crops(img: np.ndarray) -> list[np.ndarray]:
    """The whole image and nine crops of half its shorter side at a 3x3 grid of positions."""
    h, w = img.shape[:2]
    s = min(h, w) // 2
    out = [img]
    for y in np.linspace(0, h - s, 3).round().astype(int):
        for x in np.linspace(0, w - s, 3).round().astype(int):
            out.append(img[y : y + s, x : x + s])
    return out


def prepare(root: Path) -> int:
    import skimage.data

    root.mkdir(parents=True, exist_ok=True)
    n = 0
    for name in PHOTOS:
        img = getattr(skimage.data, name)()
        img = img[0] if isinstance(img, tuple) else img  # stereo_motorcycle: (left, right, disparity)
        for i, c in enumerate(crops(np.asarray(img)[..., :3])):
            Image.fromarray(np.ascontiguousarray(c)).save(root / f"{name}-{i}.png")
            n += 1
    return n


def figure(root: Path, run: Path, out: Path) -> dict:
    """64 training images beside 64 samples of the run's newest checkpoint, captioned with its steps."""
    import tempfile

    import torch

    from difflab.data.images import ImageFolder
    from difflab.jobs.sample import run_sample
    from difflab.train import latest_checkpoint
    from difflab.utils.progress import format_duration
    from difflab.viz import save_image_grid

    real = ImageFolder(root, size=32)
    idx = torch.randperm(len(real), generator=torch.Generator().manual_seed(0))[:64]
    real_x = torch.stack([real[int(i)]["x"] for i in idx])
    with tempfile.TemporaryDirectory() as tmp:
        result = run_sample(run, n=64, save_array_path=Path(tmp) / "samples.npy")
    shape = real_x.shape[1:]
    both = torch.cat([real_x.reshape(8, 8, *shape), torch.ones(8, 1, *shape),
                      result.x.clamp(-1, 1).reshape(8, 8, *shape)], dim=1)
    last = json.loads((run / "log.jsonl").read_text().splitlines()[-1])
    ckpt = latest_checkpoint(run)
    steps = int(ckpt.name.split("-")[-1])
    caption = (f"left: 64 of the {len(real)} training images; right: 64 samples (30 NFE) after {steps} steps "
               f"of batch 16, {format_duration(last['elapsed'])} of training")
    save_image_grid(both.reshape(-1, *shape), out, nrow=17, scale=3, caption=caption)
    return {"images": len(real), "checkpoint": str(ckpt), "steps": steps, "last_log": last}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("prepare")
    a.add_argument("root", type=Path)
    f = sub.add_parser("figure")
    f.add_argument("root", type=Path)
    f.add_argument("run", type=Path)
    f.add_argument("out", type=Path)
    args = p.parse_args(argv)
    if args.cmd == "prepare":
        print(f"wrote {prepare(args.root)} images to {args.root}")
    else:
        print(json.dumps(figure(args.root, args.run, args.out), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
