"""proxy/background.py alone: a request that stops waiting (its client gone) leaves the job to
the background when fill is wanted, and cancels it when not; shutdown cancels what is left."""

from __future__ import annotations

import asyncio

from cprs_engine.result import CompressionResult
from proxy.background import Background, wait
from proxy.cache import CompressionCache, MemoryLRU
from proxy.metrics import Metrics


class Job:
    """An engine call that runs until released or cancelled; records its control."""

    def __init__(self):
        self.controls, self.release, self.cancelled = [], asyncio.Event(), 0

    async def __call__(self, control):
        self.controls.append(control)
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return CompressionResult("kept", [], 10, 1, 10.0, "sentence")


async def _waiting(background, cache, job, *, fill: bool):
    task = asyncio.ensure_future(
        wait(background, cache, "k", job, ttl=60, wait_s=30, fill=fill, cap_s=30,
             predict=lambda: None)
    )  # fmt: skip
    for _ in range(100):
        if job.controls:
            break
        await asyncio.sleep(0.01)
    return task


def test_a_gone_client_without_fill_cancels_the_compression():
    async def go():
        bg, cache, job = Background(Metrics()), CompressionCache(MemoryLRU()), Job()
        task = await _waiting(bg, cache, job, fill=False)
        task.cancel()  # the client disconnected
        await asyncio.sleep(0.05)
        return job, bg

    job, bg = asyncio.run(go())
    assert job.controls[0].cancel.is_set() and job.cancelled == 1 and bg.depth == 0


def test_a_gone_client_with_fill_leaves_the_job_running_into_the_cache():
    async def go():
        bg, cache, job = Background(Metrics()), CompressionCache(MemoryLRU()), Job()
        task = await _waiting(bg, cache, job, fill=True)
        task.cancel()
        await asyncio.sleep(0.05)
        depth, priority = bg.depth, job.controls[0].background
        job.release.set()
        for _ in range(100):
            if not bg.depth:
                break
            await asyncio.sleep(0.01)
        stored = await cache.store.get("k")
        return job, depth, priority, stored

    job, depth, priority, stored = asyncio.run(go())
    assert depth == 1 and priority is True and job.cancelled == 0
    assert stored is not None and '"kept"' in stored


def test_close_cancels_every_job():
    async def go():
        bg, cache, job = Background(Metrics()), CompressionCache(MemoryLRU()), Job()
        task = await _waiting(bg, cache, job, fill=True)
        task.cancel()
        await asyncio.sleep(0.02)
        await bg.close()
        return job, bg

    job, bg = asyncio.run(go())
    assert job.cancelled == 1 and job.controls[0].cancel.is_set() and bg.depth == 0
