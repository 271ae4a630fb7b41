"""Data sets: toy 2-D distributions, digits, shapes, image folders, Hugging Face; images in [-1, 1]."""

from difflab.data.datasets import DATASETS, ArrayData, build_dataset, collate, digits_dataset, toy2d_dataset
from difflab.data.digits import DIGIT_NAMES, digit_caption, load_digits
from difflab.data.hf import HFImageDataset, load_hf_split
from difflab.data.images import IMAGE_EXTENSIONS, ImageFolder, Skipped, decode_image
from difflab.data.shapes import (
    ATTRIBUTES,
    COLOURS,
    POSITIONS,
    SHAPES,
    SIZES,
    Shapes,
    holdout_combos,
    read_attributes,
    render_shapes,
    shape_caption,
    train_combos,
)
from difflab.data.toy2d import (
    TOY_NAMES,
    TOY_NUM_CLASSES,
    MixtureParameters,
    eight_gaussians_mixture,
    sample_toy,
    sample_toy_labeled,
)

__all__ = [
    "ATTRIBUTES",
    "COLOURS",
    "DATASETS",
    "DIGIT_NAMES",
    "IMAGE_EXTENSIONS",
    "POSITIONS",
    "SHAPES",
    "SIZES",
    "TOY_NAMES",
    "TOY_NUM_CLASSES",
    "ArrayData",
    "HFImageDataset",
    "ImageFolder",
    "MixtureParameters",
    "Shapes",
    "Skipped",
    "build_dataset",
    "collate",
    "decode_image",
    "digit_caption",
    "digits_dataset",
    "eight_gaussians_mixture",
    "holdout_combos",
    "load_digits",
    "load_hf_split",
    "read_attributes",
    "render_shapes",
    "sample_toy",
    "sample_toy_labeled",
    "shape_caption",
    "toy2d_dataset",
    "train_combos",
]
