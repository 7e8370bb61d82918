"""Raw photos of people -> a clean, aligned training set: `facezoo data prepare RAW_DIR OUT_DIR`.

Modules: sources (walk the tree or list), faces (decode, detect, choose, align one photo), dedup (near-duplicates),
identity (one identity in a worker, journaled), journal (resume), exclude (test-set overlap), report (report.csv,
summary), run (the whole pipeline), options (the settings).
"""

from .options import PrepareOptions
from .report import REASONS, format_summary
from .run import prepare

__all__ = ["REASONS", "PrepareOptions", "format_summary", "prepare"]
