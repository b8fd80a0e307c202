#!/usr/bin/env python3
"""Renders a kustomization the way `kubectl kustomize` does, for the subset deploy/kubernetes
uses, so CI can check the manifests an operator would apply without kubectl or kustomize (no
package of this machine's registries ships either).

Supported, with kustomize's semantics: `resources` (files and directories, recursively),
`components` (kind Component), `namespace`, `labels` (pairs, includeSelectors false),
`images` (newName, newTag, digest), `configMapGenerator` (files, envs, literals; behavior
create/replace/merge; the content-hash name suffix, computed as kustomize computes it, and every
reference to the ConfigMap renamed), and JSON 6902 `patches` with a kind/name target. Anything
else in a kustomization is an error naming the field, never silently ignored. Where kubectl is
installed, `check-deploy.py` compares this renderer's output with `kubectl kustomize`.

Usage: kustomize.py DIR   prints the rendered manifests as one YAML stream.
"""
import copy
import hashlib
import json
import os
import sys

import yaml

KNOWN = {"apiVersion", "kind", "namespace", "labels", "resources", "components", "images",
         "configMapGenerator", "patches"}
POD_TEMPLATE_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
                  "PersistentVolume", "StorageClass", "PriorityClass"}


class KustomizeError(Exception):
    pass


class Resource:
    """A manifest and what the build must remember about it: a generated ConfigMap's name
    before its hash suffix (how merges and references find it)."""

    def __init__(self, doc, generated=False):
        self.doc = doc
        self.generated = generated
        self.orig_name = doc["metadata"]["name"]

    @property
    def kind(self):
        return self.doc["kind"]


def load_yaml_docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def kustomization(path):
    for name in ("kustomization.yaml", "kustomization.yml", "Kustomization"):
        p = os.path.join(path, name)
        if os.path.exists(p):
            k = load_yaml_docs(p)[0]
            unknown = set(k) - KNOWN
            if unknown:
                raise KustomizeError(f"{p}: unsupported field(s) {', '.join(sorted(unknown))}")
            return k
    raise KustomizeError(f"{path}: no kustomization.yaml")


def pod_spec(doc):
    spec = doc.get("spec", {})
    if doc["kind"] == "CronJob":
        return spec.get("jobTemplate", {}).get("spec", {}).get("template", {}).get("spec")
    if doc["kind"] in POD_TEMPLATE_KINDS:
        return spec.get("template", {}).get("spec")
    if doc["kind"] == "Pod":
        return spec
    return None


def containers(doc):
    spec = pod_spec(doc) or {}
    return spec.get("initContainers", []) + spec.get("containers", [])


def read_env_file(path):
    data = {}
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if "=" not in line:
                raise KustomizeError(f"{path}:{n}: expected KEY=VALUE")
            k, v = line.split("=", 1)
            data[k] = v
    return data


def generate_configmap(base, gen, namespace):
    data = {}
    for entry in gen.get("files", []):
        key, _, rel = entry.rpartition("=") if "=" in entry else (None, None, entry)
        path = os.path.normpath(os.path.join(base, rel))
        if not path.startswith(os.path.abspath(base) + os.sep):
            # kustomize's default load restrictor: files from the kustomization's own tree only.
            raise KustomizeError(f"{gen['name']}: {rel} is outside {base}")
        with open(path) as f:
            data[key or os.path.basename(rel)] = f.read()
    for rel in gen.get("envs", []):
        data.update(read_env_file(os.path.join(base, rel)))
    for lit in gen.get("literals", []):
        k, v = lit.split("=", 1)
        data[k] = v
    doc = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": gen["name"]},
           "data": data}
    if namespace:
        doc["metadata"]["namespace"] = namespace
    options = gen.get("options", {})
    unknown = set(gen) - {"name", "files", "envs", "literals", "behavior", "options"}
    if unknown:
        raise KustomizeError(f"configMapGenerator {gen['name']}: unsupported {sorted(unknown)}")
    r = Resource(doc, generated=not options.get("disableNameSuffixHash", False))
    return r


def json_pointer(doc, path):
    parts = [p.replace("~1", "/").replace("~0", "~") for p in path.lstrip("/").split("/")]
    parent = doc
    for p in parts[:-1]:
        parent = parent[int(p)] if isinstance(parent, list) else parent[p]
    return parent, parts[-1]


def apply_json6902(doc, ops):
    for op in ops:
        parent, last = json_pointer(doc, op["path"])
        kind = op["op"]
        if isinstance(parent, list):
            idx = len(parent) if last == "-" else int(last)
            if kind == "add":
                parent.insert(idx, op["value"])
            elif kind == "replace":
                parent[idx] = op["value"]
            elif kind == "remove":
                del parent[idx]
            else:
                raise KustomizeError(f"unsupported patch op {kind}")
        else:
            if kind in ("replace", "remove") and last not in parent:
                raise KustomizeError(f"patch {kind} {op['path']}: no such field")
            if kind in ("add", "replace"):
                parent[last] = op["value"]
            elif kind == "remove":
                del parent[last]
            else:
                raise KustomizeError(f"unsupported patch op {kind}")


def set_image(image_ref, rules):
    name, sep, rest = image_ref.partition("@")
    if not sep:
        # A tag follows the last `:` after the last `/` (a registry port is not a tag).
        slash = image_ref.rfind("/")
        colon = image_ref.rfind(":")
        name = image_ref[:colon] if colon > slash else image_ref
    for rule in rules:
        if rule["name"] != name:
            continue
        new = rule.get("newName", name)
        if "digest" in rule:
            return f"{new}@{rule['digest']}"
        if "newTag" in rule:
            return f"{new}:{rule['newTag']}"
        tail = image_ref[len(name):]
        return new + tail
    return image_ref


def accumulate(path, component=False):
    """The resources of one kustomization or component, with its transformers applied (not yet
    hashed: the outermost build names generated ConfigMaps, as kustomize does)."""
    path = os.path.abspath(path)
    k = kustomization(path)
    expected = "Component" if component else "Kustomization"
    if k.get("kind", "Kustomization") != expected:
        raise KustomizeError(f"{path}: expected kind {expected}, found {k.get('kind')}")
    res = []
    for entry in k.get("resources", []):
        p = os.path.join(path, entry)
        if os.path.isdir(p):
            res.extend(accumulate(p))
        else:
            res.extend(Resource(d) for d in load_yaml_docs(p))
    return transform(path, k, res)


def transform(path, k, res):
    for entry in k.get("components", []) or []:
        comp_path = os.path.join(path, entry)
        comp = kustomization(comp_path)
        if comp.get("kind") != "Component":
            raise KustomizeError(f"{comp_path}: expected kind Component")
        added = []
        for e in comp.get("resources", []):
            p = os.path.join(comp_path, e)
            added.extend(accumulate(p) if os.path.isdir(p)
                         else [Resource(d) for d in load_yaml_docs(p)])
        res = transform(os.path.abspath(comp_path), {**comp, "resources": []}, res + added)
    ns = k.get("namespace")
    for gen in k.get("configMapGenerator", []) or []:
        behavior = gen.get("behavior", "create")
        new = generate_configmap(path, gen, ns)
        existing = [r for r in res if r.kind == "ConfigMap" and r.orig_name == gen["name"]]
        if behavior == "create":
            if existing:
                raise KustomizeError(f"ConfigMap {gen['name']} already exists; use behavior")
            res.append(new)
        elif behavior in ("replace", "merge"):
            if not existing:
                raise KustomizeError(f"ConfigMap {gen['name']}: nothing to {behavior}")
            old = existing[0]
            if behavior == "merge":
                old.doc.setdefault("data", {}).update(new.doc["data"])
            else:
                old.doc["data"] = new.doc["data"]
        else:
            raise KustomizeError(f"ConfigMap {gen['name']}: unknown behavior {behavior}")
    if ns:
        for r in res:
            if r.kind not in CLUSTER_SCOPED:
                r.doc["metadata"]["namespace"] = ns
    for entry in k.get("labels", []) or []:
        if entry.get("includeSelectors") or entry.get("includeTemplates"):
            raise KustomizeError("labels: only includeSelectors: false is supported")
        for r in res:
            r.doc["metadata"].setdefault("labels", {}).update(entry["pairs"])
    if k.get("images"):
        for r in res:
            for c in containers(r.doc):
                c["image"] = set_image(c["image"], k["images"])
    for p in k.get("patches", []) or []:
        target = p.get("target") or {}
        if set(target) - {"kind", "name"} or "path" in p:
            raise KustomizeError("patches: only inline patches with a kind/name target")
        ops = yaml.safe_load(p["patch"])
        if not isinstance(ops, list):
            raise KustomizeError("patches: only JSON 6902 patches (a list of operations)")
        hits = [r for r in res if r.kind == target.get("kind", r.kind)
                and r.orig_name == target.get("name", r.orig_name)]
        if not hits:
            raise KustomizeError(f"patch target {target} matches nothing")
        for r in hits:
            apply_json6902(r.doc, ops)
    return res


def configmap_hash(doc):
    """kustomize's name suffix: SHA-256 of the Go JSON encoding of kind, name and data, its
    first 10 hex digits with 0, 1, 3, a and e spelled g, h, k, m and t. kustomize 5 looks the
    name up as one field called `metadata/name`, finds nothing and hashes an empty name; this
    does the same, so the names match `kubectl kustomize` (checked by check-deploy.py)."""
    m = {"kind": "ConfigMap", "name": "", "data": doc.get("data") or ""}
    if doc.get("binaryData"):
        m["binaryData"] = doc["binaryData"]
    encoded = json.dumps(m, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    for ch, esc in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e"),
                    ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        encoded = encoded.replace(ch, esc)
    digest = hashlib.sha256(encoded.encode()).hexdigest()[:10]
    return digest.translate(str.maketrans("013ae", "ghkmt"))


def rename_references(doc, renames):
    spec = pod_spec(doc)
    if not spec:
        return
    for v in spec.get("volumes", []):
        if "configMap" in v and v["configMap"].get("name") in renames:
            v["configMap"]["name"] = renames[v["configMap"]["name"]]
        for src in v.get("projected", {}).get("sources", []):
            if "configMap" in src and src["configMap"].get("name") in renames:
                src["configMap"]["name"] = renames[src["configMap"]["name"]]
    for c in containers(doc):
        for e in c.get("envFrom", []):
            ref = e.get("configMapRef")
            if ref and ref.get("name") in renames:
                ref["name"] = renames[ref["name"]]
        for e in c.get("env", []):
            ref = e.get("valueFrom", {}).get("configMapKeyRef")
            if ref and ref.get("name") in renames:
                ref["name"] = renames[ref["name"]]


def build(path):
    """The manifests `kubectl kustomize path` would print, as a list of dicts."""
    res = accumulate(path)
    renames = {}
    for r in res:
        if r.kind == "ConfigMap" and r.generated:
            name = f"{r.orig_name}-{configmap_hash(r.doc)}"
            renames[r.orig_name] = name
            r.doc["metadata"]["name"] = name
    for r in res:
        rename_references(r.doc, renames)
    return [copy.deepcopy(r.doc) for r in res]


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        sys.exit(2)
    try:
        docs = build(sys.argv[1])
    except (KustomizeError, OSError, KeyError, ValueError, yaml.YAMLError) as e:
        print(f"kustomize.py: {e}", file=sys.stderr)
        sys.exit(1)
    yaml.safe_dump_all(docs, sys.stdout, sort_keys=False)


if __name__ == "__main__":
    main()
