"""`cprs compress`: inputs, output formats and exit codes.

Error paths inject a loader (`main_with(args, load=...)`); `KeepAllDouble` is a test-only
compressor. One test runs the real `Compressor` on a tiny random checkpoint, through `cprs`.
"""

from __future__ import annotations

import argparse
import io
import json

import pytest

from cprs_engine.commands import compress as cmd
from cprs_engine.errors import CheckpointNotFound, EngineFailure
from cprs_engine.result import CompressionResult, Span

DOC = "Cats purr. The capital of France is Paris. Birds sing.\n"


class KeepAllDouble:
    """Test double: keeps the first sentence; remembers what it was asked."""

    engine_version = "double.1"

    def __init__(self, fail: Exception | None = None):
        self.fail = fail
        self.seen: dict = {}

    def compress(self, query, context, **kw):
        self.seen = {"query": query, "context": context, **kw}
        if self.fail:
            raise self.fail
        end = context.index(".") + 1
        span = Span(0, end, context[:end], 0.75)
        return CompressionResult(span.text, [span], 12, 3, 4.0, kw["granularity"] or "sentence")


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="cprs compress")
    cmd.add_arguments(parser)
    return parser.parse_args(list(argv))


def call(argv, *, compressor=None, load=None, stdin: bytes = b""):
    out, err = io.StringIO(), io.StringIO()
    compressor = compressor or KeepAllDouble()
    loads = []

    def default_load(args):
        loads.append(args)
        return compressor

    code = cmd.main_with(
        parse(*argv), load=load or default_load, stdin=io.BytesIO(stdin), stdout=out, stderr=err
    )
    return code, out.getvalue(), err.getvalue(), loads


@pytest.fixture
def doc(tmp_path):
    path = tmp_path / "doc.txt"
    path.write_text(DOC, encoding="utf-8")
    return str(path)


def test_plain_output(doc):
    double = KeepAllDouble()
    code, out, err, _ = call(["-q", "capital?", "--file", doc], compressor=double)
    assert (code, out, err) == (0, "Cats purr.\n", "")
    assert double.seen == {
        "query": "capital?",
        "context": DOC,
        "granularity": None,
        "instruction": None,
        "budget_tokens": None,
        "prompt": None,
        "budget_unit": None,
    }


def test_json_output_and_options(doc):
    double = KeepAllDouble()
    argv = ["-q", "capital?", "-f", doc, "--json", "--granularity", "keyword", "--budget", "9"]
    argv += ["--instruction", "find it", "--prompt", "kv", "--budget-unit", "tiktoken:o200k_base"]
    code, out, err, _ = call(argv, compressor=double)
    assert code == 0 and err == ""
    assert out.count("\n") == 1, "one JSON object on one line"
    body = json.loads(out)
    assert set(body) >= {"compressed", "spans", "input_tokens", "output_tokens", "ratio"}
    assert body["spans"] == [{"start": 0, "end": 10, "text": "Cats purr.", "score": 0.75}]
    assert CompressionResult.from_dict(body).granularity == "keyword"
    assert double.seen["budget_tokens"] == 9 and double.seen["prompt"] == "kv"
    assert double.seen["instruction"] == "find it"
    assert double.seen["budget_unit"] == "tiktoken:o200k_base"


def test_stdin():
    double = KeepAllDouble()
    code, out, _, _ = call(
        ["-q", "q", "--file", "-"], compressor=double, stdin="Café. 你好。".encode()
    )
    assert (code, out) == (0, "Café.\n")
    assert double.seen["context"] == "Café. 你好。"


@pytest.mark.parametrize(
    ("argv", "stdin", "message"),
    [
        (["-q", "  ", "-f", "-"], b"text", "--query must not be empty"),
        (["-q", "q", "-f", "-"], b"", "standard input is empty"),
        (["-q", "q", "-f", "-"], b" \n\t", "standard input is empty"),
        (["-q", "q", "-f", "-"], b"caf\xe9", "not UTF-8"),
        (["-q", "q", "-f", "-", "--max-bytes", "4"], b"hello", "larger than 4 bytes"),
        (["-q", "q", "-f", "/nonexistent/doc.txt"], b"", "cannot read /nonexistent/doc.txt"),
        (["-q", "q", "-f", "-", "--granularity", "word"], b"text", "unknown granularity 'word'"),
        (["-q", "q", "-f", "-", "--prompt", "nope"], b"text", "unknown control prompt"),
        (["-q", "q", "-f", "-", "--budget-unit", "words"], b"text", "unknown budget unit"),
        (["-q", "q", "-f", "-", "--budget", "0"], b"text", "--budget must be a positive"),
    ],
)
def test_input_errors_exit_2_before_loading(argv, stdin, message):
    code, out, err, loads = call(argv, stdin=stdin)
    assert code == 2 and out == ""
    assert err.startswith("cprs compress: error: ") and message in err
    assert err.count("\n") == 1, "one line"
    assert loads == [], "bad input fails before the model loads"


def test_directory_is_an_input_error(tmp_path):
    code, _, err, _ = call(["-q", "q", "-f", str(tmp_path)])
    assert code == 2 and "cannot read" in err


def test_missing_checkpoint_exits_3_with_one_line(doc):
    def load(args):
        raise CheckpointNotFound("no critic at /x.\nRun `cprs train` or pass --checkpoint.")

    code, out, err, _ = call(["-q", "q", "-f", doc, "--checkpoint", "/x"], load=load)
    assert code == 3 and out == ""
    assert err == "cprs compress: error: no critic at /x. Run `cprs train` or pass --checkpoint.\n"


def test_engine_failures_exit_1(doc):
    for fail in (EngineFailure("forward failed"), RuntimeError("boom")):
        code, out, err, _ = call(["-q", "q", "-f", doc], compressor=KeepAllDouble(fail=fail))
        assert code == 1 and out == "" and err.count("\n") == 1
        assert str(fail) in err


def test_real_checkpoint_path_missing_exits_3(tmp_path, doc, capsys):
    """The production loader, no injection: a missing checkpoint is exit 3, never a fallback."""
    from cprs_engine.cli import main

    code = main(["compress", "-q", "q", "-f", doc, "--checkpoint", str(tmp_path / "none")])
    captured = capsys.readouterr()
    assert code == 3 and captured.out == ""
    assert captured.err.startswith("cprs compress: error: ")


def compress_json(tmp_path, capsys, name: str, text: str, query: str, *extra: str):
    """`cprs compress --json` with the real Compressor on a tiny random checkpoint (saved in
    `tmp_path` once): (exit code, captured output)."""
    from cprs_engine.checkpoint import save_tiny_random
    from cprs_engine.cli import main

    ckpt = tmp_path / "tiny"
    if not ckpt.exists():
        save_tiny_random(ckpt)
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    argv = ["compress", "-q", query, "-f", str(path), "--checkpoint", str(ckpt)]
    code = main([*argv, "--json", "--window-tokens", "64", *extra])
    return code, capsys.readouterr()


def test_real_compressor_json_through_cprs(tmp_path, capsys):
    """`cprs compress --json` with the real Compressor on a tiny random checkpoint."""
    context = "".join(f"Fact {i}: the code for box {i} is {i * 31}. " for i in range(60))
    code, captured = compress_json(tmp_path, capsys, "doc.txt", context, "code for box 7?")
    assert code == 0, captured.err
    result = CompressionResult.from_dict(json.loads(captured.out))
    assert result.input_tokens > 0
    for s in result.spans:
        assert context[s.start : s.end] == s.text
    assert result.compressed == "\n".join(s.text for s in result.spans)


def test_doc_type_and_elision_reach_the_compressor_only_when_given(doc):
    double = KeepAllDouble()
    argv = ["-q", "capital?", "-f", doc, "--doc-type", "code", "--elision", "marker"]
    assert call(argv, compressor=double)[0] == 0
    assert (double.seen["doc_type"], double.seen["elision"]) == ("code", "marker")
    with pytest.raises(SystemExit):
        parse("-q", "q", "-f", doc, "--doc-type", "yaml")


def test_real_compressor_json_shows_the_doc_type(tmp_path, capsys):
    source = "".join(f"def box_{i}():\n    return {i * 31}\n\n" for i in range(60))
    code, captured = compress_json(tmp_path, capsys, "mod.py", source, "what does box_7 return?")
    assert code == 0
    body = json.loads(captured.out)
    assert body["doc_type"] == "code"
    assert CompressionResult.from_dict(body).doc_type == "code"
    assert (
        CompressionResult.from_dict({k: v for k, v in body.items() if k != "doc_type"}).doc_type
        == "prose"
    )
    code, captured = compress_json(
        tmp_path, capsys, "mod.py", source, "what does box_7 return?", "--doc-type", "prose"
    )
    assert code == 0
    assert json.loads(captured.out)["doc_type"] == "prose"
