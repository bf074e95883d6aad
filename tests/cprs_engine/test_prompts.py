"""Control prompt resolution: a reworded named prompt keeps its name (its own thresholds)."""

from __future__ import annotations

from cprs_engine.prompts import LIBRARY, resolve


def test_a_reworded_named_prompt_keeps_its_name_and_a_free_one_is_custom():
    text = LIBRARY["needle"].text.format(type_needle_v="numbers", key="k", value="v")
    needle = resolve(prompt="needle", instruction=text)
    assert (needle.name, needle.text, needle.granularity, needle.tag) == (
        "needle",
        text,
        "sentence",
        "needle",
    )
    free = resolve("paragraph", instruction="Find what matters.")
    assert (free.name, free.granularity, free.tag) == ("custom", "paragraph", "paragraph")
    assert resolve(prompt="kv").name == "kv"


def test_the_needle_prompt_is_standalone_however_it_is_worded():
    from cprs_engine.prompts import standalone

    assert LIBRARY["needle"].standalone and standalone("needle")
    assert not any(p.standalone for n, p in LIBRARY.items() if n != "needle")
    reworded = resolve(prompt="needle", instruction="Extract the needles for key K.")
    assert reworded.standalone and reworded.name == "needle"
    assert not resolve("sentence", instruction="Extract the needles.").standalone
    assert not standalone("custom")
