"""ftplatform's ML code, Django-free: chat rendering, tokenization and labels (data), training (config,
train, sampling, launch), pre-flight, generation (inference), export, model cards, the metric registry
(metrics) and statistics (stats). Plain Python over messages, token ids, numbers and paths; the apps call
it and it imports none of them, nor Django (.importlinter checks both).

torch and transformers are imported inside functions, so importing this package (and the Django apps
around it) stays cheap and a forking RQ worker parent never initialises torch.
"""
