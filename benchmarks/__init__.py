"""Benchmarks: the engine (`python -m benchmarks.engine_bench`) and the proxy
(`python -m benchmarks.proxy_bench`). Both print a markdown report and, with `--write FILE`,
replace their own marked section of BENCHMARKS.md. Not timed in the test suite: numbers only
mean something on a quiet machine."""
