"""Guarding: who may do what, checked before anything is written.

The callable adapter (auth, validation, error mapping), authorization (participation,
18+, blocks), the per-user rate limit, and the spam/fraud and admission hooks.
Imports the foundation only (the package root).
"""
