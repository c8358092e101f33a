"""Real infrastructure for the tests, on 127.0.0.1 only: install once, cache, start, check.

Each component (NATS, Cassandra, etcd + kube-apiserver, Jaeger, PowerDNS, SIP peers) is a
`Component`: it installs or builds itself into the cache outside the checkout, starts its
processes with logs under one run directory, answers a readiness check and stops. The state
of a running harness is a JSON file in the run directory, so `trunkline-harness status` and
`down` work from any process, and the pytest fixtures reuse a harness that `up` started.
"""
