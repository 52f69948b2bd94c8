"""Argo, read offline: the CRD schema check, the semantic lint, and the Argo-semantics
kernel (workflow merge, depends, when, variables) that the embedded engine runs on."""
