#!/usr/bin/env python3
"""The Lambda base image that `sam local` runs the functions in, for
`make sam-local` and its tests.

SAM runs an arm64 `provided.al2023` function in
`public.ecr.aws/lambda/provided:al2023-arm64`, to which it adds the Lambda
Runtime Interface Emulator itself. This program makes sure the local Docker
engine has that image:

  1. it is already there (pulled earlier, or loaded by an earlier run): done;
  2. `docker pull` brings the real one (a machine with access to the registry):
     done, no stand-in;
  3. otherwise a stand-in of the same name is built from Debian packages:
     `debootstrap --variant=minbase --arch=arm64 bookworm` with ca-certificates,
     the directories a Lambda image has (/var/task, /var/runtime, /opt), its
     environment (LAMBDA_TASK_ROOT, ...), packed by hand as a `docker load`
     archive whose config says arm64 (`docker import` would record the host's
     architecture, and SAM would then try to pull). The archive is cached under
     target/sam-local/, keyed on this file, and loaded with `docker load`.

The stand-in is Debian 12 (glibc 2.36), not Amazon Linux 2023 (glibc 2.34):
the functions are static-enough Rust binaries linked for glibc 2.17+ by
cargo-lambda's zig, so they run on both. Run as root (debootstrap).

    python3 tools/localdev/src/localdev/standin_image.py [--no-pull] [--print-key]

Standard library only, and nothing from the rest of the package: `make
sam-image` runs this file by path with the system python (no virtualenv).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

# The checkout (as localdev.common.project_root(), which this file cannot
# import when run by path): the nearest folder holding template.yaml and
# Cargo.toml above this file, else above the working directory.
ROOT = next(
    (
        d
        for start in (Path(__file__).resolve().parent, Path.cwd().resolve())
        for d in (start, *start.parents)
        if (d / "template.yaml").is_file() and (d / "Cargo.toml").is_file()
    ),
    Path.cwd().resolve(),
)
IMAGE = "public.ecr.aws/lambda/provided:al2023-arm64"
SUITE = "bookworm"
PACKAGES = ["ca-certificates"]
LABEL = "mwaa-stop.stand-in"
CACHE = ROOT / "target" / "sam-local"
ENV = [
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG=C.UTF-8",
    "TZ=:/etc/localtime",
    "LAMBDA_TASK_ROOT=/var/task",
    "LAMBDA_RUNTIME_DIR=/var/runtime",
    "LD_LIBRARY_PATH=/var/lang/lib:/lib64:/usr/lib64:/var/runtime:/var/runtime/lib:/var/task:/var/task/lib:/opt/lib",
]


def say(msg: str) -> None:
    print(f"stand-in image: {msg}", flush=True)


def cache_key() -> str:
    """Changes whenever what the stand-in is made of changes."""
    h = hashlib.sha256()
    h.update(Path(__file__).read_bytes())
    return h.hexdigest()[:16]


def image_labels() -> dict | None:
    """The labels of IMAGE in the engine ({} for an image without labels), or None if absent."""
    r = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{json .Config.Labels}}", IMAGE], capture_output=True, text=True
    )
    if r.returncode != 0:
        return None
    return json.loads(r.stdout.strip() or "null") or {}


def try_pull(timeout: float) -> bool:
    say(f"trying docker pull {IMAGE} (at most {timeout:.0f} s)")
    try:
        r = subprocess.run(["docker", "pull", "--platform", "linux/arm64", IMAGE], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        say("docker pull did not finish in time: building the stand-in")
        return False
    if r.returncode == 0:
        say(f"pulled the real {IMAGE}")
        return True
    reason = (r.stderr.strip().splitlines() or ["no reason given"])[-1]
    say(f"docker pull failed ({reason[:160]}): building the stand-in")
    return False


def build_archive(key: str, out: Path) -> None:
    """debootstrap an arm64 root file system and pack it as a `docker load` directory at `out`."""
    if os.geteuid() != 0:
        raise SystemExit("stand-in image: debootstrap needs root: run this as root (or pull the real image with docker pull).")
    if shutil.which("debootstrap") is None:
        raise SystemExit("stand-in image: debootstrap is missing: apt-get install debootstrap (tools/samlocal/engine.sh install).")
    work = out.with_name(out.name + ".partial")
    shutil.rmtree(work, ignore_errors=True)
    rootfs = work / "rootfs"
    work.mkdir(parents=True)
    say(f"debootstrap --variant=minbase --arch=arm64 {SUITE} with {', '.join(PACKAGES)} (a few minutes; log {work}/debootstrap.log)")
    with open(work / "debootstrap.log", "wb") as log:
        r = subprocess.run(
            ["debootstrap", "--variant=minbase", "--arch=arm64", f"--include={','.join(PACKAGES)}", SUITE, str(rootfs)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    if r.returncode != 0:
        tail = (work / "debootstrap.log").read_text(errors="replace").splitlines()[-15:]
        raise SystemExit("stand-in image: debootstrap failed:\n" + "\n".join(tail))
    for d in ("var/task", "var/runtime", "var/lang/lib", "opt", "tmp"):
        (rootfs / d).mkdir(parents=True, exist_ok=True)
    (rootfs / "tmp").chmod(0o1777)
    # apt's downloaded packages are not part of an image.
    shutil.rmtree(rootfs / "var/cache/apt/archives", ignore_errors=True)
    (rootfs / "var/cache/apt/archives/partial").mkdir(parents=True, exist_ok=True)
    say("packing the layer")
    layer = work / "layer.tar"
    subprocess.run(["tar", "--numeric-owner", "--xattrs", "-C", str(rootfs), "-cf", str(layer), "."], check=True)
    shutil.rmtree(rootfs)
    digest = hashlib.sha256()
    with open(layer, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    diff_id = "sha256:" + digest.hexdigest()
    layer_dir = work / digest.hexdigest()
    layer_dir.mkdir()
    layer.rename(layer_dir / "layer.tar")
    config = {
        "architecture": "arm64",
        "os": "linux",
        "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        # No entry point: SAM runs its Runtime Interface Emulator as the entry point.
        "config": {"Env": ENV, "WorkingDir": "/var/task", "Labels": {LABEL: key}},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": f"tools/localdev/src/localdev/standin_image.py: debootstrap --variant=minbase --arch=arm64 {SUITE}"}],
    }
    blob = json.dumps(config, sort_keys=True).encode()
    config_name = hashlib.sha256(blob).hexdigest() + ".json"
    (work / config_name).write_bytes(blob)
    manifest = [{"Config": config_name, "RepoTags": [IMAGE], "Layers": [f"{digest.hexdigest()}/layer.tar"]}]
    (work / "manifest.json").write_text(json.dumps(manifest))
    (work / "debootstrap.log").unlink()
    shutil.rmtree(out, ignore_errors=True)
    work.rename(out)


def load(archive: Path) -> None:
    say(f"docker load < {archive.relative_to(ROOT)}/")
    tar = subprocess.Popen(["tar", "-C", str(archive), "-cf", "-", "."], stdout=subprocess.PIPE)
    r = subprocess.run(["docker", "load", "--quiet"], stdin=tar.stdout, capture_output=True, text=True)
    tar.stdout.close()
    if tar.wait() != 0 or r.returncode != 0:
        raise SystemExit(f"stand-in image: docker load failed: {r.stderr.strip()}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--no-pull", action="store_true", help="do not try docker pull (no registry reachable)")
    p.add_argument("--pull-timeout", type=float, default=60)
    p.add_argument("--print-key", action="store_true", help="print the cache key and exit")
    args = p.parse_args()
    key = cache_key()
    if args.print_key:
        print(key)
        return 0
    if shutil.which("docker") is None or subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        raise SystemExit("stand-in image: no Docker engine answers (docker info): start one (tools/samlocal/engine.sh start).")
    labels = image_labels()
    if labels is not None and LABEL not in labels:
        say(f"{IMAGE} is the real image (present in the engine)")
        return 0
    if labels is not None and labels.get(LABEL) == key:
        say(f"{IMAGE} is the stand-in {key}, already loaded")
        return 0
    if labels is None and not args.no_pull and try_pull(args.pull_timeout):
        return 0
    archive = CACHE / f"stand-in-{key}"
    if (archive / "manifest.json").exists():
        say(f"using the cached stand-in {key}")
    else:
        for old in CACHE.glob("stand-in-*"):
            shutil.rmtree(old, ignore_errors=True)
        build_archive(key, archive)
    load(archive)
    labels = image_labels()
    if labels is None or labels.get(LABEL) != key:
        raise SystemExit(f"stand-in image: {IMAGE} is not the stand-in {key} after docker load: {labels}")
    arch = subprocess.run(["docker", "image", "inspect", "--format", "{{.Architecture}}", IMAGE], capture_output=True, text=True).stdout.strip()
    say(f"{IMAGE} is the stand-in {key} ({arch}, Debian {SUITE}; host {platform.machine()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
