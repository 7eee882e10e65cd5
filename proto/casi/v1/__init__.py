"""Generated code of the CASI wire contract (package ``casi.v1``)."""
