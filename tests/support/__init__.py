"""Test-only servers and helpers that stand in for engines which cannot be installed here.

``kube_apiserver``: a Kubernetes API test server, faithful for the endpoints mlctl calls.
``local_servers``: trivial HTTP and TCP servers for the process, probe and engine unit tests.
"""
