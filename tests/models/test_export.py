"""Dense models export to ONNX (TorchScript path) and ONNX Runtime agrees; CUDA-graph capture on a GPU."""

from __future__ import annotations

import io
import warnings

import pytest
import torch

from latbench.models import block_inputs, build_block, build_model, example_inputs
from tests.models.helpers import FAMILIES, hetero_arch, randomise


def export_onnx(module: torch.nn.Module, args: tuple[torch.Tensor, ...], name: str, dynamic: dict[int, str]) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter announces its deprecation
        torch.onnx.export(
            module,
            args,
            buffer,
            dynamo=False,
            opset_version=17,
            input_names=[name],
            output_names=["out"],
            dynamic_axes={name: dynamic, "out": {0: "batch"}},
        )
    return buffer.getvalue()


@pytest.mark.parametrize("family", FAMILIES)
def test_onnx_export_runs_in_onnxruntime_with_equal_outputs(family: str) -> None:
    pytest.importorskip("onnx", reason="onnx is not installed (extra: onnx)")
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (extra: onnx)")
    arch = hetero_arch(family)
    model = build_model(arch, seed=1)
    randomise(model, seed=1, std=0.1)
    name = "pixel_values" if family == "vit" else "input_ids"
    dynamic = {0: "batch"} if family == "vit" else {0: "batch", 1: "seq"}
    onnx_bytes = export_onnx(model, example_inputs(arch, 2, 16), name, dynamic)
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    (x,) = example_inputs(arch, 3, 11, seed=7)  # other batch and length than exported: the axes stay dynamic
    (got,) = session.run(None, {name: x.numpy()})
    with torch.no_grad():
        expected = model(x).numpy()
    assert got.shape == expected.shape
    assert abs(got - expected).max() <= 1e-4


def test_gpt_block_exports_with_its_own_rotary_tables() -> None:
    pytest.importorskip("onnx", reason="onnx is not installed (extra: onnx)")
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (extra: onnx)")
    arch = hetero_arch("gpt")
    block = build_block(arch, 0)
    randomise(block, std=0.1)
    onnx_bytes = export_onnx(block, block_inputs(arch, 2, 16), "x", {0: "batch", 1: "tokens"})
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    (x,) = block_inputs(arch, 1, 9, seed=3)
    (got,) = session.run(None, {"x": x.numpy()})
    with torch.no_grad():
        assert abs(got - block(x).numpy()).max() <= 1e-4


@pytest.mark.gpu
@pytest.mark.parametrize("family", FAMILIES)
def test_dense_model_replays_as_a_cuda_graph(family: str) -> None:
    arch = hetero_arch(family)
    model = build_model(arch).cuda()
    inputs = example_inputs(arch, 2, 16, device="cuda")
    with torch.no_grad():
        eager = model(*inputs)
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(3):
                model(*inputs)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            captured = model(*inputs)
        graph.replay()
    torch.cuda.synchronize()
    torch.testing.assert_close(captured, eager, rtol=1e-4, atol=1e-4)
