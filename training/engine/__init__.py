"""The ML engine: plain Python over messages, token ids and paths. No Django inside.

torch and transformers are imported inside functions, so importing this package (and the
Django apps around it) stays cheap and a forking RQ worker parent never initialises torch.
"""
