"""Golden behaviour of the shipped default critic (cprs_engine/weights/default).

Behavioural thresholds on fresh documents, never hard-coded outputs: the needle, the
variable chain and the kept text must come from the input, at a real compression ratio.
"""

import random

import pytest

from cprs_engine.training.data.sources import load_corpora

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def compressor():
    from cprs_engine import Compressor

    return Compressor.load()


def essay(chars: int, seed: int) -> str:
    hay = load_corpora().haystack
    start = random.Random(seed).randrange(len(hay) - chars)
    start = hay.index(". ", start) + 2
    return hay[start : start + chars]


def insert(text: str, sentence: str, at: float) -> str:
    i = text.index(". ", int(len(text) * at)) + 2
    return text[:i] + sentence + " " + text[i:]


def test_the_default_critic_loads_as_a_delta_on_the_package_base(compressor):
    assert compressor.engine_version.startswith(compressor.engine_version.split(".")[0])
    assert compressor.window_tokens == 512
    layers = compressor.model.config.layer_types
    assert layers.count("bidirectional") == 4 and layers[0] == "causal"


@pytest.mark.parametrize("seed", [11, 12])
def test_a_needle_survives_at_a_high_ratio(compressor, seed):
    rng = random.Random(seed)
    key, value = f"river-{rng.randrange(1000)}", str(rng.randrange(1_000_000, 9_999_999))
    doc = insert(
        essay(30_000, seed), f"One of the special magic numbers for {key} is: {value}.", 0.6
    )
    r = compressor.compress(
        f"What is the special magic number for {key} mentioned in the provided text?",
        doc,
        prompt="needle",
    )
    assert value in r.compressed
    assert r.ratio >= 20, f"kept {r.output_tokens} of {r.input_tokens} tokens"
    assert all(doc[s.start : s.end] == s.text for s in r.spans)


def chain_doc() -> tuple[str, list[str]]:
    doc = essay(16_000, 5)
    chain = ["VAR QKX = 52817.", "VAR MZD = VAR QKX.", "VAR TLP = VAR MZD."]
    for k, statement in enumerate(chain):
        doc = insert(doc, statement, 0.2 + 0.25 * k)
    return doc, chain


def test_the_statement_holding_the_value_is_kept(compressor):
    doc, chain = chain_doc()
    r = compressor.compress("Find all variables that are assigned the value 52817.", doc)
    assert chain[0].rstrip(".") in r.compressed
    assert r.ratio >= 10


def test_the_whole_variable_chain_is_kept(compressor):
    doc, chain = chain_doc()
    r = compressor.compress("Find all variables that are assigned the value 52817.", doc)
    assert all(s.rstrip(".") in r.compressed for s in chain)
    assert r.ratio >= 10


def test_windows_batched_with_other_requests_get_exactly_their_tags_alone(compressor):
    """The engine scheduler fills a pass with windows of other requests that share the
    prompt+query prefix; padding is masked, so each window's tags must be those it gets alone."""
    from cprs_engine.scheduler import Scheduler

    query = "What did the author decide to work on?"
    docs = [essay(5000, seed=1), essay(9000, seed=2), essay(3000, seed=3)]
    s = Scheduler(compressor, start=False)
    jobs = [s.plan(query, d) for d in docs]
    for j in jobs:
        s.submit(j)
    mixed, score_pass = [], compressor.score_pass

    def spy(prefix, tag, rows):
        mixed.append(len({id(ids) for ids, _, _ in rows}) > 1)
        return score_pass(prefix, tag, rows)

    compressor.score_pass = spy
    try:
        s.start()
        for j in jobs:
            j.future.result(timeout=600)
    finally:
        del compressor.score_pass
        s.close()
    assert any(mixed)
    for d, j in zip(docs, jobs, strict=True):
        alone = compressor.score(query, d)
        assert (j.outputs.tags == alone.tags).all()
        assert s.finish(j).compressed == compressor.compress(query, d).compressed
