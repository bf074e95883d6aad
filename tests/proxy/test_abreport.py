"""`cprs ab-report` over a synthetic JSONL request log."""

import argparse
import json

import pytest

from proxy import abreport


def _rec(
    i,
    arm,
    *,
    tenant="acme",
    policy="default",
    orig=1000,
    sent=None,
    lat=100.0,
    status=200,
    error_type=None,
    ts=1_700_000_000.0,
    cache="miss",
):
    return {
        "ts": ts,
        "request_id": f"r{i}",
        "tenant": tenant,
        "policy": policy,
        "model": "gpt-4o",
        "arm": arm,
        "compressed": arm == "compress",
        "cache": cache,
        "original_tokens": orig,
        "sent_tokens": orig if sent is None else sent,
        "latency_ms": lat,
        "upstream_ms": lat / 2,
        "compress_ms": None,
        "status": status,
        "error_type": error_type,
        "stream": False,
    }


def _records():
    recs = []
    # compress arm: 100 requests, latency 1..100 ms, 1000 -> 100 tokens, 2 errors, 10 cache hits
    for i in range(100):
        recs.append(
            _rec(
                i,
                "compress",
                sent=100,
                lat=float(i + 1),
                status=502 if i in (3, 7) else 200,
                error_type="upstream_error" if i in (3, 7) else None,
                cache="hit" if i < 10 else "miss",
                tenant="acme" if i % 2 else "globex",
            )
        )
    # control arm: 10 requests, latency 10,20,..,100, nothing saved, 1 error via status only
    for i in range(10):
        recs.append(
            _rec(
                100 + i,
                "control",
                orig=500,
                lat=10.0 * (i + 1),
                status=429 if i == 0 else 200,
                cache="off",
                ts=1_700_000_000.0 + i * 100,
            )
        )
    return recs


def _parse(*argv):
    parser = argparse.ArgumentParser()
    abreport.add_arguments(parser)
    return parser.parse_args(list(argv))


def _write(tmp_path, recs, extra_lines=()):
    f = tmp_path / "requests.jsonl"
    lines = [json.dumps(r) for r in recs] + list(extra_lines)
    f.write_text("\n".join(lines) + "\n")
    return f


def test_percentile_matches_linear_interpolation():
    values = [float(v) for v in range(1, 101)]
    assert abreport.percentile(values, 50) == pytest.approx(50.5)
    assert abreport.percentile(values, 95) == pytest.approx(95.05)
    assert abreport.percentile(values, 99) == pytest.approx(99.01)
    assert abreport.percentile([7.0], 99) == 7.0
    assert abreport.percentile([], 50) is None


def test_per_arm_sums_and_percentiles():
    report = abreport.summarize(_records())
    c, k = report["arms"]["compress"], report["arms"]["control"]
    assert c["requests"] == 100 and k["requests"] == 10
    assert c["errors"] == 2 and k["errors"] == 1
    assert c["error_rate"] == pytest.approx(0.02) and k["error_rate"] == pytest.approx(0.1)
    assert (c["original_tokens"], c["sent_tokens"], c["saved_tokens"]) == (100_000, 10_000, 90_000)
    assert c["saving_pct"] == pytest.approx(90.0)
    assert (k["original_tokens"], k["sent_tokens"], k["saved_tokens"]) == (5000, 5000, 0)
    assert k["saving_pct"] == 0.0
    assert c["compressed"] == 100 and k["compressed"] == 0
    assert c["cache_hits"] == 10 and k["cache_hits"] == 0
    assert c["latency_ms"] == pytest.approx({"p50": 50.5, "p95": 95.05, "p99": 99.01})
    # control: 10..100 step 10 -> p50 = 55, p95 = 95.5, p99 = 99.1
    assert k["latency_ms"] == pytest.approx({"p50": 55.0, "p95": 95.5, "p99": 99.1})


def test_filters_and_grouping():
    recs = _records()
    only_acme = abreport.summarize(recs, tenant="acme")
    assert only_acme["arms"]["compress"]["requests"] == 50
    assert "control" in only_acme["arms"]  # control records are all acme
    assert abreport.summarize(recs, tenant="nobody")["arms"] == {}
    assert abreport.summarize(recs, policy="other")["arms"] == {}
    since = abreport.summarize(recs, since=1_700_000_000.0 + 500)
    assert since["arms"]["control"]["requests"] == 5 and "compress" not in since["arms"]
    grouped = abreport.summarize(recs, by=("tenant",))
    rows = {(g["tenant"], g["arm"]): g for g in grouped["groups"]}
    assert set(rows) == {("acme", "compress"), ("globex", "compress"), ("acme", "control")}
    assert rows[("globex", "compress")]["requests"] == 50
    assert rows[("globex", "compress")]["errors"] == 0  # errors were i=3, 7: odd -> acme
    assert rows[("acme", "compress")]["errors"] == 2


def test_parse_since():
    assert abreport.parse_since("1700000000") == 1_700_000_000.0
    assert abreport.parse_since("24h", now=100_000.0) == 100_000.0 - 86_400
    assert abreport.parse_since("30m", now=10_000.0) == 10_000.0 - 1800
    assert abreport.parse_since("2023-11-14T22:13:20") == 1_700_000_000.0  # naive = UTC
    assert abreport.parse_since("2023-11-15T00:13:20+02:00") == 1_700_000_000.0
    with pytest.raises(ValueError):
        abreport.parse_since("yesterday-ish")


def test_run_json_output_skips_malformed_lines(tmp_path, capsys):
    f = _write(tmp_path, _records(), ["not json", '{"arm": "weird"}', "[1,2]", ""])
    assert abreport.run(_parse("--log", str(f), "--json")) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["malformed_lines"] == 3
    assert out["arms"]["compress"]["saved_tokens"] == 90_000
    assert out["arms"]["control"]["requests"] == 10


def test_run_table_output(tmp_path, capsys):
    f = _write(tmp_path, _records())
    assert abreport.run(_parse("--log", str(f), "--by", "tenant")) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["arm", "requests", "errors"]
    compress = next(line for line in lines if line.startswith("compress "))
    cells = compress.split()
    assert cells[1:4] == ["100", "2", "2.0"]  # requests, errors, err%
    assert cells[4:8] == ["100000", "10000", "90000", "90.0"]
    assert cells[-3:] == ["50.5", "95.0", "99.0"]  # p50/p95/p99 at one decimal
    assert any(line.startswith("globex/compress ") for line in lines)


def test_run_reads_log_path_from_config(tmp_path, capsys, monkeypatch):
    log = _write(tmp_path, _records())
    cfg = tmp_path / "cprs.yaml"
    cfg.write_text(f"log:\n  requests_path: {log}\n")
    monkeypatch.delenv("CPRS_CONFIG", raising=False)
    assert abreport.run(_parse("--config", str(cfg), "--json")) == 0
    assert json.loads(capsys.readouterr().out)["arms"]["compress"]["requests"] == 100


def test_run_errors(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("CPRS_CONFIG", raising=False)
    assert abreport.run(_parse()) == 2
    assert abreport.run(_parse("--log", str(tmp_path / "missing.jsonl"))) == 1
    assert abreport.run(_parse("--log", str(tmp_path / "x"), "--since", "soon")) == 2
    err = capsys.readouterr().err
    assert "no --log" in err and "cannot read" in err and "--since" in err


def test_empty_log(tmp_path, capsys):
    f = _write(tmp_path, [])
    assert abreport.run(_parse("--log", str(f))) == 0
    assert "no matching requests" in capsys.readouterr().out
