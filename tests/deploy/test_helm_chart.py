"""The Helm chart, rendered by the real `helm template` and validated against the Kubernetes
schemas; its proxy config is loaded by the proxy's own config loader, and its container args
are parsed by the real `cprs` parser."""

from __future__ import annotations

import subprocess

import pytest
import yaml
from deploy_helpers import (
    CHART,
    SECRET,
    by_kind,
    container,
    helm_binary,
    needs_helm,
    parse_cprs_args,
    render,
    validate,
)

from proxy.config import config_from_dict

BASE = {"secrets.cacheKeySecret": SECRET}


def proxy_config(objects):
    (cm,) = by_kind(objects, "ConfigMap").values()
    return config_from_dict(yaml.safe_load(cm["data"]["config.yaml"]))


def pod_labels(deployment: dict) -> dict:
    return deployment["spec"]["template"]["metadata"]["labels"]


def workloads(objects) -> dict[str, dict]:
    """Deployments and StatefulSets by name: each owns pods a Service may select."""
    return by_kind(objects, "Deployment") | by_kind(objects, "StatefulSet")


def engine_pod_urls(objects, namespace: str = "default") -> list[str]:
    """What the proxy must be given: one URL per engine pod, named the way a StatefulSet names
    its pods, under the Service the StatefulSet names as its own (so the DNS record exists)."""
    (sts,) = by_kind(objects, "StatefulSet").values()
    svc = by_kind(objects, "Service")[sts["spec"]["serviceName"]]
    assert svc["spec"]["clusterIP"] == "None", "per-pod DNS needs a headless Service"
    name, port = sts["metadata"]["name"], svc["spec"]["ports"][0]["port"]
    svc_name = svc["metadata"]["name"]
    return [
        f"http://{name}-{i}.{svc_name}.{namespace}.svc:{port}"
        for i in range(sts["spec"]["replicas"])
    ]


def test_values_configs_are_valid_proxy_configs():
    """Runs without helm: each values file's `config` is a valid proxy config (plus the keys
    the chart fills in), so a schema change in proxy/config.py breaks this test."""
    for name in ("values.yaml", "values-cpu.yaml"):
        values = yaml.safe_load((CHART / name).read_text())
        raw = dict(
            values.get("config") or yaml.safe_load((CHART / "values.yaml").read_text())["config"]
        )
        raw["engine"] = {**raw.get("engine", {}), "mode": "remote", "urls": ["http://e:8081"]}
        raw["cache"] = {**raw.get("cache", {}), "redis_url": "redis://r:6379/0"}
        cfg = config_from_dict(raw)
        assert cfg.cache.key_secret_env == "CPRS_CACHE_KEY_SECRET"


@needs_helm
@pytest.mark.parametrize("values", [[], ["-f", str(CHART / "values-cpu.yaml")]])
def test_helm_lint_is_clean(values):
    done = subprocess.run(
        [helm_binary(), "lint", "--strict", str(CHART), "--set", f"secrets.cacheKeySecret={SECRET}"]
        + values,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@needs_helm
def test_default_install_renders_and_validates():
    objects = render(sets=BASE)
    validate(objects)
    kinds = sorted(o["kind"] for o in objects)
    assert kinds == sorted(
        ["ConfigMap", "Secret", "HorizontalPodAutoscaler", "StatefulSet"]
        + ["Deployment"] * 2
        + ["Service"] * 3
    )
    deployments, services = workloads(objects), by_kind(objects, "Service")
    for name, svc in services.items():  # every Service selects exactly its workload's pods
        selector = svc["spec"]["selector"]
        assert deployments[name]["spec"]["selector"]["matchLabels"] == selector
        assert selector.items() <= pod_labels(deployments[name]).items()
        others = [d for n, d in deployments.items() if n != name]
        assert not any(selector.items() <= pod_labels(d).items() for d in others)
    (hpa,) = by_kind(objects, "HorizontalPodAutoscaler").values()
    assert hpa["spec"]["scaleTargetRef"]["name"] == "rel-cprs-proxy-proxy"
    assert "replicas" not in deployments["rel-cprs-proxy-proxy"]["spec"]  # the HPA owns it


@needs_helm
def test_the_proxy_config_points_at_the_rendered_services():
    objects = render(sets=BASE)
    cfg = proxy_config(objects)
    services = by_kind(objects, "Service")
    assert cfg.engine.mode == "remote"
    assert cfg.engine.urls == engine_pod_urls(objects)
    assert len(cfg.engine.urls) == 2  # values.yaml: engine.replicas 2
    assert cfg.cache.redis_url == "redis://rel-cprs-proxy-redis:6379/0"
    assert services["rel-cprs-proxy-redis"]["spec"]["ports"][0]["port"] == 6379
    proxy = container(by_kind(objects, "Deployment")["rel-cprs-proxy-proxy"])
    assert cfg.server.port == proxy["ports"][0]["containerPort"]
    args = parse_cprs_args(proxy["args"])
    assert args.config == "/etc/cprs/config.yaml"
    assert proxy["volumeMounts"][0]["mountPath"] == "/etc/cprs"
    (secret,) = by_kind(objects, "Secret").values()
    assert proxy["envFrom"] == [{"secretRef": {"name": secret["metadata"]["name"]}}]
    assert secret["stringData"]["CPRS_CACHE_KEY_SECRET"] == SECRET
    assert cfg.cache.key_secret_env == "CPRS_CACHE_KEY_SECRET"


@needs_helm
def test_engine_runs_on_gpu_nodes_and_is_ready_once_loaded():
    objects = render(sets=BASE)
    engine = by_kind(objects, "StatefulSet")["rel-cprs-proxy-engine"]
    spec, c = engine["spec"]["template"]["spec"], container(engine)
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec[
        "tolerations"
    ]
    assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert c["ports"] == [{"name": "http", "containerPort": 8081}]
    args = parse_cprs_args(c["args"])
    assert (args.engine_command, args.host, args.port) == ("serve", "0.0.0.0", 8081)
    assert (args.device, args.checkpoint) == ("cuda", "/models/QwenLong-CPRS-7B")
    assert c["volumeMounts"][0]["mountPath"] == "/models"


@needs_helm
def test_cpu_values_need_no_gpu():
    objects = render("values-cpu.yaml", sets=BASE)
    validate(objects)
    assert "nvidia.com/gpu" not in yaml.safe_dump_all(objects)
    engine = by_kind(objects, "StatefulSet")["rel-cprs-proxy-engine"]
    spec, c = engine["spec"]["template"]["spec"], container(engine)
    assert "nodeSelector" not in spec and "tolerations" not in spec and "volumes" not in spec
    args = parse_cprs_args(c["args"])
    assert (args.device, args.checkpoint) == ("cpu", None)  # the shipped critic, on CPU
    assert engine["spec"]["replicas"] == 4
    assert proxy_config(objects).engine.urls == engine_pod_urls(objects)  # four, one per pod


@needs_helm
@pytest.mark.parametrize("replicas", [1, 3, 7])
def test_engine_urls_follow_the_replica_count_and_namespace(replicas):
    objects = render(sets={**BASE, "engine.replicas": replicas}, namespace="team-a")
    validate(objects)
    urls = proxy_config(objects).engine.urls
    assert urls == engine_pod_urls(objects, namespace="team-a")
    assert len(set(urls)) == replicas


@needs_helm
def test_engine_precision_and_compile_reach_the_engine_args():
    objects = render(sets={**BASE, "engine.precision": "int8", "engine.compile": True})
    validate(objects)
    args = parse_cprs_args(
        container(by_kind(objects, "StatefulSet")["rel-cprs-proxy-engine"])["args"]
    )
    assert (args.precision, args.compile) == ("int8", True)
    plain = render(sets=BASE)
    args = parse_cprs_args(
        container(by_kind(plain, "StatefulSet")["rel-cprs-proxy-engine"])["args"]
    )
    assert (args.precision, args.compile) == (None, False)


@needs_helm
def test_zero_engine_replicas_fail_to_render_while_the_engine_is_enabled():
    failed = render(sets={**BASE, "engine.replicas": 0}, check=False)
    assert failed.returncode != 0 and "engine.replicas must be at least 1" in failed.stderr


@needs_helm
def test_in_process_engine_and_external_redis():
    objects = render(sets={**BASE, "engine.enabled": False, "redis.url": "redis://ext:6379/2"})
    validate(objects)
    assert sorted(by_kind(objects, "Deployment")) == ["rel-cprs-proxy-proxy"]
    assert not by_kind(objects, "StatefulSet")
    assert sorted(by_kind(objects, "Service")) == ["rel-cprs-proxy-proxy"]
    cfg = proxy_config(objects)
    assert cfg.engine.mode == "local" and cfg.cache.redis_url == "redis://ext:6379/2"


@needs_helm
def test_a_cache_key_secret_is_required_or_an_existing_secret_named():
    failed = render(check=False)
    assert failed.returncode != 0 and "secrets.cacheKeySecret is required" in failed.stderr
    objects = render(sets={"secrets.existingSecret": "made-elsewhere"})
    validate(objects)
    assert not by_kind(objects, "Secret")
    proxy = container(by_kind(objects, "Deployment")["rel-cprs-proxy-proxy"])
    assert proxy["envFrom"] == [{"secretRef": {"name": "made-elsewhere"}}]


@needs_helm
def test_backend_keys_and_fixed_replicas():
    objects = render(
        sets={
            **BASE,
            "secrets.backendKeys.OPENAI_API_KEY": "sk-x",
            "proxy.autoscaling.enabled": False,
        }
    )
    validate(objects)
    (secret,) = by_kind(objects, "Secret").values()
    assert secret["stringData"]["OPENAI_API_KEY"] == "sk-x"
    assert not by_kind(objects, "HorizontalPodAutoscaler")
    assert by_kind(objects, "Deployment")["rel-cprs-proxy-proxy"]["spec"]["replicas"] == 3
