"""Everything ner-adapters takes from another library's private API, one module per library.

Upstream may change a private name in any release. Keeping each use here, with
``tests/test_upstream_internals.py`` checking that every one still exists in the installed version (the failure
names the upstream function), turns an upgrade that breaks one into one failing test with a name on it, not a
silent change of behaviour deep in a training run.
"""
