"""Generic variable masking."""

from __future__ import annotations

import pytest

from mlctl.logs import masking
from mlctl.logs.masking import WILDCARD, mask_text, mask_token, mask_tokens


@pytest.mark.parametrize(
    ("token", "masked"),
    [
        ("10.251.73.220:50010", "<*>"),
        ("[173.234.31.186]", "[<*>]"),
        ("/10.10.34.11:45307", "<*>"),
        ("fe80::1ff:fe23:4567:890a", "<*>"),
        ("0x7fed806eb5d", "<*>"),
        ("a1b2c3d4e5f6", "<*>"),
        ("123e4567-e89b-12d3-a456-426614174000", "<*>"),
        ("-42", "<*>"),
        ("3.5", "<*>"),
        ("12ms,", "<*>,"),
        ("https://example.com/a?b=1", "<*>"),
        ("user@example.com", "<*>"),
        ("/etc/httpd/conf/workers2.properties", "<*>"),
        ("C:\\Windows\\winsxs\\core.dll", "<*>"),
        ("2016-09-28T04:30:30Z", "<*>"),
        ("04:30:31.455", "<*>"),
        ("uid=0", "uid=<*>"),
        ("(HWID=1973)", "(HWID=<*>)"),
        ("rhost=host.example.net", "rhost=<*>"),
        ("blk_-6952295868487656571", "<*>"),
        ("node-246", "<*>"),
        ("ns.example.com", "<*>"),
        ("Jul", "<*>"),
        ("ssh2", "ssh2"),
        ("ipv6", "ipv6"),
        ("terminating", "terminating"),
        ("initialization.", "initialization."),
        ("lock/unlock", "lock/unlock"),
    ],
)
def test_mask_token(token: str, masked: str) -> None:
    assert mask_token(token) == masked


def test_units_after_a_number_are_part_of_it() -> None:
    assert mask_tokens("size 93.0 B, free 317.1 KB)".split()) == ["size", "<*>", "<*>,", "free", "<*>", "<*>)"]
    assert mask_tokens("B is a letter".split()) == ["B", "is", "a", "letter"]


def test_mask_text_normalises_whitespace() -> None:
    assert mask_text("Failed  password for root from 10.0.0.1 port 22 ssh2") == (
        "Failed password for root from <*> port <*> ssh2"
    )
    assert mask_text("") == ""


def test_huge_tokens_are_masked_without_being_cached() -> None:
    huge = "a" * (masking.MAX_TOKEN_CHARS + 1)
    assert mask_token(huge) == WILDCARD
    assert huge not in masking._cache


def test_cache_is_bounded(monkeypatch) -> None:
    monkeypatch.setattr(masking, "CACHE_SIZE", 10)
    masking._cache.clear()
    for i in range(25):
        mask_token(f"tok{i}x")
    assert len(masking._cache) <= 10


@pytest.mark.parametrize(
    ("token", "masked"),
    [
        ("instruction......0", "instruction......<*>"),  # a dot leader keeps its word
        ("threshold................1,", "threshold................<*>,"),
        ("chdir(/p/gb2/t800)", "chdir(<*>)"),  # a call keeps its name
        ("LOGIN(uid=0)", "LOGIN(uid=<*>)"),
        ("[mice.c(1234)]:", "[mice.c(<*>)]:"),
        ("chdir(pwd)", "chdir(pwd)"),
        ("a(1)b", "<*>"),
        ("12345", "<*>"),
        ("(3853443)", "(<*>)"),
        ("abc1def", "<*>"),  # hex-like, not a word with one digit
        ("Error:KeeperErrorCode", "Error:KeeperErrorCode"),
        ("ContAlloc:2", "ContAlloc:<*>"),
    ],
)
def test_keys_leaders_and_calls(token: str, masked: str) -> None:
    masking._cache.clear()
    assert mask_token(token) == masked
    assert mask_token(token) == masked  # the cached answer is the same


def test_units_follow_the_cache_when_it_is_cleared(monkeypatch) -> None:
    monkeypatch.setattr(masking, "CACHE_SIZE", 3)
    masking._cache.clear()
    for _ in range(3):  # the cache fills and clears several times over these lines
        assert mask_tokens("took 12 ms and 7 KB,".split()) == ["took", "<*>", "<*>", "and", "<*>", "<*>,"]
        assert mask_tokens("ms B unit words".split()) == ["ms", "B", "unit", "words"]
