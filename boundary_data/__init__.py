"""The data: files, their provenance, the mechanisms catalogue, and the generators that make them.

``province`` builds the SYNTHETIC province for scale tests and ``jointgrid demo --scale
province``; ``make_demo.py`` and ``make_districts.py`` are scripts that regenerate the files.
"""
