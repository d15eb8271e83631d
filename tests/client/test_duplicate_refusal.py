"""The client reads a duplicate-id refusal as what it is: not the end of the request in flight under that id."""

from __future__ import annotations

from integration_api.client._results import is_duplicate_refusal, is_terminal
from integration_api.errors import AlreadyExists, Unavailable
from integration_api.frames import ResponseAccumulator, duplicate_refusal_frame, error_frame, final_frame
from providers.types import ChatFinished, Usage


def test_a_duplicate_refusal_is_not_a_terminal_frame() -> None:
    refusal = duplicate_refusal_frame("r1", AlreadyExists("request 'r1' is already in flight"))
    assert is_duplicate_refusal(refusal) and not is_terminal(refusal)


def test_error_and_final_frames_stay_terminal() -> None:
    failed = error_frame("r1", Unavailable("upstream down"))
    already = error_frame("r1", AlreadyExists("a terminal ALREADY_EXISTS (final, with metrics) ends the request"))
    done = final_frame("r1", ResponseAccumulator(), ChatFinished("stop", Usage(1, 1)))
    for frame in (failed, already, done):
        assert is_terminal(frame) and not is_duplicate_refusal(frame)
