"""The `trunkline` command: the embedded platform (`trunkline up`), `status` and `admin`."""
