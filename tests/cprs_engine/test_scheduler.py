"""The engine scheduler on a tiny random critic: same outputs as alone, waited-on work first,
shortest first, batching, a bounded queue, cancel within a pass, shutdown."""

from __future__ import annotations

import threading

import pytest

from cprs_engine.checkpoint import tiny_random
from cprs_engine.compressor import Compressor
from cprs_engine.errors import Cancelled
from cprs_engine.scheduler import Busy, Control, Scheduler, Throughput

TEXT = "Paris is the capital of France. The Eiffel Tower was finished in 1889! " * 30


class Recording(Compressor):
    """Records every pass: which jobs' windows it held (by the row's ids object)."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.passes: list[list[int]] = []

    def score_pass(self, prefix, tag, rows):
        self.passes.append([id(ids) for ids, _, _ in rows])
        return super().score_pass(prefix, tag, rows)


@pytest.fixture(scope="module")
def parts():
    return tiny_random("llama", seed=2)


def compressor(parts, rho: int = 2) -> Recording:
    model, tokenizer = parts
    return Recording(model, tokenizer, window_tokens=64, windows_per_pass=rho, precision="fp32")


def test_results_equal_the_compressor_alone_however_jobs_are_batched(parts):
    c = compressor(parts, rho=3)
    s = Scheduler(c, start=False)
    cases = [("Where is Paris?", TEXT), ("Where is Paris?", TEXT[:900]), ("When?", TEXT[:1500])]
    jobs = [s.plan(q, t) for q, t in cases]
    futures = [s.submit(j) for j in jobs]
    s.start()
    for f in futures:
        f.result(timeout=60)
    assert any(len({*p}) > 1 for p in c.passes)  # some pass held windows of two documents
    for (q, t), job in zip(cases, jobs, strict=True):
        alone = c.score(q, t)
        assert (job.outputs.tags == alone.tags).all()
        assert (job.outputs.support == alone.support).all()
        assert (job.outputs.scores == alone.scores).all()
        assert s.finish(job).compressed == c.compress(q, t).compressed
    s.close()


def test_a_short_job_overtakes_a_long_one_and_waited_on_work_goes_first(parts):
    c = compressor(parts, rho=1)
    s = Scheduler(c, start=False)
    long = s.plan("Where is Paris?", TEXT * 3)
    background = s.plan("What was finished?", TEXT[:600], control=Control(background=True))
    short = s.plan("When was it finished?", TEXT[:600])
    for job in (long, background, short):
        s.submit(job)
    s.start()
    for job in (long, background, short):
        job.future.result(timeout=120)
    order = [p[0] for p in c.passes]
    first = {name: order.index(id(j.plan.ids)) for name, j in
             (("long", long), ("background", background), ("short", short))}  # fmt: skip
    last = {name: len(order) - 1 - order[::-1].index(id(j.plan.ids)) for name, j in
            (("long", long), ("background", background), ("short", short))}  # fmt: skip
    assert last["short"] < first["background"]  # shortest first
    assert last["long"] < first["background"]  # background after every waited-on job
    s.close()


def test_fifo_runs_whole_jobs_in_arrival_order(parts):
    c = compressor(parts, rho=1)
    s = Scheduler(c, order="fifo", start=False)
    long, short = s.plan("Where is Paris?", TEXT * 2), s.plan("When?", TEXT[:600])
    s.submit(long), s.submit(short)
    s.start()
    short.future.result(timeout=120)
    order = [p[0] for p in c.passes]
    assert order.index(id(short.plan.ids)) > len(long.plan.windows) - 1
    s.close()


def test_a_full_queue_is_busy_with_a_retry_after(parts):
    s = Scheduler(compressor(parts), max_jobs=2, start=False)
    s.submit(s.plan("q", TEXT))
    s.submit(s.plan("q", TEXT))
    with pytest.raises(Busy) as exc:
        s.submit(s.plan("q", TEXT))
    assert exc.value.status == 429 and exc.value.retry_after_s >= 1
    s.close()


def test_a_cancelled_job_stops_before_its_next_pass(parts):
    gate, release = threading.Event(), threading.Event()

    class Blocking(Recording):
        def score_pass(self, prefix, tag, rows):
            super().score_pass(prefix, tag, rows)
            gate.set()
            assert release.wait(30)

    model, tokenizer = parts
    c = Blocking(model, tokenizer, window_tokens=64, windows_per_pass=1, precision="fp32")
    s = Scheduler(c)
    control = Control()
    job = s.plan("q", TEXT, control=control)
    s.submit(job)
    assert gate.wait(30)
    control.cancel.set()
    release.set()
    with pytest.raises(Cancelled):
        job.future.result(timeout=30)
    assert len(c.passes) == 1 < len(job.plan.windows)
    s.close()


def test_close_fails_queued_jobs_and_refuses_new_ones(parts):
    s = Scheduler(compressor(parts), start=False)
    job = s.plan("q", TEXT)
    s.submit(job)
    s.close()
    with pytest.raises(Cancelled):
        job.future.result(timeout=5)
    with pytest.raises(Cancelled):
        s.submit(s.plan("q", TEXT))


def test_throughput_is_measured_and_predicts_with_the_backlog(parts):
    s = Scheduler(compressor(parts))
    assert s.predict_s(1000) is None
    s.compress("Where is Paris?", TEXT)
    t = s.throughput
    assert t.tokens_per_s > 0 and 2 < t.chars_per_token < 8
    assert s.predict_s(2000) == pytest.approx(2000 / t.chars_per_token / t.tokens_per_s)
    s.close()
    fresh = Throughput()
    fresh.set("fast", -1)  # a replica's junk is ignored
    assert fresh.predict_s(10) is None
    fresh.set(1000.0, 4.0)
    assert fresh.predict_s(4000, backlog_tokens=1000) == pytest.approx(2.0)
