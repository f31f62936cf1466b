"""deploy/kubernetes checked offline: every object validates against the Kubernetes API schemas of the versions
we target (``kubernetes-validate``, strict: no unknown field), every PLAIT_* variable the manifests set is a
setting the node knows, and the pieces fit together (probes, selectors, grace period, ingress timeouts)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from api.composition import running_node
from persistence.migrate import upgrade_async
from persistence.settings import Settings
from sync_server import service

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "kubernetes"
# The target (docs/deployment.md, "Kubernetes"): 1.31, and every version from the oldest still supported by the
# large managed offerings to the newest the validator knows.
TARGET_VERSIONS = ("1.29", "1.31", "1.34")
# plait serve: uvicorn's timeout_graceful_shutdown (api/cli.py) and the sync service's stop step (api/composition.py)
UVICORN_GRACEFUL_SECONDS = 5
SYNC_STOP_SECONDS = 25


def _documents() -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs.append((path.name, doc))
    return docs


def _kind(kind: str) -> dict[str, Any]:
    found = [doc for _, doc in _documents() if doc["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def _pod_specs() -> list[dict[str, Any]]:
    return [_kind("Deployment")["spec"]["template"]["spec"], _kind("Job")["spec"]["template"]["spec"]]


@pytest.mark.parametrize("version", TARGET_VERSIONS)
def test_every_manifest_validates_strictly_against_the_target_kubernetes(version: str) -> None:
    checked = 0
    for name, doc in _documents():
        if doc["kind"] == "Kustomization":  # kustomize's own file, not an API object
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{name} ({doc['kind']}) against {version}: {'.'.join(map(str, exc.path))}: {exc.message}")
        checked += 1
    assert checked >= 9


def test_the_validator_rejects_what_it_should() -> None:
    """The check has teeth: an unknown field and a wrong type are refused."""
    bad = yaml.safe_load((K8S / "service.yaml").read_text())
    bad["spec"]["portz"] = []
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, TARGET_VERSIONS[1], strict=True)
    bad = yaml.safe_load((K8S / "pdb.yaml").read_text())
    bad["spec"]["selector"] = "app"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, TARGET_VERSIONS[1], strict=True)


def test_every_variable_the_manifests_set_is_a_setting_of_the_node(monkeypatch: pytest.MonkeyPatch) -> None:
    names: set[str] = set()
    names |= set(_kind("ConfigMap")["data"])
    names |= set(_kind("Secret")["stringData"])
    for spec in _pod_specs():
        for container in spec["containers"]:
            names |= {e["name"] for e in container.get("env", [])}
    assert names, "the manifests set no variable"
    unknown = sorted(n for n in names if not n.startswith("PLAIT_") or n[6:].lower() not in Settings.model_fields)
    assert not unknown, f"variables no setting reads: {unknown}"
    assert {"PLAIT_DATABASE_URL", "PLAIT_REDIS_URL", "PLAIT_SECRET_KEY", "PLAIT_METRICS_TOKEN"} <= set(
        _kind("Secret")["stringData"]
    ), "credentials belong in the Secret"
    config = _kind("ConfigMap")["data"]
    assert config["PLAIT_ENV"] == "production" and config["PLAIT_MIGRATE_ON_START"] == "false"
    # The values parse as the node parses its environment.
    for name, value in config.items():
        monkeypatch.setenv(name, value)
    parsed = Settings(_env_file=None)  # type: ignore[call-arg]
    assert parsed.allowed_origins == [config["PLAIT_PUBLIC_URL"]] and parsed.env == "production"


def test_pods_read_their_settings_from_the_configmap_and_the_secret() -> None:
    config, secret = _kind("ConfigMap")["metadata"]["name"], _kind("Secret")["metadata"]["name"]
    for spec in _pod_specs():
        (container,) = spec["containers"]
        refs = {(next(iter(r)), next(iter(r.values()))["name"]) for r in container["envFrom"]}
        assert refs == {("configMapRef", config), ("secretRef", secret)}


def test_the_node_deployment_probes_requests_and_disruption() -> None:
    dep = _kind("Deployment")
    pod = dep["spec"]["template"]["spec"]
    (node,) = pod["containers"]
    assert node["command"] == ["plait", "serve"]
    assert node["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert node["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert {"cpu", "memory"} <= set(node["resources"]["requests"])
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert dep["spec"]["selector"]["matchLabels"].items() <= labels.items()
    for kind in ("Service", "PodDisruptionBudget"):
        selector = _kind(kind)["spec"]["selector"]
        selector = selector.get("matchLabels", selector)
        assert selector.items() <= labels.items(), f"the {kind} does not select the node pods"
    assert dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    hpa = _kind("HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == dep["metadata"]["name"]
    assert hpa["spec"]["minReplicas"] >= 2, "one pod would leave no node for the clients of a restarting one"
    assert "replicas" not in dep["spec"], "the autoscaler owns the count; kubectl apply would reset it"


async def test_the_grace_period_covers_the_node_shutdown(tmp_path: Path) -> None:
    """preStop, then SIGTERM: uvicorn's graceful window, then every stop step the node registers, each bounded
    by its own timeout (the sync service's 25 s: writer drained, logs folded; every other 15 s). Read from a
    real node's supervisor, so a step added later is counted. Kubernetes SIGKILLs a pod still running when the
    grace period ends, in the middle of whatever step it was in."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'plait.db'}"
    await upgrade_async(url)
    settings = Settings(_env_file=None, database_url=url, data_dir=tmp_path, env="test")  # type: ignore[call-arg]
    async with running_node(settings, "k" * 48, url) as ctx:
        steps = {step.name: step.timeout for step in ctx.supervisor._steps}
    assert steps["sync"] == SYNC_STOP_SECONDS >= service.SHUTDOWN_FOLD_SECONDS
    assert len(steps) >= 9, steps
    pod = _kind("Deployment")["spec"]["template"]["spec"]
    (node,) = pod["containers"]
    pre_stop = int(node["lifecycle"]["preStop"]["exec"]["command"][-1])
    worst = pre_stop + UVICORN_GRACEFUL_SECONDS + sum(steps.values())
    assert pod["terminationGracePeriodSeconds"] >= worst, (pod["terminationGracePeriodSeconds"], worst, steps)
    assert "timeout_graceful_shutdown=5" in (ROOT / "api" / "cli.py").read_text()


def test_the_migration_job_runs_plait_migrate_once() -> None:
    job = _kind("Job")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["plait", "migrate"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    assert container["image"] == _kind("Deployment")["spec"]["template"]["spec"]["containers"][0]["image"]


def test_the_ingress_keeps_sockets_and_streams_open() -> None:
    ing = _kind("Ingress")
    notes = ing["metadata"]["annotations"]
    assert int(notes["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 3600
    assert int(notes["nginx.ingress.kubernetes.io/proxy-send-timeout"]) >= 3600
    assert notes["nginx.ingress.kubernetes.io/proxy-buffering"] == "off", "SSE must not be buffered"
    body = notes["nginx.ingress.kubernetes.io/proxy-body-size"]
    assert body.endswith("m") and int(body[:-1]) * 1024 * 1024 > Settings().max_message_bytes
    (rule,) = ing["spec"]["rules"]
    (path,) = rule["http"]["paths"]
    assert path["backend"]["service"]["name"] == _kind("Service")["metadata"]["name"]


def test_kustomization_lists_every_object_but_the_job_and_the_secret() -> None:
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kust["resources"]) == files - {"migrate-job.yaml", "secret.yaml"}
