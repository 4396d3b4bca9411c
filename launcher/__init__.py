"""launcher: starts peers as processes (one host or many) and owns their lifetime.

cli.py   the `dssl` console script: dispatches to peer-side commands and launcher commands

launcher imports only peer's config and CLI modules, never gossip internals.
"""
