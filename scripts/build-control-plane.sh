#!/usr/bin/env bash
# Builds the Kubernetes control plane the cluster tests run on, from the Go modules pinned in
# tests/k8s/ (versions in tests/k8s/versions.env): etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, kubectl, kwok and helm.
#
# Binaries go to one directory per pinned set of versions, outside the clone, and are reused when
# present: $SLUICE_K8S_CACHE (default /var/tmp/sluice-k8s)/<versions>/bin. Prints that bin
# directory on its last line. A cold build takes a while on 2 cores (kube-apiserver and
# kube-controller-manager are large); a warm one returns at once.
set -euo pipefail
cd "$(dirname "$0")/../tests/k8s"
# shellcheck source=../tests/k8s/versions.env
source versions.env

# Every go.mod must require the version versions.env names, so the one place stays true.
check_pin() { # dir module version
  grep -Eq "^(require )?[[:space:]]*$2 $3( |\$)" "$1/go.mod" || {
    echo "tests/k8s/$1/go.mod does not require $2 $3 (versions.env); fix one of them" >&2
    exit 1
  }
}
check_pin kubernetes k8s.io/kubernetes "$KUBERNETES_VERSION"
check_pin etcd go.etcd.io/etcd/server/v3 "$ETCD_VERSION"
check_pin kwok sigs.k8s.io/kwok "$KWOK_VERSION"
check_pin helm helm.sh/helm/v3 "$HELM_VERSION"

cache="${SLUICE_K8S_CACHE:-/var/tmp/sluice-k8s}"
dir="$cache/k8s-$KUBERNETES_VERSION-etcd-$ETCD_VERSION-kwok-$KWOK_VERSION-helm-$HELM_VERSION"
bin="$dir/bin"
mkdir -p "$bin"
export GOFLAGS="${GOFLAGS:--buildvcs=false} -mod=readonly"

# build <module dir> <output name> <package> [ldflags]
build() {
  if [ -x "$bin/$2" ]; then
    return
  fi
  echo "building $2 ($3)" >&2
  (cd "$1" && go build -trimpath -ldflags "-s -w ${4:-}" -o "$bin/$2.tmp" "$3")
  mv "$bin/$2.tmp" "$bin/$2"
}

minor="${KUBERNETES_VERSION#v1.}"
minor="${minor%%.*}"
# Without these the binaries report v0.0.0, and helm's and kubectl's version checks fail.
kube_version="-X k8s.io/component-base/version.gitVersion=$KUBERNETES_VERSION \
  -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor \
  -X k8s.io/client-go/pkg/version.gitVersion=$KUBERNETES_VERSION \
  -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$minor"

build etcd etcd go.etcd.io/etcd/server/v3
build kubernetes kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver "$kube_version"
build kubernetes kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager "$kube_version"
build kubernetes kube-scheduler k8s.io/kubernetes/cmd/kube-scheduler "$kube_version"
build kubernetes kubectl k8s.io/kubernetes/cmd/kubectl "$kube_version"
build kwok kwok sigs.k8s.io/kwok/cmd/kwok "-X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION"
build helm helm helm.sh/helm/v3/cmd/helm "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"

# kwok's stages (what its fake kubelet does to nodes and pods) ship as YAML in its module: nodes
# become Ready and keep a heartbeat; pods are scheduled, get an IP and become Ready at once.
if [ ! -s "$dir/kwok-stages.yaml" ]; then
  kwok_src="$(cd kwok && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)"
  stages="$kwok_src/kustomize/stage"
  for f in "$stages"/node/fast/*.yaml "$stages"/node/heartbeat/*.yaml "$stages"/pod/fast/*.yaml; do
    [ "$(basename "$f")" = kustomization.yaml ] && continue
    echo "---"
    cat "$f"
  done >"$dir/kwok-stages.yaml.tmp"
  mv "$dir/kwok-stages.yaml.tmp" "$dir/kwok-stages.yaml"
fi
echo "$bin"
