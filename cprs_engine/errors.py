"""The engine's exceptions.

CPRSError                      base; `status` is the HTTP status the engine service answers
├── InvalidInput (400)         the caller's fault; `param` names the field
│   ├── EmptyQuery
│   ├── EmptyContext
│   ├── ContextTooLong (413)
│   ├── UnknownGranularity
│   └── UnknownBudgetUnit      `budget_unit` names no unit (cprs_engine/units.py)
├── CheckpointNotFound (503)   no critic weights where they were looked for; says how to get them
└── EngineFailure (500)        the model failed while running (torch errors are converted here)
    └── Cancelled (503)        the caller gave up (timeout, disconnect); stopped between passes
"""

from __future__ import annotations


class CPRSError(Exception):
    status = 500
    code = "engine_error"
    param: str | None = None

    def __init__(self, message: str, *, param: str | None = None):
        super().__init__(message)
        self.message = message
        if param is not None:
            self.param = param


class InvalidInput(CPRSError):
    status = 400
    code = "invalid_input"


class EmptyQuery(InvalidInput):
    code = "empty_query"
    param = "query"


class EmptyContext(InvalidInput):
    code = "empty_context"
    param = "context"


class ContextTooLong(InvalidInput):
    status = 413
    code = "context_too_long"
    param = "context"


class UnknownGranularity(InvalidInput):
    code = "unknown_granularity"
    param = "granularity"


class UnknownBudgetUnit(InvalidInput):
    code = "unknown_budget_unit"
    param = "budget_unit"


class CheckpointNotFound(CPRSError):
    status = 503
    code = "checkpoint_not_found"


class EngineFailure(CPRSError):
    status = 500
    code = "engine_failure"


class Cancelled(EngineFailure):
    status = 503
    code = "cancelled"
