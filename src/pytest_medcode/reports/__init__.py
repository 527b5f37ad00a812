"""Renderings of a run's results: the study's tables as data, the terminal's text, report.md, report.html and the
run history's page (runs/folder.py writes the files; these modules only return their text)."""
