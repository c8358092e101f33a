"""A SIP core without I/O (RFC 3261): bytes, events and the clock in; messages, timers and
events out. The asyncio transports in `trunkline.signaling.sip.transport` adapt it to sockets.
"""
