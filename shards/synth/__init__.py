"""Synthetic kitchens: real encoded videos and dataset-format annotations for testing and demos.

The noun is what the moving object looks like, the verb is how it moves relative to the
kitchen; a head-mounted camera moves as much as the objects do, static look-alike objects
stand around, and every participant has their own kitchen. ``generate`` is the entry point.
"""

from shards.synth.generate import generate

__all__ = ["generate"]
