"""`Compressor`: query-aware compression of one document, window-parallel (paper §2.2).

    tokenize the document once (with char offsets)
    -> windows of <= w tokens at sentence ends                      (windows.py)
    -> with `linked_windows`: the pieces regrouped so that linked paragraphs share a window
                                                                    (linking.py)
    -> each window behind the same control-prompt + query prefix, rho windows per pass
    -> per token: boundary tag (argmax of cls_head), its support (1 - P(O)) and critic score
       (LM head, tag vs outside)
    -> tags lowered to the critic's `keep_threshold` -> corrected tags -> exact char spans
       -> granularity -> weak neighbours (`weak_threshold`) -> budget    (decoding.py)
    -> code: plus the lines the query names by symbol                   (anchors.py)

Precision: on CUDA the weights are bf16. On a CPU whose oneDNN has native bf16 (AVX512-BF16,
AMX) `precision="auto"` runs the matmuls under bf16 autocast with fp32 norms and softmax; the
default critic was trained that way, and it is about twice as fast as fp32. `load` stores the
blocks' weights in bf16 up front, which autocast would otherwise cast on every call: the same
values, so the same outputs, without the copies (inference.py). Elsewhere, or with
`precision="fp32"`, everything is fp32. `precision="int8"` (CPU): int8 projections with
per-token activation scales (inference.py), attention and heads as in bf16. `compile=True`
(load only) wraps each block in torch.compile. The engine version names the precision, so a
cache never mixes outputs of two.

The forward pass's memory depends on w and rho only. What grows with the document is the
document itself and its per-token arrays: ids, offsets, tags, support and scores in numpy
(29 bytes a token), the tag list decoding walks (8), and the window splitter's temporaries;
the tokenizer's own per-token objects live one chunk at a time (`encoding.py`). `make bench-engine` measures
the total. Same input, same output: no sampling anywhere.
"""

from __future__ import annotations

import contextlib
import copy
import os
import time
from dataclasses import dataclass

import numpy as np

from cprs_engine import anchors, decoding, doctypes, encoding, prompts, units
from cprs_engine.codeindex import CodeIndex
from cprs_engine.errors import (
    Cancelled,
    ContextTooLong,
    EmptyContext,
    EmptyQuery,
    EngineFailure,
    InvalidInput,
)
from cprs_engine.linking import Segments, as_segments, link_windows
from cprs_engine.result import CompressionResult
from cprs_engine.windows import split_windows

CODE_VERSION = "6"  # bump when decoding changes what a given model outputs (cache keys use it)
_OWN = object()  # `Compressor.decode`'s "use my own threshold"
PRECISIONS = ("auto", "fp32", "bf16", "int8")


def cpu_has_bf16() -> bool:
    """Whether this CPU runs bf16 matmuls natively (oneDNN's own check)."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def cpu_has_int8_mm() -> bool:
    """Whether this torch build multiplies int8 matrices on the CPU (`torch._int_mm`)."""
    import torch

    try:
        a = torch.ones(32, 32, dtype=torch.int8)
        return int(torch._int_mm(a, a)[0, 0]) == 32
    except (AttributeError, RuntimeError, NotImplementedError):
        return False


def resolve_precision(precision: str, device_type: str) -> str:
    """`auto` -> the precision this device runs best: bf16 on CUDA and bf16-capable CPUs."""
    if precision not in PRECISIONS:
        raise InvalidInput(f"precision must be one of {', '.join(PRECISIONS)}", param="precision")
    if device_type != "cpu":
        return "bf16"  # CUDA weights are bf16 already (checkpoint.load)
    if precision == "int8" and not cpu_has_int8_mm():
        raise InvalidInput("precision int8 needs torch._int_mm on this CPU", param="precision")
    if precision == "auto":
        return "bf16" if cpu_has_bf16() else "fp32"
    return precision


@dataclass(frozen=True)
class Scored:
    """One document as the critic saw it: per-token arrays aligned with `offsets`."""

    context: str
    granularity: str
    offsets: np.ndarray  # (n, 2) char offsets
    tags: np.ndarray  # (n,) int8 boundary tags
    support: np.ndarray  # (n,) float32, 1 - P(O)
    scores: np.ndarray  # (n,) float32 critic scores
    timings: dict[str, float]
    doc_type: str = doctypes.PROSE  # cprs_engine/doctypes.py
    elision: str | None = None  # doctypes.ELISIONS; None: the type's default
    prompt: str = ""  # the control prompt's name, for its own thresholds
    query: str = ""  # for the symbol anchors of code (anchors.py)


@dataclass(frozen=True)
class Plan:
    """One document ready for the model: its tokens, prefix and windows (`Compressor.plan`)."""

    context: str
    granularity: str
    tag: str  # the control prompt's tag word, scored by the critic
    ids: np.ndarray
    offsets: np.ndarray
    prefix: list[int]  # control prompt + query, before every window
    windows: list[Segments]
    tokenize_s: float
    doc_type: str = doctypes.PROSE
    elision: str | None = None
    prompt: str = ""
    query: str = ""

    def empty_outputs(self) -> Outputs:
        return Outputs.empty(len(self.ids))


def code_index(scored: Scored, context: bool) -> CodeIndex | None:
    """One `CodeIndex` of a code document, for its structure (`context`) and its symbol
    anchors alike; None where neither needs one: other types, keyword granularity (phrases,
    not lines), a standalone prompt's whole lines with no symbol in the query."""
    if scored.doc_type != doctypes.CODE or scored.granularity == "keyword":
        return None
    if context or anchors.symbols(scored.query)[0]:
        return CodeIndex(scored.context)
    return None


def symbol_anchors(scored: Scored, ix: CodeIndex | None) -> list[tuple[int, int]]:
    """The code lines the query names by symbol (anchors.py), given the document's index."""
    if ix is None or not scored.query:
        return []
    return anchors.code_anchors(scored.query, scored.context, ix)


def build_prefix(control_prompt: str, query: str) -> str:
    """The reference input template, everything before the context window."""
    return (
        f"<|im_start|>system\n{control_prompt}<|im_end|>\n"
        f"<|im_start|>user\n{query}<|im_end|>\n"
        "<|im_start|>context\n"
    )


class Compressor:
    def __init__(
        self,
        model,
        tokenizer,
        *,
        version: str = "unversioned",
        window_tokens: int = 512,
        windows_per_pass: int = 4,
        max_context_tokens: int = 4_000_000,
        max_query_tokens: int = 256,
        precision: str = "auto",
        weak_threshold: float | None = None,
        keep_threshold: float | None = None,
        linked_windows: bool = False,
        prompt_thresholds: dict[str, dict[str, float | None]] | None = None,
    ):
        """`weak_threshold`: at sentence granularity, the support at which a kept sentence's
        neighbour joins it (`decoding.extend_weak`); `keep_threshold`: at sentence granularity,
        the support at which any token counts as kept (`decoding.lower_tags`); None keeps the
        argmax tags only. `linked_windows`: group the document's pieces by shared terms
        (linking.py) instead of cutting contiguous windows. A critic tunes its own (critic.json),
        since they depend on how the critic is calibrated. `prompt_thresholds`: per control
        prompt name, its own `keep_threshold` / `weak_threshold` (a key present, even null,
        overrides the global one for that prompt; critic.json's "prompts")."""
        assert window_tokens >= 16, "a window must hold at least a short sentence"
        assert windows_per_pass >= 1
        self.model = model
        self.tokenizer = tokenizer
        self.window_tokens = window_tokens
        self.windows_per_pass = windows_per_pass
        self.max_context_tokens = max_context_tokens
        self.max_query_tokens = max_query_tokens
        if weak_threshold is not None and not 0.0 < weak_threshold <= 1.0:
            raise ValueError(f"weak_threshold must be in (0, 1], got {weak_threshold}")
        self.weak_threshold = weak_threshold
        if keep_threshold is not None and not 0.0 < keep_threshold <= 1.0:
            raise ValueError(f"keep_threshold must be in (0, 1], got {keep_threshold}")
        self.keep_threshold = keep_threshold
        self.linked_windows = bool(linked_windows)
        self.prompt_thresholds = prompts.check_thresholds(prompt_thresholds or {})
        device_type = next(model.parameters()).device.type
        self.precision = resolve_precision(precision, device_type)
        if self.precision == "int8":
            from cprs_engine import inference

            if not inference.is_quantized(model):  # the caller's model stays as it was
                model = inference.quantize_int8(copy.deepcopy(model))
            self.model = model
        self._autocast = device_type == "cpu" and (
            self.precision == "bf16" or (self.precision == "int8" and cpu_has_bf16())
        )
        layers = getattr(getattr(self.model, "model", None), "layers", [])
        compiled = any(type(m).__name__ == "OptimizedModule" for m in layers)
        opts = ".l" if self.linked_windows else ""
        opts += ".tc" if compiled else ""  # compiled kernels may round differently
        opts += "" if keep_threshold is None else f".k{keep_threshold:g}"
        opts += "" if weak_threshold is None else f".t{weak_threshold:g}"
        opts += prompts.thresholds_tag(self.prompt_thresholds)
        self.engine_version = f"{version}.c{CODE_VERSION}.w{window_tokens}{opts}.{self.precision}"
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self._tag_ids: dict[str, int] = {}

    @classmethod
    def load(
        cls,
        checkpoint: str | os.PathLike | None = None,
        *,
        device: str | None = None,
        compile: bool = False,
        cast_weights: bool = True,
        **opts,
    ):
        """The shipped default critic when `checkpoint` is None; raises CheckpointNotFound.

        The model is ours here, so it is transformed in place for its precision (bf16 block
        weights, or int8; `cast_weights=False` keeps fp32 weights under bf16 autocast, the
        engine before the cast, for benchmarks) and, with `compile`, compiled."""
        from cprs_engine import inference
        from cprs_engine.checkpoint import load

        loaded = load(checkpoint, device=device)
        device_type = next(loaded.model.parameters()).device.type
        precision = resolve_precision(opts.get("precision", "auto"), device_type)
        if device_type == "cpu" and precision == "int8":
            inference.quantize_int8(loaded.model)
        elif device_type == "cpu" and precision == "bf16" and cast_weights:
            inference.cast_blocks_bf16(loaded.model)
        if compile:
            inference.compile_blocks(loaded.model)
        defaults = {
            k: loaded.meta[k]
            for k in (
                "window_tokens",
                "windows_per_pass",
                "weak_threshold",
                "keep_threshold",
                "linked_windows",
            )
            if k in loaded.meta
        }
        if "prompts" in loaded.meta:
            defaults["prompt_thresholds"] = loaded.meta["prompts"]
        return cls(
            loaded.model, loaded.tokenizer, version=loaded.meta["version"], **(defaults | opts)
        )

    def count_tokens(self, text: str) -> int:
        return encoding.count(self.tokenizer, text)  # chunked: same count, bounded memory

    def tag_id(self, word: str) -> int:
        """The vocabulary row that scores `word`: its first token, as the reference does."""
        if word not in self._tag_ids:
            self._tag_ids[word] = self.tokenizer.convert_tokens_to_ids(
                self.tokenizer.tokenize(word)[0]
            )
        return self._tag_ids[word]

    def compress(
        self,
        query: str,
        context: str,
        *,
        granularity: str | None = None,
        instruction: str | None = None,
        budget_tokens: int | None = None,
        prompt: str | None = None,
        budget_unit: str | None = None,
        cancel=None,
        doc_type: str | None = None,
        elision: str | None = None,
    ) -> CompressionResult:
        """`budget_unit` (cprs_engine/units.py): what `budget_tokens` counts, the critic's
        tokens by default or a backend's (`tiktoken:o200k_base`); the cut is exact in it.
        `doc_type`: one of doctypes.DOC_TYPES, or None to detect it; `elision`: one of
        doctypes.ELISIONS, or None for the type's default (decoding.decode).
        `cancel`: anything with `is_set()` (a threading.Event); once set, the work stops
        before its next forward pass with `Cancelled`, so an abandoned request frees its
        worker within one pass instead of running to the end of the document."""
        units.check_budget(budget_tokens, budget_unit)
        scored = self.score(
            query,
            context,
            granularity=granularity,
            instruction=instruction,
            prompt=prompt,
            cancel=cancel,
            doc_type=doc_type,
            elision=elision,
        )
        return self.decode(scored, budget_tokens=budget_tokens, budget_unit=budget_unit)

    def score(
        self,
        query: str,
        context: str,
        *,
        granularity: str | None = None,
        instruction: str | None = None,
        prompt: str | None = None,
        cancel=None,
        doc_type: str | None = None,
        elision: str | None = None,
    ) -> Scored:
        """The model's part of `compress`: every context token's tag, support and score."""
        plan = self.plan(
            query, context, granularity=granularity, instruction=instruction, prompt=prompt,
            doc_type=doc_type, elision=elision,
        )  # fmt: skip
        t1 = time.perf_counter()
        tags, support, scores = self._score(plan.ids, plan.prefix, plan.windows, plan.tag, cancel)
        return self.scored(plan, Outputs(tags, support, scores), time.perf_counter() - t1)

    def plan(
        self,
        query: str,
        context: str,
        *,
        granularity: str | None = None,
        instruction: str | None = None,
        prompt: str | None = None,
        doc_type: str | None = None,
        elision: str | None = None,
    ) -> Plan:
        """Everything before the model: checks, the control prompt, the document's type (given
        or detected), tokens and windows."""
        t0 = time.perf_counter()
        if not isinstance(query, str) or not query.strip():
            raise EmptyQuery("query must be a non-empty string")
        if not isinstance(context, str) or not context.strip():
            raise EmptyContext("context must be a non-empty string")
        control = prompts.resolve(granularity, prompt=prompt, instruction=instruction)
        doctypes.check_options(doc_type, elision)
        kind = doc_type or doctypes.detect(context)
        ids, offsets, prefix, windows = self.prepare(query, context, control.text, doc_type=kind)
        return Plan(
            context, control.granularity, control.tag, ids, offsets, prefix, windows,
            time.perf_counter() - t0, kind, elision, control.name, query,
        )  # fmt: skip

    def scored(self, plan: Plan, out: Outputs, model_s: float) -> Scored:
        timings = {"tokenize": plan.tokenize_s, "model": model_s}
        return Scored(
            plan.context, plan.granularity, plan.offsets, out.tags, out.support, out.scores,
            timings, plan.doc_type, plan.elision, plan.prompt, plan.query,
        )  # fmt: skip

    def decode(
        self,
        scored: Scored,
        *,
        budget_tokens: int | None = None,
        budget_unit: str | None = None,
        weak_threshold=_OWN,
        keep_threshold=_OWN,
    ) -> CompressionResult:
        """Tags to text (`decoding.decode`). The thresholds default to the compressor's own for
        the scored prompt (`thresholds`); `cprs tune` decodes one `Scored` at several."""
        t2 = time.perf_counter()
        own_keep, own_weak = self.thresholds(scored.prompt)
        context = not prompts.standalone(scored.prompt)
        ix = code_index(scored, context)
        compressed, spans = decoding.decode(
            scored.tags.tolist(),
            scored.offsets,
            scored.context,
            scored.scores,
            granularity=scored.granularity,
            budget_tokens=budget_tokens,
            count_tokens=units.counter(budget_unit, self.count_tokens),
            support=scored.support,
            weak_threshold=own_weak if weak_threshold is _OWN else weak_threshold,
            keep_threshold=own_keep if keep_threshold is _OWN else keep_threshold,
            doc_type=scored.doc_type,
            elision=scored.elision,
            anchors=symbol_anchors(scored, ix),
            context=context,
            code_index=ix,
            query=scored.query,
        )
        out_tokens = self.count_tokens(compressed) if compressed else 0
        timings = scored.timings | {"decode": time.perf_counter() - t2}
        timings["total"] = sum(timings.values())
        n = len(scored.tags)
        return CompressionResult(
            compressed=compressed,
            spans=spans,
            input_tokens=n,
            output_tokens=out_tokens,
            ratio=n / max(out_tokens, 1),
            granularity=scored.granularity,
            timings=timings,
            doc_type=scored.doc_type,
        )

    def thresholds(self, prompt: str) -> tuple[float | None, float | None]:
        """(keep_threshold, weak_threshold) for a control prompt: its own where critic.json
        names them, else the global ones."""
        own = self.prompt_thresholds.get(prompt, {})
        return (
            own.get("keep_threshold", self.keep_threshold),
            own.get("weak_threshold", self.weak_threshold),
        )

    def prepare(
        self, query: str, context: str, control_text: str, *, doc_type: str = doctypes.PROSE
    ) -> tuple[np.ndarray, np.ndarray, list[int], list[Segments]]:
        """(context ids, their char offsets, the prompt+query prefix ids, the windows: each
        one or more token ranges, in document order; together they cover every token once)."""
        ids, offsets = encoding.encode(self.tokenizer, context)
        if len(ids) > self.max_context_tokens:
            raise ContextTooLong(
                f"context has {len(ids)} tokens; this engine accepts at most {self.max_context_tokens}"
            )
        # A very long query keeps its end, where the question usually is.
        q_ids = self.tokenizer.encode(query, add_special_tokens=False)[-self.max_query_tokens :]
        prefix = self.tokenizer.encode(
            build_prefix(control_text, self.tokenizer.decode(q_ids)), add_special_tokens=False
        )
        windows = split_windows(
            context, offsets, self.window_tokens, lines=doc_type != doctypes.PROSE
        )
        if self.linked_windows:
            groups = link_windows(context, offsets, windows, query, self.window_tokens)
        else:
            groups = as_segments(windows)
        return ids, offsets, prefix, groups

    def _score(
        self, ids, prefix, windows, tag: str, cancel=None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Boundary tag, support (1 - P(O)) and critic score for every context token, rho
        windows per pass."""
        out = Outputs.empty(len(ids))
        for b in range(0, len(windows), self.windows_per_pass):
            if cancel is not None and cancel.is_set():
                raise Cancelled(f"compression cancelled after {b} of {len(windows)} windows")
            rows = [(ids, w, out) for w in windows[b : b + self.windows_per_pass]]
            self.score_pass(prefix, tag, rows)
        return out.tags, out.support, out.scores

    def score_pass(self, prefix: list[int], tag: str, rows: list[tuple]) -> None:
        """One forward pass over windows that share the prompt+query `prefix` and `tag`: each
        row is (context ids, the window's token ranges, the `Outputs` its tokens go to), so
        rows may come from different documents (the engine scheduler batches them so)."""
        import torch

        device = next(self.model.parameters()).device
        tag_id, outside_id = self.tag_id(tag), self.tag_id(prompts.OUTSIDE_TAG)
        P = len(prefix)
        prefix_ids = torch.tensor(prefix, dtype=torch.long)
        autocast = (
            torch.autocast("cpu", torch.bfloat16) if self._autocast else contextlib.nullcontext()
        )
        try:
            with torch.inference_mode(), autocast:
                sizes = [sum(e - s for s, e in w) for _, w, _ in rows]
                T = P + max(sizes)
                input_ids = torch.full((len(rows), T), self.pad_id, dtype=torch.long)
                mask = torch.zeros((len(rows), T), dtype=torch.long)
                for r, (ids, w, _) in enumerate(rows):
                    input_ids[r, :P] = prefix_ids
                    row = np.concatenate([ids[s:e] for s, e in w])
                    input_ids[r, P : P + sizes[r]] = torch.from_numpy(row)
                    mask[r, : P + sizes[r]] = 1
                hidden = self.model(input_ids.to(device), mask.to(device), shared_prefix=P)
                hidden = hidden[:, P:]  # (R, T-P, C): context positions only
                logits = self.model.boundary_logits(hidden).float()
                pred = logits.argmax(-1).cpu().numpy()
                keep = (1.0 - logits.softmax(-1)[..., decoding.O]).cpu().numpy()
                crit = self.model.critic_scores(hidden, tag_id, outside_id).float().cpu().numpy()
        except (RuntimeError, ValueError) as exc:  # torch errors surface as these
            raise EngineFailure(f"critic forward pass failed: {exc}") from exc
        for r, (_, w, out) in enumerate(rows):
            k = 0
            for s, e in w:
                out.tags[s:e] = pred[r, k : k + e - s]
                out.support[s:e] = keep[r, k : k + e - s]
                out.scores[s:e] = crit[r, k : k + e - s]
                k += e - s


@dataclass(frozen=True)
class Outputs:
    """Per-token outputs of one document, filled window by window."""

    tags: np.ndarray  # (n,) int8
    support: np.ndarray  # (n,) float32
    scores: np.ndarray  # (n,) float32

    @classmethod
    def empty(cls, n: int) -> Outputs:
        return cls(
            np.full(n, decoding.O, dtype=np.int8),
            np.zeros(n, dtype=np.float32),
            np.zeros(n, dtype=np.float32),
        )
