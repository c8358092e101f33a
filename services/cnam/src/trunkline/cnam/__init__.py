"""Trunkline's CNAM service: the caller name of a North American number, for origination
calls on trunks with CNAM lookup enabled (gRPC, proto/trunkline/v1/cnam.proto).

The lookup rules (table, provider, cache) are in `lookup`, the HTTP provider in `provider`,
the usage events that bill every lookup in `usage`, the gRPC API in `server`;
`python -m trunkline.cnam` runs it with the settings of `settings`."""
