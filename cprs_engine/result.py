"""What a compression returns. Plain data, no torch: the proxy and the remote-engine client share it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class Span:
    """One kept piece of the context: `context[start:end] == text`, `score` in [0, 1]."""

    start: int
    end: int
    text: str
    score: float


@dataclass
class CompressionResult:
    compressed: str
    spans: list[Span]
    input_tokens: int  # context tokens, in the critic's tokenizer
    output_tokens: int  # tokens of `compressed`, same tokenizer
    ratio: float  # input_tokens / max(output_tokens, 1)
    granularity: str
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage
    doc_type: str = "prose"  # cprs_engine/doctypes.py: how the document was decoded

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> CompressionResult:
        spans = [Span(**s) for s in data["spans"]]
        return cls(
            compressed=data["compressed"],
            spans=spans,
            input_tokens=int(data["input_tokens"]),
            output_tokens=int(data["output_tokens"]),
            ratio=float(data["ratio"]),
            granularity=data.get("granularity", "sentence"),
            timings=dict(data.get("timings", {})),
            doc_type=str(data.get("doc_type", "prose")),
        )
