"""Rucio policy package of the AF Gateway test server (scripts/rucio-server.sh).

Rucio's generic permission module plus one facility rule: a replication rule on a DID in a user
scope (`user.<name>`) may only be added by that scope's owner, root or an admin account. With the
generic module alone any account may add a rule for itself on any DID, so "bob may not make
alice's data available" could not be tested. Loaded through `[policy] package = af_rucio_policy`
(the directory holding this package is on the server's PYTHONPATH).
"""
SUPPORTED_VERSION = [">=41.0.0"]
