#!/usr/bin/env python3
"""Runs the Dockerfile's build stage without a container engine, up to and including its
dependency build, so CI fails when the image could not be built from the manifests (a target in
Cargo.toml the image's dependency step does not know about, a lock file out of date, a step that
needs a file the build context leaves out).

How: the Dockerfile is parsed (FROM/AS, ARG, ENV, WORKDIR, COPY [--from], RUN; the rest does not
change the build). The stage the final image copies from is the build stage; every stage it
copies from is run first. Each stage gets its own scratch directory standing for its root
filesystem: WORKDIR and COPY paths are mapped into it, COPY from the context honours
.dockerignore, and RUN steps run with `sh -c` in the mapped working directory with the host's
Rust toolchain. The build stage stops after its first `cargo build` (the dependency build); the
source build after it is what `cargo test` and clippy already cover.

A RUN step that names an absolute path would act on this machine, not on a scratch root, so the
emulation refuses it rather than run it. Cargo's build output goes to a persistent target
directory outside the checkout (the emulation's stand-in for Docker's layer cache), so only the
first run on a machine compiles every dependency.

Usage: docker-build-stage.py [--context DIR] [--dockerfile FILE] [--build-arg NAME=VALUE]...
                             [--cache DIR] [--keep]
Exit 0 when every step ran, 1 when a step failed (its output is shown), 2 for a Dockerfile the
emulation cannot run.
"""
import argparse
import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time


class Unsupported(Exception):
    """The Dockerfile uses something this emulation does not run."""


def instructions(text):
    """(keyword, argument) pairs: continuation lines joined, comment lines dropped (Docker drops
    them inside a continued instruction too)."""
    out, cur = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not cur and (not line or line.startswith("#")):
            continue
        if cur and line.startswith("#"):
            continue
        if line.endswith("\\"):
            cur += line[:-1] + " "
            continue
        cur += line
        word, _, rest = cur.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
        cur = ""
    if cur.strip():
        word, _, rest = cur.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def stages(text):
    """[(name, image, [(keyword, argument)])]; unnamed stages are named by their index, as
    Docker does. ARGs before the first FROM are global defaults (kept under name None)."""
    result, cur = [("", None, [])], None
    for word, arg in instructions(text):
        if word == "FROM":
            parts = arg.split()
            name = str(len(result) - 1)
            if len(parts) >= 3 and parts[-2].upper() == "AS":
                name = parts[-1]
            cur = (name, parts[0], [])
            result.append(cur)
        else:
            (cur or result[0])[2].append((word, arg))
    return result[1:], result[0][2]


def dockerignore(context):
    path = os.path.join(context, ".dockerignore")
    if not os.path.exists(path):
        return []
    rules = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            negate = line.startswith("!")
            pattern = os.path.normpath(line.lstrip("!").strip("/"))
            rules.append((negate, pattern))
    return rules


def ignored(rel, rules):
    """Docker's rule: the last matching pattern decides; a pattern matching a directory excludes
    everything below it. `**` matches any number of directories."""
    verdict = False
    parts = rel.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for negate, pattern in rules:
        regex = fnmatch.translate(pattern)
        if any(re.match(regex, p) for p in prefixes):
            verdict = not negate
    return verdict


def copy_context(context, rules, dest):
    """The build context as Docker sends it: everything .dockerignore does not exclude."""
    count = 0
    for dirpath, dirnames, filenames in os.walk(context):
        rel_dir = os.path.relpath(dirpath, context)
        keep = []
        for d in dirnames:
            rel = os.path.normpath(os.path.join(rel_dir, d))
            if not ignored(rel, rules):
                keep.append(d)
        dirnames[:] = keep
        for name in filenames:
            rel = os.path.normpath(os.path.join(rel_dir, name))
            if ignored(rel, rules):
                continue
            target = os.path.join(dest, rel)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copy2(os.path.join(dirpath, name), target, follow_symlinks=False)
            count += 1
    return count


class Stage:
    def __init__(self, name, root):
        self.name = name
        self.root = root
        self.workdir = "/"
        self.env = {}

    def path(self, container_path):
        """A path inside the stage, relative ones from its WORKDIR, as a host path."""
        p = os.path.normpath(os.path.join(self.workdir, container_path))
        return os.path.join(self.root, p.lstrip("/"))


def substitute(value, env):
    return re.sub(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", lambda m: env.get(m.group(1), ""), value)


def copy_into(src, dst, into_dir):
    if os.path.isdir(src):
        shutil.copytree(src, dst, symlinks=True, dirs_exist_ok=True)
    else:
        if into_dir:
            os.makedirs(dst, exist_ok=True)
            dst = os.path.join(dst, os.path.basename(src))
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copy2(src, dst)


def run(args):
    with open(args.dockerfile) as f:
        all_stages, global_args = stages(f.read())
    by_name = {name: (image, steps) for name, image, steps in all_stages}
    final_steps = all_stages[-1][2]
    sources = [re.search(r"--from=(\S+)", a).group(1)
               for w, a in final_steps if w == "COPY" and "--from=" in a]
    if not sources:
        raise Unsupported("the final stage copies from no build stage")
    build = sources[0]

    build_args = dict(kv.split("=", 1) for kv in args.build_arg)
    defaults = {}
    for _, arg in [s for s in global_args if s[0] == "ARG"]:
        name, _, default = arg.partition("=")
        defaults[name] = default.strip('"')

    scratch = tempfile.mkdtemp(prefix="docker-build-stage-")
    rules = dockerignore(args.context)
    done = {}
    timings = []
    os.makedirs(args.cache, exist_ok=True)

    def run_stage(name, stop_after_dependency_build):
        if name in done:
            return done[name]
        if name not in by_name:
            raise Unsupported(f"COPY --from={name}: no such stage")
        image, steps = by_name[name]
        if not re.match(r"(docker\.io/(library/)?)?rust:", image):
            raise Unsupported(f"stage {name} is FROM {image}; only Rust images are emulated")
        st = Stage(name, os.path.join(scratch, name))
        os.makedirs(st.root)
        arg_values = {}
        for word, arg in steps:
            started = time.monotonic()
            label = f"[{name}] {word} {arg}"
            env = {**arg_values, **st.env}
            if word == "ARG":
                key, _, default = arg.partition("=")
                arg_values[key] = build_args.get(key, default.strip('"') or defaults.get(key, ""))
                continue
            if word == "ENV":
                for k, v in re.findall(r'(\w+)=("[^"]*"|\S+)', arg):
                    st.env[k] = substitute(v.strip('"'), env)
                continue
            if word == "WORKDIR":
                st.workdir = os.path.normpath(os.path.join(st.workdir, substitute(arg, env)))
                os.makedirs(st.path("."), exist_ok=True)
                continue
            if word == "COPY":
                words = shlex.split(arg)
                flags = [w for w in words if w.startswith("--")]
                paths = [w for w in words if not w.startswith("--")]
                *srcs, dest = paths
                frm = next((f.split("=", 1)[1] for f in flags if f.startswith("--from=")), None)
                target = st.path(dest)
                into_dir = dest.endswith("/") or len(srcs) > 1 or dest in (".", "./")
                for src in srcs:
                    if frm:
                        other = run_stage(frm, False)
                        host_src = os.path.join(other.root, os.path.normpath(src).lstrip("/"))
                        if not os.path.exists(host_src):
                            print(f"{label}\n  {src} does not exist in stage {frm}")
                            return None
                        copy_into(host_src, target, into_dir)
                    elif os.path.normpath(src) == ".":
                        n = copy_context(args.context, rules, target)
                        label += f"  ({n} files)"
                    else:
                        host_src = os.path.join(args.context, src)
                        if ignored(os.path.normpath(src), rules) or not os.path.exists(host_src):
                            print(f"{label}\n  {src} is not in the build context (.dockerignore?)")
                            return None
                        copy_into(host_src, target, into_dir)
                timings.append((label, time.monotonic() - started))
                continue
            if word == "RUN":
                cmd = arg
                if cmd.startswith("["):
                    cmd = " ".join(shlex.quote(w) for w in json.loads(cmd))
                absolute = re.findall(r"(?:^|[\s=;&|])(/[A-Za-z][^\s;&|]*)", cmd)
                absolute = [a for a in absolute if a != "/dev/null"]
                if absolute:
                    raise Unsupported(
                        f"{label}: names {', '.join(absolute)}, which would be this machine's "
                        "path, not the stage's; use a path relative to WORKDIR")
                run_env = dict(os.environ)
                run_env.update(env)
                # The emulation's layer cache: the build output outlives the scratch directory.
                run_env["CARGO_TARGET_DIR"] = args.cache
                print(f"{label}", flush=True)
                r = subprocess.run(["sh", "-c", cmd], cwd=st.path("."), env=run_env,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                took = time.monotonic() - started
                timings.append((label, took))
                if r.returncode != 0:
                    print(r.stdout[-6000:])
                    print(f"  failed with exit code {r.returncode} after {took:.1f} s")
                    return None
                if stop_after_dependency_build and "cargo build" in cmd:
                    done[name] = st
                    return st
                continue
            # USER, EXPOSE, LABEL, VOLUME, HEALTHCHECK, ENTRYPOINT, CMD: nothing to build.
        if stop_after_dependency_build:
            raise Unsupported(f"stage {name} has no `cargo build` step")
        done[name] = st
        return st

    started = time.monotonic()
    try:
        ok = run_stage(build, True) is not None
        # A stage that failed part-way returns None; the stages it copied from may be fine.
        if ok and any(v is None for v in done.values()):
            ok = False
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    total = time.monotonic() - started
    for label, took in timings:
        print(f"  {took:7.1f} s  {label[:110]}")
    feats = build_args.get("FEATURES", "")
    verdict = "ran" if ok else "FAILED"
    print(f"docker build stage emulation {verdict} in {total:.1f} s "
          f"(stage {build}, FEATURES={feats!r}, cache {args.cache})")
    return 0 if ok else 1


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.normpath(os.path.join(here, ".."))
    cache_home = os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache"))
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--context", default=root)
    p.add_argument("--dockerfile")
    p.add_argument("--build-arg", action="append", default=[])
    p.add_argument("--cache", default=os.environ.get(
        "JIT_DOCKER_BUILD_CACHE", os.path.join(cache_home, "jit-broker", "docker-build-stage")))
    p.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = p.parse_args()
    args.context = os.path.abspath(args.context)
    args.dockerfile = args.dockerfile or os.path.join(args.context, "Dockerfile")
    try:
        sys.exit(run(args))
    except Unsupported as e:
        print(f"docker build stage emulation cannot run this Dockerfile: {e}")
        sys.exit(2)


if __name__ == "__main__":
    main()
