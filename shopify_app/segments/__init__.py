"""Segmentation engine: the playbook's segments, BG/NBD + Gamma-Gamma models and retention metrics.

Pure core: :mod:`.dataset` (columnar data and per-customer features), :mod:`.library` (the
built-in segments), :mod:`.rfm`, :mod:`.clv`, :mod:`.crosssell`, :mod:`.rules` (custom
segments), :mod:`.metrics` and :mod:`.config` (per-shop settings) do no I/O. The I/O edge is
:mod:`.loader` (the dataset from the database) and :mod:`.recompute` (the background tasks that
write segments and memberships to the database).
"""
