#!/usr/bin/env bash
# The real Kubernetes control plane on loopback, for the tests in tests/control_plane.rs:
# etcd, kube-apiserver and kube-controller-manager, built from their Go modules at the
# release go.mod names (no kubelet, no scheduler: tests write pod status themselves).
#
#   control-plane.sh build            builds the three binaries into the cache (downloads modules)
#   control-plane.sh bin              prints the directory the binaries are in (built or not)
#   control-plane.sh start DIR        certificates, then etcd, kube-apiserver and
#                                     kube-controller-manager; writes DIR/admin.kubeconfig and
#                                     DIR/env; returns once the API server is ready
#   control-plane.sh restart-apiserver DIR
#                                     stops kube-apiserver and starts it again on the same etcd
#                                     (its watch cache starts over, as after an upgrade)
#   control-plane.sh stop DIR         stops what `start DIR` started, by the pids it recorded
#
# Clients authenticate with DIR/admin-token (group system:masters) or the client certificate in
# DIR/admin.kubeconfig. `start` reads ETCD_PORT, ETCD_PEER_PORT and APISERVER_PORT (each
# required, each must be free), and WATCH_PID: when that process ends, the control plane is stopped too, so that a
# test run that dies leaves nothing behind. It fails fast, naming the cause, when a binary is
# missing, a port is taken or a process dies, and then stops whatever it had started.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
release=$(awk '$1 == "k8s.io/kubernetes" { print $2 } $1 == "require" && $2 == "k8s.io/kubernetes" { print $3 }' "$here/go.mod" | head -n 1)
[ -n "$release" ] || { echo "control-plane: $here/go.mod names no k8s.io/kubernetes release" >&2; exit 1; }
cache=${XDG_CACHE_HOME:-$HOME/.cache}/openhands-k8s-runtime
bin=$cache/control-plane/$release/bin
binaries=(etcd kube-apiserver kube-controller-manager)

die() {
  echo "control-plane: $*" >&2
  exit 1
}

build() {
  command -v go >/dev/null || die "go is not installed (the control plane is built from its Go modules)"
  mkdir -p "$bin"
  # What the binaries are built from; an unchanged source is not built again.
  local source
  source=$(cd "$here" && cat go.mod go.sum cmd/etcd/main.go | sha256sum | cut -d' ' -f1)
  if [ "$(cat "$bin/.source" 2>/dev/null)" = "$source" ]; then
    echo "control-plane: ${binaries[*]} of Kubernetes $release are built ($bin)"
    return
  fi
  # Go's module and build caches live under the user's cache directory as well, so a second
  # build reuses both and downloads nothing.
  export GOMODCACHE=${GOMODCACHE:-$cache/go/mod} GOCACHE=${GOCACHE:-$cache/go/build}
  export GOFLAGS=-mod=readonly
  cd "$here"
  go build -trimpath -ldflags "-s -w" -o "$bin/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager ./cmd/etcd
  echo "$source" >"$bin/.source"
  echo "control-plane: built ${binaries[*]} of Kubernetes $release into $bin"
}

port_is_free() {
  ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Waits for an HTTP(S) endpoint to answer 200, while the process behind it lives.
wait_for() {
  local what=$1 url=$2 pid=$3 log=$4 deadline=$((SECONDS + 90))
  shift 4
  until curl -fsS -o /dev/null --max-time 2 "$@" "$url" 2>/dev/null; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "control-plane: $what exited; the end of its log ($log):" >&2
      tail -n 20 "$log" >&2
      return 1
    fi
    ((SECONDS < deadline)) || {
      echo "control-plane: $what did not become ready in 90 s ($log)" >&2
      return 1
    }
    sleep 0.2
  done
}

certificates() {
  local dir=$1
  cd "$dir"
  openssl ecparam -name prime256v1 -genkey -noout -out ca.key 2>/dev/null
  openssl req -x509 -new -key ca.key -out ca.crt -days 2 -subj "/CN=control-plane-test-ca" 2>/dev/null
  issue() { # name subject extensions
    openssl ecparam -name prime256v1 -genkey -noout -out "$1.key" 2>/dev/null
    openssl req -new -key "$1.key" -out "$1.csr" -subj "$2" 2>/dev/null
    printf '%s\n' "$3" >"$1.ext"
    openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -out "$1.crt" -days 2 \
      -extfile "$1.ext" 2>/dev/null
    rm -f "$1.csr" "$1.ext"
  }
  issue apiserver "/CN=kube-apiserver" \
    "subjectAltName=IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
extendedKeyUsage=serverAuth"
  issue admin "/O=system:masters/CN=control-plane-admin" "extendedKeyUsage=clientAuth"
  issue controller-manager "/CN=system:kube-controller-manager" "extendedKeyUsage=clientAuth"
  # The service-account token signing key.
  openssl genrsa -out sa.key 2048 2>/dev/null
  openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
}

kubeconfig() { # file user
  local b64="base64 -w0"
  cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: control-plane
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority-data: $($b64 <ca.crt)
users:
- name: $2
  user:
    client-certificate-data: $($b64 <"$2.crt")
    client-key-data: $($b64 <"$2.key")
contexts:
- name: control-plane
  context: {cluster: control-plane, user: $2}
current-context: control-plane
EOF
}

# Starts kube-apiserver on the ports recorded in DIR/ports and waits until it is ready.
start_apiserver() {
  local dir=$1
  # shellcheck source=/dev/null
  source "$dir/ports"
  "$bin/kube-apiserver" --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$APISERVER_PORT" \
    --tls-cert-file "$dir/apiserver.crt" --tls-private-key-file "$dir/apiserver.key" \
    --client-ca-file "$dir/ca.crt" --token-auth-file "$dir/tokens.csv" \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$dir/sa.pub" --service-account-signing-key-file "$dir/sa.key" \
    --authorization-mode Node,RBAC --service-cluster-ip-range 10.96.0.0/16 \
    --endpoint-reconciler-type none \
    --profiling=false >>"$dir/kube-apiserver.log" 2>&1 &
  local apiserver=$!
  echo "$apiserver" >"$dir/apiserver.pid"
  echo -n "$apiserver " >>"$dir/pids"
  wait_for kube-apiserver "https://127.0.0.1:$APISERVER_PORT/readyz" $apiserver "$dir/kube-apiserver.log" \
    --cacert "$dir/ca.crt" -H "Authorization: Bearer $(cat "$dir/admin-token")"
}

restart_apiserver() {
  local dir=$1 old
  [ -f "$dir/apiserver.pid" ] || die "$dir has no running control plane"
  old=$(cat "$dir/apiserver.pid")
  kill -TERM "$old" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$old" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$old" 2>/dev/null || true
  sed -i "s/\b$old \?//" "$dir/pids"
  start_apiserver "$dir"
}

stop() {
  local dir=$1 pid pids=()
  [ -f "$dir/pids" ] || return 0
  # The list has no final newline: read reports end of file, having read it all.
  read -r -a pids <"$dir/pids" || true
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for _ in $(seq 50); do
    local alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    ((alive)) || break
    sleep 0.1
  done
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  rm -f "$dir/pids" "$dir/apiserver.pid"
}

start() {
  local dir=$1
  for name in "${binaries[@]}"; do
    [ -x "$bin/$name" ] || die "$bin/$name is missing: run '$0 build' first"
  done
  : "${ETCD_PORT:?ETCD_PORT is required}" "${ETCD_PEER_PORT:?ETCD_PEER_PORT is required}"
  : "${APISERVER_PORT:?APISERVER_PORT is required}"
  for port in "$ETCD_PORT" "$ETCD_PEER_PORT" "$APISERVER_PORT"; do
    port_is_free "$port" || die "port $port on 127.0.0.1 is taken"
  done
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  [ ! -f "$dir/pids" ] || die "$dir already has a running control plane: '$0 stop $dir' first"
  certificates "$dir"
  printf 'ETCD_PORT=%s\nAPISERVER_PORT=%s\n' "$ETCD_PORT" "$APISERVER_PORT" >"$dir/ports"
  head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$dir/admin-token"
  printf '%s,control-plane-admin,control-plane-admin,"system:masters"\n' "$(cat "$dir/admin-token")" >"$dir/tokens.csv"
  kubeconfig "$dir/admin.kubeconfig" admin
  kubeconfig "$dir/controller-manager.kubeconfig" controller-manager
  : >"$dir/pids"
  # Whatever goes wrong from here on, nothing is left running.
  trap 'stop "$dir"' EXIT

  "$bin/etcd" --name control-plane --data-dir "$dir/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "control-plane=http://127.0.0.1:$ETCD_PEER_PORT" \
    --unsafe-no-fsync --log-level warn >"$dir/etcd.log" 2>&1 &
  echo -n "$! " >>"$dir/pids"
  wait_for etcd "http://127.0.0.1:$ETCD_PORT/health" $! "$dir/etcd.log"

  start_apiserver "$dir"

  "$bin/kube-controller-manager" --kubeconfig "$dir/controller-manager.kubeconfig" \
    --authentication-kubeconfig "$dir/controller-manager.kubeconfig" \
    --authorization-kubeconfig "$dir/controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port 0 --leader-elect=false \
    --service-account-private-key-file "$dir/sa.key" --root-ca-file "$dir/ca.crt" \
    --use-service-account-credentials \
    --profiling=false >"$dir/kube-controller-manager.log" 2>&1 &
  echo -n "$! " >>"$dir/pids"
  sleep 0.5
  kill -0 $! 2>/dev/null || {
    echo "control-plane: kube-controller-manager exited:" >&2
    tail -n 20 "$dir/kube-controller-manager.log" >&2
    false
  }
  trap - EXIT

  cat >"$dir/env" <<EOF
KUBECONFIG=$dir/admin.kubeconfig
API_URL=https://127.0.0.1:$APISERVER_PORT
CA_FILE=$dir/ca.crt
ADMIN_TOKEN_FILE=$dir/admin-token
ETCD_URL=http://127.0.0.1:$ETCD_PORT
EOF
  if [ -n "${WATCH_PID:-}" ]; then
    # Detached from this shell: the control plane ends with the process that asked for it.
    (
      trap '' HUP
      while kill -0 "$WATCH_PID" 2>/dev/null && [ -f "$dir/pids" ]; do sleep 1; done
      stop "$dir"
    ) </dev/null >/dev/null 2>&1 &
    disown
  fi
  echo "control-plane: Kubernetes $release at https://127.0.0.1:$APISERVER_PORT (kubeconfig $dir/admin.kubeconfig)"
}

case "${1:-}" in
  build) build ;;
  bin) echo "$bin" ;;
  start) start "${2:?usage: $0 start DIR}" ;;
  restart-apiserver) restart_apiserver "${2:?usage: $0 restart-apiserver DIR}" ;;
  stop) stop "${2:?usage: $0 stop DIR}" ;;
  *) die "usage: $0 build | bin | start DIR | restart-apiserver DIR | stop DIR" ;;
esac
