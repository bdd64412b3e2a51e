"""The one vocabulary (CONTRIBUTING.md) and the authors' spellings of it — torch-free, so that the
table-reading code can use it without importing torch.

Examples
--------
>>> MODEL_LABELS["wrn28_2"]
'Wide-Resnet-28-2'
>>> MODEL_NAMES["Resnet-20"]
'resnet20'
"""

from __future__ import annotations

__all__ = [
    "MODELS",
    "PAI_PRUNERS",
    "DST_METHODS",
    "PAPER_DST_METHODS",
    "PRUNER_TRANSFORMS",
    "MODEL_LABELS",
    "MODEL_NAMES",
    "DATASET_LABELS",
    "DATASET_NAMES",
    "TOPOMETRIC_NORMALISER",
]

#: Our model names, in the order of the paper's tables.
MODELS: tuple[str, ...] = ("conv6", "resnet20", "resnet32", "wrn28_2", "mobilenetv2")

#: Pruning-at-initialisation algorithms (SPEC §4), in the order of the paper's tables.
PAI_PRUNERS: tuple[str, ...] = ("snip", "grasp", "synflow", "prospr", "uniform", "er", "erk")
#: Dynamic sparse training methods (SPEC §4): the mask moves during training.
DST_METHODS: tuple[str, ...] = ("set", "snfs", "dsr", "rigl", "itop")
#: The DST methods that appear in the authors' published tables (no SET there).
PAPER_DST_METHODS: tuple[str, ...] = ("snfs", "rigl", "dsr", "itop")

#: Transforms a pruner name or spec takes as a ``+<transform>`` suffix (``snip+shuffle``):
#: ``shuffle`` keeps each layer's kept count and redraws the positions at random (Frankle et al.
#: 2021), the null model for "topology beyond layer-wise density" (SPEC §4).
PRUNER_TRANSFORMS: tuple[str, ...] = ("shuffle",)

#: Our model names → the labels of the authors' code and published tables.
MODEL_LABELS: dict[str, str] = {
    "conv6": "CONV-6",
    "resnet20": "Resnet-20",
    "resnet32": "Resnet-32",
    "wrn28_2": "Wide-Resnet-28-2",
    "mobilenetv2": "MobileNetV2",
}
#: The authors' labels → our names.
MODEL_NAMES: dict[str, str] = {label: name for name, label in MODEL_LABELS.items()}

#: Our dataset names → the authors' labels (the embedded digits set is ours only).
DATASET_LABELS: dict[str, str] = {
    "cifar10": "CIFAR-10",
    "cifar100": "CIFAR-100",
    "tinyimagenet": "tinyimagenet",
}
DATASET_NAMES: dict[str, str] = {label: name for name, label in DATASET_LABELS.items()}

#: The 16 topometrics of SPEC §6 in its order, with the authors' column names, and what the
#: authors' tables divide each by: "V" (nodes), "E" (edges) or None (stored raw). Computed by
#: :mod:`mgelib.metrics.topo`, read back by :mod:`mgelib.paperdata`.
TOPOMETRIC_NORMALISER: dict[str, str | None] = {
    "sink_nodes": "V",
    "source_nodes": "V",
    "disc_nodes": "V",
    "r-out": "E",
    "r-in": "E",
    "1-hop_nei": "E",
    "2-hop_nei": "E",
    "motif": "E",
    "avg_node_strength": "E",
    "k-core": "E",
    "cut-edges": "E",
    "cut-nodes": "E",
    "no_connected_components": None,
    "mean_connected_components": "V",
    "spectral_gap": None,
    "spectral_radius": None,
}
