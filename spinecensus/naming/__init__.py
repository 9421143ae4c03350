"""Naming the instances: counting from C2, the sacrum rule, the labeler vote and the consistent C2
... S1 sequence.
"""
