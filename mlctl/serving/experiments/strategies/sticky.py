"""Sticky assignment: a request key (a user id, a session) keeps its variant, across replicas and restarts.

The variant of a key is decided by weighted rendezvous hashing (highest random weight): each
arm draws a stable pseudo-random number for the key,

    u = BLAKE2b(salt, arm name, key) mapped to (0, 1),    score = -ln(u) / weight,

and the arm with the lowest score wins. ``-ln(u)`` is exponentially distributed, so the
lowest score falls on an arm with probability ``weight / sum(weights)`` exactly: the shares
over many keys match the weights. The hash is BLAKE2b of the length-prefixed UTF-8 parts (never
Python's ``hash()``, which is salted per process), so every process computes the same answer.

Why rendezvous rather than cutting [0, 1) into consecutive slices by the cumulative weights:
with slices, any change of weights that is not at the last boundary slides the slices after it
and moves keys between arms whose weights did not change, and pausing or adding an arm in the
middle of the list reshuffles the arms after it. With rendezvous,

* raising an arm's weight only moves keys *to* it, lowering it only moves keys *away* from it
  (90/10 -> 80/20 moves 10% of the keys, all from champion to challenger);
* pausing an arm moves only its own keys (spread over the others by their weights), and
  resuming it brings back the same keys;
* the order of the variants does not matter, only their names.

The ``salt`` (the experiment's name) makes experiments independent of each other: the same
user is not always in the challenger group of every experiment. Without a key, a request is
assigned at random by the weights (the caller counts those).
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Sequence
from typing import ClassVar

from mlctl.serving.experiments.strategies._base import Arm, Param, check_arms
from mlctl.serving.experiments.strategies.weighted import Weighted


def _part(text: str) -> bytes:
    raw = text.encode("utf-8")
    return len(raw).to_bytes(4, "big") + raw


def stable_unit(salt: str, arm: str, key: str) -> float:
    """A pseudo-random number in (0, 1), the same in every process for the same three strings.

    >>> stable_unit("exp-1", "champion", "user-42") == stable_unit("exp-1", "champion", "user-42")
    True
    >>> 0.0 < stable_unit("exp-1", "champion", "user-42") < 1.0
    True
    """
    digest = hashlib.blake2b(_part(salt) + _part(arm) + _part(key), digest_size=8).digest()
    top53 = int.from_bytes(digest, "big") >> 11  # a float holds 53 bits: keep u strictly inside (0, 1)
    return (top53 + 0.5) / 2.0**53


def rendezvous(arms: Sequence[Arm], salt: str, key: str) -> int:
    """The index of the arm ``key`` sticks to: the lowest ``-ln(u) / weight`` over the active arms
    (ties, of probability about 2**-53, go to the first in order)."""
    best, best_score = -1, math.inf
    for i, arm in enumerate(arms):
        if arm.weight > 0.0:
            score = -math.log(stable_unit(salt, arm.name, key)) / arm.weight
            if score < best_score:
                best, best_score = i, score
    return best


class Sticky(Weighted):
    """The same key always gets the same variant while the weights stay; shares follow the weights.

    Requests without a key are drawn at random by the weights, like ``weighted``.
    """

    name = "sticky"
    summary = "consistent hashing of a request key: the same user keeps the same variant"
    params: ClassVar[dict[str, Param]] = {
        "salt": Param(str, None, "the experiment's name, mixed into the hash so experiments are independent",
                      required=True),
    }
    salt: str

    def choose(self, arms: Sequence[Arm], *, key: str | None = None, rng: random.Random) -> str:
        if key is None:
            return super().choose(arms, key=None, rng=rng)
        check_arms(arms)
        return arms[rendezvous(arms, self.salt, key)].name
