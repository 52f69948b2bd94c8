"""Operating a cluster: the manifests `csflow svc config` prints, Redis ACL users,
and syncing secrets into Kubernetes Secrets."""
