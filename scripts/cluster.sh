#!/usr/bin/env bash
# A real Kubernetes control plane on loopback, for the cluster tests and for trying the operator
# by hand: etcd, kube-apiserver (RBAC, OwnerReferencesPermissionEnforcement as OpenShift runs it,
# service-account token signing, an audit log),
# kube-controller-manager, kube-scheduler, and kwok with fake nodes (two of them with
# nvidia.com/gpu capacity) whose pods become Ready without containers.
#
#   scripts/cluster.sh up [--dir DIR] [--owner-pid PID]   start; prints the kubeconfig path last
#   scripts/cluster.sh down [--dir DIR]                   stop everything (logs stay in DIR)
#   scripts/cluster.sh stop|start COMPONENT [--dir DIR]   e.g. restart the apiserver mid-test
#   scripts/cluster.sh env [--dir DIR]                    print `export KUBECONFIG=...` and PATH
#
# DIR defaults to /tmp/sluice-cluster. With --owner-pid, the cluster goes down by itself once
# that process is gone (the test harness passes its own pid, so a crashed test leaks nothing).
# The binaries come from scripts/build-control-plane.sh (built on first use, then cached).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cmd="${1:-}"
shift || true
dir=/tmp/sluice-cluster
owner=""
component=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) dir="$2"; shift 2 ;;
    --owner-pid) owner="$2"; shift 2 ;;
    -*) echo "unknown flag $1" >&2; exit 2 ;;
    *) component="$1"; shift ;;
  esac
done

die() { echo "cluster.sh: $*" >&2; exit 1; }
log() { echo "cluster.sh: $*" >&2; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Waits (up to $2 seconds) until the command in "$3..." succeeds; $1 names what for errors.
wait_for() {
  local what="$1" limit="$2"
  shift 2
  local deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      die "timed out after ${limit}s waiting for $what (logs in $dir/logs)"
    fi
    sleep 0.5
  done
}

running() { [ -f "$dir/pids/$1" ] && kill -0 "$(cat "$dir/pids/$1")" 2>/dev/null; }

# start <name>: runs the command line saved in $dir/cmd/<name>, detached, logging to logs/<name>.
start() {
  local name="$1"
  [ -f "$dir/cmd/$name" ] || die "no component $name in $dir"
  running "$name" && return 0
  # shellcheck disable=SC2046
  setsid bash -c 'exec "$@"' "$name" $(cat "$dir/cmd/$name") >>"$dir/logs/$name.log" 2>&1 </dev/null &
  echo $! >"$dir/pids/$name"
}

stop() {
  local name="$1" pid
  [ -f "$dir/pids/$name" ] || return 0
  pid="$(cat "$dir/pids/$name")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$dir/pids/$name"
}

api_ready() {
  curl -sf --cacert "$dir/pki/ca.crt" -H "Authorization: Bearer $(cat "$dir/admin-token")" \
    "https://127.0.0.1:$(cat "$dir/ports/apiserver")/readyz" | grep -q ok
}

components="etcd kube-apiserver kube-controller-manager kube-scheduler kwok"

up() {
  local bin
  bin="$(bash "$here/build-control-plane.sh" | tail -1)"
  local stages="$bin/../kwok-stages.yaml"
  if [ -d "$dir/pids" ]; then
    down
  fi
  rm -rf "$dir"
  mkdir -p "$dir"/{pki,logs,pids,cmd,ports,etcd}
  dir="$(cd "$dir" && pwd)"

  # PKI: a CA, the apiserver's serving certificate for loopback, the service-account key.
  (
    cd "$dir/pki"
    openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=sluice-test-ca" \
      -keyout ca.key -out ca.crt 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" \
      -keyout apiserver.key -out apiserver.csr 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,IP:192.0.2.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc\n' >san.ext
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 \
      -extfile san.ext -out apiserver.crt 2>/dev/null
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
  )
  # The admin's static token (system:masters); everything else authenticates with
  # service-account tokens the apiserver issues itself.
  python3 -c 'import secrets; print(secrets.token_hex(16))' >"$dir/admin-token"
  printf '%s,admin,admin,system:masters\n' "$(cat "$dir/admin-token")" >"$dir/tokens.csv"
  # Audit: who did what, at metadata level (no bodies), for every request after it is served.
  cat >"$dir/audit-policy.yaml" <<'EOF'
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived", "ResponseStarted"]
rules:
  - level: Metadata
EOF

  local etcd_port etcd_peer api_port kwok_port
  etcd_port="$(free_port)"
  etcd_peer="$(free_port)"
  api_port="$(free_port)"
  kwok_port="$(free_port)"
  echo "$api_port" >"$dir/ports/apiserver"

  local server="https://127.0.0.1:$api_port"
  cat >"$dir/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
  - name: sluice-test
    cluster:
      server: $server
      certificate-authority: $dir/pki/ca.crt
users:
  - name: admin
    user:
      token: $(cat "$dir/admin-token")
contexts:
  - name: sluice-test
    context: {cluster: sluice-test, user: admin}
current-context: sluice-test
EOF

  echo "$bin/etcd --data-dir $dir/etcd --listen-client-urls http://127.0.0.1:$etcd_port \
    --advertise-client-urls http://127.0.0.1:$etcd_port \
    --listen-peer-urls http://127.0.0.1:$etcd_peer \
    --initial-advertise-peer-urls http://127.0.0.1:$etcd_peer \
    --initial-cluster default=http://127.0.0.1:$etcd_peer \
    --listen-metrics-urls= --quota-backend-bytes 4294967296 --unsafe-no-fsync" >"$dir/cmd/etcd"
  echo "$bin/kube-apiserver --etcd-servers http://127.0.0.1:$etcd_port \
    --bind-address 127.0.0.1 --advertise-address 192.0.2.1 --secure-port $api_port \
    --cert-dir $dir/pki --tls-cert-file $dir/pki/apiserver.crt \
    --tls-private-key-file $dir/pki/apiserver.key --client-ca-file $dir/pki/ca.crt \
    --token-auth-file $dir/tokens.csv --authorization-mode Node,RBAC \
    --enable-admission-plugins OwnerReferencesPermissionEnforcement \
    --service-account-issuer https://kubernetes.default.svc \
    --service-account-key-file $dir/pki/sa.pub \
    --service-account-signing-key-file $dir/pki/sa.key \
    --service-cluster-ip-range 10.96.0.0/16 \
    --audit-policy-file $dir/audit-policy.yaml --audit-log-path $dir/audit.log \
    --audit-log-format json --audit-log-mode blocking" >"$dir/cmd/kube-apiserver"
  echo "$bin/kube-controller-manager --kubeconfig $dir/kubeconfig --leader-elect=false \
    --secure-port 0 --root-ca-file $dir/pki/ca.crt \
    --service-account-private-key-file $dir/pki/sa.key \
    --concurrent-deployment-syncs 10 --concurrent-replicaset-syncs 10 \
    --concurrent-gc-syncs 20 --kube-api-qps 200 --kube-api-burst 400" >"$dir/cmd/kube-controller-manager"
  echo "$bin/kube-scheduler --kubeconfig $dir/kubeconfig --leader-elect=false \
    --secure-port 0 --kube-api-qps 200 --kube-api-burst 400" >"$dir/cmd/kube-scheduler"
  echo "$bin/kwok --kubeconfig $dir/kubeconfig --config $stages \
    --manage-all-nodes=false --manage-nodes-with-annotation-selector kwok.x-k8s.io/node=fake \
    --server-address 127.0.0.1:$kwok_port --cidr 10.244.0.1/16 --node-ip 10.240.0.1" >"$dir/cmd/kwok"

  if [ -n "$owner" ]; then
    # The watchdog: once the owner is gone, take the cluster down.
    setsid bash -c 'while kill -0 "$1" 2>/dev/null; do sleep 1; done; exec bash "$2" down --dir "$3"' \
      watchdog "$owner" "$here/cluster.sh" "$dir" >"$dir/logs/watchdog.log" 2>&1 </dev/null &
    echo $! >"$dir/watchdog.pid"
  fi

  start etcd
  wait_for "etcd" 30 curl -sf "http://127.0.0.1:$etcd_port/health"
  start kube-apiserver
  wait_for "kube-apiserver /readyz" 90 api_ready
  start kube-controller-manager
  start kube-scheduler
  start kwok
  local kubectl="$bin/kubectl --kubeconfig $dir/kubeconfig"
  # Fake nodes: two CPU nodes and two with 8 GPUs each; room for the 1,000-service scale test.
  for i in 0 1 2 3; do
    local gpu=""
    [ "$i" -ge 2 ] && gpu='"nvidia.com/gpu": "8",'
    cat <<EOF
{"apiVersion": "v1", "kind": "Node",
 "metadata": {"name": "kwok-node-$i",
   "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
   "labels": {"kubernetes.io/hostname": "kwok-node-$i", "kubernetes.io/os": "linux",
              "kubernetes.io/arch": "amd64", "type": "kwok"}},
 "status": {"allocatable": {$gpu "cpu": "2000", "memory": "8Ti", "pods": "1000"},
            "capacity": {$gpu "cpu": "2000", "memory": "8Ti", "pods": "1000"}}}
EOF
  done | $kubectl apply -f - >/dev/null
  wait_for "the kwok nodes to be Ready" 60 \
    $kubectl wait --for=condition=Ready node --all --timeout=1s
  # Pods need the namespace's default ServiceAccount, which the controller-manager creates.
  wait_for "the default ServiceAccount" 60 $kubectl -n default get serviceaccount default
  log "up in $SECONDS s; binaries in $bin; logs in $dir/logs"
  echo "$bin" >"$dir/bin-dir"
  echo "$dir/kubeconfig"
}

down() {
  local c
  for c in kwok kube-scheduler kube-controller-manager kube-apiserver etcd; do
    stop "$c"
  done
  if [ -f "$dir/watchdog.pid" ]; then
    local w
    w="$(cat "$dir/watchdog.pid")"
    rm -f "$dir/watchdog.pid"
    # Not when the watchdog itself is what runs `down`.
    [ "$w" != "$PPID" ] && [ "$w" != "$$" ] && kill "$w" 2>/dev/null || true
  fi
}

case "$cmd" in
  up) up ;;
  down) [ -d "$dir" ] && down; true ;;
  stop | start)
    [ -n "$component" ] || die "$cmd needs a component: $components"
    "$cmd" "$component"
    if [ "$cmd" = start ] && [ "$component" = kube-apiserver ]; then
      wait_for "kube-apiserver /readyz" 90 api_ready
    fi
    ;;
  env)
    [ -f "$dir/kubeconfig" ] || die "no cluster in $dir (run: $0 up)"
    echo "export KUBECONFIG=$dir/kubeconfig"
    echo "export PATH=$(cat "$dir/bin-dir"):\$PATH"
    ;;
  *)
    sed -n '2,14p' "$0" >&2
    exit 2
    ;;
esac
