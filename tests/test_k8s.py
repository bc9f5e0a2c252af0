"""The Kubernetes manifests (deploy/k8s): built with kustomize (pinned in the standards data,
built from source), decoded strictly into the Kubernetes API's Go types (tests/k8scheck), and
held to the service they deploy: its ports, probe paths, drain and shutdown timing, the
configuration it reads, and the sizing the answers imply. The default and gRPC services are
then started with the Deployment's own environment and probed the way the kubelet would."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from extensions import decisions
from tests.conftest import ALL_VARIANTS, STANDARDS, available, go_tool, k8scheck_path, render_shared
from tests.test_smoke import Service, binaries, call, fresh_database, grpc_health  # noqa: F401  (binaries: fixture)

pytestmark = [pytest.mark.go, pytest.mark.slow]

K = STANDARDS["kubernetes"]
KINDS = {
    "ServiceAccount", "ConfigMap", "Service", "Deployment", "HorizontalPodAutoscaler",
    "PodDisruptionBudget", "NetworkPolicy", "ServiceMonitor",
}


@pytest.fixture(scope="module")
def kustomize() -> Path:
    return go_tool("kustomize")


@pytest.fixture(scope="module")
def k8scheck() -> Path:
    return available(k8scheck_path)


def build_manifests(kustomize: Path, k8scheck: Path, project: Path, overlay: str = "overlays/production") -> dict[str, dict]:
    """kustomize build, then the strict decode; the objects by kind."""
    built = subprocess.run([str(kustomize), "build", str(project / "deploy/k8s" / overlay)], capture_output=True, text=True, timeout=120)
    assert built.returncode == 0, built.stderr
    checked = subprocess.run([str(k8scheck)], input=built.stdout, capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stderr
    objects = json.loads(checked.stdout)
    by_kind = {o["kind"]: o for o in objects}
    assert len(by_kind) == len(objects), "one object of each kind"
    return by_kind


def env_default(project: Path, name: str) -> str:
    """The default the service's config gives an environment variable."""
    text = (project / "internal/config/config.go").read_text()
    m = re.search(rf'env:"{name}" envDefault:"([^"]*)"', text)
    assert m, f"{name} has no default in internal/config/config.go"
    return m.group(1)


def config_variables(project: Path) -> set[str]:
    return set(re.findall(r'env:"([A-Z0-9_]+)"', (project / "internal/config/config.go").read_text()))


def seconds(duration: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)", duration)
    assert m, duration
    return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60}[m.group(2)]


def port_of(addr: str) -> int:
    return int(addr.rsplit(":", 1)[1])


def test_kustomize_rejects_what_the_checker_must_catch(k8scheck):
    """The strict decode fails on a misspelt field and on a wrong type: it can fail."""
    bad = "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec:\n  portz: []\n"
    assert subprocess.run([str(k8scheck)], input=bad, capture_output=True, text=True).returncode != 0
    wrong = "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: x}\nspec:\n  maxUnavailable: {a: 1}\n"
    assert subprocess.run([str(k8scheck)], input=wrong, capture_output=True, text=True).returncode != 0


@pytest.mark.parametrize("variant", ["default", "grpc", "chi-grpc"])
def test_manifests_match_the_service(kustomize, k8scheck, variant):
    answers = ALL_VARIANTS[variant]
    project = render_shared(answers)
    base = build_manifests(kustomize, k8scheck, project, "base")
    objs = build_manifests(kustomize, k8scheck, project)
    assert set(objs) == KINDS and set(base) == KINDS
    slug = objs["Deployment"]["metadata"]["name"]
    assert {o["metadata"].get("namespace") for o in objs.values()} == {slug}

    plan = decisions.plan(yaml.safe_load((project / ".copier-answers.yml").read_text()), STANDARDS)
    rest, grpc = plan["flags"]["rest"], plan["flags"]["grpc"]
    dep = objs["Deployment"]
    pod = dep["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}

    # Ports: the container's are the service's defaults, the Service and the NetworkPolicy
    # open exactly those, the ServiceMonitor scrapes the metrics one.
    want = {"metrics": port_of(env_default(project, "METRICS_ADDR"))}
    if rest:
        want["http"] = port_of(env_default(project, "HTTP_ADDR"))
    if grpc:
        want["grpc"] = port_of(env_default(project, "GRPC_ADDR"))
    assert ports == want
    assert {p["name"]: (p["port"], p["targetPort"]) for p in objs["Service"]["spec"]["ports"]} == {n: (v, n) for n, v in want.items()}
    opened = {p["port"] for rule in objs["NetworkPolicy"]["spec"]["ingress"] for p in rule["ports"]}
    assert opened == set(want)
    (endpoint,) = objs["ServiceMonitor"]["spec"]["endpoints"]
    assert endpoint["port"] == "metrics" and endpoint["path"] == "/metrics"
    selector = {"app.kubernetes.io/name": slug}
    for kind in ("Service", "ServiceMonitor"):
        assert objs[kind]["spec"]["selector"].get("matchLabels", objs[kind]["spec"]["selector"]) == selector
    assert dep["spec"]["selector"]["matchLabels"] == selector and objs["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"] == selector
    assert pod["topologySpreadConstraints"] and all(c["labelSelector"]["matchLabels"] == selector for c in pod["topologySpreadConstraints"])

    # Probes: HTTP on the service's own paths, or gRPC health / the port for gRPC-only.
    if rest:
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        assert container["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
        assert container["startupProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
    else:
        # The overall health ("": every service, following the database).
        assert container["readinessProbe"]["grpc"]["port"] == want["grpc"] and not container["readinessProbe"]["grpc"].get("service")
        assert container["livenessProbe"]["tcpSocket"] == {"port": "grpc"}
    # The endpoint goes before the drain ends; the kill comes after drain + shutdown.
    drain = seconds(env_default(project, "SHUTDOWN_DRAIN_DELAY"))
    shutdown = seconds(env_default(project, "SHUTDOWN_TIMEOUT"))
    ready = container["readinessProbe"]
    assert ready["periodSeconds"] * ready["failureThreshold"] < drain
    assert pod["terminationGracePeriodSeconds"] > drain + shutdown

    # Sizing follows the answers.
    k = plan["kubernetes"]["chosen"]
    hpa = objs["HorizontalPodAutoscaler"]["spec"]
    assert dep["spec"]["replicas"] == hpa["minReplicas"] == k["replicas_min"] >= K["replicas_min"]
    assert hpa["maxReplicas"] == k["replicas_max"] > hpa["minReplicas"]
    assert hpa["metrics"][0]["resource"]["target"]["averageUtilization"] == round(K["hpa_cpu_utilization"] * 100)
    assert hpa["scaleTargetRef"]["name"] == slug
    assert objs["PodDisruptionBudget"]["spec"]["maxUnavailable"] == K["pdb_max_unavailable"] < k["replicas_min"]
    res = container["resources"]
    assert res["requests"] == {"cpu": K["cpu_request"], "memory": K["memory_request"]}
    assert res["limits"] == {"cpu": K["cpu_limit"], "memory": K["memory_limit"]}
    assert {e["name"]: e["value"] for e in container["env"]} == {"GOMEMLIMIT": k["gomemlimit"]}

    # Locked down: the image's non-root user, nothing writable, nothing escalated.
    uid = int(re.search(r"^USER (\d+):", (project / "Dockerfile").read_text(), re.M).group(1))
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == uid
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]} and sc.get("privileged") is False
    assert pod["automountServiceAccountToken"] is False

    # Configuration: the ConfigMap holds only variables the service reads, no secret;
    # the Secret is referenced, never inlined.
    config = objs["ConfigMap"]["data"]
    assert set(config) <= config_variables(project), set(config) - config_variables(project)
    assert not {"JWT_SECRET", "DATABASE_URL"} & set(config) or plan["db"]["default_type"] == "sqlite"
    assert config["APP_ENV"] == "production" and config["DB_TYPE"] == plan["db"]["default_type"]
    refs = container["envFrom"]
    assert {"secretRef": {"name": slug}} in refs
    assert any(r.get("configMapRef", {}).get("name") == objs["ConfigMap"]["metadata"]["name"] for r in refs)


def test_sizing_moves_with_the_answers(kustomize, k8scheck):
    """A bigger peak gives more replicas and a higher ceiling; the manifests say so."""
    small = build_manifests(kustomize, k8scheck, render_shared({"peak_rps": 12_000}))
    big = build_manifests(kustomize, k8scheck, render_shared({"peak_rps": 120_000}))
    for peak, objs in ((12_000, small), (120_000, big)):
        want = decisions.replicas(peak, STANDARDS).choice
        hpa = objs["HorizontalPodAutoscaler"]["spec"]
        assert (hpa["minReplicas"], hpa["maxReplicas"]) == (want["min"], want["max"])
        assert objs["Deployment"]["spec"]["replicas"] == want["min"]
    assert big["HorizontalPodAutoscaler"]["spec"]["minReplicas"] > small["HorizontalPodAutoscaler"]["spec"]["minReplicas"]


def test_sqlite_only_service_gets_a_writable_volume(kustomize, k8scheck):
    objs = build_manifests(kustomize, k8scheck, render_shared({"databases": ["sqlite"]}))
    pod = objs["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    (mount,) = container["volumeMounts"]
    assert objs["ConfigMap"]["data"]["DATABASE_URL"] == f"file:{mount['mountPath']}/app.db"
    assert pod["volumes"] == [{"name": mount["name"], "emptyDir": {}}]


# ------------------------------------------------------------------ the kubelet's view
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.postgres
@pytest.mark.parametrize("variant", ["default", "grpc"])
def test_probes_work_on_the_built_binary(kustomize, k8scheck, binaries, variant, postgres_dsn):  # noqa: F811
    """Start the binary with the Deployment's environment (ConfigMap + GOMEMLIMIT + a Secret
    with DATABASE_URL and JWT_SECRET) and probe it as the kubelet would: startup and
    liveness, readiness ready; SIGTERM turns readiness off at once (inside the endpoint
    removal time) while the process keeps serving, and it exits before the grace period."""
    project = render_shared(ALL_VARIANTS[variant])
    objs = build_manifests(kustomize, k8scheck, project)
    pod = objs["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {**objs["ConfigMap"]["data"], **{e["name"]: e["value"] for e in container["env"]}}
    env.update(DATABASE_URL=fresh_database(postgres_dsn), JWT_SECRET="k8s-test-secret-0123456789abcdef0123456789")
    assert env["DB_TYPE"] == "postgresql"
    ports = {p["name"]: free_port() for p in container["ports"]}
    env["METRICS_ADDR"] = f"127.0.0.1:{ports['metrics']}"
    if "http" in ports:
        env["HTTP_ADDR"] = f"127.0.0.1:{ports['http']}"
    if "grpc" in ports:
        env["GRPC_ADDR"] = f"127.0.0.1:{ports['grpc']}"

    def probe(spec: dict) -> bool:
        if "httpGet" in spec:
            status, _, _ = call("GET", f"http://127.0.0.1:{ports[spec['httpGet']['port']]}{spec['httpGet']['path']}")
            return status is not None and 200 <= status < 400
        if "grpc" in spec:
            return grpc_health(f"127.0.0.1:{ports['grpc']}", spec["grpc"].get("service") or "") == "SERVING"
        try:
            with socket.create_connection(("127.0.0.1", ports[spec["tcpSocket"]["port"]]), timeout=1):
                return True
        except OSError:
            return False

    svc = Service(binaries[variant], env)
    try:
        startup = container["startupProbe"]
        budget = startup["periodSeconds"] * startup["failureThreshold"]
        start = time.monotonic()
        while not probe(startup):
            assert svc.proc.poll() is None, "".join(svc.raw)
            assert time.monotonic() - start < budget, "the start-up probe never passed"
            time.sleep(0.1)
        for _ in range(50):
            if probe(container["readinessProbe"]):
                break
            time.sleep(0.1)
        assert probe(container["readinessProbe"]) and probe(container["livenessProbe"]), "".join(svc.raw)

        svc.proc.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        ready = container["readinessProbe"]
        removal = ready["periodSeconds"] * ready["failureThreshold"]
        while probe(ready):
            assert time.monotonic() - sent < removal, "readiness still passes after the endpoint-removal time"
            time.sleep(0.05)
        # Not ready, but still alive and serving during the drain.
        assert probe(container["livenessProbe"]) and svc.proc.poll() is None
        svc.proc.wait(timeout=pod["terminationGracePeriodSeconds"])
        took = time.monotonic() - sent
        assert svc.proc.returncode == 0 and took < pod["terminationGracePeriodSeconds"]
        print(f"\n{variant}: not ready {removal} s budget; exited after {took:.1f} s of a {pod['terminationGracePeriodSeconds']} s grace period")
    finally:
        if svc.proc.poll() is None:
            svc.proc.kill()
