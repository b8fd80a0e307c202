#!/usr/bin/env python3
"""Checks deploy/: Kubernetes manifests, the kustomization's files, the broker settings the
manifests give, and that every metric the dashboard and alert rules use is one the broker exports.

Usage: check-deploy.py BROKER_BINARY METRICS_LIST
  BROKER_BINARY  a built `jit-broker`, run as `check-config` with each manifest's JIT_* variables
                 (an unknown key or a bad value fails, naming the key).
  METRICS_LIST   the metric names the broker exports, one per line (written by the `it` test
                 `deploy::every_dashboard_and_alert_metric_is_exported`); names from
                 kube-state-metrics (`kube_*`) are allowed in the rules only.
Schema validation itself is `kubernetes-validate --strict` (run by .ci/run).
"""
import json
import os
import re
import subprocess
import sys
import tempfile

import yaml

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
K8S = os.path.join(ROOT, "deploy", "kubernetes")
problems = []


def docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def containers(doc):
    spec = doc.get("spec", {})
    if doc["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return spec.get("template", {}).get("spec", {}).get("containers", [])


kust = docs(os.path.join(K8S, "kustomization.yaml"))[0]
files = list(kust["resources"])
for gen in kust.get("configMapGenerator", []):
    files += gen.get("files", [])
for f in files:
    if not os.path.exists(os.path.join(K8S, f)):
        problems.append(f"kustomization.yaml names {f}, which does not exist")

broker, metrics_list = sys.argv[1], sys.argv[2]
with tempfile.TemporaryDirectory() as tmp:
    secret = os.path.join(tmp, "secret")
    with open(secret, "w") as f:
        f.write("placeholder\n")
    for name in kust["resources"]:
        for doc in docs(os.path.join(K8S, name)):
            for c in containers(doc):
                env = {"PATH": os.environ.get("PATH", "")}
                for e in c.get("env", []):
                    if not e["name"].startswith("JIT_"):
                        problems.append(f"{name}: {e['name']} is not a broker setting")
                        continue
                    value = e.get("value", "")
                    # Mounted files do not exist here: point *_FILE at a stand-in.
                    env[e["name"]] = secret if e["name"].endswith("_FILE") else value
                env["JIT_POLICY__FILE"] = os.path.join(K8S, "policy.toml")
                r = subprocess.run(
                    [broker, "--config", os.path.join(K8S, "config.toml"), "check-config"],
                    env=env, capture_output=True, text=True)
                if r.returncode != 0:
                    problems.append(f"{name} ({c['name']}): check-config failed:\n{r.stdout}{r.stderr}")

exported = set(open(metrics_list).read().split())
used = {}
dash = json.load(open(os.path.join(ROOT, "deploy", "grafana", "jit-broker.json")))
rules = docs(os.path.join(ROOT, "deploy", "prometheus", "alerts.yaml"))[0]
exprs = [("dashboard", t["expr"]) for p in dash["panels"] for t in p.get("targets", [])]
exprs += [("alerts", r["expr"]) for g in rules["groups"] for r in g["rules"]]
FUNCS = {"sum", "rate", "increase", "histogram_quantile", "max", "min", "by", "without",
         "changes", "min_over_time", "max_over_time", "avg", "count", "le", "time", "on",
         "ignoring", "clamp_min", "irate", "delta", "avg_over_time", "bool", "and", "or",
         "unless", "absent", "vector", "group_left", "topk", "offset"}
for where, expr in exprs:
    # Drop label matchers and grouping lists, then take the identifiers that remain.
    bare = re.sub(r"\{[^}]*\}", "", expr)
    bare = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", bare)
    bare = re.sub(r"\[[^\]]*\]", "", bare)
    for name in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", bare):
        if name in FUNCS:
            continue
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        if name.startswith("kube_") and where == "alerts":
            continue
        if name not in exported and base not in exported:
            problems.append(f"{where}: {name} is not exported by the broker")

if problems:
    print("deploy check failed:", *problems, sep="\n  ")
    sys.exit(1)
print(f"deploy check: {len(files)} kustomization files, {len(exprs)} queries, all metrics exported")
