"""Instance splitting: a semantic mask -> ordered vertebra and disc instances, cut along planes
fitted through the discs.
"""
