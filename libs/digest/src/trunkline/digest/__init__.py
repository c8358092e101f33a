"""Digest authentication for SIP without I/O (`trunkline.digest.sip`).

Shared by the signaling service (which answers carriers' challenges) and the auth service
(which challenges and verifies PBXs): services never import each other, so the code both
need lives here, below them.
"""
