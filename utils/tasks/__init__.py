"""Celery adapters: thin, named tasks that call one service each."""
