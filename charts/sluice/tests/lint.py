#!/usr/bin/env python3
"""Lint the Sluice Helm chart with Helm's own linter (through the helm-sdkpy bindings).

Helm's lint loads Chart.yaml, validates values.yaml against values.schema.json, renders every
template with the values and checks that the output parses as Kubernetes YAML. This script runs
it on the chart as shipped and on value variants that switch on every conditional branch, checks
that the chart's CRD copy matches crds/ and that RBAC has no wildcards, and first proves that the
linter does fail on a broken chart (so a silently passing linter cannot hide problems).

Exit status: 0 when everything passes, 1 otherwise.

Install:  pip install --ignore-requires-python helm-sdkpy
Run:      python charts/sluice/tests/lint.py
"""

from __future__ import annotations

import asyncio
import filecmp
import re
import shutil
import sys
import tempfile
from pathlib import Path

CHART = Path(__file__).resolve().parent.parent
REPO = CHART.parent.parent
CRD_NAME = "inferenceservices.sluice.dev.yaml"

# Helm's lint severities (pkg/lint/support): 1 info, 2 warning, 3 error.
SEVERITY = {0: "UNKNOWN", 1: "INFO", 2: "WARNING", 3: "ERROR"}

# Value variants: (name, [(text in values.yaml, replacement)]). Each switches on branches the
# defaults leave off.
VARIANTS = [
    ("defaults", []),
    (
        "namespace-scoped, ServiceMonitor, PrometheusRule and Grafana dashboard, no alert rules per service, no leader election",
        [
            ('watchNamespace: ""', "watchNamespace: ml-serving"),
            ("serviceMonitorLabels: {}", "serviceMonitorLabels:\n  release: kube-prometheus-stack"),
            ("  enabled: true\n  # -- Seconds", "  enabled: false\n  # -- Seconds"),
            ("    enabled: false\n    # -- Extra labels on that ServiceMonitor", "    enabled: true\n    # -- Extra labels on that ServiceMonitor"),
            ("    enabled: false\n    # -- Extra labels on that PrometheusRule", "    enabled: true\n    # -- Extra labels on that PrometheusRule"),
            ("    enabled: false\n    # -- Labels the sidecar selects on", "    enabled: true\n    # -- Labels the sidecar selects on"),
            ("    annotations: {}\n    # -- Namespace of the ConfigMap", "    annotations:\n      grafana_folder: Sluice\n    # -- Namespace of the ConfigMap"),
            ('    namespace: ""\n', "    namespace: monitoring\n"),
            ("alertRules: true", "alertRules: false"),
            ('    caSecret:\n      name: ""', "    caSecret:\n      name: thanos-ca"),
            ('      user: ""', "      user: sluice"),
            ('      passwordSecret:\n        name: ""', "      passwordSecret:\n        name: thanos-basic-auth"),
            ("    headers: {}", "    headers:\n      X-Scope-OrgID: team-a"),
            ('  image: ""\n', "  image: registry.example/sluice-server:0.1.0\n"),
            ("  allowedImages: []", "  allowedImages:\n    - \"registry.example/sluice-server:\""),
            ("replicaCount: 1", "replicaCount: 2"),
            ("  # with a CNI that enforces NetworkPolicy.\n  enabled: true", "  # with a CNI that enforces NetworkPolicy.\n  enabled: false"),
            ('  prometheusUrl: ""', "  prometheusUrl: http://prometheus-operated.monitoring:9090"),
            ("  interval: 15s", "  interval: 1m"),
            ("  allowedPrometheusUrls: []", "  allowedPrometheusUrls:\n    - http://prometheus.team-a:9090\n    - https://thanos.example"),
            ('  existingSecret: ""', "  existingSecret: sluice-admin-seed"),
            ("  inferenceFromNamespaces: []", "  inferenceFromNamespaces: [apps, monitoring]"),
            ('  otlpEndpoint: ""', "  otlpEndpoint: https://otel-collector.tracing:4318"),
            ("  samplingRatio: 1", "  samplingRatio: 0.1"),
            ('  caSecret:\n    name: ""', "  caSecret:\n    name: otel-ca"),
        ],
    ),
    (
        "existing ServiceAccount, no RBAC",
        [
            ("  create: true\n  # -- Name of the ServiceAccount", "  create: false\n  # -- Name of the ServiceAccount"),
            ('  name: ""\n  # -- Annotations', "  name: sluice-preexisting\n  # -- Annotations"),
            ("    serviceAccountToken: false", "    serviceAccountToken: true"),
            ("rbac:\n  # -- Create the RBAC objects the operator needs (exact verbs, no wildcards).\n  create: true",
             "rbac:\n  # -- Create the RBAC objects the operator needs (exact verbs, no wildcards).\n  create: false"),
            ("  # to servers that have one (the settings ConfigMap still applies them).\n  enabled: true",
             "  # to servers that have one (the settings ConfigMap still applies them).\n  enabled: false"),
        ],
    ),
]


def lint(chart_dir: Path) -> tuple[list[str], list[str]]:
    """Runs Helm's linter; returns (problems, infos) as printable lines."""
    import helm_sdkpy

    # Linting needs no cluster; an empty kubeconfig keeps the library from reading ~/.kube.
    config = helm_sdkpy.Configuration(namespace="sluice-system", kubeconfig="/dev/null")
    result = asyncio.run(helm_sdkpy.Lint(config).run(str(chart_dir)))
    problems, infos = [], []
    if result.get("TotalChartsLinted") != 1:
        problems.append(f"expected 1 chart linted, got {result.get('TotalChartsLinted')}")
    for message in result.get("Messages") or []:
        severity = SEVERITY.get(message.get("Severity"), str(message.get("Severity")))
        # The bindings serialise Go errors as {}; the path still says where the problem is.
        # `helm lint charts/sluice` prints the full text when a local helm is at hand.
        detail = message.get("Err") or ""
        line = f"{severity}: {message.get('Path')} {detail}".rstrip()
        (infos if message.get("Severity") == 1 else problems).append(line)
    for err in result.get("Errors") or []:
        problems.append(f"error: {err}" if err else "error reported (see the messages above)")
    return problems, infos


def variant_copy(tmp: Path, name: str, substitutions: list[tuple[str, str]]) -> Path:
    target = tmp / re.sub(r"[^a-z0-9]+", "-", name.lower())
    shutil.copytree(CHART, target, ignore=shutil.ignore_patterns("tests", "__pycache__"))
    values = (target / "values.yaml").read_text()
    for old, new in substitutions:
        if old not in values:
            raise SystemExit(f"lint.py is out of date: {old!r} not found in values.yaml")
        values = values.replace(old, new, 1)
    (target / "values.yaml").write_text(values)
    return target


def expect_rejected(chart_dir: Path, what: str) -> bool:
    """Lints a chart that must fail; prints the verdict and returns True when it did fail."""
    problems, _ = lint(chart_dir)
    if problems:
        print(f"ok   {what} is rejected")
        return True
    print(f"FAIL {what} was accepted by Helm's linter")
    return False


def static_checks() -> list[str]:
    problems = []
    chart_crd = CHART / "crds" / CRD_NAME
    repo_crd = REPO / "crds" / CRD_NAME
    if not chart_crd.exists() or not filecmp.cmp(chart_crd, repo_crd, shallow=False):
        problems.append(
            f"{chart_crd} differs from {repo_crd}; regenerate both with "
            "`SLUICE_UPDATE_CRDS=1 cargo test -p sluice-api --test crd_drift`"
        )
    # The operator's owner references set blockOwnerDeletion (crates/sluice-operator/src/build);
    # OpenShift's admission refuses that without update on the owner's finalizers.
    rbac = (CHART / "templates" / "rbac.yaml").read_text()
    if not re.search(r'resources: \["inferenceservices/finalizers"\]\s*\n\s*verbs: \["update"\]', rbac):
        problems.append("rbac.yaml: no update on inferenceservices/finalizers (needed for blockOwnerDeletion)")
    # The operator reads no Secret (hardening): it only creates each service's admin-key Secret.
    for verbs in re.findall(r'resources: \["secrets"\]\s*\n\s*verbs: \[([^\]]*)\]', rbac):
        extra = {v.strip().strip('"') for v in verbs.split(",")} - {"create"}
        if extra:
            problems.append(f"rbac.yaml: Secrets need only create, not {sorted(extra)}")
    for template in (CHART / "templates").glob("*.yaml"):
        for number, line in enumerate(template.read_text().splitlines(), 1):
            if re.search(r"""["']\*["']|^\s*-\s*\*\s*$""", line):
                problems.append(f"{template.name}:{number}: wildcard in RBAC: {line.strip()}")
    return problems


def main() -> int:
    try:
        import helm_sdkpy  # noqa: F401
    except ImportError:
        print("helm-sdkpy is missing: pip install --ignore-requires-python helm-sdkpy", file=sys.stderr)
        return 1

    failed = False
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)

        # Self-test: a template that cannot render must fail the lint.
        broken = variant_copy(tmp, "self-test-broken", [])
        (broken / "templates" / "broken.yaml").write_text("kind: ConfigMap\n{{ .Values.no.such.key }}\n")
        failed |= not expect_rejected(broken, "self-test: a broken template")

        # values.schema.json must turn away a Prometheus URL the operator would refuse at start.
        bad = variant_copy(tmp, "self-test-bad-url", [('  prometheusUrl: ""', "  prometheusUrl: prometheus:9090")])
        failed |= not expect_rejected(bad, "schema: slo.prometheusUrl without http://")

        for name, substitutions in VARIANTS:
            problems, infos = lint(variant_copy(tmp, name, substitutions))
            for info in infos:
                print(f"     {name}: {info}")
            if problems:
                failed = True
                print(f"FAIL lint ({name}):")
                for p in problems:
                    print(f"       {p}")
            else:
                print(f"ok   lint ({name})")

    problems = static_checks()
    if problems:
        failed = True
        for p in problems:
            print(f"FAIL {p}")
    else:
        print("ok   chart CRD matches crds/, RBAC has no wildcards")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
