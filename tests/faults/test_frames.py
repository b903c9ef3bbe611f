"""The fault proxy's reading of a PostgreSQL client's stream: a black hole waits for the
end of the message in progress, so it must find where each message ends however the
stream is cut into reads."""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st

from tests.faults.proxy import STARTUP_V3, FrontendFrames

SSL_REQUEST = struct.pack("!ii", 8, 80877103)
STARTUP = struct.pack("!ii", 8 + 9, STARTUP_V3) + b"user\0me\0\0"


def typed(kind: bytes, body: bytes) -> bytes:
    return kind + struct.pack("!i", 4 + len(body)) + body


MESSAGES = [
    SSL_REQUEST,
    STARTUP,
    typed(b"Q", b"SELECT 1\0"),
    typed(b"S", b""),
    typed(b"d", b"x" * 70_000),
    typed(b"X", b""),
]
STREAM = b"".join(MESSAGES)
ENDS = [sum(len(m) for m in MESSAGES[: i + 1]) for i in range(len(MESSAGES))]


@given(st.lists(st.integers(1, len(STREAM)), max_size=12))
def test_message_ends_are_found_however_the_stream_is_read(cuts: list[int]) -> None:
    frames = FrontendFrames()
    found: list[int] = []
    start = 0
    for end in [*sorted(set(cuts)), len(STREAM)]:
        if end <= start:
            continue
        assert frames.at_boundary == (start in [0, *ENDS])
        found += [start + e for e in frames.ends(STREAM[start:end])]
        start = end
    assert found == ENDS
    assert frames.at_boundary
