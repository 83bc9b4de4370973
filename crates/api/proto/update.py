#!/usr/bin/env python3
"""Refreshes the upstream protobuf schema data in this folder.

Copies the `generated.proto` of every served group/version (and what they import) from
upstream git repositories, and writes `go-types.txt`: what upstream's Go types say about the
JSON form that the .proto files do not (JSON names, omitempty, pointer fields, inlined
structs, slice wrappers, registered kinds, group names). The protobuf decoder needs both to
produce the JSON the same Go object would have been sent as.

Usage: update.py API APIMACHINERY APIEXTENSIONS KUBE_AGGREGATOR
  each a git directory (bare or not) of kubernetes/api, kubernetes/apimachinery,
  kubernetes/apiextensions-apiserver and kubernetes/kube-aggregator; their HEAD is used.
Afterwards update the commits in README.md.
"""

import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

# The served group/versions (see src/catalogue.rs) as upstream import paths; what they import
# is copied too.
SERVED = [
    "k8s.io/api/" + d
    for d in [
        "core/v1", "apps/v1", "events/v1", "authentication/v1", "authorization/v1",
        "autoscaling/v2", "autoscaling/v1", "batch/v1", "certificates/v1", "networking/v1",
        "policy/v1", "rbac/v1", "storage/v1", "admissionregistration/v1", "scheduling/v1",
        "coordination/v1", "node/v1", "discovery/v1", "flowcontrol/v1", "resource/v1",
        "storagemigration/v1",
    ]
] + [
    "k8s.io/apimachinery/pkg/apis/meta/v1",
    "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1",
    "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1",
]
# Import path prefix → index of the repository argument.
REPOS = [
    "k8s.io/api/", "k8s.io/apimachinery/", "k8s.io/apiextensions-apiserver/",
    "k8s.io/kube-aggregator/",
]


def locate(import_path):
    """(repository index, folder in it) of an import path such as k8s.io/api/core/v1."""
    for index, prefix in enumerate(REPOS):
        if import_path.startswith(prefix):
            return index, import_path[len(prefix):]
    sys.exit(f"no repository for {import_path}")


def git(gitdir, *args):
    return subprocess.run(
        ["git", "-C", gitdir, *args], check=True, capture_output=True, text=True
    ).stdout


def go_sources(gitdir, folder):
    names = git(gitdir, "ls-tree", "--name-only", "HEAD", folder + "/").split()
    for name in names:
        base = os.path.basename(name)
        if not base.endswith(".go") or base.endswith("_test.go") or base.endswith("_fuzz.go"):
            continue
        if base.startswith("zz_generated") or "generated" in base:
            continue
        yield base, git(gitdir, "show", "HEAD:" + name)


FIELD = re.compile(r"^\t([\w.*]+)(?:\s+(\S+))?\s+`([^`]*)`")
TAG = re.compile(r'(\w+):"([^"]*)"')


def struct_fields(source):
    """Yields (struct, go name, go type, embedded, json tag, protobuf tag) per tagged field."""
    struct, depth = None, 0
    for line in source.splitlines():
        m = re.match(r"^type (\w+) struct \{", line)
        if m:
            struct, depth = m.group(1), 1
            continue
        if struct is None:
            continue
        depth += line.count("{") - line.count("}")
        if depth <= 0:
            struct = None
            continue
        if depth != 1:
            continue
        m = FIELD.match(line)
        if not m:
            continue
        tags = dict(TAG.findall(m.group(3)))
        if "protobuf" not in tags:
            continue
        if m.group(2) is None:
            go_type, name, embedded = m.group(1), m.group(1).split(".")[-1].lstrip("*"), True
        else:
            name, go_type, embedded = m.group(1), m.group(2), False
        yield struct, name, go_type, embedded, tags.get("json", ""), tags["protobuf"]


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    repos = sys.argv[1:]
    lines = []
    queue, seen = list(SERVED), set(SERVED)
    while queue:
        import_path = queue.pop(0)
        repo, folder = locate(import_path)
        proto = git(repos[repo], "show", f"HEAD:{folder}/generated.proto")
        dest = os.path.join(HERE, import_path, "generated.proto")
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        with open(dest, "w") as f:
            f.write(proto)
        for imported in re.findall(r'^import "(.*)/generated.proto";', proto, re.M):
            if imported not in seen:
                seen.add(imported)
                queue.append(imported)
        package = re.search(r"^package ([\w.]+);", proto, re.M).group(1)
        messages = set(re.findall(r"^message (\w+) \{", proto, re.M))
        sources = dict(go_sources(repos[repo], folder))

        register = sources.get("register.go", "")
        group = re.search(r'^const GroupName = "([^"]*)"', register, re.M)
        version = re.search(r'Version: "(\w+)"', register)
        if import_path in SERVED and group and version:
            lines.append(f"package {package} {group.group(1) or '-'} {version.group(1)}")
            kinds = sorted(set(re.findall(r"&(\w+)\{\}", register)) & messages)
            lines.append(f"kinds {package} {' '.join(kinds)}")

        for source in sources.values():
            for wrapper in re.findall(r"^type (\w+) \[\]\w+$", source, re.M):
                if wrapper in messages:
                    lines.append(f"wrapper {package}.{wrapper}")
            for struct, name, go_type, embedded, json, pb in struct_fields(source):
                if struct not in messages:
                    continue
                pb_parts = pb.split(",")
                if len(pb_parts) < 2:
                    continue
                number = pb_parts[1]
                proto_name = re.search(r"name=(\w+)", pb)
                proto_name = proto_name.group(1) if proto_name else None
                json_parts = json.split(",")
                json_name, options = json_parts[0], json_parts[1:]
                flags = []
                if json_name == "-":
                    flags.append("skip")
                elif embedded and json_name == "":
                    flags.append("inline")
                else:
                    json_name = json_name or name
                    if json_name != proto_name:
                        flags.append("json=" + json_name)
                    if go_type.startswith("*"):
                        flags.append("ptr")
                    elif "omitempty" not in options and "omitzero" not in options:
                        flags.append("always")
                if flags:
                    lines.append(f"field {package}.{struct} {number} {' '.join(flags)}")

    commits = [git(r, "rev-parse", "HEAD").strip() for r in repos]
    with open(os.path.join(HERE, "go-types.txt"), "w") as f:
        f.write(
            "# What upstream's Go types add to the .proto files, for the JSON form.\n"
            "# Generated by update.py; do not edit. Upstream data, Apache-2.0.\n"
            "# Sources (kubernetes/api, apimachinery, apiextensions-apiserver, kube-aggregator):\n"
            f"# {' '.join(commits)}\n"
            "# package <proto package> <group, - for core> <version>\n"
            "# kinds <proto package> <kinds registered in the scheme>\n"
            "# wrapper <message>: a named Go slice, JSON is the array of its items\n"
            "# field <message> <field number> <flags>: json=<JSON name>, ptr (a Go pointer:\n"
            "#   set means set even when zero), always (no omitempty: zero is written),\n"
            "#   inline (an embedded struct: its fields are the parent's), skip (not in JSON)\n"
        )
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
