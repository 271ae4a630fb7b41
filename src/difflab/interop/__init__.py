"""diffusers models as difflab denoisers (optional extra `difflab[diffusers]`; docs/diffusers.md).

`schedule_from_config` reads a scheduler config as a process, parameterization and time mapping;
`DiffusersDenoiser` wraps a model with it; `load_diffusers` loads a folder or cached hub id, offline.
diffusers itself is imported only when a config or folder is read.
"""

from difflab.interop.denoiser import DiffusersDenoiser
from difflab.interop.load import load_diffusers
from difflab.interop.schedule import DiffusersSchedule, DiffusersVP, schedule_from_config

__all__ = ["DiffusersDenoiser", "DiffusersSchedule", "DiffusersVP", "load_diffusers", "schedule_from_config"]
