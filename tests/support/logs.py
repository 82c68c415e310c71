"""Small synthetic logs of a few systems, for tests (they never read ../shared/data)."""

from __future__ import annotations

import random

FORMAT = "<Date> <Time> <Level> <Component>: <Content>"

_TEMPLATES = [
    ("INFO", "dfs.DataNode", "Receiving block blk_{n} src: /10.0.{a}.{b}:{p} dest: /10.0.{b}.{a}:50010", "normal"),
    ("INFO", "dfs.DataNode", "PacketResponder {a} for block blk_{n} terminating", "normal"),
    ("WARN", "sshd", "Failed password for invalid user admin{a} from 192.168.{a}.{b} port {p} ssh2", "security"),
    ("ERROR", "kernel", "Out of memory: Kill process {p} (java) score {a} or sacrifice child", "resource"),
    ("ERROR", "net.Client", "Connection refused to 10.1.{a}.{b}:{p} after {a} retries", "network"),
    ("INFO", "app.Worker", "Processed {n} events in {a} ms", "normal"),
]


def lines(n: int, *, seed: int = 7, with_labels: bool = False) -> list[str] | list[tuple[str, str]]:
    """``n`` log lines in :data:`FORMAT` (and their true class when ``with_labels``)."""
    rnd = random.Random(seed)
    out: list = []
    for i in range(n):
        level, component, text, cls = _TEMPLATES[rnd.randrange(len(_TEMPLATES))]
        values = {"n": rnd.randrange(10**9), "a": rnd.randrange(1, 250), "b": rnd.randrange(1, 250),
                  "p": rnd.randrange(1024, 65535)}  # fmt: skip
        line = f"2026-11-{1 + i // 50000:02d} 12:{(i // 60) % 60:02d}:{i % 60:02d} {level} {component}: "
        line += text.format(**values)
        out.append((line, cls) if with_labels else line)
    return out
