"""placeholder"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field


@dataclass
class Control:
    """How a caller steers one compression while it runs: cancel it, or lower its priority."""

    cancel: threading.Event = field(default_factory=threading.Event)
    background: bool = False  # nobody waits for it: runs after every waited-on request


class Throughput:
    """Context tokens/s and chars/token of an engine, as exponential moving averages.

    Fed with (tokens, chars, seconds) of work as it happens - each forward pass in the
    scheduler, each response for a remote replica - so a prediction follows the machine's
    current speed. `predict_s(chars)`: seconds to score a context of `chars` characters,
    None until something was measured.
    """

    def __init__(self, alpha: float = 0.2):
        self.alpha = alpha
        self.tokens_per_s: float | None = None
        self.chars_per_token: float | None = None
        self._lock = threading.Lock()

    def record(self, tokens: int, seconds: float, chars: int | None = None) -> None:
        if tokens <= 0 or seconds <= 0:
            return
        with self._lock:
            self.tokens_per_s = self._mix(self.tokens_per_s, tokens / seconds)
            if chars:
                self.chars_per_token = self._mix(self.chars_per_token, chars / tokens)

    def set(self, tokens_per_s: float | None, chars_per_token: float | None) -> None:
        """Take an engine's own figures (a replica's /readyz)."""
        with self._lock:
            if tokens_per_s:
                self.tokens_per_s = float(tokens_per_s)
            if chars_per_token:
                self.chars_per_token = float(chars_per_token)

    def _mix(self, old: float | None, new: float) -> float:
        return new if old is None else old + self.alpha * (new - old)

    def predict_s(self, chars: int) -> float | None:
        if not self.tokens_per_s or not self.chars_per_token:
            return None
        return chars / self.chars_per_token / self.tokens_per_s

    def as_dict(self) -> dict[str, float | None]:
        return {"tokens_per_s": self.tokens_per_s, "chars_per_token": self.chars_per_token}
