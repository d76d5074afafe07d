"""Builds that return the next-token logits of the prompt's last position only (the builder's `prune_lm_head`).

Generation reads no other position, so the laptop profile's INT4 and INT8 builds skip the LM head everywhere else
in a prefill; perplexity needs every position, so it scores such a build through a view without the cut.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path


def _decoder_file(build_dir: Path) -> Path:
    """The decoder graph a genai folder names (`model.onnx` for the builder's; published folders name theirs)."""
    config = Path(build_dir) / "genai_config.json"
    name = "model.onnx"
    if config.exists():
        name = json.loads(config.read_text(encoding="utf-8"))["model"]["decoder"].get("filename", name)
    return Path(build_dir) / name


def prunes_lm_head(build_dir: Path) -> bool:
    """Whether a build computes the logits of the last position only (the builder's `prune_lm_head`). Lab 01."""
    import onnx

    graph_file = _decoder_file(build_dir)
    if not graph_file.exists():
        return False
    graph = onnx.load(str(graph_file), load_external_data=False).graph
    return any(node.name == _PRUNE_GATHER for node in graph.node)


_PRUNE_GATHER, _PRUNE_UNSQUEEZE = "/lm_head/prune/Gather", "/lm_head/prune/Unsqueeze"


@contextlib.contextmanager
def every_position_logits(build_dir: Path):
    """A temporary view of a `prune_lm_head` build whose graph returns the logits of every position. Lab 01.

    Perplexity scores each position of a text from one prefill; a pruned build returns only the last one. The
    view is the same graph without the builder's Gather + Unsqueeze before the LM head, beside hard links to the
    same weights (nothing is copied), so it scores exactly the weights attendees run."""
    import onnx

    build_dir = Path(build_dir)
    graph_file = _decoder_file(build_dir)
    model = onnx.load(str(graph_file), load_external_data=False)
    nodes = {node.name: node for node in model.graph.node}
    gather, unsqueeze = nodes[_PRUNE_GATHER], nodes[_PRUNE_UNSQUEEZE]
    for node in model.graph.node:
        node.input[:] = [gather.input[0] if name == unsqueeze.output[0] else name for name in node.input]
    model.graph.node.remove(gather)
    model.graph.node.remove(unsqueeze)
    for output in model.graph.output:
        if output.name == "logits":
            output.type.tensor_type.shape.dim[1].dim_param = "sequence_length"
    view = Path(tempfile.mkdtemp(prefix=".every-position-", dir=build_dir.parent))
    try:
        for item in build_dir.iterdir():
            if item.is_file() and item.name != graph_file.name:
                try:
                    os.link(item, view / item.name)
                except OSError:          # another filesystem: a link to the file will do
                    (view / item.name).symlink_to(item.resolve())
        onnx.save(model, str(view / graph_file.name))
        yield view
    finally:
        shutil.rmtree(view, ignore_errors=True)
