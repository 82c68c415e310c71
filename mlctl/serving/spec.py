"""The ``serve:`` section of ``mlctl.yaml``: where the gateway keeps its experiments' shared state.

:mod:`mlctl.sections` registers :class:`ServeSpec` as the ``serve`` section; keep this module
light (pydantic and the standard library only): it is imported whenever the configuration is loaded.

.. code-block:: yaml

    serve:
      state: sqlite                      # the embedded default: .mlctl/experiments.db in the project
      # state: redis://127.0.0.1:6379/0  # shared by gateway replicas on several machines
      # state: memory                    # one process only, nothing kept
      feedback_window: 1d                # how long a request id accepts its outcome
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

#: accepted forms of ``serve.state``
STATE_FORMS = ("memory", "sqlite", "sqlite:///PATH", "redis://HOST:PORT/DB", "rediss://...")


class ServeSpec(BaseModel):
    """``serve:`` the model gateway's shared state and experiment defaults."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    state: str = Field("sqlite", description="experiment state: sqlite (embedded), sqlite:///PATH, memory or "
                                             "redis://HOST:PORT/DB")
    feedback_window: str = Field("1d", description="how long a request accepts feedback (e.g. 30m, 1d)")

    @field_validator("state")
    @classmethod
    def _state(cls, v: str) -> str:
        v = v.strip()
        if v in ("memory", "sqlite") or v.startswith(("sqlite:///", "redis://", "rediss://", "unix://")):
            return v
        raise ValueError(f"unknown state {v!r}: use one of {', '.join(STATE_FORMS)}")
