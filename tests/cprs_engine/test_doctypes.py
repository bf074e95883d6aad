"""The document-type detector: each type, the ambiguous cases, and bounded work."""

import json

import pytest

from cprs_engine import doctypes
from cprs_engine.doctypes import CODE, JSON, LOG, MARKDOWN, PROSE, detect

ESSAY = (
    "The most memorable example of medieval industrial secrecy is probably Venice, which "
    "forbade glassblowers to leave the city. Startups are a special kind of company: they grow "
    "fast, and most of them fail. If you want to understand a startup, ask what it does "
    "differently from the big companies around it.\n\n"
) * 20
PYTHON = (
    '''import os
from typing import Any


class Store:
    """A small key-value store."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.data: dict[str, Any] = {}

    def get(self, key: str, default=None):
        if key in self.data:
            return self.data[key]
        return default
'''
    * 4
)
JS = (
    """function add(a, b) {
  const total = a + b;
  if (total > 10) {
    console.log("big");
  }
  return total;
}
"""
    * 5
)
README = """# Project

Some introduction text that explains what this project is for.

## Install

Run `pip install project` and then import it.

| option | default | meaning |
| --- | --- | --- |
| port | 8080 | where it listens |
| host | 127.0.0.1 | what it binds |
"""
LOGS = "\n".join(
    f"2024-05-01 12:{m:02d}:0{m % 10} INFO worker-{m % 3} processed job {m} in {m * 3} ms"
    for m in range(40)
)


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        (ESSAY, PROSE),
        (PYTHON, CODE),
        (JS, CODE),
        (README, MARKDOWN),
        (LOGS, LOG),
        (json.dumps({"items": [{"id": i, "name": f"n{i}"} for i in range(30)]}, indent=2), JSON),
        (json.dumps([1, 2, 3]), JSON),
        ("\n".join(json.dumps({"id": i, "ok": True}) for i in range(20)), JSON),  # JSON lines
    ],
)
def test_each_type_is_detected(text, kind):
    assert detect(text) == kind


def test_ambiguous_texts_fall_back_to_prose():
    # a title line, a "Title: x" line and a colon at a line end are not markdown or code
    hotpot = "Amica (opera)\nAmica is an opera in two acts by Pietro Mascagni.\n\n" * 10
    colon = "He listed the reasons as follows:\n" + ESSAY
    one_heading = "# Notes\n\n" + ESSAY  # one heading in a long essay is not enough
    for text in (hotpot, colon, one_heading, "short", "a\nb"):
        assert detect(text) == PROSE


def test_truncated_json_is_json_but_a_bracketed_sentence_is_not():
    full = json.dumps({"records": [{"id": i, "v": "x" * 5} for i in range(40)]}, indent=1)
    assert detect(full[: len(full) // 2]) == JSON
    assert detect("[citation needed] " + ESSAY) == PROSE


def test_a_comment_block_is_not_a_heading():
    header = "# Copyright 2024\n# Licensed under the Apache License\n#\n# See LICENSE\n"
    assert detect(header + PYTHON) == CODE


def test_markdown_with_code_fences_stays_markdown():
    text = "# Usage\n\nCall it like this:\n\n```python\n" + PYTHON + "```\n\n## More\n\nText.\n"
    assert detect(text) == MARKDOWN


def test_detection_reads_bounded_samples_only(monkeypatch):
    """A huge log is typed from its samples: the middle of the text is never scanned whole."""
    seen = []
    real = doctypes._sample

    def spy(text):
        lines = real(text)
        seen.append(sum(len(x) for x in lines))
        return lines

    monkeypatch.setattr(doctypes, "_sample", spy)
    big = (LOGS + "\n") * 3000  # ~6 MB
    assert detect(big) == LOG
    assert seen and seen[0] <= 2 * doctypes.SAMPLE_CHARS


def test_check_options_names_the_field():
    from cprs_engine.errors import InvalidInput

    doctypes.check_options(None, None)
    doctypes.check_options("code", "marker")
    with pytest.raises(InvalidInput) as e:
        doctypes.check_options("yaml", None)
    assert e.value.param == "doc_type"
    with pytest.raises(InvalidInput) as e:
        doctypes.check_options(None, "dots")
    assert e.value.param == "elision"


def test_a_chat_transcript_is_prose():
    turns = [
        "User: Can you tell me where the meeting is tomorrow?",
        "Assistant: Sure, it is in room 4, at ten.",
        "User: thanks, and who is coming?",
        "Assistant: Ana, Bo and the new intern, as far as I know.",
    ]
    assert detect("\n".join(turns * 10)) == PROSE
    assert detect("\n\n".join(turns * 10)) == PROSE
