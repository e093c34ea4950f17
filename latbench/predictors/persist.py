"""Saving and loading a predictor directory, atomically and validated.

A predictor directory holds:

- ``predictor.json``: format, schema version, model name, config, feature set,
  validity, statistic, and the model's own state (or the names of its files);
- the model's files (``model.ubj`` + ``interval.ubj`` for xgboost, ``model.pt``
  for the MLP, ``lut.json`` + ``lut_sum.json`` for lut-sum ...);
- ``card.json`` (:class:`~latbench.predictors.card.ModelCard`);
- ``predicted_vs_measured.png`` when matplotlib (the ``plot`` extra) is installed.

The directory is written whole into a temporary sibling and renamed into place,
so a reader never sees half a predictor and a failed save leaves the old one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from latbench.errors import LatbenchError
from latbench.predictors.base import Predictor, get_predictor_class
from latbench.predictors.card import ModelCard
from latbench.predictors.data import Validity
from latbench.predictors.features import FeatureSpec

PREDICTOR_FORMAT = "latbench-predictor"
PREDICTOR_SCHEMA_VERSION = 1
PREDICTOR_FILE = "predictor.json"
CARD_FILE = "card.json"
PLOT_FILE = "predicted_vs_measured.png"


def predictor_document(predictor: Predictor, state: Mapping[str, Any]) -> dict[str, Any]:
    """What ``predictor.json`` holds for ``predictor`` with its saved ``state``."""
    from latbench import __version__

    if predictor.features is None:
        raise LatbenchError(predictor.name, "no feature set; fit the predictor before saving it")
    return {
        "format": PREDICTOR_FORMAT,
        "schema_version": PREDICTOR_SCHEMA_VERSION,
        "latbench_version": __version__,
        "model": predictor.name,
        "config": predictor.config.to_dict(),
        "features": predictor.features.to_dict(),
        "validity": None if predictor.validity is None else predictor.validity.to_dict(),
        "statistic": predictor.statistic,
        "state": dict(state),
    }


def write_predictor_files(predictor: Predictor, directory: Path) -> None:
    """Write ``predictor.json`` and the model's files into an existing directory."""
    from latbench.io import atomic_write_json

    if not predictor.fitted:
        raise LatbenchError(predictor.name, "not fitted yet; nothing to save")
    state = predictor.save_state(directory)
    atomic_write_json(directory / PREDICTOR_FILE, predictor_document(predictor, state))


def _umask_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o777 & ~umask


def save_predictor(
    predictor: Predictor,
    directory: str | os.PathLike[str],
    card: ModelCard | None = None,
    extra: Callable[[Path], None] | None = None,
) -> Path:
    """Write a trained predictor (and its card) as a directory, atomically.

    An existing predictor directory at the same place is replaced; any other
    non-empty directory (or a file) is refused.

    Args:
        predictor: A fitted predictor.
        directory: Where to write it.
        card: Its model card.
        extra: Called with the temporary directory to add files (e.g. the plot).
    """
    dest = Path(directory)
    if dest.exists():
        if not dest.is_dir():
            raise LatbenchError(str(dest), "exists and is not a directory")
        if any(dest.iterdir()) and not (dest / PREDICTOR_FILE).exists():
            raise LatbenchError(str(dest), "is a non-empty directory that holds no predictor; refusing to replace it")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        os.chmod(tmp, _umask_mode())
        write_predictor_files(predictor, tmp)
        if card is not None:
            card.save(tmp / CARD_FILE)
        if extra is not None:
            extra(tmp)
        if dest.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".old", dir=dest.parent))
            os.replace(dest, old / "x")
            os.replace(tmp, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def read_predictor_files(directory: Path) -> Predictor:
    """Build a predictor from ``predictor.json`` and the model's files in ``directory``."""
    from latbench.io import read_json

    where = str(directory / PREDICTOR_FILE)
    if not (directory / PREDICTOR_FILE).is_file():
        raise LatbenchError(str(directory), f"not a predictor directory (no {PREDICTOR_FILE})")
    doc = read_json(directory / PREDICTOR_FILE)
    if not isinstance(doc, Mapping) or doc.get("format") != PREDICTOR_FORMAT:
        raise LatbenchError(where, f'not a latbench predictor (no "format": "{PREDICTOR_FORMAT}")')
    version = doc.get("schema_version")
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= PREDICTOR_SCHEMA_VERSION:
        raise LatbenchError(
            where, f"unsupported schema_version {version!r} (this latbench reads {PREDICTOR_SCHEMA_VERSION})"
        )
    for key in ("model", "config", "features", "state"):
        if key not in doc:
            raise LatbenchError(where, f"missing key {key!r}")
    if not isinstance(doc["model"], str):
        raise LatbenchError(where, "model: expected a predictor name")
    try:
        cls = get_predictor_class(doc["model"])
    except LatbenchError as exc:
        raise LatbenchError(where, exc.what) from None
    if not isinstance(doc["config"], Mapping) or not isinstance(doc["state"], Mapping):
        raise LatbenchError(where, "config and state must be objects")
    config = cls.config_class.from_dict(doc["config"], f"{where}: config")
    features = FeatureSpec.from_dict(doc["features"], f"{where}: features")
    predictor = cls(config, features)
    if doc.get("validity") is not None:
        predictor.validity = Validity.from_dict(doc["validity"], f"{where}: validity")
    statistic = doc.get("statistic")
    if statistic is not None and not isinstance(statistic, str):
        raise LatbenchError(where, "statistic: expected a string")
    predictor.statistic = statistic
    predictor.load_state(directory, doc["state"])
    return predictor


def load_predictor(directory: str | os.PathLike[str]) -> Predictor:
    """Load and validate a predictor directory written by :func:`save_predictor` (one-line errors)."""
    path = Path(directory)
    if not path.exists():
        raise LatbenchError(str(path), "no such predictor directory")
    if not path.is_dir():
        raise LatbenchError(str(path), "is a file, expected a predictor directory")
    return read_predictor_files(path)


def load_card(directory: str | os.PathLike[str]) -> ModelCard | None:
    """The card of a predictor directory, or None if it has none."""
    path = Path(directory) / CARD_FILE
    return ModelCard.load(path) if path.exists() else None
