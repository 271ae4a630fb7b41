"""Pictures: image grids, loss curves, trajectories, marginal densities and score fields."""

from difflab.viz.fields import plot_marginals_1d, plot_points, plot_score_fields_2d
from difflab.viz.io import image_grid, save_figure, save_image_grid, to_uint8

__all__ = ["image_grid", "plot_marginals_1d", "plot_points", "plot_score_fields_2d", "save_figure", "save_image_grid", "to_uint8"]
