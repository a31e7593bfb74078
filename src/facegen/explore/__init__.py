"""``facegen explore``: a local web page showing the trained families side by side, live.

``engine`` holds the models, faces and caches (no web code); ``app`` serves one self-contained
page and a JSON API over it with FastAPI; ``server`` binds the port and runs uvicorn until Ctrl-C;
``jobs`` runs long work (GAN inversion of a face) in the background with progress.
"""
