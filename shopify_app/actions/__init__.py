"""The action step: what Goldpan does with its segments beyond tags and audiences.

- :mod:`.discounts`: a win-back code discount per lapsed tier, limited to its native segment.
- :mod:`.scores`: the predictions on every customer as metafields, written diff-only.
"""
