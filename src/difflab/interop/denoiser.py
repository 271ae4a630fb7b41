"""A diffusers model (UNet2DModel, UNet2DConditionModel, DiT / SD3-style transformers) as a difflab denoiser.

D(x_t, t, cond) = model(x_t, timestep(t), **kwargs).sample with timestep(t) from `DiffusersSchedule`
(schedule.py: T t - 1 on a VP table, T t on a flow), the parameterization and process read from the
scheduler config, so every difflab sampler, grid, guidance wrapper and editing tool runs on it unchanged.

Conditioning (difflab.utils.cond names -> the model's keyword, where its forward takes it):
"context" -> encoder_hidden_states, "context_mask" -> encoder_attention_mask, "class_labels" ->
class_labels, "pooled" -> pooled_projections (SD3). Rows whose "drop" is True (classifier-free guidance's
unconditional half) take `null_cond` instead: diffusers models have no learned null token of their own; the
null is the empty prompt's embedding (Stable Diffusion) or the extra class index num_classes (DiT).
A transformer that also predicts its variance (DiT: out_channels = 2 in_channels, Nichol & Dhariwal 2021)
answers with the first half of its channels, the eps prediction, as DiT's pipeline does.
"""

from __future__ import annotations

import inspect

import torch
from torch import Tensor, nn

from difflab.interop.schedule import DiffusersSchedule
from difflab.param.denoiser import Denoiser
from difflab.utils.cond import Cond
from difflab.utils.errors import DifflabError

KEYWORDS = {"context": "encoder_hidden_states", "context_mask": "encoder_attention_mask",
            "class_labels": "class_labels", "pooled": "pooled_projections"}


class DiffusersDenoiser(nn.Module, Denoiser):
    """A diffusers model with its scheduler's process, parameterization and time mapping (module doc)."""

    def __init__(self, model: nn.Module, schedule: DiffusersSchedule, null_cond: Cond | None = None):
        super().__init__()
        self.model, self.schedule = model, schedule
        self.process = schedule.process
        self.parameterization = schedule.parameterization
        self.null_cond = null_cond
        params = inspect.signature(model.forward).parameters
        self._accepts = set(params)
        self._x_name = "sample" if "sample" in params else "hidden_states"

    @property
    def dtype(self) -> torch.dtype | None:
        """The model's parameter dtype (None for a model without parameters: inputs keep theirs)."""
        p = next(self.model.parameters(), None)
        return None if p is None else p.dtype

    def default_grid(self, steps: int) -> Tensor:
        return self.schedule.default_grid(steps)

    def _kwargs(self, cond: Cond | None, batch: int) -> dict:
        if not cond:
            return {}
        cond = self._with_null(cond, batch)
        out = {}
        for key, value in cond.items():
            if key == "drop":
                continue
            name = KEYWORDS.get(key)
            if name is None or name not in self._accepts:
                raise DifflabError(
                    f"the condition {key!r} has no input on {type(self.model).__name__}; it takes "
                    f"{', '.join(k for k, v in KEYWORDS.items() if v in self._accepts) or 'no condition'}"
                )
            out[name] = value.to(self.dtype) if value.is_floating_point() and self.dtype else value
        return out

    def _with_null(self, cond: Cond, batch: int) -> Cond:
        drop = cond.get("drop")
        if drop is None or not bool(drop.any()):
            return cond
        if self.null_cond is None:
            raise DifflabError(
                "this diffusers model has no learned null condition: pass null_cond (the empty prompt's "
                "embedding, or DiT's class index num_classes) to the loader, or a negative condition to guidance"
            )
        out = {}
        for key, value in cond.items():
            if key == "drop" or key not in self.null_cond:
                out[key] = value
                continue
            null = self.null_cond[key].to(value.device)
            null = null.expand(batch, *null.shape[1:]) if null.shape[0] == 1 else null
            where = drop.reshape(-1, *([1] * (value.ndim - 1)))
            out[key] = torch.where(where, null.to(value.dtype), value)
        return out

    def forward(self, x: Tensor, t: Tensor, cond: Cond | None = None) -> Tensor:
        batch = x.shape[0]
        t = torch.as_tensor(t, device=x.device).expand(batch)
        dtype = self.dtype or x.dtype
        tau = self.schedule.timestep(t).to(dtype)
        out = self.model(**{self._x_name: x.to(dtype)}, timestep=tau, **self._kwargs(cond, batch),
                         return_dict=False)[0]
        if out.shape[1] == 2 * x.shape[1]:  # learned variance (DiT): the first half is the prediction
            out = out[:, : x.shape[1]]
        return out.to(x.dtype)
