"""Reads an exported segue_stream.onnx back into a torch SegueNet (its weights as stored).

The exporter names some weights after the module (`net.feel_head.weight`) and others after the
node that uses them (MatMul weights transposed, BatchNorm folded into the convs, GRU gates in
ONNX order); folded BatchNorms become identities around the folded conv. The conv width is read
from the first conv's output channels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import torch
from numpy.typing import NDArray

from training.model import CONV_CHANNELS, SegueNet
from training.weight_storage import stored_values

FIRST_CONV = "/net/encoder/convs/convs.0/convs.0.0/Conv"


def _module_path(node_name: str) -> str:
    """ONNX node name -> torch module path: `/net/encoder/convs/convs.0/convs.0.0/Conv` ->
    `encoder.convs.0.0` (each scope repeats its parent's qualified name)."""
    parts: list[str] = []
    for scope in node_name.removeprefix("/net/").split("/")[:-1]:
        if parts and scope.startswith(parts[-1] + "."):
            parts[-1] = scope
        else:
            parts.append(scope)
    return ".".join(parts)


def _gru_gates(x: NDArray[np.float32]) -> NDArray[np.float32]:
    """ONNX GRU gate blocks (z, r, h) along axis 0 -> torch's (r, z, n)."""
    z, r, h = np.split(x, 3, axis=0)
    return np.concatenate([r, z, h], axis=0)


def _width(graph: onnx.GraphProto, values: dict[str, NDArray[np.float32]]) -> float:
    conv = next(n for n in graph.node if n.name == FIRST_CONV)
    channels: int = values[conv.input[1]].shape[0]
    return channels / CONV_CHANNELS[0]


def _folded_conv(
    net: SegueNet, module: str, weights: list[NDArray[np.float32]]
) -> dict[str, NDArray[np.float32]]:
    norm = module.rsplit(".", 1)[0] + ".1"
    bn = net.get_submodule(norm)
    assert isinstance(bn, torch.nn.BatchNorm1d)
    return {
        f"{module}.weight": weights[0],
        f"{norm}.bias": weights[1],
        f"{norm}.weight": np.ones_like(weights[1]),
        f"{norm}.running_mean": np.zeros_like(weights[1]),
        f"{norm}.running_var": np.full_like(weights[1], 1.0 - bn.eps),
    }


def _gru(weights: list[NDArray[np.float32]]) -> dict[str, NDArray[np.float32]]:
    w, r, b = (v[0] for v in weights)
    # The bias is the input biases then the recurrent ones, each in ONNX gate order.
    w_bias, r_bias = np.split(b, 2)
    return {
        "gru.weight_ih_l0": _gru_gates(w),
        "gru.weight_hh_l0": _gru_gates(r),
        "gru.bias_ih_l0": _gru_gates(w_bias),
        "gru.bias_hh_l0": _gru_gates(r_bias),
    }


def net_from_onnx(stream_path: Path) -> SegueNet:
    """SegueNet (eval mode) computing with exactly the weights stored in `stream_path`."""
    graph = onnx.load(str(stream_path)).graph
    values = stored_values(graph)
    for node in graph.node:  # the exporter shares equal constants through Identity nodes
        if node.op_type == "Identity" and node.input[0] in values:
            values[node.output[0]] = values[node.input[0]]
    net = SegueNet(_width(graph, values))
    state = {k: v.clone() for k, v in net.state_dict().items()}
    given = {name[4:]: v for name, v in values.items() if name.startswith("net.")}
    for node in graph.node:
        module = _module_path(node.name)
        weights = [values[x] for x in node.input[1:] if x in values and not x.startswith("net.")]
        if node.op_type == "MatMul" and weights and module != "frontend":
            given[f"{module}.weight"] = weights[0].T
        elif node.op_type == "Conv":
            # By position: a folded bias may be an alias of an equal `net.` tensor.
            given.update(_folded_conv(net, module, [values[x] for x in node.input[1:3]]))
        elif node.op_type == "GRU":
            given.update(_gru(weights))
    unknown = set(given) - set(state)
    missing = {k for k in state if k not in given and not k.endswith("num_batches_tracked")}
    if unknown or missing:
        raise RuntimeError(
            f"cannot map {stream_path} onto SegueNet: unknown {sorted(unknown)}, "
            f"missing {sorted(missing)}"
        )
    for name, value in given.items():
        state[name] = torch.from_numpy(np.ascontiguousarray(value)).reshape(state[name].shape)
    net.load_state_dict(state)
    return net.eval()
