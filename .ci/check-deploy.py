#!/usr/bin/env python3
"""Checks deploy/kubernetes beyond its schemas: every file the kustomization names exists, and
the broker accepts the settings the manifests give it. Checks docker-compose.yml the same way
(no Docker engine runs in CI, so the demo's compose file is read, not run): every service it
depends on exists with a healthcheck, every file it names exists, the image is built with the
`demo` feature, and the broker accepts its JIT_* settings.

Usage: check-deploy.py BROKER_BINARY
  BROKER_BINARY  a built `jit-broker`, run as `check-config` with deploy/kubernetes/config.toml
                 and each container's JIT_* variables (an unknown key or a bad value fails,
                 naming the key).
Schema validation is `kubernetes-validate --strict` and the rules are checked by promtool (both
in .ci/run); that the dashboard and rules use only exported metrics is the `it` test
`deploy::every_dashboard_and_alert_metric_is_exported`.
"""
import os
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

broker = sys.argv[1]
tmp = tempfile.TemporaryDirectory()
# Mounted files do not exist here: every *_FILE setting points at this stand-in.
secret = os.path.join(tmp.name, "secret")
with open(secret, "w") as f:
    f.write("placeholder\n")


def check_config(where, settings, extra=None):
    """Runs `check-config` on deploy/kubernetes/config.toml with `settings` (name, value) as the
    environment; a name that is not a JIT_* setting, or a setting the broker refuses, is a
    problem named after `where`."""
    env = {"PATH": os.environ.get("PATH", "")}
    for name, value in settings:
        if not name.startswith("JIT_"):
            problems.append(f"{where}: {name} is not a broker setting")
            continue
        env[name] = secret if name.endswith("_FILE") else str(value)
    env["JIT_POLICY__FILE"] = os.path.join(K8S, "policy.toml")
    for k, v in (extra or {}).items():
        env.setdefault(k, v)
    r = subprocess.run(
        [broker, "--config", os.path.join(K8S, "config.toml"), "check-config"],
        env=env, capture_output=True, text=True)
    if r.returncode != 0:
        problems.append(f"{where}: check-config failed:\n{r.stdout}{r.stderr}")


for name in kust["resources"]:
    for doc in docs(os.path.join(K8S, name)):
        for c in containers(doc):
            check_config(f"{name} ({c['name']})",
                         [(e["name"], e.get("value", "")) for e in c.get("env", [])])

compose_path = os.path.join(ROOT, "docker-compose.yml")
compose = docs(compose_path)[0]
services = compose.get("services", {})
broker_svc = services.get("broker", {})
if broker_svc.get("build", {}).get("args", {}).get("FEATURES") != "demo":
    problems.append("docker-compose.yml: the broker image must be built with FEATURES: demo")
if (broker_svc.get("command") or [None])[0] != "demo":
    problems.append("docker-compose.yml: the broker service must run `demo`")
for dep in broker_svc.get("depends_on", {}):
    if dep not in services:
        problems.append(f"docker-compose.yml: broker depends on {dep}, which is not a service")
    elif "healthcheck" not in services[dep]:
        problems.append(f"docker-compose.yml: {dep} has no healthcheck to wait for")
for name, sec in compose.get("secrets", {}).items():
    if not os.path.exists(os.path.join(ROOT, sec.get("file", ""))):
        problems.append(f"docker-compose.yml: secret {name} names a missing file")
# The demo brings its own simulated Okta and token; the production config checked against here
# asks for one.
check_config("docker-compose.yml", broker_svc.get("environment", {}).items(),
             {"JIT_OKTA__API_TOKEN_FILE": secret})
tmp.cleanup()

if problems:
    print("deploy check failed:", *problems, sep="\n  ")
    sys.exit(1)
print(f"deploy check: {len(files)} kustomization files present, manifest and compose settings accepted")
