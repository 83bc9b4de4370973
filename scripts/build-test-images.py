#!/usr/bin/env python3
"""Build tiny container images for r8s tests as docker-archive tarballs.

The tarballs use the layout `docker save` writes (manifest.json, a config
blob named by its sha256, plain-tar layers), so `ctr images import`,
`skopeo copy docker-archive:...` and `docker load` accept them. The rootfs is
Debian's static busybox, which is all a test pod needs and is available from
the package mirror (`apt-get install -y busybox-static`).

Images:
  busybox:latest  busybox rootfs, Cmd ["sh"] (one layer)
  nginx:latest    busybox layer + a layer with /usr/share/nginx/html, running
                  busybox httpd on port 80 (two layers, shares the base layer)

Output is deterministic: same busybox binary in, same bytes (and image IDs) out.

Usage: build-test-images.py --out DIR [--tag NAME:TAG ...] [--busybox PATH]
Each --tag adds a repo tag to the busybox image. Prints each written path.
"""

import argparse
import hashlib
import io
import json
import os
import platform
import re
import struct
import subprocess
import sys
import tarfile

# Fixed timestamp for every tar entry and the config's "created", so that
# rebuilding yields identical bytes.
EPOCH = 0
CREATED = "1970-01-01T00:00:00Z"

PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

DEFAULT_BUSYBOX = "/bin/busybox"

# Debian 12's static busybox has no bash applet; many manifests still run
# `bash -c ...`, so hand those to busybox sh.
BASH_SHIM = b'#!/bin/sh\nexec /bin/sh "$@"\n'

PASSWD = (
    b"root:x:0:0:root:/root:/bin/sh\n"
    b"nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
)
GROUP = b"root:x:0:\nnobody:x:65534:\n"

NGINX_HTML_DIR = "/usr/share/nginx/html"
NGINX_INDEX = b"""<!DOCTYPE html>
<html>
<head><title>Welcome to nginx!</title></head>
<body>
<h1>Welcome to nginx!</h1>
<p>r8s test image: busybox httpd standing in for nginx.</p>
</body>
</html>
"""

# NAME[:TAG] with a conservative reference grammar (lower-case repo path,
# optional registry host[:port]); enough to reject typos early.
TAG_RE = re.compile(
    r"^(?:[a-zA-Z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:[._-]+[a-z0-9]+)*"
    r"(?:/[a-z0-9]+(?:[._-]+[a-z0-9]+)*)*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?$"
)


class Layer:
    """Collects rootfs entries and renders them as a deterministic tar."""

    def __init__(self):
        self.entries = {}

    def dir(self, path, mode=0o755):
        self.entries[path.strip("/")] = ("dir", mode, None)

    def file(self, path, data, mode=0o644):
        self.entries[path.strip("/")] = ("file", mode, data)

    def symlink(self, path, target):
        self.entries[path.strip("/")] = ("symlink", 0o777, target)

    def render(self):
        buf = io.BytesIO()
        # USTAR has no per-file extended headers, so nothing host-dependent
        # (atime, uname lookups) can leak in.
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            # Sorted paths put every directory before its contents.
            for path in sorted(self.entries):
                kind, mode, payload = self.entries[path]
                info = tarfile.TarInfo(path)
                info.mode = mode
                info.mtime = EPOCH
                info.uid = info.gid = 0
                info.uname = info.gname = "root"
                if kind == "dir":
                    info.type = tarfile.DIRTYPE
                    tar.addfile(info)
                elif kind == "symlink":
                    info.type = tarfile.SYMTYPE
                    info.linkname = payload
                    tar.addfile(info)
                else:
                    info.size = len(payload)
                    tar.addfile(info, io.BytesIO(payload))
        return buf.getvalue()


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def is_static_elf(data):
    """True for an ELF executable without a PT_INTERP (dynamic loader) header.

    A dynamically linked busybox (Debian's plain `busybox` package) would not
    run inside an image that ships no libc, so refuse it up front.
    """
    if len(data) < 64 or data[:4] != b"\x7fELF" or data[4] not in (1, 2) \
            or data[5] not in (1, 2):
        return False
    end = "<" if data[5] == 1 else ">"
    if data[4] == 2:  # 64-bit
        phoff, = struct.unpack_from(end + "Q", data, 0x20)
        phentsize, phnum = struct.unpack_from(end + "HH", data, 0x36)
    else:
        phoff, = struct.unpack_from(end + "I", data, 0x1C)
        phentsize, phnum = struct.unpack_from(end + "HH", data, 0x2A)
    pt_interp = 3
    for i in range(phnum):
        p_type, = struct.unpack_from(end + "I", data, phoff + i * phentsize)
        if p_type == pt_interp:
            return False
    return True


def busybox_applets(busybox):
    """Return (applet names, canonical install paths) as busybox reports them."""

    def run(flag):
        out = subprocess.run(
            [busybox, flag], check=True, capture_output=True, text=True
        ).stdout
        return sorted({line.strip() for line in out.splitlines() if line.strip()})

    return run("--list"), run("--list-full")


def relative_link(link_path, target_path):
    """Relative symlink target, so the rootfs also works when not chrooted."""
    return os.path.relpath(target_path, os.path.dirname("/" + link_path))


def base_layer(busybox):
    layer = Layer()
    for d in ("bin", "dev", "etc", "proc", "sbin", "sys", "usr", "usr/bin",
              "usr/sbin", "var", "var/run"):
        layer.dir(d)
    layer.dir("root", 0o700)
    layer.dir("tmp", 0o1777)

    with open(busybox, "rb") as f:
        binary = f.read()
    if not is_static_elf(binary):
        sys.exit(f"{busybox} is not a statically linked ELF binary; "
                 "install busybox-static (apt-get install -y busybox-static)")
    layer.file("bin/busybox", binary, 0o755)

    applets, full_paths = busybox_applets(busybox)
    # Every applet in /bin (so a bare PATH lookup always works) ...
    for name in applets:
        if name != "busybox" and "/" not in name:
            layer.symlink(f"bin/{name}", "busybox")
    # ... and at its usual place too, for absolute paths like /usr/bin/env.
    for path in full_paths:
        if "/" in path and not path.startswith("bin/"):
            layer.symlink(path, relative_link(path, "/bin/busybox"))
    if "bin/sh" not in layer.entries:
        sys.exit(f"{busybox} has no sh applet")

    if "bash" not in applets:
        layer.file("bin/bash", BASH_SHIM, 0o755)
    layer.file("etc/passwd", PASSWD)
    layer.file("etc/group", GROUP)
    return layer.render()


def nginx_layer():
    layer = Layer()
    parts = NGINX_HTML_DIR.strip("/").split("/")
    # Parent dirs that the base layer lacks must exist in this layer.
    for i in range(2, len(parts) + 1):
        layer.dir("/".join(parts[:i]))
    layer.file(f"{NGINX_HTML_DIR}/index.html", NGINX_INDEX)
    return layer.render()


def go_arch():
    machine = platform.machine().lower()
    return {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64",
            "arm64": "arm64"}.get(machine, machine)


def image_config(layers, container_config, history):
    config = {
        "architecture": go_arch(),
        "os": "linux",
        "created": CREATED,
        "config": container_config,
        "rootfs": {
            "type": "layers",
            "diff_ids": ["sha256:" + sha256(layer) for layer in layers],
        },
        "history": [{"created": CREATED, "created_by": h} for h in history],
    }
    return json.dumps(config, sort_keys=True, separators=(",", ":")).encode()


def docker_archive(config, layers, repo_tags):
    """Render a docker-archive tarball: layers, config, manifest.json."""
    config_name = sha256(config) + ".json"
    layer_names = [sha256(layer) + "/layer.tar" for layer in layers]
    manifest = [{"Config": config_name, "RepoTags": repo_tags,
                 "Layers": layer_names}]
    manifest_bytes = json.dumps(manifest, separators=(",", ":")).encode()

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        def add(name, data, kind=tarfile.REGTYPE):
            info = tarfile.TarInfo(name)
            info.type = kind
            info.mtime = EPOCH
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            if kind == tarfile.DIRTYPE:
                info.mode = 0o755
                tar.addfile(info)
            else:
                info.mode = 0o644
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))

        for name, layer in zip(layer_names, layers):
            add(os.path.dirname(name), None, tarfile.DIRTYPE)
            add(name, layer)
        add(config_name, config)
        add("manifest.json", manifest_bytes)
    return buf.getvalue()


def normalize_tag(tag):
    if not TAG_RE.match(tag):
        sys.exit(f"invalid image reference {tag!r} (want NAME[:TAG])")
    # A ':' after the last '/' is the tag separator; otherwise default to latest.
    if ":" not in tag.rsplit("/", 1)[-1]:
        tag += ":latest"
    return tag


def file_name(tag):
    return re.sub(r"[^A-Za-z0-9.-]+", "_", tag) + ".tar"


def write_atomic(path, data):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def build(out_dir, extra_tags, busybox):
    base = base_layer(busybox)
    busybox_tags = ["busybox:latest"]
    for tag in map(normalize_tag, extra_tags):
        if tag not in busybox_tags:
            busybox_tags.append(tag)

    images = [
        (
            busybox_tags,
            [base],
            {"Cmd": ["sh"], "Env": [PATH_ENV], "WorkingDir": "/"},
            ["busybox rootfs (build-test-images.py)"],
        ),
        (
            ["nginx:latest"],
            [base, nginx_layer()],
            {
                "Cmd": ["httpd", "-f", "-p", "80", "-h", NGINX_HTML_DIR],
                "Env": [PATH_ENV],
                "ExposedPorts": {"80/tcp": {}},
                "WorkingDir": "/",
            },
            ["busybox rootfs (build-test-images.py)",
             f"COPY index.html {NGINX_HTML_DIR}/ (build-test-images.py)"],
        ),
    ]

    os.makedirs(out_dir, exist_ok=True)
    written = []
    for tags, layers, container_config, history in images:
        config = image_config(layers, container_config, history)
        path = os.path.join(out_dir, file_name(tags[0]))
        write_atomic(path, docker_archive(config, layers, tags))
        written.append(path)
    return written


def main():
    parser = argparse.ArgumentParser(
        description="Build busybox-based test images as docker-archive tarballs.")
    parser.add_argument("--out", required=True, help="directory for the tarballs")
    parser.add_argument("--tag", action="append", default=[], metavar="NAME:TAG",
                        help="extra repo tag for the busybox image (repeatable)")
    parser.add_argument("--busybox", default=DEFAULT_BUSYBOX,
                        help=f"static busybox binary to use (default {DEFAULT_BUSYBOX})")
    args = parser.parse_args()

    if not os.access(args.busybox, os.X_OK):
        sys.exit(f"{args.busybox} not found or not executable; "
                 "install it with: apt-get install -y busybox-static")
    try:
        for path in build(args.out, args.tag, args.busybox):
            print(path)
    except (OSError, subprocess.CalledProcessError) as err:
        sys.exit(f"build-test-images: {err}")


if __name__ == "__main__":
    main()
