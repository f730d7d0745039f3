"""Apiary's drone: connects to a queen, runs jobs' commands, streams their events back."""
