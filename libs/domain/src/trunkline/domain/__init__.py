"""Trunkline's domain model: the nouns, their rules and the error table."""
