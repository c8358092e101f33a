"""Trunkline's auth service: who may place a call through a trunk (gRPC, proto/trunkline/v1/
auth.proto). The rules are in `rules`, the brute-force lockout in `lockout`, the gRPC API in
`server`; `python -m trunkline.auth` runs it with the settings of `settings`."""
