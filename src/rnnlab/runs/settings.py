"""The settings of a run worth showing: the one curated view that ``rnnlab runs`` (list, diff) and
TensorBoard's HPARAMS table (``rnnlab.app.session``) both show.

A run's record keeps every resolved config value (``params``); a reader compares runs by what a user set:
no ``_target_``/``_partial_`` keys, no paths (the run's own directory, ``paths.*``, ``data.data_dir``), no
derived copies (``run_name`` repeats cell, impl and hidden size; ``data.shuffle_seed`` is ``${seed}``;
``model.scheduler.max_lr`` is ``${model.optimizer.lr}``), no reporting switches (``REPORTING``), and the key
settings first.

Derived copies are found from the config itself, not from a list of names: a key whose value in the
unresolved config interpolates another key (``${seed}``) is a copy (``derived_keys``); a run records
those keys (``derived`` in run.json), so a listing knows them without reading the config again.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

# Shown first, in this order, by every view (the rest follow in config order).
KEY_SETTINGS = ("model.cell", "model.impl", "model.hidden_size", "model.optimizer.lr", "seed")
# How a run reports (progress bar, layer table, logging interval, testing) and how many threads it takes:
# a sweep changes them for its trials, yet runs that differ only there learned the same thing.
REPORTING = (
    "trainer.enable_progress_bar",
    "trainer.enable_model_summary",
    "trainer.log_every_n_steps",
    "trainer.num_sanity_val_steps",
    "threads",
    "test",
)
# Where things go, not what the run is.
PATH_SECTIONS = ("paths.", "hydra.")
PATH_SUFFIXES = ("_dir", "_path", "dirpath")
PATH_NAMES = ("dir", "ckpt")
# A reference to another config node (``${seed}``, ``${model.optimizer.lr}``); resolver calls such as
# ``${hydra:runtime.choices.data}`` or ``${oc.env:RNNLAB_ROOT}`` compute a value and are not copies.
_NODE_REFERENCE = re.compile(r"\$\{[^:{}]+\}")


def derived_keys(unresolved: Mapping[str, Any]) -> list[str]:
    """The flat keys whose value in an unresolved config (``OmegaConf.to_container(cfg, resolve=False)``)
    refers to another key: copies of a setting shown elsewhere (or of a path)."""
    from rnnlab.runs.store import flatten_params

    return [
        key
        for key, value in flatten_params(unresolved).items()
        if isinstance(value, str) and _NODE_REFERENCE.search(value)
    ]


def is_path(key: str, value: Any) -> bool:
    """Whether a setting says where things are (the run's own directory, data, checkpoints)."""
    last = key.rsplit(".", 1)[-1]
    if key.startswith(PATH_SECTIONS) or last.endswith(PATH_SUFFIXES) or last in PATH_NAMES:
        return True
    return isinstance(value, str) and (os.path.isabs(value) or value.startswith(("./", "../", "~/")))


def is_internal(key: str) -> bool:
    """Instantiation plumbing (``_target_``, ``_partial_``, ``_recursive_``...) rather than a setting."""
    return any(part.startswith("_") for part in key.split("."))


def settings(params: Mapping[str, Any], derived: Iterable[str] = (), same_as: Iterable[Any] = ()) -> dict[str, Any]:
    """The settings of flat ``params`` worth showing, key settings first.

    ``derived``: keys that copy another key (``derived_keys``); ``same_as``: values shown elsewhere (the run's
    name): a setting equal to one is left out, which also catches ``run_name`` in records without ``derived``.
    """
    skip = set(derived)
    shown_elsewhere = {str(value) for value in same_as if value}
    kept = {
        key: value
        for key, value in params.items()
        if key not in skip
        and key not in REPORTING
        and not is_internal(key)
        and not is_path(key, value)
        and not (isinstance(value, str) and value in shown_elsewhere)
    }
    first = {key: kept[key] for key in KEY_SETTINGS if key in kept}
    return {**first, **{key: value for key, value in kept.items() if key not in first}}


def record_settings(record: Mapping[str, Any]) -> dict[str, Any]:
    """``settings`` of a run's record (its params, the derived keys it recorded, its name)."""
    return settings(record.get("params") or {}, record.get("derived") or (), same_as=[record.get("name")])


def short_names(keys: Sequence[str]) -> dict[str, str]:
    """Column labels: the shortest dotted suffix that tells a key from the others (``model.optimizer.lr``
    -> ``lr``; ``model.dropout`` and ``data.dropout`` stay two segments long)."""
    labels = {}
    for key in keys:
        parts = key.split(".")
        for size in range(1, len(parts) + 1):
            label = ".".join(parts[-size:])
            clashes = [other for other in keys if other != key and (other == label or other.endswith("." + label))]
            if not clashes:
                break
        labels[key] = label
    return labels
