"""Renderers: analysis results to HTML, JSON and terminal text. No analysis happens here."""
