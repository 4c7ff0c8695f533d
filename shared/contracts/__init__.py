"""Payload models of every event on the bus, grouped by the part of the domain they describe.

The index of types, topics and partition keys is `shared.catalog`; read that first.
"""
