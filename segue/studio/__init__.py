"""Segue Studio: a web app to listen, gather human judgements and close the training loop.

Annotators join by invite, give consent, and answer odd-one-out triplets of blind clips drawn
from the matcher's library; quality control (gold and repeated triplets, listening time)
flags annotators whose answers should not train the model; admins export the answers.
"""
