# The dev cluster's node (stage 2), sourced by cluster/dev/up: kubelet, kube-scheduler
# and kube-proxy from the same Kubernetes build, on Debian's containerd, runc and CNI
# plugins; a local registry with the images; and the services csflow's steps talk to
# (a GCS emulator; Redis runs in the cluster as csflow's own Deployment).
#
# Network: one Linux bridge, csflow0 (10.88.0.1/24), made here; the CNI bridge plugin
# attaches each pod to it from its own network namespace. The API server, the kubelet,
# the registry and the GCS emulator listen on 10.88.0.1. Pods reach Services (the API
# server's `kubernetes`, csflow-redis) through kube-proxy's iptables rules, and the
# package indexes this machine reaches (the publish flow's clone and build steps) through
# one masquerade rule and this machine's resolver, as a production cluster's pods would.
# NetworkPolicies are not enforced (the bridge plugin has no policy engine).

readonly NODE_NAME=csflow-dev
readonly BRIDGE=csflow0
readonly BRIDGE_IP=10.88.0.1
readonly POD_CIDR=10.88.0.0/24
readonly SERVICE_CIDR=10.96.0.0/16
# On the bridge: the publish flow's build step pushes to it from a pod.
REGISTRY_ADDR="$BRIDGE_IP:${CSFLOW_DEV_REGISTRY_PORT:-15000}"
GCS_PORT="${CSFLOW_DEV_GCS_PORT:-14443}"
# The publish steps' model registry (versions and tags), in the GCS emulator.
readonly MODEL_REGISTRY_URL=gs://csflow-results/model-registry
WEBAPP_LISTEN="$BRIDGE_IP:${CSFLOW_DEV_WEBAPP_PORT:-18080}"   # the tests' webapp recorder
# Registries whose images the dev registry stands in for (containerd mirrors).
readonly MIRRORED=(gcr.io quay.io docker.io registry.k8s.io)
readonly EGRESS_RULE=(-s "$POD_CIDR" ! -o "$BRIDGE" -m comment --comment csflow-dev-egress -j MASQUERADE)

node_network() {
    # The bridge exists before the API server starts: it listens on the bridge's address.
    if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
        ip link add "$BRIDGE" type bridge || fail "cannot create bridge $BRIDGE (needs root, CAP_NET_ADMIN)"
        echo "$BRIDGE" >"$RUN_DIR/bridge"
    fi
    ip addr replace "$BRIDGE_IP/24" dev "$BRIDGE" || fail "cannot give $BRIDGE the address $BRIDGE_IP"
    ip link set "$BRIDGE" up
    # Forwarding between pods (through Service addresses) and bridge traffic through
    # iptables, as kube-proxy expects. `down` puts back the values found here.
    local key
    for key in net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables; do
        [[ -f "$RUN_DIR/sysctl.$key" ]] || sysctl -n "$key" >"$RUN_DIR/sysctl.$key"
        sysctl -qw "$key=1" || fail "cannot set $key=1"
    done
    # Pods' traffic off the bridge leaves with this machine's address; `down` removes it.
    iptables -t nat -C POSTROUTING "${EGRESS_RULE[@]}" 2>/dev/null \
        || iptables -t nat -A POSTROUTING "${EGRESS_RULE[@]}" \
        || fail "cannot add the pods' masquerade rule (iptables -t nat)"
    echo "${EGRESS_RULE[*]}" >"$RUN_DIR/egress-rule"
}

node_certificates() {
    issue kubelet "/O=system:nodes/CN=system:node:$NODE_NAME" "$client_ext"
    issue kubelet-serving "/CN=$NODE_NAME" $'keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:'"$BRIDGE_IP"',DNS:'"$NODE_NAME"
    issue kube-scheduler "/CN=system:kube-scheduler" "$client_ext"
    issue kube-proxy "/CN=system:kube-proxy" "$client_ext"
    local who
    for who in kubelet kube-scheduler kube-proxy; do
        kubeconfig "$who" "      client-certificate: $PKI/$who.crt
      client-key: $PKI/$who.key"
    done
}

node_registry() {
    mkdir -p "$CACHE_DIR/images/registry-blobs"
    # crane's registry (go-containerregistry's pkg/registry, as cmd/registry) keeps
    # blobs on disk, in the cache, and manifests in memory: build-images pushes again.
    start registry "$BIN_DIR/crane-$GGCR_VERSION" registry serve --address "$REGISTRY_ADDR" \
        --disk "$CACHE_DIR/images/registry-blobs"
    wait_for registry 20 http_ok "http://$REGISTRY_ADDR/v2/"
}

node_containerd() {
    local dir="$RUN_DIR/containerd" cni="$RUN_DIR/cni"
    mkdir -p "$dir" "$cni/net.d" "$cni/ipam"
    cat >"$cni/net.d/10-csflow.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "csflow-dev",
  "plugins": [
    {"type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "dataDir": "$cni/ipam", "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$BRIDGE_IP"}]],
              "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
    {
        cat <<EOF
version = 2
root = "$dir/root"
state = "$dir/state"
[grpc]
  address = "$dir/containerd.sock"
[ttrpc]
  address = "$dir/containerd.sock.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:$PAUSE_VERSION"
  # Pods' network namespaces under the run dir (not /var/run/netns), so down finds them.
  netns_mounts_under_state_dir = true
  # This machine gives root no CAP_SYS_RESOURCE, so no process may lower its OOM score
  # (the kubelet asks -998 for sandboxes); clamp to containerd's own score instead.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$cni/net.d"
EOF
        local registry
        # ... and the registry itself, by its address (the images the publish flow builds).
        for registry in "${MIRRORED[@]}" "$REGISTRY_ADDR"; do
            printf '  [plugins."io.containerd.grpc.v1.cri".registry.mirrors."%s"]\n    endpoint = ["http://%s"]\n' \
                "$registry" "$REGISTRY_ADDR"
        done
    } >"$dir/config.toml"
    start containerd containerd --config "$dir/config.toml" --log-level warn
    wait_for containerd 30 test -S "$dir/containerd.sock"
}

node_kubelet() {
    local dir="$RUN_DIR/kubelet"
    mkdir -p "$dir/root" "$dir/pod-logs"
    # No cluster DNS here: pods resolve names as this machine does (Services by address).
    cp /etc/resolv.conf "$dir/resolv.conf"
    cat >"$dir/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $BRIDGE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: $PKI/kubelet-serving.crt
tlsPrivateKeyFile: $PKI/kubelet-serving.key
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://$RUN_DIR/containerd/containerd.sock
failSwapOn: false
failCgroupV1: false
oomScoreAdj: 0            # no CAP_SYS_RESOURCE here: a score below 0 is refused
resolvConf: $dir/resolv.conf
clusterDomain: cluster.local
podLogsDir: $dir/pod-logs
maxPods: 40
serializeImagePulls: false
evictionHard: {memory.available: "200Mi", nodefs.available: "2%", imagefs.available: "2%"}
imageGCHighThresholdPercent: 95
imageGCLowThresholdPercent: 90
EOF
    start kubelet "$BIN_DIR/kubelet-$KUBE_VERSION" --config "$dir/config.yaml" \
        --kubeconfig "$KUBECONFIGS/kubelet.yaml" --hostname-override "$NODE_NAME" \
        --node-ip "$BRIDGE_IP" --root-dir "$dir/root" --v=1
    wait_for kubelet 120 node_ready
}

node_ready() {
    "$PY" - "$KUBECONFIGS/admin.yaml" "$NODE_NAME" <<'EOF'
import sys
from kubernetes import client, config
api = client.CoreV1Api(config.new_client_from_config(config_file=sys.argv[1]))
node = api.read_node(sys.argv[2])
ready = [c for c in node.status.conditions or [] if c.type == "Ready"]
sys.exit(0 if ready and ready[0].status == "True" else 1)
EOF
}

node_scheduler_and_proxy() {
    start kube-scheduler "$BIN_DIR/kube-scheduler-$KUBE_VERSION" \
        --kubeconfig "$KUBECONFIGS/kube-scheduler.yaml" \
        --authentication-kubeconfig "$KUBECONFIGS/kube-scheduler.yaml" \
        --authorization-kubeconfig "$KUBECONFIGS/kube-scheduler.yaml" \
        --bind-address 127.0.0.1 --secure-port 0 --leader-elect=false --v=1
    cat >"$RUN_DIR/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $KUBECONFIGS/kube-proxy.yaml}
hostnameOverride: $NODE_NAME
mode: iptables
clusterCIDR: $POD_CIDR
bindAddress: $BRIDGE_IP
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
iptables: {masqueradeAll: true, localhostNodePorts: false}
oomScoreAdj: 0
# Leave the machine's conntrack settings alone.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF
    start kube-proxy "$BIN_DIR/kube-proxy-$KUBE_VERSION" --config "$RUN_DIR/kube-proxy.yaml" --v=1
    echo "$BIN_DIR/kube-proxy-$KUBE_VERSION" >"$PIDS/kube-proxy.cleanup"  # down: --cleanup
    sleep 1
    alive kube-scheduler || fail "kube-scheduler exited" "$LOGS/kube-scheduler.log"
    wait_for kube-proxy 60 iptables -t nat -n -L KUBE-SERVICES
}

node_gcs() {
    # Google Cloud Storage, emulated (the same server the data-plane tests use):
    # results for the platform steps, artifacts between steps for Argo's executor.
    mkdir -p "$RUN_DIR/gcs"
    start gcs-emulator "$REPO_DIR/.venv/bin/gcp-storage-emulator" -d "$RUN_DIR/gcs" start \
        --host "$BRIDGE_IP" --port "$GCS_PORT" --default-bucket csflow-results -q
    wait_for gcs-emulator 30 http_ok "http://$BRIDGE_IP:$GCS_PORT/"
    "$PY" - "http://$BRIDGE_IP:$GCS_PORT" <<'EOF' >>"$LOGS/gcs-emulator.log" 2>&1 || fail "cannot create the bucket csflow-artifacts"
import os, sys
os.environ["STORAGE_EMULATOR_HOST"] = sys.argv[1]
from google.cloud import storage
client = storage.Client(project="csflow-dev")
if client.lookup_bucket("csflow-artifacts") is None:
    client.create_bucket("csflow-artifacts")
EOF
}

node_csflow() {
    # csflow's service secrets, as an operator delivers them: generated into a secret
    # store of this cluster, then `csflow svc secrets sync --apply`. No cluster DNS runs
    # here, so the model steps' job store URL names csflow-redis by its Service address.
    local csflow=(env "CSFLOW_HOME=$RUN_DIR/csflow-home" "$REPO_DIR/.venv/bin/csflow") name redis_ip
    for name in REDIS_ADMIN_PW REDIS_SCHEDULER_PW REDIS_MODEL_PW CS_API_TOKEN; do
        "${csflow[@]}" svc secrets set "$name" --generate >>"$LOGS/csflow-secrets.log" 2>&1 \
            || fail "csflow svc secrets set $name --generate failed" "$LOGS/csflow-secrets.log" "$EXIT_MANIFESTS"
    done
    redis_ip="$(kube service-ip "$NAMESPACE" csflow-redis)" || fail "no Service csflow-redis"
    JOB_STORE_URL="redis://$redis_ip:6379/0"
    CSFLOW_JOB_STORE_URL="$JOB_STORE_URL" "${csflow[@]}" svc secrets sync --apply \
            --kubeconfig "$KUBECONFIGS/admin.yaml" >>"$LOGS/csflow-secrets.log" 2>&1 \
        || fail "csflow svc secrets sync --apply failed" "$LOGS/csflow-secrets.log" "$EXIT_MANIFESTS"
    # Stand-ins for the cloud: the GCS emulator's address for the platform steps and
    # Argo's executor (keyless, as production's Workload Identity).
    kube dev-overlay "$NAMESPACE" --gcs "http://$BRIDGE_IP:$GCS_PORT" \
            --registry "$REGISTRY_ADDR" --model-registry-url "$MODEL_REGISTRY_URL" \
            2>>"$LOGS/csflow-manifests.log" \
        || fail "the dev overlay (GCS emulator) was refused" "$LOGS/csflow-manifests.log"
}

node_redis_ready() {
    # csflow's own Redis Deployment, on the image built from Debian's redis-server.
    local until=$((SECONDS + 120))
    until kube rollout-ready "$NAMESPACE" csflow-redis 2>>"$LOGS/csflow-redis.log"; do
        [[ $SECONDS -lt $until ]] || fail "Deployment csflow-redis not ready after 120s" "$LOGS/csflow-redis.log"
        sleep 1
    done
}
