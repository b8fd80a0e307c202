#!/usr/bin/env python3
"""Tests of .ci/docker-build-stage.py on temporary copies of the repository: a target added to
Cargo.toml is built without touching the Dockerfile; a Dockerfile that lists targets by hand (as
this one did before) fails the emulation on a target it does not list; a target declared without
its source fails; a RUN step acting on a host path is refused. Run by .ci/run after the
emulation itself, so the dependency build is warm and each case takes seconds.

Usage: python3 -m unittest discover -s .ci -p 'test_*.py'
"""
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, ".."))
SCRIPT = os.path.join(HERE, "docker-build-stage.py")

spec = importlib.util.spec_from_file_location("docker_build_stage", SCRIPT)
emulation = importlib.util.module_from_spec(spec)
spec.loader.exec_module(emulation)

# The build stage as it was before the dependency step derived its targets from the manifests.
HAND_LISTED = """
FROM rust:1-slim-bookworm AS build
ARG FEATURES=""
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY okta-sim/Cargo.toml okta-sim/Cargo.toml
RUN mkdir -p src okta-sim/src benches \\
    && echo 'fn main() {}' > src/main.rs && echo '' > src/lib.rs \\
    && echo 'fn main() {}' > okta-sim/src/main.rs && echo '' > okta-sim/src/lib.rs \\
    && echo 'fn main() {}' > benches/audit.rs \\
    && mkdir -p tests/it && echo '' > tests/it/main.rs \\
    && cargo build --release --locked --bin jit-broker --features "$FEATURES"
COPY . .

FROM debian:bookworm-slim
COPY --from=build /usr/local/bin/jit-broker /usr/local/bin/jit-broker
"""


class Emulation(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="docker-build-stage-test-")
        self.repo = os.path.join(self.tmp, "repo")
        shutil.copytree(ROOT, self.repo, ignore=shutil.ignore_patterns("target", ".git"))

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def add_bench(self, name, with_source):
        with open(os.path.join(self.repo, "Cargo.toml"), "a") as f:
            f.write(f'\n[[bench]]\nname = "{name}"\nharness = false\n')
        if with_source:
            with open(os.path.join(self.repo, "benches", f"{name}.rs"), "w") as f:
                f.write("fn main() {}\n")

    def emulate(self, dockerfile=None):
        args = [sys.executable, SCRIPT, "--context", self.repo]
        if dockerfile:
            path = os.path.join(self.tmp, "Dockerfile.test")
            with open(path, "w") as f:
                f.write(dockerfile)
            args += ["--dockerfile", path]
        r = subprocess.run(args, capture_output=True, text=True)
        return r.returncode, r.stdout + r.stderr

    def test_a_target_added_to_cargo_toml_is_built_without_editing_the_dockerfile(self):
        self.add_bench("added_later", with_source=True)
        code, out = self.emulate()
        self.assertEqual(code, 0, out)
        # The skeleton has a stub for the new bench: the manifest parsed with it in place.
        self.assertRegex(out, r"docker build stage emulation ran")

    def test_a_hand_listed_dockerfile_fails_on_a_target_it_does_not_list(self):
        code, out = self.emulate(HAND_LISTED)
        self.assertEqual(code, 1, out)
        # Whichever declared bench the hand-made list lacks first (cargo names one and stops).
        self.assertRegex(out, r"can't find `\w+` bench at `benches/")

    def test_a_target_declared_without_its_source_fails(self):
        self.add_bench("forgotten", with_source=False)
        code, out = self.emulate()
        self.assertEqual(code, 1, out)
        self.assertIn("can't find `forgotten` bench", out)

    def test_a_run_step_acting_on_a_host_path_is_refused(self):
        dockerfile = ("FROM rust:1-slim-bookworm AS build\nWORKDIR /src\n"
                      "RUN touch /etc/should-not-exist && cargo build\n"
                      "FROM debian:bookworm-slim\nCOPY --from=build /x /x\n")
        code, out = self.emulate(dockerfile)
        self.assertEqual(code, 2, out)
        self.assertIn("/etc/should-not-exist", out)
        self.assertFalse(os.path.exists("/etc/should-not-exist"))


class DockerIgnore(unittest.TestCase):
    def test_patterns_exclude_directories_files_and_globs(self):
        rules = [(False, "target"), (False, ".git"), (False, "*.db"), (False, "docker/*.txt"),
                 (False, "docs"), (True, "docs/keep.md")]
        ignored = emulation.ignored
        self.assertTrue(ignored("target/release/x", rules))
        self.assertTrue(ignored("jit.db", rules))
        self.assertTrue(ignored("docker/db_password.txt", rules))
        self.assertFalse(ignored("docker/cargo-skeleton.sh", rules))
        self.assertFalse(ignored("src/target.rs", rules))
        self.assertTrue(ignored("docs/a.md", rules))
        self.assertFalse(ignored("docs/keep.md", rules))


if __name__ == "__main__":
    unittest.main()
