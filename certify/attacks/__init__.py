"""Attacks: one linear recipe per technique, registered by name (see `certify list attacks`).

Whether the data is harmful or benign is a parameter (the dataset), not a new attack.
"""
