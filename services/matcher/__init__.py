"""The matcher service: stores analysed songs in Qdrant, answers "what plays next, from where"."""
