"""Honest evaluation: Fréchet distances, FID/KID/IS via torchmetrics, precision/recall, digit metrics,
CLIP score, low-dimensional distances and the memorization check (seeds 000 and 001, "metrics").

`evaluate` / `evaluate_folders` are the entry points of `difflab eval`; SPECS (difflab.metrics.specs) says
what each metric needs and which accumulator computes it, METRICS lists the names with a description.
Distances measured in different feature spaces (FID: Inception-v3; FDD: the digit classifier) are not
comparable with each other.
"""

from difflab.metrics.class_stats import ClassCounter, ClassStatistics, class_statistics
from difflab.metrics.clip_score import DEFAULT_CLIP_MODEL, ClipScorer, clip_score, load_clip
from difflab.metrics.digit_classifier import (
    DigitClassifier,
    cache_dir,
    load_digit_classifier,
    recipe_sha256,
    train_digit_classifier,
)
from difflab.metrics.evaluate import METRICS, EvalOptions, evaluate, evaluate_folders
from difflab.metrics.features import (
    FEATURE_SPACES,
    FeatureExtractor,
    FeatureModule,
    Passthrough,
    RawFeatures,
    get_feature_extractor,
    images_to_uint8,
)
from difflab.metrics.folders import ImageFolderBatches, check_same_images, load_image_folder_batches
from difflab.metrics.frechet import FeatureStats, frechet_distance, frechet_distance_from_stats
from difflab.metrics.guidance import (
    ClassFrechet,
    class_accuracy,
    class_conditional_fdd,
    mean_pairwise_distance,
    requested_probability,
    shape_accuracy,
)
from difflab.metrics.inception import (
    INCEPTION_WEIGHTS_FILE,
    INCEPTION_WEIGHTS_URL,
    InceptionV3Features,
    inception_cache_path,
    resolve_inception_weights,
)
from difflab.metrics.lowdim import (
    MemorizationReport,
    SW2Ratio,
    describe_sw2_ratio,
    memorization_check,
    mmd_rbf,
    sliced_wasserstein2,
    sw2_floor,
    sw2_ratio,
)
from difflab.metrics.options import Extractors
from difflab.metrics.precision_recall import PrecisionRecall, manifold_radii, precision_recall
from difflab.metrics.specs import AUTO, SPECS, MetricSpec, data_kind, resolve_metrics

__all__ = [
    "AUTO",
    "SPECS",
    "Extractors",
    "MetricSpec",
    "SW2Ratio",
    "data_kind",
    "describe_sw2_ratio",
    "resolve_metrics",
    "sw2_ratio",
    "shape_accuracy",
    "requested_probability",
    "mean_pairwise_distance",
    "class_conditional_fdd",
    "class_accuracy",
    "ClassFrechet",
    "DEFAULT_CLIP_MODEL",
    "FEATURE_SPACES",
    "INCEPTION_WEIGHTS_FILE",
    "INCEPTION_WEIGHTS_URL",
    "METRICS",
    "ClassCounter",
    "ClassStatistics",
    "ClipScorer",
    "DigitClassifier",
    "EvalOptions",
    "FeatureExtractor",
    "FeatureModule",
    "FeatureStats",
    "ImageFolderBatches",
    "InceptionV3Features",
    "MemorizationReport",
    "Passthrough",
    "PrecisionRecall",
    "RawFeatures",
    "cache_dir",
    "check_same_images",
    "class_statistics",
    "clip_score",
    "evaluate",
    "evaluate_folders",
    "frechet_distance",
    "frechet_distance_from_stats",
    "get_feature_extractor",
    "images_to_uint8",
    "inception_cache_path",
    "load_clip",
    "load_digit_classifier",
    "load_image_folder_batches",
    "manifold_radii",
    "memorization_check",
    "mmd_rbf",
    "precision_recall",
    "recipe_sha256",
    "resolve_inception_weights",
    "sliced_wasserstein2",
    "sw2_floor",
    "train_digit_classifier",
]
