"""pytest at the repository root: doctests run over the packages (``--doctest-modules``, see pyproject.toml).

Modules that must not be imported by a collector are left out: ``python -m sweep``
runs the CLI when imported, and Alembic's ``env.py`` only works under Alembic.
"""

collect_ignore = ["sweep/__main__.py", "storage/migrations"]
