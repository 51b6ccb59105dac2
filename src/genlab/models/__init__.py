"""Plain nn.Module families behind one registry; usable without Hydra."""
from genlab.models.registry import (
    LogitsWithAux,
    available_models,
    build_model,
    check_knob,
    count_flops,
    count_parameters,
    format_flops,
    model_knobs,
    register_model,
)

__all__ = ["LogitsWithAux", "available_models", "build_model", "check_knob", "count_flops", "count_parameters", "format_flops",
           "model_knobs", "register_model"]
