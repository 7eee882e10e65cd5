"""Hand-written helpers around the ``casi.v1`` contract.

``api`` (the Net interface in numpy terms), ``codec`` (numpy <-> messages), ``client``
(``NetClient``), ``errors``, ``validate`` (the checks of requests), ``names`` (enum names and
the intentions), ``heads`` (per-head arithmetic of the logits), ``sizes`` (the parameter count
of casi-learner's model, without torch), ``tls``, ``health`` (the probe) and ``compliance``
(the contract tests any implementation can run).
"""

PROTOCOL_VERSION = 1
PROTOCOL_MINOR = 2
