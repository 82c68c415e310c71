"""Test-only servers and helpers that stand in for engines which cannot be installed here.

``kube_apiserver``: a Kubernetes API test server, faithful for the endpoints mlctl calls.
"""
