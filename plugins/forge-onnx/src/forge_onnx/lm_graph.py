"""Graph rewrites that make an exported decoder cheaper to run on ONNX Runtime's CPU provider, each exact up to
float rounding (``forge export`` applies them before its parity check, so the fp32 gate judges the rewritten graph).

- :func:`drop_repeat_kv`: an opset-23 ``Attention`` node fed with the KV heads repeated for grouped-query attention
  (``Unsqueeze`` → ``Expand`` → ``Reshape``, transformers' ``repeat_kv``) gets the cache itself; the kernel groups
  query heads over KV heads without materialising the copies.
- :func:`pack_matmuls`: MatMuls that read the same activation with constant weights of the same input size (q/k/v
  projections, gate/up) become one MatMul over the concatenated weight and a ``Split``: fewer, larger kernels
  (which matters most after block-wise int8, where each MatMul is a short memory-bound pass).

Both work on an ``onnx.ModelProto`` in place and return how many places they changed; :func:`prune` removes the
nodes and initializers left without consumers.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any


def _producers(graph: Any) -> dict[str, Any]:
    return {output: node for node in graph.node for output in node.output}


def prune(graph: Any) -> int:
    """Drop nodes none of whose outputs are used (repeatedly), then initializers no node reads."""
    removed = 0
    while True:
        used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
        dead = [node for node in graph.node if not any(o in used for o in node.output)]
        if not dead:
            break
        for node in dead:
            graph.node.remove(node)
        removed += len(dead)
    used = {name for node in graph.node for name in node.input} | {i.name for i in graph.input}
    for initializer in [i for i in graph.initializer if i.name not in used]:
        graph.initializer.remove(initializer)
    return removed


def drop_repeat_kv(model: Any) -> int:
    graph = model.graph
    producers = _producers(graph)
    rewired = 0
    for node in graph.node:
        if node.op_type != "Attention" or node.domain not in ("", "ai.onnx"):
            continue
        for slot in (1, 2):
            reshape = producers.get(node.input[slot])
            expand = producers.get(reshape.input[0]) if reshape is not None and reshape.op_type == "Reshape" else None
            unsqueeze = producers.get(expand.input[0]) if expand is not None and expand.op_type == "Expand" else None
            if unsqueeze is not None and unsqueeze.op_type == "Unsqueeze":
                node.input[slot] = unsqueeze.input[0]
                rewired += 1
    if rewired:
        prune(graph)
    return rewired


def pack_matmuls(model: Any) -> int:
    import numpy as np
    from onnx import helper, numpy_helper

    graph = model.graph
    initializers = {i.name: i for i in graph.initializer}
    groups: dict[str, list[Any]] = defaultdict(list)
    for node in graph.node:
        if node.op_type == "MatMul" and node.domain in ("", "ai.onnx") and node.input[1] in initializers \
                and len(initializers[node.input[1]].dims) == 2:
            groups[node.input[0]].append(node)
    packed = 0
    for source, nodes in groups.items():
        weights = [numpy_helper.to_array(initializers[n.input[1]]) for n in nodes]
        if len(nodes) < 2 or len({(w.shape[0], w.dtype) for w in weights}) != 1:
            continue
        first = min(list(graph.node).index(n) for n in nodes)
        name = f"{nodes[0].name or nodes[0].output[0]}.packed"
        graph.initializer.append(numpy_helper.from_array(np.concatenate(weights, axis=1), f"{name}.weight"))
        graph.initializer.append(numpy_helper.from_array(np.asarray([w.shape[1] for w in weights], np.int64),
                                                         f"{name}.sizes"))
        matmul = helper.make_node("MatMul", [source, f"{name}.weight"], [f"{name}.out"], name=name)
        split = helper.make_node("Split", [f"{name}.out", f"{name}.sizes"], [n.output[0] for n in nodes],
                                 name=f"{name}.split", axis=-1)
        for node in nodes:
            graph.node.remove(node)
        graph.node.insert(first, split)
        graph.node.insert(first, matmul)
        packed += 1
    if packed:
        prune(graph)
    return packed
