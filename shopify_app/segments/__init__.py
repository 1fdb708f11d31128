"""Segmentation engine: the playbook's segments, BG/NBD + Gamma-Gamma models and retention metrics.

The pure core does no I/O (no database, HTTP or jobs): :mod:`.dataset` (columnar data and
per-customer features), :mod:`.library` (the built-in segments, a module per family), :mod:`.rfm`,
:mod:`.clv`, :mod:`.crosssell`, :mod:`.rules` (custom segments), :mod:`.metrics` and
:mod:`.config` (per-shop settings). The stage's I/O edge is :mod:`.loader` (the dataset from the
database), :mod:`.recompute` (the background tasks that write segments and memberships) and
:mod:`.settings_change` (a settings change's effect on tags and audiences, then applied).
"""
