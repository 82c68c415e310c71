"""A registered model version, resolved to a verified local file: :class:`ModelArtifact`.

The registry resolves a reference (``NAME@ALIAS``, ``NAME:VERSION``) to one; the serializer loads
the model it points at (checking its SHA-256); deploy targets hand it to the model server as an
``artifact.json`` beside the model file; the model server reads it back. It is plain data, with no
import of anything else of mlctl, so every one of those can use it.

>>> from pathlib import Path
>>> art = ModelArtifact("fraud", "3", "champion", Path("model.skops"), "ab" * 32)
>>> art.ref
'fraud:3'
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["ModelArtifact"]


@dataclass(frozen=True)
class ModelArtifact:
    """A registered model version, resolved to a verified local file."""

    name: str
    version: str
    alias: str | None
    path: Path  # the serialized model (skops for scikit-learn, state_dict/TorchScript for torch)
    sha256: str  # recorded at registration; verified at every load
    flavor: str = "sklearn"  # "sklearn" or "torch"
    signature: dict[str, Any] = field(default_factory=dict)  # {"inputs": [{"name", "type"}], "outputs": [...]}
    run_id: str | None = None

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"

    def to_json(self, path: Path) -> None:
        """Write this artifact's metadata next to (or pointing at) the model file.

        ``path`` in the JSON is relative to the JSON file's folder when the model lies inside it,
        so a folder holding ``artifact.json`` and the model can be copied (into an image, say).
        """
        data = asdict(self)
        try:
            data["path"] = str(Path(self.path).resolve().relative_to(path.parent.resolve()))
        except ValueError:
            data["path"] = str(Path(self.path).resolve())
        path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")

    @classmethod
    def from_json(cls, path: Path) -> ModelArtifact:
        """Read metadata written by :meth:`to_json`; the model path is resolved against its folder."""
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        data["path"] = (Path(path).parent / data["path"]).resolve()
        return cls(**data)
