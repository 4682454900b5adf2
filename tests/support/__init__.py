"""Helpers the tests share: the API and its data, the database, processes, launchers."""
