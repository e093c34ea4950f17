"""A user's own model for ``latbench measure``: a ``module:factory`` callable or an ONNX file, and its inputs.

Inputs are given as ``name:shape[:dtype]`` with the shape written ``1x128`` (or
``1,128``); the tensors are random but seeded, integers drawn from ``[0, high)``
where ``high`` defaults to 100 (``name:1x128:int64:30522`` sets it, for token ids).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from latbench.errors import LatbenchError

DTYPES: tuple[str, ...] = ("float32", "float16", "bfloat16", "int64", "int32", "bool")


@dataclass(frozen=True)
class InputSpec:
    """One named model input: its shape, dtype and, for integers, the exclusive upper bound of its values."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"
    high: int = 100

    @classmethod
    def parse(cls, text: str) -> InputSpec:
        """Parse ``name:shape[:dtype[:high]]``, e.g. ``input_ids:1x128:int64:30522``."""
        parts = text.split(":")
        if len(parts) < 2 or len(parts) > 4 or not parts[0]:
            raise LatbenchError("--input", f"{text!r}: expected name:shape[:dtype[:high]], e.g. x:1x3x224x224")
        name, shape_text = parts[0], parts[1].replace(",", "x")
        try:
            shape = tuple(int(s) for s in shape_text.split("x"))
        except ValueError:
            raise LatbenchError("--input", f"{text!r}: shape {parts[1]!r} is not like 1x128") from None
        if not shape or any(s < 1 for s in shape):
            raise LatbenchError("--input", f"{text!r}: every dimension must be >= 1")
        dtype = parts[2] if len(parts) > 2 else "float32"
        if dtype not in DTYPES:
            raise LatbenchError("--input", f"{text!r}: unknown dtype {dtype!r} (expected one of {', '.join(DTYPES)})")
        high = 100
        if len(parts) > 3:
            try:
                high = int(parts[3])
            except ValueError:
                raise LatbenchError("--input", f"{text!r}: upper bound {parts[3]!r} is not an integer") from None
            if high < 1:
                raise LatbenchError("--input", f"{text!r}: upper bound must be >= 1")
        return cls(name=name, shape=shape, dtype=dtype, high=high)

    def make(self, seed: int = 0) -> Any:
        """A seeded random tensor of this spec (CPU)."""
        import torch

        gen = torch.Generator().manual_seed(seed)
        dtype = getattr(torch, self.dtype)
        if self.dtype == "bool":
            return torch.randint(0, 2, self.shape, generator=gen).bool()
        if self.dtype.startswith("int"):
            return torch.randint(0, self.high, self.shape, generator=gen, dtype=dtype)
        return torch.randn(self.shape, generator=gen).to(dtype)


def load_factory(target: str) -> Any:
    """Import ``module:factory`` (or ``path/to/file.py:factory``) and call it; it must return an ``nn.Module``."""
    import torch

    from latbench.io import import_object

    if ":" not in target:
        raise LatbenchError("MODEL", f"{target!r}: expected module:factory or an .onnx file")
    factory = import_object(target, "MODEL")
    if not callable(factory):
        raise LatbenchError("MODEL", f"{target!r} is not callable")
    try:
        model = factory()
    except Exception as exc:
        raise LatbenchError("MODEL", f"{target}() failed: {type(exc).__name__}: {exc}") from None
    if not isinstance(model, torch.nn.Module):
        raise LatbenchError("MODEL", f"{target}() returned {type(model).__name__}, expected a torch.nn.Module")
    return model.eval()
