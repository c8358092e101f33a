"""One module per component; each exposes `COMPONENT`, an object meeting `Component`."""
