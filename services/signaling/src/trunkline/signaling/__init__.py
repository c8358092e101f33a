"""Trunkline's signaling service: the SIP core and, later, the B2BUA built on it."""
