#!/usr/bin/env python3
"""Checks deploy/kubernetes as an operator would apply it, and docker-compose.yml as Docker would
run it (no cluster and no container engine in CI).

Kubernetes: each overlay (production, trial, and production with every component) is rendered
by .ci/kustomize.py (compared with `kubectl kustomize` when kubectl is installed), and then:
  - every rendered manifest passes `kubernetes-validate --strict` (CRDs: warned about);
  - the image is set in one place: every broker container runs the overlay's image;
  - every ConfigMap a pod names is rendered; every Secret it names is `jit-broker` (or the
    in-cluster database's key of it); the public Ingress routes only the hook paths, over TLS;
  - the PrometheusRule carries exactly deploy/prometheus/alerts.yaml's groups;
  - Secret keys: every secret the code reads (each `resolve_secret` key in src/) has a `*_file`
    under /var/run/secrets/jit-broker/ in config.toml, each such file is a key of
    secret.example.yaml, and each key there is read by config.toml;
  - `jit-broker check-config` runs with each broker container's JIT_* settings (env and envFrom)
    and the rendered config.toml and policy.toml: with the example's REPLACE_ME placeholders it
    must fail naming each one as a placeholder; with them filled in (and with every optional
    setting of config.toml turned on) it must pass.
Compose: every service the broker depends on exists with a healthcheck, every file it names
exists, the image is built with the `demo` feature, and the broker accepts its JIT_* settings.

Usage: check-deploy.py BROKER_BINARY      (a built `jit-broker`)
       check-deploy.py --write-prometheusrule
"""
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kustomize  # noqa: E402

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
K8S = os.path.join(ROOT, "deploy", "kubernetes")
PRODUCTION = os.path.join(K8S, "overlays", "production")
ALERTS = os.path.join(ROOT, "deploy", "prometheus", "alerts.yaml")
RULE = os.path.join(K8S, "components", "prometheus-operator", "prometheusrule.yaml")
SECRETS_DIR = "/var/run/secrets/jit-broker/"
PUBLIC_PATHS = {("/hooks/okta", "Exact"), ("/hooks/slack", "Prefix"),
                ("/hooks/approvals", "Exact")}
WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
problems = []


def prometheusrule_text():
    with open(ALERTS) as f:
        groups = yaml.safe_load(f)["groups"]
    doc = {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
           "metadata": {"name": "jit-broker",
                        "labels": {"app.kubernetes.io/name": "jit-broker",
                                   "app.kubernetes.io/part-of": "jit-broker"}},
           "spec": {"groups": groups}}
    head = ("# deploy/prometheus/alerts.yaml as a PrometheusRule (runbooks: docs/operations.md),"
            " written by\n#   python3 .ci/check-deploy.py --write-prometheusrule\n"
            "# after a change to alerts.yaml; CI fails while the two differ.\n")
    return head + yaml.safe_dump(doc, sort_keys=False, width=100)


def render(path, tmp, label):
    """The overlay's manifests, by our renderer; the same as kubectl's where kubectl exists."""
    docs = kustomize.build(path)
    kubectl = shutil.which("kubectl")
    if kubectl:
        r = subprocess.run([kubectl, "kustomize", path], capture_output=True, text=True)
        theirs = [d for d in yaml.safe_load_all(r.stdout) if d] if r.returncode == 0 else None
        key = lambda d: (d["kind"], d["metadata"]["name"])  # noqa: E731
        if theirs is None:
            problems.append(f"{label}: kubectl kustomize failed: {r.stderr.strip()}")
        elif sorted(docs, key=key) != sorted(theirs, key=key):
            problems.append(f"{label}: .ci/kustomize.py and kubectl kustomize render differently")
    out = os.path.join(tmp, "rendered", label)
    os.makedirs(out)
    for i, d in enumerate(docs):
        with open(os.path.join(out, f"{i:02d}-{d['kind']}-{d['metadata']['name']}.yaml"), "w") as f:
            yaml.safe_dump(d, f, sort_keys=False)
    r = subprocess.run(["kubernetes-validate", "--strict", "--quiet", *sorted(glob.glob(out + "/*"))],
                       capture_output=True, text=True)
    if r.returncode != 0:
        problems.append(f"{label}: kubernetes-validate failed:\n{r.stdout}{r.stderr}")
    return docs


def secret_keys():
    with open(os.path.join(PRODUCTION, "secret.example.yaml")) as f:
        return set(yaml.safe_load(f)["stringData"])


UNCOMMENT = re.compile(r"^# ?(\[\[?[\w.]+\]\]?|[a-z_]+ = .*)$")


def all_on(config_text):
    """config.toml with every optional setting (a commented `key = value` or table line) on."""
    return "\n".join(UNCOMMENT.sub(r"\1", line) for line in config_text.splitlines()) + "\n"


def fill_placeholders(text):
    """What an operator puts in place of each REPLACE_ME: ids of the right shape."""
    n = iter(range(1, 10_000))
    text = text.replace("https://REPLACE_ME.okta.com", "https://example.okta.com")
    text = re.sub(r"REPLACE_ME_GROUP_ID_\w+", lambda m: f"00gexample{next(n):010d}", text)
    text = re.sub(r"REPLACE_ME_APP_ID_\w+", lambda m: f"0oaexample{next(n):010d}", text)
    text = re.sub(r"REPLACE_ME_LOGIN_(\w+)", r"\1@example.com", text)
    return re.sub(r"REPLACE_ME_\w+", lambda m: f"example{next(n)}", text)


def check_secret_keys(config_text):
    """Every secret the code reads has a file in config.toml, each a key of the Secret."""
    keys = secret_keys()
    read = {}
    conf = tomllib.loads(all_on(config_text))

    def walk(node, path):
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{path}.{k}" if path else k)
        elif isinstance(node, list):
            for v in node:
                walk(v, path)
        elif path.endswith("_file") and str(node).startswith(SECRETS_DIR):
            read[path[: -len("_file")]] = str(node)[len(SECRETS_DIR):]

    walk(conf, "")
    code = set()
    for path in glob.glob(os.path.join(ROOT, "src", "**", "*.rs"), recursive=True):
        with open(path) as f:
            text = f.read()
        for m in re.finditer(r'resolve_secret\(\s*(?:&format!\()?"([^"]+)"', text):
            code.add(re.sub(r"\[\{\w+\}\]", "", m.group(1)))
        for m in re.finditer(r'SecretFile \{\s*key: "([^"]+)"', text):
            code.add(m.group(1))
    if len(code) < 9:
        problems.append(f"secret keys: found only {sorted(code)} in src/; is the scan stale?")
    for key in sorted(code - set(read)):
        problems.append(f"config.toml: the secret `{key}` has no `{key.rsplit('.', 1)[1]}_file`"
                        f" under {SECRETS_DIR}")
    for key, name in sorted(read.items()):
        if name not in keys:
            problems.append(f"config.toml: `{key}_file` names {name}, not a key of "
                            "secret.example.yaml")
    for name in sorted(keys - set(read.values())):
        problems.append(f"secret.example.yaml: key {name} is read by no setting of config.toml")
    return keys


def stand_in(tmp, keys):
    """A file per Secret key, with content of the right shape."""
    d = os.path.join(tmp, "secrets")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(ROOT, "tests", "fixtures", "okta-oauth-test-key.pem")) as f:
        pem = f.read()
    with open(os.path.join(ROOT, "tests", "fixtures", "audit-test-signing-key")) as f:
        audit_key = f.read()
    for k in [*keys, "any"]:
        value = pem if k == "okta-private-key" else audit_key if k == "audit-signing-key" else (
            WHSEC if k.startswith(("callback-", "webhook-")) else "placeholder")
        with open(os.path.join(d, k), "w") as f:
            f.write(value + "\n")
    return d + "/"


def check_config(broker, tmp, where, env_settings, config_text, policy_text):
    """Runs check-config on config.toml/policy.toml as mounted at /etc/jit-broker, with the
    Secret's files stood in for; returns (exit code, output)."""
    d = tempfile.mkdtemp(dir=tmp)
    policy = os.path.join(d, "policy.toml")
    with open(policy, "w") as f:
        f.write(policy_text)
    config = os.path.join(d, "config.toml")
    with open(config, "w") as f:
        f.write(config_text.replace(SECRETS_DIR, os.path.join(tmp, "secrets") + "/")
                .replace("/etc/jit-broker/policy.toml", policy))
    env = {"PATH": os.environ.get("PATH", "")}
    for name, value in env_settings:
        if not name.startswith("JIT_"):
            problems.append(f"{where}: {name} is not a broker setting")
            continue
        env[name] = os.path.join(tmp, "secrets", "any") if name.endswith("_FILE") else str(value)
    r = subprocess.run([broker, "--config", config, "check-config"], env=env,
                       capture_output=True, text=True)
    return r.returncode, r.stdout + r.stderr


def pod_settings(doc, configmaps):
    """(container, [(JIT_ name, value)]) for each broker container: env, then envFrom."""
    out = []
    for c in kustomize.containers(doc):
        settings = []
        for src in c.get("envFrom", []):
            name = src.get("configMapRef", {}).get("name")
            settings += list(configmaps.get(name, {}).items())
        settings += [(e["name"], e.get("value", "")) for e in c.get("env", [])]
        out.append((c, settings))
    return out


def check_overlay(broker, tmp, label, docs, image):
    configmaps = {d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "ConfigMap"}
    for d in docs:
        where = f"{label}: {d['kind']}/{d['metadata']['name']}"
        spec = kustomize.pod_spec(d)
        if d["kind"] == "Ingress":
            rules = d["spec"].get("rules", [])
            tls_hosts = {h for t in d["spec"].get("tls", []) for h in t.get("hosts", [])}
            for rule in rules:
                if rule.get("host") not in tls_hosts:
                    problems.append(f"{where}: host {rule.get('host')} has no TLS")
            if d["metadata"]["name"] == "jit-broker-public":
                paths = {(p["path"], p["pathType"]) for r in rules for p in r["http"]["paths"]}
                if paths != PUBLIC_PATHS:
                    problems.append(f"{where}: routes {sorted(paths)}, expected exactly "
                                    f"{sorted(PUBLIC_PATHS)}")
        if d["kind"] == "PrometheusRule":
            with open(ALERTS) as f:
                if d["spec"]["groups"] != yaml.safe_load(f)["groups"]:
                    problems.append(f"{where}: differs from deploy/prometheus/alerts.yaml "
                                    "(python3 .ci/check-deploy.py --write-prometheusrule)")
        if not spec:
            continue
        for v in spec.get("volumes", []):
            if "configMap" in v and v["configMap"]["name"] not in configmaps:
                problems.append(f"{where}: ConfigMap {v['configMap']['name']} is not rendered")
            if "secret" in v and v["secret"]["secretName"] != "jit-broker":
                problems.append(f"{where}: Secret {v['secret']['secretName']} is not jit-broker")
        for c, settings in pod_settings(d, configmaps):
            for src in c.get("envFrom", []):
                if src.get("configMapRef", {}).get("name") not in configmaps:
                    problems.append(f"{where}: envFrom names a ConfigMap that is not rendered")
            if not any(m["mountPath"] == "/etc/jit-broker" for m in c.get("volumeMounts", [])):
                continue  # not the broker (the trial's PostgreSQL and Redis)
            if c["image"] != image:
                problems.append(f"{where}: image {c['image']}, not the overlay's {image}")
            mounted = next((v for v in spec.get("volumes", []) if "configMap" in v), None)
            files = configmaps.get(mounted["configMap"]["name"], {}) if mounted else {}
            if "config.toml" not in files or "policy.toml" not in files:
                problems.append(f"{where}: no config.toml and policy.toml mounted")
                continue
            conf, policy = files["config.toml"], files["policy.toml"]
            name = f"{where} ({c['name']})"
            # As shipped: the placeholders are refused, each by name.
            code, out = check_config(broker, tmp, name, settings, conf, policy)
            lines = [ln for ln in out.splitlines() if ln.startswith("  ")]
            if code != 1 or not lines or not all("placeholder" in ln for ln in lines):
                problems.append(f"{name}: check-config should refuse only the placeholders "
                                f"(exit {code}):\n{out}")
            code, out = check_config(broker, tmp, name, settings, fill_placeholders(conf), policy)
            lines = [ln for ln in out.splitlines() if ln.startswith("  ")]
            if code != 1 or len(lines) != policy.count("\"REPLACE_ME") or not all(
                    "is a placeholder" in ln for ln in lines):
                problems.append(f"{name}: check-config should name each policy placeholder:\n{out}")
            # Filled in, and with every optional setting on: accepted.
            for variant, text in (("as shipped", conf), ("every option on", all_on(conf))):
                code, out = check_config(broker, tmp, name, settings, fill_placeholders(text),
                                         fill_placeholders(policy))
                if code != 0:
                    problems.append(f"{name} ({variant}, placeholders filled): check-config "
                                    f"failed:\n{out}")


def check_compose(broker, tmp):
    compose_path = os.path.join(ROOT, "docker-compose.yml")
    with open(compose_path) as f:
        compose = yaml.safe_load(f)
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
    # The demo brings its own simulated Okta and policy: its settings are checked on the
    # built-in defaults.
    env = {"PATH": os.environ.get("PATH", "")}
    for name, value in broker_svc.get("environment", {}).items():
        env[name] = os.path.join(tmp, "secrets", "database-password") if name.endswith(
            "_FILE") else str(value)
    r = subprocess.run([broker, "check-config"], env=env, capture_output=True, text=True)
    if r.returncode != 0:
        problems.append(f"docker-compose.yml: check-config failed:\n{r.stdout}{r.stderr}")


def main():
    if sys.argv[1:] == ["--write-prometheusrule"]:
        with open(RULE, "w") as f:
            f.write(prometheusrule_text())
        print(f"wrote {os.path.relpath(RULE, ROOT)}")
        return
    if len(sys.argv) != 2:
        print(__doc__)
        sys.exit(2)
    broker = os.path.abspath(sys.argv[1])
    tmp = tempfile.mkdtemp(prefix="check-deploy-")
    try:
        with open(os.path.join(PRODUCTION, "config.toml")) as f:
            keys = check_secret_keys(f.read())
        stand_in(tmp, keys)
        with open(os.path.join(PRODUCTION, "kustomization.yaml")) as f:
            image_rule = yaml.safe_load(f)["images"][0]
        image = f"{image_rule['newName']}:{image_rule['newTag']}"
        # Production with every component, as an overlay of it in a scratch directory.
        full = os.path.join(tmp, "all-components")
        os.makedirs(full)
        comps = sorted(glob.glob(os.path.join(K8S, "components", "*")))
        with open(os.path.join(full, "kustomization.yaml"), "w") as f:
            yaml.safe_dump({"apiVersion": "kustomize.config.k8s.io/v1beta1",
                            "kind": "Kustomization",
                            "resources": [os.path.relpath(PRODUCTION, full)],
                            "components": [os.path.relpath(c, full) for c in comps]}, f)
        counted = 0
        for label, path in (("production", PRODUCTION),
                            ("trial", os.path.join(K8S, "overlays", "trial")),
                            ("production+components", full)):
            try:
                docs = render(path, tmp, label)
            except (kustomize.KustomizeError, OSError, KeyError, ValueError) as e:
                problems.append(f"{label}: cannot render: {e}")
                continue
            counted += len(docs)
            check_overlay(broker, tmp, label, docs, image)
        with open(RULE) as f:
            if f.read() != prometheusrule_text():
                problems.append(f"{os.path.relpath(RULE, ROOT)} is not alerts.yaml's groups: "
                                "python3 .ci/check-deploy.py --write-prometheusrule")
        check_compose(broker, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if problems:
        print("deploy check failed:", *problems, sep="\n  ")
        sys.exit(1)
    print(f"deploy check: 3 renderings ({counted} manifests) valid; placeholders refused by name, "
          f"accepted filled in; {len(keys)} Secret keys match the code; compose settings accepted")


if __name__ == "__main__":
    main()
