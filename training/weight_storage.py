"""How an exported graph stores its weights: float16, or int8 with a scale per output channel.

Either way the file holds small integers or halves behind standard ONNX ops (Cast, then Mul by
the scales for int8) whose inputs are all constants, so ONNX Runtime folds them into float32
weights when it loads the model: the graph computes in float32, at float32 speed, with weights
that are exactly the stored values. Any ONNX consumer (MECOMP's `ort` in Rust) runs it as is.

The fixed front end (`net.frontend.*`: the DFT basis and mel matrix) stays float16 at either
precision: it is not learned, and int8 would move every log-mel frame.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import onnx
from numpy.typing import NDArray
from onnx import numpy_helper

Precision = Literal["float16", "int8"]
PRECISIONS: tuple[Precision, ...] = ("float16", "int8")
# Smaller tensors (biases, norms) stay float32: they cost little and carry offsets.
MIN_STORED_ELEMENTS = 1024
HALF, INT8, SCALE = "_f16", "_i8", "_i8_scale"
FRONT_END_PREFIX = "net.frontend."


def _channel_axis(op_type: str, dims: tuple[int, ...]) -> int | None:
    """The axis of a weight's output channels for the op that reads it (None: one scale)."""
    if op_type == "Conv":
        return 0  # [out, in, kernel]
    if op_type == "GRU":
        return 1  # [directions, 3 * hidden, in]
    if op_type in ("MatMul", "Gemm") and len(dims) == 2:
        return 1  # [in, out]
    return None


def quantize_int8(
    values: NDArray[np.float32], axis: int | None
) -> tuple[NDArray[np.int8], NDArray[np.float32]]:
    """Symmetric int8 with one scale per slice along `axis` (or one for the tensor).

    Returns (q, scale) with values ~= q * scale; scale keeps q's rank (1 along reduced axes).
    """
    reduce = tuple(i for i in range(values.ndim) if i != axis) if axis is not None else None
    peak = np.abs(values).max(axis=reduce, keepdims=True)
    scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
    q = np.clip(np.rint(values / scale), -127, 127).astype(np.int8)
    return q, scale


def _consumers(graph: onnx.GraphProto) -> dict[str, str]:
    """Tensor name -> op type of the first node that reads it."""
    ops: dict[str, str] = {}
    for node in graph.node:
        for name in node.input:
            ops.setdefault(name, node.op_type)
    return ops


def store(model: onnx.ModelProto, precision: Precision) -> None:
    """Rewrites the large float initializers of `model` in place to `precision`."""
    graph = model.graph
    ops = _consumers(graph)
    kept, nodes = [], []
    for init in graph.initializer:
        small = int(np.prod(init.dims)) < MIN_STORED_ELEMENTS
        if init.data_type != onnx.TensorProto.FLOAT or small:
            kept.append(init)
            continue
        name, values = init.name, numpy_helper.to_array(init)
        cast = onnx.TensorProto.FLOAT
        if precision == "float16" or name.startswith(FRONT_END_PREFIX):
            kept.append(numpy_helper.from_array(values.astype(np.float16), name + HALF))
            nodes.append(onnx.helper.make_node("Cast", [name + HALF], [name], to=cast))
            continue
        q, scale = quantize_int8(values, _channel_axis(ops.get(name, ""), tuple(init.dims)))
        kept.append(numpy_helper.from_array(q, name + INT8))
        kept.append(numpy_helper.from_array(scale, name + SCALE))
        nodes += [
            onnx.helper.make_node("Cast", [name + INT8], [name + "_f32"], to=cast),
            onnx.helper.make_node("Mul", [name + "_f32", name + SCALE], [name]),
        ]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    body = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes + body)


def stored_values(graph: onnx.GraphProto) -> dict[str, NDArray[np.float32]]:
    """Every initializer as the float32 values the graph computes with, by its original name."""
    raw = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    values: dict[str, NDArray[np.float32]] = {}
    for name, array in raw.items():
        if name.endswith(SCALE):
            continue
        if name.endswith(INT8):
            base = name.removesuffix(INT8)
            values[base] = (array.astype(np.float32) * raw[base + SCALE]).astype(np.float32)
        else:
            values[name.removesuffix(HALF)] = array.astype(np.float32)
    return values


def precision_of(graph: onnx.GraphProto) -> Precision:
    """int8 where any weight is stored as int8, else float16."""
    return "int8" if any(i.name.endswith(INT8) for i in graph.initializer) else "float16"
