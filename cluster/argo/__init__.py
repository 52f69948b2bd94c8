"""csflow's cluster manifests as package data (``csflow.cluster.argo``).

This folder is a kustomize base (``kubectl apply -k cluster/argo``) and, with
this file, a Python package, so the wheel and the csflow image ship the YAML
beside the code: ``csflow svc config`` reads it with ``importlib.resources``
(``sdk/ops/manifests.py``). Nothing is imported from here.
"""
