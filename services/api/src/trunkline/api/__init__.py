"""Trunkline's API service: the Twilio-compatible REST API, the admin API and the console."""
