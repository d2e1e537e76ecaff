"""Graph rewrites that make an exported decoder cheaper to run on ONNX Runtime's CPU provider, each exact up to
float rounding (``forge export`` applies them before its parity check, so the fp32 gate judges the rewritten graph).

- :func:`drop_repeat_kv`: an opset-23 ``Attention`` node fed with the KV heads repeated for grouped-query attention
  (``Unsqueeze`` → ``Expand`` → ``Reshape``, transformers' ``repeat_kv``) gets the cache itself; the kernel groups
  query heads over KV heads without materialising the copies.
- :func:`pack_matmuls`: MatMuls that read the same activation with constant weights of the same input size (q/k/v
  projections, gate/up) become one MatMul over the concatenated weight and a ``Split``: fewer, larger kernels
  (which matters most after block-wise int8, where each MatMul is a short memory-bound pass).

- :func:`fuse_group_query_attention`: each layer's rotary embeddings, cache concatenation, ``Attention`` and the
  transposes around it become one ``com.microsoft.GroupQueryAttention`` (rotary inside, from a cos/sin table of the
  model's ``inv_freq``; the attention mask as its ``attention_bias`` and ``position_ids`` for the rotary angles, so
  a left-padded batch still runs). Same inputs and outputs as before, about a third of the nodes per layer.

Each works on an ``onnx.ModelProto`` in place and returns how many places it changed; :func:`prune` removes the
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


def fuse_group_query_attention(model: Any, num_heads: int, kv_heads: int, max_positions: int) -> int:
    """Replace ``Attention(RotaryEmbedding(q), Concat(past_k, RotaryEmbedding(k)), Concat(past_v, v), mask)`` (q, k,
    v each ``Transpose(Reshape(projection))``; the output ``[Where] → Transpose → Reshape``) by one
    ``GroupQueryAttention`` on the projections. Needs the opset-23 graph after :func:`drop_repeat_kv`, rotary on the
    whole head (not interleaved) from ``Cos/Sin(position_ids × inv_freq)``, and a head size that is a multiple of
    16 (onnxruntime's kernel); anything else is left as it is."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    producers = _producers(graph)
    consumers: dict[str, list[Any]] = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            consumers[name].append(node)
    initializers = {i.name: i for i in graph.initializer}
    inputs = {i.name for i in graph.input}
    if not {"attention_mask", "position_ids"} <= inputs:
        return 0

    def made_by(name: str, op: str) -> Any:
        node = producers.get(name)
        return node if node is not None and node.op_type == op else None

    def projection(name: str) -> str | None:  # Transpose(Reshape(x)) -> x
        transpose = made_by(name, "Transpose")
        reshape = made_by(transpose.input[0], "Reshape") if transpose is not None else None
        return reshape.input[0] if reshape is not None else None

    def inv_freq(cos: str) -> Any:
        node = made_by(cos, "Cos")
        angles = made_by(node.input[0], "Mul") if node is not None else None
        found = [initializers[n] for n in angles.input if n in initializers] if angles is not None else []
        return numpy_helper.to_array(found[0]).astype(np.float32).reshape(-1) if len(found) == 1 else None

    def attributes(node: Any) -> dict[str, Any]:
        return {a.name: helper.get_attribute_value(a) for a in node.attribute}

    replaced: dict[int, Any] = {}
    removed: set[int] = set()
    tables: dict[bytes, str] = {}
    for attention in graph.node:
        if attention.op_type != "Attention" or attention.domain not in ("", "ai.onnx") or len(attention.input) < 3:
            continue
        rotary_q = made_by(attention.input[0], "RotaryEmbedding")
        concat_k, concat_v = made_by(attention.input[1], "Concat"), made_by(attention.input[2], "Concat")
        if rotary_q is None or concat_k is None or concat_v is None or len(concat_k.input) != 2 \
                or len(concat_v.input) != 2 or concat_k.input[0] not in inputs or concat_v.input[0] not in inputs:
            continue
        rotary_k = made_by(concat_k.input[1], "RotaryEmbedding")
        if rotary_k is None or any(attributes(r).get("interleaved", 0) or attributes(r).get("rotary_embedding_dim", 0)
                                   for r in (rotary_q, rotary_k)):
            continue
        q, k, v = projection(rotary_q.input[0]), projection(rotary_k.input[0]), projection(concat_v.input[1])
        frequencies = inv_freq(rotary_q.input[1])
        if q is None or k is None or v is None or frequencies is None or (2 * frequencies.size) % 16:
            continue
        if inv_freq(rotary_k.input[1]) is None or not np.array_equal(inv_freq(rotary_k.input[1]), frequencies):
            continue
        tail, users = [], consumers[attention.output[0]]
        if len(users) == 1 and users[0].op_type == "Where" and list(users[0].input[2:]) == [attention.output[0]]:
            tail.append(users[0])
            users = consumers[users[0].output[0]]
        for op in ("Transpose", "Reshape"):
            if len(users) != 1 or users[0].op_type != op:
                break
            tail.append(users[0])
            users = consumers[users[0].output[0]]
        if not tail or tail[-1].op_type != "Reshape":
            continue
        key = frequencies.tobytes()
        if key not in tables:
            tables[key] = f"gqa.rotary{len(tables)}"
            angles = np.arange(max_positions, dtype=np.float32)[:, None] * frequencies[None, :]
            graph.initializer.extend([numpy_helper.from_array(np.cos(angles), f"{tables[key]}.cos"),
                                      numpy_helper.from_array(np.sin(angles), f"{tables[key]}.sin")])
        scale = attributes(attention).get("scale")
        mask = attention.input[3] if len(attention.input) > 3 else ""
        replaced[id(attention)] = helper.make_node(
            "GroupQueryAttention",
            [q, k, v, concat_k.input[0], concat_v.input[0], "gqa.seqlens_k", "gqa.total_length",
             f"{tables[key]}.cos", f"{tables[key]}.sin", "position_ids", mask],
            [tail[-1].output[0], concat_k.output[0], concat_v.output[0]], name=f"{attention.name}.gqa",
            domain="com.microsoft", num_heads=num_heads, kv_num_heads=kv_heads, do_rotary=1, rotary_interleaved=0)
        if scale is not None:
            replaced[id(attention)].attribute.append(helper.make_attribute("scale", float(scale)))
        removed.update(id(n) for n in (concat_k, concat_v, *tail))
    if not replaced:
        return 0
    # every row attends over the whole (left-padded) length; the mask goes in as attention_bias
    lengths = [
        helper.make_node("Shape", ["attention_mask"], ["gqa.length64"], start=1, end=2),
        helper.make_node("Cast", ["gqa.length64"], ["gqa.length"], to=TensorProto.INT32),
        helper.make_node("Squeeze", ["gqa.length"], ["gqa.total_length"]),
        helper.make_node("Sub", ["gqa.length", "gqa.one"], ["gqa.last"]),
        helper.make_node("Shape", ["attention_mask"], ["gqa.batch"], start=0, end=1),
        helper.make_node("Expand", ["gqa.last", "gqa.batch"], ["gqa.seqlens_k"]),
    ]
    graph.initializer.append(numpy_helper.from_array(np.asarray([1], np.int32), "gqa.one"))
    nodes = [replaced.get(id(n), n) for n in graph.node if id(n) not in removed]
    del graph.node[:]
    graph.node.extend(lengths + nodes)
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    prune(graph)
    return len(replaced)
