"""Peer baselines for `make bench`: the stacks Socialhub replaces, serving the same data."""
