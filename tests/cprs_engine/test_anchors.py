"""Symbol anchors (cprs_engine/anchors.py): the code lines a question names by identifier."""

import ast

import pytest

from cprs_engine import decoding, doctypes
from cprs_engine.anchors import MAX_BLOCK_LINES, MAX_MENTIONS, code_anchors, symbols

SOURCE = '''# pkg/client.py
import os
from pkg.errors import InvalidURL

DEFAULT_TIMEOUT = 5.0


class Client:
    def send(self, request):
        """Send one request."""
        if not request.url:
            raise InvalidURL("no url")
        response = self._transport.handle(request)
        return response

    def close(self):
        return None


def send(request):
    return Client().send(request)
# pkg/other.py
class Other:
    def send(self):
        level = os.environ.get("PKG_LOG_LEVEL", "info")
        return level
'''


def lines_of(query, text=SOURCE):
    return [text[a:b] for a, b in code_anchors(query, text)]


@pytest.mark.parametrize(
    "query, names, paths",
    [
        ("In `a/b.py`: What does `Client.send()` return?", ["Client.send"], ["a/b.py"]),
        ("Which function raises InvalidURL?", ["InvalidURL"], []),
        ("Where is DEFAULT_TIMEOUT set, e.g. in config.yaml?", ["DEFAULT_TIMEOUT"], []),
        ("How does get_environ_proxies read HTTPError?", ["get_environ_proxies", "HTTPError"], []),
        ("How does redirect handling work in the client?", [], []),
        ("What do `self` and `None` mean?", [], []),
    ],
)
def test_symbols_are_code_shaped_words_and_backticked_names(query, names, paths):
    assert symbols(query) == (names, paths)


def test_a_qualified_name_anchors_its_own_definition_only():
    got = lines_of("What does `Client.send` return?")
    assert got[0].startswith("    def send(self, request):")
    assert "        return response" in got[0]
    assert not any("Client().send" in g or "level" in g for g in got)


def test_a_file_path_restricts_anchors_to_that_files_region():
    got = lines_of("In `pkg/other.py`: What does `send` return?")
    assert got == ['    def send(self):\n        level = os.environ.get("PKG_LOG_LEVEL", "info")\n'
                   "        return level"]  # fmt: skip
    everywhere = lines_of("What does `send` return?")
    assert len(everywhere) == 3  # both methods and the function, in document order


def test_a_comment_shaped_like_the_header_does_not_end_the_files_region():
    """`# Anti-commutator` has the shape of `# pkg/client.py` but names no path: the region
    (and the definitions under it) runs on to the next file's header."""
    text = SOURCE.replace("class Client:", "# Client\n# ------\nclass Client:")
    got = lines_of("In `pkg/client.py`: What does `Client.send` return?", text)
    assert got and got[0].startswith("    def send(self, request):")
    assert not any("level" in g for g in got)


def test_mentions_find_raise_sites_and_env_reads_but_not_imports():
    assert lines_of("Where is `InvalidURL` raised?") == ['            raise InvalidURL("no url")']
    assert lines_of("Where is PKG_LOG_LEVEL read?") == [
        '        level = os.environ.get("PKG_LOG_LEVEL", "info")'
    ]
    assert lines_of("What is DEFAULT_TIMEOUT?") == ["DEFAULT_TIMEOUT = 5.0"]


def test_no_symbol_or_an_unknown_one_anchors_nothing():
    assert code_anchors("How are requests sent?", SOURCE) == []
    assert code_anchors("What does `Nowhere.found` return?", SOURCE) == []


def test_a_long_function_keeps_its_header_and_skeleton_not_a_nested_functions():
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_BLOCK_LINES + 5))
    src = (
        "def big(a,\n        b):\n"
        f"{body}\n"
        "    def inner():\n        return 'inner'\n"
        "    if a:\n        raise KeyError(a)\n"
        "    return x0 + b\n"
    )
    got = "\n".join(lines_of("What does `big` return?", src))
    assert got == "def big(a,\n        b):\n    if a:\n        raise KeyError(a)\n    return x0 + b"


def test_a_docstring_does_not_count_against_a_whole_function():
    doc = "\n".join(f"    line {i} of the docstring" for i in range(MAX_BLOCK_LINES))
    src = f'def f(x):\n    """Start.\n{doc}\n    """\n    y = x * 2\n    return y\n\nZ = 1\n'
    assert lines_of("What does `f` return?", src) == [src.split("\n\nZ")[0]]


def test_a_module_or_instance_qualifier_falls_back_to_the_bare_definition():
    src = "def safe_load(stream):\n    return load(stream, SafeLoader)\n\n\ndef load(s, L):\n    pass\n"
    assert lines_of("What does yaml.safe_load return?", src) == [
        "def safe_load(stream):\n    return load(stream, SafeLoader)"
    ]
    attrs = "class D:\n    def __init__(self, n):\n        self.leapdays = n * 2\n"
    assert lines_of("How is `D.leapdays` computed?", attrs) == ["        self.leapdays = n * 2"]


def test_a_common_name_keeps_its_mentions_inside_another_named_definition():
    other = "\n".join(f"def g{i}():\n    raise NotFound({i})" for i in range(MAX_MENTIONS + 2))
    src = f"{other}\nclass FileLoader:\n    def get(self, name):\n        raise NotFound(name)\n"
    got = lines_of("Where does `FileLoader` raise `NotFound`?", src)
    assert got == ["class FileLoader:\n    def get(self, name):\n        raise NotFound(name)"]


def test_a_name_mentioned_too_often_anchors_its_definitions_only():
    uses = "\n".join(f"y{i} = helper_fn({i})" for i in range(MAX_MENTIONS + 1))
    src = f"def helper_fn(v):\n    return v\n{uses}\n"
    assert lines_of("What does helper_fn do?", src) == ["def helper_fn(v):\n    return v"]
    few = "\n".join(src.split("\n")[: 2 + MAX_MENTIONS])
    assert "\n".join(lines_of("What does helper_fn do?", few)) == few  # definition and uses


def test_brace_languages_keep_the_closing_brace():
    src = "function total(xs) {\n  let s = 0;\n  return s;\n}\nconst other = 1;\n"
    assert lines_of("What does `total` return?", src) == [
        "function total(xs) {\n  let s = 0;\n  return s;\n}"
    ]


def test_decode_keeps_anchors_as_code_units_with_their_openers():
    text = SOURCE
    ranges = code_anchors("Where is `InvalidURL` raised?", text)
    n = len(text)
    out, spans = decoding.decode(
        [decoding.O] * 4, [(0, 1), (1, 2), (2, 3), (n - 1, n)], text, [0.0] * 4,
        doc_type=doctypes.CODE, anchors=ranges, elision="marker",
    )  # fmt: skip
    assert "class Client:" in out and "def send(self, request):" in out
    assert "if not request.url:" in out and 'raise InvalidURL("no url")' in out
    assert all(text[s.start : s.end] == s.text for s in spans)
    ast.parse(out)  # markers and openers keep it Python
