#!/usr/bin/env python3
"""Runs docs/argocd-health.lua (the Argo CD health check for InferenceService) under Lua 5.1,
the language version of Argo CD's gopher-lua, against InferenceService objects in the states
the operator produces, and checks the health Argo CD would show.

Install:  pip install lupa
Run:      python charts/sluice/tests/test_argocd_health.py
"""

from __future__ import annotations

import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[3] / "docs" / "argocd-health.lua"


def cond(type_, status, reason="R", message="m"):
    return {"type": type_, "status": status, "reason": reason, "message": message}


def isvc(generation=1, observed=1, conditions=None):
    obj = {"metadata": {"name": "tiny", "generation": generation}}
    if conditions is not None:
        obj["status"] = {"observedGeneration": observed, "conditions": conditions}
    return obj


CASES = [
    ("no status yet", isvc(), "Progressing", "Waiting for the Sluice operator"),
    (
        "spec changed, not yet observed",
        isvc(generation=2, observed=1, conditions=[cond("Ready", "True")]),
        "Progressing",
        "generation 2",
    ),
    (
        "invalid spec",
        isvc(conditions=[cond("Ready", "False"), cond("Degraded", "True", "InvalidSpec", "replicas.min exceeds max")]),
        "Degraded",
        "InvalidSpec: replicas.min exceeds max",
    ),
    (
        "rolling out",
        isvc(conditions=[cond("Ready", "False", "PodsNotReady", "0/1 replicas ready"),
                         cond("Progressing", "True", "RollingOut", "0/1 updated"),
                         cond("Degraded", "False", "AsExpected")]),
        "Progressing",
        "RollingOut: 0/1 updated",
    ),
    (
        "ready, second rollout in progress",
        isvc(conditions=[cond("Ready", "True", "Available"), cond("Progressing", "True", "RollingOut", "1/2 updated"),
                         cond("Degraded", "False")]),
        "Progressing",
        "RollingOut",
    ),
    (
        "ready",
        isvc(conditions=[cond("Ready", "True", "Available", "2/2 replicas ready"),
                         cond("Progressing", "False", "RolloutComplete"), cond("Degraded", "False"),
                         cond("SLOMet", "Unknown", "AwaitingMetrics")]),
        "Healthy",
        "Available: 2/2 replicas ready",
    ),
    (
        "ready but SLO violated",
        isvc(conditions=[cond("Ready", "True", "Available", "2/2 replicas ready"),
                         cond("Progressing", "False"), cond("Degraded", "False"),
                         cond("SLOMet", "False", "TtftP95Violated", "ttft p95 1.4s > 1s")]),
        "Healthy",
        "SLO violated",
    ),
    (
        "stalled rollout",
        isvc(conditions=[cond("Ready", "False"), cond("Progressing", "False", "ProgressDeadlineExceeded"),
                         cond("Degraded", "True", "ProgressDeadlineExceeded", "not progressing")]),
        "Degraded",
        "ProgressDeadlineExceeded",
    ),
]


def to_lua(lua, value):
    if isinstance(value, dict):
        return lua.table_from({k: to_lua(lua, v) for k, v in value.items()})
    if isinstance(value, list):
        return lua.table_from([to_lua(lua, v) for v in value])
    return value


def main() -> int:
    from lupa import lua51

    source = SCRIPT.read_text()
    failed = False
    for name, obj, want_status, want_message in CASES:
        lua = lua51.LuaRuntime()
        lua.globals().obj = to_lua(lua, obj)
        result = lua.execute(source)
        status, message = result["status"], result["message"]
        if status != want_status or want_message not in message:
            failed = True
            print(f"FAIL {name}: got {status} {message!r}, want {want_status} containing {want_message!r}")
        else:
            print(f"ok   {name}: {status} {message!r}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
